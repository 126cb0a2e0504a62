//! Window aggregates: `count(*)`, `count(x)`, `count(distinct x)`, `sum(x)`, `min(x)`,
//! `max(x)`, `avg(x)`, `first(x)` and `last(x)`, written in SQL and compiled against the
//! window's input schema. `x` is any expression over the record's fields.
//!
//! Semantics follow SQL: every aggregate but `count(*)`, `first` and `last` ignores NULL
//! values; `sum`, `min`, `max` and `avg` of no (non-NULL) values are NULL. Results never depend
//! on the order in which records arrive:
//! - `sum` and `avg` of floats are exact sums rounded once ([`ExactSum`]); `sum` of integers is
//!   exact too, and NULL if the result does not fit in 64 bits; `avg` is always `f64`.
//! - `first(x)` / `last(x)` take `x` from the record with the smallest / largest event time;
//!   ties are broken by the record's id, then by the value of `x`.
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
//! assert!(Aggregate::compile("median(t)", &schema).unwrap_err().message.contains("median"));
//! ```

use std::collections::BTreeSet;

use sqlparser::ast::{
    self as sql, DuplicateTreatment, FunctionArg, FunctionArgExpr, FunctionArguments,
};

use crate::exact_sum::ExactSum;
use crate::expr::{Expr, ExprError};
use crate::schema::Schema;
use crate::value::{FieldType, Micros, Value};

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
}

/// The function names, for messages.
pub const NAMES: &str = "count, sum, min, max, avg, first, last";

/// One compiled aggregate.
#[derive(Clone, Debug)]
pub struct Aggregate {
    /// The function.
    pub func: Func,
    arg: Option<Expr>,
    /// Whether `sum`/`avg` work on floats (otherwise integers).
    float: bool,
    output: Option<FieldType>,
}

/// The running state of one aggregate over one group in one window.
#[derive(Clone, Debug)]
pub enum Acc {
    /// A count.
    Count(u64),
    /// Distinct values seen.
    Distinct(BTreeSet<Value>),
    /// An integer sum and whether any value was added.
    SumInt(i128, bool),
    /// A float sum and how many values were added.
    SumFloat(Box<ExactSum>, u64),
    /// An integer sum and count, for `avg`.
    AvgInt(i128, u64),
    /// The smallest or largest value so far.
    Extreme(Option<Value>),
    /// The chosen record's (event time, id, value).
    Pick(Option<(Micros, Value, Value)>),
}

impl Aggregate {
    /// Parses and compiles one aggregate against the window's input schema. Error spans are
    /// byte ranges within `text`.
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
        if f.filter.is_some() || f.over.is_some() || !f.within_group.is_empty() {
            return Err(err(
                format!("`{name}`: FILTER, OVER and WITHIN GROUP are not supported"),
                Some("filter records with a `filter` transform before the window".into()),
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
            ("count" | "sum" | "min" | "max" | "avg" | "first" | "last", true, _) => {
                return Err(err(
                    format!("`{name}(distinct ...)` is not supported"),
                    Some("only count takes DISTINCT".into()),
                ))
            }
            ("sum" | "min" | "max" | "avg" | "first" | "last", _, true) => {
                return Err(err(
                    format!("`{name}(*)` is not meaningful"),
                    Some(format!(
                        "name a field: `{name}(temperature)`; count(*) counts records"
                    )),
                ))
            }
            _ => {
                return Err(err(
                    format!("unknown aggregate `{name}`"),
                    Some(format!("use one of: {NAMES}")),
                ))
            }
        };
        if func == Func::CountStar {
            return Ok(Aggregate {
                func,
                arg: None,
                float: false,
                output: Some(FieldType::I64),
            });
        }
        let arg = match args.as_slice() {
            [FunctionArg::Unnamed(FunctionArgExpr::Expr(x))] => x,
            _ => {
                return Err(err(
                    format!("`{name}` takes exactly one argument"),
                    Some(format!("for example `{name}(temperature)`")),
                ))
            }
        };
        let expr = Expr::compile_parsed(text, arg, schema)?;
        let ty = expr.output_type();
        let numeric = matches!(
            ty,
            Some(FieldType::I64 | FieldType::U64 | FieldType::F64) | None
        );
        if matches!(func, Func::Sum | Func::Avg) && !numeric {
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
            Func::Count | Func::CountDistinct | Func::CountStar => Some(FieldType::I64),
            Func::Avg => Some(FieldType::F64),
            Func::Sum if ty.is_none() => Some(FieldType::I64),
            _ => ty,
        };
        Ok(Aggregate {
            func,
            arg: Some(expr),
            float,
            output,
        })
    }

    /// The type of the aggregate's value (`None` when it is always NULL).
    pub fn output_type(&self) -> Option<FieldType> {
        self.output
    }

    /// A fresh accumulator.
    pub fn init(&self) -> Acc {
        match self.func {
            Func::CountStar | Func::Count => Acc::Count(0),
            Func::CountDistinct => Acc::Distinct(BTreeSet::new()),
            Func::Sum if self.float => Acc::SumFloat(Box::default(), 0),
            Func::Sum => Acc::SumInt(0, false),
            Func::Avg if self.float => Acc::SumFloat(Box::default(), 0),
            Func::Avg => Acc::AvgInt(0, 0),
            Func::Min | Func::Max => Acc::Extreme(None),
            Func::First | Func::Last => Acc::Pick(None),
        }
    }

    /// Adds one record (its values, event time and id) to `acc`.
    #[inline]
    pub fn update(&self, acc: &mut Acc, row: &[Value], ts: Micros, id: &Value) {
        let Some(arg) = &self.arg else {
            if let Acc::Count(n) = acc {
                *n += 1;
            }
            return;
        };
        let v = arg.eval(row);
        match acc {
            Acc::Pick(cur) => {
                let better = match cur {
                    None => true,
                    Some((t, i, x)) => {
                        let ord = (ts, id, &v).cmp(&(*t, &*i, &*x));
                        if self.func == Func::First {
                            ord.is_lt()
                        } else {
                            ord.is_gt()
                        }
                    }
                };
                if better {
                    *cur = Some((ts, id.clone(), v));
                }
            }
            _ if v == Value::Null => {}
            Acc::Count(n) => *n += 1,
            Acc::Distinct(set) => {
                if !set.contains(&v) {
                    set.insert(v);
                }
            }
            Acc::SumInt(s, any) => {
                *s += int(&v);
                *any = true;
            }
            Acc::AvgInt(s, n) => {
                *s += int(&v);
                *n += 1;
            }
            Acc::SumFloat(s, n) => {
                s.add(v.as_f64().unwrap_or(0.0));
                *n += 1;
            }
            Acc::Extreme(cur) => {
                let better = match cur {
                    None => true,
                    Some(x) if self.func == Func::Min => v < *x,
                    Some(x) => v > *x,
                };
                if better {
                    *cur = Some(v);
                }
            }
        }
    }

    /// The aggregate's value.
    pub fn finish(&self, acc: &Acc) -> Value {
        match acc {
            Acc::Count(n) => Value::I64(*n as i64),
            Acc::Distinct(set) => Value::I64(set.len() as i64),
            Acc::SumInt(_, false) => Value::Null,
            Acc::SumInt(s, true) => match self.output {
                Some(FieldType::U64) => u64::try_from(*s).map(Value::U64).unwrap_or(Value::Null),
                _ => i64::try_from(*s).map(Value::I64).unwrap_or(Value::Null),
            },
            Acc::SumFloat(_, 0) | Acc::AvgInt(_, 0) => Value::Null,
            Acc::SumFloat(s, n) if self.func == Func::Avg => Value::F64(s.value() / *n as f64),
            Acc::SumFloat(s, _) => Value::F64(s.value()),
            Acc::AvgInt(s, n) => Value::F64(*s as f64 / *n as f64),
            Acc::Extreme(v) => v.clone().unwrap_or(Value::Null),
            Acc::Pick(p) => p.as_ref().map(|(_, _, v)| v.clone()).unwrap_or(Value::Null),
        }
    }

    /// Adds the state `from` (of the same aggregate) into `into`, as if `into` had also seen
    /// every record `from` saw. Sliding and session windows combine partial states with it.
    pub fn merge(&self, into: &mut Acc, from: &Acc) {
        match (into, from) {
            (Acc::Count(a), Acc::Count(b)) => *a += b,
            (Acc::Distinct(a), Acc::Distinct(b)) => a.extend(b.iter().cloned()),
            (Acc::SumInt(a, x), Acc::SumInt(b, y)) => {
                *a += b;
                *x |= y;
            }
            (Acc::AvgInt(a, n), Acc::AvgInt(b, m)) => {
                *a += b;
                *n += m;
            }
            (Acc::SumFloat(a, n), Acc::SumFloat(b, m)) => {
                a.merge(b);
                *n += m;
            }
            (Acc::Extreme(a), Acc::Extreme(Some(b))) => {
                let better = match a {
                    None => true,
                    Some(x) if self.func == Func::Min => b < x,
                    Some(x) => b > x,
                };
                if better {
                    *a = Some(b.clone());
                }
            }
            (Acc::Pick(a), Acc::Pick(Some(b))) => {
                let better = match a {
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
                    *a = Some(b.clone());
                }
            }
            _ => {}
        }
    }

    /// How many values `acc` holds (its state size beyond a constant, for `count(distinct)`).
    pub fn size(acc: &Acc) -> usize {
        match acc {
            Acc::Distinct(s) => s.len(),
            _ => 0,
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
