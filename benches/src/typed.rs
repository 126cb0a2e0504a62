//! The hand-written programs' own data: typed IoT and clickstream events from generators
//! written here, sharing no Weir types or functions. They compute the same values as Weir's
//! `generator` with the same seed and keys (tests check it field by field), so both sides see
//! the same events, but keep them as plain structs: a device is its number, a kind is an enum,
//! and nothing is formatted.

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

/// What a clickstream event is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClickKind {
    /// A page was shown.
    PageView,
    /// Something was clicked.
    Click,
    /// A product went into the cart.
    AddToCart,
    /// A purchase.
    Purchase,
}

/// The page of a clickstream event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Page {
    /// `/home`.
    Home,
    /// `/search`.
    Search,
    /// `/product/N`.
    Product(u8),
    /// `/cart`.
    Cart,
    /// `/checkout`.
    Checkout,
}

/// One typed clickstream event.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClickEvent {
    /// Its id (its index).
    pub id: u64,
    /// Event time, µs since the epoch.
    pub ts: i64,
    /// What happened.
    pub kind: ClickKind,
    /// The user's number.
    pub user: u64,
    /// The device's number (each user has two).
    pub device: u64,
    /// Where.
    pub page: Page,
}

/// Event `i` of the clickstream profile with `seed` over `users` users, at time `ts`.
#[inline]
pub fn click_event(seed: u64, users: u64, i: u64, ts: i64) -> ClickEvent {
    let h = mix(seed ^ mix(i.wrapping_add(0x9E37_79B9_7F4A_7C15)));
    let user = h % users.max(1);
    let h2 = mix(h);
    let kind = match (h >> 32) % 100 {
        0..=69 => ClickKind::PageView,
        70..=89 => ClickKind::Click,
        90..=96 => ClickKind::AddToCart,
        _ => ClickKind::Purchase,
    };
    let page = match h2 % 5 {
        0 => Page::Home,
        1 => Page::Search,
        2 => Page::Product(((h2 >> 8) % 100) as u8),
        3 => Page::Cart,
        _ => Page::Checkout,
    };
    ClickEvent {
        id: i,
        ts,
        kind,
        user,
        device: user * 2 + (h2 >> 40) % 2,
        page,
    }
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

    /// The typed clickstream events are Weir's, field for field.
    #[test]
    fn the_same_clicks_as_weirs_generator() {
        let spec = GeneratorSpec {
            seed: 42,
            users: 5000,
            ..GeneratorSpec::new(Profile::Clickstream)
        };
        let schema = Profile::Clickstream.schema();
        let at = |f: &str| schema.index_of(f).expect("a field");
        let mut kinds = std::collections::HashSet::new();
        for i in 0..20_000 {
            let w = spec.event(i, START + i as i64).values;
            let t = click_event(42, 5000, i, START + i as i64);
            kinds.insert(format!("{:?}", t.kind));
            assert_eq!(w[at("id")], Value::U64(t.id));
            assert_eq!(w[at("ts")], Value::Ts(t.ts));
            let kind = match t.kind {
                ClickKind::PageView => "page_view",
                ClickKind::Click => "click",
                ClickKind::AddToCart => "add_to_cart",
                ClickKind::Purchase => "purchase",
            };
            assert_eq!(w[at("event")], Value::Str(kind.into()));
            assert_eq!(
                w[at("user_id")],
                Value::Str(format!("user-{}", t.user).into())
            );
            assert_eq!(
                w[at("device_id")],
                Value::Str(format!("dev-{}", t.device).into())
            );
            let page = match t.page {
                Page::Home => "/home".to_string(),
                Page::Search => "/search".to_string(),
                Page::Product(n) => format!("/product/{n}"),
                Page::Cart => "/cart".to_string(),
                Page::Checkout => "/checkout".to_string(),
            };
            assert_eq!(w[at("page")], Value::Str(page.into()));
        }
        assert_eq!(kinds.len(), 4, "every kind of event appears");
    }
}
