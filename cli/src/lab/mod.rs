//! The latency lab behind `weir compare`: runs one pipeline under several configurations (execution mode, workers,
//! offered rate), one after another, each in its own `weir run` process for a fixed duration
//! after a warm-up; tabulates throughput and latency, and draws the latency distributions as a
//! percentile plot. It can also search for the highest rate each configuration sustains, and
//! redraw saved reports.
//!
//! ```
//! use weir_cli::lab::{parse_modes, parse_rate};
//!
//! assert_eq!(parse_rate("100k").unwrap(), 100_000.0);
//! assert_eq!(parse_rate("2.5M").unwrap(), 2_500_000.0);
//! let modes = parse_modes("continuous,micro-batch:100ms").unwrap();
//! assert_eq!(modes[1].label(), "micro-batch 100ms");
//! ```

mod config;
mod plot;
mod row;
mod runner;
#[cfg(test)]
mod tests;

pub use config::{parse_modes, parse_rate, short_rate, ModeSpec};
pub use plot::plot;
pub use row::{supported, table, Row};
pub use runner::Runner;
