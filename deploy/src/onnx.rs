//! The `onnx` runtime (feature `onnx`): standard ONNX models run by tract, a pure-Rust inference
//! engine — the `ai.onnx` operators tract implements and, of `ai.onnx.ml`, `LinearClassifier`,
//! `LinearRegressor`, `Normalizer`, `TreeEnsembleClassifier`, `CategoryMapper` and
//! `ArrayFeatureExtractor` (what skl2onnx emits for linear models, trees and MLPs with
//! `zipmap` off).
//!
//! A bundle of platform [`ONNX`] holds one `.onnx` file (or names it in its manifest's metadata
//! under [`MODEL_FILE_KEY`]); the manifest's tensors must be the model's, by name, datatype and
//! compatible shape. [`signature`] reads a model's tensors, so a manifest can be written from
//! the file itself (`aistd bundle create --platform onnx` does when given no `--input`).
//!
//! Sequences and maps (skl2onnx's `ZipMap`) and BF16 tensors are not supported: convert with
//! `zipmap` off.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use tract_onnx::prelude::{
    DatumType, Framework, InferenceModelExt, IntoTValue, TValue, TVec, TypedModel,
    TypedRunnableModel,
};
use tract_onnx::tract_core::ndarray::{ArrayD, IxDyn};
use tract_onnx::tract_hir::infer::Factoid;

use crate::bundle::{Bundle, Manifest};
use crate::infer::{Tensor, TensorData, names};
use crate::runtime::Predictor;
use crate::tensor::{DataType, TensorSpec};
use crate::{Error, Result};

/// The platform name of [`OnnxPredictor`].
pub const ONNX: &str = "onnx";

/// The manifest metadata key naming the bundle's model file, when it holds more than one
/// `.onnx` file.
pub const MODEL_FILE_KEY: &str = "onnx.model";

/// An ONNX model, optimised and ready to run from many threads at once.
#[derive(Clone)]
pub struct OnnxModel {
    plan: Arc<TypedRunnableModel>,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
}

impl fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnnxModel")
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .finish_non_exhaustive()
    }
}

fn malformed(file: &str, e: impl fmt::Display) -> Error {
    Error::Malformed {
        file: file.to_string(),
        reason: format!("not a model this runtime can run: {e:#}"),
    }
}

impl OnnxModel {
    /// Reads and optimises the model in `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(&bytes, &path.display().to_string())
    }

    /// Reads and optimises a serialised model; `what` names it in errors.
    pub fn from_bytes(bytes: &[u8], what: &str) -> Result<Self> {
        let mut model = tract_onnx::onnx()
            .model_for_read(&mut &bytes[..])
            .map_err(|e| malformed(what, e))?;
        // Dimensions the file leaves unnamed become symbols (the first of each input shared,
        // as a batch), so the model optimises for any size there.
        let n_inputs = model.input_outlets().map_err(|e| malformed(what, e))?.len();
        for i in 0..n_inputs {
            let mut fact = model.input_fact(i).map_err(|e| malformed(what, e))?.clone();
            let Some(rank) = fact.shape.rank().concretize() else {
                continue;
            };
            for d in 0..usize::try_from(rank).unwrap_or(0) {
                if fact.shape.dim(d).and_then(|f| f.concretize()).is_none() {
                    let name = if d == 0 {
                        "N".to_string()
                    } else {
                        format!("in{i}_dim{d}")
                    };
                    fact.shape.set_dim(d, model.sym(&name).into());
                }
            }
            model
                .set_input_fact(i, fact)
                .map_err(|e| malformed(what, e))?;
        }
        // Names and order before optimisation, which may relabel outlets.
        let input_names: Vec<String> = model
            .input_outlets()
            .map_err(|e| malformed(what, e))?
            .iter()
            .map(|o| model.node(o.node).name.clone())
            .collect();
        let output_names: Vec<String> = model
            .output_outlets()
            .map_err(|e| malformed(what, e))?
            .iter()
            .map(|o| {
                model
                    .outlet_label(*o)
                    .map(str::to_string)
                    .unwrap_or_else(|| model.node(o.node).name.clone())
            })
            .collect();
        let typed = model.into_optimized().map_err(|e| malformed(what, e))?;
        let inputs = specs(&typed, &input_names, true, what)?;
        let outputs = specs(&typed, &output_names, false, what)?;
        let plan =
            tract_onnx::tract_core::plan::SimplePlan::new(typed).map_err(|e| malformed(what, e))?;
        Ok(OnnxModel {
            plan,
            inputs,
            outputs,
        })
    }

    /// The model's inputs, in its order; `-1` for a dimension it leaves open.
    pub fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    /// The model's outputs, in its order.
    pub fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    /// Runs the model on inputs in its order; outputs in its order, named.
    pub fn run(&self, inputs: &[&Tensor]) -> std::result::Result<Vec<Tensor>, String> {
        if inputs.len() != self.inputs.len() {
            return Err(format!(
                "{} inputs given, the model takes {}",
                inputs.len(),
                self.inputs.len()
            ));
        }
        let values: TVec<TValue> = inputs
            .iter()
            .map(|t| to_tract(t).map(IntoTValue::into_tvalue))
            .collect::<std::result::Result<_, _>>()?;
        let produced = self.plan.run(values).map_err(|e| format!("{e:#}"))?;
        produced
            .iter()
            .zip(&self.outputs)
            .map(|(v, spec)| from_tract(&spec.name, v))
            .collect()
    }
}

/// The inputs and outputs of the ONNX model in `path`, as a manifest declares them.
pub fn signature(path: &Path) -> Result<(Vec<TensorSpec>, Vec<TensorSpec>)> {
    let m = OnnxModel::load(path)?;
    Ok((m.inputs, m.outputs))
}

fn specs(
    model: &TypedModel,
    names: &[String],
    inputs: bool,
    what: &str,
) -> Result<Vec<TensorSpec>> {
    let outlets = if inputs {
        model.input_outlets()
    } else {
        model.output_outlets()
    }
    .map_err(|e| malformed(what, e))?;
    outlets
        .iter()
        .zip(names)
        .map(|(o, name)| {
            let fact = model.outlet_fact(*o).map_err(|e| malformed(what, e))?;
            let datatype = datatype(fact.datum_type).ok_or_else(|| {
                malformed(
                    what,
                    format!(
                        "tensor {name} has element type {:?}, which has no KServe v2 datatype here",
                        fact.datum_type
                    ),
                )
            })?;
            let shape: Vec<i64> = fact
                .shape
                .iter()
                .map(|d| d.to_i64().unwrap_or(-1))
                .collect();
            TensorSpec::new(name.clone(), datatype, &shape)
        })
        .collect()
}

fn datatype(dt: DatumType) -> Option<DataType> {
    Some(match dt {
        DatumType::Bool => DataType::Bool,
        DatumType::U8 => DataType::Uint8,
        DatumType::U16 => DataType::Uint16,
        DatumType::U32 => DataType::Uint32,
        DatumType::U64 => DataType::Uint64,
        DatumType::I8 => DataType::Int8,
        DatumType::I16 => DataType::Int16,
        DatumType::I32 => DataType::Int32,
        // Integers tract computes as dimensions (shape arithmetic, class indices).
        DatumType::I64 | DatumType::TDim => DataType::Int64,
        DatumType::F16 => DataType::Fp16,
        DatumType::F32 => DataType::Fp32,
        DatumType::F64 => DataType::Fp64,
        DatumType::String => DataType::Bytes,
        _ => return None,
    })
}

fn array<T>(t: &Tensor, v: Vec<T>) -> std::result::Result<ArrayD<T>, String> {
    ArrayD::from_shape_vec(IxDyn(&t.shape), v).map_err(|e| format!("input {}: {e}", t.name))
}

/// Our tensor as tract's (copying the elements).
fn to_tract(t: &Tensor) -> std::result::Result<tract_onnx::prelude::Tensor, String> {
    use tract_onnx::prelude::f16;
    Ok(match &t.data {
        TensorData::Bool(v) => array(t, v.clone())?.into(),
        TensorData::Uint8(v) => array(t, v.clone())?.into(),
        TensorData::Uint16(v) => array(t, v.clone())?.into(),
        TensorData::Uint32(v) => array(t, v.clone())?.into(),
        TensorData::Uint64(v) => array(t, v.clone())?.into(),
        TensorData::Int8(v) => array(t, v.clone())?.into(),
        TensorData::Int16(v) => array(t, v.clone())?.into(),
        TensorData::Int32(v) => array(t, v.clone())?.into(),
        TensorData::Int64(v) => array(t, v.clone())?.into(),
        TensorData::Fp16(v) => array(t, v.iter().map(|b| f16::from_bits(*b)).collect())?.into(),
        TensorData::Fp32(v) => array(t, v.clone())?.into(),
        TensorData::Fp64(v) => array(t, v.clone())?.into(),
        TensorData::Bytes(v) => array(
            t,
            v.iter()
                .map(|b| {
                    String::from_utf8(b.clone()).map_err(|_| {
                        format!(
                            "input {}: an element is not UTF-8 (ONNX strings are)",
                            t.name
                        )
                    })
                })
                .collect::<std::result::Result<Vec<_>, _>>()?,
        )?
        .into(),
        TensorData::Bf16(_) => {
            return Err(format!(
                "input {}: BF16 is not supported by the onnx runtime",
                t.name
            ));
        }
    })
}

fn elements<T: tract_onnx::prelude::Datum + Clone>(
    name: &str,
    v: &tract_onnx::prelude::Tensor,
) -> std::result::Result<Vec<T>, String> {
    Ok(v.to_plain_array_view::<T>()
        .map_err(|e| format!("output {name}: {e:#}"))?
        .iter()
        .cloned()
        .collect())
}

/// tract's tensor as ours, named `name`.
fn from_tract(name: &str, v: &tract_onnx::prelude::Tensor) -> std::result::Result<Tensor, String> {
    use tract_onnx::prelude::f16;
    let data = match v.datum_type() {
        DatumType::Bool => TensorData::Bool(elements(name, v)?),
        DatumType::U8 => TensorData::Uint8(elements(name, v)?),
        DatumType::U16 => TensorData::Uint16(elements(name, v)?),
        DatumType::U32 => TensorData::Uint32(elements(name, v)?),
        DatumType::U64 => TensorData::Uint64(elements(name, v)?),
        DatumType::I8 => TensorData::Int8(elements(name, v)?),
        DatumType::I16 => TensorData::Int16(elements(name, v)?),
        DatumType::I32 => TensorData::Int32(elements(name, v)?),
        DatumType::I64 => TensorData::Int64(elements(name, v)?),
        DatumType::TDim => TensorData::Int64(
            elements::<tract_onnx::prelude::TDim>(name, v)?
                .iter()
                .map(|d| {
                    d.to_i64()
                        .map_err(|_| format!("output {name}: {d} is not a number"))
                })
                .collect::<std::result::Result<_, _>>()?,
        ),
        DatumType::F16 => TensorData::Fp16(
            elements::<f16>(name, v)?
                .into_iter()
                .map(f16::to_bits)
                .collect(),
        ),
        DatumType::F32 => TensorData::Fp32(elements(name, v)?),
        DatumType::F64 => TensorData::Fp64(elements(name, v)?),
        DatumType::String => TensorData::Bytes(
            elements::<String>(name, v)?
                .into_iter()
                .map(String::into_bytes)
                .collect(),
        ),
        other => return Err(format!("output {name} has element type {other:?}")),
    };
    Tensor::new(name, v.shape(), data).map_err(|e| e.to_string())
}

/// Runs a bundle's ONNX model: the [`ONNX`] platform's predictor.
#[derive(Debug, Clone)]
pub struct OnnxPredictor {
    model: OnnxModel,
    /// For each model input, its position among the manifest's inputs.
    order: Vec<usize>,
}

impl OnnxPredictor {
    /// Loads the bundle's model file and checks the manifest against it: the same inputs and
    /// outputs by name, with the same datatypes and compatible shapes (same rank; a fixed
    /// dimension on both sides equal).
    pub fn load(bundle: &Bundle) -> Result<Self> {
        let m = bundle.manifest();
        let file = model_file(m)?;
        let path = bundle.dir().join(&file);
        let model = OnnxModel::load(&path)?;
        let order = check(m, &model, &file)?;
        Ok(OnnxPredictor { model, order })
    }

    /// The model it runs.
    pub fn model(&self) -> &OnnxModel {
        &self.model
    }
}

impl Predictor for OnnxPredictor {
    fn predict(&self, inputs: &[Tensor]) -> std::result::Result<Vec<Tensor>, String> {
        let ordered: Vec<&Tensor> = self
            .order
            .iter()
            .map(|i| {
                inputs
                    .get(*i)
                    .ok_or_else(|| format!("input {i} of the manifest is missing"))
            })
            .collect::<std::result::Result<_, _>>()?;
        self.model.run(&ordered)
    }
}

/// The bundle file holding the model.
fn model_file(m: &Manifest) -> Result<String> {
    let what = || format!("onnx bundle {} {}", m.name, m.version);
    if let Some(f) = m.metadata.get(MODEL_FILE_KEY) {
        if !m.files.contains_key(f) {
            return Err(Error::invalid(
                what(),
                format!("metadata {MODEL_FILE_KEY} names {f}, which is not a file of the bundle"),
            ));
        }
        return Ok(f.clone());
    }
    let found: Vec<&String> = m.files.keys().filter(|f| f.ends_with(".onnx")).collect();
    match found.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(Error::invalid(what(), "holds no .onnx file")),
        many => Err(Error::invalid(
            what(),
            format!(
                "holds {} .onnx files ({}); name the model in metadata {MODEL_FILE_KEY}",
                many.len(),
                many.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// Checks the manifest's tensors against the model's; for each model input, its position in
/// the manifest.
fn check(m: &Manifest, model: &OnnxModel, file: &str) -> Result<Vec<usize>> {
    let what = || format!("onnx bundle {} {}: {file}", m.name, m.version);
    let compatible = |declared: &TensorSpec, actual: &TensorSpec, kind: &str| -> Result<()> {
        let shapes_fit = declared.shape.len() == actual.shape.len()
            && declared
                .shape
                .iter()
                .zip(&actual.shape)
                .all(|(d, a)| *d == -1 || *a == -1 || d == a);
        if declared.datatype != actual.datatype || !shapes_fit {
            return Err(Error::invalid(
                what(),
                format!(
                    "the manifest declares {kind} {} as {} {:?}, the model has {} {:?}",
                    declared.name, declared.datatype, declared.shape, actual.datatype, actual.shape
                ),
            ));
        }
        Ok(())
    };
    let mut order = Vec::with_capacity(model.inputs.len());
    for actual in &model.inputs {
        let Some(i) = m.inputs.iter().position(|s| s.name == actual.name) else {
            return Err(Error::invalid(
                what(),
                format!(
                    "the model's input {} is not in the manifest (it declares {})",
                    actual.name,
                    names(&m.inputs)
                ),
            ));
        };
        compatible(&m.inputs[i], actual, "input")?;
        order.push(i);
    }
    if let Some(extra) = m
        .inputs
        .iter()
        .find(|s| !model.inputs.iter().any(|a| a.name == s.name))
    {
        return Err(Error::invalid(
            what(),
            format!(
                "the manifest's input {} is not an input of the model (it takes {})",
                extra.name,
                names(&model.inputs)
            ),
        ));
    }
    for declared in &m.outputs {
        let Some(actual) = model.outputs.iter().find(|a| a.name == declared.name) else {
            return Err(Error::invalid(
                what(),
                format!(
                    "the manifest's output {} is not an output of the model (it gives {})",
                    declared.name,
                    names(&model.outputs)
                ),
            ));
        };
        compatible(declared, actual, "output")?;
    }
    Ok(order)
}
