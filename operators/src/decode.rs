//! Decoding input lines (JSON objects, CSV rows) into records by schema, and routing bad records.
//!
//! A JSON object's keys are matched to schema positions while it is parsed: no intermediate map
//! is built, unknown keys are skipped, and missing keys are NULL. A CSV row's columns are matched
//! to positions once per file, from its header. A record whose event time is missing or
//! unreadable, whose id is missing, or whose field has the wrong type is *bad*: it is never
//! dropped silently but counted and handled by the source's [`OnError`] policy.
//!
//! ```
//! use weir_operators::decode::{DecodeSpec, OnError};
//! use weir_operators::schema::{Field, Schema};
//! use weir_operators::time::TimeFormat;
//! use weir_operators::value::{FieldType, Value};
//!
//! let schema = Schema::new(vec![
//!     Field::new("id", FieldType::String),
//!     Field::new("ts", FieldType::Timestamp),
//!     Field::new("temp", FieldType::F64),
//! ]).with_time("ts").with_id("id");
//! let spec = DecodeSpec::new("sensors", schema, TimeFormat::EpochMs, true, OnError::DeadLetter);
//! let r = spec.decode_json(r#"{"ts": 1000, "temp": 21.5}"#, "a.jsonl", 7).unwrap();
//! assert_eq!(r.values, vec![Value::Str("sensors:a.jsonl:7".into()), Value::Ts(1_000_000), Value::F64(21.5)]);
//! let bad = spec.decode_json(r#"{"ts": 1000, "temp": "hot"}"#, "a.jsonl", 8).unwrap_err();
//! assert_eq!(bad, "field `temp`: expected f64, found string \"hot\"");
//! ```

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use smol_str::{format_smolstr, SmolStr};

use crate::schema::{Field, Record, Schema};
use crate::time::TimeFormat;
use crate::value::{FieldType, Micros, Value};
use crate::watermark::WatermarkSpec;

/// What a source does with a bad record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnError {
    /// Count it and send it, with its location and the reason, to the source's dead-letter
    /// output (the default).
    DeadLetter,
    /// Count it and go on.
    Skip,
    /// Stop the run, naming the record's location and the reason.
    Fail,
}

impl OnError {
    /// Every policy, in documentation order.
    pub const ALL: [OnError; 3] = [OnError::DeadLetter, OnError::Skip, OnError::Fail];

    /// The policy's name in pipeline files.
    pub fn name(self) -> &'static str {
        match self {
            OnError::DeadLetter => "dead-letter",
            OnError::Skip => "skip",
            OnError::Fail => "fail",
        }
    }
}

/// The schema of dead-letter records: where the bad record was, why it was rejected, and its text.
pub fn dead_letter_schema() -> Schema {
    Schema::new(vec![
        Field::new("source", FieldType::String),
        Field::new("file", FieldType::String),
        Field::new("line", FieldType::U64),
        Field::new("reason", FieldType::String),
        Field::new("record", FieldType::String),
    ])
}

/// The dead letter of a record an operator could not use (late, or without event time): the
/// component's id, NULL file and line, the reason, and the record as JSON (by `encoder`). It
/// keeps the record's metadata.
pub fn operator_dead_letter(
    component: &SmolStr,
    encoder: &crate::encode::Encoder,
    r: &Record,
    reason: String,
) -> Record {
    let mut raw = Vec::new();
    encoder.encode(r, &mut raw);
    while raw.last() == Some(&b'\n') {
        raw.pop();
    }
    let mut d = Record::new(vec![
        Value::Str(component.clone()),
        Value::Null,
        Value::Null,
        Value::Str(SmolStr::new(reason)),
        Value::Str(SmolStr::new(String::from_utf8_lossy(&raw))),
    ]);
    d.meta = r.meta;
    d
}

/// How one source turns its input into records.
#[derive(Clone, Debug)]
pub struct DecodeSpec {
    /// The source's id, used in assigned ids and dead letters.
    pub source: SmolStr,
    /// The records' schema; its `time` must be set, its `id` too.
    pub schema: Schema,
    /// How timestamp fields are written.
    pub time_format: TimeFormat,
    /// Whether Weir assigns the id (`source:file:line`) instead of reading it.
    pub assign_id: bool,
    /// The bad-record policy.
    pub on_error: OnError,
    /// Whether each record's event time is the time it was read (processing time; the schema
    /// then has no time field).
    pub ingest_time: bool,
    /// The largest share of bad records the source may read before the run fails (see
    /// [`ErrorRate`](crate::reading::ErrorRate)).
    pub max_error_rate: Option<f64>,
    /// How the source's event time behaves (default: in order, never idle).
    pub watermark: WatermarkSpec,
    /// Whether latency counts from a record's event time (its creation, for a producer that
    /// stamps events when it makes them: end-to-end latency) instead of from when it was read.
    pub latency_from_event_time: bool,
    /// Whether the event time comes with the input (a Kafka message's timestamp) instead of
    /// from a field of the record.
    pub assign_time: bool,
    /// The longest line (or CSV record) read, in bytes; a longer one is a bad record, shown by
    /// its start (default [`DEFAULT_MAX_LINE_BYTES`](crate::framing::DEFAULT_MAX_LINE_BYTES)).
    pub max_line_bytes: usize,
    positions: FieldNames,
    /// When a field's name is a dotted path (`user.id`), how JSON objects nest: the fields
    /// under each key.
    nested: Option<std::sync::Arc<Level>>,
}

impl DecodeSpec {
    /// Builds a decoder. `schema.id` must be set, and `schema.time` unless it reads processing
    /// time ([`ingest_time`](Self::ingest_time)).
    pub fn new(
        source: &str,
        schema: Schema,
        time_format: TimeFormat,
        assign_id: bool,
        on_error: OnError,
    ) -> DecodeSpec {
        let positions = schema
            .fields
            .iter()
            .enumerate()
            .filter(|(i, _)| !(assign_id && Some(*i) == schema.id))
            .map(|(i, f)| (f.name.as_str(), i))
            .collect();
        DecodeSpec {
            watermark: WatermarkSpec::default(),
            latency_from_event_time: false,
            assign_time: false,
            max_error_rate: None,
            ingest_time: false,
            max_line_bytes: crate::framing::DEFAULT_MAX_LINE_BYTES,
            source: SmolStr::new(source),
            schema,
            time_format,
            assign_id,
            on_error,
            nested: Level::of(&positions),
            positions,
        }
    }

    /// The same decoder taking event time from the input's own timestamp (see
    /// [`decode_json_into`](Self::decode_json_into)): the time field is not read from the record.
    pub fn with_assigned_time(mut self) -> DecodeSpec {
        self.assign_time = true;
        if let Some(t) = self.schema.time {
            self.positions.retain(|p| p != t);
            self.nested = Level::of(&self.positions);
        }
        self
    }

    /// The fields read from the input (all but an assigned id or time).
    pub fn input_fields(&self) -> impl Iterator<Item = (usize, &Field)> {
        self.schema.fields.iter().enumerate().filter(move |(i, _)| {
            let id = self.assign_id && Some(*i) == self.schema.id;
            let time = self.assign_time && Some(*i) == self.schema.time;
            !(id || time)
        })
    }

    /// Decodes one JSON object into `values` (cleared first, then one value per schema field),
    /// for a caller that reuses one row for every record; its event time is `time` when the
    /// decoder assigns time.
    pub fn decode_json_into(
        &self,
        line: &str,
        file: &str,
        line_no: u64,
        time: Option<Micros>,
        values: &mut Vec<Value>,
    ) -> Result<(), String> {
        values.clear();
        values.resize(self.schema.len(), Value::Null);
        let mut de = serde_json::Deserializer::from_str(line);
        let field_err = RowSeed {
            spec: self,
            out: values,
        }
        .deserialize(&mut de)
        .map_err(|e| format!("malformed JSON: {e}"))?;
        de.end().map_err(|e| format!("malformed JSON: {e}"))?;
        if let Some(e) = field_err {
            return Err(e);
        }
        self.assign(values, time);
        self.finish(values, file, line_no)
    }

    /// Decodes one CSV row into `values` (cleared first), for a caller that reuses one row for
    /// every record; its event time is `time` when the decoder assigns time.
    pub fn decode_csv_into(
        &self,
        row: &csv::StringRecord,
        columns: &[Option<usize>],
        file: &str,
        line_no: u64,
        time: Option<Micros>,
        values: &mut Vec<Value>,
    ) -> Result<(), String> {
        self.csv_values(row, columns, values)?;
        self.assign(values, time);
        self.finish(values, file, line_no)
    }

    /// Completes a record whose values a reader put in place itself (a Parquet file's columns,
    /// of the declared types): the checks and ids every record gets.
    pub fn complete(&self, values: &mut [Value], file: &str, line_no: u64) -> Result<(), String> {
        self.finish(values, file, line_no)
    }

    fn assign(&self, values: &mut [Value], time: Option<Micros>) {
        if let (true, Some(t), Some(time)) = (self.assign_time, self.schema.time, time) {
            values[t] = Value::Ts(time);
        }
    }

    /// Decodes one JSON object into a record.
    pub fn decode_json(&self, line: &str, file: &str, line_no: u64) -> Result<Record, String> {
        let mut values = Vec::new();
        self.decode_json_into(line, file, line_no, None, &mut values)?;
        Ok(Record::new(values))
    }

    /// Maps a CSV header to schema positions: `columns[c]` is the position of column `c`.
    /// Fails when a schema field has no column.
    pub fn csv_columns(&self, header: &csv::StringRecord) -> Result<Vec<Option<usize>>, String> {
        let columns: Vec<Option<usize>> = header
            .iter()
            .map(|h| self.positions.get(h.trim()))
            .collect();
        let missing: Vec<&str> = self
            .input_fields()
            .filter(|(i, _)| !columns.contains(&Some(*i)))
            .map(|(_, f)| f.name.as_str())
            .collect();
        if missing.is_empty() {
            Ok(columns)
        } else {
            Err(format!(
                "the CSV header has no column for {} declared in the schema of source `{}`; \
                 add the column or remove it from the schema",
                missing
                    .iter()
                    .map(|m| format!("`{m}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                self.source
            ))
        }
    }

    /// Decodes one CSV row, given the file's column map.
    pub fn decode_csv(
        &self,
        row: &csv::StringRecord,
        columns: &[Option<usize>],
        file: &str,
        line_no: u64,
    ) -> Result<Record, String> {
        let mut values = Vec::new();
        self.decode_csv_into(row, columns, file, line_no, None, &mut values)?;
        Ok(Record::new(values))
    }

    fn csv_values(
        &self,
        row: &csv::StringRecord,
        columns: &[Option<usize>],
        values: &mut Vec<Value>,
    ) -> Result<(), String> {
        if row.len() != columns.len() {
            return Err(format!(
                "expected {} columns, found {}",
                columns.len(),
                row.len()
            ));
        }
        values.clear();
        values.resize(self.schema.len(), Value::Null);
        for (cell, col) in row.iter().zip(columns) {
            let Some(i) = *col else { continue };
            let field = &self.schema.fields[i];
            values[i] = parse_cell(cell, field.ty, &self.time_format)
                .map_err(|e| format!("field `{}`: {e}", field.name))?;
        }
        Ok(())
    }

    fn finish(&self, values: &mut [Value], file: &str, line_no: u64) -> Result<(), String> {
        if let Some(t) = self.schema.time {
            if values[t].is_null() {
                return Err(format!(
                    "missing timestamp field `{}`",
                    self.schema.fields[t].name
                ));
            }
        }
        if let Some(id) = self.schema.id {
            if self.assign_id {
                values[id] = Value::Str(format_smolstr!("{}:{}:{}", self.source, file, line_no));
            } else if values[id].is_null() {
                return Err(format!(
                    "missing id field `{}`",
                    self.schema.fields[id].name
                ));
            }
        }
        Ok(())
    }

    /// The dead-letter record for a bad input record.
    pub fn dead_letter(&self, file: &str, line_no: u64, reason: String, raw: &str) -> Record {
        Record::new(vec![
            Value::Str(self.source.clone()),
            Value::Str(SmolStr::new(file)),
            Value::U64(line_no),
            Value::Str(SmolStr::new(reason)),
            Value::Str(SmolStr::new(raw)),
        ])
    }
}

/// Parses one CSV cell; an empty cell is NULL.
pub fn parse_cell(text: &str, ty: FieldType, fmt: &TimeFormat) -> Result<Value, String> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(Value::Null);
    }
    let bad = || format!("expected {ty}, found `{t}`");
    Ok(match ty {
        FieldType::I64 => Value::I64(t.parse().map_err(|_| bad())?),
        FieldType::U64 => Value::U64(t.parse().map_err(|_| bad())?),
        // One rule for CSV and JSON: a number is finite (JSON has no NaN or infinity, and
        // 1e400 is out of its range).
        FieldType::F64 => match t.parse::<f64>() {
            Ok(v) if v.is_finite() => Value::F64(v),
            _ => return Err(bad()),
        },
        FieldType::Bool => match t {
            "true" | "TRUE" | "True" => Value::Bool(true),
            "false" | "FALSE" | "False" => Value::Bool(false),
            _ => return Err(bad()),
        },
        FieldType::String => Value::Str(SmolStr::new(text)),
        FieldType::Timestamp => Value::Ts(fmt.parse_str(t)?),
        // A cell of JSON text (`["a","b"]`, `{"k":1}`): what a CSV sink writes for these types.
        FieldType::Json | FieldType::List(_) => {
            let mut de = serde_json::Deserializer::from_str(t);
            let cell = CellSeed { ty, fmt }
                .deserialize(&mut de)
                .and_then(|cell| de.end().map(|()| cell))
                .map_err(|e| format!("expected {ty} as JSON text, found `{t}` ({e})"))?;
            cell?
        }
    })
}

// ---- JSON ----------------------------------------------------------------------------------

/// Fills `out` from a JSON object; returns the first field-level error, if any.
struct RowSeed<'a> {
    spec: &'a DecodeSpec,
    out: &'a mut Vec<Value>,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = Option<String>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        if let Some(level) = &self.spec.nested {
            let mut first_err = None;
            LevelSeed {
                spec: self.spec,
                level,
                out: self.out,
                err: &mut first_err,
            }
            .visit_map(map)?;
            return Ok(first_err);
        }
        let mut first_err = None;
        // A schema field given twice is a bad record, not a silent choice of one value.
        // (A bit per field; schemas wider than 128 fields pay for a vector.)
        let mut seen_bits = 0u128;
        let mut seen_wide: Vec<bool> = Vec::new();
        let width = self.out.len();
        let mut first_time = |i: usize| {
            if i < 128 {
                let new = seen_bits & (1 << i) == 0;
                seen_bits |= 1 << i;
                new
            } else {
                if seen_wide.is_empty() {
                    seen_wide = vec![false; width];
                }
                !std::mem::replace(&mut seen_wide[i], true)
            }
        };
        // Where the next key is looked for first: producers write keys in one order.
        let mut hint = 0;
        while let Some(pos) = map.next_key_seed(KeySeed(&self.spec.positions, &mut hint))? {
            match pos {
                Some(i) if !first_time(i) => {
                    map.next_value::<IgnoredAny>()?;
                    first_err.get_or_insert_with(|| {
                        format!("field `{}` appears twice", self.spec.schema.fields[i].name)
                    });
                }
                Some(i) => {
                    let field = &self.spec.schema.fields[i];
                    let cell = map.next_value_seed(CellSeed {
                        ty: field.ty,
                        fmt: &self.spec.time_format,
                    })?;
                    match cell {
                        Ok(v) => self.out[i] = v,
                        Err(e) => {
                            first_err.get_or_insert_with(|| format!("field `{}`: {e}", field.name));
                        }
                    }
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(first_err)
    }
}

/// How a JSON object's keys lead to schema fields when some field names are dotted paths: a
/// key is a field, or an object holding more.
#[derive(Clone, Debug, Default)]
struct Level {
    /// The object's dotted path (empty at the top), for messages.
    path: SmolStr,
    slots: Vec<(SmolStr, Slot)>,
}

#[derive(Clone, Debug)]
enum Slot {
    Field(usize),
    Object(Level),
}

impl Level {
    /// The nesting of `names`, when any is a dotted path.
    fn of(names: &FieldNames) -> Option<std::sync::Arc<Level>> {
        if !names.names.iter().any(|(n, _)| n.contains('.')) {
            return None;
        }
        let mut root = Level::default();
        for (name, i) in &names.names {
            let mut level = &mut root;
            let mut parts = name.split('.').peekable();
            while let Some(part) = parts.next() {
                if parts.peek().is_none() {
                    level.slots.push((SmolStr::new(part), Slot::Field(*i)));
                    break;
                }
                let at = match level
                    .slots
                    .iter()
                    .position(|(k, s)| k == part && matches!(s, Slot::Object(_)))
                {
                    Some(at) => at,
                    None => {
                        let path = match level.path.is_empty() {
                            true => SmolStr::new(part),
                            false => smol_str::format_smolstr!("{}.{part}", level.path),
                        };
                        let object = Level {
                            path,
                            slots: Vec::new(),
                        };
                        level.slots.push((SmolStr::new(part), Slot::Object(object)));
                        level.slots.len() - 1
                    }
                };
                let Slot::Object(next) = &mut level.slots[at].1 else {
                    unreachable!("an object slot")
                };
                level = next;
            }
        }
        Some(std::sync::Arc::new(root))
    }
}

/// Reads one JSON object of a [`Level`] into the row (its nested objects recursively).
struct LevelSeed<'a, 'b> {
    spec: &'a DecodeSpec,
    level: &'a Level,
    out: &'b mut Vec<Value>,
    err: &'b mut Option<String>,
}

impl<'de> DeserializeSeed<'de> for LevelSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for LevelSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    /// A nested object given as `null`: its fields stay NULL.
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match self
                .level
                .slots
                .iter()
                .find(|(k, _)| *k == *key)
                .map(|(_, s)| s)
            {
                Some(Slot::Field(i)) => {
                    let field = &self.spec.schema.fields[*i];
                    match map.next_value_seed(CellSeed {
                        ty: field.ty,
                        fmt: &self.spec.time_format,
                    })? {
                        Ok(v) => self.out[*i] = v,
                        Err(e) => {
                            self.err
                                .get_or_insert_with(|| format!("field `{}`: {e}", field.name));
                        }
                    }
                }
                Some(Slot::Object(level)) => {
                    map.next_value_seed(LevelSeed {
                        spec: self.spec,
                        level,
                        out: &mut *self.out,
                        err: &mut *self.err,
                    })?;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    /// Any other value where an object was expected: its fields stay NULL and the record is
    /// bad.
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.not_an_object()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.not_an_object()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.not_an_object()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.not_an_object()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.not_an_object()
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        self.not_an_object()
    }
}

impl LevelSeed<'_, '_> {
    fn not_an_object<E>(self) -> Result<(), E> {
        let name = &self.level.path;
        self.err
            .get_or_insert_with(|| format!("field `{name}` is not an object, so it has no fields"));
        Ok(())
    }
}

/// The schema positions of the fields read from the input, by name. A short list is searched
/// from where the last key was found (producers write keys in one order, so the next key is
/// usually the next entry), a long one through a hash map.
#[derive(Clone, Debug)]
struct FieldNames {
    names: Vec<(SmolStr, usize)>,
    map: Option<HashMap<SmolStr, usize>>,
}

/// Up to this many names, a search beats hashing.
const NAMES_SEARCHED: usize = 24;

impl<'a> FromIterator<(&'a str, usize)> for FieldNames {
    fn from_iter<I: IntoIterator<Item = (&'a str, usize)>>(iter: I) -> FieldNames {
        let mut f = FieldNames {
            names: iter
                .into_iter()
                .map(|(n, i)| (SmolStr::new(n), i))
                .collect(),
            map: None,
        };
        f.index();
        f
    }
}

impl FieldNames {
    fn index(&mut self) {
        self.map =
            (self.names.len() > NAMES_SEARCHED).then(|| self.names.iter().cloned().collect());
    }

    fn retain(&mut self, keep: impl Fn(usize) -> bool) {
        self.names.retain(|(_, p)| keep(*p));
        self.index();
    }

    fn get(&self, key: &str) -> Option<usize> {
        self.find(key, &mut 0)
    }

    /// The position of `key`, looking first at entry `hint`, which is left after the entry
    /// found.
    #[inline]
    fn find(&self, key: &str, hint: &mut usize) -> Option<usize> {
        if let Some(map) = &self.map {
            return map.get(key).copied();
        }
        let from = (*hint).min(self.names.len());
        let (before, after) = self.names.split_at(from);
        let found = after
            .iter()
            .zip(from..)
            .chain(before.iter().zip(0..))
            .find(|((name, _), _)| name.as_str() == key);
        found.map(|((_, pos), at)| {
            *hint = at + 1;
            *pos
        })
    }
}

/// Resolves a key to its schema position (`None`: not in the schema).
struct KeySeed<'a>(&'a FieldNames, &'a mut usize);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<usize>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.find(v, self.1))
    }
}

/// Valid JSON text without the whitespace between its tokens.
pub(crate) fn compact_json(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains([' ', '\n', '\t', '\r']) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
        } else if !matches!(c, ' ' | '\n' | '\t' | '\r') {
            in_string = c == '"';
            out.push(c);
        }
    }
    out.into()
}

/// Reads one JSON value as a field of type `ty`; a wrong type is an inner `Err`.
struct CellSeed<'a> {
    ty: FieldType,
    fmt: &'a TimeFormat,
}

type Cell = Result<Value, String>;

impl<'de> DeserializeSeed<'de> for CellSeed<'_> {
    type Value = Cell;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        if self.ty == FieldType::Json {
            // Kept as its JSON text, keys in their order, without the whitespace between
            // tokens; JSON's null is NULL, as for every other type.
            let raw = <Box<serde_json::value::RawValue> as serde::Deserialize>::deserialize(d)?;
            return Ok(Ok(match raw.get() {
                "null" => Value::Null,
                text => Value::Str(SmolStr::new(compact_json(text))),
            }));
        }
        d.deserialize_any(self)
    }
}

impl CellSeed<'_> {
    fn mismatch(&self, found: impl fmt::Display) -> Cell {
        Err(format!("expected {}, found {found}", self.ty))
    }
}

impl<'de> Visitor<'de> for CellSeed<'_> {
    type Value = Cell;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a value of type {}", self.ty)
    }

    fn visit_unit<E>(self) -> Result<Cell, E> {
        Ok(Ok(Value::Null))
    }

    fn visit_none<E>(self) -> Result<Cell, E> {
        Ok(Ok(Value::Null))
    }

    fn visit_bool<E>(self, v: bool) -> Result<Cell, E> {
        Ok(match self.ty {
            FieldType::Bool => Ok(Value::Bool(v)),
            _ => self.mismatch(format_args!("boolean {v}")),
        })
    }

    fn visit_i64<E>(self, v: i64) -> Result<Cell, E> {
        Ok(match self.ty {
            FieldType::I64 => Ok(Value::I64(v)),
            FieldType::U64 => u64::try_from(v)
                .map(Value::U64)
                .map_err(|_| format!("expected u64, found negative number {v}")),
            FieldType::F64 => Ok(Value::F64(v as f64)),
            FieldType::Timestamp => self.fmt.from_i64(v).map(Value::Ts),
            _ => self.mismatch(format_args!("number {v}")),
        })
    }

    fn visit_u64<E>(self, v: u64) -> Result<Cell, E> {
        Ok(match self.ty {
            FieldType::U64 => Ok(Value::U64(v)),
            FieldType::I64 => i64::try_from(v)
                .map(Value::I64)
                .map_err(|_| format!("expected i64, found {v}, which is too large")),
            FieldType::F64 => Ok(Value::F64(v as f64)),
            FieldType::Timestamp => match i64::try_from(v) {
                Ok(i) => self.fmt.from_i64(i).map(Value::Ts),
                Err(_) => Err(format!("timestamp {v} is out of range")),
            },
            _ => self.mismatch(format_args!("number {v}")),
        })
    }

    fn visit_f64<E>(self, v: f64) -> Result<Cell, E> {
        Ok(match self.ty {
            FieldType::F64 => Ok(Value::F64(v)),
            FieldType::I64 if v.fract() == 0.0 && v.abs() < 9.0e15 => Ok(Value::I64(v as i64)),
            FieldType::U64 if v.fract() == 0.0 && (0.0..9.0e15).contains(&v) => {
                Ok(Value::U64(v as u64))
            }
            FieldType::Timestamp => self.fmt.from_f64(v).map(Value::Ts),
            _ => self.mismatch(format_args!("number {v}")),
        })
    }

    fn visit_str<E>(self, v: &str) -> Result<Cell, E> {
        Ok(match self.ty {
            FieldType::String => Ok(Value::Str(SmolStr::new(v))),
            FieldType::Timestamp => self.fmt.parse_str(v).map(Value::Ts),
            _ => self.mismatch(format_args!("string {v:?}")),
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Cell, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(self.mismatch("an object"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Cell, A::Error> {
        let Some(elem) = self.ty.list_of() else {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(self.mismatch("an array"));
        };
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(4));
        let mut err = None;
        let seed = || CellSeed {
            ty: elem.field_type(),
            fmt: self.fmt,
        };
        while let Some(cell) = seq.next_element_seed(seed())? {
            match cell {
                Ok(v) => items.push(v),
                Err(e) => {
                    err.get_or_insert_with(|| format!("element {}: {e}", items.len() + 1));
                    items.push(Value::Null);
                }
            }
        }
        Ok(match err {
            Some(e) => Err(e),
            None => Ok(Value::List(items.into())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(assign: bool) -> DecodeSpec {
        let schema = Schema::new(vec![
            Field::new("id", FieldType::U64),
            Field::new("ts", FieldType::Timestamp),
            Field::new("device", FieldType::String),
            Field::new("temp", FieldType::F64),
            Field::new("ok", FieldType::Bool),
            Field::new("n", FieldType::I64),
        ])
        .with_time("ts")
        .with_id("id");
        DecodeSpec::new(
            "s",
            schema,
            TimeFormat::Rfc3339,
            assign,
            OnError::DeadLetter,
        )
    }

    #[test]
    fn json_fields_by_name_nulls_and_extras() {
        let s = spec(false);
        let r = s
            .decode_json(
                r#"{"extra": {"x": [1, 2]}, "temp": 3, "id": 9, "ts": "2026-01-01T00:00:00Z", "ok": null}"#,
                "f",
                1,
            )
            .unwrap();
        assert_eq!(r.values[0], Value::U64(9));
        assert_eq!(r.values[1], Value::Ts(1_767_225_600_000_000));
        assert_eq!(r.values[2], Value::Null);
        assert_eq!(r.values[3], Value::F64(3.0));
        assert_eq!(r.values[4], Value::Null);
    }

    /// A `json` field keeps its text (keys in their order, whitespace between tokens dropped,
    /// none inside strings); a list's elements are read as its element type, a wrong one
    /// making the record bad.
    #[test]
    fn json_text_and_lists() {
        use crate::value::ListOf;
        let schema = Schema::new(vec![
            Field::new("id", FieldType::U64),
            Field::new("ts", FieldType::Timestamp),
            Field::new("j", FieldType::Json),
            Field::new("t", FieldType::List(ListOf::Timestamp)),
        ])
        .with_time("ts")
        .with_id("id");
        let s = DecodeSpec::new("s", schema, TimeFormat::Iso8601, false, OnError::DeadLetter);
        let line = |rest: &str| format!(r#"{{"id": 1, "ts": "2026-01-01T00:00:00Z", {rest}}}"#);
        let r = s
            .decode_json(
                &line(
                    r#""j": { "z" : [1, "a  b\" c"] ,"a":{}}, "t": ["2026-01-01T00:00:01Z", null]"#,
                ),
                "f",
                1,
            )
            .unwrap();
        assert_eq!(
            r.values[2],
            Value::Str(r#"{"z":[1,"a  b\" c"],"a":{}}"#.into())
        );
        assert_eq!(
            r.values[3],
            Value::List(vec![Value::Ts(1_767_225_601_000_000), Value::Null].into())
        );
        let r = s
            .decode_json(&line(r#""j": null, "t": []"#), "f", 1)
            .unwrap();
        assert_eq!(
            (&r.values[2], &r.values[3]),
            (&Value::Null, &Value::List(Vec::new().into()))
        );
        let err = s
            .decode_json(&line(r#""t": ["2026-01-01T00:00:01Z", "noon"]"#), "f", 1)
            .unwrap_err();
        assert!(err.contains("field `t`: element 2: `noon` is not"), "{err}");
        let err = s
            .decode_json(&line(r#""t": "2026-01-01T00:00:01Z""#), "f", 1)
            .unwrap_err();
        assert!(
            err.contains("field `t`: expected list<timestamp>, found string"),
            "{err}"
        );
    }

    #[test]
    fn field_names_are_found_from_any_starting_point() {
        let names: FieldNames = [("a", 0), ("bb", 3), ("c", 7)].into_iter().collect();
        for start in 0..5 {
            for (key, pos, next) in [("a", 0, 1), ("bb", 3, 2), ("c", 7, 3)] {
                let mut hint = start;
                assert_eq!(names.find(key, &mut hint), Some(pos), "{key} from {start}");
                assert_eq!(hint, next);
            }
            let mut hint = start;
            assert_eq!(names.find("b", &mut hint), None);
            assert_eq!(hint, start, "a miss leaves the hint");
        }
        let many: Vec<String> = (0..40).map(|i| format!("f{i}")).collect();
        let hashed: FieldNames = many
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        assert!(hashed.map.is_some(), "past the search limit, a hash map");
        assert_eq!(hashed.get("f39"), Some(39));
        assert_eq!(hashed.get("f40"), None);
    }

    #[test]
    fn json_bad_records() {
        let s = spec(false);
        let ts = r#""ts": "2026-01-01T00:00:00Z""#;
        let cases = [
            ("{", "malformed JSON"),
            ("[1]", "malformed JSON"),
            (r#"{"id": 1}"#, "missing timestamp field `ts`"),
            (
                r#"{"id": 1, "ts": "noon"}"#,
                "field `ts`: `noon` is not an RFC 3339",
            ),
            (&format!("{{{ts}}}"), "missing id field `id`"),
            (
                &format!(r#"{{"id": -1, {ts}}}"#),
                "field `id`: expected u64, found negative",
            ),
            (
                &format!(r#"{{"id": 1, {ts}, "ok": 1}}"#),
                "field `ok`: expected bool, found number 1",
            ),
            (
                &format!(r#"{{"id": 1, {ts}, "n": 1.5}}"#),
                "field `n`: expected i64, found number 1.5",
            ),
            (
                &format!(r#"{{"id": 1, {ts}, "device": [1]}}"#),
                "field `device`: expected string, found an array",
            ),
            (&format!(r#"{{"id": 1, {ts}}} trailing"#), "malformed JSON"),
        ];
        for (line, want) in cases {
            let err = s.decode_json(line, "f", 1).unwrap_err();
            assert!(err.starts_with(want), "{line}: {err}");
        }
    }

    #[test]
    fn csv_rows() {
        let s = spec(true);
        let header = csv::StringRecord::from(vec!["ts", "temp", "device", "ok", "n", "other"]);
        let cols = s.csv_columns(&header).unwrap();
        let row = csv::StringRecord::from(vec!["2026-01-01T00:00:00Z", "1.5", "d1", "", "-3", "x"]);
        let r = s.decode_csv(&row, &cols, "f.csv", 2).unwrap();
        assert_eq!(r.values[0], Value::Str("s:f.csv:2".into()));
        assert_eq!(r.values[3], Value::F64(1.5));
        assert_eq!(r.values[4], Value::Null);
        assert_eq!(r.values[5], Value::I64(-3));
        let short = csv::StringRecord::from(vec!["2026-01-01T00:00:00Z"]);
        assert_eq!(
            s.decode_csv(&short, &cols, "f", 3).unwrap_err(),
            "expected 6 columns, found 1"
        );
        let bad = csv::StringRecord::from(vec!["2026-01-01T00:00:00Z", "warm", "d", "", "", ""]);
        assert_eq!(
            s.decode_csv(&bad, &cols, "f", 3).unwrap_err(),
            "field `temp`: expected f64, found `warm`"
        );
        let missing = csv::StringRecord::from(vec!["ts", "temp"]);
        assert!(s
            .csv_columns(&missing)
            .unwrap_err()
            .contains("`device`, `ok`, `n`"));
    }
}
