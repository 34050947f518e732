//! Noise mechanisms, sampled exactly.
//!
//! | mechanism | output | privacy |
//! |---|---|---|
//! | [`DiscreteLaplace`] | integer + Lap_ℤ(b) | ε = Δ / b |
//! | [`DiscreteGaussian`] | integer + N_ℤ(0, σ²) | ρ = Δ² / (2σ²) zCDP |
//! | [`Laplace`] | float on the grid ℤ·2^k | ε = (Δ + 2^k) / b |
//! | [`Gaussian`] | float on the grid ℤ·2^k | ρ = (Δ + 2^k)² / (2σ²) zCDP |
//! | [`exponential_mechanism`] | index, P ∝ exp(ε·q / 2Δ) | ε |
//! | [`report_noisy_max`] | index (permute-and-flip) | ε |
//! | [`RandomizedResponse`] | category | ε |
//!
//! The float mechanisms follow OpenDP: the input is rounded to the nearest multiple of `2^k`
//! (which can move two neighbouring inputs apart by up to `2^k` more, hence the `+ 2^k` above),
//! then discrete noise of scale `b / 2^k` is added in units of `2^k`, and the exact result is
//! converted to the nearest float (post-processing). No step depends on floating-point
//! rounding, so the attack of Mironov (2012) on textbook float Laplace does not apply. By
//! default `k = ⌊log₂ scale⌋ − 60`, which keeps the accounting slack below `scale · 2⁻⁶⁰`;
//! OpenDP's default is `k = −1074`, which [`Laplace::with_granularity`] also accepts.
//!
//! Neighbouring datasets differ by one record; sensitivities are the caller's to state.

use num_bigint::{BigInt, BigUint};
use num_traits::{One, ToPrimitive, Zero};

use super::exact::{
    Ratio, bernoulli_exp_neg, discrete_gaussian, discrete_laplace, dyadic, from_grid, to_grid,
    uniform_below,
};
use super::rng::RandomSource;
use crate::error::{Error, Result};

fn positive(name: &str, v: f64) -> Result<Ratio> {
    if !(v.is_finite() && v > 0.0) {
        return Err(Error::range(name, v, "must be a finite number > 0"));
    }
    Ratio::from_f64(v).ok_or_else(|| Error::range(name, v, "must be a finite number > 0"))
}

fn non_negative(name: &str, v: f64) -> Result<()> {
    if !(v.is_finite() && v >= 0.0) {
        return Err(Error::range(name, v, "must be a finite number ≥ 0"));
    }
    Ok(())
}

fn to_i64(v: BigInt, what: &str) -> Result<i64> {
    v.to_i64().ok_or_else(|| Error::InvalidInput {
        what: what.into(),
        reason: "the noisy value does not fit in an i64".into(),
    })
}

/// Rounds up by one unit in the last place, so a bound computed in floats is never optimistic.
fn up(x: f64) -> f64 {
    x.next_up()
}

/// The default grid exponent for a noise scale: `⌊log₂ scale⌋ − 60`.
fn default_k(scale: f64) -> i32 {
    (scale.log2().floor() as i32 - 60).max(-1074)
}

fn granularity(k: i32) -> Result<i32> {
    if !(-1074..=1023).contains(&k) {
        return Err(Error::range("granularity k", k, "must be in -1074..=1023"));
    }
    Ok(k)
}

/// The smallest-found parameter `p` with `p ≥ (Δ + 2^k(p)) / d` for the default grid of `p`
/// (the grid depends on the parameter; two rounds settle it).
fn settle(sensitivity: f64, d: f64) -> f64 {
    let mut p = up(sensitivity / d);
    for _ in 0..2 {
        p = up((sensitivity + libm::ldexp(1.0, default_k(p))) / d);
    }
    p
}

/// Discrete Laplace noise on integers: `P[z] ∝ exp(−|z| / scale)`.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscreteLaplace {
    scale: f64,
    exact: Ratio,
}

impl DiscreteLaplace {
    /// Noise of the given scale (> 0).
    pub fn new(scale: f64) -> Result<Self> {
        Ok(Self {
            scale,
            exact: positive("scale", scale)?,
        })
    }

    /// The scale for ε-DP at integer sensitivity `sensitivity`: `scale = Δ / ε`.
    pub fn for_epsilon(sensitivity: u64, epsilon: f64) -> Result<Self> {
        let e = positive("epsilon", epsilon)?;
        if sensitivity == 0 {
            return Err(Error::range("sensitivity", 0, "must be ≥ 1"));
        }
        let exact = Ratio::int(sensitivity).div(&e);
        Ok(Self {
            scale: up(sensitivity as f64 / epsilon),
            exact,
        })
    }

    /// The scale.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// ε for an integer sensitivity.
    pub fn epsilon(&self, sensitivity: u64) -> f64 {
        up(sensitivity as f64 / self.scale)
    }

    /// `value` plus one draw of noise.
    pub fn release(&self, value: i64, rng: &mut dyn RandomSource) -> Result<i64> {
        to_i64(
            BigInt::from(value) + discrete_laplace(rng, &self.exact),
            "discrete Laplace release",
        )
    }

    /// One draw of noise, with no value added.
    pub fn sample(&self, rng: &mut dyn RandomSource) -> Result<i64> {
        self.release(0, rng)
    }
}

/// Discrete Gaussian noise on integers: `P[z] ∝ exp(−z² / 2σ²)`.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscreteGaussian {
    sigma: f64,
    sigma2: Ratio,
}

impl DiscreteGaussian {
    /// Noise with standard-deviation parameter `sigma` (> 0).
    pub fn new(sigma: f64) -> Result<Self> {
        let s = positive("sigma", sigma)?;
        Ok(Self {
            sigma,
            sigma2: s.mul(&s),
        })
    }

    /// σ.
    pub fn sigma(&self) -> f64 {
        self.sigma
    }

    /// ρ-zCDP for an integer L2 sensitivity: `ρ = Δ² / (2σ²)` (CKS 2020, Theorem 4).
    pub fn rho(&self, sensitivity: u64) -> f64 {
        let d = sensitivity as f64;
        up(d * d / (2.0 * self.sigma * self.sigma))
    }

    /// `value` plus one draw of noise.
    pub fn release(&self, value: i64, rng: &mut dyn RandomSource) -> Result<i64> {
        to_i64(
            BigInt::from(value) + discrete_gaussian(rng, &self.sigma2),
            "discrete Gaussian release",
        )
    }

    /// One draw of noise.
    pub fn sample(&self, rng: &mut dyn RandomSource) -> Result<i64> {
        self.release(0, rng)
    }
}

/// ε of ρ-zCDP at δ: `ε = ρ + 2·√(ρ·ln(1/δ))` (Bun & Steinke 2016, Proposition 1.3).
pub fn zcdp_to_epsilon(rho: f64, delta: f64) -> Result<f64> {
    non_negative("rho", rho)?;
    if !(delta > 0.0 && delta < 1.0) {
        return Err(Error::range("delta", delta, "must be in (0, 1)"));
    }
    Ok(up(rho + 2.0 * (rho * (1.0 / delta).ln()).sqrt()))
}

/// The largest ρ whose [`zcdp_to_epsilon`] is at most ε: `ρ = (√(ε + L) − √L)²`, `L = ln(1/δ)`.
pub fn epsilon_to_zcdp(epsilon: f64, delta: f64) -> Result<f64> {
    positive("epsilon", epsilon)?;
    if !(delta > 0.0 && delta < 1.0) {
        return Err(Error::range("delta", delta, "must be in (0, 1)"));
    }
    let l = (1.0 / delta).ln();
    let rho = ((epsilon + l).sqrt() - l.sqrt()).powi(2);
    // Float error must not make the bound optimistic.
    let mut r = rho;
    while zcdp_to_epsilon(r, delta)? > epsilon {
        r = r.next_down();
    }
    Ok(r)
}

/// Laplace noise on floats, sampled exactly on the grid `ℤ·2^k`.
#[derive(Debug, Clone, PartialEq)]
pub struct Laplace {
    scale: f64,
    k: i32,
}

impl Laplace {
    /// Noise of scale `b` (> 0), on the default grid.
    pub fn new(scale: f64) -> Result<Self> {
        positive("scale", scale)?;
        Ok(Self {
            scale,
            k: default_k(scale),
        })
    }

    /// The scale that gives ε-DP at L1 sensitivity Δ on the default grid: `b = (Δ + 2^k) / ε`.
    pub fn for_epsilon(sensitivity: f64, epsilon: f64) -> Result<Self> {
        positive("sensitivity", sensitivity)?;
        positive("epsilon", epsilon)?;
        let m = Self::new(settle(sensitivity, epsilon))?;
        debug_assert!(m.epsilon(sensitivity) <= epsilon.next_up().next_up());
        Ok(m)
    }

    /// Uses the grid `ℤ·2^k` (−1074 ≤ k ≤ 1023).
    pub fn with_granularity(mut self, k: i32) -> Result<Self> {
        self.k = granularity(k)?;
        Ok(self)
    }

    /// The scale.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// The grid exponent.
    pub fn granularity(&self) -> i32 {
        self.k
    }

    /// ε at L1 sensitivity Δ, including the rounding to the grid: `(Δ + 2^k) / b`.
    pub fn epsilon(&self, sensitivity: f64) -> f64 {
        up((sensitivity + libm::ldexp(1.0, self.k)) / self.scale)
    }

    /// `value` plus noise; `value` must be finite.
    pub fn release(&self, value: f64, rng: &mut dyn RandomSource) -> Result<f64> {
        if !value.is_finite() {
            return Err(Error::range("value", value, "must be finite"));
        }
        let units = to_grid(value, self.k);
        let scale = grid_ratio(self.scale, self.k);
        Ok(from_grid(&(units + discrete_laplace(rng, &scale)), self.k))
    }

    /// Each value plus independent noise (ε adds up per value for the same record; for a vector
    /// query use the L1 sensitivity of the whole vector).
    pub fn release_all(&self, values: &[f64], rng: &mut dyn RandomSource) -> Result<Vec<f64>> {
        values.iter().map(|v| self.release(*v, rng)).collect()
    }
}

/// `x / 2^k` as an exact rational.
fn grid_ratio(x: f64, k: i32) -> Ratio {
    let r = Ratio::from_f64(x).unwrap_or_else(|| Ratio::int(0));
    if k >= 0 {
        Ratio::new(r.num, r.den << k as u32)
    } else {
        Ratio::new(r.num << k.unsigned_abs(), r.den)
    }
}

/// Gaussian noise on floats, sampled exactly on the grid `ℤ·2^k` (a discrete Gaussian in units
/// of `2^k`).
#[derive(Debug, Clone, PartialEq)]
pub struct Gaussian {
    sigma: f64,
    k: i32,
}

impl Gaussian {
    /// Noise with standard deviation σ (> 0), on the default grid.
    pub fn new(sigma: f64) -> Result<Self> {
        positive("sigma", sigma)?;
        Ok(Self {
            sigma,
            k: default_k(sigma),
        })
    }

    /// The σ that gives ρ-zCDP at L2 sensitivity Δ: `σ = (Δ + 2^k) / √(2ρ)`.
    pub fn for_rho(sensitivity: f64, rho: f64) -> Result<Self> {
        positive("sensitivity", sensitivity)?;
        positive("rho", rho)?;
        Self::new(settle(sensitivity, (2.0 * rho).sqrt()))
    }

    /// The σ that gives (ε, δ)-DP through zCDP ([`epsilon_to_zcdp`]).
    pub fn for_epsilon_delta(sensitivity: f64, epsilon: f64, delta: f64) -> Result<Self> {
        Self::for_rho(sensitivity, epsilon_to_zcdp(epsilon, delta)?)
    }

    /// Uses the grid `ℤ·2^k` (−1074 ≤ k ≤ 1023).
    pub fn with_granularity(mut self, k: i32) -> Result<Self> {
        self.k = granularity(k)?;
        Ok(self)
    }

    /// σ.
    pub fn sigma(&self) -> f64 {
        self.sigma
    }

    /// ρ at L2 sensitivity Δ, including the rounding to the grid: `(Δ + 2^k)² / (2σ²)`.
    pub fn rho(&self, sensitivity: f64) -> f64 {
        let d = sensitivity + libm::ldexp(1.0, self.k);
        up(d * d / (2.0 * self.sigma * self.sigma))
    }

    /// ε at L2 sensitivity Δ and δ.
    pub fn epsilon(&self, sensitivity: f64, delta: f64) -> Result<f64> {
        zcdp_to_epsilon(self.rho(sensitivity), delta)
    }

    /// `value` plus noise; `value` must be finite.
    pub fn release(&self, value: f64, rng: &mut dyn RandomSource) -> Result<f64> {
        if !value.is_finite() {
            return Err(Error::range("value", value, "must be finite"));
        }
        let units = to_grid(value, self.k);
        let s = grid_ratio(self.sigma, self.k);
        Ok(from_grid(
            &(units + discrete_gaussian(rng, &s.mul(&s))),
            self.k,
        ))
    }
}

/// Scores as integers over a common power of two (exact), and the sensitivity in the same units.
fn exact_scores(scores: &[f64], sensitivity: f64, epsilon: f64) -> Result<(Vec<BigInt>, Ratio)> {
    if scores.is_empty() {
        return Err(Error::InvalidInput {
            what: "scores".into(),
            reason: "no candidates".into(),
        });
    }
    if let Some((i, s)) = scores.iter().enumerate().find(|(_, s)| !s.is_finite()) {
        return Err(Error::InvalidInput {
            what: format!("score of candidate {i}"),
            reason: format!("{s} is not finite"),
        });
    }
    let sens = positive("sensitivity", sensitivity)?;
    let eps = positive("epsilon", epsilon)?;
    let parts: Vec<(BigInt, i32)> = scores.iter().map(|s| dyadic(*s)).collect();
    let e_min = parts.iter().map(|p| p.1).min().unwrap_or(0);
    let ints = parts
        .into_iter()
        .map(|(m, e)| m << (e - e_min) as u32)
        .collect();
    // γ per unit of score difference: ε / (2Δ) / 2^(−e_min) = ε·2^e_min / (2Δ).
    let two_sens = sens.mul(&Ratio::int(2));
    let unit = if e_min >= 0 {
        Ratio::new(BigUint::one() << e_min as u32, BigUint::one())
    } else {
        Ratio::new(BigUint::one(), BigUint::one() << e_min.unsigned_abs())
    };
    Ok((ints, eps.mul(&unit).div(&two_sens)))
}

/// γ = rate · (best − score) for integer scores.
fn gap(rate: &Ratio, best: &BigInt, score: &BigInt) -> Ratio {
    let d = (best - score).magnitude().clone();
    Ratio::new(&rate.num * d, rate.den.clone())
}

pub(crate) fn exponential_int(
    scores: &[BigInt],
    rate: &Ratio,
    rng: &mut dyn RandomSource,
) -> usize {
    let best = scores.iter().max().cloned().unwrap_or_default();
    let n = BigUint::from(scores.len());
    // Propose uniformly, accept with exp(−γ): the accepted index has P ∝ exp(−γ_i).
    loop {
        let i = uniform_below(rng, &n).to_usize().unwrap_or(0);
        if bernoulli_exp_neg(rng, &gap(rate, &best, &scores[i])) {
            return i;
        }
    }
}

/// The exponential mechanism (McSherry & Talwar 2007): returns candidate `i` with probability
/// ∝ `exp(ε · score_i / (2Δ))`, where Δ bounds how much one record can change any score. ε-DP.
/// Sampled exactly by proposing a candidate uniformly and accepting it with probability
/// `exp(−ε(max − score_i)/(2Δ))`.
pub fn exponential_mechanism(
    scores: &[f64],
    sensitivity: f64,
    epsilon: f64,
    rng: &mut dyn RandomSource,
) -> Result<usize> {
    let (ints, rate) = exact_scores(scores, sensitivity, epsilon)?;
    Ok(exponential_int(&ints, &rate, rng))
}

/// Report-noisy-max with exponential noise, sampled as permute-and-flip (McKenna & Sheldon
/// 2020; the two have the same output distribution, Ding et al. 2021): visit the candidates in
/// a random order and stop at the first accepted, accepting `i` with probability
/// `exp(−ε(max − score_i)/(2Δ))`. ε-DP, and never worse in expected score than the
/// exponential mechanism.
pub fn report_noisy_max(
    scores: &[f64],
    sensitivity: f64,
    epsilon: f64,
    rng: &mut dyn RandomSource,
) -> Result<usize> {
    let (ints, rate) = exact_scores(scores, sensitivity, epsilon)?;
    let best = ints.iter().max().cloned().unwrap_or_default();
    let mut order: Vec<usize> = (0..ints.len()).collect();
    loop {
        // Fisher–Yates, lazily: draw the next unvisited candidate.
        for j in 0..order.len() {
            let r = j + uniform_below(rng, &BigUint::from(order.len() - j))
                .to_usize()
                .unwrap_or(0);
            order.swap(j, r);
            let i = order[j];
            if bernoulli_exp_neg(rng, &gap(&rate, &best, &ints[i])) {
                return Ok(i);
            }
        }
        // Unreachable in exact arithmetic (the best candidate is accepted with probability 1).
    }
}

/// k-ary randomized response (Warner 1965): reports the true category with probability
/// `e^ε / (e^ε + k − 1)` and each other category with `1 / (e^ε + k − 1)`. ε-DP per answer
/// (local DP). `k = 2` is the classic coin-flip design.
#[derive(Debug, Clone, PartialEq)]
pub struct RandomizedResponse {
    epsilon: f64,
    exact: Ratio,
    categories: usize,
}

impl RandomizedResponse {
    /// Over `categories` (≥ 2) answers.
    pub fn new(epsilon: f64, categories: usize) -> Result<Self> {
        let exact = positive("epsilon", epsilon)?;
        if categories < 2 {
            return Err(Error::range("categories", categories, "must be ≥ 2"));
        }
        Ok(Self {
            epsilon,
            exact,
            categories,
        })
    }

    /// Probability of reporting the truth.
    pub fn p_truth(&self) -> f64 {
        let e = self.epsilon.exp();
        e / (e + self.categories as f64 - 1.0)
    }

    /// The reported category for true category `value` (< categories).
    pub fn release(&self, value: usize, rng: &mut dyn RandomSource) -> Result<usize> {
        if value >= self.categories {
            return Err(Error::range(
                "category",
                value,
                &format!("must be < {}", self.categories),
            ));
        }
        let n = BigUint::from(self.categories);
        loop {
            let i = uniform_below(rng, &n).to_usize().unwrap_or(0);
            if i == value || bernoulli_exp_neg(rng, &self.exact) {
                return Ok(i);
            }
        }
    }

    /// The reported answer for a yes/no question (needs `categories == 2`).
    pub fn release_bool(&self, value: bool, rng: &mut dyn RandomSource) -> Result<bool> {
        if self.categories != 2 {
            return Err(Error::range(
                "categories",
                self.categories,
                "must be 2 for yes/no answers",
            ));
        }
        Ok(self.release(value as usize, rng)? == 1)
    }

    /// Unbiased estimates of the true category frequencies from counts of reported answers:
    /// `π_j = (f_j − q) / (p − q)`.
    pub fn estimate_frequencies(&self, reported: &[u64]) -> Result<Vec<f64>> {
        if reported.len() != self.categories {
            return Err(Error::InvalidInput {
                what: "reported counts".into(),
                reason: format!(
                    "{} counts for {} categories",
                    reported.len(),
                    self.categories
                ),
            });
        }
        let n: u64 = reported.iter().sum();
        if n == 0 {
            return Err(Error::InvalidInput {
                what: "reported counts".into(),
                reason: "no answers".into(),
            });
        }
        let p = self.p_truth();
        let q = (1.0 - p) / (self.categories as f64 - 1.0);
        Ok(reported
            .iter()
            .map(|c| (*c as f64 / n as f64 - q) / (p - q))
            .collect())
    }
}

/// Noise scale as an exact rational, for callers that already work on integer units.
pub(crate) fn laplace_units(sensitivity_units: &BigUint, epsilon: f64) -> Result<Ratio> {
    let e = positive("epsilon", epsilon)?;
    if sensitivity_units.is_zero() {
        return Ok(Ratio::new(BigUint::one(), BigUint::one()));
    }
    Ok(Ratio::new(sensitivity_units.clone(), BigUint::one()).div(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dp::rng::Csprng;

    fn rng(seed: u8) -> Csprng {
        Csprng::from_seed([seed; 32])
    }

    /// Pearson's χ² of observed counts against expected probabilities (bins with expected
    /// count < 5 merged into the last), and its degrees of freedom.
    fn chi2(observed: &[u64], probs: &[f64]) -> (f64, usize) {
        let n: u64 = observed.iter().sum();
        let (mut stat, mut df, mut o_rest, mut e_rest) = (0.0, 0usize, 0.0, 0.0);
        for (o, p) in observed.iter().zip(probs) {
            let e = p * n as f64;
            if e < 5.0 {
                o_rest += *o as f64;
                e_rest += e;
            } else {
                stat += (*o as f64 - e).powi(2) / e;
                df += 1;
            }
        }
        if e_rest > 0.0 {
            stat += (o_rest - e_rest).powi(2) / e_rest;
            df += 1;
        }
        (stat, df - 1)
    }

    /// The χ² critical value at p = 1e-4 (Wilson–Hilferty).
    fn chi2_critical(df: usize) -> f64 {
        let k = df as f64;
        let z = 3.719; // one-sided 1e-4 normal quantile
        k * (1.0 - 2.0 / (9.0 * k) + z * (2.0 / (9.0 * k)).sqrt()).powi(3)
    }

    /// Tallies samples in `lo..=hi` (values outside go to the two ends).
    fn tally(samples: &[i64], lo: i64, hi: i64) -> Vec<u64> {
        let mut c = vec![0u64; (hi - lo + 1) as usize];
        for s in samples {
            c[((*s).clamp(lo, hi) - lo) as usize] += 1;
        }
        c
    }

    fn moments(xs: &[f64]) -> (f64, f64) {
        let n = xs.len() as f64;
        let m = xs.iter().sum::<f64>() / n;
        (
            m,
            xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0),
        )
    }

    /// Probabilities of a symmetric pmf ∝ w(|x|) on lo..=hi with the tails folded into the ends.
    fn folded(w: impl Fn(f64) -> f64, lo: i64, hi: i64) -> Vec<f64> {
        let far = 4000i64;
        let z: f64 = (-far..=far).map(|x| w(x as f64)).sum();
        let mut p: Vec<f64> = (lo..=hi).map(|x| w(x as f64) / z).collect();
        let lower: f64 = (-far..lo).map(|x| w(x as f64) / z).sum();
        let upper: f64 = (hi + 1..=far).map(|x| w(x as f64) / z).sum();
        p[0] += lower;
        let last = p.len() - 1;
        p[last] += upper;
        p
    }

    #[test]
    fn bernoulli_exp_matches_its_probability() {
        let mut r = rng(2);
        for (num, den) in [(3u64, 10u64), (27, 10), (1, 1), (0, 1)] {
            let g = Ratio::new(BigUint::from(num), BigUint::from(den));
            let n = 40_000;
            let hits = (0..n).filter(|_| bernoulli_exp_neg(&mut r, &g)).count() as f64;
            let p = (-(num as f64) / den as f64).exp();
            let sd = (p * (1.0 - p) / n as f64).sqrt().max(1e-9);
            assert!(
                (hits / n as f64 - p).abs() < 5.0 * sd,
                "γ={num}/{den}: {hits}"
            );
        }
    }

    #[test]
    fn discrete_laplace_fits_its_pmf() {
        let mut r = rng(3);
        let m = DiscreteLaplace::new(2.5).expect("m");
        let xs: Vec<i64> = (0..40_000).map(|_| m.sample(&mut r).expect("s")).collect();
        let f: Vec<f64> = xs.iter().map(|x| *x as f64).collect();
        let (mean, var) = moments(&f);
        let a = (-1.0f64 / 2.5).exp();
        let want_var = 2.0 * a / (1.0 - a).powi(2);
        assert!(
            mean.abs() < 5.0 * (want_var / 40_000.0).sqrt(),
            "mean {mean}"
        );
        assert!(
            (var / want_var - 1.0).abs() < 0.05,
            "var {var} vs {want_var}"
        );
        let (lo, hi) = (-15, 15);
        let (stat, df) = chi2(
            &tally(&xs, lo, hi),
            &folded(|x| (-x.abs() / 2.5).exp(), lo, hi),
        );
        assert!(stat < chi2_critical(df), "χ² = {stat} on {df} df");
    }

    #[test]
    fn discrete_gaussian_fits_its_pmf() {
        let mut r = rng(4);
        let s = 3.0;
        let m = DiscreteGaussian::new(s).expect("m");
        let xs: Vec<i64> = (0..40_000).map(|_| m.sample(&mut r).expect("s")).collect();
        let f: Vec<f64> = xs.iter().map(|x| *x as f64).collect();
        let (mean, var) = moments(&f);
        // For σ = 3 the discrete Gaussian's variance equals σ² to ~1e-90.
        assert!(mean.abs() < 5.0 * (9.0f64 / 40_000.0).sqrt(), "mean {mean}");
        assert!((var / 9.0 - 1.0).abs() < 0.05, "var {var}");
        let (lo, hi) = (-12, 12);
        let (stat, df) = chi2(
            &tally(&xs, lo, hi),
            &folded(|x| (-x * x / 18.0).exp(), lo, hi),
        );
        assert!(stat < chi2_critical(df), "χ² = {stat} on {df} df");
        // A wrong σ must fail the same test (the test has power).
        let (bad, _) = chi2(
            &tally(&xs, lo, hi),
            &folded(|x| (-x * x / 24.0).exp(), lo, hi),
        );
        assert!(bad > chi2_critical(df), "χ² against σ=√12 only {bad}");
    }

    /// Kolmogorov–Smirnov distance of samples to a continuous CDF.
    fn ks(mut xs: Vec<f64>, cdf: impl Fn(f64) -> f64) -> f64 {
        xs.sort_by(f64::total_cmp);
        let n = xs.len() as f64;
        xs.iter()
            .enumerate()
            .map(|(i, x)| {
                let c = cdf(*x);
                (c - i as f64 / n).abs().max(((i + 1) as f64 / n - c).abs())
            })
            .fold(0.0, f64::max)
    }

    #[test]
    fn float_laplace_and_gaussian_fit_their_cdfs() {
        let mut r = rng(5);
        let n = 20_000;
        // KS critical value at p = 1e-4: 2.0 / √n.
        let crit = 2.0 / (n as f64).sqrt();
        let lap = Laplace::new(1.5).expect("m");
        let xs: Vec<f64> = (0..n)
            .map(|_| lap.release(10.0, &mut r).expect("r"))
            .collect();
        let cdf = |x: f64| {
            let z = (x - 10.0) / 1.5;
            if z < 0.0 {
                0.5 * z.exp()
            } else {
                1.0 - 0.5 * (-z).exp()
            }
        };
        let d = ks(xs.clone(), cdf);
        assert!(d < crit, "Laplace KS {d}");
        // Outputs are not confined to a coarse lattice (the grid is 2^k, k = ⌊log₂1.5⌋ − 60).
        assert!(xs.iter().any(|x| x.fract() != 0.0));
        assert_eq!(lap.granularity(), -60);

        let g = Gaussian::new(2.0).expect("m");
        let ys: Vec<f64> = (0..n)
            .map(|_| g.release(-3.0, &mut r).expect("r"))
            .collect();
        let d = ks(ys.clone(), |x| {
            0.5 * libm::erfc(-(x + 3.0) / (2.0 * 2f64.sqrt()))
        });
        assert!(d < crit, "Gaussian KS {d}");
        let (m, v) = moments(&ys);
        assert!(
            (m + 3.0).abs() < 0.06 && (v / 4.0 - 1.0).abs() < 0.05,
            "{m} {v}"
        );
        // The wrong centre fails.
        let bad = ks(ys, |x| 0.5 * libm::erfc(-(x + 2.9) / (2.0 * 2f64.sqrt())));
        assert!(bad > crit);
    }

    #[test]
    fn opendp_granularity_works_too() {
        let mut r = rng(6);
        let lap = Laplace::new(1.0)
            .expect("m")
            .with_granularity(-1074)
            .expect("k");
        let x = lap.release(0.5, &mut r).expect("r");
        assert!(x.is_finite());
        assert!(
            Laplace::new(1.0)
                .expect("m")
                .with_granularity(2000)
                .is_err()
        );
    }

    #[test]
    fn privacy_parameters() {
        let l = Laplace::for_epsilon(1.0, 0.5).expect("m");
        assert!(l.epsilon(1.0) <= 0.5 + 1e-15 && l.epsilon(1.0) > 0.5 - 1e-12);
        let d = DiscreteLaplace::for_epsilon(2, 0.5).expect("m");
        assert!((d.scale() - 4.0).abs() < 1e-12);
        let rho = epsilon_to_zcdp(1.0, 1e-5).expect("rho");
        assert!(zcdp_to_epsilon(rho, 1e-5).expect("eps") <= 1.0);
        assert!(zcdp_to_epsilon(rho, 1e-5).expect("eps") > 1.0 - 1e-9);
        let g = Gaussian::for_epsilon_delta(1.0, 1.0, 1e-5).expect("g");
        assert!(g.epsilon(1.0, 1e-5).expect("e") <= 1.0 + 1e-12);
        assert!((DiscreteGaussian::new(2.0).expect("g").rho(1) - 0.125).abs() < 1e-15);
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(Laplace::new(bad).is_err());
            assert!(Gaussian::new(bad).is_err());
            assert!(DiscreteLaplace::new(bad).is_err());
        }
        assert!(zcdp_to_epsilon(0.1, 1.0).is_err());
        assert!(
            Laplace::new(1.0)
                .expect("m")
                .release(f64::NAN, &mut rng(1))
                .is_err()
        );
    }

    #[test]
    fn exponential_and_noisy_max_follow_exp_scores() {
        let scores = [0.0, 1.0, 2.0, 4.0, -1.5];
        let (eps, sens) = (1.0f64, 1.0f64);
        let w: Vec<f64> = scores
            .iter()
            .map(|s| (eps * s / (2.0 * sens)).exp())
            .collect();
        let z: f64 = w.iter().sum();
        let probs: Vec<f64> = w.iter().map(|x| x / z).collect();
        let mut r = rng(7);
        let n = 12_000;
        let mut counts = vec![0u64; scores.len()];
        for _ in 0..n {
            counts[exponential_mechanism(&scores, sens, eps, &mut r).expect("em")] += 1;
        }
        let (stat, df) = chi2(&counts, &probs);
        assert!(stat < chi2_critical(df), "EM χ² = {stat}: {counts:?}");

        // Permute-and-flip is not the exponential mechanism: it favours the best candidate more.
        let mut pf = vec![0u64; scores.len()];
        for _ in 0..n {
            pf[report_noisy_max(&scores, sens, eps, &mut r).expect("pf")] += 1;
        }
        assert!(pf[3] > counts[3], "{pf:?} vs {counts:?}");
        // Two candidates: PF's exact law is P[best] = 1 − ½·e^(−εΔq/2), here Δq = 1.
        let two = [0.0, 1.0];
        let mut c2 = vec![0u64; 2];
        for _ in 0..n {
            c2[report_noisy_max(&two, 1.0, 1.0, &mut r).expect("pf")] += 1;
        }
        let p_best = 1.0 - 0.5 * (-0.5f64).exp();
        let (stat, df) = chi2(&c2, &[1.0 - p_best, p_best]);
        assert!(stat < chi2_critical(df.max(1)), "PF χ² = {stat}: {c2:?}");
        assert!(exponential_mechanism(&[], 1.0, 1.0, &mut r).is_err());
        assert!(exponential_mechanism(&[f64::NAN], 1.0, 1.0, &mut r).is_err());
    }

    #[test]
    fn randomized_response_rates_and_debiasing() {
        let rr = RandomizedResponse::new(1.0, 4).expect("rr");
        let mut r = rng(8);
        let truth = [0usize, 0, 0, 1, 1, 2, 3, 3, 3, 3];
        let mut reported = [0u64; 4];
        let mut kept = 0u64;
        let rounds = 5_000;
        for _ in 0..rounds {
            for t in truth {
                let a = rr.release(t, &mut r).expect("rr");
                reported[a] += 1;
                kept += (a == t) as u64;
            }
        }
        let n = (rounds * truth.len()) as f64;
        let p = rr.p_truth();
        assert!((kept as f64 / n - p).abs() < 5.0 * (p * (1.0 - p) / n).sqrt());
        let est = rr.estimate_frequencies(&reported).expect("est");
        for (e, want) in est.iter().zip([0.3, 0.2, 0.1, 0.4]) {
            assert!((e - want).abs() < 0.02, "{est:?}");
        }
        let coin = RandomizedResponse::new(0.5, 2).expect("rr");
        let yes = (0..20_000)
            .filter(|_| coin.release_bool(true, &mut r).expect("b"))
            .count() as f64;
        let p = 0.5f64.exp() / (0.5f64.exp() + 1.0);
        assert!((yes / 20_000.0 - p).abs() < 0.015);
        assert!(rr.release(4, &mut r).is_err());
        assert!(rr.release_bool(true, &mut r).is_err());
        assert!(RandomizedResponse::new(1.0, 1).is_err());
    }
}
