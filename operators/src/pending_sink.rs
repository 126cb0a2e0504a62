//! The exactly-once file sink: a file sink under checkpoints.
//!
//! Each worker encodes the records it receives (as the plain [`sink`](crate::sink) does) into
//! its own *current* pending file in the checkpoint directory, through a
//! [`Barrier`](crate::checkpoint::Barrier), so the file holds exactly the records sent below the
//! next checkpoint's time. When that checkpoint is due, the worker syncs the file, renames it to
//! the checkpoint's pending name and writes its part; once the checkpoint is complete, the
//! coordinator appends every worker's pending file to the sink's output file
//! ([`publish`](crate::checkpoint::publish)). Readers of the output file therefore never see a
//! record that a recovery would write again.
//!
//! Like every sink it returns an empty stream whose frontier passes a time once what the sink
//! received up to it is in a pending file (backpressure).
//!
//! ```
//! // The operator is built by the engine from a pipeline with `[pipeline] checkpoint`; see
//! // the crate's checkpoint tests. Its pending files are named by checkpoint and worker:
//! use weir_operators::checkpoint::pending_file;
//! let p = pending_file(std::path::Path::new("state"), "out", 3, 1);
//! assert_eq!(p, std::path::Path::new("state/pending/out/0000000003-0001"));
//! ```

use std::io::Write;
use std::sync::Arc;

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::Capability;

use crate::checkpoint::{Barrier, CheckpointSpec, Control, Decision};
use crate::chunk::Chunk;
use crate::control::RunControl;
use crate::encode::Encoder;
use crate::metrics::ComponentMetrics;
use crate::schema::Record;
use crate::sink::{Measure, Times};
use crate::{Batches, Records, Time};

/// The current pending file of one worker.
struct Current {
    path: std::path::PathBuf,
    file: Option<std::fs::File>,
    bytes: u64,
}

impl Current {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if self.file.is_none() {
            if let Some(d) = self.path.parent() {
                std::fs::create_dir_all(d)?;
            }
            self.file = Some(std::fs::File::create(&self.path)?);
        }
        self.file.as_mut().expect("opened").write_all(buf)?;
        self.bytes += buf.len() as u64;
        Ok(())
    }

    /// Syncs the file and renames it to `to` (if anything was written); starts a new one.
    fn seal(&mut self, to: &std::path::Path) -> std::io::Result<u64> {
        let n = self.bytes;
        if let Some(f) = self.file.take() {
            f.sync_all()?;
            std::fs::rename(&self.path, to)?;
        }
        self.bytes = 0;
        Ok(n)
    }
}

/// Builds the exactly-once file sink over `input`, reading the checkpoint `control` stream.
#[allow(clippy::too_many_arguments)]
pub fn pending_sink<'s>(
    input: Batches<'s>,
    control: Control<'s>,
    name: &str,
    encoder: Arc<Encoder>,
    spec: Arc<CheckpointSpec>,
    measure: Option<Measure>,
    ctl: RunControl,
    metrics: Arc<ComponentMetrics>,
) -> Records<'s> {
    let worker = input.scope().index();
    spec.register(worker);
    let mut builder = OperatorBuilder::new(name.to_string(), input.scope());
    let mut data = builder.new_input(input, Pipeline);
    let mut control = builder.new_input(control, Pipeline);
    let (_out, written) = builder.new_output::<Vec<Record>>();
    let id = name.to_string();
    builder.build(move |_caps| {
        let mut barrier: Barrier<(Capability<Time>, Chunk)> = Barrier::default();
        let mut current = Current {
            path: spec
                .dir
                .join("pending")
                .join(&id)
                .join(format!("current-{worker:04}")),
            file: None,
            bytes: 0,
        };
        let mut buf = Vec::new();
        let mut times = Times::default();
        let mut broken = false;
        move |frontiers| {
            control.for_each(|_, d: &mut Vec<Decision>| {
                for d in d.drain(..) {
                    barrier.decide(d.at, d.seq);
                }
            });
            barrier.set_control(frontiers[1].frontier().iter().next().copied());
            let mut n = 0u64;
            let mut write = |chunk: &Chunk, buf: &mut Vec<u8>, times: &mut Times| {
                n += chunk.len() as u64;
                times.note(&measure, chunk);
                encoder.encode_chunk(chunk, buf);
            };
            data.for_each(|cap, d: &mut Vec<Chunk>| {
                let Some(&t) = cap.least() else { return };
                for chunk in d.drain(..) {
                    if barrier.admits(t) {
                        write(&chunk, &mut buf, &mut times);
                    } else {
                        barrier.hold(t, (cap.delayed(&t, 0), chunk));
                    }
                }
            });
            let data_frontier = frontiers[0].frontier().iter().next().copied();
            loop {
                for (_, (_cap, chunk)) in barrier.release() {
                    write(&chunk, &mut buf, &mut times);
                }
                let due = barrier.due(data_frontier);
                if !buf.is_empty() && !broken {
                    if let Err(e) = current.write(&buf) {
                        broken = true;
                        ctl.fail(format!("sink `{id}` cannot write its pending output: {e}"));
                    }
                }
                buf.clear();
                let Some((_, seq)) = due else { break };
                let started = crate::checkpoint::wall_micros();
                let sealed = current.seal(&spec.pending(&id, seq, worker));
                let part = serde_json::json!({
                    "format": crate::checkpoint::FORMAT,
                    "component": id,
                    "pending_bytes": sealed.as_ref().ok(),
                });
                let wrote = sealed.and_then(|_| {
                    crate::checkpoint::write_part(
                        &spec,
                        seq,
                        &id,
                        worker,
                        started,
                        &serde_json::to_vec(&part).expect("JSON serializes"),
                    )
                });
                if let Err(e) = wrote {
                    ctl.fail(format!("sink `{id}`: cannot write checkpoint {seq}: {e}"));
                }
                barrier.taken();
            }
            metrics.add_in(n);
            metrics.add_out(n);
            times.record(&measure, worker);
        }
    });
    written
}
