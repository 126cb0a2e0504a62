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
use crate::join::{read_join_part, write_join_part, SavedRecord};
use crate::join::{JoinBatch, JoinCommon, JoinOutputs, JoinStreams, Src};
use crate::late::LateCounts;
use crate::metrics::ComponentMetrics;
use crate::schema::Record;
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
    interval_join_batches(
        l,
        r,
        spec,
        metrics,
        crate::control::RunControl::default(),
        None,
    )
}

/// An interval join's state on one worker, and what one activation counts.
struct Work {
    sides: [Side; 2],
    /// Unmatched left records are emitted at `time + upper`: held at or below the earliest.
    held: Option<Capability<Time>>,
    buf: Vec<Record>,
    dead: Vec<Record>,
    late: Vec<Record>,
    found: Vec<u32>,
    n_in: u64,
    out_n: u64,
    state: i64,
    counts: LateCounts,
}

impl Work {
    /// Joins a batch of `side` at time `t` against the other side, then stores it.
    fn apply(
        &mut self,
        spec: &IntervalJoinSpec,
        side: usize,
        cap: &dyn crate::batch::Delay,
        t: Time,
        chunk: &Chunk,
        outs: &mut JoinOutputs,
    ) {
        let c = &spec.common;
        self.n_in += chunk.len() as u64;
        let b = JoinBatch::new(c, side, chunk);
        for r in 0..chunk.len() {
            let (dead, late) = (&mut self.dead, &mut self.late);
            let gone = "records it should join may be gone";
            let Some(ts) = c.on_time(side, &b, r, t, gone, &mut self.counts, dead, late) else {
                continue;
            };
            let wm = b.watermark_at(r, t);
            let [left_side, right_side] = &mut self.sides;
            if side == 0 {
                let lo = ts.saturating_add(spec.lower);
                let hi = ts.saturating_add(spec.upper);
                right_side.matches(&b, r, lo, hi, &mut self.found);
                for &row in &self.found {
                    self.buf.push(c.joined_src(
                        Src::Row(chunk, r),
                        Src::Stored(&right_side.stored, row),
                        &[],
                        wm,
                    ));
                }
                let row = left_side.insert(c, &b, r, ts);
                if !self.found.is_empty() {
                    left_side.stored.set_matched(row);
                } else if spec.left_outer {
                    // Its outer row goes out at `time + upper`: hold for it.
                    let at = (hi.max(0) as Time).max(t);
                    if self.held.as_ref().is_none_or(|h| *h.time() > at) {
                        self.held = Some(cap.at(&at, 0));
                    }
                }
            } else {
                let lo = ts.saturating_sub(spec.upper);
                let hi = ts.saturating_sub(spec.lower);
                left_side.matches(&b, r, lo, hi, &mut self.found);
                for &row in &self.found {
                    left_side.stored.set_matched(row);
                    self.buf.push(c.joined_src(
                        Src::Stored(&left_side.stored, row),
                        Src::Row(chunk, r),
                        &[],
                        wm,
                    ));
                }
                right_side.insert(c, &b, r, ts);
            }
            self.state += 1;
        }
        self.out_n += give_at(&mut outs.results, cap, t, 0, &mut self.buf);
        outs.give_set_aside(cap, t, side, &mut self.dead, &mut self.late);
    }

    /// Frees what no on-time record can match once both inputs' frontier is `f`; emits
    /// unmatched left records; holds only what those still need.
    fn expire(&mut self, spec: &IntervalJoinSpec, f: Option<Time>, outs: &mut JoinOutputs) {
        let c = &spec.common;
        let passed = |x: Micros| f.is_none_or(|f| f > x.max(0) as Time);
        let mut outer = Vec::new();
        let (left_outer, after) = (spec.left_outer, spec.upper);
        self.state -= self.sides[0].expire(passed, |st, row| {
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
        self.state -= self.sides[1].expire(passed, |_, _| {});
        if !outer.is_empty() {
            let h = self.held.as_ref().expect("held for unmatched left records");
            self.out_n += outer.len() as u64;
            outs.results
                .activate()
                .session(h)
                .give_container(&mut outer);
        }
        let next = if spec.left_outer {
            self.sides[0]
                .expiry
                .peek()
                .map(|Reverse((exp, _))| (*exp).max(0) as Time)
        } else {
            None
        };
        match (next, self.held.as_mut()) {
            (None, _) => self.held = None,
            (Some(t), Some(h)) if *h.time() < t => h.downgrade(&t),
            _ => {}
        }
    }
}

/// Builds an interval join of batches already on the worker that holds their keys' state.
/// With `checkpoint`, both inputs go through a [`Barrier`](crate::checkpoint::Barrier), the
/// stored records of both sides go into each checkpoint, and a restored run starts with them.
pub fn interval_join_batches<'s>(
    left: Batches<'s>,
    right: Batches<'s>,
    spec: Arc<IntervalJoinSpec>,
    metrics: Arc<ComponentMetrics>,
    ctl: crate::control::RunControl,
    checkpoint: Option<crate::checkpoint::Checkpointing<'s>>,
) -> JoinStreams<'s> {
    use crate::checkpoint::{Barrier, Decision};
    let worker = left.scope().index();
    let mut builder = OperatorBuilder::new(spec.common.id.to_string(), left.scope());
    let mut in_left = builder.new_input(left, Pipeline);
    let mut in_right = builder.new_input(right, Pipeline);
    let (mut control, ck) = match checkpoint {
        Some((c, ck)) => {
            ck.register(worker);
            (Some(builder.new_input(c, Pipeline)), Some(ck))
        }
        None => (None, None),
    };
    let (mut outs, streams) = JoinOutputs::new(&mut builder);
    builder.build(move |mut caps| {
        let mut w = Work {
            sides: [Side::new(&spec, 0), Side::new(&spec, 1)],
            held: None,
            buf: Vec::new(),
            dead: Vec::new(),
            late: Vec::new(),
            found: Vec::new(),
            n_in: 0,
            out_n: 0,
            state: 0,
            counts: LateCounts::default(),
        };
        if let Some(bytes) = ck.as_ref().and_then(|ck| ck.restored(&spec.common.id, worker)) {
            match restore(&spec, &mut w.sides, bytes) {
                Ok(n) => w.state = n,
                Err(e) => ctl.fail(format!(
                    "join `{}`: its state in the checkpoint cannot be read: {e}; run with --from-scratch to start over",
                    spec.common.id
                )),
            }
        }
        // Restored unmatched left records are emitted from the first capability.
        let mut first: Option<Capability<Time>> = caps.drain(..).next();
        let mut gauge = crate::metrics::StateGauge::default();
        let mut barrier: Barrier<(usize, [Capability<Time>; 4], Chunk)> = Barrier::default();
        move |frontiers| {
            let spec = &*spec;
            let c = &spec.common;
            if let Some(f) = first.take() {
                if spec.left_outer && !w.sides[0].stored.is_empty() {
                    w.held = Some(f);
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
            let checkpointing = control.is_some();
            for side in 0..2 {
                let mut take = |cap: InputCapability<Time>, data: &mut Vec<Chunk>| {
                    let Some(&t) = cap.least() else { return };
                    if checkpointing && !barrier.admits(t) {
                        for chunk in data.drain(..) {
                            let caps = [0, 1, 2, 3].map(|p| cap.delayed(&t, p));
                            barrier.hold(t, (side, caps, chunk));
                        }
                        return;
                    }
                    for chunk in data.iter() {
                        w.apply(spec, side, &cap, t, chunk, &mut outs);
                    }
                };
                if side == 0 {
                    in_left.for_each(|cap, data| take(cap, data));
                } else {
                    in_right.for_each(|cap, data| take(cap, data));
                }
            }
            let least = |k: usize| frontiers[k].frontier().iter().next().copied();
            let data_frontier = match (least(0), least(1)) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if let Some(ck) = ck.as_ref() {
                loop {
                    for (t, (side, caps, chunk)) in barrier.release() {
                        w.apply(spec, side, &caps, t, &chunk, &mut outs);
                    }
                    let Some((at, seq)) = barrier.due(data_frontier) else {
                        break;
                    };
                    let started = crate::checkpoint::wall_micros();
                    w.expire(spec, (at != crate::checkpoint::END).then_some(at), &mut outs);
                    let bytes = snapshot(c, &w.sides);
                    if let Err(e) =
                        crate::checkpoint::write_part(ck, seq, &c.id, worker, started, &bytes)
                    {
                        ctl.fail(format!("join `{}`: cannot write checkpoint {seq}: {e}", c.id));
                    }
                    barrier.taken();
                }
                w.expire(spec, barrier.frontier(data_frontier), &mut outs);
            } else {
                w.expire(spec, data_frontier, &mut outs);
            }
            metrics.add_in(std::mem::take(&mut w.n_in));
            metrics.add_out(std::mem::take(&mut w.out_n));
            std::mem::take(&mut w.counts).report(&metrics);
            let state = std::mem::take(&mut w.state);
            metrics.add_state(state);
            let sides = &w.sides;
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

/// Both sides' stored records as a checkpoint part (see [`crate::join::write_join_part`]); the
/// extra section holds the left records' matched flags, one byte each.
fn snapshot(c: &JoinCommon, sides: &[Side; 2]) -> Vec<u8> {
    let mut matched = Vec::new();
    let chunks = [0, 1].map(|s| {
        let side = &sides[s];
        let mut records = Vec::new();
        for k in side.keys.slots() {
            let key = side.keys.values(&c.key_kind, k);
            for &row in &side.index[k as usize] {
                let st = &side.stored;
                records.push(SavedRecord {
                    key: key.clone(),
                    fields: (0..c.stored[s].len()).map(|f| st.value(row, f)).collect(),
                    ts: st.ts(row),
                    ingest: st.ingest(row),
                });
                if s == 0 {
                    matched.push(u8::from(st.matched(row)));
                }
            }
        }
        c.saved_chunk(s, &records)
    });
    write_join_part([&chunks[0], &chunks[1]], &matched)
}

/// Stores a checkpoint's records into `sides`; returns how many.
fn restore(spec: &IntervalJoinSpec, sides: &mut [Side; 2], bytes: &[u8]) -> Result<i64, String> {
    let c = &spec.common;
    let (left, right, matched) = read_join_part(bytes)?;
    let mut n = 0;
    for (s, chunk) in [(0, &left), (1, &right)] {
        if chunk.is_empty() {
            continue;
        }
        let b = JoinBatch::new(c, s, chunk);
        for r in 0..chunk.len() {
            let ts = b.time(r).ok_or("a stored record without its time")?;
            let row = sides[s].insert(c, &b, r, ts);
            if s == 0 && matched.get(r) == Some(&1) {
                sides[s].stored.set_matched(row);
            }
            n += 1;
        }
    }
    Ok(n)
}
