//! The `stdin` source: JSON lines from standard input, so `weir` composes with shell pipes.
//!
//! Worker 0 reads; a reader thread hands complete lines over through a bounded channel and
//! wakes the operator, so a slow pipeline pushes back on the writer instead of buffering
//! without bound. Assigned ids are `source:stdin:line`.

use std::io::Read;
use std::sync::mpsc::{sync_channel, Receiver, TryRecvError};
use std::sync::Arc;

use timely::dataflow::Scope;

use crate::control::RunControl;
use crate::decode::DecodeSpec;
use crate::metrics::ComponentMetrics;
use crate::reading::{reading_source, Batch, Progress};
use crate::{Records, Time};

/// Chunks of complete lines in flight between the reader thread and the operator.
const CHUNKS_IN_FLIGHT: usize = 16;

/// Builds the stdin source on this worker: returns (records, dead letters).
pub fn stdin_source<'s>(
    scope: Scope<'s, Time>,
    name: &str,
    spec: Arc<DecodeSpec>,
    ctl: RunControl,
    metrics: Arc<ComponentMetrics>,
) -> (Records<'s>, Records<'s>) {
    let reads = scope.index() == 0;
    let worker = scope.worker().clone();
    let decode = Arc::clone(&spec);
    reading_source(scope, name, ctl, metrics, move |address| {
        let rx: Option<Receiver<Vec<u8>>> = reads.then(|| {
            let (tx, rx) = sync_channel(CHUNKS_IN_FLIGHT);
            let wake = worker.sync_activator_for(address.to_vec());
            std::thread::Builder::new()
                .name("weir-stdin".into())
                .spawn(move || {
                    let mut stdin = std::io::stdin().lock();
                    let mut pending: Vec<u8> = Vec::new();
                    let mut buf = vec![0u8; 1 << 16];
                    loop {
                        let n = match stdin.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        pending.extend_from_slice(&buf[..n]);
                        if let Some(nl) = pending.iter().rposition(|b| *b == b'\n') {
                            let rest = pending.split_off(nl + 1);
                            if tx.send(std::mem::replace(&mut pending, rest)).is_err() {
                                return;
                            }
                            let _ = wake.activate();
                        }
                    }
                    if !pending.is_empty() {
                        let _ = tx.send(pending);
                    }
                    drop(tx);
                    let _ = wake.activate();
                })
                .expect("spawning the stdin reader thread");
            rx
        });
        let mut line_no = 0u64;
        move |batch: &mut Batch| {
            let Some(rx) = rx.as_ref() else {
                return Progress::Done;
            };
            for _ in 0..4 {
                match rx.try_recv() {
                    Ok(chunk) => {
                        for raw in chunk.split(|b| *b == b'\n') {
                            line_no += 1;
                            if raw.iter().all(|b| b.is_ascii_whitespace()) {
                                continue;
                            }
                            match std::str::from_utf8(raw) {
                                Ok(line) => {
                                    let line = line.trim_end_matches('\r');
                                    let d = decode.decode_json(line, "stdin", line_no);
                                    batch.accept(&decode, d, "stdin", line_no, line);
                                }
                                Err(_) => batch.accept(
                                    &decode,
                                    Err("the line is not valid UTF-8".into()),
                                    "stdin",
                                    line_no,
                                    "",
                                ),
                            }
                        }
                        // `split` yields an empty piece after the final newline.
                        if chunk.last() == Some(&b'\n') {
                            line_no -= 1;
                        }
                    }
                    Err(TryRecvError::Empty) => return Progress::Waiting,
                    Err(TryRecvError::Disconnected) => return Progress::Done,
                }
            }
            Progress::More
        }
    })
}
