//! Window aggregates, written in SQL and compiled against the window's input schema:
//! `count(*)`, `count(x)`, `count(distinct x)`, `sum(x)`, `min(x)`, `max(x)`, `avg(x)`,
//! `first(x)`, `last(x)`, `variance(x)` / `var_samp(x)`, `var_pop(x)`, `stddev(x)` /
//! `stddev_samp(x)`, `stddev_pop(x)`, `approx_percentile(x, q)` and `approx_count_distinct(x)`.
//! `x` is any expression over the record's fields, and any aggregate may take
//! `FILTER (WHERE condition)`: then only records for which the condition is true count.
//!
//! Semantics follow SQL: every aggregate but `count(*)`, `first` and `last` ignores NULL
//! values; aggregates of no (non-NULL) values are NULL, except counts, which are 0. Results
//! never depend on the order in which records arrive:
//! - `sum` and `avg` of floats are exact sums rounded once ([`SmallSum`]); `sum` of integers is
//!   exact too, and NULL if the result does not fit in 64 bits; `avg` is always `f64`.
//! - `first(x)` / `last(x)` take `x` from the record with the smallest / largest event time;
//!   ties are broken by the record's id, then by the value of `x`.
//! - `variance` and `stddev` (sample; `_pop` for the population) are computed from exact sums
//!   of `x` and of `x * x` (each product rounded once), as `(Σx² - (Σx)²/n) / (n - 1)`: the same
//!   bits whatever the order, with a relative error of about `2⁻⁵² · Σx² / (n · variance)`
//!   (negligible unless the values' mean dwarfs their spread). Of one value, the sample forms are
//!   NULL.
//! - `approx_percentile(x, q)` is within 1% (relative) of the value of rank `floor(q·(n-1))`
//!   among the group's sorted values ([`Quantiles`]); `approx_count_distinct(x)` is exact up to
//!   512 distinct values and a HyperLogLog estimate beyond, with a standard error of 1.6%
//!   ([`Distinct`]).
//!
//! States live in columns ([`States`]): one vector per aggregate holding every group's state,
//! updated a batch at a time from the argument's Arrow column. [`Acc`] is one group's state,
//! for callers that work a record at a time.
//!
//! ```
//! use weir_operators::aggregate::Aggregate;
//! use weir_operators::schema::{Field, Schema};
//! use weir_operators::value::{FieldType, Value};
//!
//! let schema = Schema::new(vec![Field::new("t", FieldType::F64)]);
//! let avg = Aggregate::compile("avg(t)", &schema).unwrap();
//! let mut acc = avg.init();
//! for t in [20.0, 21.0, 22.5] {
//!     avg.update(&mut acc, &[Value::F64(t)], 0, &Value::Null);
//! }
//! assert_eq!(avg.finish(&acc), Value::F64(21.166666666666668));
//! let hot = Aggregate::compile("count(*) FILTER (WHERE t > 21)", &schema).unwrap();
//! let mut acc = hot.init();
//! for t in [20.0, 21.0, 22.5] {
//!     hot.update(&mut acc, &[Value::F64(t)], 0, &Value::Null);
//! }
//! assert_eq!(hot.finish(&acc), Value::I64(1));
//! assert!(Aggregate::compile("median(t)", &schema).unwrap_err().message.contains("median"));
//! ```

use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type, UInt64Type};
use sqlparser::ast::{
    self as sql, DuplicateTreatment, FunctionArg, FunctionArgExpr, FunctionArguments,
};

use crate::chunk::value_at;
use crate::exact_sum::SmallSum;
use crate::expr::{Expr, ExprError};
use crate::schema::Schema;
use crate::sketch::{Distinct, Quantiles};
use crate::value::{FieldType, Micros, Value};
use crate::window::KeyHasher;

/// The aggregate functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Func {
    /// `count(*)`: records.
    CountStar,
    /// `count(x)`: non-NULL values.
    Count,
    /// `count(distinct x)`: distinct non-NULL values.
    CountDistinct,
    /// `sum(x)`.
    Sum,
    /// `min(x)`.
    Min,
    /// `max(x)`.
    Max,
    /// `avg(x)`.
    Avg,
    /// `first(x)`, by event time.
    First,
    /// `last(x)`, by event time.
    Last,
    /// `variance(x)`, `var_samp(x)`: the sample variance.
    VarSamp,
    /// `var_pop(x)`: the population variance.
    VarPop,
    /// `stddev(x)`, `stddev_samp(x)`: the sample standard deviation.
    StddevSamp,
    /// `stddev_pop(x)`: the population standard deviation.
    StddevPop,
    /// `approx_percentile(x, q)`.
    ApproxPercentile,
    /// `approx_count_distinct(x)`.
    ApproxCountDistinct,
}

/// The function names, for messages.
pub const NAMES: &str = "count, sum, min, max, avg, first, last, stddev, stddev_pop, variance, var_pop, approx_percentile, approx_count_distinct";

/// Every name an aggregate call may use (aliases included), lower case.
pub const CALL_NAMES: &[&str] = &[
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "first",
    "last",
    "variance",
    "var_samp",
    "var_pop",
    "stddev",
    "stddev_samp",
    "stddev_pop",
    "approx_percentile",
    "approx_percentile_cont",
    "approx_count_distinct",
];

/// One compiled aggregate.
#[derive(Clone, Debug)]
pub struct Aggregate {
    /// The function.
    pub func: Func,
    arg: Option<Expr>,
    /// `FILTER (WHERE ...)`: only records for which it is true count.
    filter: Option<Expr>,
    /// Whether `sum`/`avg` work on floats (otherwise integers).
    float: bool,
    output: Option<FieldType>,
    /// The quantile of `approx_percentile`.
    q: f64,
}

/// The states of one aggregate for many groups, one slot per group: a vector per kind of state.
#[derive(Clone, Debug)]
pub enum States {
    /// Counts.
    Count(Counts),
    /// Integer sums and how many values each adds (for `sum` and `avg` of integers).
    IntSum(Vec<(i128, u64)>),
    /// Exact float sums and how many values each adds.
    FloatSum(Vec<SmallSum>, Counts),
    /// The smallest or largest value so far (NULL: none yet).
    Extreme(Vec<Value>),
    /// The chosen record's (event time, id, value).
    Pick(Vec<Option<Box<(Micros, Value, Value)>>>),
    /// Distinct values seen.
    Distinct(Vec<BTreeSet<Value>>),
    /// Exact sums of x and x², and the count, for variance and standard deviation.
    Moments(Vec<(SmallSum, SmallSum, u64)>),
    /// Quantile sketches.
    Quantiles(Vec<Option<Box<Quantiles>>>),
    /// Distinct-count sketches.
    Sketch(Vec<Option<Box<Distinct>>>),
}

/// One slot of an aggregate's [`States`], as a checkpoint holds it (postcard-encoded).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum SlotState {
    /// A count.
    Count(u64),
    /// An integer sum and how many values it adds.
    IntSum(i128, u64),
    /// An exact float sum and how many values it adds.
    FloatSum(SmallSum, u64),
    /// The smallest or largest value.
    Extreme(Value),
    /// The chosen record's (event time, id, value).
    Pick(Option<(Micros, Value, Value)>),
    /// Distinct values.
    Distinct(Vec<Value>),
    /// Exact sums of x and x², and the count.
    Moments(SmallSum, SmallSum, u64),
    /// A quantile sketch.
    Quantiles(Option<Quantiles>),
    /// A distinct-count sketch.
    Sketch(Option<Distinct>),
}

/// Pushes `x`, growing a full vector by a quarter rather than doubling it: states are many
/// and long-lived, and a table that just doubled would hold up to half its memory unused.
#[inline]
pub(crate) fn push_growing<T>(v: &mut Vec<T>, x: T) {
    if v.len() == v.capacity() {
        v.reserve_exact((v.len() / 4).max(16));
    }
    v.push(x);
}

/// Counts by slot, 32 bits each: a count that passes `u32::MAX` keeps its high bits in a
/// side table (rare: it takes four billion records of one group in one window), so a count
/// costs 4 bytes a slot and is never wrong.
///
/// ```
/// use weir_operators::aggregate::Counts;
/// let mut c = Counts::default();
/// c.push(u32::MAX as u64);
/// c.incr(0);
/// c.add(0, 5);
/// assert_eq!(c.get(0), (1u64 << 32) + 5);
/// ```
#[derive(Clone, Debug, Default)]
pub struct Counts {
    low: Vec<u32>,
    /// The high 32 bits of the counts that have them, by slot.
    high: std::collections::HashMap<u32, u32>,
}

impl Counts {
    /// How many slots.
    pub fn len(&self) -> usize {
        self.low.len()
    }

    /// Whether there are no slots.
    pub fn is_empty(&self) -> bool {
        self.low.is_empty()
    }

    /// Adds a slot counting `n`.
    pub fn push(&mut self, n: u64) {
        push_growing(&mut self.low, 0);
        self.set(self.low.len() - 1, n);
    }

    /// Slot `i`'s count.
    #[inline]
    pub fn get(&self, i: usize) -> u64 {
        let high = match self.high.is_empty() {
            true => 0,
            false => self.high.get(&(i as u32)).copied().unwrap_or(0),
        };
        ((high as u64) << 32) | self.low[i] as u64
    }

    /// Sets slot `i`'s count.
    pub fn set(&mut self, i: usize, n: u64) {
        self.low[i] = n as u32;
        let high = (n >> 32) as u32;
        if high != 0 {
            self.high.insert(i as u32, high);
        } else if !self.high.is_empty() {
            self.high.remove(&(i as u32));
        }
    }

    /// Adds one to slot `i`.
    #[inline]
    pub fn incr(&mut self, i: usize) {
        let c = &mut self.low[i];
        *c = c.wrapping_add(1);
        if *c == 0 {
            *self.high.entry(i as u32).or_default() += 1;
        }
    }

    /// Adds `n` to slot `i`.
    pub fn add(&mut self, i: usize, n: u64) {
        self.set(i, self.get(i) + n);
    }

    fn reserve_exact(&mut self, n: usize) {
        self.low.reserve_exact(n);
    }

    fn clear(&mut self) {
        self.low.clear();
        self.high.clear();
    }
}

/// One group's state: a [`States`] of one slot.
#[derive(Clone, Debug)]
pub struct Acc(pub States);

/// An aggregate's inputs for one batch: its argument column and its FILTER's column.
pub struct Args {
    arg: Option<ArrayRef>,
    filter: Option<BooleanArray>,
    ids: Option<ArrayRef>,
}

impl Args {
    #[inline]
    fn passes(&self, row: usize) -> bool {
        self.filter
            .as_ref()
            .is_none_or(|m| m.is_valid(row) && m.value(row))
    }
}

impl States {
    /// How many slots.
    pub fn len(&self) -> usize {
        match self {
            States::Count(v) => v.len(),
            States::IntSum(v) => v.len(),
            States::FloatSum(v, _) => v.len(),
            States::Extreme(v) => v.len(),
            States::Pick(v) => v.len(),
            States::Distinct(v) => v.len(),
            States::Moments(v) => v.len(),
            States::Quantiles(v) => v.len(),
            States::Sketch(v) => v.len(),
        }
    }

    /// Whether there are no slots.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes room for exactly `n` more slots.
    pub fn reserve(&mut self, n: usize) {
        match self {
            States::Count(v) => v.reserve_exact(n),
            States::IntSum(v) => v.reserve_exact(n),
            States::FloatSum(v, c) => {
                v.reserve_exact(n);
                c.reserve_exact(n);
            }
            States::Extreme(v) => v.reserve_exact(n),
            States::Pick(v) => v.reserve_exact(n),
            States::Distinct(v) => v.reserve_exact(n),
            States::Moments(v) => v.reserve_exact(n),
            States::Quantiles(v) => v.reserve_exact(n),
            States::Sketch(v) => v.reserve_exact(n),
        }
    }

    /// Removes every slot (keeping the memory).
    pub fn clear(&mut self) {
        match self {
            States::Count(v) => v.clear(),
            States::IntSum(v) => v.clear(),
            States::FloatSum(v, c) => {
                v.clear();
                c.clear();
            }
            States::Extreme(v) => v.clear(),
            States::Pick(v) => v.clear(),
            States::Distinct(v) => v.clear(),
            States::Moments(v) => v.clear(),
            States::Quantiles(v) => v.clear(),
            States::Sketch(v) => v.clear(),
        }
    }

    /// Adds a slot holding the state of no records.
    pub fn push_default(&mut self) {
        match self {
            States::Count(v) => v.push(0),
            States::IntSum(v) => push_growing(v, (0, 0)),
            States::FloatSum(v, c) => {
                push_growing(v, SmallSum::default());
                c.push(0);
            }
            States::Extreme(v) => push_growing(v, Value::Null),
            States::Pick(v) => push_growing(v, None),
            States::Distinct(v) => push_growing(v, BTreeSet::new()),
            States::Moments(v) => push_growing(v, (SmallSum::default(), SmallSum::default(), 0)),
            States::Quantiles(v) => push_growing(v, None),
            States::Sketch(v) => push_growing(v, None),
        }
    }

    /// Adds a slot holding a copy of `from`'s slot `j` (of the same aggregate).
    pub fn push_copy(&mut self, from: &States, j: usize) {
        match (self, from) {
            (States::Count(v), States::Count(f)) => v.push(f.get(j)),
            (States::IntSum(v), States::IntSum(f)) => v.push(f[j]),
            (States::FloatSum(v, c), States::FloatSum(f, n)) => {
                v.push(f[j].clone());
                c.push(n.get(j));
            }
            (States::Extreme(v), States::Extreme(f)) => v.push(f[j].clone()),
            (States::Pick(v), States::Pick(f)) => v.push(f[j].clone()),
            (States::Distinct(v), States::Distinct(f)) => v.push(f[j].clone()),
            (States::Moments(v), States::Moments(f)) => v.push(f[j].clone()),
            (States::Quantiles(v), States::Quantiles(f)) => v.push(f[j].clone()),
            (States::Sketch(v), States::Sketch(f)) => v.push(f[j].clone()),
            _ => unreachable!("states of one aggregate"),
        }
    }

    /// Resets slot `i` to the state of no records.
    pub fn reset(&mut self, i: usize) {
        match self {
            States::Count(v) => v.set(i, 0),
            States::IntSum(v) => v[i] = (0, 0),
            States::FloatSum(v, c) => {
                v[i] = SmallSum::default();
                c.set(i, 0);
            }
            States::Extreme(v) => v[i] = Value::Null,
            States::Pick(v) => v[i] = None,
            States::Distinct(v) => v[i] = BTreeSet::new(),
            States::Moments(v) => v[i] = (SmallSum::default(), SmallSum::default(), 0),
            States::Quantiles(v) => v[i] = None,
            States::Sketch(v) => v[i] = None,
        }
    }

    /// Approximate bytes held by slot `i` beyond its fixed size (distinct sets, sketches,
    /// wide sums).
    pub fn extra_bytes(&self, i: usize) -> usize {
        let wide = |s: &SmallSum| match s {
            SmallSum::Wide(_) => 560,
            SmallSum::Fixed { .. } => 0,
        };
        match self {
            States::FloatSum(v, _) => wide(&v[i]),
            States::Moments(v) => wide(&v[i].0) + wide(&v[i].1),
            States::Pick(v) => v[i].as_ref().map_or(0, |_| 64),
            States::Distinct(v) => v[i].len() * 48,
            States::Quantiles(v) => v[i].as_ref().map_or(0, |q| q.bytes()),
            States::Sketch(v) => v[i].as_ref().map_or(0, |d| d.bytes()),
            _ => 0,
        }
    }

    /// Whether slots may hold memory beyond their fixed size that [`States::extra_bytes`]
    /// counts: distinct sets, first/last records and sketches. Wide float sums (inputs spread
    /// over more than 128 bits, rare) are left out of the count, which would otherwise visit
    /// every slot.
    pub fn has_extra(&self) -> bool {
        matches!(
            self,
            States::Pick(_) | States::Distinct(_) | States::Quantiles(_) | States::Sketch(_)
        )
    }

    /// Slot `i`'s state, to write into a checkpoint.
    pub fn slot_state(&self, i: usize) -> SlotState {
        match self {
            States::Count(v) => SlotState::Count(v.get(i)),
            States::IntSum(v) => SlotState::IntSum(v[i].0, v[i].1),
            States::FloatSum(v, c) => SlotState::FloatSum(v[i].clone(), c.get(i)),
            States::Extreme(v) => SlotState::Extreme(v[i].clone()),
            States::Pick(v) => SlotState::Pick(v[i].as_deref().cloned()),
            States::Distinct(v) => SlotState::Distinct(v[i].iter().cloned().collect()),
            States::Moments(v) => SlotState::Moments(v[i].0.clone(), v[i].1.clone(), v[i].2),
            States::Quantiles(v) => SlotState::Quantiles(v[i].as_deref().cloned()),
            States::Sketch(v) => SlotState::Sketch(v[i].as_deref().cloned()),
        }
    }

    /// Sets slot `i` to a state read from a checkpoint; false if it is another aggregate's.
    pub fn set_state(&mut self, i: usize, s: SlotState) -> bool {
        match (self, s) {
            (States::Count(v), SlotState::Count(n)) => v.set(i, n),
            (States::IntSum(v), SlotState::IntSum(a, n)) => v[i] = (a, n),
            (States::FloatSum(v, c), SlotState::FloatSum(a, n)) => {
                v[i] = a;
                c.set(i, n);
            }
            (States::Extreme(v), SlotState::Extreme(x)) => v[i] = x,
            (States::Pick(v), SlotState::Pick(p)) => v[i] = p.map(Box::new),
            (States::Distinct(v), SlotState::Distinct(d)) => v[i] = d.into_iter().collect(),
            (States::Moments(v), SlotState::Moments(a, b, n)) => v[i] = (a, b, n),
            (States::Quantiles(v), SlotState::Quantiles(q)) => v[i] = q.map(Box::new),
            (States::Sketch(v), SlotState::Sketch(d)) => v[i] = d.map(Box::new),
            _ => return false,
        }
        true
    }

    /// The fixed size of one slot.
    pub fn slot_bytes(&self) -> usize {
        match self {
            States::Count(_) => 4,
            States::IntSum(_) => 32,
            States::FloatSum(..) => 28,
            States::Extreme(_) => std::mem::size_of::<Value>(),
            States::Pick(_) => 8,
            States::Distinct(_) => 24,
            States::Moments(_) => 56,
            States::Quantiles(_) | States::Sketch(_) => 8,
        }
    }
}

impl Aggregate {
    /// Parses and compiles one aggregate call against the window's input schema. Error spans
    /// are byte ranges within `text`.
    pub fn compile(text: &str, schema: &Schema) -> Result<Aggregate, ExprError> {
        let parsed = Expr::parse(text)?;
        let whole = 0..text.len();
        let sql::Expr::Function(f) = &parsed else {
            return Err(ExprError {
                message: "an aggregate must be one call such as `avg(temperature)`".into(),
                span: whole,
                help: Some(format!("use one of: {NAMES}; count(*) counts records")),
            });
        };
        let name = f.name.to_string().to_ascii_lowercase();
        let err = |message: String, help: Option<String>| ExprError {
            message,
            span: 0..text.len(),
            help,
        };
        let (args, distinct) = match &f.args {
            FunctionArguments::List(list) if list.clauses.is_empty() => (
                list.args.iter().collect::<Vec<_>>(),
                matches!(list.duplicate_treatment, Some(DuplicateTreatment::Distinct)),
            ),
            _ => {
                return Err(err(
                    format!("`{name}` needs its argument in parentheses"),
                    Some("for example `sum(x)` or `count(*)`".into()),
                ))
            }
        };
        if f.over.is_some() || !f.within_group.is_empty() {
            return Err(err(
                format!("`{name}`: OVER and WITHIN GROUP are not supported"),
                Some(
                    "a window transform already groups by key and window; use FILTER (WHERE ...) to count only some records".into(),
                ),
            ));
        }
        let star = matches!(
            args.as_slice(),
            [FunctionArg::Unnamed(FunctionArgExpr::Wildcard)]
        );
        let func = match (name.as_str(), distinct, star) {
            ("count", false, true) => Func::CountStar,
            ("count", false, false) => Func::Count,
            ("count", true, false) => Func::CountDistinct,
            ("sum", false, false) => Func::Sum,
            ("min", false, false) => Func::Min,
            ("max", false, false) => Func::Max,
            ("avg", false, false) => Func::Avg,
            ("first", false, false) => Func::First,
            ("last", false, false) => Func::Last,
            ("variance" | "var_samp", false, false) => Func::VarSamp,
            ("var_pop", false, false) => Func::VarPop,
            ("stddev" | "stddev_samp", false, false) => Func::StddevSamp,
            ("stddev_pop", false, false) => Func::StddevPop,
            ("approx_percentile" | "approx_percentile_cont", false, false) => {
                Func::ApproxPercentile
            }
            ("approx_count_distinct", false, false) => Func::ApproxCountDistinct,
            (n, true, _) if CALL_NAMES.contains(&n) => {
                return Err(err(
                    format!("`{name}(distinct ...)` is not supported"),
                    Some(
                        "only count takes DISTINCT; approx_count_distinct(x) estimates it in little memory"
                            .into(),
                    ),
                ))
            }
            (n, _, true) if CALL_NAMES.contains(&n) => {
                return Err(err(
                    format!("`{name}(*)` is not meaningful"),
                    Some(format!(
                        "name a field: `{name}(temperature)`; count(*) counts records"
                    )),
                ))
            }
            (n, _, _) if crate::expr::function_names().any(|f| f == n) => {
                return Err(err(
                    format!("`{name}` is a function, not an aggregate"),
                    Some(format!(
                        "aggregate first, then apply it: {name}(avg(x)); the aggregates are: {NAMES}"
                    )),
                ))
            }
            _ => {
                let known = CALL_NAMES.iter().copied().chain(crate::expr::function_names());
                return Err(err(
                    format!("unknown function `{name}`"),
                    Some(match crate::suggest::did_you_mean(&name, known) {
                        Some(s) => format!("did you mean `{s}`? the aggregates are: {NAMES}"),
                        None => format!("the aggregates are: {NAMES}"),
                    }),
                ))
            }
        };
        let filter = match &f.filter {
            None => None,
            Some(cond) => {
                let e = Expr::compile_parsed(text, cond, schema)?;
                if !matches!(e.output_type(), Some(FieldType::Bool) | None) {
                    return Err(ExprError {
                        message: format!(
                            "FILTER needs a condition, and this is {}",
                            e.output_type().map(|t| t.name()).unwrap_or("null")
                        ),
                        span: Expr::span_in(text, cond.as_ref()),
                        help: Some(
                            "write a comparison, such as FILTER (WHERE level = 'critical')".into(),
                        ),
                    });
                }
                Some(e)
            }
        };
        if func == Func::CountStar {
            return Ok(Aggregate {
                func,
                arg: None,
                filter,
                float: false,
                output: Some(FieldType::I64),
                q: 0.0,
            });
        }
        let (arg, q) = match (func, args.as_slice()) {
            (
                Func::ApproxPercentile,
                [FunctionArg::Unnamed(FunctionArgExpr::Expr(x)), FunctionArg::Unnamed(FunctionArgExpr::Expr(q))],
            ) => {
                let qe = Expr::compile_parsed(text, q, schema)?;
                let value = if qe.fields().is_empty() {
                    qe.eval(&[]).as_f64()
                } else {
                    None
                };
                match value {
                    Some(v) if (0.0..=1.0).contains(&v) => (x, v),
                    _ => {
                        return Err(ExprError {
                            message:
                                "the quantile of `approx_percentile` must be a number from 0 to 1"
                                    .into(),
                            span: Expr::span_in(text, q),
                            help: Some("for example `approx_percentile(latency_ms, 0.99)`".into()),
                        })
                    }
                }
            }
            (Func::ApproxPercentile, _) => {
                return Err(err(
                    "`approx_percentile` takes a value and a quantile".into(),
                    Some("for example `approx_percentile(latency_ms, 0.99)`".into()),
                ))
            }
            (_, [FunctionArg::Unnamed(FunctionArgExpr::Expr(x))]) => (x, 0.0),
            _ => {
                return Err(err(
                    format!("`{name}` takes exactly one argument"),
                    Some(format!("for example `{name}(temperature)`")),
                ))
            }
        };
        let expr = Expr::compile_parsed(text, arg, schema)?;
        let ty = expr.output_type();
        if let Some(t @ FieldType::List(_)) = ty {
            if func != Func::Count {
                return Err(ExprError {
                    message: format!("`{name}` cannot aggregate a list ({t})"),
                    span: 0..text.len(),
                    help: Some(
                        "unnest the list first (a transform of type = \"unnest\"), or aggregate cardinality(...) or an element such as tags[1]".into(),
                    ),
                });
            }
        }
        let numeric = matches!(
            ty,
            Some(FieldType::I64 | FieldType::U64 | FieldType::F64) | None
        );
        let needs_number = matches!(
            func,
            Func::Sum
                | Func::Avg
                | Func::VarSamp
                | Func::VarPop
                | Func::StddevSamp
                | Func::StddevPop
                | Func::ApproxPercentile
        );
        if needs_number && !numeric {
            return Err(ExprError {
                message: format!(
                    "`{name}` needs a number, and its argument is {}",
                    ty.map(|t| t.name()).unwrap_or("null")
                ),
                span: Expr::span_in(text, arg),
                help: Some("cast it, as in `CAST(x AS f64)`, or use min/max/first/last".into()),
            });
        }
        let float = ty == Some(FieldType::F64);
        let output = match func {
            Func::Count | Func::CountDistinct | Func::CountStar | Func::ApproxCountDistinct => {
                Some(FieldType::I64)
            }
            Func::Avg
            | Func::VarSamp
            | Func::VarPop
            | Func::StddevSamp
            | Func::StddevPop
            | Func::ApproxPercentile => Some(FieldType::F64),
            Func::Sum if ty.is_none() => Some(FieldType::I64),
            _ => ty,
        };
        Ok(Aggregate {
            func,
            arg: Some(expr),
            filter,
            float,
            output,
            q,
        })
    }

    /// The type of the aggregate's value (`None` when it is always NULL).
    pub fn output_type(&self) -> Option<FieldType> {
        self.output
    }

    /// The input fields the aggregate reads (its argument's and its FILTER's).
    pub fn fields(&self) -> Vec<usize> {
        let mut f: Vec<usize> = self
            .arg
            .iter()
            .chain(&self.filter)
            .flat_map(Expr::fields)
            .collect();
        f.sort_unstable();
        f.dedup();
        f
    }

    /// Empty states (no slots) of this aggregate.
    pub fn states(&self) -> States {
        match self.func {
            Func::CountStar | Func::Count => States::Count(Counts::default()),
            Func::CountDistinct => States::Distinct(Vec::new()),
            Func::Sum | Func::Avg if self.float => States::FloatSum(Vec::new(), Counts::default()),
            Func::Sum | Func::Avg => States::IntSum(Vec::new()),
            Func::Min | Func::Max => States::Extreme(Vec::new()),
            Func::First | Func::Last => States::Pick(Vec::new()),
            Func::VarSamp | Func::VarPop | Func::StddevSamp | Func::StddevPop => {
                States::Moments(Vec::new())
            }
            Func::ApproxPercentile => States::Quantiles(Vec::new()),
            Func::ApproxCountDistinct => States::Sketch(Vec::new()),
        }
    }

    /// A fresh accumulator for one group.
    pub fn init(&self) -> Acc {
        let mut s = self.states();
        s.push_default();
        Acc(s)
    }

    /// Adds one record (its values, event time and id) to `acc`.
    pub fn update(&self, acc: &mut Acc, row: &[Value], ts: Micros, id: &Value) {
        if let Some(f) = &self.filter {
            if f.eval_bool(row) != Some(true) {
                return;
            }
        }
        let v = match &self.arg {
            None => Value::Null,
            Some(a) => a.eval(row),
        };
        self.add_value(&mut acc.0, 0, v, ts, id);
    }

    /// Evaluates the aggregate's argument and FILTER over a batch of field columns.
    pub fn args(&self, columns: &[ArrayRef], rows: usize, id: Option<usize>) -> Args {
        Args {
            arg: self
                .arg
                .as_ref()
                .map(|a| a.eval_batch(columns, rows, FieldType::F64)),
            filter: self.filter.as_ref().map(|f| f.eval_mask(columns, rows)),
            ids: match (self.func, id) {
                (Func::First | Func::Last, Some(p)) => Some(std::sync::Arc::clone(&columns[p])),
                _ => None,
            },
        }
    }

    /// Adds batch rows `start + k` to slots `slots[k]`, with their event times `ts[row]`.
    pub fn update_batch(
        &self,
        st: &mut States,
        args: &Args,
        start: usize,
        slots: &[u32],
        ts: &[Micros],
    ) {
        let pairs = slots
            .iter()
            .enumerate()
            .map(|(k, &s)| (start + k, s as usize));
        let filtered = args.filter.is_some();
        match (st, &args.arg) {
            (States::Count(v), None) => {
                for (r, s) in pairs {
                    if !filtered || args.passes(r) {
                        v.incr(s);
                    }
                }
            }
            (States::Count(v), Some(a)) => {
                for (r, s) in pairs {
                    if a.is_valid(r) && (!filtered || args.passes(r)) {
                        v.incr(s);
                    }
                }
            }
            (States::FloatSum(v, c), Some(a)) if a.data_type() == &DataType::Float64 => {
                let a = a.as_primitive::<Float64Type>();
                let xs = a.values();
                match a.nulls().filter(|n| n.null_count() > 0) {
                    None if !filtered => {
                        let xs = &xs[start..start + slots.len()];
                        for (&x, &s) in xs.iter().zip(slots) {
                            v[s as usize].add(x);
                            c.incr(s as usize);
                        }
                    }
                    _ => {
                        for (r, s) in pairs {
                            if a.is_valid(r) && args.passes(r) {
                                v[s].add(xs[r]);
                                c.incr(s);
                            }
                        }
                    }
                }
            }
            (States::IntSum(v), Some(a)) if a.data_type() == &DataType::Int64 => {
                let a = a.as_primitive::<Int64Type>();
                for (r, s) in pairs {
                    if a.is_valid(r) && args.passes(r) {
                        let e = &mut v[s];
                        e.0 += a.value(r) as i128;
                        e.1 += 1;
                    }
                }
            }
            (States::IntSum(v), Some(a)) if a.data_type() == &DataType::UInt64 => {
                let a = a.as_primitive::<UInt64Type>();
                for (r, s) in pairs {
                    if a.is_valid(r) && args.passes(r) {
                        let e = &mut v[s];
                        e.0 += a.value(r) as i128;
                        e.1 += 1;
                    }
                }
            }
            (st, arg) => {
                for (r, s) in pairs {
                    if !args.passes(r) {
                        continue;
                    }
                    let v = arg.as_ref().map_or(Value::Null, |a| value_at(a, r));
                    let id = args.ids.as_ref().map_or(Value::Null, |a| value_at(a, r));
                    self.add_value(st, s, v, ts[r], &id);
                }
            }
        }
    }

    /// Adds one value (of a record passing the FILTER) to slot `i`.
    fn add_value(&self, st: &mut States, i: usize, v: Value, ts: Micros, id: &Value) {
        if let States::Pick(p) = st {
            let better = match &p[i] {
                None => true,
                Some(cur) => {
                    let ord = (ts, id, &v).cmp(&(cur.0, &cur.1, &cur.2));
                    if self.func == Func::First {
                        ord.is_lt()
                    } else {
                        ord.is_gt()
                    }
                }
            };
            if better {
                p[i] = Some(Box::new((ts, id.clone(), v)));
            }
            return;
        }
        if v == Value::Null {
            if self.func == Func::CountStar {
                if let States::Count(c) = st {
                    c.incr(i);
                }
            }
            return;
        }
        match st {
            States::Count(c) => c.incr(i),
            States::Distinct(d) => {
                if !d[i].contains(&v) {
                    d[i].insert(v);
                }
            }
            States::IntSum(s) => {
                s[i].0 += int(&v);
                s[i].1 += 1;
            }
            States::FloatSum(s, c) => {
                s[i].add(v.as_f64().unwrap_or(0.0));
                c.incr(i);
            }
            States::Extreme(x) => {
                let better = match &x[i] {
                    Value::Null => true,
                    cur if self.func == Func::Min => v < *cur,
                    cur => v > *cur,
                };
                if better {
                    x[i] = v;
                }
            }
            States::Moments(m) => {
                let x = v.as_f64().unwrap_or(0.0);
                let e = &mut m[i];
                e.0.add(x);
                e.1.add(x * x);
                e.2 += 1;
            }
            States::Quantiles(q) => {
                q[i].get_or_insert_with(Box::default)
                    .add(v.as_f64().unwrap_or(0.0));
            }
            States::Sketch(d) => {
                let mut h = KeyHasher::default();
                v.hash(&mut h);
                d[i].get_or_insert_with(Box::default).add(h.finish());
            }
            States::Pick(_) => unreachable!("handled above"),
        }
    }

    /// The aggregate's value.
    pub fn finish(&self, acc: &Acc) -> Value {
        self.finish_at(&acc.0, 0)
    }

    /// The value of slot `i`.
    pub fn finish_at(&self, st: &States, i: usize) -> Value {
        match st {
            States::Count(c) => Value::I64(c.get(i) as i64),
            States::Distinct(d) => Value::I64(d[i].len() as i64),
            States::IntSum(s) => match s[i] {
                (_, 0) => Value::Null,
                (sum, n) if self.func == Func::Avg => Value::F64(sum as f64 / n as f64),
                (sum, _) => match self.output {
                    Some(FieldType::U64) => {
                        u64::try_from(sum).map(Value::U64).unwrap_or(Value::Null)
                    }
                    _ => i64::try_from(sum).map(Value::I64).unwrap_or(Value::Null),
                },
            },
            States::FloatSum(s, c) => match (&s[i], c.get(i)) {
                (_, 0) => Value::Null,
                (sum, n) if self.func == Func::Avg => Value::F64(sum.value() / n as f64),
                (sum, _) => Value::F64(sum.value()),
            },
            States::Extreme(x) => x[i].clone(),
            States::Pick(p) => p[i].as_ref().map_or(Value::Null, |b| b.2.clone()),
            States::Moments(m) => {
                let (s1, s2, n) = &m[i];
                let sample = matches!(self.func, Func::VarSamp | Func::StddevSamp);
                let n = *n;
                if n == 0 || (sample && n == 1) {
                    return Value::Null;
                }
                let (s1, s2, nf) = (s1.value(), s2.value(), n as f64);
                let m2 = (s2 - s1 * (s1 / nf)).max(0.0);
                let var = if sample { m2 / (nf - 1.0) } else { m2 / nf };
                let var = if var.is_nan() && s1.is_finite() && s2.is_finite() {
                    0.0
                } else {
                    var
                };
                match self.func {
                    Func::StddevSamp | Func::StddevPop => Value::F64(var.sqrt()),
                    _ => Value::F64(var),
                }
            }
            States::Quantiles(q) => q[i]
                .as_ref()
                .and_then(|q| q.quantile(self.q))
                .map_or(Value::Null, Value::F64),
            States::Sketch(d) => Value::I64(d[i].as_ref().map_or(0, |d| d.estimate()) as i64),
        }
    }

    /// Adds the state `from` (of the same aggregate) into `into`, as if `into` had also seen
    /// every record `from` saw. Sliding and session windows combine partial states with it.
    pub fn merge(&self, into: &mut Acc, from: &Acc) {
        self.merge_at(&mut into.0, 0, &from.0, 0)
    }

    /// Adds `from`'s slot `j` into `into`'s slot `i`.
    pub fn merge_at(&self, into: &mut States, i: usize, from: &States, j: usize) {
        match (into, from) {
            (States::Count(a), States::Count(b)) => a.add(i, b.get(j)),
            (States::Distinct(a), States::Distinct(b)) => {
                let b = &b[j];
                a[i].extend(b.iter().cloned())
            }
            (States::IntSum(a), States::IntSum(b)) => {
                a[i].0 += b[j].0;
                a[i].1 += b[j].1;
            }
            (States::FloatSum(a, c), States::FloatSum(b, d)) => {
                a[i].merge(&b[j]);
                c.add(i, d.get(j));
            }
            (States::Extreme(a), States::Extreme(b)) => {
                let b = &b[j];
                if *b == Value::Null {
                    return;
                }
                let better = match &a[i] {
                    Value::Null => true,
                    x if self.func == Func::Min => b < x,
                    x => b > x,
                };
                if better {
                    a[i] = b.clone();
                }
            }
            (States::Pick(a), States::Pick(b)) => {
                let Some(b) = &b[j] else { return };
                let better = match &a[i] {
                    None => true,
                    Some(x) => {
                        let ord = (b.0, &b.1, &b.2).cmp(&(x.0, &x.1, &x.2));
                        if self.func == Func::First {
                            ord.is_lt()
                        } else {
                            ord.is_gt()
                        }
                    }
                };
                if better {
                    a[i] = Some(b.clone());
                }
            }
            (States::Moments(a), States::Moments(b)) => {
                a[i].0.merge(&b[j].0);
                a[i].1.merge(&b[j].1);
                a[i].2 += b[j].2;
            }
            (States::Quantiles(a), States::Quantiles(b)) => {
                if let Some(b) = &b[j] {
                    a[i].get_or_insert_with(Box::default).merge(b);
                }
            }
            (States::Sketch(a), States::Sketch(b)) => {
                if let Some(b) = &b[j] {
                    a[i].get_or_insert_with(Box::default).merge(b);
                }
            }
            _ => unreachable!("states of one aggregate"),
        }
    }

    /// How many values `acc` holds (its state size beyond a constant, for `count(distinct)`).
    pub fn size(acc: &Acc) -> usize {
        match &acc.0 {
            States::Distinct(s) => s[0].len(),
            _ => 0,
        }
    }
}

/// A window result field: one aggregate, or an expression over aggregates.
#[derive(Clone, Debug)]
pub enum Output {
    /// The value of aggregate `k` of the window.
    Agg(usize),
    /// An expression over the result's group fields, `window_start`, `window_end` and the
    /// aggregates `aggs` (in that order, as fields of one row).
    Expr {
        /// The window's aggregates the expression reads.
        aggs: std::ops::Range<usize>,
        /// The compiled expression.
        expr: Expr,
    },
}

/// The aggregate calls in `text`: each call's byte range (with its FILTER clause).
fn calls(text: &str) -> Vec<std::ops::Range<usize>> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    // The end of the parenthesised group opening at `open`, skipping quoted text.
    let close = |open: usize| -> Option<usize> {
        let mut depth = 0;
        let mut j = open;
        while j < b.len() {
            match b[j] {
                q @ (b'\'' | b'"') => {
                    j += 1;
                    while j < b.len() && b[j] != q {
                        j += 1;
                    }
                }
                b'(' => depth += 1,
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(j + 1);
                    }
                }
                _ => {}
            }
            j += 1;
        }
        None
    };
    let skip_ws = |mut j: usize| {
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        j
    };
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
                i += 1;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                let word = text[start..i].to_ascii_lowercase();
                let open = skip_ws(i);
                if !CALL_NAMES.contains(&word.as_str()) || open >= b.len() || b[open] != b'(' {
                    continue;
                }
                let Some(mut end) = close(open) else { break };
                // A FILTER clause belongs to the call.
                let f = skip_ws(end);
                if b.len() >= f + 6 && b[f..f + 6].eq_ignore_ascii_case(b"filter") {
                    let open = skip_ws(f + 6);
                    if open < b.len() && b[open] == b'(' {
                        if let Some(e) = close(open) {
                            end = e;
                        }
                    }
                }
                out.push(start..end);
                i = end;
            }
            _ => i += 1,
        }
    }
    out
}

impl Output {
    /// Compiles one window result field: an aggregate call (`avg(temperature)`), or an
    /// expression over calls and the result's other fields (`round(avg(temperature), 2)`,
    /// `max(ts) - min(ts)`, `count(*) FILTER (WHERE kind = 'alarm') * 100 / count(*)`).
    /// `first` is the index the field's first aggregate will have among the window's
    /// aggregates; `result` holds the group fields, `window_start` and `window_end`. Returns
    /// the field and its aggregates. Error spans are byte ranges within `text`.
    pub fn compile(
        text: &str,
        input: &Schema,
        result: &Schema,
        first: usize,
    ) -> Result<(Output, Vec<Aggregate>), ExprError> {
        let found = calls(text);
        let trimmed = text.trim();
        let lead = text.len() - text.trim_start().len();
        if found.len() == 1 && found[0] == (lead..lead + trimmed.len()) {
            return Aggregate::compile(text, input).map(|a| (Output::Agg(first), vec![a]));
        }
        if found.is_empty() {
            // An expression over the group fields and the window's bounds only; otherwise
            // the text is no aggregate at all: say what one looks like.
            return match Expr::compile(text, result) {
                Ok(expr) => Ok((
                    Output::Expr {
                        aggs: first..first,
                        expr,
                    },
                    Vec::new(),
                )),
                Err(_) => Aggregate::compile(text, input).map(|a| (Output::Agg(first), vec![a])),
            };
        }
        if found.len() > 99 {
            return Err(ExprError {
                message: "too many aggregate calls in one field".into(),
                span: 0..text.len(),
                help: Some("split it into several fields".into()),
            });
        }
        let mut aggs = Vec::new();
        let mut outer = String::with_capacity(text.len());
        let mut fields = result.fields.clone();
        let mut names = Vec::new();
        let mut at = 0;
        for (k, span) in found.iter().enumerate() {
            let a = Aggregate::compile(&text[span.clone()], input).map_err(|mut e| {
                e.span = e.span.start + span.start..e.span.end + span.start;
                e
            })?;
            // A field name as long as the call, so that spans in the expression still point
            // at the text.
            let mut name = format!("__a{k}");
            while name.len() < span.len() {
                name.push('_');
            }
            outer.push_str(&text[at..span.start]);
            outer.push_str(&name);
            at = span.end;
            fields.push(crate::schema::Field::new(
                &name,
                a.output_type().unwrap_or(FieldType::F64),
            ));
            names.push((name, text[span.clone()].to_string()));
            aggs.push(a);
        }
        outer.push_str(&text[at..]);
        let schema = Schema::new(fields);
        let expr = Expr::compile(&outer, &schema).map_err(|mut e| {
            for (name, call) in &names {
                e.message = e.message.replace(name.as_str(), call);
            }
            e
        })?;
        let n = aggs.len();
        Ok((
            Output::Expr {
                aggs: first..first + n,
                expr,
            },
            aggs,
        ))
    }

    /// The field's type (`None` when it is always NULL).
    pub fn output_type(&self, aggregates: &[Aggregate]) -> Option<FieldType> {
        match self {
            Output::Agg(k) => aggregates[*k].output_type(),
            Output::Expr { expr, .. } => expr.output_type(),
        }
    }
}

#[inline]
fn int(v: &Value) -> i128 {
    match v {
        Value::I64(i) => *i as i128,
        Value::U64(u) => *u as i128,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Field;

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("i", FieldType::I64),
            Field::new("f", FieldType::F64),
            Field::new("s", FieldType::String),
        ])
    }

    fn run(text: &str, rows: &[(Micros, u64, Vec<Value>)]) -> Value {
        let a = Aggregate::compile(text, &schema()).unwrap();
        let mut acc = a.init();
        for (ts, id, row) in rows {
            a.update(&mut acc, row, *ts, &Value::U64(*id));
        }
        a.finish(&acc)
    }

    fn rows() -> Vec<(Micros, u64, Vec<Value>)> {
        use Value::*;
        vec![
            (5, 1, vec![I64(3), F64(0.5), Str("b".into())]),
            (2, 2, vec![Null, F64(1.5), Str("a".into())]),
            (9, 3, vec![I64(-7), Null, Str("b".into())]),
            (2, 0, vec![I64(10), F64(2.0), Null]),
        ]
    }

    #[test]
    fn each_function_on_a_small_group() {
        use Value::*;
        let r = rows();
        assert_eq!(run("count(*)", &r), I64(4));
        assert_eq!(run("count(i)", &r), I64(3));
        assert_eq!(run("COUNT(DISTINCT s)", &r), I64(2));
        assert_eq!(run("sum(i)", &r), I64(6));
        assert_eq!(run("sum(f)", &r), F64(4.0));
        assert_eq!(run("sum(i * 2)", &r), I64(12));
        assert_eq!(run("min(i)", &r), I64(-7));
        assert_eq!(run("max(s)", &r), Str("b".into()));
        assert_eq!(run("avg(i)", &r), F64(2.0));
        assert_eq!(run("avg(f)", &r), F64(4.0 / 3.0));
        // Event time 2 twice: the id breaks the tie (id 0 < id 2).
        assert_eq!(run("first(i)", &r), I64(10));
        assert_eq!(run("last(s)", &r), Str("b".into()));
        assert_eq!(run("last(f)", &r), Null, "first/last keep NULLs");
    }

    #[test]
    fn empty_and_all_null_groups() {
        use Value::*;
        let nulls = vec![(1, 1, vec![Null, Null, Null])];
        assert_eq!(run("count(i)", &nulls), I64(0));
        assert_eq!(run("sum(i)", &nulls), Null);
        assert_eq!(run("avg(f)", &nulls), Null);
        assert_eq!(run("min(s)", &nulls), Null);
        assert_eq!(run("count(*)", &nulls), I64(1));
    }

    #[test]
    fn order_never_matters() {
        let mut r = rows();
        let texts = [
            "sum(f)",
            "avg(f)",
            "first(i)",
            "last(i)",
            "min(s)",
            "count(distinct s)",
        ];
        let before: Vec<Value> = texts.iter().map(|t| run(t, &r)).collect();
        r.reverse();
        let after: Vec<Value> = texts.iter().map(|t| run(t, &r)).collect();
        assert_eq!(before, after);
    }

    #[test]
    fn merging_partial_states_equals_one_pass() {
        let r = rows();
        for text in [
            "count(*)",
            "count(i)",
            "count(distinct s)",
            "sum(i)",
            "sum(f)",
            "min(i)",
            "max(s)",
            "avg(i)",
            "avg(f)",
            "first(i)",
            "last(s)",
            "last(f)",
            "variance(f)",
            "stddev_pop(i)",
            "approx_percentile(f, 0.5)",
            "approx_count_distinct(s)",
            "count(*) FILTER (WHERE i > 0)",
            "sum(f) FILTER (WHERE s = 'b')",
        ] {
            let a = Aggregate::compile(text, &schema()).unwrap();
            for split in 0..=r.len() {
                let (mut left, mut right) = (a.init(), a.init());
                for (k, (ts, id, row)) in r.iter().enumerate() {
                    let acc = if k < split { &mut left } else { &mut right };
                    a.update(acc, row, *ts, &Value::U64(*id));
                }
                a.merge(&mut right, &left);
                assert_eq!(a.finish(&right), run(text, &r), "{text}, split at {split}");
            }
        }
    }

    #[test]
    fn statistics_sketches_and_filters_on_a_small_group() {
        use Value::*;
        let r = rows();
        // f: 0.5, 1.5, NULL, 2.0 -> mean 4/3, squared deviations sum 7/6. The documented
        // bound: a relative error of about 2^-52 * sum(x^2) / (n * variance), here ~1e-15.
        let near = |text: &str, want: f64| {
            let got = run(text, &r).as_f64().unwrap();
            assert!(
                (got - want).abs() <= 1e-14 * want,
                "{text}: {got} against {want}"
            );
        };
        near("var_pop(f)", (7.0 / 6.0) / 3.0);
        near("variance(f)", (7.0 / 6.0) / 2.0);
        near("stddev(f)", ((7.0f64 / 6.0) / 2.0).sqrt());
        assert_eq!(run("stddev_samp(i * 0)", &r), F64(0.0));
        assert_eq!(run("approx_count_distinct(s)", &r), I64(2));
        assert_eq!(run("approx_count_distinct(f)", &r), I64(3));
        let p = run("approx_percentile(f, 1.0)", &r).as_f64().unwrap();
        assert!((p - 2.0).abs() <= 0.02, "{p}");
        assert_eq!(run("count(*) FILTER (WHERE i > 0)", &r), I64(2));
        assert_eq!(run("sum(i) FILTER (WHERE s = 'b')", &r), I64(-4));
        assert_eq!(run("avg(f) FILTER (WHERE i IS NULL)", &r), F64(1.5));
        assert_eq!(run("max(s) FILTER (WHERE false)", &r), Null);
        let one = vec![(1, 1, vec![I64(1), F64(3.0), Null])];
        assert_eq!(
            run("variance(f)", &one),
            Null,
            "a sample of one has no variance"
        );
        assert_eq!(run("var_pop(f)", &one), F64(0.0));
        let s = schema();
        for (text, says) in [
            ("approx_percentile(f, 2)", "from 0 to 1"),
            ("approx_percentile(f, i)", "from 0 to 1"),
            ("approx_percentile(f)", "a value and a quantile"),
            ("stddev(s)", "needs a number"),
            ("count(*) FILTER (WHERE i + 1)", "FILTER needs a condition"),
            ("sum(i) OVER ()", "OVER"),
        ] {
            let e = Aggregate::compile(text, &s).unwrap_err();
            assert!(e.message.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn result_expressions_compile_or_say_why_and_never_panic() {
        use crate::schema::Field;
        let s = schema();
        let result = Schema::new(vec![
            Field::new("s", FieldType::String),
            Field::new("window_start", FieldType::Timestamp),
            Field::new("window_end", FieldType::Timestamp),
        ]);
        let (o, aggs) = Output::compile(
            "round(avg(f), 1) + count(*) FILTER (WHERE s = 'é')",
            &s,
            &result,
            3,
        )
        .unwrap();
        assert_eq!(aggs.len(), 2);
        assert!(matches!(o, Output::Expr { ref aggs, .. } if *aggs == (3..5)));
        assert_eq!(o.output_type(&aggs), Some(FieldType::F64));
        let (o, aggs) = Output::compile(" sum(i) ", &s, &result, 0).unwrap();
        assert!(matches!(o, Output::Agg(0)) && aggs.len() == 1);
        let (o, aggs) = Output::compile("window_end - window_start", &s, &result, 7).unwrap();
        assert!(matches!(o, Output::Expr { ref aggs, .. } if aggs.is_empty()) && aggs.is_empty());
        for bad in [
            "count(",
            "sum(i) +",
            "avg(f) FILTERé",
            "avg(f) FILTER (",
            "é(count(*))",
            "max(sum(i))",
            "count(*) FILTER (WHERE 'x",
            "",
        ] {
            assert!(Output::compile(bad, &s, &result, 0).is_err(), "{bad}");
        }
    }

    #[test]
    fn integer_overflow_is_null_not_wrong() {
        let big = vec![
            (1, 1, vec![Value::I64(i64::MAX), Value::Null, Value::Null]),
            (2, 2, vec![Value::I64(1), Value::Null, Value::Null]),
        ];
        assert_eq!(run("sum(i)", &big), Value::Null);
        assert_eq!(
            run("avg(i)", &big),
            Value::F64((i64::MAX as f64 + 1.0) / 2.0)
        );
    }

    #[test]
    fn errors_say_what_to_do() {
        let s = schema();
        let e = Aggregate::compile("sum(s)", &s).unwrap_err();
        assert!(e.message.contains("needs a number"), "{e}");
        assert_eq!(&"sum(s)"[e.span.clone()], "s");
        assert!(Aggregate::compile("avg(*)", &s)
            .unwrap_err()
            .message
            .contains("not meaningful"));
        assert!(Aggregate::compile("sum(distinct i)", &s).is_err());
        assert!(Aggregate::compile("i + 1", &s)
            .unwrap_err()
            .message
            .contains("one call"));
        let e = Aggregate::compile("avg(tempr)", &s).unwrap_err();
        assert!(e.message.contains("unknown field `tempr`"), "{e}");
        assert!(Aggregate::compile("sum(i, f)", &s)
            .unwrap_err()
            .message
            .contains("one argument"));
    }
}
