//! [`Policy`] over Cedar, through the `cedar-policy` crate.
//!
//! Annotations on a Cedar policy feed the decision: `@id("…")` names it (otherwise `policy0`,
//! `policy1`, … in file order), `@reason("…")` explains it, `@obligation("kind:value")` is an
//! obligation of a decision it determines.
//!
//! # Policy slicing
//!
//! Cedar's authorizer evaluates every policy it is given. Before calling it, [`CedarPolicy`]
//! keeps only the policies that can apply to the request, using what is decidable without
//! evaluation (the same idea as OPA's rule indexing): the action scope (`action == A`), the
//! principal and resource entity types of the scope (`is T`, `== T::"x"`), and one equality
//! `context.attr == literal` among the top-level conjuncts of a `when` clause. A skipped policy
//! is one whose scope or condition is false for the request, so the decision, the determining
//! policies and the reasons are exactly Cedar's on the full set; only evaluation errors of
//! skipped policies (say, a missing attribute in a condition that was false anyway by the
//! indexed equality) are not reported. Slices are built once per distinct set of candidates
//! and reused; parsed entity references are cached too.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use cedar_policy::{
    ActionConstraint, Authorizer, Context, Entities, EntityTypeName, EntityUid, PolicyId,
    PolicySet, PrincipalConstraint, Request as CedarRequest, ResourceConstraint, Schema,
    ValidationMode, Validator,
};

use crate::error::{Error, Result};
use crate::policy::{Decision, Effect, Obligation, Policy, Request};

/// Built-in policy packs for AI platforms, in Cedar (see `compliance/packs/`).
pub mod packs {
    /// Data access by sensitivity level and purpose: Public and Internal for anyone; higher
    /// levels need `principal.clearance ≥ context.level_rank` and a purpose the principal holds;
    /// Restricted data only for the purposes listed in `resource.allowed_purposes`, if any.
    pub const DATA_ACCESS: &str = include_str!("../packs/data_access.cedar");
    /// Purpose limitation for training: a dataset is used for training only if its consent
    /// covers training, and never after its retention date.
    pub const TRAINING: &str = include_str!("../packs/training.cedar");
    /// Deployment gates: a model is deployed only with an approval and a fairness report within
    /// thresholds, and only to regions its data may be processed in.
    pub const DEPLOYMENT: &str = include_str!("../packs/deployment.cedar");
    /// The entity and action schema the packs are written against (Cedar schema format).
    pub const SCHEMA: &str = include_str!("../packs/aistd.cedarschema");
}

/// Cedar policies with their entities (and, optionally, a schema they were validated against).
#[derive(Debug, Clone)]
pub struct CedarPolicy {
    name: String,
    policies: PolicySet,
    entities: Entities,
    schema: Option<Schema>,
    index: Arc<SliceIndex>,
}

/// What can be decided about one policy before evaluating it.
#[derive(Debug)]
struct Entry {
    policy: cedar_policy::Policy,
    /// `action == A` (None: any other action scope).
    action: Option<EntityUid>,
    principal_type: Option<EntityTypeName>,
    resource_type: Option<EntityTypeName>,
    /// `context.attr == literal` as a conjunct of a `when` clause.
    context_eq: Option<(String, serde_json::Value)>,
}

/// Bounded caches: cleared when they reach this many entries.
const CACHE_LIMIT: usize = 4096;

/// The per-policy facts, the slices built so far, and parsed entity references.
#[derive(Debug, Default)]
struct SliceIndex {
    entries: Vec<Entry>,
    /// Position of each policy in the source.
    order: HashMap<PolicyId, usize>,
    slices: Mutex<HashMap<Vec<u32>, Arc<PolicySet>>>,
    uids: Mutex<HashMap<String, EntityUid>>,
}

/// `context.attr == literal` (either order) in EST JSON: the attribute and the literal.
fn context_equality(e: &serde_json::Value) -> Option<(String, serde_json::Value)> {
    let eq = e.get("==")?;
    let side = |a: &serde_json::Value, b: &serde_json::Value| {
        let dot = a.get(".")?;
        if dot.get("left")?.get("Var")?.as_str()? != "context" {
            return None;
        }
        let attr = dot.get("attr")?.as_str()?.to_string();
        let lit = b.get("Value")?;
        (lit.is_string() || lit.is_i64() || lit.is_boolean()).then(|| (attr, lit.clone()))
    };
    let (l, r) = (eq.get("left")?, eq.get("right")?);
    side(l, r).or_else(|| side(r, l))
}

/// The top-level conjuncts of an expression.
fn conjuncts<'a>(e: &'a serde_json::Value, out: &mut Vec<&'a serde_json::Value>) {
    match e.get("&&") {
        Some(and) => {
            if let (Some(l), Some(r)) = (and.get("left"), and.get("right")) {
                conjuncts(l, out);
                conjuncts(r, out);
            }
        }
        None => out.push(e),
    }
}

impl SliceIndex {
    fn new(policies: &PolicySet) -> Self {
        let entries = policies
            .policies()
            .map(|p| {
                let action = match p.action_constraint() {
                    ActionConstraint::Eq(a) => Some(a),
                    _ => None,
                };
                let principal_type = match p.principal_constraint() {
                    PrincipalConstraint::Eq(u) => Some(u.type_name().clone()),
                    PrincipalConstraint::Is(t) | PrincipalConstraint::IsIn(t, _) => Some(t),
                    _ => None,
                };
                let resource_type = match p.resource_constraint() {
                    ResourceConstraint::Eq(u) => Some(u.type_name().clone()),
                    ResourceConstraint::Is(t) | ResourceConstraint::IsIn(t, _) => Some(t),
                    _ => None,
                };
                let context_eq = p.to_json().ok().and_then(|j| {
                    j.get("conditions")?.as_array()?.iter().find_map(|c| {
                        if c.get("kind")?.as_str()? != "when" {
                            return None;
                        }
                        let mut parts = Vec::new();
                        conjuncts(c.get("body")?, &mut parts);
                        parts.into_iter().find_map(context_equality)
                    })
                });
                Entry {
                    policy: p.clone(),
                    action,
                    principal_type,
                    resource_type,
                    context_eq,
                }
            })
            .collect();
        let order = policies
            .policies()
            .enumerate()
            .map(|(i, p)| (p.id().clone(), i))
            .collect();
        Self {
            entries,
            order,
            ..Self::default()
        }
    }

    fn uid(&self, what: &str, text: &str) -> Result<EntityUid> {
        if let Some(u) = self.uids.lock().ok().and_then(|m| m.get(text).cloned()) {
            return Ok(u);
        }
        let u = EntityUid::from_str(text)
            .map_err(|e| invalid(format!("request {what} `{text}`"), e.to_string()))?;
        if let Ok(mut m) = self.uids.lock() {
            if m.len() >= CACHE_LIMIT {
                m.clear();
            }
            m.insert(text.to_string(), u.clone());
        }
        Ok(u)
    }

    /// The policies that can apply to the request.
    fn slice(
        &self,
        principal: &EntityUid,
        action: &EntityUid,
        resource: &EntityUid,
        context: &serde_json::Value,
    ) -> Result<Arc<PolicySet>> {
        let candidates: Vec<u32> = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| {
                e.action.as_ref().is_none_or(|a| a == action)
                    && e.principal_type
                        .as_ref()
                        .is_none_or(|t| t == principal.type_name())
                    && e.resource_type
                        .as_ref()
                        .is_none_or(|t| t == resource.type_name())
                    && e.context_eq.as_ref().is_none_or(|(attr, lit)| {
                        match context.get(attr) {
                            // Only plain values are compared; anything else is left to Cedar.
                            Some(v) if v.is_string() || v.is_number() || v.is_boolean() => v == lit,
                            _ => true,
                        }
                    })
            })
            .map(|(i, _)| i as u32)
            .collect();
        if let Some(s) = self
            .slices
            .lock()
            .ok()
            .and_then(|m| m.get(&candidates).cloned())
        {
            return Ok(s);
        }
        let set = PolicySet::from_policies(
            candidates
                .iter()
                .map(|i| self.entries[*i as usize].policy.clone()),
        )
        .map_err(|e| invalid("Cedar policy slice", e.to_string()))?;
        let set = Arc::new(set);
        if let Ok(mut m) = self.slices.lock() {
            if m.len() >= CACHE_LIMIT {
                m.clear();
            }
            m.insert(candidates, set.clone());
        }
        Ok(set)
    }
}

/// Line and column (1-based) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::InvalidInput {
        what: what.into(),
        reason: reason.into(),
    }
}

impl CedarPolicy {
    /// Parses policies from text; `origin` names them in errors and explanations. Parse errors
    /// carry the line and column.
    pub fn from_str(origin: &str, text: &str) -> Result<Self> {
        let policies = PolicySet::from_str(text).map_err(|e| {
            use miette::Diagnostic;
            let at = e
                .labels()
                .and_then(|mut l| l.next())
                .map(|l| line_col(text, l.offset()));
            let msg = e.to_string();
            let detail: Vec<String> = e.iter().map(|p| p.to_string()).collect();
            match at {
                Some((line, col)) => invalid(
                    format!("Cedar policies {origin}"),
                    format!("line {line}, column {col}: {msg} ({})", detail.join("; ")),
                ),
                None => invalid(format!("Cedar policies {origin}"), msg),
            }
        })?;
        // Give each policy its @id annotation as its id, so explanations name it.
        let mut renamed = PolicySet::new();
        for p in policies.policies() {
            let id = p
                .annotation("id")
                .map(str::to_string)
                .unwrap_or_else(|| p.id().to_string());
            renamed.add(p.new_id(PolicyId::new(&id))).map_err(|e| {
                invalid(
                    format!("Cedar policies {origin}"),
                    format!("policy `{id}`: {e}"),
                )
            })?;
        }
        Ok(Self {
            name: origin.to_string(),
            index: Arc::new(SliceIndex::new(&renamed)),
            policies: renamed,
            entities: Entities::empty(),
            schema: None,
        })
    }

    /// Reads policies from a `.cedar` file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| invalid(format!("Cedar policies {}", path.display()), e.to_string()))?;
        Self::from_str(&path.display().to_string(), &text)
    }

    /// Adds entities from Cedar's JSON entity format.
    pub fn with_entities_json(mut self, json: &str) -> Result<Self> {
        self.entities = Entities::from_json_str(json, self.schema.as_ref())
            .map_err(|e| invalid("Cedar entities", e.to_string()))?;
        Ok(self)
    }

    /// Validates the policies against a Cedar schema (Cedar schema format), strictly; entities
    /// added afterwards are checked against it too.
    pub fn validated(mut self, schema_text: &str) -> Result<Self> {
        let (schema, _warnings) = Schema::from_cedarschema_str(schema_text)
            .map_err(|e| invalid("Cedar schema", e.to_string()))?;
        let result =
            Validator::new(schema.clone()).validate(&self.policies, ValidationMode::Strict);
        if !result.validation_passed() {
            let errs: Vec<String> = result
                .validation_errors()
                .map(|e| format!("policy `{}`: {e}", e.policy_id()))
                .collect();
            return Err(invalid(
                format!("Cedar policies {}", self.name),
                format!("fail schema validation: {}", errs.join("; ")),
            ));
        }
        self.schema = Some(schema);
        Ok(self)
    }

    /// Number of policies.
    pub fn len(&self) -> usize {
        self.policies.policies().count()
    }

    /// Whether there are no policies.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Evaluates `r` against every policy, without slicing (for checking the slicing).
    pub fn evaluate_unsliced(&self, r: &Request) -> Result<Decision> {
        self.decide(r, false)
    }

    fn decide(&self, r: &Request, sliced: bool) -> Result<Decision> {
        let principal = self.index.uid("principal", &r.principal)?;
        let action = self.index.uid("action", &r.action)?;
        let resource = self.index.uid("resource", &r.resource)?;
        if !r.context.is_object() {
            return Err(invalid("request context", "must be a JSON object"));
        }
        let slice = if sliced {
            Some(
                self.index
                    .slice(&principal, &action, &resource, &r.context)?,
            )
        } else {
            None
        };
        let context = Context::from_json_value(
            r.context.clone(),
            self.schema.as_ref().map(|s| (s, &action)),
        )
        .map_err(|e| invalid("request context", e.to_string()))?;
        let request = CedarRequest::new(principal, action, resource, context, self.schema.as_ref())
            .map_err(|e| invalid("request", e.to_string()))?;
        let set = slice.as_deref().unwrap_or(&self.policies);
        let response = Authorizer::new().is_authorized(&request, set, &self.entities);
        Ok(self.explain(&response))
    }
}

impl Policy for CedarPolicy {
    fn name(&self) -> &str {
        &self.name
    }

    fn evaluate(&self, r: &Request) -> Result<Decision> {
        self.decide(r, true)
    }
}

impl CedarPolicy {
    fn explain(&self, response: &cedar_policy::Response) -> Decision {
        let effect = match response.decision() {
            cedar_policy::Decision::Allow => Effect::Allow,
            cedar_policy::Decision::Deny => Effect::Deny,
        };
        let diag = response.diagnostics();
        // Cedar reports the determining policies as a set; list them in file order.
        let mut ids: Vec<&PolicyId> = diag.reason().collect();
        ids.sort_by_key(|id| self.index.order.get(*id).copied().unwrap_or(usize::MAX));
        let determining: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
        let mut reasons = Vec::new();
        let mut obligations = Vec::new();
        for id in ids {
            if let Some(p) = self.policies.policy(id) {
                reasons.push(
                    p.annotation("reason")
                        .map_or_else(|| format!("policy {id}"), str::to_string),
                );
                if let Some(o) = p.annotation("obligation") {
                    obligations.extend(o.split(',').map(Obligation::parse));
                }
            }
        }
        Decision {
            effect,
            determining,
            reasons,
            obligations,
            errors: diag.errors().map(|e| e.to_string()).collect(),
            decided_by: self.name.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_carry_line_and_column() {
        let err = CedarPolicy::from_str(
            "t.cedar",
            "permit(principal, action, resource);\n\npermit(principal, action resource);",
        )
        .expect_err("bad");
        let text = err.to_string();
        assert!(
            text.contains("t.cedar") && text.contains("line 3"),
            "{text}"
        );
    }

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
    }
}
