use std::time::Duration;

use super::*;

fn row(offered: f64, achieved: f64, backlog: (u64, u64, u64), p99s: (u64, u64)) -> Row {
    let mut first = weir_operators::latency::histogram();
    let mut second = weir_operators::latency::histogram();
    for _ in 0..100 {
        first.record(p99s.0).unwrap();
        second.record(p99s.1).unwrap();
    }
    let mut all = first.clone();
    all.add(&second).unwrap();
    Row {
        label: "x".into(),
        interval: None,
        offered: Some(offered),
        achieved,
        seconds: 10.0,
        backlog_end: backlog.2,
        backlog_halves: (backlog.0, backlog.1),
        processing: all,
        processing_second_half: Some(second),
        event: None,
        held: 0.0,
        peak_rss: None,
    }
}

#[test]
fn sustainable_means_kept_up_with_nothing_growing() {
    assert_eq!(
        row(1e5, 1e5, (10, 10, 5), (1_000, 1_200)).sustainable(),
        Ok(())
    );
    // 100ms of input is the slack.
    assert!(row(1e5, 1e5, (10, 10, 10_000), (1_000, 1_000))
        .kept_up()
        .unwrap());
    let behind = row(1e5, 0.9e5, (10, 10, 5), (1_000, 1_000));
    assert_eq!(behind.kept_up(), Some(false));
    assert!(behind.sustainable().unwrap_err().starts_with("fell behind"));
    let backlog = row(1e5, 1e5, (10, 10, 50_000), (1_000, 1_000));
    assert_eq!(backlog.kept_up(), Some(false));
    let grew = row(1e5, 1e5, (1_000, 30_000, 5), (1_000, 1_000));
    assert!(grew.sustainable().unwrap_err().starts_with("backlog grew"));
    let slower = row(1e5, 1e5, (10, 10, 5), (1_000, 40_000));
    assert!(slower
        .sustainable()
        .unwrap_err()
        .starts_with("p99 latency grew"));
}

#[test]
fn rates_and_modes_parse() {
    assert_eq!(parse_rate("1m").unwrap(), 1e6);
    assert_eq!(parse_rate("50_000").unwrap(), 5e4);
    assert!(parse_rate("0").is_err() && parse_rate("-1k").is_err());
    assert_eq!(short_rate(1_500_000.0), "1.5M");
    assert_eq!(short_rate(20_000.0), "20k");
    let m = parse_modes("micro-batch:1s, continuous").unwrap();
    assert_eq!(m[0].interval(), Some(Duration::from_secs(1)));
    assert!(parse_modes("continuous:1s").is_err());
    assert!(parse_modes("micro-batch:0ms").is_err());
}

#[test]
fn percentiles_are_shown_only_where_the_samples_support_them() {
    assert!(supported(20, 50.0) && supported(100, 90.0));
    assert!(!supported(999, 99.0) && supported(1_000, 99.0));
    assert!(!supported(9_999, 99.9) && supported(10_000, 99.9));
    // 200 samples: n, p50 and p90 shown; p99 and p99.9 not.
    let t = table(&[row(1e5, 1e5, (1, 1, 1), (1_000, 1_000))]);
    let cells: Vec<&str> = t.lines().nth(1).unwrap().split_whitespace().collect();
    let n = cells.len();
    assert_eq!(
        &cells[n - 6..],
        &["200", "1.00ms", "1.00ms", "-", "-", "1.00ms"],
        "{t}"
    );
}
