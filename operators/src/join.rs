//! What every join shares: two inputs keyed by equal fields, an output projection from both
//! sides, a late policy, and three kinds of extra output (dead letters, late left, late right).

use smol_str::SmolStr;

use crate::encode::{Encoder, Format};
use crate::late::{LateCounts, LatePolicy};
use crate::schema::{Meta, Record, Schema};
use crate::time::format_rfc3339;
use crate::value::{Micros, Value};
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::InputCapability;

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
        JoinCommon {
            id: SmolStr::new(id),
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

    /// Key positions of a side (0 left, 1 right).
    pub fn keys(&self, side: usize) -> &[usize] {
        if side == 0 {
            &self.left_key
        } else {
            &self.right_key
        }
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
        cap: &InputCapability<Time>,
        t: Time,
        side: usize,
        dead: &mut Vec<Record>,
        late: &mut Vec<Record>,
    ) {
        give_at(&mut self.dead, cap, t, 1, dead);
        give_at(&mut self.late[side], cap, t, 2 + side, late);
    }
}
