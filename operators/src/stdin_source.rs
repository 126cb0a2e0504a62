//! The `stdin` source: JSON lines from standard input, so `weir` composes with shell pipes.
//!
//! Worker 0 reads; a reader thread hands complete lines over through a bounded channel and
//! wakes the operator, so a slow pipeline pushes back on the writer instead of buffering
//! without bound. Assigned ids are `source:stdin:line`.

use std::io::Read;
use std::sync::mpsc::{sync_channel, Receiver, TryRecvError};
use std::sync::Arc;

use timely::dataflow::Scope;

use crate::decode::DecodeSpec;
use crate::file_source::{trim_line_end, NOT_UTF8};
use crate::flow::SourceEnv;
use crate::metrics::ComponentMetrics;
use crate::reading::{reading_source, Batch, Progress};
use crate::value::Micros;
use crate::{Records, Time};

/// Chunks of complete lines in flight between the reader thread and the operator.
const CHUNKS_IN_FLIGHT: usize = 16;

/// Builds the stdin source on this worker: returns (records, dead letters).
pub fn stdin_source<'s>(
    scope: Scope<'s, Time>,
    name: &str,
    spec: Arc<DecodeSpec>,
    env: SourceEnv,
    metrics: Arc<ComponentMetrics>,
) -> (Records<'s>, Records<'s>) {
    let reads = scope.index() == 0;
    let clock = env.clock;
    let worker = scope.worker().clone();
    let decode = Arc::clone(&spec);
    let watermark = spec.watermark;
    reading_source(scope, name, watermark, env, metrics, move |address| {
        // Chunks of whole lines with the time they were read, or the read error that ended
        // the input.
        type Chunk = Result<(Vec<u8>, Micros), String>;
        let rx: Option<Receiver<Chunk>> = reads.then(|| {
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
                            Ok(0) => break,
                            Ok(n) => n,
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                            Err(e) => {
                                // Not the end of the input: the run must not pass it off as one.
                                let _ = tx.send(Err(format!("cannot read standard input: {e}")));
                                let _ = wake.activate();
                                return;
                            }
                        };
                        pending.extend_from_slice(&buf[..n]);
                        if let Some(nl) = pending.iter().rposition(|b| *b == b'\n') {
                            let rest = pending.split_off(nl + 1);
                            let chunk = std::mem::replace(&mut pending, rest);
                            if tx.send(Ok((chunk, clock.now_micros()))).is_err() {
                                return;
                            }
                            let _ = wake.activate();
                        }
                    }
                    if !pending.is_empty() {
                        let _ = tx.send(Ok((pending, clock.now_micros())));
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
                    Ok(Ok((chunk, read_at))) => {
                        // Latency counts from when the line was read from the pipe.
                        batch.ingest = read_at;
                        // Every chunk but the last ends with a newline; drop the empty tail.
                        let chunk = chunk.strip_suffix(b"\n").unwrap_or(&chunk);
                        for raw in chunk.split(|b| *b == b'\n') {
                            line_no += 1;
                            let raw = trim_line_end(raw);
                            if raw.iter().all(u8::is_ascii_whitespace) {
                                continue;
                            }
                            match std::str::from_utf8(raw) {
                                Ok(line) => {
                                    let d = decode.decode_json(line, "stdin", line_no);
                                    batch.accept(&decode, d, "stdin", line_no, line);
                                }
                                Err(_) => {
                                    let shown = String::from_utf8_lossy(raw);
                                    batch.accept(
                                        &decode,
                                        Err(NOT_UTF8.into()),
                                        "stdin",
                                        line_no,
                                        &shown,
                                    );
                                }
                            }
                        }
                    }
                    Ok(Err(e)) => {
                        batch.failure = Some(format!("source `{}`: {e}", decode.source));
                        return Progress::Done;
                    }
                    Err(TryRecvError::Empty) => return Progress::Waiting,
                    Err(TryRecvError::Disconnected) => return Progress::Done,
                }
            }
            Progress::More
        }
    })
}
