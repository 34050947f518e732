//! Annotation: a [`Labeler`] attaches a label to each row of a batch; [`RuleLabeler`] is the
//! built-in rule-based one. The labeler's identity travels with the labels (Arrow field metadata
//! `aistd.labeler` on the label column, and the pipeline report).

use std::fmt::Debug;
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::{ArrayRef, RecordBatch};
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::column::{Col, Val};
use crate::source::{parse_date, parse_timestamp_micros};
use crate::{Error, Result};

/// Field-metadata key under which the labeler identity is stored on a label column.
pub const LABELER_METADATA_KEY: &str = "aistd.labeler";

/// Who produced a set of labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LabelerIdentity {
    /// Name of the labeler (a rule set, a model, an annotator team).
    pub name: String,
    /// Version of it.
    pub version: String,
}

impl std::fmt::Display for LabelerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

/// Attaches labels to rows, a batch at a time.
///
/// # Contract
/// [`label`](Labeler::label) returns a UTF-8 array with one entry per row of the batch (null for
/// "no label"); the same batch gets the same labels; [`identity`](Labeler::identity) is constant.
pub trait Labeler: Send + Sync + Debug {
    /// Who this labeler is.
    fn identity(&self) -> LabelerIdentity;
    /// Labels for every row of `batch`.
    fn label(&self, batch: &RecordBatch) -> Result<ArrayRef>;
}

/// Comparison in a [`Condition`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Op {
    /// Equal.
    Eq,
    /// Not equal.
    Ne,
    /// Less than.
    Lt,
    /// Less than or equal.
    Le,
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Ge,
    /// Equal to one of a list.
    In,
    /// The value is null.
    IsNull,
    /// The value is not null.
    NotNull,
    /// Text matches a regular expression.
    Matches,
}

/// `column op value`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Condition {
    /// Column.
    pub column: String,
    /// Comparison.
    pub op: Op,
    /// Right-hand side (a list for `in`, a pattern for `matches`, absent for null tests).
    #[serde(default)]
    pub value: serde_json::Value,
}

impl Condition {
    /// A condition.
    pub fn new(column: &str, op: Op, value: impl Into<serde_json::Value>) -> Self {
        Self {
            column: column.into(),
            op,
            value: value.into(),
        }
    }
}

/// Give `label` to rows where every condition holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LabelRule {
    /// The label.
    pub label: String,
    /// Conditions, all of which must hold.
    pub when: Vec<Condition>,
}

/// Ordered rules; the first matching rule labels the row, otherwise the default (or null).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RuleLabeler {
    /// Name of the rule set.
    pub name: String,
    /// Version of the rule set.
    pub version: String,
    /// The rules, in priority order.
    pub rules: Vec<LabelRule>,
    /// Label for rows no rule matches.
    #[serde(default)]
    pub default: Option<String>,
}

impl RuleLabeler {
    /// An empty rule set.
    pub fn new(name: &str, version: &str) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            rules: Vec::new(),
            default: None,
        }
    }

    /// Add a rule.
    #[must_use]
    pub fn rule(mut self, label: &str, when: Vec<Condition>) -> Self {
        self.rules.push(LabelRule {
            label: label.into(),
            when,
        });
        self
    }

    /// Set the default label.
    #[must_use]
    pub fn default_label(mut self, label: &str) -> Self {
        self.default = Some(label.into());
        self
    }

    /// Read a rule set from YAML or JSON.
    pub fn from_yaml(text: &str) -> Result<Self> {
        serde_yaml_ng::from_str(text).map_err(|e| Error::invalid("labeling rules", e.to_string()))
    }
}

fn rhs_number(v: &serde_json::Value, col: &Col) -> Option<f64> {
    match (v, col) {
        (serde_json::Value::String(s), Col::Date(_)) => parse_date(s).map(f64::from),
        (serde_json::Value::String(s), Col::Ts(_)) => parse_timestamp_micros(s).map(|t| t as f64),
        (serde_json::Value::Bool(b), _) => Some(f64::from(u8::from(*b))),
        _ => v.as_f64(),
    }
}

fn compare(v: Val<'_>, rhs: &serde_json::Value, col: &Col) -> Option<std::cmp::Ordering> {
    match v {
        Val::Str(s) => rhs.as_str().map(|r| s.cmp(r)),
        Val::Null => None,
        _ => v.as_f64()?.partial_cmp(&rhs_number(rhs, col)?),
    }
}

impl Condition {
    fn holds(&self, col: &Col, i: usize, re: Option<&Regex>) -> bool {
        use std::cmp::Ordering::*;
        let v = col.get(i);
        match self.op {
            Op::IsNull => matches!(v, Val::Null),
            Op::NotNull => !matches!(v, Val::Null),
            Op::Matches => matches!((v, re), (Val::Str(s), Some(re)) if re.is_match(s)),
            Op::In => self
                .value
                .as_array()
                .is_some_and(|xs| xs.iter().any(|x| compare(v, x, col) == Some(Equal))),
            op => compare(v, &self.value, col).is_some_and(|o| match op {
                Op::Eq => o == Equal,
                Op::Ne => o != Equal,
                Op::Lt => o == Less,
                Op::Le => o != Greater,
                Op::Gt => o == Greater,
                _ => o != Less,
            }),
        }
    }
}

impl Labeler for RuleLabeler {
    fn identity(&self) -> LabelerIdentity {
        LabelerIdentity {
            name: self.name.clone(),
            version: self.version.clone(),
        }
    }

    fn label(&self, batch: &RecordBatch) -> Result<ArrayRef> {
        let schema = batch.schema();
        let mut compiled = Vec::with_capacity(self.rules.len());
        for (r, rule) in self.rules.iter().enumerate() {
            let mut conds = Vec::with_capacity(rule.when.len());
            for c in &rule.when {
                let context = format!(
                    "labeling rule #{} ({}) of {}",
                    r + 1,
                    rule.label,
                    self.identity()
                );
                let idx = schema
                    .index_of(&c.column)
                    .map_err(|_| Error::column_not_found(&c.column, &context, &schema))?;
                let re = match c.op {
                    Op::Matches => Some(
                        Regex::new(c.value.as_str().unwrap_or_default())
                            .map_err(|e| Error::invalid(context, format!("bad regex: {e}")))?,
                    ),
                    _ => None,
                };
                conds.push((c, Col::new(batch.column(idx))?, re));
            }
            compiled.push((rule, conds));
        }
        let mut out = StringBuilder::with_capacity(batch.num_rows(), batch.num_rows() * 8);
        for i in 0..batch.num_rows() {
            let hit = compiled
                .iter()
                .find(|(_, conds)| {
                    conds
                        .iter()
                        .all(|(c, col, re)| c.holds(col, i, re.as_ref()))
                })
                .map(|(rule, _)| rule.label.as_str());
            out.append_option(hit.or(self.default.as_deref()));
        }
        Ok(Arc::new(out.finish()))
    }
}
