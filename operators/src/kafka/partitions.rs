//! A Kafka source's partitions: resolving them and their start offsets before a run
//! ([`PartitionPlan`], [`Start`]) and their reading status while it lasts ([`Partitions`]).

use std::collections::BTreeMap;
use std::sync::Mutex;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::{brokers, unreachable_brokers, CommitPoint, RecoveryLog, BROKER_TIMEOUT};
use crate::value::Micros;

/// One partition a source reads, as resolved before the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionPlan {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset to start from.
    pub start: i64,
    /// Where the partition ended when the run started (`bounded` sources stop there).
    pub end: i64,
    /// What Weir committed with the start offset, when it resumes from a commit of its own.
    pub resume: Option<CommitPoint>,
}

/// The partitions of `topics` and where to start in each: at the group's committed offsets
/// (`start = "committed"`, else at the earliest for a partition without one), the earliest,
/// the latest, or the first message at or after a point in time. Fails, saying what to do, when the brokers cannot be reached or a topic does
/// not exist.
pub fn resolve_partitions(
    config: &ClientConfig,
    topics: &[String],
    start: Start,
) -> Result<Vec<PartitionPlan>, String> {
    let consumer: BaseConsumer = config
        .create()
        .map_err(|e| format!("cannot create a Kafka consumer: {e} (check `librdkafka_options`)"))?;
    let mut plans = Vec::new();
    for topic in topics {
        let md = consumer
            .fetch_metadata(Some(topic), BROKER_TIMEOUT)
            .map_err(|e| unreachable_brokers(config, e))?;
        let t = md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .filter(|t| t.error().is_none() && !t.partitions().is_empty())
            .ok_or_else(|| {
                format!(
                    "topic `{topic}` does not exist on {} (create it, or fix `topics`)",
                    brokers(config)
                )
            })?;
        let mut parts: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
        parts.sort_unstable();
        for p in parts {
            let (low, high) = consumer
                .fetch_watermarks(topic, p, BROKER_TIMEOUT)
                .map_err(|e| unreachable_brokers(config, e))?;
            plans.push(PartitionPlan {
                topic: topic.clone(),
                partition: p,
                start: if start == Start::Latest { high } else { low },
                end: high,
                resume: None,
            });
        }
    }
    if let (Start::At(t), false) = (start, plans.is_empty()) {
        // The first offset whose message timestamp (milliseconds) is at or after `t`; past
        // the end when there is none yet.
        let ms = t.div_euclid(1000) + i64::from(t.rem_euclid(1000) != 0);
        let mut tpl = TopicPartitionList::new();
        for p in &plans {
            tpl.add_partition_offset(&p.topic, p.partition, Offset::Offset(ms))
                .map_err(|e| format!("cannot look offsets up by time: {e}"))?;
        }
        let found = consumer
            .offsets_for_times(tpl, BROKER_TIMEOUT)
            .map_err(|e| unreachable_brokers(config, e))?;
        for e in found.elements() {
            if let Some(p) = plans
                .iter_mut()
                .find(|p| p.topic == e.topic() && p.partition == e.partition())
            {
                p.start = match e.offset() {
                    Offset::Offset(o) => o.clamp(p.start, p.end.max(p.start)),
                    _ => p.end,
                };
            }
        }
    }
    if start == Start::Committed && !plans.is_empty() {
        let points = RecoveryLog::read(config)?;
        let mut tpl = TopicPartitionList::new();
        for p in &plans {
            tpl.add_partition(&p.topic, p.partition);
        }
        let committed = consumer
            .committed_offsets(tpl, BROKER_TIMEOUT)
            .map_err(|e| unreachable_brokers(config, e))?;
        for e in committed.elements() {
            let Offset::Offset(o) = e.offset() else {
                continue;
            };
            if let Some(p) = plans
                .iter_mut()
                .find(|p| p.topic == e.topic() && p.partition == e.partition())
            {
                p.start = o.clamp(p.start, p.end.max(p.start));
                p.resume = points.get(&(p.topic.clone(), p.partition, o)).copied();
            }
        }
    }
    Ok(plans)
}

/// Where a source starts reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// Where its consumer group left off (the earliest offset where it has not committed).
    Committed,
    /// At the oldest message kept.
    Earliest,
    /// At the end: only messages written from now on.
    Latest,
    /// At the first message of each partition whose timestamp is at or after this time (its
    /// offset looked up by time, as Kafka's `offsetsForTimes`): a replay from a point in time.
    At(Micros),
}

impl Start {
    /// Every start, in documentation order.
    pub const ALL: [Start; 3] = [Start::Committed, Start::Earliest, Start::Latest];

    /// Its name in pipeline files.
    pub fn name(self) -> &'static str {
        match self {
            Start::Committed => "committed",
            Start::Earliest => "earliest",
            Start::Latest => "latest",
            Start::At(_) => "at",
        }
    }
}

/// The state of one partition a source reads, for the run summary and status lines.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartitionStatus {
    /// `topic/partition`.
    pub partition: String,
    /// The next offset to read.
    pub offset: i64,
    /// Messages in the partition not yet read (its end offset minus `offset`).
    pub lag: i64,
    /// The offset last committed.
    pub committed: i64,
    /// The partition's watermark (µs; `i64::MIN` before its first record).
    pub watermark: Micros,
}

/// The partitions of a source, shared by its workers.
#[derive(Debug, Default)]
pub struct Partitions {
    inner: Mutex<BTreeMap<(String, i32), PartitionStatus>>,
}

impl Partitions {
    /// Sets one partition's status.
    pub fn set(&self, topic: &str, partition: i32, status: PartitionStatus) {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((topic.to_string(), partition), status);
    }

    /// Every partition's status, by topic and partition.
    pub fn snapshot(&self) -> Vec<PartitionStatus> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }
}
