//! The writer behind the `kinesis` sink and `weir produce --kinesis`: records batched into
//! `PutRecords` requests (up to 500 records or 4 MB each) by a thread of its own, each record's
//! partition key taken from fields. Records the service refuses for a reason that passes
//! (`ProvisionedThroughputExceededException`, `InternalFailure`) are sent again, ahead of newer
//! ones, after a backoff doubling from 100 ms to 5 s; a record refused for another reason, or
//! a request that fails ten times in a row, fails the sink.
//!
//! A record's partition key is the values of the key fields as text, joined by `,` (cut to 256
//! characters; `_` when empty); without key fields, records are spread over the shards by a
//! counter.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use weir_operators::schema::Record;
use weir_operators::sink::MessageOut;

use super::Connection;

/// The most records waiting to be sent: past it, `send` waits (backpressure on the sink).
const QUEUE_LIMIT: usize = 20_000;
/// The most records in one request.
const BATCH_RECORDS: usize = 500;
/// The most payload and key bytes in one request (the service allows 5 MB).
const BATCH_BYTES: usize = 4 << 20;

struct Entry {
    key: String,
    data: Vec<u8>,
    ticket: usize,
}

#[derive(Default)]
struct Shared {
    queue: VecDeque<Entry>,
    /// Records taken by the sending thread and not yet answered.
    in_flight: usize,
    confirmed: HashMap<usize, u64>,
    failure: Option<String>,
    closed: bool,
}

/// A Kinesis stream as a [`MessageOut`].
pub struct KinesisOut {
    shared: Arc<(Mutex<Shared>, Condvar)>,
    key: Vec<usize>,
    counter: AtomicU64,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Retries of throttled records, for the summary.
    pub retried: Arc<AtomicU64>,
}

impl KinesisOut {
    /// A writer to `conn`'s stream, keying records by the fields at `key`. Checks first that
    /// the stream exists.
    pub fn open(conn: &Connection, key: Vec<usize>) -> Result<KinesisOut, String> {
        let c = conn.clone();
        crate::block_on(super::SERVICE_TIMEOUT, async move {
            let client = c.client().await?;
            super::check_stream(&client, &c).await
        })?;
        let shared: Arc<(Mutex<Shared>, Condvar)> = Arc::default();
        let retried = Arc::new(AtomicU64::new(0));
        let (s, r, c) = (Arc::clone(&shared), Arc::clone(&retried), conn.clone());
        let thread = std::thread::Builder::new()
            .name(format!("weir-kinesis-put-{}", conn.stream))
            .spawn(move || put_loop(c, s, r))
            .map_err(|e| format!("cannot start a writing thread: {e}"))?;
        Ok(KinesisOut {
            shared,
            key,
            counter: AtomicU64::new(0),
            thread: Mutex::new(Some(thread)),
            retried,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues one message with partition key `key` (counted under `ticket`).
    pub fn send_keyed(&self, key: String, data: Vec<u8>, ticket: usize) -> Result<(), String> {
        let (m, cv) = &*self.shared;
        let mut s = m.lock().unwrap_or_else(|p| p.into_inner());
        while s.queue.len() >= QUEUE_LIMIT && s.failure.is_none() {
            s = cv
                .wait_timeout(s, Duration::from_millis(50))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        if let Some(f) = &s.failure {
            return Err(f.clone());
        }
        s.queue.push_back(Entry { key, data, ticket });
        cv.notify_all();
        Ok(())
    }

    /// The partition key of `record`.
    fn key_of(&self, record: &Record) -> String {
        use std::fmt::Write as _;
        if self.key.is_empty() {
            return self.counter.fetch_add(1, Ordering::Relaxed).to_string();
        }
        let mut k = String::new();
        for (i, &p) in self.key.iter().enumerate() {
            if i > 0 {
                k.push(',');
            }
            let _ = write!(k, "{}", record.values[p]);
        }
        partition_key(k)
    }
}

/// A partition key the service takes: 1 to 256 characters.
pub fn partition_key(k: String) -> String {
    match k.char_indices().nth(256) {
        _ if k.is_empty() => "_".into(),
        Some((at, _)) => k[..at].to_string(),
        None => k,
    }
}

impl MessageOut for KinesisOut {
    fn send(&self, record: &Record, payload: &[u8], ticket: usize) -> Result<(), String> {
        self.send_keyed(self.key_of(record), payload.to_vec(), ticket)
    }

    fn poll(&self) {}

    fn confirmed(&self, ticket: usize, records: u64) -> bool {
        let mut s = self.lock();
        if s.confirmed.get(&ticket).copied().unwrap_or(0) >= records {
            s.confirmed.remove(&ticket);
            true
        } else {
            false
        }
    }

    fn failure(&self) -> Option<String> {
        self.lock().failure.clone()
    }

    fn flush(&self) -> Result<(), String> {
        let (m, cv) = &*self.shared;
        let mut s = m.lock().unwrap_or_else(|p| p.into_inner());
        while (!s.queue.is_empty() || s.in_flight > 0) && s.failure.is_none() {
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

impl Drop for KinesisOut {
    fn drop(&mut self) {
        {
            let (m, cv) = &*self.shared;
            m.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
            cv.notify_all();
        }
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

/// The sending thread: takes batches off the queue and puts them, until the writer is dropped
/// with nothing left to send.
fn put_loop(conn: Connection, shared: Arc<(Mutex<Shared>, Condvar)>, retried: Arc<AtomicU64>) {
    let (m, cv) = &*shared;
    let fail = |e: String| {
        let mut s = m.lock().unwrap_or_else(|p| p.into_inner());
        s.failure.get_or_insert(e);
        s.in_flight = 0;
        cv.notify_all();
    };
    let rt = match crate::runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    rt.block_on(async {
        let client = match conn.client().await {
            Ok(c) => c,
            Err(e) => return fail(e),
        };
        let mut backoff = Duration::ZERO;
        let mut failures = 0;
        loop {
            let batch: Vec<Entry> = {
                let mut s = m.lock().unwrap_or_else(|p| p.into_inner());
                while s.queue.is_empty() && !s.closed {
                    s = cv
                        .wait_timeout(s, Duration::from_millis(50))
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                if s.queue.is_empty() || s.failure.is_some() {
                    return;
                }
                let (mut n, mut bytes) = (0, 0);
                while n < s.queue.len() && n < BATCH_RECORDS {
                    let e = &s.queue[n];
                    bytes += e.data.len() + e.key.len();
                    if n > 0 && bytes > BATCH_BYTES {
                        break;
                    }
                    n += 1;
                }
                s.in_flight = n;
                let batch = s.queue.drain(..n).collect();
                cv.notify_all();
                batch
            };
            if !backoff.is_zero() {
                tokio::time::sleep(backoff).await;
            }
            let entries: Vec<PutRecordsRequestEntry> = batch
                .iter()
                .map(|e| {
                    PutRecordsRequestEntry::builder()
                        .data(Blob::new(e.data.clone()))
                        .partition_key(&e.key)
                        .build()
                        .expect("data and key are set")
                })
                .collect();
            let res = client
                .put_records()
                .stream_name(&conn.stream)
                .set_records(Some(entries))
                .send()
                .await;
            let mut s = m.lock().unwrap_or_else(|p| p.into_inner());
            s.in_flight = 0;
            match res {
                Err(e) => {
                    failures += 1;
                    let text = aws_sdk_kinesis::error::DisplayErrorContext(&e).to_string();
                    if failures >= 10 {
                        s.failure.get_or_insert(conn.failure("writing records", e));
                        cv.notify_all();
                        return;
                    }
                    if text.contains("ProvisionedThroughputExceeded") {
                        retried.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    }
                    backoff = next_backoff(backoff);
                    // Sent again first, in order.
                    for e in batch.into_iter().rev() {
                        s.queue.push_front(e);
                    }
                }
                Ok(out) => {
                    failures = 0;
                    let results = out.records();
                    let mut again = Vec::new();
                    for (k, e) in batch.into_iter().enumerate() {
                        match results.get(k).and_then(|r| r.error_code()) {
                            None => *s.confirmed.entry(e.ticket).or_default() += 1,
                            Some(code)
                                if code.contains("ProvisionedThroughputExceeded")
                                    || code.contains("InternalFailure") =>
                            {
                                again.push(e)
                            }
                            Some(code) => {
                                let why = results[k].error_message().unwrap_or("");
                                s.failure.get_or_insert(format!(
                                    "Kinesis stream `{}` refused a record: {code}: {why}",
                                    conn.stream
                                ));
                                cv.notify_all();
                                return;
                            }
                        }
                    }
                    if again.is_empty() {
                        backoff = Duration::ZERO;
                    } else {
                        retried.fetch_add(again.len() as u64, Ordering::Relaxed);
                        backoff = next_backoff(backoff);
                        for e in again.into_iter().rev() {
                            s.queue.push_front(e);
                        }
                    }
                }
            }
            cv.notify_all();
        }
    });
}

/// The next wait before sending refused records again: 100 ms, doubling to 5 s.
pub fn next_backoff(d: Duration) -> Duration {
    (d * 2).clamp(Duration::from_millis(100), Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_keys_are_what_the_service_takes() {
        assert_eq!(partition_key(String::new()), "_");
        assert_eq!(partition_key("d1".into()), "d1");
        let long: String = "é".repeat(300);
        assert_eq!(partition_key(long).chars().count(), 256);
    }

    #[test]
    fn backoff_doubles_within_bounds() {
        let mut d = Duration::ZERO;
        let mut seen = Vec::new();
        for _ in 0..8 {
            d = next_backoff(d);
            seen.push(d.as_millis());
        }
        assert_eq!(seen, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
    }
}
