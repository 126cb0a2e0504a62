//! The `kinesis` source: records of a Kinesis data stream, one record per Kinesis record (a
//! JSON object or a CSV row), at least once across crashes.
//!
//! **Shards.** Each worker reads the shards [`owner`](super::owner) gives it, through a
//! fetching thread of its own ([`fetcher`](super::fetcher)). Each shard has its own watermark
//! (idle rule included: a shard is idle only when it is at its tip); the worker's capability is
//! the least of its shards'. A shard made by resharding starts from the largest event time of
//! its parents (it continues their keys), and is read only after them.
//!
//! **Event time** is a field of the record, or its arrival time in the stream
//! (`timestamp_from = "arrival"`).
//!
//! **Positions.** Every `commit_interval` each worker writes, for each of its shards, the
//! sequence number of the oldest record whose outputs the sinks may not all have written, and
//! its recovery point, to the positions directory ([`positions`](super::positions)); a
//! restarted source resumes there with the shard's watermark restored, and skips the records
//! read again whose outputs were all written (as the Kafka source does with its commits). A
//! bounded source that reaches its end writes where it stopped. (Pipelines with checkpoints
//! refuse Kinesis sources: their positions are kept only this way.)
//!
//! **Lag.** Each read says how many milliseconds the shard's reader is behind its tip; the
//! source shows it per shard in the status lines and the summary.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{sync_channel, Receiver, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use timely::dataflow::Scope;
use weir_operators::clock::RunClock;
use weir_operators::control::RunControl;
use weir_operators::decode::DecodeSpec;
use weir_operators::flow::{Flow, SourceEnv};
use weir_operators::kafka::Replay;
use weir_operators::metrics::ComponentMetrics;
use weir_operators::reading::{reading_source, Batch, Output, Progress};
use weir_operators::value::Micros;
use weir_operators::watermark::WatermarkSpec;
use weir_operators::{Batches, Time};

use super::fetcher::{self, FetchPlan, Fetched, Start};
use super::positions::{Positions, ShardPosition};
use super::Connection;

/// A validated Kinesis source. The engine fills in `resume`, `resume_frontier` and `store`
/// before the run.
#[derive(Clone, Debug)]
pub struct KinesisSourceSpec {
    /// How records are decoded.
    pub decode: Arc<DecodeSpec>,
    /// Whether records are CSV rows (columns in schema order) rather than JSON objects.
    pub csv: bool,
    /// The stream and the service.
    pub conn: Connection,
    /// Where shards without a position start.
    pub start: Start,
    /// Whether to stop once every shard is read to its tip.
    pub bounded: bool,
    /// How long to wait before reading a shard again that had nothing new.
    pub poll_interval: Duration,
    /// How often positions are written.
    pub commit_interval: Duration,
    /// Where positions are kept (`None`: nowhere; each run starts at `start`).
    pub positions: Option<PathBuf>,
    /// When records' outputs are all written (from the plan).
    pub replay: Replay,
    /// Positions read before the run, by shard.
    pub resume: BTreeMap<String, ShardPosition>,
    /// When resuming: every output at an earlier time was written.
    pub resume_frontier: Option<Time>,
    /// This process's positions file (set before the run when `positions` is).
    pub store: Option<Arc<Positions>>,
    /// The shards' state, for the summary and status lines.
    pub status: Arc<Shards>,
    /// Shards read to their end, shared by the workers of a process.
    pub ended: Arc<Mutex<HashSet<String>>>,
}

/// The state of one shard a source reads, for the run summary and status lines.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardStatus {
    /// The shard's id.
    pub shard: String,
    /// "waiting" (for its parents), "reading" or "ended".
    pub state: String,
    /// Records read from it in this run.
    pub records: u64,
    /// The last sequence number read.
    pub last: Option<String>,
    /// How far its reader was behind the tip at the last read, in milliseconds.
    pub behind_ms: i64,
    /// The shard's watermark (µs; `i64::MIN` before its first record).
    pub watermark: Micros,
}

/// The shards of a source, shared by its workers.
#[derive(Debug, Default)]
pub struct Shards {
    inner: Mutex<BTreeMap<String, ShardStatus>>,
}

impl Shards {
    /// Sets one shard's status.
    pub fn set(&self, status: ShardStatus) {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(status.shard.clone(), status);
    }

    /// Every shard's status, by id.
    pub fn snapshot(&self) -> Vec<ShardStatus> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

/// Builds the Kinesis source on this worker: returns (records, dead letters).
pub fn kinesis_source<'s>(
    scope: Scope<'s, Time>,
    name: &str,
    spec: Arc<KinesisSourceSpec>,
    env: SourceEnv,
    metrics: Arc<ComponentMetrics>,
) -> (Batches<'s>, Batches<'s>) {
    let (index, peers) = (scope.index(), scope.peers());
    let worker = scope.worker().clone();
    // Idleness is per shard, decided here.
    let mut out = Output::of(&spec.decode);
    out.watermark.idle_timeout = None;
    let (flow, ctl, clock) = (env.flow.clone(), env.ctl.clone(), env.clock);
    let source = name.to_string();
    let m = Arc::clone(&metrics);
    reading_source(scope, name, out, env, metrics, move |address| {
        let wake = Mutex::new(worker.sync_activator_for(address.to_vec()));
        let mut reader = Reader::new(&source, &spec, index, peers, flow, ctl, clock, m);
        let mut wake = Some(move || {
            let _ = wake.lock().map(|w| w.activate());
        });
        move |batch: &mut Batch| {
            if let Some(w) = wake.take() {
                reader.start(w);
            }
            if let Some(e) = reader.failure.take() {
                batch.failure = Some(e);
                return Progress::Done;
            }
            reader.step(batch)
        }
    })
}

/// Records read from a shard but not yet known to be written, in runs of up to [`RUN`]: the
/// first record's sequence number, the shard's state before it, and the latest done time.
struct Pending {
    seq: String,
    max_seen: Micros,
    idle_floor: Micros,
    done: Time,
    records: u32,
}

/// Records per pending run: the granularity of positions.
const RUN: u32 = 1024;

/// One shard on this worker.
struct Part {
    id: Arc<str>,
    max_seen: Micros,
    idle_floor: Micros,
    last_input: Instant,
    caught_up: bool,
    behind_ms: i64,
    records: u64,
    last: Option<String>,
    pending: VecDeque<Pending>,
    ended: bool,
    /// Bounded: read to its tip.
    done: bool,
    written: Option<ShardPosition>,
    /// From the resume position: records up to it were read before the restart.
    before: Option<ShardPosition>,
}

impl Part {
    fn watermark(&self, spec: &WatermarkSpec, floor: Micros) -> Micros {
        spec.of(self.max_seen, self.idle_floor).max(floor)
    }

    /// "ended", "reading" (records read, or a read reached its tip) or "waiting" (for its
    /// parents).
    fn state(&self) -> &'static str {
        if self.ended {
            "ended"
        } else if self.records > 0 || self.caught_up {
            "reading"
        } else {
            "waiting"
        }
    }
}

struct Reader {
    source: String,
    spec: Arc<KinesisSourceSpec>,
    worker: usize,
    peers: usize,
    rx: Option<Receiver<Fetched>>,
    stop: Arc<AtomicBool>,
    fetcher: Option<std::thread::JoinHandle<()>>,
    parts: Vec<Part>,
    csv_columns: Vec<Option<usize>>,
    csv_row: csv::StringRecord,
    /// The place of the record being read, `SHARD/SEQUENCE` (reused).
    place: String,
    floor: Micros,
    skip_below: Option<Time>,
    flow: Flow,
    ctl: RunControl,
    clock: RunClock,
    metrics: Arc<ComponentMetrics>,
    frontier: Time,
    last_commit: Instant,
    last_status: Instant,
    all_done: bool,
    ended: bool,
    failure: Option<String>,
    shown_error: Option<String>,
}

impl Reader {
    #[allow(clippy::too_many_arguments)]
    fn new(
        source: &str,
        spec: &Arc<KinesisSourceSpec>,
        worker: usize,
        peers: usize,
        flow: Flow,
        ctl: RunControl,
        clock: RunClock,
        metrics: Arc<ComponentMetrics>,
    ) -> Reader {
        let names: Vec<&str> = spec
            .decode
            .input_fields()
            .map(|(_, f)| f.name.as_str())
            .collect();
        let (csv_columns, failure) = match spec.decode.csv_columns(&csv::StringRecord::from(names))
        {
            Ok(c) => (c, None),
            Err(e) => (Vec::new(), Some(format!("source `{source}`: {e}"))),
        };
        let windows = matches!(spec.replay, Replay::Windows(_));
        let skip_below = spec.resume_frontier.filter(|_| windows);
        Reader {
            source: source.to_string(),
            spec: Arc::clone(spec),
            worker,
            peers,
            rx: None,
            stop: Arc::default(),
            fetcher: None,
            parts: Vec::new(),
            csv_columns,
            csv_row: csv::StringRecord::new(),
            place: String::new(),
            floor: skip_below.map_or(Micros::MIN, |f| f.min(Micros::MAX as Time) as Micros),
            skip_below,
            flow,
            ctl,
            clock,
            metrics,
            frontier: spec.resume_frontier.unwrap_or(0),
            last_commit: Instant::now(),
            last_status: Instant::now(),
            all_done: false,
            ended: false,
            failure,
            shown_error: None,
        }
    }

    /// Starts the fetching thread.
    fn start(&mut self, wake: impl Fn() + Send + 'static) {
        let resume = self.spec.resume.clone();
        let plan = FetchPlan {
            conn: self.spec.conn.clone(),
            worker: self.worker,
            peers: self.peers,
            start: self.spec.start,
            resume,
            bounded: self.spec.bounded,
            poll_interval: self.spec.poll_interval,
            limit: 1000,
            ended: Arc::clone(&self.spec.ended),
        };
        // A few reads' worth of records wait here at most while the pipeline is busy.
        let (tx, rx) = sync_channel(8);
        let stop = Arc::clone(&self.stop);
        let name = format!("weir-kinesis-{}-{}", self.source, self.worker);
        match std::thread::Builder::new()
            .name(name)
            .spawn(move || fetcher::run(plan, tx, wake, stop))
        {
            Ok(h) => {
                self.fetcher = Some(h);
                self.rx = Some(rx);
            }
            Err(e) => {
                self.failure = Some(format!(
                    "source `{}`: cannot start a fetching thread: {e}",
                    self.source
                ))
            }
        }
    }

    fn part(&mut self, id: &str) -> Option<usize> {
        self.parts.iter().position(|p| &*p.id == id)
    }

    /// Takes what the fetcher has read into `batch`.
    fn step(&mut self, batch: &mut Batch) -> Progress {
        let spec = Arc::clone(&self.spec);
        let wm = spec.decode.watermark;
        if let Some(idle) = wm.idle_timeout {
            // Idle: nothing read for idle_timeout, and at the tip.
            let floor = wm.idle_floor(self.clock.now_micros());
            for p in self.parts.iter_mut().filter(|p| !p.ended && !p.done) {
                if p.last_input.elapsed() >= idle && p.caught_up {
                    p.idle_floor = p.idle_floor.max(floor);
                }
            }
        }
        let mut progress = Progress::Waiting;
        let mut skipped = 0u64;
        let mut taken = 0usize;
        while taken < 8 {
            let Some(rx) = self.rx.as_ref() else { break };
            let m = match rx.try_recv() {
                Ok(m) => m,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.rx = None;
                    break;
                }
            };
            taken += 1;
            match m {
                Fetched::Shard { id, parents } => {
                    if self.part(&id).is_some() {
                        continue;
                    }
                    // A shard made by resharding continues its parents' keys: it starts from
                    // their largest event time.
                    let inherited = parents
                        .iter()
                        .filter_map(|q| self.parts.iter().find(|p| &*p.id == q.as_str()))
                        .map(|p| p.max_seen)
                        .max()
                        .unwrap_or(Micros::MIN);
                    let before = spec.resume.get(&*id).cloned();
                    let (max_seen, idle_floor) = before
                        .as_ref()
                        .map_or((inherited, Micros::MIN), |r| (r.max_seen, r.idle_floor));
                    self.parts.push(Part {
                        id,
                        max_seen,
                        idle_floor,
                        last_input: Instant::now(),
                        caught_up: false,
                        behind_ms: 0,
                        records: 0,
                        last: None,
                        pending: VecDeque::new(),
                        ended: false,
                        done: false,
                        written: None,
                        before,
                    });
                }
                Fetched::Records {
                    shard,
                    records,
                    behind_ms,
                    caught_up,
                } => {
                    let Some(k) = self.part(&shard) else { continue };
                    let p = &mut self.parts[k];
                    p.caught_up = caught_up;
                    p.behind_ms = behind_ms.unwrap_or(0);
                    if caught_up && spec.bounded {
                        p.done = true;
                    }
                    if records.is_empty() {
                        continue;
                    }
                    progress = Progress::More;
                    p.last_input = Instant::now();
                    p.records += records.len() as u64;
                    p.last = records.last().map(|r| r.seq.clone());
                    for r in records {
                        let time = r
                            .arrival_ms
                            .filter(|_| spec.decode.assign_time)
                            .map(|ms| ms.saturating_mul(1000));
                        // The record's place (its id in the stream), in a buffer reused.
                        let place = &mut self.place;
                        place.clear();
                        let _ = write!(place, "{}/{}", p.id, r.seq);
                        let place = &self.place;
                        let csv = spec
                            .csv
                            .then_some((&mut self.csv_row, &self.csv_columns[..]));
                        let (decoded, raw) =
                            batch.decode_message(&spec.decode, csv, &r.data, place, 0, time);
                        let ts = decoded
                            .as_ref()
                            .ok()
                            .and_then(|()| batch.event_time(&spec.decode));
                        let before = (p.max_seen, p.idle_floor);
                        let max_seen = ts.map_or(p.max_seen, |t| p.max_seen.max(t));
                        let original = wm.of(max_seen, p.idle_floor);
                        if let (Some(f), Some(b)) = (self.skip_below, p.before.as_ref()) {
                            let at_most = wm.of(max_seen, p.idle_floor.max(b.idle_now));
                            if b.read_before(&r.seq)
                                && spec.replay.done_time(ts, at_most).is_some_and(|d| d < f)
                            {
                                // Read again after a restart; its outputs were all written.
                                p.max_seen = max_seen;
                                skipped += 1;
                                continue;
                            }
                        }
                        batch.enter_partition(p.max_seen, p.idle_floor.max(self.floor));
                        batch.accept(&spec.decode, decoded, place, 0, &raw);
                        p.max_seen = batch.max_seen;
                        let done = spec
                            .replay
                            .done_time(ts, original.max(self.floor))
                            .unwrap_or(Time::MAX);
                        match p.pending.back_mut() {
                            Some(run) if run.records < RUN => {
                                run.done = run.done.max(done);
                                run.records += 1;
                            }
                            _ => p.pending.push_back(Pending {
                                seq: r.seq,
                                max_seen: before.0,
                                idle_floor: before.1,
                                done,
                                records: 1,
                            }),
                        }
                    }
                }
                Fetched::Ended { shard } => {
                    if let Some(k) = self.part(&shard) {
                        self.parts[k].ended = true;
                    }
                }
                Fetched::AllDone => self.all_done = true,
                Fetched::Error(e) => self.note_error(e),
            }
        }
        if taken == 8 {
            progress = Progress::More;
        }
        self.metrics.add_replayed(skipped);
        let (w, floor) = (&wm, self.floor);
        let least = self
            .parts
            .iter()
            .filter(|p| !p.ended && !p.done)
            .map(|p| p.watermark(w, floor))
            .min();
        let hold = match least {
            Some(l) => l,
            // Shards may still come (the first listing, a split): hold at the largest
            // watermark any could start from.
            None if !self.all_done => self
                .parts
                .iter()
                .map(|p| p.watermark(w, floor))
                .max()
                .unwrap_or(Micros::MIN)
                .max(floor),
            None => Micros::MAX,
        };
        batch.hold_at(hold);
        if self.last_status.elapsed() >= Duration::from_millis(500) {
            self.update_status();
        }
        if self.last_commit.elapsed() >= self.spec.commit_interval {
            self.commit(false);
        }
        let fetcher_gone = self.rx.is_none();
        if self.all_done && least.is_none() || fetcher_gone && self.spec.bounded {
            self.ended = true;
            self.update_status();
            return Progress::Done;
        }
        if fetcher_gone && !self.ctl.stopped() && self.failure.is_none() {
            self.failure = Some(format!(
                "source `{}`: its fetching thread stopped",
                self.source
            ));
        }
        progress
    }

    /// Writes, for each shard, the oldest record whose outputs may not all be written — or,
    /// with `all` at the end of a bounded run, where reading stopped.
    fn commit(&mut self, all: bool) {
        self.last_commit = Instant::now();
        let Some(store) = self.spec.store.clone() else {
            return;
        };
        let now = self.flow.frontier_now();
        if now != Time::MAX {
            self.frontier = self.frontier.max(now);
        }
        let mut f = self.frontier;
        if all {
            // The end of a bounded run flushes every window: what a later run reads is judged
            // from the largest event time read, not from the end of time.
            let seen = self.parts.iter().map(|p| p.max_seen).max().unwrap_or(0);
            f = f.min(seen.max(0) as Time);
        }
        let known = matches!(self.spec.replay, Replay::Windows(_));
        let mut changed = Vec::new();
        for p in &mut self.parts {
            if all {
                p.pending.clear();
            } else if !known {
                // Nothing read is known to be written before the source ends.
                continue;
            }
            while p.pending.front().is_some_and(|r| r.done < f) {
                p.pending.pop_front();
            }
            let position = match p.pending.front() {
                Some(r) => ShardPosition {
                    seq: Some(r.seq.clone()),
                    after: false,
                    finished: false,
                    max_seen: r.max_seen,
                    idle_floor: r.idle_floor,
                    frontier: f,
                    read_to: p.last.clone(),
                    idle_now: p.idle_floor,
                },
                None => ShardPosition {
                    seq: p
                        .last
                        .clone()
                        .or_else(|| p.before.as_ref().and_then(|b| b.seq.clone())),
                    after: p.last.is_some() || p.before.as_ref().is_some_and(|b| b.after),
                    finished: p.ended,
                    max_seen: p.max_seen,
                    idle_floor: p.idle_floor,
                    frontier: f,
                    read_to: p.last.clone(),
                    idle_now: p.idle_floor,
                },
            };
            if p.written.as_ref() == Some(&position) {
                continue;
            }
            p.written = Some(position.clone());
            changed.push((p.id.to_string(), position));
        }
        if !changed.is_empty() {
            if let Err(e) = store.update_all(changed) {
                self.note_error(e);
                for p in &mut self.parts {
                    p.written = None;
                }
            }
        }
    }

    /// Publishes each shard's state and the source's backlog (shards behind their tip).
    fn update_status(&mut self) {
        self.last_status = Instant::now();
        let wm = self.spec.decode.watermark;
        for p in &self.parts {
            self.spec.status.set(ShardStatus {
                shard: p.id.to_string(),
                state: p.state().to_string(),
                records: p.records,
                last: p.last.clone(),
                behind_ms: if p.ended { 0 } else { p.behind_ms },
                watermark: p.watermark(&wm, self.floor),
            });
        }
    }

    fn note_error(&mut self, e: String) {
        if self.shown_error.as_ref() != Some(&e) {
            eprintln!("weir: source `{}`: {e}", self.source);
            self.shown_error = Some(e);
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        // At the natural end of a bounded run every output has been written; after a stop or
        // a failure, only what the sinks were last seen to have written counts.
        let all = self.ended && !self.ctl.stopped() && self.ctl.failure().is_none();
        self.commit(all);
        self.update_status();
        self.rx = None;
        if let Some(h) = self.fetcher.take() {
            let _ = h.join();
        }
    }
}
