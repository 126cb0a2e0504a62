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
