//! Post-training int8 quantization with an integer inference path, and quantization-aware
//! fine-tuning.
//!
//! Weights are quantized symmetrically to int8 per output channel (or per tensor):
//! q = round(w / s), s = max|w| / 127. Each layer's input is quantized with a static scale
//! calibrated on sample data (the largest |x| seen there, / 127), as PyTorch's static
//! quantization with a min-max observer does. Inference runs integer dot products (i8 × i8 summed
//! in i32: AVX2's `vpmaddwd` over pairs of inputs where the CPU has it, else 16-bit lanes the
//! compiler vectorizes; both exact, so their results are identical) and rescales each output by
//! s_x · s_w before adding the f32 bias and applying the activation in f32.
//!
//! Quantization-aware fine-tuning ([`qat_fine_tune`]) simulates that inference in training, as
//! PyTorch's eager-mode QAT does: the forward pass runs on fake-quantized (quantized, then
//! dequantized) weights and fake-quantizes every layer's input with its scale, recalibrated on
//! the training rows at the start of each epoch; the backward pass is the straight-through
//! estimator (the gradient passes the rounding unchanged, and stops where an input saturated),
//! and the update goes to the full-precision weights.

use std::path::Path;

use ndarray::{Array2, ArrayView2};

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::int8_kernel;
use crate::nn::{Loss, Mlp};
use crate::trainer::{
    History, MlpModel, Model, NdarrayTrainer, Observer, Signature, Task, TrainConfig, Warm,
    read_f32, read_model_files, saved_format,
};

/// One quantized dense layer.
#[derive(Debug, Clone, PartialEq)]
struct QLayer {
    inputs: usize,
    outputs: usize,
    /// [in][out], row-major, widened to i16 (values in [−127, 127]).
    weights: Vec<i16>,
    /// Per output channel (one value repeated when per tensor).
    weight_scale: Vec<f32>,
    /// The input's scale.
    input_scale: f32,
    bias: Vec<f32>,
    /// `weights` packed in pairs of inputs for the vector kernel (`int8_kernel`).
    packed: Vec<i32>,
    /// Per output: `input_scale` × `weight_scale`.
    out_scale: Vec<f32>,
}

impl QLayer {
    fn new(
        (inputs, outputs): (usize, usize),
        weights: Vec<i16>,
        weight_scale: Vec<f32>,
        input_scale: f32,
        bias: Vec<f32>,
    ) -> Self {
        let packed = int8_kernel::pack_weights(&weights, inputs, outputs);
        let out_scale = weight_scale.iter().map(|s| input_scale * s).collect();
        Self {
            out_scale,
            inputs,
            outputs,
            weights,
            weight_scale,
            input_scale,
            bias,
            packed,
        }
    }
}

/// An MLP with int8 weights and activations.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedMlp {
    layers: Vec<QLayer>,
    model: MlpModel,
    per_channel: bool,
}

fn weight_scales(w: &[f32], inputs: usize, outputs: usize, per_channel: bool) -> Vec<f32> {
    // w is [in, out]: column c is output c.
    let col_max = |c: usize| {
        (0..inputs)
            .map(|r| w[r * outputs + c].abs())
            .fold(0.0f32, f32::max)
    };
    let scale = |m: f32| if m > 0.0 { m / 127.0 } else { 1.0 };
    if per_channel {
        (0..outputs).map(|c| scale(col_max(c))).collect()
    } else {
        let m = (0..outputs).map(col_max).fold(0.0f32, f32::max);
        vec![scale(m); outputs]
    }
}

fn quantize_value(v: f32, s: f32) -> i16 {
    (v / s).round().clamp(-127.0, 127.0) as i16
}

/// Each layer's input scale for `net` on the (standardized) rows `x`: the largest |input| the
/// layer sees there, / 127 (1 if all are 0), from the f32 forward pass; as PyTorch's static
/// quantization with a min-max observer calibrates.
pub(crate) fn input_scales(net: &Mlp, x: ArrayView2<f32>) -> Result<Vec<f32>> {
    let arch = net.architecture();
    let layers = arch.layers();
    let mut a = x.to_owned();
    let mut scales = Vec::with_capacity(layers.len());
    for (l, (i, o)) in layers.iter().copied().enumerate() {
        let max_in = a.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        scales.push(if max_in > 0.0 { max_in / 127.0 } else { 1.0 });
        // The next layer's input: this layer's f32 output.
        if l + 1 < layers.len() {
            let p = &net.parameters()[net.layer_range(l)];
            let (w, b) = (&p[..i * o], &p[i * o..]);
            let wv = ndarray::ArrayView2::from_shape((i, o), w)
                .map_err(|e| Error::invalid("quantization", e.to_string()))?;
            let mut z = a.dot(&wv);
            for mut row in z.outer_iter_mut() {
                for (v, bias) in row.iter_mut().zip(b) {
                    *v = arch.activation.apply(*v + bias);
                }
            }
            a = z;
        }
    }
    Ok(scales)
}

/// `net`'s weights fake-quantized (quantized and dequantized) in place.
pub(crate) fn fake_quantize(net: &mut Mlp, per_channel: bool) {
    for (l, (i, o)) in net.architecture().layers().into_iter().enumerate() {
        let r = net.layer_range(l);
        let p = &mut net.parameters_mut()[r.start..r.start + i * o];
        let s = weight_scales(p, i, o, per_channel);
        for (k, w) in p.iter_mut().enumerate() {
            let sc = s[k % o];
            *w = f32::from(quantize_value(*w, sc)) * sc;
        }
    }
}

impl QuantizedMlp {
    /// Quantizes `model`, calibrating the activation scales on the rows of `calibration`
    /// (features as [`crate::Model::predict`] takes them).
    pub fn quantize(
        model: &MlpModel,
        calibration: ArrayView2<f32>,
        per_channel: bool,
    ) -> Result<Self> {
        if calibration.nrows() == 0 {
            return Err(Error::invalid(
                "quantization",
                "needs calibration data (at least one row) to set the activation scales",
            ));
        }
        let net = model.network();
        let arch = net.architecture();
        if calibration.ncols() != arch.inputs {
            return Err(Error::invalid(
                "quantization",
                format!(
                    "calibration rows have {} features, the model takes {}",
                    calibration.ncols(),
                    arch.inputs
                ),
            ));
        }
        let a = model.standardize(&calibration.to_owned())?;
        let scales = input_scales(net, a.view())?;
        let layers = arch.layers();
        let mut out = Vec::with_capacity(layers.len());
        for (l, (i, o)) in layers.iter().copied().enumerate() {
            let r = net.layer_range(l);
            let p = &net.parameters()[r];
            let (w, b) = (&p[..i * o], &p[i * o..]);
            let input_scale = scales[l];
            let weight_scale = weight_scales(w, i, o, per_channel);
            let weights = w
                .iter()
                .enumerate()
                .map(|(k, v)| quantize_value(*v, weight_scale[k % o]))
                .collect();
            out.push(QLayer::new(
                (i, o),
                weights,
                weight_scale,
                input_scale,
                b.to_vec(),
            ));
        }
        Ok(Self {
            layers: out,
            model: model.clone(),
            per_channel,
        })
    }

    /// Bytes of the quantized parameters: int8 weights, f32 scales and biases.
    pub fn parameter_bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|l| {
                let scales = if self.per_channel { l.outputs } else { 1 };
                l.inputs * l.outputs + 4 * (scales + 1 + l.outputs)
            })
            .sum()
    }

    /// Bytes of the f32 model's parameters.
    pub fn float_bytes(&self) -> usize {
        4 * self.model.network().parameters().len()
    }

    /// The raw outputs (logits) of the integer path.
    pub fn forward(&self, x: ArrayView2<f32>) -> Result<Array2<f32>> {
        self.forward_on(x, true)
    }

    /// [`QuantizedMlp::forward`], on the AVX2 kernel if `vector` and the CPU has it, else on
    /// the portable loop.
    fn forward_on(&self, x: ArrayView2<f32>, vector: bool) -> Result<Array2<f32>> {
        let arch = self.model.network().architecture();
        self.model.check_features(&x)?;
        let rows = x.nrows();
        let mut a = self.model.standardized_rows(x);
        let mut q: Vec<i16> = Vec::new();
        let mut acc: Vec<i32> = Vec::new();
        let last = self.layers.len() - 1;
        let relu = arch.activation == crate::nn::Activation::Relu;
        for (l, layer) in self.layers.iter().enumerate() {
            let (i, o) = (layer.inputs, layer.outputs);
            let inv = 1.0 / layer.input_scale;
            let mut next = vec![0.0f32; rows * o];
            let packed = int8_kernel::Packed {
                inputs: i,
                outputs: o,
                weights: &layer.packed,
                inv_input_scale: inv,
                out_scale: &layer.out_scale,
                bias: &layer.bias,
            };
            let fused_relu = relu && l < last;
            if !(vector && int8_kernel::layer(&a, packed, fused_relu, &mut next)) {
                // The portable path: the same quantization and sums, so the same result.
                for (x, y) in a.chunks_exact(i).zip(next.chunks_exact_mut(o)) {
                    q.clear();
                    q.extend(x.iter().map(|v| int8_kernel::quantize_input(*v, inv)));
                    acc.clear();
                    acc.resize(o, 0);
                    accumulate(&mut acc, &q, &layer.weights);
                    for ((y, v), (s, b)) in y
                        .iter_mut()
                        .zip(&acc)
                        .zip(layer.out_scale.iter().zip(&layer.bias))
                    {
                        let z = *v as f32 * s + b;
                        *y = if fused_relu { z.max(0.0) } else { z };
                    }
                }
            }
            if l < last && !relu {
                next.iter_mut().for_each(|v| *v = arch.activation.apply(*v));
            }
            a = next;
        }
        Array2::from_shape_vec((rows, self.layers[last].outputs), a)
            .map_err(|e| Error::invalid("predict", e.to_string()))
    }

    /// Predictions as [`crate::Model::predict`] gives them (probabilities for classes).
    pub fn predict(&self, x: ArrayView2<f32>) -> Result<Array2<f32>> {
        let out = self.forward(x)?;
        Ok(match (self.model.task(), self.model.loss()) {
            (Task::Classification { .. }, Loss::BinaryCrossEntropy) => {
                let mut p = Array2::zeros((out.nrows(), 2));
                for (i, z) in out.column(0).iter().enumerate() {
                    let s = crate::nn::sigmoid(*z);
                    p[[i, 0]] = 1.0 - s;
                    p[[i, 1]] = s;
                }
                p
            }
            (Task::Classification { .. }, _) => crate::nn::softmax(&out),
            (Task::Regression, _) => out,
        })
    }

    /// Predicted class per row.
    pub fn predict_labels(&self, x: ArrayView2<f32>) -> Result<Vec<u32>> {
        Ok(crate::trainer::argmax_rows(&self.predict(x)?))
    }
}

/// The format name in a quantized model's `manifest.json`.
pub const FORMAT_INT8: &str = "aistd-mlp-int8";

impl QuantizedMlp {
    /// Writes `model.safetensors` (per layer `layers.N.weight` as I8 `[out, in]`, its F32
    /// `weight_scale` `[out]`, `input_scale` `[1]` and `bias` `[out]`) and `manifest.json` (format
    /// `aistd-mlp-int8`, with the preprocessing and the SHA-256 of the weights), atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let f32s = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
        let mut tensors: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
        for (l, q) in self.layers.iter().enumerate() {
            let (i, o) = (q.inputs, q.outputs);
            let w: Vec<u8> = (0..o)
                .flat_map(|c| (0..i).map(move |r| q.weights[r * o + c] as i8 as u8))
                .collect();
            let t = |n: &str| format!("layers.{l}.{n}");
            tensors.push((t("weight"), safetensors::Dtype::I8, vec![o, i], w));
            tensors.push((
                t("weight_scale"),
                safetensors::Dtype::F32,
                vec![o],
                f32s(&q.weight_scale),
            ));
            tensors.push((
                t("input_scale"),
                safetensors::Dtype::F32,
                vec![1],
                f32s(&[q.input_scale]),
            ));
            tensors.push((t("bias"), safetensors::Dtype::F32, vec![o], f32s(&q.bias)));
        }
        tensors.push((
            "quantization.per_channel".into(),
            safetensors::Dtype::U8,
            vec![1],
            vec![u8::from(self.per_channel)],
        ));
        let views = tensors
            .iter()
            .map(|(n, d, s, b)| {
                safetensors::tensor::TensorView::new(*d, s.clone(), b)
                    .map(|v| (n.clone(), v))
                    .map_err(|e| Error::invalid("safetensors", e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        let bytes = safetensors::serialize(views, &None)
            .map_err(|e| Error::invalid("safetensors", e.to_string()))?;
        self.model.write_files(dir, FORMAT_INT8, &bytes)
    }

    /// Reads a model written by [`QuantizedMlp::save`], checking the weights' SHA-256.
    pub fn load(dir: &Path) -> Result<Self> {
        let (m, bytes, wpath) = read_model_files(dir, FORMAT_INT8)?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| Error::io(&wpath, format!("not safetensors: {e}")))?;
        let raw = |name: &str, dtype: safetensors::Dtype, shape: &[usize]| -> Result<Vec<u8>> {
            let t = st
                .tensor(name)
                .map_err(|e| Error::io(&wpath, format!("tensor {name}: {e}")))?;
            if t.dtype() != dtype || t.shape() != shape {
                return Err(Error::io(
                    &wpath,
                    format!(
                        "tensor {name} is {:?} {:?}, expected {dtype:?} {shape:?}",
                        t.dtype(),
                        t.shape()
                    ),
                ));
            }
            Ok(t.data().to_vec())
        };
        let per_channel = raw("quantization.per_channel", safetensors::Dtype::U8, &[1])?[0] != 0;
        let mut layers = Vec::new();
        let mut params = Vec::with_capacity(m.architecture.parameters());
        for (l, (i, o)) in m.architecture.layers().into_iter().enumerate() {
            let t = |n: &str| format!("layers.{l}.{n}");
            let w = raw(&t("weight"), safetensors::Dtype::I8, &[o, i])?;
            let weight_scale = read_f32(&st, &t("weight_scale"), &[o], &wpath)?;
            let input_scale = read_f32(&st, &t("input_scale"), &[1], &wpath)?[0];
            let bias = read_f32(&st, &t("bias"), &[o], &wpath)?;
            // [out, in] on disk; [in][out] here.
            let weights: Vec<i16> = (0..i)
                .flat_map(|r| (0..o).map(move |c| (r, c)))
                .map(|(r, c)| i16::from(w[c * i + r] as i8))
                .collect();
            if weights.iter().any(|q| *q < -127) || !(input_scale > 0.0 && input_scale.is_finite())
            {
                return Err(Error::io(
                    &wpath,
                    format!("layer {l}: values outside the int8 scheme"),
                ));
            }
            params.extend(
                weights
                    .iter()
                    .enumerate()
                    .map(|(k, q)| f32::from(*q) * weight_scale[k % o]),
            );
            params.extend_from_slice(&bias);
            layers.push(QLayer::new(
                (i, o),
                weights,
                weight_scale,
                input_scale,
                bias,
            ));
        }
        let net = Mlp::from_parameters(m.architecture.clone(), params)?;
        Ok(Self {
            layers,
            model: MlpModel::from_manifest(net, m),
            per_channel,
        })
    }

    /// The f32 model this was quantized from (metadata, preprocessing; after [`QuantizedMlp::load`],
    /// its weights are the dequantized ones).
    pub fn model(&self) -> &MlpModel {
        &self.model
    }

    /// Predictions for raw Arrow columns, through the preprocessing saved with the model (as
    /// [`MlpModel::predict_batches`]), on the integer path.
    pub fn predict_batches(&self, batches: &[arrow_array::RecordBatch]) -> Result<Array2<f32>> {
        let p = self.model.preprocessor().ok_or_else(|| {
            Error::invalid("predict", "the model was not trained from Arrow data")
        })?;
        self.predict(p.features(batches)?.view())
    }
}

/// The integer path behind the [`Model`] trait: `predict` is [`QuantizedMlp::predict`], `save`
/// writes the int8 format, and [`crate::Trainer::load`] of [`crate::NdarrayTrainer`] reads it back.
impl Model for QuantizedMlp {
    fn predict(&self, x: ArrayView2<f32>) -> Result<Array2<f32>> {
        QuantizedMlp::predict(self, x)
    }

    fn signature(&self) -> Signature {
        self.model.signature()
    }

    fn save(&self, dir: &Path) -> Result<()> {
        QuantizedMlp::save(self, dir)
    }
}

/// A model directory of either MLP format, as its manifest names it: f32 (`aistd-mlp`, written
/// by [`MlpModel`]'s [`Model::save`]) or int8 ([`FORMAT_INT8`], by [`QuantizedMlp::save`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SavedMlp {
    /// Full precision.
    Float(MlpModel),
    /// Quantized to int8.
    Int8(QuantizedMlp),
}

impl SavedMlp {
    /// Reads the model in `dir`, checking its files' SHA-256 as the format's own `load` does.
    pub fn load(dir: &Path) -> Result<Self> {
        if saved_format(dir)? == FORMAT_INT8 {
            Ok(Self::Int8(QuantizedMlp::load(dir)?))
        } else {
            // Any other format is reported by the f32 reader.
            Ok(Self::Float(MlpModel::load(dir)?))
        }
    }

    /// The format name in the model's manifest.
    pub fn format(&self) -> &'static str {
        match self {
            Self::Float(_) => crate::trainer::FORMAT,
            Self::Int8(_) => FORMAT_INT8,
        }
    }

    /// The f32 model: task, preprocessing, metadata (for an int8 model, its dequantized weights;
    /// predictions go through [`Model::predict`] on the integer path instead).
    pub fn float(&self) -> &MlpModel {
        match self {
            Self::Float(m) => m,
            Self::Int8(q) => q.model(),
        }
    }

    /// Predictions for raw Arrow columns through the saved preprocessing.
    pub fn predict_batches(&self, batches: &[arrow_array::RecordBatch]) -> Result<Array2<f32>> {
        match self {
            Self::Float(m) => m.predict_batches(batches),
            Self::Int8(q) => q.predict_batches(batches),
        }
    }
}

impl Model for SavedMlp {
    fn predict(&self, x: ArrayView2<f32>) -> Result<Array2<f32>> {
        match self {
            Self::Float(m) => m.predict(x),
            Self::Int8(q) => QuantizedMlp::predict(q, x),
        }
    }

    fn signature(&self) -> Signature {
        self.float().signature()
    }

    fn save(&self, dir: &Path) -> Result<()> {
        match self {
            Self::Float(m) => m.save(dir),
            Self::Int8(q) => q.save(dir),
        }
    }
}

/// acc += q · W for one quantized row `q` and weights `w` ([in][out]): for each input, its
/// value times that input's row of weights, added into the 32-bit accumulators. Values are in
/// [−127, 127], so each product fits in 16 bits (a 16-bit multiply, in every x86-64's SSE2,
/// widened into the 32-bit lanes); inputs that are 0 (ReLU's) are skipped.
fn accumulate(acc: &mut [i32], q: &[i16], w: &[i16]) {
    let o = acc.len();
    for (qk, wrow) in q.iter().zip(w.chunks_exact(o)) {
        if *qk == 0 {
            continue;
        }
        for (a, wv) in acc.iter_mut().zip(wrow) {
            *a += i32::from(qk.wrapping_mul(*wv));
        }
    }
}

/// Quantization-aware fine-tuning of `model` on `train` (ndarray backend): forward passes on
/// fake-quantized weights and layer inputs (the integer inference's arithmetic, up to float
/// rounding), straight-through backward passes, updates to the full-precision weights; returns
/// the fine-tuned f32 model (quantize it afterwards, calibrating on the training rows).
pub fn qat_fine_tune(
    model: &MlpModel,
    train: &Dataset,
    config: &TrainConfig,
    per_channel: bool,
    observer: &mut dyn Observer,
) -> Result<(MlpModel, History)> {
    let net = model.network();
    let arch = net.architecture();
    let x = model.standardize(&train.x)?;
    let train = Dataset::new(x, train.y.clone(), train.features.clone())?;
    let mut c = config.clone();
    c.hidden = arch.hidden.clone();
    c.activation = arch.activation;
    c.standardize = false;
    c.local = Some(Warm {
        initial: net.parameters().to_vec(),
        proximal_mu: 0.0,
        outputs: arch.outputs,
        mask: None,
    });
    c.fake_quantize = Some(per_channel);
    let (m, history) = NdarrayTrainer.fit_mlp(&train, None, &c, observer)?;
    Ok((
        model.with_network(m.network().clone()).with_record_of(&m),
        history,
    ))
}

#[cfg(test)]
mod tests {
    use crate::data::{Dataset, Target};
    use crate::nn::{Activation, Architecture, Loss, Mlp, Reduction, Targets, Workspace};
    use crate::{NdarrayTrainer, Silent, TrainConfig};

    /// 40 rows of 9 features in −5..5, 3 classes.
    fn small() -> Dataset {
        let x =
            ndarray::Array2::from_shape_fn((40, 9), |(r, c)| ((r * 7 + c * 3) % 11) as f32 - 5.0);
        let labels = (0..40).map(|r| (r % 3) as u32).collect();
        let names = ["a", "b", "c"].map(String::from).to_vec();
        let features = (0..9).map(|c| format!("f{c}")).collect();
        Dataset::new(x, Target::Classes { labels, names }, features).expect("data")
    }

    #[test]
    fn the_quantization_aware_forward_pass_is_the_integer_inference() {
        let d = small();
        for (act, per_channel) in [("relu", true), ("tanh", false), ("gelu", true)] {
            let c = TrainConfig {
                hidden: vec![13, 70],
                epochs: 3,
                activation: Activation::from_name(act).expect("activation"),
                ..TrainConfig::default()
            };
            let (m, _) = NdarrayTrainer
                .fit_mlp(&d, None, &c, &mut Silent)
                .expect("fit");
            let x = m.standardize(&d.x).expect("standardize");
            let scales = super::input_scales(m.network(), x.view()).expect("scales");
            let mut net = m.network().clone();
            super::fake_quantize(&mut net, per_channel);
            let simulated = net
                .forward_fake_quantized(x.view(), &scales)
                .expect("fake-quantized");
            let q = super::QuantizedMlp::quantize(&m, d.x.view(), per_channel).expect("quantize");
            let integer = q.forward(d.x.view()).expect("int8");
            let top = integer.iter().fold(0.0f32, |a, v| a.max(v.abs()));
            let gap = (&simulated - &integer)
                .iter()
                .fold(0.0f32, |a, v| a.max(v.abs()));
            assert!(gap <= 1e-4 * top, "{act}: {gap} (outputs up to {top})");
            // …and it is not the f32 forward pass.
            let float = m.network().forward(x.view()).expect("f32");
            let off = (&float - &integer)
                .iter()
                .fold(0.0f32, |a, v| a.max(v.abs()));
            assert!(
                off > 100.0 * gap,
                "{act}: f32 is off by {off}, the simulation {gap}"
            );
        }
    }

    #[test]
    fn quantization_aware_gradients_are_straight_through() {
        let d = small();
        let y = d.labels().expect("classes");
        let net = Mlp::new(Architecture::new(9, vec![13], 3, Activation::Relu), 7).expect("net");
        let all: Vec<usize> = (0..d.len()).collect();
        let grads = |scales: &[f32]| {
            let mut g = vec![0.0; net.parameters().len()];
            net.loss_and_grad_rows(
                &mut Workspace::default(),
                d.x.view(),
                &all,
                Targets::Classes(y),
                Loss::CrossEntropy,
                Reduction::Sum,
                0.0,
                &mut [],
                scales,
                &mut g,
            )
            .expect("gradients");
            g
        };
        // Coarse scales, so that quantization moves the inputs visibly.
        let scales = [0.5, 0.25];
        let (g, plain) = (grads(&scales), grads(&[]));
        // The output layer's gradients are exact: its quantized input does not depend on its own
        // weights, so central differences of the fake-quantized loss agree.
        let loss = |p: &[f32]| {
            let n = Mlp::from_parameters(net.architecture().clone(), p.to_vec()).expect("net");
            let out = n
                .forward_fake_quantized(d.x.view(), &scales)
                .expect("forward");
            f64::from(
                Loss::CrossEntropy
                    .evaluate(out.view(), Targets::Classes(y), Reduction::Sum)
                    .expect("loss")
                    .0,
            )
        };
        let r = net.layer_range(1);
        let (mut worst, mut unlike) = (0.0f64, 0.0f64);
        for k in r.step_by(3) {
            let mut p = net.parameters().to_vec();
            p[k] += 1e-2;
            let up = loss(&p);
            p[k] -= 2e-2;
            let fd = (up - loss(&p)) / 2e-2;
            worst = worst.max((fd - f64::from(g[k])).abs() / (1.0 + fd.abs()));
            unlike = unlike.max((fd - f64::from(plain[k])).abs() / (1.0 + fd.abs()));
        }
        assert!(
            worst < 2e-3,
            "output layer off finite differences by {worst}"
        );
        assert!(
            unlike > 10.0 * worst,
            "the f32 gradient is as close: {unlike}"
        );
        // Below it, the gradient passes the rounding (non-zero) and stops where every hidden
        // input saturates (a scale far too small).
        let first = net.layer_range(0);
        assert!(g[first.clone()].iter().any(|v| *v != 0.0));
        let saturated = grads(&[0.5, 1e-6]);
        assert!(saturated[first].iter().all(|v| *v == 0.0));
        assert_ne!(g, plain);
    }

    #[test]
    fn the_vector_and_portable_paths_give_identical_outputs() {
        // 40 rows of 9 features, 3 classes; hidden layers of 13 and 70 (odd widths), each
        // activation.
        let d = small();
        for act in ["relu", "tanh", "gelu", "sigmoid"] {
            let c = TrainConfig {
                hidden: vec![13, 70],
                epochs: 2,
                activation: crate::nn::Activation::from_name(act).expect("activation"),
                ..TrainConfig::default()
            };
            let (m, _) = NdarrayTrainer
                .fit_mlp(&d, None, &c, &mut Silent)
                .expect("fit");
            let q = super::QuantizedMlp::quantize(&m, d.x.view(), true).expect("quantize");
            let vector = q.forward_on(d.x.view(), true).expect("vector");
            let portable = q.forward_on(d.x.view(), false).expect("portable");
            assert_eq!(vector, portable, "{act}");
        }
    }

    #[test]
    fn the_portable_loop_equals_the_definition() {
        // 3 inputs (the middle one 0, skipped), 5 outputs, extreme values.
        let w: Vec<i16> = (0..15).map(|k| (k * 37 % 255) as i16 - 127).collect();
        let q = [-127i16, 0, 127];
        let mut acc = vec![0i32; 5];
        super::accumulate(&mut acc, &q, &w);
        let want: Vec<i32> = (0..5)
            .map(|c| {
                (0..3)
                    .map(|k| i32::from(q[k]) * i32::from(w[k * 5 + c]))
                    .sum()
            })
            .collect();
        assert_eq!(acc, want);
    }
}
