//! The `view` sink's writer: a SQLite table holding the latest record per key (an upsert for
//! each record), for dashboards and queries with any SQLite client — the serving view of a
//! lambda architecture, where a batch run's results for a key replace the live run's.
//!
//! The sink hands it JSON lines (the sink's encoding); each flush writes the complete lines in
//! one transaction, so a reader sees whole batches. Columns are the record's fields (a nested
//! field by its dotted path): integers and booleans as `INTEGER`, floats as `REAL`, strings,
//! timestamps (RFC 3339, UTC, which sort as times), `json` and lists (JSON text) as `TEXT`.
//!
//! ```
//! use std::io::Write;
//! use weir_operators::schema::{Field, Schema};
//! use weir_operators::value::FieldType;
//! use weir_operators::view::ViewWriter;
//!
//! let dir = std::env::temp_dir().join(format!("weir-view-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let db = dir.join("v.db");
//! let schema = Schema::new(vec![Field::new("device", FieldType::String), Field::new("n", FieldType::I64)]);
//! let mut w = ViewWriter::open(&db, "counts", &schema, &[0]).unwrap();
//! w.write_all(b"{\"device\":\"a\",\"n\":1}\n{\"device\":\"b\",\"n\":2}\n{\"device\":\"a\",\"n\":3}\n").unwrap();
//! w.flush().unwrap();
//! let c = rusqlite::Connection::open(&db).unwrap();
//! let n: i64 = c.query_row("SELECT n FROM counts WHERE device = 'a'", [], |r| r.get(0)).unwrap();
//! assert_eq!(n, 3, "the latest record of key a");
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```

use std::io::Write;
use std::path::Path;

use rusqlite::types::Value as Sql;

use crate::schema::Schema;
use crate::value::FieldType;

/// Writes JSON lines into a SQLite table, upserting by key.
pub struct ViewWriter {
    conn: rusqlite::Connection,
    insert: String,
    /// Each column's path in the JSON record.
    paths: Vec<Vec<String>>,
    pending: Vec<u8>,
}

/// A quoted SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl ViewWriter {
    /// Opens (creating it and its table if need be) the database at `path`, table `table`
    /// with the fields of `schema`, keyed by the fields at `key` (none: every record is a row).
    /// An existing table must have these columns.
    pub fn open(
        path: &Path,
        table: &str,
        schema: &Schema,
        key: &[usize],
    ) -> Result<ViewWriter, String> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create directory {}: {e}", dir.display()))?;
        }
        let conn = rusqlite::Connection::open(path)
            .map_err(|e| format!("cannot open the database {}: {e}", path.display()))?;
        // Readers (dashboards) may query while the run writes.
        let _ = conn.pragma_update(None, "journal_mode", "WAL");
        let columns: Vec<String> = schema
            .fields
            .iter()
            .map(|f| {
                let ty = match f.ty {
                    FieldType::I64 | FieldType::U64 | FieldType::Bool => "INTEGER",
                    FieldType::F64 => "REAL",
                    _ => "TEXT",
                };
                format!("{} {ty}", ident(&f.name))
            })
            .collect();
        let keys: Vec<String> = key.iter().map(|&k| ident(&schema.fields[k].name)).collect();
        let mut create = format!(
            "CREATE TABLE IF NOT EXISTS {} ({}",
            ident(table),
            columns.join(", ")
        );
        if !keys.is_empty() {
            create.push_str(&format!(", PRIMARY KEY ({})", keys.join(", ")));
        }
        create.push(')');
        conn.execute(&create, []).map_err(|e| {
            format!(
                "cannot create the table `{table}` in {}: {e}",
                path.display()
            )
        })?;
        let existing: Vec<String> = conn
            .prepare(&format!(
                "SELECT name FROM pragma_table_info({})",
                ident(table).replace('"', "'")
            ))
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .map_err(|e| format!("cannot read the table `{table}`: {e}"))?;
        let wanted: Vec<String> = schema.fields.iter().map(|f| f.name.to_string()).collect();
        if existing != wanted {
            return Err(format!(
                "the table `{table}` in {} has the columns ({}), not the sink's ({}): drop it, or give the sink another `table`",
                path.display(),
                existing.join(", "),
                wanted.join(", ")
            ));
        }
        let names: Vec<String> = schema.fields.iter().map(|f| ident(&f.name)).collect();
        let marks = vec!["?"; names.len()].join(", ");
        let verb = match keys.is_empty() {
            true => "INSERT",
            false => "INSERT OR REPLACE",
        };
        Ok(ViewWriter {
            conn,
            insert: format!(
                "{verb} INTO {} ({}) VALUES ({marks})",
                ident(table),
                names.join(", ")
            ),
            paths: schema
                .fields
                .iter()
                .map(|f| f.name.split('.').map(String::from).collect())
                .collect(),
            pending: Vec::new(),
        })
    }

    /// Writes the complete lines pending, in one transaction.
    fn write_lines(&mut self) -> rusqlite::Result<()> {
        let Some(end) = self.pending.iter().rposition(|&b| b == b'\n') else {
            return Ok(());
        };
        let lines: Vec<u8> = self.pending.drain(..=end).collect();
        let tx = self.conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(&self.insert)?;
            for line in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                let Ok(record) = serde_json::from_slice::<serde_json::Value>(line) else {
                    continue;
                };
                let values: Vec<Sql> = self
                    .paths
                    .iter()
                    .map(|p| {
                        let mut v = &record;
                        for seg in p {
                            v = v.get(seg).unwrap_or(&serde_json::Value::Null);
                        }
                        sql_value(v)
                    })
                    .collect();
                insert.execute(rusqlite::params_from_iter(values))?;
            }
        }
        tx.commit()
    }
}

/// A JSON value as SQLite stores it.
fn sql_value(v: &serde_json::Value) -> Sql {
    use serde_json::Value as J;
    match v {
        J::Null => Sql::Null,
        J::Bool(b) => Sql::Integer(i64::from(*b)),
        J::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Sql::Integer(i),
            // Past i64: kept exactly, as text.
            (None, _) if n.is_u64() => Sql::Text(n.to_string()),
            (None, Some(f)) => Sql::Real(f),
            (None, None) => Sql::Null,
        },
        J::String(s) => Sql::Text(s.clone()),
        other => Sql::Text(other.to_string()),
    }
}

impl Write for ViewWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.write_lines().map_err(std::io::Error::other)
    }
}
