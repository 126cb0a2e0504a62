//! The IoT per-device report — readings only, a 1 s tumbling average of temperature per device —
//! through Weir (the pipeline below, compiled from TOML) and through a hand-written timely
//! program doing the same work, in the same run, in both execution modes.
//!
//! Two hand-written sides: the typed program (its own generator, `weir_benches::typed`, plain
//! structs, a device as a number), and the old one, which shares Weir's generator and rows. Both
//! filter with a Rust closure, exchanges by device, and keeps `(sum, count)` per device and
//! window in a `HashMap`, summing naively in `f64`; Weir evaluates its compiled SQL filter, and
//! its `avg` is an exact, order-independent sum (the price of results that do not depend on the
//! number of workers). In micro-batch mode both sides release input in batches of 65,536
//! events per worker, advancing the frontier once per batch, as an unthrottled Weir source does.
//!
//! Then Weir's latency percentiles at a fixed open-loop rate (`WEIR_BENCH_RATE`, default
//! 200,000 events/s, for `WEIR_BENCH_SECONDS`, default 5) in continuous mode and in
//! micro-batch mode with 100 ms batches.
//!
//! `cargo bench -p weir-benches --bench window`; `WEIR_BENCH_EVENTS` (default 10,000,000) and
//! `WEIR_BENCH_REPS` (default 5) change the size.

use std::collections::HashMap;

use smol_str::SmolStr;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use weir_benches::typed::{typed_iot_source, Body, IotEvent};
use weir_benches::{
    closed_panes, device_report, env_or, iot_source, machine, median, run_hand_written, run_weir,
    sink_records,
};
use weir_engine::summary::{micros, PERCENTILES};
use weir_operators::schema::Record;
use weir_operators::value::Value;

/// The allocator the `weir` binary uses, for both sides of the comparison.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SECOND: i64 = 1_000_000;

/// Weir: returns (events/s, window results).
fn weir(events: u64, workers: usize, mode: &str) -> (f64, u64) {
    let timing = "start = \"2026-01-01T00:00:00Z\"\nevent_time_interval = \"1us\"";
    let (report, t) = run_weir(&device_report(events, mode, timing), workers);
    (
        events as f64 / t.as_secs_f64(),
        sink_records(&report, "out"),
    )
}

/// The hand-written timely program: returns (events/s, window results). `batch` is the number
/// of events a worker generates before it advances its capability.
/// The typed program, with its own generator: readings as (device number, ts, temperature),
/// exchanged by device, summed per device and pane.
fn typed(events: u64, workers: usize, batch: u64) -> (f64, u64) {
    run_hand_written(events, workers, move |scope, seen| {
        let s = typed_iot_source(scope, events, batch, 1000);
        let readings = s
            .unary::<timely::container::CapacityContainerBuilder<Vec<(u32, i64, f64)>>, _, _, _>(
                Pipeline,
                "filter",
                |_, _| {
                    move |input, output| {
                        input.for_each(|cap, data: &mut Vec<IotEvent>| {
                            let mut session = output.session(&cap);
                            for e in data.drain(..) {
                                if let Body::Reading { temperature, .. } = e.body {
                                    session.give((e.device, e.ts, temperature));
                                }
                            }
                        });
                    }
                },
            );
        average_per_key(readings, |r: &(u32, i64, f64)| r.0 as u64, seen);
    })
}

/// The old hand-written program, over Weir's generator and rows.
fn hand_written(events: u64, workers: usize, batch: u64) -> (f64, u64) {
    run_hand_written(events, workers, move |scope, seen| {
        let s = iot_source(scope, events, batch, 1000);
        // Readings only, as (device, ts, temperature).
        let readings = s.unary::<timely::container::CapacityContainerBuilder<
            Vec<(SmolStr, i64, f64)>,
        >, _, _, _>(Pipeline, "filter", |_, _| {
            move |input, output| {
                input.for_each(|cap, data: &mut Vec<Record>| {
                    let mut session = output.session(&cap);
                    for r in data.drain(..) {
                        let v = r.values;
                        if let (
                            Value::Str(k),
                            Value::Str(d),
                            Value::Ts(ts),
                            Value::F64(t),
                        ) = (&v[2], &v[3], &v[1], &v[4])
                        {
                            if k == "reading" {
                                session.give((d.clone(), *ts, *t));
                            }
                        }
                    }
                });
            }
        });
        let route = |r: &(SmolStr, i64, f64)| {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            r.0.hash(&mut h);
            h.finish()
        };
        average_per_key(readings, route, seen);
    })
}

/// The hand-written window: readings `(key, ts, value)` exchanged by `route`, `(sum, count)`
/// per key in a `HashMap` per 1 s pane, each pane's averages sent when the frontier passes its
/// end; counts the results into `seen`.
fn average_per_key<'s, K>(
    readings: timely::dataflow::Stream<'s, u64, Vec<(K, i64, f64)>>,
    route: impl Fn(&(K, i64, f64)) -> u64 + 'static,
    seen: std::rc::Rc<std::cell::Cell<u64>>,
) where
    K: std::hash::Hash
        + Eq
        + Clone
        + serde::Serialize
        + for<'a> serde::Deserialize<'a>
        + Send
        + 'static,
{
    readings
        .unary_frontier::<timely::container::CapacityContainerBuilder<Vec<(K, i64, f64)>>, _, _, _>(
            Exchange::new(route),
            "window",
            |_, _| {
                type Pane<K> = (Capability<u64>, HashMap<K, (f64, u64)>);
                let mut panes: HashMap<i64, Pane<K>> = HashMap::new();
                move |(input, frontier), output| {
                    input.for_each(|cap, data: &mut Vec<(K, i64, f64)>| {
                        for (d, ts, t) in data.drain(..) {
                            let end = ts - ts.rem_euclid(SECOND) + SECOND;
                            let pane = panes.entry(end).or_insert_with(|| {
                                (cap.delayed(&(end as u64 - 1), 0), HashMap::new())
                            });
                            let e = pane.1.entry(d).or_insert((0.0, 0));
                            e.0 += t;
                            e.1 += 1;
                        }
                    });
                    for end in closed_panes(&panes, |t| frontier.less_equal(&t)) {
                        let (cap, groups) = panes.remove(&end).expect("listed");
                        let mut session = output.session(&cap);
                        for (d, (sum, n)) in groups {
                            session.give((d, end - SECOND, sum / n as f64));
                        }
                    }
                }
            },
        )
        .sink(Pipeline, "count", move |(input, _)| {
            input.for_each(|_, data: &mut Vec<(K, i64, f64)>| {
                seen.set(seen.get() + data.len() as u64)
            });
        });
}

fn main() {
    let events = env_or("WEIR_BENCH_EVENTS", 10_000_000);
    let reps = env_or("WEIR_BENCH_REPS", 5) as usize;
    println!(
        "1 s tumbling average per device over {events} generated IoT events, {reps} runs each, medians"
    );
    println!("machine: {}", machine());
    println!(
        "{:>12}  {:>7}  {:>14}  {:>14}  {:>10}  {:>14}  {:>9}",
        "mode", "workers", "weir ev/s", "typed ev/s", "weir/typed", "old ev/s", "weir/old"
    );
    for (mode, batch) in [("continuous", 4096), ("micro-batch", 65_536)] {
        for workers in [1, 2] {
            let (mut w, mut t, mut h) = (Vec::new(), Vec::new(), Vec::new());
            let mut outs = (0, 0, 0);
            for _ in 0..reps {
                let (rate, out) = weir(events, workers, mode);
                w.push(rate);
                outs.0 = out;
                let (rate, out) = typed(events, workers, batch);
                t.push(rate);
                outs.1 = out;
                let (rate, out) = hand_written(events, workers, batch);
                h.push(rate);
                outs.2 = out;
            }
            assert_eq!(outs.0, outs.1, "both sides must produce the same windows");
            assert_eq!(outs.0, outs.2, "both sides must produce the same windows");
            let (wm, tm, hm) = (median(w), median(t), median(h));
            println!(
                "{mode:>12}  {workers:>7}  {wm:>14.0}  {tm:>14.0}  {:>10.2}  {hm:>14.0}  {:>9.2}",
                wm / tm,
                wm / hm
            );
        }
    }

    let rate = env_or("WEIR_BENCH_RATE", 200_000);
    let seconds = env_or("WEIR_BENCH_SECONDS", 5);
    println!();
    println!("latency at an offered {rate} events/s for {seconds} s, 2 workers (open loop; event time = scheduled time)");
    let mut header = format!("{:>22}  {:>10}", "mode", "latency");
    for (l, _) in PERCENTILES {
        header += &format!("  {l:>9}");
    }
    header += &format!("  {:>9}", "max");
    println!("{header}");
    for mode in ["continuous", "micro-batch"] {
        let timing = format!("rate = {rate}.0");
        let mut text = device_report(rate * seconds, mode, &timing);
        if mode == "micro-batch" {
            text = text.replace(
                "mode = \"micro-batch\"",
                "mode = \"micro-batch\"\nbatch_interval = \"100ms\"",
            );
        }
        let (report, _) = run_weir(&text, 2);
        let sink = &report.sinks[0];
        let shown = if mode == "continuous" {
            "continuous".to_string()
        } else {
            "micro-batch 100ms".into()
        };
        for (kind, h) in [
            ("processing", &sink.latency.processing),
            ("event-time", &sink.latency.event),
        ] {
            let mut line = format!("{shown:>22}  {kind:>10}");
            for (_, q) in PERCENTILES {
                line += &format!("  {:>9}", micros(h.value_at_percentile(q)));
            }
            line += &format!("  {:>9}", micros(h.max()));
            println!("{line}");
        }
    }
}
