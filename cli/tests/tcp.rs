//! Point-to-point delivery: the `tcp` source and sink, and `weir produce`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Connects to `port`, retrying while the listener starts.
fn connect(port: u16) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => return s,
            Err(e) if Instant::now() > deadline => panic!("cannot connect: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn pipeline(port: u16) -> String {
    format!(
        r#"
[sources.readings]
type = "tcp"
address = "127.0.0.1:{port}"
max_connections = 2
schema = {{ ts = "timestamp", device = "string", temp = "f64" }}
timestamp_format = "epoch_ms"
watermark = {{ max_out_of_orderness = "1h" }}

[transforms.hot]
type = "filter"
inputs = ["readings"]
condition = "temp > 30.0"

[sinks.out]
type = "file"
inputs = ["hot"]
path = "out.jsonl"
"#
    )
}

#[test]
fn the_tcp_source_reads_every_connection_and_dead_letters_bad_lines() {
    let dir = workspace();
    // Two clients, 2,000 lines each, one of them malformed; the reference is computed here.
    let client = |c: usize| -> Vec<String> {
        (0..2000)
            .map(|i| {
                if c == 1 && i == 777 {
                    "{\"ts\": 5, \"device\": \"d1\", \"temp\": \"hot\"}".to_string()
                } else {
                    let temp = ((i * 37 + c * 11) % 400) as f64 / 10.0;
                    format!(
                        "{{\"ts\": {}, \"device\": \"d{c}\", \"temp\": {temp}}}",
                        i * 10
                    )
                }
            })
            .collect()
    };
    let mut want: Vec<String> = Vec::new();
    for c in 0..2 {
        for line in client(c) {
            let v: Value = serde_json::from_str(&line).unwrap();
            if let Some(t) = v["temp"].as_f64().filter(|t| *t > 30.0) {
                let ts = v["ts"].as_i64().unwrap();
                want.push(
                    serde_json::json!({
                        "ts": weir_operators::time::format_rfc3339(ts * 1000),
                        "device": v["device"],
                        "temp": t,
                    })
                    .to_string(),
                );
            }
        }
    }
    want.sort();
    for config in configurations() {
        let port = free_ports(1)[0];
        write(dir.path(), "tcp.toml", &pipeline(port));
        let mut args = vec!["run", "tcp.toml", "--status-every", "0s"];
        args.extend(config.iter().copied());
        let weir = spawn_weir(dir.path(), &args);
        let senders: Vec<_> = (0..2)
            .map(|c| {
                let lines = client(c);
                std::thread::spawn(move || {
                    let mut s = connect(port);
                    for l in lines {
                        writeln!(s, "{l}").unwrap();
                    }
                })
            })
            .collect();
        for s in senders {
            s.join().unwrap();
        }
        let out = finish(weir);
        ok(&out);
        let err = stderr(&out);
        assert!(
            err.contains(&format!("listening on 127.0.0.1:{port}")),
            "{err}"
        );
        let got = json_multiset(&std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap());
        let mut got_plain: Vec<String> = got
            .iter()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                serde_json::json!({"ts": v["ts"], "device": v["device"], "temp": v["temp"]})
                    .to_string()
            })
            .collect();
        got_plain.sort();
        assert_eq!(got_plain, want, "{config:?}");
        // The bad line went to the dead-letter file, with its reason.
        let dead = json_lines(&dir.path().join("tcp.deadletter.jsonl"));
        assert_eq!(dead.len(), 1, "{config:?}");
        assert!(dead[0]["record"].as_str().unwrap().contains("\"hot\""));
        std::fs::remove_file(dir.path().join("tcp.deadletter.jsonl")).unwrap();
    }
}

#[test]
fn a_producer_faster_than_the_pipeline_is_pushed_back() {
    // 1,000,000 lines (~95 MB) written as fast as the socket takes them, into a pipeline
    // that decodes and windows them far more slowly: Weir stops reading, the producer blocks,
    // and Weir's memory stays far below the data's size — with nothing lost.
    let dir = workspace();
    let port = free_ports(1)[0];
    write(
        dir.path(),
        "flood.toml",
        &format!(
            r#"
[pipeline]
workers = 2

[sources.readings]
type = "tcp"
address = "127.0.0.1:{port}"
max_connections = 1
schema = {{ ts = "timestamp", device = "string", temp = "f64", note = "string" }}
timestamp_format = "epoch_us"

[transforms.per_device]
type = "window"
inputs = ["readings"]
size = "10ms"
group_by = ["device"]
aggregates = {{ n = "count(*)", mean = "avg(temp)" }}

[sinks.out]
type = "null"
inputs = ["per_device"]
"#
        ),
    );
    let weir = spawn_weir(
        dir.path(),
        &[
            "run",
            "flood.toml",
            "--status-every",
            "0s",
            "--report",
            "r.json",
        ],
    );
    let n = 1_000_000u64;
    let producer = std::thread::spawn(move || {
        let mut s = std::io::BufWriter::new(connect(port));
        let started = Instant::now();
        for i in 0..n {
            writeln!(
                s,
                "{{\"ts\": {i}, \"device\": \"d{}\", \"temp\": {}.5, \"note\": \"padding padding padding\"}}",
                i % 100,
                i % 40
            )
            .unwrap();
        }
        s.flush().unwrap();
        started.elapsed()
    });
    let wrote_in = producer.join().unwrap();
    let out = finish(weir);
    ok(&out);
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("r.json")).unwrap()).unwrap();
    let source = &r["components"][0];
    assert_eq!(
        source["records_in"].as_u64(),
        Some(n),
        "every line was read"
    );
    let window = &r["components"][1];
    assert_eq!(window["records_in"].as_u64(), Some(n));
    let rss = r["peak_rss_bytes"].as_u64().unwrap();
    // What the run added to the same binary's resident size doing nothing (its code and
    // relocated data, some 50 MB in a debug build).
    write(
        dir.path(),
        "idle.toml",
        "[sources.g]\ntype = \"generator\"\nprofile = \"iot\"\nevents = 1\n[sinks.n]\ntype = \"null\"\ninputs = [\"g\"]\n",
    );
    ok(&common::weir(
        dir.path(),
        &["run", "idle.toml", "-q", "--report", "idle.json"],
        "",
    ));
    let idle: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("idle.json")).unwrap())
            .unwrap();
    let baseline = idle["peak_rss_bytes"].as_u64().unwrap();
    assert!(
        rss.saturating_sub(baseline) < 40 << 20,
        "peak memory {rss} ({baseline} idle) for ~95 MB of input"
    );
    // The producer could not write faster than Weir read: its writes took most of the run.
    let ran = r["elapsed_secs"].as_f64().unwrap();
    assert!(
        wrote_in.as_secs_f64() > 0.5 * ran,
        "the producer finished in {wrote_in:?} of a {ran}s run: it was not pushed back"
    );
}

#[test]
fn the_tcp_sink_delivers_what_a_file_sink_writes() {
    let dir = workspace();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let reader = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        BufReader::new(s)
            .lines()
            .map(|l| l.unwrap())
            .collect::<Vec<String>>()
    });
    let addr = format!("sinks.out.address=\"127.0.0.1:{port}\"");
    let text = bundled_text("iot-alarm-counter.toml").replace(
        "type = \"file\"\ninputs = [\"per_device\"]\npath = \"out/alarm-counts.jsonl\"",
        "type = \"tcp\"\ninputs = [\"per_device\"]\naddress = \"127.0.0.1:1\"",
    );
    write(dir.path(), "tcp-out.toml", &text);
    run_ok(dir.path(), "tcp-out.toml", &["--set", &addr]);
    let got = reader.join().unwrap().join("\n");
    run_ok(dir.path(), "pipelines/iot-alarm-counter.toml", &[]);
    let want = std::fs::read_to_string(dir.path().join("out/alarm-counts.jsonl")).unwrap();
    assert!(json_multiset(&want).len() > 100);
    assert_eq!(json_multiset(&got), json_multiset(&want));
}

#[test]
fn tcp_errors_name_the_place_and_the_fix() {
    let dir = workspace();
    write(
        dir.path(),
        "bad.toml",
        r#"[sources.in]
type = "tcp"
address = "localhost"
max_connections = 0
schema = { ts = "timestamp" }

[sinks.out]
type = "stdout"
inputs = ["in"]
"#,
    );
    let out = weir(dir.path(), &["validate", "bad.toml"], "");
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("bad.toml:3:11"), "{err}");
    assert!(err.contains("`localhost` is not an address"), "{err}");
    assert!(err.contains("bad.toml:4:19"), "{err}");
    assert!(
        err.contains("`max_connections` must be at least 1"),
        "{err}"
    );
    write(
        dir.path(),
        "bad-sink.toml",
        "[sources.g]\ntype = \"generator\"\nprofile = \"iot\"\n\n[sinks.out]\ntype = \"tcp\"\ninputs = [\"g\"]\naddress = \"127.0.0.1:99999\"\n",
    );
    let out = weir(dir.path(), &["validate", "bad-sink.toml"], "");
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("bad-sink.toml:8:11"), "{err}");
    assert!(err.contains("`127.0.0.1:99999` is not an address"), "{err}");
    // A sink whose receiver is not there fails before the run, saying what to do.
    let port = free_ports(1)[0];
    write(
        dir.path(),
        "nobody.toml",
        &format!(
            "[sources.g]\ntype = \"generator\"\nprofile = \"iot\"\nevents = 10\n\n[sinks.out]\ntype = \"tcp\"\ninputs = [\"g\"]\naddress = \"127.0.0.1:{port}\"\n"
        ),
    );
    let out = weir(dir.path(), &["run", "nobody.toml"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("start the receiver first"),
        "{}",
        stderr(&out)
    );
    // A source whose port is taken fails the run, saying so.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    write(dir.path(), "taken.toml", &pipeline(port));
    let out = weir(
        dir.path(),
        &["run", "taken.toml", "--status-every", "0s"],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&format!("cannot listen on 127.0.0.1:{port}")));
}

#[test]
fn weir_produce_feeds_the_bundled_tcp_pipeline() {
    let dir = workspace();
    let port = free_ports(1)[0];
    let addr = format!("sources.sensors.address=\"127.0.0.1:{port}\"");
    let weir_run = spawn_weir(
        dir.path(),
        &[
            "run",
            "pipelines/tcp-device-report.toml",
            "--status-every",
            "0s",
            "--set",
            &addr,
        ],
    );
    let target = format!("127.0.0.1:{port}");
    let produce = weir(
        dir.path(),
        &[
            "produce",
            "--profile",
            "iot",
            "--events",
            "30k",
            "--rate",
            "20k",
            "--seed",
            "3",
            "--tcp",
            &target,
        ],
        "",
    );
    ok(&produce);
    assert!(stderr(&produce).contains("weir produce: 30,000 events"));
    let out = finish(weir_run);
    ok(&out);
    // Every reading is in exactly one window.
    let results = json_lines(&dir.path().join("out/tcp-device-report.jsonl"));
    let readings: u64 = results
        .iter()
        .map(|r| r["readings"].as_u64().unwrap())
        .sum();
    let spec = weir_operators::generator::GeneratorSpec {
        seed: 3,
        ..weir_operators::generator::GeneratorSpec::new(weir_operators::generator::Profile::Iot)
    };
    let want = (0..30_000)
        .filter(|&i| spec.event(i, 0).values[2].as_str() == Some("reading"))
        .count() as u64;
    assert_eq!(readings, want);
    assert!(
        stderr(&out).contains("sources.sensors       tcp"),
        "{}",
        stderr(&out)
    );
    // The producer stamps events as it makes them: window results get event-time latency.
    assert!(
        stderr(&out).contains("sinks.report event-time"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn latency_can_count_from_when_the_producer_made_the_event() {
    // The producer stamps its events 2 s before it sends them (as if they waited that long
    // in a queue). Counted from when Weir read them, latency is small; counted from their
    // event time, it includes the 2 s.
    let dir = workspace();
    for (from, at_least, below) in [
        ("read", 0, 1_000_000),
        ("event_time", 2_000_000, 10_000_000),
    ] {
        let port = free_ports(1)[0];
        write(
            dir.path(),
            "e2e.toml",
            &format!(
                r#"
[sources.events]
type = "tcp"
address = "127.0.0.1:{port}"
max_connections = 1
schema = {{ ts = "timestamp", x = "i64" }}
timestamp_format = "epoch_ms"
latency_from = "{from}"

[sinks.out]
type = "null"
inputs = ["events"]
"#
            ),
        );
        let weir_run = spawn_weir(
            dir.path(),
            &[
                "run",
                "e2e.toml",
                "--status-every",
                "0s",
                "--report",
                "r.json",
            ],
        );
        let mut s = connect(port);
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        for i in 0..1000 {
            writeln!(s, "{{\"ts\": {}, \"x\": {i}}}", now_ms - 2000).unwrap();
        }
        drop(s);
        ok(&finish(weir_run));
        let r: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("r.json")).unwrap())
                .unwrap();
        let p50 = r["sinks"][0]["processing_latency"]["percentiles_us"][0][1]
            .as_u64()
            .unwrap();
        assert!(
            (at_least..below).contains(&p50),
            "latency_from = {from}: p50 {p50}µs"
        );
    }
}
