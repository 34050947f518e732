//! Column classification into sensitivity levels by configurable rules.

use std::collections::BTreeMap;
use std::path::Path;

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_schema::DataType;
use serde::{Deserialize, Serialize};

use super::{EntityType, PiiScanner};
use crate::error::{Error, Result};
use crate::source::{DataSource, Descriptor, ScanOptions};

/// How sensitive a column is. Ordered: `Public < Internal < Confidential < Restricted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Sensitivity {
    /// Anyone may read it.
    Public,
    /// Staff may read it.
    Internal,
    /// Personal or business-sensitive: need to know.
    Confidential,
    /// Identifiers whose leak causes direct harm (SSNs, card numbers, bank accounts).
    Restricted,
}

impl Sensitivity {
    /// The level's name (`Public`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Sensitivity::Public => "Public",
            Sensitivity::Internal => "Internal",
            Sensitivity::Confidential => "Confidential",
            Sensitivity::Restricted => "Restricted",
        }
    }
}

impl std::fmt::Display for Sensitivity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Sensitivity {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        [
            Sensitivity::Public,
            Sensitivity::Internal,
            Sensitivity::Confidential,
            Sensitivity::Restricted,
        ]
        .into_iter()
        .find(|l| l.as_str().eq_ignore_ascii_case(s))
        .ok_or_else(|| {
            Error::invalid(
                "sensitivity",
                format!("`{s}` is not Public, Internal, Confidential or Restricted"),
            )
        })
    }
}

/// One classification rule. The level of a column is the highest level of the rules it meets,
/// or the default when it meets none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum ClassRule {
    /// At least `min_share` of the sampled non-null values contain `entity`.
    Entity {
        /// The entity type.
        entity: EntityType,
        /// Share of non-null values, `0..=1`.
        min_share: f64,
        /// The level this gives.
        level: Sensitivity,
    },
    /// The column name matches a regular expression.
    ColumnName {
        /// The pattern (Rust `regex` syntax; `(?i)` for case-insensitive).
        name_matches: String,
        /// The level this gives.
        level: Sensitivity,
    },
}

/// Classification rules, loadable from YAML or JSON:
///
/// ```yaml
/// default: Internal
/// sample_rows: 10000
/// rules:
///   - { entity: US_SSN, min_share: 0.05, level: Restricted }
///   - { name_matches: "(?i)salary|income", level: Confidential }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ClassificationRules {
    /// The level of a column that meets no rule.
    #[serde(default = "default_level")]
    pub default: Sensitivity,
    /// Rows sampled from the start of the table.
    #[serde(default = "default_sample")]
    pub sample_rows: usize,
    /// A value counts as containing an entity when the detection scores at least this.
    #[serde(default = "default_min_score")]
    pub min_score: f64,
    /// The rules.
    pub rules: Vec<ClassRule>,
}

fn default_level() -> Sensitivity {
    Sensitivity::Internal
}
fn default_sample() -> usize {
    10_000
}
fn default_min_score() -> f64 {
    0.5
}

impl Default for ClassificationRules {
    /// Card numbers, SSNs and IBANs in 5% of values: Restricted. E-mail addresses, phone
    /// numbers, names, street addresses and IP addresses in 10%: Confidential. Columns named like
    /// secrets or identity documents: Restricted; like income, health or demographics:
    /// Confidential. Everything else: Internal.
    fn default() -> Self {
        use EntityType::*;
        use Sensitivity::*;
        let entity = |entity, min_share, level| ClassRule::Entity {
            entity,
            min_share,
            level,
        };
        let name = |p: &str, level| ClassRule::ColumnName {
            name_matches: p.to_string(),
            level,
        };
        Self {
            default: Internal,
            sample_rows: default_sample(),
            min_score: default_min_score(),
            rules: vec![
                entity(CreditCard, 0.05, Restricted),
                entity(UsSsn, 0.05, Restricted),
                entity(IbanCode, 0.05, Restricted),
                entity(EmailAddress, 0.1, Confidential),
                entity(PhoneNumber, 0.1, Confidential),
                entity(Person, 0.1, Confidential),
                entity(Location, 0.1, Confidential),
                entity(IpAddress, 0.1, Confidential),
                name(
                    r"(?i)\b(ssn|social_?security|passport|password|secret|card_?number|iban|tax_?id)\b",
                    Restricted,
                ),
                name(
                    r"(?i)(salary|income|birth|dob|gender|sex|ethnic|race|religio|health|diagnos|disab)",
                    Confidential,
                ),
            ],
        }
    }
}

impl ClassificationRules {
    /// Rules from a YAML (or JSON) file.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let rules: Self = serde_yaml_ng::from_str(&text).map_err(|e| {
            Error::invalid(
                format!("classification rules {}", path.display()),
                e.to_string(),
            )
        })?;
        rules.validate(&path.display().to_string())?;
        Ok(rules)
    }

    fn validate(&self, context: &str) -> Result<()> {
        for (i, r) in self.rules.iter().enumerate() {
            match r {
                ClassRule::Entity { min_share, .. } if !(0.0..=1.0).contains(min_share) => {
                    return Err(Error::invalid(
                        format!("rule #{} in {context}", i + 1),
                        format!("min_share {min_share} is not in 0..=1"),
                    ));
                }
                ClassRule::ColumnName { name_matches, .. } => {
                    regex::Regex::new(name_matches).map_err(|e| {
                        Error::invalid(format!("rule #{} in {context}", i + 1), e.to_string())
                    })?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// The classification of one column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ColumnClassification {
    /// The column.
    pub column: String,
    /// Its level.
    pub level: Sensitivity,
    /// Share of sampled non-null values containing each entity type found.
    pub entities: BTreeMap<EntityType, f64>,
    /// Why: the rules it met.
    pub reasons: Vec<String>,
    /// Non-null values sampled.
    pub sampled: u64,
}

/// The classification of a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Classification {
    /// One entry per column, in schema order.
    pub columns: Vec<ColumnClassification>,
}

impl Classification {
    /// The level of a column.
    pub fn level(&self, column: &str) -> Option<Sensitivity> {
        self.columns
            .iter()
            .find(|c| c.column == column)
            .map(|c| c.level)
    }

    /// Columns at `level` or above.
    pub fn at_least(&self, level: Sensitivity) -> Vec<&str> {
        self.columns
            .iter()
            .filter(|c| c.level >= level)
            .map(|c| c.column.as_str())
            .collect()
    }

    /// Records the levels in a descriptor's `classification` map.
    pub fn apply(&self, descriptor: &mut Descriptor) {
        for c in &self.columns {
            descriptor
                .classification
                .insert(c.column.clone(), c.level.to_string());
        }
    }

    /// A Markdown table: column, level, entities found.
    pub fn to_markdown(&self) -> String {
        let mut s =
            String::from("| column | level | entities (share of values) |\n|---|---|---|\n");
        for c in &self.columns {
            let ents: Vec<String> = c
                .entities
                .iter()
                .map(|(e, v)| format!("{e} {:.0}%", v * 100.0))
                .collect();
            s.push_str(&format!(
                "| {} | {} | {} |\n",
                c.column,
                c.level,
                if ents.is_empty() {
                    "-".into()
                } else {
                    ents.join(", ")
                }
            ));
        }
        s
    }
}

/// Classifies every column of `source` from the first [`ClassificationRules::sample_rows`] rows:
/// string columns are scanned for entities; every column is matched by name.
pub fn classify(
    source: &dyn DataSource,
    rules: &ClassificationRules,
    scanner: &PiiScanner,
) -> Result<Classification> {
    rules.validate("classification rules")?;
    let schema = source.schema();
    let text_cols: Vec<usize> = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| {
            matches!(
                f.data_type(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            )
        })
        .map(|(i, _)| i)
        .collect();
    let mut counts: Vec<BTreeMap<EntityType, u64>> = vec![BTreeMap::new(); schema.fields().len()];
    let mut sampled = vec![0u64; schema.fields().len()];
    if !text_cols.is_empty() && rules.sample_rows > 0 {
        let mut rows = 0usize;
        let opts = ScanOptions::all().with_projection(text_cols.clone());
        for batch in source.scan(&opts)? {
            let batch = batch?;
            let take = batch.num_rows().min(rules.sample_rows - rows);
            for (k, &col) in text_cols.iter().enumerate() {
                let array = arrow_cast::cast(batch.column(k), &DataType::Utf8)
                    .map_err(|e| Error::arrow("classification", e))?;
                let strings = array.as_string::<i32>();
                for i in 0..take {
                    if strings.is_null(i) {
                        continue;
                    }
                    sampled[col] += 1;
                    let mut seen: Vec<EntityType> = Vec::new();
                    for e in scanner.analyze(strings.value(i)) {
                        if e.score >= rules.min_score && !seen.contains(&e.entity_type) {
                            seen.push(e.entity_type);
                            *counts[col].entry(e.entity_type).or_default() += 1;
                        }
                    }
                }
            }
            rows += take;
            if rows >= rules.sample_rows {
                break;
            }
        }
    }
    let name_rules: Vec<(regex::Regex, Sensitivity)> = rules
        .rules
        .iter()
        .filter_map(|r| match r {
            ClassRule::ColumnName {
                name_matches,
                level,
            } => regex::Regex::new(name_matches).ok().map(|re| (re, *level)),
            _ => None,
        })
        .collect();
    let columns = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let n = sampled[i];
            let entities: BTreeMap<EntityType, f64> = counts[i]
                .iter()
                .map(|(e, c)| (*e, *c as f64 / n.max(1) as f64))
                .collect();
            let mut level = None::<Sensitivity>;
            let mut reasons = Vec::new();
            for r in &rules.rules {
                if let ClassRule::Entity {
                    entity,
                    min_share,
                    level: l,
                } = r
                    && let Some(share) = entities.get(entity)
                    && *share >= *min_share
                {
                    reasons.push(format!(
                        "{entity} in {:.1}% of values (rule: ≥ {:.1}% → {l})",
                        share * 100.0,
                        min_share * 100.0
                    ));
                    level = level.max(Some(*l));
                }
            }
            for (re, l) in &name_rules {
                if re.is_match(f.name()) {
                    reasons.push(format!("name matches `{}` → {l}", re.as_str()));
                    level = level.max(Some(*l));
                }
            }
            ColumnClassification {
                column: f.name().clone(),
                level: level.unwrap_or(rules.default),
                entities,
                reasons,
                sampled: n,
            }
        })
        .collect();
    Ok(Classification { columns })
}
