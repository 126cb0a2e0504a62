//! The `unnest` transform: one record per element of a list field (SQL's `UNNEST`, Spark's
//! `explode`, Flink's `CROSS JOIN UNNEST`).
//!
//! The list field is replaced, in place, by a field of its element type holding one element;
//! every other field is copied to each of the record's elements. With an index field, each
//! record also says which element it holds (1, 2, ...). A record whose list is empty or NULL
//! gives no record, or — with `keep_empty` — one record whose element (and index) is NULL, as
//! `explode_outer` and `LEFT JOIN UNNEST` do. Over a chunk this is one pass over the list's
//! offsets and one gather per column.
//!
//! ```
//! use std::sync::Arc;
//! use weir_operators::chunk::{arrow_schema, Chunk};
//! use weir_operators::schema::{Field, Record, Schema};
//! use weir_operators::unnest::UnnestSpec;
//! use weir_operators::value::{FieldType, ListOf, Value};
//!
//! let input = Schema::new(vec![
//!     Field::new("id", FieldType::U64),
//!     Field::new("tags", FieldType::List(ListOf::String)),
//! ]);
//! let spec = UnnestSpec::new(&input, 1, "tag", Some("n"), false);
//! assert_eq!(spec.schema().names().collect::<Vec<_>>(), ["id", "tag", "n"]);
//! let tags = |t: &[&str]| Value::List(t.iter().map(|s| Value::Str((*s).into())).collect());
//! let rows = vec![
//!     Record::new(vec![Value::U64(1), tags(&["a", "b"])]),
//!     Record::new(vec![Value::U64(2), tags(&[])]),
//!     Record::new(vec![Value::U64(3), tags(&["c"])]),
//! ];
//! let out = spec.apply(&Chunk::from_rows(&arrow_schema(&input), &rows));
//! let mut got = Vec::new();
//! out.push_rows(&mut got);
//! let row = |id, t: &str, n| Record::new(vec![Value::U64(id), Value::Str(t.into()), Value::U64(n)]);
//! assert_eq!(got, vec![row(1, "a", 1), row(1, "b", 2), row(3, "c", 1)]);
//! ```

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, UInt32Array, UInt64Array};
use arrow::datatypes::SchemaRef;

use crate::batch::Stage;
use crate::chunk::{arrow_schema, Chunk};
use crate::metrics::ComponentMetrics;
use crate::schema::{Field, Schema};

/// A compiled `unnest`: which field, and the output's layout.
#[derive(Clone, Debug)]
pub struct UnnestSpec {
    /// The list field's position in the input (its element takes the same position).
    field: usize,
    /// Whether a 1-based index field follows the element.
    index: bool,
    /// Whether an empty or NULL list gives one record with a NULL element.
    keep_empty: bool,
    schema: Schema,
    layout: SchemaRef,
}

impl UnnestSpec {
    /// Unnests field `field` of `input` (a list) into a field named `name`, followed, if
    /// `index` names one, by the element's 1-based position (`u64`). The event-time and id
    /// roles stay with their fields: every element of a record keeps the record's time and id.
    ///
    /// # Panics
    /// If field `field` is not a list (the plan checks this first).
    pub fn new(
        input: &Schema,
        field: usize,
        name: &str,
        index: Option<&str>,
        keep_empty: bool,
    ) -> UnnestSpec {
        let elem = input.fields[field]
            .ty
            .list_of()
            .expect("unnest's field is a list");
        let mut fields = input.fields.clone();
        fields[field] = Field::new(name, elem.field_type());
        let shift = |p: Option<usize>| {
            p.map(|p| {
                if p > field && index.is_some() {
                    p + 1
                } else {
                    p
                }
            })
        };
        if let Some(ix) = index {
            fields.insert(field + 1, Field::new(ix, crate::value::FieldType::U64));
        }
        let mut schema = Schema::new(fields);
        schema.time = shift(input.time);
        schema.id = shift(input.id);
        schema.window_end = shift(input.window_end);
        schema.processing_time = input.processing_time;
        UnnestSpec {
            field,
            index: index.is_some(),
            keep_empty,
            layout: arrow_schema(&schema),
            schema,
        }
    }

    /// The output's schema.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The input fields it reads when its readers read the output fields marked in `used`:
    /// the list, and the fields copied into a used output field.
    pub fn fields_read(&self, used: &[bool]) -> Vec<usize> {
        let mut read = vec![self.field];
        for (k, &u) in used.iter().enumerate() {
            let from = match k {
                _ if k == self.field => None,
                _ if self.index && k == self.field + 1 => None,
                _ if self.index && k > self.field => Some(k - 1),
                _ => Some(k),
            };
            if u {
                read.extend(from);
            }
        }
        read
    }

    /// The records of `c`, one per element of each one's list.
    pub fn apply(&self, c: &Chunk) -> Chunk {
        let list_col = &c.columns()[self.field];
        let Some(list) = list_col.as_list_opt::<i32>() else {
            // An untyped NULL column: every list is NULL.
            let parents: Vec<u32> = match self.keep_empty {
                true => (0..c.len() as u32).collect(),
                false => Vec::new(),
            };
            return self.assemble(c, parents, None);
        };
        let offsets = list.value_offsets();
        let mut parents: Vec<u32> = Vec::with_capacity(list.values().len().max(c.len()));
        let mut elems: Vec<Option<u32>> = Vec::with_capacity(parents.capacity());
        for r in 0..c.len() {
            let (start, end) = match list.is_valid(r) {
                true => (offsets[r] as u32, offsets[r + 1] as u32),
                false => (0, 0),
            };
            if start == end {
                if self.keep_empty {
                    parents.push(r as u32);
                    elems.push(None);
                }
                continue;
            }
            for e in start..end {
                parents.push(r as u32);
                elems.push(Some(e));
            }
        }
        self.assemble(c, parents, Some((list, elems)))
    }

    /// The output chunk: every field gathered at `parents`, the list's place taken by its
    /// elements at `elems` (with `list`), and the index after it.
    fn assemble(
        &self,
        c: &Chunk,
        parents: Vec<u32>,
        list: Option<(&arrow::array::ListArray, Vec<Option<u32>>)>,
    ) -> Chunk {
        let rows = parents.len();
        // Each record's position in its list, before the positions move into an array.
        let index: Option<UInt64Array> = self.index.then(|| match &list {
            Some((l, elems)) => parents
                .iter()
                .zip(elems)
                .map(|(&r, e)| e.map(|e| u64::from(e - l.value_offsets()[r as usize] as u32) + 1))
                .collect(),
            None => UInt64Array::new_null(rows),
        });
        let take = UInt32Array::from(parents);
        let gather =
            |a: &ArrayRef| arrow::compute::take(a, &take, None).expect("rows in the chunk");
        let mut columns: Vec<ArrayRef> = c
            .columns()
            .iter()
            .enumerate()
            .map(|(k, a)| match k == self.field {
                // Replaced by the elements below: never gathered.
                true => Arc::clone(a),
                false => gather(a),
            })
            .collect();
        columns[self.field] = match list {
            Some((l, elems)) => arrow::compute::take(l.values(), &UInt32Array::from(elems), None)
                .expect("elements in the list"),
            None => arrow::array::new_null_array(self.layout.field(self.field).data_type(), rows),
        };
        if let Some(index) = index {
            columns.insert(self.field + 1, Arc::new(index));
        }
        Chunk::from_columns(
            &self.layout,
            columns,
            gather(c.ingest()),
            gather(c.watermark()),
        )
    }
}

/// The unnest as a stage of a [`chain`](crate::batch::chain) of stateless transforms.
pub fn stage(name: &str, spec: Arc<UnnestSpec>, metrics: Arc<ComponentMetrics>) -> Stage {
    Stage::new(name, metrics, move |c| spec.apply(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Field, Record};
    use crate::value::{FieldType, ListOf, Value};

    /// `keep_empty`: an empty or NULL list gives one record with a NULL element and index;
    /// the roles after the list move past the index field.
    #[test]
    fn keep_empty_and_roles() {
        let mut input = Schema::new(vec![
            Field::new("n", FieldType::List(ListOf::I64)),
            Field::new("ts", FieldType::Timestamp),
            Field::new("id", FieldType::U64),
        ]);
        input.time = Some(1);
        input.id = Some(2);
        let spec = UnnestSpec::new(&input, 0, "x", Some("i"), true);
        assert_eq!((spec.schema().time, spec.schema().id), (Some(2), Some(3)));
        let list = |v: &[i64]| Value::List(v.iter().map(|&x| Value::I64(x)).collect());
        let rows = vec![
            Record::new(vec![list(&[]), Value::Ts(1), Value::U64(1)]),
            Record::new(vec![list(&[5, 6]), Value::Ts(2), Value::U64(2)]),
            Record::new(vec![Value::Null, Value::Ts(3), Value::U64(3)]),
        ];
        let out = spec.apply(&Chunk::from_rows(&arrow_schema(&input), &rows));
        let mut got = Vec::new();
        out.push_rows(&mut got);
        let row = |x: Value, i: Value, t, id| Record::new(vec![x, i, Value::Ts(t), Value::U64(id)]);
        assert_eq!(
            got,
            vec![
                row(Value::Null, Value::Null, 1, 1),
                row(Value::I64(5), Value::U64(1), 2, 2),
                row(Value::I64(6), Value::U64(2), 2, 2),
                row(Value::Null, Value::Null, 3, 3),
            ]
        );
        assert_eq!(spec.fields_read(&[false, true, false, true]), vec![0, 2]);
    }
}
