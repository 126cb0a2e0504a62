//! Joins end to end: the interval join against a brute-force nested-loop reference computed
//! here from the raw generator events, inner and left outer, with out-of-order and late input,
//! in both modes on 1, 2 and 4 workers; its state bounded over a long run.

mod common;

use std::collections::BTreeMap;

use common::*;
use serde_json::Value;
use weir_operators::generator::Profile;
use weir_operators::time::parse_rfc3339;

const S: i64 = 1_000_000;

/// (view id, click id or None), sorted.
type Pairs = Vec<(u64, Option<u64>)>;

/// The brute-force reference for `pipelines/clickstream-view-click.toml` with `n` events: every
/// view joined with every click by the same user 0..=10 s after it; late events (behind their
/// watermark: undisordered time - 1 s) dropped; views without a click kept when `outer`.
fn reference(n: u64, outer: bool) -> (Pairs, u64) {
    let (spec, start) = generator(&bundled_text("clickstream-view-click.toml"), "clicks", &[]);
    let schema = Profile::Clickstream.schema();
    let (ev, user) = (
        schema.index_of("event").unwrap(),
        schema.index_of("user_id").unwrap(),
    );
    let (mut views, mut clicks) = (Vec::new(), Vec::new());
    let mut late = 0;
    for i in 0..n {
        let base = start + i as i64 * 5_000;
        let ts = spec.disordered(i, base);
        let r = spec.event(i, ts);
        let kind = r.values[ev].as_str().unwrap();
        if kind != "page_view" && kind != "click" {
            continue;
        }
        if ts < base - S {
            late += 1;
            continue;
        }
        let row = (i, ts, r.values[user].as_str().unwrap().to_string());
        if kind == "page_view" {
            views.push(row);
        } else {
            clicks.push(row);
        }
    }
    let mut pairs = Vec::new();
    for (vi, vt, vu) in &views {
        let mut matched = false;
        for (ci, ct, cu) in &clicks {
            if vu == cu && *ct >= *vt && *ct <= vt + 10 * S {
                pairs.push((*vi, Some(*ci)));
                matched = true;
            }
        }
        if outer && !matched {
            pairs.push((*vi, None));
        }
    }
    pairs.sort();
    (pairs, late)
}

fn pairs(path: &std::path::Path) -> Pairs {
    let mut v: Pairs = json_lines(path)
        .iter()
        .map(|r| (r["view_id"].as_u64().unwrap(), r["click_id"].as_u64()))
        .collect();
    v.sort();
    v
}

#[test]
fn interval_join_matches_a_nested_loop_reference() {
    let dir = workspace();
    let n = 20_000;
    for (how, outer) in [("left", true), ("inner", false)] {
        let (want, late) = reference(n, outer);
        assert!(late > 10, "the input has late events");
        assert!(
            want.iter().any(|p| p.1.is_some()) && (!outer || want.iter().any(|p| p.1.is_none()))
        );
        for config in configurations() {
            let mut extra = config.clone();
            let join = format!("transforms.view_click.join=\"{how}\"");
            extra.extend(["--set", "sources.clicks.events=20000", "--set", &join]);
            let err = run_ok(dir.path(), "pipelines/clickstream-view-click.toml", &extra);
            assert_eq!(
                pairs(&dir.path().join("out/view-click.jsonl")),
                want,
                "{how} {config:?}"
            );
            assert!(
                err.contains(&format!(
                    "transforms.view_click: {late} late records: {late} dropped"
                )),
                "{err}"
            );
        }
    }
}

/// 400,000 events over 33 minutes of event time: the join keeps only the records the watermark
/// can still reach (about 10 s of views and clicks), not the whole run.
#[test]
fn interval_join_state_is_freed_by_the_watermark() {
    let dir = workspace();
    let report = dir.path().join("r.json");
    run_ok(
        dir.path(),
        "pipelines/clickstream-view-click.toml",
        &[
            "--workers",
            "1",
            "--report",
            report.to_str().unwrap(),
            "--set",
            "sources.clicks.events=400000",
        ],
    );
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let j = r["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["component"] == "transforms.view_click")
        .unwrap();
    let (input, max_state) = (
        j["records_in"].as_u64().unwrap(),
        j["max_state"].as_u64().unwrap(),
    );
    assert_eq!(j["state"], 0, "{j}");
    assert!(input > 300_000, "{j}");
    // Stored records span the 10 s interval, the 1 s bound and one batch of 65,536 events at
    // most (~90% of them views or clicks): far below the input.
    assert!(max_state < 80_000, "{j}");
    assert!(max_state * 4 < input, "{j}");
}

#[test]
fn join_configuration_errors_name_the_place() {
    let dir = tempfile::tempdir().unwrap();
    let base =
        std::fs::read_to_string(root().join("pipelines/clickstream-view-click.toml")).unwrap();
    let bad = base
        .replace("on = [\"user_id\"]", "on = [\"user\"]")
        .replace(
            "between = [\"0s\", \"10s\"]",
            "between = [\"10s\", \"-1 fortnight\"]",
        )
        .replace("\"right.page AS click_page\"", "\"page\"");
    let p = write(dir.path(), "p.toml", &bad);
    let out = weir(dir.path(), &["validate", &p], "");
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    for want in [
        "`on` names `user`, which is not a field of the left input",
        "did you mean `user_id`?",
        "`-1 fortnight` is not a duration",
        "`page` does not say which input it is from",
        "write left.FIELD or right.FIELD",
    ] {
        assert!(err.contains(want), "wants {want:?}:\n{err}");
    }
    let three = base.replace(
        "inputs = [\"views\", \"clicked\"]",
        "inputs = [\"views\", \"clicked\", \"clicks\"]",
    );
    let p = write(dir.path(), "p.toml", &three);
    let err = stderr(&weir(dir.path(), &["validate", &p], ""));
    assert!(
        err.contains("a join reads exactly two inputs, left then right, not 3"),
        "{err}"
    );
    let temporal = base.replace("kind = \"interval\"", "kind = \"temporal\"");
    let p = write(dir.path(), "p.toml", &temporal);
    let err = stderr(&weir(dir.path(), &["validate", &p], ""));
    assert!(err.contains("a temporal join has no `between`"), "{err}");
    assert!(
        err.contains("each left record meets the right version valid at its time"),
        "{err}"
    );
    let window = base.replace("kind = \"interval\"", "kind = \"window\"");
    let p = write(dir.path(), "p.toml", &window);
    let err = stderr(&weir(dir.path(), &["validate", &p], ""));
    assert!(err.contains("a window join has no `between`"), "{err}");
    assert!(err.contains("a window join needs `size`"), "{err}");
}

/// With late = "side-output", late views go to `view_click.late` and late clicks to
/// `view_click.late_right`, unchanged: exactly the late events of the reference.
#[test]
fn late_join_inputs_go_to_their_side_outputs() {
    let dir = workspace();
    let (_, late) = reference(20_000, true);
    let base =
        std::fs::read_to_string(dir.path().join("pipelines/clickstream-view-click.toml")).unwrap();
    let text = base.replace("late = \"drop\"", "late = \"side-output\"")
        + "\n[sinks.late_views]\ntype = \"file\"\ninputs = [\"view_click.late\"]\npath = \"out/late-views.jsonl\"\n\n[sinks.late_clicks]\ntype = \"file\"\ninputs = [\"view_click.late_right\"]\npath = \"out/late-clicks.jsonl\"\n";
    let p = write(dir.path(), "side.toml", &text);
    let err = run_ok(dir.path(), &p, &["--set", "sources.clicks.events=20000"]);
    let views = json_lines(&dir.path().join("out/late-views.jsonl"));
    let clicks = json_lines(&dir.path().join("out/late-clicks.jsonl"));
    assert!(views.iter().all(|v| v["event"] == "page_view"));
    assert!(clicks.iter().all(|v| v["event"] == "click"));
    assert_eq!((views.len() + clicks.len()) as u64, late);
    assert!(
        err.contains(&format!(
            "{late} late records: {late} sent to the late output"
        )),
        "{err}"
    );
}

/// Window joins, inner, left and full, tumbling and sliding, over out-of-order input with late
/// events dropped, against a nested-loop reference: per window and user, every view with every
/// click, plus the unmatched rows the join keeps.
#[test]
fn window_join_matches_a_nested_loop_reference() {
    let dir = workspace();
    let n = 20_000u64;
    let (spec, start) = generator(&bundled_text("clickstream-view-click.toml"), "clicks", &[]);
    let schema = Profile::Clickstream.schema();
    let (ev, user) = (
        schema.index_of("event").unwrap(),
        schema.index_of("user_id").unwrap(),
    );
    // (id, ts, base, user, is_view)
    let mut rows = Vec::new();
    for i in 0..n {
        let base = start + i as i64 * 5_000;
        let ts = spec.disordered(i, base);
        let r = spec.event(i, ts);
        let kind = r.values[ev].as_str().unwrap();
        if kind == "page_view" || kind == "click" {
            rows.push((
                i,
                ts,
                base,
                r.values[user].as_str().unwrap().to_string(),
                kind == "page_view",
            ));
        }
    }
    let base =
        std::fs::read_to_string(dir.path().join("pipelines/clickstream-view-click.toml")).unwrap();
    for (size, slide) in [(10 * S, 10 * S), (10 * S, 5 * S)] {
        // Window end -> user -> (views, clicks), on-time rows only; and the late count.
        let mut windows: BTreeMap<(i64, String), (Vec<u64>, Vec<u64>)> = BTreeMap::new();
        let mut late = 0;
        for (i, ts, b, u, view) in &rows {
            let pe = ts - ts.rem_euclid(slide) + slide;
            if pe <= b - S {
                late += 1;
                continue;
            }
            let mut e = pe;
            while e <= pe + size - slide {
                let w = windows.entry((e, u.clone())).or_default();
                if *view {
                    w.0.push(*i)
                } else {
                    w.1.push(*i)
                }
                e += slide;
            }
        }
        for how in ["inner", "left", "full"] {
            // (window end, view id, click id)
            let mut want: Vec<(i64, Option<u64>, Option<u64>)> = Vec::new();
            for ((e, _), (vs, cs)) in &windows {
                for v in vs {
                    for c in cs {
                        want.push((*e, Some(*v), Some(*c)));
                    }
                }
                if cs.is_empty() && how != "inner" {
                    want.extend(vs.iter().map(|v| (*e, Some(*v), None)));
                }
                if vs.is_empty() && how == "full" {
                    want.extend(cs.iter().map(|c| (*e, None, Some(*c))));
                }
            }
            want.sort();
            let text = base
                .replace(
                    "kind = \"interval\"",
                    &format!(
                        "kind = \"window\"\nsize = \"{}s\"\nslide = \"{}s\"",
                        size / S,
                        slide / S
                    ),
                )
                .replace("between = [\"0s\", \"10s\"]\n", "")
                .replace("join = \"left\"", &format!("join = \"{how}\""));
            let p = write(dir.path(), "wj.toml", &text);
            for config in configurations() {
                let mut extra = config.clone();
                extra.extend(["--set", "sources.clicks.events=20000"]);
                let err = run_ok(dir.path(), &p, &extra);
                let mut got: Vec<(i64, Option<u64>, Option<u64>)> =
                    json_lines(&dir.path().join("out/view-click.jsonl"))
                        .iter()
                        .map(|r| {
                            (
                                parse_rfc3339(r["window_end"].as_str().unwrap()).unwrap(),
                                r["view_id"].as_u64(),
                                r["click_id"].as_u64(),
                            )
                        })
                        .collect();
                got.sort();
                assert_eq!(got.len(), want.len(), "{size} {slide} {how} {config:?}");
                assert_eq!(got, want, "{size} {slide} {how} {config:?}");
                assert!(
                    err.contains(&format!("{late} late records: {late} dropped")),
                    "{err}"
                );
            }
        }
    }
}

/// `pipelines/iot-alarm-status.toml`: each alarm joins the device's status update with the
/// largest event time at or before the alarm's (ties by id) — an update at time t affects only
/// alarms at or after t — against a brute-force reference over out-of-order input, left outer
/// and inner, in both modes on 1, 2 and 4 workers; late alarms and updates to the side outputs.
#[test]
fn temporal_join_matches_the_versioned_table_reference() {
    let dir = workspace();
    let n = 30_000u64;
    let (spec, start) = generator(&bundled_text("iot-alarm-status.toml"), "sensors", &[]);
    let schema = Profile::Iot.schema();
    let (kind, dev) = (
        schema.index_of("kind").unwrap(),
        schema.index_of("device_id").unwrap(),
    );
    let (mut alarms, mut status) = (Vec::new(), Vec::new());
    let mut late = 0;
    for i in 0..n {
        let base = start + i as i64 * 1_000;
        let ts = spec.disordered(i, base);
        let r = spec.event(i, ts);
        let k = r.values[kind].as_str().unwrap();
        if k != "alarm" && k != "status" {
            continue;
        }
        if ts < base - 500_000 {
            late += 1;
            continue;
        }
        let row = (ts, i, r.values[dev].as_str().unwrap().to_string());
        if k == "alarm" {
            alarms.push(row)
        } else {
            status.push(row)
        }
    }
    assert!(late > 0, "the input has late events");
    for (how, outer) in [("left", true), ("inner", false)] {
        // (alarm id, status id) for every alarm.
        let mut want: Vec<(u64, Option<u64>)> = Vec::new();
        for (ta, ia, da) in &alarms {
            let best = status
                .iter()
                .filter(|(ts, _, ds)| ds == da && ts <= ta)
                .max_by_key(|(ts, is, _)| (*ts, *is))
                .map(|(_, is, _)| *is);
            if best.is_some() || outer {
                want.push((*ia, best));
            }
        }
        want.sort();
        assert!(want.iter().filter(|w| w.1.is_some()).count() > 100);
        for config in configurations() {
            let mut extra = config.clone();
            let join = format!("transforms.enriched.join=\"{how}\"");
            extra.extend(["--set", "sources.sensors.events=30000", "--set", &join]);
            let err = run_ok(dir.path(), "pipelines/iot-alarm-status.toml", &extra);
            let mut got: Vec<(u64, Option<u64>)> =
                json_lines(&dir.path().join("out/alarm-status.jsonl"))
                    .iter()
                    .map(|r| (r["alarm_id"].as_u64().unwrap(), r["status_id"].as_u64()))
                    .collect();
            got.sort();
            assert_eq!(got, want, "{how} {config:?}");
            assert!(
                err.contains(&format!(
                    "{late} late records: {late} sent to the late output"
                )),
                "{err}"
            );
        }
    }
}

/// Over a long run, the window join holds the rows of the open windows and the temporal join
/// the versions still current: both far below their input, and nothing at the end.
#[test]
fn window_and_temporal_join_state_stays_bounded() {
    let dir = workspace();
    let report = dir.path().join("r.json");
    let counters = |pipeline: &str, extra: &[&str], component: &str| -> (u64, u64, u64) {
        let mut args = vec!["--workers", "1", "--report", report.to_str().unwrap()];
        args.extend_from_slice(extra);
        run_ok(dir.path(), pipeline, &args);
        let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        let c = r["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["component"] == component)
            .unwrap()
            .clone();
        (
            c["records_in"].as_u64().unwrap(),
            c["max_state"].as_u64().unwrap(),
            c["state"].as_u64().unwrap(),
        )
    };
    // 100 windows of 10 s, 40 + 60 rows a window. Both sites at the same pace: a source that
    // races ahead of the other in event time holds the other's windows open (bounding that is
    // backpressure's job, not the join's).
    let (input, max_state, state) = counters(
        "pipelines/iot-two-sites.toml",
        &[
            "--set",
            "sources.hall.events=1000000",
            "--set",
            "sources.basement.events=1000000",
            "--set",
            "sources.basement.event_time_interval=\"1ms\"",
        ],
        "transforms.both",
    );
    assert!(input == 10_000 && state == 0, "{input} {state}");
    assert!(max_state < 2_000, "{max_state}");
    // 28,000 status updates of 30 devices over 400 s.
    let (input, max_state, state) = counters(
        "pipelines/iot-alarm-status.toml",
        &["--set", "sources.sensors.events=400000"],
        "transforms.enriched",
    );
    assert!(input > 30_000 && state == 0, "{input} {state}");
    assert!(max_state < 1_000, "{max_state}");
}

/// `pipelines/nexmark-new-sellers.toml` (Nexmark query 8): new persons and the auctions they
/// opened in the same 10 s window, against a nested-loop reference over the raw events.
#[test]
fn nexmark_new_sellers_match_the_reference() {
    let dir = workspace();
    let n = 50_000u64;
    let (spec, start) = generator(
        &bundled_text("nexmark-new-sellers.toml"),
        "auction_site",
        &[],
    );
    let schema = Profile::Nexmark.schema();
    let (kind, person, auction) = (
        schema.index_of("kind").unwrap(),
        schema.index_of("person_id").unwrap(),
        schema.index_of("auction_id").unwrap(),
    );
    let (mut persons, mut auctions) = (Vec::new(), Vec::new());
    for i in 0..n {
        let ts = start + i as i64 * 5_000;
        let r = spec.event(i, ts);
        let w = ts - ts.rem_euclid(10 * S);
        match r.values[kind].as_str().unwrap() {
            "person" => persons.push((w, r.values[person].as_u64().unwrap())),
            "auction" => auctions.push((
                w,
                r.values[person].as_u64().unwrap(),
                r.values[auction].as_u64().unwrap(),
            )),
            _ => {}
        }
    }
    let mut want = Vec::new();
    for (w, p) in &persons {
        for (wa, seller, a) in &auctions {
            if w == wa && p == seller {
                want.push((*p, *a));
            }
        }
    }
    want.sort();
    assert!(want.len() > 1000);
    for config in configurations() {
        let mut extra = config.clone();
        extra.extend(["--set", "sources.auction_site.events=50000"]);
        run_ok(dir.path(), "pipelines/nexmark-new-sellers.toml", &extra);
        let mut got: Vec<(u64, u64)> = json_lines(&dir.path().join("out/new-sellers.jsonl"))
            .iter()
            .map(|r| {
                (
                    r["person_id"].as_u64().unwrap(),
                    r["auction_id"].as_u64().unwrap(),
                )
            })
            .collect();
        got.sort();
        assert_eq!(got, want, "{config:?}");
    }
}

/// Two temporal joins on the same table (same input, key, fields and late policy) share one
/// arrangement: the second reads only its left input (its `in` counts no status updates), and
/// both give the versioned-table result.
#[test]
fn temporal_joins_share_an_arranged_table() {
    let dir = workspace();
    let base = std::fs::read_to_string(dir.path().join("pipelines/iot-alarm-status.toml")).unwrap();
    let text = base
        + r#"
[transforms.hot]
type = "filter"
inputs = ["sensors"]
condition = "kind = 'reading' AND temperature > 38.0"

[transforms.hot_status]
type = "join"
kind = "temporal"
inputs = ["hot", "status"]
on = ["device_id"]
join = "left"
select = ["left.id AS reading_id", "left.ts", "right.id AS status_id", "right.ts AS status_ts", "right.status", "right.battery"]
late = "side-output"

[sinks.hot_out]
type = "file"
inputs = ["hot_status"]
path = "out/hot-status.jsonl"
"#;
    let p = write(dir.path(), "shared.toml", &text);
    let report = dir.path().join("r.json");
    run_ok(
        dir.path(),
        &p,
        &[
            "--report",
            report.to_str().unwrap(),
            "--set",
            "sources.sensors.events=30000",
        ],
    );
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let find = |id: &str| {
        r["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["component"] == id)
            .unwrap()
            .clone()
    };
    let (status, hot, shared) = (
        find("transforms.status"),
        find("transforms.hot"),
        find("transforms.hot_status"),
    );
    assert_eq!(
        shared["records_in"], hot["records_out"],
        "the second join reads only its left input"
    );
    let owner = find("transforms.enriched");
    let alarms = find("transforms.alarms");
    assert_eq!(
        owner["records_in"].as_u64().unwrap(),
        alarms["records_out"].as_u64().unwrap() + status["records_out"].as_u64().unwrap()
    );
    // Every hot reading met the latest status at or before it (or none), as the reference says.
    let (spec, start) = generator(&bundled_text("iot-alarm-status.toml"), "sensors", &[]);
    let schema = Profile::Iot.schema();
    let (kind, dev, temp) = (
        schema.index_of("kind").unwrap(),
        schema.index_of("device_id").unwrap(),
        schema.index_of("temperature").unwrap(),
    );
    let (mut hot_rows, mut status) = (Vec::new(), Vec::new());
    for i in 0..30_000u64 {
        let base = start + i as i64 * 1_000;
        let ts = spec.disordered(i, base);
        let r = spec.event(i, ts);
        if ts < base - 500_000 {
            continue;
        }
        let d = r.values[dev].as_str().unwrap().to_string();
        match r.values[kind].as_str().unwrap() {
            "status" => status.push((ts, i, d)),
            "reading" if r.values[temp].as_f64().unwrap() > 38.0 => hot_rows.push((ts, i, d)),
            _ => {}
        }
    }
    let mut want: Vec<(u64, Option<u64>)> = hot_rows
        .iter()
        .map(|(t, i, d)| {
            let best = status
                .iter()
                .filter(|(ts, _, ds)| ds == d && ts <= t)
                .max_by_key(|(ts, is, _)| (*ts, *is))
                .map(|(_, is, _)| *is);
            (*i, best)
        })
        .collect();
    want.sort();
    let mut got: Vec<(u64, Option<u64>)> = json_lines(&dir.path().join("out/hot-status.jsonl"))
        .iter()
        .map(|r| (r["reading_id"].as_u64().unwrap(), r["status_id"].as_u64()))
        .collect();
    got.sort();
    assert!(want.len() > 10);
    assert_eq!(got, want);
}

/// An interval join whose stored records outgrow `max_state` fails the run with a message
/// naming it, and so does a temporal join whose versions and waiting records do; `max_state`
/// below 1 is refused with its place.
#[test]
fn join_max_state_fails_the_run_with_a_message() {
    let dir = workspace();
    let text = bundled_text("clickstream-view-click.toml")
        .replace(
            "between = [\"0s\", \"10s\"]",
            "between = [\"0s\", \"1h\"]\nmax_state = 1000",
        )
        .replace("path = \"out/view-click.jsonl\"", "path = \"vc.jsonl\"");
    let p = write(dir.path(), "j.toml", &text);
    let err = weir_fails(dir.path(), &["run", &p]);
    assert!(
        err.contains("join `view_click` holds") && err.contains("max_state = 1000"),
        "{err}"
    );
    let bad = write(
        dir.path(),
        "b.toml",
        &text.replace("max_state = 1000", "max_state = 0"),
    );
    let err = weir_fails(dir.path(), &["validate", &bad]);
    assert!(
        err.contains("`max_state` must be at least 1") && err.contains("b.toml:"),
        "{err}"
    );
    // 30 devices' status versions, and alarms waiting for them: more than 5.
    let temporal = bundled_text("iot-alarm-status.toml")
        .replace("kind = \"temporal\"", "kind = \"temporal\"\nmax_state = 5");
    assert!(temporal.contains("max_state = 5"));
    let p = write(dir.path(), "t.toml", &temporal);
    let err = weir_fails(dir.path(), &["run", &p]);
    assert!(
        err.contains("temporal join `enriched` holds") && err.contains("max_state = 5"),
        "{err}"
    );
    // Within the limit, the same run succeeds.
    let ok_run = write(
        dir.path(),
        "t2.toml",
        &temporal.replace("max_state = 5", "max_state = 100000"),
    );
    run_ok(dir.path(), &ok_run, &[]);
}

/// A key with a NULL field equals no key, as in SQL: such records meet nothing in any join
/// kind — left outer joins keep the left ones with NULL right fields, and a full window join
/// the right ones too — while records with the same non-NULL key still meet. Hand-checked.
#[test]
fn a_null_key_meets_nothing_in_any_join() {
    let dir = workspace();
    let left = "{\"id\":1,\"ts\":\"2026-01-01T00:00:01Z\",\"k\":\"a\"}\n\
                {\"id\":2,\"ts\":\"2026-01-01T00:00:02Z\",\"k\":null}\n\
                {\"id\":3,\"ts\":\"2026-01-01T00:00:03Z\"}\n";
    let right = "{\"id\":11,\"ts\":\"2026-01-01T00:00:00Z\",\"k\":\"a\"}\n\
                 {\"id\":12,\"ts\":\"2026-01-01T00:00:00Z\",\"k\":null}\n";
    write(dir.path(), "left.jsonl", left);
    write(dir.path(), "right.jsonl", right);
    let pipeline = |join: &str, how: &str| {
        format!(
            "[pipeline]\nname = \"n\"\n\
             [sources.l]\ntype = \"file\"\npath = \"left.jsonl\"\nformat = \"jsonl\"\n\
             schema = {{ id = \"u64\", ts = \"timestamp\", k = \"string\" }}\n\
             [sources.r]\ntype = \"file\"\npath = \"right.jsonl\"\nformat = \"jsonl\"\n\
             schema = {{ id = \"u64\", ts = \"timestamp\", k = \"string\" }}\n\
             [transforms.j]\ntype = \"join\"\ninputs = [\"l\", \"r\"]\non = [\"k\"]\n{join}\n\
             join = \"{how}\"\nselect = [\"left.id AS l\", \"right.id AS r\"]\n\
             [sinks.o]\ntype = \"file\"\ninputs = [\"j\"]\npath = \"out/j.jsonl\"\n"
        )
    };
    let kinds = [
        "kind = \"interval\"\nbetween = [\"-5s\", \"5s\"]",
        "kind = \"window\"\nsize = \"10s\"",
        "kind = \"temporal\"",
    ];
    for join in kinds {
        for (how, want) in [
            ("inner", vec![(Some(1), Some(11))]),
            (
                "left",
                vec![(Some(1), Some(11)), (Some(2), None), (Some(3), None)],
            ),
            (
                "full",
                vec![
                    (None, Some(12)),
                    (Some(1), Some(11)),
                    (Some(2), None),
                    (Some(3), None),
                ],
            ),
        ] {
            if how == "full" && !join.contains("window") {
                continue;
            }
            for workers in ["1", "2"] {
                let p = write(dir.path(), "n.toml", &pipeline(join, how));
                run_ok(dir.path(), &p, &["--workers", workers]);
                let mut got: Vec<(Option<u64>, Option<u64>)> =
                    json_lines(&dir.path().join("out/j.jsonl"))
                        .iter()
                        .map(|r| (r["l"].as_u64(), r["r"].as_u64()))
                        .collect();
                got.sort();
                assert_eq!(got, want, "{join} {how} on {workers} workers");
            }
        }
    }
}
