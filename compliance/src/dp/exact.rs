//! Exact samplers on rationals (Canonne, Kamath & Steinke 2020, Algorithms 1–3).
//!
//! Every parameter is an exact rational and every draw uses only integer arithmetic on
//! uniformly random bits, so no floating-point rounding can shape the output distribution
//! (Mironov 2012). Floats enter as their exact dyadic value `m·2^e`.

use num_bigint::{BigInt, BigUint, Sign};
use num_traits::{One, ToPrimitive, Zero};

use super::rng::RandomSource;

/// A non-negative rational `num / den` with `den > 0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ratio {
    pub(crate) num: BigUint,
    pub(crate) den: BigUint,
}

impl Ratio {
    pub(crate) fn new(num: BigUint, den: BigUint) -> Self {
        debug_assert!(!den.is_zero());
        Self { num, den }
    }

    pub(crate) fn int(n: u64) -> Self {
        Self::new(BigUint::from(n), BigUint::one())
    }

    /// The exact value of a finite, non-negative float.
    pub(crate) fn from_f64(x: f64) -> Option<Self> {
        if !x.is_finite() || x < 0.0 {
            return None;
        }
        let (m, e) = dyadic(x);
        let m = m.magnitude().clone();
        Some(if e >= 0 {
            Self::new(m << e as u32, BigUint::one())
        } else {
            Self::new(m, BigUint::one() << e.unsigned_abs())
        })
    }

    pub(crate) fn floor(&self) -> BigUint {
        &self.num / &self.den
    }

    pub(crate) fn mul(&self, o: &Ratio) -> Ratio {
        Ratio::new(&self.num * &o.num, &self.den * &o.den)
    }

    /// `self / o`; `o` must be non-zero.
    pub(crate) fn div(&self, o: &Ratio) -> Ratio {
        Ratio::new(&self.num * &o.den, &self.den * &o.num)
    }
}

/// `x = m · 2^e` exactly, for finite `x` (`m` is zero for ±0).
pub(crate) fn dyadic(x: f64) -> (BigInt, i32) {
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    let frac = bits & ((1u64 << 52) - 1);
    let (mut m, mut e) = if exp == 0 {
        (frac, -1074)
    } else {
        (frac | (1u64 << 52), exp - 1075)
    };
    if m != 0 {
        let tz = m.trailing_zeros();
        m >>= tz;
        e += tz as i32;
    }
    let sign = if bits >> 63 == 1 {
        Sign::Minus
    } else {
        Sign::Plus
    };
    (BigInt::from_biguint(sign, BigUint::from(m)), e)
}

/// Rounds a finite float to the nearest multiple of `2^k` (ties away from zero) and returns the
/// multiple. Monotone, so clamped inputs stay within their rounded bounds.
pub(crate) fn to_grid(x: f64, k: i32) -> BigInt {
    let (m, e) = dyadic(x);
    if e >= k {
        m << (e - k) as u32
    } else {
        let s = (k - e) as u32;
        let half = BigUint::one() << (s - 1);
        let mag = (m.magnitude() + half) >> s;
        BigInt::from_biguint(m.sign(), mag)
    }
}

/// `v · 2^k` as the nearest float (up to a double rounding, which is post-processing).
pub(crate) fn from_grid(v: &BigInt, k: i32) -> f64 {
    let bits = v.bits();
    let shift = bits.saturating_sub(64);
    let top = (v.magnitude() >> shift).to_u64().unwrap_or(u64::MAX) as f64;
    let f = libm::ldexp(top, k.saturating_add(shift as i32));
    if v.sign() == Sign::Minus { -f } else { f }
}

/// A uniform integer in `[0, n)`; `n > 0`.
pub(crate) fn uniform_below(rng: &mut dyn RandomSource, n: &BigUint) -> BigUint {
    let bits = n.bits();
    debug_assert!(bits > 0);
    if bits <= 64 {
        let n = n.to_u64().unwrap_or(u64::MAX);
        let mask = if bits == 64 {
            u64::MAX
        } else {
            (1u64 << bits) - 1
        };
        loop {
            let mut b = [0u8; 8];
            rng.fill_bytes(&mut b);
            let x = u64::from_le_bytes(b) & mask;
            if x < n {
                return BigUint::from(x);
            }
        }
    }
    let nbytes = bits.div_ceil(8) as usize;
    let excess = nbytes as u64 * 8 - bits;
    let mut buf = vec![0u8; nbytes];
    loop {
        rng.fill_bytes(&mut buf);
        buf[0] &= 0xffu8 >> excess;
        let x = BigUint::from_bytes_be(&buf);
        if &x < n {
            return x;
        }
    }
}

/// One fair bit.
pub(crate) fn coin(rng: &mut dyn RandomSource) -> bool {
    let mut b = [0u8; 1];
    rng.fill_bytes(&mut b);
    b[0] & 1 == 1
}

/// Bernoulli(num / den), `num ≤ den`.
pub(crate) fn bernoulli(rng: &mut dyn RandomSource, num: &BigUint, den: &BigUint) -> bool {
    &uniform_below(rng, den) < num
}

/// Bernoulli(exp(−γ)) for a rational γ ∈ [0, 1] (CKS Algorithm 1, first part).
fn bernoulli_exp_neg_unit(rng: &mut dyn RandomSource, g: &Ratio) -> bool {
    let mut k: u64 = 1;
    loop {
        if !bernoulli(rng, &g.num, &(&g.den * k)) {
            break;
        }
        k += 1;
    }
    k % 2 == 1
}

/// Bernoulli(exp(−γ)) for any rational γ ≥ 0 (CKS Algorithm 1).
pub(crate) fn bernoulli_exp_neg(rng: &mut dyn RandomSource, g: &Ratio) -> bool {
    let whole = g.floor();
    let one = Ratio::int(1);
    let mut k = BigUint::zero();
    while k < whole {
        // Each round fails with probability 1 − 1/e, so this loop ends after ~1.6 rounds.
        if !bernoulli_exp_neg_unit(rng, &one) {
            return false;
        }
        k += 1u32;
    }
    let frac = Ratio::new(&g.num - &whole * &g.den, g.den.clone());
    bernoulli_exp_neg_unit(rng, &frac)
}

/// Discrete Laplace on ℤ with `P[x] ∝ exp(−|x| / scale)`, `scale > 0` (CKS Algorithm 2 with
/// `t / s = scale`).
pub(crate) fn discrete_laplace(rng: &mut dyn RandomSource, scale: &Ratio) -> BigInt {
    let (t, s) = (&scale.num, &scale.den);
    let one = Ratio::int(1);
    loop {
        let u = uniform_below(rng, t);
        if !bernoulli_exp_neg(rng, &Ratio::new(u.clone(), t.clone())) {
            continue;
        }
        let mut v: u64 = 0;
        while bernoulli_exp_neg(rng, &one) {
            v += 1;
        }
        let y = (u + t * v) / s;
        let negative = coin(rng);
        if negative && y.is_zero() {
            continue;
        }
        let sign = if negative { Sign::Minus } else { Sign::Plus };
        return BigInt::from_biguint(sign, y);
    }
}

/// Discrete Gaussian on ℤ with `P[x] ∝ exp(−x² / (2σ²))`, `σ² > 0` (CKS Algorithm 3).
pub(crate) fn discrete_gaussian(rng: &mut dyn RandomSource, sigma2: &Ratio) -> BigInt {
    let (n, d) = (&sigma2.num, &sigma2.den);
    let t = sigma2.floor().sqrt() + 1u32;
    let lap = Ratio::new(t.clone(), BigUint::one());
    let td = &t * d;
    let nb = BigInt::from(n.clone());
    let gamma_den = BigUint::from(2u32) * n * &t * &t * d;
    loop {
        let y = discrete_laplace(rng, &lap);
        let diff = BigInt::from(y.magnitude() * &td) - &nb;
        let gamma = Ratio::new(diff.magnitude() * diff.magnitude(), gamma_den.clone());
        if bernoulli_exp_neg(rng, &gamma) {
            return y;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dp::rng::Csprng;

    #[test]
    fn dyadic_is_exact() {
        for x in [0.1, -3.5, 1e-310, 5e-324, 1e300, 0.0, 7.0] {
            let (m, e) = dyadic(x);
            let back = m.to_f64().unwrap_or(f64::NAN) * 2f64.powi(e);
            // powi underflows for subnormal exponents, so compare through ldexp.
            let back2 = libm::ldexp(m.to_f64().unwrap_or(f64::NAN), e);
            assert!(back == x || back2 == x, "{x}: {m}·2^{e}");
        }
        assert_eq!(dyadic(0.5), (BigInt::from(1), -1));
        assert_eq!(dyadic(-12.0), (BigInt::from(-3), 2));
    }

    #[test]
    fn grid_round_trip() {
        assert_eq!(to_grid(2.5, 0), BigInt::from(3));
        assert_eq!(to_grid(-2.5, 0), BigInt::from(-3));
        assert_eq!(to_grid(2.4, 0), BigInt::from(2));
        assert_eq!(to_grid(0.75, -2), BigInt::from(3));
        assert_eq!(from_grid(&BigInt::from(3), -2), 0.75);
        assert_eq!(from_grid(&(BigInt::from(5) << 2000u32), -2000), 5.0);
        assert_eq!(from_grid(&BigInt::from(-7), 1), -14.0);
    }

    #[test]
    fn uniform_below_covers_range_evenly() {
        let mut rng = Csprng::from_seed([1; 32]);
        let n = BigUint::from(6u32);
        let mut counts = [0u32; 6];
        for _ in 0..60_000 {
            counts[uniform_below(&mut rng, &n).to_usize().unwrap_or(9)] += 1;
        }
        for c in counts {
            assert!((9_400..10_600).contains(&c), "{counts:?}");
        }
        // A bound wider than 64 bits.
        let big = BigUint::one() << 100u32;
        let x = uniform_below(&mut rng, &big);
        assert!(x < big);
    }
}
