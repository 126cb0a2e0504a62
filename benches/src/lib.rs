//! Shared helpers for Weir's benchmarks: timing, medians and the report table.

#![forbid(missing_docs)]

pub mod typed;

use std::time::{Duration, Instant};

/// Times `f`.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

/// The median of some samples.
pub fn median(mut xs: Vec<f64>) -> f64 {
    assert!(!xs.is_empty());
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// Reads a positive number from the environment, or the default.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

/// A short description of the machine, for the report.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    format!("{cpu}, {cores} cores")
}

/// Event time of the benchmarks' first event: 2026-01-01T00:00:00Z, in microseconds.
pub const START: i64 = 1_767_225_600_000_000;

/// A source of `events` items made by `make(i)`: worker `w` of `W` makes the items
/// `i ≡ w (mod W)`, `batch` per activation, at time `START + i` µs, advancing its capability to
/// the next item's time.
pub fn indexed_source<'s, T: Clone + 'static>(
    scope: timely::dataflow::Scope<'s, u64>,
    events: u64,
    batch: u64,
    make: impl Fn(u64) -> T + 'static,
) -> timely::dataflow::Stream<'s, u64, Vec<T>> {
    use timely::container::CapacityContainerBuilder;
    use timely::dataflow::operators::generic::operator::source;

    let (index, peers) = (scope.index() as u64, scope.peers() as u64);
    source::<_, CapacityContainerBuilder<Vec<T>>, _, _>(scope, "gen", move |cap, info| {
        let activator = scope.activator_for(info.address);
        let mut cap = Some(cap);
        let mut next = index;
        move |output| {
            let Some(c) = cap.as_mut() else { return };
            let end = events.min(next + batch * peers);
            let mut session = output.session(c);
            while next < end {
                session.give(make(next));
                next += peers;
            }
            drop(session);
            if next >= events {
                cap = None;
            } else {
                c.downgrade(&((START + next as i64) as u64));
                activator.activate();
            }
        }
    })
}

/// The old hand-written programs' source: the same IoT events as a Weir generator with
/// `seed = 7`, `devices`, `start = START` and `event_time_interval = "1us"`, as Weir's rows.
pub fn iot_source<'s>(
    scope: timely::dataflow::Scope<'s, u64>,
    events: u64,
    batch: u64,
    devices: u64,
) -> timely::dataflow::Stream<'s, u64, Vec<weir_operators::schema::Record>> {
    use weir_operators::generator::{GeneratorSpec, Profile};

    let spec = GeneratorSpec {
        events: Some(events),
        seed: 7,
        devices,
        start: Some(START),
        interval: Some(1),
        ..GeneratorSpec::new(Profile::Iot)
    };
    indexed_source(scope, events, batch, move |i| {
        spec.event(i, START + i as i64)
    })
}

/// Runs a hand-written timely program on `workers` workers and times it: `build` makes each
/// worker's dataflow (over its share of `events`) and adds what the dataflow outputs to the
/// counter it is given. Returns (events/s, outputs over all workers).
pub fn run_hand_written<F>(events: u64, workers: usize, build: F) -> (f64, u64)
where
    F: for<'s> Fn(timely::dataflow::Scope<'s, u64>, std::rc::Rc<std::cell::Cell<u64>>)
        + Send
        + Sync
        + 'static,
{
    let (results, t) = timed(|| {
        timely::execute(timely::Config::process(workers), move |worker| {
            let count = std::rc::Rc::new(std::cell::Cell::new(0u64));
            let seen = std::rc::Rc::clone(&count);
            worker.dataflow::<u64, _, _>(|scope| build(scope, seen));
            while worker.step_or_park(None) {}
            count.get()
        })
        .expect("timely runs")
        .join()
    });
    let out = results.into_iter().map(|r| r.expect("worker")).sum();
    (events as f64 / t.as_secs_f64(), out)
}

/// Runs a pipeline (TOML text) through Weir on `workers` workers, timing the run (planning
/// excluded). Panics if the pipeline has any diagnostic.
pub fn run_weir(text: &str, workers: usize) -> (weir_engine::run::RunReport, std::time::Duration) {
    let (plan, diags, _) = weir_engine::plan::load("bench.toml", text, &[]);
    assert!(diags.is_empty(), "{diags:?}");
    let plan = plan.expect("valid");
    let opts = weir_engine::run::RunOptions {
        workers: Some(workers),
        ..Default::default()
    };
    timed(|| weir_engine::run::run(&plan, &opts, Default::default()).expect("runs"))
}

/// Records the sink `id` received in a run.
pub fn sink_records(report: &weir_engine::run::RunReport, id: &str) -> u64 {
    report
        .components
        .iter()
        .find(|c| c.id == id)
        .expect("the sink")
        .metrics
        .records_in
}

/// The ends of the panes (keyed by window end, in µs) that a frontier has passed — the windows a
/// hand-written window operator can close — in order. `open(t)` says whether the frontier may
/// still deliver time `t`.
pub fn closed_panes<V>(
    panes: &std::collections::HashMap<i64, V>,
    open: impl Fn(u64) -> bool,
) -> Vec<i64> {
    let mut closed: Vec<i64> = panes
        .keys()
        .copied()
        .filter(|&end| !open(end as u64 - 1))
        .collect();
    closed.sort();
    closed
}

/// The IoT per-device report (readings only, a 1 s tumbling average of temperature per device
/// over 1,000 devices, into a null sink) over `events` events in `mode`, the generator's
/// `timing` keys given: the `window` and `serve` benches' pipeline.
pub fn device_report(events: u64, mode: &str, timing: &str) -> String {
    format!(
        r#"
[pipeline]
name = "bench-window"
mode = "{mode}"

[sources.sensors]
type = "generator"
profile = "iot"
events = {events}
devices = 1000
seed = 7
{timing}

[transforms.readings]
type = "filter"
inputs = ["sensors"]
condition = "kind = 'reading'"

[transforms.per_device]
type = "window"
inputs = ["readings"]
size = "1s"
group_by = ["device_id"]
aggregates = {{ avg_temp = "avg(temperature)" }}

[sinks.out]
type = "null"
inputs = ["per_device"]
"#
    )
}
