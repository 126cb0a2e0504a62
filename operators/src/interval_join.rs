//! The interval join: a left record joins the right records with the same key whose event
//! time lies within `[left time + lower, left time + upper]`. Inner, or left outer: a left
//! record that found no match is emitted with NULL right fields once the watermark has passed
//! `left time + upper` (no on-time right record can match it after that).
//!
//! Both inputs are exchanged by a deterministic hash of their key. Each record, when it
//! arrives, is joined against the other side's stored records and then stored itself, so every
//! pair is emitted exactly once, by whichever record arrives second. A left record is kept until
//! the frontier passes `time + upper`, a right record until it passes `time - lower`: then no
//! on-time record of the other side can match it, and its state is freed.
//!
//! A record is **late** when its event time is behind its source partition's watermark
//! ([`Meta::watermark`]): a record it should have matched may already be gone. Late records
//! are counted and handled by the join's [`LatePolicy`] (dead-letter, drop or side output), so
//! the result never depends on scheduling, batching or the number of workers.
//!
//! ```
//! use weir_operators::exchange::Routing;
//! use std::sync::{Arc, Mutex};
//! use timely::dataflow::operators::{Capture, ToStream, capture::Extract};
//! use weir_operators::interval_join::{interval_join, IntervalJoinSpec};
//! use weir_operators::join::JoinCommon;
//! use weir_operators::schema::{Field, Record, Schema};
//! use weir_operators::value::{FieldType, Value};
//! use weir_operators::window::LatePolicy;
//!
//! let schema = Schema::new(vec![Field::new("ts", FieldType::Timestamp), Field::new("user", FieldType::String)])
//!     .with_time("ts");
//! // view.user = click.user, the click 0..10 after the view; output: view ts, click ts.
//! let common = JoinCommon::new("j", &schema, &schema, vec![1], vec![1], vec![(0, 0), (1, 0)], LatePolicy::DeadLetter);
//! let spec = Arc::new(IntervalJoinSpec { common, lower: 0, upper: 10, left_outer: false });
//! let rec = |ts: i64, u: &str| { let mut r = Record::new(vec![Value::Ts(ts), Value::Str(u.into())]); r.meta.watermark = 0; r };
//! let (tx, rx) = std::sync::mpsc::channel();
//! let tx = Mutex::new(tx);
//! timely::example(move |scope| {
//!     let views = vec![rec(100, "a"), rec(200, "b")].to_stream(scope).container::<Vec<Record>>();
//!     let clicks = vec![rec(105, "a"), rec(300, "b")].to_stream(scope).container::<Vec<Record>>();
//!     let j = interval_join(views, clicks, Routing::ByKey, spec, Arc::default());
//!     j.results.capture_into(tx.lock().unwrap().clone());
//! });
//! let got: Vec<Vec<Value>> = rx.extract().into_iter().flat_map(|(_, v)| v).map(|r| r.values).collect();
//! assert_eq!(got, vec![vec![Value::Ts(100), Value::Ts(105)]]);
//! ```

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::{Capability, InputCapability};

use crate::batch::give_at;
use crate::chunk::Chunk;
use crate::join::{JoinBatch, JoinCommon, JoinOutputs, JoinStreams, Src};
use crate::late::LateCounts;
use crate::metrics::ComponentMetrics;
use crate::side_store::Stored;
use crate::value::Micros;
use crate::window::Groups;
use crate::{Batches, Records, Time};

/// A compiled interval join.
#[derive(Debug)]
pub struct IntervalJoinSpec {
    /// Keys, times, output and late policy.
    pub common: JoinCommon,
    /// The interval, relative to the left time (µs, `lower <= upper`).
    pub lower: Micros,
    /// See `lower`.
    pub upper: Micros,
    /// Whether unmatched left records are emitted (left outer join).
    pub left_outer: bool,
}

/// The stored records of one side: in columns ([`Stored`]), indexed per key by event time.
struct Side {
    stored: Stored,
    keys: Groups,
    /// Per key slot: stored rows, sorted by event time.
    index: Vec<VecDeque<u32>>,
    /// (expiry of a key's earliest record, key slot); entries may be stale.
    expiry: BinaryHeap<Reverse<(Micros, u32)>>,
    /// A record of this side expires at its time plus this.
    expires_after: Micros,
    /// Keys whose last record expired (dropped in sweeps).
    empty: usize,
}

impl Side {
    fn new(spec: &IntervalJoinSpec, side: usize) -> Side {
        let c = &spec.common;
        Side {
            stored: c.new_store(side),
            keys: Groups::new(&c.key_kind, true),
            index: Vec::new(),
            expiry: BinaryHeap::new(),
            expires_after: if side == 0 { spec.upper } else { -spec.lower },
            empty: 0,
        }
    }

    /// Stores a batch row under its key; returns its stored row.
    fn insert(&mut self, c: &JoinCommon, b: &JoinBatch<'_>, r: usize, ts: Micros) -> u32 {
        let row = c.store(&mut self.stored, b, r, ts);
        let (k, new) = self.keys.slot(&b.keys, r, b.hashes[r]);
        let ku = k as usize;
        if ku >= self.index.len() {
            self.index.resize_with(ku + 1, VecDeque::new);
        }
        let ix = &mut self.index[ku];
        if new {
            ix.clear();
        } else if ix.is_empty() {
            self.empty = self.empty.saturating_sub(1);
        }
        if ix.len() == ix.capacity() {
            // Grown by a quarter, not doubled: a key may hold many records.
            ix.reserve_exact((ix.len() / 4).max(4));
        }
        let st = &self.stored;
        let at = if ix.back().is_none_or(|&last| st.ts(last) <= ts) {
            ix.push_back(row);
            ix.len() - 1
        } else {
            let at = ix.partition_point(|&row| st.ts(row) <= ts);
            ix.insert(at, row);
            at
        };
        if at == 0 {
            self.expiry
                .push(Reverse((ts.saturating_add(self.expires_after), k)));
        }
        row
    }

    /// The stored rows of batch row `r`'s key with times in `lo..=hi`, into `out`.
    fn matches(&self, b: &JoinBatch<'_>, r: usize, lo: Micros, hi: Micros, out: &mut Vec<u32>) {
        out.clear();
        if b.key_is_null(r) {
            return; // A NULL key equals no key.
        }
        let Some(k) = self.keys.find(&b.keys, r, b.hashes[r]) else {
            return;
        };
        let (ix, st) = (&self.index[k as usize], &self.stored);
        let from = ix.partition_point(|&row| st.ts(row) < lo);
        out.extend(
            ix.range(from..)
                .take_while(|&&row| st.ts(row) <= hi)
                .copied(),
        );
    }

    /// Frees every record whose expiry `passed`, calling `gone` on each first.
    fn expire(
        &mut self,
        passed: impl Fn(Micros) -> bool,
        mut gone: impl FnMut(&Stored, u32),
    ) -> i64 {
        let mut freed = 0;
        while let Some(&Reverse((exp, k))) = self.expiry.peek() {
            if !passed(exp) {
                break;
            }
            self.expiry.pop();
            let Some(ix) = self.index.get_mut(k as usize) else {
                continue;
            };
            let mut popped = false;
            while let Some(&row) = ix.front() {
                if !passed(self.stored.ts(row).saturating_add(self.expires_after)) {
                    break;
                }
                ix.pop_front();
                gone(&self.stored, row);
                self.stored.free(row);
                freed += 1;
                popped = true;
            }
            if !popped {
                continue; // a stale entry
            }
            match ix.front() {
                Some(&row) => self.expiry.push(Reverse((
                    self.stored.ts(row).saturating_add(self.expires_after),
                    k,
                ))),
                None => self.empty += 1,
            }
        }
        // Keys left without records are dropped in sweeps, once they are half the keys, so a
        // key that comes back soon is not dropped and added again each time.
        if self.empty > 64 && self.empty * 2 > self.keys.len() {
            let gone: Vec<u32> = self
                .keys
                .slots()
                .filter(|&k| self.index[k as usize].is_empty())
                .collect();
            for k in gone {
                self.keys.remove(k);
                self.index[k as usize] = VecDeque::new();
            }
            self.empty = 0;
        }
        if let Some(map) = self.stored.compact() {
            for ix in &mut self.index {
                for row in ix.iter_mut() {
                    *row = map[*row as usize];
                }
            }
        }
        freed
    }

    fn bytes(&self) -> usize {
        self.stored.bytes()
            + self.keys.bytes()
            + self
                .index
                .iter()
                .map(|d| d.capacity() * 4 + 32)
                .sum::<usize>()
            + self.expiry.capacity() * 16
    }
}

/// Builds an interval join of `left` and `right` rows: packs them into chunks, exchanges them
/// by key (with [`Routing::ByKey`](crate::exchange::Routing::ByKey)) and runs
/// [`interval_join_batches`].
pub fn interval_join<'s>(
    left: Records<'s>,
    right: Records<'s>,
    routing: crate::exchange::Routing,
    spec: Arc<IntervalJoinSpec>,
    metrics: Arc<ComponentMetrics>,
) -> JoinStreams<'s> {
    let c = &spec.common;
    let (l, r) = crate::join::keyed_batches(c, left, right, routing);
    interval_join_batches(l, r, spec, metrics, crate::control::RunControl::default())
}

/// Builds an interval join of batches already on the worker that holds their keys' state.
pub fn interval_join_batches<'s>(
    left: Batches<'s>,
    right: Batches<'s>,
    spec: Arc<IntervalJoinSpec>,
    metrics: Arc<ComponentMetrics>,
    ctl: crate::control::RunControl,
) -> JoinStreams<'s> {
    let mut builder = OperatorBuilder::new(spec.common.id.to_string(), left.scope());
    let mut in_left = builder.new_input(left, Pipeline);
    let mut in_right = builder.new_input(right, Pipeline);
    let (mut outs, streams) = JoinOutputs::new(&mut builder);
    builder.build(move |_caps| {
        let mut sides = [Side::new(&spec, 0), Side::new(&spec, 1)];
        // Unmatched left records are emitted at `time + upper`: held at or below the earliest.
        let mut held: Option<Capability<Time>> = None;
        let mut buf = Vec::new();
        let mut dead_buf = Vec::new();
        let mut late_buf = Vec::new();
        let mut gauge = crate::metrics::StateGauge::default();
        let mut found: Vec<u32> = Vec::new();
        move |frontiers| {
            let spec = &*spec;
            let c = &spec.common;
            let (mut n_in, mut out_n, mut state) = (0u64, 0u64, 0i64);
            let mut counts = LateCounts::default();
            for side in 0..2 {
                let mut handle = |cap: InputCapability<Time>, data: &mut Vec<Chunk>| {
                    let Some(&t) = cap.least() else { return };
                    for chunk in data.iter() {
                        n_in += chunk.len() as u64;
                        let b = JoinBatch::new(c, side, chunk);
                        for r in 0..chunk.len() {
                            let (dead, late) = (&mut dead_buf, &mut late_buf);
                            let gone = "records it should join may be gone";
                            let Some(ts) = c.on_time(side, &b, r, t, gone, &mut counts, dead, late)
                            else {
                                continue;
                            };
                            let wm = b.watermark_at(r, t);
                            let [left_side, right_side] = &mut sides;
                            if side == 0 {
                                let lo = ts.saturating_add(spec.lower);
                                let hi = ts.saturating_add(spec.upper);
                                right_side.matches(&b, r, lo, hi, &mut found);
                                for &row in &found {
                                    buf.push(c.joined_src(
                                        Src::Row(chunk, r),
                                        Src::Stored(&right_side.stored, row),
                                        &[],
                                        wm,
                                    ));
                                }
                                let row = left_side.insert(c, &b, r, ts);
                                if !found.is_empty() {
                                    left_side.stored.set_matched(row);
                                } else if spec.left_outer {
                                    // Its outer row goes out at `time + upper`: hold for it.
                                    let at = (hi.max(0) as Time).max(t);
                                    if held.as_ref().is_none_or(|h| *h.time() > at) {
                                        held = Some(cap.delayed(&at, 0));
                                    }
                                }
                            } else {
                                let lo = ts.saturating_sub(spec.upper);
                                let hi = ts.saturating_sub(spec.lower);
                                left_side.matches(&b, r, lo, hi, &mut found);
                                for &row in &found {
                                    left_side.stored.set_matched(row);
                                    buf.push(c.joined_src(
                                        Src::Stored(&left_side.stored, row),
                                        Src::Row(chunk, r),
                                        &[],
                                        wm,
                                    ));
                                }
                                right_side.insert(c, &b, r, ts);
                            }
                            state += 1;
                        }
                    }
                    out_n += give_at(&mut outs.results, &cap, t, 0, &mut buf);
                    outs.give_set_aside(&cap, t, side, &mut dead_buf, &mut late_buf);
                };
                if side == 0 {
                    in_left.for_each(|cap, data| handle(cap, data));
                } else {
                    in_right.for_each(|cap, data| handle(cap, data));
                }
            }
            // Free what no on-time record can match any more (both inputs must have passed
            // it); emit unmatched left records.
            let passed = |x: Micros| {
                let t = x.max(0) as Time;
                !frontiers[0].less_equal(&t) && !frontiers[1].less_equal(&t)
            };
            let mut outer = Vec::new();
            let left_outer = spec.left_outer;
            let after = spec.upper;
            state -= sides[0].expire(passed, |st, row| {
                if left_outer && !st.matched(row) {
                    let exp = st.ts(row).saturating_add(after);
                    outer.push(c.joined_src(
                        Src::Stored(st, row),
                        Src::Missing,
                        &[],
                        exp.max(0) as Time,
                    ));
                }
            });
            state -= sides[1].expire(passed, |_, _| {});
            if !outer.is_empty() {
                let h = held.as_ref().expect("held for unmatched left records");
                out_n += outer.len() as u64;
                outs.results
                    .activate()
                    .session(h)
                    .give_container(&mut outer);
            }
            // Hold only what the unmatched left records still need.
            let next = if spec.left_outer {
                sides[0]
                    .expiry
                    .peek()
                    .map(|Reverse((exp, _))| (*exp).max(0) as Time)
            } else {
                None
            };
            match (next, held.as_mut()) {
                (None, _) => held = None,
                (Some(t), Some(h)) if *h.time() < t => h.downgrade(&t),
                _ => {}
            }
            metrics.add_in(n_in);
            metrics.add_out(out_n);
            counts.report(&metrics);
            metrics.add_state(state);
            gauge.changed(&metrics, state, || sides[0].bytes() + sides[1].bytes());
            if state != 0 {
                gauge.guard(&metrics, &ctl, c.max_state, |h, m| {
                    crate::join::max_state_message(c, h, m)
                });
            }
        }
    });
    streams
}
