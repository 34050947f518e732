//! Helpers shared by the integration tests.
#![allow(dead_code)]

use aistd_training::data::{self, Dataset};
use aistd_training::optim::{OptimizerConfig, OptimizerKind};
use aistd_training::{PrivacyAccountant, TrainConfig};

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

/// The digits MLP 64 → 128 → 10: Adam at 1e-3, batches of 64, seed 0.
pub(crate) fn mlp128(epochs: usize) -> TrainConfig {
    let mut c = TrainConfig::default();
    c.hidden = vec![128];
    c.epochs = epochs;
    c.batch_size = 64;
    c.optimizer = OptimizerConfig::new(OptimizerKind::adam(), 1e-3);
    c.seed = 0;
    c
}
