//! `[transforms.ID] type = "window"`: tumbling event-time windows with grouped aggregates.

use std::sync::Arc;

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;
use weir_operators::aggregate::{Aggregate, NAMES};
use weir_operators::schema::Schema;
use weir_operators::suggest::did_you_mean;
use weir_operators::window::WindowSpec;

use super::{Ctx, Op, Planned};
use crate::diag::Diag;

/// Groups records into tumbling event-time windows and computes aggregates per group and
/// window. Each result holds the `group_by` fields, `window_start`, `window_end` and the
/// aggregates, in that order; its event time is `window_start`. A window's results are emitted
/// once, when the event-time watermark passes its end; a window with no records emits nothing.
/// Records that arrive after their window closed (late) or have no event time go to the
/// window's dead-letter output, `ID.dead_letter` (by default the pipeline's dead-letter file),
/// and are counted in the run summary.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// The window's length, such as "1s" or "1m".
    pub size: Spanned<String>,
    /// Shifts window boundaries from the epoch (default "0s"): with size = "1h" and
    /// offset = "15m", windows run from :15 to :15.
    pub offset: Option<Spanned<String>>,
    /// Fields to group by (default: none, one global group per window).
    pub group_by: Option<Spanned<Vec<Spanned<String>>>>,
    /// Named aggregates, in output order, in SQL: count(*), count(x), count(distinct x),
    /// sum(x), min(x), max(x), avg(x), first(x), last(x) — for example
    /// `aggregates = { avg_temp = "avg(temperature)", readings = "count(*)" }`.
    pub aggregates: Spanned<IndexMap<String, Spanned<String>>>,
}

impl WindowConfig {
    /// Validates and compiles.
    pub fn plan(&self, ctx: &Ctx, input: &Schema) -> Result<Planned, Vec<Diag>> {
        let mut diags = Vec::new();
        if input.time.is_none() {
            diags.push(
                ctx.error("the input has no event-time field, so records cannot be put in windows")
                    .at(ctx.span.clone())
                    .help("keep the source's timestamp field in every map between the source and this window"),
            );
        }
        let micros = |key: &str, v: &Spanned<String>, diags: &mut Vec<Diag>| -> Option<i64> {
            match ctx.duration(key, v) {
                Ok(d) => Some(d.as_micros().min(i64::MAX as u128) as i64),
                Err(d) => {
                    diags.push(d);
                    None
                }
            }
        };
        let size = micros("size", &self.size, &mut diags);
        if size == Some(0) {
            diags.push(
                ctx.error("`size` must be longer than zero")
                    .at(self.size.span())
                    .help("give the window a length, such as \"1s\" or \"1m\""),
            );
        }
        let offset = match &self.offset {
            Some(o) => micros("offset", o, &mut diags),
            None => Some(0),
        };
        if let (Some(s), Some(o), Some(span)) =
            (size, offset, self.offset.as_ref().map(|o| o.span()))
        {
            if s > 0 && o >= s {
                diags.push(
                    ctx.error("`offset` must be shorter than `size`")
                        .at(span)
                        .help("an offset of a whole window changes nothing: use offset mod size"),
                );
            }
        }
        let mut group_by = Vec::new();
        let mut names: Vec<String> = Vec::new();
        for f in self.group_by.iter().flat_map(|g| g.get_ref()) {
            match input.index_of(f.get_ref()) {
                Some(p) if group_by.contains(&p) => diags.push(
                    ctx.error(format!("`{}` is listed twice in `group_by`", f.get_ref()))
                        .at(f.span())
                        .help("list each field once"),
                ),
                Some(p) => {
                    group_by.push(p);
                    names.push(f.get_ref().clone());
                }
                None => diags.push(
                    ctx.error(format!(
                        "`group_by` names `{}`, which is not an input field",
                        f.get_ref()
                    ))
                    .at(f.span())
                    .help(match did_you_mean(f.get_ref(), input.names()) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!(
                            "the input fields are: {}",
                            input.names().collect::<Vec<_>>().join(", ")
                        ),
                    }),
                ),
            }
        }
        names.push("window_start".into());
        names.push("window_end".into());
        if self.aggregates.get_ref().is_empty() {
            diags.push(
                ctx.error("`aggregates` is empty")
                    .at(self.aggregates.span())
                    .help(format!("name at least one aggregate, such as aggregates = {{ n = \"count(*)\" }}; functions: {NAMES}")),
            );
        }
        let mut aggregates = Vec::new();
        let mut agg_names = Vec::new();
        for (name, text) in self.aggregates.get_ref() {
            if names.contains(name) || agg_names.contains(name) {
                diags.push(
                    ctx.error(format!("the output already has a field `{name}`"))
                        .at(text.span())
                        .help("give the aggregate another name: window results hold the group_by fields, window_start and window_end, then the aggregates"),
                );
            }
            match Aggregate::compile(text.get_ref(), input) {
                Ok(a) => aggregates.push(a),
                Err(e) => diags.push(
                    ctx.error(format!("{} in aggregate `{name}`", e.message))
                        .at(ctx.inner_span(text, e.span.clone()))
                        .maybe_help(e.help),
                ),
            }
            agg_names.push(name.clone());
        }
        if !diags.is_empty() {
            return Err(diags);
        }
        let spec = WindowSpec::new(
            &ctx.id,
            size.expect("checked"),
            offset.expect("checked"),
            input,
            group_by,
            aggregates,
        );
        let schema = spec.output_schema(input, &agg_names);
        Ok(Planned {
            op: Op::Window(Arc::new(spec)),
            schema,
            dead_letters: true,
        })
    }
}
