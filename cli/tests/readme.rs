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
        "{}\n(`weir schema --reference` prints every table)",
        problems.join("\n")
    );
    // And the command prints them all.
    let out = weir(&root(), &["schema", "--reference"], "");
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(printed, weir_engine::pipeline_schema::reference());
    assert!(printed.contains("### Transform `unnest`\n\n| key | type | meaning |"));
}
