//! The `predict` transform: per-key online models that learn as records arrive and give each
//! record a forecast and an anomaly score.
//!
//! A key's records are taken in event-time order (then by their values) once the watermark has
//! passed them, so a model's state, and every forecast, depends only on the records — the same
//! in both modes on any number of workers, live or replayed. Two [`Model`]s:
//!
//! - **EWMA**: an exponentially weighted mean and variance of the value (weight `alpha` for the
//!   newest); the forecast is the mean after the record, the score the record's z-score against
//!   the mean and variance before it: `(x - mean) / sqrt(variance)`.
//! - **Holt**: Holt's linear trend over irregular event times — a level and a trend per second,
//!   updated with `alpha` and `beta`; the forecast is `level + trend * horizon` after the
//!   record, the score the record's residual against the level and trend projected to its time,
//!   over the exponentially weighted standard deviation of earlier residuals.
//!
//! A record whose value is NULL passes with NULL forecast and score and does not update the
//! model; a score is NULL until the variance it divides by is above zero.
//!
//! ```
//! use weir_operators::predict::{Model, PredictSpec};
//! use weir_operators::expr::Expr;
//! use weir_operators::schema::{Field, Record, Schema};
//! use weir_operators::value::{FieldType, Value};
//!
//! let input = Schema::new(vec![
//!     Field::new("ts", FieldType::Timestamp),
//!     Field::new("t", FieldType::F64),
//! ])
//! .with_time("ts");
//! let value = Expr::compile("t", &input).unwrap();
//! let spec = PredictSpec::new("p", &input, vec![], value, Model::Ewma { alpha: 0.5 });
//! let r = |s: i64, t: f64| Record::new(vec![Value::Ts(s * 1_000_000), Value::F64(t)]);
//! let out = spec.run(vec![r(0, 10.0), r(1, 20.0), r(2, 20.0)]);
//! // Means 10, 15, 17.5; variances 0, 25, 18.75.
//! let forecasts: Vec<Value> = out.iter().map(|o| o.values[2].clone()).collect();
//! assert_eq!(forecasts, [Value::F64(10.0), Value::F64(15.0), Value::F64(17.5)]);
//! assert_eq!(out[1].values[3], Value::Null, "no variance yet to score against");
//! assert_eq!(out[2].values[3], Value::F64(1.0), "(20 - 15) / sqrt(25)");
//! ```

use std::sync::Arc;

use smol_str::SmolStr;

use crate::encode::{Encoder, Format};
use crate::expr::Expr;
use crate::late::{LateCounts, LatePolicy};
use crate::metrics::ComponentMetrics;
use crate::ordered::{ordered_operator, run_all, InOrder, Keys, OrderedStreams, Waiting};
use crate::schema::{Field, Record, Schema};
use crate::value::{FieldType, Micros, Value};
use crate::Batches;

/// An online model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Model {
    /// Exponentially weighted mean and variance; `alpha` weighs the newest value.
    Ewma {
        /// Weight of the newest value, in (0, 1].
        alpha: f64,
    },
    /// Holt's linear trend: level weight `alpha`, trend weight `beta`, forecast `horizon`
    /// seconds ahead.
    Holt {
        /// Weight of the newest value in the level, in (0, 1].
        alpha: f64,
        /// Weight of the newest slope in the trend, in (0, 1].
        beta: f64,
        /// How far ahead the forecast is, in seconds.
        horizon: f64,
    },
}

/// A compiled `predict`.
#[derive(Clone, Debug)]
pub struct PredictSpec {
    /// The component id.
    pub id: SmolStr,
    /// Input positions of the key fields.
    pub key: Vec<usize>,
    /// The value modelled.
    pub value: Expr,
    /// The model.
    pub model: Model,
    /// What happens to late records.
    pub late: LatePolicy,
    time: usize,
    input_encoder: Encoder,
}

/// One key's model state.
#[derive(Clone, Copy, Debug, Default, serde::Serialize, serde::Deserialize)]
struct State {
    /// Values seen.
    n: u64,
    mean: f64,
    var: f64,
    /// Holt: level, trend per second, the last value's time (s), and the residuals' variance.
    level: f64,
    trend: f64,
    at: f64,
    res_var: f64,
}

impl PredictSpec {
    /// Models `value` per key (the fields at `key`) of `input`, which must have an event time.
    ///
    /// # Panics
    /// If `input` has no event-time field (the plan checks this first).
    pub fn new(
        id: &str,
        input: &Schema,
        key: Vec<usize>,
        value: Expr,
        model: Model,
    ) -> PredictSpec {
        PredictSpec {
            id: SmolStr::new(id),
            key,
            value,
            model,
            late: LatePolicy::DeadLetter,
            time: input.time.expect("predict's input has an event time"),
            input_encoder: Encoder::new(Format::Jsonl, input),
        }
    }

    /// Sets the late policy.
    pub fn with_late(mut self, late: LatePolicy) -> PredictSpec {
        self.late = late;
        self
    }

    /// The output schema: the input's fields, then `forecast` and `score` (`f64`).
    pub fn output_schema(input: &Schema) -> Schema {
        let mut s = input.clone();
        s.fields.push(Field::new("forecast", FieldType::F64));
        s.fields.push(Field::new("score", FieldType::F64));
        s
    }

    /// The records of `records` with their forecasts and scores, all at once: for tests and
    /// examples; the operator is [`predict_batches`].
    pub fn run(&self, records: Vec<Record>) -> Vec<Record> {
        let work = Work {
            spec: Arc::new(self.clone()),
            worker: Worker::default(),
        };
        run_all(work, records)
    }

    /// Updates `s` with record `r` at `ts`: its forecast and score.
    fn update(&self, s: &mut State, ts: Micros, x: Option<f64>) -> (Value, Value) {
        let Some(x) = x.filter(|x| x.is_finite()) else {
            return (Value::Null, Value::Null);
        };
        let score = |res: f64, var: f64| match var > 0.0 {
            true => Value::F64(res / var.sqrt()),
            false => Value::Null,
        };
        s.n += 1;
        match self.model {
            Model::Ewma { alpha } => {
                if s.n == 1 {
                    s.mean = x;
                    s.var = 0.0;
                    return (Value::F64(x), Value::Null);
                }
                let diff = x - s.mean;
                let z = score(diff, s.var);
                let incr = alpha * diff;
                s.mean += incr;
                s.var = (1.0 - alpha) * (s.var + diff * incr);
                (Value::F64(s.mean), z)
            }
            Model::Holt {
                alpha,
                beta,
                horizon,
            } => {
                let t = ts as f64 / 1e6;
                if s.n == 1 {
                    s.level = x;
                    s.trend = 0.0;
                    s.at = t;
                    return (Value::F64(x), Value::Null);
                }
                let dt = t - s.at;
                let predicted = s.level + s.trend * dt;
                let res = x - predicted;
                let z = score(res, s.res_var);
                let level = alpha * x + (1.0 - alpha) * predicted;
                if dt > 0.0 {
                    s.trend = beta * (level - s.level) / dt + (1.0 - beta) * s.trend;
                }
                s.level = level;
                s.at = t;
                s.res_var = (1.0 - alpha) * (s.res_var + alpha * res * res);
                (Value::F64(s.level + s.trend * horizon), z)
            }
        }
    }
}

/// A worker's models and the records waiting for the watermark.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Worker {
    numbers: Keys,
    states: Vec<State>,
    waiting: Waiting,
}

impl Worker {
    fn add(
        &mut self,
        spec: &PredictSpec,
        r: Record,
        dead: &mut Vec<Record>,
        late: &mut Vec<Record>,
        n: &mut LateCounts,
    ) {
        let dead_letter = |r: &Record, reason: String| {
            crate::decode::operator_dead_letter(&spec.id, &spec.input_encoder, r, reason)
        };
        let Some(ts) = r.values[spec.time].as_ts() else {
            n.untimed(&r, |r| dead_letter(r, "it has no event time".into()), dead);
            return;
        };
        if ts < r.meta.watermark as Micros {
            n.route(
                spec.late,
                r,
                |r| dead_letter(r, format!("it is behind the watermark ({} µs), so its key's model has moved past it", r.meta.watermark)),
                dead,
                late,
            );
            return;
        }
        let key: Vec<Value> = spec.key.iter().map(|&k| r.values[k].clone()).collect();
        let (k, new) = self.numbers.number(key);
        if new {
            self.states.push(State::default());
        }
        self.waiting.insert(ts, k, r);
    }

    fn advance(
        &mut self,
        spec: &PredictSpec,
        frontier: Option<Micros>,
        emit: &mut impl FnMut(Micros, Record),
    ) {
        while let Some((ts, k, mut r)) = self.waiting.pop_before(frontier) {
            let x = spec.value.eval(&r.values).as_f64();
            let (forecast, score) = spec.update(&mut self.states[k], ts, x);
            r.values.push(forecast);
            r.values.push(score);
            emit(ts, r);
        }
    }
}

/// Builds a `predict` over batches already on the worker that holds their keys (see
/// [`ordered_operator`] for `checkpoint`).
pub fn predict_batches<'s>(
    input: Batches<'s>,
    spec: Arc<PredictSpec>,
    metrics: Arc<ComponentMetrics>,
    checkpoint: Option<crate::checkpoint::Checkpointing<'s>>,
    ctl: crate::control::RunControl,
) -> OrderedStreams<'s> {
    let name = spec.id.to_string();
    ordered_operator(
        input,
        &name,
        metrics,
        Work {
            spec,
            worker: Worker::default(),
        },
        checkpoint,
        ctl,
    )
}

/// A worker's models, as an [`InOrder`] operator's work.
struct Work {
    spec: Arc<PredictSpec>,
    worker: Worker,
}

impl InOrder for Work {
    fn add(
        &mut self,
        r: Record,
        dead: &mut Vec<Record>,
        late: &mut Vec<Record>,
        n: &mut LateCounts,
    ) {
        self.worker.add(&self.spec, r, dead, late, n);
    }

    fn next(&self) -> Option<Micros> {
        self.worker.waiting.first_time()
    }

    fn advance(&mut self, frontier: Option<Micros>, emit: &mut dyn FnMut(Micros, Record)) {
        self.worker
            .advance(&self.spec, frontier, &mut |at, r| emit(at, r));
    }

    fn entries(&self) -> u64 {
        (self.worker.states.len() + self.worker.waiting.len()) as u64
    }

    fn snapshot(&self) -> Vec<u8> {
        postcard::to_stdvec(&self.worker).expect("models serialize")
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.worker = postcard::from_bytes(bytes).map_err(|e| e.to_string())?;
        Ok(())
    }
}
