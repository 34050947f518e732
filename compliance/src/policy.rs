//! The [`Policy`] trait: who may do what to which resource, with reasons and obligations.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::Result;

/// A request: principal, action and resource as Cedar entity references (`User::"alice"`,
/// `Action::"read"`, `Column::"loans#ssn"`), and a JSON context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Request {
    /// Who asks.
    pub principal: String,
    /// What they want to do.
    pub action: String,
    /// To what.
    pub resource: String,
    /// Everything else the decision may depend on (purpose, level, time, region, …).
    pub context: serde_json::Value,
}

impl Request {
    /// A request with an empty context.
    pub fn new(
        principal: impl Into<String>,
        action: impl Into<String>,
        resource: impl Into<String>,
    ) -> Self {
        Self {
            principal: principal.into(),
            action: action.into(),
            resource: resource.into(),
            context: serde_json::json!({}),
        }
    }

    /// Sets the context.
    pub fn with_context(mut self, context: serde_json::Value) -> Self {
        self.context = context;
        self
    }
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// Allowed.
    Allow,
    /// Denied.
    Deny,
}

/// Something the caller must do when acting on an allow (or a deny), such as `mask:email` or
/// `log:high`. In Cedar policies: `@obligation("mask:email")` on the determining policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Obligation {
    /// What to do (`mask`, `log`, `notify`, …).
    pub kind: String,
    /// On what, or how (`email`, `high`).
    pub value: String,
}

impl Obligation {
    /// Parses `kind:value` (or just `kind`).
    pub fn parse(s: &str) -> Self {
        match s.split_once(':') {
            Some((k, v)) => Self {
                kind: k.trim().to_string(),
                value: v.trim().to_string(),
            },
            None => Self {
                kind: s.trim().to_string(),
                value: String::new(),
            },
        }
    }
}

/// A decision and its explanation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Decision {
    /// Allow or deny.
    pub effect: Effect,
    /// Ids of the policies that determined it; empty for a default deny (no policy applied).
    pub determining: Vec<String>,
    /// Why, in words (from the policies' `@reason` annotations, or generated).
    pub reasons: Vec<String>,
    /// What the caller must do.
    pub obligations: Vec<Obligation>,
    /// Policies that failed to evaluate (they are skipped, as in Cedar).
    pub errors: Vec<String>,
    /// The policy (or combination) that decided.
    pub decided_by: String,
}

impl Decision {
    /// Whether the request is allowed.
    pub fn allowed(&self) -> bool {
        self.effect == Effect::Allow
    }

    /// Whether some policy applied (a default deny did not).
    pub fn applicable(&self) -> bool {
        !self.determining.is_empty()
    }

    /// A one-paragraph explanation.
    pub fn explain(&self) -> String {
        let verb = if self.allowed() { "ALLOW" } else { "DENY" };
        if self.determining.is_empty() {
            return format!(
                "{verb} by default: no policy of {} applies",
                self.decided_by
            );
        }
        let mut s = format!(
            "{verb} by {} ({})",
            self.decided_by,
            self.determining.join(", ")
        );
        if !self.reasons.is_empty() {
            s.push_str(": ");
            s.push_str(&self.reasons.join("; "));
        }
        if !self.obligations.is_empty() {
            let o: Vec<String> = self
                .obligations
                .iter()
                .map(|o| format!("{}:{}", o.kind, o.value))
                .collect();
            s.push_str(&format!(" [obligations: {}]", o.join(", ")));
        }
        s
    }
}

/// Decides requests.
///
/// # Contract
/// Every implementation guarantees, and the [`conformance`] functions check:
/// 1. **Default deny** — a request no policy applies to is denied with `determining` empty.
/// 2. **Deterministic** — the same request gives the same decision.
/// 3. **Explained** — an applicable decision names its determining policies.
/// 4. **No panics** — a malformed request is an `Err`, not a panic.
pub trait Policy: Send + Sync + std::fmt::Debug {
    /// A name for explanations and audit records.
    fn name(&self) -> &str;
    /// Decides one request.
    fn evaluate(&self, request: &Request) -> Result<Decision>;
}

impl<P: Policy + ?Sized> Policy for Box<P> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn evaluate(&self, request: &Request) -> Result<Decision> {
        (**self).evaluate(request)
    }
}

impl<P: Policy + ?Sized> Policy for Arc<P> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn evaluate(&self, request: &Request) -> Result<Decision> {
        (**self).evaluate(request)
    }
}

/// How [`Combined`] merges the decisions of its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combining {
    /// Any applicable deny wins; otherwise any allow; otherwise default deny.
    DenyOverrides,
    /// The first member whose decision is applicable decides.
    FirstApplicable,
}

/// Several policies as one.
#[derive(Debug)]
pub struct Combined {
    name: String,
    how: Combining,
    members: Vec<Box<dyn Policy>>,
}

impl Combined {
    /// Combines `members` by `how`.
    pub fn new(name: impl Into<String>, how: Combining, members: Vec<Box<dyn Policy>>) -> Self {
        Self {
            name: name.into(),
            how,
            members,
        }
    }
}

impl Policy for Combined {
    fn name(&self) -> &str {
        &self.name
    }

    fn evaluate(&self, request: &Request) -> Result<Decision> {
        let mut allow: Option<Decision> = None;
        let mut errors = Vec::new();
        for m in &self.members {
            let d = m.evaluate(request)?;
            errors.extend(d.errors.iter().cloned());
            if !d.applicable() {
                continue;
            }
            match (self.how, d.effect) {
                (Combining::FirstApplicable, _) | (Combining::DenyOverrides, Effect::Deny) => {
                    return Ok(Decision {
                        decided_by: format!("{} → {}", self.name, d.decided_by),
                        errors,
                        ..d
                    });
                }
                (Combining::DenyOverrides, Effect::Allow) => {
                    if allow.is_none() {
                        allow = Some(d);
                    }
                }
            }
        }
        Ok(match allow {
            Some(d) => Decision {
                decided_by: format!("{} → {}", self.name, d.decided_by),
                errors,
                ..d
            },
            None => Decision {
                effect: Effect::Deny,
                determining: Vec::new(),
                reasons: Vec::new(),
                obligations: Vec::new(),
                errors,
                decided_by: self.name.clone(),
            },
        })
    }
}

/// Where decisions are recorded (the `aistd` root package wires it to the governance audit log).
pub trait DecisionSink: Send + Sync + std::fmt::Debug {
    /// Records one decision.
    fn record(&self, request: &Request, decision: &Decision) -> Result<()>;
}

/// A policy whose every decision is recorded in a sink before it is returned.
#[derive(Debug)]
pub struct Audited<P> {
    inner: P,
    sink: Arc<dyn DecisionSink>,
}

impl<P: Policy> Audited<P> {
    /// Wraps `inner`.
    pub fn new(inner: P, sink: Arc<dyn DecisionSink>) -> Self {
        Self { inner, sink }
    }
}

impl<P: Policy> Policy for Audited<P> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn evaluate(&self, request: &Request) -> Result<Decision> {
        let d = self.inner.evaluate(request)?;
        self.sink.record(request, &d)?;
        Ok(d)
    }
}

/// Checks of the [`Policy`] Contract, for implementors' tests. Each returns `Err` with what broke.
pub mod conformance {
    use super::{Policy, Request};

    /// Clause 1: `unmatched` (a request no policy of `p` applies to) is a default deny.
    pub fn default_deny(p: &dyn Policy, unmatched: &Request) -> Result<(), String> {
        let d = p.evaluate(unmatched).map_err(|e| e.to_string())?;
        if d.allowed() || d.applicable() {
            return Err(format!("expected a default deny, got {d:?}"));
        }
        Ok(())
    }

    /// Clause 2: evaluating each request twice gives equal decisions.
    pub fn deterministic(p: &dyn Policy, requests: &[Request]) -> Result<(), String> {
        for r in requests {
            let (a, b) = (p.evaluate(r), p.evaluate(r));
            match (a, b) {
                (Ok(a), Ok(b)) if a == b => {}
                (Err(a), Err(b)) if a == b => {}
                (a, b) => return Err(format!("{r:?}: {a:?} then {b:?}")),
            }
        }
        Ok(())
    }

    /// Clause 3: applicable decisions name their determining policies and explain themselves.
    pub fn explained(p: &dyn Policy, requests: &[Request]) -> Result<(), String> {
        for r in requests {
            if let Ok(d) = p.evaluate(r)
                && d.applicable()
                && (d.determining.iter().any(String::is_empty)
                    || !d.explain().contains(&d.determining[0]))
            {
                return Err(format!("{r:?}: decision not explained: {d:?}"));
            }
        }
        Ok(())
    }

    /// Clause 4: malformed requests are errors, not panics.
    pub fn malformed_is_error(p: &dyn Policy) -> Result<(), String> {
        for r in [
            Request::new("", "", ""),
            Request::new("not an entity", "Action::\"read\"", "x::\"y\""),
            Request::new("User::\"a\"", "Action::\"read\"", "Doc::\"d\"")
                .with_context(serde_json::json!(3)),
        ] {
            if p.evaluate(&r).is_ok() {
                return Err(format!("{r:?} was accepted"));
            }
        }
        Ok(())
    }
}
