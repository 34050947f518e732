//! The libtorch backend (feature `tch`): the conformance kit, agreement with the ndarray backend
//! for the same initial weights and data, and digits.
#![cfg(feature = "tch")]

use aistd_training::data::{self, Dataset, Target};
use aistd_training::nn::{Activation, Loss};
use aistd_training::optim::{OptimizerConfig, OptimizerKind};
use aistd_training::{NdarrayTrainer, Silent, TchTrainer, TrainConfig, conformance, metrics};
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
        let mut config = TrainConfig::default();
        config.hidden = vec![16, 8];
        config.activation = activation;
        config.loss = loss;
        config.epochs = 3;
        config.batch_size = 8;
        config.optimizer = OptimizerConfig::new(OptimizerKind::Sgd, 0.05);
        config.seed = 4;
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
