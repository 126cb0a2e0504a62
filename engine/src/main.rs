//! The `weir` command.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use weir_engine::diag::{has_errors, Diag, SourceText};
use weir_engine::graph::{self, GraphFormat};
use weir_engine::plan::{self, Plan};
use weir_engine::report::Report;
use weir_engine::run::{self, RunOptions};
use weir_engine::summary;
use weir_operators::control::RunControl;

/// Records are allocated on one worker and often freed on another (after an exchange); mimalloc
/// handles that far better than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Weir: stream processing pipelines declared in TOML, run on timely dataflow.
#[derive(Parser)]
#[command(name = "weir", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a pipeline, then run it and print a summary per component.
    Run {
        /// The pipeline file (TOML).
        pipeline: PathBuf,
        /// Worker threads (overrides `[pipeline] workers`).
        #[arg(short, long, value_parser = clap::value_parser!(u16).range(1..=1024))]
        workers: Option<u16>,
        /// Override a key of the file: --set sources.sensors.events=1000 (repeatable). The value
        /// is read as TOML, or as a string when it is not valid TOML.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Execution mode (overrides `[pipeline] mode`): continuous or micro-batch.
        #[arg(long, value_name = "MODE")]
        mode: Option<String>,
        /// Micro-batch interval, such as 100ms or 1s (overrides `[pipeline] batch_interval`).
        #[arg(long, value_name = "DURATION")]
        batch_interval: Option<String>,
        /// Write the run's configuration, counts and full latency histograms to this JSON file.
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
        /// Print a status line per sink this often while the run lasts (0s: never).
        #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
        status_every: std::time::Duration,
    },
    /// Check a pipeline without running it: report every problem with its line and column.
    Validate {
        /// The pipeline file (TOML).
        pipeline: PathBuf,
        /// Override a key of the file, as with `weir run`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Print the pipeline's dataflow graph.
    Graph {
        /// The pipeline file (TOML).
        pipeline: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value = "dot")]
        format: GraphFormat,
        /// Override a key of the file, as with `weir run`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
}

/// Exit status for configuration and usage errors.
const CONFIG_ERROR: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            pipeline,
            workers,
            mut set,
            mode,
            batch_interval,
            report,
            status_every,
        } => {
            // The flags are overrides of `[pipeline]`, validated (and reported) like the file.
            if let Some(m) = mode {
                set.push(format!("pipeline.mode={}", toml_string(&m)));
            }
            if let Some(b) = batch_interval {
                set.push(format!("pipeline.batch_interval={}", toml_string(&b)));
            }
            let Some(plan) = load(&pipeline, &set) else {
                return ExitCode::from(CONFIG_ERROR);
            };
            let opts = RunOptions {
                workers: workers.map(usize::from),
                status_every: (!status_every.is_zero()).then_some(status_every),
            };
            let file = pipeline.display().to_string();
            run(&plan, &opts, report.as_deref(), &file, &set)
        }
        Command::Validate { pipeline, set } => match load(&pipeline, &set) {
            Some(plan) => {
                eprintln!(
                    "{}: pipeline `{}` is valid ({} components)",
                    pipeline.display(),
                    plan.name,
                    plan.nodes.iter().filter(|n| !n.implicit).count()
                );
                ExitCode::SUCCESS
            }
            None => ExitCode::from(CONFIG_ERROR),
        },
        Command::Graph {
            pipeline,
            format,
            set,
        } => match load(&pipeline, &set) {
            Some(plan) => {
                print!("{}", graph::render(&plan, format));
                ExitCode::SUCCESS
            }
            None => ExitCode::from(CONFIG_ERROR),
        },
    }
}

/// Reads, validates and plans a pipeline file, printing every diagnostic.
fn load(path: &PathBuf, set: &[String]) -> Option<Plan> {
    let name = path.display().to_string();
    let text = match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(_) => {
                eprintln!(
                    "error: {name} is not UTF-8 text: a pipeline file is TOML, which is UTF-8"
                );
                return None;
            }
        },
        Err(e) => {
            eprintln!("error: cannot read the pipeline file {name}: {e}\n  help: give the path of a .toml pipeline file, such as pipelines/iot-hot-readings.toml");
            return None;
        }
    };
    let (plan, diags, source) = plan::load(&name, &text, set);
    report(&source, &diags);
    if has_errors(&diags) {
        let n = diags
            .iter()
            .filter(|d| d.level == weir_engine::diag::Level::Error)
            .count();
        eprintln!(
            "error: {name}: {n} problem{} found; nothing was run",
            if n == 1 { "" } else { "s" }
        );
        return None;
    }
    plan
}

fn report(source: &SourceText, diags: &[Diag]) {
    if !diags.is_empty() {
        eprint!("{}", source.render(diags, std::io::stderr().is_terminal()));
    }
}

/// `s` as a TOML string literal.
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn run(
    plan: &Plan,
    opts: &RunOptions,
    report_path: Option<&std::path::Path>,
    file: &str,
    set: &[String],
) -> ExitCode {
    let ctl = RunControl::default();
    let flag = ctl.stop_flag();
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, std::sync::atomic::Ordering::Relaxed) {
            // A second Ctrl-C: leave at once.
            std::process::exit(130);
        }
    });
    match run::run(plan, opts, ctl.clone()) {
        Ok(report) => {
            eprint!("{}", summary::render(&report));
            if let Some(path) = report_path {
                match Report::new(&report, file, set).and_then(|r| r.write(path)) {
                    Ok(()) => eprintln!("weir: report written to {}", path.display()),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::from(1);
                    }
                }
            }
            if report.failure.is_some() {
                ExitCode::from(1)
            } else if report.stopped && !report.output_closed {
                ExitCode::from(130)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
