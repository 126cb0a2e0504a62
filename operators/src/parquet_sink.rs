//! The `parquet` sink: event-time-partitioned Parquet files, the cold store of a lambda
//! architecture (the role HDFS plays, on a local directory).
//!
//! Each worker writes its own files, so workers never share a writer:
//! `DIR/dt=2026-03-01/hour=10/part-RUN-W-SEQ.parquet` (`partition = "hour"`, the default) or
//! `DIR/dt=2026-03-01/part-…` (`"day"`), by each record's event time in UTC; a record without
//! one goes under `dt=__null__`. RUN tells runs apart (the run's start in milliseconds, in
//! hexadecimal), W is the worker (its index in the whole cluster), SEQ counts its files.
//!
//! A file is written under a hidden temporary name (`.part-….parquet.inprogress`) and renamed
//! to its final name only once complete (footer written, synced to disk): readers, Weir's
//! `parquet` source among them, never see a partial file, even of a run that was killed. A file
//! is completed (rolled) when it reaches `roll_bytes`, when it has been open for
//! `roll_interval` of processing time, and when the input ends.
//!
//! Columns are the record's fields with their Arrow types (a nested field by its dotted path);
//! a `json` field is a string column marked `weir.type = json` in its Arrow field metadata, so
//! a reader gets it back as JSON. Compression is Snappy.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use weir_operators::chunk::{arrow_schema, Chunk};
//! use weir_operators::parquet_sink::{Granularity, ParquetSpec, PartitionedWriter};
//! use weir_operators::schema::{Field, Record, Schema};
//! use weir_operators::value::{FieldType, Value};
//!
//! let dir = std::env::temp_dir().join(format!("weir-parquet-doc-{}", std::process::id()));
//! let schema = Schema::new(vec![Field::new("ts", FieldType::Timestamp), Field::new("v", FieldType::I64)]).with_time("ts");
//! let spec = ParquetSpec { dir: dir.clone(), time: 0, schema: schema.clone(), granularity: Granularity::Hour,
//!     roll_bytes: 1 << 20, roll_interval: Duration::from_secs(60) };
//! let mut w = PartitionedWriter::new(Arc::new(spec), "run".into(), 0);
//! let hour = 3_600_000_000i64; // 1970-01-01 01:00 and 02:00
//! let rows: Vec<Record> = [hour, hour + 1, 2 * hour].iter().map(|&t| Record::new(vec![Value::Ts(t), Value::I64(t)])).collect();
//! w.write(&Chunk::from_rows(&arrow_schema(&schema), &rows)).unwrap();
//! assert_eq!(w.commit_all().unwrap(), 2, "two files, one per hour");
//! assert!(dir.join("dt=1970-01-01/hour=01/part-run-0-000000.parquet").is_file());
//! assert!(dir.join("dt=1970-01-01/hour=02/part-run-0-000001.parquet").is_file());
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, AsArray, RecordBatch, UInt32Array};
use arrow::datatypes::TimestampMicrosecondType;
use arrow::datatypes::{Field as ArrowField, Schema as ArrowSchema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;

use crate::chunk::{data_type, Chunk};
use crate::control::RunControl;
use crate::metrics::ComponentMetrics;
use crate::schema::{Record, Schema};
use crate::sink::{Measure, Times};
use crate::value::FieldType;
use crate::{Batches, Records};

/// The Arrow field metadata key that marks a column's Weir type where Arrow's does not tell it.
pub const WEIR_TYPE: &str = "weir.type";

/// How finely files are partitioned by event time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granularity {
    /// `dt=YYYY-MM-DD/hour=HH`.
    Hour,
    /// `dt=YYYY-MM-DD`.
    Day,
}

impl Granularity {
    fn micros(self) -> i64 {
        match self {
            Granularity::Hour => 3_600_000_000,
            Granularity::Day => 86_400_000_000,
        }
    }
}

/// A validated `parquet` sink.
#[derive(Clone, Debug, PartialEq)]
pub struct ParquetSpec {
    /// The directory the partitions go in.
    pub dir: PathBuf,
    /// Input position of the timestamp field that partitions.
    pub time: usize,
    /// The input's schema: the files' columns.
    pub schema: Schema,
    /// Partitions by hour or by day.
    pub granularity: Granularity,
    /// A file is completed once it holds about this many bytes.
    pub roll_bytes: u64,
    /// A file is completed once it has been open this long.
    pub roll_interval: Duration,
}

impl ParquetSpec {
    /// The Arrow schema of the files.
    pub fn arrow_schema(&self) -> SchemaRef {
        let fields: Vec<ArrowField> = self
            .schema
            .fields
            .iter()
            .map(|f| {
                let a = ArrowField::new(f.name.as_str(), data_type(f.ty), true);
                match f.ty {
                    FieldType::Json => a.with_metadata(
                        [(WEIR_TYPE.to_string(), "json".to_string())]
                            .into_iter()
                            .collect(),
                    ),
                    _ => a,
                }
            })
            .collect();
        Arc::new(ArrowSchema::new(fields))
    }
}

/// A file being written.
struct OpenFile {
    writer: ArrowWriter<File>,
    tmp: PathBuf,
    path: PathBuf,
    opened: Instant,
}

/// One worker's files: one open file per partition at a time.
pub struct PartitionedWriter {
    spec: Arc<ParquetSpec>,
    schema: SchemaRef,
    /// `RUN-W`, in file names.
    tag: String,
    seq: u64,
    open: BTreeMap<Option<i64>, OpenFile>,
    props: WriterProperties,
}

impl PartitionedWriter {
    /// The writer of worker `worker` (its index in the cluster) in the run tagged `run`.
    pub fn new(spec: Arc<ParquetSpec>, run: String, worker: usize) -> PartitionedWriter {
        PartitionedWriter {
            schema: spec.arrow_schema(),
            spec,
            tag: format!("{run}-{worker}"),
            seq: 0,
            open: BTreeMap::new(),
            props: WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .build(),
        }
    }

    /// The partition directory of the bucket starting at `start` micros (`None`: no time).
    fn partition(&self, start: Option<i64>) -> PathBuf {
        let Some(start) = start else {
            return self.spec.dir.join("dt=__null__");
        };
        let t = chrono::DateTime::from_timestamp_micros(start).unwrap_or_default();
        let day = self.spec.dir.join(format!("dt={}", t.format("%Y-%m-%d")));
        match self.spec.granularity {
            Granularity::Day => day,
            Granularity::Hour => day.join(format!("hour={}", t.format("%H"))),
        }
    }

    fn file(&mut self, bucket: Option<i64>) -> Result<&mut OpenFile, String> {
        if !self.open.contains_key(&bucket) {
            let dir = self.partition(bucket);
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            let name = format!("part-{}-{:06}.parquet", self.tag, self.seq);
            self.seq += 1;
            let tmp = dir.join(format!(".{name}.inprogress"));
            let f =
                File::create(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
            let writer =
                ArrowWriter::try_new(f, Arc::clone(&self.schema), Some(self.props.clone()))
                    .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
            self.open.insert(
                bucket,
                OpenFile {
                    writer,
                    tmp,
                    path: dir.join(name),
                    opened: Instant::now(),
                },
            );
        }
        Ok(self.open.get_mut(&bucket).expect("opened above"))
    }

    /// Writes the records of `chunk`, each into its partition's file; completes files that
    /// reach `roll_bytes`.
    pub fn write(&mut self, chunk: &Chunk) -> Result<(), String> {
        if chunk.is_empty() {
            return Ok(());
        }
        let columns: Vec<ArrayRef> = chunk.columns().to_vec();
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), columns)
            .map_err(|e| format!("cannot make a batch: {e}"))?;
        let width = self.spec.granularity.micros();
        let buckets: Vec<Option<i64>> = chunk.columns()[self.spec.time]
            .as_primitive::<TimestampMicrosecondType>()
            .iter()
            .map(|t| t.map(|t| t.div_euclid(width) * width))
            .collect();
        if buckets.iter().all(|b| *b == buckets[0]) {
            return self.append(buckets[0], &batch);
        }
        let mut rows: BTreeMap<Option<i64>, Vec<u32>> = BTreeMap::new();
        for (i, b) in buckets.iter().enumerate() {
            rows.entry(*b).or_default().push(i as u32);
        }
        for (b, idx) in rows {
            let idx = UInt32Array::from(idx);
            let part = arrow::compute::take_record_batch(&batch, &idx)
                .map_err(|e| format!("cannot split a batch: {e}"))?;
            self.append(b, &part)?;
        }
        Ok(())
    }

    fn append(&mut self, bucket: Option<i64>, batch: &RecordBatch) -> Result<(), String> {
        let roll = self.spec.roll_bytes;
        let f = self.file(bucket)?;
        f.writer
            .write(batch)
            .map_err(|e| format!("cannot write {}: {e}", f.tmp.display()))?;
        if (f.writer.bytes_written() + f.writer.in_progress_size()) as u64 >= roll {
            let f = self.open.remove(&bucket).expect("open");
            commit(f)?;
        }
        Ok(())
    }

    /// Completes the files open for `roll_interval` or longer; returns how many.
    pub fn commit_old(&mut self, now: Instant) -> Result<usize, String> {
        let old: Vec<Option<i64>> = self
            .open
            .iter()
            .filter(|(_, f)| now.duration_since(f.opened) >= self.spec.roll_interval)
            .map(|(b, _)| *b)
            .collect();
        for b in &old {
            commit(self.open.remove(b).expect("listed"))?;
        }
        Ok(old.len())
    }

    /// Completes every open file; returns how many.
    pub fn commit_all(&mut self) -> Result<usize, String> {
        let n = self.open.len();
        for (_, f) in std::mem::take(&mut self.open) {
            commit(f)?;
        }
        Ok(n)
    }

    /// When the oldest open file is due to be completed.
    pub fn next_roll(&self) -> Option<Instant> {
        self.open
            .values()
            .map(|f| f.opened + self.spec.roll_interval)
            .min()
    }
}

/// Writes the footer, syncs the file and gives it its final name.
fn commit(mut f: OpenFile) -> Result<(), String> {
    let shown = f.path.display().to_string();
    f.writer
        .finish()
        .map_err(|e| format!("cannot complete {shown}: {e}"))?;
    f.writer
        .inner()
        .sync_all()
        .map_err(|e| format!("cannot sync {shown}: {e}"))?;
    std::fs::rename(&f.tmp, &f.path).map_err(|e| format!("cannot rename to {shown}: {e}"))?;
    Ok(())
}

/// Builds the parquet sink on this worker. Returns the empty stream whose frontier passes a
/// time once everything up to it is handed to a file (complete files appear at each roll and
/// at the end of the input).
#[allow(clippy::too_many_arguments)]
pub fn parquet_sink<'s>(
    input: Batches<'s>,
    name: &str,
    spec: Arc<ParquetSpec>,
    run: String,
    measure: Option<Measure>,
    ctl: RunControl,
    metrics: Arc<ComponentMetrics>,
) -> Records<'s> {
    let worker = input.scope().index();
    let id = name.to_string();
    let scope = input.scope();
    input.unary_frontier::<CapacityContainerBuilder<Vec<Record>>, _, _, _>(
        Pipeline,
        name,
        move |_cap, info| {
            let activator = scope.activator_for(info.address);
            let mut writer = Some(PartitionedWriter::new(spec, run, worker));
            // Latency counts to a record's hand-over to its file's writer.
            let mut times = Times::default();
            move |(input, frontier), _output| {
                let mut n = 0u64;
                let mut failed = None;
                input.for_each(|_cap, data: &mut Vec<Chunk>| {
                    for c in data.iter() {
                        n += c.len() as u64;
                        if let (Some(w), None) = (writer.as_mut(), &failed) {
                            match w.write(c) {
                                Ok(()) => times.note(&measure, c),
                                Err(e) => failed = Some(e),
                            }
                        }
                    }
                });
                metrics.add_in(n);
                let Some(w) = writer.as_mut() else { return };
                if failed.is_none() {
                    metrics.add_out(n);
                    times.record(&measure, worker);
                    let done = if frontier.is_empty() {
                        w.commit_all()
                    } else {
                        w.commit_old(Instant::now())
                    };
                    if let Err(e) = done {
                        failed = Some(e);
                    }
                }
                if let Some(e) = failed {
                    ctl.fail(format!(
                        "sink `{id}` cannot write: {e}; the files completed before this stay, \
                         the ones in progress are left under hidden .inprogress names"
                    ));
                    writer = None;
                    return;
                }
                if frontier.is_empty() {
                    writer = None;
                } else if let Some(due) = w.next_roll() {
                    activator.activate_after(due.saturating_duration_since(Instant::now()));
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::arrow_schema;
    use crate::value::Value;

    fn spec(dir: &std::path::Path, roll_bytes: u64) -> Arc<ParquetSpec> {
        let schema = crate::schema::Schema::new(vec![
            crate::schema::Field::new("ts", FieldType::Timestamp),
            crate::schema::Field::new("v", FieldType::I64),
        ])
        .with_time("ts");
        Arc::new(ParquetSpec {
            dir: dir.to_path_buf(),
            time: 0,
            schema,
            granularity: Granularity::Hour,
            roll_bytes,
            roll_interval: Duration::from_secs(3600),
        })
    }

    fn chunk(spec: &ParquetSpec, times: &[Option<i64>]) -> Chunk {
        let rows: Vec<Record> = times
            .iter()
            .map(|t| {
                Record::new(vec![
                    t.map_or(Value::Null, Value::Ts),
                    Value::I64(t.unwrap_or(-1)),
                ])
            })
            .collect();
        Chunk::from_rows(&arrow_schema(&spec.schema), &rows)
    }

    fn visible(dir: &std::path::Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else {
                    let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
                    out.push(rel);
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn files_are_hidden_until_complete_and_records_without_time_go_to_null() {
        let dir = tempfile::tempdir().unwrap();
        let spec = spec(dir.path(), 1 << 30);
        let mut w = PartitionedWriter::new(Arc::clone(&spec), "r".into(), 12);
        let day = 86_400_000_000i64;
        w.write(&chunk(&spec, &[Some(day + 5), None, Some(-1)]))
            .unwrap();
        assert_eq!(
            visible(dir.path()),
            vec![
                "dt=1969-12-31/hour=23/.part-r-12-000001.parquet.inprogress",
                "dt=1970-01-02/hour=00/.part-r-12-000002.parquet.inprogress",
                "dt=__null__/.part-r-12-000000.parquet.inprogress",
            ],
            "nothing visible before the commit; files numbered in partition order"
        );
        assert_eq!(w.commit_all().unwrap(), 3);
        assert_eq!(
            visible(dir.path()),
            vec![
                "dt=1969-12-31/hour=23/part-r-12-000001.parquet",
                "dt=1970-01-02/hour=00/part-r-12-000002.parquet",
                "dt=__null__/part-r-12-000000.parquet",
            ]
        );
    }

    #[test]
    fn a_file_rolls_at_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let spec = spec(dir.path(), 1);
        let mut w = PartitionedWriter::new(Arc::clone(&spec), "r".into(), 0);
        w.write(&chunk(&spec, &[Some(1)])).unwrap();
        w.write(&chunk(&spec, &[Some(2)])).unwrap();
        assert_eq!(w.commit_all().unwrap(), 0, "each write rolled its file");
        assert_eq!(visible(dir.path()).len(), 2);
    }
}
