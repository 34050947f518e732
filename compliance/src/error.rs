//! The one error type of `aistd-compliance`.

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `aistd-compliance`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A parameter is outside its domain.
    #[error("invalid {name} = {value}: {reason}")]
    OutOfRange {
        /// The parameter (`sampling rate`, `noise multiplier`, `delta`, …).
        name: String,
        /// Its value, as given.
        value: String,
        /// What it must be.
        reason: String,
    },
    /// Inputs that must line up do not.
    #[error("{what}: {reason}")]
    InvalidInput {
        /// Which input.
        what: String,
        /// Why.
        reason: String,
    },
    /// A privacy-budget ledger refused a query.
    #[error("privacy budget exceeded for {principal} on {dataset}: {reason}")]
    BudgetExceeded {
        /// Who asked.
        principal: String,
        /// Which dataset.
        dataset: String,
        /// Which budget, and by how much.
        reason: String,
    },
}

impl Error {
    pub(crate) fn range(name: &str, value: impl std::fmt::Display, reason: &str) -> Self {
        Error::OutOfRange {
            name: name.to_string(),
            value: value.to_string(),
            reason: reason.to_string(),
        }
    }
}
