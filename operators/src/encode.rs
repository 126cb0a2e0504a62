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

use crate::schema::{Record, Schema};
use crate::time::write_rfc3339;
use crate::value::Value;

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
    /// JSON: `"name":` for each field, with a leading `{` or `,`.
    keys: Vec<Vec<u8>>,
    names: Vec<String>,
}

impl Encoder {
    /// An encoder for records of `schema`.
    pub fn new(format: Format, schema: &Schema) -> Encoder {
        let keys = schema
            .fields
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let mut k = Vec::new();
                k.push(if i == 0 { b'{' } else { b',' });
                let _ = serde_json::to_writer(&mut k, f.name.as_str());
                k.push(b':');
                k
            })
            .collect();
        Encoder {
            format,
            keys,
            names: schema.fields.iter().map(|f| f.name.to_string()).collect(),
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
        match self.format {
            Format::Jsonl => {
                if r.values.is_empty() {
                    out.extend_from_slice(b"{}");
                }
                for (k, v) in self.keys.iter().zip(&r.values) {
                    out.extend_from_slice(k);
                    json_value(v, out);
                }
                if !r.values.is_empty() {
                    out.push(b'}');
                }
            }
            Format::Csv => {
                for (i, v) in r.values.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    csv_value(v, out);
                }
            }
        }
        out.push(b'\n');
    }
}

fn json_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::I64(i) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
        Value::U64(u) => out.extend_from_slice(itoa::Buffer::new().format(*u).as_bytes()),
        Value::F64(f) if f.is_finite() => {
            out.extend_from_slice(ryu::Buffer::new().format_finite(*f).as_bytes())
        }
        Value::F64(_) => out.extend_from_slice(b"null"),
        Value::Str(s) => {
            let _ = serde_json::to_writer(&mut *out, s.as_str());
        }
        Value::Ts(t) => {
            out.push(b'"');
            write_rfc3339(*t, out);
            out.push(b'"');
        }
    }
}

fn csv_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => {}
        Value::Str(s) => csv_cell(s, out),
        Value::F64(f) if !f.is_finite() => {}
        // RFC 3339 needs no quoting in CSV.
        Value::Ts(t) => write_rfc3339(*t, out),
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
