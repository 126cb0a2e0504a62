//! Kafka -> Weir -> Kafka: throughput and end-to-end latency, against the in-process generator
//! and a hand-written timely program doing the same work.
//!
//! **Throughput.** `WEIR_BENCH_EVENTS` (default 500,000) IoT events, keyed by device, in a topic
//! of 3 partitions; the per-device report (readings only, a 1 s tumbling average of temperature
//! per device) reads them to their end and writes its results to another topic, on 2 workers:
//! - Weir, with a `kafka` source (bounded) and a `kafka` sink;
//! - Weir, with the same events from the in-process generator and the same `kafka` sink;
//! - a hand-written timely program: per worker an rdkafka consumer of its partitions, JSON
//!   parsed into a struct with serde, the filter as a closure, an exchange by device, a
//!   `HashMap` per window closed by the frontier (each worker's capability follows the event
//!   time of its partitions), and an rdkafka producer writing JSON results, waiting for the
//!   brokers' confirmation after each activation that closed windows. It uses rdkafka directly,
//!   with its own settings, and no Weir code (Weir's helpers only create the topics and fill
//!   the input topic, outside the timed part).
//!
//! **Latency.** Events at `WEIR_BENCH_RATE` (default 20,000/s) for `WEIR_BENCH_SECONDS`
//! (default 10) through a filter to a `kafka` sink: from a producer thread through the topic
//! (latency from each event's scheduled time, when it was made, to the sink's confirmed write:
//! end to end), and from the in-process generator on the same schedule.
//!
//! The broker is `WEIR_KAFKA_BROKERS` if set; otherwise the benchmark starts nisshi from
//! target/nisshi-release (a release build) or target/nisshi (the tests' debug build, which is
//! then the bottleneck), on a free port, and stops it.
//!
//! `cargo bench -p weir-benches --bench kafka`; `WEIR_BENCH_REPS` (default 3).

use std::collections::HashMap;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::operators::generic::Operator;
use weir_benches::{closed_panes, env_or, machine, median, run_weir, sink_records, START};
use weir_engine::summary::{micros, PERCENTILES};
use weir_operators::encode::{Encoder, Format};
use weir_operators::generator::{GeneratorSpec, Profile, RunClock};
use weir_operators::kafka::{client_config, create_topic, Messages};

/// The allocator the `weir` binary uses, for every side of the comparison.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Microseconds between events' times in the throughput topic.
const INTERVAL: i64 = 10;
const WORKERS: usize = 2;

struct Broker {
    address: String,
    child: Option<Child>,
    _dir: Option<tempdir::Dir>,
}

mod tempdir {
    /// A directory removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn broker() -> (Broker, &'static str) {
    if let Ok(address) = std::env::var("WEIR_KAFKA_BROKERS") {
        return (
            Broker {
                address,
                child: None,
                _dir: None,
            },
            "given by WEIR_KAFKA_BROKERS",
        );
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let (bin, kind) = [
        (
            "target/nisshi-release/bin/nisshi",
            "nisshi 0.8.1, release build",
        ),
        ("target/nisshi/bin/nisshi", "nisshi 0.8.1, debug build"),
    ]
    .into_iter()
    .map(|(b, k)| (root.join(b), k))
    .find(|(b, _)| b.exists())
    .expect("no broker: set WEIR_KAFKA_BROKERS, or run scripts/test once (it builds nisshi)");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("weir-bench-broker-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("tcp://127.0.0.1:{port}");
    let child = Command::new(bin)
        .current_dir(&dir)
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
            "--group-initial-rebalance-delay",
            "0s",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let address = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(&address).is_err() {
        assert!(Instant::now() < deadline, "the broker did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (
        Broker {
            address,
            child: Some(child),
            _dir: Some(tempdir::Dir(dir)),
        },
        kind,
    )
}

fn topic(brokers: &str, name: &str, partitions: i32) -> String {
    let t = format!("{name}-{}-{}", std::process::id(), RunClock::now().wall);
    create_topic(&client_config(brokers, &[]), &t, partitions).unwrap();
    t
}

fn spec(events: Option<u64>) -> GeneratorSpec {
    GeneratorSpec {
        events,
        seed: 7,
        devices: 1000,
        ..GeneratorSpec::new(Profile::Iot)
    }
}

/// Writes `events` IoT events to `topic`, keyed by device.
fn fill(brokers: &str, topic: &str, events: u64) {
    let spec = spec(Some(events));
    let schema = spec.profile.schema();
    let encoder = Encoder::new(Format::Jsonl, &schema);
    let device = schema.index_of("device_id").unwrap();
    let m = Messages::new(&client_config(brokers, &[]), topic).unwrap();
    let mut buf = Vec::new();
    for i in 0..events {
        let e = spec.event(i, START + i as i64 * INTERVAL);
        buf.clear();
        encoder.encode(&e, &mut buf);
        buf.pop();
        m.send(Some(e.values[device].to_string().as_bytes()), &buf, None)
            .unwrap();
    }
    m.flush().unwrap();
}

/// The benchmark's pipelines: `source`, readings only, then `middle` (a window, or nothing),
/// into a `kafka` sink reading `last`.
fn pipeline(source: &str, middle: &str, last: &str, brokers: &str, out: &str) -> String {
    format!(
        r#"
[pipeline]
name = "bench-kafka"

[sources.sensors]
{source}

[transforms.readings]
type = "filter"
inputs = ["sensors"]
condition = "kind = 'reading'"

{middle}

[sinks.out]
type = "kafka"
inputs = ["{last}"]
brokers = "{brokers}"
topic = "{out}"
key = ["device_id"]
"#
    )
}

/// The per-device report: a 1 s average of temperature per device.
fn report_pipeline(source: &str, brokers: &str, out: &str) -> String {
    let window = r#"[transforms.per_device]
type = "window"
inputs = ["readings"]
size = "1s"
group_by = ["device_id"]
aggregates = { avg_temp = "avg(temperature)" }"#;
    pipeline(source, window, "per_device", brokers, out)
}

/// Readings straight to the sink.
fn latency_pipeline(source: &str, brokers: &str, out: &str) -> String {
    pipeline(source, "", "readings", brokers, out)
}

const SCHEMA: &str = r#"schema = { id = "u64", ts = "timestamp", kind = "string", device_id = "string", temperature = "f64" }"#;

fn kafka_source(brokers: &str, topic: &str, group: &str, extra: &str) -> String {
    format!(
        "type = \"kafka\"\nbrokers = \"{brokers}\"\ntopics = [\"{topic}\"]\ngroup_id = \"{group}\"\n{SCHEMA}\n{extra}"
    )
}

#[derive(serde::Deserialize)]
struct Reading {
    ts: String,
    kind: String,
    device_id: String,
    temperature: Option<f64>,
}

/// The hand-written program's client settings: its own, not Weir's.
fn own_config(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    c
}

/// The hand-written program: returns (events/s, results written).
fn hand_written(brokers: &str, input: &str, events: u64, out: &str) -> (f64, u64) {
    let config = own_config(brokers);
    let probe: BaseConsumer = config.create().unwrap();
    let ends: Vec<(i32, i64)> = (0..3)
        .map(|p| {
            (
                p,
                probe
                    .fetch_watermarks(input, p, Duration::from_secs(10))
                    .unwrap()
                    .1,
            )
        })
        .collect();
    let (brokers, input, out) = (brokers.to_string(), input.to_string(), out.to_string());
    let start = Instant::now();
    let results = timely::execute(timely::Config::process(WORKERS), move |worker| {
        let written = std::rc::Rc::new(std::cell::Cell::new(0u64));
        let count = std::rc::Rc::clone(&written);
        let (brokers, input, out, ends) = (brokers.clone(), input.clone(), out.clone(), ends.clone());
        worker.dataflow::<u64, _, _>(move |scope| {
            let (index, peers) = (scope.index(), scope.peers());
            let producer: BaseProducer = own_config(&brokers).create().unwrap();
            let mine: Vec<(i32, i64)> = ends
                .iter()
                .copied()
                .filter(|(p, _)| *p as usize % peers == index)
                .collect();
            let readings = source::<_, timely::container::CapacityContainerBuilder<Vec<(u64, String, Option<f64>)>>, _, _>(
                scope,
                "kafka",
                move |cap, info| {
                    let activator = scope.activator_for(info.address);
                    // A group only because librdkafka's consumers need one; nothing is committed.
                    let mut config = own_config(&brokers);
                    config.set("group.id", "bench-hand-written").set("enable.auto.commit", "false");
                    let consumer: BaseConsumer = config.create().unwrap();
                    let mut tpl = TopicPartitionList::new();
                    for (p, _) in &mine {
                        tpl.add_partition_offset(&input, *p, Offset::Beginning).unwrap();
                    }
                    consumer.assign(&tpl).unwrap();
                    let mut next: HashMap<i32, i64> = mine.iter().map(|(p, _)| (*p, 0)).collect();
                    let mut latest: HashMap<i32, u64> = mine.iter().map(|(p, _)| (*p, 0)).collect();
                    let mut cap = (!mine.is_empty()).then_some(cap);
                    move |output| {
                        let Some(c) = cap.as_mut() else { return };
                        let mut session = output.session(c);
                        for _ in 0..4096 {
                            let Some(Ok(m)) = consumer.poll(Duration::ZERO) else { break };
                            let p = m.partition();
                            next.insert(p, m.offset() + 1);
                            let r: Reading = serde_json::from_slice(m.payload().unwrap()).unwrap();
                            let ts = chrono::DateTime::parse_from_rfc3339(&r.ts).unwrap().timestamp_micros() as u64;
                            latest.insert(p, ts);
                            if r.kind == "reading" {
                                session.give((ts, r.device_id, r.temperature));
                            }
                        }
                        drop(session);
                        if mine.iter().all(|(p, end)| next[p] >= *end) {
                            cap = None;
                            return;
                        }
                        let low = latest.values().copied().min().unwrap_or(0);
                        if *c.time() < low {
                            c.downgrade(&low);
                        }
                        activator.activate();
                    }
                },
            );
            // Per window end, per device: (sum, count) of temperatures.
            let mut panes: HashMap<i64, HashMap<String, (f64, u64)>> = HashMap::new();
            readings.sink(
                Exchange::new(|r: &(u64, String, Option<f64>)| {
                    use std::hash::{Hash, Hasher};
                    let mut h = std::collections::hash_map::DefaultHasher::new();
                    r.1.hash(&mut h);
                    h.finish()
                }),
                "window",
                move |(input, frontier)| {
                    input.for_each(|_, data| {
                        for (ts, device, t) in data.drain(..) {
                            let end = (ts as i64).div_euclid(1_000_000) * 1_000_000 + 1_000_000;
                            let s = panes.entry(end).or_default().entry(device).or_insert((0.0, 0));
                            if let Some(t) = t {
                                s.0 += t;
                                s.1 += 1;
                            }
                        }
                    });
                    let closed = closed_panes(&panes, |t| frontier.less_equal(&t));
                    if closed.is_empty() {
                        return;
                    }
                    let mut n = 0;
                    for end in closed {
                        for (device, (sum, count)) in panes.remove(&end).unwrap() {
                            let json = serde_json::json!({
                                "device_id": device, "window_end": end, "avg_temp": sum / count as f64,
                            });
                            let payload = json.to_string();
                            let mut record = BaseRecord::to(&out).key(device.as_bytes()).payload(&payload);
                            // A full queue waits for deliveries to make room.
                            while let Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) =
                                producer.send(record)
                            {
                                producer.poll(Duration::from_millis(1));
                                record = r;
                            }
                            n += 1;
                        }
                    }
                    producer.flush(Duration::from_secs(60)).unwrap();
                    count.set(count.get() + n);
                },
            );
        });
        while worker.step_or_park(None) {}
        written.get()
    })
    .unwrap()
    .join();
    let t = start.elapsed();
    let n = results.into_iter().map(|r| r.unwrap()).sum();
    (events as f64 / t.as_secs_f64(), n)
}

/// Runs a pipeline timed by `duration` after `warmup`; returns the sink's latency histogram.
fn timed_run(text: &str, warmup: Duration, duration: Duration) -> hdrhistogram::Histogram<u64> {
    let (plan, diags, _) = weir_engine::plan::load("bench.toml", text, &[]);
    assert!(diags.is_empty(), "{diags:?}");
    let opts = weir_engine::run::RunOptions {
        workers: Some(WORKERS),
        warmup,
        duration: Some(duration),
        ..Default::default()
    };
    let r = weir_engine::run::run(&plan.unwrap(), &opts, Default::default()).unwrap();
    r.sinks
        .iter()
        .find(|s| s.id == "out")
        .unwrap()
        .latency
        .processing
        .clone()
}

fn main() {
    let events = env_or("WEIR_BENCH_EVENTS", 500_000);
    let reps = env_or("WEIR_BENCH_REPS", 3) as usize;
    let rate = env_or("WEIR_BENCH_RATE", 20_000);
    let seconds = env_or("WEIR_BENCH_SECONDS", 10);
    let (broker, kind) = broker();
    let b = broker.address.as_str();
    println!("machine: {}; broker: {kind}", machine());
    let input = topic(b, "bench-in", 3);
    fill(b, &input, events);

    let (mut weir_kafka, mut weir_gen, mut hand) = (Vec::new(), Vec::new(), Vec::new());
    for rep in 0..reps {
        let out = topic(b, "bench-out", 3);
        let text = report_pipeline(
            &kafka_source(
                b,
                &input,
                &format!("bench-{rep}-{}", std::process::id()),
                "start = \"earliest\"\nbounded = true",
            ),
            b,
            &out,
        );
        let (r, t) = run_weir(&text, WORKERS);
        assert_eq!(r.components[0].metrics.records_in, events);
        let results = sink_records(&r, "out");
        weir_kafka.push(events as f64 / t.as_secs_f64());

        let gen = format!(
            "type = \"generator\"\nprofile = \"iot\"\nevents = {events}\ndevices = 1000\nseed = 7\nstart = \"2026-01-01T00:00:00Z\"\nevent_time_interval = \"{INTERVAL}us\""
        );
        let (r, t) = run_weir(&report_pipeline(&gen, b, &out), WORKERS);
        assert_eq!(
            sink_records(&r, "out"),
            results,
            "the generator gives the same results"
        );
        weir_gen.push(events as f64 / t.as_secs_f64());

        let (eps, n) = hand_written(b, &input, events, &out);
        assert_eq!(n, results, "the hand-written program gives as many results");
        hand.push(eps);
    }
    let (k, g, h) = (median(weir_kafka), median(weir_gen), median(hand));
    println!("\nthroughput, {events} events, 3 partitions, {WORKERS} workers (median of {reps}):");
    println!("  {:<46} {:>12}", "configuration", "events/s");
    println!("  {:<46} {:>12.0}", "Weir, kafka -> window -> kafka", k);
    println!("  {:<46} {:>12.0}", "Weir, generator -> window -> kafka", g);
    println!(
        "  {:<46} {:>12.0}",
        "hand-written timely, kafka -> window -> kafka", h
    );
    println!(
        "  Weir kafka / hand-written: {:.2}; kafka / generator: {:.2}",
        k / h,
        k / g
    );

    // End-to-end latency at a fixed rate.
    let warmup = Duration::from_secs(2);
    let duration = Duration::from_secs(seconds);
    let latency_in = topic(b, "bench-latency", 3);
    let out = topic(b, "bench-latency-out", 3);
    let producer = {
        let (b, t) = (b.to_string(), latency_in.clone());
        std::thread::spawn(move || {
            // Let the consumer start at the end of the topic first.
            std::thread::sleep(Duration::from_millis(1500));
            let p = weir_engine::produce::Produce {
                spec: GeneratorSpec {
                    rate: Some(rate as f64),
                    ..spec(Some(rate * (seconds + 3)))
                },
                to: weir_engine::produce::Destination::Kafka {
                    brokers: b,
                    topic: t,
                    partitions: 3,
                    key: Some("device_id".into()),
                    options: Vec::new(),
                },
            };
            weir_engine::produce::produce(&p).unwrap()
        })
    };
    let via_kafka = timed_run(
        &latency_pipeline(
            &kafka_source(b, &latency_in, &format!("bench-latency-{}", std::process::id()), "start = \"latest\"\nlatency_from = \"event_time\"\nlibrdkafka_options = { \"fetch.wait.max.ms\" = \"5\" }"),
            b,
            &out,
        ),
        warmup + Duration::from_millis(1500),
        duration,
    );
    let produced = producer.join().unwrap();
    let gen =
        format!("type = \"generator\"\nprofile = \"iot\"\ndevices = 1000\nseed = 7\nrate = {rate}");
    let in_process = timed_run(&latency_pipeline(&gen, b, &out), warmup, duration);
    println!(
        "\nend-to-end latency at {rate} events/s for {seconds}s, filter -> kafka sink, {WORKERS} workers (the producer fell at most {} behind):",
        micros(produced.max_behind.as_micros() as u64)
    );
    print!("  {:<36}", "source");
    for (name, _) in PERCENTILES {
        print!(" {name:>9}");
    }
    println!(" {:>9}", "max");
    for (name, h) in [
        ("kafka (from event creation)", &via_kafka),
        ("in-process generator", &in_process),
    ] {
        print!("  {name:<36}");
        for (_, p) in PERCENTILES {
            print!(" {:>9}", micros(h.value_at_percentile(p)));
        }
        println!(" {:>9}", micros(h.max()));
    }
    print!("  {:<36}", "kafka / generator");
    for (_, p) in PERCENTILES {
        print!(
            " {:>9.2}",
            via_kafka.value_at_percentile(p) as f64
                / in_process.value_at_percentile(p).max(1) as f64
        );
    }
    println!();
    drop(broker);
}
