//! A join side's stored records, in columns: only the fields the join outputs from that side,
//! with each record's event time, ingest time and flags, appended from input batches. A record
//! is a row number; freed rows are reclaimed by compacting (when an eighth of the rows are
//! free), which renumbers the rows that remain — callers remap the row numbers they keep.
//!
//! The layout is lean, for joins that hold millions of records: a column's validity is a
//! bitmap that exists only once a NULL has been stored, a selected field that is the event time
//! is the time column itself (not a copy), ingest times are 32-bit offsets while they fit
//! ([`Ingests`]), and every buffer grows by a quarter when full instead of doubling.
//!
//! ```
//! use std::sync::Arc;
//! use arrow::array::{ArrayRef, Int64Array, StringArray};
//! use weir_operators::side_store::Stored;
//! use weir_operators::value::{FieldType, Value};
//!
//! let mut s = Stored::new(&[FieldType::String, FieldType::I64]);
//! let k: ArrayRef = Arc::new(StringArray::from(vec!["a", "b"]));
//! let x: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), None]));
//! let r = s.push(&[&k, &x], 1, 10, 7);
//! assert_eq!((s.value(r, 0), s.value(r, 1), s.ts(r)), (Value::Str("b".into()), Value::Null, 10));
//! ```

use arrow::array::builder::NullBufferBuilder;
use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{
    DataType, Float64Type, Int64Type, TimeUnit, TimestampMicrosecondType, UInt64Type,
};
use smol_str::SmolStr;

use crate::aggregate::push_growing;
use crate::ingests::Ingests;
use crate::value::{FieldType, Micros, Value};

/// One stored field.
enum Col {
    /// Numbers, times and booleans as 64 bits, with validity.
    Word(FieldType, Vec<u64>, NullBufferBuilder),
    /// Strings: end offsets into `bytes`, with validity.
    Str(Vec<u32>, Vec<u8>, NullBufferBuilder),
    /// The event time: the store's time column.
    Time,
}

/// Stored records of one join side.
pub struct Stored {
    cols: Vec<Col>,
    ts: Vec<Micros>,
    ingest: Ingests,
    /// Bit 0: live; bit 1: matched (left outer joins).
    flags: Vec<u8>,
    free: usize,
}

const LIVE: u8 = 1;
const MATCHED: u8 = 2;

/// Appends to a validity builder (its bitmap appears with the first NULL).
#[inline]
fn append_valid(ok: &mut NullBufferBuilder, valid: bool) {
    if valid {
        ok.append_non_null();
    } else {
        ok.append_null();
    }
}

/// Bytes a validity builder holds.
fn valid_bytes(ok: &NullBufferBuilder) -> usize {
    ok.as_slice().map_or(0, |_| ok.allocated_size())
}

/// A validity builder keeping the rows whose `keep` is true.
fn retain_valid(ok: &NullBufferBuilder, keep: &[bool]) -> NullBufferBuilder {
    let kept = keep.iter().filter(|&&k| k).count();
    let mut out = NullBufferBuilder::new(kept);
    match ok.as_slice() {
        None => out.append_n_non_nulls(kept),
        Some(_) => {
            for (i, &k) in keep.iter().enumerate() {
                if k {
                    out.append(ok.is_valid(i));
                }
            }
        }
    }
    out
}

impl Stored {
    /// An empty store of fields of these types.
    pub fn new(types: &[FieldType]) -> Stored {
        Stored::with_time(types, None)
    }

    /// An empty store of fields of these types, field `time` (if any) being the event time.
    pub fn with_time(types: &[FieldType], time: Option<usize>) -> Stored {
        Stored {
            cols: types
                .iter()
                .enumerate()
                .map(|(i, &t)| match t {
                    _ if Some(i) == time => Col::Time,
                    FieldType::String | FieldType::Json => {
                        Col::Str(Vec::new(), Vec::new(), NullBufferBuilder::new(0))
                    }
                    t => Col::Word(t, Vec::new(), NullBufferBuilder::new(0)),
                })
                .collect(),
            ts: Vec::new(),
            ingest: Ingests::default(),
            flags: Vec::new(),
            free: 0,
        }
    }

    /// Stores row `r` of `columns` (one per stored field, in order), with its times; returns
    /// its row number.
    pub fn push(&mut self, columns: &[&ArrayRef], r: usize, ts: Micros, ingest: Micros) -> u32 {
        for (c, a) in self.cols.iter_mut().zip(columns) {
            let valid = a.is_valid(r) && a.data_type() != &DataType::Null;
            match c {
                Col::Time => {}
                Col::Word(_, v, ok) => {
                    let w = if !valid {
                        0
                    } else {
                        match a.data_type() {
                            DataType::Int64 => a.as_primitive::<Int64Type>().value(r) as u64,
                            DataType::UInt64 => a.as_primitive::<UInt64Type>().value(r),
                            DataType::Float64 => a.as_primitive::<Float64Type>().value(r).to_bits(),
                            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                                a.as_primitive::<TimestampMicrosecondType>().value(r) as u64
                            }
                            DataType::Boolean => a.as_boolean().value(r) as u64,
                            _ => 0,
                        }
                    };
                    push_growing(v, w);
                    append_valid(ok, valid);
                }
                Col::Str(ends, bytes, ok) => {
                    if valid && a.data_type() == &DataType::Utf8 {
                        let b = a.as_string::<i32>().value(r).as_bytes();
                        if bytes.len() + b.len() > bytes.capacity() {
                            bytes.reserve_exact((bytes.len() / 4).max(b.len()).max(64));
                        }
                        bytes.extend_from_slice(b);
                    }
                    push_growing(ends, bytes.len() as u32);
                    append_valid(ok, valid);
                }
            }
        }
        push_growing(&mut self.ts, ts);
        self.ingest.push(ingest);
        push_growing(&mut self.flags, LIVE);
        (self.ts.len() - 1) as u32
    }

    /// Field `f` of row `row`.
    pub fn value(&self, row: u32, f: usize) -> Value {
        let i = row as usize;
        match &self.cols[f] {
            Col::Time => Value::Ts(self.ts[i]),
            Col::Word(_, _, ok) | Col::Str(_, _, ok) if !ok.is_valid(i) => Value::Null,
            Col::Word(t, v, _) => match t {
                FieldType::I64 => Value::I64(v[i] as i64),
                FieldType::U64 => Value::U64(v[i]),
                FieldType::F64 => Value::F64(f64::from_bits(v[i])),
                FieldType::Timestamp => Value::Ts(v[i] as i64),
                FieldType::Bool => Value::Bool(v[i] != 0),
                // Strings are `Col::Str`; lists are not stored (the plan refuses them).
                FieldType::String | FieldType::Json | FieldType::List(_) => Value::Null,
            },
            Col::Str(ends, bytes, _) => {
                let start = if i == 0 { 0 } else { ends[i - 1] as usize };
                let s = &bytes[start..ends[i] as usize];
                Value::Str(SmolStr::new(std::str::from_utf8(s).unwrap_or_default()))
            }
        }
    }

    /// Row `row`'s event time.
    #[inline]
    pub fn ts(&self, row: u32) -> Micros {
        self.ts[row as usize]
    }

    /// Row `row`'s ingest time.
    #[inline]
    pub fn ingest(&self, row: u32) -> Micros {
        self.ingest.get(row as usize)
    }

    /// Marks row `row` matched.
    pub fn set_matched(&mut self, row: u32) {
        self.flags[row as usize] |= MATCHED;
    }

    /// Whether row `row` was matched.
    pub fn matched(&self, row: u32) -> bool {
        self.flags[row as usize] & MATCHED != 0
    }

    /// Frees row `row`.
    pub fn free(&mut self, row: u32) {
        let f = &mut self.flags[row as usize];
        if *f & LIVE != 0 {
            *f &= !LIVE;
            self.free += 1;
        }
    }

    /// Live rows.
    pub fn len(&self) -> usize {
        self.ts.len() - self.free
    }

    /// Whether no row is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held (capacity included).
    pub fn bytes(&self) -> usize {
        let cols: usize = self
            .cols
            .iter()
            .map(|c| match c {
                Col::Time => 0,
                Col::Word(_, v, ok) => v.capacity() * 8 + valid_bytes(ok),
                Col::Str(e, b, ok) => e.capacity() * 4 + b.capacity() + valid_bytes(ok),
            })
            .sum();
        cols + self.ts.capacity() * 8
            + self.ingest.capacity() * self.ingest.width()
            + self.flags.capacity()
    }

    /// When an eighth or more of the rows are free: drops them and returns, for each old row,
    /// its new number (`u32::MAX` for a freed row). Otherwise `None`.
    pub fn compact(&mut self) -> Option<Vec<u32>> {
        let n = self.ts.len();
        if self.free == 0 || self.free * 8 < n {
            return None;
        }
        let mut map = vec![u32::MAX; n];
        let mut next = 0u32;
        for (i, f) in self.flags.iter().enumerate() {
            if f & LIVE != 0 {
                map[i] = next;
                next += 1;
            }
        }
        let keep = |i: usize| self.flags[i] & LIVE != 0;
        let keep: Vec<bool> = (0..n).map(keep).collect();
        fn retain<T: Copy>(v: &mut Vec<T>, keep: &[bool]) {
            let mut k = keep.iter();
            v.retain(|_| *k.next().expect("one flag per row"));
            v.shrink_to(v.len() + v.len() / 4);
        }
        for c in &mut self.cols {
            match c {
                Col::Time => {}
                Col::Word(_, v, ok) => {
                    retain(v, &keep);
                    *ok = retain_valid(ok, &keep);
                }
                Col::Str(ends, bytes, ok) => {
                    let kept: usize = ends
                        .iter()
                        .enumerate()
                        .filter(|&(i, _)| keep[i])
                        .map(|(i, &e)| e as usize - if i == 0 { 0 } else { ends[i - 1] as usize })
                        .sum();
                    let mut new_ends = Vec::with_capacity(next as usize + next as usize / 4);
                    let mut new_bytes = Vec::with_capacity(kept + kept / 4);
                    let mut start = 0usize;
                    for (i, &e) in ends.iter().enumerate() {
                        if keep[i] {
                            new_bytes.extend_from_slice(&bytes[start..e as usize]);
                            new_ends.push(new_bytes.len() as u32);
                        }
                        start = e as usize;
                    }
                    *ends = new_ends;
                    *bytes = new_bytes;
                    *ok = retain_valid(ok, &keep);
                }
            }
        }
        retain(&mut self.ts, &keep);
        self.ingest.retain(&keep);
        retain(&mut self.flags, &keep);
        self.free = 0;
        Some(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn compaction_keeps_live_rows_and_renumbers_them() {
        let mut s = Stored::new(&[FieldType::String, FieldType::F64, FieldType::Bool]);
        let k: ArrayRef = Arc::new(arrow::array::StringArray::from(vec![
            Some("x"),
            None,
            Some("zz"),
            Some(""),
        ]));
        let f: ArrayRef = Arc::new(arrow::array::Float64Array::from(vec![
            Some(-0.0),
            Some(f64::NAN),
            None,
            Some(2.5),
        ]));
        let b: ArrayRef = Arc::new(arrow::array::BooleanArray::from(vec![
            Some(true),
            Some(false),
            None,
            Some(true),
        ]));
        for r in 0..4 {
            s.push(&[&k, &f, &b], r, r as i64 * 10, r as i64);
        }
        s.set_matched(3);
        assert_eq!(s.compact(), None, "nothing free");
        s.free(0);
        s.free(2);
        let map = s.compact().expect("half the rows are free");
        assert_eq!(map, vec![u32::MAX, 0, u32::MAX, 1]);
        assert_eq!(s.len(), 2);
        assert_eq!(s.value(0, 0), Value::Null);
        assert!(matches!(s.value(0, 1), Value::F64(x) if x.is_nan()));
        assert_eq!(s.value(0, 2), Value::Bool(false));
        assert_eq!(
            (s.value(1, 0), s.value(1, 1), s.ts(1), s.ingest(1)),
            (Value::Str("".into()), Value::F64(2.5), 30, 3)
        );
        assert!(s.matched(1) && !s.matched(0));
    }

    /// A selected event-time field is the store's time column: read back as the record's
    /// time, through compaction, without a copy of its own.
    #[test]
    fn a_selected_event_time_is_the_time_column() {
        let mut s = Stored::with_time(&[FieldType::U64, FieldType::Timestamp], Some(1));
        let id: ArrayRef = Arc::new(arrow::array::UInt64Array::from(vec![7, 8, 9]));
        let ts: ArrayRef = Arc::new(
            arrow::array::TimestampMicrosecondArray::from(vec![100, 200, 300]).with_timezone("UTC"),
        );
        for r in 0..3 {
            s.push(&[&id, &ts], r, (r as i64 + 1) * 100, 5);
        }
        let mut plain = Stored::new(&[FieldType::U64, FieldType::Timestamp]);
        for r in 0..3 {
            plain.push(&[&id, &ts], r, (r as i64 + 1) * 100, 5);
        }
        assert!(s.bytes() < plain.bytes(), "no second copy of the times");
        s.free(0);
        s.compact().expect("a third of the rows are free");
        assert_eq!(
            (
                s.value(0, 0),
                s.value(0, 1),
                s.value(1, 1),
                s.ts(1),
                s.ingest(0)
            ),
            (Value::U64(8), Value::Ts(200), Value::Ts(300), 300, 5)
        );
    }
}
