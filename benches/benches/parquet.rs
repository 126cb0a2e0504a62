//! Parquet write and read throughput: `WEIR_BENCH_EVENTS` (default 2,000,000) IoT events (11
//! fields: id, ts, kind, device, temperature, humidity, pressure, status, battery, alarm,
//! severity; 1,000 devices, 10 µs of event time apart, so one hour partition), Snappy.
//! - write: Weir's generator into a `parquet` sink, beside the same generator into a `null`
//!   sink (the generator's own cost); and a hand-written writer: its own generator of typed
//!   structs, Arrow builders, parquet's `ArrowWriter` with the same settings, one thread.
//! - read: Weir's `parquet` source over what Weir wrote, through a filter on readings to a
//!   `null` sink; and a hand-written reader: parquet's `ParquetRecordBatchReader` over the same
//!   files, every column into a typed struct, the same filter.
//!
//! MB/s are of the Parquet files' bytes. One worker. `cargo bench -p weir-benches --bench
//! parquet`; `WEIR_BENCH_REPS` (default 3), medians.

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{
    Array, AsArray, Float64Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder, UInt64Builder,
};
use arrow::datatypes::{
    DataType, Field, Float64Type, Int64Type, Schema, TimeUnit, TimestampMicrosecondType, UInt64Type,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use weir_benches::{env_or, machine, median, run_weir, sink_records};

/// The allocator the `weir` binary uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn source(events: u64) -> String {
    format!(
        r#"[sources.sensors]
type = "generator"
profile = "iot"
events = {events}
devices = 1000
seed = 7
start = "2026-01-01T00:00:00Z"
event_time_interval = "10us"
"#
    )
}

fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else if e.file_name().to_string_lossy().ends_with(".parquet") {
                out.push(e.path());
            }
        }
    }
    out
}

fn bytes(dir: &std::path::Path) -> u64 {
    files(dir)
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum()
}

/// The hand-written writer's event.
struct Event {
    id: u64,
    ts: i64,
    kind: &'static str,
    device: String,
    temperature: Option<f64>,
    humidity: Option<f64>,
    pressure: Option<f64>,
    status: Option<&'static str>,
    battery: Option<i64>,
    alarm: Option<&'static str>,
    severity: Option<&'static str>,
}

/// Its own generator: readings (90%), status (8%) and alarms (2%) of 1,000 devices.
fn event(i: u64) -> Event {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    x ^= x >> 29;
    let r = x % 100;
    let device = format!("device-{:04}", x % 1000);
    let ts = 1_767_225_600_000_000 + 10 * i as i64;
    let f = (x >> 20) as f64 / (1u64 << 44) as f64;
    let mut e = Event {
        id: i,
        ts,
        kind: "reading",
        device,
        temperature: None,
        humidity: None,
        pressure: None,
        status: None,
        battery: None,
        alarm: None,
        severity: None,
    };
    if r < 90 {
        e.temperature = Some(15.0 + 20.0 * f);
        e.humidity = Some(30.0 + 50.0 * f);
        e.pressure = Some(990.0 + 30.0 * f);
    } else if r < 98 {
        e.kind = "status";
        e.status = Some(if r.is_multiple_of(2) {
            "online"
        } else {
            "offline"
        });
        e.battery = Some((x % 101) as i64);
    } else {
        e.kind = "alarm";
        e.alarm = Some("overheat");
        e.severity = Some("high");
    }
    e
}

fn hand_schema() -> Arc<Schema> {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::UInt64, true),
        Field::new("ts", ts, true),
        Field::new("kind", DataType::Utf8, true),
        Field::new("device_id", DataType::Utf8, true),
        Field::new("temperature", DataType::Float64, true),
        Field::new("humidity", DataType::Float64, true),
        Field::new("pressure", DataType::Float64, true),
        Field::new("status", DataType::Utf8, true),
        Field::new("battery", DataType::Int64, true),
        Field::new("alarm", DataType::Utf8, true),
        Field::new("severity", DataType::Utf8, true),
    ]))
}

fn hand_write(events: u64, path: &std::path::Path) -> u64 {
    let schema = hand_schema();
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut w = ArrowWriter::try_new(
        std::fs::File::create(path).unwrap(),
        schema.clone(),
        Some(props),
    )
    .unwrap();
    let mut i = 0;
    while i < events {
        let n = (events - i).min(4096);
        let mut id = UInt64Builder::new();
        let mut ts = TimestampMicrosecondBuilder::new().with_timezone("UTC");
        let (mut kind, mut dev, mut status, mut alarm, mut sev) = (
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
        );
        let (mut t, mut h, mut p) = (
            Float64Builder::new(),
            Float64Builder::new(),
            Float64Builder::new(),
        );
        let mut bat = Int64Builder::new();
        for k in 0..n {
            let e = event(i + k);
            id.append_value(e.id);
            ts.append_value(e.ts);
            kind.append_value(e.kind);
            dev.append_value(&e.device);
            t.append_option(e.temperature);
            h.append_option(e.humidity);
            p.append_option(e.pressure);
            status.append_option(e.status);
            bat.append_option(e.battery);
            alarm.append_option(e.alarm);
            sev.append_option(e.severity);
        }
        let b = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(id.finish()),
                Arc::new(ts.finish()),
                Arc::new(kind.finish()),
                Arc::new(dev.finish()),
                Arc::new(t.finish()),
                Arc::new(h.finish()),
                Arc::new(p.finish()),
                Arc::new(status.finish()),
                Arc::new(bat.finish()),
                Arc::new(alarm.finish()),
                Arc::new(sev.finish()),
            ],
        )
        .unwrap();
        w.write(&b).unwrap();
        i += n;
    }
    w.close().unwrap();
    std::fs::metadata(path).unwrap().len()
}

/// The hand-written reader's record.
#[allow(dead_code)]
struct Row {
    id: u64,
    ts: i64,
    kind: String,
    device: String,
    temperature: Option<f64>,
    battery: Option<i64>,
    status: Option<String>,
}

fn hand_read(paths: &[std::path::PathBuf]) -> u64 {
    let mut readings = 0;
    for path in paths {
        let r = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for b in r {
            let b = b.unwrap();
            let s = b.schema();
            let c = |n: &str| b.column(s.index_of(n).unwrap()).clone();
            let (id, ts, kind, dev, t, bat, st) = (
                c("id"),
                c("ts"),
                c("kind"),
                c("device_id"),
                c("temperature"),
                c("battery"),
                c("status"),
            );
            let (id, ts) = (
                id.as_primitive::<UInt64Type>(),
                ts.as_primitive::<TimestampMicrosecondType>(),
            );
            let (kind, dev, st) = (
                kind.as_string::<i32>(),
                dev.as_string::<i32>(),
                st.as_string::<i32>(),
            );
            let (t, bat) = (
                t.as_primitive::<Float64Type>(),
                bat.as_primitive::<Int64Type>(),
            );
            for i in 0..b.num_rows() {
                let row = Row {
                    id: id.value(i),
                    ts: ts.value(i),
                    kind: kind.value(i).to_string(),
                    device: dev.value(i).to_string(),
                    temperature: (!t.is_null(i)).then(|| t.value(i)),
                    battery: (!bat.is_null(i)).then(|| bat.value(i)),
                    status: (!st.is_null(i)).then(|| st.value(i).to_string()),
                };
                if row.kind == "reading" {
                    readings += 1;
                }
            }
        }
    }
    readings
}

fn main() {
    let events = env_or("WEIR_BENCH_EVENTS", 2_000_000);
    let reps = env_or("WEIR_BENCH_REPS", 3) as usize;
    let dir = std::env::temp_dir().join(format!("weir-bench-parquet-{}", std::process::id()));
    println!("Parquet, {events} IoT events, 1 worker, Snappy; medians of {reps} runs");
    println!("machine: {}", machine());
    let (mut w_eps, mut w_mbs, mut null_eps, mut h_eps, mut h_mbs) =
        (vec![], vec![], vec![], vec![], vec![]);
    let (mut r_eps, mut r_mbs, mut hr_eps, mut hr_mbs) = (vec![], vec![], vec![], vec![]);
    for _ in 0..reps {
        let _ = std::fs::remove_dir_all(&dir);
        let archive = dir.join("archive");
        let write = format!(
            "{}\n[sinks.out]\ntype = \"parquet\"\ninputs = [\"sensors\"]\npath = \"{}\"\n",
            source(events),
            archive.display()
        );
        let (_, t) = run_weir(&write, 1);
        let size = bytes(&archive);
        w_eps.push(events as f64 / t.as_secs_f64());
        w_mbs.push(size as f64 / 1e6 / t.as_secs_f64());
        let null = format!(
            "{}\n[sinks.out]\ntype = \"null\"\ninputs = [\"sensors\"]\n",
            source(events)
        );
        let (_, t) = run_weir(&null, 1);
        null_eps.push(events as f64 / t.as_secs_f64());

        let hand_file = dir.join("hand.parquet");
        let start = Instant::now();
        let size_h = hand_write(events, &hand_file);
        let t = start.elapsed();
        h_eps.push(events as f64 / t.as_secs_f64());
        h_mbs.push(size_h as f64 / 1e6 / t.as_secs_f64());

        let read = format!(
            "[sources.p]\ntype = \"parquet\"\npath = \"{}\"\n[transforms.r]\ntype = \"filter\"\ninputs = [\"p\"]\ncondition = \"kind = 'reading'\"\n[sinks.out]\ntype = \"null\"\ninputs = [\"r\"]\n",
            archive.display()
        );
        let (report, t) = run_weir(&read, 1);
        let readings = sink_records(&report, "out");
        r_eps.push(events as f64 / t.as_secs_f64());
        r_mbs.push(size as f64 / 1e6 / t.as_secs_f64());
        let start = Instant::now();
        let hand_readings = hand_read(&files(&archive));
        let t = start.elapsed();
        assert_eq!(
            hand_readings, readings,
            "both readers find the same readings"
        );
        hr_eps.push(events as f64 / t.as_secs_f64());
        hr_mbs.push(size as f64 / 1e6 / t.as_secs_f64());
    }
    let _ = std::fs::remove_dir_all(&dir);
    let m = |v: &Vec<f64>| median(v.clone());
    println!("  {:<46} {:>12} {:>8}", "", "events/s", "MB/s");
    println!(
        "  {:<46} {:>12.0} {:>8.1}",
        "write: Weir generator -> parquet sink",
        m(&w_eps),
        m(&w_mbs)
    );
    println!(
        "  {:<46} {:>12.0} {:>8}",
        "       Weir generator -> null sink",
        m(&null_eps),
        "-"
    );
    println!(
        "  {:<46} {:>12.0} {:>8.1}",
        "       hand-written typed -> ArrowWriter",
        m(&h_eps),
        m(&h_mbs)
    );
    println!(
        "  {:<46} {:>12.0} {:>8.1}",
        "read:  Weir parquet source -> filter -> null",
        m(&r_eps),
        m(&r_mbs)
    );
    println!(
        "  {:<46} {:>12.0} {:>8.1}",
        "       hand-written reader -> typed -> filter",
        m(&hr_eps),
        m(&hr_mbs)
    );
    println!(
        "  Weir / hand-written: write {:.2}, read {:.2} (events/s)",
        m(&w_eps) / m(&h_eps),
        m(&r_eps) / m(&hr_eps)
    );
}
