//! Where a Kinesis source is in each shard, kept in the directory its `positions` key names so
//! that a restart resumes without loss — Kinesis has no consumer groups to keep them.
//!
//! Each process writes `process-P.json` (replaced atomically: written to a temporary file,
//! synced, renamed) holding, per shard, the sequence number to resume at — that of the oldest
//! record whose outputs the sinks may not all have written — or after (the last record read,
//! when all of its outputs are written), whether the shard was read to its end, and the
//! *recovery point* the Kafka source commits beside its offsets
//! ([`CommitPoint`](weir_operators::kafka::CommitPoint)): the shard's watermark before that
//! record and the frontier the sinks had passed. Reading merges the files of every process, a
//! shard's furthest position winning (a shard may have moved between processes from one run to
//! the next).
//!
//! ```
//! use weir_cloud::kinesis::positions::{Positions, ShardPosition};
//! let dir = std::env::temp_dir().join(format!("weir-positions-doc-{}", std::process::id()));
//! let p = Positions::new(&dir, 0);
//! let mut at = ShardPosition::start();
//! at.seq = Some("49590338271490256608559692538361571095921575989136588898".into());
//! p.update("shardId-000000000000", at.clone()).unwrap();
//! let read = Positions::read(&dir).unwrap();
//! assert_eq!(read["shardId-000000000000"], at);
//! std::fs::remove_dir_all(&dir).unwrap();
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use weir_operators::value::Micros;
use weir_operators::Time;

use super::seq_cmp;

/// The format of the files; another is refused.
pub const FORMAT: u32 = 1;

/// Where a source is in one shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardPosition {
    /// The sequence number to resume at (or after, with `after`); `None`: the shard's start.
    pub seq: Option<String>,
    /// Resume after `seq` rather than at it.
    pub after: bool,
    /// The shard was read to its end (closed, every record read and written).
    pub finished: bool,
    /// The shard's largest event time before the resume point.
    pub max_seen: Micros,
    /// The shard's idle floor then.
    pub idle_floor: Micros,
    /// The frontier the sinks had passed: every output at a time below it was written.
    pub frontier: Time,
    /// The last sequence number read when the position was written: records up to it were
    /// read before, and only they may be skipped on a restart.
    pub read_to: Option<String>,
    /// The shard's idle floor when the position was written.
    pub idle_now: Micros,
}

impl ShardPosition {
    /// The start of a shard, nothing read.
    pub fn start() -> ShardPosition {
        ShardPosition {
            seq: None,
            after: false,
            finished: false,
            max_seen: Micros::MIN,
            idle_floor: Micros::MIN,
            frontier: 0,
            read_to: None,
            idle_now: Micros::MIN,
        }
    }

    /// Whether `self` is at least as far as `other`.
    fn at_least(&self, other: &ShardPosition) -> bool {
        if self.finished || !other.finished && other.seq.is_none() {
            return true;
        }
        if other.finished {
            return false;
        }
        match (&self.seq, &other.seq) {
            (None, Some(_)) => false,
            (Some(a), Some(b)) => match seq_cmp(a, b) {
                std::cmp::Ordering::Equal => self.after || !other.after,
                o => o.is_gt(),
            },
            _ => true,
        }
    }

    /// Whether the record at `seq` was read before this position was written.
    pub fn read_before(&self, seq: &str) -> bool {
        self.read_to
            .as_deref()
            .is_some_and(|r| seq_cmp(seq, r).is_le())
    }
}

#[derive(Serialize, Deserialize)]
struct File {
    format: u32,
    shards: BTreeMap<String, ShardPosition>,
}

/// The positions of the shards a process reads, written to its file on each update.
#[derive(Debug)]
pub struct Positions {
    dir: PathBuf,
    process: usize,
    shards: Mutex<BTreeMap<String, ShardPosition>>,
}

impl Positions {
    /// The positions of process `process` in `dir` (created on the first update).
    pub fn new(dir: &Path, process: usize) -> Positions {
        Positions {
            dir: dir.to_path_buf(),
            process,
            shards: Mutex::default(),
        }
    }

    /// Sets one shard's position and writes the process's file.
    pub fn update(&self, shard: &str, position: ShardPosition) -> Result<(), String> {
        self.update_all([(shard.to_string(), position)])
    }

    /// Sets several shards' positions and writes the process's file once.
    pub fn update_all(
        &self,
        positions: impl IntoIterator<Item = (String, ShardPosition)>,
    ) -> Result<(), String> {
        let mut shards = self.shards.lock().unwrap_or_else(|p| p.into_inner());
        shards.extend(positions);
        let file = File {
            format: FORMAT,
            shards: shards.clone(),
        };
        let text = serde_json::to_vec_pretty(&file).expect("positions serialize");
        let path = self.dir.join(format!("process-{}.json", self.process));
        write_atomically(&path, &text)
            .map_err(|e| format!("cannot write the positions file {}: {e}", path.display()))
    }

    /// The positions kept in `dir` by every process (empty when there are none yet).
    pub fn read(dir: &Path) -> Result<BTreeMap<String, ShardPosition>, String> {
        let mut out: BTreeMap<String, ShardPosition> = BTreeMap::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(format!("cannot read {}: {e}", dir.display())),
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            if !(name.starts_with("process-") && name.ends_with(".json")) {
                continue;
            }
            let text = std::fs::read(e.path())
                .map_err(|err| format!("cannot read {}: {err}", e.path().display()))?;
            let file: File = serde_json::from_slice(&text).map_err(|err| {
                format!(
                    "{} is not a positions file of this Weir: {err} (delete the directory to start over)",
                    e.path().display()
                )
            })?;
            if file.format != FORMAT {
                return Err(format!(
                    "{} has positions of format {}, this Weir reads {FORMAT} (delete the directory to start over)",
                    e.path().display(),
                    file.format
                ));
            }
            for (shard, p) in file.shards {
                match out.get(&shard) {
                    Some(q) if q.at_least(&p) => {}
                    _ => {
                        out.insert(shard, p);
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Replaces `path` with `bytes` atomically (a temporary file beside it, synced, renamed).
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seq: &str, after: bool) -> ShardPosition {
        ShardPosition {
            seq: Some(seq.into()),
            after,
            ..ShardPosition::start()
        }
    }

    #[test]
    fn the_furthest_position_of_a_shard_wins() {
        assert!(at("10", false).at_least(&at("9", true)));
        assert!(!at("9", true).at_least(&at("10", false)));
        assert!(at("5", true).at_least(&at("5", false)));
        assert!(!at("5", false).at_least(&at("5", true)));
        let done = ShardPosition {
            finished: true,
            ..ShardPosition::start()
        };
        assert!(done.at_least(&at("99", true)));
        assert!(!at("99", true).at_least(&done));
        assert!(at("1", false).at_least(&ShardPosition::start()));
    }

    #[test]
    fn files_of_several_processes_merge() {
        let dir = std::env::temp_dir().join(format!("weir-positions-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Positions::new(&dir, 0).update("a", at("7", false)).unwrap();
        Positions::new(&dir, 1)
            .update_all([
                ("a".to_string(), at("3", true)),
                ("b".to_string(), at("1", false)),
            ])
            .unwrap();
        let read = Positions::read(&dir).unwrap();
        assert_eq!(read["a"], at("7", false));
        assert_eq!(read["b"], at("1", false));
        std::fs::write(dir.join("process-2.json"), b"{").unwrap();
        assert!(Positions::read(&dir)
            .unwrap_err()
            .contains("process-2.json"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
