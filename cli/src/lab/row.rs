//! One configuration's results (a row of the table, a curve of the plot) and the table.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

use weir_engine::report::Report;
use weir_engine::run::{kept_up, slack};
use weir_engine::summary::{micros, thousands, PERCENTILES};

use super::config::short_rate;

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

pub(crate) fn add(into: &mut Histogram<u64>, h: &Histogram<u64>) {
    // Every histogram has the same bounds; a value beyond them cannot occur.
    let _ = into.add(h);
}

/// Whether `samples` latencies can say what percentile `q` is: at least 10 beyond it (p99
/// takes 1,000 samples, p99.9 10,000), so one outlier does not make the figure.
pub fn supported(samples: u64, q: f64) -> bool {
    samples as f64 * (1.0 - q / 100.0) >= 10.0 - 1e-9
}

/// The comparison table: per configuration, the rates, whether it kept up, and per latency
/// kind its sample count (`n`), the percentiles its samples support (see [`supported`];
/// others `-`) and the maximum.
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
        header.push(format!("{k} n"));
        for (p, _) in PERCENTILES {
            header.push(format!("{k} {p}"));
        }
        header.push(format!("{k} max"));
    }
    let cells = |h: Option<&Histogram<u64>>| -> Vec<String> {
        match h.filter(|h| !h.is_empty()) {
            None => vec!["-".into(); PERCENTILES.len() + 2],
            Some(h) => std::iter::once(thousands(h.len()))
                .chain(
                    PERCENTILES
                        .iter()
                        .map(|(_, q)| match supported(h.len(), *q) {
                            true => micros(h.value_at_percentile(*q)),
                            false => "-".into(),
                        }),
                )
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
