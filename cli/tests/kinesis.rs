//! Kinesis in and out, against a Kinesis-compatible server (`WEIR_KINESIS_ENDPOINT`, started
//! by the README's test command): a stream equals a file in both modes on one and two workers,
//! the sink keys records to shards, a run killed with SIGKILL and restarted loses nothing and
//! reads again only what its positions had not covered, a shard split during a run is
//! followed, and mistakes are reported with their place.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;
use serde_json::Value;
use weir_cloud::block_on;
use weir_cloud::kinesis::fetcher::{self, FetchPlan, Fetched, Start};
use weir_cloud::kinesis::positions::Positions;
use weir_cloud::kinesis::sink::KinesisOut;
use weir_cloud::kinesis::{create_stream, seq_cmp, Connection};

fn endpoint() -> String {
    std::env::var("WEIR_KINESIS_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "the Kinesis tests need a Kinesis-compatible server: run the README's test command \
             (scripts/test), which starts one, or start one yourself and set \
             WEIR_KINESIS_ENDPOINT=http://host:port (with AWS_ACCESS_KEY_ID, \
             AWS_SECRET_ACCESS_KEY and AWS_REGION set)"
        )
    })
}

/// A new stream of `shards` shards.
fn stream(name: &str, shards: i32) -> Connection {
    let conn = Connection {
        stream: unique(name),
        region: None,
        endpoint: Some(endpoint()),
    };
    let c = conn.clone();
    block_on(Duration::from_secs(30), async move {
        let client = c.client().await?;
        create_stream(&client, &c, shards).await
    })
    .unwrap();
    conn
}

/// Writes `messages` (partition key, payload) to the stream, in order.
fn put(conn: &Connection, messages: &[(String, String)]) {
    let out = KinesisOut::open(conn, vec![]).unwrap();
    for (key, data) in messages {
        out.send_keyed(key.clone(), data.clone().into_bytes(), 0)
            .unwrap();
    }
    weir_operators::sink::MessageOut::flush(&out).unwrap();
}

/// Every record of the stream, read here from the start: per shard, (sequence number,
/// payload) in order.
fn everything(conn: &Connection) -> BTreeMap<String, Vec<(String, String)>> {
    let plan = FetchPlan {
        conn: conn.clone(),
        worker: 0,
        peers: 1,
        start: Start::TrimHorizon,
        resume: BTreeMap::new(),
        bounded: true,
        poll_interval: Duration::from_millis(20),
        limit: 1000,
        ended: Default::default(),
    };
    let (tx, rx) = std::sync::mpsc::sync_channel(4);
    let t = std::thread::spawn(move || fetcher::run(plan, tx, || {}, Default::default()));
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for m in rx {
        match m {
            Fetched::Records { shard, records, .. } => {
                out.entry(shard.to_string()).or_default().extend(
                    records
                        .into_iter()
                        .map(|r| (r.seq, String::from_utf8(r.data).unwrap())),
                )
            }
            Fetched::Error(e) => panic!("{e}"),
            Fetched::AllDone => break,
            _ => {}
        }
    }
    t.join().unwrap();
    out
}

fn events(from: u64, to: u64) -> Vec<(String, String)> {
    sensor_events(from, to)
}

fn reference(n: u64) -> Vec<String> {
    sensor_reference(n, 0)
}

fn pipeline(source: &str, sinks: &str) -> String {
    sensor_pipeline("kinesis-test", source, sinks)
}

fn kinesis_source(conn: &Connection, extra: &str) -> String {
    format!(
        "type = \"kinesis\"\nstream = \"{}\"\nendpoint = \"{}\"\npoll_interval = \"20ms\"\n{extra}",
        conn.stream,
        endpoint()
    )
}

#[test]
fn a_stream_of_three_shards_gives_the_results_of_a_file_and_the_sink_keys_by_field() {
    let dir = workspace();
    let n = 3000;
    let input = stream("readings", 3);
    let messages = events(0, n);
    put(&input, &messages);
    let lines: String = messages.iter().map(|(_, l)| format!("{l}\n")).collect();
    write(dir.path(), "events.jsonl", &lines);
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

    for (k, flags) in [
        vec!["--workers", "1"],
        vec!["--workers", "2"],
        vec![
            "--workers",
            "2",
            "--mode",
            "micro-batch",
            "--batch-interval",
            "20ms",
        ],
    ]
    .into_iter()
    .enumerate()
    {
        // Stream to stream, keyed by device; then the output stream read back into a file.
        let output = stream("device-report", 2);
        let sink = format!(
            "[sinks.out]\ntype = \"kinesis\"\ninputs = [\"per_device\"]\nstream = \"{}\"\nendpoint = \"{}\"\npartition_key = [\"device\"]\n",
            output.stream,
            endpoint()
        );
        let text = pipeline(&kinesis_source(&input, "bounded = true"), &sink);
        let name = format!("kinesis-{k}.toml");
        write(dir.path(), &name, &text);
        let _ = std::fs::remove_file(dir.path().join("kinesis-test.deadletter.jsonl"));
        let mut args = flags.clone();
        args.extend(["--report", "kinesis.json"]);
        let err = run_ok(dir.path(), &name, &args);
        let r: Value = serde_json::from_str(&read(dir.path(), "kinesis.json")).unwrap();
        let source = report_component(&r, "sources.events");
        assert_eq!(source["records_in"], n, "{err}");
        assert_eq!(source["dead_lettered"], 6, "{err}");
        let shards = source["shards"].as_array().unwrap();
        assert_eq!(shards.len(), 3, "{err}");
        let read_in: u64 = shards.iter().map(|s| s["records"].as_u64().unwrap()).sum();
        assert_eq!(read_in, n, "{err}");
        for s in shards {
            assert_eq!(s["behind_ms"], 0, "{err}");
            assert_eq!(s["state"], "reading", "{err}");
        }
        assert!(
            err.contains("sources.events: 3 shards, most behind its tip 0 ms"),
            "{err}"
        );
        // Bad records are dead-lettered with their shard and sequence number: their id.
        let dead = json_lines(&dir.path().join("kinesis-test.deadletter.jsonl"));
        assert_eq!(dead.len(), 6);
        let stored = everything(&input);
        for d in &dead {
            let (shard, seq) = d["file"].as_str().unwrap().split_once('/').unwrap();
            let record = d["record"].as_str().unwrap();
            assert!(
                stored[shard].iter().any(|(s, r)| s == seq && r == record),
                "{d} is not {shard}'s record {seq}"
            );
        }
        // Each device's results went to one shard of the output stream.
        let written = everything(&output);
        let mut shard_of: BTreeMap<String, String> = BTreeMap::new();
        for (shard, records) in &written {
            for (_, r) in records {
                let v: Value = serde_json::from_str(r).unwrap();
                let device = v["device"].as_str().unwrap().to_string();
                let was = shard_of.insert(device.clone(), shard.clone());
                assert!(was.is_none_or(|w| &w == shard), "{device} in two shards");
            }
        }
        let back = format!(
            "[pipeline]\nname = \"read-back\"\n[sources.back]\n{}\nschema = {{ device = \"string\", window_start = \"timestamp\", window_end = \"timestamp\", n = \"i64\", total = \"i64\", low = \"i64\", high = \"i64\" }}\ntimestamp_field = \"window_start\"\n{}",
            kinesis_source(&output, "bounded = true"),
            file_sink("out", "back", "back.jsonl")
        );
        write(dir.path(), "back.toml", &back);
        run_ok(dir.path(), "back.toml", &[]);
        assert_eq!(
            results_without_ids(dir.path(), "back.jsonl"),
            from_file,
            "{flags:?}"
        );
    }
}

/// How many of `stored`'s records are at or after the positions `kept`.
fn uncovered(
    stored: &BTreeMap<String, Vec<(String, String)>>,
    kept: &BTreeMap<String, weir_cloud::kinesis::positions::ShardPosition>,
) -> usize {
    stored
        .iter()
        .map(|(shard, records)| {
            match kept
                .get(shard)
                .and_then(|p| p.seq.clone().map(|s| (s, p.after)))
            {
                None => records.len(),
                Some((seq, after)) => records
                    .iter()
                    .filter(|(s, _)| {
                        let o = seq_cmp(s, &seq);
                        o.is_gt() || o.is_eq() && !after
                    })
                    .count(),
            }
        })
        .sum()
}

fn lines(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

#[test]
fn a_run_killed_with_sigkill_resumes_without_loss_and_reads_again_only_what_was_not_recorded() {
    let dir = workspace();
    let n = 6000;
    let input = stream("killed", 2);
    put(&input, &events(0, n / 2));
    let source = kinesis_source(
        &input,
        "positions = \"state/positions\"\ncommit_interval = \"50ms\"",
    );
    let text = pipeline(&source, &file_sink("out", "per_device", "out.jsonl"));
    write(dir.path(), "live.toml", &text);
    let first = everything(&input);
    let live = spawn_weir(
        dir.path(),
        &[
            "run",
            "live.toml",
            "--workers",
            "2",
            "--status-every",
            "50ms",
        ],
    );
    // Killed once results are written and the positions cover some of them (they follow what
    // is written).
    eventually("results and positions past them", || {
        let kept = Positions::read(&dir.path().join("state/positions")).unwrap();
        (lines(&dir.path().join("out.jsonl")) >= 20 && uncovered(&first, &kept) < n as usize / 2)
            .then_some(())
    });
    signal(&live, "-KILL");
    // Its status lines showed how far its shards were behind their tips.
    let status = stderr(&finish(live));
    assert!(
        status.lines().any(|l| l.contains("events behind 0 ms")),
        "{status}"
    );
    let kept = Positions::read(&dir.path().join("state/positions")).unwrap();
    let before = results_without_ids(dir.path(), "out.jsonl");
    put(&input, &events(n / 2, n));
    // What the positions did not cover, counted here from the stream itself.
    let uncovered = uncovered(&everything(&input), &kept);
    let err = run_ok(
        dir.path(),
        "live.toml",
        &[
            "--workers",
            "2",
            "--report",
            "r.json",
            "--set",
            "sources.events.bounded=true",
        ],
    );
    let r: Value = serde_json::from_str(&read(dir.path(), "r.json")).unwrap();
    let src = report_component(&r, "sources.events");
    let read_again = src["records_in"].as_u64().unwrap() + src["replayed"].as_u64().unwrap_or(0);
    assert_eq!(read_again, uncovered as u64, "{err}");
    // Nothing lost: every window of the reference, written before the kill or after.
    let all: BTreeSet<String> = results_without_ids(dir.path(), "out.jsonl")
        .into_iter()
        .collect();
    let expected: BTreeSet<String> = reference(n).into_iter().collect();
    let missing: Vec<&String> = expected.difference(&all).take(3).collect();
    let wrong: Vec<&String> = all.difference(&expected).take(3).collect();
    assert!(
        missing.is_empty() && wrong.is_empty(),
        "{} results written before the kill; missing {missing:?}; wrong {wrong:?}",
        before.len()
    );
}

#[test]
fn a_shard_split_during_a_run_is_read_after_its_parent_in_order() {
    let dir = workspace();
    let input = stream("split", 1);
    let record = |i: u64| {
        let key = format!("k{}", i % 4);
        (
            key.clone(),
            format!(
                r#"{{"id": {i}, "ts": {}, "key": "{key}"}}"#,
                1_700_000_000_000 + i
            ),
        )
    };
    put(&input, &(0..100).map(record).collect::<Vec<_>>());
    let text = format!(
        "[pipeline]\nname = \"split\"\n[sources.s]\n{}\nschema = {{ id = \"u64\", ts = \"timestamp\", key = \"string\" }}\ntimestamp_format = \"epoch_ms\"\n{}",
        kinesis_source(&input, ""),
        file_sink("out", "s", "out.jsonl")
    );
    write(dir.path(), "split.toml", &text);
    for workers in ["1", "2"] {
        let _ = std::fs::remove_file(dir.path().join("out.jsonl"));
        let run = spawn_weir(
            dir.path(),
            &[
                "run",
                "split.toml",
                "--workers",
                workers,
                "--status-every",
                "0s",
            ],
        );
        let out = dir.path().join("out.jsonl");
        eventually("the records before the split", || {
            (lines(&out) >= 100).then_some(())
        });
        if workers == "1" {
            let c = input.clone();
            block_on(Duration::from_secs(30), async move {
                let client = c.client().await?;
                client
                    .split_shard()
                    .stream_name(&c.stream)
                    .shard_to_split("shardId-000000000000")
                    .new_starting_hash_key((1u128 << 127).to_string())
                    .send()
                    .await
                    .map_err(|e| c.failure("splitting", e))?;
                create_stream(&client, &c, 1).await.map(|_| ())
            })
            .unwrap();
            put(&input, &(100..200).map(record).collect::<Vec<_>>());
        }
        eventually("the records after the split", || {
            (lines(&out) >= 200).then_some(())
        });
        signal(&run, "-INT");
        let done = finish(run);
        let err = stderr(&done);
        // Interrupted: stopped, with its summary, and the exit status of an interrupted program.
        assert_eq!(done.status.code(), Some(130), "{err}");
        assert!(err.contains("stopped after"), "{err}");
        let got = json_lines(&out);
        let ids: Vec<u64> = got.iter().map(|v| v["id"].as_u64().unwrap()).collect();
        assert_eq!(
            ids.iter().copied().collect::<BTreeSet<_>>(),
            (0..200).collect(),
            "{err}"
        );
        assert_eq!(ids.len(), 200, "each record once: {err}");
        // One worker reads the parent and then its children: each key's records in order.
        for k in 0..4 {
            let mine: Vec<u64> = ids.iter().copied().filter(|i| i % 4 == k).collect();
            assert!(mine.windows(2).all(|w| w[0] < w[1]), "k{k}: {mine:?}");
        }
        assert!(err.contains("sources.s: 3 shards"), "{err}");
        // The README's example of this table has its columns and rows' shape.
        let example = readme_block("weir: sources.sensors: 3 shards, most behind its tip 0 ms");
        for l in example.lines().skip(1) {
            assert!(
                err.lines().any(|e| shape(e) == shape(l)),
                "the README's `{l}` is not the shape of a line of\n{err}"
            );
        }
        assert!(
            err.lines()
                .any(|l| l.contains("shardId-000000000000") && l.contains("ended")),
            "{err}"
        );
    }
}

/// Every record of a one-shard stream with its arrival time (ms), read here from the start.
fn arrivals(conn: &Connection) -> Vec<(i64, String)> {
    let plan = FetchPlan {
        conn: conn.clone(),
        worker: 0,
        peers: 1,
        start: Start::TrimHorizon,
        resume: BTreeMap::new(),
        bounded: true,
        poll_interval: Duration::from_millis(20),
        limit: 1000,
        ended: Default::default(),
    };
    let (tx, rx) = std::sync::mpsc::sync_channel(4);
    let t = std::thread::spawn(move || fetcher::run(plan, tx, || {}, Default::default()));
    let mut out = Vec::new();
    for m in rx {
        match m {
            Fetched::Records { records, .. } => out.extend(records.into_iter().map(|r| {
                (
                    r.arrival_ms.expect("an arrival time"),
                    String::from_utf8(r.data).unwrap(),
                )
            })),
            Fetched::Error(e) => panic!("{e}"),
            Fetched::AllDone => break,
            _ => {}
        }
    }
    t.join().unwrap();
    out
}

#[test]
fn csv_records_are_read_from_a_point_in_time() {
    let dir = workspace();
    let input = stream("csv", 1);
    // Written in three puts, so that arrival times differ.
    for part in 0..3u64 {
        let rows: Vec<(String, String)> = (part * 100..part * 100 + 100)
            .map(|i| {
                (
                    format!("k{}", i % 3),
                    format!("{i},{},k{}", 1_700_000_000_000 + i, i % 3),
                )
            })
            .collect();
        put(&input, &rows);
    }
    let stored = arrivals(&input);
    assert_eq!(stored.len(), 300);
    // From the arrival time of the 151st record: every record that arrived then or later.
    let at = stored[150].0;
    let expected: BTreeSet<u64> = stored
        .iter()
        .filter(|(t, _)| *t >= at)
        .map(|(_, row)| row.split(',').next().unwrap().parse().unwrap())
        .collect();
    let text = format!(
        "[pipeline]\nname = \"csv\"\n[sources.s]\n{}\nschema = {{ id = \"u64\", ts = \"timestamp\", key = \"string\" }}\ntimestamp_format = \"epoch_ms\"\n{}",
        kinesis_source(
            &input,
            &format!(
                "bounded = true\nformat = \"csv\"\nstart = {{ at = \"{}\" }}",
                weir_operators::time::format_rfc3339(at * 1000)
            )
        ),
        file_sink("out", "s", "out.jsonl")
    );
    write(dir.path(), "csv.toml", &text);
    for workers in ["1", "2"] {
        run_ok(dir.path(), "csv.toml", &["--workers", workers]);
        let got: BTreeSet<u64> = json_lines(&dir.path().join("out.jsonl"))
            .iter()
            .map(|v| v["id"].as_u64().unwrap())
            .collect();
        assert_eq!(got, expected, "{workers} workers");
        assert!(got.len() < 300 && got.contains(&299));
    }
}

#[test]
fn two_processes_share_the_shards_and_keep_their_positions_apart() {
    let dir = workspace();
    let n = 3000;
    let input = stream("cluster", 4);
    put(&input, &events(0, n));
    let source = kinesis_source(&input, "bounded = true\npositions = \"state/cluster\"");
    write(
        dir.path(),
        "cluster.toml",
        &pipeline(&source, &file_sink("out", "per_device", "cluster.jsonl")),
    );
    let hosts = hostfile(dir.path(), 2);
    let children: Vec<_> = (0..2)
        .map(|p| {
            let id = p.to_string();
            spawn_weir(
                dir.path(),
                &[
                    "run",
                    "cluster.toml",
                    "--workers",
                    "2",
                    "--status-every",
                    "0s",
                    "--processes",
                    "2",
                    "--process-id",
                    &id,
                    "--hostfile",
                    &hosts,
                    "--report",
                    &format!("r{p}.json"),
                ],
            )
        })
        .collect();
    for c in children {
        ok(&finish(c));
    }
    // Process 0 writes every sink's output: the reference, whole.
    assert_eq!(
        json_multiset(&read(dir.path(), "cluster.jsonl")),
        reference(n)
    );
    // Each process read the shards of its own workers, and all were read once.
    let mut read_by: BTreeMap<String, usize> = BTreeMap::new();
    let mut total = 0;
    for p in 0..2 {
        let r: Value = serde_json::from_str(&read(dir.path(), &format!("r{p}.json"))).unwrap();
        let src = report_component(&r, "sources.events");
        for s in src["shards"].as_array().unwrap() {
            let records = s["records"].as_u64().unwrap();
            if records > 0 {
                *read_by
                    .entry(s["shard"].as_str().unwrap().to_string())
                    .or_default() += 1;
                total += records;
            }
        }
        // Positions are kept per process, each for the shards it read.
        let file = dir.path().join(format!("state/cluster/process-{p}.json"));
        assert!(file.exists(), "{}", file.display());
    }
    assert_eq!(total, n, "{read_by:?}");
    assert_eq!(read_by.len(), 4, "{read_by:?}");
    assert!(
        read_by.values().all(|&k| k == 1),
        "a shard read twice: {read_by:?}"
    );
    let kept = Positions::read(&dir.path().join("state/cluster")).unwrap();
    assert_eq!(kept.len(), 4);
    // A second run reads nothing again.
    let again = weir(
        dir.path(),
        &[
            "run",
            "cluster.toml",
            "--status-every",
            "0s",
            "--report",
            "again.json",
        ],
        "",
    );
    ok(&again);
    let r: Value = serde_json::from_str(&read(dir.path(), "again.json")).unwrap();
    assert_eq!(report_component(&r, "sources.events")["records_in"], 0);
}

#[test]
fn mistakes_are_reported_at_their_place() {
    let dir = workspace();
    let base = |source: &str| {
        format!(
            "[pipeline]\nname = \"bad\"\n[sources.s]\ntype = \"kinesis\"\n{source}\nschema = {{ ts = \"timestamp\" }}\n[sinks.out]\ntype = \"stdout\"\ninputs = [\"s\"]\n"
        )
    };
    for (source, said, line) in [
        (
            "stream = \"no spaces allowed\"",
            "is not a Kinesis stream name",
            5,
        ),
        (
            "stream = \"s\"\nendpoint = \"127.0.0.1:4567\"",
            "is not an endpoint URL",
            6,
        ),
        (
            "stream = \"s\"\nregion = \"US East\"",
            "is not an AWS region",
            6,
        ),
        ("stream = \"s\"\nstart = \"earliest\"", "`start`", 6),
        (
            "stream = \"s\"\npositions = \"\"",
            "`positions` is empty",
            6,
        ),
        (
            "stream = \"s\"\npoll_interval = \"0s\"",
            "must be longer than zero",
            6,
        ),
        ("stream = \"s\"\nshards = 2", "shards", 6),
    ] {
        let p = write(dir.path(), "bad.toml", &base(source));
        let err = weir_fails(dir.path(), &["validate", &p]);
        assert!(err.contains(said), "{source}: {err}");
        assert!(
            err.contains(&format!("bad.toml:{line}:")),
            "{source}: {err}"
        );
        assert!(err.contains("sources.s"), "{source}: {err}");
    }
    // Checkpoints do not keep a Kinesis source's positions: refused at the source.
    let p = write(
        dir.path(),
        "ck.toml",
        &base("stream = \"s\"").replace(
            "name = \"bad\"",
            "name = \"bad\"\ncheckpoint = { interval = \"1s\", dir = \"state/ck\" }",
        ),
    );
    let err = weir_fails(dir.path(), &["validate", &p]);
    assert!(err.contains("checkpoints do not cover"), "{err}");
    assert!(err.contains("ck.toml:5:"), "{err}");
    // A stream that does not exist, and a service that cannot be reached: said before the run.
    let missing = base(&format!(
        "stream = \"{}\"\nendpoint = \"{}\"",
        unique("absent"),
        endpoint()
    ));
    let p = write(dir.path(), "missing.toml", &missing);
    let err = weir_fails(dir.path(), &["run", &p]);
    assert!(err.contains("create the stream"), "{err}");
    // The service's own words, not the client's debug dump.
    assert!(err.contains("ResourceNotFoundException"), "{err}");
    assert!(!err.contains("SdkBody"), "{err}");
    let port = free_ports(1)[0];
    let nowhere = base(&format!(
        "stream = \"s\"\nendpoint = \"http://127.0.0.1:{port}\""
    ));
    let p = write(dir.path(), "nowhere.toml", &nowhere);
    let err = weir_fails(dir.path(), &["run", &p]);
    assert!(
        err.contains(&format!("cannot reach http://127.0.0.1:{port}")),
        "{err}"
    );
}
