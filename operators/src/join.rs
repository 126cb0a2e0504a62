//! What every join shares: two inputs keyed by equal fields, an output projection from both
//! sides, a late policy, and three kinds of extra output (dead letters, late left, late right).

use smol_str::SmolStr;

use crate::encode::{Encoder, Format};
use crate::late::{LateCounts, LatePolicy};
use crate::schema::{Meta, Record, Schema};
use crate::time::format_rfc3339;
use crate::value::{Micros, Value};
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;

use crate::batch::{give_at, RecordOutput};
use crate::{Records, Time};

/// The parts of a compiled join common to every kind.
#[derive(Debug)]
pub struct JoinCommon {
    /// The join's component id, named in dead letters.
    pub id: SmolStr,
    /// Key positions in left records.
    pub left_key: Vec<usize>,
    /// Key positions in right records, in the same order.
    pub right_key: Vec<usize>,
    /// Event-time position in left records.
    pub left_time: usize,
    /// Event-time position in right records.
    pub right_time: usize,
    /// Output fields: (side 0 = left / 1 = right, position).
    pub output: Vec<(u8, usize)>,
    /// What happens to late records (not `Update`).
    pub late: LatePolicy,
    encoders: [Encoder; 2],
    /// Each side's Arrow layout.
    pub(crate) schemas: [arrow::datatypes::SchemaRef; 2],
    /// How keys are stored (both sides' key fields have the same types).
    pub(crate) key_kind: crate::window::KeyKind,
    /// Per side, the input positions of the fields the join outputs from it (what it stores).
    pub(crate) stored: [Vec<usize>; 2],
    /// Their types.
    pub(crate) stored_types: [Vec<crate::value::FieldType>; 2],
    /// The most records the join may store in one process before it fails the run.
    pub max_state: Option<u64>,
}

impl JoinCommon {
    /// The common parts of a join of `left` and `right` records. `output` lists
    /// (side, position) pairs with side 0 for left and 1 for right.
    pub fn new(
        id: &str,
        left: &Schema,
        right: &Schema,
        left_key: Vec<usize>,
        right_key: Vec<usize>,
        output: Vec<(u8, usize)>,
        late: LatePolicy,
    ) -> JoinCommon {
        let stored = |side: u8| {
            let mut f: Vec<usize> = output
                .iter()
                .filter(|(s, _)| *s == side)
                .map(|&(_, p)| p)
                .collect();
            f.sort_unstable();
            f.dedup();
            f
        };
        let stored = [stored(0), stored(1)];
        let stored_types = [
            stored[0].iter().map(|&p| left.fields[p].ty).collect(),
            stored[1].iter().map(|&p| right.fields[p].ty).collect(),
        ];
        let key_types: Vec<crate::value::FieldType> =
            left_key.iter().map(|&p| left.fields[p].ty).collect();
        JoinCommon {
            id: SmolStr::new(id),
            schemas: [
                crate::chunk::arrow_schema(left),
                crate::chunk::arrow_schema(right),
            ],
            key_kind: crate::window::KeyKind::new(&key_types),
            stored,
            stored_types,
            max_state: None,
            left_key,
            right_key,
            left_time: left.time.unwrap_or(0),
            right_time: right.time.unwrap_or(0),
            output,
            late,
            encoders: [
                Encoder::new(Format::Jsonl, left),
                Encoder::new(Format::Jsonl, right),
            ],
        }
    }

    /// The fields of a side's records the join reads: its key, its time and the fields it
    /// outputs.
    pub fn fields_read(&self, side: usize) -> Vec<usize> {
        let mut f: Vec<usize> = self.keys(side).to_vec();
        f.push(self.time(side));
        f.extend(self.stored[side].iter().copied());
        f.sort_unstable();
        f.dedup();
        f
    }

    /// Key positions of a side (0 left, 1 right).
    pub fn keys(&self, side: usize) -> &[usize] {
        if side == 0 {
            &self.left_key
        } else {
            &self.right_key
        }
    }

    /// The input positions of the fields the join stores of `side` (those it outputs).
    pub fn stored_positions(&self, side: usize) -> Vec<usize> {
        self.stored[side].clone()
    }

    /// Event-time position of a side.
    pub fn time(&self, side: usize) -> usize {
        if side == 0 {
            self.left_time
        } else {
            self.right_time
        }
    }

    /// The output values of a pair (a missing side's fields are NULL), then `extra`.
    pub fn joined(
        &self,
        l: Option<&Record>,
        r: Option<&Record>,
        extra: &[Value],
        watermark: Time,
    ) -> Record {
        let mut values: Vec<Value> = Vec::with_capacity(self.output.len() + extra.len());
        values.extend(
            self.output
                .iter()
                .map(|&(side, p)| match if side == 0 { l } else { r } {
                    Some(rec) => rec.values[p].clone(),
                    None => Value::Null,
                }),
        );
        values.extend(extra.iter().cloned());
        let ingest = match (l, r) {
            (Some(l), Some(r)) => l.meta.ingest.max(r.meta.ingest),
            (Some(x), None) | (None, Some(x)) => x.meta.ingest,
            (None, None) => 0,
        };
        Record {
            values,
            meta: Meta { ingest, watermark },
        }
    }

    /// The output values of a pair whose sides are each a batch row, a stored row or missing
    /// (NULL fields), then `extra`.
    pub(crate) fn joined_src(
        &self,
        l: Src<'_>,
        r: Src<'_>,
        extra: &[Value],
        watermark: Time,
    ) -> Record {
        let mut values: Vec<Value> = Vec::with_capacity(self.output.len() + extra.len());
        for &(side, p) in &self.output {
            let src = if side == 0 { &l } else { &r };
            values.push(match src {
                Src::Missing => Value::Null,
                Src::Row(chunk, row) => chunk.value(p, *row),
                Src::Stored(st, row) => {
                    let f = self.stored[side as usize]
                        .binary_search(&p)
                        .expect("output fields are stored");
                    st.value(*row, f)
                }
            });
        }
        values.extend(extra.iter().cloned());
        let ingest = l.ingest().into_iter().chain(r.ingest()).max().unwrap_or(0);
        Record {
            values,
            meta: Meta { ingest, watermark },
        }
    }

    /// An empty store for `side`'s records (its selected fields; the event time among them,
    /// if selected, is the store's time column).
    pub(crate) fn new_store(&self, side: usize) -> crate::side_store::Stored {
        let time = self.stored[side].binary_search(&self.time(side)).ok();
        crate::side_store::Stored::with_time(&self.stored_types[side], time)
    }

    /// Stores row `r` of batch `b` in `st`.
    pub(crate) fn store(
        &self,
        st: &mut crate::side_store::Stored,
        b: &JoinBatch<'_>,
        r: usize,
        ts: Micros,
    ) -> u32 {
        st.push(&b.stored, r, ts, b.ingest[r])
    }

    /// A dead letter for a record of `side` (late, or without event time).
    pub fn dead_letter(&self, side: usize, r: &Record, reason: String) -> Record {
        crate::decode::operator_dead_letter(&self.id, &self.encoders[side], r, reason)
    }

    /// The reason given for a late record.
    pub fn late_reason(ts: Micros, watermark: Time, what: &str) -> String {
        format!(
            "late: its time {} is behind its watermark {}, so {what}",
            format_rfc3339(ts),
            format_rfc3339(watermark as Micros)
        )
    }

    /// Routes a record without an event time to the dead letters.
    pub fn untimed(&self, side: usize, r: &Record, n: &mut LateCounts, dead: &mut Vec<Record>) {
        let why = "the record has no event time".to_string();
        n.untimed(r, |r| self.dead_letter(side, r, why), dead);
    }

    /// Row `r` of batch `b` of `side` (at capability time `t`): its event time when it has one
    /// and is not behind its watermark. Otherwise it is set aside — dead-lettered without an
    /// event time, routed by the late policy when late (`what` ends the reason) — and `None`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_time(
        &self,
        side: usize,
        b: &crate::keyed::Keyed<'_>,
        r: usize,
        t: Time,
        what: &str,
        n: &mut LateCounts,
        dead: &mut Vec<Record>,
        late: &mut Vec<Record>,
    ) -> Option<Micros> {
        let Some(ts) = b.time(r) else {
            self.untimed(side, &b.record(r), n, dead);
            return None;
        };
        let wm = b.watermark_at(r, t);
        if (ts.max(0) as Time) < wm {
            self.route_late(side, b.record(r), ts, wm, what, n, dead, late);
            return None;
        }
        Some(ts)
    }

    /// Routes a late record of `side` by the late policy; `what` ends the dead-letter reason.
    #[allow(clippy::too_many_arguments)]
    pub fn route_late(
        &self,
        side: usize,
        r: Record,
        ts: Micros,
        watermark: Time,
        what: &str,
        n: &mut LateCounts,
        dead: &mut Vec<Record>,
        late: &mut Vec<Record>,
    ) {
        let why = JoinCommon::late_reason(ts, watermark, what);
        n.route(self.late, r, |r| self.dead_letter(side, r, why), dead, late);
    }
}

/// Both inputs of a join as batches, exchanged by key with [`Routing::ByKey`].
///
/// [`Routing::ByKey`]: crate::exchange::Routing::ByKey
pub(crate) fn keyed_batches<'s>(
    c: &JoinCommon,
    left: Records<'s>,
    right: Records<'s>,
    routing: crate::exchange::Routing,
) -> (crate::Batches<'s>, crate::Batches<'s>) {
    let l = crate::convert::to_chunks(left, std::sync::Arc::clone(&c.schemas[0]));
    let r = crate::convert::to_chunks(right, std::sync::Arc::clone(&c.schemas[1]));
    match routing {
        crate::exchange::Routing::ByKey => (
            crate::exchange::exchange_by_key(l, c.left_key.clone()),
            crate::exchange::exchange_by_key(r, c.right_key.clone()),
        ),
        crate::exchange::Routing::Partitioned => (l, r),
    }
}

/// What a join's `max_state` guard says when it fails the run.
pub(crate) fn max_state_message(c: &JoinCommon, held: u64, max: u64) -> String {
    format!(
        "join `{}` holds {held} records, more than its max_state = {max}: the inputs' keys or times drift apart (a stalled input holds back the watermark), or the limit is too low; raise max_state, shorten the interval or window, or set idle_timeout on quiet sources",
        c.id
    )
}

/// One side of a joined pair.
pub(crate) enum Src<'a> {
    /// No record: NULL fields.
    Missing,
    /// A row of an input batch.
    Row(&'a crate::chunk::Chunk, usize),
    /// A stored row.
    Stored(&'a crate::side_store::Stored, u32),
}

impl Src<'_> {
    fn ingest(&self) -> Option<Micros> {
        match self {
            Src::Missing => None,
            Src::Row(c, r) => Some(c.meta(*r).ingest),
            Src::Stored(s, r) => Some(s.ingest(*r)),
        }
    }
}

/// A join input batch read for probing and storing: its keys and times ([`Keyed`]) and the
/// columns of the fields the join stores from its side.
pub(crate) struct JoinBatch<'c> {
    k: crate::keyed::Keyed<'c>,
    stored: Vec<&'c arrow::array::ArrayRef>,
}

impl<'c> JoinBatch<'c> {
    pub(crate) fn new(
        c: &JoinCommon,
        side: usize,
        chunk: &'c crate::chunk::Chunk,
    ) -> JoinBatch<'c> {
        let cols = chunk.columns();
        JoinBatch {
            k: crate::keyed::Keyed::new(&c.key_kind, c.keys(side), c.time(side), chunk),
            stored: c.stored[side].iter().map(|&p| &cols[p]).collect(),
        }
    }
}

impl<'c> std::ops::Deref for JoinBatch<'c> {
    type Target = crate::keyed::Keyed<'c>;
    fn deref(&self) -> &crate::keyed::Keyed<'c> {
        &self.k
    }
}

/// A join's outputs.
pub struct JoinStreams<'s> {
    /// Joined records.
    pub results: Records<'s>,
    /// Late records (with the dead-letter policy) and records without an event time.
    pub dead: Records<'s>,
    /// Late records of the left input, unchanged (side-output policy).
    pub late_left: Records<'s>,
    /// Late records of the right input, unchanged (side-output policy).
    pub late_right: Records<'s>,
}

/// The four outputs of a two-input join operator, in port order: joined records (0), dead
/// letters (1), late left (2) and late right (3) records.
pub(crate) struct JoinOutputs {
    /// Port 0: joined records.
    pub results: RecordOutput,
    dead: RecordOutput,
    late: [RecordOutput; 2],
}

impl JoinOutputs {
    /// Adds the four outputs to `builder` (which must have no outputs yet).
    pub(crate) fn new<'s>(
        builder: &mut OperatorBuilder<'s, Time>,
    ) -> (JoinOutputs, JoinStreams<'s>) {
        let (out, results) = builder.new_output::<Vec<Record>>();
        let (dead_out, dead) = builder.new_output::<Vec<Record>>();
        let (ll_out, late_left) = builder.new_output::<Vec<Record>>();
        let (lr_out, late_right) = builder.new_output::<Vec<Record>>();
        (
            JoinOutputs {
                results: RecordOutput::from(out),
                dead: RecordOutput::from(dead_out),
                late: [RecordOutput::from(ll_out), RecordOutput::from(lr_out)],
            },
            JoinStreams {
                results,
                dead,
                late_left,
                late_right,
            },
        )
    }

    /// Sends what an input batch of `side` at time `t` put aside: its dead letters and its late
    /// records (side output), leaving both buffers empty.
    pub(crate) fn give_set_aside(
        &mut self,
        cap: &(impl crate::batch::Delay + ?Sized),
        t: Time,
        side: usize,
        dead: &mut Vec<Record>,
        late: &mut Vec<Record>,
    ) {
        give_at(&mut self.dead, cap, t, 1, dead);
        give_at(&mut self.late[side], cap, t, 2 + side, late);
    }
}

/// One stored record of a join side, as a checkpoint keeps it: its key, its stored fields (in
/// the order of [`JoinCommon`]'s stored positions), its event time and ingest time.
pub(crate) struct SavedRecord {
    pub(crate) key: Vec<Value>,
    pub(crate) fields: Vec<Value>,
    pub(crate) ts: Micros,
    pub(crate) ingest: Micros,
}

impl JoinCommon {
    /// Stored records of `side` as a chunk of that side's input layout: the key, the stored
    /// fields and the event time in their places (other fields NULL), the ingest time in the
    /// record's metadata. A checkpoint holds it; [`JoinBatch::new`] reads it back as input.
    pub(crate) fn saved_chunk(&self, side: usize, records: &[SavedRecord]) -> crate::chunk::Chunk {
        use arrow::datatypes::DataType;
        let schema = &self.schemas[side];
        let width = schema.fields().len() - 2;
        let time = self.time(side);
        let time_value = |ts: Micros| match schema.field(time).data_type() {
            DataType::Int64 => Value::I64(ts),
            DataType::UInt64 => Value::U64(ts.max(0) as u64),
            _ => Value::Ts(ts),
        };
        let rows: Vec<Record> = records
            .iter()
            .map(|s| {
                let mut values = vec![Value::Null; width];
                for (&p, v) in self.keys(side).iter().zip(&s.key) {
                    values[p] = v.clone();
                }
                for (&p, v) in self.stored[side].iter().zip(&s.fields) {
                    values[p] = v.clone();
                }
                values[time] = time_value(s.ts);
                Record {
                    values,
                    meta: crate::schema::Meta {
                        ingest: s.ingest,
                        watermark: 0,
                    },
                }
            })
            .collect();
        crate::chunk::Chunk::from_rows(schema, &rows)
    }
}

/// A join's checkpoint part: `WEIRJOIN` and the format version, then length-prefixed
/// (little-endian u64) sections: each side's stored records as an Arrow IPC stream (a chunk
/// of that side's input layout, see [`JoinCommon::saved_chunk`]), then `extra` (operator
/// specific: the left records' matched flags for the interval join).
pub(crate) fn write_join_part(sides: [&crate::chunk::Chunk; 2], extra: &[u8]) -> Vec<u8> {
    let mut out = b"WEIRJOIN".to_vec();
    out.extend_from_slice(&crate::checkpoint::FORMAT.to_le_bytes());
    for section in [sides[0].to_ipc(), sides[1].to_ipc(), extra.to_vec()] {
        out.extend_from_slice(&(section.len() as u64).to_le_bytes());
        out.extend_from_slice(&section);
    }
    out
}

/// Reads a part written by [`write_join_part`]: the two sides' chunks and the extra bytes.
pub(crate) fn read_join_part(
    bytes: &[u8],
) -> Result<(crate::chunk::Chunk, crate::chunk::Chunk, Vec<u8>), String> {
    let rest = bytes
        .strip_prefix(b"WEIRJOIN".as_slice())
        .ok_or("not a join's checkpoint part")?;
    let (version, mut rest) = rest.split_at_checked(4).ok_or("a truncated part")?;
    if u32::from_le_bytes(version.try_into().expect("4 bytes")) != crate::checkpoint::FORMAT {
        return Err("a part of another checkpoint format".into());
    }
    let mut sections = Vec::new();
    for _ in 0..3 {
        let (len, r) = rest.split_at_checked(8).ok_or("a truncated part")?;
        let len = u64::from_le_bytes(len.try_into().expect("8 bytes")) as usize;
        let (section, r) = r.split_at_checked(len).ok_or("a truncated part")?;
        sections.push(section);
        rest = r;
    }
    Ok((
        crate::chunk::Chunk::from_ipc(sections[0])?,
        crate::chunk::Chunk::from_ipc(sections[1])?,
        sections[2].to_vec(),
    ))
}
