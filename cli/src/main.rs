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

mod compare_cli;
mod top;

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
        /// Print status lines this often while the run lasts (0s: never), when standard error
        /// is not a terminal or --progress is never.
        #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = weir_engine::components::parse_duration)]
        status_every: std::time::Duration,
        /// A live status line (a progress bar for a bounded run) on standard error: auto (when
        /// it is a terminal), always, never.
        #[arg(long, value_enum, default_value = "auto")]
        progress: Progress,
        /// Offer this many events per second from every generator source (overrides their
        /// `rate`): 50000, 100k, 1m.
        #[arg(long, value_name = "RATE", value_parser = parse_rate)]
        rate: Option<f64>,
        /// Ignore the generators' `events` bound: run until stopped (Ctrl-C, --duration).
        #[arg(long)]
        unbounded: bool,
        /// Record latency and measure throughput only after this long, such as 5s.
        #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = weir_engine::components::parse_duration)]
        warmup: std::time::Duration,
        /// Stop the run this long after the warm-up, such as 20s.
        #[arg(long, value_name = "DURATION", value_parser = weir_engine::components::parse_duration)]
        duration: Option<std::time::Duration>,
        /// End the run once its sources have read this many events (in this process), such as
        /// 10k: for live input that should end on data rather than on a clock.
        #[arg(long, value_name = "N", value_parser = parse_count)]
        stop_after: Option<u64>,
        /// Serve the live dashboard, Prometheus /metrics and /status while the run lasts, on
        /// HOST:PORT or a port (127.0.0.1 unless a host is given; default 127.0.0.1:8080).
        /// Overrides `[pipeline] serve`.
        #[arg(long, value_name = "ADDRESS", num_args = 0..=1, default_missing_value = "127.0.0.1:8080", value_parser = parse_serve)]
        serve: Option<String>,
        /// With --serve: how long the page stays up after the run ends, such as 30s (default:
        /// until Ctrl-C, so the finished run stays readable).
        #[arg(long, value_name = "DURATION", value_parser = weir_engine::components::parse_duration)]
        serve_linger: Option<std::time::Duration>,
        /// With `[pipeline] checkpoint`: discard the checkpoints in its directory and start
        /// over (file sinks' outputs start empty) instead of resuming from the latest one.
        #[arg(long)]
        from_scratch: bool,
        #[command(flatten)]
        cluster: ClusterArgs,
        #[command(flatten)]
        loudness: Loudness,
    },
    /// Run a pipeline and print the first records flowing out of one of its components (or
    /// one of its ports, such as `windowed.late`), then stop. The pipeline's sinks do not
    /// write while it is tapped.
    Tap {
        /// The pipeline file (TOML).
        pipeline: PathBuf,
        /// What to tap: a source or transform id, or ID.PORT (dead_letter, late, late_right).
        component: String,
        /// How many records to print before stopping.
        #[arg(long, short = 'n', default_value = "10", value_parser = parse_count)]
        limit: u64,
        /// json (one JSON object per line) or table.
        #[arg(long, value_enum, default_value = "json")]
        format: TapFormat,
        /// Worker threads (overrides `[pipeline] workers`).
        #[arg(short, long, value_parser = clap::value_parser!(u16).range(1..=1024))]
        workers: Option<u16>,
        /// Override a key of the file, as with `weir run`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Execution mode (overrides `[pipeline] mode`): continuous or micro-batch.
        #[arg(long, value_name = "MODE")]
        mode: Option<String>,
    },
    /// Show a served run (`weir run --serve`) in the terminal: every component's counts,
    /// rates, bad and late records, state and how busy it is, and each sink's latency,
    /// updated every second; q quits.
    Top {
        /// The served run's address.
        #[arg(default_value = "127.0.0.1:8080", value_parser = parse_serve)]
        address: String,
        /// Print one picture as text and exit.
        #[arg(long)]
        once: bool,
    },
    /// Run the tests of pipelines: each file is a pipeline with `[[tests]]`, or a test file
    /// naming its pipeline (`pipeline = "PATH"`). Every test runs in both execution modes, on
    /// one worker and on two.
    Test {
        /// Pipeline or test files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Run only the tests whose name contains this.
        #[arg(long)]
        filter: Option<String>,
    },
    /// Run a pipeline under several configurations (modes, rates, workers) and compare their
    /// throughput and latency in a table and a percentile plot; or redraw saved reports.
    Compare(compare_cli::Args),
    /// Write the generator's events as a producer would, on an open-loop schedule: JSON lines to
    /// a pipeline's TCP source (blocking when it pushes back), or JSON messages to a Kafka topic,
    /// a Kinesis stream, a Pub/Sub topic or an MQTT broker.
    Produce {
        /// Which events: iot, clickstream or nexmark.
        #[arg(long, default_value = "iot")]
        profile: String,
        /// How many events: 1000, 500k, 1m.
        #[arg(long, default_value = "1m", value_parser = parse_count)]
        events: u64,
        /// Events per second (default: as fast as the receiver takes them).
        #[arg(long, value_parser = parse_rate)]
        rate: Option<f64>,
        /// The generator's seed.
        #[arg(long, default_value = "0")]
        seed: u64,
        /// The receiver: a tcp source's `address`, such as 127.0.0.1:9000.
        #[arg(
            long,
            value_name = "HOST:PORT",
            required_unless_present_any = ["topic", "mqtt", "kinesis", "pubsub"],
            conflicts_with_all = ["topic", "mqtt", "kinesis", "pubsub"]
        )]
        tcp: Option<String>,
        /// A Pub/Sub topic to publish to (created if it does not exist); needs --project.
        #[arg(long, value_name = "TOPIC", requires = "project", conflicts_with_all = ["topic", "mqtt", "kinesis"])]
        pubsub: Option<String>,
        /// The Google Cloud project of --pubsub.
        #[arg(long)]
        project: Option<String>,
        /// A subscription to --pubsub's topic to create (ordered by ordering key) if it does not
        /// exist.
        #[arg(long, value_name = "NAME", requires = "pubsub")]
        subscription: Option<String>,
        /// A Kinesis stream to write (created with --shards if it does not exist); credentials
        /// and, without --region, the region come from the standard AWS chain.
        #[arg(long, value_name = "STREAM", conflicts_with_all = ["topic", "mqtt"])]
        kinesis: Option<String>,
        /// The AWS region of --kinesis, such as us-east-1.
        #[arg(long, requires = "kinesis")]
        region: Option<String>,
        /// Another endpoint than the service's for --kinesis or --pubsub, such as
        /// http://127.0.0.1:4567 (kinesalite) or http://127.0.0.1:8085 (the Pub/Sub emulator).
        #[arg(long, value_name = "URL")]
        endpoint: Option<String>,
        /// Shards of a Kinesis stream that does not exist yet.
        #[arg(long, default_value = "2", value_parser = clap::value_parser!(i32).range(1..=10000))]
        shards: i32,
        /// An MQTT broker to publish to, such as 127.0.0.1:1883 (one message per event).
        #[arg(long, value_name = "HOST:PORT", conflicts_with = "topic")]
        mqtt: Option<String>,
        /// The MQTT topic; `{field}` puts an event's field in it.
        #[arg(
            long,
            value_name = "TOPIC",
            default_value = "devices/{device_id}/telemetry"
        )]
        mqtt_topic: String,
        /// The MQTT QoS, 0 or 1.
        #[arg(long, default_value = "1", value_parser = clap::value_parser!(u8).range(0..=1))]
        qos: u8,
        /// The Kafka topic to write (created if it does not exist; needs --brokers).
        #[arg(long, requires = "brokers")]
        topic: Option<String>,
        /// The Kafka brokers, such as 127.0.0.1:9092.
        #[arg(long, value_name = "HOST:PORT[,...]", requires = "topic")]
        brokers: Option<String>,
        /// Partitions of a topic that does not exist yet.
        #[arg(long, default_value = "3", value_parser = clap::value_parser!(i32).range(1..=10000))]
        partitions: i32,
        /// The field whose value keys each Kafka message, Kinesis record or Pub/Sub message
        /// (its ordering key), such as device_id (default: no key, messages spread over the
        /// partitions or shards).
        #[arg(long, value_name = "FIELD")]
        key: Option<String>,
        /// A librdkafka setting for the producer, such as security.protocol=SASL_SSL (repeat
        /// for more); `${NAME}` in a value is replaced by the environment variable NAME.
        #[arg(long = "kafka-option", value_name = "KEY=VALUE")]
        kafka_options: Vec<String>,
    },
    /// Check a pipeline without running it: report every problem with its line and column.
    Validate {
        /// The pipeline file (TOML).
        pipeline: PathBuf,
        /// Override a key of the file, as with `weir run`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        #[command(flatten)]
        loudness: Loudness,
    },
    /// Infer the schema of a JSON lines or CSV file from its first records, and print it as
    /// pipeline keys to paste into a file source (`schema = { ... }` and its timestamp keys).
    Schema {
        /// The file to read.
        #[arg(required_unless_present_any = ["pipeline", "reference"])]
        file: Option<PathBuf>,
        /// Print the JSON Schema of pipeline files instead (for editors), each key described
        /// by its own documentation.
        #[arg(long, conflicts_with_all = ["file", "format", "delimiter", "reference"])]
        pipeline: bool,
        /// Print the reference of every component's keys instead (Markdown tables: key, type,
        /// meaning), as the README has it.
        #[arg(long, conflicts_with_all = ["file", "format", "delimiter"])]
        reference: bool,
        /// jsonl or csv (default: csv for a .csv or .tsv file, jsonl otherwise).
        #[arg(long)]
        format: Option<String>,
        /// The CSV delimiter, one character (default "," or a tab for a .tsv file).
        #[arg(long)]
        delimiter: Option<char>,
    },
    /// Print shell completions for weir: `weir completions bash > /etc/bash_completion.d/weir`,
    /// or for zsh, fish, elvish, powershell.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
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

/// How `weir tap` prints records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum TapFormat {
    /// One JSON object per line, as a jsonl sink writes them.
    Json,
    /// An aligned table, one column per field (printed once the records are in).
    Table,
}

pub(crate) fn parse_serve(s: &str) -> Result<String, String> {
    plan::serve_address(s)
        .map_err(|e| format!("{e}: write HOST:PORT, such as 127.0.0.1:8080, or a port"))
}

/// When to show a live status line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Progress {
    /// When standard error is a terminal.
    Auto,
    /// Always.
    Always,
    /// Never: print status lines instead.
    Never,
}

/// Timely's cluster mode, from Weir's own flags.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct ClusterArgs {
    /// Run as one of N processes (timely's cluster mode); start every process with the same
    /// pipeline and flags, and its own --process-id.
    #[arg(long, value_name = "N", default_value = "1", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(crate) processes: u16,
    /// This process's index, from 0 to N-1.
    #[arg(long, value_name = "I", default_value = "0")]
    pub(crate) process_id: u16,
    /// The processes' addresses, one `host:port` per line in process order (default:
    /// 127.0.0.1:2101, 127.0.0.1:2102, ...).
    #[arg(long, value_name = "FILE")]
    pub(crate) hostfile: Option<PathBuf>,
}

impl ClusterArgs {
    /// The cluster, if more than one process.
    pub(crate) fn cluster(&self) -> Result<Option<run::Cluster>, String> {
        let n = usize::from(self.processes);
        if usize::from(self.process_id) >= n {
            return Err(format!(
                "--process-id {} is out of range: with --processes {n}, it is 0 to {}",
                self.process_id,
                n - 1
            ));
        }
        if n == 1 {
            return Ok(None);
        }
        let addresses = match &self.hostfile {
            None => (0..n).map(|i| format!("127.0.0.1:{}", 2101 + i)).collect(),
            Some(path) => read_hostfile(path, n)?,
        };
        let secret = match weir_engine::cluster::Secret::find(self.hostfile.as_deref())? {
            Some(s) => s,
            None if addresses.iter().all(|a| is_loopback(a)) => {
                eprintln!(
                    "weir: warning: no cluster secret ({} or {} beside the hostfile): the processes \
                     prove to each other only that they run Weir, so any user of this machine could join",
                    weir_engine::cluster::SECRET_VAR,
                    weir_engine::cluster::SECRET_FILE
                );
                weir_engine::cluster::Secret::new(b"weir: no secret, loopback only".to_vec())
            }
            None => {
                return Err(format!(
                    "a cluster whose processes are not all on 127.0.0.1 needs a secret they share\n  help: set {}=... (at least 16 bytes, such as `head -c 32 /dev/urandom | base64`) for every process, or write it to {} beside the hostfile",
                    weir_engine::cluster::SECRET_VAR,
                    weir_engine::cluster::SECRET_FILE
                ))
            }
        };
        Ok(Some(run::Cluster {
            process: usize::from(self.process_id),
            addresses,
            secret,
        }))
    }
}

/// Whether `host:port` names this machine's loopback interface.
fn is_loopback(address: &str) -> bool {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Reads `n` addresses from a hostfile: one `host:port` per line; blank lines and lines
/// starting with `#` are skipped.
fn read_hostfile(path: &std::path::Path, n: usize) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the hostfile {}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let ok = l
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !ok {
            return Err(format!(
                "{}:{}:1: `{l}` is not an address\n  help: write one host:port per line, such as 127.0.0.1:2101",
                path.display(),
                i + 1
            ));
        }
        out.push(l.to_string());
    }
    if out.len() < n {
        return Err(format!(
            "{}: the hostfile lists {} address{} for {n} processes\n  help: write one host:port per line, one line per process",
            path.display(),
            out.len(),
            if out.len() == 1 { "" } else { "es" }
        ));
    }
    out.truncate(n);
    Ok(out)
}

fn parse_rate(s: &str) -> Result<f64, String> {
    weir_cli::lab::parse_rate(s)
}

fn parse_count(s: &str) -> Result<u64, String> {
    if s.trim() == "0" {
        return Ok(0);
    }
    weir_cli::lab::parse_rate(s)
        .map(|x| x.round() as u64)
        .map_err(|_| format!("`{s}` is not a number of events: write 1000, 500k or 1m"))
}

/// Exit status for configuration and usage errors.
pub(crate) const CONFIG_ERROR: u8 = 2;

/// How much `weir run` and `weir validate` say, and whether warnings fail them.
#[derive(clap::Args, Clone, Copy, Default)]
struct Loudness {
    /// Print only errors: no warnings, summary or status lines.
    #[arg(long, short)]
    quiet: bool,
    /// Treat warnings (of the pipeline file, or of the run: a source with over 1% bad
    /// records) as errors: exit with status 2.
    #[arg(long)]
    deny_warnings: bool,
}

/// The exit status of a run or validation that only warned, under --deny-warnings.
const DENIED_WARNINGS: u8 = 2;

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
            progress,
            rate,
            unbounded,
            warmup,
            duration,
            stop_after,
            serve,
            serve_linger,
            from_scratch,
            cluster,
            loudness,
        } => {
            // The flags are overrides of `[pipeline]`, validated (and reported) like the file.
            if let Some(m) = mode {
                set.push(format!("pipeline.mode={}", toml_string(&m)));
            }
            if let Some(b) = batch_interval {
                set.push(format!("pipeline.batch_interval={}", toml_string(&b)));
            }
            let processes = usize::from(cluster.processes);
            let before = BeforeRun {
                workers: workers.map(usize::from),
                processes,
                from_scratch,
            };
            let Some(mut plan) = load_checked(&pipeline, &set, loudness, Some(before)) else {
                return ExitCode::from(CONFIG_ERROR);
            };
            if let Err(e) = run::override_generators(&mut plan, rate, unbounded) {
                eprintln!("error: {}: {e}", pipeline.display());
                return ExitCode::from(CONFIG_ERROR);
            }
            let cluster = match cluster.cluster() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(CONFIG_ERROR);
                }
            };
            let progress = match progress {
                _ if loudness.quiet => false,
                Progress::Always => true,
                Progress::Never => false,
                Progress::Auto => std::io::stderr().is_terminal(),
            };
            let opts = RunOptions {
                workers: workers.map(usize::from),
                status_every: (!status_every.is_zero() && !loudness.quiet).then_some(status_every),
                progress,
                cluster,
                warmup,
                duration,
                stop_after,
                observer: None,
                from_scratch,
            };
            let file = pipeline.display().to_string();
            let serve = Serve {
                address: serve.or_else(|| plan.serve.clone()),
                linger: serve_linger,
            };
            run(&plan, opts, report.as_deref(), &file, &set, loudness, serve)
        }
        Command::Tap {
            pipeline,
            component,
            limit,
            format,
            workers,
            mut set,
            mode,
        } => {
            if let Some(m) = mode {
                set.push(format!("pipeline.mode={}", toml_string(&m)));
            }
            // A tap ignores the pipeline's checkpoints.
            let before = BeforeRun {
                workers: workers.map(usize::from),
                processes: 1,
                from_scratch: true,
            };
            let Some(plan) = load_checked(&pipeline, &set, Loudness::default(), Some(before))
            else {
                return ExitCode::from(CONFIG_ERROR);
            };
            tap(plan, &pipeline, &component, limit, format, workers)
        }
        Command::Compare(args) => compare_cli::main(args),
        Command::Test { files, filter } => test_files(&files, filter.as_deref()),
        Command::Top { address, once } => top::main(&address, once),
        Command::Produce {
            profile,
            events,
            rate,
            seed,
            tcp,
            pubsub,
            project,
            subscription,
            kinesis,
            region,
            endpoint,
            shards,
            mqtt,
            mqtt_topic,
            qos,
            topic,
            brokers,
            partitions,
            key,
            kafka_options,
        } => {
            use weir_operators::generator::{GeneratorSpec, Profile};
            let Some(profile) = Profile::parse(&profile) else {
                eprintln!("error: `{profile}` is not a profile: use iot, clickstream or nexmark");
                return ExitCode::from(CONFIG_ERROR);
            };
            let spec = GeneratorSpec {
                events: Some(events),
                rate,
                seed,
                ..GeneratorSpec::new(profile)
            };
            use weir_engine::produce::Destination;
            let to = match (tcp, topic, brokers) {
                (Some(a), _, _) => Destination::Tcp(a),
                (None, None, _) if pubsub.is_some() => Destination::PubSub {
                    conn: weir_cloud::pubsub::Connection {
                        project: project.expect("clap requires --project"),
                        endpoint,
                    },
                    topic: pubsub.expect("matched"),
                    subscription,
                    key,
                },
                (None, None, _) if kinesis.is_some() => Destination::Kinesis {
                    conn: weir_cloud::kinesis::Connection {
                        stream: kinesis.expect("matched"),
                        region,
                        endpoint,
                    },
                    shards,
                    key,
                },
                (None, None, _) if mqtt.is_some() => {
                    let address = mqtt.expect("matched");
                    let id = format!("weir-produce-{}", std::process::id());
                    let Some(broker) = weir_operators::mqtt::Broker::at(&address, id) else {
                        eprintln!("error: --mqtt `{address}` is not HOST:PORT\n  help: such as 127.0.0.1:1883");
                        return ExitCode::from(CONFIG_ERROR);
                    };
                    Destination::Mqtt {
                        broker,
                        topic: mqtt_topic,
                        qos,
                    }
                }
                (None, Some(topic), Some(brokers)) => {
                    let mut options = Vec::new();
                    for o in &kafka_options {
                        let Some((k, v)) = o.split_once('=') else {
                            eprintln!("error: --kafka-option `{o}` has no `=`\n  help: write --kafka-option KEY=VALUE, such as security.protocol=SASL_SSL");
                            return ExitCode::from(CONFIG_ERROR);
                        };
                        match weir_engine::components::kafka::expand_env(v) {
                            Ok(v) => options.push((k.trim().to_string(), v)),
                            Err(name) => {
                                eprintln!("error: --kafka-option {k}: the environment variable {name} is not set\n  help: export {name}=... first");
                                return ExitCode::from(CONFIG_ERROR);
                            }
                        }
                    }
                    Destination::Kafka {
                        brokers,
                        topic,
                        partitions,
                        key,
                        options,
                    }
                }
                _ => unreachable!("clap requires --tcp, --mqtt, or --topic with --brokers"),
            };
            let p = weir_engine::produce::Produce { spec, to };
            match weir_engine::produce::produce(&p) {
                Ok(r) => {
                    let secs = r.elapsed.as_secs_f64();
                    eprintln!(
                        "weir produce: {} events to {} in {secs:.3}s ({}/s); at most {} behind schedule",
                        summary::thousands(r.events),
                        p.to,
                        summary::thousands((r.events as f64 / secs.max(1e-9)) as u64),
                        summary::micros(r.max_behind.as_micros() as u64)
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Validate {
            pipeline,
            set,
            loudness,
        } => match load_loud(&pipeline, &set, loudness) {
            Some(_) if loudness.quiet => ExitCode::SUCCESS,
            Some(plan) => {
                eprintln!(
                    "{}: pipeline `{}` is valid ({} components)",
                    pipeline.display(),
                    plan.name,
                    plan.nodes.iter().filter(|n| !n.implicit).count()
                );
                for n in &plan.nodes {
                    if let weir_engine::components::Op::Window(w) = &n.op {
                        if w.processing_time() {
                            eprintln!("note: transforms.{}: a processing-time window: its input's records have no event time (event_time = \"ingest\"), so each counts at the time Weir read it, and results depend on when the input arrives", n.id);
                        }
                    }
                }
                ExitCode::SUCCESS
            }
            None => ExitCode::from(CONFIG_ERROR),
        },
        Command::Schema { pipeline: true, .. } => {
            let s = weir_engine::pipeline_schema::json_schema();
            println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Command::Schema {
            reference: true, ..
        } => {
            print!("{}", weir_engine::pipeline_schema::reference());
            ExitCode::SUCCESS
        }
        Command::Schema {
            file,
            format,
            delimiter,
            ..
        } => match file {
            Some(file) => infer_schema(&file, format.as_deref(), delimiter),
            None => unreachable!("clap requires FILE without --pipeline or --reference"),
        },
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "weir", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
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

/// `weir schema`.
fn infer_schema(file: &std::path::Path, format: Option<&str>, delimiter: Option<char>) -> ExitCode {
    let ext = file.extension().and_then(|e| e.to_str()).unwrap_or("");
    let csv = match format {
        Some("csv") => true,
        Some("jsonl") => false,
        Some(f) => {
            eprintln!("error: `{f}` is not a format\n  help: use --format jsonl or --format csv");
            return ExitCode::from(CONFIG_ERROR);
        }
        None => matches!(ext, "csv" | "tsv"),
    };
    let delimiter = match (csv, delimiter) {
        (false, Some(_)) => {
            eprintln!("error: --delimiter applies to CSV only\n  help: add --format csv");
            return ExitCode::from(CONFIG_ERROR);
        }
        (false, None) => None,
        (true, Some(d)) if d.is_ascii() => Some(d as u8),
        (true, Some(d)) => {
            eprintln!("error: the delimiter `{d}` is not one ASCII character");
            return ExitCode::from(CONFIG_ERROR);
        }
        (true, None) => Some(if ext == "tsv" { b'\t' } else { b',' }),
    };
    match weir_engine::components::decoding::infer_file(file, delimiter) {
        Ok(i) => {
            println!("{}", i.toml());
            eprintln!(
                "weir: inferred from the first {} records of {} (format = \"{}\")",
                i.records,
                file.display(),
                if csv { "csv" } else { "jsonl" }
            );
            for n in &i.notes {
                eprintln!("note: {n}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Reads, validates and plans a pipeline file, printing every diagnostic.
pub(crate) fn load(path: &PathBuf, set: &[String]) -> Option<Plan> {
    load_loud(path, set, Loudness::default())
}

/// [`load`], printing only errors when quiet, and failing on a warning when warnings are
/// denied.
fn load_loud(path: &PathBuf, set: &[String], loudness: Loudness) -> Option<Plan> {
    load_checked(path, set, loudness, None)
}

/// What a run will be, for the checks [`load_checked`] makes before it.
#[derive(Clone, Copy)]
struct BeforeRun {
    workers: Option<usize>,
    processes: usize,
    from_scratch: bool,
}

/// [`load_loud`]; with `before_run`, also what can only be known from outside the file before
/// a run: that its Kafka topics exist (see `recovery::missing_topics`), and that it fits the
/// checkpoint it would resume from (`checkpoints::misfits`).
fn load_checked(
    path: &PathBuf,
    set: &[String],
    loudness: Loudness,
    before_run: Option<BeforeRun>,
) -> Option<Plan> {
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
    let (plan, mut diags, source) = plan::load(&name, &text, set);
    if let (Some(b), Some(p), false) = (before_run, &plan, has_errors(&diags)) {
        diags.extend(weir_engine::recovery::missing_topics(p));
        diags.extend(weir_engine::checkpoints::misfits(
            p,
            b.workers.unwrap_or(p.workers),
            b.processes,
            b.from_scratch,
        ));
    }
    let warnings = diags
        .iter()
        .filter(|d| d.level == weir_engine::diag::Level::Warning)
        .count();
    if loudness.deny_warnings && warnings > 0 {
        // Denied warnings are errors: shown, even when quiet, and nothing runs.
        for d in &mut diags {
            d.level = weir_engine::diag::Level::Error;
        }
    } else if loudness.quiet {
        diags.retain(|d| d.level == weir_engine::diag::Level::Error);
    }
    report(&source, &diags);
    if !loudness.quiet && !has_errors(&diags) {
        for n in plan.iter().flat_map(|p| &p.nodes) {
            let inferred = match &n.op {
                weir_engine::components::Op::File(f) => f.inferred.as_ref(),
                weir_engine::components::Op::Kafka(k) => k.inferred.as_ref(),
                _ => None,
            };
            if let Some(i) = inferred {
                eprintln!("weir: sources.{}: schema {i}", n.id);
            }
        }
    }
    if has_errors(&diags) {
        // Count what was shown: errors, and the warnings beside them.
        let errors = diags
            .iter()
            .filter(|d| d.level == weir_engine::diag::Level::Error)
            .count();
        let n = diags.len();
        let plural = |k: usize, w: &str| format!("{k} {w}{}", if k == 1 { "" } else { "s" });
        let split = match n - errors {
            0 => String::new(),
            w => format!(" ({}, {})", plural(errors, "error"), plural(w, "warning")),
        };
        eprintln!(
            "error: {name}: {} found{split}; nothing was run",
            plural(n, "problem")
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

/// Where `weir run` serves its dashboard, and for how long after the run.
struct Serve {
    address: Option<String>,
    linger: Option<std::time::Duration>,
}

#[allow(clippy::too_many_arguments)]
fn run(
    plan: &Plan,
    mut opts: RunOptions,
    report_path: Option<&std::path::Path>,
    file: &str,
    set: &[String],
    loudness: Loudness,
    serve: Serve,
) -> ExitCode {
    let ctl = RunControl::default();
    let interrupts = Interrupts::install(&ctl);
    if let Some(address) = &serve.address {
        let observer = std::sync::Arc::new(weir_engine::live::Observer::new(
            weir_engine::live::Taps::All,
        ));
        let page = weir_serve::Page::Run {
            observer: std::sync::Arc::clone(&observer),
            file: file.to_string(),
            overrides: set.to_vec(),
        };
        match weir_serve::serve(address, page) {
            Ok(server) => {
                eprintln!(
                    "weir: dashboard at http://{0}/ (Prometheus metrics at http://{0}/metrics, status at http://{0}/status)",
                    server.address()
                );
                opts.observer = Some(observer);
            }
            Err(e) => {
                eprintln!("error: {e}\n  help: pick another port with --serve HOST:PORT, or stop what listens there");
                return ExitCode::from(CONFIG_ERROR);
            }
        }
    }
    let code = run_served(plan, &opts, report_path, file, set, loudness, &ctl);
    if opts.observer.is_some() {
        linger(&interrupts, serve.linger);
    }
    code
}

/// After a served run: keeps the page up for `linger`, or until Ctrl-C.
fn linger(interrupts: &Interrupts, linger: Option<std::time::Duration>) {
    if linger.is_some_and(|d| d.is_zero()) {
        return;
    }
    match linger {
        Some(d) => eprintln!(
            "weir: the run has ended; the dashboard stays up for {}",
            humantime::format_duration(d)
        ),
        None => eprintln!("weir: the run has ended; the dashboard stays up until Ctrl-C"),
    }
    interrupts.wait(linger);
}

/// Ctrl-C (and SIGTERM, handled the same way) for a command that runs a pipeline: the first
/// stops the run, which drains its data in flight and ends; one while the run is already
/// stopping leaves at once with status 130. Once the run is over, they end
/// [`Interrupts::wait`].
pub(crate) struct Interrupts {
    presses: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    over: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Interrupts {
    /// Handles Ctrl-C for the run `ctl` controls (once per process).
    pub(crate) fn install(ctl: &RunControl) -> Interrupts {
        use std::sync::atomic::Ordering::Relaxed;
        let i = Interrupts {
            presses: Default::default(),
            over: Default::default(),
        };
        let (flag, presses, over) = (
            ctl.stop_flag(),
            std::sync::Arc::clone(&i.presses),
            std::sync::Arc::clone(&i.over),
        );
        let _ = ctrlc::set_handler(move || {
            presses.fetch_add(1, Relaxed);
            if !over.load(Relaxed) && flag.swap(true, Relaxed) {
                std::process::exit(130);
            }
        });
        i
    }

    /// The run being over, waits for a Ctrl-C or for `limit` — not at all when a Ctrl-C
    /// interrupted the run (its user wants out).
    pub(crate) fn wait(&self, limit: Option<std::time::Duration>) {
        use std::sync::atomic::Ordering::Relaxed;
        self.over.store(true, Relaxed);
        let seen = self.presses.load(Relaxed);
        let until = limit.map(|d| std::time::Instant::now() + d);
        while seen == 0 && self.presses.load(Relaxed) == seen {
            if until.is_some_and(|u| std::time::Instant::now() >= u) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

fn run_served(
    plan: &Plan,
    opts: &RunOptions,
    report_path: Option<&std::path::Path>,
    file: &str,
    set: &[String],
    loudness: Loudness,
    ctl: &RunControl,
) -> ExitCode {
    match run::run(plan, opts, ctl.clone()) {
        Ok(report) => {
            if loudness.quiet {
                if let Some(f) = &report.failure {
                    eprintln!("error: {f}");
                }
            } else {
                eprint!("{}", summary::render(&report));
            }
            if let Some(path) = report_path {
                match Report::new(&report, file, set).and_then(|r| r.write(path)) {
                    Ok(()) if loudness.quiet => {}
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
            } else if loudness.deny_warnings && !report.warnings.is_empty() {
                for w in &report.warnings {
                    eprintln!("error: {w} (a warning, denied by --deny-warnings)");
                }
                ExitCode::from(DENIED_WARNINGS)
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

/// `weir tap`: runs `plan` with its sinks writing nothing, and prints the first `limit`
/// records out of `component`.
fn tap(
    mut plan: Plan,
    pipeline: &std::path::Path,
    component: &str,
    limit: u64,
    format: TapFormat,
    workers: Option<u16>,
) -> ExitCode {
    use std::io::Write;
    use weir_engine::components::{Op, SinkTarget};
    let port = match weir_engine::live::find_port(&plan, component) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {}: {e}", pipeline.display());
            return ExitCode::from(CONFIG_ERROR);
        }
    };
    let fields = weir_engine::live::port_fields(&plan, port);
    // A tap neither resumes from checkpoints nor takes any.
    plan.checkpoint = None;
    // The pipeline's own sinks (and the default dead-letter file) count but write nothing.
    for n in &mut plan.nodes {
        if let Op::Sink(s) = &mut n.op {
            s.target = SinkTarget::Null;
        }
    }
    let observer = std::sync::Arc::new(weir_engine::live::Observer::subscribed(port, Some(limit)));
    let ctl = RunControl::default();
    Interrupts::install(&ctl);
    let opts = RunOptions {
        workers: workers.map(usize::from),
        observer: Some(std::sync::Arc::clone(&observer)),
        ..RunOptions::default()
    };
    let running = {
        let ctl = ctl.clone();
        std::thread::spawn(move || run::run(&plan, &opts, ctl))
    };
    // The subscription exists once the run has made its taps, before any record flows.
    let records = loop {
        if let Some(r) = observer.subscription() {
            break Some(r);
        }
        if running.is_finished() {
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    };
    let mut taken: Vec<String> = Vec::new();
    let mut out = std::io::stdout().lock();
    let mut closed = false;
    for line in records.into_iter().flatten() {
        if format == TapFormat::Json
            && !closed
            && writeln!(out, "{line}").and_then(|_| out.flush()).is_err()
        {
            closed = true;
        }
        taken.push(line);
        if taken.len() as u64 >= limit || closed {
            ctl.close_output();
            break;
        }
    }
    let report = match running.join() {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
        Err(_) => {
            eprintln!("error: the run failed");
            return ExitCode::from(1);
        }
    };
    if format == TapFormat::Table {
        let _ = out.write_all(table(&fields, &taken).as_bytes());
        let _ = out.flush();
    }
    if let Some(f) = &report.failure {
        eprintln!("error: {f}");
        return ExitCode::from(1);
    }
    let ended = if taken.len() as u64 >= limit {
        "then stopped"
    } else {
        "the run ended"
    };
    eprintln!(
        "weir tap: {} record{} out of `{component}`; {ended}",
        taken.len(),
        if taken.len() == 1 { "" } else { "s" }
    );
    if report.stopped && !report.output_closed {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    }
}

/// JSON lines as an aligned text table, one column per field (a dotted field read from its
/// nested object); strings bare, NULL as `null`.
fn table(fields: &[String], lines: &[String]) -> String {
    let rows: Vec<Vec<String>> = lines
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_default();
            fields
                .iter()
                .map(|f| {
                    let cell = f.split('.').try_fold(&v, |v, k| v.get(k));
                    match cell {
                        Some(serde_json::Value::String(s)) => s.clone(),
                        Some(other) => other.to_string(),
                        None => "null".to_string(),
                    }
                })
                .collect()
        })
        .collect();
    let widths: Vec<usize> = fields
        .iter()
        .enumerate()
        .map(|(i, f)| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([f.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| -> String {
        let mut s: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        if let Some(last) = s.last_mut() {
            *last = last.trim_end().to_string();
        }
        s.join("  ") + "\n"
    };
    let mut out = line(fields);
    out.push_str(&line(
        &widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>(),
    ));
    for r in &rows {
        out.push_str(&line(r));
    }
    out
}

/// Loads a pipeline or test file and its tests; prints problems.
fn load_tests(path: &PathBuf) -> Option<Plan> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", path.display());
            return None;
        }
    };
    if !weir_engine::pipeline_tests::is_test_file(&text) {
        let plan = load(path, &[])?;
        if plan.tests.is_empty() {
            eprintln!(
                "error: {}: the pipeline has no tests\n  help: add [[tests]] with inputs and outputs (see the README's \"Pipeline tests\"), or give a test file",
                path.display()
            );
            return None;
        }
        return Some(plan);
    }
    let name = path.display().to_string();
    let source = SourceText::new(&name, &text);
    let (file, diags) = weir_engine::pipeline_tests::read_test_file(path, &text);
    report(&source, &diags);
    let file = file.filter(|_| !has_errors(&diags))?;
    let mut plan = load(&file.pipeline, &[])?;
    let (tests, diags) = weir_engine::pipeline_tests::plan_tests(&file.tests, &plan);
    report(&source, &diags);
    if has_errors(&diags) {
        return None;
    }
    if tests.is_empty() {
        eprintln!(
            "error: {name}: the file has no tests\n  help: add [[tests]] with inputs and outputs"
        );
        return None;
    }
    plan.tests = tests;
    Some(plan)
}

/// What one run of a test gave: each port's mismatch, or why the run failed.
type Outcome = Result<Vec<weir_engine::pipeline_tests::Mismatch>, String>;

/// `weir test`.
fn test_files(files: &[PathBuf], filter: Option<&str>) -> ExitCode {
    use weir_engine::pipeline_tests::{run_test, CONFIGS};
    let mut plans = Vec::new();
    for f in files {
        match load_tests(f) {
            Some(p) => plans.push((f, p)),
            None => return ExitCode::from(CONFIG_ERROR),
        }
    }
    let (mut passed, mut failed) = (0, 0);
    let show = |v: &serde_json::Value| serde_json::to_string(v).unwrap_or_default();
    for (file, plan) in &plans {
        println!("{}", file.display());
        for test in plan
            .tests
            .iter()
            .filter(|t| filter.is_none_or(|f| t.name.contains(f)))
        {
            // Each configuration's outcome; identical failures are shown once.
            let mut outcomes: Vec<(Outcome, Vec<String>)> = Vec::new();
            for config in CONFIGS {
                let r = run_test(plan, test, config);
                match outcomes.iter_mut().find(|(o, _)| *o == r) {
                    Some((_, configs)) => configs.push(config.to_string()),
                    None => outcomes.push((r, vec![config.to_string()])),
                }
            }
            if matches!(outcomes.as_slice(), [(Ok(m), _)] if m.is_empty()) {
                passed += 1;
                println!("  ok      {}", test.name);
                continue;
            }
            failed += 1;
            println!("  FAILED  {}", test.name);
            for (outcome, configs) in &outcomes {
                let r#where = if configs.len() == CONFIGS.len() {
                    "in every configuration".to_string()
                } else {
                    format!("in {}", configs.join(", "))
                };
                match outcome {
                    Ok(m) if m.is_empty() => println!("          passed {where}"),
                    Ok(ms) => {
                        println!("          {where}:");
                        for m in ms {
                            if let Some(note) = &m.note {
                                println!("          at `{}`: {note}", m.port);
                                continue;
                            }
                            let order = match m.out_of_order {
                                Some(i) => format!(", in order from record {}", i + 1),
                                None => String::new(),
                            };
                            println!(
                                "          at `{}`: {} missing, {} unexpected{order}",
                                m.port,
                                m.missing.len(),
                                m.unexpected.len()
                            );
                            for r in &m.missing {
                                println!("            - {}", show(r));
                            }
                            for r in &m.unexpected {
                                println!("            + {}", show(r));
                            }
                        }
                    }
                    Err(e) => println!("          {where}: the run failed: {e}"),
                }
            }
        }
    }
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    println!(
        "test result: {}. {passed} passed, {failed} failed ({} run{} each: both modes, 1 and 2 workers)",
        if failed == 0 { "ok" } else { "FAILED" },
        CONFIGS.len(),
        plural(CONFIGS.len())
    );
    if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
