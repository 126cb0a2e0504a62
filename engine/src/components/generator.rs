//! `type = "generator"`: synthetic events, deterministic from a seed.

use serde::Deserialize;
use toml::Spanned;
use weir_operators::generator::{GeneratorSpec, Profile};

use super::watermark::WatermarkConfig;
use super::{Ctx, Op, Planned};
use crate::diag::Diag;

/// Generates synthetic events. Event `i` depends only on `seed` and `i`, so the same
/// configuration gives the same events on any number of workers.
///
/// Profiles: `iot` — fields `id` (u64), `ts`, `kind` ("reading", "status" or "alarm"),
/// `device_id`, `temperature`, `humidity`, `pressure` (readings), `status` ("online"/"offline"),
/// `battery` (0-100, status updates), `alarm`, `severity` (alarms); the fields a kind does not
/// have are NULL. `clickstream` — `id`, `ts`, `event` ("page_view", "click", "add_to_cart",
/// "purchase"), `user_id`, `device_id`, `page`. `nexmark` (an online auction, as in the Nexmark
/// benchmark) — `id`, `ts`, `kind` ("person", "auction" or "bid"), `person_id` (the new person,
/// the seller or the bidder), `name`, `city` (persons), `auction_id` (auctions, bids),
/// `category` (auctions), `price` (bids); in every 50 events one person registers, three
/// auctions open (by recently registered sellers) and 46 bids are placed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorConfig {
    /// Which events. "iot": fields `id` (u64), `ts`, `kind` (`reading` 90%, `status` 7%,
    /// `alarm` 3%), `device_id`, `temperature`, `humidity`, `pressure` (readings), `status`
    /// (`online`/`offline`), `battery` (0–100, status updates), `alarm`, `severity` (alarms);
    /// fields a kind lacks are NULL. "clickstream": `id`, `ts`, `event` (`page_view`, `click`,
    /// `add_to_cart`, `purchase`), `user_id`, `device_id`, `page`. "nexmark" (an online
    /// auction, as in the Nexmark benchmark): `id`, `ts`, `kind` (`person`, `auction`, `bid`),
    /// `person_id` (the new person, the seller or the bidder), `name`, `city` (persons),
    /// `auction_id` (auctions, bids), `category` (auctions), `price` (bids); in every 50
    /// events one person registers, three auctions open (by recently registered sellers) and
    /// 46 bids are placed.
    pub profile: Spanned<String>,
    /// How many events in all. Omit for an unbounded stream (stop it with Ctrl-C).
    pub events: Option<Spanned<i64>>,
    /// Offered rate in events per second across all workers, open loop: event `i` is due at
    /// `i / rate` seconds after the start, whether or not the pipeline keeps up. Omit to
    /// generate as fast as possible.
    pub rate: Option<Spanned<f64>>,
    /// Seed of the pseudo-random content (default 0).
    pub seed: Option<u64>,
    /// Number of distinct devices, for `iot` (default 100).
    pub devices: Option<Spanned<i64>>,
    /// Number of distinct users, for `clickstream` (default 1000).
    pub users: Option<Spanned<i64>>,
    /// Event time of the first event, RFC 3339 (default: when the run starts).
    pub start: Option<Spanned<String>>,
    /// Event-time distance between consecutive events, such as "10ms". With it, event times are
    /// `start + i * event_time_interval` (deterministic). Without it, an event's time is its
    /// scheduled send time (with `rate`) or the wall clock when it is generated.
    pub event_time_interval: Option<Spanned<String>>,
    /// How event time behaves: `{ max_out_of_orderness = "2s", idle_timeout = "10s" }`
    /// (default: in order, never idle). Each worker's share is a partition; the watermark of
    /// event `i` is its undisordered time minus `max_out_of_orderness`, the same on any number
    /// of workers.
    pub watermark: Option<WatermarkConfig>,
    /// Out-of-order events: each event's time is moved back by a pseudo-random amount up to
    /// this, such as "2s" (default "0s").
    pub disorder: Option<Spanned<String>>,
    /// The fraction of events made late, such as 0.01: moved back by more than `disorder` and
    /// the watermark's `max_out_of_orderness`, by up to `late_by` more (default 0).
    pub late_fraction: Option<Spanned<f64>>,
    /// How far beyond the bound late events fall, at most (default "5s").
    pub late_by: Option<Spanned<String>>,
    /// Pause to exercise idleness: `pause = { at = 50000, for = "5s" }` — when a worker
    /// reaches event index `at`, it sends nothing for `for` of processing time.
    pub pause: Option<PauseConfig>,
    /// IoT devices that misbehave on purpose, to exercise alerts:
    /// `anomalies = { overheat = 5, silent = 5, cycle = 40000 }` — in a cycle of `cycle` events
    /// (by index), during its second quarter the first `overheat` devices (`dev-00000` on) read
    /// 60 °C above their baseline, and during its third the next `silent` devices send nothing
    /// (their events go to the others). Default: every device behaves.
    pub anomalies: Option<AnomaliesConfig>,
}

/// Devices of the IoT generator that misbehave on purpose.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnomaliesConfig {
    /// How many devices overheat in each cycle's second quarter (default 0).
    pub overheat: Option<Spanned<i64>>,
    /// How many devices (after those) go silent in each cycle's third quarter (default 0).
    pub silent: Option<Spanned<i64>>,
    /// Events per cycle (default 100000).
    pub cycle: Option<Spanned<i64>>,
}

/// A generator's pause.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PauseConfig {
    /// The event index at which each worker pauses.
    pub at: Spanned<i64>,
    /// How long, such as "5s".
    #[serde(rename = "for")]
    pub length: Spanned<String>,
}

impl GeneratorConfig {
    /// Validates and compiles.
    pub fn plan(&self, ctx: &Ctx) -> Result<Planned, Vec<Diag>> {
        let mut diags = Vec::new();
        let profile = match ctx.choice("profile", &self.profile, &["iot", "clickstream", "nexmark"])
        {
            Ok(i) => [Profile::Iot, Profile::Clickstream, Profile::Nexmark][i],
            Err(d) => {
                diags.push(d);
                Profile::Iot
            }
        };
        let mut spec = GeneratorSpec::new(profile);
        let positive = |key: &str, v: &Spanned<i64>, diags: &mut Vec<Diag>| -> u64 {
            if *v.get_ref() <= 0 {
                diags.push(
                    ctx.error(format!("`{key}` must be at least 1, not {}", v.get_ref()))
                        .at(v.span())
                        .help(format!("give a positive `{key}`")),
                );
                1
            } else {
                *v.get_ref() as u64
            }
        };
        spec.events = self
            .events
            .as_ref()
            .map(|v| positive("events", v, &mut diags));
        if let Some(d) = &self.devices {
            spec.devices = positive("devices", d, &mut diags);
        }
        if let Some(u) = &self.users {
            spec.users = positive("users", u, &mut diags);
        }
        if let Some(r) = &self.rate {
            let rate = *r.get_ref();
            if !(rate.is_finite() && rate > 0.0) {
                diags.push(
                    ctx.error(format!(
                        "`rate` must be a positive number of events per second, not {rate}"
                    ))
                    .at(r.span())
                    .help("omit `rate` to generate as fast as possible"),
                );
            } else {
                spec.rate = Some(rate);
            }
        }
        spec.seed = self.seed.unwrap_or(0);
        if let Some(s) = &self.start {
            match weir_operators::time::parse_rfc3339(s.get_ref()) {
                Ok(t) => spec.start = Some(t),
                Err(e) => diags.push(
                    ctx.error(e)
                        .at(s.span())
                        .help("write `start` as RFC 3339, such as \"2026-01-01T00:00:00Z\""),
                ),
            }
        }
        if let Some(iv) = &self.event_time_interval {
            match ctx.duration("event_time_interval", iv) {
                Ok(d) if d.as_micros() == 0 => diags.push(
                    ctx.error("`event_time_interval` must be at least 1us")
                        .at(iv.span()),
                ),
                Ok(d) => spec.interval = Some(d.as_micros().min(i64::MAX as u128) as i64),
                Err(d) => diags.push(d),
            }
        }
        spec.watermark = WatermarkConfig::plan_option(self.watermark.as_ref(), ctx, &mut diags);
        let micros =
            |key: &str, v: &Spanned<String>, diags: &mut Vec<Diag>| ctx.micros(key, v, diags);
        let mut warnings = Vec::new();
        if let Some(d) = &self.disorder {
            spec.disorder = micros("disorder", d, &mut diags).unwrap_or(0);
            if spec.disorder > spec.watermark.max_out_of_orderness {
                warnings.push(
                    Diag::warning(format!(
                        "`disorder` is larger than the watermark's max_out_of_orderness ({}µs): events moved back further than that are late",
                        spec.watermark.max_out_of_orderness
                    ))
                    .component(&ctx.component)
                    .at(d.span())
                    .help(format!(
                        "to keep disordered events on time, set watermark = {{ max_out_of_orderness = \"{}\" }}",
                        d.get_ref()
                    )),
                );
            }
        }
        if let Some(f) = &self.late_fraction {
            let f0 = *f.get_ref();
            if !(0.0..=1.0).contains(&f0) {
                diags.push(
                    ctx.error(format!("`late_fraction` must be between 0 and 1, not {f0}"))
                        .at(f.span())
                        .help("a fraction of the events, such as 0.01 for 1%"),
                );
            } else {
                spec.late_fraction = f0;
            }
        }
        if let Some(l) = &self.late_by {
            match micros("late_by", l, &mut diags) {
                Some(0) => diags.push(
                    ctx.error("`late_by` must be longer than zero")
                        .at(l.span())
                        .help("such as \"5s\""),
                ),
                Some(v) => spec.late_by = v,
                None => {}
            }
        }
        if let Some(p) = &self.pause {
            let at = *p.at.get_ref();
            if at < 0 {
                diags.push(
                    ctx.error(format!("`pause.at` must be an event index, not {at}"))
                        .at(p.at.span())
                        .help("the index of the event at which each worker pauses, such as 50000"),
                );
            }
            if let Ok(d) = ctx
                .duration("pause.for", &p.length)
                .map_err(|d| diags.push(d))
            {
                spec.pause = Some((at.max(0) as u64, d));
            }
        }
        if let Some(a) = &self.anomalies {
            if profile != Profile::Iot {
                diags.push(
                    ctx.error("`anomalies` are for the iot profile")
                        .at(ctx.span.clone())
                        .help("remove `anomalies`, or use profile = \"iot\""),
                );
            }
            let count = |k: &str,
                         v: &Option<Spanned<i64>>,
                         min: i64,
                         default: i64,
                         diags: &mut Vec<Diag>| match v {
                None => default as u64,
                Some(n) if *n.get_ref() >= min => *n.get_ref() as u64,
                Some(n) => {
                    diags.push(
                        ctx.error(format!("`anomalies.{k}` must be at least {min}"))
                            .at(n.span())
                            .help(
                                "such as anomalies = { overheat = 5, silent = 5, cycle = 40000 }",
                            ),
                    );
                    0
                }
            };
            let anomalies = weir_operators::generator::Anomalies {
                overheat: count("overheat", &a.overheat, 0, 0, &mut diags),
                silent: count("silent", &a.silent, 0, 0, &mut diags),
                cycle: count("cycle", &a.cycle, 4, 100_000, &mut diags),
            };
            if anomalies.overheat + anomalies.silent >= spec.devices {
                diags.push(
                    ctx.error(format!(
                        "`anomalies` makes {} of the {} devices misbehave: some must behave",
                        anomalies.overheat + anomalies.silent,
                        spec.devices
                    ))
                    .at(ctx.span.clone())
                    .help("raise `devices`, or lower `overheat` and `silent`"),
                );
            }
            spec.anomalies = Some(anomalies);
        }
        if !diags.is_empty() {
            return Err(diags);
        }
        // Warnings travel with a successful plan.
        ctx.warn(warnings);
        Ok(Planned {
            schema: profile.schema(),
            op: Op::Generator(spec),
            dead_letters: false,
            late_schema: None,
            late_right_schema: None,
        })
    }
}
