//! Checkpoints: consistent snapshots of a run's state, taken on the frontier, from which a run
//! resumes after a crash with exactly-once output.
//!
//! **The cut.** A checkpoint is taken at a timely time `E`: it holds the state every operator
//! has after applying exactly the records sent at times below `E`, and each source's position
//! after the last record it sent below `E`. Times at which a checkpoint may be taken are the
//! *candidates*, the multiples of a grid step ([`CheckpointSpec::grid`]). The
//! [coordinator](coordinator) (on worker 0) holds a capability at the first candidate it has
//! not decided; once every source has passed candidates, it decides them — a checkpoint at the
//! last one if the interval has passed since the last checkpoint began, none otherwise — and
//! tells every worker by a control stream that carries each decision at its time `E`.
//!
//! **Alignment.** Every operator with state (and every sink with exactly-once output) reads the
//! control stream beside its data through a [`Barrier`](barrier::Barrier): a record at time `t`
//! is applied at once if every candidate at or below `t` is decided and no decided checkpoint
//! at or below `t` is still to be taken; otherwise it waits. When both its input frontier and
//! the control frontier reach a decided `E`, the operator first does what that frontier allows
//! (a window fires the windows ending at or before `E`), writes its part of checkpoint `E`,
//! then applies what waited. Waiting records are those of a source ahead of the slowest one,
//! or those beyond the latest candidate, held for one decision of the coordinator.
//!
//! **Completion.** Each participant (a source, a stateful operator or a sink, on each worker of
//! each process) writes one *part* file into the checkpoint's directory `chk-<seq>` (written
//! to a temporary name, synced, renamed). When all the parts the plan expects are there, the
//! coordinator writes `MANIFEST.json` the same way: the checkpoint is complete. Then it
//! publishes the sinks' output of the interval (see [`publish`]), and removes older
//! checkpoints. A checkpoint directory without a manifest is incomplete and ignored.
//!
//! **Formats** (version [`FORMAT`]): a window's part is an Arrow IPC file (see
//! [`crate::window`]); a source's and a sink's part is JSON; the manifest is JSON. Aggregate
//! states inside a window's part are [postcard](https://docs.rs/postcard)-encoded (a stable,
//! documented wire format), never a memory image.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Time;

pub mod barrier;
pub mod coordinator;

pub use barrier::Barrier;

/// The version of the checkpoint format written; a checkpoint of another version is refused.
pub const FORMAT: u32 = 1;

/// The checkpoint time of the final checkpoint, taken when every source has ended.
pub const END: Time = Time::MAX;

/// A decision of the coordinator, sent at time `at` (the checkpoint's `E`; for the final
/// checkpoint, the coordinator's capability when the sources ended).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The checkpoint time: state holds the records sent below it ([`END`]: all).
    pub at: Time,
    /// The checkpoint's sequence number (its directory `chk-<seq>`).
    pub seq: u64,
    /// The worker this copy of the decision is for.
    pub worker: usize,
}

/// The control stream: decisions, one copy for each worker.
pub type Control<'s> = timely::dataflow::Stream<'s, Time, Vec<Decision>>;

/// What an operator with state gets under checkpoints: the control stream and the run's
/// checkpoint spec.
pub type Checkpointing<'s> = (Control<'s>, Arc<CheckpointSpec>);

/// A run's checkpointing, as the operators see it.
#[derive(Clone, Debug)]
pub struct CheckpointSpec {
    /// The least time between the starts of two checkpoints.
    pub interval: Duration,
    /// Where checkpoints are kept.
    pub dir: PathBuf,
    /// The distance between candidate times (µs of event time).
    pub grid: Time,
    /// The sequence number of the checkpoint restored (0: none).
    pub restored_seq: u64,
    /// Parts restored, by (component, worker).
    pub restored: Arc<std::collections::HashMap<(String, usize), Vec<u8>>>,
    /// Workers in all processes: each participant writes one part per worker.
    pub total_workers: usize,
    /// Participants registered on worker 0 (every worker builds the same graph), each
    /// writing one part per worker and checkpoint (see [`CheckpointSpec::register`]).
    pub registered: Arc<AtomicU64>,
    /// Written into every manifest: what the state was taken with (checked on restore).
    pub manifest_base: serde_json::Value,
    /// The sinks whose output is published when a checkpoint completes.
    pub sinks: Vec<SinkOutput>,
    /// The run's checkpoint measurements.
    pub stats: Arc<CheckpointStats>,
    /// The Kafka sources whose offsets are committed to their group as checkpoints complete.
    pub kafka: Vec<Arc<KafkaCommit>>,
}

/// A Kafka source's offsets, committed to its consumer group when a checkpoint completes, so
/// the group's committed offsets are always those of the last complete checkpoint.
pub struct KafkaCommit {
    /// The source's component id (its parts hold the offsets).
    pub component: String,
    /// Its client settings (brokers, group).
    pub config: rdkafka::ClientConfig,
    consumer: Mutex<Option<rdkafka::consumer::BaseConsumer>>,
}

impl std::fmt::Debug for KafkaCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KafkaCommit({})", self.component)
    }
}

impl KafkaCommit {
    /// Commits for `component` with `config`.
    pub fn new(component: &str, config: rdkafka::ClientConfig) -> KafkaCommit {
        KafkaCommit {
            component: component.to_string(),
            config,
            consumer: Mutex::new(None),
        }
    }

    /// Commits the offsets the source's parts (JSON) hold.
    pub fn commit(&self, parts: &[serde_json::Value]) -> Result<(), String> {
        use rdkafka::consumer::{CommitMode, Consumer};
        let mut tpl = rdkafka::TopicPartitionList::new();
        for part in parts {
            let partitions = part["position"]["source"]["partitions"].as_array();
            for p in partitions.into_iter().flatten() {
                if let (Some(topic), Some(partition), Some(next)) = (
                    p["topic"].as_str(),
                    p["partition"].as_i64(),
                    p["next"].as_i64(),
                ) {
                    tpl.add_partition_offset(
                        topic,
                        partition as i32,
                        rdkafka::Offset::Offset(next),
                    )
                    .map_err(|e| e.to_string())?;
                }
            }
        }
        if tpl.count() == 0 {
            return Ok(());
        }
        let mut c = self.consumer.lock().unwrap_or_else(|p| p.into_inner());
        if c.is_none() {
            *c = Some(self.config.create().map_err(|e| e.to_string())?);
        }
        c.as_ref()
            .expect("made above")
            .commit(&tpl, CommitMode::Sync)
            .map_err(|e| format!("source `{}`: cannot commit offsets: {e}", self.component))
    }
}

impl CheckpointSpec {
    /// Registers a participant — a component instance that writes a part into every
    /// checkpoint — as it is built on `worker`; the count of worker 0's makes a checkpoint's
    /// expected parts, so no list of participants is kept apart from the graph.
    pub fn register(&self, worker: usize) {
        if worker == 0 {
            self.registered.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// How many parts make a checkpoint complete.
    pub fn parts(&self) -> usize {
        self.registered.load(Ordering::Relaxed) as usize * self.total_workers
    }

    /// The part restored for `component` on `worker`, if any.
    pub fn restored(&self, component: &str, worker: usize) -> Option<&[u8]> {
        self.restored
            .get(&(component.to_string(), worker))
            .map(Vec::as_slice)
    }

    /// The directory of checkpoint `seq`.
    pub fn chk_dir(&self, seq: u64) -> PathBuf {
        chk_dir(&self.dir, seq)
    }

    /// Where worker `worker` of sink `sink` writes its output of checkpoint `seq`.
    pub fn pending(&self, sink: &str, seq: u64, worker: usize) -> PathBuf {
        pending_file(&self.dir, sink, seq, worker)
    }
}

/// The directory of checkpoint `seq` under `dir`.
pub fn chk_dir(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("chk-{seq:010}"))
}

/// The pending output of worker `worker` of sink `sink` for checkpoint `seq`.
pub fn pending_file(dir: &Path, sink: &str, seq: u64, worker: usize) -> PathBuf {
    dir.join("pending")
        .join(sink)
        .join(format!("{seq:010}-{worker:04}"))
}

/// A sink whose output a checkpoint publishes: its output file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SinkOutput {
    /// The sink's component id.
    pub sink: String,
    /// The file it writes.
    pub path: PathBuf,
    /// Whether the file is made only when something is written to it (dead letters).
    pub lazy: bool,
}

/// What a checkpoint's manifest says of one sink's output file: its length before and after
/// the checkpoint's pending output was appended.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Published {
    /// The sink.
    pub sink: String,
    /// Its output file.
    pub path: PathBuf,
    /// Length before this checkpoint's output.
    pub before: u64,
    /// Length with it.
    pub after: u64,
    /// The pending files appended, in order.
    pub pending: Vec<PathBuf>,
    /// Whether the file is made only when something is written to it.
    pub lazy: bool,
}

/// A complete checkpoint's manifest (`MANIFEST.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: u32,
    /// The sequence number.
    pub seq: u64,
    /// The checkpoint time (µs of event time; [`END`] for the final one).
    pub at: Time,
    /// Whether every source had ended: a run resumed from it reads nothing more.
    pub end: bool,
    /// When it completed (µs since the Unix epoch).
    pub completed_at: i64,
    /// Parts and their bytes.
    pub parts: usize,
    /// Bytes of all parts.
    pub bytes: u64,
    /// The sinks' output files.
    pub published: Vec<Published>,
    /// What the state was taken with: workers, processes, each component's fingerprint.
    pub taken_with: serde_json::Value,
}

/// Writes `bytes` to `path` so that the file appears whole or not at all: a temporary name,
/// synced, renamed.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(d) = path.parent() {
        if let Ok(d) = std::fs::File::open(d) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Writes `component`'s part of checkpoint `seq` on `worker`; `started` is when the
/// participant began it (µs since the Unix epoch), kept in the name for the alignment delay.
pub fn write_part(
    spec: &CheckpointSpec,
    seq: u64,
    component: &str,
    worker: usize,
    started: i64,
    bytes: &[u8],
) -> std::io::Result<()> {
    let path = spec
        .chk_dir(seq)
        .join(format!("{component}.{worker}.{started}.part"));
    write_atomically(&path, bytes)?;
    spec.stats.note_part(bytes.len() as u64);
    fault::part_written();
    Ok(())
}

/// The wall clock in µs since the Unix epoch.
pub fn wall_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// A part's name split: (component, worker, started).
pub fn parse_part_name(name: &str) -> Option<(String, usize, i64)> {
    let stem = name.strip_suffix(".part")?;
    let mut it = stem.rsplitn(3, '.');
    let started = it.next()?.parse().ok()?;
    let worker = it.next()?.parse().ok()?;
    Some((it.next()?.to_string(), worker, started))
}

/// Appends each checkpoint's pending sink output to the sink's file, so the file grows only by
/// output a recovery will never repeat. Idempotent: a file already at `after` bytes is left; one
/// at any other length is cut back to `before` and the pending output appended again (it is
/// the same bytes), then synced. Pending files stay until the checkpoint is pruned.
pub fn publish(published: &[Published]) -> std::io::Result<()> {
    use std::io::Write;
    for p in published {
        if p.lazy && p.after == 0 {
            continue;
        }
        if let Some(d) = p.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(d)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&p.path)?;
        if f.metadata()?.len() == p.after {
            continue;
        }
        f.set_len(p.before)?;
        use std::io::Seek;
        f.seek(std::io::SeekFrom::Start(p.before))?;
        for pending in &p.pending {
            match std::fs::File::open(pending) {
                Ok(mut src) => {
                    std::io::copy(&mut src, &mut f)?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        f.flush()?;
        f.sync_all()?;
    }
    Ok(())
}

/// The latest complete checkpoint under `dir`, with its manifest.
pub fn latest(dir: &Path) -> std::io::Result<Option<(u64, Manifest)>> {
    let mut best: Option<(u64, Manifest)> = None;
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(seq) = name
            .to_str()
            .and_then(|n| n.strip_prefix("chk-"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        if best.as_ref().is_some_and(|(b, _)| *b >= seq) {
            continue;
        }
        let Ok(text) = std::fs::read(e.path().join("MANIFEST.json")) else {
            continue;
        };
        let m: Manifest = serde_json::from_slice(&text).map_err(|err| {
            std::io::Error::other(format!(
                "{}: not a Weir checkpoint manifest: {err}",
                e.path().join("MANIFEST.json").display()
            ))
        })?;
        best = Some((seq, m));
    }
    Ok(best)
}

/// Removes the checkpoints under `dir` older than `keep` and their pending files (`None`:
/// everything).
pub fn prune(dir: &Path, keep: Option<u64>) -> std::io::Result<()> {
    // Older checkpoints go; later ones may be in progress.
    remove_checkpoints(dir, |seq| keep.is_none_or(|k| seq < k))?;
    // Pending files of older checkpoints are published; the kept one's stay (a recovery may
    // publish them again), and so do later ones and the current files being written.
    remove_pending(dir, |seq| match (seq, keep) {
        (Some(s), Some(k)) => s < k,
        (_, None) => true,
        (None, Some(_)) => false,
    })
}

/// Removes pending output written after checkpoint `keep` (by a run that did not complete its
/// next checkpoint), and the checkpoints after it: a resumed run writes them again.
pub fn discard_after(dir: &Path, keep: u64) -> std::io::Result<()> {
    remove_pending(dir, |seq| seq.is_none_or(|s| s > keep))?;
    remove_checkpoints(dir, |seq| seq > keep)
}

/// Removes the checkpoint directories under `dir` whose sequence number `gone` says.
fn remove_checkpoints(dir: &Path, gone: impl Fn(u64) -> bool) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for e in entries.flatten() {
        let seq = e
            .file_name()
            .to_str()
            .and_then(|n| n.strip_prefix("chk-"))
            .and_then(|n| n.parse::<u64>().ok());
        if seq.is_some_and(&gone) {
            std::fs::remove_dir_all(e.path())?;
        }
    }
    Ok(())
}

/// Removes the pending files under `dir` whose checkpoint (`None`: a file being written)
/// `gone` says.
fn remove_pending(dir: &Path, gone: impl Fn(Option<u64>) -> bool) -> std::io::Result<()> {
    let Ok(sinks) = std::fs::read_dir(dir.join("pending")) else {
        return Ok(());
    };
    for sink in sinks.flatten() {
        for f in std::fs::read_dir(sink.path())?.flatten() {
            let seq = f
                .file_name()
                .to_str()
                .and_then(|s| s.split('-').next())
                .and_then(|s| s.parse::<u64>().ok());
            if gone(seq) {
                std::fs::remove_file(f.path())?;
            }
        }
    }
    Ok(())
}

/// A record batch as an Arrow IPC file (the layout of window and temporal-join parts).
pub(crate) fn ipc_file(batch: &arrow::array::RecordBatch) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = arrow::ipc::writer::FileWriter::try_new(&mut out, &batch.schema())
        .expect("an IPC writer over memory");
    w.write(batch).expect("writing to memory");
    w.finish().expect("writing to memory");
    drop(w);
    out
}

/// Reads an Arrow IPC file made by [`ipc_file`]: its schema's metadata (checked for
/// [`FORMAT`]) and its batches.
pub(crate) fn read_ipc_file(
    bytes: &[u8],
) -> Result<
    (
        std::collections::HashMap<String, String>,
        Vec<arrow::array::RecordBatch>,
    ),
    String,
> {
    let reader = arrow::ipc::reader::FileReader::try_new(std::io::Cursor::new(bytes), None)
        .map_err(|e| format!("not an Arrow IPC file: {e}"))?;
    let meta = reader.schema().metadata().clone();
    if meta.get("weir.format") != Some(&FORMAT.to_string()) {
        return Err("the part is of another checkpoint format".into());
    }
    let batches = reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    Ok((meta, batches))
}

/// A run's checkpoint measurements, for the summary and the report.
#[derive(Debug, Default)]
pub struct CheckpointStats {
    inner: Mutex<StatsInner>,
    part_bytes: AtomicU64,
}

#[derive(Debug, Default, Clone)]
struct StatsInner {
    completed: Vec<Completed>,
}

/// One completed checkpoint's measurements.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Completed {
    /// Its sequence number.
    pub seq: u64,
    /// Bytes of its parts.
    pub bytes: u64,
    /// From the decision until the manifest was written (µs).
    pub duration_us: u64,
    /// From the decision until the last participant began its part (µs): how long the
    /// slowest operator's frontier took to reach the checkpoint time.
    pub alignment_us: u64,
}

impl CheckpointStats {
    fn note_part(&self, bytes: u64) {
        self.part_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Bytes of parts this process wrote.
    pub fn part_bytes(&self) -> u64 {
        self.part_bytes.load(Ordering::Relaxed)
    }

    /// Notes a completed checkpoint.
    pub fn complete(&self, c: Completed) {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .completed
            .push(c);
    }

    /// The checkpoints completed so far.
    pub fn completed(&self) -> Vec<Completed> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .completed
            .clone()
    }
}

/// Crashes on purpose, for tests of recovery: `WEIR_CHECKPOINT_FAULT=read:N` aborts the process
/// once its sources have read `N` records; `part:K` aborts just after the `K`-th part this
/// process writes (so in the middle of a checkpoint). `abort` ends the process at once, as a
/// `SIGKILL` would: nothing is flushed or cleaned up.
pub mod fault {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    #[derive(Clone, Copy)]
    enum Fault {
        None,
        Read(u64),
        Part(u64),
    }

    fn fault() -> Fault {
        static F: OnceLock<Fault> = OnceLock::new();
        *F.get_or_init(|| {
            let Ok(v) = std::env::var("WEIR_CHECKPOINT_FAULT") else {
                return Fault::None;
            };
            let parse = |s: &str| s.parse::<u64>().ok();
            match v.split_once(':') {
                Some(("read", n)) => parse(n).map_or(Fault::None, Fault::Read),
                Some(("part", n)) => parse(n).map_or(Fault::None, Fault::Part),
                _ => Fault::None,
            }
        })
    }

    static READ: AtomicU64 = AtomicU64::new(0);
    static PARTS: AtomicU64 = AtomicU64::new(0);

    /// Notes `n` records read by a source.
    #[inline]
    pub fn read(n: u64) {
        if let Fault::Read(at) = fault() {
            if READ.fetch_add(n, Ordering::Relaxed) + n >= at {
                eprintln!("weir: WEIR_CHECKPOINT_FAULT: aborting after {at} records read");
                std::process::abort();
            }
        }
    }

    pub(super) fn part_written() {
        if let Fault::Part(at) = fault() {
            if PARTS.fetch_add(1, Ordering::Relaxed) + 1 >= at {
                eprintln!("weir: WEIR_CHECKPOINT_FAULT: aborting after {at} checkpoint parts");
                std::process::abort();
            }
        }
    }
}

/// Serde for fixed arrays longer than serde's own impls cover, as sequences.
pub mod serde_array {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Serializes the array as a sequence.
    pub fn serialize<S: Serializer, T: Serialize, const N: usize>(
        a: &[T; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        a.as_slice().serialize(s)
    }

    /// Reads a sequence of exactly `N` elements.
    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>, const N: usize>(
        d: D,
    ) -> Result<[T; N], D::Error> {
        let v = Vec::<T>::deserialize(d)?;
        let n = v.len();
        v.try_into()
            .map_err(|_| serde::de::Error::invalid_length(n, &"the array's length"))
    }
}

/// Serde for a distinct-count sketch's registers.
pub mod serde_registers {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Serializes the registers as bytes.
    pub fn serialize<S: Serializer, const N: usize>(
        r: &Option<Box<[u8; N]>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        r.as_ref().map(|b| b.as_slice()).serialize(s)
    }

    /// Reads the registers.
    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<Option<Box<[u8; N]>>, D::Error> {
        let v = Option::<Vec<u8>>::deserialize(d)?;
        v.map(|v| {
            let n = v.len();
            v.into_boxed_slice()
                .try_into()
                .map_err(|_| serde::de::Error::invalid_length(n, &"the registers' length"))
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_names_round_trip() {
        assert_eq!(
            parse_part_name("per.device.3.1700000000000000.part"),
            Some(("per.device".to_string(), 3, 1_700_000_000_000_000))
        );
        assert_eq!(parse_part_name("MANIFEST.json"), None);
    }

    #[test]
    fn publishing_twice_appends_once_and_repairs_a_partial_append() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.jsonl");
        let p1 = dir.path().join("p1");
        std::fs::write(&p1, b"a\nb\n").unwrap();
        std::fs::write(&out, b"x\n").unwrap();
        let p = Published {
            sink: "s".into(),
            path: out.clone(),
            before: 2,
            after: 6,
            pending: vec![p1],
            lazy: false,
        };
        publish(std::slice::from_ref(&p)).unwrap();
        publish(std::slice::from_ref(&p)).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"x\na\nb\n");
        // A crash in the middle of an append leaves a partial line: it is repaired.
        std::fs::write(&out, b"x\na").unwrap();
        publish(std::slice::from_ref(&p)).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"x\na\nb\n");
    }
}
