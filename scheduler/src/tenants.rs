//! Tenants: weights, guaranteed and limited quotas, in a hierarchy (an organisation's teams
//! share its quota), as YuniKorn's queues or Kueue's cohorts have them.
//!
//! A quota names only the resources it limits: `gpu=8` limits GPUs and leaves CPU and memory
//! free. A tenant *within its guarantee* (every named resource of its guarantee still covers
//! what it holds plus the job) is served before tenants that borrow beyond theirs, and may
//! preempt their preemptible jobs; a *limit* is a ceiling that is never exceeded, at any level
//! of the hierarchy. Tenants not configured are top-level, weight 1, no guarantee, no limit.
//!
//! The JSON form (`aistd sched simulate --tenants FILE`):
//!
//! ```json
//! [
//!   {"name": "research", "limit": "gpu=24"},
//!   {"name": "vision", "parent": "research", "weight": 2, "guaranteed": "gpu=8"},
//!   {"name": "nlp", "parent": "research", "weight": 1, "guaranteed": "gpu=8"}
//! ]
//! ```

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::resources::Resources;

/// One tenant (a team, user or queue).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Tenant {
    /// Unique name: what jobs name as their `tenant`.
    pub name: String,
    /// The tenant it belongs to, if any.
    pub parent: Option<String>,
    /// Its weight among its siblings (> 0; default 1).
    pub weight: f64,
    /// What it is guaranteed (named resources only).
    pub guaranteed: Resources,
    /// What it may never exceed, borrowing included (named resources only).
    pub limit: Option<Resources>,
}

impl Tenant {
    /// A top-level tenant of weight 1 with no quota.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            parent: None,
            weight: 1.0,
            guaranteed: Resources::zero(),
            limit: None,
        }
    }

    /// Under `parent`.
    pub fn parent(mut self, parent: impl Into<String>) -> Self {
        self.parent = Some(parent.into());
        self
    }

    /// With a weight.
    pub fn weight(mut self, w: f64) -> Self {
        self.weight = w;
        self
    }

    /// With a guarantee.
    pub fn guaranteed(mut self, r: Resources) -> Self {
        self.guaranteed = r;
        self
    }

    /// With a limit.
    pub fn limit(mut self, r: Resources) -> Self {
        self.limit = Some(r);
        self
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    name: String,
    #[serde(default)]
    parent: Option<String>,
    #[serde(default)]
    weight: Option<f64>,
    #[serde(default)]
    guaranteed: Option<String>,
    #[serde(default)]
    limit: Option<String>,
}

/// A validated set of tenants.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tenants {
    by_name: HashMap<String, Tenant>,
}

impl Tenants {
    /// Checks names are unique, parents exist, there are no cycles, weights are positive and
    /// guarantees fit in limits.
    pub fn new(list: Vec<Tenant>) -> Result<Self> {
        let mut by_name = HashMap::new();
        for t in list {
            let what = format!("tenant {:?}", t.name);
            if t.name.is_empty() {
                return Err(Error::invalid("tenant", "has an empty name"));
            }
            if !(t.weight.is_finite() && t.weight > 0.0) {
                return Err(Error::invalid(
                    what,
                    format!("weight {} must be > 0", t.weight),
                ));
            }
            if let Some(l) = &t.limit
                && !within(l, &t.guaranteed)
            {
                return Err(Error::invalid(
                    what,
                    format!("guarantee {} exceeds its limit {l}", t.guaranteed),
                ));
            }
            if by_name.insert(t.name.clone(), t.clone()).is_some() {
                return Err(Error::invalid(what, "is listed twice"));
            }
        }
        let s = Self { by_name };
        for t in s.by_name.values() {
            let mut seen = vec![t.name.as_str()];
            let mut cur = t;
            while let Some(p) = &cur.parent {
                cur = s.by_name.get(p).ok_or_else(|| {
                    Error::invalid(
                        format!("tenant {:?}", t.name),
                        format!("its parent {p:?} is not listed"),
                    )
                })?;
                if seen.contains(&cur.name.as_str()) {
                    return Err(Error::invalid(
                        format!("tenant {:?}", t.name),
                        "its parents form a cycle",
                    ));
                }
                seen.push(&cur.name);
            }
        }
        Ok(s)
    }

    /// Parses the JSON form (see the module docs).
    pub fn from_json(file: &str, text: &str) -> Result<Self> {
        let raw: Vec<RawTenant> = serde_json::from_str(text).map_err(|e| Error::Trace {
            file: file.into(),
            line: e.line(),
            reason: e.to_string(),
        })?;
        let parse = |name: &str, what: &str, s: &Option<String>| -> Result<Option<Resources>> {
            s.as_deref()
                .map(|s| {
                    Resources::parse(s).map_err(|e| Error::Trace {
                        file: file.into(),
                        line: 0,
                        reason: format!("tenant {name:?}, {what}: {e}"),
                    })
                })
                .transpose()
        };
        let mut list = Vec::new();
        for r in raw {
            let mut t = Tenant::new(r.name.clone());
            t.parent = r.parent;
            t.weight = r.weight.unwrap_or(1.0);
            t.guaranteed = parse(&r.name, "guaranteed", &r.guaranteed)?.unwrap_or_default();
            t.limit = parse(&r.name, "limit", &r.limit)?;
            list.push(t);
        }
        Self::new(list)
    }

    /// A tenant's configuration.
    pub fn get(&self, name: &str) -> Option<&Tenant> {
        self.by_name.get(name)
    }

    /// Whether none is configured.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The chain from the top-level ancestor down to `name` (just `name` if not configured).
    pub fn path(&self, name: &str) -> Vec<String> {
        let mut out = vec![name.to_string()];
        let mut cur = self.by_name.get(name);
        while let Some(p) = cur.and_then(|t| t.parent.as_ref()) {
            out.push(p.clone());
            cur = self.by_name.get(p);
        }
        out.reverse();
        out
    }

    /// Weight (1 if not configured).
    pub fn weight(&self, name: &str) -> f64 {
        self.by_name.get(name).map_or(1.0, |t| t.weight)
    }
}

/// Whether `amount` stays within `quota` on every resource `quota` names (non-zero).
pub fn within(quota: &Resources, amount: &Resources) -> bool {
    first_excess(quota, amount).is_none()
}

/// The first resource `quota` names that `amount` exceeds: (name, quota, amount).
pub fn first_excess(quota: &Resources, amount: &Resources) -> Option<(String, u64, u64)> {
    let have = amount.dimensions();
    for (name, q) in quota.dimensions() {
        if q == 0 {
            continue;
        }
        let a = have.iter().find(|d| d.0 == name).map_or(0, |d| d.1);
        if a > q {
            return Some((name.to_string(), q, a));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hierarchies_validate_and_parse() {
        let t = Tenants::from_json(
            "t.json",
            r#"[{"name":"org","limit":"gpu=24"},
                {"name":"a","parent":"org","weight":2,"guaranteed":"gpu=8"},
                {"name":"b","parent":"org","guaranteed":"gpu=8"}]"#,
        )
        .expect("valid");
        assert_eq!(t.path("a"), vec!["org", "a"]);
        assert_eq!(t.path("unknown"), vec!["unknown"]);
        assert_eq!(t.weight("a"), 2.0);
        assert_eq!(
            t.get("org").and_then(|o| o.limit.clone()),
            Some(Resources::new(0, 0, 24))
        );
        for (bad, why) in [
            (r#"[{"name":"a","parent":"zz"}]"#, "not listed"),
            (
                r#"[{"name":"a","parent":"b"},{"name":"b","parent":"a"}]"#,
                "cycle",
            ),
            (r#"[{"name":"a","weight":0}]"#, "weight"),
            (
                r#"[{"name":"a","guaranteed":"gpu=4","limit":"gpu=2"}]"#,
                "exceeds its limit",
            ),
            (r#"[{"name":"a"},{"name":"a"}]"#, "twice"),
            (r#"[{"name":"a","limit":"gpu=x"}]"#, "limit"),
            (r#"[{"name":"a","quota":"gpu=1"}]"#, "unknown field"),
        ] {
            let e = Tenants::from_json("t.json", bad).expect_err(bad);
            assert!(e.to_string().contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn quotas_only_limit_what_they_name() {
        let q = Resources::new(0, 0, 4);
        assert!(within(&q, &Resources::new(100, 1 << 20, 4)));
        assert_eq!(
            first_excess(&q, &Resources::new(1, 1, 5)),
            Some(("gpu_milli".into(), 4000, 5000))
        );
    }
}
