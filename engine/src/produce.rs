//! `weir produce`: writes the generator's events to a receiver as a producer would — JSON lines
//! over TCP, on an open-loop schedule — so a user can feed a pipeline from outside and see
//! backpressure reach the producer: when Weir falls behind, its TCP source stops reading,
//! the producer's writes block, and it falls behind its schedule.
//!
//! ```no_run
//! use weir_engine::produce::{produce_tcp, Produce};
//! use weir_operators::generator::{GeneratorSpec, Profile};
//!
//! let spec = GeneratorSpec { events: Some(1000), rate: Some(10_000.0), ..GeneratorSpec::new(Profile::Iot) };
//! let report = produce_tcp(&Produce { spec, address: "127.0.0.1:9000".into() }).unwrap();
//! assert_eq!(report.events, 1000);
//! ```

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use weir_operators::encode::{Encoder, Format};
use weir_operators::generator::{GeneratorSpec, RunClock};

/// What to produce and where.
pub struct Produce {
    /// The events: profile, seed, count (`events`), rate (`None`: as fast as the receiver
    /// takes them).
    pub spec: GeneratorSpec,
    /// The receiver, `host:port`.
    pub address: String,
}

/// What a producer did.
#[derive(Debug)]
pub struct Produced {
    /// Events written.
    pub events: u64,
    /// How long it took.
    pub elapsed: Duration,
    /// How far behind its schedule the producer fell at most (time blocked by the receiver).
    pub max_behind: Duration,
}

/// Events encoded per write.
const PER_WRITE: u64 = 1024;

/// Connects (retrying for up to 10 s while the receiver starts), then writes the events, each
/// with its scheduled time as event time when there is a rate, or the time it is made.
pub fn produce_tcp(p: &Produce) -> Result<Produced, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let stream = loop {
        match TcpStream::connect(&p.address) {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => {
                return Err(format!(
                    "cannot connect to {}: {e} (is a pipeline with a tcp source listening there?)",
                    p.address
                ))
            }
        }
    };
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stream);
    let encoder = Encoder::new(Format::Jsonl, &p.spec.profile.schema());
    let clock = RunClock::now();
    let limit = p.spec.events.unwrap_or(u64::MAX);
    let ns = p.spec.rate.map(|r| 1e9 / r);
    let mut buf = Vec::with_capacity(1 << 16);
    let mut max_behind = Duration::ZERO;
    let mut next = 0u64;
    while next < limit {
        let due = match ns {
            Some(ns) => {
                let at = Duration::from_nanos((next as f64 * ns) as u64);
                let now = clock.instant.elapsed();
                if at > now {
                    std::thread::sleep(at - now);
                } else {
                    max_behind = max_behind.max(now - at);
                }
                ((clock.instant.elapsed().as_nanos() as f64 / ns) as u64 + 1).min(limit)
            }
            None => limit,
        };
        let end = due.min(next + PER_WRITE);
        buf.clear();
        let wall = clock.now_micros();
        while next < end {
            let ts = match ns {
                Some(ns) => clock.wall + (next as f64 * ns / 1e3) as i64,
                None => wall,
            };
            encoder.encode(&p.spec.event(next, ts), &mut buf);
            next += 1;
        }
        out.write_all(&buf)
            .map_err(|e| format!("cannot write to {}: {e}", p.address))?;
        if ns.is_some() {
            // On schedule: hand the events over now, not when the buffer fills.
            out.flush()
                .map_err(|e| format!("cannot write to {}: {e}", p.address))?;
        }
    }
    out.flush()
        .map_err(|e| format!("cannot write to {}: {e}", p.address))?;
    Ok(Produced {
        events: next,
        elapsed: clock.instant.elapsed(),
        max_behind,
    })
}
