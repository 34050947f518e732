//! Trained models into deployable bundles: the seam between `aistd-training` and `aistd-deploy`.

use std::path::Path;

use aistd_deploy::{Bundle, DataType, Manifest, TensorSpec};
use aistd_training::Model;

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
