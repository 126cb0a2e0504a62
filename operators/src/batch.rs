//! The shell of the stateless transforms (`filter`, `map`): an operator that rewrites each
//! batch of records in place, on the worker that holds it, counting records in and out.

use std::sync::Arc;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;

use crate::metrics::ComponentMetrics;
use crate::schema::Record;
use crate::Records;

/// Builds an operator applying `rewrite` to every batch of `input`.
pub(crate) fn per_batch<'s>(
    input: Records<'s>,
    name: &str,
    metrics: Arc<ComponentMetrics>,
    mut rewrite: impl FnMut(&mut Vec<Record>) + 'static,
) -> Records<'s> {
    input.unary::<CapacityContainerBuilder<Vec<Record>>, _, _, _>(
        Pipeline,
        name,
        move |_cap, _info| {
            move |input, output| {
                input.for_each(|cap, data: &mut Vec<Record>| {
                    metrics.add_in(data.len() as u64);
                    rewrite(data);
                    metrics.add_out(data.len() as u64);
                    if !data.is_empty() {
                        output.session(&cap).give_container(data);
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
