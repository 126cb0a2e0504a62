//! From TOML text to a pipeline spec: the sections, the components keyed by id, each
//! component's typed config — with every syntax, key and type error collected, not only the first.
//!
//! The document is parsed with `toml`'s spanned parser, so every key and value keeps its place in
//! the file; `--set KEY=VALUE` overrides are spliced in with spans into their own command-line
//! text. Each component's table is checked against the keys its config struct accepts, then
//! deserialized into that struct.

use std::borrow::Cow;
use std::ops::Range;

use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;
use weir_operators::suggest::did_you_mean;

use crate::components::typed;
use crate::components::{self, ComponentConfig};
use crate::diag::{Diag, SourceText};

pub use crate::components::Kind;

/// The `[pipeline]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// The pipeline's name, shown in summaries and used to name the default dead-letter file
    /// (`<name>.deadletter.jsonl`). Default: the file name without its extension.
    pub name: Option<Spanned<String>>,
    /// What the pipeline is for.
    pub description: Option<String>,
    /// Worker threads, 1 to 1024 (default 1). `weir run --workers N` overrides it.
    pub workers: Option<Spanned<i64>>,
    /// "continuous" (default): records flow as they arrive and the event-time frontier follows
    /// them closely. "micro-batch": sources collect input and release it once per
    /// `batch_interval` of processing time (and at once when a batch reaches 65,536 records
    /// on a worker). Results are the same; latency and throughput differ.
    /// `weir run --mode` overrides it.
    pub mode: Option<Spanned<String>>,
    /// The micro-batch interval (default "100ms"). `weir run --batch-interval` overrides it.
    pub batch_interval: Option<Spanned<String>>,
    /// Backpressure: how many records each source may have in flight on a worker — sent, in
    /// epochs not yet through to every sink — before it stops admitting input (default 262144;
    /// a batch that starts below the limit may pass it). Input then waits where it is: a
    /// generator falls behind its schedule, a file is not read, a pipe pushes back on its
    /// writer. 0 turns the limit off, letting queues between workers grow without bound when
    /// input outruns processing.
    pub max_in_flight: Option<Spanned<i64>>,
    /// Serve the live dashboard, Prometheus `/metrics` and `/status` on this address while
    /// the pipeline runs, such as "127.0.0.1:8080" (a bare port listens on 127.0.0.1 only).
    /// `weir run --serve` overrides it.
    pub serve: Option<Spanned<String>>,
    /// Periodic checkpoints of the pipeline's state, for recovery after a crash with
    /// exactly-once file output, such as `{ interval = "10s", dir = "state/" }`. See
    /// "Checkpoints and recovery" in the README.
    pub checkpoint: Option<Spanned<CheckpointConfig>>,
}

/// `[pipeline] checkpoint`: when and where the run's state is checkpointed. A run whose `dir`
/// holds a complete checkpoint resumes from it (`weir run --from-scratch` discards it).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// The least processing time between the starts of two checkpoints, such as "10s"
    /// (at least "10ms").
    pub interval: Spanned<String>,
    /// The directory the checkpoints and the file sinks' pending output are kept in, such as
    /// "state/". In a cluster it must be one directory all processes share.
    pub dir: Spanned<String>,
}

/// One component as declared.
#[derive(Debug)]
pub struct Component {
    /// Its section.
    pub kind: Kind,
    /// Its id (the key after the section name).
    pub id: String,
    /// Where the id is.
    pub id_span: Range<usize>,
    /// Its `type`.
    pub ty: String,
    /// Where the type is.
    pub ty_span: Range<usize>,
    /// Its `inputs`, each with its span.
    pub inputs: Vec<(String, Range<usize>)>,
    /// Where `inputs` is (`None`: absent).
    pub inputs_span: Option<Range<usize>>,
    /// Where the whole table is.
    pub span: Range<usize>,
    /// Its typed config (`None` when it had errors, already reported).
    pub config: Option<ComponentConfig>,
}

impl Component {
    /// `section.id`, as shown in messages.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.kind.section(), self.id)
    }
}

/// A parsed pipeline file.
#[derive(Debug)]
pub struct PipelineSpec {
    /// The text diagnostics point into.
    pub source: SourceText,
    /// The `[pipeline]` section.
    pub pipeline: PipelineConfig,
    /// The components, in file order.
    pub components: Vec<Component>,
    /// The pipeline's tests (`[[tests]]`, run by `weir test`).
    pub tests: Vec<crate::pipeline_tests::TestConfig>,
}

/// Parses `text` (named `name`) with `overrides` (`KEY=VALUE`). Returns the spec when the
/// document could be read at all, and every problem found.
pub fn parse(name: &str, text: &str, overrides: &[String]) -> (Option<PipelineSpec>, Vec<Diag>) {
    let mut source = SourceText::new(name, text);
    let mut diags = Vec::new();
    let root = match DeTable::parse(text) {
        Ok(t) => t,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            diags.push(
                Diag::error(format!("invalid TOML: {}", e.message().trim()))
                    .at(span)
                    .help("fix the TOML syntax at the marked place (https://toml.io)"),
            );
            return (None, diags);
        }
    };
    let mut root = root.into_inner();

    // Each override value is parsed from a document padded so that its spans are offsets into
    // the command-line part of the source text.
    let mut placed = Vec::new();
    for arg in overrides {
        let (line, value_span) = source.add_override(arg);
        let raw = arg.split_once('=').map(|(_, v)| v).unwrap_or("");
        let doc = format!("{}x={raw}", " ".repeat(value_span.start.saturating_sub(2)));
        placed.push((arg, line, value_span, doc));
    }
    for (arg, line, value_span, doc) in &placed {
        if let Err(d) = apply_override(&mut root, arg, doc, line.clone(), value_span.clone()) {
            diags.push(d);
        }
    }

    let mut pipeline = PipelineConfig::default();
    let mut components = Vec::new();
    let mut tests = Vec::new();
    for (key, value) in root {
        let span = value.span();
        match key.as_ref().as_ref() {
            "pipeline" => {
                if let Some(p) = typed::<PipelineConfig>(value, "pipeline", &mut diags) {
                    pipeline = p;
                }
            }
            "tests" => tests = crate::pipeline_tests::read_tests(value, &mut diags),
            section => match Kind::ALL.iter().find(|k| k.section() == section) {
                Some(kind) => match value.into_inner() {
                    DeValue::Table(t) => {
                        for (id, body) in t {
                            if let Some(c) = component(*kind, id, body, &mut diags) {
                                components.push(c);
                            }
                        }
                    }
                    _ => diags.push(
                        Diag::error(format!("`{section}` must be a table of components"))
                            .at(span)
                            .help(format!("declare each component as [{section}.ID]")),
                    ),
                },
                None => {
                    let sections = ["pipeline", "sources", "transforms", "sinks"];
                    let meant = did_you_mean(section, sections);
                    diags.push(
                        Diag::error(format!("unknown section `{section}`"))
                            .at(key.span())
                            .help(match meant {
                                Some(s) => format!("did you mean `{s}`?"),
                                None => "a pipeline has the sections [pipeline], [sources.ID], [transforms.ID] and [sinks.ID]".into(),
                            }),
                    );
                    // Its components still stand for their ids, as the section meant, so
                    // inputs naming them resolve and what they read counts as read: one
                    // mistake, one diagnostic.
                    let kind = Kind::ALL.iter().find(|k| Some(k.section()) == meant);
                    if let (Some(kind), DeValue::Table(t)) = (kind, value.into_inner()) {
                        for (id, body) in t {
                            let mut unshown = Vec::new();
                            if let Some(mut c) = component(*kind, id, body, &mut unshown) {
                                c.config = None;
                                components.push(c);
                            }
                        }
                    }
                }
            },
        }
    }
    (
        Some(PipelineSpec {
            source,
            pipeline,
            components,
            tests,
        }),
        diags,
    )
}

fn component(
    kind: Kind,
    id: Spanned<Cow<'_, str>>,
    body: Spanned<DeValue<'_>>,
    diags: &mut Vec<Diag>,
) -> Option<Component> {
    let id_span = id.span();
    let id = id.into_inner().into_owned();
    let qualified = format!("{}.{id}", kind.section());
    let span = body.span();
    let DeValue::Table(mut table) = body.into_inner() else {
        diags.push(
            Diag::error(format!("`{qualified}` must be a table"))
                .component(&qualified)
                .at(span)
                .help(format!("declare it as [{qualified}] with a `type` key")),
        );
        return None;
    };
    if id.is_empty() || id.contains('.') || id.chars().any(char::is_whitespace) {
        diags.push(
            Diag::error(format!("`{id}` is not a valid component id"))
                .component(&qualified)
                .at(id_span.clone())
                .help("ids are non-empty and have no dots or spaces (a dot separates an id from an output port)"),
        );
    }

    // `type`
    let (ty, ty_span) = match table.remove("type") {
        Some(v) => {
            let s = v.span();
            match v.into_inner() {
                DeValue::String(t) => (t.into_owned(), s),
                _ => {
                    diags.push(
                        Diag::error("`type` must be a string")
                            .component(&qualified)
                            .at(s),
                    );
                    return None;
                }
            }
        }
        None => {
            diags.push(
                Diag::error("missing `type`")
                    .component(&qualified)
                    .at(id_span)
                    .help(format!(
                        "add `type = \"...\"`; {} types are: {}",
                        kind.section(),
                        kind.types().join(", ")
                    )),
            );
            return None;
        }
    };
    if !kind.types().contains(&ty.as_str()) {
        let elsewhere = Kind::ALL
            .iter()
            .find(|k| **k != kind && k.types().contains(&ty.as_str()));
        diags.push(
            Diag::error(format!("unknown {} type `{ty}`", kind.singular()))
                .component(&qualified)
                .at(ty_span.clone())
                .help(
                    match (elsewhere, did_you_mean(&ty, kind.types().iter().copied())) {
                        (Some(k), _) => format!(
                            "`{ty}` is a {} type: declare it as [{}.{id}]",
                            k.singular(),
                            k.section()
                        ),
                        (None, Some(s)) => format!("did you mean `{s}`?"),
                        (None, None) => {
                            format!("{} types are: {}", kind.section(), kind.types().join(", "))
                        }
                    },
                ),
        );
    }

    // `inputs`
    let mut inputs = Vec::new();
    let mut inputs_span = None;
    if let Some(v) = table.remove("inputs") {
        let s = v.span();
        inputs_span = Some(s.clone());
        if kind == Kind::Source {
            diags.push(
                Diag::error("a source takes no `inputs`")
                    .component(&qualified)
                    .at(s)
                    .help("remove `inputs`, or declare this component as a transform or a sink"),
            );
        } else {
            match v.into_inner() {
                DeValue::Array(items) => {
                    for item in items.iter() {
                        match item.get_ref() {
                            DeValue::String(name) => inputs.push((name.to_string(), item.span())),
                            _ => diags.push(
                                Diag::error("each input is a component id string")
                                    .component(&qualified)
                                    .at(item.span()),
                            ),
                        }
                    }
                }
                _ => diags.push(
                    Diag::error("`inputs` must be a list of component ids")
                        .component(&qualified)
                        .at(s)
                        .help("write inputs = [\"id\", ...]"),
                ),
            }
        }
    }

    let body = Spanned::new(span.clone(), DeValue::Table(table));
    // An unknown type was reported above; the component stays, so inputs naming it resolve.
    let config = if kind.types().contains(&ty.as_str()) {
        components::parse(kind, &ty, body, &qualified, diags)
    } else {
        None
    };
    Some(Component {
        kind,
        id,
        id_span,
        ty,
        ty_span,
        inputs,
        inputs_span,
        span,
        config,
    })
}

fn apply_override<'a>(
    root: &mut DeTable<'a>,
    arg: &str,
    doc: &'a str,
    line: Range<usize>,
    value_span: Range<usize>,
) -> Result<(), Diag> {
    let Some((path, raw)) = arg.split_once('=') else {
        return Err(Diag::error(format!("`--set {arg}` has no `=`"))
            .at(line)
            .help("write --set KEY=VALUE, such as --set sources.sensors.events=1000"));
    };
    let keys: Vec<&str> = path.trim().split('.').collect();
    if keys.iter().any(|k| k.is_empty()) || keys.len() < 2 {
        return Err(Diag::error(format!("`{path}` is not a key path"))
            .at(line)
            .help("name the key by its path, such as pipeline.workers or sinks.out.path"));
    }
    // The value: TOML if it parses as TOML, else the text as a string. Spans point into the
    // command-line text (the doc is padded so its offsets are those of `all_text`).
    let value = DeTable::parse(doc)
        .ok()
        .and_then(|t| t.into_inner().into_iter().next().map(|(_, v)| v))
        .unwrap_or_else(|| Spanned::new(value_span, DeValue::String(Cow::Owned(raw.to_string()))));
    let mut table = root;
    for (depth, key) in keys.iter().enumerate() {
        let last = depth + 1 == keys.len();
        if last {
            table.insert(
                Spanned::new(line.start..line.start, Cow::Owned(key.to_string())),
                value,
            );
            return Ok(());
        }
        // Sections and components must exist; nested tables below them may be created.
        if table.get(*key).is_none() {
            if depth < 2 && !(depth == 0 && *key == "pipeline") {
                return Err(Diag::error(format!(
                    "`--set {path}`: the pipeline has no `{}`",
                    keys[..=depth].join(".")
                ))
                .at(line)
                .help("set keys of components the pipeline declares, such as sources.ID.KEY"));
            }
            table.insert(
                Spanned::new(line.start..line.start, Cow::Owned(key.to_string())),
                Spanned::new(line.clone(), DeValue::Table(DeTable::new())),
            );
        }
        let next = table.get_mut(*key).expect("present");
        let DeValue::Table(t) = next.get_mut() else {
            return Err(Diag::error(format!("`--set {path}`: `{key}` is not a table")).at(line));
        };
        table = t;
    }
    Ok(())
}
