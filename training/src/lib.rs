//! Training for AI platforms: the [`Trainer`] and [`Model`] traits, and a pure-Rust backend.
//!
//! - [`data`]: datasets (features + classes or values), seeded stratified splits,
//!   standardization, CSV, and the bundled scikit-learn datasets ([`data::digits`],
//!   [`data::breast_cancer`]).
//! - [`nn`]: MLPs (linear and logistic/softmax regression without hidden layers) with ReLU,
//!   GELU, tanh or sigmoid, and squared-error, cross-entropy, binary cross-entropy and Huber
//!   losses, with explicit backpropagation over flat parameters.
//! - [`optim`]: SGD, momentum/Nesterov, Adam, AdamW, Adagrad, RMSprop with PyTorch's update
//!   rules; step and cosine schedules with warm-up; clipping; L1 and weight decay.
//! - [`metrics`]: accuracy, precision/recall/F1, ROC AUC, log-loss, MSE/MAE/R².
//! - [`NdarrayTrainer`]: mini-batch training, data-parallel across threads (rayon) with
//!   results independent of the thread count, dropout, early stopping with best-weights
//!   restore, cancellation; models saved as safetensors + a manifest with SHA-256s.
//! - [`privacy`]: DP-SGD (Poisson batches, per-example clipping, Gaussian noise) with a
//!   [`PrivacyAccountant`] seam.
//! - [`adversarial`]: FGSM and PGD (L∞, L2) attacks, robustness evaluation, adversarial training.
//! - [`federated`]: FedAvg and FedProx over [`federated::Client`]s, secure aggregation by
//!   pairwise masks, client-level DP.
//! - [`compress`]: magnitude pruning (global, per layer, whole units), iterative prune →
//!   fine-tune, sparse storage of pruned layers.
//! - [`quantize`]: post-training int8 quantization (per channel or per tensor, calibrated
//!   activation scales) with an integer inference path; quantization-aware fine-tuning.
//! - [`transfer`]: initial weights from a trained model, a new head, frozen layers, gradual
//!   unfreezing and per-layer learning rates.
//!
//! ```
//! use aistd_training::{NdarrayTrainer, Silent, TrainConfig, Trainer, data};
//!
//! let parts = data::breast_cancer()?.split(&[0.8, 0.2], 7)?;
//! let mut config = TrainConfig::default();
//! config.epochs = 30;
//! let fitted = NdarrayTrainer.fit(&parts[0], Some(&parts[1]), &config, &mut Silent)?;
//! let accuracy = fitted.history.epochs.last().and_then(|e| e.valid_metric).unwrap_or(0.0);
//! assert!(accuracy > 0.9, "{accuracy}");
//! # Ok::<(), aistd_training::Error>(())
//! ```
//!
//! - [`preprocess`]: preprocessing inferred from an Arrow schema (imputation, standardization,
//!   one-hot with rare categories folded, class targets), saved with the model.
//! - [`tensorboard`]: per-epoch metrics as TensorBoard event files and JSON Lines.
//!
//! Checkpoints ([`TrainConfig::checkpoint`], [`TrainConfig::resume`]) continue training bit for
//! bit.
//!
//! - [`tune`]: hyperparameter search (grid, random, TPE; ASHA, Hyperband, median stopping) over
//!   parallel trials.
//!
//! - `torch` (feature `tch`): the libtorch backend, `TchTrainer`.

pub mod adversarial;
pub mod compress;
pub mod data;
mod error;
pub mod federated;
mod int8_kernel;
pub mod metrics;
pub mod nn;
pub mod optim;
pub mod preprocess;
pub mod privacy;
pub mod quantize;
pub mod rng;
pub mod tensorboard;
#[cfg(feature = "tch")]
pub mod torch;
mod trainer;
pub mod transfer;
pub mod tune;

#[cfg(any(feature = "conformance", test))]
pub mod conformance;

pub use adversarial::{AdversarialConfig, Attack, Norm, Robustness, evaluate_robustness};
pub use error::{Error, Result};
pub use privacy::{DpConfig, PrivacyAccountant, PrivacySpent};
pub use quantize::SavedMlp;
#[cfg(feature = "tch")]
pub use torch::TchTrainer;
pub use trainer::{
    EpochRecord, Fitted, History, MlpModel, Model, NdarrayTrainer, Observer, Signature, Silent,
    StepRecord, Task, TrainConfig, Trainer, TrainingRecord, saved_format,
};
pub use transfer::FineTune;
