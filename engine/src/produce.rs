//! `weir produce`: writes the generator's events as a producer would, on an open-loop schedule
//! — JSON lines over TCP straight to a pipeline's `tcp` source, or JSON messages to a Kafka
//! topic, a Kinesis stream, a Pub/Sub topic or an MQTT broker — so a user can feed a pipeline from outside and measure end to end (with
//! `latency_from = "event_time"`: each event's time is when it was due). Over TCP, backpressure
//! reaches the producer: when Weir falls behind, its TCP source stops reading, the producer's
//! writes block, and it falls behind its schedule. Through Kafka, the queue absorbs the
//! difference and the consumer's lag grows instead.
//!
//! ```no_run
//! use weir_engine::produce::{produce, Destination, Produce};
//! use weir_operators::generator::{GeneratorSpec, Profile};
//!
//! let spec = GeneratorSpec { events: Some(1000), rate: Some(10_000.0), ..GeneratorSpec::new(Profile::Iot) };
//! let report = produce(&Produce { spec, to: Destination::Tcp("127.0.0.1:9000".into()) }).unwrap();
//! assert_eq!(report.events, 1000);
//! ```

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use weir_operators::encode::{Encoder, Format};
use weir_operators::generator::{GeneratorSpec, RunClock};
use weir_operators::kafka;

/// Where events go.
#[derive(Clone, Debug)]
pub enum Destination {
    /// A `tcp` source, `host:port`.
    Tcp(String),
    /// A Kafka topic, created with `partitions` partitions if it does not exist.
    Kafka {
        /// The brokers.
        brokers: String,
        /// The topic.
        topic: String,
        /// Partitions of a topic Weir creates.
        partitions: i32,
        /// The field whose value keys each message (default: none, spread over partitions).
        key: Option<String>,
        /// More librdkafka settings (security), values with `${NAME}` already expanded.
        options: Vec<(String, String)>,
    },
    /// A Kinesis stream, created with `shards` shards if it does not exist.
    Kinesis {
        /// The stream and the service.
        conn: weir_cloud::kinesis::Connection,
        /// Shards of a stream Weir creates.
        shards: i32,
        /// The field whose value is each record's partition key (default: none, spread over
        /// the shards).
        key: Option<String>,
    },
    /// A Pub/Sub topic, created if it does not exist (with a subscription, if named).
    PubSub {
        /// The project and the service.
        conn: weir_cloud::pubsub::Connection,
        /// The topic.
        topic: String,
        /// A subscription to create on it (with ordering) if it does not exist.
        subscription: Option<String>,
        /// The field whose value is each message's ordering key (default: none).
        key: Option<String>,
    },
    /// An MQTT broker: one message per event, to a topic that may name fields.
    Mqtt {
        /// The broker.
        broker: weir_operators::mqtt::Broker,
        /// The topic template, such as `devices/{device_id}/telemetry`.
        topic: String,
        /// 0 or 1.
        qos: u8,
    },
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::Tcp(a) => f.write_str(a),
            Destination::Kafka { brokers, topic, .. } => write!(f, "topic `{topic}` on {brokers}"),
            Destination::Kinesis { conn, .. } => {
                write!(f, "Kinesis stream `{}` at {}", conn.stream, conn.place())
            }
            Destination::PubSub { conn, topic, .. } => {
                write!(
                    f,
                    "Pub/Sub topic `{}` at {}",
                    conn.path("topics", topic),
                    conn.place()
                )
            }
            Destination::Mqtt { broker, topic, .. } => {
                write!(f, "MQTT topic `{topic}` on {}", broker.address())
            }
        }
    }
}

/// What to produce and where.
pub struct Produce {
    /// The events: profile, seed, count (`events`), rate (`None`: as fast as the receiver
    /// takes them).
    pub spec: GeneratorSpec,
    /// Where they go.
    pub to: Destination,
}

/// What a producer did.
#[derive(Debug)]
pub struct Produced {
    /// Events written.
    pub events: u64,
    /// How long it took.
    pub elapsed: Duration,
    /// How far behind its schedule the producer fell at most (time blocked by the receiver).
    pub max_behind: Duration,
}

/// Events encoded per write.
const PER_WRITE: u64 = 1024;

/// The open connection to a destination.
enum Out {
    Tcp(std::io::BufWriter<TcpStream>),
    Mqtt(Box<weir_operators::mqtt::MqttWriter>),
    Kafka(kafka::Messages, Vec<usize>),
    Kinesis(weir_cloud::kinesis::sink::KinesisOut),
    PubSub(weir_cloud::pubsub::sink::PubSubOut),
}

/// The position of `key` among the events' fields, if given.
fn key_position(
    key: &Option<String>,
    schema: &weir_operators::schema::Schema,
) -> Result<Vec<usize>, String> {
    match key {
        None => Ok(Vec::new()),
        Some(k) => Ok(vec![schema.index_of(k).ok_or_else(|| {
            format!(
                "the events have no field `{k}` to key by (they have: {})",
                schema.names().collect::<Vec<_>>().join(", ")
            )
        })?]),
    }
}

impl Out {
    fn open(
        to: &Destination,
        encoder_schema: &weir_operators::schema::Schema,
    ) -> Result<Out, String> {
        match to {
            Destination::Tcp(address) => {
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    match TcpStream::connect(address) {
                        Ok(s) => {
                            return Ok(Out::Tcp(std::io::BufWriter::with_capacity(1 << 16, s)))
                        }
                        Err(_) if Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(50))
                        }
                        Err(e) => {
                            return Err(format!(
                                "cannot connect to {address}: {e} (is a pipeline with a tcp source listening there?)"
                            ))
                        }
                    }
                }
            }
            Destination::Mqtt { broker, topic, qos } => Ok(Out::Mqtt(Box::new(
                weir_operators::mqtt::MqttWriter::connect(broker, topic, *qos, false)?,
            ))),
            Destination::Kafka {
                brokers,
                topic,
                partitions,
                key,
                options,
            } => {
                let key = key_position(key, encoder_schema)?;
                let config = kafka::client_config(brokers, options);
                if kafka::create_topic(&config, topic, *partitions)? {
                    eprintln!("weir produce: created topic `{topic}` with {partitions} partitions");
                }
                Ok(Out::Kafka(kafka::Messages::new(&config, topic)?, key))
            }
            Destination::Kinesis { conn, shards, key } => {
                let key = key_position(key, encoder_schema)?;
                let (c, n) = (conn.clone(), *shards);
                let created =
                    weir_cloud::block_on(weir_cloud::kinesis::SERVICE_TIMEOUT, async move {
                        let client = c.client().await?;
                        weir_cloud::kinesis::create_stream(&client, &c, n).await
                    })?;
                if created {
                    eprintln!(
                        "weir produce: created Kinesis stream `{}` with {shards} shards",
                        conn.stream
                    );
                }
                Ok(Out::Kinesis(weir_cloud::kinesis::sink::KinesisOut::open(
                    conn, key,
                )?))
            }
            Destination::PubSub {
                conn,
                topic,
                subscription,
                key,
            } => {
                let key = key_position(key, encoder_schema)?;
                let (c, t, sub) = (conn.clone(), topic.clone(), subscription.clone());
                let (topic_made, sub_made) =
                    weir_cloud::block_on(weir_cloud::pubsub::SERVICE_TIMEOUT, async move {
                        let made = c.create_topic(&t).await?;
                        let sub = match sub {
                            Some(s) => c.create_subscription(&s, &t, true).await?,
                            None => false,
                        };
                        Ok((made, sub))
                    })?;
                if topic_made {
                    eprintln!(
                        "weir produce: created Pub/Sub topic `{}`",
                        conn.path("topics", topic)
                    );
                }
                if sub_made {
                    eprintln!(
                        "weir produce: created Pub/Sub subscription `{}` (ordered by ordering key)",
                        conn.path("subscriptions", subscription.as_deref().unwrap_or(""))
                    );
                }
                Ok(Out::PubSub(weir_cloud::pubsub::sink::PubSubOut::open(
                    conn,
                    topic,
                    key,
                    Vec::new(),
                )?))
            }
        }
    }
}

/// Connects (over TCP, retrying for up to 10 s while the receiver starts), then writes the
/// events, each with its scheduled time as event time when there is a rate, or the time it is
/// made. Kafka messages carry that time as their timestamp too.
pub fn produce(p: &Produce) -> Result<Produced, String> {
    let schema = p.spec.profile.schema();
    let mut out = Out::open(&p.to, &schema)?;
    let encoder = Encoder::new(Format::Jsonl, &schema);
    let clock = RunClock::now();
    let limit = p.spec.events.unwrap_or(u64::MAX);
    let ns = p.spec.rate.map(|r| 1e9 / r);
    let mut buf = Vec::with_capacity(1 << 16);
    let mut key = String::new();
    let mut max_behind = Duration::ZERO;
    let mut next = 0u64;
    let failed = |e: &dyn std::fmt::Display| format!("cannot write to {}: {e}", p.to);
    while next < limit {
        let due = match ns {
            Some(ns) => {
                let at = Duration::from_nanos((next as f64 * ns) as u64);
                let now = clock.instant.elapsed();
                if at > now {
                    std::thread::sleep(at - now);
                } else {
                    max_behind = max_behind.max(now - at);
                }
                ((clock.instant.elapsed().as_nanos() as f64 / ns) as u64 + 1).min(limit)
            }
            None => limit,
        };
        let end = due.min(next + PER_WRITE);
        buf.clear();
        let wall = clock.now_micros();
        while next < end {
            let ts = match ns {
                Some(ns) => clock.wall + (next as f64 * ns / 1e3) as i64,
                None => wall,
            };
            let event = p.spec.event(next, ts);
            match &mut out {
                Out::Tcp(..) | Out::Mqtt(..) => encoder.encode(&event, &mut buf),
                Out::Kafka(m, k) => {
                    buf.clear();
                    encoder.encode(&event, &mut buf);
                    buf.pop();
                    let k = kafka::message_key(&event, k, &mut key);
                    m.send(k, &buf, Some(ts.div_euclid(1000)))?;
                }
                Out::PubSub(w) => {
                    buf.clear();
                    encoder.encode(&event, &mut buf);
                    buf.pop();
                    weir_operators::sink::MessageOut::send(w, &event, &buf, 0)?;
                }
                Out::Kinesis(w) => {
                    buf.clear();
                    encoder.encode(&event, &mut buf);
                    buf.pop();
                    weir_operators::sink::MessageOut::send(w, &event, &buf, 0)?;
                }
            }
            next += 1;
        }
        if let Out::Tcp(w) = &mut out {
            w.write_all(&buf).map_err(|e| failed(&e))?;
            if ns.is_some() {
                // On schedule: hand the events over now, not when the buffer fills.
                w.flush().map_err(|e| failed(&e))?;
            }
        }
        if let Out::Mqtt(w) = &mut out {
            // Published as due; confirmed (QoS 1) at the end.
            w.write_all(&buf).map_err(|e| failed(&e))?;
            w.send().map_err(|e| failed(&e))?;
        }
    }
    match &mut out {
        Out::Tcp(w) => w.flush().map_err(|e| failed(&e))?,
        Out::Mqtt(w) => w.flush().map_err(|e| failed(&e))?,
        Out::Kafka(m, _) => m.flush()?,
        Out::Kinesis(w) => weir_operators::sink::MessageOut::flush(w)?,
        Out::PubSub(w) => weir_operators::sink::MessageOut::flush(w)?,
    }
    Ok(Produced {
        events: next,
        elapsed: clock.instant.elapsed(),
        max_behind,
    })
}
