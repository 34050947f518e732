//! Glue between the crates, which never depend on each other.
//!
//! - [`PolicyAccess`]: a compliance [`Policy`] (Cedar, for instance)
//!   decides governance's access requests ([`AccessPolicy`]).
//! - [`AuditLogSink`]: compliance decisions are recorded in governance's tamper-evident audit
//!   log ([`DecisionSink`]).
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
