//! Execution modes: when sources release what they have read, and so how often the event-time
//! frontier advances.
//!
//! In **continuous** mode a source sends records as soon as it has them and advances its
//! capability (the frontier) after every step, at the granularity of event time. In
//! **micro-batch** mode a source collects what it reads and releases it once per batch interval
//! of processing time — at the instants `start + k * interval`, the same for every worker — and
//! advances the frontier only then, like Spark's `ProcessingTime` trigger. A batch that reaches
//! [`Epochs::MAX_BATCH`] records is released at once, so an unthrottled source cannot buffer
//! without bound (Spark's `maxOffsetsPerTrigger` plays the same role).
//!
//! Records carry their own event time and watermark ([`Meta`](crate::schema::Meta)), so which
//! batch a record travels in never changes a result: only latency and throughput differ.
//!
//! ```
//! use std::time::Duration;
//! use weir_operators::epochs::{Epochs, Mode};
//! use weir_operators::generator::RunClock;
//!
//! let mut continuous = Epochs::new(Mode::Continuous, RunClock::now());
//! assert!(continuous.due(1));
//! let mut batched = Epochs::new(Mode::MicroBatch(Duration::from_secs(3600)), RunClock::now());
//! assert!(!batched.due(1), "the first hour's batch is not due yet");
//! assert!(batched.due(Epochs::MAX_BATCH), "a full batch goes at once");
//! ```

use std::time::Duration;

use crate::generator::RunClock;

/// How a pipeline's epochs advance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Records flow as they arrive; the frontier follows event time closely.
    Continuous,
    /// Sources release input once per interval of processing time.
    MicroBatch(Duration),
}

impl Mode {
    /// The mode's name, as in pipeline files and reports (`continuous`, `micro-batch`).
    pub fn name(self) -> &'static str {
        match self {
            Mode::Continuous => "continuous",
            Mode::MicroBatch(_) => "micro-batch",
        }
    }
}

/// One source's release schedule.
#[derive(Clone, Debug)]
pub struct Epochs {
    mode: Mode,
    clock: RunClock,
    /// The next release instant, as time since the run's start.
    next: Duration,
}

impl Epochs {
    /// The most records a source holds back in one micro-batch (per worker).
    pub const MAX_BATCH: usize = 1 << 16;

    /// The schedule for `mode`, aligned to the run's start.
    pub fn new(mode: Mode, clock: RunClock) -> Epochs {
        let next = match mode {
            Mode::Continuous => Duration::ZERO,
            Mode::MicroBatch(iv) => iv,
        };
        Epochs { mode, clock, next }
    }

    /// Whether the mode is continuous.
    pub fn continuous(&self) -> bool {
        self.mode == Mode::Continuous
    }

    /// Whether a source holding `buffered` records should release them now. A `true` answer
    /// in micro-batch mode moves the schedule on to the next interval boundary.
    pub fn due(&mut self, buffered: usize) -> bool {
        let Mode::MicroBatch(iv) = self.mode else {
            return true;
        };
        let now = self.clock.instant.elapsed();
        if now >= self.next {
            // The first boundary after now (a late wake-up skips missed boundaries).
            let k = (now.as_nanos() / iv.as_nanos().max(1)) as u32 + 1;
            self.next = iv * k;
            true
        } else {
            buffered >= Self::MAX_BATCH
        }
    }

    /// How long until the next release (zero in continuous mode).
    pub fn until_next(&self) -> Duration {
        match self.mode {
            Mode::Continuous => Duration::ZERO,
            Mode::MicroBatch(_) => self.next.saturating_sub(self.clock.instant.elapsed()),
        }
    }
}
