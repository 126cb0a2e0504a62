//! `[transforms.ID] type = "filter"`: keeps the records a condition holds for.

use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;
use weir_operators::schema::Schema;
use weir_operators::value::FieldType;

use super::{Ctx, Op, Planned};
use crate::diag::Diag;

/// Keeps the records for which `condition` is TRUE; records for which it is FALSE or NULL are
/// dropped (as SQL's WHERE does) and counted as filtered in the summary.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// A SQL boolean expression over the input's fields (records for which it is FALSE or
    /// NULL are dropped, and counted as `in` minus `out`), such as
    /// `"kind = 'reading' AND temperature > 30.0"`.
    pub condition: Spanned<String>,
}

impl FilterConfig {
    /// Validates and compiles.
    pub fn plan(&self, ctx: &Ctx, input: &Schema) -> Result<Planned, Vec<Diag>> {
        let expr = ctx
            .expr("condition", &self.condition, input)
            .map_err(|d| vec![d])?;
        match expr.output_type() {
            Some(FieldType::Bool) | None => {}
            Some(other) => {
                return Err(vec![ctx
                    .error(format!(
                        "`condition` must be true or false, but it is {other}"
                    ))
                    .at(self.condition.span())
                    .help("compare the value, such as `temperature > 30.0`")])
            }
        }
        Ok(Planned {
            op: Op::Filter(Arc::new(expr)),
            schema: input.clone(),
            dead_letters: false,
            late_schema: None,
            late_right_schema: None,
        })
    }
}
