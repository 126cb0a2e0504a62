//! Reading a component's table into its config struct: every unknown key reported with a
//! did-you-mean, type errors with the key's span and what to do.

use std::ops::Range;

use toml::de::DeValue;
use toml::Spanned;
use weir_operators::suggest::did_you_mean;

use crate::diag::Diag;
use crate::introspect;

/// Deserializes a table into a config struct, reporting unknown keys (all of them) and type
/// errors against `what`.
pub(crate) fn typed<T: serde::de::DeserializeOwned>(
    value: Spanned<DeValue<'_>>,
    what: &str,
    diags: &mut Vec<Diag>,
) -> Option<T> {
    let span = value.span();
    let DeValue::Table(mut table) = value.into_inner() else {
        diags.push(
            Diag::error(format!("`{what}` must be a table"))
                .component(what)
                .at(span),
        );
        return None;
    };
    let known = introspect::fields::<T>();
    let unknown_keys: Vec<(String, Range<usize>)> = table
        .keys()
        .filter(|k| !known.contains(&k.get_ref().as_ref()))
        .map(|k| (k.get_ref().to_string(), k.span()))
        .collect();
    let unknown = !unknown_keys.is_empty();
    // In one pass (removing keys one by one shifts the whole table each time).
    if unknown {
        table = std::mem::take(&mut table)
            .into_iter()
            .filter(|(k, _)| known.contains(&k.get_ref().as_ref()))
            .collect();
    }
    for (key, key_span) in unknown_keys {
        diags.push(
            Diag::error(format!("unknown key `{key}`"))
                .component(what)
                .at_labelled(key_span, "not a key of this component")
                .help(match did_you_mean(&key, known.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("the keys here are: {}", known.join(", ")),
                }),
        );
    }
    let value = Spanned::new(span.clone(), DeValue::Table(table));
    match T::deserialize(toml::de::ValueDeserializer::from(value)) {
        Ok(t) if !unknown => Some(t),
        Ok(_) => None,
        Err(e) => {
            diags.push(serde_diag(&e, what, span));
            None
        }
    }
}

fn serde_diag(e: &toml::de::Error, what: &str, table: Range<usize>) -> Diag {
    let message = e.message().trim().to_string();
    let help = if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|m| m.strip_suffix('`'))
    {
        format!("add `{field} = ...` to this component")
    } else if message.starts_with("invalid type") {
        "give the key a value of the expected type".to_string()
    } else {
        "see the component reference in README.md".to_string()
    };
    Diag::error(message)
        .component(what)
        .at(e.span().unwrap_or(table))
        .help(help)
}
