//! Access control for protected data: an [`AccessPolicy`] the application implements decides
//! who may read which protected column for which purpose, and every decision goes to the audit
//! log.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use aistd_governance::access::{AccessPolicy, ClearancePolicy, ProtectedSource};
//! use aistd_governance::pii::Sensitivity;
//! use aistd_governance::audit::{AuditLog, AuditOptions};
//! # use aistd_governance::{DataSource, DataSourceExt, MemorySource};
//! # use aistd_governance::crypto::{ColumnEncryptor, Keyring, LocalKeyProvider};
//! # use arrow_array::{RecordBatch, StringArray}; use arrow_schema::{DataType, Field, Schema};
//! # let keyring = Arc::new(Keyring::generate(Box::new(LocalKeyProvider::from_hex("demo", &"33".repeat(32))?))?);
//! # let schema = Arc::new(Schema::new(vec![Field::new("ssn", DataType::Utf8, true)]));
//! # let batch = RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(vec!["536-90-4399"]))])?;
//! # let sealed = aistd_governance::access::mark_level(&ColumnEncryptor::new(&keyring)?.encrypt(&batch, &["ssn"])?, "ssn", Sensitivity::Restricted)?;
//! # let encrypted = MemorySource::try_new("people", sealed.schema(), vec![sealed])?;
//! let policy = ClearancePolicy::new().grant("alice", Sensitivity::Restricted, &["fraud-review"]);
//! let dir = tempfile::tempdir()?;
//! let audit = Arc::new(Mutex::new(AuditLog::open(dir.path().join("audit.jsonl"), AuditOptions::default())?));
//! // alice, for fraud review: decrypted.
//! let src = ProtectedSource::new(Box::new(encrypted), keyring.clone(), Arc::new(policy), "alice", "fraud-review", Some(audit.clone()))?;
//! assert_eq!(src.schema().field(0).data_type(), &DataType::Utf8);
//! assert_eq!(audit.lock().unwrap().len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arrow_array::{Array, ArrayRef, RecordBatch, RecordBatchOptions, new_null_array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use std::str::FromStr;

use crate::audit::{AuditEvent, AuditLog, Decision};
use crate::crypto::{ENCRYPTED_TYPE, ENCRYPTION_METADATA, Keyring, decrypt_columns};
use crate::error::{Error, Result};
use crate::pii::Sensitivity;
use crate::source::{BatchStream, DataSource, Descriptor, ScanOptions};

/// Field metadata key holding a column's sensitivity level (`Restricted`, …).
pub const CLASSIFICATION_METADATA: &str = "aistd.classification";

/// A request to read one protected column.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AccessRequest {
    /// Who asks (user, service, job).
    pub principal: String,
    /// For what (`training`, `fraud-review`, …).
    pub purpose: String,
    /// The data set (its dataset id).
    pub dataset: String,
    /// The column.
    pub column: String,
    /// The column's sensitivity.
    pub level: Sensitivity,
}

impl AccessRequest {
    /// A request by `principal`, for `purpose`, to read `column` of `dataset` at `level`.
    pub fn new(
        principal: impl Into<String>,
        purpose: impl Into<String>,
        dataset: impl Into<String>,
        column: impl Into<String>,
        level: Sensitivity,
    ) -> Self {
        Self {
            principal: principal.into(),
            purpose: purpose.into(),
            dataset: dataset.into(),
            column: column.into(),
            level,
        }
    }
}

/// The answer: allowed or not, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AccessDecision {
    /// Whether the read is allowed.
    pub allowed: bool,
    /// Why, in words that go into the audit log.
    pub reason: String,
}

impl AccessDecision {
    /// Allowed, because `reason`.
    pub fn allow(reason: impl Into<String>) -> Self {
        Self {
            allowed: true,
            reason: reason.into(),
        }
    }

    /// Denied, because `reason`.
    pub fn deny(reason: impl Into<String>) -> Self {
        Self {
            allowed: false,
            reason: reason.into(),
        }
    }
}

/// Decides who may read protected data. Implement it over your identity and policy systems (the
/// `aistd` root package glues the compliance crate's Cedar engine to it).
///
/// # Contract
/// - Deterministic for the same request and policy state.
/// - Never panics; an internal failure is a denial whose reason says what failed.
pub trait AccessPolicy: Send + Sync + std::fmt::Debug {
    /// The decision for one request.
    fn decide(&self, request: &AccessRequest) -> AccessDecision;
}

/// Clearances: each principal may read up to a level, for listed purposes (or any purpose when
/// none are listed). Public and Internal data need no clearance.
#[derive(Debug, Clone, Default)]
pub struct ClearancePolicy {
    grants: BTreeMap<String, (Sensitivity, Vec<String>)>,
}

impl ClearancePolicy {
    /// No grants: only Public and Internal data may be read.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lets `principal` read data up to `level` for `purposes` (any purpose if empty).
    pub fn grant(mut self, principal: &str, level: Sensitivity, purposes: &[&str]) -> Self {
        self.grants.insert(
            principal.to_string(),
            (level, purposes.iter().map(|p| p.to_string()).collect()),
        );
        self
    }
}

impl AccessPolicy for ClearancePolicy {
    fn decide(&self, r: &AccessRequest) -> AccessDecision {
        if r.level <= Sensitivity::Internal {
            return AccessDecision::allow(format!("{} data needs no clearance", r.level));
        }
        match self.grants.get(&r.principal) {
            None => AccessDecision::deny(format!("{} has no clearance", r.principal)),
            Some((level, _)) if *level < r.level => AccessDecision::deny(format!(
                "{} is cleared for {level}, the column is {}",
                r.principal, r.level
            )),
            Some((level, purposes)) if !purposes.is_empty() && !purposes.contains(&r.purpose) => {
                AccessDecision::deny(format!(
                    "{} is cleared for {level} only for {}, not for {}",
                    r.principal,
                    purposes.join(", "),
                    r.purpose
                ))
            }
            Some((level, _)) => AccessDecision::allow(format!(
                "{} is cleared for {level} for {}",
                r.principal, r.purpose
            )),
        }
    }
}

/// Records a column's sensitivity level in its field metadata.
pub fn mark_level(batch: &RecordBatch, column: &str, level: Sensitivity) -> Result<RecordBatch> {
    let schema = batch.schema();
    let idx = schema
        .index_of(column)
        .map_err(|_| Error::column_not_found(column, "classification", &schema))?;
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut md = fields[idx].metadata().clone();
    md.insert(CLASSIFICATION_METADATA.to_string(), level.to_string());
    fields[idx] = fields[idx].clone().with_metadata(md);
    RecordBatch::try_new(
        Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())),
        batch.columns().to_vec(),
    )
    .map_err(|e| Error::arrow("classification", e))
}

/// A source whose encrypted columns are decrypted for one principal and purpose where the policy
/// allows, and come back as nulls of their original type where it denies. Decisions are made
/// once, when the source is built, and each is appended to the audit log; each scan is logged as
/// a `read`.
#[derive(Debug)]
pub struct ProtectedSource {
    inner: Box<dyn DataSource>,
    keyring: Arc<Keyring>,
    schema: SchemaRef,
    allowed: Vec<String>,
    denied: Vec<String>,
    principal: String,
    purpose: String,
    audit: Option<Arc<Mutex<AuditLog>>>,
}

impl ProtectedSource {
    /// Decides access to every encrypted column of `inner` (level from its
    /// [`CLASSIFICATION_METADATA`], Restricted when absent) and audits each decision.
    pub fn new(
        inner: Box<dyn DataSource>,
        keyring: Arc<Keyring>,
        policy: Arc<dyn AccessPolicy>,
        principal: &str,
        purpose: &str,
        audit: Option<Arc<Mutex<AuditLog>>>,
    ) -> Result<Self> {
        let dataset = inner.descriptor()?.dataset_id();
        let in_schema = inner.schema();
        let mut fields: Vec<Field> = Vec::with_capacity(in_schema.fields().len());
        let (mut allowed, mut denied) = (Vec::new(), Vec::new());
        for f in in_schema.fields() {
            let md = f.metadata();
            if !md.contains_key(ENCRYPTION_METADATA) {
                fields.push(f.as_ref().clone());
                continue;
            }
            let level = md
                .get(CLASSIFICATION_METADATA)
                .and_then(|l| Sensitivity::from_str(l).ok())
                .unwrap_or(Sensitivity::Restricted);
            let request = AccessRequest {
                principal: principal.to_string(),
                purpose: purpose.to_string(),
                dataset: dataset.clone(),
                column: f.name().clone(),
                level,
            };
            let d = policy.decide(&request);
            if let Some(log) = &audit {
                let event =
                    AuditEvent::new(principal, "decrypt", format!("{dataset}#{}", f.name()))
                        .purpose(purpose)
                        .decision(
                            if d.allowed {
                                Decision::Allow
                            } else {
                                Decision::Deny
                            },
                            &d.reason,
                        )
                        .detail(serde_json::json!({ "level": level.as_str() }));
                lock(log)?.append(&event)?;
            }
            let original = md
                .get(ENCRYPTED_TYPE)
                .and_then(|t| DataType::from_str(t).ok())
                .unwrap_or(DataType::Utf8);
            let mut out_md = md.clone();
            for k in [
                ENCRYPTION_METADATA,
                ENCRYPTED_TYPE,
                crate::crypto::ENCRYPTED_KEY_ID,
            ] {
                out_md.remove(k);
            }
            fields.push(Field::new(f.name(), original, true).with_metadata(out_md));
            if d.allowed {
                allowed.push(f.name().clone());
            } else {
                tracing::info!(principal, purpose, column = %f.name(), reason = %d.reason, "access denied");
                denied.push(f.name().clone());
            }
        }
        Ok(Self {
            schema: Arc::new(Schema::new_with_metadata(
                fields,
                in_schema.metadata().clone(),
            )),
            inner,
            keyring,
            allowed,
            denied,
            principal: principal.to_string(),
            purpose: purpose.to_string(),
            audit,
        })
    }

    /// Columns the policy allowed.
    pub fn allowed(&self) -> &[String] {
        &self.allowed
    }

    /// Columns the policy denied (read as nulls).
    pub fn denied(&self) -> &[String] {
        &self.denied
    }
}

fn lock(log: &Mutex<AuditLog>) -> Result<std::sync::MutexGuard<'_, AuditLog>> {
    log.lock()
        .map_err(|_| Error::invalid("audit log", "a writer panicked while holding it"))
}

impl DataSource for ProtectedSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn scan(&self, options: &ScanOptions) -> Result<BatchStream> {
        let out_schema = options.project_schema(&self.schema)?;
        if let Some(log) = &self.audit {
            let dataset = self.inner.descriptor()?.dataset_id();
            let cols: Vec<&str> = out_schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect();
            lock(log)?.append(
                &AuditEvent::new(&self.principal, "read", dataset)
                    .purpose(&self.purpose)
                    .detail(serde_json::json!({ "columns": cols, "denied": self.denied })),
            )?;
        }
        let keyring = self.keyring.clone();
        let allowed = self.allowed.clone();
        let denied = self.denied.clone();
        let stream = self.inner.scan(options)?;
        Ok(Box::new(stream.map(move |batch| {
            let batch = batch?;
            let names: Vec<&str> = allowed.iter().map(String::as_str).collect();
            let plain = decrypt_columns(&batch, &keyring, Some(&names))?;
            let columns: Vec<ArrayRef> = out_schema
                .fields()
                .iter()
                .zip(plain.columns())
                .map(|(f, c)| {
                    if denied.contains(f.name()) {
                        new_null_array(f.data_type(), c.len())
                    } else {
                        c.clone()
                    }
                })
                .collect();
            RecordBatch::try_new_with_options(
                out_schema.clone(),
                columns,
                &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
            )
            .map_err(|e| Error::arrow("protected source", e))
        })))
    }

    fn descriptor(&self) -> Result<Descriptor> {
        self.inner.descriptor()
    }
}
