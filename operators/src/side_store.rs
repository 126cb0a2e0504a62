//! A join side's stored records, in columns: only the fields the join outputs from that side,
//! with each record's event time, ingest time and flags, appended from input batches. A record
//! is a row number; freed rows are reclaimed by compacting (when a quarter of the rows are
//! free), which renumbers the rows that remain — callers remap the row numbers they keep.
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

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{
    DataType, Float64Type, Int64Type, TimeUnit, TimestampMicrosecondType, UInt64Type,
};
use smol_str::SmolStr;

use crate::value::{FieldType, Micros, Value};

/// One stored field.
enum Col {
    /// Numbers, times and booleans as 64 bits, with validity.
    Word(FieldType, Vec<u64>, Vec<bool>),
    /// Strings: end offsets into `bytes`, with validity.
    Str(Vec<u32>, Vec<u8>, Vec<bool>),
}

/// Stored records of one join side.
pub struct Stored {
    cols: Vec<Col>,
    ts: Vec<Micros>,
    ingest: Vec<Micros>,
    /// Bit 0: live; bit 1: matched (left outer joins).
    flags: Vec<u8>,
    free: usize,
}

const LIVE: u8 = 1;
const MATCHED: u8 = 2;

impl Stored {
    /// An empty store of fields of these types.
    pub fn new(types: &[FieldType]) -> Stored {
        Stored {
            cols: types
                .iter()
                .map(|&t| match t {
                    FieldType::String => Col::Str(Vec::new(), Vec::new(), Vec::new()),
                    t => Col::Word(t, Vec::new(), Vec::new()),
                })
                .collect(),
            ts: Vec::new(),
            ingest: Vec::new(),
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
                    v.push(w);
                    ok.push(valid);
                }
                Col::Str(ends, bytes, ok) => {
                    if valid && a.data_type() == &DataType::Utf8 {
                        bytes.extend_from_slice(a.as_string::<i32>().value(r).as_bytes());
                    }
                    ends.push(bytes.len() as u32);
                    ok.push(valid);
                }
            }
        }
        self.ts.push(ts);
        self.ingest.push(ingest);
        self.flags.push(LIVE);
        (self.ts.len() - 1) as u32
    }

    /// Field `f` of row `row`.
    pub fn value(&self, row: u32, f: usize) -> Value {
        let i = row as usize;
        match &self.cols[f] {
            Col::Word(_, _, ok) | Col::Str(_, _, ok) if !ok[i] => Value::Null,
            Col::Word(t, v, _) => match t {
                FieldType::I64 => Value::I64(v[i] as i64),
                FieldType::U64 => Value::U64(v[i]),
                FieldType::F64 => Value::F64(f64::from_bits(v[i])),
                FieldType::Timestamp => Value::Ts(v[i] as i64),
                FieldType::Bool => Value::Bool(v[i] != 0),
                FieldType::String => Value::Null,
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
        self.ingest[row as usize]
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
                Col::Word(_, v, ok) => v.capacity() * 8 + ok.capacity(),
                Col::Str(e, b, ok) => e.capacity() * 4 + b.capacity() + ok.capacity(),
            })
            .sum();
        cols + self.ts.capacity() * 8 + self.ingest.capacity() * 8 + self.flags.capacity()
    }

    /// When a quarter or more of the rows are free: drops them and returns, for each old row,
    /// its new number (`u32::MAX` for a freed row). Otherwise `None`.
    pub fn compact(&mut self) -> Option<Vec<u32>> {
        let n = self.ts.len();
        if self.free == 0 || self.free * 4 < n {
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
            v.shrink_to(v.len() * 2);
        }
        for c in &mut self.cols {
            match c {
                Col::Word(_, v, ok) => {
                    retain(v, &keep);
                    retain(ok, &keep);
                }
                Col::Str(ends, bytes, ok) => {
                    let mut new_ends = Vec::with_capacity(next as usize);
                    let mut new_bytes = Vec::with_capacity(bytes.len());
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
                    retain(ok, &keep);
                }
            }
        }
        retain(&mut self.ts, &keep);
        retain(&mut self.ingest, &keep);
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
}
