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

use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

mod partitions;
mod producer;
mod recovery;

pub use partitions::*;
pub use producer::*;
pub use recovery::*;

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

pub(crate) fn brokers(config: &ClientConfig) -> String {
    config
        .get("bootstrap.servers")
        .unwrap_or("the brokers")
        .to_string()
}

pub(crate) fn unreachable_brokers(config: &ClientConfig, e: KafkaError) -> String {
    format!(
        "cannot reach the Kafka brokers at {}: {e} (start the broker, or fix `brokers`)",
        brokers(config)
    )
}

/// The first messages of `topics` (at most `max`; each partition read from its earliest
/// offset), as text, waiting at most `timeout` for them: a sample to infer a schema from.
/// Reading commits nothing. `Err` when the brokers cannot be reached or a topic does not exist.
pub fn sample_messages(
    config: &ClientConfig,
    topics: &[String],
    max: usize,
    timeout: Duration,
) -> Result<Vec<String>, String> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use rdkafka::{Offset, TopicPartitionList};
    let mut config = config.clone();
    config
        .set("group.id", "weir-schema-sample")
        .set("enable.auto.commit", "false")
        .set("allow.auto.create.topics", "false");
    let consumer: BaseConsumer = config
        .create()
        .map_err(|e| format!("cannot create a Kafka consumer: {e}"))?;
    let mut tpl = TopicPartitionList::new();
    let mut available = 0i64;
    for topic in topics {
        let md = consumer
            .fetch_metadata(Some(topic), BROKER_TIMEOUT)
            .map_err(|e| unreachable_brokers(&config, e))?;
        let t = md
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
            .ok_or_else(|| format!("topic `{topic}` does not exist"))?;
        for p in t.partitions() {
            let (low, high) = consumer
                .fetch_watermarks(topic, p.id(), BROKER_TIMEOUT)
                .map_err(|e| unreachable_brokers(&config, e))?;
            if high > low {
                tpl.add_partition_offset(topic, p.id(), Offset::Offset(low))
                    .map_err(|e| e.to_string())?;
                available += high - low;
            }
        }
    }
    let want = (max as i64).min(available) as usize;
    let mut out = Vec::with_capacity(want);
    if want == 0 {
        return Ok(out);
    }
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let deadline = std::time::Instant::now() + timeout;
    while out.len() < want && std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                out.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned())
            }
            Some(Err(e)) => return Err(format!("cannot read a sample: {e}")),
            None => {}
        }
    }
    Ok(out)
}

/// Whether `topic` exists (has partitions) on the brokers of `config`: `Err` when they cannot
/// be reached within `timeout`. Asking does not create it.
pub fn topic_exists(config: &ClientConfig, topic: &str, timeout: Duration) -> Result<bool, String> {
    let mut config = config.clone();
    config.set("allow.auto.create.topics", "false");
    let consumer: rdkafka::consumer::BaseConsumer = config
        .create()
        .map_err(|e| format!("cannot create a Kafka client: {e}"))?;
    let md = rdkafka::consumer::Consumer::fetch_metadata(&consumer, Some(topic), timeout)
        .map_err(|e| unreachable_brokers(&config, e))?;
    Ok(md
        .topics()
        .iter()
        .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty()))
}

/// Creates `topic` with `partitions` partitions unless it exists. Returns whether it created
/// it.
pub fn create_topic(config: &ClientConfig, topic: &str, partitions: i32) -> Result<bool, String> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    if topic_exists(config, topic, BROKER_TIMEOUT)? {
        return Ok(false);
    }
    let admin: AdminClient<DefaultClientContext> = config
        .create()
        .map_err(|e| format!("cannot create a Kafka admin client: {e}"))?;
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
pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
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
