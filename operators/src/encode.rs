//! Encoding records as JSON lines or CSV rows, for sinks.
//!
//! Keys are escaped once when the encoder is built; values are formatted without allocating
//! (integers with `itoa`, floats with `ryu`). Timestamps are written as RFC 3339 (UTC), NULL as
//! JSON `null` or an empty CSV cell, and non-finite floats as `null`.
//!
//! ```
//! use weir_operators::encode::{Encoder, Format};
//! use weir_operators::schema::{Field, Record, Schema};
//! use weir_operators::value::{FieldType, Value};
//!
//! let schema = Schema::new(vec![Field::new("id", FieldType::U64), Field::new("note", FieldType::String)]);
//! let enc = Encoder::new(Format::Jsonl, &schema);
//! let mut out = Vec::new();
//! enc.encode(&Record::new(vec![Value::U64(7), Value::Str("a \"b\"".into())]), &mut out);
//! assert_eq!(String::from_utf8(out).unwrap(), "{\"id\":7,\"note\":\"a \\\"b\\\"\"}\n");
//!
//! let csv = Encoder::new(Format::Csv, &schema);
//! assert_eq!(csv.header().unwrap(), b"id,note\n");
//! let mut out = Vec::new();
//! csv.encode(&Record::new(vec![Value::Null, Value::Str("x,y".into())]), &mut out);
//! assert_eq!(out, b",\"x,y\"\n");
//! ```

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, ListArray, StringArray,
    TimestampMicrosecondArray, UInt64Array,
};
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimeUnit, UInt64Type};

use crate::chunk::Chunk;
use crate::schema::{Record, Schema};
use crate::time::write_rfc3339;
use crate::value::{FieldType, Value};

/// An output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated values with a header row.
    Csv,
}

impl Format {
    /// The format's name in pipeline files.
    pub fn name(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
        }
    }
}

/// Encodes records of one schema.
#[derive(Clone, Debug)]
pub struct Encoder {
    format: Format,
    /// JSON: the fields in the order written (fields sharing a dotted prefix together), each
    /// with what goes before its value: `{` or `,`, the objects it closes and opens, and
    /// `"name":`.
    keys: Vec<(usize, Vec<u8>)>,
    /// JSON: what closes the record (its open nested objects, then `}`).
    close: Vec<u8>,
    /// Whether any field is written nested (a dotted name).
    nested: bool,
    names: Vec<String>,
    /// Which fields are `json`: their text is written as JSON, not as a string.
    json: Vec<bool>,
    /// Whether any field is `json`.
    any_json: bool,
}

impl Encoder {
    /// An encoder for records of `schema`. In JSON a field named by a dotted path (`user.id`)
    /// is written nested (`{"user":{"id":7}}`), the fields of one object together.
    pub fn new(format: Format, schema: &Schema) -> Encoder {
        let paths: Vec<Vec<&str>> = schema
            .fields
            .iter()
            .map(|f| f.name.split('.').collect())
            .collect();
        // The order written: each field after the last one sharing its longest prefix.
        let mut order: Vec<usize> = Vec::with_capacity(paths.len());
        for i in 0..paths.len() {
            let obj = &paths[i][..paths[i].len() - 1];
            let at = (1..=obj.len())
                .rev()
                .find_map(|l| {
                    order
                        .iter()
                        .rposition(|&j| paths[j].len() > l && paths[j][..l] == obj[..l])
                })
                .map_or(order.len(), |p| p + 1);
            order.insert(at, i);
        }
        let key = |k: &mut Vec<u8>, name: &str| {
            let _ = serde_json::to_writer(&mut *k, name);
            k.push(b':');
        };
        let mut keys = Vec::with_capacity(order.len());
        let mut open: &[&str] = &[];
        for (n, &i) in order.iter().enumerate() {
            let p = &paths[i];
            let obj = &p[..p.len() - 1];
            let common = open.iter().zip(obj).take_while(|(a, b)| a == b).count();
            let mut k = Vec::new();
            if n == 0 {
                k.push(b'{');
            }
            k.extend(std::iter::repeat_n(b'}', open.len() - common));
            if n > 0 {
                k.push(b',');
            }
            for seg in &obj[common..] {
                key(&mut k, seg);
                k.push(b'{');
            }
            key(&mut k, p[p.len() - 1]);
            keys.push((i, k));
            open = obj;
        }
        let mut close: Vec<u8> = std::iter::repeat_n(b'}', open.len()).collect();
        close.push(b'}');
        Encoder {
            format,
            nested: paths.iter().any(|p| p.len() > 1),
            keys,
            close,
            names: schema.fields.iter().map(|f| f.name.to_string()).collect(),
            json: schema
                .fields
                .iter()
                .map(|f| f.ty == FieldType::Json)
                .collect(),
            any_json: schema.fields.iter().any(|f| f.ty == FieldType::Json),
        }
    }

    /// Field `i`'s cell, a `json` field's text marked as JSON.
    #[inline]
    fn typed<'a>(&self, i: usize, c: Cell<'a>) -> Cell<'a> {
        match c {
            Cell::Str(s) if self.any_json && self.json[i] => Cell::Json(s),
            c => c,
        }
    }

    /// The header to write once at the top of the output (CSV only).
    pub fn header(&self) -> Option<Vec<u8>> {
        match self.format {
            Format::Jsonl => None,
            Format::Csv => {
                let mut out = Vec::new();
                for (i, n) in self.names.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    csv_cell(n, &mut out);
                }
                out.push(b'\n');
                Some(out)
            }
        }
    }

    /// Appends one record, with its line end.
    pub fn encode(&self, r: &Record, out: &mut Vec<u8>) {
        let cell = |(i, v)| self.typed(i, Cell::of(v));
        match self.nested {
            true => self.encode_nested(|i| cell((i, &r.values[i])), out),
            false => self.encode_cells(r.values.iter().enumerate().map(cell), r.values.len(), out),
        }
    }

    /// Appends every record of a chunk, each with its line end, reading the columns directly.
    pub fn encode_chunk(&self, c: &Chunk, out: &mut Vec<u8>) {
        let views: Vec<View> = c.columns().iter().map(View::of).collect();
        for row in 0..c.len() {
            let views = &views;
            match self.nested {
                true => self.encode_nested(|i| self.typed(i, views[i].get(row)), out),
                false => self.encode_cells(
                    (0..views.len()).map(|i| self.typed(i, views[i].get(row))),
                    views.len(),
                    out,
                ),
            }
        }
    }

    /// A record's cells in schema order (no field nested).
    #[inline]
    fn encode_cells<'a>(&self, cells: impl Iterator<Item = Cell<'a>>, n: usize, out: &mut Vec<u8>) {
        match self.format {
            Format::Jsonl => {
                if n == 0 {
                    out.extend_from_slice(b"{}");
                }
                for ((_, k), v) in self.keys.iter().zip(cells) {
                    out.extend_from_slice(k);
                    json_value(v, out);
                }
                if n > 0 {
                    out.push(b'}');
                }
            }
            Format::Csv => {
                for (i, v) in cells.enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    csv_value(v, out);
                }
            }
        }
        out.push(b'\n');
    }

    /// A record with nested JSON fields: in the order written, by position.
    fn encode_nested<'a>(&self, cell: impl Fn(usize) -> Cell<'a>, out: &mut Vec<u8>) {
        match self.format {
            Format::Jsonl => {
                for (i, k) in &self.keys {
                    out.extend_from_slice(k);
                    json_value(cell(*i), out);
                }
                out.extend_from_slice(&self.close);
                out.push(b'\n');
            }
            Format::Csv => {
                self.encode_cells((0..self.names.len()).map(cell), self.names.len(), out)
            }
        }
    }
}

/// One field's value, borrowed from a row or a column.
#[derive(Clone, Copy)]
enum Cell<'a> {
    Null,
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(&'a str),
    Ts(i64),
    /// A `json` field's text, written as it is.
    Json(&'a str),
    /// A list, from a row.
    Items(&'a [Value]),
    /// A list, row `usize` of a list column.
    ListAt(&'a ListArray, usize),
}

impl<'a> Cell<'a> {
    #[inline]
    fn of(v: &'a Value) -> Cell<'a> {
        match v {
            Value::Null => Cell::Null,
            Value::Bool(b) => Cell::Bool(*b),
            Value::I64(i) => Cell::I64(*i),
            Value::U64(u) => Cell::U64(*u),
            Value::F64(f) => Cell::F64(*f),
            Value::Str(s) => Cell::Str(s),
            Value::Ts(t) => Cell::Ts(*t),
            Value::List(items) => Cell::Items(items),
        }
    }
}

/// A column, downcast once per chunk.
enum View<'a> {
    Null,
    Bool(&'a BooleanArray),
    I64(&'a Int64Array),
    U64(&'a UInt64Array),
    F64(&'a Float64Array),
    Str(&'a StringArray),
    Ts(&'a TimestampMicrosecondArray),
    List(&'a ListArray),
}

impl<'a> View<'a> {
    fn of(a: &'a ArrayRef) -> View<'a> {
        match a.data_type() {
            DataType::Boolean => View::Bool(a.as_boolean()),
            DataType::Int64 => View::I64(a.as_primitive::<Int64Type>()),
            DataType::UInt64 => View::U64(a.as_primitive::<UInt64Type>()),
            DataType::Float64 => View::F64(a.as_primitive::<Float64Type>()),
            DataType::Utf8 => View::Str(a.as_string::<i32>()),
            DataType::Timestamp(TimeUnit::Microsecond, _) => View::Ts(a.as_primitive()),
            DataType::List(_) => View::List(a.as_list::<i32>()),
            _ => View::Null,
        }
    }

    #[inline]
    fn get(&self, row: usize) -> Cell<'a> {
        match self {
            View::Null => Cell::Null,
            View::Bool(a) if a.is_valid(row) => Cell::Bool(a.value(row)),
            View::I64(a) if a.is_valid(row) => Cell::I64(a.value(row)),
            View::U64(a) if a.is_valid(row) => Cell::U64(a.value(row)),
            View::F64(a) if a.is_valid(row) => Cell::F64(a.value(row)),
            View::Str(a) if a.is_valid(row) => Cell::Str(a.value(row)),
            View::Ts(a) if a.is_valid(row) => Cell::Ts(a.value(row)),
            View::List(a) if a.is_valid(row) => Cell::ListAt(a, row),
            _ => Cell::Null,
        }
    }
}

/// Appends `v` as JSON text.
pub fn json_text(v: &Value, out: &mut Vec<u8>) {
    json_value(Cell::of(v), out)
}

fn json_value(v: Cell, out: &mut Vec<u8>) {
    match v {
        Cell::Null => out.extend_from_slice(b"null"),
        Cell::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
        Cell::I64(i) => out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes()),
        Cell::U64(u) => out.extend_from_slice(itoa::Buffer::new().format(u).as_bytes()),
        Cell::F64(f) if f.is_finite() => {
            out.extend_from_slice(ryu::Buffer::new().format_finite(f).as_bytes())
        }
        Cell::F64(_) => out.extend_from_slice(b"null"),
        Cell::Str(s) => {
            let _ = serde_json::to_writer(&mut *out, s);
        }
        Cell::Ts(t) => {
            out.push(b'"');
            write_rfc3339(t, out);
            out.push(b'"');
        }
        Cell::Json(s) => out.extend_from_slice(s.as_bytes()),
        Cell::Items(items) => {
            out.push(b'[');
            for (k, v) in items.iter().enumerate() {
                if k > 0 {
                    out.push(b',');
                }
                json_value(Cell::of(v), out);
            }
            out.push(b']');
        }
        Cell::ListAt(a, row) => {
            let items = View::of(a.values());
            let o = a.value_offsets();
            out.push(b'[');
            for k in o[row] as usize..o[row + 1] as usize {
                if k > o[row] as usize {
                    out.push(b',');
                }
                json_value(items.get(k), out);
            }
            out.push(b']');
        }
    }
}

fn csv_value(v: Cell, out: &mut Vec<u8>) {
    match v {
        Cell::Null => {}
        Cell::Str(s) => csv_cell(s, out),
        Cell::F64(f) if !f.is_finite() => {}
        // RFC 3339 needs no quoting in CSV.
        Cell::Ts(t) => write_rfc3339(t, out),
        // JSON text in one cell, as a CSV source reads it back.
        Cell::Json(s) => csv_cell(s, out),
        c @ (Cell::Items(_) | Cell::ListAt(..)) => {
            let mut text = Vec::new();
            json_value(c, &mut text);
            csv_cell(&String::from_utf8_lossy(&text), out);
        }
        other => json_value(other, out),
    }
}

fn csv_cell(s: &str, out: &mut Vec<u8>) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push(b'"');
        for b in s.bytes() {
            if b == b'"' {
                out.push(b'"');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(s.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::arrow_schema;
    use crate::schema::Field;

    use smol_str::SmolStr;

    /// Dotted names are written nested, the fields of one object together wherever they stand
    /// in the schema; CSV keeps the schema's order and names.
    #[test]
    fn dotted_names_nest_in_json() {
        let names = ["id", "user.id", "v", "user.geo.city", "user.name", "w.x"];
        let schema = Schema::new(
            names
                .iter()
                .map(|n| Field::new(n, FieldType::I64))
                .collect(),
        );
        let r = Record::new((1..=6).map(Value::I64).collect());
        let mut out = Vec::new();
        Encoder::new(Format::Jsonl, &schema).encode(&r, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"id\":1,\"user\":{\"id\":2,\"geo\":{\"city\":4},\"name\":5},\"v\":3,\"w\":{\"x\":6}}\n"
        );
        let mut out = Vec::new();
        let csv = Encoder::new(Format::Csv, &schema);
        csv.encode(&r, &mut out);
        assert_eq!(
            csv.header().unwrap(),
            b"id,user.id,v,user.geo.city,user.name,w.x\n"
        );
        assert_eq!(out, b"1,2,3,4,5,6\n");
        // Nothing nested: the record as before.
        let flat = Schema::new(vec![
            Field::new("a", FieldType::I64),
            Field::new("b", FieldType::I64),
        ]);
        let mut out = Vec::new();
        Encoder::new(Format::Jsonl, &flat)
            .encode(&Record::new(vec![Value::I64(1), Value::Null]), &mut out);
        assert_eq!(out, b"{\"a\":1,\"b\":null}\n");
    }

    /// Encoding a chunk writes exactly the bytes of encoding its rows one by one.
    #[test]
    fn chunks_encode_as_their_rows() {
        let schema = Schema::new(vec![
            Field::new("i", FieldType::I64),
            Field::new("u", FieldType::U64),
            Field::new("f", FieldType::F64),
            Field::new("b", FieldType::Bool),
            Field::new("s", FieldType::String),
            Field::new("t", FieldType::Timestamp),
        ]);
        let strings = [
            "plain",
            "a,b",
            "say \"hi\"",
            "line\nbreak",
            "ünï",
            "",
            "tab\t\u{1}",
        ];
        let floats = [0.5, -0.0, f64::NAN, f64::INFINITY, 1e21, 123.0];
        let rows: Vec<Record> = (0..200u64)
            .map(|k| {
                let null = |m: u64| k % m == 0;
                Record::new(vec![
                    if null(5) {
                        Value::Null
                    } else {
                        Value::I64(k as i64 - 100)
                    },
                    if null(7) {
                        Value::Null
                    } else {
                        Value::U64(u64::MAX - k)
                    },
                    if null(3) {
                        Value::Null
                    } else {
                        Value::F64(floats[k as usize % 6])
                    },
                    if null(4) {
                        Value::Null
                    } else {
                        Value::Bool(k % 2 == 0)
                    },
                    if null(6) {
                        Value::Null
                    } else {
                        Value::Str(SmolStr::new(strings[k as usize % 7]))
                    },
                    if null(9) {
                        Value::Null
                    } else {
                        Value::Ts(k as i64 * 1_234_567 - 50_000_000)
                    },
                ])
            })
            .collect();
        let chunk = Chunk::from_rows(&arrow_schema(&schema), &rows);
        for format in [Format::Jsonl, Format::Csv] {
            let enc = Encoder::new(format, &schema);
            let mut by_rows = Vec::new();
            rows.iter().for_each(|r| enc.encode(r, &mut by_rows));
            let mut by_chunk = Vec::new();
            enc.encode_chunk(&chunk, &mut by_chunk);
            assert_eq!(
                String::from_utf8(by_chunk).unwrap(),
                String::from_utf8(by_rows).unwrap()
            );
        }
        // Hand-checked: NULL, a non-finite float and a timestamp.
        let enc = Encoder::new(Format::Jsonl, &schema);
        let mut out = Vec::new();
        enc.encode_chunk(
            &Chunk::from_rows(&arrow_schema(&schema), &rows[2..3]),
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"i\":-98,\"u\":18446744073709551613,\"f\":null,\"b\":true,\"s\":\"say \\\"hi\\\"\",\"t\":\"1969-12-31T23:59:12.469134Z\"}\n"
        );
    }
}
