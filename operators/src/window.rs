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
//!     let (out, _dead) = window(recs.to_stream(scope).container::<Vec<Record>>(), spec, Arc::default());
//!     out.capture_into(tx.lock().unwrap().clone());
//! });
//! let mut got: Vec<Vec<Value>> = rx.extract().into_iter().flat_map(|(_, v)| v).map(|r| r.values).collect();
//! got.sort();
//! assert_eq!(got, vec![
//!     vec![Value::Str("a".into()), Value::Ts(0), Value::Ts(1_000_000), Value::F64(1.5)],
//!     vec![Value::Str("a".into()), Value::Ts(1_000_000), Value::Ts(2_000_000), Value::F64(7.0)],
//!     vec![Value::Str("b".into()), Value::Ts(0), Value::Ts(1_000_000), Value::F64(5.0)],
//! ]);
//! ```

use std::collections::BTreeMap;
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
use crate::decode::dead_letter_schema;
use crate::encode::{Encoder, Format};
use crate::metrics::ComponentMetrics;
use crate::schema::{Field, Meta, Record, Schema};
use crate::time::format_rfc3339;
use crate::value::{FieldType, Micros, Value};
use crate::{Records, Time};

/// A compiled tumbling window.
#[derive(Debug)]
pub struct WindowSpec {
    /// The window's component id, named in dead letters.
    pub id: SmolStr,
    /// Window size, in microseconds (> 0).
    pub size: Micros,
    /// Window offset from the epoch, in microseconds (`0 <= offset < size`).
    pub offset: Micros,
    /// Input position of the event-time field.
    pub time: usize,
    /// Input position of the id field, which breaks ties in `first` / `last`.
    pub id_field: Option<usize>,
    /// Input positions of the group-by fields.
    pub group_by: Vec<usize>,
    /// The aggregates, in output order.
    pub aggregates: Vec<Aggregate>,
    /// Encodes a dead-lettered input record as JSON.
    input_encoder: Encoder,
}

impl WindowSpec {
    /// A window over `input` records. `group_by` holds input positions.
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
            size: size.max(1),
            offset: offset.rem_euclid(size.max(1)),
            time: input.time.unwrap_or(0),
            id_field: input.id,
            group_by,
            aggregates,
            input_encoder: Encoder::new(Format::Jsonl, input),
        }
    }

    /// The schema of the window's results, given the input schema and the aggregates' names.
    /// Its event time is `window_start`.
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
        let mut schema = Schema::new(fields).with_time("window_start");
        schema.window_end = Some(self.group_by.len() + 1);
        schema
    }

    /// The window `[start, end)` containing event time `ts`.
    #[inline]
    pub fn window_of(&self, ts: Micros) -> (Micros, Micros) {
        let start = self.offset + (ts - self.offset).div_euclid(self.size) * self.size;
        (start, start.saturating_add(self.size))
    }

    fn dead_letter(&self, r: &Record, reason: String) -> Record {
        let mut raw = Vec::new();
        self.input_encoder.encode(r, &mut raw);
        while raw.last() == Some(&b'\n') {
            raw.pop();
        }
        let mut d = Record::new(vec![
            Value::Str(self.id.clone()),
            Value::Null,
            Value::Null,
            Value::Str(SmolStr::new(reason)),
            Value::Str(SmolStr::new(String::from_utf8_lossy(&raw))),
        ]);
        debug_assert_eq!(d.values.len(), dead_letter_schema().len());
        d.meta = r.meta;
        d
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
struct KeyHasher(u64);

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

/// One group's state in one window.
struct Group {
    hash: u64,
    key: Box<[Value]>,
    accs: Box<[Acc]>,
    /// The newest ingest time among the group's records.
    ingest: Micros,
}

/// One open window on this worker.
struct Pane {
    /// The window's start.
    start: Micros,
    /// Held at `end - 1`, the time its results are sent at.
    cap: Capability<Time>,
    groups: HashTable<Group>,
}

/// Builds a window over `input`: returns (results, dead letters).
pub fn window<'s>(
    input: Records<'s>,
    spec: Arc<WindowSpec>,
    metrics: Arc<ComponentMetrics>,
) -> (Records<'s>, Records<'s>) {
    let mut builder = OperatorBuilder::new(spec.id.to_string(), input.scope());
    let route = Arc::clone(&spec);
    let mut input = builder.new_input(
        input,
        Exchange::new(move |r: &Record| key_hash(&r.values, &route.group_by)),
    );
    let (out, results) = builder.new_output::<Vec<Record>>();
    let (dead_out, dead) = builder.new_output::<Vec<Record>>();
    let mut out = OutputBuilder::<_, CapacityContainerBuilder<Vec<Record>>>::from(out);
    let mut dead_out = OutputBuilder::<_, CapacityContainerBuilder<Vec<Record>>>::from(dead_out);
    builder.build(move |_initial_caps| {
        let mut panes: BTreeMap<Micros, Pane> = BTreeMap::new();
        let mut dead_buf: Vec<Record> = Vec::new();
        move |frontiers| {
            let spec = &*spec;
            let (mut n_in, mut late, mut untimed, mut new_groups) = (0u64, 0u64, 0u64, 0i64);
            input.for_each(|cap, data: &mut Vec<Record>| {
                let Some(&t) = cap.least() else {
                    // Weir's operators always send with a capability; nothing to hold.
                    return;
                };
                n_in += data.len() as u64;
                for r in data.drain(..) {
                    let Some(ts) = r.values[spec.time].as_ts() else {
                        untimed += 1;
                        dead_buf.push(spec.dead_letter(&r, "the record has no event time".into()));
                        continue;
                    };
                    let (start, end) = spec.window_of(ts);
                    let end_t = end.max(1) as Time;
                    if end_t <= r.meta.watermark || end_t <= t {
                        late += 1;
                        let reason = format!(
                            "late: its window [{}, {}) had closed (watermark {})",
                            format_rfc3339(start),
                            format_rfc3339(end),
                            format_rfc3339(r.meta.watermark.max(t) as Micros)
                        );
                        dead_buf.push(spec.dead_letter(&r, reason));
                        continue;
                    }
                    let pane = panes.entry(end).or_insert_with(|| Pane {
                        start,
                        cap: cap.delayed(&(end_t - 1), 0),
                        groups: HashTable::new(),
                    });
                    let hash = key_hash(&r.values, &spec.group_by);
                    let group = match pane.groups.entry(
                        hash,
                        |g| {
                            g.hash == hash
                                && g.key
                                    .iter()
                                    .zip(&spec.group_by)
                                    .all(|(k, &p)| *k == r.values[p])
                        },
                        |g| g.hash,
                    ) {
                        Entry::Occupied(e) => e.into_mut(),
                        Entry::Vacant(e) => {
                            new_groups += 1;
                            e.insert(Group {
                                hash,
                                key: spec.group_by.iter().map(|&p| r.values[p].clone()).collect(),
                                accs: spec.aggregates.iter().map(Aggregate::init).collect(),
                                ingest: Micros::MIN,
                            })
                            .into_mut()
                        }
                    };
                    group.ingest = group.ingest.max(r.meta.ingest);
                    let id = spec.id_field.map(|p| &r.values[p]).unwrap_or(&Value::Null);
                    for (a, acc) in spec.aggregates.iter().zip(group.accs.iter_mut()) {
                        a.update(acc, &r.values, ts, id);
                    }
                }
                if !dead_buf.is_empty() {
                    let dcap = cap.delayed(&t, 1);
                    dead_out
                        .activate()
                        .session(&dcap)
                        .give_container(&mut dead_buf);
                    dead_buf.clear();
                }
            });
            // Emit every window the frontier has passed, oldest first, and free it.
            let mut emitted = 0u64;
            let mut freed = 0i64;
            while let Some(entry) = panes.first_entry() {
                let end = *entry.key();
                if frontiers[0].less_equal(&(end.max(1) as Time - 1)) {
                    break;
                }
                let pane = entry.remove();
                let start = pane.start;
                let mut act = out.activate();
                let mut session = act.session(&pane.cap);
                freed += pane.groups.len() as i64;
                for g in pane.groups {
                    let mut values = Vec::with_capacity(g.key.len() + 2 + g.accs.len());
                    values.extend(g.key.into_vec());
                    values.push(Value::Ts(start));
                    values.push(Value::Ts(end));
                    for (a, acc) in spec.aggregates.iter().zip(g.accs.iter()) {
                        values.push(a.finish(acc));
                    }
                    session.give(Record {
                        values,
                        meta: Meta {
                            ingest: g.ingest,
                            watermark: end.max(1) as Time - 1,
                        },
                    });
                    emitted += 1;
                }
            }
            metrics.add_in(n_in);
            metrics.add_out(emitted);
            metrics.add_late(late);
            metrics.add_errors(late + untimed);
            metrics.add_dead_lettered(late + untimed);
            metrics.add_state(new_groups - freed);
        }
    });
    (results, dead)
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

    /// Runs a window over `rows` (id, ts, watermark, key, x) on `workers` workers.
    fn run(
        workers: usize,
        size: Micros,
        group_by: Vec<usize>,
        aggs: &[&str],
        rows: Vec<(u64, Micros, Time, &'static str, i64)>,
    ) -> (Vec<Vec<Value>>, Vec<String>, u64) {
        let s = schema();
        let aggs: Vec<Aggregate> = aggs
            .iter()
            .map(|a| Aggregate::compile(a, &s).unwrap())
            .collect();
        let spec = Arc::new(WindowSpec::new("w", size, 0, &s, group_by, aggs));
        let metrics: Arc<ComponentMetrics> = Arc::default();
        let (tx, rx) = std::sync::mpsc::channel();
        let (dtx, drx) = std::sync::mpsc::channel();
        let (tx, dtx) = (std::sync::Mutex::new(tx), std::sync::Mutex::new(dtx));
        let m = Arc::clone(&metrics);
        timely::execute(timely::Config::process(workers), move |worker| {
            let (tx, dtx) = (tx.lock().unwrap().clone(), dtx.lock().unwrap().clone());
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
                let (out, dead) = window(mine.to_stream(scope).container::<Vec<Record>>(), spec, m);
                out.capture_into(tx);
                dead.capture_into(dtx);
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
        assert_eq!(metrics.snapshot().state, 0, "all state freed at the end");
        (out, dead, metrics.snapshot().max_state)
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
    fn window_of_handles_offsets_and_negative_times() {
        let s = schema();
        let w = WindowSpec::new("w", 10, 3, &s, vec![], vec![]);
        assert_eq!(w.window_of(3), (3, 13));
        assert_eq!(w.window_of(2), (-7, 3));
        assert_eq!(w.window_of(-8), (-17, -7));
    }
}
