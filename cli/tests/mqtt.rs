//! MQTT devices against a real Mosquitto broker (Debian's `mosquitto`, which `.ci/run`
//! installs): each test starts its own broker on a free port of 127.0.0.1. Runs end on data:
//! `max_messages`, or a stop once every expected record is out.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rumqttc::{Client, Event, MqttOptions, Outgoing, Packet, QoS};

/// A Mosquitto broker of the test's own, stopped when dropped.
struct Mosquitto {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

fn mosquitto_binary() -> String {
    for p in ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"] {
        if Path::new(p).exists() {
            return p.to_string();
        }
    }
    "mosquitto".to_string()
}

impl Mosquitto {
    /// Starts a broker (persistent: its state survives a restart) in `dir`.
    fn start(dir: &Path, port: u16) -> Mosquitto {
        // Mosquitto started as root runs as the user `mosquitto`, which must be able to save
        // its state here. Its queue for a slow client is unbounded (by default it drops QoS 1
        // messages past 1,000 queued).
        let dir = &dir.join("mosquitto");
        std::fs::create_dir_all(dir).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\nmax_queued_messages 0\n",
                dir.display()
            ),
        )
        .unwrap();
        let child = Command::new(mosquitto_binary())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the MQTT tests need Mosquitto: apt-get install mosquitto (.ci/run does)");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "Mosquitto did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Mosquitto {
            child: Some(child),
            port,
            dir: dir.to_path_buf(),
        }
    }

    /// Stops the broker the way a service manager does (SIGTERM: it saves its state).
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
    }

    fn restart(&mut self) {
        self.stop();
        let again = Mosquitto::start(self.dir.parent().unwrap(), self.port);
        *self = again;
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Publishes `messages` (topic, payload) with QoS 1, waiting for every PUBACK (retrying the
/// connection while the broker starts).
fn publish(port: u16, messages: &[(String, Vec<u8>)]) {
    let mut o = MqttOptions::new(
        format!("test-pub-{}", std::process::id()),
        "127.0.0.1",
        port,
    );
    o.set_keep_alive(Duration::from_secs(5));
    let (client, mut conn) = Client::new(o, messages.len() + 10);
    for (t, p) in messages {
        client
            .publish(t, QoS::AtLeastOnce, false, p.clone())
            .unwrap();
    }
    let mut acked = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked < messages.len() {
        assert!(
            Instant::now() < deadline,
            "the broker confirmed {acked} messages"
        );
        match conn.recv_timeout(Duration::from_secs(1)) {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
            Ok(Err(_)) => std::thread::sleep(Duration::from_millis(50)),
            _ => {}
        }
    }
    let _ = client.disconnect();
    while let Ok(Ok(e)) = conn.recv_timeout(Duration::from_secs(1)) {
        if matches!(e, Event::Outgoing(Outgoing::Disconnect)) {
            break;
        }
    }
}

/// A subscriber to `filter`, ready (its SUBACK received) when returned.
fn subscriber(port: u16, filter: &str) -> (Client, rumqttc::Connection) {
    let o = MqttOptions::new(
        format!("test-sub-{}", std::process::id()),
        "127.0.0.1",
        port,
    );
    let (client, mut conn) = Client::new(o, 10);
    client.subscribe(filter, QoS::AtLeastOnce).unwrap();
    loop {
        match conn.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => return (client, conn),
            Ok(Ok(_)) => {}
            other => panic!("subscribing: {other:?}"),
        }
    }
}

/// Starts `weir run PIPELINE` in `dir` with standard error in a file; returns it and the file.
fn spawn_run(dir: &Path, pipeline: &str, extra: &[&str]) -> (Child, PathBuf) {
    let err = dir.join(format!("{pipeline}.stderr"));
    let child = Command::new(assert_cmd::cargo::cargo_bin("weir"))
        .current_dir(dir)
        .args(["run", pipeline, "--status-every", "0s"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    (child, err)
}

/// Waits until `cond` holds (two minutes at most: a safety net, never the expected path).
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !cond() {
        assert!(Instant::now() < deadline, "waited two minutes for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn text(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn wait_exit(mut c: Child, err: &Path) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(s) = c.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = c.kill();
            panic!("weir did not finish: {}", text(err));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Telemetry from devices: the device id comes from the topic level, payloads decode like JSON
/// lines, a malformed payload and one that is not UTF-8 are dead-lettered with their topic and
/// reason, and the run ends after `max_messages`. QoS 0 and 1, one and two workers.
#[test]
fn device_telemetry_is_read_with_fields_from_the_topic() {
    for (qos, workers) in [("1", "1"), ("0", "2")] {
        let dir = workspace();
        let broker = Mosquitto::start(dir.path(), free_ports(1)[0]);
        let p = write(
            dir.path(),
            "telemetry.toml",
            &format!(
                r#"[sources.devices]
type = "mqtt"
broker = "127.0.0.1:{}"
topics = ["devices/{{device_id}}/telemetry"]
qos = {qos}
max_messages = 22
schema = {{ id = "u64", ts = "timestamp", temperature = "f64" }}

[sinks.out]
type = "file"
inputs = ["devices"]
path = "out/telemetry.jsonl"
"#,
                broker.port
            ),
        );
        let (child, err) = spawn_run(dir.path(), &p, &["--workers", workers]);
        wait_for("the subscription", || {
            text(&err).contains("subscribed to devices/+/telemetry")
        });
        let mut messages = Vec::new();
        let mut want = Vec::new();
        for i in 1..=20u64 {
            let device = format!("d{}", i % 3);
            let t = 20.0 + i as f64 / 4.0;
            let ts = format!("2026-03-01T10:00:{i:02}Z");
            messages.push((
                format!("devices/{device}/telemetry"),
                format!(r#"{{"id":{i},"ts":"{ts}","temperature":{t}}}"#).into_bytes(),
            ));
            want.push(format!(
                r#"{{"id":{i},"ts":"2026-03-01T10:00:{i:02}.000Z","temperature":{t:?},"device_id":"{device}"}}"#
            ));
        }
        messages.insert(
            5,
            (
                "devices/d9/telemetry".into(),
                b"{\"id\": 99, \"ts\": ".to_vec(),
            ),
        );
        messages.insert(
            9,
            ("devices/d8/telemetry".into(), b"{\"id\": \xff}".to_vec()),
        );
        publish(broker.port, &messages);
        let status = wait_exit(child, &err);
        let stderr = text(&err);
        assert!(status.success(), "{stderr}");
        let got = text(&dir.path().join("out/telemetry.jsonl"));
        assert_eq!(
            json_multiset(&got),
            json_multiset(&want.join("\n")),
            "{stderr}"
        );
        let dead = json_lines(&dir.path().join("telemetry.deadletter.jsonl"));
        let places: Vec<(String, u64)> = dead
            .iter()
            .map(|d| {
                (
                    d["file"].as_str().unwrap().to_string(),
                    d["line"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            places,
            vec![
                ("devices/d9/telemetry".to_string(), 6),
                ("devices/d8/telemetry".to_string(), 10)
            ],
            "qos {qos}"
        );
        assert!(dead[0]["reason"]
            .as_str()
            .unwrap()
            .contains("malformed JSON"));
        assert!(dead[1]["reason"].as_str().unwrap().contains("not UTF-8"));
    }
}

/// Alerts go back to devices: each record is one message on the topic its fields name,
/// confirmed by the broker before the run ends.
#[test]
fn the_sink_publishes_each_record_to_the_topic_its_fields_name() {
    let dir = workspace();
    let broker = Mosquitto::start(dir.path(), free_ports(1)[0]);
    let (_client, mut conn) = subscriber(broker.port, "devices/+/alerts");
    let input: String = (1..=30)
        .map(|i| {
            format!(
                "{{\"id\":{i},\"ts\":{i}000,\"device\":\"d{}\",\"t\":{i}}}\n",
                i % 4
            )
        })
        .collect();
    write(dir.path(), "in.jsonl", &input);
    let p = write(
        dir.path(),
        "alerts.toml",
        &format!(
            r#"[sources.f]
type = "file"
path = "in.jsonl"
format = "jsonl"
timestamp_format = "epoch_ms"
schema = {{ id = "u64", ts = "timestamp", device = "string", t = "i64" }}

[transforms.hot]
type = "filter"
inputs = ["f"]
condition = "t % 3 = 0"

[sinks.back]
type = "mqtt"
inputs = ["hot"]
broker = "127.0.0.1:{}"
topic = "devices/{{device}}/alerts"
"#,
            broker.port
        ),
    );
    run_ok(dir.path(), &p, &["--workers", "2"]);
    let want: BTreeSet<(String, u64)> = (1..=30u64)
        .filter(|i| i % 3 == 0)
        .map(|i| (format!("devices/d{}/alerts", i % 4), i))
        .collect();
    let mut got = BTreeSet::new();
    while got.len() < want.len() {
        match conn.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                let v: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
                got.insert((p.topic.clone(), v["id"].as_u64().unwrap()));
            }
            Ok(Ok(_)) => {}
            other => panic!("receiving: {other:?}, got {got:?}"),
        }
    }
    assert_eq!(got, want);
}

/// A broker restart is survived: with a persistent session, what is published while Weir is
/// reconnecting is queued by the broker and read once it is back, at least once each.
#[test]
fn a_broker_restart_is_survived_with_a_persistent_session() {
    let dir = workspace();
    let mut broker = Mosquitto::start(dir.path(), free_ports(1)[0]);
    let p = write(
        dir.path(),
        "persistent.toml",
        &format!(
            r#"[sources.devices]
type = "mqtt"
broker = "127.0.0.1:{}"
topics = ["devices/{{device_id}}/telemetry"]
clean_session = false
client_id = "weir-restart-test"
schema = {{ id = "u64", ts = "timestamp", temperature = "f64" }}

[sinks.out]
type = "file"
inputs = ["devices"]
path = "out/telemetry.jsonl"
"#,
            broker.port
        ),
    );
    let message = |i: u64| {
        (
            format!("devices/d{}/telemetry", i % 5),
            format!(r#"{{"id":{i},"ts":"2026-03-01T10:00:00Z","temperature":{i}}}"#).into_bytes(),
        )
    };
    let out = dir.path().join("out/telemetry.jsonl");
    let ids = || -> BTreeSet<u64> {
        text(&out)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|v| v["id"].as_u64().unwrap())
            .collect()
    };
    let (child, err) = spawn_run(dir.path(), &p, &[]);
    wait_for("the subscription", || text(&err).contains("subscribed to"));
    publish(broker.port, &(1..=50).map(message).collect::<Vec<_>>());
    wait_for("the first half", || ids().len() == 50);
    broker.restart();
    // Published before Weir is back: the broker queues them for its session.
    publish(broker.port, &(51..=100).map(message).collect::<Vec<_>>());
    wait_for("the second half", || ids().len() == 100);
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let status = wait_exit(child, &err);
    let stderr = text(&err);
    assert_eq!(status.code(), Some(130), "stopped by Ctrl-C: {stderr}");
    assert!(stderr.contains("stopped after"), "{stderr}");
    assert!(stderr.contains("lost the MQTT broker"), "{stderr}");
    assert!(
        stderr.contains("reconnected to the MQTT broker at 127.0.0.1:"),
        "{stderr}"
    );
    assert!(stderr.contains("which kept its session"), "{stderr}");
    assert_eq!(ids(), (1..=100).collect::<BTreeSet<u64>>());
}

/// Configuration mistakes are caught before the run, at their place in the file.
#[test]
fn mqtt_mistakes_are_named_at_their_place() {
    let dir = workspace();
    // `weir validate NAME` fails, saying each of `wants`.
    let fails_with = |name: &str, text: &str, wants: &[&str]| {
        let p = write(dir.path(), name, text);
        let err = weir_fails(dir.path(), &["validate", &p]);
        for want in wants {
            assert!(err.contains(want), "missing {want:?} in:\n{err}");
        }
    };
    fails_with(
        "bad.toml",
        r#"[sources.devices]
type = "mqtt"
topics = ["devices/{device_id}/x/#/y"]
qos = 2
clean_session = false
schema = { ts = "timestamp" }
"#,
        &[
            "bad.toml:3:",
            "`#` may only be the last level",
            "bad.toml:4:",
            "`qos` is 2, not 0 or 1",
            "bad.toml:5:",
            "needs a `client_id`",
        ],
    );
    fails_with(
        "bad2.toml",
        r#"[sources.devices]
type = "mqtt"
topics = ["devices/{device_id}/telemetry"]
schema = { ts = "timestamp", device_id = "i64" }

[sinks.back]
type = "mqtt"
inputs = ["devices"]
topic = "alerts/{nothing}"
"#,
        &[
            "bad2.toml:4:",
            "`device_id` comes from a topic level, so it is a string",
        ],
    );
    fails_with(
        "bad3.toml",
        r#"[sources.devices]
type = "mqtt"
topics = ["devices/{device_id}/telemetry"]
schema = { ts = "timestamp" }

[sinks.back]
type = "mqtt"
inputs = ["devices"]
topic = "alerts/{nothing}"
"#,
        &["bad3.toml:9:", "`{nothing}`, which is not an input field"],
    );
    fails_with(
        "bad4.toml",
        r#"[sources.devices]
type = "mqtt"
broker = "localhost"
topics = ["devices/+/telemetry"]
schema = { ts = "timestamp" }
"#,
        &["bad4.toml:3:", "`localhost` is not a broker address"],
    );
}

/// A source that cannot reach its broker fails the run, saying where it tried.
#[test]
fn an_unreachable_broker_fails_the_run_with_its_address() {
    let dir = workspace();
    let port = free_ports(1)[0];
    let p = write(
        dir.path(),
        "nobroker.toml",
        &format!(
            r#"[sources.devices]
type = "mqtt"
broker = "127.0.0.1:{port}"
topics = ["devices/+/telemetry"]
schema = {{ ts = "timestamp" }}
[sinks.out]
type = "null"
inputs = ["devices"]
"#
        ),
    );
    let err = weir_fails(dir.path(), &["run", &p]);
    assert!(
        err.contains(&format!(
            "cannot connect to the MQTT broker at 127.0.0.1:{port}"
        )),
        "{err}"
    );
}

/// Thousands of QoS 1 messages as fast as `weir produce` publishes them: every one is read
/// (acknowledgements never wait on the client's request channel, which only the reading
/// thread drains — blocking there once stalled the source after about a hundred messages).
#[test]
fn thousands_of_qos1_messages_flow_without_stalling() {
    let dir = workspace();
    let broker = Mosquitto::start(dir.path(), free_ports(1)[0]);
    let p = write(
        dir.path(),
        "many.toml",
        &format!(
            r#"[sources.devices]
type = "mqtt"
broker = "127.0.0.1:{}"
topics = ["devices/{{device_id}}/telemetry"]
max_messages = 6000
schema = {{ id = "u64", ts = "timestamp", kind = "string" }}

[sinks.out]
type = "file"
inputs = ["devices"]
path = "out/many.jsonl"
"#,
            broker.port
        ),
    );
    let (child, err) = spawn_run(dir.path(), &p, &[]);
    wait_for("the subscription", || text(&err).contains("subscribed to"));
    let address = format!("127.0.0.1:{}", broker.port);
    let produced = weir(
        dir.path(),
        &[
            "produce", "--mqtt", &address, "--events", "6000", "--qos", "1",
        ],
        "",
    );
    ok(&produced);
    let status = wait_exit(child, &err);
    assert!(status.success(), "{}", text(&err));
    let ids: BTreeSet<u64> = json_lines(&dir.path().join("out/many.jsonl"))
        .iter()
        .map(|v| v["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, (0..6000).collect::<BTreeSet<u64>>());
}
