//! The IoT profile: what an event is made of, and two ways to write it — field by field (a row,
//! or any [`EventOut`]) and a chunk at a time, straight into column buffers.
//!
//! Every field is a function of an event's [`Draw`] (its device and two hashes of its index), so
//! both writers share the same functions and differ only in how they lay values out. The
//! column writer makes a whole chunk in one pass over its events, writing each event's values
//! straight into the buffers of the columns that are filled (nulls as bitmaps), and does not
//! compute a field nothing downstream reads: this is most of what the generator costs, so it
//! is where the generator is fast.
//!
//! ```
//! use weir_operators::generator::{GeneratorSpec, Profile};
//!
//! let spec = GeneratorSpec { devices: 10, ..GeneratorSpec::new(Profile::Iot) };
//! let e = spec.event(0, 0);
//! let kind = e.values[2].as_str().unwrap();
//! assert!(["reading", "status", "alarm"].contains(&kind));
//! assert!(e.values[3].as_str().unwrap().starts_with("dev-0000"));
//! ```

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray, UInt64Array,
};
use arrow::buffer::{BooleanBuffer, Buffer, NullBuffer};
use arrow::datatypes::SchemaRef;

use super::{hundredths, mix, unit, EventOut, GeneratorSpec, Names};
use crate::chunk::{string_array, Chunk, NullColumns, Strings};
use crate::value::Micros;

const KINDS: [&str; 3] = ["reading", "status", "alarm"];
const ALARMS: [&str; 4] = ["overheat", "low_battery", "tamper", "sensor_fault"];
const SEVERITY: [&str; 4] = ["low", "medium", "high", "critical"];

/// The random draws an IoT event is made of.
#[derive(Clone, Copy, Debug)]
struct Draw {
    device: u64,
    /// 0..100: below 90 a reading, below 97 a status update, else an alarm.
    roll: u64,
    h2: u64,
    /// Degrees added to the device's readings now: 60 while it overheats
    /// ([`Anomalies`](super::Anomalies)), else 0.
    boost: f64,
}

impl Draw {
    #[inline]
    fn new(spec: &GeneratorSpec, i: u64) -> Draw {
        let h = mix(spec.seed ^ mix(i.wrapping_add(0x9E37_79B9_7F4A_7C15)));
        Draw {
            device: h % spec.devices.max(1),
            roll: (h >> 32) % 100,
            h2: mix(h),
            boost: 0.0,
        }
    }

    /// Applies the spec's [`Anomalies`](super::Anomalies) to event `i`: called only when it has
    /// some, so events of a well-behaved generator do not pay for them.
    #[inline(never)]
    fn misbehave(mut self, spec: &GeneratorSpec, i: u64) -> Draw {
        let Some(a) = &spec.anomalies else {
            return self;
        };
        let quarter = (i / (a.cycle / 4).max(1)) % 4;
        let (hot, silent) = (a.overheat, a.overheat + a.silent);
        if quarter == 1 && self.device < hot {
            self.boost = 60.0;
        }
        if quarter == 2 && (hot..silent).contains(&self.device) && spec.devices > silent {
            // A silent device's event goes to one of the devices that report.
            self.device = silent + (self.h2 >> 40) % (spec.devices - silent);
        }
        self
    }

    #[inline]
    fn reading(self) -> bool {
        self.roll < 90
    }

    #[inline]
    fn status(self) -> bool {
        (90..97).contains(&self.roll)
    }

    #[inline]
    fn alarm(self) -> bool {
        self.roll >= 97
    }

    /// 0 for a reading, 1 for a status update, 2 for an alarm (an index into [`KINDS`]).
    #[inline]
    fn class(self) -> usize {
        (self.roll >= 90) as usize + (self.roll >= 97) as usize
    }

    #[inline]
    fn kind(self) -> &'static str {
        KINDS[self.class()]
    }

    /// Readings jitter ±5 °C around their device's `base` (60 °C above it while it overheats).
    #[inline]
    fn temperature(self, base: f64) -> f64 {
        hundredths(base + self.boost - 5.0 + unit(self.h2) * 10.0)
    }

    #[inline]
    fn humidity(self) -> f64 {
        hundredths(20.0 + unit(self.h2 >> 16) * 60.0)
    }

    #[inline]
    fn pressure(self) -> f64 {
        hundredths(980.0 + unit(self.h2 >> 32) * 60.0)
    }

    #[inline]
    fn online(self) -> &'static str {
        if self.h2.is_multiple_of(10) {
            "offline"
        } else {
            "online"
        }
    }

    #[inline]
    fn battery(self) -> i64 {
        ((self.h2 >> 8) % 101) as i64
    }

    #[inline]
    fn alarm_name(self) -> &'static str {
        ALARMS[(self.h2 % 4) as usize]
    }

    #[inline]
    fn severity(self) -> &'static str {
        SEVERITY[((self.h2 >> 8) % 4) as usize]
    }
}

/// Each device's baseline temperature (15..35 °C).
#[inline]
fn base(spec: &GeneratorSpec, device: u64) -> f64 {
    15.0 + (mix(spec.seed ^ device) % 200) as f64 / 10.0
}

/// Writes IoT event `i`, with event time `ts`, field by field to `out`.
pub(super) fn write(
    spec: &GeneratorSpec,
    i: u64,
    ts: Micros,
    out: &mut impl EventOut,
    names: &mut Names,
) {
    let mut d = Draw::new(spec, i);
    if spec.anomalies.is_some() {
        d = d.misbehave(spec, i);
    }
    out.u64(Some(i));
    out.ts(ts);
    out.str(Some(d.kind()));
    out.str(Some(names.device(d.device)));
    if d.reading() {
        out.f64_with(|| d.temperature(base(spec, d.device)));
        out.f64_with(|| d.humidity());
        out.f64_with(|| d.pressure());
    } else {
        out.f64(None);
        out.f64(None);
        out.f64(None);
    }
    if d.status() {
        out.str(Some(d.online()));
        out.i64(Some(d.battery()));
    } else {
        out.str(None);
        out.i64(None);
    }
    if d.alarm() {
        out.str(Some(d.alarm_name()));
        out.str(Some(d.severity()));
    } else {
        out.str(None);
        out.str(None);
    }
}

/// IoT events a chunk at a time: [`push`](Columns::push) takes each event's index, time and
/// metadata, [`finish`](Columns::finish) makes the chunk in one pass.
pub(super) struct Columns {
    schema: SchemaRef,
    /// Which fields to fill; the others are NULL columns.
    used: [bool; 11],
    idx: Vec<u64>,
    ts: Vec<Micros>,
    ingest: Vec<i64>,
    watermark: Vec<u64>,
    /// Baseline temperatures of the first devices, made once.
    bases: Vec<f64>,
    /// The names of the first devices (those of up to 16 bytes), made once.
    devices: Vec<Short>,
    kinds: [Short; 3],
    /// The NULL columns of the fields not filled, made once.
    nulls: NullColumns,
}

impl Columns {
    /// A writer of IoT chunks laid out by `schema`, filling the fields `used` (`None`: all),
    /// with device names from `names`.
    pub(super) fn new(
        spec: &GeneratorSpec,
        schema: SchemaRef,
        used: Option<&[bool]>,
        names: &Names,
    ) -> Columns {
        let mut keep = [true; 11];
        if let Some(u) = used {
            keep.iter_mut().zip(u).for_each(|(k, u)| *k = *u);
        }
        Columns {
            schema,
            used: keep,
            idx: Vec::new(),
            ts: Vec::new(),
            ingest: Vec::new(),
            watermark: Vec::new(),
            bases: (0..spec.devices.min(Names::CACHED))
                .map(|d| base(spec, d))
                .collect(),
            nulls: NullColumns::default(),
            devices: names.devices.iter().map_while(|d| Short::new(d)).collect(),
            kinds: KINDS.map(|k| Short::new(k).expect("short kind names")),
        }
    }

    /// Adds event `i` with event time `ts` and its metadata.
    #[inline]
    pub(super) fn push(&mut self, i: u64, ts: Micros, ingest: i64, watermark: u64) {
        self.idx.push(i);
        self.ts.push(ts);
        self.ingest.push(ingest);
        self.watermark.push(watermark);
    }

    /// Adds `n` events `first, first + step, ...` with event times `t0, t0 + dt, ...` (which
    /// the caller checked do not overflow), all ingested at `ingest`, the watermark of each
    /// a function of its time; returns the last event time.
    pub(super) fn push_run(
        &mut self,
        first: u64,
        step: u64,
        n: usize,
        (t0, dt): (Micros, Micros),
        ingest: i64,
        watermark: impl Fn(Micros) -> u64,
    ) -> Micros {
        let at = self.ts.len();
        self.idx.extend((0..n as u64).map(|k| first + k * step));
        self.ts.extend((0..n as i64).map(|k| t0 + k * dt));
        self.ingest.extend(std::iter::repeat_n(ingest, n));
        self.watermark
            .extend(self.ts[at..].iter().map(|&t| watermark(t)));
        self.ts.last().copied().unwrap_or(t0)
    }

    /// The events pushed since the last call, as one chunk (`None` if there are none).
    pub(super) fn finish(&mut self, spec: &GeneratorSpec, names: &mut Names) -> Option<Chunk> {
        let n = self.idx.len();
        if n == 0 {
            return None;
        }
        let used = self.used;
        // One pass over the events: each event's draw is made once and written to every
        // column that is filled; nothing per event is kept besides the columns.
        let mut kind = used[2].then(|| ShortStrings::new(n));
        let mut device = used[3].then(|| ShortStrings::new(n));
        let mut floats: [Option<Vec<f64>>; 3] =
            std::array::from_fn(|k| used[4 + k].then(|| Vec::with_capacity(n)));
        let mut status = used[7].then(|| Strings::with_capacity(n, n * 7));
        let mut battery = used[8].then(|| Vec::with_capacity(n));
        let mut alarm = used[9].then(|| Strings::with_capacity(n, n));
        let mut severity = used[10].then(|| Strings::with_capacity(n, n));
        let mut readings = Bits::new(used[4] || used[5] || used[6], n);
        let mut statuses = Bits::new(used[8], n);
        let misbehaving = spec.anomalies.is_some();
        for &i in &self.idx {
            let mut d = Draw::new(spec, i);
            if misbehaving {
                d = d.misbehave(spec, i);
            }
            if let Some(k) = &mut kind {
                k.push(&self.kinds[d.class()]);
            }
            if let Some(out) = &mut device {
                match self.devices.get(d.device as usize) {
                    Some(s) => out.push(s),
                    None => out.push_str(names.device(d.device)),
                }
            }
            let reading = d.reading();
            readings.push(reading);
            if let Some(t) = &mut floats[0] {
                t.push(if reading {
                    let b = match self.bases.get(d.device as usize) {
                        Some(b) => *b,
                        None => base(spec, d.device),
                    };
                    d.temperature(b)
                } else {
                    0.0
                });
            }
            if let Some(h) = &mut floats[1] {
                h.push(if reading { d.humidity() } else { 0.0 });
            }
            if let Some(p) = &mut floats[2] {
                p.push(if reading { d.pressure() } else { 0.0 });
            }
            statuses.push(d.status());
            if let Some(s) = &mut status {
                s.append_option(d.status().then(|| d.online()));
            }
            if let Some(b) = &mut battery {
                b.push(if d.status() { d.battery() } else { 0 });
            }
            if let Some(a) = &mut alarm {
                a.append_option(d.alarm().then(|| d.alarm_name()));
            }
            if let Some(s) = &mut severity {
                s.append_option(d.alarm().then(|| d.severity()));
            }
        }
        let readings = readings.finish();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(11);
        for field in 0..11 {
            let column: Option<ArrayRef> = match field {
                0 => used[0].then(|| {
                    let ids = std::mem::replace(&mut self.idx, Vec::with_capacity(n));
                    Arc::new(UInt64Array::from(ids)) as ArrayRef
                }),
                1 => used[1].then(|| {
                    let ts = std::mem::replace(&mut self.ts, Vec::with_capacity(n));
                    Arc::new(TimestampMicrosecondArray::from(ts).with_timezone("UTC")) as ArrayRef
                }),
                2 => kind.take().map(|k| Arc::new(k.finish(None)) as ArrayRef),
                3 => device.take().map(|d| Arc::new(d.finish(None)) as ArrayRef),
                4..=6 => floats[field - 4]
                    .take()
                    .map(|v| Arc::new(Float64Array::new(v.into(), readings.clone())) as ArrayRef),
                7 => status.take().map(|mut s| Arc::new(s.take(0)) as ArrayRef),
                8 => battery
                    .take()
                    .map(|v| Arc::new(Int64Array::new(v.into(), statuses.finish())) as ArrayRef),
                9 => alarm.take().map(|mut s| Arc::new(s.take(0)) as ArrayRef),
                _ => severity.take().map(|mut s| Arc::new(s.take(0)) as ArrayRef),
            };
            columns.push(column.unwrap_or_else(|| {
                let t = self.schema.field(field).data_type();
                self.nulls.get(field, t, n)
            }));
        }
        self.idx.clear();
        self.ts.clear();
        let chunk = Chunk::from_columns(
            &self.schema,
            columns,
            Arc::new(Int64Array::from(std::mem::replace(
                &mut self.ingest,
                Vec::with_capacity(n),
            ))),
            Arc::new(UInt64Array::from(std::mem::replace(
                &mut self.watermark,
                Vec::with_capacity(n),
            ))),
        );
        Some(chunk)
    }
}

/// A validity bitmap written a bit at a time, 64 to a word (or nothing, when not `on`).
struct Bits {
    on: bool,
    words: Vec<u64>,
    word: u64,
    len: usize,
}

impl Bits {
    fn new(on: bool, rows: usize) -> Bits {
        Bits {
            on,
            words: Vec::with_capacity(if on { rows.div_ceil(64) } else { 0 }),
            word: 0,
            len: 0,
        }
    }

    #[inline]
    fn push(&mut self, valid: bool) {
        if self.on {
            self.word |= (valid as u64) << (self.len % 64);
            self.len += 1;
            if self.len.is_multiple_of(64) {
                self.words.push(std::mem::take(&mut self.word));
            }
        }
    }

    /// The validity written (`None`: every value valid).
    fn finish(&mut self) -> Option<NullBuffer> {
        if !self.len.is_multiple_of(64) {
            self.words.push(std::mem::take(&mut self.word));
        }
        let bits = BooleanBuffer::new(
            Buffer::from_vec(std::mem::take(&mut self.words)),
            0,
            self.len,
        );
        Some(NullBuffer::new(bits)).filter(|n| n.null_count() > 0)
    }
}

/// A string of up to 16 bytes, padded with zeros to 16.
#[derive(Clone, Copy, Debug)]
struct Short {
    bytes: [u8; 16],
    len: usize,
}

impl Short {
    fn new(s: &str) -> Option<Short> {
        let mut bytes = [0; 16];
        bytes.get_mut(..s.len())?.copy_from_slice(s.as_bytes());
        Some(Short {
            bytes,
            len: s.len(),
        })
    }
}

/// A string column written mostly from [`Short`]s: each is one fixed-size 16-byte copy (no
/// call to `memcpy`), whose padding the next string overwrites.
struct ShortStrings {
    /// The strings so far are `values[..end]` (padding may follow).
    values: Vec<u8>,
    end: usize,
    offsets: Vec<i32>,
}

impl ShortStrings {
    fn new(rows: usize) -> ShortStrings {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        ShortStrings {
            values: Vec::with_capacity(rows * 12 + 16),
            end: 0,
            offsets,
        }
    }

    #[inline]
    fn push(&mut self, s: &Short) {
        self.values.truncate(self.end);
        self.values.extend_from_slice(&s.bytes);
        self.end += s.len;
        self.offsets.push(self.end as i32);
    }

    /// Any string.
    fn push_str(&mut self, s: &str) {
        self.values.truncate(self.end);
        self.values.extend_from_slice(s.as_bytes());
        self.end += s.len();
        self.offsets.push(self.end as i32);
    }

    fn finish(mut self, nulls: Option<NullBuffer>) -> StringArray {
        self.values.truncate(self.end);
        string_array(self.offsets, self.values, nulls)
    }
}
