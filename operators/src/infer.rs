//! Schema inference: reads a sample of JSON lines or CSV records and says which Weir type
//! each field has, which field is the event time and how its times are written.
//!
//! A field's type is the narrowest that holds every value seen: `bool`, then `i64` (integers
//! that fit), `u64` (larger ones), `f64` (any number), `timestamp` (strings that all read as
//! one [`TimeFormat`]), and `string` for anything else (mixed kinds). A JSON array whose
//! elements are all of one of those kinds is a list of it (`list<string>`); a field holding JSON
//! objects, arrays of mixed or nested values, or such values beside others is `json`. A field
//! seen only as NULL (or empty CSV cells) is a `string`, and said so. The event
//! time is the timestamp field named like one (`ts`, `timestamp`, `time`, `event_time`, …, or
//! ending in `_at`/`_time`), else the first timestamp field; a number field named like one whose
//! values all look like epoch seconds or milliseconds of 2001–2286 is one too.
//!
//! ```
//! use weir_operators::infer::infer_jsonl;
//!
//! let sample = r#"{"id": 1, "ts": "2026-03-01 10:00:00", "t": 20.5, "ok": true}
//! {"id": 2, "ts": "2026-03-01 10:00:01", "t": 21, "ok": false, "note": null}"#;
//! let s = infer_jsonl(sample);
//! assert_eq!(s.toml(), r#"schema = { id = "i64", ts = "timestamp", t = "f64", ok = "bool", note = "string" }
//! timestamp_field = "ts""#);
//! ```

use crate::time::TimeFormat;
use crate::value::FieldType;

/// What a sample says of its fields.
#[derive(Clone, Debug, PartialEq)]
pub struct Inferred {
    /// Each field and its type, in the order first seen.
    pub fields: Vec<(String, FieldType)>,
    /// The event-time field, if one was found.
    pub time_field: Option<String>,
    /// How its times are written, when not the default (`iso8601`).
    pub time_format: Option<String>,
    /// Records read.
    pub records: usize,
    /// What the reader should know: fields seen only as NULL, records that could not be read.
    pub notes: Vec<String>,
}

impl Inferred {
    /// The pipeline keys that declare what was inferred: `schema = { ... }`, then
    /// `timestamp_field` and `timestamp_format` where needed, or `event_time = "ingest"` when no
    /// field holds times.
    pub fn toml(&self) -> String {
        let fields: Vec<String> = self
            .fields
            .iter()
            .map(|(n, t)| format!("{} = \"{}\"", toml_key(n), t.name()))
            .collect();
        let mut out = format!("schema = {{ {} }}", fields.join(", "));
        match &self.time_field {
            Some(t) => out.push_str(&format!("\ntimestamp_field = \"{t}\"")),
            None => out.push_str("\nevent_time = \"ingest\""),
        }
        if let Some(f) = &self.time_format {
            out.push_str(&format!("\ntimestamp_format = \"{f}\""));
        }
        out
    }
}

/// A TOML key: bare when it can be, else quoted.
fn toml_key(k: &str) -> String {
    let bare = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match bare {
        true => k.to_string(),
        // A JSON string is a TOML basic string.
        false => serde_json::to_string(k).unwrap_or_default(),
    }
}

/// The textual time formats tried, in order: ISO 8601 first, then common patterns (day first
/// before month first).
const TEXT_FORMATS: [&str; 6] = [
    "iso8601",
    "%Y/%m/%d %H:%M:%S",
    "%d/%m/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M:%S",
    "%d/%b/%Y:%H:%M:%S %z",
    "%d.%m.%Y %H:%M:%S",
];

/// What one field's values were.
#[derive(Clone, Debug, Default)]
struct Seen {
    name: String,
    nulls: usize,
    bools: usize,
    ints: usize,
    big: usize,
    floats: usize,
    /// Strings, and which of [`TEXT_FORMATS`] read every one so far.
    strings: usize,
    text_formats: Vec<bool>,
    /// JSON objects.
    objects: usize,
    /// JSON arrays, and what their elements were.
    arrays: usize,
    elements: Option<Box<Seen>>,
    /// The least and largest number seen (for epoch times).
    min: f64,
    max: f64,
}

impl Seen {
    fn new(name: &str) -> Seen {
        Seen {
            name: name.to_string(),
            text_formats: vec![true; TEXT_FORMATS.len()],
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            ..Seen::default()
        }
    }

    /// Whether the values other than NULLs were all of one scalar kind (and some were seen).
    fn single_kind(&self) -> bool {
        let kinds = [
            self.bools,
            self.ints + self.big + self.floats,
            self.strings,
            self.objects + self.arrays,
        ];
        self.objects + self.arrays == 0 && kinds.iter().filter(|&&k| k > 0).count() == 1
    }

    fn number(&mut self, v: f64) {
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    fn string(&mut self, s: &str, formats: &[TimeFormat]) {
        self.strings += 1;
        for (ok, f) in self.text_formats.iter_mut().zip(formats) {
            if *ok {
                *ok = f.parse_str(s).is_ok();
            }
        }
    }

    /// A CSV cell: its text read as the narrowest kind it is.
    fn cell(&mut self, s: &str, formats: &[TimeFormat]) {
        let t = s.trim();
        if t.is_empty() {
            self.nulls += 1;
        } else if t == "true" || t == "false" {
            self.bools += 1;
        } else if let Ok(i) = t.parse::<i64>() {
            self.ints += 1;
            self.number(i as f64);
        } else if let Ok(u) = t.parse::<u64>() {
            self.big += 1;
            self.number(u as f64);
        } else if let Some(f) = t.parse::<f64>().ok().filter(|f| f.is_finite()) {
            self.floats += 1;
            self.number(f);
        } else {
            self.string(s, formats);
        }
    }

    fn json(&mut self, v: &serde_json::Value, formats: &[TimeFormat]) {
        use serde_json::Value as J;
        match v {
            J::Null => self.nulls += 1,
            J::Bool(_) => self.bools += 1,
            J::Number(n) if n.is_i64() => {
                self.ints += 1;
                self.number(n.as_f64().unwrap_or(0.0));
            }
            J::Number(n) if n.is_u64() => {
                self.big += 1;
                self.number(n.as_f64().unwrap_or(0.0));
            }
            J::Number(n) => {
                self.floats += 1;
                self.number(n.as_f64().unwrap_or(0.0));
            }
            J::String(s) => self.string(s, formats),
            J::Array(items) => {
                self.arrays += 1;
                let e = self.elements.get_or_insert_with(|| Box::new(Seen::new("")));
                items.iter().for_each(|v| e.json(v, formats));
            }
            J::Object(_) => self.objects += 1,
        }
    }

    /// The field's type, and the index of the text format of its times, if it holds times.
    fn ty(&self) -> (FieldType, Option<usize>) {
        if self.objects + self.arrays > 0 {
            // Arrays only, of scalars of one kind (ISO 8601 times, which lists read by
            // default): a list of that kind. Anything else nested: JSON, which holds any value.
            let elem = self.elements.as_ref().map(|e| e.ty());
            let only_arrays = self.objects == 0
                && self.bools + self.ints + self.big + self.floats + self.strings == 0;
            return match elem {
                Some((t, f)) if only_arrays && matches!(f, None | Some(0)) => {
                    match crate::value::ListOf::of(t) {
                        // Arrays that held only NULLs or nothing say nothing of a type.
                        Some(l) if self.elements.as_ref().is_some_and(|e| e.single_kind()) => {
                            (FieldType::List(l), None)
                        }
                        _ => (FieldType::Json, None),
                    }
                }
                _ => (FieldType::Json, None),
            };
        }
        let kinds = [self.bools, self.ints + self.big + self.floats, self.strings];
        if kinds.iter().filter(|&&k| k > 0).count() != 1 {
            // Mixed kinds (or only NULLs): a string holds any of them.
            return (FieldType::String, None);
        }
        if self.bools > 0 {
            (FieldType::Bool, None)
        } else if self.floats > 0 {
            (FieldType::F64, None)
        } else if self.big > 0 {
            (
                if self.min >= 0.0 {
                    FieldType::U64
                } else {
                    FieldType::F64
                },
                None,
            )
        } else if self.ints > 0 {
            (FieldType::I64, None)
        } else if self.strings > 0 {
            match self.text_formats.iter().position(|&ok| ok) {
                Some(f) => (FieldType::Timestamp, Some(f)),
                None => (FieldType::String, None),
            }
        } else {
            (FieldType::String, None)
        }
    }
}

/// Whether a field's name says it holds event times.
fn time_like(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(
        n.trim_start_matches('@'),
        "ts" | "timestamp" | "time" | "event_time" | "eventtime" | "datetime" | "date" | "created"
    ) || n.ends_with("_at")
        || n.ends_with("_time")
        || n.ends_with("_ts")
}

fn finish(seen: Vec<Seen>, records: usize, mut notes: Vec<String>) -> Inferred {
    let mut fields = Vec::with_capacity(seen.len());
    let mut time_formats = Vec::with_capacity(seen.len());
    for s in &seen {
        let (ty, format) = s.ty();
        if s.nulls > 0 && s.nulls == records.max(1) && ty == FieldType::String {
            notes.push(format!(
                "`{}` was NULL in every record read: typed string",
                s.name
            ));
        } else if ty == FieldType::Json {
            notes.push(format!(
                "`{}` holds JSON objects or arrays of mixed values: typed json (read it with json_get_str(...) and friends)",
                s.name
            ));
        }
        fields.push((s.name.clone(), ty));
        time_formats.push(format);
    }
    // The event time: a timestamp field named like one, else the first timestamp field.
    let stamps: Vec<usize> = (0..fields.len())
        .filter(|&i| fields[i].1 == FieldType::Timestamp)
        .collect();
    let mut time = stamps
        .iter()
        .copied()
        .find(|&i| time_like(&fields[i].0))
        .or(stamps.first().copied());
    let mut time_format = time
        .and_then(|i| time_formats[i])
        .map(|f| TEXT_FORMATS[f].to_string());
    // A source has one format: timestamp fields written another way stay strings.
    for &i in &stamps {
        if time_formats[i].map(|f| TEXT_FORMATS[f]) != time_format.as_deref() {
            fields[i].1 = FieldType::String;
            notes.push(format!(
                "`{}` holds times written otherwise than `{}`: typed string",
                fields[i].0,
                fields[time.expect("a time field")].0
            ));
        }
    }
    if time.is_none() {
        // Epoch numbers in a field named like a time: seconds or milliseconds of 2001-2286.
        for (i, s) in seen.iter().enumerate() {
            let numeric = matches!(
                fields[i].1,
                FieldType::I64 | FieldType::U64 | FieldType::F64
            );
            if !numeric || !time_like(&s.name) || s.min > s.max {
                continue;
            }
            let unit = if s.min >= 1e9 && s.max < 1e10 {
                "epoch_s"
            } else if s.min >= 1e12 && s.max < 1e13 {
                "epoch_ms"
            } else {
                continue;
            };
            fields[i].1 = FieldType::Timestamp;
            time = Some(i);
            time_format = Some(unit.to_string());
            break;
        }
    }
    Inferred {
        time_field: time.map(|i| fields[i].0.clone()),
        time_format: time_format.filter(|f| f != "iso8601"),
        fields,
        records,
        notes,
    }
}

fn formats() -> Vec<TimeFormat> {
    TEXT_FORMATS
        .iter()
        .map(|f| TimeFormat::configure(Some(f), None).expect("the built-in formats are valid"))
        .collect()
}

/// A JSON object's members in the order written.
struct Ordered(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Ordered, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Ordered, A::Error> {
                let mut v = Vec::new();
                while let Some(e) = m.next_entry()? {
                    v.push(e);
                }
                Ok(Ordered(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// Infers the schema of JSON lines (each an object; blank lines skipped, others noted).
pub fn infer_jsonl(sample: &str) -> Inferred {
    let formats = formats();
    let mut seen: Vec<Seen> = Vec::new();
    let (mut records, mut bad) = (0, 0);
    for line in sample.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(Ordered(o)) = serde_json::from_str::<Ordered>(line) else {
            bad += 1;
            continue;
        };
        for s in seen.iter_mut() {
            if !o.iter().any(|(k, _)| *k == s.name) {
                s.nulls += 1;
            }
        }
        for (k, v) in &o {
            let i = match seen.iter().position(|s| s.name == *k) {
                Some(i) => i,
                None => {
                    let mut s = Seen::new(k);
                    s.nulls = records;
                    seen.push(s);
                    seen.len() - 1
                }
            };
            seen[i].json(v, &formats);
        }
        records += 1;
    }
    let notes = match bad {
        0 => Vec::new(),
        n => vec![format!(
            "{n} line(s) were not JSON objects and were left out"
        )],
    };
    finish(seen, records, notes)
}

/// Infers the schema of CSV text with a header row.
pub fn infer_csv(sample: &str, delimiter: u8) -> Result<Inferred, String> {
    let formats = formats();
    let mut r = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .from_reader(sample.as_bytes());
    let header = r
        .headers()
        .map_err(|e| format!("cannot read the CSV header: {e}"))?;
    let mut seen: Vec<Seen> = header.iter().map(|h| Seen::new(h.trim())).collect();
    if seen.is_empty() {
        return Err("the CSV header names no columns".into());
    }
    let (mut records, mut bad) = (0, 0);
    for row in r.records() {
        // The sample may end inside a record: a short last row is left out.
        let Ok(row) = row else {
            bad += 1;
            continue;
        };
        if row.len() != seen.len() {
            bad += 1;
            continue;
        }
        for (s, cell) in seen.iter_mut().zip(row.iter()) {
            s.cell(cell, &formats);
        }
        records += 1;
    }
    let notes = match bad {
        0 => Vec::new(),
        n => vec![format!(
            "{n} record(s) did not have one cell per column and were left out"
        )],
    };
    Ok(finish(seen, records, notes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_types_nulls_and_mixed_columns() {
        let s = infer_jsonl(
            r#"{"id": 1, "at": "2026-03-01T10:00:00Z", "n": 1, "x": 1, "big": 18446744073709551615, "s": "a", "o": {"k": 1}, "z": null, "l": [1, null], "e": [], "m": [1]}
{"id": 2, "at": "2026-03-01T10:00:01Z", "n": 2.5, "x": "one", "big": 1, "s": "b", "o": [1], "z": null, "l": [2.5], "e": [], "m": ["a"]}
not json
"#,
        );
        assert_eq!(
            s.fields,
            vec![
                ("id".to_string(), FieldType::I64),
                ("at".to_string(), FieldType::Timestamp),
                ("n".to_string(), FieldType::F64),
                ("x".to_string(), FieldType::String),
                ("big".to_string(), FieldType::U64),
                ("s".to_string(), FieldType::String),
                ("o".to_string(), FieldType::Json),
                ("z".to_string(), FieldType::String),
                ("l".to_string(), FieldType::List(crate::value::ListOf::F64)),
                ("e".to_string(), FieldType::Json),
                ("m".to_string(), FieldType::Json),
            ]
        );
        assert_eq!(s.time_field.as_deref(), Some("at"));
        assert_eq!(s.time_format, None);
        assert_eq!(s.records, 2);
        assert_eq!(s.notes.len(), 5, "{:?}", s.notes);
        assert!(s
            .notes
            .iter()
            .any(|n| n.contains("`z` was NULL in every record")));
        assert!(s.notes.iter().any(|n| n.contains("`o` holds JSON objects")));
        assert!(s.notes.iter().any(|n| n.contains("`m` holds JSON objects")));
        assert!(s
            .notes
            .iter()
            .any(|n| n.contains("1 line(s) were not JSON")));
    }

    #[test]
    fn csv_cells_patterns_and_epochs() {
        let s = infer_csv(
            "name,when,qty,price,flag,empty,created_ms\n\
             a,01/03/2026 10:00:00,3,1.5,true,,1772359200000\n\
             b,13/03/2026 10:00:00,-4,2,false,,1772359201000\n",
            b',',
        )
        .unwrap();
        assert_eq!(
            s.toml(),
            "schema = { name = \"string\", when = \"timestamp\", qty = \"i64\", price = \"f64\", flag = \"bool\", empty = \"string\", created_ms = \"i64\" }\n\
             timestamp_field = \"when\"\ntimestamp_format = \"%d/%m/%Y %H:%M:%S\""
        );
        // No text times: a number field named like a time, in epoch milliseconds.
        let s = infer_csv(
            "id,event_ts,v\n1,1772359200000,2\n2,1772359200500,3\n",
            b',',
        )
        .unwrap();
        assert_eq!(s.time_field.as_deref(), Some("event_ts"));
        assert_eq!(s.time_format.as_deref(), Some("epoch_ms"));
        assert_eq!(s.fields[1].1, FieldType::Timestamp);
        // No times at all: processing time.
        let s = infer_csv("k,v\na,1\n", b',').unwrap();
        assert!(
            s.toml().ends_with("event_time = \"ingest\""),
            "{}",
            s.toml()
        );
        // A quoted key.
        let s = infer_csv("\"a b\",c\n1,2\n", b',').unwrap();
        assert!(
            s.toml().starts_with("schema = { \"a b\" = \"i64\""),
            "{}",
            s.toml()
        );
    }
}
