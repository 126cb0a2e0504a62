//! Building the timely dataflow of a plan on one worker: each component's operator, in
//! topological order, joined by chunk streams.

use std::collections::HashMap;
use std::sync::Arc;

use timely::dataflow::operators::{Concatenate, Exchange};
use weir_operators::chunk::arrow_schema;
use weir_operators::convert::{to_chunks, to_rows};
use weir_operators::exchange::{exchange_by_key, Routing};
use weir_operators::flow::SourceEnv;
use weir_operators::generator::generator;
use weir_operators::latency::SinkLatency;
use weir_operators::metrics::ComponentMetrics;
use weir_operators::sink::SharedWriter;
use weir_operators::window::LatePolicy;
use weir_operators::{
    file_source, filter, interval_join, kafka_source, map, sink, stdin_source, tcp_source,
    temporal_join, window, window_join, Batches, Time,
};

use crate::components::{Op, SinkTarget};
use crate::plan::{Plan, Port, PortRef};

/// Builds the dataflow for one worker.
#[allow(clippy::too_many_arguments)]
/// The schema of the records on an output port.
fn port_schema(plan: &Plan, r: PortRef) -> weir_operators::schema::Schema {
    let n = &plan.nodes[r.node];
    match r.port {
        Port::Main => n.schema.clone(),
        Port::DeadLetter => weir_operators::decode::dead_letter_schema(),
        // Late records are a window's or a join side's input records.
        Port::Late => port_schema(plan, n.inputs[0]),
        Port::LateRight => port_schema(plan, n.inputs[1]),
    }
}

pub(super) fn build<'s>(
    scope: timely::dataflow::Scope<'s, Time>,
    plan: &Plan,
    env: &SourceEnv,
    gather: bool,
    metrics: &[Arc<ComponentMetrics>],
    writers: &[Option<SharedWriter>],
    measured: &[Option<(Arc<SinkLatency>, Option<usize>)>],
) {
    let (clock, ctl) = (env.clock, &env.ctl);
    let mut streams: HashMap<PortRef, Batches<'s>> = HashMap::new();
    // Arrow schemas of the ports, made once each.
    let mut layouts: HashMap<PortRef, arrow::datatypes::SchemaRef> = HashMap::new();
    let mut layout = |r: PortRef| -> arrow::datatypes::SchemaRef {
        Arc::clone(
            layouts
                .entry(r)
                .or_insert_with(|| arrow_schema(&port_schema(plan, r))),
        )
    };
    // Versioned tables arranged once, shared by the temporal joins that read the same input
    // the same way.
    type TableKey = (PortRef, (Vec<usize>, Vec<usize>, usize, LatePolicy));
    let mut tables: HashMap<TableKey, temporal_join::Table<'s>> = HashMap::new();
    for (i, node) in plan.nodes.iter().enumerate() {
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
                streams.insert(main, generator(scope, name, spec.clone(), env.clone(), m));
            }
            Op::File(spec) => {
                let (r, d) =
                    file_source::file_source(scope, name, Arc::clone(spec), env.clone(), m);
                streams.insert(main, r);
                streams.insert(dead, d);
            }
            Op::Stdin(spec) => {
                let (r, d) =
                    stdin_source::stdin_source(scope, name, Arc::clone(spec), env.clone(), m);
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
            Op::Filter(e) => {
                let read = node.read.clone();
                let s = filter::filter(input(), name, Arc::clone(e), read, m);
                streams.insert(main, s);
            }
            Op::Map(spec) => {
                let s = map::map(input(), name, Arc::clone(spec), layout(main), m);
                streams.insert(main, s);
            }
            Op::Window(spec) => {
                let keyed = exchange_by_key(input(), spec.group_by.clone());
                let w = window::window(to_rows(keyed), Routing::Partitioned, Arc::clone(spec), m);
                put(main, w.results);
                put(dead, w.dead);
                put(late, w.late);
            }
            Op::IntervalJoin(_) | Op::WindowJoin(_) | Op::TemporalJoin(_) => {
                // Interval and window joins get their inputs exchanged as chunks; the temporal
                // join exchanges rows inside its differential part.
                let keyed = |k: usize, key: &Vec<usize>| {
                    to_rows(exchange_by_key(
                        streams[&node.inputs[k]].clone(),
                        key.clone(),
                    ))
                };
                let left = || to_rows(streams[&node.inputs[0]].clone());
                let right = || to_rows(streams[&node.inputs[1]].clone());
                let j = match &node.op {
                    Op::IntervalJoin(spec) => interval_join::interval_join(
                        keyed(0, &spec.common.left_key),
                        keyed(1, &spec.common.right_key),
                        Routing::Partitioned,
                        Arc::clone(spec),
                        m,
                    ),
                    Op::WindowJoin(spec) => window_join::window_join(
                        keyed(0, &spec.common.left_key),
                        keyed(1, &spec.common.right_key),
                        Routing::Partitioned,
                        Arc::clone(spec),
                        m,
                    ),
                    Op::TemporalJoin(spec) => {
                        let key = (node.inputs[1], spec.table_signature());
                        let owner = !tables.contains_key(&key);
                        let table = tables
                            .entry(key)
                            .or_insert_with(|| temporal_join::arrange_table(right(), spec, &m));
                        temporal_join::join_table(left(), table, owner, Arc::clone(spec), m)
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
}
