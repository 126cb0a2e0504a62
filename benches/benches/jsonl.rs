//! Reading JSON lines: a `file` source decoding IoT events (about 160 bytes a line) → filter →
//! `null` sink, against a plain typed reader of the same files in the same run: `serde_json` into
//! a derived struct, RFC 3339 time parsed with chrono, the same filter, one thread per worker.
//!
//! The input is two files of the typed generator's events (`weir_benches::typed`), written once
//! per run of the benchmark. With one worker, one reader reads both; with two, each reads one.
//! The report gives megabytes of input per second *per worker* (medians) and the ratio.
//!
//! `cargo bench -p weir-benches --bench jsonl`; `WEIR_BENCH_EVENTS` (lines, default 2,000,000)
//! and `WEIR_BENCH_REPS` (default 5) change the size.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use weir_benches::typed::{iot_event, Body};
use weir_benches::{env_or, machine, median, run_weir, sink_records, timed, START};

/// The allocator the `weir` binary uses, for both sides of the comparison.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SITES: [&str; 4] = ["plant-north", "plant-south", "warehouse", "office"];

/// Writes event `i` as one JSON line (the generator's values; times in RFC 3339 UTC).
fn line(out: &mut String, i: u64) {
    let e = iot_event(7, 1000, i, START + i as i64);
    let ts = chrono::DateTime::from_timestamp_micros(e.ts).expect("in range");
    let _ = write!(
        out,
        r#"{{"id":{},"ts":"{}","device_id":"device-{:04}","site":"{}","#,
        e.id,
        ts.format("%Y-%m-%dT%H:%M:%S%.6fZ"),
        e.device,
        SITES[e.device as usize % 4]
    );
    let _ = match e.body {
        Body::Reading {
            temperature,
            humidity,
            pressure,
        } => writeln!(
            out,
            r#""kind":"reading","temperature":{temperature},"humidity":{humidity},"pressure":{pressure}}}"#
        ),
        Body::Status { online, battery } => writeln!(
            out,
            r#""kind":"status","online":{online},"battery":{battery}}}"#
        ),
        Body::Alarm { alarm, severity } => {
            writeln!(
                out,
                r#""kind":"alarm","alarm":{alarm},"severity":{severity}}}"#
            )
        }
    };
}

/// Writes `lines` events into `files` files (event `i` to file `i mod files`); returns the
/// paths and the total size in bytes.
fn write_files(dir: &Path, lines: u64, files: u64) -> (Vec<PathBuf>, u64) {
    let paths: Vec<PathBuf> = (0..files)
        .map(|k| dir.join(format!("events-{k}.jsonl")))
        .collect();
    let mut total = 0;
    for (k, p) in paths.iter().enumerate() {
        let mut w = std::io::BufWriter::new(std::fs::File::create(p).expect("create"));
        let mut text = String::new();
        let mut i = k as u64;
        while i < lines {
            text.clear();
            line(&mut text, i);
            w.write_all(text.as_bytes()).expect("write");
            total += text.len() as u64;
            i += files;
        }
        w.flush().expect("flush");
    }
    (paths, total)
}

fn pipeline(dir: &Path) -> String {
    source(dir, "[transforms.hot]\ntype = \"filter\"\ninputs = [\"events\"]\ncondition = \"temperature > 30.0\"\n\n[sinks.out]\ntype = \"null\"\ninputs = [\"hot\"]\n")
}

/// The readings alone (what the report reads), or the per-device report over them.
fn report_pipeline(dir: &Path, window: bool) -> String {
    let tail = if window {
        "[transforms.r]\ntype = \"filter\"\ninputs = [\"events\"]\ncondition = \"kind = 'reading'\"\n\n\
         [transforms.w]\ntype = \"window\"\ninputs = [\"r\"]\nsize = \"1s\"\ngroup_by = [\"device_id\"]\n\
         aggregates = { avg_temp = \"avg(temperature)\" }\n\n[sinks.out]\ntype = \"null\"\ninputs = [\"w\"]\n"
    } else {
        "[transforms.r]\ntype = \"filter\"\ninputs = [\"events\"]\ncondition = \"kind = 'reading'\"\n\n\
         [sinks.out]\ntype = \"null\"\ninputs = [\"r\"]\n"
    };
    source(dir, tail)
}

fn source(dir: &Path, tail: &str) -> String {
    format!(
        r#"
[pipeline]
name = "bench-jsonl"

[sources.events]
type = "file"
path = "{}"
format = "jsonl"
schema = {{ id = "u64", ts = "timestamp", device_id = "string", site = "string", kind = "string", temperature = "f64", humidity = "f64", pressure = "f64", online = "bool", battery = "i64", alarm = "i64", severity = "i64" }}
timestamp_field = "ts"
timestamp_format = "rfc3339"
id_field = "id"

{tail}"#,
        dir.display()
    )
}

/// The typed reader's record.
#[derive(Deserialize)]
#[allow(dead_code)]
struct Event {
    id: u64,
    ts: String,
    device_id: String,
    site: String,
    kind: String,
    temperature: Option<f64>,
    humidity: Option<f64>,
    pressure: Option<f64>,
    online: Option<bool>,
    battery: Option<i64>,
    alarm: Option<i64>,
    severity: Option<i64>,
}

/// Reads `paths` line by line: returns the records that pass the filter.
fn typed_read(paths: &[PathBuf]) -> u64 {
    let mut hot = 0;
    let mut buf = String::new();
    for p in paths {
        let mut r = BufReader::with_capacity(1 << 16, std::fs::File::open(p).expect("open"));
        loop {
            buf.clear();
            if r.read_line(&mut buf).expect("read") == 0 {
                break;
            }
            let e: Event = serde_json::from_str(&buf).expect("a good line");
            let ts = chrono::DateTime::parse_from_rfc3339(&e.ts).expect("a time");
            std::hint::black_box(ts.timestamp_micros());
            if e.temperature.is_some_and(|t| t > 30.0) {
                hot += 1;
            }
        }
    }
    hot
}

/// The typed reader on `workers` threads, file `k` to thread `k mod workers`: returns
/// (seconds, records out).
fn typed(paths: &[PathBuf], workers: usize) -> (f64, u64) {
    let (hot, t) = timed(|| {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..workers)
                .map(|w| {
                    let mine: Vec<PathBuf> = paths
                        .iter()
                        .enumerate()
                        .filter(|(k, _)| k % workers == w)
                        .map(|(_, p)| p.clone())
                        .collect();
                    s.spawn(move || typed_read(&mine))
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("reader")).sum()
        })
    });
    (t.as_secs_f64(), hot)
}

fn weir(dir: &Path, workers: usize) -> (f64, u64) {
    let (report, t) = run_weir(&pipeline(dir), workers);
    (t.as_secs_f64(), sink_records(&report, "out"))
}

fn main() {
    let lines = env_or("WEIR_BENCH_EVENTS", 2_000_000);
    let reps = env_or("WEIR_BENCH_REPS", 5) as usize;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (paths, bytes) = write_files(dir.path(), lines, 2);
    let mb = bytes as f64 / 1e6;
    println!(
        "JSON lines -> filter -> null: {lines} IoT events in 2 files, {mb:.0} MB ({:.0} bytes a line), {reps} runs each, medians",
        bytes as f64 / lines as f64
    );
    println!("machine: {}", machine());
    println!(
        "{:>7}  {:>16}  {:>17}  {:>12}  {:>13}",
        "workers", "weir MB/s/worker", "typed MB/s/worker", "weir/typed", "weir lines/s"
    );
    for workers in [1, 2] {
        let (mut w, mut t) = (Vec::new(), Vec::new());
        let mut outs = (0, 0);
        for _ in 0..reps {
            let (secs, out) = weir(dir.path(), workers);
            w.push(mb / secs / workers as f64);
            outs.0 = out;
            let (secs, out) = typed(&paths, workers);
            t.push(mb / secs / workers as f64);
            outs.1 = out;
        }
        assert_eq!(outs.0, outs.1, "both sides must pass the same records");
        let (wm, tm) = (median(w), median(t));
        println!(
            "{workers:>7}  {wm:>16.0}  {tm:>17.0}  {:>12.2}  {:>13.0}",
            wm / tm,
            wm * workers as f64 * 1e6 / (bytes as f64 / lines as f64)
        );
    }
    println!();
    println!("the per-device report (readings -> 1 s average per device) from the same files, against reading them alone");
    println!(
        "{:>7}  {:>18}  {:>18}  {:>14}",
        "workers", "ingest alone s", "with the window s", "window/ingest"
    );
    for workers in [1, 2] {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            a.push(
                run_weir(&report_pipeline(dir.path(), false), workers)
                    .1
                    .as_secs_f64(),
            );
            b.push(
                run_weir(&report_pipeline(dir.path(), true), workers)
                    .1
                    .as_secs_f64(),
            );
        }
        let (am, bm) = (median(a), median(b));
        println!("{workers:>7}  {am:>18.3}  {bm:>18.3}  {:>14.2}", bm / am);
    }
}
