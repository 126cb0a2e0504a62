//! The `map` transform: selects, renames and computes fields.
//!
//! The output layout is compiled into [`Slot`]s: each output field either takes an input field
//! (by position) or evaluates a compiled expression over the input. Over a chunk, an input
//! field is its column shared (no copy) and a computed field is one vectorized evaluation
//! ([`MapSpec::apply_chunk`]); over a row ([`MapSpec::apply`]), computed values are evaluated
//! first, then the output row is assembled in a buffer swapped with the input's.
//!
//! ```
//! use std::sync::Arc;
//! use weir_operators::{expr::Expr, map::{MapSpec, Slot}, schema::*, value::*};
//!
//! let schema = Schema::new(vec![Field::new("id", FieldType::U64), Field::new("c", FieldType::F64)]);
//! let spec = MapSpec::new(vec![Slot::Input(0), Slot::Compute(Expr::compile("c * 1.8 + 32", &schema).unwrap())]);
//! let mut row = Record::new(vec![Value::U64(1), Value::F64(100.0)]);
//! let mut scratch = Default::default();
//! spec.apply(&mut row, &mut scratch);
//! assert_eq!(row.values, vec![Value::U64(1), Value::F64(212.0)]);
//! ```

use std::sync::Arc;

use arrow::datatypes::SchemaRef;

use crate::batch::{chain, Stage};
use crate::chunk::{field_type, Chunk};
use crate::expr::Expr;
use crate::metrics::ComponentMetrics;
use crate::schema::Record;
use crate::value::{FieldType, Value};
use crate::Batches;

/// Where one output field comes from.
#[derive(Clone, Debug)]
pub enum Slot {
    /// The input field at this position.
    Input(usize),
    /// A computed value.
    Compute(Expr),
}

/// A compiled map: the output fields, in order.
#[derive(Clone, Debug)]
pub struct MapSpec {
    slots: Vec<Slot>,
    /// For each slot: whether its input field may be moved (its last use) or must be cloned.
    moves: Vec<bool>,
    computes: usize,
}

impl MapSpec {
    /// Compiles the output layout.
    pub fn new(slots: Vec<Slot>) -> MapSpec {
        let moves = slots
            .iter()
            .enumerate()
            .map(|(k, s)| match s {
                Slot::Input(i) => !slots[k + 1..]
                    .iter()
                    .any(|later| matches!(later, Slot::Input(j) if j == i)),
                Slot::Compute(_) => false,
            })
            .collect();
        let computes = slots
            .iter()
            .filter(|s| matches!(s, Slot::Compute(_)))
            .count();
        MapSpec {
            slots,
            moves,
            computes,
        }
    }

    /// The positions of the input fields the map reads (kept or used by a computed field).
    pub fn input_fields(&self) -> Vec<usize> {
        let mut out: Vec<usize> = Vec::new();
        for s in &self.slots {
            match s {
                Slot::Input(i) => out.push(*i),
                Slot::Compute(e) => out.extend(e.fields()),
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The chunk of `chunk`'s records laid out by this map; `schema` is the output's (from
    /// [`crate::chunk::arrow_schema`]), which types the fields that are always NULL.
    pub fn apply_chunk(&self, chunk: &Chunk, schema: &SchemaRef) -> Chunk {
        let cols = chunk.columns();
        let columns = self
            .slots
            .iter()
            .enumerate()
            .map(|(k, s)| match s {
                Slot::Input(i) => Arc::clone(&cols[*i]),
                Slot::Compute(e) => e.eval_batch(
                    cols,
                    chunk.len(),
                    field_type(schema.field(k).data_type()).unwrap_or(FieldType::I64),
                ),
            })
            .collect();
        chunk.with_fields(schema, columns)
    }

    /// Rewrites one record in place; `scratch` holds buffers reused from record to record.
    #[inline]
    pub fn apply(&self, record: &mut Record, scratch: &mut MapScratch) {
        let MapScratch { computed, out } = scratch;
        // Computed values first, over the unchanged input.
        computed.clear();
        if self.computes > 0 {
            for s in &self.slots {
                if let Slot::Compute(e) = s {
                    computed.push(e.eval(&record.values));
                }
            }
        }
        out.clear();
        out.reserve(self.slots.len());
        let mut computed = computed.drain(..);
        for (s, mv) in self.slots.iter().zip(&self.moves) {
            out.push(match s {
                Slot::Input(i) if *mv => std::mem::take(&mut record.values[*i]),
                Slot::Input(i) => record.values[*i].clone(),
                Slot::Compute(_) => computed.next().unwrap_or_default(),
            });
        }
        // The record leaves with the new row; its old buffer serves the next record.
        std::mem::swap(&mut record.values, out);
    }
}

/// Buffers a map reuses from record to record.
#[derive(Debug, Default)]
pub struct MapScratch {
    computed: Vec<Value>,
    out: Vec<Value>,
}

/// Builds a map over `input`; `schema` is the output's (from [`crate::chunk::arrow_schema`]).
pub fn map<'s>(
    input: Batches<'s>,
    name: &str,
    spec: Arc<MapSpec>,
    schema: SchemaRef,
    metrics: Arc<ComponentMetrics>,
) -> Batches<'s> {
    chain(input, vec![stage(name, spec, schema, metrics)])
}

/// The map as a stage of a [`chain`] of stateless transforms (see [`map`]).
pub fn stage(
    name: &str,
    spec: Arc<MapSpec>,
    schema: SchemaRef,
    metrics: Arc<ComponentMetrics>,
) -> Stage {
    Stage::new(name, metrics, move |c| spec.apply_chunk(c, &schema))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Field, Schema};
    use crate::value::FieldType;

    #[test]
    fn select_duplicate_reorder_compute() {
        let schema = Schema::new(vec![
            Field::new("a", FieldType::I64),
            Field::new("b", FieldType::String),
        ]);
        let spec = MapSpec::new(vec![
            Slot::Input(1),
            Slot::Compute(Expr::compile("a + 1", &schema).unwrap()),
            Slot::Input(0),
            Slot::Input(1),
        ]);
        let mut scratch = MapScratch::default();
        for _ in 0..3 {
            let mut r = Record::new(vec![Value::I64(1), Value::Str("x".into())]);
            spec.apply(&mut r, &mut scratch);
            assert_eq!(
                r.values,
                vec![
                    Value::Str("x".into()),
                    Value::I64(2),
                    Value::I64(1),
                    Value::Str("x".into())
                ]
            );
        }
    }

    #[test]
    fn narrowing_reuses_buffers() {
        let spec = MapSpec::new(vec![Slot::Input(2), Slot::Input(0)]);
        let mut scratch = MapScratch::default();
        for i in 0..3 {
            let mut r = Record::new(vec![Value::I64(i), Value::Null, Value::I64(-i)]);
            spec.apply(&mut r, &mut scratch);
            assert_eq!(r.values, vec![Value::I64(-i), Value::I64(i)]);
        }
    }
}
