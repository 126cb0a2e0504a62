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
}

impl FieldType {
    /// Every type, in the order the documentation lists them.
    pub const ALL: [FieldType; 6] = [
        FieldType::I64,
        FieldType::U64,
        FieldType::F64,
        FieldType::Bool,
        FieldType::String,
        FieldType::Timestamp,
    ];

    /// The name used in pipeline files.
    pub fn name(self) -> &'static str {
        match self {
            FieldType::I64 => "i64",
            FieldType::U64 => "u64",
            FieldType::F64 => "f64",
            FieldType::Bool => "bool",
            FieldType::String => "string",
            FieldType::Timestamp => "timestamp",
        }
    }

    /// Parses a type name as written in a pipeline file.
    pub fn parse(name: &str) -> Option<FieldType> {
        FieldType::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Whether values of this type are numbers.
    pub fn is_numeric(self) -> bool {
        matches!(self, FieldType::I64 | FieldType::U64 | FieldType::F64)
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
        for t in FieldType::ALL {
            assert_eq!(FieldType::parse(t.name()), Some(t));
        }
        assert_eq!(FieldType::parse("int"), None);
    }
}
