//! Trained models into deployable bundles, and bundles back into served models: the seam
//! between `aistd-training` and `aistd-deploy`.

use std::path::Path;

use std::sync::Arc;

use aistd_deploy::{Bundle, DataType, Manifest, Predictor, Runtimes, Tensor, TensorSpec};
use aistd_training::{MlpModel, Model};

/// The runtime name of `aistd-training` models in a bundle's manifest.
pub const PLATFORM: &str = "aistd-mlp";

/// The manifest of a trained model: platform [`PLATFORM`], one `FP32` input `input` of shape
/// `[-1, features]` and one `FP32` output `output` of shape `[-1, outputs]` (class probabilities
/// or the predicted value), with the feature and output names as JSON arrays in the metadata
/// (`input_names`, `output_names`).
pub fn model_manifest(
    model: &dyn Model,
    name: &str,
    version: &str,
) -> aistd_deploy::Result<Manifest> {
    let sig = model.signature();
    let names = |v: &[String]| serde_json::to_string(v).unwrap_or_default();
    Ok(Manifest::new(name, version, PLATFORM)?
        .with_input(TensorSpec::new(
            "input",
            DataType::Fp32,
            &[-1, sig.inputs.len() as i64],
        )?)
        .with_output(TensorSpec::new(
            "output",
            DataType::Fp32,
            &[-1, sig.outputs.len() as i64],
        )?)
        .with_metadata("input_names", names(&sig.inputs))
        .with_metadata("output_names", names(&sig.outputs)))
}

/// Bundles the model saved in `model_dir` (by [`Model::save`]) as `out`, with
/// [`model_manifest`].
pub fn bundle_model(
    model: &dyn Model,
    model_dir: &Path,
    name: &str,
    version: &str,
    out: &Path,
) -> aistd_deploy::Result<Bundle> {
    Bundle::create(out, model_manifest(model, name, version)?, model_dir)
}

/// A trained model loaded from a bundle, as a [`Predictor`]: input `input` (FP32, rows ×
/// features) to output `output` (FP32, rows × outputs), through [`Model::predict`].
#[derive(Debug)]
pub struct MlpPredictor {
    model: MlpModel,
}

impl MlpPredictor {
    /// Loads the model files of `bundle` (checked against their own manifest too).
    pub fn load(bundle: &Bundle) -> aistd_deploy::Result<Self> {
        let model = MlpModel::load(bundle.dir()).map_err(|e| aistd_deploy::Error::Runtime {
            model: bundle.manifest().name.clone(),
            reason: format!("loading the model files: {e}"),
        })?;
        Ok(MlpPredictor { model })
    }
}

impl Predictor for MlpPredictor {
    fn predict(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, String> {
        let x = &inputs[0];
        let values = x.as_fp32().ok_or("input is not FP32")?;
        let (rows, cols) = (x.shape[0], x.shape[1]);
        let view =
            ndarray::ArrayView2::from_shape((rows, cols), values).map_err(|e| e.to_string())?;
        let y = self.model.predict(view).map_err(|e| e.to_string())?;
        let shape = [y.nrows(), y.ncols()];
        let data: Vec<f32> = y.iter().copied().collect();
        Tensor::fp32("output", &shape, data)
            .map_err(|e| e.to_string())
            .map(|t| vec![t])
    }
}

/// The runtimes the root package knows: `aistd-deploy`'s built-in ones and [`PLATFORM`]
/// (aistd-training models).
pub fn runtimes() -> Runtimes {
    let mut r = Runtimes::builtin();
    register(&mut r);
    r
}

/// Registers the loader of [`PLATFORM`] in `runtimes`.
pub fn register(runtimes: &mut Runtimes) {
    runtimes.register(PLATFORM, |b: &Bundle| {
        Ok(Arc::new(MlpPredictor::load(b)?) as Arc<dyn Predictor>)
    });
}
