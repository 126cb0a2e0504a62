//! The pipeline parser and planner on arbitrary bytes: validation never panics, and every
//! error it reports points inside the text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (_plan, diags, source) = weir_engine::plan::load("fuzz.toml", text, &[]);
    for d in &diags {
        if let Some(span) = &d.span {
            assert!(span.start <= source.text.len(), "{d:?}");
        }
    }
    let _ = source.render(&diags, false);
});
