//! The one error type of `aistd-scheduler`.

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `aistd-scheduler`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A parameter or request is invalid.
    #[error("{what}: {reason}")]
    InvalidInput {
        /// Which input.
        what: String,
        /// Why.
        reason: String,
    },
    /// A trace or cluster file is malformed.
    #[error("{file}, line {line}: {reason}")]
    Trace {
        /// The file (or `<input>`).
        file: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A job can never run on this pool.
    #[error("job {job} can never run: {reason}")]
    NeverFits {
        /// The job's name.
        job: String,
        /// Why.
        reason: String,
    },
    /// No such job.
    #[error("no job {0}")]
    NotFound(u64),
    /// The system underneath (Slurm, the operating system) failed or said no.
    #[error("`{command}` failed: {message}")]
    Backend {
        /// The command (or call) that failed.
        command: String,
        /// Its exit status and standard error, or the operating system's error.
        message: String,
    },
}

impl Error {
    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidInput {
            what: what.into(),
            reason: reason.into(),
        }
    }
}
