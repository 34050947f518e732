//! The one error type of `aistd-governance`.

use std::path::PathBuf;

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `aistd-governance`.
///
/// Every variant names what was wrong and where: the file, and the record, column or byte offset
/// inside it where that is known.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("i/o error on {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A CSV file is malformed: a ragged record, an unbalanced quote, a value that does not parse as
    /// the column's type.
    #[error("{}: record {record} (line {line}, byte {byte_offset}){}: {reason}", path.display(), column.as_ref().map(|c| format!(", column `{c}`")).unwrap_or_default())]
    Csv {
        /// The file.
        path: PathBuf,
        /// 1-based data record number (the header is not counted).
        record: u64,
        /// 1-based line on which the record starts.
        line: u64,
        /// Byte offset at which the record starts.
        byte_offset: u64,
        /// The column, where the problem is in one field.
        column: Option<String>,
        /// What is wrong.
        reason: String,
    },
    /// An Arrow IPC or Parquet file is malformed or truncated.
    #[error("{}: {what}: {source}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// Where in the file (e.g. `footer`, `record batch 3`).
        what: String,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Data does not have the schema it was expected to have.
    #[error("schema mismatch in {context}: {reason}")]
    SchemaMismatch {
        /// Where the mismatch was found.
        context: String,
        /// What differs.
        reason: String,
    },
    /// A column that something refers to does not exist.
    #[error("column `{column}` not found ({context}); available: {available}")]
    ColumnNotFound {
        /// The missing column.
        column: String,
        /// Who referred to it.
        context: String,
        /// The columns that do exist, comma-separated.
        available: String,
    },
    /// A parameter or specification is invalid.
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// What was invalid (e.g. `expectation #2 in rules.yaml`).
        field: String,
        /// Why.
        reason: String,
    },
    /// An Arrow compute kernel failed.
    #[error("arrow error in {context}: {source}")]
    Arrow {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: arrow_schema::ArrowError,
    },
    /// An audit log or its tree heads fail verification: a line was changed, removed, inserted or
    /// reordered, or the log no longer matches a tree head recorded for it.
    #[error("{}: line {line} (byte {byte_offset}): {reason}", path.display())]
    AuditTampered {
        /// The log file.
        path: PathBuf,
        /// 1-based line of the first bad event (`0` when the log as a whole is bad).
        line: u64,
        /// Byte offset at which that line starts.
        byte_offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// Decryption or authentication failed: corrupted, truncated or reordered ciphertext, or the
    /// wrong key.
    #[error("{context}{}: {reason}", byte_offset.map(|o| format!(" (byte {o})")).unwrap_or_default())]
    Crypto {
        /// The file, column or keyring involved.
        context: String,
        /// Byte offset of the bad chunk or field, where there is one.
        byte_offset: Option<u64>,
        /// What is wrong.
        reason: String,
    },
    /// No key with this id is in the keyring (for example it was rotated out and removed).
    #[error("key `{key_id}` is not in keyring {context}")]
    KeyNotFound {
        /// The key id asked for.
        key_id: String,
        /// The keyring.
        context: String,
    },
    /// The access decision denied reading protected data.
    #[error("access denied to {principal} for {resource}: {reason}")]
    AccessDenied {
        /// Who asked.
        principal: String,
        /// What was asked for (dataset and column).
        resource: String,
        /// The decision's reason.
        reason: String,
    },
    /// The operation is not supported by this implementation.
    #[error("{operation} is not supported by {implementer}")]
    NotSupported {
        /// The operation.
        operation: String,
        /// The implementation that does not support it.
        implementer: String,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn arrow(context: impl Into<String>, source: arrow_schema::ArrowError) -> Self {
        Error::Arrow {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn crypto(
        context: impl Into<String>,
        byte_offset: Option<u64>,
        reason: impl Into<String>,
    ) -> Self {
        Error::Crypto {
            context: context.into(),
            byte_offset,
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidInput {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn column_not_found(
        column: &str,
        context: impl Into<String>,
        schema: &arrow_schema::Schema,
    ) -> Self {
        let available: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        Error::ColumnNotFound {
            column: column.to_string(),
            context: context.into(),
            available: available.join(", "),
        }
    }
}
