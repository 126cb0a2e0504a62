//! A window operator's state on one worker: panes of grouped partial aggregates (tumbling and
//! sliding windows), per-key pane queues (sliding windows), and per-key sessions, with the
//! rules that add a batch's records to them and fire the windows the frontier has passed.
//!
//! Aggregate states live in columns ([`Accs`]: one vector per aggregate, a slot per group), and
//! keys in a [`Groups`] table that maps a key to its slot. A batch is added a run of records at
//! a time: the records of one run fall in one pane, their keys are looked up to slots in one
//! pass, then each aggregate is updated over the whole run from its argument's column.

use std::collections::{BTreeMap, BTreeSet};

use smallvec::SmallVec;

/// One key's open sessions: most keys have one at a time, kept inline.
pub(super) type Sessions = SmallVec<[Session; 1]>;

use timely::dataflow::operators::Capability;

use crate::batch::Delay;

use super::groups::Groups;
use super::{closed, Counts, LatePolicy, Shape, WindowSpec};
use crate::aggregate::{Args, States};
use crate::chunk::Chunk;
use crate::ingests::Ingests;
use crate::keyed::Keyed;
use crate::schema::Record;
use crate::time::format_rfc3339;
use crate::value::Micros;
use crate::Time;

/// Aggregate states of many groups (or sessions, or queued panes), one slot each.
pub(super) struct Accs {
    pub(super) states: Vec<States>,
    /// Each slot's newest ingest time.
    pub(super) ingest: Ingests,
    /// Late records each slot includes (kept with `late = "update"` only).
    pub(super) late: Vec<u64>,
    free: Vec<u32>,
    track_late: bool,
}

impl Accs {
    pub(super) fn new(spec: &WindowSpec) -> Accs {
        Accs {
            states: spec.aggregates.iter().map(|a| a.states()).collect(),
            ingest: Ingests::default(),
            late: Vec::new(),
            free: Vec::new(),
            track_late: matches!(spec.late, LatePolicy::Update { .. }),
        }
    }

    /// A slot holding the state of no records.
    pub(super) fn alloc(&mut self) -> u32 {
        if let Some(i) = self.free.pop() {
            let u = i as usize;
            self.states.iter_mut().for_each(|s| s.reset(u));
            self.ingest.reset(u);
            if self.track_late {
                self.late[u] = 0;
            }
            return i;
        }
        self.states.iter_mut().for_each(States::push_default);
        self.ingest.push_none();
        if self.track_late {
            self.late.push(0);
        }
        (self.ingest.len() - 1) as u32
    }

    /// Removes every slot (keeping the memory), for use as scratch.
    pub(super) fn clear(&mut self) {
        self.states.iter_mut().for_each(States::clear);
        self.ingest.clear();
        self.late.clear();
        self.free.clear();
    }

    /// Makes room for `n` more slots.
    pub(super) fn reserve(&mut self, n: usize) {
        self.states.iter_mut().for_each(|s| s.reserve(n));
        self.ingest.reserve_exact(n);
        if self.track_late {
            self.late.reserve_exact(n);
        }
    }

    /// Frees slot `i` for reuse.
    pub(super) fn release(&mut self, i: u32) {
        self.free.push(i);
    }

    /// Adds `from`'s slot `j` into slot `i`.
    pub(super) fn merge(&mut self, spec: &WindowSpec, i: u32, from: &Accs, j: u32) {
        let (iu, ju) = (i as usize, j as usize);
        for (a, (s, f)) in spec
            .aggregates
            .iter()
            .zip(self.states.iter_mut().zip(&from.states))
        {
            a.merge_at(s, iu, f, ju);
        }
        self.ingest.raise(iu, from.ingest.get(ju));
        if self.track_late {
            self.late[iu] += from.late.get(ju).copied().unwrap_or(0);
        }
    }

    /// A new slot holding a copy of slot `j` of `from`.
    pub(super) fn copy_of(&mut self, spec: &WindowSpec, from: &Accs, j: u32) -> u32 {
        let i = self.alloc();
        self.merge(spec, i, from, j);
        i
    }

    /// Adds slot `j` into slot `i` of the same states.
    pub(super) fn merge_within(&mut self, spec: &WindowSpec, i: u32, j: u32) {
        let mut one = Accs::new(spec);
        one.copy_of(spec, self, j);
        self.merge(spec, i, &one, 0);
    }

    /// Adds batch rows `start..start + slots.len()` to `slots`.
    pub(super) fn update(
        &mut self,
        spec: &WindowSpec,
        batch: &Batch<'_>,
        start: usize,
        slots: &[u32],
    ) {
        for ((a, s), args) in spec
            .aggregates
            .iter()
            .zip(self.states.iter_mut())
            .zip(&batch.args)
        {
            a.update_batch(s, args, start, slots, batch.ts);
        }
        self.ingest.raise_all(
            &batch.ingest[start..start + slots.len()],
            slots,
            batch.ingest_range,
        );
    }

    /// Sets the late records slot `i` includes (kept with `late = "update"` only).
    pub(super) fn set_late(&mut self, i: u32, n: u64) {
        if self.track_late {
            self.late[i as usize] = n;
        }
    }

    /// The late records slot `i` includes.
    pub(super) fn late_of(&self, i: u32) -> u64 {
        self.late.get(i as usize).copied().unwrap_or(0)
    }

    /// Bytes held by `slots`.
    pub(super) fn bytes(&self, slots: impl Iterator<Item = u32> + Clone) -> usize {
        let fixed: usize = self.states.iter().map(States::slot_bytes).sum::<usize>()
            + self.ingest.width()
            + if self.track_late { 8 } else { 0 };
        let mut total = self.ingest.capacity() * fixed;
        for s in self.states.iter().filter(|s| s.has_extra()) {
            total += slots
                .clone()
                .map(|i| s.extra_bytes(i as usize))
                .sum::<usize>();
        }
        total
    }
}

/// A batch read for the window: its keys and times ([`Keyed`]) and its aggregates' arguments.
pub(super) struct Batch<'c> {
    pub(super) k: Keyed<'c>,
    pub(super) args: Vec<Args>,
    /// The earliest and latest ingest times of the batch.
    ingest_range: (Micros, Micros),
}

impl<'c> Batch<'c> {
    pub(super) fn new(spec: &WindowSpec, chunk: &'c Chunk) -> Batch<'c> {
        let k = Keyed::new(&spec.key_kind, &spec.group_by, spec.time, chunk);
        let ingest_range = k
            .ingest
            .iter()
            .fold((Micros::MAX, Micros::MIN), |(lo, hi), &x| {
                (lo.min(x), hi.max(x))
            });
        Batch {
            k,
            ingest_range,
            args: spec
                .aggregates
                .iter()
                .map(|a| a.args(chunk.columns(), chunk.len(), spec.id_field))
                .collect(),
        }
    }
}

impl<'c> std::ops::Deref for Batch<'c> {
    type Target = Keyed<'c>;
    fn deref(&self) -> &Keyed<'c> {
        &self.k
    }
}

/// Groups and their states, a slot each.
pub(super) struct Table {
    pub(super) groups: Groups,
    pub(super) accs: Accs,
}

impl Table {
    pub(super) fn new(spec: &WindowSpec) -> Table {
        Table::with_capacity(spec, (0, 0))
    }

    /// A table with room for `keys` keys of `bytes` key bytes in all.
    pub(super) fn with_capacity(spec: &WindowSpec, (keys, bytes): (usize, usize)) -> Table {
        let mut accs = Accs::new(spec);
        accs.reserve(keys);
        Table {
            groups: Groups::with_capacity(&spec.key_kind, keys, bytes),
            accs,
        }
    }

    /// The slot of batch row `r`'s group, added if new (counted in `n`).
    #[inline]
    fn slot(&mut self, b: &Batch<'_>, r: usize, n: &mut Counts) -> u32 {
        let (g, new) = self.groups.slot(&b.keys, r, b.hashes[r]);
        if new {
            let a = self.accs.alloc();
            debug_assert_eq!(a, g);
            n.state += 1;
        }
        g
    }

    pub(super) fn bytes(&self) -> usize {
        self.groups.bytes() + self.accs.bytes(self.groups.slots())
    }
}

/// One key's panes in a sliding window, as a two-stack queue: `back` holds the panes added
/// most recently (with their merge in `back_agg`); `front` holds older panes as suffix
/// aggregates, the oldest on top. Entries are slots of the queues' [`Accs`].
#[derive(Default)]
pub(super) struct KeyQueue {
    pub(super) front: Vec<(Micros, u32)>,
    pub(super) back: Vec<(Micros, u32)>,
    pub(super) back_agg: Option<u32>,
}

/// One session of one key.
pub(super) struct Session {
    pub(super) start: Micros,
    /// The last event time plus the gap.
    pub(super) end: Micros,
    /// Its slot in the sessions' [`Accs`].
    pub(super) slot: u32,
}

/// A window operator's state on one worker.
pub(super) struct State {
    /// Tumbling and sliding: panes by their end.
    pub(super) panes: BTreeMap<Micros, Pane>,
    /// The largest window end emitted so far.
    pub(super) fired_through: Micros,
    /// Sliding windows (without late updates): the keys with queued panes, each key's queue
    /// (by key slot) and the queued states.
    pub(super) queue_keys: Groups,
    pub(super) queues: Vec<KeyQueue>,
    pub(super) queue_accs: Accs,
    /// Sessions: keys with open sessions, each key's sessions (sorted by start, never
    /// overlapping; by key slot) and the sessions' states.
    pub(super) keys: Groups,
    pub(super) sessions: Vec<Sessions>,
    pub(super) session_accs: Accs,
    /// Sessions: every open session as (end, key slot, state slot), in the order they close.
    pub(super) session_ends: BTreeSet<(Micros, u32, u32)>,
    /// A capability at or below the time of every result still to be sent.
    pub(super) held: Option<Capability<Time>>,
    /// The last fired pane's keys and key bytes, to size new panes.
    pub(super) pane_size: (usize, usize),
}

/// The groups of one pane.
pub(super) struct Pane {
    pub(super) start: Micros,
    /// On-time records, which count in every window of the pane.
    pub(super) table: Table,
    /// Late records applied as updates (late = "update"), by the end of the first window they
    /// count in: a late record counts only in the windows it is not too late for.
    pub(super) late: BTreeMap<Micros, Table>,
}

impl Pane {
    /// The tables of the pane that count in the window ending at `end`.
    pub(super) fn parts(&self, end: Micros) -> impl Iterator<Item = &Table> {
        std::iter::once(&self.table).chain(self.late.range(..=end).map(|(_, t)| t))
    }

    pub(super) fn len(&self) -> usize {
        self.table.groups.len() + self.late.values().map(|t| t.groups.len()).sum::<usize>()
    }
}

impl State {
    pub(super) fn new(spec: &WindowSpec) -> State {
        State {
            panes: BTreeMap::new(),
            fired_through: Micros::MIN,
            queue_keys: Groups::new(&spec.key_kind, true),
            queues: Vec::new(),
            queue_accs: Accs::new(spec),
            keys: Groups::new(&spec.key_kind, true),
            sessions: Vec::new(),
            session_accs: Accs::new(spec),
            session_ends: BTreeSet::new(),
            held: None,
            pane_size: (0, 0),
        }
    }

    /// Makes sure a capability at or below `time` is held (taken from the input's).
    pub(super) fn hold(&mut self, cap: &(impl Delay + ?Sized), time: Time) {
        if self.held.as_ref().is_none_or(|h| *h.time() > time) {
            self.held = Some(cap.at(&time, 0));
        }
    }

    /// Entries of state held (groups of panes, queued panes, sessions), for the gauge of a
    /// restored window.
    pub(super) fn entries(&self) -> usize {
        self.panes.values().map(Pane::len).sum::<usize>()
            + self
                .queues
                .iter()
                .map(|q| q.front.len() + q.back.len())
                .sum::<usize>()
            + self.session_ends.len()
    }

    /// Bytes of aggregate and key state held.
    pub(super) fn bytes(&self) -> usize {
        self.panes
            .values()
            .map(|p| p.table.bytes() + p.late.values().map(Table::bytes).sum::<usize>())
            .sum::<usize>()
            + self.queue_keys.bytes()
            + self.queues.capacity() * std::mem::size_of::<KeyQueue>()
            + self
                .queue_accs
                .bytes(0..self.queue_accs.ingest.len() as u32)
            + self.keys.bytes()
            + self.sessions.capacity() * std::mem::size_of::<Sessions>()
            + self
                .sessions
                .iter()
                .filter(|s| s.spilled())
                .map(|s| s.capacity() * std::mem::size_of::<Session>())
                .sum::<usize>()
            + self
                .session_accs
                .bytes(0..self.session_accs.ingest.len() as u32)
            + self.session_ends.len() * 26
    }

    /// Adds a batch's records to their panes; late ones are routed by the late policy (those
    /// applied as updates re-emit their windows into `updates`), untimed ones dead-lettered.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn add_to_panes(
        &mut self,
        spec: &WindowSpec,
        b: &Batch<'_>,
        cap: &(impl Delay + ?Sized),
        t: Time,
        n: &mut Counts,
        out: &mut Outs,
    ) {
        let len = b.chunk.len();
        let mut slots: Vec<u32> = Vec::with_capacity(len);
        let mut r = 0;
        while r < len {
            let Some(ts) = b.time(r) else {
                out.untimed(spec, b, r, n);
                r += 1;
                continue;
            };
            let (ps, pe) = spec.window_of(ts);
            let pe_t = pe.max(1) as Time;
            if pe_t <= b.watermark_at(r, t) {
                self.add_late(spec, b, r, ts, cap, t, n, out);
                r += 1;
                continue;
            }
            // A run of on-time records in this pane.
            self.hold(cap, pe_t - 1);
            // A new pane starts with room for the last one's keys (key sets are mostly
            // stable): no regrowth while it fills, and no room to spare.
            let size = self.pane_size;
            let pane = self.panes.entry(pe).or_insert_with(|| Pane {
                start: ps,
                table: Table::with_capacity(spec, size),
                late: BTreeMap::new(),
            });
            let start = r;
            if b.ts_nulls.is_none() {
                while r < len && (ps..pe).contains(&b.ts[r]) && pe_t > b.watermark_at(r, t) {
                    r += 1;
                }
            } else {
                while r < len {
                    let Some(ts) = b.time(r) else { break };
                    if ts < ps || ts >= pe || pe_t <= b.watermark_at(r, t) {
                        break;
                    }
                    r += 1;
                }
            }
            slots.clear();
            let table = &mut pane.table;
            let new = table
                .groups
                .slots_of(&b.keys, &b.hashes, start..r, &mut slots);
            for _ in 0..new {
                table.accs.alloc();
            }
            n.state += new as i64;
            table.accs.update(spec, b, start, &slots);
        }
    }

    /// Adds a late record within the allowed lateness (or routes it by the late policy).
    #[allow(clippy::too_many_arguments)]
    fn add_late(
        &mut self,
        spec: &WindowSpec,
        b: &Batch<'_>,
        r: usize,
        ts: Micros,
        cap: &(impl Delay + ?Sized),
        t: Time,
        n: &mut Counts,
        out: &mut Outs,
    ) {
        let (ps, pe) = spec.window_of(ts);
        let wm = b.watermark_at(r, t);
        // The last window containing the record ends here.
        let last = ps.saturating_add(spec.size);
        let LatePolicy::Update { allowed_lateness } = spec.late else {
            out.late(spec, b, r, closed(spec, ps, pe), wm, n);
            return;
        };
        // The first window a late record still counts in: the first not more than
        // `allowed_lateness` behind its watermark.
        let w = spec.pane();
        let mut first = pe;
        while first <= last && (first.saturating_add(allowed_lateness).max(1) as Time) <= wm {
            first += w;
        }
        if first > last {
            out.late(spec, b, r, closed(spec, ps, pe), wm, n);
            return;
        }
        if last > self.fired_through {
            // Windows still to fire will include it: hold a capability for them.
            self.hold(cap, t);
        }
        let pane = self.panes.entry(pe).or_insert_with(|| Pane {
            start: ps,
            table: Table::new(spec),
            late: BTreeMap::new(),
        });
        let table = pane.late.entry(first).or_insert_with(|| Table::new(spec));
        let g = table.slot(b, r, n);
        table.accs.update(spec, b, r, &[g]);
        table.accs.late[g as usize] += 1;
        n.late.updated();
        // Emit again every window it counts in that was already emitted (the others will
        // include it when they fire).
        let table = &self.panes[&pe].late[&first];
        let key = table.groups.values(&spec.key_kind, g);
        let mut e = first;
        while e <= last && e <= self.fired_through {
            if let Some(part) = self.merged(spec, e, &table.groups, g) {
                out.updates
                    .push(spec.result(key.clone(), e - spec.size, e, &part, 0));
            }
            e += spec.pane();
        }
    }

    /// One key's result for the window ending at `end`, merged over its panes (in slot 0).
    pub(super) fn merged(
        &self,
        spec: &WindowSpec,
        end: Micros,
        src: &Groups,
        g: u32,
    ) -> Option<Accs> {
        let mut acc: Option<Accs> = None;
        for (_, pane) in self.panes.range((end - spec.size + 1)..=end) {
            for t in pane.parts(end) {
                if let Some(s) = t.groups.find_from(src, g) {
                    let a = acc.get_or_insert_with(|| {
                        let mut a = Accs::new(spec);
                        a.alloc();
                        a
                    });
                    a.merge(spec, 0, &t.accs, s);
                }
            }
        }
        acc
    }

    /// The end of the next window to emit: the first after the last one emitted that holds
    /// data.
    pub(super) fn next_window(&self, spec: &WindowSpec) -> Option<Micros> {
        let w = spec.pane();
        if self.queue_keys.len() > 0 {
            // Queued panes have windows still to emit: the very next one.
            return Some(self.fired_through + w);
        }
        let (&first, _) = self
            .panes
            .range(
                self.fired_through
                    .saturating_add(1)
                    .saturating_sub(spec.size - w)..,
            )
            .next()?;
        Some(if self.fired_through == Micros::MIN {
            first
        } else {
            first.max(self.fired_through + w)
        })
    }

    /// A sliding window's results for the window ending at `e`, combined per key from the
    /// panes in it with two stacks (each pane is merged a constant number of times on average,
    /// whatever the number of panes per window): the pane ending at `e` joins its keys'
    /// queues, panes that leave the window are evicted, and each key's result is the merge of
    /// its front stack's top (a suffix aggregate) and its back aggregate.
    pub(super) fn slide_queues(
        &mut self,
        spec: &WindowSpec,
        e: Micros,
        batch: &mut Vec<Record>,
        n: &mut Counts,
    ) {
        if let Some(pane) = self.panes.remove(&e) {
            let t = &pane.table;
            for g in t.groups.slots() {
                let (q, new) = self.queue_keys.slot_from(&t.groups, g);
                let qi = q as usize;
                if qi >= self.queues.len() {
                    self.queues.resize_with(qi + 1, KeyQueue::default);
                }
                if new {
                    self.queues[qi] = KeyQueue::default();
                }
                let part = self.queue_accs.copy_of(spec, &t.accs, g);
                let queue = &mut self.queues[qi];
                match queue.back_agg {
                    None => queue.back_agg = Some(self.queue_accs.copy_of(spec, &t.accs, g)),
                    Some(b) => self.queue_accs.merge(spec, b, &t.accs, g),
                }
                queue.back.push((e, part));
            }
        }
        let oldest = e - spec.size; // panes ending at or before this have left the window
        let live: Vec<u32> = self.queue_keys.slots().collect();
        let mut one = Accs::new(spec);
        for q in live {
            let accs = &mut self.queue_accs;
            let queue = &mut self.queues[q as usize];
            loop {
                match queue.front.last() {
                    Some(&(pe, s)) if pe <= oldest => {
                        queue.front.pop();
                        accs.release(s);
                        n.state -= 1;
                    }
                    Some(_) => break,
                    None if queue.back.first().is_some_and(|(pe, _)| *pe <= oldest) => {
                        // Flip: the back stack becomes the front, as suffix aggregates.
                        let mut running: Option<u32> = None;
                        for (pe, part) in queue.back.drain(..).rev() {
                            let r = match running {
                                None => {
                                    running = Some(part);
                                    part
                                }
                                Some(r) => {
                                    accs.merge_within(spec, r, part);
                                    accs.release(part);
                                    r
                                }
                            };
                            one.clear();
                            one.copy_of(spec, accs, r);
                            let snap = accs.copy_of(spec, &one, 0);
                            queue.front.push((pe, snap));
                        }
                        if let Some(r) = running {
                            accs.release(r);
                        }
                        if let Some(b) = queue.back_agg.take() {
                            accs.release(b);
                        }
                    }
                    None => break,
                }
            }
            let key = || self.queue_keys.values(&spec.key_kind, q);
            match (queue.front.last(), queue.back_agg) {
                (Some(&(_, f)), Some(b)) => {
                    one.clear();
                    one.copy_of(spec, accs, f);
                    one.merge(spec, 0, accs, b);
                    batch.push(spec.result(key(), e - spec.size, e, &one, 0));
                }
                (Some(&(_, f)), None) => batch.push(spec.result(key(), e - spec.size, e, accs, f)),
                (None, Some(b)) => batch.push(spec.result(key(), e - spec.size, e, accs, b)),
                (None, None) => self.queue_keys.remove(q),
            }
        }
    }

    /// Emits every window the frontier has passed.
    pub(super) fn fire_panes(
        &mut self,
        spec: &WindowSpec,
        frontier: Option<Time>,
        emitted: &mut Vec<(Time, Vec<Record>)>,
        n: &mut Counts,
    ) {
        let w = spec.pane();
        while let Some(e) = self.next_window(spec) {
            if before(frontier, e.max(1) as Time - 1) {
                break;
            }
            let mut batch = Vec::new();
            let single = self
                .panes
                .get(&e)
                .filter(|p| spec.size == w && p.late.is_empty());
            if spec.size != w && !matches!(spec.late, LatePolicy::Update { .. }) {
                self.slide_queues(spec, e, &mut batch, n);
            } else if let Some(p) = single {
                let t = &p.table;
                batch.reserve(t.groups.len());
                for g in t.groups.slots() {
                    let key = t.groups.values(&spec.key_kind, g);
                    batch.push(spec.result(key, p.start, e, &t.accs, g));
                }
            } else {
                let mut merged = Table::new(spec);
                for (_, p) in self.panes.range((e - spec.size + 1)..=e) {
                    for t in p.parts(e) {
                        for g in t.groups.slots() {
                            let (m, new) = merged.groups.slot_from(&t.groups, g);
                            if new {
                                merged.accs.alloc();
                            }
                            merged.accs.merge(spec, m, &t.accs, g);
                        }
                    }
                }
                for g in merged.groups.slots() {
                    let key = merged.groups.values(&spec.key_kind, g);
                    batch.push(spec.result(key, e - spec.size, e, &merged.accs, g));
                }
            }
            if let Some(p) = self.panes.get(&e) {
                self.pane_size = p.table.groups.size();
            }
            self.fired_through = e;
            if !batch.is_empty() {
                emitted.push((e.max(1) as Time - 1, batch));
            }
        }
        // Free the panes no window will read again.
        let retain = match spec.late {
            LatePolicy::Update { allowed_lateness } => allowed_lateness,
            _ => 0,
        };
        while let Some(entry) = self.panes.first_entry() {
            let last = entry.get().start.saturating_add(spec.size);
            let keep_until = last.saturating_add(retain);
            if last > self.fired_through || before(frontier, keep_until.max(1) as Time - 1) {
                break;
            }
            n.state -= entry.get().len() as i64;
            entry.remove();
        }
    }

    /// Adds a batch's records to their keys' sessions; late and untimed ones are routed.
    pub(super) fn add_to_sessions(
        &mut self,
        spec: &WindowSpec,
        b: &Batch<'_>,
        cap: &(impl Delay + ?Sized),
        t: Time,
        n: &mut Counts,
        out: &mut Outs,
    ) {
        let gap = spec.size;
        for r in 0..b.chunk.len() {
            let Some(ts) = b.time(r) else {
                out.untimed(spec, b, r, n);
                continue;
            };
            let wm = b.watermark_at(r, t);
            if (ts.max(0) as Time) < wm {
                out.late(
                    spec,
                    b,
                    r,
                    format!(
                        "it is behind the watermark, so the session it would join or start may have closed (gap {}µs)",
                        gap
                    ),
                    wm,
                    n,
                );
                continue;
            }
            let end = ts.saturating_add(gap);
            self.hold(cap, end.max(1) as Time - 1);
            let (k, new) = self.keys.slot(&b.keys, r, b.hashes[r]);
            let ku = k as usize;
            if ku >= self.sessions.len() {
                self.sessions.resize_with(ku + 1, Sessions::new);
            }
            if new {
                self.sessions[ku].clear();
            }
            let ss = &mut self.sessions[ku];
            let accs = &mut self.session_accs;
            // Sessions overlapping [ts, ts + gap) merge with it. They do not overlap each
            // other and are sorted by start, so they form one run: those starting before
            // ts + gap and ending after ts. The first of them takes the record and absorbs
            // the others.
            let hi = ss.partition_point(|s| s.start < end);
            let mut lo = hi;
            while lo > 0 && ss[lo - 1].end > ts {
                lo -= 1;
            }
            if lo == hi {
                let slot = accs.alloc();
                accs.update(spec, b, r, &[slot]);
                self.session_ends.insert((end, k, slot));
                n.state += 1;
                ss.insert(
                    lo,
                    Session {
                        start: ts,
                        end,
                        slot,
                    },
                );
                continue;
            }
            let absorbed: Vec<Session> = ss.drain(lo + 1..hi).collect();
            let base = &mut ss[lo];
            self.session_ends.remove(&(base.end, k, base.slot));
            accs.update(spec, b, r, &[base.slot]);
            base.start = base.start.min(ts);
            base.end = base.end.max(end);
            for s in absorbed {
                self.session_ends.remove(&(s.end, k, s.slot));
                n.state -= 1;
                base.start = base.start.min(s.start);
                base.end = base.end.max(s.end);
                accs.merge_within(spec, base.slot, s.slot);
                accs.release(s.slot);
            }
            self.session_ends.insert((base.end, k, base.slot));
        }
    }

    /// Emits every session whose end the frontier has passed, in the order they end.
    pub(super) fn fire_sessions(
        &mut self,
        spec: &WindowSpec,
        frontier: Option<Time>,
        emitted: &mut Vec<(Time, Vec<Record>)>,
        n: &mut Counts,
    ) {
        let mut batch = Vec::new();
        while let Some(&(end, k, slot)) = self.session_ends.first() {
            if before(frontier, end.max(1) as Time - 1) {
                break;
            }
            self.session_ends.pop_first();
            n.state -= 1;
            let ss = &mut self.sessions[k as usize];
            let Some(i) = ss.iter().position(|s| s.slot == slot) else {
                debug_assert!(false, "an indexed session exists");
                continue;
            };
            let s = ss.remove(i);
            let key = self.keys.values(&spec.key_kind, k);
            batch.push(spec.result(key, s.start, s.end, &self.session_accs, s.slot));
            self.session_accs.release(s.slot);
            if ss.is_empty() {
                self.keys.remove(k);
            }
        }
        if !batch.is_empty() {
            let t = self.held.as_ref().map(|h| *h.time()).unwrap_or(0);
            emitted.push((t, batch));
        }
    }

    /// Moves the held capability up to the earliest result still to be sent, or drops it.
    pub(super) fn release(&mut self, spec: &WindowSpec) {
        let next = match spec.shape {
            Shape::Session { .. } => self
                .session_ends
                .first()
                .map(|&(e, _, _)| e.max(1) as Time - 1),
            _ => self.next_window(spec).map(|e| e.max(1) as Time - 1),
        };
        match (next, self.held.as_mut()) {
            (None, _) => self.held = None,
            (Some(t), Some(h)) if *h.time() < t => h.downgrade(&t),
            _ => {}
        }
    }
}

/// Whether the frontier (its least time; `None`: empty) is at or before `t`: results at `t`
/// may still need input.
#[inline]
fn before(frontier: Option<Time>, t: Time) -> bool {
    frontier.is_some_and(|f| f <= t)
}

/// Where an activation's late, untimed and re-emitted records go.
#[derive(Default)]
pub(super) struct Outs {
    pub(super) dead: Vec<Record>,
    pub(super) late: Vec<Record>,
    pub(super) updates: Vec<Record>,
}

impl Outs {
    fn untimed(&mut self, spec: &WindowSpec, b: &Batch<'_>, r: usize, n: &mut Counts) {
        let why = "the record has no event time".to_string();
        n.late.untimed(
            &b.record(r),
            |rec| spec.dead_letter(rec, why),
            &mut self.dead,
        );
    }

    fn late(
        &mut self,
        spec: &WindowSpec,
        b: &Batch<'_>,
        r: usize,
        closed: String,
        wm: Time,
        n: &mut Counts,
    ) {
        let why = format!(
            "late: {closed} (watermark {})",
            format_rfc3339(wm as Micros)
        );
        n.late.route(
            spec.late,
            b.record(r),
            |rec| spec.dead_letter(rec, why),
            &mut self.dead,
            &mut self.late,
        );
    }
}
