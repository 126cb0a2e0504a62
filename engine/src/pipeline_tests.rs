//! Pipeline tests (`weir test`): input records for named sources, and the records expected out
//! of named components or ports, written in TOML beside the pipeline (`[[tests]]`) or in a
//! test file naming it (`pipeline = "PATH"` and its `[[tests]]`).
//!
//! Each test runs the pipeline with every source replaced by its test input (a source the test
//! gives nothing ends at once) and every sink writing nothing, taps the components the test
//! names, and compares what came out with what it expects — in both execution modes, on one
//! worker and on two, because results must not depend on either.
//!
//! ```toml
//! [[tests]]
//! name = "a late reading goes to the late output"
//! [[tests.inputs]]
//! source = "readings"
//! records = [
//!   { ts = "2026-03-01T10:00:01Z", device = "a", temperature = 20.0 },
//!   { watermark = "2026-03-01T10:00:30Z" },   # the watermark moves on: the window closes
//!   { ts = "2026-03-01T10:00:02Z", device = "a", temperature = 21.0 },
//! ]
//! [[tests.outputs]]
//! at = "per_device"
//! records = [{ device = "a", n = 1 }]
//! [[tests.outputs]]
//! at = "per_device.late"
//! records = [{ temperature = 21.0 }]
//! ```

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use weir_operators::decode::{DecodeSpec, OnError};
use weir_operators::epochs::Mode;
use weir_operators::test_source::{TestInput, TestItem};
use weir_operators::time::TimeFormat;

use crate::components::{Op, SinkTarget};
use crate::diag::Diag;
use crate::live::{find_port, port_name, Observer};
use crate::plan::{Plan, PortRef};
use crate::spec::Kind;

/// One test, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestConfig {
    /// The test's name, shown in the report.
    pub name: Spanned<String>,
    /// Input for named sources. A source not named here gets no input.
    #[serde(default)]
    pub inputs: Vec<TestInputConfig>,
    /// What named components or ports must emit.
    pub outputs: Vec<TestOutputConfig>,
}

/// A test's input for one source.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestInputConfig {
    /// The source's id.
    pub source: Spanned<String>,
    /// The records, in order: tables of the source's fields, written as the source would read
    /// them (its time field in its own timestamp format). A table `{ watermark = "TIME" }`
    /// (RFC 3339) instead moves the source's watermark to TIME before the records after it.
    /// The input ends after the last one.
    pub records: Spanned<Vec<toml::Value>>,
}

/// What one component or port must emit.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestOutputConfig {
    /// The component or port: `id`, or `id.PORT` (`dead_letter`, `late`, `late_right`).
    pub at: Spanned<String>,
    /// The records expected, as tables of fields. Only the fields given are compared (a
    /// number equals the same number written as an integer or a float; times are compared
    /// as instants); `null = ["field", ...]` lists fields that must be NULL (TOML has no
    /// null). No other record may come out.
    pub records: Spanned<Vec<toml::Value>>,
    /// "any" (default): the same records in any order (a multiset). "exact": in this order
    /// (checked on one worker; the order of a stream split over workers is not defined, so
    /// on two workers the records are compared as a multiset).
    pub order: Option<Spanned<String>>,
}

/// A test ready to run.
#[derive(Clone, Debug)]
pub struct Test {
    /// Its name.
    pub name: String,
    /// Each source node's input.
    pub inputs: Vec<(usize, Arc<TestInput>)>,
    /// What must come out.
    pub outputs: Vec<Expected>,
}

/// The records expected out of one port.
#[derive(Clone, Debug)]
pub struct Expected {
    /// The port.
    pub port: PortRef,
    /// Its name, as written.
    pub name: String,
    /// The records (JSON objects of the fields compared).
    pub records: Vec<serde_json::Value>,
    /// Whether their order is compared.
    pub ordered: bool,
}

/// A configuration every test runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Micro-batch (else continuous).
    pub micro_batch: bool,
    /// Worker threads.
    pub workers: usize,
}

impl std::fmt::Display for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = if self.micro_batch {
            "micro-batch"
        } else {
            "continuous"
        };
        let w = if self.workers == 1 {
            "worker"
        } else {
            "workers"
        };
        write!(f, "{mode} on {} {w}", self.workers)
    }
}

/// Every configuration a test runs in: both modes, on one worker and on two.
pub const CONFIGS: [Config; 4] = [
    Config {
        micro_batch: false,
        workers: 1,
    },
    Config {
        micro_batch: false,
        workers: 2,
    },
    Config {
        micro_batch: true,
        workers: 1,
    },
    Config {
        micro_batch: true,
        workers: 2,
    },
];

/// How a source reads test input: its own decoding, or for a generator the fields it makes,
/// with its time field in RFC 3339.
fn decoding(plan: &Plan, node: usize) -> Arc<DecodeSpec> {
    let n = &plan.nodes[node];
    if let Some(d) = n.op.decoding() {
        return Arc::clone(d);
    }
    let mut d = DecodeSpec::new(
        &n.id,
        n.schema.clone(),
        TimeFormat::Iso8601,
        false,
        OnError::DeadLetter,
    );
    if let Op::Generator(g) = &n.op {
        d.watermark = g.watermark;
    }
    Arc::new(d)
}

/// A TOML value as JSON: times become RFC 3339 strings.
fn json(v: &toml::Value) -> serde_json::Value {
    match v {
        toml::Value::String(s) => serde_json::Value::String(s.clone()),
        toml::Value::Integer(i) => serde_json::Value::from(*i),
        toml::Value::Float(f) => serde_json::Value::from(*f),
        toml::Value::Boolean(b) => serde_json::Value::Bool(*b),
        toml::Value::Datetime(d) => serde_json::Value::String(d.to_string()),
        toml::Value::Array(a) => serde_json::Value::Array(a.iter().map(json).collect()),
        toml::Value::Table(t) => {
            serde_json::Value::Object(t.iter().map(|(k, v)| (k.clone(), json(v))).collect())
        }
    }
}

/// Checks written tests against `plan` and makes them ready to run.
pub fn plan_tests(tests: &[TestConfig], plan: &Plan) -> (Vec<Test>, Vec<Diag>) {
    let mut diags = Vec::new();
    let mut out = Vec::new();
    for t in tests {
        let what = format!("tests `{}`", t.name.get_ref());
        let mut inputs = Vec::new();
        for i in &t.inputs {
            let id = i.source.get_ref();
            let Some(node) = plan
                .nodes
                .iter()
                .position(|n| &n.id == id && n.kind == Kind::Source)
            else {
                let sources: Vec<&str> = plan
                    .nodes
                    .iter()
                    .filter(|n| n.kind == Kind::Source)
                    .map(|n| n.id.as_str())
                    .collect();
                diags.push(
                    Diag::error(format!("the pipeline has no source `{id}`"))
                        .component(what.clone())
                        .at(i.source.span())
                        .help(format!("give input to one of: {}", sources.join(", "))),
                );
                continue;
            };
            if inputs.iter().any(|(n, _)| *n == node) {
                diags.push(
                    Diag::error(format!("source `{id}` is given input twice"))
                        .component(what.clone())
                        .at(i.source.span())
                        .help("put all of its records in one [[tests.inputs]]"),
                );
                continue;
            }
            let decode = decoding(plan, node);
            let mut items = Vec::new();
            for r in i.records.get_ref() {
                let Some(table) = r.as_table() else {
                    diags.push(
                        Diag::error("each of `records` must be a table of fields")
                            .component(what.clone())
                            .at(i.records.span())
                            .help("write records as { field = value, ... }"),
                    );
                    continue;
                };
                let marker = table.len() == 1
                    && table.contains_key("watermark")
                    && !decode.schema.fields.iter().any(|f| f.name == "watermark");
                if marker {
                    let text = match &table["watermark"] {
                        toml::Value::String(s) => s.clone(),
                        toml::Value::Datetime(d) => d.to_string(),
                        other => other.to_string(),
                    };
                    match weir_operators::time::parse_rfc3339(&text) {
                        Ok(t) => items.push(TestItem::Watermark(t)),
                        Err(e) => diags.push(
                            Diag::error(format!("`watermark = {text}` is not a time: {e}"))
                                .component(what.clone())
                                .at(i.records.span())
                                .help(
                                    "write the time in RFC 3339, such as \"2026-03-01T10:00:30Z\"",
                                ),
                        ),
                    }
                } else {
                    items.push(TestItem::Record(json(r).to_string()));
                }
            }
            inputs.push((node, Arc::new(TestInput { decode, items })));
        }
        let mut outputs = Vec::new();
        for o in &t.outputs {
            let port = match find_port(plan, o.at.get_ref()) {
                Ok(p) => p,
                Err(e) => {
                    let (message, help) = e.split_once("\n  help: ").unwrap_or((&e, ""));
                    diags.push(
                        Diag::error(message.to_string())
                            .component(what.clone())
                            .at(o.at.span())
                            .help(help.replace("tap", "test")),
                    );
                    continue;
                }
            };
            let ordered = match o.order.as_ref().map(|s| s.get_ref().as_str()) {
                None | Some("any") => false,
                Some("exact") => true,
                Some(other) => {
                    diags.push(
                        Diag::error(format!("`order = \"{other}\"` is not an order"))
                            .component(what.clone())
                            .at(o.order.as_ref().expect("given").span())
                            .help("use \"any\" (a multiset) or \"exact\""),
                    );
                    false
                }
            };
            let mut records = Vec::new();
            let has_null_field = crate::plan::port_schema(plan, port)
                .fields
                .iter()
                .any(|f| f.name == "null");
            for r in o.records.get_ref() {
                match r {
                    toml::Value::Table(_) => {
                        let mut v = json(r);
                        // `null = ["field", ...]`: those fields must be NULL (TOML has no null).
                        if let (false, Some(obj)) = (has_null_field, v.as_object_mut()) {
                            if let Some(serde_json::Value::Array(names)) = obj.remove("null") {
                                for n in names {
                                    if let serde_json::Value::String(n) = n {
                                        obj.insert(n, serde_json::Value::Null);
                                    }
                                }
                            }
                        }
                        records.push(v)
                    }
                    _ => diags.push(
                        Diag::error("each of `records` must be a table of fields")
                            .component(what.clone())
                            .at(o.records.span())
                            .help("write records as { field = value, ... }"),
                    ),
                }
            }
            outputs.push(Expected {
                port,
                name: port_name(plan, port),
                records,
                ordered,
            });
        }
        out.push(Test {
            name: t.name.get_ref().clone(),
            inputs,
            outputs,
        });
    }
    (out, diags)
}

/// What one port emitted against what was expected: the records expected and not found, and
/// those found and not expected.
#[derive(Debug, Default, PartialEq)]
pub struct Mismatch {
    /// The port.
    pub port: String,
    /// Expected, not found.
    pub missing: Vec<serde_json::Value>,
    /// Found, not expected.
    pub unexpected: Vec<serde_json::Value>,
    /// For an exact order: the first position where the records differ.
    pub out_of_order: Option<usize>,
    /// What else went wrong here: test input a source found bad, when the test does not
    /// expect its dead letters.
    pub note: Option<String>,
}

/// Runs `test` on `plan` in `config`; returns each port's mismatch (none when it passed).
pub fn run_test(plan: &Plan, test: &Test, config: Config) -> Result<Vec<Mismatch>, String> {
    let mut plan = plan.clone();
    plan.mode = match config.micro_batch {
        true => Mode::MicroBatch(Duration::from_millis(5)),
        false => Mode::Continuous,
    };
    for i in 0..plan.nodes.len() {
        let n = &plan.nodes[i];
        if n.kind == Kind::Source {
            let input = test
                .inputs
                .iter()
                .find(|(node, _)| *node == i)
                .map(|(_, t)| Arc::clone(t))
                .unwrap_or_else(|| {
                    Arc::new(TestInput {
                        decode: decoding(&plan, i),
                        items: Vec::new(),
                    })
                });
            plan.nodes[i].op = Op::Test(input);
        } else if let Op::Sink(s) = &mut plan.nodes[i].op {
            s.target = SinkTarget::Null;
        }
    }
    // A test neither resumes from checkpoints nor takes any.
    plan.checkpoint = None;
    let ports: Vec<PortRef> = test.outputs.iter().map(|o| o.port).collect();
    let observer = Arc::new(Observer::subscribed_to(ports.clone()));
    let opts = crate::run::RunOptions {
        workers: Some(config.workers),
        observer: Some(Arc::clone(&observer)),
        ..Default::default()
    };
    let report = crate::run::run(&plan, &opts, Default::default())?;
    if let Some(f) = report.failure {
        return Err(f);
    }
    let received = observer.subscriptions();
    let mut out = Vec::new();
    // Test input a source could not read fails the test, unless the test looks at it.
    for (i, c) in report.components.iter().enumerate() {
        let dead = PortRef {
            node: i,
            port: crate::plan::Port::DeadLetter,
        };
        if c.kind == Kind::Source && c.metrics.errors > 0 && !ports.contains(&dead) {
            out.push(Mismatch {
                port: port_name(&plan, dead),
                note: Some(format!(
                    "{} test record{} of source `{}` {} bad: {}",
                    c.metrics.errors,
                    if c.metrics.errors == 1 { "" } else { "s" },
                    c.id,
                    if c.metrics.errors == 1 { "was" } else { "were" },
                    c.reasons.first.join(" | ")
                )),
                ..Mismatch::default()
            });
        }
    }
    for (o, rx) in test.outputs.iter().zip(received) {
        let actual: Vec<serde_json::Value> = rx
            .try_iter()
            .map(|l| serde_json::from_str(&l).unwrap_or(serde_json::Value::String(l)))
            .collect();
        let m = compare(
            &o.name,
            &o.records,
            &actual,
            o.ordered && config.workers == 1,
        );
        if m != Mismatch::default_for(&o.name) {
            out.push(m);
        }
    }
    Ok(out)
}

impl Mismatch {
    fn default_for(port: &str) -> Mismatch {
        Mismatch {
            port: port.to_string(),
            ..Mismatch::default()
        }
    }
}

/// Compares what came out of `port` with what was expected (see [`TestOutputConfig`]).
pub fn compare(
    port: &str,
    expected: &[serde_json::Value],
    actual: &[serde_json::Value],
    ordered: bool,
) -> Mismatch {
    let mut m = Mismatch::default_for(port);
    if ordered {
        if let Some(i) = (0..expected.len().max(actual.len())).find(
            |&i| !matches!((expected.get(i), actual.get(i)), (Some(e), Some(a)) if matches(e, a)),
        ) {
            m.out_of_order = Some(i);
            m.missing = expected.get(i..).unwrap_or_default().to_vec();
            m.unexpected = actual.get(i..).unwrap_or_default().to_vec();
        }
        return m;
    }
    // The most expected records matched to distinct actual ones (augmenting paths): an
    // expectation naming few fields cannot take the record a more specific one needs.
    let fits: Vec<Vec<usize>> = expected
        .iter()
        .map(|e| {
            (0..actual.len())
                .filter(|&i| matches(e, &actual[i]))
                .collect()
        })
        .collect();
    let mut owner: Vec<Option<usize>> = vec![None; actual.len()];
    for (e, record) in expected.iter().enumerate() {
        let mut seen = vec![false; actual.len()];
        if !augment(e, &fits, &mut owner, &mut seen) {
            m.missing.push(record.clone());
        }
    }
    m.unexpected = actual
        .iter()
        .zip(&owner)
        .filter(|(_, o)| o.is_none())
        .map(|(a, _)| a.clone())
        .collect();
    m
}

/// Finds actual record for expected record `e`, moving earlier matches along if need be.
fn augment(e: usize, fits: &[Vec<usize>], owner: &mut [Option<usize>], seen: &mut [bool]) -> bool {
    for &a in &fits[e] {
        if seen[a] {
            continue;
        }
        seen[a] = true;
        if owner[a].is_none_or(|other| augment(other, fits, owner, seen)) {
            owner[a] = Some(e);
            return true;
        }
    }
    false
}

/// Whether `actual` has every field of `expected` with an equal value: numbers by value,
/// times as instants, objects field by field (a dotted name reads a nested object).
pub fn matches(expected: &serde_json::Value, actual: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    match (expected, actual) {
        (J::Object(e), J::Object(_)) => e.iter().all(|(k, v)| {
            let found = actual
                .get(k)
                .or_else(|| k.split('.').try_fold(actual, |a, part| a.get(part)));
            match found {
                Some(a) => matches(v, a),
                None => v.is_null(),
            }
        }),
        (J::Number(a), J::Number(b)) => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs()),
            _ => a == b,
        },
        (J::String(a), J::String(b)) => {
            a == b
                || matches!(
                    (
                        weir_operators::time::parse_rfc3339(a),
                        weir_operators::time::parse_rfc3339(b)
                    ),
                    (Ok(x), Ok(y)) if x == y
                )
        }
        (J::Array(a), J::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| matches(x, y))
        }
        (a, b) => a == b,
    }
}

/// Reads `[[tests]]`: an array of test tables.
pub(crate) fn read_tests(
    value: Spanned<toml::de::DeValue<'_>>,
    diags: &mut Vec<Diag>,
) -> Vec<TestConfig> {
    let span = value.span();
    match value.into_inner() {
        toml::de::DeValue::Array(items) => items
            .into_iter()
            .filter_map(|t| crate::components::read::typed::<TestConfig>(t, "tests", diags))
            .collect(),
        _ => {
            diags.push(
                Diag::error("`tests` must be an array of tables")
                    .component("tests")
                    .at(span)
                    .help("declare each test as [[tests]] with a name, [[tests.inputs]] and [[tests.outputs]]"),
            );
            Vec::new()
        }
    }
}

/// A test file: the pipeline it tests (`pipeline = "PATH"`, relative to the test file) and
/// its tests.
pub struct TestFile {
    /// The pipeline file's path.
    pub pipeline: std::path::PathBuf,
    /// The tests.
    pub tests: Vec<TestConfig>,
}

/// Whether `text` is a test file (its `pipeline` is a path, not a `[pipeline]` table).
pub fn is_test_file(text: &str) -> bool {
    toml::de::DeTable::parse(text).is_ok_and(|t| {
        t.get_ref().iter().any(|(k, v)| {
            k.get_ref() == "pipeline" && matches!(v.get_ref(), toml::de::DeValue::String(_))
        })
    })
}

/// Reads a test file named `name` (at `path`).
pub fn read_test_file(path: &std::path::Path, text: &str) -> (Option<TestFile>, Vec<Diag>) {
    let mut diags = Vec::new();
    let root = match toml::de::DeTable::parse(text) {
        Ok(t) => t.into_inner(),
        Err(e) => {
            diags.push(
                Diag::error(format!("invalid TOML: {}", e.message().trim()))
                    .at(e.span().unwrap_or(0..0))
                    .help("fix the TOML syntax at the marked place (https://toml.io)"),
            );
            return (None, diags);
        }
    };
    let mut pipeline = None;
    let mut tests = Vec::new();
    for (key, value) in root {
        match key.get_ref().as_ref() {
            "pipeline" => match value.get_ref() {
                toml::de::DeValue::String(s) => {
                    let dir = path.parent().unwrap_or(std::path::Path::new(""));
                    pipeline = Some(dir.join(s.as_ref()));
                }
                _ => diags.push(
                    Diag::error("`pipeline` must be the path of the pipeline file")
                        .at(value.span())
                        .help("write pipeline = \"my-pipeline.toml\" (relative to this file)"),
                ),
            },
            "tests" => tests = read_tests(value, &mut diags),
            other => diags.push(
                Diag::error(format!("unknown key `{other}`"))
                    .at(key.span())
                    .help("a test file has `pipeline = \"PATH\"` and its [[tests]]"),
            ),
        }
    }
    let Some(pipeline) = pipeline else {
        diags.push(
            Diag::error("a test file needs `pipeline = \"PATH\"`")
                .at(0..0)
                .help("name the pipeline file it tests, relative to this file"),
        );
        return (None, diags);
    };
    (Some(TestFile { pipeline, tests }), diags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// An expectation naming fewer fields does not take the record a more specific one needs,
    /// whatever their order; counts still count.
    #[test]
    fn multisets_match_the_most_records() {
        let actual = [json!({"id": 1, "t": 5}), json!({"id": 2, "t": 6})];
        let expected = [json!({}), json!({"id": 1})];
        let m = compare("p", &expected, &actual, false);
        assert!(m.missing.is_empty() && m.unexpected.is_empty(), "{m:?}");
        let expected = [json!({"id": 1}), json!({"id": 1})];
        let m = compare("p", &expected, &actual, false);
        assert_eq!(m.missing, [json!({"id": 1})]);
        assert_eq!(m.unexpected, [json!({"id": 2, "t": 6})]);
        // Numbers by value, times as instants, NULL as a missing field.
        assert!(matches(&json!({"t": 5.0}), &json!({"t": 5})));
        assert!(matches(
            &json!({"ts": "2026-03-01T10:00:00Z"}),
            &json!({"ts": "2026-03-01T10:00:00.000Z"})
        ));
        assert!(matches(&json!({"x": null}), &json!({"y": 1})));
        assert!(!matches(&json!({"x": null}), &json!({"x": 1})));
    }
}
