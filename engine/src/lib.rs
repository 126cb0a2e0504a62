//! Weir's engine: pipeline files in, running timely dataflows out.
//!
//! Data flows one way: TOML text → [`spec`] (sections, components and their typed configs, with
//! spans) → [`plan`] (validated, compiled, in topological order) → [`run`] (a timely dataflow on
//! every worker) → sinks, the [`summary`] and the [`report`]. Every configuration problem on the way is a
//! [`diag::Diag`] naming the file, line, column and component.
//!
//! ```
//! use weir_engine::{plan, run};
//!
//! let toml = r#"
//! [sources.events]
//! type = "generator"
//! profile = "iot"
//! events = 1000
//!
//! [transforms.hot]
//! type = "filter"
//! inputs = ["events"]
//! condition = "kind = 'reading' AND temperature > 30.0"
//!
//! [sinks.out]
//! type = "null"
//! inputs = ["hot"]
//! "#;
//! let (plan, diags, _) = plan::load("example.toml", toml, &[]);
//! assert!(diags.is_empty());
//! let opts = run::RunOptions { workers: Some(2), ..Default::default() };
//! let report = run::run(&plan.unwrap(), &opts, Default::default()).unwrap();
//! assert_eq!(report.components[0].metrics.records_out, 1000);
//! ```

#![forbid(missing_docs)]
// Diagnostics are large, and returned only on the cold path of validating a pipeline.
#![allow(clippy::result_large_err)]

pub mod checkpoints;
pub mod cluster;
pub mod components;
pub mod diag;
pub mod graph;
mod introspect;
pub mod live;
pub mod monitor;
pub mod options;
pub mod outcome;
pub mod pipeline_schema;
pub mod pipeline_tests;
pub mod plan;
pub mod produce;
pub mod recovery;
pub mod report;
pub mod run;
pub mod spec;
pub mod summary;
