//! Latency histograms kept by sinks, in HDR histograms (microseconds, 3 significant digits,
//! up to one hour; longer values are recorded as one hour).
//!
//! - **Processing-time latency** of an output record: from the moment the newest input that
//!   contributed to it entered Weir ([`Meta::ingest`](crate::schema::Meta); for an open-loop
//!   generator, the event's *scheduled* time, so a stalled engine shows its queueing delay
//!   instead of hiding it) to the moment the sink wrote it.
//! - **Event-time latency** of a window result: from the window's end to the moment the sink
//!   wrote it. It is only meaningful when event time follows the wall clock (as with the
//!   generator's default timestamps), and sinks record it only then.
//!
//! Each worker records into its own slot; [`SinkLatency::merged`] adds the slots up.
//!
//! ```
//! use weir_operators::latency::SinkLatency;
//!
//! let l = SinkLatency::new(2);
//! l.slot(0).lock().unwrap().processing.record(100).unwrap();
//! l.slot(1).lock().unwrap().processing.record(300).unwrap();
//! let m = l.merged();
//! assert_eq!(m.processing.len(), 2);
//! assert_eq!(m.processing.max(), 300);
//! ```

use std::sync::Mutex;

use hdrhistogram::Histogram;

/// The largest latency recorded, in microseconds (one hour).
pub const MAX_MICROS: u64 = 3_600_000_000;

/// A new, empty latency histogram.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds")
}

/// The two histograms of one sink (on one worker, or merged).
#[derive(Clone, Debug)]
pub struct Latencies {
    /// Processing-time latency, microseconds.
    pub processing: Histogram<u64>,
    /// Event-time latency of window results, microseconds (empty when not measured).
    pub event: Histogram<u64>,
}

impl Default for Latencies {
    fn default() -> Latencies {
        Latencies {
            processing: histogram(),
            event: histogram(),
        }
    }
}

impl Latencies {
    /// Adds `other`'s counts into these histograms.
    pub fn add(&mut self, other: &Latencies) {
        // Both have the same bounds, so adding cannot fail.
        let _ = self.processing.add(&other.processing);
        let _ = self.event.add(&other.event);
    }
}

/// One sink's latency histograms, one slot per worker of the process.
#[derive(Debug)]
pub struct SinkLatency {
    slots: Vec<Mutex<Latencies>>,
}

impl SinkLatency {
    /// Histograms for `workers` workers.
    pub fn new(workers: usize) -> SinkLatency {
        SinkLatency {
            slots: (0..workers.max(1)).map(|_| Mutex::default()).collect(),
        }
    }

    /// Worker `w`'s slot.
    pub fn slot(&self, w: usize) -> &Mutex<Latencies> {
        &self.slots[w % self.slots.len()]
    }

    /// The sum of every worker's histograms.
    pub fn merged(&self) -> Latencies {
        let mut all = Latencies::default();
        for s in &self.slots {
            all.add(&s.lock().unwrap_or_else(|p| p.into_inner()));
        }
        all
    }
}

/// Records `micros` (clamped to `0..=MAX_MICROS`).
#[inline]
pub fn record(h: &mut Histogram<u64>, micros: i64) {
    h.saturating_record(micros.clamp(0, MAX_MICROS as i64) as u64);
}
