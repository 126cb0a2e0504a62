//! The window join: records of the two inputs with equal keys that fall in the same tumbling or
//! sliding window are joined, when the window closes. Inner, left outer (left records whose key
//! has no right record in the window come out with NULL right fields) or full outer (and the
//! same for right records). Each result carries the window's `window_start` and `window_end`
//! after the selected fields.
//!
//! Both inputs are exchanged by a deterministic hash of their key. A window's rows are kept
//! until both inputs' frontiers pass its end, then joined, emitted once and freed. A record is
//! **late** when the first window containing it had closed by its source partition's
//! watermark; late records follow the join's [`LatePolicy`] and are counted.
//!
//! ```
//! use weir_operators::exchange::Routing;
//! use std::sync::{Arc, Mutex};
//! use timely::dataflow::operators::{Capture, ToStream, capture::Extract};
//! use weir_operators::join::JoinCommon;
//! use weir_operators::schema::{Field, Record, Schema};
//! use weir_operators::value::{FieldType, Value};
//! use weir_operators::window::LatePolicy;
//! use weir_operators::window_join::{window_join, JoinHow, WindowJoinSpec};
//!
//! let schema = Schema::new(vec![Field::new("ts", FieldType::Timestamp), Field::new("k", FieldType::String)])
//!     .with_time("ts");
//! let common = JoinCommon::new("j", &schema, &schema, vec![1], vec![1], vec![(0, 1), (1, 0)], LatePolicy::DeadLetter);
//! let spec = Arc::new(WindowJoinSpec { common, size: 10, slide: 10, offset: 0, how: JoinHow::Left });
//! let rec = |ts: i64, k: &str| Record::new(vec![Value::Ts(ts), Value::Str(k.into())]);
//! let (tx, rx) = std::sync::mpsc::channel();
//! let tx = Mutex::new(tx);
//! timely::example(move |scope| {
//!     let l = vec![rec(1, "a"), rec(2, "b")].to_stream(scope).container::<Vec<Record>>();
//!     let r = vec![rec(5, "a"), rec(15, "b")].to_stream(scope).container::<Vec<Record>>();
//!     window_join(l, r, Routing::ByKey, spec, Arc::default()).results.capture_into(tx.lock().unwrap().clone());
//! });
//! let mut got: Vec<Vec<Value>> = rx.extract().into_iter().flat_map(|(_, v)| v).map(|r| r.values).collect();
//! got.sort();
//! assert_eq!(got, vec![
//!     vec![Value::Str("a".into()), Value::Ts(5), Value::Ts(0), Value::Ts(10)],
//!     vec![Value::Str("b".into()), Value::Null, Value::Ts(0), Value::Ts(10)],
//! ]);
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::{Capability, InputCapability};

use crate::chunk::Chunk;
use crate::join::{
    read_join_part, write_join_part, JoinBatch, JoinCommon, JoinOutputs, JoinStreams, SavedRecord,
    Src,
};
use crate::late::LateCounts;
use crate::metrics::ComponentMetrics;
use crate::schema::Record;
use crate::side_store::Stored;
use crate::value::{Micros, Value};
use crate::window::Groups;
use crate::{Batches, Time};

/// Which rows without a partner are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinHow {
    /// Only pairs.
    Inner,
    /// Pairs, and left rows whose key has no right row in the window.
    Left,
    /// Pairs, and rows of either side whose key has no row of the other side in the window.
    Full,
}

/// A compiled window join.
#[derive(Debug)]
pub struct WindowJoinSpec {
    /// Keys, times, output and late policy.
    pub common: JoinCommon,
    /// Window size (µs).
    pub size: Micros,
    /// Distance between window starts (µs; `size` for tumbling windows, which it divides).
    pub slide: Micros,
    /// Window offset from the epoch (µs, less than `slide`).
    pub offset: Micros,
    /// Inner, left or full outer.
    pub how: JoinHow,
}

/// One window's keys, and per key slot each side's stored rows.
struct WinTable {
    keys: Groups,
    rows: [Vec<Vec<u32>>; 2],
    /// Each side's rows whose key has a NULL field: they equal no key, so they meet nothing.
    nulls: [Vec<u32>; 2],
}

/// Builds a window join of `left` and `right` rows: packs them into chunks, exchanges them by
/// key (with [`Routing::ByKey`](crate::exchange::Routing::ByKey)) and runs
/// [`window_join_batches`].
pub fn window_join<'s>(
    left: crate::Records<'s>,
    right: crate::Records<'s>,
    routing: crate::exchange::Routing,
    spec: Arc<WindowJoinSpec>,
    metrics: Arc<ComponentMetrics>,
) -> JoinStreams<'s> {
    let (l, r) = crate::join::keyed_batches(&spec.common, left, right, routing);
    window_join_batches(
        l,
        r,
        spec,
        metrics,
        crate::control::RunControl::default(),
        None,
    )
}

/// A window join's state on one worker, and what one activation counts.
struct Work {
    stored: [Stored; 2],
    windows: BTreeMap<Micros, WinTable>,
    /// At or below the end of the first open window, less a microsecond.
    held: Option<Capability<Time>>,
    dead: Vec<Record>,
    late: Vec<Record>,
    n_in: u64,
    out_n: u64,
    state: i64,
    counts: LateCounts,
}

impl Work {
    /// Lists stored row `row` of `side` (batch row `r`, time `ts`) in every window containing it
    /// that ends after `after`.
    #[allow(clippy::too_many_arguments)]
    fn list(
        &mut self,
        spec: &WindowJoinSpec,
        side: usize,
        b: &JoinBatch<'_>,
        r: usize,
        row: u32,
        ts: Micros,
        after: Micros,
    ) {
        let c = &spec.common;
        let w = spec.slide;
        let pe = spec.offset + (ts - spec.offset).div_euclid(w) * w + w;
        let last = pe + spec.size - w;
        let mut e = pe;
        while e <= last {
            if e <= after {
                e += w;
                continue;
            }
            let table = self.windows.entry(e).or_insert_with(|| WinTable {
                keys: Groups::new(&c.key_kind, false),
                rows: [Vec::new(), Vec::new()],
                nulls: [Vec::new(), Vec::new()],
            });
            self.state += 1;
            e += w;
            if b.key_is_null(r) {
                table.nulls[side].push(row);
                continue;
            }
            let (k, _) = table.keys.slot(&b.keys, r, b.hashes[r]);
            let k = k as usize;
            for s in &mut table.rows {
                if s.len() <= k {
                    s.resize_with(k + 1, Vec::new);
                }
            }
            table.rows[side][k].push(row);
        }
    }

    /// Stores a batch of `side` at time `t`, listing each on-time record in its windows.
    fn apply(
        &mut self,
        spec: &WindowJoinSpec,
        side: usize,
        cap: &dyn crate::batch::Delay,
        t: Time,
        chunk: &Chunk,
        outs: &mut JoinOutputs,
    ) {
        let c = &spec.common;
        let w = spec.slide;
        self.n_in += chunk.len() as u64;
        let b = JoinBatch::new(c, side, chunk);
        for r in 0..chunk.len() {
            let Some(ts) = b.time(r) else {
                c.untimed(side, &b.record(r), &mut self.counts, &mut self.dead);
                continue;
            };
            let wm = b.watermark_at(r, t);
            let pe = spec.offset + (ts - spec.offset).div_euclid(w) * w + w;
            if (pe.max(1) as Time) <= wm {
                c.route_late(
                    side,
                    b.record(r),
                    ts,
                    wm,
                    "its window had closed",
                    &mut self.counts,
                    &mut self.dead,
                    &mut self.late,
                );
                continue;
            }
            let at = pe.max(1) as Time - 1;
            if self.held.as_ref().is_none_or(|h| *h.time() > at) {
                self.held = Some(cap.at(&at, 0));
            }
            let row = c.store(&mut self.stored[side], &b, r, ts);
            self.list(spec, side, &b, r, row, ts, Micros::MIN);
        }
        outs.give_set_aside(cap, t, side, &mut self.dead, &mut self.late);
    }

    /// Joins and emits every window the frontier `f` (both inputs') has passed, frees the
    /// records no open window lists, and moves the held capability up.
    fn fire(&mut self, spec: &WindowJoinSpec, f: Option<Time>, outs: &mut JoinOutputs) {
        let c = &spec.common;
        let w = spec.slide;
        let stored = &mut self.stored;
        let mut freed = false;
        while let Some(entry) = self.windows.first_entry() {
            let e = *entry.key();
            let t = e.max(1) as Time - 1;
            if f.is_some_and(|f| f <= t) {
                break;
            }
            let table = entry.remove();
            let extra = [Value::Ts(e - spec.size), Value::Ts(e)];
            let mut batch = Vec::new();
            let [l_rows, r_rows] = &table.rows;
            for (ls, rs) in l_rows.iter().zip(r_rows) {
                self.state -= (ls.len() + rs.len()) as i64;
                for &l in ls {
                    for &r in rs {
                        batch.push(c.joined_src(
                            Src::Stored(&stored[0], l),
                            Src::Stored(&stored[1], r),
                            &extra,
                            t,
                        ));
                    }
                }
                if rs.is_empty() && spec.how != JoinHow::Inner {
                    batch.extend(ls.iter().map(|&l| {
                        c.joined_src(Src::Stored(&stored[0], l), Src::Missing, &extra, t)
                    }));
                }
                if ls.is_empty() && spec.how == JoinHow::Full {
                    batch.extend(rs.iter().map(|&r| {
                        c.joined_src(Src::Missing, Src::Stored(&stored[1], r), &extra, t)
                    }));
                }
            }
            let [l_nulls, r_nulls] = &table.nulls;
            self.state -= (l_nulls.len() + r_nulls.len()) as i64;
            if spec.how != JoinHow::Inner {
                batch.extend(
                    l_nulls.iter().map(|&l| {
                        c.joined_src(Src::Stored(&stored[0], l), Src::Missing, &extra, t)
                    }),
                );
            }
            if spec.how == JoinHow::Full {
                batch.extend(
                    r_nulls.iter().map(|&r| {
                        c.joined_src(Src::Missing, Src::Stored(&stored[1], r), &extra, t)
                    }),
                );
            }
            // A record's last window is the one ending `size - slide` after its first.
            for (side, rows) in table.rows.iter().enumerate() {
                let nulls = table.nulls[side].iter();
                for &row in rows.iter().flatten().chain(nulls) {
                    let ts = stored[side].ts(row);
                    let pe = spec.offset + (ts - spec.offset).div_euclid(w) * w + w;
                    if pe + spec.size - w <= e {
                        stored[side].free(row);
                        freed = true;
                    }
                }
            }
            if !batch.is_empty() {
                let h = self.held.as_ref().expect("held while windows are open");
                let cap = h.delayed(&t.max(*h.time()));
                self.out_n += batch.len() as u64;
                outs.results
                    .activate()
                    .session(&cap)
                    .give_container(&mut batch);
            }
        }
        if freed {
            for (side, st) in stored.iter_mut().enumerate() {
                if let Some(map) = st.compact() {
                    for table in self.windows.values_mut() {
                        let nulls = table.nulls[side].iter_mut();
                        for row in table.rows[side].iter_mut().flatten().chain(nulls) {
                            *row = map[*row as usize];
                        }
                    }
                }
            }
        }
        match (self.windows.keys().next(), self.held.as_mut()) {
            (None, _) => self.held = None,
            (Some(&e), Some(h)) => {
                let t = e.max(1) as Time - 1;
                if *h.time() < t {
                    h.downgrade(&t);
                }
            }
            _ => {}
        }
    }

    fn bytes(&self) -> usize {
        self.stored[0].bytes()
            + self.stored[1].bytes()
            + self
                .windows
                .values()
                .map(|t| {
                    t.keys.bytes()
                        + t.rows
                            .iter()
                            .flatten()
                            .map(|v| 24 + v.capacity() * 4)
                            .sum::<usize>()
                })
                .sum::<usize>()
    }

    /// The records listed in open windows, each once, as a checkpoint part (see
    /// [`crate::join::write_join_part`]); the extra section is the checkpoint time (8 bytes):
    /// a restored record is listed only in windows ending after it.
    fn snapshot(&self, spec: &WindowJoinSpec, at: Time) -> Vec<u8> {
        let c = &spec.common;
        let chunks = [0, 1].map(|s| {
            let mut seen = std::collections::HashSet::new();
            let mut records = Vec::new();
            for table in self.windows.values() {
                for k in table.keys.slots() {
                    let key = table.keys.values(&c.key_kind, k);
                    for &row in table.rows[s].get(k as usize).into_iter().flatten() {
                        if seen.insert(row) {
                            records.push(self.saved(c, s, row, key.clone()));
                        }
                    }
                }
                for &row in &table.nulls[s] {
                    if seen.insert(row) {
                        let key = vec![Value::Null; c.keys(s).len()];
                        records.push(self.saved(c, s, row, key));
                    }
                }
            }
            c.saved_chunk(s, &records)
        });
        write_join_part([&chunks[0], &chunks[1]], &at.to_le_bytes())
    }

    fn saved(&self, c: &JoinCommon, side: usize, row: u32, key: Vec<Value>) -> SavedRecord {
        let st = &self.stored[side];
        SavedRecord {
            key,
            fields: (0..c.stored_positions(side).len())
                .map(|f| st.value(row, f))
                .collect(),
            ts: st.ts(row),
            ingest: st.ingest(row),
        }
    }

    /// Stores and lists a checkpoint's records.
    fn restore(&mut self, spec: &WindowJoinSpec, bytes: &[u8]) -> Result<(), String> {
        let c = &spec.common;
        let (left, right, at) = read_join_part(bytes)?;
        let at: [u8; 8] = at.try_into().map_err(|_| "a truncated part")?;
        let after = Time::from_le_bytes(at).min(Micros::MAX as Time) as Micros;
        for (s, chunk) in [(0, &left), (1, &right)] {
            if chunk.is_empty() {
                continue;
            }
            let b = JoinBatch::new(c, s, chunk);
            for r in 0..chunk.len() {
                let ts = b.time(r).ok_or("a stored record without its time")?;
                let row = c.store(&mut self.stored[s], &b, r, ts);
                self.list(spec, s, &b, r, row, ts, after);
            }
        }
        Ok(())
    }
}

/// Builds a window join of batches already on the worker that holds their keys' state. Each
/// record is stored once, in columns, however many (sliding) windows it belongs to; each
/// window lists its keys' rows. With `checkpoint`, both inputs go through a
/// [`Barrier`](crate::checkpoint::Barrier), the records of open windows go into each
/// checkpoint, and a restored run starts with them.
pub fn window_join_batches<'s>(
    left: Batches<'s>,
    right: Batches<'s>,
    spec: Arc<WindowJoinSpec>,
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
        let c = &spec.common;
        let mut w = Work {
            stored: [c.new_store(0), c.new_store(1)],
            windows: BTreeMap::new(),
            held: None,
            dead: Vec::new(),
            late: Vec::new(),
            n_in: 0,
            out_n: 0,
            state: 0,
            counts: LateCounts::default(),
        };
        if let Some(bytes) = ck.as_ref().and_then(|ck| ck.restored(&c.id, worker)) {
            if let Err(e) = w.restore(&spec, bytes) {
                ctl.fail(format!(
                    "join `{}`: its state in the checkpoint cannot be read: {e}; run with --from-scratch to start over",
                    c.id
                ));
            }
        }
        // Restored windows are emitted from the first capability.
        let mut first: Option<Capability<Time>> = caps.drain(..).next();
        let mut gauge = crate::metrics::StateGauge::default();
        let mut barrier: Barrier<(usize, [Capability<Time>; 4], Chunk)> = Barrier::default();
        move |frontiers| {
            let spec = &*spec;
            let c = &spec.common;
            if let Some(f) = first.take() {
                if let Some(&e) = w.windows.keys().next() {
                    w.held = Some(f.delayed(&(e.max(1) as Time - 1).max(*f.time())));
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
                    w.fire(spec, (at != crate::checkpoint::END).then_some(at), &mut outs);
                    let bytes = w.snapshot(spec, at);
                    if let Err(e) =
                        crate::checkpoint::write_part(ck, seq, &c.id, worker, started, &bytes)
                    {
                        ctl.fail(format!("join `{}`: cannot write checkpoint {seq}: {e}", c.id));
                    }
                    barrier.taken();
                }
                w.fire(spec, barrier.frontier(data_frontier), &mut outs);
            } else {
                w.fire(spec, data_frontier, &mut outs);
            }
            metrics.add_in(std::mem::take(&mut w.n_in));
            metrics.add_out(std::mem::take(&mut w.out_n));
            std::mem::take(&mut w.counts).report(&metrics);
            let state = std::mem::take(&mut w.state);
            metrics.add_state(state);
            gauge.changed(&metrics, state, || w.bytes());
            if state != 0 {
                gauge.guard(&metrics, &ctl, c.max_state, |h, m| {
                    crate::join::max_state_message(c, h, m)
                });
            }
        }
    });
    streams
}
