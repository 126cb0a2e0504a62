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
//!
//! let schema = Schema::new(vec![Field::new("n", FieldType::I64)]);
//! let buf: Arc<Mutex<Vec<u8>>> = Arc::default();
//! let writer = SharedWriter::new(Box::new(VecWriter(buf.clone())));
//! let enc = Arc::new(Encoder::new(Format::Jsonl, &schema));
//! timely::example(move |scope| {
//!     let rows = (0..3).map(|n| Record::new(vec![Value::I64(n)])).to_stream(scope).container::<Vec<Record>>();
//!     let _written = sink(rows, "out", enc, Some(writer), None, RunControl::default(), Arc::new(ComponentMetrics::default()));
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

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;

use crate::kafka::Messages;

use crate::control::RunControl;
use crate::encode::Encoder;
use crate::generator::RunClock;
use crate::latency::{self, SinkLatency};
use crate::metrics::ComponentMetrics;
use crate::schema::Record;
use crate::Records;

/// A writer shared by the workers of a process.
#[derive(Clone)]
pub struct SharedWriter {
    inner: Arc<Mutex<Box<dyn Write + Send>>>,
    is_stdout: bool,
    messages: Option<(Arc<Messages>, Arc<[usize]>)>,
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
        SharedWriter {
            inner: Arc::new(Mutex::new(Box::new(std::io::sink()))),
            is_stdout: false,
            messages: Some((Arc::new(m), key.into())),
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
        if let Some((m, _)) = &self.messages {
            return m.flush().map_err(std::io::Error::other);
        }
        let mut w = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        w.flush()
    }

    /// Sends each record as a message, encoded by `encoder` (using `buf`), then waits for the
    /// brokers to confirm them all.
    fn send_all(
        &self,
        records: &[Record],
        encoder: &Encoder,
        buf: &mut Vec<u8>,
    ) -> Result<(), String> {
        let Some((m, key)) = &self.messages else {
            return Ok(());
        };
        let mut k = String::new();
        for r in records {
            buf.clear();
            encoder.encode(r, buf);
            while buf.last() == Some(&b'\n') {
                buf.pop();
            }
            k.clear();
            for (i, &p) in key.iter().enumerate() {
                use std::fmt::Write as _;
                if i > 0 {
                    k.push(',');
                }
                let _ = write!(k, "{}", r.values[p]);
            }
            m.send((!key.is_empty()).then_some(k.as_bytes()), buf, None)?;
        }
        buf.clear();
        m.flush()
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
    input: Records<'s>,
    name: &str,
    encoder: Arc<Encoder>,
    writer: Option<SharedWriter>,
    measure: Option<Measure>,
    ctl: RunControl,
    metrics: Arc<ComponentMetrics>,
) -> Records<'s> {
    let mut buf = Vec::new();
    let id = name.to_string();
    let mut broken = false;
    let worker = input.scope().index();
    // Ingest times and window ends of the batch, recorded once it is written.
    let mut ingests: Vec<i64> = Vec::new();
    let mut ends: Vec<i64> = Vec::new();
    let messages = writer.as_ref().is_some_and(SharedWriter::is_messages);
    let mut held: Vec<Record> = Vec::new();
    input.unary::<timely::container::CapacityContainerBuilder<Vec<Record>>, _, _, _>(
        Pipeline,
        name,
        move |_cap, _info| {
            move |input, _output| {
                let mut n = 0u64;
                input.for_each(|_cap, data: &mut Vec<Record>| {
                    n += data.len() as u64;
                    if let Some(m) = &measure {
                        ingests.extend(data.iter().map(|r| r.meta.ingest));
                        if let Some(p) = m.window_end {
                            ends.extend(data.iter().filter_map(|r| r.values[p].as_ts()));
                        }
                    }
                    if writer.is_some() && !broken {
                        if messages {
                            held.append(data);
                        } else {
                            for r in data.iter() {
                                encoder.encode(r, &mut buf);
                            }
                        }
                    }
                });
                metrics.add_in(n);
                if let (Some(w), true) = (&writer, messages) {
                    if !held.is_empty() {
                        match w.send_all(&held, &encoder, &mut buf) {
                            Ok(()) => metrics.add_out(held.len() as u64),
                            Err(e) => {
                                broken = true;
                                ctl.fail(format!("sink `{id}` cannot write: {e}"));
                            }
                        }
                        held.clear();
                    }
                } else if let (Some(w), false) = (&writer, buf.is_empty()) {
                    // Flushed per activation: what the sink received is visible downstream at once
                    // (a streaming sink must not sit on results), and latency counts to the write.
                    if let Err(e) = w.write_and_flush(&buf) {
                        broken = true;
                        if w.is_stdout && e.kind() == std::io::ErrorKind::BrokenPipe {
                            ctl.close_output();
                        } else {
                            ctl.fail(format!("sink `{id}` cannot write: {e}"));
                        }
                    } else {
                        metrics.add_out(n);
                    }
                    buf.clear();
                } else if writer.is_none() {
                    metrics.add_out(n);
                }
                if let Some(m) = &measure {
                    if !ingests.is_empty() {
                        let now = m.clock.now_micros();
                        let (all, second) = m.latency.slots_at(worker, now);
                        for slot in [all, second].into_iter().flatten() {
                            let mut h = slot.lock().unwrap_or_else(|p| p.into_inner());
                            for &t in &ingests {
                                latency::record(&mut h.processing, now - t);
                            }
                            for &t in &ends {
                                latency::record(&mut h.event, now - t);
                            }
                        }
                        ingests.clear();
                        ends.clear();
                    }
                }
            }
        },
    )
}
