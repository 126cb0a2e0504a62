//! `[sources.ID] type = "stdin"`: JSON lines from standard input.

use std::sync::Arc;

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

use super::decoding::{decode_spec, decoding_keys, max_line_bytes};
use super::watermark::WatermarkConfig;
use super::{Ctx, Op, Planned};
use crate::diag::Diag;

/// Reads JSON lines from standard input until it closes, so `weir` composes with shell pipes:
/// `producer | weir run pipeline.toml`. Assigned ids are `ID:stdin:LINE`. Bad records are
/// handled as in the file source.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdinConfig {
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
    /// (default: in order, never idle). Standard input is one partition.
    pub watermark: Option<WatermarkConfig>,
    /// The longest line (or CSV record) read, in bytes, from 1024 to 1073741824 (default
    /// 16777216, 16 MiB). A longer
    /// line is a bad record, dead-lettered by its first bytes; it never fills memory.
    pub max_line_bytes: Option<Spanned<i64>>,
}

impl StdinConfig {
    /// Validates and compiles.
    pub fn plan(&self, ctx: &Ctx) -> Result<Planned, Vec<Diag>> {
        let mut diags = Vec::new();
        let watermark = WatermarkConfig::plan_option(self.watermark.as_ref(), ctx, &mut diags);
        let max_line = max_line_bytes(ctx, self.max_line_bytes.as_ref(), &mut diags);
        let mut decode = decode_spec(ctx, decoding_keys!(self)).map_err(|mut d| {
            diags.append(&mut d);
            std::mem::take(&mut diags)
        })?;
        if !diags.is_empty() {
            return Err(diags);
        }
        decode.watermark = watermark;
        decode.max_line_bytes = max_line;
        Ok(Planned {
            schema: decode.schema.clone(),
            dead_letters: decode.on_error == weir_operators::decode::OnError::DeadLetter,
            late_schema: None,
            late_right_schema: None,
            op: Op::Stdin(Arc::new(decode)),
        })
    }
}
