//! The `filter` transform: keeps the records whose condition is TRUE (SQL semantics: a NULL
//! condition drops the record, as SQL's `WHERE` does).
//!
//! The condition is compiled once; each batch is filtered in place, without allocating.
//!
//! ```
//! use std::sync::Arc;
//! use timely::dataflow::operators::{Capture, ToStream};
//! use timely::dataflow::operators::capture::Extract;
//! use weir_operators::{expr::Expr, filter::filter, metrics::ComponentMetrics, schema::*, value::*};
//!
//! let schema = Schema::new(vec![Field::new("t", FieldType::F64)]);
//! let cond = Arc::new(Expr::compile("t > 30", &schema).unwrap());
//! let rows = vec![Record::new(vec![Value::F64(31.0)]), Record::new(vec![Value::F64(3.0)])];
//! let captured = timely::example(move |scope| {
//!     let input = rows.to_stream(scope).container::<Vec<Record>>();
//!     filter(input, "hot", cond, Arc::new(ComponentMetrics::default())).capture()
//! });
//! let kept: Vec<Record> = captured.extract().into_iter().flat_map(|(_, r)| r).collect();
//! assert_eq!(kept, vec![Record::new(vec![Value::F64(31.0)])]);
//! ```

use std::sync::Arc;

use crate::batch::per_batch;
use crate::expr::Expr;
use crate::metrics::ComponentMetrics;
use crate::Records;

/// Builds a filter over `input`.
pub fn filter<'s>(
    input: Records<'s>,
    name: &str,
    condition: Arc<Expr>,
    metrics: Arc<ComponentMetrics>,
) -> Records<'s> {
    per_batch(input, name, metrics, move |data| {
        data.retain(|r| condition.eval_bool(&r.values) == Some(true))
    })
}
