//! Checkpoints and recovery: runs crashed on purpose (aborted after a number of records read,
//! or in the middle of a checkpoint, or killed with SIGKILL) and resumed until they finish give
//! exactly the results a brute-force reference computes from the input, in both modes and on
//! one and two workers, and in a cluster of two processes; a resumed run reads from the
//! checkpoint's positions; a pipeline that no longer fits its checkpoint is refused.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{ok, stderr, weir, write};

const DEVICES: u64 = 12;
/// Checkpoint parts per worker of the file pipeline: the source, the two windows, the three
/// joins (the temporal join two: its table and its lookups), five file sinks and the
/// dead-letter file. Checkpoint n + 1 is decided only once n is
/// complete, so a fault at part `PARTS * workers + 1` or later strikes after one completed.
const PARTS: usize = 13;
/// The interval join's bounds (µs).
const PAIR_WITHIN: i64 = 60_000;
const GAP_US: i64 = 30_000;
const T0: i64 = 1_700_000_000_000_000;

/// A small deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// One input record: (id, event time, device, value).
type Event = (u64, i64, u64, i64);

/// `files` files of `per_file` records each, every file in event-time order (so nothing is
/// late), written under `dir/in/`.
fn input(dir: &Path, files: usize, per_file: usize, seed: u64) -> Vec<Event> {
    let mut rng = Rng(seed);
    let mut all = Vec::new();
    std::fs::create_dir_all(dir.join("in")).unwrap();
    for f in 0..files {
        let mut t = T0;
        let mut text = String::new();
        for i in 0..per_file {
            t += (rng.next() % 20_000) as i64;
            let id = (f * per_file + i) as u64;
            let device = rng.next() % DEVICES;
            let v = (rng.next() % 100) as i64;
            text.push_str(&format!(
                "{{\"id\":{id},\"ts\":{t},\"device\":\"d{device}\",\"v\":{v}}}\n"
            ));
            all.push((id, t, device, v));
        }
        std::fs::write(dir.join(format!("in/part-{f}.jsonl")), text).unwrap();
    }
    all
}

fn pipeline(dir: &Path, interval: &str, size: &str) -> String {
    write(
        dir,
        "ck.toml",
        &format!(
            r#"[pipeline]
name = "ck"
max_in_flight = 4096
checkpoint = {{ interval = "{interval}", dir = "state/" }}

[sources.readings]
type = "file"
path = "in"
format = "jsonl"
schema = {{ id = "u64", ts = "timestamp", device = "string", v = "i64" }}
timestamp_field = "ts"
timestamp_format = "epoch_us"
id_field = "id"

[transforms.per_device]
type = "window"
inputs = ["readings"]
size = "{size}"
group_by = ["device"]
aggregates = {{ n = "count(*)", total = "sum(v)" }}

[transforms.sessions]
type = "window"
inputs = ["readings"]
kind = "session"
gap = "30ms"
group_by = ["device"]
aggregates = {{ n = "count(*)", top = "max(v)" }}

[transforms.low]
type = "filter"
inputs = ["readings"]
condition = "v < 30"

[transforms.high]
type = "filter"
inputs = ["readings"]
condition = "v >= 70"

[transforms.pairs]
type = "join"
kind = "interval"
inputs = ["low", "high"]
on = ["device"]
join = "left"
between = ["0ms", "60ms"]
select = ["left.id AS low_id", "right.id AS high_id"]

[transforms.rare_low]
type = "filter"
inputs = ["readings"]
condition = "v < 10"

[transforms.rare_high]
type = "filter"
inputs = ["readings"]
condition = "v >= 90"

[transforms.together]
type = "join"
kind = "window"
inputs = ["rare_low", "rare_high"]
on = ["device"]
join = "full"
size = "100ms"
slide = "50ms"
select = ["left.id AS low_id", "right.id AS high_id"]

[transforms.versions]
type = "filter"
inputs = ["readings"]
condition = "v >= 50"

[transforms.as_of]
type = "join"
kind = "temporal"
inputs = ["rare_low", "versions"]
on = ["device"]
join = "left"
select = ["left.id AS low_id", "right.id AS version_id"]

[sinks.as_of_out]
type = "file"
inputs = ["as_of"]
path = "out/as-of.jsonl"

[sinks.together_out]
type = "file"
inputs = ["together"]
path = "out/together.jsonl"

[sinks.pair_out]
type = "file"
inputs = ["pairs"]
path = "out/pairs.jsonl"

[sinks.window_out]
type = "file"
inputs = ["per_device"]
path = "out/windows.jsonl"

[sinks.session_out]
type = "file"
inputs = ["sessions"]
path = "out/sessions.jsonl"
"#
        ),
    )
}

/// A result as a canonical line, its window bounds as microseconds (so the comparison does
/// not depend on how times are written).
fn canonical(mut v: serde_json::Value) -> String {
    for k in ["window_start", "window_end"] {
        if let Some(t) = v[k].as_str() {
            let us = chrono::DateTime::parse_from_rfc3339(t)
                .unwrap_or_else(|e| panic!("{t}: {e}"))
                .timestamp_micros();
            v[k] = us.into();
        }
    }
    v.to_string()
}

fn multiset(lines: impl Iterator<Item = serde_json::Value>) -> Vec<String> {
    let mut v: Vec<String> = lines.map(canonical).collect();
    v.sort();
    v
}

/// Asserts two multisets of results are equal, showing what differs.
fn same(got: &[String], want: &[String], what: &str) {
    if got == want {
        return;
    }
    let missing: Vec<&String> = want.iter().filter(|w| !got.contains(w)).take(5).collect();
    let extra: Vec<&String> = got.iter().filter(|g| !want.contains(g)).take(5).collect();
    let mut dup = got.to_vec();
    dup.dedup();
    panic!(
        "{what}: {} results, {} expected, {} repeated; missing {missing:?}; unexpected {extra:?}",
        got.len(),
        want.len(),
        got.len() - dup.len()
    );
}

/// The tumbling windows of `size_us` per device, computed from the input directly.
fn windows_reference(events: &[Event], size_us: i64) -> Vec<String> {
    let mut w: BTreeMap<(u64, i64), (u64, i64)> = BTreeMap::new();
    for &(_, t, d, v) in events {
        let start = t.div_euclid(size_us) * size_us;
        let e = w.entry((d, start)).or_default();
        e.0 += 1;
        e.1 += v;
    }
    let lines: Vec<serde_json::Value> = w
        .iter()
        .map(|(&(d, start), &(n, total))| {
            serde_json::json!({
                "device": format!("d{d}"),
                "window_start": start,
                "window_end": start + size_us,
                "n": n,
                "total": total,
            })
        })
        .collect();
    multiset(lines.into_iter())
}

/// The sessions per device (records closer than the gap share one), from the input directly.
fn sessions_reference(events: &[Event]) -> Vec<String> {
    let mut by_device: BTreeMap<u64, Vec<(i64, i64)>> = BTreeMap::new();
    for &(_, t, d, v) in events {
        by_device.entry(d).or_default().push((t, v));
    }
    let mut lines = Vec::new();
    for (d, mut rs) in by_device {
        rs.sort();
        let mut i = 0;
        while i < rs.len() {
            let (start, mut last, mut n, mut top) = (rs[i].0, rs[i].0, 1u64, rs[i].1);
            i += 1;
            while i < rs.len() && rs[i].0 < last + GAP_US {
                last = rs[i].0;
                n += 1;
                top = top.max(rs[i].1);
                i += 1;
            }
            lines.push(serde_json::json!({
                "device": format!("d{d}"),
                "window_start": start,
                "window_end": last + GAP_US,
                "n": n,
                "top": top,
            }));
        }
    }
    multiset(lines.into_iter())
}

/// The left outer interval join of low (v < 30) and high (v >= 70) readings of a device, the
/// high one 0 to 60 ms after the low one, computed from the input directly.
fn pairs_reference(events: &[Event]) -> Vec<String> {
    // Each device's high readings by time, searched for each low one.
    let mut highs: BTreeMap<u64, Vec<(i64, u64)>> = BTreeMap::new();
    for &(id, t, d, v) in events {
        if v >= 70 {
            highs.entry(d).or_default().push((t, id));
        }
    }
    highs.values_mut().for_each(|h| h.sort_unstable());
    let mut lines = Vec::new();
    for &(low, lt, ld, _) in events.iter().filter(|e| e.3 < 30) {
        let h = highs.get(&ld).map_or(&[][..], |h| h.as_slice());
        let from = h.partition_point(|&(t, _)| t < lt);
        let within: Vec<u64> = h[from..]
            .iter()
            .take_while(|&&(t, _)| t <= lt + PAIR_WITHIN)
            .map(|&(_, id)| id)
            .collect();
        if within.is_empty() {
            lines.push(serde_json::json!({ "low_id": low, "high_id": null }));
        }
        for high in within {
            lines.push(serde_json::json!({ "low_id": low, "high_id": high }));
        }
    }
    multiset(lines.into_iter())
}

/// The full outer window join of rare low (v < 10) and rare high (v >= 90) readings of a
/// device in sliding windows of 100 ms every 50 ms, computed from the input directly.
fn together_reference(events: &[Event]) -> Vec<String> {
    // (window end, device) -> (lows, highs)
    type Sides = (Vec<u64>, Vec<u64>);
    let mut windows: BTreeMap<(i64, u64), Sides> = BTreeMap::new();
    for &(id, t, d, v) in events {
        if (10..90).contains(&v) {
            continue;
        }
        let first_end = t.div_euclid(50_000) * 50_000 + 50_000;
        for end in [first_end, first_end + 50_000] {
            let e = windows.entry((end, d)).or_default();
            if v < 10 {
                e.0.push(id);
            } else {
                e.1.push(id);
            }
        }
    }
    let mut lines = Vec::new();
    for ((end, _), (lows, highs)) in windows {
        let line = |l: Option<u64>, h: Option<u64>| {
            serde_json::json!({
                "low_id": l,
                "high_id": h,
                "window_start": end - 100_000,
                "window_end": end,
            })
        };
        match (lows.is_empty(), highs.is_empty()) {
            (false, false) => {
                for &l in &lows {
                    for &h in &highs {
                        lines.push(line(Some(l), Some(h)));
                    }
                }
            }
            (false, true) => lines.extend(lows.iter().map(|&l| line(Some(l), None))),
            (true, false) => lines.extend(highs.iter().map(|&h| line(None, Some(h)))),
            (true, true) => {}
        }
    }
    multiset(lines.into_iter())
}

/// The records the source `readings` read, from a run's `--report` file.
fn records_read(report: &Path) -> u64 {
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(report).unwrap()).unwrap();
    r["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["component"] == "sources.readings")
        .unwrap()["records_in"]
        .as_u64()
        .unwrap()
}

/// The left outer temporal join of rare low readings (v < 10) with each device's readings of
/// v >= 50 as versions: the version with the latest (time, id) at or before the low one's time,
/// computed from the input directly.
fn as_of_reference(events: &[Event]) -> Vec<String> {
    let mut versions: BTreeMap<u64, Vec<(i64, u64)>> = BTreeMap::new();
    for &(id, t, d, v) in events {
        if v >= 50 {
            versions.entry(d).or_default().push((t, id));
        }
    }
    versions.values_mut().for_each(|v| v.sort_unstable());
    let lines = events.iter().filter(|e| e.3 < 10).map(|&(low, t, d, _)| {
        let vs = versions.get(&d).map_or(&[][..], |v| v.as_slice());
        let at = vs.partition_point(|&(vt, _)| vt <= t);
        let version = at.checked_sub(1).map(|i| vs[i].1);
        serde_json::json!({ "low_id": low, "version_id": version })
    });
    multiset(lines)
}

/// Asserts that every output of the file pipeline equals its reference.
fn assert_outputs(dir: &Path, events: &[Event]) {
    let (windows, sessions) = outputs(dir);
    same(&windows, &windows_reference(events, 1_000_000), "windows");
    same(&sessions, &sessions_reference(events), "sessions");
    same(&pairs(dir), &pairs_reference(events), "pairs");
    same(
        &output(dir, "together.jsonl"),
        &together_reference(events),
        "window join",
    );
    same(
        &output(dir, "as-of.jsonl"),
        &as_of_reference(events),
        "temporal join",
    );
}

/// A sink's output in `out/`.
fn output(dir: &Path, file: &str) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("out").join(file)).unwrap_or_default();
    multiset(
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))),
    )
}

/// The join's output.
fn pairs(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("out/pairs.jsonl")).unwrap_or_default();
    multiset(
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))),
    )
}

fn outputs(dir: &Path) -> (Vec<String>, Vec<String>) {
    let read = |f: &str| {
        let text = std::fs::read_to_string(dir.join("out").join(f)).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        multiset(lines.into_iter())
    };
    (read("windows.jsonl"), read("sessions.jsonl"))
}

/// `weir run` with the fault `fault` (if any) and `extra` flags; returns the output.
fn run(dir: &Path, pipeline: &str, fault: Option<&str>, extra: &[&str]) -> std::process::Output {
    let mut cmd = assert_cmd::Command::cargo_bin("weir").unwrap();
    cmd.current_dir(dir)
        .args(["run", pipeline, "--status-every", "0s"])
        .args(extra)
        .timeout(std::time::Duration::from_secs(120));
    match fault {
        Some(f) => cmd.env("WEIR_CHECKPOINT_FAULT", f),
        None => cmd.env_remove("WEIR_CHECKPOINT_FAULT"),
    };
    cmd.output().unwrap()
}

/// The sequence number of the latest complete checkpoint (0: none).
fn latest_seq(dir: &Path) -> u64 {
    std::fs::read_dir(dir.join("state"))
        .map(|es| {
            es.flatten()
                .filter(|e| e.path().join("MANIFEST.json").exists())
                .filter_map(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.strip_prefix("chk-"))
                        .and_then(|n| n.parse().ok())
                })
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

/// How many complete checkpoints the directory holds (0 or 1: older ones are removed).
fn complete_checkpoints(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("state"))
        .map(|es| {
            es.flatten()
                .filter(|e| e.path().join("MANIFEST.json").exists())
                .count()
        })
        .unwrap_or(0)
}

/// Runs crashed at each of `faults` in turn, then to the end; asserts that the faults struck
/// (a run may finish before its fault, but not all of them), that a run resumed from a
/// checkpoint, and that the last one finished.
fn crash_and_resume(dir: &Path, p: &str, faults: &[String], extra: &[&str]) {
    let (mut crashed, mut resumed) = (0, false);
    for f in faults {
        let out = run(dir, p, Some(f), extra);
        resumed |= stderr(&out).contains("resuming from checkpoint");
        // A run that finished before the fault struck is fine too; one that failed otherwise
        // is not.
        if !out.status.success() {
            assert!(
                stderr(&out).contains("WEIR_CHECKPOINT_FAULT"),
                "the run failed, not by the fault {f}:\n{}",
                stderr(&out)
            );
            crashed += 1;
        }
    }
    let out = run(dir, p, None, extra);
    ok(&out);
    resumed |= stderr(&out).contains("resuming from checkpoint");
    assert!(
        crashed > 0 && resumed,
        "{crashed} crashes, resumed: {resumed}; faults {faults:?}, {extra:?}; the last run:\n{}",
        stderr(&out)
    );
}

#[test]
fn crashed_runs_resume_to_exactly_the_reference_in_every_configuration() {
    let seed = 20_261_205;
    for (k, config) in [
        vec!["--workers", "1", "--mode", "continuous"],
        vec!["--workers", "2", "--mode", "continuous"],
        vec![
            "--workers",
            "2",
            "--mode",
            "micro-batch",
            "--batch-interval",
            "5ms",
        ],
    ]
    .iter()
    .enumerate()
    {
        let dir = tempfile::tempdir().unwrap();
        // A micro-batch takes what a file has, up to 65,536 records a worker: enough input
        // for several batches, so the frontier moves (and checkpoints are taken) mid-run.
        let per_file = if config.contains(&"micro-batch") {
            50_000
        } else {
            12_000
        };
        let events = input(dir.path(), 3, per_file, seed + k as u64);
        let p = pipeline(dir.path(), "15ms", "1s");
        // Crash points: first at the first part of the second checkpoint (the first is then
        // complete, and every later run resumes), then after a pseudo-random number of
        // records read (each resumed run reads from the last checkpoint, so each crash lands
        // somewhere new), and once more in the middle of a checkpoint.
        let workers: usize = config[1].parse().unwrap();
        let mut rng = Rng(seed * 7 + k as u64);
        let mut faults = vec![format!("part:{}", PARTS * workers + 1)];
        faults.extend((0..4).map(|_| format!("read:{}", 1_000 + rng.next() % 8_000)));
        faults.insert(3, format!("part:{}", 2 * PARTS * workers + 3));
        crash_and_resume(dir.path(), &p, &faults, config);
        assert_outputs(dir.path(), &events);
        assert_eq!(complete_checkpoints(dir.path()), 1);
        // A run after the end reads nothing more and writes nothing twice.
        ok(&run(dir.path(), &p, None, config));
        same(
            &outputs(dir.path()).0,
            &windows_reference(&events, 1_000_000),
            "windows after the end",
        );
    }
}

/// The records the latest checkpoint's source positions cover, on one worker: lines of the
/// files read through, and of the open file up to its position.
fn covered(dir: &Path, lines_per_file: usize) -> u64 {
    let state = dir.join("state");
    let chk = std::fs::read_dir(&state)
        .unwrap()
        .flatten()
        .find(|e| e.path().join("MANIFEST.json").exists())
        .expect("a complete checkpoint");
    let part = std::fs::read_dir(chk.path())
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("readings."))
        .expect("the source's part");
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(part.path()).unwrap()).unwrap();
    let s = &v["position"]["source"];
    if s.is_null() {
        return 0;
    }
    let file = s["file"].as_u64().unwrap();
    let line = s["line"].as_u64().unwrap_or(0);
    file * lines_per_file as u64 + if s["open"] == true { line } else { 0 }
}

#[test]
fn a_resumed_run_reads_only_what_its_checkpoint_had_not() {
    let dir = tempfile::tempdir().unwrap();
    let events = input(dir.path(), 3, 12_000, 99);
    let p = pipeline(dir.path(), "15ms", "1s");
    let config = ["--workers", "1"];
    // In the middle of the second checkpoint: the first is complete.
    let crashed = run(
        dir.path(),
        &p,
        Some(&format!("part:{}", PARTS + 2)),
        &config,
    );
    assert!(!crashed.status.success(), "the fault struck");
    let done = covered(dir.path(), 12_000);
    assert!(done > 0, "a checkpoint completed before the crash");
    let report = dir.path().join("r.json");
    let out = run(
        dir.path(),
        &p,
        None,
        &["--workers", "1", "--report", report.to_str().unwrap()],
    );
    ok(&out);
    assert!(
        stderr(&out).contains("resuming from checkpoint"),
        "{}",
        stderr(&out)
    );
    // Exactly the records after the checkpoint's positions are read again, no more.
    assert_eq!(records_read(&report), events.len() as u64 - done);
    assert_outputs(dir.path(), &events);
}

#[test]
fn a_run_killed_with_sigkill_resumes_without_loss_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let events = input(dir.path(), 4, 40_000, 5);
    let p = pipeline(dir.path(), "20ms", "1s");
    for _ in 0..2 {
        let mut child = common::spawn_weir(dir.path(), &["run", &p, "--status-every", "0s"]);
        // Kill it once it has completed a checkpoint (or when it is done).
        while complete_checkpoints(dir.path()) == 0 && child.try_wait().unwrap().is_none() {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    ok(&run(dir.path(), &p, None, &[]));
    assert_outputs(dir.path(), &events);
}

#[test]
fn a_cluster_of_two_processes_resumes_after_one_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let events = input(dir.path(), 4, 40_000, 11);
    let p = pipeline(dir.path(), "15ms", "1s");
    let process = |hosts: &str, id: &str, fault: Option<&str>| {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("weir"));
        cmd.current_dir(dir.path())
            .args(["run", &p, "--status-every", "0s", "--workers", "1"])
            .args(["--processes", "2", "--process-id", id, "--hostfile", hosts])
            .env(
                "WEIR_CLUSTER_SECRET",
                "a secret for the checkpoint test, 32+",
            )
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        match fault {
            Some(f) => cmd.env("WEIR_CHECKPOINT_FAULT", f),
            None => cmd.env_remove("WEIR_CHECKPOINT_FAULT"),
        };
        cmd.spawn().unwrap()
    };
    // Process 1 aborts at the first part of its second checkpoint, decided only once the
    // first was complete; process 0 then fails, its peer gone.
    let hosts = common::hostfile(dir.path(), 2);
    let (a, b) = (
        process(&hosts, "0", None),
        process(&hosts, "1", Some(&format!("part:{}", PARTS + 1))),
    );
    let (a, b) = (common::finish(a), common::finish(b));
    assert!(
        stderr(&b).contains("WEIR_CHECKPOINT_FAULT"),
        "process 1 crashed:\n{}\nprocess 0:\n{}",
        stderr(&b),
        stderr(&a)
    );
    assert!(complete_checkpoints(dir.path()) > 0, "{}", stderr(&a));
    // Both start again (on other ports: the old ones may still be held).
    let hosts = common::hostfile(dir.path(), 2);
    let (a, b) = (process(&hosts, "0", None), process(&hosts, "1", None));
    let (a, b) = (common::finish(a), common::finish(b));
    ok(&b);
    ok(&a);
    assert!(
        stderr(&a).contains("resuming from checkpoint"),
        "{}",
        stderr(&a)
    );
    assert_outputs(dir.path(), &events);
}

#[test]
fn a_pipeline_that_no_longer_fits_its_checkpoint_is_refused_unless_from_scratch() {
    let dir = tempfile::tempdir().unwrap();
    let events = input(dir.path(), 2, 6_000, 3);
    let p = pipeline(dir.path(), "15ms", "1s");
    ok(&run(dir.path(), &p, None, &[]));
    // Another window size: the state no longer fits.
    let p = pipeline(dir.path(), "15ms", "2s");
    let out = run(dir.path(), &p, None, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.contains("component `per_device` no longer fits its state"),
        "{e}"
    );
    assert!(e.contains("--from-scratch"), "{e}");
    // At the component's place in the file.
    assert!(e.contains("ck.toml:15:"), "{e}");
    // Another number of workers.
    let p = pipeline(dir.path(), "15ms", "1s");
    let e = stderr(&run(dir.path(), &p, None, &["--workers", "2"]));
    assert!(
        e.contains("was taken with 1 workers, this run has 2"),
        "{e}"
    );
    // --from-scratch starts over: the outputs are those of the new pipeline alone.
    let p = pipeline(dir.path(), "15ms", "2s");
    ok(&run(dir.path(), &p, None, &["--from-scratch"]));
    same(
        &outputs(dir.path()).0,
        &windows_reference(&events, 2_000_000),
        "windows from scratch",
    );
}

#[test]
fn components_checkpoints_do_not_cover_are_named_at_their_place() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "j.toml",
        r#"[pipeline]
name = "j"
checkpoint = { interval = "1s", dir = "state/" }

[sources.g]
type = "stdin"
schema = { id = "u64" }
event_time = "ingest"

[sinks.out]
type = "file"
inputs = ["g"]
path = "out.jsonl"
"#,
    );
    let out = weir(dir.path(), &["validate", &p], "");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.contains("checkpoints do not cover this source's position yet"),
        "{e}"
    );
    assert!(e.contains("j.toml:6:"), "{e}");
    let bad = write(
        dir.path(),
        "i.toml",
        r#"[pipeline]
name = "i"
checkpoint = { interval = "soon", dir = "state/" }

[sources.g]
type = "file"
path = "x.jsonl"
schema = { id = "u64" }

[sinks.out]
type = "file"
inputs = ["g"]
path = "out.jsonl"
"#,
    );
    let e = stderr(&weir(dir.path(), &["validate", &bad], ""));
    assert!(e.contains("`soon` is not a duration"), "{e}");
    assert!(e.contains("i.toml:3:"), "{e}");
}

const GENERATED: &str = r#"[pipeline]
name = "gen"
checkpoint = { interval = "15ms", dir = "state/" }

[sources.sensors]
type = "generator"
profile = "iot"
events = 150_000
devices = 40
seed = 3
start = "2026-01-01T00:00:00Z"
event_time_interval = "1ms"

[transforms.readings]
type = "filter"
inputs = ["sensors"]
condition = "kind = 'reading'"

[transforms.per_device]
type = "window"
inputs = ["readings"]
size = "2s"
group_by = ["device_id"]
aggregates = { n = "count(*)", hottest = "max(temperature)" }

[sinks.out]
type = "file"
inputs = ["per_device"]
path = "out/windows.jsonl"
"#;

/// The generator's windows, computed from its events directly.
fn generated_reference() -> Vec<String> {
    use weir_operators::value::Value;
    let (spec, start) = common::generator(GENERATED, "sensors", &[]);
    let schema = spec.profile.schema();
    let col = |n: &str| schema.index_of(n).unwrap();
    let (kind, device, temp) = (col("kind"), col("device_id"), col("temperature"));
    let mut w: BTreeMap<(String, i64), (u64, f64)> = BTreeMap::new();
    for i in 0..150_000u64 {
        let ts = start + i as i64 * 1_000;
        let e = spec.event(i, ts);
        if !matches!(&e.values[kind], Value::Str(k) if k == "reading") {
            continue;
        }
        let Value::Str(d) = &e.values[device] else {
            panic!("a device")
        };
        let Value::F64(t) = e.values[temp] else {
            panic!("a temperature")
        };
        let s = ts.div_euclid(2_000_000) * 2_000_000;
        let entry = w.entry((d.to_string(), s)).or_insert((0, f64::MIN));
        entry.0 += 1;
        entry.1 = entry.1.max(t);
    }
    multiset(w.into_iter().map(|((d, s), (n, hottest))| {
        serde_json::json!({
            "device_id": d,
            "window_start": s,
            "window_end": s + 2_000_000,
            "n": n,
            "hottest": hottest,
        })
    }))
}

#[test]
fn a_crashed_generator_resumes_at_its_index() {
    let want = generated_reference();
    for config in [
        vec!["--workers", "1"],
        vec![
            "--workers",
            "2",
            "--mode",
            "micro-batch",
            "--batch-interval",
            "5ms",
        ],
    ] {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "gen.toml", GENERATED);
        // Four parts a worker and checkpoint (the generator, the window, the file and the
        // dead-letter file): first after the first checkpoint is complete.
        let workers: usize = config[1].parse().unwrap();
        let faults = vec![
            format!("part:{}", 4 * workers + 1),
            "read:30000".to_string(),
            format!("part:{}", 8 * workers + 3),
            "read:20000".to_string(),
        ];
        crash_and_resume(dir.path(), &p, &faults, &config);
        same(&outputs(dir.path()).0, &want, "generated windows");
    }
}

/// The input as Kafka messages keyed by device, in event-time order.
fn send_events(topic: &str, events: &[Event]) {
    let mut sorted = events.to_vec();
    sorted.sort_by_key(|e| (e.1, e.0));
    let messages: Vec<(String, String)> = sorted
        .iter()
        .map(|&(id, t, d, v)| {
            (
                format!("d{d}"),
                format!("{{\"id\":{id},\"ts\":{t},\"device\":\"d{d}\",\"v\":{v}}}"),
            )
        })
        .collect();
    common::send(topic, &messages);
}

/// The checkpoint pipeline reading `topic` (bounded) instead of files.
fn kafka_pipeline(dir: &Path, topic: &str, group: &str) -> String {
    let text = std::fs::read_to_string(pipeline(dir, "15ms", "1s")).unwrap();
    let source = format!(
        "type = \"kafka\"\nbrokers = \"{}\"\ntopics = [\"{topic}\"]\ngroup_id = \"{group}\"\nbounded = true\n",
        common::brokers()
    );
    let text = text.replace(
        "type = \"file\"\npath = \"in\"\nformat = \"jsonl\"\n",
        &source,
    );
    write(dir, "kafka.toml", &text)
}

/// The offsets the latest complete checkpoint holds for the source, by partition.
fn checkpoint_offsets(dir: &Path) -> BTreeMap<i32, i64> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir.join("state")).unwrap().flatten() {
        if !e.path().join("MANIFEST.json").exists() {
            continue;
        }
        for part in std::fs::read_dir(e.path()).unwrap().flatten() {
            if !part.file_name().to_string_lossy().starts_with("readings.") {
                continue;
            }
            let v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(part.path()).unwrap()).unwrap();
            for p in v["position"]["source"]["partitions"]
                .as_array()
                .into_iter()
                .flatten()
            {
                out.insert(
                    p["partition"].as_i64().unwrap() as i32,
                    p["next"].as_i64().unwrap(),
                );
            }
        }
    }
    out
}

/// The group's committed offsets of `topic`'s partitions.
fn committed(topic: &str, group: &str, partitions: i32) -> BTreeMap<i32, i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let mut config = weir_operators::kafka::client_config(&common::brokers(), &[]);
    config.set("group.id", group);
    let c: BaseConsumer = config.create().unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    c.committed_offsets(tpl, std::time::Duration::from_secs(10))
        .unwrap()
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            rdkafka::Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_crashed_kafka_pipeline_resumes_from_its_checkpoints_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let events = input(dir.path(), 3, 10_000, 41);
    let topic = common::topic("checkpoints", 3);
    let group = common::unique("checkpoints");
    send_events(&topic, &events);
    let p = kafka_pipeline(dir.path(), &topic, &group);
    let one = ["--workers", "1"];
    // In the middle of the second checkpoint: the first is complete.
    let out = run(dir.path(), &p, Some(&format!("part:{}", PARTS + 2)), &one);
    assert!(
        stderr(&out).contains("WEIR_CHECKPOINT_FAULT"),
        "the fault struck: {}",
        stderr(&out)
    );
    let at = checkpoint_offsets(dir.path());
    assert_eq!(at.len(), 3, "the checkpoint holds every partition's offset");
    // The group's committed offsets are the checkpoint's.
    assert_eq!(committed(&topic, &group, 3), at);
    // Killed with SIGKILL once it has completed a checkpoint of its own (or ended).
    let before = latest_seq(dir.path());
    let mut child = common::spawn_weir(dir.path(), &["run", &p, "--status-every", "0s"]);
    while latest_seq(dir.path()) == before && child.try_wait().unwrap().is_none() {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
    // Then crashed after some messages read, in the middle of a checkpoint, and again.
    let faults = [
        "read:4000".to_string(),
        format!("part:{}", 2 * PARTS + 3),
        "read:2500".to_string(),
    ];
    crash_and_resume(dir.path(), &p, &faults, &one);
    assert_outputs(dir.path(), &events);
    // The end is committed: every message was read.
    let ends: BTreeMap<i32, i64> = committed(&topic, &group, 3);
    assert_eq!(ends.values().sum::<i64>(), events.len() as i64);
}

#[test]
fn a_resumed_kafka_source_reads_only_what_its_checkpoint_had_not() {
    let dir = tempfile::tempdir().unwrap();
    let events = input(dir.path(), 2, 10_000, 43);
    let topic = common::topic("checkpoints-reread", 2);
    let group = common::unique("checkpoints-reread");
    send_events(&topic, &events);
    let p = kafka_pipeline(dir.path(), &topic, &group);
    let config = ["--workers", "2"];
    // The first part of the second checkpoint, decided once the first was complete.
    let out = run(
        dir.path(),
        &p,
        Some(&format!("part:{}", 2 * PARTS + 1)),
        &config,
    );
    assert!(
        stderr(&out).contains("WEIR_CHECKPOINT_FAULT"),
        "the fault struck: {}",
        stderr(&out)
    );
    let at = checkpoint_offsets(dir.path());
    let done: i64 = at.values().sum();
    assert!(done > 0, "a checkpoint completed: {at:?} {}", stderr(&out));
    let report = dir.path().join("r.json");
    let mut args = config.to_vec();
    args.extend(["--report", report.to_str().unwrap()]);
    ok(&run(dir.path(), &p, None, &args));
    // Exactly the messages after the checkpoint's offsets are read again.
    assert_eq!(records_read(&report), events.len() as u64 - done as u64);
    assert_outputs(dir.path(), &events);
}

/// The bundled generator alerts with a prediction beside them, checkpointed.
fn alerting_pipeline(dir: &Path) -> String {
    let mut text = common::bundled_text("iot-device-alerts.toml").replace(
        "name = \"iot-device-alerts\"\n",
        "name = \"iot-device-alerts\"\ncheckpoint = { interval = \"15ms\", dir = \"state/\" }\n",
    );
    // `[[tests]]` replace sources; keep the pipeline only.
    if let Some(at) = text.find("[[tests]]") {
        text.truncate(at);
    }
    text.push_str(
        r#"
[transforms.forecast]
type = "predict"
inputs = ["readings"]
key = ["device_id"]
value = "temperature"
model = "holt"
alpha = 0.5
beta = 0.3
horizon = "5s"

[sinks.forecasts]
type = "file"
inputs = ["forecast"]
path = "out/forecasts.jsonl"
"#,
    );
    write(dir, "alerts.toml", &text)
}

/// Alerts and predictions keep their state across crashes: a run crashed four times gives the
/// alerts the generator's anomalies make (each device's firing and resolved counts, as the
/// bundled pipeline's own test derives them), and the same alerts and forecasts as a run that
/// was never interrupted (whose results the alert and predict tests check by hand).
#[test]
fn alerts_and_predictions_resume_where_they_were() {
    let whole = tempfile::tempdir().unwrap();
    let p = alerting_pipeline(whole.path());
    ok(&run(whole.path(), &p, None, &["--workers", "2"]));
    let want_alerts = output(whole.path(), "iot-device-alerts.jsonl");
    let want_forecasts = output(whole.path(), "forecasts.jsonl");
    assert!(want_forecasts.len() > 100_000);
    let dir = tempfile::tempdir().unwrap();
    let p = alerting_pipeline(dir.path());
    // Eight parts a worker and checkpoint (the generator, three alerts, the prediction, two
    // files and the dead-letter file), two workers: first after the first checkpoint is
    // complete.
    let faults = vec![
        "part:17".to_string(),
        "read:60000".to_string(),
        "part:40".to_string(),
        "read:40000".to_string(),
    ];
    crash_and_resume(dir.path(), &p, &faults, &["--workers", "2"]);
    let alerts = output(dir.path(), "iot-device-alerts.jsonl");
    same(&alerts, &want_alerts, "alerts");
    same(
        &output(dir.path(), "forecasts.jsonl"),
        &want_forecasts,
        "forecasts",
    );
    let count = |alert: &str, state: &str, device: &str| {
        alerts
            .iter()
            .filter(|l| {
                let r: serde_json::Value = serde_json::from_str(l).unwrap();
                r["alert"] == alert && r["state"] == state && r["device_id"] == device
            })
            .count()
    };
    for d in 0..6 {
        let dev = format!("dev-{d:05}");
        let (hot, silent) = (d < 3, d >= 3);
        assert_eq!(count("overheat", "firing", &dev), if hot { 5 } else { 0 });
        assert_eq!(count("overheat", "resolved", &dev), if hot { 5 } else { 0 });
        assert_eq!(count("silent", "firing", &dev), if silent { 6 } else { 1 });
        assert_eq!(
            count("silent", "resolved", &dev),
            if silent { 5 } else { 0 }
        );
    }
}

/// The bundled sliding averages (disordered input, late readings applied as updates) with
/// every kind of aggregate state, and a sliding window without late updates (its panes move
/// into per-key queues), checkpointed.
fn sliding_pipeline(dir: &Path) -> String {
    let mut text = common::bundled_text("iot-sliding-averages.toml").replace(
        "name = \"iot-sliding-averages\"\n",
        "name = \"iot-sliding-averages\"\ncheckpoint = { interval = \"15ms\", dir = \"state/\" }\n",
    );
    if let Some(at) = text.find("[[tests]]") {
        text.truncate(at);
    }
    text = text.replace(
        "aggregates = { readings = \"count(*)\", avg_temp = \"avg(temperature)\" }",
        "aggregates = { readings = \"count(*)\", avg_temp = \"avg(temperature)\", total = \"sum(humidity)\", low = \"min(temperature)\", high = \"max(pressure)\", first_id = \"first(id)\", last_id = \"last(id)\", sd = \"stddev(temperature)\", p90 = \"approx_percentile(temperature, 0.9)\", ids = \"approx_count_distinct(id)\", kinds = \"count(distinct kind)\" }",
    );
    text.push_str(
        r#"
[transforms.queued]
type = "window"
inputs = ["readings"]
kind = "sliding"
size = "4s"
slide = "1s"
group_by = ["device_id"]
aggregates = { n = "count(*)", avg_p = "avg(pressure)" }

[sinks.queued_out]
type = "file"
inputs = ["queued"]
path = "out/queued.jsonl"
"#,
    );
    write(dir, "sliding.toml", &text)
}

/// Each window's final result: of the results of one key and window (late updates re-emit
/// it; how many times depends on when the late records came), the one with the most late
/// records.
fn finals(results: &[String], key: &str) -> Vec<String> {
    let mut last: BTreeMap<(String, String), (u64, String)> = BTreeMap::new();
    for line in results {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        let at = (r[key].to_string(), r["window_start"].to_string());
        let late = r["late_records"].as_u64().unwrap_or(0);
        if last.get(&at).is_none_or(|(l, _)| *l < late) {
            last.insert(at, (late, line.clone()));
        }
    }
    last.into_values().map(|(_, l)| l).collect()
}

/// Sliding windows, late updates and every aggregate's state survive crashes: a run crashed
/// four times gives the final results a run never interrupted gives (whose results the window
/// tests check against references of their own).
#[test]
fn sliding_windows_with_late_updates_resume_where_they_were() {
    let whole = tempfile::tempdir().unwrap();
    let p = sliding_pipeline(whole.path());
    ok(&run(whole.path(), &p, None, &["--workers", "2"]));
    let want = output(whole.path(), "sliding-averages.jsonl");
    let want_queued = output(whole.path(), "queued.jsonl");
    assert!(want.len() > 10_000 && want_queued.len() > 10_000);
    let dir = tempfile::tempdir().unwrap();
    let p = sliding_pipeline(dir.path());
    // Six parts a worker and checkpoint (the generator, two windows, two files and the
    // dead-letter file), two workers: first after the first checkpoint is complete.
    let faults = vec![
        "part:13".to_string(),
        "read:50000".to_string(),
        "part:30".to_string(),
        "read:30000".to_string(),
    ];
    crash_and_resume(dir.path(), &p, &faults, &["--workers", "2"]);
    same(
        &finals(&output(dir.path(), "sliding-averages.jsonl"), "device_id"),
        &finals(&want, "device_id"),
        "sliding averages",
    );
    same(
        &output(dir.path(), "queued.jsonl"),
        &want_queued,
        "queued panes",
    );
}
