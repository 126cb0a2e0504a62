//! The `weir` command's library part: the latency lab behind `weir compare` ([`lab`]). The
//! binary (`src/main.rs`) is a thin layer of argument parsing over `weir-engine`, which turns
//! pipeline files into running dataflows.

#![forbid(missing_docs)]

pub mod lab;
