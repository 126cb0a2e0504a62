//! Operating pipelines: `weir tap`, and a served run's `/metrics`, `/status`, `/snapshot`,
//! `/events` and dashboard, checked against the run's own report and against counts the tests
//! work out themselves.

mod common;

use std::io::Write;

use common::*;

/// Readings in file order: ids 0..40, device d{i%3}, temperature 10 + (i * 7) % 25, event time
/// i seconds; and after them three late ones (behind the watermark of a 10 s window).
fn readings() -> (String, Vec<serde_json::Value>) {
    let mut text = String::new();
    let mut all = Vec::new();
    let mut push = |i: u64, sec: u64, t: f64| {
        let line = format!(
            "{{\"id\":{i},\"ts\":\"2026-03-01T10:{:02}:{:02}Z\",\"device\":\"d{}\",\"temperature\":{t:.1}}}\n",
            sec / 60,
            sec % 60,
            i % 3
        );
        all.push(serde_json::from_str(&line).unwrap());
        text.push_str(&line);
    };
    for i in 0..40u64 {
        push(i, i, 10.0 + ((i * 7) % 25) as f64);
    }
    for (i, sec) in [(40u64, 3u64), (41, 12), (42, 5)] {
        push(i, sec, 50.0);
    }
    (text, all)
}

const TAPPED: &str = r#"
[pipeline]
name = "tapped"
workers = 1

[sources.readings]
type = "file"
path = "readings.jsonl"
format = "jsonl"
schema = { id = "u64", ts = "timestamp", device = "string", temperature = "f64" }
timestamp_field = "ts"

[transforms.hot]
type = "filter"
inputs = ["readings"]
condition = "temperature >= 25"

[transforms.per_device]
type = "window"
inputs = ["readings"]
size = "10s"
group_by = ["device"]
aggregates = { n = "count(*)" }
late = "side-output"

[sinks.hot_out]
type = "file"
inputs = ["hot"]
path = "hot.jsonl"

[sinks.late_out]
type = "file"
inputs = ["per_device.late"]
path = "late.jsonl"

[sinks.windows]
type = "file"
inputs = ["per_device"]
path = "windows.jsonl"
"#;

/// `weir tap` prints exactly the first N records a file sink on the same component writes,
/// for a filter and for a window's late port, in both modes; the table format shows the same
/// records.
#[test]
fn tap_prints_the_first_records_a_sink_on_the_component_gets() {
    let dir = tempfile::tempdir().unwrap();
    let (text, all) = readings();
    write(dir.path(), "readings.jsonl", &text);
    let p = write(dir.path(), "p.toml", TAPPED);
    // Worked out here: the hot readings in file order, and the late ones.
    let hot: Vec<&serde_json::Value> = all
        .iter()
        .filter(|r| r["temperature"].as_f64().unwrap() >= 25.0)
        .collect();
    assert!(hot.len() > 8);
    for mode in ["continuous", "micro-batch"] {
        let o = weir(dir.path(), &["run", &p, "--mode", mode, "-q"], "");
        ok(&o);
        let written = json_lines(&dir.path().join("hot.jsonl"));
        assert_eq!(written.len(), hot.len(), "{mode}");
        let late_written = json_lines(&dir.path().join("late.jsonl"));
        let late_ids: Vec<u64> = late_written
            .iter()
            .map(|r| r["id"].as_u64().unwrap())
            .collect();
        assert_eq!(late_ids, [40, 41, 42], "{mode}");
        for (port, limit, sink) in [
            ("hot", 6usize, &written),
            ("per_device.late", 2, &late_written),
        ] {
            // The sinks do not write while tapped: remove their files to see that.
            for f in ["hot.jsonl", "late.jsonl", "windows.jsonl"] {
                std::fs::remove_file(dir.path().join(f)).unwrap();
            }
            let o = weir(
                dir.path(),
                &[
                    "tap",
                    &p,
                    port,
                    "--limit",
                    &limit.to_string(),
                    "--mode",
                    mode,
                ],
                "",
            );
            ok(&o);
            let printed: Vec<serde_json::Value> = String::from_utf8(o.stdout.clone())
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            assert_eq!(printed, sink[..limit], "{mode} {port}");
            assert!(
                stderr(&o).contains(&format!("{limit} records out of `{port}`")),
                "{}",
                stderr(&o)
            );
            for f in ["hot.jsonl", "late.jsonl", "windows.jsonl"] {
                let size = std::fs::metadata(dir.path().join(f)).map_or(0, |m| m.len());
                assert_eq!(size, 0, "{f} was written while tapped");
            }
            // Put the outputs back for the next round's comparison.
            let o = weir(dir.path(), &["run", &p, "--mode", mode, "-q"], "");
            ok(&o);
        }
        // The table: a header of the fields, a rule, then one row per record, in order.
        let o = weir(
            dir.path(),
            &[
                "tap", &p, "hot", "-n", "3", "--format", "table", "--mode", mode,
            ],
            "",
        );
        ok(&o);
        let out = String::from_utf8(o.stdout).unwrap();
        let lines: Vec<Vec<&str>> = out
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(lines[0], ["id", "ts", "device", "temperature"]);
        assert_eq!(lines.len(), 5, "{out}");
        for (row, r) in lines[2..].iter().zip(&hot) {
            assert_eq!(row[0], r["id"].to_string());
            assert_eq!(row[2], r["device"].as_str().unwrap());
            assert_eq!(
                row[3].parse::<f64>().unwrap(),
                r["temperature"].as_f64().unwrap()
            );
        }
    }
    // Fewer records than asked: all of them, and the run ends by itself.
    let o = weir(dir.path(), &["tap", &p, "per_device.late", "-n", "100"], "");
    ok(&o);
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 3);
    assert!(stderr(&o).contains("3 records out of `per_device.late`; the run ended"));
}

/// What cannot be tapped is named, with what can.
#[test]
fn tap_names_what_it_cannot_tap() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "readings.jsonl", &readings().0);
    let p = write(dir.path(), "p.toml", TAPPED);
    let o = weir(dir.path(), &["tap", &p, "nope"], "");
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.contains("no component or port `nope`"), "{e}");
    assert!(
        e.contains("tap one of: readings, readings.dead_letter, hot, per_device, per_device.late"),
        "{e}"
    );
    let o = weir(dir.path(), &["tap", &p, "hot_out"], "");
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("`hot_out` is a sink") && e.contains("tap what it reads: hot"),
        "{e}"
    );
    let o = weir(dir.path(), &["tap", &p, "per_device.nope"], "");
    assert_eq!(o.status.code(), Some(2));
}

/// The value of the metric `name` whose labels include every one of `labels`, from a
/// scrape's text.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
        let have = rest.trim_end_matches('}');
        let all = labels
            .iter()
            .all(|(k, v)| have.split(',').any(|p| p == format!("{k}=\"{v}\"")));
        (n == name && all).then(|| value.parse().ok()).flatten()
    })
}

/// A served run's `/metrics` and `/snapshot` follow its input as it arrives (standard input,
/// fed by the test, so the run ends on data), and once it has ended, `/metrics` and `/status`
/// agree with the report file the run wrote; the page and its event stream are served.
#[test]
fn metrics_and_status_follow_a_served_run() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "p.toml",
        r#"
[pipeline]
name = "served"
workers = 2

[sources.lines]
type = "stdin"
schema = { ts = "timestamp", level = "string", msg = "string" }
timestamp_format = "epoch_ms"

[transforms.errors]
type = "filter"
inputs = ["lines"]
condition = "level = 'error'"

[sinks.out]
type = "file"
inputs = ["errors"]
path = "out.jsonl"
"#,
    );
    let mut run = Running::start(
        dir.path(),
        &[
            "run",
            &p,
            "--serve",
            "127.0.0.1:0",
            "--serve-linger",
            "10m",
            "--report",
            "report.json",
            "--status-every",
            "0s",
        ],
    );
    let at = run.served_at();
    let line = |i: u64| {
        let level = ["info", "error", "warn"][(i % 3) as usize];
        format!(
            "{{\"ts\":{},\"level\":\"{level}\",\"msg\":\"m{i}\"}}\n",
            1_000 * i
        )
    };
    let mut stdin = run.child.stdin.take().unwrap();
    let mut sent = 0u64;
    let mut feed = |n: u64, stdin: &mut std::process::ChildStdin| {
        for _ in 0..n {
            stdin.write_all(line(sent).as_bytes()).unwrap();
            sent += 1;
        }
        stdin.write_all(b"not json\n").unwrap();
        stdin.flush().unwrap();
        sent
    };
    let errors_in = |n: u64| (0..n).filter(|i| i % 3 == 1).count() as f64;
    for (round, n) in [(1u64, 30u64), (2, 45)] {
        let total = feed(n, &mut stdin);
        // Counters rise to exactly what was sent: read, bad lines, records out of the filter.
        let m = eventually("the metrics count what was sent", || {
            let (status, m) = http("GET", &at, "/metrics", None)?;
            // 503 until the run has started.
            if status == 503 {
                return None;
            }
            assert_eq!(status, 200);
            let read = metric(&m, "weir_records_out_total", &[("component", "lines")])?;
            let filtered = metric(&m, "weir_records_out_total", &[("component", "errors")])?;
            (read == total as f64 && filtered == errors_in(total)).then_some(m)
        });
        assert_eq!(
            metric(&m, "weir_errors_total", &[("component", "lines")]),
            Some(round as f64),
            "{m}"
        );
        assert_eq!(
            metric(&m, "weir_dead_lettered_total", &[("component", "lines")]),
            Some(round as f64)
        );
        assert!(metric(&m, "weir_busy_seconds_total", &[("component", "errors")]).unwrap() > 0.0);
        let (_, snap) = http("GET", &at, "/snapshot", None).unwrap();
        let snap: serde_json::Value = serde_json::from_str(&snap).unwrap();
        assert_eq!(snap["finished"], false);
        assert_eq!(snap["components"][0]["id"], "lines");
        assert!(snap["components"][0]["records_out"].as_u64().unwrap() >= total);
        // How busy each component was: a share of the workers' time; the filter ran.
        for c in snap["components"].as_array().unwrap() {
            let busy = c["busy"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&busy), "{c}");
        }
        if round == 1 {
            assert!(
                snap["components"][1]["busy"].as_f64().unwrap() > 0.0,
                "{snap}"
            );
        }
    }
    // The page, and its event stream's first tick.
    let (status, page) = http("GET", &at, "/", None).unwrap();
    assert_eq!(status, 200);
    assert!(page.contains("EventSource") && page.contains("id=\"graph\""));
    let (_, graph) = http("GET", &at, "/graph", None).unwrap();
    let graph: serde_json::Value = serde_json::from_str(&graph).unwrap();
    let ids: Vec<&str> = graph["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["lines", "errors", "out", "dead_letter"]);
    assert_eq!(
        graph["ports"],
        serde_json::json!(["lines", "lines.dead_letter", "errors"])
    );
    let (status, _) = http("GET", &at, "/events?tap=nope", None).unwrap();
    assert_eq!(status, 404);
    drop(stdin);
    run.wait_for("the dashboard stays up");
    // Ended: /metrics and /status give the final counts, which the report file has too.
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap())
            .unwrap();
    let (_, status) = http("GET", &at, "/status", None).unwrap();
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let (_, m) = http("GET", &at, "/metrics", None).unwrap();
    assert!(m.ends_with("# EOF\n"), "{m}");
    for (c, s) in report["components"]
        .as_array()
        .unwrap()
        .iter()
        .zip(status["components"].as_array().unwrap())
    {
        assert_eq!(c["component"], s["component"]);
        let id = c["component"].as_str().unwrap().split('.').nth(1).unwrap();
        for (field, name) in [
            ("records_in", "weir_records_in_total"),
            ("records_out", "weir_records_out_total"),
            ("errors", "weir_errors_total"),
            ("dead_lettered", "weir_dead_lettered_total"),
        ] {
            assert_eq!(c[field], s[field], "{id} {field}");
            let scraped = metric(&m, name, &[("component", id)]);
            assert_eq!(scraped, c[field].as_f64(), "{id} {field}:\n{m}");
        }
    }
    assert_eq!(report["components"][1]["records_out"], errors_in(75) as u64);
    let sink = &report["sinks"][0];
    assert_eq!(sink["sink"], "out");
    assert_eq!(
        status["sinks"][0]["processing_latency"]["count"],
        sink["processing_latency"]["count"]
    );
    assert_eq!(
        metric(
            &m,
            "weir_sink_latency_seconds_count",
            &[("sink", "out"), ("time", "processing")]
        ),
        sink["processing_latency"]["count"].as_f64()
    );
    assert_eq!(
        metric(
            &m,
            "weir_sink_latency_seconds_bucket",
            &[("sink", "out"), ("time", "processing"), ("le", "inf")]
        ),
        sink["processing_latency"]["count"].as_f64()
    );
    let (_, snap) = http("GET", &at, "/snapshot", None).unwrap();
    let snap: serde_json::Value = serde_json::from_str(&snap).unwrap();
    assert_eq!(snap["finished"], true);
    assert_eq!(
        snap["sinks"][0]["processing"]["count"],
        sink["processing_latency"]["count"]
    );
    // weir top shows the same counts in the terminal.
    let o = weir(dir.path(), &["top", &at, "--once"], "");
    ok(&o);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(text.contains("· served · finished ·"), "{text}");
    let row = |id: &str| -> Vec<String> {
        let line = text
            .lines()
            .find(|l| l.contains(id))
            .unwrap_or_else(|| panic!("{id}:\n{text}"));
        line.trim_matches(|c: char| c == '│' || c.is_whitespace())
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    assert_eq!(
        row("sources.lines")[..4],
        ["sources.lines", "stdin", "77", "75"]
    );
    assert_eq!(row("sources.lines")[6], "2");
    assert_eq!(
        row("transforms.errors")[..4],
        ["transforms.errors", "filter", "75", "25"]
    );
    assert_eq!(row("sinks.out")[..4], ["sinks.out", "file", "25", "25"]);
    // SIGKILL by the guard ends the lingering process.
}

/// `--serve` on an address in use fails before the run, naming it; `[pipeline] serve` with
/// a bad address is a configuration error at its line.
#[test]
fn serve_mistakes_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let p = write(
        dir.path(),
        "p.toml",
        "[pipeline]\nname = \"s\"\n[sources.g]\ntype = \"generator\"\nprofile = \"iot\"\nevents = 10\n[sinks.n]\ntype = \"null\"\ninputs = [\"g\"]\n",
    );
    let o = weir(dir.path(), &["run", &p, "--serve", &addr], "");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(&format!("cannot serve on {addr}")),
        "{}",
        stderr(&o)
    );
    let p = write(
        dir.path(),
        "q.toml",
        "[pipeline]\nname = \"s\"\nserve = \"here\"\n[sources.g]\ntype = \"generator\"\nprofile = \"iot\"\nevents = 10\n[sinks.n]\ntype = \"null\"\ninputs = [\"g\"]\n",
    );
    let o = weir(dir.path(), &["validate", &p], "");
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("`here` is not an address to serve on") && e.contains(":3:"),
        "{e}"
    );
}

/// `weir compare --serve` serves its table and plot on one page: the table it wrote, and the
/// plot's SVG inline.
#[test]
fn compare_serves_its_table_and_plot() {
    let dir = workspace();
    ok(&weir(
        dir.path(),
        &[
            "run",
            "pipelines/iot-hot-readings.toml",
            "--set",
            "sources.sensors.events=20000",
            "--report",
            "r.json",
            "-q",
        ],
        "",
    ));
    let mut c = Running::start(
        dir.path(),
        &[
            "compare",
            "--from",
            "r.json",
            "--out",
            "c",
            "--serve",
            "127.0.0.1:0",
        ],
    );
    let line = c.wait_for("table and plot at http://");
    let at = line
        .split("http://")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let (status, page) = http("GET", &at, "/", None).unwrap();
    assert_eq!(status, 200);
    let table = std::fs::read_to_string(dir.path().join("c/compare.txt")).unwrap();
    let escaped = table
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    assert!(
        page.contains(&format!("<pre id=\"table\">{escaped}</pre>")),
        "{page}"
    );
    assert!(page.contains("<div id=\"plot\"><svg"), "{page}");
    assert!(page.contains("iot-hot-readings"), "{page}");
    // A finished page shows no run.
    let (status, _) = http("GET", &at, "/metrics", None).unwrap();
    assert_eq!(status, 404);
}

/// A served run that ends by its `--duration` keeps its page up (the stop that ended the run
/// is not a Ctrl-C), and a Ctrl-C then ends the process with the run's own status.
#[test]
fn a_timed_served_run_lingers_until_ctrl_c() {
    let dir = workspace();
    let mut run = Running::start(
        dir.path(),
        &[
            "run",
            "pipelines/iot-hot-readings.toml",
            "--unbounded",
            "--rate",
            "1000",
            "--duration",
            "1s",
            "--serve",
            "127.0.0.1:0",
            "--status-every",
            "0s",
        ],
    );
    let at = run.served_at();
    run.wait_for("the dashboard stays up until Ctrl-C");
    let (status, snap) = http("GET", &at, "/snapshot", None).unwrap();
    assert_eq!(status, 200);
    let snap: serde_json::Value = serde_json::from_str(&snap).unwrap();
    assert_eq!(snap["finished"], true);
    assert!(snap["components"][0]["records_out"].as_u64().unwrap() > 0);
    let pid = run.child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    assert_eq!(run.child.wait().unwrap().code(), Some(0));
}
