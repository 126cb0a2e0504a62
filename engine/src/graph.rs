//! `weir graph`: the plan as a Graphviz DOT or Mermaid diagram.

use crate::plan::{label, Plan, Port};
use crate::spec::Kind;

/// The diagram formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    /// Graphviz DOT (`weir graph p.toml | dot -Tsvg > p.svg`).
    Dot,
    /// Mermaid flowchart (paste into Markdown).
    Mermaid,
}

/// Renders the plan.
pub fn render(plan: &Plan, format: GraphFormat) -> String {
    let mut out = String::new();
    match format {
        GraphFormat::Dot => {
            out.push_str(&format!("digraph {:?} {{\n  rankdir=LR;\n", plan.name));
            for (i, n) in plan.nodes.iter().enumerate() {
                let shape = match n.kind {
                    Kind::Source => "invhouse",
                    Kind::Transform => "box",
                    Kind::Sink => "house",
                };
                out.push_str(&format!("  n{i} [label={:?}, shape={shape}];\n", label(n)));
            }
            for (i, n) in plan.nodes.iter().enumerate() {
                for r in &n.inputs {
                    match r.port {
                        Port::Main => out.push_str(&format!("  n{} -> n{i};\n", r.node)),
                        p => out.push_str(&format!(
                            "  n{} -> n{i} [label={:?}, style=dashed];\n",
                            r.node,
                            p.name()
                        )),
                    }
                }
            }
            out.push_str("}\n");
        }
        GraphFormat::Mermaid => {
            out.push_str("flowchart LR\n");
            for (i, n) in plan.nodes.iter().enumerate() {
                let text = label(n).replace('"', "'");
                let node = match n.kind {
                    Kind::Source => format!("  n{i}[/\"{text}\"/]\n"),
                    Kind::Transform => format!("  n{i}[\"{text}\"]\n"),
                    Kind::Sink => format!("  n{i}[\\\"{text}\"\\]\n"),
                };
                out.push_str(&node);
            }
            for (i, n) in plan.nodes.iter().enumerate() {
                for r in &n.inputs {
                    match r.port {
                        Port::Main => out.push_str(&format!("  n{} --> n{i}\n", r.node)),
                        p => out.push_str(&format!("  n{} -. {} .-> n{i}\n", r.node, p.name())),
                    }
                }
            }
        }
    }
    out
}
