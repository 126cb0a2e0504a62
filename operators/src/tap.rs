//! Taps: a look at the records flowing out of a component's port, and at how far its event
//! time has come, without changing the pipeline.
//!
//! A [`Tap`] is shared by the workers of a process and by whoever watches: `weir tap` (which
//! [subscribes](Tap::subscribe) for the first N records) and the dashboard (which reads the
//! [most recent](Tap::recent) records). The [`tap`] operator reads a stream beside its other
//! readers: it always notes the stream's frontier (the port's watermark, see
//! [`Tap::frontier`]), and encodes records as JSON lines only while someone watches, so an
//! unwatched tap costs one atomic load per batch. A subscriber gets every record; readers of
//! the recent records only make the tap keep each chunk's last few, at most ten times a
//! second, so tailing a fast stream costs little.
//!
//! ```
//! use std::sync::Arc;
//! use timely::dataflow::operators::ToStream;
//! use weir_operators::{chunk::arrow_schema, convert::to_chunks, schema::*, value::*};
//! use weir_operators::tap::{tap, Tap};
//!
//! let schema = Schema::new(vec![Field::new("n", FieldType::I64)]);
//! let t = Arc::new(Tap::new("transforms.x", &schema, 2));
//! let first = t.subscribe(Some(2));
//! let t2 = Arc::clone(&t);
//! timely::example(move |scope| {
//!     let rows = (0..3).map(|n| Record::new(vec![Value::I64(n)])).to_stream(scope).container::<Vec<Record>>();
//!     tap(&to_chunks(rows, arrow_schema(&schema)), t2);
//! });
//! // The subscriber got the first two records; the recent ring keeps the last two.
//! assert_eq!(first.iter().collect::<Vec<_>>(), ["{\"n\":0}", "{\"n\":1}"]);
//! let recent: Vec<String> = t.recent(0).into_iter().map(|(_, l)| l).collect();
//! assert_eq!(recent, ["{\"n\":1}", "{\"n\":2}"]);
//! // The stream is complete: its frontier is empty.
//! assert_eq!(t.frontier(), None);
//! ```

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;

use crate::chunk::Chunk;
use crate::encode::{Encoder, Format};
use crate::schema::Schema;
use crate::Batches;

/// A port's records and frontier, for those who watch (see the [module](self)).
pub struct Tap {
    name: String,
    encoder: Encoder,
    /// The frontier seen at the port: `u64::MAX` once the stream is complete.
    frontier: AtomicU64,
    /// Whether anyone watches: subscribers with records still to take, plus readers of the
    /// recent records.
    watchers: AtomicUsize,
    inner: Mutex<Inner>,
}

struct Inner {
    /// The last records, each with its sequence number (from 1).
    recent: VecDeque<(u64, String)>,
    keep: usize,
    /// Records seen while watched.
    seq: u64,
    /// When recent records were last kept, for readers of recent records only.
    last_recent: Option<std::time::Instant>,
    subscribers: Vec<Subscriber>,
}

struct Subscriber {
    to: Sender<String>,
    /// Records still to send (`None`: no limit).
    left: Option<u64>,
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap").field("name", &self.name).finish()
    }
}

impl Tap {
    /// A tap on the port `name` (as the user writes it: `transforms.late_readings.late`),
    /// whose records have `schema`, keeping the last `keep` records seen while watched.
    pub fn new(name: &str, schema: &Schema, keep: usize) -> Tap {
        Tap {
            name: name.to_string(),
            encoder: Encoder::new(Format::Jsonl, schema),
            frontier: AtomicU64::new(0),
            watchers: AtomicUsize::new(0),
            inner: Mutex::new(Inner {
                recent: VecDeque::new(),
                keep,
                seq: 0,
                last_recent: None,
                subscribers: Vec::new(),
            }),
        }
    }

    /// The port's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The frontier at the port, in event-time microseconds: every record still to come out
    /// of it has a time at or past this (its watermark). `None` once the stream is complete.
    pub fn frontier(&self) -> Option<u64> {
        let f = self.frontier.load(Relaxed);
        (f != u64::MAX).then_some(f)
    }

    /// Every record out of the port from now on, as a JSON line, up to `limit` of them. The
    /// receiver's iteration ends once it has had them all, or when the run ends.
    pub fn subscribe(&self, limit: Option<u64>) -> Receiver<String> {
        let (to, from) = channel();
        if limit != Some(0) {
            let mut inner = self.lock();
            inner.subscribers.push(Subscriber { to, left: limit });
            self.watchers.fetch_add(1, Relaxed);
        }
        from
    }

    /// Starts keeping the recent records (a reader of [`Tap::recent`] arrived). Each call
    /// needs its [`Tap::unwatch`].
    pub fn watch(&self) {
        self.watchers.fetch_add(1, Relaxed);
    }

    /// Ends a [`Tap::watch`].
    pub fn unwatch(&self) {
        self.watchers.fetch_sub(1, Relaxed);
    }

    /// The recent records with sequence numbers after `since` (0 for all kept), oldest first.
    pub fn recent(&self, since: u64) -> Vec<(u64, String)> {
        let inner = self.lock();
        inner
            .recent
            .iter()
            .filter(|(s, _)| *s > since)
            .cloned()
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn offer(&self, chunk: &Chunk, buf: &mut Vec<u8>) {
        let n = chunk.len();
        let (skip, keep) = {
            let mut inner = self.lock();
            if inner.subscribers.is_empty() {
                // Only the recent records are wanted: encode the chunk's last few, at most ten
                // times a second (a page shows a handful, twice a second), and count the rest.
                let now = std::time::Instant::now();
                if inner
                    .last_recent
                    .is_some_and(|t| now.duration_since(t) < std::time::Duration::from_millis(100))
                {
                    inner.seq += n as u64;
                    return;
                }
                inner.last_recent = Some(now);
                let keep = n.min(inner.keep);
                (n - keep, keep)
            } else {
                (0, n)
            }
        };
        buf.clear();
        if skip == 0 {
            self.encoder.encode_chunk(chunk, buf);
        } else {
            self.encoder.encode_chunk(&chunk.slice(skip, keep), buf);
        }
        let text = String::from_utf8_lossy(buf);
        let mut inner = self.lock();
        inner.seq += skip as u64;
        for line in text.lines() {
            inner.seq += 1;
            let seq = inner.seq;
            if inner.keep > 0 {
                if inner.recent.len() == inner.keep {
                    inner.recent.pop_front();
                }
                inner.recent.push_back((seq, line.to_string()));
            }
            let mut ended = 0;
            inner.subscribers.retain_mut(|s| {
                let open = s.left != Some(0) && s.to.send(line.to_string()).is_ok();
                if let Some(l) = &mut s.left {
                    *l = l.saturating_sub(1);
                }
                let keep = open && s.left != Some(0);
                ended += usize::from(!keep);
                keep
            });
            if ended > 0 {
                self.watchers.fetch_sub(ended, Relaxed);
            }
        }
    }

    fn close(&self) {
        self.frontier.store(u64::MAX, Relaxed);
        let mut inner = self.lock();
        let n = inner.subscribers.len();
        inner.subscribers.clear();
        self.watchers.fetch_sub(n, Relaxed);
    }
}

/// Reads `input` into `tap`, beside the stream's other readers.
pub fn tap(input: &Batches<'_>, tap: Arc<Tap>) {
    let mut buf = Vec::new();
    let name = format!("tap {}", tap.name);
    input
        .clone()
        .sink(Pipeline, &name, move |(input, frontier)| {
            let watched = tap.watchers.load(Relaxed) > 0;
            input.for_each(|_cap, data: &mut Vec<Chunk>| {
                if watched {
                    for c in data.iter() {
                        tap.offer(c, &mut buf);
                    }
                }
            });
            match frontier.frontier().first() {
                Some(t) => {
                    tap.frontier.fetch_max(*t, Relaxed);
                }
                None => tap.close(),
            }
        });
}
