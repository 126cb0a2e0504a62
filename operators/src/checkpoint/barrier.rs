//! The barrier: what an operator with state (or an exactly-once sink) applies now, what waits
//! for a checkpoint decision, and when it takes its part of a checkpoint.
//!
//! ```
//! use weir_operators::checkpoint::Barrier;
//! let mut b: Barrier<&str> = Barrier::default();
//! // The coordinator has decided every candidate below 100; a checkpoint at 100 is coming.
//! b.set_control(Some(100));
//! assert!(b.admits(99));
//! assert!(!b.admits(100));
//! b.hold(150, "later");
//! b.decide(100, 1);
//! b.set_control(Some(200));
//! // The data frontier has not reached 100: nothing is due, and the record waits.
//! assert_eq!(b.due(Some(90)), None);
//! assert!(b.release().is_empty());
//! // Once it has, the checkpoint is due, then the record is applied.
//! assert_eq!(b.due(Some(120)), Some((100, 1)));
//! b.taken();
//! assert_eq!(b.release(), vec![(150, "later")]);
//! ```

use std::collections::VecDeque;

use crate::Time;

/// Records (of type `D`) waiting for checkpoint decisions, and the decided checkpoints not yet
/// taken. Frontiers are given as their least element (`None`: empty, nothing more comes).
#[derive(Debug)]
pub struct Barrier<D> {
    /// Decided checkpoints not yet taken: (time, sequence number), in time order.
    pending: VecDeque<(Time, u64)>,
    /// The control input's frontier: candidates at or above it are undecided.
    control: Option<Time>,
    /// Records waiting, with their times, in arrival order.
    held: Vec<(Time, D)>,
}

impl<D> Default for Barrier<D> {
    fn default() -> Self {
        Barrier {
            pending: VecDeque::new(),
            control: Some(0),
            held: Vec::new(),
        }
    }
}

impl<D> Barrier<D> {
    /// Notes a decided checkpoint at `at` (sequence number `seq`).
    pub fn decide(&mut self, at: Time, seq: u64) {
        let i = self.pending.partition_point(|&(t, _)| t <= at);
        self.pending.insert(i, (at, seq));
    }

    /// Notes the control input's frontier.
    pub fn set_control(&mut self, least: Option<Time>) {
        self.control = least;
    }

    /// Whether a record at time `t` may be applied now.
    #[inline]
    pub fn admits(&self, t: Time) -> bool {
        self.control.is_none_or(|c| t < c) && self.pending.front().is_none_or(|&(e, _)| t < e)
    }

    /// Keeps a record at time `t` until it is admitted.
    pub fn hold(&mut self, t: Time, d: D) {
        self.held.push((t, d));
    }

    /// The records now admitted, in arrival order.
    pub fn release(&mut self) -> Vec<(Time, D)> {
        if self.held.is_empty() {
            return Vec::new();
        }
        let (ready, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|(t, _)| self.admits(*t));
        self.held = wait;
        ready
    }

    /// The next checkpoint to take, if the data frontier (least time `data`) and the control
    /// frontier have both reached it: (time, sequence number).
    pub fn due(&self, data: Option<Time>) -> Option<(Time, u64)> {
        let &(e, seq) = self.pending.front()?;
        let reached = |f: Option<Time>| f.is_none_or(|f| f >= e);
        (reached(data) && reached(self.control)).then_some((e, seq))
    }

    /// Notes that the checkpoint [`Barrier::due`] gave is taken.
    pub fn taken(&mut self) {
        self.pending.pop_front();
    }

    /// The frontier the operator may act on: the least of its data frontier, the control
    /// frontier and the next checkpoint to take (`None`: empty).
    pub fn frontier(&self, data: Option<Time>) -> Option<Time> {
        [data, self.control, self.pending.front().map(|p| p.0)]
            .into_iter()
            .flatten()
            .min()
    }

    /// The earliest time of a waiting record.
    pub fn earliest_held(&self) -> Option<Time> {
        self.held.iter().map(|(t, _)| *t).min()
    }

    /// Whether anything waits.
    pub fn is_holding(&self) -> bool {
        !self.held.is_empty()
    }
}
