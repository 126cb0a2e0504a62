//! The `tcp` source: newline-delimited JSON from TCP clients — point-to-point delivery, with no
//! queue between producer and Weir.
//!
//! Worker 0 (of process 0) listens; every accepted connection gets a reader thread that hands
//! whole lines to the source through one bounded channel ([`lines`](crate::lines)). When the
//! pipeline falls behind, the channel fills and the readers stop reading their sockets: the
//! kernel's receive buffers fill, TCP's flow control closes the window, and the producers'
//! writes block — backpressure reaches the producer instead of Weir's memory growing.
//!
//! All connections form one partition for event time (one watermark): give the source a
//! `max_out_of_orderness` that covers the skew between its clients. Assigned ids are
//! `source:tcp:line`, lines numbered in arrival order. The source runs until the run is stopped,
//! or, with `max_connections`, until that many connections have been accepted and closed.
//!
//! ```
//! use std::io::Write;
//! use std::sync::Arc;
//! use timely::dataflow::operators::capture::{Capture, Extract};
//! use weir_operators::decode::{DecodeSpec, OnError};
//! use weir_operators::flow::SourceEnv;
//! use weir_operators::schema::{Field, Schema};
//! use weir_operators::tcp_source::{tcp_source, TcpSourceSpec};
//! use weir_operators::time::TimeFormat;
//! use weir_operators::value::FieldType;
//!
//! let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
//! let schema = Schema::new(vec![Field::new("ts", FieldType::Timestamp), Field::new("x", FieldType::I64)])
//!     .with_time("ts");
//! let decode = Arc::new(DecodeSpec::new("in", schema, TimeFormat::EpochMs, true, OnError::DeadLetter));
//! let spec = Arc::new(TcpSourceSpec { decode, address: format!("127.0.0.1:{port}"), max_connections: Some(1) });
//! let client = std::thread::spawn(move || loop {
//!     if let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) {
//!         c.write_all(b"{\"ts\": 1, \"x\": 10}\n{\"ts\": 2, \"x\": 20}\n").unwrap();
//!         return;
//!     }
//!     std::thread::sleep(std::time::Duration::from_millis(10));
//! });
//! let (tx, rx) = std::sync::mpsc::channel();
//! let tx = std::sync::Mutex::new(tx);
//! timely::execute(timely::Config::thread(), move |worker| {
//!     let tx = tx.lock().unwrap().clone();
//!     let spec = Arc::clone(&spec);
//!     worker.dataflow::<u64, _, _>(|scope| {
//!         let env = SourceEnv::new(
//!             weir_operators::epochs::Mode::Continuous,
//!             weir_operators::generator::RunClock::now(),
//!             Default::default(),
//!         );
//!         let (records, _dead) = tcp_source(scope, "in", spec, env, Arc::default());
//!         records.capture_into(tx);
//!     });
//! })
//! .unwrap();
//! client.join().unwrap();
//! let got: Vec<_> = rx.extract().into_iter().flat_map(|(_, r)| r).collect();
//! assert_eq!(got.len(), 2);
//! ```

use std::net::TcpListener;
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use timely::dataflow::Scope;

use crate::decode::DecodeSpec;
use crate::flow::SourceEnv;
use crate::lines::{chunks, decode_chunks, read_lines, Chunk};
use crate::metrics::ComponentMetrics;
use crate::reading::{reading_source, Batch, Progress};
use crate::{Records, Time};

/// A validated TCP source.
#[derive(Clone, Debug)]
pub struct TcpSourceSpec {
    /// How lines are decoded.
    pub decode: Arc<DecodeSpec>,
    /// Where to listen (`host:port`).
    pub address: String,
    /// End once this many connections have been accepted and closed (default: never).
    pub max_connections: Option<u64>,
}

/// Builds the TCP source on this worker: returns (records, dead letters).
pub fn tcp_source<'s>(
    scope: Scope<'s, Time>,
    name: &str,
    spec: Arc<TcpSourceSpec>,
    env: SourceEnv,
    metrics: Arc<ComponentMetrics>,
) -> (Records<'s>, Records<'s>) {
    let listens = scope.index() == 0;
    let clock = env.clock;
    let worker = scope.worker().clone();
    let watermark = spec.decode.watermark;
    let source = name.to_string();
    reading_source(scope, name, watermark, env, metrics, move |address| {
        let rx: Option<Receiver<Chunk>> = listens.then(|| {
            let (tx, rx) = chunks();
            let wake = worker.sync_activator_for(address.to_vec());
            let listener = match TcpListener::bind(&spec.address) {
                Ok(l) => l,
                Err(e) => {
                    let _ = tx.send(Err(format!(
                        "cannot listen on {}: {e} (choose another `address`, or stop what uses it)",
                        spec.address
                    )));
                    let _ = wake.activate();
                    return rx;
                }
            };
            if let Ok(a) = listener.local_addr() {
                eprintln!("weir: source `{source}` listening on {a}");
            }
            let max = spec.max_connections;
            std::thread::Builder::new()
                .name("weir-tcp-accept".into())
                .spawn(move || {
                    let mut accepted = 0u64;
                    for conn in listener.incoming() {
                        let Ok(stream) = conn else { continue };
                        accepted += 1;
                        let (tx, wake) = (tx.clone(), wake.clone());
                        let peer = stream
                            .peer_addr()
                            .map_or("a client".to_string(), |a| a.to_string());
                        let _ = std::thread::Builder::new()
                            .name("weir-tcp-read".into())
                            .spawn(move || {
                                read_lines(
                                    stream,
                                    tx,
                                    &format!("the connection from {peer}"),
                                    || clock.now_micros(),
                                    || {
                                        let _ = wake.activate();
                                    },
                                )
                            });
                        if max.is_some_and(|m| accepted >= m) {
                            break;
                        }
                    }
                    // The source ends when the last connection's reader drops its sender.
                })
                .expect("spawning the TCP accept thread");
            rx
        });
        let decode = Arc::clone(&spec.decode);
        let mut line_no = 0u64;
        move |batch: &mut Batch| match rx.as_ref() {
            None => Progress::Done,
            Some(rx) => decode_chunks(rx, &decode, "tcp", &mut line_no, batch),
        }
    })
}
