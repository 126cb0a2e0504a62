//! What Weir's Kafka source and sink share: client settings, the producer behind the sink and
//! `weir produce`, finding a topic's partitions and where a consumer group left off, and the
//! *recovery point* committed beside each offset.
//!
//! **Recovery.** The source commits, per partition, the offset of the oldest record whose
//! outputs may not all have been written yet. Just before, it writes the offset's *recovery
//! point* to the group's recovery topic (`GROUP.weir-recovery`, see [`RecoveryLog`]): the
//! frontier `F` the sinks had passed — every output at a time below `F` was written — and the
//! partition's watermark just before that offset. (Kafka's commit metadata would be the natural
//! place, but not every broker keeps it.) A record's outputs all have times at most
//! its [`Replay::done_time`]; it is safe once `F` passes that. A restarted source resumes at
//! the committed offsets with its watermarks restored, so each record is judged on time or
//! late as it was the first time, and it skips the replayed records whose outputs were all
//! written (done time below `F`). Window and join state that was open at the crash is rebuilt
//! from the replayed records; nothing whose output was not written is skipped (at-least-once:
//! outputs written after the last commit are written again).
//!
//! ```
//! use weir_operators::kafka::{CommitPoint, Replay};
//!
//! let p = CommitPoint {
//!     max_seen: 9_000_000, idle_floor: i64::MIN, frontier: 5_000_000, read_to: 42, idle_now: i64::MIN,
//! };
//! assert_eq!(CommitPoint::parse(&p.to_string()), Some(p));
//! // A tumbling window of 10 s: a record at 3 s is done once its window [0, 10 s) is out.
//! let r = Replay::Windows(vec![(10_000_000, 0)]);
//! assert_eq!(r.done_time(Some(3_000_000), 4_000_000), Some(9_999_999));
//! assert_eq!(Replay::Unknown.done_time(Some(3_000_000), 4_000_000), None);
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::value::Micros;
use crate::Time;

/// How long Weir waits for the brokers before it gives up on a request made before the run.
pub const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

/// A client configuration for `brokers`, with the user's librdkafka `options` over Weir's.
pub fn client_config(brokers: &str, options: &[(String, String)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    for (k, v) in options {
        c.set(k, v);
    }
    c
}

/// Where a consumer group left off in one partition, and what Weir stored beside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitPoint {
    /// The partition's largest event time before the committed offset.
    pub max_seen: Micros,
    /// The partition's idle floor then.
    pub idle_floor: Micros,
    /// The frontier the sinks had passed: every output at a time below it was written.
    pub frontier: Time,
    /// The next offset to read when the commit was made: records from there on were read
    /// after it, and are never taken for written on a restart.
    pub read_to: i64,
    /// The partition's idle floor when the commit was made: at least the floor any record
    /// read before it saw.
    pub idle_now: Micros,
}

impl fmt::Display for CommitPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "weir:2 max_seen={} idle_floor={} frontier={} read_to={} idle_now={}",
            self.max_seen, self.idle_floor, self.frontier, self.read_to, self.idle_now
        )
    }
}

impl CommitPoint {
    /// Reads a recovery point written by [`Display`](fmt::Display) (`None` for anything
    /// else).
    pub fn parse(text: &str) -> Option<CommitPoint> {
        let mut parts = text.strip_prefix("weir:2 ")?.split(' ');
        let mut field = |name: &str| -> Option<i128> {
            parts
                .next()?
                .strip_prefix(name)?
                .strip_prefix('=')?
                .parse()
                .ok()
        };
        Some(CommitPoint {
            max_seen: field("max_seen")?.try_into().ok()?,
            idle_floor: field("idle_floor")?.try_into().ok()?,
            frontier: field("frontier")?.try_into().ok()?,
            read_to: field("read_to")?.try_into().ok()?,
            idle_now: field("idle_now")?.try_into().ok()?,
        })
    }
}

/// When a record read from a source has had all its outputs: what the planner knows of the
/// operators between the source and the sinks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Replay {
    /// Every path to a sink goes through filters, maps and at most one tumbling window (size,
    /// offset, in µs) whose late records are not applied as updates. A record's outputs are
    /// then at times at most its partition's watermark (itself, its dead letter, a late
    /// record's routing) or its windows' last microsecond.
    Windows(Vec<(Micros, Micros)>),
    /// Something on the way keeps state whose end Weir cannot bound per record (sessions,
    /// sliding windows, joins, late updates): records are safe only once their source ends.
    Unknown,
}

impl Replay {
    /// The latest time of an output of a record with event time `ts` (if it has one), read
    /// when its partition's watermark was `watermark`; `None` when unknown.
    pub fn done_time(&self, ts: Option<Micros>, watermark: Micros) -> Option<Time> {
        let Replay::Windows(windows) = self else {
            return None;
        };
        let mut t = watermark.max(0) as Time;
        if let Some(ts) = ts {
            for &(size, offset) in windows {
                let end = offset + (ts - offset).div_euclid(size) * size + size;
                t = t.max(end.max(1) as Time - 1);
            }
        }
        Some(t)
    }
}

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
/// (`start = "committed"`, else at the earliest for a partition without one), the earliest or
/// the latest. Fails, saying what to do, when the brokers cannot be reached or a topic does
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
        }
    }
}

/// The recovery topic of a consumer group: one message per commit, each line of it a
/// partition, the offset committed and its [`CommitPoint`].
pub struct RecoveryLog {
    messages: Messages,
}

impl RecoveryLog {
    /// The topic of `group`.
    pub fn topic(group: &str) -> String {
        let safe: String = group
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .take(200)
            .collect();
        format!("{safe}.weir-recovery")
    }

    /// Opens the log of the group in `config` (`group.id`), creating its topic if needed.
    pub fn open(config: &ClientConfig) -> Result<RecoveryLog, String> {
        let topic = Self::topic(config.get("group.id").unwrap_or("weir"));
        create_topic(config, &topic, 1)?;
        Ok(RecoveryLog {
            messages: Messages::new(config, &topic)?,
        })
    }

    /// Writes the recovery points of offsets about to be committed, and waits until the
    /// broker has them.
    pub fn write(&self, points: &[(String, i32, i64, CommitPoint)]) -> Result<(), String> {
        let text: String = points
            .iter()
            .map(|(t, p, o, point)| format!("{t} {p} {o} {point}\n"))
            .collect();
        self.messages.send(None, text.as_bytes(), None)?;
        self.messages.flush()
    }

    /// Every recovery point of the group in `config`, by topic, partition and offset.
    pub fn read(config: &ClientConfig) -> Result<HashMap<(String, i32, i64), CommitPoint>, String> {
        let topic = Self::topic(config.get("group.id").unwrap_or("weir"));
        let mut points = HashMap::new();
        let mut c = config.clone();
        c.set("enable.auto.commit", "false");
        let consumer: BaseConsumer = c.create().map_err(|e| {
            format!("cannot create a Kafka consumer: {e} (check `librdkafka_options`)")
        })?;
        let (low, high) = match consumer.fetch_watermarks(&topic, 0, BROKER_TIMEOUT) {
            Ok(w) => w,
            // No recovery topic: nothing was committed by Weir.
            Err(_) => return Ok(points),
        };
        if high <= low {
            return Ok(points);
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Offset(low))
            .map_err(|e| e.to_string())?;
        consumer
            .assign(&tpl)
            .map_err(|e| format!("cannot read {topic}: {e}"))?;
        let deadline = std::time::Instant::now() + BROKER_TIMEOUT * 3;
        let mut next = low;
        while next < high {
            if std::time::Instant::now() > deadline {
                return Err(format!("cannot read the recovery topic `{topic}` in time"));
            }
            let Some(m) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let m = m.map_err(|e| format!("cannot read the recovery topic `{topic}`: {e}"))?;
            next = m.offset() + 1;
            let text = std::str::from_utf8(m.payload().unwrap_or_default()).unwrap_or("");
            for line in text.lines() {
                let mut parts = line.splitn(4, ' ');
                let (Some(t), Some(p), Some(o), Some(point)) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                if let (Ok(p), Ok(o), Some(point)) =
                    (p.parse(), o.parse(), CommitPoint::parse(point))
                {
                    points.insert((t.to_string(), p, o), point);
                }
            }
        }
        Ok(points)
    }
}

fn brokers(config: &ClientConfig) -> String {
    config
        .get("bootstrap.servers")
        .unwrap_or("the brokers")
        .to_string()
}

fn unreachable_brokers(config: &ClientConfig, e: KafkaError) -> String {
    format!(
        "cannot reach the Kafka brokers at {}: {e} (start the broker, or fix `brokers`)",
        brokers(config)
    )
}

/// Counts confirmed messages per ticket and failed deliveries, and keeps the first reason.
#[derive(Default)]
struct Deliveries {
    confirmed: Mutex<HashMap<usize, u64>>,
    failed: AtomicU64,
    first: Mutex<Option<String>>,
}

struct DeliveryContext(Arc<Deliveries>);

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = usize;
    fn delivery(&self, result: &DeliveryResult<'_>, ticket: usize) {
        if result.is_ok() && ticket != 0 {
            *self
                .0
                .confirmed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(ticket)
                .or_default() += 1;
        }
        if let Err((e, _)) = result {
            self.0.failed.fetch_add(1, Relaxed);
            self.0
                .first
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert_with(|| e.to_string());
        }
    }
}

/// A producer writing messages to one topic and confirming them on [`Messages::flush`].
pub struct Messages {
    producer: BaseProducer<DeliveryContext>,
    deliveries: Arc<Deliveries>,
    topic: String,
}

impl Messages {
    /// A producer for `topic`. librdkafka connects in the background; the first flush fails
    /// if the brokers cannot be reached.
    pub fn new(config: &ClientConfig, topic: &str) -> Result<Messages, String> {
        let deliveries = Arc::new(Deliveries::default());
        let mut config = config.clone();
        // Checking the topic must not create it with the broker's defaults.
        config.set("allow.auto.create.topics", "false");
        let producer = config
            .create_with_context(DeliveryContext(Arc::clone(&deliveries)))
            .map_err(|e| {
                format!("cannot create a Kafka producer: {e} (check `librdkafka_options`)")
            })?;
        Ok(Messages {
            producer,
            deliveries,
            topic: topic.to_string(),
        })
    }

    /// Checks that the topic exists, so a run fails before it starts rather than at its first
    /// write.
    pub fn check_topic(&self, config: &ClientConfig) -> Result<(), String> {
        let md = self
            .producer
            .client()
            .fetch_metadata(Some(&self.topic), BROKER_TIMEOUT)
            .map_err(|e| unreachable_brokers(config, e))?;
        match md.topics().iter().find(|t| t.name() == self.topic) {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(()),
            _ => Err(format!(
                "topic `{}` does not exist on {} (create it — `weir produce --events 0 --topic NAME --partitions N --brokers ...` does — or fix `topic`)",
                self.topic,
                brokers(config)
            )),
        }
    }

    /// Queues one message (waiting while the producer's queue is full).
    pub fn send(
        &self,
        key: Option<&[u8]>,
        payload: &[u8],
        timestamp_ms: Option<i64>,
    ) -> Result<(), String> {
        self.enqueue(key, payload, timestamp_ms, 0)
    }

    /// Queues one message counted under `ticket` when the brokers confirm it (see
    /// [`confirmed`](Self::confirmed)).
    pub fn send_ticket(
        &self,
        key: Option<&[u8]>,
        payload: &[u8],
        ticket: usize,
    ) -> Result<(), String> {
        self.enqueue(key, payload, None, ticket)
    }

    fn enqueue(
        &self,
        key: Option<&[u8]>,
        payload: &[u8],
        timestamp_ms: Option<i64>,
        ticket: usize,
    ) -> Result<(), String> {
        let mut record =
            BaseRecord::<[u8], [u8], usize>::with_opaque_to(&self.topic, ticket).payload(payload);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(ts) = timestamp_ms {
            record = record.timestamp(ts);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    self.producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(format!("cannot send to topic `{}`: {e}", self.topic)),
            }
        }
    }

    /// Serves the brokers' confirmations (without waiting).
    pub fn poll(&self) {
        self.producer.poll(Duration::ZERO);
    }

    /// Whether `records` messages of `ticket` have been confirmed; forgets the ticket if so.
    pub fn confirmed(&self, ticket: usize, records: u64) -> bool {
        let mut c = self
            .deliveries
            .confirmed
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if c.get(&ticket).copied().unwrap_or(0) >= records {
            c.remove(&ticket);
            true
        } else {
            false
        }
    }

    /// The first delivery failure, if any.
    pub fn failure(&self) -> Option<String> {
        if self.deliveries.failed.load(Relaxed) == 0 {
            return None;
        }
        self.deliveries
            .first
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .or_else(|| Some("a message was not delivered".into()))
    }

    /// Waits until every queued message is confirmed by the brokers; fails if any was not.
    pub fn flush(&self) -> Result<(), String> {
        loop {
            match self.producer.flush(Duration::from_secs(1)) {
                Ok(()) => break,
                Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut)) => {
                    if self.deliveries.failed.load(Relaxed) > 0 {
                        break;
                    }
                }
                Err(e) => return Err(format!("cannot write to topic `{}`: {e}", self.topic)),
            }
        }
        match self.deliveries.failed.load(Relaxed) {
            0 => Ok(()),
            n => Err(format!(
                "{n} messages to topic `{}` were not delivered: {}",
                self.topic,
                self.deliveries
                    .first
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_deref()
                    .unwrap_or("unknown reason")
            )),
        }
    }
}

/// The message key of `record`: the values at `key` as text, joined by `,`, written into
/// `buf`; `None` without key fields.
pub fn message_key<'b>(
    record: &crate::schema::Record,
    key: &[usize],
    buf: &'b mut String,
) -> Option<&'b [u8]> {
    use std::fmt::Write as _;
    if key.is_empty() {
        return None;
    }
    buf.clear();
    for (i, &p) in key.iter().enumerate() {
        if i > 0 {
            buf.push(',');
        }
        let _ = write!(buf, "{}", record.values[p]);
    }
    Some(buf.as_bytes())
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

/// Creates `topic` with `partitions` partitions unless it exists. Returns whether it created
/// it.
pub fn create_topic(config: &ClientConfig, topic: &str, partitions: i32) -> Result<bool, String> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let mut config = config.clone();
    // Asking for the topic's metadata must not create it with the broker's defaults.
    config.set("allow.auto.create.topics", "false");
    let config = &config;
    let admin: AdminClient<DefaultClientContext> = config
        .create()
        .map_err(|e| format!("cannot create a Kafka admin client: {e}"))?;
    let md = admin
        .inner()
        .fetch_metadata(Some(topic), BROKER_TIMEOUT)
        .map_err(|e| unreachable_brokers(config, e))?;
    if md
        .topics()
        .iter()
        .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
    {
        return Ok(false);
    }
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(BROKER_TIMEOUT));
    let results = block_on(admin.create_topics([&new], &opts))
        .map_err(|e| format!("cannot create topic `{topic}`: {e}"))?;
    for r in results {
        match r {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => return Ok(false),
            Err((_, e)) => return Err(format!("cannot create topic `{topic}`: {e}")),
        }
    }
    Ok(true)
}

/// Runs a future to completion on this thread (the admin client's futures are completed by
/// librdkafka's own threads).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        match f.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
}
