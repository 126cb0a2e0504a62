//! Lines from a byte stream, for the sources that read a stream they do not control (standard
//! input, TCP connections): reader threads cut the stream into chunks of whole lines, stamped
//! with the time they were read, and hand them to the source through one bounded channel. When
//! the pipeline falls behind, the channel fills, a reader blocks on it and stops reading — and
//! the writer at the other end (a shell pipe, a TCP peer through TCP flow control) is pushed
//! back instead of Weir buffering without bound.
//!
//! ```
//! use weir_operators::lines::{chunks, read_lines, Chunk};
//!
//! let (tx, rx) = chunks();
//! let input: &[u8] = b"{\"a\": 1}\n{\"a\": 2}\nno newline at the end";
//! read_lines(input, tx, "the example", || 7, || ());
//! let all: Vec<Chunk> = rx.iter().collect();
//! let bytes: Vec<u8> = all.into_iter().flat_map(|c| c.unwrap().0).collect();
//! assert_eq!(bytes, b"{\"a\": 1}\n{\"a\": 2}\nno newline at the end");
//! ```

use std::io::Read;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};

use crate::decode::DecodeSpec;
use crate::file_source::{trim_line_end, NOT_UTF8};
use crate::reading::{Batch, Progress};
use crate::value::Micros;

/// Chunks in flight between the readers and the source.
pub const CHUNKS_IN_FLIGHT: usize = 16;

/// Whole lines and the time they were read, or the error that ended a stream.
pub type Chunk = Result<(Vec<u8>, Micros), String>;

/// The bounded channel between readers and a source.
pub fn chunks() -> (SyncSender<Chunk>, Receiver<Chunk>) {
    sync_channel(CHUNKS_IN_FLIGHT)
}

/// Reads `input` to its end, sending chunks of whole lines (the last one may lack its newline)
/// stamped with `now()`, and calling `wake()` after each. A read error is sent as the stream's
/// last chunk, naming `what`. Returns when the input ends or the channel is closed, having
/// dropped its sender (the source ends when every sender is gone) and woken the source.
pub fn read_lines(
    mut input: impl Read,
    tx: SyncSender<Chunk>,
    what: &str,
    now: impl Fn() -> Micros,
    wake: impl Fn(),
) {
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // Not the end of the input: the run must not pass it off as one.
                let _ = tx.send(Err(format!("cannot read {what}: {e}")));
                wake();
                return;
            }
        };
        pending.extend_from_slice(&buf[..n]);
        if let Some(nl) = pending.iter().rposition(|b| *b == b'\n') {
            let rest = pending.split_off(nl + 1);
            let chunk = std::mem::replace(&mut pending, rest);
            if tx.send(Ok((chunk, now()))).is_err() {
                return;
            }
            wake();
        }
    }
    if !pending.is_empty() {
        let _ = tx.send(Ok((pending, now())));
    }
    drop(tx);
    wake();
}

/// The source side: decodes the chunks waiting in `rx` into `batch` (a few per activation).
/// `name` is how lines are known in ids and dead letters (`stdin`, `tcp`); `line_no` counts
/// lines across chunks. `Done` once every sender is gone.
pub fn decode_chunks(
    rx: &Receiver<Chunk>,
    decode: &DecodeSpec,
    name: &str,
    line_no: &mut u64,
    batch: &mut Batch,
) -> Progress {
    for _ in 0..4 {
        match rx.try_recv() {
            Ok(Ok((chunk, read_at))) => {
                // Latency counts from when the line was read.
                batch.ingest = read_at;
                // Every chunk but a stream's last ends with a newline; drop the empty tail.
                let chunk = chunk.strip_suffix(b"\n").unwrap_or(&chunk);
                for raw in chunk.split(|b| *b == b'\n') {
                    *line_no += 1;
                    let raw = trim_line_end(raw);
                    if raw.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    match std::str::from_utf8(raw) {
                        Ok(line) => {
                            let d = decode.decode_json(line, name, *line_no);
                            batch.accept(decode, d, name, *line_no, line);
                        }
                        Err(_) => {
                            let shown = String::from_utf8_lossy(raw);
                            batch.accept(decode, Err(NOT_UTF8.into()), name, *line_no, &shown);
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
