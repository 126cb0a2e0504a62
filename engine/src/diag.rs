//! Diagnostics: every configuration problem as a compiler-style message that names the file, line
//! and column, the component, and what to do, rendered with `miette` (the offending line with a
//! caret under the problem).
//!
//! Spans are byte ranges into a [`SourceText`]: the pipeline file followed by one line per
//! `--set` override, so a bad override is shown as the `--set` argument the user typed.

use std::ops::Range;
use std::sync::Arc;

use miette::{
    GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteDiagnostic, Report, Severity,
};

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// The pipeline cannot run.
    Error,
    /// The pipeline runs, but probably not as meant.
    Warning,
}

/// One problem found in a pipeline.
#[derive(Clone, Debug, PartialEq)]
pub struct Diag {
    /// Error or warning.
    pub level: Level,
    /// The component concerned (`sources.sensors`), if any.
    pub component: Option<String>,
    /// What is wrong.
    pub message: String,
    /// Where, as a byte range into the [`SourceText`].
    pub span: Option<Range<usize>>,
    /// A short label under the caret.
    pub label: Option<String>,
    /// What to do.
    pub help: Option<String>,
}

impl Diag {
    /// An error.
    pub fn error(message: impl Into<String>) -> Diag {
        Diag {
            level: Level::Error,
            component: None,
            message: message.into(),
            span: None,
            label: None,
            help: None,
        }
    }

    /// A warning.
    pub fn warning(message: impl Into<String>) -> Diag {
        Diag {
            level: Level::Warning,
            ..Diag::error(message)
        }
    }

    /// Names the component concerned.
    pub fn component(mut self, c: impl Into<String>) -> Diag {
        self.component = Some(c.into());
        self
    }

    /// Points at a span.
    pub fn at(mut self, span: Range<usize>) -> Diag {
        self.span = Some(span);
        self
    }

    /// Points at a span, with a label.
    pub fn at_labelled(mut self, span: Range<usize>, label: impl Into<String>) -> Diag {
        self.span = Some(span);
        self.label = Some(label.into());
        self
    }

    /// Says what to do.
    pub fn help(mut self, h: impl Into<String>) -> Diag {
        self.help = Some(h.into());
        self
    }

    /// Says what to do, if there is advice.
    pub fn maybe_help(mut self, h: Option<String>) -> Diag {
        if h.is_some() {
            self.help = h;
        }
        self
    }

    /// The headline: component and message.
    pub fn headline(&self) -> String {
        match &self.component {
            Some(c) => format!("{c}: {}", self.message),
            None => self.message.clone(),
        }
    }
}

/// The text diagnostics point into: a pipeline file plus its `--set` overrides.
#[derive(Clone, Debug)]
pub struct SourceText {
    /// The file's name as the user gave it.
    pub name: String,
    /// The file text, then a newline, then one `--set KEY=VALUE` line per override.
    pub text: String,
    /// Length of the file part.
    pub file_len: usize,
    /// Where each line of `text` starts, found once (diagnostics look lines up by bisection,
    /// so thousands of them cost no more than one pass over the file).
    line_starts: std::sync::OnceLock<Vec<usize>>,
}

/// The most bytes of one line shown around a diagnostic's mark; longer lines are shown as an
/// excerpt (the header still gives the true line and column).
const SHOWN: usize = 160;

impl SourceText {
    /// A source with no overrides.
    pub fn new(name: &str, file_text: &str) -> SourceText {
        SourceText {
            name: name.to_string(),
            text: format!("{file_text}\n"),
            file_len: file_text.len(),
            line_starts: Default::default(),
        }
    }

    /// Appends an override line; returns the byte range of its value.
    pub fn add_override(&mut self, arg: &str) -> (Range<usize>, Range<usize>) {
        self.line_starts.take();
        let line_start = self.text.len();
        self.text.push_str("--set ");
        let arg_start = self.text.len();
        self.text.push_str(arg);
        let arg_end = self.text.len();
        self.text.push('\n');
        let value_start = arg.find('=').map(|i| arg_start + i + 1).unwrap_or(arg_end);
        (line_start..arg_end, value_start..arg_end)
    }

    /// The file part.
    pub fn file_text(&self) -> &str {
        &self.text[..self.file_len]
    }

    fn starts(&self) -> &[usize] {
        self.line_starts.get_or_init(|| line_starts(&self.text))
    }

    /// 1-based (line, column) of a byte offset in the file part, or `None` inside an override.
    pub fn line_col(&self, offset: usize) -> Option<(usize, usize)> {
        if offset > self.file_len {
            return None;
        }
        let starts = self.starts();
        let line = starts.partition_point(|&s| s <= offset) - 1;
        let from = starts[line];
        let col = self
            .text
            .get(from..offset)
            .map_or(offset - from, |t| t.chars().count());
        Some((line + 1, col + 1))
    }

    /// Renders diagnostics for a terminal (colour when `color`).
    pub fn render(&self, diags: &[Diag], color: bool) -> String {
        let theme = if color {
            GraphicalTheme::unicode()
        } else {
            GraphicalTheme::unicode_nocolor()
        };
        let handler = GraphicalReportHandler::new_themed(theme).with_context_lines(1);
        let mut out = String::new();
        let file = Lines {
            name: self.name.as_str().into(),
            text: self.file_text().into(),
            starts: self.starts().into(),
        };
        for d in diags {
            let mut md = MietteDiagnostic::new(d.headline()).with_severity(match d.level {
                Level::Error => Severity::Error,
                Level::Warning => Severity::Warning,
            });
            if let Some(h) = &d.help {
                md = md.with_help(h.clone());
            }
            let label = |md: MietteDiagnostic, lines: &Lines, span: Range<usize>| {
                let span = lines.shown(span);
                md.with_label(LabeledSpan::new(d.label.clone(), span.start, span.len()))
            };
            match d.span.clone() {
                Some(span) if span.start <= self.file_len => {
                    let md = label(md, &file, span);
                    let report = Report::new(md).with_source_code(file.clone());
                    let _ = handler.render_report(&mut out, report.as_ref());
                }
                Some(span) => {
                    // Inside an override line: show that line alone, as the user typed it.
                    let start = span.start.min(self.text.len());
                    let line_start = self.text[..start].rfind('\n').map(|i| i + 1).unwrap_or(0);
                    let line_end = self.text[start..]
                        .find('\n')
                        .map(|i| start + i)
                        .unwrap_or(self.text.len());
                    let cli = Lines {
                        name: "command line".into(),
                        text: self.text[line_start..line_end].into(),
                        starts: vec![0].into(),
                    };
                    let local = start - line_start..span.end.clamp(start, line_end) - line_start;
                    let md = label(md, &cli, local);
                    let report = Report::new(md).with_source_code(cli.clone());
                    let _ = handler.render_report(&mut out, report.as_ref());
                }
                None => {
                    let _ = handler.render_report(&mut out, Report::new(md).as_ref());
                }
            }
            out.push('\n');
        }
        out
    }
}

/// The largest character boundary of `text` at or before byte `i`.
pub fn floor_char_boundary(text: &str, i: usize) -> usize {
    (0..=i.min(text.len()))
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0)
}

/// The smallest character boundary of `text` at or after byte `i`.
pub fn ceil_char_boundary(text: &str, i: usize) -> usize {
    (i.min(text.len())..=text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len())
}

/// Byte offsets where each line of `text` starts.
fn line_starts(text: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect()
}

/// A text with its line index, as miette reads it: only the lines around a mark, found by
/// bisection, and of a long line only an excerpt around the mark.
#[derive(Clone)]
struct Lines {
    name: Arc<str>,
    text: Arc<str>,
    starts: Arc<[usize]>,
}

impl Lines {
    fn line_of(&self, offset: usize) -> usize {
        self.starts.partition_point(|&s| s <= offset).max(1) - 1
    }

    /// Where line `l` ends, before its newline (and carriage return).
    fn line_end(&self, l: usize) -> usize {
        let end = self
            .starts
            .get(l + 1)
            .map_or(self.text.len(), |&n| n - 1)
            .min(self.text.len());
        let line = &self.text[self.starts[l].min(end)..end];
        end - usize::from(line.ends_with('\r'))
    }

    fn line_len(&self, l: usize) -> usize {
        self.line_end(l).saturating_sub(self.starts[l])
    }

    fn floor(&self, i: usize) -> usize {
        floor_char_boundary(&self.text, i)
    }

    fn ceil(&self, i: usize) -> usize {
        ceil_char_boundary(&self.text, i)
    }

    /// The part of a mark that is shown: on its first line, at most [`SHOWN`] bytes, on
    /// character boundaries.
    fn shown(&self, span: Range<usize>) -> Range<usize> {
        let start = self.floor(span.start);
        let l = self.line_of(start);
        let end = span.end.min(self.line_end(l).max(start)).min(start + SHOWN);
        start..self.ceil(end.max(start))
    }
}

impl miette::SourceCode for Lines {
    fn read_span<'a>(
        &'a self,
        span: &miette::SourceSpan,
        before: usize,
        after: usize,
    ) -> Result<Box<dyn miette::SpanContents<'a> + 'a>, miette::MietteError> {
        let (s, len) = (span.offset(), span.len());
        if s > self.text.len() {
            return Err(miette::MietteError::OutOfBounds);
        }
        let l = self.line_of(s);
        let line_start = self.starts[l];
        let (from, to, first, last, column) = if before == 0 && after == 0 {
            // The mark itself (miette's header takes its line and column from it).
            (
                s,
                self.ceil((s + len).min(self.text.len())),
                l,
                l,
                s - line_start,
            )
        } else if self.line_len(l) > SHOWN {
            // A long line: an excerpt around the mark, no context lines.
            let from = self.floor(s.saturating_sub(SHOWN / 2).max(line_start));
            let to = self.ceil((s + len + SHOWN / 2).min(self.line_end(l)));
            (from, to, l, l, from - line_start)
        } else {
            let last_line = self.starts.len() - 1;
            let mut first = l.saturating_sub(before);
            while first < l && (first..l).any(|k| self.line_len(k) > SHOWN) {
                first += 1;
            }
            let mut last = l;
            while last < (l + after).min(last_line) && self.line_len(last + 1) <= SHOWN {
                last += 1;
            }
            let to = self
                .starts
                .get(last + 1)
                .copied()
                .unwrap_or(self.text.len());
            (self.starts[first], to.min(self.text.len()), first, last, 0)
        };
        Ok(Box::new(miette::MietteSpanContents::new_named(
            self.name.to_string(),
            &self.text.as_bytes()[from..to],
            (from, to - from).into(),
            first,
            column,
            last - first + 1,
        )))
    }
}

/// Whether any diagnostic is an error.
pub fn has_errors(diags: &[Diag]) -> bool {
    diags.iter().any(|d| d.level == Level::Error)
}
