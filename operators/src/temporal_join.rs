//! The temporal join: each left record joins the version of the right side — a versioned
//! table, a changelog keyed by the join key — that was valid at the left record's event time:
//! the right record with the same key and the largest event time at or before it (ties broken
//! by the selected right fields, in `select` order). Inner, or left outer (a left record with no
//! version yet comes out with NULL right fields).
//!
//! Built on differential dataflow. Both inputs arrive as batches exchanged by key. The right
//! side becomes a collection of versions, each inserted at its own event time and retracted at
//! the event time of the version that supersedes it, and is *arranged* by key once
//! ([`arrange_table`]; several joins on the same table share the arrangement through
//! [`join_table`]). Keys and versions are compact: a key is its hash and its bytes (an
//! integer's 8 bytes, a string's bytes, or Arrow's row format for several fields), a version
//! its event time, its ingest time and its selected fields in Arrow's row format (so ordering
//! is a `memcmp`) — no vectors of values. Left records are not arranged: each waits, with only
//! its selected fields, until the arrangement is complete through its event time, and then
//! looks its key up in the arrangement *as of* that time (the one version whose updates at or
//! before it add up to one is the valid one). Because every on-time right version enters at
//! its event time, a left record's result is final then, and is emitted exactly once. The
//! arrangement's compaction follows the earliest left record still waiting, so superseded
//! versions cancel out and state stays bounded by the versions still current.
//!
//! A record behind its source partition's watermark is late (for the right side, a version
//! that arrives after left records it should have served may be gone); late records follow the
//! join's [`LatePolicy`] and are counted.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use timely::dataflow::operators::{Capture, ToStream, capture::Extract};
//! use weir_operators::join::JoinCommon;
//! use weir_operators::schema::{Field, Record, Schema};
//! use weir_operators::temporal_join::{temporal_join, TemporalJoinSpec};
//! use weir_operators::value::{FieldType, Value};
//! use weir_operators::window::LatePolicy;
//!
//! let schema = Schema::new(vec![Field::new("ts", FieldType::Timestamp), Field::new("k", FieldType::String),
//!     Field::new("v", FieldType::String)]).with_time("ts");
//! // Output: the left record's ts and v, the version's v.
//! let common = JoinCommon::new("j", &schema, &schema, vec![1], vec![1], vec![(0, 0), (0, 2), (1, 2)], LatePolicy::DeadLetter);
//! let spec = Arc::new(TemporalJoinSpec { common, left_outer: true });
//! let rec = |ts: i64, v: &str| Record::new(vec![Value::Ts(ts), Value::Str("k".into()), Value::Str(v.into())]);
//! let (tx, rx) = std::sync::mpsc::channel();
//! let tx = Mutex::new(tx);
//! timely::example(move |scope| {
//!     let alarms = vec![rec(5, "early"), rec(15, "mid"), rec(25, "late")].to_stream(scope).container::<Vec<Record>>();
//!     let status = vec![rec(10, "online"), rec(20, "offline")].to_stream(scope).container::<Vec<Record>>();
//!     temporal_join(alarms, status, spec, Arc::default()).results.capture_into(tx.lock().unwrap().clone());
//! });
//! let mut got: Vec<Vec<Value>> = rx.extract().into_iter().flat_map(|(_, v)| v).map(|r| r.values).collect();
//! got.sort();
//! let s = |x: &str| Value::Str(x.into());
//! assert_eq!(got, vec![
//!     vec![Value::Ts(5), s("early"), Value::Null],
//!     vec![Value::Ts(15), s("mid"), s("online")],
//!     vec![Value::Ts(25), s("late"), s("offline")],
//! ]);
//! ```

use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::DataType;
use arrow::row::{RowConverter, SortField};
use differential_dataflow::operators::arrange::arrangement::arrange_core;
use differential_dataflow::operators::arrange::{Arranged, TraceAgent};
use differential_dataflow::trace::cursor::Cursor;
use differential_dataflow::trace::implementations::{ValBatcher, ValSpine};
use differential_dataflow::trace::Navigable;
use differential_dataflow::trace::TraceReader;
use smallvec::SmallVec;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::{Capability, Concat, InputCapability};
use timely::dataflow::Stream;
use timely::progress::Antichain;

use crate::batch::{give_at, RecordOutput};
use crate::chunk::{value_at, Chunk};
use crate::join::{JoinBatch, JoinCommon, JoinOutputs, JoinStreams, Src};
use crate::late::LateCounts;
use crate::metrics::ComponentMetrics;
use crate::schema::{Meta, Record};
use crate::value::{Micros, Value};
use crate::window::LatePolicy;
use crate::{Batches, Records, Time};

/// A compiled temporal join.
#[derive(Debug)]
pub struct TemporalJoinSpec {
    /// Keys, times, output and late policy.
    pub common: JoinCommon,
    /// Whether left records without a version are emitted (left outer join).
    pub left_outer: bool,
}

impl TemporalJoinSpec {
    /// The right fields kept in a version: each right output field once, in output order
    /// (which breaks ties between versions of one key at one time).
    fn right_cols(&self) -> Vec<usize> {
        let mut cols = Vec::new();
        for &(side, p) in &self.common.output {
            if side == 1 && !cols.contains(&p) {
                cols.push(p);
            }
        }
        cols
    }

    /// What makes two temporal joins able to share one arranged table of the same input: the
    /// right key, the right fields kept, the right time and the late policy.
    pub fn table_signature(&self) -> (Vec<usize>, Vec<usize>, usize, LatePolicy) {
        let c = &self.common;
        (c.right_key.clone(), self.right_cols(), c.right_time, c.late)
    }
}

/// Bytes, up to 22 of them inline: cloned by a copy (differential clones keys and values as
/// it sorts and merges), compared as byte strings.
#[derive(Clone)]
pub enum Packed {
    /// Up to 22 bytes: the length, then the bytes.
    Inline(u8, [u8; 22]),
    /// More.
    Heap(Box<[u8]>),
}

impl Packed {
    /// `tag` then `bytes`.
    #[inline]
    fn tagged(tag: u8, bytes: &[u8]) -> Packed {
        if bytes.len() < 22 {
            let mut data = [0u8; 22];
            data[0] = tag;
            data[1..=bytes.len()].copy_from_slice(bytes);
            Packed::Inline(bytes.len() as u8 + 1, data)
        } else {
            let mut v = Vec::with_capacity(bytes.len() + 1);
            v.push(tag);
            v.extend_from_slice(bytes);
            Packed::Heap(v.into_boxed_slice())
        }
    }

    /// `bytes`.
    #[inline]
    fn new(bytes: &[u8]) -> Packed {
        match bytes.split_first() {
            Some((&tag, rest)) => Packed::tagged(tag, rest),
            None => Packed::default(),
        }
    }

    /// The bytes.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Packed::Inline(n, data) => &data[..*n as usize],
            Packed::Heap(b) => b,
        }
    }
}

impl Default for Packed {
    fn default() -> Packed {
        Packed::Inline(0, [0; 22])
    }
}

impl PartialEq for Packed {
    #[inline]
    fn eq(&self, other: &Packed) -> bool {
        self.as_slice() == other.as_slice()
    }
}
impl Eq for Packed {}
impl PartialOrd for Packed {
    #[inline]
    fn partial_cmp(&self, other: &Packed) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Packed {
    #[inline]
    fn cmp(&self, other: &Packed) -> std::cmp::Ordering {
        self.as_slice().cmp(other.as_slice())
    }
}
impl std::fmt::Debug for Packed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_slice())
    }
}

/// A join key in the arrangement: its hash first, so that sorting and merging mostly compare
/// one integer, then its bytes (a tag, then the value: `KeyView::with_key_bytes`).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct VersionKey {
    hash: u64,
    bytes: Packed,
}

impl VersionKey {
    /// Row `r`'s key in `b`.
    #[inline]
    fn of(b: &JoinBatch<'_>, r: usize) -> VersionKey {
        VersionKey {
            hash: b.hashes[r],
            bytes: b.keys.with_key_bytes(r, Packed::tagged),
        }
    }
}

impl Hash for VersionKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// A version of the right side: its event time, its selected fields in Arrow's row format, and
/// its ingest time (for latency).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    ts: Micros,
    row: Packed,
    ingest: Micros,
}

/// What a temporal join's `max_state` guard says when it fails the run.
fn max_state_message(c: &JoinCommon, held: u64, max: u64) -> String {
    format!(
        "temporal join `{}` holds {held} records (current table versions and left records waiting for them), more than its max_state = {max}: the table has more keys than expected, or one input's event time runs ahead of the other's (a stalled input holds back the watermark); raise max_state, or set idle_timeout on quiet sources",
        c.id
    )
}

/// Why a late record of either side is set aside.
const GONE: &str = "the versions it should meet may be gone";

/// A differential update.
type Update<D> = (D, Time, isize);
/// The arranged versions.
type Spine = ValSpine<VersionKey, Version, Time, isize>;
/// A stream of version updates.
type Updates<'s> = Stream<'s, Time, Vec<Update<(VersionKey, Version)>>>;

/// Converts a side's selected fields to and from Arrow's row format.
struct Rows {
    converter: Option<RowConverter>,
    types: Vec<DataType>,
}

impl Rows {
    fn new(types: Vec<DataType>) -> Rows {
        let converter = (!types.is_empty()).then(|| {
            RowConverter::new(types.iter().cloned().map(SortField::new).collect())
                .expect("Weir's types have a row format")
        });
        Rows { converter, types }
    }

    /// The rows of `cols` (none when no field is kept).
    fn convert(&self, cols: &[&ArrayRef]) -> Option<arrow::row::Rows> {
        let c = self.converter.as_ref()?;
        Some(crate::window::to_rows(c, &self.types, cols))
    }

    /// The columns of `rows` (each in this converter's row format).
    fn columns<'a>(&self, rows: impl Iterator<Item = &'a [u8]>) -> Vec<ArrayRef> {
        let Some(c) = self.converter.as_ref() else {
            return Vec::new();
        };
        let parser = c.parser();
        c.convert_rows(rows.map(|r| parser.parse(r)))
            .expect("rows come from this converter")
    }
}

/// The right side's versions as differential updates, each inserted at its event time and
/// retracted at the event time of the version that supersedes it; with its dead letters and
/// late records.
fn versions<'s>(
    right: Batches<'s>,
    spec: &Arc<TemporalJoinSpec>,
    metrics: &Arc<ComponentMetrics>,
    ctl: crate::control::RunControl,
    checkpoint: Option<crate::checkpoint::Checkpointing<'s>>,
) -> (Updates<'s>, Records<'s>, Records<'s>) {
    use crate::checkpoint::{Barrier, Decision};
    let worker = right.scope().index();
    let mut builder = OperatorBuilder::new(format!("{} (versions)", spec.common.id), right.scope());
    let mut input = builder.new_input(right, Pipeline);
    let (mut control, ck) = match checkpoint {
        Some((c, ck)) => {
            ck.register(worker);
            (Some(builder.new_input(c, Pipeline)), Some(ck))
        }
        None => (None, None),
    };
    let (updates_out, updates) = builder.new_output::<Vec<Update<(VersionKey, Version)>>>();
    let (dead_out, dead) = builder.new_output::<Vec<Record>>();
    let (late_out, late) = builder.new_output::<Vec<Record>>();
    let mut updates_out: OutputBuilder<Time, CapacityContainerBuilder<Vec<_>>> =
        OutputBuilder::from(updates_out);
    let (mut dead_out, mut late_out) = (RecordOutput::from(dead_out), RecordOutput::from(late_out));
    let (spec, metrics) = (Arc::clone(spec), Arc::clone(metrics));
    let part_name = format!("{}.versions", spec.common.id);
    builder.build(move |mut caps| {
        let rcols = spec.right_cols();
        let rows = Rows::new(
            rcols
                .iter()
                .map(|&p| spec.common.schemas[1].field(p).data_type().clone())
                .collect(),
        );
        // Per key, the versions that may still be the predecessor of an on-time version, in
        // order.
        let mut live: Live = HashMap::default();
        if let Some(bytes) = ck.as_ref().and_then(|ck| ck.restored(&part_name, worker)) {
            match restore_versions(bytes) {
                Ok(l) => live = l,
                Err(e) => ctl.fail(format!(
                    "join `{}`: its table in the checkpoint cannot be read: {e}; run with --from-scratch to start over",
                    spec.common.id
                )),
            }
        }
        // The restored versions go into the arrangement from the first capability.
        let mut first: Option<Capability<Time>> = caps.drain(..).next();
        let (mut dead_buf, mut late_buf) = (Vec::new(), Vec::new());
        let mut gauge = crate::metrics::StateGauge::default();
        let mut barrier: Barrier<([Capability<Time>; 3], Chunk)> = Barrier::default();
        move |frontiers| {
            let c = &spec.common;
            let (mut n, mut state) = (0u64, 0i64);
            let t_of = |x: Micros| x.max(0) as Time;
            if let Some(cap) = first.take() {
                let mut out = updates_out.activate();
                let mut session = out.session(&cap);
                for (key, vs) in live.iter() {
                    for (i, v) in vs.iter().enumerate() {
                        session.give(((key.clone(), v.clone()), t_of(v.ts), 1));
                        if let Some(s) = vs.get(i + 1) {
                            session.give(((key.clone(), v.clone()), t_of(s.ts), -1));
                        }
                    }
                    state += vs.len() as i64;
                }
            }
            let mut counts = LateCounts::default();
            if let Some(control) = control.as_mut() {
                control.for_each(|_, data: &mut Vec<Decision>| {
                    for d in data.drain(..) {
                        barrier.decide(d.at, d.seq);
                    }
                });
                barrier.set_control(frontiers[1].frontier().iter().next().copied());
            }
            let data_frontier = frontiers[0].frontier().iter().min().copied();
            // Versions are forgotten only below what every checkpoint still to be taken holds.
            let horizon = match control {
                Some(_) => barrier.frontier(data_frontier),
                None => data_frontier,
            }
            .unwrap_or(Time::MAX);
            let mut apply = |cap: &dyn crate::batch::Delay,
                             t: Time,
                             chunk: &Chunk,
                             live: &mut Live| {
                let mut out = updates_out.activate();
                let at_t = cap.at(&t, 0);
                let mut session = out.session(&at_t);
                n += chunk.len() as u64;
                let b = JoinBatch::new(c, 1, chunk);
                let cols = chunk.columns();
                let kept: Vec<&ArrayRef> = rcols.iter().map(|&p| &cols[p]).collect();
                let encoded = rows.convert(&kept);
                for r in 0..chunk.len() {
                    let (dead, late) = (&mut dead_buf, &mut late_buf);
                    let Some(ts) = c.on_time(1, &b, r, t, GONE, &mut counts, dead, late) else {
                        continue;
                    };
                    if b.key_is_null(r) {
                        continue; // A NULL key equals no key: no left record meets it.
                    }
                    let key = VersionKey::of(&b, r);
                    let me = Version {
                        ts,
                        row: encoded
                            .as_ref()
                            .map(|e| Packed::new(e.row(r).data()))
                            .unwrap_or_default(),
                        ingest: b.ingest[r],
                    };
                    let vs = live.entry(key.clone()).or_default();
                    let at = vs.partition_point(|v| *v < me);
                    let before = at.checked_sub(1).map(|i| vs[i].clone());
                    let after = vs.get(at).map(|v| v.ts);
                    // It is valid from its time until its successor's.
                    session.give(((key.clone(), me.clone()), t_of(ts), 1));
                    if let Some(s) = after {
                        session.give(((key.clone(), me.clone()), t_of(s), -1));
                    }
                    // Its predecessor now ends here, not at the successor.
                    if let Some(p) = before {
                        if let Some(s) = after {
                            session.give(((key.clone(), p.clone()), t_of(s), 1));
                        }
                        session.give(((key, p), t_of(ts), -1));
                    }
                    if vs.get(at) != Some(&me) {
                        vs.insert(at, me);
                        state += 1;
                    }
                    // Forget versions whose successor the frontier has passed: no on-time
                    // version can come between them any more.
                    while vs.len() > 1 && t_of(vs[1].ts) < horizon {
                        vs.remove(0);
                        state -= 1;
                    }
                }
                drop(session);
                give_at(&mut dead_out, cap, t, 1, &mut dead_buf);
                give_at(&mut late_out, cap, t, 2, &mut late_buf);
            };
            let checkpointing = control.is_some();
            input.for_each(|cap: InputCapability<Time>, data: &mut Vec<Chunk>| {
                let Some(&t) = cap.least() else { return };
                if checkpointing && !barrier.admits(t) {
                    for chunk in data.drain(..) {
                        let caps = [0, 1, 2].map(|p| cap.delayed(&t, p));
                        barrier.hold(t, (caps, chunk));
                    }
                    return;
                }
                for chunk in data.iter() {
                    apply(&cap, t, chunk, &mut live);
                }
            });
            if let Some(ck) = ck.as_ref() {
                loop {
                    for (t, (caps, chunk)) in barrier.release() {
                        apply(&caps, t, &chunk, &mut live);
                    }
                    let Some((_, seq)) = barrier.due(data_frontier) else {
                        break;
                    };
                    let started = crate::checkpoint::wall_micros();
                    let bytes = snapshot_versions(&live);
                    if let Err(e) =
                        crate::checkpoint::write_part(ck, seq, &part_name, worker, started, &bytes)
                    {
                        ctl.fail(format!("join `{}`: cannot write checkpoint {seq}: {e}", c.id));
                    }
                    barrier.taken();
                }
            }
            if frontiers[0].is_empty() && control.is_none() {
                // The input has ended: no version will be asked for again. (Under checkpoints
                // the live versions are the table a restored run is rebuilt from: kept.)
                state -= live.values().map(|v| v.len() as i64).sum::<i64>();
                live.clear();
            }
            metrics.add_in(n);
            counts.report(&metrics);
            metrics.add_state(state);
            if state > 0 {
                gauge.guard(&metrics, &ctl, c.max_state, |h, m| {
                    max_state_message(c, h, m)
                });
            }
        }
    });
    (updates, dead, late)
}

/// Each key's live versions (see [`versions`]).
type Live =
    HashMap<VersionKey, SmallVec<[Version; 2]>, BuildHasherDefault<crate::window::KeyHasher>>;

/// The live versions as a checkpoint part: an Arrow IPC file of one batch, a row per version —
/// `hash` (UInt64), `key` (Binary: a tag and the key's value, as the arrangement keys it),
/// `ts` and `ingest` (Int64), `row` (Binary: the kept right fields in Arrow's row format) —
/// and `weir.format` in the schema's metadata.
fn snapshot_versions(live: &Live) -> Vec<u8> {
    use arrow::array::{BinaryBuilder, Int64Builder, UInt64Builder};
    use arrow::datatypes::{DataType, Field, Schema};
    let (mut hash, mut key, mut ts, mut ingest, mut row) = (
        UInt64Builder::new(),
        BinaryBuilder::new(),
        Int64Builder::new(),
        Int64Builder::new(),
        BinaryBuilder::new(),
    );
    for (k, vs) in live {
        for v in vs {
            hash.append_value(k.hash);
            key.append_value(k.bytes.as_slice());
            ts.append_value(v.ts);
            ingest.append_value(v.ingest);
            row.append_value(v.row.as_slice());
        }
    }
    let schema = Schema::new(vec![
        Field::new("hash", DataType::UInt64, false),
        Field::new("key", DataType::Binary, false),
        Field::new("ts", DataType::Int64, false),
        Field::new("ingest", DataType::Int64, false),
        Field::new("row", DataType::Binary, false),
    ])
    .with_metadata(std::collections::HashMap::from([(
        "weir.format".to_string(),
        crate::checkpoint::FORMAT.to_string(),
    )]));
    let batch = arrow::array::RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(hash.finish()),
            Arc::new(key.finish()),
            Arc::new(ts.finish()),
            Arc::new(ingest.finish()),
            Arc::new(row.finish()),
        ],
    )
    .expect("columns match the schema");
    crate::checkpoint::ipc_file(&batch)
}

/// Live versions read back from a part made by [`snapshot_versions`].
fn restore_versions(bytes: &[u8]) -> Result<Live, String> {
    use arrow::array::AsArray;
    use arrow::datatypes::{Int64Type, UInt64Type};
    let (_, batches) = crate::checkpoint::read_ipc_file(bytes)?;
    let mut live: Live = HashMap::default();
    for batch in batches {
        let hash = batch.column(0).as_primitive::<UInt64Type>();
        let key = batch.column(1).as_binary::<i32>();
        let ts = batch.column(2).as_primitive::<Int64Type>();
        let ingest = batch.column(3).as_primitive::<Int64Type>();
        let row = batch.column(4).as_binary::<i32>();
        for r in 0..batch.num_rows() {
            let k = VersionKey {
                hash: hash.value(r),
                bytes: Packed::new(key.value(r)),
            };
            let v = Version {
                ts: ts.value(r),
                row: Packed::new(row.value(r)),
                ingest: ingest.value(r),
            };
            live.entry(k).or_default().push(v);
        }
    }
    for vs in live.values_mut() {
        vs.sort();
    }
    Ok(live)
}

/// A versioned table, arranged by key: what several temporal joins on the same table (with the
/// same key, kept fields and late policy) share.
#[derive(Clone)]
pub struct Table<'s> {
    arranged: Arranged<'s, TraceAgent<Spine>>,
    /// The right side's dead letters (given to the first join only, so they are not repeated).
    pub dead: Records<'s>,
    /// The right side's late records (side-output policy).
    pub late: Records<'s>,
}

/// Arranges the versioned table `right` (batches already on the worker that holds their keys)
/// for the temporal join `spec`; counts its records, late records and versions in `metrics`.
pub fn arrange_table<'s>(
    right: Batches<'s>,
    spec: &Arc<TemporalJoinSpec>,
    metrics: &Arc<ComponentMetrics>,
    ctl: crate::control::RunControl,
    checkpoint: Option<crate::checkpoint::Checkpointing<'s>>,
) -> Table<'s> {
    let (updates, dead, late) = versions(right, spec, metrics, ctl, checkpoint);
    let arranged = arrange_core::<_, _, ValBatcher<VersionKey, Version, Time, isize>, Spine>(
        updates,
        Pipeline,
        &format!("{} (table)", spec.common.id),
        ValBatcher::new,
    );
    Table {
        arranged,
        dead,
        late,
    }
}

/// Builds a temporal join of `left` and `right` rows: packs them into batches, exchanges them
/// by key, arranges the table and joins.
pub fn temporal_join<'s>(
    left: Records<'s>,
    right: Records<'s>,
    spec: Arc<TemporalJoinSpec>,
    metrics: Arc<ComponentMetrics>,
) -> JoinStreams<'s> {
    let (l, r) =
        crate::join::keyed_batches(&spec.common, left, right, crate::exchange::Routing::ByKey);
    let ctl = crate::control::RunControl::default();
    let table = arrange_table(r, &spec, &metrics, ctl.clone(), None);
    join_table(l, &table, true, spec, metrics, ctl, None)
}

/// The left records waiting for the table, as a checkpoint part: an Arrow IPC stream of one
/// chunk in the left input's layout (see [`Chunk::to_ipc`]).
fn snapshot_waiting(waiting: &Waiting, schema: &arrow::datatypes::SchemaRef) -> Vec<u8> {
    let mut records = Vec::new();
    let entries = waiting
        .in_order
        .iter()
        .chain(waiting.out_of_order.iter().map(|e| &e.0));
    for e in entries {
        let chunk = waiting.chunk(e);
        let row = e.row as usize;
        records.push(Record {
            values: (0..chunk.num_fields())
                .map(|f| chunk.value(f, row))
                .collect(),
            meta: chunk.meta(row),
        });
    }
    Chunk::from_rows(schema, &records).to_ipc()
}

/// A left record waiting for the table to be complete through its event time.
struct Entry {
    ts: Micros,
    key: VersionKey,
    /// Its batch's slot in [`Waiting::chunks`], and its row there.
    chunk: u32,
    row: u32,
}

/// Orders entries by event time, the earliest greatest (for a max-heap).
struct ByTime(Entry);

impl PartialEq for ByTime {
    fn eq(&self, other: &Self) -> bool {
        self.0.ts == other.0.ts
    }
}
impl Eq for ByTime {}
impl PartialOrd for ByTime {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ByTime {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.0.ts.cmp(&self.0.ts)
    }
}

/// Left records waiting for the table to be complete through their event time. Each keeps its
/// input batch (shared, not copied) until its last waiting row has been looked up. Records
/// that arrive in time order queue in order; the others in a heap.
#[derive(Default)]
struct Waiting {
    /// Input batches with rows still waiting, and how many; freed slots are `None`.
    chunks: Vec<Option<(Chunk, u32)>>,
    free: Vec<u32>,
    in_order: std::collections::VecDeque<Entry>,
    out_of_order: BinaryHeap<ByTime>,
}

impl Waiting {
    /// Keeps `chunk`, whose `rows` rows will wait; returns its slot.
    fn keep(&mut self, chunk: &Chunk, rows: u32) -> u32 {
        let kept = Some((chunk.clone(), rows));
        match self.free.pop() {
            Some(slot) => {
                self.chunks[slot as usize] = kept;
                slot
            }
            None => {
                self.chunks.push(kept);
                (self.chunks.len() - 1) as u32
            }
        }
    }

    /// Sets how many rows of the batch in `slot` wait; lets it go if none do.
    fn waits(&mut self, slot: u32, rows: u32) {
        match rows {
            0 => {
                self.chunks[slot as usize] = None;
                self.free.push(slot);
            }
            n => self.chunks[slot as usize].as_mut().expect("kept").1 = n,
        }
    }

    fn push(&mut self, e: Entry) {
        match self.in_order.back() {
            Some(last) if last.ts > e.ts => self.out_of_order.push(ByTime(e)),
            _ => self.in_order.push_back(e),
        }
    }

    /// The earliest waiting event time.
    fn earliest(&self) -> Option<Micros> {
        let a = self.in_order.front().map(|e| e.ts);
        let b = self.out_of_order.peek().map(|e| e.0.ts);
        a.into_iter().chain(b).min()
    }

    /// Takes the records whose time the table is complete through (`upper` has passed it).
    fn ready(&mut self, upper: &Antichain<Time>, out: &mut Vec<Entry>) {
        let done = |ts: Micros| !upper.less_equal(&(ts.max(0) as Time));
        while self.in_order.front().is_some_and(|e| done(e.ts)) {
            out.extend(self.in_order.pop_front());
        }
        while self.out_of_order.peek().is_some_and(|e| done(e.0.ts)) {
            out.extend(self.out_of_order.pop().map(|e| e.0));
        }
    }

    /// Row `e`'s batch.
    fn chunk(&self, e: &Entry) -> &Chunk {
        &self.chunks[e.chunk as usize].as_ref().expect("kept").0
    }

    /// Lets go of `done`'s rows, and of each batch whose last waiting row that was.
    fn release(&mut self, done: &[Entry]) {
        for e in done {
            let slot = &mut self.chunks[e.chunk as usize];
            let (_, left) = slot.as_mut().expect("kept");
            *left -= 1;
            if *left == 0 {
                *slot = None;
                self.free.push(e.chunk);
            }
        }
    }
}

/// Builds a temporal join of `left` (batches already on the worker that holds their keys) with
/// an arranged table. The first join of a table passes `owner = true` and carries the table's
/// dead letters. With `checkpoint`, the left input goes through a
/// [`Barrier`](crate::checkpoint::Barrier), the left records waiting for the table go into each
/// checkpoint (once the table is complete through its time), and a restored run starts with
/// them.
#[allow(clippy::too_many_arguments)]
pub fn join_table<'s>(
    left: Batches<'s>,
    table: &Table<'s>,
    owner: bool,
    spec: Arc<TemporalJoinSpec>,
    metrics: Arc<ComponentMetrics>,
    ctl: crate::control::RunControl,
    checkpoint: Option<crate::checkpoint::Checkpointing<'s>>,
) -> JoinStreams<'s> {
    use crate::checkpoint::{Barrier, Decision};
    let worker = left.scope().index();
    let mut builder = OperatorBuilder::new(spec.common.id.to_string(), left.scope());
    let mut in_left = builder.new_input(left, Pipeline);
    let mut in_table = builder.new_input(table.arranged.stream.clone(), Pipeline);
    let (mut control, ck) = match checkpoint {
        Some((c, ck)) => {
            ck.register(worker);
            (Some(builder.new_input(c, Pipeline)), Some(ck))
        }
        None => (None, None),
    };
    let (mut outs, streams) = JoinOutputs::new(&mut builder);
    let mut trace = table.arranged.trace.clone();
    builder.build(move |mut caps| {
        let c = &spec.common;
        let rcols = spec.right_cols();
        let rows = Rows::new(
            rcols
                .iter()
                .map(|&p| c.schemas[1].field(p).data_type().clone())
                .collect(),
        );
        // Where each output field is: (side, a left field's position or an index among the
        // version's fields).
        let at: Vec<(u8, usize)> = c
            .output
            .iter()
            .map(|&(side, p)| match side {
                0 => (0, p),
                _ => (1, rcols.iter().position(|&q| q == p).expect("kept")),
            })
            .collect();
        let mut waiting = Waiting::default();
        let mut state = 0i64;
        if let Some(bytes) = ck.as_ref().and_then(|ck| ck.restored(&c.id, worker)) {
            match Chunk::from_ipc(bytes) {
                Ok(chunk) if !chunk.is_empty() => {
                    let b = JoinBatch::new(c, 0, &chunk);
                    let slot = waiting.keep(&chunk, chunk.len() as u32);
                    for r in 0..chunk.len() {
                        waiting.push(Entry {
                            ts: b.time(r).unwrap_or(0),
                            key: VersionKey::of(&b, r),
                            chunk: slot,
                            row: r as u32,
                        });
                    }
                    state = chunk.len() as i64;
                }
                Ok(_) => {}
                Err(e) => ctl.fail(format!(
                    "join `{}`: its waiting records in the checkpoint cannot be read: {e}; run with --from-scratch to start over",
                    c.id
                )),
            }
        }
        // Restored waiting records are looked up from the first capability.
        let mut first: Option<Capability<Time>> = caps.drain(..).next();
        // One capability, at or below every waiting record's time.
        let mut held: Option<Capability<Time>> = None;
        let mut upper = Antichain::from_elem(0);
        let mut ready = Vec::new();
        // Indices into `ready` in key order: (key hash, time, index).
        let mut order: Vec<(u64, Micros, u32)> = Vec::new();
        let mut met: Vec<(usize, Option<Version>)> = Vec::new();
        let (mut dead_buf, mut late_buf, mut unmet) = (Vec::new(), Vec::new(), Vec::new());
        let mut gauge = crate::metrics::StateGauge::default();
        let mut barrier: Barrier<([Capability<Time>; 4], Chunk)> = Barrier::default();
        move |frontiers| {
            let spec = &*spec;
            let c = &spec.common;
            let (mut n_in, mut n_out) = (0u64, 0u64);
            let mut counts = LateCounts::default();
            if let Some(f) = first.take() {
                if let Some(ts) = waiting.earliest() {
                    held = Some(f.delayed(&(ts.max(0) as Time).max(*f.time())));
                }
            }
            if let Some(control) = control.as_mut() {
                control.for_each(|_, data: &mut Vec<Decision>| {
                    for d in data.drain(..) {
                        barrier.decide(d.at, d.seq);
                    }
                });
                barrier.set_control(frontiers[2].frontier().iter().next().copied());
            }
            // The table's batches are read through its trace.
            in_table.for_each(|_, _| {});
            // Takes a batch of left records at time `t`: each waits for the table.
            let mut take = |cap: &dyn crate::batch::Delay,
                            t: Time,
                            chunk: &Chunk,
                            waiting: &mut Waiting,
                            held: &mut Option<Capability<Time>>,
                            outs: &mut JoinOutputs|
             -> (u64, i64) {
                n_in += chunk.len() as u64;
                let b = JoinBatch::new(c, 0, chunk);
                let slot = waiting.keep(chunk, 0);
                let mut kept = 0;
                for r in 0..chunk.len() {
                    let (dead, late) = (&mut dead_buf, &mut late_buf);
                    let Some(ts) = c.on_time(0, &b, r, t, GONE, &mut counts, dead, late) else {
                        continue;
                    };
                    let tt = ts.max(0) as Time;
                    if b.key_is_null(r) {
                        // A NULL key equals no key: no version, now or later.
                        if spec.left_outer {
                            unmet.push(c.joined_src(Src::Row(chunk, r), Src::Missing, &[], tt));
                        }
                        continue;
                    }
                    let key = VersionKey::of(&b, r);
                    waiting.push(Entry {
                        ts,
                        key,
                        chunk: slot,
                        row: r as u32,
                    });
                    kept += 1;
                    if held.as_ref().is_none_or(|h| *h.time() > tt) {
                        *held = Some(cap.at(&tt, 0));
                    }
                }
                waiting.waits(slot, kept);
                let out = give_at(&mut outs.results, cap, t, 0, &mut unmet);
                outs.give_set_aside(cap, t, 0, &mut dead_buf, &mut late_buf);
                (out, kept as i64)
            };
            let checkpointing = control.is_some();
            in_left.for_each(|cap: InputCapability<Time>, data: &mut Vec<Chunk>| {
                let Some(&t) = cap.least() else { return };
                if checkpointing && !barrier.admits(t) {
                    for chunk in data.drain(..) {
                        let caps = [0, 1, 2, 3].map(|p| cap.delayed(&t, p));
                        barrier.hold(t, (caps, chunk));
                    }
                    return;
                }
                for chunk in data.iter() {
                    let (out, kept) = take(&cap, t, chunk, &mut waiting, &mut held, &mut outs);
                    n_out += out;
                    state += kept;
                }
            });
            loop {
                for (t, (caps, chunk)) in barrier.release() {
                    let (out, kept) = take(&caps, t, &chunk, &mut waiting, &mut held, &mut outs);
                    n_out += out;
                    state += kept;
                }
                // Look up the records the table is complete for, in key order.
                trace.read_upper(&mut upper);
                waiting.ready(&upper, &mut ready);
                if !ready.is_empty() {
                    // In key order (the cursor only moves forward), then time: by hash, and by
                    // bytes where two keys' hashes collide.
                    order.clear();
                    order.extend(
                        ready
                            .iter()
                            .enumerate()
                            .map(|(i, e)| (e.key.hash, e.ts, i as u32)),
                    );
                    order.sort_unstable();
                    let mut i = 0;
                    while i < order.len() {
                        let h = order[i].0;
                        let j = i + order[i..].partition_point(|o| o.0 == h);
                        let first = &ready[order[i].2 as usize].key;
                        if order[i..j]
                            .iter()
                            .any(|o| ready[o.2 as usize].key != *first)
                        {
                            order[i..j].sort_by(|a, b| {
                                let (x, y) = (&ready[a.2 as usize], &ready[b.2 as usize]);
                                (&x.key, x.ts).cmp(&(&y.key, y.ts))
                            });
                        }
                        i = j;
                    }
                    let batches = trace
                        .batches_through(upper.borrow())
                        .expect("the table's trace holds its upper");
                    // A cursor per batch (keys are sought in order in each); a key's versions
                    // and their updates at or before the lookup time are summed across batches.
                    let mut cursors: Vec<_> = batches.iter().map(|b| b.cursor()).collect();
                    let mut found: Vec<(&Version, isize)> = Vec::new();
                    for &(_, _, n) in &order {
                        let (n, e) = (n as usize, &ready[n as usize]);
                        let t = e.ts.max(0) as Time;
                        found.clear();
                        for (cursor, b) in cursors.iter_mut().zip(&batches) {
                            cursor.seek_key(b, &e.key);
                            if cursor.get_key(b) != Some(&e.key) {
                                continue;
                            }
                            cursor.rewind_vals(b);
                            while let Some(v) = cursor.get_val(b) {
                                if v.ts > e.ts {
                                    break;
                                }
                                let mut sum = 0;
                                cursor.map_times(b, |time, diff| {
                                    if *time <= t {
                                        sum += *diff;
                                    }
                                });
                                if sum != 0 {
                                    found.push((v, sum));
                                }
                                cursor.step_val(b);
                            }
                        }
                        // Valid at `t`: the version whose updates at or before `t` add up to one
                        // (the latest, should superseded ones not have cancelled out yet).
                        if found.len() > 1 {
                            found.sort_by(|a, b| a.0.cmp(b.0));
                        }
                        let mut best: Option<&Version> = None;
                        let mut i = 0;
                        while i < found.len() {
                            let (v, mut sum) = found[i];
                            i += 1;
                            while i < found.len() && found[i].0 == v {
                                sum += found[i].1;
                                i += 1;
                            }
                            if sum > 0 {
                                best = Some(v);
                            }
                        }
                        if best.is_some() || spec.left_outer {
                            met.push((n, best.cloned()));
                        }
                    }
                    // Decode the versions' fields together, then build the results.
                    let cols = rows.columns(
                        met.iter()
                            .filter_map(|(_, v)| v.as_ref())
                            .map(|v| v.row.as_slice()),
                    );
                    let mut buf = Vec::with_capacity(met.len());
                    let mut next = 0;
                    for (n, v) in met.drain(..) {
                        let e = &ready[n];
                        let (chunk, row) = (waiting.chunk(e), e.row as usize);
                        let i = next;
                        if v.is_some() {
                            next += 1;
                        }
                        let values = at
                            .iter()
                            .map(|&(side, k)| match (side, &v) {
                                (0, _) => chunk.value(k, row),
                                (_, Some(_)) => value_at(&cols[k], i),
                                (_, None) => Value::Null,
                            })
                            .collect();
                        let left_ingest = chunk.meta(row).ingest;
                        let ingest = left_ingest.max(v.as_ref().map_or(Micros::MIN, |v| v.ingest));
                        buf.push(Record {
                            values,
                            meta: Meta {
                                ingest,
                                watermark: e.ts.max(0) as Time,
                            },
                        });
                    }
                    n_out += buf.len() as u64;
                    if !buf.is_empty() {
                        let h = held.as_ref().expect("held for waiting records");
                        outs.results.activate().session(h).give_container(&mut buf);
                    }
                    state -= ready.len() as i64;
                    waiting.release(&ready);
                    ready.clear();
                }

                // Hold only what the waiting records need.
                let next = waiting.earliest().map(|ts| ts.max(0) as Time);
                match (next, held.as_mut()) {
                    (None, _) => held = None,
                    (Some(t), Some(h)) if *h.time() < t => h.downgrade(&t),
                    _ => {}
                }
                // A checkpoint is taken once the table is complete through its time: then
                // every record still waiting is at or after it.
                let complete = match (frontiers[0].frontier().iter().min(), upper.iter().min()) {
                    (Some(&l), Some(&u)) => Some(l.min(u)),
                    (Some(&l), None) => Some(l),
                    (None, u) => u.copied(),
                };
                let (Some(ck), Some((_, seq))) = (ck.as_ref(), barrier.due(complete)) else {
                    break;
                };
                let started = crate::checkpoint::wall_micros();
                let bytes = snapshot_waiting(&waiting, &c.schemas[0]);
                if let Err(e) = crate::checkpoint::write_part(ck, seq, &c.id, worker, started, &bytes)
                {
                    ctl.fail(format!("join `{}`: cannot write checkpoint {seq}: {e}", c.id));
                }
                barrier.taken();
            }
            // Let the table compact up to the earliest time a lookup may still ask for.
            let next = waiting
                .earliest()
                .map(|ts| ts.max(0) as Time)
                .into_iter()
                .chain(barrier.earliest_held())
                .min();
            let mut limit: Antichain<Time> = frontiers[0].frontier().to_owned();
            if let Some(t) = next {
                limit = limit.iter().map(|&l| l.min(t)).collect();
                if limit.is_empty() {
                    limit.insert(t);
                }
            }
            let limit: Antichain<Time> = match (limit.iter().min(), upper.iter().min()) {
                (Some(&l), Some(&u)) => Antichain::from_elem(l.min(u)),
                (Some(&l), None) => Antichain::from_elem(l),
                (None, _) => upper.clone(),
            };
            trace.set_logical_compaction(limit.borrow());
            trace.set_physical_compaction(limit.borrow());
            metrics.add_in(n_in);
            metrics.add_out(n_out);
            counts.report(&metrics);
            // What this activation changed (the state restored counts in the first).
            let state = std::mem::take(&mut state);
            metrics.add_state(state);
            if state > 0 {
                gauge.guard(&metrics, &ctl, c.max_state, |h, m| {
                    max_state_message(c, h, m)
                });
            }
        }
    });
    JoinStreams {
        results: streams.results,
        dead: if owner {
            streams.dead.concat(table.dead.clone())
        } else {
            streams.dead
        },
        late_left: streams.late_left,
        late_right: table.late.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Field, Schema};
    use crate::value::FieldType;
    use std::sync::Mutex;
    use timely::dataflow::operators::capture::Extract;
    use timely::dataflow::operators::{Capture, ToStream};

    /// Fields: ts, k (u64), s (string), id (u64).
    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("ts", FieldType::Timestamp),
            Field::new("k", FieldType::U64),
            Field::new("s", FieldType::String),
            Field::new("id", FieldType::U64),
        ])
        .with_time("ts")
    }

    /// `n` records with keys from a small domain and many equal times, ids from `first`.
    fn records(n: u64, first: u64, seed: u64) -> Vec<(i64, u64, String, u64)> {
        let mut x = seed;
        (0..n)
            .map(|i| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let ts = ((x >> 33) % 500) as i64;
                let k = (x >> 20) % 7;
                // Short keys, and one longer than Packed keeps inline.
                let s = ["a", "bb", "", "a key longer than twenty-two bytes"]
                    [((x >> 12) % 4) as usize]
                    .to_string();
                (ts, k, s, first + i)
            })
            .collect()
    }

    fn rec((ts, k, s, id): &(i64, u64, String, u64)) -> Record {
        Record::new(vec![
            Value::Ts(*ts),
            Value::U64(*k),
            Value::Str(s.as_str().into()),
            Value::U64(*id),
        ])
    }

    /// The temporal join on an integer key, a string key and a key of both (Arrow's row
    /// format), inner and left outer, on 1 and 3 workers, against a brute-force reference: each
    /// left record meets the right record of its key with the largest (time, id) at or before
    /// its time.
    #[test]
    fn every_key_kind_matches_the_brute_force_reference() {
        let lefts = records(2_000, 0, 1);
        let rights = records(400, 100_000, 2);
        for key in [vec![1], vec![2], vec![2, 1]] {
            for outer in [false, true] {
                let mut want: Vec<(u64, Option<u64>)> = lefts
                    .iter()
                    .filter_map(|l| {
                        let same = |r: &&(i64, u64, String, u64)| {
                            key.iter().all(|&f| match f {
                                1 => r.1 == l.1,
                                _ => r.2 == l.2,
                            })
                        };
                        let best = rights
                            .iter()
                            .filter(same)
                            .filter(|r| r.0 <= l.0)
                            .max_by_key(|r| (r.0, r.3))
                            .map(|r| r.3);
                        (best.is_some() || outer).then_some((l.3, best))
                    })
                    .collect();
                want.sort();
                assert!(want.iter().any(|w| w.1.is_none()) == outer);
                for workers in [1, 3] {
                    let (tx, rx) = std::sync::mpsc::channel();
                    let tx = Mutex::new(tx);
                    let (l, r, k) = (lefts.clone(), rights.clone(), key.clone());
                    timely::execute(timely::Config::process(workers), move |worker| {
                        let (me, n) = (worker.index(), worker.peers());
                        let tx = tx.lock().unwrap().clone();
                        let common = JoinCommon::new(
                            "j",
                            &schema(),
                            &schema(),
                            k.clone(),
                            k.clone(),
                            vec![(1, 3), (0, 3)],
                            LatePolicy::DeadLetter,
                        );
                        let spec = Arc::new(TemporalJoinSpec {
                            common,
                            left_outer: outer,
                        });
                        let mine = |v: &[(i64, u64, String, u64)]| -> Vec<Record> {
                            v.iter().skip(me).step_by(n).map(rec).collect()
                        };
                        let (l, r) = (mine(&l), mine(&r));
                        worker.dataflow::<Time, _, _>(move |scope| {
                            let l = l.to_stream(scope).container::<Vec<Record>>();
                            let r = r.to_stream(scope).container::<Vec<Record>>();
                            temporal_join(l, r, spec, Arc::default())
                                .results
                                .capture_into(tx);
                        });
                    })
                    .unwrap();
                    let mut got: Vec<(u64, Option<u64>)> = rx
                        .extract()
                        .into_iter()
                        .flat_map(|(_, v)| v)
                        .map(|r| (r.values[1].as_u64().unwrap(), r.values[0].as_u64()))
                        .collect();
                    got.sort();
                    assert_eq!(got, want, "key {key:?}, outer {outer}, {workers} workers");
                }
            }
        }
    }
}
