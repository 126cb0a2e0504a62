//! Latency at a fixed open-loop rate, in continuous and in micro-batch mode, for two bundled
//! pipelines — `iot-device-report` (readings, a 1 s tumbling window per device: count, avg,
//! min, max) and `clickstream-purchases` (a filter and a map) — through Weir and through a
//! hand-written timely program doing the same work, in the same run.
//!
//! Both sides generate the same events (the pipeline's own generator configuration, with the
//! rate set to `WEIR_BENCH_RATE`, default 200,000 events/s) on the same open-loop schedule —
//! the hand-written side as typed structs from its own generator (`weir_benches::typed`, taking
//! only the seed, the number of keys and the event times from the pipeline file) — and
//! measure processing-time latency the same way: from the scheduled time of the newest event
//! that contributed to an output record to the moment the sink has it, after a warm-up
//! (`WEIR_BENCH_WARMUP`, default 2 s) for `WEIR_BENCH_SECONDS` (default 10). Both release input
//! the same way: in continuous mode whatever is due (up to 4,096 events per worker) per
//! activation, in micro-batch mode everything due at each 100 ms boundary; the frontier
//! advances after each batch. Both sides' workers set a timer slack of 1 µs, so a worker that
//! sleeps until its next event is due wakes on time. Sinks discard their output on both sides. Weir's runs also have
//! backpressure on; the hand-written program has none.
//!
//! Prints a table per pipeline and draws each pipeline's percentile plot (Weir and hand-written
//! curves) to `target/latency-bench/PIPELINE.svg` and `.png`.
//!
//! `cargo bench -p weir-benches --bench latency`; `WEIR_BENCH_WORKERS` (default 2);
//! `WEIR_BENCH_PIPELINE` runs one of the two pipelines only.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use weir_benches::typed::{click_event, iot_event, Body, ClickEvent, ClickKind, IotEvent, Page};
use weir_benches::{closed_panes, env_or, machine};
use weir_cli::lab::{self as compare, Row};
use weir_engine::components::Op;
use weir_engine::summary::micros;
use weir_operators::generator::{GeneratorSpec, RunClock};
use weir_operators::latency::{histogram, record};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long to run and at what rate.
#[derive(Clone, Copy)]
struct Setup {
    rate: f64,
    warmup: Duration,
    duration: Duration,
    workers: usize,
}

/// A bundled pipeline with its sinks turned into null sinks.
fn bundled(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../pipelines")
        .join(format!("{name}.toml"));
    let mut doc: toml::Table = std::fs::read_to_string(path).unwrap().parse().unwrap();
    if let Some(toml::Value::Table(sinks)) = doc.get_mut("sinks") {
        for (_, sink) in sinks.iter_mut() {
            let t = sink.as_table_mut().unwrap();
            let inputs = t["inputs"].clone();
            t.clear();
            t.insert("type".into(), "null".into());
            t.insert("inputs".into(), inputs);
        }
    }
    doc.to_string()
}

/// Weir: (achieved events/s, processing-time latency).
fn weir(text: &str, mode: Option<Duration>, s: Setup) -> (f64, Histogram<u64>) {
    let mut overrides = vec![];
    if let Some(iv) = mode {
        overrides.push("pipeline.mode=\"micro-batch\"".to_string());
        overrides.push(format!("pipeline.batch_interval=\"{}ms\"", iv.as_millis()));
    }
    let (plan, diags, _) = weir_engine::plan::load("bench.toml", text, &overrides);
    assert!(
        diags
            .iter()
            .all(|d| d.level != weir_engine::diag::Level::Error),
        "{diags:?}"
    );
    let mut plan = plan.expect("valid");
    weir_engine::run::override_generators(&mut plan, Some(s.rate), true).unwrap();
    let opts = weir_engine::run::RunOptions {
        workers: Some(s.workers),
        warmup: s.warmup,
        duration: Some(s.duration),
        ..Default::default()
    };
    let report = weir_engine::run::run(&plan, &opts, Default::default()).expect("runs");
    let mut h = histogram();
    for sink in &report.sinks {
        h.add(&sink.latency.processing).unwrap();
    }
    (report.measurement.rate(), h)
}

/// The hand-written side's generator settings, read from the pipeline's generator
/// configuration: its seed, how many devices (or users), the first event's time, and the time
/// between events (or none: then an event's time is its scheduled send time).
#[derive(Clone, Copy)]
struct Gen {
    seed: u64,
    keys: u64,
    /// The first event's time, or none: the run's start.
    start: Option<i64>,
    interval: Option<i64>,
    rate: f64,
}

impl Gen {
    fn of(text: &str, rate: f64, keys: impl Fn(&GeneratorSpec) -> u64) -> Gen {
        let (plan, _, _) = weir_engine::plan::load("bench.toml", text, &[]);
        let plan = plan.expect("valid");
        let spec = plan
            .nodes
            .iter()
            .find_map(|n| match &n.op {
                Op::Generator(g) => Some(g.clone()),
                _ => None,
            })
            .expect("a generator");
        Gen {
            seed: spec.seed,
            keys: keys(&spec),
            start: spec.start,
            interval: spec.interval,
            rate,
        }
    }

    /// Event `i`'s time, given the first's: `start + i * interval`, or its scheduled send time.
    fn time(&self, start: i64, i: u64) -> i64 {
        match self.interval {
            Some(iv) => start + i as i64 * iv,
            None => start + (i as f64 * 1e6 / self.rate) as i64,
        }
    }
}

/// How the hand-written side makes typed event `i` at time `ts`.
type Make<T> = fn(&Gen, u64, i64) -> T;

/// The hand-written side's open-loop source of typed events (`make(gen, i, ts)`): worker `w` of
/// `W` generates events `i ≡ w (mod W)`, event `i` due at `i / rate` after the start, each
/// paired with its scheduled time as ingest time.
fn open_loop<'s, T: Clone + 'static>(
    scope: timely::dataflow::Scope<'s, u64>,
    (gen, make): (Gen, Make<T>),
    clock: RunClock,
    batch: Option<Duration>,
    (warmup, stop): (Duration, Duration),
    generated: Arc<AtomicU64>,
) -> timely::dataflow::Stream<'s, u64, Vec<(T, i64)>> {
    let (index, peers) = (scope.index() as u64, scope.peers() as u64);
    let ns = 1e9 / gen.rate;
    let start = gen.start.unwrap_or(clock.wall);
    source::<_, CapacityContainerBuilder<Vec<(T, i64)>>, _, _>(scope, "gen", move |cap, info| {
        let activator = scope.activator_for(info.address);
        let mut cap = Some(cap);
        let mut next = index;
        let mut next_batch = Duration::ZERO;
        move |output| {
            let Some(c) = cap.as_mut() else { return };
            let now = clock.instant.elapsed();
            if now >= stop {
                cap = None;
                return;
            }
            let max = match batch {
                None => 4096,
                Some(iv) => {
                    if now < next_batch {
                        activator.activate_after(next_batch - now);
                        return;
                    }
                    // Boundaries at multiples of the interval of the wall clock, as Weir's.
                    let iv_us = iv.as_micros();
                    let phase = clock.wall as u128 % iv_us;
                    let k = (now.as_micros() + phase) / iv_us + 1;
                    next_batch = Duration::from_micros((k * iv_us - phase) as u64);
                    65_536
                }
            };
            let due = (now.as_nanos() as f64 / ns) as u64 + 1;
            let mut session = output.session(c);
            let mut n = 0;
            while next < due && n < max {
                let ingest = clock.wall + (next as f64 * ns / 1e3) as i64;
                session.give((make(&gen, next, gen.time(start, next)), ingest));
                next += peers;
                n += 1;
            }
            drop(session);
            if now >= warmup {
                generated.fetch_add(n as u64, Relaxed);
            }
            c.downgrade(&(gen.time(start, next).max(0) as u64));
            let wait = match batch {
                Some(_) if n < max => next_batch.saturating_sub(clock.instant.elapsed()),
                _ if n == max => Duration::ZERO,
                _ => Duration::from_nanos((next as f64 * ns) as u64)
                    .saturating_sub(clock.instant.elapsed()),
            };
            activator.activate_after(wait);
        }
    })
}

/// Records latency at the end of a hand-written dataflow: `ingest` of each output, written
/// after the warm-up and before the end (as Weir, which leaves out the windows that stopping
/// the sources flushes early).
fn latency_sink<'s, D: 'static>(
    stream: timely::dataflow::Stream<'s, u64, Vec<D>>,
    clock: RunClock,
    (from, until): (i64, i64),
    ingest: impl Fn(&D) -> i64 + 'static,
) -> std::rc::Rc<std::cell::RefCell<Histogram<u64>>> {
    let h = std::rc::Rc::new(std::cell::RefCell::new(histogram()));
    let hist = std::rc::Rc::clone(&h);
    stream.sink(Pipeline, "latency", move |(input, _)| {
        let now = clock.now_micros();
        let mut h = hist.borrow_mut();
        input.for_each(|_, data: &mut Vec<D>| {
            if now >= from && now < until {
                for d in data.iter() {
                    record(&mut h, now - ingest(d));
                }
            }
        });
    });
    h
}

/// The hand-written IoT device report: (achieved events/s, latency).
fn hand_iot(text: &str, batch: Option<Duration>, s: Setup) -> (f64, Histogram<u64>) {
    let gen = Gen::of(text, s.rate, |g| g.devices);
    let make: Make<IotEvent> = |g, i, ts| iot_event(g.seed, g.keys, i, ts);
    run_hand((gen, make), batch, s, |scope, events, clock, from| {
        const SECOND: i64 = 1_000_000;
        // Readings as (device, ts, temperature, ingest).
        type Reading = (u32, i64, f64, i64);
        let readings = events.unary::<CapacityContainerBuilder<Vec<Reading>>, _, _, _>(
            Pipeline,
            "filter",
            |_, _| {
                move |input, output| {
                    input.for_each(|cap, data: &mut Vec<(IotEvent, i64)>| {
                        let mut session = output.session(&cap);
                        for (e, ingest) in data.drain(..) {
                            if let Body::Reading { temperature, .. } = e.body {
                                session.give((e.device, e.ts, temperature, ingest));
                            }
                        }
                    });
                }
            },
        );
        let route = |r: &Reading| {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            r.0.hash(&mut h);
            h.finish()
        };
        // Per device and window: (count, sum, min, max, newest ingest).
        type Acc = (u64, f64, f64, f64, i64);
        type Out = (u32, i64, u64, f64, f64, f64, i64);
        let results = readings.unary_frontier::<CapacityContainerBuilder<Vec<Out>>, _, _, _>(
            Exchange::new(route),
            "window",
            |_, _| {
                type Pane = (Capability<u64>, HashMap<u32, Acc>);
                let mut panes: HashMap<i64, Pane> = HashMap::new();
                move |(input, frontier), output| {
                    input.for_each(|cap, data: &mut Vec<Reading>| {
                        for (d, ts, t, ingest) in data.drain(..) {
                            let end = ts - ts.rem_euclid(SECOND) + SECOND;
                            let pane = panes.entry(end).or_insert_with(|| {
                                (cap.delayed(&(end as u64 - 1), 0), HashMap::new())
                            });
                            let e = pane.1.entry(d).or_insert((0, 0.0, f64::MAX, f64::MIN, 0));
                            e.0 += 1;
                            e.1 += t;
                            e.2 = e.2.min(t);
                            e.3 = e.3.max(t);
                            e.4 = e.4.max(ingest);
                        }
                    });
                    for end in closed_panes(&panes, |t| frontier.less_equal(&t)) {
                        let (cap, groups) = panes.remove(&end).expect("listed");
                        let mut session = output.session(&cap);
                        for (d, (n, sum, lo, hi, ingest)) in groups {
                            session.give((d, end - SECOND, n, sum / n as f64, lo, hi, ingest));
                        }
                    }
                }
            },
        );
        let _ = scope;
        latency_sink(results, clock, from, |o: &Out| o.6)
    })
}

/// The hand-written clickstream purchases: (achieved events/s, latency).
fn hand_clicks(text: &str, batch: Option<Duration>, s: Setup) -> (f64, Histogram<u64>) {
    let gen = Gen::of(text, s.rate, |g| g.users);
    let make: Make<ClickEvent> = |g, i, ts| click_event(g.seed, g.keys, i, ts);
    run_hand((gen, make), batch, s, |_, events, clock, from| {
        // (id, ts, user, device, page, on_product_page, ingest)
        type Out = (u64, i64, u64, u64, Page, bool, i64);
        let shaped = events.unary::<CapacityContainerBuilder<Vec<Out>>, _, _, _>(
            Pipeline,
            "filter-map",
            move |_, _| {
                move |input, output| {
                    input.for_each(|cap, data: &mut Vec<(ClickEvent, i64)>| {
                        let mut session = output.session(&cap);
                        for (e, ingest) in data.drain(..) {
                            if e.kind == ClickKind::Purchase {
                                let product = matches!(e.page, Page::Product(_));
                                session
                                    .give((e.id, e.ts, e.user, e.device, e.page, product, ingest));
                            }
                        }
                    });
                }
            },
        );
        latency_sink(shaped, clock, from, |o: &Out| o.6)
    })
}

type Build<T> = for<'s> fn(
    timely::dataflow::Scope<'s, u64>,
    timely::dataflow::Stream<'s, u64, Vec<(T, i64)>>,
    RunClock,
    (i64, i64),
) -> std::rc::Rc<std::cell::RefCell<Histogram<u64>>>;

/// Runs a hand-written dataflow over the open-loop source of typed events for the warm-up and
/// the duration.
fn run_hand<T: Clone + 'static>(
    source: (Gen, Make<T>),
    batch: Option<Duration>,
    s: Setup,
    build: Build<T>,
) -> (f64, Histogram<u64>) {
    let clock = RunClock::now();
    let stop = s.warmup + s.duration;
    let from = (
        clock.wall + s.warmup.as_micros() as i64,
        clock.wall + stop.as_micros() as i64,
    );
    let generated = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&generated);
    let results = timely::execute(timely::Config::process(s.workers), move |worker| {
        // Timed waits end within a microsecond of their deadline, as in Weir's workers.
        #[cfg(target_os = "linux")]
        // SAFETY: PR_SET_TIMERSLACK takes one integer and changes only this thread's slack.
        unsafe {
            libc::prctl(libc::PR_SET_TIMERSLACK, 1_000 as libc::c_ulong, 0, 0, 0);
        }
        let count = Arc::clone(&count);
        let h = worker.dataflow::<u64, _, _>(|scope| {
            let events = open_loop(scope, source, clock, batch, (s.warmup, stop), count);
            build(scope, events, clock, from)
        });
        while worker.step_or_park(Some(Duration::from_millis(100))) {}
        let h = h.borrow().clone();
        h
    })
    .expect("timely runs")
    .join();
    let mut all = histogram();
    for h in results {
        all.add(h.expect("a worker")).unwrap();
    }
    (
        generated.load(Relaxed) as f64 / s.duration.as_secs_f64(),
        all,
    )
}

fn main() {
    let setup = Setup {
        rate: env_or("WEIR_BENCH_RATE", 200_000) as f64,
        warmup: Duration::from_secs(env_or("WEIR_BENCH_WARMUP", 2)),
        duration: Duration::from_secs(env_or("WEIR_BENCH_SECONDS", 10)),
        workers: env_or("WEIR_BENCH_WORKERS", 2) as usize,
    };
    println!(
        "processing-time latency at {} events/s offered, {} workers, {} s after a {} s warm-up",
        setup.rate,
        setup.workers,
        setup.duration.as_secs(),
        setup.warmup.as_secs()
    );
    println!("machine: {}", machine());
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/latency-bench");
    std::fs::create_dir_all(&out).unwrap();
    type Hand = fn(&str, Option<Duration>, Setup) -> (f64, Histogram<u64>);
    let pipelines: [(&str, Hand); 2] = [
        ("iot-device-report", hand_iot),
        ("clickstream-purchases", hand_clicks),
    ];
    let only = std::env::var("WEIR_BENCH_PIPELINE").ok();
    for (name, hand) in pipelines {
        if only.as_ref().is_some_and(|o| o != name) {
            continue;
        }
        let text = bundled(name);
        println!("\n{name}");
        println!(
            "{:<40} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10}",
            "side, mode", "events/s", "p50", "p90", "p99", "p99.9", "max", "p99 ratio"
        );
        let mut rows = Vec::new();
        for (label, mode) in [
            ("continuous", None),
            ("micro-batch 100ms", Some(Duration::from_millis(100))),
        ] {
            let (wr, wh) = weir(&text, mode, setup);
            let (hr, hh) = hand(&text, mode, setup);
            let q = |h: &Histogram<u64>, p: f64| micros(h.value_at_quantile(p));
            for (side, r, h) in [("weir", wr, &wh), ("hand-written timely", hr, &hh)] {
                println!(
                    "{:<40} {:>10.0} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10}",
                    format!("{side}, {label}"),
                    r,
                    q(h, 0.5),
                    q(h, 0.9),
                    q(h, 0.99),
                    q(h, 0.999),
                    micros(h.max()),
                    if side == "weir" {
                        format!(
                            "{:.2}",
                            wh.value_at_quantile(0.99) as f64
                                / hh.value_at_quantile(0.99).max(1) as f64
                        )
                    } else {
                        String::new()
                    }
                );
                rows.push(Row {
                    label: format!("{side}, {label}"),
                    interval: mode,
                    offered: Some(setup.rate),
                    achieved: r,
                    seconds: setup.duration.as_secs_f64(),
                    backlog_end: 0,
                    backlog_halves: (0, 0),
                    processing: h.clone(),
                    processing_second_half: None,
                    event: None,
                    held: 0.0,
                    peak_rss: None,
                });
            }
        }
        for ext in ["svg", "png"] {
            let path = out.join(format!("{name}.{ext}"));
            compare::plot(
                &rows,
                &format!(
                    "{name}: Weir and hand-written timely, {}k events/s, {} workers",
                    setup.rate as u64 / 1000,
                    setup.workers
                ),
                &path,
            )
            .unwrap();
        }
        println!("plot: {}", out.join(format!("{name}.svg")).display());
    }
}
