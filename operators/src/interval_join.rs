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

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use hashbrown::hash_table::{Entry, HashTable};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::{Capability, InputCapability};

use crate::batch::give_at;
use crate::join::{JoinCommon, JoinOutputs, JoinStreams};
use crate::late::LateCounts;
use crate::metrics::ComponentMetrics;
use crate::schema::Record;
use crate::value::{Micros, Value};
use crate::window::key_hash;
use crate::{Records, Time};

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

/// The stored records of one key.
struct KeyState {
    hash: u64,
    /// The key's values (from whichever side stored first), to tell colliding hashes apart.
    key: Box<[Value]>,
    /// Left records by (time, sequence number), with whether they matched.
    left: BTreeMap<(Micros, u64), (Record, bool)>,
    /// Right records by (time, sequence number).
    right: BTreeMap<(Micros, u64), Record>,
}

/// Builds an interval join of `left` and `right`.
pub fn interval_join<'s>(
    left: Records<'s>,
    right: Records<'s>,
    routing: crate::exchange::Routing,
    spec: Arc<IntervalJoinSpec>,
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
        let mut keys: HashTable<KeyState> = HashTable::new();
        // (expiry, key hash, time, seq) of stored left and right records.
        let mut expiry: [BTreeSet<(Micros, u64, Micros, u64)>; 2] =
            [BTreeSet::new(), BTreeSet::new()];
        // Unmatched left records are emitted at `time + upper`: held at or below the earliest.
        let mut held: Option<Capability<Time>> = None;
        let mut seq = 0u64;
        let mut buf: Vec<Record> = Vec::new();
        let mut dead_buf: Vec<Record> = Vec::new();
        let mut late_buf: Vec<Record> = Vec::new();
        move |frontiers| {
            let spec = &*spec;
            let (mut n_in, mut out_n, mut state) = (0u64, 0u64, 0i64);
            let mut counts = LateCounts::default();
            #[allow(clippy::needless_range_loop)]
            for side in 0..2 {
                let mut handle = |cap: InputCapability<Time>, data: &mut Vec<Record>| {
                    let Some(&t) = cap.least() else { return };
                    n_in += data.len() as u64;
                    for r in data.drain(..) {
                        let c = &spec.common;
                        let Some(ts) = r.values[c.time(side)].as_ts() else {
                            c.untimed(side, &r, &mut counts, &mut dead_buf);
                            continue;
                        };
                        let wm = r.meta.watermark.max(t);
                        if (ts.max(0) as Time) < wm {
                            c.route_late(
                                side,
                                r,
                                ts,
                                wm,
                                "records it should join may be gone",
                                &mut counts,
                                &mut dead_buf,
                                &mut late_buf,
                            );
                            continue;
                        }
                        let kpos = c.keys(side);
                        let hash = key_hash(&r.values, kpos);
                        let ks = match keys.entry(
                            hash,
                            |k| {
                                k.hash == hash
                                    && k.key.iter().zip(kpos).all(|(v, &p)| *v == r.values[p])
                            },
                            |k| k.hash,
                        ) {
                            Entry::Occupied(e) => e.into_mut(),
                            Entry::Vacant(e) => e
                                .insert(KeyState {
                                    hash,
                                    key: kpos.iter().map(|&p| r.values[p].clone()).collect(),
                                    left: BTreeMap::new(),
                                    right: BTreeMap::new(),
                                })
                                .into_mut(),
                        };
                        seq += 1;
                        if side == 0 {
                            let range = (ts.saturating_add(spec.lower), 0)
                                ..=(ts.saturating_add(spec.upper), u64::MAX);
                            let mut matched = false;
                            for (_, rr) in ks.right.range(range) {
                                buf.push(c.joined(Some(&r), Some(rr), &[], wm));
                                matched = true;
                            }
                            let exp = ts.saturating_add(spec.upper);
                            if spec.left_outer && !matched {
                                // Its outer row goes out at `exp`: hold a capability for it.
                                let at = (exp.max(0) as Time).max(t);
                                if held.as_ref().is_none_or(|h| *h.time() > at) {
                                    held = Some(cap.delayed(&at, 0));
                                }
                            }
                            ks.left.insert((ts, seq), (r, matched));
                            expiry[0].insert((exp, hash, ts, seq));
                        } else {
                            let range = (ts.saturating_sub(spec.upper), 0)
                                ..=(ts.saturating_sub(spec.lower), u64::MAX);
                            for (_, (lr, matched)) in ks.left.range_mut(range) {
                                buf.push(c.joined(Some(lr), Some(&r), &[], wm));
                                *matched = true;
                            }
                            ks.right.insert((ts, seq), r);
                            expiry[1].insert((ts.saturating_sub(spec.lower), hash, ts, seq));
                        }
                        state += 1;
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
            // Free what no on-time record can match any more; emit unmatched left records.
            let passed = |x: Micros, f: &timely::progress::frontier::MutableAntichain<Time>| {
                !f.less_equal(&(x.max(0) as Time))
            };
            let mut outer = Vec::new();
            for (side, expiry) in expiry.iter_mut().enumerate() {
                while let Some(&(exp, hash, ts, s)) = expiry.first() {
                    // Both inputs must have passed it.
                    if !(passed(exp, &frontiers[0]) && passed(exp, &frontiers[1])) {
                        break;
                    }
                    expiry.pop_first();
                    state -= 1;
                    let Ok(mut e) = keys.find_entry(hash, |k| {
                        k.hash == hash
                            && if side == 0 {
                                k.left.contains_key(&(ts, s))
                            } else {
                                k.right.contains_key(&(ts, s))
                            }
                    }) else {
                        continue;
                    };
                    let ks = e.get_mut();
                    if side == 0 {
                        if let Some((l, matched)) = ks.left.remove(&(ts, s)) {
                            if spec.left_outer && !matched {
                                outer.push(spec.common.joined(
                                    Some(&l),
                                    None,
                                    &[],
                                    exp.max(0) as Time,
                                ));
                            }
                        }
                    } else {
                        ks.right.remove(&(ts, s));
                    }
                    if ks.left.is_empty() && ks.right.is_empty() {
                        e.remove();
                    }
                }
            }
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
                expiry[0].first().map(|&(exp, ..)| exp.max(0) as Time)
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
        }
    });
    streams
}
