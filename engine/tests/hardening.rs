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
    let dir = tempfile::tempdir().unwrap();
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
    drop(dir);
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
    let dir = tempfile::tempdir().unwrap();
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
    drop(dir);
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
