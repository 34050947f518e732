//! The `onnx` runtime against onnxruntime: two scikit-learn models converted by skl2onnx (a
//! logistic regression through ONNX-ML's LinearClassifier and an MLP through standard operators),
//! with onnxruntime's outputs on 20 digits rows recorded beside them
//! (`scripts/peers/make_onnx_fixtures.py` wrote `tests/data/`). Served through a bundle, the
//! endpoint passes the conformance kit; bad manifests, files and requests are typed errors.

use std::path::{Path, PathBuf};

use aistd_deploy::endpoint::block_on;
use aistd_deploy::onnx::{MODEL_FILE_KEY, ONNX, OnnxModel, signature};
use aistd_deploy::{
    Bundle, DataType, Endpoint, Error, InferRequest, Manifest, Runtimes, Tensor, TensorSpec,
};

fn data(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(file)
}

struct Expected {
    rows: Vec<Vec<f32>>,
    labels: Vec<i64>,
    probabilities: Vec<Vec<f32>>,
    sklearn_labels: Vec<i64>,
}

fn expected(model: &str) -> Expected {
    let text = std::fs::read_to_string(data("onnx_expected.json")).expect("expected outputs");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    let rows: Vec<Vec<f32>> = serde_json::from_value(v["inputs"].clone()).expect("inputs");
    let m = &v["models"][model];
    Expected {
        rows,
        labels: serde_json::from_value(m["outputs"]["label"].clone()).expect("labels"),
        probabilities: serde_json::from_value(m["outputs"]["probabilities"].clone())
            .expect("probabilities"),
        sklearn_labels: serde_json::from_value(m["sklearn_labels"].clone()).expect("sklearn"),
    }
}

fn rows_tensor(rows: &[Vec<f32>]) -> Tensor {
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    Tensor::fp32("X", &[rows.len(), 64], flat).expect("tensor")
}

fn assert_matches_onnxruntime(outputs: &[Tensor], e: &Expected, model: &str) {
    let label = outputs.iter().find(|t| t.name == "label").expect("label");
    let probs = outputs
        .iter()
        .find(|t| t.name == "probabilities")
        .expect("probabilities");
    assert_eq!(label.shape, vec![e.rows.len()]);
    assert_eq!(probs.shape, vec![e.rows.len(), 10]);
    let got_labels = label.as_int64().expect("INT64 labels");
    assert_eq!(got_labels, e.labels.as_slice(), "{model}: labels");
    assert_eq!(got_labels, e.sklearn_labels.as_slice(), "{model}: sklearn");
    let got = probs.as_fp32().expect("FP32 probabilities");
    for (r, want) in e.probabilities.iter().enumerate() {
        for (c, w) in want.iter().enumerate() {
            let g = got[r * 10 + c];
            assert!(
                (g - w).abs() <= 1e-5,
                "{model}: row {r} class {c}: {g} against onnxruntime's {w}"
            );
        }
    }
}

#[test]
fn both_models_match_onnxruntime() {
    for name in ["digits_logreg", "digits_mlp"] {
        let model = OnnxModel::load(&data(&format!("{name}.onnx"))).expect("load");
        assert_eq!(
            model.inputs(),
            &[TensorSpec::new("X", DataType::Fp32, &[-1, 64]).expect("spec")]
        );
        assert_eq!(
            model.outputs(),
            &[
                TensorSpec::new("label", DataType::Int64, &[-1]).expect("spec"),
                TensorSpec::new("probabilities", DataType::Fp32, &[-1, 10]).expect("spec"),
            ]
        );
        let e = expected(name);
        let x = rows_tensor(&e.rows);
        let out = model.run(&[&x]).expect("run");
        assert_matches_onnxruntime(&out, &e, name);
        // One row at a time gives the same answers as the batch.
        for (r, row) in e.rows.iter().enumerate().take(3) {
            let one = model
                .run(&[&rows_tensor(std::slice::from_ref(row))])
                .expect("run");
            assert_eq!(one[0].as_int64().expect("labels"), &e.labels[r..=r]);
        }
    }
}

fn onnx_bundle(root: &Path, model: &str) -> Bundle {
    let src = root.join("src");
    std::fs::create_dir_all(&src).expect("dir");
    std::fs::copy(data(&format!("{model}.onnx")), src.join("model.onnx")).expect("copy");
    let (inputs, outputs) = signature(&src.join("model.onnx")).expect("signature");
    let mut m = Manifest::new("digits", "1", ONNX).expect("manifest");
    m.inputs = inputs;
    m.outputs = outputs;
    Bundle::create(&root.join("bundle"), m, &src).expect("bundle")
}

#[test]
fn a_bundled_model_is_served_and_passes_the_conformance_kit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = onnx_bundle(dir.path(), "digits_mlp");
    let runtimes = Runtimes::builtin();
    assert!(runtimes.platforms().contains(&ONNX.to_string()));
    let endpoint = runtimes.load(&bundle).expect("load");
    assert!(endpoint.ready());
    let e = expected("digits_mlp");
    let request = InferRequest::new().with_input(rows_tensor(&e.rows));
    let response = block_on(endpoint.infer(request.clone())).expect("infer");
    assert_matches_onnxruntime(&response.outputs, &e, "digits_mlp (served)");
    aistd_deploy::conformance::run_endpoint(&endpoint, &request);
    // A request of the wrong width is refused before the model, naming the tensor.
    let bad =
        InferRequest::new().with_input(Tensor::fp32("X", &[1, 63], vec![0.0; 63]).expect("tensor"));
    match block_on(endpoint.infer(bad)) {
        Err(Error::InvalidTensor { tensor, .. }) => assert_eq!(tensor, "X"),
        other => panic!("expected InvalidTensor, got {other:?}"),
    }
}

fn bundle_with(root: &Path, files: &[(&str, &[u8])], m: Manifest) -> Bundle {
    let src = root.join("src");
    std::fs::create_dir_all(&src).expect("dir");
    for (name, bytes) in files {
        std::fs::write(src.join(name), bytes).expect("write");
    }
    Bundle::create(&root.join("bundle"), m, &src).expect("bundle")
}

fn load_error(bundle: &Bundle) -> String {
    match Runtimes::builtin().load(bundle) {
        Ok(_) => panic!("loaded a bad bundle"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn manifests_that_do_not_fit_the_model_are_refused_naming_the_tensor() {
    let model = std::fs::read(data("digits_logreg.onnx")).expect("model");
    let spec = |n: &str, d: DataType, s: &[i64]| TensorSpec::new(n, d, s).expect("spec");
    let base = || Manifest::new("digits", "1", ONNX).expect("manifest");
    let cases: Vec<(Manifest, &str)> = vec![
        (
            base()
                .with_input(spec("X", DataType::Fp64, &[-1, 64]))
                .with_output(spec("label", DataType::Int64, &[-1])),
            "input X as FP64",
        ),
        (
            base()
                .with_input(spec("X", DataType::Fp32, &[-1, 32]))
                .with_output(spec("label", DataType::Int64, &[-1])),
            "input X as FP32 [-1, 32]",
        ),
        (
            base()
                .with_input(spec("features", DataType::Fp32, &[-1, 64]))
                .with_output(spec("label", DataType::Int64, &[-1])),
            "the model's input X is not in the manifest",
        ),
        (
            base()
                .with_input(spec("X", DataType::Fp32, &[-1, 64]))
                .with_output(spec("score", DataType::Fp32, &[-1])),
            "output score is not an output of the model",
        ),
    ];
    for (i, (m, want)) in cases.into_iter().enumerate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = bundle_with(dir.path(), &[("model.onnx", &model)], m);
        let err = load_error(&b);
        assert!(err.contains(want), "case {i}: {err}");
    }
}

#[test]
fn bad_model_files_are_typed_errors() {
    let model = std::fs::read(data("digits_logreg.onnx")).expect("model");
    let m = || {
        Manifest::new("digits", "1", ONNX)
            .expect("manifest")
            .with_input(TensorSpec::new("X", DataType::Fp32, &[-1, 64]).expect("spec"))
            .with_output(TensorSpec::new("label", DataType::Int64, &[-1]).expect("spec"))
    };
    // Truncated: the file is named.
    let dir = tempfile::tempdir().expect("tempdir");
    let b = bundle_with(
        dir.path(),
        &[("model.onnx", &model[..model.len() / 2])],
        m(),
    );
    let err = load_error(&b);
    assert!(err.contains("model.onnx"), "{err}");
    // No model file; two model files without a name; a named file that is not there.
    let dir = tempfile::tempdir().expect("tempdir");
    let b = bundle_with(dir.path(), &[("README", b"none")], m());
    assert!(load_error(&b).contains("holds no .onnx file"));
    let dir = tempfile::tempdir().expect("tempdir");
    let b = bundle_with(dir.path(), &[("a.onnx", &model), ("b.onnx", &model)], m());
    let err = load_error(&b);
    assert!(
        err.contains("a.onnx, b.onnx") && err.contains(MODEL_FILE_KEY),
        "{err}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let b = bundle_with(
        dir.path(),
        &[("a.onnx", &model), ("b.onnx", &model)],
        m().with_metadata(MODEL_FILE_KEY, "b.onnx"),
    );
    Runtimes::builtin()
        .load(&b)
        .expect("the named file is loaded");
    let dir = tempfile::tempdir().expect("tempdir");
    let b = bundle_with(
        dir.path(),
        &[("a.onnx", &model)],
        m().with_metadata(MODEL_FILE_KEY, "c.onnx"),
    );
    assert!(load_error(&b).contains("c.onnx, which is not a file of the bundle"));
    // Not a model at all.
    assert!(matches!(
        OnnxModel::from_bytes(b"not protobuf at all", "junk.onnx"),
        Err(Error::Malformed { file, .. }) if file == "junk.onnx"
    ));
}
