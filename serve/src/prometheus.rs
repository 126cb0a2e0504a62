//! `/metrics`: a run's counters, gauges and latency histograms in the Prometheus (OpenMetrics)
//! text format, through the `prometheus-client` crate. Every value is read from the run when
//! Prometheus scrapes (a [`Collector`]), so serving metrics costs the run nothing between
//! scrapes.
//!
//! Counters per component: `weir_records_in_total`, `weir_records_out_total`,
//! `weir_errors_total`, `weir_dead_lettered_total`, `weir_late_records_total`,
//! `weir_held_seconds_total`, `weir_busy_seconds_total` (labels `component`, `kind`, `type`). Gauges: `weir_backlog_records`,
//! `weir_in_flight_records`, `weir_state_entries`, `weir_state_bytes`, `weir_watermark_seconds`
//! (per port), `weir_watermark_lag_seconds`, `weir_kafka_lag_records` (per partition). Latency:
//! `weir_sink_latency_seconds` histograms (labels `sink`, `time` = processing or event), and
//! `weir_sink_latency_quantile_seconds` gauges for p50, p99 and the maximum.

use std::borrow::Cow;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use weir_engine::live::Live;
use weir_operators::metrics::MetricsSnapshot;

/// The histogram buckets' upper bounds, µs: 1-2.5-5 steps from 10 µs to 100 s.
const BUCKETS_US: &[u64] = &[
    10,
    25,
    50,
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
];

/// Reads a run at each scrape.
struct RunCollector(Arc<Live>);

impl std::fmt::Debug for RunCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RunCollector")
    }
}

type Labels = Vec<(Cow<'static, str>, String)>;

/// One metric family: `rows` of a counter or a gauge (none: the family is left out, for a
/// gauge; a counter is always shown). A single row without labels is written bare.
fn family(
    enc: &mut DescriptorEncoder,
    kind: MetricType,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    rows: &[(Labels, f64)],
) -> Result<(), std::fmt::Error> {
    if rows.is_empty() && matches!(kind, MetricType::Gauge) {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, unit, kind)?;
    let value = |m: prometheus_client::encoding::MetricEncoder, v: f64| match kind {
        MetricType::Counter => ConstCounter::new(v).encode(m),
        _ => ConstGauge::new(v).encode(m),
    };
    if let [(labels, v)] = rows {
        if labels.is_empty() {
            return value(m, *v);
        }
    }
    for (labels, v) in rows {
        value(m.encode_family(labels)?, *v)?;
    }
    Ok(())
}

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    rows: &[(Labels, f64)],
) -> Result<(), std::fmt::Error> {
    family(enc, MetricType::Counter, name, help, unit, rows)
}

fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    rows: &[(Labels, f64)],
) -> Result<(), std::fmt::Error> {
    family(enc, MetricType::Gauge, name, help, unit, rows)
}

impl Collector for RunCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let live = &self.0;
        let report = live.report();
        let plan = &live.plan;
        let labels = |i: usize| -> Labels {
            let n = &plan.nodes[i];
            vec![
                ("component".into(), n.id.clone()),
                ("kind".into(), n.kind.singular().to_string()),
                ("type".into(), n.ty.clone()),
            ]
        };
        let per = |f: fn(&MetricsSnapshot) -> f64| -> Vec<(Labels, f64)> {
            report
                .components
                .iter()
                .enumerate()
                .map(|(i, c)| (labels(i), f(&c.metrics)))
                .collect()
        };
        let sources = |f: fn(&MetricsSnapshot) -> f64| -> Vec<(Labels, f64)> {
            report
                .components
                .iter()
                .enumerate()
                .filter(|(_, c)| c.kind == weir_engine::spec::Kind::Source)
                .map(|(i, c)| (labels(i), f(&c.metrics)))
                .collect()
        };
        let stateful = |f: fn(&MetricsSnapshot) -> f64| -> Vec<(Labels, f64)> {
            report
                .components
                .iter()
                .enumerate()
                .filter(|(i, _)| {
                    weir_engine::components::descriptor(plan.nodes[*i].kind, &plan.nodes[*i].ty)
                        .is_some_and(|d| d.stateful)
                })
                .map(|(i, c)| (labels(i), f(&c.metrics)))
                .collect()
        };
        counter(
            &mut enc,
            "weir_records_in",
            "Records that entered the component (sources: records read).",
            None,
            &per(|m| m.records_in as f64),
        )?;
        counter(
            &mut enc,
            "weir_records_out",
            "Records the component emitted on its main output.",
            None,
            &per(|m| m.records_out as f64),
        )?;
        counter(
            &mut enc,
            "weir_errors",
            "Bad records (malformed, missing timestamp, wrong type, late and dead-lettered).",
            None,
            &per(|m| m.errors as f64),
        )?;
        counter(
            &mut enc,
            "weir_dead_lettered",
            "Bad records sent to a dead-letter output.",
            None,
            &per(|m| m.dead_lettered as f64),
        )?;
        counter(
            &mut enc,
            "weir_late_records",
            "Records behind their window's or join's watermark.",
            None,
            &per(|m| m.late as f64),
        )?;
        counter(
            &mut enc,
            "weir_held",
            "Time sources were held back by backpressure, summed over workers.",
            Some(&Unit::Seconds),
            &sources(|m| m.held_micros as f64 / 1e6),
        )?;
        if let Some(busy) = &live.busy {
            let rows: Vec<(Labels, f64)> = busy
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    let ns = b.load(std::sync::atomic::Ordering::Relaxed);
                    (labels(i), ns as f64 / 1e9)
                })
                .collect();
            counter(
                &mut enc,
                "weir_busy",
                "Time the component's operators were scheduled, summed over workers (a chain of filters and maps counts at its last component).",
                Some(&Unit::Seconds),
                &rows,
            )?;
        }
        gauge(
            &mut enc,
            "weir_backlog_records",
            "Sources: input due but not yet admitted.",
            None,
            &sources(|m| m.backlog as f64),
        )?;
        gauge(
            &mut enc,
            "weir_in_flight_records",
            "Sources: records sent and not yet complete at the sinks.",
            None,
            &sources(|m| m.in_flight_records as f64),
        )?;
        gauge(
            &mut enc,
            "weir_state_entries",
            "Entries of event-time state held (window groups, join records).",
            None,
            &stateful(|m| m.state as f64),
        )?;
        gauge(
            &mut enc,
            "weir_state",
            "Bytes of event-time state held.",
            Some(&Unit::Bytes),
            &stateful(|m| m.state_bytes as f64),
        )?;
        let watermarks: Vec<(Labels, f64)> = live
            .taps
            .iter()
            .filter_map(|(_, t)| {
                let f = t.frontier().filter(|f| *f > 0)?;
                Some((vec![("port".into(), t.name().to_string())], f as f64 / 1e6))
            })
            .collect();
        gauge(
            &mut enc,
            "weir_watermark",
            "Each output port's watermark: event time every record still to come is at or past (Unix seconds).",
            Some(&Unit::Seconds),
            &watermarks,
        )?;
        if let Some(lag) = live.watermark_lag() {
            gauge(
                &mut enc,
                "weir_watermark_lag",
                "How far the sinks' watermark is behind the wall clock.",
                Some(&Unit::Seconds),
                &[(Vec::new(), lag as f64 / 1e6)],
            )?;
        }
        let lags: Vec<(Labels, f64)> = report
            .components
            .iter()
            .flat_map(|c| {
                c.partitions.iter().map(|p| {
                    (
                        vec![
                            ("component".into(), c.id.clone()),
                            ("partition".into(), p.partition.clone()),
                        ],
                        p.lag.max(0) as f64,
                    )
                })
            })
            .collect();
        gauge(
            &mut enc,
            "weir_kafka_lag_records",
            "Kafka sources: messages of each partition not yet read.",
            None,
            &lags,
        )?;
        if report.sinks.is_empty() {
            return Ok(());
        }
        let mut hists = Vec::new();
        for s in &report.sinks {
            hists.push((s.id.as_str(), "processing", &s.latency.processing));
            if s.event_time {
                hists.push((s.id.as_str(), "event", &s.latency.event));
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "weir_sink_latency",
                "Latency of the records each sink wrote: processing time (from ingest) or event time (from a window's end).",
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?;
            for (sink, time, h) in &hists {
                let labels: Labels = vec![
                    ("sink".into(), sink.to_string()),
                    ("time".into(), time.to_string()),
                ];
                // Each bucket's own count: the encoder accumulates them.
                let mut below = 0;
                let mut buckets: Vec<(f64, u64)> = Vec::with_capacity(BUCKETS_US.len() + 1);
                for &le in BUCKETS_US {
                    let upto = h.count_between(0, le);
                    buckets.push((le as f64 / 1e6, upto - below));
                    below = upto;
                }
                buckets.push((f64::INFINITY, h.len() - below));
                let sum = h.mean() * h.len() as f64 / 1e6;
                m.encode_family(&labels)?.encode_histogram::<Labels>(
                    sum,
                    h.len(),
                    &buckets,
                    None,
                )?;
            }
        }
        let mut rows = Vec::new();
        for (sink, time, h) in &hists {
            if h.is_empty() {
                continue;
            }
            for (q, v) in [
                ("0.5", h.value_at_quantile(0.5)),
                ("0.99", h.value_at_quantile(0.99)),
                ("1", h.max()),
            ] {
                rows.push((
                    vec![
                        ("sink".into(), sink.to_string()),
                        ("time".into(), time.to_string()),
                        ("quantile".into(), q.to_string()),
                    ],
                    v as f64 / 1e6,
                ));
            }
        }
        gauge(
            &mut enc,
            "weir_sink_latency_quantile",
            "Latency quantiles since the start of the run (p50, p99, and the maximum as quantile 1).",
            Some(&Unit::Seconds),
            &rows,
        )
    }
}

/// The text a scrape of `/metrics` returns.
pub fn scrape(live: &Arc<Live>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(RunCollector(Arc::clone(live))));
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}
