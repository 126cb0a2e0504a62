//! What a run reports: per-component metrics, sink latencies, the measurement window, and
//! the rule that says whether the engine kept up with an offered rate. Kept apart from
//! [`run`](crate::run) so that the monitor, the summary and the report file read it without
//! depending on the runtime.

use std::path::PathBuf;
use std::time::Duration;

use weir_operators::epochs::Mode;
use weir_operators::kafka;
use weir_operators::latency::Latencies;
use weir_operators::metrics::MetricsSnapshot;

use crate::spec::Kind;

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
    /// What the run should tell although it did not fail (a source with many bad records).
    pub warnings: Vec<String>,
    /// Whether it was stopped early (Ctrl-C, closed output).
    pub stopped: bool,
    /// Whether it stopped because its standard output was closed.
    pub output_closed: bool,
    /// The default dead-letter file, when bad records went there.
    pub dead_letter_file: Option<PathBuf>,
    /// Per user-declared sink, its latency histograms.
    pub sinks: Vec<SinkReport>,
    /// With `[pipeline] checkpoint`: the checkpoints taken and each sink's delivery guarantee.
    pub checkpoints: Option<CheckpointSummary>,
}

/// The checkpoints of a run (process 0 completes them), for the summary and the report.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct CheckpointSummary {
    /// The checkpoint directory.
    pub dir: String,
    /// The interval between checkpoint starts, ms.
    pub interval_ms: f64,
    /// The checkpoint the run resumed from, if it did.
    pub resumed_from: Option<u64>,
    /// Checkpoints completed in this run (the final one included).
    pub taken: usize,
    /// The last one's sequence number.
    pub last: Option<u64>,
    /// Bytes of the last one's parts.
    pub last_bytes: u64,
    /// Bytes of all parts written.
    pub total_bytes: u64,
    /// Median and largest time from a checkpoint's decision until it was complete, ms.
    pub duration_ms: (f64, f64),
    /// Median and largest time from a decision until the last participant began its part
    /// (the alignment delay), ms.
    pub alignment_ms: (f64, f64),
    /// Each sink and the delivery guarantee it gave: "exactly-once" or "at-least-once".
    pub sinks: Vec<(String, String)>,
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
    /// Kinesis sources: each shard's state, last sequence number read, lag and watermark.
    pub shards: Vec<weir_cloud::kinesis::source::ShardStatus>,
    /// Pub/Sub sources: messages received, acknowledged and waiting for their outputs.
    pub pubsub: Option<weir_cloud::pubsub::source::PubSubStatus>,
    /// Sources: why records were bad.
    pub reasons: weir_operators::metrics::Reasons,
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
