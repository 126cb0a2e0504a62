//! `[sources.ID] type = "pubsub"` and `[sinks.ID] type = "pubsub"`: Google Cloud Pub/Sub in
//! and out.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use weir_cloud::pubsub::source::{PubSubSourceSpec, TimeFrom};
use weir_cloud::pubsub::Connection;
use weir_operators::encode::Format;
use weir_operators::kafka::Replay;
use weir_operators::schema::Schema;

use super::decoding::{MessageKeys, SchemaDecl, TimeKeys};
use super::kafka::key_fields;
use super::sinks::format;
use super::watermark::WatermarkConfig;
use super::{Ctx, Op, Planned, SinkSpec, SinkTarget};
use crate::diag::Diag;

/// Reads a Pub/Sub subscription by streaming pull: one record per message, a JSON object or a
/// CSV row. Worker 0 (of the first process) holds the pull. A message is acknowledged only
/// once the sinks have written what it produced — until then the client extends its deadline —
/// so a crash has the service deliver it again instead of losing it. Credentials are Google's
/// Application Default Credentials, or none for the emulator. Pub/Sub does not order messages
/// across keys: the watermark is the largest event time received less
/// `max_out_of_orderness`, and older messages are late. Assigned ids are
/// `ID:SUBSCRIPTION/MESSAGE_ID:0`; bad messages are handled as in the file source, their place
/// being `SUBSCRIPTION/MESSAGE_ID`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PubSubSourceConfig {
    /// The Google Cloud project.
    pub project: Spanned<String>,
    /// The subscription, by name or as "projects/P/subscriptions/S".
    pub subscription: Spanned<String>,
    /// Another endpoint than Google's, such as the emulator's "http://127.0.0.1:8085"
    /// (default: PUBSUB_EMULATOR_HOST if set, else Google's).
    pub endpoint: Option<Spanned<String>>,
    /// End the source after this many messages (default: run until stopped).
    pub max_messages: Option<Spanned<i64>>,
    /// How long the client keeps extending the deadline of a message Weir holds (default
    /// "1h"); past it the service delivers the message again.
    pub max_lease: Option<Spanned<String>>,
    /// How far each extension of a held message's deadline reaches (default "60s", from "10s"
    /// to "10m"): after a crash, its messages are delivered again this long after the last
    /// extension.
    pub lease_extension: Option<Spanned<String>>,
    /// The most messages held unacknowledged (default 10000): past it, the service waits.
    pub max_outstanding: Option<Spanned<i64>>,
    /// Where event time comes from: "field" (default: the timestamp field), "attribute" (the
    /// attribute `timestamp_attribute`: RFC 3339, or milliseconds since the epoch) or
    /// "publish" (when the service received the message), stored in the timestamp field.
    pub timestamp_from: Option<Spanned<String>>,
    /// The attribute holding event time with `timestamp_from = "attribute"` (default "ts").
    pub timestamp_attribute: Option<Spanned<String>>,
    /// "jsonl" (default: each message a JSON object) or "csv" (a CSV row with the schema's
    /// fields in order).
    pub format: Option<Spanned<String>>,
    /// The fields to read and their types, as in the file source (a Pub/Sub source does not
    /// infer them).
    pub schema: Spanned<SchemaDecl>,
    /// The event-time field (default "ts").
    pub timestamp_field: Option<Spanned<String>>,
    /// How timestamps are written, as in the Kafka source (default "iso8601").
    pub timestamp_format: Option<Spanned<String>>,
    /// The IANA time zone of timestamps written without an offset (default "UTC").
    pub timezone: Option<Spanned<String>>,
    /// Where each record's event time comes from: "field" (default) or "ingest".
    pub event_time: Option<Spanned<String>>,
    /// The largest share of bad records the source may read, as in the Kafka source.
    pub max_error_rate: Option<Spanned<f64>>,
    /// The id field (default "id"); when the schema lacks it, Weir assigns ids.
    pub id_field: Option<Spanned<String>>,
    /// "dead-letter" (default), "skip" or "fail", as in the file source.
    pub on_error: Option<Spanned<String>>,
    /// How event time behaves: `{ max_out_of_orderness = "2s", idle_timeout = "10s" }`
    /// (default: in order, never idle). Give the delay you expect between messages of
    /// different keys.
    pub watermark: Option<WatermarkConfig>,
    /// Where sinks count a record's latency from: "read" (default) or "event_time".
    pub latency_from: Option<Spanned<String>>,
}

/// Publishes each record as one message (JSON or a CSV row) to a Pub/Sub topic, with an
/// ordering key and attributes from fields. Each batch is confirmed by the service before the
/// sink counts it written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PubSubSinkConfig {
    /// The Google Cloud project.
    pub project: Spanned<String>,
    /// The topic, by name or as "projects/P/topics/T" (it must exist).
    pub topic: Spanned<String>,
    /// Another endpoint than Google's, such as the emulator's "http://127.0.0.1:8085".
    pub endpoint: Option<Spanned<String>>,
    /// The fields whose values (as text, joined by ",") form the ordering key (default: none);
    /// a subscription with ordering delivers a key's messages in the order published.
    pub ordering_key: Option<Spanned<Vec<Spanned<String>>>>,
    /// Fields to send as attributes too, each under its own name, such as ["device_id"].
    pub attributes: Option<Spanned<Vec<Spanned<String>>>>,
    /// "jsonl" (default) or "csv".
    pub format: Option<Spanned<String>>,
}

/// Checks a project id and a topic or subscription name.
fn names(
    ctx: &Ctx,
    project: &Spanned<String>,
    name: (&str, &Spanned<String>),
    endpoint: Option<&Spanned<String>>,
    diags: &mut Vec<Diag>,
) -> Option<Connection> {
    let p = project.get_ref();
    let ok = (6..=30).contains(&p.len())
        && p.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && p.starts_with(|c: char| c.is_ascii_lowercase());
    if !ok {
        diags.push(
            ctx.error(format!("`{p}` is not a Google Cloud project id"))
                .at(project.span())
                .help("project ids have 6 to 30 lowercase letters, digits or `-`, starting with a letter"),
        );
    }
    let (key, n) = name;
    let short = n.get_ref().rsplit('/').next().unwrap_or("");
    let full_ok = !n.get_ref().starts_with("projects/") || n.get_ref().split('/').count() == 4;
    let ok = full_ok
        && (3..=255).contains(&short.len())
        && short.starts_with(|c: char| c.is_ascii_alphabetic())
        && short
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.~+%".contains(c))
        && !short.starts_with("goog");
    if !ok {
        diags.push(
            ctx.error(format!("`{}` is not a Pub/Sub {key} name", n.get_ref()))
                .at(n.span())
                .help("names have 3 to 255 letters, digits, `-`, `_`, `.`, `~`, `+` or `%`, start with a letter and not with `goog`"),
        );
    }
    if let Some(e) = endpoint {
        super::kinesis::endpoint_url(ctx, e, "\"http://127.0.0.1:8085\" for the emulator", diags);
    }
    Some(Connection {
        project: p.clone(),
        endpoint: endpoint.map(|e| e.get_ref().trim_end_matches('/').to_string()),
    })
}

impl PubSubSourceConfig {
    /// Validates and compiles.
    pub fn plan(&self, ctx: &Ctx) -> Result<Planned, Vec<Diag>> {
        let mut diags = Vec::new();
        let watermark = WatermarkConfig::plan_option(self.watermark.as_ref(), ctx, &mut diags);
        let conn = names(
            ctx,
            &self.project,
            ("subscription", &self.subscription),
            self.endpoint.as_ref(),
            &mut diags,
        );
        let positive =
            |key: &str, v: Option<&Spanned<i64>>, default: i64, diags: &mut Vec<Diag>| match v {
                None => Some(default),
                Some(n) if *n.get_ref() > 0 => Some(*n.get_ref()),
                Some(n) => {
                    diags.push(
                        ctx.error(format!("`{key}` is {}, not a positive number", n.get_ref()))
                            .at(n.span())
                            .help(format!("give a count above 0, or remove `{key}`")),
                    );
                    None
                }
            };
        let max_messages = match &self.max_messages {
            None => Some(None),
            Some(_) => positive("max_messages", self.max_messages.as_ref(), 0, &mut diags)
                .map(|n| Some(n as u64)),
        };
        let max_outstanding = positive(
            "max_outstanding",
            self.max_outstanding.as_ref(),
            10_000,
            &mut diags,
        );
        let max_lease = match &self.max_lease {
            None => Some(Duration::from_secs(3600)),
            Some(d) => match ctx.duration("max_lease", d) {
                Ok(d) if d >= Duration::from_secs(10) => Some(d),
                Ok(_) => {
                    diags.push(
                        ctx.error("`max_lease` is shorter than 10s")
                            .at(d.span())
                            .help("hold messages for as long as their outputs may take: max_lease = \"1h\""),
                    );
                    None
                }
                Err(d) => {
                    diags.push(d);
                    None
                }
            },
        };
        let lease_extension = match &self.lease_extension {
            None => Some(Duration::from_secs(60)),
            Some(d) => match ctx.duration("lease_extension", d) {
                Ok(v) if (Duration::from_secs(10)..=Duration::from_secs(600)).contains(&v) => {
                    Some(v)
                }
                Ok(_) => {
                    diags.push(
                        ctx.error("`lease_extension` is not between 10s and 10m")
                            .at(d.span())
                            .help("the service takes extensions of 10 s to 10 min: lease_extension = \"60s\""),
                    );
                    None
                }
                Err(d) => {
                    diags.push(d);
                    None
                }
            },
        };
        let time_from = ctx
            .optional_choice(
                "timestamp_from",
                self.timestamp_from.as_ref(),
                &["field", "attribute", "publish"],
                &mut diags,
            )
            .map(|i| match i {
                0 => TimeFrom::Field,
                1 => TimeFrom::Attribute(
                    self.timestamp_attribute
                        .as_ref()
                        .map_or("ts".to_string(), |a| a.get_ref().clone()),
                ),
                _ => TimeFrom::Publish,
            });
        if let (Some(a), Some(t)) = (&self.timestamp_attribute, &time_from) {
            if !matches!(t, TimeFrom::Attribute(_)) {
                diags.push(
                    ctx.error("`timestamp_attribute` without timestamp_from = \"attribute\"")
                        .at(a.span())
                        .help(
                            "add timestamp_from = \"attribute\", or remove `timestamp_attribute`",
                        ),
                );
            }
        }
        let csv = format(ctx, self.format.as_ref(), Format::Jsonl)
            .map(|f| f == Format::Csv)
            .map_err(|d| diags.push(d))
            .ok();
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
        let sample = || -> Result<weir_operators::infer::Inferred, String> {
            Err("a Pub/Sub source does not infer its schema: declare its fields, such as schema = { ts = \"timestamp\", device = \"string\" }".into())
        };
        let Some((mut decode, _)) = keys.plan(ctx, "", sample, &mut diags) else {
            return Err(diags);
        };
        let (
            Some(conn),
            Some(max_messages),
            Some(max_outstanding),
            Some(max_lease),
            Some(lease_extension),
            Some(time_from),
            Some(csv),
            true,
        ) = (
            conn,
            max_messages,
            max_outstanding,
            max_lease,
            lease_extension,
            time_from,
            csv,
            diags.is_empty(),
        )
        else {
            return Err(diags);
        };
        decode.watermark = watermark;
        if time_from != TimeFrom::Field {
            decode = decode.with_assigned_time();
        }
        let subscription = conn.path("subscriptions", self.subscription.get_ref());
        Ok(Planned {
            schema: decode.schema.clone(),
            dead_letters: decode.on_error == weir_operators::decode::OnError::DeadLetter,
            late_schema: None,
            late_right_schema: None,
            op: Op::PubSub(Arc::new(PubSubSourceSpec {
                decode: Arc::new(decode),
                csv,
                conn,
                subscription,
                time_from,
                max_messages,
                max_lease,
                lease_extension,
                max_outstanding,
                replay: Replay::Unknown,
                status: Arc::default(),
            })),
        })
    }
}

impl PubSubSinkConfig {
    /// Validates and compiles.
    pub fn plan(&self, ctx: &Ctx, input: &Schema) -> Result<Planned, Vec<Diag>> {
        let mut diags = Vec::new();
        let f = format(ctx, self.format.as_ref(), Format::Jsonl).map_err(|d| diags.push(d));
        let conn = names(
            ctx,
            &self.project,
            ("topic", &self.topic),
            self.endpoint.as_ref(),
            &mut diags,
        );
        let ordering_key = key_fields(ctx, input, self.ordering_key.as_ref(), &mut diags);
        let attributes: Vec<(String, usize)> =
            key_fields(ctx, input, self.attributes.as_ref(), &mut diags)
                .into_iter()
                .map(|p| (input.fields[p].name.to_string(), p))
                .collect();
        match (f, conn, diags.is_empty()) {
            (Ok(format), Some(conn), true) => Ok(Planned {
                op: Op::Sink(SinkSpec {
                    target: SinkTarget::PubSub {
                        topic: conn.path("topics", self.topic.get_ref()),
                        conn,
                        ordering_key,
                        attributes,
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
