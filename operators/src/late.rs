//! Late records: what an operator does with them (its [`LatePolicy`]) and how they are counted
//! ([`LateCounts`]), shared by windows and joins.

use crate::metrics::ComponentMetrics;
use crate::schema::Record;
use crate::value::Micros;

/// What a window or join does with a late record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LatePolicy {
    /// Send it, with the reason, to the dead-letter output.
    DeadLetter,
    /// Count it and drop it.
    Drop,
    /// Send it, unchanged, to the `late` output.
    SideOutput,
    /// Include it and emit the window's result again, while the window is at most
    /// `allowed_lateness` behind the watermark; later than that, dead-letter it.
    Update {
        /// How long after a window's end late records still update it (µs).
        allowed_lateness: Micros,
    },
}

/// What became of one activation's late and bad records.
#[derive(Debug, Default)]
pub struct LateCounts {
    /// Late records.
    pub late: u64,
    /// Late records dropped.
    pub dropped: u64,
    /// Late records sent to a late output.
    pub side: u64,
    /// Late records applied as updates.
    pub updated: u64,
    /// Records dead-lettered (late, or without an event time).
    pub dead: u64,
}

impl LateCounts {
    /// Routes one late record by `policy`: counted, then dropped, sent to `late`, or turned
    /// into a dead letter by `dead_letter` and sent to `dead` (also under `Update`, for a
    /// record too late to update anything).
    pub fn route(
        &mut self,
        policy: LatePolicy,
        r: Record,
        dead_letter: impl FnOnce(&Record) -> Record,
        dead: &mut Vec<Record>,
        late: &mut Vec<Record>,
    ) {
        self.late += 1;
        match policy {
            LatePolicy::Drop => self.dropped += 1,
            LatePolicy::SideOutput => {
                self.side += 1;
                late.push(r);
            }
            LatePolicy::DeadLetter | LatePolicy::Update { .. } => {
                self.dead += 1;
                dead.push(dead_letter(&r));
            }
        }
    }

    /// Counts a late record applied as an update.
    pub fn updated(&mut self) {
        self.late += 1;
        self.updated += 1;
    }

    /// Sends a record without an event time to `dead`, as made by `dead_letter`.
    pub fn untimed(
        &mut self,
        r: &Record,
        dead_letter: impl FnOnce(&Record) -> Record,
        dead: &mut Vec<Record>,
    ) {
        self.dead += 1;
        dead.push(dead_letter(r));
    }

    /// Adds the counts to a component's metrics.
    pub fn report(&self, m: &ComponentMetrics) {
        m.add_late(self.late);
        m.add_late_outcomes(self.dropped, self.side, self.updated);
        m.add_errors(self.dead);
        m.add_dead_lettered(self.dead);
    }
}
