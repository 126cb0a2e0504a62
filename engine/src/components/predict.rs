//! `[transforms.ID] type = "predict"`: per-key online models with a forecast and an anomaly
//! score for every record.

use std::sync::Arc;

use indexmap::IndexMap;
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
/// both modes on any number of workers, live or replayed. With `model = "PATH.onnx"`, runs an
/// ONNX model over each batch instead (see *Model inference*).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictConfig {
    /// The fields that make a key, each with its own model, such as `["device_id"]` (default:
    /// none, one model for the whole stream).
    pub key: Option<Spanned<Vec<Spanned<String>>>>,
    /// The value to model: a numeric SQL expression, such as `"temperature"` (required for
    /// "ewma" and "holt").
    pub value: Option<Spanned<String>>,
    /// "ewma" (default: an exponentially weighted mean and variance; the forecast is the mean,
    /// the score the z-score against the mean and variance before the record), "holt"
    /// (Holt's linear trend over event time; the forecast is `horizon` ahead, the score the
    /// residual over the weighted standard deviation of earlier residuals), or the path of an
    /// ONNX model file ending in `.onnx` (relative paths start where weir runs).
    pub model: Option<Spanned<String>>,
    /// ONNX: each model input by name, with the numeric fields that make its `[batch, n]`
    /// tensor, such as `{ x = ["temperature", "humidity"] }`. Every input must be given.
    pub model_inputs: Option<IndexMap<String, Spanned<Vec<Spanned<String>>>>>,
    /// ONNX: model outputs by name, with the fields (f64) their values go to — one for a
    /// `[batch]` or `[batch, 1]` output, k for `[batch, k]` — such as
    /// `{ y = ["expected_temperature"] }`. Outputs not named are not read.
    pub model_outputs: Option<IndexMap<String, Spanned<Vec<Spanned<String>>>>>,
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
        if let Some(m) = self
            .model
            .as_ref()
            .filter(|m| m.get_ref().ends_with(".onnx"))
        {
            return self.plan_onnx(ctx, input, m);
        }
        for (k, v) in [
            ("model_inputs", self.model_inputs.is_some()),
            ("model_outputs", self.model_outputs.is_some()),
        ] {
            if v {
                return Err(vec![ctx
                    .error(format!("`{k}` is for ONNX models"))
                    .at(ctx.span.clone())
                    .help(format!("set model = \"PATH.onnx\", or remove `{k}`"))]);
            }
        }
        let Some(value_text) = self.value.as_ref() else {
            return Err(vec![ctx
                .error("`value` is missing: ewma and holt model a value")
                .at(ctx.span.clone())
                .help("name the value to model, such as value = \"temperature\"")]);
        };
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
        let value = match ctx.expr("value", value_text, input) {
            Ok(e) if matches!(e.output_type(), Some(t) if t.is_numeric()) => Some(e),
            Ok(e) => {
                diags.push(
                    ctx.error(format!(
                        "`value` must be a number, but it is {}",
                        e.output_type().map_or("null", |t| t.name())
                    ))
                    .at(value_text.span())
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

impl PredictConfig {
    /// Validates an ONNX inference: the model loads, every input is given numeric fields, the
    /// named outputs exist and give as many values per record as they have fields.
    fn plan_onnx(
        &self,
        ctx: &Ctx,
        input: &Schema,
        model: &Spanned<String>,
    ) -> Result<Planned, Vec<Diag>> {
        use weir_operators::onnx::{OnnxModel, OnnxSpec};
        use weir_operators::schema::Field;
        use weir_operators::value::FieldType;
        let mut diags = Vec::new();
        for (k, span) in [
            ("value", self.value.as_ref().map(|v| v.span())),
            ("key", self.key.as_ref().map(|v| v.span())),
            ("alpha", self.alpha.as_ref().map(|v| v.span())),
            ("beta", self.beta.as_ref().map(|v| v.span())),
            ("horizon", self.horizon.as_ref().map(|v| v.span())),
            ("late", self.late.as_ref().map(|v| v.span())),
        ] {
            if let Some(span) = span {
                diags.push(
                    ctx.error(format!("`{k}` is for the ewma and holt models, not ONNX"))
                        .at(span)
                        .help(format!("remove `{k}`: the ONNX model reads `model_inputs`")),
                );
            }
        }
        let loaded = match OnnxModel::load(std::path::Path::new(model.get_ref())) {
            Ok(m) => m,
            Err(e) => {
                diags.push(ctx.error(e).at(model.span()).help(
                    "give the path of an ONNX model file (relative paths start where weir runs)",
                ));
                return Err(diags);
            }
        };
        let (Some(inputs), Some(outputs)) = (&self.model_inputs, &self.model_outputs) else {
            diags.push(
                ctx.error(format!(
                    "an ONNX model needs `model_inputs` and `model_outputs`; this one has inputs {} and outputs {}",
                    loaded.inputs.join(", "),
                    loaded.outputs.join(", ")
                ))
                .at(model.span())
                .help(format!(
                    "map them to fields, such as model_inputs = {{ {} = [\"temperature\"] }} and model_outputs = {{ {} = [\"expected\"] }}",
                    loaded.inputs.first().map_or("x", String::as_str),
                    loaded.outputs.first().map_or("y", String::as_str)
                )),
            );
            return Err(diags);
        };
        let mut features = Vec::new();
        for name in &loaded.inputs {
            let Some(fields) = inputs.get(name) else {
                diags.push(
                    ctx.error(format!(
                        "the model's input `{name}` is not in `model_inputs`"
                    ))
                    .at(model.span())
                    .help(format!("give its features: {name} = [\"field\", ...]")),
                );
                continue;
            };
            if fields.get_ref().is_empty() {
                diags.push(
                    ctx.error(format!("input `{name}` has no fields"))
                        .at(fields.span())
                        .help("list the numeric fields that make its tensor"),
                );
            }
            let mut positions = Vec::new();
            for f in fields.get_ref() {
                match input.index_of(f.get_ref()) {
                    Some(p)
                        if matches!(
                            input.fields[p].ty,
                            FieldType::I64 | FieldType::U64 | FieldType::F64
                        ) =>
                    {
                        positions.push(p)
                    }
                    Some(p) => diags.push(
                        ctx.error(format!(
                            "`{}` is a {}, not a number",
                            f.get_ref(),
                            input.fields[p].ty
                        ))
                        .at(f.span())
                        .help("model inputs are numbers: convert it with a map first"),
                    ),
                    None => diags.push(
                        ctx.error(format!("`{}` is not an input field", f.get_ref()))
                            .at(f.span())
                            .help(format!(
                                "the input fields are: {}",
                                input.names().collect::<Vec<_>>().join(", ")
                            )),
                    ),
                }
            }
            features.push(positions);
        }
        for (name, fields) in inputs {
            if !loaded.inputs.contains(name) {
                diags.push(
                    ctx.error(format!("the model has no input `{name}`"))
                        .at(fields.span())
                        .help(format!("its inputs are: {}", loaded.inputs.join(", "))),
                );
            }
        }
        for (name, fields) in outputs {
            if !loaded.outputs.contains(name) {
                diags.push(
                    ctx.error(format!("the model has no output `{name}`"))
                        .at(fields.span())
                        .help(format!("its outputs are: {}", loaded.outputs.join(", "))),
                );
            }
        }
        if !diags.is_empty() {
            return Err(diags);
        }
        let names = loaded.outputs.clone();
        let widths: Vec<usize> = features.iter().map(Vec::len).collect();
        let (runnable, per_record) = match loaded.prepare(&widths) {
            Ok(r) => r,
            Err(e) => {
                return Err(vec![ctx.error(e).at(model.span()).help(
                    "check the model's inputs take [batch, n] float tensors of the fields given",
                )])
            }
        };
        let mut schema = input.clone();
        let mut read = Vec::new();
        for (k, name) in names.iter().enumerate() {
            match outputs.get(name) {
                None => read.push((false, per_record[k])),
                Some(fields) => {
                    if fields.get_ref().len() != per_record[k] {
                        diags.push(
                            ctx.error(format!(
                                "output `{name}` gives {} values per record, but {} fields are named",
                                per_record[k],
                                fields.get_ref().len()
                            ))
                            .at(fields.span())
                            .help(format!("name {} fields for it", per_record[k])),
                        );
                    }
                    for f in fields.get_ref() {
                        if schema.index_of(f.get_ref()).is_some() {
                            diags.push(
                                ctx.error(format!(
                                    "the input already has a field `{}`",
                                    f.get_ref()
                                ))
                                .at(f.span())
                                .help("name the output another field"),
                            );
                        }
                        schema.fields.push(Field::new(f.get_ref(), FieldType::F64));
                    }
                    read.push((true, per_record[k]));
                }
            }
        }
        if !diags.is_empty() {
            return Err(diags);
        }
        Ok(Planned {
            op: Op::Onnx(Arc::new(OnnxSpec {
                model: runnable,
                features,
                outputs: read,
                schema: schema.clone(),
            })),
            schema,
            dead_letters: false,
            late_schema: None,
            late_right_schema: None,
        })
    }
}
