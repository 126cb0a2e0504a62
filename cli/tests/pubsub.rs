//! Pub/Sub in and out, against Google's emulator (`WEIR_PUBSUB_ENDPOINT`, started by the
//! README's test command): a subscription equals a file in both modes on one and two workers,
//! the sink's ordering keys and attributes arrive, a key's messages are taken in order, a run
//! killed with SIGKILL and restarted loses nothing (its unacknowledged messages come again),
//! and mistakes are reported with their place.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;
use serde_json::Value;
use weir_cloud::block_on;
use weir_cloud::pubsub::sink::PubSubOut;
use weir_cloud::pubsub::Connection;

const PROJECT: &str = "weir-test";

fn endpoint() -> String {
    std::env::var("WEIR_PUBSUB_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "the Pub/Sub tests need the Pub/Sub emulator: run the README's test command \
             (scripts/test), which starts one, or start one yourself (gcloud beta emulators \
             pubsub start --host-port=127.0.0.1:8085) and set \
             WEIR_PUBSUB_ENDPOINT=http://127.0.0.1:8085"
        )
    })
}

fn conn() -> Connection {
    Connection {
        project: PROJECT.into(),
        endpoint: Some(endpoint()),
    }
}

/// A new topic with a new (ordered) subscription for each of `subscriptions`; returns the
/// topic and the subscriptions' names.
fn topic(name: &str, subscriptions: usize) -> (String, Vec<String>) {
    topic_with(name, subscriptions, true)
}

/// [`topic`], its subscriptions ordered by ordering key or not.
fn topic_with(name: &str, subscriptions: usize, ordered: bool) -> (String, Vec<String>) {
    let topic = unique(name);
    let subs: Vec<String> = (0..subscriptions)
        .map(|k| format!("{topic}-sub{k}"))
        .collect();
    let (t, s) = (topic.clone(), subs.clone());
    block_on(Duration::from_secs(30), async move {
        let c = conn();
        c.create_topic(&t).await?;
        for sub in &s {
            c.create_subscription(sub, &t, ordered).await?;
        }
        Ok(())
    })
    .unwrap();
    (topic, subs)
}

/// Publishes `messages` (ordering key, payload), in order.
fn publish(topic: &str, messages: &[(String, String)]) {
    let out = PubSubOut::open(&conn(), topic, vec![], vec![]).unwrap();
    for (key, data) in messages {
        out.send_message(data.clone().into_bytes(), Some(key.clone()), vec![], 0)
            .unwrap();
    }
    weir_operators::sink::MessageOut::flush(&out).unwrap();
}

fn events(from: u64, to: u64) -> Vec<(String, String)> {
    sensor_events(from, to)
}

fn reference(n: u64) -> Vec<String> {
    sensor_reference(n, 0)
}

fn pipeline(source: &str, sinks: &str) -> String {
    sensor_pipeline("pubsub-test", source, sinks)
}

fn pubsub_source(subscription: &str, extra: &str) -> String {
    format!(
        "type = \"pubsub\"\nproject = \"{PROJECT}\"\nsubscription = \"{subscription}\"\nendpoint = \"{}\"\n{extra}",
        endpoint()
    )
}

#[test]
fn a_subscription_gives_the_results_of_a_file_and_the_sink_sends_keys_and_attributes() {
    let dir = workspace();
    let n = 3000;
    let configs = [
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
    ];
    let (input, subs) = topic("readings", configs.len());
    let messages = events(0, n);
    publish(&input, &messages);
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
    for (k, flags) in configs.iter().enumerate() {
        // Topic to topic, with ordering keys and attributes; then read back into a file, event
        // time from an attribute.
        let (output, back_subs) = topic("device-report", 1);
        let sink = format!(
            "[sinks.out]\ntype = \"pubsub\"\ninputs = [\"per_device\"]\nproject = \"{PROJECT}\"\ntopic = \"{output}\"\nendpoint = \"{}\"\nordering_key = [\"device\"]\nattributes = [\"window_start\", \"device\"]\n",
            endpoint()
        );
        // Messages of different keys come in any order: the watermark allows for all of them.
        let source = pubsub_source(
            &subs[k],
            &format!("max_messages = {n}\nwatermark = {{ max_out_of_orderness = \"1h\" }}"),
        );
        let name = format!("pubsub-{k}.toml");
        write(dir.path(), &name, &pipeline(&source, &sink));
        let _ = std::fs::remove_file(dir.path().join("pubsub-test.deadletter.jsonl"));
        let mut args = flags.clone();
        args.extend(["--report", "pubsub.json"]);
        let err = run_ok(dir.path(), &name, &args);
        let r: Value = serde_json::from_str(&read(dir.path(), "pubsub.json")).unwrap();
        let src = report_component(&r, "sources.events");
        assert_eq!(src["records_in"], n, "{err}");
        assert_eq!(src["dead_lettered"], 6, "{err}");
        assert_eq!(src["pubsub"]["acknowledged"], n, "{err}");
        assert_eq!(src["pubsub"]["unacknowledged"], 0, "{err}");
        assert!(
            err.contains(
                "sources.events: 3,000 messages received, 3,000 acknowledged, 0 not acknowledged (returned for redelivery); the subscription orders by ordering key"
            ),
            "{err}"
        );
        // Bad messages are dead-lettered with their subscription and message id.
        let dead = json_lines(&dir.path().join("pubsub-test.deadletter.jsonl"));
        assert_eq!(dead.len(), 6);
        let mut records: Vec<&str> = dead.iter().map(|d| d["record"].as_str().unwrap()).collect();
        records.sort();
        let mut bad: Vec<&str> = messages
            .iter()
            .enumerate()
            .filter(|(i, _)| matches!(i % 1000, 500 | 999))
            .map(|(_, (_, l))| l.as_str())
            .collect();
        bad.sort();
        assert_eq!(records, bad);
        for d in &dead {
            let (sub, id) = d["file"].as_str().unwrap().split_once('/').unwrap();
            assert_eq!(sub, subs[k]);
            assert!(
                !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()),
                "{d}"
            );
        }
        let results_n = from_file.len();
        let back = format!(
            "[pipeline]\nname = \"read-back\"\n[sources.back]\n{}\nschema = {{ device = \"string\", window_start = \"timestamp\", window_end = \"timestamp\", n = \"i64\", total = \"i64\", low = \"i64\", high = \"i64\" }}\ntimestamp_field = \"window_start\"\n{}",
            pubsub_source(
                &back_subs[0],
                &format!("max_messages = {results_n}\ntimestamp_from = \"attribute\"\ntimestamp_attribute = \"window_start\"\nwatermark = {{ max_out_of_orderness = \"1h\" }}")
            ),
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

#[test]
fn a_keys_messages_are_taken_in_the_order_published() {
    let dir = workspace();
    let (t, subs) = topic("ordered", 1);
    let n = 600;
    let messages: Vec<(String, String)> = (0..n)
        .map(|i| {
            let key = format!("k{}", i % 5);
            (
                key.clone(),
                format!(
                    r#"{{"id": {i}, "ts": {}, "key": "{key}"}}"#,
                    1_700_000_000_000u64 + i
                ),
            )
        })
        .collect();
    publish(&t, &messages);
    let text = format!(
        "[pipeline]\nname = \"ordered\"\n[sources.s]\n{}\nschema = {{ id = \"u64\", ts = \"timestamp\", key = \"string\" }}\ntimestamp_format = \"epoch_ms\"\n{}",
        pubsub_source(&subs[0], &format!("max_messages = {n}\nwatermark = {{ max_out_of_orderness = \"1h\" }}")),
        file_sink("out", "s", "out.jsonl")
    );
    write(dir.path(), "ordered.toml", &text);
    run_ok(dir.path(), "ordered.toml", &["--workers", "1"]);
    let got = json_lines(&dir.path().join("out.jsonl"));
    assert_eq!(got.len(), n as usize);
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    for v in &got {
        let (k, i) = (
            v["key"].as_str().unwrap().to_string(),
            v["id"].as_u64().unwrap(),
        );
        assert!(
            last.get(&k).is_none_or(|&l| l < i),
            "{k}: {i} after {:?}",
            last.get(&k)
        );
        last.insert(k, i);
    }
}

/// Pulls `n` messages from `subscription` here, acknowledging them.
fn pull(subscription: &str, n: usize) -> Vec<google_cloud_pubsub::model::Message> {
    let sub = conn().path("subscriptions", subscription);
    block_on(Duration::from_secs(60), async move {
        let c = conn();
        let client = google_cloud_pubsub::client::Subscriber::builder()
            .with_endpoint(c.endpoint().unwrap())
            .with_credentials(c.credentials()?)
            .build()
            .await
            .map_err(|e| e.to_string())?;
        let mut stream = client.subscribe(&sub).build();
        let mut out = Vec::new();
        while out.len() < n {
            let (m, h) = stream
                .next()
                .await
                .ok_or("the stream ended")?
                .map_err(|e| e.to_string())?;
            h.ack();
            out.push(m);
        }
        stream.shutdown_token().shutdown().await;
        Ok(out)
    })
    .unwrap()
}

#[test]
fn csv_messages_take_their_event_time_from_the_publish_time() {
    let dir = workspace();
    let (t, subs) = topic("csv", 2);
    let n = 200;
    let rows: Vec<(String, String)> = (0..n)
        .map(|i| (format!("k{}", i % 4), format!("{i},k{}", i % 4)))
        .collect();
    publish(&t, &rows);
    // The publish times as the service gives them, by message id.
    let times: BTreeMap<String, i64> = pull(&subs[1], n)
        .into_iter()
        .map(|m| {
            let p = m.publish_time.unwrap();
            (
                m.message_id,
                p.seconds() * 1_000_000 + i64::from(p.nanos()) / 1000,
            )
        })
        .collect();
    let text = format!(
        "[pipeline]\nname = \"csv\"\n[sources.s]\n{}\nschema = {{ n = \"u64\", key = \"string\", ts = \"timestamp\" }}\n{}",
        pubsub_source(
            &subs[0],
            &format!("max_messages = {n}\nformat = \"csv\"\ntimestamp_from = \"publish\"\nwatermark = {{ max_out_of_orderness = \"1h\" }}")
        ),
        file_sink("out", "s", "out.jsonl")
    );
    write(dir.path(), "csv.toml", &text);
    run_ok(dir.path(), "csv.toml", &["--workers", "2"]);
    let got = json_lines(&dir.path().join("out.jsonl"));
    assert_eq!(got.len(), n);
    let ns: BTreeSet<u64> = got.iter().map(|v| v["n"].as_u64().unwrap()).collect();
    assert_eq!(ns, (0..n as u64).collect());
    // Each record's time is its message's publish time (its assigned id names the message).
    for v in &got {
        let message = v["id"].as_str().unwrap().split('/').nth(1).unwrap();
        let message = message.trim_end_matches(":0");
        let ts = weir_operators::time::parse_rfc3339(v["ts"].as_str().unwrap()).unwrap();
        assert_eq!(Some(&ts), times.get(message), "{v}");
    }
}

/// Starts `weir ARGS` in `dir` with its status lines sent, one by one, to the receiver.
fn spawn_watched(
    dir: &std::path::Path,
    args: &[&str],
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    let mut child = spawn_weir(dir, args);
    let err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Waits for a status line saying the source has received at least `n` messages.
fn received(rx: &std::sync::mpsc::Receiver<String>, n: u64) {
    let mut last = String::new();
    // A limit for a hung run, not a measure: the emulator takes from seconds to minutes to
    // deliver a killed subscriber's messages again.
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            let count = l
                .split("sources: ")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .and_then(|c| c.replace(',', "").parse::<u64>().ok());
            if count.is_some_and(|c| c >= n) {
                return;
            }
            if count.is_some() {
                last = l;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never {n} messages; the last status: {last}"
        );
    }
}

#[test]
fn a_run_killed_with_sigkill_loses_nothing_its_unacknowledged_messages_come_again() {
    let dir = workspace();
    // (The emulator does not deliver an ordered subscription's unacknowledged messages again
    // after its subscriber is killed: this subscription is unordered.)
    let (t, subs) = topic_with("killed", 1, false);
    let n = 2000u64;
    // Good messages only: a bad one's dead letter is its whole output, so the first run may
    // acknowledge it, and the count the next run reaches would be uncertain.
    let good = |from: u64, to: u64| -> Vec<(String, String)> {
        (from..to)
            .filter(|i| !matches!(i % 1000, 500 | 999))
            .map(|i| events(i, i + 1).remove(0))
            .collect()
    };
    let half = good(0, n / 2).len() as u64;
    publish(&t, &good(0, n / 2));
    // No window closes before the end (the watermark allows an hour), so nothing is written
    // and nothing may be acknowledged while the run lasts; a crashed run's messages come again
    // 10 s after their last extension.
    let source = pubsub_source(
        &subs[0],
        "lease_extension = \"10s\"\nwatermark = { max_out_of_orderness = \"1h\" }",
    );
    write(
        dir.path(),
        "killed.toml",
        &pipeline(&source, &file_sink("out", "per_device", "out.jsonl")),
    );
    let args = [
        "run",
        "killed.toml",
        "--status-every",
        "100ms",
        "--workers",
        "2",
    ];
    let (mut live, status) = spawn_watched(dir.path(), &args);
    received(&status, half);
    // Nothing is written yet, so nothing is acknowledged: the status lines show them all held.
    let held = format!("events unacked {}", weir_engine::summary::thousands(half));
    let shown = status
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_default();
    assert!(
        shown.contains(&held) || status.iter().take(50).any(|l| l.contains(&held)),
        "{shown}"
    );
    signal(&live, "-KILL");
    let _ = live.wait();
    assert!(!dir.path().join("out.jsonl").exists() || read(dir.path(), "out.jsonl").is_empty());
    publish(&t, &good(n / 2, n));
    // The restart gets the second half and, once their deadline passes, the first: it is
    // stopped (closing its windows) once it holds all of them.
    let (run, status) = spawn_watched(dir.path(), &args);
    received(&status, 2 * half);
    signal(&run, "-INT");
    let done = finish(run);
    assert_eq!(done.status.code(), Some(130));
    let got: Vec<String> = results_without_ids(dir.path(), "out.jsonl");
    assert_eq!(got, reference(n), "every window whole after the crash");
}

#[test]
fn mistakes_are_reported_at_their_place() {
    let dir = workspace();
    let base = |source: &str| {
        format!(
            "[pipeline]\nname = \"bad\"\n[sources.s]\ntype = \"pubsub\"\n{source}\nschema = {{ ts = \"timestamp\" }}\n[sinks.out]\ntype = \"stdout\"\ninputs = [\"s\"]\n"
        )
    };
    for (source, said, line) in [
        (
            "project = \"Not A Project\"\nsubscription = \"s1s\"",
            "is not a Google Cloud project id",
            5,
        ),
        (
            "project = \"weir-test\"\nsubscription = \"goog-x\"",
            "is not a Pub/Sub subscription name",
            6,
        ),
        (
            "project = \"weir-test\"\nsubscription = \"sub\"\nendpoint = \"127.0.0.1:8085\"",
            "is not an endpoint URL",
            7,
        ),
        (
            "project = \"weir-test\"\nsubscription = \"sub\"\nmax_messages = 0",
            "not a positive number",
            7,
        ),
        (
            "project = \"weir-test\"\nsubscription = \"sub\"\ntimestamp_from = \"arrival\"",
            "`timestamp_from`",
            7,
        ),
        (
            "project = \"weir-test\"\nsubscription = \"sub\"\ntimestamp_attribute = \"t\"",
            "without timestamp_from",
            7,
        ),
        (
            "project = \"weir-test\"\nsubscription = \"sub\"\nmax_lease = \"1s\"",
            "shorter than 10s",
            7,
        ),
        (
            "project = \"weir-test\"\nsubscription = \"sub\"\nack = true",
            "ack",
            7,
        ),
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
    // A subscription that does not exist, and a service that cannot be reached: said before
    // the run.
    let missing = base(&format!(
        "project = \"{PROJECT}\"\nsubscription = \"{}\"\nendpoint = \"{}\"",
        unique("absent"),
        endpoint()
    ));
    let p = write(dir.path(), "missing.toml", &missing);
    let err = weir_fails(dir.path(), &["run", &p]);
    assert!(err.contains("create it"), "{err}");
    let port = free_ports(1)[0];
    let nowhere = base(&format!(
        "project = \"{PROJECT}\"\nsubscription = \"sub\"\nendpoint = \"http://127.0.0.1:{port}\""
    ));
    let p = write(dir.path(), "nowhere.toml", &nowhere);
    let err = weir_fails(dir.path(), &["run", &p]);
    assert!(err.contains(&format!("http://127.0.0.1:{port}")), "{err}");
    assert!(err.contains("cannot reach"), "{err}");
}
