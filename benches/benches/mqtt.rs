//! MQTT end-to-end latency: devices publish readings at `WEIR_BENCH_RATE` (default 10,000)
//! messages/s for `WEIR_BENCH_SECONDS` (default 10) to a Mosquitto broker this benchmark starts
//! on a free port (Debian's `mosquitto`), QoS 1, one message per event, each stamped with the
//! time it was due; latency runs from that time to the sink's write (publish -> broker -> Weir
//! -> sink), through:
//! - Weir: an `mqtt` source (`latency_from = "event_time"`, the device from the topic level), a
//!   filter on readings, a file sink; on one worker;
//! - a hand-written client: rumqttc directly, each payload parsed by serde into a typed struct
//!   and filtered, latency taken when it is parsed (no dataflow, no sink: the floor any
//!   consumer of this broker pays).
//!
//! `cargo bench -p weir-benches --bench mqtt`; `WEIR_BENCH_REPS` (default 3) runs of each,
//! percentiles are the medians over the runs.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use weir_benches::{env_or, machine, median};
use weir_engine::summary::{micros, PERCENTILES};
use weir_operators::generator::{GeneratorSpec, Profile};

/// The allocator the `weir` binary uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const FILTER: &str = "devices/+/telemetry";

struct Broker(Child, u16, std::path::PathBuf);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.2);
    }
}

fn broker() -> Broker {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("weir-bench-mqtt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("m.conf");
    // Up to 1,000 QoS 1 messages in flight per client (Mosquitto's default is 20).
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 1000\nmax_queued_messages 1000000\n"),
    )
    .unwrap();
    let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .find(|b| std::path::Path::new(b).exists())
        .unwrap_or("mosquitto");
    let child = Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("this benchmark needs Mosquitto (apt-get install mosquitto)");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "Mosquitto did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Broker(child, port, dir)
}

/// Publishes `events` IoT events at `rate`/s, after `delay`.
fn producer(port: u16, rate: u64, events: u64, delay: Duration) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        let p = weir_engine::produce::Produce {
            spec: GeneratorSpec {
                events: Some(events),
                rate: Some(rate as f64),
                seed: 7,
                devices: 1000,
                ..GeneratorSpec::new(Profile::Iot)
            },
            to: weir_engine::produce::Destination::Mqtt {
                broker: weir_operators::mqtt::Broker::at(
                    &format!("127.0.0.1:{port}"),
                    format!("bench-producer-{}", std::process::id()),
                )
                .expect("an address"),
                topic: "devices/{device_id}/telemetry".into(),
                qos: 1,
            },
        };
        weir_engine::produce::produce(&p).unwrap();
    })
}

/// Makes the persistent session `client` subscribed to the readings, so nothing published
/// before its consumer connects is lost.
fn session(port: u16, client: &str) {
    let mut o = MqttOptions::new(client, "127.0.0.1", port);
    o.set_clean_session(false);
    let (c, mut conn) = Client::new(o, 10);
    c.subscribe(FILTER, QoS::AtLeastOnce).unwrap();
    for e in conn.iter() {
        if let Ok(Event::Incoming(Packet::SubAck(_))) = e {
            break;
        }
    }
    let _ = c.disconnect();
    for e in conn.iter() {
        if e.is_err() || matches!(e, Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect))) {
            break;
        }
    }
}

fn weir_run(port: u16, rate: u64, events: u64, k: usize) -> hdrhistogram::Histogram<u64> {
    let client = format!("weir-bench-{}-{k}", std::process::id());
    session(port, &client);
    let out = std::env::temp_dir().join(format!("weir-bench-mqtt-{}.jsonl", std::process::id()));
    let text = format!(
        r#"
[sources.devices]
type = "mqtt"
broker = "127.0.0.1:{port}"
topics = ["devices/{{device_id}}/telemetry"]
clean_session = false
client_id = "{client}"
max_messages = {events}
latency_from = "event_time"
schema = {{ id = "u64", ts = "timestamp", kind = "string", temperature = "f64" }}

[transforms.readings]
type = "filter"
inputs = ["devices"]
condition = "kind = 'reading'"

[sinks.out]
type = "file"
inputs = ["readings"]
path = "{}"
"#,
        out.display()
    );
    let (plan, diags, _) = weir_engine::plan::load("bench.toml", &text, &[]);
    assert!(diags.is_empty(), "{diags:?}");
    let opts = weir_engine::run::RunOptions {
        workers: Some(1),
        warmup: Duration::from_secs(1),
        ..Default::default()
    };
    let p = producer(port, rate, events, Duration::from_millis(500));
    let r = weir_engine::run::run(&plan.unwrap(), &opts, Default::default()).unwrap();
    p.join().unwrap();
    let _ = std::fs::remove_file(&out);
    r.sinks
        .iter()
        .find(|s| s.id == "out")
        .unwrap()
        .latency
        .processing
        .clone()
}

/// The hand-written consumer's reading, typed.
#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct Reading {
    id: u64,
    ts: String,
    kind: String,
    temperature: Option<f64>,
}

fn hand_run(port: u16, rate: u64, events: u64, k: usize) -> hdrhistogram::Histogram<u64> {
    let client = format!("hand-bench-{}-{k}", std::process::id());
    session(port, &client);
    let mut o = MqttOptions::new(&client, "127.0.0.1", port);
    o.set_clean_session(false).set_inflight(1000);
    let (_c, mut conn) = Client::new(o, 1000);
    let p = producer(port, rate, events, Duration::from_millis(500));
    let mut h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    let start = Instant::now();
    let mut n = 0;
    for e in conn.iter() {
        if let Ok(Event::Incoming(Packet::Publish(m))) = e {
            n += 1;
            let r: Reading = serde_json::from_slice(&m.payload).unwrap();
            if r.kind == "reading" && start.elapsed() > Duration::from_secs(1) {
                let ts = chrono::DateTime::parse_from_rfc3339(&r.ts)
                    .unwrap()
                    .timestamp_micros();
                let now = chrono::Utc::now().timestamp_micros();
                h.record((now - ts).max(0) as u64).unwrap();
            }
            if n == events {
                break;
            }
        }
    }
    p.join().unwrap();
    h
}

fn main() {
    let rate = env_or("WEIR_BENCH_RATE", 10_000);
    let seconds = env_or("WEIR_BENCH_SECONDS", 10);
    let reps = env_or("WEIR_BENCH_REPS", 3) as usize;
    let events = rate * seconds;
    let b = broker();
    println!(
        "MQTT end to end at {rate} messages/s for {seconds} s, QoS 1, Mosquitto on 127.0.0.1; medians of {reps} runs"
    );
    println!("machine: {}", machine());
    let mut rows: Vec<(&str, Vec<Vec<f64>>)> = vec![
        ("Weir: mqtt -> filter -> file", vec![]),
        ("hand-written rumqttc client", vec![]),
    ];
    for k in 0..reps {
        for (i, row) in rows.iter_mut().enumerate() {
            let h = match i {
                0 => weir_run(b.1, rate, events, k),
                _ => hand_run(b.1, rate, events, k),
            };
            let mut v: Vec<f64> = PERCENTILES
                .iter()
                .map(|(_, p)| h.value_at_percentile(*p) as f64)
                .collect();
            v.push(h.max() as f64);
            row.1.push(v);
        }
    }
    print!("  {:<32}", "consumer");
    for (name, _) in PERCENTILES {
        print!(" {name:>9}");
    }
    println!(" {:>9}", "max");
    let mut meds = Vec::new();
    for (name, runs) in &rows {
        print!("  {name:<32}");
        let m: Vec<f64> = (0..runs[0].len())
            .map(|j| median(runs.iter().map(|r| r[j]).collect()))
            .collect();
        for v in &m {
            print!(" {:>9}", micros(*v as u64));
        }
        println!();
        meds.push(m);
    }
    print!("  {:<32}", "Weir / hand-written");
    for (w, h) in meds[0].iter().zip(&meds[1]) {
        print!(" {:>9.2}", w / h.max(1.0));
    }
    println!();
}
