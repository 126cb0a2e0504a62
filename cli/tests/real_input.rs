//! Real-world input: timestamps as people write them (ISO 8601 variants, strftime-style
//! patterns, local times in an IANA zone), end to end through `weir run`, against results
//! computed by hand; and the configuration errors of the timestamp keys.

mod common;

use common::*;

/// Runs `weir` with `args` in `dir`, asserting exit status 2 (a configuration error);
/// returns standard error.
fn config_error(dir: &std::path::Path, args: &[&str]) -> String {
    let out = weir(dir, args, "");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "weir {args:?}: {err}");
    err
}

/// A fresh directory holding `in.csv` and the pipeline `p.toml`; the pipeline's path.
fn csv_case(csv: &str, pipeline: &str) -> (tempfile::TempDir, String) {
    let dir = workspace();
    write(dir.path(), "in.csv", csv);
    let p = write(dir.path(), "p.toml", pipeline);
    (dir, p)
}

/// Readings from Seoul (UTC+9, no daylight saving) written `YYYY-MM-DD HH:MM:SS` without an
/// offset, in 1-hour windows per device. By hand: 19:10 and 19:50 local are 10:10 and 10:50
/// UTC (window 10:00Z), 20:05 local is 11:05 UTC (window 11:00Z).
const SEOUL_CSV: &str = "\
id,ts,device,temperature
1,2026-03-01 19:10:00,a,20.0
2,2026-03-01 19:50:00,a,22.0
3,2026-03-01 19:55:30,b,30.5
4,2026-03-01 20:05:00,a,24.0
";

fn seoul_pipeline(format: &str) -> String {
    format!(
        r#"[pipeline]
name = "seoul"

[sources.readings]
type = "file"
path = "in.csv"
format = "csv"
schema = {{ id = "u64", ts = "timestamp", device = "string", temperature = "f64" }}
{format}
timezone = "Asia/Seoul"

[transforms.hourly]
type = "window"
inputs = ["readings"]
size = "1h"
group_by = ["device"]
aggregates = {{ n = "count(*)", avg_t = "avg(temperature)" }}

[sinks.out]
type = "file"
inputs = ["hourly"]
path = "out.jsonl"
format = "jsonl"
"#
    )
}

#[test]
fn local_times_in_a_zone_land_in_the_hand_computed_windows() {
    let expected = json_multiset(
        r#"{"window_start":"2026-03-01T10:00:00.000Z","window_end":"2026-03-01T11:00:00.000Z","device":"a","n":2,"avg_t":21.0}
{"window_start":"2026-03-01T10:00:00.000Z","window_end":"2026-03-01T11:00:00.000Z","device":"b","n":1,"avg_t":30.5}
{"window_start":"2026-03-01T11:00:00.000Z","window_end":"2026-03-01T12:00:00.000Z","device":"a","n":1,"avg_t":24.0}"#,
    );
    // The default format (ISO 8601 with a space and no offset), and the same as a pattern.
    for format in ["", "timestamp_format = \"%Y-%m-%d %H:%M:%S\""] {
        for config in configurations() {
            let (dir, p) = csv_case(SEOUL_CSV, &seoul_pipeline(format));
            let err = run_ok(dir.path(), &p, &config);
            assert!(err.contains("dead-lettered"), "{err}");
            let out = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
            assert_eq!(json_multiset(&out), expected, "{format} {config:?}\n{err}");
            assert!(
                !dir.path().join("seoul.deadletter.jsonl").exists() || {
                    std::fs::read_to_string(dir.path().join("seoul.deadletter.jsonl"))
                        .unwrap()
                        .is_empty()
                }
            );
        }
    }
}

/// An access log's `[01/Mar/2026:19:00:00 +0900]` style, read by a pattern with an offset,
/// from JSON lines; a line whose time does not fit is dead-lettered with the pattern named.
#[test]
fn a_pattern_with_an_offset_reads_json_lines() {
    let dir = workspace();
    write(
        dir.path(),
        "in.jsonl",
        r#"{"id": 1, "ts": "01/Mar/2026:19:00:00 +0900", "path": "/a"}
{"id": 2, "ts": "01/Mar/2026:10:00:01 +0000", "path": "/b"}
{"id": 3, "ts": "2026-03-01T10:00:02Z", "path": "/c"}
"#,
    );
    let p = write(
        dir.path(),
        "p.toml",
        r#"[pipeline]
name = "log"
[sources.log]
type = "file"
path = "in.jsonl"
format = "jsonl"
schema = { id = "u64", ts = "timestamp", path = "string" }
timestamp_format = "%d/%b/%Y:%H:%M:%S %z"
[sinks.out]
type = "file"
inputs = ["log"]
path = "out.jsonl"
format = "jsonl"
"#,
    );
    let err = run_ok(dir.path(), &p, &[]);
    let out = json_lines(&dir.path().join("out.jsonl"));
    let got: Vec<(u64, &str)> = out
        .iter()
        .map(|v| (v["id"].as_u64().unwrap(), v["ts"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, "2026-03-01T10:00:00.000Z"),
            (2, "2026-03-01T10:00:01.000Z")
        ],
        "{err}"
    );
    let dead = json_lines(&dir.path().join("log.deadletter.jsonl"));
    assert_eq!(dead.len(), 1, "{err}");
    let reason = dead[0]["reason"].as_str().unwrap();
    assert!(reason.contains("%d/%b/%Y:%H:%M:%S %z"), "{reason}");
}

/// Each timestamp key mistake names the file, line and column and says what to do.
#[test]
fn timestamp_key_errors_name_the_place() {
    let cases = [
        ("timezone = \"Asia/Seol\"", "9:12", "IANA time zone"),
        (
            "timestamp_format = \"epoch_ms\"\ntimezone = \"UTC\"",
            "9:20",
            "no time zone",
        ),
        (
            "timestamp_format = \"%H:%M\"",
            "9:20",
            "year, month and day",
        ),
        (
            "timestamp_format = \"unix\"",
            "9:20",
            "strftime-style pattern",
        ),
    ];
    for (keys, line_col, advice) in cases {
        let dir = workspace();
        let text = format!(
            r#"[pipeline]
name = "t"

[sources.s]
type = "file"
path = "in.csv"
format = "csv"
schema = {{ ts = "timestamp", v = "i64" }}
{keys}

[sinks.out]
type = "stdout"
inputs = ["s"]
"#
        );
        let p = write(dir.path(), "p.toml", &text);
        let err = config_error(dir.path(), &["validate", &p]);
        assert!(
            err.contains(&format!("p.toml:{line_col}]")),
            "{keys}: wants {line_col}\n{err}"
        );
        assert!(err.contains("sources.s"), "{keys}: {err}");
        assert!(err.contains(advice), "{keys}: {err}");
    }
}

/// A CSV of `n` readings with `bad` of them (every `n / bad`-th) carrying a day-first date the
/// default format cannot read.
fn csv_with_bad(n: usize, bad: usize) -> String {
    let mut s = String::from("id,ts,v\n");
    for i in 0..n {
        let ts = if bad > 0 && i % (n / bad) == 0 && i / (n / bad) < bad {
            format!("01/03/2026 10:00:{:02}", i % 60)
        } else {
            format!("2026-03-01 10:00:{:02}", i % 60)
        };
        s.push_str(&format!("{i},{ts},{i}\n"));
    }
    s
}

fn csv_pipeline(extra: &str) -> String {
    format!(
        r#"[pipeline]
name = "bad"

[sources.s]
type = "file"
path = "in.csv"
format = "csv"
schema = {{ id = "u64", ts = "timestamp", v = "i64" }}
{extra}

[sinks.out]
type = "file"
inputs = ["s"]
path = "out.jsonl"
format = "jsonl"
"#
    )
}

/// Runs the pipeline over `csv` with `flags`: exit status, standard error, records written.
fn run_csv(csv: &str, extra: &str, flags: &[&str]) -> (Option<i32>, String, usize) {
    let (dir, p) = csv_case(csv, &csv_pipeline(extra));
    let mut args = vec!["run", p.as_str(), "--status-every", "0s"];
    args.extend_from_slice(flags);
    let out = weir(dir.path(), &args, "");
    let written = std::fs::read_to_string(dir.path().join("out.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0);
    (out.status.code(), stderr(&out), written)
}

#[test]
fn a_source_with_only_bad_records_fails_the_run() {
    let (code, err, written) = run_csv(&csv_with_bad(50, 50), "", &[]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(written, 0);
    assert!(
        err.contains("source `s` produced no good record: all 50 records it read were bad"),
        "{err}"
    );
    assert!(
        err.contains(
            "first reasons: in.csv:2: field `ts`: `01/03/2026 10:00:00` is not an ISO 8601 time"
        ),
        "{err}"
    );
    assert!(
        err.contains("help: check its schema and timestamp_format"),
        "{err}"
    );
    // Every bad record is still dead-lettered and counted.
    assert!(err.contains("bad.deadletter.jsonl"), "{err}");
}

#[test]
fn max_error_rate_fails_a_run_past_it_and_not_below() {
    // 10 bad of 200: 5%, over 1% within the first 1,000 records.
    let (code, err, _) = run_csv(&csv_with_bad(200, 10), "max_error_rate = 0.01", &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("source `s`"), "{err}");
    assert!(err.contains("over its max_error_rate of 1%"), "{err}");
    assert!(err.contains("first reasons: in.csv:2: field `ts`"), "{err}");
    // Under 100 records the sliding check waits; the run's end checks the whole run: 2 of 50.
    let (code, err, _) = run_csv(&csv_with_bad(50, 2), "max_error_rate = 0.01", &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("2 of its 50 records were bad (4.0%), over its max_error_rate of 1%"),
        "{err}"
    );
    // 10 bad of 200 is within 10%.
    let (code, err, written) = run_csv(&csv_with_bad(200, 10), "max_error_rate = 0.1", &[]);
    assert_eq!((code, written), (Some(0), 190), "{err}");
    // Not a fraction: a configuration error at the key.
    let (code, err, _) = run_csv(&csv_with_bad(10, 0), "max_error_rate = 1.5", &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("p.toml:9:18]"), "{err}");
    assert!(err.contains("such as 0.01"), "{err}");
}

#[test]
fn over_one_percent_bad_warns_and_deny_warnings_makes_it_fail() {
    // 3 bad of 200: 1.5%.
    let (code, err, written) = run_csv(&csv_with_bad(200, 3), "", &[]);
    assert_eq!((code, written), (Some(0), 197), "{err}");
    assert!(
        err.contains("warning: source `s`: 3 of its 200 records were bad (1.5%); top reasons: field `ts`: `…` is not an ISO 8601 time"),
        "{err}"
    );
    let (code, err, _) = run_csv(&csv_with_bad(200, 3), "", &["--deny-warnings"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("denied by --deny-warnings"), "{err}");
    // Quiet: nothing but errors, so nothing at all here.
    let (code, err, written) = run_csv(&csv_with_bad(200, 3), "", &["--quiet"]);
    assert_eq!((code, written, err.as_str()), (Some(0), 197, ""));
    // 1 bad of 200 (0.5%) does not warn.
    let (code, err, _) = run_csv(&csv_with_bad(200, 1), "", &["--deny-warnings"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("warning"), "{err}");
    // Quiet still shows an error.
    let (code, err, _) = run_csv(&csv_with_bad(50, 50), "", &["--quiet"]);
    assert_eq!(code, Some(1));
    assert!(
        err.starts_with("error: source `s` produced no good record"),
        "{err}"
    );
}

#[test]
fn validate_deny_warnings_and_quiet() {
    let dir = workspace();
    let text = r#"[pipeline]
name = "w"
[sources.g]
type = "generator"
profile = "iot"
events = 10
disorder = "5s"
[sinks.out]
type = "null"
inputs = ["g"]
"#;
    let p = write(dir.path(), "p.toml", text);
    let out = weir(dir.path(), &["validate", &p], "");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("disorder") && err.contains("is valid"),
        "{err}"
    );
    let out = weir(dir.path(), &["validate", &p, "--quiet"], "");
    assert_eq!((out.status.code(), stderr(&out)), (Some(0), String::new()));
    for cmd in ["validate", "run"] {
        let err = config_error(dir.path(), &[cmd, &p, "--deny-warnings"]);
        assert!(
            err.contains("p.toml:7:12]") && err.contains("nothing was run"),
            "{cmd}: {err}"
        );
    }
}

/// A stateless CSV -> CSV job over a file without timestamps: `event_time = "ingest"`.
#[test]
fn a_stateless_job_needs_no_timestamp() {
    for config in configurations() {
        let (dir, p) = csv_case(
            "name,qty\n\"Widget, large\",3\nbolt,0\nnut,12\n",
            r#"[pipeline]
name = "copy"
[sources.s]
type = "file"
path = "in.csv"
format = "csv"
schema = { name = "string", qty = "i64" }
event_time = "ingest"
[transforms.some]
type = "filter"
inputs = ["s"]
condition = "qty > 0"
[transforms.cols]
type = "map"
inputs = ["some"]
select = ["name", "qty"]
[sinks.out]
type = "file"
inputs = ["cols"]
path = "out.csv"
format = "csv"
"#,
        );
        let err = run_ok(dir.path(), &p, &config);
        let mut lines: Vec<String> = std::fs::read_to_string(dir.path().join("out.csv"))
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        lines[1..].sort();
        assert_eq!(
            lines,
            vec!["name,qty", "\"Widget, large\",3", "nut,12"],
            "{config:?}\n{err}"
        );
    }
}

/// A window over processing time counts every record once, in the window of the time it was
/// read. The window is 100,000 days long, so a run falls in one window whenever it happens.
#[test]
fn a_window_over_ingest_time_is_a_processing_time_window() {
    let mut csv = String::from("device,v\n");
    for i in 0..300 {
        csv.push_str(&format!("d{},{i}\n", i % 3));
    }
    let text = r#"[pipeline]
name = "pt"
[sources.s]
type = "file"
path = "in.csv"
format = "csv"
schema = { device = "string", v = "i64" }
event_time = "ingest"
[transforms.w]
type = "window"
inputs = ["s"]
size = "100000d"
group_by = ["device"]
aggregates = { n = "count(*)", total = "sum(v)" }
[sinks.out]
type = "file"
inputs = ["w"]
path = "out.jsonl"
format = "jsonl"
"#;
    let (dir, p) = csv_case(&csv, text);
    let out = weir(dir.path(), &["validate", &p], "");
    assert!(
        stderr(&out).contains("transforms.w: a processing-time window"),
        "{}",
        stderr(&out)
    );
    for config in configurations() {
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as i64;
        let err = run_ok(dir.path(), &p, &config);
        let rows = json_lines(&dir.path().join("out.jsonl"));
        let mut got: Vec<(String, i64, i64)> = rows
            .iter()
            .map(|r| {
                let start =
                    weir_operators::time::parse_rfc3339(r["window_start"].as_str().unwrap())
                        .unwrap();
                let end =
                    weir_operators::time::parse_rfc3339(r["window_end"].as_str().unwrap()).unwrap();
                assert!(start <= before && before < end, "{r}");
                (
                    r["device"].as_str().unwrap().to_string(),
                    r["n"].as_i64().unwrap(),
                    r["total"].as_i64().unwrap(),
                )
            })
            .collect();
        got.sort();
        // By hand: device d<k> gets v = k, k+3, ..., 100 values summing to 100k + 3 * 4950.
        let want: Vec<(String, i64, i64)> = (0..3)
            .map(|k| (format!("d{k}"), 100, 100 * k + 14_850))
            .collect();
        assert_eq!(got, want, "{config:?}\n{err}");
    }
}

#[test]
fn weir_schema_prints_keys_to_paste() {
    let dir = workspace();
    write(
        dir.path(),
        "events.jsonl",
        r#"{"id": 1, "at": "2026-03-01T10:00:00+09:00", "user": "u1", "amount": 3, "flag": true, "gone": null}
{"id": 2, "at": "2026-03-01T10:00:01+09:00", "user": "u2", "amount": 2.5, "flag": false}

{"id": 3, "at": "2026-03-01T10:00:02+09:00", "user": 7, "amount": 1, "flag": null, "gone": null}
"#,
    );
    let out = weir(dir.path(), &["schema", "events.jsonl"], "");
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "schema = { id = \"i64\", at = \"timestamp\", user = \"string\", amount = \"f64\", flag = \"bool\", gone = \"string\" }\ntimestamp_field = \"at\"\n"
    );
    assert!(
        err.contains("inferred from the first 3 records of events.jsonl"),
        "{err}"
    );
    assert!(
        err.contains("note: `gone` was NULL in every record read: typed string"),
        "{err}"
    );
    write(
        dir.path(),
        "log.csv",
        "host;when;bytes\na;01/Mar/2026:19:00:00 +0900;10\nb;01/Mar/2026:19:00:01 +0900;\n",
    );
    let out = weir(dir.path(), &["schema", "log.csv", "--delimiter", ";"], "");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "schema = { host = \"string\", when = \"timestamp\", bytes = \"i64\" }\ntimestamp_field = \"when\"\ntimestamp_format = \"%d/%b/%Y:%H:%M:%S %z\"\n",
        "{}",
        stderr(&out)
    );
    let out = weir(dir.path(), &["schema", "missing.csv"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot read `missing.csv`"));
}

/// `schema = "infer"`: inferred from the first 1,000 records, printed, then held to: a later
/// record that does not fit is a bad record.
#[test]
fn an_inferred_schema_is_printed_and_then_held_to() {
    let mut csv = String::from("id,ts,v\n");
    for i in 0..1005 {
        let v = if i == 1002 {
            "n/a".to_string()
        } else {
            i.to_string()
        };
        csv.push_str(&format!(
            "{i},2026-03-01 10:{:02}:{:02},{v}\n",
            i / 60 % 60,
            i % 60
        ));
    }
    let text = r#"[pipeline]
name = "inf"
[sources.s]
type = "file"
path = "in.csv"
format = "csv"
schema = "infer"
[transforms.w]
type = "window"
inputs = ["s"]
size = "1d"
aggregates = { n = "count(*)", total = "sum(v)" }
[sinks.out]
type = "file"
inputs = ["w"]
path = "out.jsonl"
format = "jsonl"
"#;
    for config in configurations() {
        let (dir, p) = csv_case(&csv, text);
        let err = run_ok(dir.path(), &p, &config);
        assert!(
            err.contains("weir: sources.s: schema inferred from the first 1000 records of in.csv:\n  schema = { id = \"i64\", ts = \"timestamp\", v = \"i64\" }\n  timestamp_field = \"ts\""),
            "{err}"
        );
        let rows = json_lines(&dir.path().join("out.jsonl"));
        // By hand: 1,004 good records, v = 0..1004 without 1002.
        let total: i64 = (0..1005).filter(|&i| i != 1002).sum();
        assert_eq!(rows.len(), 1, "{err}");
        assert_eq!(
            (rows[0]["n"].as_i64(), rows[0]["total"].as_i64()),
            (Some(1004), Some(total))
        );
        let dead = json_lines(&dir.path().join("inf.deadletter.jsonl"));
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0]["line"], 1004);
    }
    // Nothing to infer from: an error at the key.
    let (dir, p) = csv_case("id,ts,v\n", text);
    let err = config_error(dir.path(), &["validate", &p]);
    assert!(
        err.contains("p.toml:7:10]") && err.contains("has no record to infer a schema from"),
        "{err}"
    );
}

/// A CSV dead letter keeps the line as read, quotes and all; and a user's sink named
/// `dead_letter` does not share its summary row with the default dead-letter sink.
#[test]
fn csv_dead_letters_keep_the_raw_line_and_summary_rows_have_one_name() {
    let (dir, p) = csv_case(
        "id,ts,name\n1,2026-03-01 10:00:00,\"a, b\"\n2,bad,\"x \"\"q\"\" y\"\n",
        r#"[pipeline]
name = "q"
[sources.s]
type = "file"
path = "in.csv"
format = "csv"
schema = { id = "u64", ts = "timestamp", name = "string" }
[sinks.dead_letter]
type = "null"
inputs = ["s"]
"#,
    );
    let err = run_ok(dir.path(), &p, &[]);
    let dead = json_lines(&dir.path().join("q.deadletter.jsonl"));
    assert_eq!(dead.len(), 1, "{err}");
    assert_eq!(dead[0]["record"], "2,bad,\"x \"\"q\"\" y\"");
    let rows: Vec<&str> = err
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.starts_with("sinks."))
        .collect();
    // The component table and the latency table.
    assert_eq!(
        rows,
        vec![
            "sinks.dead_letter",
            "sinks.dead_letter_default",
            "sinks.dead_letter"
        ],
        "{err}"
    );
}

#[test]
fn completions_are_printed_for_each_shell() {
    let dir = workspace();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = weir(dir.path(), &["completions", shell], "");
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let text = String::from_utf8(out.stdout).unwrap();
        // Every subcommand is offered.
        for cmd in ["run", "validate", "schema", "compare", "produce", "graph"] {
            assert!(text.contains(cmd), "{shell} lacks {cmd}");
        }
    }
    let out = weir(dir.path(), &["completions", "tcsh"], "");
    assert_eq!(out.status.code(), Some(2));
}

/// Nested JSON in and out: fields declared by dotted paths read nested objects, expressions
/// and `group_by` use the paths, and sinks write them nested again. By hand: Seoul has users 7
/// and 9 (ids 1 and 3), Busan user 8 (id 2); record 4's `user` is null (its fields NULL, in
/// the NULL city group), record 5's is a number (a bad record).
#[test]
fn nested_json_in_and_out_by_dotted_paths() {
    let input = r#"{"id": 1, "ts": "2026-03-01T10:00:00Z", "user": {"id": 7, "geo": {"city": "Seoul"}}, "v": 2}
{"id": 2, "ts": "2026-03-01T10:00:01Z", "user": {"geo": {"city": "Busan"}, "id": 8, "extra": [1, 2]}, "v": 3}
{"id": 3, "ts": "2026-03-01T10:00:02Z", "user": {"id": 9, "geo": {"city": "Seoul", "zip": "04524"}}, "v": 4}
{"id": 4, "ts": "2026-03-01T10:00:03Z", "user": null, "v": 5}
{"id": 5, "ts": "2026-03-01T10:00:04Z", "user": 5, "v": 6}
"#;
    let text = r#"[pipeline]
name = "nested"
[sources.s]
type = "file"
path = "in.jsonl"
format = "jsonl"
schema = { id = "u64", ts = "timestamp", "user.id" = "u64", "user.geo.city" = "string", v = "i64" }
[transforms.m]
type = "map"
inputs = ["s"]
select = ["id", "user.geo.city", "user.id"]
compute = { "user.double" = "user.id * 2" }
[transforms.w]
type = "window"
inputs = ["s"]
size = "1m"
group_by = ["user.geo.city"]
aggregates = { n = "count(*)", users = "sum(user.id)" }
[sinks.rows]
type = "file"
inputs = ["m"]
path = "rows.jsonl"
[sinks.cities]
type = "file"
inputs = ["w"]
path = "cities.jsonl"
"#;
    let rows = json_multiset(
        r#"{"id":1,"user":{"geo":{"city":"Seoul"},"id":7,"double":14}}
{"id":2,"user":{"geo":{"city":"Busan"},"id":8,"double":16}}
{"id":3,"user":{"geo":{"city":"Seoul"},"id":9,"double":18}}
{"id":4,"user":{"geo":{"city":null},"id":null,"double":null}}"#,
    );
    let cities = json_multiset(
        r#"{"user":{"geo":{"city":"Seoul"}},"window_start":"2026-03-01T10:00:00.000Z","window_end":"2026-03-01T10:01:00.000Z","n":2,"users":16}
{"user":{"geo":{"city":"Busan"}},"window_start":"2026-03-01T10:00:00.000Z","window_end":"2026-03-01T10:01:00.000Z","n":1,"users":8}
{"user":{"geo":{"city":null}},"window_start":"2026-03-01T10:00:00.000Z","window_end":"2026-03-01T10:01:00.000Z","n":1,"users":null}"#,
    );
    in_both_modes_on_1_and_2_workers(
        input,
        text,
        &[("rows.jsonl", rows), ("cities.jsonl", cities)],
        (
            "nested.deadletter.jsonl",
            "field `user` is not an object, so it has no fields",
        ),
    );
}

/// Runs pipeline `text` over `input` (as in.jsonl) in both modes on 1 and 2 workers: each
/// output file holds its expected records, and the dead-letter file one record, with `reason`;
/// returns the runs' standard errors.
fn in_both_modes_on_1_and_2_workers(
    input: &str,
    text: &str,
    outputs: &[(&str, Vec<String>)],
    (dead_file, reason): (&str, &str),
) -> Vec<String> {
    let mut logs = Vec::new();
    for config in configurations().into_iter().filter(|c| !c.contains(&"4")) {
        let dir = workspace();
        write(dir.path(), "in.jsonl", input);
        let p = write(dir.path(), "p.toml", text);
        let err = run_ok(dir.path(), &p, &config);
        for (file, want) in outputs {
            let got = json_multiset(&std::fs::read_to_string(dir.path().join(file)).unwrap());
            assert_eq!(&got, want, "{file} {config:?}\n{err}");
        }
        let dead = json_lines(&dir.path().join(dead_file));
        assert_eq!(dead.len(), 1, "{err}");
        assert_eq!(dead[0]["reason"], reason, "{err}");
        logs.push(err);
    }
    logs
}

/// `weir schema --pipeline`: the JSON Schema of pipeline files, each key described by its
/// config struct's doc comment.
#[test]
fn the_pipeline_json_schema_describes_every_component() {
    let dir = workspace();
    let out = weir(dir.path(), &["schema", "--pipeline"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for (section, n) in [("sources", 9), ("transforms", 7), ("sinks", 10)] {
        let types = s["properties"][section]["additionalProperties"]["oneOf"]
            .as_array()
            .unwrap();
        assert_eq!(types.len(), n, "{section}");
    }
    let window = s["properties"]["transforms"]["additionalProperties"]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["properties"]["type"]["const"] == "window")
        .unwrap();
    assert!(window["properties"]["max_state"]["description"]
        .as_str()
        .unwrap()
        .contains("runaway key space"));
    assert_eq!(window["properties"]["inputs"]["type"], "array");
}

/// Lists, `json` fields and `unnest`: element reads, list and JSON functions, one record per
/// element, and a window over the elements, against hand-written results in both modes on
/// 1 and 2 workers; a list with an element of the wrong type makes its record bad.
#[test]
fn lists_json_and_unnest_in_and_out() {
    let input = r#"{"id": 1, "ts": "2026-03-01T10:00:00Z", "tags": ["red", "hot"], "p": {"sensor": {"kind": "temp", "readings": [21.5, 22]}, "ok": true}}
{"id": 2, "ts": "2026-03-01T10:00:01Z", "tags": [], "p": {"sensor": {"kind": "hum", "readings": []}, "ok": false}}
{"id": 3, "ts": "2026-03-01T10:00:02Z", "tags": null, "p": null}
{"id": 4, "ts": "2026-03-01T10:00:03Z", "tags": ["blue", null, "red"], "p": "just text"}
{"id": 5, "ts": "2026-03-01T10:00:04Z", "tags": ["red", 5], "p": 1}
{"id": 6, "ts": "2026-03-01T10:00:05Z", "p": [1, {"a": "b"}]}
"#;
    let text = r#"[pipeline]
name = "lists"
[sources.s]
type = "file"
path = "in.jsonl"
format = "jsonl"
schema = { id = "u64", ts = "timestamp", tags = "list<string>", p = "json" }
[transforms.m]
type = "map"
inputs = ["s"]
select = ["id", "tags"]
compute = { first = "tags[1]", last = "tags[-1]", zero = "tags[0]", n = "cardinality(tags)", red = "array_contains(tags, 'red')", kind = "json_get_str(p, 'sensor', 'kind')", r1 = "json_get_float(p, 'sensor', 'readings', 1)", ok = "json_get_bool(p, 'ok')", sensor = "json_get(p, 'sensor')", len = "json_length(p, 'sensor', 'readings')", has = "json_contains(p, 'ok')", second = "json_get_str(p, 1, 'a')" }
[transforms.each]
type = "unnest"
inputs = ["s"]
field = "tags"
as = "tag"
index = "pos"
keep_empty = true
[transforms.plain]
type = "unnest"
inputs = ["s"]
field = "tags"
[transforms.per_tag]
type = "window"
inputs = ["plain"]
size = "1m"
group_by = ["tags"]
aggregates = { n = "count(*)", ids = "sum(id)" }
[sinks.rows]
type = "file"
inputs = ["m"]
path = "rows.jsonl"
[sinks.each_out]
type = "file"
inputs = ["each"]
path = "each.jsonl"
[sinks.tag_counts]
type = "file"
inputs = ["per_tag"]
path = "per_tag.jsonl"
"#;
    // By hand from the input: positions count from 1 (-1 is the last, 0 none); a missing
    // path, a value of another kind and NULL JSON are NULL; json_get keeps the text as written.
    let rows = json_multiset(
        r#"{"id":1,"tags":["red","hot"],"first":"red","last":"hot","zero":null,"n":2,"red":true,"kind":"temp","r1":22.0,"ok":true,"sensor":{"kind":"temp","readings":[21.5,22]},"len":2,"has":true,"second":null}
{"id":2,"tags":[],"first":null,"last":null,"zero":null,"n":0,"red":false,"kind":"hum","r1":null,"ok":false,"sensor":{"kind":"hum","readings":[]},"len":0,"has":true,"second":null}
{"id":3,"tags":null,"first":null,"last":null,"zero":null,"n":null,"red":null,"kind":null,"r1":null,"ok":null,"sensor":null,"len":null,"has":null,"second":null}
{"id":4,"tags":["blue",null,"red"],"first":"blue","last":"red","zero":null,"n":3,"red":true,"kind":null,"r1":null,"ok":null,"sensor":null,"len":null,"has":false,"second":null}
{"id":6,"tags":null,"first":null,"last":null,"zero":null,"n":null,"red":null,"kind":null,"r1":null,"ok":null,"sensor":null,"len":null,"has":false,"second":"b"}"#,
    );
    let each = json_multiset(
        r#"{"id":1,"ts":"2026-03-01T10:00:00.000Z","tag":"red","pos":1,"p":{"sensor":{"kind":"temp","readings":[21.5,22]},"ok":true}}
{"id":1,"ts":"2026-03-01T10:00:00.000Z","tag":"hot","pos":2,"p":{"sensor":{"kind":"temp","readings":[21.5,22]},"ok":true}}
{"id":2,"ts":"2026-03-01T10:00:01.000Z","tag":null,"pos":null,"p":{"sensor":{"kind":"hum","readings":[]},"ok":false}}
{"id":3,"ts":"2026-03-01T10:00:02.000Z","tag":null,"pos":null,"p":null}
{"id":4,"ts":"2026-03-01T10:00:03.000Z","tag":"blue","pos":1,"p":"just text"}
{"id":4,"ts":"2026-03-01T10:00:03.000Z","tag":null,"pos":2,"p":"just text"}
{"id":4,"ts":"2026-03-01T10:00:03.000Z","tag":"red","pos":3,"p":"just text"}
{"id":6,"ts":"2026-03-01T10:00:05.000Z","tag":null,"pos":null,"p":[1,{"a":"b"}]}"#,
    );
    let w = r#""window_start":"2026-03-01T10:00:00.000Z","window_end":"2026-03-01T10:01:00.000Z""#;
    let per_tag = json_multiset(&format!(
        "{{\"tags\":\"red\",{w},\"n\":2,\"ids\":5}}\n{{\"tags\":\"hot\",{w},\"n\":1,\"ids\":1}}\n\
         {{\"tags\":\"blue\",{w},\"n\":1,\"ids\":4}}\n{{\"tags\":null,{w},\"n\":1,\"ids\":4}}"
    ));
    let logs = in_both_modes_on_1_and_2_workers(
        input,
        text,
        &[
            ("rows.jsonl", rows),
            ("each.jsonl", each),
            ("per_tag.jsonl", per_tag),
        ],
        (
            "lists.deadletter.jsonl",
            "field `tags`: element 2: expected string, found number 5",
        ),
    );
    for err in logs {
        assert!(err.contains("transforms.each"), "{err}");
    }
}

/// A CSV sink writes lists and `json` fields as JSON text in one cell, and a CSV source reads
/// them back the same.
#[test]
fn lists_and_json_round_trip_through_csv() {
    let dir = workspace();
    write(
        dir.path(),
        "in.jsonl",
        "{\"id\":1,\"ts\":\"2026-03-01T10:00:00Z\",\"n\":[1,-2],\"j\":{\"a\":\"x,y\"}}\n\
         {\"id\":2,\"ts\":\"2026-03-01T10:00:01Z\",\"n\":[],\"j\":null}\n",
    );
    let to_csv = write(
        dir.path(),
        "to.toml",
        r#"[sources.s]
type = "file"
path = "in.jsonl"
format = "jsonl"
schema = { id = "u64", ts = "timestamp", n = "list<i64>", j = "json" }
[sinks.o]
type = "file"
inputs = ["s"]
path = "out.csv"
format = "csv"
"#,
    );
    run_ok(dir.path(), &to_csv, &[]);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.csv")).unwrap(),
        "id,ts,n,j\n1,2026-03-01T10:00:00.000Z,\"[1,-2]\",\"{\"\"a\"\":\"\"x,y\"\"}\"\n\
         2,2026-03-01T10:00:01.000Z,[],\n"
    );
    let back = write(
        dir.path(),
        "back.toml",
        r#"[sources.s]
type = "file"
path = "out.csv"
format = "csv"
schema = { id = "u64", ts = "timestamp", n = "list< i64 >", j = "json" }
[sinks.o]
type = "file"
inputs = ["s"]
path = "back.jsonl"
"#,
    );
    run_ok(dir.path(), &back, &[]);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("back.jsonl")).unwrap(),
        "{\"id\":1,\"ts\":\"2026-03-01T10:00:00.000Z\",\"n\":[1,-2],\"j\":{\"a\":\"x,y\"}}\n\
         {\"id\":2,\"ts\":\"2026-03-01T10:00:01.000Z\",\"n\":[],\"j\":null}\n"
    );
}

/// What lists cannot do yet is refused with the place and what to do instead.
#[test]
fn list_misuse_is_refused_with_the_place() {
    let dir = workspace();
    let p = write(
        dir.path(),
        "p.toml",
        r#"[sources.s]
type = "file"
path = "in.jsonl"
format = "jsonl"
schema = { id = "u64", ts = "timestamp", tags = "list<string>", name = "string" }
[transforms.u]
type = "unnest"
inputs = ["s"]
field = "name"
[transforms.w]
type = "window"
inputs = ["s"]
size = "1m"
group_by = ["tags"]
aggregates = { m = "max(tags)" }
[transforms.m]
type = "map"
inputs = ["s"]
compute = { a = "name[1]", b = "json_get_str(id, 'x')" }
[sinks.o]
type = "stdout"
inputs = ["u", "w", "m"]
"#,
    );
    write(dir.path(), "in.jsonl", "");
    let err = weir_fails(dir.path(), &["validate", &p]);
    for (what, at) in [
        (
            "`name` is string, not a list: only a list can be unnested",
            "p.toml:9:9",
        ),
        (
            "`tags` is a list (list<string>): windows cannot group by a list",
            "p.toml:14:13",
        ),
        (
            "`max` cannot aggregate a list (list<string>)",
            "p.toml:15:21",
        ),
        (
            "only a list can be indexed, but this is string",
            "p.toml:19:18",
        ),
        (
            "`json_get_str` reads JSON text (a json or string field), but this is u64",
            "p.toml:19:",
        ),
    ] {
        assert!(err.contains(what), "{what}\n{err}");
        assert!(err.contains(at), "{at}\n{err}");
    }
}

/// A nested object's fields may be declared as a nested table: the same fields as their dotted
/// paths, with errors at the nested key.
#[test]
fn a_schema_declares_nested_objects_as_tables() {
    let dir = workspace();
    write(
        dir.path(),
        "in.jsonl",
        "{\"id\":1,\"ts\":\"2026-03-01T10:00:00Z\",\"user\":{\"id\":7,\"geo\":{\"city\":\"Seoul\"}}}\n",
    );
    let text = |schema: &str| {
        format!(
            "[sources.s]\ntype = \"file\"\npath = \"in.jsonl\"\nformat = \"jsonl\"\nschema = {schema}\n\
             [transforms.m]\ntype = \"map\"\ninputs = [\"s\"]\ncompute = {{ c = \"user.geo.city\" }}\n\
             [sinks.o]\ntype = \"file\"\ninputs = [\"m\"]\npath = \"out.jsonl\"\n"
        )
    };
    let mut outs = Vec::new();
    for schema in [
        r#"{ id = "u64", ts = "timestamp", "user.id" = "u64", "user.geo.city" = "string" }"#,
        r#"{ id = "u64", ts = "timestamp", user = { id = "u64", geo = { city = "string" } } }"#,
    ] {
        let p = write(dir.path(), "p.toml", &text(schema));
        run_ok(dir.path(), &p, &[]);
        outs.push(std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap());
    }
    assert_eq!(
        outs[0],
        "{\"id\":1,\"ts\":\"2026-03-01T10:00:00.000Z\",\"user\":{\"id\":7,\"geo\":{\"city\":\"Seoul\"}},\"c\":\"Seoul\"}\n"
    );
    assert_eq!(outs[1], outs[0]);
    let p = write(
        dir.path(),
        "p.toml",
        &text(
            r#"{ id = "u64", ts = "timestamp", user = { id = "u64", geo = { city = "strng" } } }"#,
        ),
    );
    let err = weir_fails(dir.path(), &["validate", &p]);
    assert!(
        err.contains("`strng` is not a valid `schema.user.geo.city`"),
        "{err}"
    );
    assert!(err.contains("p.toml:5:78"), "{err}");
}
