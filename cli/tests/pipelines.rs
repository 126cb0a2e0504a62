//! End-to-end runs of `weir` over the bundled pipelines and small inputs, with results checked
//! against hand-checked expected files or a brute-force reference computed here.

mod common;

use common::*;
use serde_json::Value;

fn bundled() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root().join("pipelines"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    v.sort();
    assert!(v.len() >= 5, "the bundled pipelines: {v:?}");
    v
}

#[test]
fn every_bundled_pipeline_validates_and_runs() {
    let dir = workspace();
    for p in bundled() {
        let path = format!("pipelines/{p}");
        let v = weir(dir.path(), &["validate", &path], "");
        ok(&v);
        assert!(stderr(&v).contains("is valid"), "{p}: {}", stderr(&v));
        // The generators are bounded already; cap them lower to keep the test quick.
        let mut args = vec!["run".to_string(), path.clone()];
        let text = std::fs::read_to_string(root().join("pipelines").join(&p)).unwrap();
        let doc: toml::Table = toml::from_str(&text).unwrap();
        let sources = doc["sources"].as_table().unwrap();
        // A TCP source listens on a free port, and `weir produce` feeds it.
        let mut producers = Vec::new();
        for (id, source) in sources {
            match source["type"].as_str() {
                Some("generator") => {
                    args.push("--set".into());
                    args.push(format!("sources.{id}.events=20000"));
                }
                Some("tcp") => {
                    let port = std::net::TcpListener::bind("127.0.0.1:0")
                        .unwrap()
                        .local_addr()
                        .unwrap()
                        .port();
                    args.push("--set".into());
                    args.push(format!("sources.{id}.address=\"127.0.0.1:{port}\""));
                    let d = dir.path().to_path_buf();
                    producers.push(std::thread::spawn(move || {
                        let target = format!("127.0.0.1:{port}");
                        weir(&d, &["produce", "--events", "20000", "--tcp", &target], "")
                    }));
                }
                Some("kafka") => {
                    // A topic of its own on the test broker, filled before the run, read from
                    // the start to its end.
                    let brokers = std::env::var("WEIR_KAFKA_BROKERS")
                        .expect("the Kafka pipelines need WEIR_KAFKA_BROKERS: run scripts/test");
                    let topic = format!(
                        "bundled-{}-{id}-{}",
                        std::process::id(),
                        p.replace('.', "-")
                    );
                    let o = weir(
                        dir.path(),
                        &[
                            "produce",
                            "--events",
                            "20000",
                            "--topic",
                            &topic,
                            "--brokers",
                            &brokers,
                            "--key",
                            "device_id",
                        ],
                        "",
                    );
                    ok(&o);
                    for set in [
                        format!("sources.{id}.brokers=\"{brokers}\""),
                        format!("sources.{id}.topics=[\"{topic}\"]"),
                        format!("sources.{id}.group_id=\"{topic}\""),
                        format!("sources.{id}.start=\"earliest\""),
                        format!("sources.{id}.bounded=true"),
                    ] {
                        args.push("--set".into());
                        args.push(set);
                    }
                }
                Some("pubsub") => {
                    // A topic and subscription of their own on the emulator, filled before the
                    // run, read until every message has come.
                    let endpoint = std::env::var("WEIR_PUBSUB_ENDPOINT").expect(
                        "the Pub/Sub pipelines need WEIR_PUBSUB_ENDPOINT: run scripts/test",
                    );
                    let topic = format!(
                        "bundled-{}-{id}-{}",
                        std::process::id(),
                        p.replace('.', "-")
                    );
                    let sub = format!("{topic}-sub");
                    let project = source["project"].as_str().unwrap().to_string();
                    let o = weir(
                        dir.path(),
                        &[
                            "produce",
                            "--events",
                            "20000",
                            "--pubsub",
                            &topic,
                            "--subscription",
                            &sub,
                            "--project",
                            &project,
                            "--endpoint",
                            &endpoint,
                            "--key",
                            "device_id",
                        ],
                        "",
                    );
                    ok(&o);
                    for set in [
                        format!("sources.{id}.endpoint=\"{endpoint}\""),
                        format!("sources.{id}.subscription=\"{sub}\""),
                        format!("sources.{id}.max_messages=20000"),
                    ] {
                        args.push("--set".into());
                        args.push(set);
                    }
                }
                Some("kinesis") => {
                    // A stream of its own on the test server, filled before the run, read from
                    // the start to its tip.
                    let endpoint = std::env::var("WEIR_KINESIS_ENDPOINT").expect(
                        "the Kinesis pipelines need WEIR_KINESIS_ENDPOINT: run scripts/test",
                    );
                    let stream = format!(
                        "bundled-{}-{id}-{}",
                        std::process::id(),
                        p.replace('.', "-")
                    );
                    let o = weir(
                        dir.path(),
                        &[
                            "produce",
                            "--events",
                            "20000",
                            "--kinesis",
                            &stream,
                            "--endpoint",
                            &endpoint,
                            "--key",
                            "device_id",
                        ],
                        "",
                    );
                    ok(&o);
                    for set in [
                        format!("sources.{id}.endpoint=\"{endpoint}\""),
                        format!("sources.{id}.stream=\"{stream}\""),
                        format!("sources.{id}.positions=\"state/{stream}\""),
                        format!("sources.{id}.start=\"trim_horizon\""),
                        format!("sources.{id}.bounded=true"),
                    ] {
                        args.push("--set".into());
                        args.push(set);
                    }
                }
                _ => {}
            }
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let stdin = "{\"ts\": 1, \"level\": \"error\", \"msg\": \"disk full\"}\n";
        let r = weir(dir.path(), &args, stdin);
        for p in producers {
            ok(&p.join().unwrap());
        }
        ok(&r);
        assert!(stderr(&r).contains("finished in"), "{p}: {}", stderr(&r));
    }
}

#[test]
fn the_kafka_and_tcp_feeds_of_one_pipeline_are_compared() {
    let dir = workspace();
    let brokers = std::env::var("WEIR_KAFKA_BROKERS")
        .expect("the Kafka pipelines need WEIR_KAFKA_BROKERS: run scripts/test");
    let out = std::process::Command::new(root().join("pipelines/kafka-vs-tcp.sh"))
        .current_dir(dir.path())
        .args([brokers.as_str(), "5k", "10k"])
        .env("WEIR", assert_cmd::cargo::cargo_bin("weir"))
        .env("OUT", "cmp")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    for f in ["tcp.json", "kafka.json", "latency.svg", "latency.png"] {
        assert!(dir.path().join("cmp").join(f).exists(), "{f}: {text}");
    }
    let table = std::fs::read_to_string(dir.path().join("cmp/compare.txt")).unwrap();
    assert!(
        table.contains("tcp-device-report") && table.contains("kafka-device-report"),
        "{table}"
    );
    // The README's example of this table shows some of its columns (`...` for the rest):
    // each is one of the table's, in the table's order.
    let example = readme_block("configuration                        offered/s");
    let header: Vec<&str> = example.lines().next().unwrap().split_whitespace().collect();
    let real = table
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>();
    let mut at = real.iter();
    for word in header.iter().filter(|w| **w != "...") {
        assert!(
            at.any(|r| r == word),
            "README column word {word:?} is not in weir compare's columns {real:?} (in order)"
        );
    }
    // Every event went through each pipeline.
    for name in ["tcp", "kafka"] {
        let r: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join(format!("cmp/{name}.json"))).unwrap(),
        )
        .unwrap();
        let source = r["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["component"] == "sources.sensors")
            .unwrap();
        assert_eq!(source["records_in"], 10_000, "{name}: {text}");
    }
}

#[test]
fn file_source_filter_map_exact_output_and_dead_letters() {
    let dir = workspace();
    let r = weir(
        dir.path(),
        &["run", "pipelines/sensor-file-alerts.toml"],
        "",
    );
    ok(&r);
    let got = std::fs::read_to_string(dir.path().join("out/sensor-alerts.jsonl")).unwrap();
    let want =
        std::fs::read_to_string(root().join("cli/tests/expected/sensor-alerts.jsonl")).unwrap();
    assert_eq!(json_multiset(&got), json_multiset(&want));

    // Every bad line is in the default dead-letter file, with its line and reason.
    let dead =
        std::fs::read_to_string(dir.path().join("sensor-file-alerts.deadletter.jsonl")).unwrap();
    let mut got: Vec<(u64, String)> = dead
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["source"], "readings");
            assert_eq!(v["file"], "readings.jsonl");
            (
                v["line"].as_u64().unwrap(),
                v["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    let want =
        std::fs::read_to_string(root().join("cli/tests/expected/sensor-alerts.deadletter.tsv"))
            .unwrap();
    let want: Vec<(u64, String)> = want
        .lines()
        .map(|l| {
            let (n, reason) = l.split_once('\t').unwrap();
            (n.parse().unwrap(), reason.to_string())
        })
        .collect();
    assert_eq!(got.len(), want.len(), "{dead}");
    for ((gl, gr), (wl, wr)) in got.iter().zip(&want) {
        assert_eq!(gl, wl);
        assert!(
            gr.starts_with(wr.as_str()),
            "line {gl}: {gr:?} should start with {wr:?}"
        );
    }
    // The summary counts them.
    let summary = stderr(&r);
    assert!(
        summary.contains("6 bad records written to sensor-file-alerts.deadletter.jsonl"),
        "{summary}"
    );
    let row = summary
        .lines()
        .find(|l| l.contains("sources.readings"))
        .unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[2..6], &["15", "9", "6", "6"], "{row}");
}

#[test]
fn csv_in_csv_out_exact_with_named_dead_letter_sink() {
    let dir = workspace();
    ok(&weir(dir.path(), &["run", "pipelines/sensor-csv.toml"], ""));
    let got = std::fs::read_to_string(dir.path().join("out/readings-f.csv")).unwrap();
    let want = std::fs::read_to_string(root().join("cli/tests/expected/readings-f.csv")).unwrap();
    assert_eq!(got, want);
    let bad = std::fs::read_to_string(dir.path().join("out/readings-bad.jsonl")).unwrap();
    let lines: Vec<u64> = bad
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["line"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(lines, vec![6, 9, 10]);
    assert!(
        !dir.path().join("sensor-csv.deadletter.jsonl").exists(),
        "read dead letters do not go to the default file"
    );
}

/// Raw generator events, then the same events through filter + map; the expected output is
/// computed here from the raw events.
#[test]
fn filter_and_map_match_a_brute_force_reference() {
    let dir = workspace();
    let source = r#"
[sources.sensors]
type = "generator"
profile = "iot"
events = 20000
devices = 50
seed = 3
start = "2026-01-01T00:00:00Z"
event_time_interval = "1ms"
"#;
    let raw = write(
        dir.path(),
        "raw.toml",
        &format!("{source}\n[sinks.out]\ntype = \"stdout\"\ninputs = [\"sensors\"]\n"),
    );
    let out = weir(dir.path(), &["run", &raw], "");
    ok(&out);
    let events: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 20000);

    let piped = write(
        dir.path(),
        "piped.toml",
        &format!(
            "{source}
[transforms.hot]
type = \"filter\"
inputs = [\"sensors\"]
condition = \"kind = 'reading' AND temperature > 30.0 OR kind = 'status' AND battery < 10\"

[transforms.f]
type = \"map\"
inputs = [\"hot\"]
select = [\"id\", \"device_id\", \"battery\"]
rename = {{ device_id = \"device\" }}
compute = {{ temp_f = \"temperature * 1.8 + 32\", low = \"battery < 10\" }}

[sinks.out]
type = \"stdout\"
inputs = [\"f\"]
"
        ),
    );
    let mut expected = Vec::new();
    for e in &events {
        let kind = e["kind"].as_str().unwrap();
        let t = e["temperature"].as_f64();
        let b = e["battery"].as_i64();
        let keep = (kind == "reading" && t.is_some_and(|t| t > 30.0))
            || (kind == "status" && b.is_some_and(|b| b < 10));
        if keep {
            expected.push(
                serde_json::json!({
                    "id": e["id"], "device": e["device_id"], "battery": e["battery"],
                    "temp_f": t.map(|t| t * 1.8 + 32.0), "low": b.map(|b| b < 10),
                })
                .to_string(),
            );
        }
    }
    assert!(
        expected.len() > 1000,
        "the reference keeps a fair share: {}",
        expected.len()
    );
    for workers in ["1", "2", "4"] {
        let out = weir(dir.path(), &["run", &piped, "--workers", workers], "");
        ok(&out);
        let got = json_multiset(&String::from_utf8(out.stdout).unwrap());
        assert_eq!(
            got,
            json_multiset(&expected.join("\n")),
            "workers = {workers}"
        );
    }
}

/// SQL's function library over whole batches: each computed field checked against values
/// worked out here from the raw events, in both modes and on 1, 2 and 4 workers.
#[test]
fn sql_functions_match_a_brute_force_reference() {
    let dir = workspace();
    let source = r#"
[sources.sensors]
type = "generator"
profile = "iot"
events = 20000
devices = 40
seed = 5
start = "2026-01-01T00:00:00Z"
event_time_interval = "1s"
"#;
    let raw = write(
        dir.path(),
        "raw.toml",
        &format!("{source}\n[sinks.out]\ntype = \"stdout\"\ninputs = [\"sensors\"]\n"),
    );
    let out = weir(dir.path(), &["run", &raw], "");
    ok(&out);
    let mut events: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    events.sort_by_key(|e| e["id"].as_u64().unwrap());
    assert_eq!(events.len(), 20000);
    let ts_of = |i: u64| events[i as usize]["ts"].clone();

    let piped = write(
        dir.path(),
        "piped.toml",
        &format!(
            "{source}
[transforms.pick]
type = \"filter\"
inputs = [\"sensors\"]
condition = \"starts_with(device_id, 'dev-0001') AND kind = 'reading' AND id < 19000\"

[transforms.f]
type = \"map\"
inputs = [\"pick\"]
select = [\"id\"]
compute = {{ hour = \"date_trunc('hour', ts)\", minute = \"EXTRACT(MINUTE FROM ts)\", device_no = \"CAST(split_part(device_id, '-', 2) AS BIGINT)\", later = \"ts + INTERVAL '1 minute'\", tag = \"upper(substr(device_id, 1, 3)) || '/' || replace(device_id, 'dev-', '')\", warm = \"nullif(temperature > 25, false)\" }}

[sinks.out]
type = \"stdout\"
inputs = [\"f\"]
"
        ),
    );
    let mut expected = Vec::new();
    for e in &events {
        let i = e["id"].as_u64().unwrap();
        let device = e["device_id"].as_str().unwrap();
        if !(device.starts_with("dev-0001") && e["kind"] == "reading" && i < 19000) {
            continue;
        }
        let number = &device[4..];
        let warm = if e["temperature"].as_f64().unwrap() > 25.0 {
            Value::Bool(true)
        } else {
            Value::Null
        };
        expected.push(
            serde_json::json!({
                "id": i, "hour": ts_of(i - i % 3600), "minute": (i / 60) % 60,
                "device_no": number.parse::<i64>().unwrap(), "later": ts_of(i + 60),
                "tag": format!("DEV/{number}"), "warm": warm,
            })
            .to_string(),
        );
    }
    assert!(
        expected.len() > 2000,
        "the reference keeps a fair share: {}",
        expected.len()
    );
    for args in [
        vec!["--workers", "1"],
        vec![
            "--workers",
            "2",
            "--mode",
            "micro-batch",
            "--batch-interval",
            "5ms",
        ],
        vec!["--workers", "4"],
    ] {
        let mut a = vec!["run", piped.as_str()];
        a.extend(&args);
        let out = weir(dir.path(), &a, "");
        ok(&out);
        let got = json_multiset(&String::from_utf8(out.stdout).unwrap());
        assert_eq!(got, json_multiset(&expected.join("\n")), "{args:?}");
    }
}

#[test]
fn results_do_not_depend_on_the_number_of_workers() {
    let dir = workspace();
    // A directory of several files (shared out among workers) and a generator.
    std::fs::create_dir_all(dir.path().join("in")).unwrap();
    for f in 0..5 {
        let mut text = String::new();
        for i in 0..200 {
            text.push_str(&format!(
                "{{\"ts\": {}, \"v\": {}, \"tag\": \"t{}\"}}\n",
                1_000 * i + f,
                i * 7 % 13,
                i % 3
            ));
        }
        text.push_str("{not json}\n");
        std::fs::write(dir.path().join(format!("in/part-{f}.jsonl")), text).unwrap();
    }
    let p = write(
        dir.path(),
        "dir.toml",
        r#"
[sources.parts]
type = "file"
path = "in"
format = "jsonl"
schema = { ts = "timestamp", v = "i64", tag = "string" }
timestamp_format = "epoch_ms"

[transforms.big]
type = "filter"
inputs = ["parts"]
condition = "v >= 6 AND tag <> 't1'"

[sinks.out]
type = "stdout"
inputs = ["big"]

[sinks.bad]
type = "file"
inputs = ["parts.dead_letter"]
path = "out/bad.jsonl"
"#,
    );
    let mut runs = Vec::new();
    for workers in ["1", "2", "4"] {
        let out = weir(dir.path(), &["run", &p, "--workers", workers], "");
        ok(&out);
        let bad = std::fs::read_to_string(dir.path().join("out/bad.jsonl")).unwrap();
        runs.push((
            json_multiset(&String::from_utf8(out.stdout).unwrap()),
            json_multiset(&bad),
        ));
    }
    // Reference: count what the filter keeps, by hand.
    let kept = (0..200).filter(|i| i * 7 % 13 >= 6 && i % 3 != 1).count() * 5;
    assert_eq!(runs[0].0.len(), kept);
    assert_eq!(runs[0].1.len(), 5, "one bad line per file");
    assert!(
        runs[0].0[0].contains("\"id\":\"parts:part-"),
        "assigned ids name source, file and line: {}",
        runs[0].0[0]
    );
    assert_eq!(runs[0], runs[1]);
    assert_eq!(runs[0], runs[2]);
}

#[test]
fn stdin_source_composes_with_pipes() {
    let dir = workspace();
    let input = "{\"ts\": 1000, \"level\": \"info\", \"msg\": \"up\"}\n\
                 {\"ts\": 2000, \"level\": \"error\", \"msg\": \"disk full\"}\n\
                 garbage\n\
                 {\"ts\": 3000, \"level\": \"fatal\", \"msg\": \"gone\"}";
    let out = weir(dir.path(), &["run", "pipelines/stdin-filter.toml"], input);
    ok(&out);
    let got = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(
        json_multiset(&got),
        json_multiset(
            "{\"id\":\"lines:stdin:2\",\"ts\":\"1970-01-01T00:00:02.000Z\",\"level\":\"error\",\"msg\":\"disk full\"}\n\
             {\"id\":\"lines:stdin:4\",\"ts\":\"1970-01-01T00:00:03.000Z\",\"level\":\"fatal\",\"msg\":\"gone\"}"
        )
    );
    let row = stderr(&out)
        .lines()
        .find(|l| l.contains("sources.lines"))
        .unwrap()
        .to_string();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        &cells[2..6],
        &["4", "3", "1", "0"],
        "skip counts the bad line without dead-lettering it: {row}"
    );
}

#[test]
fn on_error_fail_stops_with_the_location() {
    let dir = workspace();
    let out = weir(
        dir.path(),
        &[
            "run",
            "pipelines/sensor-file-alerts.toml",
            "--set",
            "sources.readings.on_error=fail",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(
            "bad record in source `readings` at readings.jsonl:6: missing timestamp field `ts`"
        ),
        "{err}"
    );
}

#[test]
fn set_overrides_keys_and_workers() {
    let dir = workspace();
    let out = weir(
        dir.path(),
        &[
            "run",
            "pipelines/iot-hot-readings.toml",
            "--set",
            "sources.sensors.events=1234",
            "--set",
            "sinks.out.path=out/x.jsonl",
            "--workers",
            "3",
        ],
        "",
    );
    ok(&out);
    let err = stderr(&out);
    assert!(err.contains("on 3 workers"), "{err}");
    let row = err.lines().find(|l| l.contains("sources.sensors")).unwrap();
    assert!(row.contains("1,234"), "{row}");
    assert!(dir.path().join("out/x.jsonl").exists());
}

#[test]
fn graph_prints_dot_and_mermaid() {
    let dir = workspace();
    let dot = weir(dir.path(), &["graph", "pipelines/sensor-csv.toml"], "");
    ok(&dot);
    let dot = String::from_utf8(dot.stdout).unwrap();
    assert!(dot.starts_with("digraph \"sensor-csv\""), "{dot}");
    assert!(dot.contains("label=\"dead_letter\", style=dashed"), "{dot}");
    assert_eq!(dot.matches(" -> ").count(), 3, "{dot}");
    let mm = weir(
        dir.path(),
        &["graph", "pipelines/sensor-csv.toml", "--format", "mermaid"],
        "",
    );
    ok(&mm);
    let mm = String::from_utf8(mm.stdout).unwrap();
    assert!(mm.starts_with("flowchart LR"), "{mm}");
    assert!(mm.contains("-. dead_letter .->"), "{mm}");
}

#[cfg(unix)]
#[test]
fn ctrl_c_stops_cleanly_and_prints_the_summary() {
    let dir = workspace();
    let p = write(
        dir.path(),
        "forever.toml",
        "[sources.s]\ntype = \"generator\"\nprofile = \"iot\"\nrate = 2000\n\n[sinks.n]\ntype = \"null\"\ninputs = [\"s\"]\n",
    );
    let bin = assert_cmd::cargo::cargo_bin("weir");
    let child = std::process::Command::new(bin)
        .current_dir(dir.path())
        .args(["run", &p, "--workers", "2"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("stopped after"), "{err}");
    let row = err.lines().find(|l| l.contains("sinks.n")).unwrap();
    let n: u64 = row
        .split_whitespace()
        .nth(2)
        .unwrap()
        .replace(',', "")
        .parse()
        .unwrap();
    assert!(
        n > 500,
        "about 2000 events/s for 1.5s reached the sink: {row}"
    );
}

#[cfg(unix)]
#[test]
fn closed_stdout_ends_the_run_quietly() {
    let dir = workspace();
    let p = write(dir.path(), "endless.toml", "[sources.s]\ntype = \"generator\"\nprofile = \"iot\"\n\n[sinks.o]\ntype = \"stdout\"\ninputs = [\"s\"]\n");
    let bin = assert_cmd::cargo::cargo_bin("weir");
    let out = std::process::Command::new("bash")
        .current_dir(dir.path())
        .arg("-c")
        .arg(format!(
            "'{}' run '{p}' | head -n 3 > head.txt; echo ${{PIPESTATUS[0]}}",
            bin.display()
        ))
        .output()
        .unwrap();
    let status = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(
        status.trim(),
        "0",
        "weir's exit status when its reader closes the pipe: {}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("head.txt"))
            .unwrap()
            .lines()
            .count(),
        3
    );
    assert!(stderr(&out).contains("stopped after"), "{}", stderr(&out));
}

/// The bundled nested-events pipeline (dotted paths, a list unnested into a window, a json
/// payload read by json_get) gives the hand-checked results in every mode and worker count,
/// and dead-letters the event whose list holds a number.
#[test]
fn nested_device_events_exact_in_every_configuration() {
    let want = |f: &str| {
        json_multiset(&std::fs::read_to_string(root().join("cli/tests/expected").join(f)).unwrap())
    };
    for config in configurations() {
        let dir = workspace();
        let mut args = vec!["run", "pipelines/device-alarms-nested.toml"];
        args.extend(&config);
        let r = weir(dir.path(), &args, "");
        ok(&r);
        for f in ["alarm-counts.jsonl", "flat-events.jsonl"] {
            let got = std::fs::read_to_string(dir.path().join("out").join(f)).unwrap();
            assert_eq!(json_multiset(&got), want(f), "{f} {config:?}");
        }
        let dead = json_lines(&dir.path().join("device-alarms-nested.deadletter.jsonl"));
        assert_eq!(dead.len(), 1, "{config:?}");
        assert_eq!(dead[0]["line"], 8);
        assert_eq!(
            dead[0]["reason"],
            "field `alarms`: element 2: expected string, found number 3"
        );
    }
}

/// The bundled alerts pipeline (overheating with hysteresis, silent devices, alarm storms)
/// gives the hand-checked alerts in every mode and worker count.
#[test]
fn device_alerts_exact_in_every_configuration() {
    let want = json_multiset(
        &std::fs::read_to_string(root().join("cli/tests/expected/device-alerts.jsonl")).unwrap(),
    );
    assert_eq!(want.len(), 10);
    for config in configurations() {
        let dir = workspace();
        let mut args = vec!["run", "pipelines/device-alerts.toml"];
        args.extend(&config);
        let r = weir(dir.path(), &args, "");
        ok(&r);
        let got = std::fs::read_to_string(dir.path().join("out/device-alerts.jsonl")).unwrap();
        assert_eq!(json_multiset(&got), want, "{config:?}");
    }
}

/// The bundled generator alerts: the devices made to overheat fire (and resolve) once in every
/// cycle's hot quarter and no other device does; the devices made silent fire once in every
/// silent quarter and resolve when they report again; every device's silence fires once more
/// after the end of its events; the same alerts in every mode and worker count.
#[test]
fn generator_anomalies_raise_exactly_their_alerts() {
    let t0 = weir_operators::time::parse_rfc3339("2026-03-01T10:00:00Z").unwrap();
    let secs = |v: &Value| {
        (weir_operators::time::parse_rfc3339(v.as_str().unwrap()).unwrap() - t0) as f64 / 1e6
    };
    let mut first: Option<Vec<String>> = None;
    for config in configurations() {
        let dir = workspace();
        let mut args = vec!["run", "pipelines/iot-device-alerts.toml"];
        args.extend(&config);
        ok(&weir(dir.path(), &args, ""));
        let text = std::fs::read_to_string(dir.path().join("out/iot-device-alerts.jsonl")).unwrap();
        let rows = json_lines(&dir.path().join("out/iot-device-alerts.jsonl"));
        let count = |alert: &str, state: &str, device: &str| {
            rows.iter()
                .filter(|r| r["alert"] == alert && r["state"] == state && r["device_id"] == device)
                .count()
        };
        for d in 0..50 {
            let dev = format!("dev-{d:05}");
            let (hot, silent) = ((0..3).contains(&d), (3..6).contains(&d));
            assert_eq!(
                count("overheat", "firing", &dev),
                if hot { 5 } else { 0 },
                "{dev}"
            );
            assert_eq!(
                count("overheat", "resolved", &dev),
                if hot { 5 } else { 0 },
                "{dev}"
            );
            assert_eq!(
                count("silent", "firing", &dev),
                if silent { 6 } else { 1 },
                "{dev}"
            );
            assert_eq!(
                count("silent", "resolved", &dev),
                if silent { 5 } else { 0 },
                "{dev}"
            );
        }
        for r in &rows {
            let (at, cycle) = (secs(&r["at"]), (secs(&r["at"]) / 40.0).floor() * 40.0);
            match (r["alert"].as_str().unwrap(), r["state"].as_str().unwrap()) {
                // Hot from 10 s into the cycle: 2 s after its first hot reading (a device reads
                // about 18 times a second) it fires, and it resolves at its first reading
                // after 20 s.
                ("overheat", "firing") => {
                    assert!((cycle + 12.0..cycle + 13.0).contains(&at), "{r}")
                }
                ("overheat", "resolved") => {
                    assert!((cycle + 20.0..cycle + 21.0).contains(&at), "{r}")
                }
                // Silent from 20 s: its last event before then plus 5 s; back after 30 s.
                ("silent", "firing") if at < 200.0 => {
                    assert!((cycle + 24.0..cycle + 25.0).contains(&at), "{r}")
                }
                ("silent", "resolved") => {
                    assert!((cycle + 30.0..cycle + 31.0).contains(&at), "{r}")
                }
                _ => {}
            }
        }
        let all = json_multiset(&text);
        match &first {
            None => first = Some(all),
            Some(f) => assert_eq!(&all, f, "{config:?}"),
        }
    }
}
