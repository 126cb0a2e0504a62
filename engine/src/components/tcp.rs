//! `[sources.ID] type = "tcp"` and `[sinks.ID] type = "tcp"`: point-to-point delivery over TCP,
//! newline-delimited, with no queue in between — when Weir falls behind, TCP's flow control
//! pushes back on the producer.

use std::sync::Arc;

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;
use weir_operators::encode::Format;
use weir_operators::schema::Schema;
use weir_operators::tcp_source::TcpSourceSpec;

use super::decoding::{decode_spec, decoding_keys, max_line_bytes};
use super::sinks::{format, planned};
use super::watermark::WatermarkConfig;
use super::{Ctx, Op, Planned, SinkTarget};
use crate::diag::Diag;

/// Listens for TCP clients sending JSON lines (newline-delimited JSON), from any number of
/// connections at once. Worker 0 of process 0 listens; when the pipeline falls behind, Weir
/// stops reading the sockets, so TCP's flow control blocks the clients instead of Weir's memory
/// growing. Assigned ids are `ID:tcp:LINE`, lines numbered in arrival order. Bad records are
/// handled as in the file source.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpSourceConfig {
    /// Where to listen, `host:port` (default "127.0.0.1:9000": this machine only; use
    /// "0.0.0.0:9000" to accept clients from other machines).
    pub address: Option<Spanned<String>>,
    /// End the source once this many connections have been accepted and have closed (default:
    /// run until stopped).
    pub max_connections: Option<Spanned<i64>>,
    /// The most connections open at once (default 1024). Further clients wait in the listen
    /// backlog until one closes; one reader thread serves them all.
    pub max_open_connections: Option<Spanned<i64>>,
    /// The longest line (or CSV record) read, in bytes, from 1024 to 1073741824 (default
    /// 16777216, 16 MiB). A longer
    /// line is a bad record, dead-lettered by its first bytes; it never fills memory.
    pub max_line_bytes: Option<Spanned<i64>>,
    /// The fields to read and their types, as in the file source.
    pub schema: Spanned<IndexMap<String, Spanned<String>>>,
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
    /// How event time behaves: `{ max_out_of_orderness = "2s", idle_timeout = "10s" }`
    /// (default: in order, never idle). All connections share one watermark, so the bound
    /// should cover the skew between clients.
    pub watermark: Option<WatermarkConfig>,
    /// Where sinks count a record's latency from: "read" (default: when Weir read it) or
    /// "event_time" (its event time — when a producer that stamps events as it makes them
    /// made it: end-to-end latency, including the time spent in the producer and the network).
    /// Event time is then taken to follow the wall clock, so sinks of window results downstream
    /// also record event-time latency.
    pub latency_from: Option<Spanned<String>>,
}

/// Sends records to a TCP server, one per line (JSON lines or CSV), over one connection opened
/// when the run starts. A slow receiver blocks the sink's writes, and backpressure then holds
/// the sources back.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpSinkConfig {
    /// The server, `host:port`.
    pub address: Spanned<String>,
    /// "jsonl" (default) or "csv".
    pub format: Option<Spanned<String>>,
}

/// Checks a `host:port` address.
fn address(ctx: &Ctx, a: &Spanned<String>) -> Result<String, Diag> {
    let text = a.get_ref().trim();
    match text.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            Ok(text.to_string())
        }
        _ => Err(ctx
            .error(format!("`{text}` is not an address"))
            .at(a.span())
            .help("write `host:port`, such as \"127.0.0.1:9000\"")),
    }
}

impl TcpSourceConfig {
    /// Validates and compiles.
    pub fn plan(&self, ctx: &Ctx) -> Result<Planned, Vec<Diag>> {
        let mut diags = Vec::new();
        let watermark = WatermarkConfig::plan_option(self.watermark.as_ref(), ctx, &mut diags);
        let address = match &self.address {
            None => Some("127.0.0.1:9000".to_string()),
            Some(a) => address(ctx, a).map_err(|d| diags.push(d)).ok(),
        };
        let max_connections = match &self.max_connections {
            Some(m) if *m.get_ref() < 1 => {
                diags.push(
                    ctx.error(format!(
                        "`max_connections` must be at least 1, not {}",
                        m.get_ref()
                    ))
                    .at(m.span())
                    .help("remove it to accept connections until the run is stopped"),
                );
                None
            }
            m => m.as_ref().map(|m| *m.get_ref() as u64),
        };
        let max_open = match &self.max_open_connections {
            None => 1024,
            Some(m) if (1..=1_000_000).contains(m.get_ref()) => *m.get_ref() as usize,
            Some(m) => {
                diags.push(
                    ctx.error(format!(
                        "`max_open_connections` must be between 1 and 1000000, not {}",
                        m.get_ref()
                    ))
                    .at(m.span())
                    .help("remove it for the default, 1024"),
                );
                1024
            }
        };
        let max_line = max_line_bytes(ctx, self.max_line_bytes.as_ref(), &mut diags);
        let decode = decode_spec(ctx, decoding_keys!(self));
        let mut decode = match decode {
            Ok(d) => d,
            Err(mut d) => {
                diags.append(&mut d);
                return Err(diags);
            }
        };
        let latency_from = ctx
            .optional_choice(
                "latency_from",
                self.latency_from.as_ref(),
                &["read", "event_time"],
                &mut diags,
            )
            .map(|i| i == 1);
        let (Some(address), Some(latency_from), true) = (address, latency_from, diags.is_empty())
        else {
            return Err(diags);
        };
        decode.watermark = watermark;
        decode.latency_from_event_time = latency_from;
        decode.max_line_bytes = max_line;
        Ok(Planned {
            schema: decode.schema.clone(),
            dead_letters: decode.on_error == weir_operators::decode::OnError::DeadLetter,
            late_schema: None,
            late_right_schema: None,
            op: Op::Tcp(Arc::new(TcpSourceSpec {
                decode: Arc::new(decode),
                address,
                max_connections,
                max_open_connections: max_open,
            })),
        })
    }
}

impl TcpSinkConfig {
    /// Validates and compiles.
    pub fn plan(&self, ctx: &Ctx, input: &Schema) -> Result<Planned, Vec<Diag>> {
        let mut diags = Vec::new();
        let f = format(ctx, self.format.as_ref(), Format::Jsonl).map_err(|d| diags.push(d));
        let a = address(ctx, &self.address).map_err(|d| diags.push(d));
        match (f, a) {
            (Ok(f), Ok(a)) => Ok(planned(SinkTarget::Tcp(a), f, input)),
            _ => Err(diags),
        }
    }
}
