//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A scratch directory holding a copy of `pipelines/`, so runs write their outputs there.
pub fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&root().join("pipelines"), &dir.path().join("pipelines"));
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// `weir ARGS` in `dir`, with `stdin` as standard input.
pub fn weir(dir: &Path, args: &[&str], stdin: &str) -> Output {
    assert_cmd::Command::cargo_bin("weir")
        .unwrap()
        .current_dir(dir)
        .args(args)
        .write_stdin(stdin.as_bytes().to_vec())
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .unwrap()
}

/// Standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success, showing standard error otherwise.
pub fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "weir failed ({:?}):\n{}",
        o.status,
        stderr(o)
    );
}

/// JSON lines, canonicalised (keys sorted) and sorted: a multiset to compare.
pub fn json_multiset(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let value: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            serde_json::to_string(&value).unwrap()
        })
        .collect();
    v.sort();
    v
}

/// Writes `text` to `name` in `dir` and returns the path as a string.
pub fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

/// The records of a JSON-lines file, parsed.
pub fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Every (mode flags, workers) combination a result must not depend on, as `weir run` flags.
pub fn configurations() -> Vec<Vec<&'static str>> {
    let mut v = Vec::new();
    for mode in [
        vec!["--mode", "continuous"],
        vec!["--mode", "micro-batch", "--batch-interval", "20ms"],
    ] {
        for w in ["1", "2", "4"] {
            let mut c = mode.clone();
            c.extend(["--workers", w]);
            v.push(c);
        }
    }
    v
}

/// Runs `pipeline` in `dir` with extra arguments and no status lines, asserting success;
/// returns standard error.
pub fn run_ok(dir: &Path, pipeline: &str, extra: &[&str]) -> String {
    let mut args = vec!["run", pipeline, "--status-every", "0s"];
    args.extend_from_slice(extra);
    let out = weir(dir, &args, "");
    ok(&out);
    stderr(&out)
}

/// Runs `weir` with `args` in `dir`, asserting that it fails; returns standard error.
pub fn weir_fails(dir: &Path, args: &[&str]) -> String {
    let out = weir(dir, args, "");
    assert!(!out.status.success(), "weir {args:?} succeeded");
    stderr(&out)
}

/// The spec of generator `source` in pipeline `text` (with `--set` overrides), as Weir reads it,
/// and the event time of its first event: references build their input from the configuration
/// the run uses rather than from a copy of it.
pub fn generator(
    text: &str,
    source: &str,
    overrides: &[&str],
) -> (weir_operators::generator::GeneratorSpec, i64) {
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    let (plan, diags, _) = weir_engine::plan::load("p.toml", text, &overrides);
    let plan = plan.unwrap_or_else(|| panic!("{diags:?}"));
    let node = plan
        .nodes
        .iter()
        .find(|n| n.id == source)
        .expect("the source");
    let weir_engine::components::Op::Generator(spec) = &node.op else {
        panic!("`{source}` is not a generator")
    };
    let start = spec.start.expect("the pipeline fixes its start");
    (spec.clone(), start)
}

/// A bundled pipeline's text.
pub fn bundled_text(name: &str) -> String {
    std::fs::read_to_string(root().join("pipelines").join(name)).unwrap()
}

/// `n` free ports on 127.0.0.1 (free when asked; a test binds them soon after).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// A hostfile in `dir` for `n` processes on free ports of 127.0.0.1; returns its path.
pub fn hostfile(dir: &Path, n: usize) -> String {
    let lines: String = free_ports(n)
        .iter()
        .map(|p| format!("127.0.0.1:{p}\n"))
        .collect();
    write(dir, "hosts", &lines)
}

/// Starts `weir ARGS` in `dir` in the background, capturing its output.
pub fn spawn_weir(dir: &Path, args: &[&str]) -> std::process::Child {
    std::process::Command::new(assert_cmd::cargo::cargo_bin("weir"))
        .current_dir(dir)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for a background `weir` (two minutes at most) and returns its output.
pub fn finish(mut c: std::process::Child) -> Output {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while c.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = c.kill();
            panic!("weir did not finish within two minutes");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    c.wait_with_output().unwrap()
}

/// The README's fenced blocks: the line each starts on, its info string (`toml`, `sh`, ...)
/// and its text.
#[allow(dead_code)]
pub fn readme_blocks() -> Vec<(usize, String, String)> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut open: Option<(usize, String, String)> = None;
    for (n, line) in readme.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => open = Some((n + 1, info.trim().to_string(), String::new())),
            (Some(_), Some(_)) => blocks.push(open.take().unwrap()),
            (Some((_, _, b)), None) => {
                b.push_str(line);
                b.push('\n');
            }
            _ => {}
        }
    }
    blocks
}

/// The README block whose first line starts with `first`.
#[allow(dead_code)]
pub fn readme_block(first: &str) -> String {
    readme_blocks()
        .into_iter()
        .find(|(_, _, b)| b.starts_with(first))
        .unwrap_or_else(|| panic!("README.md has no block starting {first:?}"))
        .2
}

/// A line's shape: its words, each holding a digit as `#` — what an example's line and a real
/// run's line share when only the measurements differ.
#[allow(dead_code)]
pub fn shape(line: &str) -> Vec<String> {
    line.split_whitespace()
        .map(|w| match w.chars().any(|c| c.is_ascii_digit()) {
            true => "#".to_string(),
            false => w.to_string(),
        })
        .collect()
}

/// One HTTP request to `address` (`host:port`), with a JSON body when given: the status and
/// the body, whatever the status. `None` when nothing answers.
pub fn http(method: &str, address: &str, path: &str, body: Option<&str>) -> Option<(u16, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(60)))
        .build()
        .into();
    let url = format!("http://{address}{path}");
    let response = match (method, body) {
        ("POST", Some(b)) => agent
            .post(&url)
            .header("Content-Type", "application/json")
            .send(b),
        ("POST", None) => agent.post(&url).send_empty(),
        ("DELETE", _) => agent.delete(&url).call(),
        _ => agent.get(&url).call(),
    };
    let mut response = response.ok()?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().ok()?;
    Some((status, text))
}

/// A `weir` process left running, whose standard error is read line by line on a thread.
pub struct Running {
    /// The process.
    pub child: std::process::Child,
    /// Its standard error lines, as they come.
    pub lines: std::sync::mpsc::Receiver<String>,
    /// Every line seen so far.
    pub seen: Vec<String>,
}

impl Running {
    /// Starts `weir ARGS` in `dir`, with standard input piped.
    pub fn start(dir: &Path, args: &[&str]) -> Running {
        use std::io::BufRead;
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("weir"))
            .current_dir(dir)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let err = child.stderr.take().unwrap();
        let (to, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(err).lines() {
                let Ok(l) = l else { break };
                if to.send(l).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a standard-error line containing `text` and returns it (at most two minutes,
    /// a limit for a hung run, not a measure).
    pub fn wait_for(&mut self, text: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            if let Some(l) = self.seen.iter().find(|l| l.contains(text)) {
                return l.clone();
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(_) => panic!(
                    "weir never printed `{text}`; its standard error:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// The dashboard's address, from the line `weir run --serve` prints.
    pub fn served_at(&mut self) -> String {
        let l = self.wait_for("dashboard at http://");
        let rest = l.split("http://").nth(1).unwrap();
        rest.split('/').next().unwrap().to_string()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` until it gives a value (every 20 ms, at most two minutes: a limit for a hung
/// run, not a measure).
pub fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The broker every test uses. The tests fail, never skip, without one.
pub fn brokers() -> String {
    std::env::var("WEIR_KAFKA_BROKERS").unwrap_or_else(|_| {
        panic!(
            "the Kafka tests need a broker: run the README's test command (scripts/test), which \
             builds and starts one, or start a Kafka-compatible broker yourself and set \
             WEIR_KAFKA_BROKERS=host:port"
        )
    })
}

/// A topic or group name no other test or run uses.
pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{name}-{}-{nanos}", std::process::id())
}

/// A new topic of `partitions` partitions, its name unique.
pub fn topic(name: &str, partitions: i32) -> String {
    let t = unique(name);
    assert!(weir_operators::kafka::create_topic(
        &weir_operators::kafka::client_config(&brokers(), &[]),
        &t,
        partitions
    )
    .unwrap());
    t
}

/// Sends `(key, line)` messages to `topic`, with librdkafka `options`.
pub fn send_with(topic: &str, messages: &[(String, String)], options: &[(String, String)]) {
    let m = weir_operators::kafka::Messages::new(
        &weir_operators::kafka::client_config(&brokers(), options),
        topic,
    )
    .unwrap();
    for (k, line) in messages {
        m.send(Some(k.as_bytes()), line.as_bytes(), None).unwrap();
    }
    m.flush().unwrap();
}

/// Sends `(key, line)` messages to `topic`.
pub fn send(topic: &str, messages: &[(String, String)]) {
    send_with(topic, messages, &[]);
}

/// Sensor readings `from..to` as message-queue tests write them: (device key, JSON line), in
/// event-time order, with a bad record every 500 (a wrong type) and 999 (not JSON at all).
pub fn sensor_events(from: u64, to: u64) -> Vec<(String, String)> {
    (from..to)
        .map(|i| {
            let device = format!("d{}", i % 10);
            let ts = 1_700_000_000_000 + i * 7;
            let value = (i * 37) % 1000;
            let line = match i % 1000 {
                500 => format!(r#"{{"id": {i}, "ts": "soon", "device": "{device}", "value": 1}}"#),
                999 => "not json {".to_string(),
                _ => {
                    format!(r#"{{"id": {i}, "ts": {ts}, "device": "{device}", "value": {value}}}"#)
                }
            };
            (device, line)
        })
        .collect()
}

/// The good records of [`sensor_events`] below `n`: (id, ts in ms, device, value).
pub fn sensor_good(n: u64) -> Vec<(u64, u64, String, u64)> {
    (0..n)
        .filter(|i| !matches!(i % 1000, 500 | 999))
        .map(|i| {
            (
                i,
                1_700_000_000_000 + i * 7,
                format!("d{}", i % 10),
                (i * 37) % 1000,
            )
        })
        .collect()
}

/// The results [`sensor_pipeline`] gives for the good events below `n` at or after `from_ms`,
/// computed here: `{"device", "window_start", "window_end", "n", "total", "low", "high"}` as
/// canonical JSON, sorted.
pub fn sensor_reference(n: u64, from_ms: u64) -> Vec<String> {
    let mut w: std::collections::BTreeMap<(String, u64), (u64, u64, u64, u64)> =
        std::collections::BTreeMap::new();
    for (_, ts, device, value) in sensor_good(n) {
        if value < 100 || ts < from_ms {
            continue;
        }
        let e = w
            .entry((device, ts / 1000 * 1000))
            .or_insert((0, 0, u64::MAX, 0));
        e.0 += 1;
        e.1 += value;
        e.2 = e.2.min(value);
        e.3 = e.3.max(value);
    }
    let rfc = |ms: u64| weir_operators::time::format_rfc3339(ms as i64 * 1000);
    let mut v: Vec<String> = w
        .into_iter()
        .map(|((device, start), (n, total, low, high))| {
            serde_json::to_string(&serde_json::json!({
                "device": device, "window_start": rfc(start), "window_end": rfc(start + 1000),
                "n": n, "total": total, "low": low, "high": high,
            }))
            .unwrap()
        })
        .collect();
    v.sort();
    v
}

/// The pipeline message-queue tests run over [`sensor_events`]: readings of value 100 or more,
/// counted, summed and ranged per device and second; named `name` (its dead letters go to
/// `NAME.deadletter.jsonl`), with its source's keys and its sinks given.
pub fn sensor_pipeline(name: &str, source: &str, sinks: &str) -> String {
    format!(
        r#"
[pipeline]
name = "{name}"

[sources.events]
{source}
schema = {{ id = "u64", ts = "timestamp", device = "string", value = "i64" }}
timestamp_format = "epoch_ms"

[transforms.big]
type = "filter"
inputs = ["events"]
condition = "value >= 100"

[transforms.per_device]
type = "window"
inputs = ["big"]
size = "1s"
group_by = ["device"]
aggregates = {{ n = "count(*)", total = "sum(value)", low = "min(value)", high = "max(value)" }}

{sinks}
"#
    )
}

/// A file sink `id` of `input`'s records, to `path`.
pub fn file_sink(id: &str, input: &str, path: &str) -> String {
    format!("[sinks.{id}]\ntype = \"file\"\ninputs = [\"{input}\"]\npath = \"{path}\"\n")
}

/// The text of `path` in `dir`.
pub fn read(dir: &Path, path: &str) -> String {
    std::fs::read_to_string(dir.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Component `id` (`section.id`) of a report.
pub fn report_component<'a>(r: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    r["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["component"] == id)
        .unwrap_or_else(|| panic!("no {id} in {r}"))
}

/// The records of `path` without their assigned ids, as a sorted set of canonical JSON.
pub fn results_without_ids(dir: &Path, path: &str) -> Vec<String> {
    json_multiset(&read(dir, path))
        .into_iter()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(&l).unwrap();
            v.as_object_mut().unwrap().remove("id");
            serde_json::to_string(&v).unwrap()
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Sends a signal (`-KILL`, `-INT`) to a running weir.
pub fn signal(child: &std::process::Child, sig: &str) {
    let s = std::process::Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(s.success());
}
