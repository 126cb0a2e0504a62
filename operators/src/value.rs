//! Field values and field types: the cells of Weir's records.
//!
//! A [`Value`] is one typed field of one event. Strings are [`SmolStr`], which keeps strings of up
//! to 23 bytes inline and shares longer ones, so copying a value never allocates. Timestamps are
//! microseconds since the Unix epoch, UTC.
//!
//! ```
//! use weir_operators::value::{FieldType, Value};
//!
//! let v = Value::F64(21.5);
//! assert_eq!(v.field_type(), Some(FieldType::F64));
//! assert!(Value::Null.is_null());
//! assert_eq!(FieldType::parse("timestamp"), Some(FieldType::Timestamp));
//! ```

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

pub use crate::time::Micros;

/// The type of a field, as named in a pipeline's `schema`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FieldType {
    /// Signed 64-bit integer (`i64`).
    I64,
    /// Unsigned 64-bit integer (`u64`).
    U64,
    /// 64-bit float (`f64`).
    F64,
    /// Boolean (`bool`).
    Bool,
    /// UTF-8 string (`string`).
    String,
    /// Point in time with microsecond precision (`timestamp`).
    Timestamp,
    /// A JSON value kept as its compact JSON text (`json`): a sub-object, array or anything else
    /// a producer sends whose shape varies. Read from it with `json_get` and friends; a JSON
    /// sink writes it back as JSON, not as a string.
    Json,
    /// A list of values of one scalar type (`list<string>`, `list<i64>`, ...), an Arrow list
    /// column. Elements may be NULL.
    List(ListOf),
}

/// The element type of a [`FieldType::List`]: any scalar type (lists do not nest).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ListOf {
    /// `list<i64>`.
    I64,
    /// `list<u64>`.
    U64,
    /// `list<f64>`.
    F64,
    /// `list<bool>`.
    Bool,
    /// `list<string>`.
    String,
    /// `list<timestamp>`.
    Timestamp,
}

impl ListOf {
    /// Every element type.
    pub const ALL: [ListOf; 6] = [
        ListOf::I64,
        ListOf::U64,
        ListOf::F64,
        ListOf::Bool,
        ListOf::String,
        ListOf::Timestamp,
    ];

    /// The elements' field type.
    pub fn field_type(self) -> FieldType {
        match self {
            ListOf::I64 => FieldType::I64,
            ListOf::U64 => FieldType::U64,
            ListOf::F64 => FieldType::F64,
            ListOf::Bool => FieldType::Bool,
            ListOf::String => FieldType::String,
            ListOf::Timestamp => FieldType::Timestamp,
        }
    }

    /// The element type for a scalar field type (`None` for `json` and lists).
    pub fn of(t: FieldType) -> Option<ListOf> {
        ListOf::ALL.into_iter().find(|l| l.field_type() == t)
    }
}

impl FieldType {
    /// Every scalar type, in the order the documentation lists them.
    pub const ALL: [FieldType; 6] = [
        FieldType::I64,
        FieldType::U64,
        FieldType::F64,
        FieldType::Bool,
        FieldType::String,
        FieldType::Timestamp,
    ];

    /// Every type a schema may name: the scalars, `json`, and a list of each scalar.
    pub fn every() -> impl Iterator<Item = FieldType> {
        FieldType::ALL
            .into_iter()
            .chain([FieldType::Json])
            .chain(ListOf::ALL.into_iter().map(FieldType::List))
    }

    /// The name used in pipeline files.
    pub fn name(self) -> &'static str {
        match self {
            FieldType::I64 => "i64",
            FieldType::U64 => "u64",
            FieldType::F64 => "f64",
            FieldType::Bool => "bool",
            FieldType::String => "string",
            FieldType::Timestamp => "timestamp",
            FieldType::Json => "json",
            FieldType::List(ListOf::I64) => "list<i64>",
            FieldType::List(ListOf::U64) => "list<u64>",
            FieldType::List(ListOf::F64) => "list<f64>",
            FieldType::List(ListOf::Bool) => "list<bool>",
            FieldType::List(ListOf::String) => "list<string>",
            FieldType::List(ListOf::Timestamp) => "list<timestamp>",
        }
    }

    /// Parses a type name as written in a pipeline file (`list< string >` may space its
    /// brackets).
    pub fn parse(name: &str) -> Option<FieldType> {
        if let Some(inner) = name
            .strip_prefix("list")
            .map(str::trim_start)
            .and_then(|r| r.strip_prefix('<'))
            .and_then(|r| r.strip_suffix('>'))
        {
            let elem = FieldType::parse(inner.trim())?;
            return ListOf::of(elem).map(FieldType::List);
        }
        FieldType::every().find(|t| t.name() == name)
    }

    /// Whether values of this type are numbers.
    pub fn is_numeric(self) -> bool {
        matches!(self, FieldType::I64 | FieldType::U64 | FieldType::F64)
    }

    /// Whether this is one of the six scalar types (not `json`, not a list).
    pub fn is_scalar(self) -> bool {
        !matches!(self, FieldType::Json | FieldType::List(_))
    }

    /// The element type, for a list type.
    pub fn list_of(self) -> Option<ListOf> {
        match self {
            FieldType::List(l) => Some(l),
            _ => None,
        }
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One field of one record.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub enum Value {
    /// SQL NULL: absent or unknown.
    #[default]
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    I64(i64),
    /// An unsigned integer.
    U64(u64),
    /// A float.
    F64(f64),
    /// A string.
    Str(SmolStr),
    /// A timestamp, microseconds since the epoch.
    Ts(Micros),
    /// A list (of a `list<...>` field): its elements, shared.
    List(Arc<[Value]>),
}

impl Value {
    /// Whether this is NULL.
    #[inline]
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The type of this value, or `None` for NULL.
    pub fn field_type(&self) -> Option<FieldType> {
        Some(match self {
            Value::Null => return None,
            Value::Bool(_) => FieldType::Bool,
            Value::I64(_) => FieldType::I64,
            Value::U64(_) => FieldType::U64,
            Value::F64(_) => FieldType::F64,
            Value::Str(_) => FieldType::String,
            Value::Ts(_) => FieldType::Timestamp,
            Value::List(items) => FieldType::List(
                items
                    .iter()
                    .find_map(|v| v.field_type().and_then(ListOf::of))
                    .unwrap_or(ListOf::String),
            ),
        })
    }

    /// The value as a float, for numeric values.
    #[inline]
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::I64(v) => Some(v as f64),
            Value::U64(v) => Some(v as f64),
            Value::F64(v) => Some(v),
            _ => None,
        }
    }

    /// The value as a signed integer, for integer values that fit.
    #[inline]
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::I64(v) => Some(v),
            Value::U64(v) => i64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as an unsigned integer, for integer values that fit.
    #[inline]
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U64(v) => Some(v),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The string, for string values.
    #[inline]
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The boolean, for boolean values.
    #[inline]
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The timestamp, for timestamp values.
    #[inline]
    pub fn as_ts(&self) -> Option<Micros> {
        match *self {
            Value::Ts(t) => Some(t),
            _ => None,
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::I64(_) | Value::U64(_) | Value::F64(_) => 2,
            Value::Str(_) => 3,
            Value::Ts(_) => 4,
            Value::List(_) => 5,
        }
    }
}

/// A total order over values, used for grouping and sorting: NULL first, then booleans, numbers
/// (compared by value across integer and float types; NaN after every other number), strings,
/// and timestamps.
impl Ord for Value {
    fn cmp(&self, other: &Self) -> Ordering {
        use Value::*;
        match (self, other) {
            (Null, Null) => Ordering::Equal,
            (Bool(a), Bool(b)) => a.cmp(b),
            (I64(a), I64(b)) => a.cmp(b),
            (U64(a), U64(b)) => a.cmp(b),
            (I64(a), U64(b)) => cmp_i64_u64(*a, *b),
            (U64(a), I64(b)) => cmp_i64_u64(*b, *a).reverse(),
            (Str(a), Str(b)) => a.cmp(b),
            (Ts(a), Ts(b)) => a.cmp(b),
            (F64(a), F64(b)) => a.total_cmp(b),
            (I64(a), F64(b)) => cmp_int_f64(i128::from(*a), *b),
            (U64(a), F64(b)) => cmp_int_f64(i128::from(*a), *b),
            (F64(a), I64(b)) => cmp_int_f64(i128::from(*b), *a).reverse(),
            (F64(a), U64(b)) => cmp_int_f64(i128::from(*b), *a).reverse(),
            (List(a), List(b)) => a.iter().cmp(b.iter()),
            (a, b) => a.rank().cmp(&b.rank()),
        }
    }
}

fn cmp_i64_u64(a: i64, b: u64) -> Ordering {
    if a < 0 {
        Ordering::Less
    } else {
        (a as u64).cmp(&b)
    }
}

/// Compares an integer with a float exactly (no rounding of the integer to f64); NaN sorts
/// after every number.
fn cmp_int_f64(a: i128, b: f64) -> Ordering {
    if b.is_nan() {
        return Ordering::Less;
    }
    let rough = (a as f64).total_cmp(&b);
    if rough != Ordering::Equal {
        return rough;
    }
    // `a` rounds to `b`, so `b` is a whole number within 2^64: compare exactly.
    a.cmp(&(b as i128))
}

impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Value {}

impl std::hash::Hash for Value {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match self {
            Value::Null => 0u8.hash(state),
            Value::Bool(b) => b.hash(state),
            // Numbers equal under `Ord` must hash alike: hash integers that fit as i64, others as f64 bits.
            Value::I64(v) => v.hash(state),
            Value::U64(v) => match i64::try_from(*v) {
                Ok(i) => i.hash(state),
                Err(_) => (*v as f64).to_bits().hash(state),
            },
            Value::F64(v) => {
                if v.fract() == 0.0 && *v >= i64::MIN as f64 && *v <= i64::MAX as f64 {
                    (*v as i64).hash(state)
                } else {
                    v.to_bits().hash(state)
                }
            }
            Value::Str(s) => s.hash(state),
            Value::Ts(t) => t.hash(state),
            Value::List(items) => {
                items.len().hash(state);
                for v in items.iter() {
                    v.hash(state);
                }
            }
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("NULL"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::I64(v) => write!(f, "{v}"),
            Value::U64(v) => write!(f, "{v}"),
            Value::F64(v) => write!(f, "{v}"),
            Value::Str(s) => write!(f, "{s}"),
            Value::Ts(t) => f.write_str(&crate::time::format_rfc3339(*t)),
            Value::List(items) => {
                f.write_str("[")?;
                for (k, v) in items.iter().enumerate() {
                    if k > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_compare_across_types() {
        assert_eq!(Value::I64(3), Value::F64(3.0));
        assert_eq!(Value::U64(3), Value::I64(3));
        assert!(Value::I64(-1) < Value::U64(0));
        assert!(Value::F64(2.5) < Value::I64(3));
        assert!(Value::Null < Value::Bool(false));
        assert!(Value::F64(f64::NAN) > Value::I64(i64::MAX));
        // Exact beyond 2^53, so the order stays transitive.
        let big = 1i64 << 53;
        assert_eq!(Value::I64(big), Value::F64(big as f64));
        assert!(Value::I64(big + 1) > Value::F64(big as f64));
        assert!(
            Value::U64(u64::MAX) < Value::F64(u64::MAX as f64),
            "2^64 - 1 < 2^64"
        );
        assert!(Value::F64(-0.5) < Value::I64(0));
    }

    #[test]
    fn type_names_round_trip() {
        for t in FieldType::every() {
            assert_eq!(FieldType::parse(t.name()), Some(t));
        }
        assert_eq!(FieldType::parse("int"), None);
        assert_eq!(
            FieldType::parse("list< string >"),
            Some(FieldType::List(ListOf::String))
        );
        assert_eq!(FieldType::parse("list<json>"), None, "lists hold scalars");
        assert_eq!(
            FieldType::parse("list<list<i64>>"),
            None,
            "lists do not nest"
        );
    }
}
