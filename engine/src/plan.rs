//! From a parsed spec to a validated plan: inputs resolved to components and ports, cycles
//! rejected, components put in topological order, schemas propagated from sources to sinks and
//! every component compiled against its input schema. All problems are collected.
//!
//! Output ports: every component has its main output, named by its id. A `file` or `stdin`
//! source with `on_error = "dead-letter"` also has `ID.dead_letter`; when no component reads it,
//! the plan adds a sink writing `<pipeline>.deadletter.jsonl`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use weir_operators::epochs::Mode;

use weir_operators::decode::dead_letter_schema;
use weir_operators::encode::{Encoder, Format};
use weir_operators::schema::Schema;
use weir_operators::suggest::did_you_mean;

use crate::components::{ComponentConfig, Ctx, Op, Planned, SinkSpec, SinkTarget};
use crate::diag::{has_errors, Diag, SourceText};
use crate::spec::{Kind, PipelineSpec};

pub use crate::components::Port;

/// A reference to a node's output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortRef {
    /// The node's index in [`Plan::nodes`].
    pub node: usize,
    /// Which output.
    pub port: Port,
}

/// One compiled component.
#[derive(Clone, Debug)]
pub struct Node {
    /// Its id.
    pub id: String,
    /// Its section.
    pub kind: Kind,
    /// Its type name.
    pub ty: String,
    /// What it reads.
    pub inputs: Vec<PortRef>,
    /// The schema of its main output.
    pub schema: Schema,
    /// The compiled operator.
    pub op: Op,
    /// Whether it has a dead-letter output.
    pub dead_letters: bool,
    /// Whether Weir added it (the default dead-letter sink).
    pub implicit: bool,
    /// Which fields of its main output something downstream reads (`None`: all of them, or
    /// not worked out); filters send the others as NULL columns instead of copying them.
    pub read: Option<Vec<bool>>,
}

/// Records a source may have in flight per worker unless `[pipeline] max_in_flight` says: four
/// full micro-batches, so a backlogged source can prepare the next batches while earlier ones
/// are still processed (one batch at a time cost 2-worker micro-batch runs a sixth of their
/// throughput).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 262_144;

/// A validated pipeline, ready to run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The pipeline's name.
    pub name: String,
    /// Worker threads.
    pub workers: usize,
    /// How epochs advance.
    pub mode: Mode,
    /// Backpressure: records each source may have in flight per worker (0: no limit).
    pub max_in_flight: usize,
    /// Where to serve the dashboard and metrics while it runs (`[pipeline] serve`).
    pub serve: Option<String>,
    /// Checkpoints (`[pipeline] checkpoint`): the interval and the directory.
    pub checkpoint: Option<(std::time::Duration, std::path::PathBuf)>,
    /// Where `[pipeline] checkpoint` and each component's id are in the file, for messages
    /// about a checkpoint the pipeline no longer fits.
    pub spans: HashMap<String, std::ops::Range<usize>>,
    /// Its tests (`[[tests]]`, run by `weir test`).
    pub tests: Vec<crate::pipeline_tests::Test>,
    /// The nodes, in topological order (every node after its inputs).
    pub nodes: Vec<Node>,
}

/// Validates and compiles a parsed pipeline. `file_stem` names the pipeline when it has no
/// `name`. Returns the plan (when there are no errors) and every diagnostic, warnings included.
pub fn plan(spec: &PipelineSpec, file_stem: &str) -> (Option<Plan>, Vec<Diag>) {
    let mut diags = Vec::new();
    let src = &spec.source;
    let comps = &spec.components;

    let name = spec
        .pipeline
        .name
        .as_ref()
        .map(|n| n.get_ref().clone())
        .unwrap_or_else(|| file_stem.to_string());
    let workers = match &spec.pipeline.workers {
        Some(w) if *w.get_ref() < 1 || *w.get_ref() > 1024 => {
            diags.push(
                Diag::error(format!(
                    "`workers` must be between 1 and 1024, not {}",
                    w.get_ref()
                ))
                .component("pipeline")
                .at(w.span())
                .help("set the number of worker threads, such as workers = 2"),
            );
            1
        }
        Some(w) => {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            if *w.get_ref() as usize > cores {
                diags.push(
                    Diag::warning(format!(
                        "{} workers on a machine with {cores} cores: workers beyond the cores take turns on them, which is slower, not faster",
                        w.get_ref()
                    ))
                    .component("pipeline")
                    .at(w.span())
                    .help(format!("use at most {cores} workers here, or spread them over processes (--processes)")),
                );
            }
            *w.get_ref() as usize
        }
        None => 1,
    };

    let mode = pipeline_mode(spec, &mut diags);
    let max_in_flight = match &spec.pipeline.max_in_flight {
        Some(m) if !(0..=1_000_000_000).contains(m.get_ref()) => {
            diags.push(
                Diag::error(format!(
                    "`max_in_flight` must be between 0 and 1000000000, not {}",
                    m.get_ref()
                ))
                .component("pipeline")
                .at(m.span())
                .help("set how many records a source may have in flight per worker, such as max_in_flight = 65536 (0: no limit)"),
            );
            DEFAULT_MAX_IN_FLIGHT
        }
        Some(m) => *m.get_ref() as usize,
        None => DEFAULT_MAX_IN_FLIGHT,
    };

    let serve =
        spec.pipeline
            .serve
            .as_ref()
            .and_then(|s| match serve_address(s.get_ref()) {
                Ok(a) => Some(a),
                Err(e) => {
                    diags.push(Diag::error(e).component("pipeline").at(s.span()).help(
                        "write HOST:PORT, such as serve = \"127.0.0.1:8080\", or a port alone",
                    ));
                    None
                }
            });

    let checkpoint = spec.pipeline.checkpoint.as_ref().and_then(|c| {
        let cfg = c.get_ref();
        match crate::components::parse_duration(cfg.interval.get_ref()) {
            Ok(d) if d >= std::time::Duration::from_millis(10) => {
                Some((d, std::path::PathBuf::from(cfg.dir.get_ref())))
            }
            Ok(_) => {
                diags.push(
                    Diag::error("the checkpoint `interval` must be at least 10ms")
                        .component("pipeline")
                        .at(cfg.interval.span())
                        .help("write a longer interval, such as interval = \"10s\""),
                );
                None
            }
            Err(e) => {
                diags.push(
                    Diag::error(format!(
                        "`{}` is not a duration: {e}",
                        cfg.interval.get_ref()
                    ))
                    .component("pipeline")
                    .at(cfg.interval.span())
                    .help("write `interval` as a number and a unit, such as \"10s\""),
                );
                None
            }
        }
    });

    // Ids are unique across sections, since `inputs` names them without the section.
    let mut by_id: HashMap<&str, usize> = HashMap::new();
    for (i, c) in comps.iter().enumerate() {
        if let Some(&first) = by_id.get(c.id.as_str()) {
            diags.push(
                Diag::error(format!(
                    "the id `{}` is used twice (also by {})",
                    c.id,
                    comps[first].qualified()
                ))
                .component(c.qualified())
                .at(c.id_span.clone())
                .help("give every component its own id: inputs name components by id alone"),
            );
        } else {
            by_id.insert(&c.id, i);
        }
    }
    if !comps.iter().any(|c| c.kind == Kind::Source) {
        diags.push(
            Diag::error("the pipeline has no sources")
                .help("add a source, such as [sources.events] with type = \"generator\""),
        );
    }
    if !comps.iter().any(|c| c.kind == Kind::Sink) {
        diags.push(
            Diag::error("the pipeline has no sinks").help(
                "add a sink, such as [sinks.out] with type = \"stdout\" and inputs = [\"...\"]",
            ),
        );
    }

    // Resolve inputs.
    let mut inputs: Vec<Vec<PortRef>> = vec![Vec::new(); comps.len()];
    let mut input_spans: Vec<Vec<std::ops::Range<usize>>> = vec![Vec::new(); comps.len()];
    for (i, c) in comps.iter().enumerate() {
        if c.kind == Kind::Source {
            continue;
        }
        if c.inputs.is_empty() {
            let what = if c.kind == Kind::Sink {
                "sink"
            } else {
                "transform"
            };
            diags.push(
                Diag::error(format!("this {what} has no inputs"))
                    .component(c.qualified())
                    .at(c.inputs_span.clone().unwrap_or(c.id_span.clone()))
                    .help("add inputs = [\"ID\"] naming the component(s) it reads"),
            );
        }
        for (name, span) in &c.inputs {
            let (id, port) = match name.split_once('.') {
                Some((id, port)) => (id, Some(port)),
                None => (name.as_str(), None),
            };
            let Some(&j) = by_id.get(id) else {
                diags.push(
                    Diag::error(format!("input `{name}` names no component"))
                        .component(c.qualified())
                        .at(span.clone())
                        .help(
                            match did_you_mean(
                                id,
                                comps
                                    .iter()
                                    .filter(|o| o.kind != Kind::Sink)
                                    .map(|o| o.id.as_str()),
                            ) {
                                Some(s) => format!("did you mean `{s}`?"),
                                None => format!(
                                    "the components that can be read are: {}",
                                    comps
                                        .iter()
                                        .filter(|o| o.kind != Kind::Sink)
                                        .map(|o| o.id.as_str())
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ),
                            },
                        ),
                );
                continue;
            };
            let target = &comps[j];
            if target.kind == Kind::Sink {
                diags.push(
                    Diag::error(format!("input `{name}` is a sink, which has no output"))
                        .component(c.qualified())
                        .at(span.clone())
                        .help("read a source or a transform"),
                );
                continue;
            }
            let outputs = crate::components::descriptor(target.kind, &target.ty)
                .map(|d| d.outputs)
                .unwrap_or(&[]);
            let port = match port {
                None => Port::Main,
                Some(p) => match outputs.iter().find(|o| o.name() == p) {
                    Some(o) => *o,
                    None => {
                        diags.push(
                            Diag::error(format!("`{}` has no output `{p}`", target.id))
                                .component(c.qualified())
                                .at(span.clone())
                                .help(outputs_help(&target.id, outputs)),
                        );
                        continue;
                    }
                },
            };
            inputs[i].push(PortRef { node: j, port });
            input_spans[i].push(span.clone());
        }
    }

    // Topological order (Kahn); what remains is on or behind a cycle.
    let n = comps.len();
    let mut indegree: Vec<usize> = inputs.iter().map(|v| v.len()).collect();
    let mut readers: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, ins) in inputs.iter().enumerate() {
        for p in ins {
            readers[p.node].push(i);
        }
    }
    let mut order: Vec<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut k = 0;
    while k < order.len() {
        let i = order[k];
        k += 1;
        for &r in &readers[i] {
            indegree[r] -= 1;
            if indegree[r] == 0 {
                order.push(r);
            }
        }
    }
    if order.len() < n {
        report_cycles(comps, &inputs, &input_spans, &order, &mut diags);
    }

    // Components nothing reads.
    for (i, c) in comps.iter().enumerate() {
        if c.kind != Kind::Sink
            && !inputs
                .iter()
                .flatten()
                .any(|p| p.node == i && p.port == Port::Main)
        {
            diags.push(
                Diag::warning(format!("nothing reads the output of `{}`", c.id))
                    .component(c.qualified())
                    .at(c.id_span.clone())
                    .help(format!(
                        "add \"{}\" to the inputs of a transform or sink, or remove this component",
                        c.id
                    )),
            );
        }
    }

    // Plan each component after its inputs.
    let mut planned: Vec<Option<Planned>> = (0..n).map(|_| None).collect();
    for &i in &order {
        let c = &comps[i];
        let Some(config) = &c.config else { continue };
        let ctx = Ctx {
            source: src,
            component: c.qualified(),
            id: c.id.clone(),
            span: c.span.clone(),
            warnings: Default::default(),
        };
        if let ComponentConfig::Join(j) = config {
            if inputs[i].len() != 2 {
                diags.push(
                    Diag::error(format!(
                        "a join reads exactly two inputs, left then right, not {}",
                        inputs[i].len()
                    ))
                    .component(c.qualified())
                    .at(c.inputs_span.clone().unwrap_or(c.span.clone()))
                    .help("inputs = [\"LEFT\", \"RIGHT\"]"),
                );
                continue;
            }
            let mut sides = Vec::new();
            for k in 0..2 {
                let one = [inputs[i][k]];
                let span = [input_spans[i][k].clone()];
                match input_schema(c, &one, &span, comps, &planned, &mut diags) {
                    Some(s) => sides.push(s),
                    None => break,
                }
            }
            if let [l, r] = sides.as_slice() {
                match j.plan(&ctx, l, r) {
                    Ok(p) => planned[i] = Some(p),
                    Err(mut d) => diags.append(&mut d),
                }
            }
            diags.append(&mut ctx.warnings.borrow_mut());
            continue;
        }
        let input_schema = if c.kind == Kind::Source {
            None
        } else {
            match input_schema(c, &inputs[i], &input_spans[i], comps, &planned, &mut diags) {
                Some(s) => Some(s),
                None => continue,
            }
        };
        let result = match (config, &input_schema) {
            (ComponentConfig::Generator(g), _) => g.plan(&ctx),
            (ComponentConfig::FileSource(f), _) => f.plan(&ctx),
            (ComponentConfig::Stdin(s), _) => s.plan(&ctx),
            (ComponentConfig::TcpSource(t), _) => t.plan(&ctx),
            (ComponentConfig::KafkaSource(k), _) => k.plan(&ctx),
            (ComponentConfig::KinesisSource(k), _) => k.plan(&ctx),
            (ComponentConfig::PubSubSource(k), _) => k.plan(&ctx),
            (ComponentConfig::ParquetSource(p), _) => p.plan(&ctx),
            (ComponentConfig::MqttSource(m), _) => m.plan(&ctx),
            (ComponentConfig::Filter(f), Some(s)) => f.plan(&ctx, s),
            (ComponentConfig::Map(m), Some(s)) => m.plan(&ctx, s),
            (ComponentConfig::Unnest(u), Some(s)) => u.plan(&ctx, s),
            (ComponentConfig::Window(w), Some(s)) => w.plan(&ctx, s),
            (ComponentConfig::Alert(a), Some(s)) => a.plan(&ctx, s),
            (ComponentConfig::Predict(p), Some(s)) => p.plan(&ctx, s),
            (ComponentConfig::Stdout(o), Some(s)) => o.plan(&ctx, s),
            (ComponentConfig::FileSink(o), Some(s)) => o.plan(&ctx, s),
            (ComponentConfig::Null(o), Some(s)) => o.plan(&ctx, s),
            (ComponentConfig::TcpSink(o), Some(s)) => o.plan(&ctx, s),
            (ComponentConfig::KafkaSink(o), Some(s)) => o.plan(&ctx, s),
            (ComponentConfig::KinesisSink(o), Some(s)) => o.plan(&ctx, s),
            (ComponentConfig::PubSubSink(o), Some(s)) => o.plan(&ctx, s),
            (ComponentConfig::View(o), Some(s)) => o.plan(&ctx, s),
            (ComponentConfig::ParquetSink(o), Some(s)) => o.plan(&ctx, s),
            (ComponentConfig::MqttSink(o), Some(s)) => o.plan(&ctx, s),
            _ => continue,
        };
        match result {
            Ok(p) => planned[i] = Some(p),
            Err(mut d) => diags.append(&mut d),
        }
        diags.append(&mut ctx.warnings.borrow_mut());
    }

    // Late outputs nothing reads: the late records would be counted and lost.
    for (i, p) in planned.iter().enumerate() {
        let Some(p) = p else { continue };
        for (port, has) in [
            (Port::Late, p.late_schema.is_some()),
            (Port::LateRight, p.late_right_schema.is_some()),
        ] {
            let read = inputs
                .iter()
                .flatten()
                .any(|r| r.node == i && r.port == port);
            if has && !read {
                let c = &comps[i];
                diags.push(
                    Diag::warning(format!(
                        "late records of `{}` go to `{}.{}`, which nothing reads: they will be counted and lost",
                        c.id,
                        c.id,
                        port.name()
                    ))
                    .component(c.qualified())
                    .at(c.id_span.clone())
                    .help(format!(
                        "add a sink with inputs = [\"{}.{}\"], or set late = \"drop\" or \"dead-letter\"",
                        c.id,
                        port.name()
                    )),
                );
            }
        }
    }

    // Only one stdin source, and no two file sinks on one path.
    let stdins: Vec<&crate::spec::Component> = comps
        .iter()
        .filter(|c| c.kind == Kind::Source && c.ty == "stdin")
        .collect();
    for extra in stdins.iter().skip(1) {
        diags.push(
            Diag::error("a pipeline can read standard input only once")
                .component(extra.qualified())
                .at(extra.ty_span.clone())
                .help(format!(
                    "read it in one source ({}) and fan it out to several transforms",
                    stdins[0].qualified()
                )),
        );
    }
    // No two writers of one path, and no sink writing a file a source reads (it would be
    // truncated before it is read). Paths are compared as the files they name.
    // The file sinks' files, by the component writing each (checked against the default
    // dead-letter file once the plan knows whether there is one).
    let mut paths: HashMap<PathBuf, usize> = HashMap::new();
    let mut read: Vec<(PathBuf, &str)> = Vec::new();
    for (i, p) in planned.iter().enumerate() {
        if let Some(Planned {
            op: Op::File(spec), ..
        }) = p
        {
            for (f, _) in &spec.files {
                read.push((same_file(f), &comps[i].id));
            }
        }
    }
    for (i, p) in planned.iter().enumerate() {
        if let Some(Planned {
            op:
                Op::Sink(SinkSpec {
                    target: SinkTarget::File(path),
                    ..
                }),
            ..
        }) = p
        {
            let file = same_file(path);
            if let Some(other) = paths.insert(file.clone(), i) {
                let other = &comps[other].id;
                diags.push(
                    Diag::error(format!(
                        "sinks `{other}` and `{}` both write `{}`",
                        comps[i].id,
                        path.display()
                    ))
                    .component(comps[i].qualified())
                    .at(comps[i].span.clone())
                    .help("give each file sink its own path, or have one sink read both inputs"),
                );
            }
            for (r, source) in &read {
                if *r == file {
                    diags.push(
                        Diag::error(format!(
                            "sink `{}` writes `{}`, which source `{source}` reads",
                            comps[i].id,
                            path.display()
                        ))
                        .component(comps[i].qualified())
                        .at(comps[i].span.clone())
                        .help("write the output somewhere else: the sink would empty the input before it is read"),
                    );
                }
            }
        }
    }

    // A component whose config had errors (reported while parsing) cannot be planned.
    if has_errors(&diags) || comps.iter().any(|c| c.config.is_none()) {
        return (None, diags);
    }

    // Build the plan in topological order, renumbering nodes.
    let mut new_index = vec![usize::MAX; n];
    let mut nodes = Vec::with_capacity(n + 1);
    for &i in &order {
        let p = planned[i].take().expect("planned without errors");
        new_index[i] = nodes.len();
        nodes.push(Node {
            id: comps[i].id.clone(),
            kind: comps[i].kind,
            ty: comps[i].ty.clone(),
            inputs: inputs[i]
                .iter()
                .map(|r| PortRef {
                    node: new_index[r.node],
                    port: r.port,
                })
                .collect(),
            schema: p.schema,
            op: p.op,
            dead_letters: p.dead_letters,
            implicit: false,
            read: None,
        });
    }
    prune_fields(&mut nodes);
    if let Some(c) = &spec.pipeline.checkpoint {
        uncheckpointed(&nodes, comps, &by_id, c.span(), &mut diags);
        if has_errors(&diags) {
            return (None, diags);
        }
    }
    // Dead-letter outputs nothing reads go to the default dead-letter file.
    let unread: Vec<PortRef> = (0..nodes.len())
        .filter(|&i| nodes[i].dead_letters)
        .filter(|&i| {
            !nodes.iter().any(|m| {
                m.inputs.contains(&PortRef {
                    node: i,
                    port: Port::DeadLetter,
                })
            })
        })
        .map(|i| PortRef {
            node: i,
            port: Port::DeadLetter,
        })
        .collect();
    if !unread.is_empty() {
        let file = default_dead_letter_path(&name);
        if let Some(&i) = paths.get(&same_file(&file)) {
            let c = &comps[i];
            diags.push(
                Diag::error(format!(
                    "sink `{}` writes `{}`, the pipeline's default dead-letter file",
                    c.id,
                    file.display()
                ))
                .component(c.qualified())
                .at(c.span.clone())
                .help("choose another path, or have this sink read the dead-letter outputs (inputs = [\"SOURCE.dead_letter\"]) so there is no default dead-letter file"),
            );
        }
        if has_errors(&diags) {
            return (None, diags);
        }
        // Its own name, unless a sink of the user's has it: then the first free of
        // `dead_letter_default`, `dead_letter_default_2`, ... (one name, one row).
        let taken = |id: &str| nodes.iter().any(|n| n.kind == Kind::Sink && n.id == id);
        let mut id = "dead_letter".to_string();
        let mut k = 1;
        while taken(&id) {
            id = match k {
                1 => "dead_letter_default".into(),
                _ => format!("dead_letter_default_{k}"),
            };
            k += 1;
        }
        nodes.push(Node {
            id,
            kind: Kind::Sink,
            ty: "file".into(),
            inputs: unread,
            schema: dead_letter_schema(),
            op: Op::Sink(SinkSpec {
                target: SinkTarget::LazyFile(file),
                encoder: Arc::new(Encoder::new(Format::Jsonl, &dead_letter_schema())),
            }),
            dead_letters: false,
            implicit: true,
            read: None,
        });
    }
    (
        Some(Plan {
            name,
            workers,
            mode,
            max_in_flight,
            serve,
            checkpoint,
            spans: comps
                .iter()
                .map(|c| (c.id.clone(), c.id_span.clone()))
                .chain(
                    spec.pipeline
                        .checkpoint
                        .as_ref()
                        .map(|c| ("[pipeline] checkpoint".to_string(), c.span())),
                )
                .collect(),
            tests: Vec::new(),
            nodes,
        }),
        diags,
    )
}

/// With `[pipeline] checkpoint`: an error at each component whose state or position
/// checkpoints do not cover yet (ONNX models; sources other than the generator, Kafka and
/// JSON-lines and CSV files).
fn uncheckpointed(
    nodes: &[Node],
    comps: &[crate::spec::Component],
    by_id: &HashMap<&str, usize>,
    checkpoint: std::ops::Range<usize>,
    diags: &mut Vec<Diag>,
) {
    for n in nodes {
        let what = match &n.op {
            Op::File(f)
                if !matches!(
                    f.format,
                    weir_operators::file_source::FileFormat::Parquet { .. }
                ) =>
            {
                None
            }
            Op::File(_) => Some("a Parquet source's position"),
            Op::Generator(_)
            | Op::Kafka(_)
            | Op::Window(_)
            | Op::Filter(_)
            | Op::Map(_)
            | Op::Unnest(_)
            | Op::Sink(_) => None,
            Op::IntervalJoin(_)
            | Op::WindowJoin(_)
            | Op::TemporalJoin(_)
            | Op::Alert(_)
            | Op::Predict(_) => None,
            _ if n.kind == Kind::Source => Some("this source's position"),
            _ => Some("this component's state"),
        };
        let Some(what) = what else { continue };
        let c = by_id.get(n.id.as_str()).map(|&i| &comps[i]);
        let mut d = Diag::error(format!(
            "checkpoints do not cover {what} yet: {} `{}` (type `{}`) cannot resume from a checkpoint",
            n.kind.singular(),
            n.id,
            n.ty
        ))
        .component(c.map_or(n.id.clone(), |c| c.qualified()))
        .help("remove `checkpoint` from [pipeline] to run this pipeline without checkpoints, or read the generator, Kafka, or JSON-lines or CSV files with windows, joins, alerts, predictions, filters and maps only");
        d = d.at(c.map_or(checkpoint.clone(), |c| c.ty_span.clone()));
        diags.push(d);
    }
}

/// Which fields of each node's main output its readers use (`None`: all of them), worked out
/// from the sinks back: a sink reads every field, and so does a window or a join unless its
/// input is orderly (see [`orderly`]: then it reads its keys, time and what it computes from or
/// outputs); a filter reads what its own
/// readers read and its condition's fields; a map reads the fields it keeps and computes from.
/// Generators then fill only the fields something reads, and filters copy only those: the
/// others are NULL columns, which nothing sees.
fn prune_fields(nodes: &mut [Node]) {
    let mut used: Vec<Option<Vec<bool>>> = nodes
        .iter()
        .map(|n| Some(vec![false; n.schema.len()]))
        .collect();
    for i in (0..nodes.len()).rev() {
        let reads: Option<Vec<usize>> = match &nodes[i].op {
            Op::Filter(e) => used[i].as_ref().map(|mine| {
                let mut f: Vec<usize> = (0..mine.len()).filter(|&k| mine[k]).collect();
                f.extend(e.fields());
                f
            }),
            Op::Map(m) => Some(m.input_fields()),
            Op::Unnest(u) => used[i].as_ref().map(|mine| u.fields_read(mine)),
            // A window puts a record in its dead-letter or late output whole; when none can
            // be late or untimed, it reads only its key, time and arguments.
            Op::Window(w) if nodes[i].inputs.iter().all(|r| orderly(nodes, r.node)) => {
                Some(w.fields_read())
            }
            _ => None,
        };
        for (k, r) in nodes[i].inputs.clone().into_iter().enumerate() {
            if r.port != Port::Main {
                continue;
            }
            // A join reads each side's key, time and selected fields, when nothing can be
            // late or untimed (it dead-letters or side-outputs such records whole).
            let join_reads = match &nodes[i].op {
                Op::IntervalJoin(j) if orderly(nodes, r.node) => Some(j.common.fields_read(k)),
                Op::WindowJoin(j) if orderly(nodes, r.node) => Some(j.common.fields_read(k)),
                Op::TemporalJoin(j) if orderly(nodes, r.node) => Some(j.common.fields_read(k)),
                _ => None,
            };
            let reads = join_reads.or_else(|| reads.clone());
            match (&reads, &mut used[r.node]) {
                (Some(fields), Some(u)) => fields.iter().for_each(|&k| u[k] = true),
                (None, u) => *u = None,
                (Some(_), None) => {}
            }
        }
    }
    for (n, u) in nodes.iter_mut().zip(used) {
        n.read = u;
    }
}

/// Whether every record of a node's main output has an event time and is never behind its
/// watermark: a generator without disorder, late events, pauses or an idle timeout, through
/// filters. Nothing read from
/// outside (a file, a socket, Kafka) is.
fn orderly(nodes: &[Node], i: usize) -> bool {
    match &nodes[i].op {
        // A pause with an idle timeout lets the watermark pass events still to come.
        Op::Generator(g) => {
            g.disorder == 0
                && g.late_fraction == 0.0
                && g.pause.is_none()
                && g.watermark.idle_timeout.is_none()
        }
        Op::Filter(_) => nodes[i]
            .inputs
            .iter()
            .all(|r| r.port == Port::Main && orderly(nodes, r.node)),
        _ => false,
    }
}

/// The execution mode from `[pipeline]`: `mode` and `batch_interval`.
fn pipeline_mode(spec: &PipelineSpec, diags: &mut Vec<Diag>) -> Mode {
    let p = &spec.pipeline;
    let interval = match &p.batch_interval {
        None => Some(Duration::from_millis(100)),
        Some(v) => match crate::components::parse_duration(v.get_ref()) {
            Ok(d) if d >= Duration::from_millis(1) => Some(d),
            Ok(_) => {
                diags.push(
                    Diag::error("`batch_interval` must be at least 1ms")
                        .component("pipeline")
                        .at(v.span())
                        .help("use an interval such as \"100ms\" or \"1s\""),
                );
                None
            }
            Err(e) => {
                diags.push(
                    Diag::error(format!("`{}` is not a duration: {e}", v.get_ref()))
                        .component("pipeline")
                        .at(v.span())
                        .help("write `batch_interval` as a number and a unit, such as \"100ms\" or \"1s\""),
                );
                None
            }
        },
    };
    match p.mode.as_ref().map(|m| (m.get_ref().as_str(), m)) {
        None | Some(("continuous", _)) => {
            if let (Some(b), None | Some(("continuous", _))) = (
                &p.batch_interval,
                p.mode.as_ref().map(|m| (m.get_ref().as_str(), m)),
            ) {
                diags.push(
                    Diag::warning("`batch_interval` has no effect in continuous mode")
                        .component("pipeline")
                        .at(b.span())
                        .help("set mode = \"micro-batch\" to use it, or remove it"),
                );
            }
            Mode::Continuous
        }
        Some(("micro-batch", _)) => {
            Mode::MicroBatch(interval.unwrap_or(Duration::from_millis(100)))
        }
        Some((other, m)) => {
            diags.push(
                Diag::error(format!("`{other}` is not a valid `mode`"))
                    .component("pipeline")
                    .at(m.span())
                    .help(match did_you_mean(other, ["continuous", "micro-batch"]) {
                        Some(s) => {
                            format!("did you mean `{s}`? `mode` is one of: continuous, micro-batch")
                        }
                        None => "`mode` is one of: continuous, micro-batch".into(),
                    }),
            );
            Mode::Continuous
        }
    }
}

/// What to write instead of an output a component does not have.
fn outputs_help(id: &str, outputs: &[Port]) -> String {
    if outputs.is_empty() {
        return format!("`{id}` has only its main output: write `{id}`");
    }
    let mut names = vec![format!("`{id}`")];
    for o in outputs {
        names.push(match o {
            Port::Late | Port::LateRight => {
                format!("`{id}.{}` (with late = \"side-output\")", o.name())
            }
            _ => format!("`{id}.{}`", o.name()),
        });
    }
    format!("its outputs are {}", names.join(", "))
}

/// The file a path names, for comparing paths: absolute, with `.` and `..` resolved and the
/// directory's links followed where it exists.
pub fn same_file(path: &std::path::Path) -> PathBuf {
    let abs = std::env::current_dir().unwrap_or_default().join(path);
    if let Ok(p) = abs.canonicalize() {
        return p;
    }
    let mut clean = PathBuf::new();
    for c in abs.components() {
        match c {
            std::path::Component::ParentDir => {
                clean.pop();
            }
            std::path::Component::CurDir => {}
            c => clean.push(c),
        }
    }
    match (
        clean.parent().and_then(|d| d.canonicalize().ok()),
        clean.file_name(),
    ) {
        (Some(dir), Some(name)) => dir.join(name),
        _ => clean,
    }
}

/// `<name>.deadletter.jsonl`, with the name made safe for a file name.
pub fn default_dead_letter_path(name: &str) -> PathBuf {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    PathBuf::from(format!("{safe}.deadletter.jsonl"))
}

/// The common schema of a component's inputs, or `None` (with a diagnostic where needed).
fn input_schema(
    c: &crate::spec::Component,
    inputs: &[PortRef],
    spans: &[std::ops::Range<usize>],
    comps: &[crate::spec::Component],
    planned: &[Option<Planned>],
    diags: &mut Vec<Diag>,
) -> Option<Schema> {
    let mut first: Option<(Schema, usize)> = None;
    for (k, r) in inputs.iter().enumerate() {
        // An input that failed to plan was reported already.
        let s = match r.port {
            Port::Main => planned[r.node].as_ref()?.schema.clone(),
            Port::DeadLetter => {
                let p = planned[r.node].as_ref()?;
                if !p.dead_letters {
                    diags.push(
                        Diag::error(format!(
                            "`{}` sends no dead letters: its on_error is not \"dead-letter\"",
                            comps[r.node].id
                        ))
                        .component(c.qualified())
                        .at(spans[k].clone())
                        .help(format!(
                            "set on_error = \"dead-letter\" on {}, or read `{}` instead",
                            comps[r.node].qualified(),
                            comps[r.node].id
                        )),
                    );
                    return None;
                }
                dead_letter_schema()
            }
            Port::Late | Port::LateRight => {
                let p = planned[r.node].as_ref()?;
                let late = if r.port == Port::Late {
                    &p.late_schema
                } else {
                    &p.late_right_schema
                };
                let Some(late) = late else {
                    diags.push(
                        Diag::error(format!(
                            "`{}` sends no late records to `{}.{}`: its late policy is not \"side-output\"",
                            comps[r.node].id,
                            comps[r.node].id,
                            r.port.name()
                        ))
                        .component(c.qualified())
                        .at(spans[k].clone())
                        .help(format!(
                            "set late = \"side-output\" on {}",
                            comps[r.node].qualified()
                        )),
                    );
                    return None;
                };
                late.clone()
            }
        };
        match &first {
            None => first = Some((s, k)),
            Some((f, fk)) if f.fields != s.fields => {
                let show = |s: &Schema| {
                    s.fields
                        .iter()
                        .map(|f| format!("{} {}", f.name, f.ty))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                diags.push(
                    Diag::error("the inputs have different fields, so they cannot be merged")
                        .component(c.qualified())
                        .at(spans[k].clone())
                        .help(format!(
                            "`{}` has ({}) but `{}` has ({}); add a map before one of them so both have the same fields in the same order",
                            c.inputs[*fk].0,
                            show(f),
                            c.inputs[k].0,
                            show(&s)
                        )),
                );
                return None;
            }
            Some(_) => {}
        }
    }
    first.map(|(s, _)| s)
}

fn report_cycles(
    comps: &[crate::spec::Component],
    inputs: &[Vec<PortRef>],
    spans: &[Vec<std::ops::Range<usize>>],
    done: &[usize],
    diags: &mut Vec<Diag>,
) {
    let mut reported = vec![false; comps.len()];
    for &d in done {
        reported[d] = true;
    }
    for start in 0..comps.len() {
        if reported[start] {
            continue;
        }
        // Walk inputs among unfinished nodes until a node repeats: that is a cycle.
        let mut path = vec![start];
        let mut cur = start;
        while let Some(next) = inputs[cur]
            .iter()
            .map(|p| p.node)
            .find(|&m| !done.contains(&m))
        {
            if let Some(pos) = path.iter().position(|&p| p == next) {
                let cycle = &path[pos..];
                let mut names: Vec<&str> =
                    cycle.iter().rev().map(|&i| comps[i].id.as_str()).collect();
                names.push(comps[*cycle.last().expect("non-empty")].id.as_str());
                let at = cycle[0];
                let span_idx = inputs[at]
                    .iter()
                    .position(|p| cycle.contains(&p.node))
                    .unwrap_or(0);
                diags.push(
                    Diag::error(format!("the inputs form a cycle: {}", names.join(" -> ")))
                        .component(comps[at].qualified())
                        .at(spans[at].get(span_idx).cloned().unwrap_or(comps[at].id_span.clone()))
                        .help("data must flow one way, from sources to sinks: remove one of these inputs"),
                );
                for &i in cycle {
                    reported[i] = true;
                }
                break;
            }
            path.push(next);
            cur = next;
        }
        reported[start] = true;
    }
}

/// Renders the plan for `weir graph` and summaries: `id (type)`.
pub fn label(node: &Node) -> String {
    format!("{} ({} {})", node.id, node.ty, node.kind.singular())
}

/// The schema of the records on an output port.
pub(crate) fn port_schema(plan: &Plan, r: PortRef) -> weir_operators::schema::Schema {
    let n = &plan.nodes[r.node];
    match r.port {
        Port::Main => n.schema.clone(),
        Port::DeadLetter => weir_operators::decode::dead_letter_schema(),
        // Late records are a window's or a join side's input records.
        Port::Late => port_schema(plan, n.inputs[0]),
        Port::LateRight => port_schema(plan, n.inputs[1]),
    }
}

/// The address to serve on, from `HOST:PORT` or a bare port (which listens on 127.0.0.1
/// only): an IP address or `localhost`, and a port.
pub fn serve_address(s: &str) -> Result<String, String> {
    let s = s.trim();
    if let Ok(port) = s.parse::<u16>() {
        return Ok(format!("127.0.0.1:{port}"));
    }
    if s.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(s.to_string());
    }
    match s.rsplit_once(':') {
        Some(("localhost", p)) if p.parse::<u16>().is_ok() => Ok(format!("127.0.0.1:{p}")),
        _ => Err(format!("`{s}` is not an address to serve on")),
    }
}

/// Everything a caller needs from a pipeline file: parse, validate and plan.
pub fn load(name: &str, text: &str, overrides: &[String]) -> (Option<Plan>, Vec<Diag>, SourceText) {
    let (spec, mut diags) = crate::spec::parse(name, text, overrides);
    let Some(spec) = spec else {
        return (None, diags, SourceText::new(name, text));
    };
    let stem = std::path::Path::new(name)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "pipeline".into());
    let had_errors = has_errors(&diags);
    let (plan, mut more) = plan(&spec, &stem);
    diags.append(&mut more);
    let mut plan = if had_errors { None } else { plan };
    if let Some(p) = &mut plan {
        let (tests, mut bad) = crate::pipeline_tests::plan_tests(&spec.tests, p);
        p.tests = tests;
        if has_errors(&bad) {
            plan = None;
        }
        diags.append(&mut bad);
    }
    // In file order, as a compiler reports; problems with no place first.
    diags.sort_by_key(|d| d.span.as_ref().map(|s| s.start + 1).unwrap_or(0));
    (plan, diags, spec.source)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which fields of node `id`'s output are read.
    fn read_of(text: &str, id: &str) -> Option<Vec<bool>> {
        let (plan, diags, _) = load("p.toml", text, &[]);
        assert!(diags.is_empty(), "{diags:?}");
        let plan = plan.unwrap();
        let node = plan.nodes.iter().find(|n| n.id == id).expect("the node");
        node.read.clone()
    }

    fn generator_columns(text: &str) -> Option<Vec<bool>> {
        read_of(text, "s")
    }

    const SOURCE: &str = "[sources.s]\ntype = \"generator\"\nprofile = \"iot\"\nevents = 10\n";

    /// The IoT fields: id ts kind device_id temperature humidity pressure status battery alarm
    /// severity.
    #[test]
    fn generators_fill_only_the_fields_something_reads() {
        let quick_start = format!(
            "{SOURCE}[transforms.hot]\ntype = \"filter\"\ninputs = [\"s\"]\ncondition = \"kind = 'reading' AND temperature > 30.0\"\n\
             [transforms.f]\ntype = \"map\"\ninputs = [\"hot\"]\nselect = [\"id\", \"ts\", \"device_id\"]\ncompute = {{ t = \"temperature * 2\" }}\n\
             [sinks.o]\ntype = \"null\"\ninputs = [\"f\"]\n"
        );
        let (t, f) = (true, false);
        assert_eq!(
            generator_columns(&quick_start),
            Some(vec![t, t, t, t, t, f, f, f, f, f, f])
        );
        // The filter copies what the map reads: not the kind, which only its condition reads.
        assert_eq!(
            read_of(&quick_start, "hot"),
            Some(vec![t, t, f, t, t, f, f, f, f, f, f])
        );
        // A second reader that needs everything (a sink) makes every field filled.
        let two = format!("{quick_start}[sinks.all]\ntype = \"null\"\ninputs = [\"s\"]\n");
        assert_eq!(generator_columns(&two), None);
        // A filter passes on what its readers read: here, a map keeping the battery.
        let through = format!(
            "{SOURCE}[transforms.low]\ntype = \"filter\"\ninputs = [\"s\"]\ncondition = \"battery < 10\"\n\
             [transforms.m]\ntype = \"map\"\ninputs = [\"low\"]\nselect = [\"status\"]\n\
             [sinks.o]\ntype = \"null\"\ninputs = [\"m\"]\n"
        );
        assert_eq!(
            generator_columns(&through),
            Some(vec![f, f, f, f, f, f, f, t, t, f, f])
        );
        // A window over input that may be late or untimed reads everything (it dead-letters
        // such records whole); over an orderly generator, only its key, time and arguments.
        let window = |source: &str| {
            format!(
                "{source}[transforms.w]\ntype = \"window\"\ninputs = [\"s\"]\nsize = \"1s\"\ngroup_by = [\"device_id\"]\n\
                 aggregates = {{ n = \"count(*)\", t = \"avg(temperature) FILTER (WHERE battery > 5)\" }}\n\
                 [sinks.o]\ntype = \"null\"\ninputs = [\"w\"]\n"
            )
        };
        assert_eq!(
            generator_columns(&window(SOURCE)),
            Some(vec![f, t, f, t, t, f, f, f, t, f, f])
        );
        let disordered =
            format!("{SOURCE}disorder = \"1s\"\nwatermark = {{ max_out_of_orderness = \"1s\" }}\n");
        assert_eq!(generator_columns(&window(&disordered)), None);
        let late = format!("{SOURCE}late_fraction = 0.01\n");
        assert_eq!(generator_columns(&window(&late)), None);
        // A join over orderly filters reads each side's key, time and selected fields.
        let join = format!(
            "{SOURCE}[transforms.r]\ntype = \"filter\"\ninputs = [\"s\"]\ncondition = \"kind = 'reading'\"\n\
             [transforms.st]\ntype = \"filter\"\ninputs = [\"s\"]\ncondition = \"kind = 'status'\"\n\
             [transforms.j]\ntype = \"join\"\nkind = \"interval\"\ninputs = [\"r\", \"st\"]\non = [\"device_id\"]\n\
             between = [\"-1s\", \"1s\"]\nselect = [\"left.id\", \"right.battery\"]\n\
             [sinks.o]\ntype = \"null\"\ninputs = [\"j\"]\n"
        );
        assert_eq!(
            read_of(&join, "r"),
            Some(vec![t, t, f, t, f, f, f, f, f, f, f])
        );
        assert_eq!(
            read_of(&join, "st"),
            Some(vec![f, t, f, t, f, f, f, f, t, f, f])
        );
        // A temporal join reads the same.
        let temporal = join.replace(
            "kind = \"interval\"\ninputs = [\"r\", \"st\"]\non = [\"device_id\"]\nbetween = [\"-1s\", \"1s\"]\n",
            "kind = \"temporal\"\ninputs = [\"r\", \"st\"]\non = [\"device_id\"]\n",
        );
        assert_ne!(temporal, join);
        assert_eq!(
            read_of(&temporal, "r"),
            Some(vec![t, t, f, t, f, f, f, f, f, f, f])
        );
        assert_eq!(
            read_of(&temporal, "st"),
            Some(vec![f, t, f, t, f, f, f, f, t, f, f])
        );
    }
}
