//! Filter + map over generated IoT events: Weir (the pipeline below, compiled from TOML) against a
//! hand-written timely program doing the same work, in the same run.
//!
//! Both sides generate the same events with the same generator function (so generation costs the
//! same); the hand-written side then filters and maps with Rust closures over field positions,
//! into a typed tuple, where Weir evaluates its compiled SQL expressions over dynamic records.
//! Runs alternate between the two, and the report gives medians and the ratio.
//!
//! `cargo bench -p weir-benches --bench filter_map`; `WEIR_BENCH_EVENTS` (default 10,000,000)
//! and `WEIR_BENCH_REPS` (default 5) change the size.

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
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

/// The hand-written timely program: returns (events/s, records out).
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
    println!("filter+map over {events} generated IoT events, {reps} runs each, medians");
    println!("machine: {}", machine());
    println!(
        "{:>7}  {:>14}  {:>14}  {:>12}",
        "workers", "weir ev/s", "timely ev/s", "weir/timely"
    );
    for workers in [1, 2] {
        let (mut w, mut h) = (Vec::new(), Vec::new());
        let mut outs = (0, 0);
        for _ in 0..reps {
            let (rate, out) = weir(events, workers);
            w.push(rate);
            outs.0 = out;
            let (rate, out) = hand_written(events, workers);
            h.push(rate);
            outs.1 = out;
        }
        assert_eq!(outs.0, outs.1, "both sides must produce the same records");
        let (wm, hm) = (median(w), median(h));
        println!("{workers:>7}  {wm:>14.0}  {hm:>14.0}  {:>12.2}", wm / hm);
    }
}
