//! Records of many keys taken in event-time order once the watermark has passed them: what
//! operators whose results depend on order (alerts, online models) wait on, so their results
//! depend only on the records, never on batching, scheduling or the number of workers.

use std::collections::BTreeMap;

use hashbrown::HashMap;
use std::sync::Arc;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::Capability;

use crate::batch::give_at;
use crate::chunk::Chunk;
use crate::late::LateCounts;
use crate::metrics::ComponentMetrics;
use crate::schema::{Meta, Record};
use crate::value::{Micros, Value};
use crate::{Batches, Records, Time};

/// Each key's number, in the order keys were first seen on this worker.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(from = "Vec<(Vec<Value>, usize)>", into = "Vec<(Vec<Value>, usize)>")]
pub(crate) struct Keys {
    index: HashMap<Vec<Value>, usize>,
}

impl From<Vec<(Vec<Value>, usize)>> for Keys {
    fn from(v: Vec<(Vec<Value>, usize)>) -> Keys {
        Keys {
            index: v.into_iter().collect(),
        }
    }
}

impl From<Keys> for Vec<(Vec<Value>, usize)> {
    fn from(k: Keys) -> Self {
        let mut v: Vec<(Vec<Value>, usize)> = k.index.into_iter().collect();
        v.sort_by_key(|(_, n)| *n);
        v
    }
}

impl Clone for Keys {
    fn clone(&self) -> Keys {
        Keys {
            index: self.index.clone(),
        }
    }
}

impl Keys {
    /// The key's number, and whether it is new.
    pub(crate) fn number(&mut self, key: Vec<Value>) -> (usize, bool) {
        let n = self.index.len();
        match self.index.entry(key) {
            hashbrown::hash_map::Entry::Occupied(e) => (*e.get(), false),
            hashbrown::hash_map::Entry::Vacant(e) => {
                e.insert(n);
                (n, true)
            }
        }
    }
}

/// Records waiting for the watermark, in the order they will be taken: event time, key
/// number, then values (identical records in arrival order, which cannot tell them apart).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Waiting {
    records: BTreeMap<(Micros, usize, Vec<Value>, u64), Meta>,
    seq: u64,
}

impl Waiting {
    /// Adds record `r` of key number `key` at event time `ts`.
    pub(crate) fn insert(&mut self, ts: Micros, key: usize, r: Record) {
        self.seq += 1;
        self.records.insert((ts, key, r.values, self.seq), r.meta);
    }

    /// The earliest waiting record's time.
    pub(crate) fn first_time(&self) -> Option<Micros> {
        self.records.first_key_value().map(|(k, _)| k.0)
    }

    /// Takes the earliest record if it is before `frontier` (any, with `None`: the input has
    /// ended): its time, key number and record.
    pub(crate) fn pop_before(
        &mut self,
        frontier: Option<Micros>,
    ) -> Option<(Micros, usize, Record)> {
        self.first_time()
            .filter(|&t| frontier.is_none_or(|f| t < f))?;
        let ((ts, key, values, _), meta) = self.records.pop_first()?;
        let mut r = Record::new(values);
        r.meta = meta;
        Some((ts, key, r))
    }

    /// Records waiting.
    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }
}

/// What an operator built by [`ordered_operator`] does: takes records (waiting, late or
/// untimed), and then, as the watermark passes, makes its results in event-time order.
pub(crate) trait InOrder {
    /// Takes one record; late and untimed ones go to `dead` or `late` (counted in `n`).
    fn add(
        &mut self,
        r: Record,
        dead: &mut Vec<Record>,
        late: &mut Vec<Record>,
        n: &mut LateCounts,
    );
    /// The earliest event time a result may still be made at.
    fn next(&self) -> Option<Micros>;
    /// Makes the results due before `frontier` (all, with `None`: the input has ended), each
    /// with its event time.
    fn advance(&mut self, frontier: Option<Micros>, emit: &mut dyn FnMut(Micros, Record));
    /// Entries of state, for the summary.
    fn entries(&self) -> u64;
    /// The state as a checkpoint part (postcard: the operator's own state struct).
    fn snapshot(&self) -> Vec<u8>;
    /// Takes the state of a checkpoint part made by [`InOrder::snapshot`].
    fn restore(&mut self, bytes: &[u8]) -> Result<(), String>;
}

/// The results `work` makes of `records`, all at once (event time then ends): for tests and
/// examples of the operators built by [`ordered_operator`].
pub(crate) fn run_all(mut work: impl InOrder, records: Vec<Record>) -> Vec<Record> {
    let (mut dead, mut late, mut n) = (Vec::new(), Vec::new(), LateCounts::default());
    for r in records {
        work.add(r, &mut dead, &mut late, &mut n);
    }
    let mut out = Vec::new();
    work.advance(None, &mut |_, r| out.push(r));
    out
}

/// The streams of an operator that takes each key's records in event-time order (`alert`,
/// `predict`).
pub struct OrderedStreams<'s> {
    /// Its results.
    pub results: Records<'s>,
    /// Late records (with `late = "dead-letter"`) and records without an event time, with the
    /// reason.
    pub dead: Records<'s>,
    /// Late records, unchanged (with `late = "side-output"`).
    pub late: Records<'s>,
}

/// An operator named `name` feeding the chunks of `input` (on the worker that holds their
/// keys) to `work`, holding a capability at the earliest time a result may still be made at.
/// With `checkpoint`, the input goes through a [`Barrier`](crate::checkpoint::Barrier), the
/// work's state goes into each checkpoint, and a restored run starts from it.
pub(crate) fn ordered_operator<'s, W: InOrder + 'static>(
    input: Batches<'s>,
    name: &str,
    metrics: Arc<ComponentMetrics>,
    mut work: W,
    checkpoint: Option<crate::checkpoint::Checkpointing<'s>>,
    ctl: crate::control::RunControl,
) -> OrderedStreams<'s> {
    use crate::checkpoint::{Barrier, Decision};
    let worker = input.scope().index();
    let mut builder = OperatorBuilder::new(name.to_string(), input.scope());
    let mut input = builder.new_input(input, Pipeline);
    let (mut control, ck) = match checkpoint {
        Some((c, ck)) => {
            ck.register(worker);
            (Some(builder.new_input(c, Pipeline)), Some(ck))
        }
        None => (None, None),
    };
    let (out, results) = builder.new_output::<Vec<Record>>();
    let (dead_out, dead) = builder.new_output::<Vec<Record>>();
    let (late_out, late) = builder.new_output::<Vec<Record>>();
    let mut out = OutputBuilder::<_, CapacityContainerBuilder<Vec<Record>>>::from(out);
    let mut dead_out = OutputBuilder::<_, CapacityContainerBuilder<Vec<Record>>>::from(dead_out);
    let mut late_out = OutputBuilder::<_, CapacityContainerBuilder<Vec<Record>>>::from(late_out);
    let name = name.to_string();
    builder.build(move |mut caps| {
        if let Some(bytes) = ck.as_ref().and_then(|ck| ck.restored(&name, worker)) {
            if let Err(e) = work.restore(bytes) {
                ctl.fail(format!(
                    "`{name}`: its state in the checkpoint cannot be read: {e}; run with --from-scratch to start over"
                ));
            }
        }
        // A restored state's results are made from the first capability.
        let mut first: Option<Capability<Time>> = caps.drain(..).next();
        let mut held: Option<Capability<Time>> = None;
        let mut rows = Vec::new();
        let mut last_entries = 0u64;
        let mut barrier: Barrier<([Capability<Time>; 3], Chunk)> = Barrier::default();
        move |frontiers| {
            if let Some(f) = first.take() {
                if let Some(next) = work.next() {
                    held = Some(f.delayed(&(next.max(0) as Time).max(*f.time())));
                }
            }
            let mut n = LateCounts::default();
            let mut records_in = 0;
            if let Some(control) = control.as_mut() {
                control.for_each(|_, data: &mut Vec<Decision>| {
                    for d in data.drain(..) {
                        barrier.decide(d.at, d.seq);
                    }
                });
                barrier.set_control(frontiers[1].frontier().iter().next().copied());
            }
            let checkpointing = control.is_some();
            let mut apply = |cap: &dyn crate::batch::Delay,
                             t: Time,
                             chunk: &Chunk,
                             work: &mut W,
                             held: &mut Option<Capability<Time>>| {
                let (mut dead, mut late) = (Vec::new(), Vec::new());
                records_in += chunk.len() as u64;
                rows.clear();
                chunk.push_rows(&mut rows);
                for r in rows.drain(..) {
                    work.add(r, &mut dead, &mut late, &mut n);
                }
                // Hold a capability at the earliest time a result may still be made at.
                if let Some(next) = work.next() {
                    let next = (next.max(0) as Time).max(t);
                    if held.as_ref().is_none_or(|h| *h.time() > next) {
                        *held = Some(cap.at(&next, 0));
                    }
                }
                give_at(&mut dead_out, cap, t, 1, &mut dead);
                give_at(&mut late_out, cap, t, 2, &mut late);
            };
            input.for_each(|cap, data: &mut Vec<Chunk>| {
                let Some(&t) = cap.least() else {
                    // Weir's operators always send with a capability; nothing to hold.
                    return;
                };
                if checkpointing && !barrier.admits(t) {
                    for chunk in data.drain(..) {
                        let caps = [0, 1, 2].map(|p| cap.delayed(&t, p));
                        barrier.hold(t, (caps, chunk));
                    }
                    return;
                }
                for chunk in data.iter() {
                    apply(&cap, t, chunk, &mut work, &mut held);
                }
            });
            // Makes the results due before `f`, all in one container at the held time (at or
            // below each one's event time and watermark), then moves the held capability up.
            let mut made = 0u64;
            let mut advance = |f: Option<Time>, work: &mut W, held: &mut Option<Capability<Time>>| {
                if let Some(h) = held.as_ref() {
                    let mut batch: Vec<Record> = Vec::new();
                    let f = f.map(|f| f.min(i64::MAX as Time) as Micros);
                    work.advance(f, &mut |_, r| batch.push(r));
                    made += batch.len() as u64;
                    if !batch.is_empty() {
                        out.activate().session(h).give_container(&mut batch);
                    }
                }
                match (work.next(), held.as_mut()) {
                    (None, _) => *held = None,
                    (Some(t), Some(h)) => {
                        let t = t.max(0) as Time;
                        if *h.time() < t {
                            h.downgrade(&t);
                        }
                    }
                    _ => {}
                }
            };
            let frontier = frontiers[0].frontier().iter().min().copied();
            if let Some(ck) = ck.as_ref() {
                loop {
                    for (t, (caps, chunk)) in barrier.release() {
                        apply(&caps, t, &chunk, &mut work, &mut held);
                    }
                    let Some((at, seq)) = barrier.due(frontier) else {
                        break;
                    };
                    let started = crate::checkpoint::wall_micros();
                    advance((at != crate::checkpoint::END).then_some(at), &mut work, &mut held);
                    let bytes = work.snapshot();
                    if let Err(e) =
                        crate::checkpoint::write_part(ck, seq, &name, worker, started, &bytes)
                    {
                        ctl.fail(format!("`{name}`: cannot write checkpoint {seq}: {e}"));
                    }
                    barrier.taken();
                }
                advance(barrier.frontier(frontier), &mut work, &mut held);
            } else {
                advance(frontier, &mut work, &mut held);
            }
            metrics.add_in(records_in);
            metrics.add_out(made);
            n.report(&metrics);
            let entries = work.entries();
            metrics.add_state(entries as i64 - last_entries as i64);
            last_entries = entries;
        }
    });
    OrderedStreams {
        results,
        dead,
        late,
    }
}
