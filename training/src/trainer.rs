//! The [`Trainer`] and [`Model`] traits, and the ndarray + rayon backend ([`NdarrayTrainer`]).

use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::adversarial::{AdversarialConfig, Attack, perturb};
use crate::data::{Dataset, Standardizer, Target};
use crate::error::{Error, Result};
use crate::metrics;
use crate::nn::{
    Activation, Architecture, Loss, Mlp, Reduction, Targets, Workspace, rows, sigmoid, softmax,
};
use crate::optim::{Optimizer, OptimizerConfig, OptimizerKind, update};
use crate::preprocess::Preprocessor;
use crate::privacy::{DpConfig, PrivacyAccountant, PrivacySpent, gaussian, poisson_batch};
use crate::rng::Rng;
use crate::transfer::FineTune;

/// How to train.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TrainConfig {
    /// Hidden layer widths (empty: linear / logistic / softmax regression).
    pub hidden: Vec<usize>,
    /// Hidden activation.
    pub activation: Activation,
    /// The loss (default: cross-entropy for several classes, binary cross-entropy for two,
    /// squared error for values).
    pub loss: Option<Loss>,
    /// Mean (default) or summed loss over a batch.
    pub reduction: Reduction,
    /// Passes over the training data.
    pub epochs: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Optimizer, learning rate, schedule, regularization.
    pub optimizer: OptimizerConfig,
    /// Probability of dropping a hidden unit while training.
    pub dropout: f32,
    /// Stop after this many epochs without a better validation loss, and keep the best
    /// weights (needs a validation set).
    pub early_stopping: Option<usize>,
    /// Threads for data-parallel training (1: single-threaded).
    pub threads: usize,
    /// Seed of the initial weights, shuffling and dropout.
    pub seed: u64,
    /// Standardize features with statistics of the training data (saved with the model).
    pub standardize: bool,
    /// Shuffle the training data every epoch.
    pub shuffle: bool,
    /// Write a checkpoint here after every epoch (`checkpoint.safetensors` + `checkpoint.json`,
    /// atomically).
    pub checkpoint: Option<std::path::PathBuf>,
    /// Continue from the checkpoint in `checkpoint` if there is one: the result is the same,
    /// bit for bit, as training without the interruption.
    pub resume: bool,
    /// Train with differential privacy (DP-SGD, [`crate::privacy`]): Poisson-sampled batches of
    /// `batch_size` examples on average, per-example clipping and Gaussian noise. Shuffling
    /// does not apply.
    #[serde(default)]
    pub dp: Option<DpConfig>,
    /// Adversarial training ([`crate::adversarial`]): a fraction of every batch replaced by
    /// adversarial examples made against the current weights.
    #[serde(default)]
    pub adversarial: Option<AdversarialConfig>,
    /// Fine-tuning ([`crate::transfer`]): initial weights from a trained model, frozen layers,
    /// per-layer learning rates.
    #[serde(default)]
    pub fine_tune: Option<FineTune>,
    /// Training that continues from given weights: a federated client's local round
    /// ([`crate::federated`]), or fine-tuning a pruned model ([`crate::compress`]).
    #[serde(skip)]
    pub(crate) local: Option<Warm>,
    /// Quantization-aware training ([`crate::quantize::qat_fine_tune`]): steps on int8
    /// fake-quantized weights (per channel if true) and layer inputs, updates to the
    /// full-precision weights.
    #[serde(skip)]
    pub(crate) fake_quantize: Option<bool>,
}

/// What training that continues from given weights starts from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Warm {
    /// The starting parameters (the global model's, for a federated client).
    pub initial: Vec<f32>,
    /// FedProx's μ (0: FedAvg).
    pub proximal_mu: f32,
    /// The network's outputs (a federated client may hold fewer classes).
    pub outputs: usize,
    /// Parameters held at zero (pruned).
    pub mask: Option<Vec<bool>>,
}

impl Default for TrainConfig {
    /// An MLP with one hidden layer of 64 ReLUs, Adam at 1e-3, 20 epochs of batches of 64,
    /// standardized features, one thread, seed 0.
    fn default() -> Self {
        Self {
            hidden: vec![64],
            activation: Activation::Relu,
            loss: None,
            reduction: Reduction::Mean,
            epochs: 20,
            batch_size: 64,
            optimizer: OptimizerConfig::new(OptimizerKind::adam(), 1e-3),
            dropout: 0.0,
            early_stopping: None,
            threads: 1,
            seed: 0,
            standardize: true,
            shuffle: true,
            checkpoint: None,
            resume: false,
            dp: None,
            adversarial: None,
            fine_tune: None,
            local: None,
            fake_quantize: None,
        }
    }
}

impl TrainConfig {
    pub(crate) fn validate(&self) -> Result<()> {
        if self.epochs == 0 || self.batch_size == 0 || self.threads == 0 {
            return Err(Error::invalid(
                "training config",
                "epochs, batch size and threads must be ≥ 1",
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::invalid(
                "training config",
                format!("dropout {} must be in [0, 1)", self.dropout),
            ));
        }
        if let Some(dp) = &self.dp {
            dp.validate()?;
        }
        if let Some(f) = &self.fine_tune {
            f.validate()?;
        }
        if let Some(a) = &self.adversarial {
            // With DP-SGD too: adversarial rows replace their clean ones, so every sampled
            // example still adds one gradient, clipped to C.
            a.validate()?;
        }
        self.optimizer.validate()
    }
}

/// One epoch's numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EpochRecord {
    /// 1-based.
    pub epoch: usize,
    /// Mean training loss over the epoch's steps.
    pub train_loss: f64,
    /// Validation loss after the epoch.
    pub valid_loss: Option<f64>,
    /// Validation accuracy (classification) or R² (regression) after the epoch.
    pub valid_metric: Option<f64>,
    /// Learning rate at the epoch's end.
    pub lr: f32,
    /// Wall time of the epoch.
    pub seconds: f64,
    /// Training examples per second.
    pub samples_per_second: f64,
}

/// What training did.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct History {
    /// Every epoch.
    pub epochs: Vec<EpochRecord>,
    /// The epoch whose weights the model has (the best by validation loss with early
    /// stopping, else the last).
    pub best_epoch: usize,
    /// Whether early stopping ended it.
    pub stopped_early: bool,
    /// What differentially private training spent (DP-SGD only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<PrivacySpent>,
}

/// One optimizer step's numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StepRecord {
    /// 1-based epoch.
    pub epoch: usize,
    /// Global step (1-based, over the whole run).
    pub step: u64,
    /// The batch's loss.
    pub loss: f64,
    /// The learning rate used.
    pub lr: f32,
}

/// Told about training as it goes; may cancel it.
pub trait Observer {
    /// After each optimizer step.
    fn on_step(&mut self, _record: &StepRecord) {}
    /// After each epoch.
    fn on_epoch(&mut self, _record: &EpochRecord) {}
    /// Asked before every step; `true` stops training with [`Error::Cancelled`].
    fn cancelled(&self) -> bool {
        false
    }
}

/// An observer that does nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Observer for Silent {}

/// What a model takes and gives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Signature {
    /// Input feature names, in order.
    pub inputs: Vec<String>,
    /// Output names: class names (probabilities) or the predicted value.
    pub outputs: Vec<String>,
}

/// A trained model.
pub trait Model: Send + Sync + std::fmt::Debug {
    /// Predictions for rows of raw features: class probabilities (rows × classes) or values
    /// (rows × 1).
    fn predict(&self, x: ArrayView2<f32>) -> Result<Array2<f32>>;
    /// Inputs and outputs.
    fn signature(&self) -> Signature;
    /// Writes the model's files into `dir` (created if needed).
    fn save(&self, dir: &Path) -> Result<()>;
}

/// Something that trains models.
///
/// # Contract
///
/// Every implementation guarantees (and the `conformance` module checks):
/// 1. `fit` on a separable problem reduces the training loss and predicts it well.
/// 2. Save, then load, gives identical predictions.
/// 3. The same data, config and seed give the same model.
/// 4. An observer's cancellation stops training with [`Error::Cancelled`].
pub trait Trainer: Send + Sync + std::fmt::Debug {
    /// The backend's name.
    fn name(&self) -> &str;
    /// Trains on `train`, watching `valid` if given.
    fn fit(
        &self,
        train: &Dataset,
        valid: Option<&Dataset>,
        config: &TrainConfig,
        observer: &mut dyn Observer,
    ) -> Result<Fitted>;
    /// Loads a model this backend saved.
    fn load(&self, dir: &Path) -> Result<Box<dyn Model>>;
}

/// A trained model and how training went.
#[derive(Debug)]
#[non_exhaustive]
pub struct Fitted {
    /// The model.
    pub model: Box<dyn Model>,
    /// The history.
    pub history: History,
}

/// Classification or regression, as saved with the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Task {
    /// Classes, by name.
    Classification {
        /// Index → name.
        classes: Vec<String>,
    },
    /// One value.
    Regression,
}

/// How a model was trained, saved in its manifest's `training`: the configuration, metrics (of
/// the epoch whose weights the model has, and any its trainer adds, such as test metrics) and
/// the training data's size and [`Dataset::fingerprint`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TrainingRecord {
    /// The configuration it was trained with.
    pub config: TrainConfig,
    /// Name → value: `train_loss`, `valid_loss` and `valid_metric` (when validated and finite;
    /// not under DP-SGD), `epochs_run`, `best_epoch`, `seconds`, and what
    /// [`MlpModel::add_metrics`] added.
    pub metrics: std::collections::BTreeMap<String, f64>,
    /// Training rows (not recorded under DP-SGD).
    pub rows: Option<usize>,
    /// SHA-256 of the training data ([`Dataset::fingerprint`]; not recorded under DP-SGD).
    pub dataset_sha256: Option<String>,
}

impl TrainingRecord {
    fn new(config: &TrainConfig, train: &Dataset, history: &History) -> Self {
        let mut metrics = std::collections::BTreeMap::new();
        let kept = history
            .epochs
            .iter()
            .find(|e| e.epoch == history.best_epoch)
            .or(history.epochs.last());
        // Under DP-SGD the record keeps nothing computed from the training rows without noise:
        // no losses, no row count, no fingerprint (an exact hash of the rows would let whoever
        // knows all but one of them test candidates for the last).
        let private = config.dp.is_some();
        if let (Some(e), false) = (kept, private) {
            let finite = [
                ("train_loss", Some(e.train_loss)),
                ("valid_loss", e.valid_loss),
                ("valid_metric", e.valid_metric),
            ];
            for (name, v) in finite {
                if let Some(v) = v.filter(|v| v.is_finite()) {
                    metrics.insert(name.to_string(), v);
                }
            }
        }
        metrics.insert("epochs_run".to_string(), history.epochs.len() as f64);
        metrics.insert("best_epoch".to_string(), history.best_epoch as f64);
        metrics.insert(
            "seconds".to_string(),
            history.epochs.iter().map(|e| e.seconds).sum(),
        );
        Self {
            config: config.clone(),
            metrics,
            rows: (!private).then(|| train.len()),
            dataset_sha256: (!private).then(|| train.fingerprint()),
        }
    }
}

/// An MLP with its preprocessing.
#[derive(Debug, Clone, PartialEq)]
pub struct MlpModel {
    net: Mlp,
    loss: Loss,
    task: Task,
    standardizer: Option<Standardizer>,
    features: Vec<String>,
    preprocessor: Option<Preprocessor>,
    privacy: Option<PrivacySpent>,
    training: Option<TrainingRecord>,
}

/// `manifest.json` of a saved [`MlpModel`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub(crate) format: String,
    pub(crate) version: u32,
    pub(crate) architecture: Architecture,
    pub(crate) loss: Loss,
    #[serde(flatten)]
    pub(crate) task: Task,
    pub(crate) features: Vec<String>,
    pub(crate) standardizer: Option<Standardizer>,
    /// Preprocessing of Arrow input, when the model was trained from Arrow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) preprocessor: Option<Preprocessor>,
    /// What differentially private training spent, when the model was trained with DP-SGD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) privacy: Option<PrivacySpent>,
    /// How it was trained (config, metrics, data fingerprint), when a trainer made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) training: Option<TrainingRecord>,
    /// File name → SHA-256 (hex).
    pub(crate) files: std::collections::BTreeMap<String, String>,
    /// SHA-256 (hex) of this manifest's JSON without this member ([`manifest_digest`]): a
    /// damaged value is detected on load (a checksum, not a signature: whoever edits the file
    /// can recompute it). Absent in older manifests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) manifest_sha256: Option<String>,
}

/// SHA-256 (hex) of a manifest's JSON value `v` without its `manifest_sha256` member, printed
/// pretty. Hashing the value read from the file (not the struct it parses into) covers every
/// member, also ones a newer version added, and ignores whitespace.
fn manifest_digest(v: &serde_json::Value) -> Result<String> {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("manifest_sha256");
    }
    let text =
        serde_json::to_string_pretty(&v).map_err(|e| Error::invalid("manifest", e.to_string()))?;
    Ok(hex::encode(sha2::Sha256::digest(text.as_bytes())))
}

pub(crate) const FORMAT: &str = "aistd-mlp";

impl MlpModel {
    /// The network.
    pub fn network(&self) -> &Mlp {
        &self.net
    }

    /// The task.
    pub fn task(&self) -> &Task {
        &self.task
    }

    /// Attaches the Arrow preprocessing the features came from (saved with the model).
    pub fn with_preprocessor(mut self, p: Preprocessor) -> Result<Self> {
        if p.feature_names() != self.features {
            return Err(Error::invalid(
                "preprocessor",
                "its features are not the ones the model was trained on",
            ));
        }
        self.preprocessor = Some(p);
        Ok(self)
    }

    /// The Arrow preprocessing, if any.
    pub fn preprocessor(&self) -> Option<&Preprocessor> {
        self.preprocessor.as_ref()
    }

    /// What differentially private training spent (saved with the model), if it was private.
    pub fn privacy(&self) -> Option<&PrivacySpent> {
        self.privacy.as_ref()
    }

    /// How the model was trained (saved with it), if a trainer made it.
    pub fn training(&self) -> Option<&TrainingRecord> {
        self.training.as_ref()
    }

    /// Adds metrics measured after training (test metrics, say) to the training record saved
    /// with the model; an error if the model has no record, or a value is not finite.
    pub fn add_metrics(&mut self, metrics: impl IntoIterator<Item = (String, f64)>) -> Result<()> {
        let record = self.training.as_mut().ok_or_else(|| {
            Error::invalid("metrics", "the model has no training record to add them to")
        })?;
        for (name, v) in metrics {
            if !v.is_finite() {
                return Err(Error::invalid(
                    format!("metric {name:?}"),
                    format!("is {v}"),
                ));
            }
            record.metrics.insert(name, v);
        }
        Ok(())
    }

    /// Each row's loss gradient with respect to its features (those [`Model::predict`] takes),
    /// through the model's standardization, for targets `y`.
    pub fn input_gradient(&self, x: ArrayView2<f32>, y: Targets) -> Result<Array2<f32>> {
        self.check_features(&x)?;
        raw_input_gradient(&self.net, self.standardizer.as_ref(), self.loss, x, y)
    }

    /// Adversarial versions of the rows of `x` (targets `y`) under `attack`, kept within
    /// `bounds`; PGD's random start drawn from `rng`.
    pub fn adversarial(
        &self,
        x: ArrayView2<f32>,
        y: Targets,
        attack: &Attack,
        bounds: Option<(f32, f32)>,
        rng: &mut Rng,
    ) -> Result<Array2<f32>> {
        self.check_features(&x)?;
        let grad = |v: ArrayView2<f32>| self.input_gradient(v, y);
        perturb(attack, x, bounds, rng, &grad)
    }

    /// The manifest of this model, in `format`, listing `files` (name → SHA-256).
    pub(crate) fn manifest(
        &self,
        format: &str,
        files: std::collections::BTreeMap<String, String>,
    ) -> Manifest {
        Manifest {
            format: format.into(),
            version: 1,
            architecture: self.net.architecture().clone(),
            loss: self.loss,
            task: self.task.clone(),
            features: self.features.clone(),
            standardizer: self.standardizer.clone(),
            preprocessor: self.preprocessor.clone(),
            privacy: self.privacy.clone(),
            training: self.training.clone(),
            files,
            manifest_sha256: None,
        }
    }

    /// Writes `weights` as `dir/model.safetensors` and this model's manifest in `format`
    /// (with the weights' SHA-256) as `dir/manifest.json`, each atomically.
    pub(crate) fn write_files(&self, dir: &Path, format: &str, weights: &[u8]) -> Result<()> {
        write_atomic(&dir.join("model.safetensors"), weights)?;
        let manifest = self.manifest(
            format,
            [(
                "model.safetensors".to_string(),
                hex::encode(sha2::Sha256::digest(weights)),
            )]
            .into(),
        );
        // Through text, so that f32 values keep their shortest form (to_value would widen them).
        let mut v: serde_json::Value = serde_json::to_string(&manifest)
            .and_then(|t| serde_json::from_str(&t))
            .map_err(|e| Error::invalid("manifest", e.to_string()))?;
        let digest = manifest_digest(&v)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("manifest_sha256".into(), digest.into());
        }
        let text = serde_json::to_string_pretty(&v)
            .map_err(|e| Error::invalid("manifest", e.to_string()))?;
        write_atomic(&dir.join("manifest.json"), text.as_bytes())
    }

    /// A model of `net` with everything else from `m`.
    pub(crate) fn from_manifest(net: Mlp, m: Manifest) -> Self {
        Self {
            net,
            loss: m.loss,
            task: m.task,
            standardizer: m.standardizer,
            features: m.features,
            preprocessor: m.preprocessor,
            privacy: m.privacy,
            training: m.training,
        }
    }

    /// This model with the training record of `other` (the run that made its current weights:
    /// a pruning or quantization-aware fine-tune).
    pub(crate) fn with_record_of(mut self, other: &MlpModel) -> Self {
        self.training = other.training.clone();
        self
    }

    /// This model with another network of the same architecture.
    pub(crate) fn with_network(&self, net: Mlp) -> Self {
        Self {
            net,
            ..self.clone()
        }
    }

    /// Its loss.
    pub(crate) fn loss(&self) -> Loss {
        self.loss
    }

    /// `x` standardized as the model standardizes its inputs (a copy when it does not).
    /// `x` standardized (as [`MlpModel::standardize`]) into a row-major vector, in one pass
    /// whatever `x`'s memory layout.
    pub(crate) fn standardized_rows(&self, x: ArrayView2<f32>) -> Vec<f32> {
        let mut out = Vec::with_capacity(x.len());
        for row in x.rows() {
            match &self.standardizer {
                Some(s) => out.extend(
                    row.iter()
                        .zip(s.mean.iter().zip(&s.scale))
                        .map(|(v, (m, sc))| (*v - m) / sc),
                ),
                None => out.extend(row.iter().copied()),
            }
        }
        out
    }

    pub(crate) fn standardize(&self, x: &Array2<f32>) -> Result<Array2<f32>> {
        match &self.standardizer {
            Some(s) => s.transform(x),
            None => Ok(x.clone()),
        }
    }

    /// A model of `net` for the classes and features of `like` (no standardization).
    pub(crate) fn from_network(net: Mlp, like: &Dataset) -> Result<Self> {
        let Target::Classes { names, .. } = &like.y else {
            return Err(Error::invalid("model", "classification only"));
        };
        Ok(Self {
            loss: if names.len() == 2 {
                Loss::BinaryCrossEntropy
            } else {
                Loss::CrossEntropy
            },
            task: Task::Classification {
                classes: names.clone(),
            },
            net,
            standardizer: None,
            features: like.features.clone(),
            preprocessor: None,
            privacy: None,
            training: None,
        })
    }

    /// The width the model takes, and finite values (a NaN or infinity would come out as a
    /// silent NaN prediction).
    pub(crate) fn check_features(&self, x: &ArrayView2<f32>) -> Result<()> {
        if x.ncols() != self.features.len() {
            return Err(Error::invalid(
                "predict",
                format!(
                    "{} features per row, the model takes {} ({})",
                    x.ncols(),
                    self.features.len(),
                    self.features.join(", ")
                ),
            ));
        }
        if let Some(((r, c), v)) = x.indexed_iter().find(|(_, v)| !v.is_finite()) {
            return Err(Error::invalid(
                "predict",
                format!("feature {:?} is {v} in row {r}", self.features[c]),
            ));
        }
        Ok(())
    }

    /// Predictions for Arrow record batches, through the saved preprocessing.
    pub fn predict_batches(&self, batches: &[arrow_array::RecordBatch]) -> Result<Array2<f32>> {
        let p = self.preprocessor.as_ref().ok_or_else(|| {
            Error::invalid("predict", "the model was not trained from Arrow data")
        })?;
        self.predict(p.features(batches)?.view())
    }

    /// Predicted class per row (classification).
    pub fn predict_labels(&self, x: ArrayView2<f32>) -> Result<Vec<u32>> {
        Ok(argmax_rows(&self.predict(x)?))
    }

    /// Reads a model saved by [`Model::save`], checking every file's SHA-256.
    pub fn load(dir: &Path) -> Result<Self> {
        let (m, bytes, wpath) = read_model_files(dir, FORMAT)?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| Error::io(&wpath, format!("not safetensors: {e}")))?;
        let mut params = Vec::with_capacity(m.architecture.parameters());
        for (l, (i, o)) in m.architecture.layers().into_iter().enumerate() {
            let w = match st.tensor(&format!("layers.{l}.weight")) {
                Ok(_) => read_f32(&st, &format!("layers.{l}.weight"), &[o, i], &wpath)?,
                Err(_) => read_sparse(&st, l, i * o, &wpath)?,
            };
            // Stored [out, in] as PyTorch's nn.Linear; ours is [in, out].
            for r in 0..i {
                for c in 0..o {
                    params.push(w[c * i + r]);
                }
            }
            params.extend(read_f32(&st, &format!("layers.{l}.bias"), &[o], &wpath)?);
        }
        let net = Mlp::from_parameters(m.architecture.clone(), params)?;
        Ok(Self::from_manifest(net, m))
    }
}

pub(crate) fn read_f32(
    st: &safetensors::SafeTensors<'_>,
    name: &str,
    shape: &[usize],
    path: &Path,
) -> Result<Vec<f32>> {
    let t = st
        .tensor(name)
        .map_err(|e| Error::io(path, format!("tensor {name}: {e}")))?;
    if t.dtype() != safetensors::Dtype::F32 || t.shape() != shape {
        return Err(Error::io(
            path,
            format!(
                "tensor {name} is {:?} {:?}, expected F32 {shape:?}",
                t.dtype(),
                t.shape()
            ),
        ));
    }
    Ok(t.data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// The `format` that the `manifest.json` of the model saved in `dir` names: `aistd-mlp` for an
/// [`MlpModel`], [`crate::quantize::FORMAT_INT8`] for a [`crate::quantize::QuantizedMlp`].
pub fn saved_format(dir: &Path) -> Result<String> {
    #[derive(Deserialize)]
    struct Head {
        format: String,
    }
    let mpath = dir.join("manifest.json");
    let text = std::fs::read_to_string(&mpath).map_err(|e| Error::io(&mpath, e))?;
    let h: Head = serde_json::from_str(&text)
        .map_err(|e| Error::io(&mpath, format!("not a model manifest: {e}")))?;
    Ok(h.format)
}

/// The manifest of the model in `dir` (refused unless in `format`, version 1) and the bytes
/// of its `model.safetensors`, checked against the manifest's SHA-256; and that file's path.
pub(crate) fn read_model_files(
    dir: &Path,
    format: &str,
) -> Result<(Manifest, Vec<u8>, std::path::PathBuf)> {
    let mpath = dir.join("manifest.json");
    let text = std::fs::read_to_string(&mpath).map_err(|e| Error::io(&mpath, e))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::io(&mpath, format!("not a model manifest: {e}")))?;
    let m: Manifest = serde_json::from_value(value.clone())
        .map_err(|e| Error::io(&mpath, format!("not a model manifest: {e}")))?;
    if m.format != format || m.version != 1 {
        return Err(Error::io(
            &mpath,
            format!(
                "format {} version {} is not {format} 1",
                m.format, m.version
            ),
        ));
    }
    if let Some(want) = &m.manifest_sha256
        && *want != manifest_digest(&value)?
    {
        return Err(Error::io(
            &mpath,
            "its SHA-256 does not match its contents: the manifest is corrupt",
        ));
    }
    let wpath = dir.join("model.safetensors");
    let bytes = std::fs::read(&wpath).map_err(|e| Error::io(&wpath, e))?;
    if m.files.get("model.safetensors") != Some(&hex::encode(sha2::Sha256::digest(&bytes))) {
        return Err(Error::io(
            &wpath,
            "its SHA-256 does not match the manifest: the file is corrupt or truncated",
        ));
    }
    Ok((m, bytes, wpath))
}

/// Layer `l`'s weights stored sparsely (`layers.{l}.weight.indices`/`.values`), as `len`
/// dense values in [out, in] order.
fn read_sparse(
    st: &safetensors::SafeTensors<'_>,
    l: usize,
    len: usize,
    path: &Path,
) -> Result<Vec<f32>> {
    let iname = format!("layers.{l}.weight.indices");
    let idx = st
        .tensor(&iname)
        .map_err(|e| Error::io(path, format!("tensor layers.{l}.weight: {e}")))?;
    if idx.dtype() != safetensors::Dtype::U32 || idx.shape().len() != 1 {
        return Err(Error::io(
            path,
            format!(
                "tensor {iname} is {:?} {:?}, expected U32 [n]",
                idx.dtype(),
                idx.shape()
            ),
        ));
    }
    let nnz = idx.shape()[0];
    let values = read_f32(st, &format!("layers.{l}.weight.values"), &[nnz], path)?;
    let mut dense = vec![0.0f32; len];
    for (c, v) in idx.data().chunks_exact(4).zip(values) {
        let k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize;
        *dense.get_mut(k).ok_or_else(|| {
            Error::io(
                path,
                format!("tensor {iname}: index {k} is outside the {len} weights"),
            )
        })? = v;
    }
    Ok(dense)
}

/// Writes `bytes` to `path` atomically (a temporary file, synced, then renamed).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
    f.sync_all().map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

impl Model for MlpModel {
    fn predict(&self, x: ArrayView2<f32>) -> Result<Array2<f32>> {
        self.check_features(&x)?;
        let x = match &self.standardizer {
            Some(s) => s.transform(&x.to_owned())?,
            None => x.to_owned(),
        };
        let out = self.net.forward(x.view())?;
        Ok(match (&self.task, self.loss) {
            (Task::Classification { .. }, Loss::BinaryCrossEntropy) => {
                let mut p = Array2::zeros((out.nrows(), 2));
                for (i, z) in out.column(0).iter().enumerate() {
                    let s = sigmoid(*z);
                    p[[i, 0]] = 1.0 - s;
                    p[[i, 1]] = s;
                }
                p
            }
            (Task::Classification { .. }, _) => softmax(&out),
            (Task::Regression, _) => out,
        })
    }

    fn signature(&self) -> Signature {
        Signature {
            inputs: self.features.clone(),
            outputs: match &self.task {
                Task::Classification { classes } => classes.clone(),
                Task::Regression => vec!["value".into()],
            },
        }
    }

    fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let params = self.net.parameters();
        let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        let mut off = 0;
        for (l, (i, o)) in self.net.architecture().layers().into_iter().enumerate() {
            // PyTorch's [out, in] order.
            let ordered = (0..o).flat_map(|c| (0..i).map(move |r| params[off + r * o + c]));
            let zeros = ordered.clone().filter(|v| *v == 0.0).count();
            if 2 * zeros >= i * o && i * o > 0 {
                // At least half zeros (pruned): stored sparsely.
                let (mut idx, mut val) = (Vec::new(), Vec::new());
                for (k, v) in ordered.enumerate().filter(|(_, v)| *v != 0.0) {
                    idx.extend_from_slice(&(k as u32).to_le_bytes());
                    val.extend_from_slice(&v.to_le_bytes());
                }
                let nnz = val.len() / 4;
                tensors.push((format!("layers.{l}.weight.indices"), vec![nnz], idx));
                tensors.push((format!("layers.{l}.weight.values"), vec![nnz], val));
            } else {
                let w: Vec<u8> = ordered.flat_map(f32::to_le_bytes).collect();
                tensors.push((format!("layers.{l}.weight"), vec![o, i], w));
            }
            let b: Vec<u8> = params[off + i * o..off + i * o + o]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            tensors.push((format!("layers.{l}.bias"), vec![o], b));
            off += i * o + o;
        }
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
            .iter()
            .map(|(n, s, d)| {
                let dtype = if n.ends_with(".indices") {
                    safetensors::Dtype::U32
                } else {
                    safetensors::Dtype::F32
                };
                safetensors::tensor::TensorView::new(dtype, s.clone(), d)
                    .map(|v| (n.clone(), v))
                    .map_err(|e| Error::invalid("safetensors", e.to_string()))
            })
            .collect::<Result<_>>()?;
        let bytes = safetensors::serialize(views, &None)
            .map_err(|e| Error::invalid("safetensors", e.to_string()))?;
        self.write_files(dir, FORMAT, &bytes)
    }
}

/// The pure-Rust backend: ndarray for the arithmetic, rayon for data parallelism.
#[derive(Debug, Default, Clone, Copy)]
pub struct NdarrayTrainer;

/// Targets of a dataset as the loss wants them.
pub(crate) enum Owned {
    Classes(Vec<u32>),
    Values(Array2<f32>),
}

impl Owned {
    fn of(d: &Dataset) -> Self {
        match &d.y {
            Target::Classes { labels, .. } => Owned::Classes(labels.clone()),
            Target::Values(v) => Owned::Values(
                Array2::from_shape_vec((v.len(), 1), v.clone())
                    .unwrap_or_else(|_| unreachable!("one value per row")),
            ),
        }
    }

    pub(crate) fn pick(&self, idx: &[usize]) -> Owned {
        match self {
            Owned::Classes(c) => Owned::Classes(idx.iter().map(|i| c[*i]).collect()),
            Owned::Values(v) => Owned::Values(rows(v.view(), idx)),
        }
    }

    fn view(&self) -> Targets<'_> {
        match self {
            Owned::Classes(c) => Targets::Classes(c),
            Owned::Values(v) => Targets::Values(v.view()),
        }
    }
}

impl NdarrayTrainer {
    /// Trains and returns the concrete model (the trait's `fit` boxes it).
    pub fn fit_mlp(
        &self,
        train: &Dataset,
        valid: Option<&Dataset>,
        config: &TrainConfig,
        observer: &mut dyn Observer,
    ) -> Result<(MlpModel, History)> {
        self.fit_mlp_with(train, valid, config, None, observer)
    }

    /// [`NdarrayTrainer::fit_mlp`] with a privacy accountant for DP-SGD ([`TrainConfig::dp`]):
    /// it calibrates the noise to a target ε, refuses a run over the ε budget, and reports the
    /// ε spent in [`History::privacy`] and the model's manifest.
    pub fn fit_mlp_with(
        &self,
        train: &Dataset,
        valid: Option<&Dataset>,
        config: &TrainConfig,
        accountant: Option<&dyn PrivacyAccountant>,
        observer: &mut dyn Observer,
    ) -> Result<(MlpModel, History)> {
        config.validate()?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.threads)
            .build()
            .map_err(|e| Error::invalid("threads", e.to_string()))?;
        fit_with(
            &mut NdarrayEngine {
                pool,
                shards: Vec::new(),
                local: Vec::new(),
                noise: Vec::new(),
            },
            train,
            valid,
            config,
            accountant,
            observer,
        )
    }
}

/// One optimizer step of the training loop: the part of training a backend provides. Everything
/// else (shuffling, optimizer state, schedules, validation, early stopping, checkpoints,
/// observers) is shared, so backends agree on all of it.
pub(crate) trait Engine {
    /// Called once before training with the (standardized) training data.
    fn prepare(&mut self, x: &Array2<f32>, y: &Owned, arch: &Architecture) -> Result<()>;
    /// Computes the loss of `b.batch` (reduced as `b.config.reduction` says) and its gradient
    /// with respect to every parameter of `net`, dropout masks drawn from per-example generators
    /// forked from `b.root` for `b.epoch`; then, if the loss and every gradient are finite,
    /// applies `opt` at learning rate `b.lr`. Returns the loss and whether the step was applied;
    /// after a step that was not, the parameters are unspecified (training stops with
    /// [`Error::Diverged`]). With `b.dp`, the gradient is DP-SGD's ([`crate::privacy`]).
    fn train_step(
        &mut self,
        net: &mut Mlp,
        opt: &mut Optimizer,
        b: &StepInput,
    ) -> Result<(f64, bool)>;

    /// Whether `train_step` runs DP-SGD when asked to.
    fn supports_dp(&self) -> bool {
        false
    }

    /// Whether `train_step` reads its rows from `StepInput::x` (which adversarial training
    /// replaces by each batch's perturbed rows) rather than from data kept since `prepare`.
    fn reads_step_rows(&self) -> bool {
        false
    }

    /// Whether `train_step` fake-quantizes each layer's input with `StepInput::act_scales`.
    fn fake_quantizes_activations(&self) -> bool {
        false
    }
}

/// DP-SGD's part of one step.
pub(crate) struct DpStep {
    /// C.
    pub clip: f32,
    /// σ.
    pub sigma: f32,
    /// q · examples: what the summed gradient is divided by.
    pub expected_batch: f32,
    /// This step's noise generator.
    pub noise: Rng,
    /// Examples clipped so far (added to by the step).
    pub clipped: std::sync::atomic::AtomicU64,
}

/// What one step of the training loop works on.
pub(crate) struct StepInput<'a> {
    /// Every training row (standardized).
    pub x: ArrayView2<'a, f32>,
    /// Every training target.
    pub y: &'a Owned,
    /// The rows of this batch.
    pub batch: &'a [usize],
    pub loss: Loss,
    pub config: &'a TrainConfig,
    /// The run's generator, for dropout masks.
    pub root: &'a Rng,
    /// 0-based.
    pub epoch: usize,
    pub lr: f32,
    /// DP-SGD's clipping and noise.
    pub dp: Option<&'a DpStep>,
    /// When `x` holds only this step's rows (adversarial training): the training example each
    /// row is, for its dropout generator.
    pub ids: Option<&'a [usize]>,
    /// Quantization-aware training: each layer's input scale, to fake-quantize its input with
    /// (empty: off).
    pub act_scales: &'a [f32],
}

/// The generator of example `i`'s dropout masks in `epoch` (0-based).
pub(crate) fn example_rng(root: &Rng, epoch: usize, i: usize) -> Rng {
    root.fork(((epoch as u64 + 1) << 32) ^ (i as u64 + 1))
}

/// The pure-Rust engine: data parallel on a rayon pool, with fixed work per thread. Thread `k`
/// computes the gradient of the `k`-th shard of the batch into its own buffer (kept between
/// steps); then thread `k` owns the `k`-th range of parameters: it adds the shards' gradients
/// over that range, checks them, and applies the optimizer to it. Fixed ownership keeps each
/// range's optimizer state in one core's cache: letting any thread take any chunk made the
/// optimizer update 6× slower on two cores than on one.
struct NdarrayEngine {
    pool: rayon::ThreadPool,
    /// One gradient buffer per shard.
    shards: Vec<Vec<f32>>,
    /// Per thread, buffers for its range of parameters.
    local: Vec<Mutex<Local>>,
    /// DP-SGD's noise for the step.
    noise: Vec<f32>,
}

/// A thread's buffers for its range of parameters, touched by that thread only.
#[derive(Default)]
struct Local {
    /// The batch's gradient.
    grad: Vec<f32>,
    /// The parameters being updated, copied back in one pass.
    params: Vec<f32>,
    /// The forward and backward passes' arrays, when this thread computes a shard.
    work: Workspace,
}

impl Engine for NdarrayEngine {
    fn prepare(&mut self, _: &Array2<f32>, _: &Owned, _: &Architecture) -> Result<()> {
        Ok(())
    }

    fn supports_dp(&self) -> bool {
        true
    }

    fn reads_step_rows(&self) -> bool {
        true
    }

    fn fake_quantizes_activations(&self) -> bool {
        true
    }

    fn train_step(
        &mut self,
        net: &mut Mlp,
        opt: &mut Optimizer,
        b: &StepInput,
    ) -> Result<(f64, bool)> {
        let params = net.parameters().len();
        let threads = self.pool.current_num_threads().max(1);
        let count = b.config.threads.min(threads).min(b.batch.len()).max(1);
        // A Poisson-sampled batch may be empty: one empty shard, whose gradient is zero.
        let chunks: Vec<&[usize]> = if b.batch.is_empty() {
            vec![b.batch]
        } else {
            b.batch.chunks(b.batch.len().div_ceil(count)).collect()
        };
        if self.shards.len() < chunks.len() || self.shards.iter().any(|s| s.len() != params) {
            self.shards = (0..chunks.len()).map(|_| vec![0.0; params]).collect();
        }
        // DP-SGD's noise, σ·C·N(0, 1) per parameter, drawn here in one sequence so it does not
        // depend on the thread count.
        self.noise.clear();
        if let Some(dp) = &b.dp {
            let mut rng = dp.noise.clone();
            let sd = f64::from(dp.sigma) * f64::from(dp.clip);
            self.noise
                .extend((0..params).map(|_| (sd * gaussian(&mut rng)) as f32));
        }
        // Parameter ranges, one per thread, whole cache lines (16 floats) each.
        let per = params.div_ceil(threads).next_multiple_of(16);
        let bounds: Vec<usize> = (0..=threads).map(|k| (k * per).min(params)).collect();
        if self.local.len() != threads {
            self.local = (0..threads).map(|_| Mutex::default()).collect();
        }
        let (pool, shards, local) = (&self.pool, &mut self.shards[..chunks.len()], &self.local);
        let noise = &self.noise[..];
        pool.install(|| {
            let total = shard_gradients(net, b, &chunks, shards, local, pool)?;
            let denom = match (&b.dp, b.config.reduction, b.loss, b.y) {
                (_, Reduction::Sum, _, _) => 1.0,
                // DP-SGD divides by the expected batch size, which does not depend on the
                // sample (Opacus' default).
                (Some(dp), _, _, _) => dp.expected_batch,
                (None, _, Loss::Mse | Loss::Huber { .. }, Owned::Values(v)) => {
                    (b.batch.len() * v.ncols()) as f32
                }
                _ => b.batch.len() as f32,
            };
            let loss = match (&b.dp, b.config.reduction) {
                (_, Reduction::Sum) => total,
                (Some(_), _) => total / b.batch.len().max(1) as f64,
                (None, _) => total / f64::from(denom),
            };
            if !loss.is_finite() {
                return Ok((loss, false));
            }
            let shards: &[Vec<f32>] = shards;
            match opt.begin_elementwise() {
                Some((c, t, first, second)) => {
                    // Thread k adds up the shards' gradients over its range of parameters,
                    // and, if they are finite, updates that range: one pass over the threads.
                    // A non-finite gradient leaves a range's parameters unchanged while others
                    // move on; training stops with an error then, so no one sees them.
                    let parts: Vec<Mutex<[&mut [f32]; 3]>> = split(net.parameters_mut(), &bounds)
                        .into_iter()
                        .zip(split(first, &bounds))
                        .zip(split(second, &bounds))
                        .map(|((p, m), v)| Mutex::new([p, m, v]))
                        .collect();
                    let finite = pool.broadcast(|ctx| {
                        let k = ctx.index();
                        let (lo, hi) = (bounds[k], bounds[k + 1]);
                        let mut own = lock(&local[k]);
                        let Local { grad, params, .. } = &mut *own;
                        if !reduce_range(grad, shards, lo, hi, noise, denom) {
                            return false;
                        }
                        let mut part = lock(&parts[k]);
                        let [p, m, v] = &mut *part;
                        if ctx.num_threads() == 1 {
                            update(&c, t, b.lr, p, grad, m, v);
                            return true;
                        }
                        // Updated in a buffer of this thread's, then copied in one pass: the
                        // other threads read these parameters, and updating them in place
                        // made every store wait for their copies to be invalidated.
                        params.clear();
                        params.extend_from_slice(p);
                        update(&c, t, b.lr, params, grad, m, v);
                        p.copy_from_slice(params);
                        true
                    });
                    Ok((loss, finite.into_iter().all(|f| f)))
                }
                None => {
                    let finite = pool.broadcast(|ctx| {
                        let k = ctx.index();
                        let mut own = lock(&local[k]);
                        reduce_range(
                            &mut own.grad,
                            shards,
                            bounds[k],
                            bounds[k + 1],
                            noise,
                            denom,
                        )
                    });
                    if !finite.into_iter().all(|f| f) {
                        return Ok((loss, false));
                    }
                    let mut grads = vec![0.0; params];
                    for (k, w) in bounds.windows(2).enumerate() {
                        grads[w[0]..w[1]].copy_from_slice(&lock(&local[k]).grad);
                    }
                    opt.step(net.parameters_mut(), &mut grads, b.lr);
                    Ok((loss, true))
                }
            }
        })
    }
}

/// The gradient of parameters `lo..hi` into `acc`: the shards' sum, plus `noise` (if any) over
/// the range, divided by `denom`. Returns whether every value is finite.
fn reduce_range(
    acc: &mut Vec<f32>,
    shards: &[Vec<f32>],
    lo: usize,
    hi: usize,
    noise: &[f32],
    denom: f32,
) -> bool {
    acc.clear();
    // One pass for the usual one or two shards (x / 1 is x, so dividing always is exact).
    match (shards, noise.is_empty()) {
        ([a], true) => acc.extend(a[lo..hi].iter().map(|g| g / denom)),
        ([a, b], true) => acc.extend(
            a[lo..hi]
                .iter()
                .zip(&b[lo..hi])
                .map(|(x, y)| (x + y) / denom),
        ),
        _ => {
            acc.extend_from_slice(&shards[0][lo..hi]);
            for other in &shards[1..] {
                for (a, g) in acc.iter_mut().zip(&other[lo..hi]) {
                    *a += g;
                }
            }
            if !noise.is_empty() {
                for (a, z) in acc.iter_mut().zip(&noise[lo..hi]) {
                    *a += z;
                }
            }
            acc.iter_mut().for_each(|g| *g /= denom);
        }
    }
    acc.iter().fold(true, |ok, g| ok & g.is_finite())
}

/// `s` cut at `bounds` (`bounds.len() - 1` pieces; the first bound is 0, the last `s.len()`).
fn split<'a>(mut s: &'a mut [f32], bounds: &[usize]) -> Vec<&'a mut [f32]> {
    let mut out = Vec::with_capacity(bounds.len().saturating_sub(1));
    for w in bounds.windows(2) {
        let (head, tail) = std::mem::take(&mut s).split_at_mut(w[1] - w[0]);
        out.push(head);
        s = tail;
    }
    out
}

/// A lock taken by one thread only (a panic elsewhere would have reached the caller already).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Streams of the run's generator for DP-SGD's batches and noise.
const DP_BATCH_STREAM: u64 = 0x5D9B_A7C4_0000_0001;
const ADVERSARIAL_STREAM: u64 = 0x5D9B_A7C4_0000_0003;
const DP_NOISE_STREAM: u64 = 0x5D9B_A7C4_0000_0002;

fn step_stream(epoch: usize, step: usize) -> u64 {
    ((epoch as u64 + 1) << 32) ^ (step as u64 + 1)
}

/// DP-SGD's parameters for a run, checked against the budget before it starts.
struct DpPlan {
    sigma: f64,
    clip: f64,
    delta: f64,
    /// Sampling rate: batch size / examples.
    q: f64,
    /// round(1 / q).
    steps_per_epoch: usize,
}

impl DpPlan {
    fn new(
        d: &DpConfig,
        n: usize,
        config: &TrainConfig,
        accountant: Option<&dyn PrivacyAccountant>,
    ) -> Result<Self> {
        let q = (config.batch_size as f64 / n as f64).min(1.0);
        let steps_per_epoch = ((1.0 / q).round() as usize).max(1);
        let planned = (steps_per_epoch * config.epochs) as u64;
        let need = |why: &str| {
            accountant.ok_or_else(|| {
                Error::invalid(
                    "differential privacy",
                    format!("{why} needs a privacy accountant (NdarrayTrainer::fit_mlp_with)"),
                )
            })
        };
        let sigma = match (d.noise_multiplier, d.target_epsilon) {
            (Some(s), _) => s,
            (None, Some(target)) => {
                need("calibrating the noise")?.noise_multiplier(q, planned, target, d.delta)?
            }
            (None, None) => unreachable!("validated: a noise multiplier or a target"),
        };
        if let Some(budget) = d.target_epsilon {
            let acct = need("an ε budget")?;
            if sigma == 0.0 {
                return Err(Error::invalid(
                    "differential privacy",
                    format!(
                        "noise multiplier 0 gives no guarantee, so the budget ε = {budget} cannot hold"
                    ),
                ));
            }
            let planned_eps = acct.epsilon(q, sigma, planned, d.delta)?;
            if planned_eps > budget * (1.0 + 1e-9) {
                let mut fit = 0;
                for e in 1..config.epochs {
                    if acct.epsilon(q, sigma, (e * steps_per_epoch) as u64, d.delta)? > budget {
                        break;
                    }
                    fit = e;
                }
                return Err(Error::PrivacyBudget {
                    planned: planned_eps,
                    budget,
                    delta: d.delta,
                    epochs: fit,
                });
            }
        }
        tracing::info!(
            sigma,
            clip = d.clip_norm,
            sampling_rate = q,
            steps = planned,
            "DP-SGD"
        );
        Ok(Self {
            sigma,
            clip: d.clip_norm,
            delta: d.delta,
            q,
            steps_per_epoch,
        })
    }

    fn spent(
        &self,
        steps: u64,
        accountant: Option<&dyn PrivacyAccountant>,
    ) -> Result<PrivacySpent> {
        let epsilon = match accountant {
            Some(a) if self.sigma > 0.0 => Some(a.epsilon(self.q, self.sigma, steps, self.delta)?),
            _ => None,
        };
        Ok(PrivacySpent {
            epsilon,
            delta: self.delta,
            noise_multiplier: self.sigma,
            clip_norm: self.clip,
            sampling_rate: self.q,
            steps,
            accountant: accountant.map(|a| a.name().to_string()),
        })
    }
}

/// The index of each row's largest value (the predicted class).
pub(crate) fn argmax_rows(p: &Array2<f32>) -> Vec<u32> {
    p.outer_iter()
        .map(|r| {
            r.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(i, _)| i as u32)
        })
        .collect()
}

/// Scales each layer's last step by its multiplier: p = before + m · (p − before).
fn scale_steps(net: &mut Mlp, before: &[f32], multipliers: &[f32]) {
    for (l, m) in multipliers.iter().enumerate() {
        if *m == 1.0 {
            continue;
        }
        let r = net.layer_range(l);
        let old = &before[r.clone()];
        for (p, o) in net.parameters_mut()[r].iter_mut().zip(old) {
            *p = if *m == 0.0 { *o } else { o + m * (*p - o) };
        }
    }
}

/// Each row's loss gradient with respect to its raw features (before `standardizer`).
fn raw_input_gradient(
    net: &Mlp,
    standardizer: Option<&Standardizer>,
    loss: Loss,
    x: ArrayView2<f32>,
    y: Targets,
) -> Result<Array2<f32>> {
    match standardizer {
        Some(s) => {
            let mut g = net.input_gradient(s.transform(&x.to_owned())?.view(), y, loss)?;
            for mut row in g.outer_iter_mut() {
                for (v, scale) in row.iter_mut().zip(&s.scale) {
                    *v /= scale;
                }
            }
            Ok(g)
        }
        None => net.input_gradient(x, y, loss),
    }
}

/// The rows and targets of `batch` for adversarial training, standardized, the first
/// ⌈fraction · rows⌉ replaced by adversarial versions (made in the raw feature space).
#[allow(clippy::too_many_arguments)]
fn adversarial_batch(
    net: &Mlp,
    standardizer: Option<&Standardizer>,
    loss: Loss,
    raw: &Array2<f32>,
    y: &Owned,
    batch: &[usize],
    a: &AdversarialConfig,
    rng: &mut Rng,
) -> Result<(Array2<f32>, Owned)> {
    let by = y.pick(batch);
    let mut rows = rows(raw.view(), batch);
    let k = ((a.fraction * batch.len() as f32).ceil() as usize).min(batch.len());
    if k > 0 {
        let head = crate::nn::rows(raw.view(), &batch[..k]);
        let ky = y.pick(&batch[..k]);
        let grad = |v: ArrayView2<f32>| raw_input_gradient(net, standardizer, loss, v, ky.view());
        let adv = perturb(&a.attack, head.view(), a.bounds, rng, &grad)?;
        for (mut row, a) in rows.outer_iter_mut().zip(adv.outer_iter()) {
            row.assign(&a);
        }
    }
    let rows = match standardizer {
        Some(s) => s.transform(&rows)?,
        None => rows,
    };
    Ok((rows, by))
}

/// The training loop, with `engine` computing gradients.
pub(crate) fn fit_with(
    engine: &mut dyn Engine,
    train: &Dataset,
    valid: Option<&Dataset>,
    config: &TrainConfig,
    accountant: Option<&dyn PrivacyAccountant>,
    observer: &mut dyn Observer,
) -> Result<(MlpModel, History)> {
    config.validate()?;
    if train.is_empty() {
        return Err(Error::invalid("training data", "has no rows"));
    }
    if let Some(v) = valid
        && (v.x.ncols() != train.x.ncols() || v.classes() != train.classes())
    {
        return Err(Error::invalid(
            "validation data",
            "has other features or classes than the training data",
        ));
    }
    let (task, outputs, default_loss) = match &train.y {
        Target::Classes { labels, names } => {
            let mut seen: Vec<u32> = labels.clone();
            seen.sort_unstable();
            seen.dedup();
            if seen.len() < 2 && config.local.is_none() {
                return Err(Error::invalid(
                    "training data",
                    format!(
                        "has a single class ({:?}): nothing to learn",
                        names.get(seen[0] as usize)
                    ),
                ));
            }
            let task = Task::Classification {
                classes: names.clone(),
            };
            if names.len() == 2 {
                (task, 1, Loss::BinaryCrossEntropy)
            } else {
                (task, names.len(), Loss::CrossEntropy)
            }
        }
        Target::Values(_) => (Task::Regression, 1, Loss::Mse),
    };
    let loss = config.loss.unwrap_or(default_loss);
    let outputs = match (loss, &config.local) {
        (_, Some(l)) => l.outputs,
        (Loss::CrossEntropy, None) => train.classes().max(outputs),
        _ => outputs,
    };
    let standardizer = if config.standardize {
        Some(Standardizer::fit(&train.x)?)
    } else {
        None
    };
    let prep = |x: &Array2<f32>| -> Result<Array2<f32>> {
        match &standardizer {
            Some(s) => s.transform(x),
            None => Ok(x.clone()),
        }
    };
    let x = prep(&train.x)?;
    let y = Owned::of(train);
    let valid_xy = match valid {
        Some(v) => Some((prep(&v.x)?, Owned::of(v), v)),
        None => None,
    };
    let arch = Architecture::new(x.ncols(), config.hidden.clone(), outputs, config.activation);
    let mut net = Mlp::new(arch, config.seed)?;
    let layers = net.architecture().layers().len();
    let frozen = match &config.fine_tune {
        Some(f) => {
            let frozen = f.frozen(layers)?;
            crate::transfer::initialize(&mut net, f)?;
            frozen
        }
        None => Vec::new(),
    };
    if let Some(l) = &config.local {
        if l.initial.len() != net.parameters().len() {
            return Err(Error::invalid(
                "federated round",
                format!(
                    "{} global parameters for a network of {}",
                    l.initial.len(),
                    net.parameters().len()
                ),
            ));
        }
        net.parameters_mut().copy_from_slice(&l.initial);
    }
    let mut opt = Optimizer::new(config.optimizer, net.parameters().len())?;
    engine.prepare(&x, &y, net.architecture())?;
    let root = Rng::new(config.seed);
    let n = x.nrows();
    let dp = match &config.dp {
        Some(_) if !engine.supports_dp() => {
            return Err(Error::invalid(
                "differential privacy",
                "this backend does not run DP-SGD; train with the ndarray backend",
            ));
        }
        Some(d) => Some(DpPlan::new(d, n, config, accountant)?),
        None => None,
    };
    if config.fake_quantize.is_some() && !engine.fake_quantizes_activations() {
        return Err(Error::invalid(
            "quantization-aware training",
            "this backend does not fake-quantize activations; train with the ndarray backend",
        ));
    }
    if config.adversarial.is_some() && !engine.reads_step_rows() {
        return Err(Error::invalid(
            "adversarial training",
            "this backend does not train on perturbed rows; train with the ndarray backend",
        ));
    }
    let adv_root = root.fork(ADVERSARIAL_STREAM);
    let (dp_batches, dp_noise) = (root.fork(DP_BATCH_STREAM), root.fork(DP_NOISE_STREAM));
    let mut order: Vec<usize> = (0..n).collect();
    let mut history = History::default();
    let mut best: Option<(f64, Vec<f32>, usize)> = None;
    let mut since_best = 0;
    let mut first_epoch = 0;
    if let (true, Some(dir)) = (config.resume, &config.checkpoint)
        && dir.join(CKPT_STATE).exists()
    {
        let c = Checkpoint::load(dir, net.parameters().len(), n)?;
        net.parameters_mut().copy_from_slice(&c.params);
        opt.restore(c.first, c.second, c.steps)?;
        order = c.order;
        history = c.state.history;
        since_best = c.state.since_best;
        best = match (c.state.best_loss, c.best) {
            (Some(l), Some(p)) => Some((l, p, c.state.best_epoch)),
            _ => None,
        };
        first_epoch = c.state.epochs_done;
        if history.stopped_early {
            first_epoch = config.epochs;
        }
    }
    for epoch in first_epoch..config.epochs {
        let t0 = Instant::now();
        let mut erng = root.fork(epoch as u64 + 1);
        // DP-SGD: Poisson-sampled batches; otherwise a (shuffled) pass over the data.
        let sampled: Vec<Vec<usize>> = match &dp {
            Some(p) => (0..p.steps_per_epoch)
                .map(|step| {
                    let mut r = dp_batches.fork(step_stream(epoch, step));
                    let mut batch = Vec::new();
                    poisson_batch(&mut r, n, p.q, &mut batch);
                    batch
                })
                .collect(),
            None => {
                if config.shuffle {
                    erng.shuffle(&mut order);
                }
                Vec::new()
            }
        };
        let batches: Vec<&[usize]> = match &dp {
            Some(_) => sampled.iter().map(Vec::as_slice).collect(),
            None => order.chunks(config.batch_size).collect(),
        };
        // Quantization-aware training: each layer's input scale, calibrated on the training rows
        // at the start of every epoch (as post-training quantization calibrates).
        let act_scales = match config.fake_quantize {
            Some(_) => crate::quantize::input_scales(&net, x.view())?,
            None => Vec::new(),
        };
        // Fine-tuning: each layer's step scaled (0 for a frozen layer).
        let multipliers = config
            .fine_tune
            .as_ref()
            .and_then(|f| f.multipliers(layers, &frozen, epoch));
        let mut before = Vec::new();
        let mut loss_sum = 0.0f64;
        let mut steps = 0usize;
        let clipped = std::sync::atomic::AtomicU64::new(0);
        let mut examples = 0usize;
        for (step, batch) in batches.into_iter().enumerate() {
            if observer.cancelled() {
                return Err(Error::Cancelled(epoch + 1));
            }
            let lr = config.optimizer.lr_at(epoch, opt.steps());
            let dp_step = dp.as_ref().map(|p| DpStep {
                clip: p.clip as f32,
                sigma: p.sigma as f32,
                expected_batch: (p.q * n as f64) as f32,
                noise: dp_noise.fork(step_stream(epoch, step)),
                clipped: std::sync::atomic::AtomicU64::new(0),
            });
            // Adversarial training: this batch's rows, a fraction replaced by adversarial
            // versions made against the current weights.
            let adv = match &config.adversarial {
                Some(a) => Some(adversarial_batch(
                    &net,
                    standardizer.as_ref(),
                    loss,
                    &train.x,
                    &y,
                    batch,
                    a,
                    &mut adv_root.fork(step_stream(epoch, step)),
                )?),
                None => None,
            };
            let local: Vec<usize> = match &adv {
                Some(_) => (0..batch.len()).collect(),
                None => Vec::new(),
            };
            let input = match &adv {
                Some((ax, ay)) => StepInput {
                    x: ax.view(),
                    y: ay,
                    batch: &local,
                    loss,
                    config,
                    root: &root,
                    epoch,
                    lr,
                    dp: dp_step.as_ref(),
                    ids: Some(batch),
                    act_scales: &act_scales,
                },
                None => StepInput {
                    x: x.view(),
                    y: &y,
                    batch,
                    loss,
                    config,
                    root: &root,
                    epoch,
                    lr,
                    dp: dp_step.as_ref(),
                    ids: None,
                    act_scales: &act_scales,
                },
            };
            if multipliers.is_some() {
                before.clear();
                before.extend_from_slice(net.parameters());
            }
            // Quantization-aware training: the step computed at the fake-quantized weights,
            // applied to the full-precision ones (straight-through).
            let mut master = Vec::new();
            let mut quantized = Vec::new();
            if let Some(per_channel) = config.fake_quantize {
                master.extend_from_slice(net.parameters());
                crate::quantize::fake_quantize(&mut net, per_channel);
                quantized.extend_from_slice(net.parameters());
            }
            let (l, applied) = engine.train_step(&mut net, &mut opt, &input)?;
            if config.fake_quantize.is_some() {
                for ((p, m), q) in net.parameters_mut().iter_mut().zip(&master).zip(&quantized) {
                    *p = m + (*p - q);
                }
            }
            if let (Some(m), true) = (&multipliers, applied) {
                scale_steps(&mut net, &before, m);
            }
            // Pruned weights stay zero.
            if let (
                Some(Warm {
                    mask: Some(keep), ..
                }),
                true,
            ) = (&config.local, applied)
            {
                for (p, k) in net.parameters_mut().iter_mut().zip(keep) {
                    if !k {
                        *p = 0.0;
                    }
                }
            }
            // FedProx: a step of the proximal term μ/2·‖w − w_global‖².
            if let (Some(l), true) = (&config.local, applied)
                && l.proximal_mu > 0.0
            {
                let k = lr * l.proximal_mu;
                for (p, g) in net.parameters_mut().iter_mut().zip(&l.initial) {
                    *p -= k * (*p - g);
                }
            }
            if let Some(d) = &dp_step {
                clipped.fetch_add(
                    d.clipped.load(std::sync::atomic::Ordering::Relaxed),
                    std::sync::atomic::Ordering::Relaxed,
                );
            }
            examples += batch.len();
            if !applied {
                return Err(Error::Diverged {
                    epoch: epoch + 1,
                    step,
                    loss: l as f32,
                });
            }
            observer.on_step(&StepRecord {
                epoch: epoch + 1,
                step: opt.steps(),
                loss: l,
                lr,
            });
            loss_sum += l;
            steps += 1;
        }
        let seconds = t0.elapsed().as_secs_f64();
        if dp.is_some() {
            tracing::debug!(
                epoch = epoch + 1,
                examples,
                clipped = clipped.load(std::sync::atomic::Ordering::Relaxed),
                "DP-SGD epoch"
            );
        }
        let (valid_loss, valid_metric) = match &valid_xy {
            Some((vx, vy, _)) => {
                let out = net.forward(vx.view())?;
                let (vl, _) = loss.evaluate(out.view(), vy.view(), Reduction::Mean)?;
                let metric = match vy {
                    Owned::Classes(c) => {
                        let pred: Vec<u32> = if loss == Loss::BinaryCrossEntropy {
                            out.column(0).iter().map(|z| u32::from(*z > 0.0)).collect()
                        } else {
                            argmax_rows(&out)
                        };
                        metrics::accuracy(c, &pred)?
                    }
                    Owned::Values(v) => {
                        metrics::r2(v.as_slice().unwrap_or(&[]), &out.column(0).to_vec())?
                    }
                };
                (Some(f64::from(vl)), Some(metric))
            }
            None => (None, None),
        };
        let record = EpochRecord {
            epoch: epoch + 1,
            train_loss: loss_sum / steps.max(1) as f64,
            valid_loss,
            valid_metric,
            lr: config.optimizer.lr_at(epoch, opt.steps()),
            seconds,
            samples_per_second: n as f64 / seconds.max(1e-12),
        };
        observer.on_epoch(&record);
        history.epochs.push(record);
        history.best_epoch = epoch + 1;
        if let (Some(patience), Some(vl)) = (config.early_stopping, valid_loss) {
            let better = best.as_ref().is_none_or(|(b, _, _)| vl < *b);
            if better {
                best = Some((vl, net.parameters().to_vec(), epoch + 1));
                since_best = 0;
            } else {
                since_best += 1;
                if since_best >= patience {
                    history.stopped_early = true;
                }
            }
        }
        if let Some(dir) = &config.checkpoint {
            let (first, second, steps) = opt.state();
            Checkpoint::save(
                dir,
                net.parameters(),
                first,
                second,
                &order,
                best.as_ref().map(|b| b.1.as_slice()),
                &CheckpointState {
                    epochs_done: epoch + 1,
                    steps,
                    history: history.clone(),
                    since_best,
                    best_loss: best.as_ref().map(|b| b.0),
                    best_epoch: best.as_ref().map_or(0, |b| b.2),
                    tensors_sha256: String::new(),
                },
            )?;
        }
        if history.stopped_early {
            break;
        }
    }
    if let Some((_, params, epoch)) = best {
        net.parameters_mut().copy_from_slice(&params);
        history.best_epoch = epoch;
    }
    if let Some(p) = &dp {
        // Every step ran, whichever weights are kept: early stopping looked at all of them.
        history.privacy = Some(p.spent(opt.steps(), accountant)?);
    }
    Ok((
        MlpModel {
            net,
            loss,
            task,
            standardizer,
            features: train.features.clone(),
            preprocessor: None,
            privacy: history.privacy.clone(),
            training: Some(TrainingRecord::new(config, train, &history)),
        },
        history,
    ))
}

const CKPT_TENSORS: &str = "checkpoint.safetensors";
const CKPT_STATE: &str = "checkpoint.json";

/// The scalar part of a checkpoint.
#[derive(Debug, Serialize, Deserialize)]
struct CheckpointState {
    epochs_done: usize,
    steps: u64,
    history: History,
    since_best: usize,
    best_loss: Option<f64>,
    best_epoch: usize,
    /// SHA-256 of `checkpoint.safetensors`.
    tensors_sha256: String,
}

/// Everything training needs to continue exactly where it stopped.
struct Checkpoint {
    params: Vec<f32>,
    first: Vec<f32>,
    second: Vec<f32>,
    order: Vec<usize>,
    best: Option<Vec<f32>>,
    steps: u64,
    state: CheckpointState,
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

impl Checkpoint {
    #[allow(clippy::too_many_arguments)]
    fn save(
        dir: &Path,
        params: &[f32],
        first: &[f32],
        second: &[f32],
        order: &[usize],
        best: Option<&[f32]>,
        state: &CheckpointState,
    ) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let order_bytes: Vec<u8> = order
            .iter()
            .flat_map(|i| (*i as u32).to_le_bytes())
            .collect();
        let mut data: Vec<(&str, safetensors::Dtype, usize, Vec<u8>)> = vec![
            (
                "params",
                safetensors::Dtype::F32,
                params.len(),
                f32_bytes(params),
            ),
            (
                "adam.first",
                safetensors::Dtype::F32,
                first.len(),
                f32_bytes(first),
            ),
            (
                "adam.second",
                safetensors::Dtype::F32,
                second.len(),
                f32_bytes(second),
            ),
            ("order", safetensors::Dtype::U32, order.len(), order_bytes),
        ];
        if let Some(b) = best {
            data.push(("best", safetensors::Dtype::F32, b.len(), f32_bytes(b)));
        }
        let views = data
            .iter()
            .map(|(n, t, len, d)| {
                safetensors::tensor::TensorView::new(*t, vec![*len], d)
                    .map(|v| (n.to_string(), v))
                    .map_err(|e| Error::invalid("checkpoint", e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        let bytes = safetensors::serialize(views, &None)
            .map_err(|e| Error::invalid("checkpoint", e.to_string()))?;
        write_atomic(&dir.join(CKPT_TENSORS), &bytes)?;
        let mut st =
            serde_json::to_value(state).map_err(|e| Error::invalid("checkpoint", e.to_string()))?;
        st["tensors_sha256"] = hex::encode(sha2::Sha256::digest(&bytes)).into();
        write_atomic(&dir.join(CKPT_STATE), st.to_string().as_bytes())
    }

    fn load(dir: &Path, params: usize, rows: usize) -> Result<Self> {
        let sp = dir.join(CKPT_STATE);
        let text = std::fs::read_to_string(&sp).map_err(|e| Error::io(&sp, e))?;
        let state: CheckpointState = serde_json::from_str(&text)
            .map_err(|e| Error::io(&sp, format!("not a checkpoint: {e}")))?;
        let tp = dir.join(CKPT_TENSORS);
        let bytes = std::fs::read(&tp).map_err(|e| Error::io(&tp, e))?;
        if hex::encode(sha2::Sha256::digest(&bytes)) != state.tensors_sha256 {
            return Err(Error::io(
                &tp,
                "its SHA-256 does not match checkpoint.json: the checkpoint is corrupt or torn",
            ));
        }
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| Error::io(&tp, format!("not safetensors: {e}")))?;
        let f = |name: &str, len: usize| read_f32(&st, name, &[len], &tp);
        let order_t = st
            .tensor("order")
            .map_err(|e| Error::io(&tp, format!("tensor order: {e}")))?;
        if order_t.dtype() != safetensors::Dtype::U32 || order_t.shape() != [rows] {
            return Err(Error::io(
                &tp,
                format!(
                    "the checkpoint is for {:?} rows, the data has {rows}",
                    order_t.shape()
                ),
            ));
        }
        let order = order_t
            .data()
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize)
            .collect();
        let best = if st.names().iter().any(|n| *n == "best") {
            Some(f("best", params)?)
        } else {
            None
        };
        Ok(Self {
            params: f("params", params)?,
            first: f("adam.first", params)?,
            second: f("adam.second", params)?,
            order,
            best,
            steps: state.steps,
            state,
        })
    }
}

/// The summed loss of one batch on `pool`, and its gradient in shards: thread `k` writes the
/// summed gradient of `chunks[k]`'s examples (each clipped, for DP-SGD) over `shards[k]`.
/// Dropout masks come from per-example generators, so the result does not depend on the number
/// of threads (up to the order of float additions).
fn shard_gradients(
    net: &Mlp,
    b: &StepInput,
    chunks: &[&[usize]],
    shards: &mut [Vec<f32>],
    local: &[Mutex<Local>],
    pool: &rayon::ThreadPool,
) -> Result<f64> {
    let buffers: Vec<Mutex<&mut Vec<f32>>> = shards.iter_mut().map(Mutex::new).collect();
    let losses: Vec<Option<Result<f64>>> = pool.broadcast(|ctx| {
        let idx = chunks.get(ctx.index())?;
        // Written over, not added to: no need to clear it.
        let mut grads = lock(&buffers[ctx.index()]);
        if idx.is_empty() {
            grads.fill(0.0);
            return Some(Ok(0.0));
        }
        let mut own = lock(&local[ctx.index()]);
        let by = b.y.pick(idx);
        // Generators only for dropout, which is all they draw for.
        let mut rngs: Vec<Rng> = if b.config.dropout > 0.0 {
            idx.iter()
                .map(|i| example_rng(b.root, b.epoch, b.ids.map_or(*i, |ids| ids[*i])))
                .collect()
        } else {
            Vec::new()
        };
        let loss = match &b.dp {
            Some(dp) => net
                .clipped_grad_rows(
                    &mut own.work,
                    b.x,
                    idx,
                    by.view(),
                    b.loss,
                    b.config.dropout,
                    &mut rngs,
                    b.act_scales,
                    dp.clip,
                    &mut grads,
                )
                .map(|(l, clipped)| {
                    dp.clipped
                        .fetch_add(clipped as u64, std::sync::atomic::Ordering::Relaxed);
                    l
                }),
            None => net.loss_and_grad_rows(
                &mut own.work,
                b.x,
                idx,
                by.view(),
                b.loss,
                Reduction::Sum,
                b.config.dropout,
                &mut rngs,
                b.act_scales,
                &mut grads,
            ),
        };
        Some(loss.map(f64::from))
    });
    let mut total = 0.0;
    for l in losses.into_iter().flatten() {
        total += l?;
    }
    Ok(total)
}

impl Trainer for NdarrayTrainer {
    fn name(&self) -> &str {
        "ndarray"
    }

    fn fit(
        &self,
        train: &Dataset,
        valid: Option<&Dataset>,
        config: &TrainConfig,
        observer: &mut dyn Observer,
    ) -> Result<Fitted> {
        let (model, history) = self.fit_mlp(train, valid, config, observer)?;
        Ok(Fitted {
            model: Box::new(model),
            history,
        })
    }

    /// Either format: an f32 [`MlpModel`] or an int8 [`crate::quantize::QuantizedMlp`].
    fn load(&self, dir: &Path) -> Result<Box<dyn Model>> {
        Ok(match crate::quantize::SavedMlp::load(dir)? {
            crate::quantize::SavedMlp::Float(m) => Box::new(m),
            crate::quantize::SavedMlp::Int8(q) => Box::new(q),
        })
    }
}
