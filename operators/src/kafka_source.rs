//! The `kafka` source: messages from Kafka topics, one record per message (a JSON object or a
//! CSV row), with at-least-once delivery across crashes.
//!
//! **Partitions.** Before the run the engine resolves the topics' partitions and where to
//! start in each ([`kafka::resolve_partitions`](crate::kafka::resolve_partitions)). Partition
//! `k` of that list is read by worker `k % workers` over all processes, each worker with a
//! consumer of its own in the source's consumer group, assigned its partitions (as Flink and
//! Spark do: a fixed assignment keeps each partition's order and watermark in one place).
//!
//! **Event time.** Each partition has its own watermark ([`watermark`](crate::watermark)),
//! idle rule included; records carry their partition's, and the worker's capability is the
//! least of its partitions'. Event time is a field of the record, or the message's timestamp.
//!
//! **Offsets.** Every `commit_interval` a worker commits, for each of its partitions, the
//! offset of the oldest record whose outputs the sinks may not all have written, having first
//! written its recovery point (described in [`kafka`](crate::kafka)) to the group's recovery
//! topic. A source that
//! reaches the end of a `bounded` run commits where it stopped. Offsets are never committed
//! for input whose outputs are not written, so a restart after `kill -9` loses nothing.
//!
//! **Lag.** librdkafka's statistics give each partition's end offset; the source shows, per
//! partition, how far it is behind (its consumer lag), and counts the sum as its backlog.
//!
//! ```no_run
//! // Needs a broker: see engine/tests/kafka.rs for runs against a real one.
//! use std::sync::Arc;
//! use weir_operators::kafka_source::KafkaSourceSpec;
//! fn spec(_: Arc<KafkaSourceSpec>) {}
//! ```

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use timely::dataflow::Scope;

use crate::clock::RunClock;
use crate::control::RunControl;
use crate::decode::DecodeSpec;
use crate::flow::{Flow, SourceEnv};
use crate::kafka::{
    client_config, CommitPoint, PartitionPlan, PartitionStatus, Partitions, RecoveryLog, Replay,
    Start,
};
use crate::metrics::ComponentMetrics;
use crate::reading::{reading_source, Batch, Output, Progress};
use crate::value::Micros;
use crate::watermark::WatermarkSpec;
use crate::{Batches, Time};

/// A validated Kafka source. The engine fills in `partitions` and `resume_frontier` before
/// the run.
#[derive(Clone, Debug)]
pub struct KafkaSourceSpec {
    /// How messages are decoded.
    pub decode: Arc<DecodeSpec>,
    /// Whether messages are CSV rows (columns in schema order) rather than JSON objects.
    pub csv: bool,
    /// The brokers, `host:port[,host:port...]`.
    pub brokers: String,
    /// The topics.
    pub topics: Vec<String>,
    /// Where each topic is named in the pipeline file (byte ranges), for errors found before
    /// the run.
    pub topic_spans: Vec<std::ops::Range<usize>>,
    /// When the schema was inferred: what was found, as pipeline keys (for the user).
    pub inferred: Option<String>,
    /// The consumer group, whose committed offsets Weir keeps.
    pub group_id: String,
    /// Where to start.
    pub start: Start,
    /// Whether to stop at the end each partition had when the run started.
    pub bounded: bool,
    /// How often offsets are committed.
    pub commit_interval: Duration,
    /// More librdkafka settings.
    pub options: Vec<(String, String)>,
    /// When records' outputs are all written (from the plan).
    pub replay: Replay,
    /// The partitions and where to start in each.
    pub partitions: Vec<PartitionPlan>,
    /// When resuming from Weir's commits: every output at an earlier time was written.
    pub resume_frontier: Option<Time>,
    /// The partitions' state, for the summary and status lines.
    pub status: Arc<Partitions>,
    /// Whether the run takes checkpoints: offsets are then committed when a checkpoint
    /// completes (by the coordinator), not by the source, and a resumed run starts at the
    /// checkpoint's offsets.
    pub checkpointed: bool,
}

impl KafkaSourceSpec {
    /// The client configuration of the writer of its recovery log: the brokers, the group, and
    /// the user's security settings.
    pub fn recovery_config(&self) -> ClientConfig {
        let mut c = client_config(&self.brokers, &[]);
        c.set("group.id", &self.group_id);
        for (k, v) in &self.options {
            if ["security.", "sasl.", "ssl."]
                .iter()
                .any(|p| k.starts_with(p))
            {
                c.set(k, v);
            }
        }
        c
    }

    /// The client configuration of the source's consumers.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = client_config(&self.brokers, &[]);
        c.set("group.id", &self.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("statistics.interval.ms", "1000")
            // What librdkafka fetches ahead while the pipeline is busy (or held back) stays in
            // the broker instead: at most 16 MB per worker (librdkafka's default is 64 MB).
            .set("queued.max.messages.kbytes", "16384");
        for (k, v) in &self.options {
            c.set(k, v);
        }
        c
    }
}

/// Builds the Kafka source on this worker: returns (records, dead letters).
pub fn kafka_source<'s>(
    scope: Scope<'s, Time>,
    name: &str,
    spec: Arc<KafkaSourceSpec>,
    env: SourceEnv,
    metrics: Arc<ComponentMetrics>,
) -> (Batches<'s>, Batches<'s>) {
    let (index, peers) = (scope.index(), scope.peers());
    let worker = scope.worker().clone();
    // Idleness is per partition, decided here (a partition is idle only with nothing unread):
    // the shell must not call the whole worker idle because it read nothing for a while.
    let mut out = Output::of(&spec.decode);
    out.watermark.idle_timeout = None;
    let (flow, ctl, clock) = (env.flow.clone(), env.ctl.clone(), env.clock);
    let source = name.to_string();
    let m = Arc::clone(&metrics);
    reading_source(scope, name, out, env, metrics, move |address| {
        let mine: Vec<PartitionPlan> = spec
            .partitions
            .iter()
            .enumerate()
            .filter(|(k, _)| k % peers == index)
            .map(|(_, p)| p.clone())
            .collect();
        let mut reader = (!mine.is_empty()).then(|| {
            let wake = Mutex::new(worker.sync_activator_for(address.to_vec()));
            Reader::new(&source, &spec, mine, flow, ctl, clock, m, move || {
                let _ = wake.lock().map(|w| w.activate());
            })
        });
        move |batch: &mut Batch| match reader.as_mut() {
            None => Progress::Done,
            Some(Err(e)) => {
                batch.failure = Some(std::mem::take(e));
                Progress::Done
            }
            Some(Ok(r)) => {
                if let Some(p) = batch.take_restore() {
                    if let Err(e) = r.restore(&p) {
                        batch.failure = Some(e);
                        return Progress::Done;
                    }
                }
                let progress = r.step(batch);
                if batch.track {
                    batch.position = r.position();
                }
                progress
            }
        }
    })
}

/// What the consumer's callbacks report.
#[derive(Default)]
struct Reports {
    /// Each partition's end offset, by topic and partition, from librdkafka's statistics.
    ends: Mutex<HashMap<String, HashMap<i32, i64>>>,
    /// The last client error, until the source shows it.
    error: Mutex<Option<String>>,
}

impl Reports {
    /// Where `plan`'s partition ends now: the latest statistics, or where it ended when the
    /// run started if they say less (or nothing yet).
    fn end_of(&self, plan: &PartitionPlan) -> i64 {
        let ends = self.ends.lock().unwrap_or_else(|p| p.into_inner());
        ends.get(plan.topic.as_str())
            .and_then(|t| t.get(&plan.partition))
            .map_or(plan.end, |&e| e.max(plan.end))
    }
}

struct Context(Arc<Reports>);

impl ClientContext for Context {
    fn stats(&self, statistics: Statistics) {
        let mut ends = self.0.ends.lock().unwrap_or_else(|p| p.into_inner());
        for (name, topic) in statistics.topics {
            for (p, part) in topic.partitions {
                if p >= 0 && part.hi_offset >= 0 {
                    ends.entry(name.clone())
                        .or_default()
                        .insert(p, part.hi_offset);
                }
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        *self.0.error.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(format!("{error}: {reason}"));
    }
}

impl ConsumerContext for Context {}

/// Records read into a partition but not yet known to be written, in runs of up to
/// [`RUN`] consecutive records: where the run starts, the partition's state before it, and the
/// latest done time in it.
struct Pending {
    offset: i64,
    max_seen: Micros,
    idle_floor: Micros,
    done: Time,
    records: u32,
}

/// Records per pending run: the granularity of commits (a restart reads at most this many
/// records again per partition beyond those it must).
const RUN: u32 = 1024;

/// One partition on this worker.
struct Part {
    plan: PartitionPlan,
    /// `topic/partition`, as records and dead letters name it.
    name: String,
    next: i64,
    max_seen: Micros,
    idle_floor: Micros,
    last_input: Instant,
    pending: VecDeque<Pending>,
    committed: Option<(i64, Time)>,
    finished: bool,
    /// From the recovery point: records before this offset were read before the commit, and
    /// `idle_then` bounds the idle floor they saw; records from it on are never skipped.
    read_to: i64,
    idle_then: Micros,
}

impl Part {
    fn watermark(&self, spec: &WatermarkSpec, floor: Micros) -> Micros {
        spec.of(self.max_seen, self.idle_floor).max(floor)
    }
}

/// A worker's consumer and its partitions.
struct Reader {
    source: String,
    spec: Arc<KafkaSourceSpec>,
    consumer: BaseConsumer<Context>,
    recovery: RecoveryLog,
    reports: Arc<Reports>,
    parts: Vec<Part>,
    csv_columns: Vec<Option<usize>>,
    /// The CSV row being decoded, reused.
    csv_row: csv::StringRecord,
    /// The watermark floor and skip bound of a resumed run (`Micros::MIN`, `None`: none).
    floor: Micros,
    skip_below: Option<Time>,
    flow: Flow,
    ctl: RunControl,
    clock: RunClock,
    metrics: Arc<ComponentMetrics>,
    /// The last finite frontier seen at the sinks, or the resume frontier if higher.
    frontier: Time,
    last_commit: Instant,
    last_status: Instant,
    /// This worker's share of the source's backlog gauge.
    backlog: i64,
    /// Every partition reached its end (bounded).
    ended: bool,
    shown_error: Option<String>,
}

impl Reader {
    #[allow(clippy::too_many_arguments)]
    fn new(
        source: &str,
        spec: &Arc<KafkaSourceSpec>,
        plans: Vec<PartitionPlan>,
        flow: Flow,
        ctl: RunControl,
        clock: RunClock,
        metrics: Arc<ComponentMetrics>,
        wake: impl Fn() + Send + Sync + 'static,
    ) -> Result<Reader, String> {
        let reports = Arc::new(Reports::default());
        let mut consumer: BaseConsumer<Context> = spec
            .client_config()
            .create_with_context(Context(Arc::clone(&reports)))
            .map_err(|e| {
                format!("source `{source}`: cannot create a Kafka consumer: {e} (check `librdkafka_options`)")
            })?;
        consumer.set_nonempty_callback(wake);
        let recovery = RecoveryLog::open(&spec.recovery_config())
            .map_err(|e| format!("source `{source}`: {e}"))?;
        let mut tpl = TopicPartitionList::new();
        for p in &plans {
            tpl.add_partition_offset(&p.topic, p.partition, Offset::Offset(p.start))
                .map_err(|e| format!("source `{source}`: {e}"))?;
        }
        consumer
            .assign(&tpl)
            .map_err(|e| format!("source `{source}`: cannot assign partitions: {e}"))?;
        let windows = matches!(spec.replay, Replay::Windows(_));
        let skip_below = spec.resume_frontier.filter(|_| windows);
        let now = Instant::now();
        let parts: Vec<Part> = plans
            .into_iter()
            .map(|plan| {
                let (max_seen, idle_floor) = plan
                    .resume
                    .map_or((Micros::MIN, Micros::MIN), |r| (r.max_seen, r.idle_floor));
                // Without a recovery point the partition is read from its start, as it was
                // before: the replay judges it exactly, unless idleness moved its watermark.
                let (read_to, idle_then) = match plan.resume {
                    Some(r) => (r.read_to, r.idle_now),
                    None if spec.decode.watermark.idle_timeout.is_none() => (i64::MAX, Micros::MIN),
                    None => (i64::MIN, Micros::MIN),
                };
                Part {
                    name: format!("{}/{}", plan.topic, plan.partition),
                    next: plan.start,
                    max_seen,
                    idle_floor,
                    last_input: now,
                    pending: VecDeque::new(),
                    committed: None,
                    finished: spec.bounded && plan.start >= plan.end,
                    read_to,
                    idle_then,
                    plan,
                }
            })
            .collect();
        let names: Vec<&str> = spec
            .decode
            .input_fields()
            .map(|(_, f)| f.name.as_str())
            .collect();
        let csv_columns = spec
            .decode
            .csv_columns(&csv::StringRecord::from(names))
            .map_err(|e| format!("source `{source}`: {e}"))?;
        let mut r = Reader {
            source: source.to_string(),
            spec: Arc::clone(spec),
            consumer,
            recovery,
            reports,
            parts,
            csv_columns,
            csv_row: csv::StringRecord::new(),
            floor: skip_below.map_or(Micros::MIN, |f| f.min(Micros::MAX as Time) as Micros),
            skip_below,
            flow,
            ctl,
            clock,
            metrics,
            // Outputs below the resume frontier were written by an earlier run: what this one
            // commits never says less.
            frontier: spec.resume_frontier.unwrap_or(0),
            last_commit: now,
            last_status: now,
            backlog: 0,
            ended: false,
            shown_error: None,
        };
        r.pause_finished();
        r.update_status();
        Ok(r)
    }

    /// Reads what has arrived into `batch`.
    fn step(&mut self, batch: &mut Batch) -> Progress {
        let spec = Arc::clone(&self.spec);
        let wm = spec.decode.watermark;
        if let Some(idle) = wm.idle_timeout {
            // Idle: nothing read for idle_timeout, and nothing unread in the broker as far as
            // librdkafka last reported (a source held back by backpressure, or one whose
            // fetches lag, is not idle).
            let floor = wm.idle_floor(self.clock.now_micros());
            for p in self.parts.iter_mut().filter(|p| !p.finished) {
                if p.last_input.elapsed() >= idle && p.next >= self.reports.end_of(&p.plan) {
                    p.idle_floor = p.idle_floor.max(floor);
                }
            }
        }
        let mut progress = Progress::More;
        let mut finished_now = false;
        let mut skipped = 0u64;
        for _ in 0..4096 {
            let message = match self.consumer.poll(Duration::ZERO) {
                None => {
                    progress = Progress::Waiting;
                    break;
                }
                Some(Err(e)) => {
                    self.note_error(e.to_string());
                    continue;
                }
                Some(Ok(m)) => m,
            };
            let Some(p) = self.parts.iter_mut().find(|p| {
                p.plan.partition == message.partition() && p.plan.topic == message.topic()
            }) else {
                continue;
            };
            let offset = message.offset();
            if p.finished || offset < p.next {
                continue;
            }
            if spec.bounded && offset >= p.plan.end {
                p.finished = true;
                finished_now = true;
                continue;
            }
            p.next = offset + 1;
            p.last_input = Instant::now();
            let time = message
                .timestamp()
                .to_millis()
                .filter(|_| spec.decode.assign_time)
                .map(|ms| ms.saturating_mul(1000));
            let payload = message.payload().unwrap_or_default();
            let line = offset.max(0) as u64;
            let csv = spec
                .csv
                .then_some((&mut self.csv_row, &self.csv_columns[..]));
            let (decoded, raw) =
                batch.decode_message(&spec.decode, csv, payload, &p.name, line, time);
            let ts = decoded
                .as_ref()
                .ok()
                .and_then(|()| batch.event_time(&spec.decode));
            let before = (p.max_seen, p.idle_floor);
            let max_seen = ts.map_or(p.max_seen, |t| p.max_seen.max(t));
            let original = wm.of(max_seen, p.idle_floor);
            // At least the watermark the record had when it was first read (idleness may have
            // raised it since the commit point): its outputs were at most this done time.
            let at_most = wm.of(max_seen, p.idle_floor.max(p.idle_then));
            let read_before = offset < p.read_to;
            if let (Some(f), Some(done), true) = (
                self.skip_below,
                spec.replay.done_time(ts, at_most),
                read_before,
            ) {
                if done < f {
                    // Read again after a restart; every output it has was written before.
                    p.max_seen = max_seen;
                    skipped += 1;
                    continue;
                }
            }
            batch.enter_partition(p.max_seen, p.idle_floor.max(self.floor));
            batch.accept(&spec.decode, decoded, &p.name, line, &raw);
            p.max_seen = batch.max_seen;
            let done = spec
                .replay
                .done_time(ts, original.max(self.floor))
                .unwrap_or(Time::MAX);
            match p.pending.back_mut() {
                Some(run) if run.records < RUN => {
                    run.done = run.done.max(done);
                    run.records += 1;
                }
                _ => p.pending.push_back(Pending {
                    offset,
                    max_seen: before.0,
                    idle_floor: before.1,
                    done,
                    records: 1,
                }),
            }
            if spec.bounded && p.next >= p.plan.end {
                p.finished = true;
                finished_now = true;
            }
        }
        self.metrics.add_replayed(skipped);
        if finished_now {
            self.pause_finished();
        }
        let (w, floor) = (&wm, self.floor);
        let least = self
            .parts
            .iter()
            .filter(|p| !p.finished)
            .map(|p| p.watermark(w, floor))
            .min();
        batch.hold_at(least.unwrap_or(Micros::MAX));
        if self.last_status.elapsed() >= Duration::from_millis(500) {
            self.update_status();
        }
        if self.last_commit.elapsed() >= self.spec.commit_interval {
            self.commit(CommitMode::Async, false);
        }
        if least.is_none() {
            self.ended = true;
            self.update_status();
            return Progress::Done;
        }
        progress
    }

    /// Where each partition is: the next offset, its watermark state and whether it is done.
    fn position(&self) -> serde_json::Value {
        let parts: Vec<serde_json::Value> = self
            .parts
            .iter()
            .map(|p| {
                serde_json::json!({
                    "topic": p.plan.topic,
                    "partition": p.plan.partition,
                    "next": p.next,
                    "max_seen": p.max_seen,
                    "idle_floor": p.idle_floor,
                })
            })
            .collect();
        serde_json::json!({ "partitions": parts })
    }

    /// Resumes each partition at the position a checkpoint recorded (see [`Reader::position`]).
    fn restore(&mut self, p: &serde_json::Value) -> Result<(), String> {
        let mut tpl = TopicPartitionList::new();
        for saved in p["partitions"].as_array().into_iter().flatten() {
            let (Some(topic), Some(partition), Some(next)) = (
                saved["topic"].as_str(),
                saved["partition"].as_i64(),
                saved["next"].as_i64(),
            ) else {
                continue;
            };
            let Some(part) = self
                .parts
                .iter_mut()
                .find(|q| q.plan.topic == topic && i64::from(q.plan.partition) == partition)
            else {
                continue;
            };
            part.next = next;
            part.max_seen = saved["max_seen"].as_i64().unwrap_or(Micros::MIN);
            part.idle_floor = saved["idle_floor"].as_i64().unwrap_or(Micros::MIN);
            part.read_to = i64::MIN;
            part.finished = self.spec.bounded && next >= part.plan.end;
            tpl.add_partition_offset(topic, part.plan.partition, Offset::Offset(next))
                .map_err(|e| format!("source `{}`: {e}", self.source))?;
        }
        if tpl.count() > 0 {
            // Every partition of this worker, at its checkpoint's offset.
            for q in &self.parts {
                if tpl
                    .find_partition(&q.plan.topic, q.plan.partition)
                    .is_none()
                {
                    let _ = tpl.add_partition_offset(
                        &q.plan.topic,
                        q.plan.partition,
                        Offset::Offset(q.next),
                    );
                }
            }
            self.consumer.assign(&tpl).map_err(|e| {
                format!(
                    "source `{}`: cannot resume its partitions: {e}",
                    self.source
                )
            })?;
        }
        self.skip_below = None;
        self.floor = Micros::MIN;
        self.pause_finished();
        Ok(())
    }

    fn pause_finished(&self) {
        let mut tpl = TopicPartitionList::new();
        for p in self.parts.iter().filter(|p| p.finished) {
            tpl.add_partition(&p.plan.topic, p.plan.partition);
        }
        if tpl.count() > 0 {
            let _ = self.consumer.pause(&tpl);
        }
    }

    /// Commits, for each partition, the oldest offset whose outputs may not all be written —
    /// or, with `all` at the end of a bounded run, where reading stopped.
    fn commit(&mut self, mode: CommitMode, all: bool) {
        self.last_commit = Instant::now();
        if self.spec.checkpointed {
            // Offsets go with checkpoints (see `checkpoint::kafka_commit`).
            return;
        }
        let now = self.flow.frontier_now();
        if now != Time::MAX {
            self.frontier = self.frontier.max(now);
        }
        let f = self.frontier;
        let known = matches!(self.spec.replay, Replay::Windows(_));
        let mut tpl = TopicPartitionList::new();
        let mut points = Vec::new();
        for p in &mut self.parts {
            if all {
                p.pending.clear();
            } else if !known {
                // Nothing read is known to be written before the source ends.
                continue;
            }
            while p.pending.front().is_some_and(|r| r.done < f) {
                p.pending.pop_front();
            }
            let (offset, max_seen, idle_floor) = match p.pending.front() {
                Some(r) => (r.offset, r.max_seen, r.idle_floor),
                None => (p.next, p.max_seen, p.idle_floor),
            };
            if p.committed == Some((offset, f)) {
                continue;
            }
            let point = CommitPoint {
                max_seen,
                idle_floor,
                frontier: f,
                read_to: p.next,
                idle_now: p.idle_floor,
            };
            if tpl
                .add_partition_offset(&p.plan.topic, p.plan.partition, Offset::Offset(offset))
                .is_ok()
            {
                points.push((p.plan.topic.clone(), p.plan.partition, offset, point));
                p.committed = Some((offset, f));
            }
        }
        if tpl.count() > 0 {
            // The recovery points first: a committed offset always has one.
            if let Err(e) = self.recovery.write(&points) {
                self.note_error(format!("cannot write recovery points: {e}"));
                for p in &mut self.parts {
                    p.committed = None;
                }
                return;
            }
            if let Err(e) = self.consumer.commit(&tpl, mode) {
                self.note_error(format!("cannot commit offsets: {e}"));
            }
        }
    }

    /// Publishes each partition's offset, lag and watermark, and the source's backlog.
    fn update_status(&mut self) {
        self.last_status = Instant::now();
        let wm = self.spec.decode.watermark;
        let mut lag_sum = 0i64;
        for p in &self.parts {
            let end = if self.spec.bounded {
                p.plan.end
            } else {
                self.reports.end_of(&p.plan)
            };
            let lag = (end - p.next).max(0);
            lag_sum += lag;
            self.spec.status.set(
                &p.plan.topic,
                p.plan.partition,
                PartitionStatus {
                    partition: p.name.clone(),
                    offset: p.next,
                    lag,
                    committed: p.committed.map_or(p.plan.start, |c| c.0),
                    watermark: p.watermark(&wm, self.floor),
                },
            );
        }
        self.metrics.add_backlog(lag_sum - self.backlog);
        self.backlog = lag_sum;
        let error = self
            .reports
            .error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(e) = error {
            self.note_error(e);
        }
    }

    fn note_error(&mut self, e: String) {
        if self.shown_error.as_ref() != Some(&e) {
            eprintln!("weir: source `{}`: Kafka: {e}", self.source);
            self.shown_error = Some(e);
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        // At the natural end of a bounded run every output has been written; after a stop or a
        // failure, only what the sinks were last seen to have written counts.
        let all = self.ended && !self.ctl.stopped() && self.ctl.failure().is_none();
        self.commit(CommitMode::Sync, all);
        self.update_status();
        self.metrics.add_backlog(-self.backlog);
    }
}
