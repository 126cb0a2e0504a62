//! `weir compare`: the command around the latency lab ([`weir_cli::lab`]).

use std::path::PathBuf;
use std::process::ExitCode;

use weir_cli::lab::{self as compare, parse_modes, parse_rate, Row, Runner};
use weir_engine::components::Op;
use weir_engine::report::Report;
use weir_engine::summary::{aligned, micros, thousands};

use crate::CONFIG_ERROR;

/// `weir compare`'s arguments.
#[derive(clap::Args)]
pub struct Args {
    /// The pipeline file (TOML). Not with --from.
    #[arg(required_unless_present = "from", conflicts_with = "from")]
    pub pipeline: Option<PathBuf>,
    /// Tabulate and plot these saved run reports (from `weir run --report` or an earlier
    /// compare) instead of running anything.
    #[arg(long, num_args = 1.., value_name = "REPORT")]
    pub from: Vec<PathBuf>,
    /// Execution modes, comma-separated: continuous, micro-batch:100ms, micro-batch:1s.
    #[arg(long, default_value = "continuous,micro-batch:100ms")]
    pub modes: String,
    /// Offered rates, comma-separated (every generator source offers each): 100k,1m.
    /// Default: the pipeline's own rates.
    #[arg(long, value_name = "RATES")]
    pub rates: Option<String>,
    /// Worker counts, comma-separated: 1,2 (default: the pipeline's `workers`).
    #[arg(long, value_name = "COUNTS")]
    pub workers: Option<String>,
    /// How long each run is measured, after its warm-up.
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = weir_engine::components::parse_duration)]
    pub duration: std::time::Duration,
    /// How long each run warms up before it is measured.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = weir_engine::components::parse_duration)]
    pub warmup: std::time::Duration,
    /// Processes per run. Without --hostfile, all on this machine, on free ports of
    /// 127.0.0.1.
    #[arg(long, value_name = "N", default_value = "1", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub processes: u16,
    /// With --hostfile: this machine's process of every run. Run the same comparison on
    /// every machine, each with its own --process-id.
    #[arg(long, value_name = "I", requires = "hostfile")]
    pub process_id: Option<u16>,
    /// The processes' addresses, one `host:port` per line (as for `weir run`), for runs
    /// spread over machines.
    #[arg(long, value_name = "FILE", requires = "process_id")]
    pub hostfile: Option<PathBuf>,
    /// Compare this sink's latency (default: every measured sink's, merged).
    #[arg(long, value_name = "ID")]
    pub sink: Option<String>,
    /// Per mode and worker count, search for the highest offered rate whose latency and
    /// backlog stay bounded, starting from the first of --rates (default 100k).
    #[arg(long)]
    pub find_sustainable: bool,
    /// Bisection steps of --find-sustainable after the first rate that is not sustainable.
    #[arg(long, value_name = "N", default_value = "3")]
    pub search_steps: usize,
    /// Where to write the reports, logs, table and plots.
    #[arg(long, value_name = "DIR", default_value = "weir-compare")]
    pub out: PathBuf,
    /// Override a key of the file for every run, as with `weir run`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Serve the table and the plot as a web page once they are made, on HOST:PORT or a port
    /// (127.0.0.1 unless a host is given; default 127.0.0.1:8080), until Ctrl-C.
    #[arg(long, value_name = "ADDRESS", num_args = 0..=1, default_missing_value = "127.0.0.1:8080", value_parser = crate::parse_serve)]
    pub serve: Option<String>,
}

fn usage(e: String) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(CONFIG_ERROR)
}

pub fn main(a: Args) -> ExitCode {
    let external = match (a.process_id, &a.hostfile) {
        (Some(i), Some(h)) => {
            let cluster = crate::ClusterArgs {
                processes: a.processes,
                process_id: i,
                hostfile: Some(h.clone()),
            };
            if let Err(e) = cluster.cluster() {
                return usage(e);
            }
            Some((usize::from(i), h.clone()))
        }
        _ => None,
    };
    if !a.from.is_empty() {
        return from_reports(&a);
    }
    let Some(pipeline) = a.pipeline.clone() else {
        return usage("give a pipeline file, or --from REPORT...".into());
    };
    let Some(plan) = crate::load(&pipeline, &a.set) else {
        return ExitCode::from(CONFIG_ERROR);
    };
    let modes = match parse_modes(&a.modes) {
        Ok(m) => m,
        Err(e) => return usage(format!("--modes: {e}")),
    };
    let workers_list = a
        .workers
        .clone()
        .unwrap_or_else(|| plan.workers.to_string());
    let workers: Vec<usize> = match workers_list
        .split(',')
        .map(|w| match w.trim().parse::<usize>() {
            Ok(n) if (1..=1024).contains(&n) => Ok(n),
            _ => Err(format!(
                "--workers: `{}` is not a worker count (1 to 1024); write a list such as 1,2",
                w.trim()
            )),
        })
        .collect()
    {
        Ok(w) => w,
        Err(e) => return usage(e),
    };
    let rates: Option<Vec<f64>> = match a.rates.as_deref().map(|r| {
        r.split(',')
            .filter(|x| !x.trim().is_empty())
            .map(parse_rate)
            .collect::<Result<Vec<_>, _>>()
    }) {
        None => None,
        Some(Ok(r)) if !r.is_empty() => Some(r),
        Some(Ok(_)) => return usage("--rates: no rate given; write a list such as 100k,1m".into()),
        Some(Err(e)) => return usage(format!("--rates: {e}")),
    };
    let generators = plan
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::Generator(_)))
        .count();
    if (rates.is_some() || a.find_sustainable) && generators == 0 {
        return usage(format!(
            "{}: --rates and --find-sustainable set the rate of generator sources, and this pipeline has none",
            pipeline.display()
        ));
    }
    if a.duration.is_zero() {
        return usage("--duration must be more than 0s".into());
    }
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return usage(format!("cannot find the weir executable: {e}")),
    };
    let mut runner = Runner {
        exe,
        pipeline: pipeline.clone(),
        set: a.set.clone(),
        warmup: a.warmup,
        duration: a.duration,
        out: a.out.clone(),
        processes: usize::from(a.processes),
        external,
        sink: a.sink.clone(),
        count: 0,
    };
    let title = format!("{}: latency by configuration", plan.name);
    let show = |row: &Row| {
        eprintln!(
            "weir compare: {}: {}/s achieved, p99 {}{}",
            row.label,
            thousands(row.achieved as u64),
            micros(row.processing.value_at_quantile(0.99)),
            match row.kept_up() {
                Some(false) => ", fell behind",
                _ => "",
            }
        );
    };
    let mut rows = Vec::new();
    if a.find_sustainable {
        let start = rates.as_ref().map_or(100_000.0, |r| r[0]);
        let mut summary: Vec<Vec<String>> = Vec::new();
        for m in &modes {
            for &w in &workers {
                eprintln!(
                    "weir compare: searching the sustainable rate of {}, {w} worker{}",
                    m.label(),
                    if w == 1 { "" } else { "s" }
                );
                let found = runner.find_sustainable(m, w, start, a.search_steps, |row, verdict| {
                    eprintln!(
                        "weir compare:   {}/s: {}",
                        thousands(row.offered.unwrap_or(0.0) as u64),
                        match verdict {
                            Ok(()) => format!(
                                "sustainable (p99 {})",
                                micros(row.processing.value_at_quantile(0.99))
                            ),
                            Err(why) => format!("not sustainable: {why}"),
                        }
                    )
                });
                let (best, tried) = match found {
                    Ok(x) => x,
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::from(1);
                    }
                };
                let mut line = vec![
                    format!("{}, {w}w", m.label()),
                    best.as_ref().map_or("below the start".into(), |b| {
                        thousands(b.offered.unwrap_or(0.0) as u64)
                    }),
                ];
                for q in [0.5, 0.99, 0.999] {
                    line.push(
                        best.as_ref()
                            .map_or("-".into(), |b| micros(b.processing.value_at_quantile(q))),
                    );
                }
                line.push(tried.len().to_string());
                summary.push(line);
                rows.extend(best);
            }
        }
        let header = [
            "configuration",
            "sustainable/s",
            "p50",
            "p99",
            "p99.9",
            "runs",
        ]
        .map(String::from);
        let text = aligned(&header, &summary, 1, "", "  ");
        print!("{text}");
        if let Err(e) = write(&a.out.join("sustainable.txt"), &text) {
            return usage(e);
        }
    } else {
        let rate_list: Vec<Option<f64>> = match &rates {
            Some(r) => r.iter().map(|x| Some(*x)).collect(),
            None => vec![None],
        };
        for m in &modes {
            for &w in &workers {
                for r in &rate_list {
                    match runner.run(m, w, *r) {
                        Ok(row) => {
                            show(&row);
                            rows.push(row);
                        }
                        Err(e) => {
                            eprintln!("error: {e}");
                            return ExitCode::from(1);
                        }
                    }
                }
            }
        }
    }
    emit(&rows, &title, &a.out, a.serve.as_deref())
}

/// `--from`: rows from saved reports. The reports of one multi-process run (one per process)
/// make one row when given one after another.
fn from_reports(a: &Args) -> ExitCode {
    let mut reports = Vec::new();
    for p in &a.from {
        match Report::read(p) {
            Ok(r) => reports.push(r),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(CONFIG_ERROR);
            }
        }
    }
    let mut rows = Vec::new();
    let mut i = 0;
    while i < reports.len() {
        let n = reports[i].processes.max(1);
        let mut group = vec![reports[i].clone()];
        while group.len() < n
            && i + group.len() < reports.len()
            && reports[i + group.len()].processes == n
            && reports[i + group.len()].pipeline == reports[i].pipeline
        {
            group.push(reports[i + group.len()].clone());
        }
        i += group.len();
        match Row::from_reports(&group, a.sink.as_deref()) {
            Ok(r) => rows.push((group[0].pipeline.clone(), r)),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        }
    }
    let mut names: Vec<&str> = reports.iter().map(|r| r.pipeline.as_str()).collect();
    names.dedup();
    // Reports of different pipelines (the same pipeline fed two ways, say) say which is which.
    let rows: Vec<Row> = rows
        .into_iter()
        .map(|(pipeline, mut r)| {
            if names.len() > 1 {
                r.label = format!("{pipeline}: {}", r.label);
            }
            r
        })
        .collect();
    emit(
        &rows,
        &format!("{}: latency by configuration", names.join(", ")),
        &a.out,
        a.serve.as_deref(),
    )
}

fn write(path: &std::path::Path, text: &str) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Prints the table and writes it with the plots to `out`.
fn emit(rows: &[Row], title: &str, out: &std::path::Path, serve: Option<&str>) -> ExitCode {
    let table = compare::table(rows);
    print!("{table}");
    if let Err(e) = write(&out.join("compare.txt"), &table) {
        return usage(e);
    }
    for name in ["latency.svg", "latency.png"] {
        let path = out.join(name);
        if let Err(e) = compare::plot(rows, title, &path) {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    }
    eprintln!(
        "weir compare: table in {}, plot in {} and {}",
        out.join("compare.txt").display(),
        out.join("latency.svg").display(),
        out.join("latency.png").display()
    );
    match serve {
        Some(address) => serve_page(address, title, &table, &out.join("latency.svg")),
        None => ExitCode::SUCCESS,
    }
}

/// Text for HTML.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `--serve`: the table and the plot on one page, until Ctrl-C.
fn serve_page(address: &str, title: &str, table: &str, svg: &std::path::Path) -> ExitCode {
    let plot = match std::fs::read_to_string(svg) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", svg.display());
            return ExitCode::from(1);
        }
    };
    // The SVG file's XML declaration has no place inside HTML.
    let plot = plot
        .find("<svg")
        .map_or(plot.as_str(), |i| &plot[i..])
        .to_string();
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\n\
         <style>body {{ font: 14px system-ui, sans-serif; margin: 18px; color: #1d2430; }} \
         pre {{ background: #f6f7f9; padding: 10px; border: 1px solid #d8dde4; overflow: auto; }}</style></head>\n\
         <body><h1>{t}</h1>\n<h2>Configurations</h2>\n<pre id=\"table\">{table}</pre>\n\
         <h2>Latency by percentile</h2>\n<div id=\"plot\">{plot}</div>\n</body></html>\n",
        t = escape(title),
        table = escape(table),
    );
    let interrupts = crate::Interrupts::install(&weir_operators::control::RunControl::default());
    match weir_serve::serve(address, weir_serve::Page::Static { html }) {
        Ok(server) => eprintln!(
            "weir compare: table and plot at http://{}/ until Ctrl-C",
            server.address()
        ),
        Err(e) => {
            eprintln!("error: {e}\n  help: pick another port with --serve HOST:PORT");
            return ExitCode::from(CONFIG_ERROR);
        }
    }
    interrupts.wait(None);
    ExitCode::SUCCESS
}
