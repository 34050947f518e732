//! Optimizers over flat parameter slices, with PyTorch's update rules; learning-rate schedules;
//! gradient clipping; L1 regularization and weight decay.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The update rule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum OptimizerKind {
    /// Plain SGD.
    Sgd,
    /// SGD with momentum (heavy ball, or Nesterov).
    Momentum {
        /// μ.
        momentum: f32,
        /// Nesterov's variant.
        nesterov: bool,
    },
    /// Adam (Kingma & Ba), weight decay as L2 in the gradient.
    Adam {
        /// β₁.
        beta1: f32,
        /// β₂.
        beta2: f32,
        /// ε.
        eps: f32,
    },
    /// AdamW (Loshchilov & Hutter): decoupled weight decay.
    AdamW {
        /// β₁.
        beta1: f32,
        /// β₂.
        beta2: f32,
        /// ε.
        eps: f32,
    },
    /// Adagrad.
    Adagrad {
        /// ε.
        eps: f32,
    },
    /// RMSprop.
    RmsProp {
        /// Smoothing constant α.
        alpha: f32,
        /// ε.
        eps: f32,
    },
}

impl OptimizerKind {
    /// `sgd`, `momentum`, `nesterov`, `adam`, `adamw`, `adagrad` or `rmsprop`, with PyTorch's
    /// default constants.
    pub fn from_name(name: &str) -> crate::Result<Self> {
        Ok(match name {
            "sgd" => OptimizerKind::Sgd,
            "momentum" => OptimizerKind::momentum(false),
            "nesterov" => OptimizerKind::momentum(true),
            "adam" => OptimizerKind::adam(),
            "adamw" => OptimizerKind::adamw(),
            "adagrad" => OptimizerKind::adagrad(),
            "rmsprop" => OptimizerKind::rmsprop(),
            other => {
                return Err(crate::Error::invalid(
                    "optimizer",
                    format!(
                        "must be sgd, momentum, nesterov, adam, adamw, adagrad or rmsprop, not `{other}`"
                    ),
                ));
            }
        })
    }

    /// Adam with PyTorch's defaults (0.9, 0.999, 1e-8).
    pub fn adam() -> Self {
        OptimizerKind::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }

    /// AdamW with PyTorch's defaults.
    pub fn adamw() -> Self {
        OptimizerKind::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }

    /// Momentum 0.9.
    pub fn momentum(nesterov: bool) -> Self {
        OptimizerKind::Momentum {
            momentum: 0.9,
            nesterov,
        }
    }

    /// Adagrad with PyTorch's ε (1e-10).
    pub fn adagrad() -> Self {
        OptimizerKind::Adagrad { eps: 1e-10 }
    }

    /// RMSprop with PyTorch's defaults (α 0.99, ε 1e-8).
    pub fn rmsprop() -> Self {
        OptimizerKind::RmsProp {
            alpha: 0.99,
            eps: 1e-8,
        }
    }
}

/// How the learning rate changes.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Schedule {
    /// Constant.
    #[default]
    Constant,
    /// Multiplied by `gamma` every `every` epochs (PyTorch's StepLR).
    Step {
        /// Epochs between decays.
        every: usize,
        /// Factor.
        gamma: f32,
    },
    /// Cosine annealing from the base rate to `min_lr` over `epochs` (PyTorch's
    /// CosineAnnealingLR without restarts).
    Cosine {
        /// Epochs to anneal over.
        epochs: usize,
        /// Final rate.
        min_lr: f32,
    },
}

/// An optimizer's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct OptimizerConfig {
    /// The rule.
    pub kind: OptimizerKind,
    /// Base learning rate.
    pub lr: f32,
    /// Weight decay (L2 in the gradient; decoupled for AdamW).
    pub weight_decay: f32,
    /// L1 regularization strength (its subgradient is added to the gradient).
    pub l1: f32,
    /// Clip the gradient's global L2 norm to this.
    pub clip_norm: Option<f32>,
    /// Learning-rate schedule (per epoch).
    pub schedule: Schedule,
    /// Linear warm-up over this many steps from 0 to the scheduled rate.
    pub warmup_steps: u64,
}

impl OptimizerConfig {
    /// `kind` at learning rate `lr`, nothing else.
    pub fn new(kind: OptimizerKind, lr: f32) -> Self {
        Self {
            kind,
            lr,
            weight_decay: 0.0,
            l1: 0.0,
            clip_norm: None,
            schedule: Schedule::Constant,
            warmup_steps: 0,
        }
    }

    /// Checks every number is in range.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str, why: String| Err(Error::invalid(format!("optimizer {what}"), why));
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("learning rate", format!("{} must be > 0", self.lr));
        }
        if !(self.weight_decay >= 0.0 && self.l1 >= 0.0) {
            return bad("regularization", "must be ≥ 0".into());
        }
        if let Some(c) = self.clip_norm
            && (c.is_nan() || c <= 0.0)
        {
            return bad("clip norm", format!("{c} must be > 0"));
        }
        match self.kind {
            OptimizerKind::Momentum { momentum, .. } if !(0.0..1.0).contains(&momentum) => {
                bad("momentum", format!("{momentum} must be in [0, 1)"))
            }
            OptimizerKind::Adam { beta1, beta2, eps }
            | OptimizerKind::AdamW { beta1, beta2, eps }
                if !((0.0..1.0).contains(&beta1) && (0.0..1.0).contains(&beta2) && eps > 0.0) =>
            {
                bad("betas", format!("({beta1}, {beta2}, ε {eps}) out of range"))
            }
            _ => Ok(()),
        }
    }

    /// The learning rate at `epoch` (0-based) and global `step`.
    pub fn lr_at(&self, epoch: usize, step: u64) -> f32 {
        let scheduled = match self.schedule {
            Schedule::Constant => self.lr,
            Schedule::Step { every, gamma } => self.lr * gamma.powi((epoch / every.max(1)) as i32),
            Schedule::Cosine { epochs, min_lr } => {
                let t = (epoch.min(epochs) as f32) / (epochs.max(1) as f32);
                min_lr + 0.5 * (self.lr - min_lr) * (1.0 + (std::f32::consts::PI * t).cos())
            }
        };
        if step < self.warmup_steps {
            scheduled * (step + 1) as f32 / self.warmup_steps as f32
        } else {
            scheduled
        }
    }
}

/// An optimizer's state.
#[derive(Debug, Clone, PartialEq)]
pub struct Optimizer {
    config: OptimizerConfig,
    first: Vec<f32>,
    second: Vec<f32>,
    steps: u64,
}

impl Optimizer {
    /// For `n` parameters.
    pub fn new(config: OptimizerConfig, n: usize) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            config,
            first: vec![0.0; n],
            second: vec![0.0; n],
            steps: 0,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &OptimizerConfig {
        &self.config
    }

    /// Steps taken.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The state (first and second moments, steps), for checkpoints.
    pub fn state(&self) -> (&[f32], &[f32], u64) {
        (&self.first, &self.second, self.steps)
    }

    /// Restores a checkpointed state.
    pub fn restore(&mut self, first: Vec<f32>, second: Vec<f32>, steps: u64) -> Result<()> {
        if first.len() != self.first.len() || second.len() != self.second.len() {
            return Err(Error::invalid(
                "optimizer state",
                "does not match the number of parameters",
            ));
        }
        self.first = first;
        self.second = second;
        self.steps = steps;
        Ok(())
    }

    /// One update of `params` with `grads` at learning rate `lr`.
    pub fn step(&mut self, params: &mut [f32], grads: &mut [f32], lr: f32) {
        let c = self.config;
        if c.l1 > 0.0 {
            for (g, p) in grads.iter_mut().zip(params.iter()) {
                *g += c.l1 * p.signum() * f32::from(*p != 0.0);
            }
        }
        if let Some(max) = c.clip_norm {
            let norm = grads
                .iter()
                .map(|g| f64::from(*g) * f64::from(*g))
                .sum::<f64>()
                .sqrt();
            if norm > f64::from(max) {
                let scale = (f64::from(max) / (norm + 1e-6)) as f32;
                grads.iter_mut().for_each(|g| *g *= scale);
            }
        }
        self.steps += 1;
        update(
            &c,
            self.steps as i32,
            lr,
            params,
            grads,
            &mut self.first,
            &mut self.second,
        );
    }

    /// For callers that split the element-wise update over threads by ranges of parameters:
    /// `None` when this configuration's update is not element-wise (L1 and clipping look at the
    /// whole gradient: use [`step`](Self::step)); otherwise counts the step and returns its
    /// number (1-based), the configuration and the moment buffers, for [`update`] on matching
    /// ranges of parameters, gradients and moments.
    pub(crate) fn begin_elementwise(
        &mut self,
    ) -> Option<(OptimizerConfig, i32, &mut [f32], &mut [f32])> {
        let c = self.config;
        if c.l1 > 0.0 || c.clip_norm.is_some() {
            return None;
        }
        self.steps += 1;
        Some((c, self.steps as i32, &mut self.first, &mut self.second))
    }

    /// [`step`](Self::step) with the element-wise update split over `pool`'s threads (the same
    /// result: every parameter's update depends on its own values only).
    pub fn step_parallel(
        &mut self,
        params: &mut [f32],
        grads: &mut [f32],
        lr: f32,
        pool: &rayon::ThreadPool,
    ) {
        use rayon::prelude::*;
        const CHUNK: usize = 8192;
        if pool.current_num_threads() < 2 || params.len() < 2 * CHUNK {
            self.step(params, grads, lr);
            return;
        }
        let c = self.config;
        if c.l1 > 0.0 || c.clip_norm.is_some() {
            // Reductions stay sequential so results do not depend on the thread count.
            self.step(params, grads, lr);
            return;
        }
        self.steps += 1;
        let t = self.steps as i32;
        pool.install(|| {
            params
                .par_chunks_mut(CHUNK)
                .zip(grads.par_chunks_mut(CHUNK))
                .zip(self.first.par_chunks_mut(CHUNK))
                .zip(self.second.par_chunks_mut(CHUNK))
                .for_each(|(((p, g), m), v)| update(&c, t, lr, p, g, m, v));
        });
    }
}

/// The element-wise update of step `t` (1-based) on matching slices of parameters, gradients and
/// optimizer state.
pub(crate) fn update(
    c: &OptimizerConfig,
    t: i32,
    lr: f32,
    params: &mut [f32],
    grads: &mut [f32],
    first: &mut [f32],
    second: &mut [f32],
) {
    let wd = c.weight_decay;
    match c.kind {
        OptimizerKind::Sgd => {
            for (p, g) in params.iter_mut().zip(grads.iter()) {
                *p -= lr * (g + wd * *p);
            }
        }
        OptimizerKind::Momentum { momentum, nesterov } => {
            for ((p, g), b) in params.iter_mut().zip(grads.iter()).zip(first.iter_mut()) {
                let g = g + wd * *p;
                *b = if t == 1 { g } else { momentum * *b + g };
                let d = if nesterov { g + momentum * *b } else { *b };
                *p -= lr * d;
            }
        }
        OptimizerKind::Adam { beta1, beta2, eps } | OptimizerKind::AdamW { beta1, beta2, eps } => {
            let decoupled = matches!(c.kind, OptimizerKind::AdamW { .. });
            let (bc1, bc2) = (1.0 - beta1.powi(t), 1.0 - beta2.powi(t));
            for (((p, g), m), v) in params
                .iter_mut()
                .zip(grads.iter())
                .zip(first.iter_mut())
                .zip(second.iter_mut())
            {
                let g = if decoupled {
                    *p *= 1.0 - lr * wd;
                    *g
                } else {
                    g + wd * *p
                };
                *m = beta1 * *m + (1.0 - beta1) * g;
                *v = beta2 * *v + (1.0 - beta2) * g * g;
                let denom = (*v / bc2).sqrt() + eps;
                *p -= lr * (*m / bc1) / denom;
            }
        }
        OptimizerKind::Adagrad { eps } => {
            for ((p, g), s) in params.iter_mut().zip(grads.iter()).zip(second.iter_mut()) {
                let g = g + wd * *p;
                *s += g * g;
                *p -= lr * g / (s.sqrt() + eps);
            }
        }
        OptimizerKind::RmsProp { alpha, eps } => {
            for ((p, g), s) in params.iter_mut().zip(grads.iter()).zip(second.iter_mut()) {
                let g = g + wd * *p;
                *s = alpha * *s + (1.0 - alpha) * g * g;
                *p -= lr * g / (s.sqrt() + eps);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The update split over threads is the sequential update, bit for bit.
    #[test]
    fn the_parallel_step_equals_the_sequential_one() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .expect("pool");
        let mut rng = crate::rng::Rng::new(5);
        let n = 50_000;
        let init: Vec<f32> = (0..n).map(|_| rng.uniform() as f32 - 0.5).collect();
        for kind in [
            OptimizerKind::Sgd,
            OptimizerKind::momentum(true),
            OptimizerKind::adam(),
            OptimizerKind::adamw(),
            OptimizerKind::adagrad(),
            OptimizerKind::rmsprop(),
        ] {
            let mut config = OptimizerConfig::new(kind, 0.01);
            config.weight_decay = 0.01;
            let (mut a, mut b) = (init.clone(), init.clone());
            let mut oa = Optimizer::new(config, n).expect("optimizer");
            let mut ob = Optimizer::new(config, n).expect("optimizer");
            for step in 0..3 {
                let g: Vec<f32> = (0..n).map(|i| ((i * 7 + step) % 13) as f32 - 6.0).collect();
                oa.step(&mut a, &mut g.clone(), 0.01);
                ob.step_parallel(&mut b, &mut g.clone(), 0.01, &pool);
            }
            assert_eq!(a, b, "{kind:?}");
            assert_ne!(a, init);
        }
    }

    /// One parameter, loss (x − 4.2)²: every rule converges; SGD after 100 steps at 0.1 is
    /// candle's `sgd_optim` vector (4.199999).
    #[test]
    fn every_rule_minimizes_a_quadratic() {
        let mut x = [0.0f32];
        let mut o = Optimizer::new(OptimizerConfig::new(OptimizerKind::Sgd, 0.1), 1).expect("sgd");
        for _ in 0..100 {
            let mut g = [2.0 * (x[0] - 4.2)];
            o.step(&mut x, &mut g, 0.1);
        }
        assert_eq!(x[0], 4.199999);
        for kind in [
            OptimizerKind::momentum(false),
            OptimizerKind::momentum(true),
            OptimizerKind::adam(),
            OptimizerKind::adamw(),
            OptimizerKind::rmsprop(),
            OptimizerKind::adagrad(),
        ] {
            let lr = if matches!(kind, OptimizerKind::Adagrad { .. }) {
                1.0
            } else {
                0.05
            };
            let mut o = Optimizer::new(OptimizerConfig::new(kind, lr), 1).expect("opt");
            let mut x = [0.0f32];
            for _ in 0..2000 {
                let mut g = [2.0 * (x[0] - 4.2)];
                o.step(&mut x, &mut g, lr);
            }
            assert!((x[0] - 4.2).abs() < 1e-2, "{kind:?}: {}", x[0]);
        }
    }

    #[test]
    fn schedules_clipping_and_validation() {
        let mut c = OptimizerConfig::new(OptimizerKind::Sgd, 1.0);
        c.schedule = Schedule::Step {
            every: 2,
            gamma: 0.5,
        };
        assert_eq!(
            (c.lr_at(0, 99), c.lr_at(2, 99), c.lr_at(5, 99)),
            (1.0, 0.5, 0.25)
        );
        c.schedule = Schedule::Cosine {
            epochs: 10,
            min_lr: 0.0,
        };
        assert!((c.lr_at(5, 99) - 0.5).abs() < 1e-6 && c.lr_at(10, 99).abs() < 1e-6);
        c.warmup_steps = 4;
        assert!((c.lr_at(0, 0) - 0.25).abs() < 1e-6);
        let mut clip = OptimizerConfig::new(OptimizerKind::Sgd, 1.0);
        clip.clip_norm = Some(1.0);
        let mut o = Optimizer::new(clip, 2).expect("opt");
        let mut p = [0.0f32, 0.0];
        let mut g = [3.0f32, 4.0];
        o.step(&mut p, &mut g, 1.0);
        assert!(
            ((p[0] * p[0] + p[1] * p[1]).sqrt() - 1.0).abs() < 1e-4,
            "{p:?}"
        );
        assert!(Optimizer::new(OptimizerConfig::new(OptimizerKind::Sgd, 0.0), 1).is_err());
        assert!(
            Optimizer::new(
                OptimizerConfig::new(
                    OptimizerKind::Momentum {
                        momentum: 1.5,
                        nesterov: false
                    },
                    0.1
                ),
                1
            )
            .is_err()
        );
    }
}
