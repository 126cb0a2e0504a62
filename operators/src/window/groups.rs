//! Group keys in columns: a table from a key to a slot number, with the keys stored compactly
//! by kind — one `i64` per key for an integer, timestamp or boolean key, the bytes of a string
//! key, and for a key of several fields (or a float) the bytes of Arrow's row format, which
//! compares equal exactly when the values do. A batch's keys are read straight from its
//! columns ([`KeyView`]) and hashed in one pass.

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, StringArray};
use arrow::datatypes::{DataType, Int64Type, TimestampMicrosecondType, UInt64Type};
use arrow::row::{RowConverter, Rows, SortField};
use hashbrown::hash_table::HashTable;

use super::key::{hash_bytes, hash_int, NULL_HASH};
use crate::chunk::value_at;
use crate::value::{FieldType, Value};

/// How a window's group key is stored.
#[derive(Debug)]
pub(crate) enum KeyKind {
    /// No `group_by`: one group.
    Unit,
    /// One integer, timestamp or boolean field.
    Int(FieldType),
    /// One string field.
    Str,
    /// Several fields, or a float: Arrow's row format (with the fields' Arrow types).
    Rows(RowConverter, Vec<DataType>),
}

impl KeyKind {
    /// The kind for fields of these types.
    pub(crate) fn new(types: &[FieldType]) -> KeyKind {
        match types {
            [] => KeyKind::Unit,
            [t @ (FieldType::I64 | FieldType::U64 | FieldType::Timestamp | FieldType::Bool)] => {
                KeyKind::Int(*t)
            }
            [FieldType::String | FieldType::Json] => KeyKind::Str,
            ts => {
                let types: Vec<DataType> = ts.iter().map(|t| crate::chunk::data_type(*t)).collect();
                KeyKind::Rows(
                    RowConverter::new(types.iter().cloned().map(SortField::new).collect())
                        .expect("Weir's types have a row format"),
                    types,
                )
            }
        }
    }
}

/// `cols` in Arrow's row format by `c`, whose fields have `types`: a column of another type (an
/// all-NULL column: a pruned or NULL-typed field) takes the field's type, as NULLs.
pub(crate) fn to_rows(c: &RowConverter, types: &[DataType], cols: &[&ArrayRef]) -> Rows {
    let cols: Vec<ArrayRef> = cols
        .iter()
        .zip(types)
        .map(|(a, t)| match a.data_type() == t {
            true => (*a).clone(),
            false => arrow::array::new_null_array(t, a.len()),
        })
        .collect();
    c.convert_columns(&cols).expect("columns match their types")
}

/// One batch's keys, read from its columns.
pub(crate) enum KeyView<'a> {
    Unit,
    /// A single-field key whose column is all NULL.
    AllNull,
    Int(Vec<i64>, Option<&'a arrow::buffer::NullBuffer>),
    Str(&'a StringArray),
    Rows(Rows),
}

impl<'a> KeyView<'a> {
    /// The keys of a batch whose key columns are `cols`.
    pub(crate) fn new(kind: &KeyKind, cols: &[&'a ArrayRef]) -> KeyView<'a> {
        match kind {
            KeyKind::Unit => KeyView::Unit,
            KeyKind::Int(_) => {
                let a = cols[0];
                let vals: Vec<i64> = match a.data_type() {
                    DataType::Int64 => a.as_primitive::<Int64Type>().values().to_vec(),
                    DataType::UInt64 => a
                        .as_primitive::<UInt64Type>()
                        .values()
                        .iter()
                        .map(|&v| v as i64)
                        .collect(),
                    DataType::Timestamp(..) => a
                        .as_primitive::<TimestampMicrosecondType>()
                        .values()
                        .to_vec(),
                    DataType::Boolean => {
                        let b: &BooleanArray = a.as_boolean();
                        b.values().iter().map(i64::from).collect()
                    }
                    // An all-NULL column (the plan types it as the field's type).
                    _ => vec![0; a.len()],
                };
                if a.data_type() == &DataType::Null {
                    return KeyView::AllNull;
                }
                KeyView::Int(vals, a.nulls().filter(|n| n.null_count() > 0))
            }
            KeyKind::Str => match cols[0].data_type() {
                DataType::Utf8 => KeyView::Str(cols[0].as_string::<i32>()),
                _ => KeyView::AllNull,
            },
            KeyKind::Rows(c, types) => KeyView::Rows(to_rows(c, types, cols)),
        }
    }

    /// Row `row`'s key as a tag and bytes that are equal exactly when the keys are: a NULL
    /// key is tag 0 with no bytes, any other tag 1 and its value (an integer's 8 bytes, a
    /// string's bytes, a row of Arrow's row format); given to `f`.
    #[inline]
    pub(crate) fn with_key_bytes<T>(&self, row: usize, f: impl FnOnce(u8, &[u8]) -> T) -> T {
        match Groups::view_key(self, row) {
            KeyRef::Unit => f(1, &[]),
            KeyRef::Null => f(0, &[]),
            KeyRef::Int(v) => f(1, &v.to_be_bytes()),
            KeyRef::Bytes(b) => f(1, b),
        }
    }

    /// Each row's key hash.
    pub(crate) fn hashes(&self, rows: usize) -> Vec<u64> {
        match self {
            KeyView::Unit => vec![0; rows],
            KeyView::AllNull => vec![NULL_HASH; rows],
            KeyView::Int(v, nulls) => v
                .iter()
                .enumerate()
                .map(|(i, &x)| match nulls {
                    Some(n) if n.is_null(i) => NULL_HASH,
                    _ => hash_int(x),
                })
                .collect(),
            KeyView::Str(a) if a.null_count() == 0 => {
                let offs = a.value_offsets();
                let data = a.value_data();
                offs.windows(2)
                    .take(rows)
                    .map(|w| hash_bytes(&data[w[0] as usize..w[1] as usize]))
                    .collect()
            }
            KeyView::Str(a) => (0..rows)
                .map(|i| {
                    if a.is_null(i) {
                        NULL_HASH
                    } else {
                        hash_bytes(a.value(i).as_bytes())
                    }
                })
                .collect(),
            KeyView::Rows(r) => (0..rows).map(|i| hash_bytes(r.row(i).data())).collect(),
        }
    }
}

/// A stored key, borrowed.
#[derive(PartialEq, Eq, Clone, Copy)]
enum KeyRef<'a> {
    Unit,
    Null,
    Int(i64),
    Bytes(&'a [u8]),
}

impl KeyRef<'_> {
    fn hash(&self) -> u64 {
        match self {
            KeyRef::Unit => 0,
            KeyRef::Null => NULL_HASH,
            KeyRef::Int(v) => hash_int(*v),
            KeyRef::Bytes(b) => hash_bytes(b),
        }
    }
}

/// A byte key of a table that removes keys: up to 16 bytes inline, longer ones on the heap.
type SmallKey = smallvec::SmallVec<[u8; 16]>;

/// Where a table keeps its keys.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
enum Store {
    #[default]
    Unit,
    Int,
    Bytes,
}

/// A table's keys by slot.
#[derive(Default)]
struct KeyStore {
    store: Store,
    /// Integer keys by slot.
    ints: Vec<i64>,
    /// Byte keys by slot, one after another (`offsets[g]..offsets[g + 1]`), or each in its own
    /// [`SmallKey`] where keys are removed.
    offsets: Vec<u32>,
    bytes: Vec<u8>,
    boxed: Vec<SmallKey>,
    /// Which slots hold a NULL key (a single nullable field), sorted: rare.
    nulls: Vec<u32>,
    removable: bool,
}

impl KeyStore {
    #[inline]
    fn get(&self, g: u32) -> KeyRef<'_> {
        if !self.nulls.is_empty() && self.nulls.binary_search(&g).is_ok() {
            return KeyRef::Null;
        }
        let g = g as usize;
        match self.store {
            Store::Unit => KeyRef::Unit,
            Store::Int => KeyRef::Int(self.ints[g]),
            Store::Bytes if self.removable => KeyRef::Bytes(&self.boxed[g]),
            Store::Bytes => {
                KeyRef::Bytes(&self.bytes[self.offsets[g] as usize..self.offsets[g + 1] as usize])
            }
        }
    }

    /// Stores `key` at slot `g` (a new slot: the next one, or a freed one when removable).
    fn set(&mut self, g: u32, key: KeyRef<'_>) {
        let gi = g as usize;
        if key == KeyRef::Null {
            let at = self.nulls.binary_search(&g).unwrap_err();
            self.nulls.insert(at, g);
        }
        match self.store {
            Store::Unit => {}
            Store::Int => {
                while gi >= self.ints.len() {
                    crate::aggregate::push_growing(&mut self.ints, 0);
                }
                if let KeyRef::Int(v) = key {
                    self.ints[gi] = v;
                }
            }
            Store::Bytes if self.removable => {
                if gi >= self.boxed.len() {
                    self.boxed.resize(gi + 1, SmallKey::new());
                }
                if let KeyRef::Bytes(b) = key {
                    self.boxed[gi] = SmallKey::from_slice(b);
                }
            }
            Store::Bytes => {
                // Never removed, so slots come in order. Grown by a quarter when full, as
                // the aggregate states are (`push_growing`).
                if let KeyRef::Bytes(b) = key {
                    if self.bytes.len() + b.len() > self.bytes.capacity() {
                        self.bytes
                            .reserve_exact((self.bytes.len() / 4).max(b.len()).max(64));
                    }
                    self.bytes.extend_from_slice(b);
                }
                crate::aggregate::push_growing(&mut self.offsets, self.bytes.len() as u32);
            }
        }
    }

    /// Forgets the key at slot `g` (removable stores).
    fn clear(&mut self, g: u32) {
        if let Ok(at) = self.nulls.binary_search(&g) {
            self.nulls.remove(at);
        }
        if let Some(b) = self.boxed.get_mut(g as usize) {
            *b = SmallKey::new();
        }
    }

    fn bytes(&self) -> usize {
        self.ints.capacity() * 8
            + self.offsets.capacity() * 4
            + self.bytes.capacity()
            + self.boxed.capacity() * std::mem::size_of::<SmallKey>()
            + self
                .boxed
                .iter()
                .filter(|b| b.spilled())
                .map(|b| b.capacity())
                .sum::<usize>()
    }
}

/// Keys and their slots. Slots are dense from 0 unless keys are removed, which frees their
/// slots for reuse (sessions and sliding-window queues remove keys; panes never do).
#[derive(Default)]
pub(crate) struct Groups {
    table: HashTable<u32>,
    keys: KeyStore,
    /// Slots freed by `remove`.
    free: Vec<u32>,
    slots: u32,
}

impl Groups {
    /// An empty table for keys of `kind`; with `removable`, keys can be removed (each byte
    /// key is then stored in its own allocation).
    pub(crate) fn new(kind: &KeyKind, removable: bool) -> Groups {
        Groups {
            keys: KeyStore {
                store: match kind {
                    KeyKind::Unit => Store::Unit,
                    KeyKind::Int(_) => Store::Int,
                    KeyKind::Str | KeyKind::Rows(..) => Store::Bytes,
                },
                offsets: vec![0],
                removable,
                ..KeyStore::default()
            },
            ..Groups::default()
        }
    }

    /// An empty, non-removable table with room for `keys` keys of `bytes` key bytes in all.
    pub(crate) fn with_capacity(kind: &KeyKind, keys: usize, bytes: usize) -> Groups {
        let mut g = Groups::new(kind, false);
        if keys > 0 {
            g.table.reserve(keys, |_| 0);
            let k = &mut g.keys;
            match k.store {
                Store::Int => k.ints.reserve_exact(keys),
                Store::Bytes => {
                    k.offsets.reserve_exact(keys);
                    k.bytes.reserve_exact(bytes);
                }
                Store::Unit => {}
            }
        }
        g
    }

    /// The keys and key bytes held, to size a table for as many.
    pub(crate) fn size(&self) -> (usize, usize) {
        (self.len(), self.keys.bytes.len())
    }

    /// How many keys.
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    /// Every slot in use.
    pub(crate) fn slots(&self) -> impl Iterator<Item = u32> + Clone + '_ {
        self.table.iter().copied()
    }

    /// Bytes held: the table's slots and the keys' storage.
    pub(crate) fn bytes(&self) -> usize {
        self.table.capacity() * 5 + self.keys.bytes()
    }

    fn view_key<'v>(view: &'v KeyView<'_>, row: usize) -> KeyRef<'v> {
        match view {
            KeyView::Unit => KeyRef::Unit,
            KeyView::AllNull => KeyRef::Null,
            KeyView::Int(v, nulls) => match nulls {
                Some(n) if n.is_null(row) => KeyRef::Null,
                _ => KeyRef::Int(v[row]),
            },
            KeyView::Str(a) if a.is_null(row) => KeyRef::Null,
            KeyView::Str(a) => KeyRef::Bytes(a.value(row).as_bytes()),
            KeyView::Rows(r) => KeyRef::Bytes(r.row(row).data()),
        }
    }

    /// The slot of row `row`'s key (hashed to `hash`), added if new; and whether it is new.
    #[inline]
    pub(crate) fn slot(&mut self, view: &KeyView<'_>, row: usize, hash: u64) -> (u32, bool) {
        let key = Self::view_key(view, row);
        self.slot_of(key, hash)
    }

    /// The slots of batch rows `rows`, keys added if new, appended to `out`; returns how
    /// many keys were new. Tight loops for a string or integer key without NULLs.
    pub(crate) fn slots_of(
        &mut self,
        view: &KeyView<'_>,
        hashes: &[u64],
        rows: std::ops::Range<usize>,
        out: &mut Vec<u32>,
    ) -> usize {
        let mut new = 0;
        let k = &self.keys;
        match (view, k.store) {
            (KeyView::Str(a), Store::Bytes)
                if !k.removable && k.nulls.is_empty() && a.null_count() == 0 =>
            {
                let offs = a.value_offsets();
                let data = a.value_data();
                for r in rows {
                    let key = &data[offs[r] as usize..offs[r + 1] as usize];
                    let h = hashes[r];
                    let (bytes, offsets) = (&self.keys.bytes, &self.keys.offsets);
                    let found = self.table.find(h, |&g| {
                        let g = g as usize;
                        &bytes[offsets[g] as usize..offsets[g + 1] as usize] == key
                    });
                    match found {
                        Some(&g) => out.push(g),
                        None => {
                            out.push(self.slot_of(KeyRef::Bytes(key), h).0);
                            new += 1;
                        }
                    }
                }
            }
            (KeyView::Int(v, None), Store::Int) if k.nulls.is_empty() => {
                for r in rows {
                    let (key, h) = (v[r], hashes[r]);
                    let ints = &self.keys.ints;
                    match self.table.find(h, |&g| ints[g as usize] == key) {
                        Some(&g) => out.push(g),
                        None => {
                            out.push(self.slot_of(KeyRef::Int(key), h).0);
                            new += 1;
                        }
                    }
                }
            }
            _ => {
                for r in rows {
                    let (g, n) = self.slot(view, r, hashes[r]);
                    out.push(g);
                    new += usize::from(n);
                }
            }
        }
        new
    }

    /// The slot of `other`'s key `g`, added if new; and whether it is new.
    pub(crate) fn slot_from(&mut self, other: &Groups, g: u32) -> (u32, bool) {
        let key = other.keys.get(g);
        self.slot_of(key, key.hash())
    }

    /// The slot of batch row `row`'s key (hashed to `hash`), if present.
    #[inline]
    pub(crate) fn find(&self, view: &KeyView<'_>, row: usize, hash: u64) -> Option<u32> {
        let key = Self::view_key(view, row);
        self.table.find(hash, |&s| self.keys.get(s) == key).copied()
    }

    /// The slot of `other`'s key `g`, if present.
    pub(crate) fn find_from(&self, other: &Groups, g: u32) -> Option<u32> {
        let key = other.keys.get(g);
        self.table
            .find(key.hash(), |&s| self.keys.get(s) == key)
            .copied()
    }

    #[inline]
    fn slot_of(&mut self, key: KeyRef<'_>, hash: u64) -> (u32, bool) {
        if let Some(&g) = self.table.find(hash, |&s| self.keys.get(s) == key) {
            return (g, false);
        }
        let g = match self.free.pop() {
            Some(g) => g,
            None => {
                self.slots += 1;
                self.slots - 1
            }
        };
        self.keys.set(g, key);
        let keys = &self.keys;
        self.table.insert_unique(hash, g, |&s| keys.get(s).hash());
        (g, true)
    }

    /// Removes key slot `g` (only in a removable table), freeing the slot.
    pub(crate) fn remove(&mut self, g: u32) {
        let hash = self.keys.get(g).hash();
        if let Ok(e) = self.table.find_entry(hash, |&s| s == g) {
            e.remove();
        }
        self.keys.clear(g);
        self.free.push(g);
    }

    /// Key `g` as values.
    pub(crate) fn values(&self, kind: &KeyKind, g: u32) -> Vec<Value> {
        match (kind, self.keys.get(g)) {
            (KeyKind::Unit, _) => Vec::new(),
            (KeyKind::Int(_) | KeyKind::Str, KeyRef::Null) => vec![Value::Null],
            (KeyKind::Int(t), KeyRef::Int(v)) => vec![match t {
                FieldType::U64 => Value::U64(v as u64),
                FieldType::Timestamp => Value::Ts(v),
                FieldType::Bool => Value::Bool(v != 0),
                _ => Value::I64(v),
            }],
            (KeyKind::Str, KeyRef::Bytes(b)) => {
                vec![Value::Str(String::from_utf8_lossy(b).as_ref().into())]
            }
            (KeyKind::Rows(c, _), KeyRef::Bytes(b)) => {
                let parser = c.parser();
                let row = parser.parse(b);
                match c.convert_rows(std::iter::once(row)) {
                    Ok(cols) => cols.iter().map(|a| value_at(a, 0)).collect(),
                    Err(_) => Vec::new(),
                }
            }
            _ => Vec::new(),
        }
    }
}
