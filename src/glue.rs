//! Glue between the crates, which never depend on each other.
//!
//! - [`PolicyAccess`]: a compliance [`Policy`] (Cedar, for instance)
//!   decides governance's access requests ([`AccessPolicy`]).
//! - [`AuditLogSink`]: compliance decisions are recorded in governance's tamper-evident audit
//!   log ([`DecisionSink`]).
//! - [`dataset_info`]: a governance run's report becomes the datasheet of a compliance report.
//! - [`AuditSpendSink`]: the privacy-budget ledger's charges and refusals are committed to the
//!   audit log ([`SpendSink`]), and [`ledger_entries`] reads them back to restore a ledger.
//! - [`AuditRegistrySink`] (feature `deploy`): every model-registry change (publish, promote,
//!   rollback) is committed to the audit log before the registry applies it, and
//!   [`registry_events`] reads them back.
//! - [`PolicyAuthorize`] (feature `deploy`): a compliance policy decides who may call a served
//!   model (`aistd_deploy::middleware::Authenticated`).
//! - [`RdpAccountant`] (feature `training`): differentially private training in
//!   `aistd-training` asks compliance's RDP accountant (the Poisson-subsampled Gaussian, as
//!   Opacus accounts it) what its steps spend, and for the noise that fits an ε budget.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use aistd::compliance::{CedarPolicy, cedar::packs};
//! use aistd::glue::PolicyAccess;
//! use aistd::governance::access::{AccessPolicy, AccessRequest};
//! use aistd::governance::pii::Sensitivity;
//!
//! let cedar = CedarPolicy::from_str("packs", packs::DATA_ACCESS)?.with_entities_json(
//!     r#"[{"uid": {"type": "User", "id": "ana"}, "attrs": {"clearance": 2, "purposes": ["training"]}, "parents": []}]"#,
//! )?;
//! let access = PolicyAccess::new(Arc::new(cedar));
//! let d = access.decide(&AccessRequest::new("ana", "training", "dataset:loans", "email", Sensitivity::Confidential));
//! assert!(d.allowed, "{}", d.reason);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::{Arc, Mutex};

use aistd_compliance::dp::ledger::{SpendEntry, SpendSink};
use aistd_compliance::policy::DecisionSink;
use aistd_compliance::{Decision, Policy, Request};
use aistd_governance::access::{AccessDecision, AccessPolicy, AccessRequest};
use aistd_governance::audit::{self, AuditEvent, AuditLog};
use aistd_governance::pii::Sensitivity;

/// A Cedar entity reference `Type::"id"` with `id` escaped.
pub fn entity(kind: &str, id: &str) -> String {
    format!("{kind}::{}", serde_json::Value::String(id.to_string()))
}

fn rank(level: Sensitivity) -> i64 {
    match level {
        Sensitivity::Public => 0,
        Sensitivity::Internal => 1,
        Sensitivity::Confidential => 2,
        _ => 3,
    }
}

/// Decides governance access requests with a compliance policy. A request becomes the Cedar
/// request `User::"<principal>"`, `Action::"read"`, `Column::"<dataset>#<column>"` with context
/// `{"purpose": …, "level_rank": 0–3}` (Public … Restricted); evaluation errors deny, with the
/// error as the reason.
#[derive(Debug, Clone)]
pub struct PolicyAccess {
    policy: Arc<dyn Policy>,
}

impl PolicyAccess {
    /// Wraps `policy`.
    pub fn new(policy: Arc<dyn Policy>) -> Self {
        Self { policy }
    }

    /// The compliance request for a governance access request.
    pub fn request(r: &AccessRequest) -> Request {
        Request::new(
            entity("User", &r.principal),
            entity("Action", "read"),
            entity("Column", &format!("{}#{}", r.dataset, r.column)),
        )
        .with_context(serde_json::json!({ "purpose": r.purpose, "level_rank": rank(r.level) }))
    }
}

impl AccessPolicy for PolicyAccess {
    fn decide(&self, r: &AccessRequest) -> AccessDecision {
        match self.policy.evaluate(&Self::request(r)) {
            Ok(d) if d.allowed() => AccessDecision::allow(d.explain()),
            Ok(d) => AccessDecision::deny(d.explain()),
            Err(e) => AccessDecision::deny(format!("policy evaluation failed: {e}")),
        }
    }
}

/// Records compliance decisions in a governance audit log, as action `authorize` with the
/// decision, its explanation and the request in the event's detail.
#[derive(Debug, Clone)]
pub struct AuditLogSink {
    log: Arc<Mutex<AuditLog>>,
}

impl AuditLogSink {
    /// Records into `log`.
    pub fn new(log: Arc<Mutex<AuditLog>>) -> Self {
        Self { log }
    }
}

impl DecisionSink for AuditLogSink {
    fn record(&self, request: &Request, decision: &Decision) -> aistd_compliance::Result<()> {
        let fail = |e: String| aistd_compliance::Error::InvalidInput {
            what: "audit log".into(),
            reason: e,
        };
        let event = AuditEvent::new(&request.principal, "authorize", &request.resource)
            .decision(
                if decision.allowed() {
                    audit::Decision::Allow
                } else {
                    audit::Decision::Deny
                },
                decision.explain(),
            )
            .detail(serde_json::json!({
                "action": request.action,
                "context": request.context,
                "determining": decision.determining,
                "obligations": decision.obligations,
            }));
        self.log
            .lock()
            .map_err(|_| fail("a writer panicked while holding it".into()))?
            .append(&event)
            .map_err(|e| fail(e.to_string()))?;
        Ok(())
    }
}

/// The audit action of privacy-ledger entries.
pub const PRIVACY_SPEND: &str = "privacy_spend";

/// Commits every privacy-ledger entry to a governance audit log (action `privacy_spend`, the
/// entry in the detail) before the ledger answers, so spending survives a crash.
#[derive(Debug, Clone)]
pub struct AuditSpendSink {
    log: Arc<Mutex<AuditLog>>,
}

impl AuditSpendSink {
    /// Records into `log`.
    pub fn new(log: Arc<Mutex<AuditLog>>) -> Self {
        Self { log }
    }
}

impl SpendSink for AuditSpendSink {
    fn record(&self, entry: &SpendEntry) -> Result<(), String> {
        let event = AuditEvent::new(&entry.principal, PRIVACY_SPEND, &entry.dataset)
            .decision(
                if entry.accepted {
                    audit::Decision::Allow
                } else {
                    audit::Decision::Deny
                },
                if entry.accepted {
                    format!(
                        "{}: ε = {}, δ = {}",
                        entry.query, entry.cost.epsilon, entry.cost.delta
                    )
                } else {
                    entry.reason.clone()
                },
            )
            .detail(serde_json::to_value(entry).map_err(|e| e.to_string())?);
        let mut log = self
            .log
            .lock()
            .map_err(|_| "audit log: a writer panicked while holding it".to_string())?;
        log.append(&event).map_err(|e| e.to_string())?;
        log.commit().map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// The privacy-ledger entries recorded in the audit log at `path`, in order (for
/// [`PrivacyLedger::restore`](aistd_compliance::dp::ledger::PrivacyLedger::restore)).
pub fn ledger_entries(
    path: impl AsRef<std::path::Path>,
) -> aistd_governance::Result<Vec<SpendEntry>> {
    details(path.as_ref(), |a| a == PRIVACY_SPEND, "a ledger entry")
}

/// The details of the events in the audit log at `path` whose action passes `wanted`, read as
/// `T`; a detail that is not a `T` is an error naming its line.
fn details<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
    wanted: impl Fn(&str) -> bool,
    what: &str,
) -> aistd_governance::Result<Vec<T>> {
    audit::read_records(path)?
        .into_iter()
        .filter(|r| wanted(&r.event.action))
        .map(|r| {
            serde_json::from_value(r.event.detail.clone()).map_err(|e| {
                aistd_governance::Error::AuditTampered {
                    path: path.to_path_buf(),
                    line: r.seq + 1,
                    byte_offset: 0,
                    reason: format!("{} event without {what}: {e}", r.event.action),
                }
            })
        })
        .collect()
}

/// The datasheet facts of a governance run: rows, quarantine, steps, expectations, and every
/// input column with its type, sensitivity and protection.
pub fn dataset_info(r: &aistd_governance::Report) -> aistd_compliance::report::DatasetInfo {
    use aistd_compliance::report::{ColumnInfo, DatasetInfo};
    let mut d = DatasetInfo::named(&r.source.name);
    d.fingerprint = r.source.fingerprint.clone();
    d.rows_in = r.rows_in;
    d.rows_out = r.rows_out;
    d.quarantined_by_reason = r.quarantined_by_reason.clone();
    d.steps = r.steps.clone();
    d.expectations = r
        .expectations
        .iter()
        .map(|e| {
            let what = serde_json::to_string(&e.expectation).unwrap_or_default();
            (what, e.success)
        })
        .collect();
    let columns: Vec<(String, String)> = match &r.input_profile {
        Some(p) => p
            .columns
            .iter()
            .map(|c| (c.name.clone(), c.data_type.clone()))
            .collect(),
        None => r.output_schema.clone(),
    };
    d.columns = columns
        .iter()
        .map(|(name, ty)| {
            let mut c = ColumnInfo::new(name, ty);
            c.sensitivity = r
                .classification
                .as_ref()
                .and_then(|k| k.level(name))
                .map(|l| l.to_string());
            c.protection = r
                .protection
                .iter()
                .find(|p| &p.column == name)
                .map(|p| p.action.clone());
            c
        })
        .collect();
    d.lineage_run_id = r.lineage_run_id.clone();
    d
}

/// The audit action prefix of model-registry changes: `registry_publish`, `registry_promote`,
/// `registry_rollback`.
#[cfg(feature = "deploy")]
pub const REGISTRY_ACTION_PREFIX: &str = "registry_";

/// Commits every model-registry change to a governance audit log before the registry applies
/// it: action `registry_<action>`, data `model:<name>:<version>`, decision allow with a one-line
/// reason, and the whole [`RegistryEvent`](aistd_deploy::registry::RegistryEvent) as the detail.
#[cfg(feature = "deploy")]
#[derive(Debug, Clone)]
pub struct AuditRegistrySink {
    log: Arc<Mutex<AuditLog>>,
}

#[cfg(feature = "deploy")]
impl AuditRegistrySink {
    /// Records into `log`.
    pub fn new(log: Arc<Mutex<AuditLog>>) -> Self {
        Self { log }
    }
}

#[cfg(feature = "deploy")]
impl aistd_deploy::registry::AuditSink for AuditRegistrySink {
    fn record(&self, e: &aistd_deploy::registry::RegistryEvent) -> aistd_deploy::Result<()> {
        let fail = |reason: String| aistd_deploy::Error::Audit(reason);
        let reason = match (&e.alias, &e.previous) {
            (Some(alias), Some(previous)) => {
                format!("{} {alias}: {previous} -> {}", e.action, e.version)
            }
            (Some(alias), None) => format!("{} {alias}: -> {}", e.action, e.version),
            _ => format!("{} {}:{}", e.action, e.model, e.version),
        };
        let event = AuditEvent::new(
            &e.actor,
            format!("{REGISTRY_ACTION_PREFIX}{}", e.action),
            format!("model:{}:{}", e.model, e.version),
        )
        .decision(audit::Decision::Allow, reason)
        .detail(serde_json::to_value(e).map_err(|x| fail(x.to_string()))?);
        let mut log = self
            .log
            .lock()
            .map_err(|_| fail("a writer panicked while holding the log".into()))?;
        log.append(&event).map_err(|x| fail(x.to_string()))?;
        log.commit().map_err(|x| fail(x.to_string()))?;
        Ok(())
    }
}

/// Decides with a compliance policy (Cedar, for instance) who may call a served model: the
/// request `User::"<principal>"`, `Action::"infer"`, `Model::"<model>"` with context
/// `{"version": …}`; a deny or an evaluation error refuses, with the policy's explanation.
#[cfg(feature = "deploy")]
#[derive(Debug, Clone)]
pub struct PolicyAuthorize {
    policy: Arc<dyn Policy>,
}

#[cfg(feature = "deploy")]
impl PolicyAuthorize {
    /// Wraps `policy`.
    pub fn new(policy: Arc<dyn Policy>) -> Self {
        Self { policy }
    }
}

#[cfg(feature = "deploy")]
impl aistd_deploy::middleware::Authorize for PolicyAuthorize {
    fn authorize(&self, principal: &str, model: &str, version: &str) -> Result<(), String> {
        let request = Request::new(
            entity("User", principal),
            entity("Action", "infer"),
            entity("Model", model),
        )
        .with_context(serde_json::json!({ "version": version }));
        match self.policy.evaluate(&request) {
            Ok(d) if d.allowed() => Ok(()),
            Ok(d) => Err(d.explain()),
            Err(e) => Err(format!("the policy could not decide: {e}")),
        }
    }
}

/// The model-registry changes recorded in the audit log at `path`, in order.
#[cfg(feature = "deploy")]
pub fn registry_events(
    path: impl AsRef<std::path::Path>,
) -> aistd_governance::Result<Vec<aistd_deploy::registry::RegistryEvent>> {
    details(
        path.as_ref(),
        |a| a.starts_with(REGISTRY_ACTION_PREFIX),
        "a registry event",
    )
}

/// `aistd-compliance`'s RDP accountant for the Poisson-subsampled Gaussian mechanism (Mironov,
/// Talwar & Zhang 2019, over Opacus' orders, converted to (ε, δ) as Balle et al. 2020) as the
/// [`PrivacyAccountant`](aistd_training::PrivacyAccountant) of DP-SGD in `aistd-training`.
///
/// ```
/// use aistd::glue::RdpAccountant;
/// use aistd::training::PrivacyAccountant;
///
/// let rdp = RdpAccountant::default();
/// // Opacus' accountant on q = 0.04, σ = 1.5, 2,250 steps, δ = 10⁻⁵ gives ε = 7.32911.
/// let eps = rdp.epsilon(0.04, 1.5, 2_250, 1e-5)?;
/// assert!((eps - 7.32911117143).abs() < 1e-9, "{eps}");
/// let sigma = rdp.noise_multiplier(0.04, 2_250, 7.32911117143, 1e-5)?;
/// assert!((sigma - 1.5).abs() < 0.01, "{sigma}");
/// # Ok::<(), aistd::training::Error>(())
/// ```
#[cfg(feature = "training")]
#[derive(Debug, Clone)]
pub struct RdpAccountant {
    orders: Vec<f64>,
}

#[cfg(feature = "training")]
impl Default for RdpAccountant {
    /// Over Opacus' default orders (1.1 … 10.9, 12 … 63).
    fn default() -> Self {
        Self::with_orders(aistd_compliance::privacy::opacus_orders())
    }
}

#[cfg(feature = "training")]
impl RdpAccountant {
    /// Over the given RDP orders (each > 1).
    pub fn with_orders(orders: Vec<f64>) -> Self {
        Self { orders }
    }

    fn error(e: aistd_compliance::Error) -> aistd_training::Error {
        aistd_training::Error::InvalidInput {
            what: "privacy accounting (RDP)".into(),
            reason: e.to_string(),
        }
    }
}

#[cfg(feature = "training")]
impl aistd_training::PrivacyAccountant for RdpAccountant {
    fn name(&self) -> &str {
        "rdp"
    }

    fn epsilon(
        &self,
        sampling_rate: f64,
        noise_multiplier: f64,
        steps: u64,
        delta: f64,
    ) -> aistd_training::Result<f64> {
        if steps == 0 {
            return Ok(0.0);
        }
        if noise_multiplier == 0.0 {
            return Ok(f64::INFINITY);
        }
        aistd_compliance::privacy::epsilon(
            sampling_rate,
            noise_multiplier,
            steps,
            delta,
            &self.orders,
        )
        .map(|(eps, _order)| eps)
        .map_err(Self::error)
    }

    fn noise_multiplier(
        &self,
        sampling_rate: f64,
        steps: u64,
        target_epsilon: f64,
        delta: f64,
    ) -> aistd_training::Result<f64> {
        aistd_compliance::privacy::noise_multiplier(
            sampling_rate,
            steps,
            target_epsilon,
            delta,
            &self.orders,
            0.01,
        )
        .map_err(Self::error)
    }
}
