//! What watching a run costs: the IoT per-device report (readings only, a 1 s tumbling
//! average per device, as in the `window` bench, whose typed hand-written program is the
//! reference for its absolute speed) run unwatched, and run as `weir run --serve` runs it —
//! every port tapped, timely's operator log on, the HTTP server up — with a client reading
//! `/snapshot` and `/metrics` and tailing the filter's records (`/events?tap=readings`, as a
//! dashboard does) the whole time. Reports each side's median throughput and their ratio.
//!
//! `cargo bench -p weir-benches --bench serve`; `WEIR_BENCH_EVENTS` (default 10,000,000),
//! `WEIR_BENCH_REPS` (default 5) and `WEIR_BENCH_WORKERS` (default 2) change the size.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use weir_benches::{device_report, env_or, machine, median, timed};
use weir_engine::live::{Observer, Taps};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One GET, its body read to the end (an event stream: for `for`, then dropped).
fn get(address: &str, path: &str, r#for: Option<Duration>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(r#for.unwrap_or(Duration::from_secs(5))))
        .build()
        .into();
    if let Ok(mut r) = agent.get(format!("http://{address}{path}")).call() {
        let _ = r.body_mut().read_to_string();
    }
}

/// A run: watched or not; events/s.
fn run(text: &str, workers: usize, watched: bool) -> f64 {
    let (plan, diags, _) = weir_engine::plan::load("bench.toml", text, &[]);
    assert!(diags.is_empty(), "{diags:?}");
    let plan = plan.expect("valid");
    let events = env_or("WEIR_BENCH_EVENTS", 10_000_000) as f64;
    let mut opts = weir_engine::run::RunOptions {
        workers: Some(workers),
        ..Default::default()
    };
    let done = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    if watched {
        let observer = Arc::new(Observer::new(Taps::All));
        let server = weir_serve::serve(
            "127.0.0.1:0",
            weir_serve::Page::Run {
                observer: Arc::clone(&observer),
                file: "bench.toml".into(),
                overrides: Vec::new(),
            },
        )
        .expect("serves");
        let at = server.address().to_string();
        opts.observer = Some(observer);
        // A dashboard: the tail of the filter, and a scrape and a snapshot four times a second.
        for tail in [true, false] {
            let (at, done) = (at.clone(), Arc::clone(&done));
            clients.push(std::thread::spawn(move || {
                while !done.load(Relaxed) {
                    if tail {
                        get(
                            &at,
                            "/events?tap=readings",
                            Some(Duration::from_millis(500)),
                        );
                    } else {
                        get(&at, "/snapshot", None);
                        get(&at, "/metrics", None);
                        std::thread::sleep(Duration::from_millis(250));
                    }
                }
            }));
        }
    }
    let (report, t) =
        timed(|| weir_engine::run::run(&plan, &opts, Default::default()).expect("runs"));
    done.store(true, Relaxed);
    for c in clients {
        let _ = c.join();
    }
    assert!(report.failure.is_none());
    events / t.as_secs_f64()
}

fn main() {
    let events = env_or("WEIR_BENCH_EVENTS", 10_000_000);
    let reps = env_or("WEIR_BENCH_REPS", 5) as usize;
    let workers = env_or("WEIR_BENCH_WORKERS", 2) as usize;
    println!("{}", machine());
    println!(
        "per-device report, {events} events, {workers} workers, {reps} runs each (interleaved)"
    );
    let text = device_report(
        events,
        "continuous",
        "start = \"2026-01-01T00:00:00Z\"\nevent_time_interval = \"1us\"",
    );
    let (mut plain, mut watched) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        plain.push(run(&text, workers, false));
        watched.push(run(&text, workers, true));
    }
    let (p, w) = (median(plain), median(watched));
    println!("unwatched  {:>12.0} events/s (median)", p);
    println!(
        "served     {:>12.0} events/s (median), {:.2}x unwatched",
        w,
        w / p
    );
}
