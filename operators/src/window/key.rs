//! Group keys: the deterministic hash that routes a record to its worker and finds its group.

use std::hash::{Hash, Hasher};

use crate::value::Value;

/// A deterministic hash of a record's group key: the same in every worker and process, and
/// the same as [`Chunk::key_hashes`](crate::chunk::Chunk::key_hashes) of its column. A key of
/// one integer, timestamp, boolean or string field hashes as a window's or join's key table
/// hashes it (so a routed chunk carries its hashes to the table); other keys hash field by
/// field.
#[inline]
pub fn key_hash(values: &[Value], group_by: &[usize]) -> u64 {
    if let [p] = group_by {
        match &values[*p] {
            Value::Null => return NULL_HASH,
            Value::I64(v) | Value::Ts(v) => return hash_int(*v),
            Value::U64(v) => return hash_int(*v as i64),
            Value::Bool(b) => return hash_int(i64::from(*b)),
            Value::Str(s) => return hash_bytes(s.as_bytes()),
            Value::F64(_) | Value::List(_) => {}
        }
    }
    let mut h = KeyHasher(0);
    for &p in group_by {
        values[p].hash(&mut h);
    }
    h.finish()
}

/// The hash of a NULL single-field key.
pub(crate) const NULL_HASH: u64 = 0x9e37_79b9_7f4a_7c15;

/// An integer key's hash (timestamps, unsigned integers and booleans as their `i64`).
#[inline]
pub(crate) fn hash_int(v: i64) -> u64 {
    mix64(v as u64)
}

/// A byte key's hash ([`KeyHasher`] reads short keys in two loads).
#[inline]
pub(crate) fn hash_bytes(b: &[u8]) -> u64 {
    let mut h = KeyHasher::default();
    h.write(b);
    h.finish()
}

/// FxHash's word step with SplitMix64's finaliser.
#[derive(Clone, Default)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let n = bytes.len();
        let word = |s: &[u8]| u64::from_le_bytes(s.try_into().expect("8 bytes"));
        if n <= 16 {
            // Short keys (most ids): two loads that together cover every byte, and the length.
            let (a, b) = if n >= 8 {
                (word(&bytes[..8]), word(&bytes[n - 8..]))
            } else if n >= 4 {
                (
                    u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")) as u64,
                    u32::from_le_bytes(bytes[n - 4..].try_into().expect("4 bytes")) as u64,
                )
            } else if n > 0 {
                (
                    bytes[0] as u64 | (bytes[n / 2] as u64) << 8 | (bytes[n - 1] as u64) << 16,
                    0,
                )
            } else {
                (0, 0)
            };
            self.write_u64(a);
            self.write_u64(b ^ (n as u64) << 56);
            return;
        }
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.write_u64(word(c));
        }
        if !chunks.remainder().is_empty() {
            // The last eight bytes, overlapping the last whole word.
            self.write_u64(word(&bytes[n - 8..]) ^ (n as u64) << 56);
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.write_u64(i as u64)
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    #[inline]
    fn finish(&self) -> u64 {
        mix64(self.0)
    }
}

/// SplitMix64's finaliser: spreads any 64 bits over all 64.
#[inline]
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
