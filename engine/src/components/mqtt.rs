//! `[sources.ID] type = "mqtt"` and `[sinks.ID] type = "mqtt"`: devices over MQTT.

use std::sync::Arc;

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;
use weir_operators::encode::Format;
use weir_operators::mqtt::{template_fields, Broker, MqttSourceSpec, TopicFilter};
use weir_operators::schema::Schema;

use super::decoding::{decode_spec, DecodingKeys};
use super::kafka::expand_env;
use super::sinks::planned;
use super::watermark::WatermarkConfig;
use super::{Ctx, Op, Planned, SinkTarget};
use crate::diag::Diag;

/// Subscribes to topics of an MQTT broker (MQTT 3.1.1): each message's payload is one JSON
/// object, decoded as a JSON line of the `file` source is (bad records are handled by
/// `on_error`, known by their topic and message number). Worker 0 holds the session; when the
/// pipeline falls behind, Weir stops reading and the broker queues. A lost broker is retried
/// every second until it is back.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSourceConfig {
    /// The broker, `host:port` (default "127.0.0.1:1883").
    pub broker: Option<Spanned<String>>,
    /// Topic filters to subscribe to, with `+` and `#` wildcards; a single-level wildcard may
    /// be named, `devices/{device_id}/telemetry`, to put the level's text in that field (a
    /// string field, added to the schema if it is not declared).
    pub topics: Spanned<Vec<Spanned<String>>>,
    /// 0 (at most once) or 1 (default: at least once, each message acknowledged once Weir has
    /// taken it).
    pub qos: Option<Spanned<i64>>,
    /// true (default): the broker forgets the session when Weir disconnects; false: it keeps
    /// the subscriptions and queues QoS 1 messages for the next run with the same `client_id`.
    pub clean_session: Option<Spanned<bool>>,
    /// The client id (default: `weir-ID-PROCESS`, a new one each run). Required with
    /// `clean_session = false`: the broker knows the session by it.
    pub client_id: Option<Spanned<String>>,
    /// The user name, if the broker asks for one.
    pub username: Option<Spanned<String>>,
    /// The password; write it as "${NAME}" to take it from the environment variable NAME.
    pub password: Option<Spanned<String>>,
    /// End the source after this many messages (default: run until stopped).
    pub max_messages: Option<Spanned<i64>>,
    /// The fields to read and their types, as in the `file` source.
    pub schema: Spanned<IndexMap<String, Spanned<String>>>,
    /// The event-time field (default "ts").
    pub timestamp_field: Option<Spanned<String>>,
    /// How timestamps are written (see the `file` source; default "iso8601").
    pub timestamp_format: Option<Spanned<String>>,
    /// The IANA time zone of timestamps written without an offset (default "UTC").
    pub timezone: Option<Spanned<String>>,
    /// "field" (default) or "ingest" (the time Weir received the message).
    pub event_time: Option<Spanned<String>>,
    /// The largest share of bad records the source may read (see the `file` source).
    pub max_error_rate: Option<Spanned<f64>>,
    /// The id field (default "id"); when the schema lacks it, Weir assigns
    /// `ID:TOPIC:NUMBER`.
    pub id_field: Option<Spanned<String>>,
    /// "dead-letter" (default), "skip" or "fail", as in the `file` source.
    pub on_error: Option<Spanned<String>>,
    /// How event time behaves: `{ max_out_of_orderness = "2s", idle_timeout = "10s" }`
    /// (default: in order, never idle). All topics share one watermark.
    pub watermark: Option<WatermarkConfig>,
    /// Where sinks count a record's latency from: "read" (default: when Weir received the
    /// message) or "event_time" (its event time — when a device that stamps readings as it
    /// makes them made it: end to end, publish -> broker -> Weir -> sink).
    pub latency_from: Option<Spanned<String>>,
}

/// Publishes each record as one JSON message to an MQTT topic — alerts back to devices. Each
/// batch waits until the broker has confirmed its messages (QoS 1) or they are sent (QoS 0);
/// a broker lost for longer than 30 s fails the run.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSinkConfig {
    /// The broker, `host:port` (default "127.0.0.1:1883").
    pub broker: Option<Spanned<String>>,
    /// The topic; `{field}` puts a field's value in it, such as "devices/{device_id}/alerts"
    /// (a `/`, `+` or `#` in the value becomes `_`).
    pub topic: Spanned<String>,
    /// 0 (at most once) or 1 (default: at least once).
    pub qos: Option<Spanned<i64>>,
    /// Whether the broker keeps each topic's last message for new subscribers (default false).
    pub retain: Option<Spanned<bool>>,
    /// The client id (default: `weir-ID-PROCESS`).
    pub client_id: Option<Spanned<String>>,
    /// The user name, if the broker asks for one.
    pub username: Option<Spanned<String>>,
    /// The password; write it as "${NAME}" to take it from the environment variable NAME.
    pub password: Option<Spanned<String>>,
}

fn qos_level(ctx: &Ctx, q: Option<&Spanned<i64>>, diags: &mut Vec<Diag>) -> u8 {
    match q {
        None => 1,
        Some(q) if matches!(q.get_ref(), 0 | 1) => *q.get_ref() as u8,
        Some(q) => {
            diags.push(
                ctx.error(format!("`qos` is {}, not 0 or 1", q.get_ref()))
                    .at(q.span())
                    .help("0 is at most once, 1 at least once (QoS 2 is not supported)"),
            );
            1
        }
    }
}

/// The broker settings shared by the source and the sink.
#[allow(clippy::too_many_arguments)]
fn broker(
    ctx: &Ctx,
    address: Option<&Spanned<String>>,
    client_id: Option<&Spanned<String>>,
    clean_session: bool,
    username: Option<&Spanned<String>>,
    password: Option<&Spanned<String>>,
    diags: &mut Vec<Diag>,
) -> Broker {
    let client_id = match client_id {
        Some(c) if c.get_ref().trim().is_empty() => {
            diags.push(
                ctx.error("`client_id` is empty")
                    .at(c.span())
                    .help("name the client, or remove `client_id` for a new one each run"),
            );
            String::new()
        }
        Some(c) => c.get_ref().clone(),
        None => format!("weir-{}-{}", ctx.id, std::process::id()),
    };
    let text = address.map_or("127.0.0.1:1883", |a| a.get_ref().as_str());
    let mut broker = Broker::at(text, client_id).unwrap_or_else(|| {
        let a = address.expect("the default address is good");
        diags.push(
            ctx.error(format!("`{}` is not a broker address", a.get_ref()))
                .at(a.span())
                .help("write `host:port`, such as \"127.0.0.1:1883\""),
        );
        Broker::at("127.0.0.1:1883", String::new()).expect("good")
    });
    broker.clean_session = clean_session;
    let secret = |v: &Spanned<String>, diags: &mut Vec<Diag>| match expand_env(v.get_ref()) {
        Ok(s) => s,
        Err(e) => {
            diags.push(
                ctx.error(e)
                    .at(v.span())
                    .help("set the environment variable before running weir"),
            );
            String::new()
        }
    };
    let credentials = match (username, password) {
        (Some(u), p) => Some((
            secret(u, diags),
            p.map(|p| secret(p, diags)).unwrap_or_default(),
        )),
        (None, Some(p)) => {
            diags.push(
                ctx.error("`password` without `username`")
                    .at(p.span())
                    .help("give the user name too"),
            );
            None
        }
        (None, None) => None,
    };
    if let Some(p) = password.filter(|p| !p.get_ref().contains("${")) {
        ctx.warn(vec![Diag::warning("the MQTT password is written in the pipeline file")
            .component(&ctx.component)
            .at(p.span())
            .help("keep secrets out of pipeline files: put it in an environment variable and write \"${MQTT_PASSWORD}\"")]);
    }
    broker.credentials = credentials;
    broker
}

impl MqttSourceConfig {
    /// Validates and compiles.
    pub fn plan(&self, ctx: &Ctx) -> Result<Planned, Vec<Diag>> {
        let mut diags = Vec::new();
        let clean = self.clean_session.as_ref().is_none_or(|c| *c.get_ref());
        if let (false, None) = (clean, &self.client_id) {
            diags.push(
                ctx.error("a persistent session (clean_session = false) needs a `client_id`")
                    .at(self.clean_session.as_ref().expect("given").span())
                    .help("name the client, such as client_id = \"weir-device-report\": the broker keeps the session under that name"),
            );
        }
        let broker = broker(
            ctx,
            self.broker.as_ref(),
            self.client_id.as_ref(),
            clean,
            self.username.as_ref(),
            self.password.as_ref(),
            &mut diags,
        );
        let qos = qos_level(ctx, self.qos.as_ref(), &mut diags);
        if self.topics.get_ref().is_empty() {
            diags.push(
                ctx.error("`topics` is empty")
                    .at(self.topics.span())
                    .help("give the topic filters to subscribe to, such as [\"devices/{device_id}/telemetry\"]"),
            );
        }
        // Fields named by topic levels: strings, added to the schema if not declared.
        let mut schema = self.schema.get_ref().clone();
        let mut named = Vec::new();
        for t in self.topics.get_ref() {
            let parsed = TopicFilter::parse(t.get_ref(), |name| {
                named.push((name.to_string(), t.span()));
                0
            });
            if let Err(e) = parsed {
                diags.push(
                    ctx.error(format!("`{}` is not a topic filter: {e}", t.get_ref()))
                        .at(t.span())
                        .help("levels are separated by `/`; `+` matches one level, `#` (last) the rest, `{field}` one level into a field"),
                );
            }
        }
        for (name, span) in &named {
            match schema.get(name) {
                Some(ty) if ty.get_ref() != "string" => diags.push(
                    ctx.error(format!(
                        "`{name}` comes from a topic level, so it is a string, but the schema declares it {}",
                        ty.get_ref()
                    ))
                    .at(ty.span())
                    .help(format!("declare {name} = \"string\", or leave it out of the schema")),
                ),
                Some(_) => {}
                None => {
                    schema.insert(name.clone(), Spanned::new(span.clone(), "string".into()));
                }
            }
        }
        let max_messages = match &self.max_messages {
            Some(m) if *m.get_ref() < 1 => {
                diags.push(
                    ctx.error(format!(
                        "`max_messages` must be at least 1, not {}",
                        m.get_ref()
                    ))
                    .at(m.span())
                    .help("remove it to read until the run is stopped"),
                );
                None
            }
            m => m.as_ref().map(|m| *m.get_ref() as u64),
        };
        let watermark = WatermarkConfig::plan_option(self.watermark.as_ref(), ctx, &mut diags);
        let latency_from = ctx
            .optional_choice(
                "latency_from",
                self.latency_from.as_ref(),
                &["read", "event_time"],
                &mut diags,
            )
            .is_some_and(|i| i == 1);
        let schema = Spanned::new(self.schema.span(), schema);
        let decode = decode_spec(
            ctx,
            DecodingKeys {
                schema: &schema,
                timestamp_field: self.timestamp_field.as_ref(),
                timestamp_format: self.timestamp_format.as_ref(),
                timezone: self.timezone.as_ref(),
                max_error_rate: self.max_error_rate.as_ref(),
                event_time: self.event_time.as_ref(),
                id_field: self.id_field.as_ref(),
                on_error: self.on_error.as_ref(),
            },
        );
        let mut decode = match decode {
            Ok(d) => d,
            Err(mut d) => {
                diags.append(&mut d);
                return Err(diags);
            }
        };
        if let Some(t) = decode.schema.time {
            let time = decode.schema.fields[t].name.to_string();
            if let Some((_, span)) = named.iter().find(|(n, _)| *n == time) {
                diags.push(
                    ctx.error(format!(
                        "`{time}` is the event-time field; it cannot come from a topic level"
                    ))
                    .at(span.clone())
                    .help("name the level another field"),
                );
            }
        }
        if !diags.is_empty() {
            return Err(diags);
        }
        let topics: Vec<TopicFilter> = self
            .topics
            .get_ref()
            .iter()
            .map(|t| {
                TopicFilter::parse(t.get_ref(), |name| {
                    decode.schema.index_of(name).expect("added above")
                })
                .expect("checked above")
            })
            .collect();
        decode.watermark = watermark;
        decode.latency_from_event_time = latency_from;
        Ok(Planned {
            schema: decode.schema.clone(),
            dead_letters: decode.on_error == weir_operators::decode::OnError::DeadLetter,
            late_schema: None,
            late_right_schema: None,
            op: Op::Mqtt(Arc::new(MqttSourceSpec {
                decode: Arc::new(decode),
                broker,
                topics,
                qos,
                max_messages,
            })),
        })
    }
}

impl MqttSinkConfig {
    /// Validates and compiles.
    pub fn plan(&self, ctx: &Ctx, input: &Schema) -> Result<Planned, Vec<Diag>> {
        let mut diags = Vec::new();
        let broker = broker(
            ctx,
            self.broker.as_ref(),
            self.client_id.as_ref(),
            true,
            self.username.as_ref(),
            self.password.as_ref(),
            &mut diags,
        );
        let qos = qos_level(ctx, self.qos.as_ref(), &mut diags);
        let topic = self.topic.get_ref();
        if topic.is_empty() || topic.contains(['+', '#']) {
            diags.push(
                ctx.error(format!("`{topic}` is not a topic to publish to"))
                    .at(self.topic.span())
                    .help("give a topic without wildcards, such as \"devices/{device_id}/alerts\""),
            );
        }
        for f in template_fields(topic) {
            if input.index_of(&f).is_none() {
                diags.push(
                    ctx.error(format!(
                        "the topic names `{{{f}}}`, which is not an input field"
                    ))
                    .at(self.topic.span())
                    .help(format!(
                        "the input fields are: {}",
                        input.names().collect::<Vec<_>>().join(", ")
                    )),
                );
            }
        }
        if !diags.is_empty() {
            return Err(diags);
        }
        Ok(planned(
            SinkTarget::Mqtt {
                broker,
                topic: topic.clone(),
                qos,
                retain: self.retain.as_ref().is_some_and(|r| *r.get_ref()),
            },
            Format::Jsonl,
            input,
        ))
    }
}
