//! Watermarks: how a source's event time behaves, and the rule its watermark follows.
//!
//! A source reads its input in *partitions* (a file, standard input, a generator worker's
//! share), each in order. The watermark of a partition is
//!
//! ```text
//! watermark = max(largest event time read so far - max_out_of_orderness, idle floor)
//! ```
//!
//! For the generator, whose events are a function of their index, "largest event time read so
//! far" is the *undisordered* time of the event (`start + i * interval`, or its scheduled or
//! generation time): the same for any number of workers.
//!
//! **Idleness.** When a partition has read nothing for `idle_timeout` of processing time, its
//! idle floor becomes the wall clock minus `max_out_of_orderness`, and follows the wall clock
//! while it stays idle. A quiet input therefore stops holding back the windows downstream:
//! within `idle_timeout` for live (wall-clock) event time, at once for a replay of the past.
//! The floor never goes back: records that arrive on the partition later and fall behind it are
//! late.
//!
//! Every record carries its partition's watermark ([`Meta`](crate::schema::Meta)); a window
//! decides from it alone whether the record is late.
//!
//! ```
//! use std::time::Duration;
//! use weir_operators::watermark::WatermarkSpec;
//!
//! let w = WatermarkSpec { max_out_of_orderness: 2_000_000, idle_timeout: Some(Duration::from_secs(10)) };
//! assert_eq!(w.of(10_000_000, i64::MIN), 8_000_000);
//! assert_eq!(w.of(10_000_000, 9_000_000), 9_000_000, "the idle floor wins");
//! ```

use std::time::Duration;

use crate::value::Micros;

/// How a source's event time behaves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WatermarkSpec {
    /// How far behind the largest event time seen an event may still arrive on time (µs).
    pub max_out_of_orderness: Micros,
    /// After how long without input a partition is idle (`None`: never).
    pub idle_timeout: Option<Duration>,
}

impl WatermarkSpec {
    /// The watermark for a partition whose largest event time is `max_seen`, given its idle
    /// floor.
    #[inline]
    pub fn of(&self, max_seen: Micros, idle_floor: Micros) -> Micros {
        max_seen
            .saturating_sub(self.max_out_of_orderness)
            .max(idle_floor)
    }

    /// The idle floor at wall-clock time `now`.
    pub fn idle_floor(&self, now: Micros) -> Micros {
        now.saturating_sub(self.max_out_of_orderness)
    }
}
