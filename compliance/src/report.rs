//! The compliance report: the evidence an auditor asks for, each item mapped to the obligations
//! it serves, as JSON, Markdown and a self-contained HTML page.
//!
//! Sections: a model card (the sections of Mitchell et al. 2019), a datasheet for the dataset
//! (the question groups of Gebru et al. 2021), the fairness table, the privacy spend, the policy
//! decisions and the audit log's tree head. Every obligation in [`REQUIREMENTS`] that no
//! section supports is listed as a gap, so a missing piece is visible rather than silent.
//!
//! The deployment gate is a policy like any other: [`ComplianceReport::model_entity`] turns the
//! report into the Cedar `Model` entity that [`crate::cedar::packs::DEPLOYMENT`] decides on
//! (approval, fairness differences in basis points, regions).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::fairness::{GroupMetrics, Method, MetricFrame};
use crate::policy::{Decision, Request};

/// An obligation in a regulation or standard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Requirement {
    /// `EU AI Act`, `ISO/IEC 42001`, `NIST AI RMF`.
    pub framework: String,
    /// `Art. 10(2)(f)`, `A.6.2.8`, `MEASURE 2.11`.
    pub clause: String,
    /// What it asks, in a few words.
    pub title: String,
}

/// The kinds of evidence a report holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Section {
    /// The model card.
    ModelCard,
    /// The datasheet of the training data, with its quality checks and classification.
    Datasheet,
    /// Fairness metrics by group.
    Fairness,
    /// Privacy budgets spent.
    Privacy,
    /// Policy decisions.
    Decisions,
    /// The audit log's tree head.
    AuditLog,
}

/// Which obligations each section serves: (section, framework, clause, title).
pub const REQUIREMENTS: &[(Section, &str, &str, &str)] = &[
    (
        Section::Datasheet,
        "EU AI Act",
        "Art. 10(2)",
        "data governance and management practices",
    ),
    (
        Section::Datasheet,
        "EU AI Act",
        "Art. 10(3)",
        "data sets relevant, representative, free of errors and complete",
    ),
    (
        Section::Datasheet,
        "ISO/IEC 42001",
        "A.7.4",
        "quality of data for AI systems",
    ),
    (
        Section::Datasheet,
        "NIST AI RMF",
        "MEASURE 2.1",
        "test sets, metrics and tools documented",
    ),
    (
        Section::ModelCard,
        "EU AI Act",
        "Art. 13(3)(b)",
        "characteristics, capabilities and limitations of performance",
    ),
    (
        Section::ModelCard,
        "ISO/IEC 42001",
        "A.6.2.7",
        "AI system technical documentation",
    ),
    (
        Section::ModelCard,
        "NIST AI RMF",
        "MEASURE 2.3",
        "performance measured and demonstrated",
    ),
    (
        Section::Fairness,
        "EU AI Act",
        "Art. 10(2)(f)",
        "examination in view of possible biases",
    ),
    (
        Section::Fairness,
        "EU AI Act",
        "Art. 13(3)(b)(v)",
        "performance regarding specific persons or groups",
    ),
    (
        Section::Fairness,
        "ISO/IEC 42001",
        "A.6.2.4",
        "AI system verification and validation",
    ),
    (
        Section::Fairness,
        "NIST AI RMF",
        "MEASURE 2.11",
        "fairness and bias evaluated and documented",
    ),
    (
        Section::Privacy,
        "EU AI Act",
        "Art. 10(5)",
        "safeguards, including privacy-preserving measures",
    ),
    (
        Section::Privacy,
        "NIST AI RMF",
        "MEASURE 2.10",
        "privacy risk examined and documented",
    ),
    (
        Section::Decisions,
        "ISO/IEC 42001",
        "A.6.2.5",
        "AI system deployment",
    ),
    (
        Section::Decisions,
        "NIST AI RMF",
        "MANAGE 1.1",
        "determination whether deployment should proceed",
    ),
    (
        Section::AuditLog,
        "EU AI Act",
        "Art. 12(1)",
        "automatic recording of events over the lifetime",
    ),
    (
        Section::AuditLog,
        "EU AI Act",
        "Art. 19(1)",
        "automatically generated logs kept",
    ),
    (
        Section::AuditLog,
        "ISO/IEC 42001",
        "A.6.2.8",
        "AI system recording of event logs",
    ),
    (
        Section::AuditLog,
        "NIST AI RMF",
        "MANAGE 4.1",
        "post-deployment monitoring implemented",
    ),
];

fn requirements(section: Section) -> Vec<Requirement> {
    REQUIREMENTS
        .iter()
        .filter(|r| r.0 == section)
        .map(|r| Requirement {
            framework: r.1.into(),
            clause: r.2.into(),
            title: r.3.into(),
        })
        .collect()
}

/// What the model's owner states about it (every field optional: missing ones are reported).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ModelCardInput {
    /// Model name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Model type (`logistic regression`, `MLP 64-32`, …).
    pub model_type: String,
    /// Who owns it.
    pub owners: Vec<String>,
    /// Licence.
    pub license: String,
    /// Primary intended uses and users.
    pub intended_use: String,
    /// Uses it is not for.
    pub out_of_scope_uses: String,
    /// Relevant factors (groups, instrumentation, environment).
    pub factors: String,
    /// Evaluation data.
    pub evaluation_data: String,
    /// Training data.
    pub training_data: String,
    /// Ethical considerations.
    pub ethical_considerations: String,
    /// Caveats and recommendations.
    pub caveats: String,
    /// Whether deployment has been approved by its owner.
    pub approved: bool,
    /// Regions its data may be processed in.
    pub regions: Vec<String>,
}

/// One column of the dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ColumnInfo {
    /// Name.
    pub name: String,
    /// Arrow type.
    pub data_type: String,
    /// Sensitivity level (`Public` … `Restricted`), if classified.
    pub sensitivity: Option<String>,
    /// How it is protected in the outputs (`encrypted`, `tokenized`, …), if at all.
    pub protection: Option<String>,
}

impl ColumnInfo {
    /// A column with no classification or protection.
    pub fn new(name: &str, data_type: &str) -> Self {
        Self {
            name: name.into(),
            data_type: data_type.into(),
            sensitivity: None,
            protection: None,
        }
    }
}

/// What is known about the dataset (filled from a governance run by the root package).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DatasetInfo {
    /// Name or path.
    pub name: String,
    /// Content fingerprint.
    pub fingerprint: String,
    /// Rows read.
    pub rows_in: u64,
    /// Rows kept.
    pub rows_out: u64,
    /// Rows quarantined, by reason.
    pub quarantined_by_reason: BTreeMap<String, u64>,
    /// The preparation steps, in order.
    pub steps: Vec<String>,
    /// Expectations: (description, passed).
    pub expectations: Vec<(String, bool)>,
    /// Columns.
    pub columns: Vec<ColumnInfo>,
    /// OpenLineage run id.
    pub lineage_run_id: Option<String>,
}

impl DatasetInfo {
    /// A dataset known by name only.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }
}

/// Fairness thresholds (fairlearn's differences; the "four-fifths rule" is a ratio ≥ 0.8).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Largest acceptable demographic parity difference.
    pub demographic_parity_difference: f64,
    /// Largest acceptable equalized odds difference.
    pub equalized_odds_difference: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            demographic_parity_difference: 0.1,
            equalized_odds_difference: 0.1,
        }
    }
}

/// One group's metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GroupRow {
    /// The group: one value per sensitive feature.
    pub group: Vec<String>,
    /// Its metrics.
    pub metrics: GroupMetrics,
}

/// The fairness section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FairnessEvidence {
    /// The sensitive features.
    pub sensitive_features: Vec<String>,
    /// Metrics over all rows.
    pub overall: GroupMetrics,
    /// Metrics of each group (one value per sensitive feature).
    pub by_group: Vec<GroupRow>,
    /// Demographic parity difference (between groups).
    pub demographic_parity_difference: f64,
    /// Demographic parity ratio (between groups).
    pub demographic_parity_ratio: f64,
    /// Equalized odds difference (between groups).
    pub equalized_odds_difference: f64,
    /// Equalized odds ratio (between groups).
    pub equalized_odds_ratio: f64,
    /// The thresholds applied.
    pub thresholds: Thresholds,
    /// Whether both differences are within them.
    pub within_thresholds: bool,
}

impl FairnessEvidence {
    /// Evidence from a metric frame.
    pub fn new(
        sensitive_features: Vec<String>,
        frame: MetricFrame,
        thresholds: Thresholds,
    ) -> Self {
        let dpd = frame.demographic_parity_difference(Method::BetweenGroups);
        let eod = frame.equalized_odds_difference(Method::BetweenGroups);
        Self {
            sensitive_features,
            demographic_parity_ratio: frame.demographic_parity_ratio(Method::BetweenGroups),
            equalized_odds_ratio: frame.equalized_odds_ratio(Method::BetweenGroups),
            demographic_parity_difference: dpd,
            equalized_odds_difference: eod,
            within_thresholds: dpd <= thresholds.demographic_parity_difference
                && eod <= thresholds.equalized_odds_difference,
            thresholds,
            overall: frame.overall,
            by_group: frame
                .by_group
                .iter()
                .map(|(k, m)| GroupRow {
                    group: k.clone(),
                    metrics: *m,
                })
                .collect(),
        }
    }
}

/// A privacy budget spent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PrivacySpend {
    /// On what (`DP-SGD training`, `dp mean income`).
    pub what: String,
    /// Who.
    pub principal: String,
    /// Dataset.
    pub dataset: String,
    /// ε.
    pub epsilon: f64,
    /// δ.
    pub delta: f64,
    /// How it was accounted (`RDP, Opacus orders`, `basic composition`).
    pub accounting: String,
}

impl PrivacySpend {
    /// A spend of (ε, δ) on `what`.
    pub fn new(
        what: impl Into<String>,
        principal: impl Into<String>,
        dataset: impl Into<String>,
        epsilon: f64,
        delta: f64,
        accounting: impl Into<String>,
    ) -> Self {
        Self {
            what: what.into(),
            principal: principal.into(),
            dataset: dataset.into(),
            epsilon,
            delta,
            accounting: accounting.into(),
        }
    }
}

/// A recorded policy decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DecisionRecord {
    /// The request.
    pub request: Request,
    /// `allow` or `deny`.
    pub effect: String,
    /// The policies that determined it.
    pub determining: Vec<String>,
    /// Why.
    pub explanation: String,
}

impl DecisionRecord {
    /// A record of `decision` on `request`.
    pub fn new(request: &Request, decision: &Decision) -> Self {
        Self {
            request: request.clone(),
            effect: if decision.allowed() { "allow" } else { "deny" }.into(),
            determining: decision.determining.clone(),
            explanation: decision.explain(),
        }
    }

    /// A decision as recorded elsewhere (an audit log).
    pub fn recorded(
        request: Request,
        allowed: bool,
        determining: Vec<String>,
        explanation: String,
    ) -> Self {
        Self {
            request,
            effect: if allowed { "allow" } else { "deny" }.into(),
            determining,
            explanation,
        }
    }
}

/// The audit log's state when the report was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AuditHead {
    /// The log.
    pub log: String,
    /// Events in it.
    pub size: u64,
    /// RFC 6962 root hash, hex.
    pub root: String,
    /// Whether the whole log verified.
    pub verified: bool,
}

impl AuditHead {
    /// A head.
    pub fn new(log: impl Into<String>, size: u64, root: impl Into<String>, verified: bool) -> Self {
        Self {
            log: log.into(),
            size,
            root: root.into(),
            verified,
        }
    }
}

/// One piece of evidence and the obligations it serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Evidence {
    /// The section.
    pub section: Section,
    /// What it shows, in one line.
    pub summary: String,
    /// The obligations it serves.
    pub serves: Vec<Requirement>,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ComplianceReport {
    /// Title.
    pub title: String,
    /// When it was made (RFC 3339), as given by the caller.
    pub generated_at: String,
    /// The model card as stated.
    pub model_card: ModelCardInput,
    /// The dataset.
    pub dataset: DatasetInfo,
    /// Fairness, if predictions were evaluated.
    pub fairness: Option<FairnessEvidence>,
    /// Privacy spending.
    pub privacy: Vec<PrivacySpend>,
    /// Policy decisions.
    pub decisions: Vec<DecisionRecord>,
    /// The audit log's head.
    pub audit: Option<AuditHead>,
    /// Each piece of evidence with the obligations it serves.
    pub evidence: Vec<Evidence>,
    /// Obligations without evidence in this report.
    pub gaps: Vec<Requirement>,
    /// Model-card fields left empty.
    pub missing_model_card_fields: Vec<String>,
}

/// Builds a [`ComplianceReport`].
#[derive(Debug, Clone, Default)]
pub struct ReportBuilder {
    title: String,
    generated_at: String,
    card: ModelCardInput,
    dataset: DatasetInfo,
    fairness: Option<FairnessEvidence>,
    privacy: Vec<PrivacySpend>,
    decisions: Vec<DecisionRecord>,
    audit: Option<AuditHead>,
}

impl ReportBuilder {
    /// A report titled `title`, made at `generated_at` (RFC 3339).
    pub fn new(title: impl Into<String>, generated_at: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            generated_at: generated_at.into(),
            ..Self::default()
        }
    }

    /// The model card.
    pub fn model_card(mut self, card: ModelCardInput) -> Self {
        self.card = card;
        self
    }

    /// The dataset.
    pub fn dataset(mut self, d: DatasetInfo) -> Self {
        self.dataset = d;
        self
    }

    /// Fairness evidence.
    pub fn fairness(mut self, f: FairnessEvidence) -> Self {
        self.fairness = Some(f);
        self
    }

    /// A privacy spend.
    pub fn privacy(mut self, p: PrivacySpend) -> Self {
        self.privacy.push(p);
        self
    }

    /// A decision.
    pub fn decision(mut self, d: DecisionRecord) -> Self {
        self.decisions.push(d);
        self
    }

    /// The audit head.
    pub fn audit(mut self, a: AuditHead) -> Self {
        self.audit = Some(a);
        self
    }

    /// The report, with its evidence map and gaps.
    pub fn build(self) -> ComplianceReport {
        let mut r = ComplianceReport {
            title: self.title,
            generated_at: self.generated_at,
            model_card: self.card,
            dataset: self.dataset,
            fairness: self.fairness,
            privacy: self.privacy,
            decisions: self.decisions,
            audit: self.audit,
            evidence: Vec::new(),
            gaps: Vec::new(),
            missing_model_card_fields: Vec::new(),
        };
        r.refresh();
        r
    }
}

impl ComplianceReport {
    /// Adds a decision (a deployment gate evaluated on this report, say).
    pub fn add_decision(&mut self, d: DecisionRecord) {
        self.decisions.push(d);
        self.refresh();
    }

    /// Recomputes the evidence map, the gaps and the missing model-card fields.
    fn refresh(&mut self) {
        let c = &self.model_card;
        let fields: [(&str, bool); 11] = [
            ("name", c.name.is_empty()),
            ("version", c.version.is_empty()),
            ("model_type", c.model_type.is_empty()),
            ("owners", c.owners.is_empty()),
            ("intended_use", c.intended_use.is_empty()),
            ("out_of_scope_uses", c.out_of_scope_uses.is_empty()),
            ("factors", c.factors.is_empty()),
            ("evaluation_data", c.evaluation_data.is_empty()),
            ("training_data", c.training_data.is_empty()),
            (
                "ethical_considerations",
                c.ethical_considerations.is_empty(),
            ),
            ("caveats", c.caveats.is_empty()),
        ];
        let missing: Vec<String> = fields
            .iter()
            .filter(|f| f.1)
            .map(|f| f.0.to_string())
            .collect();
        let mut evidence = Vec::new();
        let mut add = |section: Section, summary: String| {
            evidence.push(Evidence {
                section,
                summary,
                serves: requirements(section),
            })
        };
        if missing.len() < fields.len() {
            add(
                Section::ModelCard,
                format!(
                    "model card for {} {} ({} of {} sections stated)",
                    c.name,
                    c.version,
                    fields.len() - missing.len(),
                    fields.len()
                ),
            );
        }
        let d = &self.dataset;
        if d.rows_in > 0 || !d.columns.is_empty() {
            let passed = d.expectations.iter().filter(|e| e.1).count();
            add(
                Section::Datasheet,
                format!(
                    "datasheet for {}: {} rows in, {} kept, {} quarantined; {}/{} expectations hold; {} columns classified",
                    d.name,
                    d.rows_in,
                    d.rows_out,
                    d.quarantined_by_reason.values().sum::<u64>(),
                    passed,
                    d.expectations.len(),
                    d.columns.iter().filter(|c| c.sensitivity.is_some()).count()
                ),
            );
        }
        if let Some(f) = &self.fairness {
            add(
                Section::Fairness,
                format!(
                    "fairness by {}: demographic parity difference {:.4}, equalized odds difference {:.4} ({} thresholds {}/{})",
                    f.sensitive_features.join(" × "),
                    f.demographic_parity_difference,
                    f.equalized_odds_difference,
                    if f.within_thresholds {
                        "within"
                    } else {
                        "OUTSIDE"
                    },
                    f.thresholds.demographic_parity_difference,
                    f.thresholds.equalized_odds_difference
                ),
            );
        }
        if !self.privacy.is_empty() {
            let eps: f64 = self.privacy.iter().map(|p| p.epsilon).sum();
            add(
                Section::Privacy,
                format!(
                    "{} privacy spends, ε = {eps:.4} in total (basic composition)",
                    self.privacy.len()
                ),
            );
        }
        if !self.decisions.is_empty() {
            let allowed = self
                .decisions
                .iter()
                .filter(|d| d.effect == "allow")
                .count();
            add(
                Section::Decisions,
                format!(
                    "{} policy decisions recorded ({allowed} allowed)",
                    self.decisions.len()
                ),
            );
        }
        if let Some(a) = &self.audit {
            add(
                Section::AuditLog,
                format!(
                    "audit log {}: {} events, root {}{}",
                    a.log,
                    a.size,
                    a.root,
                    if a.verified {
                        ", verified"
                    } else {
                        ", NOT verified"
                    }
                ),
            );
        }
        let covered: Vec<Section> = evidence.iter().map(|e| e.section).collect();
        let gaps = REQUIREMENTS
            .iter()
            .filter(|r| !covered.contains(&r.0))
            .map(|r| Requirement {
                framework: r.1.into(),
                clause: r.2.into(),
                title: r.3.into(),
            })
            .collect();
        self.evidence = evidence;
        self.gaps = gaps;
        self.missing_model_card_fields = missing;
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Markdown table cell: pipes and newlines escaped.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn or_missing(s: &str) -> &str {
    if s.is_empty() { "_not stated_" } else { s }
}

impl ComplianceReport {
    /// The Cedar `Model` entity (JSON entity format) for the deployment pack: `approved`,
    /// `dp_difference_bp` and `eo_difference_bp` (differences in basis points, rounded up; 10000
    /// when there is no fairness evidence, so the gate fails closed) and `regions`.
    pub fn model_entity(&self, model_id: &str) -> serde_json::Value {
        // Rounded to 1e-6 bp first, so that 0.1 is 1000 bp, not 1000.0000000000001 → 1001.
        let bp = |v: Option<f64>| {
            v.map_or(10_000, |x| {
                ((x * 10_000.0 * 1e6).round() / 1e6).ceil() as i64
            })
        };
        serde_json::json!({
            "uid": { "type": "Model", "id": model_id },
            "attrs": {
                "approved": self.model_card.approved,
                "dp_difference_bp": bp(self.fairness.as_ref().map(|f| f.demographic_parity_difference)),
                "eo_difference_bp": bp(self.fairness.as_ref().map(|f| f.equalized_odds_difference)),
                "regions": self.model_card.regions,
            },
            "parents": [],
        })
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// The report as Markdown.
    pub fn to_markdown(&self) -> String {
        let mut m = String::new();
        let _ = writeln!(m, "# {}\n\nGenerated {}.\n", self.title, self.generated_at);
        let _ = writeln!(m, "## Evidence and the obligations it serves\n");
        let _ = writeln!(m, "| evidence | serves |\n|---|---|");
        for e in &self.evidence {
            let serves: Vec<String> = e
                .serves
                .iter()
                .map(|r| format!("{} {}", r.framework, r.clause))
                .collect();
            let _ = writeln!(m, "| {} | {} |", cell(&e.summary), serves.join("; "));
        }
        if !self.gaps.is_empty() {
            let _ = writeln!(m, "\n**Gaps** (no evidence in this report):\n");
            for g in &self.gaps {
                let _ = writeln!(m, "- {} {}: {}", g.framework, g.clause, g.title);
            }
        }
        let c = &self.model_card;
        let _ = writeln!(m, "\n## Model card\n");
        for (h, v) in [
            (
                "Model details",
                format!(
                    "{} {} — {}; owners: {}; licence: {}",
                    or_missing(&c.name),
                    c.version,
                    or_missing(&c.model_type),
                    if c.owners.is_empty() {
                        "_not stated_".to_string()
                    } else {
                        c.owners.join(", ")
                    },
                    or_missing(&c.license)
                ),
            ),
            ("Intended use", or_missing(&c.intended_use).to_string()),
            (
                "Out-of-scope uses",
                or_missing(&c.out_of_scope_uses).to_string(),
            ),
            ("Factors", or_missing(&c.factors).to_string()),
            (
                "Metrics",
                self.fairness
                    .as_ref()
                    .map_or("_no evaluation in this report_".to_string(), |f| {
                        format!(
                            "accuracy {:.4}, selection rate {:.4} overall; group metrics below",
                            f.overall.accuracy_score, f.overall.selection_rate
                        )
                    }),
            ),
            (
                "Evaluation data",
                or_missing(&c.evaluation_data).to_string(),
            ),
            ("Training data", or_missing(&c.training_data).to_string()),
            (
                "Quantitative analyses",
                if self.fairness.is_some() {
                    "see Fairness".to_string()
                } else {
                    "_none_".to_string()
                },
            ),
            (
                "Ethical considerations",
                or_missing(&c.ethical_considerations).to_string(),
            ),
            (
                "Caveats and recommendations",
                or_missing(&c.caveats).to_string(),
            ),
        ] {
            let _ = writeln!(m, "**{h}.** {v}\n");
        }
        let d = &self.dataset;
        let _ = writeln!(m, "## Datasheet: {}\n", d.name);
        let _ = writeln!(
            m,
            "**Composition.** {} rows read, {} kept, fingerprint `{}`.\n",
            d.rows_in, d.rows_out, d.fingerprint
        );
        if !d.columns.is_empty() {
            let _ = writeln!(
                m,
                "| column | type | sensitivity | protection |\n|---|---|---|---|"
            );
            for col in &d.columns {
                let _ = writeln!(
                    m,
                    "| {} | {} | {} | {} |",
                    cell(&col.name),
                    col.data_type,
                    col.sensitivity.as_deref().unwrap_or("—"),
                    col.protection.as_deref().unwrap_or("—")
                );
            }
        }
        let _ = writeln!(
            m,
            "\n**Preprocessing.** {}\n",
            if d.steps.is_empty() {
                "_not recorded_".to_string()
            } else {
                d.steps.join("; ")
            }
        );
        if !d.quarantined_by_reason.is_empty() {
            let q: Vec<String> = d
                .quarantined_by_reason
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            let _ = writeln!(m, "**Quarantined rows.** {}\n", q.join(", "));
        }
        if !d.expectations.is_empty() {
            let _ = writeln!(m, "**Quality checks.**\n");
            for (e, ok) in &d.expectations {
                let _ = writeln!(m, "- {} {}", if *ok { "✔" } else { "✘" }, e);
            }
            m.push('\n');
        }
        if let Some(id) = &d.lineage_run_id {
            let _ = writeln!(m, "**Provenance.** OpenLineage run `{id}`.\n");
        }
        if let Some(f) = &self.fairness {
            let _ = writeln!(m, "## Fairness by {}\n", f.sensitive_features.join(" × "));
            let _ = writeln!(
                m,
                "| group | count | selection_rate | true_positive_rate | false_positive_rate | accuracy_score |\n|---|---:|---:|---:|---:|---:|"
            );
            for (k, g) in f
                .by_group
                .iter()
                .map(|r| (r.group.join(" × "), &r.metrics))
                .chain(std::iter::once(("overall".to_string(), &f.overall)))
            {
                let _ = writeln!(
                    m,
                    "| {} | {} | {:.4} | {:.4} | {:.4} | {:.4} |",
                    cell(&k),
                    g.count,
                    g.selection_rate,
                    g.true_positive_rate,
                    g.false_positive_rate,
                    g.accuracy_score
                );
            }
            let _ = writeln!(
                m,
                "\nDemographic parity difference {:.4} (ratio {:.4}), equalized odds difference {:.4} (ratio {:.4}); thresholds {} / {}: **{}**.\n",
                f.demographic_parity_difference,
                f.demographic_parity_ratio,
                f.equalized_odds_difference,
                f.equalized_odds_ratio,
                f.thresholds.demographic_parity_difference,
                f.thresholds.equalized_odds_difference,
                if f.within_thresholds {
                    "within"
                } else {
                    "outside"
                }
            );
        }
        if !self.privacy.is_empty() {
            let _ = writeln!(
                m,
                "## Privacy spend\n\n| what | principal | dataset | ε | δ | accounting |\n|---|---|---|---:|---:|---|"
            );
            for p in &self.privacy {
                let _ = writeln!(
                    m,
                    "| {} | {} | {} | {:.4} | {:e} | {} |",
                    cell(&p.what),
                    cell(&p.principal),
                    cell(&p.dataset),
                    p.epsilon,
                    p.delta,
                    cell(&p.accounting)
                );
            }
            m.push('\n');
        }
        if !self.decisions.is_empty() {
            let _ = writeln!(
                m,
                "## Policy decisions\n\n| principal | action | resource | effect | determined by |\n|---|---|---|---|---|"
            );
            for d in &self.decisions {
                let _ = writeln!(
                    m,
                    "| {} | {} | {} | {} | {} |",
                    cell(&d.request.principal),
                    cell(&d.request.action),
                    cell(&d.request.resource),
                    d.effect,
                    d.determining.join(", ")
                );
            }
            m.push('\n');
        }
        if let Some(a) = &self.audit {
            let _ = writeln!(
                m,
                "## Audit log\n\n`{}`: {} events, RFC 6962 root `{}`, {}.",
                a.log,
                a.size,
                a.root,
                if a.verified {
                    "verified"
                } else {
                    "NOT verified"
                }
            );
        }
        m
    }

    /// The report as one self-contained HTML page, with a bar chart (SVG) of selection rates and
    /// true-positive rates by group.
    pub fn to_html(&self) -> String {
        let mut h = String::new();
        let _ = write!(
            h,
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title><style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}}table{{border-collapse:collapse;margin:1rem 0}}td,th{{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}}.gap{{color:#a00}}.ok{{color:#070}}</style></head><body>",
            esc(&self.title)
        );
        if let Some(f) = &self.fairness {
            h.push_str(&fairness_svg(f));
        }
        // The Markdown body, rendered line by line into simple HTML.
        let mut in_table = false;
        let mut in_list = false;
        for line in self.to_markdown().lines() {
            let close = |h: &mut String, in_table: &mut bool, in_list: &mut bool| {
                if *in_table {
                    h.push_str("</table>");
                    *in_table = false;
                }
                if *in_list {
                    h.push_str("</ul>");
                    *in_list = false;
                }
            };
            if let Some(rest) = line.strip_prefix('|') {
                if rest.starts_with("---") {
                    continue;
                }
                if !in_table {
                    close(&mut h, &mut in_table, &mut in_list);
                    h.push_str("<table>");
                    in_table = true;
                }
                h.push_str("<tr>");
                for c in rest.trim_end_matches('|').split(" | ") {
                    let _ = write!(h, "<td>{}</td>", inline(c.trim()));
                }
                h.push_str("</tr>");
                continue;
            }
            if let Some(item) = line.strip_prefix("- ") {
                if !in_list {
                    close(&mut h, &mut in_table, &mut in_list);
                    h.push_str("<ul>");
                    in_list = true;
                }
                let _ = write!(h, "<li>{}</li>", inline(item));
                continue;
            }
            close(&mut h, &mut in_table, &mut in_list);
            if let Some(t) = line.strip_prefix("## ") {
                let _ = write!(h, "<h2>{}</h2>", inline(t));
            } else if let Some(t) = line.strip_prefix("# ") {
                let _ = write!(h, "<h1>{}</h1>", inline(t));
            } else if !line.trim().is_empty() {
                let _ = write!(h, "<p>{}</p>", inline(line));
            }
        }
        h.push_str("</body></html>\n");
        h
    }
}

/// Escapes HTML and renders `**bold**`, `_italic_` and `` `code` ``.
fn inline(s: &str) -> String {
    let e = esc(&s.replace("\\|", "|"));
    let mut out = String::new();
    let mut rest = e.as_str();
    let mut open = [false; 3];
    while let Some(i) = rest.find(['*', '`', '_']) {
        out.push_str(&rest[..i]);
        let (tag, len, k) = if rest[i..].starts_with("**") {
            ("strong", 2, 0)
        } else if rest[i..].starts_with('`') {
            ("code", 1, 1)
        } else if rest[i..].starts_with('_')
            && (i == 0 || rest.as_bytes()[i - 1] == b' ' || open[2])
        {
            ("em", 1, 2)
        } else {
            out.push_str(&rest[i..i + 1]);
            rest = &rest[i + 1..];
            continue;
        };
        let _ = write!(out, "<{}{tag}>", if open[k] { "/" } else { "" });
        open[k] = !open[k];
        rest = &rest[i + len..];
    }
    out.push_str(rest);
    out
}

fn fairness_svg(f: &FairnessEvidence) -> String {
    let groups: Vec<(String, f64, f64)> = f
        .by_group
        .iter()
        .map(|r| {
            (
                r.group.join(" × "),
                r.metrics.selection_rate,
                r.metrics.true_positive_rate,
            )
        })
        .collect();
    let (w, row, left) = (640.0, 28.0, 140.0);
    let height = 40.0 + row * groups.len() as f64;
    let mut s = format!(
        "<figure><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{height}\" role=\"img\" aria-label=\"selection rate and true positive rate by group\">"
    );
    let scale = w - left - 60.0;
    for (i, (name, sel, tpr)) in groups.iter().enumerate() {
        let y = 10.0 + row * i as f64;
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" font-size=\"12\">{}</text><rect x=\"{left}\" y=\"{y}\" width=\"{:.1}\" height=\"11\" fill=\"#3b6fb6\"><title>selection rate {sel:.4}</title></rect><rect x=\"{left}\" y=\"{}\" width=\"{:.1}\" height=\"11\" fill=\"#e08a2c\"><title>true positive rate {tpr:.4}</title></rect><text x=\"{:.1}\" y=\"{}\" font-size=\"10\">{sel:.3} / {tpr:.3}</text>",
            left - 6.0,
            y + 16.0,
            esc(name),
            sel * scale,
            y + 12.0,
            tpr * scale,
            left + sel.max(*tpr) * scale + 4.0,
            y + 16.0
        );
    }
    let _ = write!(
        s,
        "<text x=\"{left}\" y=\"{}\" font-size=\"11\"><tspan fill=\"#3b6fb6\">■ selection rate</tspan>  <tspan fill=\"#e08a2c\">■ true positive rate</tspan></text></svg><figcaption>Selection rate and true-positive rate by group (0 to 1).</figcaption></figure>",
        height - 8.0
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> MetricFrame {
        let y_true = [0, 1, 1, 1, 1, 0, 1, 0, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1];
        let y_pred = [0, 0, 1, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0, 1, 1, 0];
        let g: Vec<&str> = "b b a b b c c c a a c a b c c b c c".split(' ').collect();
        MetricFrame::new(&y_true, &y_pred, &[&g], None).expect("frame")
    }

    #[test]
    fn evidence_maps_to_obligations_and_gaps_are_listed() {
        let empty = ReportBuilder::new("t", "2026-12-01T00:00:00Z").build();
        assert_eq!(empty.gaps.len(), REQUIREMENTS.len());
        assert!(empty.evidence.is_empty());
        let r = ReportBuilder::new("Loans model", "2026-12-01T00:00:00Z")
            .model_card(ModelCardInput {
                name: "loans".into(),
                version: "1".into(),
                intended_use: "credit pre-screening <b>".into(),
                approved: true,
                regions: vec!["eu".into()],
                ..ModelCardInput::default()
            })
            .fairness(FairnessEvidence::new(
                vec!["group".into()],
                frame(),
                Thresholds::default(),
            ))
            .audit(AuditHead::new("audit.jsonl", 12, "ab".repeat(32), true))
            .build();
        let sections: Vec<Section> = r.evidence.iter().map(|e| e.section).collect();
        assert_eq!(
            sections,
            [Section::ModelCard, Section::Fairness, Section::AuditLog]
        );
        let fairness = &r.evidence[1];
        assert!(fairness.serves.iter().any(|q| q.clause == "Art. 10(2)(f)"));
        assert!(fairness.serves.iter().any(|q| q.clause == "MEASURE 2.11"));
        assert!(
            r.gaps.iter().any(|g| g.clause == "MEASURE 2.10"),
            "privacy is a gap"
        );
        assert!(!r.gaps.iter().any(|g| g.clause == "Art. 12(1)"));
        assert!(r.missing_model_card_fields.contains(&"owners".to_string()));
        // 0.25 > 0.1: outside thresholds, and the Cedar entity says so in basis points.
        assert!(!r.fairness.as_ref().expect("f").within_thresholds);
        let m = r.model_entity("loans-1");
        assert_eq!(m["attrs"]["dp_difference_bp"], 2500);
        assert_eq!(m["attrs"]["eo_difference_bp"], 10000);
        let exact = ReportBuilder::new("t", "now")
            .fairness(FairnessEvidence::new(
                vec!["g".into()],
                frame(),
                Thresholds::default(),
            ))
            .build();
        let mut tenth = exact.clone();
        if let Some(f) = tenth.fairness.as_mut() {
            f.demographic_parity_difference = 0.1;
        }
        assert_eq!(tenth.model_entity("x")["attrs"]["dp_difference_bp"], 1000);
        let no_fairness = ReportBuilder::new("t", "now").build().model_entity("x");
        assert_eq!(no_fairness["attrs"]["dp_difference_bp"], 10000);

        let md = r.to_markdown();
        assert!(md.contains("| a | 4 | 0.7500 | 0.5000 | 1.0000 |"), "{md}");
        assert!(
            md.contains("**Gaps**") && md.contains("- NIST AI RMF MEASURE 2.10"),
            "{md}"
        );
        let html = r.to_html();
        assert!(html.contains("<svg") && html.contains("<table>") && html.contains("&lt;b&gt;"));
        assert!(!html.contains("<b>"), "user text is escaped");
        let back: ComplianceReport = serde_json::from_str(&r.to_json()).expect("json round trip");
        assert_eq!(back, r);
    }

    #[test]
    fn inline_markup() {
        assert_eq!(
            inline("**a** `b` _c_"),
            "<strong>a</strong> <code>b</code> <em>c</em>"
        );
        assert_eq!(inline("snake_case_name"), "snake_case_name");
        assert_eq!(inline("x < y"), "x &lt; y");
    }
}
