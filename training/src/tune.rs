//! Hyperparameter search: search spaces, samplers, early stopping of bad trials, and a trial
//! executor.
//!
//! - A [`Space`] maps names to [`Param`]s (uniform, log-uniform, integer, categorical), built in
//!   code or read from YAML ([`Space::from_yaml`]).
//! - [`Sampler`]s propose configurations: [`GridSampler`], [`RandomSampler`] and
//!   [`TpeSampler`] (a tree-structured Parzen estimator, as in Optuna).
//! - [`Pruner`]s stop bad trials early from their per-epoch values: [`SuccessiveHalving`]
//!   (ASHA; reduction factor 4, grace period 1 by default, as Optuna and Ray Tune),
//!   [`Hyperband`] (η = 3) and [`MedianStopping`].
//! - An [`Objective`] trains one configuration and reports a value (higher is better) after every
//!   epoch; [`MlpObjective`] does that with the ndarray backend, [`FnObjective`] with a closure.
//! - An [`Executor`] runs trials, [`Threads`] on local threads; another implementation can run
//!   them elsewhere (on a scheduler's resource pool).
//!
//! [`tune`] is deterministic for a seed and a number of executor slots, whatever the timing:
//! trial `i` is sampled from the trials `0 ..= i − slots`, which it waits for, and a pruning
//! decision for trial `i` at an epoch waits for the earlier trials to reach that epoch or finish.
//! With one slot this is exactly the sequential algorithm.
//!
//! ```
//! use aistd_training::tune::{
//!     FnObjective, Param, RandomSampler, Space, SuccessiveHalving, Threads, TuneOptions, tune,
//! };
//!
//! let space = Space::new().with("x", Param::uniform(0.0, 1.0));
//! // A "training run" whose value rises with the epochs and peaks at x = 0.3.
//! let objective = FnObjective::new(16, |c, epoch| {
//!     let x = c["x"].as_f64().unwrap_or(0.0);
//!     -(x - 0.3).powi(2) - 1.0 / epoch as f64
//! });
//! let report = tune(
//!     &space,
//!     &objective,
//!     &mut RandomSampler::new(1),
//!     &SuccessiveHalving::default(),
//!     &Threads(2),
//!     &TuneOptions::new(32, 1),
//!     &|_| {},
//! )?;
//! let best = report.best().expect("a best trial");
//! assert!((best.config["x"].as_f64().unwrap() - 0.3).abs() < 0.1);
//! assert!(report.epochs() < 32 * 16 / 2);
//! # Ok::<(), aistd_training::Error>(())
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::data::Dataset;
use crate::nn::Activation;
use crate::optim::OptimizerKind;
use crate::rng::Rng;
use crate::{EpochRecord, Error, NdarrayTrainer, Observer, Result, TrainConfig};

/// One trial's hyperparameters, by name.
pub type Config = BTreeMap<String, Value>;

/// One hyperparameter's range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Param {
    /// A real number uniform in [low, high]; `grid` points (ends included) for grid search.
    Uniform {
        /// Lower end.
        low: f64,
        /// Upper end.
        high: f64,
        /// Points for grid search.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grid: Option<usize>,
    },
    /// A positive real number whose logarithm is uniform in [ln low, ln high]; `grid` points
    /// spaced evenly on the log scale for grid search.
    LogUniform {
        /// Lower end (> 0).
        low: f64,
        /// Upper end.
        high: f64,
        /// Points for grid search.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grid: Option<usize>,
    },
    /// An integer in [low, high] (both included), uniform or, with `log`, log-uniform. Grid
    /// search takes every value.
    Int {
        /// Lower end.
        low: i64,
        /// Upper end (included).
        high: i64,
        /// Sample on the log scale (low ≥ 1).
        #[serde(default)]
        log: bool,
    },
    /// One of the values (numbers, strings, booleans, lists).
    Categorical {
        /// The choices.
        values: Vec<Value>,
    },
}

impl Param {
    /// Uniform in [low, high].
    pub fn uniform(low: f64, high: f64) -> Self {
        Param::Uniform {
            low,
            high,
            grid: None,
        }
    }

    /// Log-uniform in [low, high].
    pub fn log_uniform(low: f64, high: f64) -> Self {
        Param::LogUniform {
            low,
            high,
            grid: None,
        }
    }

    /// An integer in [low, high].
    pub fn int(low: i64, high: i64) -> Self {
        Param::Int {
            low,
            high,
            log: false,
        }
    }

    /// One of `values`.
    pub fn categorical<V: Into<Value>>(values: impl IntoIterator<Item = V>) -> Self {
        Param::Categorical {
            values: values.into_iter().map(Into::into).collect(),
        }
    }

    /// The same range with `n` grid points (uniform and log-uniform ranges only).
    pub fn with_grid(self, n: usize) -> Self {
        match self {
            Param::Uniform { low, high, .. } => Param::Uniform {
                low,
                high,
                grid: Some(n),
            },
            Param::LogUniform { low, high, .. } => Param::LogUniform {
                low,
                high,
                grid: Some(n),
            },
            other => other,
        }
    }

    fn validate(&self, name: &str) -> Result<()> {
        let bad = |reason: String| Err(Error::invalid(format!("search space: `{name}`"), reason));
        match self {
            Param::Uniform { low, high, grid } | Param::LogUniform { low, high, grid } => {
                if !(low.is_finite() && high.is_finite() && low < high) {
                    return bad(format!("needs finite low < high, got [{low}, {high}]"));
                }
                if matches!(self, Param::LogUniform { .. }) && *low <= 0.0 {
                    return bad(format!("a log-uniform range needs low > 0, got {low}"));
                }
                if *grid == Some(0) {
                    return bad("grid needs at least 1 point".into());
                }
            }
            Param::Int { low, high, log } => {
                if low > high {
                    return bad(format!("needs low ≤ high, got [{low}, {high}]"));
                }
                if *log && *low < 1 {
                    return bad(format!(
                        "a log-scale integer range needs low ≥ 1, got {low}"
                    ));
                }
            }
            Param::Categorical { values } => {
                if values.is_empty() {
                    return bad("has no values".into());
                }
            }
        }
        Ok(())
    }

    /// The grid's values.
    fn grid(&self, name: &str) -> Result<Vec<Value>> {
        let points = |low: f64, high: f64, n: usize, f: &dyn Fn(f64) -> f64| -> Vec<Value> {
            if n == 1 {
                return vec![Value::from(f((low + high) / 2.0))];
            }
            (0..n)
                .map(|i| {
                    let t = if i + 1 == n {
                        high
                    } else {
                        low + (high - low) * i as f64 / (n - 1) as f64
                    };
                    Value::from(f(t))
                })
                .collect()
        };
        let need = || {
            Error::invalid(
                format!("search space: `{name}`"),
                "a continuous range needs `grid: N` (points) for grid search",
            )
        };
        Ok(match self {
            Param::Uniform { low, high, grid } => {
                points(*low, *high, grid.ok_or_else(need)?, &|x| x)
            }
            Param::LogUniform { low, high, grid } => {
                let v = points(low.ln(), high.ln(), grid.ok_or_else(need)?, &f64::exp);
                // The ends exactly as written, not through exp(ln x).
                let mut v = v;
                if v.len() > 1 {
                    v[0] = Value::from(*low);
                    let last = v.len() - 1;
                    v[last] = Value::from(*high);
                }
                v
            }
            Param::Int { low, high, .. } => {
                if high - low >= 10_000 {
                    return Err(Error::invalid(
                        format!("search space: `{name}`"),
                        format!("{} integers are too many for a grid", high - low + 1),
                    ));
                }
                (*low..=*high).map(Value::from).collect()
            }
            Param::Categorical { values } => values.clone(),
        })
    }

    /// A value drawn from the prior.
    fn sample(&self, rng: &mut Rng) -> Value {
        match self {
            Param::Uniform { low, high, .. } => Value::from(low + (high - low) * rng.uniform()),
            Param::LogUniform { low, high, .. } => {
                Value::from((low.ln() + (high.ln() - low.ln()) * rng.uniform()).exp())
            }
            Param::Int { low, high, log } => {
                let v = if *log {
                    let (a, b) = ((*low as f64).ln(), ((*high + 1) as f64).ln());
                    ((a + (b - a) * rng.uniform()).exp().floor() as i64).clamp(*low, *high)
                } else {
                    low + rng.below((high - low + 1) as usize) as i64
                };
                Value::from(v)
            }
            Param::Categorical { values } => values[rng.below(values.len())].clone(),
        }
    }
}

/// Named hyperparameter ranges.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Space {
    params: BTreeMap<String, Param>,
}

impl Space {
    /// An empty space.
    pub fn new() -> Self {
        Self::default()
    }

    /// This space with `name` ranging over `param`.
    pub fn with(mut self, name: &str, param: Param) -> Self {
        self.params.insert(name.to_string(), param);
        self
    }

    /// A space from YAML: a mapping of names to ranges, for example
    ///
    /// ```yaml
    /// lr: {type: log_uniform, low: 1.0e-4, high: 1.0e-1, grid: 4}
    /// hidden: {type: categorical, values: [32, 64, 128]}
    /// batch_size: {type: int, low: 16, high: 256, log: true}
    /// dropout: {type: uniform, low: 0.0, high: 0.5}
    /// ```
    pub fn from_yaml(text: &str) -> Result<Self> {
        let space: Space = serde_yaml_ng::from_str(text)
            .map_err(|e| Error::invalid("search space (YAML)", e.to_string()))?;
        space.validate()?;
        Ok(space)
    }

    /// Checks every range.
    pub fn validate(&self) -> Result<()> {
        if self.params.is_empty() {
            return Err(Error::invalid("search space", "has no parameters"));
        }
        for (name, p) in &self.params {
            p.validate(name)?;
        }
        Ok(())
    }

    /// The parameters, by name.
    pub fn params(&self) -> &BTreeMap<String, Param> {
        &self.params
    }

    /// Every configuration of the grid (the cartesian product, the last name varying fastest).
    pub fn grid(&self) -> Result<Vec<Config>> {
        self.validate()?;
        let mut out = vec![Config::new()];
        for (name, p) in &self.params {
            let values = p.grid(name)?;
            if out.len().saturating_mul(values.len()) > 1_000_000 {
                return Err(Error::invalid(
                    "search space",
                    "the grid has more than 1,000,000 configurations",
                ));
            }
            out = out
                .into_iter()
                .flat_map(|c| {
                    values.iter().map(move |v| {
                        let mut c = c.clone();
                        c.insert(name.clone(), v.clone());
                        c
                    })
                })
                .collect();
        }
        Ok(out)
    }

    /// A configuration drawn from the prior.
    pub fn sample(&self, rng: &mut Rng) -> Config {
        self.params
            .iter()
            .map(|(n, p)| (n.clone(), p.sample(rng)))
            .collect()
    }
}

/// How a trial ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", content = "error", rename_all = "snake_case")]
#[non_exhaustive]
pub enum TrialState {
    /// Ran every epoch.
    Completed,
    /// Stopped early by the pruner.
    Pruned,
    /// Training failed (the error).
    Failed(String),
}

/// One trial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TrialRecord {
    /// 0-based, in sampling order.
    pub id: usize,
    /// Its hyperparameters.
    pub config: Config,
    /// The value after each epoch (higher is better).
    pub values: Vec<f64>,
    /// How it ended.
    #[serde(flatten)]
    pub state: TrialState,
    /// Wall time.
    pub seconds: f64,
}

impl TrialRecord {
    /// The last value (the trial's result).
    pub fn value(&self) -> Option<f64> {
        self.values.last().copied().filter(|v| !v.is_nan())
    }

    /// Epochs trained.
    pub fn epochs(&self) -> usize {
        self.values.len()
    }
}

/// Proposes configurations.
pub trait Sampler: Send + std::fmt::Debug {
    /// `grid`, `random`, `tpe`, ….
    fn name(&self) -> &str;
    /// The next configuration given the finished trials, or `None` when there are no more.
    fn suggest(&mut self, space: &Space, finished: &[TrialRecord]) -> Result<Option<Config>>;
}

/// Every configuration of the grid once, in an order shuffled by a seed (so that early stopping
/// does not see the grid sorted).
#[derive(Debug, Clone)]
pub struct GridSampler {
    seed: Option<u64>,
    configs: Option<VecDeque<Config>>,
}

impl GridSampler {
    /// The grid in an order shuffled with `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            seed: Some(seed),
            configs: None,
        }
    }

    /// The grid in its natural order.
    pub fn ordered() -> Self {
        Self {
            seed: None,
            configs: None,
        }
    }
}

impl Sampler for GridSampler {
    fn name(&self) -> &str {
        "grid"
    }

    fn suggest(&mut self, space: &Space, _: &[TrialRecord]) -> Result<Option<Config>> {
        if self.configs.is_none() {
            let mut all = space.grid()?;
            if let Some(seed) = self.seed {
                Rng::new(seed).shuffle(&mut all);
            }
            self.configs = Some(all.into());
        }
        Ok(self.configs.as_mut().and_then(VecDeque::pop_front))
    }
}

/// Independent draws from the ranges.
#[derive(Debug, Clone)]
pub struct RandomSampler(Rng);

impl RandomSampler {
    /// Seeded.
    pub fn new(seed: u64) -> Self {
        Self(Rng::new(seed ^ 0x7a4d_0000))
    }
}

impl Sampler for RandomSampler {
    fn name(&self) -> &str {
        "random"
    }

    fn suggest(&mut self, space: &Space, _: &[TrialRecord]) -> Result<Option<Config>> {
        space.validate()?;
        Ok(Some(space.sample(&mut self.0)))
    }
}

/// A tree-structured Parzen estimator (Bergstra et al. 2011), per parameter as Optuna's default:
/// after `startup` random trials, the finished trials are split into the best
/// `min(⌈0.1·n⌉, 25)` and the rest; each parameter gets a Parzen density from each group
/// (truncated Gaussians on the (log) range with a prior component; smoothed frequencies for
/// categories), and of `candidates` draws from the good density the one maximising
/// good / bad density is taken. Pruned trials rank below every trial that got further.
#[derive(Debug, Clone)]
pub struct TpeSampler {
    rng: Rng,
    /// Random trials before the model is used.
    pub startup: usize,
    /// Draws scored per parameter.
    pub candidates: usize,
}

impl TpeSampler {
    /// Seeded, with Optuna's defaults: 10 start-up trials, 24 candidates.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: Rng::new(seed ^ 0x79e0_0000),
            startup: 10,
            candidates: 24,
        }
    }
}

/// A one-dimensional Parzen estimator on [low, high].
struct Parzen {
    mus: Vec<f64>,
    sigmas: Vec<f64>,
    low: f64,
    high: f64,
}

impl Parzen {
    /// Observations plus a prior component at the middle with the range's width, bandwidths
    /// from the distances to the neighbours, clipped to [width / min(100, n + 1), width].
    fn new(obs: &[f64], low: f64, high: f64) -> Self {
        let width = high - low;
        let mut mus: Vec<f64> = obs.to_vec();
        mus.push((low + high) / 2.0);
        let mut order: Vec<usize> = (0..mus.len()).collect();
        order.sort_by(|a, b| mus[*a].total_cmp(&mus[*b]));
        let n = mus.len();
        let mut sigmas = vec![width; n];
        let min_sigma = width / (100f64).min(n as f64 + 1.0);
        for (k, &i) in order.iter().enumerate() {
            let left = if k == 0 {
                mus[i] - low
            } else {
                mus[i] - mus[order[k - 1]]
            };
            let right = if k + 1 == n {
                high - mus[i]
            } else {
                mus[order[k + 1]] - mus[i]
            };
            sigmas[i] = left.max(right).clamp(min_sigma, width);
        }
        // The prior keeps the whole range's width.
        sigmas[n - 1] = width;
        Self {
            mus,
            sigmas,
            low,
            high,
        }
    }

    fn sample(&self, rng: &mut Rng) -> f64 {
        let k = rng.below(self.mus.len());
        for _ in 0..64 {
            let x = self.mus[k] + self.sigmas[k] * normal(rng);
            if (self.low..=self.high).contains(&x) {
                return x;
            }
        }
        self.mus[k].clamp(self.low, self.high)
    }

    fn log_density(&self, x: f64) -> f64 {
        let mut p = 0.0;
        for (mu, s) in self.mus.iter().zip(&self.sigmas) {
            let z = phi((self.high - mu) / s) - phi((self.low - mu) / s);
            let d = (-(x - mu).powi(2) / (2.0 * s * s)).exp()
                / (s * (2.0 * std::f64::consts::PI).sqrt());
            p += d / z.max(1e-12);
        }
        (p / self.mus.len() as f64).max(1e-300).ln()
    }
}

/// Standard normal CDF.
fn phi(z: f64) -> f64 {
    0.5 * (1.0 + libm::erf(z / std::f64::consts::SQRT_2))
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut Rng) -> f64 {
    let u = rng.uniform().max(1e-300);
    let v = rng.uniform();
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

/// The value of a numeric parameter in the space the estimator works in.
fn to_internal(p: &Param, v: &Value) -> Option<f64> {
    let x = v.as_f64()?;
    match p {
        Param::LogUniform { .. } | Param::Int { log: true, .. } => Some(x.ln()),
        _ => Some(x),
    }
}

impl TpeSampler {
    fn suggest_param(&mut self, p: &Param, good: &[&Config], bad: &[&Config], name: &str) -> Value {
        let n = self.candidates.max(1);
        match p {
            Param::Categorical { values } => {
                let weights = |group: &[&Config]| -> Vec<f64> {
                    let mut w = vec![1.0 / values.len() as f64; values.len()];
                    for c in group {
                        if let Some(i) =
                            c.get(name).and_then(|v| values.iter().position(|x| x == v))
                        {
                            w[i] += 1.0;
                        }
                    }
                    let s: f64 = w.iter().sum();
                    w.iter().map(|x| x / s).collect()
                };
                let (wg, wb) = (weights(good), weights(bad));
                let mut best = (f64::NEG_INFINITY, 0);
                for _ in 0..n {
                    let mut u = self.rng.uniform();
                    let mut i = values.len() - 1;
                    for (k, w) in wg.iter().enumerate() {
                        if u < *w {
                            i = k;
                            break;
                        }
                        u -= w;
                    }
                    let score = wg[i].ln() - wb[i].ln();
                    if score > best.0 {
                        best = (score, i);
                    }
                }
                values[best.1].clone()
            }
            _ => {
                let (low, high) = match p {
                    Param::Uniform { low, high, .. } => (*low, *high),
                    Param::LogUniform { low, high, .. } => (low.ln(), high.ln()),
                    Param::Int { low, high, log } => {
                        // Integers are widened by half a step so the ends are as likely as the rest.
                        if *log {
                            ((*low as f64 - 0.5).max(0.5).ln(), (*high as f64 + 0.5).ln())
                        } else {
                            (*low as f64 - 0.5, *high as f64 + 0.5)
                        }
                    }
                    Param::Categorical { .. } => unreachable!("handled above"),
                };
                let obs = |group: &[&Config]| -> Vec<f64> {
                    group
                        .iter()
                        .filter_map(|c| c.get(name).and_then(|v| to_internal(p, v)))
                        .collect()
                };
                let lg = Parzen::new(&obs(good), low, high);
                let lb = Parzen::new(&obs(bad), low, high);
                let mut best = (f64::NEG_INFINITY, lg.mus[0]);
                for _ in 0..n {
                    let x = lg.sample(&mut self.rng);
                    let score = lg.log_density(x) - lb.log_density(x);
                    if score > best.0 {
                        best = (score, x);
                    }
                }
                let x = best.1;
                match p {
                    Param::Uniform { low, high, .. } => Value::from(x.clamp(*low, *high)),
                    Param::LogUniform { low, high, .. } => Value::from(x.exp().clamp(*low, *high)),
                    Param::Int { low, high, log } => {
                        let v = if *log { x.exp() } else { x };
                        Value::from((v.round() as i64).clamp(*low, *high))
                    }
                    Param::Categorical { .. } => unreachable!("handled above"),
                }
            }
        }
    }
}

impl Sampler for TpeSampler {
    fn name(&self) -> &str {
        "tpe"
    }

    fn suggest(&mut self, space: &Space, finished: &[TrialRecord]) -> Result<Option<Config>> {
        space.validate()?;
        let scored: Vec<&TrialRecord> = finished.iter().filter(|t| t.value().is_some()).collect();
        if scored.len() < self.startup.max(2) {
            return Ok(Some(space.sample(&mut self.rng)));
        }
        let mut ranked = scored;
        // Further is better, then higher.
        ranked.sort_by(|a, b| {
            b.epochs()
                .cmp(&a.epochs())
                .then(
                    b.value()
                        .unwrap_or(f64::NEG_INFINITY)
                        .total_cmp(&a.value().unwrap_or(f64::NEG_INFINITY)),
                )
                .then(a.id.cmp(&b.id))
        });
        let n_good = (ranked.len().div_ceil(10)).clamp(1, 25);
        let good: Vec<&Config> = ranked[..n_good].iter().map(|t| &t.config).collect();
        let bad: Vec<&Config> = ranked[n_good..].iter().map(|t| &t.config).collect();
        let mut c = Config::new();
        for (name, p) in space.params() {
            c.insert(name.clone(), self.suggest_param(p, &good, &bad, name));
        }
        Ok(Some(c))
    }
}

/// What a pruner says about a running trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Keep training.
    Continue,
    /// Stop now.
    Stop,
}

/// Stops bad trials early.
///
/// # Contract
///
/// `decide` is a pure function of its arguments, so that tuning is deterministic: [`tune`]
/// calls it at the trial's milestones with the values, at the same epoch, of every earlier trial
/// it `compares` with that reached that epoch (finished or not).
pub trait Pruner: Send + Sync + std::fmt::Debug {
    /// `none`, `asha`, `hyperband`, `median`, ….
    fn name(&self) -> &str;
    /// Whether trial `trial` is judged after `epoch` (1-based).
    fn is_milestone(&self, trial: usize, epoch: usize) -> bool;
    /// Whether `other`'s values are compared with `trial`'s (same Hyperband bracket).
    fn compares(&self, _trial: usize, _other: usize) -> bool {
        true
    }
    /// Continue or stop: `own` is the trial's values for epochs 1..=epoch, `peers` the values
    /// at `epoch` of the earlier comparable trials that got there.
    fn decide(&self, trial: usize, epoch: usize, own: &[f64], peers: &[f64]) -> Decision;
}

/// Never stops a trial.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPruner;

impl Pruner for NoPruner {
    fn name(&self) -> &str {
        "none"
    }
    fn is_milestone(&self, _: usize, _: usize) -> bool {
        false
    }
    fn decide(&self, _: usize, _: usize, _: &[f64], _: &[f64]) -> Decision {
        Decision::Continue
    }
}

/// Whether `epoch` is `grace · ηᵏ` for some k ≥ 0.
fn is_rung(epoch: usize, grace: usize, eta: usize) -> bool {
    let mut r = grace.max(1);
    while r < epoch {
        r = r.saturating_mul(eta.max(2));
    }
    r == epoch
}

/// Whether `own` is in the top `max(1, ⌊n / η⌋)` of the `n` values at the rung (its own included).
fn top_fraction(own: f64, peers: &[f64], eta: usize) -> Decision {
    let key = |v: f64| if v.is_nan() { f64::NEG_INFINITY } else { v };
    let mut all: Vec<f64> = peers.iter().map(|v| key(*v)).collect();
    all.push(key(own));
    all.sort_by(|a, b| b.total_cmp(a));
    let k = (all.len() / eta.max(2)).max(1);
    if key(own) >= all[k - 1] {
        Decision::Continue
    } else {
        Decision::Stop
    }
}

/// Asynchronous successive halving (ASHA, Li et al. 2020): rungs at `grace · ηᵏ` epochs; a trial
/// reaching a rung continues only if its value is in the top `max(1, ⌊n / η⌋)` of the `n` values
/// recorded at that rung so far (Optuna's `SuccessiveHalvingPruner`).
#[derive(Debug, Clone, Copy)]
pub struct SuccessiveHalving {
    /// Epochs before the first rung.
    pub grace: usize,
    /// Reduction factor η.
    pub eta: usize,
}

impl Default for SuccessiveHalving {
    /// Grace period 1, η = 4 (Optuna's and Ray Tune's defaults).
    fn default() -> Self {
        Self { grace: 1, eta: 4 }
    }
}

impl Pruner for SuccessiveHalving {
    fn name(&self) -> &str {
        "asha"
    }
    fn is_milestone(&self, _: usize, epoch: usize) -> bool {
        is_rung(epoch, self.grace, self.eta)
    }
    fn decide(&self, _: usize, _: usize, own: &[f64], peers: &[f64]) -> Decision {
        match own.last() {
            Some(v) => top_fraction(*v, peers, self.eta),
            None => Decision::Continue,
        }
    }
}

/// Hyperband (Li et al. 2018) run asynchronously as Optuna's `HyperbandPruner`: brackets
/// s = 0 … s_max with s_max = ⌊log_η(max / min)⌋, bracket s a successive halving with grace
/// `min · η^(s_max − s)` among its own trials; trials go to brackets in proportion to
/// Hyperband's bracket sizes ⌈(s_max + 1) / (s + 1) · ηˢ⌉, interleaved so that a few trials
/// already cover several brackets.
#[derive(Debug, Clone)]
pub struct Hyperband {
    eta: usize,
    graces: Vec<usize>,
    /// Trial `i` is in bracket `pattern[i % len]`.
    pattern: Vec<usize>,
}

impl Hyperband {
    /// Brackets for trials of at most `max_epochs`, the most aggressive with grace `min_epochs`.
    pub fn new(min_epochs: usize, max_epochs: usize, eta: usize) -> Result<Self> {
        if min_epochs == 0 || max_epochs < min_epochs || eta < 2 {
            return Err(Error::invalid(
                "hyperband",
                format!(
                    "needs 1 ≤ min ≤ max epochs and η ≥ 2, got min {min_epochs}, max {max_epochs}, η {eta}"
                ),
            ));
        }
        let mut s_max = 0;
        while min_epochs * eta.pow(s_max as u32 + 1) <= max_epochs {
            s_max += 1;
        }
        // Bracket s (s = s_max most aggressive) starts at min · η^(s_max − s) epochs with
        // ⌈(s_max + 1) / (s + 1) · ηˢ⌉ trials in the original algorithm.
        let graces: Vec<usize> = (0..=s_max)
            .map(|s| min_epochs * eta.pow((s_max - s) as u32))
            .collect();
        let sizes: Vec<usize> = (0..=s_max)
            .map(|s| {
                ((s_max + 1) as f64 / (s + 1) as f64 * eta.pow(s as u32) as f64).ceil() as usize
            })
            .collect();
        // Interleave: bracket s's k-th trial sits at (k + ½) / size, most aggressive first on ties.
        let mut slots: Vec<(f64, usize)> = Vec::new();
        for (s, n) in sizes.iter().enumerate() {
            for k in 0..*n {
                slots.push(((k as f64 + 0.5) / *n as f64, s));
            }
        }
        slots.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)));
        Ok(Self {
            eta,
            graces,
            pattern: slots.into_iter().map(|(_, s)| s).collect(),
        })
    }

    /// The bracket of trial `trial` (0 = no early stopping).
    pub fn bracket(&self, trial: usize) -> usize {
        self.pattern[trial % self.pattern.len()]
    }

    /// Grace period of each bracket.
    pub fn graces(&self) -> &[usize] {
        &self.graces
    }
}

impl Pruner for Hyperband {
    fn name(&self) -> &str {
        "hyperband"
    }
    fn is_milestone(&self, trial: usize, epoch: usize) -> bool {
        is_rung(epoch, self.graces[self.bracket(trial)], self.eta)
    }
    fn compares(&self, trial: usize, other: usize) -> bool {
        self.bracket(trial) == self.bracket(other)
    }
    fn decide(&self, _: usize, _: usize, own: &[f64], peers: &[f64]) -> Decision {
        match own.last() {
            Some(v) => top_fraction(*v, peers, self.eta),
            None => Decision::Continue,
        }
    }
}

/// Stops a trial whose value at an epoch is below the median of the earlier trials' values at
/// that epoch (Optuna's `MedianPruner`), once `startup` earlier trials got there and after
/// `warmup` epochs.
#[derive(Debug, Clone, Copy)]
pub struct MedianStopping {
    /// Earlier trials needed at an epoch before judging.
    pub startup: usize,
    /// Epochs never judged.
    pub warmup: usize,
}

impl Default for MedianStopping {
    /// 5 start-up trials, no warm-up (Optuna's defaults).
    fn default() -> Self {
        Self {
            startup: 5,
            warmup: 0,
        }
    }
}

impl Pruner for MedianStopping {
    fn name(&self) -> &str {
        "median"
    }
    fn is_milestone(&self, _: usize, epoch: usize) -> bool {
        epoch > self.warmup
    }
    fn decide(&self, _: usize, _: usize, own: &[f64], peers: &[f64]) -> Decision {
        let Some(v) = own.last() else {
            return Decision::Continue;
        };
        let mut p: Vec<f64> = peers.iter().copied().filter(|x| !x.is_nan()).collect();
        if p.len() < self.startup.max(1) {
            return Decision::Continue;
        }
        p.sort_by(f64::total_cmp);
        let n = p.len();
        let median = if n % 2 == 1 {
            p[n / 2]
        } else {
            (p[n / 2 - 1] + p[n / 2]) / 2.0
        };
        if v.is_nan() || *v < median {
            Decision::Stop
        } else {
            Decision::Continue
        }
    }
}

/// Trains one configuration.
pub trait Objective: Sync {
    /// Epochs of a trial that is not stopped.
    fn max_epochs(&self) -> usize;
    /// Trains `config` with `seed`, calling `report(epoch, value)` after every epoch (1-based;
    /// higher is better) and returning `Ok` soon after it answers [`Decision::Stop`].
    fn run(
        &self,
        config: &Config,
        seed: u64,
        report: &mut dyn FnMut(usize, f64) -> Decision,
    ) -> Result<()>;
}

/// An objective from a function of the configuration and the epoch (tests, benchmarks, custom
/// training loops that compute a value per epoch).
pub struct FnObjective<F> {
    epochs: usize,
    f: F,
}

impl<F> std::fmt::Debug for FnObjective<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnObjective")
            .field("epochs", &self.epochs)
            .finish_non_exhaustive()
    }
}

impl<F: Fn(&Config, usize) -> f64 + Sync> FnObjective<F> {
    /// `f(config, epoch)` for epochs 1..=`epochs`.
    pub fn new(epochs: usize, f: F) -> Self {
        Self { epochs, f }
    }
}

impl<F: Fn(&Config, usize) -> f64 + Sync> Objective for FnObjective<F> {
    fn max_epochs(&self) -> usize {
        self.epochs
    }
    fn run(
        &self,
        config: &Config,
        _: u64,
        report: &mut dyn FnMut(usize, f64) -> Decision,
    ) -> Result<()> {
        for e in 1..=self.epochs {
            if report(e, (self.f)(config, e)) == Decision::Stop {
                break;
            }
        }
        Ok(())
    }
}

/// Hyperparameters an MLP objective understands.
pub const MLP_PARAMS: &[&str] = &[
    "lr",
    "batch_size",
    "hidden",
    "layers",
    "activation",
    "optimizer",
    "weight_decay",
    "dropout",
];

/// `base` with the hyperparameters of `config`: `lr`, `batch_size`, `hidden` (a width, a list of
/// widths, or text like `"64,32"`; 0 or empty for no hidden layer), `layers` (repeats a single
/// `hidden` width), `activation`, `optimizer` (`sgd`, `momentum`, `nesterov`, `adam`, `adamw`,
/// `adagrad`, `rmsprop`), `weight_decay`, `dropout`.
pub fn apply(base: &TrainConfig, config: &Config) -> Result<TrainConfig> {
    let mut c = base.clone();
    let bad = |name: &str, v: &Value, want: &str| {
        Error::invalid(
            format!("hyperparameter `{name}`"),
            format!("{v} is not {want}"),
        )
    };
    let num = |name: &str, v: &Value| v.as_f64().ok_or_else(|| bad(name, v, "a number"));
    let count = |name: &str, v: &Value| {
        v.as_u64()
            .or_else(|| {
                v.as_f64()
                    .filter(|x| x.fract() == 0.0 && *x >= 0.0)
                    .map(|x| x as u64)
            })
            .map(|x| x as usize)
            .ok_or_else(|| bad(name, v, "a whole number ≥ 0"))
    };
    for (name, v) in config {
        match name.as_str() {
            "lr" => c.optimizer.lr = num(name, v)? as f32,
            "batch_size" => c.batch_size = count(name, v)?,
            "weight_decay" => c.optimizer.weight_decay = num(name, v)? as f32,
            "dropout" => c.dropout = num(name, v)? as f32,
            "hidden" => {
                c.hidden = match v {
                    Value::Array(a) => a.iter().map(|w| count(name, w)).collect::<Result<_>>()?,
                    Value::String(s) => s
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| {
                            s.parse::<usize>()
                                .map_err(|_| bad(name, v, "widths like \"64,32\""))
                        })
                        .collect::<Result<_>>()?,
                    _ => match count(name, v)? {
                        0 => Vec::new(),
                        w => vec![w],
                    },
                };
                if c.hidden.contains(&0) {
                    return Err(bad(name, v, "a list of widths ≥ 1"));
                }
            }
            "layers" => {}
            "activation" => {
                c.activation =
                    Activation::from_name(v.as_str().ok_or_else(|| bad(name, v, "a name"))?)?
            }
            "optimizer" => {
                let kind =
                    OptimizerKind::from_name(v.as_str().ok_or_else(|| bad(name, v, "a name"))?)?;
                c.optimizer.kind = kind;
            }
            "epochs" => {
                return Err(Error::invalid(
                    "hyperparameter `epochs`",
                    "the epochs are the tuner's budget (max epochs), not a hyperparameter",
                ));
            }
            other => {
                return Err(Error::invalid(
                    format!("hyperparameter `{other}`"),
                    format!("unknown; known: {}", MLP_PARAMS.join(", ")),
                ));
            }
        }
    }
    if let Some(v) = config.get("layers") {
        let n = count("layers", v)?;
        match c.hidden.as_slice() {
            [w] => c.hidden = vec![*w; n],
            [] if n == 0 => {}
            _ => {
                return Err(Error::invalid(
                    "hyperparameter `layers`",
                    "needs `hidden` to be a single width",
                ));
            }
        }
    }
    Ok(c)
}

/// Trains an MLP with the ndarray backend for each configuration ([`apply`] to `base`) and
/// reports the validation accuracy (classification) or R² (regression) after every epoch.
#[derive(Debug)]
pub struct MlpObjective<'a> {
    /// Training data.
    pub train: &'a Dataset,
    /// Validation data (the values reported).
    pub valid: &'a Dataset,
    /// Everything the configurations do not set; `base.epochs` is the budget per trial.
    pub base: TrainConfig,
}

struct Reporter<'r> {
    report: &'r mut dyn FnMut(usize, f64) -> Decision,
    stop: bool,
}

impl Observer for Reporter<'_> {
    fn on_epoch(&mut self, r: &EpochRecord) {
        let v = r.valid_metric.unwrap_or(f64::NAN);
        if (self.report)(r.epoch, v) == Decision::Stop {
            self.stop = true;
        }
    }
    fn cancelled(&self) -> bool {
        self.stop
    }
}

impl Objective for MlpObjective<'_> {
    fn max_epochs(&self) -> usize {
        self.base.epochs
    }

    fn run(
        &self,
        config: &Config,
        seed: u64,
        report: &mut dyn FnMut(usize, f64) -> Decision,
    ) -> Result<()> {
        let mut c = apply(&self.base, config)?;
        c.seed = seed;
        c.epochs = self.base.epochs;
        let mut r = Reporter {
            report,
            stop: false,
        };
        match NdarrayTrainer.fit_mlp(self.train, Some(self.valid), &c, &mut r) {
            Ok(_) | Err(Error::Cancelled(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// A job the executor runs.
pub type Job<'a> = Box<dyn FnOnce() + Send + 'a>;

/// Runs trials.
///
/// # Contract
///
/// Jobs start in the order given (a job may wait for earlier ones), at most [`slots`] run at
/// once, and `run` returns when every job has finished.
///
/// [`slots`]: Executor::slots
pub trait Executor: Send + Sync + std::fmt::Debug {
    /// How many jobs run at once.
    fn slots(&self) -> usize;
    /// Runs every job.
    fn run(&self, jobs: Vec<Job<'_>>);
}

/// Jobs on `n` local threads (1: in the calling thread).
#[derive(Debug, Clone, Copy)]
pub struct Threads(pub usize);

impl Executor for Threads {
    fn slots(&self) -> usize {
        self.0.max(1)
    }

    fn run(&self, jobs: Vec<Job<'_>>) {
        if self.slots() == 1 {
            jobs.into_iter().for_each(|j| j());
            return;
        }
        let queue = Mutex::new(VecDeque::from(jobs));
        std::thread::scope(|s| {
            for _ in 0..self.slots() {
                s.spawn(|| {
                    loop {
                        let job = lock(&queue).pop_front();
                        match job {
                            Some(j) => j(),
                            None => break,
                        }
                    }
                });
            }
        });
    }
}

fn wait_on<'a, T>(c: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    c.wait(guard).unwrap_or_else(|e| e.into_inner())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Trials and the seed they train with.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct TuneOptions {
    /// Most trials (a grid may have fewer).
    pub trials: usize,
    /// Seed every trial trains with (so configurations are compared on equal terms).
    pub seed: u64,
}

impl TuneOptions {
    /// `trials` trials, seed `seed`.
    pub fn new(trials: usize, seed: u64) -> Self {
        Self { trials, seed }
    }
}

/// The result of a search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TuneReport {
    /// The sampler's name.
    pub sampler: String,
    /// The pruner's name.
    pub pruner: String,
    /// Epochs of a trial that is not stopped.
    pub max_epochs: usize,
    /// Every trial, by id.
    pub trials: Vec<TrialRecord>,
    /// Wall time.
    pub seconds: f64,
}

impl TuneReport {
    /// The trial that did not fail with the highest final value (the lowest id on ties).
    pub fn best(&self) -> Option<&TrialRecord> {
        self.trials
            .iter()
            .filter(|t| t.value().is_some() && !matches!(t.state, TrialState::Failed(_)))
            .min_by(|a, b| {
                b.value()
                    .unwrap_or(f64::NEG_INFINITY)
                    .total_cmp(&a.value().unwrap_or(f64::NEG_INFINITY))
                    .then(a.id.cmp(&b.id))
            })
    }

    /// Epochs trained over all trials.
    pub fn epochs(&self) -> usize {
        self.trials.iter().map(TrialRecord::epochs).sum()
    }

    /// A plain-text table: one row per trial, best first.
    pub fn table(&self) -> String {
        let mut rows: Vec<&TrialRecord> = self.trials.iter().collect();
        rows.sort_by(|a, b| {
            b.value()
                .unwrap_or(f64::NEG_INFINITY)
                .total_cmp(&a.value().unwrap_or(f64::NEG_INFINITY))
                .then(a.id.cmp(&b.id))
        });
        let mut s = format!(
            "{:>5}  {:>9}  {:>6}  {:>10}  config\n",
            "trial", "state", "epochs", "value"
        );
        for t in rows {
            let state = match &t.state {
                TrialState::Completed => "completed",
                TrialState::Pruned => "pruned",
                TrialState::Failed(_) => "failed",
            };
            let value = t
                .value()
                .map(|v| format!("{v:.6}"))
                .unwrap_or_else(|| "-".into());
            let config = serde_json::to_string(&t.config).unwrap_or_default();
            s.push_str(&format!(
                "{:>5}  {state:>9}  {:>6}  {value:>10}  {config}\n",
                t.id,
                t.epochs()
            ));
        }
        s
    }
}

#[derive(Debug, Default)]
struct Slot {
    config: Option<Config>,
    values: Vec<f64>,
    finished: bool,
    state: Option<TrialState>,
    seconds: f64,
}

#[derive(Debug)]
struct Board<'s> {
    slots: Vec<Slot>,
    /// Trials sampled so far (the next id to sample).
    sampled: usize,
    /// The sampler ran out.
    exhausted: bool,
    sampler: &'s mut dyn Sampler,
    error: Option<Error>,
}

impl Board<'_> {
    fn record(&self, id: usize) -> Option<TrialRecord> {
        let s = &self.slots[id];
        Some(TrialRecord {
            id,
            config: s.config.clone()?,
            values: s.values.clone(),
            state: s.state.clone()?,
            seconds: s.seconds,
        })
    }
}

/// Searches `space`: up to `options.trials` trials proposed by `sampler`, trained by `objective`,
/// stopped early by `pruner`, run by `executor`; `on_trial` hears of every finished trial.
///
/// Deterministic for the seeds and `executor.slots()` (see the module documentation). A trial
/// whose training fails is recorded as [`TrialState::Failed`] and the search goes on; a sampler
/// or space error ends it.
pub fn tune(
    space: &Space,
    objective: &dyn Objective,
    sampler: &mut dyn Sampler,
    pruner: &dyn Pruner,
    executor: &dyn Executor,
    options: &TuneOptions,
    on_trial: &(dyn Fn(&TrialRecord) + Sync),
) -> Result<TuneReport> {
    space.validate()?;
    if options.trials == 0 || options.trials > 1_000_000 {
        return Err(Error::invalid(
            "tuning",
            format!("needs 1 to 1,000,000 trials, got {}", options.trials),
        ));
    }
    if objective.max_epochs() == 0 {
        return Err(Error::invalid("tuning", "trials need at least 1 epoch"));
    }
    let sampler_name = sampler.name().to_string();
    let slots = executor.slots().max(1);
    let max_epochs = objective.max_epochs();
    let started = Instant::now();
    let board = Mutex::new(Board {
        slots: (0..options.trials).map(|_| Slot::default()).collect(),
        sampled: 0,
        exhausted: false,
        sampler,
        error: None,
    });
    let changed = Condvar::new();
    let wait = |guard| wait_on(&changed, guard);

    let trial = |id: usize| {
        // 1. Sample, in id order, from the trials 0 ..= id − slots (waiting for them).
        let config = {
            let mut b = lock(&board);
            let visible = (id + 1).saturating_sub(slots);
            while b.sampled < id || (0..visible).any(|j| !b.slots[j].finished) {
                b = wait(b);
            }
            let config = if b.exhausted || b.error.is_some() {
                None
            } else {
                let finished: Vec<TrialRecord> = (0..visible).filter_map(|j| b.record(j)).collect();
                match b.sampler.suggest(space, &finished) {
                    Ok(Some(c)) => Some(c),
                    Ok(None) => {
                        b.exhausted = true;
                        None
                    }
                    Err(e) => {
                        b.error = Some(e);
                        None
                    }
                }
            };
            b.sampled = id + 1;
            b.slots[id].config = config.clone();
            if config.is_none() {
                b.slots[id].finished = true;
            }
            changed.notify_all();
            config
        };
        let Some(config) = config else { return };
        // 2. Train, judged at the pruner's milestones.
        let t = Instant::now();
        let mut pruned = false;
        let mut report = |epoch: usize, value: f64| -> Decision {
            let mut b = lock(&board);
            b.slots[id].values.push(value);
            changed.notify_all();
            if epoch >= max_epochs || !pruner.is_milestone(id, epoch) {
                return Decision::Continue;
            }
            let earlier: Vec<usize> = (0..id).filter(|j| pruner.compares(id, *j)).collect();
            while earlier
                .iter()
                .any(|j| !b.slots[*j].finished && b.slots[*j].values.len() < epoch)
            {
                b = wait(b);
            }
            let peers: Vec<f64> = earlier
                .iter()
                .filter(|j| b.slots[**j].config.is_some())
                .filter_map(|j| b.slots[*j].values.get(epoch - 1).copied())
                .collect();
            let d = pruner.decide(id, epoch, &b.slots[id].values, &peers);
            if d == Decision::Stop {
                pruned = true;
            }
            d
        };
        let result = objective.run(&config, options.seed, &mut report);
        // 3. Record.
        let mut b = lock(&board);
        let slot = &mut b.slots[id];
        slot.seconds = t.elapsed().as_secs_f64();
        slot.state = Some(match result {
            Err(e) => TrialState::Failed(e.to_string()),
            Ok(()) if pruned => TrialState::Pruned,
            Ok(()) => TrialState::Completed,
        });
        slot.finished = true;
        changed.notify_all();
        let record = b.record(id);
        drop(b);
        if let Some(r) = record {
            tracing::debug!(trial = id, state = ?r.state, epochs = r.epochs(), value = ?r.value(), "trial finished");
            on_trial(&r);
        }
    };
    let trial = &trial;
    let jobs: Vec<Job<'_>> = (0..options.trials)
        .map(|id| Box::new(move || trial(id)) as Job<'_>)
        .collect();
    executor.run(jobs);

    let b = board.into_inner().unwrap_or_else(|e| e.into_inner());
    if let Some(e) = b.error {
        return Err(e);
    }
    let trials: Vec<TrialRecord> = (0..b.slots.len()).filter_map(|j| b.record(j)).collect();
    Ok(TuneReport {
        sampler: sampler_name,
        pruner: pruner.name().to_string(),
        max_epochs,
        trials,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rungs() {
        let r: Vec<usize> = (1..=70).filter(|e| is_rung(*e, 1, 4)).collect();
        assert_eq!(r, vec![1, 4, 16, 64]);
        let r: Vec<usize> = (1..=30).filter(|e| is_rung(*e, 3, 3)).collect();
        assert_eq!(r, vec![3, 9, 27]);
    }

    #[test]
    fn successive_halving_keeps_the_top_quarter() {
        let sh = SuccessiveHalving::default();
        // Alone at the rung: continues.
        assert_eq!(sh.decide(0, 1, &[0.1], &[]), Decision::Continue);
        // With fewer than η values only the best continues.
        assert_eq!(sh.decide(1, 1, &[0.5], &[0.6]), Decision::Stop);
        assert_eq!(sh.decide(1, 1, &[0.7], &[0.6, 0.2]), Decision::Continue);
        // 8 values: the top 2 continue.
        let peers = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7];
        assert_eq!(sh.decide(7, 1, &[0.65], &peers), Decision::Continue);
        assert_eq!(sh.decide(7, 1, &[0.55], &peers), Decision::Stop);
        // NaN ranks last.
        assert_eq!(sh.decide(1, 1, &[f64::NAN], &[0.0]), Decision::Stop);
    }

    #[test]
    fn median_stopping() {
        let m = MedianStopping::default();
        assert_eq!(
            m.decide(4, 1, &[0.0], &[0.5; 4]),
            Decision::Continue,
            "startup"
        );
        assert_eq!(
            m.decide(5, 1, &[0.3], &[0.1, 0.2, 0.4, 0.5, 0.6]),
            Decision::Stop
        );
        assert_eq!(
            m.decide(5, 1, &[0.44], &[0.1, 0.2, 0.4, 0.5, 0.6, 0.7]),
            Decision::Stop
        );
        assert_eq!(
            m.decide(5, 1, &[0.45], &[0.1, 0.2, 0.4, 0.5, 0.3]),
            Decision::Continue
        );
        assert!(
            !MedianStopping {
                startup: 5,
                warmup: 2
            }
            .is_milestone(0, 2)
        );
    }

    #[test]
    fn hyperband_brackets() {
        let h = Hyperband::new(1, 27, 3).expect("test value");
        assert_eq!(h.graces(), &[27, 9, 3, 1]);
        // Bracket sizes 4, 6, 12, 27 of the original algorithm (s = 0 … 3).
        let mut counts = [0usize; 4];
        for i in 0..49 {
            counts[h.bracket(i)] += 1;
        }
        assert_eq!(counts, [4, 6, 12, 27]);
        // Interleaved: the first 8 trials already cover three brackets.
        let first: std::collections::BTreeSet<usize> = (0..8).map(|i| h.bracket(i)).collect();
        assert!(first.len() >= 3, "{first:?}");
        assert!(h.compares(0, 49) && !h.is_milestone(0, 2));
        assert!(Hyperband::new(0, 10, 3).is_err());
        // Bracket 0 never stops anything before the end.
        let b0 = (0..49).find(|i| h.bracket(*i) == 0).expect("test value");
        assert!((1..27).all(|e| !h.is_milestone(b0, e)));
    }

    #[test]
    fn grid_order_and_values() {
        let s = Space::new()
            .with("lr", Param::log_uniform(1e-4, 1e-1).with_grid(4))
            .with("h", Param::categorical([16, 32]))
            .with("n", Param::int(1, 3));
        let g = s.grid().expect("test value");
        assert_eq!(g.len(), 24);
        let lrs: Vec<f64> = g
            .iter()
            .step_by(3)
            .take(4)
            .map(|c| c["lr"].as_f64().expect("test value"))
            .collect();
        assert_eq!(lrs.len(), 4);
        assert_eq!(lrs[0], 1e-4);
        assert!((lrs[1] - 1e-3).abs() < 1e-15 && (lrs[2] - 1e-2).abs() < 1e-14);
        assert_eq!(lrs[3], 1e-1);
        let err = Space::new()
            .with("x", Param::uniform(0.0, 1.0))
            .grid()
            .expect_err("must fail");
        assert!(err.to_string().contains("grid: N"), "{err}");
    }
}
