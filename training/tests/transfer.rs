//! Fine-tuning on digits: a network pre-trained on the digits 0–4 and fine-tuned on 10% of the
//! 5–9 images beats training from scratch on the same 10%; so it does on two synthetic tasks
//! sharing their features. Weights load from a model directory or a safetensors file, a new head
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

/// Two classification tasks over the same hidden features: x ~ N(0, 1)³², h = relu(W x) with
/// one random W (32 → 16), and 5 classes argmax(A h) for the source, argmax(B h) for the
/// target, A and B random. Returns (source, target).
fn tasks_sharing_features(n_source: usize, n_target: usize, seed: u64) -> (Dataset, Dataset) {
    let mut rng = aistd_training::rng::Rng::new(seed);
    let mut gauss = move || {
        let (u1, u2) = (rng.uniform().max(1e-12), rng.uniform());
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    };
    let (d, h, k) = (32, 16, 5);
    let w = ndarray::Array2::from_shape_simple_fn((d, h), &mut gauss);
    let heads = [
        ndarray::Array2::from_shape_simple_fn((h, k), &mut gauss),
        ndarray::Array2::from_shape_simple_fn((h, k), &mut gauss),
    ];
    let mut make = |n: usize, head: &ndarray::Array2<f32>| {
        let x = ndarray::Array2::from_shape_simple_fn((n, d), &mut gauss);
        let scores = x.dot(&w).mapv(|v| v.max(0.0)).dot(head);
        let labels = scores
            .outer_iter()
            .map(|r| {
                (0..k)
                    .max_by(|a, b| r[*a].total_cmp(&r[*b]))
                    .expect("k > 0") as u32
            })
            .collect();
        let names = (0..k).map(|c| c.to_string()).collect();
        let features = (0..d).map(|j| format!("x{j}")).collect();
        Dataset::new(x, Target::Classes { labels, names }, features).expect("dataset")
    };
    (make(n_source, &heads[0]), make(n_target, &heads[1]))
}

/// Where the tasks share features, the fine-tuned network (pre-trained on 5,000 source
/// examples, a new head) beats training from scratch on 10% of 2,000 target examples, for every
/// one of 3 draws of that 10% (measured: 61.0% from scratch, 65.5% fine-tuned, on average).
#[test]
fn fine_tuning_beats_training_from_scratch_when_the_tasks_share_features() {
    let (source, target) = tasks_sharing_features(5000, 2000, 11);
    let mut c = config(30, None);
    c.optimizer = OptimizerConfig::new(OptimizerKind::adam(), 1e-3);
    let dir = tempfile::tempdir().expect("dir");
    fit(&source, &c).save(dir.path()).expect("save");
    let labels = target.labels().expect("labels");
    let (mut scratch, mut tuned) = (0.0, 0.0);
    for draw in 0..3u64 {
        let mut rows: Vec<usize> = (0..target.len()).collect();
        aistd_training::rng::Rng::new(500 + draw).shuffle(&mut rows);
        let (few, rest) = rows.split_at(target.len() / 10);
        let part = |rows: &[usize]| {
            let Target::Classes { names, .. } = &target.y else {
                panic!("classes")
            };
            Dataset::new(
                target.x.select(ndarray::Axis(0), rows),
                Target::Classes {
                    labels: rows.iter().map(|r| labels[*r]).collect(),
                    names: names.clone(),
                },
                target.features.clone(),
            )
            .expect("part")
        };
        let (few, rest) = (part(few), part(rest));
        let score = |m: MlpModel| {
            let pred = m.predict_labels(rest.x.view()).expect("predict");
            aistd_training::metrics::accuracy(rest.labels().expect("labels"), &pred).expect("acc")
        };
        let mut c = config(30, None);
        c.seed = draw;
        let s = score(fit(&few, &c));
        c.fine_tune = Some(FineTune::from_path(dir.path()).copy_layers(1));
        let t = score(fit(&few, &c));
        eprintln!("draw {draw}: from scratch {s:.4}, fine-tuned {t:.4}");
        assert!(t > s, "draw {draw}: fine-tuned {t} ≤ scratch {s}");
        (scratch, tuned) = (scratch + s / 3.0, tuned + t / 3.0);
    }
    assert!(
        tuned > scratch + 0.02,
        "fine-tuned {tuned} vs scratch {scratch}"
    );
}

/// The original image and its shifts by one pixel down, up, right and left.
const SHIFTS: [(i32, i32); 5] = [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)];

/// #8's check: a network (64 → 128 → 5) pre-trained on every image of the digits 0–4 (901, with
/// their one-pixel shifts), fine-tuned with a new head on 10% of the 5–9 images (90) and tested on
/// the other 806, against the same network trained from scratch on the same 90: same recipe on
/// both sides (the 90 images with their shifts, Adam 0.006, 30 epochs, batches of 32, the draw's
/// seed), 20 draws of the 10%. Measured: 95.69% from scratch, 96.32% fine-tuned, fine-tuning winning
/// 17 draws; from scratch without the shifts 95.53%. Without shifted pre-training the features of
/// 0–4 do not help (README).
#[test]
fn pre_training_on_digits_0_to_4_beats_training_from_scratch_on_10_percent_of_5_to_9() {
    let all = data::digits().expect("digits");
    let (source, target) = (
        subset(&all, &[0, 1, 2, 3, 4], 1),
        subset(&all, &[5, 6, 7, 8, 9], 1),
    );
    let recipe = |lr: f32, seed: u64, fine_tune: Option<FineTune>| {
        let mut c = config(30, fine_tune);
        c.hidden = vec![128];
        c.optimizer = OptimizerConfig::new(OptimizerKind::adam(), lr);
        c.seed = seed;
        c
    };
    let dir = tempfile::tempdir().expect("dir");
    let shifted = |d: &Dataset| d.shifted_images(8, 8, &SHIFTS, 0.0).expect("shifts");
    fit(&shifted(&source), &recipe(1e-3, 1, None))
        .save(dir.path())
        .expect("save");
    let draws = 20u64;
    let (mut scratch, mut plain, mut tuned, mut wins) = (0.0, 0.0, 0.0, 0);
    for draw in 0..draws {
        let mut rows: Vec<usize> = (0..target.len()).collect();
        aistd_training::rng::Rng::new(1000 + draw).shuffle(&mut rows);
        let (few, rest) = rows.split_at((target.len() as f64 * 0.1).round() as usize);
        let (few, rest) = (target.subset(few), target.subset(rest));
        let score = |m: MlpModel| {
            let pred = m.predict_labels(rest.x.view()).expect("predict");
            aistd_training::metrics::accuracy(rest.labels().expect("labels"), &pred).expect("acc")
        };
        let s = score(fit(&shifted(&few), &recipe(0.006, draw, None)));
        let p = score(fit(&few, &recipe(0.006, draw, None)));
        let new_head = FineTune::from_path(dir.path()).copy_layers(1);
        let t = score(fit(&shifted(&few), &recipe(0.006, draw, Some(new_head))));
        eprintln!("draw {draw}: from scratch {s:.4} (no shifts {p:.4}), fine-tuned {t:.4}");
        wins += usize::from(t > s);
        scratch += s / draws as f64;
        plain += p / draws as f64;
        tuned += t / draws as f64;
    }
    eprintln!(
        "from scratch {scratch:.4} (no shifts {plain:.4}), fine-tuned {tuned:.4}, {wins} wins"
    );
    assert!(
        tuned > scratch + 0.0025 && tuned > plain + 0.0025,
        "fine-tuned {tuned} vs from scratch {scratch} (no shifts {plain})"
    );
    assert!(wins >= 13, "fine-tuning won {wins} of {draws} draws");
}
