//! Records of many keys taken in event-time order once the watermark has passed them: what
//! operators whose results depend on order (alerts, online models) wait on, so their results
//! depend only on the records, never on batching, scheduling or the number of workers.

use std::collections::{BTreeMap, HashMap};

use crate::schema::{Meta, Record};
use crate::value::{Micros, Value};

/// Each key's number, in the order keys were first seen on this worker.
#[derive(Debug, Default)]
pub(crate) struct Keys {
    index: HashMap<Vec<Value>, usize>,
}

impl Keys {
    /// The key's number, and whether it is new.
    pub(crate) fn number(&mut self, key: Vec<Value>) -> (usize, bool) {
        let n = self.index.len();
        match self.index.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => (*e.get(), false),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(n);
                (n, true)
            }
        }
    }
}

/// Records waiting for the watermark, in the order they will be taken: event time, key
/// number, then values (identical records in arrival order, which cannot tell them apart).
#[derive(Debug, Default)]
pub(crate) struct Waiting {
    records: BTreeMap<(Micros, usize, Vec<Value>, u64), Meta>,
    seq: u64,
}

impl Waiting {
    /// Adds record `r` of key number `key` at event time `ts`.
    pub(crate) fn insert(&mut self, ts: Micros, key: usize, r: Record) {
        self.seq += 1;
        self.records.insert((ts, key, r.values, self.seq), r.meta);
    }

    /// The earliest waiting record's time.
    pub(crate) fn first_time(&self) -> Option<Micros> {
        self.records.first_key_value().map(|(k, _)| k.0)
    }

    /// Takes the earliest record if it is before `frontier` (any, with `None`: the input has
    /// ended): its time, key number and record.
    pub(crate) fn pop_before(
        &mut self,
        frontier: Option<Micros>,
    ) -> Option<(Micros, usize, Record)> {
        self.first_time()
            .filter(|&t| frontier.is_none_or(|f| t < f))?;
        let ((ts, key, values, _), meta) = self.records.pop_first()?;
        let mut r = Record::new(values);
        r.meta = meta;
        Some((ts, key, r))
    }

    /// Records waiting.
    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }
}
