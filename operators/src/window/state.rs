//! A window operator's state on one worker: panes of grouped partial aggregates (tumbling and
//! sliding windows), per-key pane queues (sliding windows), and per-key sessions, with the
//! rules that add records to them and fire the windows the frontier has passed.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use hashbrown::hash_table::{Entry, HashTable};
use timely::dataflow::operators::Capability;

use super::{closed, key_hash, Counts, LatePolicy, Shape, WindowSpec};
use crate::aggregate::{Acc, Aggregate};
use crate::schema::Record;
use crate::value::{Micros, Value};
use crate::Time;

/// Aggregate state: of one group in one pane, or merged over panes.
#[derive(Clone)]
pub(super) struct Partial {
    pub(super) accs: Box<[Acc]>,
    /// The newest ingest time among its records.
    pub(super) ingest: Micros,
    /// Late records included (with `late = "update"`).
    pub(super) late: u64,
}

impl Partial {
    pub(super) fn new(spec: &WindowSpec) -> Partial {
        Partial {
            accs: spec.aggregates.iter().map(Aggregate::init).collect(),
            ingest: Micros::MIN,
            late: 0,
        }
    }

    #[inline]
    pub(super) fn add(&mut self, spec: &WindowSpec, r: &Record, ts: Micros) {
        self.ingest = self.ingest.max(r.meta.ingest);
        let id = spec.id_field.map(|p| &r.values[p]).unwrap_or(&Value::Null);
        for (a, acc) in spec.aggregates.iter().zip(self.accs.iter_mut()) {
            a.update(acc, &r.values, ts, id);
        }
    }

    pub(super) fn merge(&mut self, spec: &WindowSpec, other: &Partial) {
        self.ingest = self.ingest.max(other.ingest);
        self.late += other.late;
        for (a, (acc, o)) in spec
            .aggregates
            .iter()
            .zip(self.accs.iter_mut().zip(other.accs.iter()))
        {
            a.merge(acc, o);
        }
    }
}

/// One group's state in one pane (or session).
pub(super) struct Group {
    pub(super) hash: u64,
    pub(super) key: Box<[Value]>,
    pub(super) part: Partial,
}

/// Finds or adds the group of `row` in `table`; returns it and whether it is new.
pub(super) fn group_of<'t>(
    spec: &WindowSpec,
    table: &'t mut HashTable<Group>,
    hash: u64,
    row: &[Value],
) -> (&'t mut Group, bool) {
    match table.entry(
        hash,
        |g| g.hash == hash && spec.same_key(&g.key, row),
        |g| g.hash,
    ) {
        Entry::Occupied(e) => (e.into_mut(), false),
        Entry::Vacant(e) => (
            e.insert(Group {
                hash,
                key: spec.group_by.iter().map(|&p| row[p].clone()).collect(),
                part: Partial::new(spec),
            })
            .into_mut(),
            true,
        ),
    }
}

/// One key's panes in a sliding window, as a two-stack queue: `back` holds the panes added
/// most recently (with their merge in `back_agg`); `front` holds older panes as suffix
/// aggregates, the oldest on top.
pub(super) struct KeyQueue {
    pub(super) hash: u64,
    pub(super) key: Box<[Value]>,
    pub(super) front: Vec<(Micros, Partial)>,
    pub(super) back: Vec<(Micros, Partial)>,
    pub(super) back_agg: Option<Partial>,
}

/// One session of one key.
pub(super) struct Session {
    pub(super) start: Micros,
    /// The last event time plus the gap.
    pub(super) end: Micros,
    pub(super) part: Partial,
}

/// The open sessions of one key, sorted by start, never overlapping. Sessions mostly close
/// at the front and open at the back, hence a deque.
pub(super) struct KeySessions {
    pub(super) hash: u64,
    pub(super) key: Box<[Value]>,
    pub(super) sessions: VecDeque<Session>,
}

/// A window operator's state on one worker.
pub(super) struct State {
    /// Tumbling and sliding: panes by their end.
    pub(super) panes: BTreeMap<Micros, Pane>,
    /// The largest window end emitted so far.
    pub(super) fired_through: Micros,
    /// Sliding windows (without late updates): per key, the panes in the current window.
    pub(super) queues: HashTable<KeyQueue>,
    /// Sessions: the open sessions of each key.
    pub(super) keys: HashTable<KeySessions>,
    /// Sessions: every open session as (end, key hash, start), in the order they close.
    pub(super) session_ends: BTreeSet<(Micros, u64, Micros)>,
    /// A capability at or below the time of every result still to be sent.
    pub(super) held: Option<Capability<Time>>,
}

/// The groups of one pane.
pub(super) struct Pane {
    pub(super) start: Micros,
    /// On-time records, which count in every window of the pane.
    pub(super) groups: HashTable<Group>,
    /// Late records applied as updates (late = "update"), by the end of the first window they
    /// count in: a late record counts only in the windows it is not too late for.
    pub(super) late: BTreeMap<Micros, HashTable<Group>>,
}

impl Pane {
    /// The partial states of the pane that count in the window ending at `end`.
    pub(super) fn parts(&self, end: Micros) -> impl Iterator<Item = &Group> {
        self.groups
            .iter()
            .chain(self.late.range(..=end).flat_map(|(_, t)| t.iter()))
    }

    /// Those of one key.
    pub(super) fn parts_of<'a>(
        &'a self,
        end: Micros,
        hash: u64,
        key: &'a [Value],
    ) -> impl Iterator<Item = &'a Group> + 'a {
        self.groups
            .find(hash, |g| g.hash == hash && *g.key == *key)
            .into_iter()
            .chain(
                self.late
                    .range(..=end)
                    .flat_map(move |(_, t)| t.find(hash, |g| g.hash == hash && *g.key == *key)),
            )
    }

    pub(super) fn len(&self) -> usize {
        self.groups.len() + self.late.values().map(HashTable::len).sum::<usize>()
    }
}

impl State {
    /// Makes sure a capability at or below `time` is held (taken from the input's).
    pub(super) fn hold(
        &mut self,
        cap: &timely::dataflow::operators::InputCapability<Time>,
        time: Time,
    ) {
        if self.held.as_ref().is_none_or(|h| *h.time() > time) {
            self.held = Some(cap.delayed(&time, 0));
        }
    }

    /// Adds a record to its pane, or says which window had closed.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn add_to_pane(
        &mut self,
        spec: &WindowSpec,
        r: &Record,
        ts: Micros,
        wm: Time,
        cap: &timely::dataflow::operators::InputCapability<Time>,
        n: &mut Counts,
        updates: &mut Vec<Record>,
    ) -> Result<(), String> {
        let (ps, pe) = spec.window_of(ts);
        let pe_t = pe.max(1) as Time;
        // The last window containing the record ends here.
        let last = ps.saturating_add(spec.size);
        let on_time = pe_t > wm;
        // The first window a late record still counts in: the first not more than
        // `allowed_lateness` behind its watermark.
        let mut first = pe;
        if on_time {
            self.hold(cap, pe_t - 1);
        } else {
            let LatePolicy::Update { allowed_lateness } = spec.late else {
                return Err(closed(spec, ps, pe));
            };
            let w = spec.pane();
            while first <= last && (first.saturating_add(allowed_lateness).max(1) as Time) <= wm {
                first += w;
            }
            if first > last {
                return Err(closed(spec, ps, pe));
            }
            if last > self.fired_through {
                // Windows still to fire will include it: hold a capability for them.
                self.hold(cap, *cap.least().unwrap_or(&0));
            }
        }
        let hash = key_hash(&r.values, &spec.group_by);
        let pane = self.panes.entry(pe).or_insert_with(|| Pane {
            start: ps,
            groups: HashTable::new(),
            late: BTreeMap::new(),
        });
        let table = if on_time {
            &mut pane.groups
        } else {
            pane.late.entry(first).or_default()
        };
        let (g, new) = group_of(spec, table, hash, &r.values);
        if new {
            n.state += 1;
        }
        g.part.add(spec, r, ts);
        if on_time {
            return Ok(());
        }
        // Late, within the allowed lateness: emit again every window it counts in that was
        // already emitted (the others will include it when they fire).
        g.part.late += 1;
        n.late.updated();
        let key: Box<[Value]> = g.key.clone();
        let mut e = first;
        while e <= last && e <= self.fired_through {
            if let Some(part) = self.merged(spec, e, hash, &key) {
                updates.push(spec.result(&key, e - spec.size, e, &part));
            }
            e += spec.pane();
        }
        Ok(())
    }

    /// One key's result for the window ending at `end`, merged over its panes.
    pub(super) fn merged(
        &self,
        spec: &WindowSpec,
        end: Micros,
        hash: u64,
        key: &[Value],
    ) -> Option<Partial> {
        let mut acc: Option<Partial> = None;
        for (_, pane) in self.panes.range((end - spec.size + 1)..=end) {
            for g in pane.parts_of(end, hash, key) {
                match &mut acc {
                    None => acc = Some(g.part.clone()),
                    Some(a) => a.merge(spec, &g.part),
                }
            }
        }
        acc
    }

    /// The end of the next window to emit: the first after the last one emitted that holds
    /// data.
    pub(super) fn next_window(&self, spec: &WindowSpec) -> Option<Micros> {
        let w = spec.pane();
        if !self.queues.is_empty() {
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
            for g in pane.groups {
                let q = match self.queues.entry(
                    g.hash,
                    |q| q.hash == g.hash && q.key == g.key,
                    |q| q.hash,
                ) {
                    Entry::Occupied(o) => o.into_mut(),
                    Entry::Vacant(v) => v
                        .insert(KeyQueue {
                            hash: g.hash,
                            key: g.key,
                            front: Vec::new(),
                            back: Vec::new(),
                            back_agg: None,
                        })
                        .into_mut(),
                };
                match &mut q.back_agg {
                    None => q.back_agg = Some(g.part.clone()),
                    Some(a) => a.merge(spec, &g.part),
                }
                q.back.push((e, g.part));
            }
        }
        let oldest = e - spec.size; // panes ending at or before this have left the window
        self.queues.retain(|q| {
            loop {
                match q.front.last() {
                    Some((pe, _)) if *pe <= oldest => {
                        q.front.pop();
                        n.state -= 1;
                    }
                    Some(_) => break,
                    None if q.back.first().is_some_and(|(pe, _)| *pe <= oldest) => {
                        // Flip: the back stack becomes the front, as suffix aggregates.
                        let mut running: Option<Partial> = None;
                        for (pe, part) in q.back.drain(..).rev() {
                            match &mut running {
                                None => running = Some(part),
                                Some(r) => r.merge(spec, &part),
                            }
                            q.front.push((pe, running.clone().expect("set above")));
                        }
                        q.back_agg = None;
                    }
                    None => break,
                }
            }
            let result = match (q.front.last(), &q.back_agg) {
                (Some((_, f)), Some(b)) => {
                    let mut r = f.clone();
                    r.merge(spec, b);
                    r
                }
                (Some((_, f)), None) => f.clone(),
                (None, Some(b)) => b.clone(),
                (None, None) => return false,
            };
            batch.push(spec.result(&q.key, e - spec.size, e, &result));
            true
        });
    }

    /// Emits every window the frontier has passed.
    pub(super) fn fire_panes(
        &mut self,
        spec: &WindowSpec,
        frontier: &timely::progress::frontier::MutableAntichain<Time>,
        emitted: &mut Vec<(Time, Vec<Record>)>,
        n: &mut Counts,
    ) {
        let w = spec.pane();
        while let Some(e) = self.next_window(spec) {
            if frontier.less_equal(&(e.max(1) as Time - 1)) {
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
                for g in p.groups.iter() {
                    batch.push(spec.result(&g.key, p.start, e, &g.part));
                }
            } else {
                let mut merged: HashTable<Group> = HashTable::new();
                for (_, p) in self.panes.range((e - spec.size + 1)..=e) {
                    for g in p.parts(e) {
                        match merged.entry(
                            g.hash,
                            |m| m.hash == g.hash && m.key == g.key,
                            |m| m.hash,
                        ) {
                            Entry::Occupied(mut o) => o.get_mut().part.merge(spec, &g.part),
                            Entry::Vacant(v) => {
                                v.insert(Group {
                                    hash: g.hash,
                                    key: g.key.clone(),
                                    part: g.part.clone(),
                                });
                            }
                        }
                    }
                }
                for g in merged.iter() {
                    batch.push(spec.result(&g.key, e - spec.size, e, &g.part));
                }
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
            if last > self.fired_through || frontier.less_equal(&(keep_until.max(1) as Time - 1)) {
                break;
            }
            n.state -= entry.get().len() as i64;
            entry.remove();
        }
    }

    /// Adds a record to its key's sessions, or says why it is late.
    pub(super) fn add_session(
        &mut self,
        spec: &WindowSpec,
        r: &Record,
        ts: Micros,
        wm: Time,
        cap: &timely::dataflow::operators::InputCapability<Time>,
        n: &mut Counts,
    ) -> Result<(), String> {
        let gap = spec.size;
        if (ts.max(0) as Time) < wm {
            return Err(format!(
                "it is behind the watermark, so the session it would join or start may have closed (gap {}µs)",
                gap
            ));
        }
        let end = ts.saturating_add(gap);
        self.hold(cap, end.max(1) as Time - 1);
        let hash = key_hash(&r.values, &spec.group_by);
        let ks = match self.keys.entry(
            hash,
            |k| k.hash == hash && spec.same_key(&k.key, &r.values),
            |k| k.hash,
        ) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e
                .insert(KeySessions {
                    hash,
                    key: spec.group_by.iter().map(|&p| r.values[p].clone()).collect(),
                    sessions: VecDeque::new(),
                })
                .into_mut(),
        };
        // Sessions overlapping [ts, ts + gap) merge with it. They do not overlap each other and
        // are sorted by start, so they form one run: those starting before ts + gap and ending
        // after ts. The first of them takes the record and absorbs the others.
        let hi = ks.sessions.partition_point(|s| s.start < end);
        let mut lo = hi;
        while lo > 0 && ks.sessions[lo - 1].end > ts {
            lo -= 1;
        }
        if lo == hi {
            let mut session = Session {
                start: ts,
                end,
                part: Partial::new(spec),
            };
            session.part.add(spec, r, ts);
            self.session_ends.insert((end, hash, ts));
            n.state += 1;
            ks.sessions.insert(lo, session);
            return Ok(());
        }
        let absorbed: Vec<Session> = ks.sessions.drain(lo + 1..hi).collect();
        let base = &mut ks.sessions[lo];
        self.session_ends.remove(&(base.end, hash, base.start));
        base.part.add(spec, r, ts);
        base.start = base.start.min(ts);
        base.end = base.end.max(end);
        for s in absorbed {
            self.session_ends.remove(&(s.end, hash, s.start));
            n.state -= 1;
            base.start = base.start.min(s.start);
            base.end = base.end.max(s.end);
            base.part.merge(spec, &s.part);
        }
        self.session_ends.insert((base.end, hash, base.start));
        Ok(())
    }

    /// Emits every session whose end the frontier has passed, in the order they end.
    pub(super) fn fire_sessions(
        &mut self,
        spec: &WindowSpec,
        frontier: &timely::progress::frontier::MutableAntichain<Time>,
        emitted: &mut Vec<(Time, Vec<Record>)>,
        n: &mut Counts,
    ) {
        let mut batch = Vec::new();
        while let Some(&(end, hash, start)) = self.session_ends.first() {
            if frontier.less_equal(&(end.max(1) as Time - 1)) {
                break;
            }
            self.session_ends.pop_first();
            n.state -= 1;
            // The key with this hash that has this session.
            let found = self.keys.find_entry(hash, |k| {
                k.hash == hash
                    && k.sessions
                        .binary_search_by_key(&start, |s| s.start)
                        .is_ok_and(|i| k.sessions[i].end == end)
            });
            let Ok(mut entry) = found else {
                debug_assert!(false, "an indexed session exists");
                continue;
            };
            let ks = entry.get_mut();
            let i = ks
                .sessions
                .binary_search_by_key(&start, |s| s.start)
                .expect("found above");
            let s = ks.sessions.remove(i).expect("found above");
            batch.push(spec.result(&ks.key, s.start, s.end, &s.part));
            if ks.sessions.is_empty() {
                entry.remove();
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
