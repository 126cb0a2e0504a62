//! Fuzz-style robustness: truncated, mutated and random pipeline files never make validation
//! panic, and random records never make decoding panic.

mod common;

use weir_engine::plan;
use weir_operators::decode::{DecodeSpec, OnError};
use weir_operators::schema::{Field, Schema};
use weir_operators::time::TimeFormat;
use weir_operators::value::FieldType;

/// A small deterministic generator, so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn bundled_texts() -> Vec<String> {
    std::fs::read_dir(common::root().join("pipelines"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

#[test]
fn truncated_pipelines_never_panic() {
    for text in bundled_texts() {
        for cut in (0..=text.len()).filter(|&i| text.is_char_boundary(i)) {
            let (_plan, _diags, _src) = plan::load("t.toml", &text[..cut], &[]);
        }
    }
}

#[test]
fn mutated_pipelines_never_panic_and_errors_have_places() {
    let texts = bundled_texts();
    let alphabet: Vec<char> = "[]{}=\".,'#\n 0123456789abcxyz_-<>*()tsf\\é"
        .chars()
        .collect();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for round in 0..3000 {
        let mut chars: Vec<char> = texts[round % texts.len()].chars().collect();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(chars.len() + 1);
            match rng.below(3) {
                0 if at < chars.len() => {
                    chars.remove(at);
                }
                1 => chars.insert(at, alphabet[rng.below(alphabet.len())]),
                _ if at < chars.len() => chars[at] = alphabet[rng.below(alphabet.len())],
                _ => {}
            }
        }
        let text: String = chars.into_iter().collect();
        let overrides = [
            "sources.x.y=1".to_string(),
            "a=b=c".to_string(),
            "pipeline.workers=0".to_string(),
        ];
        let (plan, diags, src) = plan::load("m.toml", &text, &overrides[..rng.below(4)]);
        if plan.is_none() {
            assert!(!diags.is_empty(), "a rejected pipeline says why:\n{text}");
        }
        // Rendering must not panic either, and every span must lie inside the text.
        for d in &diags {
            if let Some(s) = &d.span {
                assert!(s.start <= s.end && s.end <= src.text.len(), "{d:?}");
            }
        }
        let _ = src.render(&diags, false);
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(42);
    for _ in 0..2000 {
        let len = rng.below(200);
        let bytes: Vec<u8> = (0..len).map(|_| (rng.next() & 0x7f) as u8).collect();
        let text = String::from_utf8_lossy(&bytes);
        let _ = plan::load("r.toml", &text, &[]);
    }
}

#[test]
fn random_records_never_panic_the_decoders() {
    let schema = Schema::new(vec![
        Field::new("id", FieldType::U64),
        Field::new("ts", FieldType::Timestamp),
        Field::new("s", FieldType::String),
        Field::new("f", FieldType::F64),
        Field::new("b", FieldType::Bool),
        Field::new("i", FieldType::I64),
    ])
    .with_time("ts")
    .with_id("id");
    let texts = [
        TimeFormat::configure(Some("%d/%b/%Y:%H:%M:%S %z"), None).unwrap(),
        TimeFormat::configure(Some("%Y-%m-%d %H:%M"), Some("America/New_York")).unwrap(),
        TimeFormat::configure(None, Some("Asia/Seoul")).unwrap(),
    ];
    let specs: Vec<DecodeSpec> = TimeFormat::NAMED
        .into_iter()
        .chain(texts)
        .map(|f| DecodeSpec::new("src", schema.clone(), f, false, OnError::DeadLetter))
        .collect();
    let good = r#"{"id": 1, "ts": 1700000000000, "s": "x", "f": 1.5, "b": true, "i": -3}"#;
    let pieces = [
        "{",
        "}",
        "[",
        "]",
        "\"",
        ":",
        ",",
        "1e999",
        "-",
        "null",
        "\\u0000",
        "é",
        "18446744073709551616",
        " ",
    ];
    let mut rng = Rng(7);
    for _ in 0..20000 {
        let mut line: Vec<char> = good.chars().collect();
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(line.len() + 1);
            let piece = pieces[rng.below(pieces.len())];
            if rng.below(2) == 0 && at < line.len() {
                line.truncate(at);
            }
            let tail: Vec<char> = line.split_off(at.min(line.len()));
            line.extend(piece.chars());
            line.extend(tail);
        }
        let line: String = line.into_iter().collect();
        for spec in &specs {
            let _ = spec.decode_json(&line, "f", 1);
            let row = csv::StringRecord::from(line.split(',').collect::<Vec<_>>());
            let cols: Vec<Option<usize>> = (0..row.len()).map(|c| (c < 6).then_some(c)).collect();
            let _ = spec.decode_csv(&row, &cols, "f", 1);
        }
    }
}
