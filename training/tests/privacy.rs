//! DP-SGD on the ndarray backend: the noise's scale, clipping, determinism across thread counts,
//! the ε budget, and the privacy record in the model files. The accountant here is the loose
//! but valid one of basic composition over the classic Gaussian mechanism; the root package's
//! tests run the RDP accountant of `aistd-compliance`.

mod common;

use aistd_training::data::{self, Dataset, Target};
use aistd_training::optim::{OptimizerConfig, OptimizerKind};
use aistd_training::{
    DpConfig, Error, MlpModel, Model, NdarrayTrainer, PrivacyAccountant, Silent, TrainConfig,
    metrics,
};
use ndarray::Array2;

use common::Basic;

fn digits() -> Vec<Dataset> {
    data::digits()
        .expect("digits")
        .split(&[0.75, 0.25], 42)
        .expect("split")
}

fn dp_config(dp: DpConfig) -> TrainConfig {
    let mut c = TrainConfig::default();
    c.hidden = vec![64];
    c.epochs = 8;
    c.batch_size = 64;
    c.optimizer = OptimizerConfig::new(OptimizerKind::Sgd, 0.5);
    c.dp = Some(dp);
    c
}

fn accuracy(m: &MlpModel, d: &Dataset) -> f64 {
    let pred = m.predict_labels(d.x.view()).expect("predict");
    metrics::accuracy(d.labels().expect("labels"), &pred).expect("accuracy")
}

#[test]
fn dp_sgd_learns_digits_and_records_what_it_spent() {
    let parts = digits();
    let c = dp_config(DpConfig::new(1.0, 1.0));
    let (model, history) = NdarrayTrainer
        .fit_mlp_with(&parts[0], None, &c, Some(&Basic), &mut Silent)
        .expect("private training");
    let acc = accuracy(&model, &parts[1]);
    assert!(acc > 0.85, "DP-SGD test accuracy {acc}");
    let spent = history.privacy.clone().expect("privacy record");
    // About 1,350 training rows at batch 64: q = 64/n, round(1/q) = 21 steps an epoch.
    let n = parts[0].x.nrows() as f64;
    assert_eq!(spent.steps, 8 * 21, "{n} rows");
    assert!((spent.sampling_rate - 64.0 / n).abs() < 1e-12);
    assert_eq!(spent.noise_multiplier, 1.0);
    let eps = spent.epsilon.expect("epsilon");
    let want = 168.0 * (2.0 * (1.25e5f64).ln()).sqrt();
    assert!((eps - want).abs() < 1e-9 * want, "{eps} against {want}");
    assert_eq!(spent.accountant.as_deref(), Some("basic"));
    // Saved with the model and read back.
    let dir = tempfile::tempdir().expect("dir");
    model.save(dir.path()).expect("save");
    let back = MlpModel::load(dir.path()).expect("load");
    assert_eq!(back.privacy(), Some(&spent));
    let manifest = std::fs::read_to_string(dir.path().join("manifest.json")).expect("manifest");
    assert!(manifest.contains("\"noise_multiplier\": 1.0"), "{manifest}");
    // A model trained without DP has no record.
    let mut plain = dp_config(DpConfig::new(1.0, 1.0));
    plain.dp = None;
    plain.epochs = 1;
    let (m, h) = NdarrayTrainer
        .fit_mlp(&parts[0], None, &plain, &mut Silent)
        .expect("plain");
    assert!(h.privacy.is_none() && m.privacy().is_none());
}

/// The same seed gives the same model; two threads give the single-threaded model up to the
/// order of float additions (shards are summed, then the noise, drawn in one sequence, added).
#[test]
fn dp_sgd_is_deterministic_and_thread_count_free() {
    let parts = digits();
    let mut c = dp_config(DpConfig::new(1.3, 0.8));
    c.epochs = 2;
    c.dropout = 0.1;
    let fit = |c: &TrainConfig| {
        NdarrayTrainer
            .fit_mlp_with(&parts[0], None, c, Some(&Basic), &mut Silent)
            .expect("fit")
            .0
    };
    let a = fit(&c);
    let b = fit(&c);
    assert_eq!(a.network().parameters(), b.network().parameters());
    c.threads = 2;
    let t = fit(&c);
    let worst = a
        .network()
        .parameters()
        .iter()
        .zip(t.network().parameters())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-4, "1 against 2 threads: {worst}");
    c.seed = 1;
    c.threads = 1;
    assert_ne!(fit(&c).network().parameters(), a.network().parameters());
}

/// Rows of `n` two-feature examples (two classes), unstandardized.
fn blobs(n: usize) -> Dataset {
    let x = Array2::from_shape_fn((n, 2), |(i, j)| {
        let c = (i % 2) as f32;
        (c * 2.0 - 1.0) * (1.0 + j as f32) + ((i * 7 + j * 3) % 5) as f32 * 0.1
    });
    let labels: Vec<u32> = (0..n).map(|i| (i % 2) as u32).collect();
    Dataset::new(
        x,
        Target::Classes {
            labels,
            names: vec!["a".into(), "b".into()],
        },
        vec!["f0".into(), "f1".into()],
    )
    .expect("dataset")
}

/// One full-batch step (q = 1) of plain SGD at learning rate 1 from the same weights: the noisy
/// and the noiseless runs differ by the noise divided by the batch size, whose coordinates are
/// N(0, (σC / B)²); and with a tiny clip norm, the step is at most C long.
#[test]
fn noise_has_the_stated_scale_and_clipping_bounds_the_step() {
    let d = blobs(40);
    let step = |sigma: f64, clip: f64| {
        let mut c = TrainConfig::default();
        c.hidden = vec![200];
        c.epochs = 1;
        c.batch_size = 40;
        c.standardize = false;
        c.optimizer = OptimizerConfig::new(OptimizerKind::Sgd, 1.0);
        c.dp = Some(DpConfig::new(sigma, clip));
        let (m, h) = NdarrayTrainer
            .fit_mlp(&d, None, &c, &mut Silent)
            .expect("one step");
        assert_eq!(h.privacy.as_ref().map(|p| p.steps), Some(1));
        m.network().parameters().to_vec()
    };
    let mut init = TrainConfig::default();
    init.hidden = vec![200];
    let start = aistd_training::nn::Mlp::new(
        aistd_training::nn::Architecture::new(2, vec![200], 1, init.activation),
        init.seed,
    )
    .expect("net");
    let quiet = step(0.0, 1.0);
    let noisy = step(2.0, 1.0);
    let z: Vec<f64> = quiet
        .iter()
        .zip(&noisy)
        .map(|(a, b)| f64::from(a - b) * 40.0 / 2.0)
        .collect();
    let mean = z.iter().sum::<f64>() / z.len() as f64;
    let sd = (z.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / z.len() as f64).sqrt();
    // 801 parameters: the sample sd of N(0, 1) is within 0.1 of 1 with overwhelming odds.
    assert!(
        mean.abs() < 0.15 && (sd - 1.0).abs() < 0.1,
        "mean {mean}, sd {sd}"
    );
    // Clipping: each example's gradient at most C = 10⁻³ long, so the mean step is too.
    let clipped = step(0.0, 1e-3);
    let moved = clipped
        .iter()
        .zip(start.parameters())
        .map(|(a, b)| f64::from(a - b).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!(
        moved > 1e-4 && moved <= 1e-3 * (1.0 + 1e-3),
        "step of length {moved}"
    );
    // Without clipping in effect the step is much longer.
    let free = quiet
        .iter()
        .zip(start.parameters())
        .map(|(a, b)| f64::from(a - b).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!(free > 10.0 * moved, "{free} against {moved}");
}

#[test]
fn the_budget_is_enforced_and_the_noise_calibrated() {
    let parts = digits();
    // 168 steps: basic composition at σ = 1 spends ≈ 816; a budget of 100 is refused.
    let c = dp_config(DpConfig::new(1.0, 1.0).with_budget(100.0));
    match NdarrayTrainer.fit_mlp_with(&parts[0], None, &c, Some(&Basic), &mut Silent) {
        Err(Error::PrivacyBudget {
            planned,
            budget,
            epochs,
            ..
        }) => {
            assert!(planned > 800.0 && budget == 100.0, "{planned} {budget}");
            // 21 steps an epoch spend ≈ 102 each: not even one epoch fits.
            assert_eq!(epochs, 0);
        }
        other => panic!("expected a budget error, got {other:?}"),
    }
    // Without an accountant neither a budget nor calibration can work.
    let e = NdarrayTrainer
        .fit_mlp(&parts[0], None, &c, &mut Silent)
        .expect_err("no accountant");
    assert!(e.to_string().contains("accountant"), "{e}");
    // Calibrated to ε = 2000 over 2 epochs: σ is the smallest that fits, within 0.01 in ε.
    let mut c = dp_config(DpConfig::for_epsilon(2000.0, 1e-5, 1.0));
    c.epochs = 2;
    let (_, h) = NdarrayTrainer
        .fit_mlp_with(&parts[0], None, &c, Some(&Basic), &mut Silent)
        .expect("calibrated");
    let spent = h.privacy.expect("record");
    let eps = spent.epsilon.expect("epsilon");
    assert!(eps <= 2000.0 && eps > 1999.9, "ε {eps}");
    let want_sigma = 42.0 * (2.0 * (1.25e5f64).ln()).sqrt() / 2000.0;
    assert!(
        (spent.noise_multiplier - want_sigma).abs() < 1e-4,
        "σ {}",
        spent.noise_multiplier
    );
    // A target no noise can reach.
    struct Floor;
    impl PrivacyAccountant for Floor {
        fn name(&self) -> &str {
            "floor"
        }
        fn epsilon(&self, _: f64, sigma: f64, steps: u64, _: f64) -> aistd_training::Result<f64> {
            Ok(0.5 + steps as f64 / sigma)
        }
    }
    let c = dp_config(DpConfig::for_epsilon(0.4, 1e-5, 1.0));
    let e = NdarrayTrainer
        .fit_mlp_with(&parts[0], None, &c, Some(&Floor), &mut Silent)
        .expect_err("unreachable");
    assert!(e.to_string().contains("out of reach"), "{e}");
}

#[test]
fn bad_settings_and_tiny_batches() {
    let parts = digits();
    for dp in [
        DpConfig::new(1.0, 0.0),
        DpConfig::new(-1.0, 1.0),
        DpConfig::new(1.0, 1.0).with_delta(1.0),
    ] {
        let e = NdarrayTrainer
            .fit_mlp(&parts[0], None, &dp_config(dp), &mut Silent)
            .expect_err("invalid");
        assert!(matches!(e, Error::InvalidInput { .. }), "{e}");
    }
    // q = 1/20: many Poisson batches are empty; they are noise-only steps, not errors.
    let d = blobs(20);
    let mut c = dp_config(DpConfig::new(0.5, 1.0));
    c.batch_size = 1;
    c.epochs = 3;
    c.standardize = false;
    let (_, h) = NdarrayTrainer
        .fit_mlp_with(&d, None, &c, Some(&Basic), &mut Silent)
        .expect("tiny batches");
    assert_eq!(h.privacy.expect("record").steps, 60);
}
