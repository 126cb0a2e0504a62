//! The JSON Schema of pipeline files (`weir schema --pipeline`), for editor completion and
//! checking: every section, component type and key, each described by its config struct's own
//! doc comment (read from the source by `build.rs`, so the schema cannot drift from the code).
//!
//! ```
//! let s = weir_engine::pipeline_schema::json_schema();
//! let file = &s["properties"]["sources"]["additionalProperties"]["oneOf"][1];
//! assert_eq!(file["properties"]["type"]["const"], "file");
//! assert!(file["properties"]["path"]["description"].as_str().unwrap().contains("directory"));
//! ```

use serde_json::{json, Map, Value};

use crate::components::Kind;

/// A config struct's name, doc comment, and keys.
pub type ConfigDoc = (&'static str, &'static str, &'static [KeyDoc]);
/// A key of a config struct: its name, Rust type and doc comment.
pub type KeyDoc = (&'static str, &'static str, &'static str);

include!(concat!(env!("OUT_DIR"), "/config_docs.rs"));

/// Each component type and the struct that configures it, in the order of
/// [`COMPONENTS`](crate::components::COMPONENTS).
pub const CONFIG_STRUCTS: &[(Kind, &str, &str)] = &[
    (Kind::Source, "generator", "GeneratorConfig"),
    (Kind::Source, "file", "FileSourceConfig"),
    (Kind::Source, "stdin", "StdinConfig"),
    (Kind::Source, "tcp", "TcpSourceConfig"),
    (Kind::Source, "kafka", "KafkaSourceConfig"),
    (Kind::Source, "kinesis", "KinesisSourceConfig"),
    (Kind::Source, "pubsub", "PubSubSourceConfig"),
    (Kind::Source, "mqtt", "MqttSourceConfig"),
    (Kind::Source, "parquet", "ParquetSourceConfig"),
    (Kind::Transform, "filter", "FilterConfig"),
    (Kind::Transform, "map", "MapConfig"),
    (Kind::Transform, "unnest", "UnnestConfig"),
    (Kind::Transform, "window", "WindowConfig"),
    (Kind::Transform, "alert", "AlertConfig"),
    (Kind::Transform, "predict", "PredictConfig"),
    (Kind::Transform, "join", "JoinConfig"),
    (Kind::Sink, "stdout", "StdoutConfig"),
    (Kind::Sink, "file", "FileSinkConfig"),
    (Kind::Sink, "null", "NullConfig"),
    (Kind::Sink, "tcp", "TcpSinkConfig"),
    (Kind::Sink, "view", "ViewConfig"),
    (Kind::Sink, "mqtt", "MqttSinkConfig"),
    (Kind::Sink, "parquet", "ParquetSinkConfig"),
    (Kind::Sink, "kafka", "KafkaSinkConfig"),
    (Kind::Sink, "kinesis", "KinesisSinkConfig"),
    (Kind::Sink, "pubsub", "PubSubSinkConfig"),
];

fn docs(name: &str) -> Option<&'static ConfigDoc> {
    CONFIG_DOCS.iter().find(|(n, _, _)| *n == name)
}

/// The schema of a Rust field type as the pipeline file writes it.
fn of_type(ty: &str) -> Value {
    let ty = ty.trim();
    for wrapper in ["Option<", "Spanned<", "Box<"] {
        if let Some(inner) = ty.strip_prefix(wrapper) {
            return of_type(&inner[..inner.len() - 1]);
        }
    }
    if let Some(inner) = ty.strip_prefix("Vec<") {
        return json!({ "type": "array", "items": of_type(&inner[..inner.len() - 1]) });
    }
    if let Some(inner) = ty.strip_prefix("IndexMap<String,") {
        return json!({ "type": "object", "additionalProperties": of_type(&inner[..inner.len() - 1]) });
    }
    match ty {
        "String" => json!({ "type": "string" }),
        "i64" | "u64" | "usize" | "u32" | "u16" => json!({ "type": "integer" }),
        "f64" => json!({ "type": "number" }),
        "bool" => json!({ "type": "boolean" }),
        "StartDecl" => json!({ "oneOf": [
            { "enum": ["committed", "earliest", "latest"] },
            { "type": "object", "properties": { "at": { "type": "string" } }, "required": ["at"], "additionalProperties": false }
        ] }),
        "KinesisStartDecl" => json!({ "oneOf": [
            { "enum": ["trim_horizon", "latest"] },
            { "type": "object", "properties": { "at": { "type": "string" } }, "required": ["at"], "additionalProperties": false }
        ] }),
        "SchemaDecl" => json!({ "oneOf": [
            { "const": "infer" },
            { "type": "object", "additionalProperties": { "type": "string" } }
        ] }),
        other => match docs(other) {
            Some(_) => object(other, &[]),
            None => json!({}),
        },
    }
}

/// The schema of config struct `name`, with `extra` properties first.
fn object(name: &str, extra: &[(&str, Value, bool)]) -> Value {
    let (_, doc, keys) = docs(name).unwrap_or_else(|| panic!("no config struct {name}"));
    let mut props = Map::new();
    let mut required: Vec<&str> = Vec::new();
    for (k, v, req) in extra {
        props.insert(k.to_string(), v.clone());
        if *req {
            required.push(k);
        }
    }
    for (key, ty, d) in keys.iter() {
        let mut s = of_type(ty);
        if let Value::Object(m) = &mut s {
            m.insert("description".into(), Value::String(d.to_string()));
        }
        props.insert(key.to_string(), s);
        if !ty.starts_with("Option<") {
            required.push(key);
        }
    }
    json!({
        "type": "object",
        "description": doc,
        "properties": props,
        "required": required,
        "additionalProperties": false,
    })
}

/// What `inputs` means for the component configured by struct `name`.
fn inputs_doc(name: &str) -> &'static str {
    match name {
        "JoinConfig" => {
            "Exactly two: the left input, then the right (components or `ID.PORT` outputs)."
        }
        "WindowConfig" => {
            "The components (or `ID.PORT` outputs) it reads; their records must have an event time."
        }
        _ => "The components (or `ID.PORT` outputs) it reads.",
    }
}

/// How the README's reference names a Rust field type: `string`, `integer`, `list of strings`,
/// `table`, ...
fn type_words(ty: &str) -> String {
    let ty = ty.trim();
    for wrapper in ["Option<", "Spanned<", "Box<"] {
        if let Some(inner) = ty.strip_prefix(wrapper) {
            return type_words(&inner[..inner.len() - 1]);
        }
    }
    if let Some(inner) = ty.strip_prefix("Vec<") {
        return format!("list of {}s", type_words(&inner[..inner.len() - 1]));
    }
    if let Some(inner) = ty.strip_prefix("IndexMap<String,") {
        let of = type_words(&inner[..inner.len() - 1]);
        return match of.strip_prefix("list of ") {
            Some(items) => format!("table of lists of {items}"),
            None => format!("table of {of}s"),
        };
    }
    match ty {
        "String" => "string".into(),
        "i64" | "u64" | "usize" | "u32" | "u16" => "integer".into(),
        "f64" => "number".into(),
        "bool" => "boolean".into(),
        "SchemaDecl" => "table of strings, or `\"infer\"`".into(),
        "StartDecl" | "KinesisStartDecl" => "string, or `{ at = TIME }`".into(),
        _ => "table".into(),
    }
}

/// The README's reference table of config struct `name` (`| key | type | meaning |`, each
/// meaning the key's doc comment), with `inputs` first when the component reads others.
pub fn reference_table(name: &str, reads: bool) -> String {
    let (_, _, keys) = docs(name).unwrap_or_else(|| panic!("no config struct {name}"));
    let mut out = String::from("| key | type | meaning |\n|---|---|---|\n");
    if reads {
        out.push_str(&format!(
            "| `inputs` | list of strings, required | {} |\n",
            inputs_doc(name)
        ));
    }
    for (key, ty, doc) in keys.iter() {
        let required = match ty.starts_with("Option<") {
            true => "",
            false => ", required",
        };
        let doc = doc.replace('|', "\\|");
        out.push_str(&format!(
            "| `{key}` | {}{required} | {doc} |\n",
            type_words(ty)
        ));
    }
    out
}

/// The README heading of each section of the reference, with its struct: `[pipeline]`, then
/// every component type.
pub fn reference_sections() -> Vec<(String, &'static str, bool)> {
    let mut v = vec![("`[pipeline]`".to_string(), "PipelineConfig", false)];
    for (kind, ty, name) in CONFIG_STRUCTS {
        let section = match kind {
            Kind::Source => "Source",
            Kind::Transform => "Transform",
            Kind::Sink => "Sink",
        };
        v.push((format!("{section} `{ty}`"), name, *kind != Kind::Source));
    }
    v
}

/// The reference tables of every section, each under its `###` heading: what the README's
/// reference holds (a test keeps the two the same).
pub fn reference() -> String {
    reference_sections()
        .iter()
        .map(|(heading, name, reads)| format!("### {heading}\n\n{}", reference_table(name, *reads)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The JSON Schema (draft 2020-12) of a pipeline file.
pub fn json_schema() -> Value {
    let section = |kind: Kind| {
        let types: Vec<Value> = CONFIG_STRUCTS
            .iter()
            .filter(|(k, _, _)| *k == kind)
            .map(|(_, ty, name)| {
                let mut extra = vec![("type", json!({ "const": ty }), true)];
                if kind != Kind::Source {
                    extra.push((
                        "inputs",
                        json!({ "type": "array", "items": { "type": "string" }, "description": inputs_doc(name) }),
                        true,
                    ));
                }
                object(name, &extra)
            })
            .collect();
        json!({
            "type": "object",
            "description": format!("[{}.ID] tables, one per component", kind.section()),
            "additionalProperties": { "oneOf": types },
        })
    };
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Weir pipeline",
        "type": "object",
        "properties": {
            "pipeline": object("PipelineConfig", &[]),
            "sources": section(Kind::Source),
            "transforms": section(Kind::Transform),
            "sinks": section(Kind::Sink),
            "tests": {
                "type": "array",
                "description": "The pipeline's tests, run by `weir test`.",
                "items": object("TestConfig", &[]),
            },
        },
        "additionalProperties": false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every component type has its struct here, in the descriptors' order.
    #[test]
    fn every_component_type_has_its_config_struct() {
        let listed: Vec<(Kind, &str)> = CONFIG_STRUCTS.iter().map(|(k, t, _)| (*k, *t)).collect();
        let types: Vec<(Kind, &str)> = crate::components::COMPONENTS
            .iter()
            .map(|d| (d.kind, d.name))
            .collect();
        assert_eq!(listed, types);
        for (_, _, name) in CONFIG_STRUCTS {
            assert!(docs(name).is_some(), "{name} was not read by build.rs");
        }
    }

    /// Every key of every bundled pipeline is in the schema for its component's type.
    #[test]
    fn the_bundled_pipelines_use_only_keys_the_schema_has() {
        let s = json_schema();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines");
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_none_or(|x| x != "toml") {
                continue;
            }
            let doc: toml::Table = toml::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            for (section, body) in &doc {
                let props = &s["properties"][section];
                assert!(!props.is_null(), "{}: [{section}]", p.display());
                let tables: Vec<(&toml::Table, Value)> = match section.as_str() {
                    "pipeline" => vec![(body.as_table().unwrap(), props.clone())],
                    // Tests, and their inputs and outputs.
                    "tests" => {
                        let test = &props["items"];
                        let mut v = Vec::new();
                        for t in body.as_array().unwrap() {
                            let t = t.as_table().unwrap();
                            v.push((t, test.clone()));
                            for part in ["inputs", "outputs"] {
                                for x in
                                    t.get(part).and_then(|x| x.as_array()).into_iter().flatten()
                                {
                                    let item = test["properties"][part]["items"].clone();
                                    v.push((x.as_table().unwrap(), item));
                                }
                            }
                        }
                        v
                    }
                    _ => body
                        .as_table()
                        .unwrap()
                        .values()
                        .map(|c| {
                            let c = c.as_table().unwrap();
                            let ty = c["type"].as_str().unwrap();
                            let one = props["additionalProperties"]["oneOf"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .find(|o| o["properties"]["type"]["const"] == ty)
                                .unwrap_or_else(|| panic!("{}: type {ty}", p.display()))
                                .clone();
                            (c, one)
                        })
                        .collect(),
                };
                for (t, schema) in tables {
                    for key in t.keys() {
                        assert!(
                            !schema["properties"][key].is_null(),
                            "{}: [{section}] `{key}` is not in the schema",
                            p.display()
                        );
                    }
                }
            }
        }
    }
}
