//! The lambda architecture's parts: the `parquet` sink (the archive: event-time partitions,
//! files committed atomically), the `parquet` source (the batch layer, with partition pruning)
//! and the serving view the batch layer's results replace the live ones in. Results are checked
//! against a reference computed here from the archive's files, read with the parquet crate.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, TimestampMicrosecondType, UInt64Type};
use common::*;

/// Every visible Parquet file under `dir` (hidden and `_` names skipped), sorted.
fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = walk(dir)
        .into_iter()
        .filter(|f| {
            let name = f.file_name().unwrap().to_string_lossy();
            !name.starts_with('.') && name.ends_with(".parquet")
        })
        .collect();
    out.sort();
    out
}

/// A generator event as archived: (id, ts micros, kind, device, temperature).
type Event = (u64, i64, String, String, Option<f64>);

/// Reads the archive's events with the parquet crate, checking each file sits in the partition
/// of its events' times.
fn archived(dir: &Path) -> Vec<Event> {
    let mut events = Vec::new();
    for f in parquet_files(dir) {
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(&f).unwrap(),
        )
        .unwrap()
        .build()
        .unwrap();
        for batch in reader {
            let b = batch.unwrap();
            let col = |n: &str| b.column(b.schema().index_of(n).unwrap()).clone();
            let (id, ts, kind, dev, t) = (
                col("id"),
                col("ts"),
                col("kind"),
                col("device_id"),
                col("temperature"),
            );
            for r in 0..b.num_rows() {
                let ts = ts.as_primitive::<TimestampMicrosecondType>().value(r);
                let hour = chrono::DateTime::from_timestamp_micros(ts)
                    .unwrap()
                    .format("dt=%Y-%m-%d/hour=%H")
                    .to_string();
                assert!(
                    f.display().to_string().contains(&hour),
                    "{} holds an event of {hour}",
                    f.display()
                );
                let t = t.as_primitive::<Float64Type>();
                events.push((
                    id.as_primitive::<UInt64Type>().value(r),
                    ts,
                    kind.as_string::<i32>().value(r).to_string(),
                    dev.as_string::<i32>().value(r).to_string(),
                    (!t.is_null(r)).then(|| t.value(r)),
                ));
            }
        }
    }
    events
}

/// The per-device report by brute force: (device, minute start) -> (readings, avg, max).
fn report(events: &[Event], from: i64) -> BTreeMap<(String, i64), (i64, f64, f64)> {
    let mut groups: BTreeMap<(String, i64), Vec<f64>> = BTreeMap::new();
    for (_, ts, kind, dev, t) in events {
        if kind == "reading" && *ts >= from {
            let start = ts.div_euclid(60_000_000) * 60_000_000;
            groups
                .entry((dev.clone(), start))
                .or_default()
                .push(t.expect("readings have a temperature"));
        }
    }
    groups
        .into_iter()
        .map(|(k, ts)| {
            let avg = ts.iter().sum::<f64>() / ts.len() as f64;
            let max = ts.iter().cloned().fold(f64::MIN, f64::max);
            (k, (ts.len() as i64, avg, max))
        })
        .collect()
}

/// The serving view's rows, keyed as the reference is.
fn view(db: &Path) -> BTreeMap<(String, i64), (i64, f64, f64)> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut s = c
        .prepare("SELECT device_id, window_start, readings, avg_temp, max_temp FROM report")
        .unwrap();
    s.query_map([], |r| {
        let start: String = r.get(1)?;
        let start = weir_operators::time::parse_rfc3339(&start).unwrap();
        Ok(((r.get(0)?, start), (r.get(2)?, r.get(3)?, r.get(4)?)))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

fn assert_report_eq(
    got: &BTreeMap<(String, i64), (i64, f64, f64)>,
    want: &BTreeMap<(String, i64), (i64, f64, f64)>,
    what: &str,
) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{what}: the (device, minute) keys"
    );
    for (k, (n, avg, max)) in want {
        let (gn, gavg, gmax) = got[k];
        assert_eq!(gn, *n, "{what} {k:?}");
        assert!(
            (gavg - avg).abs() <= 1e-9 * avg.abs(),
            "{what} {k:?}: {gavg} vs {avg}"
        );
        assert_eq!(gmax, *max, "{what} {k:?}");
    }
}

const TEN: i64 = 1_772_359_200_000_000; // 2026-03-01T10:00:00Z

/// The bundled lambda example end to end: the live run archives every event (each in its hour's
/// partition) and fills the view; the batch run over the archive, on other workers and in the
/// other mode, gives the same view; a batch over a range recomputes only that range.
#[test]
fn the_batch_layer_over_the_archive_gives_the_live_view() {
    let dir = workspace();
    let live = run_ok(
        dir.path(),
        "pipelines/lambda-1-live.toml",
        &["--workers", "1"],
    );
    assert!(live.contains("sinks.archive"), "{live}");
    // The archive's latency is measured, to each record's hand-over to its file.
    let latency = live
        .lines()
        .find(|l| l.trim_start().starts_with("sinks.archive processing"))
        .unwrap_or_else(|| panic!("no archive latency line in {live}"));
    assert_eq!(
        latency.split_whitespace().nth(2),
        Some("200,000"),
        "{latency}"
    );
    let archive = dir.path().join("out/lambda/archive");
    let events = archived(&archive);
    let ids: BTreeSet<u64> = events.iter().map(|e| e.0).collect();
    assert_eq!(events.len(), 200_000, "every event archived once");
    assert_eq!(ids.len(), 200_000, "no event archived twice");
    let hours: BTreeSet<String> = parquet_files(&archive)
        .iter()
        .map(|f| {
            f.parent()
                .unwrap()
                .strip_prefix(&archive)
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    assert_eq!(
        hours.into_iter().collect::<Vec<_>>(),
        vec!["dt=2026-03-01/hour=09", "dt=2026-03-01/hour=10"]
    );
    let want = report(&events, i64::MIN);
    let db = dir.path().join("out/lambda/views.db");
    let live_view = view(&db);
    assert_report_eq(&live_view, &want, "live view");

    // The batch layer, into a fresh view, on three workers in micro-batch mode.
    std::fs::remove_file(&db).unwrap();
    run_ok(
        dir.path(),
        "pipelines/lambda-2-batch.toml",
        &[
            "--workers",
            "3",
            "--mode",
            "micro-batch",
            "--batch-interval",
            "20ms",
        ],
    );
    assert_report_eq(&view(&db), &want, "batch view");
    assert_eq!(
        view(&db),
        live_view,
        "the batch view is the live view, bit for bit"
    );

    // A batch over 10:00 onwards reads only those events, and the view holds its rows.
    std::fs::remove_file(&db).unwrap();
    let out = run_ok(
        dir.path(),
        "pipelines/lambda-2-batch.toml",
        &["--set", "sources.sensors.from=\"2026-03-01T10:00:00Z\""],
    );
    let after_ten = events.iter().filter(|e| e.1 >= TEN).count();
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("sources.sensors"))
        .unwrap();
    assert_eq!(
        line.split_whitespace().nth(3).unwrap(),
        commas(after_ten),
        "{out}"
    );
    assert_report_eq(&view(&db), &report(&events, TEN), "10:00 onwards");
}

/// Partitions outside the range are never opened: a file there that is not Parquet at all is
/// no trouble for a batch from 10:00, and the run that does read it fails naming it.
#[test]
fn partitions_outside_the_range_are_not_opened() {
    let dir = workspace();
    run_ok(
        dir.path(),
        "pipelines/lambda-1-live.toml",
        &["--set", "sources.sensors.events=20000"],
    );
    let bad = dir.path().join("out/lambda/archive/dt=2026-03-01/hour=08");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("part-broken.parquet"), "not parquet").unwrap();
    // 20,000 events at 10 ms from 09:30 end at 09:33: from 09:31 is hour 09 only.
    run_ok(
        dir.path(),
        "pipelines/lambda-2-batch.toml",
        &["--set", "sources.sensors.from=\"2026-03-01T09:31:00Z\""],
    );
    let err = weir_fails(
        dir.path(),
        &[
            "run",
            "pipelines/lambda-2-batch.toml",
            "--set",
            "sources.sensors.from=\"2026-03-01T08:00:00Z\"",
        ],
    );
    assert!(err.contains("part-broken.parquet"), "{err}");
}

/// Every type round-trips through Parquet: integers, floats, booleans, strings, timestamps,
/// json, lists and nested objects, NULLs included; the files' schema is read from their footer.
#[test]
fn every_type_and_null_round_trips_through_parquet() {
    let dir = workspace();
    let input = [
        r#"{"id":1,"ts":"2026-03-01T10:00:00Z","n":-5,"u":18446744073709551615,"x":1.5,"ok":true,"s":"a\"b","j":{"k":[1,{"z":null}]},"tags":["x","y"],"nums":[1,null,3],"user":{"id":7,"name":"ana"}}"#,
        r#"{"id":2,"ts":"2026-03-01T11:30:00.123456Z","n":null,"u":null,"x":null,"ok":null,"s":null,"j":null,"tags":null,"nums":[],"user":{"id":null}}"#,
        r#"{"id":3,"ts":"2026-03-02T00:00:00Z","n":0,"u":0,"x":-0.25,"ok":false,"s":"","j":"text","tags":[],"nums":[2],"user":null}"#,
    ]
    .join("\n");
    write(dir.path(), "in.jsonl", &input);
    let schema = r#"{ id = "u64", ts = "timestamp", n = "i64", u = "u64", x = "f64", ok = "bool", s = "string", j = "json", tags = "list<string>", nums = "list<i64>", user = { id = "u64", name = "string" } }"#;
    let write_p = write(
        dir.path(),
        "w.toml",
        &format!(
            r#"[sources.f]
type = "file"
path = "in.jsonl"
format = "jsonl"
schema = {schema}
[sinks.direct]
type = "file"
inputs = ["f"]
path = "out/direct.jsonl"
[sinks.archive]
type = "parquet"
inputs = ["f"]
path = "out/archive"
partition = "day"
"#
        ),
    );
    run_ok(dir.path(), &write_p, &[]);
    let days: Vec<String> = parquet_files(&dir.path().join("out/archive"))
        .iter()
        .map(|f| {
            f.parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(days, vec!["dt=2026-03-01", "dt=2026-03-02"]);
    for (name, decl) in [
        ("footer", String::new()),
        ("declared", format!("schema = {schema}")),
    ] {
        let read_p = write(
            dir.path(),
            "r.toml",
            &format!(
                r#"[sources.p]
type = "parquet"
path = "out/archive"
{decl}
[sinks.back]
type = "file"
inputs = ["p"]
path = "out/back.jsonl"
"#
            ),
        );
        run_ok(dir.path(), &read_p, &["--workers", "2"]);
        let direct = std::fs::read_to_string(dir.path().join("out/direct.jsonl")).unwrap();
        let back = std::fs::read_to_string(dir.path().join("out/back.jsonl")).unwrap();
        assert_eq!(json_multiset(&back), json_multiset(&direct), "{name}");
        assert_eq!(direct.lines().count(), 3);
    }
}

/// A run killed while writing leaves its unfinished files hidden: the source reads exactly the
/// completed files' records, whole, with no error.
#[test]
fn a_killed_run_leaves_no_partial_file_visible() {
    let dir = workspace();
    let p = write(
        dir.path(),
        "slow.toml",
        r#"[sources.g]
type = "generator"
profile = "iot"
events = 100_000_000
rate = 20_000.0
start = "2026-03-01T10:00:00Z"
event_time_interval = "1ms"
[sinks.archive]
type = "parquet"
inputs = ["g"]
path = "out/archive"
roll_bytes = 20_000
"#,
    );
    let child = spawn_weir(dir.path(), &["run", &p, "--status-every", "0s"]);
    let archive = dir.path().join("out/archive");
    let hidden = |d: &Path| -> usize {
        walk(d)
            .iter()
            .filter(|f| {
                f.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .ends_with(".inprogress")
            })
            .count()
    };
    // Wait (on the files, not a clock) until two files are complete and another is being written.
    let mut child = child;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !(archive.exists() && parquet_files(&archive).len() >= 2 && hidden(&archive) >= 1) {
        assert!(
            std::time::Instant::now() < deadline,
            "no files were written"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(hidden(&archive) >= 1, "the file in progress stays hidden");
    let complete = parquet_files(&archive);
    let rows: usize = complete
        .iter()
        .map(|f| {
            parquet::file::reader::FileReader::metadata(
                &parquet::file::serialized_reader::SerializedFileReader::new(
                    std::fs::File::open(f).unwrap(),
                )
                .unwrap(),
            )
            .file_metadata()
            .num_rows() as usize
        })
        .sum();
    let r = write(
        dir.path(),
        "r.toml",
        r#"[sources.p]
type = "parquet"
path = "out/archive"
[sinks.back]
type = "file"
inputs = ["p"]
path = "out/back.jsonl"
"#,
    );
    let out = run_ok(dir.path(), &r, &[]);
    let back = std::fs::read_to_string(dir.path().join("out/back.jsonl")).unwrap();
    assert_eq!(back.lines().count(), rows, "{out}");
    assert!(rows > 0);
}

/// `n` as the summary writes it: 12,345.
fn commas(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Every file under `d` (none where it cannot be read: a run may be writing there).
fn walk(d: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![d.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

/// Files written by another program: 32-bit integers widen, millisecond timestamps become
/// Weir's, a record without a timestamp is dead-lettered with its file, row and values, and a
/// column declared with another type than the file's gives each record the reason the other
/// sources give.
#[test]
fn foreign_files_are_read_and_their_bad_records_dead_lettered() {
    use arrow::array::{Int32Array, RecordBatch, StringArray, TimestampMillisecondArray};
    use std::sync::Arc;
    let dir = workspace();
    std::fs::create_dir_all(dir.path().join("in")).unwrap();
    let batch = RecordBatch::try_from_iter([
        (
            "id",
            Arc::new(Int32Array::from(vec![1, 2, 3])) as arrow::array::ArrayRef,
        ),
        (
            "ts",
            Arc::new(TimestampMillisecondArray::from(vec![
                Some(1_772_359_200_000),
                None,
                Some(1_772_359_201_500),
            ])),
        ),
        ("v", Arc::new(StringArray::from(vec!["12", "x", "7"]))),
    ])
    .unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(dir.path().join("in/foreign.parquet")).unwrap(),
        batch.schema(),
        None,
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let pipeline = |schema: &str| {
        format!(
            r#"[sources.p]
type = "parquet"
path = "in"
{schema}
[sinks.out]
type = "file"
inputs = ["p"]
path = "out/read.jsonl"
"#
        )
    };
    let p = write(dir.path(), "footer.toml", &pipeline(""));
    run_ok(dir.path(), &p, &[]);
    let read = std::fs::read_to_string(dir.path().join("out/read.jsonl")).unwrap();
    assert_eq!(
        json_multiset(&read),
        json_multiset(
            "{\"id\":1,\"ts\":\"2026-03-01T10:00:00.000Z\",\"v\":\"12\"}\n{\"id\":3,\"ts\":\"2026-03-01T10:00:01.500Z\",\"v\":\"7\"}"
        )
    );
    let dead = json_lines(&dir.path().join("footer.deadletter.jsonl"));
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["file"], "foreign.parquet");
    assert_eq!(dead[0]["line"], 2);
    assert_eq!(dead[0]["reason"], "missing timestamp field `ts`");
    assert_eq!(dead[0]["record"], "{\"id\":2,\"ts\":null,\"v\":\"x\"}");

    let p = write(
        dir.path(),
        "declared.toml",
        &pipeline(r#"schema = { id = "u64", ts = "timestamp", v = "i64" }"#),
    );
    // Every record is bad: the run says so and fails.
    let err = weir_fails(dir.path(), &["run", &p]);
    assert!(err.contains("field `v`: expected i64"), "{err}");
    let dead = json_lines(&dir.path().join("declared.deadletter.jsonl"));
    let reasons: Vec<&str> = dead.iter().map(|d| d["reason"].as_str().unwrap()).collect();
    assert_eq!(
        reasons,
        vec![
            "field `v`: expected i64, found string \"12\"",
            "field `v`: expected i64, found string \"x\"",
            "field `v`: expected i64, found string \"7\""
        ]
    );
}
