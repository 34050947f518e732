//! Endpoints: a bundle served through a runtime passes the conformance kit; the kit catches a
//! broken endpoint; warm-up, unknown platforms and misbehaving models are typed errors.

use std::path::Path;
use std::sync::Arc;

use aistd_deploy::endpoint::{BoxFuture, block_on};
use aistd_deploy::{
    Bundle, BundleEndpoint, DataType, Endpoint, Error, InferRequest, InferResponse, Manifest,
    ModelMetadata, Predictor, Runtimes, Tensor, TensorData, TensorSpec, Verify,
};

/// `y = scale·x + 1` per element and `argmax` per row; `break_batches` returns a wrong shape
/// for batches larger than one.
#[derive(Debug)]
struct Affine {
    scale: f32,
    break_batches: bool,
}

impl Predictor for Affine {
    fn predict(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, String> {
        let x = inputs[0].as_fp32().ok_or("x is not FP32")?;
        let rows = inputs[0].shape[0];
        let cols = inputs[0].shape[1];
        let y: Vec<f32> = x.iter().map(|v| self.scale * v + 1.0).collect();
        let argmax: Vec<i64> = x
            .chunks(cols)
            .map(|r| {
                r.iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map_or(0, |(i, _)| i as i64)
            })
            .collect();
        let y_rows = if self.break_batches && rows > 1 {
            rows - 1
        } else {
            rows
        };
        Ok(vec![
            Tensor::new("argmax", &[rows], TensorData::Int64(argmax)).map_err(|e| e.to_string())?,
            Tensor {
                name: "y".into(),
                shape: vec![y_rows, cols],
                data: TensorData::Fp32(y),
            },
        ])
    }
}

fn bundle(root: &Path, platform: &str) -> Bundle {
    let src = root.join("src");
    std::fs::create_dir_all(&src).expect("dir");
    std::fs::write(src.join("scale.txt"), b"2").expect("write");
    let m = Manifest::new("affine", "1", platform)
        .expect("manifest")
        .with_input(TensorSpec::new("x", DataType::Fp32, &[-1, 3]).expect("spec"))
        .with_output(TensorSpec::new("y", DataType::Fp32, &[-1, 3]).expect("spec"))
        .with_output(TensorSpec::new("argmax", DataType::Int64, &[-1]).expect("spec"));
    Bundle::create(&root.join("bundle"), m, &src).expect("create")
}

fn runtimes(break_batches: bool) -> Runtimes {
    let mut r = Runtimes::new();
    r.register("affine", move |b: &Bundle| {
        let text =
            std::fs::read_to_string(b.file("scale.txt")?).map_err(|e| Error::InvalidInput {
                what: "scale.txt".into(),
                reason: e.to_string(),
            })?;
        let scale: f32 = text.trim().parse().map_err(|_| Error::InvalidInput {
            what: "scale.txt".into(),
            reason: "not a number".into(),
        })?;
        Ok(Arc::new(Affine {
            scale,
            break_batches,
        }) as Arc<dyn Predictor>)
    });
    r
}

fn sample() -> InferRequest {
    InferRequest::new().with_input(
        Tensor::fp32("x", &[2, 3], vec![1.0, 5.0, 2.0, -1.0, -3.0, -2.0]).expect("tensor"),
    )
}

#[test]
fn a_bundle_served_through_a_runtime_passes_the_conformance_kit() {
    let tmp = tempfile::tempdir().expect("tmp");
    let b = bundle(tmp.path(), "affine");
    let ep = runtimes(false).load(&b).expect("load");
    assert!(ep.ready());
    assert_eq!(ep.manifest_sha256(), b.manifest_sha256());
    aistd_deploy::conformance::run_endpoint(&ep, &sample());

    let r = block_on(ep.infer(sample())).expect("infer");
    assert_eq!(r.model_version.as_deref(), Some("1"));
    assert_eq!(
        r.output("y").expect("y").data,
        TensorData::Fp32(vec![3.0, 11.0, 5.0, -1.0, -5.0, -3.0])
    );
    assert_eq!(
        r.output("argmax").expect("argmax").data,
        TensorData::Int64(vec![1, 0])
    );
    // As a trait object, too.
    let dynamic: Arc<dyn Endpoint> = Arc::new(ep);
    assert_eq!(dynamic.metadata().platform, "affine");
}

#[test]
fn load_failures_are_typed() {
    let tmp = tempfile::tempdir().expect("tmp");
    let b = bundle(tmp.path(), "onnx");
    match runtimes(false).load(&b) {
        Err(Error::UnknownPlatform { platform, known }) => {
            assert_eq!(platform, "onnx");
            assert_eq!(known, "affine");
        }
        other => panic!("expected UnknownPlatform, got {other:?}"),
    }
    // A model whose warm-up fails is never ready.
    #[derive(Debug)]
    struct Broken;
    impl Predictor for Broken {
        fn predict(&self, _: &[Tensor]) -> Result<Vec<Tensor>, String> {
            Err("weights are corrupt".into())
        }
    }
    let b = Bundle::open(&tmp.path().join("bundle"), &Verify::intact()).expect("open");
    match BundleEndpoint::new(&b, Arc::new(Broken)) {
        Err(Error::Runtime { model, reason }) => {
            assert_eq!(model, "affine");
            assert!(reason.contains("warm-up") && reason.contains("weights are corrupt"));
        }
        other => panic!("expected a warm-up failure, got {other:?}"),
    }
}

#[test]
fn outputs_that_break_the_signature_are_runtime_errors() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ep = runtimes(true)
        .load(&bundle(tmp.path(), "affine"))
        .expect("warm-up uses one row, which works");
    match block_on(ep.infer(sample())) {
        Err(Error::Runtime { reason, .. }) => assert!(reason.contains("tensor y"), "{reason}"),
        other => panic!("expected a runtime error, got {other:?}"),
    }
    let one_row = InferRequest::new()
        .with_input(Tensor::fp32("x", &[1, 3], vec![0.0, 0.0, 1.0]).expect("tensor"));
    block_on(ep.infer(one_row)).expect("one row still works");
}

/// An endpoint that forgets the request id: the kit must catch it.
#[derive(Debug)]
struct Forgetful(BundleEndpoint);

impl Endpoint for Forgetful {
    fn metadata(&self) -> ModelMetadata {
        self.0.metadata()
    }
    fn ready(&self) -> bool {
        self.0.ready()
    }
    fn infer(&self, request: InferRequest) -> BoxFuture<'_, aistd_deploy::Result<InferResponse>> {
        Box::pin(async move {
            let mut r = self.0.infer(request).await?;
            r.id = None;
            Ok(r)
        })
    }
}

#[test]
fn the_conformance_kit_catches_a_broken_endpoint() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ep = Forgetful(
        runtimes(false)
            .load(&bundle(tmp.path(), "affine"))
            .expect("load"),
    );
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        aistd_deploy::conformance::run_endpoint(&ep, &sample())
    }));
    assert!(
        caught.is_err(),
        "a response without the request id must fail the kit"
    );
}

#[test]
fn tensors_check_their_element_count_for_every_datatype() {
    for dt in DataType::ALL {
        let data = TensorData::zeros(dt, 6);
        assert_eq!(data.datatype(), dt);
        assert_eq!(data.len(), 6);
        Tensor::new("t", &[2, 3], data.clone()).expect("2x3 holds 6");
        match Tensor::new("t", &[4, 2], data) {
            Err(Error::InvalidTensor { tensor, reason }) => {
                assert_eq!(tensor, "t");
                assert!(reason.contains("holds 8 elements but 6"), "{reason}");
            }
            other => panic!("{dt}: expected InvalidTensor, got {other:?}"),
        }
    }
    assert!(Tensor::new("t", &[usize::MAX, 2], TensorData::Bool(vec![])).is_err());
}
