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

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use smol_str::SmolStr;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;

use crate::aggregate::{Aggregate, Output};
use crate::batch::give_at;
use crate::checkpoint::Checkpointing;
use crate::chunk::{arrow_schema, Chunk};
use crate::encode::{Encoder, Format};
use crate::metrics::ComponentMetrics;
use crate::schema::{Field, Meta, Record, Schema};
use crate::time::format_rfc3339;
use crate::value::{FieldType, Micros, Value};
use crate::{Batches, Records, Time};

mod groups;
pub(crate) mod key;
mod snapshot;
mod state;
#[cfg(test)]
mod tests;

pub(crate) use groups::{to_rows, Groups, KeyKind, KeyView};
pub use key::key_hash;
pub(crate) use key::{mix64, KeyHasher};
use state::{Accs, Batch, Outs, State};

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
    /// The aggregates, in output order (several for a field that is an expression over
    /// aggregates).
    pub aggregates: Vec<Aggregate>,
    /// The result fields after the group fields and window bounds: aggregates, or
    /// expressions over them.
    pub outputs: Vec<Output>,
    /// What happens to late records.
    pub late: LatePolicy,
    /// Encodes a dead-lettered input record as JSON.
    input_encoder: Encoder,
    /// The input's Arrow layout.
    input_schema: SchemaRef,
    /// How group keys are stored.
    key_kind: KeyKind,
    /// The most entries of state (groups per pane, queued panes, sessions) the window may
    /// hold in one process before it fails the run.
    pub max_state: Option<u64>,
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
        let key_types: Vec<FieldType> = group_by.iter().map(|&p| input.fields[p].ty).collect();
        WindowSpec {
            id: SmolStr::new(id),
            input_schema: arrow_schema(input),
            key_kind: KeyKind::new(&key_types),
            max_state: None,
            shape: Shape::Tumbling,
            size: size.max(1),
            offset: offset.rem_euclid(size.max(1)),
            time: match (input.time, input.processing_time) {
                (None, true) => crate::keyed::PROCESSING_TIME,
                (t, _) => t.unwrap_or(0),
            },
            id_field: input.id,
            group_by,
            outputs: (0..aggregates.len()).map(Output::Agg).collect(),
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

    /// Whether the window runs on processing time: its input has no event time (a source with
    /// `event_time = "ingest"`), so each record counts at the time it entered Weir.
    pub fn processing_time(&self) -> bool {
        self.time == crate::keyed::PROCESSING_TIME
    }

    /// The input fields the window reads to compute its results: the key, the event time, the
    /// id (for `first` / `last`) and the aggregates' arguments and filters.
    pub fn fields_read(&self) -> Vec<usize> {
        let mut f = self.group_by.clone();
        if self.time != crate::keyed::PROCESSING_TIME {
            f.push(self.time);
        }
        if self.aggregates.iter().any(|a| {
            matches!(
                a.func,
                crate::aggregate::Func::First | crate::aggregate::Func::Last
            )
        }) {
            f.extend(self.id_field);
        }
        for a in &self.aggregates {
            f.extend(a.fields());
        }
        f.sort_unstable();
        f.dedup();
        f
    }

    /// The same window with these result fields (over its aggregates).
    pub fn with_outputs(mut self, outputs: Vec<Output>) -> WindowSpec {
        self.outputs = outputs;
        self
    }

    /// The same window with a limit on its state (entries in one process).
    pub fn with_max_state(mut self, max_state: Option<u64>) -> WindowSpec {
        self.max_state = max_state;
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
        for (o, n) in self.outputs.iter().zip(names) {
            // An always-NULL aggregate is typed by its function's usual type.
            fields.push(Field::new(
                n,
                o.output_type(&self.aggregates).unwrap_or(FieldType::F64),
            ));
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

    fn result(
        &self,
        mut values: Vec<Value>,
        start: Micros,
        end: Micros,
        accs: &Accs,
        slot: u32,
    ) -> Record {
        values.reserve(3 + self.outputs.len());
        values.push(Value::Ts(start));
        values.push(Value::Ts(end));
        let fixed = values.len();
        let agg = |k: usize| self.aggregates[k].finish_at(&accs.states[k], slot as usize);
        for o in &self.outputs {
            let v = match o {
                Output::Agg(k) => agg(*k),
                Output::Expr { aggs, expr } => {
                    let mut row = values[..fixed].to_vec();
                    row.extend(aggs.clone().map(agg));
                    expr.eval(&row)
                }
            };
            values.push(v);
        }
        if matches!(self.late, LatePolicy::Update { .. }) {
            values.push(Value::I64(accs.late_of(slot) as i64));
        }
        Record {
            values,
            meta: Meta {
                ingest: accs.ingest.get(slot as usize),
                watermark: end.max(1) as Time - 1,
            },
        }
    }
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

/// Builds a window over `input` rows: packs them into chunks, exchanges them by key (with
/// [`Routing::ByKey`](crate::exchange::Routing::ByKey)) and runs [`window_batches`].
pub fn window<'s>(
    input: Records<'s>,
    routing: crate::exchange::Routing,
    spec: Arc<WindowSpec>,
    metrics: Arc<ComponentMetrics>,
) -> WindowStreams<'s> {
    let chunks = crate::convert::to_chunks(input, Arc::clone(&spec.input_schema));
    let chunks = match routing {
        crate::exchange::Routing::ByKey => {
            crate::exchange::exchange_by_key(chunks, spec.group_by.clone())
        }
        crate::exchange::Routing::Partitioned => chunks,
    };
    window_batches(
        chunks,
        spec,
        metrics,
        crate::control::RunControl::default(),
        None,
    )
}

/// Builds a window over batches already on the worker that holds their keys' state. With
/// `checkpoint`, the window reads the control stream through a
/// [`Barrier`](crate::checkpoint::Barrier), writes its state into each checkpoint and starts
/// from the state of the checkpoint restored.
pub fn window_batches<'s>(
    input: Batches<'s>,
    spec: Arc<WindowSpec>,
    metrics: Arc<ComponentMetrics>,
    ctl: crate::control::RunControl,
    checkpoint: Option<Checkpointing<'s>>,
) -> WindowStreams<'s> {
    use crate::checkpoint::{Barrier, Decision};
    use timely::dataflow::operators::Capability;
    let worker = input.scope().index();
    let mut builder = OperatorBuilder::new(spec.id.to_string(), input.scope());
    let mut input = builder.new_input(input, Pipeline);
    let (out, results) = builder.new_output::<Vec<Record>>();
    let (dead_out, dead) = builder.new_output::<Vec<Record>>();
    let (late_out, late) = builder.new_output::<Vec<Record>>();
    let (mut control, ck) = match checkpoint {
        Some((c, ck)) => {
            ck.register(worker);
            (Some(builder.new_input(c, Pipeline)), Some(ck))
        }
        None => (None, None),
    };
    let mut out = OutputBuilder::<_, CapacityContainerBuilder<Vec<Record>>>::from(out);
    let mut dead_out = OutputBuilder::<_, CapacityContainerBuilder<Vec<Record>>>::from(dead_out);
    let mut late_out = OutputBuilder::<_, CapacityContainerBuilder<Vec<Record>>>::from(late_out);
    builder.build(move |mut initial_caps| {
        let spec = spec;
        let restored = ck
            .as_ref()
            .and_then(|ck| ck.restored(&spec.id, worker))
            .map(|bytes| snapshot::restore(&spec, bytes));
        let mut state = match restored {
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                ctl.fail(format!(
                    "window `{}`: its state in the checkpoint cannot be read: {e}; run with --from-scratch to start over",
                    spec.id
                ));
                State::new(&spec)
            }
            None => State::new(&spec),
        };
        // The restored state's results are sent from the first capability.
        let mut first: Option<Capability<Time>> = initial_caps.drain(..).next();
        let mut outs = Outs::default();
        let mut gauge = crate::metrics::StateGauge::default();
        let mut barrier: Barrier<([Capability<Time>; 3], Chunk)> = Barrier::default();
        move |frontiers| {
            let spec = &*spec;
            let mut n = Counts::default();
            if let Some(c) = first.take() {
                let entries = state.entries();
                if entries > 0 {
                    state.held = Some(c);
                    state.release(spec);
                    n.state += entries as i64;
                }
            }
            let add = |state: &mut State, cap: &dyn crate::batch::Delay, t: Time, chunk: &Chunk, n: &mut Counts, outs: &mut Outs| {
                n.input += chunk.len() as u64;
                let b = Batch::new(spec, chunk);
                match spec.shape {
                    Shape::Session { .. } => state.add_to_sessions(spec, &b, cap, t, n, outs),
                    _ => state.add_to_panes(spec, &b, cap, t, n, outs),
                }
            };
            if let Some(control) = control.as_mut() {
                control.for_each(|_, data: &mut Vec<Decision>| {
                    for d in data.drain(..) {
                        barrier.decide(d.at, d.seq);
                    }
                });
                barrier.set_control(frontiers[1].frontier().iter().next().copied());
            }
            input.for_each(|cap, data: &mut Vec<Chunk>| {
                let Some(&t) = cap.least() else {
                    // Weir's operators always send with a capability; nothing to hold.
                    return;
                };
                if control.is_some() && !barrier.admits(t) {
                    for chunk in data.drain(..) {
                        let caps = [cap.delayed(&t, 0), cap.delayed(&t, 1), cap.delayed(&t, 2)];
                        barrier.hold(t, (caps, chunk));
                    }
                    return;
                }
                for chunk in data.iter() {
                    add(&mut state, &cap, t, chunk, &mut n, &mut outs);
                }
                n.out += give_at(&mut out, &cap, t, 0, &mut outs.updates);
                give_at(&mut dead_out, &cap, t, 1, &mut outs.dead);
                give_at(&mut late_out, &cap, t, 2, &mut outs.late);
            });
            let data_frontier = frontiers[0].frontier().iter().next().copied();
            let mut emitted = Vec::new();
            let fire = |state: &mut State, f: Option<Time>, n: &mut Counts, emitted: &mut Vec<(Time, Vec<Record>)>| match spec.shape {
                Shape::Session { .. } => state.fire_sessions(spec, f, emitted, n),
                _ => state.fire_panes(spec, f, emitted, n),
            };
            // Sends fired results at their times (at or after the held capability's).
            let send = |state: &mut State, out: &mut OutputBuilder<_, CapacityContainerBuilder<Vec<Record>>>, emitted: &mut Vec<(Time, Vec<Record>)>| -> u64 {
                let mut sent = 0;
                for (time, mut batch) in emitted.drain(..) {
                    let held = state
                        .held
                        .as_ref()
                        .expect("a capability is held while results are pending");
                    let c = held.delayed(&time.max(*held.time()));
                    sent += batch.len() as u64;
                    out.activate().session(&c).give_container(&mut batch);
                }
                sent
            };
            if let Some(ck) = ck.as_ref() {
                loop {
                    for (t, (caps, chunk)) in barrier.release() {
                        add(&mut state, &caps, t, &chunk, &mut n, &mut outs);
                        n.out += give_at(&mut out, &caps, t, 0, &mut outs.updates);
                        give_at(&mut dead_out, &caps, t, 1, &mut outs.dead);
                        give_at(&mut late_out, &caps, t, 2, &mut outs.late);
                    }
                    let Some((at, seq)) = barrier.due(data_frontier) else {
                        break;
                    };
                    let started = crate::checkpoint::wall_micros();
                    fire(&mut state, (at != crate::checkpoint::END).then_some(at), &mut n, &mut emitted);
                    // What fired belongs to this checkpoint's output: sent now, below its
                    // time, before the held capability moves past it.
                    n.out += send(&mut state, &mut out, &mut emitted);
                    state.release(spec);
                    let bytes = snapshot::snapshot(spec, &state);
                    if let Err(e) =
                        crate::checkpoint::write_part(ck, seq, &spec.id, worker, started, &bytes)
                    {
                        ctl.fail(format!("window `{}`: cannot write checkpoint {seq}: {e}", spec.id));
                    }
                    barrier.taken();
                }
                fire(&mut state, barrier.frontier(data_frontier), &mut n, &mut emitted);
            } else {
                fire(&mut state, data_frontier, &mut n, &mut emitted);
            }
            n.out += send(&mut state, &mut out, &mut emitted);
            state.release(spec);
            metrics.add_in(n.input);
            metrics.add_out(n.out);
            n.late.report(&metrics);
            metrics.add_state(n.state);
            gauge.changed(&metrics, n.state, || state.bytes());
            if n.state != 0 {
                gauge.guard(&metrics, &ctl, spec.max_state, |held, max| {
                    format!(
                        "window `{}` holds {held} entries of state, more than its max_state = {max}: its key space grows without bound (group_by {}), or the limit is too low; raise max_state, group by fewer distinct values, or shorten the window",
                        spec.id,
                        if spec.group_by.is_empty() { "none".to_string() } else { format!("{} field(s)", spec.group_by.len()) }
                    )
                });
            }
        }
    });
    WindowStreams {
        results,
        dead,
        late,
    }
}
