//! `aistd train` and `aistd evaluate` on CSV files: types inferred, preprocessing inferred from
//! them (imputation, standardization or min-max scaling, one-hot or ordinal encoding, class
//! targets) and saved with the model.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aistd_governance::{CsvOptions, DataSourceExt, open_path};
use aistd_training::data::Dataset;
use aistd_training::nn::Activation;
use aistd_training::optim::{OptimizerConfig, OptimizerKind};
use aistd_training::preprocess::{PrepOptions, Preprocessor, Scaling};
use aistd_training::tensorboard::TrainingLog;
use aistd_training::{
    EpochRecord, MlpModel, Model, NdarrayTrainer, Observer, StepRecord, Task, TrainConfig, metrics,
};
use anyhow::{Context, Result, bail};
use arrow_array::{RecordBatch, UInt32Array};
use arrow_select::concat::concat_batches;
use arrow_select::take::take_record_batch;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::print_json;
use aistd::glue::RdpAccountant;
use aistd_training::quantize::QuantizedMlp;
use aistd_training::{AdversarialConfig, Attack, DpConfig, FineTune, Norm, evaluate_robustness};

/// Where the data comes from and how it is split (`aistd train`, `aistd tune`).
#[derive(Debug, Args)]
pub(crate) struct DataArgs {
    /// Training data (CSV with a header).
    #[arg(long)]
    data: PathBuf,
    /// The column to predict.
    #[arg(long)]
    target: String,
    /// Columns to leave out (repeat).
    #[arg(long)]
    drop: Vec<String>,
    /// Test data; without it, a stratified --test-fraction of --data is held out.
    #[arg(long)]
    test_data: Option<PathBuf>,
    /// Share of --data held out for testing (without --test-data).
    #[arg(long, default_value_t = 0.25)]
    test_fraction: f64,
    /// Share of the training part held out for validation (early stopping, per-epoch metrics;
    /// the values trials are compared on in `aistd tune`). Default: 0 for `train` (0.2 with
    /// --early-stopping), 0.2 for `tune`.
    #[arg(long)]
    validation_fraction: Option<f64>,
    /// Categories in fewer than this share of the training rows are folded into `__other__`.
    #[arg(long, default_value_t = 0.01)]
    min_frequency: f64,
    /// Numeric columns after imputation: `standard` ((x − mean) / sd), `minmax` (the training
    /// rows into [0, 1]) or `none`.
    #[arg(long, default_value = "standard")]
    scale: String,
    /// A string column encoded as one integer (its category's position) instead of one-hot:
    /// `COL` (the training rows' categories, sorted) or `COL=low,medium,high` (in that order).
    /// A value outside the categories is an error, also in held-out rows. Repeat for more
    /// columns.
    #[arg(long)]
    ordinal: Vec<String>,
    /// Treat a numeric target as classes (integer targets with at most 20 distinct values
    /// are classes anyway, unless --regression).
    #[arg(long, conflicts_with = "regression")]
    classify: bool,
    /// Treat a numeric target as values.
    #[arg(long)]
    regression: bool,
}

/// The model and how it is trained (the defaults of what a search space leaves out).
#[derive(Debug, Args)]
pub(crate) struct ModelArgs {
    /// `logreg` (one layer; logistic or softmax regression, or linear for values), `softmax`
    /// (the same) or `mlp`.
    #[arg(long, default_value = "mlp")]
    model: String,
    /// Hidden layer widths for --model mlp.
    #[arg(long, value_delimiter = ',', default_value = "64")]
    hidden: Vec<usize>,
    /// `relu`, `gelu`, `tanh` or `sigmoid`.
    #[arg(long, default_value = "relu")]
    activation: String,
    /// Passes over the data (the most a trial gets in `aistd tune`).
    #[arg(long, default_value_t = 20)]
    epochs: usize,
    /// Examples per step.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// `sgd`, `momentum`, `nesterov`, `adam`, `adamw`, `adagrad` or `rmsprop`.
    #[arg(long, default_value = "adam")]
    optimizer: String,
    /// Learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    /// Weight decay.
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f32,
    /// Dropout probability of hidden units.
    #[arg(long, default_value_t = 0.0)]
    dropout: f32,
    /// Threads for data-parallel training (per trial in `aistd tune`).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Seed of splits, weights, shuffling and dropout.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// `aistd train`.
#[derive(Debug, Args)]
pub(crate) struct TrainArgs {
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    model: ModelArgs,
    /// Stop after this many epochs without a better validation loss, keeping the best weights
    /// (validated on --validation-fraction of the training part, 0.2 unless given).
    #[arg(long)]
    early_stopping: Option<usize>,
    /// `ndarray` (pure Rust) or `tch` (libtorch, CUDA when available; needs the `tch`
    /// feature).
    #[arg(long, default_value = "ndarray")]
    backend: String,
    /// Where to write the model files.
    #[arg(long)]
    out: PathBuf,
    /// Write a checkpoint here after every epoch.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Continue from the checkpoint in --checkpoint (same data, config and seed).
    #[arg(long, requires = "checkpoint")]
    resume: bool,
    /// Log every epoch here as TensorBoard event files and `metrics.jsonl`.
    #[arg(long)]
    logdir: Option<PathBuf>,
    #[command(flatten)]
    dp: DpArgs,
    /// Adversarial training: `fgsm` or `pgd` examples (against the current weights) replace a
    /// fraction of every batch; the test metrics then include accuracy under that attack and
    /// under PGD.
    #[arg(long, requires = "adv_epsilon")]
    adversarial: Option<String>,
    /// The fraction of every batch made adversarial (--adversarial), in (0, 1].
    #[arg(long, default_value_t = 0.5)]
    adv_fraction: f32,
    #[command(flatten)]
    attack: AttackArgs,
    #[command(flatten)]
    fine_tune: FineTuneArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Fine-tuning (`aistd train --init-from`).
#[derive(Debug, Args)]
pub(crate) struct FineTuneArgs {
    /// Start from the layers of this model directory (or safetensors file with `layers.N.weight`
    /// / `layers.N.bias`), bottom up while their shapes match. The preprocessing is fitted
    /// afresh on --data.
    #[arg(long)]
    init_from: Option<PathBuf>,
    /// Copy every layer but the output layer, which starts afresh (a new head).
    #[arg(long, requires = "init_from")]
    new_head: bool,
    /// Layers that do not train: indices, `layers.N` or `head`, comma-separated.
    #[arg(long, value_delimiter = ',')]
    freeze: Vec<String>,
    /// Unfreeze the top-most frozen layer every N epochs.
    #[arg(long, requires = "freeze")]
    unfreeze_every: Option<usize>,
    /// Discriminative learning rates: each layer below the head learns this factor slower than
    /// the one above it (ULMFiT: 2.6).
    #[arg(long)]
    layer_lr_decay: Option<f32>,
}

impl FineTuneArgs {
    fn config(&self, layers: usize, features: &[String]) -> Result<Option<FineTune>> {
        if self.init_from.is_none() && self.freeze.is_empty() && self.layer_lr_decay.is_none() {
            return Ok(None);
        }
        let mut f = FineTune::default();
        if let Some(path) = &self.init_from {
            if path.is_dir() {
                let source = MlpModel::load(path)?;
                let theirs = source.signature().inputs;
                if theirs != features {
                    bail!(
                        "--init-from {}: the model takes the features [{}], this data gives [{}]",
                        path.display(),
                        theirs.join(", "),
                        features.join(", ")
                    );
                }
            }
            f = FineTune::from_path(path);
            if self.new_head {
                f = f.copy_layers(layers - 1);
            }
        }
        f = f.freeze(self.freeze.iter().cloned());
        if let Some(k) = self.unfreeze_every {
            f = f.unfreeze_every(k);
        }
        if let Some(d) = self.layer_lr_decay {
            if !(d >= 1.0 && d.is_finite()) {
                bail!("--layer-lr-decay {d} must be a finite factor ≥ 1");
            }
            f = f.discriminative(layers, d);
        }
        Ok(Some(f))
    }
}

/// An attack's size (`aistd train --adversarial`, `aistd evaluate --attack`).
#[derive(Debug, Args)]
pub(crate) struct AttackArgs {
    /// The attack's radius ε, in the model's input units: numeric columns are standardized by
    /// default, so in standard deviations of the training data (with `--scale minmax`, in
    /// shares of the training range).
    #[arg(long)]
    adv_epsilon: Option<f32>,
    /// The attack's norm: `linf` or `l2` (FGSM is L∞ only).
    #[arg(long, default_value = "linf")]
    adv_norm: String,
}

impl AttackArgs {
    fn attack(&self, name: &str) -> Result<Attack> {
        let eps = self.adv_epsilon.context("an attack needs --adv-epsilon")?;
        Ok(Attack::from_name(
            name,
            Norm::from_name(&self.adv_norm)?,
            eps,
        )?)
    }
}

/// The attacks a robustness report covers: `attack`, then PGD of its norm and radius.
fn robustness_attacks(attack: Attack) -> Vec<Attack> {
    let mut v = vec![attack];
    if let Attack::Fgsm { epsilon } = attack {
        v.push(Attack::pgd(Norm::Linf, epsilon));
    }
    v
}

/// Differentially private training (DP-SGD, either backend), accounted by RDP.
#[derive(Debug, Args)]
pub(crate) struct DpArgs {
    /// DP-SGD with this noise multiplier σ: Gaussian noise of standard deviation σ·C on the
    /// summed clipped gradients, Poisson-sampled batches.
    #[arg(long)]
    dp_noise_multiplier: Option<f64>,
    /// DP-SGD's per-example gradient clip norm C (default 1 when DP-SGD is on).
    #[arg(long)]
    dp_clip: Option<f64>,
    /// DP-SGD's ε budget: training refuses to start if it would spend more; without
    /// --dp-noise-multiplier, the noise is calibrated to spend it.
    #[arg(long)]
    dp_target_epsilon: Option<f64>,
    /// δ of DP-SGD's (ε, δ) guarantee.
    #[arg(long, default_value_t = 1e-5)]
    dp_delta: f64,
}

impl DpArgs {
    /// The DP-SGD settings, or `None` for ordinary training.
    fn config(&self) -> Result<Option<DpConfig>> {
        let clip = self.dp_clip.unwrap_or(1.0);
        let dp = match (self.dp_noise_multiplier, self.dp_target_epsilon) {
            (None, None) if self.dp_clip.is_some() => {
                bail!("--dp-clip needs --dp-noise-multiplier or --dp-target-epsilon")
            }
            (None, None) => return Ok(None),
            (Some(sigma), budget) => {
                let d = DpConfig::new(sigma, clip).with_delta(self.dp_delta);
                match budget {
                    Some(e) => d.with_budget(e),
                    None => d,
                }
            }
            (None, Some(e)) => DpConfig::for_epsilon(e, self.dp_delta, clip),
        };
        Ok(Some(dp))
    }
}

/// `aistd tune`.
#[derive(Debug, Args)]
pub(crate) struct TuneArgs {
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    model: ModelArgs,
    /// The search space (YAML: name → {type: uniform|log_uniform|int|categorical, …}); names
    /// are lr, batch_size, hidden, layers, activation, optimizer, weight_decay, dropout.
    #[arg(long)]
    space: PathBuf,
    /// `grid`, `random` or `tpe`.
    #[arg(long, default_value = "tpe")]
    search: String,
    /// Early stopping of bad trials: `none`, `asha` (η = 4, grace 1), `hyperband` (η = 3) or
    /// `median`.
    #[arg(long, default_value = "asha")]
    scheduler: String,
    /// Trials (default: the whole grid with --search grid, else 20).
    #[arg(long)]
    trials: Option<usize>,
    /// Trials run at once.
    #[arg(long, default_value_t = 1)]
    parallel: usize,
    /// Retrain the best configuration on the training part and write the model here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write the full report (every trial's values) here as JSON.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `aistd evaluate`.
#[derive(Debug, Args)]
pub(crate) struct EvaluateArgs {
    /// A model directory written by `aistd train` or `aistd compress` (f32 or int8).
    #[arg(long)]
    model: PathBuf,
    /// Data with the model's feature columns and its target column.
    #[arg(long)]
    data: PathBuf,
    /// The target column (default: the one the model was trained on).
    #[arg(long)]
    target: Option<String>,
    /// Also measure accuracy under this attack (`fgsm` or `pgd`) and PGD of the same size.
    #[arg(long, requires = "adv_epsilon")]
    attack: Option<String>,
    #[command(flatten)]
    attack_size: AttackArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// The rows of a CSV file (types inferred: numbers, booleans, strings; empty fields are nulls).
fn read_batch(path: &Path) -> Result<RecordBatch> {
    let source = open_path(path, CsvOptions::default())
        .with_context(|| format!("opening {}", path.display()))?;
    let batches = source.collect()?;
    let schema = source.schema();
    Ok(concat_batches(&schema, &batches)?)
}

fn take(batch: &RecordBatch, rows: &[usize]) -> Result<RecordBatch> {
    let idx = UInt32Array::from(rows.iter().map(|r| *r as u32).collect::<Vec<_>>());
    Ok(take_record_batch(batch, &idx)?)
}

/// Test metrics of `model` on `d` (its class names mapped by name).
fn evaluate(model: &MlpModel, d: &Dataset) -> Result<serde_json::Value> {
    metrics_of(model.task(), model.predict(d.x.view())?, d)
}

/// Metrics of predictions `p` (probabilities for classes, values otherwise) of a model for
/// `task` on `d`.
fn metrics_of(task: &Task, p: ndarray::Array2<f32>, d: &Dataset) -> Result<serde_json::Value> {
    Ok(match (task, &d.y) {
        (
            Task::Classification { classes },
            aistd_training::data::Target::Classes { labels, names },
        ) => {
            let truth: Vec<u32> = labels
                .iter()
                .map(|l| {
                    let name = &names[*l as usize];
                    classes
                        .iter()
                        .position(|c| c == name)
                        .map(|i| i as u32)
                        .with_context(|| format!("class {name:?} is unknown to the model"))
                })
                .collect::<Result<_>>()?;
            let probs: Vec<Vec<f32>> = p.outer_iter().map(|r| r.to_vec()).collect();
            let pred: Vec<u32> = probs
                .iter()
                .map(|r| {
                    r.iter()
                        .enumerate()
                        .max_by(|a, b| a.1.total_cmp(b.1))
                        .map_or(0, |(i, _)| i as u32)
                })
                .collect();
            let mut v = serde_json::json!({
                "rows": d.len(),
                "accuracy": metrics::accuracy(&truth, &pred)?,
                "macro_f1": metrics::macro_f1(&truth, &pred, classes.len() as u32)?,
                "log_loss": metrics::log_loss(&truth, &probs)?,
            });
            if classes.len() == 2 {
                let scores: Vec<f32> = probs.iter().map(|r| r[1]).collect();
                if let Ok(auc) = metrics::roc_auc(&truth, &scores) {
                    v["roc_auc"] = auc.into();
                }
            }
            v
        }
        (Task::Regression, aistd_training::data::Target::Values(y)) => {
            let pred: Vec<f32> = p.column(0).to_vec();
            serde_json::json!({
                "rows": d.len(),
                "mse": metrics::mse(y, &pred)?,
                "mae": metrics::mae(y, &pred)?,
                "r2": metrics::r2(y, &pred)?,
            })
        }
        _ => bail!("the data's target is not the kind the model predicts"),
    })
}

struct Bar(ProgressBar, Option<TrainingLog>);

impl Observer for Bar {
    fn on_step(&mut self, r: &StepRecord) {
        if let Some(log) = &mut self.1 {
            log.on_step(r);
        }
    }

    fn on_epoch(&mut self, r: &EpochRecord) {
        if let Some(log) = &mut self.1 {
            log.on_epoch(r);
        }
        self.0.set_position(r.epoch as u64);
        let valid = r
            .valid_metric
            .map(|m| format!(", validation {m:.4}"))
            .unwrap_or_default();
        self.0
            .set_message(format!("loss {:.4}{valid}", r.train_loss));
        tracing::debug!(epoch = r.epoch, loss = r.train_loss, valid = ?r.valid_metric, "epoch");
    }
}

/// The preprocessing and the datasets it made.
struct Prepared {
    prep: Preprocessor,
    train: Dataset,
    valid: Option<Dataset>,
    test: Dataset,
}

/// Reads and splits the data: held-out parts are cut first (stratified by the target), so that
/// the preprocessing is fitted on the training rows only.
fn prepare(a: &DataArgs, validation_fraction: f64, seed: u64) -> Result<Prepared> {
    let all = read_batch(&a.data)?;
    let mut opts = PrepOptions::default();
    opts.min_frequency = a.min_frequency;
    opts.scaling = Scaling::from_name(&a.scale)?;
    opts.ordinal = a
        .ordinal
        .iter()
        .map(|o| match o.split_once('=') {
            Some((col, order)) => {
                let order: Vec<String> = order.split(',').map(|c| c.trim().to_string()).collect();
                if order.iter().any(String::is_empty) {
                    bail!("--ordinal {o}: an empty category in the order (COL=a,b,c, or COL alone for sorted)");
                }
                Ok((col.trim().to_string(), order))
            }
            None => Ok((o.trim().to_string(), Vec::new())),
        })
        .collect::<Result<_>>()?;
    let strata = |b: &RecordBatch| -> Result<Dataset> {
        let mut p = Preprocessor::fit(std::slice::from_ref(b), &a.target, &a.drop, &opts)?;
        force_task(&mut p, b, a.classify, a.regression)?;
        Ok(p.dataset(std::slice::from_ref(b))?)
    };
    let (train_rows, test_batch) = match &a.test_data {
        Some(t) => (all, read_batch(t)?),
        None => {
            let parts =
                strata(&all)?.split_indices(&[1.0 - a.test_fraction, a.test_fraction], seed)?;
            (take(&all, &parts[0])?, take(&all, &parts[1])?)
        }
    };
    let (train_batch, valid_batch) = if validation_fraction > 0.0 {
        let parts = strata(&train_rows)?.split_indices(
            &[1.0 - validation_fraction, validation_fraction],
            seed ^ 0x5eed,
        )?;
        (
            take(&train_rows, &parts[0])?,
            Some(take(&train_rows, &parts[1])?),
        )
    } else {
        (train_rows, None)
    };
    let mut prep = Preprocessor::fit(
        std::slice::from_ref(&train_batch),
        &a.target,
        &a.drop,
        &opts,
    )?;
    force_task(&mut prep, &train_batch, a.classify, a.regression)?;
    let train = prep.dataset(std::slice::from_ref(&train_batch))?;
    let test = prep.dataset(std::slice::from_ref(&test_batch))?;
    let valid = match &valid_batch {
        Some(v) => Some(prep.dataset(std::slice::from_ref(v))?),
        None => None,
    };
    Ok(Prepared {
        prep,
        train,
        valid,
        test,
    })
}

/// The training config of the model flags.
fn train_config(m: &ModelArgs) -> Result<TrainConfig> {
    let mut config = TrainConfig::default();
    config.hidden = match m.model.as_str() {
        "mlp" => m.hidden.clone(),
        "logreg" | "softmax" | "linear" => Vec::new(),
        other => bail!("--model must be logreg, softmax or mlp, not `{other}`"),
    };
    config.activation = Activation::from_name(&m.activation)?;
    let mut opt = OptimizerConfig::new(OptimizerKind::from_name(&m.optimizer)?, m.lr);
    opt.weight_decay = m.weight_decay;
    config.optimizer = opt;
    config.epochs = m.epochs;
    config.batch_size = m.batch_size;
    config.dropout = m.dropout;
    config.threads = m.threads;
    config.seed = m.seed;
    // The preprocessing already standardized the numeric columns.
    config.standardize = false;
    Ok(config)
}

/// Trains with the named backend.
fn fit_backend(
    backend: &str,
    train: &Dataset,
    valid: Option<&Dataset>,
    config: &TrainConfig,
    observer: &mut dyn Observer,
) -> Result<(MlpModel, aistd_training::History)> {
    #[cfg(feature = "tch")]
    if backend == "tch" {
        let trainer = aistd_training::TchTrainer::default();
        tracing::info!(cuda = trainer.is_cuda(), "training with libtorch");
        let rdp = RdpAccountant::default();
        return Ok(trainer.fit_mlp_with(train, valid, config, Some(&rdp), observer)?);
    }
    debug_assert_eq!(backend, "ndarray");
    let rdp = RdpAccountant::default();
    Ok(NdarrayTrainer.fit_mlp_with(train, valid, config, Some(&rdp), observer)?)
}

/// `aistd train`.
pub(crate) fn train(a: TrainArgs) -> Result<ExitCode> {
    let backend = match a.backend.as_str() {
        "ndarray" => "ndarray",
        #[cfg(feature = "tch")]
        "tch" => "tch",
        #[cfg(not(feature = "tch"))]
        "tch" => bail!(
            "--backend tch: this aistd was built without the `tch` feature (libtorch); rebuild with --features tch"
        ),
        other => bail!("--backend must be ndarray or tch, not `{other}`"),
    };
    let Prepared {
        prep,
        train,
        valid,
        test,
    } = prepare(
        &a.data,
        a.data
            .validation_fraction
            .unwrap_or(if a.early_stopping.is_some() { 0.2 } else { 0.0 }),
        a.model.seed,
    )?;
    let mut config = train_config(&a.model)?;
    config.dp = a.dp.config()?;
    let attack = match &a.adversarial {
        Some(name) => Some(a.attack.attack(name)?),
        None => None,
    };
    config.adversarial = attack.map(|at| AdversarialConfig::new(at).with_fraction(a.adv_fraction));
    config.fine_tune = a
        .fine_tune
        .config(config.hidden.len() + 1, &train.features)?;
    config.early_stopping = a.early_stopping;
    config.checkpoint = a.checkpoint.clone();
    config.resume = a.resume;
    if a.early_stopping.is_some() && valid.is_none() {
        bail!("--early-stopping needs a validation part: --validation-fraction must be > 0");
    }
    let bar = if a.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(config.epochs as u64)
    };
    if let Ok(style) = ProgressStyle::with_template("epoch {pos}/{len} {bar:30} {elapsed} {msg}") {
        bar.set_style(style);
    }
    let log = match &a.logdir {
        Some(d) => Some(TrainingLog::create(d)?),
        None => None,
    };
    let mut observer = Bar(bar.clone(), log);
    let t = std::time::Instant::now();
    let (model, history) = fit_backend(backend, &train, valid.as_ref(), &config, &mut observer)?;
    let model = model.with_preprocessor(prep)?;
    let seconds = t.elapsed().as_secs_f64();
    bar.finish_and_clear();
    if let Some(log) = observer.1.take() {
        log.finish()?;
    }
    let mut model = model;
    let mut test_metrics = evaluate(&model, &test)?;
    let validation = valid.as_ref().map(|v| evaluate(&model, v)).transpose()?;
    // The test metrics are saved in the manifest's training record too.
    let recorded = test_metrics
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((format!("test_{k}"), v.as_f64()?)))
        .collect::<Vec<_>>();
    model.add_metrics(recorded)?;
    model.save(&a.out)?;
    if let Some(at) = attack {
        test_metrics["robustness"] = serde_json::to_value(evaluate_robustness(
            &model,
            &test,
            &robustness_attacks(at),
            None,
            a.model.seed,
        )?)?;
    }
    let train_metrics = evaluate(&model, &train)?;
    let samples = history.epochs.len() as f64 * train.len() as f64;
    let out = serde_json::json!({
        "backend": backend,
        "rows": {"train": train.len(), "validation": valid.as_ref().map(Dataset::len), "test": test.len()},
        "train": train_metrics,
        "test": test_metrics,
        "validation": validation,
        "epochs_run": history.epochs.len(),
        "best_epoch": history.best_epoch,
        "stopped_early": history.stopped_early,
        "seconds": seconds,
        "samples_per_second": samples / seconds.max(1e-12),
        "history": history.epochs,
        "privacy": history.privacy,
        "model_dir": a.out,
    });
    if a.json {
        print_json(&out)?;
    } else {
        println!(
            "{} epochs in {:.2} s ({:.0} samples/s); train {}; test {}; model in {}",
            history.epochs.len(),
            seconds,
            samples / seconds.max(1e-12),
            out["train"],
            out["test"],
            a.out.display()
        );
        if let Some(p) = &history.privacy {
            println!(
                "DP-SGD: ε = {} at δ = {} (σ = {:.4}, clip {}, sampling rate {:.5}, {} steps, {} accountant)",
                p.epsilon.map_or("∞".to_string(), |e| format!("{e:.4}")),
                p.delta,
                p.noise_multiplier,
                p.clip_norm,
                p.sampling_rate,
                p.steps,
                p.accountant.as_deref().unwrap_or("no")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `aistd evaluate`.
pub(crate) fn run_evaluate(a: &EvaluateArgs) -> Result<ExitCode> {
    let saved = aistd_training::SavedMlp::load(&a.model)?;
    let model = saved.float();
    let prep = model
        .preprocessor()
        .context("the model has no saved preprocessing; retrain it with `aistd train`")?;
    if let Some(target) = a.target.as_ref().filter(|t| **t != prep.target) {
        bail!("--target {target}: the model predicts `{}`", prep.target);
    }
    let batch = read_batch(&a.data)?;
    let d = prep.dataset(std::slice::from_ref(&batch))?;
    // An int8 model is scored on its integer path.
    let mut v = metrics_of(model.task(), saved.predict(d.x.view())?, &d)?;
    v["format"] = saved.format().into();
    if let Some(name) = &a.attack {
        if let aistd_training::SavedMlp::Int8(_) = saved {
            bail!(
                "--attack {name}: an int8 model has no gradients to attack; attack the f32 model it was quantized from"
            );
        }
        let at = a.attack_size.attack(name)?;
        v["robustness"] = serde_json::to_value(evaluate_robustness(
            model,
            &d,
            &robustness_attacks(at),
            None,
            0,
        )?)?;
    }
    if a.json {
        print_json(&v)?;
    } else {
        println!("{v}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Applies --classify / --regression to the inferred target plan.
fn force_task(
    p: &mut Preprocessor,
    b: &RecordBatch,
    classify: bool,
    regression: bool,
) -> Result<()> {
    use aistd_training::preprocess::TargetPlan;
    if regression {
        p.target_plan = TargetPlan::Values;
    } else if classify && p.target_plan == TargetPlan::Values {
        let col = b.column_by_name(&p.target).context("the target column")?;
        let s = arrow_cast::cast(col, &arrow_schema::DataType::Utf8)?;
        let s = s
            .as_any()
            .downcast_ref::<arrow_array::StringArray>()
            .context("the target as text")?;
        let mut names: Vec<String> = s.iter().flatten().map(str::to_string).collect();
        names.sort_by(|x, y| match (x.parse::<f64>(), y.parse::<f64>()) {
            (Ok(x), Ok(y)) => x.total_cmp(&y),
            _ => x.cmp(y),
        });
        names.dedup();
        p.target_plan = TargetPlan::Classes { names };
    }
    Ok(())
}

/// `aistd tune`: a hyperparameter search on the training part, judged on the validation part;
/// the best configuration optionally retrained and saved.
pub(crate) fn tune(a: TuneArgs) -> Result<ExitCode> {
    use aistd_training::tune::{self, Executor as _, Sampler, Space};
    let text = std::fs::read_to_string(&a.space)
        .with_context(|| format!("reading --space {}", a.space.display()))?;
    let space =
        Space::from_yaml(&text).with_context(|| format!("--space {}", a.space.display()))?;
    let fraction = a.data.validation_fraction.unwrap_or(0.2);
    if fraction <= 0.0 {
        bail!("aistd tune compares trials on a validation part: --validation-fraction must be > 0");
    }
    let Prepared {
        prep,
        train,
        valid,
        test,
    } = prepare(&a.data, fraction, a.model.seed)?;
    let valid = valid.context("the validation part")?;
    let base = train_config(&a.model)?;
    // Every name in the space must mean something before any trial runs.
    tune::apply(&base, &space.sample(&mut aistd_training::rng::Rng::new(0)))?;
    let seed = a.model.seed;
    let mut sampler: Box<dyn Sampler> = match a.search.as_str() {
        "grid" => Box::new(tune::GridSampler::new(seed)),
        "random" => Box::new(tune::RandomSampler::new(seed)),
        "tpe" => Box::new(tune::TpeSampler::new(seed)),
        other => bail!("--search must be grid, random or tpe, not `{other}`"),
    };
    let pruner: Box<dyn tune::Pruner> = match a.scheduler.as_str() {
        "none" => Box::new(tune::NoPruner),
        "asha" => Box::new(tune::SuccessiveHalving::default()),
        "hyperband" => Box::new(tune::Hyperband::new(1, base.epochs, 3)?),
        "median" => Box::new(tune::MedianStopping::default()),
        other => bail!("--scheduler must be none, asha, hyperband or median, not `{other}`"),
    };
    let trials = match (a.trials, a.search.as_str()) {
        (Some(0), _) => bail!("--trials must be ≥ 1"),
        (Some(n), "grid") => n.min(space.grid()?.len()),
        (Some(n), _) => n,
        (None, "grid") => space.grid()?.len(),
        (None, _) => 20,
    };
    let executor = tune::Threads(a.parallel.max(1));
    let objective = tune::MlpObjective {
        train: &train,
        valid: &valid,
        base: base.clone(),
    };
    let bar = if a.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(trials as u64)
    };
    if let Ok(style) = ProgressStyle::with_template("trial {pos}/{len} {bar:30} {elapsed} {msg}") {
        bar.set_style(style);
    }
    let best_so_far = std::sync::Mutex::new(f64::NEG_INFINITY);
    let on_trial = |t: &tune::TrialRecord| {
        bar.inc(1);
        if let Some(v) = t.value() {
            let mut b = best_so_far.lock().unwrap_or_else(|e| e.into_inner());
            if v > *b {
                *b = v;
                bar.set_message(format!("best {v:.4}"));
            }
        }
    };
    tracing::info!(
        trials,
        slots = executor.slots(),
        sampler = a.search,
        scheduler = a.scheduler,
        "tuning"
    );
    let report = tune::tune(
        &space,
        &objective,
        sampler.as_mut(),
        pruner.as_ref(),
        &executor,
        &tune::TuneOptions::new(trials, seed),
        &on_trial,
    )?;
    bar.finish_and_clear();
    let best = report
        .best()
        .context("no trial finished with a value (see the failed trials in --report)")?;
    let full = report.trials.len() * report.max_epochs;
    let mut out = serde_json::json!({
        "search": report.sampler,
        "scheduler": report.pruner,
        "trials": report.trials.len(),
        "completed": report.trials.iter().filter(|t| t.state == tune::TrialState::Completed).count(),
        "pruned": report.trials.iter().filter(|t| t.state == tune::TrialState::Pruned).count(),
        "failed": report.trials.iter().filter(|t| matches!(t.state, tune::TrialState::Failed(_))).count(),
        "epochs": report.epochs(),
        "epochs_without_stopping": full,
        "seconds": report.seconds,
        "best": {"trial": best.id, "config": best.config, "validation": best.value(), "epochs": best.epochs()},
    });
    if let Some(path) = &a.report {
        let json = serde_json::to_vec_pretty(&report)?;
        std::fs::write(path, json)
            .with_context(|| format!("writing --report {}", path.display()))?;
    }
    if let Some(dir) = &a.out {
        let config = tune::apply(&base, &best.config)?;
        let (model, _) =
            NdarrayTrainer.fit_mlp(&train, Some(&valid), &config, &mut aistd_training::Silent)?;
        let model = model.with_preprocessor(prep)?;
        model.save(dir)?;
        out["test"] = evaluate(&model, &test)?;
        out["model_dir"] = serde_json::json!(dir);
    }
    if a.json {
        print_json(&out)?;
    } else {
        print!("{}", report.table());
        println!(
            "best: trial {} {} validation {:.4}; {} of {} epochs ({:.1}%) in {:.1} s",
            best.id,
            serde_json::to_string(&best.config)?,
            best.value().unwrap_or(f64::NAN),
            report.epochs(),
            full,
            100.0 * report.epochs() as f64 / full.max(1) as f64,
            report.seconds
        );
        if let Some(dir) = &a.out {
            println!(
                "retrained best: test {}; model in {}",
                out["test"],
                dir.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `aistd train-bench` (hidden).
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// `digits` (1,797 × 64 → 128 → 10, cross-entropy, batch 64) or `wide` (--rows × 100 →
    /// 256 → 256 → 1, squared error, batch 256), both with Adam at 1e-3.
    #[arg(long, default_value = "digits")]
    workload: String,
    /// Rows of the `wide` workload.
    #[arg(long, default_value_t = 200_000)]
    rows: usize,
    /// `ndarray` or `tch`.
    #[arg(long, default_value = "ndarray")]
    backend: String,
    /// Threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Epochs timed (after one warm-up epoch).
    #[arg(long, default_value_t = 3)]
    epochs: usize,
}

/// Times epochs of a fixed workload and prints JSON.
pub(crate) fn bench(a: &BenchArgs) -> Result<ExitCode> {
    let (data, hidden, batch) = match a.workload.as_str() {
        "digits" => (aistd_training::data::digits()?, vec![128], 64),
        "wide" => (
            aistd_training::data::synthetic_regression(a.rows, 100, 7)?,
            vec![256, 256],
            256,
        ),
        other => bail!("--workload must be digits or wide, not `{other}`"),
    };
    let mut config = TrainConfig::default();
    config.hidden = hidden;
    config.batch_size = batch;
    config.epochs = a.epochs + 1;
    config.threads = a.threads;
    config.standardize = false;
    let backend = match a.backend.as_str() {
        "ndarray" => "ndarray",
        "tch" if cfg!(feature = "tch") => "tch",
        other => bail!("--backend {other}: not built (ndarray, or tch with the `tch` feature)"),
    };
    let (_, history) = fit_backend(backend, &data, None, &config, &mut aistd_training::Silent)?;
    let times: Vec<f64> = history.epochs.iter().skip(1).map(|e| e.seconds).collect();
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    print_json(&serde_json::json!({
        "workload": a.workload,
        "backend": backend,
        "threads": a.threads,
        "rows": data.len(),
        "epoch_seconds": times,
        "median_epoch_seconds": sorted.get(sorted.len().saturating_sub(1) / 2),
        "final_loss": history.epochs.last().map(|e| e.train_loss),
    }))?;
    Ok(ExitCode::SUCCESS)
}

/// `aistd privacy tradeoff`.
#[derive(Debug, Args)]
pub(crate) struct TradeoffArgs {
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    model: ModelArgs,
    /// The ε budgets to train at, each with the noise calibrated to spend it.
    #[arg(long, value_delimiter = ',', default_value = "0.5,1,2,4,8")]
    epsilons: Vec<f64>,
    /// Per-example gradient clip norm C.
    #[arg(long, default_value_t = 1.0)]
    dp_clip: f64,
    /// δ of every (ε, δ) guarantee.
    #[arg(long, default_value_t = 1e-5)]
    dp_delta: f64,
    /// Where to write `tradeoff.csv` and `tradeoff.svg`.
    #[arg(long)]
    out: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// One model of the trade-off: its test metric, what it spent, and how long it took.
#[derive(Debug, serde::Serialize)]
struct TradeoffPoint {
    epsilon_budget: Option<f64>,
    epsilon: Option<f64>,
    noise_multiplier: Option<f64>,
    steps: Option<u64>,
    metric: f64,
    seconds: f64,
}

/// Trains the model once without privacy and once per ε budget with DP-SGD, on the same split,
/// and reports the test metric (accuracy, or R² for values) against ε: a table, `tradeoff.csv`
/// and `tradeoff.svg`.
pub(crate) fn privacy_tradeoff(a: TradeoffArgs) -> Result<ExitCode> {
    if a.epsilons.is_empty() {
        bail!("--epsilons: give at least one ε");
    }
    if let Some(e) = a.epsilons.iter().find(|e| !(**e > 0.0 && e.is_finite())) {
        bail!("--epsilons: {e} is not a positive, finite ε");
    }
    let Prepared { train, test, .. } = prepare(&a.data, 0.0, a.model.seed)?;
    let base = train_config(&a.model)?;
    let rdp = RdpAccountant::default();
    let bar = if a.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(a.epsilons.len() as u64 + 1)
    };
    if let Ok(style) = ProgressStyle::with_template("model {pos}/{len} {bar:30} {elapsed} {msg}") {
        bar.set_style(style);
    }
    let mut metric_name = "accuracy";
    let mut run = |budget: Option<f64>| -> Result<TradeoffPoint> {
        bar.set_message(budget.map_or("non-private".into(), |e| format!("ε = {e}")));
        let mut config = base.clone();
        config.dp = budget.map(|e| DpConfig::for_epsilon(e, a.dp_delta, a.dp_clip));
        let t = std::time::Instant::now();
        let (model, history) = NdarrayTrainer.fit_mlp_with(
            &train,
            None,
            &config,
            Some(&rdp),
            &mut aistd_training::Silent,
        )?;
        let seconds = t.elapsed().as_secs_f64();
        metric_name = match model.task() {
            Task::Regression => "r2",
            _ => "accuracy",
        };
        let metric = evaluate(&model, &test)?[metric_name]
            .as_f64()
            .context("the test metric")?;
        bar.inc(1);
        let p = history.privacy;
        Ok(TradeoffPoint {
            epsilon_budget: budget,
            epsilon: p.as_ref().and_then(|p| p.epsilon),
            noise_multiplier: p.as_ref().map(|p| p.noise_multiplier),
            steps: p.as_ref().map(|p| p.steps),
            metric,
            seconds,
        })
    };
    let plain = run(None)?;
    let points = a
        .epsilons
        .iter()
        .map(|e| run(Some(*e)))
        .collect::<Result<Vec<_>>>()?;
    bar.finish_and_clear();

    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
    let mut csv = format!(
        "epsilon_budget,epsilon,delta,noise_multiplier,clip_norm,steps,{metric_name},seconds\n"
    );
    for p in std::iter::once(&plain).chain(&points) {
        csv.push_str(&format!(
            "{},{},{},{},{},{},{},{}\n",
            opt(p.epsilon_budget),
            opt(p.epsilon),
            a.dp_delta,
            opt(p.noise_multiplier),
            a.dp_clip,
            p.steps.map_or(String::new(), |s| s.to_string()),
            p.metric,
            p.seconds
        ));
    }
    let (csv_path, svg_path) = (a.out.join("tradeoff.csv"), a.out.join("tradeoff.svg"));
    std::fs::write(&csv_path, csv).with_context(|| format!("writing {}", csv_path.display()))?;
    let curve: Vec<(f64, f64)> = points
        .iter()
        .map(|p| (p.epsilon.unwrap_or(f64::INFINITY), p.metric))
        .collect();
    std::fs::write(
        &svg_path,
        tradeoff_svg(metric_name, a.dp_delta, plain.metric, &curve),
    )
    .with_context(|| format!("writing {}", svg_path.display()))?;
    if a.json {
        print_json(&serde_json::json!({
            "metric": metric_name,
            "delta": a.dp_delta,
            "clip_norm": a.dp_clip,
            "rows": {"train": train.len(), "test": test.len()},
            "non_private": plain,
            "points": points,
            "csv": csv_path,
            "svg": svg_path,
        }))?;
    } else {
        println!(
            "{:>12} {:>10} {:>10} {:>7} {:>10}",
            "ε budget", "ε spent", "σ", "steps", metric_name
        );
        println!(
            "{:>12} {:>10} {:>10} {:>7} {:>10.4}",
            "non-private", "-", "-", "-", plain.metric
        );
        for p in &points {
            println!(
                "{:>12} {:>10.4} {:>10.4} {:>7} {:>10.4}",
                opt(p.epsilon_budget),
                p.epsilon.unwrap_or(f64::INFINITY),
                p.noise_multiplier.unwrap_or(f64::NAN),
                p.steps.unwrap_or(0),
                p.metric
            );
        }
        println!(
            "δ = {}, clip {}; {} and {}",
            a.dp_delta,
            a.dp_clip,
            csv_path.display(),
            svg_path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The test metric against ε (log scale), with the non-private model's as a dashed line.
fn tradeoff_svg(metric: &str, delta: f64, plain: f64, points: &[(f64, f64)]) -> String {
    let (w, h, left, right, top, bottom) = (640.0, 400.0, 64.0, 24.0, 36.0, 48.0);
    let finite: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(e, m)| e.is_finite() && *e > 0.0 && m.is_finite())
        .collect();
    let (mut x_lo, mut x_hi) = finite
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (e, _)| {
            (lo.min(e.ln()), hi.max(e.ln()))
        });
    if !(x_lo.is_finite() && x_hi > x_lo) {
        (x_lo, x_hi) = (x_lo.min(0.0) - 1.0, x_hi.max(0.0) + 1.0);
    }
    let pad = 0.06 * (x_hi - x_lo);
    let (x_lo, x_hi) = (x_lo - pad, x_hi + pad);
    let values = finite.iter().map(|p| p.1).chain([plain]);
    let (y_min, y_max) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let span = (y_max - y_min).max(0.02);
    let (y_lo, y_hi) = (y_min - 0.1 * span, y_max + 0.1 * span);
    let x = |e: f64| left + (e.ln() - x_lo) / (x_hi - x_lo) * (w - left - right);
    let y = |v: f64| top + (y_hi - v) / (y_hi - y_lo) * (h - top - bottom);
    let mut o = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\n<title>Test {metric} against ε (DP-SGD, δ = {delta})</title>\n<rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>\n<text x=\"{left}\" y=\"20\" font-size=\"13\">Test {metric} against ε (DP-SGD, δ = {delta}, RDP accounting)</text>\n"
    );
    o.push_str(&format!(
        "<line x1=\"{left}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"black\"/><line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{b}\" stroke=\"black\"/>\n",
        b = h - bottom,
        r = w - right
    ));
    for i in 0..=4 {
        let v = y_lo + (y_hi - y_lo) * f64::from(i) / 4.0;
        o.push_str(&format!(
            "<line x1=\"{l}\" y1=\"{py:.1}\" x2=\"{left}\" y2=\"{py:.1}\" stroke=\"black\"/><text x=\"{tx}\" y=\"{ty:.1}\" text-anchor=\"end\">{v:.3}</text>\n",
            l = left - 4.0,
            py = y(v),
            tx = left - 6.0,
            ty = y(v) + 4.0
        ));
    }
    for (e, _) in &finite {
        o.push_str(&format!(
            "<line x1=\"{px:.1}\" y1=\"{b}\" x2=\"{px:.1}\" y2=\"{b4}\" stroke=\"black\"/><text x=\"{px:.1}\" y=\"{ty}\" text-anchor=\"middle\">{e:.3}</text>\n",
            px = x(*e),
            b = h - bottom,
            b4 = h - bottom + 4.0,
            ty = h - bottom + 16.0
        ));
    }
    o.push_str(&format!(
        "<text x=\"{cx}\" y=\"{ty}\" text-anchor=\"middle\">ε spent (log scale)</text>\n",
        cx = (left + w - right) / 2.0,
        ty = h - 10.0
    ));
    o.push_str(&format!(
        "<line x1=\"{left}\" y1=\"{py:.1}\" x2=\"{r}\" y2=\"{py:.1}\" stroke=\"#59a14f\" stroke-dasharray=\"6 4\"/><text x=\"{tx}\" y=\"{ty:.1}\" text-anchor=\"end\" fill=\"#59a14f\">non-private {plain:.4}</text>\n",
        py = y(plain),
        r = w - right,
        tx = w - right - 4.0,
        ty = y(plain) - 6.0
    ));
    let path: Vec<String> = finite
        .iter()
        .map(|(e, m)| format!("{:.1},{:.1}", x(*e), y(*m)))
        .collect();
    o.push_str(&format!(
        "<polyline points=\"{}\" fill=\"none\" stroke=\"#4e79a7\" stroke-width=\"2\"/>\n",
        path.join(" ")
    ));
    for (e, m) in &finite {
        o.push_str(&format!(
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\" fill=\"#4e79a7\"><title>ε = {e:.3}: {metric} {m:.4}</title></circle>\n",
            x(*e),
            y(*m)
        ));
    }
    o.push_str("</svg>\n");
    o
}

/// `aistd federated`.
#[derive(Debug, Args)]
pub(crate) struct FederatedArgs {
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    model: ModelArgs,
    /// Clients the training rows are split among.
    #[arg(long, default_value_t = 10)]
    clients: usize,
    /// Rounds of communication.
    #[arg(long, default_value_t = 50)]
    rounds: usize,
    /// The fraction of clients taking part in each round.
    #[arg(long, default_value_t = 1.0)]
    fraction: f64,
    /// Label skew: the rows sorted by class and cut into 2 shards per client (McMahan et al.'s
    /// non-IID split) instead of a random, equal split.
    #[arg(long)]
    non_iid: bool,
    /// FedProx's μ (0: FedAvg).
    #[arg(long, default_value_t = 0.0)]
    mu: f32,
    /// Turn off secure aggregation (pairwise masks).
    #[arg(long)]
    no_secure_aggregation: bool,
    /// Stop after the first round whose global model reaches this accuracy on a validation part
    /// of the training rows (--validation-fraction, 0.2 unless given); reported as
    /// `reached_target`.
    #[arg(long)]
    target_accuracy: Option<f64>,
    /// Client-level DP: clip each client's update to this L2 norm.
    #[arg(long, requires = "client_dp_noise")]
    client_dp_clip: Option<f64>,
    /// Client-level DP: noise multiplier.
    #[arg(long, requires = "client_dp_clip")]
    client_dp_noise: Option<f64>,
    /// Also train the same model centrally on all training rows, for comparison (as many
    /// passes over the data as the clients made together).
    #[arg(long)]
    central: bool,
    /// Where to write the global model.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Simulates federated training: the training rows split among clients (threads here), each
/// training locally; the test rows measure the global model after every round. The
/// preprocessing is fitted on all training rows, standing for one the clients agreed on.
pub(crate) fn federated(a: FederatedArgs) -> Result<ExitCode> {
    use aistd_training::federated::{
        Algorithm, Client, ClientDp, DatasetClient, FederatedConfig, split_iid, split_label_skew,
        train_federated,
    };
    // With a target accuracy the server judges rounds on a validation part of the training rows
    // (20% unless told), so that the test rows stay unseen.
    let fraction = a
        .data
        .validation_fraction
        .unwrap_or(if a.target_accuracy.is_some() {
            0.2
        } else {
            0.0
        });
    let Prepared {
        prep,
        train,
        valid,
        test,
    } = prepare(&a.data, fraction, a.model.seed)?;
    if train.labels().is_none() {
        bail!("aistd federated trains classifiers: the target has values (use --classify?)");
    }
    let shards = if a.non_iid {
        split_label_skew(&train, a.clients, 2, a.model.seed)?
    } else {
        split_iid(&train, a.clients, a.model.seed)?
    };
    let owned = shards
        .into_iter()
        .enumerate()
        .map(|(i, d)| DatasetClient::new(format!("client-{i}"), d))
        .collect::<aistd_training::Result<Vec<_>>>()?;
    let clients: Vec<&dyn Client> = owned.iter().map(|c| c as &dyn Client).collect();
    let mut config = FederatedConfig::default();
    config.local = train_config(&a.model)?;
    config.rounds = a.rounds;
    config.fraction = a.fraction;
    config.seed = a.model.seed;
    config.secure_aggregation = !a.no_secure_aggregation;
    config.target_accuracy = a.target_accuracy;
    if a.mu > 0.0 {
        config.algorithm = Algorithm::FedProx { mu: a.mu };
    } else if a.mu < 0.0 || !a.mu.is_finite() {
        bail!("--mu {} must be ≥ 0", a.mu);
    }
    if let (Some(clip), Some(noise)) = (a.client_dp_clip, a.client_dp_noise) {
        config.client_dp = Some(ClientDp::new(clip, noise));
    }
    let bar = if a.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(a.rounds as u64)
    };
    if let Ok(style) = ProgressStyle::with_template("round {pos}/{len} {bar:30} {elapsed} {msg}") {
        bar.set_style(style);
    }
    let mut observer = Bar(bar.clone(), None);
    let rdp = RdpAccountant::default();
    let t = std::time::Instant::now();
    let (model, history) = train_federated(
        &clients,
        Some(valid.as_ref().unwrap_or(&test)),
        &config,
        Some(&rdp),
        &mut observer,
    )?;
    let seconds = t.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let model = model.with_preprocessor(prep)?;
    let test_metrics = evaluate(&model, &test)?;
    let central = if a.central {
        // As many passes over the data as the clients made together.
        let mut c = train_config(&a.model)?;
        c.epochs = ((c.epochs * history.rounds.len()) as f64 * a.fraction).ceil() as usize;
        let (m, _) = NdarrayTrainer.fit_mlp(&train, None, &c, &mut aistd_training::Silent)?;
        Some(evaluate(&m, &test)?)
    } else {
        None
    };
    if let Some(dir) = &a.out {
        model.save(dir)?;
    }
    let sizes: Vec<usize> = owned.iter().map(Client::examples).collect();
    let out = serde_json::json!({
        "clients": a.clients,
        "client_rows": sizes,
        "non_iid": a.non_iid,
        "algorithm": config.algorithm,
        "secure_aggregation": config.secure_aggregation,
        "rounds_run": history.rounds.len(),
        "reached_target": history.reached_target,
        "test": test_metrics,
        "central_test": central,
        "rounds": history.rounds,
        "privacy": history.privacy,
        "seconds": seconds,
        "model_dir": a.out,
    });
    if a.json {
        print_json(&out)?;
    } else {
        println!(
            "{} rounds over {} clients in {:.2} s; test {}{}",
            history.rounds.len(),
            a.clients,
            seconds,
            out["test"],
            central.map_or(String::new(), |c| format!("; centrally trained: {c}"))
        );
        if let Some(p) = &history.privacy {
            println!(
                "client-level DP: ε = {} at δ = {} over {} rounds",
                p.epsilon.map_or("∞".to_string(), |e| format!("{e:.4}")),
                p.delta,
                p.steps
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `aistd compress`.
#[derive(Debug, Args)]
pub(crate) struct CompressArgs {
    /// A model directory written by `aistd train`.
    #[arg(long)]
    model: PathBuf,
    /// Prune this fraction of the weights (in [0, 1)), fine-tuning on --data.
    #[arg(
        long,
        required_unless_present = "quantize",
        conflicts_with = "quantize"
    )]
    prune: Option<f32>,
    /// Quantize to `int8` (weights per output channel, activation scales calibrated on up to
    /// 1,000 rows of --data); writes an `aistd-mlp-int8` model.
    #[arg(long)]
    quantize: Option<String>,
    /// With --quantize: one weight scale per layer instead of per output channel.
    #[arg(long, requires = "quantize")]
    per_tensor: bool,
    /// `layer` (the same sparsity in each layer, as Han et al.) or `global`.
    #[arg(long, default_value = "layer")]
    scope: String,
    /// Remove whole hidden units instead of single weights.
    #[arg(long)]
    neurons: bool,
    /// Prune → fine-tune stages (the sparsity rising on a cubic schedule).
    #[arg(long, default_value_t = 3)]
    stages: usize,
    /// Fine-tuning epochs per stage.
    #[arg(long, default_value_t = 20)]
    epochs: usize,
    /// Fine-tuning learning rate (Adam).
    #[arg(long, default_value_t = 3e-3)]
    lr: f32,
    /// Data to fine-tune on, with the model's feature columns and its target.
    #[arg(long)]
    data: PathBuf,
    /// The target column (default: the one the model was trained on).
    #[arg(long)]
    target: Option<String>,
    /// Data to measure on (default: --data).
    #[arg(long)]
    test_data: Option<PathBuf>,
    /// Where to write the compressed model.
    #[arg(long)]
    out: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Prunes a saved model, fine-tunes it on the data, and reports size, accuracy and latency
/// before and after.
pub(crate) fn compress(a: CompressArgs) -> Result<ExitCode> {
    use aistd_training::compress::{PruneConfig, prune_iteratively, weight_sparsity};
    let model = MlpModel::load(&a.model)?;
    let prep = model
        .preprocessor()
        .context("the model has no saved preprocessing; retrain it with `aistd train`")?
        .clone();
    if let Some(target) = a.target.as_ref().filter(|t| **t != prep.target) {
        bail!("--target {target}: the model predicts `{}`", prep.target);
    }
    let train = prep.dataset(std::slice::from_ref(&read_batch(&a.data)?))?;
    let test = match &a.test_data {
        Some(t) => prep.dataset(std::slice::from_ref(&read_batch(t)?))?,
        None => train.clone(),
    };
    let size = |d: &Path| std::fs::metadata(d.join("model.safetensors")).map(|m| m.len());
    let timed = |f: &dyn Fn(ndarray::ArrayView2<f32>) -> Result<ndarray::Array2<f32>>| -> Result<serde_json::Value> {
        let one = test.x.select(ndarray::Axis(0), &[0]);
        let time = |x: ndarray::ArrayView2<f32>, reps: usize| -> Result<f64> {
            let t = std::time::Instant::now();
            for _ in 0..reps {
                f(x)?;
            }
            Ok(t.elapsed().as_secs_f64() * 1e6 / (reps * x.nrows().max(1)) as f64)
        };
        Ok(serde_json::json!({
            "one_row": time(one.view(), 2000)?,
            "all_rows": time(test.x.view(), 20)?,
        }))
    };
    let Some(prune) = a.prune else {
        let scheme = a.quantize.as_deref().unwrap_or_default();
        if scheme != "int8" {
            bail!("--quantize must be int8, not `{scheme}`");
        }
        let rows: Vec<usize> = (0..train.len().min(1000)).collect();
        let calib = train.x.select(ndarray::Axis(0), &rows);
        let q = QuantizedMlp::quantize(&model, calib.view(), !a.per_tensor)?;
        q.save(&a.out)?;
        let out = serde_json::json!({
            "before": {
                "bytes": size(&a.model)?,
                "metrics": evaluate(&model, &test)?,
                "predict_us_per_row": timed(&|x| Ok(model.predict(x)?))?,
            },
            "after": {
                "bytes": size(&a.out)?,
                "metrics": metrics_of(model.task(), q.predict(test.x.view())?, &test)?,
                "predict_us_per_row": timed(&|x| Ok(q.predict(x)?))?,
            },
            "per_channel": !a.per_tensor,
            "model_dir": a.out,
        });
        return report_compression(&out, a.json);
    };
    let mut target = match (a.scope.as_str(), a.neurons) {
        (_, true) => PruneConfig::neurons(prune),
        ("layer", false) => PruneConfig::per_layer(prune),
        ("global", false) => PruneConfig::global(prune),
        (other, false) => bail!("--scope must be layer or global, not `{other}`"),
    };
    target.sparsity = prune;
    let mut config = TrainConfig::default();
    config.epochs = a.epochs;
    config.optimizer = OptimizerConfig::new(OptimizerKind::adam(), a.lr);
    let bar = if a.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new((a.stages * a.epochs) as u64)
    };
    let mut observer = StageBar(bar.clone(), 0);
    let t = std::time::Instant::now();
    let (pruned, _, stages) = prune_iteratively(
        &model,
        &train,
        None,
        &target,
        a.stages,
        &config,
        &mut observer,
    )?;
    let seconds = t.elapsed().as_secs_f64();
    bar.finish_and_clear();
    pruned.save(&a.out)?;
    let report = |m: &MlpModel, dir: &Path| -> Result<serde_json::Value> {
        Ok(serde_json::json!({
            "bytes": size(dir)?,
            "weight_sparsity": weight_sparsity(m.network()),
            "metrics": evaluate(m, &test)?,
            "predict_us_per_row": timed(&|x| Ok(m.predict(x)?))?,
        }))
    };
    let out = serde_json::json!({
        "before": report(&model, &a.model)?,
        "after": report(&pruned, &a.out)?,
        "stages": stages,
        "seconds": seconds,
        "model_dir": a.out,
    });
    report_compression(&out, a.json)
}

/// Prints `aistd compress`'s before/after report.
fn report_compression(out: &serde_json::Value, json: bool) -> Result<ExitCode> {
    if json {
        print_json(out)?;
    } else {
        for k in ["before", "after"] {
            let us = &out[k]["predict_us_per_row"];
            println!(
                "{k:>6}: {} bytes, {:.2} µs for one row, {:.2} µs/row for all, {}",
                out[k]["bytes"],
                us["one_row"].as_f64().unwrap_or(0.0),
                us["all_rows"].as_f64().unwrap_or(0.0),
                out[k]["metrics"]
            );
        }
        println!("compressed model in {}", out["model_dir"]);
    }
    Ok(ExitCode::SUCCESS)
}

/// Progress over the stages' fine-tuning epochs.
struct StageBar(ProgressBar, u64);

impl Observer for StageBar {
    fn on_epoch(&mut self, r: &EpochRecord) {
        self.1 += 1;
        self.0.set_position(self.1);
        self.0.set_message(format!("loss {:.4}", r.train_loss));
    }
}
