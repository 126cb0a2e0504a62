//! `[sources.ID] type = "kinesis"` and `[sinks.ID] type = "kinesis"`: Amazon Kinesis Data
//! Streams in and out.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use weir_cloud::kinesis::fetcher::Start;
use weir_cloud::kinesis::source::KinesisSourceSpec;
use weir_cloud::kinesis::Connection;
use weir_operators::encode::Format;
use weir_operators::kafka::Replay;
use weir_operators::schema::Schema;

use super::decoding::{MessageKeys, SchemaDecl, TimeKeys};
use super::kafka::{key_fields, StartDecl};
use super::sinks::format;
use super::watermark::WatermarkConfig;
use super::{Ctx, Op, Planned, SinkSpec, SinkTarget};
use crate::diag::Diag;

/// Reads a Kinesis data stream: one record per Kinesis record, a JSON object or a CSV row
/// (columns in schema order, no header). Credentials come from the standard AWS chain (the
/// environment's AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile), never from the
/// pipeline file. Shards are spread over all workers of all processes; a shard made by a split
/// or merge is read by its parent's worker once its parents are read to their end. Each shard
/// has its own watermark, and the source's is the least of them (with `idle_timeout`, a shard
/// at its tip stops holding it back). Positions are written to `positions` only for input whose
/// every output the sinks have written, so a restart resumes without losing anything
/// (at-least-once). Assigned ids are `ID:SHARD/SEQUENCE:0`; bad records are handled as in the
/// file source, their place being `SHARD/SEQUENCE` (the record's id in the stream).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KinesisSourceConfig {
    /// The stream's name.
    pub stream: Spanned<String>,
    /// The AWS region, such as "eu-west-1" (default: AWS_REGION, or the profile's).
    pub region: Option<Spanned<String>>,
    /// Another endpoint than AWS's, such as a local server's "http://127.0.0.1:4567".
    pub endpoint: Option<Spanned<String>>,
    /// A directory where Weir keeps its position in each shard (a file per process); a run
    /// resumes from there. Without it, every run starts at `start`. Give each pipeline its own.
    pub positions: Option<Spanned<String>>,
    /// Where to start in shards without a kept position: "trim_horizon" (default: the oldest
    /// record kept), "latest" (records written from now on), or a point in time,
    /// `{ at = "2026-03-01T10:00:00Z" }` (the first record that arrived at or after it).
    pub start: Option<Spanned<KinesisStartDecl>>,
    /// Stop once every shard is read to its tip (default false: read until stopped). A bounded
    /// run over a stream no one is writing gives exactly the results a live one does.
    pub bounded: Option<bool>,
    /// How long to wait before reading a shard again that had nothing new (default "200ms";
    /// Kinesis allows five reads per shard and second, shared by all its readers).
    pub poll_interval: Option<Spanned<String>>,
    /// How often positions are written (default "1s").
    pub commit_interval: Option<Spanned<String>>,
    /// "jsonl" (default: each record a JSON object) or "csv" (each record a CSV row with the
    /// schema's fields in order).
    pub format: Option<Spanned<String>>,
    /// Where event time comes from: "field" (default: the timestamp field) or "arrival" (when
    /// the stream received the record, stored in the timestamp field).
    pub timestamp_from: Option<Spanned<String>>,
    /// The fields to read and their types, as in the file source (a Kinesis source does not
    /// infer them).
    pub schema: Spanned<SchemaDecl>,
    /// The event-time field (default "ts").
    pub timestamp_field: Option<Spanned<String>>,
    /// How timestamps are written, as in the Kafka source (default "iso8601").
    pub timestamp_format: Option<Spanned<String>>,
    /// The IANA time zone of timestamps written without an offset (default "UTC").
    pub timezone: Option<Spanned<String>>,
    /// Where each record's event time comes from: "field" (default) or "ingest" (the time Weir
    /// read it).
    pub event_time: Option<Spanned<String>>,
    /// The largest share of bad records the source may read, as in the Kafka source.
    pub max_error_rate: Option<Spanned<f64>>,
    /// The id field (default "id"); when the schema lacks it, Weir assigns ids.
    pub id_field: Option<Spanned<String>>,
    /// "dead-letter" (default), "skip" or "fail", as in the file source.
    pub on_error: Option<Spanned<String>>,
    /// How event time behaves, per shard: `{ max_out_of_orderness = "2s", idle_timeout =
    /// "10s" }` (default: in order, never idle).
    pub watermark: Option<WatermarkConfig>,
    /// Where sinks count a record's latency from: "read" (default) or "event_time".
    pub latency_from: Option<Spanned<String>>,
}

/// Writes each record as one Kinesis record (JSON or a CSV row) with `PutRecords`, in
/// batches, its partition key taken from the `partition_key` fields so that records with the
/// same key go to the same shard, in order. Records the stream refuses for throughput are sent
/// again with backoff. Each batch is confirmed by the service before the sink counts it
/// written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KinesisSinkConfig {
    /// The stream's name (it must exist).
    pub stream: Spanned<String>,
    /// The AWS region (default: AWS_REGION, or the profile's).
    pub region: Option<Spanned<String>>,
    /// Another endpoint than AWS's, such as a local server's "http://127.0.0.1:4567".
    pub endpoint: Option<Spanned<String>>,
    /// The fields whose values (as text, joined by ",") form the partition key (default: none,
    /// records spread evenly over the shards).
    pub partition_key: Option<Spanned<Vec<Spanned<String>>>>,
    /// "jsonl" (default) or "csv".
    pub format: Option<Spanned<String>>,
}

/// A Kinesis source's `start`: "trim_horizon", "latest", or `{ at = "RFC 3339 time" }`.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub struct KinesisStartDecl(pub StartDecl);

/// Checks a stream name as Kinesis does: 1 to 128 of letters, digits, `.`, `_` and `-`.
fn stream(ctx: &Ctx, s: &Spanned<String>) -> Result<String, Diag> {
    let name = s.get_ref();
    if !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        Ok(name.clone())
    } else {
        Err(ctx
            .error(format!("`{name}` is not a Kinesis stream name"))
            .at(s.span())
            .help("stream names have 1 to 128 letters, digits, `.`, `_` or `-`"))
    }
}

/// Checks an `endpoint`: an http or https URL with a host (`example` shows one).
pub(super) fn endpoint_url(ctx: &Ctx, e: &Spanned<String>, example: &str, diags: &mut Vec<Diag>) {
    let t = e.get_ref();
    let ok = (t.starts_with("http://") || t.starts_with("https://"))
        && t.split("://").nth(1).is_some_and(|h| !h.is_empty());
    if !ok {
        diags.push(
            ctx.error(format!("`{t}` is not an endpoint URL"))
                .at(e.span())
                .help(format!("write the URL of the service, such as {example}")),
        );
    }
}

/// The connection keys shared by the source and the sink.
fn connection(
    ctx: &Ctx,
    name: &Spanned<String>,
    region: Option<&Spanned<String>>,
    endpoint: Option<&Spanned<String>>,
    diags: &mut Vec<Diag>,
) -> Option<Connection> {
    let stream = stream(ctx, name).map_err(|d| diags.push(d)).ok();
    if let Some(r) = region {
        let ok = !r.get_ref().is_empty()
            && r.get_ref()
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok {
            diags.push(
                ctx.error(format!("`{}` is not an AWS region", r.get_ref()))
                    .at(r.span())
                    .help("write a region name such as \"us-east-1\" or \"eu-west-1\""),
            );
        }
    }
    if let Some(e) = endpoint {
        endpoint_url(
            ctx,
            e,
            "\"http://127.0.0.1:4567\" for a local server",
            diags,
        );
    }
    Some(Connection {
        stream: stream?,
        region: region.map(|r| r.get_ref().clone()),
        endpoint: endpoint.map(|e| e.get_ref().trim_end_matches('/').to_string()),
    })
}

fn positive(
    ctx: &Ctx,
    key: &str,
    d: Option<&Spanned<String>>,
    default: Duration,
    help: &str,
    diags: &mut Vec<Diag>,
) -> Option<Duration> {
    match d {
        None => Some(default),
        Some(c) => match ctx.duration(key, c) {
            Ok(d) if d.is_zero() => {
                diags.push(
                    ctx.error(format!("`{key}` must be longer than zero"))
                        .at(c.span())
                        .help(help),
                );
                None
            }
            Ok(d) => Some(d),
            Err(d) => {
                diags.push(d);
                None
            }
        },
    }
}

impl KinesisSourceConfig {
    /// Validates and compiles.
    pub fn plan(&self, ctx: &Ctx) -> Result<Planned, Vec<Diag>> {
        let mut diags = Vec::new();
        let watermark = WatermarkConfig::plan_option(self.watermark.as_ref(), ctx, &mut diags);
        let conn = connection(
            ctx,
            &self.stream,
            self.region.as_ref(),
            self.endpoint.as_ref(),
            &mut diags,
        );
        let start = match &self.start {
            None => Some(Start::TrimHorizon),
            Some(s) => match &s.get_ref().0 {
                StartDecl::Named(name) => {
                    let named = Spanned::new(s.span(), name.clone());
                    ctx.optional_choice(
                        "start",
                        Some(&named),
                        &["trim_horizon", "latest"],
                        &mut diags,
                    )
                    .map(|i| [Start::TrimHorizon, Start::Latest][i])
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
        let poll_interval = positive(
            ctx,
            "poll_interval",
            self.poll_interval.as_ref(),
            Duration::from_millis(200),
            "poll a quiet shard every 200ms or so: poll_interval = \"200ms\"",
            &mut diags,
        );
        let commit_interval = positive(
            ctx,
            "commit_interval",
            self.commit_interval.as_ref(),
            Duration::from_secs(1),
            "write positions every second or so: commit_interval = \"1s\"",
            &mut diags,
        );
        let positions = match &self.positions {
            Some(p) if p.get_ref().trim().is_empty() => {
                diags.push(ctx.error("`positions` is empty").at(p.span()).help(
                    "name a directory for the positions, such as positions = \"state/readings\"",
                ));
                None
            }
            p => Some(p.as_ref().map(|p| std::path::PathBuf::from(p.get_ref()))),
        };
        let csv = format(ctx, self.format.as_ref(), Format::Jsonl)
            .map(|f| f == Format::Csv)
            .map_err(|d| diags.push(d))
            .ok();
        let from_arrival = ctx
            .optional_choice(
                "timestamp_from",
                self.timestamp_from.as_ref(),
                &["field", "arrival"],
                &mut diags,
            )
            .map(|i| i == 1);
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
            Err("a Kinesis source does not infer its schema: declare its fields, such as schema = { ts = \"timestamp\", device = \"string\" }".into())
        };
        let Some((mut decode, _)) = keys.plan(ctx, "", sample, &mut diags) else {
            return Err(diags);
        };
        let (
            Some(conn),
            Some(start),
            Some(poll_interval),
            Some(commit_interval),
            Some(positions),
            Some(csv),
            Some(from_arrival),
            true,
        ) = (
            conn,
            start,
            poll_interval,
            commit_interval,
            positions,
            csv,
            from_arrival,
            diags.is_empty(),
        )
        else {
            return Err(diags);
        };
        decode.watermark = watermark;
        if from_arrival {
            decode = decode.with_assigned_time();
        }
        Ok(Planned {
            schema: decode.schema.clone(),
            dead_letters: decode.on_error == weir_operators::decode::OnError::DeadLetter,
            late_schema: None,
            late_right_schema: None,
            op: Op::Kinesis(Arc::new(KinesisSourceSpec {
                decode: Arc::new(decode),
                csv,
                conn,
                start,
                bounded: self.bounded.unwrap_or(false),
                poll_interval,
                commit_interval,
                positions,
                replay: Replay::Unknown,
                resume: Default::default(),
                resume_frontier: None,
                store: None,
                status: Arc::default(),
                ended: Arc::default(),
            })),
        })
    }
}

impl KinesisSinkConfig {
    /// Validates and compiles.
    pub fn plan(&self, ctx: &Ctx, input: &Schema) -> Result<Planned, Vec<Diag>> {
        let mut diags = Vec::new();
        let f = format(ctx, self.format.as_ref(), Format::Jsonl).map_err(|d| diags.push(d));
        let conn = connection(
            ctx,
            &self.stream,
            self.region.as_ref(),
            self.endpoint.as_ref(),
            &mut diags,
        );
        let key = key_fields(ctx, input, self.partition_key.as_ref(), &mut diags);
        match (f, conn, diags.is_empty()) {
            (Ok(format), Some(conn), true) => Ok(Planned {
                op: Op::Sink(SinkSpec {
                    target: SinkTarget::Kinesis {
                        conn,
                        key,
                        stream_span: self.stream.span(),
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
