//! Checkpoints before and after a run (`[pipeline] checkpoint`): finding the checkpoint to
//! resume from and checking that the pipeline's state still fits it, finishing the publishing
//! a crash interrupted, or starting afresh; and completing the final checkpoint once the
//! workers are done. The checkpoints themselves are taken by the operators (see
//! [`weir_operators::checkpoint`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use weir_operators::checkpoint::{self, coordinator::Tracker, CheckpointSpec, SinkOutput};

use crate::components::{Op, SinkTarget};
use crate::plan::Plan;

/// Whether a sink's output is exactly-once under checkpoints: a file (published per
/// checkpoint); other sinks write at once and repeat output after a recovery.
pub fn exactly_once(target: &SinkTarget) -> bool {
    matches!(target, SinkTarget::File(_) | SinkTarget::LazyFile(_))
}

/// What each component's state or position depends on: a checkpoint taken with another
/// fingerprint cannot be resumed from.
fn fingerprints(plan: &Plan) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for n in &plan.nodes {
        let f = match &n.op {
            Op::Window(w) => {
                let input = crate::plan::port_schema(plan, n.inputs[0]);
                let keys: Vec<String> = w
                    .group_by
                    .iter()
                    .map(|&p| format!("{}:{}", input.fields[p].name, input.fields[p].ty))
                    .collect();
                let outputs: Vec<String> = n
                    .schema
                    .fields
                    .iter()
                    .map(|f| format!("{}:{}", f.name, f.ty))
                    .collect();
                format!(
                    "window {:?}, size {}µs, offset {}µs, group_by [{}], late {:?}, results [{}]",
                    w.shape,
                    w.size,
                    w.offset,
                    keys.join(", "),
                    w.late,
                    outputs.join(", ")
                )
            }
            Op::IntervalJoin(_) | Op::WindowJoin(_) | Op::TemporalJoin(_) => {
                let (c, what) = match &n.op {
                    Op::IntervalJoin(j) => (
                        &j.common,
                        format!(
                            "interval join [{}, {}]{}",
                            j.lower,
                            j.upper,
                            if j.left_outer { " left outer" } else { "" }
                        ),
                    ),
                    Op::TemporalJoin(j) => (
                        &j.common,
                        format!(
                            "temporal join{}",
                            if j.left_outer { " left outer" } else { "" }
                        ),
                    ),
                    Op::WindowJoin(j) => (
                        &j.common,
                        format!(
                            "window join size {}, slide {}, offset {}, {:?}",
                            j.size, j.slide, j.offset, j.how
                        ),
                    ),
                    _ => unreachable!("matched above"),
                };
                let side = |s: usize| {
                    let schema = crate::plan::port_schema(plan, n.inputs[s]);
                    let names = |ps: &[usize]| -> Vec<String> {
                        ps.iter()
                            .map(|&p| format!("{}:{}", schema.fields[p].name, schema.fields[p].ty))
                            .collect()
                    };
                    format!(
                        "key [{}], time {}, stored [{}]",
                        names(c.keys(s)).join(", "),
                        names(&[c.time(s)]).join(""),
                        names(&c.stored_positions(s)).join(", ")
                    )
                };
                format!("{what}, left {}, right {}", side(0), side(1))
            }
            Op::Alert(_) | Op::Predict(_) => {
                // Its key and what it makes: a rule or model changed within them keeps the state.
                let fields: Vec<String> = n
                    .schema
                    .fields
                    .iter()
                    .map(|f| format!("{}:{}", f.name, f.ty))
                    .collect();
                let key = match &n.op {
                    Op::Alert(a) => &a.key,
                    Op::Predict(p) => &p.key,
                    _ => unreachable!("matched above"),
                };
                let input = crate::plan::port_schema(plan, n.inputs[0]);
                let key: Vec<&str> = key.iter().map(|&k| input.fields[k].name.as_str()).collect();
                format!(
                    "{} key [{}], results [{}]",
                    n.ty,
                    key.join(", "),
                    fields.join(", ")
                )
            }
            Op::Kafka(k) => format!(
                "kafka topics [{}], group {}, {}",
                k.topics.join(", "),
                k.group_id,
                if k.csv { "csv" } else { "json" }
            ),
            Op::Generator(g) => {
                let g = weir_operators::generator::GeneratorSpec {
                    columns: None,
                    ..g.clone()
                };
                format!("generator {g:?}")
            }
            Op::File(f) => {
                let files: Vec<&str> = f.files.iter().map(|(_, shown)| shown.as_str()).collect();
                format!("file {:?}, files [{}]", f.format, files.join(", "))
            }
            Op::Sink(s) if exactly_once(&s.target) => match &s.target {
                SinkTarget::File(p) | SinkTarget::LazyFile(p) => format!("file {}", p.display()),
                _ => continue,
            },
            _ => continue,
        };
        out.insert(n.id.clone(), f);
    }
    out
}

/// Why the pipeline no longer fits checkpoint `seq` (manifest `m`), for a run on `workers`
/// threads in each of `processes` processes: a diagnostic at the component (or at
/// `[pipeline] checkpoint`) for each reason.
fn misfit(
    plan: &Plan,
    m: &checkpoint::Manifest,
    seq: u64,
    workers: usize,
    processes: usize,
) -> Vec<crate::diag::Diag> {
    use crate::diag::Diag;
    let shown = plan
        .checkpoint
        .as_ref()
        .map_or(String::new(), |c| c.1.display().to_string());
    let at = |id: &str, d: Diag| match plan
        .spans
        .get(id)
        .or(plan.spans.get("[pipeline] checkpoint"))
    {
        Some(s) => d.at(s.clone()),
        None => d,
    };
    let mut out = Vec::new();
    for (key, now) in [("workers", workers), ("processes", processes)] {
        let then = m.taken_with[key].as_u64().unwrap_or(0) as usize;
        if then != now {
            out.push(at(
                "[pipeline] checkpoint",
                Diag::error(format!(
                    "checkpoint {seq} in {shown} was taken with {then} {key}, this run has {now}"
                ))
                .component("pipeline")
                .help(format!(
                    "each worker's state belongs to its share of the keys: run with {then} {key} to resume, or with --from-scratch to discard the checkpoint"
                )),
            ));
        }
    }
    let old: BTreeMap<String, String> =
        serde_json::from_value(m.taken_with["components"].clone()).unwrap_or_default();
    let prints = fingerprints(plan);
    let mut ids: Vec<&String> = old.keys().chain(prints.keys()).collect();
    ids.sort();
    ids.dedup();
    for id in ids {
        let (message, help) = match (old.get(id), prints.get(id)) {
            (Some(a), Some(b)) if a == b => continue,
            (Some(a), Some(b)) => (
                format!(
                    "component `{id}` no longer fits its state in checkpoint {seq} ({shown}): it was taken with `{a}`, and the pipeline now says `{b}`"
                ),
                "restore the old setting to resume, or run with --from-scratch to discard the checkpoint",
            ),
            (Some(a), None) => (
                format!(
                    "component `{id}` has state in checkpoint {seq} ({shown}) (`{a}`) but is no longer in the pipeline"
                ),
                "put it back to resume, or run with --from-scratch to discard the checkpoint",
            ),
            (None, Some(_)) => (
                format!("component `{id}` is new since checkpoint {seq} ({shown}), which has no state for it"),
                "run with --from-scratch to start over with it",
            ),
            (None, None) => continue,
        };
        let node = plan.nodes.iter().find(|n| &n.id == id);
        let component = node.map_or(id.clone(), |n| format!("{}.{}", n.kind.section(), n.id));
        out.push(at(id, Diag::error(message).component(component).help(help)));
    }
    out
}

/// Before a run: why the pipeline cannot resume from the latest checkpoint in its directory,
/// as diagnostics (none without checkpoints, with `from_scratch`, or when it fits).
pub fn misfits(
    plan: &Plan,
    workers: usize,
    processes: usize,
    from_scratch: bool,
) -> Vec<crate::diag::Diag> {
    let Some((_, dir)) = &plan.checkpoint else {
        return Vec::new();
    };
    if from_scratch {
        return Vec::new();
    }
    match checkpoint::latest(dir) {
        Ok(Some((seq, m))) if m.format == checkpoint::FORMAT => {
            misfit(plan, &m, seq, workers, processes)
        }
        _ => Vec::new(),
    }
}

/// The checkpointing of a run about to start, and its in-progress tracker.
pub struct Prepared {
    /// What the operators get.
    pub spec: Arc<CheckpointSpec>,
    /// Checkpoints decided and not yet complete.
    pub tracker: Tracker,
    /// Whether the run resumes from a checkpoint.
    pub resumed: Option<u64>,
}

/// Prepares checkpointing for a run of `plan` on `workers` threads in each of `processes`
/// processes: resumes from the latest complete checkpoint in the directory (unless
/// `from_scratch`), after checking it fits; otherwise clears the directory and the file sinks'
/// outputs. Only process 0 changes files.
pub fn prepare(
    plan: &Plan,
    workers: usize,
    processes: usize,
    process: usize,
    from_scratch: bool,
) -> Result<Option<Prepared>, String> {
    let Some((interval, dir)) = &plan.checkpoint else {
        return Ok(None);
    };
    let prints = fingerprints(plan);
    let base = serde_json::json!({
        "pipeline": plan.name,
        "workers": workers,
        "processes": processes,
        "components": prints,
    });
    let sinks: Vec<SinkOutput> = plan
        .nodes
        .iter()
        .filter_map(|n| match &n.op {
            Op::Sink(s) => match &s.target {
                SinkTarget::File(p) => Some(SinkOutput {
                    sink: n.id.clone(),
                    path: p.clone(),
                    lazy: false,
                }),
                SinkTarget::LazyFile(p) => Some(SinkOutput {
                    sink: n.id.clone(),
                    path: p.clone(),
                    lazy: true,
                }),
                _ => None,
            },
            _ => None,
        })
        .collect();
    let shown = dir.display();
    let latest = match from_scratch {
        true => None,
        false => {
            checkpoint::latest(dir).map_err(|e| format!("checkpoint directory {shown}: {e}"))?
        }
    };
    let mut restored = HashMap::new();
    let mut restored_seq = 0;
    if let Some((seq, m)) = &latest {
        if m.format != checkpoint::FORMAT {
            return Err(format!(
                "checkpoint {seq} in {shown} is of format {}, this Weir reads format {}: run with --from-scratch to discard it",
                m.format,
                checkpoint::FORMAT
            ));
        }
        if let Some(m) = misfit(plan, m, *seq, workers, processes).first() {
            return Err(m.message.clone());
        }
        if process == 0 {
            // A crash may have cut publishing short, and may have left output of a checkpoint
            // that never completed.
            checkpoint::publish(&m.published)
                .map_err(|e| format!("cannot finish publishing checkpoint {seq}: {e}"))?;
            checkpoint::discard_after(dir, *seq)
                .map_err(|e| format!("checkpoint directory {shown}: {e}"))?;
        }
        let chk = checkpoint::chk_dir(dir, *seq);
        let entries =
            std::fs::read_dir(&chk).map_err(|e| format!("cannot read {}: {e}", chk.display()))?;
        for e in entries.flatten() {
            let name = e.file_name();
            if let Some((component, worker, _)) =
                name.to_str().and_then(checkpoint::parse_part_name)
            {
                let bytes = std::fs::read(e.path())
                    .map_err(|err| format!("cannot read {}: {err}", e.path().display()))?;
                restored.insert((component, worker), bytes);
            }
        }
        restored_seq = *seq;
    } else if process == 0 {
        checkpoint::prune(dir, None).map_err(|e| format!("checkpoint directory {shown}: {e}"))?;
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create the checkpoint directory {shown}: {e}"))?;
        // A fresh run's file outputs start empty, as without checkpoints.
        for s in &sinks {
            if s.lazy {
                let _ = std::fs::remove_file(&s.path);
                continue;
            }
            if let Some(d) = s.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(d).map_err(|e| {
                    format!("sink `{}`: cannot create {}: {e}", s.sink, d.display())
                })?;
            }
            let header = plan
                .nodes
                .iter()
                .find(|n| n.id == s.sink)
                .and_then(|n| match &n.op {
                    Op::Sink(k) => k.encoder.header(),
                    _ => None,
                })
                .unwrap_or_default();
            std::fs::write(&s.path, header).map_err(|e| {
                format!("sink `{}`: cannot create {}: {e}", s.sink, s.path.display())
            })?;
        }
    }
    let spec = CheckpointSpec {
        interval: *interval,
        dir: dir.clone(),
        // Candidates a tenth of the interval apart in event time, at most a second.
        grid: (interval.as_micros() as u64 / 10).clamp(1_000, 1_000_000),
        restored_seq,
        restored: Arc::new(restored),
        total_workers: workers * processes,
        registered: Arc::default(),
        manifest_base: base,
        sinks,
        stats: Arc::default(),
        kafka: plan
            .nodes
            .iter()
            .filter_map(|n| match &n.op {
                Op::Kafka(k) => Some(Arc::new(checkpoint::KafkaCommit::new(
                    &n.id,
                    k.client_config(),
                ))),
                _ => None,
            })
            .collect(),
    };
    Ok(Some(Prepared {
        spec: Arc::new(spec),
        tracker: Arc::default(),
        resumed: latest.map(|(s, _)| s),
    }))
}

/// After the workers are done: completes the checkpoints still in progress (the final one
/// among them), waiting for other processes' parts for up to a minute.
pub fn finish(p: &Prepared, stopped: bool) -> Result<(), String> {
    if stopped {
        // A stopped run took no final checkpoint; one in progress may still complete.
        let _ = checkpoint::coordinator::complete(&p.spec, &p.tracker);
        return Ok(());
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if checkpoint::coordinator::complete(&p.spec, &p.tracker)? {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(
                "the final checkpoint did not complete within a minute: parts are missing".into(),
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// What the summary and the report say of the run's checkpoints.
pub fn summary(plan: &Plan, p: &Prepared) -> crate::outcome::CheckpointSummary {
    let done = p.spec.stats.completed();
    let median_max = |mut v: Vec<u64>| -> (f64, f64) {
        v.sort_unstable();
        match v.len() {
            0 => (0.0, 0.0),
            n => (v[n / 2] as f64 / 1e3, v[n - 1] as f64 / 1e3),
        }
    };
    crate::outcome::CheckpointSummary {
        dir: p.spec.dir.display().to_string(),
        interval_ms: p.spec.interval.as_secs_f64() * 1e3,
        resumed_from: p.resumed,
        taken: done.len(),
        last: done.last().map(|c| c.seq),
        last_bytes: done.last().map_or(0, |c| c.bytes),
        total_bytes: p.spec.stats.part_bytes(),
        duration_ms: median_max(done.iter().map(|c| c.duration_us).collect()),
        alignment_ms: median_max(done.iter().map(|c| c.alignment_us).collect()),
        sinks: plan
            .nodes
            .iter()
            .filter_map(|n| match &n.op {
                Op::Sink(s) if s.target == SinkTarget::Null => None,
                Op::Sink(s) => Some((
                    n.id.clone(),
                    match exactly_once(&s.target) {
                        true => "exactly-once",
                        false => "at-least-once",
                    }
                    .to_string(),
                )),
                _ => None,
            })
            .collect(),
    }
}
