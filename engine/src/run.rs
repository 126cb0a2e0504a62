//! Running a plan: the plan becomes a timely dataflow on every worker, sinks write, and the run
//! ends when every source is exhausted (or stopped) and every record has reached its sinks.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use timely::dataflow::operators::Concatenate;
use weir_operators::control::RunControl;
use weir_operators::epochs::Mode;
use weir_operators::generator::{generator, RunClock};
use weir_operators::latency::{Latencies, SinkLatency};
use weir_operators::metrics::{ComponentMetrics, MetricsSnapshot};
use weir_operators::sink::SharedWriter;
use weir_operators::window::LatePolicy;
use weir_operators::{
    file_source, filter, interval_join, map, sink, stdin_source, temporal_join, window,
    window_join, Records, Time,
};

use crate::components::{Op, SinkTarget};
use crate::plan::{Plan, Port, PortRef};
use crate::spec::Kind;

/// How to run.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Worker threads (overrides the pipeline's `workers`).
    pub workers: Option<usize>,
    /// Print a status line per sink to standard error this often while the run lasts.
    pub status_every: Option<Duration>,
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// The pipeline's name.
    pub pipeline: String,
    /// Worker threads used.
    pub workers: usize,
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
    /// Records it received.
    pub records: u64,
    /// Whether it measured event-time latency (window results, wall-clock event time).
    pub event_time: bool,
    /// Its merged histograms.
    pub latency: Latencies,
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
}

/// A file created when first written to.
struct LazyFile {
    path: PathBuf,
    file: Option<BufWriter<File>>,
}

impl Write for LazyFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.file.is_none() {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            self.file = Some(BufWriter::new(File::create(&self.path)?));
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

/// Opens every sink's writer before the run starts, so a bad path fails early.
fn open_writers(plan: &Plan) -> Result<Vec<Option<SharedWriter>>, String> {
    plan.nodes
        .iter()
        .map(|n| match &n.op {
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
                        let f = File::create(path).map_err(|e| {
                            format!("sink `{}`: cannot create {}: {e}", n.id, path.display())
                        })?;
                        SharedWriter::new(Box::new(BufWriter::with_capacity(1 << 16, f)))
                    }
                    SinkTarget::LazyFile(path) => SharedWriter::new(Box::new(LazyFile {
                        path: path.clone(),
                        file: None,
                    })),
                };
                if let Some(h) = s.encoder.header() {
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
/// stamping events with their scheduled (or generation) time.
fn wall_clock_time(plan: &Plan, n: &crate::plan::Node) -> bool {
    match &n.op {
        Op::Generator(g) => g.start.is_none() && g.interval.is_none(),
        Op::File(_) | Op::Stdin(_) => false,
        _ => n
            .inputs
            .iter()
            .all(|r| wall_clock_time(plan, &plan.nodes[r.node])),
    }
}

/// Runs `plan` to completion (or until `ctl` stops it).
pub fn run(plan: &Plan, opts: &RunOptions, ctl: RunControl) -> Result<RunReport, String> {
    let workers = opts.workers.unwrap_or(plan.workers).max(1);
    let writers = open_writers(plan)?;
    let metrics: Vec<Arc<ComponentMetrics>> = plan.nodes.iter().map(|_| Arc::default()).collect();
    let measured = measured_sinks(plan, workers);
    let plan_arc = Arc::new(plan.clone());
    let clock = RunClock::now();
    let started = Instant::now();
    // The status thread prints every `every` until the run ends (the sender is dropped).
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let status = opts.status_every.map(|every| {
        let (plan, metrics, measured) = (plan.clone(), metrics.clone(), measured.clone());
        std::thread::spawn(move || {
            let mut next = every;
            loop {
                let wait = next.saturating_sub(started.elapsed());
                match finished.recv_timeout(wait) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        let t = started.elapsed();
                        next += every;
                        eprint!("{}", crate::summary::status(&plan, &metrics, &measured, t));
                    }
                    _ => return,
                }
            }
        })
    });
    let result = {
        let (metrics, writers, ctl, measured) = (
            metrics.clone(),
            writers.clone(),
            ctl.clone(),
            measured.clone(),
        );
        let mode = plan.mode;
        timely::execute(timely::Config::process(workers), move |worker| {
            let plan = Arc::clone(&plan_arc);
            worker.dataflow::<Time, _, _>(|scope| {
                build(
                    scope, &plan, mode, &metrics, &writers, &measured, &ctl, clock,
                );
            });
            while worker.step_or_park(Some(Duration::from_millis(100))) {}
        })
        .map_err(|e| e.to_string())
        .and_then(|guards| {
            for r in guards.join() {
                r.map_err(|e| format!("a worker failed: {e}"))?;
            }
            Ok(())
        })
    };
    let elapsed = started.elapsed();
    drop(done);
    if let Some(t) = status {
        let _ = t.join();
    }
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
                records: c.metrics.records_in,
                event_time: event.is_some(),
                latency: l.merged(),
            })
        })
        .collect();
    Ok(RunReport {
        pipeline: plan.name.clone(),
        workers,
        mode: plan.mode,
        started: clock.wall,
        sinks,
        elapsed,
        components,
        stopped: ctl.stopped() && failure.is_none(),
        output_closed: ctl.output_closed(),
        failure,
        dead_letter_file,
    })
}

/// Builds the dataflow for one worker.
#[allow(clippy::too_many_arguments)]
fn build<'s>(
    scope: timely::dataflow::Scope<'s, Time>,
    plan: &Plan,
    mode: Mode,
    metrics: &[Arc<ComponentMetrics>],
    writers: &[Option<SharedWriter>],
    measured: &[Option<(Arc<SinkLatency>, Option<usize>)>],
    ctl: &RunControl,
    clock: RunClock,
) {
    let mut streams: HashMap<PortRef, Records<'s>> = HashMap::new();
    // Versioned tables arranged once, shared by the temporal joins that read the same input
    // the same way.
    type TableKey = (PortRef, (Vec<usize>, Vec<usize>, usize, LatePolicy));
    let mut tables: HashMap<TableKey, temporal_join::Table<'s>> = HashMap::new();
    for (i, node) in plan.nodes.iter().enumerate() {
        let m = Arc::clone(&metrics[i]);
        let name = node.id.as_str();
        let input = || -> Records<'s> {
            let mut ins: Vec<Records<'s>> =
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
        match &node.op {
            Op::Generator(spec) => {
                streams.insert(
                    main,
                    generator(scope, name, spec.clone(), clock, mode, ctl.clone(), m),
                );
            }
            Op::File(spec) => {
                let (r, d) = file_source::file_source(
                    scope,
                    name,
                    Arc::clone(spec),
                    mode,
                    clock,
                    ctl.clone(),
                    m,
                );
                streams.insert(main, r);
                streams.insert(dead, d);
            }
            Op::Stdin(spec) => {
                let (r, d) = stdin_source::stdin_source(
                    scope,
                    name,
                    Arc::clone(spec),
                    mode,
                    clock,
                    ctl.clone(),
                    m,
                );
                streams.insert(main, r);
                streams.insert(dead, d);
            }
            Op::Filter(e) => {
                let s = filter::filter(input(), name, Arc::clone(e), m);
                streams.insert(main, s);
            }
            Op::Map(spec) => {
                let s = map::map(input(), name, Arc::clone(spec), m);
                streams.insert(main, s);
            }
            Op::Window(spec) => {
                let w = window::window(input(), Arc::clone(spec), m);
                streams.insert(main, w.results);
                streams.insert(dead, w.dead);
                streams.insert(
                    PortRef {
                        node: i,
                        port: Port::Late,
                    },
                    w.late,
                );
            }
            Op::IntervalJoin(_) | Op::WindowJoin(_) | Op::TemporalJoin(_) => {
                let left = streams[&node.inputs[0]].clone();
                let right = streams[&node.inputs[1]].clone();
                let j = match &node.op {
                    Op::IntervalJoin(spec) => {
                        interval_join::interval_join(left, right, Arc::clone(spec), m)
                    }
                    Op::WindowJoin(spec) => {
                        window_join::window_join(left, right, Arc::clone(spec), m)
                    }
                    Op::TemporalJoin(spec) => {
                        let key = (node.inputs[1], spec.table_signature());
                        let owner = !tables.contains_key(&key);
                        let table = tables
                            .entry(key)
                            .or_insert_with(|| temporal_join::arrange_table(right, spec, &m));
                        temporal_join::join_table(left, table, owner, Arc::clone(spec), m)
                    }
                    _ => unreachable!("matched above"),
                };
                streams.insert(main, j.results);
                streams.insert(dead, j.dead);
                for (port, s) in [(Port::Late, j.late_left), (Port::LateRight, j.late_right)] {
                    streams.insert(PortRef { node: i, port }, s);
                }
            }
            Op::Sink(spec) => {
                let measure = measured[i].as_ref().map(|(l, end)| sink::Measure {
                    latency: Arc::clone(l),
                    clock,
                    window_end: *end,
                });
                sink::sink(
                    input(),
                    name,
                    Arc::clone(&spec.encoder),
                    writers[i].clone(),
                    measure,
                    ctl.clone(),
                    m,
                );
            }
        }
    }
}
