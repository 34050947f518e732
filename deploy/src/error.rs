//! The one error type of `aistd-deploy`.

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `aistd-deploy`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A name, path, key or option is invalid.
    #[error("{what}: {reason}")]
    InvalidInput {
        /// Which input.
        what: String,
        /// Why.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// What happened.
        reason: String,
    },
    /// A bundle's manifest or signature file is malformed.
    #[error("{file}: {reason}")]
    Malformed {
        /// The file.
        file: String,
        /// What is wrong, naming the field where there is one.
        reason: String,
    },
    /// A file the manifest lists is not in the bundle.
    #[error("bundle {bundle}: file {file} is missing")]
    MissingFile {
        /// The bundle's directory or archive.
        bundle: String,
        /// The file, relative to the bundle.
        file: String,
    },
    /// A file's content differs from its digest in the manifest.
    #[error(
        "bundle {bundle}: file {file} was altered (manifest SHA-256 {expected}, file {actual})"
    )]
    AlteredFile {
        /// The bundle's directory or archive.
        bundle: String,
        /// The file, relative to the bundle.
        file: String,
        /// The digest in the manifest (hex).
        expected: String,
        /// The file's digest (hex).
        actual: String,
    },
    /// A file in the bundle is not listed in its manifest.
    #[error("bundle {bundle}: file {file} is not listed in the manifest")]
    UnlistedFile {
        /// The bundle's directory or archive.
        bundle: String,
        /// The file, relative to the bundle.
        file: String,
    },
    /// A signature was required and the bundle has none.
    #[error("bundle {bundle} is not signed and a signature is required")]
    Unsigned {
        /// The bundle's directory or archive.
        bundle: String,
    },
    /// The signature does not verify: the manifest changed after signing, or the signature is
    /// not the key's.
    #[error("bundle {bundle}: the signature does not verify: {reason}")]
    BadSignature {
        /// The bundle's directory or archive.
        bundle: String,
        /// Why.
        reason: String,
    },
    /// The bundle is signed by a key that is not among the trusted ones.
    #[error("bundle {bundle} is signed by key {key}, which is not trusted")]
    UntrustedKey {
        /// The bundle's directory or archive.
        bundle: String,
        /// The signer's public key (hex).
        key: String,
    },
    /// A path exists where a new bundle or archive would go.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// An inference request's tensor is wrong: unknown, missing, of the wrong datatype or shape,
    /// or with an element count its shape does not give.
    #[error("tensor {tensor}: {reason}")]
    InvalidTensor {
        /// The tensor's name (input or requested output).
        tensor: String,
        /// What is wrong.
        reason: String,
    },
    /// The endpoint refused the request for lack of room (a full queue, a concurrency or rate
    /// limit); the client may retry later.
    #[error("model {model}: {reason}")]
    Overloaded {
        /// The model.
        model: String,
        /// Which limit.
        reason: String,
    },
    /// The request carries no valid credentials.
    #[error("model {model}: {reason}")]
    Unauthenticated {
        /// The model.
        model: String,
        /// Why (never the token).
        reason: String,
    },
    /// The caller may not use this model.
    #[error("model {model}: {principal} is not allowed: {reason}")]
    Forbidden {
        /// The model.
        model: String,
        /// Who asked.
        principal: String,
        /// The policy's reason.
        reason: String,
    },
    /// The request's tensors are larger than the endpoint accepts.
    #[error("model {model}: the request holds {bytes} bytes of tensors, over the limit of {limit}")]
    TooLarge {
        /// The model.
        model: String,
        /// The request's tensor bytes.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// The request took longer than the endpoint allows.
    #[error("model {model}: no answer within {millis} ms")]
    Timeout {
        /// The model.
        model: String,
        /// The limit, in milliseconds.
        millis: u64,
    },
    /// The endpoint is not ready (its warm-up inference has not succeeded).
    #[error("model {0} is not ready")]
    NotReady(String),
    /// The model itself failed, or returned outputs that break its signature.
    #[error("model {model}: {reason}")]
    Runtime {
        /// The model.
        model: String,
        /// What happened.
        reason: String,
    },
    /// No runtime is registered for a bundle's platform.
    #[error("no runtime for platform `{platform}` (known: {known})")]
    UnknownPlatform {
        /// The bundle's platform.
        platform: String,
        /// The registered platforms, comma-separated.
        known: String,
    },
    /// The audit sink could not record a registry change, so the change was not made.
    #[error("audit: {0}; the change was not made")]
    Audit(String),
}

impl Error {
    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidInput {
            what: what.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn tensor(tensor: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidTensor {
            tensor: tensor.into(),
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
