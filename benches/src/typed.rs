//! The hand-written programs' own data: typed IoT events from a generator written here, sharing
//! no Weir types or functions. It computes the same values as Weir's `generator` with the
//! benchmarks' settings (seed, devices, `start = START`, one event per microsecond), so both
//! sides see the same events, but keeps them as plain structs: a device is its number, a kind
//! is an enum, and nothing is formatted.

use crate::START;

/// What an IoT event says.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Body {
    /// A sensor reading.
    Reading {
        /// °C.
        temperature: f64,
        /// %.
        humidity: f64,
        /// hPa.
        pressure: f64,
    },
    /// A device status update.
    Status {
        /// Online or offline.
        online: bool,
        /// Battery level, %.
        battery: i64,
    },
    /// An alarm.
    Alarm {
        /// Which alarm (0..4).
        alarm: u8,
        /// How severe (0..4).
        severity: u8,
    },
}

/// One typed IoT event.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IotEvent {
    /// Its id (its index).
    pub id: u64,
    /// Event time, µs since the epoch.
    pub ts: i64,
    /// The device's number.
    pub device: u32,
    /// What it says.
    pub body: Body,
}

#[inline]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[inline]
fn unit(h: u64) -> f64 {
    (h & 0xFFFF) as f64 / 65536.0
}

#[inline]
fn hundredths(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Event `i` of the IoT profile with `seed` over `devices` devices, at time `ts`.
#[inline]
pub fn iot_event(seed: u64, devices: u64, i: u64, ts: i64) -> IotEvent {
    let h = mix(seed ^ mix(i.wrapping_add(0x9E37_79B9_7F4A_7C15)));
    let device = h % devices.max(1);
    let roll = (h >> 32) % 100;
    let h2 = mix(h);
    let body = if roll < 90 {
        let base = 15.0 + (mix(seed ^ device) % 200) as f64 / 10.0;
        Body::Reading {
            temperature: hundredths(base - 5.0 + unit(h2) * 10.0),
            humidity: hundredths(20.0 + unit(h2 >> 16) * 60.0),
            pressure: hundredths(980.0 + unit(h2 >> 32) * 60.0),
        }
    } else if roll < 97 {
        Body::Status {
            online: !h2.is_multiple_of(10),
            battery: ((h2 >> 8) % 101) as i64,
        }
    } else {
        Body::Alarm {
            alarm: (h2 % 4) as u8,
            severity: ((h2 >> 8) % 4) as u8,
        }
    };
    IotEvent {
        id: i,
        ts,
        device: device as u32,
        body,
    }
}

/// The typed programs' source: worker `w` of `W` makes events `i ≡ w (mod W)` (seed 7), at
/// `START + i` µs, `batch` per activation.
pub fn typed_iot_source<'s>(
    scope: timely::dataflow::Scope<'s, u64>,
    events: u64,
    batch: u64,
    devices: u64,
) -> timely::dataflow::Stream<'s, u64, Vec<IotEvent>> {
    crate::indexed_source(scope, events, batch, move |i| {
        iot_event(7, devices, i, START + i as i64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_operators::generator::{GeneratorSpec, Profile};
    use weir_operators::value::Value;

    /// The typed generator's events are Weir's, field for field.
    #[test]
    fn the_same_events_as_weirs_generator() {
        let spec = GeneratorSpec {
            seed: 7,
            devices: 1000,
            ..GeneratorSpec::new(Profile::Iot)
        };
        for i in 0..20_000 {
            let w = spec.event(i, START + i as i64).values;
            let t = iot_event(7, 1000, i, START + i as i64);
            assert_eq!(w[0], Value::U64(t.id));
            assert_eq!(w[1], Value::Ts(t.ts));
            assert_eq!(w[3], Value::Str(format!("dev-{:05}", t.device).into()));
            match t.body {
                Body::Reading {
                    temperature,
                    humidity,
                    pressure,
                } => {
                    assert_eq!(w[2], Value::Str("reading".into()));
                    assert_eq!(
                        w[4..7],
                        [
                            Value::F64(temperature),
                            Value::F64(humidity),
                            Value::F64(pressure)
                        ]
                    );
                }
                Body::Status { online, battery } => {
                    assert_eq!(w[2], Value::Str("status".into()));
                    assert_eq!(
                        w[7],
                        Value::Str(if online { "online" } else { "offline" }.into())
                    );
                    assert_eq!(w[8], Value::I64(battery));
                }
                Body::Alarm { .. } => assert_eq!(w[2], Value::Str("alarm".into())),
            }
        }
    }
}
