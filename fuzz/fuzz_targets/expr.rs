//! The expression compiler on arbitrary text, and evaluation of whatever compiles.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_operators::expr::Expr;
use weir_operators::schema::{Field, Schema};
use weir_operators::value::{FieldType, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let schema = Schema::new(vec![
        Field::new("kind", FieldType::String),
        Field::new("temperature", FieldType::F64),
        Field::new("battery", FieldType::I64),
        Field::new("n", FieldType::U64),
        Field::new("ts", FieldType::Timestamp),
        Field::new("ok", FieldType::Bool),
    ]);
    match Expr::compile(text, &schema) {
        Ok(e) => {
            for row in [
                vec![
                    Value::Str("reading".into()),
                    Value::F64(21.5),
                    Value::I64(i64::MIN),
                    Value::U64(u64::MAX),
                    Value::Ts(i64::MAX),
                    Value::Bool(true),
                ],
                vec![Value::Null; 6],
            ] {
                let _ = e.eval(&row);
            }
        }
        Err(err) => {
            assert!(err.span.start <= text.len() && err.span.end <= text.len());
            assert!(text.is_char_boundary(err.span.start) && text.is_char_boundary(err.span.end));
        }
    }
});
