//! A batch read for a keyed, event-time operator (a window or a join side): its key columns
//! as a [`KeyView`] with each row's key hash, and its event times, watermarks and ingest times
//! as plain slices, so the operator's per-row loop reads them without downcasts.

use std::borrow::Cow;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Int64Type, TimestampMicrosecondType, UInt64Type};

use crate::chunk::Chunk;
use crate::schema::Record;
use crate::value::Micros;
use crate::window::{KeyKind, KeyView};
use crate::Time;

/// The time position of an operator over processing time: each record's event time is the
/// time it entered Weir (its chunk's ingest column).
pub(crate) const PROCESSING_TIME: usize = usize::MAX;

/// A chunk's keys and times.
pub(crate) struct Keyed<'c> {
    pub(crate) chunk: &'c Chunk,
    pub(crate) keys: KeyView<'c>,
    /// Each row's key hash (for the operator's key tables): the hashes the chunk was routed
    /// by when it carries them, else computed here.
    pub(crate) hashes: Cow<'c, [u64]>,
    /// Event times (empty when the time column is all NULL).
    pub(crate) ts: &'c [Micros],
    /// Which event times are NULL, when some are.
    pub(crate) ts_nulls: Option<&'c NullBuffer>,
    pub(crate) ingest: &'c [Micros],
    pub(crate) watermark: &'c [u64],
    /// Which rows have a NULL in a key field, when some do.
    key_nulls: KeyNulls,
}

/// Where a batch's keys are NULL.
enum KeyNulls {
    None,
    All,
    Some(NullBuffer),
}

impl<'c> Keyed<'c> {
    /// Reads `chunk` with its key at positions `key` (stored as `kind`) and its event time at
    /// `time`.
    pub(crate) fn new(kind: &KeyKind, key: &[usize], time: usize, chunk: &'c Chunk) -> Keyed<'c> {
        let cols = chunk.columns();
        let key_cols: Vec<&ArrayRef> = key.iter().map(|&p| &cols[p]).collect();
        let keys = KeyView::new(kind, &key_cols);
        let mut key_nulls = KeyNulls::None;
        for a in &key_cols {
            if a.data_type() == &DataType::Null {
                key_nulls = KeyNulls::All;
                break;
            }
            if let Some(n) = a.nulls().filter(|n| n.null_count() > 0) {
                key_nulls = match key_nulls {
                    KeyNulls::Some(m) => KeyNulls::Some(NullBuffer::new(m.inner() & n.inner())),
                    _ => KeyNulls::Some(n.clone()),
                };
            }
        }
        let hashes = match (kind, chunk.routed_hashes(key)) {
            (KeyKind::Int(_) | KeyKind::Str, Some(h)) => {
                debug_assert_eq!(
                    h,
                    &keys.hashes(chunk.len())[..],
                    "routed hashes are key hashes"
                );
                Cow::Borrowed(h)
            }
            _ => Cow::Owned(keys.hashes(chunk.len())),
        };
        let ingest = chunk.ingest().as_primitive::<Int64Type>().values();
        let (ts, ts_nulls): (&[Micros], _) = match cols.get(time).map(|t| (t, t.data_type())) {
            None if time == PROCESSING_TIME => (ingest, None),
            Some((t, DataType::Timestamp(..))) => {
                let a = t.as_primitive::<TimestampMicrosecondType>();
                (a.values(), a.nulls().filter(|n| n.null_count() > 0))
            }
            _ => (&[], None),
        };
        Keyed {
            chunk,
            keys,
            hashes,
            ts,
            ts_nulls,
            ingest,
            watermark: chunk.watermark().as_primitive::<UInt64Type>().values(),
            key_nulls,
        }
    }

    /// Whether row `r`'s key has a NULL field: it equals no key (SQL's rule for joins).
    #[inline]
    pub(crate) fn key_is_null(&self, r: usize) -> bool {
        match &self.key_nulls {
            KeyNulls::None => false,
            KeyNulls::All => true,
            KeyNulls::Some(n) => n.is_null(r),
        }
    }

    /// Row `r`'s event time, if it has one.
    #[inline]
    pub(crate) fn time(&self, r: usize) -> Option<Micros> {
        if self.ts.is_empty() || self.ts_nulls.is_some_and(|n| n.is_null(r)) {
            return None;
        }
        Some(self.ts[r])
    }

    /// Row `r`'s watermark, or `t` (its capability's time) when that is later.
    #[inline]
    pub(crate) fn watermark_at(&self, r: usize, t: Time) -> Time {
        self.watermark[r].max(t)
    }

    /// Row `r` as a record (for dead letters and late outputs).
    pub(crate) fn record(&self, r: usize) -> Record {
        Record {
            values: (0..self.chunk.num_fields())
                .map(|c| self.chunk.value(c, r))
                .collect(),
            meta: self.chunk.meta(r),
        }
    }
}
