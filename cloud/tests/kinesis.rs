//! The Kinesis writer and fetcher against a Kinesis-compatible server (`scripts/test` starts
//! one and sets WEIR_KINESIS_ENDPOINT): every record written is read once, each shard in
//! order, a shard made by a split is read after its parent and one made by a merge after both
//! (also when two workers read the parents), and `latest` reads only what comes after it.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::sync_channel;
use std::sync::Arc;
use std::time::Duration;

use weir_cloud::block_on;
use weir_cloud::kinesis::fetcher::{self, FetchPlan, Fetched, Start};
use weir_cloud::kinesis::sink::KinesisOut;
use weir_cloud::kinesis::{create_stream, Connection};

fn endpoint() -> String {
    std::env::var("WEIR_KINESIS_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "the Kinesis tests need a Kinesis-compatible server: run the README's test command \
             (scripts/test), which starts one, or start one yourself and set \
             WEIR_KINESIS_ENDPOINT=http://host:port (with AWS_ACCESS_KEY_ID, \
             AWS_SECRET_ACCESS_KEY and AWS_REGION set to anything)"
        )
    })
}

fn stream(name: &str, shards: i32) -> Connection {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let conn = Connection {
        stream: format!("{name}-{}-{nanos}", std::process::id()),
        region: Some("us-east-1".into()),
        endpoint: Some(endpoint()),
    };
    let c = conn.clone();
    block_on(Duration::from_secs(30), async move {
        let client = c.client().await?;
        create_stream(&client, &c, shards).await
    })
    .unwrap();
    conn
}

fn write(conn: &Connection, records: impl Iterator<Item = (String, String)>) {
    let out = KinesisOut::open(conn, vec![]).unwrap();
    for (key, data) in records {
        out.send_keyed(key, data.into_bytes(), 0).unwrap();
    }
    weir_operators::sink::MessageOut::flush(&out).unwrap();
}

#[test]
fn every_record_written_is_read_once_in_order_per_key() {
    let conn = stream("weir-fetch", 3);
    let n = 200;
    write(
        &conn,
        (0..n).map(|i| (format!("k{}", i % 5), format!("{}:{i}", i % 5))),
    );
    for peers in [1, 2] {
        let (shards, _) = fetch_together(&conn, peers);
        let all: Vec<&String> = shards.values().flatten().collect();
        assert_eq!(all.len(), n, "{peers} workers");
        let distinct: HashSet<&&String> = all.iter().collect();
        assert_eq!(distinct.len(), n);
        // One key lives in one shard, in the order written.
        for records in shards.values() {
            let mut last: BTreeMap<&str, i64> = BTreeMap::new();
            for r in records {
                let (k, i) = r.split_once(':').unwrap();
                let i: i64 = i.parse().unwrap();
                assert!(last.get(k).is_none_or(|&l| l < i), "{r} after {last:?}");
                last.insert(k, i);
            }
        }
    }
}

#[test]
fn a_split_shard_is_read_before_its_children() {
    let conn = stream("weir-split", 1);
    write(
        &conn,
        (0..50).map(|i| (format!("k{}", i % 4), format!("{}:{i}", i % 4))),
    );
    let c = conn.clone();
    block_on(Duration::from_secs(30), async move {
        let client = c.client().await?;
        client
            .split_shard()
            .stream_name(&c.stream)
            .shard_to_split("shardId-000000000000")
            .new_starting_hash_key((1u128 << 127).to_string())
            .send()
            .await
            .map_err(|e| c.failure("splitting", e))?;
        weir_cloud::kinesis::create_stream(&client, &c, 1)
            .await
            .map(|_| ())
    })
    .unwrap();
    write(
        &conn,
        (50..120).map(|i| (format!("k{}", i % 4), format!("{}:{i}", i % 4))),
    );
    let (shards, events) = fetch_together(&conn, 1);
    let all: Vec<&String> = shards.values().flatten().collect();
    assert_eq!(all.len(), 120, "{shards:?}");
    assert_eq!(shards["shardId-000000000000"].len(), 50);
    let ended_parent = events
        .iter()
        .position(|e| e == "ended shardId-000000000000")
        .unwrap();
    for child in ["shardId-000000000001", "shardId-000000000002"] {
        let read = events
            .iter()
            .position(|e| e == &format!("read {child}"))
            .expect(child);
        assert!(ended_parent < read, "{events:?}");
    }
}

/// Runs the fetchers of `peers` workers at once (as a run's workers do), bounded; returns what
/// they read per shard and the order in which shards were first read and ended.
fn fetch_together(conn: &Connection, peers: usize) -> (BTreeMap<String, Vec<String>>, Vec<String>) {
    let ended = Arc::default();
    let (tx, rx) = std::sync::mpsc::channel();
    let mut threads = Vec::new();
    for worker in 0..peers {
        let plan = FetchPlan {
            conn: conn.clone(),
            worker,
            peers,
            start: Start::TrimHorizon,
            resume: BTreeMap::new(),
            bounded: true,
            poll_interval: Duration::from_millis(20),
            limit: 7,
            ended: Arc::clone(&ended),
        };
        let (wtx, wrx) = sync_channel(2);
        let stop = Arc::new(AtomicBool::new(false));
        threads.push(std::thread::spawn(move || {
            fetcher::run(plan, wtx, || {}, stop)
        }));
        let tx = tx.clone();
        threads.push(std::thread::spawn(move || {
            for m in wrx {
                let done = matches!(m, Fetched::AllDone);
                if tx.send(m).is_err() || done {
                    break;
                }
            }
        }));
    }
    drop(tx);
    let mut shards: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut events = Vec::new();
    for m in rx {
        match m {
            Fetched::Records { shard, records, .. } if !records.is_empty() => {
                if !shards.contains_key(&*shard) {
                    events.push(format!("read {shard}"));
                }
                shards.entry(shard.to_string()).or_default().extend(
                    records
                        .into_iter()
                        .map(|r| String::from_utf8(r.data).unwrap()),
                );
            }
            Fetched::Ended { shard } => events.push(format!("ended {shard}")),
            Fetched::Error(e) => panic!("{e}"),
            _ => {}
        }
    }
    for t in threads {
        t.join().unwrap();
    }
    (shards, events)
}

#[test]
fn a_merged_shard_is_read_after_both_parents_even_on_two_workers() {
    let conn = stream("weir-merge", 2);
    write(
        &conn,
        (0..60).map(|i| (format!("k{}", i % 6), format!("{}:{i}", i % 6))),
    );
    let c = conn.clone();
    block_on(Duration::from_secs(30), async move {
        let client = c.client().await?;
        client
            .merge_shards()
            .stream_name(&c.stream)
            .shard_to_merge("shardId-000000000000")
            .adjacent_shard_to_merge("shardId-000000000001")
            .send()
            .await
            .map_err(|e| c.failure("merging", e))?;
        weir_cloud::kinesis::create_stream(&client, &c, 1)
            .await
            .map(|_| ())
    })
    .unwrap();
    write(
        &conn,
        (60..140).map(|i| (format!("k{}", i % 6), format!("{}:{i}", i % 6))),
    );
    for peers in [1, 2] {
        let (shards, events) = fetch_together(&conn, peers);
        let all: Vec<&String> = shards.values().flatten().collect();
        assert_eq!(all.len(), 140, "{peers} workers: {shards:?}");
        assert_eq!(shards["shardId-000000000002"].len(), 80, "{peers} workers");
        let read_child = events
            .iter()
            .position(|e| e == "read shardId-000000000002")
            .unwrap();
        for parent in ["shardId-000000000000", "shardId-000000000001"] {
            let ended = events
                .iter()
                .position(|e| *e == format!("ended {parent}"))
                .unwrap();
            assert!(ended < read_child, "{peers} workers: {events:?}");
        }
    }
}

#[test]
fn latest_reads_only_what_is_written_once_reading_has_started() {
    let conn = stream("weir-latest", 2);
    write(
        &conn,
        (0..30).map(|i| (format!("k{i}"), format!("old {i}"))),
    );
    let plan = FetchPlan {
        conn: conn.clone(),
        worker: 0,
        peers: 1,
        start: Start::Latest,
        resume: BTreeMap::new(),
        bounded: false,
        poll_interval: Duration::from_millis(20),
        limit: 100,
        ended: Arc::default(),
    };
    let (tx, rx) = sync_channel(4);
    let stop = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(&stop);
    let t = std::thread::spawn(move || fetcher::run(plan, tx, || {}, s));
    // Both shards have been read once (at their tip) before anything new is written.
    let mut at_tip = HashSet::new();
    let mut got = Vec::new();
    while at_tip.len() < 2 {
        match rx.recv().unwrap() {
            Fetched::Records {
                shard,
                records,
                caught_up,
                ..
            } => {
                got.extend(
                    records
                        .into_iter()
                        .map(|r| String::from_utf8(r.data).unwrap()),
                );
                if caught_up {
                    at_tip.insert(shard.to_string());
                }
            }
            Fetched::Error(e) => panic!("{e}"),
            _ => {}
        }
    }
    write(
        &conn,
        (0..30).map(|i| (format!("k{i}"), format!("new {i}"))),
    );
    while got.len() < 30 {
        match rx.recv().unwrap() {
            Fetched::Records { records, .. } => got.extend(
                records
                    .into_iter()
                    .map(|r| String::from_utf8(r.data).unwrap()),
            ),
            Fetched::Error(e) => panic!("{e}"),
            _ => {}
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    drop(rx);
    t.join().unwrap();
    got.sort();
    let mut want: Vec<String> = (0..30).map(|i| format!("new {i}")).collect();
    want.sort();
    assert_eq!(got, want);
}
