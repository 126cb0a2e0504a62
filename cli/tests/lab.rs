//! The latency lab: `weir compare` (table, reports, plots, `--from`), backpressure, timed runs
//! and status lines, and cluster mode (two processes give the results of one).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::*;
use hdrhistogram::serialization::Deserializer;
use serde_json::Value;
use weir_engine::summary::micros as shown;

/// Held by the tests that load the machine (floods, overloads) or whose verdicts depend on
/// timing (kept up, sustainable), so they do not run alongside each other.
static TIMING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn timing() -> std::sync::MutexGuard<'static, ()> {
    TIMING.lock().unwrap_or_else(|e| e.into_inner())
}

/// A report's JSON.
fn report(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Decodes a stored histogram without Weir's code: base64, then HDR V2 deflate.
fn histogram(entry: &Value) -> hdrhistogram::Histogram<u64> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(entry["histogram"].as_str().unwrap())
        .unwrap();
    Deserializer::new()
        .deserialize(&mut std::io::Cursor::new(bytes))
        .unwrap()
}

/// The table's rows as cells (split on runs of two or more spaces), header first.
fn table_rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect()
        })
        .collect()
}

#[test]
fn compare_tabulates_plots_and_redraws_saved_reports() {
    let dir = workspace();
    let out = weir(
        dir.path(),
        &[
            "compare",
            "pipelines/iot-device-report.toml",
            "--modes",
            "continuous,micro-batch:100ms",
            "--rates",
            "20k",
            "--workers",
            "1",
            "--duration",
            "1500ms",
            "--warmup",
            "1200ms",
            "--out",
            "cmp",
        ],
        "",
    );
    ok(&out);
    let table = String::from_utf8(out.stdout.clone()).unwrap();
    let rows = table_rows(&table);
    assert_eq!(
        rows.len(),
        3,
        "a header and a row per configuration:\n{table}"
    );
    let header = &rows[0];
    assert_eq!(header[0], "configuration");
    assert!(header.contains(&"proc p99".to_string()) && header.contains(&"event p99".into()));
    assert_eq!(rows[1][0], "continuous, 1w, 20k/s");
    assert_eq!(rows[2][0], "micro-batch 100ms, 1w, 20k/s");
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    for (k, row) in rows[1..].iter().enumerate() {
        // The run's report, and its numbers in the table, checked from the raw histogram.
        let r = report(&dir.path().join(format!("cmp/run-{:02}.json", k + 1)));
        assert_eq!(r["offered_rate"].as_f64(), Some(20_000.0));
        assert_eq!(r["measurement"]["warmup"].as_f64(), Some(1.2));
        let secs = r["measurement"]["seconds"].as_f64().unwrap();
        assert!((1.4..2.5).contains(&secs), "measured {secs}s");
        let events = r["measurement"]["events"].as_u64().unwrap();
        let achieved = (events as f64 / secs) as u64;
        let cell: u64 = row[col("achieved/s")].replace(',', "").parse().unwrap();
        assert_eq!(cell, achieved);
        let sink = &r["sinks"][0];
        let h = histogram(&sink["processing_latency"]);
        assert!(!h.is_empty());
        // A percentile is shown only where at least 10 samples lie beyond it.
        assert_eq!(row[col("proc n")].replace(',', ""), h.len().to_string());
        let p99 = match h.len() >= 1_000 {
            true => shown(h.value_at_percentile(99.0)),
            false => "-".into(),
        };
        assert_eq!(row[col("proc p99")], p99);
        assert_eq!(row[col("proc max")], shown(h.max()));
        let rss = r["peak_rss_bytes"].as_u64().unwrap() as f64;
        assert_eq!(row[col("peak mem")], format!("{:.0}MB", rss / 1e6));
        let e = histogram(&sink["event_time_latency"]);
        assert_eq!(row[col("event p50")], shown(e.value_at_percentile(50.0)));
        // Nothing written during the warm-up is recorded: the results of the first 1s window
        // (aligned to the wall clock, so closed within the first second) are not in it.
        let records = sink["records"].as_u64().unwrap();
        assert!(h.len() < records, "{} of {records}", h.len());
    }
    // The plots are valid images with something drawn on them.
    let svg = std::fs::read_to_string(dir.path().join("cmp/latency.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    // Each curve's legend gives its maximum.
    assert!(
        svg.contains("continuous, 1w, 20k/s (processing, max "),
        "{svg}"
    );
    assert!(svg.contains("micro-batch 100ms, 1w, 20k/s (event time, max "));
    let png = std::fs::File::open(dir.path().join("cmp/latency.png")).unwrap();
    let mut reader = png::Decoder::new(png).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (1280, 650));
    let pixels = &buf[..info.buffer_size()];
    let distinct: std::collections::HashSet<&[u8]> = pixels.chunks(3).collect();
    assert!(distinct.len() > 10, "the PNG is nearly blank");
    // --from reproduces the table from the saved reports, without running anything.
    let again = weir(
        dir.path(),
        &[
            "compare",
            "--from",
            "cmp/run-01.json",
            "cmp/run-02.json",
            "--out",
            "cmp2",
        ],
        "",
    );
    ok(&again);
    assert_eq!(String::from_utf8(again.stdout).unwrap(), table);
    assert!(dir.path().join("cmp2/latency.png").exists());
    assert!(!dir.path().join("cmp2/run-01.json").exists());
}

/// Without --workers, compare runs the pipeline's own worker count.
#[test]
fn compare_runs_the_pipelines_workers_by_default() {
    let dir = workspace();
    let out = weir(
        dir.path(),
        &[
            "compare",
            "pipelines/iot-device-report.toml",
            "--set",
            "pipeline.workers=2",
            "--modes",
            "continuous",
            "--rates",
            "20k",
            "--duration",
            "300ms",
            "--warmup",
            "0s",
            "--out",
            "cmp",
        ],
        "",
    );
    ok(&out);
    let table = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(table_rows(&table)[1][0], "continuous, 2w, 20k/s", "{table}");
}

#[test]
fn compare_reports_configuration_errors() {
    let dir = workspace();
    for (args, needle) in [
        (
            vec!["--modes", "continuous,micro-batch:soon"],
            "`soon` is not a duration",
        ),
        (vec!["--modes", "streaming"], "`streaming` is not a mode"),
        (vec!["--rates", "fast"], "`fast` is not an event rate"),
        (vec!["--workers", "0"], "`0` is not a worker count"),
    ] {
        let mut all = vec!["compare", "pipelines/iot-device-report.toml"];
        all.extend(args);
        let out = weir(dir.path(), &all, "");
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{}", stderr(&out));
    }
    // Rates need a generator.
    let out = weir(
        dir.path(),
        &[
            "compare",
            "pipelines/sensor-file-alerts.toml",
            "--rates",
            "1k",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("this pipeline has none"),
        "{}",
        stderr(&out)
    );
    // A report that is not one.
    write(dir.path(), "bad.json", "{}");
    let out = weir(dir.path(), &["compare", "--from", "bad.json"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("bad.json is not a weir run report"));
}

/// Every record goes to one worker (a window without `group_by`), which also keeps every id of
/// a window (`count(distinct id)`), and the generator is not throttled: without backpressure
/// the other worker, which only generates, floods it.
const FLOOD: &str = r#"
[pipeline]
name = "flood"
workers = 2
max_in_flight = 8192

[sources.fast]
type = "generator"
profile = "iot"
events = 2_000_000
devices = 50
start = "2026-01-01T00:00:00Z"
event_time_interval = "1us"

[transforms.all]
type = "window"
inputs = ["fast"]
size = "10ms"
aggregates = { n = "count(*)", ids = "count(distinct id)", devices = "count(distinct device_id)", low = "min(temperature)", high = "max(temperature)" }

[sinks.out]
type = "file"
inputs = ["all"]
path = "out.jsonl"
"#;

#[test]
fn backpressure_bounds_in_flight_work_and_memory_and_loses_nothing() {
    let _serial = timing();
    let dir = workspace();
    write(dir.path(), "flood.toml", FLOOD);
    // The reference: per 10ms window (10,000 events of 1µs), its count, devices, min and max.
    let (spec, start) = generator(FLOOD, "fast", &[]);
    let schema = spec.profile.schema();
    let (dev, temp) = (
        schema.index_of("device_id").unwrap(),
        schema.index_of("temperature").unwrap(),
    );
    type Acc = (u64, std::collections::BTreeSet<String>, f64, f64);
    let mut expected: BTreeMap<i64, Acc> = BTreeMap::new();
    for i in 0..2_000_000u64 {
        let ts = start + i as i64;
        let r = spec.event(i, ts);
        let w = expected.entry(ts - ts.rem_euclid(10_000)).or_insert((
            0,
            Default::default(),
            f64::MAX,
            f64::MIN,
        ));
        w.0 += 1;
        w.1.insert(r.values[dev].as_str().unwrap().to_string());
        if let Some(t) = r.values[temp].as_f64() {
            w.2 = w.2.min(t);
            w.3 = w.3.max(t);
        }
    }
    let run = |extra: &[&str]| {
        let mut args = vec!["--report", "r.json"];
        args.extend_from_slice(extra);
        run_ok(dir.path(), "flood.toml", &args);
        let r = report(&dir.path().join("r.json"));
        let src = r["components"][0].clone();
        let results = json_lines(&dir.path().join("out.jsonl"));
        (r, src, results)
    };
    let check = |results: &[Value]| {
        assert_eq!(results.len(), expected.len());
        let mut got: BTreeMap<String, &Value> = BTreeMap::new();
        for r in results {
            got.insert(r["window_start"].as_str().unwrap().to_string(), r);
        }
        for (start, (n, devices, low, high)) in &expected {
            let key = weir_operators::time::format_rfc3339(*start);
            let r = got.get(&key).unwrap_or_else(|| panic!("no window {key}"));
            assert_eq!(r["n"].as_u64(), Some(*n), "{key}");
            // Ids are unique: as many distinct ids as events.
            assert_eq!(r["ids"].as_u64(), Some(*n), "{key}");
            assert_eq!(r["devices"].as_u64(), Some(devices.len() as u64), "{key}");
            assert_eq!(r["low"].as_f64(), Some(*low), "{key}");
            assert_eq!(r["high"].as_f64(), Some(*high), "{key}");
        }
    };
    // Continuous: at most the limit plus one 4,096-record batch in flight per worker.
    let (r, src, results) = run(&[]);
    check(&results);
    let in_flight = src["max_in_flight_records"].as_u64().unwrap();
    assert!(in_flight <= 8192 + 4096, "{in_flight} records in flight");
    assert!(
        src["held_micros"].as_u64().unwrap() > 0,
        "the sources were never held back: the test does not flood"
    );
    let bounded_rss = r["peak_rss_bytes"].as_u64().unwrap();
    // Micro-batch: one 65,536-record batch at most past the limit.
    let (_, src, results) = run(&["--mode", "micro-batch", "--batch-interval", "20ms"]);
    check(&results);
    assert!(src["max_in_flight_records"].as_u64().unwrap() <= 8192 + 65_536);
    // The control: without the limit the same run queues far more, and needs more memory.
    let (r, src, results) = run(&["--set", "pipeline.max_in_flight=0"]);
    check(&results);
    let unbounded = src["max_in_flight_records"].as_u64().unwrap();
    assert!(
        unbounded > 4 * (8192 + 4096),
        "without backpressure only {unbounded} records were in flight"
    );
    let unbounded_rss = r["peak_rss_bytes"].as_u64().unwrap();
    assert!(
        bounded_rss < unbounded_rss,
        "peak memory {bounded_rss} with backpressure, {unbounded_rss} without"
    );
    assert!(bounded_rss < 96 << 20, "peak memory {bounded_rss}");
}

#[test]
fn a_timed_run_measures_after_its_warmup_and_shows_its_status() {
    let _serial = timing();
    let dir = workspace();
    let started = Instant::now();
    let out = weir(
        dir.path(),
        &[
            "run",
            "pipelines/iot-device-report.toml",
            "--rate",
            "10k",
            "--unbounded",
            "--warmup",
            "500ms",
            "--duration",
            "1s",
            "--status-every",
            "300ms",
            "--progress",
            "never",
            "--report",
            "r.json",
        ],
        "",
    );
    ok(&out);
    assert!(started.elapsed() < Duration::from_secs(60));
    let err = stderr(&out);
    assert!(err.contains("finished in"), "{err}");
    let status: Vec<&str> = err.lines().filter(|l| l.contains("sources:")).collect();
    assert!(status.len() >= 3, "{err}");
    for needle in [
        "events",
        "/s, backlog",
        "in flight",
        "held",
        "watermark lag",
    ] {
        assert!(status.last().unwrap().contains(needle), "{needle}: {err}");
    }
    assert!(err.contains("weir: offered 10,000/s, achieved"), "{err}");
    let r = report(&dir.path().join("r.json"));
    let m = &r["measurement"];
    let secs = m["seconds"].as_f64().unwrap();
    // A busy machine may stretch the run or fall behind; it never measures less than asked
    // nor generates faster than offered.
    assert!(secs >= 0.95, "{secs}");
    let rate = m["events"].as_f64().unwrap() / secs;
    assert!(rate > 0.0 && rate < 12_000.0, "{rate}/s");
    // The --rate override is the offered rate; the pipeline's own `events` bound was lifted
    // (it would have stopped at 100,000 events only after 10s).
    assert_eq!(r["offered_rate"].as_f64(), Some(10_000.0));
    assert_eq!(r["stopped"].as_bool(), Some(false));
    // Whether 10,000/s is kept up depends on how busy the machine is; the verdict is stated
    // the same way in the summary and the report.
    let kept_up = r["kept_up"].as_bool().unwrap();
    assert_eq!(err.contains("; kept up"), kept_up, "{err}");
    assert_eq!(err.contains("FELL BEHIND"), !kept_up, "{err}");
}

/// Runs `pipeline` on two processes of one worker each (with `mode`'s flags), its sink `out`
/// writing `cluster.jsonl`; returns each process's standard error.
fn on_two_processes(dir: &Path, pipeline: &str, mode: &[&str]) -> Vec<String> {
    let ports = free_ports(2);
    let hosts = write(
        dir,
        "hosts",
        &format!(
            "# two processes\n127.0.0.1:{}\n127.0.0.1:{}\n",
            ports[0], ports[1]
        ),
    );
    let children: Vec<_> = (0..2)
        .map(|p| {
            let id = p.to_string();
            let mut args = vec!["run", pipeline, "--workers", "1", "--status-every", "0s"];
            args.extend(mode.iter().copied());
            args.extend([
                "--processes",
                "2",
                "--process-id",
                &id,
                "--hostfile",
                &hosts,
            ]);
            args.extend(["--set", "sinks.out.path=\"cluster.jsonl\""]);
            spawn_weir(dir, &args)
        })
        .collect();
    children
        .into_iter()
        .map(|c| {
            let o = finish(c);
            ok(&o);
            stderr(&o)
        })
        .collect()
}

#[test]
fn two_processes_give_the_results_of_one() {
    let dir = workspace();
    let pipeline = "pipelines/iot-alarm-counter.toml";
    let single = |extra: &[&str], path: &str| {
        let set = format!("sinks.out.path=\"{path}\"");
        let mut args = vec!["--set", &set];
        args.extend_from_slice(extra);
        run_ok(dir.path(), pipeline, &args);
        json_multiset(&std::fs::read_to_string(dir.path().join(path)).unwrap())
    };
    let one = single(&["--workers", "1"], "one.jsonl");
    assert!(one.len() > 100);
    assert_eq!(single(&["--workers", "2"], "two-workers.jsonl"), one);
    for mode in [
        vec!["--mode", "continuous"],
        vec!["--mode", "micro-batch", "--batch-interval", "20ms"],
    ] {
        let logs = on_two_processes(dir.path(), pipeline, &mode);
        assert!(logs[0].contains("(process 0 of 2)"), "{}", logs[0]);
        assert!(logs[1].contains("(process 1 of 2)"), "{}", logs[1]);
        assert!(logs[1].contains("process 0 writes every sink's output"));
        // Each process generated half of the events.
        for log in &logs {
            let line = log
                .lines()
                .find(|l| l.trim_start().starts_with("sources.sensors"))
                .unwrap();
            assert!(line.contains(" 100,000 "), "{log}");
        }
        let got =
            json_multiset(&std::fs::read_to_string(dir.path().join("cluster.jsonl")).unwrap());
        assert_eq!(got, one, "{mode:?}");
    }
}

#[test]
fn cluster_flags_are_checked() {
    let dir = workspace();
    let p = "pipelines/iot-hot-readings.toml";
    let out = weir(
        dir.path(),
        &["run", p, "--processes", "2", "--process-id", "2"],
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--process-id 2 is out of range"));
    write(dir.path(), "hosts", "127.0.0.1:2101\n");
    let out = weir(
        dir.path(),
        &["run", p, "--processes", "2", "--hostfile", "hosts"],
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("the hostfile lists 1 address for 2 processes"),
        "{}",
        stderr(&out)
    );
    write(dir.path(), "hosts", "127.0.0.1:2101\nlocalhost\n");
    let out = weir(
        dir.path(),
        &["run", p, "--processes", "2", "--hostfile", "hosts"],
        "",
    );
    assert!(stderr(&out).contains("hosts:2:1: `localhost` is not an address"));
}

#[test]
fn an_engine_that_falls_behind_shows_its_queueing_delay() {
    let _serial = timing();
    // Far more than a test build can take: the generator falls behind its schedule, and the
    // latency, measured from each event's scheduled time, shows the wait.
    let dir = workspace();
    let out = weir(
        dir.path(),
        &[
            "run",
            "pipelines/iot-hot-readings.toml",
            "--rate",
            "50m",
            "--unbounded",
            "--duration",
            "1500ms",
            "--status-every",
            "0s",
            "--report",
            "r.json",
        ],
        "",
    );
    ok(&out);
    let r = report(&dir.path().join("r.json"));
    let m = &r["measurement"];
    let achieved = m["events"].as_f64().unwrap() / m["seconds"].as_f64().unwrap();
    assert!(achieved < 25e6, "{achieved}/s");
    assert!(m["backlog_end"].as_u64().unwrap() > 10_000_000, "{m}");
    let h = histogram(&r["sinks"][0]["processing_latency"]);
    assert!(
        h.value_at_percentile(99.0) > 300_000,
        "p99 {}µs: the queueing delay is hidden",
        h.value_at_percentile(99.0)
    );
    let err = stderr(&out);
    assert!(err.contains("offered 50,000,000/s"), "{err}");
    assert!(err.contains("FELL BEHIND"), "{err}");
    assert_eq!(r["kept_up"].as_bool(), Some(false));
    // And compare says so.
    let again = weir(
        dir.path(),
        &["compare", "--from", "r.json", "--out", "c"],
        "",
    );
    ok(&again);
    let table = String::from_utf8(again.stdout).unwrap();
    assert!(table_rows(&table)[1].contains(&"NO".to_string()), "{table}");
}

#[test]
fn find_sustainable_searches_the_highest_rate_kept_up() {
    let _serial = timing();
    let dir = workspace();
    let out = weir(
        dir.path(),
        &[
            "compare",
            "pipelines/iot-hot-readings.toml",
            "--find-sustainable",
            "--modes",
            "continuous",
            "--workers",
            "1",
            "--rates",
            "20k",
            "--duration",
            "1s",
            "--warmup",
            "200ms",
            "--search-steps",
            "1",
            "--out",
            "s",
        ],
        "",
    );
    ok(&out);
    let err = stderr(&out);
    let table = String::from_utf8(out.stdout).unwrap();
    let rows = table_rows(&table);
    assert_eq!(rows[0][..2], ["configuration", "sustainable/s"]);
    assert_eq!(rows[1][0], "continuous, 1w");
    // Which rates this machine sustains depends on how busy it is; the search's shape does not.
    // Every rate tried is reported in order with its verdict: rates double from 20k while they
    // are sustainable, the first that is not ends the doubling, one bisection step follows, and
    // the answer is the highest sustainable rate tried ("below the start" when none was).
    let tried: Vec<(u64, bool)> = err
        .lines()
        .filter_map(|l| {
            let (rate, verdict) = l.strip_prefix("weir compare:   ")?.split_once("/s: ")?;
            Some((
                rate.replace(',', "").parse().unwrap(),
                verdict.starts_with("sustainable"),
            ))
        })
        .collect();
    assert_eq!(tried[0].0, 20_000, "{err}");
    let first_bad = tried.iter().position(|t| !t.1).expect(&err);
    for i in 1..=first_bad {
        assert_eq!(tried[i].0, 2 * tried[i - 1].0, "{err}");
    }
    assert_eq!(tried.len(), first_bad + 2, "one bisection step: {err}");
    let (bad, after) = (tried[first_bad].0, tried[first_bad + 1].0);
    let lo = if first_bad == 0 { bad / 4 } else { bad / 2 };
    assert!(
        lo < after && after < bad,
        "bisects between {lo} and {bad}: {err}"
    );
    match tried.iter().filter(|t| t.1).map(|t| t.0).max() {
        Some(best) => assert_eq!(rows[1][1].replace(',', ""), best.to_string(), "{table}"),
        None => assert_eq!(rows[1][1], "below the start", "{table}"),
    }
    assert_eq!(rows[1].last().unwrap(), &tried.len().to_string(), "{table}");
    assert!(dir.path().join("s/sustainable.txt").exists());
    assert!(dir.path().join("s/latency.svg").exists());
}

#[test]
fn a_source_whose_watermark_stands_still_is_not_held_forever() {
    // Every line has the same timestamp: all batches share one epoch, which the source's own
    // capability holds open. Backpressure must not wait for it (the run would never end).
    let dir = workspace();
    let input: String = (0..30_000)
        .map(|i| format!("{{\"ts\": 1000, \"level\": \"error\", \"msg\": \"m{i}\"}}\n"))
        .collect();
    let out = weir(
        dir.path(),
        &[
            "run",
            "pipelines/stdin-filter.toml",
            "--workers",
            "2",
            "--status-every",
            "0s",
            "--set",
            "pipeline.max_in_flight=100",
        ],
        &input,
    );
    ok(&out);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().lines().count(),
        30_000
    );
}

#[test]
fn compare_runs_each_configuration_on_several_processes() {
    let dir = workspace();
    let args = [
        "compare",
        "pipelines/iot-device-report.toml",
        "--modes",
        "continuous",
        "--rates",
        "10k",
        "--workers",
        "1",
        "--duration",
        "1s",
        "--warmup",
        "200ms",
        // Windows of 100 ms, so many close within the measured second even on a busy machine
        // (results flushed by the stop are not measured).
        "--set",
        "transforms.per_device.size=\"100ms\"",
    ];
    // All processes on this machine, started by compare itself.
    let mut local = args.to_vec();
    local.extend(["--processes", "2", "--out", "local"]);
    let out = weir(dir.path(), &local, "");
    ok(&out);
    let table = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        table_rows(&table)[1][0],
        "continuous, 1w x 2p, 10k/s",
        "{table}"
    );
    for p in 0..2 {
        let r = report(&dir.path().join(format!("local/run-01.p{p}.json")));
        assert_eq!(r["process"].as_u64(), Some(p));
        assert_eq!(r["processes"].as_u64(), Some(2));
    }
    // Both processes' sources count: about 10k/s in all.
    let achieved: f64 = table_rows(&table)[1][2].replace(',', "").parse().unwrap();
    assert!((7_000.0..13_000.0).contains(&achieved), "{table}");
    // As on two machines: one compare per process, sharing a hostfile.
    let hosts = hostfile(dir.path(), 2);
    let children: Vec<_> = (0..2)
        .map(|p| {
            let (id, out) = (p.to_string(), format!("m{p}"));
            let mut all = args.to_vec();
            all.extend(["--processes", "2", "--process-id", &id]);
            all.extend(["--hostfile", &hosts, "--out", &out]);
            spawn_weir(dir.path(), &all)
        })
        .collect();
    let outs: Vec<_> = children.into_iter().map(finish).collect();
    for o in &outs {
        ok(o);
    }
    let r0 = report(&dir.path().join("m0/run-01.p0.json"));
    let r1 = report(&dir.path().join("m1/run-01.p1.json"));
    // Process 0 writes (and measures) every sink's output.
    assert!(r0["sinks"][0]["records"].as_u64().unwrap() > 0);
    assert!(
        r0["sinks"][0]["processing_latency"]["count"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(r1["sinks"][0]["records"].as_u64(), Some(0));
    assert_eq!(r1["process"].as_u64(), Some(1));
}

/// Joins on batches across processes: the interval join (left outer, out-of-order input with
/// late events) and the window join (full outer, windows over windows) give on two processes
/// exactly what they give on one, in both modes.
#[test]
fn joins_on_two_processes_give_the_results_of_one() {
    let dir = workspace();
    for pipeline in [
        "pipelines/clickstream-view-click.toml",
        "pipelines/iot-two-sites.toml",
    ] {
        let set = "sinks.out.path=\"one.jsonl\"";
        run_ok(dir.path(), pipeline, &["--set", set, "--workers", "1"]);
        let one = json_multiset(&std::fs::read_to_string(dir.path().join("one.jsonl")).unwrap());
        assert!(one.len() > 100, "{pipeline}");
        for mode in [
            vec!["--mode", "continuous"],
            vec!["--mode", "micro-batch", "--batch-interval", "20ms"],
        ] {
            on_two_processes(dir.path(), pipeline, &mode);
            let got =
                json_multiset(&std::fs::read_to_string(dir.path().join("cluster.jsonl")).unwrap());
            assert_eq!(got, one, "{pipeline} {mode:?}");
        }
    }
}

/// Lists and `json` fields cross between processes (Arrow IPC): a directory of two files is
/// read by both processes, and process 0's sink writes every record, lists and JSON as read,
/// and the elements unnested on process 1.
#[test]
fn lists_and_json_cross_processes() {
    let dir = workspace();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    write(
        dir.path(),
        "in/a.jsonl",
        "{\"id\":1,\"ts\":\"2026-03-01T10:00:00Z\",\"tags\":[\"x\",null],\"j\":{\"b\":[1,{}]}}\n",
    );
    write(
        dir.path(),
        "in/b.jsonl",
        "{\"id\":2,\"ts\":\"2026-03-01T10:00:01Z\",\"tags\":[\"y\",\"z\"],\"j\":\"s\"}\n",
    );
    let p = write(
        dir.path(),
        "p.toml",
        r#"[sources.s]
type = "file"
path = "in"
format = "jsonl"
schema = { id = "u64", ts = "timestamp", tags = "list<string>", j = "json" }
[transforms.u]
type = "unnest"
inputs = ["s"]
field = "tags"
as = "tag"
[transforms.m]
type = "map"
inputs = ["u"]
select = ["id", "tag", "j"]
[sinks.out]
type = "file"
inputs = ["s"]
path = "out.jsonl"
[sinks.elements]
type = "file"
inputs = ["m"]
path = "elements.jsonl"
"#,
    );
    let want = json_multiset(
        r#"{"id":1,"ts":"2026-03-01T10:00:00.000Z","tags":["x",null],"j":{"b":[1,{}]}}
{"id":2,"ts":"2026-03-01T10:00:01.000Z","tags":["y","z"],"j":"s"}"#,
    );
    let want_elements = json_multiset(
        r#"{"id":1,"tag":"x","j":{"b":[1,{}]}}
{"id":1,"tag":null,"j":{"b":[1,{}]}}
{"id":2,"tag":"y","j":"s"}
{"id":2,"tag":"z","j":"s"}"#,
    );
    for mode in [
        vec!["--mode", "continuous"],
        vec!["--mode", "micro-batch", "--batch-interval", "20ms"],
    ] {
        let logs = on_two_processes(dir.path(), &p, &mode);
        let read = |f: &str| json_multiset(&std::fs::read_to_string(dir.path().join(f)).unwrap());
        assert_eq!(read("cluster.jsonl"), want, "{mode:?}\n{}", logs.join("\n"));
        assert_eq!(read("elements.jsonl"), want_elements, "{mode:?}");
        // Each process read one of the files.
        for log in &logs {
            let line = log
                .lines()
                .find(|l| l.trim_start().starts_with("sources.s "))
                .unwrap();
            assert!(line.split_whitespace().nth(2) == Some("1"), "{log}");
        }
    }
}
