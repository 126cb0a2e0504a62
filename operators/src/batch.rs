//! The shell of the stateless transforms (`filter`, `map`): an operator that rewrites each
//! chunk, on the worker that holds it, counting records in and out.

use std::sync::Arc;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;

use crate::chunk::Chunk;
use crate::metrics::ComponentMetrics;
use crate::Batches;

/// Builds an operator applying `rewrite` to every chunk of `input` (empty results are not
/// sent).
pub(crate) fn per_chunk<'s>(
    input: Batches<'s>,
    name: &str,
    metrics: Arc<ComponentMetrics>,
    mut rewrite: impl FnMut(&Chunk) -> Chunk + 'static,
) -> Batches<'s> {
    input.unary::<CapacityContainerBuilder<Vec<Chunk>>, _, _, _>(
        Pipeline,
        name,
        move |_cap, _info| {
            let mut out = Vec::new();
            move |input, output| {
                input.for_each(|cap, data: &mut Vec<Chunk>| {
                    let (mut n_in, mut n_out) = (0, 0);
                    for c in data.iter() {
                        n_in += c.len() as u64;
                        let r = rewrite(c);
                        n_out += r.len() as u64;
                        if !r.is_empty() {
                            out.push(r);
                        }
                    }
                    metrics.add_in(n_in);
                    metrics.add_out(n_out);
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
