//! Filter + map over generated IoT events: Weir (the pipeline below, compiled from TOML) against a
//! hand-written timely program doing the same work, in the same run.
//!
//! The hand-written side is typed: its own generator (`weir_benches::typed`, sharing no Weir
//! types or functions) makes the same events as plain structs, and it filters and maps them
//! with Rust closures into a typed tuple, where Weir generates Arrow columns and evaluates its
//! compiled SQL over them. The old hand-written side (Weir's generator and rows, then typed
//! closures) is kept as a third column, so the figures stay comparable with earlier ones. Runs
//! alternate between the sides, and the report gives medians and ratios.
//!
//! `cargo bench -p weir-benches --bench filter_map`; `WEIR_BENCH_EVENTS` (default 10,000,000)
//! and `WEIR_BENCH_REPS` (default 5) change the size. `WEIR_BENCH_SIDE=weir` (or `typed`, `old`)
//! runs that side alone, once, on one worker (or `WEIR_BENCH_WORKERS`), and prints its records
//! and rate: run it under
//! `valgrind --tool=callgrind` with two sizes, and the difference of the counts over the
//! difference of the sizes is the side's instructions per event.

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use weir_benches::typed::{typed_iot_source, Body, IotEvent};
use weir_benches::{env_or, iot_source, machine, median, run_hand_written, run_weir, sink_records};
use weir_operators::schema::Record;
use weir_operators::value::Value;

/// The allocator the `weir` binary uses, for both sides of the comparison.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn pipeline(events: u64) -> String {
    format!(
        r#"
[pipeline]
name = "bench-filter-map"

[sources.sensors]
type = "generator"
profile = "iot"
events = {events}
devices = 1000
seed = 7
start = "2026-01-01T00:00:00Z"
event_time_interval = "1us"

[transforms.hot]
type = "filter"
inputs = ["sensors"]
condition = "kind = 'reading' AND temperature > 30.0"

[transforms.fahrenheit]
type = "map"
inputs = ["hot"]
select = ["id", "ts", "device_id"]
compute = {{ temp_f = "temperature * 1.8 + 32" }}

[sinks.out]
type = "null"
inputs = ["fahrenheit"]
"#
    )
}

/// Weir: returns (events/s, records out).
fn weir(events: u64, workers: usize) -> (f64, u64) {
    let (report, t) = run_weir(&pipeline(events), workers);
    (
        events as f64 / t.as_secs_f64(),
        sink_records(&report, "out"),
    )
}

/// The typed timely program, with its own generator: returns (events/s, records out).
fn typed(events: u64, workers: usize) -> (f64, u64) {
    run_hand_written(events, workers, move |scope, seen| {
        let s = typed_iot_source(scope, events, 4096, 1000);
        s.unary::<timely::container::CapacityContainerBuilder<Vec<(u64, i64, u32, f64)>>, _, _, _>(
            Pipeline,
            "filter_map",
            |_, _| {
                move |input, output| {
                    input.for_each(|cap, data: &mut Vec<IotEvent>| {
                        let mut session = output.session(&cap);
                        for e in data.drain(..) {
                            if let Body::Reading { temperature, .. } = e.body {
                                if temperature > 30.0 {
                                    session.give((e.id, e.ts, e.device, temperature * 1.8 + 32.0));
                                }
                            }
                        }
                    });
                }
            },
        )
        .sink(Pipeline, "count", move |(input, _)| {
            input.for_each(|_, data: &mut Vec<(u64, i64, u32, f64)>| {
                seen.set(seen.get() + data.len() as u64)
            });
        });
    })
}

/// The old hand-written program, over Weir's generator and rows: returns (events/s, records out).
fn hand_written(events: u64, workers: usize) -> (f64, u64) {
    run_hand_written(events, workers, move |scope, seen| {
        let s = iot_source(scope, events, 4096, 1000);
        s.unary::<timely::container::CapacityContainerBuilder<
            Vec<(u64, i64, smol_str::SmolStr, f64)>,
        >, _, _, _>(Pipeline, "filter_map", |_, _| {
            move |input, output| {
                input.for_each(|cap, data: &mut Vec<Record>| {
                    let mut session = output.session(&cap);
                    for r in data.drain(..) {
                        let v = r.values;
                        let hot = matches!(&v[2], Value::Str(k) if k == "reading")
                            && matches!(v[4], Value::F64(t) if t > 30.0);
                        if hot {
                            let (
                                Value::U64(id),
                                Value::Ts(ts),
                                Value::Str(dev),
                                Value::F64(t),
                            ) = (&v[0], &v[1], &v[3], &v[4])
                            else {
                                continue;
                            };
                            session.give((*id, *ts, dev.clone(), t * 1.8 + 32.0));
                        }
                    }
                });
            }
        })
        .sink(Pipeline, "count", move |(input, _)| {
            input.for_each(|_, data: &mut Vec<(u64, i64, smol_str::SmolStr, f64)>| {
                seen.set(seen.get() + data.len() as u64)
            });
        });
    })
}

fn main() {
    let events = env_or("WEIR_BENCH_EVENTS", 10_000_000);
    let reps = env_or("WEIR_BENCH_REPS", 5) as usize;
    // One side alone, once on 1 worker, for counting its instructions under callgrind.
    if let Ok(side) = std::env::var("WEIR_BENCH_SIDE") {
        let w = env_or("WEIR_BENCH_WORKERS", 1) as usize;
        let (rate, out) = match side.as_str() {
            "weir" => weir(events, w),
            "typed" => typed(events, w),
            "old" => hand_written(events, w),
            other => panic!("WEIR_BENCH_SIDE is weir, typed or old, not {other:?}"),
        };
        println!("{side}: {out} records out, {rate:.0} events/s");
        return;
    }
    println!("filter+map over {events} generated IoT events, {reps} runs each, medians");
    println!("machine: {}", machine());
    println!(
        "{:>7}  {:>14}  {:>14}  {:>12}  {:>16}  {:>10}",
        "workers", "weir ev/s", "typed ev/s", "weir/typed", "old timely ev/s", "weir/old"
    );
    for workers in [1, 2] {
        let (mut w, mut t, mut h) = (Vec::new(), Vec::new(), Vec::new());
        let mut outs = (0, 0, 0);
        for _ in 0..reps {
            let (rate, out) = weir(events, workers);
            w.push(rate);
            outs.0 = out;
            let (rate, out) = typed(events, workers);
            t.push(rate);
            outs.1 = out;
            let (rate, out) = hand_written(events, workers);
            h.push(rate);
            outs.2 = out;
        }
        assert_eq!(outs.0, outs.1, "both sides must produce the same records");
        assert_eq!(outs.0, outs.2, "both sides must produce the same records");
        let (wm, tm, hm) = (median(w), median(t), median(h));
        println!(
            "{workers:>7}  {wm:>14.0}  {tm:>14.0}  {:>12.2}  {hm:>16.0}  {:>10.2}",
            wm / tm,
            wm / hm
        );
    }
}
