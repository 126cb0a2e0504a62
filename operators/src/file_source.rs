//! The `file` source: JSONL or CSV files, one file or every file of a directory.
//!
//! Files are shared out among workers (file `k` to worker `k mod W`); each is read in batches, so
//! a large file never blocks a worker for long. A record's assigned id is
//! `source:file:line`, the same on every replay of the same input.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::sync::Arc;

use timely::dataflow::Scope;

use crate::control::RunControl;
use crate::decode::DecodeSpec;
use crate::metrics::ComponentMetrics;
use crate::reading::{reading_source, Batch, Progress};
use crate::{Records, Time};

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
}

/// Lines read per activation.
const LINES_PER_STEP: usize = 4096;

enum Open {
    Jsonl {
        reader: BufReader<File>,
        line_no: u64,
        buf: String,
    },
    Csv {
        reader: csv::Reader<File>,
        columns: Vec<Option<usize>>,
        row: csv::StringRecord,
    },
}

/// Builds the file source on this worker: returns (records, dead letters).
pub fn file_source<'s>(
    scope: Scope<'s, Time>,
    name: &str,
    spec: Arc<FileSourceSpec>,
    ctl: RunControl,
    metrics: Arc<ComponentMetrics>,
) -> (Records<'s>, Records<'s>) {
    let (index, peers) = (scope.index(), scope.peers());
    reading_source(scope, name, ctl, metrics, move |_address| {
        let mut mine = spec
            .files
            .iter()
            .enumerate()
            .filter(|(k, _)| k % peers == index)
            .map(|(_, f)| f.clone())
            .collect::<Vec<_>>()
            .into_iter();
        let mut current: Option<(String, Open)> = None;
        move |batch: &mut Batch| {
            let mut budget = LINES_PER_STEP;
            while budget > 0 {
                if current.is_none() {
                    let Some((path, shown)) = mine.next() else {
                        return Progress::Done;
                    };
                    match open(&spec, &path) {
                        Ok(o) => current = Some((shown, o)),
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
                    Open::Csv {
                        reader,
                        columns,
                        row,
                    } => read_csv(
                        &spec.decode,
                        reader,
                        columns,
                        row,
                        shown,
                        batch,
                        &mut budget,
                    ),
                };
                match finished {
                    Ok(true) => current = None,
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
    })
}

fn open(spec: &FileSourceSpec, path: &PathBuf) -> Result<Open, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    Ok(match spec.format {
        FileFormat::Jsonl => Open::Jsonl {
            reader: BufReader::with_capacity(1 << 16, file),
            line_no: 0,
            buf: String::new(),
        },
        FileFormat::Csv { delimiter } => {
            let mut reader = csv::ReaderBuilder::new()
                .delimiter(delimiter)
                .flexible(true)
                .has_headers(true)
                .from_reader(file);
            let header = reader.headers().map_err(|e| e.to_string())?.clone();
            let columns = spec.decode.csv_columns(&header)?;
            Open::Csv {
                reader,
                columns,
                row: csv::StringRecord::new(),
            }
        }
    })
}

/// Reads up to `budget` lines; `Ok(true)` at the end of the file.
fn read_jsonl(
    spec: &DecodeSpec,
    reader: &mut BufReader<File>,
    line_no: &mut u64,
    buf: &mut String,
    file: &str,
    batch: &mut Batch,
    budget: &mut usize,
) -> std::io::Result<bool> {
    while *budget > 0 {
        buf.clear();
        let n = match reader.read_line(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                // Not UTF-8: skip the rest of the line as one bad record.
                *line_no += 1;
                let mut raw = Vec::new();
                reader.read_until(b'\n', &mut raw)?;
                batch.accept(
                    spec,
                    Err("the line is not valid UTF-8".into()),
                    file,
                    *line_no,
                    "",
                );
                *budget -= 1;
                continue;
            }
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(true);
        }
        *line_no += 1;
        let line = buf.trim_end_matches(['\n', '\r']);
        if line.trim().is_empty() {
            continue;
        }
        let decoded = spec.decode_json(line, file, *line_no);
        batch.accept(spec, decoded, file, *line_no, line);
        *budget -= 1;
    }
    Ok(false)
}

fn read_csv(
    spec: &DecodeSpec,
    reader: &mut csv::Reader<File>,
    columns: &[Option<usize>],
    row: &mut csv::StringRecord,
    file: &str,
    batch: &mut Batch,
    budget: &mut usize,
) -> std::io::Result<bool> {
    while *budget > 0 {
        *budget -= 1;
        match reader.read_record(row) {
            Ok(false) => return Ok(true),
            Ok(true) => {
                let line = row.position().map(|p| p.line()).unwrap_or(0);
                if row.len() == 1 && row[0].trim().is_empty() {
                    continue;
                }
                let decoded = spec.decode_csv(row, columns, file, line);
                let raw = if decoded.is_err() {
                    row.iter().collect::<Vec<_>>().join(",")
                } else {
                    String::new()
                };
                batch.accept(spec, decoded, file, line, &raw);
            }
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                if let csv::ErrorKind::Io(_) = e.kind() {
                    return Err(std::io::Error::other(e.to_string()));
                }
                batch.accept(spec, Err(format!("malformed CSV: {e}")), file, line, "");
            }
        }
    }
    Ok(false)
}
