//! The writer behind the `pubsub` sink and `weir produce --pubsub`: each record one message,
//! published by Google's client (which batches and retries), its ordering key and attributes
//! taken from fields. A thread of its own runs the client; each message's publication is
//! awaited there and counted under its batch's ticket. A message that cannot be published (the
//! client's retries exhausted) fails the sink; with an ordering key, the client then stops
//! publishing that key, so its order is never broken.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use google_cloud_pubsub::client::Publisher;
use google_cloud_pubsub::model::Message;
use weir_operators::schema::Record;
use weir_operators::sink::MessageOut;
use weir_operators::value::Value;

use super::Connection;

#[derive(Default)]
struct Shared {
    in_flight: usize,
    confirmed: HashMap<usize, u64>,
    failure: Option<String>,
}

/// A Pub/Sub topic as a [`MessageOut`].
pub struct PubSubOut {
    tx: Mutex<Option<tokio::sync::mpsc::UnboundedSender<(Message, usize)>>>,
    shared: Arc<(Mutex<Shared>, Condvar)>,
    ordering_key: Vec<usize>,
    attributes: Vec<(String, usize)>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// The text of a value for a key or attribute (NULL: empty).
fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Str(s) => s.to_string(),
        other => other.to_string(),
    }
}

impl PubSubOut {
    /// A writer to topic `topic`, with ordering keys from the fields at `ordering_key` (their
    /// values as text, joined by `,`) and an attribute per `(name, field)`. Checks first that
    /// the topic exists.
    pub fn open(
        conn: &Connection,
        topic: &str,
        ordering_key: Vec<usize>,
        attributes: Vec<(String, usize)>,
    ) -> Result<PubSubOut, String> {
        let path = conn.path("topics", topic);
        let (c, t) = (conn.clone(), topic.to_string());
        crate::block_on(
            super::SERVICE_TIMEOUT,
            async move { c.check_topic(&t).await },
        )?;
        let shared: Arc<(Mutex<Shared>, Condvar)> = Arc::default();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Message, usize)>();
        let (s, c) = (Arc::clone(&shared), conn.clone());
        let thread = std::thread::Builder::new()
            .name("weir-pubsub-publish".into())
            .spawn(move || {
                let (m, cv) = &*s;
                let fail = |e: String| {
                    let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
                    g.failure.get_or_insert(e);
                    cv.notify_all();
                };
                let rt = match crate::runtime() {
                    Ok(rt) => rt,
                    Err(e) => return fail(e),
                };
                rt.block_on(async {
                    let cred = match c.credentials() {
                        Ok(cr) => cr,
                        Err(e) => return fail(e),
                    };
                    let mut b = Publisher::builder(&path).with_credentials(cred);
                    if let Some(e) = c.endpoint() {
                        b = b.with_endpoint(e);
                    }
                    let publisher = match b.build().await {
                        Ok(p) => p,
                        Err(e) => return fail(format!("cannot make a Pub/Sub publisher: {e}")),
                    };
                    let mut tasks = tokio::task::JoinSet::new();
                    while let Some((msg, ticket)) = rx.recv().await {
                        let fut = publisher.publish(msg);
                        let s = Arc::clone(&s);
                        let (c, path) = (c.clone(), path.clone());
                        tasks.spawn(async move {
                            let res = fut.await;
                            let (m, cv) = &*s;
                            let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
                            g.in_flight -= 1;
                            match res {
                                Ok(_) => *g.confirmed.entry(ticket).or_default() += 1,
                                Err(e) => {
                                    g.failure.get_or_insert(
                                        c.failure(&format!("publishing to `{path}`"), e),
                                    );
                                }
                            }
                            cv.notify_all();
                        });
                        while tasks.try_join_next().is_some() {}
                    }
                    publisher.flush().await;
                    while tasks.join_next().await.is_some() {}
                });
            })
            .map_err(|e| format!("cannot start a publishing thread: {e}"))?;
        Ok(PubSubOut {
            tx: Mutex::new(Some(tx)),
            shared,
            ordering_key,
            attributes,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues `payload` with `ordering_key` and `attributes` (counted under `ticket`).
    pub fn send_message(
        &self,
        payload: Vec<u8>,
        ordering_key: Option<String>,
        attributes: Vec<(String, String)>,
        ticket: usize,
    ) -> Result<(), String> {
        if let Some(f) = self.failure() {
            return Err(f);
        }
        let mut msg = Message::new().set_data(payload);
        if let Some(k) = ordering_key.filter(|k| !k.is_empty()) {
            msg = msg.set_ordering_key(k);
        }
        if !attributes.is_empty() {
            msg = msg.set_attributes(attributes);
        }
        self.shared
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .in_flight += 1;
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        match tx.as_ref().map(|t| t.send((msg, ticket)).is_ok()) {
            Some(true) => Ok(()),
            _ => Err("the publishing thread has stopped".into()),
        }
    }
}

impl MessageOut for PubSubOut {
    fn send(&self, record: &Record, payload: &[u8], ticket: usize) -> Result<(), String> {
        let key = (!self.ordering_key.is_empty()).then(|| {
            self.ordering_key
                .iter()
                .map(|&p| text(&record.values[p]))
                .collect::<Vec<_>>()
                .join(",")
        });
        let attributes = self
            .attributes
            .iter()
            .map(|(name, p)| (name.clone(), text(&record.values[*p])))
            .collect();
        self.send_message(payload.to_vec(), key, attributes, ticket)
    }

    fn poll(&self) {}

    fn confirmed(&self, ticket: usize, records: u64) -> bool {
        let mut s = self.shared.0.lock().unwrap_or_else(|p| p.into_inner());
        if s.confirmed.get(&ticket).copied().unwrap_or(0) >= records {
            s.confirmed.remove(&ticket);
            true
        } else {
            false
        }
    }

    fn failure(&self) -> Option<String> {
        self.shared
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .failure
            .clone()
    }

    fn flush(&self) -> Result<(), String> {
        let (m, cv) = &*self.shared;
        let mut s = m.lock().unwrap_or_else(|p| p.into_inner());
        while s.in_flight > 0 && s.failure.is_none() {
            s = cv
                .wait_timeout(s, Duration::from_millis(50))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        match &s.failure {
            Some(f) => Err(f.clone()),
            None => Ok(()),
        }
    }
}

impl Drop for PubSubOut {
    fn drop(&mut self) {
        // Closing the queue ends the thread once everything queued is published.
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}
