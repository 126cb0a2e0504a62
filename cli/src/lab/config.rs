//! The configurations to compare: execution modes and offered rates, as given on the command line.

use std::time::Duration;

/// An execution mode to compare: `continuous`, or `micro-batch` with an interval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModeSpec {
    /// `continuous` or `micro-batch`.
    pub mode: String,
    /// The micro-batch interval as given (`100ms`).
    pub interval: Option<String>,
}

impl ModeSpec {
    /// How the mode is shown.
    pub fn label(&self) -> String {
        match &self.interval {
            Some(iv) => format!("{} {iv}", self.mode),
            None => self.mode.clone(),
        }
    }

    /// The interval, if any.
    pub fn interval(&self) -> Option<Duration> {
        self.interval
            .as_deref()
            .and_then(|i| humantime::parse_duration(i).ok())
    }
}

/// Parses `continuous,micro-batch:100ms,micro-batch:1s`.
pub fn parse_modes(s: &str) -> Result<Vec<ModeSpec>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(|m| {
            let (mode, interval) = match m.split_once(':') {
                Some((a, b)) => (a.trim(), Some(b.trim().to_string())),
                None => (m, None),
            };
            match (mode, &interval) {
                ("continuous", None) => {}
                ("continuous", Some(_)) => {
                    return Err(format!(
                        "`{m}`: continuous mode has no interval; write `continuous`"
                    ))
                }
                ("micro-batch", Some(iv)) => {
                    let d = weir_engine::components::parse_duration(iv).map_err(|e| {
                        format!("`{m}`: `{iv}` is not a duration ({e}); write micro-batch:100ms")
                    })?;
                    if d < Duration::from_millis(1) {
                        return Err(format!("`{m}`: the interval must be at least 1ms"));
                    }
                }
                ("micro-batch", None) => {}
                _ => {
                    return Err(format!(
                        "`{m}` is not a mode: use continuous, micro-batch or micro-batch:INTERVAL (such as micro-batch:100ms)"
                    ))
                }
            }
            Ok(ModeSpec {
                mode: mode.to_string(),
                interval,
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .and_then(|v| {
            if v.is_empty() {
                Err("no mode given: use continuous, micro-batch:100ms, ...".into())
            } else {
                Ok(v)
            }
        })
}

/// Parses an event rate: `50000`, `100k`, `1m` / `1M` (millions), `2.5g`.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1e3),
        Some((i, 'm' | 'M')) => (&t[..i], 1e6),
        Some((i, 'g' | 'G')) => (&t[..i], 1e9),
        _ => (t, 1.0),
    };
    match num.trim().replace('_', "").parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x * mult),
        _ => Err(format!(
            "`{s}` is not an event rate: write events per second, such as 50000, 100k or 1m"
        )),
    }
}

/// Shows a rate compactly: `100k`, `1.5M`.
pub fn short_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{}M", trim_float(r / 1e6))
    } else if r >= 1e3 {
        format!("{}k", trim_float(r / 1e3))
    } else {
        trim_float(r)
    }
}

/// `x` rounded to `digits` significant digits.
pub(crate) fn round_significant(x: f64, digits: i32) -> f64 {
    if x <= 0.0 {
        return x;
    }
    let scale = 10f64.powi(digits - 1 - x.log10().floor() as i32);
    (x * scale).round() / scale
}

pub(crate) fn trim_float(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}
