//! How to run a plan: worker threads, status lines, the cluster this process belongs to, the
//! warm-up and the measured duration ([`RunOptions`]).

use std::time::Duration;

/// How to run.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Worker threads per process (overrides the pipeline's `workers`).
    pub workers: Option<usize>,
    /// Print status lines to standard error this often while the run lasts.
    pub status_every: Option<Duration>,
    /// Show a live status line (or a progress bar, for a bounded run) on standard error
    /// instead of status lines. Only for a terminal.
    pub progress: bool,
    /// Run as one process of a cluster (timely's cluster mode).
    pub cluster: Option<Cluster>,
    /// Latency is recorded, and throughput measured, only after this long.
    pub warmup: Duration,
    /// Stop the run this long after the warm-up.
    pub duration: Option<Duration>,
    /// Stop the run, as `duration` would, once this process's sources have read this many
    /// events: an end on data rather than on a clock, for live input (a topic, a socket).
    pub stop_after: Option<u64>,
    /// Someone watching the run (the dashboard, `weir tap`): the run taps the ports it asks
    /// for and hands it the run's live view when it starts.
    pub observer: Option<std::sync::Arc<crate::live::Observer>>,
    /// With `[pipeline] checkpoint`: discard the checkpoints instead of resuming from them.
    pub from_scratch: bool,
}

/// One process's place in a cluster.
#[derive(Clone, Debug)]
pub struct Cluster {
    /// This process's index, from 0.
    pub process: usize,
    /// Every process's address (`host:port`), in process order.
    pub addresses: Vec<String>,
    /// The secret the processes prove to each other when they connect.
    pub secret: crate::cluster::Secret,
}
