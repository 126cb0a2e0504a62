//! The shell of the stateless transforms (`filter`, `map`): an operator that rewrites each
//! chunk, on the worker that holds it, counting records in and out. Consecutive stateless
//! transforms run as one operator ([`chain`], as Flink chains operators): a chunk goes
//! through every stage in one activation, and the dataflow has one operator to schedule and
//! track progress for instead of one per transform, which is most of what a small chunk
//! costs. Each stage still counts its own records in and out.
//!
//! ```
//! use std::sync::Arc;
//! use timely::dataflow::operators::{Capture, ToStream};
//! use timely::dataflow::operators::capture::Event;
//! use weir_operators::batch::{chain, Stage};
//! use weir_operators::chunk::{arrow_schema, Chunk};
//! use weir_operators::{expr::Expr, metrics::ComponentMetrics, schema::*, value::*};
//!
//! let schema = Schema::new(vec![Field::new("t", FieldType::F64)]);
//! let rows: Vec<Record> = (0..10).map(|t| Record::new(vec![Value::F64(t as f64)])).collect();
//! let chunk = Chunk::from_rows(&arrow_schema(&schema), &rows);
//! let (a, b) = (Arc::new(ComponentMetrics::default()), Arc::new(ComponentMetrics::default()));
//! let (ma, mb) = (Arc::clone(&a), Arc::clone(&b));
//! let above = |e: &str| {
//!     let e = Expr::compile(e, &schema).unwrap();
//!     move |c: &Chunk| c.filter(&e.eval_mask(c.columns(), c.len()))
//! };
//! let (over_2, over_6) = (above("t > 2"), above("t > 6"));
//! let captured = timely::example(move |scope| {
//!     let input = vec![chunk].to_stream(scope).container::<Vec<Chunk>>();
//!     let stages = vec![Stage::new("a", ma, over_2), Stage::new("b", mb, over_6)];
//!     chain(input, stages).capture()
//! });
//! let kept: usize = captured.try_iter().map(|e| match e {
//!     Event::Messages(_, c) => c.iter().map(Chunk::len).sum(),
//!     _ => 0,
//! }).sum();
//! assert_eq!(kept, 3);
//! assert_eq!((a.snapshot().records_in, a.snapshot().records_out), (10, 7));
//! assert_eq!((b.snapshot().records_in, b.snapshot().records_out), (7, 3));
//! ```

use std::sync::Arc;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;

use crate::chunk::Chunk;
use crate::metrics::ComponentMetrics;
use crate::Batches;

/// One stateless transform of a [`chain`]: its name, its counters, and what it makes of a
/// chunk.
pub struct Stage {
    name: String,
    metrics: Arc<ComponentMetrics>,
    rewrite: Box<dyn FnMut(&Chunk) -> Chunk>,
}

impl Stage {
    /// A stage named `name` (a component id) applying `rewrite` to each chunk.
    pub fn new(
        name: &str,
        metrics: Arc<ComponentMetrics>,
        rewrite: impl FnMut(&Chunk) -> Chunk + 'static,
    ) -> Stage {
        Stage {
            name: name.to_string(),
            metrics,
            rewrite: Box::new(rewrite),
        }
    }
}

/// Builds one operator applying `stages` in order to every chunk of `input`: each stage's
/// result is the next one's input, a chunk that comes out empty goes no further (and is not
/// sent), and each stage counts the records it takes and gives.
pub fn chain<'s>(input: Batches<'s>, mut stages: Vec<Stage>) -> Batches<'s> {
    let name = stages
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(" -> ");
    input.unary::<CapacityContainerBuilder<Vec<Chunk>>, _, _, _>(
        Pipeline,
        &name,
        move |_cap, _info| {
            let mut out = Vec::new();
            let mut counts = vec![(0u64, 0u64); stages.len()];
            move |input, output| {
                input.for_each(|cap, data: &mut Vec<Chunk>| {
                    for c in data.iter() {
                        let mut result: Option<Chunk> = None;
                        for (stage, (n_in, n_out)) in stages.iter_mut().zip(&mut counts) {
                            let x = result.as_ref().unwrap_or(c);
                            *n_in += x.len() as u64;
                            let r = (stage.rewrite)(x);
                            *n_out += r.len() as u64;
                            let empty = r.is_empty();
                            result = Some(r);
                            if empty {
                                break;
                            }
                        }
                        if let Some(r) = result.filter(|r| !r.is_empty()) {
                            out.push(r);
                        }
                    }
                    for (stage, (n_in, n_out)) in stages.iter().zip(&mut counts) {
                        stage.metrics.add_in(std::mem::take(n_in));
                        stage.metrics.add_out(std::mem::take(n_out));
                    }
                    if !out.is_empty() {
                        output.session(&cap).give_container(&mut out);
                        out.clear();
                    }
                });
            }
        },
    )
}

/// An operator output of record batches.
pub(crate) type RecordOutput = timely::dataflow::operators::generic::OutputBuilder<
    crate::Time,
    timely::container::CapacityContainerBuilder<Vec<crate::schema::Record>>,
>;

/// Sends `buf` (when it holds anything) on output `port` at the input capability's time `t`,
/// leaving it empty; returns how many records were sent.
pub(crate) fn give_at(
    out: &mut RecordOutput,
    cap: &timely::dataflow::operators::InputCapability<crate::Time>,
    t: crate::Time,
    port: usize,
    buf: &mut Vec<crate::schema::Record>,
) -> u64 {
    let n = buf.len() as u64;
    if n > 0 {
        out.activate()
            .session(&cap.delayed(&t, port))
            .give_container(buf);
        buf.clear();
    }
    n
}
