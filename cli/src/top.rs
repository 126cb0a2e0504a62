//! `weir top`: a served run's per-component view in the terminal, for machines without a
//! browser. It reads the run's `/snapshot` (what the dashboard shows) once a second and draws
//! it with ratatui; `q` or Esc leaves. `--once` prints one frame as text and exits.

use std::process::ExitCode;
use std::time::Duration;

use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table};
use ratatui::Frame;
use weir_engine::summary::{micros, thousands};
use weir_serve::snapshot::{LatencyView, Snapshot};

/// Reads `/snapshot` from a served run at `address` (`host:port`).
fn fetch(address: &str) -> Result<Snapshot, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut response = agent
        .get(format!("http://{address}/snapshot"))
        .call()
        .map_err(|e| format!("cannot reach a served run at {address}: {e}"))?;
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("{address} did not answer as a served run does: {e}"))?;
    match response.status().as_u16() {
        200 => serde_json::from_str(&body)
            .map_err(|e| format!("{address} did not answer as a served run does: {e}")),
        503 => Err("the run has not started yet".into()),
        status => Err(format!(
            "{address} answered {status}: is it a run served by `weir run --serve`?"
        )),
    }
}

fn latency_cells(l: &LatencyView) -> [String; 4] {
    [
        thousands(l.count),
        micros(l.p50_us),
        micros(l.p99_us),
        micros(l.max_us),
    ]
}

fn draw(f: &mut Frame, s: &Snapshot, address: &str) {
    let sinks = s.sinks.len() as u16;
    let [head, comps, lat] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(s.components.len() as u16 + 3),
        Constraint::Length(sinks * 2 + 3),
    ])
    .areas(f.area());
    let state = match (&s.failure, s.finished) {
        (Some(_), _) => "failed",
        (None, true) => "finished",
        (None, false) => "running",
    };
    let lag = s
        .watermark_lag_us
        .map(|l| format!("  watermark lag {}", micros(l)))
        .unwrap_or_default();
    f.render_widget(
        Paragraph::new(format!(
            "weir top · {} · {state} · {:.1}s{lag} · {address} · q quits",
            s.pipeline, s.elapsed
        ))
        .style(Style::default().add_modifier(Modifier::BOLD)),
        head,
    );
    let header = Row::new([
        "component",
        "type",
        "in",
        "out",
        "in/s",
        "out/s",
        "errors",
        "dead",
        "late",
        "state",
        "backlog",
        "busy",
    ])
    .style(Style::default().add_modifier(Modifier::BOLD));
    let rows = s.components.iter().map(|c| {
        let busy = (c.busy * 10.0).round() as usize;
        let colour = if c.busy > 0.8 {
            Color::Red
        } else if c.busy > 0.5 {
            Color::Yellow
        } else {
            Color::Green
        };
        Row::new([
            Cell::from(format!("{}.{}", section(&c.kind), c.id)),
            Cell::from(c.ty.clone()),
            Cell::from(thousands(c.records_in)),
            Cell::from(thousands(c.records_out)),
            Cell::from(thousands(c.rate_in as u64)),
            Cell::from(thousands(c.rate_out as u64)),
            Cell::from(thousands(c.errors)),
            Cell::from(thousands(c.dead_lettered)),
            Cell::from(thousands(c.late)),
            Cell::from(if c.state_bytes > 0 {
                format!("{} B", thousands(c.state_bytes))
            } else {
                "-".into()
            }),
            Cell::from(if c.kind == "source" {
                thousands(c.backlog)
            } else {
                "-".into()
            }),
            Cell::from(format!("{:>3.0}% {:<10}", c.busy * 100.0, "#".repeat(busy)))
                .style(Style::default().fg(colour)),
        ])
    });
    let widths = [
        Constraint::Min(24),
        Constraint::Length(10),
        Constraint::Length(12),
        Constraint::Length(12),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(11),
        Constraint::Length(8),
        Constraint::Length(15),
    ];
    f.render_widget(
        Table::new(rows, widths)
            .header(header)
            .block(Block::default().borders(Borders::ALL).title("components")),
        comps,
    );
    let header = Row::new(["sink", "over", "count", "p50", "p99", "max"])
        .style(Style::default().add_modifier(Modifier::BOLD));
    let mut rows = Vec::new();
    for k in &s.sinks {
        for (over, l) in [
            ("since start", &k.processing),
            ("last minute", &k.processing_minute),
        ] {
            let [n, p50, p99, max] = latency_cells(l);
            rows.push(Row::new([k.id.clone(), over.to_string(), n, p50, p99, max]));
        }
    }
    let widths = [
        Constraint::Min(16),
        Constraint::Length(12),
        Constraint::Length(12),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Length(10),
    ];
    f.render_widget(
        Table::new(rows, widths).header(header).block(
            Block::default()
                .borders(Borders::ALL)
                .title("sink latency (processing time)"),
        ),
        lat,
    );
}

fn section(kind: &str) -> &'static str {
    match kind {
        "source" => "sources",
        "sink" => "sinks",
        _ => "transforms",
    }
}

/// `weir top ADDRESS [--once]`.
pub fn main(address: &str, once: bool) -> ExitCode {
    if once {
        let snap = match fetch(address) {
            Ok(s) => s,
            Err(e) => {
                eprintln!(
                    "error: {e}\n  help: start the run with `weir run PIPELINE --serve {address}`"
                );
                return ExitCode::from(1);
            }
        };
        let height = snap.components.len() as u16 + snap.sinks.len() as u16 * 2 + 8;
        let backend = ratatui::backend::TestBackend::new(140, height);
        let Ok(mut terminal) = ratatui::Terminal::new(backend);
        let _ = terminal.draw(|f| draw(f, &snap, address));
        let buffer = terminal.backend().buffer().clone();
        let mut out = String::new();
        for y in 0..buffer.area.height {
            let line: String = (0..buffer.area.width)
                .map(|x| buffer[(x, y)].symbol().to_string())
                .collect();
            out.push_str(line.trim_end());
            out.push('\n');
        }
        print!("{out}");
        return ExitCode::SUCCESS;
    }
    let mut snap = match fetch(address) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "error: {e}\n  help: start the run with `weir run PIPELINE --serve {address}`"
            );
            return ExitCode::from(1);
        }
    };
    let mut terminal = ratatui::init();
    let mut last = std::time::Instant::now();
    let result = loop {
        if terminal.draw(|f| draw(f, &snap, address)).is_err() {
            break ExitCode::from(1);
        }
        match ratatui::crossterm::event::poll(Duration::from_millis(200)) {
            Ok(true) => {
                if let Ok(ratatui::crossterm::event::Event::Key(k)) =
                    ratatui::crossterm::event::read()
                {
                    use ratatui::crossterm::event::KeyCode;
                    if matches!(k.code, KeyCode::Char('q') | KeyCode::Esc) {
                        break ExitCode::SUCCESS;
                    }
                }
            }
            Ok(false) => {}
            Err(_) => break ExitCode::from(1),
        }
        if last.elapsed() >= Duration::from_secs(1) {
            last = std::time::Instant::now();
            match fetch(address) {
                Ok(s) => snap = s,
                // The run is gone (its process exited): keep the last picture.
                Err(_) => snap.finished = true,
            }
        }
    };
    ratatui::restore();
    result
}
