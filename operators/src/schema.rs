//! Schemas and records: the shared record model every operator works on.
//!
//! A [`Record`] is a row of [`Value`]s whose meaning is given by a [`Schema`] known when the
//! pipeline is compiled. Operators never look fields up by name while running: names are
//! resolved to positions once, against the schema.
//!
//! ```
//! use weir_operators::schema::{Field, Record, Schema};
//! use weir_operators::value::{FieldType, Value};
//!
//! let schema = Schema::new(vec![
//!     Field::new("id", FieldType::U64),
//!     Field::new("ts", FieldType::Timestamp),
//!     Field::new("temperature", FieldType::F64),
//! ]);
//! assert_eq!(schema.index_of("temperature"), Some(2));
//! let r = Record::new(vec![Value::U64(1), Value::Ts(0), Value::F64(20.5)]);
//! assert_eq!(r.values[2], Value::F64(20.5));
//! ```

use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

use crate::value::{FieldType, Value};

/// A named, typed field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    /// The field's name.
    pub name: SmolStr,
    /// The field's type.
    pub ty: FieldType,
}

impl Field {
    /// A field with the given name and type.
    pub fn new(name: &str, ty: FieldType) -> Field {
        Field {
            name: SmolStr::new(name),
            ty,
        }
    }
}

/// The fields of the records on one stream, with the roles of the event-time and id fields.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    /// The fields, in record order.
    pub fields: Vec<Field>,
    /// Position of the event-time field, when the stream still carries it.
    pub time: Option<usize>,
    /// Position of the id (primary key) field, when the stream still carries it.
    pub id: Option<usize>,
    /// Position of a window's `window_end` field, when the stream carries window results: sinks
    /// measure event-time latency from it.
    #[serde(default)]
    pub window_end: Option<usize>,
    /// Whether the stream's records have no event time of their own (a source with
    /// `event_time = "ingest"`): windows over it use the time each record entered Weir.
    #[serde(default)]
    pub processing_time: bool,
}

impl Schema {
    /// A schema with the given fields and no event-time or id roles.
    pub fn new(fields: Vec<Field>) -> Schema {
        Schema {
            fields,
            time: None,
            id: None,
            window_end: None,
            processing_time: false,
        }
    }

    /// Sets the event-time field by name (which must exist).
    pub fn with_time(mut self, name: &str) -> Schema {
        self.time = self.index_of(name);
        self
    }

    /// Sets the id field by name (which must exist).
    pub fn with_id(mut self, name: &str) -> Schema {
        self.id = self.index_of(name);
        self
    }

    /// The position of a field.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }

    /// The number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether the schema has no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The field names, for suggestions in error messages.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|f| f.name.as_str())
    }
}

/// One event: a row of values laid out by the stream's [`Schema`], plus what the engine knows
/// about its processing ([`Meta`]).
///
/// Comparisons and hashing look at the values only: two records with the same values are the
/// same event, whenever and however they were processed.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Record {
    /// The field values, one per schema field.
    pub values: Vec<Value>,
    /// Processing metadata (serialized too, so it survives an exchange between processes).
    #[serde(default)]
    pub meta: Meta,
}

impl Record {
    /// A record with the given values and default metadata.
    pub fn new(values: Vec<Value>) -> Record {
        Record {
            values,
            meta: Meta::default(),
        }
    }
}

/// Processing metadata carried with a record. It never takes part in comparisons or hashing.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Meta {
    /// When the newest input that contributed to this record entered Weir: wall-clock
    /// microseconds since the epoch (for an open-loop generator, the event's scheduled time).
    pub ingest: i64,
    /// The watermark of the record's source partition when the record was read, in event-time
    /// microseconds: every record is sent at a timely time at or below it, and a record whose
    /// window ends at or before it is late. For in-order input this is the record's own time.
    pub watermark: crate::Time,
}

impl PartialEq for Meta {
    fn eq(&self, _: &Meta) -> bool {
        true
    }
}
impl Eq for Meta {}
impl PartialOrd for Meta {
    fn partial_cmp(&self, other: &Meta) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Meta {
    fn cmp(&self, _: &Meta) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}
impl std::hash::Hash for Meta {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}
