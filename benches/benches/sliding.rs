//! Sliding windows against the same window as tumbling: the per-device 10 s average over
//! generated IoT readings, as a tumbling window and as sliding windows with slide = size/10
//! and size/100 (10x and 100x as many windows). Weir builds sliding windows from panes of one
//! slide and combines them, so it never copies an event into size/slide windows: throughput
//! should fall by far less than the factor of extra windows.
//!
//! `cargo bench -p weir-benches --bench sliding`; `WEIR_BENCH_EVENTS` (default 10,000,000) and
//! `WEIR_BENCH_REPS` (default 5) change the size.

use weir_benches::{env_or, machine, median, run_weir, sink_records};

/// The allocator the `weir` binary uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn pipeline(events: u64, shape: &str) -> String {
    format!(
        r#"
[pipeline]
name = "bench-sliding"

[sources.sensors]
type = "generator"
profile = "iot"
events = {events}
devices = 1000
seed = 7
start = "2026-01-01T00:00:00Z"
event_time_interval = "10us"

[transforms.readings]
type = "filter"
inputs = ["sensors"]
condition = "kind = 'reading'"

[transforms.avg]
type = "window"
inputs = ["readings"]
{shape}
group_by = ["device_id"]
aggregates = {{ avg_temp = "avg(temperature)" }}

[sinks.out]
type = "null"
inputs = ["avg"]
"#
    )
}

/// Returns (events/s, window results).
fn weir(events: u64, workers: usize, shape: &str) -> (f64, u64) {
    let (report, t) = run_weir(&pipeline(events, shape), workers);
    (
        events as f64 / t.as_secs_f64(),
        sink_records(&report, "out"),
    )
}

fn main() {
    let events = env_or("WEIR_BENCH_EVENTS", 10_000_000);
    let reps = env_or("WEIR_BENCH_REPS", 5) as usize;
    println!(
        "10 s average per device (1,000 devices) over {events} IoT events (100 s of event time), {reps} runs each, medians"
    );
    println!("machine: {}", machine());
    println!(
        "{:>8}  {:>22}  {:>14}  {:>10}  {:>14}  {:>16}",
        "workers", "window", "events/s", "results", "vs tumbling", "windows per event"
    );
    let shapes = [
        ("tumbling 10s", "size = \"10s\"", 1.0),
        (
            "sliding 10s / 1s",
            "kind = \"sliding\"\nsize = \"10s\"\nslide = \"1s\"",
            10.0,
        ),
        (
            "sliding 10s / 100ms",
            "kind = \"sliding\"\nsize = \"10s\"\nslide = \"100ms\"",
            100.0,
        ),
    ];
    for workers in [1, 2] {
        let mut base = 0.0;
        for (name, shape, factor) in shapes {
            let mut rates = Vec::new();
            let mut out = 0;
            for _ in 0..reps {
                let (r, o) = weir(events, workers, shape);
                rates.push(r);
                out = o;
            }
            let m = median(rates);
            if factor == 1.0 {
                base = m;
            }
            println!(
                "{workers:>8}  {name:>22}  {m:>14.0}  {out:>10}  {:>14.2}  {factor:>16}",
                m / base
            );
        }
    }
}
