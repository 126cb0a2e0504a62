//! Framing: cutting byte input into physical lines and CSV records, with bounds, so that every
//! physical line of an input ends up as exactly one of: part of a good record, one counted bad
//! record (with its own line number), or one counted blank line.
//!
//! - [`read_line`] reads one line of at most a given length; a longer line is consumed whole but
//!   kept only as a prefix, and reported as too long (a bad record, never a memory blow-up).
//! - [`CsvRecords`] reads CSV records line by line with `csv-core`. A quoted field may span
//!   lines, but only up to [`CSV_MAX_RECORD_LINES`] lines and the line-length bound: a quote
//!   left open (a stray `"`) makes the line it started on one bad record, and reading resumes on
//!   the line after it, instead of swallowing the rest of the file.
//! - [`escape_bytes`] shows bytes that are not UTF-8 as `\xNN`, keeping the rest as text.
//!
//! ```
//! use weir_operators::framing::{CsvItem, CsvRecords};
//!
//! let input: &[u8] = b"ts,v\r\n1,\"a\nb\"\r\n2,\"open\n\n3,c\n";
//! let mut rows = CsvRecords::new(input, b',', 1 << 20);
//! let mut row = csv::StringRecord::new();
//! let mut seen = Vec::new();
//! while let Some(item) = rows.next(&mut row).unwrap() {
//!     seen.push(match item {
//!         CsvItem::Row { line } => format!("{line}: {:?}", row.iter().collect::<Vec<_>>()),
//!         CsvItem::Bad { line, reason } => format!("{line}: bad ({reason}): {}", rows.raw()),
//!         CsvItem::Blank { line } => format!("{line}: blank"),
//!     });
//! }
//! assert_eq!(seen[0], r#"1: ["ts", "v"]"#);
//! assert_eq!(seen[1], r#"2: ["1", "a\nb"]"#);
//! assert!(seen[2].starts_with("4: bad (unterminated quoted field"));
//! assert!(seen[2].ends_with(r#": 2,"open"#), "the bad line as it was written");
//! assert_eq!(seen[3], "5: blank");
//! assert_eq!(seen[4], r#"6: ["3", "c"]"#);
//! ```

use std::collections::VecDeque;
use std::io::{BufRead, ErrorKind};

/// The default bound on one line (and one CSV record): 16 MiB.
pub const DEFAULT_MAX_LINE_BYTES: usize = 16 << 20;

/// The most physical lines one CSV record (a quoted field with newlines) may span.
pub const CSV_MAX_RECORD_LINES: usize = 64;

/// What [`read_line`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line {
    /// The input has ended.
    End,
    /// A whole line is in the buffer (with its newline, if it had one).
    Whole,
    /// A line of this many bytes, longer than the bound: the buffer holds its first bytes.
    TooLong(u64),
}

/// Reads one line into `buf` (cleared first), keeping at most `max` bytes of it; the rest of a
/// longer line is read and dropped. Scans each byte once.
pub fn read_line(input: &mut impl BufRead, buf: &mut Vec<u8>, max: usize) -> std::io::Result<Line> {
    buf.clear();
    let mut total = 0u64;
    let mut any = false;
    let mut newline = false;
    loop {
        let avail = match input.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            break;
        }
        any = true;
        let take = match avail.iter().position(|b| *b == b'\n') {
            Some(i) => {
                newline = true;
                i + 1
            }
            None => avail.len(),
        };
        let room = max.saturating_add(1).saturating_sub(buf.len());
        buf.extend_from_slice(&avail[..take.min(room)]);
        total += take as u64;
        input.consume(take);
        if newline {
            break;
        }
    }
    if !any {
        return Ok(Line::End);
    }
    let content = total - u64::from(newline);
    if content > max as u64 {
        buf.truncate(max);
        Ok(Line::TooLong(content))
    } else {
        Ok(Line::Whole)
    }
}

/// The reason given for a line longer than the bound.
pub fn too_long(bytes: u64, max: usize) -> String {
    format!(
        "the line is {bytes} bytes, longer than max_line_bytes ({max}); the record shows its start"
    )
}

/// Bytes as text: UTF-8 kept as it is, every byte that is not UTF-8 as `\xNN`.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out
}

/// A line without its `\n` or `\r\n`.
pub fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Strips a UTF-8 byte-order mark.
pub fn strip_bom(line: &[u8]) -> &[u8] {
    line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line)
}

/// One item of a CSV input, by the physical line it starts on (1-based).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CsvItem {
    /// A record: its fields are in the row passed to [`CsvRecords::next`].
    Row {
        /// The line it starts on.
        line: u64,
    },
    /// A bad record (not UTF-8, too long, a quote never closed); [`CsvRecords::raw`] shows it.
    Bad {
        /// Its line.
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// A line with nothing but white space.
    Blank {
        /// Its line.
        line: u64,
    },
}

/// CSV records read line by line (see the module documentation). One buffer holds the record
/// being read (its lines, each ending in `\n`) and is reused from record to record; lines are
/// copied out only in the rare case of a quote left open.
pub struct CsvRecords<R> {
    input: R,
    core: csv_core::Reader,
    max_bytes: usize,
    /// Physical lines read from the input so far.
    lines_read: u64,
    /// Lines to read again (after an unterminated quote), before reading on.
    /// Each with its number, and its length if it was longer than the bound (its bytes are
    /// then its start).
    again: VecDeque<(u64, Vec<u8>, Option<u64>)>,
    /// The record being read: its lines, without their line ends, each followed by `\n`.
    rec: Vec<u8>,
    /// Where each line of `rec` starts, with its number.
    starts: Vec<(u64, usize)>,
    /// The part of `rec` the last item was read from.
    raw: std::ops::Range<usize>,
    out: Vec<u8>,
    ends: Vec<usize>,
    outlen: usize,
    endlen: usize,
    line: Vec<u8>,
}

impl<R: BufRead> CsvRecords<R> {
    /// Reads CSV with `delimiter`; a record (or line) may be at most `max_bytes` long.
    pub fn new(input: R, delimiter: u8, max_bytes: usize) -> CsvRecords<R> {
        CsvRecords {
            input,
            core: csv_core::ReaderBuilder::new()
                .delimiter(delimiter)
                .terminator(csv_core::Terminator::Any(b'\n'))
                .build(),
            max_bytes,
            lines_read: 0,
            again: VecDeque::new(),
            rec: Vec::new(),
            starts: Vec::new(),
            raw: 0..0,
            out: vec![0; 1024],
            ends: vec![0; 64],
            outlen: 0,
            endlen: 0,
            line: Vec::new(),
        }
    }

    /// The last item's input as text (lines joined by `\n`, bytes that are not UTF-8 escaped).
    pub fn raw(&self) -> String {
        escape_bytes(&self.rec[self.raw.clone()])
    }

    /// Starts a new record with nothing in it.
    fn start_record(&mut self) {
        self.rec.clear();
        self.raw = 0..0;
        self.starts.clear();
        self.core.reset();
        self.outlen = 0;
        self.endlen = 0;
    }

    /// The next item; `row` holds a record's fields. `None` at the end of the input.
    pub fn next(&mut self, row: &mut csv::StringRecord) -> std::io::Result<Option<CsvItem>> {
        if self.starts.is_empty() {
            self.start_record();
        }
        loop {
            // The next line: one to read again, or one from the input; a line over the bound
            // comes with its length.
            let again = self.again.pop_front();
            let (no, line, too_long_by): (u64, &[u8], Option<u64>) = match &again {
                Some((no, l, n)) => (*no, l, *n),
                None => match read_line(&mut self.input, &mut self.line, self.max_bytes)? {
                    Line::End if self.starts.is_empty() => return Ok(None),
                    Line::End => {
                        return Ok(Some(self.unterminated("the input ends inside it".into())))
                    }
                    Line::TooLong(n) => {
                        self.lines_read += 1;
                        (self.lines_read, &self.line, Some(n))
                    }
                    Line::Whole => {
                        self.lines_read += 1;
                        (self.lines_read, &self.line, None)
                    }
                },
            };
            if let Some(n) = too_long_by {
                if self.starts.is_empty() {
                    self.rec.extend_from_slice(line);
                    self.raw = 0..self.rec.len();
                    return Ok(Some(CsvItem::Bad {
                        line: no,
                        reason: too_long(n, self.max_bytes),
                    }));
                }
                // Inside a quoted field: the record cannot close within the bound. The long
                // line is read again after the record's first line, still too long.
                let prefix = line.to_vec();
                self.again.push_front((no, prefix, Some(n)));
                return Ok(Some(self.unterminated(format!(
                    "no closing quote within {} bytes",
                    self.max_bytes
                ))));
            }
            let mut content = trim_line_end(line);
            if no == 1 {
                content = strip_bom(content);
            }
            if self.starts.is_empty() && content.iter().all(u8::is_ascii_whitespace) {
                self.raw = 0..0;
                return Ok(Some(CsvItem::Blank { line: no }));
            }
            let at = self.rec.len();
            self.starts.push((no, at));
            self.rec.extend_from_slice(content);
            self.rec.push(b'\n');
            let complete = feed(
                &mut self.core,
                &self.rec[at..],
                &mut self.out,
                &mut self.ends,
                &mut self.outlen,
                &mut self.endlen,
            );
            if complete {
                return Ok(Some(self.finish(row)));
            }
            if self.starts.len() >= CSV_MAX_RECORD_LINES || self.rec.len() > self.max_bytes {
                return Ok(Some(self.unterminated(format!(
                    "no closing quote within {CSV_MAX_RECORD_LINES} lines"
                ))));
            }
        }
    }

    /// The record just completed: its fields into `row`, or a bad record if not UTF-8.
    fn finish(&mut self, row: &mut csv::StringRecord) -> CsvItem {
        let line = self.starts[0].0;
        self.starts.clear();
        self.raw = 0..self.rec.len() - 1;
        row.clear();
        let mut start = 0;
        for &end in &self.ends[..self.endlen] {
            match std::str::from_utf8(&self.out[start..end]) {
                Ok(s) => row.push_field(s),
                Err(_) => {
                    return CsvItem::Bad {
                        line,
                        reason: NOT_UTF8.into(),
                    }
                }
            }
            start = end;
        }
        CsvItem::Row { line }
    }

    /// The record being read never closed its quote: its first line is one bad record, and the
    /// lines after it are read again as new records.
    fn unterminated(&mut self, why: String) -> CsvItem {
        let line = self.starts[0].0;
        let first_end = self.starts.get(1).map_or(self.rec.len(), |s| s.1) - 1;
        for w in self.starts[1..].iter().enumerate().rev() {
            let (k, &(no, from)) = w;
            let to = self.starts.get(k + 2).map_or(self.rec.len(), |s| s.1) - 1;
            self.again
                .push_front((no, self.rec[from..to].to_vec(), None));
        }
        self.starts.clear();
        self.raw = 0..first_end;
        CsvItem::Bad {
            line,
            reason: format!("unterminated quoted field: {why}"),
        }
    }
}

/// Feeds one line (ending in `\n`) to the CSV parser, growing its output buffers as needed:
/// whether it completed the record.
fn feed(
    core: &mut csv_core::Reader,
    mut input: &[u8],
    out: &mut Vec<u8>,
    ends: &mut Vec<usize>,
    outlen: &mut usize,
    endlen: &mut usize,
) -> bool {
    use csv_core::ReadRecordResult::*;
    loop {
        let (res, nin, nout, nend) =
            core.read_record(input, &mut out[*outlen..], &mut ends[*endlen..]);
        input = &input[nin..];
        *outlen += nout;
        *endlen += nend;
        match res {
            InputEmpty | End => return false,
            OutputFull => out.resize(out.len() * 2, 0),
            OutputEndsFull => ends.resize(ends.len() * 2, 0),
            Record => return true,
        }
    }
}

/// The reason given for a line that is not UTF-8.
pub const NOT_UTF8: &str = "the line is not valid UTF-8";

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<(Line, Vec<u8>)> {
        let mut r = input;
        let mut buf = Vec::new();
        let mut out = Vec::new();
        loop {
            let l = read_line(&mut r, &mut buf, max).unwrap();
            if l == Line::End {
                return out;
            }
            out.push((l, buf.clone()));
        }
    }

    #[test]
    fn lines_are_bounded_and_each_is_read_once() {
        let got = lines(b"ab\nabcdef\nabc\nabcdefg", 3);
        assert_eq!(
            got,
            vec![
                (Line::Whole, b"ab\n".to_vec()),
                (Line::TooLong(6), b"abc".to_vec()),
                (Line::Whole, b"abc\n".to_vec()),
                (Line::TooLong(7), b"abc".to_vec()),
            ]
        );
        assert_eq!(lines(b"", 3), vec![]);
        assert_eq!(lines(b"\n\n", 3).len(), 2);
    }

    #[test]
    fn escaped_bytes_keep_the_text() {
        assert_eq!(escape_bytes(b"a\xffb\xc3\xa9"), "a\\xFFb\u{e9}");
    }

    /// A line over the bound inside an open quote stays one bad record when read again: its
    /// start is never taken for a record of its own.
    #[test]
    fn a_long_line_inside_an_open_quote_stays_bad() {
        let input = format!("a,\"open\n{},z\nb,c\n", "x".repeat(100));
        let mut r = CsvRecords::new(input.as_bytes(), b',', 16);
        let mut row = csv::StringRecord::new();
        let mut items = Vec::new();
        while let Some(item) = r.next(&mut row).unwrap() {
            items.push(match item {
                CsvItem::Row { line } => format!("{line} row"),
                CsvItem::Bad { line, reason } => format!("{line} {reason}"),
                CsvItem::Blank { line } => format!("{line} blank"),
            });
        }
        assert_eq!(items.len(), 3, "{items:?}");
        assert!(
            items[0].starts_with("1 unterminated quoted field"),
            "{items:?}"
        );
        assert!(items[1].starts_with("2 the line is 102 bytes"), "{items:?}");
        assert_eq!(items[2], "3 row");
    }

    /// Every physical line is accounted for exactly once, whatever stray quotes the input has.
    #[test]
    fn every_line_is_one_item_or_part_of_a_record() {
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let pieces: [&[u8]; 8] = [b"a", b",", b"\"", b"\"\"", b" ", b"\r", b"\xff", b"1"];
        for _ in 0..300 {
            let n_lines = 1 + next() % 200;
            let mut input = Vec::new();
            for _ in 0..n_lines {
                for _ in 0..next() % 6 {
                    input.extend_from_slice(pieces[(next() % 8) as usize]);
                }
                input.push(b'\n');
            }
            let mut r = CsvRecords::new(&input[..], b',', 1 << 10);
            let mut row = csv::StringRecord::new();
            let mut covered = 0u64;
            let mut last = 0;
            while let Some(item) = r.next(&mut row).unwrap() {
                let (line, span) = match item {
                    CsvItem::Row { line } | CsvItem::Bad { line, .. } => {
                        (line, r.raw().matches('\n').count() as u64 + 1)
                    }
                    CsvItem::Blank { line } => (line, 1),
                };
                assert!(line > last, "in order");
                last = line;
                covered += span;
            }
            assert_eq!(covered, n_lines, "{:?}", String::from_utf8_lossy(&input));
        }
    }
}
