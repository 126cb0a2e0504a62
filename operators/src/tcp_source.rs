//! The `tcp` source: newline-delimited JSON from TCP clients — point-to-point delivery, with no
//! queue between producer and Weir.
//!
//! Worker 0 (of process 0) listens; one reader thread serves every connection with a `mio`
//! event loop (no thread per connection) and hands whole lines to the source through one
//! bounded channel ([`lines`](crate::lines)). When the pipeline falls behind, the channel fills
//! and the reader stops reading sockets: the kernel's receive buffers fill, TCP's flow control
//! closes the window, and the producers' writes block — backpressure reaches the producer
//! instead of Weir's memory growing.
//!
//! A connection that fails (reset by its peer) is closed alone: the line it was in the middle
//! of is a bad record, and the run goes on. At most `max_open_connections` are open at once;
//! further clients wait in the listen backlog until one closes. When the process is out of
//! file descriptors, accepting backs off for 100 ms instead of spinning.
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
//! let spec = Arc::new(TcpSourceSpec {
//!     decode,
//!     address: format!("127.0.0.1:{port}"),
//!     max_connections: Some(1),
//!     max_open_connections: 1024,
//! });
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
//!             weir_operators::clock::RunClock::now(),
//!             Default::default(),
//!         );
//!         let (records, _dead) = tcp_source(scope, "in", spec, env, Arc::default());
//!         weir_operators::convert::to_rows(records).capture_into(tx);
//!     });
//! })
//! .unwrap();
//! client.join().unwrap();
//! let got: Vec<_> = rx.extract().into_iter().flat_map(|(_, r)| r).collect();
//! assert_eq!(got.len(), 2);
//! ```

use std::collections::HashMap;
use std::io::{ErrorKind, Read};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use timely::dataflow::Scope;

use crate::clock::RunClock;
use crate::decode::DecodeSpec;
use crate::flow::SourceEnv;
use crate::lines::{chunks, decode_chunks, Piece, Splitter};
use crate::metrics::ComponentMetrics;
use crate::reading::{reading_source, Batch, Output, Progress};
use crate::{Batches, Time};

/// A validated TCP source.
#[derive(Clone, Debug)]
pub struct TcpSourceSpec {
    /// How lines are decoded.
    pub decode: Arc<DecodeSpec>,
    /// Where to listen (`host:port`).
    pub address: String,
    /// End once this many connections have been accepted and closed (default: never).
    pub max_connections: Option<u64>,
    /// The most connections open at once; more wait to be accepted.
    pub max_open_connections: usize,
}

/// Builds the TCP source on this worker: returns (records, dead letters).
pub fn tcp_source<'s>(
    scope: Scope<'s, Time>,
    name: &str,
    spec: Arc<TcpSourceSpec>,
    env: SourceEnv,
    metrics: Arc<ComponentMetrics>,
) -> (Batches<'s>, Batches<'s>) {
    let listens = scope.index() == 0;
    let clock = env.clock;
    let control = env.ctl.clone();
    let worker = scope.worker().clone();
    let source = name.to_string();
    let out = Output::of(&spec.decode);
    reading_source(scope, name, out, env, metrics, move |address| {
        let rx: Option<Receiver<Piece>> = listens.then(|| {
            let (tx, rx) = chunks();
            let wake = worker.sync_activator_for(address.to_vec());
            let wake = move || {
                let _ = wake.activate();
            };
            // Bound by std, which resolves host names ("localhost:9000"), then handed to mio.
            let listener = match std::net::TcpListener::bind(&spec.address)
                .and_then(|l| l.set_nonblocking(true).map(|()| TcpListener::from_std(l)))
            {
                Ok(l) => l,
                Err(e) => {
                    let _ = tx.send(Piece::Broken {
                        partial: Vec::new(),
                        reason: format!(
                            "cannot listen on {}: {e} (choose another `address`, or stop what uses it)",
                            spec.address
                        ),
                        fatal: true,
                        at: clock.now_micros(),
                    });
                    wake();
                    return rx;
                }
            };
            if let Ok(a) = listener.local_addr() {
                eprintln!("weir: source `{source}` listening on {a}");
            }
            let serve = Serve {
                max_connections: spec.max_connections,
                max_open: spec.max_open_connections.max(1),
                max_line: spec.decode.max_line_bytes,
                clock,
                stopped: Box::new(move || control.stopped()),
            };
            std::thread::Builder::new()
                .name("weir-tcp".into())
                .spawn(move || {
                    if let Err(e) = serve.run(listener, &tx, &wake) {
                        let _ = tx.send(Piece::Broken {
                            partial: Vec::new(),
                            reason: format!("the TCP listener failed: {e}"),
                            fatal: true,
                            at: clock.now_micros(),
                        });
                    }
                    // The source ends when this thread drops its sender.
                    drop(tx);
                    wake();
                })
                .expect("spawning the TCP reader thread");
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

/// The reader thread's settings.
struct Serve {
    max_connections: Option<u64>,
    max_open: usize,
    max_line: usize,
    clock: RunClock,
    stopped: Box<dyn Fn() -> bool + Send>,
}

const LISTENER: Token = Token(usize::MAX);

struct Conn {
    stream: TcpStream,
    peer: String,
    split: Splitter,
}

impl Serve {
    /// Accepts and reads connections until `max_connections` have come and gone, or the run
    /// stops, or the source is dropped.
    fn run(
        self,
        mut listener: TcpListener,
        tx: &SyncSender<Piece>,
        wake: &dyn Fn(),
    ) -> std::io::Result<()> {
        let mut poll = Poll::new()?;
        let mut events = Events::with_capacity(256);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let mut listening = true;
        let mut conns: HashMap<usize, Conn> = HashMap::new();
        let mut next_token = 0usize;
        let mut accepted = 0u64;
        let mut closed = 0u64;
        let mut backoff_until: Option<std::time::Instant> = None;
        let mut buf = vec![0u8; 1 << 16];
        let mut out = Vec::new();
        let all_accepted = |accepted: u64| self.max_connections.is_some_and(|m| accepted >= m);
        loop {
            if all_accepted(accepted) && closed >= accepted {
                return Ok(());
            }
            if (self.stopped)() {
                return Ok(());
            }
            // Accept again once below the cap and past any back-off.
            let want = !all_accepted(accepted)
                && conns.len() < self.max_open
                && backoff_until.is_none_or(|t| std::time::Instant::now() >= t);
            if want && !listening {
                poll.registry()
                    .register(&mut listener, LISTENER, Interest::READABLE)?;
                listening = true;
            } else if !want && listening {
                poll.registry().deregister(&mut listener)?;
                listening = false;
            }
            match poll.poll(&mut events, Some(Duration::from_millis(100))) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let mut accept = false;
            for ev in events.iter() {
                if ev.token() == LISTENER {
                    accept = true;
                    continue;
                }
                let key = ev.token().0;
                let Some(conn) = conns.get_mut(&key) else {
                    continue;
                };
                // Read until the socket has nothing more (edge-triggered).
                let ended = loop {
                    match conn.stream.read(&mut buf) {
                        Ok(0) => {
                            conn.split.finish(self.clock.now_micros(), &mut out);
                            break true;
                        }
                        Ok(n) => conn
                            .split
                            .push(&buf[..n], self.clock.now_micros(), &mut out),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => {
                            let reason = format!(
                                "the connection from {} failed ({e}); it is closed, the run goes on",
                                conn.peer
                            );
                            out.push(conn.split.broken(reason, false, self.clock.now_micros()));
                            break true;
                        }
                    }
                    // Hand over what is complete as it comes: a full channel blocks here, and
                    // stops this thread reading any socket (backpressure).
                    if !out.is_empty() && !send(tx, &mut out, wake) {
                        return Ok(());
                    }
                };
                if !send(tx, &mut out, wake) {
                    return Ok(());
                }
                if ended {
                    let mut conn = conns.remove(&key).expect("present");
                    let _ = poll.registry().deregister(&mut conn.stream);
                    closed += 1;
                }
            }
            while accept && listening && conns.len() < self.max_open && !all_accepted(accepted) {
                match listener.accept() {
                    Ok((mut stream, peer)) => {
                        let token = Token(next_token);
                        next_token = next_token.wrapping_add(1) % (usize::MAX - 1);
                        poll.registry()
                            .register(&mut stream, token, Interest::READABLE)?;
                        accepted += 1;
                        conns.insert(
                            token.0,
                            Conn {
                                stream,
                                peer: peer.to_string(),
                                split: Splitter::new(self.max_line),
                            },
                        );
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => {
                        // Out of file descriptors (or memory): wait before trying again,
                        // rather than spinning on a listener that stays readable.
                        eprintln!("weir: cannot accept a TCP connection ({e}); retrying in 100 ms");
                        backoff_until =
                            Some(std::time::Instant::now() + Duration::from_millis(100));
                        break;
                    }
                }
            }
        }
    }
}

/// Sends pieces to the source; false once the source is gone.
fn send(tx: &SyncSender<Piece>, out: &mut Vec<Piece>, wake: &dyn Fn()) -> bool {
    for piece in out.drain(..) {
        if tx.send(piece).is_err() {
            return false;
        }
        wake();
    }
    true
}
