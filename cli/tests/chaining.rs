//! Chained stateless transforms: a run of filters and maps, each read only by the next, runs as
//! one operator, and must give exactly what separate operators give: every component's own
//! counts and every sink's records, on 1 and 2 workers. The expected values come from the
//! generator's events as rows, filtered and mapped here by hand.

use std::collections::BTreeMap;

use serde_json::Value as Json;
use weir_operators::generator::{GeneratorSpec, Profile};

const EVENTS: u64 = 6_000;

/// A filter and a map chained (the map is read by two filters, so the chain ends there), then
/// a filter and a map chained on one branch and a single filter on the other.
fn pipeline(dir: &std::path::Path) -> String {
    format!(
        r#"
[pipeline]
name = "chaining"

[sources.g]
type = "generator"
profile = "iot"
events = {EVENTS}
devices = 50
seed = 3
start = "2026-01-01T00:00:00Z"
event_time_interval = "1ms"

[transforms.readings]
type = "filter"
inputs = ["g"]
condition = "kind = 'reading'"

[transforms.doubled]
type = "map"
inputs = ["readings"]
select = ["id", "device_id"]
compute = {{ t = "temperature * 2" }}

[transforms.hot]
type = "filter"
inputs = ["doubled"]
condition = "t > 50"

[transforms.hot_ids]
type = "map"
inputs = ["hot"]
select = ["id", "t"]

[transforms.cold]
type = "filter"
inputs = ["doubled"]
condition = "t <= 30"

[sinks.h]
type = "file"
inputs = ["hot_ids"]
path = "{h}"

[sinks.c]
type = "file"
inputs = ["cold"]
path = "{c}"
"#,
        h = dir.join("hot.jsonl").display(),
        c = dir.join("cold.jsonl").display(),
    )
}

/// The records of a JSON-lines file, sorted by id.
fn records(path: &std::path::Path) -> Vec<Json> {
    let mut v: Vec<Json> = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    v.sort_by_key(|r| r["id"].as_u64());
    v
}

#[test]
fn chained_filters_and_maps_count_and_output_as_separate_ones() {
    // By hand, from the generator's events as rows: (id, device, 2 * temperature) of readings.
    let spec = GeneratorSpec {
        devices: 50,
        seed: 3,
        ..GeneratorSpec::new(Profile::Iot)
    };
    let doubled: Vec<(u64, String, f64)> = (0..EVENTS)
        .map(|i| spec.event(i, 0).values)
        .filter(|v| v[2].as_str() == Some("reading"))
        .map(|v| {
            let id = v[0].as_u64().unwrap();
            let device = v[3].as_str().unwrap().to_string();
            (id, device, v[4].as_f64().unwrap() * 2.0)
        })
        .collect();
    let hot: Vec<Json> = doubled
        .iter()
        .filter(|d| d.2 > 50.0)
        .map(|(id, _, t)| serde_json::json!({ "id": id, "t": t }))
        .collect();
    let cold: Vec<Json> = doubled
        .iter()
        .filter(|d| d.2 <= 30.0)
        .map(|(id, device, t)| serde_json::json!({ "id": id, "device_id": device, "t": t }))
        .collect();
    let n = doubled.len() as u64;
    let want: BTreeMap<&str, (u64, u64)> = [
        ("g", (0, EVENTS)),
        ("readings", (EVENTS, n)),
        ("doubled", (n, n)),
        ("hot", (n, hot.len() as u64)),
        ("hot_ids", (hot.len() as u64, hot.len() as u64)),
        ("cold", (n, cold.len() as u64)),
        ("h", (hot.len() as u64, hot.len() as u64)),
        ("c", (cold.len() as u64, cold.len() as u64)),
    ]
    .into_iter()
    .collect();
    assert!(!hot.is_empty() && !cold.is_empty() && n < EVENTS);

    for workers in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let text = pipeline(dir.path());
        let (plan, diags, _) = weir_engine::plan::load("chaining.toml", &text, &[]);
        assert!(diags.is_empty(), "{diags:?}");
        let opts = weir_engine::run::RunOptions {
            workers: Some(workers),
            ..Default::default()
        };
        let report = weir_engine::run::run(&plan.unwrap(), &opts, Default::default()).unwrap();
        let mut got: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for c in &report.components {
            if let Some(id) = want.keys().find(|k| **k == c.id) {
                got.insert(id, (c.metrics.records_in, c.metrics.records_out));
            }
        }
        // A source counts nothing in.
        got.entry("g").and_modify(|v| v.0 = 0);
        assert_eq!(got, want, "{workers} workers");
        assert_eq!(
            records(&dir.path().join("hot.jsonl")),
            hot,
            "{workers} workers"
        );
        assert_eq!(
            records(&dir.path().join("cold.jsonl")),
            cold,
            "{workers} workers"
        );
    }
}
