//! ONNX model inference over batches (`type = "predict"` with `model = "….onnx"`), with tract,
//! a pure-Rust inference engine.
//!
//! The model is loaded, typed with a symbolic batch dimension and optimized once; then, for each
//! chunk, each model input is a `[batch, n]` `f32` tensor of its `n` feature fields (numbers
//! converted to `f32`), the model runs once over the chunk's records whose features are all
//! present, and each output (`[batch]`, `[batch, 1]`, or `[batch, k]` for `k` fields) becomes
//! `f64` columns appended to the record. A record with a NULL feature is passed on with NULL
//! outputs (the model is not run on it). Inference is stateless, so records need no order:
//! results are the same on any number of workers, in both modes.
//!
//! ```
//! // A model is a file; see the tests for one built in code.
//! use weir_operators::onnx::OnnxModel;
//! assert!(OnnxModel::load(std::path::Path::new("no-such-model.onnx")).is_err());
//! ```

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, Float64Builder};
use arrow::datatypes::{DataType, Float64Type, Int64Type, UInt64Type};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::DimLike;

use crate::chunk::{arrow_schema, Chunk};
use crate::control::RunControl;
use crate::metrics::ComponentMetrics;
use crate::schema::Schema;
use crate::Batches;

type Plan = SimplePlan<TypedFact, Box<dyn TypedOp>, Graph<TypedFact, Box<dyn TypedOp>>>;

/// A loaded ONNX model: its named inputs and outputs, before typing.
pub struct OnnxModel {
    model: InferenceModel,
    /// The inputs' names, in the model's order.
    pub inputs: Vec<String>,
    /// The outputs' names, in the model's order.
    pub outputs: Vec<String>,
}

impl OnnxModel {
    /// Reads the model at `path`.
    pub fn load(path: &Path) -> Result<OnnxModel, String> {
        let model = tract_onnx::onnx()
            .model_for_path(path)
            .map_err(|e| format!("cannot load the ONNX model {}: {e}", path.display()))?;
        let inputs = model
            .input_outlets()
            .map_err(|e| e.to_string())?
            .iter()
            .map(|o| model.node(o.node).name.clone())
            .collect();
        let outputs = model
            .output_outlets()
            .map_err(|e| e.to_string())?
            .iter()
            .map(|o| {
                model
                    .outlet_label(*o)
                    .map(String::from)
                    .unwrap_or_else(|| model.node(o.node).name.clone())
            })
            .collect();
        Ok(OnnxModel {
            model,
            inputs,
            outputs,
        })
    }

    /// Types the model for inputs of `widths[i]` features each (a symbolic batch), optimizes
    /// it, and says how many values each output gives per record.
    pub fn prepare(self, widths: &[usize]) -> Result<(Runnable, Vec<usize>), String> {
        let mut model = self.model;
        let batch = model.sym("batch");
        for (i, w) in widths.iter().enumerate() {
            model = model
                .with_input_fact(
                    i,
                    f32::fact([TDim::from(batch.clone()), TDim::from(*w as i64)]).into(),
                )
                .map_err(|e| format!("input `{}`: {e}", self.inputs[i]))?;
        }
        let typed = model
            .into_typed()
            .map_err(|e| format!("the model does not fit these inputs: {e}"))?;
        let mut per_record = Vec::new();
        for (k, o) in typed
            .output_outlets()
            .map_err(|e| e.to_string())?
            .iter()
            .enumerate()
        {
            let fact = typed.outlet_fact(*o).map_err(|e| e.to_string())?;
            let name = &self.outputs[k];
            if fact.datum_type != f32::datum_type() && fact.datum_type != f64::datum_type() {
                return Err(format!(
                    "output `{name}` is of type {:?}; Weir reads float outputs",
                    fact.datum_type
                ));
            }
            let dims: Vec<TDim> = fact.shape.iter().cloned().collect();
            let width = match dims.as_slice() {
                [_] => 1,
                [_, k] => k.to_usize().map_err(|_| {
                    format!("output `{name}` has a width that depends on the input ({k})")
                })?,
                other => {
                    return Err(format!(
                        "output `{name}` has {} dimensions; Weir reads [batch] or [batch, k]",
                        other.len()
                    ))
                }
            };
            per_record.push(width);
        }
        let plan = typed
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(|e| format!("cannot prepare the model: {e}"))?;
        Ok((Runnable(Arc::new(plan)), per_record))
    }
}

/// A model ready to run, shared by the workers.
#[derive(Clone)]
pub struct Runnable(Arc<Plan>);

impl std::fmt::Debug for Runnable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Runnable")
    }
}

impl PartialEq for Runnable {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// A validated ONNX inference.
#[derive(Clone, Debug)]
pub struct OnnxSpec {
    /// The model.
    pub model: Runnable,
    /// For each model input, in order, the input positions of its features.
    pub features: Vec<Vec<usize>>,
    /// For each model output, in order, whether it is read (its values go to the next fields
    /// of the output schema, as many as it gives per record).
    pub outputs: Vec<(bool, usize)>,
    /// The output schema: the input's fields, then the outputs' fields.
    pub schema: Schema,
}

/// A numeric column as `f64` values (NULL: `None`).
fn value(a: &ArrayRef, row: usize) -> Option<f64> {
    if a.is_null(row) {
        return None;
    }
    Some(match a.data_type() {
        DataType::Float64 => a.as_primitive::<Float64Type>().value(row),
        DataType::Int64 => a.as_primitive::<Int64Type>().value(row) as f64,
        DataType::UInt64 => a.as_primitive::<UInt64Type>().value(row) as f64,
        _ => return None,
    })
}

/// Runs the model over `chunk`; returns the output columns.
pub fn infer(spec: &OnnxSpec, chunk: &Chunk) -> Result<Vec<ArrayRef>, String> {
    let n = chunk.len();
    let cols = chunk.columns();
    // The records whose features are all present, and their features.
    let mut rows = Vec::with_capacity(n);
    let mut inputs: Vec<Vec<f32>> = spec
        .features
        .iter()
        .map(|f| Vec::with_capacity(n * f.len()))
        .collect();
    'row: for r in 0..n {
        for f in &spec.features {
            for &p in f {
                if value(&cols[p], r).is_none() {
                    continue 'row;
                }
            }
        }
        for (i, f) in spec.features.iter().enumerate() {
            for &p in f {
                inputs[i].push(value(&cols[p], r).expect("checked") as f32);
            }
        }
        rows.push(r);
    }
    let widths: usize = spec.outputs.iter().filter(|o| o.0).map(|o| o.1).sum();
    let mut builders: Vec<Float64Builder> = (0..widths)
        .map(|_| Float64Builder::with_capacity(n))
        .collect();
    if rows.is_empty() {
        for b in &mut builders {
            b.append_nulls(n);
        }
        return Ok(builders
            .into_iter()
            .map(|mut b| Arc::new(b.finish()) as ArrayRef)
            .collect());
    }
    let tensors: TVec<TValue> = inputs
        .into_iter()
        .zip(&spec.features)
        .map(|(v, f)| {
            tract_ndarray::Array2::from_shape_vec((rows.len(), f.len()), v)
                .map(|a| Tensor::from(a).into())
                .map_err(|e| e.to_string())
        })
        .collect::<Result<_, _>>()?;
    let results = spec
        .model
        .0
        .run(tensors)
        .map_err(|e| format!("the model failed: {e}"))?;
    let mut columns: Vec<Vec<Option<f64>>> = Vec::with_capacity(widths);
    for (k, (read, width)) in spec.outputs.iter().enumerate() {
        if !read {
            continue;
        }
        let t = results[k]
            .cast_to::<f64>()
            .map_err(|e| format!("output {k}: {e}"))?;
        let values = t.as_slice::<f64>().map_err(|e| e.to_string())?;
        if values.len() != rows.len() * width {
            return Err(format!(
                "output {k} gave {} values for {} records",
                values.len(),
                rows.len()
            ));
        }
        for j in 0..*width {
            let mut col = vec![None; n];
            for (i, &r) in rows.iter().enumerate() {
                col[r] = Some(values[i * width + j]);
            }
            columns.push(col);
        }
    }
    Ok(columns
        .into_iter()
        .map(|c| Arc::new(Float64Array::from(c)) as ArrayRef)
        .collect())
}

/// Builds the inference operator: each chunk passes with the model's outputs appended.
pub fn onnx<'s>(
    input: Batches<'s>,
    name: &str,
    spec: Arc<OnnxSpec>,
    ctl: RunControl,
    metrics: Arc<ComponentMetrics>,
) -> Batches<'s> {
    let layout = arrow_schema(&spec.schema);
    let id = name.to_string();
    input.unary::<CapacityContainerBuilder<Vec<Chunk>>, _, _, _>(Pipeline, name, move |_, _| {
        let mut failed = false;
        move |input, output| {
            input.for_each(|cap, data: &mut Vec<Chunk>| {
                let mut out = Vec::with_capacity(data.len());
                for c in data.drain(..) {
                    metrics.add_in(c.len() as u64);
                    if failed {
                        continue;
                    }
                    match infer(&spec, &c) {
                        Ok(cols) => {
                            let mut all = c.columns().to_vec();
                            all.extend(cols);
                            metrics.add_out(c.len() as u64);
                            out.push(c.with_fields(&layout, all));
                        }
                        Err(e) => {
                            failed = true;
                            ctl.fail(format!("transform `{id}`: {e}"));
                        }
                    }
                }
                if !out.is_empty() {
                    output.session(&cap).give_container(&mut out);
                }
            });
        }
    })
}
