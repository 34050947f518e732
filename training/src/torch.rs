//! The libtorch backend (feature `tch`): forward and backward passes in libtorch through the
//! `tch` crate, on the CPU or a CUDA device.
//!
//! [`TchTrainer`] shares everything but the gradient computation with [`NdarrayTrainer`]: the
//! same initial weights, shuffling, dropout masks, optimizers, schedules, early stopping,
//! checkpoints and observers, and it returns the same [`MlpModel`] (saved in the same files,
//! predicting without libtorch). Given the same data and config, the two backends agree up to the
//! order of float additions (checked to 1e-5 by the tests). DP-SGD runs here too: per-example
//! gradient norms from the layers' inputs and libtorch's gradients with respect to each layer's
//! pre-activations (‖aᵢ ⊗ δᵢ‖² = ‖aᵢ‖²‖δᵢ‖², the ndarray backend's "ghost" norms), the clipped
//! sum as one product per layer, and the same noise sequence.
//!
//! Linking needs libtorch 2.13 (PyTorch 2.13.0's: build with `LIBTORCH_USE_PYTORCH=1` and that
//! Python first on `PATH`), and at run time its `lib/` on `LD_LIBRARY_PATH`; see DEVELOPERS.md.
//!
//! [`NdarrayTrainer`]: crate::NdarrayTrainer

use std::path::Path;

use ndarray::{Array2, ArrayView2};
use tch::{Device, Kind, Tensor};

use crate::nn::{Activation, Architecture, Loss, Mlp, Reduction};
use crate::optim::Optimizer;
use crate::privacy::gaussian;
use crate::rng::Rng;
use crate::trainer::{DpStep, Engine, Owned, StepInput, example_rng, fit_with};
use crate::{Error, Fitted, History, MlpModel, Model, Observer, Result, TrainConfig, Trainer};

fn torch_err(e: tch::TchError) -> Error {
    Error::Backend {
        backend: "tch".into(),
        reason: e.to_string(),
    }
}

/// Trains MLPs with libtorch.
#[derive(Debug, Clone, Copy)]
pub struct TchTrainer {
    device: Device,
}

impl Default for TchTrainer {
    /// The first CUDA device if there is one, else the CPU.
    fn default() -> Self {
        Self {
            device: Device::cuda_if_available(),
        }
    }
}

impl TchTrainer {
    /// On the CPU.
    pub fn cpu() -> Self {
        Self {
            device: Device::Cpu,
        }
    }

    /// The first CUDA device if there is one, else the CPU.
    pub fn cuda_if_available() -> Self {
        Self::default()
    }

    /// Whether it runs on a CUDA device.
    pub fn is_cuda(&self) -> bool {
        self.device.is_cuda()
    }

    /// Trains and returns the concrete model (the trait's `fit` boxes it). `config.threads` sets
    /// libtorch's intra-op threads (a process-wide setting).
    pub fn fit_mlp(
        &self,
        train: &crate::data::Dataset,
        valid: Option<&crate::data::Dataset>,
        config: &TrainConfig,
        observer: &mut dyn Observer,
    ) -> Result<(MlpModel, History)> {
        self.fit_mlp_with(train, valid, config, None, observer)
    }

    /// [`TchTrainer::fit_mlp`] with a privacy accountant for DP-SGD (`config.dp`), as
    /// [`crate::NdarrayTrainer::fit_mlp_with`].
    pub fn fit_mlp_with(
        &self,
        train: &crate::data::Dataset,
        valid: Option<&crate::data::Dataset>,
        config: &TrainConfig,
        accountant: Option<&dyn crate::PrivacyAccountant>,
        observer: &mut dyn Observer,
    ) -> Result<(MlpModel, History)> {
        config.validate()?;
        tch::set_num_threads(i32::try_from(config.threads).unwrap_or(i32::MAX));
        // The optimizer's element-wise update runs on the same number of threads (libtorch's
        // are idle then), as PyTorch's multi-tensor optimizers do.
        let pool = if config.threads > 1 {
            Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(config.threads)
                    .build()
                    .map_err(|e| Error::invalid("threads", e.to_string()))?,
            )
        } else {
            None
        };
        let mut engine = TchEngine {
            device: self.device,
            x: None,
            y: None,
            pool,
        };
        fit_with(&mut engine, train, valid, config, accountant, observer)
    }
}

impl Trainer for TchTrainer {
    fn name(&self) -> &str {
        "tch"
    }

    fn fit(
        &self,
        train: &crate::data::Dataset,
        valid: Option<&crate::data::Dataset>,
        config: &TrainConfig,
        observer: &mut dyn Observer,
    ) -> Result<Fitted> {
        let (model, history) = self.fit_mlp(train, valid, config, observer)?;
        Ok(Fitted {
            model: Box::new(model),
            history,
        })
    }

    fn load(&self, dir: &Path) -> Result<Box<dyn Model>> {
        Ok(Box::new(MlpModel::load(dir)?))
    }
}

/// The training data on the device.
enum DeviceTargets {
    /// Class indices (int64), for cross-entropy.
    Classes(Tensor),
    /// Float targets (rows × outputs): values, or 0/1 for binary cross-entropy.
    Floats(Tensor),
}

struct TchEngine {
    device: Device,
    x: Option<Tensor>,
    y: Option<DeviceTargets>,
    /// Threads for the optimizer update (none: one thread).
    pool: Option<rayon::ThreadPool>,
}

fn to_tensor(a: ArrayView2<f32>, device: Device) -> Result<Tensor> {
    let (r, c) = a.dim();
    let data: Vec<f32> = a.iter().copied().collect();
    Ok(Tensor::f_from_slice(&data)
        .map_err(torch_err)?
        .f_reshape([r as i64, c as i64])
        .map_err(torch_err)?
        .to_device(device))
}

/// Targets on the device: class indices (int64) or float rows.
fn targets(y: &Owned, device: Device) -> Result<DeviceTargets> {
    Ok(match y {
        Owned::Classes(c) => {
            let l: Vec<i64> = c.iter().map(|v| i64::from(*v)).collect();
            DeviceTargets::Classes(
                Tensor::f_from_slice(&l)
                    .map_err(torch_err)?
                    .to_device(device),
            )
        }
        Owned::Values(v) => DeviceTargets::Floats(to_tensor(v.view(), device)?),
    })
}

impl Engine for TchEngine {
    fn prepare(&mut self, x: &Array2<f32>, y: &Owned, _: &Architecture) -> Result<()> {
        self.x = Some(to_tensor(x.view(), self.device)?);
        self.y = Some(targets(y, self.device)?);
        Ok(())
    }

    fn supports_dp(&self) -> bool {
        true
    }

    /// Adversarial training's perturbed rows arrive with each step (`StepInput::ids`).
    fn reads_step_rows(&self) -> bool {
        true
    }

    fn train_step(
        &mut self,
        net: &mut Mlp,
        opt: &mut Optimizer,
        b: &StepInput,
    ) -> Result<(f64, bool)> {
        let (mut l, mut grads) = self.gradient(net, b)?;
        if let Some(dp) = b.dp {
            // As the ndarray backend: (Σ clipped + σ·C·N(0, 1)) / (q · examples), the noise drawn
            // in parameter order from the step's generator; the loss is the batch mean.
            let mut rng = dp.noise.clone();
            let sd = f64::from(dp.sigma) * f64::from(dp.clip);
            let denom = match b.config.reduction {
                Reduction::Sum => 1.0,
                Reduction::Mean => {
                    l /= b.batch.len().max(1) as f64;
                    dp.expected_batch
                }
            };
            for g in &mut grads {
                *g = (*g + (sd * gaussian(&mut rng)) as f32) / denom;
            }
        }
        let finite = l.is_finite() && grads.iter().all(|g| g.is_finite());
        if finite {
            match &self.pool {
                Some(pool) => opt.step_parallel(net.parameters_mut(), &mut grads, b.lr, pool),
                None => opt.step(net.parameters_mut(), &mut grads, b.lr),
            }
        }
        Ok((l, finite))
    }
}

impl TchEngine {
    /// The batch's loss and gradient (the ndarray backend's layout), computed by libtorch. With
    /// `b.dp`: the summed loss and the sum of the per-example gradients, each clipped to
    /// `dp.clip` (no noise yet). With `b.ids` (adversarial training) the rows and targets are
    /// the step's own, `b.x` and `b.y`, sent to the device for this step.
    fn gradient(&mut self, net: &Mlp, b: &StepInput) -> Result<(f64, Vec<f32>)> {
        let StepInput {
            y,
            batch,
            loss,
            config,
            root,
            epoch,
            dp,
            ids,
            ..
        } = *b;
        if dp.is_some() && batch.is_empty() {
            // A Poisson-sampled batch may be empty: no loss, a zero sum.
            return Ok((0.0, vec![0.0; net.parameters().len()]));
        }
        let step_rows;
        let (x, yt) = match ids {
            Some(_) => {
                step_rows = (to_tensor(b.x, self.device)?, targets(y, self.device)?);
                (&step_rows.0, &step_rows.1)
            }
            None => match (&self.x, &self.y) {
                (Some(x), Some(yt)) => (x, yt),
                _ => return Err(Error::invalid("tch engine", "used before prepare")),
            },
        };
        let dev = self.device;
        let idx: Vec<i64> = batch.iter().map(|i| *i as i64).collect();
        let idx = Tensor::f_from_slice(&idx)
            .map_err(torch_err)?
            .to_device(dev);
        let xb = x.f_index_select(0, &idx).map_err(torch_err)?;
        let arch = net.architecture();
        let layers = arch.layers();
        // Dropout masks exactly as the ndarray backend draws them: per example, layer by layer.
        let masks: Vec<Option<Tensor>> = if config.dropout > 0.0 {
            let mut rngs: Vec<Rng> = batch
                .iter()
                .map(|i| example_rng(root, epoch, ids.map_or(*i, |ids| ids[*i])))
                .collect();
            let keep = 1.0 / (1.0 - config.dropout);
            let mut per_layer: Vec<Vec<f32>> = arch
                .hidden
                .iter()
                .map(|w| Vec::with_capacity(w * batch.len()))
                .collect();
            // forward_train draws layer by layer, each row from its own generator.
            for (l, w) in arch.hidden.iter().enumerate() {
                for rng in rngs.iter_mut() {
                    for _ in 0..*w {
                        per_layer[l].push(if rng.uniform() < f64::from(config.dropout) {
                            0.0
                        } else {
                            keep
                        });
                    }
                }
            }
            per_layer
                .iter()
                .zip(&arch.hidden)
                .map(|(m, w)| {
                    Ok(Some(
                        Tensor::f_from_slice(m)
                            .map_err(torch_err)?
                            .f_reshape([batch.len() as i64, *w as i64])
                            .map_err(torch_err)?
                            .to_device(dev),
                    ))
                })
                .collect::<Result<_>>()?
        } else {
            arch.hidden.iter().map(|_| None).collect()
        };
        // Parameters as fresh leaves: weights (inputs × outputs) and biases, as laid out flat.
        let params = net.parameters();
        let mut leaves: Vec<(Tensor, Tensor)> = Vec::with_capacity(layers.len());
        let mut off = 0usize;
        for (i, o) in &layers {
            let w = Tensor::f_from_slice(&params[off..off + i * o])
                .map_err(torch_err)?
                .f_reshape([*i as i64, *o as i64])
                .map_err(torch_err)?
                .to_device(dev)
                .f_set_requires_grad(true)
                .map_err(torch_err)?;
            let b = Tensor::f_from_slice(&params[off + i * o..off + i * o + o])
                .map_err(torch_err)?
                .to_device(dev)
                .f_set_requires_grad(true)
                .map_err(torch_err)?;
            leaves.push((w, b));
            off += i * o + o;
        }
        let mut a = xb;
        // Each layer's input and pre-activation, for DP-SGD's per-example norms.
        let mut inputs: Vec<Tensor> = Vec::new();
        let mut pre: Vec<Tensor> = Vec::new();
        for (l, (w, b)) in leaves.iter().enumerate() {
            let z = b.f_addmm(&a, w).map_err(torch_err)?;
            if dp.is_some() {
                inputs.push(a.shallow_clone());
                pre.push(z.shallow_clone());
            }
            if l + 1 < leaves.len() {
                let act = match arch.activation {
                    Activation::Relu => z.f_relu(),
                    Activation::Gelu => z.f_gelu("none"),
                    Activation::Tanh => z.f_tanh(),
                    Activation::Sigmoid => z.f_sigmoid(),
                }
                .map_err(torch_err)?;
                a = match &masks[l] {
                    Some(m) => act.f_mul(m).map_err(torch_err)?,
                    None => act,
                };
            } else {
                a = z;
            }
        }
        let out = a;
        let sum = match (loss, yt) {
            (Loss::CrossEntropy, DeviceTargets::Classes(c)) => {
                let yb = c
                    .f_index_select(0, &idx)
                    .map_err(torch_err)?
                    .f_unsqueeze(1)
                    .map_err(torch_err)?;
                out.f_log_softmax(1, Kind::Float)
                    .map_err(torch_err)?
                    .f_gather(1, &yb, false)
                    .map_err(torch_err)?
                    .f_sum(Kind::Float)
                    .map_err(torch_err)?
                    .f_neg()
                    .map_err(torch_err)?
            }
            (Loss::BinaryCrossEntropy, DeviceTargets::Classes(c)) => {
                let yb = c
                    .f_index_select(0, &idx)
                    .map_err(torch_err)?
                    .f_unsqueeze(1)
                    .map_err(torch_err)?
                    .f_to_kind(Kind::Float)
                    .map_err(torch_err)?;
                // max(z, 0) − z·y + log(1 + e^−|z|), as the ndarray backend.
                let soft = out
                    .f_abs()
                    .map_err(torch_err)?
                    .f_neg()
                    .map_err(torch_err)?
                    .f_exp()
                    .map_err(torch_err)?
                    .f_log1p()
                    .map_err(torch_err)?;
                out.f_clamp_min(0.0)
                    .map_err(torch_err)?
                    .f_sub(&out.f_mul(&yb).map_err(torch_err)?)
                    .map_err(torch_err)?
                    .f_add(&soft)
                    .map_err(torch_err)?
                    .f_sum(Kind::Float)
                    .map_err(torch_err)?
            }
            (Loss::Mse, DeviceTargets::Floats(v)) => {
                let yb = v.f_index_select(0, &idx).map_err(torch_err)?;
                out.f_sub(&yb)
                    .map_err(torch_err)?
                    .f_square()
                    .map_err(torch_err)?
                    .f_sum(Kind::Float)
                    .map_err(torch_err)?
            }
            (Loss::Huber { delta }, DeviceTargets::Floats(v)) => {
                let yb = v.f_index_select(0, &idx).map_err(torch_err)?;
                out.f_huber_loss(&yb, tch::Reduction::Sum, f64::from(delta))
                    .map_err(torch_err)?
            }
            (loss, _) => {
                return Err(Error::invalid(
                    format!("loss {loss:?}"),
                    "does not fit the kind of target (classes or values)",
                ));
            }
        };
        if let Some(dp) = dp {
            return clipped_sum(&sum, &inputs, &pre, dp, params.len());
        }
        let total = if config.reduction == Reduction::Mean {
            let denom = match (loss, y) {
                (Loss::Mse | Loss::Huber { .. }, Owned::Values(v)) => batch.len() * v.ncols(),
                _ => batch.len(),
            };
            sum.f_div_scalar(denom as f64).map_err(torch_err)?
        } else {
            sum
        };
        total.f_backward().map_err(torch_err)?;
        let l = total.f_double_value(&[]).map_err(torch_err)?;
        let mut grads = vec![0.0f32; params.len()];
        let mut off = 0usize;
        for ((i, o), (w, b)) in layers.iter().zip(&leaves) {
            let gw = w.f_grad().map_err(torch_err)?.to_device(Device::Cpu);
            gw.f_copy_data(&mut grads[off..off + i * o], i * o)
                .map_err(torch_err)?;
            let gb = b.f_grad().map_err(torch_err)?.to_device(Device::Cpu);
            gb.f_copy_data(&mut grads[off + i * o..off + i * o + o], *o)
                .map_err(torch_err)?;
            off += i * o + o;
        }
        Ok((l, grads))
    }
}

/// DP-SGD's part of [`TchEngine::gradient`]: from the summed loss `sum`, each layer's `inputs`
/// and pre-activations `pre`, the per-example gradient norms (‖gᵢ‖² = Σ_l (‖a_l,ᵢ‖² + 1)·‖δ_l,ᵢ‖²,
/// the 1 for the bias), the clipping factors min(1, C / (‖gᵢ‖ + 10⁻⁶)) and Σᵢ factorᵢ·gᵢ
/// (per layer aᵀ·(factor ⊙ δ) and Σ factor ⊙ δ), in the flat layout.
fn clipped_sum(
    sum: &Tensor,
    inputs: &[Tensor],
    pre: &[Tensor],
    dp: &DpStep,
    params: usize,
) -> Result<(f64, Vec<f32>)> {
    let deltas = Tensor::f_run_backward(&[sum], pre, false, false).map_err(torch_err)?;
    let row_sq = |t: &Tensor| -> Result<Tensor> {
        t.f_square()
            .map_err(torch_err)?
            .f_sum_dim_intlist(1, false, Kind::Float)
            .map_err(torch_err)
    };
    let mut norm_sq: Option<Tensor> = None;
    for (a, d) in inputs.iter().zip(&deltas) {
        let term = row_sq(a)?
            .f_add_scalar(1.0)
            .map_err(torch_err)?
            .f_mul(&row_sq(d)?)
            .map_err(torch_err)?;
        norm_sq = Some(match norm_sq {
            Some(n) => n.f_add(&term).map_err(torch_err)?,
            None => term,
        });
    }
    let norm_sq =
        norm_sq.ok_or_else(|| Error::invalid("tch engine", "a network without layers"))?;
    let scale = norm_sq
        .f_sqrt()
        .map_err(torch_err)?
        .f_add_scalar(1e-6)
        .map_err(torch_err)?
        .f_reciprocal()
        .map_err(torch_err)?
        .f_mul_scalar(f64::from(dp.clip))
        .map_err(torch_err)?;
    let clipped = scale
        .f_lt(1.0)
        .map_err(torch_err)?
        .f_sum(Kind::Int64)
        .map_err(torch_err)?
        .f_int64_value(&[])
        .map_err(torch_err)?;
    dp.clipped.fetch_add(
        u64::try_from(clipped).unwrap_or(0),
        std::sync::atomic::Ordering::Relaxed,
    );
    let factor = scale
        .f_clamp_max(1.0)
        .map_err(torch_err)?
        .f_unsqueeze(1)
        .map_err(torch_err)?;
    let mut grads = vec![0.0f32; params];
    let mut off = 0usize;
    for (a, d) in inputs.iter().zip(&deltas) {
        let d = d.f_mul(&factor).map_err(torch_err)?;
        let gw = a
            .f_tr()
            .map_err(torch_err)?
            .f_matmul(&d)
            .map_err(torch_err)?
            .f_contiguous()
            .map_err(torch_err)?
            .to_device(Device::Cpu);
        let gb = d
            .f_sum_dim_intlist(0, false, Kind::Float)
            .map_err(torch_err)?
            .to_device(Device::Cpu);
        let (wn, bn) = (gw.numel(), gb.numel());
        gw.f_copy_data(&mut grads[off..off + wn], wn)
            .map_err(torch_err)?;
        gb.f_copy_data(&mut grads[off + wn..off + wn + bn], bn)
            .map_err(torch_err)?;
        off += wn + bn;
    }
    let l = sum.f_double_value(&[]).map_err(torch_err)?;
    Ok((l, grads))
}
