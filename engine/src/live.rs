//! Watching a run while it lasts: what the dashboard, `/metrics`, `/status` and `weir tap`
//! see of it.
//!
//! A caller that wants to watch puts an [`Observer`] in the run's options, saying which ports
//! to [tap](weir_operators::tap). When the run starts, the observer receives the run's
//! [`Live`] view: the plan, every component's counters, the sinks' latency histograms, the
//! taps, and once the run is over its final report. [`Live::report`] makes a report of the
//! run so far, in the same shape as the final one.
//!
//! ```
//! use std::sync::Arc;
//! use weir_engine::{live::{Observer, Taps}, plan, run};
//!
//! let toml = r#"
//! [sources.events]
//! type = "generator"
//! profile = "iot"
//! events = 1000
//! [sinks.out]
//! type = "null"
//! inputs = ["events"]
//! "#;
//! let (plan, _, _) = plan::load("example.toml", toml, &[]);
//! let observer = Arc::new(Observer::new(Taps::All));
//! let opts = run::RunOptions { observer: Some(Arc::clone(&observer)), ..Default::default() };
//! run::run(&plan.unwrap(), &opts, Default::default()).unwrap();
//! let live = observer.live().unwrap();
//! assert_eq!(live.ended().unwrap().components[0].metrics.records_out, 1000);
//! // The source's tap saw its stream complete.
//! assert_eq!(live.tap("events").unwrap().frontier(), None);
//! ```

use std::sync::mpsc::Receiver;
use std::sync::{Arc, OnceLock};

use weir_operators::tap::Tap;

pub use crate::monitor::Live;
use crate::outcome::RunReport;
use crate::plan::{Plan, Port, PortRef};
use crate::spec::Kind;

/// Which ports a run taps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Taps {
    /// Every output port of every source and transform (the dashboard's choice).
    All,
    /// These ports only (`weir tap`).
    Ports(Vec<PortRef>),
}

/// What a watcher asks of a run, and where it finds the run once it has started.
pub struct Observer {
    taps: Taps,
    live: OnceLock<Arc<Live>>,
    /// Ports subscribed to before the run starts, each with the most records to take.
    subscribe: Vec<(PortRef, Option<u64>)>,
    subscriptions: std::sync::Mutex<Vec<Receiver<String>>>,
    /// Whether tapped records must be whole (every field computed), at the price of speed.
    whole: bool,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("taps", &self.taps)
            .field("started", &self.live.get().is_some())
            .finish()
    }
}

/// How many recent records each tap keeps for the dashboard's tail.
pub const KEEP: usize = 50;

impl Observer {
    /// An observer of a run that taps `taps`.
    pub fn new(taps: Taps) -> Observer {
        Observer {
            taps,
            live: OnceLock::new(),
            subscribe: Vec::new(),
            subscriptions: Default::default(),
            whole: false,
        }
    }

    /// An observer that taps `port` alone and takes the first `limit` records out of it
    /// (all of them with `None`), subscribed before any record flows: see
    /// [`Observer::subscription`].
    pub fn subscribed(port: PortRef, limit: Option<u64>) -> Observer {
        Observer {
            subscribe: vec![(port, limit)],
            whole: true,
            ..Observer::new(Taps::Ports(vec![port]))
        }
    }

    /// An observer that taps `ports` and takes every record out of each: see
    /// [`Observer::subscriptions`].
    pub fn subscribed_to(ports: Vec<PortRef>) -> Observer {
        let mut unique = ports.clone();
        unique.dedup();
        Observer {
            subscribe: ports.into_iter().map(|p| (p, None)).collect(),
            whole: true,
            ..Observer::new(Taps::Ports(unique))
        }
    }

    /// The records of the port given to [`Observer::subscribed`], once the run has started
    /// (taken once).
    pub fn subscription(&self) -> Option<Receiver<String>> {
        let mut s = self.subscriptions.lock().unwrap_or_else(|p| p.into_inner());
        (!s.is_empty()).then(|| s.remove(0))
    }

    /// The records of each port given to [`Observer::subscribed_to`], in its order, once
    /// the run has started (taken once).
    pub fn subscriptions(&self) -> Vec<Receiver<String>> {
        std::mem::take(&mut *self.subscriptions.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Whether the run must compute every field of every record, so that what is tapped is
    /// whole: true for the subscribers of `weir tap` and `weir test`. A run only watched (the
    /// dashboard) computes, as any run, only the fields something downstream reads (a
    /// generator fills only those; filters pass the others as NULL): whole records cost a
    /// generator-fed pipeline about half its speed.
    pub fn whole_records(&self) -> bool {
        self.whole
    }

    /// The run, once it has started.
    pub fn live(&self) -> Option<&Arc<Live>> {
        self.live.get()
    }

    /// Hands the observer its run (the run calls this when it starts).
    pub(crate) fn started(&self, live: Arc<Live>) {
        let _ = self.live.set(live);
    }

    /// The ports to tap in `plan`, each with its tap.
    pub(crate) fn taps(&self, plan: &Plan) -> Vec<(PortRef, Arc<Tap>)> {
        let ports = match &self.taps {
            Taps::Ports(p) => p.clone(),
            Taps::All => plan
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| n.kind != Kind::Sink)
                .flat_map(|(i, _)| ports_of(plan, i))
                .collect(),
        };
        let taps: Vec<(PortRef, Arc<Tap>)> = ports
            .into_iter()
            .map(|r| {
                let name = port_name(plan, r);
                let schema = crate::plan::port_schema(plan, r);
                (r, Arc::new(Tap::new(&name, &schema, KEEP)))
            })
            .collect();
        let mut subs = self.subscriptions.lock().unwrap_or_else(|p| p.into_inner());
        for (port, limit) in &self.subscribe {
            if let Some((_, t)) = taps.iter().find(|(r, _)| r == port) {
                subs.push(t.subscribe(*limit));
            }
        }
        drop(subs);
        taps
    }
}

/// The outputs of node `i`: its main output, and each other port something reads.
fn ports_of(plan: &Plan, i: usize) -> Vec<PortRef> {
    let mut ports = vec![PortRef {
        node: i,
        port: Port::Main,
    }];
    for n in &plan.nodes {
        for r in &n.inputs {
            if r.node == i && !ports.contains(r) {
                ports.push(*r);
            }
        }
    }
    ports
}

/// A port as the user names it in `inputs` and `weir tap`: `id` or `id.late`.
pub fn port_name(plan: &Plan, r: PortRef) -> String {
    let id = &plan.nodes[r.node].id;
    match r.port {
        Port::Main => id.clone(),
        p => format!("{id}.{}", p.name()),
    }
}

/// The names of the fields of the records out of a port, in order.
pub fn port_fields(plan: &Plan, r: PortRef) -> Vec<String> {
    crate::plan::port_schema(plan, r)
        .fields
        .iter()
        .map(|f| f.name.to_string())
        .collect()
}

/// Finds the port `name` (`id` or `id.PORT`) of a source or transform in `plan`, or says
/// what the user can tap instead.
pub fn find_port(plan: &Plan, name: &str) -> Result<PortRef, String> {
    let ports: Vec<(PortRef, String)> = plan
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.kind != Kind::Sink)
        .flat_map(|(i, _)| ports_of(plan, i))
        .map(|r| (r, port_name(plan, r)))
        .collect();
    if let Some((r, _)) = ports.iter().find(|(_, n)| n == name) {
        return Ok(*r);
    }
    let id = name.split('.').next().unwrap_or(name);
    if let Some(n) = plan
        .nodes
        .iter()
        .find(|n| n.id == id && n.kind == Kind::Sink)
    {
        let inputs: Vec<String> = n.inputs.iter().map(|r| port_name(plan, *r)).collect();
        return Err(format!(
            "`{id}` is a sink: it has no output to tap\n  help: tap what it reads: {}",
            inputs.join(", ")
        ));
    }
    let names: Vec<&str> = ports.iter().map(|(_, n)| n.as_str()).collect();
    Err(format!(
        "this pipeline has no component or port `{name}`\n  help: tap one of: {}",
        names.join(", ")
    ))
}

impl Live {
    /// The tap on the port named `name` (`id` or `id.PORT`), if the run has one.
    pub fn tap(&self, name: &str) -> Option<&Arc<Tap>> {
        self.taps
            .iter()
            .find(|(_, t)| t.name() == name)
            .map(|(_, t)| t)
    }

    /// The run's final report, once it has ended.
    pub fn ended(&self) -> Option<&Arc<RunReport>> {
        self.ended.get()
    }

    /// A report of the run so far: the final one once the run has ended.
    pub fn report(&self) -> Arc<RunReport> {
        if let Some(r) = self.ended.get() {
            return Arc::clone(r);
        }
        Arc::new(crate::run::report_so_far(self))
    }
}
