//! The run summary printed at the end of `weir run`: per component, records in and out, bad
//! records, dead-lettered and late records, state and throughput; then per sink, its latency
//! percentiles. Also the status lines printed while a long run lasts.

use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use weir_operators::latency::SinkLatency;
use weir_operators::metrics::ComponentMetrics;

use crate::outcome::RunReport;
use crate::plan::Plan;
use crate::spec::Kind;

/// The percentiles shown, with their labels.
pub const PERCENTILES: [(&str, f64); 4] =
    [("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9)];

/// A latency in microseconds, in a readable unit.
pub fn micros(us: u64) -> String {
    if us < 1_000 {
        format!("{us}µs")
    } else if us < 1_000_000 {
        format!("{:.2}ms", us as f64 / 1e3)
    } else {
        format!("{:.2}s", us as f64 / 1e6)
    }
}

/// The percentile cells of a histogram, then its max (dashes when empty).
fn latency_cells(h: &Histogram<u64>) -> Vec<String> {
    if h.is_empty() {
        return vec!["-".into(); PERCENTILES.len() + 1];
    }
    let mut cells: Vec<String> = PERCENTILES
        .iter()
        .map(|(_, q)| micros(h.value_at_percentile(*q)))
        .collect();
    cells.push(micros(h.max()));
    cells
}

/// One status line per measured sink, for a run still going after `t`.
pub fn status(
    plan: &Plan,
    metrics: &[Arc<ComponentMetrics>],
    measured: &[Option<(Arc<SinkLatency>, Option<usize>)>],
    t: Duration,
) -> String {
    let mut out = String::new();
    let secs = t.as_secs_f64().max(1e-9);
    for ((n, m), l) in plan.nodes.iter().zip(metrics).zip(measured) {
        let Some((l, _)) = l else { continue };
        let records = m.snapshot().records_in;
        let h = l.merged();
        let cells = latency_cells(&h.processing);
        let _ = writeln!(
            out,
            "weir: {:>6.1}s  sink {}: {} records, {}/s; latency p50 {} p90 {} p99 {} p99.9 {} max {}",
            secs,
            n.id,
            thousands(records),
            thousands((records as f64 / secs) as u64),
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4]
        );
    }
    out
}

/// Formats a count with thousands separators.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The summary as text.
pub fn render(r: &RunReport) -> String {
    let secs = r.elapsed.as_secs_f64();
    let mut out = String::new();
    let how = match (&r.failure, r.stopped) {
        (Some(_), _) => "failed after",
        (None, true) => "stopped after",
        (None, false) => "finished in",
    };
    let mode = match r.mode {
        weir_operators::epochs::Mode::Continuous => "continuous".to_string(),
        weir_operators::epochs::Mode::MicroBatch(iv) => {
            format!("micro-batch every {}", humantime::format_duration(iv))
        }
    };
    let procs = if r.processes > 1 {
        format!(" (process {} of {})", r.process, r.processes)
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "weir: pipeline `{}` {how} {secs:.3}s on {} worker{}{procs}, {mode}",
        r.pipeline,
        r.workers,
        if r.workers == 1 { "" } else { "s" }
    );
    let rows: Vec<[String; 9]> = r
        .components
        .iter()
        .map(|c| {
            let m = c.metrics;
            let rate = if secs > 0.0 {
                (m.records_out as f64 / secs) as u64
            } else {
                0
            };
            let d = crate::components::descriptor(c.kind, &c.ty);
            [
                format!("{}.{}", c.kind.section(), c.id),
                c.ty.clone(),
                if d.is_some_and(|d| d.generates) {
                    "-".into()
                } else {
                    thousands(m.records_in)
                },
                thousands(m.records_out),
                thousands(m.errors),
                thousands(m.dead_lettered),
                if d.is_some_and(|d| d.stateful) {
                    thousands(m.late)
                } else {
                    "-".into()
                },
                if d.is_some_and(|d| d.stateful) {
                    thousands(m.max_state)
                } else {
                    "-".into()
                },
                thousands(rate),
            ]
        })
        .collect();
    let header = [
        "component",
        "type",
        "in",
        "out",
        "errors",
        "dead-lettered",
        "late",
        "max-state",
        "out/s",
    ]
    .map(String::from);
    let rows: Vec<Vec<String>> = rows.into_iter().map(Vec::from).collect();
    out.push_str(&aligned(&header, &rows, 2, "  ", " "));
    out.push_str(&latency_table(r));
    if r.processes > 1 && r.process > 0 {
        let _ = writeln!(
            out,
            "weir: process 0 writes every sink's output and prints the latency of all processes"
        );
    }
    out.push_str(&flow_lines(r));
    out.push_str(&checkpoint_lines(r));
    out.push_str(&partition_lines(r));
    out.push_str(&shard_lines(r));
    for c in r.components.iter() {
        if let Some(p) = &c.pubsub {
            let _ = writeln!(
                out,
                "weir: {}.{}: {} messages received, {} acknowledged, {} not acknowledged (returned for redelivery){}",
                c.kind.section(),
                c.id,
                thousands(p.received),
                thousands(p.acknowledged),
                thousands(p.unacknowledged),
                if p.ordered { "; the subscription orders by ordering key" } else { "" }
            );
        }
    }
    for c in r.components.iter().filter(|c| c.metrics.blank_lines > 0) {
        let n = c.metrics.blank_lines;
        let _ = writeln!(
            out,
            "weir: {}.{}: {} blank line{} skipped (not records)",
            c.kind.section(),
            c.id,
            thousands(n),
            if n == 1 { "" } else { "s" }
        );
    }
    for c in r
        .components
        .iter()
        .filter(|c| c.metrics.max_state_bytes > 0)
    {
        let m = c.metrics;
        let _ = writeln!(
            out,
            "weir: {}.{}: at most {} bytes of state ({} per entry at the peak of {} entries)",
            c.kind.section(),
            c.id,
            thousands(m.max_state_bytes),
            thousands(m.max_state_bytes / m.max_state.max(1)),
            thousands(m.max_state)
        );
    }
    for c in r.components.iter().filter(|c| c.metrics.late > 0) {
        let m = c.metrics;
        let dead = m.late - m.late_dropped - m.late_side_output - m.late_updated;
        let parts: Vec<String> = [
            (m.late_dropped, "dropped"),
            (m.late_side_output, "sent to the late output"),
            (m.late_updated, "applied as updates"),
            (dead, "dead-lettered"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{} {what}", thousands(*n)))
        .collect();
        let _ = writeln!(
            out,
            "weir: {}.{}: {} late record{}: {}",
            c.kind.section(),
            c.id,
            thousands(m.late),
            if m.late == 1 { "" } else { "s" },
            parts.join(", ")
        );
    }
    if let Some(path) = &r.dead_letter_file {
        let (mut bad, mut late) = (0, 0);
        for c in r.components.iter().filter(|c| c.kind != Kind::Sink) {
            // Late records dropped, side-output or applied as updates are not in the file.
            let m = &c.metrics;
            let late_dead = m
                .late
                .saturating_sub(m.late_dropped + m.late_side_output + m.late_updated)
                .min(m.dead_lettered);
            bad += m.dead_lettered - late_dead;
            late += late_dead;
        }
        let plural = |n: u64| if n == 1 { "" } else { "s" };
        let what = match (bad, late) {
            (b, 0) => format!("{} bad record{}", thousands(b), plural(b)),
            (0, l) => format!("{} late record{}", thousands(l), plural(l)),
            (b, l) => format!(
                "{} bad record{} and {} late record{}",
                thousands(b),
                plural(b),
                thousands(l),
                plural(l)
            ),
        };
        let _ = writeln!(
            out,
            "weir: {what} written to {} (with the reason for each)",
            path.display()
        );
    }
    for w in &r.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    if let Some(f) = &r.failure {
        let _ = writeln!(out, "error: {f}");
    }
    out
}

/// Kafka sources: each partition's offset, consumer lag, committed offset and watermark, and
/// the records a restart read again and skipped.
pub fn partition_lines(r: &RunReport) -> String {
    let mut out = String::new();
    for c in r.components.iter().filter(|c| !c.partitions.is_empty()) {
        let lag: i64 = c.partitions.iter().map(|p| p.lag).sum();
        let _ = writeln!(
            out,
            "weir: {}.{}: {} partition{}, consumer lag {}",
            c.kind.section(),
            c.id,
            c.partitions.len(),
            if c.partitions.len() == 1 { "" } else { "s" },
            thousands(lag.max(0) as u64)
        );
        let rows: Vec<Vec<String>> = c
            .partitions
            .iter()
            .map(|p| {
                vec![
                    p.partition.clone(),
                    thousands(p.offset.max(0) as u64),
                    thousands(p.lag.max(0) as u64),
                    thousands(p.committed.max(0) as u64),
                    if p.watermark == i64::MIN {
                        "-".to_string()
                    } else {
                        weir_operators::time::format_rfc3339(p.watermark)
                    },
                ]
            })
            .collect();
        let header =
            ["partition", "next offset", "lag", "committed", "watermark"].map(String::from);
        out.push_str(&aligned(&header, &rows, 1, "    ", " "));
        replayed_line(&mut out, c);
    }
    out
}

/// How many records a source read again after a restart and skipped, if any.
fn replayed_line(out: &mut String, c: &crate::outcome::ComponentReport) {
    if c.metrics.replayed > 0 {
        let _ = writeln!(
            out,
            "weir: {}.{}: {} records read again after a restart were skipped: their outputs had been written",
            c.kind.section(),
            c.id,
            thousands(c.metrics.replayed)
        );
    }
}

/// Kinesis sources: each shard's state, records read, lag (milliseconds behind its tip),
/// watermark and last sequence number.
pub fn shard_lines(r: &RunReport) -> String {
    let mut out = String::new();
    for c in r.components.iter().filter(|c| !c.shards.is_empty()) {
        let behind = c.shards.iter().map(|s| s.behind_ms).max().unwrap_or(0);
        let _ = writeln!(
            out,
            "weir: {}.{}: {} shard{}, most behind its tip {} ms",
            c.kind.section(),
            c.id,
            c.shards.len(),
            if c.shards.len() == 1 { "" } else { "s" },
            thousands(behind.max(0) as u64)
        );
        let rows: Vec<Vec<String>> = c
            .shards
            .iter()
            .map(|s| {
                vec![
                    s.shard.clone(),
                    s.state.clone(),
                    thousands(s.records),
                    thousands(s.behind_ms.max(0) as u64),
                    if s.watermark == i64::MIN {
                        "-".to_string()
                    } else {
                        weir_operators::time::format_rfc3339(s.watermark)
                    },
                    s.last.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        let header = [
            "shard",
            "state",
            "records",
            "behind ms",
            "watermark",
            "last sequence number",
        ]
        .map(String::from);
        out.push_str(&aligned(&header, &rows, 1, "    ", " "));
        replayed_line(&mut out, c);
    }
    out
}

/// The checkpoints taken and each sink's delivery guarantee.
pub fn checkpoint_lines(r: &RunReport) -> String {
    let Some(c) = &r.checkpoints else {
        return String::new();
    };
    let mut out = format!(
        "weir: checkpoints: {} taken every {} ms into {}",
        c.taken, c.interval_ms, c.dir
    );
    if let Some(from) = c.resumed_from {
        let _ = write!(out, " (resumed from checkpoint {from})");
    }
    if let Some(last) = c.last {
        let _ = write!(
            out,
            "; last {last}, {:.1} kB; duration median {:.1} ms, max {:.1} ms; alignment median {:.1} ms, max {:.1} ms",
            c.last_bytes as f64 / 1e3,
            c.duration_ms.0,
            c.duration_ms.1,
            c.alignment_ms.0,
            c.alignment_ms.1
        );
    }
    out.push('\n');
    if !c.sinks.is_empty() {
        let sinks: Vec<String> = c.sinks.iter().map(|(s, g)| format!("{s} {g}")).collect();
        let _ = writeln!(out, "weir: delivery: {}", sinks.join(", "));
    }
    out
}

/// Backpressure, throughput against the offered rate, and memory.
pub fn flow_lines(r: &RunReport) -> String {
    let mut out = String::new();
    let (mut held, mut epochs, mut records, mut backlog) = (0u64, 0u64, 0u64, 0u64);
    for c in r.components.iter().filter(|c| c.kind == Kind::Source) {
        held += c.metrics.held_micros;
        epochs = epochs.max(c.metrics.max_in_flight);
        records = records.max(c.metrics.max_in_flight_records);
        backlog += c.metrics.backlog;
    }
    let limit = if r.max_in_flight == 0 {
        "no limit".to_string()
    } else {
        format!("limit {}", thousands(r.max_in_flight as u64))
    };
    let _ = write!(
        out,
        "weir: backpressure: in flight per source and worker at most {} records, {epochs} epoch{} ({limit}); sources held back {:.2}s (summed over workers)",
        thousands(records),
        if epochs == 1 { "" } else { "s" },
        held as f64 / 1e6
    );
    if let Some(rss) = r.peak_rss {
        let _ = write!(out, "; peak memory {:.1} MB", rss as f64 / 1e6);
    }
    out.push('\n');
    let m = &r.measurement;
    if let Some(offered) = r.offered_rate {
        let mut what = format!(
            "weir: offered {}/s, achieved {}/s",
            thousands(offered as u64),
            thousands(m.rate() as u64)
        );
        if m.warmup > 0.0 {
            let _ = write!(
                what,
                " (measured {:.1}s after a {:.1}s warm-up)",
                m.seconds, m.warmup
            );
        }
        let _ = write!(
            what,
            "; backlog {} events",
            thousands(m.backlog_end.max(backlog))
        );
        if let Some(k) = r.kept_up() {
            what.push_str(if k {
                "; kept up"
            } else {
                "; FELL BEHIND (latency counts the wait)"
            });
        }
        if r.processes > 1 {
            what.push_str(" (this process's sources)");
        }
        let _ = writeln!(out, "{what}");
    }
    out
}

/// The latency table: per sink and kind of latency, records, records/s and percentiles.
pub fn latency_table(r: &RunReport) -> String {
    let secs = r.elapsed.as_secs_f64().max(1e-9);
    let mut rows: Vec<Vec<String>> = Vec::new();
    for s in &r.sinks {
        let mut kinds = vec![("processing", &s.latency.processing)];
        if s.event_time {
            kinds.push(("event-time", &s.latency.event));
        }
        for (k, h) in kinds {
            let mut row = vec![
                format!("sinks.{}", s.id),
                k.to_string(),
                thousands(s.records),
                thousands((s.records as f64 / secs) as u64),
            ];
            row.extend(latency_cells(h));
            rows.push(row);
        }
    }
    if rows.is_empty() {
        return String::new();
    }
    let mut header: Vec<String> = ["sink", "latency", "records", "records/s"]
        .map(String::from)
        .to_vec();
    header.extend(PERCENTILES.iter().map(|(l, _)| l.to_string()));
    header.push("max".into());
    aligned(&header, &rows, 2, "  ", " ")
}

/// Aligned text columns, a line per row after the header: the first `left` columns
/// left-aligned, the rest right-aligned (widths in characters), each line starting with
/// `indent` and its cells separated by `gap`.
pub fn aligned(
    header: &[String],
    rows: &[Vec<String>],
    left: usize,
    indent: &str,
    gap: &str,
) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for cells in std::iter::once(header).chain(rows.iter().map(Vec::as_slice)) {
        let mut line = String::from(indent);
        for (k, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if k > 0 {
                line.push_str(gap);
            }
            let pad = " ".repeat(w - cell.chars().count());
            if k < left {
                let _ = write!(line, "{cell}{pad}");
            } else {
                let _ = write!(line, "{pad}{cell}");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn separators() {
        assert_eq!(super::thousands(0), "0");
        assert_eq!(super::thousands(999), "999");
        assert_eq!(super::thousands(1000), "1,000");
        assert_eq!(super::thousands(1234567), "1,234,567");
    }
}
