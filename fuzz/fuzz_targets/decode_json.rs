//! The JSON-lines decoder on arbitrary lines: a record or a reason, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_operators::decode::{DecodeSpec, OnError};
use weir_operators::schema::{Field, Schema};
use weir_operators::time::TimeFormat;
use weir_operators::value::FieldType;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    for format in [TimeFormat::Rfc3339, TimeFormat::EpochMs, TimeFormat::EpochS] {
        let schema = Schema::new(vec![
            Field::new("id", FieldType::String),
            Field::new("ts", FieldType::Timestamp),
            Field::new("t", FieldType::F64),
            Field::new("n", FieldType::I64),
            Field::new("u", FieldType::U64),
            Field::new("b", FieldType::Bool),
        ])
        .with_time("ts")
        .with_id("id");
        let spec = DecodeSpec::new("s", schema, format, true, OnError::DeadLetter);
        let _ = spec.decode_json(line, "f", 1);
    }
});
