//! Joins over generated IoT data with many keys: readings (left, ~90% of events) against device
//! status updates (right, ~7%), on the device, over 100,000 devices. Each join kind through
//! Weir; then the temporal join beside hand-written timely + differential programs doing the
//! same work with the same plan (versions arranged by key, readings as pulses, `join_core`, a
//! `reduce` for the latest version): the typed program, with its own generator
//! (`weir_benches::typed`) and devices as numbers, and the old one, over Weir's generator and
//! rows with devices as strings, kept so earlier figures stay comparable.
//!
//! `cargo bench -p weir-benches --bench joins`; `WEIR_BENCH_EVENTS` (default 5,000,000) and
//! `WEIR_BENCH_REPS` (default 3) change the size.

use std::collections::{BTreeMap, HashMap};

use differential_dataflow::AsCollection;
use smol_str::SmolStr;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use weir_benches::typed::{typed_iot_source, Body, IotEvent};
use weir_benches::{env_or, iot_source, machine, median, run_hand_written, run_weir, sink_records};
use weir_operators::schema::Record;
use weir_operators::value::Value;

/// The allocator the `weir` binary uses, for both sides of the comparison.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn pipeline(events: u64, join: &str) -> String {
    format!(
        r#"
[pipeline]
name = "bench-joins"

[sources.sensors]
type = "generator"
profile = "iot"
events = {events}
devices = 100000
seed = 7
start = "2026-01-01T00:00:00Z"
event_time_interval = "1us"

[transforms.readings]
type = "filter"
inputs = ["sensors"]
condition = "kind = 'reading'"

[transforms.status]
type = "filter"
inputs = ["sensors"]
condition = "kind = 'status'"

[transforms.joined]
type = "join"
inputs = ["readings", "status"]
on = ["device_id"]
{join}
select = ["left.id", "right.id AS status_id"]

[sinks.out]
type = "null"
inputs = ["joined"]
"#
    )
}

fn weir(events: u64, workers: usize, join: &str) -> (f64, u64) {
    let (report, t) = run_weir(&pipeline(events, join), workers);
    (
        events as f64 / t.as_secs_f64(),
        sink_records(&report, "out"),
    )
}

/// A (time, id) pair: a reading, or a status version.
type Event = (i64, u64);
/// Updates of (reading, its latest version).
type Enriched = Vec<((Event, Event), u64, isize)>;

/// The temporal join written by hand over `(key, ts, id)` of readings and of status updates,
/// exchanged by the key's hash: versions arranged by key, readings as pulses, `join_core`, a
/// `reduce` for the latest version; counts the results into `seen`.
fn temporal_join<'s, K>(
    readings: timely::dataflow::Stream<'s, u64, Vec<(K, i64, u64)>>,
    status: timely::dataflow::Stream<'s, u64, Vec<(K, i64, u64)>>,
    seen: std::rc::Rc<std::cell::Cell<u64>>,
) where
    K: differential_dataflow::ExchangeData + differential_dataflow::Hashable + std::hash::Hash,
{
    let route = |x: &(K, i64, u64)| {
        use std::hash::Hasher;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        x.0.hash(&mut h);
        h.finish()
    };
    let versions = typed_versions(status, route);
    let table = versions.as_collection().arrange_by_key();
    let lefts = readings
        .unary::<timely::container::CapacityContainerBuilder<
            Vec<((K, (i64, u64)), u64, isize)>,
        >, _, _, _>(Pipeline, "Pulses", |_, _| {
            move |input, output| {
                input.for_each(|cap, data: &mut Vec<(K, i64, u64)>| {
                    let mut session = output.session(&cap);
                    for (k, ts, id) in data.drain(..) {
                        session.give(((k.clone(), (ts, id)), ts as u64, 1));
                        session.give(((k, (ts, id)), ts as u64 + 1, -1));
                    }
                });
            }
        })
        .as_collection();
    lefts
        .join_core(table, |_k, l: &(i64, u64), v: &(i64, u64)| {
            (v.0 <= l.0).then_some((*l, *v))
        })
        .reduce(|_l, vs, out| out.push((*vs[vs.len() - 1].0, 1)))
        .inner
        .sink(Pipeline, "count", move |(input, _)| {
            input.for_each(|_, data: &mut Enriched| {
                let n: isize = data.iter().map(|x| x.2.max(0)).sum();
                seen.set(seen.get() + n as u64);
            });
        });
}

/// Versions as differential updates: ((device, (time, id)), time, diff).
type VersionUpdates<'s, K> = timely::dataflow::Stream<'s, u64, Vec<((K, (i64, u64)), u64, isize)>>;

/// Status updates as versions, exchanged by `route`: each +1 at its time and -1 at its
/// successor's.
fn typed_versions<'s, K>(
    status: timely::dataflow::Stream<'s, u64, Vec<(K, i64, u64)>>,
    route: impl Fn(&(K, i64, u64)) -> u64 + 'static,
) -> VersionUpdates<'s, K>
where
    K: differential_dataflow::ExchangeData + std::hash::Hash + Eq,
{
    status.unary::<timely::container::CapacityContainerBuilder<
        Vec<((K, (i64, u64)), u64, isize)>,
    >, _, _, _>(Exchange::new(route), "Versions", |_, _| {
        let mut live: HashMap<K, BTreeMap<(i64, u64), ()>> = HashMap::new();
        move |input, output| {
            input.for_each(|cap, data: &mut Vec<(K, i64, u64)>| {
                let mut session = output.session(&cap);
                for (k, ts, id) in data.drain(..) {
                    let vs = live.entry(k.clone()).or_default();
                    let me = (ts, id);
                    let before = vs.range(..me).next_back().map(|(v, _)| *v);
                    let after = vs.range(me..).next().map(|(v, _)| v.0);
                    session.give(((k.clone(), me), ts as u64, 1));
                    if let Some(s) = after {
                        session.give(((k.clone(), me), s as u64, -1));
                    }
                    if let Some(p) = before {
                        if let Some(s) = after {
                            session.give(((k.clone(), p), s as u64, 1));
                        }
                        session.give(((k.clone(), p), ts as u64, -1));
                    }
                    vs.insert(me, ());
                    while vs.len() > 2 {
                        vs.pop_first();
                    }
                }
            });
        }
    })
}

/// The typed program: its own generator, devices as numbers: returns (events/s, results).
fn typed(events: u64, workers: usize) -> (f64, u64) {
    run_hand_written(events, workers, move |scope, seen| {
        let (readings, status) = typed_split(scope, events);
        temporal_join(readings, status, seen);
    })
}

/// A stream of (device, ts, id).
type KeyedStream<'s> = timely::dataflow::Stream<'s, u64, Vec<(u32, i64, u64)>>;

/// Readings and status updates of the typed generator, as (device, ts, id).
fn typed_split<'s>(
    scope: timely::dataflow::Scope<'s, u64>,
    events: u64,
) -> (KeyedStream<'s>, KeyedStream<'s>) {
    let events = typed_iot_source(scope, events, 4096, 100_000);
    let split =
        |reading: bool| {
            events.clone().unary::<timely::container::CapacityContainerBuilder<
            Vec<(u32, i64, u64)>,
        >, _, _, _>(Pipeline, "split", move |_, _| {
            move |input, output| {
                input.for_each(|cap, data: &mut Vec<IotEvent>| {
                    let mut session = output.session(&cap);
                    for e in data.drain(..) {
                        let keep = match e.body {
                            Body::Reading { .. } => reading,
                            Body::Status { .. } => !reading,
                            Body::Alarm { .. } => false,
                        };
                        if keep {
                            session.give((e.device, e.ts, e.id));
                        }
                    }
                });
            }
        })
        };
    (split(true), split(false))
}

/// Counting the joined pairs a typed program emits.
trait CountInto {
    /// Adds how many pairs go by to `seen`.
    fn count_into(self, seen: std::rc::Rc<std::cell::Cell<u64>>);
}

impl CountInto for timely::dataflow::Stream<'_, u64, Vec<(u64, u64)>> {
    fn count_into(self, seen: std::rc::Rc<std::cell::Cell<u64>>) {
        self.sink(Pipeline, "count", move |(input, _)| {
            input
                .for_each(|_, data: &mut Vec<(u64, u64)>| seen.set(seen.get() + data.len() as u64));
        });
    }
}

/// The typed as-of program: the plan of Weir's temporal join, over typed data. Versions
/// arranged by device (exchanged by device, arranged in place); each reading waits until the
/// arrangement is complete through its time, then looks its device up as of that time, in
/// device order.
fn typed_asof(events: u64, workers: usize) -> (f64, u64) {
    use differential_dataflow::operators::arrange::arrangement::arrange_core;
    use differential_dataflow::trace::cursor::{cursor_list, Cursor};
    use differential_dataflow::trace::implementations::{ValBatcher, ValSpine};
    use differential_dataflow::trace::TraceReader;
    use std::cmp::Reverse;
    use timely::dataflow::operators::generic::operator::Operator as _;
    use timely::progress::Antichain;
    run_hand_written(events, workers, move |scope, seen| {
        let (readings, status) = typed_split(scope, events);
        let route = |x: &(u32, i64, u64)| x.0 as u64;
        let versions = typed_versions(status, route);
        type Spine = ValSpine<u32, (i64, u64), u64, isize>;
        let table = arrange_core::<_, _, ValBatcher<u32, (i64, u64), u64, isize>, Spine>(
            versions,
            Pipeline,
            "Versions",
            ValBatcher::new,
        );
        let mut trace = table.trace.clone();
        readings
            .binary_frontier::<_, timely::container::CapacityContainerBuilder<Vec<(u64, u64)>>, _, _, _, _>(
                table.stream,
                Exchange::new(route),
                Pipeline,
                "AsOf",
                move |_, _| {
                    let mut waiting: std::collections::BinaryHeap<Reverse<(i64, u32, u64)>> =
                        Default::default();
                    let mut held: Option<timely::dataflow::operators::Capability<u64>> = None;
                    let mut upper = Antichain::from_elem(0u64);
                    let mut ready = Vec::new();
                    move |(in0, f0), (in1, _), output| {
                        in1.for_each(|_, _| {});
                        in0.for_each(|cap, data: &mut Vec<(u32, i64, u64)>| {
                            for (k, ts, id) in data.drain(..) {
                                let t = ts.max(0) as u64;
                                if held.as_ref().is_none_or(|h| *h.time() > t) {
                                    held = Some(cap.delayed(&t, 0));
                                }
                                waiting.push(Reverse((ts, k, id)));
                            }
                        });
                        trace.read_upper(&mut upper);
                        while let Some(&Reverse((ts, k, id))) = waiting.peek() {
                            if upper.less_equal(&(ts.max(0) as u64)) {
                                break;
                            }
                            waiting.pop();
                            ready.push((k, ts, id));
                        }
                        if !ready.is_empty() {
                            ready.sort_unstable();
                            let batches = trace.batches_through(upper.borrow()).expect("upper");
                            let (mut cursor, storage) = cursor_list(batches);
                            let mut session = output.session(held.as_ref().expect("held"));
                            for &(k, ts, id) in &ready {
                                cursor.seek_key(&storage, &k);
                                let mut best = None;
                                if cursor.get_key(&storage) == Some(&k) {
                                    cursor.rewind_vals(&storage);
                                    while let Some(v) = cursor.get_val(&storage) {
                                        if v.0 > ts {
                                            break;
                                        }
                                        let mut sum = 0;
                                        cursor.map_times(&storage, |t, d| {
                                            if *t <= ts.max(0) as u64 {
                                                sum += *d;
                                            }
                                        });
                                        if sum > 0 {
                                            best = Some(*v);
                                        }
                                        cursor.step_val(&storage);
                                    }
                                }
                                if let Some(v) = best {
                                    session.give((id, v.1));
                                }
                            }
                            ready.clear();
                        }
                        let next = waiting.peek().map(|Reverse((ts, _, _))| ts.max(&0).unsigned_abs());
                        match (next, held.as_mut()) {
                            (None, _) => held = None,
                            (Some(t), Some(h)) if *h.time() < t => h.downgrade(&t),
                            _ => {}
                        }
                        let low = f0.frontier().iter().min().copied();
                        let limit = [next, low, upper.iter().min().copied()].into_iter().flatten().min();
                        let limit = limit.map(Antichain::from_elem).unwrap_or_default();
                        trace.set_logical_compaction(limit.borrow());
                        trace.set_physical_compaction(limit.borrow());
                    }
                },
            )
            .count_into(seen);
    })
}

/// The typed interval join (readings against status updates of the same device within ±1 s,
/// inner), written by hand: both inputs exchanged by device; per device and side, a deque of
/// (ts, id) in arrival order (the generator's events are in order); each record probes the
/// other side's deque and is stored; records leave once both frontiers pass their time + 1 s.
fn typed_interval(events: u64, workers: usize) -> (f64, u64) {
    run_hand_written(events, workers, move |scope, seen| {
        use std::collections::VecDeque;
        use timely::dataflow::operators::generic::operator::Operator as _;
        let (readings, status) = typed_split(scope, events);
        let route = |x: &(u32, i64, u64)| x.0 as u64;
        readings
            .binary_frontier::<_, timely::container::CapacityContainerBuilder<Vec<(u64, u64)>>, _, _, _, _>(
                status,
                Exchange::new(route),
                Exchange::new(route),
                "IntervalJoin",
                |_, _| {
                    let mut sides: [HashMap<u32, VecDeque<(i64, u64)>>; 2] =
                        [HashMap::new(), HashMap::new()];
                    let mut expiry: [VecDeque<(i64, u32)>; 2] = [VecDeque::new(), VecDeque::new()];
                    move |(in0, f0), (in1, f1), output| {
                        let mut handle = |side: usize,
                                          cap: timely::dataflow::operators::InputCapability<u64>,
                                          data: &mut Vec<(u32, i64, u64)>| {
                            let mut session = output.session(&cap);
                            for (k, ts, id) in data.drain(..) {
                                if let Some(other) = sides[1 - side].get(&k) {
                                    for &(t, oid) in other {
                                        if (t - ts).abs() <= 1_000_000 {
                                            session.give(if side == 0 { (id, oid) } else { (oid, id) });
                                        }
                                    }
                                }
                                sides[side].entry(k).or_default().push_back((ts, id));
                                expiry[side].push_back((ts + 1_000_000, k));
                            }
                        };
                        in0.for_each(|cap, data| handle(0, cap, data));
                        in1.for_each(|cap, data| handle(1, cap, data));
                        for side in 0..2 {
                            while let Some(&(exp, k)) = expiry[side].front() {
                                let t = exp.max(0) as u64;
                                if f0.less_equal(&t) || f1.less_equal(&t) {
                                    break;
                                }
                                expiry[side].pop_front();
                                if let Some(d) = sides[side].get_mut(&k) {
                                    d.pop_front();
                                    if d.is_empty() {
                                        sides[side].remove(&k);
                                    }
                                }
                            }
                        }
                    }
                },
            )
            .count_into(seen);
    })
}

/// The typed window join (readings and status updates of the same device in the same 1 s
/// window, inner), written by hand: per window end and device, the ids of each side; a window
/// is joined and freed once both frontiers pass its end.
fn typed_window(events: u64, workers: usize) -> (f64, u64) {
    run_hand_written(events, workers, move |scope, seen| {
        use timely::dataflow::operators::generic::operator::Operator as _;
        let (readings, status) = typed_split(scope, events);
        let route = |x: &(u32, i64, u64)| x.0 as u64;
        readings
            .binary_frontier::<_, timely::container::CapacityContainerBuilder<Vec<(u64, u64)>>, _, _, _, _>(
                status,
                Exchange::new(route),
                Exchange::new(route),
                "WindowJoin",
                |cap, _| {
                    let mut cap = Some(cap);
                    let mut windows: BTreeMap<i64, HashMap<u32, [Vec<u64>; 2]>> = BTreeMap::new();
                    move |(in0, f0), (in1, f1), output| {
                        let mut handle = |side: usize, data: &mut Vec<(u32, i64, u64)>| {
                            for (k, ts, id) in data.drain(..) {
                                let end = ts.div_euclid(1_000_000) * 1_000_000 + 1_000_000;
                                windows.entry(end).or_default().entry(k).or_default()[side].push(id);
                            }
                        };
                        in0.for_each(|_, data| handle(0, data));
                        in1.for_each(|_, data| handle(1, data));
                        while let Some(entry) = windows.first_entry() {
                            let t = (*entry.key() - 1).max(0) as u64;
                            if f0.less_equal(&t) || f1.less_equal(&t) {
                                break;
                            }
                            let table = entry.remove();
                            if let Some(c) = cap.as_ref() {
                                let c = c.delayed(&t.max(*c.time()));
                                let mut session = output.session(&c);
                                for [ls, rs] in table.into_values() {
                                    for &l in &ls {
                                        for &r in &rs {
                                            session.give((l, r));
                                        }
                                    }
                                }
                            }
                        }
                        if f0.is_empty() && f1.is_empty() && windows.is_empty() {
                            cap = None;
                        } else if let (Some(c), Some(&e)) = (cap.as_mut(), windows.keys().next()) {
                            let t = (e - 1).max(0) as u64;
                            let low = f0.frontier().iter().chain(f1.frontier().iter()).min().copied().unwrap_or(t);
                            let t = t.min(low);
                            if *c.time() < t {
                                c.downgrade(&t);
                            }
                        }
                    }
                },
            )
            .count_into(seen);
    })
}

/// The old hand-written program, over Weir's generator and rows (devices as strings): returns
/// (events/s, results).
fn hand_written(events: u64, workers: usize) -> (f64, u64) {
    run_hand_written(events, workers, move |scope, seen| {
        let events = iot_source(scope, events, 4096, 100_000);
        // (device, ts, id) of readings and of status updates.
        let split = |want: &'static str| {
            events.clone().unary::<timely::container::CapacityContainerBuilder<
                Vec<(SmolStr, i64, u64)>,
            >, _, _, _>(Pipeline, want, move |_, _| {
                move |input, output| {
                    input.for_each(|cap, data: &mut Vec<Record>| {
                        let mut session = output.session(&cap);
                        for r in data.drain(..) {
                            let v = r.values;
                            if let (Value::Str(k), Value::Str(d), Value::Ts(ts), Value::U64(id)) =
                                (&v[2], &v[3], &v[1], &v[0])
                            {
                                if k == want {
                                    session.give((d.clone(), *ts, *id));
                                }
                            }
                        }
                    });
                }
            })
        };
        temporal_join(split("reading"), split("status"), seen);
    })
}

fn main() {
    let events = env_or("WEIR_BENCH_EVENTS", 5_000_000);
    let reps = env_or("WEIR_BENCH_REPS", 3) as usize;
    println!(
        "joins of IoT readings with status updates over 100,000 devices, {events} events, {reps} runs each, medians"
    );
    println!("machine: {}", machine());
    // `WEIR_BENCH_PART=temporal` runs only the temporal join's comparison.
    let only_temporal = std::env::var("WEIR_BENCH_PART").is_ok_and(|p| p == "temporal");
    let kinds = [
        (
            "interval ±1s, inner",
            "kind = \"interval\"\nbetween = [\"-1s\", \"1s\"]",
        ),
        ("window 1s, inner", "kind = \"window\"\nsize = \"1s\""),
        ("temporal, inner", "kind = \"temporal\""),
    ];
    println!(
        "{:>8}  {:>22}  {:>14}  {:>12}",
        "workers", "join", "events/s", "results"
    );
    for workers in [1, 2] {
        if only_temporal {
            break;
        }
        for (name, join) in kinds {
            let mut rates = Vec::new();
            let mut out = 0;
            for _ in 0..reps {
                let (r, o) = weir(events, workers, join);
                rates.push(r);
                out = o;
            }
            println!(
                "{workers:>8}  {name:>22}  {:>14.0}  {out:>12}",
                median(rates)
            );
        }
    }
    println!();
    println!("interval and window joins: Weir against typed hand-written timely programs");
    println!(
        "{:>8}  {:>22}  {:>14}  {:>14}  {:>10}",
        "workers", "join", "weir ev/s", "typed ev/s", "weir/typed"
    );
    for workers in [1, 2] {
        if only_temporal {
            break;
        }
        for (name, join, typed_join) in [
            (
                "interval ±1s, inner",
                "kind = \"interval\"\nbetween = [\"-1s\", \"1s\"]",
                typed_interval as fn(u64, usize) -> (f64, u64),
            ),
            (
                "window 1s, inner",
                "kind = \"window\"\nsize = \"1s\"",
                typed_window,
            ),
        ] {
            let (mut w, mut t) = (Vec::new(), Vec::new());
            let mut outs = (0, 0);
            for _ in 0..reps {
                let (r, o) = weir(events, workers, join);
                w.push(r);
                outs.0 = o;
                let (r, o) = typed_join(events, workers);
                t.push(r);
                outs.1 = o;
            }
            assert_eq!(
                outs.0, outs.1,
                "both sides must produce the same results ({name})"
            );
            let (wm, tm) = (median(w), median(t));
            println!(
                "{workers:>8}  {name:>22}  {wm:>14.0}  {tm:>14.0}  {:>10.2}",
                wm / tm
            );
        }
    }
    println!();
    println!("temporal join: Weir against hand-written timely + differential programs");
    println!("  typed: join_core + reduce plan; as-of: Weir's plan (arranged versions, lookups as of each reading's time); old: join_core + reduce over Weir's generator and rows");
    println!(
        "{:>8}  {:>12}  {:>12}  {:>12}  {:>12}  {:>11}  {:>11}  {:>9}",
        "workers",
        "weir ev/s",
        "typed ev/s",
        "as-of ev/s",
        "old ev/s",
        "weir/typed",
        "weir/as-of",
        "weir/old"
    );
    for workers in [1, 2] {
        let (mut w, mut t, mut a, mut h) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut outs = (0, 0, 0, 0);
        for _ in 0..reps {
            let (r, o) = weir(events, workers, "kind = \"temporal\"");
            w.push(r);
            outs.0 = o;
            let (r, o) = typed(events, workers);
            t.push(r);
            outs.1 = o;
            let (r, o) = typed_asof(events, workers);
            a.push(r);
            outs.2 = o;
            let (r, o) = hand_written(events, workers);
            h.push(r);
            outs.3 = o;
        }
        assert_eq!(outs.0, outs.1, "both sides must produce the same results");
        assert_eq!(outs.0, outs.2, "both sides must produce the same results");
        assert_eq!(outs.0, outs.3, "both sides must produce the same results");
        let (wm, tm, am, hm) = (median(w), median(t), median(a), median(h));
        println!(
            "{workers:>8}  {wm:>12.0}  {tm:>12.0}  {am:>12.0}  {hm:>12.0}  {:>11.2}  {:>11.2}  {:>9.2}",
            wm / tm,
            wm / am,
            wm / hm
        );
    }
}
