//! Ingest times kept per slot of an operator's state (for latency): 32-bit offsets from a base
//! while they stay within about 35 minutes of each other, widening to 64 bits when one does
//! not — half the memory of plain times for the common case, and never wrong.

use crate::aggregate::push_growing;
use crate::value::Micros;

/// Each slot's newest ingest time (for latency). While a state's ingest times stay within
/// about 35 minutes of the first one (a window's records usually do) each is 32 bits, an offset
/// from a base; one that does not fit widens them all to 64 bits.
pub(crate) enum Ingests {
    /// `0`: none yet; otherwise `base + v - 1`.
    Narrow { base: Option<Micros>, v: Vec<u32> },
    /// `Micros::MIN`: none yet.
    Wide(Vec<Micros>),
}

impl Default for Ingests {
    fn default() -> Ingests {
        Ingests::Narrow {
            base: None,
            v: Vec::new(),
        }
    }
}

impl Ingests {
    pub(crate) fn len(&self) -> usize {
        match self {
            Ingests::Narrow { v, .. } => v.len(),
            Ingests::Wide(v) => v.len(),
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        match self {
            Ingests::Narrow { v, .. } => v.capacity(),
            Ingests::Wide(v) => v.capacity(),
        }
    }

    pub(crate) fn width(&self) -> usize {
        match self {
            Ingests::Narrow { .. } => 4,
            Ingests::Wide(_) => 8,
        }
    }

    /// Removes every slot, keeping a narrow form's memory (for scratch states).
    pub(crate) fn clear(&mut self) {
        match self {
            Ingests::Narrow { base, v } => {
                *base = None;
                v.clear();
            }
            Ingests::Wide(_) => *self = Ingests::default(),
        }
    }

    pub(crate) fn reserve_exact(&mut self, n: usize) {
        match self {
            Ingests::Narrow { v, .. } => v.reserve_exact(n),
            Ingests::Wide(v) => v.reserve_exact(n),
        }
    }

    pub(crate) fn push_none(&mut self) {
        match self {
            Ingests::Narrow { v, .. } => push_growing(v, 0),
            Ingests::Wide(v) => push_growing(v, Micros::MIN),
        }
    }

    pub(crate) fn reset(&mut self, i: usize) {
        match self {
            Ingests::Narrow { v, .. } => v[i] = 0,
            Ingests::Wide(v) => v[i] = Micros::MIN,
        }
    }

    /// Slot `i`'s newest ingest time (`Micros::MIN`: none).
    pub(crate) fn get(&self, i: usize) -> Micros {
        match self {
            Ingests::Narrow { v, .. } if v[i] == 0 => Micros::MIN,
            Ingests::Narrow { base, v } => base.unwrap_or(0) + v[i] as Micros - 1,
            Ingests::Wide(v) => v[i],
        }
    }

    /// Makes sure times from `lo` to `hi` can be held.
    pub(crate) fn fit(&mut self, lo: Micros, hi: Micros) {
        if let Ingests::Narrow { base, v } = self {
            if lo == Micros::MIN {
                return;
            }
            let b = *base.get_or_insert(lo.saturating_sub(1 << 31));
            let fits = |x: Micros| x >= b && x.saturating_sub(b) < u32::MAX as Micros;
            if !(fits(lo) && fits(hi)) {
                let wide = v
                    .iter()
                    .map(|&x| match x {
                        0 => Micros::MIN,
                        x => b + x as Micros - 1,
                    })
                    .collect();
                *self = Ingests::Wide(wide);
            }
        }
    }

    /// Raises slot `i` to `x` if that is newer.
    pub(crate) fn raise(&mut self, i: usize, x: Micros) {
        self.fit(x, x);
        match self {
            Ingests::Narrow { base, v } if x != Micros::MIN => {
                let e = (x - base.unwrap_or(0) + 1) as u32;
                v[i] = v[i].max(e);
            }
            Ingests::Narrow { .. } => {}
            Ingests::Wide(v) => v[i] = v[i].max(x),
        }
    }

    /// Raises `slots[k]` to `xs[k]` where that is newer; all of `xs` lie in `lo..=hi`.
    pub(crate) fn raise_all(&mut self, xs: &[Micros], slots: &[u32], (lo, hi): (Micros, Micros)) {
        if xs.is_empty() {
            return;
        }
        if lo == Micros::MIN {
            for (&x, &s) in xs.iter().zip(slots) {
                self.raise(s as usize, x);
            }
            return;
        }
        self.fit(lo, hi);
        match self {
            Ingests::Narrow { base, v } => {
                let b = base.unwrap_or(0);
                for (&x, &s) in xs.iter().zip(slots) {
                    let e = (x - b + 1) as u32;
                    let c = &mut v[s as usize];
                    *c = (*c).max(e);
                }
            }
            Ingests::Wide(v) => {
                for (&x, &s) in xs.iter().zip(slots) {
                    let c = &mut v[s as usize];
                    *c = (*c).max(x);
                }
            }
        }
    }

    /// Adds a slot holding `x`.
    pub(crate) fn push(&mut self, x: Micros) {
        self.push_none();
        let i = self.len() - 1;
        self.raise(i, x);
    }

    /// Keeps the slots whose `keep` is true, in order; shrinks to a quarter above the rest.
    pub(crate) fn retain(&mut self, keep: &[bool]) {
        fn go<T>(v: &mut Vec<T>, keep: &[bool]) {
            let mut k = keep.iter();
            v.retain(|_| *k.next().expect("one flag per slot"));
            v.shrink_to(v.len() + v.len() / 4);
        }
        match self {
            Ingests::Narrow { v, .. } => go(v, keep),
            Ingests::Wide(v) => go(v, keep),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Ingests;
    use crate::value::Micros;

    /// Ingest times are 32-bit offsets while they fit, and widen without losing any when one
    /// does not; the newest per slot wins in both forms.
    #[test]
    fn ingest_times_widen_when_they_do_not_fit() {
        let mut g = Ingests::default();
        for _ in 0..3 {
            g.push_none();
        }
        let t0: Micros = 1_767_225_600_000_000;
        g.raise_all(&[t0, t0 + 5, t0 - 7], &[0, 0, 1], (t0 - 7, t0 + 5));
        assert_eq!(
            (g.get(0), g.get(1), g.get(2)),
            (t0 + 5, t0 - 7, Micros::MIN)
        );
        assert!(matches!(g, Ingests::Narrow { .. }));
        // An hour later: past 32 bits of microseconds from the base.
        let later = t0 + 3_600_000_000;
        g.raise(2, later);
        assert!(matches!(g, Ingests::Wide(_)));
        assert_eq!((g.get(0), g.get(1), g.get(2)), (t0 + 5, t0 - 7, later));
        g.raise_all(&[t0 + 1], &[0], (t0 + 1, t0 + 1));
        assert_eq!(g.get(0), t0 + 5);
        g.reset(0);
        assert_eq!(g.get(0), Micros::MIN);
    }
}
