//! Lines from byte streams, for the sources that read streams they do not control (standard
//! input, TCP connections). A [`Splitter`] per stream cuts its bytes into chunks of whole lines
//! (looking at each byte once, however long a line grows), bounds a line's length, and says what
//! became of a line cut short; the chunks go to the source through one bounded channel. When the
//! pipeline falls behind, the channel fills, the reader blocks on it and stops reading — and
//! the writer at the other end (a shell pipe, a TCP peer through TCP flow control) is pushed
//! back instead of Weir buffering without bound.
//!
//! ```
//! use weir_operators::lines::{chunks, read_lines, Piece};
//!
//! let (tx, rx) = chunks();
//! let input: &[u8] = b"{\"a\": 1}\n{\"a\": 2}\nno newline at the end";
//! read_lines(input, tx, "the example", 1 << 20, || 7, || ());
//! let lines: Vec<u8> = rx
//!     .iter()
//!     .flat_map(|p| match p {
//!         Piece::Lines(bytes, _) => bytes,
//!         _ => unreachable!(),
//!     })
//!     .collect();
//! assert_eq!(lines, b"{\"a\": 1}\n{\"a\": 2}\nno newline at the end");
//! ```

use std::io::Read;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};

use crate::decode::DecodeSpec;
use crate::framing::{escape_bytes, strip_bom, trim_line_end};
use crate::reading::{Batch, Progress};
use crate::value::Micros;

/// Chunks in flight between the readers and the source.
pub const CHUNKS_IN_FLIGHT: usize = 16;

/// What a reader hands the source.
#[derive(Debug)]
pub enum Piece {
    /// Whole lines (the last of a stream may lack its newline), and when they were read.
    Lines(Vec<u8>, Micros),
    /// A line longer than the bound: its first bytes, its length, when it ended.
    TooLong(Vec<u8>, u64, Micros),
    /// A stream broke: the part of a line it was in the middle of (may be empty), and why.
    /// The partial line is a bad record; the source goes on unless `fatal`.
    Broken {
        /// The bytes of the unfinished line.
        partial: Vec<u8>,
        /// What happened.
        reason: String,
        /// Whether the run must stop (standard input), or only this stream ends (a connection).
        fatal: bool,
        /// When.
        at: Micros,
    },
}

/// The bounded channel between readers and a source.
pub fn chunks() -> (SyncSender<Piece>, Receiver<Piece>) {
    sync_channel(CHUNKS_IN_FLIGHT)
}

/// One stream's line state: bytes after its last newline, and whether an overlong line is
/// being skipped.
#[derive(Debug)]
pub struct Splitter {
    max: usize,
    pending: Vec<u8>,
    /// Inside an overlong line: its length so far (its start is in `pending`).
    skipping: Option<u64>,
    at_start: bool,
}

impl Splitter {
    /// A splitter for lines of at most `max` bytes.
    pub fn new(max: usize) -> Splitter {
        Splitter {
            max,
            pending: Vec::new(),
            skipping: None,
            at_start: true,
        }
    }

    /// Takes newly read bytes; pushes what is complete to `out`, stamped `now`.
    pub fn push(&mut self, mut bytes: &[u8], now: Micros, out: &mut Vec<Piece>) {
        if self.at_start {
            // A byte-order mark is not part of the first line (it may come split over reads).
            let seen = self.pending.len() + bytes.len();
            if seen < 3 && b"\xEF\xBB\xBF".starts_with(&[&self.pending[..], bytes].concat()) {
                self.pending.extend_from_slice(bytes);
                return;
            }
            self.at_start = false;
            let mut head = std::mem::take(&mut self.pending);
            head.extend_from_slice(bytes);
            let rest = strip_bom(&head).to_vec();
            return self.push(&rest, now, out);
        }
        while !bytes.is_empty() {
            if let Some(len) = self.skipping.as_mut() {
                match bytes.iter().position(|b| *b == b'\n') {
                    Some(i) => {
                        let total = *len + i as u64;
                        self.skipping = None;
                        let prefix = std::mem::take(&mut self.pending);
                        out.push(Piece::TooLong(prefix, total, now));
                        bytes = &bytes[i + 1..];
                    }
                    None => {
                        *len += bytes.len() as u64;
                        return;
                    }
                }
                continue;
            }
            // Only the new bytes are scanned: `pending` holds no newline.
            match bytes.iter().rposition(|b| *b == b'\n') {
                Some(nl) => {
                    let mut chunk = std::mem::take(&mut self.pending);
                    chunk.extend_from_slice(&bytes[..=nl]);
                    // Overlong lines inside the chunk are cut out here.
                    self.emit(chunk, now, out);
                    bytes = &bytes[nl + 1..];
                }
                None => {
                    let room = self.max.saturating_sub(self.pending.len());
                    if bytes.len() > room {
                        self.pending.extend_from_slice(&bytes[..room]);
                        self.skipping = Some(self.max as u64 + (bytes.len() - room) as u64);
                    } else {
                        self.pending.extend_from_slice(bytes);
                    }
                    return;
                }
            }
        }
    }

    /// Sends a chunk of whole lines, splitting out any line longer than the bound.
    fn emit(&self, chunk: Vec<u8>, now: Micros, out: &mut Vec<Piece>) {
        if chunk.len() <= self.max + 2 || !chunk.split(|b| *b == b'\n').any(|l| l.len() > self.max)
        {
            out.push(Piece::Lines(chunk, now));
            return;
        }
        let mut run = Vec::new();
        for line in chunk.split_inclusive(|b| *b == b'\n') {
            let content = trim_newline(line);
            if content.len() > self.max {
                if !run.is_empty() {
                    out.push(Piece::Lines(std::mem::take(&mut run), now));
                }
                out.push(Piece::TooLong(
                    content[..self.max].to_vec(),
                    content.len() as u64,
                    now,
                ));
            } else {
                run.extend_from_slice(line);
            }
        }
        if !run.is_empty() {
            out.push(Piece::Lines(run, now));
        }
    }

    /// The stream ended cleanly: its last line, if it lacked a newline.
    pub fn finish(&mut self, now: Micros, out: &mut Vec<Piece>) {
        let rest = std::mem::take(&mut self.pending);
        match self.skipping.take() {
            Some(total) => out.push(Piece::TooLong(rest, total, now)),
            None if !rest.is_empty() => out.push(Piece::Lines(rest, now)),
            None => {}
        }
    }

    /// The stream broke: the unfinished line, and why.
    pub fn broken(&mut self, reason: String, fatal: bool, now: Micros) -> Piece {
        self.skipping = None;
        Piece::Broken {
            partial: std::mem::take(&mut self.pending),
            reason,
            fatal,
            at: now,
        }
    }
}

fn trim_newline(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\n").unwrap_or(line)
}

/// Reads `input` to its end, sending chunks of whole lines stamped with `now()` and calling
/// `wake()` after each. A read error is sent as the stream's last piece (fatal), naming `what`.
/// Returns when the input ends or the channel is closed, having dropped its sender (the source
/// ends when every sender is gone) and woken the source.
pub fn read_lines(
    mut input: impl Read,
    tx: SyncSender<Piece>,
    what: &str,
    max_line_bytes: usize,
    now: impl Fn() -> Micros,
    wake: impl Fn(),
) {
    let mut split = Splitter::new(max_line_bytes);
    let mut buf = vec![0u8; 1 << 16];
    let mut out = Vec::new();
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // Not the end of the input: the run must not pass it off as one.
                let _ = tx.send(split.broken(format!("cannot read {what}: {e}"), true, now()));
                wake();
                return;
            }
        };
        split.push(&buf[..n], now(), &mut out);
        for piece in out.drain(..) {
            if tx.send(piece).is_err() {
                return;
            }
            wake();
        }
    }
    split.finish(now(), &mut out);
    for piece in out.drain(..) {
        let _ = tx.send(piece);
    }
    drop(tx);
    wake();
}

/// The source side: decodes the pieces waiting in `rx` into `batch` (a few per activation).
/// `name` is how lines are known in ids and dead letters (`stdin`, `tcp`); `line_no` counts
/// lines across pieces. `Done` once every sender is gone.
pub fn decode_chunks(
    rx: &Receiver<Piece>,
    decode: &DecodeSpec,
    name: &str,
    line_no: &mut u64,
    batch: &mut Batch,
) -> Progress {
    for _ in 0..4 {
        match rx.try_recv() {
            Ok(Piece::Lines(chunk, read_at)) => {
                // Latency counts from when the line was read.
                batch.ingest = read_at;
                // Every chunk but a stream's last ends with a newline; drop the empty tail.
                let chunk = chunk.strip_suffix(b"\n").unwrap_or(&chunk);
                for raw in chunk.split(|b| *b == b'\n') {
                    *line_no += 1;
                    batch.json_line(decode, trim_line_end(raw), name, *line_no);
                }
            }
            Ok(Piece::TooLong(prefix, bytes, at)) => {
                batch.ingest = at;
                *line_no += 1;
                batch.too_long(decode, trim_line_end(&prefix), bytes, name, *line_no);
            }
            Ok(Piece::Broken {
                partial,
                reason,
                fatal,
                at,
            }) => {
                batch.ingest = at;
                if !partial.is_empty() {
                    *line_no += 1;
                    let why = format!("the line was cut short: {reason}");
                    let shown = escape_bytes(&partial);
                    batch.accept(decode, Err(why), name, *line_no, &shown);
                }
                if fatal {
                    batch.failure = Some(format!("source `{}`: {reason}", decode.source));
                    return Progress::Done;
                }
                eprintln!("weir: source `{}`: {reason}", decode.source);
            }
            Err(TryRecvError::Empty) => return Progress::Waiting,
            Err(TryRecvError::Disconnected) => return Progress::Done,
        }
    }
    Progress::More
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(reads: &[&[u8]], max: usize) -> Vec<String> {
        let mut s = Splitter::new(max);
        let mut out = Vec::new();
        for r in reads {
            s.push(r, 0, &mut out);
        }
        s.finish(0, &mut out);
        out.into_iter()
            .map(|p| match p {
                Piece::Lines(b, _) => format!("lines {:?}", String::from_utf8_lossy(&b)),
                Piece::TooLong(b, n, _) => format!("long {n} {:?}", String::from_utf8_lossy(&b)),
                Piece::Broken { .. } => "broken".into(),
            })
            .collect()
    }

    #[test]
    fn lines_across_reads_long_lines_and_a_bom() {
        assert_eq!(
            split(&[b"\xEF\xBB", b"\xBFab\nc", b"d\n"], 10),
            vec![r#"lines "ab\n""#, r#"lines "cd\n""#]
        );
        assert_eq!(
            split(&[b"abc", b"defgh", b"ij\nk\nlmnopqrstuvwxyz\nxy"], 4),
            vec![
                r#"long 10 "abcd""#,
                r#"lines "k\n""#,
                r#"long 15 "lmno""#,
                r#"lines "xy""#
            ]
        );
        assert_eq!(split(&[b"abcdefg"], 4), vec![r#"long 7 "abcd""#]);
    }

    /// A 50 MB line read 64 KiB at a time is scanned once, not once per read.
    #[test]
    fn a_long_line_costs_linear_time() {
        let mut s = Splitter::new(64 << 20);
        let mut out = Vec::new();
        let block = vec![b'x'; 1 << 16];
        for _ in 0..800 {
            s.push(&block, 0, &mut out);
        }
        s.push(b"\n", 0, &mut out);
        assert!(matches!(&out[..], [Piece::Lines(b, _)] if b.len() == 800 * (1 << 16) + 1));
    }
}
