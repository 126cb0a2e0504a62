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
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExactSum {
    #[serde(with = "crate::checkpoint::serde_array")]
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

/// An exact sum in 24 bytes: the sum as a 128-bit integer times a power of two while the
/// inputs' bits fit in that window (any run of values within about 2^70 of each other in
/// magnitude, such as sensor readings), and an [`ExactSum`] from the first value that does not
/// fit. Either way the sum is exact, so its value — rounded once — does not depend on the order
/// of additions and merges. Windows keep one per group, where an `ExactSum` (560 bytes) would
/// dominate their state.
///
/// ```
/// use weir_operators::exact_sum::SmallSum;
///
/// let mut s = SmallSum::default();
/// [1e16, 1.0, -1e16, 0.1].iter().for_each(|&x| s.add(x));
/// assert_eq!(s.value(), 1.1);
/// assert_eq!(std::mem::size_of::<SmallSum>(), 24);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SmallSum {
    /// `(hi * 2^64 + lo) * 2^exp`, plus the non-finite inputs seen.
    Fixed {
        /// The low 64 bits of the integer.
        lo: u64,
        /// The high 64 bits (two's complement).
        hi: i64,
        /// The weight of the integer's unit: `2^exp`.
        exp: i16,
        /// A NaN was added.
        nan: bool,
        /// `+inf` was added.
        pos_inf: bool,
        /// `-inf` was added.
        neg_inf: bool,
    },
    /// The wide form, for inputs spread over a larger range.
    Wide(Box<ExactSum>),
}

impl Default for SmallSum {
    fn default() -> SmallSum {
        SmallSum::Fixed {
            lo: 0,
            hi: 0,
            exp: 0,
            nan: false,
            pos_inf: false,
            neg_inf: false,
        }
    }
}

/// The fixed form's unit stays at or above `2^MIN_EXP` (so its value is a normal `f64`) and
/// at or below `2^MAX_EXP` (so every piece of it is finite).
const MIN_EXP: i32 = -1000;
const MAX_EXP: i32 = 850;

impl SmallSum {
    /// Adds `x`.
    #[inline(always)]
    pub fn add(&mut self, x: f64) {
        let bits = x.to_bits();
        let e = ((bits >> 52) & 0x7ff) as i32;
        let frac = bits & ((1 << 52) - 1);
        if e == 0x7ff {
            self.add_special(x);
            return;
        }
        let (m, ex) = if e == 0 {
            (frac, -1074)
        } else {
            (frac | (1 << 52), e - 1075)
        };
        if m == 0 {
            return;
        }
        // The common case: a value at or above the sum's unit, shifted into place within
        // 64 bits, and no overflow.
        if let SmallSum::Fixed { lo, hi, exp, .. } = self {
            let by = ex - *exp as i32;
            let acc = wide(*lo, *hi);
            if acc != 0 && (0..=64).contains(&by) {
                let v = (m as i128) << by;
                let v = if x < 0.0 { -v } else { v };
                if let Some(a) = acc.checked_add(v) {
                    if a != 0 {
                        *lo = a as u64;
                        *hi = (a >> 64) as i64;
                        return;
                    }
                }
            }
        }
        let m = m as i128;
        self.add_scaled(if x < 0.0 { -m } else { m }, ex);
    }

    fn add_special(&mut self, x: f64) {
        match self {
            SmallSum::Fixed {
                nan,
                pos_inf,
                neg_inf,
                ..
            } => {
                if x.is_nan() {
                    *nan = true;
                } else if x > 0.0 {
                    *pos_inf = true;
                } else {
                    *neg_inf = true;
                }
            }
            SmallSum::Wide(w) => w.add(x),
        }
    }

    /// Adds `v * 2^e`.
    #[inline]
    fn add_scaled(&mut self, mut v: i128, mut e: i32) {
        let SmallSum::Fixed { lo, hi, exp, .. } = self else {
            let SmallSum::Wide(w) = self else {
                unreachable!()
            };
            add_pieces(w, v, e);
            return;
        };
        let tz = v.trailing_zeros().min(127) as i32;
        v >>= tz;
        e += tz;
        let acc = wide(*lo, *hi);
        let result = if acc == 0 {
            (MIN_EXP..=MAX_EXP).contains(&e).then_some((v, e))
        } else {
            let e0 = *exp as i32;
            if e >= e0 {
                shl(v, e - e0)
                    .and_then(|s| acc.checked_add(s))
                    .map(|a| (a, e0))
            } else if e < MIN_EXP {
                None
            } else {
                shl(acc, e0 - e)
                    .and_then(|a| a.checked_add(v))
                    .map(|a| (a, e))
            }
        };
        match result {
            Some((a, e)) => {
                *lo = a as u64;
                *hi = (a >> 64) as i64;
                *exp = if a == 0 { 0 } else { e as i16 };
            }
            None => {
                let mut w = self.widen();
                add_pieces(&mut w, v, e);
                *self = SmallSum::Wide(w);
            }
        }
    }

    /// The same sum as an [`ExactSum`].
    fn widen(&self) -> Box<ExactSum> {
        match self {
            SmallSum::Wide(w) => w.clone(),
            SmallSum::Fixed {
                lo,
                hi,
                exp,
                nan,
                pos_inf,
                neg_inf,
            } => {
                let mut w = Box::<ExactSum>::default();
                add_pieces(&mut w, wide(*lo, *hi), *exp as i32);
                w.nan = *nan;
                w.pos_inf = *pos_inf;
                w.neg_inf = *neg_inf;
                w
            }
        }
    }

    /// Adds another sum into this one.
    pub fn merge(&mut self, other: &SmallSum) {
        match other {
            SmallSum::Fixed {
                lo,
                hi,
                exp,
                nan,
                pos_inf,
                neg_inf,
            } => {
                for (flag, x) in [
                    (*nan, f64::NAN),
                    (*pos_inf, f64::INFINITY),
                    (*neg_inf, f64::NEG_INFINITY),
                ] {
                    if flag {
                        self.add_special(x);
                    }
                }
                let v = wide(*lo, *hi);
                if v != 0 {
                    self.add_scaled(v, *exp as i32);
                }
            }
            SmallSum::Wide(o) => {
                let mut w = self.widen();
                w.merge(o);
                *self = SmallSum::Wide(w);
            }
        }
    }

    /// The sum, correctly rounded (NaN if any input was NaN or both infinities were added).
    pub fn value(&self) -> f64 {
        match self {
            SmallSum::Wide(w) => w.value(),
            SmallSum::Fixed {
                lo,
                hi,
                exp,
                nan,
                pos_inf,
                neg_inf,
            } => {
                if *nan || (*pos_inf && *neg_inf) {
                    return f64::NAN;
                }
                if *pos_inf {
                    return f64::INFINITY;
                }
                if *neg_inf {
                    return f64::NEG_INFINITY;
                }
                let a = wide(*lo, *hi);
                // `as` rounds to nearest, ties to even; scaling by a power of two whose result
                // is a normal number is exact.
                (a as f64) * pow2(*exp as i32)
            }
        }
    }
}

/// The 128-bit integer of a fixed sum's two halves.
#[inline]
fn wide(lo: u64, hi: i64) -> i128 {
    ((hi as i128) << 64) | (lo as i128)
}

/// `v << by`, if no bit is lost and the sign is kept.
#[inline]
fn shl(v: i128, by: i32) -> Option<i128> {
    if by >= 127 {
        return (v == 0).then_some(0);
    }
    let s = v << by;
    (s >> by == v).then_some(s)
}

/// `2^e` for `e` in `-1022..=1023`.
#[inline]
fn pow2(e: i32) -> f64 {
    f64::from_bits(((e + 1023) as u64) << 52)
}

/// Adds `v * 2^e` to `w` exactly, in pieces of at most 50 bits (each an exact `f64`).
fn add_pieces(w: &mut ExactSum, v: i128, e: i32) {
    let negative = v < 0;
    let mut u = v.unsigned_abs();
    let mut e = e;
    while u != 0 {
        let piece = (u & ((1 << 50) - 1)) as u64;
        if piece != 0 {
            // piece * 2^e, built from its bits so that no step rounds.
            let x = piece as f64 * pow2_any(e);
            w.add(if negative { -x } else { x });
        }
        u >>= 50;
        e += 50;
    }
}

/// `2^e` for any `e` a piece of a fixed sum can carry (`MIN_EXP - 127..=MAX_EXP + 128`), as
/// an exact product of two powers when it is below the normal range.
fn pow2_any(e: i32) -> f64 {
    if e < -1022 {
        // Pieces come from fixed sums, whose unit is at least 2^MIN_EXP.
        pow2(e + 64) * pow2(-64)
    } else {
        pow2(e)
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

    fn small(xs: &[f64]) -> SmallSum {
        let mut s = SmallSum::default();
        xs.iter().for_each(|&x| s.add(x));
        s
    }

    #[test]
    fn small_sums_match_the_reference_in_both_forms() {
        // Narrow ranges stay fixed; wide ones widen; every one is correctly rounded.
        for (seed, range) in [(1, 4), (2, 20), (3, 60), (4, 300), (5, 1000)] {
            for n in [1, 2, 10, 1000] {
                let xs = floats(seed * 31 + n as u64, n, range);
                let s = small(&xs);
                assert_eq!(
                    s.value().to_bits(),
                    fsum(&xs).to_bits(),
                    "seed {seed} range {range} n {n}"
                );
                let mut rev = xs.clone();
                rev.reverse();
                assert_eq!(small(&rev).value().to_bits(), s.value().to_bits());
                // Merging halves, fixed into wide and back, equals one pass.
                for split in [0, n / 3, n] {
                    let mut a = small(&xs[..split]);
                    a.merge(&small(&xs[split..]));
                    assert_eq!(a.value().to_bits(), s.value().to_bits(), "split {split}");
                }
            }
        }
        let readings: Vec<f64> = (0..10_000)
            .map(|i| 15.0 + (i % 997) as f64 * 0.013)
            .collect();
        assert!(
            matches!(small(&readings), SmallSum::Fixed { .. }),
            "sensor readings stay small"
        );
        assert_eq!(small(&readings).value(), fsum(&readings));
        for edge in [
            vec![f64::MAX, f64::MAX, -f64::MAX],
            vec![5e-324, 5e-324, 1.0, -1.0],
            vec![f64::INFINITY, 1.0],
            vec![f64::INFINITY, f64::NEG_INFINITY],
            vec![f64::NAN, 1.0],
            vec![-0.0, -0.0],
            vec![1e300, 1e-300, -1e300],
        ] {
            let want = sum(&edge);
            let got = small(&edge).value();
            assert!(
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                "{edge:?}: {got} vs {want}"
            );
        }
    }
}
