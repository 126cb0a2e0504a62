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
//! A measured run ([`SinkLatency::set_phases`]) skips records written during its warm-up and
//! after its end (when stopping flushes windows early), and also keeps the records written in
//! its second half apart, so growing latency can be told from steady latency.
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

use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
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
    second_half: Vec<Mutex<Latencies>>,
    /// Wall-clock µs: records written before are not recorded (the warm-up).
    from: AtomicI64,
    /// Wall-clock µs: records written from then on are also recorded in the second half.
    split: AtomicI64,
    /// Wall-clock µs: records written from then on are not recorded (the run is stopping).
    until: AtomicI64,
}

impl SinkLatency {
    /// Histograms for `workers` workers.
    pub fn new(workers: usize) -> SinkLatency {
        SinkLatency {
            slots: (0..workers.max(1)).map(|_| Mutex::default()).collect(),
            second_half: (0..workers.max(1)).map(|_| Mutex::default()).collect(),
            from: AtomicI64::new(i64::MIN),
            split: AtomicI64::new(i64::MAX),
            until: AtomicI64::new(i64::MAX),
        }
    }

    /// Records only what is written from `from` until before `until`, and also keeps what is
    /// written from `split` on apart (wall-clock microseconds).
    pub fn set_phases(&self, from: i64, split: i64, until: i64) {
        self.from.store(from, Relaxed);
        self.split.store(split, Relaxed);
        self.until.store(until, Relaxed);
    }

    /// Worker `w`'s slot.
    pub fn slot(&self, w: usize) -> &Mutex<Latencies> {
        &self.slots[w % self.slots.len()]
    }

    /// Worker `w`'s slots for a write at wall-clock time `now`: where to record (none during
    /// the warm-up), and the second-half slot too when `now` is in it.
    #[inline]
    pub fn slots_at(
        &self,
        w: usize,
        now: i64,
    ) -> (Option<&Mutex<Latencies>>, Option<&Mutex<Latencies>>) {
        if now < self.from.load(Relaxed) || now >= self.until.load(Relaxed) {
            return (None, None);
        }
        let second = (now >= self.split.load(Relaxed))
            .then(|| &self.second_half[w % self.second_half.len()]);
        (Some(self.slot(w)), second)
    }

    /// The sum of every worker's second-half histograms.
    pub fn merged_second_half(&self) -> Latencies {
        merge(&self.second_half)
    }

    /// The sum of every worker's histograms.
    pub fn merged(&self) -> Latencies {
        merge(&self.slots)
    }
}

fn merge(slots: &[Mutex<Latencies>]) -> Latencies {
    let mut all = Latencies::default();
    for s in slots {
        all.add(&s.lock().unwrap_or_else(|p| p.into_inner()));
    }
    all
}

/// Records `micros` (clamped to `0..=MAX_MICROS`).
#[inline]
pub fn record(h: &mut Histogram<u64>, micros: i64) {
    h.saturating_record(micros.clamp(0, MAX_MICROS as i64) as u64);
}

/// Records `now - t` (clamped to `0..=MAX_MICROS`) for every `t` in `times`, each run of
/// equal times at once (records of one batch often share their ingest time).
pub fn record_since(h: &mut Histogram<u64>, now: i64, times: &[i64]) {
    let mut rest = times;
    while let Some(&t) = rest.first() {
        let run = rest.iter().take_while(|&&x| x == t).count();
        let micros = (now - t).clamp(0, MAX_MICROS as i64) as u64;
        h.saturating_record_n(micros, run as u64);
        rest = &rest[run..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recording runs at once gives the histogram that recording each time alone gives,
    /// clamping included.
    #[test]
    fn runs_record_as_single_times() {
        let times = [5, 5, 5, 7, 5, 9, 9, -3, 2_000_000_000_000, 10, 10];
        let mut runs = Histogram::<u64>::new_with_bounds(1, MAX_MICROS, 3).unwrap();
        record_since(&mut runs, 10, &times);
        let mut single = Histogram::<u64>::new_with_bounds(1, MAX_MICROS, 3).unwrap();
        for t in times {
            record(&mut single, 10 - t);
        }
        assert_eq!(runs.len(), times.len() as u64);
        let values = |h: &Histogram<u64>| {
            h.iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect::<Vec<_>>()
        };
        assert_eq!(values(&runs), values(&single));
        record_since(&mut runs, 0, &[]);
        assert_eq!(runs.len(), times.len() as u64);
    }
}
