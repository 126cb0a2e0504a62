//! Columnar batches: the unit of data Weir's operators exchange.
//!
//! A [`Chunk`] is an Apache Arrow [`RecordBatch`]: one column per field of the stream's
//! [`Schema`], in schema order, followed by two metadata columns, [`INGEST`] (`Int64`,
//! wall-clock microseconds when the record's newest input entered Weir) and [`WATERMARK`]
//! (`UInt64`, its source partition's watermark when it was read). Keeping the metadata as
//! columns means one kernel call filters, reorders or splits a whole chunk, metadata included,
//! and a chunk crosses processes as one Arrow IPC message.
//!
//! Field types map to Arrow types one to one: `i64` → `Int64`, `u64` → `UInt64`, `f64` →
//! `Float64`, `bool` → `Boolean`, `string` → `Utf8`, `timestamp` → `Timestamp(µs, "UTC")`;
//! every column is nullable (SQL NULL is Arrow's null).
//!
//! ```
//! use weir_operators::chunk::{arrow_schema, Chunk};
//! use weir_operators::schema::{Field, Record, Schema};
//! use weir_operators::value::{FieldType, Value};
//!
//! let schema = Schema::new(vec![
//!     Field::new("device", FieldType::String),
//!     Field::new("temperature", FieldType::F64),
//! ]);
//! let rows = vec![
//!     Record::new(vec![Value::Str("a".into()), Value::F64(20.5)]),
//!     Record::new(vec![Value::Str("b".into()), Value::Null]),
//! ];
//! let chunk = Chunk::from_rows(&arrow_schema(&schema), &rows);
//! assert_eq!(chunk.len(), 2);
//! assert_eq!(chunk.value(1, 0), Value::F64(20.5));
//! // Split by the device column for two workers: every row goes to exactly one of them.
//! let parts = chunk.split(&[0], 2);
//! assert_eq!(parts.iter().map(|(_, c)| c.len()).sum::<usize>(), 2);
//! let mut back = Vec::new();
//! chunk.push_rows(&mut back);
//! assert_eq!(back, rows);
//! ```

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, RecordBatchOptions, UInt32Array,
};
use arrow::datatypes::{
    DataType, Field as ArrowField, Float64Type, Int64Type, Schema as ArrowSchema, SchemaRef,
    TimeUnit, TimestampMicrosecondType, UInt64Type,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use smol_str::SmolStr;

use crate::schema::{Meta, Record, Schema};
use crate::value::{FieldType, Value};
use crate::window::KeyHasher;

mod builder;
pub(crate) use builder::{string_array, ColumnBuilder, Strings};
pub use builder::{ChunkBuilder, NullColumns};

/// The name of the metadata column holding each record's ingest time.
pub const INGEST: &str = "__weir_ingest";
/// The name of the metadata column holding each record's watermark.
pub const WATERMARK: &str = "__weir_watermark";

/// The Arrow type of a Weir field type.
pub fn data_type(t: FieldType) -> DataType {
    match t {
        FieldType::I64 => DataType::Int64,
        FieldType::U64 => DataType::UInt64,
        FieldType::F64 => DataType::Float64,
        FieldType::Bool => DataType::Boolean,
        FieldType::String | FieldType::Json => DataType::Utf8,
        FieldType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        FieldType::List(l) => DataType::List(Arc::new(ArrowField::new(
            "item",
            data_type(l.field_type()),
            true,
        ))),
    }
}

/// The Weir field type of an Arrow type, when it has one (`json` columns are strings).
pub fn field_type(t: &DataType) -> Option<FieldType> {
    Some(match t {
        DataType::Int64 => FieldType::I64,
        DataType::UInt64 => FieldType::U64,
        DataType::Float64 => FieldType::F64,
        DataType::Boolean => FieldType::Bool,
        DataType::Utf8 => FieldType::String,
        DataType::Timestamp(TimeUnit::Microsecond, _) => FieldType::Timestamp,
        DataType::List(item) => {
            FieldType::List(crate::value::ListOf::of(field_type(item.data_type())?)?)
        }
        _ => return None,
    })
}

/// The Arrow schema of chunks on a stream with `schema`: its fields, then the metadata columns.
pub fn arrow_schema(schema: &Schema) -> SchemaRef {
    let mut fields: Vec<ArrowField> = schema
        .fields
        .iter()
        .map(|f| ArrowField::new(f.name.as_str(), data_type(f.ty), true))
        .collect();
    fields.push(ArrowField::new(INGEST, DataType::Int64, false));
    fields.push(ArrowField::new(WATERMARK, DataType::UInt64, false));
    Arc::new(ArrowSchema::new(fields))
}

/// A batch of records in columns: the fields of the stream's schema, then [`INGEST`] and
/// [`WATERMARK`].
#[derive(Clone, Debug)]
pub struct Chunk {
    batch: RecordBatch,
    /// The key hashes the chunk was routed by, when it was (in this process).
    routed: Option<Arc<Routed>>,
}

/// The key hashes of a chunk's records, computed when it was routed to its worker.
#[derive(Debug)]
struct Routed {
    /// The key's field positions.
    key: Arc<[usize]>,
    /// Each record's hash of its key.
    hashes: Vec<u64>,
}

impl Chunk {
    /// A chunk of the given field columns with the given metadata columns.
    pub fn from_columns(
        schema: &SchemaRef,
        mut columns: Vec<ArrayRef>,
        ingest: ArrayRef,
        watermark: ArrayRef,
    ) -> Chunk {
        let rows = ingest.len();
        columns.push(ingest);
        columns.push(watermark);
        let batch = RecordBatch::try_new_with_options(
            Arc::clone(schema),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )
        .expect("columns match the schema");
        Chunk {
            batch,
            routed: None,
        }
    }

    /// Records `offset..offset + len`, sharing this chunk's buffers.
    pub fn slice(&self, offset: usize, len: usize) -> Chunk {
        Chunk {
            batch: self.batch.slice(offset, len),
            routed: None,
        }
    }

    /// The whole record batch, metadata columns included.
    pub fn batch(&self) -> &RecordBatch {
        &self.batch
    }

    /// The number of records.
    #[inline]
    pub fn len(&self) -> usize {
        self.batch.num_rows()
    }

    /// Whether the chunk holds no records.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.batch.num_rows() == 0
    }

    /// The number of fields (metadata columns not counted).
    pub fn num_fields(&self) -> usize {
        self.batch.num_columns() - 2
    }

    /// The field columns (metadata columns not included).
    pub fn columns(&self) -> &[ArrayRef] {
        let n = self.num_fields();
        &self.batch.columns()[..n]
    }

    /// The ingest-time column.
    pub fn ingest(&self) -> &ArrayRef {
        self.batch.column(self.num_fields())
    }

    /// The watermark column.
    pub fn watermark(&self) -> &ArrayRef {
        self.batch.column(self.num_fields() + 1)
    }

    /// The metadata of record `row`.
    pub fn meta(&self, row: usize) -> Meta {
        Meta {
            ingest: self.ingest().as_primitive::<Int64Type>().value(row),
            watermark: self.watermark().as_primitive::<UInt64Type>().value(row),
        }
    }

    /// A chunk holding `rows`, laid out by `schema` (from [`arrow_schema`]). A value whose type
    /// is not its column's becomes NULL (the plan's typing rules this out).
    pub fn from_rows(schema: &SchemaRef, rows: &[Record]) -> Chunk {
        let mut b = ChunkBuilder::new(schema);
        for r in rows {
            b.push(&r.values, r.meta);
        }
        b.into_chunk()
    }

    /// The value of field `col` in record `row`.
    pub fn value(&self, col: usize, row: usize) -> Value {
        value_at(self.batch.column(col), row)
    }

    /// Appends the chunk's records, as rows, to `out`.
    pub fn push_rows(&self, out: &mut Vec<Record>) {
        let n = self.num_fields();
        out.reserve(self.len());
        for row in 0..self.len() {
            let values = (0..n).map(|c| self.value(c, row)).collect();
            out.push(Record {
                values,
                meta: self.meta(row),
            });
        }
    }

    /// The records for which `mask` is TRUE (NULL counts as FALSE). A column that is all NULL
    /// (one nothing downstream reads, see the generator) is not copied.
    pub fn filter(&self, mask: &BooleanArray) -> Chunk {
        self.filter_fields(mask, None, &mut NullColumns::default())
    }

    /// As [`filter`](Self::filter), copying only the fields `k` with `read[k]` (`None`: all);
    /// the others become NULL columns (from `nulls`, so they are made once).
    pub fn filter_fields(
        &self,
        mask: &BooleanArray,
        read: Option<&[bool]>,
        nulls: &mut NullColumns,
    ) -> Chunk {
        let mask = true_only(mask);
        let kept = mask.true_count();
        if kept == 0 {
            return Chunk {
                batch: self.batch.slice(0, 0),
                routed: None,
            };
        }
        let fields = self.num_fields();
        let unread = |k: usize| k < fields && read.is_some_and(|r| !r[k]);
        if kept == self.len() && !(0..fields).any(unread) {
            return self.clone();
        }
        let predicate = (kept < self.len())
            .then(|| arrow::compute::FilterBuilder::new(&mask).optimize().build());
        let columns = self
            .batch
            .columns()
            .iter()
            .enumerate()
            .map(|(k, c)| {
                if unread(k) {
                    nulls.get(k, c.data_type(), kept)
                } else if c.null_count() == c.len() {
                    // Any `kept` rows of it are the same: share them.
                    c.slice(0, kept)
                } else {
                    match &predicate {
                        Some(p) => p.filter(c).expect("a mask as long as the chunk"),
                        None => Arc::clone(c),
                    }
                }
            })
            .collect();
        Chunk {
            batch: RecordBatch::try_new_with_options(
                self.batch.schema(),
                columns,
                &RecordBatchOptions::new().with_row_count(Some(kept)),
            )
            .expect("the same columns, filtered"),
            routed: None,
        }
    }

    /// A chunk of the same records with other field columns (the metadata is kept).
    pub fn with_fields(&self, schema: &SchemaRef, columns: Vec<ArrayRef>) -> Chunk {
        Chunk::from_columns(
            schema,
            columns,
            Arc::clone(self.ingest()),
            Arc::clone(self.watermark()),
        )
    }

    /// The records at `indices`, in that order.
    pub fn take(&self, indices: &UInt32Array) -> Chunk {
        Chunk {
            batch: arrow::compute::take_record_batch(&self.batch, indices)
                .expect("indices within the chunk"),
            routed: None,
        }
    }

    /// Each record's hash of the fields at `key`, computed column by column; the same as
    /// [`crate::window::key_hash`] of the record's row, in every worker and process. A key of one
    /// integer, timestamp, boolean or string field hashes as the key tables of windows and joins
    /// hash it, so the hashes a chunk was routed by serve them too ([`Chunk::routed_hashes`]).
    pub fn key_hashes(&self, key: &[usize]) -> Vec<u64> {
        use crate::window::key::NULL_HASH;
        if let [k] = key {
            let a = self.batch.column(*k);
            // A key table's own hashes (`KeyView`), for every single-field kind it stores
            // without the row format.
            if let Some(t) = field_type(a.data_type()).filter(|t| *t != FieldType::F64) {
                let kind = crate::window::KeyKind::new(&[t]);
                return crate::window::KeyView::new(&kind, &[a]).hashes(self.len());
            }
            match a.data_type() {
                DataType::Null => return vec![NULL_HASH; self.len()],
                DataType::Float64 => {
                    // Hashed as values (integral floats as integers), NULL as other NULLs.
                    let x = a.as_primitive::<Float64Type>();
                    return (0..x.len())
                        .map(|r| match x.is_null(r) {
                            true => NULL_HASH,
                            false => {
                                let mut h = KeyHasher::default();
                                Value::F64(x.value(r)).hash(&mut h);
                                h.finish()
                            }
                        })
                        .collect();
                }
                _ => {}
            }
        }
        let mut hashers = vec![KeyHasher::default(); self.len()];
        for &k in key {
            hash_column(self.batch.column(k), &mut hashers);
        }
        hashers.iter().map(Hasher::finish).collect()
    }

    /// The key hashes this chunk was routed by ([`Chunk::split`]), if it was split by the fields
    /// at `key` in this process (they do not travel between processes).
    pub fn routed_hashes(&self, key: &[usize]) -> Option<&[u64]> {
        self.routed
            .as_ref()
            .filter(|r| *r.key == *key)
            .map(|r| &r.hashes[..])
    }

    /// Splits the chunk by the hash of the fields at `key` into at most `parts` chunks, each
    /// tagged with the part ([`part_of`] its key hash) it belongs to; empty parts are left out and
    /// records keep their order within a part. Each part carries its records' key hashes
    /// ([`Chunk::routed_hashes`]).
    pub fn split(&self, key: &[usize], parts: usize) -> Vec<(usize, Chunk)> {
        if parts <= 1 || self.is_empty() {
            return vec![(0, self.clone())];
        }
        let hashes = self.key_hashes(key);
        let rows = 0..self.len();
        self.split_rows(
            rows,
            self.len(),
            hashes,
            key,
            parts,
            None,
            &mut NullColumns::default(),
        )
    }

    /// [`filter_fields`](Self::filter_fields) then [`split`](Self::split), gathering each
    /// kept record's columns once instead of twice (a filter whose records go straight to an
    /// exchange by key). Where few records are kept, it filters first, so only those are hashed.
    pub fn filter_split(
        &self,
        mask: &BooleanArray,
        read: Option<&[bool]>,
        nulls: &mut NullColumns,
        key: &[usize],
        parts: usize,
    ) -> Vec<(usize, Chunk)> {
        let mask = true_only(mask);
        let kept = mask.true_count();
        if kept == 0 {
            return Vec::new();
        }
        if parts <= 1 || kept * 4 < self.len() {
            return self.filter_fields(&mask, read, nulls).split(key, parts);
        }
        let hashes = self.key_hashes(key);
        let rows = mask.values().set_indices();
        self.split_rows(rows, kept, hashes, key, parts, read, nulls)
    }

    /// Splits `rows` (rising, `count` of them) of the chunk by their key `hashes` (one a row of
    /// the chunk) into `parts`, copying only the fields `k` with `read[k]` (`None`: all).
    #[allow(clippy::too_many_arguments)]
    fn split_rows(
        &self,
        rows: impl Iterator<Item = usize>,
        count: usize,
        hashes: Vec<u64>,
        key: &[usize],
        parts: usize,
        read: Option<&[bool]>,
        nulls: &mut NullColumns,
    ) -> Vec<(usize, Chunk)> {
        let mut indices: Vec<Vec<u32>> = vec![Vec::with_capacity(count / parts + 16); parts];
        for row in rows {
            indices[part_of(hashes[row], parts)].push(row as u32);
        }
        let all_read = read.is_none_or(|r| r.iter().all(|&k| k));
        let key: Arc<[usize]> = key.into();
        let mut split = Vec::with_capacity(parts);
        for (p, ix) in indices.into_iter().enumerate() {
            if ix.is_empty() {
                continue;
            }
            let (mut chunk, hashes) = if ix.len() == self.len() && all_read {
                (self.clone(), hashes.clone())
            } else {
                // SAFETY: every index is a row of the chunk, and `hashes` has one a row.
                let h = ix
                    .iter()
                    .map(|&r| unsafe { *hashes.get_unchecked(r as usize) })
                    .collect();
                (self.take_rows(&ix, read, nulls), h)
            };
            chunk.routed = Some(Arc::new(Routed {
                key: Arc::clone(&key),
                hashes,
            }));
            split.push((p, chunk));
        }
        split
    }

    /// The records at `indices` (rising), like [`Chunk::take`], copying only the fields `k`
    /// with `read[k]` (`None`: all; the others become NULL columns from `nulls`); all-NULL
    /// columns (fields nothing downstream reads) are sliced rather than gathered, and columns
    /// without NULLs gathered by [`gather_plain`].
    fn take_rows(&self, indices: &[u32], read: Option<&[bool]>, nulls: &mut NullColumns) -> Chunk {
        let n = indices.len();
        let fields = self.num_fields();
        let ix = std::cell::OnceCell::new();
        let take = |c: &ArrayRef| {
            let ix = ix.get_or_init(|| UInt32Array::from(indices.to_vec()));
            arrow::compute::take(c.as_ref(), ix, None).expect("indices within the chunk")
        };
        let columns: Vec<ArrayRef> = self
            .batch
            .columns()
            .iter()
            .enumerate()
            .map(|(k, c)| {
                if k < fields && read.is_some_and(|r| !r[k]) {
                    nulls.get(k, c.data_type(), n)
                } else if c.null_count() == c.len() {
                    c.slice(0, n)
                } else if c.null_count() > 0 {
                    take(c)
                } else {
                    gather_plain(c, indices).unwrap_or_else(|| take(c))
                }
            })
            .collect();
        Chunk {
            batch: RecordBatch::try_new_with_options(
                self.batch.schema(),
                columns,
                &RecordBatchOptions::new().with_row_count(Some(n)),
            )
            .expect("columns match the schema"),
            routed: None,
        }
    }

    /// The chunk as one Arrow IPC stream (schema and batch).
    pub fn to_ipc(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut buf, &self.batch.schema())
            .expect("writing to memory");
        w.write(&self.batch).expect("writing to memory");
        w.finish().expect("writing to memory");
        drop(w);
        buf
    }

    /// Reads a chunk written by [`Chunk::to_ipc`].
    pub fn from_ipc(bytes: &[u8]) -> Result<Chunk, String> {
        let mut r = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
            .map_err(|e| e.to_string())?;
        let schema = r.schema();
        let batch = match r.next() {
            Some(b) => b.map_err(|e| e.to_string())?,
            None => RecordBatch::new_empty(schema),
        };
        if batch.num_columns() < 2 {
            return Err("an IPC chunk without metadata columns".into());
        }
        Ok(Chunk {
            batch,
            routed: None,
        })
    }
}

impl Serialize for Chunk {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.to_ipc())
    }
}

impl<'de> Deserialize<'de> for Chunk {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Chunk, D::Error> {
        struct Bytes;
        impl<'de> serde::de::Visitor<'de> for Bytes {
            type Value = Chunk;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an Arrow IPC stream")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Chunk, E> {
                Chunk::from_ipc(v).map_err(E::custom)
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Chunk, E> {
                self.visit_bytes(&v)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Chunk, A::Error> {
                let mut v = Vec::new();
                while let Some(b) = a.next_element::<u8>()? {
                    v.push(b);
                }
                self.visit_bytes(&v)
            }
        }
        d.deserialize_byte_buf(Bytes)
    }
}

/// An Arrow column of type `t` holding `values` (a value of another type is NULL).
pub fn build_column<'a>(
    t: FieldType,
    values: impl ExactSizeIterator<Item = &'a Value>,
) -> ArrayRef {
    let n = values.len();
    let bytes = if t == FieldType::String { n * 8 } else { 0 };
    let mut b = ColumnBuilder::new(t, n, bytes);
    values.for_each(|v| b.push(v));
    b.into_array(n)
}

/// The value at `row` of a column of one of Weir's types.
pub fn value_at(a: &ArrayRef, row: usize) -> Value {
    if a.is_null(row) {
        return Value::Null;
    }
    match a.data_type() {
        DataType::Int64 => Value::I64(a.as_primitive::<Int64Type>().value(row)),
        DataType::UInt64 => Value::U64(a.as_primitive::<UInt64Type>().value(row)),
        DataType::Float64 => Value::F64(a.as_primitive::<Float64Type>().value(row)),
        DataType::Boolean => Value::Bool(a.as_boolean().value(row)),
        DataType::Utf8 => Value::Str(SmolStr::new(a.as_string::<i32>().value(row))),
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            Value::Ts(a.as_primitive::<TimestampMicrosecondType>().value(row))
        }
        DataType::List(_) => {
            let items = a.as_list::<i32>().value(row);
            Value::List((0..items.len()).map(|k| value_at(&items, k)).collect())
        }
        DataType::Null => Value::Null,
        other => unreachable!("no Weir type is {other}"),
    }
}

/// Feeds each row's value of `a` to its hasher, as [`Value`]'s `Hash` does.
fn hash_column(a: &ArrayRef, hashers: &mut [KeyHasher]) {
    fn each<T>(
        a: &dyn Array,
        hashers: &mut [KeyHasher],
        get: impl Fn(usize) -> T,
        hash: impl Fn(T, &mut KeyHasher),
    ) {
        for (row, h) in hashers.iter_mut().enumerate() {
            if a.is_null(row) {
                0u8.hash(h);
            } else {
                hash(get(row), h);
            }
        }
    }
    match a.data_type() {
        DataType::Int64 => {
            let x = a.as_primitive::<Int64Type>();
            each(x, hashers, |r| x.value(r), |v, h| v.hash(h))
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            let x = a.as_primitive::<TimestampMicrosecondType>();
            each(x, hashers, |r| x.value(r), |v, h| v.hash(h))
        }
        DataType::UInt64 => {
            let x = a.as_primitive::<UInt64Type>();
            each(x, hashers, |r| Value::U64(x.value(r)), |v, h| v.hash(h))
        }
        DataType::Float64 => {
            let x = a.as_primitive::<Float64Type>();
            each(x, hashers, |r| Value::F64(x.value(r)), |v, h| v.hash(h))
        }
        DataType::Boolean => {
            let x = a.as_boolean();
            each(x, hashers, |r| x.value(r), |v, h| v.hash(h))
        }
        DataType::Utf8 if a.null_count() == 0 => {
            // `str`'s hash is its bytes, then 0xff: straight from the offsets.
            let x = a.as_string::<i32>();
            let (offs, data) = (x.value_offsets(), x.value_data());
            for (w, h) in offs.windows(2).zip(hashers.iter_mut()) {
                h.write(&data[w[0] as usize..w[1] as usize]);
                h.write_u8(0xff);
            }
        }
        DataType::Utf8 => {
            let x = a.as_string::<i32>();
            each(x, hashers, |r| x.value(r), |v, h| v.hash(h))
        }
        _ => {
            for h in hashers.iter_mut() {
                0u8.hash(h);
            }
        }
    }
}

/// `mask` with NULL as FALSE.
fn true_only(mask: &BooleanArray) -> BooleanArray {
    match mask.null_count() {
        0 => mask.clone(),
        _ => arrow::compute::prep_null_mask_filter(mask),
    }
}

/// The values at `indices` (rising, within the column) of `c`, a column without NULLs of one of
/// Weir's fixed-width types or strings: Arrow's `take` less its general index and NULL
/// handling. `None` for other types (booleans).
fn gather_plain(c: &ArrayRef, indices: &[u32]) -> Option<ArrayRef> {
    use arrow::array::{ArrowPrimitiveType, PrimitiveArray};
    fn prim<T: ArrowPrimitiveType>(c: &ArrayRef, indices: &[u32]) -> ArrayRef {
        let v = c.as_primitive::<T>().values();
        let last = indices.last().map_or(0, |&i| i as usize + 1);
        assert!(last <= v.len(), "indices within the column");
        // SAFETY: indices rise, so none exceeds the last, which is within `v` (checked).
        let out: Vec<T::Native> = indices
            .iter()
            .map(|&i| unsafe { *v.get_unchecked(i as usize) })
            .collect();
        Arc::new(PrimitiveArray::<T>::new(out.into(), None).with_data_type(c.data_type().clone()))
    }
    Some(match c.data_type() {
        DataType::Int64 => prim::<Int64Type>(c, indices),
        DataType::UInt64 => prim::<UInt64Type>(c, indices),
        DataType::Float64 => prim::<Float64Type>(c, indices),
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            prim::<TimestampMicrosecondType>(c, indices)
        }
        DataType::Utf8 => Arc::new(gather_strings(c.as_string::<i32>(), indices)),
        _ => return None,
    })
}

/// The strings of `a` (which has no NULLs) at `indices`: Arrow's `take` without its per-string
/// `memcpy` call — a string of up to 16 bytes moves as two 8-byte words, the copy may run past
/// its end into space reserved for it, and the next string overwrites the excess.
fn gather_strings(a: &arrow::array::StringArray, indices: &[u32]) -> arrow::array::StringArray {
    use arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
    let (offs, data) = (a.value_offsets(), a.value_data());
    let mut out_offs: Vec<i32> = Vec::with_capacity(indices.len() + 1);
    out_offs.push(0);
    let mut total = 0usize;
    for &i in indices {
        let i = i as usize;
        total += (offs[i + 1] - offs[i]) as usize;
        out_offs.push(i32::try_from(total).expect("a part is no larger than its chunk"));
    }
    let mut bytes: Vec<u8> = Vec::with_capacity(total + 16);
    let dst = bytes.spare_capacity_mut().as_mut_ptr().cast::<u8>();
    let mut at = 0usize;
    for &i in indices {
        let (s, e) = (offs[i as usize] as usize, offs[i as usize + 1] as usize);
        let src = &data[s..e];
        // SAFETY: `dst` has room for `total + 16` bytes and `at + src.len() <= total`; a short
        // string's 16-byte copy reads within `data` (checked) and writes below `at + 16`.
        unsafe {
            if src.len() <= 16 && s + 16 <= data.len() {
                std::ptr::copy_nonoverlapping(data.as_ptr().add(s), dst.add(at), 16);
            } else {
                std::ptr::copy_nonoverlapping(src.as_ptr(), dst.add(at), src.len());
            }
        }
        at += src.len();
    }
    // SAFETY: every byte below `total` was written above.
    unsafe { bytes.set_len(total) };
    // SAFETY: the offsets rise from 0 to `total` and each range is a whole string of `a`.
    unsafe {
        arrow::array::StringArray::new_unchecked(
            OffsetBuffer::new_unchecked(ScalarBuffer::from(out_offs)),
            Buffer::from_vec(bytes),
            None,
        )
    }
}

/// The part (of `parts`) a record whose key hashes to `h` goes to: the hash scaled to the
/// range by a multiplication, not a division (a 64-bit division costs tens of cycles a record).
#[inline]
pub fn part_of(h: u64, parts: usize) -> usize {
    ((h as u128 * parts as u128) >> 64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Field;

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("i", FieldType::I64),
            Field::new("u", FieldType::U64),
            Field::new("f", FieldType::F64),
            Field::new("b", FieldType::Bool),
            Field::new("s", FieldType::String),
            Field::new("t", FieldType::Timestamp),
        ])
    }

    /// Deterministic pseudo-random rows covering every type, NULLs and long strings.
    fn rows(n: usize) -> Vec<Record> {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        (0..n)
            .map(|k| {
                let r = next();
                let null = |bit: u64| r >> bit & 7 == 0;
                let v = |bit, v: Value| if null(bit) { Value::Null } else { v };
                let mut rec = Record::new(vec![
                    v(0, Value::I64((r % 13) as i64 - 6)),
                    v(3, Value::U64(r % 11)),
                    v(6, Value::F64((r % 17) as f64 / 4.0 - 2.0)),
                    v(9, Value::Bool(r & 1 == 0)),
                    v(
                        12,
                        Value::Str(SmolStr::new(
                            "device-with-a-long-name-".repeat((r % 3) as usize)
                                + &(r % 5).to_string(),
                        )),
                    ),
                    v(15, Value::Ts((r % 1000) as i64 * 1_000_000 - 5)),
                ]);
                rec.meta = Meta {
                    ingest: k as i64,
                    watermark: k as u64 * 2,
                };
                rec
            })
            .collect()
    }

    fn back(c: &Chunk) -> Vec<(Record, i64, u64)> {
        let mut out = Vec::new();
        c.push_rows(&mut out);
        out.into_iter()
            .map(|r| (r.clone(), r.meta.ingest, r.meta.watermark))
            .collect()
    }

    #[test]
    fn rows_round_trip_with_metadata() {
        let rs = rows(500);
        let c = Chunk::from_rows(&arrow_schema(&schema()), &rs);
        let expected: Vec<_> = rs
            .iter()
            .map(|r| (r.clone(), r.meta.ingest, r.meta.watermark))
            .collect();
        assert_eq!(back(&c), expected);
    }

    /// One builder, finished again and again (chunks of 1, 500 and 3 records, one with no
    /// NULLs at all), gives exactly the rows pushed, in columns Arrow's full validation
    /// accepts.
    #[test]
    fn a_reused_builder_gives_the_rows_pushed() {
        let s = arrow_schema(&schema());
        let mut b = ChunkBuilder::new(&s);
        assert!(b.finish().is_none());
        let all = rows(504);
        let no_nulls: Vec<Record> = all
            .iter()
            .filter(|r| r.values.iter().all(|v| !v.is_null()))
            .take(3)
            .cloned()
            .collect();
        assert_eq!(no_nulls.len(), 3);
        for part in [&all[..1], &all[1..501], &no_nulls[..]] {
            for r in part {
                b.push(&r.values, r.meta);
            }
            let c = b.finish().expect("rows were pushed");
            for col in c.batch().columns() {
                col.to_data().validate_full().expect("valid Arrow data");
            }
            let want: Vec<_> = part
                .iter()
                .map(|r| (r.clone(), r.meta.ingest, r.meta.watermark))
                .collect();
            assert_eq!(back(&c), want);
        }
    }

    #[test]
    fn ipc_round_trip_including_empty_and_single() {
        let s = arrow_schema(&schema());
        for n in [0, 1, 7, 300] {
            let c = Chunk::from_rows(&s, &rows(n));
            let bytes = c.to_ipc();
            let d = Chunk::from_ipc(&bytes).unwrap();
            assert_eq!(back(&d), back(&c), "{n} rows");
            assert_eq!(d.batch().schema(), s);
        }
        assert!(Chunk::from_ipc(b"not arrow").is_err());
    }

    #[test]
    fn column_hashes_equal_row_hashes() {
        let rs = rows(400);
        let c = Chunk::from_rows(&arrow_schema(&schema()), &rs);
        for key in [
            vec![0],
            vec![1],
            vec![2],
            vec![3],
            vec![4],
            vec![5],
            vec![4, 0, 2],
        ] {
            let hashes = c.key_hashes(&key);
            for (r, h) in rs.iter().zip(hashes) {
                assert_eq!(h, crate::window::key_hash(&r.values, &key), "key {key:?}");
            }
        }
    }

    #[test]
    fn split_keeps_every_record_once_and_groups_keys() {
        let rs = rows(1000);
        let c = Chunk::from_rows(&arrow_schema(&schema()), &rs);
        for parts in [1, 2, 4] {
            let split = c.split(&[4], parts);
            let mut all: Vec<_> = split.iter().flat_map(|(_, p)| back(p)).collect();
            let mut expected = back(&c);
            all.sort_by_key(|(_, i, _)| *i);
            expected.sort_by_key(|(_, i, _)| *i);
            assert_eq!(all, expected, "{parts} parts");
            for (p, chunk) in &split {
                assert!(*p < parts);
                for row in 0..chunk.len() {
                    let key = chunk.value(4, row);
                    let h = crate::window::key_hash(std::slice::from_ref(&key), &[0]);
                    assert_eq!(part_of(h, parts), *p);
                }
            }
        }
        let empty = Chunk::from_rows(&arrow_schema(&schema()), &[]);
        assert_eq!(empty.split(&[0], 4).len(), 1);
    }

    #[test]
    fn split_gathers_columns_without_nulls_as_take_does() {
        // No NULLs, so every column takes the plain gather; strings of 0 to 40 bytes, the
        // last one at the very end of the value buffer.
        let rs: Vec<Record> = (0..777u64)
            .map(|i| {
                let mut r = Record::new(vec![
                    Value::I64(i as i64 * 7 - 300),
                    Value::U64(i * i),
                    Value::F64(i as f64 / 8.0),
                    Value::Bool(i % 3 == 0),
                    Value::Str("x".repeat((i * 13 % 41) as usize).into()),
                    Value::Ts(i as i64 * 1_000),
                ]);
                r.meta = Meta {
                    ingest: i as i64,
                    watermark: i,
                };
                r
            })
            .collect();
        let c = Chunk::from_rows(&arrow_schema(&schema()), &rs);
        for key in [vec![4], vec![0], vec![2], vec![1, 4]] {
            for (p, part) in c.split(&key, 3) {
                let rows: Vec<u32> = (0..c.len() as u32)
                    .filter(|&r| part_of(c.key_hashes(&key)[r as usize], 3) == p)
                    .collect();
                let expected = c.take(&UInt32Array::from(rows));
                assert_eq!(part.batch(), expected.batch(), "key {key:?}, part {p}");
                assert_eq!(part.routed_hashes(&key), Some(&part.key_hashes(&key)[..]));
                assert_eq!(part.routed_hashes(&[3]), None, "hashes of another key");
            }
        }
    }

    #[test]
    fn filter_treats_null_as_false() {
        let rs = rows(3);
        let c = Chunk::from_rows(&arrow_schema(&schema()), &rs);
        let kept = c.filter(&BooleanArray::from(vec![Some(true), None, Some(false)]));
        assert_eq!(back(&kept), back(&c)[..1].to_vec());
    }
}
