//! The component types: for each, a serde config struct (`deny_unknown_fields`) whose doc
//! comments are the user's documentation, and a `plan` step beside it that validates the config
//! against its input schema and compiles it into an [`Op`] ready to become a timely operator.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use toml::de::DeValue;
use toml::Spanned;
use weir_operators::decode::DecodeSpec;
use weir_operators::encode::Encoder;
use weir_operators::expr::Expr;
use weir_operators::file_source::FileSourceSpec;
use weir_operators::generator::GeneratorSpec;
use weir_operators::interval_join::IntervalJoinSpec;
use weir_operators::map::MapSpec;
use weir_operators::schema::Schema;
use weir_operators::suggest::did_you_mean;
use weir_operators::window::WindowSpec;

use crate::diag::{Diag, SourceText};

pub mod alert;
pub mod decoding;
mod kind;
pub(crate) mod read;

pub use kind::Kind;
pub(crate) use read::typed;

pub mod file;
pub mod filter;
pub mod generator;
pub mod join;
pub mod kafka;
pub mod kinesis;
pub mod map;
pub mod mqtt;
pub mod parquet;
pub mod predict;
pub mod pubsub;
pub mod sinks;
pub mod stdin;
pub mod tcp;
pub mod unnest;
pub mod watermark;
pub mod window;

/// An output of a component.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Port {
    /// The main output.
    Main,
    /// Bad records of a reading source; late records of a window.
    DeadLetter,
    /// Late records of a window (or a join's left input) with late = "side-output".
    Late,
    /// Late records of a join's right input with late = "side-output".
    LateRight,
}

impl Port {
    /// The port's name after the dot in `inputs`.
    pub fn name(self) -> &'static str {
        match self {
            Port::Main => "",
            Port::DeadLetter => "dead_letter",
            Port::Late => "late",
            Port::LateRight => "late_right",
        }
    }
}

/// What Weir knows of a component type, in one place: its section and type name, the outputs it
/// has besides its main one, how its config is read (the config struct's `plan` step then
/// compiles it), and what the run summary shows of it. Everything that depends on a component's
/// type looks it up here instead of matching type names.
pub struct Descriptor {
    /// Its section.
    pub kind: Kind,
    /// Its `type` in pipeline files.
    pub name: &'static str,
    /// Its outputs besides the main one (a port exists only when its config turns it on: the
    /// plan checks `on_error` and `late`).
    pub outputs: &'static [Port],
    /// Reads its config.
    pub parse: fn(Spanned<DeValue<'_>>, &str, &mut Vec<Diag>) -> Option<ComponentConfig>,
    /// Whether it makes its records rather than reading them (the summary shows no input).
    pub generates: bool,
    /// Whether it keeps event-time state (the summary shows late records and state size).
    pub stateful: bool,
}

const SOURCE_OUTPUTS: &[Port] = &[Port::DeadLetter];

/// Every component type.
pub static COMPONENTS: &[Descriptor] = &[
    Descriptor {
        kind: Kind::Source,
        name: "generator",
        outputs: &[],
        parse: |b, w, d| Some(ComponentConfig::Generator(typed(b, w, d)?)),
        generates: true,
        stateful: false,
    },
    Descriptor {
        kind: Kind::Source,
        name: "file",
        outputs: SOURCE_OUTPUTS,
        parse: |b, w, d| Some(ComponentConfig::FileSource(typed(b, w, d)?)),
        generates: false,
        stateful: false,
    },
    Descriptor {
        kind: Kind::Source,
        name: "stdin",
        outputs: SOURCE_OUTPUTS,
        parse: |b, w, d| Some(ComponentConfig::Stdin(typed(b, w, d)?)),
        generates: false,
        stateful: false,
    },
    Descriptor {
        kind: Kind::Source,
        name: "tcp",
        outputs: SOURCE_OUTPUTS,
        parse: |b, w, d| Some(ComponentConfig::TcpSource(typed(b, w, d)?)),
        generates: false,
        stateful: false,
    },
    Descriptor {
        kind: Kind::Source,
        name: "kafka",
        outputs: SOURCE_OUTPUTS,
        parse: |b, w, d| Some(ComponentConfig::KafkaSource(typed(b, w, d)?)),
        generates: false,
        stateful: false,
    },
    Descriptor {
        kind: Kind::Source,
        name: "kinesis",
        outputs: SOURCE_OUTPUTS,
        parse: |b, w, d| Some(ComponentConfig::KinesisSource(typed(b, w, d)?)),
        generates: false,
        stateful: false,
    },
    Descriptor {
        kind: Kind::Source,
        name: "pubsub",
        outputs: SOURCE_OUTPUTS,
        parse: |b, w, d| Some(ComponentConfig::PubSubSource(typed(b, w, d)?)),
        generates: false,
        stateful: false,
    },
    Descriptor {
        kind: Kind::Source,
        name: "mqtt",
        outputs: SOURCE_OUTPUTS,
        parse: |b, w, d| Some(ComponentConfig::MqttSource(typed(b, w, d)?)),
        generates: false,
        stateful: false,
    },
    Descriptor {
        kind: Kind::Source,
        name: "parquet",
        outputs: SOURCE_OUTPUTS,
        parse: |b, w, d| Some(ComponentConfig::ParquetSource(typed(b, w, d)?)),
        generates: false,
        stateful: false,
    },
    Descriptor {
        kind: Kind::Transform,
        name: "filter",
        outputs: &[],
        parse: |b, w, d| Some(ComponentConfig::Filter(typed(b, w, d)?)),
        generates: false,
        stateful: false,
    },
    Descriptor {
        kind: Kind::Transform,
        name: "map",
        outputs: &[],
        parse: |b, w, d| Some(ComponentConfig::Map(typed(b, w, d)?)),
        generates: false,
        stateful: false,
    },
    Descriptor {
        kind: Kind::Transform,
        name: "unnest",
        outputs: &[],
        parse: |b, w, d| Some(ComponentConfig::Unnest(typed(b, w, d)?)),
        generates: false,
        stateful: false,
    },
    Descriptor {
        kind: Kind::Transform,
        name: "window",
        outputs: &[Port::DeadLetter, Port::Late],
        parse: |b, w, d| Some(ComponentConfig::Window(typed(b, w, d)?)),
        generates: false,
        stateful: true,
    },
    Descriptor {
        kind: Kind::Transform,
        name: "alert",
        outputs: &[Port::DeadLetter, Port::Late],
        parse: |b, w, d| Some(ComponentConfig::Alert(typed(b, w, d)?)),
        generates: false,
        stateful: true,
    },
    Descriptor {
        kind: Kind::Transform,
        name: "predict",
        outputs: &[Port::DeadLetter, Port::Late],
        parse: |b, w, d| Some(ComponentConfig::Predict(typed(b, w, d)?)),
        generates: false,
        stateful: true,
    },
    Descriptor {
        kind: Kind::Transform,
        name: "join",
        outputs: &[Port::DeadLetter, Port::Late, Port::LateRight],
        parse: |b, w, d| Some(ComponentConfig::Join(typed(b, w, d)?)),
        generates: false,
        stateful: true,
    },
    Descriptor {
        kind: Kind::Sink,
        name: "stdout",
        outputs: &[],
        parse: |b, w, d| Some(ComponentConfig::Stdout(typed(b, w, d)?)),
        generates: false,
        stateful: false,
    },
    Descriptor {
        kind: Kind::Sink,
        name: "file",
        outputs: &[],
        parse: |b, w, d| Some(ComponentConfig::FileSink(typed(b, w, d)?)),
        generates: false,
        stateful: false,
    },
    Descriptor {
        kind: Kind::Sink,
        name: "null",
        outputs: &[],
        parse: |b, w, d| Some(ComponentConfig::Null(typed(b, w, d)?)),
        generates: false,
        stateful: false,
    },
    Descriptor {
        kind: Kind::Sink,
        name: "tcp",
        outputs: &[],
        parse: |b, w, d| Some(ComponentConfig::TcpSink(typed(b, w, d)?)),
        generates: false,
        stateful: false,
    },
    Descriptor {
        kind: Kind::Sink,
        name: "view",
        outputs: &[],
        parse: |b, w, d| Some(ComponentConfig::View(typed(b, w, d)?)),
        generates: false,
        stateful: false,
    },
    Descriptor {
        kind: Kind::Sink,
        name: "mqtt",
        outputs: &[],
        parse: |b, w, d| Some(ComponentConfig::MqttSink(typed(b, w, d)?)),
        generates: false,
        stateful: false,
    },
    Descriptor {
        kind: Kind::Sink,
        name: "parquet",
        outputs: &[],
        parse: |b, w, d| Some(ComponentConfig::ParquetSink(typed(b, w, d)?)),
        generates: false,
        stateful: false,
    },
    Descriptor {
        kind: Kind::Sink,
        name: "kafka",
        outputs: &[],
        parse: |b, w, d| Some(ComponentConfig::KafkaSink(typed(b, w, d)?)),
        generates: false,
        stateful: false,
    },
    Descriptor {
        kind: Kind::Sink,
        name: "kinesis",
        outputs: &[],
        parse: |b, w, d| Some(ComponentConfig::KinesisSink(typed(b, w, d)?)),
        generates: false,
        stateful: false,
    },
    Descriptor {
        kind: Kind::Sink,
        name: "pubsub",
        outputs: &[],
        parse: |b, w, d| Some(ComponentConfig::PubSubSink(typed(b, w, d)?)),
        generates: false,
        stateful: false,
    },
];

/// The descriptor of a component type.
pub fn descriptor(kind: Kind, name: &str) -> Option<&'static Descriptor> {
    COMPONENTS.iter().find(|d| d.kind == kind && d.name == name)
}

/// The type names of a section, in documentation order.
pub fn type_names(kind: Kind) -> Vec<&'static str> {
    COMPONENTS
        .iter()
        .filter(|d| d.kind == kind)
        .map(|d| d.name)
        .collect()
}

/// A component's typed config.
#[derive(Debug)]
pub enum ComponentConfig {
    /// `[sources.ID] type = "generator"`
    Generator(generator::GeneratorConfig),
    /// `[sources.ID] type = "file"`
    FileSource(file::FileSourceConfig),
    /// `[sources.ID] type = "stdin"`
    Stdin(stdin::StdinConfig),
    /// `[sources.ID] type = "tcp"`
    TcpSource(tcp::TcpSourceConfig),
    /// `[sources.ID] type = "kafka"`
    KafkaSource(Box<kafka::KafkaSourceConfig>),
    /// `[sources.ID] type = "kinesis"`
    KinesisSource(Box<kinesis::KinesisSourceConfig>),
    /// `[sources.ID] type = "pubsub"`
    PubSubSource(Box<pubsub::PubSubSourceConfig>),
    /// `[sources.ID] type = "mqtt"`
    MqttSource(mqtt::MqttSourceConfig),
    /// `[sources.ID] type = "parquet"`
    ParquetSource(parquet::ParquetSourceConfig),
    /// `[transforms.ID] type = "filter"`
    Filter(filter::FilterConfig),
    /// `[transforms.ID] type = "map"`
    Map(map::MapConfig),
    /// `[transforms.ID] type = "unnest"`
    Unnest(unnest::UnnestConfig),
    /// `[transforms.ID] type = "window"`
    Window(window::WindowConfig),
    /// `[transforms.ID] type = "alert"`
    Alert(alert::AlertConfig),
    /// `[transforms.ID] type = "predict"`
    Predict(predict::PredictConfig),
    /// `[transforms.ID] type = "join"`
    Join(join::JoinConfig),
    /// `[sinks.ID] type = "stdout"`
    Stdout(sinks::StdoutConfig),
    /// `[sinks.ID] type = "file"`
    FileSink(sinks::FileSinkConfig),
    /// `[sinks.ID] type = "null"`
    Null(sinks::NullConfig),
    /// `[sinks.ID] type = "tcp"`
    TcpSink(tcp::TcpSinkConfig),
    /// `[sinks.ID] type = "view"`
    View(sinks::ViewConfig),
    /// `[sinks.ID] type = "mqtt"`
    MqttSink(mqtt::MqttSinkConfig),
    /// `[sinks.ID] type = "parquet"`
    ParquetSink(parquet::ParquetSinkConfig),
    /// `[sinks.ID] type = "kafka"`
    KafkaSink(kafka::KafkaSinkConfig),
    /// `[sinks.ID] type = "kinesis"`
    KinesisSink(kinesis::KinesisSinkConfig),
    /// `[sinks.ID] type = "pubsub"`
    PubSubSink(pubsub::PubSubSinkConfig),
}

/// Deserializes a component body by its section and type.
pub fn parse(
    kind: Kind,
    ty: &str,
    body: Spanned<DeValue<'_>>,
    what: &str,
    diags: &mut Vec<Diag>,
) -> Option<ComponentConfig> {
    (descriptor(kind, ty)?.parse)(body, what, diags)
}

/// A compiled component, ready to become an operator.
#[derive(Clone, Debug)]
pub enum Op {
    /// The generator source.
    Generator(GeneratorSpec),
    /// The file source.
    File(Arc<FileSourceSpec>),
    /// The stdin source.
    Stdin(Arc<DecodeSpec>),
    /// The TCP source.
    Tcp(Arc<weir_operators::tcp_source::TcpSourceSpec>),
    /// The Kafka source.
    Kafka(Arc<weir_operators::kafka_source::KafkaSourceSpec>),
    /// The Kinesis source.
    Kinesis(Arc<weir_cloud::kinesis::source::KinesisSourceSpec>),
    /// The Pub/Sub source.
    PubSub(Arc<weir_cloud::pubsub::source::PubSubSourceSpec>),
    /// The MQTT source.
    Mqtt(Arc<weir_operators::mqtt::MqttSourceSpec>),
    /// A pipeline test's input, standing in for a source (`weir test`).
    Test(Arc<weir_operators::test_source::TestInput>),
    /// ONNX model inference.
    Onnx(Arc<weir_operators::onnx::OnnxSpec>),
    /// A filter.
    Filter(Arc<Expr>),
    /// A map.
    Map(Arc<MapSpec>),
    /// An unnest.
    Unnest(Arc<weir_operators::unnest::UnnestSpec>),
    /// A window.
    Window(Arc<WindowSpec>),
    /// An alert.
    Alert(Arc<weir_operators::alert::AlertSpec>),
    /// A predict.
    Predict(Arc<weir_operators::predict::PredictSpec>),
    /// An interval join (its two inputs are the node's first and second).
    IntervalJoin(Arc<IntervalJoinSpec>),
    /// A temporal join (its two inputs are the node's first and second).
    TemporalJoin(Arc<weir_operators::temporal_join::TemporalJoinSpec>),
    /// A window join (its two inputs are the node's first and second).
    WindowJoin(Arc<weir_operators::window_join::WindowJoinSpec>),
    /// A sink.
    Sink(SinkSpec),
}

impl Op {
    /// How a reading source decodes its input (file, stdin, TCP, Kafka, MQTT, a test's
    /// input); `None` for the generator and for transforms and sinks.
    pub fn decoding(&self) -> Option<&Arc<DecodeSpec>> {
        match self {
            Op::File(s) => Some(&s.decode),
            Op::Stdin(d) => Some(d),
            Op::Tcp(s) => Some(&s.decode),
            Op::Kafka(s) => Some(&s.decode),
            Op::Kinesis(s) => Some(&s.decode),
            Op::PubSub(s) => Some(&s.decode),
            Op::Mqtt(s) => Some(&s.decode),
            Op::Test(t) => Some(&t.decode),
            _ => None,
        }
    }
}

/// Where a sink writes.
#[derive(Clone, Debug, PartialEq)]
pub enum SinkTarget {
    /// Standard output.
    Stdout,
    /// A file (created or truncated when the run starts).
    File(PathBuf),
    /// A file created when the first record arrives (the default dead-letter output).
    LazyFile(PathBuf),
    /// Nowhere: count only.
    Null,
    /// A TCP server (`host:port`), connected to when the run starts.
    Tcp(String),
    /// A table of a SQLite database, upserted by key.
    View {
        /// The database file.
        path: PathBuf,
        /// The table.
        table: String,
        /// Input positions of the key fields.
        key: Vec<usize>,
        /// The input's schema (the table's columns).
        schema: Schema,
    },
    /// An MQTT topic (a template naming fields).
    Mqtt {
        /// The broker.
        broker: weir_operators::mqtt::Broker,
        /// The topic template.
        topic: String,
        /// 0 or 1.
        qos: u8,
        /// Whether the broker retains the messages.
        retain: bool,
    },
    /// Event-time-partitioned Parquet files; each worker writes its own.
    Parquet(Arc<weir_operators::parquet_sink::ParquetSpec>),
    /// A Kafka topic.
    Kafka {
        /// The brokers.
        brokers: String,
        /// The topic.
        topic: String,
        /// Input positions of the key fields.
        key: Vec<usize>,
        /// More librdkafka settings.
        options: Vec<(String, String)>,
        /// Where the topic is named in the pipeline file.
        topic_span: std::ops::Range<usize>,
    },
    /// A Kinesis stream.
    Kinesis {
        /// The stream and the service.
        conn: weir_cloud::kinesis::Connection,
        /// Input positions of the partition-key fields.
        key: Vec<usize>,
        /// Where the stream is named in the pipeline file.
        stream_span: std::ops::Range<usize>,
    },
    /// A Pub/Sub topic.
    PubSub {
        /// The project and the service.
        conn: weir_cloud::pubsub::Connection,
        /// The topic's full name.
        topic: String,
        /// Input positions of the ordering-key fields.
        ordering_key: Vec<usize>,
        /// Attributes: each name and its field's input position.
        attributes: Vec<(String, usize)>,
    },
}

/// A compiled sink.
#[derive(Clone, Debug)]
pub struct SinkSpec {
    /// Where it writes.
    pub target: SinkTarget,
    /// How it encodes.
    pub encoder: Arc<Encoder>,
}

/// What a component's plan step produces.
pub struct Planned {
    /// The compiled operator.
    pub op: Op,
    /// The schema of its main output.
    pub schema: Schema,
    /// Whether it has a dead-letter output that should receive bad records.
    pub dead_letters: bool,
    /// The schema of its `late` output, when it has one (late = "side-output": a window's late
    /// records, or a join's late left records).
    pub late_schema: Option<Schema>,
    /// The schema of a join's `late_right` output (late = "side-output").
    pub late_right_schema: Option<Schema>,
}

/// What a plan step knows besides its config.
pub struct Ctx<'a> {
    /// The text spans point into.
    pub source: &'a SourceText,
    /// `section.id` of the component.
    pub component: String,
    /// The component id alone.
    pub id: String,
    /// Where the component's table is.
    pub span: Range<usize>,
    /// Warnings a plan step found, reported with the plan's other diagnostics.
    pub warnings: std::cell::RefCell<Vec<Diag>>,
}

/// The longest duration Weir takes anywhere: 1,000 years. Event times are microseconds in 64
/// bits (about 292,000 years), so a window, bound or interval below this always fits beside any
/// timestamp a clock or a file is likely to hold.
pub const MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(1_000 * 31_557_600);

/// Parses a duration such as "250ms", "1s" or "5m" (humantime's syntax), refusing any longer than
/// [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| e.to_string())?;
    if d > MAX_DURATION {
        return Err(
            "it is longer than 1000 years, the longest duration Weir takes (event times \
                    are 64-bit microseconds, and window ends must fit beside them)"
                .into(),
        );
    }
    Ok(d)
}

impl Ctx<'_> {
    /// Records warnings about this component.
    pub fn warn(&self, warnings: Vec<Diag>) {
        self.warnings.borrow_mut().extend(warnings);
    }

    /// An error about this component.
    pub fn error(&self, message: impl Into<String>) -> Diag {
        Diag::error(message).component(&self.component)
    }

    /// The span of a character range inside a string value, when the string has no escapes (else
    /// the whole value).
    pub fn inner_span(&self, value: &Spanned<String>, inner: Range<usize>) -> Range<usize> {
        let span = value.span();
        let Some(raw) = self.source.text.get(span.clone()) else {
            return span;
        };
        // A quoted TOML string, or (from `--set`) the text as typed, unquoted.
        let quote = if raw.starts_with("\"\"\"") || raw.starts_with("'''") {
            3
        } else if raw.starts_with('"') || raw.starts_with('\'') {
            1
        } else {
            0
        };
        if raw.len() < 2 * quote {
            return span;
        }
        let Some(body) = raw.get(quote..raw.len() - quote) else {
            return span;
        };
        let lead = if quote == 3 && body.starts_with('\n') {
            1
        } else {
            0
        };
        if body.get(lead..) == Some(value.get_ref().as_str()) {
            let start = span.start + quote + lead;
            let end = span.end - quote;
            let a = (start + inner.start).min(end);
            let b = (start + inner.end.max(inner.start + 1)).min(end).max(a);
            // Never split a character: widen to the boundaries around it.
            let text = &self.source.text;
            let a = crate::diag::floor_char_boundary(text, a);
            let b = crate::diag::ceil_char_boundary(text, b);
            a..b
        } else {
            span
        }
    }

    /// Checks a string value against a list of choices; returns its index.
    pub fn choice(
        &self,
        key: &str,
        value: &Spanned<String>,
        choices: &[&str],
    ) -> Result<usize, Diag> {
        let v = value.get_ref().as_str();
        choices.iter().position(|c| *c == v).ok_or_else(|| {
            self.error(format!("`{v}` is not a valid `{key}`"))
                .at(value.span())
                .help(match did_you_mean(v, choices.iter().copied()) {
                    Some(s) => format!(
                        "did you mean `{s}`? `{key}` is one of: {}",
                        choices.join(", ")
                    ),
                    None => format!("`{key}` is one of: {}", choices.join(", ")),
                })
        })
    }

    /// Checks an optional string value against a list of choices: its index, 0 (the default,
    /// listed first) when absent, or `None` with the diagnostic recorded.
    pub fn optional_choice(
        &self,
        key: &str,
        value: Option<&Spanned<String>>,
        choices: &[&str],
        diags: &mut Vec<Diag>,
    ) -> Option<usize> {
        match value {
            None => Some(0),
            Some(v) => self.choice(key, v, choices).map_err(|d| diags.push(d)).ok(),
        }
    }

    /// Parses a duration such as "250ms", "1s" or "5m".
    pub fn duration(
        &self,
        key: &str,
        value: &Spanned<String>,
    ) -> Result<std::time::Duration, Diag> {
        parse_duration(value.get_ref()).map_err(|e| {
            self.error(format!("`{}` is not a duration: {e}", value.get_ref()))
                .at(value.span())
                .help(format!(
                    "write `{key}` as a number and a unit, such as \"250ms\", \"1s\" or \"5m\""
                ))
        })
    }

    /// Parses a duration into microseconds; on error, records the diagnostic and returns `None`.
    pub fn micros(&self, key: &str, value: &Spanned<String>, diags: &mut Vec<Diag>) -> Option<i64> {
        match self.duration(key, value) {
            Ok(d) => Some(d.as_micros().min(i64::MAX as u128) as i64),
            Err(d) => {
                diags.push(d);
                None
            }
        }
    }

    /// The input positions of the fields listed under `key_name` (`key`, `group_by`), with a
    /// diagnostic for each unknown, repeated or list field; `cannot` says what a list field
    /// cannot do ("windows cannot group by").
    pub fn key_fields(
        &self,
        key_name: &str,
        key: Option<&Spanned<Vec<Spanned<String>>>>,
        input: &Schema,
        cannot: &str,
        diags: &mut Vec<Diag>,
    ) -> Vec<usize> {
        let mut out = Vec::new();
        for f in key.iter().flat_map(|k| k.get_ref()) {
            match input.index_of(f.get_ref()) {
                Some(p) if out.contains(&p) => diags.push(
                    self.error(format!("`{}` is listed twice in `{key_name}`", f.get_ref()))
                        .at(f.span())
                        .help("list each field once"),
                ),
                Some(p) if input.fields[p].ty.list_of().is_some() => diags.push(
                    self.error(format!(
                        "`{}` is a list ({}): {cannot} a list",
                        f.get_ref(),
                        input.fields[p].ty
                    ))
                    .at(f.span())
                    .help("unnest it first (a transform of type = \"unnest\") to use its elements"),
                ),
                Some(p) => out.push(p),
                None => diags.push(
                    self.error(format!(
                        "`{key_name}` names `{}`, which is not an input field",
                        f.get_ref()
                    ))
                    .at(f.span())
                    .help(match did_you_mean(f.get_ref(), input.names()) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!(
                            "the input fields are: {}",
                            input.names().collect::<Vec<_>>().join(", ")
                        ),
                    }),
                ),
            }
        }
        out
    }

    /// The late policy of an operator without updates: "dead-letter" (default), "drop" or
    /// "side-output".
    pub fn late_policy(
        &self,
        late: Option<&Spanned<String>>,
        diags: &mut Vec<Diag>,
    ) -> Option<weir_operators::late::LatePolicy> {
        use weir_operators::late::LatePolicy;
        match late {
            None => Some(LatePolicy::DeadLetter),
            Some(l) => match self.choice("late", l, &["dead-letter", "drop", "side-output"]) {
                Ok(0) => Some(LatePolicy::DeadLetter),
                Ok(1) => Some(LatePolicy::Drop),
                Ok(_) => Some(LatePolicy::SideOutput),
                Err(d) => {
                    diags.push(d);
                    None
                }
            },
        }
    }

    /// Compiles an expression, mapping its errors into the file.
    pub fn expr(&self, key: &str, value: &Spanned<String>, schema: &Schema) -> Result<Expr, Diag> {
        Expr::compile(value.get_ref(), schema).map_err(|e| {
            self.error(format!("{} in `{key}`", e.message))
                .at(self.inner_span(value, e.span.clone()))
                .maybe_help(e.help)
        })
    }
}
