//! The producer behind the Kafka sink and `weir produce`: messages tagged with tickets and
//! confirmed by the brokers ([`Messages`]), and message keys ([`message_key`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{brokers, unreachable_brokers, BROKER_TIMEOUT};
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

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
