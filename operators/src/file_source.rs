//! The `file` source: JSONL or CSV files, one file or every file of a directory; and the
//! `parquet` source's reading of Parquet files.
//!
//! Files are shared out among workers (file `k` to worker `k mod W`); each is read in batches, so
//! a large file never blocks a worker for long. A record's assigned id is
//! `source:file:line`, the same on every replay of the same input.

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::sync::Arc;

use timely::dataflow::Scope;

use crate::decode::DecodeSpec;
use crate::flow::SourceEnv;
use crate::framing::{read_line, strip_bom, trim_line_end, CsvItem, CsvRecords, Line};
use crate::metrics::ComponentMetrics;
use crate::parquet_source::{Next, ParquetFile};
use crate::reading::{reading_source, Batch, Output, Progress};
use crate::{Batches, Time};

/// The format of a file source's files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated values (or another delimiter) with a header row.
    Csv {
        /// The field delimiter.
        delimiter: u8,
    },
    /// Parquet files (see [`parquet_source`](crate::parquet_source)), records read only in
    /// the event-time range `[from, until)` micros.
    Parquet {
        /// The earliest event time read.
        from: Option<i64>,
        /// The event time before which reading stops.
        until: Option<i64>,
    },
}

/// A validated file source.
#[derive(Clone, Debug)]
pub struct FileSourceSpec {
    /// How records are decoded.
    pub decode: Arc<DecodeSpec>,
    /// The files to read, in order, with the name each is known by in ids and dead letters.
    pub files: Vec<(PathBuf, String)>,
    /// Their format.
    pub format: FileFormat,
    /// When the schema was inferred: what was found, as pipeline keys (for the user).
    pub inferred: Option<String>,
}

/// Lines read per activation.
const LINES_PER_STEP: usize = 4096;

enum Open {
    Jsonl {
        reader: BufReader<File>,
        line_no: u64,
        buf: Vec<u8>,
    },
    Csv(Box<CsvFile>),
    Parquet(Box<ParquetFile>),
}

/// An open CSV file's reading state.
struct CsvFile {
    records: CsvRecords<BufReader<File>>,
    /// Items (rows, blank and bad lines) read.
    items: u64,
    /// Schema position of each column.
    columns: Vec<Option<usize>>,
    row: csv::StringRecord,
}

/// Builds the file source on this worker: returns (records, dead letters).
pub fn file_source<'s>(
    scope: Scope<'s, Time>,
    name: &str,
    spec: Arc<FileSourceSpec>,
    env: SourceEnv,
    metrics: Arc<ComponentMetrics>,
) -> (Batches<'s>, Batches<'s>) {
    let (index, peers) = (scope.index(), scope.peers());
    let out = Output::of(&spec.decode);
    reading_source(scope, name, out, env, metrics, move |_address| {
        let mut mine = spec
            .files
            .iter()
            .enumerate()
            .filter(|(k, _)| k % peers == index)
            .map(|(_, f)| f.clone())
            .collect::<Vec<_>>()
            .into_iter();
        let mut current: Option<(String, Open)> = None;
        // Files of `mine` taken so far (the current one among them).
        let mut taken = 0usize;
        move |batch: &mut Batch| {
            if let Some(p) = batch.take_restore() {
                // Resume where a checkpoint left off: skip the files read, reopen the current
                // one at its position.
                let file = p["file"].as_u64().unwrap_or(0) as usize;
                for _ in 0..file {
                    mine.next();
                }
                taken = file;
                if p["open"].as_bool() == Some(true) {
                    let (max_seen, idle_floor) = (batch.max_seen, batch.idle_floor);
                    let Some((path, shown)) = mine.next() else {
                        return Progress::Done;
                    };
                    taken += 1;
                    let resumed = open(&spec, &path, &mut batch.blank).and_then(|mut o| {
                        resume(&mut o, &p).map_err(|e| e.to_string())?;
                        Ok(o)
                    });
                    match resumed {
                        Ok(o) => {
                            batch.later_partitions = mine.len() > 0;
                            batch.enter_partition(max_seen, idle_floor);
                            current = Some((shown, o));
                        }
                        Err(e) => {
                            batch.failure = Some(format!(
                                "source `{}`: cannot resume reading {}: {e}",
                                spec.decode.source,
                                path.display()
                            ));
                            return Progress::Done;
                        }
                    }
                }
            }
            let progress = read_some(&spec, &mut mine, &mut current, &mut taken, batch);
            if batch.track {
                batch.position = position(&mut current, taken);
            }
            progress
        }
    })
}

/// Where the reading is: files taken, and within the open one (the last taken) its byte offset
/// and line (JSON lines) or the CSV items read.
fn position(current: &mut Option<(String, Open)>, taken: usize) -> serde_json::Value {
    use std::io::Seek;
    match current.as_mut().map(|(_, o)| o) {
        None => serde_json::json!({ "file": taken, "open": false }),
        Some(Open::Jsonl {
            reader, line_no, ..
        }) => serde_json::json!({
            "file": taken - 1,
            "open": true,
            "offset": reader.stream_position().unwrap_or(0),
            "line": *line_no,
        }),
        Some(Open::Csv(c)) => serde_json::json!({
            "file": taken - 1,
            "open": true,
            "items": c.items,
        }),
        Some(Open::Parquet(_)) => serde_json::json!({ "file": taken - 1, "open": true }),
    }
}

/// Moves a just-opened file to the position `p` (see [`position`]).
fn resume(o: &mut Open, p: &serde_json::Value) -> std::io::Result<()> {
    use std::io::Seek;
    match o {
        Open::Jsonl {
            reader, line_no, ..
        } => {
            reader.seek(std::io::SeekFrom::Start(p["offset"].as_u64().unwrap_or(0)))?;
            *line_no = p["line"].as_u64().unwrap_or(0);
        }
        Open::Csv(c) => {
            let items = p["items"].as_u64().unwrap_or(0);
            while c.items < items {
                if c.records.next(&mut c.row)?.is_none() {
                    break;
                }
                c.items += 1;
            }
        }
        Open::Parquet(_) => {
            return Err(std::io::Error::other(
                "Parquet files cannot resume from a checkpoint",
            ))
        }
    }
    Ok(())
}

/// One step of reading: up to [`LINES_PER_STEP`] records from this worker's files.
fn read_some(
    spec: &FileSourceSpec,
    mine: &mut std::vec::IntoIter<(PathBuf, String)>,
    current: &mut Option<(String, Open)>,
    taken: &mut usize,
    batch: &mut Batch,
) -> Progress {
    let mut budget = LINES_PER_STEP;
    while budget > 0 {
        if current.is_none() {
            let Some((path, shown)) = mine.next() else {
                return Progress::Done;
            };
            *taken += 1;
            match open(spec, &path, &mut batch.blank) {
                Ok(o) => {
                    batch.start_partition();
                    batch.later_partitions = mine.len() > 0;
                    *current = Some((shown, o));
                }
                Err(e) => {
                    batch.failure = Some(format!(
                        "source `{}`: cannot read {}: {e}",
                        spec.decode.source,
                        path.display()
                    ));
                    return Progress::Done;
                }
            }
        }
        let (shown, open) = current.as_mut().expect("opened above");
        let finished = match open {
            Open::Jsonl {
                reader,
                line_no,
                buf,
            } => read_jsonl(
                &spec.decode,
                reader,
                line_no,
                buf,
                shown,
                batch,
                &mut budget,
            ),
            Open::Csv(csv) => read_csv(&spec.decode, csv, shown, batch, &mut budget),
            Open::Parquet(p) => read_parquet(&spec.decode, p, shown, batch, &mut budget),
        };
        match finished {
            Ok(true) => *current = None,
            Ok(false) => {}
            Err(e) => {
                batch.failure = Some(format!(
                    "source `{}`: cannot read {shown}: {e}",
                    spec.decode.source
                ));
                return Progress::Done;
            }
        }
    }
    Progress::More
}

fn open(spec: &FileSourceSpec, path: &PathBuf, blank: &mut u64) -> Result<Open, String> {
    if let FileFormat::Parquet { from, until } = spec.format {
        let schema = &spec.decode.schema;
        let wanted: Vec<String> = schema.names().map(String::from).collect();
        let time = schema.time.map(|t| schema.fields[t].name.as_str());
        return ParquetFile::open_as(path, &wanted, Some(schema), time, (from, until))
            .map(|p| Open::Parquet(Box::new(p)));
    }
    let file = File::open(path).map_err(|e| e.to_string())?;
    Ok(match spec.format {
        FileFormat::Parquet { .. } => unreachable!("opened above"),
        FileFormat::Jsonl => Open::Jsonl {
            reader: BufReader::with_capacity(1 << 16, file),
            line_no: 0,
            buf: Vec::new(),
        },
        FileFormat::Csv { delimiter } => {
            let mut records = CsvRecords::new(
                BufReader::with_capacity(1 << 16, file),
                delimiter,
                spec.decode.max_line_bytes,
            );
            let mut header = csv::StringRecord::new();
            // Blank lines before the header are counted like any other.
            loop {
                match records.next(&mut header).map_err(|e| e.to_string())? {
                    Some(CsvItem::Blank { .. }) => *blank += 1,
                    Some(CsvItem::Row { .. }) => break,
                    Some(CsvItem::Bad { line, reason }) => {
                        return Err(format!("the CSV header (line {line}) is bad: {reason}"))
                    }
                    None => break,
                }
            }
            let columns = spec.decode.csv_columns(&header)?;
            Open::Csv(Box::new(CsvFile {
                items: 0,
                records,
                columns,
                row: csv::StringRecord::new(),
            }))
        }
    })
}

/// Reads up to `budget` lines; `Ok(true)` at the end of the file. Lines are read as bytes, so
/// a line that is not UTF-8 is one bad record and never disturbs the lines after it.
fn read_jsonl(
    spec: &DecodeSpec,
    reader: &mut BufReader<File>,
    line_no: &mut u64,
    buf: &mut Vec<u8>,
    file: &str,
    batch: &mut Batch,
    budget: &mut usize,
) -> std::io::Result<bool> {
    while *budget > 0 {
        let read = read_line(reader, buf, spec.max_line_bytes)?;
        if read == Line::End {
            return Ok(true);
        }
        *line_no += 1;
        let raw = trim_line_end(buf);
        let raw = if *line_no == 1 { strip_bom(raw) } else { raw };
        let record = match read {
            Line::TooLong(n) => {
                batch.too_long(spec, raw, n, file, *line_no);
                true
            }
            _ => batch.json_line(spec, raw, file, *line_no),
        };
        // Blank lines cost no budget.
        if record {
            *budget -= 1;
        }
    }
    Ok(false)
}

/// Reads up to `budget` records of a Parquet file; `Ok(true)` at its end. The record's line
/// is its row number in the file.
fn read_parquet(
    spec: &DecodeSpec,
    file: &mut ParquetFile,
    shown: &str,
    batch: &mut Batch,
    budget: &mut usize,
) -> std::io::Result<bool> {
    while *budget > 0 {
        match file
            .next(&mut batch.values)
            .map_err(std::io::Error::other)?
        {
            Next::End => return Ok(true),
            Next::Json(line, row) => {
                *budget -= 1;
                batch.json_line(spec, line, shown, row);
            }
            Next::Values(row) => {
                *budget -= 1;
                let checked = spec.complete(&mut batch.values, shown, row);
                let raw = match checked {
                    Ok(()) => String::new(),
                    Err(_) => file.last_as_json(),
                };
                batch.accept(spec, checked, shown, row, &raw);
            }
        }
    }
    Ok(false)
}

fn read_csv(
    spec: &DecodeSpec,
    csv: &mut CsvFile,
    file: &str,
    batch: &mut Batch,
    budget: &mut usize,
) -> std::io::Result<bool> {
    let CsvFile {
        records,
        columns,
        row,
        items,
    } = csv;
    while *budget > 0 {
        let item = records.next(row)?;
        if item.is_some() {
            *items += 1;
        }
        match item {
            None => return Ok(true),
            Some(CsvItem::Blank { .. }) => batch.blank += 1,
            Some(CsvItem::Row { line }) => {
                *budget -= 1;
                let decoded = batch.decode_csv(spec, row, columns, file, line, None);
                let raw = if decoded.is_err() {
                    records.raw()
                } else {
                    String::new()
                };
                batch.accept(spec, decoded, file, line, &raw);
            }
            Some(CsvItem::Bad { line, reason }) => {
                *budget -= 1;
                batch.accept(spec, Err(reason), file, line, &records.raw());
            }
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::RunClock;
    use crate::control::RunControl;
    use crate::convert::to_rows;
    use crate::decode::OnError;
    use crate::epochs::Mode;
    use crate::framing::NOT_UTF8;
    use crate::schema::{Field, Record, Schema};
    use crate::time::TimeFormat;
    use crate::value::{FieldType, Value};
    use timely::dataflow::operators::capture::Extract;
    use timely::dataflow::operators::Capture;

    /// Runs the source over `files` on `workers` workers; returns (records, dead letters).
    fn read(
        files: Vec<(PathBuf, String)>,
        format: FileFormat,
        workers: usize,
    ) -> (Vec<Record>, Vec<Record>) {
        let schema = Schema::new(vec![
            Field::new("ts", FieldType::Timestamp),
            Field::new("v", FieldType::I64),
        ]);
        let mut fields = vec![Field::new("id", FieldType::String)];
        fields.extend(schema.fields);
        let schema = Schema::new(fields).with_time("ts").with_id("id");
        let decode = DecodeSpec::new(
            "src",
            schema,
            TimeFormat::EpochMs,
            true,
            OnError::DeadLetter,
        );
        let spec = Arc::new(FileSourceSpec {
            inferred: None,
            decode: Arc::new(decode),
            files,
            format,
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        timely::execute(timely::Config::process(workers), move |worker| {
            let tx = tx.lock().unwrap().clone();
            let spec = Arc::clone(&spec);
            worker.dataflow::<Time, _, _>(|scope| {
                let (r, d) = file_source(
                    scope,
                    "src",
                    spec,
                    SourceEnv::new(Mode::Continuous, RunClock::now(), RunControl::default()),
                    Arc::default(),
                );
                to_rows(r).capture_into(tx.clone());
                to_rows(d).capture_into(tx);
            });
        })
        .unwrap()
        .join();
        // Two captures per worker, interleaved: tell them apart by width.
        let all: Vec<Record> = rx.extract().into_iter().flat_map(|(_, r)| r).collect();
        let (mut good, mut dead): (Vec<Record>, Vec<Record>) =
            all.into_iter().partition(|r| r.values.len() == 3);
        good.sort();
        dead.sort();
        (good, dead)
    }

    fn file(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> (PathBuf, String) {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        (p, name.to_string())
    }

    #[test]
    fn a_line_that_is_not_utf8_is_one_bad_record() {
        let dir = tempfile::tempdir().unwrap();
        let f = file(&dir, "a.jsonl", b"{\"ts\": 1, \"v\": 1}\n{\"ts\": 2, \"v\": \"\xff\"}\r\n{\"ts\": 3, \"v\": 3}\n\n{\"ts\": 4, \"v\": 4}");
        let (good, dead) = read(vec![f], FileFormat::Jsonl, 1);
        let ids: Vec<&str> = good.iter().map(|r| r.values[0].as_str().unwrap()).collect();
        assert_eq!(ids, vec!["src:a.jsonl:1", "src:a.jsonl:3", "src:a.jsonl:5"]);
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].values[2], Value::U64(2));
        assert_eq!(dead[0].values[3], Value::Str(NOT_UTF8.into()));
        assert_eq!(
            dead[0].values[4],
            Value::Str("{\"ts\": 2, \"v\": \"\\xFF\"}".into())
        );
    }

    #[test]
    fn bad_csv_rows_keep_their_delimiter_and_the_next_row() {
        let dir = tempfile::tempdir().unwrap();
        let f = file(&dir, "a.tsv", b"ts\tv\n1\tx\n2\t2\n3\t\xff\n4\t4\n");
        let (good, dead) = read(vec![f], FileFormat::Csv { delimiter: b'\t' }, 1);
        let vs: Vec<&Value> = good.iter().map(|r| &r.values[2]).collect();
        assert_eq!(vs, vec![&Value::I64(2), &Value::I64(4)]);
        assert_eq!(dead.len(), 2);
        assert_eq!(dead[0].values[4], Value::Str("1\tx".into()));
        assert_eq!(
            dead[1].values[2],
            Value::U64(4),
            "the non-UTF-8 row is line 4"
        );
    }

    #[test]
    fn files_are_shared_out_without_loss_on_any_number_of_workers() {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<_> = (0..5)
            .map(|k| {
                let text: String = (0..100)
                    .map(|i| format!("{{\"ts\": {i}, \"v\": {}}}\n", k * 1000 + i))
                    .collect();
                file(&dir, &format!("p{k}.jsonl"), text.as_bytes())
            })
            .collect();
        let one = read(files.clone(), FileFormat::Jsonl, 1);
        assert_eq!(one.0.len(), 500);
        assert_eq!(one, read(files.clone(), FileFormat::Jsonl, 2));
        assert_eq!(one, read(files, FileFormat::Jsonl, 3));
    }
}
