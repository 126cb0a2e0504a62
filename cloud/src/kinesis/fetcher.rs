//! The thread that fetches a worker's shards (`GetRecords`) and hands their records to the
//! source's operator through a bounded channel: when the pipeline is busy or held back, the
//! channel fills and fetching waits (the records stay in the stream).
//!
//! Each shard is polled at most every `poll_interval` while it has nothing new (Kinesis allows
//! five reads per shard and second), at once while it has. An expired iterator is renewed after
//! the last record read; a throttled read (`ProvisionedThroughputExceeded`) backs off, doubling
//! up to 5 s. The stream's shards are listed again every few seconds and whenever a shard ends:
//! new shards of this worker are announced ([`Fetched::Shard`]) before the end of their parents
//! ([`Fetched::Ended`]), and are read once their parents are read to their end.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::error::DisplayErrorContext;
use aws_sdk_kinesis::primitives::DateTime;
use aws_sdk_kinesis::types::ShardIteratorType;
use aws_sdk_kinesis::Client;

use super::positions::ShardPosition;
use super::{list_shards, owner, Connection, ShardInfo};

/// Where a source starts in shards it has no position for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// At the oldest record kept.
    TrimHorizon,
    /// At the tip: only records written from now on.
    Latest,
    /// At the first record that arrived at or after this time (µs since the epoch).
    At(i64),
}

/// One record of a shard.
#[derive(Clone, Debug)]
pub struct ShardRecord {
    /// Its sequence number.
    pub seq: String,
    /// When the stream received it (ms since the epoch).
    pub arrival_ms: Option<i64>,
    /// Its payload.
    pub data: Vec<u8>,
}

/// What the fetcher hands to the source.
#[derive(Debug)]
pub enum Fetched {
    /// A shard this worker reads, with its parents: announced before any of its records and
    /// before its parents' [`Fetched::Ended`].
    Shard {
        /// Its id.
        id: Arc<str>,
        /// The shards it was made from.
        parents: Vec<String>,
    },
    /// A shard's next records, in order (maybe none), how far its last read was behind the
    /// tip, and whether nothing more is there now.
    Records {
        /// The shard.
        shard: Arc<str>,
        /// The records.
        records: Vec<ShardRecord>,
        /// Milliseconds behind the tip, as the service said.
        behind_ms: Option<i64>,
        /// The read found nothing more: the shard is at its tip.
        caught_up: bool,
    },
    /// The shard is closed and read to its end.
    Ended {
        /// The shard.
        shard: Arc<str>,
    },
    /// Bounded: every shard of this worker is read to its end or its tip.
    AllDone,
    /// A failure worth showing (fetching goes on, retrying).
    Error(String),
}

/// What one worker's fetcher reads.
pub struct FetchPlan {
    /// The stream.
    pub conn: Connection,
    /// This worker and the number of workers over all processes.
    pub worker: usize,
    /// The number of workers over all processes.
    pub peers: usize,
    /// Where shards without a position start.
    pub start: Start,
    /// Positions to resume from, by shard.
    pub resume: BTreeMap<String, ShardPosition>,
    /// Stop at each shard's tip.
    pub bounded: bool,
    /// How long to wait before polling a shard that had nothing new.
    pub poll_interval: Duration,
    /// The most records per read.
    pub limit: i32,
    /// Shards read to their end, shared by the workers of the process (a merged shard waits
    /// for its second parent, which another worker may read).
    pub ended: Arc<Mutex<HashSet<String>>>,
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    /// Waiting for its parents to end.
    Waiting,
    /// Being read.
    Reading,
    /// Read to its tip (bounded) or its end.
    Done,
}

struct Shard {
    id: Arc<str>,
    parents: Vec<String>,
    state: State,
    iterator: Option<String>,
    /// The last sequence number read (to renew an expired iterator after it).
    last: Option<String>,
    /// Where reading starts, before the first record.
    from: Option<ShardPosition>,
    next_poll: Instant,
    backoff: Duration,
}

/// Fetches the shards of `plan.worker` until `stop` is set (or, bounded, until all are done),
/// sending what it reads to `tx` and calling `wake` after each message.
pub fn run(
    plan: FetchPlan,
    tx: SyncSender<Fetched>,
    wake: impl Fn() + Send + 'static,
    stop: Arc<AtomicBool>,
) {
    let rt = match crate::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = tx.send(Fetched::Error(e));
            return;
        }
    };
    let send = |m: Fetched| -> bool {
        let mut m = m;
        loop {
            match tx.try_send(m) {
                Ok(()) => {
                    wake();
                    return true;
                }
                Err(TrySendError::Full(back)) => {
                    if stop.load(Ordering::Relaxed) {
                        return false;
                    }
                    m = back;
                    wake();
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(TrySendError::Disconnected(_)) => return false,
            }
        }
    };
    rt.block_on(async {
        let client = loop {
            match plan.conn.client().await {
                Ok(c) => break c,
                Err(e) => {
                    if !send(Fetched::Error(e)) {
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        let mut f = Fetcher {
            plan: &plan,
            client,
            shards: Vec::new(),
            known: HashMap::new(),
            listed: None,
        };
        let mut first = true;
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            if first && f.listed.is_some() {
                first = false;
                if f.shards.is_empty() {
                    // No shard is this worker's (shards made later go to their parents'
                    // workers).
                    send(Fetched::AllDone);
                    return;
                }
            }
            if f.listed.is_none_or(|at| at.elapsed() >= LIST_EVERY) {
                match f.list().await {
                    Ok(new) => {
                        for m in new {
                            if !send(m) {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        if !send(Fetched::Error(e)) {
                            return;
                        }
                        f.listed = Some(Instant::now());
                    }
                }
            }
            f.start_ready().await;
            let now = Instant::now();
            let mut ended_any = false;
            for k in 0..f.shards.len() {
                if f.shards[k].state != State::Reading || f.shards[k].next_poll > now {
                    continue;
                }
                let out = f.read(k).await;
                for m in out {
                    let ended = matches!(m, Fetched::Ended { .. });
                    if ended {
                        // Announce its children first.
                        match f.list().await {
                            Ok(new) => {
                                for m in new {
                                    if !send(m) {
                                        return;
                                    }
                                }
                            }
                            Err(e) => {
                                if !send(Fetched::Error(e)) {
                                    return;
                                }
                            }
                        }
                        ended_any = true;
                    }
                    if !send(m) {
                        return;
                    }
                }
            }
            if plan.bounded
                && f.shards.iter().all(|s| s.state == State::Done)
                && !ended_any
                && f.listed.is_some()
            {
                // A last look for shards made since the last listing.
                match f.list().await {
                    Ok(new) if new.is_empty() => {
                        send(Fetched::AllDone);
                        return;
                    }
                    Ok(new) => {
                        for m in new {
                            if !send(m) {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        if !send(Fetched::Error(e)) {
                            return;
                        }
                    }
                }
            }
            let next = f
                .shards
                .iter()
                .filter(|s| s.state == State::Reading)
                .map(|s| s.next_poll)
                .min()
                .unwrap_or(now + Duration::from_millis(100));
            let wait = next
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100));
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
    });
}

/// An arrival time in whole milliseconds, rounded: the service sends seconds with a decimal
/// fraction, which can arrive a hair below the millisecond it names.
pub fn arrival_ms(t: &DateTime) -> i64 {
    t.secs() * 1000 + i64::from((t.subsec_nanos() + 500_000) / 1_000_000)
}

/// How often the stream's shards are listed again (besides whenever a shard ends).
const LIST_EVERY: Duration = Duration::from_secs(5);

struct Fetcher<'p> {
    plan: &'p FetchPlan,
    client: Client,
    shards: Vec<Shard>,
    /// Every shard listed, by id.
    known: HashMap<String, ShardInfo>,
    listed: Option<Instant>,
}

impl Fetcher<'_> {
    /// Lists the stream's shards and takes this worker's new ones; returns their
    /// announcements.
    async fn list(&mut self) -> Result<Vec<Fetched>, String> {
        let all = list_shards(&self.client, &self.plan.conn).await?;
        self.listed = Some(Instant::now());
        let mut out = Vec::new();
        for s in &all {
            if self.shards.iter().any(|m| *m.id == *s.id)
                || owner(&all, &s.id, self.plan.peers) != self.plan.worker
            {
                continue;
            }
            let from = self.plan.resume.get(&s.id).cloned();
            let id: Arc<str> = Arc::from(s.id.as_str());
            let parents: Vec<String> = s
                .parents
                .iter()
                .filter(|p| all.iter().any(|q| &q.id == *p))
                .cloned()
                .collect();
            out.push(Fetched::Shard {
                id: Arc::clone(&id),
                parents: parents.clone(),
            });
            let finished = from.as_ref().is_some_and(|p| p.finished);
            if finished {
                self.mark_ended(&s.id);
                out.push(Fetched::Ended {
                    shard: Arc::clone(&id),
                });
            }
            self.shards.push(Shard {
                id,
                parents,
                state: if finished {
                    State::Done
                } else {
                    State::Waiting
                },
                iterator: None,
                last: None,
                from,
                next_poll: Instant::now(),
                backoff: Duration::ZERO,
            });
        }
        self.known = all.into_iter().map(|s| (s.id.clone(), s)).collect();
        Ok(out)
    }

    fn mark_ended(&self, id: &str) {
        self.plan
            .ended
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string());
    }

    /// Starts reading the waiting shards whose parents have ended.
    async fn start_ready(&mut self) {
        for k in 0..self.shards.len() {
            if self.shards[k].state != State::Waiting {
                continue;
            }
            let ready = {
                let ended = self.plan.ended.lock().unwrap_or_else(|p| p.into_inner());
                self.shards[k].parents.iter().all(|p| {
                    ended.contains(p) || self.plan.resume.get(p).is_some_and(|q| q.finished)
                })
            };
            if !ready {
                continue;
            }
            let shard = &self.shards[k];
            // A shard made by resharding is read from its start; the others by `start`.
            let child = !shard.parents.is_empty();
            match self.iterator(&shard.id, shard.from.as_ref(), child).await {
                Ok(it) => {
                    let s = &mut self.shards[k];
                    s.iterator = it;
                    s.state = State::Reading;
                    s.next_poll = Instant::now();
                }
                Err(_) => {
                    // Tried again on the next round.
                }
            }
        }
    }

    /// An iterator for shard `id` at `from`, or by the start rule.
    async fn iterator(
        &self,
        id: &str,
        from: Option<&ShardPosition>,
        child: bool,
    ) -> Result<Option<String>, String> {
        let mut req = self
            .client
            .get_shard_iterator()
            .stream_name(&self.plan.conn.stream)
            .shard_id(id);
        req = match from.and_then(|p| p.seq.as_ref().map(|s| (s, p.after))) {
            Some((seq, after)) => req
                .shard_iterator_type(if after {
                    ShardIteratorType::AfterSequenceNumber
                } else {
                    ShardIteratorType::AtSequenceNumber
                })
                .starting_sequence_number(seq),
            None if child || from.is_some() => {
                req.shard_iterator_type(ShardIteratorType::TrimHorizon)
            }
            None => match self.plan.start {
                Start::TrimHorizon => req.shard_iterator_type(ShardIteratorType::TrimHorizon),
                Start::Latest => req.shard_iterator_type(ShardIteratorType::Latest),
                Start::At(us) => req
                    .shard_iterator_type(ShardIteratorType::AtTimestamp)
                    .timestamp(DateTime::from_millis(us.div_euclid(1000))),
            },
        };
        let out = req
            .send()
            .await
            .map_err(|e| self.plan.conn.failure("getting a shard iterator", e))?;
        Ok(out.shard_iterator().map(String::from))
    }

    /// Reads shard `k` once.
    async fn read(&mut self, k: usize) -> Vec<Fetched> {
        let Some(it) = self.shards[k].iterator.clone() else {
            return self.end(k);
        };
        let res = self
            .client
            .get_records()
            .shard_iterator(it)
            .limit(self.plan.limit)
            .send()
            .await;
        let out = match res {
            Ok(out) => out,
            Err(e) => {
                let text = DisplayErrorContext(&e).to_string();
                let s = &mut self.shards[k];
                if text.contains("ExpiredIterator") {
                    let from = s.last.clone().map(|seq| ShardPosition {
                        seq: Some(seq),
                        after: true,
                        ..ShardPosition::start()
                    });
                    let (id, from, child) = (Arc::clone(&s.id), from.or(s.from.clone()), true);
                    if let Ok(it) = self.iterator(&id, from.as_ref(), child).await {
                        self.shards[k].iterator = it;
                    }
                    return Vec::new();
                }
                s.backoff =
                    (s.backoff * 2).clamp(Duration::from_millis(200), Duration::from_secs(5));
                s.next_poll = Instant::now() + s.backoff;
                if text.contains("ProvisionedThroughputExceeded") {
                    return Vec::new();
                }
                return vec![Fetched::Error(self.plan.conn.failure("reading a shard", e))];
            }
        };
        let s = &mut self.shards[k];
        s.backoff = Duration::ZERO;
        let behind = out.millis_behind_latest();
        let next = out.next_shard_iterator().map(String::from);
        // The records taken, their payloads without a copy.
        let records: Vec<ShardRecord> = out
            .records
            .into_iter()
            .map(|r| ShardRecord {
                arrival_ms: r.approximate_arrival_timestamp.as_ref().map(arrival_ms),
                seq: r.sequence_number,
                data: r.data.into_inner(),
            })
            .collect();
        if let Some(r) = records.last() {
            s.last = Some(r.seq.clone());
        }
        let caught_up = records.is_empty() && behind.unwrap_or(0) == 0;
        // More may be there at once after records; after nothing, wait a poll interval.
        s.next_poll = if !records.is_empty() {
            Instant::now()
        } else {
            Instant::now() + self.plan.poll_interval
        };
        s.iterator = next;
        let mut msgs = vec![Fetched::Records {
            shard: Arc::clone(&s.id),
            records,
            behind_ms: behind,
            caught_up,
        }];
        if s.iterator.is_none() {
            msgs.extend(self.end(k));
        } else if caught_up
            && self.plan.bounded
            && !self.known.get(&*s.id).is_some_and(|i| i.closed)
        {
            self.shards[k].state = State::Done;
        }
        msgs
    }

    /// Shard `k` is read to its end.
    fn end(&mut self, k: usize) -> Vec<Fetched> {
        let s = &mut self.shards[k];
        s.state = State::Done;
        let id = Arc::clone(&s.id);
        self.mark_ended(&id);
        vec![Fetched::Ended { shard: id }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrival_times_keep_the_millisecond_the_service_named() {
        // 1796467214.123 as a double is 1796467214.12299990654...: truncated, it would be
        // ...122, and a start at its time would begin a millisecond early.
        let t = DateTime::from_secs_f64(1_796_467_214.123);
        assert_eq!(arrival_ms(&t), 1_796_467_214_123);
        assert_eq!(arrival_ms(&DateTime::from_millis(5)), 5);
    }
}
