//! Running the configurations, each in its own `weir run` process (or processes), and the
//! search for the highest rate each sustains.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use weir_engine::report::Report;

use super::config::{round_significant, ModeSpec};
use super::row::Row;

/// Runs configurations of one pipeline, each in its own `weir run` process (or processes).
pub struct Runner {
    /// The `weir` executable.
    pub exe: PathBuf,
    /// The pipeline file.
    pub pipeline: PathBuf,
    /// `--set` overrides for every run.
    pub set: Vec<String>,
    /// Warm-up and measured duration of each run.
    pub warmup: Duration,
    /// See `warmup`.
    pub duration: Duration,
    /// Where reports and logs go.
    pub out: PathBuf,
    /// Processes per run.
    pub processes: usize,
    /// When the processes run on several machines: this machine's process and the hostfile
    /// every machine shares. Each machine runs the same comparison; this one starts only its own
    /// process of each run.
    pub external: Option<(usize, PathBuf)>,
    /// The sink whose latency is compared (default: all).
    pub sink: Option<String>,
    /// Runs so far.
    pub count: usize,
}

impl Runner {
    /// Runs one configuration and returns its row. Its report is `OUT/run-NN.json`, its log
    /// (the run's standard error) `OUT/run-NN.log`.
    pub fn run(
        &mut self,
        mode: &ModeSpec,
        workers: usize,
        rate: Option<f64>,
    ) -> Result<Row, String> {
        self.count += 1;
        let stem = format!("run-{:02}", self.count);
        std::fs::create_dir_all(&self.out)
            .map_err(|e| format!("cannot create {}: {e}", self.out.display()))?;
        let mut hostfile = self.out.join(format!("{stem}.hosts"));
        if let Some((_, shared)) = &self.external {
            hostfile = shared.clone();
        } else if self.processes > 1 {
            let mut text = String::new();
            for _ in 0..self.processes {
                let port = std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .map_err(|e| format!("cannot find a free port on 127.0.0.1: {e}"))?
                    .port();
                let _ = writeln!(text, "127.0.0.1:{port}");
            }
            std::fs::write(&hostfile, text)
                .map_err(|e| format!("cannot write {}: {e}", hostfile.display()))?;
        }
        let mut children: Vec<(Child, PathBuf, PathBuf)> = Vec::new();
        // The processes of a run started here share a fresh secret, unless one is set.
        let secret = (self.processes > 1
            && self.external.is_none()
            && std::env::var_os(weir_engine::cluster::SECRET_VAR).is_none())
        .then(weir_engine::cluster::random_secret)
        .transpose()
        .map_err(|e| format!("cannot make a cluster secret: {e}"))?;
        let mine: Vec<usize> = match &self.external {
            Some((p, _)) => vec![*p],
            None => (0..self.processes).collect(),
        };
        for p in mine {
            let suffix = if self.processes > 1 {
                format!(".p{p}")
            } else {
                String::new()
            };
            let report = self.out.join(format!("{stem}{suffix}.json"));
            let log = self.out.join(format!("{stem}{suffix}.log"));
            let _ = std::fs::remove_file(&report);
            let log_file = std::fs::File::create(&log)
                .map_err(|e| format!("cannot create {}: {e}", log.display()))?;
            let mut cmd = Command::new(&self.exe);
            cmd.arg("run")
                .arg(&self.pipeline)
                .args(["--mode", &mode.mode])
                .args(["--workers", &workers.to_string()])
                .args([
                    "--warmup",
                    &humantime::format_duration(self.warmup).to_string(),
                ])
                .args([
                    "--duration",
                    &humantime::format_duration(self.duration).to_string(),
                ])
                .args(["--status-every", "0s", "--progress", "never", "--unbounded"])
                .arg("--report")
                .arg(&report);
            if let Some(iv) = &mode.interval {
                cmd.args(["--batch-interval", iv]);
            }
            if let Some(r) = rate {
                cmd.args(["--rate", &r.to_string()]);
            }
            if let Some(secret) = &secret {
                cmd.env(weir_engine::cluster::SECRET_VAR, secret);
            }
            if self.processes > 1 {
                cmd.args(["--processes", &self.processes.to_string()])
                    .args(["--process-id", &p.to_string()])
                    .arg("--hostfile")
                    .arg(&hostfile);
            }
            for s in &self.set {
                cmd.args(["--set", s]);
            }
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(log_file));
            let child = cmd
                .spawn()
                .map_err(|e| format!("cannot start {}: {e}", self.exe.display()))?;
            children.push((child, report, log));
        }
        let deadline = Instant::now() + self.warmup + self.duration + Duration::from_secs(120);
        let mut reports = Vec::new();
        let mut failure = None;
        for (mut child, report, log) in children {
            let status = loop {
                match child.try_wait() {
                    Ok(Some(s)) => break Some(s),
                    Ok(None) if Instant::now() > deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break None;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                    Err(_) => break None,
                }
            };
            let ok = status.is_some_and(|s| s.success() || s.code() == Some(130));
            if !ok && failure.is_none() {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(12).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                failure = Some(format!(
                    "the run `{} ({})` failed{}; its log {} ends:\n{}",
                    mode.label(),
                    workers,
                    status.map_or(" (timed out)".into(), |s| format!(" ({s})")),
                    log.display(),
                    tail.join("\n")
                ));
            }
            if ok {
                reports.push(Report::read(&report)?);
            }
        }
        if let Some(f) = failure {
            return Err(f);
        }
        Row::from_reports(&reports, self.sink.as_deref())
    }

    /// Searches for the highest rate `mode` on `workers` sustains: doubles from `start` until a
    /// rate is not sustainable, then bisects `steps` times between the last sustainable rate and
    /// the first that was not. Returns the sustainable row (if any rate was) and every row run.
    pub fn find_sustainable(
        &mut self,
        mode: &ModeSpec,
        workers: usize,
        start: f64,
        steps: usize,
        mut each: impl FnMut(&Row, &Result<(), String>),
    ) -> Result<(Option<Row>, Vec<Row>), String> {
        let mut tried = Vec::new();
        let (mut good, mut bad): (Option<Row>, Option<f64>) = (None, None);
        let mut rate = start;
        for _ in 0..40 {
            let row = self.run(mode, workers, Some(rate))?;
            let verdict = row.sustainable();
            each(&row, &verdict);
            tried.push(row.clone());
            if verdict.is_ok() {
                good = Some(row);
                rate *= 2.0;
            } else {
                bad = Some(rate);
                break;
            }
            if rate > 1e9 {
                break;
            }
        }
        if let Some(mut hi) = bad {
            for _ in 0..steps {
                let lo = good.as_ref().and_then(|g| g.offered).unwrap_or(hi / 4.0);
                let mid = round_significant((lo * hi).sqrt(), 2);
                if (hi - lo) / hi < 0.05 {
                    break;
                }
                let row = self.run(mode, workers, Some(mid))?;
                let verdict = row.sustainable();
                each(&row, &verdict);
                tried.push(row.clone());
                if verdict.is_ok() {
                    good = Some(row);
                } else {
                    hi = mid;
                }
            }
        }
        Ok((good, tried))
    }
}
