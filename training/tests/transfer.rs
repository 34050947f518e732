//! Fine-tuning on digits: a network pre-trained on the digits 0–4 is fine-tuned on 10% of the
//! 5–9 training examples. Weights load from a model directory or a safetensors file, a new head
//! starts fresh, frozen layers do not move, gradual unfreezing thaws the top layer first, and
//! per-layer learning rates scale each layer's step exactly.

use aistd_training::data::{self, Dataset, Target};
use aistd_training::optim::{OptimizerConfig, OptimizerKind};
use aistd_training::{FineTune, MlpModel, Model, NdarrayTrainer, Silent, TrainConfig};

/// The examples of `d` whose digit is in `digits`, relabelled 0.. in that order, pixels / 16.
fn subset(d: &Dataset, digits: &[u32], keep_every: usize) -> Dataset {
    let Target::Classes { labels, names } = &d.y else {
        panic!("classes")
    };
    let rows: Vec<usize> = (0..d.len())
        .filter(|r| digits.contains(&labels[*r]))
        .enumerate()
        .filter(|(k, _)| k % keep_every == 0)
        .map(|(_, r)| r)
        .collect();
    let x = d.x.select(ndarray::Axis(0), &rows).mapv(|v| v / 16.0);
    let y = rows
        .iter()
        .map(|r| digits.iter().position(|g| *g == labels[*r]).expect("kept") as u32)
        .collect();
    let names = digits.iter().map(|g| names[*g as usize].clone()).collect();
    Dataset::new(x, Target::Classes { labels: y, names }, d.features.clone()).expect("subset")
}

fn config(epochs: usize, fine_tune: Option<FineTune>) -> TrainConfig {
    let mut c = TrainConfig::default();
    c.hidden = vec![64];
    c.epochs = epochs;
    c.batch_size = 32;
    c.standardize = false;
    c.optimizer = OptimizerConfig::new(OptimizerKind::adam(), 0.003);
    c.seed = 5;
    c.fine_tune = fine_tune;
    c
}

fn fit(train: &Dataset, c: &TrainConfig) -> MlpModel {
    NdarrayTrainer
        .fit_mlp(train, None, c, &mut Silent)
        .expect("training")
        .0
}

/// A model trained on the digits 0–4, saved in `dir`; and the 5–9 training examples.
fn pretrained(dir: &std::path::Path) -> (MlpModel, Dataset) {
    let parts = data::digits()
        .expect("digits")
        .split(&[0.75, 0.25], 42)
        .expect("split");
    let pre = fit(&subset(&parts[0], &[0, 1, 2, 3, 4], 1), &config(5, None));
    pre.save(dir).expect("save");
    (pre, subset(&parts[0], &[5, 6, 7, 8, 9], 10))
}

fn layer(m: &MlpModel, l: usize) -> Vec<f32> {
    let net = m.network();
    net.parameters()[net.layer_range(l)].to_vec()
}

#[test]
fn weights_load_from_a_model_directory_or_a_safetensors_file_and_frozen_layers_stay() {
    let dir = tempfile::tempdir().expect("dir");
    let (pre, few) = pretrained(dir.path());
    let file = dir.path().join("model.safetensors");
    for init in [dir.path().to_path_buf(), file] {
        // Everything frozen: the model is the source, whatever the optimizer does.
        let all = fit(
            &few,
            &config(3, Some(FineTune::from_path(&init).freeze(["0", "head"]))),
        );
        assert_eq!(all.network().parameters(), pre.network().parameters());
        // The hidden layer frozen, the head (copied too) trains.
        let body = fit(
            &few,
            &config(3, Some(FineTune::from_path(&init).freeze(["layers.0"]))),
        );
        assert_eq!(layer(&body, 0), layer(&pre, 0));
        assert_ne!(layer(&body, 1), layer(&pre, 1));
    }
    // A new head: only the hidden layer is copied.
    let fresh = fit(&few, &config(1, None));
    let new_head = fit(
        &few,
        &config(
            1,
            Some(
                FineTune::from_path(dir.path())
                    .copy_layers(1)
                    .freeze(["0", "head"]),
            ),
        ),
    );
    assert_eq!(layer(&new_head, 0), layer(&pre, 0));
    assert_eq!(layer(&new_head, 1), layer(&untrained(&few), 1));
    assert_ne!(layer(&fresh, 1), layer(&pre, 1));
}

/// The untrained network of `config` for `d` (its head is what a new head starts from).
fn untrained(d: &Dataset) -> MlpModel {
    let mut c = config(1, None);
    c.fine_tune = Some(FineTune::default().freeze(["0", "head"]));
    fit(d, &c)
}

#[test]
fn gradual_unfreezing_thaws_the_top_layer_first() {
    let dir = tempfile::tempdir().expect("dir");
    let (pre, few) = pretrained(dir.path());
    let ft = FineTune::from_path(dir.path())
        .freeze(["0", "head"])
        .unfreeze_every(2);
    // Epochs 1–2: both frozen; 3–4: the head trains; 5–: both.
    let two = fit(&few, &config(2, Some(ft.clone())));
    assert_eq!(two.network().parameters(), pre.network().parameters());
    let four = fit(&few, &config(4, Some(ft.clone())));
    assert_eq!(layer(&four, 0), layer(&pre, 0));
    assert_ne!(layer(&four, 1), layer(&pre, 1));
    let five = fit(&few, &config(5, Some(ft)));
    assert_ne!(layer(&five, 0), layer(&pre, 0));
}

#[test]
fn per_layer_learning_rates_scale_each_layers_step() {
    let dir = tempfile::tempdir().expect("dir");
    let (pre, few) = pretrained(dir.path());
    // One full-batch SGD step: the step is lr · gradient, so a multiplier scales it exactly.
    let step = |lr: Vec<f32>| {
        let mut c = config(1, Some(FineTune::from_path(dir.path()).layer_lr(lr)));
        c.batch_size = few.len();
        c.optimizer = OptimizerConfig::new(OptimizerKind::Sgd, 0.1);
        fit(&few, &c)
    };
    let full = step(vec![]);
    let scaled = step(vec![0.25, 1.0]);
    let delta = |m: &MlpModel, l: usize| -> Vec<f32> {
        layer(m, l)
            .iter()
            .zip(layer(&pre, l))
            .map(|(a, b)| a - b)
            .collect()
    };
    let (d_full, d_scaled) = (delta(&full, 0), delta(&scaled, 0));
    assert!(d_full.iter().any(|v| v.abs() > 1e-4), "the layer moved");
    for (f, s) in d_full.iter().zip(&d_scaled) {
        assert!((0.25 * f - s).abs() < 1e-6, "{s} is not a quarter of {f}");
    }
    assert_eq!(layer(&full, 1), layer(&scaled, 1));
    // ULMFiT's factors: the head at 1, each layer below divided by 2.6.
    let f = FineTune::default().discriminative(3, 2.6);
    assert!((f.layer_lr[0] - 1.0 / 2.6f32.powi(2)).abs() < 1e-7 && f.layer_lr[2] == 1.0);
}

#[test]
fn bad_fine_tuning_settings_are_named() {
    let dir = tempfile::tempdir().expect("dir");
    let (_, few) = pretrained(dir.path());
    let err = |f: FineTune| -> String {
        NdarrayTrainer
            .fit_mlp(&few, None, &config(1, Some(f)), &mut Silent)
            .expect_err("refused")
            .to_string()
    };
    let e = err(FineTune::from_path(dir.path()).freeze(["layers.2"]));
    assert!(e.contains("layers.2") && e.contains("no such layer"), "{e}");
    let missing = dir.path().join("nope");
    let e = err(FineTune::from_path(&missing));
    assert!(e.contains("nope"), "{e}");
    let e = err(FineTune::from_path(dir.path()).copy_layers(3));
    assert!(e.contains("3 layers asked for"), "{e}");
    // Another input width: nothing to copy.
    let mut c = config(1, None);
    c.hidden = vec![32];
    let other = tempfile::tempdir().expect("dir");
    fit(&few, &c).save(other.path()).expect("save");
    let e = err(FineTune::from_path(other.path()));
    assert!(e.contains("nothing to copy"), "{e}");
    let e = err(FineTune::default().layer_lr(vec![f32::NAN]));
    assert!(e.contains("multiplier"), "{e}");
    // Not a model's weights.
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"not safetensors").expect("write");
    let e = err(FineTune::from_path(&junk));
    assert!(e.contains("junk.safetensors"), "{e}");
}
