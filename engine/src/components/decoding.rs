//! The schema and decoding keys shared by sources that read external input (`file`, `stdin`).

use indexmap::IndexMap;
use toml::Spanned;
use weir_operators::decode::{DecodeSpec, OnError};
use weir_operators::schema::{Field, Schema};
use weir_operators::time::TimeFormat;
use weir_operators::value::FieldType;

use super::Ctx;
use crate::diag::Diag;

/// A file source's `schema`: its fields and their types, or `"infer"`.
#[derive(Clone, Debug)]
pub enum SchemaDecl {
    /// Read a sample of the input and infer the fields ([`weir_operators::infer`]).
    Infer,
    /// The fields and their types, as written.
    Fields(IndexMap<String, Spanned<String>>),
}

impl<'de> serde::Deserialize<'de> for SchemaDecl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<SchemaDecl, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = SchemaDecl;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a table of field types, such as { ts = \"timestamp\", v = \"f64\" }, or \"infer\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SchemaDecl, E> {
                match v {
                    "infer" => Ok(SchemaDecl::Infer),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<SchemaDecl, A::Error> {
                let mut fields = IndexMap::new();
                while let Some((k, v)) = m.next_entry::<String, Spanned<Decl>>()? {
                    flatten(k, v, &mut fields);
                }
                Ok(SchemaDecl::Fields(fields))
            }
        }
        d.deserialize_any(V)
    }
}

/// A schema entry: a type name, or a nested object's fields (`user = { id = "u64" }`).
enum Decl {
    Type(String),
    Nested(Vec<(String, Spanned<Decl>)>),
}

impl<'de> serde::Deserialize<'de> for Decl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Decl, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Decl;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a type name such as \"f64\", or a table of a nested object's fields")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Decl, E> {
                Ok(Decl::Type(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Decl, A::Error> {
                let mut fields = Vec::new();
                while let Some(entry) = m.next_entry::<String, Spanned<Decl>>()? {
                    fields.push(entry);
                }
                Ok(Decl::Nested(fields))
            }
        }
        d.deserialize_any(V)
    }
}

/// Adds entry `name` to `fields`, a nested object's fields by their dotted paths.
fn flatten(name: String, decl: Spanned<Decl>, fields: &mut IndexMap<String, Spanned<String>>) {
    let span = decl.span();
    match decl.into_inner() {
        Decl::Type(t) => {
            fields.insert(name, Spanned::new(span, t));
        }
        Decl::Nested(inner) => {
            for (k, v) in inner {
                flatten(format!("{name}.{k}"), v, fields);
            }
        }
    }
}

/// The sample schema inference reads: the first records of a file, up to this many bytes…
pub const SAMPLE_BYTES: usize = 1 << 20;
/// …and this many records.
pub const SAMPLE_RECORDS: usize = 1_000;

/// Infers the schema of a JSON lines file (`delimiter` `None`) or a CSV file from its first
/// records (see [`SAMPLE_BYTES`], [`SAMPLE_RECORDS`]).
pub fn infer_file(
    path: &std::path::Path,
    delimiter: Option<u8>,
) -> Result<weir_operators::infer::Inferred, String> {
    use std::io::Read;
    let mut bytes = Vec::with_capacity(SAMPLE_BYTES.min(1 << 16));
    std::fs::File::open(path)
        .and_then(|f| f.take(SAMPLE_BYTES as u64).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    // Whole lines only, the header and the first records.
    if bytes.len() == SAMPLE_BYTES {
        if let Some(end) = bytes.iter().rposition(|&b| b == b'\n') {
            bytes.truncate(end + 1);
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    let sample: String = text
        .lines()
        .take(SAMPLE_RECORDS + 1)
        .flat_map(|l| [l, "\n"])
        .collect();
    let inferred = match delimiter {
        None => weir_operators::infer::infer_jsonl(&sample),
        Some(d) => weir_operators::infer::infer_csv(&sample, d)?,
    };
    if inferred.records == 0 {
        return Err(format!(
            "`{}` has no record to infer a schema from",
            path.display()
        ));
    }
    Ok(inferred)
}

/// A source's schema and time keys, as written or as inferred from a sample of its input
/// (`schema = "infer"`): what inference found stands in for the keys the source leaves out, as
/// if written where `schema` is.
pub struct SchemaKeys {
    schema: Spanned<IndexMap<String, Spanned<String>>>,
    time_field: Option<Spanned<String>>,
    time_format: Option<Spanned<String>>,
    ingest: Option<Spanned<String>>,
    /// What inference found, when it ran.
    pub inferred: Option<weir_operators::infer::Inferred>,
}

/// A source's own time keys, which win over what inference finds.
pub struct TimeKeys<'a> {
    /// `timestamp_field`
    pub timestamp_field: Option<&'a Spanned<String>>,
    /// `timestamp_format`
    pub timestamp_format: Option<&'a Spanned<String>>,
    /// `event_time`
    pub event_time: Option<&'a Spanned<String>>,
}

impl SchemaKeys {
    /// The keys of `decl`; with `"infer"`, from `sample()` (an error there is reported at the
    /// key and gives `None`).
    pub fn new(
        ctx: &Ctx,
        decl: &Spanned<SchemaDecl>,
        user: &TimeKeys,
        sample: impl FnOnce() -> Result<weir_operators::infer::Inferred, String>,
        diags: &mut Vec<Diag>,
    ) -> Option<SchemaKeys> {
        let span = decl.span();
        let spanned = |v: String| Spanned::new(span.clone(), v);
        let fields = match decl.get_ref() {
            SchemaDecl::Fields(f) => {
                return Some(SchemaKeys {
                    schema: Spanned::new(span.clone(), f.clone()),
                    time_field: None,
                    time_format: None,
                    ingest: None,
                    inferred: None,
                })
            }
            SchemaDecl::Infer => {
                match sample() {
                    Ok(i) => i,
                    Err(e) => {
                        diags.push(
                        ctx.error(format!("cannot infer the schema: {e}"))
                            .at(span.clone())
                            .help("declare the fields: schema = { ts = \"timestamp\", v = \"f64\" }"),
                    );
                        return None;
                    }
                }
            }
        };
        // A field the source names as the event time is a timestamp, however its sample read.
        let named = user.timestamp_field.map(|f| f.get_ref());
        let schema = fields
            .fields
            .iter()
            .map(|(n, t)| {
                let t = if Some(n) == named {
                    "timestamp"
                } else {
                    t.name()
                };
                (n.clone(), spanned(t.to_string()))
            })
            .collect();
        let user_time = user.timestamp_field.is_some() || user.event_time.is_some();
        let time_field = fields
            .time_field
            .clone()
            .filter(|_| !user_time)
            .map(spanned);
        let ingest = (!user_time && fields.time_field.is_none()).then(|| spanned("ingest".into()));
        Some(SchemaKeys {
            schema: Spanned::new(span.clone(), schema),
            time_field,
            time_format: fields.time_format.clone().map(spanned),
            ingest,
            inferred: Some(fields),
        })
    }

    /// The decoding keys: the source's own, then what inference found.
    pub fn keys<'a>(
        &'a self,
        user: TimeKeys<'a>,
        timezone: Option<&'a Spanned<String>>,
        max_error_rate: Option<&'a Spanned<f64>>,
        id_field: Option<&'a Spanned<String>>,
        on_error: Option<&'a Spanned<String>>,
    ) -> DecodingKeys<'a> {
        DecodingKeys {
            schema: &self.schema,
            timestamp_field: user.timestamp_field.or(self.time_field.as_ref()),
            timestamp_format: user.timestamp_format.or(self.time_format.as_ref()),
            timezone,
            max_error_rate,
            event_time: user.event_time.or(self.ingest.as_ref()),
            id_field,
            on_error,
        }
    }

    /// What was inferred, for the user: `inferred from the first N records of WHERE:` and the
    /// keys, then its notes.
    pub fn describe(&self, from: &str) -> Option<String> {
        self.inferred.as_ref().map(|i| {
            let mut t = format!(
                "inferred from the first {} records of {from}:\n  {}",
                i.records,
                i.toml().replace('\n', "\n  ")
            );
            for n in &i.notes {
                t.push_str(&format!("\nnote: {n}"));
            }
            t
        })
    }
}

/// The decoding keys, borrowed from a source's config.
pub struct DecodingKeys<'a> {
    /// `schema`
    pub schema: &'a Spanned<IndexMap<String, Spanned<String>>>,
    /// `timestamp_field`
    pub timestamp_field: Option<&'a Spanned<String>>,
    /// `timestamp_format`
    pub timestamp_format: Option<&'a Spanned<String>>,
    /// `timezone`
    pub timezone: Option<&'a Spanned<String>>,
    /// `max_error_rate`
    pub max_error_rate: Option<&'a Spanned<f64>>,
    /// `event_time`
    pub event_time: Option<&'a Spanned<String>>,
    /// `id_field`
    pub id_field: Option<&'a Spanned<String>>,
    /// `on_error`
    pub on_error: Option<&'a Spanned<String>>,
}

/// The decoding keys of a source config, which names them as `DecodingKeys` does.
macro_rules! decoding_keys {
    ($config:expr) => {
        $crate::components::decoding::DecodingKeys {
            schema: &$config.schema,
            timestamp_field: $config.timestamp_field.as_ref(),
            timestamp_format: $config.timestamp_format.as_ref(),
            timezone: $config.timezone.as_ref(),
            max_error_rate: $config.max_error_rate.as_ref(),
            event_time: $config.event_time.as_ref(),
            id_field: $config.id_field.as_ref(),
            on_error: $config.on_error.as_ref(),
        }
    };
}
pub(crate) use decoding_keys;

/// Validates the decoding keys and builds the decoder.
pub fn decode_spec(ctx: &Ctx, keys: DecodingKeys) -> Result<DecodeSpec, Vec<Diag>> {
    let mut diags = Vec::new();
    let types: Vec<FieldType> = FieldType::every().collect();
    let type_names: Vec<&str> = types.iter().map(|t| t.name()).collect();
    let mut fields = Vec::new();
    for (name, ty) in keys.schema.get_ref() {
        // `list< string >` as well as `list<string>`.
        if let Some(t) = FieldType::parse(ty.get_ref().trim()) {
            fields.push(Field::new(name, t));
            continue;
        }
        match ctx.choice(&format!("schema.{name}"), ty, &type_names) {
            Ok(i) => fields.push(Field::new(name, types[i])),
            Err(d) => diags.push(d),
        }
    }
    if fields.is_empty() && diags.is_empty() {
        diags.push(
            ctx.error("the schema declares no fields")
                .at(keys.schema.span())
                .help("declare each field and its type: schema = { ts = \"timestamp\", temperature = \"f64\" }"),
        );
    }
    let time_field = keys
        .timestamp_field
        .map(|s| s.get_ref().as_str())
        .unwrap_or("ts");
    // The zone's own errors point at `timezone`; the format's (alone or with a zone) at
    // `timestamp_format`, or at `timezone` when the format is the default.
    let zone = match keys.timezone.map(|z| (z, TimeFormat::zone(z.get_ref()))) {
        Some((z, Err(e))) => {
            diags.push(ctx.error("invalid `timezone`").at(z.span()).help(e));
            Err(())
        }
        Some((_, Ok(tz))) => Ok(Some(tz)),
        None => Ok(None),
    };
    let time_format = match zone
        .map(|tz| TimeFormat::configure_in(keys.timestamp_format.map(|f| f.get_ref().as_str()), tz))
    {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => {
            let (key, at) = match (keys.timestamp_format, keys.timezone) {
                (Some(f), _) => ("timestamp_format", f.span()),
                (None, Some(z)) => ("timezone", z.span()),
                (None, None) => ("timestamp_format", keys.schema.span()),
            };
            diags.push(ctx.error(format!("invalid `{key}`")).at(at).help(e));
            TimeFormat::Iso8601
        }
        Err(()) => TimeFormat::Iso8601,
    };
    let max_error_rate = match keys.max_error_rate {
        Some(r) if (0.0..1.0).contains(r.get_ref()) => Some(*r.get_ref()),
        Some(r) => {
            diags.push(
                ctx.error(format!("`max_error_rate` must be a fraction from 0 up to 1, not {}", r.get_ref()))
                    .at(r.span())
                    .help("write the share of bad records allowed, such as 0.01 for 1%; remove it to allow any"),
            );
            None
        }
        None => None,
    };
    let on_error_names: Vec<&str> = OnError::ALL.iter().map(|p| p.name()).collect();
    let on_error = match keys.on_error {
        Some(p) => match ctx.choice("on_error", p, &on_error_names) {
            Ok(i) => OnError::ALL[i],
            Err(d) => {
                diags.push(d);
                OnError::DeadLetter
            }
        },
        None => OnError::DeadLetter,
    };
    let schema_names = || {
        fields
            .iter()
            .map(|f: &Field| f.name.as_str())
            .collect::<Vec<_>>()
    };
    let ingest_time = match keys.event_time {
        Some(e) => ctx
            .choice("event_time", e, &["field", "ingest"])
            .map_or_else(
                |d| {
                    diags.push(d);
                    false
                },
                |i| i == 1,
            ),
        None => false,
    };
    if let (true, Some(f)) = (ingest_time, keys.timestamp_field) {
        diags.push(
            ctx.error("`timestamp_field` names an event-time field, but `event_time = \"ingest\"` takes the time each record is read")
                .at(f.span())
                .help("remove timestamp_field, or event_time to read the time from the field"),
        );
    }
    match fields.iter().find(|f| f.name == time_field) {
        _ if ingest_time => {}
        Some(f) if f.ty == FieldType::Timestamp => {}
        Some(f) => diags.push(
            ctx.error(format!("the timestamp field `{time_field}` is declared as {}", f.ty))
                .at(keys.schema.span())
                .help(format!("declare it as `{time_field} = \"timestamp\"` and set timestamp_format to how it is written")),
        ),
        None if diags.is_empty() => {
            let at = keys.timestamp_field.map(|s| s.span()).unwrap_or(keys.schema.span());
            let names = schema_names();
            diags.push(
                ctx.error(format!("the schema has no timestamp field `{time_field}`"))
                    .at(at)
                    .help(match weir_operators::suggest::did_you_mean(time_field, names.iter().copied()) {
                        Some(s) => format!("did you mean timestamp_field = \"{s}\"?"),
                        None => format!("add `{time_field} = \"timestamp\"` to the schema, or name the event-time field with timestamp_field"),
                    }),
            )
        }
        None => {}
    }
    let id_field = keys.id_field.map(|s| s.get_ref().as_str()).unwrap_or("id");
    let assign_id = !fields.iter().any(|f| f.name == id_field);
    if assign_id {
        if let Some(s) = keys.id_field {
            let names = schema_names();
            diags.push(
                ctx.error(format!("the schema has no id field `{id_field}`"))
                    .at(s.span())
                    .help(match weir_operators::suggest::did_you_mean(id_field, names.iter().copied()) {
                        Some(s) => format!("did you mean id_field = \"{s}\"?"),
                        None => "declare it in the schema, or remove id_field to have Weir assign ids".into(),
                    }),
            );
        }
        // Weir assigns `source:file:line`, first in the record.
        fields.insert(0, Field::new(id_field, FieldType::String));
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    let mut schema = Schema::new(fields).with_id(id_field);
    match ingest_time {
        true => schema.processing_time = true,
        false => schema = schema.with_time(time_field),
    }
    let mut spec = DecodeSpec::new(&ctx.id, schema, time_format, assign_id, on_error);
    spec.max_error_rate = max_error_rate;
    spec.ingest_time = ingest_time;
    Ok(spec)
}

/// Checks `max_line_bytes` (default 16 MiB): at least 1 KiB, at most 1 GiB.
pub fn max_line_bytes(ctx: &Ctx, v: Option<&Spanned<i64>>, diags: &mut Vec<Diag>) -> usize {
    let default = weir_operators::framing::DEFAULT_MAX_LINE_BYTES;
    match v {
        None => default,
        Some(m) if (1024..=1 << 30).contains(m.get_ref()) => *m.get_ref() as usize,
        Some(m) => {
            diags.push(
                ctx.error(format!(
                    "`max_line_bytes` must be between 1024 and 1073741824, not {}",
                    m.get_ref()
                ))
                .at(m.span())
                .help(format!("remove it for the default, {default} (16 MiB)")),
            );
            default
        }
    }
}

/// The decoding keys every message-queue source (Kafka, Kinesis, Pub/Sub) has, beside its own.
pub struct MessageKeys<'a> {
    /// `schema`
    pub schema: &'a Spanned<SchemaDecl>,
    /// `timestamp_field`, `timestamp_format` and `event_time`
    pub time: TimeKeys<'a>,
    /// `timezone`
    pub timezone: Option<&'a Spanned<String>>,
    /// `max_error_rate`
    pub max_error_rate: Option<&'a Spanned<f64>>,
    /// `id_field`
    pub id_field: Option<&'a Spanned<String>>,
    /// `on_error`
    pub on_error: Option<&'a Spanned<String>>,
    /// `latency_from`: "read" or "event_time"
    pub latency_from: Option<&'a Spanned<String>>,
}

impl MessageKeys<'_> {
    /// Plans the decoding (the schema from `sample()` when it is `"infer"`): the spec, with
    /// where latency counts from, and for an inferred schema what was found in `what`. `None`
    /// when a key is wrong (said in `diags`).
    pub fn plan(
        &self,
        ctx: &Ctx,
        what: &str,
        sample: impl FnOnce() -> Result<weir_operators::infer::Inferred, String>,
        diags: &mut Vec<Diag>,
    ) -> Option<(DecodeSpec, Option<String>)> {
        let latency_from = ctx
            .optional_choice(
                "latency_from",
                self.latency_from,
                &["read", "event_time"],
                diags,
            )
            .map(|i| i == 1);
        let time = || TimeKeys { ..self.time };
        let schema_keys = SchemaKeys::new(ctx, self.schema, &time(), sample, diags)?;
        let inferred = schema_keys.describe(what);
        match decode_spec(
            ctx,
            schema_keys.keys(
                time(),
                self.timezone,
                self.max_error_rate,
                self.id_field,
                self.on_error,
            ),
        ) {
            Ok(mut d) => {
                d.latency_from_event_time = latency_from?;
                Some((d, inferred))
            }
            Err(mut d) => {
                diags.append(&mut d);
                None
            }
        }
    }
}
