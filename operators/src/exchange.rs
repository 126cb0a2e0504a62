//! Exchange by key, columnar: each chunk's key columns are hashed in one pass
//! ([`Chunk::key_hashes`]), the chunk is split per worker with Arrow's `take`, and each part
//! goes to the worker that owns its keys (`hash mod workers`, the same worker a row with that
//! key is routed to). Between processes a part travels as one Arrow IPC message.
//!
//! ```
//! use timely::dataflow::operators::{Capture, ToStream};
//! use timely::dataflow::operators::capture::Event;
//! use weir_operators::chunk::{arrow_schema, Chunk};
//! use weir_operators::exchange::exchange_by_key;
//! use weir_operators::schema::{Field, Record, Schema};
//! use weir_operators::value::{FieldType, Value};
//!
//! let schema = arrow_schema(&Schema::new(vec![Field::new("k", FieldType::I64)]));
//! let rows: Vec<Record> = (0..100).map(|i| Record::new(vec![Value::I64(i % 7)])).collect();
//! let chunk = Chunk::from_rows(&schema, &rows);
//! let captured = timely::example(move |scope| {
//!     let input = vec![chunk].to_stream(scope).container::<Vec<Chunk>>();
//!     exchange_by_key(input, vec![0]).capture()
//! });
//! let n: usize = captured
//!     .try_iter()
//!     .filter_map(|e| match e {
//!         Event::Messages(_, chunks) => Some(chunks.iter().map(Chunk::len).sum::<usize>()),
//!         Event::Progress(_) => None,
//!     })
//!     .sum();
//! assert_eq!(n, 100);
//! ```

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Exchange;

use crate::chunk::Chunk;
use crate::Batches;

/// How a keyed operator's row input reaches the worker that owns its keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routing {
    /// The operator exchanges its rows by key hash itself.
    ByKey,
    /// The input was already exchanged by [`exchange_by_key`] with the operator's key: every
    /// record stays on its worker.
    Partitioned,
}

/// Sends every record of `input` to the worker that owns the hash of its fields at `key`.
pub fn exchange_by_key(input: Batches<'_>, key: Vec<usize>) -> Batches<'_> {
    let peers = input.scope().peers();
    if peers == 1 {
        return input;
    }
    let tagged = input.unary::<CapacityContainerBuilder<Vec<(u64, Chunk)>>, _, _, _>(
        Pipeline,
        "SplitByKey",
        move |_cap, _info| {
            move |input, output| {
                input.for_each(|cap, data: &mut Vec<Chunk>| {
                    let mut session = output.session(&cap);
                    for c in data.drain(..) {
                        for (part, chunk) in c.split(&key, peers) {
                            session.give((part as u64, chunk));
                        }
                    }
                });
            }
        },
    );
    route(tagged)
}

/// Sends each chunk of `tagged` to the worker its tag names (a part from [`Chunk::split`]).
pub(crate) fn route<'s>(
    tagged: timely::dataflow::Stream<'s, crate::Time, Vec<(u64, Chunk)>>,
) -> Batches<'s> {
    tagged
        .exchange(|(part, _)| *part)
        .unary::<CapacityContainerBuilder<Vec<Chunk>>, _, _, _>(
            Pipeline,
            "Untag",
            move |_cap, _info| {
                let mut out = Vec::new();
                move |input, output| {
                    input.for_each(|cap, data: &mut Vec<(u64, Chunk)>| {
                        out.extend(data.drain(..).map(|(_, c)| c));
                        output.session(&cap).give_container(&mut out);
                        out.clear();
                    });
                }
            },
        )
}
