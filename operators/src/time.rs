//! Event-time parsing and formatting: ISO 8601 as people write it (RFC 3339 and its variants),
//! strftime-style patterns, local times in an IANA time zone, and epoch seconds, milliseconds or
//! microseconds.
//!
//! ```
//! use weir_operators::time::{format_rfc3339, TimeFormat};
//!
//! let t = TimeFormat::Rfc3339.parse_str("2026-01-01T00:00:01.5Z").unwrap();
//! assert_eq!(t, 1_767_225_601_500_000);
//! assert_eq!(format_rfc3339(t), "2026-01-01T00:00:01.500Z");
//! assert_eq!(TimeFormat::EpochMs.parse_str("1000").unwrap(), 1_000_000);
//! // A space for the `T`, no zone: UTC, or the source's `timezone`.
//! assert_eq!(TimeFormat::Iso8601.parse_str("2026-01-01 00:00:01.5").unwrap(), t);
//! let seoul = TimeFormat::configure(Some("%d/%m/%Y %H:%M:%S%.f"), Some("Asia/Seoul")).unwrap();
//! assert_eq!(seoul.parse_str("01/01/2026 09:00:01.5").unwrap(), t);
//! ```

/// Microseconds since the Unix epoch (UTC).
pub type Micros = i64;

/// How a source's timestamp fields are written in its input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimeFormat {
    /// ISO 8601 as people write it (the default): RFC 3339 (`2026-01-01T12:00:00Z`,
    /// `2026-01-01T13:00:00.250+01:00`) and its variants — a space instead of the `T`, no
    /// seconds, an offset written `+0900` or `+09`, or no zone at all, which is read in
    /// [`TimeFormat::Text`]'s zone (UTC unless a `timezone` is given).
    Iso8601,
    /// RFC 3339 strictly, nothing else.
    Rfc3339,
    /// Seconds since the epoch (a number; fractions allowed).
    EpochS,
    /// Milliseconds since the epoch (a number; fractions allowed).
    EpochMs,
    /// Microseconds since the epoch (a number).
    EpochUs,
    /// A strftime-style pattern, or ISO 8601 read in a time zone.
    Text(std::sync::Arc<TextFormat>),
}

/// A textual timestamp format with a zone: a strftime-style pattern (`None`: ISO 8601 as
/// [`TimeFormat::Iso8601`] reads it) and the zone a time without an offset is in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextFormat {
    pattern: Option<String>,
    /// Whether the pattern reads an offset (`%z`, `%:z`, `%#z`).
    has_offset: bool,
    zone: chrono_tz::Tz,
}

impl TimeFormat {
    /// The named formats, in documentation order.
    pub const NAMED: [TimeFormat; 5] = [
        TimeFormat::Iso8601,
        TimeFormat::Rfc3339,
        TimeFormat::EpochS,
        TimeFormat::EpochMs,
        TimeFormat::EpochUs,
    ];

    /// The name used in pipeline files (a pattern's own text).
    pub fn name(&self) -> &str {
        match self {
            TimeFormat::Iso8601 => "iso8601",
            TimeFormat::Rfc3339 => "rfc3339",
            TimeFormat::EpochS => "epoch_s",
            TimeFormat::EpochMs => "epoch_ms",
            TimeFormat::EpochUs => "epoch_us",
            TimeFormat::Text(t) => t.pattern.as_deref().unwrap_or("iso8601"),
        }
    }

    /// Parses a format name.
    pub fn parse_name(name: &str) -> Option<TimeFormat> {
        TimeFormat::NAMED.into_iter().find(|f| f.name() == name)
    }

    /// The format a source's `timestamp_format` and `timezone` describe: a name of
    /// [`TimeFormat::NAMED`] or a strftime-style pattern (anything with a `%`), and an IANA zone
    /// name for times written without an offset. The error says what is wrong.
    pub fn configure(format: Option<&str>, zone: Option<&str>) -> Result<TimeFormat, String> {
        let tz = zone.map(TimeFormat::zone).transpose()?;
        TimeFormat::configure_in(format, tz)
    }

    /// An IANA time zone by name; the error says what is wrong.
    pub fn zone(name: &str) -> Result<chrono_tz::Tz, String> {
        name.parse::<chrono_tz::Tz>().map_err(|_| {
            format!("`{name}` is not an IANA time zone name (such as \"Europe/Berlin\" or \"UTC\")")
        })
    }

    /// [`configure`](Self::configure) with the zone already read ([`zone`](Self::zone)): the
    /// errors are those of `format`, alone or with a zone.
    pub fn configure_in(
        format: Option<&str>,
        tz: Option<chrono_tz::Tz>,
    ) -> Result<TimeFormat, String> {
        let named = match format {
            None => Some(TimeFormat::Iso8601),
            Some(f) if !f.contains('%') => Some(TimeFormat::parse_name(f).ok_or_else(|| {
                format!(
                    "`{f}` is not a timestamp format: use one of {}, or a strftime-style pattern such as \"%Y-%m-%d %H:%M:%S\"",
                    TimeFormat::NAMED.iter().map(|f| format!("\"{}\"", f.name())).collect::<Vec<_>>().join(", ")
                )
            })?),
            Some(_) => None,
        };
        match (named, tz) {
            (Some(f @ (TimeFormat::EpochS | TimeFormat::EpochMs | TimeFormat::EpochUs)), Some(_)) => {
                Err(format!("an epoch number has no time zone, so `timezone` does not apply to \"{}\"", f.name()))
            }
            (Some(TimeFormat::Rfc3339), Some(_)) => Err(
                "an RFC 3339 time always has its offset, so `timezone` does not apply to \"rfc3339\": use \"iso8601\" to read times without one".into(),
            ),
            (Some(TimeFormat::Iso8601), Some(zone)) => Ok(TimeFormat::Text(std::sync::Arc::new(TextFormat {
                pattern: None,
                has_offset: false,
                zone,
            }))),
            (Some(f), _) => Ok(f),
            (None, zone) => {
                let pattern = format.expect("a pattern").to_string();
                let has_offset = ["%z", "%:z", "%#z", "%::z"].iter().any(|z| pattern.contains(z));
                let t = TextFormat {
                    pattern: Some(pattern.clone()),
                    has_offset,
                    zone: zone.unwrap_or(chrono_tz::UTC),
                };
                check_pattern(&t)?;
                Ok(TimeFormat::Text(std::sync::Arc::new(t)))
            }
        }
    }

    /// Micro-seconds per unit, for the epoch formats.
    fn unit(&self) -> f64 {
        match self {
            TimeFormat::EpochS => 1e6,
            TimeFormat::EpochMs => 1e3,
            _ => 1.0,
        }
    }

    /// Parses a timestamp written as text (a date and time, or an epoch number in a CSV cell).
    pub fn parse_str(&self, text: &str) -> Result<Micros, String> {
        match self {
            TimeFormat::Rfc3339 => parse_rfc3339(text),
            TimeFormat::Iso8601 => parse_iso8601(text, &chrono_tz::UTC),
            TimeFormat::Text(t) => t.parse(text),
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
    pub fn from_i64(&self, v: i64) -> Result<Micros, String> {
        let m = match self {
            TimeFormat::EpochS => v.checked_mul(1_000_000),
            TimeFormat::EpochMs => v.checked_mul(1_000),
            TimeFormat::EpochUs => Some(v),
            _ => return Err(format!("expected {}, found a number", self.unit_name())),
        };
        m.filter(|m| (0..=MAX_MICROS).contains(m))
            .ok_or_else(|| format!("{v} {} is out of range", self.unit_name()))
    }

    /// Converts a fractional epoch value.
    pub fn from_f64(&self, v: f64) -> Result<Micros, String> {
        if !matches!(
            self,
            TimeFormat::EpochS | TimeFormat::EpochMs | TimeFormat::EpochUs
        ) {
            return Err(format!("expected {}, found a number", self.unit_name()));
        }
        let m = (v * self.unit()).round();
        if m.is_finite() && (0.0..=MAX_MICROS as f64).contains(&m) {
            Ok(m as i64)
        } else {
            Err(format!("{v} {} is out of range", self.unit_name()))
        }
    }

    fn unit_name(&self) -> String {
        match self {
            TimeFormat::Iso8601 => "an ISO 8601 time".into(),
            TimeFormat::Rfc3339 => "an RFC 3339 time".into(),
            TimeFormat::EpochS => "seconds".into(),
            TimeFormat::EpochMs => "milliseconds".into(),
            TimeFormat::EpochUs => "microseconds".into(),
            TimeFormat::Text(t) => match &t.pattern {
                Some(p) => format!("a time written \"{p}\""),
                None => "an ISO 8601 time".into(),
            },
        }
    }
}

impl TextFormat {
    fn parse(&self, text: &str) -> Result<Micros, String> {
        let Some(p) = &self.pattern else {
            return parse_iso8601(text, &self.zone);
        };
        let bad = |e: chrono::ParseError| format!("`{text}` is not a time written \"{p}\" ({e})");
        let text = text.trim();
        let m = if self.has_offset {
            chrono::DateTime::parse_from_str(text, p)
                .map_err(bad)?
                .timestamp_micros()
        } else {
            let naive = match chrono::NaiveDateTime::parse_from_str(text, p) {
                Ok(n) => n,
                // A pattern of a date alone: its midnight.
                Err(e) if e.kind() == chrono::format::ParseErrorKind::NotEnough => {
                    chrono::NaiveDate::parse_from_str(text, p)
                        .map_err(|_| bad(e))?
                        .and_time(chrono::NaiveTime::MIN)
                }
                Err(e) => return Err(bad(e)),
            };
            in_zone(naive, &self.zone)
        };
        in_range(m, text)
    }
}

/// Checks a pattern by writing a known instant with it and reading that back.
fn check_pattern(t: &TextFormat) -> Result<(), String> {
    use chrono::format::{Item, StrftimeItems};
    let p = t.pattern.as_deref().expect("a pattern");
    if StrftimeItems::new(p).any(|i| matches!(i, Item::Error)) {
        return Err(format!(
            "\"{p}\" is not a strftime-style pattern: see the README's table of `%` codes"
        ));
    }
    if p.contains("%Z") {
        return Err(format!("\"{p}\": a zone abbreviation (`%Z`) cannot be read back; use an offset (`%z`) or set `timezone`"));
    }
    let instant = chrono::DateTime::from_timestamp(1_767_323_045, 0).expect("an instant");
    let written = instant.with_timezone(&t.zone).format(p).to_string();
    match t.parse(&written) {
        Ok(_) => Ok(()),
        Err(_) => Err(format!("\"{p}\" cannot be read back (it wrote `{written}`): a timestamp pattern needs at least the year, month and day")),
    }
}

/// The instant a zone-less local time names in `zone`. A time that occurs twice (when clocks
/// go back) is the earlier one; a time that does not occur (when clocks go forward) is read
/// with the offset before the change, so it lands that much later (as `java.time` does).
fn in_zone(naive: chrono::NaiveDateTime, zone: &chrono_tz::Tz) -> Micros {
    use chrono::{LocalResult, Offset, TimeZone};
    match zone.from_local_datetime(&naive) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.timestamp_micros(),
        LocalResult::None => {
            let before = naive - chrono::Duration::days(1);
            let offset = zone.offset_from_utc_datetime(&before).fix();
            (naive - chrono::Duration::seconds(i64::from(offset.local_minus_utc())))
                .and_utc()
                .timestamp_micros()
        }
    }
}

fn in_range(m: Micros, text: &str) -> Result<Micros, String> {
    if m < 0 {
        return Err(format!(
            "`{text}` is before 1970, which Weir does not support"
        ));
    }
    if m > MAX_MICROS {
        return Err(format!("`{text}` is after the year 9999"));
    }
    Ok(m)
}

/// Parses ISO 8601 as people write it (see [`TimeFormat::Iso8601`]): RFC 3339, or a date and
/// time with `T` or a space between them, seconds and fraction optional, an offset (`Z`,
/// `+09:00`, `+0900`, `+09`) or none — then it is a local time in `zone` — or a date alone
/// (its midnight).
pub fn parse_iso8601(text: &str, zone: &chrono_tz::Tz) -> Result<Micros, String> {
    if let Some(m) = parse_utc_fast(text.as_bytes()) {
        return Ok(m);
    }
    let t = text.trim();
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(t) {
        return in_range(d.timestamp_micros(), text);
    }
    let bad = || {
        format!("`{text}` is not an ISO 8601 time (such as 2026-03-01T10:00:00Z or 2026-03-01 10:00:00)")
    };
    // One separator, `T`; a `Z` as an offset.
    let mut s = t.replacen(' ', "T", 1);
    if s.ends_with(['Z', 'z']) {
        s.pop();
        s.push_str("+00:00");
    }
    for p in ["%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M%#z"] {
        if let Ok(d) = chrono::DateTime::parse_from_str(&s, p) {
            return in_range(d.timestamp_micros(), text);
        }
    }
    for p in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(n) = chrono::NaiveDateTime::parse_from_str(&s, p) {
            return in_range(in_zone(n, zone), text);
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(&s, "%Y-%m-%d") {
        return in_range(in_zone(d.and_time(chrono::NaiveTime::MIN), zone), text);
    }
    Err(bad())
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

    /// Each timestamp style against instants computed by hand: 2026-03-01T10:00:00Z is
    /// 1,772,359,200 s (2026-01-01 is 1,767,225,600 s, then 59 days and 10 hours).
    #[test]
    fn every_style_reads_the_hand_computed_instant() {
        const T: Micros = 1_772_359_200_000_000;
        let f =
            |format: Option<&str>, zone: Option<&str>| TimeFormat::configure(format, zone).unwrap();
        let cases: Vec<(TimeFormat, &str, Micros)> = vec![
            (f(None, None), "2026-03-01T10:00:00Z", T),
            (f(None, None), "2026-03-01 10:00:00", T),
            (f(None, None), "2026-03-01 10:00", T),
            (f(None, None), "2026-03-01T10:00Z", T),
            (f(None, None), "2026-03-01T19:00:00+0900", T),
            (f(None, None), "2026-03-01T19:00+09", T),
            (f(None, None), "2026-03-01 05:00:00-05:00", T),
            (f(None, None), "2026-03-01 10:00:00.25Z", T + 250_000),
            (f(None, None), "2026-03-01 10:00:00.000001", T + 1),
            (f(None, None), "2026-03-01", T - 36_000_000_000),
            (
                f(Some("iso8601"), Some("Asia/Seoul")),
                "2026-03-01 19:00:00",
                T,
            ),
            (
                f(Some("iso8601"), Some("Asia/Seoul")),
                "2026-03-01T10:00:00Z",
                T,
            ),
            (
                f(Some("%d/%b/%Y:%H:%M:%S %z"), None),
                "01/Mar/2026:19:00:00 +0900",
                T,
            ),
            (
                f(Some("%Y-%m-%d %H:%M:%S%.f"), None),
                "2026-03-01 10:00:00.5",
                T + 500_000,
            ),
            (
                f(Some("%m/%d/%Y %I:%M %p"), Some("Asia/Seoul")),
                "03/01/2026 07:00 PM",
                T,
            ),
            (f(Some("%Y%m%d"), None), "20260301", T - 36_000_000_000),
            (f(Some("epoch_s"), None), "1772359200.25", T + 250_000),
            (f(Some("epoch_ms"), None), "1772359200250", T + 250_000),
            // New York, 2026-03-08: clocks go from 02:00 EST (-5) to 03:00 EDT (-4); 00:00Z
            // that day is 1,772,928,000 s. 02:30 does not occur: read at -5, it is 07:30Z,
            // the same instant as 03:30 EDT.
            (
                f(Some("%Y-%m-%d %H:%M:%S"), Some("America/New_York")),
                "2026-03-08 01:30:00",
                1_772_951_400_000_000,
            ),
            (
                f(Some("%Y-%m-%d %H:%M:%S"), Some("America/New_York")),
                "2026-03-08 02:30:00",
                1_772_955_000_000_000,
            ),
            (
                f(Some("%Y-%m-%d %H:%M:%S"), Some("America/New_York")),
                "2026-03-08 03:30:00",
                1_772_955_000_000_000,
            ),
            // 2026-11-01: clocks go back from 02:00 EDT to 01:00 EST; 00:00Z that day is
            // 1,793,491,200 s. 01:30 occurs twice: the earlier, EDT, is 05:30Z.
            (
                f(None, Some("America/New_York")),
                "2026-11-01 01:30:00",
                1_793_511_000_000_000,
            ),
            (
                f(None, Some("America/New_York")),
                "2026-11-01 00:30:00",
                1_793_507_400_000_000,
            ),
            (
                f(None, Some("America/New_York")),
                "2026-11-01 02:30:00",
                1_793_518_200_000_000,
            ),
        ];
        for (format, text, want) in cases {
            assert_eq!(
                format.parse_str(text),
                Ok(want),
                "{text} as {}",
                format.name()
            );
        }
    }

    #[test]
    fn bad_formats_and_times_say_what_is_wrong() {
        let err = |format: Option<&str>, zone: Option<&str>| {
            TimeFormat::configure(format, zone).unwrap_err()
        };
        assert!(err(None, Some("Mars/Olympus")).contains("IANA"));
        assert!(err(Some("epoch_ms"), Some("UTC")).contains("no time zone"));
        assert!(err(Some("rfc3339"), Some("UTC")).contains("iso8601"));
        assert!(err(Some("unix"), None).contains("strftime"));
        assert!(err(Some("%H:%M"), None).contains("year, month and day"));
        assert!(err(Some("%Y-%m-%d %Z"), None).contains("%z"));
        assert!(err(Some("%Y-%m-%d %Q"), None).contains("not a strftime"));
        let iso = TimeFormat::Iso8601;
        for bad in [
            "yesterday",
            "2026-02-30 10:00",
            "2026-03-01 25:00",
            "1969-12-31 23:59",
            "2026-03-01T10",
        ] {
            assert!(iso.parse_str(bad).is_err(), "{bad}");
        }
        // RFC 3339 stays strict.
        assert!(TimeFormat::Rfc3339
            .parse_str("2026-03-01 10:00:00")
            .is_err());
        let p = TimeFormat::configure(Some("%d/%m/%Y %H:%M"), None).unwrap();
        assert!(p
            .parse_str("2026-03-01 10:00")
            .unwrap_err()
            .contains("%d/%m/%Y %H:%M"));
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
