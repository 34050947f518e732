//! The ndarray backend: conformance, candle's test vector, digits, data parallelism, early
//! stopping, divergence, model files.

use aistd_training::data::{self, Dataset, Target};
use aistd_training::nn::{Activation, Architecture, Loss, Mlp, Reduction, Targets};
use aistd_training::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use aistd_training::{
    Error, MlpModel, Model, NdarrayTrainer, Silent, TrainConfig, conformance, metrics,
};
use ndarray::{Array2, array};

#[test]
fn the_conformance_kit_passes() {
    let dir = tempfile::tempdir().expect("dir");
    conformance::run_all(&NdarrayTrainer, dir.path());
}

/// candle-nn/tests/optim.rs `sgd_linear_regression`: y = 3x₁ + x₂ − 2 on four points, SGD at
/// 0.004, 1000 steps of summed squared error from zero weights.
#[test]
fn candles_sgd_linear_regression_vector() {
    let xs = array![[2f32, 1.], [7., 4.], [-4., 12.], [5., 8.]];
    let ys = xs.map_axis(ndarray::Axis(1), |r| 3.0 * r[0] + r[1] - 2.0);
    let ys = ys.insert_axis(ndarray::Axis(1));
    let arch = Architecture::new(2, vec![], 1, Activation::Relu);
    let mut net = Mlp::from_parameters(arch, vec![0.0; 3]).expect("net");
    let mut opt = Optimizer::new(OptimizerConfig::new(OptimizerKind::Sgd, 0.004), 3).expect("sgd");
    for _ in 0..1000 {
        let out = net.forward(xs.view()).expect("forward");
        let (_, d) = Loss::Mse
            .evaluate(out.view(), Targets::Values(ys.view()), Reduction::Sum)
            .expect("loss");
        let (_, trace) = net.forward_train(xs.view(), 0.0, &mut []).expect("forward");
        let mut grads = vec![0.0; 3];
        net.backward(&trace, d, &mut grads);
        opt.step(net.parameters_mut(), &mut grads, 0.004);
    }
    let p = net.parameters();
    for (got, want) in p.iter().zip([2.9983196f32, 0.99790204, -1.9796902]) {
        assert!((got - want).abs() < 1e-5, "{p:?}");
    }
}

fn digits_split() -> Vec<Dataset> {
    data::digits()
        .expect("digits")
        .split(&[0.75, 0.25], 42)
        .expect("split")
}

fn labels(d: &Dataset) -> Vec<u32> {
    d.labels().expect("classes").to_vec()
}

#[test]
fn an_mlp_reaches_97_percent_on_digits() {
    let parts = digits_split();
    let mut c = TrainConfig::default();
    c.hidden = vec![128];
    c.epochs = 40;
    c.batch_size = 64;
    let (model, history) = NdarrayTrainer
        .fit_mlp(&parts[0], None, &c, &mut Silent)
        .expect("fit");
    let pred = model.predict_labels(parts[1].x.view()).expect("predict");
    let acc = metrics::accuracy(&labels(&parts[1]), &pred).expect("accuracy");
    eprintln!(
        "digits test accuracy {acc:.4} after {} epochs",
        history.epochs.len()
    );
    assert!(acc >= 0.97, "test accuracy {acc}");
    // Softmax regression (no hidden layer) is a weaker but sound baseline.
    c.hidden = vec![];
    let (lin, _) = NdarrayTrainer
        .fit_mlp(&parts[0], None, &c, &mut Silent)
        .expect("fit");
    let acc = metrics::accuracy(
        &labels(&parts[1]),
        &lin.predict_labels(parts[1].x.view()).expect("p"),
    )
    .expect("accuracy");
    assert!(acc >= 0.93, "softmax regression {acc}");
}

#[test]
fn data_parallel_training_matches_single_threaded() {
    let parts = digits_split();
    // Each thread owns a range of parameters for the reduction and the update: 2 and 3 threads
    // cut the 2,410 parameters differently. Adam updates range by range; clipping and L1 need
    // the whole gradient and take the other path.
    let mut configs = Vec::new();
    let mut c = TrainConfig::default();
    c.hidden = vec![32];
    c.epochs = 3;
    c.dropout = 0.2;
    configs.push(c.clone());
    // Batches of 300, cut into shards of 300, 150 and 100 rows.
    let mut big = c.clone();
    big.batch_size = 300;
    configs.push(big);
    c.optimizer = OptimizerConfig::new(OptimizerKind::Sgd, 0.05);
    c.optimizer.clip_norm = Some(0.5);
    c.optimizer.l1 = 1e-4;
    configs.push(c);
    for c in configs {
        let run = |threads: usize| {
            let mut c = c.clone();
            c.threads = threads;
            NdarrayTrainer
                .fit_mlp(&parts[0], None, &c, &mut Silent)
                .expect("fit")
                .0
        };
        let one = run(1);
        for threads in [2, 3] {
            let many = run(threads);
            let (a, b) = (one.network().parameters(), many.network().parameters());
            assert_eq!(a.len(), b.len());
            let worst = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max);
            assert!(
                worst < 1e-4,
                "{threads} threads, {:?}: largest parameter difference {worst}",
                c.optimizer
            );
        }
    }
}

#[test]
fn early_stopping_keeps_the_best_weights() {
    let parts = data::breast_cancer()
        .expect("data")
        .split(&[0.6, 0.2, 0.2], 5)
        .expect("split");
    let mut c = TrainConfig::default();
    c.hidden = vec![256, 256];
    c.epochs = 200;
    c.optimizer.lr = 0.01;
    c.early_stopping = Some(3);
    let (model, h) = NdarrayTrainer
        .fit_mlp(&parts[0], Some(&parts[1]), &c, &mut Silent)
        .expect("fit");
    assert!(
        h.stopped_early,
        "an over-sized network overfits: {} epochs",
        h.epochs.len()
    );
    let best = h
        .epochs
        .iter()
        .map(|e| e.valid_loss.expect("valid"))
        .fold(f64::INFINITY, f64::min);
    assert_eq!(h.epochs[h.best_epoch - 1].valid_loss, Some(best));
    assert_eq!(h.epochs.len(), h.best_epoch + 3);
    // The model has the best epoch's weights: its validation loss is the best one.
    let p = model.predict(parts[1].x.view()).expect("predict");
    let ll = metrics::log_loss(
        &labels(&parts[1]),
        &p.outer_iter().map(|r| r.to_vec()).collect::<Vec<_>>(),
    )
    .expect("log loss");
    assert!((ll - best).abs() < 1e-4, "{ll} vs {best}");
}

#[test]
fn regression_divergence_and_bad_input() {
    // y = 2a − b + 1 + small noise: R² > 0.99.
    let mut rng = aistd_training::rng::Rng::new(3);
    let x = Array2::from_shape_fn((300, 2), |_| (rng.uniform() * 4.0 - 2.0) as f32);
    let y: Vec<f32> = x
        .outer_iter()
        .map(|r| 2.0 * r[0] - r[1] + 1.0 + (rng.uniform() as f32 - 0.5) * 0.05)
        .collect();
    let d = Dataset::new(x, Target::Values(y.clone()), vec!["a".into(), "b".into()]).expect("d");
    let mut c = TrainConfig::default();
    c.hidden = vec![16];
    c.epochs = 60;
    c.optimizer.lr = 0.01;
    let (m, _) = NdarrayTrainer
        .fit_mlp(&d, None, &c, &mut Silent)
        .expect("fit");
    let pred = m.predict(d.x.view()).expect("predict");
    let r2 = metrics::r2(&y, &pred.column(0).to_vec()).expect("r2");
    assert!(r2 > 0.99, "R² {r2}");
    // A learning rate far too large: a typed error naming epoch and step.
    c.optimizer = OptimizerConfig::new(OptimizerKind::Sgd, 1e6);
    match NdarrayTrainer.fit_mlp(&d, None, &c, &mut Silent) {
        Err(Error::Diverged { epoch, .. }) => assert_eq!(epoch, 1),
        other => panic!("expected divergence, got {other:?}"),
    }
    // Bad input: the wrong width, a NaN or an infinity (named with its row and feature; the
    // int8 path refuses them too).
    assert!(m.predict(Array2::zeros((1, 3)).view()).is_err());
    let mut nan = d.x.slice(ndarray::s![..4, ..]).to_owned();
    nan[[2, 1]] = f32::NAN;
    let e = m.predict(nan.view()).expect_err("NaN");
    assert!(e.to_string().contains("is NaN in row 2"), "{e}");
    nan[[2, 1]] = f32::INFINITY;
    let q = aistd_training::quantize::QuantizedMlp::quantize(&m, d.x.view(), true).expect("q");
    let e = q.predict(nan.view()).expect_err("inf");
    assert!(e.to_string().contains("is inf in row 2"), "{e}");
    let one = Dataset::new(
        Array2::zeros((3, 1)),
        Target::Classes {
            labels: vec![0, 0, 0],
            names: vec!["x".into(), "y".into()],
        },
        vec!["f".into()],
    )
    .expect("d");
    let e = NdarrayTrainer
        .fit_mlp(&one, None, &TrainConfig::default(), &mut Silent)
        .expect_err("one class");
    assert!(e.to_string().contains("single class"), "{e}");
    let mut bad = TrainConfig::default();
    bad.batch_size = 0;
    assert!(NdarrayTrainer.fit_mlp(&d, None, &bad, &mut Silent).is_err());
}

#[test]
fn model_files_detect_corruption() {
    let d = conformance::separable(9);
    let dir = tempfile::tempdir().expect("dir");
    let (m, _) = NdarrayTrainer
        .fit_mlp(&d, None, &TrainConfig::default(), &mut Silent)
        .expect("fit");
    m.save(dir.path()).expect("save");
    assert_eq!(MlpModel::load(dir.path()).expect("load"), m);
    let w = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&w).expect("read");
    std::fs::write(&w, &bytes[..bytes.len() - 10]).expect("truncate");
    let e = MlpModel::load(dir.path()).expect_err("truncated");
    assert!(e.to_string().contains("SHA-256"), "{e}");
    std::fs::write(dir.path().join("manifest.json"), "{}").expect("write");
    assert!(MlpModel::load(dir.path()).is_err());
    // A valid manifest with one value changed (a standardization statistic) is detected.
    m.save(dir.path()).expect("save");
    let mpath = dir.path().join("manifest.json");
    let text = std::fs::read_to_string(&mpath).expect("manifest");
    let mut v: serde_json::Value = serde_json::from_str(&text).expect("json");
    let mean = v["standardizer"]["mean"][0].as_f64().expect("mean");
    v["standardizer"]["mean"][0] = (mean + 0.5).into();
    std::fs::write(&mpath, serde_json::to_string_pretty(&v).expect("json")).expect("write");
    let e = MlpModel::load(dir.path()).expect_err("edited");
    assert!(e.to_string().contains("the manifest is corrupt"), "{e}");
    // Reformatting alone (no value changed) still loads.
    let mut v: serde_json::Value = serde_json::from_str(&text).expect("json");
    v["standardizer"]["mean"][0] = mean.into();
    std::fs::write(&mpath, serde_json::to_string(&v).expect("json")).expect("write");
    assert_eq!(MlpModel::load(dir.path()).expect("load"), m);
}

#[test]
fn the_manifest_records_the_config_metrics_and_data_fingerprint() {
    let d = conformance::separable(9);
    let mut c = TrainConfig::default();
    c.epochs = 7;
    c.seed = 4;
    let (mut m, history) = NdarrayTrainer
        .fit_mlp(&d, None, &c, &mut Silent)
        .expect("fit");
    m.add_metrics([("test_accuracy".to_string(), 0.875)])
        .expect("add");
    assert!(m.add_metrics([("bad".to_string(), f64::NAN)]).is_err());
    let dir = tempfile::tempdir().expect("dir");
    m.save(dir.path()).expect("save");
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("manifest.json")).expect("manifest"),
    )
    .expect("json");
    let t = &manifest["training"];
    assert_eq!(
        (t["config"]["epochs"].as_u64(), t["config"]["seed"].as_u64()),
        (Some(7), Some(4))
    );
    assert_eq!(t["rows"].as_u64(), Some(d.len() as u64));
    assert_eq!(t["dataset_sha256"].as_str(), Some(d.fingerprint().as_str()));
    let last = history.epochs.last().expect("epochs");
    assert_eq!(t["metrics"]["train_loss"].as_f64(), Some(last.train_loss));
    assert_eq!(t["metrics"]["epochs_run"].as_f64(), Some(7.0));
    assert_eq!(t["metrics"]["test_accuracy"].as_f64(), Some(0.875));
    let loaded = MlpModel::load(dir.path()).expect("load");
    assert_eq!(loaded.training(), m.training());
    assert_eq!(
        loaded.training().expect("record").config,
        c,
        "the config round-trips"
    );
}

#[test]
fn resuming_from_a_checkpoint_is_bit_for_bit() {
    let parts = data::breast_cancer()
        .expect("data")
        .split(&[0.7, 0.3], 11)
        .expect("split");
    let dir = tempfile::tempdir().expect("dir");
    let mut c = TrainConfig::default();
    c.hidden = vec![16];
    c.epochs = 6;
    c.dropout = 0.1;
    c.optimizer = OptimizerConfig::new(OptimizerKind::adamw(), 0.01);
    let (whole, wh) = NdarrayTrainer
        .fit_mlp(&parts[0], Some(&parts[1]), &c, &mut Silent)
        .expect("fit");
    // Interrupted after 3 epochs, then resumed to 6.
    c.checkpoint = Some(dir.path().to_path_buf());
    c.epochs = 3;
    NdarrayTrainer
        .fit_mlp(&parts[0], Some(&parts[1]), &c, &mut Silent)
        .expect("first half");
    c.epochs = 6;
    c.resume = true;
    let (resumed, rh) = NdarrayTrainer
        .fit_mlp(&parts[0], Some(&parts[1]), &c, &mut Silent)
        .expect("resume");
    assert_eq!(whole.network().parameters(), resumed.network().parameters());
    assert_eq!(
        wh.epochs.iter().map(|e| e.train_loss).collect::<Vec<_>>(),
        rh.epochs.iter().map(|e| e.train_loss).collect::<Vec<_>>()
    );
    // A torn checkpoint is detected, not trained from.
    let t = dir.path().join("checkpoint.safetensors");
    let mut bytes = std::fs::read(&t).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xFF;
    std::fs::write(&t, bytes).expect("write");
    let e = NdarrayTrainer
        .fit_mlp(&parts[0], Some(&parts[1]), &c, &mut Silent)
        .expect_err("torn");
    assert!(e.to_string().contains("SHA-256"), "{e}");
}

#[test]
fn divergence_leaves_the_last_good_checkpoint() {
    let d = conformance::separable(5);
    let dir = tempfile::tempdir().expect("dir");
    let mut c = TrainConfig::default();
    c.epochs = 2;
    c.checkpoint = Some(dir.path().to_path_buf());
    NdarrayTrainer
        .fit_mlp(&d, None, &c, &mut Silent)
        .expect("fit");
    let good = std::fs::read(dir.path().join("checkpoint.safetensors")).expect("read");
    // Resumed with a learning rate that blows up: a typed error, and the checkpoint of the last
    // completed epoch is still there, intact.
    c.epochs = 4;
    c.resume = true;
    c.optimizer = OptimizerConfig::new(OptimizerKind::Sgd, 1e30);
    match NdarrayTrainer.fit_mlp(&d, None, &c, &mut Silent) {
        Err(Error::Diverged { epoch, .. }) => assert_eq!(epoch, 3),
        other => panic!("expected divergence, got {other:?}"),
    }
    assert_eq!(
        std::fs::read(dir.path().join("checkpoint.safetensors")).expect("read"),
        good
    );
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("checkpoint.json")).expect("state"),
    )
    .expect("json");
    assert_eq!(state["epochs_done"], 2);
}

#[test]
fn training_logs_hold_steps_epochs_and_curves() {
    let d = conformance::separable(6);
    let parts = d.split(&[0.8, 0.2], 1).expect("split");
    let dir = tempfile::tempdir().expect("dir");
    let mut log = aistd_training::tensorboard::TrainingLog::create(dir.path()).expect("log");
    let mut c = TrainConfig::default();
    c.epochs = 3;
    c.batch_size = 40;
    NdarrayTrainer
        .fit_mlp(&parts[0], Some(&parts[1]), &c, &mut log)
        .expect("fit");
    log.finish().expect("finish");
    let lines = std::fs::read_to_string(dir.path().join("metrics.jsonl")).expect("jsonl");
    assert_eq!(lines.lines().count(), 3);
    // Every step as a JSON line: 3 epochs of ⌈rows / 40⌉ batches, global steps 1, 2, ….
    let steps: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("steps.jsonl"))
        .expect("steps.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(steps.len(), 3 * parts[0].len().div_ceil(40));
    for (k, s) in steps.iter().enumerate() {
        assert_eq!(s["step"], k + 1);
        assert!(s["loss"].as_f64().expect("loss").is_finite() && s["lr"].as_f64().is_some());
    }
    assert_eq!(steps.last().expect("steps")["epoch"], 3);
    let steps = std::fs::read_dir(dir.path().join("steps"))
        .expect("steps")
        .count();
    assert_eq!(steps, 1, "one event file of per-step losses");
    let svg = std::fs::read_to_string(dir.path().join("curves.svg")).expect("svg");
    assert_eq!(svg.matches("<polyline").count(), 3, "{svg}");
}

/// Layers wide enough for the BLAS path (every side above ndarray's cut-off of 7): the forward
/// pass equals plain loops, and gradients equal finite differences. Run with and without the
/// `blas` feature by `scripts/test.sh`.
#[test]
fn wide_layers_match_plain_loops_and_finite_differences() {
    let arch = Architecture::new(16, vec![24, 12], 10, Activation::Tanh);
    let net = Mlp::new(arch.clone(), 3).expect("net");
    let mut rng = aistd_training::rng::Rng::new(8);
    let x = Array2::from_shape_fn((20, 16), |_| rng.uniform() as f32 * 2.0 - 1.0);
    // Plain loops over the flat layout: per layer, weights (in × out) row-major, then bias.
    let p = net.parameters();
    let mut a: Vec<Vec<f32>> = x.outer_iter().map(|r| r.to_vec()).collect();
    let mut off = 0;
    let layers = arch.layers();
    for (l, (i, o)) in layers.iter().enumerate() {
        a = a
            .iter()
            .map(|row| {
                (0..*o)
                    .map(|j| {
                        let z = (0..*i).map(|k| row[k] * p[off + k * o + j]).sum::<f32>()
                            + p[off + i * o + j];
                        if l + 1 < layers.len() { z.tanh() } else { z }
                    })
                    .collect()
            })
            .collect();
        off += i * o + o;
    }
    let out = net.forward(x.view()).expect("forward");
    for (r, row) in a.iter().enumerate() {
        for (j, v) in row.iter().enumerate() {
            assert!((out[[r, j]] - v).abs() < 1e-5, "row {r}, output {j}");
        }
    }
    // Gradients against central differences on a sample of parameters (in f64 of f32 losses).
    let labels: Vec<u32> = (0..20).map(|i| i % 10).collect();
    let loss_of = |net: &Mlp| {
        let o = net.forward(x.view()).expect("forward");
        f64::from(
            Loss::CrossEntropy
                .evaluate(o.view(), Targets::Classes(&labels), Reduction::Sum)
                .expect("loss")
                .0,
        )
    };
    let (o, trace) = net.forward_train(x.view(), 0.0, &mut []).expect("forward");
    let (_, d) = Loss::CrossEntropy
        .evaluate(o.view(), Targets::Classes(&labels), Reduction::Sum)
        .expect("loss");
    let mut grads = vec![0.0; p.len()];
    net.backward(&trace, d, &mut grads);
    for idx in (0..p.len()).step_by(37) {
        let h = 1e-2f32;
        let mut plus = net.clone();
        plus.parameters_mut()[idx] += h;
        let mut minus = net.clone();
        minus.parameters_mut()[idx] -= h;
        let numeric = (loss_of(&plus) - loss_of(&minus)) / (2.0 * f64::from(h));
        let g = f64::from(grads[idx]);
        assert!(
            (numeric - g).abs() <= 2e-2 * (1.0 + g.abs()),
            "parameter {idx}: backprop {g}, finite difference {numeric}"
        );
    }
}
