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

/// A table of loans: income (numeric, some missing), region (string), approved (string target,
/// decided by income and region).
fn loans(n: usize, seed: u64) -> arrow_array::RecordBatch {
    use std::sync::Arc;
    let mut state = seed;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let (mut income, mut region, mut approved) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let x = next() * 100.0;
        let r = ["north", "south", "east"][(next() * 3.0) as usize % 3];
        let ok = x + if r == "south" { 25.0 } else { 0.0 } > 55.0;
        income.push((i % 17 != 0).then_some(x));
        region.push(r);
        approved.push(if ok { "yes" } else { "no" });
    }
    arrow_array::RecordBatch::try_from_iter([
        (
            "income",
            Arc::new(arrow_array::Float64Array::from(income)) as arrow_array::ArrayRef,
        ),
        ("region", Arc::new(arrow_array::StringArray::from(region))),
        (
            "approved",
            Arc::new(arrow_array::StringArray::from(approved)),
        ),
    ])
    .expect("batch")
}

/// The `output` tensor of a response, as FP32 values.
fn probabilities(r: &aistd::deploy::InferResponse) -> Vec<f32> {
    r.output("output")
        .expect("output")
        .as_fp32()
        .expect("fp32")
        .to_vec()
}

/// Asserts `served` holds the probabilities `model` predicts on `test`, and returns them.
fn served_as_predicted(
    served: &aistd::deploy::InferResponse,
    model: &MlpModel,
    test: &arrow_array::RecordBatch,
) -> ndarray::Array2<f32> {
    let want = model
        .predict_batches(std::slice::from_ref(test))
        .expect("predict");
    assert_eq!(
        probabilities(served),
        want.iter().copied().collect::<Vec<_>>()
    );
    want
}

/// A model trained (`epochs`, one hidden layer of `hidden`, `seed`) on `train` preprocessed by
/// `opts`, saved and bundled for raw columns under `tmp`; its bundle takes `income` as FP64 and
/// `region` as BYTES. Returns the model, its training set and the bundle.
fn loans_bundle(
    tmp: &std::path::Path,
    train: &arrow_array::RecordBatch,
    opts: &aistd::training::preprocess::PrepOptions,
    (epochs, hidden, seed): (usize, usize, u64),
) -> (MlpModel, data::Dataset, Bundle) {
    let prep = aistd::training::preprocess::Preprocessor::fit(
        std::slice::from_ref(train),
        "approved",
        &[],
        opts,
    )
    .expect("fit");
    let ds = prep.dataset(std::slice::from_ref(train)).expect("dataset");
    let mut config = TrainConfig::default();
    config.epochs = epochs;
    config.hidden = vec![hidden];
    config.seed = seed;
    let (model, _) = NdarrayTrainer
        .fit_mlp(&ds, None, &config, &mut Silent)
        .expect("train");
    let model = model.with_preprocessor(prep).expect("preprocessor");
    let model_dir = tmp.join("model");
    model.save(&model_dir).expect("save");
    let b = aistd::bundling::bundle_columns_model(
        &model,
        &model_dir,
        "loans",
        "1",
        &tmp.join("bundle"),
    )
    .expect("bundle");
    let inputs: Vec<(&str, DataType)> = b
        .manifest()
        .inputs
        .iter()
        .map(|s| (s.name.as_str(), s.datatype))
        .collect();
    assert_eq!(
        inputs,
        [("income", DataType::Fp64), ("region", DataType::Bytes)]
    );
    (model, ds, b)
}

/// Min-max scaled and ordinal columns are served on raw columns too: the same inputs (the ordinal
/// one as text) and the same probabilities as the model on the Arrow batch.
#[test]
fn a_min_max_and_ordinal_model_is_served_on_raw_columns() {
    use aistd::bundling::columns_request;
    use aistd::deploy::Endpoint;
    use aistd::deploy::endpoint::block_on;
    use aistd::training::preprocess::{PrepOptions, Scaling};

    let tmp = tempfile::tempdir().expect("tmp");
    let mut opts = PrepOptions::default();
    opts.scaling = Scaling::MinMax;
    opts.ordinal = vec![(
        "region".into(),
        vec!["east".into(), "north".into(), "south".into()],
    )];
    let (model, _, b) = loans_bundle(tmp.path(), &loans(500, 2), &opts, (5, 8, 0));
    let ep = aistd::bundling::runtimes().load(&b).expect("load");
    let test = loans(40, 5);
    let served =
        block_on(ep.infer(columns_request(b.manifest(), &test).expect("request"))).expect("infer");
    served_as_predicted(&served, &model, &test);
}

#[test]
fn a_model_trained_from_arrow_is_served_on_raw_columns_with_class_names() {
    use aistd::bundling::{bundle_columns_model, columns_manifest, columns_request};
    use aistd::deploy::endpoint::block_on;
    use aistd::deploy::{Endpoint, Error, InferRequest, Tensor, TensorData};
    use aistd::training::preprocess::PrepOptions;

    let tmp = tempfile::tempdir().expect("tmp");
    let (model, ds, b) = loans_bundle(
        tmp.path(),
        &loans(2000, 1),
        &PrepOptions::default(),
        (30, 16, 3),
    );
    let m = b.manifest();
    assert_eq!(m.outputs[1].name, "label");

    let ep = aistd::bundling::runtimes().load(&b).expect("load");
    let test = loans(50, 9);
    let request = columns_request(b.manifest(), &test).expect("request");
    assert!(
        matches!(&request.inputs[0].data, TensorData::Fp64(v) if v[0].is_nan()),
        "a missing income is NaN"
    );
    aistd_deploy::conformance::run_endpoint(&ep, &request);
    let served = block_on(ep.infer(request)).expect("infer");
    // The same probabilities as the model on the Arrow batch, and its class names.
    let want = served_as_predicted(&served, &model, &test);
    let labels = match &served.output("label").expect("label").data {
        TensorData::Bytes(v) => v.clone(),
        other => panic!("label is {other:?}"),
    };
    let truth = test
        .column(2)
        .as_any()
        .downcast_ref::<arrow_array::StringArray>()
        .expect("str");
    let right = (0..50)
        .filter(|i| labels[*i] == truth.value(*i).as_bytes())
        .count();
    assert!(right >= 40, "{right} of 50 labels right");

    // The model quantized to int8 (what `aistd compress --quantize int8` writes) is served on
    // its integer path: the int8 model's own probabilities, not the f32 ones.
    let q = aistd::training::quantize::QuantizedMlp::quantize(&model, ds.x.view(), true)
        .expect("quantize");
    let q_dir = tmp.path().join("int8");
    q.save(&q_dir).expect("save");
    let qb = bundle_columns_model(q.model(), &q_dir, "loans", "2", &tmp.path().join("bundle8"))
        .expect("bundle");
    let qep = aistd::bundling::runtimes().load(&qb).expect("load int8");
    let request = columns_request(qb.manifest(), &test).expect("request");
    let served = block_on(qep.infer(request)).expect("infer");
    let want8 = q
        .predict_batches(std::slice::from_ref(&test))
        .expect("predict");
    assert_ne!(want8, want, "int8 probabilities differ from the f32 ones");
    assert_eq!(
        probabilities(&served),
        want8.iter().copied().collect::<Vec<_>>()
    );

    // A model without preprocessing cannot take raw columns.
    let (plain, _, _) = trained(&tmp.path().join("plain"));
    assert!(matches!(
        columns_manifest(&plain, "x", "1"),
        Err(Error::InvalidInput { .. })
    ));
    // Rows that do not line up are refused, naming the input.
    let uneven = InferRequest::new()
        .with_input(Tensor::new("income", &[2], TensorData::Fp64(vec![1.0, 2.0])).expect("t"))
        .with_input(
            Tensor::new("region", &[1], TensorData::Bytes(vec![b"north".to_vec()])).expect("t"),
        );
    let err = block_on(ep.infer(uneven)).expect_err("uneven rows");
    assert!(err.to_string().contains("region"), "{err}");
}
