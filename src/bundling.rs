//! Trained models into deployable bundles, and bundles back into served models: the seam
//! between `aistd-training` and `aistd-deploy`.

use std::path::Path;

use std::sync::Arc;

use aistd_deploy::{
    Bundle, DataType, Manifest, Predictor, Runtimes, Tensor, TensorData, TensorSpec,
};
use aistd_training::preprocess::TargetPlan;
use aistd_training::{MlpModel, Model, SavedMlp};
use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray};
use arrow_schema::{DataType as ArrowType, Field, Schema};

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

/// The manifest of a model trained from Arrow data that takes raw columns, as the training
/// data had them, and applies its own fitted preprocessing: one input per column (`FP64 [-1]`
/// for a numeric column, NaN for missing; `BYTES [-1]` for a string column, the empty string
/// for missing), the output
/// `output` as in [`model_manifest`] and, for a classifier, `label` (`BYTES [-1]`: the class
/// name with the highest probability). Metadata `inputs` is `columns`.
pub fn columns_manifest(
    model: &MlpModel,
    name: &str,
    version: &str,
) -> aistd_deploy::Result<Manifest> {
    let p = model.preprocessor().ok_or_else(|| {
        invalid(
            format!("model {name}"),
            "was not trained from Arrow data: it has no preprocessing to take raw columns",
        )
    })?;
    let base = model_manifest(model, name, version)?;
    let mut m = Manifest::new(name, version, PLATFORM)?.with_metadata("inputs", "columns");
    m.metadata.extend(base.metadata);
    for c in &p.columns {
        let datatype = if c.takes_numbers() {
            DataType::Fp64
        } else {
            DataType::Bytes
        };
        m = m.with_input(TensorSpec::new(c.name(), datatype, &[-1])?);
    }
    m = m.with_output(base.outputs[0].clone());
    if matches!(p.target_plan, TargetPlan::Classes { .. }) {
        m = m.with_output(TensorSpec::new("label", DataType::Bytes, &[-1])?);
    }
    Ok(m)
}

/// A request for a [`columns_manifest`] bundle from the columns of `batch` (by name; numeric
/// columns cast to FP64 with nulls as NaN, the others to text with nulls as empty strings).
pub fn columns_request(
    manifest: &Manifest,
    batch: &RecordBatch,
) -> aistd_deploy::Result<aistd_deploy::InferRequest> {
    let rows = batch.num_rows();
    let mut request = aistd_deploy::InferRequest::new();
    for spec in &manifest.inputs {
        let what = || format!("column {}", spec.name);
        let col = batch
            .column_by_name(&spec.name)
            .ok_or_else(|| invalid(what(), "is not in the batch"))?;
        let cast =
            |to: &ArrowType| arrow_cast::cast(col, to).map_err(|e| invalid(what(), e.to_string()));
        let data = match spec.datatype {
            DataType::Fp64 => {
                let c = cast(&ArrowType::Float64)?;
                let c = c
                    .as_any()
                    .downcast_ref::<Float64Array>()
                    .ok_or_else(|| invalid(what(), "not numeric"))?;
                TensorData::Fp64(c.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
            }
            DataType::Bytes => {
                let c = cast(&ArrowType::Utf8)?;
                let c = c
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .ok_or_else(|| invalid(what(), "not text"))?;
                TensorData::Bytes(
                    c.iter()
                        .map(|v| v.unwrap_or("").as_bytes().to_vec())
                        .collect(),
                )
            }
            other => {
                return Err(invalid(
                    what(),
                    format!("the manifest takes it as {other}, not a column"),
                ));
            }
        };
        request = request.with_input(Tensor::new(&spec.name, &[rows], data)?);
    }
    Ok(request)
}

fn invalid(what: impl Into<String>, reason: impl Into<String>) -> aistd_deploy::Error {
    aistd_deploy::Error::InvalidInput {
        what: what.into(),
        reason: reason.into(),
    }
}

/// Bundles the model saved in `model_dir` with [`columns_manifest`].
pub fn bundle_columns_model(
    model: &MlpModel,
    model_dir: &Path,
    name: &str,
    version: &str,
    out: &Path,
) -> aistd_deploy::Result<Bundle> {
    Bundle::create(out, columns_manifest(model, name, version)?, model_dir)
}

/// The input columns (name, whether numeric) and the class names, of a model served on raw
/// columns.
type ColumnsMode = (Vec<(String, bool)>, Option<Vec<String>>);

/// A trained model loaded from a bundle, as a [`Predictor`]: input `input` (FP32, rows ×
/// features) to output `output` (FP32, rows × outputs), through [`Model::predict`]; or, for a
/// bundle made by [`columns_manifest`], raw columns through the model's preprocessing to
/// `output` and `label`. The model files may be f32 or int8 (`aistd compress --quantize int8`):
/// an int8 model is served on its integer path.
#[derive(Debug)]
pub struct MlpPredictor {
    model: SavedMlp,
    /// Columns mode: the input columns and whether each is numeric; the class names.
    columns: Option<ColumnsMode>,
}

impl MlpPredictor {
    /// Loads the model files of `bundle` (checked against their own manifest too).
    pub fn load(bundle: &Bundle) -> aistd_deploy::Result<Self> {
        let m = bundle.manifest();
        let model = SavedMlp::load(bundle.dir()).map_err(|e| aistd_deploy::Error::Runtime {
            model: m.name.clone(),
            reason: format!("loading the model files: {e}"),
        })?;
        if m.metadata.get("inputs").map(String::as_str) != Some("columns") {
            return Ok(MlpPredictor {
                model,
                columns: None,
            });
        }
        // The manifest must be the one the model's preprocessing gives.
        let want = columns_manifest(model.float(), &m.name, &m.version)?;
        if want.inputs != m.inputs || want.outputs != m.outputs {
            return Err(invalid(
                format!("bundle {}:{}", m.name, m.version),
                "its tensors are not the columns and outputs of the model's preprocessing",
            ));
        }
        let p = model
            .float()
            .preprocessor()
            .ok_or_else(|| invalid(format!("model {}", m.name), "has no preprocessing"))?;
        let cols = want
            .inputs
            .iter()
            .map(|s| (s.name.clone(), s.datatype == DataType::Fp64))
            .collect();
        let classes = match &p.target_plan {
            TargetPlan::Classes { names } => Some(names.clone()),
            _ => None,
        };
        Ok(MlpPredictor {
            model,
            columns: Some((cols, classes)),
        })
    }

    /// Raw columns (in manifest order) as an Arrow batch.
    fn batch(cols: &[(String, bool)], inputs: &[Tensor]) -> Result<RecordBatch, String> {
        let mut fields = Vec::with_capacity(cols.len());
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(cols.len());
        for ((name, numeric), t) in cols.iter().zip(inputs) {
            if *numeric {
                let v = match &t.data {
                    TensorData::Fp64(v) => v,
                    _ => return Err(format!("input {name} is not FP64")),
                };
                fields.push(Field::new(name, ArrowType::Float64, true));
                arrays.push(Arc::new(Float64Array::from_iter(
                    v.iter().map(|x| (!x.is_nan()).then_some(*x)),
                )));
            } else {
                let v = match &t.data {
                    TensorData::Bytes(v) => v,
                    _ => return Err(format!("input {name} is not BYTES")),
                };
                let strings = v
                    .iter()
                    .enumerate()
                    .map(|(i, b)| {
                        std::str::from_utf8(b)
                            .map(|s| (!s.is_empty()).then_some(s))
                            .map_err(|_| format!("input {name}, row {i}: not UTF-8 text"))
                    })
                    .collect::<Result<Vec<Option<&str>>, String>>()?;
                fields.push(Field::new(name, ArrowType::Utf8, true));
                arrays.push(Arc::new(StringArray::from(strings)));
            }
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(|e| e.to_string())
    }
}

impl Predictor for MlpPredictor {
    fn predict(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, String> {
        let y = match &self.columns {
            None => {
                let x = &inputs[0];
                let values = x.as_fp32().ok_or("input is not FP32")?;
                let (rows, cols) = (x.shape[0], x.shape[1]);
                let view = ndarray::ArrayView2::from_shape((rows, cols), values)
                    .map_err(|e| e.to_string())?;
                self.model.predict(view).map_err(|e| e.to_string())?
            }
            Some((cols, _)) => {
                let rows = inputs.first().map_or(0, |t| t.shape[0]);
                if let Some(t) = inputs.iter().find(|t| t.shape[0] != rows) {
                    return Err(format!(
                        "input {} has {} rows, input {} has {rows}",
                        t.name, t.shape[0], inputs[0].name
                    ));
                }
                let batch = Self::batch(cols, inputs)?;
                self.model
                    .predict_batches(&[batch])
                    .map_err(|e| e.to_string())?
            }
        };
        let shape = [y.nrows(), y.ncols()];
        let mut out = vec![
            Tensor::fp32("output", &shape, y.iter().copied().collect())
                .map_err(|e| e.to_string())?,
        ];
        if let Some((_, Some(classes))) = &self.columns {
            let labels = y
                .outer_iter()
                .map(|r| {
                    let best = if r.len() == 1 {
                        usize::from(r[0] >= 0.5)
                    } else {
                        r.iter()
                            .enumerate()
                            .max_by(|a, b| a.1.total_cmp(b.1))
                            .map_or(0, |(i, _)| i)
                    };
                    classes
                        .get(best)
                        .map(|c| c.as_bytes().to_vec())
                        .ok_or_else(|| format!("class {best} has no name"))
                })
                .collect::<Result<Vec<_>, String>>()?;
            out.push(
                Tensor::new("label", &[y.nrows()], TensorData::Bytes(labels))
                    .map_err(|e| e.to_string())?,
            );
        }
        Ok(out)
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
