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

use crate::components::Op;
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
                Op::Filter(_) | Op::Map(_) => follow(plan, j, window, windows),
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

/// Resolves every Kafka source's partitions and start offsets, and its done times, before the
/// run; when resuming from Weir's own commits, sets the frontier below which every output was
/// written. Fails, naming the source, when the brokers or a topic are missing.
pub fn prepare(plan: &Plan) -> Result<Plan, String> {
    let mut plan = plan.clone();
    let mut resume: Option<Time> = None;
    for i in 0..plan.nodes.len() {
        let Op::Kafka(spec) = &plan.nodes[i].op else {
            continue;
        };
        let mut s = (**spec).clone();
        s.replay = replay(&plan, i);
        s.partitions = resolve_partitions(&s.client_config(), &s.topics, s.start)
            .map_err(|e| format!("source `{}`: {e}", plan.nodes[i].id))?;
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
    }
    Ok(plan)
}
