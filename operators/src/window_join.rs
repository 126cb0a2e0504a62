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
use crate::join::{JoinBatch, JoinCommon, JoinOutputs, JoinStreams, Src};
use crate::late::LateCounts;
use crate::metrics::ComponentMetrics;
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
    window_join_batches(l, r, spec, metrics, crate::control::RunControl::default())
}

/// Builds a window join of batches already on the worker that holds their keys' state. Each
/// record is stored once, in columns, however many (sliding) windows it belongs to; each
/// window lists its keys' rows.
pub fn window_join_batches<'s>(
    left: Batches<'s>,
    right: Batches<'s>,
    spec: Arc<WindowJoinSpec>,
    metrics: Arc<ComponentMetrics>,
    ctl: crate::control::RunControl,
) -> JoinStreams<'s> {
    let mut builder = OperatorBuilder::new(spec.common.id.to_string(), left.scope());
    let mut in_left = builder.new_input(left, Pipeline);
    let mut in_right = builder.new_input(right, Pipeline);
    let (mut outs, streams) = JoinOutputs::new(&mut builder);
    builder.build(move |_caps| {
        let c = &spec.common;
        let mut stored = [c.new_store(0), c.new_store(1)];
        let mut windows: BTreeMap<Micros, WinTable> = BTreeMap::new();
        let mut held: Option<Capability<Time>> = None;
        let mut dead_buf = Vec::new();
        let mut late_buf = Vec::new();
        let mut gauge = crate::metrics::StateGauge::default();
        move |frontiers| {
            let spec = &*spec;
            let c = &spec.common;
            let w = spec.slide;
            let (mut n_in, mut out_n, mut state) = (0u64, 0u64, 0i64);
            let mut counts = LateCounts::default();
            #[allow(clippy::needless_range_loop)]
            for side in 0..2 {
                let mut handle = |cap: InputCapability<Time>, data: &mut Vec<Chunk>| {
                    let Some(&t) = cap.least() else { return };
                    for chunk in data.iter() {
                        n_in += chunk.len() as u64;
                        let b = JoinBatch::new(c, side, chunk);
                        for r in 0..chunk.len() {
                            let Some(ts) = b.time(r) else {
                                c.untimed(side, &b.record(r), &mut counts, &mut dead_buf);
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
                                    &mut counts,
                                    &mut dead_buf,
                                    &mut late_buf,
                                );
                                continue;
                            }
                            let at = pe.max(1) as Time - 1;
                            if held.as_ref().is_none_or(|h| *h.time() > at) {
                                held = Some(cap.delayed(&at, 0));
                            }
                            let row = c.store(&mut stored[side], &b, r, ts);
                            // Every window containing the record lists it.
                            let last = pe + spec.size - w;
                            let mut e = pe;
                            while e <= last {
                                let table = windows.entry(e).or_insert_with(|| WinTable {
                                    keys: Groups::new(&c.key_kind, false),
                                    rows: [Vec::new(), Vec::new()],
                                    nulls: [Vec::new(), Vec::new()],
                                });
                                state += 1;
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
                    }
                    outs.give_set_aside(&cap, t, side, &mut dead_buf, &mut late_buf);
                };
                if side == 0 {
                    in_left.for_each(|cap, data| handle(cap, data));
                } else {
                    in_right.for_each(|cap, data| handle(cap, data));
                }
            }
            // Join and emit every window both inputs have passed.
            let mut freed = false;
            while let Some(entry) = windows.first_entry() {
                let e = *entry.key();
                let t = e.max(1) as Time - 1;
                if frontiers[0].less_equal(&t) || frontiers[1].less_equal(&t) {
                    break;
                }
                let table = entry.remove();
                let extra = [Value::Ts(e - spec.size), Value::Ts(e)];
                let mut batch = Vec::new();
                let [l_rows, r_rows] = &table.rows;
                for (ls, rs) in l_rows.iter().zip(r_rows) {
                    state -= (ls.len() + rs.len()) as i64;
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
                state -= (l_nulls.len() + r_nulls.len()) as i64;
                if spec.how != JoinHow::Inner {
                    batch.extend(l_nulls.iter().map(|&l| {
                        c.joined_src(Src::Stored(&stored[0], l), Src::Missing, &extra, t)
                    }));
                }
                if spec.how == JoinHow::Full {
                    batch.extend(r_nulls.iter().map(|&r| {
                        c.joined_src(Src::Missing, Src::Stored(&stored[1], r), &extra, t)
                    }));
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
                    let h = held.as_ref().expect("held while windows are open");
                    let cap = h.delayed(&t.max(*h.time()));
                    out_n += batch.len() as u64;
                    outs.results
                        .activate()
                        .session(&cap)
                        .give_container(&mut batch);
                }
            }
            if freed {
                for (side, st) in stored.iter_mut().enumerate() {
                    if let Some(map) = st.compact() {
                        for table in windows.values_mut() {
                            let nulls = table.nulls[side].iter_mut();
                            for row in table.rows[side].iter_mut().flatten().chain(nulls) {
                                *row = map[*row as usize];
                            }
                        }
                    }
                }
            }
            match (windows.keys().next(), held.as_mut()) {
                (None, _) => held = None,
                (Some(&e), Some(h)) => {
                    let t = e.max(1) as Time - 1;
                    if *h.time() < t {
                        h.downgrade(&t);
                    }
                }
                _ => {}
            }
            metrics.add_in(n_in);
            metrics.add_out(out_n);
            counts.report(&metrics);
            metrics.add_state(state);
            gauge.changed(&metrics, state, || {
                stored[0].bytes()
                    + stored[1].bytes()
                    + windows
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
            });
            if state != 0 {
                gauge.guard(&metrics, &ctl, c.max_state, |h, m| {
                    crate::join::max_state_message(c, h, m)
                });
            }
        }
    });
    streams
}
