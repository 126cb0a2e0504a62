//! The real-time uses: `alert` (per-key rules over event time) against a brute-force reference
//! over out-of-order input in both modes on 1, 2 and 4 workers, and hand-checked cases of every
//! rule; `predict` (per-key online models) against a reference implementation of the same update
//! rules over the same input.

mod common;

use std::collections::BTreeMap;

use common::*;
use weir_operators::time::format_rfc3339;

/// Each device's readings in time order: (ts µs, id, temperature).
type Readings = BTreeMap<String, Vec<(i64, u64, f64)>>;

/// Readings of 12 devices over 20 minutes, each device at irregular gaps of 1 to 60 s, the
/// temperature a random walk that crosses 80 now and then; written out of order (each record up
/// to 9 s behind one before it), so a watermark 10 s behind keeps every record on time.
/// Returns the file's text and each device's readings in time order: (ts µs, id, temperature).
fn readings() -> (String, Readings) {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |m: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % m
    };
    let start = 1_772_359_200_000_000i64; // 2026-03-01T10:00:00Z
    let mut per: Readings = BTreeMap::new();
    let mut all = Vec::new();
    let mut id = 0u64;
    for d in 0..12 {
        let device = format!("dev-{d:02}");
        let (mut ts, mut t) = (start + d as i64 * 1_000_000, 70.0 + d as f64);
        while ts < start + 1_200_000_000 {
            id += 1;
            per.entry(device.clone()).or_default().push((ts, id, t));
            let jitter = next(9_000_000) as i64;
            all.push((ts + jitter, ts, id, device.clone(), t));
            ts += 1_000_000 * (1 + next(60) as i64);
            t += next(13) as f64 - 6.0;
            t = t.clamp(50.0, 110.0);
        }
    }
    all.sort_by_key(|r| (r.0, r.2));
    let text = all
        .iter()
        .map(|(_, ts, id, device, t)| {
            format!(
                "{{\"id\":{id},\"ts\":\"{}\",\"device\":\"{device}\",\"t\":{t:.1}}}\n",
                format_rfc3339(*ts)
            )
        })
        .collect();
    (text, per)
}

/// The alert records a run wrote, canonical.
fn alerts_of(dir: &std::path::Path, file: &str) -> Vec<String> {
    json_multiset(&std::fs::read_to_string(dir.join(file)).unwrap())
}

fn alert(
    device: &str,
    name: &str,
    state: &str,
    severity: &str,
    started: i64,
    at: i64,
    extra: &str,
) -> String {
    let v: serde_json::Value = serde_json::from_str(&format!(
        "{{\"device\":\"{device}\",\"alert\":\"{name}\",\"state\":\"{state}\",\"severity\":\"{severity}\",\"started_at\":\"{}\",\"at\":\"{}\"{extra}}}",
        format_rfc3339(started),
        format_rfc3339(at)
    ))
    .unwrap();
    serde_json::to_string(&v).unwrap()
}

/// The brute-force reference. Condition rule (t > 80 for 20 s): each maximal run of a
/// device's consecutive hot readings, starting at t0 and ended by the next cool reading at e
/// (or by the end of the input), fires at t0 + 20 s if that is no later than e, with the
/// temperature of the last reading before it, and then resolves at e with the cool reading's.
/// Absence rule (45 s): each gap from a reading at a to the next at b fires at a + 45 s when
/// that is no later than b and resolves at b; after a device's last reading it fires and never
/// resolves (event time ends with the input).
fn reference(per: &Readings) -> (Vec<String>, Vec<String>) {
    let (hold, silence) = (20_000_000i64, 45_000_000i64);
    let mut hot = Vec::new();
    let mut silent = Vec::new();
    for (device, rs) in per {
        let mut i = 0;
        while i < rs.len() {
            if rs[i].2 <= 80.0 {
                i += 1;
                continue;
            }
            let t0 = rs[i].0;
            let mut j = i;
            while j < rs.len() && rs[j].2 > 80.0 {
                j += 1;
            }
            let end = rs.get(j).map(|r| r.0);
            let fire = t0 + hold;
            if end.is_none_or(|e| fire <= e) {
                let before = rs.iter().rev().find(|r| r.0 < fire).unwrap();
                let label = format!(",\"temperature\":{:?}", before.2);
                hot.push(alert(device, "hot", "firing", "critical", t0, fire, &label));
                if let Some(e) = end {
                    let label = format!(",\"temperature\":{:?}", rs[j].2);
                    hot.push(alert(device, "hot", "resolved", "critical", t0, e, &label));
                }
            }
            i = j;
        }
        for w in rs.windows(2) {
            let (a, b) = (w[0].0, w[1].0);
            if a + silence <= b {
                silent.push(alert(
                    device,
                    "silent",
                    "firing",
                    "warning",
                    a,
                    a + silence,
                    "",
                ));
                silent.push(alert(device, "silent", "resolved", "warning", a, b, ""));
            }
        }
        let last = rs.last().unwrap().0;
        silent.push(alert(
            device,
            "silent",
            "firing",
            "warning",
            last,
            last + silence,
            "",
        ));
    }
    hot.sort();
    silent.sort();
    (hot, silent)
}

/// The source of the [`readings`] file, out of order by up to 9 s.
const READINGS: &str = r#"[sources.readings]
type = "file"
path = "readings.jsonl"
format = "jsonl"
schema = { id = "u64", ts = "timestamp", device = "string", t = "f64" }
watermark = { max_out_of_orderness = "10s" }
"#;

const ALERTS: &str = r#"
[transforms.hot]
type = "alert"
inputs = ["readings"]
key = ["device"]
condition = "t > 80"
for = "20s"
severity = "critical"
labels = { temperature = "t" }

[transforms.silent]
type = "alert"
inputs = ["readings"]
key = ["device"]
absent_for = "45s"

[sinks.hot_out]
type = "file"
inputs = ["hot"]
path = "hot.jsonl"

[sinks.silent_out]
type = "file"
inputs = ["silent"]
path = "silent.jsonl"
"#;

#[test]
fn alerts_match_a_brute_force_reference_in_every_configuration() {
    let (text, per) = readings();
    let (hot, silent) = reference(&per);
    assert!(
        hot.len() > 20 && silent.len() > 20,
        "{} {}",
        hot.len(),
        silent.len()
    );
    let dir = workspace();
    write(dir.path(), "readings.jsonl", &text);
    let p = write(
        dir.path(),
        "p.toml",
        &format!("[pipeline]\nname = \"alerts\"\n{READINGS}{ALERTS}"),
    );
    for config in configurations() {
        let err = run_ok(dir.path(), &p, &config);
        assert_eq!(alerts_of(dir.path(), "hot.jsonl"), hot, "{config:?}\n{err}");
        assert_eq!(
            alerts_of(dir.path(), "silent.jsonl"),
            silent,
            "{config:?}\n{err}"
        );
        assert!(
            !dir.path().join("alerts.deadletter.jsonl").exists(),
            "nothing is late"
        );
    }
}

/// Hysteresis (`clear`, `clear_for`), the count rule, the cooldown, and late records, by hand.
#[test]
fn clear_count_cooldown_and_late_records_by_hand() {
    let dir = workspace();
    let s = |sec: i64| format_rfc3339(1_772_359_200_000_000 + sec * 1_000_000);
    // (second, device, t, kind)
    let rows = [
        (0, "a", 85.0, "ok"),
        (10, "a", 78.0, "alarm"), // below 80 but not below 75: still firing (clear is t < 75)
        (20, "a", 74.0, "alarm"), // clear starts
        (25, "a", 76.0, "alarm"), // clear broken: firing on
        (30, "a", 70.0, "ok"),    // clear starts again
        (45, "a", 71.0, "ok"),    // clear held 15 s at 45: resolved at 45
        (50, "a", 90.0, "alarm"), // fires again at once (for 0s), cooldown 30 s: silent
        (60, "a", 60.0, "ok"),
        (75, "a", 60.0, "ok"), // clear held 15 s: the silent episode resolves, silently
        (100, "a", 95.0, "ok"), // 55 s after the last resolve: fires
        (200, "a", 50.0, "ok"),
        (215, "a", 50.0, "ok"),
        (1, "b", 50.0, "alarm"),
        (2, "b", 50.0, "alarm"),
        (3, "b", 50.0, "alarm"), // three alarms within 10 s: count fires at 3
        (14, "b", 50.0, "alarm"), // 1 left the trailing 10 s at 11, leaving two: resolved at 11
        (16, "b", 50.0, "ok"),
    ];
    let mut rows = rows.to_vec();
    rows.sort_by_key(|r| r.0);
    let mut text: String = rows
        .iter()
        .enumerate()
        .map(|(i, (sec, d, t, k))| {
            format!(
                "{{\"id\":{i},\"ts\":\"{}\",\"device\":\"{d}\",\"t\":{t:.1},\"kind\":\"{k}\"}}\n",
                s(*sec)
            )
        })
        .collect();
    // A late record: 5 s behind the watermark (the file is in order, with no out-of-orderness).
    text.push_str(&format!(
        "{{\"id\":99,\"ts\":\"{}\",\"device\":\"a\",\"t\":99.0,\"kind\":\"ok\"}}\n",
        s(210)
    ));
    write(dir.path(), "in.jsonl", &text);
    let p = write(
        dir.path(),
        "p.toml",
        r#"[pipeline]
name = "by-hand"
[sources.s]
type = "file"
path = "in.jsonl"
format = "jsonl"
schema = { id = "u64", ts = "timestamp", device = "string", t = "f64", kind = "string" }
[transforms.hot]
type = "alert"
inputs = ["s"]
key = ["device"]
condition = "t > 80"
clear = "t < 75"
clear_for = "15s"
cooldown = "30s"
late = "side-output"
[transforms.storm]
type = "alert"
inputs = ["s"]
key = ["device"]
condition = "kind = 'alarm'"
count = 3
within = "10s"
severity = "page"
[sinks.hot_out]
type = "file"
inputs = ["hot"]
path = "hot.jsonl"
[sinks.late_out]
type = "file"
inputs = ["hot.late"]
path = "late.jsonl"
[sinks.storm_out]
type = "file"
inputs = ["storm"]
path = "storm.jsonl"
"#,
    );
    let t = |sec: i64| 1_772_359_200_000_000 + sec * 1_000_000;
    let hot = {
        let mut v = vec![
            alert("a", "hot", "firing", "warning", t(0), t(0), ""),
            alert("a", "hot", "resolved", "warning", t(0), t(45), ""),
            alert("a", "hot", "firing", "warning", t(100), t(100), ""),
            alert("a", "hot", "resolved", "warning", t(100), t(215), ""),
        ];
        v.sort();
        v
    };
    let storm = {
        let mut v = vec![
            alert("b", "storm", "firing", "page", t(1), t(3), ""),
            alert("b", "storm", "resolved", "page", t(1), t(11), ""),
            // `a` has alarms at 10, 20, 25 (three within 10 s of 25? 20 and 25 only): none.
        ];
        v.sort();
        v
    };
    for config in configurations().into_iter().filter(|c| !c.contains(&"4")) {
        let err = run_ok(dir.path(), &p, &config);
        assert_eq!(alerts_of(dir.path(), "hot.jsonl"), hot, "{config:?}\n{err}");
        assert_eq!(
            alerts_of(dir.path(), "storm.jsonl"),
            storm,
            "{config:?}\n{err}"
        );
        let late = json_lines(&dir.path().join("late.jsonl"));
        assert_eq!(late.len(), 1, "{err}");
        assert_eq!(late[0]["id"], 99);
        // The storm alert dead-letters the late record (its default policy).
        let dead = json_lines(&dir.path().join("by-hand.deadletter.jsonl"));
        assert_eq!(dead.len(), 1, "{err}");
        assert_eq!(dead[0]["source"], "storm");
        assert!(
            dead[0]["reason"]
                .as_str()
                .unwrap()
                .contains("behind the watermark"),
            "{err}"
        );
        assert!(
            err.contains("1 late record written to by-hand.deadletter.jsonl"),
            "only the dead-lettered late record is in the file: {err}"
        );
    }
}

/// Each mistake in an alert's keys is reported at its place.
#[test]
fn alert_configuration_errors_name_the_place() {
    let dir = workspace();
    let p = write(
        dir.path(),
        "p.toml",
        r#"[sources.s]
type = "generator"
profile = "iot"
events = 10
[transforms.a]
type = "alert"
inputs = ["s"]
key = ["devce_id"]
condition = "temperature > 80"
absent_for = "1m"
[transforms.b]
type = "alert"
inputs = ["s"]
count = 3
for = "10s"
[transforms.c]
type = "alert"
inputs = ["s"]
condition = "temperature"
labels = { state = "kind" }
[sinks.o]
type = "null"
inputs = ["a", "b", "c"]
"#,
    );
    let err = weir_fails(dir.path(), &["validate", &p]);
    for (what, at) in [
        (
            "`key` names `devce_id`, which is not an input field",
            "p.toml:8:8",
        ),
        (
            "an alert has one rule, but this one has `absent_for` and `condition`",
            "p.toml:5:",
        ),
        (
            "`for` belongs to the condition rule, not the count rule",
            "p.toml:15:7",
        ),
        ("the count rule needs `within`", "p.toml:14:9"),
        (
            "`condition` must be true or false, but it is f64",
            "p.toml:19:13",
        ),
        (
            "the label `state` has the name of a field alert records already have",
            "p.toml:20:20",
        ),
    ] {
        assert!(err.contains(what), "{what}\n{err}");
        assert!(err.contains(at), "{at} for {what}\n{err}");
    }
}

/// The EWMA and Holt update rules, written here from their definitions: each device's readings
/// in time order give (id, forecast, score).
fn model_reference(per: &Readings, holt: bool) -> BTreeMap<u64, (f64, Option<f64>)> {
    let (alpha, beta, horizon) = (0.3, 0.2, 60.0);
    let mut out = BTreeMap::new();
    for rs in per.values() {
        let (mut mean, mut var) = (0.0f64, 0.0f64);
        let (mut level, mut trend, mut at, mut res_var) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
        for (n, &(ts, id, x)) in rs.iter().enumerate() {
            let t = ts as f64 / 1e6;
            if n == 0 {
                (mean, level, at) = (x, x, t);
                out.insert(id, (x, None));
                continue;
            }
            if !holt {
                let z = (var > 0.0).then(|| (x - mean) / var.sqrt());
                let d = x - mean;
                mean += alpha * d;
                var = (1.0 - alpha) * (var + d * alpha * d);
                out.insert(id, (mean, z));
            } else {
                let dt = t - at;
                let predicted = level + trend * dt;
                let res = x - predicted;
                let z = (res_var > 0.0).then(|| res / res_var.sqrt());
                let new_level = alpha * x + (1.0 - alpha) * predicted;
                if dt > 0.0 {
                    trend = beta * (new_level - level) / dt + (1.0 - beta) * trend;
                }
                level = new_level;
                at = t;
                res_var = (1.0 - alpha) * (res_var + alpha * res * res);
                out.insert(id, (level + trend * horizon, z));
            }
        }
    }
    out
}

/// An EWMA and a Holt model per device, each to its own file.
const MODELS: &str = r#"[transforms.ewma]
type = "predict"
inputs = ["readings"]
key = ["device"]
value = "t"
alpha = 0.3
[transforms.holt]
type = "predict"
inputs = ["readings"]
key = ["device"]
value = "t"
model = "holt"
alpha = 0.3
beta = 0.2
horizon = "60s"
[sinks.ewma_out]
type = "file"
inputs = ["ewma"]
path = "ewma.jsonl"
[sinks.holt_out]
type = "file"
inputs = ["holt"]
path = "holt.jsonl"
"#;

#[test]
fn predictions_match_a_reference_of_the_update_rules_in_every_configuration() {
    let (text, per) = readings();
    let dir = workspace();
    write(dir.path(), "readings.jsonl", &text);
    let p = write(
        dir.path(),
        "p.toml",
        &format!("[pipeline]\nname = \"models\"\n{READINGS}{MODELS}"),
    );
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0);
    for config in configurations() {
        let err = run_ok(dir.path(), &p, &config);
        for (file, holt) in [("ewma.jsonl", false), ("holt.jsonl", true)] {
            let want = model_reference(&per, holt);
            let got = json_lines(&dir.path().join(file));
            assert_eq!(got.len(), want.len(), "{file} {config:?}\n{err}");
            let mut scored = 0;
            for r in got {
                let id = r["id"].as_u64().unwrap();
                let (forecast, score) = want[&id];
                assert!(
                    close(r["forecast"].as_f64().unwrap(), forecast),
                    "{file} {id}: {r} vs {forecast}"
                );
                match score {
                    Some(z) => {
                        scored += 1;
                        assert!(
                            close(r["score"].as_f64().unwrap(), z),
                            "{file} {id}: {r} vs {z}"
                        )
                    }
                    None => assert!(r["score"].is_null(), "{file} {id}: {r}"),
                }
            }
            assert!(scored > 100, "{file}: {scored} scored");
        }
    }
}

/// The `view` sink: the latest window result per key in SQLite, queryable while and after the
/// run; a second run over a corrected archive (the batch layer) replaces the results of the
/// keys it recomputes and leaves the others, as a lambda architecture's serving view does.
#[test]
fn a_view_keeps_the_latest_result_per_key_and_a_batch_run_replaces_it() {
    let dir = workspace();
    let line = |id: u32, sec: u32, d: &str, t: f64| {
        format!("{{\"id\":{id},\"ts\":\"2026-03-01T10:00:{sec:02}Z\",\"device\":\"{d}\",\"t\":{t:.1}}}\n")
    };
    // The live input: two devices over two 10 s windows.
    let live: String = [
        line(1, 1, "a", 10.0),
        line(2, 2, "b", 20.0),
        line(3, 5, "a", 30.0),
        line(4, 12, "a", 50.0),
        line(5, 15, "b", 60.0),
    ]
    .concat();
    // The archive, corrected: a's first window had a wrong reading; b's second is recomputed
    // unchanged; the batch run covers only the first 20 s.
    let archive: String = [
        line(1, 1, "a", 12.0),
        line(2, 2, "b", 20.0),
        line(3, 5, "a", 30.0),
        line(5, 15, "b", 60.0),
    ]
    .concat();
    let pipeline = |input: &str| {
        format!(
            r#"[sources.s]
type = "file"
path = "{input}"
format = "jsonl"
schema = {{ id = "u64", ts = "timestamp", device = "string", t = "f64" }}
[transforms.w]
type = "window"
inputs = ["s"]
size = "10s"
group_by = ["device"]
aggregates = {{ n = "count(*)", avg_t = "avg(t)" }}
[sinks.report]
type = "view"
inputs = ["w"]
path = "out/views.db"
key = ["device", "window_start"]
"#
        )
    };
    let query = || -> Vec<(String, String, i64, f64)> {
        let c = rusqlite::Connection::open(dir.path().join("out/views.db")).unwrap();
        let mut s = c
            .prepare(
                "SELECT device, window_start, n, avg_t FROM report ORDER BY device, window_start",
            )
            .unwrap();
        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let w = |s: u32| format!("2026-03-01T10:00:{s:02}.000Z");
    write(dir.path(), "live.jsonl", &live);
    write(dir.path(), "archive.jsonl", &archive);
    let p = write(dir.path(), "live.toml", &pipeline("live.jsonl"));
    run_ok(dir.path(), &p, &["--workers", "2"]);
    assert_eq!(
        query(),
        vec![
            ("a".to_string(), w(0), 2, 20.0),
            ("a".to_string(), w(10), 1, 50.0),
            ("b".to_string(), w(0), 1, 20.0),
            ("b".to_string(), w(10), 1, 60.0),
        ]
    );
    let p = write(dir.path(), "batch.toml", &pipeline("archive.jsonl"));
    run_ok(
        dir.path(),
        &p,
        &["--mode", "micro-batch", "--batch-interval", "20ms"],
    );
    assert_eq!(
        query(),
        vec![
            ("a".to_string(), w(0), 2, 21.0),
            ("a".to_string(), w(10), 1, 50.0),
            ("b".to_string(), w(0), 1, 20.0),
            ("b".to_string(), w(10), 1, 60.0),
        ],
        "the batch run's results replace the live ones for the keys it recomputed"
    );
    // A table of other columns is refused when the run starts, saying what to do.
    let other = pipeline("live.jsonl").replace("avg_t = \"avg(t)\"", "max_t = \"max(t)\"");
    let p = write(dir.path(), "other.toml", &other);
    let err = weir_fails(dir.path(), &["run", &p]);
    assert!(
        err.contains("the table `report`") && err.contains("give the sink another `table`"),
        "{err}"
    );
}
