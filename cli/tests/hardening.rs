//! Regression tests for inputs that once crashed, stalled or silently lost data (each named
//! after the defect it reproduces). Every configuration error must name the file, line and
//! column and exit with status 2; nothing may panic.

mod common;

use common::*;

const SOURCE: &str = "[sources.s]\ntype = \"generator\"\nprofile = \"iot\"\nevents = 10\n";
const SINK: &str = "[sinks.out]\ntype = \"null\"\ninputs = [\"f\"]\n";

/// Validates `text` (and runs it); asserts exit status 2 with no panic, returns standard error.
fn refused(text: &str, args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "p.toml", text);
    for verb in ["validate", "run"] {
        let mut a = vec![verb, p.as_str()];
        a.extend_from_slice(args);
        let out = weir(dir.path(), &a, "");
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{verb}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(err.contains("nothing was run"), "{err}");
    }
    let mut a = vec!["validate", p.as_str()];
    a.extend_from_slice(args);
    stderr(&weir(dir.path(), &a, ""))
}

#[test]
fn a_chain_of_20000_terms_is_refused_with_its_place_and_the_limit() {
    for (op, term) in [(" + ", "battery"), (" OR ", "battery > 1")] {
        let chain = vec![term; 20_000].join(op);
        let text = format!(
            "{SOURCE}[transforms.f]\ntype = \"filter\"\ninputs = [\"s\"]\ncondition = \"({chain}) > 0\"\n{SINK}"
        );
        let err = refused(&text, &[]);
        assert!(
            err.contains("more than 500 operators, Weir's limit"),
            "{err}"
        );
        assert!(err.contains("transforms.f"), "{err}");
        // Line 8, at the first operator past the limit: the opening parenthesis counts, so
        // that is the 500th `+`, or the 250th `OR` (each term has its `>`).
        let line = format!("condition = \"({chain}) > 0\"");
        let nth = if op == " + " { 500 } else { 250 };
        let at = line.match_indices(op).nth(nth - 1).unwrap().0 + 1;
        let place = format!("p.toml:8:{}]", at + 1);
        assert!(
            err.contains(&place),
            "wants {place}: {}",
            &err[..err.len().min(500)]
        );
    }
}

#[test]
fn a_set_value_that_is_not_ascii_is_marked_not_panicked_on() {
    let out = weir(
        &root(),
        &[
            "validate",
            "pipelines/iot-hot-readings.toml",
            "--set",
            "transforms.hot.condition=é",
        ],
        "",
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("unknown field `é` in `condition`"), "{err}");
    assert!(err.contains("[command line:1:32]"), "{err}");
}

#[test]
fn an_error_past_column_65535_is_shown_with_its_place() {
    let text = format!(
        "[sources.s]\ntype = \"generator\"\n{}profil = \"iot\"\n",
        " ".repeat(70_000)
    );
    let err = refused(&text, &[]);
    assert!(err.contains("p.toml:3:70001]"), "{err}");
    assert!(err.contains("did you mean `profile`?"), "{err}");
    assert!(err.len() < 10_000, "the long line is shown as an excerpt");
}

#[test]
fn durations_that_do_not_fit_are_refused_at_validation() {
    let text = format!(
        "{SOURCE}[transforms.f]\ntype = \"window\"\ninputs = [\"s\"]\nkind = \"tumbling\"\nsize = \"300000y\"\naggregates = {{ n = \"count(*)\" }}\n{SINK}"
    );
    let err = refused(&text, &[]);
    assert!(err.contains("longer than 1000 years"), "{err}");
    assert!(err.contains("p.toml:9:8]"), "{err}");

    let text = format!(
        "{SOURCE}[transforms.f]\ntype = \"window\"\ninputs = [\"s\"]\nkind = \"sliding\"\nsize = \"900y\"\nslide = \"1s\"\naggregates = {{ n = \"count(*)\" }}\n{SINK}"
    );
    let err = refused(&text, &[]);
    assert!(err.contains("more than 100000 windows"), "{err}");

    // Command-line durations too (an Instant past its range would panic).
    let out = weir(
        &root(),
        &[
            "run",
            "pipelines/iot-hot-readings.toml",
            "--duration",
            "400000y",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("longer than 1000 years"));
}

/// 20,000 misspelt keys are all reported, in time linear in their number (this took 111 s when
/// each diagnostic rescanned the file and each unknown key shifted the table).
#[test]
fn twenty_thousand_diagnostics_are_all_reported() {
    let keys: String = (0..20_000).map(|i| format!("bad{i} = 1\n")).collect();
    let text = format!(
        "[sources.s]\ntype = \"generator\"\nprofile = \"iot\"\n{keys}[sinks.out]\ntype = \"null\"\ninputs = [\"s\"]\n"
    );
    let err = refused(&text, &[]);
    assert!(
        err.contains("20000 problems found"),
        "{}",
        &err[err.len() - 300..]
    );
    assert!(err.contains("p.toml:20003:1]"), "the last key's place");
}

// ---- bad input: every physical line is a record, one counted bad record, or a blank line ----

/// Runs `pipeline` (text) in a scratch directory with `input` as `in.csv`/`in.jsonl`; returns
/// (good records, dead letters, standard error).
fn run_input(
    pipeline: &str,
    name: &str,
    input: &[u8],
    args: &[&str],
) -> (Vec<serde_json::Value>, Vec<serde_json::Value>, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(name), input).unwrap();
    let p = write(dir.path(), "p.toml", pipeline);
    let err = run_ok(dir.path(), &p, args);
    let good = json_lines(&dir.path().join("out.jsonl"));
    let dead_path = dir.path().join("dead.jsonl");
    let dead = if dead_path.exists() {
        json_lines(&dead_path)
    } else {
        Vec::new()
    };
    (good, dead, err)
}

/// Sinks for source `s`: its records to `out.jsonl`, its dead letters to `dead.jsonl`.
const OUT_AND_DEAD: &str = r#"
[sinks.out]
type = "file"
inputs = ["s"]
path = "out.jsonl"

[sinks.dead]
type = "file"
inputs = ["s.dead_letter"]
path = "dead.jsonl"
"#;

fn file_pipeline(name: &str, format: &str, extra: &str) -> String {
    format!(
        r#"
[sources.s]
type = "file"
path = "{name}"
format = "{format}"
schema = {{ ts = "timestamp", v = "f64" }}
timestamp_format = "epoch_ms"
watermark = {{ max_out_of_orderness = "1h" }}
{extra}

{OUT_AND_DEAD}"#
    )
}

fn lines_of(records: &[serde_json::Value], field: &str) -> Vec<u64> {
    let mut v: Vec<u64> = records
        .iter()
        .map(|r| match &r[field] {
            serde_json::Value::String(id) => id.rsplit(':').next().unwrap().parse().unwrap(),
            n => n.as_u64().unwrap(),
        })
        .collect();
    v.sort();
    v
}

/// CRLF line endings, a byte-order mark, a stray quote followed by 900 good rows, a row that is
/// not UTF-8, blank lines, NaN, infinity and 1e400: the reference is the line list below.
#[test]
fn csv_lines_are_counted_exactly_whatever_they_hold() {
    // A third column, not in the schema, holds a quoted field over two lines.
    let mut rows: Vec<Vec<u8>> = vec![b"\xEF\xBB\xBFts,v,note".to_vec()];
    let mut good = Vec::new();
    let mut bad: Vec<(u64, &str)> = Vec::new();
    let mut blank = 0;
    let push = |rows: &mut Vec<Vec<u8>>, r: &[u8]| {
        rows.push(r.to_vec());
        rows.len() as u64
    };
    good.push(push(&mut rows, b"1,1.5,a"));
    bad.push((
        push(&mut rows, b"2,\"unterminated,a"),
        "unterminated quoted field",
    ));
    for i in 0..900 {
        good.push(push(&mut rows, format!("{},{i},b", 10 + i).as_bytes()));
    }
    bad.push((push(&mut rows, b"3,\xff\xfe,c"), "not valid UTF-8"));
    push(&mut rows, b"");
    blank += 1;
    push(&mut rows, b"   ");
    blank += 1;
    for v in ["NaN", "inf", "-infinity", "1e400"] {
        bad.push((
            push(&mut rows, format!("4,{v},d").as_bytes()),
            "expected f64",
        ));
    }
    // One record, numbered by its first line.
    good.push(push(&mut rows, b"5,5,\"multi"));
    push(&mut rows, b"line\"");
    good.push(push(&mut rows, b"6,6,e"));
    let text: Vec<u8> = rows
        .iter()
        .flat_map(|r| [&r[..], b"\r\n"].concat())
        .collect();

    for workers in ["1", "2"] {
        let (out, dead, err) = run_input(
            &file_pipeline("in.csv", "csv", ""),
            "in.csv",
            &text,
            &["--workers", workers],
        );
        assert_eq!(lines_of(&out, "id"), good, "good rows by line");
        assert_eq!(
            lines_of(&dead, "line"),
            bad.iter().map(|b| b.0).collect::<Vec<_>>()
        );
        for (d, (_, why)) in dead.iter().zip(&bad) {
            assert!(d["reason"].as_str().unwrap().contains(why), "{d}");
        }
        let not_utf8 = dead.iter().find(|d| d["line"] == 904).unwrap();
        assert_eq!(
            not_utf8["record"], "3,\\xFF\\xFE,c",
            "the raw bytes, escaped"
        );
        assert!(
            err.contains(&format!("sources.s: {blank} blank lines skipped")),
            "{err}"
        );
    }
}

/// JSON lines: a byte-order mark, a key given twice, a line over max_line_bytes, blank lines.
#[test]
fn jsonl_bom_duplicate_keys_and_long_lines() {
    let long = format!("{{\"ts\": 3, \"v\": \"{}\"}}", "x".repeat(5000));
    let text = format!(
        "\u{feff}{{\"ts\": 1, \"v\": 1}}\n{{\"ts\": 2, \"v\": 2, \"v\": 3}}\n\n{long}\n{{\"ts\": 4, \"v\": 4}}\n"
    );
    let (out, dead, err) = run_input(
        &file_pipeline("in.jsonl", "jsonl", "max_line_bytes = 1024"),
        "in.jsonl",
        text.as_bytes(),
        &[],
    );
    assert_eq!(lines_of(&out, "id"), vec![1, 5]);
    assert_eq!(lines_of(&dead, "line"), vec![2, 4]);
    assert_eq!(dead[0]["reason"], "field `v` appears twice");
    assert!(dead[1]["reason"]
        .as_str()
        .unwrap()
        .contains("5018 bytes, longer than max_line_bytes (1024)"));
    assert_eq!(dead[1]["record"].as_str().unwrap().len(), 1024);
    assert!(err.contains("1 blank line skipped"), "{err}");
}

/// A 20 MB line on standard input is one bad record (its first bytes kept), read in linear
/// time, and the lines after it are read as usual.
#[test]
fn a_huge_stdin_line_is_one_bad_record() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "p.toml",
        &format!(
            "[sources.s]\ntype = \"stdin\"\nschema = {{ ts = \"timestamp\", v = \"i64\" }}\ntimestamp_format = \"epoch_ms\"\n{OUT_AND_DEAD}"
        ),
    );
    let input = format!(
        "{{\"ts\": 1, \"v\": 1}}\n{}\n{{\"ts\": 2, \"v\": 2}}\n",
        "y".repeat(20 << 20)
    );
    let out = weir(
        dir.path(),
        &[
            "run",
            &p,
            "--status-every",
            "0s",
            "--set",
            "sources.s.max_line_bytes=65536",
        ],
        &input,
    );
    ok(&out);
    let good = json_lines(&dir.path().join("out.jsonl"));
    assert_eq!(lines_of(&good, "id"), vec![1, 3]);
    let dead = json_lines(&dir.path().join("dead.jsonl"));
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["line"], 2);
    assert_eq!(dead[0]["record"].as_str().unwrap().len(), 65536);
}

// ---- TCP clients ----

fn tcp_pipeline(port: u16, connections: usize) -> String {
    format!(
        r#"
[sources.s]
type = "tcp"
address = "127.0.0.1:{port}"
max_connections = {connections}
schema = {{ ts = "timestamp", v = "i64" }}
timestamp_format = "epoch_ms"
watermark = {{ max_out_of_orderness = "1h" }}

{OUT_AND_DEAD}"#
    )
}

fn connect(port: u16) -> std::net::TcpStream {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => return s,
            Err(e) if std::time::Instant::now() > deadline => panic!("cannot connect: {e}"),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
}

/// Waits (two minutes at most) until `path` holds `n` lines.
fn wait_for_lines(path: &std::path::Path, n: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let have = std::fs::read_to_string(path)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if have >= n {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{have} of {n} lines");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A client that resets its connection in the middle of a line: that connection is closed,
/// its partial line is one bad record, and the run goes on with the next clients.
#[test]
fn a_client_that_resets_its_connection_does_not_end_the_run() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports(1)[0];
    let p = write(dir.path(), "p.toml", &tcp_pipeline(port, 3));
    let run = spawn_weir(dir.path(), &["run", &p, "--status-every", "0s"]);
    drop(connect(port)); // waits for the listener; counts as the first connection
                         // The second resets (SO_LINGER 0) once Weir has written its whole first line, so the
                         // partial second line has been read.
    let out_path = dir.path().join("out.jsonl");
    let script = format!(
        "import os, socket, struct, time\n\
         s = socket.create_connection(('127.0.0.1', {port}))\n\
         s.sendall(b'{{\"ts\": 1, \"v\": 1}}\\n{{\"ts\": 2, \"v')\n\
         while not (os.path.exists('{out}') and open('{out}').read().count('\\n') >= 1):\n\
         \x20   time.sleep(0.02)\n\
         s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))\n\
         s.close()\n",
        out = out_path.display()
    );
    let status = std::process::Command::new("python3")
        .args(["-c", &script])
        .status()
        .unwrap();
    assert!(status.success());
    let mut third = connect(port);
    third
        .write_all(b"{\"ts\": 3, \"v\": 3}\n{\"ts\": 4, \"v\": 4}\n")
        .unwrap();
    drop(third);
    let out = finish(run);
    ok(&out);
    let good = json_lines(&out_path);
    let mut ts: Vec<u64> = good.iter().map(|r| r["v"].as_u64().unwrap()).collect();
    ts.sort();
    assert_eq!(ts, vec![1, 3, 4]);
    let dead = json_lines(&dir.path().join("dead.jsonl"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["record"], "{\"ts\": 2, \"v");
    assert!(
        dead[0]["reason"].as_str().unwrap().contains("cut short"),
        "{}",
        dead[0]
    );
    assert!(stderr(&out).contains("it is closed, the run goes on"));
}

/// Hundreds of open connections are served by one reader thread, not a thread each.
#[test]
fn many_idle_clients_cost_no_thread_each() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports(1)[0];
    let n = 300;
    let p = write(dir.path(), "p.toml", &tcp_pipeline(port, n));
    let run = spawn_weir(dir.path(), &["run", &p, "--status-every", "0s"]);
    let mut clients: Vec<_> = (0..n)
        .map(|i| {
            let mut c = connect(port);
            writeln!(c, "{{\"ts\": {i}, \"v\": {i}}}").unwrap();
            c
        })
        .collect();
    // Every client's line is out, so every connection has been accepted and read.
    wait_for_lines(&dir.path().join("out.jsonl"), n);
    let status = std::fs::read_to_string(format!("/proc/{}/status", run.id())).unwrap();
    let threads: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(threads < 40, "{threads} threads for {n} connections");
    clients.clear();
    let out = finish(run);
    ok(&out);
    assert_eq!(json_lines(&dir.path().join("out.jsonl")).len(), n);
}

// ---- sinks: never destroy input or each other's output; count only what was written ----

#[test]
fn a_sink_onto_an_input_or_the_dead_letter_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.jsonl"), "{\"ts\": 1, \"v\": 1}\n").unwrap();
    let text = r#"[pipeline]
name = "p"

[sources.s]
type = "file"
path = "in.jsonl"
format = "jsonl"
schema = { ts = "timestamp", v = "i64" }
timestamp_format = "epoch_ms"

[sinks.out]
type = "file"
inputs = ["s"]
path = "./sub/../in.jsonl"
"#;
    let p = write(dir.path(), "p.toml", text);
    let out = weir(dir.path(), &["run", &p], "");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("sink `out` writes `./sub/../in.jsonl`, which source `s` reads"),
        "{err}"
    );
    assert!(err.contains("p.toml:11:1]"), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("in.jsonl")).unwrap(),
        "{\"ts\": 1, \"v\": 1}\n",
        "the input is untouched"
    );

    let text = text.replace("./sub/../in.jsonl", "p.deadletter.jsonl");
    let p = write(dir.path(), "p.toml", &text);
    let out = weir(dir.path(), &["validate", &p], "");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("the pipeline's default dead-letter file"),
        "{err}"
    );
}

/// A sink on a full disk: the run fails, saying where the output ends, and the summary,
/// latency table and report count only what was written (nothing, on /dev/full).
#[test]
fn a_sink_on_a_full_disk_counts_only_what_it_wrote() {
    if !std::path::Path::new("/dev/full").exists() {
        eprintln!("skipped: this system has no /dev/full");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let text =
        format!("{SOURCE}[sinks.out]\ntype = \"file\"\ninputs = [\"s\"]\npath = \"/dev/full\"\n");
    let p = write(dir.path(), "p.toml", &text);
    let out = weir(
        dir.path(),
        &["run", &p, "--status-every", "0s", "--report", "r.json"],
        "",
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("sink `out` cannot write")
            && err.contains("its output ends after the 0 records"),
        "{err}"
    );
    let row = err
        .lines()
        .find(|l| l.trim_start().starts_with("sinks.out "))
        .unwrap_or_else(|| panic!("{err}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[3], "0", "out: {row}");
    let latency = err
        .lines()
        .find(|l| l.trim_start().starts_with("sinks.out processing"))
        .unwrap_or_else(|| panic!("{err}"));
    assert_eq!(latency.split_whitespace().nth(2), Some("0"), "{latency}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("r.json")).unwrap()).unwrap();
    let text = report.to_string();
    assert!(
        !text.contains("\"records\":10"),
        "the report agrees: {text}"
    );
}

#[test]
fn a_fifo_sink_does_not_hold_up_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("out.fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("skipped: mkfifo is not available");
        return;
    }
    let text =
        format!("{SOURCE}[sinks.out]\ntype = \"file\"\ninputs = [\"s\"]\npath = \"out.fifo\"\n");
    let p = write(dir.path(), "p.toml", &text);
    let run = spawn_weir(dir.path(), &["run", &p, "--status-every", "0s"]);
    // The reader comes after the run has started; it reads everything, then the run ends.
    let text = std::fs::read_to_string(&fifo).unwrap();
    assert_eq!(text.lines().count(), 10);
    let out = finish(run);
    ok(&out);
    assert!(stderr(&out).contains("its first write waits for a reader"));
}

#[test]
fn more_workers_than_cores_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("[pipeline]\nworkers = 1024\n{SOURCE}{SINK}").replace("[\"f\"]", "[\"s\"]");
    let p = write(dir.path(), "p.toml", &text);
    let out = weir(dir.path(), &["validate", &p], "");
    let err = stderr(&out);
    ok(&out);
    assert!(err.contains("1024 workers on a machine with"), "{err}");
    assert!(err.contains("p.toml:2:11]"), "{err}");
}

/// SIGTERM ends a run as Ctrl-C does: open windows are flushed and the summary is printed.
#[test]
fn sigterm_drains_the_run_and_prints_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"
[sources.s]
type = "generator"
profile = "iot"
rate = 1000

[transforms.w]
type = "window"
inputs = ["s"]
kind = "tumbling"
size = "1h"
aggregates = { n = "count(*)" }

[sinks.out]
type = "file"
inputs = ["w"]
path = "out.jsonl"
"#;
    let p = write(dir.path(), "p.toml", text);
    // Status lines go to a file; once one shows events read, the run is under way.
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    let run = std::process::Command::new(assert_cmd::cargo::cargo_bin("weir"))
        .current_dir(dir.path())
        .args([
            "run",
            &p,
            "--unbounded",
            "--status-every",
            "100ms",
            "--progress",
            "never",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !std::fs::read_to_string(dir.path().join("log"))
        .unwrap()
        .contains("sources: ")
    {
        assert!(std::time::Instant::now() < deadline, "no status line");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &run.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = finish(run);
    let err = std::fs::read_to_string(dir.path().join("log")).unwrap();
    assert_eq!(out.status.code(), Some(130), "as after Ctrl-C: {err}");
    assert!(err.contains("stopped after"), "the summary: {err}");
    let windows = json_lines(&dir.path().join("out.jsonl"));
    let total: u64 = windows.iter().map(|w| w["n"].as_u64().unwrap()).sum();
    let sourced: u64 = err
        .lines()
        .find(|l| l.trim_start().starts_with("sources.s "))
        .and_then(|l| l.split_whitespace().nth(3))
        .unwrap()
        .replace(',', "")
        .parse()
        .unwrap();
    assert_eq!(
        total, sourced,
        "every event generated is in a flushed window"
    );
}

// ---- cluster security ----

/// The command for process `id` of a two-process run of the alarm counter, writing `out`; in
/// network namespace `netns` if given.
fn cluster_command(
    dir: &std::path::Path,
    hosts: &str,
    id: &str,
    out: &str,
    netns: Option<&str>,
) -> std::process::Command {
    let weir = assert_cmd::cargo::cargo_bin("weir");
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = std::process::Command::new("ip");
            c.args(["netns", "exec", ns]).arg(weir);
            c
        }
        None => std::process::Command::new(weir),
    };
    cmd.current_dir(dir)
        .args(["run", "pipelines/iot-alarm-counter.toml", "--workers", "1"])
        .args([
            "--status-every",
            "0s",
            "--processes",
            "2",
            "--process-id",
            id,
        ])
        .args([
            "--hostfile",
            hosts,
            "--set",
            &format!("sinks.out.path=\"{out}\""),
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    cmd
}

/// Starts process `id` of a two-process run of the alarm counter, with `secret`.
fn cluster_process(
    dir: &std::path::Path,
    hosts: &str,
    id: &str,
    secret: &str,
    out: &str,
) -> std::process::Child {
    cluster_command(dir, hosts, id, out, None)
        .env("WEIR_CLUSTER_SECRET", secret)
        .spawn()
        .unwrap()
}

/// Strangers reach process 0's port before process 1 joins: one connects and closes, one stays
/// silent, one sends garbage, one sends the index of process 1 as timely's own handshake would.
/// The cluster forms with the real process 1 all the same and gives the single process's
/// results; a process 1 with the wrong secret is refused and says why.
#[test]
fn strangers_cannot_crash_hang_or_join_a_cluster() {
    use std::io::Write;
    let dir = workspace();
    run_ok(
        dir.path(),
        "pipelines/iot-alarm-counter.toml",
        &["--set", "sinks.out.path=\"one.jsonl\""],
    );
    let one = json_multiset(&std::fs::read_to_string(dir.path().join("one.jsonl")).unwrap());
    assert!(one.len() > 100);

    let ports = free_ports(2);
    let hosts = write(
        dir.path(),
        "hosts",
        &format!("127.0.0.1:{}\n127.0.0.1:{}\n", ports[0], ports[1]),
    );
    let secret = "the right secret, 32 bytes long..";
    let zero = cluster_process(dir.path(), &hosts, "0", secret, "cluster.jsonl");
    let closes = connect(ports[0]);
    drop(closes);
    let _silent = connect(ports[0]);
    let mut garbage = connect(ports[0]);
    garbage.write_all(&[0xAB; 4096]).unwrap();
    let mut impostor = connect(ports[0]);
    impostor.write_all(&1u64.to_be_bytes()).unwrap();
    impostor.write_all(&1u64.to_le_bytes()).unwrap();

    // A process 1 with another secret is refused, and stops saying so.
    let wrong = cluster_process(
        dir.path(),
        &hosts,
        "1",
        "a wrong secret of 32 bytes length",
        "x.jsonl",
    );
    let wrong = finish(wrong);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(
        stderr(&wrong).contains("refused this process (1)"),
        "{}",
        stderr(&wrong)
    );

    let real = cluster_process(dir.path(), &hosts, "1", secret, "cluster.jsonl");
    let (zero, real) = (finish(zero), finish(real));
    ok(&zero);
    ok(&real);
    let log = stderr(&zero);
    assert!(log.contains("refused a cluster connection"), "{log}");
    assert_eq!(
        json_multiset(&std::fs::read_to_string(dir.path().join("cluster.jsonl")).unwrap()),
        one
    );
}

/// Two network namespaces joined by a veth pair: two hosts with their own addresses, removed
/// when dropped.
struct Hosts {
    names: [String; 2],
    addresses: [String; 2],
}

impl Hosts {
    fn new() -> Result<Hosts, String> {
        let id = std::process::id();
        let names = [format!("weir-a-{id}"), format!("weir-b-{id}")];
        let net = format!("10.{}.{}", 200 + id % 50, (id / 50) % 250);
        let addresses = [format!("{net}.1"), format!("{net}.2")];
        let hosts = Hosts { names, addresses };
        let [a, b] = &hosts.names;
        let (va, vb) = (format!("wa{}", id % 100_000), format!("wb{}", id % 100_000));
        let steps: Vec<Vec<String>> = vec![
            vec!["netns".into(), "add".into(), a.clone()],
            vec!["netns".into(), "add".into(), b.clone()],
            vec!["link", "add", &va, "type", "veth", "peer", "name", &vb]
                .into_iter()
                .map(String::from)
                .collect(),
            vec![
                "link".into(),
                "set".into(),
                va.clone(),
                "netns".into(),
                a.clone(),
            ],
            vec![
                "link".into(),
                "set".into(),
                vb.clone(),
                "netns".into(),
                b.clone(),
            ],
            vec![
                "-n".into(),
                a.clone(),
                "addr".into(),
                "add".into(),
                format!("{}/24", hosts.addresses[0]),
                "dev".into(),
                va.clone(),
            ],
            vec![
                "-n".into(),
                b.clone(),
                "addr".into(),
                "add".into(),
                format!("{}/24", hosts.addresses[1]),
                "dev".into(),
                vb.clone(),
            ],
            vec![
                "-n".into(),
                a.clone(),
                "link".into(),
                "set".into(),
                va.clone(),
                "up".into(),
            ],
            vec![
                "-n".into(),
                b.clone(),
                "link".into(),
                "set".into(),
                vb.clone(),
                "up".into(),
            ],
            vec![
                "-n".into(),
                a.clone(),
                "link".into(),
                "set".into(),
                "lo".into(),
                "up".into(),
            ],
            vec![
                "-n".into(),
                b.clone(),
                "link".into(),
                "set".into(),
                "lo".into(),
                "up".into(),
            ],
        ];
        for s in steps {
            let out = std::process::Command::new("ip")
                .args(&s)
                .output()
                .map_err(|e| format!("cannot run `ip`: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "`ip {}` failed: {}",
                    s.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        Ok(hosts)
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", n])
                .status();
        }
    }
}

/// A cluster run as two machines would run it: each process in its own network namespace with
/// its own address, authenticated by a secret, gives the single process's results.
#[test]
fn a_cluster_across_two_network_namespaces_gives_the_results_of_one() {
    let hosts = match Hosts::new() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("skipped: network namespaces cannot be made here ({e})");
            return;
        }
    };
    let dir = workspace();
    run_ok(
        dir.path(),
        "pipelines/iot-alarm-counter.toml",
        &["--set", "sinks.out.path=\"one.jsonl\""],
    );
    let one = json_multiset(&std::fs::read_to_string(dir.path().join("one.jsonl")).unwrap());
    let hostfile = write(
        dir.path(),
        "hosts",
        &format!("{}:2101\n{}:2101\n", hosts.addresses[0], hosts.addresses[1]),
    );
    // Not on loopback: without a secret, the cluster is refused.
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &hosts.names[0]])
        .arg(assert_cmd::cargo::cargo_bin("weir"))
        .args([
            "run",
            "pipelines/iot-alarm-counter.toml",
            "--processes",
            "2",
            "--hostfile",
            &hostfile,
        ])
        .current_dir(dir.path())
        .env_remove("WEIR_CLUSTER_SECRET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("needs a secret they share"),
        "{}",
        stderr(&out)
    );

    std::fs::write(
        dir.path().join("cluster.key"),
        "a secret beside the hostfile, 40 bytes\n",
    )
    .unwrap();
    let procs: Vec<_> = (0..2)
        .map(|p| {
            cluster_command(
                dir.path(),
                &hostfile,
                &p.to_string(),
                "cluster.jsonl",
                Some(&hosts.names[p]),
            )
            .env_remove("WEIR_CLUSTER_SECRET")
            .spawn()
            .unwrap()
        })
        .collect();
    for p in procs {
        ok(&finish(p));
    }
    assert_eq!(
        json_multiset(&std::fs::read_to_string(dir.path().join("cluster.jsonl")).unwrap()),
        one
    );
}

// ---- Kafka security settings ----

fn kafka_pipeline(options: &str) -> String {
    format!(
        r#"[sources.k]
type = "kafka"
brokers = "127.0.0.1:9"
topics = ["t"]
group_id = "g"
schema = {{ ts = "timestamp", v = "i64" }}
librdkafka_options = {{ {options} }}

[sinks.out]
type = "null"
inputs = ["k"]
"#
    )
}

/// TLS and SASL (PLAIN, SCRAM) are built in: librdkafka accepts them at validation. Secrets
/// come from environment variables; one written in the file draws a warning.
#[test]
fn kafka_tls_and_sasl_settings_with_secrets_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let secure = r#""security.protocol" = "SASL_SSL", "sasl.mechanism" = "SCRAM-SHA-512", "sasl.username" = "weir", "sasl.password" = "${WEIR_TEST_KAFKA_PASSWORD}""#;
    let p = write(dir.path(), "p.toml", &kafka_pipeline(secure));
    let out = assert_cmd::Command::cargo_bin("weir")
        .unwrap()
        .current_dir(dir.path())
        .args(["validate", &p])
        .env("WEIR_TEST_KAFKA_PASSWORD", "s3cret")
        .output()
        .unwrap();
    ok(&out);
    assert!(!stderr(&out).contains("s3cret"), "{}", stderr(&out));
    for plain in [
        r#""security.protocol" = "SSL""#,
        r#""security.protocol" = "SASL_PLAINTEXT", "sasl.mechanism" = "PLAIN""#,
    ] {
        let p = write(dir.path(), "p.toml", &kafka_pipeline(plain));
        ok(&weir(dir.path(), &["validate", &p], ""));
    }

    // The variable is not set: an error at its place, saying what to do.
    let p = write(dir.path(), "p.toml", &kafka_pipeline(secure));
    let out = assert_cmd::Command::cargo_bin("weir")
        .unwrap()
        .current_dir(dir.path())
        .args(["validate", &p])
        .env_remove("WEIR_TEST_KAFKA_PASSWORD")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(
            "refers to the environment variable WEIR_TEST_KAFKA_PASSWORD, which is not set"
        ),
        "{err}"
    );
    assert!(err.contains("p.toml:7:"), "{err}");

    // A password in the file: valid, with a warning.
    let literal = r#""security.protocol" = "SASL_SSL", "sasl.mechanism" = "PLAIN", "sasl.username" = "u", "sasl.password" = "hunter2""#;
    let p = write(dir.path(), "p.toml", &kafka_pipeline(literal));
    let out = weir(dir.path(), &["validate", &p], "");
    ok(&out);
    assert!(
        stderr(&out).contains("`sasl.password` is written in the pipeline file"),
        "{}",
        stderr(&out)
    );
}

/// The TCP source's address may name the host (`localhost:PORT`), as before its event loop.
#[test]
fn a_tcp_source_listens_on_a_host_name() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports(1)[0];
    let text = tcp_pipeline(port, 1).replace("127.0.0.1:", "localhost:");
    let p = write(dir.path(), "p.toml", &text);
    let run = spawn_weir(dir.path(), &["run", &p, "--status-every", "0s"]);
    let mut c = connect(port);
    c.write_all(b"{\"ts\": 1, \"v\": 7}\n").unwrap();
    drop(c);
    ok(&finish(run));
    let out = json_lines(&dir.path().join("out.jsonl"));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["v"], 7);
}
