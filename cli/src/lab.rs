//! The latency lab behind `weir compare`: runs one pipeline under several configurations (execution mode, workers,
//! offered rate), one after another, each in its own `weir run` process for a fixed duration
//! after a warm-up; tabulates throughput and latency, and draws the latency distributions as a
//! percentile plot. It can also search for the highest rate each configuration sustains, and
//! redraw saved reports.
//!
//! ```
//! use weir_cli::lab::{parse_modes, parse_rate};
//!
//! assert_eq!(parse_rate("100k").unwrap(), 100_000.0);
//! assert_eq!(parse_rate("2.5M").unwrap(), 2_500_000.0);
//! let modes = parse_modes("continuous,micro-batch:100ms").unwrap();
//! assert_eq!(modes[1].label(), "micro-batch 100ms");
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use plotters::prelude::*;

use weir_engine::report::Report;
use weir_engine::run::{kept_up, slack};
use weir_engine::summary::{micros, thousands, PERCENTILES};

/// An execution mode to compare: `continuous`, or `micro-batch` with an interval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModeSpec {
    /// `continuous` or `micro-batch`.
    pub mode: String,
    /// The micro-batch interval as given (`100ms`).
    pub interval: Option<String>,
}

impl ModeSpec {
    /// How the mode is shown.
    pub fn label(&self) -> String {
        match &self.interval {
            Some(iv) => format!("{} {iv}", self.mode),
            None => self.mode.clone(),
        }
    }

    /// The interval, if any.
    pub fn interval(&self) -> Option<Duration> {
        self.interval
            .as_deref()
            .and_then(|i| humantime::parse_duration(i).ok())
    }
}

/// Parses `continuous,micro-batch:100ms,micro-batch:1s`.
pub fn parse_modes(s: &str) -> Result<Vec<ModeSpec>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(|m| {
            let (mode, interval) = match m.split_once(':') {
                Some((a, b)) => (a.trim(), Some(b.trim().to_string())),
                None => (m, None),
            };
            match (mode, &interval) {
                ("continuous", None) => {}
                ("continuous", Some(_)) => {
                    return Err(format!(
                        "`{m}`: continuous mode has no interval; write `continuous`"
                    ))
                }
                ("micro-batch", Some(iv)) => {
                    let d = weir_engine::components::parse_duration(iv).map_err(|e| {
                        format!("`{m}`: `{iv}` is not a duration ({e}); write micro-batch:100ms")
                    })?;
                    if d < Duration::from_millis(1) {
                        return Err(format!("`{m}`: the interval must be at least 1ms"));
                    }
                }
                ("micro-batch", None) => {}
                _ => {
                    return Err(format!(
                        "`{m}` is not a mode: use continuous, micro-batch or micro-batch:INTERVAL (such as micro-batch:100ms)"
                    ))
                }
            }
            Ok(ModeSpec {
                mode: mode.to_string(),
                interval,
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .and_then(|v| {
            if v.is_empty() {
                Err("no mode given: use continuous, micro-batch:100ms, ...".into())
            } else {
                Ok(v)
            }
        })
}

/// Parses an event rate: `50000`, `100k`, `1m` / `1M` (millions), `2.5g`.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1e3),
        Some((i, 'm' | 'M')) => (&t[..i], 1e6),
        Some((i, 'g' | 'G')) => (&t[..i], 1e9),
        _ => (t, 1.0),
    };
    match num.trim().replace('_', "").parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x * mult),
        _ => Err(format!(
            "`{s}` is not an event rate: write events per second, such as 50000, 100k or 1m"
        )),
    }
}

/// Shows a rate compactly: `100k`, `1.5M`.
pub fn short_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{}M", trim_float(r / 1e6))
    } else if r >= 1e3 {
        format!("{}k", trim_float(r / 1e3))
    } else {
        trim_float(r)
    }
}

/// `x` rounded to `digits` significant digits.
fn round_significant(x: f64, digits: i32) -> f64 {
    if x <= 0.0 {
        return x;
    }
    let scale = 10f64.powi(digits - 1 - x.log10().floor() as i32);
    (x * scale).round() / scale
}

fn trim_float(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// One configuration's results: one row of the table, one curve of the plot.
#[derive(Clone, Debug)]
pub struct Row {
    /// How the configuration is shown.
    pub label: String,
    /// The micro-batch interval, if any.
    pub interval: Option<Duration>,
    /// The rate offered, events/s.
    pub offered: Option<f64>,
    /// The rate achieved after the warm-up, events/s (all processes).
    pub achieved: f64,
    /// Seconds measured.
    pub seconds: f64,
    /// Source backlog at the end (all processes).
    pub backlog_end: u64,
    /// Largest source backlog in the first and second halves of the measurement.
    pub backlog_halves: (u64, u64),
    /// Processing-time latency.
    pub processing: Histogram<u64>,
    /// Processing-time latency of the second half of the measurement.
    pub processing_second_half: Option<Histogram<u64>>,
    /// Event-time latency, when measured.
    pub event: Option<Histogram<u64>>,
    /// Time sources were held back by backpressure, seconds (summed over workers and
    /// processes).
    pub held: f64,
    /// The largest peak memory of the run's processes, bytes.
    pub peak_rss: Option<u64>,
}

impl Row {
    /// The row of one run, from its report (and, for a cluster, the other processes'
    /// reports). `sink` picks one sink; by default every measured sink's latency is merged.
    pub fn from_reports(reports: &[Report], sink: Option<&str>) -> Result<Row, String> {
        let first = reports
            .iter()
            .find(|r| r.process == 0)
            .or(reports.first())
            .ok_or("no report")?;
        let mut processing = weir_operators::latency::histogram();
        let mut second = weir_operators::latency::histogram();
        let mut event: Option<Histogram<u64>> = None;
        let mut found = false;
        for r in reports {
            for s in r
                .sinks
                .iter()
                .filter(|s| sink.is_none_or(|id| s.sink == id))
            {
                found = true;
                add(&mut processing, &s.processing_latency.decode()?);
                if let Some(h) = &s.processing_latency_second_half {
                    add(&mut second, &h.decode()?);
                }
                if let Some(e) = &s.event_time_latency {
                    add(
                        event.get_or_insert_with(weir_operators::latency::histogram),
                        &e.decode()?,
                    );
                }
            }
        }
        if let (Some(id), false) = (sink, found) {
            let known: Vec<&str> = first.sinks.iter().map(|s| s.sink.as_str()).collect();
            return Err(format!(
                "the pipeline has no measured sink `{id}`; its sinks are: {}",
                known.join(", ")
            ));
        }
        let mode = match first.batch_interval_ms {
            Some(ms) => format!(
                "{} {}",
                first.mode,
                humantime::format_duration(Duration::from_micros((ms * 1e3).round() as u64))
            ),
            None => first.mode.clone(),
        };
        let mut label = format!("{mode}, {}w", first.workers);
        if first.processes > 1 {
            let _ = write!(label, " x {}p", first.processes);
        }
        if let Some(r) = first.offered_rate {
            let _ = write!(label, ", {}/s", short_rate(r));
        }
        let m = |f: fn(&Report) -> u64| reports.iter().map(f).sum::<u64>();
        let seconds = first.measurement.seconds;
        Ok(Row {
            label,
            interval: first
                .batch_interval_ms
                .map(|ms| Duration::from_secs_f64(ms / 1e3)),
            offered: first.offered_rate,
            achieved: if seconds > 0.0 {
                m(|r| r.measurement.events) as f64 / seconds
            } else {
                0.0
            },
            seconds,
            backlog_end: m(|r| r.measurement.backlog_end),
            backlog_halves: (
                m(|r| r.measurement.backlog_first_half),
                m(|r| r.measurement.backlog_second_half),
            ),
            processing_second_half: (!second.is_empty()).then_some(second),
            processing,
            event,
            held: reports
                .iter()
                .flat_map(|r| &r.components)
                .map(|c| c.metrics.held_micros as f64 / 1e6)
                .sum(),
            peak_rss: reports.iter().filter_map(|r| r.peak_rss_bytes).max(),
        })
    }

    /// See [`slack`].
    fn slack(&self) -> f64 {
        slack(self.offered.unwrap_or(0.0), self.interval)
    }

    /// Whether the engine kept up with the offered rate (see [`kept_up`]).
    pub fn kept_up(&self) -> Option<bool> {
        kept_up(
            self.offered,
            self.achieved,
            self.seconds,
            self.backlog_end,
            self.interval,
        )
    }

    /// Whether the offered rate is sustainable: the engine kept up, its backlog did not grow
    /// from the first half of the measurement to the second, and neither did its p99 latency
    /// (at most twice the first half's, plus 25ms: a scheduling hiccup on a shared machine is
    /// not growth). Otherwise, why not.
    pub fn sustainable(&self) -> Result<(), String> {
        match self.kept_up() {
            None => return Err("no offered rate".into()),
            Some(false) => {
                return Err(format!(
                    "fell behind: {}/s achieved of {}/s offered, backlog {} at the end",
                    thousands(self.achieved as u64),
                    thousands(self.offered.unwrap_or(0.0) as u64),
                    thousands(self.backlog_end)
                ))
            }
            Some(true) => {}
        }
        let (b1, b2) = self.backlog_halves;
        if b2 as f64 > b1 as f64 * 1.5 + self.slack() {
            return Err(format!(
                "backlog grew: at most {} in the first half, {} in the second",
                thousands(b1),
                thousands(b2)
            ));
        }
        if let Some(second) = &self.processing_second_half {
            let mut first = self.processing.clone();
            let _ = first.subtract(second);
            if !first.is_empty() {
                let (p1, p2) = (
                    first.value_at_quantile(0.99),
                    second.value_at_quantile(0.99),
                );
                if p2 > 2 * p1 + 25_000 {
                    return Err(format!(
                        "p99 latency grew: {} in the first half, {} in the second",
                        micros(p1),
                        micros(p2)
                    ));
                }
            }
        }
        Ok(())
    }
}

fn add(into: &mut Histogram<u64>, h: &Histogram<u64>) {
    // Every histogram has the same bounds; a value beyond them cannot occur.
    let _ = into.add(h);
}

/// The comparison table.
pub fn table(rows: &[Row]) -> String {
    let any_event = rows.iter().any(|r| r.event.is_some());
    let mut header: Vec<String> = [
        "configuration",
        "offered/s",
        "achieved/s",
        "kept up",
        "backlog",
        "held",
        "peak mem",
    ]
    .map(String::from)
    .to_vec();
    let kinds: &[&str] = if any_event {
        &["proc", "event"]
    } else {
        &["proc"]
    };
    for k in kinds {
        for (p, _) in PERCENTILES {
            header.push(format!("{k} {p}"));
        }
        header.push(format!("{k} max"));
    }
    let cells = |h: Option<&Histogram<u64>>| -> Vec<String> {
        match h.filter(|h| !h.is_empty()) {
            None => vec!["-".into(); PERCENTILES.len() + 1],
            Some(h) => PERCENTILES
                .iter()
                .map(|(_, q)| micros(h.value_at_percentile(*q)))
                .chain(std::iter::once(micros(h.max())))
                .collect(),
        }
    };
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut row = vec![
                r.label.clone(),
                r.offered.map_or("-".into(), |o| thousands(o as u64)),
                thousands(r.achieved as u64),
                match r.kept_up() {
                    None => "-".into(),
                    Some(true) => "yes".into(),
                    Some(false) => "NO".into(),
                },
                thousands(r.backlog_end),
                format!("{:.1}s", r.held),
                r.peak_rss
                    .map_or("-".into(), |b| format!("{:.0}MB", b as f64 / 1e6)),
            ];
            row.extend(cells(Some(&r.processing)));
            if any_event {
                row.extend(cells(r.event.as_ref()));
            }
            row
        })
        .collect();
    weir_engine::summary::aligned(&header, &body, 1, "", "  ")
}

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// Draws the percentile plot of the rows' processing-time latency (and event-time latency,
/// dashed, where measured) to `path`: SVG or PNG by its extension. The x axis is the
/// percentile on HDR's log scale (0 .. 99.99: the distance to 100% shrinks tenfold per step),
/// the y axis latency in milliseconds on a log scale.
pub fn plot(rows: &[Row], title: &str, path: &Path) -> Result<(), String> {
    static REGISTER: std::sync::Once = std::sync::Once::new();
    REGISTER.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
    let size = (1280, 650);
    let fail = |e: String| format!("cannot draw {}: {e}", path.display());
    match path.extension().and_then(|e| e.to_str()) {
        Some("svg") => {
            let root = SVGBackend::new(path, size).into_drawing_area();
            draw(rows, title, &root).map_err(fail)?;
            root.present().map_err(|e| fail(e.to_string()))
        }
        Some("png") => {
            let root = BitMapBackend::new(path, size).into_drawing_area();
            draw(rows, title, &root).map_err(fail)?;
            root.present().map_err(|e| fail(e.to_string()))
        }
        _ => Err(format!(
            "cannot draw {}: the plot is written as .svg or .png",
            path.display()
        )),
    }
}

/// Points of a percentile curve: (1 / (1 - q), latency in ms) for q from 0 to 99.99%.
fn curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    (0..=400)
        .map(|k| {
            let x = 10f64.powf(k as f64 / 100.0);
            let q = 1.0 - 1.0 / x;
            (x, (h.value_at_quantile(q).max(1) as f64) / 1e3)
        })
        .collect()
}

fn draw<DB: DrawingBackend>(
    rows: &[Row],
    title: &str,
    root: &DrawingArea<DB, plotters::coord::Shift>,
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    // The chart on the left, the legend beside it, so no curve is hidden.
    let (plot_area, legend_area) = root.split_horizontally(880);
    // (legend, points, dashed)
    type Series = (String, Vec<(f64, f64)>, bool);
    let mut series: Vec<Series> = Vec::new();
    for r in rows {
        if !r.processing.is_empty() {
            series.push((
                format!("{} (processing)", r.label),
                curve(&r.processing),
                false,
            ));
        }
        if let Some(e) = r.event.as_ref().filter(|e| !e.is_empty()) {
            series.push((format!("{} (event time)", r.label), curve(e), true));
        }
    }
    let (lo, hi) = series
        .iter()
        .flat_map(|(_, pts, _)| pts.iter().map(|p| p.1))
        .fold((f64::MAX, f64::MIN), |(a, b), y| (a.min(y), b.max(y)));
    let (lo, hi) = if lo > hi {
        (0.001, 1.0)
    } else {
        (lo.max(0.001) / 1.5, hi * 1.5)
    };
    let mut chart = ChartBuilder::on(&plot_area)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d((1f64..10_000f64).log_scale(), (lo..hi).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_label_formatter(&|x| {
            let p = 100.0 * (1.0 - 1.0 / x);
            format!("{}%", trim_float((p * 100.0).round() / 100.0))
        })
        .y_label_formatter(&|y| {
            let s = format!("{y:.3}");
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        })
        .draw()
        .map_err(err)?;
    let legend_font = ("sans-serif", 14).into_font();
    for (i, (name, pts, dashed)) in series.into_iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let style = ShapeStyle::from(&color).stroke_width(2);
        if dashed {
            chart
                .draw_series(DashedLineSeries::new(pts, 6, 4, style))
                .map_err(err)?;
        } else {
            chart
                .draw_series(LineSeries::new(pts, style))
                .map_err(err)?;
        }
        let y = 60 + 22 * i as i32;
        let line = vec![(10, y), (40, y)];
        if dashed {
            legend_area
                .draw(&plotters::element::DashedPathElement::new(
                    line, 6, 4, style,
                ))
                .map_err(err)?;
        } else {
            legend_area
                .draw(&PathElement::new(line, style))
                .map_err(err)?;
        }
        legend_area
            .draw(&Text::new(
                name,
                (48, y - 8),
                legend_font.clone().color(&BLACK),
            ))
            .map_err(err)?;
    }
    Ok(())
}

/// Runs configurations of one pipeline, each in its own `weir run` process (or processes).
pub struct Runner {
    /// The `weir` executable.
    pub exe: PathBuf,
    /// The pipeline file.
    pub pipeline: PathBuf,
    /// `--set` overrides for every run.
    pub set: Vec<String>,
    /// Warm-up and measured duration of each run.
    pub warmup: Duration,
    /// See `warmup`.
    pub duration: Duration,
    /// Where reports and logs go.
    pub out: PathBuf,
    /// Processes per run.
    pub processes: usize,
    /// When the processes run on several machines: this machine's process and the hostfile
    /// every machine shares. Each machine runs the same comparison; this one starts only its own
    /// process of each run.
    pub external: Option<(usize, PathBuf)>,
    /// The sink whose latency is compared (default: all).
    pub sink: Option<String>,
    /// Runs so far.
    pub count: usize,
}

impl Runner {
    /// Runs one configuration and returns its row. Its report is `OUT/run-NN.json`, its log
    /// (the run's standard error) `OUT/run-NN.log`.
    pub fn run(
        &mut self,
        mode: &ModeSpec,
        workers: usize,
        rate: Option<f64>,
    ) -> Result<Row, String> {
        self.count += 1;
        let stem = format!("run-{:02}", self.count);
        std::fs::create_dir_all(&self.out)
            .map_err(|e| format!("cannot create {}: {e}", self.out.display()))?;
        let mut hostfile = self.out.join(format!("{stem}.hosts"));
        if let Some((_, shared)) = &self.external {
            hostfile = shared.clone();
        } else if self.processes > 1 {
            let mut text = String::new();
            for _ in 0..self.processes {
                let port = std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .map_err(|e| format!("cannot find a free port on 127.0.0.1: {e}"))?
                    .port();
                let _ = writeln!(text, "127.0.0.1:{port}");
            }
            std::fs::write(&hostfile, text)
                .map_err(|e| format!("cannot write {}: {e}", hostfile.display()))?;
        }
        let mut children: Vec<(Child, PathBuf, PathBuf)> = Vec::new();
        // The processes of a run started here share a fresh secret, unless one is set.
        let secret = (self.processes > 1
            && self.external.is_none()
            && std::env::var_os(weir_engine::cluster::SECRET_VAR).is_none())
        .then(weir_engine::cluster::random_secret)
        .transpose()
        .map_err(|e| format!("cannot make a cluster secret: {e}"))?;
        let mine: Vec<usize> = match &self.external {
            Some((p, _)) => vec![*p],
            None => (0..self.processes).collect(),
        };
        for p in mine {
            let suffix = if self.processes > 1 {
                format!(".p{p}")
            } else {
                String::new()
            };
            let report = self.out.join(format!("{stem}{suffix}.json"));
            let log = self.out.join(format!("{stem}{suffix}.log"));
            let _ = std::fs::remove_file(&report);
            let log_file = std::fs::File::create(&log)
                .map_err(|e| format!("cannot create {}: {e}", log.display()))?;
            let mut cmd = Command::new(&self.exe);
            cmd.arg("run")
                .arg(&self.pipeline)
                .args(["--mode", &mode.mode])
                .args(["--workers", &workers.to_string()])
                .args([
                    "--warmup",
                    &humantime::format_duration(self.warmup).to_string(),
                ])
                .args([
                    "--duration",
                    &humantime::format_duration(self.duration).to_string(),
                ])
                .args(["--status-every", "0s", "--progress", "never", "--unbounded"])
                .arg("--report")
                .arg(&report);
            if let Some(iv) = &mode.interval {
                cmd.args(["--batch-interval", iv]);
            }
            if let Some(r) = rate {
                cmd.args(["--rate", &r.to_string()]);
            }
            if let Some(secret) = &secret {
                cmd.env(weir_engine::cluster::SECRET_VAR, secret);
            }
            if self.processes > 1 {
                cmd.args(["--processes", &self.processes.to_string()])
                    .args(["--process-id", &p.to_string()])
                    .arg("--hostfile")
                    .arg(&hostfile);
            }
            for s in &self.set {
                cmd.args(["--set", s]);
            }
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(log_file));
            let child = cmd
                .spawn()
                .map_err(|e| format!("cannot start {}: {e}", self.exe.display()))?;
            children.push((child, report, log));
        }
        let deadline = Instant::now() + self.warmup + self.duration + Duration::from_secs(120);
        let mut reports = Vec::new();
        let mut failure = None;
        for (mut child, report, log) in children {
            let status = loop {
                match child.try_wait() {
                    Ok(Some(s)) => break Some(s),
                    Ok(None) if Instant::now() > deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break None;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                    Err(_) => break None,
                }
            };
            let ok = status.is_some_and(|s| s.success() || s.code() == Some(130));
            if !ok && failure.is_none() {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(12).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                failure = Some(format!(
                    "the run `{} ({})` failed{}; its log {} ends:\n{}",
                    mode.label(),
                    workers,
                    status.map_or(" (timed out)".into(), |s| format!(" ({s})")),
                    log.display(),
                    tail.join("\n")
                ));
            }
            if ok {
                reports.push(Report::read(&report)?);
            }
        }
        if let Some(f) = failure {
            return Err(f);
        }
        Row::from_reports(&reports, self.sink.as_deref())
    }

    /// Searches for the highest rate `mode` on `workers` sustains: doubles from `start` until a
    /// rate is not sustainable, then bisects `steps` times between the last sustainable rate and
    /// the first that was not. Returns the sustainable row (if any rate was) and every row run.
    pub fn find_sustainable(
        &mut self,
        mode: &ModeSpec,
        workers: usize,
        start: f64,
        steps: usize,
        mut each: impl FnMut(&Row, &Result<(), String>),
    ) -> Result<(Option<Row>, Vec<Row>), String> {
        let mut tried = Vec::new();
        let (mut good, mut bad): (Option<Row>, Option<f64>) = (None, None);
        let mut rate = start;
        for _ in 0..40 {
            let row = self.run(mode, workers, Some(rate))?;
            let verdict = row.sustainable();
            each(&row, &verdict);
            tried.push(row.clone());
            if verdict.is_ok() {
                good = Some(row);
                rate *= 2.0;
            } else {
                bad = Some(rate);
                break;
            }
            if rate > 1e9 {
                break;
            }
        }
        if let Some(mut hi) = bad {
            for _ in 0..steps {
                let lo = good.as_ref().and_then(|g| g.offered).unwrap_or(hi / 4.0);
                let mid = round_significant((lo * hi).sqrt(), 2);
                if (hi - lo) / hi < 0.05 {
                    break;
                }
                let row = self.run(mode, workers, Some(mid))?;
                let verdict = row.sustainable();
                each(&row, &verdict);
                tried.push(row.clone());
                if verdict.is_ok() {
                    good = Some(row);
                } else {
                    hi = mid;
                }
            }
        }
        Ok((good, tried))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(offered: f64, achieved: f64, backlog: (u64, u64, u64), p99s: (u64, u64)) -> Row {
        let mut first = weir_operators::latency::histogram();
        let mut second = weir_operators::latency::histogram();
        for _ in 0..100 {
            first.record(p99s.0).unwrap();
            second.record(p99s.1).unwrap();
        }
        let mut all = first.clone();
        all.add(&second).unwrap();
        Row {
            label: "x".into(),
            interval: None,
            offered: Some(offered),
            achieved,
            seconds: 10.0,
            backlog_end: backlog.2,
            backlog_halves: (backlog.0, backlog.1),
            processing: all,
            processing_second_half: Some(second),
            event: None,
            held: 0.0,
            peak_rss: None,
        }
    }

    #[test]
    fn sustainable_means_kept_up_with_nothing_growing() {
        assert_eq!(
            row(1e5, 1e5, (10, 10, 5), (1_000, 1_200)).sustainable(),
            Ok(())
        );
        // 100ms of input is the slack.
        assert!(row(1e5, 1e5, (10, 10, 10_000), (1_000, 1_000))
            .kept_up()
            .unwrap());
        let behind = row(1e5, 0.9e5, (10, 10, 5), (1_000, 1_000));
        assert_eq!(behind.kept_up(), Some(false));
        assert!(behind.sustainable().unwrap_err().starts_with("fell behind"));
        let backlog = row(1e5, 1e5, (10, 10, 50_000), (1_000, 1_000));
        assert_eq!(backlog.kept_up(), Some(false));
        let grew = row(1e5, 1e5, (1_000, 30_000, 5), (1_000, 1_000));
        assert!(grew.sustainable().unwrap_err().starts_with("backlog grew"));
        let slower = row(1e5, 1e5, (10, 10, 5), (1_000, 40_000));
        assert!(slower
            .sustainable()
            .unwrap_err()
            .starts_with("p99 latency grew"));
    }

    #[test]
    fn rates_and_modes_parse() {
        assert_eq!(parse_rate("1m").unwrap(), 1e6);
        assert_eq!(parse_rate("50_000").unwrap(), 5e4);
        assert!(parse_rate("0").is_err() && parse_rate("-1k").is_err());
        assert_eq!(short_rate(1_500_000.0), "1.5M");
        assert_eq!(short_rate(20_000.0), "20k");
        let m = parse_modes("micro-batch:1s, continuous").unwrap();
        assert_eq!(m[0].interval(), Some(Duration::from_secs(1)));
        assert!(parse_modes("continuous:1s").is_err());
        assert!(parse_modes("micro-batch:0ms").is_err());
    }
}
