//! The one error type of `aistd-training`.

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `aistd-training`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A parameter, configuration or dataset is invalid.
    #[error("{what}: {reason}")]
    InvalidInput {
        /// Which input.
        what: String,
        /// Why.
        reason: String,
    },
    /// A data file is malformed.
    #[error("{file}, line {line}: {reason}")]
    Data {
        /// The file (or `<input>`).
        file: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// Training diverged: the loss is not finite.
    #[error("the loss became {loss} at epoch {epoch}, step {step}")]
    Diverged {
        /// 1-based epoch.
        epoch: usize,
        /// Step within the epoch (0-based).
        step: usize,
        /// The loss value.
        loss: f32,
    },
    /// Differentially private training would spend more than its ε budget.
    #[error(
        "differential privacy: the planned training spends ε = {planned:.3} at δ = {delta}, over the budget of {budget}; {epochs} epochs fit in it"
    )]
    PrivacyBudget {
        /// ε of the planned steps.
        planned: f64,
        /// The budget.
        budget: f64,
        /// δ.
        delta: f64,
        /// How many whole epochs the budget allows.
        epochs: usize,
    },
    /// Training was cancelled by its observer.
    #[error("cancelled at epoch {0}")]
    Cancelled(usize),
    /// The compute backend (libtorch) failed.
    #[error("backend {backend}: {reason}")]
    Backend {
        /// Which backend.
        backend: String,
        /// What it said.
        reason: String,
    },
    /// Reading or writing model files failed.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// What happened.
        reason: String,
    },
}

impl Error {
    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidInput {
            what: what.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn io(path: &std::path::Path, e: impl std::fmt::Display) -> Self {
        Error::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        }
    }
}
