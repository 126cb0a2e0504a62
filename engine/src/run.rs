//! Running a plan: the plan becomes a timely dataflow on every worker, sinks write, and the run
//! ends when every source is exhausted (or stopped) and every record has reached its sinks.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use std::sync::atomic::AtomicU64;

use timely::dataflow::operators::{Concatenate, Exchange};
use weir_operators::chunk::arrow_schema;
use weir_operators::control::RunControl;
use weir_operators::convert::{to_chunks, to_rows};
use weir_operators::epochs::Mode;
use weir_operators::exchange::{exchange_by_key, Routing};
use weir_operators::flow::{Flow, SourceEnv};
use weir_operators::generator::{generator, RunClock};
use weir_operators::latency::{Latencies, SinkLatency};
use weir_operators::metrics::{ComponentMetrics, MetricsSnapshot};
use weir_operators::sink::{FileOutput, SharedWriter};
use weir_operators::window::LatePolicy;
use weir_operators::{
    file_source, filter, interval_join, kafka, kafka_source, map, sink, stdin_source, tcp_source,
    temporal_join, window, window_join, Batches, Time,
};

use crate::components::{Op, SinkTarget};
use crate::plan::{Plan, Port, PortRef};
use crate::spec::Kind;

/// How to run.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Worker threads per process (overrides the pipeline's `workers`).
    pub workers: Option<usize>,
    /// Print status lines to standard error this often while the run lasts.
    pub status_every: Option<Duration>,
    /// Show a live status line (or a progress bar, for a bounded run) on standard error
    /// instead of status lines. Only for a terminal.
    pub progress: bool,
    /// Run as one process of a cluster (timely's cluster mode).
    pub cluster: Option<Cluster>,
    /// Latency is recorded, and throughput measured, only after this long.
    pub warmup: Duration,
    /// Stop the run this long after the warm-up.
    pub duration: Option<Duration>,
    /// Stop the run, as `duration` would, once this process's sources have read this many
    /// events: an end on data rather than on a clock, for live input (a topic, a socket).
    pub stop_after: Option<u64>,
}

impl RunReport {
    /// Whether the engine kept up with the offered rate during the measurement
    /// ([`kept_up`]); `None` without an open-loop generator.
    pub fn kept_up(&self) -> Option<bool> {
        let interval = match self.mode {
            Mode::Continuous => None,
            Mode::MicroBatch(iv) => Some(iv),
        };
        kept_up(
            self.offered_rate.map(|r| r / self.processes as f64),
            self.measurement.rate(),
            self.measurement.seconds,
            self.measurement.backlog_end,
            interval,
        )
    }
}

/// One process's place in a cluster.
#[derive(Clone, Debug)]
pub struct Cluster {
    /// This process's index, from 0.
    pub process: usize,
    /// Every process's address (`host:port`), in process order.
    pub addresses: Vec<String>,
    /// The secret the processes prove to each other when they connect.
    pub secret: crate::cluster::Secret,
}

/// What a run measured between the end of its warm-up and its end (or stop).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Measurement {
    /// The warm-up, in seconds.
    pub warmup: f64,
    /// How long the measurement lasted, in seconds.
    pub seconds: f64,
    /// Records the sources emitted in it (events, or lines read).
    pub events: u64,
    /// The largest source backlog seen in its first half.
    pub backlog_first_half: u64,
    /// The largest source backlog seen in its second half.
    pub backlog_second_half: u64,
    /// The source backlog when it ended.
    pub backlog_end: u64,
}

impl Measurement {
    /// Events per second achieved.
    pub fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.events as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// The pipeline's name.
    pub pipeline: String,
    /// Worker threads used, per process.
    pub workers: usize,
    /// Processes in the run.
    pub processes: usize,
    /// This process's index.
    pub process: usize,
    /// The rate offered by open-loop generators (events/s, over the whole cluster), if any.
    pub offered_rate: Option<f64>,
    /// Throughput and backlog after the warm-up.
    pub measurement: Measurement,
    /// The process's peak resident memory, in bytes (when the system tells).
    pub peak_rss: Option<u64>,
    /// Backpressure: the records each source could have in flight per worker (0: no limit).
    pub max_in_flight: usize,
    /// The execution mode.
    pub mode: Mode,
    /// Wall-clock start, microseconds since the epoch.
    pub started: i64,
    /// Wall-clock duration.
    pub elapsed: Duration,
    /// Per component, in plan order: (id, kind, type, counters).
    pub components: Vec<ComponentReport>,
    /// Why the run failed, if it did.
    pub failure: Option<String>,
    /// Whether it was stopped early (Ctrl-C, closed output).
    pub stopped: bool,
    /// Whether it stopped because its standard output was closed.
    pub output_closed: bool,
    /// The default dead-letter file, when bad records went there.
    pub dead_letter_file: Option<PathBuf>,
    /// Per user-declared sink, its latency histograms.
    pub sinks: Vec<SinkReport>,
}

/// One sink's latencies in a [`RunReport`].
#[derive(Clone, Debug)]
pub struct SinkReport {
    /// The sink's id.
    pub id: String,
    /// Records it wrote (a sink that failed counts only what reached its output).
    pub records: u64,
    /// Whether it measured event-time latency (window results, wall-clock event time).
    pub event_time: bool,
    /// Its merged histograms.
    pub latency: Latencies,
    /// The histograms of the records written in the second half of the measurement.
    pub second_half: Latencies,
}

/// One component's part of a [`RunReport`].
#[derive(Clone, Debug)]
pub struct ComponentReport {
    /// Its id.
    pub id: String,
    /// Its section.
    pub kind: Kind,
    /// Its type.
    pub ty: String,
    /// Its counters.
    pub metrics: MetricsSnapshot,
    /// Kafka sources: each partition's offset, lag, committed offset and watermark.
    pub partitions: Vec<kafka::PartitionStatus>,
}

/// A file opened when first written to: the default dead-letter file (created only if a
/// record goes there), and FIFOs (opening one waits for a reader, which must not hold up the
/// start of the run).
struct LazyFile {
    path: PathBuf,
    append: bool,
    file: Option<FileOutput>,
}

impl Write for LazyFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.file.is_none() {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            self.file = Some(open_output(&self.path, self.append)?);
        }
        self.file.as_mut().expect("opened").write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.file {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

/// Opens a sink's file: truncated, or (resuming) appended to after what it holds.
fn open_output(path: &Path, append: bool) -> std::io::Result<FileOutput> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(!append)
        .append(append)
        .open(path)?;
    let len = if append { f.metadata()?.len() } else { 0 };
    Ok(FileOutput::new(f, len))
}

fn is_fifo(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo())
}

/// Input the engine may be behind at any moment without falling behind for good: one batch
/// interval (in micro-batch mode) and 100ms of the offered rate.
pub fn slack(offered: f64, interval: Option<Duration>) -> f64 {
    offered * (interval.unwrap_or(Duration::ZERO) + Duration::from_millis(100)).as_secs_f64()
}

/// Whether the engine kept up with an offered rate over a measurement: it took in all but at
/// most one batch interval and 100 ms of the input due (1% tolerance), and its backlog at the
/// end is within that. `None` without an offered rate.
pub fn kept_up(
    offered: Option<f64>,
    achieved: f64,
    seconds: f64,
    backlog_end: u64,
    interval: Option<Duration>,
) -> Option<bool> {
    let offered = offered?;
    let slack = slack(offered, interval);
    Some(achieved * seconds + slack >= offered * seconds * 0.99 && backlog_end as f64 <= slack)
}

/// Whether the run resumes from Weir's own Kafka commits: file sinks then append to the output
/// of the runs before, which the resumed input does not produce again.
pub fn resumes(plan: &Plan) -> bool {
    plan.nodes.iter().any(|n| match &n.op {
        Op::Kafka(s) => s.partitions.iter().any(|p| p.resume.is_some()),
        _ => false,
    })
}

/// Opens every sink's writer before the run starts, so a bad path fails early. In a cluster,
/// only process 0 writes.
fn open_writers(plan: &Plan, process: usize) -> Result<Vec<Option<SharedWriter>>, String> {
    let append = resumes(plan);
    if append && process == 0 {
        eprintln!(
            "weir: resuming from committed Kafka offsets: file sinks append to their output \
             (delete the output files and the consumer group to start over)"
        );
    }
    plan.nodes
        .iter()
        .map(|n| match &n.op {
            Op::Sink(_) if process > 0 => Ok(None),
            Op::Sink(s) => {
                let w = match &s.target {
                    SinkTarget::Null => return Ok(None),
                    SinkTarget::Stdout => SharedWriter::stdout(),
                    SinkTarget::File(path) => {
                        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                            std::fs::create_dir_all(dir).map_err(|e| {
                                format!(
                                    "sink `{}`: cannot create directory {}: {e}",
                                    n.id,
                                    dir.display()
                                )
                            })?;
                        }
                        if is_fifo(path) {
                            eprintln!(
                                "weir: sink `{}` writes to the FIFO {}: its first write waits for a reader",
                                n.id,
                                path.display()
                            );
                            SharedWriter::new(Box::new(LazyFile {
                                path: path.clone(),
                                append,
                                file: None,
                            }))
                        } else {
                            let f = open_output(path, append).map_err(|e| {
                                format!("sink `{}`: cannot create {}: {e}", n.id, path.display())
                            })?;
                            SharedWriter::new(Box::new(f))
                        }
                    }
                    SinkTarget::LazyFile(path) => SharedWriter::new(Box::new(LazyFile {
                        path: path.clone(),
                        append,
                        file: None,
                    })),
                    SinkTarget::Kafka {
                        brokers,
                        topic,
                        key,
                        options,
                    } => {
                        let config = kafka::client_config(brokers, options);
                        let m = kafka::Messages::new(&config, topic)
                            .and_then(|m| m.check_topic(&config).map(|()| m))
                            .map_err(|e| format!("sink `{}`: {e}", n.id))?;
                        SharedWriter::messages(m, key.clone())
                    }
                    SinkTarget::Tcp(address) => {
                        let stream = std::net::TcpStream::connect(address).map_err(|e| {
                            format!(
                                "sink `{}`: cannot connect to {address}: {e} (start the receiver first, or fix `address`)",
                                n.id
                            )
                        })?;
                        let _ = stream.set_nodelay(true);
                        SharedWriter::new(Box::new(BufWriter::with_capacity(1 << 16, stream)))
                    }
                };
                if let Some(h) = s.encoder.header().filter(|_| !w.is_messages()) {
                    w.write_all(&h)
                        .map_err(|e| format!("sink `{}`: {e}", n.id))?;
                }
                Ok(Some(w))
            }
            _ => Ok(None),
        })
        .collect()
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
fn wall_clock_time(plan: &Plan, n: &crate::plan::Node) -> bool {
    match &n.op {
        Op::Generator(g) => g.start.is_none() && g.interval.is_none(),
        Op::Tcp(t) => t.decode.latency_from_event_time,
        Op::Kafka(k) => k.decode.latency_from_event_time,
        Op::File(_) | Op::Stdin(_) => false,
        _ => n
            .inputs
            .iter()
            .all(|r| wall_clock_time(plan, &plan.nodes[r.node])),
    }
}

/// Runs `plan` to completion (or until `ctl` stops it, or its duration is over).
pub fn run(plan: &Plan, opts: &RunOptions, ctl: RunControl) -> Result<RunReport, String> {
    let workers = opts.workers.unwrap_or(plan.workers).max(1);
    let (processes, process) = opts
        .cluster
        .as_ref()
        .map_or((1, 0), |c| (c.addresses.len().max(1), c.process));
    let prepared = crate::recovery::prepare(plan)?;
    let plan = &prepared;
    let writers = open_writers(plan, process)?;
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
    let monitor = {
        let live = crate::monitor::Live {
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
        };
        let (opts, ctl) = (opts.clone(), ctl.clone());
        std::thread::spawn(move || crate::monitor::monitor(live, &opts, &ctl, finished))
    };
    let result = {
        let (metrics, writers, ctl, measured) = (
            metrics.clone(),
            writers.clone(),
            ctl.clone(),
            measured.clone(),
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
                let plan = Arc::clone(&plan_arc);
                let clock = *clock_cell.get_or_init(&start_clock);
                let env = SourceEnv {
                    mode,
                    clock,
                    ctl: ctl.clone(),
                    flow: Flow::shared(plan.max_in_flight, Arc::clone(&frontier)),
                };
                worker.dataflow::<Time, _, _>(|scope| {
                    build(scope, &plan, &env, gather, &metrics, &writers, &measured);
                });
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
    let components: Vec<ComponentReport> = plan
        .nodes
        .iter()
        .zip(&metrics)
        .map(|(n, m)| ComponentReport {
            id: n.id.clone(),
            kind: n.kind,
            ty: n.ty.clone(),
            metrics: m.snapshot(),
            partitions: match &n.op {
                Op::Kafka(k) => k.status.snapshot(),
                _ => Vec::new(),
            },
        })
        .collect();
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
    let failure = ctl.failure();
    let sinks = plan
        .nodes
        .iter()
        .zip(&measured)
        .zip(&components)
        .filter_map(|((n, m), c)| {
            m.as_ref().map(|(l, event)| SinkReport {
                id: n.id.clone(),
                records: c.metrics.records_out,
                event_time: event.is_some(),
                latency: l.merged(),
                second_half: l.merged_second_half(),
            })
        })
        .collect();
    Ok(RunReport {
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
        dead_letter_file,
    })
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

/// Builds the dataflow for one worker.
#[allow(clippy::too_many_arguments)]
/// The schema of the records on an output port.
fn port_schema(plan: &Plan, r: PortRef) -> weir_operators::schema::Schema {
    let n = &plan.nodes[r.node];
    match r.port {
        Port::Main => n.schema.clone(),
        Port::DeadLetter => weir_operators::decode::dead_letter_schema(),
        // Late records are a window's or a join side's input records.
        Port::Late => port_schema(plan, n.inputs[0]),
        Port::LateRight => port_schema(plan, n.inputs[1]),
    }
}

fn build<'s>(
    scope: timely::dataflow::Scope<'s, Time>,
    plan: &Plan,
    env: &SourceEnv,
    gather: bool,
    metrics: &[Arc<ComponentMetrics>],
    writers: &[Option<SharedWriter>],
    measured: &[Option<(Arc<SinkLatency>, Option<usize>)>],
) {
    let (clock, ctl) = (env.clock, &env.ctl);
    let mut streams: HashMap<PortRef, Batches<'s>> = HashMap::new();
    // Arrow schemas of the ports, made once each.
    let mut layouts: HashMap<PortRef, arrow::datatypes::SchemaRef> = HashMap::new();
    let mut layout = |r: PortRef| -> arrow::datatypes::SchemaRef {
        Arc::clone(
            layouts
                .entry(r)
                .or_insert_with(|| arrow_schema(&port_schema(plan, r))),
        )
    };
    // Versioned tables arranged once, shared by the temporal joins that read the same input
    // the same way.
    type TableKey = (PortRef, (Vec<usize>, Vec<usize>, usize, LatePolicy));
    let mut tables: HashMap<TableKey, temporal_join::Table<'s>> = HashMap::new();
    for (i, node) in plan.nodes.iter().enumerate() {
        let m = Arc::clone(&metrics[i]);
        let name = node.id.as_str();
        let input = || -> Batches<'s> {
            let mut ins: Vec<Batches<'s>> =
                node.inputs.iter().map(|r| streams[r].clone()).collect();
            if ins.len() == 1 {
                ins.pop().expect("one input")
            } else {
                scope.concatenate(ins)
            }
        };
        let main = PortRef {
            node: i,
            port: Port::Main,
        };
        let dead = PortRef {
            node: i,
            port: Port::DeadLetter,
        };
        let late = PortRef {
            node: i,
            port: Port::Late,
        };
        let late_right = PortRef {
            node: i,
            port: Port::LateRight,
        };
        // Sources and the row-based operators (windows, joins) are joined to the chunk streams
        // by conversions at their outputs (and, for windows and joins, at their inputs).
        let mut rows_out: Vec<(PortRef, weir_operators::Records<'s>)> = Vec::new();
        let mut put =
            |port: PortRef, rows: weir_operators::Records<'s>| rows_out.push((port, rows));
        match &node.op {
            Op::Generator(spec) => {
                streams.insert(main, generator(scope, name, spec.clone(), env.clone(), m));
            }
            Op::File(spec) => {
                let (r, d) =
                    file_source::file_source(scope, name, Arc::clone(spec), env.clone(), m);
                put(main, r);
                put(dead, d);
            }
            Op::Stdin(spec) => {
                let (r, d) =
                    stdin_source::stdin_source(scope, name, Arc::clone(spec), env.clone(), m);
                put(main, r);
                put(dead, d);
            }
            Op::Tcp(spec) => {
                let (r, d) = tcp_source::tcp_source(scope, name, Arc::clone(spec), env.clone(), m);
                put(main, r);
                put(dead, d);
            }
            Op::Kafka(spec) => {
                let (r, d) =
                    kafka_source::kafka_source(scope, name, Arc::clone(spec), env.clone(), m);
                put(main, r);
                put(dead, d);
            }
            Op::Filter(e) => {
                let s = filter::filter(input(), name, Arc::clone(e), m);
                streams.insert(main, s);
            }
            Op::Map(spec) => {
                let s = map::map(input(), name, Arc::clone(spec), layout(main), m);
                streams.insert(main, s);
            }
            Op::Window(spec) => {
                let keyed = exchange_by_key(input(), spec.group_by.clone());
                let w = window::window(to_rows(keyed), Routing::Partitioned, Arc::clone(spec), m);
                put(main, w.results);
                put(dead, w.dead);
                put(late, w.late);
            }
            Op::IntervalJoin(_) | Op::WindowJoin(_) | Op::TemporalJoin(_) => {
                // Interval and window joins get their inputs exchanged as chunks; the temporal
                // join exchanges rows inside its differential part.
                let keyed = |k: usize, key: &Vec<usize>| {
                    to_rows(exchange_by_key(
                        streams[&node.inputs[k]].clone(),
                        key.clone(),
                    ))
                };
                let left = || to_rows(streams[&node.inputs[0]].clone());
                let right = || to_rows(streams[&node.inputs[1]].clone());
                let j = match &node.op {
                    Op::IntervalJoin(spec) => interval_join::interval_join(
                        keyed(0, &spec.common.left_key),
                        keyed(1, &spec.common.right_key),
                        Routing::Partitioned,
                        Arc::clone(spec),
                        m,
                    ),
                    Op::WindowJoin(spec) => window_join::window_join(
                        keyed(0, &spec.common.left_key),
                        keyed(1, &spec.common.right_key),
                        Routing::Partitioned,
                        Arc::clone(spec),
                        m,
                    ),
                    Op::TemporalJoin(spec) => {
                        let key = (node.inputs[1], spec.table_signature());
                        let owner = !tables.contains_key(&key);
                        let table = tables
                            .entry(key)
                            .or_insert_with(|| temporal_join::arrange_table(right(), spec, &m));
                        temporal_join::join_table(left(), table, owner, Arc::clone(spec), m)
                    }
                    _ => unreachable!("matched above"),
                };
                put(main, j.results);
                put(dead, j.dead);
                put(late, j.late_left);
                put(late_right, j.late_right);
            }
            Op::Sink(spec) => {
                let measure = measured[i].as_ref().map(|(l, end)| sink::Measure {
                    latency: Arc::clone(l),
                    clock,
                    window_end: *end,
                });
                let mut stream = input();
                if gather && spec.target != SinkTarget::Null {
                    // In a cluster, the first worker of process 0 writes every sink's output,
                    // so it is the same as a single process's.
                    stream = stream.exchange(|_| 0);
                }
                let written = sink::sink(
                    stream,
                    name,
                    Arc::clone(&spec.encoder),
                    writers[i].clone(),
                    measure,
                    ctl.clone(),
                    m,
                );
                env.flow.watch(written);
            }
        }
        for (port, rows) in rows_out {
            let s = to_chunks(rows, layout(port));
            streams.insert(port, s);
        }
    }
}
