//! The README's examples cannot drift: every TOML example is a bundled pipeline included
//! verbatim, or component tables and keys that Weir's own parser accepts as written.

mod common;

use common::*;

/// The README's TOML blocks, each with the line it starts on.
fn toml_blocks() -> Vec<(usize, String)> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut open: Option<(usize, String)> = None;
    for (n, line) in readme.lines().enumerate() {
        match (&mut open, line.trim_start()) {
            (None, l) if l.starts_with("```toml") => open = Some((n + 1, String::new())),
            (Some(_), l) if l.starts_with("```") => blocks.push(open.take().unwrap()),
            (Some((_, b)), _) => {
                b.push_str(line);
                b.push('\n');
            }
            _ => {}
        }
    }
    blocks
}

/// A key fragment placed in a component that takes it, with that component's required keys.
fn host(fragment: &str) -> String {
    let key = fragment.split('=').next().unwrap().trim();
    match key {
        "watermark" => format!("[sources.s]\ntype = \"generator\"\nprofile = \"iot\"\n{fragment}"),
        "librdkafka_options" => format!(
            "[sources.s]\ntype = \"kafka\"\nbrokers = \"127.0.0.1:9092\"\ntopics = [\"t\"]\ngroup_id = \"g\"\nschema = {{ ts = \"timestamp\" }}\n{fragment}"
        ),
        other => panic!("a README example of the key `{other}` has no host here: add one"),
    }
}

#[test]
fn every_toml_example_in_the_readme_is_checked() {
    let blocks = toml_blocks();
    assert!(blocks.len() >= 8, "found {} TOML blocks", blocks.len());
    let bundled: Vec<(String, String)> = std::fs::read_dir(root().join("pipelines"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| {
            (
                p.display().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    for (line, block) in blocks {
        if block.contains("[pipeline]") {
            // A whole pipeline: one of the bundled files, verbatim (and they are all run).
            assert!(
                bundled.iter().any(|(_, text)| *text == block),
                "README.md:{line}: a whole pipeline that is not a bundled file verbatim"
            );
            continue;
        }
        let text = match block.trim_start().starts_with('[') {
            true => block.clone(),
            false => host(&block),
        };
        let (spec, diags) = weir_engine::spec::parse("README.md", &text, &[]);
        assert!(spec.is_some(), "README.md:{line}: not TOML:\n{text}");
        let errors: Vec<&weir_engine::diag::Diag> = diags
            .iter()
            .filter(|d| d.level == weir_engine::diag::Level::Error)
            .collect();
        assert!(
            errors.is_empty(),
            "README.md:{line}: Weir rejects this example:\n{text}\n{errors:#?}"
        );
    }
}

/// The first table of README section `### heading`, as written.
fn readme_table(readme: &str, heading: &str) -> String {
    let start = readme
        .find(&format!("\n### {heading}\n"))
        .unwrap_or_else(|| panic!("README.md has no section ### {heading}"));
    let section = &readme[start + 1..];
    let end = section[4..].find("\n## ").map_or(section.len(), |e| e + 4);
    let end = end.min(section[4..].find("\n### ").map_or(section.len(), |e| e + 4));
    let mut table = String::new();
    for line in section[..end]
        .lines()
        .skip_while(|l| !l.starts_with("| key"))
        .take_while(|l| l.starts_with('|'))
    {
        table.push_str(line);
        table.push('\n');
    }
    table
}

/// The README's reference is generated from the config structs' doc comments: each section's
/// key table is exactly what `weir schema --reference` prints for it (every key, its type,
/// whether it is required, and its doc comment), so a key added, removed or redocumented in a
/// struct fails here until the README says the same.
#[test]
fn the_readme_reference_is_the_config_structs_documentation() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let mut problems = Vec::new();
    for (heading, name, reads) in weir_engine::pipeline_schema::reference_sections() {
        let want = weir_engine::pipeline_schema::reference_table(name, reads);
        let got = readme_table(&readme, &heading);
        if got != want {
            problems.push(format!(
                "### {heading}: the README's table is not {name}'s documentation; it should be:\n{want}"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{}\n(scripts/readme-reference rewrites the tables from `weir schema --reference`)",
        problems.join("\n")
    );
    // And the command prints them all.
    let out = weir(&root(), &["schema", "--reference"], "");
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(printed, weir_engine::pipeline_schema::reference());
    assert!(printed.contains("### Transform `unnest`\n\n| key | type | meaning |"));
}

/// `s` without trailing spaces on its lines.
fn trimmed(s: &str) -> String {
    s.lines().map(str::trim_end).collect::<Vec<_>>().join("\n")
}

/// Each line of `example` has the shape of some line of `output` (see [`shape`]).
fn shapes_match(example: &str, output: &str, what: &str) {
    let real: Vec<Vec<String>> = output.lines().map(shape).collect();
    for line in example.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            real.contains(&shape(line)),
            "{what}: the README shows\n{line}\nbut no line of a real run has its shape:\n{output}"
        );
    }
}

/// `weir ARGS` as a README command gives them: the command and every flag are ones Weir takes
/// (`--help` after them makes the parser check them without running anything; values are
/// checked when a command runs), and each bundled pipeline it names exists.
fn check_command(line: usize, args: &[&str]) {
    let mut with_help: Vec<&str> = args.to_vec();
    with_help.push("--help");
    let out = weir(&root(), &with_help, "");
    assert!(
        out.status.success(),
        "README.md:{line}: `weir {}` is not a command Weir takes:\n{}",
        args.join(" "),
        stderr(&out)
    );
    for a in args.iter().filter(|a| a.starts_with("pipelines/")) {
        assert!(
            root().join(a).exists(),
            "README.md:{line}: {a} does not exist"
        );
    }
}

/// The README's other examples: every shell command is one Weir takes, naming files that
/// exist, and every example of output is what Weir prints — exactly, or (for measurements)
/// line by line in shape. A new block fails here until it is given a check.
#[test]
fn every_command_and_output_example_in_the_readme_is_checked() {
    let mut checked = 0;
    for (line, info, block) in readme_blocks() {
        if info == "toml" {
            continue;
        }
        let first = block.lines().next().unwrap_or("").to_string();
        if info == "sh" {
            let text = block.replace("\\\n", " ");
            for cmd in text.lines().map(|l| l.split(" #").next().unwrap().trim()) {
                let cmd = cmd.trim_end_matches('&').trim();
                let words: Vec<&str> = cmd.split_whitespace().collect();
                match words.as_slice() {
                    [] => {}
                    ["cargo", "run", "--release", "--bin", "weir", "--", args @ ..] => {
                        check_command(line, args)
                    }
                    ["weir", args @ ..] => check_command(line, args),
                    ["scripts/test"] => assert!(root().join("scripts/test").exists()),
                    ["printf", ..] => {}
                    _ => panic!("README.md:{line}: a command no test checks: {cmd}"),
                }
            }
        } else if first.starts_with("weir: pipeline `iot-hot-readings` finished") {
            // The quick start's summary: the first command, with fewer events.
            let dir = workspace();
            let err = run_ok(
                dir.path(),
                "pipelines/iot-hot-readings.toml",
                &["--set", "sources.sensors.events=100000"],
            );
            shapes_match(&block, &err, &format!("README.md:{line}"));
        } else if first.starts_with("  × transforms.hot: unknown field `temprature`") {
            // The bundled pipeline with a misspelt field, as p.toml.
            let dir = workspace();
            let text =
                bundled_text("iot-hot-readings.toml").replace("temperature >", "temprature >");
            let p = write(dir.path(), "p.toml", &text);
            let err = weir_fails(dir.path(), &["validate", &p]).replace(&p, "p.toml");
            assert!(
                trimmed(&err).contains(&trimmed(&block)),
                "README.md:{line}: the README shows\n{block}\nbut Weir prints\n{err}"
            );
        } else if first.starts_with("watermark = max(") {
            // The watermark rule, a formula: not an example of anything Weir prints.
        } else if first.starts_with("$ weir run pipelines/iot-device-report.toml") {
            let args: Vec<&str> = first[7..].split_whitespace().collect();
            let mut args = args.clone();
            args.extend(["--status-every", "0s"]);
            let dir = workspace();
            let out = weir(dir.path(), &args, "");
            ok(&out);
            let rest: String = block.lines().skip(2).map(|l| format!("{l}\n")).collect();
            shapes_match(&rest, &stderr(&out), &format!("README.md:{line}"));
        } else if first.starts_with("$ weir compare pipelines/iot-device-report.toml") {
            // Its table's columns, from a short run of one of its configurations.
            let dir = workspace();
            let out = weir(
                dir.path(),
                &[
                    "compare",
                    "pipelines/iot-device-report.toml",
                    "--modes",
                    "continuous",
                    "--rates",
                    "100k",
                    "--workers",
                    "2",
                    "--duration",
                    "1s",
                    "--warmup",
                    "0s",
                ],
                "",
            );
            ok(&out);
            let table = String::from_utf8_lossy(&out.stdout).to_string() + &stderr(&out);
            let header = block.lines().nth(2).unwrap();
            assert!(
                table.lines().any(|l| l.split_whitespace().eq(header.split_whitespace())),
                "README.md:{line}: the README's columns\n{header}\nare not weir compare's:\n{table}"
            );
            assert!(table.contains("continuous, 2w, 100k/s"), "{table}");
        } else if first.starts_with("weir: sources.sensors: 3 partitions")
            || first.starts_with("weir: sources.sensors: 3 shards")
            || first.starts_with("configuration                        offered/s")
        {
            // Kafka's partition table, Kinesis's shard table and the Kafka/TCP comparison: the
            // Kafka and Kinesis tests check these against real runs (they need the servers).
        } else if first.starts_with("  × transforms.m: `split_part` does not take (string)") {
            let dir = workspace();
            let p = write(
                dir.path(),
                "p.toml",
                "[sources.s]\ntype = \"generator\"\nprofile = \"iot\"\nevents = 10\n\n[transforms.m]\ntype = \"map\"\ninputs = [\"s\"]\ncompute = { part = \"split_part(device_id)\" }\n\n[sinks.o]\ntype = \"null\"\ninputs = [\"m\"]\n",
            );
            let err = weir_fails(dir.path(), &["validate", &p]).replace(&p, "p.toml");
            assert!(
                trimmed(&err).contains(&trimmed(&block)),
                "README.md:{line}: the README shows\n{block}\nbut Weir prints\n{err}"
            );
        } else if first == "hot.test.toml" {
            // weir test's report: `a_wrong_expectation_fails_with_a_readable_diff` in
            // cli/tests/pipeline_tests.rs runs it and compares it with this block exactly.
        } else if first.starts_with("$ weir schema events.jsonl") {
            let dir = workspace();
            write(
                dir.path(),
                "events.jsonl",
                "{\"id\": 1, \"at\": \"2026-03-01T10:00:00Z\", \"user\": \"ann\", \"amount\": 12.5, \"flag\": true, \"gone\": null}\n\
                 {\"id\": 2, \"at\": \"2026-03-01T10:00:01Z\", \"user\": \"bo\", \"amount\": 3, \"flag\": false}\n\
                 {\"id\": 3, \"at\": \"2026-03-01T10:00:02Z\", \"user\": \"cy\", \"amount\": 0.25, \"flag\": true, \"gone\": null}\n",
            );
            let out = weir(dir.path(), &["schema", "events.jsonl"], "");
            ok(&out);
            let printed = String::from_utf8_lossy(&out.stdout).to_string() + &stderr(&out);
            let want: String = block.lines().skip(1).map(|l| format!("{l}\n")).collect();
            assert_eq!(printed, want, "README.md:{line}");
        } else {
            panic!("README.md:{line}: an example no test checks (give it a check here):\n{block}");
        }
        checked += 1;
    }
    assert!(checked >= 12, "{checked} blocks");
}
