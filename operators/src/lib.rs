//! Weir's dataflow operators and the record model they share.
//!
//! Every operator here is built from an already validated, compiled description (field names
//! resolved to positions, expressions compiled), so the per-record path does no name look-ups.
//! The `weir-engine` crate turns pipeline files into those descriptions and wires the operators
//! into a timely dataflow graph.

#![forbid(missing_docs)]

pub mod aggregate;
pub mod alert;
pub mod expr;
pub mod schema;
pub mod suggest;
pub mod time;
pub mod value;
pub mod watermark;

pub mod batch;
pub mod checkpoint;
pub mod chunk;
pub mod clock;
pub mod control;
pub mod convert;
pub mod decode;
pub mod encode;
pub mod epochs;
pub mod exact_sum;
pub mod exchange;
pub mod file_source;
pub mod filter;
pub mod flow;
pub mod framing;
pub mod generator;
pub mod infer;
mod ingests;
pub mod interval_join;
pub mod join;
pub mod kafka;
pub mod kafka_source;
mod keyed;
pub mod late;
pub mod latency;
pub mod lines;
pub mod map;
pub mod metrics;
pub mod mqtt;
pub mod onnx;
pub mod ordered;
pub mod parquet_sink;
pub mod parquet_source;
pub mod pending_sink;
pub mod predict;
pub mod reading;
pub mod side_store;
pub mod sink;
pub mod sketch;
pub mod stdin_source;
pub mod tap;
pub mod tcp_source;
pub mod temporal_join;
pub mod test_source;
pub mod unnest;
pub mod view;
pub mod window;
pub mod window_join;

/// The timely timestamp of Weir's dataflows: event time in microseconds since the epoch. A
/// source's capability is a lower bound on the event time of what it will still send.
pub type Time = u64;

/// A stream of records, as rows (inside windows and joins).
pub type Records<'s> = timely::dataflow::Stream<'s, Time, Vec<schema::Record>>;

/// A stream of columnar batches: what operators exchange.
pub type Batches<'s> = timely::dataflow::Stream<'s, Time, Vec<chunk::Chunk>>;
