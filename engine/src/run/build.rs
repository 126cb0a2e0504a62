//! Building the timely dataflow of a plan on one worker: each component's operator, in
//! topological order, joined by chunk streams; a run of filters and maps, each read only by
//! the next, is one operator (chained).

use std::collections::HashMap;
use std::sync::Arc;

use timely::dataflow::operators::{Concatenate, Exchange};
use weir_operators::batch::{chain, chain_routed, Stage};
use weir_operators::chunk::arrow_schema;
use weir_operators::convert::to_chunks;
use weir_operators::exchange::exchange_by_key;
use weir_operators::flow::SourceEnv;
use weir_operators::generator::{generator, GeneratorSpec};
use weir_operators::latency::SinkLatency;
use weir_operators::metrics::ComponentMetrics;
use weir_operators::sink::SharedWriter;
use weir_operators::window::LatePolicy;
use weir_operators::{
    alert, file_source, filter, interval_join, kafka_source, map, predict, sink, stdin_source,
    tcp_source, temporal_join, unnest, window, window_join, Batches, Time,
};

use crate::components::{Op, SinkTarget};
use crate::plan::{Plan, Port, PortRef};

/// Which nodes hand their output to the next stage of a chain instead of a stream: a filter or
/// map whose main output one node reads, a filter or map with that one input.
fn chained(plan: &Plan) -> Vec<bool> {
    let stateless = |op: &Op| matches!(op, Op::Filter(_) | Op::Map(_) | Op::Unnest(_));
    (0..plan.nodes.len())
        .map(|i| {
            let main = PortRef {
                node: i,
                port: Port::Main,
            };
            let readers: Vec<_> = plan
                .nodes
                .iter()
                .filter(|n| n.inputs.contains(&main))
                .collect();
            stateless(&plan.nodes[i].op)
                && matches!(readers.as_slice(), [r] if stateless(&r.op) && r.inputs == [main])
        })
        .collect()
}

/// For each filter or map that ends a chain (see [`chained`]) and whose output only a window
/// or one side of a join reads, the key that reader exchanges its input by: the chain routes
/// its records itself ([`chain_routed`]), and a last filter filters and splits in one pass.
fn routed(plan: &Plan, chains: &[bool]) -> Vec<Option<Vec<usize>>> {
    (0..plan.nodes.len())
        .map(|i| {
            let main = PortRef {
                node: i,
                port: Port::Main,
            };
            if chains[i] || !matches!(plan.nodes[i].op, Op::Filter(_) | Op::Map(_) | Op::Unnest(_))
            {
                return None;
            }
            let readers: Vec<_> = plan
                .nodes
                .iter()
                .filter(|n| n.inputs.contains(&main))
                .collect();
            let [r] = readers.as_slice() else {
                return None;
            };
            let side = match r.inputs.iter().filter(|p| **p == main).count() {
                1 => r.inputs.iter().position(|p| *p == main)?,
                _ => return None,
            };
            // A window of several inputs exchanges them together.
            if matches!(r.op, Op::Window(_)) && r.inputs.len() > 1 {
                return None;
            }
            input_key(&r.op, side).cloned()
        })
        .collect()
}

/// The key a keyed operator exchanges its input `side` by.
fn input_key(op: &Op, side: usize) -> Option<&Vec<usize>> {
    let common = match op {
        Op::Window(spec) => return (side == 0).then_some(&spec.group_by),
        Op::IntervalJoin(spec) => &spec.common,
        Op::WindowJoin(spec) => &spec.common,
        Op::TemporalJoin(spec) => &spec.common,
        _ => return None,
    };
    match side {
        0 => Some(&common.left_key),
        _ => Some(&common.right_key),
    }
}

/// This run's tag in the names of the files it writes: when the process first asked, in
/// milliseconds since the epoch, in hexadecimal (with the worker's index, unique in a cluster).
fn run_tag() -> String {
    static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TAG.get_or_init(|| {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        format!("{ms:x}")
    })
    .clone()
}

/// Builds the dataflow for one worker.
#[allow(clippy::too_many_arguments)]
pub(super) fn build<'s>(
    scope: timely::dataflow::Scope<'s, Time>,
    plan: &Plan,
    env: &SourceEnv,
    gather: bool,
    metrics: &[Arc<ComponentMetrics>],
    writers: &[Option<SharedWriter>],
    measured: &[Option<(Arc<SinkLatency>, Option<usize>)>],
    taps: &[(PortRef, Arc<weir_operators::tap::Tap>)],
    tracker: Option<&weir_operators::checkpoint::coordinator::Tracker>,
) -> Vec<(usize, usize)> {
    let (clock, ctl) = (env.clock, &env.ctl);
    let mut streams: HashMap<PortRef, Batches<'s>> = HashMap::new();
    // Arrow schemas of the ports, made once each.
    let mut layouts: HashMap<PortRef, arrow::datatypes::SchemaRef> = HashMap::new();
    let mut layout = |r: PortRef| -> arrow::datatypes::SchemaRef {
        Arc::clone(
            layouts
                .entry(r)
                .or_insert_with(|| arrow_schema(&crate::plan::port_schema(plan, r))),
        )
    };
    // Versioned tables arranged once, shared by the temporal joins that read the same input
    // the same way.
    type TableKey = (PortRef, (Vec<usize>, Vec<usize>, usize, LatePolicy));
    let mut tables: HashMap<TableKey, temporal_join::Table<'s>> = HashMap::new();
    // Filters and maps whose output only one filter or map reads run in one operator with it
    // (see `weir_operators::batch::chain`): their stages wait here for the rest of the chain.
    let mut chains = chained(plan);
    // A tapped filter or map ends its chain, so its records exist as a stream.
    for (r, _) in taps {
        chains[r.node] = false;
    }
    let routes = routed(plan, &chains);
    // Streams already exchanged by a key (by the chain that makes them), with that key.
    let mut partitioned: HashMap<PortRef, Vec<usize>> = HashMap::new();
    let mut pending: HashMap<PortRef, (Batches<'s>, Vec<Stage>)> = HashMap::new();
    // The first operator identifier of each node's operators, with the node (see
    // `run::busy_logger`; `usize::MAX` for operators of no node).
    let mut first_ids = Vec::with_capacity(plan.nodes.len() + 2);
    // With checkpoints, the sources come first: the coordinator reads them all, and the
    // operators with state read its control stream.
    let checkpointing = env.positions.clone().zip(tracker.cloned());
    let mut order: Vec<usize> = (0..plan.nodes.len()).collect();
    if checkpointing.is_some() {
        order.sort_by_key(|&i| plan.nodes[i].kind != crate::components::Kind::Source);
    }
    let mut control: Option<weir_operators::checkpoint::Control<'s>> = None;
    for &i in &order {
        let node = &plan.nodes[i];
        if let (None, Some(((spec, logs), tracker))) = (&control, &checkpointing) {
            if node.kind != crate::components::Kind::Source {
                first_ids.push((scope.worker().peek_identifier(), usize::MAX));
                let sources: Vec<Batches<'s>> = streams.values().cloned().collect();
                let c = weir_operators::checkpoint::coordinator::coordinator(
                    scope,
                    sources,
                    Arc::clone(spec),
                    Arc::clone(tracker),
                    ctl.clone(),
                );
                weir_operators::checkpoint::coordinator::position_writer(
                    &c,
                    Arc::clone(spec),
                    logs.clone(),
                );
                control = Some(c);
            }
        }
        let checkpoint = || {
            control
                .clone()
                .zip(checkpointing.as_ref().map(|((s, _), _)| Arc::clone(s)))
        };
        first_ids.push((scope.worker().peek_identifier(), i));
        let m = Arc::clone(&metrics[i]);
        let name = node.id.as_str();
        let input = || -> Batches<'s> {
            let mut ins: Vec<Batches<'s>> =
                node.inputs.iter().map(|r| streams[r].clone()).collect();
            if ins.len() == 1 {
                ins.pop().expect("one input")
            } else {
                scope.concatenate(ins)
            }
        };
        let main = PortRef {
            node: i,
            port: Port::Main,
        };
        let dead = PortRef {
            node: i,
            port: Port::DeadLetter,
        };
        let late = PortRef {
            node: i,
            port: Port::Late,
        };
        let late_right = PortRef {
            node: i,
            port: Port::LateRight,
        };
        // The row-based operators (windows, joins) are joined to the chunk streams by
        // conversions at their inputs and outputs.
        let mut rows_out: Vec<(PortRef, weir_operators::Records<'s>)> = Vec::new();
        let mut put =
            |port: PortRef, rows: weir_operators::Records<'s>| rows_out.push((port, rows));
        match &node.op {
            Op::Generator(spec) => {
                // The generator fills only the fields something reads.
                let spec = GeneratorSpec {
                    columns: node.read.clone(),
                    ..spec.clone()
                };
                streams.insert(main, generator(scope, name, spec, env.clone(), m));
            }
            Op::File(spec) => {
                let (r, d) =
                    file_source::file_source(scope, name, Arc::clone(spec), env.clone(), m);
                streams.insert(main, r);
                streams.insert(dead, d);
            }
            Op::Test(input) => {
                let (r, d) = weir_operators::test_source::test_source(
                    scope,
                    name,
                    Arc::clone(input),
                    env.clone(),
                    m,
                );
                streams.insert(main, r);
                streams.insert(dead, d);
            }
            Op::Stdin(spec) => {
                let (r, d) =
                    stdin_source::stdin_source(scope, name, Arc::clone(spec), env.clone(), m);
                streams.insert(main, r);
                streams.insert(dead, d);
            }
            Op::Onnx(spec) => {
                let s = weir_operators::onnx::onnx(input(), name, Arc::clone(spec), ctl.clone(), m);
                streams.insert(main, s);
            }
            Op::Mqtt(spec) => {
                let (r, d) = weir_operators::mqtt::mqtt_source(
                    scope,
                    name,
                    Arc::clone(spec),
                    env.clone(),
                    m,
                );
                streams.insert(main, r);
                streams.insert(dead, d);
            }
            Op::Tcp(spec) => {
                let (r, d) = tcp_source::tcp_source(scope, name, Arc::clone(spec), env.clone(), m);
                streams.insert(main, r);
                streams.insert(dead, d);
            }
            Op::Kafka(spec) => {
                let (r, d) =
                    kafka_source::kafka_source(scope, name, Arc::clone(spec), env.clone(), m);
                streams.insert(main, r);
                streams.insert(dead, d);
            }
            Op::PubSub(spec) => {
                let (r, d) = weir_cloud::pubsub::source::pubsub_source(
                    scope,
                    name,
                    Arc::clone(spec),
                    env.clone(),
                    m,
                );
                streams.insert(main, r);
                streams.insert(dead, d);
            }
            Op::Kinesis(spec) => {
                let (r, d) = weir_cloud::kinesis::source::kinesis_source(
                    scope,
                    name,
                    Arc::clone(spec),
                    env.clone(),
                    m,
                );
                streams.insert(main, r);
                streams.insert(dead, d);
            }
            Op::Filter(_) | Op::Map(_) | Op::Unnest(_) => {
                let stage = match &node.op {
                    Op::Filter(e) => filter::stage(name, Arc::clone(e), node.read.clone(), m),
                    Op::Map(spec) => map::stage(name, Arc::clone(spec), layout(main), m),
                    Op::Unnest(spec) => unnest::stage(name, Arc::clone(spec), m),
                    _ => unreachable!("matched above"),
                };
                // Continue the chain this node's only input hands it, or start one.
                let (from, mut stages) = match node.inputs.as_slice() {
                    [r] if pending.contains_key(r) => pending.remove(r).expect("checked"),
                    _ => (input(), Vec::new()),
                };
                stages.push(stage);
                if chains[i] {
                    pending.insert(main, (from, stages));
                } else if let Some(key) = &routes[i] {
                    streams.insert(main, chain_routed(from, stages, key.clone()));
                    partitioned.insert(main, key.clone());
                } else {
                    streams.insert(main, chain(from, stages));
                }
            }
            Op::Window(spec) => {
                let keyed = match node.inputs.len() == 1
                    && partitioned.get(&node.inputs[0]) == Some(&spec.group_by)
                {
                    true => input(),
                    false => exchange_by_key(input(), spec.group_by.clone()),
                };
                let w =
                    window::window_batches(keyed, Arc::clone(spec), m, ctl.clone(), checkpoint());
                put(main, w.results);
                put(dead, w.dead);
                put(late, w.late);
            }
            Op::Alert(spec) => {
                let keyed = match node.inputs.len() == 1
                    && partitioned.get(&node.inputs[0]) == Some(&spec.key)
                {
                    true => input(),
                    false => exchange_by_key(input(), spec.key.clone()),
                };
                let a = alert::alert_batches(keyed, Arc::clone(spec), m, checkpoint(), ctl.clone());
                put(main, a.results);
                put(dead, a.dead);
                put(late, a.late);
            }
            Op::Predict(spec) => {
                let keyed = match node.inputs.len() == 1
                    && partitioned.get(&node.inputs[0]) == Some(&spec.key)
                {
                    true => input(),
                    false => exchange_by_key(input(), spec.key.clone()),
                };
                let p =
                    predict::predict_batches(keyed, Arc::clone(spec), m, checkpoint(), ctl.clone());
                put(main, p.results);
                put(dead, p.dead);
                put(late, p.late);
            }
            Op::IntervalJoin(_) | Op::WindowJoin(_) | Op::TemporalJoin(_) => {
                // Every join gets its inputs exchanged by key, as chunks.
                let keyed = |k: usize, key: &Vec<usize>| {
                    let s = streams[&node.inputs[k]].clone();
                    match partitioned.get(&node.inputs[k]) == Some(key) {
                        true => s,
                        false => exchange_by_key(s, key.clone()),
                    }
                };
                let j = match &node.op {
                    Op::IntervalJoin(spec) => interval_join::interval_join_batches(
                        keyed(0, &spec.common.left_key),
                        keyed(1, &spec.common.right_key),
                        Arc::clone(spec),
                        m,
                        ctl.clone(),
                        checkpoint(),
                    ),
                    Op::WindowJoin(spec) => window_join::window_join_batches(
                        keyed(0, &spec.common.left_key),
                        keyed(1, &spec.common.right_key),
                        Arc::clone(spec),
                        m,
                        ctl.clone(),
                        checkpoint(),
                    ),
                    Op::TemporalJoin(spec) => {
                        let key = (node.inputs[1], spec.table_signature());
                        let owner = !tables.contains_key(&key);
                        let table = tables.entry(key).or_insert_with(|| {
                            let right = keyed(1, &spec.common.right_key);
                            temporal_join::arrange_table(right, spec, &m, ctl.clone(), checkpoint())
                        });
                        let left = keyed(0, &spec.common.left_key);
                        let spec = Arc::clone(spec);
                        temporal_join::join_table(
                            left,
                            table,
                            owner,
                            spec,
                            m,
                            ctl.clone(),
                            checkpoint(),
                        )
                    }
                    _ => unreachable!("matched above"),
                };
                put(main, j.results);
                put(dead, j.dead);
                put(late, j.late_left);
                put(late_right, j.late_right);
            }
            Op::Sink(spec) => {
                let measure = measured[i].as_ref().map(|(l, end)| sink::Measure {
                    latency: Arc::clone(l),
                    clock,
                    window_end: *end,
                });
                let mut stream = input();
                if let SinkTarget::Parquet(p) = &spec.target {
                    // Each worker writes its own files: nothing is gathered.
                    let written = weir_operators::parquet_sink::parquet_sink(
                        stream,
                        name,
                        Arc::clone(p),
                        run_tag(),
                        measure,
                        ctl.clone(),
                        m,
                    );
                    env.flow.watch(written);
                    continue;
                }
                if let (Some((control, ck)), true) =
                    (checkpoint(), crate::checkpoints::exactly_once(&spec.target))
                {
                    if gather {
                        stream = stream.exchange(|_| 0);
                    }
                    let written = weir_operators::pending_sink::pending_sink(
                        stream,
                        control,
                        name,
                        Arc::clone(&spec.encoder),
                        ck,
                        measure,
                        ctl.clone(),
                        m,
                    );
                    env.flow.watch(written);
                    continue;
                }
                if gather && spec.target != SinkTarget::Null {
                    // In a cluster, the first worker of process 0 writes every sink's output,
                    // so it is the same as a single process's.
                    stream = stream.exchange(|_| 0);
                }
                let written = sink::sink(
                    stream,
                    name,
                    Arc::clone(&spec.encoder),
                    writers[i].clone(),
                    measure,
                    ctl.clone(),
                    m,
                );
                env.flow.watch(written);
            }
        }
        for (port, rows) in rows_out {
            let s = to_chunks(rows, layout(port));
            streams.insert(port, s);
        }
    }
    first_ids.push((scope.worker().peek_identifier(), usize::MAX));
    first_ids.sort_unstable();
    for (r, t) in taps {
        if let Some(s) = streams.get(r) {
            weir_operators::tap::tap(s, Arc::clone(t));
        }
    }
    first_ids
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A filter and a map read only by each other chain; a transform read by two, or by a
    /// sink, or a source, ends a chain.
    #[test]
    fn chains_end_where_a_stream_has_another_reader() {
        let text = r#"
[pipeline]
name = "c"
[sources.g]
type = "generator"
profile = "iot"
events = 10
[transforms.a]
type = "filter"
inputs = ["g"]
condition = "kind = 'reading'"
[transforms.b]
type = "map"
inputs = ["a"]
select = ["id", "temperature"]
[transforms.c]
type = "filter"
inputs = ["b"]
condition = "temperature > 1"
[transforms.d]
type = "filter"
inputs = ["b"]
condition = "temperature < 1"
[transforms.e]
type = "map"
inputs = ["c"]
select = ["id"]
[sinks.x]
type = "null"
inputs = ["e"]
[sinks.y]
type = "null"
inputs = ["d"]
"#;
        let (plan, diags, _) = crate::plan::load("c.toml", text, &[]);
        assert!(diags.is_empty(), "{diags:?}");
        let plan = plan.unwrap();
        let chained: Vec<(&str, bool)> = plan
            .nodes
            .iter()
            .zip(chained(&plan))
            .map(|(n, c)| (n.id.as_str(), c))
            .collect();
        let want = [
            ("g", false),
            ("a", true),
            ("b", false),
            ("c", true),
            ("d", false),
            ("e", false),
            ("x", false),
            ("y", false),
        ];
        for (id, c) in want {
            assert!(chained.contains(&(id, c)), "{id}: {chained:?}");
        }
    }
}
