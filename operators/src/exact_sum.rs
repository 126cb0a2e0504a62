//! Exact floating-point sums: the result is the true sum of the inputs, rounded once to the
//! nearest `f64` (ties to even), so it does not depend on the order of the additions.
//!
//! Window aggregates need this: records of one group reach its worker in an order that depends
//! on the number of workers and on scheduling, and a naive `f64` sum would differ in its last
//! bits from run to run. The accumulator is a fixed-point "superaccumulator" wide enough for
//! every finite `f64` (after R. M. Neal, *Fast exact summation using small and large
//! superaccumulators*, 2015): each addition touches three 32-bit chunks, with carries
//! propagated lazily.
//!
//! ```
//! use weir_operators::exact_sum::ExactSum;
//!
//! let xs = [1e16, 1.0, -1e16, 0.1];
//! let naive: f64 = xs.iter().sum();
//! let mut s = ExactSum::default();
//! xs.iter().for_each(|&x| s.add(x));
//! assert_eq!(naive, 0.1, "1.0 was lost");
//! assert_eq!(s.value(), 1.1);
//! ```

/// Chunks of 32 bits; chunk `k` weighs `2^(32k - 1074)`. 68 chunks cover every finite `f64`
/// shifted into place (bits 0..2098) with room for the carries of 2^64 additions.
const CHUNKS: usize = 68;
/// Additions between carry propagations (each chunk stays far from overflow).
const CARRY_EVERY: u32 = 1 << 30;

/// An exact sum of `f64` values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExactSum {
    chunks: [i64; CHUNKS],
    /// Additions since the last carry propagation (merged sums count all of theirs).
    pending: u32,
    /// The range of chunks that may be non-zero, so merging touches only those.
    lo: u8,
    hi: u8,
    nan: bool,
    pos_inf: bool,
    neg_inf: bool,
}

impl Default for ExactSum {
    fn default() -> ExactSum {
        ExactSum {
            chunks: [0; CHUNKS],
            pending: 0,
            lo: CHUNKS as u8,
            hi: 0,
            nan: false,
            pos_inf: false,
            neg_inf: false,
        }
    }
}

impl ExactSum {
    /// Adds `x`.
    #[inline]
    pub fn add(&mut self, x: f64) {
        let bits = x.to_bits();
        let exp = ((bits >> 52) & 0x7ff) as usize;
        let frac = bits & ((1 << 52) - 1);
        if exp == 0x7ff {
            if frac != 0 {
                self.nan = true;
            } else if x > 0.0 {
                self.pos_inf = true;
            } else {
                self.neg_inf = true;
            }
            return;
        }
        let (m, b) = if exp == 0 {
            (frac, 0)
        } else {
            (frac | (1 << 52), exp - 1)
        };
        if m == 0 {
            return;
        }
        let v = (m as u128) << (b % 32);
        let k = b / 32;
        self.lo = self.lo.min(k as u8);
        self.hi = self.hi.max(k as u8 + 2);
        let parts = [
            (v & 0xffff_ffff) as i64,
            ((v >> 32) & 0xffff_ffff) as i64,
            (v >> 64) as i64,
        ];
        if bits >> 63 == 0 {
            for (c, p) in self.chunks[k..k + 3].iter_mut().zip(parts) {
                *c += p;
            }
        } else {
            for (c, p) in self.chunks[k..k + 3].iter_mut().zip(parts) {
                *c -= p;
            }
        }
        self.pending += 1;
        if self.pending >= CARRY_EVERY {
            self.carry();
        }
    }

    /// Adds another sum into this one.
    pub fn merge(&mut self, other: &ExactSum) {
        if self.pending as u64 + other.pending as u64 + 1 >= CARRY_EVERY as u64 {
            self.carry();
        }
        if other.lo <= other.hi {
            let (lo, hi) = (other.lo as usize, other.hi as usize);
            for (c, d) in self.chunks[lo..=hi].iter_mut().zip(&other.chunks[lo..=hi]) {
                *c += d;
            }
            self.lo = self.lo.min(other.lo);
            self.hi = self.hi.max(other.hi);
        }
        self.pending += other.pending + 1;
        if self.pending >= CARRY_EVERY {
            self.carry();
        }
        self.nan |= other.nan;
        self.pos_inf |= other.pos_inf;
        self.neg_inf |= other.neg_inf;
    }

    /// Propagates carries: every chunk but the top one ends in `0..2^32`.
    fn carry(&mut self) {
        for i in 0..CHUNKS - 1 {
            let c = self.chunks[i] >> 32;
            self.chunks[i] -= c << 32;
            self.chunks[i + 1] += c;
        }
        self.pending = 0;
        self.lo = 0;
        self.hi = CHUNKS as u8 - 1;
    }

    /// The sum, correctly rounded (NaN if any input was NaN or both infinities were added).
    pub fn value(&self) -> f64 {
        if self.nan || (self.pos_inf && self.neg_inf) {
            return f64::NAN;
        }
        if self.pos_inf {
            return f64::INFINITY;
        }
        if self.neg_inf {
            return f64::NEG_INFINITY;
        }
        let mut s = self.clone();
        s.carry();
        let negative = s.chunks[CHUNKS - 1] < 0;
        if negative {
            for c in s.chunks.iter_mut() {
                *c = -*c;
            }
            s.carry();
        }
        let Some(h) = s.chunks.iter().rposition(|&c| c != 0) else {
            return 0.0;
        };
        // Position of the highest set bit, counted from 2^-1074.
        let p = 32 * h + 63 - (s.chunks[h] as u64).leading_zeros() as usize;
        let magnitude = if p < 53 {
            // Exactly representable: at most 53 bits above 2^-1074.
            let m = s.bits(0, 64);
            m as f64 * f64::from_bits(1) // 2^-1074, exact product
        } else {
            let lo = p as isize - 63;
            let top = s.bits(lo, 64);
            let sticky = s.any_below(lo);
            let mut mant = top >> 11;
            let rem = top & 0x7ff;
            let mut p = p;
            if rem > 0x400 || (rem == 0x400 && (sticky || mant & 1 == 1)) {
                mant += 1;
                if mant == 1 << 53 {
                    mant >>= 1;
                    p += 1;
                }
            }
            let exp_field = p - 51; // the leading bit weighs 2^(p - 1074)
            if exp_field >= 0x7ff {
                f64::INFINITY
            } else {
                f64::from_bits(((exp_field as u64) << 52) | (mant & ((1 << 52) - 1)))
            }
        };
        if negative {
            -magnitude
        } else {
            magnitude
        }
    }

    /// `n` bits (at most 64) starting at bit `lo` (bits below 0 read as zero); carried chunks.
    fn bits(&self, lo: isize, n: usize) -> u64 {
        let mut out = 0u64;
        for j in 0..n {
            let i = lo + j as isize;
            if i >= 0 {
                let i = i as usize;
                if (self.chunks[i / 32] >> (i % 32)) & 1 == 1 {
                    out |= 1 << j;
                }
            }
        }
        out
    }

    /// Whether any bit below `lo` is set; carried chunks.
    fn any_below(&self, lo: isize) -> bool {
        if lo <= 0 {
            return false;
        }
        let lo = lo as usize;
        let (k, r) = (lo / 32, lo % 32);
        self.chunks[..k].iter().any(|&c| c != 0) || (r > 0 && self.chunks[k] & ((1 << r) - 1) != 0)
    }
}

/// The correctly rounded sum by another method: CPython's `math.fsum` (Shewchuk's algorithm,
/// with its exact final rounding). Slower, and it allocates; it is an independent reference
/// that tests check [`ExactSum`] and window averages against.
///
/// ```
/// assert_eq!(weir_operators::exact_sum::fsum(&[1e16, 1.0, -1e16]), 1.0);
/// ```
pub fn fsum(xs: &[f64]) -> f64 {
    let mut partials: Vec<f64> = Vec::new();
    for &x0 in xs {
        let mut x = x0;
        let mut i = 0;
        for j in 0..partials.len() {
            let mut y = partials[j];
            if x.abs() < y.abs() {
                std::mem::swap(&mut x, &mut y);
            }
            let hi = x + y;
            let lo = y - (hi - x);
            if lo != 0.0 {
                partials[i] = lo;
                i += 1;
            }
            x = hi;
        }
        partials.truncate(i);
        partials.push(x);
    }
    let mut n = partials.len();
    let mut hi = 0.0;
    if n > 0 {
        n -= 1;
        hi = partials[n];
        let mut lo = 0.0;
        while n > 0 {
            let x = hi;
            n -= 1;
            let y = partials[n];
            hi = x + y;
            let yr = hi - x;
            lo = y - yr;
            if lo != 0.0 {
                break;
            }
        }
        if n > 0 && ((lo < 0.0 && partials[n - 1] < 0.0) || (lo > 0.0 && partials[n - 1] > 0.0)) {
            let y = lo * 2.0;
            let x = hi + y;
            let yr = x - hi;
            if y == yr {
                hi = x;
            }
        }
    }
    hi
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(xs: &[f64]) -> f64 {
        let mut s = ExactSum::default();
        xs.iter().for_each(|&x| s.add(x));
        s.value()
    }

    /// A small deterministic generator of awkward floats.
    fn floats(seed: u64, n: usize, exp_range: i32) -> Vec<f64> {
        let mut z = seed;
        (0..n)
            .map(|_| {
                z = z
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let m = (z >> 11) as f64 / (1u64 << 53) as f64;
                let e = ((z >> 3) % (2 * exp_range as u64 + 1)) as i32 - exp_range;
                let sign = if z & 1 == 0 { 1.0 } else { -1.0 };
                sign * m * 2f64.powi(e)
            })
            .collect()
    }

    #[test]
    fn matches_a_correctly_rounded_reference() {
        for seed in 0..200 {
            for exp_range in [0, 5, 60, 300, 1000] {
                let xs = floats(seed, 1 + (seed as usize * 7) % 300, exp_range);
                assert_eq!(
                    sum(&xs).to_bits(),
                    fsum(&xs).to_bits(),
                    "seed {seed}, range {exp_range}"
                );
            }
        }
    }

    #[test]
    fn order_does_not_matter() {
        let mut xs = floats(42, 5000, 40);
        let a = sum(&xs);
        xs.reverse();
        assert_eq!(a.to_bits(), sum(&xs).to_bits());
        xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
        assert_eq!(a.to_bits(), sum(&xs).to_bits());
    }

    #[test]
    fn edge_values() {
        assert_eq!(sum(&[]), 0.0);
        assert_eq!(sum(&[f64::MAX, f64::MAX]), f64::INFINITY);
        assert_eq!(sum(&[f64::MAX, f64::MAX, -f64::MAX]), f64::MAX);
        assert_eq!(
            sum(&[f64::from_bits(1), f64::from_bits(1)]),
            f64::from_bits(2)
        );
        assert_eq!(
            sum(&[f64::MIN_POSITIVE, -f64::from_bits(1)]),
            f64::MIN_POSITIVE - f64::from_bits(1)
        );
        assert!(sum(&[f64::INFINITY, f64::NEG_INFINITY]).is_nan());
        assert_eq!(sum(&[1.0, f64::INFINITY]), f64::INFINITY);
        assert_eq!(sum(&[0.1, 0.2]), 0.30000000000000004);
        assert_eq!(sum(&[-0.5, -0.25]), -0.75);
        // Ties round to even.
        assert_eq!(sum(&[1.0, f64::EPSILON / 2.0]), 1.0);
        assert_eq!(
            sum(&[1.0 + f64::EPSILON, f64::EPSILON / 2.0]),
            1.0 + 2.0 * f64::EPSILON
        );
    }

    #[test]
    fn merge_equals_adding_everything() {
        let xs = floats(7, 1000, 80);
        let mut a = ExactSum::default();
        let mut b = ExactSum::default();
        xs[..400].iter().for_each(|&x| a.add(x));
        xs[400..].iter().for_each(|&x| b.add(x));
        a.merge(&b);
        assert_eq!(a.value().to_bits(), sum(&xs).to_bits());
    }
}
