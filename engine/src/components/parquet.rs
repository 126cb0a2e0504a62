//! `[sources.ID] type = "parquet"` and `[sinks.ID] type = "parquet"`: the archive of a lambda
//! architecture, event-time-partitioned Parquet files on a local directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;
use weir_operators::file_source::{FileFormat, FileSourceSpec};
use weir_operators::parquet_sink::Granularity;
use weir_operators::parquet_source::{file_fields, partition_range};
use weir_operators::schema::Schema;
use weir_operators::value::FieldType;

use super::decoding::{decode_spec, SchemaDecl, SchemaKeys, TimeKeys};
use super::watermark::WatermarkConfig;
use super::{Ctx, Op, Planned, SinkTarget};
use crate::diag::Diag;

/// Reads Parquet files back as a bounded input — the batch layer of a lambda architecture runs
/// the live pipeline over what a `parquet` sink archived. `path` is one file or a directory,
/// read with all its subdirectories (`*.parquet` files; names starting with `.` or `_`, such
/// as files still being written, are skipped). Files are shared out among workers.
///
/// With `from` and/or `until`, only records whose event time is in `[from, until)` are read,
/// and whole partitions outside the range (directories `dt=YYYY-MM-DD`, `hour=HH`, as the sink
/// writes them) are not opened at all. Records come in file order, so give a `watermark` with
/// `max_out_of_orderness` when files hold times out of order, as for the `file` source; bad
/// records (a missing timestamp, a value not of its declared type) are handled by `on_error`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParquetSourceConfig {
    /// A Parquet file, or a directory of them (searched through its subdirectories).
    pub path: Spanned<String>,
    /// The fields to read and their types, as for the `file` source (a field the files do not
    /// have is NULL; columns not named are not read). Default: every column of the first file,
    /// with its Parquet type (32-bit numbers widen to 64-bit, dates and other timestamp units
    /// become timestamps; a column of a type Weir does not have is skipped).
    pub schema: Option<Spanned<SchemaDecl>>,
    /// The event-time field (default "ts", else the files' first timestamp column); it must be
    /// a timestamp.
    pub timestamp_field: Option<Spanned<String>>,
    /// "field" (default) or "ingest" (processing time: the time Weir read the record).
    pub event_time: Option<Spanned<String>>,
    /// Read only records at or after this event time (RFC 3339, such as
    /// "2026-03-01T10:00:00Z"; no offset means UTC).
    pub from: Option<Spanned<String>>,
    /// Read only records before this event time (same form as `from`).
    pub until: Option<Spanned<String>>,
    /// The largest share of bad records the source may read (see the `file` source).
    pub max_error_rate: Option<Spanned<f64>>,
    /// The field that holds each event's unique id (default "id"). When the schema has no such
    /// field, Weir assigns the string id `source:file:row`, the same on every replay.
    pub id_field: Option<Spanned<String>>,
    /// What to do with a bad record: "dead-letter" (default), "skip" or "fail" (see the
    /// `file` source).
    pub on_error: Option<Spanned<String>>,
    /// How event time behaves: `{ max_out_of_orderness = "2s", idle_timeout = "10s" }`
    /// (default: in order). Each file is a partition with its own watermark.
    pub watermark: Option<WatermarkConfig>,
}

/// The Parquet files under `path` (a file: itself), skipping names that start with `.` or `_`,
/// each with the name it is known by (its path within the directory).
fn parquet_files(path: &Path) -> std::io::Result<Vec<(PathBuf, String)>> {
    if std::fs::metadata(path)?.is_file() {
        return super::file::list_files(path);
    }
    let mut files = Vec::new();
    let mut dirs = vec![path.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name.starts_with('_') {
                continue;
            }
            let ty = entry.file_type()?;
            if ty.is_dir() {
                dirs.push(entry.path());
            } else if ty.is_file() && name.ends_with(".parquet") {
                let shown = entry
                    .path()
                    .strip_prefix(path)
                    .map(|p| p.display().to_string())
                    .unwrap_or(name);
                files.push((entry.path(), shown));
            }
        }
    }
    files.sort();
    Ok(files)
}

/// A `from` or `until` time.
fn instant(
    ctx: &Ctx,
    key: &str,
    v: Option<&Spanned<String>>,
    diags: &mut Vec<Diag>,
) -> Option<i64> {
    let v = v?;
    match weir_operators::time::parse_iso8601(v.get_ref(), &chrono_tz::UTC) {
        Ok(t) => Some(t),
        Err(e) => {
            diags.push(
                ctx.error(format!("`{key}` is not a time: {e}"))
                    .at(v.span())
                    .help("write it as RFC 3339, such as \"2026-03-01T10:00:00Z\""),
            );
            None
        }
    }
}

impl ParquetSourceConfig {
    /// Validates and compiles.
    pub fn plan(&self, ctx: &Ctx) -> Result<Planned, Vec<Diag>> {
        let mut diags = Vec::new();
        let from = instant(ctx, "from", self.from.as_ref(), &mut diags);
        let until = instant(ctx, "until", self.until.as_ref(), &mut diags);
        if let (Some(f), Some(u), Some(us)) = (from, until, &self.until) {
            if u <= f {
                diags.push(
                    ctx.error("`until` is not after `from`: the range reads nothing")
                        .at(us.span())
                        .help("give an `until` later than `from`, or remove one of them"),
                );
            }
        }
        let all = match parquet_files(Path::new(self.path.get_ref())) {
            Ok(f) if f.is_empty() => {
                diags.push(
                    ctx.error(format!(
                        "`{}` has no Parquet files (*.parquet) to read",
                        self.path.get_ref()
                    ))
                    .at(self.path.span())
                    .help("point `path` at the directory a `parquet` sink writes, after a run has completed files there"),
                );
                return Err(diags);
            }
            Ok(f) => f,
            Err(e) => {
                diags.push(
                    ctx.error(format!("cannot read `{}`: {e}", self.path.get_ref()))
                        .at(self.path.span())
                        .help("give the path of an existing file or directory (relative paths start where weir runs)"),
                );
                return Err(diags);
            }
        };
        // Partition pruning: a partition wholly outside [from, until) is never opened.
        let files: Vec<(PathBuf, String)> = all
            .iter()
            .filter(|(p, _)| {
                partition_range(p)
                    .is_none_or(|(s, e)| from.is_none_or(|f| e > f) && until.is_none_or(|u| s < u))
            })
            .cloned()
            .collect();
        let default_decl = Spanned::new(self.path.span(), SchemaDecl::Infer);
        let decl = self.schema.as_ref().unwrap_or(&default_decl);
        let user = || TimeKeys {
            timestamp_field: self.timestamp_field.as_ref(),
            timestamp_format: None,
            event_time: self.event_time.as_ref(),
        };
        // The schema comes from the first file read (the first of all when the range reads none).
        let first = files.first().unwrap_or(&all[0]).0.clone();
        let wanted_time = self.timestamp_field.as_ref().map(|t| t.get_ref().clone());
        let schema_keys = SchemaKeys::new(
            ctx,
            decl,
            &user(),
            || {
                let (fields, notes) = file_fields(&first)?;
                let times: Vec<&String> = fields
                    .iter()
                    .filter(|(_, t)| *t == FieldType::Timestamp)
                    .map(|(n, _)| n)
                    .collect();
                let time_field = wanted_time
                    .or_else(|| {
                        times
                            .iter()
                            .find(|n| n.as_str() == "ts")
                            .map(|n| n.to_string())
                    })
                    .or_else(|| times.first().map(|n| n.to_string()));
                Ok(weir_operators::infer::Inferred {
                    fields,
                    time_field,
                    time_format: None,
                    records: 0,
                    notes,
                })
            },
            &mut diags,
        );
        let decode = match &schema_keys {
            Some(k) => decode_spec(
                ctx,
                k.keys(
                    user(),
                    None,
                    self.max_error_rate.as_ref(),
                    self.id_field.as_ref(),
                    self.on_error.as_ref(),
                ),
            ),
            None => Err(Vec::new()),
        };
        let watermark = WatermarkConfig::plan_option(self.watermark.as_ref(), ctx, &mut diags);
        let decode = match decode {
            Ok(mut d) => {
                d.watermark = watermark;
                check_columns(ctx, &d.schema, &first, decl.span(), &mut diags);
                Some(d)
            }
            Err(mut d) => {
                diags.append(&mut d);
                None
            }
        };
        match (diags.is_empty(), decode) {
            (true, Some(decode)) => {
                let schema = decode.schema.clone();
                let dead_letters = decode.on_error == weir_operators::decode::OnError::DeadLetter;
                Ok(Planned {
                    op: Op::File(Arc::new(FileSourceSpec {
                        decode: Arc::new(decode),
                        files,
                        format: FileFormat::Parquet { from, until },
                        inferred: None,
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

/// Checks, before the run, that the declared fields the first file has are of types Weir can
/// read.
fn check_columns(
    ctx: &Ctx,
    schema: &Schema,
    first: &Path,
    span: std::ops::Range<usize>,
    diags: &mut Vec<Diag>,
) {
    let wanted: Vec<String> = schema.names().map(String::from).collect();
    if let Err(e) =
        weir_operators::parquet_source::ParquetFile::open(first, &wanted, None, (None, None))
    {
        diags.push(
            ctx.error(format!("cannot read `{}`: {e}", first.display()))
                .at(span)
                .help("leave that column out of `schema`, or convert it when writing the file"),
        );
    }
}

/// Writes records into event-time-partitioned Parquet files under a directory —
/// `dt=2026-03-01/hour=10/part-….parquet` — the archive a batch layer (a `parquet` source)
/// recomputes from. Each worker writes its own files. A file is written under a hidden name and
/// renamed when complete, so readers never see a partial file, even after a crash; files are
/// completed at `roll_bytes`, after `roll_interval`, and when the input ends. A record without
/// an event time goes under `dt=__null__`. Compression is Snappy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParquetSinkConfig {
    /// The directory the partitions go in, created if need be (relative paths start where weir
    /// runs). Earlier runs' files stay: each run's file names are its own.
    pub path: Spanned<String>,
    /// "hour" (default: `dt=YYYY-MM-DD/hour=HH`) or "day" (`dt=YYYY-MM-DD`), by the UTC event
    /// time.
    pub partition: Option<Spanned<String>>,
    /// The timestamp field that partitions (default: the input's event time — a window's
    /// `window_start`).
    pub time_field: Option<Spanned<String>>,
    /// Complete a file once it holds about this many bytes (default 134217728, 128 MiB; at
    /// least 1024).
    pub roll_bytes: Option<Spanned<i64>>,
    /// Complete a file once it has been open this long (processing time; default "1m").
    pub roll_interval: Option<Spanned<String>>,
}

impl ParquetSinkConfig {
    /// Validates and compiles.
    pub fn plan(&self, ctx: &Ctx, input: &Schema) -> Result<Planned, Vec<Diag>> {
        let mut diags = Vec::new();
        let dir = PathBuf::from(self.path.get_ref());
        if self.path.get_ref().trim().is_empty() || dir.is_file() {
            diags.push(
                ctx.error(format!("`{}` is not a directory", self.path.get_ref()))
                    .at(self.path.span())
                    .help("name the directory to write the partitions in, such as \"archive/readings\""),
            );
        } else if let Err(why) = super::sinks::creatable(&dir.join("x")) {
            diags.push(
                ctx.error(format!("cannot write `{}`: {why}", self.path.get_ref()))
                    .at(self.path.span())
                    .help("give a directory Weir can create or write"),
            );
        }
        let granularity = ctx
            .optional_choice(
                "partition",
                self.partition.as_ref(),
                &["hour", "day"],
                &mut diags,
            )
            .map(|i| [Granularity::Hour, Granularity::Day][i]);
        let time = match &self.time_field {
            Some(f) => match input.index_of(f.get_ref()) {
                Some(p) if input.fields[p].ty == FieldType::Timestamp => Some(p),
                Some(p) => {
                    diags.push(
                        ctx.error(format!(
                            "`{}` is a {}, not a timestamp",
                            f.get_ref(),
                            input.fields[p].ty
                        ))
                        .at(f.span())
                        .help("name a timestamp field to partition by"),
                    );
                    None
                }
                None => {
                    diags.push(
                        ctx.error(format!(
                            "`time_field` names `{}`, which is not an input field",
                            f.get_ref()
                        ))
                        .at(f.span())
                        .help(format!(
                            "the input fields are: {}",
                            input.names().collect::<Vec<_>>().join(", ")
                        )),
                    );
                    None
                }
            },
            None => match input.time {
                Some(t) if input.fields[t].ty == FieldType::Timestamp => Some(t),
                _ => {
                    diags.push(
                        ctx.error("the input has no event-time field to partition by")
                            .at(self.path.span())
                            .help("name a timestamp field with time_field = \"...\""),
                    );
                    None
                }
            },
        };
        let roll_bytes = match &self.roll_bytes {
            None => 128 << 20,
            Some(b) if *b.get_ref() >= 1024 => *b.get_ref() as u64,
            Some(b) => {
                diags.push(
                    ctx.error(format!("`roll_bytes` is {}, below 1024", b.get_ref()))
                        .at(b.span())
                        .help("give a size in bytes of at least 1024, such as 134217728 (128 MiB)"),
                );
                0
            }
        };
        let roll_interval = match &self.roll_interval {
            None => Some(std::time::Duration::from_secs(60)),
            Some(r) => match ctx.duration("roll_interval", r) {
                Ok(d) if !d.is_zero() => Some(d),
                Ok(_) => {
                    diags.push(
                        ctx.error("`roll_interval` is zero")
                            .at(r.span())
                            .help("give a duration such as \"1m\""),
                    );
                    None
                }
                Err(d) => {
                    diags.push(d);
                    None
                }
            },
        };
        match (diags.is_empty(), granularity, time, roll_interval) {
            (true, Some(granularity), Some(time), Some(roll_interval)) => {
                Ok(super::sinks::planned(
                    SinkTarget::Parquet(Arc::new(weir_operators::parquet_sink::ParquetSpec {
                        dir,
                        time,
                        schema: input.clone(),
                        granularity,
                        roll_bytes,
                        roll_interval,
                    })),
                    weir_operators::encode::Format::Jsonl,
                    input,
                ))
            }
            _ => Err(diags),
        }
    }
}
