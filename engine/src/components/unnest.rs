//! `[transforms.ID] type = "unnest"`: one record per element of a list field.

use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;
use weir_operators::schema::Schema;
use weir_operators::suggest::did_you_mean;
use weir_operators::unnest::UnnestSpec;
use weir_operators::value::FieldType;

use super::{Ctx, Op, Planned};
use crate::diag::Diag;

/// Turns a list field into one record per element (SQL's `UNNEST`, Spark's `explode`): the
/// list field is replaced, in place, by one element, and every other field is copied to each
/// element's record, the event time and id included. A record whose list is empty or NULL
/// gives no record (Spark's `explode`) unless `keep_empty` is set.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnnestConfig {
    /// The list field to unnest, such as `"tags"` (a `list<...>` field of the input).
    pub field: Spanned<String>,
    /// The name of the element field. Default: the list field's own name.
    #[serde(rename = "as")]
    pub as_name: Option<Spanned<String>>,
    /// Adds a field of this name after the element, holding its position in the list (`u64`,
    /// counting from 1). Default: none.
    pub index: Option<Spanned<String>>,
    /// Whether a record with an empty or NULL list gives one record whose element (and index)
    /// is NULL, as Spark's `explode_outer` does, instead of none. Default: false.
    #[serde(default)]
    pub keep_empty: bool,
}

impl UnnestConfig {
    /// Validates and compiles.
    pub fn plan(&self, ctx: &Ctx, input: &Schema) -> Result<Planned, Vec<Diag>> {
        let name = self.field.get_ref();
        let Some(field) = input.index_of(name) else {
            let lists: Vec<&str> = input
                .fields
                .iter()
                .filter(|f| f.ty.list_of().is_some())
                .map(|f| f.name.as_str())
                .collect();
            return Err(vec![ctx
                .error(format!("unknown field `{name}` in `field`"))
                .at(self.field.span())
                .help(match did_you_mean(name, input.names()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None if lists.is_empty() => {
                        "the input has no list field: declare one in the source's schema, such as tags = \"list<string>\"".to_string()
                    }
                    None => format!("the input's list fields are: {}", lists.join(", ")),
                })]);
        };
        let ty = input.fields[field].ty;
        if ty.list_of().is_none() {
            return Err(vec![ctx
                .error(format!("`{name}` is {ty}, not a list: only a list can be unnested"))
                .at(self.field.span())
                .help(match ty {
                    FieldType::Json => "a json field is JSON text: declare the field as a list in the source's schema, such as tags = \"list<string>\"".to_string(),
                    _ => "declare the field as a list in the source's schema, such as tags = \"list<string>\"".to_string(),
                })]);
        }
        let out_name = self.as_name.as_ref().map_or(name.as_str(), |n| n.get_ref());
        let mut diags = Vec::new();
        let taken = |n: &str, at: usize| {
            input
                .fields
                .iter()
                .enumerate()
                .any(|(k, f)| k != at && f.name == n)
        };
        if let Some(a) = &self.as_name {
            if a.get_ref().is_empty() || taken(a.get_ref(), field) {
                diags.push(
                    ctx.error(format!(
                        "`as` names `{}`, which the input already has",
                        a.get_ref()
                    ))
                    .at(a.span())
                    .help("choose a new name for the element field"),
                );
            }
        }
        if let Some(ix) = &self.index {
            if ix.get_ref().is_empty()
                || taken(ix.get_ref(), usize::MAX)
                || ix.get_ref() == out_name
            {
                diags.push(
                    ctx.error(format!(
                        "`index` names `{}`, which the output already has",
                        ix.get_ref()
                    ))
                    .at(ix.span())
                    .help("choose a new name for the index field, such as \"position\""),
                );
            }
        }
        if !diags.is_empty() {
            return Err(diags);
        }
        let spec = UnnestSpec::new(
            input,
            field,
            out_name,
            self.index.as_ref().map(|i| i.get_ref().as_str()),
            self.keep_empty,
        );
        Ok(Planned {
            schema: spec.schema().clone(),
            op: Op::Unnest(Arc::new(spec)),
            dead_letters: false,
            late_schema: None,
            late_right_schema: None,
        })
    }
}
