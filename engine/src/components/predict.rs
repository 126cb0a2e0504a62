//! `[transforms.ID] type = "predict"`: per-key online models with a forecast and an anomaly
//! score for every record.

use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;
use weir_operators::late::LatePolicy;
use weir_operators::predict::{Model, PredictSpec};
use weir_operators::schema::Schema;

use super::{Ctx, Op, Planned};
use crate::diag::Diag;

/// Learns a model of a value per key as records arrive and passes each record on with two more
/// fields: `forecast` (the model's forecast after the record) and `score` (how far the record
/// was from what the model expected, in standard deviations: an anomaly score). A key's records
/// are taken in event-time order once the watermark passes them, so forecasts are the same in
/// both modes on any number of workers, live or replayed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictConfig {
    /// The fields that make a key, each with its own model, such as `["device_id"]` (default:
    /// none, one model for the whole stream).
    pub key: Option<Spanned<Vec<Spanned<String>>>>,
    /// The value to model: a numeric SQL expression, such as `"temperature"`.
    pub value: Spanned<String>,
    /// "ewma" (default: an exponentially weighted mean and variance; the forecast is the mean,
    /// the score the z-score against the mean and variance before the record) or "holt"
    /// (Holt's linear trend over event time; the forecast is `horizon` ahead, the score the
    /// residual over the weighted standard deviation of earlier residuals).
    pub model: Option<Spanned<String>>,
    /// The weight of the newest value, between 0 and 1 (default 0.1): higher forgets faster.
    pub alpha: Option<Spanned<f64>>,
    /// Holt: the weight of the newest slope in the trend, between 0 and 1 (default 0.1).
    pub beta: Option<Spanned<f64>>,
    /// Holt: how far ahead the forecast is, such as "60s" (default "0s": the level now).
    pub horizon: Option<Spanned<String>>,
    /// What happens to a late record (one behind its partition's watermark): "dead-letter"
    /// (default), "drop", or "side-output" (to the output `ID.late`).
    pub late: Option<Spanned<String>>,
}

impl PredictConfig {
    /// Validates and compiles.
    pub fn plan(&self, ctx: &Ctx, input: &Schema) -> Result<Planned, Vec<Diag>> {
        let mut diags = Vec::new();
        if input.time.is_none() {
            return Err(vec![ctx
                .error("the input has no event-time field, and models learn in event-time order")
                .at(ctx.span.clone())
                .help("predict on a stream that keeps its timestamp")]);
        }
        let key = ctx.key_fields(
            "key",
            self.key.as_ref(),
            input,
            "models cannot be keyed by",
            &mut diags,
        );
        for taken in ["forecast", "score"] {
            if input.index_of(taken).is_some() {
                diags.push(
                    ctx.error(format!("the input already has a field `{taken}`, which predict adds"))
                        .at(ctx.span.clone())
                        .help(format!("rename it with a map before the predict: rename = {{ {taken} = \"input_{taken}\" }}")),
                );
            }
        }
        let value = match ctx.expr("value", &self.value, input) {
            Ok(e) if matches!(e.output_type(), Some(t) if t.is_numeric()) => Some(e),
            Ok(e) => {
                diags.push(
                    ctx.error(format!(
                        "`value` must be a number, but it is {}",
                        e.output_type().map_or("null", |t| t.name())
                    ))
                    .at(self.value.span())
                    .help("model a numeric field or expression, such as \"temperature\""),
                );
                None
            }
            Err(d) => {
                diags.push(d);
                None
            }
        };
        let weight = |k: &str, v: &Option<Spanned<f64>>, diags: &mut Vec<Diag>| match v {
            None => Some(0.1),
            Some(w) if *w.get_ref() > 0.0 && *w.get_ref() <= 1.0 => Some(*w.get_ref()),
            Some(w) => {
                diags.push(
                    ctx.error(format!("`{k}` must be above 0 and at most 1"))
                        .at(w.span())
                        .help(format!("such as {k} = 0.1: the newest value's weight")),
                );
                None
            }
        };
        let alpha = weight("alpha", &self.alpha, &mut diags);
        let holt = match &self.model {
            None => Some(false),
            Some(m) => match ctx.choice("model", m, &["ewma", "holt"]) {
                Ok(i) => Some(i == 1),
                Err(d) => {
                    diags.push(d);
                    None
                }
            },
        };
        if holt == Some(false) {
            for (k, span) in [
                ("beta", self.beta.as_ref().map(|b| b.span())),
                ("horizon", self.horizon.as_ref().map(|h| h.span())),
            ] {
                if let Some(span) = span {
                    diags.push(
                        ctx.error(format!("`{k}` is for model = \"holt\""))
                            .at(span)
                            .help(format!("set model = \"holt\", or remove `{k}`")),
                    );
                }
            }
        }
        let beta = weight("beta", &self.beta, &mut diags);
        let horizon = match &self.horizon {
            Some(h) => ctx.micros("horizon", h, &mut diags),
            None => Some(0),
        };
        let late = ctx.late_policy(self.late.as_ref(), &mut diags);
        let (Some(value), Some(alpha), Some(holt), Some(beta), Some(horizon), Some(late), true) =
            (value, alpha, holt, beta, horizon, late, diags.is_empty())
        else {
            return Err(diags);
        };
        let model = match holt {
            true => Model::Holt {
                alpha,
                beta,
                horizon: horizon as f64 / 1e6,
            },
            false => Model::Ewma { alpha },
        };
        let spec = PredictSpec::new(&ctx.id, input, key, value, model).with_late(late);
        Ok(Planned {
            op: Op::Predict(Arc::new(spec)),
            schema: PredictSpec::output_schema(input),
            dead_letters: true,
            late_schema: (late == LatePolicy::SideOutput).then(|| input.clone()),
            late_right_schema: None,
        })
    }
}
