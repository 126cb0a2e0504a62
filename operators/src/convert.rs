//! Conversions between row streams and chunk streams: the temporal join works on rows inside
//! differential, windows and joins emit their (comparatively few) results as rows, and the
//! row-level APIs of windows and joins take rows; `to_chunks` packs each batch of rows into one
//! [`Chunk`], `to_rows` unpacks chunks. Both run on the worker that holds the data.
//!
//! ```
//! use timely::dataflow::operators::{Capture, ToStream};
//! use timely::dataflow::operators::capture::Extract;
//! use weir_operators::chunk::arrow_schema;
//! use weir_operators::convert::{to_chunks, to_rows};
//! use weir_operators::schema::{Field, Record, Schema};
//! use weir_operators::value::{FieldType, Value};
//!
//! let schema = arrow_schema(&Schema::new(vec![Field::new("x", FieldType::I64)]));
//! let rows: Vec<Record> = (0..5).map(|i| Record::new(vec![Value::I64(i)])).collect();
//! let expected = rows.clone();
//! let captured = timely::example(move |scope| {
//!     let input = rows.to_stream(scope).container::<Vec<Record>>();
//!     to_rows(to_chunks(input, schema)).capture()
//! });
//! let back: Vec<Record> = captured.extract().into_iter().flat_map(|(_, r)| r).collect();
//! assert_eq!(back, expected);
//! ```

use arrow::datatypes::SchemaRef;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;

use crate::chunk::Chunk;
use crate::schema::Record;
use crate::{Batches, Records};

/// Packs each batch of rows into one chunk laid out by `schema` (from
/// [`crate::chunk::arrow_schema`]).
pub fn to_chunks(input: Records<'_>, schema: SchemaRef) -> Batches<'_> {
    input.unary::<CapacityContainerBuilder<Vec<Chunk>>, _, _, _>(
        Pipeline,
        "ToChunks",
        move |_cap, _info| {
            let mut out = Vec::new();
            move |input, output| {
                input.for_each(|cap, data: &mut Vec<Record>| {
                    if !data.is_empty() {
                        out.push(Chunk::from_rows(&schema, data));
                        output.session(&cap).give_container(&mut out);
                        out.clear();
                    }
                });
            }
        },
    )
}

/// Unpacks chunks into rows.
pub fn to_rows(input: Batches<'_>) -> Records<'_> {
    input.unary::<CapacityContainerBuilder<Vec<Record>>, _, _, _>(
        Pipeline,
        "ToRows",
        move |_cap, _info| {
            let mut rows = Vec::new();
            move |input, output| {
                input.for_each(|cap, data: &mut Vec<Chunk>| {
                    for c in data.iter() {
                        c.push_rows(&mut rows);
                    }
                    if !rows.is_empty() {
                        output.session(&cap).give_container(&mut rows);
                        rows.clear();
                    }
                });
            }
        },
    )
}
