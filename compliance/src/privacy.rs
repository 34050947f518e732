//! Differential-privacy accounting.
//!
//! RDP of the Poisson-subsampled Gaussian mechanism follows Mironov, Talwar & Zhang 2019: the
//! binomial expansion for integer orders (§3.2) and the signed two-sided series for fractional
//! orders (§3.3), in log space, exactly as Opacus' `privacy_analysis.py` computes them. RDP → (ε,
//! δ) uses the conversion of Balle et al. 2020 (Prop. 12, as Opacus and dp-accounting do).
//!
//! Note: dp-accounting ≥ 0.5 sums the *absolute values* of the fractional-order series (a looser
//! bound: RDP 4.12493 instead of 4.12470 at α = 3.9 for q = 0.04, σ = 1.5, 2250 steps), so the two
//! tools, and this module and dp-accounting, agree only on integer orders.

use crate::error::{Error, Result};

/// Opacus' default orders: 1.1, 1.2, …, 10.9, then 12, 13, …, 63.
pub fn opacus_orders() -> Vec<f64> {
    (1..100)
        .map(|x| 1.0 + f64::from(x) / 10.0)
        .chain((12..64).map(f64::from))
        .collect()
}

/// `x > c`, false for NaN.
fn above(x: f64, c: f64) -> bool {
    x > c
}

fn log_add(a: f64, b: f64) -> f64 {
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    if lo == f64::NEG_INFINITY {
        return hi;
    }
    (lo - hi).exp().ln_1p() + hi
}

fn log_sub(a: f64, b: f64) -> f64 {
    // a ≥ b is guaranteed by the series; a tiny negative difference from rounding is clamped.
    if b == f64::NEG_INFINITY {
        return a;
    }
    if a <= b {
        return f64::NEG_INFINITY;
    }
    let d = (b - a).exp();
    if d >= 1.0 {
        return f64::NEG_INFINITY;
    }
    a + (-d).ln_1p()
}

/// `ln(erfc(x))`, accurate where `erfc` underflows.
pub(crate) fn log_erfc(x: f64) -> f64 {
    if x < 26.0 {
        return libm::erfc(x).ln();
    }
    // Asymptotic series: erfc(x) ≈ e^{−x²}/(x√π) · (1 − 1/(2x²) + 3/(4x⁴) − 15/(8x⁶) + 105/(16x⁸)).
    let x2 = x * x;
    let series = 1.0 - 1.0 / (2.0 * x2) + 3.0 / (4.0 * x2 * x2) - 15.0 / (8.0 * x2 * x2 * x2)
        + 105.0 / (16.0 * x2 * x2 * x2 * x2);
    -x2 - x.ln() - 0.5 * std::f64::consts::PI.ln() + series.ln()
}

fn ln_binom_int(n: f64, k: f64) -> f64 {
    libm::lgamma(n + 1.0) - libm::lgamma(k + 1.0) - libm::lgamma(n - k + 1.0)
}

fn log_a_int(q: f64, sigma: f64, alpha: u64) -> f64 {
    let mut log_a = f64::NEG_INFINITY;
    let a = alpha as f64;
    for i in 0..=alpha {
        let i = i as f64;
        let log_coef = ln_binom_int(a, i) + i * q.ln() + (a - i) * (1.0 - q).ln();
        let s = log_coef + (i * i - i) / (2.0 * sigma * sigma);
        log_a = log_add(log_a, s);
    }
    log_a
}

fn log_a_frac(q: f64, sigma: f64, alpha: f64) -> f64 {
    let (mut log_a0, mut log_a1) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    let z0 = sigma * sigma * (1.0 / q - 1.0).ln() + 0.5;
    let mut coef = 1.0f64; // binom(alpha, 0)
    let mut i = 0u32;
    loop {
        let fi = f64::from(i);
        if i > 0 {
            coef *= (alpha - fi + 1.0) / fi;
        }
        let log_coef = coef.abs().ln();
        let j = alpha - fi;
        let log_t0 = log_coef + fi * q.ln() + j * (1.0 - q).ln();
        let log_t1 = log_coef + j * q.ln() + fi * (1.0 - q).ln();
        let log_e0 = 0.5f64.ln() + log_erfc((fi - z0) / (std::f64::consts::SQRT_2 * sigma));
        let log_e1 = 0.5f64.ln() + log_erfc((z0 - j) / (std::f64::consts::SQRT_2 * sigma));
        let log_s0 = log_t0 + (fi * fi - fi) / (2.0 * sigma * sigma) + log_e0;
        let log_s1 = log_t1 + (j * j - j) / (2.0 * sigma * sigma) + log_e1;
        if coef > 0.0 {
            log_a0 = log_add(log_a0, log_s0);
            log_a1 = log_add(log_a1, log_s1);
        } else {
            log_a0 = log_sub(log_a0, log_s0);
            log_a1 = log_sub(log_a1, log_s1);
        }
        i += 1;
        if log_s0.max(log_s1) < -30.0 || i > 100_000 {
            break;
        }
    }
    log_add(log_a0, log_a1)
}

fn check_params(q: f64, sigma: f64) -> Result<()> {
    if !(q > 0.0 && q <= 1.0) {
        return Err(Error::range("sampling rate", q, "must be in (0, 1]"));
    }
    if !above(sigma, 0.0) || !sigma.is_finite() {
        return Err(Error::range(
            "noise multiplier",
            sigma,
            "must be positive and finite",
        ));
    }
    Ok(())
}

/// RDP of one step of the Poisson-subsampled Gaussian mechanism (sampling rate `q`, noise
/// multiplier `sigma`) at order `alpha > 1` (`f64::INFINITY` gives ∞).
pub fn rdp_step(q: f64, sigma: f64, alpha: f64) -> Result<f64> {
    check_params(q, sigma)?;
    if !above(alpha, 1.0) {
        return Err(Error::range("order", alpha, "must be greater than 1"));
    }
    if q == 1.0 {
        return Ok(alpha / (2.0 * sigma * sigma));
    }
    if alpha.is_infinite() {
        return Ok(f64::INFINITY);
    }
    let log_a = if alpha.fract() == 0.0 && alpha < 1e6 {
        log_a_int(q, sigma, alpha as u64)
    } else {
        log_a_frac(q, sigma, alpha)
    };
    Ok(log_a / (alpha - 1.0))
}

/// RDP after `steps` steps, at each order.
pub fn rdp(q: f64, sigma: f64, steps: u64, orders: &[f64]) -> Result<Vec<f64>> {
    orders
        .iter()
        .map(|&a| rdp_step(q, sigma, a).map(|r| r * steps as f64))
        .collect()
}

fn check_delta(delta: f64) -> Result<()> {
    if !(delta > 0.0 && delta < 1.0) {
        return Err(Error::range("delta", delta, "must be in (0, 1)"));
    }
    Ok(())
}

/// The smallest ε over `orders` such that RDP values `rdp` imply (ε, δ)-DP (Balle et al. 2020,
/// Prop. 12), and the order that gives it.
pub fn rdp_to_epsilon(orders: &[f64], rdp: &[f64], delta: f64) -> Result<(f64, f64)> {
    check_delta(delta)?;
    if orders.len() != rdp.len() || orders.is_empty() {
        return Err(Error::InvalidInput {
            what: "orders and RDP values".into(),
            reason: format!("{} orders, {} values", orders.len(), rdp.len()),
        });
    }
    let mut best = (f64::INFINITY, f64::NAN);
    for (&a, &r) in orders.iter().zip(rdp) {
        if !above(a, 1.0) || r.is_nan() {
            continue;
        }
        let eps = r - (delta.ln() + a.ln()) / (a - 1.0) + ((a - 1.0) / a).ln();
        if eps < best.0 || best.1.is_nan() && !eps.is_nan() {
            best = (eps, a);
        }
    }
    Ok((best.0.max(0.0), best.1))
}

/// ε after `steps` steps of DP-SGD at sampling rate `q`, noise multiplier `sigma` and `delta`,
/// minimised over `orders`; and the best order.
pub fn epsilon(q: f64, sigma: f64, steps: u64, delta: f64, orders: &[f64]) -> Result<(f64, f64)> {
    let r = rdp(q, sigma, steps, orders)?;
    rdp_to_epsilon(orders, &r, delta)
}

/// The smallest noise multiplier (to `tolerance` in ε, like Opacus' `get_noise_multiplier`)
/// giving at most `target_epsilon` after `steps` steps at rate `q` and `delta`.
pub fn noise_multiplier(
    q: f64,
    steps: u64,
    target_epsilon: f64,
    delta: f64,
    orders: &[f64],
    tolerance: f64,
) -> Result<f64> {
    if !above(target_epsilon, 0.0) || !target_epsilon.is_finite() {
        return Err(Error::range(
            "target epsilon",
            target_epsilon,
            "must be positive and finite",
        ));
    }
    check_delta(delta)?;
    let eps = |s: f64| epsilon(q, s, steps, delta, orders).map(|e| e.0);
    let (mut lo, mut hi) = (0.0f64, 10.0f64);
    let mut eps_high = eps(hi)?;
    while eps_high > target_epsilon {
        hi *= 2.0;
        if hi > 1e6 {
            return Err(Error::range(
                "target epsilon",
                target_epsilon,
                "is unreachable for these parameters",
            ));
        }
        eps_high = eps(hi)?;
    }
    while target_epsilon - eps_high > tolerance {
        let mid = (lo + hi) / 2.0;
        let e = eps(mid)?;
        if e < target_epsilon {
            hi = mid;
            eps_high = e;
        } else {
            lo = mid;
        }
    }
    Ok(hi)
}

/// Basic composition: `k` mechanisms, each (ε, δ)-DP, are (kε, kδ)-DP.
pub fn basic_composition(epsilon: f64, delta: f64, k: u64) -> (f64, f64) {
    (epsilon * k as f64, delta * k as f64)
}

/// Advanced composition (Dwork, Rothblum & Vadhan 2010): `k` ε-DP mechanisms are
/// (ε √(2k ln(1/δ′)) + kε(e^ε − 1), δ′)-DP.
pub fn advanced_composition(epsilon: f64, k: u64, delta_prime: f64) -> Result<f64> {
    check_delta(delta_prime)?;
    let k = k as f64;
    Ok(epsilon * (2.0 * k * (1.0 / delta_prime).ln()).sqrt() + k * epsilon * epsilon.exp_m1())
}

/// Classic Gaussian calibration: σ = Δ √(2 ln(1.25/δ)) / ε (valid for ε < 1).
pub fn gaussian_sigma_classic(epsilon: f64, delta: f64, sensitivity: f64) -> Result<f64> {
    check_delta(delta)?;
    if !above(epsilon, 0.0) {
        return Err(Error::range("epsilon", epsilon, "must be positive"));
    }
    Ok(sensitivity * (2.0 * (1.25 / delta).ln()).sqrt() / epsilon)
}

fn phi(t: f64) -> f64 {
    0.5 * libm::erfc(-t / std::f64::consts::SQRT_2)
}

/// The analytic Gaussian mechanism's σ (Balle & Wang 2018, Algorithm 1): the smallest σ for
/// which the Gaussian mechanism with L2 sensitivity `sensitivity` is (ε, δ)-DP, for any ε > 0.
pub fn gaussian_sigma_analytic(epsilon: f64, delta: f64, sensitivity: f64) -> Result<f64> {
    check_delta(delta)?;
    if !above(epsilon, 0.0) || !epsilon.is_finite() {
        return Err(Error::range(
            "epsilon",
            epsilon,
            "must be positive and finite",
        ));
    }
    let case_a =
        |s: f64| phi((epsilon * s).sqrt()) - epsilon.exp() * phi(-(epsilon * (s + 2.0)).sqrt());
    let case_b =
        |s: f64| phi(-(epsilon * s).sqrt()) - epsilon.exp() * phi(-(epsilon * (s + 2.0)).sqrt());
    let threshold = case_a(0.0);
    let tol = 1e-12;
    let alpha = if delta == threshold {
        1.0
    } else {
        let above = delta > threshold;
        let f = |s: f64| if above { case_a(s) } else { case_b(s) };
        let stop_doubling = |s: f64| if above { f(s) >= delta } else { f(s) <= delta };
        let (mut lo, mut hi) = (0.0f64, 1.0f64);
        while !stop_doubling(hi) {
            lo = hi;
            hi *= 2.0;
        }
        let mut mid = lo + (hi - lo) / 2.0;
        let mut guard = 0;
        while (f(mid) - delta).abs() > tol && guard < 2000 {
            let go_left = if above {
                f(mid) > delta
            } else {
                f(mid) < delta
            };
            if go_left {
                hi = mid;
            } else {
                lo = mid;
            }
            mid = lo + (hi - lo) / 2.0;
            guard += 1;
        }
        if above {
            (1.0 + mid / 2.0).sqrt() - (mid / 2.0).sqrt()
        } else {
            (1.0 + mid / 2.0).sqrt() + (mid / 2.0).sqrt()
        }
    };
    Ok(alpha * sensitivity / (2.0 * epsilon).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opacus_vector() {
        let (eps, order) = epsilon(0.04, 1.5, 2250, 1e-5, &opacus_orders()).expect("eps");
        assert!((eps - 7.32911117143).abs() < 1e-9, "{eps} at {order}");
        // RDP at α = 3.9 with the signed series (Opacus), as the issue states.
        let r = rdp(0.04, 1.5, 2250, &[3.9]).expect("rdp")[0];
        assert!((r - 4.12470).abs() < 1e-5, "{r}");
    }

    #[test]
    fn dp_accounting_rdp_vector() {
        let orders = [1.5, 2.5, 5.0, 50.0, 100.0, f64::INFINITY];
        let want = [
            6.5007e-4,
            1.0854e-3,
            2.1808e-3,
            2.3846e-2,
            1.6742e+2,
            f64::INFINITY,
        ];
        let got = rdp(0.01, 2.5, 50, &orders).expect("rdp");
        for ((g, w), a) in got.iter().zip(want).zip(orders) {
            if w.is_infinite() {
                assert!(g.is_infinite());
            } else {
                assert!(((g - w) / w).abs() < 1e-4, "order {a}: {g} vs {w}");
            }
        }
    }

    #[test]
    fn gaussian_calibrations_and_composition() {
        let s = gaussian_sigma_analytic(1.0, 1e-5, 1.0).expect("analytic");
        assert!((s - 3.73063).abs() < 1e-5, "{s}");
        let c = gaussian_sigma_classic(1.0, 1e-5, 1.0).expect("classic");
        assert!((c - 4.84481).abs() < 1e-5, "{c}");
        let e = advanced_composition(0.1, 100, 1e-5).expect("advanced");
        assert!((e - 5.85024).abs() < 1e-5, "{e}");
        assert_eq!(basic_composition(0.5, 1e-6, 4), (2.0, 4e-6));
    }

    #[test]
    fn calibration_finds_the_noise_for_a_target() {
        let orders = opacus_orders();
        let s = noise_multiplier(0.04, 2250, 7.32911117143, 1e-5, &orders, 0.01).expect("sigma");
        let (e, _) = epsilon(0.04, s, 2250, 1e-5, &orders).expect("eps");
        assert!(
            e <= 7.32911117143 && 7.32911117143 - e <= 0.01,
            "{s} gives {e}"
        );
        assert!((s - 1.5).abs() < 0.01, "{s}");
    }

    #[test]
    fn bad_parameters_are_typed_errors() {
        for (q, s) in [
            (0.0, 1.0),
            (1.5, 1.0),
            (f64::NAN, 1.0),
            (0.1, 0.0),
            (0.1, -1.0),
        ] {
            assert!(
                matches!(rdp_step(q, s, 2.0), Err(Error::OutOfRange { .. })),
                "{q} {s}"
            );
        }
        assert!(epsilon(0.1, 1.0, 10, 0.0, &[2.0]).is_err());
        assert!(epsilon(0.1, 1.0, 10, 1.0, &[2.0]).is_err());
        assert!(rdp_step(0.1, 1.0, 1.0).is_err());
        assert!(rdp_to_epsilon(&[2.0], &[], 1e-5).is_err());
        assert!(log_erfc(40.0).is_finite() && log_erfc(40.0) < -1600.0);
    }
}
