//! [`Policy`] over Cedar, through the `cedar-policy` crate.
//!
//! Annotations on a Cedar policy feed the decision: `@id("…")` names it (otherwise `policy0`,
//! `policy1`, … in file order), `@reason("…")` explains it, `@obligation("kind:value")` is an
//! obligation of a decision it determines.

use std::path::Path;
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Entities, EntityUid, PolicyId, PolicySet, Request as CedarRequest, Schema,
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

    fn uid(what: &str, text: &str) -> Result<EntityUid> {
        EntityUid::from_str(text)
            .map_err(|e| invalid(format!("request {what} `{text}`"), e.to_string()))
    }
}

impl Policy for CedarPolicy {
    fn name(&self) -> &str {
        &self.name
    }

    fn evaluate(&self, r: &Request) -> Result<Decision> {
        let principal = Self::uid("principal", &r.principal)?;
        let action = Self::uid("action", &r.action)?;
        let resource = Self::uid("resource", &r.resource)?;
        if !r.context.is_object() {
            return Err(invalid("request context", "must be a JSON object"));
        }
        let context = Context::from_json_value(
            r.context.clone(),
            self.schema.as_ref().map(|s| (s, &action)),
        )
        .map_err(|e| invalid("request context", e.to_string()))?;
        let request = CedarRequest::new(principal, action, resource, context, self.schema.as_ref())
            .map_err(|e| invalid("request", e.to_string()))?;
        let response = Authorizer::new().is_authorized(&request, &self.policies, &self.entities);
        let effect = match response.decision() {
            cedar_policy::Decision::Allow => Effect::Allow,
            cedar_policy::Decision::Deny => Effect::Deny,
        };
        let diag = response.diagnostics();
        let determining: Vec<String> = diag.reason().map(|id| id.to_string()).collect();
        let mut reasons = Vec::new();
        let mut obligations = Vec::new();
        for id in diag.reason() {
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
        Ok(Decision {
            effect,
            determining,
            reasons,
            obligations,
            errors: diag.errors().map(|e| e.to_string()).collect(),
            decided_by: self.name.clone(),
        })
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
