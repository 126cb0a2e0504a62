//! The shell of the stateless transforms (`filter`, `map`): an operator that rewrites each
//! chunk, on the worker that holds it, counting records in and out. Consecutive stateless
//! transforms run as one operator ([`chain`], as Flink chains operators): a chunk goes
//! through every stage in one activation, and the dataflow has one operator to schedule and
//! track progress for instead of one per transform, which is most of what a small chunk
//! costs. Each stage still counts its own records in and out.
//!
//! ```
//! use std::sync::Arc;
//! use timely::dataflow::operators::{Capture, ToStream};
//! use timely::dataflow::operators::capture::Event;
//! use weir_operators::batch::{chain, Stage};
//! use weir_operators::chunk::{arrow_schema, Chunk};
//! use weir_operators::{expr::Expr, metrics::ComponentMetrics, schema::*, value::*};
//!
//! let schema = Schema::new(vec![Field::new("t", FieldType::F64)]);
//! let rows: Vec<Record> = (0..10).map(|t| Record::new(vec![Value::F64(t as f64)])).collect();
//! let chunk = Chunk::from_rows(&arrow_schema(&schema), &rows);
//! let (a, b) = (Arc::new(ComponentMetrics::default()), Arc::new(ComponentMetrics::default()));
//! let (ma, mb) = (Arc::clone(&a), Arc::clone(&b));
//! let above = |e: &str| {
//!     let e = Expr::compile(e, &schema).unwrap();
//!     move |c: &Chunk| c.filter(&e.eval_mask(c.columns(), c.len()))
//! };
//! let (over_2, over_6) = (above("t > 2"), above("t > 6"));
//! let captured = timely::example(move |scope| {
//!     let input = vec![chunk].to_stream(scope).container::<Vec<Chunk>>();
//!     let stages = vec![Stage::new("a", ma, over_2), Stage::new("b", mb, over_6)];
//!     chain(input, stages).capture()
//! });
//! let kept: usize = captured.try_iter().map(|e| match e {
//!     Event::Messages(_, c) => c.iter().map(Chunk::len).sum(),
//!     _ => 0,
//! }).sum();
//! assert_eq!(kept, 3);
//! assert_eq!((a.snapshot().records_in, a.snapshot().records_out), (10, 7));
//! assert_eq!((b.snapshot().records_in, b.snapshot().records_out), (7, 3));
//! ```

use std::sync::Arc;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;

use arrow::array::BooleanArray;

use crate::chunk::{Chunk, NullColumns};
use crate::metrics::ComponentMetrics;
use crate::Batches;

/// One stateless transform of a [`chain`]: its name, its counters, and what it makes of a
/// chunk.
pub struct Stage {
    name: String,
    metrics: Arc<ComponentMetrics>,
    work: Work,
}

/// What a stage does to a chunk.
enum Work {
    /// Any rewrite.
    Rewrite(Box<dyn FnMut(&Chunk) -> Chunk>),
    /// Keeps the records its mask is TRUE for, copying only the fields `read` marks.
    Filter {
        mask: Box<dyn FnMut(&Chunk) -> BooleanArray>,
        read: Option<Vec<bool>>,
        nulls: NullColumns,
    },
}

impl Stage {
    /// A stage named `name` (a component id) applying `rewrite` to each chunk.
    pub fn new(
        name: &str,
        metrics: Arc<ComponentMetrics>,
        rewrite: impl FnMut(&Chunk) -> Chunk + 'static,
    ) -> Stage {
        Stage {
            name: name.to_string(),
            metrics,
            work: Work::Rewrite(Box::new(rewrite)),
        }
    }

    /// A stage named `name` keeping the records for which `mask` is TRUE (see
    /// [`Chunk::filter_fields`]; with `read`, only the fields `k` with `read[k]` are copied).
    /// A chain that routes its output ([`chain_routed`]) and ends in such a stage filters and
    /// splits each chunk in one pass.
    pub fn filter(
        name: &str,
        metrics: Arc<ComponentMetrics>,
        mask: impl FnMut(&Chunk) -> BooleanArray + 'static,
        read: Option<Vec<bool>>,
    ) -> Stage {
        Stage {
            name: name.to_string(),
            metrics,
            work: Work::Filter {
                mask: Box::new(mask),
                read,
                nulls: NullColumns::default(),
            },
        }
    }

    fn apply(&mut self, c: &Chunk) -> Chunk {
        match &mut self.work {
            Work::Rewrite(f) => f(c),
            Work::Filter { mask, read, nulls } => c.filter_fields(&mask(c), read.as_deref(), nulls),
        }
    }
}

/// Builds one operator applying `stages` in order to every chunk of `input`: each stage's
/// result is the next one's input, a chunk that comes out empty goes no further (and is not
/// sent), and each stage counts the records it takes and gives.
pub fn chain<'s>(input: Batches<'s>, stages: Vec<Stage>) -> Batches<'s> {
    chain_operator(input, stages, None, |_, c| c)
}

/// [`chain`], with every record then sent to the worker that owns the hash of its fields at
/// `key` (as [`exchange_by_key`](crate::exchange::exchange_by_key) would, without an operator
/// of its own); when the last stage is a [`Stage::filter`], each chunk is filtered and split in
/// one pass ([`Chunk::filter_split`]), its kept records' columns copied once.
pub fn chain_routed<'s>(input: Batches<'s>, stages: Vec<Stage>, key: Vec<usize>) -> Batches<'s> {
    let peers = input.scope().peers();
    if peers == 1 {
        return chain(input, stages);
    }
    let tagged = chain_operator(input, stages, Some((key, peers)), |p, c| (p as u64, c));
    crate::exchange::route(tagged)
}

/// The operator of a chain: each result chunk (or with `route`, each part) as `give` makes it.
fn chain_operator<'s, T: Clone + 'static>(
    input: Batches<'s>,
    stages: Vec<Stage>,
    route: Option<(Vec<usize>, usize)>,
    give: fn(usize, Chunk) -> T,
) -> timely::dataflow::Stream<'s, crate::Time, Vec<T>> {
    let name = chain_name(&stages);
    let mut stages = Chained::new(stages);
    input.unary::<CapacityContainerBuilder<Vec<T>>, _, _, _>(Pipeline, &name, move |_cap, _info| {
        let mut out = Vec::new();
        move |input, output| {
            input.for_each(|cap, data: &mut Vec<Chunk>| {
                for c in data.iter() {
                    let route = route.as_ref().map(|(k, p)| (&k[..], *p));
                    out.extend(stages.run(c, route).into_iter().map(|(p, r)| give(p, r)));
                }
                stages.flush_counts();
                if !out.is_empty() {
                    output.session(&cap).give_container(&mut out);
                    out.clear();
                }
            });
        }
    })
}

fn chain_name(stages: &[Stage]) -> String {
    stages
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(" -> ")
}

/// A chain's stages and their record counts since they were last reported.
struct Chained {
    stages: Vec<Stage>,
    counts: Vec<(u64, u64)>,
}

impl Chained {
    fn new(stages: Vec<Stage>) -> Chained {
        let counts = vec![(0, 0); stages.len()];
        Chained { stages, counts }
    }

    /// Runs `c` through the stages: the (non-empty) result, or with `route = (key, parts)` its
    /// parts by key, each tagged with its part.
    fn run(&mut self, c: &Chunk, route: Option<(&[usize], usize)>) -> Vec<(usize, Chunk)> {
        let last = self.stages.len().saturating_sub(1);
        let mut result: Option<Chunk> = None;
        for (i, (stage, (n_in, n_out))) in self.stages.iter_mut().zip(&mut self.counts).enumerate()
        {
            let x = result.as_ref().unwrap_or(c);
            *n_in += x.len() as u64;
            if let (Some((key, parts)), true) = (route, i == last) {
                if let Work::Filter { mask, read, nulls } = &mut stage.work {
                    let split = x.filter_split(&mask(x), read.as_deref(), nulls, key, parts);
                    *n_out += split.iter().map(|(_, p)| p.len() as u64).sum::<u64>();
                    return split;
                }
            }
            let r = stage.apply(x);
            *n_out += r.len() as u64;
            let empty = r.is_empty();
            result = Some(r);
            if empty {
                break;
            }
        }
        match (result, route) {
            (Some(r), _) if r.is_empty() => Vec::new(),
            (Some(r), Some((key, parts))) => r.split(key, parts),
            (Some(r), None) => vec![(0, r)],
            // No stages: the chunk as it is.
            (None, Some((key, parts))) if !c.is_empty() => c.split(key, parts),
            (None, None) if !c.is_empty() => vec![(0, c.clone())],
            (None, _) => Vec::new(),
        }
    }

    /// Adds the counts since the last call to each stage's metrics.
    fn flush_counts(&mut self) {
        for (stage, (n_in, n_out)) in self.stages.iter().zip(&mut self.counts) {
            stage.metrics.add_in(std::mem::take(n_in));
            stage.metrics.add_out(std::mem::take(n_out));
        }
    }
}

/// An operator output of record batches.
pub(crate) type RecordOutput = timely::dataflow::operators::generic::OutputBuilder<
    crate::Time,
    timely::container::CapacityContainerBuilder<Vec<crate::schema::Record>>,
>;

/// What an operator sends its outputs with: the capability of the input message being
/// handled, or capabilities retained for each output port (for input that waited at a
/// checkpoint barrier).
pub(crate) trait Delay {
    /// A capability for output `port` at time `t` (at or after this one's).
    fn at(
        &self,
        t: &crate::Time,
        port: usize,
    ) -> timely::dataflow::operators::Capability<crate::Time>;
}

impl Delay for timely::dataflow::operators::InputCapability<crate::Time> {
    fn at(
        &self,
        t: &crate::Time,
        port: usize,
    ) -> timely::dataflow::operators::Capability<crate::Time> {
        self.delayed(t, port)
    }
}

impl<const N: usize> Delay for [timely::dataflow::operators::Capability<crate::Time>; N] {
    fn at(
        &self,
        t: &crate::Time,
        port: usize,
    ) -> timely::dataflow::operators::Capability<crate::Time> {
        self[port].delayed(t)
    }
}

/// Sends `buf` (when it holds anything) on output `port` at the input capability's time `t`,
/// leaving it empty; returns how many records were sent.
pub(crate) fn give_at(
    out: &mut RecordOutput,
    cap: &(impl Delay + ?Sized),
    t: crate::Time,
    port: usize,
    buf: &mut Vec<crate::schema::Record>,
) -> u64 {
    let n = buf.len() as u64;
    if n > 0 {
        out.activate()
            .session(&cap.at(&t, port))
            .give_container(buf);
        buf.clear();
    }
    n
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use timely::dataflow::operators::{Inspect, ToStream};

    use super::*;
    use crate::chunk::{arrow_schema, part_of};
    use crate::expr::Expr;
    use crate::schema::{Field, Record, Schema};
    use crate::value::{FieldType, Value};

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("id", FieldType::U64),
            Field::new("k", FieldType::String),
            Field::new("x", FieldType::I64),
        ])
    }

    /// Row `i`: a key NULL one time in 11, `x` NULL one time in 7.
    fn row(i: u64) -> Vec<Value> {
        let k = match i % 11 {
            0 => Value::Null,
            _ => Value::Str(format!("device-{}", i * 7 % 23).into()),
        };
        let x = match i % 7 {
            0 => Value::Null,
            _ => Value::I64((i * 37 % 100) as i64),
        };
        vec![Value::U64(i), k, x]
    }

    /// Records out, each with the worker it came out on.
    type Out = Vec<(usize, Vec<Value>)>;
    /// A case: the stages, and the row a row index comes out as, if it does.
    type Case = (
        fn(Arc<ComponentMetrics>) -> Vec<Stage>,
        fn(u64) -> Option<Vec<Value>>,
    );

    /// Runs `stages()` over 2,000 rows on `workers` workers, routed by `k` or not: each record
    /// out with the worker it came out on, and the first stage's counts in and out.
    fn run(
        workers: usize,
        routed: bool,
        stages: fn(Arc<ComponentMetrics>) -> Vec<Stage>,
    ) -> (Out, (u64, u64)) {
        let out = Arc::new(Mutex::new(Vec::new()));
        let metrics: Arc<ComponentMetrics> = Arc::default();
        let (o, m) = (Arc::clone(&out), Arc::clone(&metrics));
        timely::execute(timely::Config::process(workers), move |worker| {
            let (me, peers) = (worker.index(), worker.peers());
            let layout = arrow_schema(&schema());
            let chunks: Vec<Chunk> = (0..20u64)
                .filter(|c| *c as usize % peers == me)
                .map(|c| {
                    let rows: Vec<Record> = (c * 100..c * 100 + 100)
                        .map(|i| Record::new(row(i)))
                        .collect();
                    Chunk::from_rows(&layout, &rows)
                })
                .collect();
            let (o, m) = (Arc::clone(&o), Arc::clone(&m));
            worker.dataflow::<crate::Time, _, _>(move |scope| {
                let input = chunks.to_stream(scope).container::<Vec<Chunk>>();
                let s = match routed {
                    true => chain_routed(input, stages(m), vec![1]),
                    false => chain(input, stages(m)),
                };
                s.inspect_core(move |event: Result<(_, &Vec<Chunk>), _>| {
                    let Ok((_, chunks)) = event else { return };
                    for c in chunks {
                        if routed && peers > 1 {
                            assert_eq!(c.routed_hashes(&[1]), Some(&c.key_hashes(&[1])[..]));
                        }
                        let mut rows = Vec::new();
                        c.push_rows(&mut rows);
                        let mut o = o.lock().unwrap();
                        o.extend(rows.into_iter().map(|r| (me, r.values)));
                    }
                });
            });
        })
        .unwrap()
        .join();
        let mut out = std::mem::take(&mut *out.lock().unwrap());
        out.sort_by(|a, b| a.1.cmp(&b.1));
        let s = metrics.snapshot();
        (out, (s.records_in, s.records_out))
    }

    fn filter_stage(m: Arc<ComponentMetrics>, cond: &str, read: Option<Vec<bool>>) -> Stage {
        let e = Expr::compile(cond, &schema()).unwrap();
        Stage::filter("f", m, move |c| e.eval_mask(c.columns(), c.len()), read)
    }

    #[test]
    fn a_routed_chain_keeps_what_a_chain_keeps_each_record_on_its_keys_worker() {
        // The last stage a filter keeping most records (filtered and split in one pass), one
        // keeping few (filtered, then split), one copying only `id` and `k`, and a map last.
        let cases: [Case; 4] = [
            (
                |m| vec![filter_stage(m, "x > 10", None)],
                |i| Some(row(i)).filter(|r| r[2].as_i64().is_some_and(|x| x > 10)),
            ),
            (
                |m| vec![filter_stage(m, "x > 90", None)],
                |i| Some(row(i)).filter(|r| r[2].as_i64().is_some_and(|x| x > 90)),
            ),
            (
                |m| vec![filter_stage(m, "x > 10", Some(vec![true, true, false]))],
                |i| {
                    let r = row(i);
                    let keep = r[2].as_i64().is_some_and(|x| x > 10);
                    keep.then(|| vec![r[0].clone(), r[1].clone(), Value::Null])
                },
            ),
            (
                |m| {
                    let e = Expr::compile("x < 50", &schema()).unwrap();
                    let drop_x = |c: &Chunk| {
                        c.filter(&arrow::array::BooleanArray::from(vec![true; c.len()]))
                    };
                    vec![
                        Stage::filter("a", m, move |c| e.eval_mask(c.columns(), c.len()), None),
                        Stage::new("b", Arc::default(), drop_x),
                    ]
                },
                |i| Some(row(i)).filter(|r| r[2].as_i64().is_some_and(|x| x < 50)),
            ),
        ];
        for (n, (stages, expected)) in cases.into_iter().enumerate() {
            let mut reference: Vec<Vec<Value>> = (0..2000).filter_map(expected).collect();
            reference.sort();
            let first_out = (2000, reference.len() as u64);
            for workers in [1, 2, 3] {
                for routed in [false, true] {
                    let (out, counts) = run(workers, routed, stages);
                    let rows: Vec<Vec<Value>> = out.iter().map(|(_, r)| r.clone()).collect();
                    assert_eq!(
                        rows, reference,
                        "case {n}, {workers} workers, routed {routed}"
                    );
                    assert_eq!(
                        counts, first_out,
                        "case {n}, {workers} workers, routed {routed}"
                    );
                    if routed {
                        for (w, r) in &out {
                            let h = crate::window::key_hash(r, &[1]);
                            assert_eq!(*w, part_of(h, workers), "case {n}: {r:?}");
                        }
                    }
                }
            }
        }
    }
}
