//! Vectorized evaluation: a compiled expression over whole Arrow columns.
//!
//! The hot node kinds — fields, constants, `AND`/`OR`/`NOT`, `IS [NOT] NULL`, comparisons,
//! arithmetic, negation and numeric casts to `f64` — run column at a time (Arrow kernels where
//! their semantics are SQL's and Weir's, tight loops where Weir's differ: a float comparison
//! with NaN is NULL and `-0.0 = 0.0`; integer overflow and division by zero are NULL). Any other
//! node is evaluated row by row inside the batch with the row evaluator, so a batch's result is
//! always exactly the rows' results (a property test checks this for every node kind).
//!
//! ```
//! use std::sync::Arc;
//! use arrow::array::{ArrayRef, AsArray, Float64Array};
//! use weir_operators::expr::Expr;
//! use weir_operators::schema::{Field, Schema};
//! use weir_operators::value::FieldType;
//!
//! let schema = Schema::new(vec![Field::new("t", FieldType::F64)]);
//! let e = Expr::compile("t * 2 > 30", &schema).unwrap();
//! let t: ArrayRef = Arc::new(Float64Array::from(vec![Some(10.0), Some(20.0), None]));
//! let mask = e.eval_mask(&[t], 3);
//! assert_eq!(mask.iter().collect::<Vec<_>>(), vec![Some(false), Some(true), None]);
//! ```

use std::sync::Arc;

use arrow::array::{
    new_null_array, Array, ArrayRef, AsArray, BooleanArray, Datum, Float64Array, Int64Array,
    Scalar, StringArray, UInt64Array,
};
use arrow::buffer::{BooleanBuffer, NullBuffer};
use arrow::compute::kernels::cmp;
use arrow::datatypes::{DataType, Float64Type, Int64Type, UInt64Type};

use super::{checked_i64, checked_u64, eval, ArithOp, CmpKind, CmpOp, Expr, Node, Num};
use crate::chunk::{build_column, data_type, value_at};
use crate::value::{FieldType, Value};

/// A node's result over a batch: a column, or one value for every row.
enum Col {
    Array(ArrayRef),
    Const(Value),
}

impl Expr {
    /// Evaluates the expression over a batch of `rows` records given as field columns; the
    /// result has the expression's type (a NULL-typed expression gives a column of `null_as`).
    pub fn eval_batch(&self, columns: &[ArrayRef], rows: usize, null_as: FieldType) -> ArrayRef {
        let t = self.ty.unwrap_or(null_as);
        match eval_col(&self.node, columns, rows) {
            Col::Array(a) if a.data_type() == &data_type(t) => a,
            Col::Array(a) if a.null_count() == a.len() => new_null_array(&data_type(t), rows),
            Col::Array(a) => {
                // A field read under another type cannot happen after typing; keep the values.
                arrow::compute::cast(&a, &data_type(t))
                    .unwrap_or_else(|_| new_null_array(&data_type(t), rows))
            }
            Col::Const(v) => build_column(t, std::iter::repeat_n(&v, rows)),
        }
    }

    /// Evaluates a boolean expression over a batch: TRUE, FALSE or NULL per record.
    pub fn eval_mask(&self, columns: &[ArrayRef], rows: usize) -> BooleanArray {
        bools(eval_col(&self.node, columns, rows), rows)
    }
}

fn bools(c: Col, rows: usize) -> BooleanArray {
    match c {
        Col::Const(v) => BooleanArray::from(vec![v.as_bool(); rows]),
        Col::Array(a) => match a.data_type() {
            DataType::Boolean => a.as_boolean().clone(),
            _ => BooleanArray::new_null(rows),
        },
    }
}

fn eval_col(n: &Node, cols: &[ArrayRef], rows: usize) -> Col {
    match n {
        Node::Field(i) => Col::Array(Arc::clone(&cols[*i])),
        Node::Const(v) => Col::Const(v.clone()),
        Node::Not(x) => match eval_col(x, cols, rows) {
            Col::Const(v) => Col::Const(v.as_bool().map(|b| Value::Bool(!b)).unwrap_or_default()),
            c => Col::Array(Arc::new(
                arrow::compute::not(&bools(c, rows)).expect("a boolean column"),
            )),
        },
        Node::And(a, b) | Node::Or(a, b) => {
            let (x, y) = (
                bools(eval_col(a, cols, rows), rows),
                bools(eval_col(b, cols, rows), rows),
            );
            let r = if matches!(n, Node::And(..)) {
                arrow::compute::and_kleene(&x, &y)
            } else {
                arrow::compute::or_kleene(&x, &y)
            };
            Col::Array(Arc::new(r.expect("equal lengths")))
        }
        Node::IsNull(x, negated) => match eval_col(x, cols, rows) {
            Col::Const(v) => Col::Const(Value::Bool(v.is_null() != *negated)),
            Col::Array(a) => Col::Array(Arc::new(
                if *negated {
                    arrow::compute::is_not_null(&a)
                } else {
                    arrow::compute::is_null(&a)
                }
                .expect("any column"),
            )),
        },
        Node::Cmp(op, kind, a, b) => {
            let (x, y) = (eval_col(a, cols, rows), eval_col(b, cols, rows));
            if let (Col::Const(_), Col::Const(_)) = (&x, &y) {
                return Col::Const(eval(n, &[]));
            }
            if let (CmpOp::Eq | CmpOp::Ne, Some((a, s))) = (op, str_and_const(&x, &y)) {
                return Col::Array(Arc::new(str_eq_const(a, s, *op == CmpOp::Ne)));
            }
            match kind {
                CmpKind::Num(Num::F64) => match (f64s(&x), f64s(&y)) {
                    (Some(x), Some(y)) => Col::Array(Arc::new(cmp_f64(*op, &x, &y, rows))),
                    _ => rowwise(n, cols, rows),
                },
                _ => match (datum(&x), datum(&y)) {
                    (Some(dx), Some(dy))
                        if dx.data_type() == dy.data_type()
                            && !matches!(dx.data_type(), DataType::Float64 | DataType::Null) =>
                    {
                        let (l, r) = (dx.datum(), dy.datum());
                        let r = match op {
                            CmpOp::Eq => cmp::eq(l, r),
                            CmpOp::Ne => cmp::neq(l, r),
                            CmpOp::Lt => cmp::lt(l, r),
                            CmpOp::Le => cmp::lt_eq(l, r),
                            CmpOp::Gt => cmp::gt(l, r),
                            CmpOp::Ge => cmp::gt_eq(l, r),
                        };
                        Col::Array(Arc::new(r.expect("comparable columns")))
                    }
                    _ => rowwise(n, cols, rows),
                },
            }
        }
        Node::Arith(op, num, a, b) => {
            let (x, y) = (eval_col(a, cols, rows), eval_col(b, cols, rows));
            if let (Col::Const(_), Col::Const(_)) = (&x, &y) {
                return Col::Const(eval(n, &[]));
            }
            match num {
                Num::F64 => match (f64s(&x), f64s(&y)) {
                    (Some(x), Some(y)) => Col::Array(Arc::new(arith_f64(*op, &x, &y, rows))),
                    _ => rowwise(n, cols, rows),
                },
                Num::I64 => match (ints::<Int64Type>(&x), ints::<Int64Type>(&y)) {
                    (Some(x), Some(y)) => {
                        let r: Int64Array = (0..rows)
                            .map(|i| checked_i64(*op, x.get(i)?, y.get(i)?))
                            .collect();
                        Col::Array(Arc::new(r))
                    }
                    _ => rowwise(n, cols, rows),
                },
                Num::U64 => match (ints::<UInt64Type>(&x), ints::<UInt64Type>(&y)) {
                    (Some(x), Some(y)) => {
                        let r: UInt64Array = (0..rows)
                            .map(|i| checked_u64(*op, x.get(i)?, y.get(i)?))
                            .collect();
                        Col::Array(Arc::new(r))
                    }
                    _ => rowwise(n, cols, rows),
                },
            }
        }
        Node::Neg(Num::F64, x) => match eval_col(x, cols, rows) {
            Col::Const(_) => Col::Const(eval(n, &[])),
            Col::Array(a) if a.data_type() == &DataType::Float64 => {
                let r: Float64Array = a.as_primitive::<Float64Type>().unary(|v| -v);
                Col::Array(Arc::new(r))
            }
            _ => rowwise(n, cols, rows),
        },
        Node::Cast(x, FieldType::F64) => match eval_col(x, cols, rows) {
            Col::Const(_) => Col::Const(eval(n, &[])),
            Col::Array(a)
                if matches!(
                    a.data_type(),
                    DataType::Int64 | DataType::UInt64 | DataType::Float64
                ) =>
            {
                Col::Array(arrow::compute::cast(&a, &DataType::Float64).expect("numeric to f64"))
            }
            _ => rowwise(n, cols, rows),
        },
        Node::Lib(call, args) => {
            let values: Vec<Result<ArrayRef, Value>> = args
                .iter()
                .map(|a| match eval_col(a, cols, rows) {
                    Col::Array(x) => Ok(x),
                    Col::Const(v) => Err(v),
                })
                .collect();
            Col::Array(call.eval(&values, rows))
        }
        _ => rowwise(n, cols, rows),
    }
}

/// A string column and a string constant, in either order.
fn str_and_const<'a>(x: &'a Col, y: &'a Col) -> Option<(&'a StringArray, &'a str)> {
    match (x, y) {
        (Col::Array(a), Col::Const(Value::Str(s))) | (Col::Const(Value::Str(s)), Col::Array(a)) => {
            Some((a.as_string_opt::<i32>()?, s.as_str()))
        }
        _ => None,
    }
}

/// `a = s` (or, with `ne`, `a <> s`) per row, NULL where `a` is: byte equality, the lengths
/// compared first (the common case of a string column against a literal, without building an
/// Arrow scalar for it). A literal of up to 8 bytes is compared as one masked 64-bit word.
fn str_eq_const(a: &StringArray, s: &str, ne: bool) -> BooleanArray {
    let offsets = a.value_offsets();
    let bytes = a.value_data();
    let needle = s.as_bytes();
    let n = needle.len();
    let word = |b: &[u8]| -> u64 {
        let mut w = [0u8; 8];
        w[..b.len()].copy_from_slice(b);
        u64::from_le_bytes(w)
    };
    let want = if n <= 8 { word(needle) } else { 0 };
    // The bytes of a word that hold the literal.
    let mask = match n {
        0 => 0,
        1..=7 => (1u64 << (8 * n)) - 1,
        _ => u64::MAX,
    };
    let equal = |start: usize, end: usize| -> bool {
        if end - start != n {
            return false;
        }
        match bytes.get(start..start + 8) {
            Some(w) if n <= 8 => {
                let w = u64::from_le_bytes(w.try_into().expect("8 bytes"));
                (w ^ want) & mask == 0
            }
            _ => bytes[start..end] == *needle,
        }
    };
    let flip = if ne { u64::MAX } else { 0 };
    let len = a.len();
    let mut words = Vec::with_capacity(len.div_ceil(64));
    let (mut w, mut bit) = (0u64, 0);
    for (&start, &end) in offsets.iter().zip(&offsets[1..]) {
        w |= (equal(start as usize, end as usize) as u64) << bit;
        bit += 1;
        if bit == 64 {
            words.push(w ^ flip);
            (w, bit) = (0, 0);
        }
    }
    if bit > 0 {
        words.push((w ^ flip) & (u64::MAX >> (64 - bit)));
    }
    BooleanArray::new(
        BooleanBuffer::new(arrow::buffer::Buffer::from_vec(words), 0, len),
        a.nulls().cloned(),
    )
}

/// A column or a constant as an Arrow datum (a constant as a one-element scalar).
enum D {
    A(ArrayRef),
    S(Scalar<ArrayRef>),
}

impl D {
    fn data_type(&self) -> &DataType {
        match self {
            D::A(a) => a.data_type(),
            D::S(s) => s.get().0.data_type(),
        }
    }
    fn datum(&self) -> &dyn Datum {
        match self {
            D::A(a) => a,
            D::S(s) => s,
        }
    }
}

fn datum(c: &Col) -> Option<D> {
    match c {
        Col::Array(a) => Some(D::A(Arc::clone(a))),
        Col::Const(v) => {
            let t = v.field_type()?;
            Some(D::S(Scalar::new(build_column(t, std::iter::once(v)))))
        }
    }
}

/// Float operands: a column of any numeric type (converted as `Value::as_f64` does), or a
/// constant.
enum F64s {
    Array(Float64Array),
    Const(Option<f64>),
}

fn f64s(c: &Col) -> Option<F64s> {
    match c {
        Col::Const(v) => Some(F64s::Const(if v.is_null() {
            None
        } else {
            Some(v.as_f64()?)
        })),
        Col::Array(a) => match a.data_type() {
            DataType::Float64 => Some(F64s::Array(a.as_primitive::<Float64Type>().clone())),
            DataType::Int64 | DataType::UInt64 => Some(F64s::Array(
                arrow::compute::cast(a, &DataType::Float64)
                    .expect("numeric to f64")
                    .as_primitive::<Float64Type>()
                    .clone(),
            )),
            _ => None,
        },
    }
}

/// Integer operands of exactly one Arrow type (no conversion), or a constant of that type.
enum Ints<T: arrow::datatypes::ArrowPrimitiveType> {
    Array(arrow::array::PrimitiveArray<T>),
    Const(Option<T::Native>),
}

impl<T: arrow::datatypes::ArrowPrimitiveType> Ints<T> {
    #[inline]
    fn get(&self, i: usize) -> Option<T::Native> {
        match self {
            Ints::Array(a) => a.is_valid(i).then(|| a.value(i)),
            Ints::Const(v) => *v,
        }
    }
}

trait FromValue: arrow::datatypes::ArrowPrimitiveType {
    fn from_value(v: &Value) -> Option<Option<Self::Native>>;
}
impl FromValue for Int64Type {
    fn from_value(v: &Value) -> Option<Option<i64>> {
        match v {
            Value::Null => Some(None),
            Value::I64(x) => Some(Some(*x)),
            _ => None,
        }
    }
}
impl FromValue for UInt64Type {
    fn from_value(v: &Value) -> Option<Option<u64>> {
        match v {
            Value::Null => Some(None),
            Value::U64(x) => Some(Some(*x)),
            _ => None,
        }
    }
}

fn ints<T: FromValue>(c: &Col) -> Option<Ints<T>> {
    match c {
        Col::Const(v) => Some(Ints::Const(T::from_value(v)?)),
        Col::Array(a) if a.data_type() == &T::DATA_TYPE => {
            Some(Ints::Array(a.as_primitive::<T>().clone()))
        }
        Col::Array(_) => None,
    }
}

/// The values and validity of a float operand, for the loops below.
fn parts(x: &F64s) -> (Option<&[f64]>, f64, Option<&NullBuffer>) {
    match x {
        F64s::Array(a) => (Some(a.values().as_ref()), 0.0, a.nulls()),
        F64s::Const(v) => (None, v.unwrap_or(0.0), None),
    }
}

/// Rows where both operands are present and `extra` holds of their values.
fn valid_rows(
    x: &F64s,
    y: &F64s,
    rows: usize,
    extra: impl Fn(f64, f64) -> bool,
) -> Option<NullBuffer> {
    if matches!(x, F64s::Const(None)) || matches!(y, F64s::Const(None)) {
        return Some(NullBuffer::new_null(rows));
    }
    let ((xv, xc, xn), (yv, yc, yn)) = (parts(x), parts(y));
    let ok = match (xv, yv) {
        (Some(a), Some(b)) => BooleanBuffer::collect_bool(rows, |i| extra(a[i], b[i])),
        (Some(a), None) => BooleanBuffer::collect_bool(rows, |i| extra(a[i], yc)),
        (None, Some(b)) => BooleanBuffer::collect_bool(rows, |i| extra(xc, b[i])),
        (None, None) => BooleanBuffer::collect_bool(rows, |_| extra(xc, yc)),
    };
    let mut valid = ok;
    if let Some(n) = NullBuffer::union(xn, yn) {
        valid = &valid & n.inner();
    }
    Some(NullBuffer::new(valid))
}

/// Whether an operand holds a NaN (one pass the compiler vectorizes, no early exit).
fn has_nan(x: &F64s) -> bool {
    match x {
        F64s::Array(a) => a.values().iter().fold(false, |m, v| m | v.is_nan()),
        F64s::Const(v) => v.is_some_and(f64::is_nan),
    }
}

/// The rows where both operands are present.
fn both_present(x: &F64s, y: &F64s, rows: usize) -> Option<NullBuffer> {
    if matches!(x, F64s::Const(None)) || matches!(y, F64s::Const(None)) {
        return Some(NullBuffer::new_null(rows));
    }
    NullBuffer::union(parts(x).2, parts(y).2)
}

/// A float comparison: NULL when an operand is NULL or NaN; `-0.0 = 0.0` (IEEE comparison, as
/// the row evaluator's `partial_cmp`).
fn cmp_f64(op: CmpOp, x: &F64s, y: &F64s, rows: usize) -> BooleanArray {
    let nulls = if has_nan(x) || has_nan(y) {
        valid_rows(x, y, rows, |a, b| !a.is_nan() && !b.is_nan())
    } else {
        both_present(x, y, rows)
    };
    let ((xv, xc, _), (yv, yc, _)) = (parts(x), parts(y));
    fn bits(
        op: CmpOp,
        rows: usize,
        l: impl Fn(usize) -> f64,
        r: impl Fn(usize) -> f64,
    ) -> BooleanBuffer {
        match op {
            CmpOp::Eq => BooleanBuffer::collect_bool(rows, |i| l(i) == r(i)),
            CmpOp::Ne => BooleanBuffer::collect_bool(rows, |i| l(i) != r(i)),
            CmpOp::Lt => BooleanBuffer::collect_bool(rows, |i| l(i) < r(i)),
            CmpOp::Le => BooleanBuffer::collect_bool(rows, |i| l(i) <= r(i)),
            CmpOp::Gt => BooleanBuffer::collect_bool(rows, |i| l(i) > r(i)),
            CmpOp::Ge => BooleanBuffer::collect_bool(rows, |i| l(i) >= r(i)),
        }
    }
    let values = match (xv, yv) {
        (Some(a), Some(b)) => bits(op, rows, |i| a[i], |i| b[i]),
        (Some(a), None) => bits(op, rows, |i| a[i], |_| yc),
        (None, Some(b)) => bits(op, rows, |_| xc, |i| b[i]),
        (None, None) => bits(op, rows, |_| xc, |_| yc),
    };
    BooleanArray::new(values, nulls)
}

/// Float arithmetic: NULL when an operand is NULL, and for division or remainder by zero.
fn arith_f64(op: ArithOp, x: &F64s, y: &F64s, rows: usize) -> Float64Array {
    let nulls = if matches!(op, ArithOp::Div | ArithOp::Rem) {
        valid_rows(x, y, rows, |_, b| b != 0.0)
    } else {
        both_present(x, y, rows)
    };
    let ((xv, xc, _), (yv, yc, _)) = (parts(x), parts(y));
    fn compute(
        op: ArithOp,
        rows: usize,
        l: impl Fn(usize) -> f64,
        r: impl Fn(usize) -> f64,
    ) -> Vec<f64> {
        match op {
            ArithOp::Add => (0..rows).map(|i| l(i) + r(i)).collect(),
            ArithOp::Sub => (0..rows).map(|i| l(i) - r(i)).collect(),
            ArithOp::Mul => (0..rows).map(|i| l(i) * r(i)).collect(),
            ArithOp::Div => (0..rows).map(|i| l(i) / r(i)).collect(),
            ArithOp::Rem => (0..rows).map(|i| l(i) % r(i)).collect(),
        }
    }
    let values = match (xv, yv) {
        (Some(a), Some(b)) => compute(op, rows, |i| a[i], |i| b[i]),
        (Some(a), None) => compute(op, rows, |i| a[i], |_| yc),
        (None, Some(b)) => compute(op, rows, |_| xc, |i| b[i]),
        (None, None) => compute(op, rows, |_| xc, |_| yc),
    };
    Float64Array::new(values.into(), nulls)
}

/// Evaluates `n` row by row with the row evaluator, reading only the fields it uses.
fn rowwise(n: &Node, cols: &[ArrayRef], rows: usize) -> Col {
    let mut used = Vec::new();
    fields_of(n, &mut used);
    used.sort_unstable();
    used.dedup();
    let mut row = vec![Value::Null; cols.len()];
    let mut out = Vec::with_capacity(rows);
    for r in 0..rows {
        for &f in &used {
            row[f] = value_at(&cols[f], r);
        }
        out.push(eval(n, &row));
    }
    match out.iter().find_map(Value::field_type) {
        Some(t) => Col::Array(build_column(t, out.iter())),
        None => Col::Array(new_null_array(&DataType::Null, rows)),
    }
}

pub(super) fn fields_of(n: &Node, out: &mut Vec<usize>) {
    match n {
        Node::Field(i) => out.push(*i),
        Node::Const(_) => {}
        Node::Not(x) | Node::IsNull(x, _) | Node::Neg(_, x) | Node::Cast(x, _) => fields_of(x, out),
        Node::Shift(x, _) => fields_of(x, out),
        Node::Lib(_, xs) => xs.iter().for_each(|x| fields_of(x, out)),
        Node::Like(x, _, _) => fields_of(x, out),
        Node::And(a, b)
        | Node::Or(a, b)
        | Node::Cmp(_, _, a, b)
        | Node::Arith(_, _, a, b)
        | Node::TsDiff(a, b)
        | Node::Index(a, b) => {
            fields_of(a, out);
            fields_of(b, out);
        }
        Node::Concat(xs) | Node::Func(_, xs) | Node::Coalesce(xs) => {
            xs.iter().for_each(|x| fields_of(x, out))
        }
        Node::InList(x, items, _) => {
            fields_of(x, out);
            items.iter().for_each(|(_, i)| fields_of(i, out));
        }
        Node::Case(whens, otherwise) => {
            for (c, r) in whens {
                fields_of(c, out);
                fields_of(r, out);
            }
            fields_of(otherwise, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::{arrow_schema, Chunk};
    use crate::schema::{Field, Record, Schema};
    use smol_str::SmolStr;

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("i", FieldType::I64),
            Field::new("j", FieldType::I64),
            Field::new("u", FieldType::U64),
            Field::new("f", FieldType::F64),
            Field::new("g", FieldType::F64),
            Field::new("b", FieldType::Bool),
            Field::new("s", FieldType::String),
            Field::new("t", FieldType::Timestamp),
        ])
    }

    fn rows(n: usize) -> Vec<Record> {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let specials = [0.0, -0.0, f64::NAN, f64::INFINITY, 1.5, -2.0, 1e300];
        (0..n)
            .map(|_| {
                let r = next();
                let null = |bit: u64| r >> bit & 7 == 0;
                let v = |bit, v: Value| if null(bit) { Value::Null } else { v };
                Record::new(vec![
                    v(
                        0,
                        Value::I64(match r % 9 {
                            0 => i64::MAX,
                            1 => i64::MIN,
                            k => k as i64 - 4,
                        }),
                    ),
                    v(3, Value::I64((r >> 20) as i64 % 5 - 2)),
                    v(6, Value::U64(if r % 7 == 0 { u64::MAX } else { r % 6 })),
                    v(9, Value::F64(specials[(r >> 24) as usize % specials.len()])),
                    v(12, Value::F64((r >> 32) as f64 % 7.0 - 3.0)),
                    v(15, Value::Bool(r & 2 == 0)),
                    v(
                        18,
                        Value::Str(SmolStr::new(
                            [
                                "a",
                                "b",
                                "ab",
                                "",
                                "a%",
                                "reading",
                                "abcdefgh",
                                "abcdefghi",
                                "sensor_fault",
                                "é",
                            ][(r >> 40) as usize % 10],
                        )),
                    ),
                    v(21, Value::Ts((r % 5) as i64 * 1_000_000)),
                ])
            })
            .collect()
    }

    /// Every node kind, vectorized or not, gives exactly the row evaluator's result.
    #[test]
    fn batches_equal_rows() {
        let schema = schema();
        let rs = rows(2000);
        let chunk = Chunk::from_rows(&arrow_schema(&schema), &rs);
        let exprs = [
            "i",
            "f",
            "42",
            "NULL",
            "TRUE",
            "NOT b",
            "b AND i > 0",
            "b OR f < 1",
            "NOT (b AND NULL)",
            "b OR NULL",
            "i IS NULL",
            "s IS NOT NULL",
            "NULL IS NULL",
            "i = j",
            "i <> j",
            "i < 2",
            "2 <= i",
            "u > 3",
            "u >= i",
            "f = g",
            "f < g",
            "f > 0",
            "g > 0",
            "g * 2 <= 1",
            "g - 1 = g",
            "f = 0",
            "f <> f",
            "i > f",
            "u < f",
            "s = 'a'",
            "s < 'ab'",
            "s = 'reading'",
            "'sensor_fault' <> s",
            "s = ''",
            "s <> ''",
            "s = 'abcdefgh'",
            "s = 'abcdefghi'",
            "s = 'é'",
            "t > '1970-01-01T00:00:02Z'",
            "b = TRUE",
            "t = t",
            "i + j",
            "i - j",
            "i * j",
            "i / j",
            "i % j",
            "u + 1",
            "u * u",
            "u - 3",
            "u / 0",
            "f + g",
            "f - i",
            "f * 2",
            "f / g",
            "f % g",
            "i / 0",
            "f / 0",
            "-f",
            "-i",
            "-u",
            "CAST(i AS DOUBLE)",
            "CAST(u AS DOUBLE)",
            "CAST(s AS BIGINT)",
            "CAST(f AS BIGINT)",
            "CAST(t AS VARCHAR)",
            "concat(s, i, f)",
            "i IN (1, 2, NULL)",
            "s NOT IN ('a', 'b')",
            "s LIKE 'a%'",
            "CASE WHEN i > 0 THEN 'pos' WHEN i < 0 THEN 'neg' ELSE NULL END",
            "coalesce(i, j, 0)",
            "abs(i)",
            "round(f, 1)",
            "sqrt(f)",
            "upper(s)",
            "length(s)",
            "i BETWEEN -1 AND 1",
            "(f + g) * 2 > i AND NOT s = 'b'",
            "1 + 2 * 3",
            "f > NULL",
        ];
        for text in exprs {
            let e = Expr::compile(text, &schema).unwrap_or_else(|err| panic!("{text}: {err}"));
            let t = e.output_type().unwrap_or(FieldType::I64);
            let col = e.eval_batch(chunk.columns(), chunk.len(), FieldType::I64);
            assert_eq!(col.data_type(), &data_type(t), "{text}");
            for (k, r) in rs.iter().enumerate() {
                let want = e.eval(&r.values);
                let got = value_at(&col, k);
                let same = match (&want, &got) {
                    (Value::F64(a), Value::F64(b)) => {
                        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
                    }
                    _ => want == got && want.field_type() == got.field_type(),
                };
                assert!(
                    same,
                    "{text} on {:?}: rows say {want:?}, batch says {got:?}",
                    r.values
                );
            }
            if t == FieldType::Bool {
                let mask = e.eval_mask(chunk.columns(), chunk.len());
                for (k, r) in rs.iter().enumerate() {
                    assert_eq!(
                        mask.is_valid(k).then(|| mask.value(k)),
                        e.eval_bool(&r.values),
                        "{text}"
                    );
                }
                // Over a slice of the columns (not starting at their first row) too.
                let (from, len) = (3, 1_500);
                let sliced: Vec<ArrayRef> =
                    chunk.columns().iter().map(|c| c.slice(from, len)).collect();
                let mask = e.eval_mask(&sliced, len);
                for (k, r) in rs[from..from + len].iter().enumerate() {
                    assert_eq!(
                        mask.is_valid(k).then(|| mask.value(k)),
                        e.eval_bool(&r.values),
                        "{text}, sliced"
                    );
                }
            }
        }
    }

    /// The string-literal comparison at the end of a column's bytes (fewer than 8 left), on
    /// NULLs, and for literals of 0, 8 and more bytes.
    #[test]
    fn string_literal_comparisons() {
        let a = StringArray::from(vec![
            Some("x"),
            None,
            Some(""),
            Some("abcdefgh"),
            Some("abcdefghi"),
            Some("reading"),
        ]);
        let got = |s: &str, ne: bool| str_eq_const(&a, s, ne).iter().collect::<Vec<_>>();
        let (t, f) = (Some(true), Some(false));
        assert_eq!(got("reading", false), [f, None, f, f, f, t]);
        assert_eq!(got("reading", true), [t, None, t, t, t, f]);
        assert_eq!(got("", false), [f, None, t, f, f, f]);
        assert_eq!(got("abcdefgh", false), [f, None, f, t, f, f]);
        assert_eq!(got("abcdefghi", false), [f, None, f, f, t, f]);
        assert_eq!(got("readinG", false), [f, None, f, f, f, f]);
        let many = StringArray::from(vec!["reading"; 130]);
        let eq = str_eq_const(&many, "reading", false);
        assert_eq!(eq.true_count(), 130);
        assert_eq!(str_eq_const(&many, "reading", true).true_count(), 0);
    }

    #[test]
    fn empty_and_single_record_batches() {
        let schema = schema();
        let e = Expr::compile("f * 2 + i > 3 OR s LIKE 'a%'", &schema).unwrap();
        for n in [0, 1] {
            let rs = rows(n);
            let chunk = Chunk::from_rows(&arrow_schema(&schema), &rs);
            let mask = e.eval_mask(chunk.columns(), n);
            assert_eq!(mask.len(), n);
            for (k, r) in rs.iter().enumerate() {
                assert_eq!(
                    mask.is_valid(k).then(|| mask.value(k)),
                    e.eval_bool(&r.values)
                );
            }
        }
    }
}
