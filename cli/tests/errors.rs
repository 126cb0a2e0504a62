//! One test per class of configuration error: each message names the file, line and column, the
//! component, and what to do; `weir` exits with status 2 and runs nothing.

mod common;

use common::*;

const GOOD_SOURCE: &str = "[sources.s]\ntype = \"generator\"\nprofile = \"iot\"\nevents = 10\n";

/// Validates `text`; returns standard error, asserting exit status 2.
fn invalid(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "p.toml", text);
    let out = weir(dir.path(), &["validate", &p], "");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("nothing was run"), "{err}");
    let run = weir(dir.path(), &["run", &p], "");
    assert_eq!(run.status.code(), Some(2), "run refuses too");
    err
}

/// Asserts the message names `file:line:col`, the component and the advice.
fn names(err: &str, line_col: &str, component: &str, advice: &str) {
    assert!(
        err.contains(&format!("p.toml:{line_col}]")),
        "wants p.toml:{line_col}:\n{err}"
    );
    assert!(err.contains(component), "wants {component}:\n{err}");
    assert!(err.contains(advice), "wants {advice:?}:\n{err}");
}

#[test]
fn toml_syntax() {
    let err = invalid("[sources.s]\ntype = \"generator\nprofile = 1\n");
    names(&err, "2:18", "invalid TOML", "fix the TOML syntax");
}

#[test]
fn unknown_component_type() {
    let err = invalid(&format!(
        "{GOOD_SOURCE}\n[sinks.out]\ntype = \"stdot\"\ninputs = [\"s\"]\n"
    ));
    names(
        &err,
        "7:8",
        "sinks.out: unknown sink type `stdot`",
        "did you mean `stdout`?",
    );
    let err = invalid(&format!(
        "{GOOD_SOURCE}\n[sinks.f]\ntype = \"filter\"\ninputs = [\"s\"]\ncondition = \"true\"\n"
    ));
    names(
        &err,
        "7:8",
        "sinks.f: unknown sink type `filter`",
        "declare it as [transforms.f]",
    );
}

#[test]
fn misspelled_keys_all_reported() {
    let err = invalid(&format!(
        "[pipeline]\nwrokers = 2\n\n{GOOD_SOURCE}seeed = 3\n\n[sinks.out]\ntype = \"null\"\ninputs = [\"s\"]\nformat = \"csv\"\n"
    ));
    names(
        &err,
        "2:1",
        "pipeline: unknown key `wrokers`",
        "did you mean `workers`?",
    );
    names(
        &err,
        "8:1",
        "sources.s: unknown key `seeed`",
        "did you mean `seed`?",
    );
    names(&err, "13:1", "sinks.out: unknown key `format`", "");
    assert!(err.contains("3 problems found"), "{err}");
}

#[test]
fn unknown_section() {
    let err = invalid(&format!("{GOOD_SOURCE}\n[sink.out]\ntype = \"null\"\n"));
    names(
        &err,
        "6:2",
        "unknown section `sink`",
        "did you mean `sinks`?",
    );
}

#[test]
fn wrong_value_type_and_missing_key() {
    let err = invalid("[sources.s]\ntype = \"generator\"\nprofile = \"iot\"\nevents = \"many\"\n\n[sinks.o]\ntype = \"null\"\ninputs = [\"s\"]\n");
    names(
        &err,
        "4:10",
        "sources.s: invalid type: string \"many\"",
        "expected type",
    );
    let err = invalid(&format!("{GOOD_SOURCE}\n[transforms.t]\ntype = \"filter\"\ninputs = [\"s\"]\n\n[sinks.o]\ntype = \"null\"\ninputs = [\"t\"]\n"));
    names(
        &err,
        "6:1",
        "transforms.t: missing field `condition`",
        "add `condition = ...`",
    );
}

#[test]
fn inputs_naming_no_component() {
    let err = invalid(&format!(
        "{GOOD_SOURCE}\n[sinks.out]\ntype = \"null\"\ninputs = [\"ss\"]\n"
    ));
    names(
        &err,
        "8:11",
        "sinks.out: input `ss` names no component",
        "did you mean `s`?",
    );
    let err = invalid(&format!(
        "{GOOD_SOURCE}\n[sinks.out]\ntype = \"null\"\ninputs = [\"s.errors\"]\n"
    ));
    names(
        &err,
        "8:11",
        "sinks.out: `s` has no output `errors`",
        "only its main output",
    );
}

#[test]
fn cycles() {
    let err = invalid(&format!(
        "{GOOD_SOURCE}\n[transforms.a]\ntype = \"filter\"\ninputs = [\"s\", \"b\"]\ncondition = \"true\"\n\n\
         [transforms.b]\ntype = \"filter\"\ninputs = [\"a\"]\ncondition = \"true\"\n\n[sinks.o]\ntype = \"null\"\ninputs = [\"b\"]\n"
    ));
    assert!(err.contains("the inputs form a cycle: "), "{err}");
    assert!(
        err.contains("a -> b -> a") || err.contains("b -> a -> b"),
        "{err}"
    );
    assert!(err.contains("remove one of these inputs"), "{err}");
}

#[test]
fn sinks_without_inputs_and_no_sinks() {
    let err = invalid(&format!("{GOOD_SOURCE}\n[sinks.out]\ntype = \"null\"\n"));
    names(
        &err,
        "6:8",
        "sinks.out: this sink has no inputs",
        "add inputs = [",
    );
    let err = invalid(GOOD_SOURCE);
    assert!(err.contains("the pipeline has no sinks"), "{err}");
}

#[test]
fn unread_component_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "p.toml",
        &format!("{GOOD_SOURCE}\n[sources.t]\ntype = \"generator\"\nprofile = \"iot\"\nevents = 1\n\n[sinks.o]\ntype = \"null\"\ninputs = [\"s\"]\n"),
    );
    let out = weir(dir.path(), &["validate", &p], "");
    ok(&out);
    let err = stderr(&out);
    assert!(
        err.contains("⚠ sources.t: nothing reads the output of `t`"),
        "{err}"
    );
    assert!(err.contains("p.toml:6:10]"), "{err}");
}

#[test]
fn unknown_function_and_wrong_arguments_in_expression() {
    // Column 14 of line 9 is where `date_trnc` starts inside the quoted condition.
    let err = invalid(&format!(
        "{GOOD_SOURCE}\n[transforms.hot]\ntype = \"filter\"\ninputs = [\"s\"]\ncondition = \"date_trnc('hour', ts) > ts\"\n\n[sinks.o]\ntype = \"null\"\ninputs = [\"hot\"]\n"
    ));
    names(
        &err,
        "9:14",
        "transforms.hot: unknown function `date_trnc` in `condition`",
        "did you mean `date_trunc`?",
    );
    let err = invalid(&format!(
        "{GOOD_SOURCE}\n[transforms.m]\ntype = \"map\"\ninputs = [\"s\"]\ncompute = {{ d = \"upper(device_id) || split_part(device_id)\" }}\n\n[sinks.o]\ntype = \"null\"\ninputs = [\"m\"]\n"
    ));
    names(
        &err,
        "9:38",
        "transforms.m: `split_part` does not take (string)",
        "it is called as split_part(",
    );
    let err = invalid(&format!(
        "{GOOD_SOURCE}\n[transforms.hot]\ntype = \"filter\"\ninputs = [\"s\"]\ncondition = \"ts > now()\"\n\n[sinks.o]\ntype = \"null\"\ninputs = [\"hot\"]\n"
    ));
    names(
        &err,
        "9:19",
        "transforms.hot: `now` is not available",
        "use the event time",
    );
}

#[test]
fn unknown_field_in_expression() {
    let err = invalid(&format!(
        "{GOOD_SOURCE}\n[transforms.hot]\ntype = \"filter\"\ninputs = [\"s\"]\ncondition = \"kind = 'reading' AND temprature > 30.0\"\n\n[sinks.o]\ntype = \"null\"\ninputs = [\"hot\"]\n"
    ));
    names(
        &err,
        "9:35",
        "transforms.hot: unknown field `temprature` in `condition`",
        "did you mean `temperature`?",
    );
    let err = invalid(&format!(
        "{GOOD_SOURCE}\n[transforms.m]\ntype = \"map\"\ninputs = [\"s\"]\nselect = [\"id\", \"devce_id\"]\n\n[sinks.o]\ntype = \"null\"\ninputs = [\"m\"]\n"
    ));
    names(
        &err,
        "9:17",
        "transforms.m: unknown field `devce_id` in `select`",
        "did you mean `device_id`?",
    );
}

#[test]
fn type_errors_in_expressions() {
    let err = invalid(&format!(
        "{GOOD_SOURCE}\n[transforms.t]\ntype = \"map\"\ninputs = [\"s\"]\ncompute = {{ x = \"device_id * 2\", y = \"kind = 3\" }}\n\n[sinks.o]\ntype = \"null\"\ninputs = [\"t\"]\n"
    ));
    names(
        &err,
        "9:18",
        "transforms.t: `*` needs numbers, but this is string in `compute.x`",
        "CAST(x AS DOUBLE)",
    );
    names(
        &err,
        "9:39",
        "transforms.t: cannot compare string with i64 in `compute.y`",
        "compare strings with strings",
    );
    let err = invalid(&format!(
        "{GOOD_SOURCE}\n[transforms.t]\ntype = \"filter\"\ninputs = [\"s\"]\ncondition = \"temperature + 1\"\n\n[sinks.o]\ntype = \"null\"\ninputs = [\"t\"]\n"
    ));
    names(
        &err,
        "9:13",
        "transforms.t: `condition` must be true or false, but it is f64",
        "compare the value",
    );
}

#[test]
fn bad_durations() {
    let err = invalid(&format!("{GOOD_SOURCE}event_time_interval = \"10 parsecs\"\n\n[sinks.o]\ntype = \"null\"\ninputs = [\"s\"]\n"));
    names(
        &err,
        "5:23",
        "sources.s: `10 parsecs` is not a duration",
        "such as \"250ms\", \"1s\" or \"5m\"",
    );
}

#[test]
fn bad_paths() {
    let err = invalid(
        "[sources.f]\ntype = \"file\"\npath = \"no/such/file.jsonl\"\nformat = \"jsonl\"\nschema = { ts = \"timestamp\" }\n\n[sinks.o]\ntype = \"null\"\ninputs = [\"f\"]\n",
    );
    names(
        &err,
        "3:8",
        "sources.f: cannot read `no/such/file.jsonl`",
        "existing file or directory",
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_string_lossy();
    let err = invalid(&format!(
        "{GOOD_SOURCE}\n[sinks.o]\ntype = \"file\"\ninputs = [\"s\"]\npath = \"{d}\"\n"
    ));
    names(&err, "9:8", "sinks.o: ", "is a directory");
}

#[test]
fn bad_schema_and_choices() {
    let dir = tempfile::tempdir().unwrap();
    let data = write(dir.path(), "d.jsonl", "{}\n");
    let err = invalid(&format!(
        "[sources.f]\ntype = \"file\"\npath = \"{data}\"\nformat = \"jsn\"\nschema = {{ time = \"timestamp\", t = \"float\" }}\non_error = \"ignore\"\n\n[sinks.o]\ntype = \"null\"\ninputs = [\"f\"]\n"
    ));
    names(
        &err,
        "4:10",
        "sources.f: `jsn` is not a valid `format`",
        "did you mean `jsonl`?",
    );
    names(
        &err,
        "5:36",
        "sources.f: `float` is not a valid `schema.t`",
        "i64, u64, f64, bool, string, timestamp",
    );
    names(
        &err,
        "6:12",
        "sources.f: `ignore` is not a valid `on_error`",
        "dead-letter, skip, fail",
    );
    let err = invalid(&format!(
        "[sources.f]\ntype = \"file\"\npath = \"{data}\"\nformat = \"jsonl\"\nschema = {{ time = \"timestamp\" }}\n\n[sinks.o]\ntype = \"null\"\ninputs = [\"f\"]\n"
    ));
    names(
        &err,
        "5:10",
        "sources.f: the schema has no timestamp field `ts`",
        "timestamp_field",
    );
}

#[test]
fn bad_set_override_points_at_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "p.toml",
        &format!("{GOOD_SOURCE}\n[sinks.o]\ntype = \"null\"\ninputs = [\"s\"]\n"),
    );
    let out = weir(
        dir.path(),
        &["validate", &p, "--set", "sources.s.events=-5"],
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("[command line:1:24]"), "{err}");
    assert!(
        err.contains("sources.s: `events` must be at least 1, not -5"),
        "{err}"
    );
}

#[test]
fn missing_pipeline_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = weir(dir.path(), &["run", "nope.toml"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot read the pipeline file nope.toml"),
        "{}",
        stderr(&out)
    );
}

const WINDOW_HEAD: &str = "[sources.s]\ntype = \"generator\"\nprofile = \"iot\"\nevents = 10\n\n[sinks.out]\ntype = \"stdout\"\ninputs = [\"w\"]\n\n[transforms.w]\ntype = \"window\"\ninputs = [\"s\"]\n";

#[test]
fn window_group_by_unknown_field() {
    let err = invalid(&format!(
        "{WINDOW_HEAD}size = \"1s\"\ngroup_by = [\"device\"]\naggregates = {{ n = \"count(*)\" }}\n"
    ));
    names(
        &err,
        "14:13",
        "transforms.w: `group_by` names `device`, which is not an input field",
        "did you mean `device_id`?",
    );
}

#[test]
fn window_bad_aggregates() {
    let err = invalid(&format!(
        "{WINDOW_HEAD}size = \"1s\"\naggregates = {{ t = \"avg(temprature)\", m = \"median(pressure)\", s = \"sum(device_id)\" }}\n"
    ));
    names(
        &err,
        "14:25",
        "transforms.w: unknown field `temprature` in aggregate `t`",
        "temperature",
    );
    assert!(err.contains("unknown function `median`"), "{err}");
    assert!(
        err.contains("the aggregates are: count, sum, min, max, avg, first, last"),
        "{err}"
    );
    names(
        &err,
        "14:72",
        "`sum` needs a number, and its argument is string",
        "CAST",
    );
}

#[test]
fn window_size_and_clashing_names() {
    let err = invalid(&format!(
        "{WINDOW_HEAD}size = \"0s\"\ngroup_by = [\"device_id\"]\naggregates = {{ device_id = \"count(*)\" }}\n"
    ));
    names(
        &err,
        "13:8",
        "transforms.w: `size` must be longer than zero",
        "\"1s\"",
    );
    names(
        &err,
        "15:28",
        "the output already has a field `device_id`",
        "give the aggregate another name",
    );
}

#[test]
fn window_input_without_event_time() {
    let err = invalid(
        "[sources.s]\ntype = \"generator\"\nprofile = \"iot\"\nevents = 10\n\n[transforms.m]\ntype = \"map\"\ninputs = [\"s\"]\nselect = [\"device_id\"]\n\n[transforms.w]\ntype = \"window\"\ninputs = [\"m\"]\nsize = \"1s\"\naggregates = { n = \"count(*)\" }\n\n[sinks.out]\ntype = \"stdout\"\ninputs = [\"w\"]\n",
    );
    names(
        &err,
        "11:1",
        "transforms.w: the input has no event-time field",
        "keep the source's timestamp field",
    );
}

#[test]
fn pipeline_mode_and_batch_interval() {
    let err = invalid(&format!(
        "[pipeline]\nmode = \"batch\"\nbatch_interval = \"fast\"\n\n{GOOD_SOURCE}\n[sinks.out]\ntype = \"null\"\ninputs = [\"s\"]\n"
    ));
    names(
        &err,
        "2:8",
        "pipeline: `batch` is not a valid `mode`",
        "`mode` is one of: continuous, micro-batch",
    );
    names(&err, "3:18", "`fast` is not a duration", "\"100ms\"");
}

#[test]
fn window_kinds_take_their_own_keys() {
    let err = invalid(&format!(
        "{WINDOW_HEAD}kind = \"sliding\"\nsize = \"10s\"\nslide = \"3s\"\ngap = \"1s\"\naggregates = {{ n = \"count(*)\" }}\n"
    ));
    names(
        &err,
        "15:9",
        "transforms.w: `size` must be a whole multiple of `slide`",
        "panes of one slide",
    );
    names(
        &err,
        "16:7",
        "a sliding window has no `gap`",
        "a sliding window takes `size`, `slide`",
    );
    let err = invalid(&format!(
        "{WINDOW_HEAD}kind = \"session\"\naggregates = {{ n = \"count(*)\" }}\nlate = \"update\"\n"
    ));
    assert!(err.contains("a session window needs `gap`"), "{err}");
    names(
        &err,
        "15:8",
        "late = \"update\" is not supported for session windows",
        "side-output",
    );
    let err = invalid(&format!(
        "{WINDOW_HEAD}kind = \"hopping\"\nsize = \"1s\"\naggregates = {{ n = \"count(*)\" }}\n"
    ));
    names(
        &err,
        "13:8",
        "`hopping` is not a valid `kind`",
        "tumbling, sliding, session",
    );
}

#[test]
fn late_policies_and_the_late_output() {
    let err = invalid(&format!(
        "{WINDOW_HEAD}size = \"1s\"\naggregates = {{ n = \"count(*)\" }}\nlate = \"ignore\"\nallowed_lateness = \"5s\"\n"
    ));
    names(
        &err,
        "15:8",
        "`ignore` is not a valid `late`",
        "dead-letter, drop, side-output, update",
    );
    names(
        &err,
        "16:20",
        "`allowed_lateness` applies only with late = \"update\"",
        "set late = \"update\"",
    );
    let err = invalid(&format!(
        "{WINDOW_HEAD}size = \"1s\"\naggregates = {{ n = \"count(*)\" }}\n\n[sinks.late]\ntype = \"null\"\ninputs = [\"w.late\"]\n"
    ));
    names(
        &err,
        "18:11",
        "`w` sends no late records to `w.late`: its late policy is not \"side-output\"",
        "set late = \"side-output\" on transforms.w",
    );
}

#[test]
fn watermark_and_generator_disorder_keys() {
    let err = invalid(
        "[sources.s]\ntype = \"generator\"\nprofile = \"iot\"\nevents = 10\nlate_fraction = 1.5\nwatermark = { max_out_of_orderness = \"2 parsecs\", idle_timeout = \"0s\" }\n\n[sinks.out]\ntype = \"null\"\ninputs = [\"s\"]\n",
    );
    names(
        &err,
        "5:17",
        "`late_fraction` must be between 0 and 1, not 1.5",
        "such as 0.01",
    );
    names(
        &err,
        "6:38",
        "`2 parsecs` is not a duration",
        "max_out_of_orderness",
    );
    names(
        &err,
        "6:66",
        "`idle_timeout` must be longer than zero",
        "never idle",
    );
}

#[test]
fn disorder_beyond_the_watermark_bound_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "p.toml",
        "[sources.s]\ntype = \"generator\"\nprofile = \"iot\"\nevents = 10\ndisorder = \"2s\"\nwatermark = { max_out_of_orderness = \"1s\" }\n\n[sinks.o]\ntype = \"null\"\ninputs = [\"s\"]\n",
    );
    let out = weir(dir.path(), &["validate", &p], "");
    ok(&out);
    let err = stderr(&out);
    assert!(
        err.contains("⚠ sources.s: `disorder` is larger than the watermark's max_out_of_orderness (1000000µs)"),
        "{err}"
    );
    assert!(err.contains("p.toml:5:12]"), "{err}");
    assert!(err.contains("max_out_of_orderness = \"2s\""), "{err}");
}

#[test]
fn an_unread_late_output_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "p.toml",
        &format!("{WINDOW_HEAD}size = \"1s\"\naggregates = {{ n = \"count(*)\" }}\nlate = \"side-output\"\n"),
    );
    let out = weir(dir.path(), &["validate", &p], "");
    ok(&out);
    let err = stderr(&out);
    assert!(
        err.contains("⚠ transforms.w: late records of `w` go to `w.late`, which nothing reads"),
        "{err}"
    );
    assert!(err.contains("p.toml:10:13]"), "{err}");
    assert!(err.contains("inputs = [\"w.late\"]"), "{err}");
}

/// One mistake, one diagnostic: a misspelled type or section is reported once, not also as
/// an input naming no component and a source nothing reads; the footer counts what is shown.
#[test]
fn one_mistake_one_diagnostic() {
    let tail = "condition = \"true\"\n\n[sinks.out]\ntype = \"null\"\ninputs = [\"hot\"]\n";
    for (head, line_col, message) in [
        (
            "[transforms.hot]\ntype = \"filtr\"",
            "7:8",
            "unknown transform type `filtr`",
        ),
        (
            "[transform.hot]\ntype = \"filter\"",
            "6:2",
            "unknown section `transform`",
        ),
    ] {
        let err = invalid(&format!("{GOOD_SOURCE}\n{head}\ninputs = [\"s\"]\n{tail}"));
        names(&err, line_col, message, "did you mean");
        assert!(!err.contains("names no component"), "{err}");
        assert!(!err.contains("nothing reads"), "{err}");
        assert!(err.contains(": 1 problem found; nothing was run"), "{err}");
    }
    // A warning beside an error is counted as shown.
    let err = invalid("[sources.s]\ntype = \"generator\"\nprofile = \"iot\"\nevents = 10\n\n[sources.t]\ntype = \"generator\"\nprofile = \"iot\"\nevents = \"x\"\n\n[sinks.o]\ntype = \"null\"\ninputs = [\"t\"]\n");
    assert!(err.contains("nothing reads the output of `s`"), "{err}");
    assert!(
        err.contains(": 2 problems found (1 error, 1 warning); nothing was run"),
        "{err}"
    );
}

#[test]
fn round_takes_one_or_two_arguments_and_unknown_functions_are_named_so() {
    let err = invalid(&format!(
        "{GOOD_SOURCE}\n[transforms.f]\ntype = \"filter\"\ninputs = [\"s\"]\ncondition = \"round(temperature, 1, 2) > 3\"\n\n[sinks.out]\ntype = \"null\"\ninputs = [\"f\"]\n"
    ));
    names(
        &err,
        "9:14",
        "`round` takes 1 or 2 arguments, not 3",
        "round(x, 2) to 2 decimal places",
    );
    let err = invalid(&format!(
        "{WINDOW_HEAD}size = \"1s\"\naggregates = {{ a = \"avgg(temperature)\", b = \"round(temperature)\" }}\n"
    ));
    assert!(
        err.contains("unknown function `avgg`") && err.contains("did you mean `avg`?"),
        "{err}"
    );
    assert!(
        err.contains("`round` is a function, not an aggregate") && err.contains("round(avg(x))"),
        "{err}"
    );
}

/// What can be known before data flows is checked before it flows: a CSV header without a
/// schema column, an output that cannot be written. Nothing is written.
#[test]
fn pre_run_checks_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "in.csv",
        "id,ts,temp\n1,2026-03-01 10:00:00,3\n",
    );
    write(dir.path(), "afile", "");
    let text = |path: &str| {
        format!(
            "[sources.s]\ntype = \"file\"\npath = \"in.csv\"\nformat = \"csv\"\nschema = {{ id = \"u64\", ts = \"timestamp\", temperature = \"f64\" }}\n\n[sinks.out]\ntype = \"file\"\ninputs = [\"s\"]\npath = \"{path}\"\n"
        )
    };
    let p = write(dir.path(), "p.toml", &text("out/x.jsonl"));
    for cmd in ["validate", "run"] {
        let out = weir(dir.path(), &[cmd, &p], "");
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        names(
            &err,
            "5:10",
            "sources.s: `in.csv`: the CSV header has no column for `temperature`",
            "the header of `in.csv` is: id, ts, temp",
        );
        assert!(!dir.path().join("out").exists(), "nothing is written");
    }
    let p = write(
        dir.path(),
        "p.toml",
        &text("afile/x.jsonl").replace("temperature", "temp"),
    );
    let err = invalid_at(dir.path(), &p);
    names(
        &err,
        "10:8",
        "sinks.out: cannot write `afile/x.jsonl`",
        "a directory Weir can create",
    );
}

/// Validates `p` in `dir`; returns standard error, asserting exit status 2.
fn invalid_at(dir: &std::path::Path, p: &str) -> String {
    let out = weir(dir, &["validate", p], "");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    err
}
