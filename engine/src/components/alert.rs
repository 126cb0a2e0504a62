//! `[transforms.ID] type = "alert"`: per-key alert rules over event time.

use std::sync::Arc;

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;
use weir_operators::alert::{AlertSpec, Rule, FIXED};
use weir_operators::late::LatePolicy;
use weir_operators::schema::Schema;
use weir_operators::value::FieldType;

use super::{Ctx, Op, Planned};
use crate::diag::Diag;

/// Fires and resolves alerts per key, by one rule over event time: a `condition` that has
/// held `for` a while, a key's absence (`absent_for`), or a `count` of records `within` a span.
/// Each key's records are taken in event-time order once the watermark passes them, so a replay
/// gives the live run's alerts on any number of workers. Each `firing` and `resolved` record
/// holds the `key` fields, `alert` (this component's id), `state`, `severity`, `started_at`
/// (when the episode began), `at` (when it fired or resolved: the record's event time), then
/// the `labels`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertConfig {
    /// The fields that make a key, each with its own alert, such as `["device_id"]` (default:
    /// none, one alert for the whole stream).
    pub key: Option<Spanned<Vec<Spanned<String>>>>,
    /// The condition rule: a SQL condition over each record, such as `"temperature > 80"`; the
    /// alert fires when it has held on every record of the key for `for`.
    pub condition: Option<Spanned<String>>,
    /// How long the condition must hold before the alert fires, such as "30s" (default "0s": at
    /// its first record). The alert fires at the condition's first record plus `for`.
    #[serde(rename = "for")]
    pub for_: Option<Spanned<String>>,
    /// A condition that resolves the alert, such as `"temperature < 75"` (hysteresis; default:
    /// the condition being false).
    pub clear: Option<Spanned<String>>,
    /// How long `clear` (or the condition's falsehood) must hold before the alert resolves
    /// (default "0s").
    pub clear_for: Option<Spanned<String>>,
    /// The absence rule: fires when a key has had no record for this long of event time, such
    /// as "60s" (a device that stopped reporting), at its last record's time plus this; resolves
    /// at its next record. Only keys seen at least once can be missed.
    pub absent_for: Option<Spanned<String>>,
    /// The count rule: fires when at least this many records of a key (those the `condition`
    /// holds for, if one is given) fall within `within`; resolves when fewer do.
    pub count: Option<Spanned<i64>>,
    /// The span of the count rule, such as "1m".
    pub within: Option<Spanned<String>>,
    /// After an alert resolves, how long before the key's alert may fire again, such as "5m"
    /// (default "0s"); an episode that would fire sooner makes no records.
    pub cooldown: Option<Spanned<String>>,
    /// The severity every record of this alert carries (default "warning").
    pub severity: Option<Spanned<String>>,
    /// Fields computed from the key's latest record when the alert fires or resolves:
    /// `labels = { temperature = "temperature", site = "upper(site)" }`.
    pub labels: Option<Spanned<IndexMap<String, Spanned<String>>>>,
    /// What happens to a late record (one behind its partition's watermark): "dead-letter"
    /// (default), "drop", or "side-output" (to the output `ID.late`).
    pub late: Option<Spanned<String>>,
}

impl AlertConfig {
    /// Validates and compiles.
    pub fn plan(&self, ctx: &Ctx, input: &Schema) -> Result<Planned, Vec<Diag>> {
        let mut diags = Vec::new();
        if input.time.is_none() {
            return Err(vec![ctx
                .error("the input has no event-time field, and alerts follow event time")
                .at(ctx.span.clone())
                .help("alert on a stream that keeps its timestamp (a map that drops it cannot feed an alert)")]);
        }
        let key = ctx.key_fields(
            "key",
            self.key.as_ref(),
            input,
            "alerts cannot be keyed by",
            &mut diags,
        );
        let micros = |k: &str, v: &Option<Spanned<String>>, diags: &mut Vec<Diag>| match v {
            Some(v) => ctx.micros(k, v, diags),
            None => Some(0),
        };
        let bool_expr =
            |k: &str, v: &Spanned<String>, diags: &mut Vec<Diag>| match ctx.expr(k, v, input) {
                Ok(e) if matches!(e.output_type(), Some(FieldType::Bool) | None) => Some(e),
                Ok(e) => {
                    diags.push(
                        ctx.error(format!(
                            "`{k}` must be true or false, but it is {}",
                            e.output_type().map_or("null", |t| t.name())
                        ))
                        .at(v.span())
                        .help("compare the value, such as `temperature > 80`"),
                    );
                    None
                }
                Err(d) => {
                    diags.push(d);
                    None
                }
            };
        // Which rule: exactly one.
        let rules: Vec<&str> = [
            (self.count.is_some(), "count"),
            (self.absent_for.is_some(), "absent_for"),
            (
                self.condition.is_some() && self.count.is_none(),
                "condition",
            ),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| *n)
        .collect();
        let only = |what: &str,
                    keys: &[(&str, bool, Option<std::ops::Range<usize>>)],
                    diags: &mut Vec<Diag>| {
            for (k, given, span) in keys {
                if *given {
                    diags.push(
                        ctx.error(format!("`{k}` belongs to the condition rule, not {what}"))
                            .at(span.clone().unwrap_or(ctx.span.clone()))
                            .help(format!("remove `{k}`")),
                    );
                }
            }
        };
        let cond_keys = [
            (
                "for",
                self.for_.is_some(),
                self.for_.as_ref().map(|v| v.span()),
            ),
            (
                "clear",
                self.clear.is_some(),
                self.clear.as_ref().map(|v| v.span()),
            ),
            (
                "clear_for",
                self.clear_for.is_some(),
                self.clear_for.as_ref().map(|v| v.span()),
            ),
        ];
        let rule = match rules.as_slice() {
            ["condition"] => {
                let condition = self
                    .condition
                    .as_ref()
                    .and_then(|c| bool_expr("condition", c, &mut diags));
                let clear = self
                    .clear
                    .as_ref()
                    .map(|c| bool_expr("clear", c, &mut diags));
                let for_ = micros("for", &self.for_, &mut diags);
                let clear_for = micros("clear_for", &self.clear_for, &mut diags);
                if let Some(w) = &self.within {
                    diags.push(
                        ctx.error("`within` belongs to the count rule")
                            .at(w.span())
                            .help("give `count` too, or remove `within`"),
                    );
                }
                match (condition, clear, for_, clear_for) {
                    (Some(condition), None, Some(for_), Some(clear_for)) => Some(Rule::Condition {
                        condition,
                        for_,
                        clear: None,
                        clear_for,
                    }),
                    (Some(condition), Some(Some(clear)), Some(for_), Some(clear_for)) => {
                        Some(Rule::Condition {
                            condition,
                            for_,
                            clear: Some(clear),
                            clear_for,
                        })
                    }
                    _ => None,
                }
            }
            ["absent_for"] => {
                only("the absence rule", &cond_keys, &mut diags);
                match micros("absent_for", &self.absent_for, &mut diags) {
                    Some(after) if after > 0 => Some(Rule::Absent { after }),
                    Some(_) => {
                        diags.push(
                            ctx.error("`absent_for` must be longer than zero")
                                .at(self.absent_for.as_ref().expect("given").span())
                                .help("such as \"60s\""),
                        );
                        None
                    }
                    None => None,
                }
            }
            ["count"] => {
                only("the count rule", &cond_keys, &mut diags);
                let count = self.count.as_ref().expect("given");
                let condition = self
                    .condition
                    .as_ref()
                    .map(|c| bool_expr("condition", c, &mut diags));
                let within = match &self.within {
                    Some(w) => ctx
                        .micros("within", w, &mut diags)
                        .filter(|&w| w > 0)
                        .or_else(|| {
                            diags.push(
                                ctx.error("`within` must be longer than zero")
                                    .at(w.span())
                                    .help("such as \"1m\""),
                            );
                            None
                        }),
                    None => {
                        diags.push(ctx.error("the count rule needs `within`").at(count.span()).help("such as count = 5 with within = \"1m\": five records within a minute"));
                        None
                    }
                };
                if *count.get_ref() < 1 {
                    diags.push(
                        ctx.error("`count` must be at least 1")
                            .at(count.span())
                            .help("such as count = 5"),
                    );
                }
                match (condition, within) {
                    (Some(None), _) | (_, None) => None,
                    _ if *count.get_ref() < 1 => None,
                    (condition, Some(within)) => Some(Rule::Count {
                        condition: condition.flatten(),
                        count: *count.get_ref() as u64,
                        within,
                    }),
                }
            }
            [] => {
                diags.push(
                    ctx.error("an alert needs a rule")
                        .at(ctx.span.clone())
                        .help(
                            "give `condition` (with `for`), `absent_for`, or `count` with `within`",
                        ),
                );
                None
            }
            _ => {
                diags.push(
                    ctx.error(format!(
                        "an alert has one rule, but this one has {}",
                        rules
                            .iter()
                            .map(|r| format!("`{r}`"))
                            .collect::<Vec<_>>()
                            .join(" and ")
                    ))
                    .at(ctx.span.clone())
                    .help("make one alert per rule (they can read the same input)"),
                );
                None
            }
        };
        let cooldown = micros("cooldown", &self.cooldown, &mut diags);
        let mut labels = Vec::new();
        let mut label_names = Vec::new();
        let taken: Vec<String> = key
            .iter()
            .map(|&k| input.fields[k].name.to_string())
            .chain(FIXED.iter().map(|(n, _)| n.to_string()))
            .collect();
        for (name, text) in self.labels.iter().flat_map(|l| l.get_ref()) {
            if taken.contains(name) {
                diags.push(
                    ctx.error(format!(
                        "the label `{name}` has the name of a field alert records already have"
                    ))
                    .at(text.span())
                    .help(format!(
                        "alert records hold {}; name the label otherwise",
                        taken.join(", ")
                    )),
                );
                continue;
            }
            match ctx.expr(&format!("labels.{name}"), text, input) {
                Ok(e) if matches!(e.output_type(), Some(FieldType::List(_))) => diags.push(
                    ctx.error(format!("the label `{name}` is a list"))
                        .at(text.span())
                        .help("label with an element, such as tags[1], or cardinality(tags)"),
                ),
                Ok(e) => {
                    labels.push(e);
                    label_names.push(name.clone());
                }
                Err(d) => diags.push(d),
            }
        }
        let late = ctx.late_policy(self.late.as_ref(), &mut diags);
        let (Some(rule), Some(cooldown), Some(late), true) =
            (rule, cooldown, late, diags.is_empty())
        else {
            return Err(diags);
        };
        let severity = self
            .severity
            .as_ref()
            .map_or("warning", |s| s.get_ref().as_str());
        let spec =
            AlertSpec::new(&ctx.id, input, key, rule, cooldown, severity, labels).with_late(late);
        let schema = spec.output_schema(input, &label_names);
        Ok(Planned {
            op: Op::Alert(Arc::new(spec)),
            schema,
            dead_letters: true,
            late_schema: (late == LatePolicy::SideOutput).then(|| input.clone()),
            late_right_schema: None,
        })
    }
}
