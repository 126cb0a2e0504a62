//! Reads the pipeline file's config structs (`src/spec.rs`, `src/pipeline_tests.rs`,
//! `src/components/*.rs`: each
//! `#[serde(deny_unknown_fields)]` struct) and writes their keys, Rust types and doc comments
//! to `$OUT_DIR/config_docs.rs`, so `weir schema --pipeline` prints a JSON Schema whose
//! descriptions are the structs' own documentation.

use std::fmt::Write;
use std::path::Path;

/// One key of a config struct.
struct Key {
    name: String,
    ty: String,
    doc: String,
}

/// The `deny_unknown_fields` structs of `text`: name, doc and keys.
fn structs(text: &str) -> Vec<(String, String, Vec<Key>)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.strip_prefix("pub struct ") else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        // Its attributes and doc comment, above it.
        let mut doc = Vec::new();
        let mut strict = false;
        for above in lines[..i].iter().rev() {
            let a = above.trim();
            if let Some(d) = a.strip_prefix("///") {
                doc.push(d.trim().to_string());
            } else if a.starts_with("#[") {
                strict |= a.contains("deny_unknown_fields");
            } else {
                break;
            }
        }
        if !strict {
            continue;
        }
        doc.reverse();
        let mut keys = Vec::new();
        let mut field_doc = Vec::new();
        let mut rename = None;
        let mut defaulted = false;
        for l in &lines[i + 1..] {
            let l = l.trim();
            if l.starts_with('}') {
                break;
            }
            if let Some(d) = l.strip_prefix("///") {
                field_doc.push(d.trim().to_string());
            } else if let Some(r) = l.strip_prefix("#[serde(rename = \"") {
                rename = r.split('"').next().map(String::from);
            } else if l.starts_with("#[serde(default") {
                // A key serde fills in when absent: optional, as an `Option` is.
                defaulted = true;
            } else if let Some(f) = l.strip_prefix("pub ") {
                let (field, ty) = f.split_once(':').unwrap_or((f, ""));
                let ty = ty.trim().trim_end_matches(',').to_string();
                keys.push(Key {
                    name: rename.take().unwrap_or_else(|| field.trim().to_string()),
                    ty: match std::mem::take(&mut defaulted) {
                        true => format!("Option<{ty}>"),
                        false => ty,
                    },
                    doc: field_doc.join(" "),
                });
                field_doc.clear();
            }
        }
        out.push((name, doc.join(" "), keys));
    }
    out
}

fn main() {
    let dir = Path::new("src");
    let mut files = vec![dir.join("spec.rs"), dir.join("pipeline_tests.rs")];
    let mut components: Vec<_> = std::fs::read_dir(dir.join("components"))
        .expect("src/components")
        .map(|e| e.expect("an entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    components.sort();
    files.extend(components);
    let mut code = String::from(
        "/// Every config struct of a pipeline file: (name, doc, [(key, Rust type, doc)]).\n\
         pub static CONFIG_DOCS: &[ConfigDoc] = &[\n",
    );
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
        let text = std::fs::read_to_string(f).expect("a source file");
        for (name, doc, keys) in structs(&text) {
            let _ = write!(code, "    ({name:?}, {doc:?}, &[");
            for k in keys {
                let _ = write!(code, "({:?}, {:?}, {:?}), ", k.name, k.ty, k.doc);
            }
            code.push_str("]),\n");
        }
    }
    code.push_str("];\n");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    std::fs::write(out.join("config_docs.rs"), code).expect("writing config_docs.rs");
    println!("cargo:rerun-if-changed=build.rs");
}
