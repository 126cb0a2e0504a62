//! The `stdin` source: JSON lines from standard input, so `weir` composes with shell pipes.
//!
//! Worker 0 (of process 0) reads; a reader thread hands complete lines over through a bounded
//! channel and wakes the operator ([`lines`](crate::lines)), so a slow pipeline pushes back on
//! the writer instead of buffering without bound. Assigned ids are `source:stdin:line`.

use std::sync::mpsc::Receiver;
use std::sync::Arc;

use timely::dataflow::Scope;

use crate::decode::DecodeSpec;
use crate::flow::SourceEnv;
use crate::lines::{chunks, decode_chunks, read_lines, Piece};
use crate::metrics::ComponentMetrics;
use crate::reading::{reading_source, Batch, Output, Progress};
use crate::{Batches, Time};

/// Builds the stdin source on this worker: returns (records, dead letters).
pub fn stdin_source<'s>(
    scope: Scope<'s, Time>,
    name: &str,
    spec: Arc<DecodeSpec>,
    env: SourceEnv,
    metrics: Arc<ComponentMetrics>,
) -> (Batches<'s>, Batches<'s>) {
    let reads = scope.index() == 0;
    let clock = env.clock;
    let worker = scope.worker().clone();
    let decode = Arc::clone(&spec);
    let max_line = spec.max_line_bytes;
    let out = Output::of(&spec);
    reading_source(scope, name, out, env, metrics, move |address| {
        let rx: Option<Receiver<Piece>> = reads.then(|| {
            let (tx, rx) = chunks();
            let wake = worker.sync_activator_for(address.to_vec());
            std::thread::Builder::new()
                .name("weir-stdin".into())
                .spawn(move || {
                    read_lines(
                        std::io::stdin().lock(),
                        tx,
                        "standard input",
                        max_line,
                        || clock.now_micros(),
                        || {
                            let _ = wake.activate();
                        },
                    )
                })
                .expect("spawning the stdin reader thread");
            rx
        });
        let mut line_no = 0u64;
        move |batch: &mut Batch| match rx.as_ref() {
            None => Progress::Done,
            Some(rx) => decode_chunks(rx, &decode, "stdin", &mut line_no, batch),
        }
    })
}
