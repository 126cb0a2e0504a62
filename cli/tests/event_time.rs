//! Event time end to end: out-of-order and late input from the generator through tumbling,
//! sliding and session windows, against brute-force references computed here from the raw
//! events and the documented watermark rule; every late record accounted for; the same results
//! in both modes on 1, 2 and 4 workers; idle inputs that do not stall windows.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use weir_operators::exact_sum::fsum;
use weir_operators::generator::{GeneratorSpec, Profile};
use weir_operators::time::parse_rfc3339;

const S: i64 = 1_000_000;

/// One raw event: index, undisordered time, event time, and the record's values by name.
struct Ev {
    base: i64,
    ts: i64,
    values: Vec<weir_operators::value::Value>,
}

/// The generator's events, as the documented rules make them.
fn events(spec: &GeneratorSpec, n: u64, start: i64, interval: i64) -> Vec<Ev> {
    (0..n)
        .map(|i| {
            let base = start + i as i64 * interval;
            let ts = spec.disordered(i, base);
            Ev {
                base,
                ts,
                values: spec.event(i, ts).values,
            }
        })
        .collect()
}

/// The report's counters of one component.
fn counters(report: &std::path::Path, component: &str) -> Value {
    let r: Value = serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
    r["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["component"] == component)
        .unwrap()
        .clone()
}

/// `pipelines/iot-sliding-averages.toml`: 10 s windows every 1 s per device, 2 s of disorder,
/// 1% late events, late = "update" with 5 s allowed lateness. A record counts in a window when
/// the window ends after its watermark (undisordered time - 2 s), or, late, when the window
/// ends less than 5 s before it. The final result of each window (the one with the most
/// late_records) must equal the reference; late records beyond every window's allowance are
/// dead-lettered; every late record is counted.
#[test]
fn sliding_windows_with_late_updates_match_the_reference() {
    let dir = workspace();
    let n = 30_000u64;
    let (spec, start) = generator(&bundled_text("iot-sliding-averages.toml"), "sensors", &[]);
    let schema = Profile::Iot.schema();
    let (kind, dev, temp) = (
        schema.index_of("kind").unwrap(),
        schema.index_of("device_id").unwrap(),
        schema.index_of("temperature").unwrap(),
    );
    let (size, slide, allowed, bound) = (10 * S, S, 5 * S, 2 * S);
    // (device, window end) -> (temperatures, late records)
    let mut want: BTreeMap<(String, i64), (Vec<f64>, u64)> = BTreeMap::new();
    let (mut late, mut dead) = (0u64, 0u64);
    for e in events(&spec, n, start, 1_000) {
        if e.values[kind].as_str() != Some("reading") {
            continue;
        }
        let wm = e.base - bound;
        let pe = e.ts - e.ts.rem_euclid(slide) + slide;
        let last = pe + size - slide;
        let first = if pe > wm {
            pe
        } else {
            late += 1;
            let mut f = pe;
            while f <= last && f + allowed <= wm {
                f += slide;
            }
            if f > last {
                dead += 1;
                continue;
            }
            f
        };
        let mut w = first;
        while w <= last {
            let g = want
                .entry((e.values[dev].as_str().unwrap().to_string(), w))
                .or_default();
            g.0.push(e.values[temp].as_f64().unwrap());
            g.1 += (pe <= wm) as u64;
            w += slide;
        }
    }
    assert!(
        late > 50 && dead > 0,
        "the input exercises late data: {late} late, {dead} too late"
    );
    let want: Vec<(String, i64, u64, u64, u64)> = want
        .into_iter()
        .map(|((d, w), (xs, l))| {
            (
                d,
                w,
                xs.len() as u64,
                (fsum(&xs) / xs.len() as f64).to_bits(),
                l,
            )
        })
        .collect();
    let report = dir.path().join("r.json");
    for config in configurations() {
        let mut extra = config.clone();
        extra.extend([
            "--report",
            report.to_str().unwrap(),
            "--set",
            "sources.sensors.events=30000",
        ]);
        run_ok(dir.path(), "pipelines/iot-sliding-averages.toml", &extra);
        // The final version of each window: the one with the most late records.
        let mut best: BTreeMap<(String, i64), (u64, u64, u64)> = BTreeMap::new();
        for v in json_lines(&dir.path().join("out/sliding-averages.jsonl")) {
            let key = (
                v["device_id"].as_str().unwrap().to_string(),
                parse_rfc3339(v["window_end"].as_str().unwrap()).unwrap(),
            );
            assert_eq!(
                parse_rfc3339(v["window_start"].as_str().unwrap()).unwrap(),
                key.1 - size
            );
            let row = (
                v["readings"].as_u64().unwrap(),
                v["avg_temp"].as_f64().unwrap().to_bits(),
                v["late_records"].as_u64().unwrap(),
            );
            let e = best.entry(key).or_insert(row);
            if row.2 > e.2 {
                *e = row;
            }
        }
        let got: Vec<(String, i64, u64, u64, u64)> = best
            .into_iter()
            .map(|((d, w), (c, a, l))| (d, w, c, a, l))
            .collect();
        assert_eq!(got.len(), want.len(), "{config:?}");
        assert_eq!(got, want, "{config:?}");
        let c = counters(&report, "transforms.averages");
        assert_eq!(c["late"], late, "{config:?}: {c}");
        assert_eq!(
            c["late_updated"].as_u64().unwrap() + c["dead_lettered"].as_u64().unwrap(),
            late,
            "{c}"
        );
        assert_eq!(c["dead_lettered"], dead, "{c}");
    }
}

/// `pipelines/clickstream-sessions.toml`: per-user sessions with a 30 s gap, 5 s of disorder,
/// 0.5% late events sent to `sessions.late`. A record is late when its time is behind its
/// watermark (undisordered time - 5 s). Sessions are the connected runs of on-time events less
/// than 30 s apart, per user.
#[test]
fn sessions_and_late_side_output_match_the_reference() {
    let dir = workspace();
    let n = 40_000u64;
    let (spec, start) = generator(&bundled_text("clickstream-sessions.toml"), "clicks", &[]);
    let schema = Profile::Clickstream.schema();
    let (user, page, id) = (
        schema.index_of("user_id").unwrap(),
        schema.index_of("page").unwrap(),
        schema.index_of("id").unwrap(),
    );
    let gap = 30 * S;
    let mut per_user: BTreeMap<String, Vec<(i64, u64, String)>> = BTreeMap::new();
    let mut late_ids = BTreeSet::new();
    for e in events(&spec, n, start, 10_000) {
        let i = e.values[id].as_u64().unwrap();
        if e.ts < e.base - 5 * S {
            late_ids.insert(i);
            continue;
        }
        per_user
            .entry(e.values[user].as_str().unwrap().to_string())
            .or_default()
            .push((e.ts, i, e.values[page].as_str().unwrap().to_string()));
    }
    assert!(late_ids.len() > 50);
    // (user, start, end, events, distinct pages, first page, last page)
    let mut want = Vec::new();
    for (u, mut evs) in per_user {
        evs.sort();
        let mut k = 0;
        while k < evs.len() {
            let mut j = k;
            let mut end = evs[k].0 + gap;
            while j + 1 < evs.len() && evs[j + 1].0 < end {
                j += 1;
                end = end.max(evs[j].0 + gap);
            }
            let run = &evs[k..=j];
            let pages: BTreeSet<&String> = run.iter().map(|e| &e.2).collect();
            want.push((
                u.clone(),
                run[0].0,
                end,
                run.len() as u64,
                pages.len() as u64,
                run[0].2.clone(),
                run[run.len() - 1].2.clone(),
            ));
            k = j + 1;
        }
    }
    want.sort();
    for config in configurations() {
        let mut extra = config.clone();
        extra.extend(["--set", "sources.clicks.events=40000"]);
        let err = run_ok(dir.path(), "pipelines/clickstream-sessions.toml", &extra);
        let mut got: Vec<_> = json_lines(&dir.path().join("out/sessions.jsonl"))
            .iter()
            .map(|v| {
                (
                    v["user_id"].as_str().unwrap().to_string(),
                    parse_rfc3339(v["window_start"].as_str().unwrap()).unwrap(),
                    parse_rfc3339(v["window_end"].as_str().unwrap()).unwrap(),
                    v["events"].as_u64().unwrap(),
                    v["pages"].as_u64().unwrap(),
                    v["first_page"].as_str().unwrap().to_string(),
                    v["last_page"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        got.sort();
        assert_eq!(got, want, "{config:?}");
        let late: BTreeSet<u64> = json_lines(&dir.path().join("out/late-clicks.jsonl"))
            .iter()
            .map(|v| v["id"].as_u64().unwrap())
            .collect();
        assert_eq!(late, late_ids, "{config:?}");
        let line = format!(
            "transforms.sessions: {} late records: {} sent to the late output",
            late_ids.len(),
            late_ids.len()
        );
        assert!(err.contains(&line), "{err}");
    }
}

/// Tumbling windows over out-of-order input with `late = "drop"`: exactly the events behind
/// their window's end by the watermark are dropped, and counted.
#[test]
fn tumbling_windows_drop_exactly_the_late_events() {
    let dir = workspace();
    let p = write(
        dir.path(),
        "t.toml",
        r#"
[sources.s]
type = "generator"
profile = "iot"
events = 20000
devices = 7
seed = 4
start = "2026-01-01T00:00:00Z"
event_time_interval = "1ms"
disorder = "500ms"
late_fraction = 0.02
late_by = "3s"
watermark = { max_out_of_orderness = "500ms" }

[transforms.w]
type = "window"
inputs = ["s"]
size = "1s"
group_by = ["device_id"]
aggregates = { n = "count(*)", ids = "sum(id)" }
late = "drop"

[sinks.o]
type = "file"
inputs = ["w"]
path = "t.jsonl"
"#,
    );
    let (spec, start) = generator(&std::fs::read_to_string(&p).unwrap(), "s", &[]);
    let dev = Profile::Iot.schema().index_of("device_id").unwrap();
    let mut want: BTreeMap<(String, i64), (u64, u64)> = BTreeMap::new();
    let mut late = 0;
    for (i, e) in events(&spec, 20_000, start, 1_000).into_iter().enumerate() {
        let end = e.ts - e.ts.rem_euclid(S) + S;
        if end <= e.base - 500_000 {
            late += 1;
            continue;
        }
        let g = want
            .entry((e.values[dev].as_str().unwrap().to_string(), end))
            .or_default();
        g.0 += 1;
        g.1 += i as u64;
    }
    assert!(late > 100, "{late}");
    for config in configurations() {
        let err = run_ok(dir.path(), &p, &config);
        let mut got: BTreeMap<(String, i64), (u64, u64)> = BTreeMap::new();
        for v in json_lines(&dir.path().join("t.jsonl")) {
            got.insert(
                (
                    v["device_id"].as_str().unwrap().to_string(),
                    parse_rfc3339(v["window_end"].as_str().unwrap()).unwrap(),
                ),
                (v["n"].as_u64().unwrap(), v["ids"].as_u64().unwrap()),
            );
        }
        assert_eq!(got, want, "{config:?}");
        assert!(
            err.contains(&format!(
                "transforms.w: {late} late records: {late} dropped"
            )),
            "{err}"
        );
    }
}

/// A source that goes quiet does not stall the windows: standard input stays open and silent,
/// and with `idle_timeout` its watermark follows the wall clock, so the generator's windows
/// are written while it is still open. Without `idle_timeout` they are not (the control).
#[test]
fn an_idle_input_does_not_stall_windows() {
    let pipeline = |idle: &str| {
        format!(
            r#"
[sources.gen]
type = "generator"
profile = "iot"
events = 5000
devices = 5
start = "2026-01-01T00:00:00Z"
event_time_interval = "1ms"

[sources.quiet]
type = "stdin"
schema = {{ ts = "timestamp", device_id = "string", temperature = "f64" }}
{idle}

[transforms.a]
type = "map"
inputs = ["gen"]
select = ["ts", "device_id", "temperature"]

[transforms.b]
type = "map"
inputs = ["quiet"]
select = ["ts", "device_id", "temperature"]

[transforms.w]
type = "window"
inputs = ["a", "b"]
size = "1s"
group_by = ["device_id"]
aggregates = {{ n = "count(*)" }}

[sinks.o]
type = "file"
inputs = ["w"]
path = "idle.jsonl"
"#
        )
    };
    let bin = assert_cmd::cargo::cargo_bin("weir");
    for (idle, expect_output) in [
        ("watermark = { idle_timeout = \"300ms\" }", true),
        ("", false),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "p.toml", &pipeline(idle));
        let mut child = std::process::Command::new(&bin)
            .current_dir(dir.path())
            .args(["run", &p, "--status-every", "0s"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let out = dir.path().join("idle.jsonl");
        let started = Instant::now();
        let lines = |p: &std::path::Path| {
            std::fs::read_to_string(p)
                .map(|t| t.lines().count())
                .unwrap_or(0)
        };
        // 5 devices x 5 windows of 1 s: all 25 results, while standard input is open.
        while lines(&out) < 25
            && started.elapsed() < Duration::from_secs(if expect_output { 20 } else { 3 })
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        let written_while_open = lines(&out);
        // Now end the quiet input: the run finishes either way.
        let mut stdin = child.stdin.take().unwrap();
        stdin.flush().unwrap();
        drop(stdin);
        let status = child.wait().unwrap();
        assert!(status.success());
        if expect_output {
            assert_eq!(
                written_while_open, 25,
                "windows were written while the input was idle"
            );
        } else {
            assert_eq!(
                written_while_open, 0,
                "without idle_timeout the quiet input holds the windows"
            );
            assert_eq!(lines(&out), 25, "and they are written when it ends");
        }
    }
}

/// `pipelines/iot-idle-sensors.toml`: one feed pauses for 3 s; after 1 s of silence its
/// watermark follows the wall clock, so the other feed's windows are written about 1 s after
/// its last event, not when the paused feed resumes. Its readings are then late and dropped.
/// The control, with a 30 s idle timeout, waits for the pause to end.
#[test]
fn a_paused_generator_goes_idle() {
    let dir = workspace();
    let report = dir.path().join("idle.json");
    let max_latency = |extra: &[&str]| -> (u64, Value) {
        let mut args = vec!["--report", report.to_str().unwrap()];
        args.extend_from_slice(extra);
        run_ok(dir.path(), "pipelines/iot-idle-sensors.toml", &args);
        let r = weir_engine::report::Report::read(&report).unwrap();
        (
            r.sinks[0].processing_latency.max_us,
            counters(&report, "transforms.per_minute"),
        )
    };
    let (idle, c) = max_latency(&[]);
    assert!(idle < 2_500_000, "results waited {idle}µs");
    assert_eq!(
        (c["late"].as_u64(), c["late_dropped"].as_u64()),
        (Some(1000), Some(1000)),
        "{c}"
    );
    let (held, c) = max_latency(&[
        "--set",
        "sources.basement.watermark.idle_timeout=\"30s\"",
        "--set",
        "sources.hall.watermark.idle_timeout=\"30s\"",
    ]);
    assert!(
        held >= 2_900_000,
        "without idleness the pause holds the windows: {held}µs"
    );
    assert_eq!(c["late"].as_u64(), Some(0), "{c}");
}

/// Sliding windows with a small slide (size/100) and late records dropped: the two-stack
/// combination of panes gives exactly the brute-force result of counting every event into
/// every window that contains it.
#[test]
fn sliding_windows_with_a_small_slide_match_the_reference() {
    let dir = workspace();
    let p = write(
        dir.path(),
        "s.toml",
        r#"
[sources.s]
type = "generator"
profile = "iot"
events = 20000
devices = 5
seed = 8
start = "2026-01-01T00:00:00Z"
event_time_interval = "1ms"
disorder = "50ms"
late_fraction = 0.01
late_by = "3s"
watermark = { max_out_of_orderness = "50ms" }

[transforms.w]
type = "window"
inputs = ["s"]
kind = "sliding"
size = "2s"
slide = "20ms"
group_by = ["device_id"]
aggregates = { n = "count(*)", ids = "sum(id)", first_id = "first(id)", kinds = "count(distinct kind)" }
late = "drop"

[sinks.o]
type = "file"
inputs = ["w"]
path = "s.jsonl"
"#,
    );
    let (spec, start) = generator(&std::fs::read_to_string(&p).unwrap(), "s", &[]);
    let schema = Profile::Iot.schema();
    let (dev, kind) = (
        schema.index_of("device_id").unwrap(),
        schema.index_of("kind").unwrap(),
    );
    let (size, slide) = (2 * S, 20_000);
    // (device, window end) -> (count, sum of ids, (ts, id) of the first, kinds)
    type Acc = (u64, u64, (i64, u64), BTreeSet<String>);
    let mut want: BTreeMap<(String, i64), Acc> = BTreeMap::new();
    let mut late = 0;
    for (i, e) in events(&spec, 20_000, start, 1_000).into_iter().enumerate() {
        let pe = e.ts - e.ts.rem_euclid(slide) + slide;
        if pe <= e.base - 50_000 {
            late += 1;
            continue;
        }
        let mut w = pe;
        while w < pe + size {
            let a = want
                .entry((e.values[dev].as_str().unwrap().to_string(), w))
                .or_insert((0, 0, (i64::MAX, 0), BTreeSet::new()));
            a.0 += 1;
            a.1 += i as u64;
            a.2 = a.2.min((e.ts, i as u64));
            a.3.insert(e.values[kind].as_str().unwrap().to_string());
            w += slide;
        }
    }
    assert!(late > 50, "{late}");
    let want: BTreeMap<(String, i64), (u64, u64, u64, u64)> = want
        .into_iter()
        .map(|(k, a)| (k, (a.0, a.1, a.2 .1, a.3.len() as u64)))
        .collect();
    for config in configurations() {
        let err = run_ok(dir.path(), &p, &config);
        let got: BTreeMap<(String, i64), (u64, u64, u64, u64)> =
            json_lines(&dir.path().join("s.jsonl"))
                .iter()
                .map(|v| {
                    (
                        (
                            v["device_id"].as_str().unwrap().to_string(),
                            parse_rfc3339(v["window_end"].as_str().unwrap()).unwrap(),
                        ),
                        (
                            v["n"].as_u64().unwrap(),
                            v["ids"].as_u64().unwrap(),
                            v["first_id"].as_u64().unwrap(),
                            v["kinds"].as_u64().unwrap(),
                        ),
                    )
                })
                .collect();
        assert_eq!(got.len(), want.len(), "{config:?}");
        assert_eq!(got, want, "{config:?}");
        assert!(
            err.contains(&format!(
                "transforms.w: {late} late records: {late} dropped"
            )),
            "{err}"
        );
    }
}

/// The aggregates beyond the basic ones, and FILTER, over out-of-order input with late records
/// dropped: per device and 1 s window, against a reference computed here from the raw events
/// (two-pass variance, sorted values for the percentile, sets for distinct counts), and a
/// global window whose ids are too many to count exactly. The same results in every mode and
/// worker count: the sketches and the exact sums do not depend on arrival order.
#[test]
fn statistical_and_approximate_aggregates_and_filter_match_the_reference() {
    let dir = workspace();
    let p = write(
        dir.path(),
        "t.toml",
        r#"
[sources.s]
type = "generator"
profile = "iot"
events = 20000
devices = 7
seed = 9
start = "2026-01-01T00:00:00Z"
event_time_interval = "1ms"
disorder = "500ms"
late_fraction = 0.02
late_by = "3s"
watermark = { max_out_of_orderness = "500ms" }

[transforms.w]
type = "window"
inputs = ["s"]
size = "1s"
group_by = ["device_id"]
late = "drop"
max_state = 1000

[transforms.w.aggregates]
n = "count(*)"
var = "variance(temperature)"
sd_pop = "stddev_pop(temperature)"
p90 = "approx_percentile(temperature, 0.9)"
kinds = "approx_count_distinct(kind)"
alarms = "count(*) FILTER (WHERE kind = 'alarm')"
hot_avg = "avg(temperature) FILTER (WHERE temperature > 20)"

[transforms.all]
type = "window"
inputs = ["s"]
size = "2s"
late = "drop"
aggregates = { ids = "approx_count_distinct(id)", n = "count(*)" }

[sinks.o]
type = "file"
inputs = ["w"]
path = "t.jsonl"

[sinks.a]
type = "file"
inputs = ["all"]
path = "a.jsonl"
"#,
    );
    let (spec, start) = generator(&std::fs::read_to_string(&p).unwrap(), "s", &[]);
    let schema = Profile::Iot.schema();
    let (dev, temp, kind) = (
        schema.index_of("device_id").unwrap(),
        schema.index_of("temperature").unwrap(),
        schema.index_of("kind").unwrap(),
    );
    // Per (device, window end): the events' temperatures and kinds.
    #[derive(Default)]
    struct G {
        n: u64,
        temps: Vec<f64>,
        kinds: BTreeSet<String>,
        alarms: u64,
    }
    let mut groups: BTreeMap<(String, i64), G> = BTreeMap::new();
    let mut global: BTreeMap<i64, u64> = BTreeMap::new();
    for e in events(&spec, 20_000, start, 1_000) {
        let on_time = |size: i64| e.ts - e.ts.rem_euclid(size) + size > e.base - 500_000;
        if on_time(2 * S) {
            *global
                .entry(e.ts - e.ts.rem_euclid(2 * S) + 2 * S)
                .or_default() += 1;
        }
        if !on_time(S) {
            continue;
        }
        let end = e.ts - e.ts.rem_euclid(S) + S;
        let g = groups
            .entry((e.values[dev].as_str().unwrap().to_string(), end))
            .or_default();
        g.n += 1;
        if let Some(t) = e.values[temp].as_f64() {
            g.temps.push(t);
        }
        let k = e.values[kind].as_str().unwrap().to_string();
        g.alarms += u64::from(k == "alarm");
        g.kinds.insert(k);
    }
    let close = |got: &Value, want: Option<f64>, rel: f64, what: &str| match want {
        None => assert!(got.is_null(), "{what}: {got} should be NULL"),
        Some(w) => {
            let g = got.as_f64().unwrap_or_else(|| panic!("{what}: {got}"));
            assert!(
                (g - w).abs() <= rel * w.abs() + 1e-12,
                "{what}: {g} against {w}"
            );
        }
    };
    for config in configurations() {
        run_ok(dir.path(), &p, &config);
        let got = json_lines(&dir.path().join("t.jsonl"));
        assert_eq!(got.len(), groups.len(), "{config:?}");
        for v in &got {
            let key = (
                v["device_id"].as_str().unwrap().to_string(),
                parse_rfc3339(v["window_end"].as_str().unwrap()).unwrap(),
            );
            let g = &groups[&key];
            let what = format!("{key:?} {config:?}");
            assert_eq!(v["n"].as_u64().unwrap(), g.n, "{what}");
            assert_eq!(v["alarms"].as_u64().unwrap(), g.alarms, "{what}");
            assert_eq!(v["kinds"].as_u64().unwrap(), g.kinds.len() as u64, "{what}");
            let m = g.temps.len() as f64;
            let mean = g.temps.iter().sum::<f64>() / m;
            let ss: f64 = g.temps.iter().map(|t| (t - mean) * (t - mean)).sum();
            close(
                &v["var"],
                (g.temps.len() > 1).then(|| ss / (m - 1.0)),
                1e-9,
                &what,
            );
            close(
                &v["sd_pop"],
                (!g.temps.is_empty()).then(|| (ss / m).sqrt()),
                1e-9,
                &what,
            );
            let mut sorted = g.temps.clone();
            sorted.sort_by(f64::total_cmp);
            let p90 = (!sorted.is_empty())
                .then(|| sorted[(0.9 * (sorted.len() - 1) as f64).floor() as usize]);
            close(&v["p90"], p90, 0.01, &what);
            let hot: Vec<f64> = g.temps.iter().copied().filter(|&t| t > 20.0).collect();
            let hot_avg = (!hot.is_empty()).then(|| fsum(&hot) / hot.len() as f64);
            assert_eq!(v["hot_avg"].as_f64(), hot_avg, "{what}");
        }
        let all = json_lines(&dir.path().join("a.jsonl"));
        assert_eq!(all.len(), global.len(), "{config:?}");
        for v in &all {
            let end = parse_rfc3339(v["window_end"].as_str().unwrap()).unwrap();
            let n = global[&end];
            assert_eq!(v["n"].as_u64().unwrap(), n);
            let ids = v["ids"].as_u64().unwrap() as f64;
            // Ids are distinct: counted exactly up to 512, beyond by the HyperLogLog
            // (standard error 1.6%; 5% is three standard errors).
            if n <= 512 {
                assert_eq!(ids, n as f64);
            } else {
                assert!(
                    (ids - n as f64).abs() <= 0.05 * n as f64,
                    "{ids} against {n}"
                );
            }
        }
        assert!(global.values().filter(|&&n| n > 512).count() >= 5);
    }
}

/// A window whose key space outgrows `max_state` fails the run with a message naming it.
#[test]
fn max_state_fails_the_run_with_a_message() {
    let dir = workspace();
    let p = write(
        dir.path(),
        "t.toml",
        r#"
[sources.s]
type = "generator"
profile = "iot"
events = 50000
devices = 5000
start = "2026-01-01T00:00:00Z"
event_time_interval = "1ms"

[transforms.w]
type = "window"
inputs = ["s"]
size = "1h"
group_by = ["device_id"]
aggregates = { n = "count(*)" }
max_state = 100

[sinks.o]
type = "null"
inputs = ["w"]
"#,
    );
    let err = weir_fails(dir.path(), &["run", &p]);
    assert!(
        err.contains("window `w` holds") && err.contains("max_state = 100"),
        "{err}"
    );
    let bad = write(
        dir.path(),
        "b.toml",
        &std::fs::read_to_string(&p)
            .unwrap()
            .replace("max_state = 100", "max_state = 0"),
    );
    let err = weir_fails(dir.path(), &["validate", &bad]);
    assert!(
        err.contains("`max_state` must be at least 1") && err.contains("b.toml:"),
        "{err}"
    );
}
