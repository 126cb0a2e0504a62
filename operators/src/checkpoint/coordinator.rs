//! The checkpoint coordinator and the sources' position writer.
//!
//! The coordinator reads every source's outputs (for their frontier only). On worker 0 it holds
//! a capability at the first candidate time it has not decided; when the sources' frontier
//! passes candidates, it decides them — a checkpoint at the last one passed if
//! [`CheckpointSpec::interval`] has gone by since the last checkpoint began and none is in
//! progress — and moves its capability to the next candidate. A decision goes to every worker
//! at the checkpoint's time, so each operator receives it before its frontier passes that time.
//! When every source has ended (and the run was not stopped) it decides the final checkpoint,
//! [`END`]. It completes checkpoints as their parts appear (see [`complete`]).
//!
//! The position writer (one per worker) writes each source's part: the source's position when
//! its capability first reached the checkpoint's time, from the [`PositionLog`] the source
//! keeps.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::Exchange;

use super::{wall_micros, CheckpointSpec, Completed, Control, Decision, END};
use crate::control::RunControl;
use crate::{Batches, Time};

/// A checkpoint decided and not yet complete.
#[derive(Clone, Debug)]
pub struct InProgress {
    /// Sequence number.
    pub seq: u64,
    /// Checkpoint time.
    pub at: Time,
    /// When it was decided (µs since the Unix epoch).
    pub decided: i64,
}

/// The checkpoints in progress in this process (decided by its worker 0), oldest first.
pub type Tracker = Arc<Mutex<VecDeque<InProgress>>>;

/// Builds the coordinator over the sources' streams; returns the control stream every stateful
/// operator and exactly-once sink reads.
pub fn coordinator<'s>(
    scope: timely::dataflow::Scope<'s, Time>,
    sources: Vec<Batches<'s>>,
    spec: Arc<CheckpointSpec>,
    tracker: Tracker,
    ctl: RunControl,
) -> Control<'s> {
    let mut builder = OperatorBuilder::new("checkpoint coordinator".to_string(), scope);
    let address = builder.operator_info().address;
    let activator = scope.activator_for(address);
    let mut inputs: Vec<_> = sources
        .into_iter()
        .map(|s| builder.new_input(s, Pipeline))
        .collect();
    let (out, control) = builder.new_output::<Vec<Decision>>();
    let mut out = timely::dataflow::operators::generic::OutputBuilder::<
        _,
        timely::container::CapacityContainerBuilder<Vec<Decision>>,
    >::from(out);
    let (index, peers) = (scope.index(), scope.peers());
    builder.build(move |mut caps| {
        let mut cap = caps.pop().filter(|_| index == 0);
        let grid = spec.grid.max(1);
        let mut seq = spec.restored_seq;
        // The first checkpoint comes an interval after the start.
        let mut last_start = Instant::now();
        move |frontiers| {
            for i in inputs.iter_mut() {
                i.for_each(|_, _| {});
            }
            if index != 0 {
                return;
            }
            if !tracker.lock().unwrap_or_else(|p| p.into_inner()).is_empty() {
                if let Err(e) = complete(&spec, &tracker) {
                    ctl.fail(format!("checkpoint: {e}"));
                }
            }
            let in_progress = !tracker.lock().unwrap_or_else(|p| p.into_inner()).is_empty();
            if in_progress {
                activator.activate_after(Duration::from_millis(2));
            }
            let Some(c) = cap.as_mut() else { return };
            if ctl.stopped() {
                // A stopped run resumes from its last complete checkpoint.
                cap = None;
                return;
            }
            let least = frontiers
                .iter()
                .filter_map(|f| f.frontier().iter().next().copied())
                .min();
            let due = last_start.elapsed() >= spec.interval && !in_progress;
            let mut decide = |at: Time, c: &timely::dataflow::operators::Capability<Time>| {
                seq += 1;
                let decided = wall_micros();
                tracker
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_back(InProgress { seq, at, decided });
                let time = if at == END { *c.time() } else { at };
                let mut session = out.activate();
                let at_time = c.delayed(&time);
                let mut s = session.session(&at_time);
                for worker in 0..peers {
                    s.give(Decision { at, seq, worker });
                }
            };
            match least {
                // The final checkpoint follows the ones in progress, as every checkpoint does:
                // checkpoint n + 1 is decided only once n is complete.
                None if in_progress => {}
                None => {
                    decide(END, c);
                    cap = None;
                }
                Some(s) if s > *c.time() => {
                    if due {
                        decide(((s - 1) / grid) * grid, c);
                        last_start = Instant::now();
                    }
                    c.downgrade(&s.div_ceil(grid).saturating_mul(grid));
                }
                Some(_) => {}
            }
            if cap.is_some() {
                let wait = spec.interval.saturating_sub(last_start.elapsed());
                activator.activate_after(wait.max(Duration::from_millis(1)));
            }
        }
    });
    control.exchange(|d: &Decision| d.worker as u64)
}

/// Completes the oldest checkpoints in progress whose parts are all written: writes the
/// manifest, publishes the sinks' output, removes older checkpoints. Returns whether none is
/// left in progress.
pub fn complete(spec: &CheckpointSpec, tracker: &Tracker) -> Result<bool, String> {
    loop {
        let Some(p) = tracker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .front()
            .cloned()
        else {
            return Ok(true);
        };
        let dir = spec.chk_dir(p.seq);
        let mut parts = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let name = e.file_name();
                if let Some(part) = name.to_str().and_then(super::parse_part_name) {
                    let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                    parts.push((part, len, e.path()));
                }
            }
        }
        if parts.len() < spec.parts() {
            return Ok(false);
        }
        let mut published = Vec::new();
        let previous = super::latest(&spec.dir)
            .map_err(|e| e.to_string())?
            .map(|(_, m)| m.published)
            .unwrap_or_default();
        for s in &spec.sinks {
            // After the last checkpoint's output; the first starts after what the file holds
            // (a CSV header).
            let before = previous.iter().find(|p| p.sink == s.sink).map_or_else(
                || std::fs::metadata(&s.path).map_or(0, |m| m.len()),
                |p| p.after,
            );
            let mut pending: Vec<std::path::PathBuf> = parts
                .iter()
                .filter(|((c, _, _), _, _)| *c == s.sink)
                .map(|((_, w, _), _, _)| spec.pending(&s.sink, p.seq, *w))
                .filter(|f| f.exists())
                .collect();
            pending.sort();
            let added: u64 = pending
                .iter()
                .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
                .sum();
            published.push(super::Published {
                sink: s.sink.clone(),
                path: s.path.clone(),
                before,
                after: before + added,
                pending,
                lazy: s.lazy,
            });
        }
        let bytes: u64 = parts.iter().map(|(_, l, _)| *l).sum();
        let manifest = super::Manifest {
            format: super::FORMAT,
            seq: p.seq,
            at: p.at,
            end: p.at == END,
            completed_at: wall_micros(),
            parts: parts.len(),
            bytes,
            published: published.clone(),
            taken_with: spec.manifest_base.clone(),
        };
        let text = serde_json::to_vec_pretty(&manifest).map_err(|e| e.to_string())?;
        super::write_atomically(&dir.join("MANIFEST.json"), &text)
            .map_err(|e| format!("cannot write {}: {e}", dir.display()))?;
        super::publish(&published).map_err(|e| format!("cannot publish sink output: {e}"))?;
        for k in &spec.kafka {
            let positions: Vec<serde_json::Value> = parts
                .iter()
                .filter(|((c, _, _), _, _)| *c == k.component)
                .filter_map(|(_, _, path)| std::fs::read(path).ok())
                .filter_map(|b| serde_json::from_slice(&b).ok())
                .collect();
            k.commit(&positions)?;
        }
        super::prune(&spec.dir, Some(p.seq)).map_err(|e| format!("cannot prune: {e}"))?;
        let now = wall_micros();
        let aligned = parts
            .iter()
            .map(|((_, _, s), _, _)| *s)
            .max()
            .unwrap_or(now);
        spec.stats.complete(Completed {
            seq: p.seq,
            bytes,
            duration_us: (now - p.decided).max(0) as u64,
            alignment_us: (aligned - p.decided).max(0) as u64,
        });
        tracker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front();
    }
}

/// A source's positions when its capability crossed candidate times: the position for a
/// checkpoint at `E` is the first entry at or after `E`.
#[derive(Debug, Default)]
pub struct PositionLog {
    entries: VecDeque<(Time, serde_json::Value)>,
}

impl PositionLog {
    /// Notes that the source's capability moved from `from` to `to` (`Time::MAX`: it ended)
    /// with the source at `position` (made only when the move crosses a candidate).
    pub fn moved(
        &mut self,
        grid: Time,
        from: Time,
        to: Time,
        position: impl FnOnce() -> serde_json::Value,
    ) {
        let grid = grid.max(1);
        if to / grid > from / grid {
            self.entries.push_back((to, position()));
        }
    }

    /// Notes the source's position at the start, with its capability at `at`.
    pub fn start(&mut self, at: Time, position: serde_json::Value) {
        self.entries.push_back((at, position));
    }

    /// The position for a checkpoint at `at`.
    pub fn at(&self, at: Time) -> Option<&serde_json::Value> {
        self.entries.iter().find(|(t, _)| *t >= at).map(|(_, p)| p)
    }

    /// Forgets entries no checkpoint at or after `frontier` needs.
    pub fn forget_before(&mut self, frontier: Time) {
        while self.entries.front().is_some_and(|(t, _)| *t < frontier) {
            self.entries.pop_front();
        }
    }
}

/// The sources of one worker that record positions, by component.
pub type Positions = Rc<RefCell<Vec<(String, Rc<RefCell<PositionLog>>)>>>;

/// Builds the position writer of this worker.
pub fn position_writer<'s>(control: &Control<'s>, spec: Arc<CheckpointSpec>, logs: Positions) {
    let worker = control.scope().index();
    let mut builder = OperatorBuilder::new("checkpoint positions".to_string(), control.scope());
    let mut input = builder.new_input(control.clone(), Pipeline);
    builder.build(move |_caps| {
        move |frontiers| {
            let mut decided = Vec::new();
            input.for_each(|_, data: &mut Vec<Decision>| decided.append(data));
            for d in decided {
                let started = wall_micros();
                for (component, log) in logs.borrow().iter() {
                    let log = log.borrow();
                    let Some(position) = log.at(d.at) else {
                        // The source stopped before reaching the time: this checkpoint
                        // cannot complete.
                        continue;
                    };
                    let part = serde_json::json!({
                        "format": super::FORMAT,
                        "component": component,
                        "position": position,
                    });
                    let bytes = serde_json::to_vec(&part).expect("JSON values serialize");
                    if let Err(e) =
                        super::write_part(&spec, d.seq, component, worker, started, &bytes)
                    {
                        eprintln!("weir: checkpoint {}: source `{component}`: {e}", d.seq);
                    }
                }
            }
            if let Some(&f) = frontiers[0].frontier().iter().next() {
                for (_, log) in logs.borrow().iter() {
                    log.borrow_mut().forget_before(f);
                }
            }
        }
    });
}
