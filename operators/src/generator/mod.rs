//! The `generator` source: seeded, deterministic synthetic events (IoT, clickstream or Nexmark).
//!
//! Events go straight into Arrow columns, one chunk per activation: IoT events a whole chunk
//! in one pass (the `iot` module), the other profiles field by field into the chunk
//! builder's columns. Device and user ids are made once, so generating an event formats nothing.
//! [`GeneratorSpec::event`] gives the same event as a row.
//!
//! Event `i` is a pure function of `(seed, i)`, so any number of workers produce exactly the same
//! events between them: worker `w` of `W` generates the indices `i ≡ w (mod W)`, with no
//! duplicates and no gaps. With a `rate`, the source is open-loop: event `i` is due at
//! `start + i / rate` (its *scheduled* time) whether or not the engine keeps up.
//!
//! Event time: with `event_time_interval`, event `i` has time `start + i * interval` (fully
//! deterministic); otherwise it is the event's scheduled send time (with a rate) or the wall clock
//! when it is generated (without one).
//!
//! ```
//! use weir_operators::generator::{GeneratorSpec, Profile};
//! use weir_operators::value::Value;
//!
//! let spec = GeneratorSpec { events: Some(10), ..GeneratorSpec::new(Profile::Iot) };
//! let schema = spec.profile.schema();
//! let a = spec.event(3, 1_000);
//! assert_eq!(a, spec.event(3, 1_000), "deterministic");
//! assert_eq!(a.values[schema.index_of("id").unwrap()], Value::U64(3));
//! ```

use std::time::Duration;

use smol_str::SmolStr;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::Scope;

use crate::chunk::{arrow_schema, Chunk, ChunkBuilder, ColumnBuilder};
pub use crate::clock::RunClock;
use crate::epochs::{Epochs, CHUNK};
use crate::flow::{SourceEnv, HELD_RETRY};
use crate::metrics::ComponentMetrics;
use crate::schema::{Field, Meta, Record, Schema};
use crate::value::{FieldType, Micros, Value};
use crate::watermark::WatermarkSpec;
use crate::{Batches, Time};
use std::sync::Arc;

mod iot;

/// Which kind of events to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// Sensor readings (temperature, humidity, pressure), device status updates (online/offline,
    /// battery) and alarms, over `devices` devices.
    Iot,
    /// Web events (page_view, click, add_to_cart, purchase) by `users` users on their devices.
    Clickstream,
    /// An online auction in the style of the Nexmark benchmark: in every 50 events, one new
    /// person registers, three auctions open (by recently registered sellers) and 46 bids are
    /// placed.
    Nexmark,
}

impl Profile {
    /// The profile's name in pipeline files.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Iot => "iot",
            Profile::Clickstream => "clickstream",
            Profile::Nexmark => "nexmark",
        }
    }

    /// Parses a profile name.
    pub fn parse(name: &str) -> Option<Profile> {
        [Profile::Iot, Profile::Clickstream, Profile::Nexmark]
            .into_iter()
            .find(|p| p.name() == name)
    }

    /// The schema of the events this profile generates.
    pub fn schema(self) -> Schema {
        use FieldType::*;
        let fields = match self {
            Profile::Iot => vec![
                Field::new("id", U64),
                Field::new("ts", Timestamp),
                Field::new("kind", String),
                Field::new("device_id", String),
                Field::new("temperature", F64),
                Field::new("humidity", F64),
                Field::new("pressure", F64),
                Field::new("status", String),
                Field::new("battery", I64),
                Field::new("alarm", String),
                Field::new("severity", String),
            ],
            Profile::Nexmark => vec![
                Field::new("id", U64),
                Field::new("ts", Timestamp),
                Field::new("kind", String),
                Field::new("person_id", U64),
                Field::new("name", String),
                Field::new("city", String),
                Field::new("auction_id", U64),
                Field::new("category", I64),
                Field::new("price", I64),
            ],
            Profile::Clickstream => vec![
                Field::new("id", U64),
                Field::new("ts", Timestamp),
                Field::new("event", String),
                Field::new("user_id", String),
                Field::new("device_id", String),
                Field::new("page", String),
            ],
        };
        Schema::new(fields).with_time("ts").with_id("id")
    }
}

/// A validated generator configuration.
#[derive(Clone, Debug)]
pub struct GeneratorSpec {
    /// What to generate.
    pub profile: Profile,
    /// How many events in all (`None`: until stopped).
    pub events: Option<u64>,
    /// Offered rate in events per second across all workers (`None`: as fast as possible).
    pub rate: Option<f64>,
    /// Seed of the pseudo-random content.
    pub seed: u64,
    /// Number of distinct devices (IoT).
    pub devices: u64,
    /// Number of distinct users (clickstream).
    pub users: u64,
    /// Event time of event 0 (`None`: when the run starts).
    pub start: Option<Micros>,
    /// Event-time distance between consecutive events (`None`: scheduled or wall-clock time).
    pub interval: Option<Micros>,
    /// How the source's event time behaves: the watermark of event `i` is its undisordered
    /// time minus `max_out_of_orderness` (see [`watermark`](crate::watermark)).
    pub watermark: WatermarkSpec,
    /// Out-of-order events: each event's time is moved back by up to this much (µs).
    pub disorder: Micros,
    /// The fraction of events made late: moved back by more than the disorder and the
    /// watermark bound, by up to `late_by` beyond them.
    pub late_fraction: f64,
    /// How far beyond the bound late events fall, at most (µs).
    pub late_by: Micros,
    /// Pause: when a worker reaches event index `.0`, it sends nothing for `.1`.
    pub pause: Option<(u64, Duration)>,
    /// The fields the operator fills (`None`: all); the others are sent as NULL columns, because
    /// nothing downstream reads them (the plan works this out).
    pub columns: Option<Vec<bool>>,
    /// IoT devices that misbehave on purpose, for alerting (`None`: none do).
    pub anomalies: Option<Anomalies>,
}

/// IoT devices that misbehave on purpose, in a cycle of event indexes: in its second quarter
/// the first `overheat` devices read 60 °C above their baseline; in its third the next `silent`
/// devices send nothing (their events go to the other devices). A function of the event index,
/// like everything else the generator makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Anomalies {
    /// How many devices overheat (`dev-0000` on).
    pub overheat: u64,
    /// How many devices go silent (after the overheating ones).
    pub silent: u64,
    /// Events per cycle.
    pub cycle: u64,
}

impl GeneratorSpec {
    /// A spec with the defaults: unbounded, unthrottled, seed 0, 100 devices, 1000 users.
    pub fn new(profile: Profile) -> GeneratorSpec {
        GeneratorSpec {
            profile,
            events: None,
            rate: None,
            seed: 0,
            devices: 100,
            users: 1000,
            start: None,
            interval: None,
            watermark: WatermarkSpec::default(),
            disorder: 0,
            late_fraction: 0.0,
            late_by: 5_000_000,
            pause: None,
            columns: None,
            anomalies: None,
        }
    }

    /// The event time of event `i`, given its undisordered time `base`: `base` moved back by
    /// up to `disorder`, or, for the `late_fraction` of events, by more than `disorder` and
    /// `max_out_of_orderness` together (by up to `late_by` more). A function of `(seed, i)`.
    pub fn disordered(&self, i: u64, base: Micros) -> Micros {
        if self.disorder == 0 && self.late_fraction <= 0.0 {
            return base;
        }
        let h = mix(self.seed ^ mix(i ^ 0x5851_F42D_4C95_7F2D));
        let late = ((h >> 40) as f64 / (1u64 << 24) as f64) < self.late_fraction;
        let h2 = mix(h);
        if late {
            let beyond = self.disorder.max(self.watermark.max_out_of_orderness);
            base - beyond - 1 - (h2 % self.late_by.max(1) as u64) as Micros
        } else if self.disorder > 0 {
            base - (h2 % (self.disorder as u64 + 1)) as Micros
        } else {
            base
        }
    }

    /// The event time of event `i`, given that of event 0, when the configuration fixes it:
    /// `start + i * interval`, or the event's scheduled send time `start + i / rate`. `None`
    /// when it is the wall clock at generation.
    pub fn event_time(&self, i: u64, start: Micros) -> Option<Micros> {
        match (self.interval, self.rate) {
            (Some(iv), _) => Some(start.saturating_add((i as i64).saturating_mul(iv))),
            (None, Some(rate)) => Some(start.saturating_add((i as f64 * 1e6 / rate) as i64)),
            (None, None) => None,
        }
    }

    /// When the events `first, first + step, ...` before `end` have times `t0, t0 + dt, ...`
    /// (a fixed non-negative interval, no disorder or late events) and the last one's time
    /// does not overflow: `(t0, dt, how many)`, the times [`event_time`](Self::event_time)
    /// gives them.
    fn regular_times(
        &self,
        first: u64,
        end: u64,
        step: u64,
        start: Micros,
    ) -> Option<(Micros, Micros, usize)> {
        let iv = self.interval.filter(|&iv| iv >= 0)?;
        if self.disorder != 0 || self.late_fraction > 0.0 || first >= end {
            return None;
        }
        let n = (end - first).div_ceil(step);
        let last = first.checked_add((n - 1).checked_mul(step)?)?;
        let at = |i: u64| start.checked_add(i64::try_from(i).ok()?.checked_mul(iv)?);
        at(last)?;
        Some((at(first)?, iv.checked_mul(step as i64)?, n as usize))
    }

    /// Event `i`, with event time `ts`.
    pub fn event(&self, i: u64, ts: Micros) -> Record {
        let mut out = RowOut(Vec::with_capacity(11));
        self.write_event(i, ts, &mut out, &mut Names::new(self, 0));
        Record::new(out.0)
    }

    /// Writes event `i`, with event time `ts`, field by field to `out`.
    fn write_event(&self, i: u64, ts: Micros, out: &mut impl EventOut, names: &mut Names) {
        let h = || mix(self.seed ^ mix(i.wrapping_add(0x9E37_79B9_7F4A_7C15)));
        match self.profile {
            Profile::Iot => iot::write(self, i, ts, out, names),
            Profile::Clickstream => self.click(i, ts, h(), out, names),
            Profile::Nexmark => self.nexmark(i, ts, h(), out, names),
        }
    }

    fn nexmark(&self, i: u64, ts: Micros, h: u64, out: &mut impl EventOut, names: &mut Names) {
        const CITIES: [&str; 6] = ["Phoenix", "Portland", "Kent", "Boise", "Seattle", "Bend"];
        const NAMES: [&str; 8] = ["ann", "bob", "cho", "dev", "eli", "fay", "gus", "hal"];
        let (block, pos) = (i / 50, i % 50);
        let h2 = mix(h);
        out.u64(Some(i));
        out.ts(ts);
        match pos {
            0 => {
                // Person `block` registers.
                out.str(Some("person"));
                out.u64(Some(block));
                out.str(Some(names.numbered(NAMES[(h % 8) as usize], "-", block, 0)));
                out.str(Some(CITIES[(h2 % 6) as usize]));
                out.u64(None);
                out.i64(None);
                out.i64(None);
            }
            1..=3 => {
                // A recent person opens auction `3 * block + pos - 1`.
                out.str(Some("auction"));
                out.u64(Some(block.saturating_sub(h % 4)));
                out.str(None);
                out.str(None);
                out.u64(Some(3 * block + pos - 1));
                out.i64(Some((h2 % 10) as i64));
                out.i64(None);
            }
            _ => {
                // A bid on a recent auction by some person.
                out.str(Some("bid"));
                out.u64(Some(h % (block + 1)));
                out.str(None);
                out.str(None);
                out.u64(Some((3 * block + 2).saturating_sub(h2 % 30)));
                out.i64(None);
                out.i64(Some(100 + (h2 >> 8) as i64 % 10_000));
            }
        }
    }

    fn click(&self, i: u64, ts: Micros, h: u64, out: &mut impl EventOut, names: &mut Names) {
        const PAGES: [&str; 5] = ["/home", "/search", "/product", "/cart", "/checkout"];
        let user = h % self.users.max(1);
        let roll = (h >> 32) % 100;
        let h2 = mix(h);
        let event = match roll {
            0..=69 => "page_view",
            70..=89 => "click",
            90..=96 => "add_to_cart",
            _ => "purchase",
        };
        out.u64(Some(i));
        out.ts(ts);
        out.str(Some(event));
        out.str(Some(names.user(user)));
        out.str(Some(names.numbered(
            "dev",
            "-",
            user * 2 + (h2 >> 40) % 2,
            0,
        )));
        let page = PAGES[(h2 % 5) as usize];
        if page == "/product" {
            out.str(Some(names.numbered("/product", "/", (h2 >> 8) % 100, 0)));
        } else {
            out.str(Some(page));
        }
    }
}

/// Where a generated event's fields go, in schema order: one call per field.
trait EventOut {
    fn u64(&mut self, v: Option<u64>);
    fn i64(&mut self, v: Option<i64>);
    fn f64(&mut self, v: Option<f64>);
    fn ts(&mut self, v: Micros);
    fn str(&mut self, v: Option<&str>);
    /// A float computed only if its field is used (a pruned field is not computed at all).
    fn f64_with(&mut self, v: impl FnOnce() -> f64) {
        self.f64(Some(v()))
    }
}

/// Fields as one row of values.
struct RowOut(Vec<Value>);

impl EventOut for RowOut {
    fn u64(&mut self, v: Option<u64>) {
        self.0.push(v.map(Value::U64).unwrap_or_default())
    }
    fn i64(&mut self, v: Option<i64>) {
        self.0.push(v.map(Value::I64).unwrap_or_default())
    }
    fn f64(&mut self, v: Option<f64>) {
        self.0.push(v.map(Value::F64).unwrap_or_default())
    }
    fn ts(&mut self, v: Micros) {
        self.0.push(Value::Ts(v))
    }
    fn str(&mut self, v: Option<&str>) {
        self.0
            .push(v.map(|s| Value::Str(SmolStr::new(s))).unwrap_or_default())
    }
}

/// Where the operator writes its events: IoT events a chunk at a time into column buffers (see
/// [`iot`]); the other profiles field by field into the chunk builder's columns.
enum Out {
    Iot(iot::Columns),
    Fields(ColumnsOut),
}

/// Fields straight into the chunk builder's columns ([`ChunkBuilder`]'s columns, pruned fields skipped),
/// one column after the other, plus the metadata columns.
struct ColumnsOut {
    chunk: ChunkBuilder,
    at: usize,
}

impl ColumnsOut {
    fn new(schema: &Schema, columns: Option<&[bool]>) -> ColumnsOut {
        ColumnsOut {
            chunk: ChunkBuilder::pruned(&arrow_schema(schema), columns),
            at: 0,
        }
    }

    /// Ends the current row with its metadata.
    #[inline]
    fn end_row(&mut self, ingest: i64, watermark: u64) {
        debug_assert_eq!(self.at, self.chunk.cols.len());
        self.at = 0;
        self.chunk.end_row(Meta { ingest, watermark });
    }

    /// The rows so far as a chunk (`None` if there are none); the builders start again empty.
    fn finish(&mut self) -> Option<Chunk> {
        self.chunk.finish()
    }

    #[inline]
    fn next(&mut self) -> &mut ColumnBuilder {
        self.at += 1;
        &mut self.chunk.cols[self.at - 1]
    }
}

impl EventOut for ColumnsOut {
    #[inline]
    fn u64(&mut self, v: Option<u64>) {
        if let ColumnBuilder::U64(b) = self.next() {
            b.append_option(v)
        }
    }
    #[inline]
    fn i64(&mut self, v: Option<i64>) {
        if let ColumnBuilder::I64(b) = self.next() {
            b.append_option(v)
        }
    }
    #[inline]
    fn f64(&mut self, v: Option<f64>) {
        if let ColumnBuilder::F64(b) = self.next() {
            b.append_option(v)
        }
    }
    #[inline]
    fn ts(&mut self, v: Micros) {
        if let ColumnBuilder::Ts(b) = self.next() {
            b.append_value(v)
        }
    }
    #[inline]
    fn str(&mut self, v: Option<&str>) {
        if let ColumnBuilder::Str(b) = self.next() {
            b.append_option(v)
        }
    }
}

/// Device and user ids, made once (up to [`Names::CACHED`] of each), and a buffer for the
/// other numbered names, so generating an event formats nothing.
struct Names {
    devices: Vec<String>,
    users: Vec<String>,
    buf: String,
}

impl Names {
    /// Ids cached per kind, at most.
    const CACHED: u64 = 100_000;

    /// The names `spec` uses; with `cache`, up to that many ids of each kind are made now.
    fn new(spec: &GeneratorSpec, cache: u64) -> Names {
        let mut n = Names {
            devices: Vec::new(),
            users: Vec::new(),
            buf: String::new(),
        };
        let cache = cache.min(Names::CACHED);
        match spec.profile {
            Profile::Iot => {
                n.devices = (0..spec.devices.min(cache))
                    .map(|d| n.numbered("dev", "-", d, 5).to_string())
                    .collect()
            }
            Profile::Clickstream => {
                n.users = (0..spec.users.min(cache))
                    .map(|u| n.numbered("user", "-", u, 0).to_string())
                    .collect()
            }
            Profile::Nexmark => {}
        }
        n
    }

    fn device(&mut self, d: u64) -> &str {
        if (d as usize) < self.devices.len() {
            return &self.devices[d as usize];
        }
        self.numbered("dev", "-", d, 5)
    }

    fn user(&mut self, u: u64) -> &str {
        if (u as usize) < self.users.len() {
            return &self.users[u as usize];
        }
        self.numbered("user", "-", u, 0)
    }

    /// `prefix`, `sep` and `n` zero-padded to `width` digits, in the reused buffer.
    fn numbered(&mut self, prefix: &str, sep: &str, n: u64, width: usize) -> &str {
        let mut digits = itoa::Buffer::new();
        let d = digits.format(n);
        self.buf.clear();
        self.buf.push_str(prefix);
        self.buf.push_str(sep);
        for _ in d.len()..width {
            self.buf.push('0');
        }
        self.buf.push_str(d);
        &self.buf
    }
}

/// SplitMix64's finaliser: a fast, well-mixed hash of a 64-bit value.
#[inline]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A float in [0, 1) from the low 16 bits.
#[inline]
fn unit(h: u64) -> f64 {
    (h & 0xFFFF) as f64 / 65536.0
}

#[inline]
fn hundredths(x: f64) -> f64 {
    round_half_away(x * 100.0) / 100.0
}

/// `y.round()` (half away from zero), exactly, without the library call `round` becomes on a
/// baseline x86-64 target (a tenth of the generator's work otherwise): below 2^52 the
/// fractional part `y - trunc(y)` is exact.
#[inline]
fn round_half_away(y: f64) -> f64 {
    const EXACT: f64 = 4_503_599_627_370_496.0; // 2^52
    if y.is_nan() || y.abs() >= EXACT {
        return y.round();
    }
    let t = y as i64 as f64;
    let f = y - t;
    if f >= 0.5 {
        t + 1.0
    } else if f <= -0.5 {
        t - 1.0
    } else {
        // Keep the sign of a zero result (`(-0.4f64).round()` is -0.0).
        t.copysign(y)
    }
}

/// Builds the generator operator on this worker's scope. It emits events in batches by the
/// execution mode (see [`epochs`](crate::epochs)): in micro-batch mode a batch starts at each
/// interval boundary and takes the events due by then (all of them, up to the batch limit,
/// when unthrottled), and the capability advances once per batch. A batch starts only when the
/// [`flow`](crate::flow) admits it; with a `rate`, events due but not yet generated are the
/// source's backlog.
pub fn generator<'s>(
    scope: Scope<'s, Time>,
    name: &str,
    spec: GeneratorSpec,
    env: SourceEnv,
    metrics: Arc<ComponentMetrics>,
) -> Batches<'s> {
    let SourceEnv {
        mode,
        clock,
        ctl,
        flow,
        positions,
    } = env;
    let worker = scope.index() as u64;
    let peers = scope.peers() as u64;
    let mut start_ts = spec.start.unwrap_or(clock.wall);
    // With checkpoints: where to resume (see `position` below), and the log of positions.
    let restored: Option<serde_json::Value> = positions.as_ref().and_then(|(ck, _)| {
        ck.restored(name, worker as usize)
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
            .map(|p| p["position"].clone())
            .filter(|p| !p.is_null())
    });
    let log = positions.map(|(ck, logs)| {
        ck.register(worker as usize);
        let log: std::rc::Rc<std::cell::RefCell<crate::checkpoint::coordinator::PositionLog>> =
            Default::default();
        logs.borrow_mut()
            .push((name.to_string(), std::rc::Rc::clone(&log)));
        log.borrow_mut()
            .start(0, restored.clone().unwrap_or(serde_json::Value::Null));
        (ck.grid, log)
    });
    if let Some(p) = &restored {
        start_ts = p["start"].as_i64().unwrap_or(start_ts);
    }
    source(scope, name, move |cap, info| {
        let activator = scope.activator_for(info.address);
        let mut cap = Some(cap);
        let mut next = worker; // next index this worker generates
        let mut last_ts: Micros = 0;
        let mut idle_floor = Micros::MIN;
        let mut pause_over = spec.pause.is_none();
        if let Some(p) = &restored {
            next = p["next"].as_u64().unwrap_or(next);
            last_ts = p["last_ts"].as_i64().unwrap_or(0);
            idle_floor = p["idle_floor"].as_i64().unwrap_or(Micros::MIN);
            pause_over = p["pause_over"].as_bool().unwrap_or(pause_over);
        }
        // The index this run's schedule starts from: a resumed open-loop generator goes on
        // at its rate from where it was, not from its first event.
        let first = next - worker;
        let position = move |next: u64, last_ts: Micros, idle_floor: Micros, pause_over: bool| {
            serde_json::json!({
                "next": next,
                "last_ts": last_ts,
                "idle_floor": idle_floor,
                "pause_over": pause_over,
                "start": start_ts,
            })
        };
        let ns_per_event = spec.rate.map(|r| 1e9 / r);
        let mut epochs = Epochs::new(mode, clock);
        // The open batch: the index it ends before, and how many events it has sent.
        let mut open: Option<(u64, usize)> = None;
        // Whether the last batch was full, so more input is waiting.
        let mut backlog = false;
        let wm = spec.watermark;
        // When this worker's pause began.
        let mut paused_since: Option<Duration> = None;
        let mut admission = flow.admission(Arc::clone(&metrics));
        // This worker's share of the events due and not yet generated, as last published.
        let mut behind: i64 = 0;
        let mut names = Names::new(&spec, u64::MAX);
        let mut out = match spec.profile {
            Profile::Iot => Out::Iot(iot::Columns::new(
                &spec,
                arrow_schema(&spec.profile.schema()),
                spec.columns.as_deref(),
                &names,
            )),
            _ => Out::Fields(ColumnsOut::new(
                &spec.profile.schema(),
                spec.columns.as_deref(),
            )),
        };
        move |output| {
            let Some(c) = cap.as_mut() else { return };
            let limit = spec.events.unwrap_or(u64::MAX);
            if ctl.stopped() || next >= limit {
                if let (Some((grid, log)), false) = (&log, ctl.stopped()) {
                    // Resumed after its last event: its position stands for the end.
                    let p = position(next, last_ts, idle_floor, pause_over);
                    log.borrow_mut().moved(*grid, *c.time(), Time::MAX, || p);
                }
                cap = None;
                admission.release();
                metrics.add_backlog(-behind);
                return;
            }
            // Events due by now (all of them, unthrottled); what this worker has not generated
            // of its share is its backlog.
            let due_now = match ns_per_event {
                Some(ns) => {
                    let due = ((clock.instant.elapsed().as_nanos() as f64 / ns) as u64)
                        .saturating_add(1)
                        .saturating_add(first)
                        .min(limit);
                    let now_behind = due.saturating_sub(next).div_ceil(peers) as i64;
                    metrics.add_backlog(now_behind - behind);
                    behind = now_behind;
                    due
                }
                None => limit,
            };
            if open.is_none() && !admission.admit(*c.time()) {
                // Held back: try again shortly (the probe is not a wake-up source).
                activator.activate_after(HELD_RETRY);
                return;
            }
            if let (false, None, Some((at, length))) = (pause_over, open, spec.pause) {
                if next >= at {
                    let now = clock.instant.elapsed();
                    let since = *paused_since.get_or_insert(now);
                    if now - since < length {
                        if wm.idle_timeout.is_some_and(|idle| now - since >= idle) {
                            idle_floor = idle_floor.max(wm.idle_floor(clock.now_micros()));
                            let t = idle_floor.max(0) as Time;
                            if *c.time() < t {
                                c.downgrade(&t);
                            }
                        }
                        let left = length - (now - since);
                        activator.activate_after(left.min(Duration::from_millis(100)));
                        return;
                    }
                    pause_over = true;
                }
            }
            if open.is_none() {
                if !(backlog || epochs.start_batch()) {
                    activator.activate_after(epochs.until_next().min(Duration::from_millis(100)));
                    return;
                }
                // The batch takes the events due now.
                open = Some((due_now, 0));
            }
            let (due, sent) = open.as_mut().expect("opened above");
            let max = epochs.batch_max();
            let room = (max - *sent).min(CHUNK) as u64;
            let end = (*due).min(next.saturating_add(room * peers));
            if next < end {
                let wall = clock.now_micros();
                let mut produced = 0;
                // IoT events at a fixed interval, unthrottled and undisordered: their times,
                // ingest times and watermarks as one run, without a computation per event.
                if let (Out::Iot(cols), None) = (&mut out, ns_per_event) {
                    if let Some((t0, dt, n)) = spec.regular_times(next, end, peers, start_ts) {
                        if t0 >= last_ts {
                            let t_last = cols.push_run(next, peers, n, (t0, dt), wall, |t| {
                                wm.of(t, idle_floor).max(0) as Time
                            });
                            last_ts = t_last;
                            produced = n;
                            next += n as u64 * peers;
                        }
                    }
                }
                while next < end {
                    let base = spec.event_time(next, start_ts).unwrap_or(wall).max(last_ts);
                    last_ts = base;
                    let ts = spec.disordered(next, base);
                    let ingest = match ns_per_event {
                        // The scheduled send time, so queueing delay is not hidden.
                        Some(ns) => clock.wall + ((next - first) as f64 * ns / 1e3) as Micros,
                        None => wall,
                    };
                    let watermark = wm.of(base, idle_floor).max(0) as Time;
                    match &mut out {
                        Out::Iot(cols) => cols.push(next, ts, ingest, watermark),
                        Out::Fields(cols) => {
                            spec.write_event(next, ts, cols, &mut names);
                            cols.end_row(ingest, watermark);
                        }
                    }
                    produced += 1;
                    next += peers;
                }
                let chunk = match &mut out {
                    Out::Iot(cols) => cols.finish(&spec, &mut names),
                    Out::Fields(cols) => cols.finish(),
                };
                output
                    .session(c)
                    .give(chunk.expect("a chunk is sent only with rows"));
                *sent += produced;
                metrics.add_out(produced as u64);
                crate::checkpoint::fault::read(produced as u64);
            }
            let finished = next >= limit;
            let full = *sent >= max;
            if !(finished || full || next >= *due) {
                // The batch goes on in the next activation, at the same capability.
                activator.activate();
                return;
            }
            let records = *sent as u64;
            open = None;
            backlog = full;
            admission.sent(*c.time(), records);
            if finished {
                if let Some((grid, log)) = &log {
                    let p = position(next, last_ts, idle_floor, pause_over);
                    log.borrow_mut().moved(*grid, *c.time(), Time::MAX, || p);
                }
                cap = None;
                admission.release();
                metrics.add_backlog(-behind);
                return;
            }
            // The next event's watermark bounds everything this worker will still send.
            let next_base = spec
                .event_time(next, start_ts)
                .unwrap_or(last_ts)
                .max(last_ts);
            let t = wm.of(next_base, idle_floor).max(0) as Time;
            if *c.time() < t {
                if let Some((grid, log)) = &log {
                    let p = || position(next, last_ts, idle_floor, pause_over);
                    log.borrow_mut().moved(*grid, *c.time(), t, p);
                }
                c.downgrade(&t);
            }
            let wait = if backlog {
                Duration::ZERO
            } else if !epochs.continuous() {
                epochs.until_next()
            } else {
                // Continuous and throttled: wake when the next event is due.
                let ns = ns_per_event.unwrap_or(0.0);
                let due_at = Duration::from_nanos(((next - first) as f64 * ns) as u64);
                due_at.saturating_sub(clock.instant.elapsed())
            };
            if wait.is_zero() {
                activator.activate();
            } else {
                // At least every 100ms, to notice a stop.
                activator.activate_after(wait.min(Duration::from_millis(100)));
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_half_away_is_round() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut cases = vec![
            0.5,
            -0.5,
            1.5,
            -1.5,
            2.5,
            0.49999999999999994,
            -0.49999999999999994,
            0.0,
            -0.0,
            -0.4,
            4_503_599_627_370_495.5,
            4_503_599_627_370_497.0,
            1e300,
            -1e300,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
            2534.5,
            3199.4999999999995,
        ];
        for _ in 0..100_000 {
            x = mix(x);
            cases.push(f64::from_bits(x));
            cases.push((x % 2_000_000) as f64 / 100.0 - 10_000.0);
            cases.push((x % 1_000_001) as f64 * 0.5 - 250_000.0);
        }
        for y in cases {
            let (a, b) = (round_half_away(y), y.round());
            assert!(
                a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                "{y:e}: {a:e} against {b:e}"
            );
        }
    }

    #[test]
    fn profiles_fill_their_schemas() {
        for p in [Profile::Iot, Profile::Clickstream, Profile::Nexmark] {
            let spec = GeneratorSpec::new(p);
            let schema = p.schema();
            for i in 0..1000 {
                let r = spec.event(i, 5);
                assert_eq!(r.values.len(), schema.len());
                for (v, f) in r.values.iter().zip(&schema.fields) {
                    if let Some(t) = v.field_type() {
                        assert_eq!(t, f.ty, "field {}", f.name);
                    }
                }
            }
        }
    }

    #[test]
    fn iot_mix_and_ranges() {
        let spec = GeneratorSpec::new(Profile::Iot);
        let (mut readings, mut status, mut alarms) = (0, 0, 0);
        for i in 0..10_000 {
            let r = spec.event(i, 0);
            match r.values[2].as_str().unwrap() {
                "reading" => {
                    readings += 1;
                    let t = r.values[4].as_f64().unwrap();
                    assert!((10.0..=40.0).contains(&t), "{t}");
                }
                "status" => status += 1,
                _ => alarms += 1,
            }
        }
        assert!(
            readings > 8500 && status > 500 && alarms > 150,
            "{readings} {status} {alarms}"
        );
    }

    #[test]
    fn seeds_differ() {
        let a = GeneratorSpec::new(Profile::Clickstream);
        let b = GeneratorSpec {
            seed: 1,
            ..a.clone()
        };
        assert_ne!(a.event(0, 0), b.event(0, 0));
    }
}

#[cfg(test)]
mod operator_tests {
    use super::*;
    use timely::dataflow::operators::capture::Event;
    use timely::dataflow::operators::Capture;

    /// What a captured stream sent, by time (`extract` needs ordered data; chunks are not).
    fn events(rx: std::sync::mpsc::Receiver<Event<Time, Vec<Chunk>>>) -> Vec<(Time, Vec<Chunk>)> {
        rx.try_iter()
            .filter_map(|e| match e {
                Event::Messages(t, c) => Some((t.iter().copied().max().unwrap_or(0), c)),
                Event::Progress(_) => None,
            })
            .collect()
    }

    /// What a generator with `spec` sends on `workers` workers, by time.
    fn run(spec: &GeneratorSpec, workers: usize) -> Vec<(Time, Vec<Chunk>)> {
        let (tx, rx) = std::sync::mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        let spec = spec.clone();
        timely::execute(timely::Config::process(workers), move |worker| {
            let tx = tx.lock().unwrap().clone();
            let spec = spec.clone();
            worker.dataflow::<Time, _, _>(|scope| {
                generator(scope, "g", spec, env(), Arc::default()).capture_into(tx);
            });
        })
        .unwrap()
        .join();
        events(rx)
    }

    fn rows(chunks: Vec<Chunk>) -> Vec<Record> {
        let mut out = Vec::new();
        chunks.iter().for_each(|c| c.push_rows(&mut out));
        out
    }

    /// The chunks the operator sends hold exactly the events `event` gives as rows, for every
    /// profile, with ids made once and (past the cache) on the fly.
    #[test]
    fn chunks_hold_the_events_of_the_rows() {
        // Pruned: the fields nothing reads (here every odd one but the id) are NULL columns.
        let odd = |p: Profile| -> Option<Vec<bool>> {
            Some(
                (0..p.schema().len())
                    .map(|k| k == 0 || k % 2 == 0)
                    .collect(),
            )
        };
        let anomalies = Some(Anomalies {
            overheat: 3,
            silent: 4,
            cycle: 1_000,
        });
        for (profile, devices, columns, anomalies) in [
            (Profile::Iot, 100, None, None),
            (Profile::Iot, 100, None, anomalies),
            (Profile::Iot, 250_000, None, None),
            (Profile::Clickstream, 100, None, None),
            (Profile::Nexmark, 100, None, None),
            (Profile::Iot, 100, odd(Profile::Iot), None),
            (Profile::Iot, 100, odd(Profile::Iot), anomalies),
            (Profile::Clickstream, 100, odd(Profile::Clickstream), None),
            (Profile::Nexmark, 100, odd(Profile::Nexmark), None),
        ] {
            let spec = GeneratorSpec {
                events: Some(5_000),
                start: Some(0),
                interval: Some(7),
                devices,
                users: devices,
                columns: columns.clone(),
                anomalies,
                ..GeneratorSpec::new(profile)
            };
            let reference = spec.clone();
            let sent = run(&spec, 1);
            let got: Vec<Record> = sent.into_iter().flat_map(|(_, c)| rows(c)).collect();
            assert_eq!(got.len(), 5_000);
            for r in got {
                let i = r.values[0].as_u64().unwrap();
                let mut want = reference.event(i, 7 * i as i64);
                if let Some(used) = &columns {
                    for (v, used) in want.values.iter_mut().zip(used) {
                        if !used {
                            *v = Value::Null;
                        }
                    }
                }
                assert_eq!(r.values, want.values, "{profile:?} event {i}");
                assert!(r
                    .values
                    .iter()
                    .zip(&want.values)
                    .all(|(a, b)| a.field_type() == b.field_type()));
            }
        }
    }

    /// IoT events at a fixed interval get their times and watermarks a chunk at a time, other
    /// profiles (and times that start below zero) an event at a time: both give every event the
    /// time `start + i * interval` (never below 0) and the watermark of that time.
    #[test]
    fn runs_of_regular_times_match_single_events() {
        for (profile, start, workers) in [
            (Profile::Iot, 5_000, 1),
            (Profile::Iot, 5_000, 3),
            (Profile::Iot, -20_000, 2),
            (Profile::Clickstream, 5_000, 2),
        ] {
            let spec = GeneratorSpec {
                events: Some(9_001),
                start: Some(start),
                interval: Some(7),
                watermark: WatermarkSpec {
                    max_out_of_orderness: 1_000,
                    idle_timeout: None,
                },
                ..GeneratorSpec::new(profile)
            };
            let mut seen = 0;
            for (_, chunks) in run(&spec, workers) {
                for c in &chunks {
                    let ingest = c.meta(0).ingest;
                    for r in rows(vec![c.clone()]) {
                        let i = r.values[0].as_u64().unwrap();
                        let ts = (start + 7 * i as i64).max(0);
                        assert_eq!(r.values[1].as_ts(), Some(ts), "{profile:?} event {i}");
                        assert_eq!(r.meta.watermark, (ts - 1_000).max(0) as u64);
                        assert_eq!(r.meta.ingest, ingest, "one ingest time per chunk");
                        seen += 1;
                    }
                }
            }
            assert_eq!(seen, 9_001, "{profile:?} on {workers} workers");
        }
    }

    #[test]
    fn numbered_names_are_zero_padded() {
        let mut n = Names::new(&GeneratorSpec::new(Profile::Nexmark), 0);
        assert_eq!(n.numbered("dev", "-", 7, 5), "dev-00007");
        assert_eq!(n.numbered("dev", "-", 123_456, 5), "dev-123456");
        assert_eq!(n.numbered("/product", "/", 42, 0), "/product/42");
        let mut d = Names::new(&GeneratorSpec::new(Profile::Iot), 10);
        assert_eq!(d.device(3), "dev-00003");
        assert_eq!(d.device(12), "dev-00012");
    }

    fn env() -> SourceEnv {
        use crate::{control::RunControl, epochs::Mode};
        SourceEnv::new(Mode::Continuous, RunClock::now(), RunControl::default())
    }

    #[test]
    fn workers_share_the_events_without_duplicates_or_gaps() {
        for workers in [1, 2, 3] {
            let spec = GeneratorSpec {
                events: Some(10_001),
                start: Some(0),
                interval: Some(10),
                ..GeneratorSpec::new(Profile::Iot)
            };
            let mut ids: Vec<u64> = run(&spec, workers)
                .into_iter()
                .flat_map(|(_, r)| rows(r))
                .map(|r| r.values[0].as_u64().unwrap())
                .collect();
            ids.sort();
            assert_eq!(ids, (0..10_001).collect::<Vec<_>>(), "{workers} workers");
        }
    }

    #[test]
    fn event_times_follow_the_interval_and_never_precede_the_capability() {
        let spec = GeneratorSpec {
            events: Some(20_000),
            start: Some(5_000),
            interval: Some(3),
            ..GeneratorSpec::new(Profile::Clickstream)
        };
        for (time, chunks) in run(&spec, 2) {
            for r in rows(chunks) {
                let (i, ts) = (r.values[0].as_u64().unwrap(), r.values[1].as_ts().unwrap());
                assert_eq!(ts, 5_000 + 3 * i as i64);
                assert!(
                    ts as u64 >= time,
                    "a record's event time is not behind its timely time"
                );
            }
        }
    }

    /// Anomalies: the overheating devices read 60 °C above their baseline in a cycle's second
    /// quarter only, and the silent ones send nothing in its third; nothing else changes.
    #[test]
    fn anomalies_overheat_and_silence_their_devices() {
        let plain = GeneratorSpec {
            devices: 20,
            ..GeneratorSpec::new(Profile::Iot)
        };
        let odd = GeneratorSpec {
            anomalies: Some(Anomalies {
                overheat: 2,
                silent: 3,
                cycle: 4_000,
            }),
            ..plain.clone()
        };
        let device = |r: &Record| r.values[3].as_str().unwrap().to_string();
        let (mut boosted, mut moved) = (0, 0);
        for i in 0..8_000u64 {
            let (a, b) = (plain.event(i, 0), odd.event(i, 0));
            let quarter = (i / 1_000) % 4;
            let d = device(&a);
            let n: u64 = d[4..].parse().unwrap();
            match (quarter, n) {
                (1, 0..2) if a.values[4] != Value::Null => {
                    let (x, y) = (a.values[4].as_f64().unwrap(), b.values[4].as_f64().unwrap());
                    assert!((y - x - 60.0).abs() < 0.011, "event {i}: {x} -> {y}");
                    boosted += 1;
                }
                (2, 2..5) => {
                    let m: u64 = device(&b)[4..].parse().unwrap();
                    assert!(m >= 5, "event {i} of silent {d} went to {}", device(&b));
                    // The event is another device's now: its temperature is around that
                    // device's baseline; nothing else changes.
                    assert_eq!(a.values[5..], b.values[5..], "only the device changes");
                    moved += 1;
                }
                _ => assert_eq!(a.values, b.values, "event {i} is as without anomalies"),
            }
        }
        assert!(boosted > 100 && moved > 200, "{boosted} {moved}");
    }
}
