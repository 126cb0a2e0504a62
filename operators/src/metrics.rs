//! Per-component counters, shared by all workers of a process.
//!
//! Operators count locally while they process a batch and add the totals to the shared atomic
//! counters once per batch, so counting costs nothing per record.
//!
//! ```
//! use weir_operators::metrics::ComponentMetrics;
//!
//! let m = ComponentMetrics::default();
//! m.add_in(10);
//! m.add_out(7);
//! m.add_errors(3);
//! m.add_dead_lettered(3);
//! let s = m.snapshot();
//! assert_eq!((s.records_in, s.records_out, s.errors, s.dead_lettered), (10, 7, 3, 3));
//! m.add_reasons([("in.csv:2", "field `ts`: `x` is not a time"), ("in.csv:3", "field `ts`: `y` is not a time")]);
//! assert_eq!(m.reasons().kinds, vec![("field `ts`: `…` is not a time".to_string(), 2)]);
//! ```

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// Counters of one component.
#[derive(Debug, Default)]
pub struct ComponentMetrics {
    records_in: AtomicU64,
    records_out: AtomicU64,
    errors: AtomicU64,
    dead_lettered: AtomicU64,
    late: AtomicU64,
    late_dropped: AtomicU64,
    late_side_output: AtomicU64,
    late_updated: AtomicU64,
    state: AtomicI64,
    max_state: AtomicU64,
    state_bytes: AtomicI64,
    max_state_bytes: AtomicU64,
    backlog: AtomicI64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    in_flight_records: AtomicU64,
    max_in_flight_records: AtomicU64,
    held_micros: AtomicU64,
    replayed: AtomicU64,
    blank_lines: AtomicU64,
    reasons: Mutex<Reasons>,
}

/// Why a source's records were bad: the first few reasons, where they were, and a count by
/// kind of reason (see [`reason_kind`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Reasons {
    /// The first bad records' places and reasons, `FILE:LINE: REASON`, at most
    /// [`Reasons::FIRST`] of them.
    pub first: Vec<String>,
    /// Each kind of reason and how many bad records had it, most first.
    pub kinds: Vec<(String, u64)>,
}

impl Reasons {
    /// How many first reasons are kept.
    pub const FIRST: usize = 3;

    /// The reasons as a short phrase: the top kinds with their counts, or the first reasons.
    pub fn top(&self, n: usize) -> String {
        self.kinds
            .iter()
            .take(n)
            .map(|(k, c)| format!("{k} ({c})"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// A reason with the values it quotes left out, so reasons of one kind compare equal: every
/// `quoted` part but a field name (`field \`ts\``) becomes `…`.
pub fn reason_kind(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len());
    let mut rest = reason;
    while let Some(open) = rest.find('`') {
        let (before, after) = rest.split_at(open);
        out.push_str(before);
        let Some(close) = after[1..].find('`') else {
            out.push_str(after);
            return out;
        };
        let quoted = &after[..close + 2];
        if before.ends_with("field ") {
            out.push_str(quoted);
        } else {
            out.push_str("`…`");
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    out
}

/// A point-in-time copy of a component's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MetricsSnapshot {
    /// Records that entered the component (for sources: lines or events read).
    pub records_in: u64,
    /// Records the component emitted on its main output.
    pub records_out: u64,
    /// Bad records (malformed, missing timestamp, wrong type).
    pub errors: u64,
    /// Bad records sent to a dead-letter output.
    pub dead_lettered: u64,
    /// Late records (behind their window's watermark). Those dead-lettered are also counted as
    /// errors.
    #[serde(default)]
    pub late: u64,
    /// Late records dropped (`late = "drop"`).
    #[serde(default)]
    pub late_dropped: u64,
    /// Late records sent to the `late` output (`late = "side-output"`).
    #[serde(default)]
    pub late_side_output: u64,
    /// Late records that updated a window (`late = "update"`).
    #[serde(default)]
    pub late_updated: u64,
    /// Entries of state held now (window groups), over all workers of the process.
    #[serde(default)]
    pub state: u64,
    /// The most entries of state held at once.
    #[serde(default)]
    pub max_state: u64,
    /// Bytes of state held now (window keys and aggregate states), over all workers of the
    /// process.
    #[serde(default)]
    pub state_bytes: u64,
    /// The most bytes of state held at once.
    #[serde(default)]
    pub max_state_bytes: u64,
    /// Sources: input due but not yet admitted (an open-loop generator's events behind
    /// schedule), over all workers of the process.
    #[serde(default)]
    pub backlog: u64,
    /// Sources: epochs sent and not yet complete at the sinks, on one worker (the last to
    /// look).
    #[serde(default)]
    pub in_flight: u64,
    /// Sources: the most epochs in flight at once on one worker.
    #[serde(default)]
    pub max_in_flight: u64,
    /// Sources: records in those epochs.
    #[serde(default)]
    pub in_flight_records: u64,
    /// Sources: the most records in flight at once on one worker.
    #[serde(default)]
    pub max_in_flight_records: u64,
    /// Sources: how long they were held back by backpressure, in microseconds, summed over
    /// workers.
    #[serde(default)]
    pub held_micros: u64,
    /// Kafka sources: records read again after a restart whose outputs had all been written
    /// before it, so they were skipped.
    #[serde(default)]
    pub replayed: u64,
    /// Sources: input lines with nothing but white space, skipped (not records).
    #[serde(default)]
    pub blank_lines: u64,
}

impl ComponentMetrics {
    /// Adds to the records-in count.
    #[inline]
    pub fn add_in(&self, n: u64) {
        if n > 0 {
            self.records_in.fetch_add(n, Relaxed);
        }
    }
    /// Adds to the records-out count.
    #[inline]
    pub fn add_out(&self, n: u64) {
        if n > 0 {
            self.records_out.fetch_add(n, Relaxed);
        }
    }
    /// Adds to the error count.
    #[inline]
    pub fn add_errors(&self, n: u64) {
        if n > 0 {
            self.errors.fetch_add(n, Relaxed);
        }
    }
    /// Adds to the dead-lettered count.
    #[inline]
    pub fn add_dead_lettered(&self, n: u64) {
        if n > 0 {
            self.dead_lettered.fetch_add(n, Relaxed);
        }
    }
    /// Adds to the late count.
    #[inline]
    pub fn add_late(&self, n: u64) {
        if n > 0 {
            self.late.fetch_add(n, Relaxed);
        }
    }
    /// Adds to the counts of late records dropped, side-output and applied as updates.
    #[inline]
    pub fn add_late_outcomes(&self, dropped: u64, side_output: u64, updated: u64) {
        for (c, n) in [
            (&self.late_dropped, dropped),
            (&self.late_side_output, side_output),
            (&self.late_updated, updated),
        ] {
            if n > 0 {
                c.fetch_add(n, Relaxed);
            }
        }
    }
    /// Changes the state gauge by `delta` entries, and keeps its high-water mark.
    #[inline]
    pub fn add_state(&self, delta: i64) {
        if delta != 0 {
            let now = self.state.fetch_add(delta, Relaxed) + delta;
            self.max_state.fetch_max(now.max(0) as u64, Relaxed);
        }
    }
    /// The entries of state held now, over all workers of the process.
    #[inline]
    pub fn state(&self) -> u64 {
        self.state.load(Relaxed).max(0) as u64
    }
    /// Changes the state-bytes gauge by `delta`, and keeps its high-water mark.
    #[inline]
    pub fn add_state_bytes(&self, delta: i64) {
        if delta != 0 {
            let now = self.state_bytes.fetch_add(delta, Relaxed) + delta;
            self.max_state_bytes.fetch_max(now.max(0) as u64, Relaxed);
        }
    }
    /// Changes the backlog gauge by `delta`.
    #[inline]
    pub fn add_backlog(&self, delta: i64) {
        if delta != 0 {
            self.backlog.fetch_add(delta, Relaxed);
        }
    }
    /// Sets the in-flight gauges (epochs, records) and keeps their high-water marks.
    #[inline]
    pub fn set_in_flight(&self, epochs: u64, records: u64) {
        self.in_flight.store(epochs, Relaxed);
        self.max_in_flight.fetch_max(epochs, Relaxed);
        self.in_flight_records.store(records, Relaxed);
        self.max_in_flight_records.fetch_max(records, Relaxed);
    }
    /// Adds to the time held back by backpressure.
    #[inline]
    pub fn add_held(&self, micros: u64) {
        if micros > 0 {
            self.held_micros.fetch_add(micros, Relaxed);
        }
    }
    /// Adds to the count of blank input lines skipped.
    #[inline]
    pub fn add_blank(&self, n: u64) {
        if n > 0 {
            self.blank_lines.fetch_add(n, Relaxed);
        }
    }

    /// Adds to the count of replayed records skipped.
    #[inline]
    pub fn add_replayed(&self, n: u64) {
        if n > 0 {
            self.replayed.fetch_add(n, Relaxed);
        }
    }
    /// Records why records were bad: `(place, reason)` pairs, in the order they were found.
    pub fn add_reasons<'a>(&self, bad: impl IntoIterator<Item = (&'a str, &'a str)>) {
        let mut r = self.reasons.lock().unwrap_or_else(|e| e.into_inner());
        for (place, reason) in bad {
            if r.first.len() < Reasons::FIRST {
                r.first.push(format!("{place}: {reason}"));
            }
            let mut kind = reason_kind(reason);
            // A bounded list: past 100 kinds, the rest are counted as one.
            if r.kinds.len() >= 100 && !r.kinds.iter().any(|(k, _)| *k == kind) {
                kind = "other reasons".into();
            }
            match r.kinds.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, n)) => *n += 1,
                None => r.kinds.push((kind, 1)),
            }
        }
    }

    /// Why records were bad so far, kinds most frequent first.
    pub fn reasons(&self) -> Reasons {
        let mut r = self
            .reasons
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        r.kinds
            .sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        r
    }

    /// Reads the counters.
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            records_in: self.records_in.load(Relaxed),
            records_out: self.records_out.load(Relaxed),
            errors: self.errors.load(Relaxed),
            dead_lettered: self.dead_lettered.load(Relaxed),
            late: self.late.load(Relaxed),
            late_dropped: self.late_dropped.load(Relaxed),
            late_side_output: self.late_side_output.load(Relaxed),
            late_updated: self.late_updated.load(Relaxed),
            state: self.state.load(Relaxed).max(0) as u64,
            max_state: self.max_state.load(Relaxed),
            state_bytes: self.state_bytes.load(Relaxed).max(0) as u64,
            max_state_bytes: self.max_state_bytes.load(Relaxed),
            backlog: self.backlog.load(Relaxed).max(0) as u64,
            in_flight: self.in_flight.load(Relaxed),
            max_in_flight: self.max_in_flight.load(Relaxed),
            in_flight_records: self.in_flight_records.load(Relaxed),
            max_in_flight_records: self.max_in_flight_records.load(Relaxed),
            held_micros: self.held_micros.load(Relaxed),
            replayed: self.replayed.load(Relaxed),
            blank_lines: self.blank_lines.load(Relaxed),
        }
    }
}

/// An operator's account of its state for the metrics: the bytes last reported (so each report
/// adds the change), entries seen, and its `max_state` guard, which fails the run once.
#[derive(Default)]
pub struct StateGauge {
    bytes: i64,
    entries: i64,
    peak: i64,
    changes: u64,
    failed: bool,
}

impl StateGauge {
    /// Records a change of `delta` entries (already added to `m`'s entry gauge). Counting bytes
    /// may visit every entry, so `bytes` is called at a new peak of entries (what the summary
    /// reports) and otherwise every 64th change.
    pub fn changed(&mut self, m: &ComponentMetrics, delta: i64, bytes: impl FnOnce() -> usize) {
        if delta == 0 {
            return;
        }
        self.entries += delta;
        self.changes += 1;
        if self.entries > self.peak || self.changes.is_multiple_of(64) {
            self.peak = self.peak.max(self.entries);
            let b = bytes() as i64;
            m.add_state_bytes(b - self.bytes);
            self.bytes = b;
        }
    }

    /// Fails the run through `ctl` (once) when the process holds more than `max` entries; the
    /// message is made from (entries held, max).
    pub fn guard(
        &mut self,
        m: &ComponentMetrics,
        ctl: &crate::control::RunControl,
        max: Option<u64>,
        message: impl FnOnce(u64, u64) -> String,
    ) {
        let Some(max) = max else { return };
        let held = m.state();
        if held > max && !self.failed {
            self.failed = true;
            ctl.fail(message(held, max));
        }
    }
}
