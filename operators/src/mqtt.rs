//! The `mqtt` source and the `mqtt` sink's writer: devices over MQTT 3.1.1 (with `rumqttc`).
//!
//! **Source.** Worker 0 of process 0 holds one client session with the broker and subscribes
//! to the source's topic filters; a thread drives the connection and hands each message to the
//! source through a bounded channel. When the pipeline falls behind, the channel fills and the
//! thread stops reading from the broker, so the broker queues (QoS 1) instead of Weir's memory
//! growing. A QoS 1 message is acknowledged once it is handed to the source. Each payload is one
//! JSON object, decoded like a JSON line of the other sources (types, ids, bad records and
//! watermarks alike); a topic filter may name its single-level wildcards
//! (`devices/{device_id}/telemetry` subscribes to `devices/+/telemetry` and puts the matching
//! segment in the field `device_id`). Bad records are known by their topic and the message's
//! number (`devices/d7/telemetry:12`). A lost connection (a broker restart) is retried every
//! second until the broker is back; with `clean_session = false` the broker keeps the session
//! (subscriptions and queued QoS 1 messages) meanwhile.
//!
//! **Sink.** [`MqttWriter`] publishes each JSON line the sink encodes as one message, to a topic
//! that may name fields (`devices/{device_id}/alerts`); each flush waits until the broker has
//! confirmed every message (QoS 1: its PUBACK) or the client has written it (QoS 0).

use std::collections::HashMap;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rumqttc::{Client, Connection, Event, MqttOptions, Outgoing, Packet, QoS};
use timely::dataflow::Scope;

use crate::decode::DecodeSpec;
use crate::flow::SourceEnv;
use crate::framing::escape_bytes;
use crate::metrics::ComponentMetrics;
use crate::reading::{reading_source, Batch, Output, Progress};
use crate::value::{Micros, Value};
use crate::{Batches, Time};

/// Messages in flight between the client thread and the source.
const IN_FLIGHT: usize = 1024;

/// How to reach a broker.
#[derive(Clone, Debug, PartialEq)]
pub struct Broker {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// The client id (a persistent session is the broker's memory of this id).
    pub client_id: String,
    /// Whether the broker forgets the session when the client disconnects.
    pub clean_session: bool,
    /// User name and password, if the broker asks for them.
    pub credentials: Option<(String, String)>,
    /// Seconds between keep-alive pings.
    pub keep_alive: Duration,
}

impl Broker {
    /// A broker at `address` (`host:port`; an IPv6 host in brackets), with a clean session
    /// and no credentials; `None` when it is not such an address.
    pub fn at(address: &str, client_id: String) -> Option<Broker> {
        let (host, port) = address.trim().rsplit_once(':')?;
        let host = host.trim_matches(['[', ']']);
        let port = port.parse::<u16>().ok().filter(|p| *p > 0)?;
        (!host.is_empty()).then(|| Broker {
            host: host.to_string(),
            port,
            client_id,
            clean_session: true,
            credentials: None,
            keep_alive: Duration::from_secs(5),
        })
    }

    fn options(&self) -> MqttOptions {
        let mut o = MqttOptions::new(&self.client_id, &self.host, self.port);
        o.set_clean_session(self.clean_session)
            .set_keep_alive(self.keep_alive)
            .set_max_packet_size(16 << 20, 16 << 20);
        if let Some((u, p)) = &self.credentials {
            o.set_credentials(u, p);
        }
        o
    }

    /// `host:port`.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// The QoS of a level given as 0 or 1.
pub fn qos(level: u8) -> QoS {
    match level {
        0 => QoS::AtMostOnce,
        _ => QoS::AtLeastOnce,
    }
}

/// A topic filter whose single-level wildcards may be named: `devices/{device_id}/telemetry`.
#[derive(Clone, Debug, PartialEq)]
pub struct TopicFilter {
    /// The filter as subscribed (`devices/+/telemetry`).
    pub filter: String,
    /// The segments, `None` where a wildcard is.
    segments: Vec<Option<String>>,
    /// The named wildcards: segment index and the field's position in the schema.
    pub fields: Vec<(usize, usize)>,
}

impl TopicFilter {
    /// Parses `text`; `position` gives a named field's schema position. Errors say what is
    /// wrong with the filter.
    pub fn parse(
        text: &str,
        mut position: impl FnMut(&str) -> usize,
    ) -> Result<TopicFilter, String> {
        if text.is_empty() {
            return Err("a topic filter is empty".into());
        }
        let parts: Vec<&str> = text.split('/').collect();
        let mut filter = Vec::new();
        let mut segments = Vec::new();
        let mut fields = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            if let Some(name) = p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                if name.is_empty() || name.contains(['{', '}', '+', '#']) {
                    return Err(format!("`{p}` does not name a field"));
                }
                fields.push((i, position(name)));
                filter.push("+");
                segments.push(None);
            } else if *p == "#" && i + 1 < parts.len() {
                return Err("`#` may only be the last level".into());
            } else if p.contains(['{', '}']) || (p.len() > 1 && p.contains(['+', '#'])) {
                return Err(format!(
                    "`{p}`: a level is a name, `+`, `#` or a whole `{{field}}`"
                ));
            } else {
                filter.push(p);
                segments.push((*p != "+" && *p != "#").then(|| p.to_string()));
            }
        }
        Ok(TopicFilter {
            filter: filter.join("/"),
            segments,
            fields,
        })
    }

    /// The values of the named levels in `topic`, if it matches this filter.
    fn values<'t>(&self, topic: &'t str) -> Option<Vec<(usize, &'t str)>> {
        let levels: Vec<&str> = topic.split('/').collect();
        let multi = self.filter.ends_with('#');
        let fixed = self.segments.len() - usize::from(multi);
        if levels.len() < fixed || (!multi && levels.len() != fixed) {
            return None;
        }
        for (s, l) in self.segments[..fixed].iter().zip(&levels) {
            if s.as_deref().is_some_and(|s| s != *l) {
                return None;
            }
        }
        Some(self.fields.iter().map(|&(i, p)| (p, levels[i])).collect())
    }
}

/// A validated MQTT source.
#[derive(Clone, Debug)]
pub struct MqttSourceSpec {
    /// How payloads are decoded.
    pub decode: Arc<DecodeSpec>,
    /// The broker.
    pub broker: Broker,
    /// The topic filters subscribed to.
    pub topics: Vec<TopicFilter>,
    /// The subscription's QoS.
    pub qos: u8,
    /// End the source after this many messages (default: run until stopped).
    pub max_messages: Option<u64>,
}

/// What the client thread hands the source.
enum Msg {
    /// A received message (its payload shares the packet's bytes) and when it came.
    Message(rumqttc::Publish, Micros),
    Failed(String),
}

/// Builds the MQTT source on this worker: returns (records, dead letters).
pub fn mqtt_source<'s>(
    scope: Scope<'s, Time>,
    name: &str,
    spec: Arc<MqttSourceSpec>,
    env: SourceEnv,
    metrics: Arc<ComponentMetrics>,
) -> (Batches<'s>, Batches<'s>) {
    let subscribes = scope.index() == 0;
    let clock = env.clock;
    let control = env.ctl.clone();
    let worker = scope.worker().clone();
    let source = name.to_string();
    let out = Output::of(&spec.decode);
    reading_source(scope, name, out, env, metrics, move |address| {
        let rx: Option<Receiver<Msg>> = subscribes.then(|| {
            let (tx, rx) = sync_channel(IN_FLIGHT);
            let wake = worker.sync_activator_for(address.to_vec());
            let wake = move || {
                let _ = wake.activate();
            };
            let spec = Arc::clone(&spec);
            let source = source.clone();
            std::thread::Builder::new()
                .name("weir-mqtt".into())
                .spawn(move || {
                    let stopped = move || control.stopped();
                    let now = move || clock.now_micros();
                    if let Err(e) = subscribe(&spec, &source, &tx, &wake, &stopped, &now) {
                        let _ = tx.send(Msg::Failed(e));
                    }
                    drop(tx);
                    wake();
                })
                .expect("spawning the MQTT client thread");
            rx
        });
        let decode = Arc::clone(&spec.decode);
        let spec = Arc::clone(&spec);
        let mut number = 0u64;
        move |batch: &mut Batch| {
            let Some(rx) = rx.as_ref() else {
                return Progress::Done;
            };
            for _ in 0..IN_FLIGHT {
                match rx.try_recv() {
                    Ok(Msg::Message(p, at)) => {
                        batch.ingest = at;
                        number += 1;
                        take(&spec, &decode, batch, &p.topic, &p.payload, number);
                    }
                    Ok(Msg::Failed(reason)) => {
                        batch.failure = Some(format!("source `{}`: {reason}", decode.source));
                        return Progress::Done;
                    }
                    Err(TryRecvError::Empty) => return Progress::Waiting,
                    Err(TryRecvError::Disconnected) => return Progress::Done,
                }
            }
            Progress::More
        }
    })
}

/// Decodes one message into `batch`, with the fields its topic names.
fn take(
    spec: &MqttSourceSpec,
    decode: &DecodeSpec,
    batch: &mut Batch,
    topic: &str,
    payload: &[u8],
    number: u64,
) {
    let text = match std::str::from_utf8(payload) {
        Ok(t) => t,
        Err(_) => {
            let why = "the payload is not UTF-8".to_string();
            batch.accept(decode, Err(why), topic, number, &escape_bytes(payload));
            return;
        }
    };
    let mut decoded = batch.decode_json(decode, text, topic, number, None);
    if decoded.is_ok() {
        if let Some(values) = spec.topics.iter().find_map(|f| f.values(topic)) {
            for (p, v) in values {
                batch.values[p] = Value::Str(v.into());
            }
        } else if spec.topics.iter().any(|f| !f.fields.is_empty()) {
            decoded = Err(format!(
                "the topic `{topic}` matches no filter of the source"
            ));
        }
    }
    batch.accept(decode, decoded, topic, number, text);
}

/// The client thread: connects, subscribes (again after each reconnection that lost the
/// session) and hands messages over until the run stops, `max_messages` are read, or the
/// source is gone. An error before the first connection is the run's failure.
fn subscribe(
    spec: &MqttSourceSpec,
    source: &str,
    tx: &SyncSender<Msg>,
    wake: &dyn Fn(),
    stopped: &dyn Fn() -> bool,
    now: &dyn Fn() -> Micros,
) -> Result<(), String> {
    let mut options = spec.broker.options();
    options.set_manual_acks(true);
    // Requests (acknowledgements) go through a bounded channel that only this thread, by
    // polling, drains: never block on it (see `acks` below).
    let (client, mut conn) = Client::new(options, 4096);
    // Acknowledgements not yet taken by the channel, oldest first.
    let mut acks: std::collections::VecDeque<rumqttc::Publish> = Default::default();
    let mut connected = false;
    let mut lost = false;
    let mut read = 0u64;
    let mut subscriptions: HashMap<u16, String> = HashMap::new();
    let mut pending_subs: Vec<String> = Vec::new();
    while !stopped() {
        while let Some(p) = acks.front() {
            match client.try_ack(p) {
                Ok(()) => {
                    acks.pop_front();
                }
                Err(_) => break,
            }
        }
        let event = match conn.recv() {
            Ok(e) => e,
            Err(_) => return Ok(()),
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                if lost {
                    eprintln!(
                        "weir: source `{source}`: reconnected to the MQTT broker at {}{}",
                        spec.broker.address(),
                        if ack.session_present {
                            ", which kept its session"
                        } else {
                            ""
                        }
                    );
                } else if ack.session_present {
                    eprintln!(
                        "weir: source `{source}` resumed its session at {}",
                        spec.broker.address()
                    );
                }
                connected = true;
                lost = false;
                if !ack.session_present {
                    for t in &spec.topics {
                        client
                            .subscribe(t.filter.clone(), qos(spec.qos))
                            .map_err(|e| format!("cannot subscribe to `{}`: {e}", t.filter))?;
                        pending_subs.push(t.filter.clone());
                    }
                }
            }
            Ok(Event::Outgoing(Outgoing::Subscribe(pkid))) => {
                if !pending_subs.is_empty() {
                    subscriptions.insert(pkid, pending_subs.remove(0));
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                let filter = subscriptions.remove(&ack.pkid).unwrap_or_default();
                if ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                {
                    return Err(format!(
                        "the broker at {} refused the subscription to `{filter}` (check the \
                         filter and the broker's access rules)",
                        spec.broker.address()
                    ));
                }
                if subscriptions.is_empty() && pending_subs.is_empty() {
                    // Said once every filter is acknowledged: from here on, what is published
                    // reaches the source.
                    eprintln!(
                        "weir: source `{source}` subscribed to {} at {}",
                        spec.topics
                            .iter()
                            .map(|t| t.filter.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                        spec.broker.address()
                    );
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let msg = Msg::Message(p.clone(), now());
                // Blocks while the source is behind: the broker queues meanwhile.
                if tx.send(msg).is_err() {
                    return Ok(());
                }
                wake();
                acks.push_back(p);
                read += 1;
                if spec.max_messages.is_some_and(|m| read >= m) {
                    // The last acknowledgements, polling while the channel is full.
                    while let Some(p) = acks.front() {
                        match client.try_ack(p) {
                            Ok(()) => {
                                acks.pop_front();
                            }
                            Err(_) => {
                                let _ = conn.recv_timeout(Duration::from_millis(50));
                            }
                        }
                    }
                    let _ = client.disconnect();
                    // Let the acknowledgements and the disconnect go out.
                    drain(&mut conn);
                    return Ok(());
                }
            }
            Ok(_) => {}
            Err(e) => {
                if !connected {
                    return Err(format!(
                        "cannot connect to the MQTT broker at {}: {e} (start the broker, or fix `broker`)",
                        spec.broker.address()
                    ));
                }
                if !lost {
                    eprintln!(
                        "weir: source `{source}`: lost the MQTT broker at {} ({e}); reconnecting every second",
                        spec.broker.address()
                    );
                    lost = true;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
    let _ = client.disconnect();
    drain(&mut conn);
    Ok(())
}

/// Drives the connection until it closes (after a disconnect request), a few seconds at most.
fn drain(conn: &mut Connection) {
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < until {
        match conn.recv_timeout(Duration::from_millis(200)) {
            Ok(Ok(Event::Outgoing(Outgoing::Disconnect))) | Ok(Err(_)) | Err(_) => return,
            Ok(Ok(_)) => {}
        }
    }
}

/// How many messages the sink's client has handed over, and how many are confirmed.
#[derive(Default)]
struct Confirmed {
    sent: u64,
    confirmed: u64,
    /// Set when the connection failed for good.
    failed: Option<String>,
}

/// The `mqtt` sink's writer: publishes each complete JSON line as one message.
pub struct MqttWriter {
    client: Client,
    /// The topic, as literal parts and field paths (`{device_id}`): (text, is a field).
    topic: Vec<(String, bool)>,
    qos: QoS,
    retain: bool,
    pending: Vec<u8>,
    state: Arc<(Mutex<Confirmed>, Condvar)>,
    address: String,
}

/// How long a flush waits for the broker's confirmations.
const CONFIRM_WAIT: Duration = Duration::from_secs(30);

impl MqttWriter {
    /// Connects to `broker` (waiting for its answer, a few seconds at most) to publish to
    /// `topic`, which may name fields as `{field}`.
    pub fn connect(
        broker: &Broker,
        topic: &str,
        qos_level: u8,
        retain: bool,
    ) -> Result<MqttWriter, String> {
        let (client, mut conn) = Client::new(broker.options(), 1024);
        let address = broker.address();
        // Wait for the broker to accept the connection.
        loop {
            match conn.recv_timeout(Duration::from_secs(5)) {
                Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => break,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    return Err(format!(
                        "cannot connect to the MQTT broker at {address}: {e} (start the broker, or fix `broker`)"
                    ))
                }
                Err(_) => {
                    return Err(format!(
                        "the MQTT broker at {address} did not answer within 5 s"
                    ))
                }
            }
        }
        let state: Arc<(Mutex<Confirmed>, Condvar)> = Arc::default();
        let s = Arc::clone(&state);
        let confirming = qos_level > 0;
        let shown = address.clone();
        std::thread::Builder::new()
            .name("weir-mqtt-sink".into())
            .spawn(move || {
                let mut lost = false;
                for event in conn.iter() {
                    let counted = match event {
                        Ok(Event::Outgoing(Outgoing::Publish(_))) if !confirming => true,
                        Ok(Event::Incoming(Packet::PubAck(_))) if confirming => true,
                        Ok(Event::Incoming(Packet::ConnAck(_))) if lost => {
                            eprintln!("weir: reconnected to the MQTT broker at {shown}");
                            lost = false;
                            false
                        }
                        Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                        Ok(_) => false,
                        Err(e) => {
                            if !lost {
                                eprintln!(
                                    "weir: lost the MQTT broker at {shown} ({e}); reconnecting every second"
                                );
                                lost = true;
                            }
                            std::thread::sleep(Duration::from_secs(1));
                            false
                        }
                    };
                    if counted {
                        let (m, c) = &*s;
                        m.lock().unwrap_or_else(|p| p.into_inner()).confirmed += 1;
                        c.notify_all();
                    }
                }
                let (m, c) = &*s;
                m.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .failed
                    .get_or_insert_with(|| "the connection closed".into());
                c.notify_all();
            })
            .map_err(|e| format!("cannot start the MQTT client: {e}"))?;
        Ok(MqttWriter {
            client,
            topic: template(topic),
            qos: qos(qos_level),
            retain,
            pending: Vec::new(),
            state,
            address,
        })
    }

    /// The topic of a record.
    fn topic_of(&self, line: &[u8]) -> String {
        if self.topic.iter().all(|(_, field)| !field) {
            return self.topic.iter().map(|(t, _)| t.as_str()).collect();
        }
        let record: serde_json::Value = serde_json::from_slice(line).unwrap_or_default();
        self.topic
            .iter()
            .map(|(t, field)| match field {
                false => t.clone(),
                true => {
                    let mut v = &record;
                    for seg in t.split('.') {
                        v = v.get(seg).unwrap_or(&serde_json::Value::Null);
                    }
                    match v {
                        serde_json::Value::String(s) => s.replace(['/', '+', '#'], "_"),
                        serde_json::Value::Null => "null".into(),
                        other => other.to_string(),
                    }
                }
            })
            .collect()
    }
}

/// Splits a topic template into literal text and `{field}` parts.
fn template(topic: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut rest = topic;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        if open > 0 {
            out.push((rest[..open].to_string(), false));
        }
        out.push((rest[open + 1..open + close].to_string(), true));
        rest = &rest[open + close + 1..];
    }
    if !rest.is_empty() {
        out.push((rest.to_string(), false));
    }
    out
}

/// The fields a topic template names.
pub fn template_fields(topic: &str) -> Vec<String> {
    template(topic)
        .into_iter()
        .filter(|(_, f)| *f)
        .map(|(t, _)| t)
        .collect()
}

impl std::io::Write for MqttWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        Ok(buf.len())
    }

    /// Publishes the complete lines pending and waits until the broker confirmed them all.
    fn flush(&mut self) -> std::io::Result<()> {
        self.send()?;
        self.confirm()
    }
}

impl MqttWriter {
    /// Publishes the complete lines pending, without waiting for the broker (a producer on a
    /// schedule; [`confirm`](Self::confirm) waits).
    pub fn send(&mut self) -> std::io::Result<()> {
        let Some(end) = self.pending.iter().rposition(|&b| b == b'\n') else {
            return Ok(());
        };
        let lines: Vec<u8> = self.pending.drain(..=end).collect();
        let mut n = 0u64;
        for line in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let topic = self.topic_of(line);
            self.client
                .publish(topic, self.qos, self.retain, line.to_vec())
                .map_err(|e| std::io::Error::other(format!("cannot publish: {e}")))?;
            n += 1;
        }
        let (m, _) = &*self.state;
        m.lock().unwrap_or_else(|p| p.into_inner()).sent += n;
        Ok(())
    }

    /// Waits until the broker has confirmed every message published (QoS 1), or the client
    /// has written it (QoS 0): 30 s at most.
    pub fn confirm(&mut self) -> std::io::Result<()> {
        let (m, c) = &*self.state;
        let mut s = m.lock().unwrap_or_else(|p| p.into_inner());
        let want = s.sent;
        let deadline = std::time::Instant::now() + CONFIRM_WAIT;
        while s.confirmed < want {
            if let Some(f) = &s.failed {
                return Err(std::io::Error::other(format!(
                    "the MQTT broker at {}: {f}",
                    self.address
                )));
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(std::io::Error::other(format!(
                    "the MQTT broker at {} did not confirm {} messages within {} s",
                    self.address,
                    want - s.confirmed,
                    CONFIRM_WAIT.as_secs()
                )));
            }
            s = c.wait_timeout(s, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        Ok(())
    }
}

impl Drop for MqttWriter {
    fn drop(&mut self) {
        let _ = self.client.disconnect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_wildcards_subscribe_as_plus_and_fill_their_fields() {
        let f = TopicFilter::parse("devices/{device_id}/telemetry", |_| 4).unwrap();
        assert_eq!(f.filter, "devices/+/telemetry");
        assert_eq!(f.values("devices/d7/telemetry"), Some(vec![(4, "d7")]));
        assert_eq!(f.values("devices/d7/status"), None);
        assert_eq!(f.values("devices/d7/telemetry/x"), None);
        let g = TopicFilter::parse("site/{site}/#", |_| 1).unwrap();
        assert_eq!(g.filter, "site/+/#");
        assert_eq!(g.values("site/s1/a/b"), Some(vec![(1, "s1")]));
        assert_eq!(g.values("site/s1"), Some(vec![(1, "s1")]));
        assert!(TopicFilter::parse("a/#/b", |_| 0).is_err());
        assert!(TopicFilter::parse("a/x{y}", |_| 0).is_err());
        assert!(TopicFilter::parse("a/{}", |_| 0).is_err());
    }

    #[test]
    fn topic_templates_name_fields() {
        assert_eq!(
            template("devices/{device_id}/alerts"),
            vec![
                ("devices/".to_string(), false),
                ("device_id".to_string(), true),
                ("/alerts".to_string(), false)
            ]
        );
        assert_eq!(template_fields("a/{x}/{y.z}"), vec!["x", "y.z"]);
    }
}
