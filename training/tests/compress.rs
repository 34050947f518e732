//! Pruning the digits MLP: 90% of its weights removed and the rest fine-tuned loses at most
//! half an accuracy point (Han et al. 2015's claim, at this scale); pruned layers are stored
//! sparsely and load back to the same predictions.

mod common;

use aistd_training::compress::{
    Mask, PruneConfig, fine_tune_pruned, magnitude_mask, prune_iteratively, weight_sparsity,
};
use aistd_training::data::Dataset;
use aistd_training::{MlpModel, Model, NdarrayTrainer, Silent, metrics};

use common::mlp128 as config;

fn accuracy(m: &MlpModel, d: &Dataset) -> f64 {
    let pred = m.predict_labels(d.x.view()).expect("predict");
    metrics::accuracy(d.labels().expect("labels"), &pred).expect("accuracy")
}

#[test]
fn ninety_percent_sparsity_with_fine_tuning_keeps_digits_accuracy() {
    let (train, test) = common::digits_unit();
    let (dense, _) = NdarrayTrainer
        .fit_mlp(&train, None, &config(40), &mut Silent)
        .expect("dense");
    let base = accuracy(&dense, &test);
    let (oneshot, _) = dense.pruned(&PruneConfig::global(0.9)).expect("prune");
    let no_tune = accuracy(&oneshot, &test);
    // Per layer, as Han et al.; three stages of 20 epochs of Adam at 3e-3.
    let mut tune = config(20);
    tune.optimizer.lr = 3e-3;
    let (tuned, mask, stages) = prune_iteratively(
        &dense,
        &train,
        None,
        &PruneConfig::per_layer(0.9),
        3,
        &tune,
        &mut Silent,
    )
    .expect("iterative");
    let pruned_acc = accuracy(&tuned, &test);
    let sparsity = weight_sparsity(tuned.network());
    eprintln!(
        "digits MLP 64-128-10: dense {base:.4}; 90% pruned at once, no fine-tuning {no_tune:.4}; 3 prune → fine-tune stages {pruned_acc:.4} at sparsity {sparsity:.3} ({stages:?})"
    );
    assert!((sparsity - 0.9).abs() < 0.005, "{sparsity}");
    assert!(pruned_acc >= base - 0.005, "{pruned_acc} vs {base}");
    let cut = mask.keep().iter().filter(|k| !**k).count();
    assert!(
        cut as f64 > 0.85 * tuned.network().parameters().len() as f64,
        "{cut}"
    );
    // Stored sparsely: smaller, and the same predictions after loading.
    let (d_dir, s_dir) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    dense.save(d_dir.path()).expect("save");
    tuned.save(s_dir.path()).expect("save");
    let size = |d: &std::path::Path| {
        std::fs::metadata(d.join("model.safetensors"))
            .expect("file")
            .len()
    };
    let (dense_bytes, sparse_bytes) = (size(d_dir.path()), size(s_dir.path()));
    eprintln!("model.safetensors: dense {dense_bytes} bytes, 90% pruned {sparse_bytes} bytes");
    assert!(
        sparse_bytes * 4 < dense_bytes,
        "{sparse_bytes} vs {dense_bytes}"
    );
    let loaded = MlpModel::load(s_dir.path()).expect("load");
    assert_eq!(loaded.network().parameters(), tuned.network().parameters());
    assert_eq!(
        loaded.predict(test.x.view()).expect("predict"),
        tuned.predict(test.x.view()).expect("predict")
    );
}

#[test]
fn pruned_weights_stay_zero_through_fine_tuning_and_bad_settings_are_named() {
    let (train, _) = common::digits_unit();
    let (dense, _) = NdarrayTrainer
        .fit_mlp(&train, None, &config(3), &mut Silent)
        .expect("dense");
    for p in [
        PruneConfig::global(0.5),
        PruneConfig::per_layer(0.5),
        PruneConfig::neurons(0.5),
    ] {
        let mask = magnitude_mask(dense.network(), &p, None).expect("mask");
        let (tuned, _) =
            fine_tune_pruned(&dense, &mask, &train, None, &config(2), &mut Silent).expect("tune");
        for (v, k) in tuned.network().parameters().iter().zip(mask.keep()) {
            assert!(*k || *v == 0.0, "{p:?}: a pruned weight moved");
        }
        assert_ne!(tuned.network().parameters(), dense.network().parameters());
    }
    for bad in [1.0f32, -0.5] {
        let e = dense.pruned(&PruneConfig::global(bad)).expect_err("ratio");
        assert!(
            e.to_string().contains("pruning") && e.to_string().contains("[0, 1)"),
            "{e}"
        );
    }
    let other = Mask::dense(
        &aistd_training::nn::Mlp::new(
            aistd_training::nn::Architecture::new(
                3,
                vec![2],
                2,
                aistd_training::nn::Activation::Relu,
            ),
            0,
        )
        .expect("net"),
    );
    let e = fine_tune_pruned(&dense, &other, &train, None, &config(1), &mut Silent)
        .expect_err("mask shape");
    assert!(e.to_string().contains("another architecture"), "{e}");
    let e = prune_iteratively(
        &dense,
        &train,
        None,
        &PruneConfig::global(0.5),
        0,
        &config(1),
        &mut Silent,
    )
    .expect_err("stages");
    assert!(e.to_string().contains("stage"), "{e}");
}
