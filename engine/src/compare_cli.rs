//! `weir compare`: the command around [`weir_engine::compare`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use weir_engine::compare::{self, parse_modes, parse_rate, render_table, Row, Runner};
use weir_engine::components::Op;
use weir_engine::report::Report;
use weir_engine::summary::{micros, thousands};

use crate::CONFIG_ERROR;

/// The command's arguments.
pub struct Args {
    pub pipeline: Option<PathBuf>,
    pub from: Vec<PathBuf>,
    pub modes: String,
    pub rates: Option<String>,
    pub workers: String,
    pub duration: Duration,
    pub warmup: Duration,
    pub processes: usize,
    pub external: Option<(usize, PathBuf)>,
    pub sink: Option<String>,
    pub find_sustainable: bool,
    pub search_steps: usize,
    pub out: PathBuf,
    pub set: Vec<String>,
}

fn usage(e: String) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(CONFIG_ERROR)
}

pub fn main(a: Args) -> ExitCode {
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
    let workers: Vec<usize> = match a
        .workers
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
        processes: a.processes,
        external: a.external.clone(),
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
        let text = render_table(&header, &summary, 1);
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
    emit(&rows, &title, &a.out)
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
            Ok(r) => rows.push(r),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        }
    }
    let mut names: Vec<&str> = reports.iter().map(|r| r.pipeline.as_str()).collect();
    names.dedup();
    emit(
        &rows,
        &format!("{}: latency by configuration", names.join(", ")),
        &a.out,
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
fn emit(rows: &[Row], title: &str, out: &std::path::Path) -> ExitCode {
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
    ExitCode::SUCCESS
}
