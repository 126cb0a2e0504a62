//! What the dashboard and `weir top` show at one moment: every component's counters and rates,
//! each source's backlog, lag and watermark, each sink's latency (since the start and over the
//! last minute), as one JSON object (`/snapshot`, and each `tick` of `/events`).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use weir_engine::live::{port_name, Live};
use weir_engine::plan::{Port, PortRef};
use weir_operators::latency::Latencies;

/// One moment of a run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// The pipeline's name.
    pub pipeline: String,
    /// Seconds since the run started.
    pub elapsed: f64,
    /// Whether the run has ended (the page stays readable until the process exits).
    pub finished: bool,
    /// Why it failed, if it did.
    pub failure: Option<String>,
    /// Per component, in plan order.
    pub components: Vec<ComponentView>,
    /// Per measured sink.
    pub sinks: Vec<SinkView>,
    /// How far the sinks' watermark is behind the wall clock, µs (when event time follows
    /// the wall clock).
    pub watermark_lag_us: Option<u64>,
}

/// One component at one moment.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ComponentView {
    /// Its id.
    pub id: String,
    /// source, transform or sink.
    pub kind: String,
    /// Its type.
    #[serde(rename = "type")]
    pub ty: String,
    /// Records in (sources: read).
    pub records_in: u64,
    /// Records out of its main output.
    pub records_out: u64,
    /// Records in per second, over the last second.
    pub rate_in: f64,
    /// Records out per second, over the last second.
    pub rate_out: f64,
    /// Bad records.
    pub errors: u64,
    /// Bad records dead-lettered.
    pub dead_lettered: u64,
    /// Late records.
    pub late: u64,
    /// State held, bytes.
    pub state_bytes: u64,
    /// Sources: input due but not yet admitted.
    pub backlog: u64,
    /// Sources: records in flight.
    pub in_flight_records: u64,
    /// Sources: the share of the last second they were held back by backpressure (0 to 1,
    /// summed over workers, so up to the worker count).
    pub held: f64,
    /// Its main output's watermark (event time, µs; `None` before the first or after the
    /// last record).
    pub watermark_us: Option<u64>,
    /// How far its watermark is behind the wall clock, µs, when its event time follows the
    /// wall clock (a generator's schedule, a producer's send times).
    pub watermark_lag_us: Option<u64>,
    /// Kafka sources: each partition's lag.
    pub partitions: Vec<PartitionView>,
    /// How busy it was over the last second, 0 to 1: the share of the workers' time its
    /// operators were scheduled (from timely's log of operator starts and stops; a chain of
    /// filters and maps counts at its last component), or for a source held back by
    /// backpressure, the share of time it was held, if more.
    pub busy: f64,
}

/// A Kafka partition's position.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PartitionView {
    /// `topic/partition`.
    pub partition: String,
    /// Messages not yet read.
    pub lag: i64,
    /// The partition's watermark, µs.
    pub watermark_us: Option<i64>,
}

/// One sink's latency at one moment.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SinkView {
    /// The sink's id.
    pub id: String,
    /// Processing-time latency since the start.
    pub processing: LatencyView,
    /// Processing-time latency over the last minute.
    pub processing_minute: LatencyView,
    /// Event-time latency since the start, for window results on wall-clock event time.
    pub event: Option<LatencyView>,
    /// Event-time latency over the last minute.
    pub event_minute: Option<LatencyView>,
}

/// A latency distribution: its summary values and its percentile curve.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LatencyView {
    /// Values recorded.
    pub count: u64,
    /// Median, µs.
    pub p50_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// Largest, µs.
    pub max_us: u64,
    /// The percentile curve on `weir compare`'s axis: points (log10(1 / (1 - q)), µs) for
    /// q from 0 to 99.99%.
    pub curve: Vec<(f64, u64)>,
}

impl LatencyView {
    /// The view of `h`.
    pub fn of(h: &Histogram<u64>) -> LatencyView {
        if h.is_empty() {
            return LatencyView::default();
        }
        LatencyView {
            count: h.len(),
            p50_us: h.value_at_quantile(0.5),
            p99_us: h.value_at_quantile(0.99),
            max_us: h.max(),
            curve: (0..=80)
                .map(|k| {
                    let x = k as f64 / 20.0;
                    let q = 1.0 - 10f64.powf(-x);
                    (x, h.value_at_quantile(q).max(1))
                })
                .collect(),
        }
    }
}

/// Makes snapshots of one run: remembers the counters of the last one (for rates) and a
/// minute of each sink's histograms (for the last minute's latency).
pub struct Sampler {
    inner: Mutex<State>,
}

/// Each component's records in, records out, microseconds held and nanoseconds scheduled.
type Counts = Vec<(u64, u64, u64, u64)>;

struct State {
    /// When the last snapshot was taken, with its components' (in, out, held) counts.
    last: Option<(Instant, Counts)>,
    /// Each second's cumulative histograms, oldest first, at most 61.
    history: VecDeque<(Instant, Vec<Latencies>)>,
    /// The latest snapshot, and when it was made.
    latest: Option<(Instant, Snapshot)>,
}

impl Default for Sampler {
    fn default() -> Sampler {
        Sampler {
            inner: Mutex::new(State {
                last: None,
                history: VecDeque::new(),
                latest: None,
            }),
        }
    }
}

impl Sampler {
    /// A snapshot of `live`: the latest one if it is younger than `max_age` (so the event
    /// streams of several pages share one), else a new one.
    pub fn snapshot(&self, live: &Live, max_age: Duration) -> Snapshot {
        let mut st = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if let Some((at, s)) = &st.latest {
            if now.duration_since(*at) < max_age && !s.finished {
                return s.clone();
            }
        }
        let report = live.report();
        let finished = live.ended().is_some();
        let plan = &live.plan;
        let scheduled = |i: usize| {
            live.busy
                .as_ref()
                .map_or(0, |b| b[i].load(std::sync::atomic::Ordering::Relaxed))
        };
        let counts: Counts = report
            .components
            .iter()
            .enumerate()
            .map(|(i, c)| {
                (
                    c.metrics.records_in,
                    c.metrics.records_out,
                    c.metrics.held_micros,
                    scheduled(i),
                )
            })
            .collect();
        let (secs, before) = match &st.last {
            Some((at, before)) => (
                now.duration_since(*at).as_secs_f64().max(1e-3),
                before.clone(),
            ),
            None => (
                report.elapsed.as_secs_f64().max(1e-3),
                vec![(0, 0, 0, 0); counts.len()],
            ),
        };
        if st
            .last
            .as_ref()
            .is_none_or(|(at, _)| now.duration_since(*at) >= Duration::from_millis(900))
        {
            st.last = Some((now, counts.clone()));
        }
        let mut components: Vec<ComponentView> = report
            .components
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let m = &c.metrics;
                let (i0, o0, h0, b0) = before[i];
                let scheduled = counts[i].3.saturating_sub(b0) as f64 / 1e9 / secs;
                let watermark = live
                    .tap(&port_name(
                        plan,
                        PortRef {
                            node: i,
                            port: Port::Main,
                        },
                    ))
                    .and_then(|t| t.frontier())
                    .filter(|f| *f > 0);
                ComponentView {
                    id: c.id.clone(),
                    kind: c.kind.singular().to_string(),
                    ty: c.ty.clone(),
                    records_in: m.records_in,
                    records_out: m.records_out,
                    rate_in: m.records_in.saturating_sub(i0) as f64 / secs,
                    rate_out: m.records_out.saturating_sub(o0) as f64 / secs,
                    errors: m.errors,
                    dead_lettered: m.dead_lettered,
                    late: m.late,
                    state_bytes: m.state_bytes,
                    backlog: m.backlog,
                    in_flight_records: m.in_flight_records,
                    held: m.held_micros.saturating_sub(h0) as f64 / 1e6 / secs,
                    watermark_us: watermark,
                    watermark_lag_us: match (watermark, live.clock.get()) {
                        (Some(w), Some(clock))
                            if weir_engine::run::wall_clock_time(plan, &plan.nodes[i]) =>
                        {
                            Some((clock.now_micros() - w as i64).max(0) as u64)
                        }
                        _ => None,
                    },
                    partitions: c
                        .partitions
                        .iter()
                        .map(|p| PartitionView {
                            partition: p.partition.clone(),
                            lag: p.lag.max(0),
                            watermark_us: (p.watermark != i64::MIN).then_some(p.watermark),
                        })
                        .collect(),
                    busy: (scheduled / live.workers.max(1) as f64).min(1.0),
                }
            })
            .collect();
        // A source held back by backpressure is as busy as it can be: its input waits.
        for c in components.iter_mut() {
            if c.kind == "source" {
                c.busy = c.busy.max((c.held / live.workers.max(1) as f64).min(1.0));
            }
        }
        // A minute of histograms: the last minute's is now's minus the one from a minute ago.
        let current: Vec<Latencies> = report.sinks.iter().map(|s| s.latency.clone()).collect();
        while st
            .history
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > Duration::from_secs(60))
        {
            st.history.pop_front();
        }
        if st
            .history
            .back()
            .is_none_or(|(at, _)| now.duration_since(*at) >= Duration::from_secs(1))
        {
            st.history.push_back((now, current.clone()));
        }
        // In the run's first minute, the last minute is all of it.
        let minute_ago = match report.elapsed >= Duration::from_secs(60) {
            true => st.history.front().map(|(_, h)| h.clone()),
            false => None,
        };
        let sinks = report
            .sinks
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let minus = |now: &Histogram<u64>, then: Option<&Histogram<u64>>| {
                    let mut h = now.clone();
                    if let Some(t) = then {
                        let _ = h.subtract(t);
                    }
                    h
                };
                let old = minute_ago.as_ref().and_then(|h| h.get(i));
                let pm = minus(&s.latency.processing, old.map(|l| &l.processing));
                let em = minus(&s.latency.event, old.map(|l| &l.event));
                SinkView {
                    id: s.id.clone(),
                    processing: LatencyView::of(&s.latency.processing),
                    processing_minute: LatencyView::of(&pm),
                    event: s.event_time.then(|| LatencyView::of(&s.latency.event)),
                    event_minute: s.event_time.then(|| LatencyView::of(&em)),
                }
            })
            .collect();
        let snap = Snapshot {
            pipeline: report.pipeline.clone(),
            elapsed: report.elapsed.as_secs_f64(),
            finished,
            failure: report.failure.clone(),
            components,
            sinks,
            watermark_lag_us: live.watermark_lag(),
        };
        st.latest = Some((now, snap.clone()));
        snap
    }
}
