//! A trained model bundled, signed and verified through the root package's glue.

use aistd::bundling::{PLATFORM, bundle_model};
use aistd::deploy::{Bundle, DataType, SigningKey, Verify};
use aistd::training::{MlpModel, Model, NdarrayTrainer, Silent, TrainConfig, data};

/// An MLP trained for 3 epochs on 80% of breast_cancer, saved in `root/model`; the splits.
fn trained(root: &std::path::Path) -> (MlpModel, std::path::PathBuf, Vec<data::Dataset>) {
    let parts = data::breast_cancer()
        .expect("data")
        .split(&[0.8, 0.2], 3)
        .expect("split");
    let mut config = TrainConfig::default();
    config.epochs = 3;
    let (model, _) = NdarrayTrainer
        .fit_mlp(&parts[0], None, &config, &mut Silent)
        .expect("fit");
    let model_dir = root.join("model");
    model.save(&model_dir).expect("save");
    (model, model_dir, parts)
}

#[test]
fn a_trained_model_bundles_with_its_signature_and_files() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (model, model_dir, _) = trained(tmp.path());
    let mut b = bundle_model(
        &model,
        &model_dir,
        "cancer",
        "1",
        &tmp.path().join("bundle"),
    )
    .expect("bundle");
    let key = SigningKey::from_seed(&[3; 32]);
    b.sign(&key).expect("sign");
    let opened = Bundle::open(b.dir(), &Verify::signed_by([key.public_hex()])).expect("open");
    let m = opened.manifest();
    assert_eq!(m.platform, PLATFORM);
    assert_eq!(m.inputs[0].datatype, DataType::Fp32);
    assert_eq!(m.inputs[0].shape, vec![-1, 30]);
    assert_eq!(
        m.outputs[0].shape,
        vec![-1, model.signature().outputs.len() as i64]
    );
    let names: Vec<String> = serde_json::from_str(&m.metadata["input_names"]).expect("names");
    assert_eq!(names, model.signature().inputs);
    // Every file the model wrote is in the bundle, byte for byte.
    for entry in std::fs::read_dir(&model_dir).expect("ls") {
        let name = entry
            .expect("entry")
            .file_name()
            .into_string()
            .expect("utf-8");
        assert_eq!(
            std::fs::read(opened.file(&name).expect("listed")).expect("read"),
            std::fs::read(model_dir.join(&name)).expect("read"),
            "{name}"
        );
    }
}

#[test]
fn a_bundled_model_is_served_with_the_models_own_predictions() {
    use aistd::deploy::endpoint::block_on;
    use aistd::deploy::{Endpoint, InferRequest, Tensor};

    let tmp = tempfile::tempdir().expect("tmp");
    let (model, model_dir, parts) = trained(tmp.path());
    let b = bundle_model(
        &model,
        &model_dir,
        "cancer",
        "1",
        &tmp.path().join("bundle"),
    )
    .expect("bundle");
    let ep = aistd::bundling::runtimes().load(&b).expect("load");
    assert!(ep.ready());

    let x = parts[1]
        .x
        .slice_axis(ndarray::Axis(0), ndarray::Slice::from(0..17))
        .to_owned();
    let sample = InferRequest::new()
        .with_input(Tensor::fp32("input", &[17, 30], x.iter().copied().collect()).expect("tensor"));
    aistd_deploy::conformance::run_endpoint(&ep, &sample);
    let served = block_on(ep.infer(sample)).expect("infer");
    let want = model.predict(x.view()).expect("predict");
    let out = served.output("output").expect("output");
    assert_eq!(out.shape, [17, want.ncols()]);
    assert_eq!(
        out.as_fp32().expect("fp32"),
        want.iter().copied().collect::<Vec<_>>().as_slice(),
        "the endpoint answers exactly what the model predicts"
    );
}
