//! The temporal join: each left record joins the version of the right side — a versioned
//! table, a changelog keyed by the join key — that was valid at the left record's event time:
//! the right record with the same key and the largest event time at or before it. Inner, or
//! left outer (a left record with no version yet comes out with NULL right fields).
//!
//! Built on differential dataflow: the right side becomes a collection of versions
//! `(key, (time, record))`, each inserted at its own event time and retracted at the event time
//! of the version that supersedes it, and is *arranged* by key once ([`arrange_table`]; several
//! joins on the same table share the arrangement through [`join_table`]); left records enter as
//! `(key, record)` at their event time (and leave a microsecond later), are joined with the
//! arrangement (`join_core`), and a `reduce` per left record keeps the latest version at or
//! before it. Because every on-time right version is sent at a timely time at or below its
//! event time, a left record's result is final once the frontier passes its time; results are
//! emitted then, exactly once. Superseded versions cancel out and the arrangements compact as
//! the frontier advances, so state stays bounded by the versions still current.
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
//! let spec = Arc::new(TemporalJoinSpec { common, left_outer: true, left_id: None, left_width: 3 });
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

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use differential_dataflow::operators::arrange::{Arranged, TraceAgent};
use differential_dataflow::trace::implementations::ValSpine;
use differential_dataflow::AsCollection;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::{Capability, Concat};
use timely::dataflow::Stream;

use crate::batch::give_at;
use crate::join::{JoinCommon, JoinStreams};
use crate::late::LateCounts;
use crate::metrics::ComponentMetrics;
use crate::schema::{Meta, Record};
use crate::value::{Micros, Value};
use crate::window::{key_hash, LatePolicy};
use crate::{Records, Time};

/// A compiled temporal join.
#[derive(Debug)]
pub struct TemporalJoinSpec {
    /// Keys, times, output and late policy.
    pub common: JoinCommon,
    /// Whether left records without a version are emitted (left outer join).
    pub left_outer: bool,
    /// Position of the left records' id, which keeps distinct events distinct once records are
    /// cut down to the fields the output needs (`None`: all left fields are kept).
    pub left_id: Option<usize>,
    /// How many fields left records have.
    pub left_width: usize,
}

impl TemporalJoinSpec {
    /// The left fields kept: the event time, the id, then each left output field once.
    fn left_cols(&self) -> Vec<usize> {
        let c = &self.common;
        let mut cols = vec![c.left_time];
        match self.left_id {
            Some(id) => cols.push(id),
            None => cols.extend(0..self.left_width),
        }
        for &(side, p) in &c.output {
            if side == 0 && !cols.contains(&p) {
                cols.push(p);
            }
        }
        cols
    }

    /// The fields of a side's records the join reads: its key, its time and the fields it
    /// keeps.
    pub fn fields_read(&self, side: usize) -> Vec<usize> {
        let c = &self.common;
        let mut f: Vec<usize> = c.keys(side).to_vec();
        f.push(c.time(side));
        f.extend(if side == 0 {
            self.left_cols()
        } else {
            self.right_cols()
        });
        f.sort_unstable();
        f.dedup();
        f
    }

    /// The right fields kept: each right output field once.
    fn right_cols(&self) -> Vec<usize> {
        let mut cols = Vec::new();
        for &(side, p) in &self.common.output {
            if side == 1 && !cols.contains(&p) {
                cols.push(p);
            }
        }
        cols
    }
}

/// A record cut down to `cols`, keeping its metadata.
fn project(r: &Record, cols: &[usize]) -> Record {
    Record {
        values: cols.iter().map(|&p| r.values[p].clone()).collect(),
        meta: r.meta,
    }
}

/// A join key: its hash first, so that differential's sorting and merging mostly compare one
/// integer, then the key's values.
type Key = (u64, Vec<Value>);
/// A differential update.
type Update<D> = (D, Time, isize);
/// A version of the right side: its event time and record.
type Version = (Micros, Record);
/// A left record and the version it met, if any.
type Met = (Record, Option<Version>);
/// Results waiting for their time to be final, by time.
type Pending = BTreeMap<Time, Vec<(Met, isize)>>;
/// A stream of differential updates.
type Updates<'s, D> = Stream<'s, Time, Vec<Update<D>>>;

/// Splits one side into on-time records, dead letters and late records; counts.
fn split<'s>(
    input: Records<'s>,
    side: usize,
    spec: &Arc<TemporalJoinSpec>,
    metrics: &Arc<ComponentMetrics>,
) -> (Records<'s>, Records<'s>, Records<'s>) {
    let mut builder =
        OperatorBuilder::new(format!("{} (side {side})", spec.common.id), input.scope());
    let mut input = builder.new_input(input, Pipeline);
    let (ok_out, ok) = builder.new_output::<Vec<Record>>();
    let (dead_out, dead) = builder.new_output::<Vec<Record>>();
    let (late_out, late) = builder.new_output::<Vec<Record>>();
    type Out = crate::batch::RecordOutput;
    let (mut ok_out, mut dead_out, mut late_out) =
        (Out::from(ok_out), Out::from(dead_out), Out::from(late_out));
    let (spec, metrics) = (Arc::clone(spec), Arc::clone(metrics));
    builder.build(move |_| {
        move |_frontiers| {
            let c = &spec.common;
            let mut n = 0;
            let mut counts = LateCounts::default();
            input.for_each(|cap, data: &mut Vec<Record>| {
                let Some(&t) = cap.least() else { return };
                n += data.len() as u64;
                let (mut ok, mut dead, mut late) = (Vec::new(), Vec::new(), Vec::new());
                for r in data.drain(..) {
                    let Some(ts) = r.values[c.time(side)].as_ts() else {
                        c.untimed(side, &r, &mut counts, &mut dead);
                        continue;
                    };
                    let wm = r.meta.watermark.max(t);
                    if (ts.max(0) as Time) < wm {
                        let what = "the versions it should meet may be gone";
                        c.route_late(side, r, ts, wm, what, &mut counts, &mut dead, &mut late);
                        continue;
                    }
                    ok.push(r);
                }
                give_at(&mut ok_out, &cap, t, 0, &mut ok);
                give_at(&mut dead_out, &cap, t, 1, &mut dead);
                give_at(&mut late_out, &cap, t, 2, &mut late);
            });
            metrics.add_in(n);
            counts.report(&metrics);
        }
    });
    (ok, dead, late)
}

/// The right side's versions as differential updates: each version inserted at its event time
/// and retracted at the event time of the version that supersedes it.
fn versions<'s>(
    right: Records<'s>,
    spec: &Arc<TemporalJoinSpec>,
    metrics: &Arc<ComponentMetrics>,
) -> Updates<'s, (Key, Version)> {
    let spec = Arc::clone(spec);
    let metrics = Arc::clone(metrics);
    let rk = spec.common.right_key.clone();
    let rcols = spec.right_cols();
    right.unary_frontier(
        Exchange::new(move |r: &Record| key_hash(&r.values, &rk)),
        "Versions",
        move |_, _| {
            // Per key, the versions that may still be the predecessor of an on-time version.
            let mut live: HashMap<Key, BTreeMap<(Micros, Record), ()>> = HashMap::new();
            move |(input, frontier), output| {
                let c = &spec.common;
                let mut state = 0i64;
                input.for_each(|cap, data: &mut Vec<Record>| {
                    let mut session = output.session(&cap);
                    for r in data.drain(..) {
                        let ts = r.values[c.right_time].as_ts().unwrap_or(0);
                        let key: Key = (
                            key_hash(&r.values, &c.right_key),
                            c.right_key.iter().map(|&p| r.values[p].clone()).collect(),
                        );
                        let t = |x: Micros| x.max(0) as Time;
                        let versions = live.entry(key.clone()).or_default();
                        let me = (ts, project(&r, &rcols));
                        let before = versions
                            .range(..me.clone())
                            .next_back()
                            .map(|(v, _)| v.clone());
                        let after = versions.range(me.clone()..).next().map(|(v, _)| v.0);
                        // It is valid from its time until its successor's.
                        session.give(((key.clone(), me.clone()), t(ts), 1));
                        if let Some(s) = after {
                            session.give(((key.clone(), me.clone()), t(s), -1));
                        }
                        // Its predecessor now ends here, not at the successor.
                        if let Some(p) = before {
                            if let Some(s) = after {
                                session.give(((key.clone(), p.clone()), t(s), 1));
                            }
                            session.give(((key.clone(), p), t(ts), -1));
                        }
                        versions.insert(me, ());
                        state += 1;
                        // Forget versions whose successor the frontier has passed: no on-time
                        // version can come between them any more.
                        let horizon = frontier
                            .frontier()
                            .iter()
                            .min()
                            .copied()
                            .unwrap_or(Time::MAX);
                        while versions.len() > 1 {
                            let mut it = versions.keys();
                            let (_, second) = (it.next(), it.next());
                            match second {
                                Some((s, _)) if t(*s) < horizon => {
                                    versions.pop_first();
                                    state -= 1;
                                }
                                _ => break,
                            }
                        }
                    }
                });
                if frontier.is_empty() {
                    // The input has ended: no version will be asked for again.
                    state -= live.values().map(|v| v.len() as i64).sum::<i64>();
                    live.clear();
                }
                metrics.add_state(state);
            }
        },
    )
}

/// Left records as differential updates: present at their event time only.
fn pulses<'s>(
    left: Records<'s>,
    spec: &Arc<TemporalJoinSpec>,
) -> Stream<'s, Time, Vec<Update<(Key, Record)>>> {
    let spec = Arc::clone(spec);
    let cols = spec.left_cols();
    left.unary(Pipeline, "Pulses", move |_, _| {
        move |input, output| {
            let c = &spec.common;
            input.for_each(|cap, data: &mut Vec<Record>| {
                let mut session = output.session(&cap);
                for r in data.drain(..) {
                    let ts = r.values[c.left_time].as_ts().unwrap_or(0).max(0) as Time;
                    let key: Key = (
                        key_hash(&r.values, &c.left_key),
                        c.left_key.iter().map(|&p| r.values[p].clone()).collect(),
                    );
                    let row = project(&r, &cols);
                    session.give(((key.clone(), row.clone()), ts, 1));
                    session.give(((key, row), ts + 1, -1));
                }
            });
        }
    })
}

/// A versioned table, arranged by key: what several temporal joins on the same table (with the
/// same key, kept fields and late policy) share.
#[derive(Clone)]
pub struct Table<'s> {
    arranged: Arranged<'s, TraceAgent<ValSpine<Key, Version, Time, isize>>>,
    /// The right side's dead letters (given to the first join only, so they are not repeated).
    pub dead: Records<'s>,
    /// The right side's late records (side-output policy).
    pub late: Records<'s>,
}

impl TemporalJoinSpec {
    /// What makes two temporal joins able to share one arranged table of the same input: the
    /// right key, the right fields kept, the right time and the late policy.
    pub fn table_signature(&self) -> (Vec<usize>, Vec<usize>, usize, LatePolicy) {
        let c = &self.common;
        (c.right_key.clone(), self.right_cols(), c.right_time, c.late)
    }
}

/// Arranges the versioned table `right` for the temporal join `spec`; counts its late records
/// in `metrics`.
pub fn arrange_table<'s>(
    right: Records<'s>,
    spec: &Arc<TemporalJoinSpec>,
    metrics: &Arc<ComponentMetrics>,
) -> Table<'s> {
    let (right_ok, dead, late) = split(right, 1, spec, metrics);
    let arranged = versions(right_ok, spec, metrics)
        .as_collection()
        .arrange_by_key();
    Table {
        arranged,
        dead,
        late,
    }
}

/// Builds a temporal join of `left` with the versioned table `right`.
pub fn temporal_join<'s>(
    left: Records<'s>,
    right: Records<'s>,
    spec: Arc<TemporalJoinSpec>,
    metrics: Arc<ComponentMetrics>,
) -> JoinStreams<'s> {
    let table = arrange_table(right, &spec, &metrics);
    join_table(left, &table, true, spec, metrics)
}

/// Builds a temporal join of `left` with an already arranged table. The first join of a table
/// passes `owner = true` and carries the table's dead letters.
pub fn join_table<'s>(
    left: Records<'s>,
    table: &Table<'s>,
    owner: bool,
    spec: Arc<TemporalJoinSpec>,
    metrics: Arc<ComponentMetrics>,
) -> JoinStreams<'s> {
    let (left_ok, left_dead, late_left) = split(left, 0, &spec, &metrics);
    let lefts = pulses(left_ok, &spec).as_collection();
    // Kept left rows start with the event time.
    let matched = lefts.clone().join_core(
        table.arranged.clone(),
        move |_key, l: &Record, v: &(Micros, Record)| {
            let ts = l.values[0].as_ts().unwrap_or(0);
            (v.0 <= ts).then(|| (l.clone(), Some(v.clone())))
        },
    );
    let candidates = if spec.left_outer {
        matched.concat(lefts.map(|(_, l)| (l, None)))
    } else {
        matched
    };
    let latest = candidates.reduce(|_l, versions, out| {
        // Values come sorted: the last is the latest version (None sorts first).
        let (best, _) = versions[versions.len() - 1];
        out.push((best.clone(), 1));
    });
    let results = emit_final(latest.inner, Arc::clone(&spec), Arc::clone(&metrics));
    let dead = if owner {
        left_dead.concat(table.dead.clone())
    } else {
        left_dead
    };
    JoinStreams {
        results,
        dead,
        late_left,
        late_right: table.late.clone(),
    }
}

/// Emits each left record's result once the frontier has passed its time (when it is final).
fn emit_final<'s>(
    updates: Updates<'s, Met>,
    spec: Arc<TemporalJoinSpec>,
    metrics: Arc<ComponentMetrics>,
) -> Records<'s> {
    updates.unary_frontier::<CapacityContainerBuilder<Vec<Record>>, _, _, _>(
        Pipeline,
        "Final",
        move |_, _| {
            let mut pending: Pending = BTreeMap::new();
            // Where each output field is in the kept left and right rows.
            let (lcols, rcols) = (spec.left_cols(), spec.right_cols());
            let at: Vec<(u8, usize)> = spec
                .common
                .output
                .iter()
                .map(|&(side, p)| {
                    let cols = if side == 0 { &lcols } else { &rcols };
                    (side, cols.iter().position(|&q| q == p).expect("kept"))
                })
                .collect();
            // One capability, at or below every pending time: a capability per time would
            // make timely track one per left record.
            let mut held: Option<Capability<Time>> = None;
            move |(input, frontier), output| {
                input.for_each(|cap, data: &mut Vec<Update<Met>>| {
                    for (met, t, r) in data.drain(..) {
                        if held.as_ref().is_none_or(|h| *h.time() > t) {
                            held = Some(cap.delayed(&t, 0));
                        }
                        pending.entry(t).or_default().push((met, r));
                    }
                });
                let mut n = 0;
                if let Some(cap) = held.as_ref() {
                    let mut session = output.session(cap);
                    while let Some(entry) = pending.first_entry() {
                        if frontier.less_equal(entry.key()) {
                            break;
                        }
                        let t = *entry.key();
                        let mut updates = entry.remove();
                        updates.sort_by(|a, b| a.0.cmp(&b.0));
                        let mut i = 0;
                        while i < updates.len() {
                            let mut j = i;
                            let mut sum = 0;
                            while j < updates.len() && updates[j].0 == updates[i].0 {
                                sum += updates[j].1;
                                j += 1;
                            }
                            // Positive: a result. Negative: a left record leaving a
                            // microsecond after its time.
                            for _ in 0..sum.max(0) {
                                let (l, v) = &updates[i].0;
                                let values = at
                                    .iter()
                                    .map(|&(side, k)| match (side, v) {
                                        (0, _) => l.values[k].clone(),
                                        (_, Some((_, r))) => r.values[k].clone(),
                                        (_, None) => Value::Null,
                                    })
                                    .collect();
                                let ingest = v.as_ref().map_or(l.meta.ingest, |(_, r)| {
                                    l.meta.ingest.max(r.meta.ingest)
                                });
                                session.give(Record {
                                    values,
                                    meta: Meta {
                                        ingest,
                                        watermark: t,
                                    },
                                });
                                n += 1;
                            }
                            i = j;
                        }
                    }
                }
                match (pending.keys().next(), held.as_mut()) {
                    (None, _) => held = None,
                    (Some(&t), Some(h)) if *h.time() < t => h.downgrade(&t),
                    _ => {}
                }
                metrics.add_out(n);
            }
        },
    )
}
