//! `[transforms.ID] type = "window"`: tumbling, sliding and session event-time windows with
//! grouped aggregates.

use std::sync::Arc;

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;
use weir_operators::aggregate::{Output, NAMES};
use weir_operators::schema::Schema;
use weir_operators::window::{LatePolicy, Shape, WindowSpec};

use super::{Ctx, Op, Planned};
use crate::diag::Diag;

/// Groups records into event-time windows and computes aggregates per group and window: tumbling
/// (fixed, back to back), sliding (`size` every `slide`) or session (per key, until a `gap`
/// without records). Each result holds the `group_by` fields, `window_start`, `window_end` and
/// the aggregates, in that order; its event time is `window_start`. A window's results are
/// emitted once the event-time watermark passes its end; a window with no records emits nothing.
/// Late records (see `late`) and records without an event time are counted in the run summary.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// "tumbling" (default), "sliding" or "session".
    pub kind: Option<Spanned<String>>,
    /// The window's length, such as "1s" or "1m" (tumbling and sliding).
    pub size: Option<Spanned<String>>,
    /// How far apart sliding windows start, such as "1s"; `size` must be a multiple of it.
    pub slide: Option<Spanned<String>>,
    /// The inactivity gap that ends a session, such as "30s" (session windows).
    pub gap: Option<Spanned<String>>,
    /// Shifts window boundaries from the epoch (default "0s"; less than `size`, or `slide` for
    /// sliding windows): with size = "1h" and offset = "15m", windows run from :15 to :15
    /// (tumbling and sliding).
    pub offset: Option<Spanned<String>>,
    /// Fields to group by (default: none, one global group per window).
    pub group_by: Option<Spanned<Vec<Spanned<String>>>>,
    /// Named aggregates, in output order, in SQL: count(*), count(x), count(distinct x),
    /// sum(x), min(x), max(x), avg(x), first(x), last(x), variance(x), var_pop(x), stddev(x),
    /// stddev_pop(x), approx_percentile(x, q), approx_count_distinct(x), each optionally with
    /// FILTER (WHERE condition), or an expression over aggregates and the group fields,
    /// window_start and window_end, such as `round(avg(temperature), 2)` — for example
    /// `aggregates = { avg_temp = "avg(temperature)", alarms = "count(*) FILTER (WHERE kind = 'alarm')" }`.
    pub aggregates: Spanned<IndexMap<String, Spanned<String>>>,
    /// What happens to a late record (one whose window had closed by its source's watermark):
    /// "dead-letter" (default: to `ID.dead_letter` with the reason), "drop" (count it only),
    /// "side-output" (send it unchanged to the output `ID.late`), or "update" (include it and
    /// emit the window's result again, with a `late_records` field, while the window is at
    /// most `allowed_lateness` behind the watermark; later ones are dead-lettered). Every late
    /// record is counted. "update" is for tumbling and sliding windows.
    pub late: Option<Spanned<String>>,
    /// With late = "update": how long after a window's end late records still update it
    /// (default "0s").
    pub allowed_lateness: Option<Spanned<String>>,
    /// The most entries of state the window may hold in one process — the groups of every
    /// open window, the queued panes of sliding windows, the open sessions — before it stops
    /// the run with an error naming the window (default: no limit). A guard against a runaway
    /// key space: the run fails with a message instead of being killed for lack of memory.
    pub max_state: Option<Spanned<i64>>,
}

impl WindowConfig {
    /// Validates and compiles.
    pub fn plan(&self, ctx: &Ctx, input: &Schema) -> Result<Planned, Vec<Diag>> {
        let mut diags = Vec::new();
        if input.time.is_none() && !input.processing_time {
            diags.push(
                ctx.error("the input has no event-time field, so records cannot be put in windows")
                    .at(ctx.span.clone())
                    .help("keep the source's timestamp field in every map between the source and this window"),
            );
        }
        let micros =
            |key: &str, v: &Spanned<String>, diags: &mut Vec<Diag>| ctx.micros(key, v, diags);
        let kinds = ["tumbling", "sliding", "session"];
        let kind = match &self.kind {
            None => 0,
            Some(k) => ctx.choice("kind", k, &kinds).unwrap_or_else(|d| {
                diags.push(d);
                0
            }),
        };
        // Which length keys each kind takes.
        let wants = [
            ("size", [true, true, false]),
            ("slide", [false, true, false]),
            ("gap", [false, false, true]),
            ("offset", [true, true, false]),
        ];
        let given = [&self.size, &self.slide, &self.gap, &self.offset];
        let mut lengths = [None; 4];
        for (i, ((key, takes), value)) in wants.iter().zip(given).enumerate() {
            match (value, takes[kind]) {
                (Some(v), true) => lengths[i] = micros(key, v, &mut diags),
                (Some(v), false) => diags.push(
                    ctx.error(format!("a {} window has no `{key}`", kinds[kind]))
                        .at(v.span())
                        .help(match kind {
                            0 => "a tumbling window takes `size` (and `offset`)",
                            1 => "a sliding window takes `size`, `slide` (and `offset`)",
                            _ => "a session window takes `gap`",
                        }),
                ),
                (None, true) if *key != "offset" => diags.push(
                    ctx.error(format!("a {} window needs `{key}`", kinds[kind]))
                        .at(ctx.span.clone())
                        .help(format!("add {key} = \"10s\", say")),
                ),
                (None, _) => {}
            }
        }
        let [size, slide, gap, offset] = lengths;
        /// The most windows one record may count in (`size / slide`).
        const MAX_WINDOWS_PER_RECORD: i64 = 100_000;
        for (key, v, value) in [
            ("size", size, &self.size),
            ("slide", slide, &self.slide),
            ("gap", gap, &self.gap),
        ] {
            if v == Some(0) {
                diags.push(
                    ctx.error(format!("`{key}` must be longer than zero"))
                        .at(value.as_ref().map(|v| v.span()).unwrap_or(ctx.span.clone()))
                        .help(format!("give `{key}` a length, such as \"1s\" or \"1m\"")),
                );
            }
        }
        if let (Some(s), Some(sl)) = (size, slide) {
            if s > 0 && sl > 0 && s / sl > MAX_WINDOWS_PER_RECORD {
                diags.push(
                    ctx.error(format!(
                        "`size` is {} slides: a record would count in more than {MAX_WINDOWS_PER_RECORD} windows, Weir's limit",
                        s / sl
                    ))
                    .at(self.size.as_ref().expect("given").span())
                    .help("every slide emits one window per key: use a longer `slide` or a shorter `size`"),
                );
            } else if s > 0 && sl > 0 && s % sl != 0 {
                diags.push(
                    ctx.error("`size` must be a whole multiple of `slide`")
                        .at(self.slide.as_ref().expect("given").span())
                        .help("windows are built from panes of one slide: use, say, size = \"10s\" with slide = \"1s\" or \"2s\""),
                );
            }
        }
        let pane = match kind {
            1 => slide,
            _ => size,
        };
        if let (Some(p), Some(o), Some(span)) =
            (pane, offset, self.offset.as_ref().map(|o| o.span()))
        {
            if p > 0 && o >= p {
                diags.push(
                    ctx.error(format!("`offset` must be shorter than `{}`", if kind == 1 { "slide" } else { "size" }))
                        .at(span)
                        .help("an offset of a whole window changes nothing: use the offset modulo the window"),
                );
            }
        }
        let policies = ["dead-letter", "drop", "side-output", "update"];
        let policy = match &self.late {
            None => 0,
            Some(l) => ctx.choice("late", l, &policies).unwrap_or_else(|d| {
                diags.push(d);
                0
            }),
        };
        let allowed = match &self.allowed_lateness {
            Some(a) if policy != 3 => {
                diags.push(
                    ctx.error("`allowed_lateness` applies only with late = \"update\"")
                        .at(a.span())
                        .help("set late = \"update\", or remove allowed_lateness"),
                );
                None
            }
            Some(a) => micros("allowed_lateness", a, &mut diags),
            None => Some(0),
        };
        if policy == 3 && kind == 2 {
            diags.push(
                ctx.error("late = \"update\" is not supported for session windows")
                    .at(self.late.as_ref().expect("given").span())
                    .help("use \"side-output\" to process late records separately, or \"drop\" or \"dead-letter\""),
            );
        }
        let late = match policy {
            1 => LatePolicy::Drop,
            2 => LatePolicy::SideOutput,
            3 => LatePolicy::Update {
                allowed_lateness: allowed.unwrap_or(0),
            },
            _ => LatePolicy::DeadLetter,
        };
        let group_by = ctx.key_fields(
            "group_by",
            self.group_by.as_ref(),
            input,
            "windows cannot group by",
            &mut diags,
        );
        let mut names: Vec<String> = group_by
            .iter()
            .map(|&p| input.fields[p].name.to_string())
            .collect();
        names.push("window_start".into());
        names.push("window_end".into());
        if policy == 3 {
            names.push("late_records".into());
        }
        if self.aggregates.get_ref().is_empty() {
            diags.push(
                ctx.error("`aggregates` is empty")
                    .at(self.aggregates.span())
                    .help(format!("name at least one aggregate, such as aggregates = {{ n = \"count(*)\" }}; functions: {NAMES}")),
            );
        }
        let mut aggregates = Vec::new();
        let mut outputs = Vec::new();
        let mut agg_names = Vec::new();
        // The fields an expression over aggregates may read besides them.
        let mut result_fields: Vec<weir_operators::schema::Field> =
            group_by.iter().map(|&p| input.fields[p].clone()).collect();
        result_fields.push(weir_operators::schema::Field::new(
            "window_start",
            weir_operators::value::FieldType::Timestamp,
        ));
        result_fields.push(weir_operators::schema::Field::new(
            "window_end",
            weir_operators::value::FieldType::Timestamp,
        ));
        let result = Schema::new(result_fields);
        for (name, text) in self.aggregates.get_ref() {
            if names.contains(name) || agg_names.contains(name) {
                diags.push(
                    ctx.error(format!("the output already has a field `{name}`"))
                        .at(text.span())
                        .help("give the aggregate another name: window results hold the group_by fields, window_start and window_end, then the aggregates"),
                );
            }
            match Output::compile(text.get_ref(), input, &result, aggregates.len()) {
                Ok((o, aggs)) => {
                    outputs.push(o);
                    aggregates.extend(aggs);
                }
                Err(e) => diags.push(
                    ctx.error(format!("{} in aggregate `{name}`", e.message))
                        .at(ctx.inner_span(text, e.span.clone()))
                        .maybe_help(e.help),
                ),
            }
            agg_names.push(name.clone());
        }
        let max_state = match &self.max_state {
            Some(m) if *m.get_ref() < 1 => {
                diags.push(
                    ctx.error("`max_state` must be at least 1")
                        .at(m.span())
                        .help("give the most entries of state to hold, such as max_state = 1000000, or remove it for no limit"),
                );
                None
            }
            Some(m) => Some(*m.get_ref() as u64),
            None => None,
        };
        if !diags.is_empty() {
            return Err(diags);
        }
        let shape = match kind {
            1 => Shape::Sliding {
                slide: slide.expect("checked"),
            },
            2 => Shape::Session {
                gap: gap.expect("checked"),
            },
            _ => Shape::Tumbling,
        };
        let spec = WindowSpec::new(
            &ctx.id,
            size.or(gap).expect("checked"),
            offset.unwrap_or(0),
            input,
            group_by,
            aggregates,
        )
        .with_shape(shape)
        .with_late(late)
        .with_max_state(max_state)
        .with_outputs(outputs);
        let schema = spec.output_schema(input, &agg_names);
        Ok(Planned {
            op: Op::Window(Arc::new(spec)),
            schema,
            dead_letters: true,
            late_schema: (late == LatePolicy::SideOutput).then(|| input.clone()),
            late_right_schema: None,
        })
    }
}
