//! The libtorch backend (feature `tch`): the conformance kit, agreement with the ndarray backend
//! for the same initial weights and data (plain SGD, Adam with dropout, DP-SGD, adversarial
//! training, fine-tuning), and digits.
#![cfg(feature = "tch")]

use aistd_training::data::{self, Dataset, Target};
use aistd_training::nn::{Activation, Loss};
use aistd_training::optim::{OptimizerConfig, OptimizerKind};
use aistd_training::{
    AdversarialConfig, Attack, DpConfig, FineTune, Model, NdarrayTrainer, Norm, Silent, TchTrainer,
    TrainConfig, conformance, metrics,
};
use ndarray::Array2;

#[test]
fn the_conformance_kit_passes() {
    let dir = tempfile::tempdir().expect("dir");
    conformance::run_all(&TchTrainer::cpu(), dir.path());
}

/// A small problem: 64 rows of 5 features, 3 classes or one value.
fn small(classes: bool) -> Dataset {
    let mut rng = aistd_training::rng::Rng::new(9);
    let x = Array2::from_shape_fn((64, 5), |_| (rng.uniform() * 4.0 - 2.0) as f32);
    let y = if classes {
        Target::Classes {
            labels: x
                .outer_iter()
                .map(|r| ((r[0] + r[1] * r[2]).abs() * 1.5) as u32 % 3)
                .collect(),
            names: vec!["a".into(), "b".into(), "c".into()],
        }
    } else {
        Target::Values(
            x.outer_iter()
                .map(|r| r[0] * 2.0 - r[3] + r[4] * r[1])
                .collect(),
        )
    };
    Dataset::new(x, y, (0..5).map(|i| format!("f{i}")).collect()).expect("dataset")
}

/// 3 epochs of SGD (lr 0.05) in batches of 8, seed 4.
fn sgd(hidden: Vec<usize>) -> TrainConfig {
    let mut config = TrainConfig::default();
    config.hidden = hidden;
    config.epochs = 3;
    config.batch_size = 8;
    config.optimizer = OptimizerConfig::new(OptimizerKind::Sgd, 0.05);
    config.seed = 4;
    config
}

/// The parameters the libtorch backend trains.
fn tch_params(d: &Dataset, config: &TrainConfig) -> Vec<f32> {
    let (m, _) = TchTrainer::cpu()
        .fit_mlp(d, None, config, &mut Silent)
        .expect("tch");
    m.network().parameters().to_vec()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The agreement test: identical initial weights and data, several SGD steps on a small
/// MLP, parameters equal to 1e-5.
#[test]
fn the_backends_agree_after_sgd_steps_on_a_small_mlp() {
    let cases = [
        (true, Activation::Relu, None),
        (true, Activation::Tanh, None),
        (true, Activation::Gelu, None),
        (false, Activation::Sigmoid, None),
        (false, Activation::Relu, Some(Loss::Huber { delta: 0.5 })),
    ];
    for (classes, activation, loss) in cases {
        let d = small(classes);
        let mut config = sgd(vec![16, 8]);
        config.activation = activation;
        config.loss = loss;
        let (a, ha) = NdarrayTrainer
            .fit_mlp(&d, None, &config, &mut Silent)
            .expect("ndarray");
        let (b, hb) = TchTrainer::cpu()
            .fit_mlp(&d, None, &config, &mut Silent)
            .expect("tch");
        let diff = max_diff(a.network().parameters(), b.network().parameters());
        eprintln!("{activation:?}, classes {classes}: max parameter difference {diff:e}");
        assert!(
            diff <= 1e-5,
            "{activation:?}, classes {classes}: parameters differ by {diff} after 24 steps"
        );
        // Training moved the weights: the agreement is not of two untouched initialisations.
        let init =
            aistd_training::nn::Mlp::new(a.network().architecture().clone(), 4).expect("init");
        assert!(max_diff(init.parameters(), a.network().parameters()) > 1e-3);
        for (ea, eb) in ha.epochs.iter().zip(&hb.epochs) {
            assert!(
                (ea.train_loss - eb.train_loss).abs() < 1e-5,
                "{ea:?} vs {eb:?}"
            );
        }
    }
}

/// Adam, binary cross-entropy and dropout (the masks are drawn by the shared code) agree too.
#[test]
fn the_backends_agree_with_adam_dropout_and_two_classes() {
    let d = data::breast_cancer().expect("data");
    let mut config = TrainConfig::default();
    config.hidden = vec![32];
    config.dropout = 0.2;
    config.epochs = 2;
    config.batch_size = 32;
    config.seed = 1;
    let (a, _) = NdarrayTrainer
        .fit_mlp(&d, None, &config, &mut Silent)
        .expect("ndarray");
    let (b, _) = TchTrainer::cpu()
        .fit_mlp(&d, None, &config, &mut Silent)
        .expect("tch");
    let diff = max_diff(a.network().parameters(), b.network().parameters());
    eprintln!("Adam + dropout + BCE: max parameter difference {diff:e}");
    assert!(diff <= 1e-4, "parameters differ by {diff}");
}

/// DP-SGD on libtorch: the same Poisson batches, per-example clipping and noise as the ndarray
/// backend, so the same parameters (to float reassociation) and the same privacy record. C is
/// small enough that clipping acts: the same noise (σ·C) with C = 100 gives other parameters.
#[test]
fn dp_sgd_agrees_with_the_ndarray_backend() {
    for (classes, loss) in [(true, None), (false, Some(Loss::Huber { delta: 0.5 }))] {
        let d = small(classes);
        let mut config = sgd(vec![16, 8]);
        config.loss = loss;
        config.dp = Some(DpConfig::new(0.8, 0.3));
        let (a, ha) = NdarrayTrainer
            .fit_mlp_with(&d, None, &config, None, &mut Silent)
            .expect("ndarray");
        let (b, hb) = TchTrainer::cpu()
            .fit_mlp_with(&d, None, &config, None, &mut Silent)
            .expect("tch");
        let diff = max_diff(a.network().parameters(), b.network().parameters());
        eprintln!("DP-SGD, classes {classes}: max parameter difference {diff:e}");
        assert!(
            diff <= 1e-5,
            "classes {classes}: parameters differ by {diff}"
        );
        assert_eq!(ha.privacy, hb.privacy);
        let spent = hb.privacy.expect("privacy record");
        assert_eq!((spent.noise_multiplier, spent.clip_norm), (0.8, 0.3));
        for (ea, eb) in ha.epochs.iter().zip(&hb.epochs) {
            assert!(
                (ea.train_loss - eb.train_loss).abs() < 1e-5,
                "{ea:?} vs {eb:?}"
            );
        }
        config.dp = Some(DpConfig::new(0.8 * 0.3 / 100.0, 100.0));
        assert!(max_diff(&tch_params(&d, &config), b.network().parameters()) > 1e-3);
        // The noise moved the model away from the non-private one.
        config.dp = None;
        assert!(max_diff(&tch_params(&d, &config), b.network().parameters()) > 1e-3);
    }
}

/// Adversarial training on libtorch: the shared loop makes each batch's PGD examples against
/// the current weights and the engine trains on those rows; with dropout, whose masks follow
/// each example's own generator; and with DP-SGD.
#[test]
fn adversarial_training_agrees_with_the_ndarray_backend() {
    let d = small(true);
    let mut config = sgd(vec![16]);
    config.dropout = 0.1;
    config.adversarial = Some(
        AdversarialConfig::new(Attack::pgd(Norm::Linf, 0.2))
            .with_fraction(0.5)
            .with_bounds(-2.0, 2.0),
    );
    let (a, _) = NdarrayTrainer
        .fit_mlp(&d, None, &config, &mut Silent)
        .expect("ndarray");
    let b = tch_params(&d, &config);
    let diff = max_diff(a.network().parameters(), &b);
    eprintln!("adversarial training: max parameter difference {diff:e}");
    assert!(diff <= 1e-5, "parameters differ by {diff}");
    // Together with DP-SGD: the perturbed rows clipped per example, then the shared noise.
    let mut private = config.clone();
    private.dp = Some(DpConfig::new(0.8, 0.3));
    let (pa, _) = NdarrayTrainer
        .fit_mlp(&d, None, &private, &mut Silent)
        .expect("ndarray");
    let diff = max_diff(pa.network().parameters(), &tch_params(&d, &private));
    eprintln!("adversarial training with DP-SGD: max parameter difference {diff:e}");
    assert!(diff <= 1e-5, "with DP-SGD, parameters differ by {diff}");
    config.adversarial = None;
    assert!(max_diff(&tch_params(&d, &config), &b) > 1e-3);
}

#[test]
fn digits_reach_97_percent_with_libtorch() {
    let parts = data::digits()
        .expect("digits")
        .split(&[0.75, 0.25], 42)
        .expect("split");
    let mut config = TrainConfig::default();
    config.hidden = vec![128];
    config.epochs = 40;
    config.seed = 42;
    let (model, _) = TchTrainer::cpu()
        .fit_mlp(&parts[0], None, &config, &mut Silent)
        .expect("fit");
    let pred = model.predict_labels(parts[1].x.view()).expect("predict");
    let acc = metrics::accuracy(parts[1].labels().expect("labels"), &pred).expect("accuracy");
    eprintln!("digits test accuracy with libtorch: {acc}");
    assert!(acc >= 0.97, "{acc}");
}

/// Fine-tuning from a saved model (two layers copied, a new head, the first layer frozen for an
/// epoch then thawed, discriminative rates): parameters within 1e-5 on both backends, and the frozen
/// layer unchanged while frozen.
#[test]
fn fine_tuning_agrees_with_the_ndarray_backend() {
    let d = small(true);
    let dir = tempfile::tempdir().expect("dir");
    let mut pre = sgd(vec![16, 8]);
    pre.seed = 11;
    let (pretrained, _) = NdarrayTrainer
        .fit_mlp(&d, None, &pre, &mut Silent)
        .expect("pre-train");
    pretrained.save(dir.path()).expect("save");
    let mut config = sgd(vec![16, 8]);
    config.fine_tune = Some(
        FineTune::from_path(dir.path())
            .copy_layers(2)
            .freeze(["0", "1"])
            .unfreeze_every(1)
            .discriminative(3, 2.0),
    );
    let (a, _) = NdarrayTrainer
        .fit_mlp(&d, None, &config, &mut Silent)
        .expect("ndarray");
    let b = tch_params(&d, &config);
    let diff = max_diff(a.network().parameters(), &b);
    eprintln!("fine-tuning: max parameter difference {diff:e}");
    assert!(diff <= 1e-5, "parameters differ by {diff}");
    // Frozen throughout (no thawing): the copied layer stays as it was.
    config.epochs = 2;
    config.fine_tune = Some(FineTune::from_path(dir.path()).copy_layers(2).freeze(["0"]));
    let frozen = tch_params(&d, &config);
    let net = pretrained.network();
    let r = net.layer_range(0);
    assert_eq!(&frozen[r.clone()], &net.parameters()[r]);
}
