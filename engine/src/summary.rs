//! The run summary printed at the end of `weir run`: per component, records in and out, bad
//! records, dead-lettered records and throughput.

use std::fmt::Write;

use crate::run::RunReport;
use crate::spec::Kind;

/// Formats a count with thousands separators.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The summary as text.
pub fn render(r: &RunReport) -> String {
    let secs = r.elapsed.as_secs_f64();
    let mut out = String::new();
    let how = match (&r.failure, r.stopped) {
        (Some(_), _) => "failed after",
        (None, true) => "stopped after",
        (None, false) => "finished in",
    };
    let _ = writeln!(
        out,
        "weir: pipeline `{}` {how} {secs:.3}s on {} worker{}",
        r.pipeline,
        r.workers,
        if r.workers == 1 { "" } else { "s" }
    );
    let rows: Vec<[String; 7]> = r
        .components
        .iter()
        .map(|c| {
            let m = c.metrics;
            let rate = if secs > 0.0 {
                (m.records_out as f64 / secs) as u64
            } else {
                0
            };
            [
                format!("{}.{}", c.kind.section(), c.id),
                c.ty.clone(),
                if c.kind == Kind::Source && c.ty == "generator" {
                    "-".into()
                } else {
                    thousands(m.records_in)
                },
                thousands(m.records_out),
                thousands(m.errors),
                thousands(m.dead_lettered),
                thousands(rate),
            ]
        })
        .collect();
    let header = [
        "component",
        "type",
        "in",
        "out",
        "errors",
        "dead-lettered",
        "out/s",
    ];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: [&str; 7]| {
        let mut s = String::from(" ");
        for (k, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if k < 2 {
                let _ = write!(s, " {cell:<w$}");
            } else {
                let _ = write!(s, " {cell:>w$}");
            }
        }
        s.trim_end().to_string()
    };
    let _ = writeln!(out, "{}", line(header));
    for row in &rows {
        let _ = writeln!(out, "{}", line(row.each_ref().map(String::as_str)));
    }
    if let Some(path) = &r.dead_letter_file {
        let n: u64 = r
            .components
            .iter()
            .filter(|c| c.kind == Kind::Source)
            .map(|c| c.metrics.dead_lettered)
            .sum();
        let _ = writeln!(
            out,
            "weir: {} bad record{} written to {} (file, line and reason for each)",
            thousands(n),
            if n == 1 { "" } else { "s" },
            path.display()
        );
    }
    if let Some(f) = &r.failure {
        let _ = writeln!(out, "error: {f}");
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn separators() {
        assert_eq!(super::thousands(0), "0");
        assert_eq!(super::thousands(999), "999");
        assert_eq!(super::thousands(1000), "1,000");
        assert_eq!(super::thousands(1234567), "1,234,567");
    }
}
