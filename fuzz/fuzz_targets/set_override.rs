//! `--set KEY=VALUE` overrides on a bundled pipeline: any argument is reported, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

const PIPELINE: &str = include_str!("../../pipelines/iot-hot-readings.toml");

fuzz_target!(|data: &[u8]| {
    let Ok(arg) = std::str::from_utf8(data) else {
        return;
    };
    let args: Vec<String> = arg.split('\u{1}').map(str::to_string).collect();
    let (_plan, diags, source) = weir_engine::plan::load("p.toml", PIPELINE, &args);
    let _ = source.render(&diags, false);
});
