//! The run's clock: when a run started, on the monotonic clock and on the wall clock, shared by
//! every worker so their schedules agree.
//!
//! ```
//! use weir_operators::clock::RunClock;
//!
//! let clock = RunClock::now();
//! assert!(clock.now_micros() >= clock.wall);
//! ```

use std::time::Instant;

use crate::time::Micros;

/// How a run's clock started, shared by all workers so their schedules agree.
#[derive(Clone, Copy, Debug)]
pub struct RunClock {
    /// Monotonic instant of the run's start.
    pub instant: Instant,
    /// Wall-clock time of the run's start, microseconds since the epoch.
    pub wall: Micros,
}

impl RunClock {
    /// The clock starting now.
    pub fn now() -> RunClock {
        RunClock {
            instant: Instant::now(),
            wall: crate::time::now_micros(),
        }
    }

    /// The wall-clock time now, in microseconds since the epoch, read from the monotonic clock
    /// (so it never goes backwards during a run).
    pub fn now_micros(&self) -> Micros {
        self.wall + self.instant.elapsed().as_micros() as Micros
    }
}
