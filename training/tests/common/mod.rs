//! Helpers shared by the integration tests.
#![allow(dead_code)]

use aistd_training::PrivacyAccountant;
use aistd_training::data::{self, Dataset};

/// Digits split 75/25 (stratified, seed 42), pixels scaled to [0, 1] by their bound 16.
pub(crate) fn digits_unit() -> (Dataset, Dataset) {
    let mut parts = data::digits()
        .expect("digits")
        .split(&[0.75, 0.25], 42)
        .expect("split");
    for p in &mut parts {
        p.x.mapv_inplace(|v| v / 16.0);
    }
    let test = parts.pop().expect("test");
    (parts.pop().expect("train"), test)
}

/// ε = steps · √(2 ln(1.25 / δ)) / σ, ignoring the sampling: basic composition of the classic
/// Gaussian mechanism, a valid but loose upper bound.
pub(crate) struct Basic;

impl PrivacyAccountant for Basic {
    fn name(&self) -> &str {
        "basic"
    }

    fn epsilon(&self, _q: f64, sigma: f64, steps: u64, delta: f64) -> aistd_training::Result<f64> {
        Ok(steps as f64 * (2.0 * (1.25 / delta).ln()).sqrt() / sigma)
    }
}
