//! The monitor thread of a run: measures throughput and backlog after the warm-up, stops a
//! timed run, and shows how the run is going — status lines when standard error is not a
//! terminal, a live line (or a progress bar, for a bounded run) with indicatif when it is.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use weir_operators::clock::RunClock;
use weir_operators::latency::SinkLatency;
use weir_operators::metrics::ComponentMetrics;
use weir_operators::tap::Tap;

use crate::components::Op;
use crate::options::RunOptions;
use crate::outcome::{Measurement, RunReport};
use crate::plan::{Plan, PortRef};
use crate::spec::Kind;
use crate::summary::{micros, thousands};
use weir_operators::control::RunControl;

/// What the monitor can see of a running pipeline.
pub struct Live {
    /// The plan.
    pub plan: Plan,
    /// Its counters.
    pub metrics: Vec<Arc<ComponentMetrics>>,
    /// Its sinks' histograms.
    pub measured: Vec<Option<(Arc<SinkLatency>, Option<usize>)>>,
    /// The frontier at the sinks (event time, µs; `u64::MAX` when none remains).
    pub frontier: Arc<AtomicU64>,
    /// The run's clock, once the workers have started it.
    pub clock: Arc<OnceLock<RunClock>>,
    /// Whether event time follows the wall clock, so watermark lag means something.
    pub wall_clock_time: bool,
    /// Worker threads per process.
    pub workers: usize,
    /// The run's control: whether it was stopped, or failed.
    pub ctl: RunControl,
    /// The taps the run was built with (see [`crate::live`]).
    pub taps: Vec<(PortRef, Arc<Tap>)>,
    /// Nanoseconds each node's operators were scheduled, summed over workers (kept only
    /// while watched: see `run::busy_logger`).
    pub busy: Option<Arc<[std::sync::atomic::AtomicU64]>>,
    /// The run's report, once it has ended.
    pub ended: OnceLock<Arc<RunReport>>,
}

impl Live {
    fn sources(&self) -> impl Iterator<Item = (&crate::plan::Node, &Arc<ComponentMetrics>)> {
        self.plan
            .nodes
            .iter()
            .zip(&self.metrics)
            .filter(|(n, _)| n.kind == Kind::Source)
    }

    /// Input the sources have taken: events generated, lines read.
    pub fn events(&self) -> u64 {
        self.sources()
            .map(|(n, m)| {
                let s = m.snapshot();
                match n.op {
                    Op::Generator(_) => s.records_out,
                    _ => s.records_in,
                }
            })
            .sum()
    }

    /// The sources' backlog, summed.
    pub fn backlog(&self) -> u64 {
        self.sources().map(|(_, m)| m.snapshot().backlog).sum()
    }

    /// Events a bounded run will take in all, when every source is a bounded generator.
    fn total(&self) -> Option<u64> {
        self.sources()
            .map(|(n, _)| match &n.op {
                Op::Generator(g) => g.events,
                _ => None,
            })
            .sum()
    }

    /// How far the sinks' watermark is behind the wall clock, µs, when event time follows
    /// the wall clock and a watermark has been seen.
    pub fn watermark_lag(&self) -> Option<u64> {
        let f = self.frontier.load(Relaxed);
        match (
            self.wall_clock_time && f != u64::MAX && f > 0,
            self.clock.get(),
        ) {
            (true, Some(clock)) => Some((clock.now_micros() - f as i64).max(0) as u64),
            _ => None,
        }
    }

    /// One line: input, rate, backlog, in flight, held, p99 so far, watermark lag. `compact`
    /// for the live line of a terminal.
    pub fn line(&self, rate: f64, compact: bool) -> String {
        let mut s = format!(
            "{} events, {}/s, backlog {}",
            thousands(self.events()),
            thousands(rate as u64),
            thousands(self.backlog())
        );
        let (mut epochs, mut records, mut held) = (0, 0, 0);
        for (_, m) in self.sources() {
            let snap = m.snapshot();
            epochs = epochs.max(snap.in_flight);
            records = records.max(snap.in_flight_records);
            held += snap.held_micros;
        }
        if compact {
            let _ = write!(s, ", in flight {}", thousands(records));
            if held > 0 {
                let _ = write!(s, ", held {:.1}s", held as f64 / 1e6);
            }
        } else {
            let _ = write!(
                s,
                ", in flight {} records in {epochs} epochs, held {:.1}s",
                thousands(records),
                held as f64 / 1e6
            );
        }
        let mut all = weir_operators::latency::histogram();
        for (l, _) in self.measured.iter().flatten() {
            let _ = all.add(&l.merged().processing);
        }
        if !all.is_empty() {
            let _ = write!(s, ", p99 {}", micros(all.value_at_percentile(99.0)));
        }
        for (n, _) in self.sources() {
            if let Op::Kafka(k) = &n.op {
                let parts = k.status.snapshot();
                let lag: i64 = parts.iter().map(|p| p.lag).sum();
                let _ = write!(s, ", {} lag {}", n.id, thousands(lag.max(0) as u64));
                if !compact && parts.len() > 1 {
                    // Each partition's lag when they are few, else the one furthest behind.
                    let shown: Vec<String> = if parts.len() <= 4 {
                        parts
                            .iter()
                            .map(|p| thousands(p.lag.max(0) as u64))
                            .collect()
                    } else {
                        let p = parts.iter().max_by_key(|p| p.lag).expect("several");
                        vec![format!(
                            "most {} {}",
                            p.partition,
                            thousands(p.lag.max(0) as u64)
                        )]
                    };
                    let _ = write!(s, " ({})", shown.join(" / "));
                }
            }
            if let Op::PubSub(p) = &n.op {
                let u = p
                    .status
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .unacknowledged;
                let _ = write!(s, ", {} unacked {}", n.id, thousands(u));
            }
            if let Op::Kinesis(k) = &n.op {
                // Milliseconds behind the tip: the furthest shard's, and each when few.
                let shards = k.status.snapshot();
                let most = shards.iter().map(|p| p.behind_ms).max().unwrap_or(0);
                let _ = write!(s, ", {} behind {} ms", n.id, thousands(most.max(0) as u64));
                if !compact && (2..=4).contains(&shards.len()) {
                    let each: Vec<String> = shards
                        .iter()
                        .map(|p| thousands(p.behind_ms.max(0) as u64))
                        .collect();
                    let _ = write!(s, " ({})", each.join(" / "));
                }
            }
        }
        if let Some(lag) = self.watermark_lag() {
            let _ = write!(
                s,
                ", {} {}",
                if compact { "wm lag" } else { "watermark lag" },
                micros(lag)
            );
        }
        s
    }
}

/// Runs until `finished` is dropped; returns what was measured after the warm-up.
pub fn monitor(
    live: &Live,
    opts: &RunOptions,
    ctl: &RunControl,
    finished: Receiver<()>,
) -> Measurement {
    let warmup = opts.warmup;
    let end = opts.duration.map(|d| warmup + d);
    let half = opts.duration.map(|d| warmup + d / 2);
    let mut m = Measurement {
        warmup: warmup.as_secs_f64(),
        ..Measurement::default()
    };
    let mut at_warmup: Option<(Duration, u64)> = None;
    let mut ended = false;
    let bar = opts.progress.then(|| progress_bar(live.total()));
    let tick = Duration::from_millis(10);
    let mut next_status = opts.status_every;
    let mut next_bar = Duration::ZERO;
    // For the rate shown: input taken by the previous update, and when.
    let mut last = (Duration::ZERO, 0u64);
    let finish = |m: &mut Measurement, at: Option<(Duration, u64)>, t: Duration| {
        if let Some((t0, e0)) = at {
            m.seconds = (t - t0).as_secs_f64();
            m.events = live.events().saturating_sub(e0);
        }
    };
    while let Err(RecvTimeoutError::Timeout) = finished.recv_timeout(tick) {
        // Nothing to time until the workers have started the clock.
        let Some(clock) = live.clock.get() else {
            continue;
        };
        let t = clock.instant.elapsed();
        if at_warmup.is_none() && t >= warmup {
            at_warmup = Some((t, live.events()));
        }
        if !ended && opts.stop_after.is_some_and(|n| live.events() >= n) {
            finish(&mut m, at_warmup, t);
            ended = true;
            ctl.end_of_duration();
        }
        if !ended && at_warmup.is_some() {
            let b = live.backlog();
            if half.is_some_and(|h| t >= h) {
                m.backlog_second_half = m.backlog_second_half.max(b);
            } else {
                m.backlog_first_half = m.backlog_first_half.max(b);
            }
            m.backlog_end = b;
            if end.is_some_and(|e| t >= e) {
                finish(&mut m, at_warmup, t);
                ended = true;
                ctl.end_of_duration();
            }
        }
        let rate = |last: &mut (Duration, u64)| {
            let e = live.events();
            let r = (e - last.1.min(e)) as f64 / (t - last.0).as_secs_f64().max(1e-9);
            *last = (t, e);
            r
        };
        if let Some(bar) = &bar {
            if t >= next_bar {
                next_bar = t + Duration::from_millis(250);
                if t >= last.0 + Duration::from_secs(1) || last.0.is_zero() {
                    let r = rate(&mut last);
                    bar.set_message(live.line(r, true));
                }
                bar.set_position(live.events());
            }
        } else if let Some(every) = opts.status_every {
            if next_status.is_some_and(|n| t >= n) {
                next_status = Some(t + every);
                let r = rate(&mut last);
                eprint!("{}", status(live, t, r));
            }
        }
    }
    if let (false, Some(clock)) = (ended, live.clock.get()) {
        finish(&mut m, at_warmup, clock.instant.elapsed());
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    m
}

fn progress_bar(total: Option<u64>) -> ProgressBar {
    let target = ProgressDrawTarget::stderr_with_hz(4);
    match total {
        Some(n) => ProgressBar::with_draw_target(Some(n), target).with_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:24}] {percent:>3}% {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        ),
        None => ProgressBar::with_draw_target(None, target).with_style(
            ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                .expect("valid template"),
        ),
    }
}

/// The status lines printed every `--status-every` when standard error is not a terminal: one
/// for the sources, then one per measured sink.
pub fn status(live: &Live, t: Duration, rate: f64) -> String {
    let secs = t.as_secs_f64().max(1e-9);
    let mut out = format!("weir: {secs:>6.1}s  sources: {}\n", live.line(rate, false));
    out.push_str(&crate::summary::status(
        &live.plan,
        &live.metrics,
        &live.measured,
        t,
    ));
    out
}
