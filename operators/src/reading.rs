//! The shell shared by sources that read and decode external input (`file`, `stdin`, `tcp`,
//! `kafka`): a timely operator with two outputs — records, and dead letters, both as
//! [`Chunk`]s — that applies the bad-record policy, counts, stamps each record's
//! [`Meta`](crate::schema::Meta), and reads in batches by the
//! execution mode ([`epochs`](crate::epochs)): in micro-batch mode it reads nothing between
//! batches, so input waits where it is (a file, or the standard-input pipe, which then pushes
//! back on its writer).
//!
//! **Watermarks.** Input is read in *partitions* (a file; standard input), each in order. A
//! partition's watermark is the largest event time read from it so far, and each record carries
//! its partition's watermark (including itself). The operator's capability — the frontier it
//! holds for everything it will still send — is the watermark of the partition being read, or
//! stays where it is while partitions that have not been started remain on this worker. So
//! whether a record is late depends only on the order of its own partition, never on how work
//! was split into activations, batches or workers.
//!
//! Batches start only when the source's [`flow`](crate::flow) admits them (backpressure).
//!
//! The source-specific part is a `step` function that reads some input into a [`Batch`] per
//! activation and says whether input remains. Records are decoded into one reused row of
//! values and appended from it to column builders ([`ChunkBuilder`]): a record costs no
//! allocation of its own, and each activation sends one chunk.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::Scope;

use std::time::Duration;

use arrow::datatypes::SchemaRef;

use crate::checkpoint::coordinator::PositionLog;
use crate::chunk::{arrow_schema, Chunk, ChunkBuilder};
use crate::decode::{dead_letter_schema, DecodeSpec, OnError};
use crate::epochs::Epochs;
use crate::flow::{SourceEnv, HELD_RETRY};
use crate::framing::{escape_bytes, too_long, NOT_UTF8};
use crate::metrics::ComponentMetrics;
use crate::schema::{Meta, Record};
use crate::value::{Micros, Value};
use crate::watermark::WatermarkSpec;
use crate::{Batches, Time};

/// What one activation of a reading source produced.
pub struct Batch {
    /// Good records.
    pub records: ChunkBuilder,
    /// The row the last record was decoded into (see [`decode_json`](Self::decode_json)).
    pub values: Vec<Value>,
    /// Dead-letter records.
    pub dead: Vec<Record>,
    /// Input records read (good and bad).
    pub read: u64,
    /// Bad records.
    pub errors: u64,
    /// Each bad record's place (`FILE:LINE`) and reason, for the metrics.
    pub reasons: Vec<(String, String)>,
    /// Lines with nothing but white space, skipped.
    pub blank: u64,
    /// A fatal error: stop the run.
    pub failure: Option<String>,
    /// The largest event time read from the partition being read.
    pub max_seen: Micros,
    /// The partition's idle floor (see [`watermark`](crate::watermark)).
    pub idle_floor: Micros,
    /// Whether partitions that have not been started remain (they hold the frontier back).
    pub later_partitions: bool,
    /// The ingest time stamped on records read in this step.
    pub ingest: Micros,
    /// With checkpoints: the position to resume from (set before the first step; the step
    /// takes it), JSON the source itself wrote as its `position`.
    pub restore: Option<serde_json::Value>,
    /// With checkpoints: whether the step keeps `position` up to date.
    pub track: bool,
    /// With checkpoints: where the source is, as JSON its step can resume from.
    pub position: serde_json::Value,
}

impl Batch {
    /// An empty batch of records laid out by `schema` (from [`arrow_schema`]).
    pub fn new(schema: &SchemaRef) -> Batch {
        Batch {
            records: ChunkBuilder::new(schema),
            values: Vec::new(),
            dead: Vec::new(),
            read: 0,
            errors: 0,
            reasons: Vec::new(),
            blank: 0,
            failure: None,
            max_seen: Micros::MIN,
            idle_floor: Micros::MIN,
            later_partitions: false,
            ingest: 0,
            restore: None,
            track: false,
            position: serde_json::Value::Null,
        }
    }

    /// The position a checkpoint keeps: the step's `position` and the partition's watermark
    /// state.
    pub fn checkpoint_position(&self) -> serde_json::Value {
        serde_json::json!({
            "source": self.position,
            "max_seen": self.max_seen,
            "idle_floor": self.idle_floor,
        })
    }

    /// Takes the position to resume from, if any (the step's own `position`), restoring the
    /// watermark state the position was taken with.
    pub fn take_restore(&mut self) -> Option<serde_json::Value> {
        let r = self.restore.take()?;
        if r.is_null() {
            return None;
        }
        self.max_seen = r["max_seen"].as_i64().unwrap_or(Micros::MIN);
        self.idle_floor = r["idle_floor"].as_i64().unwrap_or(Micros::MIN);
        Some(r["source"].clone())
    }

    /// Starts reading a new partition: its watermark starts from nothing.
    pub fn start_partition(&mut self) {
        self.max_seen = Micros::MIN;
        self.idle_floor = Micros::MIN;
    }

    /// The watermark of the partition being read.
    pub fn watermark(&self, spec: &WatermarkSpec) -> Micros {
        spec.of(self.max_seen, self.idle_floor)
    }

    /// For a source reading several partitions at once: switches to a partition whose state is
    /// `max_seen` and `idle_floor` (read back from `max_seen` after [`accept`](Self::accept)).
    pub fn enter_partition(&mut self, max_seen: Micros, idle_floor: Micros) {
        self.max_seen = max_seen;
        self.idle_floor = idle_floor;
    }

    /// For a source reading several partitions at once: the watermark to hold the capability
    /// at once the step returns — the least of its partitions'.
    pub fn hold_at(&mut self, watermark: Micros) {
        self.max_seen = Micros::MIN;
        self.idle_floor = watermark;
    }
}

impl Batch {
    /// Takes one JSON line (without its line end): a blank line is counted, a line that is not
    /// UTF-8 is a bad record (its bytes kept, escaped), any other is decoded and routed.
    /// Whether it was a record (not blank).
    pub fn json_line(&mut self, spec: &DecodeSpec, raw: &[u8], file: &str, line: u64) -> bool {
        if raw.iter().all(u8::is_ascii_whitespace) {
            self.blank += 1;
            return false;
        }
        match std::str::from_utf8(raw) {
            Ok(text) => {
                let decoded = self.decode_json(spec, text, file, line, None);
                self.accept(spec, decoded, file, line, text);
            }
            Err(_) => {
                let shown = escape_bytes(raw);
                self.accept(spec, Err(NOT_UTF8.into()), file, line, &shown);
            }
        }
        true
    }

    /// Takes a line longer than the source's bound: one bad record showing its `start`.
    pub fn too_long(&mut self, spec: &DecodeSpec, start: &[u8], bytes: u64, file: &str, line: u64) {
        let reason = too_long(bytes, spec.max_line_bytes);
        self.accept(spec, Err(reason), file, line, &escape_bytes(start));
    }

    /// Decodes one JSON object into [`values`](Self::values) (see
    /// [`DecodeSpec::decode_json_into`]); pass the result to [`accept`](Self::accept).
    pub fn decode_json(
        &mut self,
        spec: &DecodeSpec,
        text: &str,
        file: &str,
        line: u64,
        time: Option<Micros>,
    ) -> Result<(), String> {
        spec.decode_json_into(text, file, line, time, &mut self.values)
    }

    /// Decodes one CSV row into [`values`](Self::values) (see
    /// [`DecodeSpec::decode_csv_into`]); pass the result to [`accept`](Self::accept).
    pub fn decode_csv(
        &mut self,
        spec: &DecodeSpec,
        row: &csv::StringRecord,
        columns: &[Option<usize>],
        file: &str,
        line: u64,
        time: Option<Micros>,
    ) -> Result<(), String> {
        spec.decode_csv_into(row, columns, file, line, time, &mut self.values)
    }

    /// Decodes one message of a message queue: its payload is a JSON object, or with `csv` (the
    /// row to reuse and the schema's columns) one CSV row. Returns the result for
    /// [`accept`](Self::accept) and the payload as text for a dead letter.
    pub fn decode_message<'p>(
        &mut self,
        spec: &DecodeSpec,
        csv: Option<(&mut csv::StringRecord, &[Option<usize>])>,
        payload: &'p [u8],
        place: &str,
        line: u64,
        time: Option<Micros>,
    ) -> (Result<(), String>, std::borrow::Cow<'p, str>) {
        let Ok(text) = std::str::from_utf8(payload) else {
            return (Err(NOT_UTF8.to_string()), String::from_utf8_lossy(payload));
        };
        let text = text.trim_end_matches(['\n', '\r']);
        let decoded = match csv {
            Some((row, columns)) => {
                let mut rows = csv::ReaderBuilder::new()
                    .has_headers(false)
                    .buffer_capacity(text.len() + 1)
                    .from_reader(text.as_bytes());
                match rows.read_record(row) {
                    Ok(true) => self.decode_csv(spec, row, columns, place, line, time),
                    Ok(false) => Err("empty message".to_string()),
                    Err(e) => Err(format!("malformed CSV: {e}")),
                }
            }
            None => self.decode_json(spec, text, place, line, time),
        };
        (decoded, std::borrow::Cow::Borrowed(text))
    }

    /// The event time of the record last decoded into [`values`](Self::values).
    pub fn event_time(&self, spec: &DecodeSpec) -> Option<Micros> {
        if spec.ingest_time {
            return Some(self.ingest);
        }
        spec.schema.time.and_then(|t| self.values[t].as_ts())
    }

    /// Routes one record by the source's policy: `Ok` takes the record decoded into
    /// [`values`](Self::values), `Err` is a bad record with its reason.
    pub fn accept(
        &mut self,
        spec: &DecodeSpec,
        decoded: Result<(), String>,
        file: &str,
        line: u64,
        raw: &str,
    ) {
        self.read += 1;
        match decoded {
            Ok(()) => {
                let t = self.event_time(spec);
                if let Some(t) = t {
                    self.max_seen = self.max_seen.max(t);
                }
                let meta = Meta {
                    watermark: self.watermark(&spec.watermark).max(0) as Time,
                    ingest: match (spec.latency_from_event_time, t) {
                        (true, Some(t)) => t,
                        _ => self.ingest,
                    },
                };
                self.records.push(&self.values, meta);
            }
            Err(reason) => {
                self.errors += 1;
                self.reasons
                    .push((format!("{file}:{line}"), reason.clone()));
                match spec.on_error {
                    OnError::DeadLetter => {
                        let mut d = spec.dead_letter(file, line, reason, raw);
                        d.meta.ingest = self.ingest;
                        d.meta.watermark = self.watermark(&spec.watermark).max(0) as Time;
                        self.dead.push(d)
                    }
                    OnError::Skip => {}
                    OnError::Fail => {
                        self.failure.get_or_insert(format!(
                            "bad record in source `{}` at {file}:{line}: {reason} \
                             (the source has on_error = \"fail\"; use \"dead-letter\" or \"skip\" to go on past bad records)",
                            spec.source
                        ));
                    }
                }
            }
        }
    }
}

/// A source's `max_error_rate`: the share of bad records among the last
/// [`ErrorRate::WINDOW`] records a worker read (counted a step at a time), checked once it has
/// read [`ErrorRate::MIN_RECORDS`]. The run's end checks the whole run's share too (the engine
/// does), so a short input cannot slip under it.
pub struct ErrorRate {
    limit: f64,
    /// (records, bad records) per step, oldest first.
    steps: std::collections::VecDeque<(u64, u64)>,
    read: u64,
    bad: u64,
}

impl ErrorRate {
    /// Records the sliding count covers.
    pub const WINDOW: u64 = 1_000;
    /// Records read before the rate is checked.
    pub const MIN_RECORDS: u64 = 100;

    /// A check against `limit` (a fraction, such as 0.01).
    pub fn new(limit: f64) -> ErrorRate {
        ErrorRate {
            limit,
            steps: Default::default(),
            read: 0,
            bad: 0,
        }
    }

    /// Adds a step's records and bad records; says how the limit was passed, if it was.
    pub fn add(&mut self, read: u64, bad: u64) -> Option<String> {
        if read == 0 {
            return None;
        }
        self.steps.push_back((read, bad));
        self.read += read;
        self.bad += bad;
        while let Some(&(r, b)) = self.steps.front() {
            if self.read - r < Self::WINDOW {
                break;
            }
            self.steps.pop_front();
            self.read -= r;
            self.bad -= b;
        }
        let rate = self.bad as f64 / self.read as f64;
        (self.read >= Self::MIN_RECORDS && rate > self.limit).then(|| {
            format!(
                "{} of the last {} records were bad ({:.1}%), over its max_error_rate of {}%",
                self.bad,
                self.read,
                rate * 100.0,
                self.limit * 100.0
            )
        })
    }
}

/// Whether a reading source has more input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// More input is ready now: activate again at once.
    More,
    /// Waiting for input that will wake the operator (or for the heartbeat).
    Waiting,
    /// All input has been read.
    Done,
}

/// What a reading source sends: its records' layout and how their event time behaves.
pub struct Output {
    /// The records' layout (from [`arrow_schema`]).
    pub schema: SchemaRef,
    /// The source's watermark rule.
    pub watermark: WatermarkSpec,
    /// The most bad records a source may read, as a fraction (see [`ErrorRate`]).
    pub max_error_rate: Option<f64>,
}

impl Output {
    /// The output of a source decoding by `decode`.
    pub fn of(decode: &DecodeSpec) -> Output {
        Output {
            schema: arrow_schema(&decode.schema),
            watermark: decode.watermark,
            max_error_rate: decode.max_error_rate,
        }
    }
}

/// Builds a two-output reading source. `make_step` receives the operator's address (to build
/// activators) and returns the per-activation step.
pub fn reading_source<'s, S, F>(
    scope: Scope<'s, Time>,
    name: &str,
    Output {
        schema,
        watermark,
        max_error_rate,
    }: Output,
    env: SourceEnv,
    metrics: Arc<ComponentMetrics>,
    make_step: F,
) -> (Batches<'s>, Batches<'s>)
where
    F: FnOnce(Rc<[usize]>) -> S,
    S: FnMut(&mut Batch) -> Progress + 'static,
{
    let SourceEnv {
        mode,
        clock,
        ctl,
        flow,
        positions,
    } = env;
    let worker = scope.index();
    let source_name = name.to_owned();
    let mut builder = OperatorBuilder::new(name.to_owned(), scope);
    let address = builder.operator_info().address;
    let (records_out, records) = builder.new_output::<Vec<Chunk>>();
    let (dead_out, dead) = builder.new_output::<Vec<Chunk>>();
    let mut records_out =
        OutputBuilder::<_, timely::container::CapacityContainerBuilder<Vec<Chunk>>>::from(
            records_out,
        );
    let mut dead_out =
        OutputBuilder::<_, timely::container::CapacityContainerBuilder<Vec<Chunk>>>::from(dead_out);
    let dead_schema = arrow_schema(&dead_letter_schema());
    let activator = scope.activator_for(Rc::clone(&address));
    let mut step = make_step(Rc::clone(&address));
    builder.build(move |mut caps| {
        let mut dead_cap = caps.pop();
        let mut rec_cap = caps.pop();
        let mut batch = Batch::new(&schema);
        // With checkpoints: the source's positions at candidate times, and where to resume.
        let log = positions.as_ref().map(|(spec, logs)| {
            spec.register(worker);
            let log: Rc<RefCell<PositionLog>> = Rc::default();
            logs.borrow_mut()
                .push((source_name.clone(), Rc::clone(&log)));
            let restored = spec
                .restored(&source_name, worker)
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
                .map(|p| p["position"].clone())
                .unwrap_or(serde_json::Value::Null);
            batch.track = true;
            batch.restore = Some(restored.clone());
            log.borrow_mut().start(0, restored);
            (spec.grid, log)
        });
        let mut chunks: Vec<Chunk> = Vec::with_capacity(1);
        // When this worker last read input (processing time), for idleness.
        let mut last_input = clock.instant.elapsed();
        let mut epochs = Epochs::new(mode, clock);
        // Records sent in the open batch, if one is open.
        let mut open: Option<usize> = None;
        // Whether the last batch was full, so more input is waiting.
        let mut backlog = false;
        let mut admission = flow.admission(Arc::clone(&metrics));
        let mut error_rate = max_error_rate.map(ErrorRate::new);
        let source = name.to_owned();
        move |_frontiers| {
            let (Some(rc), Some(dc)) = (rec_cap.as_mut(), dead_cap.as_mut()) else {
                return;
            };
            if ctl.stopped() {
                rec_cap = None;
                dead_cap = None;
                admission.release();
                return;
            }
            if open.is_none() && !admission.admit(*rc.time()) {
                // Held back: input waits where it is; try again shortly.
                activator.activate_after(HELD_RETRY);
                return;
            }
            if open.is_none() {
                if !(backlog || epochs.start_batch()) {
                    activator.activate_after(epochs.until_next().min(Duration::from_millis(100)));
                    return;
                }
                open = Some(0);
            }
            batch.ingest = clock.now_micros();
            let progress = step(&mut batch);
            crate::checkpoint::fault::read(batch.read);
            if batch.read > 0 {
                last_input = clock.instant.elapsed();
            } else if let Some(idle) = watermark.idle_timeout {
                if clock.instant.elapsed().saturating_sub(last_input) >= idle {
                    batch.idle_floor = batch
                        .idle_floor
                        .max(watermark.idle_floor(clock.now_micros()));
                }
            }
            metrics.add_in(batch.read);
            metrics.add_out(batch.records.len() as u64);
            metrics.add_errors(batch.errors);
            if !batch.reasons.is_empty() {
                metrics.add_reasons(batch.reasons.iter().map(|(p, r)| (p.as_str(), r.as_str())));
                batch.reasons.clear();
            }
            if let Some(rate) = error_rate.as_mut() {
                if let Some(over) = rate.add(batch.read, batch.errors) {
                    batch.failure.get_or_insert_with(|| {
                        format!(
                            "source `{source}`: {over}; first reasons: {}",
                            metrics.reasons().first.join(" | ")
                        )
                    });
                }
            }
            metrics.add_blank(batch.blank);
            metrics.add_dead_lettered(batch.dead.len() as u64);
            let sent = open.as_mut().expect("opened above");
            *sent += batch.records.len() + batch.dead.len();
            if let Some(chunk) = batch.records.finish() {
                chunks.push(chunk);
                records_out
                    .activate()
                    .session(&*rc)
                    .give_container(&mut chunks);
                chunks.clear();
            }
            if !batch.dead.is_empty() {
                chunks.push(Chunk::from_rows(&dead_schema, &batch.dead));
                dead_out
                    .activate()
                    .session(&*dc)
                    .give_container(&mut chunks);
                chunks.clear();
            }
            batch.dead.clear();
            batch.read = 0;
            batch.errors = 0;
            batch.blank = 0;
            if let Some(f) = batch.failure.take() {
                ctl.fail(f);
                rec_cap = None;
                dead_cap = None;
                admission.release();
                return;
            }
            let full = *sent >= epochs.batch_max();
            if progress == Progress::More && !full {
                // The batch goes on in the next activation, at the same capability.
                activator.activate();
                return;
            }
            let records = *sent as u64;
            open = None;
            backlog = full && progress == Progress::More;
            admission.sent(*rc.time(), records);
            if progress == Progress::Done {
                if let Some((grid, log)) = &log {
                    let p = batch.checkpoint_position();
                    log.borrow_mut().moved(*grid, *rc.time(), Time::MAX, || p);
                }
                rec_cap = None;
                dead_cap = None;
                admission.release();
                return;
            }
            if !batch.later_partitions {
                let t = batch.watermark(&watermark).max(0) as Time;
                if *rc.time() < t {
                    if let Some((grid, log)) = &log {
                        log.borrow_mut()
                            .moved(*grid, *rc.time(), t, || batch.checkpoint_position());
                    }
                    rc.downgrade(&t);
                    dc.downgrade(&t);
                }
            }
            if backlog {
                activator.activate();
            } else {
                // Wait for the next batch boundary, or for input (which wakes the operator), but
                // at least every 100ms to notice a stop.
                let mut wait = Duration::from_millis(100);
                if !epochs.continuous() {
                    wait = wait.min(epochs.until_next());
                }
                activator.activate_after(wait);
            }
        }
    });
    (records, dead)
}
