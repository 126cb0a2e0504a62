//! `[transforms.ID] type = "map"`: selects, renames and computes fields.

use std::sync::Arc;

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;
use weir_operators::map::{MapSpec, Slot};
use weir_operators::schema::{Field, Schema};
use weir_operators::suggest::did_you_mean;
use weir_operators::value::FieldType;

use super::{Ctx, Op, Planned};
use crate::diag::Diag;

/// Reshapes records: keeps the fields in `select` (all, when omitted) in that order, renames
/// some with `rename`, and adds fields computed by SQL expressions. A computed field with the
/// name of an output field replaces it in place. Expressions see the input record.
/// The event-time and id roles follow their fields through `select` and `rename`; a map that
/// drops the event-time field leaves a stream that windows cannot use.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapConfig {
    /// The input fields to keep, in output order. Default: all of them.
    pub select: Option<Spanned<Vec<Spanned<String>>>>,
    /// New names for kept fields: `rename = { temperature = "temp_c" }`.
    pub rename: Option<Spanned<IndexMap<String, Spanned<String>>>>,
    /// Computed fields: `compute = { temp_f = "temperature * 1.8 + 32" }`. A computed field
    /// with the name of an output field replaces it in place. Expressions see the input record.
    pub compute: Option<Spanned<IndexMap<String, Spanned<String>>>>,
}

impl MapConfig {
    /// Validates and compiles.
    pub fn plan(&self, ctx: &Ctx, input: &Schema) -> Result<Planned, Vec<Diag>> {
        let mut diags = Vec::new();
        // (output name, slot, type, input position when moved)
        let mut out: Vec<OutField> = Vec::new();
        match &self.select {
            Some(sel) => {
                if sel.get_ref().is_empty() && self.compute.is_none() {
                    diags.push(
                        ctx.error("`select` is empty and nothing is computed: every record would be empty")
                            .at(sel.span())
                            .help("list the fields to keep, or omit `select` to keep them all"),
                    );
                }
                for name in sel.get_ref() {
                    match input.index_of(name.get_ref()) {
                        Some(i) => out.push((
                            name.get_ref().clone(),
                            Some(Slot::Input(i)),
                            Some(input.fields[i].ty),
                            Some(i),
                        )),
                        None => diags.push(unknown_field(ctx, "select", name, input)),
                    }
                }
            }
            None => {
                for (i, f) in input.fields.iter().enumerate() {
                    out.push((
                        f.name.to_string(),
                        Some(Slot::Input(i)),
                        Some(f.ty),
                        Some(i),
                    ));
                }
            }
        }
        if let Some(rename) = &self.rename {
            for (old, new) in rename.get_ref() {
                match out.iter_mut().find(|o| &o.0 == old) {
                    Some(o) => o.0 = new.get_ref().clone(),
                    None => {
                        let names: Vec<&str> = out.iter().map(|o| o.0.as_str()).collect();
                        diags.push(
                            ctx.error(format!(
                                "`rename` names `{old}`, which is not an output field"
                            ))
                            .at(rename.span())
                            .help(
                                match did_you_mean(old, names.iter().copied()) {
                                    Some(s) => format!("did you mean `{s}`?"),
                                    None => format!("the fields here are: {}", names.join(", ")),
                                },
                            ),
                        )
                    }
                }
            }
        }
        if let Some(compute) = &self.compute {
            for (name, text) in compute.get_ref() {
                match ctx.expr(&format!("compute.{name}"), text, input) {
                    Ok(e) => {
                        let ty = e.output_type();
                        match out.iter_mut().find(|o| &o.0 == name) {
                            Some(o) => {
                                o.1 = Some(Slot::Compute(e));
                                o.2 = ty;
                                o.3 = None;
                            }
                            None => out.push((name.clone(), Some(Slot::Compute(e)), ty, None)),
                        }
                    }
                    Err(d) => diags.push(d),
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        for o in &out {
            if !seen.insert(o.0.as_str()) {
                diags.push(
                    ctx.error(format!("the output has two fields named `{}`", o.0))
                        .at(self
                            .rename
                            .as_ref()
                            .map(|r| r.span())
                            .unwrap_or(ctx.span.clone()))
                        .help("rename one of them"),
                );
            }
        }
        if !diags.is_empty() {
            return Err(diags);
        }
        let mut fields = Vec::with_capacity(out.len());
        let mut slots = Vec::with_capacity(out.len());
        let mut schema_time = None;
        let mut schema_id = None;
        let mut schema_window_end = None;
        for (k, (name, slot, ty, from)) in out.into_iter().enumerate() {
            // A computed NULL literal has no type of its own: call it a string.
            fields.push(Field::new(&name, ty.unwrap_or(FieldType::String)));
            slots.push(slot.expect("every output has a slot"));
            if from.is_some() && from == input.time {
                schema_time = Some(k);
            }
            if from.is_some() && from == input.id {
                schema_id = Some(k);
            }
            if from.is_some() && from == input.window_end {
                schema_window_end = Some(k);
            }
        }
        let mut schema = Schema::new(fields);
        schema.time = schema_time;
        schema.id = schema_id;
        schema.window_end = schema_window_end;
        schema.processing_time = input.processing_time;
        Ok(Planned {
            op: Op::Map(Arc::new(MapSpec::new(slots))),
            schema,
            dead_letters: false,
            late_schema: None,
            late_right_schema: None,
        })
    }
}

/// An output field being laid out: name, slot, type, and the input position it moves from.
type OutField = (String, Option<Slot>, Option<FieldType>, Option<usize>);

fn unknown_field(ctx: &Ctx, key: &str, name: &Spanned<String>, input: &Schema) -> Diag {
    ctx.error(format!("unknown field `{}` in `{key}`", name.get_ref()))
        .at(name.span())
        .help(match did_you_mean(name.get_ref(), input.names()) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!(
                "the input has: {}",
                input.names().collect::<Vec<_>>().join(", ")
            ),
        })
}
