//! Event-time parsing and formatting: RFC 3339 and epoch seconds, milliseconds or microseconds.
//!
//! ```
//! use weir_operators::time::{format_rfc3339, TimeFormat};
//!
//! let t = TimeFormat::Rfc3339.parse_str("2026-01-01T00:00:01.5Z").unwrap();
//! assert_eq!(t, 1_767_225_601_500_000);
//! assert_eq!(format_rfc3339(t), "2026-01-01T00:00:01.500Z");
//! assert_eq!(TimeFormat::EpochMs.parse_str("1000").unwrap(), 1_000_000);
//! ```

use serde::{Deserialize, Serialize};

/// Microseconds since the Unix epoch (UTC).
pub type Micros = i64;

/// How a source's timestamp fields are written in its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimeFormat {
    /// RFC 3339 strings, such as `2026-01-01T12:00:00Z` or `2026-01-01T13:00:00.250+01:00`.
    Rfc3339,
    /// Seconds since the epoch (a number; fractions allowed).
    EpochS,
    /// Milliseconds since the epoch (a number).
    EpochMs,
    /// Microseconds since the epoch (a number).
    EpochUs,
}

impl TimeFormat {
    /// Every format, in documentation order.
    pub const ALL: [TimeFormat; 4] = [
        TimeFormat::Rfc3339,
        TimeFormat::EpochS,
        TimeFormat::EpochMs,
        TimeFormat::EpochUs,
    ];

    /// The name used in pipeline files.
    pub fn name(self) -> &'static str {
        match self {
            TimeFormat::Rfc3339 => "rfc3339",
            TimeFormat::EpochS => "epoch_s",
            TimeFormat::EpochMs => "epoch_ms",
            TimeFormat::EpochUs => "epoch_us",
        }
    }

    /// Parses a format name.
    pub fn parse_name(name: &str) -> Option<TimeFormat> {
        TimeFormat::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Micro-seconds per unit, for the epoch formats.
    fn unit(self) -> f64 {
        match self {
            TimeFormat::Rfc3339 | TimeFormat::EpochUs => 1.0,
            TimeFormat::EpochS => 1e6,
            TimeFormat::EpochMs => 1e3,
        }
    }

    /// Parses a timestamp written as text (an RFC 3339 string, or an epoch number in a CSV cell).
    pub fn parse_str(self, text: &str) -> Result<Micros, String> {
        match self {
            TimeFormat::Rfc3339 => parse_rfc3339(text),
            _ => {
                if let Ok(i) = text.parse::<i64>() {
                    self.from_i64(i)
                } else if let Ok(f) = text.parse::<f64>() {
                    self.from_f64(f)
                } else {
                    Err(format!("`{text}` is not a number of {}", self.unit_name()))
                }
            }
        }
    }

    /// Converts an integer epoch value.
    pub fn from_i64(self, v: i64) -> Result<Micros, String> {
        let m = match self {
            TimeFormat::Rfc3339 => {
                return Err("expected an RFC 3339 string, found a number".to_string())
            }
            TimeFormat::EpochS => v.checked_mul(1_000_000),
            TimeFormat::EpochMs => v.checked_mul(1_000),
            TimeFormat::EpochUs => Some(v),
        };
        m.filter(|m| (0..=MAX_MICROS).contains(m))
            .ok_or_else(|| format!("{v} {} is out of range", self.unit_name()))
    }

    /// Converts a fractional epoch value.
    pub fn from_f64(self, v: f64) -> Result<Micros, String> {
        if self == TimeFormat::Rfc3339 {
            return Err("expected an RFC 3339 string, found a number".to_string());
        }
        let m = (v * self.unit()).round();
        if m.is_finite() && (0.0..=MAX_MICROS as f64).contains(&m) {
            Ok(m as i64)
        } else {
            Err(format!("{v} {} is out of range", self.unit_name()))
        }
    }

    fn unit_name(self) -> &'static str {
        match self {
            TimeFormat::Rfc3339 => "RFC 3339",
            TimeFormat::EpochS => "seconds",
            TimeFormat::EpochMs => "milliseconds",
            TimeFormat::EpochUs => "microseconds",
        }
    }
}

/// The latest supported timestamp: the year 9999.
pub const MAX_MICROS: Micros = 253_402_300_799_999_999;

/// Parses an RFC 3339 timestamp into microseconds since the epoch. Timestamps before 1970 are
/// rejected: Weir's event time is unsigned.
pub fn parse_rfc3339(text: &str) -> Result<Micros, String> {
    if let Some(m) = parse_utc_fast(text.as_bytes()) {
        return Ok(m);
    }
    let t = chrono::DateTime::parse_from_rfc3339(text.trim())
        .map_err(|e| format!("`{text}` is not an RFC 3339 timestamp ({e})"))?;
    let m = t.timestamp_micros();
    if m < 0 {
        return Err(format!(
            "`{text}` is before 1970, which Weir does not support"
        ));
    }
    Ok(m)
}

/// The common form `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, read without chrono (about a tenth of
/// its cost); `None` for anything else, which chrono then reads (or rejects) as before. It
/// accepts only what chrono accepts, with the same value: a real date, seconds up to 59, a
/// fraction of 1 to 9 digits truncated to microseconds, and a year from 1970.
#[inline]
fn parse_utc_fast(b: &[u8]) -> Option<Micros> {
    if b.len() < 20 || !matches!(b[b.len() - 1], b'Z' | b'z') {
        return None;
    }
    let digits = |from: usize, n: usize| -> Option<u32> {
        let mut v = 0u32;
        for &c in b.get(from..from + n)? {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + u32::from(c - b'0');
        }
        Some(v)
    };
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') || b[13] != b':' {
        return None;
    }
    if b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (digits(0, 4)?, digits(5, 2)?, digits(8, 2)?);
    let (h, mi, s) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    if y < 1970 || !(1..=12).contains(&mo) || d == 0 || h > 23 || mi > 59 || s > 59 {
        return None;
    }
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if d > month_days[mo as usize - 1] {
        return None;
    }
    let end = b.len() - 1;
    let mut micros = 0u32;
    if end > 19 {
        let frac = &b[20..end];
        if b[19] != b'.' || frac.is_empty() || frac.len() > 9 {
            return None;
        }
        for (k, &c) in frac.iter().enumerate() {
            if !c.is_ascii_digit() {
                return None;
            }
            if k < 6 {
                micros = micros * 10 + u32::from(c - b'0');
            }
        }
        micros *= 10u32.pow(6u32.saturating_sub(frac.len() as u32));
    } else if end != 19 {
        return None;
    }
    let days = days_from_civil(i64::from(y), mo, d);
    let secs = days * 86_400 + i64::from(h * 3600 + mi * 60 + s);
    Some(secs * 1_000_000 + i64::from(micros))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Formats microseconds since the epoch as RFC 3339 in UTC, with milliseconds (or microseconds
/// when they are not whole).
pub fn format_rfc3339(t: Micros) -> String {
    let mut out = Vec::with_capacity(27);
    write_rfc3339(t, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// Appends `t` as RFC 3339 in UTC (as [`format_rfc3339`]) without allocating.
pub fn write_rfc3339(t: Micros, out: &mut Vec<u8>) {
    let secs = t.div_euclid(1_000_000);
    let micros = t.rem_euclid(1_000_000) as u32;
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400) as u32);
    let (y, m, d) = civil_from_days(days);
    fn pad(out: &mut Vec<u8>, v: u32, width: usize) {
        let mut buf = [b'0'; 10];
        let mut v = v;
        for i in (0..width).rev() {
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        out.extend_from_slice(&buf[..width]);
    }
    pad(out, y.clamp(0, 9999) as u32, 4);
    out.push(b'-');
    pad(out, m, 2);
    out.push(b'-');
    pad(out, d, 2);
    out.push(b'T');
    pad(out, sod / 3600, 2);
    out.push(b':');
    pad(out, sod / 60 % 60, 2);
    out.push(b':');
    pad(out, sod % 60, 2);
    out.push(b'.');
    if micros.is_multiple_of(1000) {
        pad(out, micros / 1000, 3);
    } else {
        pad(out, micros, 6);
    }
    out.push(b'Z');
}

/// (year, month, day) of a day count since 1970-01-01, in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = (z - era * 146_097) as u64;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe as i64 + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The current wall-clock time in microseconds since the epoch.
pub fn now_micros() -> Micros {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast path reads exactly what chrono reads, to the microsecond, and leaves the rest to
    /// it: random strings around the common form, compared with chrono alone.
    #[test]
    fn fast_rfc3339_agrees_with_chrono() {
        let chrono_only = |t: &str| {
            chrono::DateTime::parse_from_rfc3339(t)
                .ok()
                .map(|d| d.timestamp_micros())
                .filter(|m| *m >= 0)
        };
        let mut cases: Vec<String> = vec![
            "2026-01-01T00:00:00Z".into(),
            "2026-01-01T00:00:00.5Z".into(),
            "2026-01-01T00:00:00.123456789Z".into(),
            "2026-01-01T00:00:00.1234567891Z".into(),
            "2024-02-29T23:59:59.999999Z".into(),
            "2025-02-29T00:00:00Z".into(),
            "2026-04-31T00:00:00Z".into(),
            "2026-12-31T23:59:60Z".into(),
            "1969-12-31T23:59:59Z".into(),
            "1970-01-01T00:00:00z".into(),
            "2026-01-01t00:00:00Z".into(),
            "2026-01-01 00:00:00Z".into(),
            "2026-01-01T00:00:00.Z".into(),
            "2026-01-01T24:00:00Z".into(),
            "2026-13-01T00:00:00Z".into(),
            "2026-00-01T00:00:00Z".into(),
            "2026-01-00T00:00:00Z".into(),
            "+026-01-01T00:00:00Z".into(),
            "2026-01-01T00:00:00+00:00".into(),
            "2000-03-01T12:34:56.000001Z".into(),
            "2100-02-29T00:00:00Z".into(),
            "9999-12-31T23:59:59.999999Z".into(),
        ];
        // Random dates, times and fractions, some with a character broken.
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for _ in 0..20_000 {
            let frac = match next(4) {
                0 => String::new(),
                _ => format!(".{}", "123456789".get(..1 + next(9) as usize).unwrap()),
            };
            let mut t = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{frac}Z",
                1960 + next(200),
                next(14),
                next(33),
                next(26),
                next(62),
                next(62)
            )
            .into_bytes();
            if next(5) == 0 {
                let at = next(t.len() as u64) as usize;
                t[at] = b"0:-T.Zx9 "[next(9) as usize];
            }
            cases.push(String::from_utf8(t).unwrap());
        }
        for c in &cases {
            if let Some(m) = parse_utc_fast(c.as_bytes()) {
                assert_eq!(Some(m), chrono_only(c), "{c}");
            }
            assert_eq!(parse_rfc3339(c).ok(), chrono_only(c.trim()), "{c}");
        }
        assert!(parse_utc_fast(b"2026-01-01T00:00:00.123456789Z").is_some());
    }

    #[test]
    fn rfc3339_with_offset() {
        let a = parse_rfc3339("2026-01-01T01:00:00+01:00").unwrap();
        let b = parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
        assert_eq!(a, b);
        assert_eq!(b, 1_767_225_600_000_000);
    }

    #[test]
    fn rejects_bad_text() {
        assert!(parse_rfc3339("yesterday").is_err());
        assert!(parse_rfc3339("1960-01-01T00:00:00Z").is_err());
        assert!(TimeFormat::EpochMs.parse_str("12a").is_err());
        assert!(TimeFormat::EpochS.from_i64(i64::MAX).is_err());
        assert!(TimeFormat::EpochMs.from_f64(f64::NAN).is_err());
    }

    #[test]
    fn epoch_units() {
        assert_eq!(TimeFormat::EpochS.parse_str("1.5").unwrap(), 1_500_000);
        assert_eq!(TimeFormat::EpochUs.from_i64(7).unwrap(), 7);
        assert_eq!(format_rfc3339(1_000_001), "1970-01-01T00:00:01.000001Z");
    }

    #[test]
    fn formatting_agrees_with_chrono() {
        // Every day boundary over four centuries (leap years included), and odd instants.
        let mut t: Micros = 0;
        while t < 13_000_000_000_000_000 {
            let want = chrono::DateTime::from_timestamp_micros(t)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            assert_eq!(format_rfc3339(t), want);
            assert_eq!(parse_rfc3339(&want).unwrap(), t);
            t += 86_400_000_000 + 3_723_004_000;
        }
    }
}
