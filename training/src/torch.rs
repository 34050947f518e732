//! The libtorch backend (feature `tch`): forward and backward passes in libtorch through the
//! `tch` crate, on the CPU or a CUDA device.
//!
//! [`TchTrainer`] shares everything but the gradient computation with [`NdarrayTrainer`]: the
//! same initial weights, shuffling, dropout masks, optimizers, schedules, early stopping,
//! checkpoints and observers, and it returns the same [`MlpModel`] (saved in the same files,
//! predicting without libtorch). Given the same data and config, the two backends agree up to the
//! order of float additions (checked to 1e-5 by the tests).
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
use crate::rng::Rng;
use crate::trainer::{Engine, Owned, StepInput, example_rng, fit_with};
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
        fit_with(&mut engine, train, valid, config, None, observer)
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

impl Engine for TchEngine {
    fn prepare(&mut self, x: &Array2<f32>, y: &Owned, _: &Architecture) -> Result<()> {
        self.x = Some(to_tensor(x.view(), self.device)?);
        self.y = Some(match y {
            Owned::Classes(c) => {
                let l: Vec<i64> = c.iter().map(|v| i64::from(*v)).collect();
                DeviceTargets::Classes(
                    Tensor::f_from_slice(&l)
                        .map_err(torch_err)?
                        .to_device(self.device),
                )
            }
            Owned::Values(v) => DeviceTargets::Floats(to_tensor(v.view(), self.device)?),
        });
        Ok(())
    }

    fn train_step(
        &mut self,
        net: &mut Mlp,
        opt: &mut Optimizer,
        b: &StepInput,
    ) -> Result<(f64, bool)> {
        let (l, mut grads) = self.gradient(net, b.y, b.batch, b.loss, b.config, b.root, b.epoch)?;
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
    /// The batch's loss and gradient (the ndarray backend's layout), computed by libtorch.
    #[allow(clippy::too_many_arguments)]
    fn gradient(
        &mut self,
        net: &Mlp,
        y: &Owned,
        batch: &[usize],
        loss: Loss,
        config: &TrainConfig,
        root: &Rng,
        epoch: usize,
    ) -> Result<(f64, Vec<f32>)> {
        let (Some(x), Some(yt)) = (&self.x, &self.y) else {
            return Err(Error::invalid("tch engine", "used before prepare"));
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
            let mut rngs: Vec<Rng> = batch.iter().map(|i| example_rng(root, epoch, *i)).collect();
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
        for (l, (w, b)) in leaves.iter().enumerate() {
            let z = b.f_addmm(&a, w).map_err(torch_err)?;
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
