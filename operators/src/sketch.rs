//! Approximate aggregates whose state does not depend on the order of its inputs, so that a
//! window's result is the same on any number of workers and whatever the arrival order:
//!
//! - [`Quantiles`], for `approx_percentile(x, q)`: a logarithmic histogram (the DDSketch
//!   scheme): each non-zero value counts in the bucket `ceil(log_γ |x|)` with
//!   `γ = (1 + α) / (1 - α)`, so every value in a bucket is within a relative error `α` (1%) of
//!   the bucket's representative. The state is a set of counts: merging adds them.
//! - [`Distinct`], for `approx_count_distinct(x)`: the distinct values' 64-bit hashes, kept
//!   exactly up to [`EXACT_DISTINCT`] of them, then a HyperLogLog of 4,096 registers (standard
//!   error 1.04 / √4096 = 1.6%). Registers keep maxima: merging takes them.
//!
//! ```
//! use weir_operators::sketch::{Distinct, Quantiles};
//!
//! let mut q = Quantiles::default();
//! (1..=1000).for_each(|i| q.add(i as f64));
//! let p99 = q.quantile(0.99).unwrap();
//! assert!((p99 - 990.0).abs() <= 0.01 * 990.0, "{p99}");
//!
//! let mut d = Distinct::default();
//! (0..100_000u64).for_each(|i| d.add(i % 5_000));
//! let n = d.estimate() as f64;
//! assert!((n - 5_000.0).abs() <= 0.05 * 5_000.0, "{n}");
//! ```

use std::collections::BTreeMap;

/// The relative accuracy of [`Quantiles`].
pub const QUANTILE_ACCURACY: f64 = 0.01;

/// How many distinct hashes [`Distinct`] keeps exactly before it becomes a HyperLogLog.
pub const EXACT_DISTINCT: usize = 512;

/// The bits of a hash that choose a HyperLogLog register.
const P: u32 = 12;
const REGISTERS: usize = 1 << P;

/// A mergeable, order-independent quantile sketch with relative accuracy
/// [`QUANTILE_ACCURACY`]. NaN values are ignored; infinities sort at the ends.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Quantiles {
    positive: BTreeMap<i32, u64>,
    negative: BTreeMap<i32, u64>,
    zeros: u64,
    pos_inf: u64,
    neg_inf: u64,
}

fn ln_gamma() -> f64 {
    ((1.0 + QUANTILE_ACCURACY) / (1.0 - QUANTILE_ACCURACY)).ln()
}

impl Quantiles {
    /// Adds one value.
    pub fn add(&mut self, x: f64) {
        if x.is_nan() {
            return;
        }
        if x == f64::INFINITY {
            self.pos_inf += 1;
        } else if x == f64::NEG_INFINITY {
            self.neg_inf += 1;
        } else if x == 0.0 {
            self.zeros += 1;
        } else {
            let i = (x.abs().ln() / ln_gamma()).ceil() as i32;
            let side = if x > 0.0 {
                &mut self.positive
            } else {
                &mut self.negative
            };
            *side.entry(i).or_insert(0) += 1;
        }
    }

    /// Adds another sketch's counts.
    pub fn merge(&mut self, other: &Quantiles) {
        for (i, n) in &other.positive {
            *self.positive.entry(*i).or_insert(0) += n;
        }
        for (i, n) in &other.negative {
            *self.negative.entry(*i).or_insert(0) += n;
        }
        self.zeros += other.zeros;
        self.pos_inf += other.pos_inf;
        self.neg_inf += other.neg_inf;
    }

    /// How many values were added.
    pub fn count(&self) -> u64 {
        self.positive.values().sum::<u64>()
            + self.negative.values().sum::<u64>()
            + self.zeros
            + self.pos_inf
            + self.neg_inf
    }

    /// The `q` quantile (`0 <= q <= 1`): within relative error [`QUANTILE_ACCURACY`] of the
    /// value of rank `floor(q * (n - 1))` (0-based) among the sorted values. `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * (n - 1) as f64).floor() as u64;
        let g = ln_gamma().exp();
        let value = |i: i32| 2.0 * g.powi(i) / (g + 1.0);
        let mut seen = self.neg_inf;
        if rank < seen {
            return Some(f64::NEG_INFINITY);
        }
        for (i, c) in self.negative.iter().rev() {
            seen += c;
            if rank < seen {
                return Some(-value(*i));
            }
        }
        seen += self.zeros;
        if rank < seen {
            return Some(0.0);
        }
        for (i, c) in &self.positive {
            seen += c;
            if rank < seen {
                return Some(value(*i));
            }
        }
        Some(f64::INFINITY)
    }

    /// Approximate heap bytes held.
    pub fn bytes(&self) -> usize {
        std::mem::size_of::<Self>() + (self.positive.len() + self.negative.len()) * 24
    }
}

/// A mergeable, order-independent distinct-count sketch over 64-bit hashes: exact up to
/// [`EXACT_DISTINCT`] distinct hashes, a HyperLogLog beyond.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Distinct {
    /// Sorted distinct hashes, while there are few.
    exact: Vec<u64>,
    /// The registers, once there are many.
    #[serde(with = "crate::checkpoint::serde_registers")]
    registers: Option<Box<[u8; REGISTERS]>>,
}

impl Distinct {
    /// Adds a (well-mixed) 64-bit hash.
    pub fn add(&mut self, hash: u64) {
        let hash = mix(hash);
        if let Some(r) = &mut self.registers {
            set(r, hash);
            return;
        }
        if let Err(i) = self.exact.binary_search(&hash) {
            self.exact.insert(i, hash);
            if self.exact.len() > EXACT_DISTINCT {
                let mut r = Box::new([0u8; REGISTERS]);
                for h in self.exact.drain(..) {
                    set(&mut r, h);
                }
                self.exact = Vec::new();
                self.registers = Some(r);
            }
        }
    }

    /// Adds another sketch's values.
    pub fn merge(&mut self, other: &Distinct) {
        match &other.registers {
            Some(o) => {
                let mut mine = self.registers.take().unwrap_or_else(|| {
                    let mut r = Box::new([0u8; REGISTERS]);
                    for h in self.exact.drain(..) {
                        set(&mut r, h);
                    }
                    r
                });
                self.exact = Vec::new();
                for (a, b) in mine.iter_mut().zip(o.iter()) {
                    *a = (*a).max(*b);
                }
                self.registers = Some(mine);
            }
            None => {
                // The hashes are already mixed: add them as they are.
                for &h in &other.exact {
                    match &mut self.registers {
                        Some(r) => set(r, h),
                        None => {
                            if let Err(i) = self.exact.binary_search(&h) {
                                self.exact.insert(i, h);
                            }
                        }
                    }
                }
                if self.registers.is_none() && self.exact.len() > EXACT_DISTINCT {
                    let mut r = Box::new([0u8; REGISTERS]);
                    for h in self.exact.drain(..) {
                        set(&mut r, h);
                    }
                    self.exact = Vec::new();
                    self.registers = Some(r);
                }
            }
        }
    }

    /// The estimated number of distinct values (exact while few).
    pub fn estimate(&self) -> u64 {
        let Some(r) = &self.registers else {
            return self.exact.len() as u64;
        };
        let m = REGISTERS as f64;
        let zeros = r.iter().filter(|&&x| x == 0).count();
        let sum: f64 = r.iter().map(|&x| 2f64.powi(-(x as i32))).sum();
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let raw = alpha * m * m / sum;
        let e = if raw <= 2.5 * m && zeros > 0 {
            // Linear counting for small cardinalities.
            m * (m / zeros as f64).ln()
        } else {
            raw
        };
        e.round() as u64
    }

    /// Approximate heap bytes held.
    pub fn bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.exact.capacity() * 8
            + self.registers.as_ref().map_or(0, |_| REGISTERS)
    }
}

use crate::window::mix64 as mix;

fn set(r: &mut [u8; REGISTERS], hash: u64) {
    let i = (hash >> (64 - P)) as usize;
    let rest = hash << P;
    let rank = (rest.leading_zeros().min(64 - P) + 1) as u8;
    r[i] = r[i].max(rank);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_the_bound_and_merge_like_one_sketch() {
        let xs: Vec<f64> = (0..20_000)
            .map(|i| ((i * 7919) % 20_000) as f64 * 0.37 - 1_000.0)
            .collect();
        let mut sorted = xs.clone();
        sorted.sort_by(f64::total_cmp);
        let mut whole = Quantiles::default();
        xs.iter().for_each(|&x| whole.add(x));
        let (mut a, mut b) = (Quantiles::default(), Quantiles::default());
        xs.iter()
            .enumerate()
            .for_each(|(i, &x)| if i % 3 == 0 { a.add(x) } else { b.add(x) });
        b.merge(&a);
        assert_eq!(b, whole);
        for q in [0.0, 0.01, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0] {
            let want = sorted[(q * (xs.len() - 1) as f64).floor() as usize];
            let got = whole.quantile(q).unwrap();
            assert!(
                (got - want).abs() <= QUANTILE_ACCURACY * want.abs() + 1e-12,
                "q {q}: {got} against {want}"
            );
        }
        assert_eq!(Quantiles::default().quantile(0.5), None);
    }

    #[test]
    fn distinct_is_exact_while_small_and_close_beyond() {
        let mut d = Distinct::default();
        for i in 0..2_000u64 {
            d.add(i % 300);
        }
        assert_eq!(d.estimate(), 300);
        for n in [1_000u64, 10_000, 100_000] {
            let mut whole = Distinct::default();
            let (mut a, mut b) = (Distinct::default(), Distinct::default());
            for i in 0..n * 2 {
                let v = i % n;
                whole.add(v);
                if i % 2 == 0 {
                    a.add(v)
                } else {
                    b.add(v)
                }
            }
            a.merge(&b);
            assert_eq!(a, whole, "merging is adding");
            let e = whole.estimate() as f64;
            assert!((e - n as f64).abs() <= 0.05 * n as f64, "{n}: {e}");
        }
    }
}
