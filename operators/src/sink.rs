//! Sinks: the end of a pipeline. Each sink encodes the records it receives (see
//! [`encode`](crate::encode)) and writes them to a writer shared by all workers of the process
//! (standard output or a file), one batch per lock, so lines never interleave, flushing after each
//! activation so that readers see results as soon as they are written. A Kafka sink sends
//! each record as one message (keyed by chosen fields) and waits, at the end of each
//! activation, until the brokers have confirmed them. The `null` sink only counts.
//!
//! The sink returns an empty stream whose frontier passes a time only once everything the
//! sink received up to that time is written and flushed (or confirmed): a probe on it tells
//! sources what is safely out (backpressure, and the Kafka source's offset commits).
//!
//! A sink that cannot write stops the run with the reason; a closed standard output (as with
//! `weir run ... | head`) stops it quietly.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use timely::dataflow::operators::ToStream;
//! use weir_operators::{control::RunControl, encode::{Encoder, Format}, metrics::ComponentMetrics};
//! use weir_operators::{schema::*, sink::{sink, SharedWriter}, value::*};
//! use weir_operators::{chunk::arrow_schema, convert::to_chunks};
//!
//! let schema = Schema::new(vec![Field::new("n", FieldType::I64)]);
//! let buf: Arc<Mutex<Vec<u8>>> = Arc::default();
//! let writer = SharedWriter::new(Box::new(VecWriter(buf.clone())));
//! let enc = Arc::new(Encoder::new(Format::Jsonl, &schema));
//! timely::example(move |scope| {
//!     let rows = (0..3).map(|n| Record::new(vec![Value::I64(n)])).to_stream(scope).container::<Vec<Record>>();
//!     let chunks = to_chunks(rows, arrow_schema(&schema));
//!     let _written = sink(chunks, "out", enc, Some(writer), None, RunControl::default(), Arc::new(ComponentMetrics::default()));
//! });
//! assert_eq!(String::from_utf8(buf.lock().unwrap().clone()).unwrap(), "{\"n\":0}\n{\"n\":1}\n{\"n\":2}\n");
//!
//! struct VecWriter(Arc<Mutex<Vec<u8>>>);
//! impl std::io::Write for VecWriter {
//!     fn write(&mut self, b: &[u8]) -> std::io::Result<usize> { self.0.lock().unwrap().write(b) }
//!     fn flush(&mut self) -> std::io::Result<()> { Ok(()) }
//! }
//! ```

use std::io::Write;
use std::sync::{Arc, Mutex};

use std::collections::VecDeque;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;

use crate::kafka::Messages;

use crate::chunk::Chunk;
use crate::clock::RunClock;
use crate::control::RunControl;
use crate::encode::Encoder;
use crate::latency::{self, SinkLatency};
use crate::metrics::ComponentMetrics;
use crate::schema::Record;
use crate::{Batches, Records, Time};
use arrow::array::AsArray;
use arrow::datatypes::{Int64Type, TimestampMicrosecondType};

/// A writer shared by the workers of a process.
#[derive(Clone)]
pub struct SharedWriter {
    inner: Arc<Mutex<Box<dyn Write + Send>>>,
    is_stdout: bool,
    messages: Option<Arc<dyn MessageOut>>,
}

/// A destination of one message per record whose deliveries are confirmed later: a Kafka
/// topic, a Kinesis stream, a Pub/Sub topic. The message sink sends each batch's records under
/// a ticket and holds the batch's time until all of them are confirmed.
pub trait MessageOut: Send + Sync {
    /// Queues `record`, encoded as `payload`, counted under `ticket` once delivered (the
    /// destination takes its key, attributes or ordering key from the record's fields).
    fn send(&self, record: &Record, payload: &[u8], ticket: usize) -> Result<(), String>;
    /// Serves deliveries without waiting.
    fn poll(&self);
    /// Whether `records` messages of `ticket` are delivered; forgets the ticket if so.
    fn confirmed(&self, ticket: usize, records: u64) -> bool;
    /// The first delivery that failed for good, if any.
    fn failure(&self) -> Option<String>;
    /// Waits until every queued message is delivered; fails if any was not.
    fn flush(&self) -> Result<(), String>;
}

/// A Kafka topic as a [`MessageOut`]: messages keyed by the fields at `key` (their values as
/// text, joined by `,`; no key when empty).
struct KafkaOut {
    messages: Messages,
    key: Vec<usize>,
}

impl MessageOut for KafkaOut {
    fn send(&self, record: &Record, payload: &[u8], ticket: usize) -> Result<(), String> {
        thread_local! {
            static KEY: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        KEY.with_borrow_mut(|k| {
            let key = crate::kafka::message_key(record, &self.key, k);
            self.messages.send_ticket(key, payload, ticket)
        })
    }
    fn poll(&self) {
        self.messages.poll()
    }
    fn confirmed(&self, ticket: usize, records: u64) -> bool {
        self.messages.confirmed(ticket, records)
    }
    fn failure(&self) -> Option<String> {
        self.messages.failure()
    }
    fn flush(&self) -> Result<(), String> {
        self.messages.flush()
    }
}

impl SharedWriter {
    /// Shares `w`.
    pub fn new(w: Box<dyn Write + Send>) -> SharedWriter {
        SharedWriter {
            inner: Arc::new(Mutex::new(w)),
            is_stdout: false,
            messages: None,
        }
    }

    /// Shares the process's standard output.
    pub fn stdout() -> SharedWriter {
        SharedWriter {
            inner: Arc::new(Mutex::new(Box::new(std::io::stdout()))),
            is_stdout: true,
            messages: None,
        }
    }

    /// Shares a Kafka producer: one message per record, keyed by the fields at `key` (their
    /// values as text, joined by `,`; no key when empty).
    pub fn messages(m: Messages, key: Vec<usize>) -> SharedWriter {
        Self::message_out(Arc::new(KafkaOut { messages: m, key }))
    }

    /// Shares a destination of one message per record.
    pub fn message_out(m: Arc<dyn MessageOut>) -> SharedWriter {
        SharedWriter {
            inner: Arc::new(Mutex::new(Box::new(std::io::sink()))),
            is_stdout: false,
            messages: Some(m),
        }
    }

    /// Whether this writes messages rather than a byte stream.
    pub fn is_messages(&self) -> bool {
        self.messages.is_some()
    }

    /// Writes `bytes` in one piece.
    pub fn write_all(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mut w = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        w.write_all(bytes)
    }

    /// Writes `bytes` in one piece and flushes, so readers of the output see them now.
    pub fn write_and_flush(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mut w = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        w.write_all(bytes)?;
        w.flush()
    }

    /// Flushes the writer.
    pub fn flush(&self) -> std::io::Result<()> {
        if let Some(m) = &self.messages {
            return m.flush().map_err(std::io::Error::other);
        }
        let mut w = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        w.flush()
    }
}

/// What a sink measures: where its latency histograms are, the run's clock, and the position
/// of `window_end` when it measures event-time latency.
#[derive(Clone)]
pub struct Measure {
    /// The sink's histograms.
    pub latency: Arc<SinkLatency>,
    /// The run's clock.
    pub clock: RunClock,
    /// Position of the `window_end` field, for event-time latency.
    pub window_end: Option<usize>,
}

/// Builds a sink over `input`; `writer` is `None` for the null sink. Returns the empty stream
/// whose frontier says what is written.
pub fn sink<'s>(
    input: Batches<'s>,
    name: &str,
    encoder: Arc<Encoder>,
    writer: Option<SharedWriter>,
    measure: Option<Measure>,
    ctl: RunControl,
    metrics: Arc<ComponentMetrics>,
) -> Records<'s> {
    if let Some(m) = writer.as_ref().and_then(|w| w.messages.clone()) {
        return message_sink(input, name, encoder, m, measure, ctl, metrics);
    }
    let mut buf = Vec::new();
    let id = name.to_string();
    let mut broken = false;
    let worker = input.scope().index();
    // Ingest times and window ends of the batch, recorded once it is written.
    let mut times = Times::default();
    input.unary::<CapacityContainerBuilder<Vec<Record>>, _, _, _>(
        Pipeline,
        name,
        move |_cap, _info| {
            move |input, _output| {
                let mut n = 0u64;
                input.for_each(|_cap, data: &mut Vec<Chunk>| {
                    for c in data.iter() {
                        n += c.len() as u64;
                        times.note(&measure, c);
                        if writer.is_some() && !broken {
                            encoder.encode_chunk(c, &mut buf);
                        }
                    }
                });
                metrics.add_in(n);
                if let (Some(w), false) = (&writer, buf.is_empty()) {
                    // Flushed per activation: what the sink received is visible downstream at once
                    // (a streaming sink must not sit on results), and latency counts to the write.
                    if let Err(e) = w.write_and_flush(&buf) {
                        broken = true;
                        if w.is_stdout && e.kind() == std::io::ErrorKind::BrokenPipe {
                            ctl.close_output();
                        } else {
                            // Only what was written counts (out, latency): the writer has cut
                            // the output back to the end of the last whole batch.
                            let written = metrics.snapshot().records_out;
                            ctl.fail(format!(
                                "sink `{id}` cannot write: {e}; its output ends after the \
                                 {written} records written before this (no partial line is left)"
                            ));
                        }
                        times.forget();
                    } else {
                        metrics.add_out(n);
                    }
                    buf.clear();
                } else if writer.is_none() {
                    metrics.add_out(n);
                }
                times.record(&measure, worker);
            }
        },
    )
}

/// A file written batch by batch (one `write_all` and one `flush` per batch): when a write
/// fails (disk full), the file is cut back to the end of the last batch flushed whole, so it
/// never ends in a partial line and holds exactly what the sink counted.
pub struct FileOutput<F = std::fs::File> {
    file: F,
    /// Bytes flushed whole (where the output ends if a write fails).
    written: u64,
    /// Bytes written since.
    pending: u64,
}

/// What [`FileOutput`] needs of a file: cutting it back.
pub trait Truncate {
    /// Cuts the file to `len` bytes (an error where that means nothing, as for `/dev/full`).
    fn truncate_to(&mut self, len: u64) -> std::io::Result<()>;
}

impl Truncate for std::fs::File {
    fn truncate_to(&mut self, len: u64) -> std::io::Result<()> {
        use std::io::Seek;
        self.set_len(len)?;
        self.seek(std::io::SeekFrom::Start(len)).map(|_| ())
    }
}

impl<F: Write + Truncate> FileOutput<F> {
    /// Writes to `file`, which already holds `written` bytes that stay.
    pub fn new(file: F, written: u64) -> FileOutput<F> {
        FileOutput {
            file,
            written,
            pending: 0,
        }
    }

    fn cut_back<T>(&mut self, e: std::io::Error) -> std::io::Result<T> {
        self.pending = 0;
        let _ = self.file.truncate_to(self.written);
        Err(e)
    }
}

impl<F: Write + Truncate> Write for FileOutput<F> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.file.write(buf) {
            Ok(n) => {
                self.pending += n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Err(e),
            Err(e) => self.cut_back(e),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.file.flush() {
            Ok(()) => {
                self.written += std::mem::take(&mut self.pending);
                Ok(())
            }
            Err(e) => self.cut_back(e),
        }
    }
}

/// Ingest times and window ends of records, recorded as latency once they are written.
#[derive(Default)]
pub(crate) struct Times {
    ingests: Vec<i64>,
    ends: Vec<i64>,
}

impl Times {
    pub(crate) fn note(&mut self, measure: &Option<Measure>, c: &Chunk) {
        if let Some(m) = measure {
            self.ingests
                .extend_from_slice(c.ingest().as_primitive::<Int64Type>().values());
            if let Some(p) = m.window_end {
                let ends = c.columns()[p].as_primitive::<TimestampMicrosecondType>();
                self.ends.extend(ends.iter().flatten());
            }
        }
    }

    /// Forgets what was noted (it was not written).
    pub(crate) fn forget(&mut self) {
        self.ingests.clear();
        self.ends.clear();
    }

    /// Records the latency of everything noted, written now, and forgets it.
    pub(crate) fn record(&mut self, measure: &Option<Measure>, worker: usize) {
        let Some(m) = measure else { return };
        if self.ingests.is_empty() {
            return;
        }
        let now = m.clock.now_micros();
        let (all, second) = m.latency.slots_at(worker, now);
        for slot in [all, second].into_iter().flatten() {
            let mut h = slot.lock().unwrap_or_else(|p| p.into_inner());
            latency::record_since(&mut h.processing, now, &self.ingests);
            latency::record_since(&mut h.event, now, &self.ends);
        }
        self.ingests.clear();
        self.ends.clear();
    }
}

/// A batch sent to the brokers and not yet confirmed: the sink holds its time until it is.
struct InFlight {
    /// Held until the brokers confirm the batch (dropping it releases the time).
    _cap: Capability<Time>,
    ticket: usize,
    records: u64,
    times: Times,
}

/// The message sink: sends each record as a message tagged with its batch's ticket, and holds
/// the batch's time until the destination has confirmed every message of it, so its output
/// frontier means *written* without waiting for the destination in every activation.
#[allow(clippy::too_many_arguments)]
fn message_sink<'s>(
    input: Batches<'s>,
    name: &str,
    encoder: Arc<Encoder>,
    messages: Arc<dyn MessageOut>,
    measure: Option<Measure>,
    ctl: RunControl,
    metrics: Arc<ComponentMetrics>,
) -> Records<'s> {
    let id = name.to_string();
    let scope = input.scope();
    let worker = scope.index();
    let mut buf = Vec::new();
    let mut rows: Vec<Record> = Vec::new();
    // Tickets are unique over the workers sharing the producer.
    let mut next_ticket = (worker << 40) + 1;
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    let mut broken = false;
    input.unary::<CapacityContainerBuilder<Vec<Record>>, _, _, _>(
        Pipeline,
        name,
        move |_cap, info| {
            let activator = scope.activator_for(info.address);
            move |input, _output| {
                let mut n = 0u64;
                input.for_each(|cap, chunks: &mut Vec<Chunk>| {
                    let count: usize = chunks.iter().map(Chunk::len).sum();
                    n += count as u64;
                    if broken {
                        return;
                    }
                    let ticket = next_ticket;
                    next_ticket += 1;
                    let mut times = Times::default();
                    // One message per record: the records as rows.
                    rows.clear();
                    for c in chunks.iter() {
                        times.note(&measure, c);
                        c.push_rows(&mut rows);
                    }
                    for r in rows.iter() {
                        buf.clear();
                        encoder.encode(r, &mut buf);
                        while buf.last() == Some(&b'\n') {
                            buf.pop();
                        }
                        if let Err(e) = messages.send(r, &buf, ticket) {
                            broken = true;
                            ctl.fail(format!("sink `{id}` cannot write: {e}"));
                            return;
                        }
                    }
                    if let Some(cap) = cap.retain_least(0) {
                        in_flight.push_back(InFlight {
                            _cap: cap,
                            ticket,
                            records: count as u64,
                            times,
                        });
                    }
                });
                metrics.add_in(n);
                messages.poll();
                if let Some(e) = messages.failure() {
                    if !broken {
                        broken = true;
                        ctl.fail(format!("sink `{id}` cannot write: {e}"));
                    }
                }
                if broken {
                    // Nothing more will be confirmed: let the run end.
                    in_flight.clear();
                    return;
                }
                // Batches are confirmed in any order; release each as it is.
                in_flight.retain_mut(|b| {
                    if messages.confirmed(b.ticket, b.records) {
                        metrics.add_out(b.records);
                        b.times.record(&measure, worker);
                        false
                    } else {
                        true
                    }
                });
                if !in_flight.is_empty() {
                    activator.activate_after(std::time::Duration::from_micros(500));
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A disk that fills after `room` bytes, part-way through a write.
    struct Filling {
        data: Vec<u8>,
        room: usize,
    }
    impl Write for Filling {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.room - self.data.len());
            if n == 0 {
                return Err(std::io::Error::other("no space left on device"));
            }
            self.data.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl Truncate for Filling {
        fn truncate_to(&mut self, len: u64) -> std::io::Result<()> {
            self.data.truncate(len as usize);
            Ok(())
        }
    }

    #[test]
    fn a_failed_write_leaves_only_whole_batches() {
        let mut out = FileOutput::new(
            Filling {
                data: Vec::new(),
                room: 20,
            },
            0,
        );
        out.write_all(b"{\"n\":1}\n{\"n\":2}\n").unwrap();
        out.flush().unwrap();
        assert!(out.write_all(b"{\"n\":3}\n").is_err(), "the disk is full");
        assert_eq!(out.file.data, b"{\"n\":1}\n{\"n\":2}\n");
    }
}
