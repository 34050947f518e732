//! Multilayer perceptrons (linear and logistic/softmax regression are MLPs without hidden
//! layers) with explicit backpropagation. All parameters live in one flat `Vec<f32>`, layer by
//! layer (weights `inputs × outputs` row-major, then biases), so optimizers, gradient averaging
//! and checkpoints work on plain slices.

use ndarray::{Array2, ArrayView1, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::rng::Rng;

/// A hidden layer's activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Activation {
    /// max(0, z).
    Relu,
    /// z·Φ(z) with the exact normal CDF (PyTorch's default GELU).
    Gelu,
    /// tanh(z).
    Tanh,
    /// 1 / (1 + e^−z).
    Sigmoid,
}

impl Activation {
    /// `relu`, `gelu`, `tanh` or `sigmoid`.
    pub fn from_name(name: &str) -> crate::Result<Self> {
        Ok(match name {
            "relu" => Activation::Relu,
            "gelu" => Activation::Gelu,
            "tanh" => Activation::Tanh,
            "sigmoid" => Activation::Sigmoid,
            other => {
                return Err(crate::Error::invalid(
                    "activation",
                    format!("must be relu, gelu, tanh or sigmoid, not `{other}`"),
                ));
            }
        })
    }

    #[inline(always)]
    pub(crate) fn apply(self, z: f32) -> f32 {
        match self {
            Activation::Relu => z.max(0.0),
            Activation::Gelu => 0.5 * z * (1.0 + libm::erff(z / std::f32::consts::SQRT_2)),
            Activation::Tanh => z.tanh(),
            Activation::Sigmoid => sigmoid(z),
        }
    }

    /// Adds bias `b` to every row of `a` (the product x · W, standard layout) and applies the
    /// activation in the same pass; for GELU, whose derivative needs the pre-activation, it is
    /// kept in `z` (reshaped to `a`'s shape). The match is outside the loops, so each vectorizes.
    fn bias_and_apply(self, a: &mut Array2<f32>, b: &[f32], z: &mut Array2<f32>) {
        fn each(a: &mut [f32], b: &[f32], f: impl Fn(f32) -> f32) {
            for row in a.chunks_exact_mut(b.len()) {
                for (v, b) in row.iter_mut().zip(b) {
                    *v = f(*v + b);
                }
            }
        }
        let Some(av) = a.as_slice_mut() else {
            unreachable!("workspace buffers are standard layout")
        };
        match self {
            Activation::Relu => each(av, b, |v| v.max(0.0)),
            Activation::Tanh => each(av, b, f32::tanh),
            Activation::Sigmoid => each(av, b, sigmoid),
            Activation::Gelu => {
                shape_buffer(z, a.nrows(), a.ncols());
                let (Some(zv), Some(av)) = (z.as_slice_mut(), a.as_slice_mut()) else {
                    unreachable!("workspace buffers are standard layout")
                };
                for (zr, ar) in zv
                    .chunks_exact_mut(b.len())
                    .zip(av.chunks_exact_mut(b.len()))
                {
                    for ((z, a), b) in zr.iter_mut().zip(ar.iter_mut()).zip(b) {
                        *z = *a + b;
                        *a = Activation::Gelu.apply(*z);
                    }
                }
            }
        }
    }

    /// Multiplies each gradient `g` by d a / d z, where `a` is the layer's output: act(z), times
    /// the dropout scaling `m` when there is one (so d a / d z = act'(z) · m). ReLU, tanh and
    /// sigmoid read their derivative off `a` (where `m` is 0 so is the gradient); GELU needs `z`.
    fn backprop(self, g: &mut [f32], a: &[f32], z: &[f32], m: Option<&[f32]>) {
        fn each(g: &mut [f32], a: &[f32], f: impl Fn(f32) -> f32) {
            for (g, a) in g.iter_mut().zip(a) {
                *g *= f(*a);
            }
        }
        fn masked(g: &mut [f32], a: &[f32], m: &[f32], f: impl Fn(f32) -> f32) {
            for ((g, a), m) in g.iter_mut().zip(a).zip(m) {
                *g *= if *m > 0.0 { f(a / m) * m } else { 0.0 };
            }
        }
        match (self, m) {
            (Activation::Relu, None) => each(g, a, |a| if a > 0.0 { 1.0 } else { 0.0 }),
            (Activation::Relu, Some(m)) => {
                for ((g, a), m) in g.iter_mut().zip(a).zip(m) {
                    *g *= if *a > 0.0 { *m } else { 0.0 };
                }
            }
            (Activation::Tanh, None) => each(g, a, |a| 1.0 - a * a),
            (Activation::Tanh, Some(m)) => masked(g, a, m, |a| 1.0 - a * a),
            (Activation::Sigmoid, None) => each(g, a, |a| a * (1.0 - a)),
            (Activation::Sigmoid, Some(m)) => masked(g, a, m, |a| a * (1.0 - a)),
            (Activation::Gelu, m) => {
                for (k, (g, z)) in g.iter_mut().zip(z).enumerate() {
                    let scale = m.map_or(1.0, |m| m[k]);
                    *g *= Activation::Gelu.derivative(*z, 0.0) * scale;
                }
            }
        }
    }

    /// d act / dz at pre-activation `z` (with `a` = act(z)).
    #[inline(always)]
    fn derivative(self, z: f32, a: f32) -> f32 {
        match self {
            Activation::Relu => {
                if z > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Activation::Gelu => {
                let cdf = 0.5 * (1.0 + libm::erff(z / std::f32::consts::SQRT_2));
                let pdf = (-0.5 * z * z).exp() / (2.0 * std::f32::consts::PI).sqrt();
                cdf + z * pdf
            }
            Activation::Tanh => 1.0 - a * a,
            Activation::Sigmoid => a * (1.0 - a),
        }
    }
}

/// x · w + b (b added to every row): the rows start as copies of b and the product is
/// accumulated onto them.
fn affine(x: ArrayView2<f32>, w: ArrayView2<f32>, b: ArrayView1<f32>) -> Array2<f32> {
    let mut z = Array2::zeros((0, 0));
    affine_into(x, w, b, &mut z);
    z
}

/// [`affine`] into `z`, reusing its allocation.
fn affine_into(x: ArrayView2<f32>, w: ArrayView2<f32>, b: ArrayView1<f32>, z: &mut Array2<f32>) {
    let (n, o) = (x.nrows(), w.ncols());
    shape_buffer(z, n, o);
    for mut row in z.outer_iter_mut() {
        match (row.as_slice_mut(), b.as_slice()) {
            (Some(r), Some(b)) => r.copy_from_slice(b),
            _ => row.assign(&b),
        }
    }
    ndarray::linalg::general_mat_mul(1.0, &x, &w, 1.0, z);
}

/// The values of a standard-layout array (as every trace and workspace array is).
fn slice(x: &Array2<f32>) -> &[f32] {
    x.as_slice()
        .unwrap_or_else(|| unreachable!("trace arrays are standard layout"))
}

/// Makes `buf` a standard-layout `rows × cols` array, keeping its allocation when it is large
/// enough; the contents are left unspecified. Training steps reuse their arrays through this:
/// fresh arrays of a few hundred kilobytes each step cost page faults that took a fifth of
/// an epoch of the 100 → 256 → 256 → 1 benchmark.
fn shape_buffer(buf: &mut Array2<f32>, rows: usize, cols: usize) {
    if buf.dim() == (rows, cols) && buf.is_standard_layout() {
        return;
    }
    let (mut v, _) = std::mem::take(buf).into_raw_vec_and_offset();
    v.clear();
    v.resize(rows * cols, 0.0);
    *buf = Array2::from_shape_vec((rows, cols), v)
        .unwrap_or_else(|_| unreachable!("rows × cols values"));
}

/// Copies rows `idx` of `x` into `out` (reused).
fn gather_into(x: ArrayView2<'_, f32>, idx: &[usize], out: &mut Array2<f32>) {
    shape_buffer(out, idx.len(), x.ncols());
    for (mut dst, &i) in out.outer_iter_mut().zip(idx) {
        let src = x.row(i);
        match (dst.as_slice_mut(), src.as_slice()) {
            (Some(d), Some(s)) => d.copy_from_slice(s),
            _ => dst.assign(&src),
        }
    }
}

pub(crate) fn sigmoid(z: f32) -> f32 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// The loss, applied to the network's raw outputs (logits for classification).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Loss {
    /// Squared error (regression).
    Mse,
    /// Softmax cross-entropy over the outputs (multi-class).
    CrossEntropy,
    /// Sigmoid binary cross-entropy on one output (two classes).
    BinaryCrossEntropy,
    /// Huber with threshold `delta` (regression robust to outliers).
    Huber {
        /// Where it turns linear.
        delta: f32,
    },
}

/// How per-example losses combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reduction {
    /// Averaged (over examples, and outputs for regression), as PyTorch's default.
    #[default]
    Mean,
    /// Summed.
    Sum,
}

/// What a target looks like to a loss: class indices or values (rows × outputs).
#[derive(Debug, Clone, Copy)]
pub enum Targets<'a> {
    /// Class index per row.
    Classes(&'a [u32]),
    /// One row of values per example.
    Values(ArrayView2<'a, f32>),
}

impl Loss {
    /// The loss and its gradient with respect to the outputs.
    pub fn evaluate(
        self,
        out: ArrayView2<f32>,
        y: Targets,
        reduction: Reduction,
    ) -> Result<(f32, Array2<f32>)> {
        let (n, k) = out.dim();
        let mut grad = Array2::<f32>::zeros((n, k));
        let mut total = 0.0f64;
        match (self, y) {
            (Loss::Mse | Loss::Huber { .. }, Targets::Values(t)) => {
                if t.dim() != (n, k) {
                    return Err(Error::invalid(
                        "targets",
                        format!("shape {:?} against outputs {:?}", t.dim(), (n, k)),
                    ));
                }
                for ((g, o), t) in grad.iter_mut().zip(out.iter()).zip(t.iter()) {
                    let d = o - t;
                    match self {
                        Loss::Huber { delta } if d.abs() > delta => {
                            total += f64::from(delta * (d.abs() - 0.5 * delta));
                            *g = delta * d.signum();
                        }
                        Loss::Huber { .. } => {
                            total += f64::from(0.5 * d * d);
                            *g = d;
                        }
                        _ => {
                            total += f64::from(d * d);
                            *g = 2.0 * d;
                        }
                    }
                }
                if reduction == Reduction::Mean {
                    let m = (n * k).max(1) as f32;
                    grad.mapv_inplace(|g| g / m);
                    total /= (n * k).max(1) as f64;
                }
            }
            (Loss::CrossEntropy, Targets::Classes(c)) => {
                check_classes(c, n, k)?;
                for (i, row) in out.outer_iter().enumerate() {
                    let max = row.fold(f32::NEG_INFINITY, |a, b| a.max(*b));
                    let sum: f32 = row.iter().map(|v| (v - max).exp()).sum();
                    let lse = max + sum.ln();
                    let label = c[i] as usize;
                    total += f64::from(lse - row[label]);
                    for j in 0..k {
                        grad[[i, j]] = (row[j] - lse).exp() - if j == label { 1.0 } else { 0.0 };
                    }
                }
                if reduction == Reduction::Mean {
                    grad.mapv_inplace(|g| g / n.max(1) as f32);
                    total /= n.max(1) as f64;
                }
            }
            (Loss::BinaryCrossEntropy, Targets::Classes(c)) => {
                if k != 1 {
                    return Err(Error::invalid(
                        "binary cross-entropy",
                        format!("needs one output, the network has {k}"),
                    ));
                }
                check_classes(c, n, 2)?;
                for i in 0..n {
                    let z = out[[i, 0]];
                    let y = c[i] as f32;
                    total += f64::from(z.max(0.0) - z * y + (1.0 + (-z.abs()).exp()).ln());
                    grad[[i, 0]] = sigmoid(z) - y;
                }
                if reduction == Reduction::Mean {
                    grad.mapv_inplace(|g| g / n.max(1) as f32);
                    total /= n.max(1) as f64;
                }
            }
            (loss, _) => {
                return Err(Error::invalid(
                    format!("loss {loss:?}"),
                    "does not fit the kind of target (classes or values)",
                ));
            }
        }
        Ok((total as f32, grad))
    }
}

fn check_classes(c: &[u32], n: usize, k: usize) -> Result<()> {
    if c.len() != n {
        return Err(Error::invalid(
            "targets",
            format!("{} labels for {n} rows", c.len()),
        ));
    }
    if let Some(bad) = c.iter().find(|l| **l as usize >= k) {
        return Err(Error::invalid(
            "targets",
            format!("class {bad} but the network has {k} outputs"),
        ));
    }
    Ok(())
}

/// The shape of a network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Architecture {
    /// Input features.
    pub inputs: usize,
    /// Hidden layer widths (none: a linear model).
    pub hidden: Vec<usize>,
    /// Outputs.
    pub outputs: usize,
    /// Activation of the hidden layers.
    pub activation: Activation,
}

impl Architecture {
    /// A network `inputs → hidden… → outputs` with `activation`.
    pub fn new(inputs: usize, hidden: Vec<usize>, outputs: usize, activation: Activation) -> Self {
        Self {
            inputs,
            hidden,
            outputs,
            activation,
        }
    }

    /// (inputs, outputs) of each layer.
    pub fn layers(&self) -> Vec<(usize, usize)> {
        let mut widths = vec![self.inputs];
        widths.extend(&self.hidden);
        widths.push(self.outputs);
        widths.windows(2).map(|w| (w[0], w[1])).collect()
    }

    /// Number of parameters.
    pub fn parameters(&self) -> usize {
        self.layers().iter().map(|(i, o)| i * o + o).sum()
    }

    fn validate(&self) -> Result<()> {
        if self.inputs == 0 || self.outputs == 0 || self.hidden.contains(&0) {
            return Err(Error::invalid(
                "architecture",
                format!("every layer needs a width ≥ 1: {self:?}"),
            ));
        }
        Ok(())
    }
}

/// A network: its architecture and flat parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Mlp {
    arch: Architecture,
    params: Vec<f32>,
    /// Offset of each layer's weights; its bias follows them.
    offsets: Vec<usize>,
}

/// What a forward pass keeps for the backward pass.
#[derive(Debug, Default)]
pub struct Trace {
    /// Input, then each hidden activation (after dropout).
    acts: Vec<Array2<f32>>,
    /// Pre-activations of the hidden layers, for GELU (the other activations' derivatives come
    /// from their outputs); empty otherwise.
    pre: Vec<Array2<f32>>,
    /// Dropout scaling per hidden layer (0 for dropped units), if used.
    masks: Vec<Option<Array2<f32>>>,
    /// Quantization-aware training: each layer's input scale (empty: off), and each layer's
    /// input fake-quantized with it, which the layer multiplies instead of `acts`.
    scales: Vec<f32>,
    quantized: Vec<Array2<f32>>,
}

impl Trace {
    /// What layer `l` multiplied: its input, fake-quantized in quantization-aware training.
    fn input(&self, l: usize) -> &Array2<f32> {
        if self.scales.is_empty() {
            &self.acts[l]
        } else {
            &self.quantized[l]
        }
    }
}

/// `v` quantized to int8 with scale `s` and back, exactly as the integer inference path
/// quantizes a layer's input ([`crate::quantize`]).
pub(crate) fn fake_quantize_input(v: f32, s: f32) -> f32 {
    f32::from(crate::int8_kernel::quantize_input(v, 1.0 / s)) * s
}

/// The arrays one training thread reuses from step to step ([`Mlp::loss_and_grad_rows`]), so
/// that a step of a fixed batch size allocates nothing after the first.
#[derive(Debug, Default)]
pub(crate) struct Workspace {
    /// The batch (as `acts[0]`), pre-activations, activations and dropout masks.
    trace: Trace,
    /// The network's outputs.
    out: Array2<f32>,
    /// d loss / d activations, for the layer being backpropagated and the one below it.
    delta: Array2<f32>,
    back: Array2<f32>,
    /// DP-SGD: every layer's output gradient, and each example's clipping factor.
    deltas: Vec<Array2<f32>>,
    factors: Vec<f32>,
}

impl Mlp {
    /// Initialized as PyTorch's `nn.Linear` (Kaiming-uniform weights and uniform biases in
    /// ±1/√fan_in), from `seed`.
    pub fn new(arch: Architecture, seed: u64) -> Result<Self> {
        arch.validate()?;
        let mut rng = Rng::new(seed);
        let mut params = Vec::with_capacity(arch.parameters());
        let mut offsets = Vec::new();
        for (i, o) in arch.layers() {
            offsets.push(params.len());
            let bound = 1.0 / (i as f64).sqrt();
            for _ in 0..i * o + o {
                params.push(((rng.uniform() * 2.0 - 1.0) * bound) as f32);
            }
        }
        Ok(Self {
            arch,
            params,
            offsets,
        })
    }

    /// A network with these parameters.
    pub fn from_parameters(arch: Architecture, params: Vec<f32>) -> Result<Self> {
        arch.validate()?;
        if params.len() != arch.parameters() {
            return Err(Error::invalid(
                "parameters",
                format!(
                    "{} values for an architecture of {}",
                    params.len(),
                    arch.parameters()
                ),
            ));
        }
        let mut offsets = Vec::new();
        let mut off = 0;
        for (i, o) in arch.layers() {
            offsets.push(off);
            off += i * o + o;
        }
        Ok(Self {
            arch,
            params,
            offsets,
        })
    }

    /// The architecture.
    pub fn architecture(&self) -> &Architecture {
        &self.arch
    }

    /// The flat parameters.
    pub fn parameters(&self) -> &[f32] {
        &self.params
    }

    /// The flat parameters, to update.
    pub fn parameters_mut(&mut self) -> &mut [f32] {
        &mut self.params
    }

    /// Where layer `l`'s parameters are: its weights (inputs × outputs, row-major), then its
    /// bias.
    pub fn layer_range(&self, l: usize) -> std::ops::Range<usize> {
        let (i, o) = self.arch.layers()[l];
        self.offsets[l]..self.offsets[l] + i * o + o
    }

    /// Layer `l`'s weights (inputs × outputs) and bias, from `params`.
    fn layer<'p>(&self, params: &'p [f32], l: usize) -> (ArrayView2<'p, f32>, ArrayView1<'p, f32>) {
        let (i, o) = self.arch.layers()[l];
        let off = self.offsets[l];
        let w = ArrayView2::from_shape((i, o), &params[off..off + i * o])
            .unwrap_or_else(|_| unreachable!("offsets follow the architecture"));
        let b = ArrayView1::from(&params[off + i * o..off + i * o + o]);
        (w, b)
    }

    fn check_input(&self, x: &ArrayView2<f32>) -> Result<()> {
        if x.ncols() != self.arch.inputs {
            return Err(Error::invalid(
                "input",
                format!(
                    "{} features per row, the network takes {}",
                    x.ncols(),
                    self.arch.inputs
                ),
            ));
        }
        Ok(())
    }

    /// The raw outputs (logits for classification).
    pub fn forward(&self, x: ArrayView2<f32>) -> Result<Array2<f32>> {
        self.check_input(&x)?;
        let layers = self.arch.layers().len();
        let mut a = x.to_owned();
        for l in 0..layers {
            let (w, b) = self.layer(&self.params, l);
            let mut z = affine(a.view(), w, b);
            if l + 1 < layers {
                let act = self.arch.activation;
                z.mapv_inplace(|v| act.apply(v));
            }
            a = z;
        }
        Ok(a)
    }

    /// Forward pass that keeps what backpropagation needs; `dropout` > 0 drops hidden units
    /// with that probability (scaling the rest by 1 / (1 − p)), row `r` drawing from
    /// `rngs[r]` (one generator per example, so masks do not depend on how a batch is split).
    pub fn forward_train(
        &self,
        x: ArrayView2<f32>,
        dropout: f32,
        rngs: &mut [Rng],
    ) -> Result<(Array2<f32>, Trace)> {
        self.check_input(&x)?;
        let mut trace = Trace {
            acts: vec![x.as_standard_layout().into_owned()],
            ..Trace::default()
        };
        let mut out = Array2::zeros((0, 0));
        self.forward_into(&mut trace, &mut out, dropout, rngs, &[])?;
        Ok((out, trace))
    }

    /// The raw outputs with every layer's input fake-quantized to int8 with `scales` (one per
    /// layer): the forward pass of quantization-aware training, which equals the integer
    /// inference of the same weights and scales up to float rounding.
    #[cfg(test)]
    pub(crate) fn forward_fake_quantized(
        &self,
        x: ArrayView2<f32>,
        scales: &[f32],
    ) -> Result<Array2<f32>> {
        self.check_input(&x)?;
        let mut trace = Trace {
            acts: vec![x.as_standard_layout().into_owned()],
            ..Trace::default()
        };
        let mut out = Array2::zeros((0, 0));
        self.forward_into(&mut trace, &mut out, 0.0, &mut [], scales)?;
        Ok(out)
    }

    /// The forward pass of `trace.acts[0]` (already checked), into the trace's and `out`'s
    /// arrays, reused; with `scales` (one per layer; empty: off), each layer's input
    /// fake-quantized to int8 first (quantization-aware training).
    fn forward_into(
        &self,
        trace: &mut Trace,
        out: &mut Array2<f32>,
        dropout: f32,
        rngs: &mut [Rng],
        scales: &[f32],
    ) -> Result<()> {
        let layers = self.arch.layers().len();
        let hidden = layers - 1;
        let rows = trace.acts[0].nrows();
        trace.acts.resize_with(layers, Default::default);
        trace.pre.resize_with(hidden, Default::default);
        trace.masks.resize_with(hidden, Default::default);
        if dropout > 0.0 && rngs.len() != rows {
            return Err(Error::invalid(
                "dropout",
                format!("{} generators for {rows} rows", rngs.len()),
            ));
        }
        if !scales.is_empty() && scales.len() != layers {
            return Err(Error::invalid(
                "quantization-aware training",
                format!("{} input scales for {layers} layers", scales.len()),
            ));
        }
        trace.scales.clear();
        trace.scales.extend_from_slice(scales);
        trace.quantized.resize_with(layers, Default::default);
        for l in 0..layers {
            let (w, b) = self.layer(&self.params, l);
            let Trace {
                acts,
                pre,
                masks,
                scales,
                quantized,
            } = trace;
            let input = if scales.is_empty() {
                &acts[l]
            } else {
                let q = &mut quantized[l];
                shape_buffer(q, rows, acts[l].ncols());
                let s = scales[l];
                q.zip_mut_with(&acts[l], |q, a| *q = fake_quantize_input(*a, s));
                &quantized[l]
            };
            if l == hidden {
                affine_into(input.view(), w, b, out);
                break;
            }
            // x · W into the activation's array, then bias and activation in one pass.
            let (below, above) = acts.split_at_mut(l + 1);
            let a = &mut above[0];
            shape_buffer(a, rows, w.ncols());
            let input = if scales.is_empty() {
                &below[l]
            } else {
                &quantized[l]
            };
            ndarray::linalg::general_mat_mul(1.0, input, &w, 0.0, a);
            let bias = b
                .as_slice()
                .unwrap_or_else(|| unreachable!("biases are contiguous"));
            self.arch.activation.bias_and_apply(a, bias, &mut pre[l]);
            if dropout > 0.0 {
                let keep = 1.0 / (1.0 - dropout);
                let m = masks[l].get_or_insert_with(Default::default);
                shape_buffer(m, rows, w.ncols());
                for (mut row, rng) in m.outer_iter_mut().zip(rngs.iter_mut()) {
                    for v in row.iter_mut() {
                        *v = if rng.uniform() < f64::from(dropout) {
                            0.0
                        } else {
                            keep
                        };
                    }
                }
                *a *= &*m;
            } else {
                masks[l] = None;
            }
        }
        Ok(())
    }

    /// The gradient of each example's loss with respect to its own input row (rows × inputs),
    /// without dropout: what adversarial attacks follow.
    pub fn input_gradient(
        &self,
        x: ArrayView2<f32>,
        y: Targets,
        loss: Loss,
    ) -> Result<Array2<f32>> {
        let (out, trace) = self.forward_train(x, 0.0, &mut [])?;
        // Summed, so that row i's gradient is example i's alone.
        let (_, d) = loss.evaluate(out.view(), y, Reduction::Sum)?;
        let mut delta = d.as_standard_layout().into_owned();
        let mut back = Array2::zeros((0, 0));
        for l in (1..self.offsets.len()).rev() {
            self.back_through(&trace, l, &delta, &mut back);
            std::mem::swap(&mut delta, &mut back);
        }
        let (w, _) = self.layer(&self.params, 0);
        Ok(delta.dot(&w.t()))
    }

    /// Gradients of the loss with respect to every parameter, given d loss / d outputs, added
    /// into `grads` (same layout as the parameters).
    pub fn backward(&self, trace: &Trace, d_out: Array2<f32>, grads: &mut [f32]) {
        let mut delta = if d_out.is_standard_layout() {
            d_out
        } else {
            d_out.as_standard_layout().into_owned()
        };
        let mut back = Array2::zeros((0, 0));
        self.backward_into(trace, &mut delta, &mut back, grads, true);
    }

    /// [`Mlp::backward`] with d loss / d outputs in `delta`; `delta` and `back` are reused
    /// as the gradients of the layers below. The gradients are added into `grads` if
    /// `accumulate`, else written over it.
    fn backward_into(
        &self,
        trace: &Trace,
        delta: &mut Array2<f32>,
        back: &mut Array2<f32>,
        grads: &mut [f32],
        accumulate: bool,
    ) {
        for l in (0..self.offsets.len()).rev() {
            self.layer_grads(l, trace.input(l), delta, grads, accumulate);
            if l > 0 {
                self.back_through(trace, l, delta, back);
                std::mem::swap(delta, back);
            }
        }
    }

    /// Layer `l`'s gradients from its input `a_prev` and output gradient `delta`: dW = a_prevᵀ · δ
    /// and db = the sum of δ's rows, added into or written over their slices of `grads`.
    fn layer_grads(
        &self,
        l: usize,
        a_prev: &Array2<f32>,
        delta: &Array2<f32>,
        grads: &mut [f32],
        accumulate: bool,
    ) {
        let (i, o) = (a_prev.ncols(), delta.ncols());
        let off = self.offsets[l];
        let mut dw = ndarray::ArrayViewMut2::from_shape((i, o), &mut grads[off..off + i * o])
            .unwrap_or_else(|_| unreachable!("offsets follow the architecture"));
        let beta = if accumulate { 1.0 } else { 0.0 };
        ndarray::linalg::general_mat_mul(1.0, &a_prev.t(), delta, beta, &mut dw);
        let db = &mut grads[off + i * o..off + i * o + o];
        if !accumulate {
            db.fill(0.0);
        }
        for row in delta.outer_iter() {
            for (g, d) in db.iter_mut().zip(row.iter()) {
                *g += d;
            }
        }
    }

    /// The gradient with respect to layer `l`'s input (the output of hidden layer `l − 1`,
    /// before its activation) from its output gradient `delta`, into `back`.
    fn back_through(&self, trace: &Trace, l: usize, delta: &Array2<f32>, back: &mut Array2<f32>) {
        let (w, _) = self.layer(&self.params, l);
        // δ · Wᵀ into a row-major array, so the loops below run over contiguous slices.
        shape_buffer(back, delta.nrows(), w.nrows());
        ndarray::linalg::general_mat_mul(1.0, delta, &w.t(), 0.0, back);
        let g = back
            .as_slice_mut()
            .unwrap_or_else(|| unreachable!("workspace buffers are standard layout"));
        // Quantization-aware training: the straight-through estimator passes the gradient
        // through the fake quantization where the input was within range, and stops it where
        // the input saturated (as PyTorch's `FakeQuantize`).
        if let Some(s) = trace.scales.get(l) {
            let limit = 127.5 * s;
            for (g, a) in g.iter_mut().zip(slice(&trace.acts[l])) {
                if a.abs() > limit {
                    *g = 0.0;
                }
            }
        }
        let z = trace.pre.get(l - 1).map_or(&[][..], slice);
        let m = trace.masks[l - 1].as_ref().map(slice);
        self.arch
            .activation
            .backprop(g, slice(&trace.acts[l]), z, m);
    }

    /// Loss and gradients over rows `idx` of `x`, written over `grads`, in `ws`'s reused
    /// arrays.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn loss_and_grad_rows(
        &self,
        ws: &mut Workspace,
        x: ArrayView2<f32>,
        idx: &[usize],
        y: Targets,
        loss: Loss,
        reduction: Reduction,
        dropout: f32,
        rngs: &mut [Rng],
        scales: &[f32],
        grads: &mut [f32],
    ) -> Result<f32> {
        self.check_input(&x)?;
        let Workspace {
            trace,
            out,
            delta,
            back,
            ..
        } = ws;
        trace.acts.resize_with(1, Default::default);
        gather_into(x, idx, &mut trace.acts[0]);
        self.forward_into(trace, out, dropout, rngs, scales)?;
        let (l, d) = loss.evaluate(out.view(), y, reduction)?;
        shape_buffer(delta, d.nrows(), d.ncols());
        delta.assign(&d);
        self.backward_into(trace, delta, back, grads, false);
        Ok(l)
    }

    /// DP-SGD's gradient of rows `idx` of `x` ([`crate::privacy`]): each example's gradient of
    /// its own loss, clipped to L2 norm `clip`, summed and written over `grads`. Returns the
    /// summed loss and how many examples were clipped. The norms come from one backward pass:
    /// example r's share of a dense layer's gradient has squared norm (‖a_r‖² + 1) · ‖δ_r‖²
    /// (weights and bias), so scaling δ_r by its clipping factor before the weight products
    /// clips it exactly.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn clipped_grad_rows(
        &self,
        ws: &mut Workspace,
        x: ArrayView2<f32>,
        idx: &[usize],
        y: Targets,
        loss: Loss,
        dropout: f32,
        rngs: &mut [Rng],
        scales: &[f32],
        clip: f32,
        grads: &mut [f32],
    ) -> Result<(f32, usize)> {
        self.check_input(&x)?;
        let Workspace {
            trace,
            out,
            deltas,
            factors,
            ..
        } = ws;
        trace.acts.resize_with(1, Default::default);
        gather_into(x, idx, &mut trace.acts[0]);
        self.forward_into(trace, out, dropout, rngs, scales)?;
        let (total, d) = loss.evaluate(out.view(), y, Reduction::Sum)?;
        let layers = self.offsets.len();
        deltas.resize_with(layers, Default::default);
        shape_buffer(&mut deltas[layers - 1], d.nrows(), d.ncols());
        deltas[layers - 1].assign(&d);
        for l in (1..layers).rev() {
            let (below, above) = deltas.split_at_mut(l);
            self.back_through(trace, l, &above[0], &mut below[l - 1]);
        }
        factors.clear();
        factors.resize(idx.len(), 0.0);
        for (l, d) in deltas.iter().enumerate() {
            let a = trace.input(l);
            for ((f, a), d) in factors.iter_mut().zip(a.outer_iter()).zip(d.outer_iter()) {
                let a2: f32 = a.iter().map(|v| v * v).sum();
                let d2: f32 = d.iter().map(|v| v * v).sum();
                *f += (a2 + 1.0) * d2;
            }
        }
        let mut clipped = 0;
        for f in factors.iter_mut() {
            let scale = clip / (f.sqrt() + 1e-6);
            *f = if scale < 1.0 {
                clipped += 1;
                scale
            } else {
                1.0
            };
        }
        for (l, d) in deltas.iter_mut().enumerate() {
            for (mut row, f) in d.outer_iter_mut().zip(factors.iter()) {
                if *f < 1.0 {
                    row.mapv_inplace(|v| v * f);
                }
            }
            self.layer_grads(l, trace.input(l), d, grads, false);
        }
        Ok((total, clipped))
    }
}

/// The rows `idx` of `x`, copied into a batch.
pub(crate) fn rows(x: ArrayView2<'_, f32>, idx: &[usize]) -> Array2<f32> {
    x.select(Axis(0), idx)
}

/// Softmax of each row (probabilities from logits).
pub fn softmax(logits: &Array2<f32>) -> Array2<f32> {
    let mut p = logits.clone();
    for mut row in p.outer_iter_mut() {
        let max = row.fold(f32::NEG_INFINITY, |a, b| a.max(*b));
        row.mapv_inplace(|v| (v - max).exp());
        let sum = row.sum();
        row.mapv_inplace(|v| v / sum);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Finite-difference check of backpropagation through every activation and loss.
    #[test]
    fn gradients_match_finite_differences() {
        for act in [
            Activation::Relu,
            Activation::Gelu,
            Activation::Tanh,
            Activation::Sigmoid,
        ] {
            for (loss, outputs) in [
                (Loss::CrossEntropy, 3),
                (Loss::BinaryCrossEntropy, 1),
                (Loss::Mse, 2),
                (Loss::Huber { delta: 0.5 }, 2),
            ] {
                let arch = Architecture::new(4, vec![5, 3], outputs, act);
                let net = Mlp::new(arch.clone(), 3).expect("net");
                let mut rng = Rng::new(9);
                let x = Array2::from_shape_fn((6, 4), |_| (rng.uniform() * 4.0 - 2.0) as f32);
                let classes: Vec<u32> = (0..6)
                    .map(|i| {
                        (i % outputs.max(2)) as u32 % if outputs == 1 { 2 } else { outputs as u32 }
                    })
                    .collect();
                let values =
                    Array2::from_shape_fn((6, outputs), |_| (rng.uniform() * 2.0 - 1.0) as f32);
                let y = match loss {
                    Loss::Mse | Loss::Huber { .. } => Targets::Values(values.view()),
                    _ => Targets::Classes(&classes),
                };
                let mut grads = vec![0.0; arch.parameters()];
                // A smaller batch first, so the checked pass runs in reused, reshaped arrays.
                let mut ws = Workspace::default();
                let mut scratch = vec![0.0; arch.parameters()];
                let first = match y {
                    Targets::Values(_) => {
                        Targets::Values(values.slice_axis(Axis(0), (0..2).into()))
                    }
                    Targets::Classes(c) => Targets::Classes(&c[..2]),
                };
                let all: Vec<usize> = (0..6).collect();
                net.loss_and_grad_rows(
                    &mut ws,
                    x.view(),
                    &all[..2],
                    first,
                    loss,
                    Reduction::Mean,
                    0.0,
                    &mut [],
                    &[],
                    &mut scratch,
                )
                .expect("first batch");
                net.loss_and_grad_rows(
                    &mut ws,
                    x.view(),
                    &all,
                    y,
                    loss,
                    Reduction::Mean,
                    0.0,
                    &mut [],
                    &[],
                    &mut grads,
                )
                .expect("grad");
                let f = |p: &[f32]| -> f64 {
                    let n = Mlp::from_parameters(arch.clone(), p.to_vec()).expect("net");
                    let out = n.forward(x.view()).expect("fwd");
                    f64::from(
                        loss.evaluate(out.view(), y, Reduction::Mean)
                            .expect("loss")
                            .0,
                    )
                };
                assert_matches_finite_differences(
                    net.parameters(),
                    &grads,
                    7,
                    f,
                    &format!("{act:?} {loss:?}"),
                );
            }
        }
    }

    /// Central differences of `f` at every `stride`-th parameter agree with `grads` (2% relative,
    /// 2e-4 absolute).
    fn assert_matches_finite_differences(
        params: &[f32],
        grads: &[f32],
        stride: usize,
        f: impl Fn(&[f32]) -> f64,
        label: &str,
    ) {
        let h = 1e-2f32;
        for k in (0..params.len()).step_by(stride) {
            let mut p = params.to_vec();
            p[k] += h;
            let up = f(&p);
            p[k] -= 2.0 * h;
            let down = f(&p);
            let numeric = (up - down) / (2.0 * f64::from(h));
            let tol = 2e-2 * numeric.abs().max(1e-2);
            assert!(
                (numeric - f64::from(grads[k])).abs() < tol,
                "{label} parameter {k}: numeric {numeric}, backprop {}",
                grads[k]
            );
        }
    }

    /// The input gradient matches central differences of each example's loss, for every
    /// activation and loss.
    #[test]
    fn input_gradients_match_finite_differences() {
        for act in [
            Activation::Relu,
            Activation::Gelu,
            Activation::Tanh,
            Activation::Sigmoid,
        ] {
            let arch = Architecture::new(4, vec![6, 5], 3, act);
            let net = Mlp::new(arch, 3).expect("net");
            let mut rng = Rng::new(9);
            let x = Array2::from_shape_fn((4, 4), |_| (rng.uniform() * 4.0 - 2.0) as f32);
            let classes = [2u32, 0, 1, 2];
            let y = Targets::Classes(&classes);
            let g = net
                .input_gradient(x.view(), y, Loss::CrossEntropy)
                .expect("gradient");
            for (r, class) in classes.iter().enumerate() {
                let row_loss = |v: &[f32]| -> f64 {
                    let xr = Array2::from_shape_vec((1, 4), v.to_vec()).expect("row");
                    let out = net.forward(xr.view()).expect("forward");
                    let t = [*class];
                    let (l, _) = Loss::CrossEntropy
                        .evaluate(out.view(), Targets::Classes(&t), Reduction::Sum)
                        .expect("loss");
                    f64::from(l)
                };
                let row = x.row(r).to_vec();
                let grad = g.row(r).to_vec();
                assert_matches_finite_differences(
                    &row,
                    &grad,
                    1,
                    row_loss,
                    &format!("{act:?} row {r}"),
                );
            }
        }
    }

    /// Backpropagation through dropout: with the masks fixed (the same per-example generators),
    /// the gradients match finite differences for every activation.
    #[test]
    fn gradients_through_dropout_match_finite_differences() {
        for act in [
            Activation::Relu,
            Activation::Gelu,
            Activation::Tanh,
            Activation::Sigmoid,
        ] {
            let arch = Architecture::new(4, vec![6, 5], 3, act);
            let net = Mlp::new(arch.clone(), 8).expect("net");
            let mut rng = Rng::new(2);
            let x = Array2::from_shape_fn((5, 4), |_| (rng.uniform() * 4.0 - 2.0) as f32);
            let classes = [0u32, 2, 1, 1, 0];
            let y = Targets::Classes(&classes);
            let gens: Vec<Rng> = (0..5).map(|i| Rng::new(100 + i)).collect();
            let (out, trace) = net
                .forward_train(x.view(), 0.4, &mut gens.clone())
                .expect("forward");
            let dropped = trace.masks[0]
                .as_ref()
                .expect("mask")
                .iter()
                .filter(|m| **m == 0.0);
            assert!(dropped.count() > 0, "some units dropped");
            let (_, d) = Loss::CrossEntropy
                .evaluate(out.view(), y, Reduction::Mean)
                .expect("loss");
            let mut grads = vec![0.0; arch.parameters()];
            net.backward(&trace, d, &mut grads);
            let f = |p: &[f32]| -> f64 {
                let n = Mlp::from_parameters(arch.clone(), p.to_vec()).expect("net");
                let (out, _) = n
                    .forward_train(x.view(), 0.4, &mut gens.clone())
                    .expect("forward");
                let (l, _) = Loss::CrossEntropy
                    .evaluate(out.view(), y, Reduction::Mean)
                    .expect("loss");
                f64::from(l)
            };
            assert_matches_finite_differences(net.parameters(), &grads, 3, f, &format!("{act:?}"));
        }
    }

    /// DP-SGD's clipped sum equals clipping each example's own gradient (computed alone) and
    /// adding them up, for every activation, with and without dropout.
    #[test]
    fn clipped_gradients_equal_per_example_clipping() {
        for act in [
            Activation::Relu,
            Activation::Gelu,
            Activation::Tanh,
            Activation::Sigmoid,
        ] {
            for dropout in [0.0, 0.3] {
                let arch = Architecture::new(5, vec![7, 4], 3, act);
                let net = Mlp::new(arch.clone(), 4).expect("net");
                let mut rng = Rng::new(6);
                let x = Array2::from_shape_fn((9, 5), |_| (rng.uniform() * 6.0 - 3.0) as f32);
                let classes: Vec<u32> = (0..9).map(|i| (i * 5 % 3) as u32).collect();
                let idx = [7usize, 1, 4, 0, 8, 3];
                let y: Vec<u32> = idx.iter().map(|i| classes[*i]).collect();
                let gens: Vec<Rng> = idx.iter().map(|i| Rng::new(50 + *i as u64)).collect();
                let p = arch.parameters();
                // A clip norm between the examples' norms, so some are clipped and some not.
                let mut ws = Workspace::default();
                let mut norms = Vec::new();
                let mut expected = vec![0.0f64; p];
                let mut each = Vec::new();
                for (k, i) in idx.iter().enumerate() {
                    let mut g = vec![0.0; p];
                    net.loss_and_grad_rows(
                        &mut ws,
                        x.view(),
                        &[*i],
                        Targets::Classes(&y[k..k + 1]),
                        Loss::CrossEntropy,
                        Reduction::Sum,
                        dropout,
                        &mut gens[k..k + 1].to_vec(),
                        &[],
                        &mut g,
                    )
                    .expect("one example");
                    norms.push(g.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>().sqrt());
                    each.push(g);
                }
                let mut sorted = norms.clone();
                sorted.sort_by(f64::total_cmp);
                let clip = 0.5 * (sorted[2] + sorted[3]);
                for (g, n) in each.iter().zip(&norms) {
                    let f = (clip / (n + 1e-6)).min(1.0);
                    for (e, v) in expected.iter_mut().zip(g) {
                        *e += f64::from(*v) * f;
                    }
                }
                let mut got = vec![1.0; p];
                let (_, clipped) = net
                    .clipped_grad_rows(
                        &mut ws,
                        x.view(),
                        &idx,
                        Targets::Classes(&y),
                        Loss::CrossEntropy,
                        dropout,
                        &mut gens.clone(),
                        &[],
                        clip as f32,
                        &mut got,
                    )
                    .expect("clipped");
                assert_eq!(
                    clipped, 3,
                    "{act:?} dropout {dropout}: norms {norms:?}, clip {clip}"
                );
                for (k, (e, g)) in expected.iter().zip(&got).enumerate() {
                    assert!(
                        (e - f64::from(*g)).abs() < 1e-4 * (1.0 + e.abs()),
                        "{act:?} dropout {dropout} parameter {k}: {e} against {g}"
                    );
                }
            }
        }
    }

    #[test]
    fn shapes_and_targets_are_checked() {
        let net = Mlp::new(Architecture::new(2, vec![], 3, Activation::Relu), 1).expect("net");
        assert!(net.forward(Array2::zeros((1, 5)).view()).is_err());
        let out = Array2::zeros((2, 3));
        assert!(
            Loss::CrossEntropy
                .evaluate(out.view(), Targets::Classes(&[0, 3]), Reduction::Mean)
                .is_err()
        );
        assert!(
            Loss::Mse
                .evaluate(out.view(), Targets::Classes(&[0, 1]), Reduction::Mean)
                .is_err()
        );
        assert!(Mlp::new(Architecture::new(2, vec![0], 3, Activation::Relu), 1).is_err());
        assert!(
            Mlp::from_parameters(
                Architecture::new(2, vec![], 1, Activation::Relu),
                vec![0.0; 2]
            )
            .is_err()
        );
    }
}
