//! Execution modes: when sources release input, and so how often the event-time frontier
//! advances.
//!
//! A source emits its input in *batches*. Within a batch it may send records in several chunks
//! (so downstream operators work on cache-sized pieces), but it holds its capability — the
//! frontier — until the batch is complete, and advances it once, after the batch.
//!
//! - **Continuous**: a batch is whatever one activation has ready (at most [`CHUNK`] records);
//!   the next starts at once. Records flow as they arrive and the frontier follows event time
//!   closely.
//! - **Micro-batch**: a batch starts at once, then whenever the wall clock reaches a multiple of
//!   `interval` (since the Unix epoch, as Spark's `ProcessingTime` trigger aligns its batches;
//!   the same instants for every worker and process, and the same phase relative to
//!   epoch-aligned windows in every run), and takes everything that is available then — events due by
//!   then for a generator, lines that can be read for a file or standard input — up to
//!   [`MAX_BATCH`] records per worker. Between batches the source reads nothing, so input waits
//!   (and its latency shows it), like Spark's `ProcessingTime` trigger. A batch that reached
//!   `MAX_BATCH` means input is backlogged: the next batch starts at once, as Spark starts the
//!   next micro-batch at once when one overruns its interval.
//!
//! Records carry their own event time and watermark ([`Meta`](crate::schema::Meta)), so how
//! records are batched never changes a result: only latency and throughput differ.
//!
//! ```
//! use std::time::Duration;
//! use weir_operators::epochs::{Epochs, Mode, CHUNK, MAX_BATCH};
//! use weir_operators::clock::RunClock;
//!
//! let mut continuous = Epochs::new(Mode::Continuous, RunClock::now());
//! assert!(continuous.start_batch());
//! assert_eq!(continuous.batch_max(), CHUNK);
//! let mut batched = Epochs::new(Mode::MicroBatch(Duration::from_secs(3600)), RunClock::now());
//! assert!(batched.start_batch(), "the first batch starts at once");
//! assert!(!batched.start_batch(), "the second starts an hour later");
//! assert_eq!(batched.batch_max(), MAX_BATCH);
//! ```

use crate::clock::RunClock;
use std::time::Duration;

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

/// Records a source sends per activation (and per batch in continuous mode).
pub const CHUNK: usize = 4096;

/// The most records a worker's source puts in one micro-batch.
pub const MAX_BATCH: usize = 1 << 16;

impl Epochs {
    /// The schedule for `mode`: the first batch starts at once, the next ones when the wall
    /// clock reaches multiples of the interval.
    pub fn new(mode: Mode, clock: RunClock) -> Epochs {
        Epochs {
            mode,
            clock,
            next: Duration::ZERO,
        }
    }

    /// Whether the mode is continuous.
    pub fn continuous(&self) -> bool {
        self.mode == Mode::Continuous
    }

    /// The most records in one batch.
    pub fn batch_max(&self) -> usize {
        match self.mode {
            Mode::Continuous => CHUNK,
            Mode::MicroBatch(_) => MAX_BATCH,
        }
    }

    /// Whether a new batch may start now (always, in continuous mode). A `true` answer in
    /// micro-batch mode moves the schedule on to the next interval boundary.
    pub fn start_batch(&mut self) -> bool {
        let Mode::MicroBatch(iv) = self.mode else {
            return true;
        };
        let now = self.clock.instant.elapsed();
        if now < self.next {
            return false;
        }
        // The first boundary after now (a late wake-up skips missed boundaries), in wall-clock
        // time: the run started `phase` after a multiple of the interval.
        let iv_us = iv.as_micros().max(1);
        let phase = (self.clock.wall.max(0) as u128) % iv_us;
        let k = (now.as_micros() + phase) / iv_us + 1;
        self.next = Duration::from_micros((k * iv_us - phase) as u64);
        true
    }

    /// How long until the next batch may start (zero in continuous mode).
    pub fn until_next(&self) -> Duration {
        match self.mode {
            Mode::Continuous => Duration::ZERO,
            Mode::MicroBatch(_) => self.next.saturating_sub(self.clock.instant.elapsed()),
        }
    }
}
