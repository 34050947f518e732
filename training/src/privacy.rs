//! Differentially private training: DP-SGD (Abadi et al. 2016, "Deep Learning with Differential
//! Privacy"), as Opacus runs it.
//!
//! Each step samples a batch by Poisson sampling (every training example joins with
//! probability q = batch size / examples, so batch sizes vary), clips each example's gradient
//! to L2 norm C, sums the clipped gradients, adds Gaussian noise of standard deviation σ·C to
//! every coordinate and divides by the expected batch size. An epoch is round(1 / q) steps.
//!
//! The per-example norms come without per-example gradients: for a dense layer, example i's
//! weight gradient is the outer product aᵢ ⊗ δᵢ of its input and its output gradient, whose
//! Frobenius norm is ‖aᵢ‖·‖δᵢ‖ (Goodfellow 2015), and its bias gradient is δᵢ. So one backward
//! pass gives every δ, the norms follow, and the weight gradients are the usual matrix products
//! with each δᵢ scaled by its clipping factor min(1, C / (‖gᵢ‖ + 10⁻⁶)).
//!
//! What ε this spends is a question for a [`PrivacyAccountant`], which this crate does not
//! implement: the root package connects `aistd-compliance`'s RDP accountant. With a budget
//! ([`DpConfig::target_epsilon`]) training refuses to start when its planned steps would exceed
//! it, and the ε spent is kept in the history and in the model's manifest.
//!
//! Not private: statistics that preprocessing fits on the training data (standardization, and
//! the category lists of one-hot encoding) are computed without noise, as in Opacus. Scale
//! features with public bounds and turn standardization off where that matters.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::rng::Rng;

/// DP-SGD's settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DpConfig {
    /// σ: the noise's standard deviation as a multiple of the clip norm. `None`: calibrated
    /// to [`DpConfig::target_epsilon`] by the accountant, for the planned steps.
    pub noise_multiplier: Option<f64>,
    /// C: the largest L2 norm of one example's gradient.
    pub clip_norm: f64,
    /// δ of the (ε, δ) guarantee.
    pub delta: f64,
    /// The ε budget: training refuses to start if its steps would spend more.
    pub target_epsilon: Option<f64>,
}

impl DpConfig {
    /// Noise multiplier `sigma`, clip norm `clip`, δ = 10⁻⁵, no budget.
    pub fn new(sigma: f64, clip: f64) -> Self {
        Self {
            noise_multiplier: Some(sigma),
            clip_norm: clip,
            delta: 1e-5,
            target_epsilon: None,
        }
    }

    /// The noise calibrated to spend at most `epsilon` at `delta` (clip norm `clip`).
    pub fn for_epsilon(epsilon: f64, delta: f64, clip: f64) -> Self {
        Self {
            noise_multiplier: None,
            clip_norm: clip,
            delta,
            target_epsilon: Some(epsilon),
        }
    }

    /// With δ `delta`.
    pub fn with_delta(mut self, delta: f64) -> Self {
        self.delta = delta;
        self
    }

    /// With an ε budget.
    pub fn with_budget(mut self, epsilon: f64) -> Self {
        self.target_epsilon = Some(epsilon);
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |what: &str, v: f64, why: &str| {
            Err(Error::invalid(
                format!("differential privacy: {what}"),
                format!("{v} {why}"),
            ))
        };
        if !(self.clip_norm > 0.0 && self.clip_norm.is_finite()) {
            return bad("clip norm", self.clip_norm, "must be positive and finite");
        }
        if let Some(s) = self.noise_multiplier
            && !(s >= 0.0 && s.is_finite())
        {
            return bad("noise multiplier", s, "must be ≥ 0 and finite");
        }
        if !(self.delta > 0.0 && self.delta < 1.0) {
            return bad("delta", self.delta, "must be in (0, 1)");
        }
        match self.target_epsilon {
            Some(e) if !(e > 0.0 && e.is_finite()) => {
                bad("target epsilon", e, "must be positive and finite")
            }
            None if self.noise_multiplier.is_none() => Err(Error::invalid(
                "differential privacy",
                "needs a noise multiplier or a target epsilon to calibrate one for",
            )),
            _ => Ok(()),
        }
    }
}

/// Turns DP-SGD's parameters into the ε they spend: the seam to a privacy accountant (the root
/// package's is `aistd-compliance`'s RDP accountant for the Poisson-subsampled Gaussian).
///
/// # Contract
/// - `epsilon` is non-decreasing in `steps` and in `sampling_rate`, non-increasing in
///   `noise_multiplier`; 0 steps spend 0.
/// - Errors are typed (an unreachable target is an error, not an infinite noise).
pub trait PrivacyAccountant: Send + Sync {
    /// A short name recorded with the model (`"rdp"`).
    fn name(&self) -> &str;

    /// ε at `delta` after `steps` steps at sampling rate `sampling_rate` and noise multiplier
    /// `noise_multiplier`.
    fn epsilon(
        &self,
        sampling_rate: f64,
        noise_multiplier: f64,
        steps: u64,
        delta: f64,
    ) -> Result<f64>;

    /// The smallest noise multiplier (within 0.01 in ε) that spends at most `target_epsilon`
    /// in `steps` steps; by default a bisection on [`PrivacyAccountant::epsilon`].
    fn noise_multiplier(
        &self,
        sampling_rate: f64,
        steps: u64,
        target_epsilon: f64,
        delta: f64,
    ) -> Result<f64> {
        let eps = |s: f64| self.epsilon(sampling_rate, s, steps, delta);
        let (mut lo, mut hi) = (0.0f64, 1.0f64);
        let mut at_hi = eps(hi)?;
        while at_hi > target_epsilon {
            lo = hi;
            hi *= 2.0;
            if hi > 1e4 {
                return Err(Error::invalid(
                    "target epsilon",
                    format!(
                        "{target_epsilon} at δ = {delta} is out of reach in {steps} steps at \
                         sampling rate {sampling_rate}: even noise multiplier 10⁴ spends more"
                    ),
                ));
            }
            at_hi = eps(hi)?;
        }
        while target_epsilon - at_hi > 0.01 && hi - lo > 1e-4 {
            let mid = 0.5 * (lo + hi);
            let e = eps(mid)?;
            if e <= target_epsilon {
                hi = mid;
                at_hi = e;
            } else {
                lo = mid;
            }
        }
        Ok(hi)
    }
}

/// What differentially private training spent, kept in the history and the model manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PrivacySpent {
    /// ε at [`PrivacySpent::delta`] over the steps run (`None` without an accountant).
    pub epsilon: Option<f64>,
    /// δ.
    pub delta: f64,
    /// σ used.
    pub noise_multiplier: f64,
    /// C used.
    pub clip_norm: f64,
    /// q: the probability that an example joins a batch.
    pub sampling_rate: f64,
    /// Noisy steps taken.
    pub steps: u64,
    /// The accountant's name.
    pub accountant: Option<String>,
}

/// The examples of one Poisson-sampled batch out of `n`, each kept with probability `q`:
/// geometric gaps between kept indices, so a batch costs its size, not `n`.
pub(crate) fn poisson_batch(rng: &mut Rng, n: usize, q: f64, out: &mut Vec<usize>) {
    out.clear();
    if q >= 1.0 {
        out.extend(0..n);
        return;
    }
    let log_skip = (1.0 - q).ln();
    let mut i = 0usize;
    loop {
        // Failures before the next success of a Bernoulli(q) sequence.
        let u = 1.0 - rng.uniform();
        let gap = (u.ln() / log_skip).floor();
        if !gap.is_finite() || gap >= (n - i) as f64 {
            return;
        }
        i += gap as usize;
        out.push(i);
        i += 1;
        if i >= n {
            return;
        }
    }
}

/// A standard normal draw (Box–Muller; one of the pair).
pub(crate) fn gaussian(rng: &mut Rng) -> f64 {
    let u1 = 1.0 - rng.uniform();
    let u2 = rng.uniform();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_batches_have_the_right_rate_and_no_repeats() {
        let mut rng = Rng::new(5);
        let mut batch = Vec::new();
        let (n, q, draws) = (1000, 0.05, 2000);
        let mut hits = vec![0u32; n];
        let mut sizes = Vec::new();
        for _ in 0..draws {
            poisson_batch(&mut rng, n, q, &mut batch);
            assert!(batch.windows(2).all(|w| w[0] < w[1]), "sorted, distinct");
            assert!(batch.iter().all(|i| *i < n));
            sizes.push(batch.len() as f64);
            for i in &batch {
                hits[*i] += 1;
            }
        }
        let mean = sizes.iter().sum::<f64>() / draws as f64;
        // Binomial(1000, 0.05): mean 50, sd of the mean of 2000 batches ≈ 0.15.
        assert!((mean - 50.0).abs() < 0.8, "mean batch {mean}");
        let var = sizes.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / draws as f64;
        assert!((var - 47.5).abs() < 6.0, "variance {var}");
        // Each example joins about q · draws = 100 times; the first and last too.
        for i in [0, 1, n / 2, n - 1] {
            assert!((60..=140).contains(&hits[i]), "example {i}: {}", hits[i]);
        }
        poisson_batch(&mut rng, n, 1.0, &mut batch);
        assert_eq!(batch.len(), n);
    }

    #[test]
    fn gaussian_draws_are_standard_normal() {
        let mut rng = Rng::new(11);
        let v: Vec<f64> = (0..200_000).map(|_| gaussian(&mut rng)).collect();
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
        let tail = v.iter().filter(|x| x.abs() > 1.96).count() as f64 / v.len() as f64;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.01, "variance {var}");
        assert!((tail - 0.05).abs() < 0.003, "two-sided 5% tail {tail}");
    }

    #[test]
    fn configs_are_checked() {
        for bad in [
            DpConfig::new(1.0, 0.0),
            DpConfig::new(1.0, -1.0),
            DpConfig::new(-0.5, 1.0),
            DpConfig::new(f64::NAN, 1.0),
            DpConfig::new(1.0, 1.0).with_delta(0.0),
            DpConfig::new(1.0, 1.0).with_budget(0.0),
            DpConfig {
                noise_multiplier: None,
                target_epsilon: None,
                ..DpConfig::new(1.0, 1.0)
            },
        ] {
            let e = bad.validate().expect_err("invalid");
            assert!(e.to_string().contains("differential privacy"), "{e}");
        }
        DpConfig::new(1.1, 1.0).validate().expect("valid");
        DpConfig::for_epsilon(3.0, 1e-5, 1.0)
            .validate()
            .expect("valid");
    }
}
