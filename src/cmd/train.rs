//! `aistd train` and `aistd evaluate` on numeric CSV files (a header; every column but the
//! target numeric).

use std::path::PathBuf;
use std::process::ExitCode;

use aistd_training::data::Dataset;
use aistd_training::nn::Activation;
use aistd_training::optim::{OptimizerConfig, OptimizerKind};
use aistd_training::tensorboard::TrainingLog;
use aistd_training::{
    EpochRecord, MlpModel, Model, NdarrayTrainer, Observer, Task, TrainConfig, metrics,
};
use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::print_json;

/// `aistd train`.
#[derive(Debug, Args)]
pub(crate) struct TrainArgs {
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
    /// Share of the training part held out for validation (early stopping, per-epoch metrics).
    #[arg(long, default_value_t = 0.0)]
    validation_fraction: f64,
    /// Treat a numeric target as classes (integer targets with at most 20 distinct values
    /// are classes anyway, unless --regression).
    #[arg(long, conflicts_with = "regression")]
    classify: bool,
    /// Treat a numeric target as values.
    #[arg(long)]
    regression: bool,
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
    /// Passes over the data.
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
    /// Stop after this many epochs without a better validation loss (needs
    /// --validation-fraction).
    #[arg(long)]
    early_stopping: Option<usize>,
    /// Threads for data-parallel training.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// `ndarray` (the only backend built so far).
    #[arg(long, default_value = "ndarray")]
    backend: String,
    /// Seed of splits, weights, shuffling and dropout.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where to write the model files.
    #[arg(long)]
    out: PathBuf,
    /// Log every epoch here as TensorBoard event files and `metrics.jsonl`.
    #[arg(long)]
    logdir: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `aistd evaluate`.
#[derive(Debug, Args)]
pub(crate) struct EvaluateArgs {
    /// A model directory written by `aistd train`.
    #[arg(long)]
    model: PathBuf,
    /// Data with the model's feature columns and its target column.
    #[arg(long)]
    data: PathBuf,
    /// The target column.
    #[arg(long)]
    target: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Whether the target column holds integers with at most 20 distinct values.
fn looks_like_classes(text: &str, target: &str) -> bool {
    let mut lines = text.lines();
    let Some(i) = lines
        .next()
        .and_then(|h| h.split(',').position(|c| c.trim() == target))
    else {
        return false;
    };
    let mut seen = std::collections::BTreeSet::new();
    for l in lines.filter(|l| !l.trim().is_empty()) {
        match l.split(',').nth(i).map(|v| v.trim().parse::<i64>()) {
            Some(Ok(v)) => {
                seen.insert(v);
                if seen.len() > 20 {
                    return false;
                }
            }
            _ => return false,
        }
    }
    !seen.is_empty()
}

fn read(path: &PathBuf, target: &str, drop: &[String], classify: Option<bool>) -> Result<Dataset> {
    let mut text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let classify = classify.unwrap_or_else(|| looks_like_classes(&text, target));
    if !drop.is_empty() {
        let header: Vec<String> = text
            .lines()
            .next()
            .unwrap_or("")
            .split(',')
            .map(|c| c.trim().to_string())
            .collect();
        let keep: Vec<usize> = (0..header.len())
            .filter(|i| !drop.contains(&header[*i]))
            .collect();
        if let Some(d) = drop.iter().find(|d| !header.contains(d)) {
            bail!("--drop {d}: no such column in {}", path.display());
        }
        text = text
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                keep.iter()
                    .filter_map(|i| f.get(*i).copied())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect::<Vec<_>>()
            .join("\n");
    }
    Ok(Dataset::read_csv(
        &path.display().to_string(),
        &text,
        target,
        classify,
    )?)
}

/// Test metrics of `model` on `d` (its class names mapped by name).
fn evaluate(model: &MlpModel, d: &Dataset) -> Result<serde_json::Value> {
    let p = model.predict(d.x.view())?;
    Ok(match (model.task(), &d.y) {
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
            let pred = model.predict_labels(d.x.view())?;
            let probs: Vec<Vec<f32>> = p.outer_iter().map(|r| r.to_vec()).collect();
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

/// `aistd train`.
pub(crate) fn train(a: TrainArgs) -> Result<ExitCode> {
    if a.backend != "ndarray" {
        bail!(
            "--backend {}: only `ndarray` is built (the libtorch backend is issue #6's next part)",
            a.backend
        );
    }
    let mode = match (a.classify, a.regression) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    };
    let all = read(&a.data, &a.target, &a.drop, mode)?;
    let mode = Some(all.classes() > 0);
    let (train_all, test) = match &a.test_data {
        Some(t) => {
            let test = read(t, &a.target, &a.drop, mode)?;
            (all, test)
        }
        None => {
            let mut parts = all.split(&[1.0 - a.test_fraction, a.test_fraction], a.seed)?;
            let test = parts.pop().context("split")?;
            (parts.pop().context("split")?, test)
        }
    };
    let (train, valid) = if a.validation_fraction > 0.0 {
        let mut p = train_all.split(
            &[1.0 - a.validation_fraction, a.validation_fraction],
            a.seed ^ 0x5eed,
        )?;
        let v = p.pop().context("split")?;
        (p.pop().context("split")?, Some(v))
    } else {
        (train_all, None)
    };
    let mut config = TrainConfig::default();
    config.hidden = match a.model.as_str() {
        "mlp" => a.hidden.clone(),
        "logreg" | "softmax" | "linear" => Vec::new(),
        other => bail!("--model must be logreg, softmax or mlp, not `{other}`"),
    };
    config.activation = match a.activation.as_str() {
        "relu" => Activation::Relu,
        "gelu" => Activation::Gelu,
        "tanh" => Activation::Tanh,
        "sigmoid" => Activation::Sigmoid,
        other => bail!("--activation must be relu, gelu, tanh or sigmoid, not `{other}`"),
    };
    let kind = match a.optimizer.as_str() {
        "sgd" => OptimizerKind::Sgd,
        "momentum" => OptimizerKind::momentum(false),
        "nesterov" => OptimizerKind::momentum(true),
        "adam" => OptimizerKind::adam(),
        "adamw" => OptimizerKind::adamw(),
        "adagrad" => OptimizerKind::adagrad(),
        "rmsprop" => OptimizerKind::rmsprop(),
        other => bail!(
            "--optimizer must be sgd, momentum, nesterov, adam, adamw, adagrad or rmsprop, not `{other}`"
        ),
    };
    let mut opt = OptimizerConfig::new(kind, a.lr);
    opt.weight_decay = a.weight_decay;
    config.optimizer = opt;
    config.epochs = a.epochs;
    config.batch_size = a.batch_size;
    config.dropout = a.dropout;
    config.early_stopping = a.early_stopping;
    config.threads = a.threads;
    config.seed = a.seed;
    if a.early_stopping.is_some() && valid.is_none() {
        bail!("--early-stopping needs --validation-fraction > 0");
    }
    let bar = if a.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(a.epochs as u64)
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
    let (model, history) =
        NdarrayTrainer.fit_mlp(&train, valid.as_ref(), &config, &mut observer)?;
    let seconds = t.elapsed().as_secs_f64();
    bar.finish_and_clear();
    if let Some(log) = observer.1.take() {
        log.finish()?;
    }
    model.save(&a.out)?;
    let test_metrics = evaluate(&model, &test)?;
    let train_metrics = evaluate(&model, &train)?;
    let samples = history.epochs.len() as f64 * train.len() as f64;
    let out = serde_json::json!({
        "backend": "ndarray",
        "rows": {"train": train.len(), "validation": valid.as_ref().map(Dataset::len), "test": test.len()},
        "train": train_metrics,
        "test": test_metrics,
        "validation": history.epochs.last().and_then(|e| e.valid_metric),
        "epochs_run": history.epochs.len(),
        "best_epoch": history.best_epoch,
        "stopped_early": history.stopped_early,
        "seconds": seconds,
        "samples_per_second": samples / seconds.max(1e-12),
        "history": history.epochs,
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
    }
    Ok(ExitCode::SUCCESS)
}

/// `aistd evaluate`.
pub(crate) fn run_evaluate(a: &EvaluateArgs) -> Result<ExitCode> {
    let model = MlpModel::load(&a.model)?;
    let classify = matches!(model.task(), Task::Classification { .. });
    let d = read(&a.data, &a.target, &[], Some(classify))?;
    let features = model.signature().inputs;
    if d.features != features {
        bail!(
            "{} has the features {:?}; the model takes {:?}",
            a.data.display(),
            d.features,
            features
        );
    }
    let v = evaluate(&model, &d)?;
    if a.json {
        print_json(&v)?;
    } else {
        println!("{v}");
    }
    Ok(ExitCode::SUCCESS)
}
