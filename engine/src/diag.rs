//! Diagnostics: every configuration problem as a compiler-style message that names the file, line
//! and column, the component, and what to do, rendered with `miette` (the offending line with a
//! caret under the problem).
//!
//! Spans are byte ranges into a [`SourceText`]: the pipeline file followed by one line per
//! `--set` override, so a bad override is shown as the `--set` argument the user typed.

use std::ops::Range;

use miette::{
    GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteDiagnostic, NamedSource, Report,
    Severity,
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
}

impl SourceText {
    /// A source with no overrides.
    pub fn new(name: &str, file_text: &str) -> SourceText {
        SourceText {
            name: name.to_string(),
            text: format!("{file_text}\n"),
            file_len: file_text.len(),
        }
    }

    /// Appends an override line; returns the byte range of its value.
    pub fn add_override(&mut self, arg: &str) -> (Range<usize>, Range<usize>) {
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

    /// 1-based (line, column) of a byte offset in the file part, or `None` inside an override.
    pub fn line_col(&self, offset: usize) -> Option<(usize, usize)> {
        if offset > self.file_len {
            return None;
        }
        let before = &self.text[..offset.min(self.file_len)];
        let line = before.matches('\n').count() + 1;
        let col = before
            .rsplit('\n')
            .next()
            .map(|l| l.chars().count())
            .unwrap_or(0)
            + 1;
        Some((line, col))
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
        for d in diags {
            let mut md = MietteDiagnostic::new(d.headline()).with_severity(match d.level {
                Level::Error => Severity::Error,
                Level::Warning => Severity::Warning,
            });
            if let Some(h) = &d.help {
                md = md.with_help(h.clone());
            }
            let report = match &d.span {
                Some(span) if span.start <= self.file_len => {
                    let span = span.start..span.end.min(self.file_len).max(span.start);
                    md = md.with_label(LabeledSpan::new(d.label.clone(), span.start, span.len()));
                    Report::new(md).with_source_code(NamedSource::new(
                        &self.name,
                        self.file_text().to_string(),
                    ))
                }
                Some(span) => {
                    // Inside an override line: show that line alone, as the user typed it.
                    let line_start = self.text[..span.start]
                        .rfind('\n')
                        .map(|i| i + 1)
                        .unwrap_or(0);
                    let line_end = self.text[span.start..]
                        .find('\n')
                        .map(|i| span.start + i)
                        .unwrap_or(self.text.len());
                    let line = self.text[line_start..line_end].to_string();
                    let local = span.start - line_start..(span.end.min(line_end)) - line_start;
                    md = md.with_label(LabeledSpan::new(d.label.clone(), local.start, local.len()));
                    Report::new(md).with_source_code(NamedSource::new("command line", line))
                }
                None => Report::new(md),
            };
            let _ = handler.render_report(&mut out, report.as_ref());
            out.push('\n');
        }
        out
    }
}

/// Whether any diagnostic is an error.
pub fn has_errors(diags: &[Diag]) -> bool {
    diags.iter().any(|d| d.level == Level::Error)
}
