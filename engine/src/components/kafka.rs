//! `[sources.ID] type = "kafka"` and `[sinks.ID] type = "kafka"`: topics in and out through a
//! message queue, with consumer groups, committed offsets and at-least-once delivery.

use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;
use weir_operators::encode::Format;
use weir_operators::kafka::{Replay, Start};
use weir_operators::kafka_source::KafkaSourceSpec;
use weir_operators::schema::Schema;
use weir_operators::suggest::did_you_mean;

use super::decoding::{MessageKeys, SchemaDecl, TimeKeys};
use super::sinks::format;
use super::watermark::WatermarkConfig;
use super::{Ctx, Op, Planned, SinkSpec, SinkTarget};
use crate::diag::Diag;

/// Reads Kafka topics: one record per message, a JSON object or a CSV row (columns in schema
/// order, no header). The topics' partitions are spread over all workers of all processes;
/// each partition has its own watermark, and the source's is the least of them (with
/// `idle_timeout`, a quiet partition stops holding it back). Offsets are committed to the
/// consumer group only for input whose every output the sinks have written, so a restart
/// resumes without losing anything (at-least-once). Assigned ids are `ID:TOPIC/PARTITION:OFFSET`;
/// bad messages are handled as in the file source, their location being `TOPIC/PARTITION` and
/// the offset.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// The brokers to bootstrap from, "host:port" or several separated by commas.
    pub brokers: Spanned<String>,
    /// The topics to read, such as ["sensors"].
    pub topics: Spanned<Vec<Spanned<String>>>,
    /// The consumer group: where Weir commits its offsets (its recovery topic is
    /// `GROUP.weir-recovery`). Give each pipeline its own.
    pub group_id: Spanned<String>,
    /// Where to start: "committed" (default: where the group left off, or the earliest offset
    /// of a partition it has not committed in), "earliest", "latest", or a point in time,
    /// `{ at = "2026-03-01T10:00:00Z" }`: each partition's first message whose Kafka timestamp
    /// is at or after it (offsets looked up by time; a replay from that moment).
    pub start: Option<Spanned<StartDecl>>,
    /// Stop at the end each partition had when the run started (default false: read until
    /// stopped). A bounded run over a topic gives exactly the results a live one does.
    pub bounded: Option<bool>,
    /// How often offsets are committed (default "1s").
    pub commit_interval: Option<Spanned<String>>,
    /// "jsonl" (default: each message a JSON object) or "csv" (each message a CSV row with the
    /// schema's fields in order).
    pub format: Option<Spanned<String>>,
    /// Where event time comes from: "field" (default: the timestamp field) or "message" (the
    /// message's Kafka timestamp, stored in the timestamp field).
    pub timestamp_from: Option<Spanned<String>>,
    /// The fields to read and their types, as in the file source.
    /// `"infer"` reads up to the first 1,000 messages of the topics (JSON only) when the
    /// pipeline is validated and run, prints what it found, and then treats it as declared.
    pub schema: Spanned<SchemaDecl>,
    /// The event-time field (default "ts").
    pub timestamp_field: Option<Spanned<String>>,
    /// How timestamps are written: "iso8601" (default: RFC 3339 and its common variants — a
    /// space instead of the `T`, no seconds, an offset such as `+0900`, or no offset, read in
    /// `timezone`), "rfc3339" (strictly), "epoch_s" (fractions allowed), "epoch_ms",
    /// "epoch_us", or a strftime-style pattern such as "%Y-%m-%d %H:%M:%S%.f" or
    /// "%d/%b/%Y:%H:%M:%S %z".
    pub timestamp_format: Option<Spanned<String>>,
    /// The IANA time zone (such as "Asia/Seoul") of timestamps written without an offset
    /// (default "UTC"). Not for the epoch formats or "rfc3339". A local time that occurs twice when clocks go back is the earlier
    /// instant; one skipped when clocks go forward is read with the offset before the change.
    pub timezone: Option<Spanned<String>>,
    /// Where each record's event time comes from: "field" (default: the `timestamp_field`)
    /// or "ingest" (the time Weir read it: processing time). With "ingest" the schema needs no
    /// timestamp, and windows over the source are processing-time windows.
    pub event_time: Option<Spanned<String>>,
    /// The largest share of bad records the source may read, as a fraction such as 0.01:
    /// past it (over the last 1,000 records a worker read, once it has read 100, or over the
    /// whole run at its end) the run fails, naming the source, the rate and the first reasons.
    pub max_error_rate: Option<Spanned<f64>>,
    /// The id field (default "id"); when the schema lacks it, Weir assigns ids.
    pub id_field: Option<Spanned<String>>,
    /// "dead-letter" (default), "skip" or "fail", as in the file source.
    pub on_error: Option<Spanned<String>>,
    /// How event time behaves, per partition: `{ max_out_of_orderness = "2s", idle_timeout =
    /// "10s" }` (default: in order, never idle).
    pub watermark: Option<WatermarkConfig>,
    /// Where sinks count a record's latency from: "read" (default) or "event_time" (when its
    /// producer made it: end-to-end latency through the queue).
    pub latency_from: Option<Spanned<String>>,
    /// More librdkafka consumer settings, such as `{ "fetch.wait.max.ms" = "10" }`, including
    /// security: `"security.protocol" = "SASL_SSL"`, `"sasl.mechanism" = "SCRAM-SHA-512"`,
    /// `"ssl.ca.location" = "ca.pem"`. `${NAME}` in a value is replaced by the environment
    /// variable NAME: write secrets as `"sasl.password" = "${KAFKA_PASSWORD}"`.
    pub librdkafka_options: Option<IndexMap<String, Spanned<String>>>,
}

/// Writes each record as one message to a Kafka topic (JSON or a CSV row), keyed by the
/// `key` fields so that records with the same key go to the same partition. Each batch is
/// confirmed by the brokers before the sink counts it written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// The brokers to bootstrap from, "host:port" or several separated by commas.
    pub brokers: Spanned<String>,
    /// The topic to write (it must exist).
    pub topic: Spanned<String>,
    /// The fields whose values (as text, joined by ",") form the message key (default: no
    /// key, messages spread over the partitions).
    pub key: Option<Spanned<Vec<Spanned<String>>>>,
    /// "jsonl" (default) or "csv".
    pub format: Option<Spanned<String>>,
    /// More librdkafka producer settings, such as `{ "linger.ms" = "5" }`, with `${NAME}`
    /// replaced by the environment variable NAME, as for the source.
    pub librdkafka_options: Option<IndexMap<String, Spanned<String>>>,
}

/// Checks a broker list.
fn brokers(ctx: &Ctx, b: &Spanned<String>) -> Result<String, Diag> {
    let text = b.get_ref().trim();
    let ok = !text.is_empty()
        && text.split(',').all(|a| match a.trim().rsplit_once(':') {
            Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok(),
            None => false,
        });
    if ok {
        Ok(text.to_string())
    } else {
        Err(ctx
            .error(format!("`{text}` is not a list of brokers"))
            .at(b.span())
            .help("write `host:port`, or several separated by commas, such as \"127.0.0.1:9092\""))
    }
}

/// Checks a topic name as Kafka does: 1 to 249 of letters, digits, `.`, `_` and `-`.
fn topic(ctx: &Ctx, t: &Spanned<String>) -> Result<String, Diag> {
    let name = t.get_ref();
    if !name.is_empty()
        && name.len() < 250
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        Ok(name.clone())
    } else {
        Err(ctx
            .error(format!("`{name}` is not a Kafka topic name"))
            .at(t.span())
            .help("topic names have 1 to 249 letters, digits, `.`, `_` or `-`"))
    }
}

/// Checks each librdkafka setting with librdkafka itself.
/// Settings whose values are secrets: given literally in the file, they draw a warning.
const SECRET_OPTIONS: &[&str] = &[
    "sasl.password",
    "ssl.key.password",
    "ssl.keystore.password",
    "ssl.key.pem",
    "sasl.oauthbearer.client.secret",
];

/// Replaces every `${NAME}` in `value` by the environment variable NAME; the name of the first
/// variable that is not set is the error.
pub fn expand_env(value: &str) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[at..]);
            return Ok(out);
        };
        let name = &after[..end];
        match std::env::var(name) {
            Ok(v) => out.push_str(&v),
            Err(_) => return Err(name.to_string()),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn options(
    ctx: &Ctx,
    o: &Option<IndexMap<String, Spanned<String>>>,
    diags: &mut Vec<Diag>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (k, v) in o.iter().flatten() {
        let value = match expand_env(v.get_ref()) {
            Ok(value) => value,
            Err(name) => {
                diags.push(
                    ctx.error(format!(
                        "`{k}` refers to the environment variable {name}, which is not set"
                    ))
                    .at(v.span())
                    .help(format!("set it before running weir: export {name}=...")),
                );
                continue;
            }
        };
        if SECRET_OPTIONS.contains(&k.as_str()) && !v.get_ref().contains("${") {
            ctx.warn(vec![Diag::warning(format!(
                "`{k}` is written in the pipeline file"
            ))
            .component(&ctx.component)
            .at(v.span())
            .help(format!(
                "keep secrets out of pipeline files: put it in an environment variable and write \"${{KAFKA_{}}}\"",
                k.replace('.', "_").to_uppercase()
            ))]);
        }
        let mut c = rdkafka::config::ClientConfig::new();
        c.set(k, &value);
        match c.create_native_config() {
            Ok(_) => out.push((k.clone(), value)),
            Err(e) => diags.push(
                ctx.error(format!(
                    "librdkafka rejects `{k}` = \"{}\": {e}",
                    v.get_ref()
                ))
                .at(v.span())
                .help("see librdkafka's CONFIGURATION.md for its settings and their values"),
            ),
        }
    }
    out
}

impl KafkaSourceConfig {
    /// Validates and compiles.
    pub fn plan(&self, ctx: &Ctx) -> Result<Planned, Vec<Diag>> {
        let mut diags = Vec::new();
        let watermark = WatermarkConfig::plan_option(self.watermark.as_ref(), ctx, &mut diags);
        let brokers = brokers(ctx, &self.brokers).map_err(|d| diags.push(d)).ok();
        let topics: Vec<String> = self
            .topics
            .get_ref()
            .iter()
            .filter_map(|t| topic(ctx, t).map_err(|d| diags.push(d)).ok())
            .collect();
        if self.topics.get_ref().is_empty() {
            diags.push(
                ctx.error("`topics` is empty")
                    .at(self.topics.span())
                    .help("name the topics to read, such as topics = [\"sensors\"]"),
            );
        }
        if self.group_id.get_ref().trim().is_empty() {
            diags.push(
                ctx.error("`group_id` is empty")
                    .at(self.group_id.span())
                    .help("name the consumer group whose offsets Weir keeps, such as group_id = \"device-report\""),
            );
        }
        let start_names: Vec<&str> = Start::ALL.iter().map(|s| s.name()).collect();
        let start = match &self.start {
            None => Some(Start::Committed),
            Some(s) => match s.get_ref() {
                StartDecl::Named(name) => {
                    let named = Spanned::new(s.span(), name.clone());
                    ctx.optional_choice("start", Some(&named), &start_names, &mut diags)
                        .map(|i| Start::ALL[i])
                }
                StartDecl::At(text) => match weir_operators::time::parse_rfc3339(text) {
                    Ok(t) => Some(Start::At(t)),
                    Err(e) => {
                        diags.push(
                            ctx.error(format!("`start.at` is not a time: {e}"))
                                .at(s.span())
                                .help("give an RFC 3339 time, such as start = { at = \"2026-03-01T10:00:00Z\" }"),
                        );
                        None
                    }
                },
            },
        };
        let commit_interval = match &self.commit_interval {
            None => Some(Duration::from_secs(1)),
            Some(c) => match ctx.duration("commit_interval", c) {
                Ok(d) if d.is_zero() => {
                    diags.push(
                        ctx.error("`commit_interval` must be longer than zero")
                            .at(c.span())
                            .help("commit every second or so: commit_interval = \"1s\""),
                    );
                    None
                }
                Ok(d) => Some(d),
                Err(d) => {
                    diags.push(d);
                    None
                }
            },
        };
        let csv = format(ctx, self.format.as_ref(), Format::Jsonl)
            .map(|f| f == Format::Csv)
            .map_err(|d| diags.push(d))
            .ok();
        let from_message = ctx
            .optional_choice(
                "timestamp_from",
                self.timestamp_from.as_ref(),
                &["field", "message"],
                &mut diags,
            )
            .map(|i| i == 1);
        let options = options(ctx, &self.librdkafka_options, &mut diags);
        let sample = || -> Result<weir_operators::infer::Inferred, String> {
            if csv == Some(true) {
                return Err("CSV messages have no header to name their fields: declare the schema, in column order".into());
            }
            let Some(brokers) = &brokers else {
                return Err("`brokers` is not valid (said above)".into());
            };
            let config = weir_operators::kafka::client_config(brokers, &options);
            let messages = weir_operators::kafka::sample_messages(
                &config,
                &topics,
                super::decoding::SAMPLE_RECORDS,
                std::time::Duration::from_secs(10),
            )?;
            let i = weir_operators::infer::infer_jsonl(&messages.join("\n"));
            if i.records == 0 {
                return Err(format!(
                    "the topics {topics:?} have no JSON message to infer a schema from"
                ));
            }
            Ok(i)
        };
        let keys = MessageKeys {
            schema: &self.schema,
            time: TimeKeys {
                timestamp_field: self.timestamp_field.as_ref(),
                timestamp_format: self.timestamp_format.as_ref(),
                event_time: self.event_time.as_ref(),
            },
            timezone: self.timezone.as_ref(),
            max_error_rate: self.max_error_rate.as_ref(),
            id_field: self.id_field.as_ref(),
            on_error: self.on_error.as_ref(),
            latency_from: self.latency_from.as_ref(),
        };
        let what = format!("topics {}", topics.join(", "));
        let Some((mut decode, inferred)) = keys.plan(ctx, &what, sample, &mut diags) else {
            return Err(diags);
        };
        let (
            Some(brokers),
            Some(start),
            Some(commit_interval),
            Some(csv),
            Some(from_message),
            true,
        ) = (
            brokers,
            start,
            commit_interval,
            csv,
            from_message,
            diags.is_empty(),
        )
        else {
            return Err(diags);
        };
        decode.watermark = watermark;
        if from_message {
            decode = decode.with_assigned_time();
        }
        Ok(Planned {
            schema: decode.schema.clone(),
            dead_letters: decode.on_error == weir_operators::decode::OnError::DeadLetter,
            late_schema: None,
            late_right_schema: None,
            op: Op::Kafka(Arc::new(KafkaSourceSpec {
                decode: Arc::new(decode),
                csv,
                brokers,
                topics,
                topic_spans: self.topics.get_ref().iter().map(|t| t.span()).collect(),
                inferred,
                group_id: self.group_id.get_ref().trim().to_string(),
                start,
                bounded: self.bounded.unwrap_or(false),
                commit_interval,
                options,
                replay: Replay::Unknown,
                partitions: Vec::new(),
                resume_frontier: None,
                status: Arc::default(),
                checkpointed: false,
            })),
        })
    }
}

impl KafkaSinkConfig {
    /// Validates and compiles.
    pub fn plan(&self, ctx: &Ctx, input: &Schema) -> Result<Planned, Vec<Diag>> {
        let mut diags = Vec::new();
        let f = format(ctx, self.format.as_ref(), Format::Jsonl).map_err(|d| diags.push(d));
        let b = brokers(ctx, &self.brokers).map_err(|d| diags.push(d));
        let t = topic(ctx, &self.topic).map_err(|d| diags.push(d));
        let options = options(ctx, &self.librdkafka_options, &mut diags);
        let key = key_fields(ctx, input, self.key.as_ref(), &mut diags);
        match (f, b, t, diags.is_empty()) {
            (Ok(format), Ok(brokers), Ok(topic), true) => Ok(Planned {
                op: Op::Sink(SinkSpec {
                    target: SinkTarget::Kafka {
                        brokers,
                        topic,
                        key,
                        options,
                        topic_span: self.topic.span(),
                    },
                    encoder: Arc::new(weir_operators::encode::Encoder::new(format, input)),
                }),
                schema: input.clone(),
                dead_letters: false,
                late_schema: None,
                late_right_schema: None,
            }),
            _ => Err(diags),
        }
    }
}

/// The input positions of the fields named by a sink's `key` (a diagnostic for each the input
/// lacks).
pub fn key_fields(
    ctx: &Ctx,
    input: &Schema,
    names: Option<&Spanned<Vec<Spanned<String>>>>,
    diags: &mut Vec<Diag>,
) -> Vec<usize> {
    let mut key = Vec::new();
    for k in names.iter().flat_map(|k| k.get_ref()) {
        match input.index_of(k.get_ref()) {
            Some(p) => key.push(p),
            None => {
                let names = input.fields.iter().map(|f| f.name.as_str());
                diags.push(
                    ctx.error(format!(
                        "the input has no field `{}` to key by",
                        k.get_ref()
                    ))
                    .at(k.span())
                    .help(match did_you_mean(k.get_ref(), names) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!(
                            "the input's fields are: {}",
                            input
                                .fields
                                .iter()
                                .map(|f| f.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    }),
                )
            }
        }
    }
    key
}

/// A Kafka source's `start`: a name (`"earliest"`), or `{ at = "RFC 3339 time" }`.
#[derive(Debug)]
pub enum StartDecl {
    /// "committed", "earliest" or "latest".
    Named(String),
    /// A point in time, as written.
    At(String),
}

impl<'de> serde::Deserialize<'de> for StartDecl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<StartDecl, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = StartDecl;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "\"committed\", \"earliest\", \"latest\" or { at = \"2026-03-01T10:00:00Z\" }",
                )
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StartDecl, E> {
                Ok(StartDecl::Named(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<StartDecl, A::Error> {
                let mut at = None;
                while let Some(k) = m.next_key::<String>()? {
                    match k.as_str() {
                        "at" => at = Some(m.next_value::<String>()?),
                        other => {
                            return Err(serde::de::Error::unknown_field(other, &["at"]));
                        }
                    }
                }
                at.map(StartDecl::At)
                    .ok_or_else(|| serde::de::Error::missing_field("at"))
            }
        }
        d.deserialize_any(V)
    }
}
