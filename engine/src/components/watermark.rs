//! The `watermark` key every source takes: how its event time behaves.

use serde::Deserialize;
use toml::Spanned;
use weir_operators::watermark::WatermarkSpec;

use super::Ctx;
use crate::diag::Diag;

/// `watermark = { max_out_of_orderness = "2s", idle_timeout = "10s" }`. A source's watermark is
/// the largest event time it has read minus `max_out_of_orderness` (per partition: a file,
/// standard input, a generator worker's share); a window's record is late when its window
/// ended at or before that. A partition that has read nothing for `idle_timeout` of processing
/// time stops holding the watermark back: its watermark becomes the wall clock minus
/// `max_out_of_orderness`, and follows the wall clock while it stays idle.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatermarkConfig {
    /// How far behind the largest event time seen an event may arrive and still be on time
    /// (default "0s": events in order).
    pub max_out_of_orderness: Option<Spanned<String>>,
    /// After how long without input a partition is idle (default: never).
    pub idle_timeout: Option<Spanned<String>>,
}

impl WatermarkConfig {
    /// Validates and compiles.
    pub fn plan(&self, ctx: &Ctx) -> Result<WatermarkSpec, Vec<Diag>> {
        let mut diags = Vec::new();
        let mut spec = WatermarkSpec::default();
        if let Some(b) = &self.max_out_of_orderness {
            match ctx.duration("max_out_of_orderness", b) {
                Ok(d) => spec.max_out_of_orderness = d.as_micros().min(i64::MAX as u128) as i64,
                Err(d) => diags.push(d),
            }
        }
        if let Some(i) = &self.idle_timeout {
            match ctx.duration("idle_timeout", i) {
                Ok(d) if d.is_zero() => diags.push(
                    ctx.error("`idle_timeout` must be longer than zero")
                        .at(i.span())
                        .help(
                            "use a timeout such as \"10s\", or omit it so the source is never idle",
                        ),
                ),
                Ok(d) => spec.idle_timeout = Some(d),
                Err(d) => diags.push(d),
            }
        }
        if diags.is_empty() {
            Ok(spec)
        } else {
            Err(diags)
        }
    }

    /// Compiles an optional `watermark` key (absent: in order, never idle).
    pub fn plan_option(
        w: Option<&WatermarkConfig>,
        ctx: &Ctx,
        diags: &mut Vec<Diag>,
    ) -> WatermarkSpec {
        match w.map(|w| w.plan(ctx)) {
            None => WatermarkSpec::default(),
            Some(Ok(s)) => s,
            Some(Err(mut d)) => {
                diags.append(&mut d);
                WatermarkSpec::default()
            }
        }
    }
}
