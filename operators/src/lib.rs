//! Weir's dataflow operators and the record model they share.
//!
//! Every operator here is built from an already validated, compiled description (field names
//! resolved to positions, expressions compiled), so the per-record path does no name look-ups.
//! The `weir-engine` crate turns pipeline files into those descriptions and wires the operators
//! into a timely dataflow graph.

#![forbid(missing_docs)]

pub mod expr;
pub mod schema;
pub mod suggest;
pub mod time;
pub mod value;
