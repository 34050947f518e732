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
//! and reused; parsed entity references are cached too. A flat context (strings, integers,
//! Booleans) is converted directly, and Cedar's schema check of the request runs once per
//! request shape (entity types, action, context attribute names and types) — the only things
//! it examines; anything else takes Cedar's schema-based JSON conversion.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use cedar_policy::{
    ActionConstraint, Authorizer, Context, Entities, EntityUid, PolicyId, PolicySet,
    PrincipalConstraint, Request as CedarRequest, ResourceConstraint, Schema, ValidationMode,
    Validator,
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
    /// `action == A` (None: any other action scope), as an interned name.
    action: Option<u32>,
    /// The principal's entity type, interned.
    principal_type: Option<u32>,
    /// The resource's entity type, interned.
    resource_type: Option<u32>,
    /// `context.attr == literal` as a conjunct of a `when` clause (attribute index, literal).
    context_eq: Option<(usize, serde_json::Value)>,
}

/// A parsed entity reference with the interned ids of itself and of its type.
#[derive(Debug, Clone)]
struct Uid {
    uid: EntityUid,
    id: Option<u32>,
    type_id: Option<u32>,
    /// `Type::"id"` as Cedar prints it.
    text: String,
    /// `Type` as Cedar prints it.
    type_text: String,
}

/// What a policy contributes to an explanation.
#[derive(Debug)]
struct Meta {
    order: usize,
    reason: Option<String>,
    obligations: Vec<Obligation>,
}

/// Bounded caches: cleared when they reach this many entries.
const CACHE_LIMIT: usize = 4096;

/// The per-policy facts, the slices built so far, and parsed entity references.
#[derive(Debug, Default)]
struct SliceIndex {
    entries: Vec<Entry>,
    /// Position of each policy in the source, its reason and its obligations (annotations are
    /// read once: `Policy::annotation` parses its key on every call).
    meta: HashMap<PolicyId, Meta>,
    slices: Mutex<HashMap<Vec<u32>, Arc<PolicySet>>>,
    uids: Mutex<HashMap<String, Uid>>,
    /// Interned action references and entity type names that policy scopes mention.
    names: HashMap<String, u32>,
    /// The context attributes some policy is indexed on.
    attrs: Vec<String>,
    /// Request shapes the schema has accepted.
    shapes: Mutex<std::collections::HashSet<String>>,
    /// Per request key (entity types, action, flat context): the context and the slice.
    prepared: Mutex<HashMap<String, (Context, Arc<PolicySet>)>>,
}

/// A JSON object whose values are all strings, integers or Booleans, as Cedar expressions, and a
/// description of its attribute names and types.
fn flat_context(context: &serde_json::Value) -> Option<FlatContext<'_>> {
    let obj = context.as_object()?;
    let mut attrs: Vec<(&str, &serde_json::Value)> = Vec::with_capacity(obj.len());
    for (k, v) in obj {
        match v {
            serde_json::Value::String(_) | serde_json::Value::Bool(_) => {}
            serde_json::Value::Number(n) if n.is_i64() => {}
            _ => return None,
        }
        attrs.push((k, v));
    }
    attrs.sort_unstable_by_key(|(k, _)| *k);
    Some(FlatContext { attrs })
}

/// A context of strings, integers and Booleans, attributes sorted by name.
struct FlatContext<'a> {
    attrs: Vec<(&'a str, &'a serde_json::Value)>,
}

impl FlatContext<'_> {
    /// `attr:type,…` (the shape) and the shape followed by the values (the key); JSON-quoted
    /// names and strings keep both unambiguous.
    fn keys(&self, prefix: &str) -> (String, String) {
        let mut shape = String::with_capacity(prefix.len() + 16 * self.attrs.len());
        shape.push_str(prefix);
        for (k, v) in &self.attrs {
            shape.push_str(&serde_json::Value::String((*k).to_string()).to_string());
            shape.push(match v {
                serde_json::Value::String(_) => 's',
                serde_json::Value::Bool(_) => 'b',
                _ => 'l',
            });
        }
        let mut key = shape.clone();
        for (_, v) in &self.attrs {
            key.push('|');
            key.push_str(&v.to_string());
        }
        (shape, key)
    }

    fn context(&self) -> Result<Context> {
        use cedar_policy::RestrictedExpression as E;
        let pairs = self.attrs.iter().map(|(k, v)| {
            let e = match v {
                serde_json::Value::String(s) => E::new_string(s.clone()),
                serde_json::Value::Bool(b) => E::new_bool(*b),
                _ => E::new_long(v.as_i64().unwrap_or_default()),
            };
            (k.to_string(), e)
        });
        Context::from_pairs(pairs).map_err(|e| invalid("request context", e.to_string()))
    }
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
        let mut names: HashMap<String, u32> = HashMap::new();
        let mut attrs: Vec<String> = Vec::new();
        let mut intern = |s: String| {
            let n = names.len() as u32;
            *names.entry(s).or_insert(n)
        };
        let mut entries = Vec::new();
        for p in policies.policies() {
            let action = match p.action_constraint() {
                ActionConstraint::Eq(a) => Some(intern(a.to_string())),
                _ => None,
            };
            let principal_type = match p.principal_constraint() {
                PrincipalConstraint::Eq(u) => Some(intern(u.type_name().to_string())),
                PrincipalConstraint::Is(t) | PrincipalConstraint::IsIn(t, _) => {
                    Some(intern(t.to_string()))
                }
                _ => None,
            };
            let resource_type = match p.resource_constraint() {
                ResourceConstraint::Eq(u) => Some(intern(u.type_name().to_string())),
                ResourceConstraint::Is(t) | ResourceConstraint::IsIn(t, _) => {
                    Some(intern(t.to_string()))
                }
                _ => None,
            };
            let context_eq = p
                .to_json()
                .ok()
                .and_then(|j| {
                    j.get("conditions")?.as_array()?.iter().find_map(|c| {
                        if c.get("kind")?.as_str()? != "when" {
                            return None;
                        }
                        let mut parts = Vec::new();
                        conjuncts(c.get("body")?, &mut parts);
                        parts.into_iter().find_map(context_equality)
                    })
                })
                .map(|(attr, lit)| {
                    let i = attrs.iter().position(|a| *a == attr).unwrap_or_else(|| {
                        attrs.push(attr);
                        attrs.len() - 1
                    });
                    (i, lit)
                });
            entries.push(Entry {
                policy: p.clone(),
                action,
                principal_type,
                resource_type,
                context_eq,
            });
        }
        let meta = policies
            .policies()
            .enumerate()
            .map(|(i, p)| {
                let ann = |key: &str| {
                    p.annotations()
                        .find(|(k, _)| *k == key)
                        .map(|(_, v)| v.to_string())
                };
                let obligations = ann("obligation")
                    .map(|o| o.split(',').map(Obligation::parse).collect())
                    .unwrap_or_default();
                let m = Meta {
                    order: i,
                    reason: ann("reason"),
                    obligations,
                };
                (p.id().clone(), m)
            })
            .collect();
        Self {
            entries,
            meta,
            names,
            attrs,
            ..Self::default()
        }
    }

    fn put_prepared(&self, key: String, context: Context, slice: Arc<PolicySet>) {
        if let Ok(mut m) = self.prepared.lock() {
            if m.len() >= CACHE_LIMIT {
                m.clear();
            }
            m.insert(key, (context, slice));
        }
    }

    fn shape_checked(&self, shape: &str) -> bool {
        self.shapes.lock().is_ok_and(|s| s.contains(shape))
    }

    fn remember_shape(&self, shape: String) {
        if let Ok(mut s) = self.shapes.lock() {
            if s.len() >= CACHE_LIMIT {
                s.clear();
            }
            s.insert(shape);
        }
    }

    fn uid(&self, what: &str, text: &str) -> Result<Uid> {
        if let Some(u) = self.uids.lock().ok().and_then(|m| m.get(text).cloned()) {
            return Ok(u);
        }
        let uid = EntityUid::from_str(text)
            .map_err(|e| invalid(format!("request {what} `{text}`"), e.to_string()))?;
        let (printed, type_text) = (uid.to_string(), uid.type_name().to_string());
        let u = Uid {
            id: self.names.get(&printed).copied(),
            type_id: self.names.get(&type_text).copied(),
            uid,
            text: printed,
            type_text,
        };
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
        principal: &Uid,
        action: &Uid,
        resource: &Uid,
        context: &serde_json::Value,
    ) -> Result<Arc<PolicySet>> {
        // Only plain values are compared; anything else is left to Cedar.
        let values: Vec<Option<&serde_json::Value>> = self
            .attrs
            .iter()
            .map(|a| {
                context
                    .get(a)
                    .filter(|v| v.is_string() || v.is_number() || v.is_boolean())
            })
            .collect();
        // An id the policies never mention is None, which no constrained scope matches.
        let matches = |want: Option<u32>, got: Option<u32>| want.is_none() || want == got;
        let candidates: Vec<u32> = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| {
                matches(e.action, action.id)
                    && matches(e.principal_type, principal.type_id)
                    && matches(e.resource_type, resource.type_id)
                    && e.context_eq
                        .as_ref()
                        .is_none_or(|(i, lit)| values[*i].is_none_or(|v| v == lit))
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

    /// The Cedar request through Cedar's schema-based JSON conversion of the context.
    fn request_from_json(&self, r: &Request) -> Result<CedarRequest> {
        let principal = self.index.uid("principal", &r.principal)?;
        let action = self.index.uid("action", &r.action)?;
        let resource = self.index.uid("resource", &r.resource)?;
        let context = Context::from_json_value(
            r.context.clone(),
            self.schema.as_ref().map(|s| (s, &action.uid)),
        )
        .map_err(|e| invalid("request context", e.to_string()))?;
        CedarRequest::new(
            principal.uid,
            action.uid,
            resource.uid,
            context,
            self.schema.as_ref(),
        )
        .map_err(|e| invalid("request", e.to_string()))
    }

    fn decide(&self, r: &Request, sliced: bool) -> Result<Decision> {
        let principal = self.index.uid("principal", &r.principal)?;
        let action = self.index.uid("action", &r.action)?;
        let resource = self.index.uid("resource", &r.resource)?;
        if !r.context.is_object() {
            return Err(invalid("request context", "must be a JSON object"));
        }
        if sliced && let Some(flat) = flat_context(&r.context) {
            // A flat context of strings, integers and Booleans converts directly. Cedar's schema
            // check looks only at the request's shape (entity types, action, context attribute
            // names and types), so it runs once per shape; the context and the slice are kept
            // per request key.
            let prefix = format!(
                "{}|{}|{}|",
                principal.type_text, action.text, resource.type_text
            );
            let (shape, key) = flat.keys(&prefix);
            let hit = self
                .index
                .prepared
                .lock()
                .ok()
                .and_then(|m| m.get(&key).cloned());
            let (context, slice) = match hit {
                Some(p) => p,
                None => {
                    let context = flat.context()?;
                    if self.schema.is_some() && !self.index.shape_checked(&shape) {
                        let checked = CedarRequest::new(
                            principal.uid.clone(),
                            action.uid.clone(),
                            resource.uid.clone(),
                            context.clone(),
                            self.schema.as_ref(),
                        );
                        if checked.is_err() {
                            // The schema may convert strings (to entities or extension values):
                            // Cedar's own conversion decides, and words any error.
                            return self.slow(r, true);
                        }
                        self.index.remember_shape(shape);
                    }
                    let slice = self
                        .index
                        .slice(&principal, &action, &resource, &r.context)?;
                    self.index.put_prepared(key, context.clone(), slice.clone());
                    (context, slice)
                }
            };
            let request = CedarRequest::new(principal.uid, action.uid, resource.uid, context, None)
                .map_err(|e| invalid("request", e.to_string()))?;
            let response = Authorizer::new().is_authorized(&request, &slice, &self.entities);
            return Ok(self.explain(&response));
        }
        self.slow(r, sliced)
    }

    /// Through Cedar's schema-based JSON conversion of the context (and the slice, if `sliced`).
    fn slow(&self, r: &Request, sliced: bool) -> Result<Decision> {
        let slice = if sliced {
            let principal = self.index.uid("principal", &r.principal)?;
            let action = self.index.uid("action", &r.action)?;
            let resource = self.index.uid("resource", &r.resource)?;
            Some(
                self.index
                    .slice(&principal, &action, &resource, &r.context)?,
            )
        } else {
            None
        };
        let request = self.request_from_json(r)?;
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
        ids.sort_by_key(|id| self.index.meta.get(*id).map_or(usize::MAX, |m| m.order));
        let determining: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
        let mut reasons = Vec::new();
        let mut obligations = Vec::new();
        for id in ids {
            if let Some(m) = self.index.meta.get(id) {
                reasons.push(m.reason.clone().unwrap_or_else(|| format!("policy {id}")));
                obligations.extend(m.obligations.iter().cloned());
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
