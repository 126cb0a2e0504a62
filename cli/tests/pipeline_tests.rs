//! `weir test`: the bundled pipelines' own tests pass; a wrong expectation fails with a diff
//! of missing and unexpected records; mistakes in tests are reported at their line.

mod common;

use common::*;

/// Every bundled pipeline carries tests, and they pass in both modes on 1 and 2 workers.
#[test]
fn every_bundled_pipeline_passes_its_tests() {
    let dir = workspace();
    let mut files: Vec<String> = std::fs::read_dir(dir.path().join("pipelines"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".toml"))
        .map(|f| format!("pipelines/{f}"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "{files:?}");
    // The batch half of the lambda example reads the live half's archive when it is planned.
    ok(&weir(
        dir.path(),
        &["run", "pipelines/lambda-1-live.toml", "-q"],
        "",
    ));
    let mut args = vec!["test"];
    args.extend(files.iter().map(String::as_str));
    let o = weir(dir.path(), &args, "");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    let passed = out.lines().filter(|l| l.starts_with("  ok  ")).count();
    assert!(passed >= files.len(), "{out}");
    assert!(
        out.contains(&format!("test result: ok. {passed} passed, 0 failed")),
        "{out}"
    );
}

const WRONG: &str = r#"
pipeline = "pipelines/iot-hot-readings.toml"

[[tests]]
name = "right"
[[tests.inputs]]
source = "sensors"
records = [{ id = 1, ts = "2026-03-01T10:00:00Z", kind = "reading", device_id = "d", temperature = 35.0 }]
[[tests.outputs]]
at = "fahrenheit"
records = [{ id = 1, temp_f = 95.0 }]

[[tests]]
name = "wrong"
[[tests.inputs]]
source = "sensors"
records = [
  { id = 1, ts = "2026-03-01T10:00:00Z", kind = "reading", device_id = "d", temperature = 35.0 },
  { id = 2, ts = "2026-03-01T10:00:01Z", kind = "reading", device_id = "d", temperature = 20.0 },
]
[[tests.outputs]]
at = "fahrenheit"
records = [{ id = 1, temp_f = 95.5 }, { id = 2 }]
"#;

/// A wrong expectation fails, in every configuration, with each missing record (`-`) and
/// each unexpected one (`+`); the right test beside it passes; the exit status is 1.
#[test]
fn a_wrong_expectation_fails_with_a_readable_diff() {
    let dir = workspace();
    write(dir.path(), "hot.test.toml", WRONG);
    let o = weir(dir.path(), &["test", "hot.test.toml"], "");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    // The README shows this report: it is checked here, exactly.
    let want = readme_block("hot.test.toml");
    assert_eq!(out, want);
    // --filter runs only the tests it names.
    let o = weir(
        dir.path(),
        &["test", "hot.test.toml", "--filter", "right"],
        "",
    );
    ok(&o);
    assert!(String::from_utf8_lossy(&o.stdout).contains("1 passed, 0 failed"));
}

/// Mistakes in tests are configuration errors at their line, with what to do.
#[test]
fn mistakes_in_tests_are_reported_at_their_line() {
    let dir = workspace();
    let cases = [
        (
            "source = \"sensors\"",
            "source = \"nope\"",
            "the pipeline has no source `nope`",
            "give input to one of: sensors",
        ),
        (
            "at = \"fahrenheit\"",
            "at = \"fahrenheit.late\"",
            "no component or port `fahrenheit.late`",
            "test one of:",
        ),
        (
            "at = \"fahrenheit\"",
            "at = \"out\"",
            "`out` is a sink",
            "test what it reads: fahrenheit",
        ),
        (
            "records = [{ id = 1, temp_f = 95.0 }]",
            "records = [{ id = 1, temp_f = 95.0 }]\norder = \"sorted\"",
            "`order = \"sorted\"` is not an order",
            "\"any\"",
        ),
        (
            "records = [{ id = 1, ts",
            "records = [{ watermark = \"soon\" }, { id = 1, ts",
            "`watermark = soon` is not a time",
            "RFC 3339",
        ),
        (
            "name = \"right\"",
            "name = \"right\"\ncolour = \"red\"",
            "unknown key `colour`",
            "the keys here are: name, inputs, outputs",
        ),
    ];
    for (from, to, message, help) in cases {
        let text = WRONG.replacen(from, to, 1);
        write(dir.path(), "bad.test.toml", &text);
        let o = weir(dir.path(), &["test", "bad.test.toml"], "");
        assert_eq!(o.status.code(), Some(2), "{to}: {}", stderr(&o));
        let e = stderr(&o);
        let last = to.lines().last().unwrap();
        let line = text.lines().position(|l| l.contains(last)).unwrap() + 1;
        assert!(e.contains(message) && e.contains(help), "{to}:\n{e}");
        assert!(
            e.contains(&format!("bad.test.toml:{line}:")),
            "{to}: line {line}:\n{e}"
        );
    }
    // A pipeline without tests, and a test file without a pipeline.
    let plain =
        std::fs::read_to_string(dir.path().join("pipelines/iot-hot-readings.toml")).unwrap();
    let plain = &plain[..plain.find("[[tests]]").unwrap()];
    write(dir.path(), "untested.toml", plain);
    let o = weir(dir.path(), &["test", "untested.toml"], "");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("the pipeline has no tests"),
        "{}",
        stderr(&o)
    );
    write(
        dir.path(),
        "lost.test.toml",
        "pipeline = \"nowhere.toml\"\n[[tests]]\nname = \"x\"\noutputs = []\n",
    );
    let o = weir(dir.path(), &["test", "lost.test.toml"], "");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("cannot read the pipeline file nowhere.toml"),
        "{}",
        stderr(&o)
    );
}
