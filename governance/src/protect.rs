//! The protection stage of a pipeline: which columns to encrypt, tokenize or mask, chosen by
//! name or by classification, applied batch by batch before anything is written.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch, StringArray};
use arrow_schema::{Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::access::mark_level;
use crate::crypto::{ColumnEncryptor, Keyring, Tokenizer};
use crate::error::{Error, Result};
use crate::pii::{
    Classification, EntityType, MaskOperator, PiiScanner, Sensitivity, anonymize, mask_column,
};

/// What to do to one column.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ColumnAction {
    /// Encrypt each value (XChaCha20-Poly1305, keyring's primary key).
    Encrypt,
    /// Replace each value by its HMAC-SHA256 token in `context`.
    Tokenize {
        /// The tokenization context (one per kind of identifier).
        context: String,
    },
    /// Rewrite detected PII spans.
    Mask(MaskOperator),
}

/// Which columns a pipeline protects and how.
///
/// By classification (needs [`crate::Pipeline::classify`]): columns at or above
/// [`encrypt_at_least`](Protection::encrypt_at_least) (default Restricted) are encrypted; columns
/// whose values are mostly direct identifiers (e-mail addresses, phone numbers, names, street
/// addresses, IP addresses) are tokenized, so they still join. Other Confidential attributes
/// (income, birth date, gender) stay readable for analysis and carry their level in the field
/// metadata. Explicit choices by column name override all of this.
#[derive(Debug, Clone)]
pub struct Protection {
    keyring: Arc<Keyring>,
    explicit: Vec<(String, ColumnAction)>,
    encrypt_at: Option<Sensitivity>,
    tokenize_identifiers: bool,
}

/// What the protection stage did to one column, for the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ProtectedColumn {
    /// The column.
    pub column: String,
    /// Its sensitivity, when classified.
    pub level: Option<String>,
    /// `encrypt`, `tokenize` or `mask`.
    pub action: String,
    /// Key id (encrypt, tokenize), tokenization context, or mask operator.
    pub detail: String,
}

const IDENTIFIERS: [EntityType; 5] = [
    EntityType::EmailAddress,
    EntityType::PhoneNumber,
    EntityType::Person,
    EntityType::Location,
    EntityType::IpAddress,
];

impl Protection {
    /// Encrypt Restricted columns and tokenize identifier columns with `keyring`.
    pub fn new(keyring: Arc<Keyring>) -> Self {
        Self {
            keyring,
            explicit: Vec::new(),
            encrypt_at: Some(Sensitivity::Restricted),
            tokenize_identifiers: true,
        }
    }

    /// Encrypt columns classified at `level` or above (`None`: none by level).
    pub fn encrypt_at_least(mut self, level: Option<Sensitivity>) -> Self {
        self.encrypt_at = level;
        self
    }

    /// Whether to tokenize identifier columns found by classification.
    pub fn tokenize_identifiers(mut self, on: bool) -> Self {
        self.tokenize_identifiers = on;
        self
    }

    /// Encrypt `column`.
    pub fn encrypt(mut self, column: &str) -> Self {
        self.explicit
            .push((column.to_string(), ColumnAction::Encrypt));
        self
    }

    /// Tokenize `column` in `context`.
    pub fn tokenize(mut self, column: &str, context: &str) -> Self {
        self.explicit.push((
            column.to_string(),
            ColumnAction::Tokenize {
                context: context.to_string(),
            },
        ));
        self
    }

    /// Mask the PII found in text column `column`.
    pub fn mask(mut self, column: &str, op: MaskOperator) -> Self {
        self.explicit
            .push((column.to_string(), ColumnAction::Mask(op)));
        self
    }

    /// Resolves the actions for a table with `schema` and, if known, its classification.
    pub fn plan(
        &self,
        schema: &Schema,
        classification: Option<&Classification>,
    ) -> Result<ProtectionPlan> {
        let mut actions: Vec<(String, ColumnAction)> = Vec::new();
        for (column, action) in &self.explicit {
            if schema.index_of(column).is_err() {
                return Err(Error::column_not_found(column, "protection", schema));
            }
            actions.push((column.clone(), action.clone()));
        }
        if let Some(c) = classification {
            for col in &c.columns {
                if actions.iter().any(|(n, _)| *n == col.column)
                    || schema.index_of(&col.column).is_err()
                {
                    continue;
                }
                if self.encrypt_at.is_some_and(|l| col.level >= l) {
                    actions.push((col.column.clone(), ColumnAction::Encrypt));
                } else if self.tokenize_identifiers
                    && let Some((e, _)) = col
                        .entities
                        .iter()
                        .filter(|(e, share)| IDENTIFIERS.contains(e) && **share >= 0.5)
                        .max_by(|a, b| a.1.total_cmp(b.1))
                {
                    actions.push((
                        col.column.clone(),
                        ColumnAction::Tokenize {
                            context: e.as_str().to_ascii_lowercase(),
                        },
                    ));
                }
            }
        }
        let levels = classification
            .map(|c| {
                c.columns
                    .iter()
                    .map(|c| (c.column.clone(), c.level))
                    .collect()
            })
            .unwrap_or_default();
        Ok(ProtectionPlan {
            keyring: self.keyring.clone(),
            actions,
            levels,
            scanner: Arc::new(PiiScanner::new()),
        })
    }
}

/// Resolved per-column actions, ready to apply to batches.
#[derive(Debug, Clone)]
pub struct ProtectionPlan {
    keyring: Arc<Keyring>,
    actions: Vec<(String, ColumnAction)>,
    levels: Vec<(String, Sensitivity)>,
    scanner: Arc<PiiScanner>,
}

impl ProtectionPlan {
    /// What will be done, for the report.
    pub fn summary(&self) -> Vec<ProtectedColumn> {
        let key_id = self.keyring.primary().0.to_string();
        self.actions
            .iter()
            .map(|(column, action)| {
                let (action, detail) = match action {
                    ColumnAction::Encrypt => {
                        ("encrypt", format!("xchacha20poly1305, key {key_id}"))
                    }
                    ColumnAction::Tokenize { context } => (
                        "tokenize",
                        format!("hmac-sha256, key {key_id}, context {context}"),
                    ),
                    ColumnAction::Mask(op) => ("mask", format!("{op:?}")),
                };
                ProtectedColumn {
                    column: column.clone(),
                    level: self
                        .levels
                        .iter()
                        .find(|(c, _)| c == column)
                        .map(|(_, l)| l.to_string()),
                    action: action.into(),
                    detail,
                }
            })
            .collect()
    }

    /// Applies the plan to a batch; columns it does not have are skipped. A `_detail` column
    /// (the quarantine's) has its PII replaced by `<ENTITY_TYPE>`.
    pub fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let schema = batch.schema();
        let mut b = batch.clone();
        for (column, level) in &self.levels {
            if schema.index_of(column).is_ok() {
                b = mark_level(&b, column, *level)?;
            }
        }
        let mut encrypt: Vec<&str> = Vec::new();
        for (column, action) in &self.actions {
            if schema.index_of(column).is_err() {
                continue;
            }
            match action {
                ColumnAction::Encrypt => encrypt.push(column),
                ColumnAction::Tokenize { context } => {
                    b = Tokenizer::new(&self.keyring, context.clone()).tokenize(&b, column)?;
                }
                ColumnAction::Mask(op) => b = mask_column(&b, column, &self.scanner, op)?,
            }
        }
        if !encrypt.is_empty() {
            b = ColumnEncryptor::new(&self.keyring)?.encrypt(&b, &encrypt)?;
        }
        if let Ok(i) = schema.index_of("_detail")
            && let Some(s) = b.column(i).as_string_opt::<i32>()
        {
            let masked: StringArray = (0..s.len())
                .map(|r| {
                    (!s.is_null(r)).then(|| {
                        let v = s.value(r);
                        anonymize(v, &self.scanner.analyze(v), &MaskOperator::Replace(None))
                    })
                })
                .collect();
            let mut cols = b.columns().to_vec();
            cols[i] = Arc::new(masked);
            b = RecordBatch::try_new(b.schema(), cols)
                .map_err(|e| Error::arrow("masking _detail", e))?;
        }
        Ok(b)
    }

    /// The schema of protected batches of `schema`.
    pub fn output_schema(&self, schema: &SchemaRef) -> Result<SchemaRef> {
        Ok(self
            .apply(&RecordBatch::new_empty(schema.clone()))?
            .schema())
    }
}
