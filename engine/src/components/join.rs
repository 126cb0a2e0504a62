//! `[transforms.ID] type = "join"`: joins two inputs on equal keys, by event time.

use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;
use weir_operators::interval_join::IntervalJoinSpec;
use weir_operators::join::JoinCommon;
use weir_operators::schema::{Field, Schema};
use weir_operators::suggest::did_you_mean;
use weir_operators::temporal_join::TemporalJoinSpec;
use weir_operators::value::FieldType;
use weir_operators::window::LatePolicy;
use weir_operators::window_join::{JoinHow, WindowJoinSpec};

use super::{Ctx, Op, Planned};
use crate::diag::Diag;

/// Joins its two inputs — `inputs = ["LEFT", "RIGHT"]` — on equal keys.
/// `kind = "interval"`: a left record joins the right records with the same key whose event
/// time lies within `between` of its own; with `join = "left"`, a left record that found none is
/// emitted once, with NULL right fields, when the watermark has passed the end of its interval.
/// `kind = "window"`: records with equal keys in the same tumbling (`size`) or sliding (`size`
/// every `slide`) window are joined when the window closes; `join = "left"` or `"full"` adds
/// the rows whose key has no partner in the window. `kind = "temporal"`: the right input is a
/// versioned table (a changelog keyed by the join key) and each left record joins the version
/// valid at its event time — the right record with the largest time at or before it; with
/// `join = "left"`, left records with no version yet keep NULL right fields. Both inputs are
/// exchanged by key; stored
/// records are freed once the watermark makes them unreachable. A late record is handled by
/// `late`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinConfig {
    /// "interval", "window" or "temporal".
    pub kind: Spanned<String>,
    /// Key fields with the same name on both sides: `on = ["user_id"]`.
    pub on: Option<Spanned<Vec<Spanned<String>>>>,
    /// Key fields of the left input, when the names differ (with `right_on`, in the same order).
    pub left_on: Option<Spanned<Vec<Spanned<String>>>>,
    /// Key fields of the right input, matching `left_on` one for one.
    pub right_on: Option<Spanned<Vec<Spanned<String>>>>,
    /// "inner" (default), "left" (left outer) or, for window joins, "full" (full outer).
    pub join: Option<Spanned<String>>,
    /// Interval joins: the interval, relative to the left record's time:
    /// `between = ["-5s", "10s"]` joins right records from 5 s before to 10 s after it (both
    /// ends included).
    pub between: Option<Spanned<Vec<Spanned<String>>>>,
    /// Window joins: the window's length, such as "10s".
    pub size: Option<Spanned<String>>,
    /// Window joins: for sliding windows, how far apart they start (`size` a multiple of it).
    pub slide: Option<Spanned<String>>,
    /// Window joins: shifts window boundaries from the epoch (default "0s").
    pub offset: Option<Spanned<String>>,
    /// The output fields, as `left.FIELD` or `right.FIELD`, each optionally `AS NAME`. Default:
    /// every left field, then the right fields other than its keys, those whose names clash
    /// with a left field prefixed with `right_`. The output's event time is the left record's.
    pub select: Option<Spanned<Vec<Spanned<String>>>>,
    /// What happens to a late record: "dead-letter" (default), "drop", or "side-output" (late
    /// left records to `ID.late`, late right records to `ID.late_right`).
    pub late: Option<Spanned<String>>,
    /// The most records the join may hold in one process before it stops the run with an error
    /// naming the join (default: no limit): an interval or window join's stored records; a
    /// temporal join's current table versions and left records waiting for them. A guard
    /// against inputs that drift apart or a runaway key space: the run fails with a message
    /// instead of running out of memory.
    pub max_state: Option<Spanned<i64>>,
}

/// A field list, by name, against a schema.
fn positions(
    ctx: &Ctx,
    key: &str,
    names: &Spanned<Vec<Spanned<String>>>,
    schema: &Schema,
    side: &str,
    diags: &mut Vec<Diag>,
) -> Vec<usize> {
    let mut out = Vec::new();
    for n in names.get_ref() {
        match schema.index_of(n.get_ref()) {
            Some(p) => out.push(p),
            None => diags.push(
                ctx.error(format!(
                    "`{key}` names `{}`, which is not a field of the {side} input",
                    n.get_ref()
                ))
                .at(n.span())
                .help(match did_you_mean(n.get_ref(), schema.names()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!(
                        "the {side} input's fields are: {}",
                        schema.names().collect::<Vec<_>>().join(", ")
                    ),
                }),
            ),
        }
    }
    out
}

/// Parses a signed duration such as "-5s" into microseconds.
fn signed(ctx: &Ctx, v: &Spanned<String>, diags: &mut Vec<Diag>) -> Option<i64> {
    let text = v.get_ref().trim();
    let (neg, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r.trim()),
        None => (false, text.strip_prefix('+').unwrap_or(text).trim()),
    };
    match super::parse_duration(rest) {
        Ok(d) => {
            let us = d.as_micros().min(i64::MAX as u128) as i64;
            Some(if neg { -us } else { us })
        }
        Err(e) => {
            diags.push(
                ctx.error(format!("`{text}` is not a duration: {e}"))
                    .at(v.span())
                    .help("write the bounds as durations, negative for before the left record: between = [\"-5s\", \"10s\"]"),
            );
            None
        }
    }
}

impl JoinConfig {
    /// Validates and compiles against the left and right input schemas.
    pub fn plan(&self, ctx: &Ctx, left: &Schema, right: &Schema) -> Result<Planned, Vec<Diag>> {
        let mut diags = Vec::new();
        let kind = ctx
            .choice("kind", &self.kind, &["interval", "window", "temporal"])
            .unwrap_or_else(|d| {
                diags.push(d);
                0
            });
        let (window, temporal) = (kind == 1, kind == 2);
        // Which keys each kind takes.
        let kind_name = ["an interval", "a window", "a temporal"][kind];
        for (key, given, wanted) in [
            (
                "between",
                self.between.as_ref().map(|b| b.span()),
                kind == 0,
            ),
            ("size", self.size.as_ref().map(|v| v.span()), window),
            ("slide", self.slide.as_ref().map(|v| v.span()), window),
            ("offset", self.offset.as_ref().map(|v| v.span()), window),
        ] {
            if let (Some(span), false) = (given, wanted) {
                diags.push(
                    ctx.error(format!("{kind_name} join has no `{key}`"))
                        .at(span)
                        .help(match kind {
                            1 => "a window join takes size (and slide, offset)",
                            2 => "a temporal join takes only its keys: each left record meets the right version valid at its time",
                            _ => "an interval join takes between",
                        }),
                );
            }
        }
        for (schema, side) in [(left, "left"), (right, "right")] {
            if schema.time.is_none() {
                diags.push(
                    ctx.error(format!("the {side} input has no event-time field"))
                        .at(ctx.span.clone())
                        .help("keep the source's timestamp field in every map before the join"),
                );
            }
        }
        let (left_key, right_key) = match (&self.on, &self.left_on, &self.right_on) {
            (Some(on), None, None) => (
                positions(ctx, "on", on, left, "left", &mut diags),
                positions(ctx, "on", on, right, "right", &mut diags),
            ),
            (None, Some(l), Some(r)) => {
                if l.get_ref().len() != r.get_ref().len() {
                    diags.push(
                        ctx.error("`left_on` and `right_on` must name as many fields")
                            .at(r.span())
                            .help("pair each left key field with one right key field"),
                    );
                }
                (
                    positions(ctx, "left_on", l, left, "left", &mut diags),
                    positions(ctx, "right_on", r, right, "right", &mut diags),
                )
            }
            _ => {
                diags.push(
                    ctx.error("say what to join on: `on`, or both `left_on` and `right_on`")
                        .at(ctx.span.clone())
                        .help("on = [\"user_id\"] when the key has the same name on both sides"),
                );
                (Vec::new(), Vec::new())
            }
        };
        for (&l, &r) in left_key.iter().zip(&right_key) {
            if left.fields[l].ty != right.fields[r].ty {
                diags.push(
                    ctx.error(format!(
                        "the key fields `{}` ({}) and `{}` ({}) have different types",
                        left.fields[l].name,
                        left.fields[l].ty,
                        right.fields[r].name,
                        right.fields[r].ty
                    ))
                    .at(ctx.span.clone())
                    .help("join fields of the same type; cast one side with a map first"),
                );
            }
        }
        let how = match &self.join {
            None => JoinHow::Inner,
            Some(j) => {
                let choices: &[&str] = if window {
                    &["inner", "left", "full"]
                } else {
                    &["inner", "left"]
                };
                match ctx.choice("join", j, choices) {
                    Ok(1) => JoinHow::Left,
                    Ok(2) => JoinHow::Full,
                    Ok(_) => JoinHow::Inner,
                    Err(d) => {
                        diags.push(d);
                        JoinHow::Inner
                    }
                }
            }
        };
        let (mut lower, mut upper) = (0, 0);
        let empty = Spanned::new(0..0, Vec::new());
        let between = match (&self.between, kind == 0) {
            (Some(b), _) => b,
            (None, false) => &empty,
            (None, true) => {
                diags.push(
                    ctx.error("an interval join needs `between`")
                        .at(ctx.span.clone())
                        .help("between = [\"-5s\", \"10s\"]: from 5 s before the left record to 10 s after"),
                );
                &empty
            }
        };
        match between.get_ref().as_slice() {
            _ if kind != 0 || self.between.is_none() => {}
            [a, b] => {
                lower = signed(ctx, a, &mut diags).unwrap_or(0);
                upper = signed(ctx, b, &mut diags).unwrap_or(0);
                if lower > upper {
                    diags.push(
                        ctx.error("the interval's start is after its end")
                            .at(between.span())
                            .help("write the earlier bound first: between = [\"-5s\", \"10s\"]"),
                    );
                }
            }
            _ => diags.push(
                ctx.error("`between` takes two bounds")
                    .at(between.span())
                    .help(
                    "between = [\"-5s\", \"10s\"]: from 5 s before the left record to 10 s after",
                ),
            ),
        }
        let (mut size, mut slide, mut offset) = (0, 0, 0);
        if window {
            match &self.size {
                None => diags.push(
                    ctx.error("a window join needs `size`")
                        .at(ctx.span.clone())
                        .help("size = \"10s\", say"),
                ),
                Some(v) => size = ctx.micros("size", v, &mut diags).unwrap_or(0),
            }
            slide = match &self.slide {
                Some(v) => ctx.micros("slide", v, &mut diags).unwrap_or(0),
                None => size,
            };
            offset = match &self.offset {
                Some(v) => ctx.micros("offset", v, &mut diags).unwrap_or(0),
                None => 0,
            };
            for (key, v, value) in [("size", size, &self.size), ("slide", slide, &self.slide)] {
                if v <= 0 && value.is_some() {
                    diags.push(
                        ctx.error(format!("`{key}` must be longer than zero"))
                            .at(value.as_ref().expect("given").span())
                            .help("such as \"10s\""),
                    );
                }
            }
            if size > 0 && slide > 0 && size % slide != 0 {
                diags.push(
                    ctx.error("`size` must be a whole multiple of `slide`")
                        .at(self
                            .slide
                            .as_ref()
                            .map(|s| s.span())
                            .unwrap_or(ctx.span.clone()))
                        .help("such as size = \"10s\" with slide = \"1s\""),
                );
            }
            if slide > 0 && offset >= slide {
                diags.push(
                    ctx.error("`offset` must be shorter than the window (or slide)")
                        .at(self
                            .offset
                            .as_ref()
                            .map(|s| s.span())
                            .unwrap_or(ctx.span.clone()))
                        .help("use the offset modulo the window"),
                );
            }
        }
        let late = match &self.late {
            None => LatePolicy::DeadLetter,
            Some(l) => match ctx.choice("late", l, &["dead-letter", "drop", "side-output"]) {
                Ok(1) => LatePolicy::Drop,
                Ok(2) => LatePolicy::SideOutput,
                Ok(_) => LatePolicy::DeadLetter,
                Err(d) => {
                    diags.push(d);
                    LatePolicy::DeadLetter
                }
            },
        };
        // The output fields: (name, side, position).
        let mut out: Vec<(String, u8, usize)> = Vec::new();
        match &self.select {
            None => {
                for (p, f) in left.fields.iter().enumerate() {
                    out.push((f.name.to_string(), 0, p));
                }
                for (p, f) in right.fields.iter().enumerate() {
                    if right_key.contains(&p) {
                        continue;
                    }
                    let name = if left.index_of(&f.name).is_some() {
                        format!("right_{}", f.name)
                    } else {
                        f.name.to_string()
                    };
                    out.push((name, 1, p));
                }
            }
            Some(sel) => {
                for item in sel.get_ref() {
                    let text = item.get_ref().trim();
                    let (field, alias) = match text.to_ascii_lowercase().find(" as ") {
                        Some(i) => (text[..i].trim(), Some(text[i + 4..].trim())),
                        None => (text, None),
                    };
                    let (side, schema, name) = match field.split_once('.') {
                        Some(("left", n)) => (0u8, left, n),
                        Some(("right", n)) => (1u8, right, n),
                        _ => {
                            diags.push(
                                ctx.error(format!("`{text}` does not say which input it is from"))
                                    .at(item.span())
                                    .help(
                                        "write left.FIELD or right.FIELD, optionally with AS NAME",
                                    ),
                            );
                            continue;
                        }
                    };
                    match schema.index_of(name) {
                        Some(p) => out.push((alias.unwrap_or(name).to_string(), side, p)),
                        None => diags.push(
                            ctx.error(format!(
                                "`{name}` is not a field of the {} input",
                                if side == 0 { "left" } else { "right" }
                            ))
                            .at(item.span())
                            .help(
                                match did_you_mean(name, schema.names()) {
                                    Some(s) => format!("did you mean `{s}`?"),
                                    None => format!(
                                        "its fields are: {}",
                                        schema.names().collect::<Vec<_>>().join(", ")
                                    ),
                                },
                            ),
                        ),
                    }
                }
                for (i, (n, ..)) in out.iter().enumerate() {
                    if out[..i].iter().any(|(m, ..)| m == n) {
                        diags.push(
                            ctx.error(format!("the output has two fields named `{n}`"))
                                .at(sel.span())
                                .help("rename one with AS: \"right.ts AS click_ts\""),
                        );
                    }
                }
            }
        }
        // Joins store and key records in columns of scalars.
        for &(ref name, side, p) in &out {
            let f = &[left, right][side as usize].fields[p];
            if f.ty.list_of().is_some() {
                diags.push(
                    ctx.error(format!(
                        "`{name}` is a list ({}): a join cannot carry list fields",
                        f.ty
                    ))
                    .at(self.select.as_ref().map(|s| s.span()).unwrap_or(ctx.span.clone()))
                    .help("leave it out of `select` (or drop it with a map before the join), or unnest it first"),
                );
            }
        }
        for (&l, _) in left_key.iter().zip(&right_key) {
            if left.fields[l].ty.list_of().is_some() {
                diags.push(
                    ctx.error(format!(
                        "the key field `{}` is a list: a join cannot match lists",
                        left.fields[l].name
                    ))
                    .at(ctx.span.clone())
                    .help("unnest it first to join on its elements"),
                );
            }
        }
        let max_state = match &self.max_state {
            Some(m) if *m.get_ref() < 1 => {
                diags.push(
                    ctx.error("`max_state` must be at least 1")
                        .at(m.span())
                        .help("give the most records to store, such as max_state = 1000000, or remove it for no limit"),
                );
                None
            }
            Some(m) => Some(*m.get_ref() as u64),
            None => None,
        };
        if !diags.is_empty() {
            return Err(diags);
        }
        let fields: Vec<Field> = out
            .iter()
            .map(|(name, side, p)| {
                let ty = if *side == 0 {
                    left.fields[*p].ty
                } else {
                    right.fields[*p].ty
                };
                Field::new(name, ty)
            })
            .collect();
        let mut fields = fields;
        if window {
            for n in ["window_start", "window_end"] {
                if out.iter().any(|(m, ..)| m == n) {
                    return Err(vec![ctx
                        .error(format!("the output already has a field `{n}`"))
                        .at(self.select.as_ref().map(|s| s.span()).unwrap_or(ctx.span.clone()))
                        .help("window join results end with window_start and window_end: rename that field with AS")]);
                }
            }
            fields.push(Field::new("window_start", FieldType::Timestamp));
            fields.push(Field::new("window_end", FieldType::Timestamp));
        }
        let mut schema = Schema::new(fields);
        if window {
            schema.time = Some(out.len());
            schema.window_end = Some(out.len() + 1);
        } else {
            schema.time = out
                .iter()
                .position(|&(_, s, p)| s == 0 && Some(p) == left.time);
        }
        schema.id = out
            .iter()
            .position(|&(_, s, p)| s == 0 && Some(p) == left.id);
        let common = JoinCommon::new(
            &ctx.id,
            left,
            right,
            left_key,
            right_key,
            out.iter().map(|&(_, s, p)| (s, p)).collect(),
            late,
        );
        let mut common = common;
        common.max_state = max_state;
        let op = if temporal {
            Op::TemporalJoin(Arc::new(TemporalJoinSpec {
                common,
                left_outer: how == JoinHow::Left,
            }))
        } else if window {
            Op::WindowJoin(Arc::new(WindowJoinSpec {
                common,
                size,
                slide,
                offset,
                how,
            }))
        } else {
            Op::IntervalJoin(Arc::new(IntervalJoinSpec {
                common,
                lower,
                upper,
                left_outer: how == JoinHow::Left,
            }))
        };
        let side_output = late == LatePolicy::SideOutput;
        Ok(Planned {
            op,
            schema,
            dead_letters: true,
            late_schema: side_output.then(|| left.clone()),
            late_right_schema: side_output.then(|| right.clone()),
        })
    }
}
