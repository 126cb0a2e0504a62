//! Running a plan: the plan becomes a timely dataflow on every worker, sinks write, and the run
//! ends when every source is exhausted (or stopped) and every record has reached its sinks.

use std::cell::OnceCell;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use std::sync::atomic::AtomicU64;

use weir_operators::clock::RunClock;
use weir_operators::control::RunControl;
use weir_operators::flow::{Flow, SourceEnv};
use weir_operators::latency::SinkLatency;
use weir_operators::metrics::ComponentMetrics;
use weir_operators::Time;

use crate::components::{Op, SinkTarget};
use crate::plan::Plan;
use crate::spec::Kind;

mod build;
mod outputs;

pub use crate::options::*;
pub use crate::outcome::*;

/// Whether the run resumes from Weir's own Kafka commits: file sinks then append to the output
/// of the runs before, which the resumed input does not produce again.
pub fn resumes(plan: &Plan) -> bool {
    plan.nodes.iter().any(|n| match &n.op {
        Op::Kafka(s) => s.partitions.iter().any(|p| p.resume.is_some()),
        Op::Kinesis(s) => !s.resume.is_empty(),
        _ => false,
    })
}

/// Which sinks measure latency: every sink the user declared (not the default dead-letter
/// sink), with the position of `window_end` when event-time latency is meaningful.
fn measured_sinks(plan: &Plan, workers: usize) -> Vec<Option<(Arc<SinkLatency>, Option<usize>)>> {
    plan.nodes
        .iter()
        .map(|n| match n.op {
            Op::Sink(_) if !n.implicit => {
                let event = n.schema.window_end.filter(|_| wall_clock_time(plan, n));
                Some((Arc::new(SinkLatency::new(workers)), event))
            }
            _ => None,
        })
        .collect()
}

/// Whether a node's event time follows the wall clock: every source upstream is a generator
/// stamping events with their scheduled (or generation) time, or a TCP source whose producer
/// does (`latency_from = "event_time"`).
pub fn wall_clock_time(plan: &Plan, n: &crate::plan::Node) -> bool {
    match &n.op {
        Op::Generator(g) => g.start.is_none() && g.interval.is_none(),
        Op::File(_) | Op::Stdin(_) | Op::Test(_) => false,
        op => match op.decoding() {
            Some(d) => d.latency_from_event_time,
            None => n
                .inputs
                .iter()
                .all(|r| wall_clock_time(plan, &plan.nodes[r.node])),
        },
    }
}

/// Runs `plan` to completion (or until `ctl` stops it, or its duration is over).
pub fn run(plan: &Plan, opts: &RunOptions, ctl: RunControl) -> Result<RunReport, String> {
    let workers = opts.workers.unwrap_or(plan.workers).max(1);
    let (processes, process) = opts
        .cluster
        .as_ref()
        .map_or((1, 0), |c| (c.addresses.len().max(1), c.process));
    let mut prepared = crate::recovery::prepare(plan, process)?;
    if opts.observer.as_ref().is_some_and(|o| o.whole_records()) {
        // What is tapped shows every field: no field is left out as unread downstream.
        for n in &mut prepared.nodes {
            n.read = None;
        }
    }
    let plan = &prepared;
    let checkpoints =
        crate::checkpoints::prepare(plan, workers, processes, process, opts.from_scratch)?;
    if let Some(p) = checkpoints.as_ref().and_then(|c| c.resumed) {
        eprintln!(
            "weir: resuming from checkpoint {p} in {} (--from-scratch starts over)",
            plan.checkpoint
                .as_ref()
                .map_or(String::new(), |c| c.1.display().to_string())
        );
    }
    let ck_parts = checkpoints
        .as_ref()
        .map(|c| (Arc::clone(&c.spec), Arc::clone(&c.tracker)));
    let writers = outputs::open_writers(plan, process)?;
    let metrics: Vec<Arc<ComponentMetrics>> = plan.nodes.iter().map(|_| Arc::default()).collect();
    let measured = measured_sinks(plan, workers);
    let plan_arc = Arc::new(plan.clone());
    // The run's clock starts when the workers do: in a cluster, after the processes have
    // connected (which may take seconds), so the schedule, warm-up and duration count from then.
    let clock_cell: Arc<OnceLock<RunClock>> = Arc::default();
    let start_clock = {
        let measured = measured.clone();
        let (warmup, duration) = (opts.warmup, opts.duration);
        move || {
            let clock = RunClock::now();
            let warmup_us = warmup.as_micros() as i64;
            let half_us = duration.map_or(i64::MAX / 4, |d| d.as_micros() as i64 / 2);
            // Writes after a timed run's end are the flush of windows its stop closed early.
            let until =
                duration.map_or(i64::MAX, |d| clock.wall + warmup_us + d.as_micros() as i64);
            for (l, _) in measured.iter().flatten() {
                l.set_phases(
                    clock.wall + warmup_us,
                    clock.wall + warmup_us + half_us,
                    until,
                );
            }
            clock
        }
    };
    let frontier = Arc::new(AtomicU64::new(0));
    // The monitor thread measures, prints status and stops a timed run; it ends when the run
    // does (the sender is dropped).
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let taps = opts
        .observer
        .as_ref()
        .map(|o| o.taps(plan))
        .unwrap_or_default();
    let live = Arc::new(crate::monitor::Live {
        plan: plan.clone(),
        metrics: metrics.clone(),
        measured: measured.clone(),
        frontier: Arc::clone(&frontier),
        clock: Arc::clone(&clock_cell),
        wall_clock_time: plan
            .nodes
            .iter()
            .filter(|n| n.kind == Kind::Sink)
            .all(|n| wall_clock_time(plan, n)),
        workers,
        ctl: ctl.clone(),
        taps: taps.clone(),
        busy: opts.observer.as_ref().map(|_| {
            plan.nodes
                .iter()
                .map(|_| std::sync::atomic::AtomicU64::new(0))
                .collect()
        }),
        ended: OnceLock::new(),
    });
    if let Some(o) = &opts.observer {
        o.started(Arc::clone(&live));
    }
    let monitor = {
        let (opts, ctl, live) = (opts.clone(), ctl.clone(), Arc::clone(&live));
        std::thread::spawn(move || crate::monitor::monitor(&live, &opts, &ctl, finished))
    };
    let result = {
        let ck_parts = ck_parts.clone();
        let (metrics, writers, ctl, measured, taps, busy) = (
            metrics.clone(),
            writers.clone(),
            ctl.clone(),
            measured.clone(),
            taps.clone(),
            live.busy.clone(),
        );
        let mode = plan.mode;
        let gather = processes > 1;
        let clock_cell = Arc::clone(&clock_cell);
        // Weir connects the processes itself (authenticated), then hands timely the sockets.
        let (builders, guard): (
            Vec<timely::communication::AllocatorBuilder>,
            Box<dyn std::any::Any + Send>,
        ) = match &opts.cluster {
            None => timely::CommunicationConfig::Process(workers).try_build()?,
            Some(c) => {
                let sockets = crate::cluster::connect(&c.addresses, c.process, &c.secret)?;
                let hooks = timely_communication::Hooks::default();
                let local = timely_communication::allocator::ProcessBuilder::new_typed_vector(
                    workers,
                    hooks.refill.clone(),
                    hooks.spill.clone(),
                );
                let (tcp, guard) =
                        timely_communication::allocator::zero_copy::initialize::initialize_networking_from_sockets(
                            local, sockets, c.process, workers, hooks,
                        )
                        .map_err(|e| format!("cannot start the cluster's connections: {e}"))?;
                (
                    tcp.into_iter()
                        .map(timely::communication::AllocatorBuilder::Tcp)
                        .collect(),
                    Box::new(guard),
                )
            }
        };
        timely::execute::execute_from(
            builders,
            guard,
            timely::WorkerConfig::default(),
            move |worker| {
                precise_timers();
                let plan = Arc::clone(&plan_arc);
                let clock = *clock_cell.get_or_init(&start_clock);
                let env = SourceEnv {
                    mode,
                    clock,
                    ctl: ctl.clone(),
                    flow: Flow::shared(plan.max_in_flight, Arc::clone(&frontier)),
                    positions: ck_parts
                        .as_ref()
                        .map(|(spec, _)| (Arc::clone(spec), Default::default())),
                };
                // Operators take the worker's loggers when they are built: register first.
                let ids: Rc<OnceCell<Vec<(usize, usize)>>> = Rc::default();
                if let Some(busy) = &busy {
                    busy_logger(worker, Rc::clone(&ids), Arc::clone(busy));
                }
                let first_ids = worker.dataflow::<Time, _, _>(|scope| {
                    build::build(
                        scope,
                        &plan,
                        &env,
                        gather,
                        &metrics,
                        &writers,
                        &measured,
                        &taps,
                        ck_parts.as_ref().map(|(_, t)| t),
                    )
                });
                let _ = ids.set(first_ids);
                while worker.step_or_park(Some(Duration::from_millis(100))) {}
            },
        )
        .map_err(|e| format!("cannot start the workers: {e}"))
        .and_then(|guards| {
            for r in guards.join() {
                r.map_err(|e| format!("a worker failed: {e}"))?;
            }
            Ok(())
        })
    };
    let clock = *clock_cell.get_or_init(RunClock::now);
    let elapsed = clock.instant.elapsed();
    drop(done);
    let measurement = monitor
        .join()
        .map_err(|_| "the monitor thread failed".to_string())?;
    result?;
    if let Some(c) = &checkpoints {
        if process == 0 {
            if let Err(e) = crate::checkpoints::finish(c, ctl.stopped() || ctl.failure().is_some())
            {
                ctl.fail(format!("checkpoint: {e}"));
            }
        }
    }
    for (n, w) in plan.nodes.iter().zip(&writers) {
        if let Some(w) = w {
            if let Err(e) = w.flush() {
                if !(matches!(n.op, Op::Sink(ref s) if s.target == SinkTarget::Stdout)
                    && e.kind() == std::io::ErrorKind::BrokenPipe)
                {
                    ctl.fail(format!("sink `{}` cannot write: {e}", n.id));
                }
            }
        }
    }
    let components = component_reports(plan, &metrics);
    let dead_letter_file = plan
        .nodes
        .iter()
        .zip(&components)
        .find_map(|(n, c)| match &n.op {
            Op::Sink(s) if n.implicit && c.metrics.records_in > 0 => match &s.target {
                SinkTarget::LazyFile(p) => Some(p.clone()),
                _ => None,
            },
            _ => None,
        });
    let (bad_data, warnings) = bad_data(plan, &components);
    let failure = ctl.failure().or(bad_data);
    let sinks = sink_reports(plan, &measured, &components);
    let report = Arc::new(RunReport {
        pipeline: plan.name.clone(),
        workers,
        processes,
        process,
        offered_rate: offered_rate(plan),
        measurement,
        peak_rss: peak_rss(),
        max_in_flight: plan.max_in_flight,
        mode: plan.mode,
        started: clock.wall,
        sinks,
        elapsed,
        components,
        stopped: ctl.stopped() && failure.is_none() && !ctl.time_up(),
        output_closed: ctl.output_closed(),
        failure,
        warnings,
        dead_letter_file,
        checkpoints: checkpoints
            .as_ref()
            .map(|c| crate::checkpoints::summary(plan, c)),
    });
    let _ = live.ended.set(Arc::clone(&report));
    Ok(Arc::unwrap_or_clone(report))
}

/// Every component's counters now, in plan order.
fn component_reports(plan: &Plan, metrics: &[Arc<ComponentMetrics>]) -> Vec<ComponentReport> {
    plan.nodes
        .iter()
        .zip(metrics)
        .map(|(n, m)| ComponentReport {
            id: n.id.clone(),
            kind: n.kind,
            ty: n.ty.clone(),
            metrics: m.snapshot(),
            partitions: match &n.op {
                Op::Kafka(k) => k.status.snapshot(),
                _ => Vec::new(),
            },
            shards: match &n.op {
                Op::Kinesis(k) => k.status.snapshot(),
                _ => Vec::new(),
            },
            pubsub: match &n.op {
                Op::PubSub(p) => Some(p.status.lock().unwrap_or_else(|e| e.into_inner()).clone()),
                _ => None,
            },
            reasons: m.reasons(),
        })
        .collect()
}

/// Every measured sink's latencies now.
fn sink_reports(
    plan: &Plan,
    measured: &[Option<(Arc<SinkLatency>, Option<usize>)>],
    components: &[ComponentReport],
) -> Vec<SinkReport> {
    plan.nodes
        .iter()
        .zip(measured)
        .zip(components)
        .filter_map(|((n, m), c)| {
            m.as_ref().map(|(l, event)| SinkReport {
                id: n.id.clone(),
                records: c.metrics.records_out,
                event_time: event.is_some(),
                latency: l.merged(),
                second_half: l.merged_second_half(),
            })
        })
        .collect()
}

/// A report of a run still going (see [`crate::live::Live::report`]): its counters and
/// latencies so far; no measurement, failure or warnings yet.
pub(crate) fn report_so_far(live: &crate::monitor::Live) -> RunReport {
    let plan = &live.plan;
    let components = component_reports(plan, &live.metrics);
    let sinks = sink_reports(plan, &live.measured, &components);
    let clock = live.clock.get().copied();
    RunReport {
        pipeline: plan.name.clone(),
        workers: live.workers,
        processes: 1,
        process: 0,
        offered_rate: offered_rate(plan),
        measurement: Measurement::default(),
        peak_rss: peak_rss(),
        max_in_flight: plan.max_in_flight,
        mode: plan.mode,
        started: clock.map_or(0, |c| c.wall),
        sinks,
        elapsed: clock.map_or(Duration::ZERO, |c| c.instant.elapsed()),
        components,
        stopped: live.ctl.stopped(),
        output_closed: live.ctl.output_closed(),
        failure: live.ctl.failure(),
        warnings: Vec::new(),
        dead_letter_file: None,
        checkpoints: None,
    }
}

/// Counts the time each node's operators are scheduled on this worker, in `busy` (ns, summed
/// over workers), from timely's log of operator starts and stops. A node's operators are those
/// with identifiers from its entry of `first_ids` to the next one's (a chain of filters and
/// maps is one operator, counted at its last node).
fn busy_logger(
    worker: &mut timely::worker::Worker,
    first_ids: Rc<OnceCell<Vec<(usize, usize)>>>,
    busy: Arc<[std::sync::atomic::AtomicU64]>,
) {
    use timely::logging::{StartStop, TimelyEvent, TimelyEventBuilder};
    let Some(mut registry) = worker.log_register() else {
        return;
    };
    let mut started: std::collections::HashMap<usize, Duration> = Default::default();
    registry.insert::<TimelyEventBuilder, _>("timely", move |_time, data| {
        let Some(data) = data else { return };
        for (at, event) in data.iter() {
            let TimelyEvent::Schedule(s) = event else {
                continue;
            };
            match s.start_stop {
                StartStop::Start => {
                    started.insert(s.id, *at);
                }
                StartStop::Stop => {
                    let (Some(from), Some(first_ids)) = (started.remove(&s.id), first_ids.get())
                    else {
                        continue;
                    };
                    // The node whose range holds the operator's identifier.
                    let k = first_ids.partition_point(|&(f, _)| f <= s.id);
                    let Some(&(_, node)) = k.checked_sub(1).and_then(|k| first_ids.get(k)) else {
                        continue;
                    };
                    if node >= busy.len() {
                        continue;
                    }
                    let ns = at.saturating_sub(from).as_nanos() as u64;
                    busy[node].fetch_add(ns, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
    });
}

/// The share of bad records past which a run warns.
pub const WARN_ERROR_RATE: f64 = 0.01;

/// The end-of-run checks of bad input: a source that read bad records and no good one fails
/// the run, so does one whose whole run passed its `max_error_rate`; one whose bad records
/// passed [`WARN_ERROR_RATE`] gets a warning naming the top reasons.
fn bad_data(plan: &Plan, components: &[ComponentReport]) -> (Option<String>, Vec<String>) {
    let mut failure = None;
    let mut warnings = Vec::new();
    for (n, c) in plan.nodes.iter().zip(components) {
        // A pipeline test's input may be bad on purpose: the test says what it expects.
        let limit = match n.op.decoding() {
            Some(d) if !matches!(n.op, Op::Test(_)) => d.max_error_rate,
            _ => continue,
        };
        let m = &c.metrics;
        if m.errors == 0 {
            continue;
        }
        let read = m.records_out + m.errors;
        let rate = m.errors as f64 / read as f64;
        let first = c.reasons.first.join(" | ");
        let top = c.reasons.top(3);
        if m.records_out == 0 {
            failure.get_or_insert_with(|| {
                format!(
                    "source `{}` produced no good record: all {} records it read were bad; first reasons: {first}\n  help: check its schema and timestamp_format against the input (the dead letters give each record's reason)",
                    n.id,
                    crate::summary::thousands(m.errors)
                )
            });
        } else if let Some(limit) = limit.filter(|l| rate > *l) {
            failure.get_or_insert_with(|| {
                format!(
                    "source `{}`: {} of its {} records were bad ({:.1}%), over its max_error_rate of {}%; first reasons: {first}",
                    n.id,
                    crate::summary::thousands(m.errors),
                    crate::summary::thousands(read),
                    rate * 100.0,
                    limit * 100.0
                )
            });
        } else if rate > WARN_ERROR_RATE {
            warnings.push(format!(
                "source `{}`: {} of its {} records were bad ({:.1}%); top reasons: {top}",
                n.id,
                crate::summary::thousands(m.errors),
                crate::summary::thousands(read),
                rate * 100.0
            ));
        }
    }
    (failure, warnings)
}

/// Sets the rate of every generator source (`weir run --rate`), and lifts their `events`
/// bound (`--unbounded`). A rate needs a generator to apply to.
pub fn override_generators(
    plan: &mut Plan,
    rate: Option<f64>,
    unbounded: bool,
) -> Result<(), String> {
    let mut any = false;
    for n in &mut plan.nodes {
        if let Op::Generator(g) = &mut n.op {
            any = true;
            if rate.is_some() {
                g.rate = rate;
            }
            if unbounded {
                g.events = None;
            }
        }
    }
    if rate.is_some() && !any {
        return Err("--rate sets the rate of generator sources, and this pipeline has none".into());
    }
    Ok(())
}

/// The rate the plan's open-loop generators offer together (events/s), if any has a rate.
pub fn offered_rate(plan: &Plan) -> Option<f64> {
    let rates: Vec<f64> = plan
        .nodes
        .iter()
        .filter_map(|n| match &n.op {
            Op::Generator(g) => g.rate,
            _ => None,
        })
        .collect();
    (!rates.is_empty()).then(|| rates.iter().sum())
}

/// The process's peak resident set size (`VmHWM` on Linux).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Lets this thread's timed waits end within a microsecond of their deadline. Linux lets a
/// sleeping thread wake up to 50 µs late by default (its timer slack), and a worker that sleeps
/// until its next event is due, as a rate-limited source at a low rate does, would pay that on
/// nearly every event.
fn precise_timers() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_TIMERSLACK takes one integer (nanoseconds) and changes only this thread's
    // timer slack; it touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1_000 as libc::c_ulong, 0, 0, 0);
    }
}
