//! `[sources.ID] type = "file"`: JSONL or CSV files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;
use weir_operators::file_source::{FileFormat, FileSourceSpec};

use super::decoding::{decode_spec, max_line_bytes, SchemaDecl, SchemaKeys, TimeKeys};
use super::watermark::WatermarkConfig;
use super::{Ctx, Op, Planned};
use crate::diag::Diag;

/// Reads events from JSONL or CSV files: one file, or every file of a directory (in name order,
/// hidden files skipped). Files are shared out among workers. Relative paths are relative to the
/// directory `weir` runs in.
///
/// Bad records (malformed JSON or CSV, a missing or unreadable timestamp, a missing id, a field
/// of the wrong type) are counted and handled by `on_error`. JSON keys not in the schema are
/// ignored; fields in the schema but absent from a record are NULL, as are empty CSV cells.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// A file, or a directory whose files are all read.
    pub path: Spanned<String>,
    /// "jsonl" (one JSON object per line) or "csv" (with a header row).
    pub format: Spanned<String>,
    /// The fields to read and their types: i64, u64, f64, bool, string, timestamp, json, or
    /// list<T> of one of the first six (see *Lists and JSON*); a dotted name such as "user.id",
    /// or a nested table such as `user = { id = "u64" }`, reads a nested object. Example:
    /// `schema = { ts = "timestamp", device = "string", temperature = "f64" }`. JSON keys not
    /// in the schema are ignored; CSV files must have a column for every schema field (others
    /// are ignored).
    /// `"infer"` reads the first records of the (first) file when the pipeline is validated
    /// and run, prints what it found, and then treats it as declared (a later record that does
    /// not fit is a bad record); `weir schema FILE` prints the same for pasting here.
    pub schema: Spanned<SchemaDecl>,
    /// The event-time field (default "ts"); it must be declared as a timestamp.
    pub timestamp_field: Option<Spanned<String>>,
    /// How timestamps are written: "iso8601" (default: RFC 3339 and its common variants — a
    /// space instead of the `T`, no seconds, an offset such as `+0900`, or no offset, read in
    /// `timezone`), "rfc3339" (strictly), "epoch_s" (fractions allowed), "epoch_ms",
    /// "epoch_us", or a strftime-style pattern such as "%Y-%m-%d %H:%M:%S%.f" or
    /// "%d/%b/%Y:%H:%M:%S %z".
    pub timestamp_format: Option<Spanned<String>>,
    /// The IANA time zone (such as "Asia/Seoul") of timestamps written without an offset
    /// (default "UTC"). Not for the epoch formats or "rfc3339". A local time that occurs twice when clocks go back is the earlier
    /// instant; one skipped when clocks go forward is read with the offset before the change.
    pub timezone: Option<Spanned<String>>,
    /// Where each record's event time comes from: "field" (default: the `timestamp_field`)
    /// or "ingest" (the time Weir read it: processing time). With "ingest" the schema needs no
    /// timestamp, and windows over the source are processing-time windows.
    pub event_time: Option<Spanned<String>>,
    /// The largest share of bad records the source may read, as a fraction such as 0.01:
    /// past it (over the last 1,000 records a worker read, once it has read 100, or over the
    /// whole run at its end) the run fails, naming the source, the rate and the first reasons.
    pub max_error_rate: Option<Spanned<f64>>,
    /// The field that holds each event's unique id (default "id"). When the schema has no such
    /// field, Weir assigns the string id `source:file:line`, the same on every replay.
    pub id_field: Option<Spanned<String>>,
    /// What to do with a bad record: "dead-letter" (default: send it with its file, line and
    /// reason to the output `ID.dead_letter`, or, when nothing reads that output, to the file
    /// `<pipeline>.deadletter.jsonl`), "skip" (count it only) or "fail" (stop the run).
    pub on_error: Option<Spanned<String>>,
    /// The longest line (or CSV record) read, in bytes, from 1024 to 1073741824 (default
    /// 16777216, 16 MiB). A longer
    /// line is a bad record, dead-lettered by its first bytes; it never fills memory.
    pub max_line_bytes: Option<Spanned<i64>>,
    /// The CSV field delimiter, one character (default ",").
    pub delimiter: Option<Spanned<String>>,
    /// How event time behaves: `{ max_out_of_orderness = "2s", idle_timeout = "10s" }`
    /// (default: in order, never idle). Each file is a partition with its own watermark.
    pub watermark: Option<WatermarkConfig>,
}

impl FileSourceConfig {
    /// Validates and compiles.
    pub fn plan(&self, ctx: &Ctx) -> Result<Planned, Vec<Diag>> {
        let mut diags = Vec::new();
        let format = match ctx.choice("format", &self.format, &["jsonl", "csv"]) {
            Ok(0) => Some(FileFormat::Jsonl),
            Ok(_) => {
                let delimiter = match &self.delimiter {
                    None => b',',
                    Some(d) if d.get_ref().len() == 1 => d.get_ref().as_bytes()[0],
                    Some(d) => {
                        diags.push(
                            ctx.error(format!(
                                "`delimiter` must be one ASCII character, not {:?}",
                                d.get_ref()
                            ))
                            .at(d.span())
                            .help("for tab-separated files write delimiter = \"\\t\""),
                        );
                        b','
                    }
                };
                Some(FileFormat::Csv { delimiter })
            }
            Err(d) => {
                diags.push(d);
                None
            }
        };
        if let (Some(FileFormat::Jsonl), Some(d)) = (format, &self.delimiter) {
            diags.push(
                ctx.error("`delimiter` applies to CSV only")
                    .at(d.span())
                    .help("remove it, or set format = \"csv\""),
            );
        }
        let files = match list_files(Path::new(self.path.get_ref())) {
            Ok(f) if f.is_empty() => {
                diags.push(
                    ctx.error(format!(
                        "the directory `{}` has no files to read",
                        self.path.get_ref()
                    ))
                    .at(self.path.span())
                    .help("put the input files there, or point `path` at a file"),
                );
                Vec::new()
            }
            Ok(f) => f,
            Err(e) => {
                diags.push(
                    ctx.error(format!("cannot read `{}`: {e}", self.path.get_ref()))
                        .at(self.path.span())
                        .help("give the path of an existing file or directory (relative paths start where weir runs)"),
                );
                Vec::new()
            }
        };
        let user = || TimeKeys {
            timestamp_field: self.timestamp_field.as_ref(),
            timestamp_format: self.timestamp_format.as_ref(),
            event_time: self.event_time.as_ref(),
        };
        let delimiter = match format {
            Some(FileFormat::Csv { delimiter }) => Some(delimiter),
            _ => None,
        };
        if matches!(self.schema.get_ref(), SchemaDecl::Infer) && files.is_empty() {
            // No file to infer from: said above.
            return Err(diags);
        }
        let schema_keys = SchemaKeys::new(
            ctx,
            &self.schema,
            &user(),
            || super::decoding::infer_file(&files[0].0, delimiter),
            &mut diags,
        );
        let span = self.schema.span();
        let decode = match &schema_keys {
            Some(k) => decode_spec(
                ctx,
                k.keys(
                    user(),
                    self.timezone.as_ref(),
                    self.max_error_rate.as_ref(),
                    self.id_field.as_ref(),
                    self.on_error.as_ref(),
                ),
            ),
            // The inference failed (said above): there is nothing to check.
            None => Err(Vec::new()),
        };
        let watermark = WatermarkConfig::plan_option(self.watermark.as_ref(), ctx, &mut diags);
        let max_line = max_line_bytes(ctx, self.max_line_bytes.as_ref(), &mut diags);
        let decode = match decode {
            Ok(mut d) => {
                d.watermark = watermark;
                d.max_line_bytes = max_line;
                if let Some(FileFormat::Csv { delimiter }) = format {
                    check_csv_headers(ctx, &d, &files, delimiter, span.clone(), &mut diags);
                }
                Some(d)
            }
            Err(mut d) => {
                diags.append(&mut d);
                None
            }
        };
        match (diags.is_empty(), decode, format) {
            (true, Some(decode), Some(format)) => {
                let schema = decode.schema.clone();
                let dead_letters = decode.on_error == weir_operators::decode::OnError::DeadLetter;
                Ok(Planned {
                    op: Op::File(Arc::new(FileSourceSpec {
                        decode: Arc::new(decode),
                        files,
                        format,
                        inferred: schema_keys
                            .as_ref()
                            .and_then(|k| k.describe(self.path.get_ref())),
                    })),
                    schema,
                    dead_letters,
                    late_schema: None,
                    late_right_schema: None,
                })
            }
            _ => Err(diags),
        }
    }
}

/// Checks, before the run, that every CSV file's header has a column for each schema field
/// (an empty file has none to check).
fn check_csv_headers(
    ctx: &Ctx,
    decode: &weir_operators::decode::DecodeSpec,
    files: &[(PathBuf, String)],
    delimiter: u8,
    schema_span: std::ops::Range<usize>,
    diags: &mut Vec<Diag>,
) {
    for (path, shown) in files {
        if std::fs::metadata(path).is_ok_and(|m| m.len() == 0) {
            continue;
        }
        let header = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .from_path(path)
            .and_then(|mut r| r.headers().cloned());
        let problem = match header {
            Ok(h) => decode.csv_columns(&h).err().map(|e| {
                let names: Vec<&str> = h.iter().map(str::trim).collect();
                (
                    e,
                    format!("the header of `{shown}` is: {}", names.join(", ")),
                )
            }),
            Err(e) => Some((
                format!("cannot read the CSV header of `{shown}`: {e}"),
                "a CSV file starts with a header row naming its columns".to_string(),
            )),
        };
        if let Some((message, help)) = problem {
            diags.push(
                ctx.error(format!("`{shown}`: {message}"))
                    .at(schema_span.clone())
                    .help(help),
            );
        }
    }
}

/// The files under `path` with the names they are known by (the path as given for a file; the
/// name within the directory for a directory's files).
pub(super) fn list_files(path: &Path) -> std::io::Result<Vec<(PathBuf, String)>> {
    let meta = std::fs::metadata(path)?;
    if meta.is_file() {
        let shown = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        return Ok(vec![(path.to_path_buf(), shown)]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !entry.file_type()?.is_file() {
            continue;
        }
        files.push((entry.path(), name));
    }
    files.sort();
    Ok(files)
}
