//! Preparing Kafka sources before a run: which partitions each reads and from where, and what
//! the plan tells about when a record's outputs are all written (its *done time*, see
//! [`weir_operators::kafka`]), which decides the offsets a source may commit.
//!
//! A record's outputs are bounded when every path from its source to a sink goes through
//! filters and maps and at most one tumbling window whose late records are not applied as
//! updates: the window emits a result at its last microsecond, and everything else (the record
//! itself, dead letters, late records) at the record's watermark at the latest. Anything else
//! — sessions, sliding windows, joins, late updates, a window after a window — keeps state
//! whose end Weir does not bound per record; such a source commits only where a bounded run
//! ends, and a restart reads from there again.

use std::sync::Arc;

use weir_operators::kafka::{resolve_partitions, Replay};
use weir_operators::window::{LatePolicy, Shape};
use weir_operators::Time;

use crate::components::{Op, SinkSpec, SinkTarget};
use crate::plan::Plan;

/// What the plan tells about the outputs of records read by the source at `node`.
pub fn replay(plan: &Plan, node: usize) -> Replay {
    let mut windows = Vec::new();
    if follow(plan, node, None, &mut windows) {
        windows.sort_unstable();
        windows.dedup();
        Replay::Windows(windows)
    } else {
        Replay::Unknown
    }
}

/// Follows every path from `node`'s outputs; `window` is the window already on the path.
/// Returns false when some path's end is unknown.
fn follow(
    plan: &Plan,
    node: usize,
    window: Option<(i64, i64)>,
    windows: &mut Vec<(i64, i64)>,
) -> bool {
    for (j, n) in plan.nodes.iter().enumerate() {
        for _ in n.inputs.iter().filter(|r| r.node == node) {
            let ok = match &n.op {
                Op::Filter(_) | Op::Map(_) | Op::Unnest(_) => follow(plan, j, window, windows),
                Op::Sink(_) => {
                    windows.extend(window);
                    true
                }
                Op::Window(w) => {
                    let bounded = w.shape == Shape::Tumbling
                        && !matches!(w.late, LatePolicy::Update { .. })
                        && window.is_none();
                    // Results at the window's end; late records and dead letters at their
                    // watermark, which the done time covers anyway.
                    bounded && follow(plan, j, Some((w.size, w.offset)), windows)
                }
                _ => false,
            };
            if !ok {
                return false;
            }
        }
    }
    true
}

/// Checks, before a run, that every topic a Kafka source reads or a Kafka sink writes exists:
/// an error at the topic's place in the pipeline file for each that does not. Brokers that
/// cannot be reached (within 3 s) are left to the run to report.
pub fn missing_topics(plan: &Plan) -> Vec<crate::diag::Diag> {
    use weir_operators::kafka::{client_config, topic_exists};
    let mut diags = Vec::new();
    let mut unreachable = std::collections::HashSet::new();
    let mut check = |config: &rdkafka::ClientConfig,
                     topic: &str,
                     span: Option<&std::ops::Range<usize>>,
                     component: String,
                     brokers: &str,
                     help: &str| {
        if unreachable.contains(brokers) {
            return;
        }
        let exists = topic_exists(config, topic, std::time::Duration::from_secs(3));
        if exists.is_err() {
            unreachable.insert(brokers.to_string());
        }
        if let Ok(false) = exists {
            let mut d =
                crate::diag::Diag::error(format!("topic `{topic}` does not exist on {brokers}"))
                    .component(component)
                    .help(help);
            if let Some(s) = span {
                d = d.at(s.clone());
            }
            diags.push(d);
        }
    };
    for n in &plan.nodes {
        match &n.op {
            Op::Kafka(s) => {
                let config = s.client_config();
                for (k, t) in s.topics.iter().enumerate() {
                    check(
                        &config,
                        t,
                        s.topic_spans.get(k),
                        format!("sources.{}", n.id),
                        &s.brokers,
                        "create it (`weir produce --topic` creates one with --partitions), or fix `topics`",
                    );
                }
            }
            Op::Sink(SinkSpec {
                target:
                    SinkTarget::Kafka {
                        brokers,
                        topic,
                        options,
                        topic_span,
                        ..
                    },
                ..
            }) => check(
                &client_config(brokers, options),
                topic,
                Some(topic_span),
                format!("sinks.{}", n.id),
                brokers,
                "create the topic first (a sink does not create it), or fix `topic`",
            ),
            _ => {}
        }
    }
    diags
}

/// Resolves every Kafka source's partitions and start offsets, and its done times, before the
/// run, and reads every Kinesis source's positions (this is process `process`); when resuming
/// from Weir's own commits, sets the frontier below which every output was written. Fails,
/// naming the source, when the brokers, a topic or a stream are missing.
pub fn prepare(plan: &Plan, process: usize) -> Result<Plan, String> {
    let mut plan = plan.clone();
    let mut resume: Option<Time> = None;
    for i in 0..plan.nodes.len() {
        if let Op::Kinesis(spec) = &plan.nodes[i].op {
            let id = plan.nodes[i].id.clone();
            let mut s = (**spec).clone();
            s.replay = replay(&plan, i);
            let conn = s.conn.clone();
            weir_cloud::block_on(weir_cloud::kinesis::SERVICE_TIMEOUT, async move {
                let client = conn.client().await?;
                weir_cloud::kinesis::check_stream(&client, &conn).await
            })
            .map_err(|e| format!("source `{id}`: {e}"))?;
            // (Pipelines with checkpoints refuse Kinesis sources: positions are kept here only.)
            if let Some(dir) = &s.positions {
                s.resume = weir_cloud::kinesis::positions::Positions::read(dir)
                    .map_err(|e| format!("source `{id}`: {e}"))?;
                resume = resume.max(s.resume.values().map(|p| p.frontier).max());
                s.store = Some(Arc::new(weir_cloud::kinesis::positions::Positions::new(
                    dir, process,
                )));
            }
            plan.nodes[i].op = Op::Kinesis(Arc::new(s));
            continue;
        }
        if let Op::PubSub(spec) = &plan.nodes[i].op {
            let id = plan.nodes[i].id.clone();
            let mut s = (**spec).clone();
            s.replay = replay(&plan, i);
            let (conn, sub) = (s.conn.clone(), s.subscription.clone());
            let ordered = weir_cloud::block_on(weir_cloud::pubsub::SERVICE_TIMEOUT, async move {
                conn.check_subscription(&sub).await
            })
            .map_err(|e| format!("source `{id}`: {e}"))?;
            s.status = Arc::new(std::sync::Mutex::new(
                weir_cloud::pubsub::source::PubSubStatus {
                    ordered,
                    ..Default::default()
                },
            ));
            plan.nodes[i].op = Op::PubSub(Arc::new(s));
            continue;
        }
        let Op::Kafka(spec) = &plan.nodes[i].op else {
            continue;
        };
        let mut s = (**spec).clone();
        s.replay = replay(&plan, i);
        s.partitions = resolve_partitions(&s.client_config(), &s.topics, s.start)
            .map_err(|e| format!("source `{}`: {e}", plan.nodes[i].id))?;
        if plan.checkpoint.is_some() {
            // Checkpoints hold the offsets (and commit them to the group as they complete):
            // no recovery point of the group's applies.
            s.checkpointed = true;
            for p in &mut s.partitions {
                p.resume = None;
            }
            plan.nodes[i].op = Op::Kafka(Arc::new(s));
            continue;
        }
        let f = s
            .partitions
            .iter()
            .filter_map(|p| p.resume)
            .map(|r| r.frontier)
            .max();
        resume = resume.max(f);
        plan.nodes[i].op = Op::Kafka(Arc::new(s));
    }
    for n in &mut plan.nodes {
        if let Op::Kafka(spec) = &n.op {
            let mut s = (**spec).clone();
            s.resume_frontier = resume;
            n.op = Op::Kafka(Arc::new(s));
        }
        if let Op::Kinesis(spec) = &n.op {
            let mut s = (**spec).clone();
            s.resume_frontier = resume;
            n.op = Op::Kinesis(Arc::new(s));
        }
    }
    Ok(plan)
}
