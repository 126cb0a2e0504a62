//! The run report written by `weir run --report FILE`: the run's configuration, every
//! component's counters, and per sink its latency percentiles and full histograms.
//!
//! Histograms are stored in the HDR histogram V2 format (deflate-compressed, then base64), the
//! format other HDR tools read, so two reports can be compared later without loss.

use std::path::Path;

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use weir_operators::epochs::Mode;
use weir_operators::metrics::MetricsSnapshot;

use crate::outcome::{Measurement, RunReport};

fn one() -> usize {
    1
}
use crate::summary::PERCENTILES;

/// A run report.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// Version of the weir that ran.
    pub weir_version: String,
    /// The pipeline's name.
    pub pipeline: String,
    /// The pipeline file.
    pub file: String,
    /// `--set` overrides, as given.
    pub overrides: Vec<String>,
    /// "continuous" or "micro-batch".
    pub mode: String,
    /// The micro-batch interval in milliseconds (micro-batch mode only).
    pub batch_interval_ms: Option<f64>,
    /// Worker threads per process.
    pub workers: usize,
    /// Processes in the run.
    #[serde(default = "one")]
    pub processes: usize,
    /// The process that wrote this report.
    #[serde(default)]
    pub process: usize,
    /// The rate offered by open-loop generators, events/s (over all processes).
    #[serde(default)]
    pub offered_rate: Option<f64>,
    /// Throughput and backlog after the warm-up (this process's sources).
    #[serde(default)]
    pub measurement: Measurement,
    /// Whether this process's sources kept up with their share of the offered rate (see
    /// `weir compare`), when a generator offered one.
    #[serde(default)]
    pub kept_up: Option<bool>,
    /// Backpressure: records each source could have in flight per worker (0: no limit).
    #[serde(default)]
    pub max_in_flight: usize,
    /// Peak resident memory of the process, bytes.
    #[serde(default)]
    pub peak_rss_bytes: Option<u64>,
    /// When the run started (RFC 3339, UTC).
    pub started: String,
    /// How long it ran, in seconds.
    pub elapsed_secs: f64,
    /// Whether it was stopped early.
    pub stopped: bool,
    /// Why it failed, if it did.
    pub failure: Option<String>,
    /// What it warned of (a source with many bad records).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Per component, in plan order.
    pub components: Vec<ComponentEntry>,
    /// Per user-declared sink.
    pub sinks: Vec<SinkEntry>,
    /// With checkpoints: the checkpoints taken and each sink's delivery guarantee.
    #[serde(default)]
    pub checkpoints: Option<crate::outcome::CheckpointSummary>,
}

/// One component's counters.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ComponentEntry {
    /// `section.id`.
    pub component: String,
    /// Its type.
    #[serde(rename = "type")]
    pub ty: String,
    /// Its counters.
    #[serde(flatten)]
    pub metrics: MetricsSnapshot,
    /// Kafka sources: each partition's next offset, consumer lag, committed offset and
    /// watermark.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<weir_operators::kafka::PartitionStatus>,
    /// Kinesis sources: each shard's state, records read, last sequence number, milliseconds
    /// behind its tip and watermark.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<weir_cloud::kinesis::source::ShardStatus>,
    /// Pub/Sub sources: messages received, acknowledged, and not acknowledged when the run
    /// ended (returned for redelivery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pubsub: Option<weir_cloud::pubsub::source::PubSubStatus>,
}

/// One sink's latencies.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SinkEntry {
    /// The sink's id.
    pub sink: String,
    /// Records received.
    pub records: u64,
    /// Records per second over the run.
    pub records_per_sec: f64,
    /// Processing-time latency.
    pub processing_latency: LatencyEntry,
    /// Event-time latency of window results, when measured.
    pub event_time_latency: Option<LatencyEntry>,
    /// Processing-time latency of the records written in the second half of the measurement.
    #[serde(default)]
    pub processing_latency_second_half: Option<LatencyEntry>,
}

/// One latency histogram: summary values in microseconds, and the histogram itself.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LatencyEntry {
    /// Values recorded.
    pub count: u64,
    /// Mean, µs.
    pub mean_us: f64,
    /// Percentiles (p50, p90, p99, p99.9), µs.
    pub percentiles_us: Vec<(String, u64)>,
    /// Maximum, µs.
    pub max_us: u64,
    /// The histogram: HDR V2 deflate format, base64.
    pub histogram: String,
}

impl LatencyEntry {
    /// Summarizes and encodes `h`.
    pub fn new(h: &Histogram<u64>) -> Result<LatencyEntry, String> {
        let mut buf = Vec::new();
        V2DeflateSerializer::new()
            .serialize(h, &mut buf)
            .map_err(|e| format!("cannot encode a histogram: {e:?}"))?;
        Ok(LatencyEntry {
            count: h.len(),
            mean_us: if h.is_empty() { 0.0 } else { h.mean() },
            percentiles_us: PERCENTILES
                .iter()
                .map(|(l, q)| {
                    (
                        l.to_string(),
                        if h.is_empty() {
                            0
                        } else {
                            h.value_at_percentile(*q)
                        },
                    )
                })
                .collect(),
            max_us: h.max(),
            histogram: base64::engine::general_purpose::STANDARD.encode(&buf),
        })
    }

    /// Decodes the stored histogram.
    pub fn decode(&self) -> Result<Histogram<u64>, String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&self.histogram)
            .map_err(|e| format!("the histogram is not base64: {e}"))?;
        Deserializer::new()
            .deserialize(&mut std::io::Cursor::new(bytes))
            .map_err(|e| format!("the histogram cannot be decoded: {e:?}"))
    }
}

impl Report {
    /// The report of a finished run of `file`.
    pub fn new(r: &RunReport, file: &str, overrides: &[String]) -> Result<Report, String> {
        let secs = r.elapsed.as_secs_f64();
        let sinks = r
            .sinks
            .iter()
            .map(|s| {
                Ok(SinkEntry {
                    sink: s.id.clone(),
                    records: s.records,
                    records_per_sec: if secs > 0.0 {
                        s.records as f64 / secs
                    } else {
                        0.0
                    },
                    processing_latency: LatencyEntry::new(&s.latency.processing)?,
                    event_time_latency: if s.event_time {
                        Some(LatencyEntry::new(&s.latency.event)?)
                    } else {
                        None
                    },
                    processing_latency_second_half: Some(LatencyEntry::new(
                        &s.second_half.processing,
                    )?),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Report {
            weir_version: env!("CARGO_PKG_VERSION").into(),
            pipeline: r.pipeline.clone(),
            file: file.into(),
            overrides: overrides.to_vec(),
            mode: r.mode.name().into(),
            batch_interval_ms: match r.mode {
                Mode::Continuous => None,
                Mode::MicroBatch(iv) => Some(iv.as_secs_f64() * 1e3),
            },
            workers: r.workers,
            processes: r.processes,
            process: r.process,
            offered_rate: r.offered_rate,
            measurement: r.measurement,
            kept_up: r.kept_up(),
            max_in_flight: r.max_in_flight,
            peak_rss_bytes: r.peak_rss,
            started: weir_operators::time::format_rfc3339(r.started),
            elapsed_secs: secs,
            stopped: r.stopped,
            failure: r.failure.clone(),
            warnings: r.warnings.clone(),
            components: r
                .components
                .iter()
                .map(|c| ComponentEntry {
                    component: format!("{}.{}", c.kind.section(), c.id),
                    ty: c.ty.clone(),
                    metrics: c.metrics,
                    partitions: c.partitions.clone(),
                    shards: c.shards.clone(),
                    pubsub: c.pubsub.clone(),
                })
                .collect(),
            sinks,
            checkpoints: r.checkpoints.clone(),
        })
    }

    /// Writes the report as pretty JSON.
    pub fn write(&self, path: &Path) -> Result<(), String> {
        let json = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        std::fs::write(path, json + "\n")
            .map_err(|e| format!("cannot write the report {}: {e}", path.display()))
    }

    /// Reads a report written by [`Report::write`].
    pub fn read(path: &Path) -> Result<Report, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the report {}: {e}", path.display()))?;
        serde_json::from_str(&text)
            .map_err(|e| format!("{} is not a weir run report: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_round_trip_exactly() {
        let mut h = weir_operators::latency::histogram();
        for v in (1..100_000u64).step_by(7) {
            h.record(v * 13 % 5_000_000 + 1).unwrap();
        }
        let e = LatencyEntry::new(&h).unwrap();
        let back = e.decode().unwrap();
        assert_eq!(back, h);
        for (label, q) in PERCENTILES {
            let stored = e.percentiles_us.iter().find(|(l, _)| l == label).unwrap().1;
            assert_eq!(back.value_at_percentile(q), stored);
        }
    }
}
