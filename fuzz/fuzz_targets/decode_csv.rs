//! CSV framing and decoding on arbitrary bytes: every physical line is part of a record, one
//! bad record or one blank line, in order, and decoding never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_operators::decode::{DecodeSpec, OnError};
use weir_operators::framing::{CsvItem, CsvRecords};
use weir_operators::schema::{Field, Schema};
use weir_operators::time::TimeFormat;
use weir_operators::value::FieldType;

fuzz_target!(|data: &[u8]| {
    let schema = Schema::new(vec![
        Field::new("id", FieldType::String),
        Field::new("ts", FieldType::Timestamp),
        Field::new("v", FieldType::F64),
    ])
    .with_time("ts")
    .with_id("id");
    let spec = DecodeSpec::new("s", schema, TimeFormat::EpochMs, true, OnError::DeadLetter);
    let header = csv::StringRecord::from(vec!["ts", "v"]);
    let columns = spec.csv_columns(&header).unwrap();
    let mut records = CsvRecords::new(data, b',', 4096);
    let mut row = csv::StringRecord::new();
    let mut covered = 0u64;
    let mut last = 0;
    while let Some(item) = records.next(&mut row).unwrap() {
        let line = match item {
            CsvItem::Row { line } => {
                let _ = spec.decode_csv(&row, &columns, "f", line);
                covered += records.raw().matches('\n').count() as u64 + 1;
                line
            }
            CsvItem::Bad { line, .. } => {
                covered += records.raw().matches('\n').count() as u64 + 1;
                line
            }
            CsvItem::Blank { line } => {
                covered += 1;
                line
            }
        };
        assert!(line > last);
        last = line;
    }
    let newlines = data.iter().filter(|b| **b == b'\n').count() as u64;
    let physical = newlines + u64::from(!data.is_empty() && !data.ends_with(b"\n"));
    assert_eq!(covered, physical);
});
