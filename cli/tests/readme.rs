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

/// The fields of `pub struct name` in Rust source `text`, as pipeline keys (serde renames
/// applied).
fn struct_keys(text: &str, name: &str) -> Vec<String> {
    let start = text
        .find(&format!("pub struct {name} {{"))
        .unwrap_or_else(|| panic!("no struct {name}"));
    let body = &text[start..];
    let body = &body[..body.find("\n}").unwrap()];
    let mut keys = Vec::new();
    let mut rename: Option<String> = None;
    for line in body.lines().skip(1) {
        let l = line.trim();
        if let Some(r) = l.strip_prefix("#[serde(rename = \"") {
            rename = Some(r.split('"').next().unwrap().to_string());
        } else if let Some(f) = l.strip_prefix("pub ") {
            let field = f.split(':').next().unwrap().trim().to_string();
            keys.push(rename.take().unwrap_or(field));
        }
    }
    keys
}

/// The keys a README reference section lists: every backticked word of its tables' first
/// column.
fn readme_keys(readme: &str, heading: &str) -> Vec<String> {
    let start = readme
        .find(&format!("\n### {heading}\n"))
        .unwrap_or_else(|| panic!("README.md has no section ### {heading}"));
    let section = &readme[start + 1..];
    let end = section[4..].find("\n## ").map_or(section.len(), |e| e + 4);
    let end = end.min(section[4..].find("\n### ").map_or(section.len(), |e| e + 4));
    let mut keys = Vec::new();
    for line in section[..end].lines().filter(|l| l.starts_with("| `")) {
        let first = line.split('|').nth(1).unwrap();
        keys.extend(first.split('`').skip(1).step_by(2).map(String::from));
    }
    keys
}

/// Every key of every component's config struct is in the README's reference for it, and the
/// reference names no key the struct lacks (`type` and `inputs` are every component's).
#[test]
fn the_readme_reference_lists_exactly_the_config_keys() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let src = |f: &str| std::fs::read_to_string(root().join("engine/src").join(f)).unwrap();
    let sections = [
        ("`[pipeline]`", "spec.rs", "PipelineConfig"),
        (
            "Source `generator`",
            "components/generator.rs",
            "GeneratorConfig",
        ),
        ("Source `file`", "components/file.rs", "FileSourceConfig"),
        ("Source `stdin`", "components/stdin.rs", "StdinConfig"),
        ("Source `tcp`", "components/tcp.rs", "TcpSourceConfig"),
        ("Source `kafka`", "components/kafka.rs", "KafkaSourceConfig"),
        ("Transform `filter`", "components/filter.rs", "FilterConfig"),
        ("Transform `map`", "components/map.rs", "MapConfig"),
        ("Transform `unnest`", "components/unnest.rs", "UnnestConfig"),
        ("Transform `window`", "components/window.rs", "WindowConfig"),
        ("Transform `join`", "components/join.rs", "JoinConfig"),
        ("Sink `stdout`", "components/sinks.rs", "StdoutConfig"),
        ("Sink `file`", "components/sinks.rs", "FileSinkConfig"),
        ("Sink `tcp`", "components/tcp.rs", "TcpSinkConfig"),
        ("Sink `kafka`", "components/kafka.rs", "KafkaSinkConfig"),
    ];
    let mut problems = Vec::new();
    for (heading, file, name) in sections {
        let keys = struct_keys(&src(file), name);
        let listed = readme_keys(&readme, heading);
        for k in &keys {
            if !listed.contains(k) {
                problems.push(format!("{heading}: `{k}` ({name}) is not in the README"));
            }
        }
        for k in &listed {
            let key = k.split(['.', ' ', '=']).next().unwrap();
            let common = ["type", "inputs"].contains(&key);
            if !common
                && !keys.iter().any(|s| s == key)
                && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            {
                problems.push(format!(
                    "{heading}: the README lists `{k}`, which {name} lacks"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
