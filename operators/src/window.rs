//! The `window` transform: tumbling event-time windows with grouped aggregates.
//!
//! A record with event time `ts` belongs to the window `[start, start + size)` where
//! `start = offset + size * floor((ts - offset) / size)`. Records are exchanged by the hash of
//! their group key, so each key's state lives on one worker. A window's result — one record per
//! group, laid out as the group fields, `window_start`, `window_end`, then the aggregates — is
//! emitted exactly once, when the operator's input frontier (timely's, which is the event-time
//! watermark) passes the window's end; then its state is freed. Windows with no records emit
//! nothing.
//!
//! A result is sent at timely time `window_end - 1µs` (like Flink's window `maxTimestamp`), so a
//! downstream window of the same or a larger aligned size receives it on time.
//!
//! **Late records.** Each record carries the watermark of its source partition when it was read
//! ([`Meta::watermark`]), and is sent at or below it. A record whose window ends at or before
//! that watermark is *late*: its window may already have been emitted. Late records, and records
//! without an event time, are counted and sent to the operator's dead-letter output with the
//! reason. Because the watermark travels with the record, lateness depends only on the order of
//! the record's own input partition, never on scheduling, batching or the number of workers.
//!
//! ```
//! use weir_operators::exchange::Routing;
//! use std::sync::{Arc, Mutex};
//! use timely::dataflow::operators::{Capture, ToStream, capture::Extract};
//! use weir_operators::aggregate::Aggregate;
//! use weir_operators::schema::{Field, Record, Schema};
//! use weir_operators::value::{FieldType, Value};
//! use weir_operators::window::{window, WindowSpec};
//!
//! let schema = Schema::new(vec![
//!     Field::new("ts", FieldType::Timestamp),
//!     Field::new("device", FieldType::String),
//!     Field::new("t", FieldType::F64),
//! ]).with_time("ts");
//! let spec = Arc::new(WindowSpec::new(
//!     "per_device", 1_000_000, 0, &schema, vec![1],
//!     vec![Aggregate::compile("avg(t)", &schema).unwrap()],
//! ));
//! let rows = [(100, "a", 1.0), (200, "a", 2.0), (300, "b", 5.0), (1_000_100, "a", 7.0)];
//! let (tx, rx) = std::sync::mpsc::channel();
//! let tx = Mutex::new(tx);
//! timely::example(move |scope| {
//!     let recs: Vec<Record> = rows.iter().map(|&(ts, d, t)| {
//!         let mut r = Record::new(vec![Value::Ts(ts), Value::Str(d.into()), Value::F64(t)]);
//!         r.meta.watermark = ts as u64;
//!         r
//!     }).collect();
//!     let streams = window(recs.to_stream(scope).container::<Vec<Record>>(), Routing::ByKey, spec, Arc::default());
//!     streams.results.capture_into(tx.lock().unwrap().clone());
//! });
//! let mut got: Vec<Vec<Value>> = rx.extract().into_iter().flat_map(|(_, v)| v).map(|r| r.values).collect();
//! got.sort();
//! assert_eq!(got, vec![
//!     vec![Value::Str("a".into()), Value::Ts(0), Value::Ts(1_000_000), Value::F64(1.5)],
//!     vec![Value::Str("a".into()), Value::Ts(1_000_000), Value::Ts(2_000_000), Value::F64(7.0)],
//!     vec![Value::Str("b".into()), Value::Ts(0), Value::Ts(1_000_000), Value::F64(5.0)],
//! ]);
//! ```

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use hashbrown::hash_table::{Entry, HashTable};
use smol_str::SmolStr;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::Capability;

use crate::aggregate::{Acc, Aggregate};
use crate::batch::give_at;
use crate::encode::{Encoder, Format};
use crate::metrics::ComponentMetrics;
use crate::schema::{Field, Meta, Record, Schema};
use crate::time::format_rfc3339;
use crate::value::{FieldType, Micros, Value};
use crate::{Records, Time};

/// The kinds of window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Fixed windows of `size`, back to back.
    Tumbling,
    /// Windows of `size` every `slide` (`size` a multiple of `slide`), overlapping.
    Sliding {
        /// The distance between window starts (µs).
        slide: Micros,
    },
    /// Per key, records closer than `gap` to each other share a window.
    Session {
        /// The inactivity gap that ends a session (µs).
        gap: Micros,
    },
}

pub use crate::late::{LateCounts, LatePolicy};

/// A compiled window.
#[derive(Debug)]
pub struct WindowSpec {
    /// The window's component id, named in dead letters.
    pub id: SmolStr,
    /// Tumbling, sliding or session.
    pub shape: Shape,
    /// Window size (µs; for sessions, the gap).
    pub size: Micros,
    /// Window offset from the epoch (µs, `0 <= offset < pane width`).
    pub offset: Micros,
    /// Input position of the event-time field.
    pub time: usize,
    /// Input position of the id field, which breaks ties in `first` / `last`.
    pub id_field: Option<usize>,
    /// Input positions of the group-by fields.
    pub group_by: Vec<usize>,
    /// The aggregates, in output order.
    pub aggregates: Vec<Aggregate>,
    /// What happens to late records.
    pub late: LatePolicy,
    /// Encodes a dead-lettered input record as JSON.
    input_encoder: Encoder,
}

impl WindowSpec {
    /// A tumbling window of `size` over `input` records, late records dead-lettered.
    /// `group_by` holds input positions.
    pub fn new(
        id: &str,
        size: Micros,
        offset: Micros,
        input: &Schema,
        group_by: Vec<usize>,
        aggregates: Vec<Aggregate>,
    ) -> WindowSpec {
        WindowSpec {
            id: SmolStr::new(id),
            shape: Shape::Tumbling,
            size: size.max(1),
            offset: offset.rem_euclid(size.max(1)),
            time: input.time.unwrap_or(0),
            id_field: input.id,
            group_by,
            aggregates,
            late: LatePolicy::DeadLetter,
            input_encoder: Encoder::new(Format::Jsonl, input),
        }
    }

    /// The same window with another shape (the offset is taken modulo the pane width).
    pub fn with_shape(mut self, shape: Shape) -> WindowSpec {
        self.shape = shape;
        if let Shape::Session { gap } = shape {
            self.size = gap.max(1);
        }
        self.offset = self.offset.rem_euclid(self.pane());
        self
    }

    /// The same window with another late policy.
    pub fn with_late(mut self, late: LatePolicy) -> WindowSpec {
        self.late = late;
        self
    }

    /// The width of a pane: the slide of a sliding window, else the size.
    #[inline]
    pub fn pane(&self) -> Micros {
        match self.shape {
            Shape::Sliding { slide } => slide.max(1),
            _ => self.size,
        }
    }

    /// The schema of the window's results, given the input schema and the aggregates' names:
    /// the group fields, `window_start`, `window_end`, the aggregates, and with
    /// `late = "update"`, `late_records` (how many late records the result includes). Its event
    /// time is `window_start`.
    pub fn output_schema(&self, input: &Schema, names: &[String]) -> Schema {
        let mut fields: Vec<Field> = self
            .group_by
            .iter()
            .map(|&p| input.fields[p].clone())
            .collect();
        fields.push(Field::new("window_start", FieldType::Timestamp));
        fields.push(Field::new("window_end", FieldType::Timestamp));
        for (a, n) in self.aggregates.iter().zip(names) {
            // An always-NULL aggregate is typed by its function's usual type.
            fields.push(Field::new(n, a.output_type().unwrap_or(FieldType::F64)));
        }
        if matches!(self.late, LatePolicy::Update { .. }) {
            fields.push(Field::new("late_records", FieldType::I64));
        }
        let mut schema = Schema::new(fields).with_time("window_start");
        schema.window_end = Some(self.group_by.len() + 1);
        schema
    }

    /// The tumbling window `[start, end)` containing event time `ts` (for a sliding window,
    /// the pane containing it).
    #[inline]
    pub fn window_of(&self, ts: Micros) -> (Micros, Micros) {
        let w = self.pane();
        let start = self.offset + (ts - self.offset).div_euclid(w) * w;
        (start, start.saturating_add(w))
    }

    fn dead_letter(&self, r: &Record, reason: String) -> Record {
        crate::decode::operator_dead_letter(&self.id, &self.input_encoder, r, reason)
    }

    fn same_key(&self, key: &[Value], row: &[Value]) -> bool {
        key.iter().zip(&self.group_by).all(|(k, &p)| *k == row[p])
    }

    fn result(&self, key: &[Value], start: Micros, end: Micros, g: &Partial) -> Record {
        let mut values = Vec::with_capacity(key.len() + 3 + g.accs.len());
        values.extend(key.iter().cloned());
        values.push(Value::Ts(start));
        values.push(Value::Ts(end));
        for (a, acc) in self.aggregates.iter().zip(g.accs.iter()) {
            values.push(a.finish(acc));
        }
        if matches!(self.late, LatePolicy::Update { .. }) {
            values.push(Value::I64(g.late as i64));
        }
        Record {
            values,
            meta: Meta {
                ingest: g.ingest,
                watermark: end.max(1) as Time - 1,
            },
        }
    }
}

/// A deterministic hash of a record's group key: the same in every worker and process.
#[inline]
pub fn key_hash(values: &[Value], group_by: &[usize]) -> u64 {
    let mut h = KeyHasher(0);
    for &p in group_by {
        values[p].hash(&mut h);
    }
    h.finish()
}

/// FxHash's word step with SplitMix64's finaliser.
#[derive(Clone, Default)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.write_u64(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            self.write_u64(u64::from_le_bytes(b) ^ ((rest.len() as u64) << 56));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.write_u64(i as u64)
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    #[inline]
    fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Aggregate state: of one group in one pane, or merged over panes.
#[derive(Clone)]
struct Partial {
    accs: Box<[Acc]>,
    /// The newest ingest time among its records.
    ingest: Micros,
    /// Late records included (with `late = "update"`).
    late: u64,
}

impl Partial {
    fn new(spec: &WindowSpec) -> Partial {
        Partial {
            accs: spec.aggregates.iter().map(Aggregate::init).collect(),
            ingest: Micros::MIN,
            late: 0,
        }
    }

    #[inline]
    fn add(&mut self, spec: &WindowSpec, r: &Record, ts: Micros) {
        self.ingest = self.ingest.max(r.meta.ingest);
        let id = spec.id_field.map(|p| &r.values[p]).unwrap_or(&Value::Null);
        for (a, acc) in spec.aggregates.iter().zip(self.accs.iter_mut()) {
            a.update(acc, &r.values, ts, id);
        }
    }

    fn merge(&mut self, spec: &WindowSpec, other: &Partial) {
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
struct Group {
    hash: u64,
    key: Box<[Value]>,
    part: Partial,
}

/// Finds or adds the group of `row` in `table`; returns it and whether it is new.
fn group_of<'t>(
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
struct KeyQueue {
    hash: u64,
    key: Box<[Value]>,
    front: Vec<(Micros, Partial)>,
    back: Vec<(Micros, Partial)>,
    back_agg: Option<Partial>,
}

/// One session of one key.
struct Session {
    start: Micros,
    /// The last event time plus the gap.
    end: Micros,
    part: Partial,
}

/// The open sessions of one key, sorted by start, never overlapping. Sessions mostly close
/// at the front and open at the back, hence a deque.
struct KeySessions {
    hash: u64,
    key: Box<[Value]>,
    sessions: VecDeque<Session>,
}

/// The reason given for a late record.
fn closed(spec: &WindowSpec, ps: Micros, pe: Micros) -> String {
    let (ws, we) = match spec.shape {
        Shape::Sliding { .. } => (pe - spec.size, pe),
        _ => (ps, pe),
    };
    format!(
        "its window [{}, {}) had closed",
        format_rfc3339(ws),
        format_rfc3339(we)
    )
}

/// A window's three outputs.
pub struct WindowStreams<'s> {
    /// The results.
    pub results: Records<'s>,
    /// Late records (with `late = "dead-letter"`, and beyond `allowed_lateness` with
    /// `"update"`) and records without an event time, with the reason.
    pub dead: Records<'s>,
    /// Late records, unchanged (with `late = "side-output"`).
    pub late: Records<'s>,
}

/// Counts of one activation, added to the metrics once.
#[derive(Default)]
struct Counts {
    input: u64,
    out: u64,
    late: LateCounts,
    state: i64,
}

/// Builds a window over `input`.
pub fn window<'s>(
    input: Records<'s>,
    routing: crate::exchange::Routing,
    spec: Arc<WindowSpec>,
    metrics: Arc<ComponentMetrics>,
) -> WindowStreams<'s> {
    let mut builder = OperatorBuilder::new(spec.id.to_string(), input.scope());
    let route = Arc::clone(&spec);
    let me = input.scope().index() as u64;
    let mut input = builder.new_input(
        input,
        Exchange::new(move |r: &Record| match routing {
            crate::exchange::Routing::ByKey => key_hash(&r.values, &route.group_by),
            crate::exchange::Routing::Partitioned => me,
        }),
    );
    let (out, results) = builder.new_output::<Vec<Record>>();
    let (dead_out, dead) = builder.new_output::<Vec<Record>>();
    let (late_out, late) = builder.new_output::<Vec<Record>>();
    let mut out = OutputBuilder::<_, CapacityContainerBuilder<Vec<Record>>>::from(out);
    let mut dead_out = OutputBuilder::<_, CapacityContainerBuilder<Vec<Record>>>::from(dead_out);
    let mut late_out = OutputBuilder::<_, CapacityContainerBuilder<Vec<Record>>>::from(late_out);
    builder.build(move |_initial_caps| {
        let spec = spec;
        let mut state = State {
            panes: BTreeMap::new(),
            fired_through: Micros::MIN,
            queues: HashTable::new(),
            keys: HashTable::new(),
            session_ends: BTreeSet::new(),
            held: None,
        };
        let mut dead_buf: Vec<Record> = Vec::new();
        let mut late_buf: Vec<Record> = Vec::new();
        let mut updates: Vec<Record> = Vec::new();
        move |frontiers| {
            let spec = &*spec;
            let mut n = Counts::default();
            input.for_each(|cap, data: &mut Vec<Record>| {
                let Some(&t) = cap.least() else {
                    // Weir's operators always send with a capability; nothing to hold.
                    return;
                };
                n.input += data.len() as u64;
                for r in data.drain(..) {
                    let Some(ts) = r.values[spec.time].as_ts() else {
                        let why = "the record has no event time".to_string();
                        n.late
                            .untimed(&r, |r| spec.dead_letter(r, why), &mut dead_buf);
                        continue;
                    };
                    let wm = r.meta.watermark.max(t);
                    let verdict = match spec.shape {
                        Shape::Session { .. } => state.add_session(spec, &r, ts, wm, &cap, &mut n),
                        _ => state.add_to_pane(spec, &r, ts, wm, &cap, &mut n, &mut updates),
                    };
                    let Err(closed) = verdict else { continue };
                    let why = format!(
                        "late: {closed} (watermark {})",
                        format_rfc3339(wm as Micros)
                    );
                    n.late.route(
                        spec.late,
                        r,
                        |r| spec.dead_letter(r, why),
                        &mut dead_buf,
                        &mut late_buf,
                    );
                }
                n.out += give_at(&mut out, &cap, t, 0, &mut updates);
                give_at(&mut dead_out, &cap, t, 1, &mut dead_buf);
                give_at(&mut late_out, &cap, t, 2, &mut late_buf);
            });
            let mut emitted = Vec::new();
            match spec.shape {
                Shape::Session { .. } => {
                    state.fire_sessions(spec, &frontiers[0], &mut emitted, &mut n)
                }
                _ => state.fire_panes(spec, &frontiers[0], &mut emitted, &mut n),
            }
            for (time, mut batch) in emitted {
                let held = state
                    .held
                    .as_ref()
                    .expect("a capability is held while results are pending");
                let c = held.delayed(&time.max(*held.time()));
                n.out += batch.len() as u64;
                out.activate().session(&c).give_container(&mut batch);
            }
            state.release(spec);
            metrics.add_in(n.input);
            metrics.add_out(n.out);
            n.late.report(&metrics);
            metrics.add_state(n.state);
        }
    });
    WindowStreams {
        results,
        dead,
        late,
    }
}

/// A window operator's state on one worker.
struct State {
    /// Tumbling and sliding: panes by their end.
    panes: BTreeMap<Micros, Pane>,
    /// The largest window end emitted so far.
    fired_through: Micros,
    /// Sliding windows (without late updates): per key, the panes in the current window.
    queues: HashTable<KeyQueue>,
    /// Sessions: the open sessions of each key.
    keys: HashTable<KeySessions>,
    /// Sessions: every open session as (end, key hash, start), in the order they close.
    session_ends: BTreeSet<(Micros, u64, Micros)>,
    /// A capability at or below the time of every result still to be sent.
    held: Option<Capability<Time>>,
}

/// The groups of one pane.
struct Pane {
    start: Micros,
    /// On-time records, which count in every window of the pane.
    groups: HashTable<Group>,
    /// Late records applied as updates (late = "update"), by the end of the first window they
    /// count in: a late record counts only in the windows it is not too late for.
    late: BTreeMap<Micros, HashTable<Group>>,
}

impl Pane {
    /// The partial states of the pane that count in the window ending at `end`.
    fn parts(&self, end: Micros) -> impl Iterator<Item = &Group> {
        self.groups
            .iter()
            .chain(self.late.range(..=end).flat_map(|(_, t)| t.iter()))
    }

    /// Those of one key.
    fn parts_of<'a>(
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

    fn len(&self) -> usize {
        self.groups.len() + self.late.values().map(HashTable::len).sum::<usize>()
    }
}

impl State {
    /// Makes sure a capability at or below `time` is held (taken from the input's).
    fn hold(&mut self, cap: &timely::dataflow::operators::InputCapability<Time>, time: Time) {
        if self.held.as_ref().is_none_or(|h| *h.time() > time) {
            self.held = Some(cap.delayed(&time, 0));
        }
    }

    /// Adds a record to its pane, or says which window had closed.
    #[allow(clippy::too_many_arguments)]
    fn add_to_pane(
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
    fn merged(&self, spec: &WindowSpec, end: Micros, hash: u64, key: &[Value]) -> Option<Partial> {
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
    fn next_window(&self, spec: &WindowSpec) -> Option<Micros> {
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
    fn slide_queues(
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
    fn fire_panes(
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
    fn add_session(
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
    fn fire_sessions(
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
    fn release(&mut self, spec: &WindowSpec) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use timely::dataflow::operators::capture::Extract;
    use timely::dataflow::operators::{Capture, ToStream};

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("id", FieldType::U64),
            Field::new("ts", FieldType::Timestamp),
            Field::new("k", FieldType::String),
            Field::new("x", FieldType::I64),
        ])
        .with_time("ts")
        .with_id("id")
    }

    struct Run {
        out: Vec<Vec<Value>>,
        dead: Vec<String>,
        late: Vec<u64>,
        metrics: crate::metrics::MetricsSnapshot,
    }

    /// Runs a window over `rows` (id, ts, watermark, key, x) on `workers` workers.
    fn run_with(
        workers: usize,
        spec: WindowSpec,
        rows: Vec<(u64, Micros, Time, &'static str, i64)>,
    ) -> Run {
        let spec = Arc::new(spec);
        let metrics: Arc<ComponentMetrics> = Arc::default();
        let (tx, rx) = std::sync::mpsc::channel();
        let (dtx, drx) = std::sync::mpsc::channel();
        let (ltx, lrx) = std::sync::mpsc::channel();
        let (tx, dtx, ltx) = (
            std::sync::Mutex::new(tx),
            std::sync::Mutex::new(dtx),
            std::sync::Mutex::new(ltx),
        );
        let m = Arc::clone(&metrics);
        timely::execute(timely::Config::process(workers), move |worker| {
            let (tx, dtx, ltx) = (
                tx.lock().unwrap().clone(),
                dtx.lock().unwrap().clone(),
                ltx.lock().unwrap().clone(),
            );
            let mine: Vec<Record> = rows
                .iter()
                .enumerate()
                .filter(|(i, _)| i % worker.peers() == worker.index())
                .map(|(_, &(id, ts, wm, k, x))| {
                    let mut r = Record::new(vec![
                        Value::U64(id),
                        Value::Ts(ts),
                        Value::Str(k.into()),
                        Value::I64(x),
                    ]);
                    r.meta.watermark = wm;
                    r
                })
                .collect();
            let (spec, m) = (Arc::clone(&spec), Arc::clone(&m));
            worker.dataflow::<Time, _, _>(move |scope| {
                let s = window(
                    mine.to_stream(scope).container::<Vec<Record>>(),
                    crate::exchange::Routing::ByKey,
                    spec,
                    m,
                );
                s.results.capture_into(tx);
                s.dead.capture_into(dtx);
                s.late.capture_into(ltx);
            });
        })
        .unwrap()
        .join();
        let mut out: Vec<Vec<Value>> = rx
            .extract()
            .into_iter()
            .flat_map(|(_, v)| v)
            .map(|r| r.values)
            .collect();
        out.sort();
        let dead: Vec<String> = drx
            .extract()
            .into_iter()
            .flat_map(|(_, v)| v)
            .map(|r| r.values[3].as_str().unwrap().to_string())
            .collect();
        let mut late: Vec<u64> = lrx
            .extract()
            .into_iter()
            .flat_map(|(_, v)| v)
            .map(|r| r.values[0].as_u64().unwrap())
            .collect();
        late.sort();
        let metrics = metrics.snapshot();
        assert_eq!(metrics.state, 0, "all state freed at the end");
        Run {
            out,
            dead,
            late,
            metrics,
        }
    }

    fn spec(size: Micros, group_by: Vec<usize>, aggs: &[&str]) -> WindowSpec {
        let s = schema();
        let aggs: Vec<Aggregate> = aggs
            .iter()
            .map(|a| Aggregate::compile(a, &s).unwrap())
            .collect();
        WindowSpec::new("w", size, 0, &s, group_by, aggs)
    }

    fn run(
        workers: usize,
        size: Micros,
        group_by: Vec<usize>,
        aggs: &[&str],
        rows: Vec<(u64, Micros, Time, &'static str, i64)>,
    ) -> (Vec<Vec<Value>>, Vec<String>, u64) {
        let r = run_with(workers, spec(size, group_by, aggs), rows);
        (r.out, r.dead, r.metrics.max_state)
    }

    #[test]
    fn tumbling_counts_with_gaps_and_a_global_group() {
        let rows = vec![
            (1, 0, 0, "a", 1),
            (2, 999, 999, "a", 2),
            (3, 1000, 1000, "b", 3),
            // 2000..3000 is empty: no result for it.
            (4, 3500, 3500, "a", 4),
            (5, -1, 0, "b", 5), // before the epoch: window [-1000, 0)
        ];
        for workers in [1, 2, 3] {
            let (out, dead, _) = run(workers, 1000, vec![], &["count(*)", "sum(x)"], rows.clone());
            use Value::*;
            assert_eq!(
                out,
                vec![
                    vec![Ts(-1000), Ts(0), I64(1), I64(5)],
                    vec![Ts(0), Ts(1000), I64(2), I64(3)],
                    vec![Ts(1000), Ts(2000), I64(1), I64(3)],
                    vec![Ts(3000), Ts(4000), I64(1), I64(4)],
                ],
                "{workers} workers"
            );
            assert!(dead.is_empty());
        }
    }

    #[test]
    fn late_records_are_dead_lettered_with_the_reason() {
        // Record 3 was read after its partition's watermark reached 2500: window [0, 1000) had closed.
        let rows = vec![
            (1, 10, 10, "a", 1),
            (2, 2500, 2500, "a", 2),
            (3, 20, 2500, "a", 3),
        ];
        let (out, dead, _) = run(1, 1000, vec![2], &["sum(x)"], rows);
        use Value::*;
        assert_eq!(
            out,
            vec![
                vec![Str("a".into()), Ts(0), Ts(1000), I64(1)],
                vec![Str("a".into()), Ts(2000), Ts(3000), I64(2)],
            ]
        );
        assert_eq!(dead.len(), 1);
        assert!(
            dead[0].starts_with(
                "late: its window [1970-01-01T00:00:00.000Z, 1970-01-01T00:00:00.001Z) had closed"
            ),
            "{}",
            dead[0]
        );
    }

    #[test]
    fn first_and_last_are_by_event_time_on_any_number_of_workers() {
        let rows: Vec<_> = (0..200u64)
            .map(|i| {
                (
                    i,
                    (i as i64 * 7919) % 1000,
                    0,
                    if i % 3 == 0 { "a" } else { "b" },
                    i as i64,
                )
            })
            .collect();
        let one = run(
            1,
            500,
            vec![2],
            &["first(x)", "last(x)", "count(distinct x)"],
            rows.clone(),
        )
        .0;
        for w in [2, 4] {
            assert_eq!(
                one,
                run(
                    w,
                    500,
                    vec![2],
                    &["first(x)", "last(x)", "count(distinct x)"],
                    rows.clone()
                )
                .0
            );
        }
    }

    #[test]
    fn sliding_windows_combine_panes() {
        use Value::*;
        // size 30, slide 10: windows [-20,10), [-10,20), [0,30), [10,40), [20,50), [30,60) ...
        let rows = vec![
            (1, 5, 5, "a", 1),
            (2, 15, 15, "a", 2),
            (3, 25, 25, "a", 4),
            (4, 41, 41, "a", 8),
        ];
        for workers in [1, 2] {
            let r = run_with(
                workers,
                spec(30, vec![], &["sum(x)", "count(*)"]).with_shape(Shape::Sliding { slide: 10 }),
                rows.clone(),
            );
            assert_eq!(
                r.out,
                vec![
                    vec![Ts(-20), Ts(10), I64(1), I64(1)],
                    vec![Ts(-10), Ts(20), I64(3), I64(2)],
                    vec![Ts(0), Ts(30), I64(7), I64(3)],
                    vec![Ts(10), Ts(40), I64(6), I64(2)],
                    vec![Ts(20), Ts(50), I64(12), I64(2)],
                    vec![Ts(30), Ts(60), I64(8), I64(1)],
                    vec![Ts(40), Ts(70), I64(8), I64(1)],
                ]
            );
        }
    }

    #[test]
    fn both_ways_of_combining_panes_agree() {
        // Without late updates, sliding windows combine panes with two stacks per key; with
        // them, by merging every pane of the window. Same results on in-order input.
        let rows: Vec<_> = (0..3000u64)
            .map(|i| {
                let ts = (i as i64 * 37) % 20_000 + (i as i64 / 7) * 3;
                (
                    i,
                    ts,
                    0,
                    ["a", "b", "c", "d"][(i % 4) as usize],
                    (i % 11) as i64 - 5,
                )
            })
            .collect();
        let aggs = [
            "sum(x)",
            "count(*)",
            "min(x)",
            "max(x)",
            "first(x)",
            "last(x)",
            "count(distinct x)",
        ];
        let sliding = Shape::Sliding { slide: 250 };
        let stacks = run_with(
            2,
            spec(2000, vec![2], &aggs).with_shape(sliding),
            rows.clone(),
        );
        let merged = run_with(
            2,
            spec(2000, vec![2], &aggs)
                .with_shape(sliding)
                .with_late(LatePolicy::Update {
                    allowed_lateness: 0,
                }),
            rows,
        );
        let without_count: Vec<Vec<Value>> = merged
            .out
            .into_iter()
            .map(|mut v| {
                assert_eq!(v.pop(), Some(Value::I64(0)), "no late records");
                v
            })
            .collect();
        assert!(stacks.out.len() > 100);
        assert_eq!(stacks.out, without_count);
    }

    #[test]
    fn sessions_merge_and_close_after_the_gap() {
        use Value::*;
        // gap 10 per key: a: 0,5 | 30,38,45 ; b: 3
        let rows = vec![
            (1, 0, 0, "a", 1),
            (2, 5, 5, "a", 2),
            (3, 3, 3, "b", 4),
            (4, 38, 38, "a", 8),
            (5, 30, 38, "a", 16), // out of order, on time: 30 >= watermark? no: behind it
            (6, 45, 45, "a", 32),
        ];
        let r = run_with(
            1,
            spec(0, vec![2], &["sum(x)", "count(*)"]).with_shape(Shape::Session { gap: 10 }),
            rows,
        );
        assert_eq!(
            r.out,
            vec![
                vec![Str("a".into()), Ts(0), Ts(15), I64(3), I64(2)],
                vec![Str("a".into()), Ts(38), Ts(55), I64(40), I64(2)],
                vec![Str("b".into()), Ts(3), Ts(13), I64(4), I64(1)],
            ]
        );
        assert_eq!(
            r.metrics.late, 1,
            "record 5 was behind its partition's watermark"
        );
        assert_eq!(r.dead.len(), 1);
    }

    #[test]
    fn late_policies_account_for_every_late_record() {
        // Records 3 and 4 arrive after their partition's watermark passed 2000.
        let rows = vec![
            (1, 10, 10, "a", 1),
            (2, 2500, 2500, "a", 2),
            (3, 20, 2500, "a", 4),
            (4, 900, 2500, "a", 8),
        ];
        let base = || spec(1000, vec![2], &["sum(x)"]);
        let drop = run_with(1, base().with_late(LatePolicy::Drop), rows.clone());
        assert_eq!((drop.metrics.late, drop.metrics.late_dropped), (2, 2));
        assert!(drop.dead.is_empty() && drop.late.is_empty());
        let side = run_with(2, base().with_late(LatePolicy::SideOutput), rows.clone());
        assert_eq!(side.late, vec![3, 4]);
        assert_eq!(side.metrics.late_side_output, 2);
        assert_eq!(side.out, drop.out);
        // Update, allowing 2000: window [0,1000) is emitted again with each late record that
        // arrives after it fired; its last version (the most late_records) has both. Here all
        // records arrive before it fires, so it is emitted once, already complete.
        let up = run_with(
            1,
            base().with_late(LatePolicy::Update {
                allowed_lateness: 2000,
            }),
            rows.clone(),
        );
        use Value::*;
        let a = || Str("a".into());
        assert!(
            up.out
                .contains(&vec![a(), Ts(0), Ts(1000), I64(13), I64(2)]),
            "{:?}",
            up.out
        );
        assert!(up
            .out
            .contains(&vec![a(), Ts(2000), Ts(3000), I64(2), I64(0)]));
        assert_eq!((up.metrics.late, up.metrics.late_updated), (2, 2));
        let too_late = run_with(
            1,
            base().with_late(LatePolicy::Update {
                allowed_lateness: 1000,
            }),
            rows,
        );
        assert_eq!(
            (too_late.metrics.late, too_late.metrics.late_updated),
            (2, 0)
        );
        assert_eq!(too_late.dead.len(), 2);
    }

    #[test]
    fn window_of_handles_offsets_and_negative_times() {
        let s = schema();
        let w = WindowSpec::new("w", 10, 3, &s, vec![], vec![]);
        assert_eq!(w.window_of(3), (3, 13));
        assert_eq!(w.window_of(2), (-7, 3));
        assert_eq!(w.window_of(-8), (-17, -7));
    }
}
