//! Building chunks a record at a time: [`ChunkBuilder`] and its columns, and the NULL columns
//! that stand for fields nothing reads ([`NullColumns`]).

use std::sync::Arc;

use arrow::array::builder::NullBufferBuilder;
use arrow::array::{
    Array, ArrayRef, BooleanArray, BooleanBufferBuilder, Float64Array, Int64Array, StringArray,
    TimestampMicrosecondArray, UInt64Array,
};
use arrow::buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{ArrowNativeType, DataType, SchemaRef};

use super::{field_type, Chunk};
use crate::schema::Meta;
use crate::value::{FieldType, Value};

/// NULL columns made once and shared: column `k` of `len` rows is a slice of the longest one
/// made for `k` so far.
#[derive(Default)]
pub struct NullColumns(Vec<Option<ArrayRef>>);

impl NullColumns {
    /// A NULL column of type `t` with `len` rows, for column `k`.
    pub fn get(&mut self, k: usize, t: &DataType, len: usize) -> ArrayRef {
        if self.0.len() <= k {
            self.0.resize(k + 1, None);
        }
        match &self.0[k] {
            Some(a) if a.len() >= len && a.data_type() == t => a.slice(0, len),
            _ => Arc::clone(self.0[k].insert(arrow::array::new_null_array(t, len))),
        }
    }
}

/// Builds a chunk a record at a time, straight into Arrow builders: sources decode each
/// record into a reused row of [`Value`]s and push it here, so no record is allocated.
///
/// ```
/// use weir_operators::chunk::{arrow_schema, ChunkBuilder};
/// use weir_operators::schema::{Field, Meta, Schema};
/// use weir_operators::value::{FieldType, Value};
///
/// let schema = Schema::new(vec![Field::new("x", FieldType::I64), Field::new("s", FieldType::String)]);
/// let mut b = ChunkBuilder::new(&arrow_schema(&schema));
/// b.push(&[Value::I64(1), Value::Str("a".into())], Meta { ingest: 5, watermark: 0 });
/// b.push(&[Value::Null, Value::Str("b".into())], Meta { ingest: 6, watermark: 0 });
/// let c = b.finish().unwrap();
/// assert_eq!((c.len(), c.value(0, 1), c.meta(1).ingest), (2, Value::Null, 6));
/// assert!(b.finish().is_none(), "the builder starts again empty");
/// ```
pub struct ChunkBuilder {
    schema: SchemaRef,
    pub(crate) cols: Vec<ColumnBuilder>,
    ingest: Vec<i64>,
    watermark: Vec<u64>,
    /// The NULL columns of skipped fields.
    nulls: NullColumns,
}

/// One column of a [`ChunkBuilder`]: plain vectors (values, and a validity bitmap made only
/// once a NULL arrives) that become Arrow buffers without a copy. Arrow's own builders cost
/// several times as much per value, and a few aligned allocations per column and chunk, which
/// one-record chunks in continuous mode pay for every record.
pub(crate) enum ColumnBuilder {
    /// A field nothing downstream reads: sent as a NULL column (the builder's
    /// [`NullColumns`], made once), whatever is pushed.
    Skip(DataType),
    I64(Values<i64>),
    U64(Values<u64>),
    F64(Values<f64>),
    Bool(Bools),
    Str(Strings),
    Ts(Values<i64>),
    List(Lists),
}

/// Lists: their elements in one column, with each list's end offset.
pub(crate) struct Lists {
    items: Box<ColumnBuilder>,
    elem: DataType,
    /// Elements appended so far.
    count: usize,
    offsets: Vec<i32>,
    nulls: NullBufferBuilder,
}

impl Lists {
    fn push(&mut self, v: &Value) {
        match v {
            Value::List(xs) => {
                for x in xs.iter() {
                    self.items.push(x);
                }
                self.count += xs.len();
                self.offsets.push(offset(self.count));
                self.nulls.append_non_null();
            }
            _ => {
                self.offsets.push(offset(self.count));
                self.nulls.append_null();
            }
        }
    }

    fn take(&mut self, room: usize) -> ArrayRef {
        // Room for as many elements again, unless the builder is done (`room` 0).
        let items = self
            .items
            .take(self.count, if room == 0 { 0 } else { self.count });
        let mut offsets = Vec::with_capacity(room + 1);
        offsets.push(0);
        let offsets = std::mem::replace(&mut self.offsets, offsets);
        self.count = 0;
        let field = Arc::new(arrow::datatypes::Field::new(
            "item",
            self.elem.clone(),
            true,
        ));
        Arc::new(arrow::array::ListArray::new(
            field,
            OffsetBuffer::new(ScalarBuffer::from(offsets)),
            items,
            self.nulls.finish(),
        ))
    }
}

/// Fixed-width values.
pub(crate) struct Values<T> {
    values: Vec<T>,
    nulls: NullBufferBuilder,
}

impl<T: ArrowNativeType> Values<T> {
    fn with_capacity(rows: usize) -> Values<T> {
        Values {
            values: Vec::with_capacity(rows),
            nulls: NullBufferBuilder::new(rows),
        }
    }

    #[inline]
    pub(crate) fn append_value(&mut self, v: T) {
        self.values.push(v);
        self.nulls.append_non_null();
    }

    #[inline]
    pub(crate) fn append_null(&mut self) {
        self.values.push(T::default());
        self.nulls.append_null();
    }

    #[inline]
    pub(crate) fn append_option(&mut self, v: Option<T>) {
        match v {
            Some(v) => self.append_value(v),
            None => self.append_null(),
        }
    }

    /// The values so far and their validity; empty again, with room for `room` values.
    fn take(&mut self, room: usize) -> (ScalarBuffer<T>, Option<NullBuffer>) {
        let values = std::mem::replace(&mut self.values, Vec::with_capacity(room));
        (ScalarBuffer::from(values), self.nulls.finish())
    }
}

/// Booleans, as a bitmap.
pub(crate) struct Bools {
    values: BooleanBufferBuilder,
    nulls: NullBufferBuilder,
}

/// UTF-8 strings laid end to end, with their end offsets.
pub(crate) struct Strings {
    bytes: Vec<u8>,
    offsets: Vec<i32>,
    nulls: NullBufferBuilder,
}

impl Strings {
    /// Room for `rows` strings of `bytes` bytes in all.
    pub(crate) fn with_capacity(rows: usize, bytes: usize) -> Strings {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        Strings {
            bytes: Vec::with_capacity(bytes),
            offsets,
            nulls: NullBufferBuilder::new(rows),
        }
    }

    #[inline]
    pub(crate) fn append_value(&mut self, s: &str) {
        self.bytes.extend_from_slice(s.as_bytes());
        self.offsets.push(offset(self.bytes.len()));
        self.nulls.append_non_null();
    }

    #[inline]
    pub(crate) fn append_null(&mut self) {
        self.offsets.push(offset(self.bytes.len()));
        self.nulls.append_null();
    }

    #[inline]
    pub(crate) fn append_option(&mut self, v: Option<&str>) {
        match v {
            Some(s) => self.append_value(s),
            None => self.append_null(),
        }
    }

    /// The strings so far as an array; empty again, with room for `room` strings like these.
    pub(crate) fn take(&mut self, room: usize) -> StringArray {
        let bytes = if room == 0 { 0 } else { self.bytes.len() };
        let mut offsets = Vec::with_capacity(room + 1);
        offsets.push(0);
        let offsets = std::mem::replace(&mut self.offsets, offsets);
        let values = std::mem::replace(&mut self.bytes, Vec::with_capacity(bytes));
        string_array(offsets, values, self.nulls.finish())
    }
}

/// A string offset: chunks hold at most 2 GiB of string bytes per column, as Arrow's `Utf8`.
#[inline]
fn offset(len: usize) -> i32 {
    i32::try_from(len).expect("a chunk's strings exceed Utf8's 2 GiB")
}

/// A string column from its end offsets (starting with 0) and its bytes, which are whole
/// strings (`&str`s) laid end to end, each ending at its offset.
pub(crate) fn string_array(
    offsets: Vec<i32>,
    bytes: Vec<u8>,
    nulls: Option<NullBuffer>,
) -> StringArray {
    debug_assert!(std::str::from_utf8(&bytes).is_ok());
    debug_assert_eq!(offsets.last().map(|&o| o as usize), Some(bytes.len()));
    // SAFETY: the callers lay whole `&str`s end to end in `bytes` and push each one's end to
    // `offsets` (which start at 0), so the offsets are increasing, end at `bytes.len()` and
    // cut the bytes only between strings: every value is valid UTF-8. Checking it again (what
    // `StringArray::new` does) costs a pass over every byte of every chunk.
    unsafe {
        StringArray::new_unchecked(
            OffsetBuffer::new_unchecked(ScalarBuffer::from(offsets)),
            Buffer::from_vec(bytes),
            nulls,
        )
    }
}

impl ColumnBuilder {
    pub(crate) fn new(t: FieldType, rows: usize, bytes: usize) -> ColumnBuilder {
        match t {
            FieldType::I64 => ColumnBuilder::I64(Values::with_capacity(rows)),
            FieldType::U64 => ColumnBuilder::U64(Values::with_capacity(rows)),
            FieldType::F64 => ColumnBuilder::F64(Values::with_capacity(rows)),
            FieldType::Bool => ColumnBuilder::Bool(Bools {
                values: BooleanBufferBuilder::new(rows),
                nulls: NullBufferBuilder::new(rows),
            }),
            FieldType::String | FieldType::Json => {
                ColumnBuilder::Str(Strings::with_capacity(rows, bytes))
            }
            FieldType::Timestamp => ColumnBuilder::Ts(Values::with_capacity(rows)),
            FieldType::List(l) => {
                let mut offsets = Vec::with_capacity(rows + 1);
                offsets.push(0);
                ColumnBuilder::List(Lists {
                    items: Box::new(ColumnBuilder::new(l.field_type(), rows, bytes)),
                    elem: super::data_type(l.field_type()),
                    count: 0,
                    offsets,
                    nulls: NullBufferBuilder::new(rows),
                })
            }
        }
    }

    /// Appends one value (a value whose type is not the column's becomes NULL; a skipped
    /// column ignores it).
    #[inline]
    pub(crate) fn push(&mut self, v: &Value) {
        match (self, v) {
            (ColumnBuilder::I64(b), Value::I64(x)) => b.append_value(*x),
            (ColumnBuilder::U64(b), Value::U64(x)) => b.append_value(*x),
            (ColumnBuilder::F64(b), Value::F64(x)) => b.append_value(*x),
            (ColumnBuilder::Bool(b), Value::Bool(x)) => {
                b.values.append(*x);
                b.nulls.append_non_null();
            }
            (ColumnBuilder::Str(b), Value::Str(x)) => b.append_value(x.as_str()),
            (ColumnBuilder::Ts(b), Value::Ts(x)) => b.append_value(*x),
            (ColumnBuilder::List(b), v) => b.push(v),
            (ColumnBuilder::Skip(..), _) => {}
            (ColumnBuilder::I64(b), _) => b.append_null(),
            (ColumnBuilder::U64(b), _) => b.append_null(),
            (ColumnBuilder::F64(b), _) => b.append_null(),
            (ColumnBuilder::Bool(b), _) => {
                b.values.append(false);
                b.nulls.append_null();
            }
            (ColumnBuilder::Str(b), _) => b.append_null(),
            (ColumnBuilder::Ts(b), _) => b.append_null(),
        }
    }

    /// The column of the `rows` values appended; the builder starts again empty, with room
    /// for a column like this one, so filling it does not reallocate and copy as it grows. (A
    /// skipped column is a new NULL column: [`ChunkBuilder`] shares its own instead.)
    pub(crate) fn finish(&mut self, rows: usize) -> ArrayRef {
        self.take(rows, rows)
    }

    /// The column of the `rows` values appended.
    pub(crate) fn into_array(mut self, rows: usize) -> ArrayRef {
        self.take(rows, 0)
    }

    /// The column of the `rows` values appended, leaving room for `room` more.
    fn take(&mut self, rows: usize, room: usize) -> ArrayRef {
        match self {
            ColumnBuilder::Skip(t) => arrow::array::new_null_array(t, rows),
            ColumnBuilder::I64(b) => {
                let (v, n) = b.take(room);
                Arc::new(Int64Array::new(v, n))
            }
            ColumnBuilder::U64(b) => {
                let (v, n) = b.take(room);
                Arc::new(UInt64Array::new(v, n))
            }
            ColumnBuilder::F64(b) => {
                let (v, n) = b.take(room);
                Arc::new(Float64Array::new(v, n))
            }
            ColumnBuilder::Ts(b) => {
                let (v, n) = b.take(room);
                Arc::new(TimestampMicrosecondArray::new(v, n).with_timezone("UTC"))
            }
            ColumnBuilder::Bool(b) => {
                Arc::new(BooleanArray::new(b.values.finish(), b.nulls.finish()))
            }
            ColumnBuilder::Str(b) => Arc::new(b.take(room)),
            ColumnBuilder::List(b) => b.take(room),
        }
    }
}

impl ChunkBuilder {
    /// An empty builder for chunks laid out by `schema` (from [`arrow_schema`]).
    pub fn new(schema: &SchemaRef) -> ChunkBuilder {
        ChunkBuilder::pruned(schema, None)
    }

    /// An empty builder whose fields `k` with `used[k] == false` are sent as NULL columns,
    /// whatever is pushed (for a source whose fields nothing downstream reads).
    pub(crate) fn pruned(schema: &SchemaRef, used: Option<&[bool]>) -> ChunkBuilder {
        let n = schema.fields().len() - 2;
        let cols = schema
            .fields()
            .iter()
            .take(n)
            .enumerate()
            .map(|(k, f)| {
                if used.is_some_and(|u| !u[k]) {
                    ColumnBuilder::Skip(f.data_type().clone())
                } else {
                    let t = field_type(f.data_type()).expect("a Weir field type");
                    ColumnBuilder::new(t, 0, 0)
                }
            })
            .collect();
        ChunkBuilder {
            schema: Arc::clone(schema),
            cols,
            ingest: Vec::new(),
            watermark: Vec::new(),
            nulls: NullColumns::default(),
        }
    }

    /// Appends one record: `values` in schema order (a value whose type is not its column's
    /// becomes NULL; the plan's typing rules this out).
    #[inline]
    pub fn push(&mut self, values: &[Value], meta: Meta) {
        debug_assert_eq!(values.len(), self.cols.len());
        for (b, v) in self.cols.iter_mut().zip(values) {
            b.push(v);
        }
        self.end_row(meta);
    }

    /// Ends a record whose fields were appended to [`cols`](Self::cols) directly.
    #[inline]
    pub(crate) fn end_row(&mut self, meta: Meta) {
        self.ingest.push(meta.ingest);
        self.watermark.push(meta.watermark);
    }

    /// The records pushed since the last [`finish`](Self::finish).
    pub fn len(&self) -> usize {
        self.ingest.len()
    }

    /// Whether nothing was pushed since the last [`finish`](Self::finish).
    pub fn is_empty(&self) -> bool {
        self.ingest.is_empty()
    }

    /// The records pushed so far as one chunk (`None` if there are none); the builder starts
    /// again empty, with room for a chunk like this one.
    pub fn finish(&mut self) -> Option<Chunk> {
        if self.is_empty() {
            return None;
        }
        let rows = self.len();
        let nulls = &mut self.nulls;
        let columns = self
            .cols
            .iter_mut()
            .enumerate()
            .map(|(k, b)| match b {
                ColumnBuilder::Skip(t) => nulls.get(k, t, rows),
                b => b.finish(rows),
            })
            .collect();
        Some(Chunk::from_columns(
            &self.schema,
            columns,
            Arc::new(Int64Array::from(std::mem::replace(
                &mut self.ingest,
                Vec::with_capacity(rows),
            ))),
            Arc::new(UInt64Array::from(std::mem::replace(
                &mut self.watermark,
                Vec::with_capacity(rows),
            ))),
        ))
    }

    /// The records pushed, as one chunk (an empty one if there are none).
    pub fn into_chunk(self) -> Chunk {
        let rows = self.len();
        let columns = self.cols.into_iter().map(|b| b.into_array(rows)).collect();
        Chunk::from_columns(
            &self.schema,
            columns,
            Arc::new(Int64Array::from(self.ingest)),
            Arc::new(UInt64Array::from(self.watermark)),
        )
    }
}
