//! The sinks: `stdout`, `file`, `null` and `view`.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;
use weir_operators::encode::{Encoder, Format};
use weir_operators::schema::Schema;

use super::{Ctx, Op, Planned, SinkSpec, SinkTarget};
use crate::diag::Diag;

/// Writes records to standard output. The run summary goes to standard error, so the output
/// can be piped on; when the reader closes the pipe, the run stops cleanly.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutConfig {
    /// "jsonl" (default) or "csv".
    pub format: Option<Spanned<String>>,
}

/// Writes records to a file, created (or truncated) when the run starts, with its parent
/// directories. All workers of a process write to the one file, a batch at a time.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// The file to write, created (or truncated) with its parent directories when the run
    /// starts — appended to instead when the run resumes from Weir's Kafka commits. All
    /// workers of the process write to it, a whole batch at a time. It may not be a file a
    /// source reads, the default dead-letter file or another sink's file. A FIFO is opened at
    /// the first write. Relative paths start where weir runs.
    pub path: Spanned<String>,
    /// "jsonl" or "csv" (default: "csv" for a path ending in .csv, else "jsonl").
    pub format: Option<Spanned<String>>,
}

/// Discards records, counting them: for benchmarks and dry runs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NullConfig {}

pub(super) fn format(
    ctx: &Ctx,
    f: Option<&Spanned<String>>,
    default: Format,
) -> Result<Format, Diag> {
    match f {
        None => Ok(default),
        Some(f) => ctx
            .choice("format", f, &["jsonl", "csv"])
            .map(|i| [Format::Jsonl, Format::Csv][i]),
    }
}

pub(super) fn planned(target: SinkTarget, format: Format, input: &Schema) -> Planned {
    Planned {
        op: Op::Sink(SinkSpec {
            target,
            encoder: Arc::new(Encoder::new(format, input)),
        }),
        schema: input.clone(),
        dead_letters: false,
        late_schema: None,
        late_right_schema: None,
    }
}

impl StdoutConfig {
    /// Validates and compiles.
    pub fn plan(&self, ctx: &Ctx, input: &Schema) -> Result<Planned, Vec<Diag>> {
        let f = format(ctx, self.format.as_ref(), Format::Jsonl).map_err(|d| vec![d])?;
        Ok(planned(SinkTarget::Stdout, f, input))
    }
}

impl FileSinkConfig {
    /// Validates and compiles.
    pub fn plan(&self, ctx: &Ctx, input: &Schema) -> Result<Planned, Vec<Diag>> {
        let path = PathBuf::from(self.path.get_ref());
        let default = if self.path.get_ref().ends_with(".csv") {
            Format::Csv
        } else {
            Format::Jsonl
        };
        let f = format(ctx, self.format.as_ref(), default).map_err(|d| vec![d])?;
        if self.path.get_ref().trim().is_empty() {
            return Err(vec![ctx
                .error("`path` is empty")
                .at(self.path.span())
                .help("name the file to write")]);
        }
        if path.is_dir() || self.path.get_ref().ends_with('/') {
            return Err(vec![ctx
                .error(format!("`{}` is a directory", self.path.get_ref()))
                .at(self.path.span())
                .help(
                    "give the path of a file to write, such as \"out/result.jsonl\"",
                )]);
        }
        if let Err(why) = creatable(&path) {
            return Err(vec![ctx
                .error(format!("cannot write `{}`: {why}", self.path.get_ref()))
                .at(self.path.span())
                .help("give a path in a directory Weir can create or write (relative paths start where weir runs)")]);
        }
        Ok(planned(SinkTarget::File(path), f, input))
    }
}

/// Whether the file at `path` can be created before the run (which makes its directory):
/// the nearest part of the path that exists must be a directory that can be written to.
/// Checked without creating anything, so `weir validate` changes nothing.
pub(super) fn creatable(path: &std::path::Path) -> Result<(), String> {
    let mut dir = path.parent();
    while let Some(d) = dir {
        let d = if d.as_os_str().is_empty() {
            std::path::Path::new(".")
        } else {
            d
        };
        match std::fs::metadata(d) {
            Ok(m) if !m.is_dir() => {
                return Err(format!("`{}` is a file, not a directory", d.display()))
            }
            Ok(m) if m.permissions().readonly() => {
                return Err(format!(
                    "the directory `{}` cannot be written to",
                    d.display()
                ))
            }
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => dir = d.parent(),
            Err(e) => return Err(format!("`{}`: {e}", d.display())),
        }
    }
    Ok(())
}

impl NullConfig {
    /// Validates and compiles.
    pub fn plan(&self, _ctx: &Ctx, input: &Schema) -> Result<Planned, Vec<Diag>> {
        Ok(planned(SinkTarget::Null, Format::Jsonl, input))
    }
}

/// Keeps the latest record per key in a table of an embedded SQLite database, which any SQLite
/// client can query while the run writes (dashboards, reports): each record replaces the row
/// of its key (an upsert), so a later run's results for a key — a batch recomputation —
/// replace an earlier run's. The table is created when the run starts, if it does not exist.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewConfig {
    /// The database file, created with its parent directories if need be (relative paths start
    /// where weir runs).
    pub path: Spanned<String>,
    /// The table (default: the sink's id). An existing table must have the input's fields as
    /// its columns, in order.
    pub table: Option<Spanned<String>>,
    /// The fields that identify a row, such as `["device_id", "window_start"]`: a record
    /// replaces the row with its key. Default: none, every record is a new row.
    pub key: Option<Spanned<Vec<Spanned<String>>>>,
}

impl ViewConfig {
    /// Validates and compiles.
    pub fn plan(&self, ctx: &Ctx, input: &Schema) -> Result<Planned, Vec<Diag>> {
        let mut diags = Vec::new();
        let path = PathBuf::from(self.path.get_ref());
        if self.path.get_ref().trim().is_empty() || path.is_dir() {
            diags.push(
                ctx.error(format!("`{}` is not a database file", self.path.get_ref()))
                    .at(self.path.span())
                    .help("name the SQLite file to write, such as \"out/views.db\""),
            );
        } else if let Err(why) = creatable(&path) {
            diags.push(
                ctx.error(format!("cannot write `{}`: {why}", self.path.get_ref()))
                    .at(self.path.span())
                    .help("give a path in a directory Weir can create or write"),
            );
        }
        let table = self
            .table
            .as_ref()
            .map_or(ctx.id.clone(), |t| t.get_ref().clone());
        if let Some(t) = self
            .table
            .as_ref()
            .filter(|t| t.get_ref().trim().is_empty())
        {
            diags.push(
                ctx.error("`table` is empty")
                    .at(t.span())
                    .help("name the table, or remove `table` to use the sink's id"),
            );
        }
        let key = ctx.key_fields(
            "key",
            self.key.as_ref(),
            input,
            "views cannot be keyed by",
            &mut diags,
        );
        if !diags.is_empty() {
            return Err(diags);
        }
        Ok(planned(
            SinkTarget::View {
                path,
                table,
                key,
                schema: input.clone(),
            },
            Format::Jsonl,
            input,
        ))
    }
}
