//! The `pubsub` source: messages of a Pub/Sub subscription, one record per message (a JSON
//! object or a CSV row), each acknowledged only once the sinks have written what it produced.
//!
//! **Reading.** Worker 0 holds one streaming pull on the subscription, in a thread of its own
//! that hands messages to the operator through a bounded channel; the client extends each
//! message's acknowledgement deadline while it waits (up to `max_lease`). With ordering keys on
//! the subscription, messages of a key arrive in order and are taken in that order.
//!
//! **Event time** is a field of the payload, an attribute (`timestamp_from = "attribute"`: RFC
//! 3339, or milliseconds since the epoch), or the publish time. Pub/Sub does not order
//! messages across keys, and redelivers: the watermark is the largest event time received less
//! `max_out_of_orderness`, and a message older than it is late, handled by each window's late
//! policy.
//!
//! **Acknowledgements.** A message is acknowledged once the frontier at the sinks passes its
//! done time — its watermark, or through one tumbling window that window's last microsecond
//! (as Kafka offsets are committed, see `weir_operators::kafka::Replay`). Where Weir cannot
//! bound that (sessions, sliding windows, joins, late updates), the watermark the message was
//! read at is taken: what it produced so far is written, but state it left open is not kept by
//! the service. Messages not acknowledged when a run stops are returned for redelivery.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use google_cloud_pubsub::client::Subscriber;
use google_cloud_pubsub::model::Message;
use google_cloud_pubsub::subscriber::handler::Handler;
use serde::{Deserialize, Serialize};
use timely::dataflow::Scope;
use weir_operators::control::RunControl;
use weir_operators::decode::DecodeSpec;
use weir_operators::flow::{Flow, SourceEnv};
use weir_operators::kafka::Replay;
use weir_operators::metrics::ComponentMetrics;
use weir_operators::reading::{reading_source, Batch, Output, Progress};
use weir_operators::{Batches, Time};

use super::Connection;

/// Where a message's event time comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimeFrom {
    /// The payload's timestamp field.
    Field,
    /// An attribute: RFC 3339, or milliseconds since the epoch.
    Attribute(String),
    /// The time the service received the message.
    Publish,
}

/// A validated Pub/Sub source.
#[derive(Clone, Debug)]
pub struct PubSubSourceSpec {
    /// How messages are decoded.
    pub decode: Arc<DecodeSpec>,
    /// Whether messages are CSV rows rather than JSON objects.
    pub csv: bool,
    /// The project and the service.
    pub conn: Connection,
    /// The subscription's full name.
    pub subscription: String,
    /// Where event time comes from.
    pub time_from: TimeFrom,
    /// End the source after this many messages (`None`: run until stopped).
    pub max_messages: Option<u64>,
    /// How long the client keeps extending a message's deadline while Weir holds it.
    pub max_lease: Duration,
    /// How far each extension reaches: how soon a crashed run's messages come again.
    pub lease_extension: Duration,
    /// The most messages held unacknowledged (the service stops delivering past it).
    pub max_outstanding: i64,
    /// When records' outputs are all written (from the plan).
    pub replay: Replay,
    /// The source's state, for the summary and status lines.
    pub status: Arc<Mutex<PubSubStatus>>,
}

/// What a Pub/Sub source did, for the summary and status lines.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PubSubStatus {
    /// Messages received (redeliveries included).
    pub received: u64,
    /// Messages acknowledged.
    pub acknowledged: u64,
    /// Messages received and not yet acknowledged: waiting for their outputs to be written.
    pub unacknowledged: u64,
    /// Whether the subscription delivers in order of ordering keys.
    pub ordered: bool,
}

enum Pulled {
    Message(Box<Message>, Handler),
    Failed(String),
}

/// Builds the Pub/Sub source on this worker: returns (records, dead letters).
pub fn pubsub_source<'s>(
    scope: Scope<'s, Time>,
    name: &str,
    spec: Arc<PubSubSourceSpec>,
    env: SourceEnv,
    metrics: Arc<ComponentMetrics>,
) -> (Batches<'s>, Batches<'s>) {
    let pulls = scope.index() == 0;
    let worker = scope.worker().clone();
    let (flow, ctl) = (env.flow.clone(), env.ctl.clone());
    let source = name.to_string();
    let out = Output::of(&spec.decode);
    let m = Arc::clone(&metrics);
    reading_source(scope, name, out, env, metrics, move |address| {
        let mut reader = pulls.then(|| {
            let wake = Mutex::new(worker.sync_activator_for(address.to_vec()));
            Reader::start(&source, &spec, flow, ctl, m, move || {
                let _ = wake.lock().map(|w| w.activate());
            })
        });
        move |batch: &mut Batch| match reader.as_mut() {
            None => Progress::Done,
            Some(r) => r.step(batch),
        }
    })
}

struct Reader {
    source: String,
    spec: Arc<PubSubSourceSpec>,
    rx: Receiver<Pulled>,
    stop: Arc<AtomicBool>,
    shutdown: Arc<Mutex<Option<google_cloud_pubsub::subscriber::ShutdownToken>>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Messages read and not yet acknowledged, with their done times, in the order read.
    pending: VecDeque<(Time, Handler)>,
    csv_columns: Vec<Option<usize>>,
    csv_row: csv::StringRecord,
    /// Messages taken, and acknowledged.
    taken: u64,
    acknowledged: u64,
    /// The place of the message being read, `SUBSCRIPTION/MESSAGE_ID` (reused).
    place: String,
    flow: Flow,
    ctl: RunControl,
    metrics: Arc<ComponentMetrics>,
    /// This reader's share of the source's backlog gauge: messages not yet acknowledged.
    backlog: i64,
    ended: bool,
}

impl Reader {
    fn start(
        source: &str,
        spec: &Arc<PubSubSourceSpec>,
        flow: Flow,
        ctl: RunControl,
        metrics: Arc<ComponentMetrics>,
        wake: impl Fn() + Send + 'static,
    ) -> Reader {
        let (tx, rx) = sync_channel(1024);
        let stop = Arc::new(AtomicBool::new(false));
        let shutdown = Arc::new(Mutex::new(None));
        let (s, st, sd) = (Arc::clone(spec), Arc::clone(&stop), Arc::clone(&shutdown));
        let thread = std::thread::Builder::new()
            .name(format!("weir-pubsub-{source}"))
            .spawn(move || pull(&s, &tx, &wake, &st, &sd))
            .ok();
        let names: Vec<&str> = spec
            .decode
            .input_fields()
            .map(|(_, f)| f.name.as_str())
            .collect();
        let csv_columns = spec
            .decode
            .csv_columns(&csv::StringRecord::from(names))
            .unwrap_or_default();
        Reader {
            source: source.to_string(),
            spec: Arc::clone(spec),
            rx,
            stop,
            shutdown,
            thread,
            pending: VecDeque::new(),
            csv_columns,
            csv_row: csv::StringRecord::new(),
            taken: 0,
            acknowledged: 0,
            place: String::new(),
            flow,
            ctl,
            metrics,
            backlog: 0,
            ended: false,
        }
    }

    fn step(&mut self, batch: &mut Batch) -> Progress {
        let spec = Arc::clone(&self.spec);
        let mut progress = Progress::Waiting;
        for _ in 0..4096 {
            if spec.max_messages.is_some_and(|m| self.taken >= m) {
                break;
            }
            match self.rx.try_recv() {
                Ok(Pulled::Message(m, h)) => {
                    self.taken += 1;
                    progress = Progress::More;
                    self.take(batch, &m, h);
                }
                Ok(Pulled::Failed(e)) => {
                    batch.failure = Some(format!("source `{}`: {e}", self.source));
                    return Progress::Done;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    batch.failure.get_or_insert(format!(
                        "source `{}`: its pulling thread stopped",
                        self.source
                    ));
                    return Progress::Done;
                }
            }
        }
        self.acknowledge();
        if spec.max_messages.is_some_and(|m| self.taken >= m) {
            self.ended = true;
            return Progress::Done;
        }
        progress
    }

    fn take(&mut self, batch: &mut Batch, m: &Message, h: Handler) {
        let spec = &self.spec;
        // The message's place (its id), in a buffer reused.
        self.place.clear();
        let _ = write!(
            self.place,
            "{}/{}",
            spec.subscription.rsplit('/').next().unwrap_or(""),
            m.message_id
        );
        let place = &self.place;
        let time = match &spec.time_from {
            TimeFrom::Field => Ok(None),
            TimeFrom::Publish => Ok(m
                .publish_time
                .as_ref()
                .map(|t| t.seconds() * 1_000_000 + i64::from(t.nanos()) / 1_000)),
            TimeFrom::Attribute(name) => match m.attributes.get(name) {
                None => Err(format!("no attribute `{name}` to take event time from")),
                Some(v) => attribute_time(v)
                    .map(Some)
                    .map_err(|e| format!("attribute `{name}`: {e}")),
            },
        };
        let (decoded, raw) = match time {
            Ok(time) => {
                let csv = spec
                    .csv
                    .then_some((&mut self.csv_row, &self.csv_columns[..]));
                batch.decode_message(&spec.decode, csv, &m.data, place, 0, time)
            }
            Err(e) => (Err(e), String::from_utf8_lossy(&m.data)),
        };
        let ts = decoded
            .as_ref()
            .ok()
            .and_then(|()| batch.event_time(&spec.decode));
        batch.accept(&spec.decode, decoded, place, 0, &raw);
        let wm = batch.watermark(&spec.decode.watermark).max(0);
        let done = spec.replay.done_time(ts, wm).unwrap_or(wm as Time);
        self.pending.push_back((done, h));
    }

    /// Acknowledges the messages whose outputs are all written, and publishes the counts.
    fn acknowledge(&mut self) {
        let f = self.flow.frontier_now();
        // Messages are acknowledged in any order; those read first are usually done first.
        if self.pending.iter().any(|(done, _)| *done < f) {
            let before = self.pending.len();
            let mut keep = VecDeque::with_capacity(before);
            for (done, h) in self.pending.drain(..) {
                if done < f {
                    h.ack();
                } else {
                    keep.push_back((done, h));
                }
            }
            self.pending = keep;
            self.acknowledged += (before - self.pending.len()) as u64;
        }
        self.publish();
    }

    /// Publishes the counts to the status and the backlog gauge (messages held).
    fn publish(&mut self) {
        let held = self.pending.len();
        let mut s = self.spec.status.lock().unwrap_or_else(|p| p.into_inner());
        s.received = self.taken;
        s.acknowledged = self.acknowledged;
        s.unacknowledged = held as u64;
        drop(s);
        self.metrics.add_backlog(held as i64 - self.backlog);
        self.backlog = held as i64;
    }
}

/// An attribute's time: RFC 3339, or milliseconds since the epoch.
pub fn attribute_time(v: &str) -> Result<i64, String> {
    if let Ok(ms) = v.trim().parse::<i64>() {
        return Ok(ms.saturating_mul(1000));
    }
    weir_operators::time::parse_rfc3339(v.trim())
        .map_err(|e| format!("`{v}` is neither RFC 3339 nor milliseconds since the epoch ({e})"))
}

impl Drop for Reader {
    fn drop(&mut self) {
        // At the natural end every output has been written; after a stop or a failure only
        // what the sinks were last seen to have written is acknowledged, and the rest goes
        // back for redelivery.
        if self.ended && !self.ctl.stopped() && self.ctl.failure().is_none() {
            self.acknowledged += self.pending.len() as u64;
            for (_, h) in self.pending.drain(..) {
                h.ack();
            }
            self.publish();
        } else {
            self.acknowledge();
            self.pending.clear();
        }
        // The client sends pending acknowledgements, returns the rest, and ends.
        let token = self
            .shutdown
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let (Some(t), Ok(rt)) = (token, crate::runtime()) {
            rt.block_on(async {
                let _ = tokio::time::timeout(Duration::from_secs(10), t.shutdown()).await;
            });
        }
        self.metrics.add_backlog(-self.backlog);
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The pulling thread: one streaming pull, messages handed over until `stop`.
fn pull(
    spec: &PubSubSourceSpec,
    tx: &SyncSender<Pulled>,
    wake: &(impl Fn() + Send),
    stop: &AtomicBool,
    shutdown: &Mutex<Option<google_cloud_pubsub::subscriber::ShutdownToken>>,
) {
    let failed = |e: String| {
        let _ = tx.send(Pulled::Failed(e));
        wake();
    };
    let rt = match crate::runtime() {
        Ok(rt) => rt,
        Err(e) => return failed(e),
    };
    rt.block_on(async {
        let conn = &spec.conn;
        let cred = match conn.credentials() {
            Ok(c) => c,
            Err(e) => return failed(e),
        };
        let mut b = Subscriber::builder().with_credentials(cred);
        if let Some(e) = conn.endpoint() {
            b = b.with_endpoint(e);
        }
        let client = match b.build().await {
            Ok(c) => c,
            Err(e) => return failed(format!("cannot make a Pub/Sub subscriber: {e}")),
        };
        let mut stream = client
            .subscribe(&spec.subscription)
            .set_max_lease(spec.max_lease)
            .set_max_lease_extension(spec.lease_extension)
            .set_max_outstanding_messages(spec.max_outstanding)
            .set_shutdown_behavior(
                google_cloud_pubsub::subscriber::ShutdownBehavior::NackImmediately,
            )
            .build();
        *shutdown.lock().unwrap_or_else(|p| p.into_inner()) = Some(stream.shutdown_token());
        let mut taken = 0u64;
        while !stop.load(Ordering::Relaxed) && spec.max_messages.is_none_or(|m| taken < m) {
            match stream.next().await {
                Some(Ok((m, h))) => {
                    taken += 1;
                    let mut item = Pulled::Message(Box::new(m), h);
                    loop {
                        match tx.try_send(item) {
                            Ok(()) => break,
                            Err(std::sync::mpsc::TrySendError::Full(back)) => {
                                if stop.load(Ordering::Relaxed) {
                                    return;
                                }
                                item = back;
                                wake();
                                tokio::time::sleep(Duration::from_millis(1)).await;
                            }
                            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => return,
                        }
                    }
                    wake();
                }
                Some(Err(e)) => {
                    return failed(
                        conn.failure(&format!("pulling from `{}`", spec.subscription), e),
                    )
                }
                // Shut down.
                None => break,
            }
        }
        // Enough messages: keep the client alive for acknowledgements until told to stop.
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}
