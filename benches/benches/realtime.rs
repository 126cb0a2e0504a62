//! Alerting and prediction beside a window of the same key cardinality: over generated IoT
//! readings of 1,000 devices, the per-device 1 s average (a tumbling window), an alert per
//! device (temperature above 30 for 1 s, cleared below 28), an alarm-count alert per device,
//! and an EWMA and a Holt model per device. Alerts and models take each key's records in
//! event-time order (the price of results that do not depend on arrival order), as rows; the
//! window aggregates columns.
//!
//! `cargo bench -p weir-benches --bench realtime`; `WEIR_BENCH_EVENTS` (default 2,000,000) and
//! `WEIR_BENCH_REPS` (default 5) change the size.

use weir_benches::{env_or, machine, median, run_weir, sink_records};

/// The allocator the `weir` binary uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn pipeline(events: u64, transform: &str) -> String {
    format!(
        r#"
[pipeline]
name = "bench-realtime"

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

[transforms.op]
inputs = ["readings"]
{transform}

[sinks.out]
type = "null"
inputs = ["op"]
"#
    )
}

fn main() {
    let events = env_or("WEIR_BENCH_EVENTS", 2_000_000);
    let reps = env_or("WEIR_BENCH_REPS", 5) as usize;
    println!(
        "per device (1,000 devices) over {events} IoT events ({} s of event time), {reps} runs each, medians",
        events / 100_000
    );
    println!("machine: {}", machine());
    println!(
        "{:>8}  {:>34}  {:>12}  {:>10}  {:>10}",
        "workers", "transform", "events/s", "out", "vs window"
    );
    let ops = [
        ("window: 1 s average", "type = \"window\"\nsize = \"1s\"\ngroup_by = [\"device_id\"]\naggregates = { avg_temp = \"avg(temperature)\" }"),
        ("alert: > 30 for 1 s, clear < 28", "type = \"alert\"\nkey = [\"device_id\"]\ncondition = \"temperature > 30\"\nfor = \"1s\"\nclear = \"temperature < 28\""),
        ("alert: 3 readings > 32 within 1 s", "type = \"alert\"\nkey = [\"device_id\"]\ncondition = \"temperature > 32\"\ncount = 3\nwithin = \"1s\""),
        ("predict: ewma", "type = \"predict\"\nkey = [\"device_id\"]\nvalue = \"temperature\""),
        ("predict: holt, 60 s ahead", "type = \"predict\"\nkey = [\"device_id\"]\nvalue = \"temperature\"\nmodel = \"holt\"\nhorizon = \"60s\""),
    ];
    for workers in [1, 2] {
        let mut base = 0.0;
        for (k, (name, transform)) in ops.iter().enumerate() {
            let mut rates = Vec::new();
            let mut out = 0;
            for _ in 0..reps {
                let (report, t) = run_weir(&pipeline(events, transform), workers);
                rates.push(events as f64 / t.as_secs_f64());
                out = sink_records(&report, "out");
            }
            let m = median(rates);
            if k == 0 {
                base = m;
            }
            println!(
                "{workers:>8}  {name:>34}  {m:>12.0}  {out:>10}  {:>10.2}",
                m / base
            );
        }
    }
}
