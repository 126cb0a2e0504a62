//! Backpressure: sources stop admitting input while too much of it is in flight.
//!
//! Every source sends its input in batches, each at its capability's time (see
//! [`epochs`](crate::epochs)); call the set of batches a source sends at one time an *epoch*.
//! A timely probe watches the inputs of every sink. An epoch at time `t` is complete when the
//! frontier at the sinks has passed `t`: every record sent at `t`, and everything derived from
//! it, has been written (or dead-lettered), on every worker of every process.
//!
//! Before a source starts a batch it asks its [`Admission`] whether it may: not while
//! `max_in_flight` or more of its records are in incomplete epochs (so one batch may take it
//! past the limit; a micro-batch as large as the limit runs alone, as Spark runs one batch at a
//! time). It then holds its capability and reads or
//! generates nothing; input waits where it is — an open-loop generator falls behind its schedule
//! (its backlog, and the latency measured from the schedule, show it), a file is not read, a
//! pipe fills and blocks its writer. A source that races ahead of another worker or another
//! source is held the same way, so the distance between the fastest and the slowest input —
//! and with it the open window and join state — stays bounded.
//!
//! Records queued between operators and workers are therefore bounded by `max_in_flight`
//! plus one batch per source and worker. The bound needs time to advance: batches a source
//! sends while its watermark stands still share one epoch, which cannot complete while the
//! source's own capability holds it open, so that epoch is not counted (the source would wait
//! for itself) and is bounded only when the watermark moves.
//!
//! ```
//! use weir_operators::flow::Flow;
//! use weir_operators::metrics::ComponentMetrics;
//! use std::sync::Arc;
//!
//! // A probe that watches no stream has nothing in flight: every batch is admitted.
//! let flow = Flow::new(100);
//! let mut admission = flow.admission(Arc::new(ComponentMetrics::default()));
//! for t in 0..10 {
//!     assert!(admission.admit(t));
//!     admission.sent(t, 1000);
//! }
//! ```

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::Probe;

use crate::clock::RunClock;
use crate::control::RunControl;
use crate::epochs::Mode;
use crate::metrics::ComponentMetrics;
use crate::{Records, Time};

/// How soon a held-back source looks again (the probe does not wake operators).
pub const HELD_RETRY: std::time::Duration = std::time::Duration::from_micros(250);

/// What one worker's sources share: the probe at the sinks and the in-flight limit.
#[derive(Clone)]
pub struct Flow {
    probe: ProbeHandle<Time>,
    max_in_flight: usize,
    frontier: Arc<AtomicU64>,
}

impl Flow {
    /// A flow allowing each source `max_in_flight` records in incomplete epochs (0: no limit).
    pub fn new(max_in_flight: usize) -> Flow {
        Flow::shared(max_in_flight, Arc::default())
    }

    /// Like [`Flow::new`], publishing the frontier at the sinks to `frontier` (shared by the
    /// workers of a process, read by the status line; `u64::MAX` once no time remains).
    pub fn shared(max_in_flight: usize, frontier: Arc<AtomicU64>) -> Flow {
        Flow {
            probe: ProbeHandle::new(),
            max_in_flight,
            frontier,
        }
    }

    /// Watches `stream` (a sink's input): epochs complete when it has passed them.
    pub fn watch<'s>(&self, stream: Records<'s>) -> Records<'s> {
        stream.probe_with(&self.probe)
    }

    /// The frontier at the sinks now: every output at an earlier time has been written
    /// (`u64::MAX` once no time remains).
    pub fn frontier_now(&self) -> Time {
        self.probe
            .with_frontier(|f| f.first().copied().unwrap_or(u64::MAX))
    }

    /// The admission control of one source instance.
    pub fn admission(&self, metrics: Arc<ComponentMetrics>) -> Admission {
        Admission {
            flow: self.clone(),
            epochs: VecDeque::new(),
            records: 0,
            held_since: None,
            metrics,
        }
    }
}

/// One source instance's view of its epochs in flight.
pub struct Admission {
    flow: Flow,
    /// Epochs sent and not known to be complete, oldest first: their time and records.
    epochs: VecDeque<(Time, u64)>,
    /// Records in them.
    records: u64,
    held_since: Option<Instant>,
    metrics: Arc<ComponentMetrics>,
}

impl Admission {
    /// Notes that a batch of `records` was sent at `time`.
    pub fn sent(&mut self, time: Time, records: u64) {
        match self.epochs.back_mut() {
            Some((t, n)) if *t >= time => *n += records,
            _ => self.epochs.push_back((time, records)),
        }
        self.records += records;
    }

    /// Whether the source, whose capability is at `current`, may start a batch now. Only
    /// epochs before `current` count: the source's own frontier holds the epoch at `current`
    /// open, so waiting for it would wait forever. While it may not, the time it is held back
    /// is counted.
    pub fn admit(&mut self, current: Time) -> bool {
        let probe = &self.flow.probe;
        while let Some((_, n)) = self.epochs.front().filter(|(t, _)| !probe.less_equal(t)) {
            self.records -= n;
            self.epochs.pop_front();
        }
        let frontier = probe.with_frontier(|f| f.first().copied().unwrap_or(u64::MAX));
        self.flow.frontier.store(frontier, Relaxed);
        let open = match self.epochs.back() {
            Some(&(t, n)) if t >= current => n,
            _ => 0,
        };
        let waiting = self.records - open;
        self.metrics
            .set_in_flight(self.epochs.len() as u64, self.records);
        if self.flow.max_in_flight == 0 || waiting < self.flow.max_in_flight as u64 {
            self.release();
            true
        } else {
            self.held_since.get_or_insert_with(Instant::now);
            false
        }
    }

    /// Counts the time held back so far (call when the source finishes).
    pub fn release(&mut self) {
        if let Some(since) = self.held_since.take() {
            self.metrics.add_held(since.elapsed().as_micros() as u64);
        }
    }
}

/// What every source needs besides its own configuration.
#[derive(Clone)]
pub struct SourceEnv {
    /// The execution mode.
    pub mode: Mode,
    /// The run's clock.
    pub clock: RunClock,
    /// Stop requests and failures.
    pub ctl: RunControl,
    /// Backpressure.
    pub flow: Flow,
    /// With checkpoints: the run's checkpoint spec and this worker's sources' position logs
    /// (a reading source registers its own).
    pub positions: Option<(
        Arc<crate::checkpoint::CheckpointSpec>,
        crate::checkpoint::coordinator::Positions,
    )>,
}

impl SourceEnv {
    /// An environment without backpressure, for tests and examples.
    pub fn new(mode: Mode, clock: RunClock, ctl: RunControl) -> SourceEnv {
        SourceEnv {
            mode,
            clock,
            ctl,
            flow: Flow::new(0),
            positions: None,
        }
    }
}
