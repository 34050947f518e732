//! A trained model bundled, signed and verified through the root package's glue.

use aistd::bundling::{PLATFORM, bundle_model};
use aistd::deploy::{Bundle, DataType, SigningKey, Verify};
use aistd::training::{Model, NdarrayTrainer, Silent, TrainConfig, data};

#[test]
fn a_trained_model_bundles_with_its_signature_and_files() {
    let tmp = tempfile::tempdir().expect("tmp");
    let parts = data::breast_cancer()
        .expect("data")
        .split(&[0.8, 0.2], 3)
        .expect("split");
    let mut config = TrainConfig::default();
    config.epochs = 3;
    let (model, _) = NdarrayTrainer
        .fit_mlp(&parts[0], None, &config, &mut Silent)
        .expect("fit");
    let model_dir = tmp.path().join("model");
    model.save(&model_dir).expect("save");
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
