//! Reading Parquet files for the `parquet` source (the batch layer of a lambda architecture,
//! reading what the `parquet` sink archived).
//!
//! A file is read a row group's batch at a time, only the columns the source's schema names
//! (a projection), and only the records whose event time is in the source's range (a record
//! without one is kept, to be dead-lettered as such). Columns of Arrow types Weir does not have
//! are converted to the nearest one it has (32-bit integers and floats widen, other timestamp
//! units and dates become microsecond timestamps, large and dictionary strings plain strings);
//! a string column marked `weir.type = json` (as the sink writes `json` fields) is JSON.
//!
//! When every column read has the type the source declares (as when the schema comes from the
//! files), records go straight from the columns into the source's values, and only the checks
//! every source makes (a missing timestamp or id) remain. Otherwise each record is handed to the
//! same decoder as a JSON line (nested fields by their dotted paths), so a value of another type
//! than declared is a bad record with the reason the other sources give.
//!
//! ```
//! use std::sync::Arc;
//! use weir_operators::parquet_source::{file_fields, ParquetFile};
//! use weir_operators::value::FieldType;
//! use arrow::array::{Int32Array, RecordBatch};
//!
//! let path = std::env::temp_dir().join(format!("weir-pq-doc-{}.parquet", std::process::id()));
//! let batch = RecordBatch::try_from_iter([("v", Arc::new(Int32Array::from(vec![1, 2])) as _)]).unwrap();
//! let mut w = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), batch.schema(), None).unwrap();
//! w.write(&batch).unwrap();
//! w.close().unwrap();
//! assert_eq!(file_fields(&path).unwrap().0, vec![("v".to_string(), FieldType::I64)]);
//! let mut f = ParquetFile::open(&path, &["v".to_string()], None, (None, None)).unwrap();
//! let mut lines = Vec::new();
//! while let Some((line, row)) = f.next_line().unwrap() {
//!     lines.push((String::from_utf8(line.to_vec()).unwrap(), row));
//! }
//! assert_eq!(lines, vec![("{\"v\":1}".to_string(), 1), ("{\"v\":2}".to_string(), 2)]);
//! # std::fs::remove_file(&path).unwrap();
//! ```

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, UInt64Array};
use arrow::datatypes::{DataType, Field as ArrowField, TimestampMicrosecondType};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;

use crate::chunk::{arrow_schema, data_type, field_type, Chunk};
use crate::encode::{Encoder, Format};
use crate::parquet_sink::WEIR_TYPE;
use crate::schema::{Field, Schema};
use crate::value::FieldType;

/// Records read per batch.
const BATCH_ROWS: usize = 1024;

/// The Weir type a column of Arrow type `t` is read as, if any.
fn weir_type(f: &ArrowField) -> Option<FieldType> {
    if f.metadata().get(WEIR_TYPE).map(String::as_str) == Some("json") {
        return Some(FieldType::Json);
    }
    Some(match f.data_type() {
        DataType::Int8 | DataType::Int16 | DataType::Int32 => FieldType::I64,
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 => FieldType::U64,
        DataType::Float16 | DataType::Float32 => FieldType::F64,
        DataType::LargeUtf8 | DataType::Utf8View => FieldType::String,
        DataType::Dictionary(_, v) if matches!(**v, DataType::Utf8 | DataType::LargeUtf8) => {
            FieldType::String
        }
        DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 => FieldType::Timestamp,
        t => field_type(t)?,
    })
}

/// A file's fields as Weir reads them, and a note for each column it cannot read.
pub type FileFields = (Vec<(String, FieldType)>, Vec<String>);

/// The fields of the Parquet file at `path` as Weir reads them, and a note for each column it
/// cannot read.
pub fn file_fields(path: &Path) -> Result<FileFields, String> {
    let f = File::open(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let b = ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| {
        format!(
            "`{}` is not a Parquet file Weir can read: {e}",
            path.display()
        )
    })?;
    let mut fields = Vec::new();
    let mut notes = Vec::new();
    for f in b.schema().fields() {
        match weir_type(f) {
            Some(t) => fields.push((f.name().clone(), t)),
            None => notes.push(format!(
                "column `{}` ({}) has no Weir type and is not read",
                f.name(),
                f.data_type()
            )),
        }
    }
    Ok((fields, notes))
}

/// What [`ParquetFile::next`] read.
pub enum Next<'a> {
    /// A record as a JSON line, with its row number in the file.
    Json(&'a [u8], u64),
    /// A record whose values are in place, with its row number.
    Values(u64),
    /// The end of the file.
    End,
}

/// An open Parquet file, read as values or as JSON lines.
pub struct ParquetFile {
    reader: ParquetRecordBatchReader,
    /// The columns read, as Weir fields.
    schema: Schema,
    encoder: Encoder,
    /// Position of the time column among them.
    time: Option<usize>,
    range: (Option<i64>, Option<i64>),
    /// The current batch as JSON lines, with each one's row number in the file.
    text: Vec<u8>,
    lines: Vec<(usize, usize, u64)>,
    next: usize,
    /// Rows of the file before the current batch.
    rows_before: u64,
    /// Straight from the columns: each column's position among the values, and how many
    /// values a record has.
    direct: Option<(Vec<usize>, usize)>,
    /// The current batch (direct reading), and the rows of it in range.
    chunk: Option<Chunk>,
    rows: Vec<(usize, u64)>,
}

impl ParquetFile {
    /// Opens `path`, reading the columns named in `wanted` (others are not read) and only the
    /// records whose time (column `time`) is in `[from, until)` micros, or have none.
    pub fn open(
        path: &Path,
        wanted: &[String],
        time: Option<&str>,
        range: (Option<i64>, Option<i64>),
    ) -> Result<ParquetFile, String> {
        Self::open_as(path, wanted, None, time, range)
    }

    /// Opens `path` as [`open`](Self::open) does; with `declared` (the source's schema), a
    /// file whose columns all have their declared types is read straight into values.
    pub fn open_as(
        path: &Path,
        wanted: &[String],
        declared: Option<&Schema>,
        time: Option<&str>,
        range: (Option<i64>, Option<i64>),
    ) -> Result<ParquetFile, String> {
        let f = File::open(path).map_err(|e| e.to_string())?;
        let b = ParquetRecordBatchReaderBuilder::try_new(f)
            .map_err(|e| format!("not a Parquet file Weir can read: {e}"))?;
        let arrow = Arc::clone(b.schema());
        // Parquet's own schema numbers the roots as the Arrow schema does.
        let mut roots = Vec::new();
        let mut fields = Vec::new();
        for (i, f) in arrow.fields().iter().enumerate() {
            if !wanted.iter().any(|w| w == f.name()) {
                continue;
            }
            let Some(t) = weir_type(f) else {
                return Err(format!(
                    "column `{}` is of type {}, which Weir cannot read",
                    f.name(),
                    f.data_type()
                ));
            };
            roots.push(i);
            fields.push(Field::new(f.name(), t));
        }
        let mask = ProjectionMask::roots(b.parquet_schema(), roots);
        let reader = b
            .with_projection(mask)
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(|e| format!("cannot read: {e}"))?;
        let schema = Schema::new(fields);
        let time = time.and_then(|t| schema.index_of(t));
        let direct = declared.and_then(|d| {
            let positions: Option<Vec<usize>> = schema
                .fields
                .iter()
                .map(|f| d.index_of(&f.name).filter(|&p| d.fields[p].ty == f.ty))
                .collect();
            positions.map(|p| (p, d.len()))
        });
        Ok(ParquetFile {
            direct,
            chunk: None,
            rows: Vec::new(),
            reader,
            encoder: Encoder::new(Format::Jsonl, &schema),
            schema,
            time,
            range,
            text: Vec::new(),
            lines: Vec::new(),
            next: 0,
            rows_before: 0,
        })
    }

    /// The next record: into `values` when the file is read directly, else as a JSON line.
    pub fn next(&mut self, values: &mut Vec<crate::value::Value>) -> Result<Next<'_>, String> {
        if self.direct.is_none() {
            return Ok(match self.next_line()? {
                Some((line, row)) => Next::Json(line, row),
                None => Next::End,
            });
        }
        while self.next == self.rows.len() {
            let Some(batch) = self.reader.next() else {
                return Ok(Next::End);
            };
            let batch = batch.map_err(|e| e.to_string())?;
            let (chunk, rows) = self.in_range(&batch)?;
            self.rows = chunk
                .as_ref()
                .map(|_| rows.iter().enumerate().map(|(i, &r)| (i, r)).collect())
                .unwrap_or_default();
            self.chunk = chunk;
            self.next = 0;
        }
        let (i, row) = self.rows[self.next];
        self.next += 1;
        let chunk = self.chunk.as_ref().expect("loaded with its rows");
        let (positions, width) = self.direct.as_ref().expect("checked above");
        values.clear();
        values.resize(*width, crate::value::Value::Null);
        for (c, &p) in chunk.columns().iter().zip(positions) {
            values[p] = crate::chunk::value_at(c, i);
        }
        Ok(Next::Values(row))
    }

    /// The record last read directly, as a JSON line (for a dead letter).
    pub fn last_as_json(&self) -> String {
        let (Some(chunk), Some(&(i, _))) = (&self.chunk, self.rows.get(self.next.wrapping_sub(1)))
        else {
            return String::new();
        };
        let one = chunk.take(&arrow::array::UInt32Array::from(vec![i as u32]));
        let mut text = Vec::new();
        self.encoder.encode_chunk(&one, &mut text);
        String::from_utf8_lossy(text.strip_suffix(b"\n").unwrap_or(&text)).into_owned()
    }

    /// The next record as a JSON line, with its row number in the file (from 1); `None` at the
    /// end of the file.
    pub fn next_line(&mut self) -> Result<Option<(&[u8], u64)>, String> {
        while self.next == self.lines.len() {
            let Some(batch) = self.reader.next() else {
                return Ok(None);
            };
            let batch = batch.map_err(|e| e.to_string())?;
            self.load(&batch)?;
        }
        let (start, end, row) = self.lines[self.next];
        self.next += 1;
        Ok(Some((&self.text[start..end], row)))
    }

    /// Encodes the records of `batch` in range.
    fn load(&mut self, batch: &RecordBatch) -> Result<(), String> {
        let (chunk, rows) = self.in_range(batch)?;
        self.text.clear();
        if let Some(chunk) = &chunk {
            self.encoder.encode_chunk(chunk, &mut self.text);
        }
        self.lines.clear();
        let mut start = 0;
        for (pos, row) in self
            .text
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .map(|(p, _)| p)
            .zip(rows)
        {
            self.lines.push((start, pos, row));
            start = pos + 1;
        }
        self.next = 0;
        Ok(())
    }

    /// The records of `batch` in range, as a chunk of the file's fields, with their row numbers
    /// in the file (from 1); `None` when none is.
    fn in_range(&mut self, batch: &RecordBatch) -> Result<(Option<Chunk>, Vec<u64>), String> {
        let n = batch.num_rows();
        let columns: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .zip(&self.schema.fields)
            .map(|(c, f)| {
                let to = data_type(f.ty);
                match c.data_type() == &to {
                    true => Ok(Arc::clone(c)),
                    false => arrow::compute::cast(c, &to)
                        .map_err(|e| format!("cannot read column `{}`: {e}", f.name)),
                }
            })
            .collect::<Result<_, _>>()?;
        let keep: Option<BooleanArray> = match (self.time, self.range) {
            (Some(t), (from, until)) if from.is_some() || until.is_some() => Some(
                columns[t]
                    .as_primitive::<TimestampMicrosecondType>()
                    .iter()
                    .map(|v| {
                        Some(v.is_none_or(|v| {
                            from.is_none_or(|f| v >= f) && until.is_none_or(|u| v < u)
                        }))
                    })
                    .collect(),
            ),
            _ => None,
        };
        let chunk = Chunk::from_columns(
            &arrow_schema(&self.schema),
            columns,
            Arc::new(Int64Array::from(vec![0; n])),
            Arc::new(UInt64Array::from(vec![0; n])),
        );
        let before = self.rows_before;
        self.rows_before += n as u64;
        let (chunk, rows): (Chunk, Vec<u64>) = match &keep {
            Some(k) => (
                chunk.filter(k),
                (0..n as u64)
                    .filter(|&i| k.value(i as usize))
                    .map(|i| before + i + 1)
                    .collect(),
            ),
            None => (chunk, (0..n as u64).map(|i| before + i + 1).collect()),
        };
        Ok(((!rows.is_empty()).then_some(chunk), rows))
    }
}

/// The event-time range `[start, end)` micros of a Hive-style partition path
/// (`…/dt=2026-03-01/hour=10/…`), when it names one.
pub fn partition_range(path: &Path) -> Option<(i64, i64)> {
    let mut day = None;
    let mut hour = None;
    for seg in path.iter().filter_map(|s| s.to_str()) {
        if let Some(d) = seg.strip_prefix("dt=") {
            day = chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok();
        } else if let Some(h) = seg.strip_prefix("hour=") {
            hour = h.parse::<u32>().ok().filter(|h| *h < 24);
        }
    }
    let start = day?
        .and_hms_opt(hour.unwrap_or(0), 0, 0)?
        .and_utc()
        .timestamp_micros();
    let len: i64 = if hour.is_some() {
        3_600_000_000
    } else {
        86_400_000_000
    };
    Some((start, start + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_name_their_time_range() {
        let h = 3_600_000_000i64;
        let day = 20_513 * 24 * h; // 2026-03-01
        assert_eq!(
            partition_range(Path::new("a/dt=2026-03-01/hour=10/part-x.parquet")),
            Some((day + 10 * h, day + 11 * h))
        );
        assert_eq!(
            partition_range(Path::new("a/dt=2026-03-01/part-x.parquet")),
            Some((day, day + 24 * h))
        );
        assert_eq!(partition_range(Path::new("a/dt=__null__/p.parquet")), None);
        assert_eq!(partition_range(Path::new("a/p.parquet")), None);
    }
}
