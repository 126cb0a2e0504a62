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

use hashbrown::hash_table::{Entry, HashTable};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::{Capability, InputCapability};

use crate::join::{JoinCommon, JoinOutputs, JoinStreams};
use crate::late::LateCounts;
use crate::metrics::ComponentMetrics;
use crate::schema::Record;
use crate::value::{Micros, Value};
use crate::window::key_hash;
use crate::Time;

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

/// One key's rows in one window.
struct Bucket {
    hash: u64,
    rows: [Vec<Record>; 2],
}

/// Builds a window join of `left` and `right`.
pub fn window_join<'s>(
    left: crate::Records<'s>,
    right: crate::Records<'s>,
    routing: crate::exchange::Routing,
    spec: Arc<WindowJoinSpec>,
    metrics: Arc<ComponentMetrics>,
) -> JoinStreams<'s> {
    let mut builder = OperatorBuilder::new(spec.common.id.to_string(), left.scope());
    let (lk, rk) = (spec.common.left_key.clone(), spec.common.right_key.clone());
    let me = left.scope().index() as u64;
    let partitioned = routing == crate::exchange::Routing::Partitioned;
    let mut in_left = builder.new_input(
        left,
        Exchange::new(move |r: &Record| {
            if partitioned {
                me
            } else {
                key_hash(&r.values, &lk)
            }
        }),
    );
    let mut in_right = builder.new_input(
        right,
        Exchange::new(move |r: &Record| {
            if partitioned {
                me
            } else {
                key_hash(&r.values, &rk)
            }
        }),
    );
    let (mut outs, streams) = JoinOutputs::new(&mut builder);
    builder.build(move |_caps| {
        let mut windows: BTreeMap<Micros, HashTable<Bucket>> = BTreeMap::new();
        let mut held: Option<Capability<Time>> = None;
        let mut dead_buf: Vec<Record> = Vec::new();
        let mut late_buf: Vec<Record> = Vec::new();
        move |frontiers| {
            let spec = &*spec;
            let c = &spec.common;
            let (mut n_in, mut out_n, mut state) = (0u64, 0u64, 0i64);
            let mut counts = LateCounts::default();
            #[allow(clippy::needless_range_loop)]
            for side in 0..2 {
                let mut handle = |cap: InputCapability<Time>, data: &mut Vec<Record>| {
                    let Some(&t) = cap.least() else { return };
                    n_in += data.len() as u64;
                    for r in data.drain(..) {
                        let Some(ts) = r.values[c.time(side)].as_ts() else {
                            c.untimed(side, &r, &mut counts, &mut dead_buf);
                            continue;
                        };
                        let wm = r.meta.watermark.max(t);
                        let w = spec.slide;
                        let pe = spec.offset + (ts - spec.offset).div_euclid(w) * w + w;
                        if (pe.max(1) as Time) <= wm {
                            c.route_late(
                                side,
                                r,
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
                        let kpos = c.keys(side);
                        let hash = key_hash(&r.values, kpos);
                        let last = pe + spec.size - w;
                        // Every window containing the record keeps a copy; the last keeps it.
                        let mut r = Some(r);
                        let mut e = pe;
                        while e <= last {
                            let row = if e + w > last {
                                r.take().expect("moved once, in the last window")
                            } else {
                                r.as_ref().expect("present until the last window").clone()
                            };
                            let table = windows.entry(e).or_default();
                            let b = match table.entry(
                                hash,
                                |b| {
                                    b.hash == hash && {
                                        let (s, stored) = if b.rows[0].is_empty() {
                                            (1, &b.rows[1][0])
                                        } else {
                                            (0, &b.rows[0][0])
                                        };
                                        c.keys(s)
                                            .iter()
                                            .zip(kpos)
                                            .all(|(&p, &q)| stored.values[p] == row.values[q])
                                    }
                                },
                                |b| b.hash,
                            ) {
                                Entry::Occupied(o) => o.into_mut(),
                                Entry::Vacant(v) => v
                                    .insert(Bucket {
                                        hash,
                                        rows: [Vec::new(), Vec::new()],
                                    })
                                    .into_mut(),
                            };
                            b.rows[side].push(row);
                            state += 1;
                            e += w;
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
            while let Some(entry) = windows.first_entry() {
                let e = *entry.key();
                let t = e.max(1) as Time - 1;
                if frontiers[0].less_equal(&t) || frontiers[1].less_equal(&t) {
                    break;
                }
                let table = entry.remove();
                let extra = [Value::Ts(e - spec.size), Value::Ts(e)];
                let mut batch = Vec::new();
                for b in table {
                    state -= (b.rows[0].len() + b.rows[1].len()) as i64;
                    let [ls, rs] = &b.rows;
                    for l in ls {
                        for r in rs {
                            batch.push(c.joined(Some(l), Some(r), &extra, t));
                        }
                    }
                    if rs.is_empty() && spec.how != JoinHow::Inner {
                        batch.extend(ls.iter().map(|l| c.joined(Some(l), None, &extra, t)));
                    }
                    if ls.is_empty() && spec.how == JoinHow::Full {
                        batch.extend(rs.iter().map(|r| c.joined(None, Some(r), &extra, t)));
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
        }
    });
    streams
}
