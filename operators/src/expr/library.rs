//! SQL's function library, from DataFusion (`datafusion-functions`): string functions
//! (`substr`, `replace`, `split_part`, `starts_with`, `regexp_like`, `regexp_replace`, ...),
//! date and time functions (`date_trunc`, `date_part`, `to_timestamp`, ...), conditional
//! functions (`nullif`, `greatest`, `least`, ...) and math functions (`log10`, `sin`, `trunc`,
//! ...).
//!
//! Weir's compiler stays in charge of names, types and diagnostics: a call is typed at
//! validation with DataFusion's own signature coercion, its arguments are cast to the types the
//! signature asks for, and its result is cast to the nearest Weir type (`Int32` → `i64`,
//! `Timestamp(ns)` → `timestamp`, ...). A call is evaluated over whole columns; a batch whose
//! evaluation fails (a string that is not a timestamp, say) is evaluated again row by row, and
//! a row that fails is NULL, as everywhere in Weir's expressions. Weir's own functions (`abs`,
//! `round`, `lower`, `concat`, `coalesce`, ...) keep their names and semantics; functions whose
//! result depends on when the pipeline runs (`now`, `random`, ...) are refused.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arrow::array::{new_null_array, Array, ArrayRef};
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion_common::config::ConfigOptions;
use datafusion_common::ScalarValue;
use datafusion_expr::type_coercion::functions::fields_with_udf;
use datafusion_expr::{ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF};

use crate::chunk::{build_column, data_type};
use crate::value::{FieldType, Value};

/// Functions that are refused: their results depend on when or where the pipeline runs, so a
/// replay would not give the results of the live run.
pub(crate) const REFUSED: &[&str] = &[
    "now",
    "current_date",
    "current_time",
    "current_timestamp",
    "today",
    "random",
    "uuid",
];

struct Library {
    by_name: HashMap<String, Arc<ScalarUDF>>,
    names: Vec<String>,
}

fn library() -> &'static Library {
    static LIB: OnceLock<Library> = OnceLock::new();
    LIB.get_or_init(|| {
        let mut by_name = HashMap::new();
        for f in datafusion_functions::all_default_functions() {
            for n in std::iter::once(f.name().to_string()).chain(f.aliases().iter().cloned()) {
                if !REFUSED.contains(&n.as_str()) {
                    by_name.insert(n, Arc::clone(&f));
                }
            }
        }
        let mut names: Vec<String> = by_name.keys().cloned().collect();
        names.sort();
        Library { by_name, names }
    })
}

/// The library function called `name` (lowercase), if there is one.
pub(crate) fn lookup(name: &str) -> Option<Arc<ScalarUDF>> {
    library().by_name.get(name).cloned()
}

/// Every library function's name, sorted.
pub(crate) fn names() -> impl Iterator<Item = &'static str> {
    library().names.iter().map(String::as_str)
}

/// The Weir type of an Arrow type a function may return.
fn weir_type(t: &DataType) -> Option<FieldType> {
    Some(match t {
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => FieldType::I64,
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => FieldType::U64,
        DataType::Float16
        | DataType::Float32
        | DataType::Float64
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => FieldType::F64,
        DataType::Boolean => FieldType::Bool,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => FieldType::String,
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 => FieldType::Timestamp,
        _ => return None,
    })
}

/// DataFusion's type names in a signature, as Weir names them.
fn weir_names(s: &str) -> String {
    let mut s = s.to_string();
    for (from, to) in [
        ("LargeUtf8", "string"),
        ("Utf8View", "string"),
        ("Utf8", "string"),
        ("Int64", "i64"),
        ("Int32", "i64"),
        ("UInt64", "u64"),
        ("Float64", "f64"),
        ("Boolean", "bool"),
    ] {
        s = s.replace(from, to);
    }
    s
}

/// A typed call of a library function.
#[derive(Clone)]
pub(crate) struct Call {
    udf: Arc<ScalarUDF>,
    /// The types the arguments are cast to.
    arg_fields: Vec<FieldRef>,
    return_field: FieldRef,
    /// The Weir type of the result.
    pub(crate) out: FieldType,
    config: Arc<ConfigOptions>,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}(..) -> {}", self.udf.name(), self.out)
    }
}

/// An argument of a call being typed: its type, and its value when it is a constant.
pub(crate) struct Arg<'a> {
    pub(crate) ty: Option<FieldType>,
    pub(crate) value: Option<&'a Value>,
}

impl Call {
    /// Types a call of `udf` (called as `name`): the message and help of the error when its
    /// arguments do not fit.
    pub(crate) fn plan(
        name: &str,
        udf: Arc<ScalarUDF>,
        args: &[Arg],
    ) -> Result<Call, (String, Option<String>)> {
        let fields: Vec<FieldRef> = args
            .iter()
            .map(|a| {
                Arc::new(Field::new(
                    "arg",
                    a.ty.map(data_type).unwrap_or(DataType::Null),
                    true,
                ))
            })
            .collect();
        let usage = || {
            let doc = udf
                .documentation()
                .map(|d| d.syntax_example.clone())
                .unwrap_or_else(|| {
                    udf.signature()
                        .type_signature
                        .to_string_repr()
                        .iter()
                        .map(|s| format!("{name}({})", weir_names(s)))
                        .collect::<Vec<_>>()
                        .join(" or ")
                });
            Some(format!("it is called as {doc}"))
        };
        let given = args
            .iter()
            .map(|a| a.ty.map(|t| t.to_string()).unwrap_or_else(|| "NULL".into()))
            .collect::<Vec<_>>()
            .join(", ");
        let coerced = fields_with_udf(&fields, udf.as_ref())
            .map_err(|_| (format!("`{name}` does not take ({given})"), usage()))?;
        let scalars: Vec<Option<ScalarValue>> = args
            .iter()
            .zip(&coerced)
            .map(|(a, f)| a.value.and_then(|v| scalar(v, f.data_type())))
            .collect();
        let refs: Vec<Option<&ScalarValue>> = scalars.iter().map(Option::as_ref).collect();
        let return_field = udf
            .return_field_from_args(ReturnFieldArgs {
                arg_fields: &coerced,
                scalar_arguments: &refs,
            })
            .map_err(|_| (format!("`{name}` does not take ({given})"), usage()))?;
        let out = weir_type(return_field.data_type()).ok_or_else(|| {
            (
                format!(
                    "`{name}` returns {}, which Weir has no type for",
                    return_field.data_type()
                ),
                Some("Weir's types are i64, u64, f64, bool, string and timestamp".into()),
            )
        })?;
        Ok(Call {
            udf,
            arg_fields: coerced,
            return_field,
            out,
            config: Arc::new(ConfigOptions::default()),
        })
    }

    /// Checks the constant arguments whose mistakes would otherwise make every value NULL: a
    /// regular expression that does not parse, a time format chrono does not know, a date part
    /// the function does not know.
    pub(crate) fn check_constants(&self, args: &[Arg]) -> Result<(), (String, Option<String>)> {
        let name = self.udf.name();
        let text = |k: usize| match args.get(k).and_then(|a| a.value) {
            Some(Value::Str(s)) => Some(s.as_str()),
            _ => None,
        };
        if name.starts_with("regexp_") {
            if let Some(p) = text(1) {
                if let Err(e) = regex::Regex::new(p) {
                    let detail = e.to_string();
                    let last = detail.lines().last().unwrap_or("").trim().to_string();
                    return Err((
                        format!("`{p}` is not a regular expression `{name}` can use: {last}"),
                        Some(
                            "patterns use the syntax of the regex crate (https://docs.rs/regex)"
                                .into(),
                        ),
                    ));
                }
            }
        }
        if name.starts_with("to_timestamp") || name == "to_date" || name == "to_char" {
            for k in 1..args.len() {
                if let Some(f) = text(k) {
                    let bad = chrono::format::StrftimeItems::new(f)
                        .any(|i| matches!(i, chrono::format::Item::Error));
                    if bad {
                        return Err((
                            format!("`{f}` is not a time format `{name}` can use"),
                            Some(
                                "formats use chrono's strftime codes, e.g. '%Y-%m-%d %H:%M:%S'"
                                    .into(),
                            ),
                        ));
                    }
                }
            }
        }
        if matches!(name, "date_trunc" | "date_part") && args.len() == 2 {
            if let (Some(part), Some(FieldType::Timestamp)) = (text(0), args[1].ty) {
                let probe = [Err(Value::Str(part.into())), Err(Value::Ts(0))];
                if self.invoke(&probe, 1).is_none() {
                    return Err((
                        format!("`{part}` is not a part `{name}` knows"),
                        Some("parts are year, quarter, month, week, day, hour, minute, second, millisecond, microsecond (and, for date_part, dow, doy, epoch)".into()),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Evaluates the call over `rows` rows; `args` are columns of `rows` values or constants.
    /// A failure of the whole batch is retried row by row, and a row that fails is NULL.
    pub(crate) fn eval(&self, args: &[Result<ArrayRef, Value>], rows: usize) -> ArrayRef {
        let out = data_type(self.out);
        if rows == 0 {
            return new_null_array(&out, 0);
        }
        match self.invoke(args, rows) {
            Some(a) => a,
            None if rows == 1 => new_null_array(&out, 1),
            None => {
                let pieces: Vec<ArrayRef> = (0..rows)
                    .map(|r| {
                        let one: Vec<Result<ArrayRef, Value>> = args
                            .iter()
                            .map(|a| match a {
                                Ok(col) => Ok(col.slice(r, 1)),
                                Err(v) => Err(v.clone()),
                            })
                            .collect();
                        self.invoke(&one, 1)
                            .unwrap_or_else(|| new_null_array(&out, 1))
                    })
                    .collect();
                let refs: Vec<&dyn Array> = pieces.iter().map(|a| a.as_ref()).collect();
                arrow::compute::concat(&refs).unwrap_or_else(|_| new_null_array(&out, rows))
            }
        }
    }

    /// One evaluation; `None` when DataFusion or a cast reports an error.
    fn invoke(&self, args: &[Result<ArrayRef, Value>], rows: usize) -> Option<ArrayRef> {
        let mut values = Vec::with_capacity(args.len());
        for (a, f) in args.iter().zip(&self.arg_fields) {
            values.push(match a {
                Ok(col) if col.data_type() == f.data_type() => {
                    ColumnarValue::Array(Arc::clone(col))
                }
                Ok(col) => ColumnarValue::Array(arrow::compute::cast(col, f.data_type()).ok()?),
                Err(v) => ColumnarValue::Scalar(
                    scalar(v, f.data_type()).unwrap_or(ScalarValue::try_from(f.data_type()).ok()?),
                ),
            });
        }
        // A library function that panics on some input costs its value, not the run.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.udf.invoke_with_args(ScalarFunctionArgs {
                args: values,
                arg_fields: self.arg_fields.clone(),
                number_rows: rows,
                return_field: Arc::clone(&self.return_field),
                config_options: Arc::clone(&self.config),
            })
        }))
        .ok()?
        .ok()?;
        let array = result.into_array(rows).ok()?;
        let out = data_type(self.out);
        if array.data_type() == &out {
            Some(array)
        } else {
            arrow::compute::cast(&array, &out).ok()
        }
    }
}

/// A Weir constant as a DataFusion scalar of type `t` (`None` when it does not convert).
fn scalar(v: &Value, t: &DataType) -> Option<ScalarValue> {
    let Some(ft) = v.field_type() else {
        return ScalarValue::try_from(t).ok();
    };
    let col = build_column(ft, std::iter::once(v));
    let col = if col.data_type() == t {
        col
    } else {
        arrow::compute::cast(&col, t).ok()?
    };
    ScalarValue::try_from_array(&col, 0).ok()
}

#[cfg(test)]
mod tests {
    use crate::chunk::{arrow_schema, value_at, Chunk};
    use crate::expr::Expr;
    use crate::schema::{Field, Record, Schema};
    use crate::time::parse_rfc3339;
    use crate::value::{FieldType, Value};
    use smol_str::SmolStr;

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("s", FieldType::String),
            Field::new("t", FieldType::Timestamp),
            Field::new("i", FieldType::I64),
            Field::new("f", FieldType::F64),
            Field::new("csv", FieldType::String),
        ])
    }

    fn ts(text: &str) -> Value {
        Value::Ts(parse_rfc3339(text).unwrap())
    }

    /// Two rows: values, and NULL in every field.
    fn rows() -> Vec<Record> {
        vec![
            Record::new(vec![
                Value::Str(SmolStr::new("weir-dev")),
                ts("2024-03-05T10:42:17.5Z"),
                Value::I64(0),
                Value::F64(1000.0),
                Value::Str(SmolStr::new("a,b,c")),
            ]),
            Record::new(vec![Value::Null; 5]),
        ]
    }

    /// `text` over the two rows, by the row evaluator and over a batch: they must agree.
    fn eval(text: &str) -> (Value, Value) {
        let schema = schema();
        let e = Expr::compile(text, &schema).unwrap_or_else(|err| panic!("{text}: {err}"));
        let rs = rows();
        let chunk = Chunk::from_rows(&arrow_schema(&schema), &rs);
        let col = e.eval_batch(chunk.columns(), chunk.len(), FieldType::String);
        let by_rows: Vec<Value> = rs.iter().map(|r| e.eval(&r.values)).collect();
        for (k, v) in by_rows.iter().enumerate() {
            assert_eq!(&value_at(&col, k), v, "{text}: row {k}, batch against rows");
        }
        (by_rows[0].clone(), by_rows[1].clone())
    }

    fn s(v: &str) -> Value {
        Value::Str(SmolStr::new(v))
    }

    #[test]
    fn string_functions() {
        for (text, want) in [
            ("substr(s, 1, 4)", s("weir")),
            ("SUBSTRING(s FROM 6)", s("dev")),
            ("SUBSTRING(s FROM 2 FOR 3)", s("eir")),
            ("replace(s, '-', '_')", s("weir_dev")),
            ("split_part(csv, ',', 2)", s("b")),
            ("starts_with(s, 'weir')", Value::Bool(true)),
            ("ends_with(s, 'x')", Value::Bool(false)),
            ("regexp_like(s, '^w.*v$')", Value::Bool(true)),
            ("regexp_replace(s, '[aeiou]', '*', 'g')", s("w**r-d*v")),
            ("strpos(s, 'dev')", Value::I64(6)),
            ("reverse(s)", s("ved-riew")),
            ("lpad(s, 10, '.')", s("..weir-dev")),
            ("btrim('  x  ')", s("x")),
        ] {
            let (v, null) = eval(text);
            assert_eq!(v, want, "{text}");
            if !text.starts_with("btrim") {
                assert_eq!(null, Value::Null, "{text} of NULL");
            }
        }
    }

    #[test]
    fn date_and_time_functions() {
        for (text, want) in [
            ("date_trunc('hour', t)", ts("2024-03-05T10:00:00Z")),
            ("date_trunc('day', t)", ts("2024-03-05T00:00:00Z")),
            ("date_part('minute', t)", Value::I64(42)),
            ("EXTRACT(HOUR FROM t)", Value::I64(10)),
            ("EXTRACT(YEAR FROM t)", Value::I64(2024)),
            (
                "t + INTERVAL '1 hour 30 minutes'",
                ts("2024-03-05T12:12:17.5Z"),
            ),
            ("t - INTERVAL '5' MINUTE", ts("2024-03-05T10:37:17.5Z")),
            ("t + INTERVAL '250 ms'", ts("2024-03-05T10:42:17.75Z")),
        ] {
            let (v, null) = eval(text);
            assert_eq!(v, want, "{text}");
            assert_eq!(null, Value::Null, "{text} of NULL");
        }
        // A string that is not a timestamp is NULL, alone in its batch.
        let (v, null) = eval("to_timestamp(csv, '%Y-%m-%d %H:%M:%S')");
        assert_eq!((v, null), (Value::Null, Value::Null));
        let (v, _) = eval("to_timestamp('2024-03-05 10:42:17', '%Y-%m-%d %H:%M:%S')");
        assert_eq!(v, ts("2024-03-05T10:42:17Z"));
        let (v, _) = eval("date_trunc('minute', to_timestamp('2024-03-05 10:42:17', '%Y-%m-%d %H:%M:%S')) = TIMESTAMP '2024-03-05T10:42:00Z'");
        assert_eq!(v, Value::Bool(true));
    }

    #[test]
    fn conditional_and_math_functions() {
        for (text, want, of_null) in [
            ("nullif(i, 0)", Value::Null, Value::Null),
            ("nullif(f, 0)", Value::F64(1000.0), Value::Null),
            ("greatest(i, 3, 2)", Value::I64(3), Value::I64(3)),
            ("least(f, 5.5)", Value::F64(5.5), Value::F64(5.5)),
            ("log10(f)", Value::F64(3.0), Value::Null),
            ("trunc(f / 7)", Value::F64(142.0), Value::Null),
            ("signum(-f)", Value::F64(-1.0), Value::Null),
            (
                "CASE WHEN log10(f) > 2 THEN 'big' ELSE 'small' END",
                s("big"),
                s("small"),
            ),
        ] {
            let (v, null) = eval(text);
            assert_eq!(v, want, "{text}");
            assert_eq!(null, of_null, "{text} of NULL");
        }
    }

    #[test]
    fn hostile_arguments_are_null_not_a_crash() {
        for text in [
            "repeat(s, 9223372036854775807)",
            "lpad(s, 9223372036854775807, 'x')",
        ] {
            let (v, null) = eval(text);
            assert_eq!((v, null), (Value::Null, Value::Null), "{text}");
        }
    }

    fn err(text: &str) -> crate::expr::ExprError {
        Expr::compile(text, &schema()).expect_err(text)
    }

    #[test]
    fn diagnostics_name_the_call() {
        let e = err("substrr(s, 1, 2)");
        assert_eq!(e.message, "unknown function `substrr`");
        assert_eq!(e.help.as_deref(), Some("did you mean `substr`?"));
        assert_eq!(e.span.start, 0);
        let e = err("upper(s) || substr(i)");
        assert_eq!(e.message, "`substr` does not take (i64)");
        assert!(e.help.unwrap().starts_with("it is called as substr("));
        assert_eq!(e.span.start, 12);
        let e = err("regexp_like(s)");
        assert_eq!(e.message, "`regexp_like` does not take (string)");
        let e = err("regexp_like(s, '(')");
        assert!(
            e.message
                .starts_with("`(` is not a regular expression `regexp_like` can use"),
            "{}",
            e.message
        );
        let e = err("to_timestamp(s, '%Q')");
        assert_eq!(
            e.message,
            "`%Q` is not a time format `to_timestamp` can use"
        );
        let e = err("date_trunc('fortnight', t)");
        assert_eq!(e.message, "`fortnight` is not a part `date_trunc` knows");
        let e = err("EXTRACT(HOUR FROM t) + date_part('decade_and_a_bit', t)");
        assert_eq!(
            e.message,
            "`decade_and_a_bit` is not a part `date_part` knows"
        );
        let e = err("now() > t");
        assert_eq!(e.message, "`now` is not available in Weir expressions");
        let e = err("t + INTERVAL '1 month'");
        assert_eq!(e.message, "`month` has no fixed length in microseconds");
        let e = err("i + INTERVAL '1 hour'");
        assert_eq!(
            e.message,
            "an interval is added to a timestamp, but this is i64"
        );
    }
}
