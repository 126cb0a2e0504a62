//! The shell shared by sources that read and decode external input (`file`, `stdin`): a timely
//! operator with two outputs — records, and dead letters — that applies the bad-record policy,
//! counts, and advances its capabilities to the largest event time it has read.
//!
//! The source-specific part is a `step` function that reads some input into a [`Batch`] per
//! activation and says whether input remains.

use std::rc::Rc;
use std::sync::Arc;

use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::Scope;

use crate::control::RunControl;
use crate::decode::{DecodeSpec, OnError};
use crate::metrics::ComponentMetrics;
use crate::schema::Record;
use crate::value::Micros;
use crate::{Records, Time};

/// What one activation of a reading source produced.
#[derive(Default)]
pub struct Batch {
    /// Good records.
    pub records: Vec<Record>,
    /// Dead-letter records.
    pub dead: Vec<Record>,
    /// Input records read (good and bad).
    pub read: u64,
    /// Bad records.
    pub errors: u64,
    /// A fatal error: stop the run.
    pub failure: Option<String>,
    /// The largest event time read.
    pub max_ts: Micros,
}

impl Batch {
    /// Routes one decoded record (or its error) by the source's policy.
    pub fn accept(
        &mut self,
        spec: &DecodeSpec,
        decoded: Result<Record, String>,
        file: &str,
        line: u64,
        raw: &str,
    ) {
        self.read += 1;
        match decoded {
            Ok(r) => {
                if let Some(t) = spec.schema.time.and_then(|t| r.values[t].as_ts()) {
                    self.max_ts = self.max_ts.max(t);
                }
                self.records.push(r);
            }
            Err(reason) => {
                self.errors += 1;
                match spec.on_error {
                    OnError::DeadLetter => {
                        self.dead.push(spec.dead_letter(file, line, reason, raw))
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

/// Builds a two-output reading source. `make_step` receives the operator's address (to build
/// activators) and returns the per-activation step.
pub fn reading_source<'s, S, F>(
    scope: Scope<'s, Time>,
    name: &str,
    ctl: RunControl,
    metrics: Arc<ComponentMetrics>,
    make_step: F,
) -> (Records<'s>, Records<'s>)
where
    F: FnOnce(Rc<[usize]>) -> S,
    S: FnMut(&mut Batch) -> Progress + 'static,
{
    let mut builder = OperatorBuilder::new(name.to_owned(), scope);
    let address = builder.operator_info().address;
    let (records_out, records) = builder.new_output::<Vec<Record>>();
    let (dead_out, dead) = builder.new_output::<Vec<Record>>();
    let mut records_out = OutputBuilder::<
        _,
        timely::container::CapacityContainerBuilder<Vec<Record>>,
    >::from(records_out);
    let mut dead_out =
        OutputBuilder::<_, timely::container::CapacityContainerBuilder<Vec<Record>>>::from(
            dead_out,
        );
    let activator = scope.activator_for(Rc::clone(&address));
    let mut step = make_step(Rc::clone(&address));
    builder.build(move |mut caps| {
        let mut dead_cap = caps.pop();
        let mut rec_cap = caps.pop();
        let mut batch = Batch::default();
        move |_frontiers| {
            let (Some(rc), Some(dc)) = (rec_cap.as_mut(), dead_cap.as_mut()) else {
                return;
            };
            let progress = if ctl.stopped() {
                Progress::Done
            } else {
                step(&mut batch)
            };
            metrics.add_in(batch.read);
            metrics.add_out(batch.records.len() as u64);
            metrics.add_errors(batch.errors);
            metrics.add_dead_lettered(batch.dead.len() as u64);
            if !batch.records.is_empty() {
                records_out
                    .activate()
                    .session(&*rc)
                    .give_container(&mut batch.records);
            }
            if !batch.dead.is_empty() {
                dead_out
                    .activate()
                    .session(&*dc)
                    .give_container(&mut batch.dead);
            }
            batch.records.clear();
            batch.dead.clear();
            batch.read = 0;
            batch.errors = 0;
            if let Some(f) = batch.failure.take() {
                ctl.fail(f);
                rec_cap = None;
                dead_cap = None;
                return;
            }
            match progress {
                Progress::Done => {
                    rec_cap = None;
                    dead_cap = None;
                }
                Progress::More | Progress::Waiting => {
                    let t = batch.max_ts.max(0) as Time;
                    if *rc.time() < t {
                        rc.downgrade(&t);
                        dc.downgrade(&t);
                    }
                    if progress == Progress::More {
                        activator.activate();
                    } else {
                        // A heartbeat, so a stop request is noticed even without input.
                        activator.activate_after(std::time::Duration::from_millis(100));
                    }
                }
            }
        }
    });
    (records, dead)
}
