//! Windows, execution modes and latency, end to end through the `weir` binary: exact results
//! against hand-checked values and brute-force references computed here from the raw events,
//! the same results in continuous and micro-batch mode on 1, 2 and 4 workers, state freed as
//! windows close, and the report's histograms.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use serde_json::{json, Value};
use weir_operators::exact_sum::fsum;
use weir_operators::generator::Profile;
use weir_operators::time::parse_rfc3339;

const READINGS: &str = r#"{"id":"r1","ts":"2026-03-01T10:00:00Z","device":"a","temperature":20.0}
{"id":"r2","ts":"2026-03-01T10:00:03Z","device":"b","temperature":10.0}
{"id":"r3","ts":"2026-03-01T10:00:09.999Z","device":"a","temperature":22.0}
{"id":"r4","ts":"2026-03-01T10:00:10Z","device":"a","temperature":30.0}
{"id":"r5","ts":"2026-03-01T10:00:12Z","device":"b","temperature":null}
{"id":"r6","ts":"2026-03-01T10:00:35Z","device":"a","temperature":25.5}
{"id":"r7","ts":"2026-03-01T10:00:31Z","device":"b","temperature":12.25}
{"id":"r8","ts":"2026-03-01T10:00:05Z","device":"a","temperature":99.0}
{"id":"r9","ts":"2026-03-01T10:00:39.5Z","device":"a","temperature":26.5}
"#;

const WINDOWS: &str = r#"
[pipeline]
name = "w"

[sources.readings]
type = "file"
path = "readings.jsonl"
format = "jsonl"
schema = { id = "string", ts = "timestamp", device = "string", temperature = "f64" }
timestamp_field = "ts"

[transforms.per_device]
type = "window"
inputs = ["readings"]
size = "10s"
group_by = ["device"]
aggregates = { n = "count(*)", avg_t = "avg(temperature)", min_t = "min(temperature)", max_t = "max(temperature)", first_t = "first(temperature)", last_t = "last(temperature)" }

[transforms.overall]
type = "window"
inputs = ["readings"]
size = "10s"
aggregates = { n = "count(*)", sum_t = "sum(temperature)" }

[sinks.devices]
type = "file"
inputs = ["per_device"]
path = "devices.jsonl"

[sinks.all]
type = "file"
inputs = ["overall"]
path = "all.jsonl"
"#;

/// Hand-checked: windows of 10 s from 10:00:00; [20 s, 30 s) is empty and emits nothing; r7 is
/// out of order but its window is still open; r8 arrives after its partition's watermark
/// (35 s) passed its window's end (10 s), so it is late.
#[test]
fn tumbling_windows_exact_hand_checked_in_every_mode_and_worker_count() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "readings.jsonl", READINGS);
    let p = write(dir.path(), "w.toml", WINDOWS);
    let w = |s: u32| format!("2026-03-01T10:00:{s:02}.000Z");
    let row =
        |d: &str, s: u32, n: u64, avg: Value, min: Value, max: Value, first: Value, last: Value| {
            json!({"device": d, "window_start": w(s), "window_end": w(s + 10), "n": n, "avg_t": avg,
               "min_t": min, "max_t": max, "first_t": first, "last_t": last})
        };
    let want_devices = canonical(vec![
        row(
            "a",
            0,
            2,
            json!(21.0),
            json!(20.0),
            json!(22.0),
            json!(20.0),
            json!(22.0),
        ),
        row(
            "b",
            0,
            1,
            json!(10.0),
            json!(10.0),
            json!(10.0),
            json!(10.0),
            json!(10.0),
        ),
        row(
            "a",
            10,
            1,
            json!(30.0),
            json!(30.0),
            json!(30.0),
            json!(30.0),
            json!(30.0),
        ),
        row(
            "b",
            10,
            1,
            json!(null),
            json!(null),
            json!(null),
            json!(null),
            json!(null),
        ),
        row(
            "a",
            30,
            2,
            json!(26.0),
            json!(25.5),
            json!(26.5),
            json!(25.5),
            json!(26.5),
        ),
        row(
            "b",
            30,
            1,
            json!(12.25),
            json!(12.25),
            json!(12.25),
            json!(12.25),
            json!(12.25),
        ),
    ]);
    let all = |s: u32, n: u64, sum: f64| json!({"window_start": w(s), "window_end": w(s + 10), "n": n, "sum_t": sum});
    let want_all = canonical(vec![all(0, 3, 52.0), all(10, 2, 30.0), all(30, 3, 64.25)]);
    for config in configurations() {
        let extra = config.clone();
        let err = run_ok(dir.path(), &p, &extra);
        let ctx = format!("{config:?}");
        assert_eq!(
            canonical(json_lines(&dir.path().join("devices.jsonl"))),
            want_devices,
            "{ctx}"
        );
        assert_eq!(
            canonical(json_lines(&dir.path().join("all.jsonl"))),
            want_all,
            "{ctx}"
        );
        // r8 is late for both windows: counted, and dead-lettered with the reason.
        let dead = json_lines(&dir.path().join("w.deadletter.jsonl"));
        assert_eq!(dead.len(), 2, "{ctx}");
        for d in &dead {
            assert!(d["reason"].as_str().unwrap().starts_with("late: its window [2026-03-01T10:00:00.000Z, 2026-03-01T10:00:10.000Z) had closed"), "{d}");
            assert!(d["record"].as_str().unwrap().contains("\"r8\""), "{d}");
        }
        assert!(
            err.contains("2 late records written to w.deadletter.jsonl"),
            "{err}"
        );
        let per_device = err
            .lines()
            .find(|l| l.contains("transforms.per_device"))
            .unwrap();
        let cells: Vec<&str> = per_device.split_whitespace().collect();
        // in, out, errors, dead-lettered, late
        assert_eq!(&cells[2..7], &["9", "6", "1", "1", "1"], "{per_device}");
    }
}

fn canonical(v: Vec<Value>) -> Vec<String> {
    let mut s: Vec<String> = v
        .iter()
        .map(|x| serde_json::to_string(x).unwrap())
        .collect();
    s.sort();
    s
}

/// Page views per minute (the bundled pipeline) against a brute-force count from the raw
/// generator events, in both modes on 1, 2 and 4 workers.
#[test]
fn page_views_per_minute_match_a_brute_force_reference_in_every_configuration() {
    let dir = workspace();
    let events = 60_000u64;
    let (spec, start) = generator(&bundled_text("clickstream-page-views.toml"), "clicks", &[]);
    let schema = Profile::Clickstream.schema();
    let (ev, page, user) = (
        schema.index_of("event").unwrap(),
        schema.index_of("page").unwrap(),
        schema.index_of("user_id").unwrap(),
    );
    // (window start, page) -> (views, distinct users)
    let mut want: BTreeMap<(i64, String), (u64, BTreeSet<String>)> = BTreeMap::new();
    for i in 0..events {
        let ts = start + i as i64 * 10_000;
        let r = spec.event(i, ts);
        if r.values[ev].as_str() != Some("page_view") {
            continue;
        }
        let w = ts - ts.rem_euclid(60_000_000);
        let e = want
            .entry((w, r.values[page].as_str().unwrap().to_string()))
            .or_default();
        e.0 += 1;
        e.1.insert(r.values[user].as_str().unwrap().to_string());
    }
    let want: Vec<(i64, String, u64, u64)> = want
        .into_iter()
        .map(|((w, p), (n, u))| (w, p, n, u.len() as u64))
        .collect();
    assert!(want.len() > 100, "a meaningful number of groups");
    for config in configurations() {
        let mut extra = config.clone();
        extra.extend(["--set", "sources.clicks.events=60000"]);
        run_ok(dir.path(), "pipelines/clickstream-page-views.toml", &extra);
        let mut reader = csv::Reader::from_path(dir.path().join("out/page-views.csv")).unwrap();
        let mut got: Vec<(i64, String, u64, u64)> = reader
            .records()
            .map(|r| {
                let r = r.unwrap();
                let ws = parse_rfc3339(&r[1]).unwrap();
                assert_eq!(parse_rfc3339(&r[2]).unwrap(), ws + 60_000_000);
                (
                    ws,
                    r[0].to_string(),
                    r[3].parse().unwrap(),
                    r[4].parse().unwrap(),
                )
            })
            .collect();
        got.sort();
        assert_eq!(got, want, "{config:?}");
    }
}

/// An open-loop source released in 20 ms micro-batches: each 5 s window of event time spans
/// several batches. Averages, minimums and maximums per device equal a reference computed with
/// a correctly rounded sum, whatever the mode and number of workers.
#[test]
fn windows_spanning_micro_batches_match_the_reference() {
    let dir = workspace();
    let events = 12_000u64;
    let (spec, start) = generator(
        &bundled_text("iot-device-report.toml"),
        "sensors",
        &[
            "sources.sensors.start=\"2026-01-01T00:00:00Z\"",
            "sources.sensors.event_time_interval=\"1ms\"",
        ],
    );
    let schema = Profile::Iot.schema();
    let (kind, dev, temp) = (
        schema.index_of("kind").unwrap(),
        schema.index_of("device_id").unwrap(),
        schema.index_of("temperature").unwrap(),
    );
    let mut groups: BTreeMap<(i64, String), Vec<f64>> = BTreeMap::new();
    for i in 0..events {
        let ts = start + i as i64 * 1_000;
        let r = spec.event(i, ts);
        if r.values[kind].as_str() != Some("reading") {
            continue;
        }
        let w = ts - ts.rem_euclid(5_000_000);
        groups
            .entry((w, r.values[dev].as_str().unwrap().to_string()))
            .or_default()
            .push(r.values[temp].as_f64().unwrap());
    }
    let want: Vec<(i64, String, u64, u64, u64, u64)> = groups
        .into_iter()
        .map(|((w, d), xs)| {
            let avg = fsum(&xs) / xs.len() as f64;
            let min = xs.iter().cloned().fold(f64::INFINITY, f64::min);
            let max = xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            (
                w,
                d,
                xs.len() as u64,
                avg.to_bits(),
                min.to_bits(),
                max.to_bits(),
            )
        })
        .collect();
    for config in configurations() {
        let mut extra = config.clone();
        extra.extend([
            "--set",
            "sources.sensors.events=12000",
            "--set",
            "sources.sensors.rate=60000.0",
            "--set",
            "sources.sensors.start=\"2026-01-01T00:00:00Z\"",
            "--set",
            "sources.sensors.event_time_interval=\"1ms\"",
            "--set",
            "transforms.per_device.size=\"5s\"",
        ]);
        run_ok(dir.path(), "pipelines/iot-device-report.toml", &extra);
        let mut got: Vec<(i64, String, u64, u64, u64, u64)> =
            json_lines(&dir.path().join("out/device-report.jsonl"))
                .iter()
                .map(|v| {
                    (
                        parse_rfc3339(v["window_start"].as_str().unwrap()).unwrap(),
                        v["device_id"].as_str().unwrap().to_string(),
                        v["readings"].as_u64().unwrap(),
                        v["avg_temp"].as_f64().unwrap().to_bits(),
                        v["min_temp"].as_f64().unwrap().to_bits(),
                        v["max_temp"].as_f64().unwrap().to_bits(),
                    )
                })
                .collect();
        got.sort();
        assert_eq!(got, want, "{config:?}");
    }
}

/// 3,000,000 events in 1 ms steps through 10 ms windows: 300,000 windows, about 90,000 results.
/// The window's state is freed as windows close, so the most groups held at once stays a small
/// fraction of the total: it is bounded by the input in flight, not by the length of the run.
/// (Without windows being freed it would equal the number of results.) One worker, so the bound
/// is exact: one batch of 65,536 events, ~3% alarms. With several workers, one that races ahead
/// of another holds its windows open until the slower one's frontier catches up; bounding that
/// skew is the job of backpressure, not of the window.
#[test]
fn window_state_is_freed_as_windows_close() {
    let dir = workspace();
    let report = dir.path().join("state.json");
    for mode in [
        vec!["--mode", "continuous"],
        vec!["--mode", "micro-batch", "--batch-interval", "10ms"],
    ] {
        let mut extra = mode.clone();
        extra.extend([
            "--workers",
            "1",
            "--report",
            report.to_str().unwrap(),
            "--set",
            "sources.sensors.events=3000000",
            "--set",
            "transforms.per_device.size=\"10ms\"",
        ]);
        run_ok(dir.path(), "pipelines/iot-alarm-counter.toml", &extra);
        let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        let w = r["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["component"] == "transforms.per_device")
            .unwrap();
        let (out, max_state, state) = (
            w["records_out"].as_u64().unwrap(),
            w["max_state"].as_u64().unwrap(),
            w["state"].as_u64().unwrap(),
        );
        assert!(out > 80_000, "{w}");
        assert_eq!(state, 0, "nothing is held after the run: {w}");
        // At most one batch's alarms (65,536 x 3%, each its own device and window at worst)
        // plus the windows the batch before it left open.
        assert!(max_state <= 4_500, "{mode:?}: {w}");
        assert!(max_state * 20 < out, "{mode:?}: {w}");
    }
}

/// `--report` writes the configuration, the counts and histograms that decode to the same
/// percentiles the report and the summary show.
#[test]
fn the_report_round_trips() {
    let dir = workspace();
    let report = dir.path().join("run.json");
    let err = run_ok(
        dir.path(),
        "pipelines/iot-device-report.toml",
        &[
            "--mode",
            "micro-batch",
            "--batch-interval",
            "50ms",
            "--report",
            report.to_str().unwrap(),
            "--set",
            "sources.sensors.events=20000",
            "--set",
            "sources.sensors.rate=40000.0",
        ],
    );
    let r = weir_engine::report::Report::read(&report).unwrap();
    assert_eq!(r.pipeline, "iot-device-report");
    assert_eq!(r.mode, "micro-batch");
    assert_eq!(r.batch_interval_ms, Some(50.0));
    assert_eq!(r.workers, 2);
    assert_eq!(
        r.sinks.len(),
        1,
        "the default dead-letter sink is not measured"
    );
    let s = &r.sinks[0];
    assert!(s.records > 0);
    for entry in [Some(&s.processing_latency), s.event_time_latency.as_ref()] {
        let e = entry.expect("both latencies are measured: event time follows the wall clock");
        let h = e.decode().unwrap();
        assert_eq!(h.len(), s.records);
        assert_eq!(h.max(), e.max_us);
        for (label, q) in weir_engine::summary::PERCENTILES {
            let stored = e.percentiles_us.iter().find(|(l, _)| l == label).unwrap().1;
            assert_eq!(h.value_at_percentile(q), stored, "{label}");
        }
    }
    let p50 = s.processing_latency.percentiles_us[0].1;
    // The summary prints the same p50.
    let line = err
        .lines()
        .find(|l| l.contains("sinks.report") && l.contains("processing"))
        .unwrap();
    assert!(line.contains(&weir_engine::summary::micros(p50)), "{line}");
}

/// Micro-batches hold records back until the batch is released: at an offered 20,000 events/s
/// the median latency of a stateless pipeline is about half the interval in micro-batch mode,
/// and far lower in continuous mode.
#[test]
fn micro_batches_cost_latency_and_the_histograms_show_it() {
    let dir = workspace();
    let p50 = |mode: &[&str]| -> u64 {
        let report = dir.path().join("lat.json");
        let mut extra = mode.to_vec();
        extra.extend([
            "--report",
            report.to_str().unwrap(),
            "--set",
            "sources.sensors.events=20000",
            "--set",
            "sources.sensors.rate=20000.0",
        ]);
        run_ok(dir.path(), "pipelines/iot-hot-readings.toml", &extra);
        let r = weir_engine::report::Report::read(&report).unwrap();
        let s = &r.sinks[0];
        assert!(
            s.event_time_latency.is_none(),
            "no windows: no event-time latency"
        );
        assert_eq!(s.processing_latency.count, s.records);
        s.processing_latency.percentiles_us[0].1
    };
    let batched = p50(&["--mode", "micro-batch", "--batch-interval", "200ms"]);
    let continuous = p50(&["--mode", "continuous"]);
    assert!(batched >= 40_000, "micro-batch p50 {batched}µs");
    assert!(
        continuous < batched / 2,
        "continuous p50 {continuous}µs, micro-batch {batched}µs"
    );
}

#[test]
fn a_bad_mode_on_the_command_line_is_reported_against_it() {
    let dir = workspace();
    let out = weir(
        dir.path(),
        &[
            "run",
            "pipelines/iot-device-report.toml",
            "--mode",
            "microbatch",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("`microbatch` is not a valid `mode`"), "{err}");
    assert!(err.contains("did you mean `micro-batch`?"), "{err}");
    assert!(
        err.contains("--set"),
        "the flag's value is shown as an override: {err}"
    );
    let out = weir(
        dir.path(),
        &[
            "run",
            "pipelines/iot-device-report.toml",
            "--batch-interval",
            "soon",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("`soon` is not a duration"),
        "{}",
        stderr(&out)
    );
}

/// A long run prints a status line per sink while it lasts.
#[test]
fn long_runs_print_status_lines() {
    let dir = workspace();
    let out = weir(
        dir.path(),
        &[
            "run",
            "pipelines/iot-device-report.toml",
            "--status-every",
            "300ms",
            "--set",
            "sources.sensors.events=24000",
        ],
        "",
    );
    ok(&out);
    let err = stderr(&out);
    let status: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("s  sink report:"))
        .collect();
    assert!(status.len() >= 2, "{err}");
    for l in status {
        assert!(
            l.contains("records,") && l.contains("latency p50") && l.contains("p99.9"),
            "{l}"
        );
    }
}

/// Result fields that are expressions over aggregates (and over the group fields and the
/// window's bounds), hand-checked in every mode and worker count; an error inside one points
/// at its place in the file.
#[test]
fn expressions_over_aggregates_hand_checked() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "in.jsonl",
        r#"{"ts":"2026-01-01T00:00:01Z","device_id":"a","temperature":20.125}
{"ts":"2026-01-01T00:00:04.5Z","device_id":"a","temperature":21.5}
{"ts":"2026-01-01T00:00:05Z","device_id":"a","temperature":19.0}
{"ts":"2026-01-01T00:00:07Z","device_id":"b","temperature":30.0}
{"ts":"2026-01-01T00:00:12Z","device_id":"a","temperature":18.0}
"#,
    );
    let text = r#"
[sources.in]
type = "file"
path = "in.jsonl"
format = "jsonl"
schema = { ts = "timestamp", device_id = "string", temperature = "f64" }

[transforms.w]
type = "window"
inputs = ["in"]
size = "10s"
group_by = ["device_id"]

[transforms.w.aggregates]
avg2 = "round(avg(temperature), 2)"
span_s = "max(ts) - min(ts)"
hot_pct = "count(*) FILTER (WHERE temperature > 20) * 100 / count(*)"
label = "device_id || ':' || CAST(count(*) AS string)"
width = "window_end - window_start"

[sinks.o]
type = "file"
inputs = ["w"]
path = "out.jsonl"
"#;
    let p = write(dir.path(), "w.toml", text);
    let row = |d: &str, s: u32, avg2: f64, span: f64, hot: i64, label: &str| {
        json!({"device_id": d, "window_start": format!("2026-01-01T00:00:{s:02}.000Z"),
            "window_end": format!("2026-01-01T00:00:{:02}.000Z", s + 10), "avg2": avg2,
            "span_s": span, "hot_pct": hot, "label": label, "width": 10.0})
    };
    // a in [0, 10): 20.125, 21.5, 19.0 -> avg 20.208.. -> 20.21; 4 s apart; 2 of 3 above 20.
    let want = canonical(vec![
        row("a", 0, 20.21, 4.0, 66, "a:3"),
        row("b", 0, 30.0, 0.0, 100, "b:1"),
        row("a", 10, 18.0, 0.0, 0, "a:1"),
    ]);
    for config in common::configurations() {
        let mut args = vec!["run", p.as_str()];
        args.extend(config.iter().copied());
        let o = weir(dir.path(), &args, "");
        ok(&o);
        let got: Vec<Value> = json_lines(&dir.path().join("out.jsonl"));
        assert_eq!(canonical(got), want, "{config:?}");
    }
    let bad = write(
        dir.path(),
        "bad.toml",
        &text.replace("round(avg(temperature), 2)", "round(avg(temprature), 2)"),
    );
    let err = weir_fails(dir.path(), &["validate", &bad]);
    assert!(
        err.contains("unknown field `temprature`") && err.contains("bad.toml:15:19"),
        "{err}"
    );
}
