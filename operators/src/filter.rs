//! The `filter` transform: keeps the records whose condition is TRUE (SQL semantics: a NULL
//! condition drops the record, as SQL's `WHERE` does).
//!
//! The condition is compiled once and evaluated over each chunk as a whole (see
//! [`crate::expr`]); one kernel call then keeps the rows whose condition is TRUE, in the
//! columns something downstream reads (the plan works them out; the others become NULL).
//!
//! ```
//! use std::sync::Arc;
//! use timely::dataflow::operators::{Capture, ToStream};
//! use timely::dataflow::operators::capture::Event;
//! use weir_operators::{expr::Expr, filter::filter, metrics::ComponentMetrics, schema::*, value::*};
//! use weir_operators::chunk::{arrow_schema, Chunk};
//!
//! let schema = Schema::new(vec![Field::new("t", FieldType::F64)]);
//! let cond = Arc::new(Expr::compile("t > 30", &schema).unwrap());
//! let rows = vec![Record::new(vec![Value::F64(31.0)]), Record::new(vec![Value::F64(3.0)])];
//! let chunk = Chunk::from_rows(&arrow_schema(&schema), &rows);
//! let captured = timely::example(move |scope| {
//!     let input = vec![chunk].to_stream(scope).container::<Vec<Chunk>>();
//!     filter(input, "hot", cond, None, Arc::new(ComponentMetrics::default())).capture()
//! });
//! let mut kept = Vec::new();
//! for event in captured.try_iter() {
//!     if let Event::Messages(_, chunks) = event {
//!         chunks.iter().for_each(|c| c.push_rows(&mut kept));
//!     }
//! }
//! assert_eq!(kept, vec![Record::new(vec![Value::F64(31.0)])]);
//! ```

use std::sync::Arc;

use crate::batch::{chain, Stage};
use crate::expr::Expr;
use crate::metrics::ComponentMetrics;
use crate::Batches;

/// Builds a filter over `input`. With `read`, only the fields `k` with `read[k]` (those
/// something downstream reads) are copied; the others leave as NULL columns.
pub fn filter<'s>(
    input: Batches<'s>,
    name: &str,
    condition: Arc<Expr>,
    read: Option<Vec<bool>>,
    metrics: Arc<ComponentMetrics>,
) -> Batches<'s> {
    chain(input, vec![stage(name, condition, read, metrics)])
}

/// The filter as a stage of a [`chain`] of stateless transforms (see [`filter`]).
pub fn stage(
    name: &str,
    condition: Arc<Expr>,
    read: Option<Vec<bool>>,
    metrics: Arc<ComponentMetrics>,
) -> Stage {
    Stage::filter(
        name,
        metrics,
        move |c| condition.eval_mask(c.columns(), c.len()),
        read,
    )
}
