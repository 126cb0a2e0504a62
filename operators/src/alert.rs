//! The `alert` transform: per key, rules over event time that fire and resolve alerts, in the
//! spirit of Prometheus alerting rules and Flink CEP.
//!
//! A key's records are taken in event-time order (then by their values), once the watermark
//! has passed them, so an alert's history depends only on the records, never on how they were
//! batched, scheduled or spread over workers: a replay gives the live run's alerts. Three kinds
//! of [`Rule`]:
//!
//! - **condition**: fires when a condition has held on every record of the key for `for`
//!   (at the condition's first record plus `for`, once the watermark passes it, or at once with
//!   `for = 0`); resolves when `clear` has held for `clear_for` (without `clear`: when the
//!   condition is false), hysteresis as Prometheus' `for` and `keep_firing_for` give;
//! - **absence**: fires when a key has had no record for `absent_for` of event time (a device
//!   stopped reporting), at its last record's time plus `absent_for`; resolves at its next
//!   record;
//! - **count**: fires when at least `count` records (matching an optional condition) fall
//!   within `within` of each other; resolves when the count in the trailing `within` drops
//!   below it.
//!
//! A key's alert fires once per episode (no duplicates), and not again until `cooldown` after
//! it resolved. Each `firing` and `resolved` record holds the key, the alert's name, the state,
//! the severity, when the episode started and when it fired or resolved (its event time), and
//! labels computed from the key's latest record. At the end of the input, event time is over:
//! timers still pending fire (as Flink's do), so a pending `for` fires and every key's absence
//! does. Late records (behind their partition's watermark) go by the late policy.
//!
//! ```
//! use weir_operators::alert::{AlertSpec, Rule};
//! use weir_operators::expr::Expr;
//! use weir_operators::schema::{Field, Record, Schema};
//! use weir_operators::value::{FieldType, Value};
//!
//! let input = Schema::new(vec![
//!     Field::new("device", FieldType::String),
//!     Field::new("ts", FieldType::Timestamp),
//!     Field::new("t", FieldType::F64),
//! ])
//! .with_time("ts");
//! let hot = Expr::compile("t > 80", &input).unwrap();
//! let rule = Rule::Condition { condition: hot, for_: 30_000_000, clear: None, clear_for: 0 };
//! let spec = AlertSpec::new("overheat", &input, vec![0], rule, 0, "critical", vec![]);
//! let r = |ts: i64, t: f64| Record::new(vec![Value::Str("d1".into()), Value::Ts(ts * 1_000_000), Value::F64(t)]);
//! // Hot from 0 s to 40 s, then cool at 50 s: fires at 30 s, resolves at 50 s.
//! let out = spec.run(vec![r(0, 85.0), r(20, 90.0), r(40, 86.0), r(50, 70.0)]);
//! let states: Vec<(String, i64)> = out
//!     .iter()
//!     .map(|o| (o.values[2].to_string(), o.values[5].as_ts().unwrap() / 1_000_000))
//!     .collect();
//! assert_eq!(states, [("firing".to_string(), 30), ("resolved".to_string(), 50)]);
//! ```

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use smol_str::SmolStr;

use crate::encode::{Encoder, Format};
use crate::expr::Expr;
use crate::late::{LateCounts, LatePolicy};
use crate::metrics::ComponentMetrics;
use crate::ordered::{ordered_operator, run_all, InOrder, Keys, OrderedStreams, Waiting};
use crate::schema::{Field, Meta, Record, Schema};
use crate::value::{FieldType, Micros, Value};
use crate::{Batches, Time};

/// What makes an alert fire and resolve.
#[derive(Clone, Debug)]
pub enum Rule {
    /// Fires when `condition` has held for `for_` µs; resolves when `clear` (or, without it,
    /// the condition's falsehood) has held for `clear_for` µs.
    Condition {
        /// The firing condition.
        condition: Expr,
        /// How long it must hold.
        for_: Micros,
        /// The resolving condition (default: NOT condition).
        clear: Option<Expr>,
        /// How long that must hold.
        clear_for: Micros,
    },
    /// Fires when a key has had no record for `after` µs of event time.
    Absent {
        /// The silence that fires.
        after: Micros,
    },
    /// Fires when at least `count` records matching `condition` fall within `within` µs.
    Count {
        /// Which records count (default: all).
        condition: Option<Expr>,
        /// How many.
        count: u64,
        /// Within how long.
        within: Micros,
    },
}

/// A compiled alert.
#[derive(Clone, Debug)]
pub struct AlertSpec {
    /// The component id: the alert's name in its records.
    pub id: SmolStr,
    /// Input positions of the key fields.
    pub key: Vec<usize>,
    /// The rule.
    pub rule: Rule,
    /// After a resolved alert, how long before the key's alert may fire again (µs).
    pub cooldown: Micros,
    /// The severity written in every record.
    pub severity: SmolStr,
    /// Label fields computed from the key's latest record.
    pub labels: Vec<Expr>,
    /// What happens to late records.
    pub late: LatePolicy,
    time: usize,
    input_encoder: Encoder,
}

/// The fixed fields of an alert record after the key: its name, state, severity, start and time.
pub const FIXED: [(&str, FieldType); 5] = [
    ("alert", FieldType::String),
    ("state", FieldType::String),
    ("severity", FieldType::String),
    ("started_at", FieldType::Timestamp),
    ("at", FieldType::Timestamp),
];

impl AlertSpec {
    /// An alert over `input` (which must have an event time), keyed by the fields at `key`,
    /// with no late records expected (see [`AlertSpec::with_late`]).
    ///
    /// # Panics
    /// If `input` has no event-time field (the plan checks this first).
    pub fn new(
        id: &str,
        input: &Schema,
        key: Vec<usize>,
        rule: Rule,
        cooldown: Micros,
        severity: &str,
        labels: Vec<Expr>,
    ) -> AlertSpec {
        AlertSpec {
            id: SmolStr::new(id),
            key,
            rule,
            cooldown,
            severity: SmolStr::new(severity),
            labels,
            late: LatePolicy::DeadLetter,
            time: input.time.expect("an alert's input has an event time"),
            input_encoder: Encoder::new(Format::Jsonl, input),
        }
    }

    /// Sets the late policy.
    pub fn with_late(mut self, late: LatePolicy) -> AlertSpec {
        self.late = late;
        self
    }

    /// The schema of its records: the key fields, [`FIXED`], then the labels named
    /// `label_names`. Their event time is `at`.
    pub fn output_schema(&self, input: &Schema, label_names: &[String]) -> Schema {
        let mut fields: Vec<Field> = self.key.iter().map(|&k| input.fields[k].clone()).collect();
        fields.extend(FIXED.iter().map(|(n, t)| Field::new(n, *t)));
        for (name, e) in label_names.iter().zip(&self.labels) {
            fields.push(Field::new(
                name,
                e.output_type().unwrap_or(FieldType::String),
            ));
        }
        let mut s = Schema::new(fields);
        s.time = Some(self.key.len() + 4);
        s
    }

    /// The alert records of `records`, all at once (event time then ends): for tests and
    /// examples; the operator is [`alert_batches`].
    pub fn run(&self, records: Vec<Record>) -> Vec<Record> {
        let work = Worker {
            spec: Arc::new(self.clone()),
            state: State::default(),
        };
        run_all(work, records)
    }

    fn dead_letter(&self, r: &Record, reason: String) -> Record {
        crate::decode::operator_dead_letter(&self.id, &self.input_encoder, r, reason)
    }
}

/// Where a key's alert stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
enum Phase {
    /// Quiet.
    #[default]
    Idle,
    /// The condition holds; firing when the timer comes.
    Pending,
    /// Firing.
    Firing,
    /// Firing, and clearing when the timer comes.
    Clearing,
}

/// One key's alert.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Key {
    values: Vec<Value>,
    phase: Phase,
    /// When the current phase's condition began.
    since: Micros,
    /// When the firing episode started.
    started: Micros,
    /// Whether this episode fires within the cooldown: it makes no records.
    silent: bool,
    /// When an alert of this key last resolved (for the cooldown).
    resolved: Option<Micros>,
    /// The key's latest record (labels and latency come from it).
    last: Option<Record>,
    /// Counted records' times (count rule).
    times: VecDeque<Micros>,
    /// The key's timer, if set.
    timer: Option<Micros>,
}

/// A worker's alerts: its keys, the records waiting for the watermark, and the timers.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct State {
    keys: Vec<Key>,
    numbers: Keys,
    /// Records not yet processed, in the order they will be.
    waiting: Waiting,
    timers: BTreeSet<(Micros, usize)>,
}

impl State {
    /// Takes one record: waiting for the watermark, or late, or without a time.
    fn add(
        &mut self,
        spec: &AlertSpec,
        r: Record,
        dead: &mut Vec<Record>,
        late: &mut Vec<Record>,
        n: &mut LateCounts,
    ) {
        let Some(ts) = r.values[spec.time].as_ts() else {
            n.untimed(
                &r,
                |r| spec.dead_letter(r, "it has no event time".into()),
                dead,
            );
            return;
        };
        if ts < r.meta.watermark as Micros {
            n.route(
                spec.late,
                r,
                |r| spec.dead_letter(r, format!("it is behind the watermark ({} µs), so the key's alert may have moved past it", r.meta.watermark)),
                dead,
                late,
            );
            return;
        }
        let key: Vec<Value> = spec.key.iter().map(|&k| r.values[k].clone()).collect();
        let (k, new) = self.numbers.number(key.clone());
        if new {
            self.keys.push(Key {
                values: key,
                ..Key::default()
            });
        }
        self.waiting.insert(ts, k, r);
    }

    /// The earliest time something is still to happen at: a waiting record or a timer.
    fn next(&self) -> Option<Micros> {
        let r = self.waiting.first_time();
        let t = self.timers.first().map(|&(d, _)| d);
        match (r, t) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Processes the records before `frontier` and the timers at or before it (everything,
    /// with `None`: the input has ended), in event-time order, a timer before a record of its
    /// own time; `emit` gets each alert record with its time.
    fn advance(
        &mut self,
        spec: &AlertSpec,
        frontier: Option<Micros>,
        emit: &mut impl FnMut(Micros, Record),
    ) {
        loop {
            let rec = self
                .waiting
                .first_time()
                .filter(|&t| frontier.is_none_or(|f| t < f));
            let timer = self
                .timers
                .first()
                .copied()
                .filter(|&(d, _)| frontier.is_none_or(|f| d <= f));
            match (rec, timer) {
                (_, Some((d, k))) if rec.is_none_or(|t| d <= t) => {
                    self.timers.remove(&(d, k));
                    self.keys[k].timer = None;
                    self.on_timer(spec, k, d, emit);
                }
                (Some(_), _) => {
                    let (ts, k, r) = self.waiting.pop_before(frontier).expect("seen");
                    self.on_record(spec, k, ts, r, emit);
                }
                _ => break,
            }
        }
    }

    fn set_timer(&mut self, k: usize, at: Micros) {
        if let Some(old) = self.keys[k].timer.replace(at) {
            self.timers.remove(&(old, k));
        }
        self.timers.insert((at, k));
    }

    fn clear_timer(&mut self, k: usize) {
        if let Some(old) = self.keys[k].timer.take() {
            self.timers.remove(&(old, k));
        }
    }

    fn on_record(
        &mut self,
        spec: &AlertSpec,
        k: usize,
        ts: Micros,
        r: Record,
        emit: &mut impl FnMut(Micros, Record),
    ) {
        let holds = |e: &Expr, r: &Record| e.eval_bool(&r.values) == Some(true);
        match &spec.rule {
            Rule::Condition {
                condition,
                for_,
                clear,
                clear_for,
            } => {
                let c = holds(condition, &r);
                let clears = match clear {
                    Some(e) => holds(e, &r),
                    None => !c,
                };
                self.keys[k].last = Some(r);
                match self.keys[k].phase {
                    Phase::Idle if c => {
                        self.keys[k].since = ts;
                        if *for_ == 0 {
                            self.fire(spec, k, ts, ts, emit);
                        } else {
                            self.keys[k].phase = Phase::Pending;
                            self.set_timer(k, ts.saturating_add(*for_));
                        }
                    }
                    Phase::Pending if !c => {
                        self.keys[k].phase = Phase::Idle;
                        self.clear_timer(k);
                    }
                    Phase::Firing if clears => {
                        if *clear_for == 0 {
                            self.resolve(spec, k, ts, emit);
                        } else {
                            self.keys[k].phase = Phase::Clearing;
                            self.set_timer(k, ts.saturating_add(*clear_for));
                        }
                    }
                    Phase::Clearing if !clears => {
                        self.keys[k].phase = Phase::Firing;
                        self.clear_timer(k);
                    }
                    _ => {}
                }
            }
            Rule::Absent { after } => {
                self.keys[k].last = Some(r);
                if self.keys[k].phase == Phase::Firing {
                    self.resolve(spec, k, ts, emit);
                }
                self.set_timer(k, ts.saturating_add(*after));
            }
            Rule::Count {
                condition,
                count,
                within,
            } => {
                let counts = condition.as_ref().is_none_or(|e| holds(e, &r));
                self.keys[k].last = Some(r);
                if !counts {
                    return;
                }
                let key = &mut self.keys[k];
                key.times.push_back(ts);
                while key
                    .times
                    .front()
                    .is_some_and(|&t| t <= ts.saturating_sub(*within))
                {
                    key.times.pop_front();
                }
                if key.phase != Phase::Firing && key.times.len() as u64 >= *count {
                    let started = key.times.front().copied().unwrap_or(ts);
                    self.fire(spec, k, started, ts, emit);
                }
                if self.keys[k].phase == Phase::Firing {
                    let front = self.keys[k].times.front().copied().unwrap_or(ts);
                    self.set_timer(k, front.saturating_add(*within));
                }
            }
        }
    }

    fn on_timer(
        &mut self,
        spec: &AlertSpec,
        k: usize,
        at: Micros,
        emit: &mut impl FnMut(Micros, Record),
    ) {
        match &spec.rule {
            Rule::Condition { .. } => match self.keys[k].phase {
                Phase::Pending => {
                    let since = self.keys[k].since;
                    self.fire(spec, k, since, at, emit);
                }
                Phase::Clearing => self.resolve(spec, k, at, emit),
                _ => {}
            },
            Rule::Absent { after } => {
                let last = at.saturating_sub(*after);
                self.fire(spec, k, last, at, emit);
            }
            Rule::Count { count, within, .. } => {
                let key = &mut self.keys[k];
                while key
                    .times
                    .front()
                    .is_some_and(|&t| t.saturating_add(*within) <= at)
                {
                    key.times.pop_front();
                }
                if (key.times.len() as u64) < *count {
                    self.resolve(spec, k, at, emit);
                } else {
                    let front = key.times.front().copied().unwrap_or(at);
                    self.set_timer(k, front.saturating_add(*within));
                }
            }
        }
    }

    fn fire(
        &mut self,
        spec: &AlertSpec,
        k: usize,
        started: Micros,
        at: Micros,
        emit: &mut impl FnMut(Micros, Record),
    ) {
        let key = &mut self.keys[k];
        key.phase = Phase::Firing;
        key.started = started;
        key.silent = key
            .resolved
            .is_some_and(|r| at < r.saturating_add(spec.cooldown));
        if !key.silent {
            emit(at, record(spec, key, "firing", at));
        }
    }

    fn resolve(
        &mut self,
        spec: &AlertSpec,
        k: usize,
        at: Micros,
        emit: &mut impl FnMut(Micros, Record),
    ) {
        let key = &mut self.keys[k];
        key.phase = Phase::Idle;
        if !key.silent {
            key.resolved = Some(at);
            emit(at, record(spec, key, "resolved", at));
        }
        key.silent = false;
    }

    /// Entries of state: keys and waiting records.
    fn entries(&self) -> u64 {
        (self.keys.len() + self.waiting.len()) as u64
    }
}

/// An alert record of `key` in `state` at `at`.
fn record(spec: &AlertSpec, key: &Key, state: &str, at: Micros) -> Record {
    let mut values = key.values.clone();
    values.push(Value::Str(spec.id.clone()));
    values.push(Value::Str(SmolStr::new(state)));
    values.push(Value::Str(spec.severity.clone()));
    values.push(Value::Ts(key.started));
    values.push(Value::Ts(at));
    for l in &spec.labels {
        values.push(key.last.as_ref().map_or(Value::Null, |r| l.eval(&r.values)));
    }
    let mut r = Record::new(values);
    r.meta = Meta {
        ingest: key.last.as_ref().map_or(0, |l| l.meta.ingest),
        watermark: at.max(0) as Time,
    };
    r
}

/// Builds an alert over batches already on the worker that holds their keys (see
/// [`ordered_operator`] for `checkpoint`).
pub fn alert_batches<'s>(
    input: Batches<'s>,
    spec: Arc<AlertSpec>,
    metrics: Arc<ComponentMetrics>,
    checkpoint: Option<crate::checkpoint::Checkpointing<'s>>,
    ctl: crate::control::RunControl,
) -> OrderedStreams<'s> {
    let name = spec.id.to_string();
    ordered_operator(
        input,
        &name,
        metrics,
        Worker {
            spec,
            state: State::default(),
        },
        checkpoint,
        ctl,
    )
}

/// A worker's alerts, as an [`InOrder`] operator's work.
struct Worker {
    spec: Arc<AlertSpec>,
    state: State,
}

impl InOrder for Worker {
    fn add(
        &mut self,
        r: Record,
        dead: &mut Vec<Record>,
        late: &mut Vec<Record>,
        n: &mut LateCounts,
    ) {
        self.state.add(&self.spec, r, dead, late, n);
    }

    fn next(&self) -> Option<Micros> {
        self.state.next()
    }

    fn advance(&mut self, frontier: Option<Micros>, emit: &mut dyn FnMut(Micros, Record)) {
        self.state
            .advance(&self.spec, frontier, &mut |at, r| emit(at, r));
    }

    fn entries(&self) -> u64 {
        self.state.entries()
    }

    fn snapshot(&self) -> Vec<u8> {
        postcard::to_stdvec(&self.state).expect("alert state serializes")
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.state = postcard::from_bytes(bytes).map_err(|e| e.to_string())?;
        Ok(())
    }
}
