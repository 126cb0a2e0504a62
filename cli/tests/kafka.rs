//! Kafka in and out, against a real broker (`WEIR_KAFKA_BROKERS`, started by the README's test
//! command): a topic equals a file, two processes share a consumer group's partitions, and a
//! run killed with SIGKILL at several points and restarted loses nothing.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use weir_operators::kafka::{client_config, Messages};

/// The sensor events below `n` (see `common::sensor_events`).
fn events(n: u64) -> Vec<(String, String)> {
    sensor_events(0, n)
}

/// The pipeline every test runs, with its source and sinks given.
fn pipeline(source: &str, sinks: &str) -> String {
    sensor_pipeline("kafka-test", source, sinks)
}

fn kafka_source(topic: &str, group: &str, extra: &str) -> String {
    format!(
        "type = \"kafka\"\nbrokers = \"{}\"\ntopics = [\"{topic}\"]\ngroup_id = \"{group}\"\nbounded = true\n{extra}",
        brokers()
    )
}

/// The window results of the good events below `n`, computed here (see
/// `common::sensor_reference`).
fn reference(n: u64) -> Vec<String> {
    sensor_reference(n, 0)
}

/// [`reference`] over the good events at or after `from_ms`.
fn reference_from(n: u64, from_ms: u64) -> Vec<String> {
    sensor_reference(n, from_ms)
}

fn report(dir: &std::path::Path, path: &str) -> Value {
    serde_json::from_str(&read(dir, path)).unwrap()
}

fn component<'a>(r: &'a Value, id: &str) -> &'a Value {
    report_component(r, id)
}

#[test]
fn a_topic_with_three_partitions_gives_the_results_of_a_file() {
    let dir = workspace();
    let n = 6000;
    let input = topic("readings", 3);
    let messages = events(n);
    send(&input, &messages);
    let lines: String = messages.iter().map(|(_, l)| format!("{l}\n")).collect();
    write(dir.path(), "events.jsonl", &lines);
    // The same pipeline over a file.
    let text = pipeline(
        "type = \"file\"\npath = \"events.jsonl\"\nformat = \"jsonl\"",
        &file_sink("out", "per_device", "file.jsonl"),
    );
    write(dir.path(), "file.toml", &text);
    run_ok(dir.path(), "file.toml", &[]);
    let from_file = json_multiset(&read(dir.path(), "file.jsonl"));
    assert_eq!(
        from_file,
        reference(n),
        "the file run against the reference"
    );
    let dead_from_file = json_lines(&dir.path().join("kafka-test.deadletter.jsonl"));
    assert_eq!(dead_from_file.len(), 12);

    for (k, flags) in [
        vec!["--workers", "2"],
        vec![
            "--workers",
            "2",
            "--mode",
            "micro-batch",
            "--batch-interval",
            "20ms",
        ],
        vec!["--workers", "1"],
    ]
    .into_iter()
    .enumerate()
    {
        // Topic to topic, keyed by device; then the output topic read back into a file.
        let output = topic("device-report", 2);
        let sink = format!(
            "[sinks.out]\ntype = \"kafka\"\ninputs = [\"per_device\"]\nbrokers = \"{}\"\ntopic = \"{output}\"\nkey = [\"device\"]\n",
            brokers()
        );
        let text = pipeline(&kafka_source(&input, &unique("report"), ""), &sink);
        let name = format!("kafka-{k}.toml");
        write(dir.path(), &name, &text);
        let _ = std::fs::remove_file(dir.path().join("kafka-test.deadletter.jsonl"));
        let mut args = flags.clone();
        args.extend(["--report", "kafka.json"]);
        let err = run_ok(dir.path(), &name, &args);
        let r = report(dir.path(), "kafka.json");
        let source = component(&r, "sources.events");
        assert_eq!(source["records_in"], n, "{err}");
        assert_eq!(source["dead_lettered"], 12, "{err}");
        let parts = source["partitions"].as_array().unwrap();
        assert_eq!(parts.len(), 3, "{err}");
        for p in parts {
            assert_eq!(p["lag"], 0, "{err}");
            assert_eq!(p["committed"], p["offset"], "{err}");
        }
        assert!(
            err.contains("sources.events: 3 partitions, consumer lag 0"),
            "{err}"
        );
        // The README's example of this table has its columns and rows' shape.
        let example = readme_block("weir: sources.sensors: 3 partitions, consumer lag 0");
        for l in example.lines().skip(1) {
            assert!(
                err.lines().any(|e| shape(e) == shape(l)),
                "the README's `{l}` is not the shape of a line of\n{err}"
            );
        }
        // Bad messages are dead-lettered with their partition and offset.
        let dead = json_lines(&dir.path().join("kafka-test.deadletter.jsonl"));
        assert_eq!(dead.len(), 12);
        for d in &dead {
            assert!(d["file"].as_str().unwrap().starts_with(&input), "{d}");
            assert!(d["record"] == "not json {" || d["reason"].as_str().unwrap().contains("ts"));
        }
        let back = format!(
            "[pipeline]\nname = \"read-back\"\n[sources.back]\n{}\nschema = {{ device = \"string\", window_start = \"timestamp\", window_end = \"timestamp\", n = \"i64\", total = \"i64\", low = \"i64\", high = \"i64\" }}\ntimestamp_field = \"window_start\"\n{}",
            kafka_source(&output, &unique("back"), "start = \"earliest\""),
            file_sink("out", "back", "back.jsonl")
        );
        write(dir.path(), "back.toml", &back);
        run_ok(dir.path(), "back.toml", &[]);
        // Assigned ids are dropped: compare the window results alone.
        let got: Vec<String> = json_multiset(&read(dir.path(), "back.jsonl"))
            .into_iter()
            .map(|l| {
                let mut v: Value = serde_json::from_str(&l).unwrap();
                v.as_object_mut().unwrap().remove("id");
                serde_json::to_string(&v).unwrap()
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(got.len(), from_file.len(), "{flags:?}");
        assert_eq!(got, from_file, "{flags:?}");
    }
}

/// A Kafka source's `dead_letter` output can be read like a file source's: the bad messages
/// (known here: events 500 and 999 of every thousand) arrive there with their partition,
/// offset, reason and text, and no default dead-letter file is written.
#[test]
fn a_kafka_sources_dead_letter_output_can_be_read() {
    let dir = workspace();
    let n = 3000;
    let input = topic("with-bad", 2);
    let messages = events(n);
    send(&input, &messages);
    let sinks = format!(
        "{}{}",
        file_sink("out", "per_device", "out.jsonl"),
        file_sink("bad", "events.dead_letter", "bad.jsonl")
    );
    let text = pipeline(&kafka_source(&input, &unique("dead"), ""), &sinks);
    write(dir.path(), "dead.toml", &text);
    let err = run_ok(dir.path(), "dead.toml", &["--workers", "2"]);
    let dead = json_lines(&dir.path().join("bad.jsonl"));
    let mut records: Vec<String> = dead
        .iter()
        .map(|d| {
            assert!(
                d["file"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("{input}/")),
                "{d}"
            );
            assert!(d["line"].as_u64().is_some(), "{d}");
            assert_eq!(d["source"], "events", "{d}");
            d["record"].as_str().unwrap().to_string()
        })
        .collect();
    records.sort();
    let mut expected: Vec<String> = messages
        .iter()
        .enumerate()
        .filter(|(i, _)| matches!(i % 1000, 500 | 999))
        .map(|(_, (_, l))| l.clone())
        .collect();
    expected.sort();
    assert_eq!(records, expected, "{err}");
    for d in &dead {
        let reason = d["reason"].as_str().unwrap();
        if d["record"] == "not json {" {
            assert!(!reason.contains("ts"), "{reason}");
        } else {
            assert!(reason.contains("ts"), "{reason}");
        }
    }
    assert!(
        !dir.path().join("kafka-test.deadletter.jsonl").exists(),
        "the dead letters went to the sink that reads them"
    );
    assert_eq!(json_multiset(&read(dir.path(), "out.jsonl")), reference(n));
}

#[test]
fn two_processes_in_one_group_share_the_partitions() {
    let dir = workspace();
    let n = 3000;
    let input = topic("shared", 3);
    send(&input, &events(n));
    let group = unique("shared-group");
    let text = pipeline(
        &kafka_source(&input, &group, ""),
        &file_sink("out", "per_device", "cluster.jsonl"),
    );
    write(dir.path(), "p.toml", &text);
    let hosts = hostfile(dir.path(), 2);
    let children: Vec<_> = (0..2)
        .map(|p| {
            let (id, rep) = (p.to_string(), format!("r{p}.json"));
            spawn_weir(
                dir.path(),
                &[
                    "run",
                    "p.toml",
                    "--workers",
                    "1",
                    "--status-every",
                    "0s",
                    "--processes",
                    "2",
                    "--process-id",
                    &id,
                    "--hostfile",
                    &hosts,
                    "--report",
                    &rep,
                ],
            )
        })
        .collect();
    for c in children {
        ok(&finish(c));
    }
    let mut seen: Vec<(String, u64)> = Vec::new();
    for p in 0..2 {
        let r = report(dir.path(), &format!("r{p}.json"));
        let source = component(&r, "sources.events");
        let parts = source["partitions"].as_array().unwrap();
        assert!(!parts.is_empty(), "process {p} read no partition");
        for part in parts {
            seen.push((
                part["partition"].as_str().unwrap().to_string(),
                source["records_in"].as_u64().unwrap(),
            ));
        }
    }
    let names: BTreeSet<&str> = seen.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        seen.len(),
        3,
        "each partition read by one process: {seen:?}"
    );
    assert_eq!(names.len(), 3, "{seen:?}");
    let total: u64 = (0..2)
        .map(|p| {
            component(&report(dir.path(), &format!("r{p}.json")), "sources.events")["records_in"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(total, n);
    assert_eq!(
        json_multiset(&read(dir.path(), "cluster.jsonl")),
        reference(n)
    );
    // Both processes committed their partitions for the group: a new run reads nothing.
    let err = run_ok(
        dir.path(),
        "p.toml",
        &["--set", "sinks.out.path=\"again.jsonl\""],
    );
    assert!(
        err.contains("sources.events: 3 partitions, consumer lag 0"),
        "{err}"
    );
    assert_eq!(read(dir.path(), "again.jsonl"), "");
}

#[test]
fn a_run_killed_at_any_moment_and_restarted_loses_nothing() {
    let dir = workspace();
    let n = 40_000;
    let input = topic("crash", 3);
    // A few messages per record batch, so that the source's small fetches below take few.
    let small = [("batch.num.messages", "4"), ("linger.ms", "0")]
        .map(|(k, v)| (k.to_string(), v.to_string()));
    send_with(&input, &events(n), &small);
    let group = unique("crash-group");
    // Small fetches slow the reading down, so that the kills land mid-run; offsets are
    // committed often.
    let source = kafka_source(
        &input,
        &group,
        "commit_interval = \"20ms\"\nlibrdkafka_options = { \"max.partition.fetch.bytes\" = \"600\", \"fetch.max.bytes\" = \"1800\", \"message.max.bytes\" = \"1000\" }",
    );
    let sinks = format!(
        "{}\n[transforms.high]\ntype = \"filter\"\ninputs = [\"events\"]\ncondition = \"value >= 990\"\n\n{}",
        file_sink("out", "per_device", "out.jsonl"),
        file_sink("alerts", "high", "alerts.jsonl")
    );
    write(dir.path(), "p.toml", &pipeline(&source, &sinks));
    let expected = reference(n);
    let expected_alerts: BTreeSet<u64> = sensor_good(n)
        .into_iter()
        .filter(|e| e.3 >= 990)
        .map(|e| e.0)
        .collect();
    let mut results: Vec<String> = Vec::new();
    let mut alerts: Vec<u64> = Vec::new();
    let collect = |k: usize, results: &mut Vec<String>, alerts: &mut Vec<u64>| {
        let out =
            std::fs::read_to_string(dir.path().join(format!("out-{k}.jsonl"))).unwrap_or_default();
        // A line cut short by the kill was never written whole: it is not a result.
        let complete = out.rsplit_once('\n').map_or("", |(whole, _)| whole);
        results.extend(json_multiset(complete));
        let a = std::fs::read_to_string(dir.path().join(format!("alerts-{k}.jsonl")))
            .unwrap_or_default();
        let complete = a.rsplit_once('\n').map_or("", |(whole, _)| whole);
        for l in complete.lines() {
            let v: Value = serde_json::from_str(l).unwrap();
            alerts.push(v["id"].as_u64().unwrap());
        }
    };
    // Kill when this many results have been written: at the start, and twice mid-run.
    let kills = [0usize, expected.len() / 4, expected.len() / 2];
    let mut finished_early = 0;
    for (k, &at) in kills.iter().enumerate() {
        let out = format!("sinks.out.path=\"out-{k}.jsonl\"");
        let al = format!("sinks.alerts.path=\"alerts-{k}.jsonl\"");
        let mut child = spawn_weir(
            dir.path(),
            &[
                "run",
                "p.toml",
                "--workers",
                "2",
                "--status-every",
                "0s",
                "--set",
                &out,
                "--set",
                &al,
            ],
        );
        let started = Instant::now();
        let deadline = started + Duration::from_secs(60);
        loop {
            if child.try_wait().unwrap().is_some() {
                finished_early += 1;
                eprintln!(
                    "run {k} ended by itself:\n{}",
                    stderr(&child.wait_with_output().unwrap())
                );
                break;
            }
            let written = std::fs::read_to_string(dir.path().join(format!("out-{k}.jsonl")))
                .map_or(0, |s| s.lines().count());
            let early = at == 0 && started.elapsed() > Duration::from_millis(300);
            if early || (at > 0 && written >= at) {
                child.kill().unwrap(); // SIGKILL
                let _ = child.wait();
                break;
            }
            assert!(Instant::now() < deadline, "run {k} made no progress");
            std::thread::sleep(Duration::from_millis(5));
        }
        collect(k, &mut results, &mut alerts);
    }
    assert_eq!(
        finished_early, 0,
        "a run ended before it was killed: slow the reading down"
    );
    // The last run goes to the end.
    let k = kills.len();
    let err = run_ok(
        dir.path(),
        "p.toml",
        &[
            "--workers",
            "2",
            "--set",
            &format!("sinks.out.path=\"out-{k}.jsonl\""),
            "--set",
            &format!("sinks.alerts.path=\"alerts-{k}.jsonl\""),
        ],
    );
    collect(k, &mut results, &mut alerts);
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for r in &results {
        *counts.entry(r.as_str()).or_default() += 1;
    }
    let missing: Vec<&String> = expected
        .iter()
        .filter(|e| !counts.contains_key(e.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} results missing, such as {:?}\n{err}",
        missing.len(),
        missing.first()
    );
    let wrong: Vec<&&str> = counts
        .keys()
        .filter(|r| expected.binary_search_by(|e| e.as_str().cmp(r)).is_err())
        .collect();
    assert!(
        wrong.is_empty(),
        "{} results that are not in the reference (partial windows?), such as {:?}",
        wrong.len(),
        wrong.first()
    );
    let duplicates = results.len() - expected.len();
    let alert_set: BTreeSet<u64> = alerts.iter().copied().collect();
    assert_eq!(
        alert_set, expected_alerts,
        "every alert, and no other record"
    );
    eprintln!(
        "crash test: {} window results expected, {} written over {} runs ({duplicates} duplicates); {} alerts expected, {} written ({} duplicates)",
        expected.len(),
        results.len(),
        kills.len() + 1,
        expected_alerts.len(),
        alerts.len(),
        alerts.len() - expected_alerts.len()
    );
}

#[test]
fn kafka_configuration_errors_name_the_line_and_what_to_do() {
    let dir = workspace();
    let cases = [
        (
            "brokers = \"localhost\"",
            "is not a list of brokers",
            "write `host:port`",
        ),
        (
            "start = \"newest\"",
            "`newest` is not a valid `start`",
            "committed, earliest, latest",
        ),
        ("topics = []", "`topics` is empty", "topics = [\"sensors\"]"),
        (
            "topics = [\"a b\"]",
            "is not a Kafka topic name",
            "letters, digits",
        ),
        ("commit_interval = \"soon\"", "is not a duration", "250ms"),
        (
            "librdkafka_options = { \"fetch.wait.max.ms\" = \"lots\" }",
            "librdkafka rejects `fetch.wait.max.ms`",
            "CONFIGURATION.md",
        ),
    ];
    for (line, message, help) in cases {
        let mut keys = vec![
            ("brokers", "brokers = \"127.0.0.1:9092\""),
            ("topics", "topics = [\"t\"]"),
            ("group_id", "group_id = \"g\""),
        ];
        let key = line.split(' ').next().unwrap();
        keys.retain(|(k, _)| *k != key);
        let mut body: Vec<&str> = keys.iter().map(|(_, l)| *l).collect();
        body.push(line);
        let text = format!(
            "[sources.s]\ntype = \"kafka\"\n{}\nschema = {{ ts = \"timestamp\" }}\n\n[sinks.out]\ntype = \"null\"\ninputs = [\"s\"]\n",
            body.join("\n")
        );
        write(dir.path(), "bad.toml", &text);
        let out = weir(dir.path(), &["validate", "bad.toml"], "");
        assert!(!out.status.success());
        let err = stderr(&out);
        let line_no = text.lines().position(|l| l == line).unwrap() + 1;
        assert!(err.contains(message), "{line}: {err}");
        assert!(err.contains(help), "{line}: {err}");
        assert!(
            err.contains(&format!("bad.toml:{line_no}:")),
            "{line}: {err}"
        );
        assert!(err.contains("sources.s"), "{err}");
    }
    // A sink keyed by a field its input lacks.
    let text = "[sources.g]\ntype = \"generator\"\nprofile = \"iot\"\n\n[sinks.k]\ntype = \"kafka\"\ninputs = [\"g\"]\nbrokers = \"127.0.0.1:9092\"\ntopic = \"t\"\nkey = [\"devce_id\"]\n";
    write(dir.path(), "bad.toml", text);
    let err = stderr(&weir(dir.path(), &["validate", "bad.toml"], ""));
    assert!(
        err.contains("no field `devce_id`") && err.contains("did you mean `device_id`?"),
        "{err}"
    );
    assert!(err.contains("bad.toml:10:"), "{err}");
}

#[test]
fn an_unreachable_broker_or_missing_topic_fails_the_run_saying_what_to_do() {
    let dir = workspace();
    let port = free_ports(1)[0];
    let text = format!(
        "[sources.s]\ntype = \"kafka\"\nbrokers = \"127.0.0.1:{port}\"\ntopics = [\"t\"]\ngroup_id = \"g\"\nschema = {{ ts = \"timestamp\" }}\n\n[sinks.out]\ntype = \"null\"\ninputs = [\"s\"]\n"
    );
    write(dir.path(), "p.toml", &text);
    let out = weir(dir.path(), &["run", "p.toml"], "");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "source `s`: cannot reach the Kafka brokers at 127.0.0.1:{port}"
        )),
        "{err}"
    );
    assert!(err.contains("start the broker, or fix `brokers`"), "{err}");
    // A topic that does not exist, for the source and for the sink.
    let missing = unique("missing");
    let text = format!(
        "[sources.s]\ntype = \"kafka\"\nbrokers = \"{b}\"\ntopics = [\"{missing}\"]\ngroup_id = \"g\"\nschema = {{ ts = \"timestamp\" }}\n\n[sinks.out]\ntype = \"null\"\ninputs = [\"s\"]\n",
        b = brokers()
    );
    write(dir.path(), "p.toml", &text);
    // Found before the run, at the topic's place in the file, as a configuration error.
    let out = weir(dir.path(), &["run", "p.toml"], "");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("topic `{missing}` does not exist")) && err.contains("fix `topics`"),
        "{err}"
    );
    assert!(
        err.contains("p.toml:4:11]") && err.contains("nothing was run"),
        "{err}"
    );
    let text = format!(
        "[sources.g]\ntype = \"generator\"\nprofile = \"iot\"\nevents = 10\n\n[sinks.k]\ntype = \"kafka\"\ninputs = [\"g\"]\nbrokers = \"{b}\"\ntopic = \"{missing}\"\n",
        b = brokers()
    );
    write(dir.path(), "p.toml", &text);
    let out = weir(dir.path(), &["run", "p.toml"], "");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("sinks.k: topic `{missing}` does not exist")),
        "{err}"
    );
    assert!(
        err.contains("p.toml:10:9]") && err.contains("nothing was run"),
        "{err}"
    );
}

#[test]
fn csv_messages_with_event_time_from_the_message_timestamp() {
    let dir = workspace();
    let input = topic("csv", 1);
    let m = Messages::new(&client_config(&brokers(), &[]), &input).unwrap();
    // Columns in schema order (device, value); the event time is each message's timestamp.
    let rows = [
        ("d1,5", 1_000),
        ("d2,7", 2_000),
        ("d1,x", 3_000),
        ("d1,9", 1_500_000),
    ];
    for (row, ms) in rows {
        m.send(None, row.as_bytes(), Some(ms)).unwrap();
    }
    m.flush().unwrap();
    let text = format!(
        "[pipeline]\nname = \"csv-test\"\n[sources.s]\n{}\nformat = \"csv\"\ntimestamp_from = \"message\"\nschema = {{ device = \"string\", value = \"i64\", ts = \"timestamp\" }}\n\n{}",
        kafka_source(&input, &unique("csv"), ""),
        file_sink("out", "s", "out.jsonl")
    );
    write(dir.path(), "p.toml", &text);
    run_ok(dir.path(), "p.toml", &[]);
    let got: Vec<(String, i64, String, String)> = json_lines(&dir.path().join("out.jsonl"))
        .into_iter()
        .map(|v| {
            (
                v["device"].as_str().unwrap().to_string(),
                v["value"].as_i64().unwrap(),
                v["ts"].as_str().unwrap().to_string(),
                v["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: Vec<(String, i64, String, String)> = [
        ("d1", 5, 1_000, 0),
        ("d2", 7, 2_000, 1),
        ("d1", 9, 1_500_000, 3),
    ]
    .into_iter()
    .map(|(d, v, ms, offset)| {
        (
            d.to_string(),
            v,
            weir_operators::time::format_rfc3339(ms * 1000),
            format!("s:{input}/0:{offset}"),
        )
    })
    .collect();
    assert_eq!(got, want);
    let dead = json_lines(&dir.path().join("csv-test.deadletter.jsonl"));
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["file"], format!("{input}/0"));
    assert_eq!(dead[0]["line"], 2);
    assert_eq!(dead[0]["record"], "d1,x");
}

#[test]
fn empty_partitions_do_not_stall_windows_once_idle() {
    let dir = workspace();
    let input = topic("idle", 3);
    // One key: every message in one partition, the other two empty.
    let messages: Vec<(String, String)> = (0..30)
        .map(|i| {
            let line = format!(
                r#"{{"id": {i}, "ts": {}, "device": "d1", "value": {}}}"#,
                1_700_000_000_000u64 + i * 100,
                100 + i
            );
            ("d1".to_string(), line)
        })
        .collect();
    send(&input, &messages);
    let lines = |path: &str| {
        std::fs::read_to_string(dir.path().join(path)).map_or(0, |s| s.lines().count())
    };
    for (idle, path) in [(true, "idle.jsonl"), (false, "stalled.jsonl")] {
        let watermark = if idle {
            "watermark = { idle_timeout = \"1s\" }"
        } else {
            ""
        };
        // Unbounded: the source keeps reading, so only idleness can close the windows.
        let source = format!(
            "type = \"kafka\"\nbrokers = \"{}\"\ntopics = [\"{input}\"]\ngroup_id = \"{}\"\n{watermark}",
            brokers(),
            unique("idle")
        );
        let name = format!("{path}.toml");
        write(
            dir.path(),
            &name,
            &pipeline(&source, &file_sink("out", "per_device", path)),
        );
        let mut child = spawn_weir(dir.path(), &["run", &name, "--status-every", "0s"]);
        let start = Instant::now();
        if idle {
            // Three windows of one second, ten readings each, all closed while the run goes on.
            while lines(path) < 3 && start.elapsed() < Duration::from_secs(30) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let got = json_lines(&dir.path().join(path));
            assert_eq!(
                got.len(),
                3,
                "the windows did not close although two partitions are idle"
            );
            assert!(got.iter().all(|w| w["n"] == 10), "{got:?}");
        } else {
            std::thread::sleep(Duration::from_secs(4));
            assert_eq!(lines(path), 0, "windows closed without idle_timeout");
        }
        child.kill().unwrap();
        let _ = child.wait();
    }
}

/// Running a finished bounded pipeline again reads nothing (its group's offsets are at the
/// end) and must not erase the output of the first run: file sinks append when a run resumes
/// from Weir's commits, and say so.
#[test]
fn running_a_finished_pipeline_again_keeps_its_output() {
    let dir = workspace();
    let n = 3000;
    let input = topic("again", 3);
    send(&input, &events(n));
    let group = unique("again-group");
    let text = pipeline(
        &kafka_source(&input, &group, ""),
        &file_sink("out", "per_device", "out.jsonl"),
    );
    write(dir.path(), "p.toml", &text);
    run_ok(dir.path(), "p.toml", &[]);
    let first = read(dir.path(), "out.jsonl");
    assert_eq!(json_multiset(&first), reference(n));
    let err = run_ok(dir.path(), "p.toml", &[]);
    assert!(err.contains("file sinks append to their output"), "{err}");
    assert_eq!(
        read(dir.path(), "out.jsonl"),
        first,
        "the first run's output is kept"
    );
}

/// A broker that accepts only TLS: started by the test (the broker `scripts/test` built,
/// `WEIR_TEST_NISSHI`) with a certificate made here by `openssl`, stopped when dropped.
struct TlsBroker {
    child: std::process::Child,
    address: String,
    _dir: tempfile::TempDir,
    ca: std::path::PathBuf,
}

impl TlsBroker {
    fn start() -> TlsBroker {
        let nisshi = std::env::var("WEIR_TEST_NISSHI").unwrap_or_else(|_| {
            panic!(
                "the TLS test needs the test broker's binary in WEIR_TEST_NISSHI: run scripts/test"
            )
        });
        let dir = tempfile::tempdir().unwrap();
        let made = std::process::Command::new("openssl")
            .current_dir(dir.path())
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args([
                "-keyout",
                "key.pem",
                "-out",
                "cert.pem",
                "-subj",
                "/CN=127.0.0.1",
            ])
            .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
            .output()
            .expect("openssl makes the test certificate");
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
        let port = free_ports(1)[0];
        let url = format!("tcp://127.0.0.1:{port}");
        let child = std::process::Command::new(nisshi)
            .current_dir(dir.path())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args([
                "--storage-engine",
                "memory://nisshi/",
                "--cert",
                "cert.pem",
                "--key",
                "key.pem",
            ])
            .args(["--group-initial-rebalance-delay", "0s"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the TLS broker did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        TlsBroker {
            child,
            address: format!("127.0.0.1:{port}"),
            ca: dir.path().join("cert.pem"),
            _dir: dir,
        }
    }
}

impl Drop for TlsBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kafka over TLS, end to end: `weir produce` writes a topic over TLS, a pipeline reads it over
/// TLS (the CA's path given through an environment variable) and gives the reference's
/// results; a client that speaks plain TCP to the TLS broker fails saying it cannot reach it.
#[test]
fn kafka_over_tls_end_to_end() {
    let broker = TlsBroker::start();
    let dir = workspace();
    let ca = broker.ca.display().to_string();
    let produce = |topic: &str, tls: bool| {
        let mut args = vec![
            "produce".to_string(),
            "--events".into(),
            "2000".into(),
            "--topic".into(),
            topic.into(),
            "--brokers".into(),
            broker.address.clone(),
            "--key".into(),
            "device_id".into(),
        ];
        if tls {
            args.extend(
                ["security.protocol=SSL", "ssl.ca.location=${WEIR_TEST_CA}"]
                    .iter()
                    .flat_map(|o| ["--kafka-option".to_string(), o.to_string()]),
            );
        }
        assert_cmd::Command::cargo_bin("weir")
            .unwrap()
            .current_dir(dir.path())
            .args(&args)
            .env("WEIR_TEST_CA", &ca)
            .timeout(Duration::from_secs(120))
            .output()
            .unwrap()
    };
    let topic_name = unique("tls");
    let out = produce(&topic_name, true);
    ok(&out);
    let plain = produce(&unique("plain"), false);
    assert!(!plain.status.success());
    assert!(
        stderr(&plain).contains("cannot reach the Kafka brokers"),
        "{}",
        stderr(&plain)
    );

    let text = format!(
        r#"
[sources.events]
type = "kafka"
brokers = "{}"
topics = ["{topic_name}"]
group_id = "{group}"
start = "earliest"
bounded = true
schema = {{ id = "u64", ts = "timestamp", device_id = "string" }}
librdkafka_options = {{ "security.protocol" = "SSL", "ssl.ca.location" = "${{WEIR_TEST_CA}}" }}

[sinks.out]
type = "file"
inputs = ["events"]
path = "tls.jsonl"
"#,
        broker.address,
        group = unique("tls-group"),
    );
    write(dir.path(), "p.toml", &text);
    let out = assert_cmd::Command::cargo_bin("weir")
        .unwrap()
        .current_dir(dir.path())
        .args(["run", "p.toml", "--status-every", "0s"])
        .env("WEIR_TEST_CA", &ca)
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    ok(&out);
    let got = json_lines(&dir.path().join("tls.jsonl"));
    assert_eq!(got.len(), 2000, "every event, read over TLS");
    let ids: BTreeSet<u64> = got.iter().map(|r| r["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, (0..2000).collect(), "each once");
}

/// `schema = "infer"` on a Kafka source: inferred from the topic's first messages, printed,
/// then held to (a later message that does not fit is a bad record).
#[test]
fn a_kafka_source_infers_its_schema_from_the_first_messages() {
    let dir = workspace();
    let input = topic("infer", 1);
    let m = Messages::new(&client_config(&brokers(), &[]), &input).unwrap();
    for i in 0..5 {
        let line = format!(
            r#"{{"id": {i}, "ts": "2026-03-01 10:00:0{i}", "device": "d{}", "temperature": {}.5}}"#,
            i % 2,
            20 + i
        );
        m.send(None, line.as_bytes(), None).unwrap();
    }
    m.flush().unwrap();
    let text = format!(
        "[pipeline]\nname = \"infer-test\"\n[sources.s]\n{}\nschema = \"infer\"\n\n{}",
        kafka_source(&input, &unique("infer"), ""),
        file_sink("out", "s", "out.jsonl")
    );
    write(dir.path(), "p.toml", &text);
    let out = weir(dir.path(), &["validate", "p.toml"], "");
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let keys = "schema = { id = \"i64\", ts = \"timestamp\", device = \"string\", temperature = \"f64\" }\n  timestamp_field = \"ts\"";
    assert!(
        err.contains(&format!("weir: sources.s: schema inferred from the first 5 records of topics {input}:\n  {keys}")),
        "{err}"
    );
    let err = run_ok(dir.path(), "p.toml", &[]);
    let got: Vec<(i64, String, String)> = json_lines(&dir.path().join("out.jsonl"))
        .into_iter()
        .map(|v| {
            (
                v["id"].as_i64().unwrap(),
                v["ts"].as_str().unwrap().to_string(),
                v["device"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: Vec<(i64, String, String)> = (0..5)
        .map(|i| {
            (
                i,
                format!("2026-03-01T10:00:0{i}.000Z"),
                format!("d{}", i % 2),
            )
        })
        .collect();
    assert_eq!(got, want, "{err}");
    // An empty topic has nothing to infer from: an error at the key.
    let empty = topic("infer-empty", 1);
    let text = format!(
        "[pipeline]\nname = \"infer-test\"\n[sources.s]\n{}\nschema = \"infer\"\n\n{}",
        kafka_source(&empty, &unique("infer"), ""),
        file_sink("out", "s", "out.jsonl")
    );
    write(dir.path(), "p.toml", &text);
    let out = weir(dir.path(), &["validate", "p.toml"], "");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("cannot infer the schema") && err.contains("no JSON message"),
        "{err}"
    );
}

/// An alert over the test pipeline's readings (two values of 900 or more within a second of
/// one device), written to `{prefix}-alerts.jsonl`, and a window join of each device's small
/// and big values in the same second, written to `{prefix}-pairs.jsonl`.
fn storm(prefix: &str) -> String {
    format!(
        "[transforms.storm]\ntype = \"alert\"\ninputs = [\"events\"]\nkey = [\"device\"]\ncondition = \"value >= 900\"\ncount = 2\nwithin = \"1s\"\n{}\n\
         [transforms.small]\ntype = \"filter\"\ninputs = [\"events\"]\ncondition = \"value < 100\"\n\
         [transforms.pairs]\ntype = \"join\"\nkind = \"window\"\ninputs = [\"small\", \"big\"]\non = [\"device\"]\nsize = \"1s\"\nselect = [\"left.id AS small_id\", \"right.id AS big_id\"]\n{}",
        file_sink("alerts", "storm", &format!("{prefix}-alerts.jsonl")),
        file_sink("pair_out", "pairs", &format!("{prefix}-pairs.jsonl")),
    )
}

/// Kappa: a replay from a point in time (`start = { at = ... }`) reads each partition from its
/// first message stamped at or after it (offsets looked up by time), and a bounded replay of a
/// topic gives exactly what a live run gave while the messages were being written: its window
/// results, its alerts and its join results.
#[test]
fn a_replay_from_a_point_in_time_and_a_live_run_agree() {
    let dir = workspace();
    let n = 6000;
    let input = topic("kappa", 3);
    // The live run starts first, reading the topic as it is written (in small bursts), and
    // ends once it has read every message.
    let live = pipeline(
        &format!(
            "type = \"kafka\"\nbrokers = \"{}\"\ntopics = [\"{input}\"]\ngroup_id = \"{}\"\nstart = \"earliest\"",
            brokers(),
            unique("live")
        ),
        &format!(
            "{}{}",
            file_sink("out", "per_device", "live.jsonl"),
            storm("live")
        ),
    );
    write(dir.path(), "live.toml", &live);
    let n_arg = n.to_string();
    let runner = spawn_weir(
        dir.path(),
        &[
            "run",
            "live.toml",
            "--status-every",
            "0s",
            "--stop-after",
            &n_arg,
        ],
    );
    // Each message stamped with its event time, so a time names a place in every partition.
    let m = Messages::new(&client_config(&brokers(), &[]), &input).unwrap();
    for (k, chunk) in events(n).chunks(500).enumerate() {
        for (j, (key, line)) in chunk.iter().enumerate() {
            let i = (k * 500 + j) as i64;
            m.send(
                Some(key.as_bytes()),
                line.as_bytes(),
                Some(1_700_000_000_000 + i * 7),
            )
            .unwrap();
        }
        m.flush().unwrap();
    }
    let live_out = finish(runner);
    ok(&live_out);
    let live_results = json_multiset(&read(dir.path(), "live.jsonl"));
    assert_eq!(live_results, reference(n), "{}", stderr(&live_out));

    // The bounded replay of the whole topic gives the live results.
    let replay = pipeline(
        &kafka_source(&input, &unique("replay"), "start = \"earliest\""),
        &format!(
            "{}{}",
            file_sink("out", "per_device", "replay.jsonl"),
            storm("replay")
        ),
    );
    write(dir.path(), "replay.toml", &replay);
    let live_alerts = json_multiset(&read(dir.path(), "live-alerts.jsonl"));
    assert!(live_alerts.len() > 10, "{live_alerts:?}");
    let live_pairs = json_multiset(&read(dir.path(), "live-pairs.jsonl"));
    assert!(live_pairs.len() > 1000, "{}", live_pairs.len());
    for flags in [
        vec!["--workers", "2"],
        vec!["--mode", "micro-batch", "--batch-interval", "20ms"],
    ] {
        run_ok(dir.path(), "replay.toml", &flags);
        assert_eq!(
            json_multiset(&read(dir.path(), "replay.jsonl")),
            live_results,
            "{flags:?}"
        );
        assert_eq!(
            json_multiset(&read(dir.path(), "replay-alerts.jsonl")),
            live_alerts,
            "{flags:?}"
        );
        assert_eq!(
            json_multiset(&read(dir.path(), "replay-pairs.jsonl")),
            live_pairs,
            "{flags:?}"
        );
    }

    // From a point in time: event 3000's, 1_700_000_021_000 ms (a window boundary).
    let at = weir_operators::time::format_rfc3339(1_700_000_021_000 * 1000);
    let from = pipeline(
        &kafka_source(
            &input,
            &unique("from"),
            &format!("start = {{ at = \"{at}\" }}"),
        ),
        &file_sink("out", "per_device", "from.jsonl"),
    );
    write(dir.path(), "from.toml", &from);
    let err = run_ok(dir.path(), "from.toml", &["--report", "from.json"]);
    assert_eq!(
        json_multiset(&read(dir.path(), "from.jsonl")),
        reference_from(n, 1_700_000_021_000),
        "{err}"
    );
    let r = report(dir.path(), "from.json");
    assert_eq!(
        component(&r, "sources.events")["records_in"],
        n - 3000,
        "{err}"
    );

    // A time that is not one is refused at its place.
    let bad = pipeline(
        &kafka_source(&input, &unique("bad"), "start = { at = \"yesterday\" }"),
        &file_sink("out", "per_device", "bad.jsonl"),
    );
    write(dir.path(), "bad.toml", &bad);
    let err = weir_fails(dir.path(), &["validate", "bad.toml"]);
    assert!(err.contains("`start.at` is not a time"), "{err}");
    assert!(err.contains("bad.toml:11:"), "{err}");
}
