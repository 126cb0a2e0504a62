//! A window's state in a checkpoint, and back.
//!
//! The part is an Arrow IPC file of one record batch, a row per state slot:
//!
//! | column | type | meaning |
//! |---|---|---|
//! | `kind` | UInt8 | 0 a pane's group, 1 a group of a pane's late updates, 2 and 3 a queued pane of a sliding window (front, back), 4 a queue's back aggregate, 5 a session, 6 a pane (no group) |
//! | `a` | Int64 | the pane's end (0, 1, 6), the queued pane's end (2, 3), the session's start (5) |
//! | `b` | Int64 | the pane's start (0, 6), the late table's window end (1), the session's end (5) |
//! | `key` | Binary | the group key's values (postcard `Vec<Value>`) |
//! | `ingest` | Int64 | the slot's newest ingest time (NULL: none) |
//! | `late` | UInt64 | late records the slot includes (`late = "update"`) |
//! | `state` | Binary | the aggregates' states (postcard `Vec<SlotState>`) |
//!
//! The schema's metadata holds `weir.format`, `fired_through`, `pane_keys` and `pane_bytes`.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, AsArray, BinaryBuilder, Int64Builder, RecordBatch, UInt64Builder, UInt8Builder,
};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, UInt64Type, UInt8Type};

use super::groups::{Groups, KeyView};
use super::state::{Accs, KeyQueue, Pane, Session, State, Table};
use super::WindowSpec;
use crate::aggregate::SlotState;
use crate::chunk::Chunk;
use crate::schema::{Meta, Record};
use crate::value::{Micros, Value};

#[derive(Default)]
struct Rows {
    kind: UInt8Builder,
    a: Int64Builder,
    b: Int64Builder,
    key: BinaryBuilder,
    ingest: Int64Builder,
    late: UInt64Builder,
    state: BinaryBuilder,
}

impl Rows {
    fn push(
        &mut self,
        kind: u8,
        a: Micros,
        b: Micros,
        key: Option<Vec<Value>>,
        accs: Option<(&Accs, u32)>,
    ) {
        self.kind.append_value(kind);
        self.a.append_value(a);
        self.b.append_value(b);
        match key {
            Some(k) => self
                .key
                .append_value(postcard::to_stdvec(&k).expect("values serialize")),
            None => self.key.append_null(),
        }
        match accs {
            Some((accs, slot)) => {
                let i = slot as usize;
                let ingest = accs.ingest.get(i);
                if ingest == Micros::MIN {
                    self.ingest.append_null();
                } else {
                    self.ingest.append_value(ingest);
                }
                self.late.append_value(accs.late_of(slot));
                let states: Vec<SlotState> = accs.states.iter().map(|s| s.slot_state(i)).collect();
                self.state
                    .append_value(postcard::to_stdvec(&states).expect("states serialize"));
            }
            None => {
                self.ingest.append_null();
                self.late.append_value(0);
                self.state.append_null();
            }
        }
    }
}

/// The window's state as a checkpoint part.
pub(super) fn snapshot(spec: &WindowSpec, state: &State) -> Vec<u8> {
    let mut rows = Rows::default();
    let kk = &spec.key_kind;
    let table = |rows: &mut Rows, kind: u8, a: Micros, b: Micros, t: &Table| {
        for g in t.groups.slots() {
            rows.push(kind, a, b, Some(t.groups.values(kk, g)), Some((&t.accs, g)));
        }
    };
    for (&end, pane) in &state.panes {
        rows.push(6, end, pane.start, None, None);
        table(&mut rows, 0, end, pane.start, &pane.table);
        for (&late_end, t) in &pane.late {
            table(&mut rows, 1, end, late_end, t);
        }
    }
    for q in state.queue_keys.slots() {
        let key = state.queue_keys.values(kk, q);
        let queue = &state.queues[q as usize];
        for (kind, entries) in [(2u8, &queue.front), (3u8, &queue.back)] {
            for &(end, slot) in entries {
                let accs = Some((&state.queue_accs, slot));
                rows.push(kind, end, 0, Some(key.clone()), accs);
            }
        }
        if let Some(slot) = queue.back_agg {
            rows.push(4, 0, 0, Some(key), Some((&state.queue_accs, slot)));
        }
    }
    for k in state.keys.slots() {
        let key = state.keys.values(kk, k);
        for s in &state.sessions[k as usize] {
            let accs = Some((&state.session_accs, s.slot));
            rows.push(5, s.start, s.end, Some(key.clone()), accs);
        }
    }
    let schema = Schema::new(vec![
        Field::new("kind", DataType::UInt8, false),
        Field::new("a", DataType::Int64, false),
        Field::new("b", DataType::Int64, false),
        Field::new("key", DataType::Binary, true),
        Field::new("ingest", DataType::Int64, true),
        Field::new("late", DataType::UInt64, false),
        Field::new("state", DataType::Binary, true),
    ])
    .with_metadata(HashMap::from([
        (
            "weir.format".to_string(),
            crate::checkpoint::FORMAT.to_string(),
        ),
        ("fired_through".to_string(), state.fired_through.to_string()),
        ("pane_keys".to_string(), state.pane_size.0.to_string()),
        ("pane_bytes".to_string(), state.pane_size.1.to_string()),
    ]));
    let batch = RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(rows.kind.finish()),
            Arc::new(rows.a.finish()),
            Arc::new(rows.b.finish()),
            Arc::new(rows.key.finish()),
            Arc::new(rows.ingest.finish()),
            Arc::new(rows.late.finish()),
            Arc::new(rows.state.finish()),
        ],
    )
    .expect("columns match the schema");
    crate::checkpoint::ipc_file(&batch)
}

/// A window's state read back from a checkpoint part.
pub(super) fn restore(spec: &WindowSpec, bytes: &[u8]) -> Result<State, String> {
    let (meta, batches) = crate::checkpoint::read_ipc_file(bytes)?;
    let num = |k: &str| -> Result<i64, String> {
        meta.get(k)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("the part has no `{k}`"))
    };
    let mut state = State::new(spec);
    state.fired_through = num("fired_through")?;
    state.pane_size = (num("pane_keys")? as usize, num("pane_bytes")? as usize);
    for batch in batches {
        let col = |i: usize| batch.column(i);
        let kind = col(0).as_primitive::<UInt8Type>();
        let a = col(1).as_primitive::<Int64Type>();
        let b = col(2).as_primitive::<Int64Type>();
        let key = col(3).as_binary::<i32>();
        let ingest = col(4).as_primitive::<Int64Type>();
        let late = col(5).as_primitive::<UInt64Type>();
        let states = col(6).as_binary::<i32>();
        // Every key as a row of the window's input, to look keys up as the operator does.
        let width = spec.input_schema.fields().len() - 2;
        let records: Vec<Record> = (0..batch.num_rows())
            .map(|r| {
                let mut values = vec![Value::Null; width];
                if key.is_valid(r) {
                    let k: Vec<Value> = postcard::from_bytes(key.value(r)).unwrap_or_default();
                    for (&p, v) in spec.group_by.iter().zip(k) {
                        values[p] = v;
                    }
                }
                Record {
                    values,
                    meta: Meta::default(),
                }
            })
            .collect();
        let chunk = Chunk::from_rows(&spec.input_schema, &records);
        let cols: Vec<&arrow::array::ArrayRef> =
            spec.group_by.iter().map(|&p| &chunk.columns()[p]).collect();
        let view = KeyView::new(&spec.key_kind, &cols);
        let hashes = view.hashes(chunk.len());
        let fill = |accs: &mut Accs, r: usize| -> Result<u32, String> {
            let slot = accs.alloc();
            let st: Vec<SlotState> = postcard::from_bytes(states.value(r))
                .map_err(|e| format!("a state does not decode: {e}"))?;
            if st.len() != accs.states.len() {
                return Err("the aggregates differ".into());
            }
            for (s, v) in accs.states.iter_mut().zip(st) {
                if !s.set_state(slot as usize, v) {
                    return Err("the aggregates differ".into());
                }
            }
            if ingest.is_valid(r) {
                accs.ingest.raise(slot as usize, ingest.value(r));
            }
            accs.set_late(slot, late.value(r));
            Ok(slot)
        };
        let insert = |groups: &mut Groups, r: usize| groups.slot(&view, r, hashes[r]).0;
        for r in 0..batch.num_rows() {
            let (ka, kb) = (a.value(r), b.value(r));
            match kind.value(r) {
                6 => {
                    state.panes.insert(
                        ka,
                        Pane {
                            start: kb,
                            table: Table::new(spec),
                            late: Default::default(),
                        },
                    );
                }
                k @ (0 | 1) => {
                    let pane = state
                        .panes
                        .get_mut(&ka)
                        .ok_or("a group of a pane that is not there")?;
                    let t = match k {
                        0 => &mut pane.table,
                        _ => pane.late.entry(kb).or_insert_with(|| Table::new(spec)),
                    };
                    let g = insert(&mut t.groups, r);
                    let slot = fill(&mut t.accs, r)?;
                    if g != slot {
                        return Err("a pane's groups are not in slot order".into());
                    }
                }
                k @ (2..=4) => {
                    let q = insert(&mut state.queue_keys, r) as usize;
                    if q >= state.queues.len() {
                        state.queues.resize_with(q + 1, KeyQueue::default);
                    }
                    let slot = fill(&mut state.queue_accs, r)?;
                    let queue = &mut state.queues[q];
                    match k {
                        2 => queue.front.push((ka, slot)),
                        3 => queue.back.push((ka, slot)),
                        _ => queue.back_agg = Some(slot),
                    }
                }
                5 => {
                    let k = insert(&mut state.keys, r);
                    let ku = k as usize;
                    if ku >= state.sessions.len() {
                        state.sessions.resize_with(ku + 1, Default::default);
                    }
                    let slot = fill(&mut state.session_accs, r)?;
                    state.sessions[ku].push(Session {
                        start: ka,
                        end: kb,
                        slot,
                    });
                    state.session_ends.insert((kb, k, slot));
                }
                other => return Err(format!("unknown row kind {other}")),
            }
        }
    }
    Ok(state)
}
