use super::*;
use timely::dataflow::operators::capture::Extract;
use timely::dataflow::operators::{Capture, ToStream};

fn schema() -> Schema {
    Schema::new(vec![
        Field::new("id", FieldType::U64),
        Field::new("ts", FieldType::Timestamp),
        Field::new("k", FieldType::String),
        Field::new("x", FieldType::I64),
    ])
    .with_time("ts")
    .with_id("id")
}

struct Run {
    out: Vec<Vec<Value>>,
    dead: Vec<String>,
    late: Vec<u64>,
    metrics: crate::metrics::MetricsSnapshot,
}

/// Runs a window over `rows` (id, ts, watermark, key, x) on `workers` workers.
fn run_with(
    workers: usize,
    spec: WindowSpec,
    rows: Vec<(u64, Micros, Time, &'static str, i64)>,
) -> Run {
    let spec = Arc::new(spec);
    let metrics: Arc<ComponentMetrics> = Arc::default();
    let (tx, rx) = std::sync::mpsc::channel();
    let (dtx, drx) = std::sync::mpsc::channel();
    let (ltx, lrx) = std::sync::mpsc::channel();
    let (tx, dtx, ltx) = (
        std::sync::Mutex::new(tx),
        std::sync::Mutex::new(dtx),
        std::sync::Mutex::new(ltx),
    );
    let m = Arc::clone(&metrics);
    timely::execute(timely::Config::process(workers), move |worker| {
        let (tx, dtx, ltx) = (
            tx.lock().unwrap().clone(),
            dtx.lock().unwrap().clone(),
            ltx.lock().unwrap().clone(),
        );
        let mine: Vec<Record> = rows
            .iter()
            .enumerate()
            .filter(|(i, _)| i % worker.peers() == worker.index())
            .map(|(_, &(id, ts, wm, k, x))| {
                let mut r = Record::new(vec![
                    Value::U64(id),
                    Value::Ts(ts),
                    Value::Str(k.into()),
                    Value::I64(x),
                ]);
                r.meta.watermark = wm;
                r
            })
            .collect();
        let (spec, m) = (Arc::clone(&spec), Arc::clone(&m));
        worker.dataflow::<Time, _, _>(move |scope| {
            let s = window(
                mine.to_stream(scope).container::<Vec<Record>>(),
                crate::exchange::Routing::ByKey,
                spec,
                m,
            );
            s.results.capture_into(tx);
            s.dead.capture_into(dtx);
            s.late.capture_into(ltx);
        });
    })
    .unwrap()
    .join();
    let mut out: Vec<Vec<Value>> = rx
        .extract()
        .into_iter()
        .flat_map(|(_, v)| v)
        .map(|r| r.values)
        .collect();
    out.sort();
    let dead: Vec<String> = drx
        .extract()
        .into_iter()
        .flat_map(|(_, v)| v)
        .map(|r| r.values[3].as_str().unwrap().to_string())
        .collect();
    let mut late: Vec<u64> = lrx
        .extract()
        .into_iter()
        .flat_map(|(_, v)| v)
        .map(|r| r.values[0].as_u64().unwrap())
        .collect();
    late.sort();
    let metrics = metrics.snapshot();
    assert_eq!(metrics.state, 0, "all state freed at the end");
    Run {
        out,
        dead,
        late,
        metrics,
    }
}

fn spec(size: Micros, group_by: Vec<usize>, aggs: &[&str]) -> WindowSpec {
    let s = schema();
    let aggs: Vec<Aggregate> = aggs
        .iter()
        .map(|a| Aggregate::compile(a, &s).unwrap())
        .collect();
    WindowSpec::new("w", size, 0, &s, group_by, aggs)
}

fn run(
    workers: usize,
    size: Micros,
    group_by: Vec<usize>,
    aggs: &[&str],
    rows: Vec<(u64, Micros, Time, &'static str, i64)>,
) -> (Vec<Vec<Value>>, Vec<String>, u64) {
    let r = run_with(workers, spec(size, group_by, aggs), rows);
    (r.out, r.dead, r.metrics.max_state)
}

#[test]
fn tumbling_counts_with_gaps_and_a_global_group() {
    let rows = vec![
        (1, 0, 0, "a", 1),
        (2, 999, 999, "a", 2),
        (3, 1000, 1000, "b", 3),
        // 2000..3000 is empty: no result for it.
        (4, 3500, 3500, "a", 4),
        (5, -1, 0, "b", 5), // before the epoch: window [-1000, 0)
    ];
    for workers in [1, 2, 3] {
        let (out, dead, _) = run(workers, 1000, vec![], &["count(*)", "sum(x)"], rows.clone());
        use Value::*;
        assert_eq!(
            out,
            vec![
                vec![Ts(-1000), Ts(0), I64(1), I64(5)],
                vec![Ts(0), Ts(1000), I64(2), I64(3)],
                vec![Ts(1000), Ts(2000), I64(1), I64(3)],
                vec![Ts(3000), Ts(4000), I64(1), I64(4)],
            ],
            "{workers} workers"
        );
        assert!(dead.is_empty());
    }
}

#[test]
fn late_records_are_dead_lettered_with_the_reason() {
    // Record 3 was read after its partition's watermark reached 2500: window [0, 1000) had closed.
    let rows = vec![
        (1, 10, 10, "a", 1),
        (2, 2500, 2500, "a", 2),
        (3, 20, 2500, "a", 3),
    ];
    let (out, dead, _) = run(1, 1000, vec![2], &["sum(x)"], rows);
    use Value::*;
    assert_eq!(
        out,
        vec![
            vec![Str("a".into()), Ts(0), Ts(1000), I64(1)],
            vec![Str("a".into()), Ts(2000), Ts(3000), I64(2)],
        ]
    );
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].starts_with(
            "late: its window [1970-01-01T00:00:00.000Z, 1970-01-01T00:00:00.001Z) had closed"
        ),
        "{}",
        dead[0]
    );
}

#[test]
fn first_and_last_are_by_event_time_on_any_number_of_workers() {
    let rows: Vec<_> = (0..200u64)
        .map(|i| {
            (
                i,
                (i as i64 * 7919) % 1000,
                0,
                if i % 3 == 0 { "a" } else { "b" },
                i as i64,
            )
        })
        .collect();
    let one = run(
        1,
        500,
        vec![2],
        &["first(x)", "last(x)", "count(distinct x)"],
        rows.clone(),
    )
    .0;
    for w in [2, 4] {
        assert_eq!(
            one,
            run(
                w,
                500,
                vec![2],
                &["first(x)", "last(x)", "count(distinct x)"],
                rows.clone()
            )
            .0
        );
    }
}

#[test]
fn sliding_windows_combine_panes() {
    use Value::*;
    // size 30, slide 10: windows [-20,10), [-10,20), [0,30), [10,40), [20,50), [30,60) ...
    let rows = vec![
        (1, 5, 5, "a", 1),
        (2, 15, 15, "a", 2),
        (3, 25, 25, "a", 4),
        (4, 41, 41, "a", 8),
    ];
    for workers in [1, 2] {
        let r = run_with(
            workers,
            spec(30, vec![], &["sum(x)", "count(*)"]).with_shape(Shape::Sliding { slide: 10 }),
            rows.clone(),
        );
        assert_eq!(
            r.out,
            vec![
                vec![Ts(-20), Ts(10), I64(1), I64(1)],
                vec![Ts(-10), Ts(20), I64(3), I64(2)],
                vec![Ts(0), Ts(30), I64(7), I64(3)],
                vec![Ts(10), Ts(40), I64(6), I64(2)],
                vec![Ts(20), Ts(50), I64(12), I64(2)],
                vec![Ts(30), Ts(60), I64(8), I64(1)],
                vec![Ts(40), Ts(70), I64(8), I64(1)],
            ]
        );
    }
}

#[test]
fn both_ways_of_combining_panes_agree() {
    // Without late updates, sliding windows combine panes with two stacks per key; with
    // them, by merging every pane of the window. Same results on in-order input.
    let rows: Vec<_> = (0..3000u64)
        .map(|i| {
            let ts = (i as i64 * 37) % 20_000 + (i as i64 / 7) * 3;
            (
                i,
                ts,
                0,
                ["a", "b", "c", "d"][(i % 4) as usize],
                (i % 11) as i64 - 5,
            )
        })
        .collect();
    let aggs = [
        "sum(x)",
        "count(*)",
        "min(x)",
        "max(x)",
        "first(x)",
        "last(x)",
        "count(distinct x)",
    ];
    let sliding = Shape::Sliding { slide: 250 };
    let stacks = run_with(
        2,
        spec(2000, vec![2], &aggs).with_shape(sliding),
        rows.clone(),
    );
    let merged = run_with(
        2,
        spec(2000, vec![2], &aggs)
            .with_shape(sliding)
            .with_late(LatePolicy::Update {
                allowed_lateness: 0,
            }),
        rows,
    );
    let without_count: Vec<Vec<Value>> = merged
        .out
        .into_iter()
        .map(|mut v| {
            assert_eq!(v.pop(), Some(Value::I64(0)), "no late records");
            v
        })
        .collect();
    assert!(stacks.out.len() > 100);
    assert_eq!(stacks.out, without_count);
}

#[test]
fn sessions_merge_and_close_after_the_gap() {
    use Value::*;
    // gap 10 per key: a: 0,5 | 30,38,45 ; b: 3
    let rows = vec![
        (1, 0, 0, "a", 1),
        (2, 5, 5, "a", 2),
        (3, 3, 3, "b", 4),
        (4, 38, 38, "a", 8),
        (5, 30, 38, "a", 16), // out of order, on time: 30 >= watermark? no: behind it
        (6, 45, 45, "a", 32),
    ];
    let r = run_with(
        1,
        spec(0, vec![2], &["sum(x)", "count(*)"]).with_shape(Shape::Session { gap: 10 }),
        rows,
    );
    assert_eq!(
        r.out,
        vec![
            vec![Str("a".into()), Ts(0), Ts(15), I64(3), I64(2)],
            vec![Str("a".into()), Ts(38), Ts(55), I64(40), I64(2)],
            vec![Str("b".into()), Ts(3), Ts(13), I64(4), I64(1)],
        ]
    );
    assert_eq!(
        r.metrics.late, 1,
        "record 5 was behind its partition's watermark"
    );
    assert_eq!(r.dead.len(), 1);
}

#[test]
fn late_policies_account_for_every_late_record() {
    // Records 3 and 4 arrive after their partition's watermark passed 2000.
    let rows = vec![
        (1, 10, 10, "a", 1),
        (2, 2500, 2500, "a", 2),
        (3, 20, 2500, "a", 4),
        (4, 900, 2500, "a", 8),
    ];
    let base = || spec(1000, vec![2], &["sum(x)"]);
    let drop = run_with(1, base().with_late(LatePolicy::Drop), rows.clone());
    assert_eq!((drop.metrics.late, drop.metrics.late_dropped), (2, 2));
    assert!(drop.dead.is_empty() && drop.late.is_empty());
    let side = run_with(2, base().with_late(LatePolicy::SideOutput), rows.clone());
    assert_eq!(side.late, vec![3, 4]);
    assert_eq!(side.metrics.late_side_output, 2);
    assert_eq!(side.out, drop.out);
    // Update, allowing 2000: window [0,1000) is emitted again with each late record that
    // arrives after it fired; its last version (the most late_records) has both. Here all
    // records arrive before it fires, so it is emitted once, already complete.
    let up = run_with(
        1,
        base().with_late(LatePolicy::Update {
            allowed_lateness: 2000,
        }),
        rows.clone(),
    );
    use Value::*;
    let a = || Str("a".into());
    assert!(
        up.out
            .contains(&vec![a(), Ts(0), Ts(1000), I64(13), I64(2)]),
        "{:?}",
        up.out
    );
    assert!(up
        .out
        .contains(&vec![a(), Ts(2000), Ts(3000), I64(2), I64(0)]));
    assert_eq!((up.metrics.late, up.metrics.late_updated), (2, 2));
    let too_late = run_with(
        1,
        base().with_late(LatePolicy::Update {
            allowed_lateness: 1000,
        }),
        rows,
    );
    assert_eq!(
        (too_late.metrics.late, too_late.metrics.late_updated),
        (2, 0)
    );
    assert_eq!(too_late.dead.len(), 2);
}

#[test]
fn window_of_handles_offsets_and_negative_times() {
    let s = schema();
    let w = WindowSpec::new("w", 10, 3, &s, vec![], vec![]);
    assert_eq!(w.window_of(3), (3, 13));
    assert_eq!(w.window_of(2), (-7, 3));
    assert_eq!(w.window_of(-8), (-17, -7));
}
