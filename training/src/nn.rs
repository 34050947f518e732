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
    fn apply(self, z: f32) -> f32 {
        match self {
            Activation::Relu => z.max(0.0),
            Activation::Gelu => 0.5 * z * (1.0 + libm::erff(z / std::f32::consts::SQRT_2)),
            Activation::Tanh => z.tanh(),
            Activation::Sigmoid => sigmoid(z),
        }
    }

    /// act(z) of every element (the match outside the loop, so each loop vectorizes).
    fn map(self, z: &Array2<f32>) -> Array2<f32> {
        match self {
            Activation::Relu => z.mapv(|v| Activation::Relu.apply(v)),
            Activation::Gelu => z.mapv(|v| Activation::Gelu.apply(v)),
            Activation::Tanh => z.mapv(|v| Activation::Tanh.apply(v)),
            Activation::Sigmoid => z.mapv(|v| Activation::Sigmoid.apply(v)),
        }
    }

    /// Multiplies each gradient by act'(z) (with `a` = act(z)), one loop per activation.
    fn backprop(self, g: &mut Array2<f32>, z: &Array2<f32>, a: &Array2<f32>) {
        // Contiguous arrays (the usual case): plain slice loops, which vectorize.
        if let (Some(gs), Some(zs), Some(as_)) = (g.as_slice_mut(), z.as_slice(), a.as_slice()) {
            match self {
                Activation::Relu => {
                    for (g, z) in gs.iter_mut().zip(zs) {
                        *g *= if *z > 0.0 { 1.0 } else { 0.0 };
                    }
                }
                Activation::Tanh => {
                    for (g, a) in gs.iter_mut().zip(as_) {
                        *g *= 1.0 - a * a;
                    }
                }
                Activation::Sigmoid => {
                    for (g, a) in gs.iter_mut().zip(as_) {
                        *g *= a * (1.0 - a);
                    }
                }
                Activation::Gelu => {
                    for ((g, z), a) in gs.iter_mut().zip(zs).zip(as_) {
                        *g *= Activation::Gelu.derivative(*z, *a);
                    }
                }
            }
            return;
        }
        let zip = ndarray::Zip::from(g).and(z).and(a);
        match self {
            Activation::Relu => {
                zip.for_each(|g, &z, &a| *g *= Activation::Relu.derivative(z, a));
            }
            Activation::Gelu => {
                zip.for_each(|g, &z, &a| *g *= Activation::Gelu.derivative(z, a));
            }
            Activation::Tanh => {
                zip.for_each(|g, &z, &a| *g *= Activation::Tanh.derivative(z, a));
            }
            Activation::Sigmoid => {
                zip.for_each(|g, &z, &a| *g *= Activation::Sigmoid.derivative(z, a));
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
    let (n, o) = (x.nrows(), w.ncols());
    let bias: Vec<f32> = b.to_vec();
    let mut data = Vec::with_capacity(n * o);
    for _ in 0..n {
        data.extend_from_slice(&bias);
    }
    let mut z =
        Array2::from_shape_vec((n, o), data).unwrap_or_else(|_| unreachable!("n rows of o values"));
    ndarray::linalg::general_mat_mul(1.0, &x, &w, 1.0, &mut z);
    z
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
#[derive(Debug)]
pub struct Trace {
    /// Input, then each hidden activation (after dropout).
    acts: Vec<Array2<f32>>,
    /// Pre-activations of the hidden layers.
    pre: Vec<Array2<f32>>,
    /// Dropout scaling per hidden layer (0 for dropped units), if used.
    masks: Vec<Option<Array2<f32>>>,
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
        let layers = self.arch.layers().len();
        let mut acts = vec![x.to_owned()];
        let mut pre = Vec::new();
        let mut masks = Vec::new();
        let mut out = Array2::zeros((0, 0));
        for l in 0..layers {
            let (w, b) = self.layer(&self.params, l);
            let z = affine(acts[l].view(), w, b);
            if l + 1 < layers {
                let mut a = self.arch.activation.map(&z);
                let mask = if dropout > 0.0 {
                    if rngs.len() != a.nrows() {
                        return Err(Error::invalid(
                            "dropout",
                            format!("{} generators for {} rows", rngs.len(), a.nrows()),
                        ));
                    }
                    let keep = 1.0 / (1.0 - dropout);
                    let mut m = Array2::zeros(a.dim());
                    for (mut row, rng) in m.outer_iter_mut().zip(rngs.iter_mut()) {
                        for v in row.iter_mut() {
                            *v = if rng.uniform() < f64::from(dropout) {
                                0.0
                            } else {
                                keep
                            };
                        }
                    }
                    a *= &m;
                    Some(m)
                } else {
                    None
                };
                pre.push(z);
                masks.push(mask);
                acts.push(a);
            } else {
                out = z;
            }
        }
        Ok((out, Trace { acts, pre, masks }))
    }

    /// Gradients of the loss with respect to every parameter, given d loss / d outputs, added
    /// into `grads` (same layout as the parameters).
    pub fn backward(&self, trace: &Trace, d_out: Array2<f32>, grads: &mut [f32]) {
        let layers = self.arch.layers();
        let mut delta = d_out;
        for l in (0..layers.len()).rev() {
            let (i, o) = layers[l];
            let off = self.offsets[l];
            let a_prev = &trace.acts[l];
            // dW += a_prevᵀ · δ, straight into the gradient's slice.
            let mut dw = ndarray::ArrayViewMut2::from_shape((i, o), &mut grads[off..off + i * o])
                .unwrap_or_else(|_| unreachable!("offsets follow the architecture"));
            ndarray::linalg::general_mat_mul(1.0, &a_prev.t(), &delta, 1.0, &mut dw);
            let db = delta.sum_axis(Axis(0));
            for (g, d) in grads[off + i * o..off + i * o + o]
                .iter_mut()
                .zip(db.iter())
            {
                *g += d;
            }
            if l > 0 {
                let (w, _) = self.layer(&self.params, l);
                // δ · Wᵀ into a row-major array, so the loops below run over contiguous slices.
                let mut back = Array2::<f32>::zeros((delta.nrows(), i));
                ndarray::linalg::general_mat_mul(1.0, &delta, &w.t(), 0.0, &mut back);
                let act = self.arch.activation;
                let z = &trace.pre[l - 1];
                let a = &trace.acts[l];
                match &trace.masks[l - 1] {
                    Some(m) => {
                        // a = act(z) · m: d a / d z = act'(z) · m (act(z) = a / m where kept).
                        ndarray::Zip::from(&mut back)
                            .and(z)
                            .and(m)
                            .for_each(|g, &z, &m| {
                                *g *= act.derivative(z, act.apply(z)) * m;
                            });
                    }
                    None => act.backprop(&mut back, z, a),
                }
                delta = back;
            }
        }
    }

    /// Loss and gradients over one batch (rows of `x`), summed into `grads`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn loss_and_grad(
        &self,
        x: ArrayView2<f32>,
        y: Targets,
        loss: Loss,
        reduction: Reduction,
        dropout: f32,
        rngs: &mut [Rng],
        grads: &mut [f32],
    ) -> Result<f32> {
        let (out, trace) = self.forward_train(x, dropout, rngs)?;
        let (l, d) = loss.evaluate(out.view(), y, reduction)?;
        self.backward(&trace, d, grads);
        Ok(l)
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
                net.loss_and_grad(x.view(), y, loss, Reduction::Mean, 0.0, &mut [], &mut grads)
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
                for k in (0..arch.parameters()).step_by(7) {
                    let mut p = net.parameters().to_vec();
                    let h = 1e-2f32;
                    p[k] += h;
                    let up = f(&p);
                    p[k] -= 2.0 * h;
                    let down = f(&p);
                    let numeric = (up - down) / (2.0 * f64::from(h));
                    let tol = 2e-2 * numeric.abs().max(1e-2);
                    assert!(
                        (numeric - f64::from(grads[k])).abs() < tol,
                        "{act:?} {loss:?} parameter {k}: numeric {numeric}, backprop {}",
                        grads[k]
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
