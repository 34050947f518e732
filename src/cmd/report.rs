//! `aistd report`: the compliance report from the artifacts of a run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aistd_compliance::cedar::packs;
use aistd_compliance::dp::ledger::SpendEntry;
use aistd_compliance::privacy::{epsilon, opacus_orders};
use aistd_compliance::report::{
    AuditHead, ComplianceReport, DatasetInfo, DecisionRecord, FairnessEvidence, ModelCardInput,
    PrivacySpend, ReportBuilder, Thresholds,
};
use aistd_compliance::{CedarPolicy, Policy, Request};
use aistd_governance::audit::{self, AuditRecord};
use anyhow::{Context, Result, bail};

use aistd::glue::{PRIVACY_SPEND, entity};

/// Arguments of `aistd report`.
#[derive(Debug, clap::Args)]
pub(crate) struct ReportArgs {
    /// Where to write compliance.json, compliance.md and compliance.html.
    #[arg(long)]
    out: PathBuf,
    /// Report title.
    #[arg(long, default_value = "Compliance report")]
    title: String,
    /// Output directory of `aistd data govern` (its report.json describes the dataset).
    #[arg(long)]
    run: Option<PathBuf>,
    /// Model card fields as JSON or YAML (name, version, model_type, owners, license,
    /// intended_use, out_of_scope_uses, factors, evaluation_data, training_data,
    /// ethical_considerations, caveats, approved, regions).
    #[arg(long)]
    card: Option<PathBuf>,
    /// Predictions file (CSV, Arrow IPC, Parquet) for the fairness section.
    #[arg(long)]
    predictions: Option<PathBuf>,
    /// Column of true labels in --predictions.
    #[arg(long, default_value = "y_true")]
    y_true: String,
    /// Column of predicted labels in --predictions.
    #[arg(long, default_value = "y_pred")]
    y_pred: String,
    /// Sensitive feature column(s) in --predictions.
    #[arg(long)]
    sensitive: Vec<String>,
    /// Sample weight column in --predictions.
    #[arg(long)]
    weight: Option<String>,
    /// Largest acceptable demographic parity difference.
    #[arg(long, default_value_t = 0.1)]
    max_dp_difference: f64,
    /// Largest acceptable equalized odds difference.
    #[arg(long, default_value_t = 0.1)]
    max_eo_difference: f64,
    /// Audit log: verified, its head reported; its `authorize` decisions and `privacy_spend`
    /// ledger entries go into the report.
    #[arg(long)]
    audit: Option<PathBuf>,
    /// A DP-SGD run to account: `SAMPLING_RATE,NOISE_MULTIPLIER,STEPS,DELTA` (repeatable).
    #[arg(long)]
    dp_sgd: Vec<String>,
    /// Evaluate the built-in deployment gate (Cedar) for this model id against the report.
    #[arg(long)]
    deploy_gate: Option<String>,
    /// Target region for --deploy-gate.
    #[arg(long, default_value = "eu")]
    region: String,
    /// Principal asking to deploy, for --deploy-gate.
    #[arg(long, default_value = "release-manager")]
    principal: String,
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// The dataset section from a governance run's report.json.
fn dataset(run: &Path) -> Result<DatasetInfo> {
    let path = run.join("report.json");
    let r: aistd_governance::Report = serde_json::from_str(&read_text(&path)?)
        .with_context(|| format!("{} is not a governance report", path.display()))?;
    Ok(aistd::glue::dataset_info(&r))
}

fn decision(r: &AuditRecord) -> DecisionRecord {
    let e = &r.event;
    let mut request = Request::new(&e.who, e.detail["action"].as_str().unwrap_or("?"), &e.data);
    request.context = e.detail["context"].clone();
    DecisionRecord::recorded(
        request,
        matches!(e.decision, Some(audit::Decision::Allow)),
        e.detail["determining"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| x.as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default(),
        e.reason.clone(),
    )
}

pub(crate) fn build(a: &ReportArgs) -> Result<(ComplianceReport, Option<bool>)> {
    let mut b = ReportBuilder::new(&a.title, audit::now_rfc3339());
    if let Some(card) = &a.card {
        let text = read_text(card)?;
        let card: ModelCardInput = serde_yaml_ng::from_str(&text)
            .with_context(|| format!("{}: not a model card", card.display()))?;
        b = b.model_card(card);
    }
    let dataset_name = match &a.run {
        Some(run) => {
            let d = dataset(run)?;
            let name = d.name.clone();
            b = b.dataset(d);
            name
        }
        None => String::new(),
    };
    if let Some(p) = &a.predictions {
        if a.sensitive.is_empty() {
            bail!("--predictions needs at least one --sensitive column");
        }
        for t in [a.max_dp_difference, a.max_eo_difference] {
            if !(0.0..=1.0).contains(&t) {
                bail!("fairness thresholds must be in [0, 1], got {t}");
            }
        }
        let frame = crate::cmd::compliance::metric_frame(
            p,
            &a.y_true,
            &a.y_pred,
            &a.sensitive,
            a.weight.as_deref(),
        )?;
        b = b.fairness(FairnessEvidence::new(
            a.sensitive.clone(),
            frame,
            Thresholds {
                demographic_parity_difference: a.max_dp_difference,
                equalized_odds_difference: a.max_eo_difference,
            },
        ));
    }
    for spec in &a.dp_sgd {
        let parts: Vec<&str> = spec.split(',').collect();
        let parse = |i: usize, what: &str| -> Result<f64> {
            parts
                .get(i)
                .and_then(|x| x.trim().parse().ok())
                .with_context(|| format!("--dp-sgd `{spec}`: {what} missing or not a number"))
        };
        if parts.len() != 4 {
            bail!("--dp-sgd `{spec}`: expected SAMPLING_RATE,NOISE_MULTIPLIER,STEPS,DELTA");
        }
        let (q, sigma, steps, delta) = (
            parse(0, "sampling rate")?,
            parse(1, "noise multiplier")?,
            parse(2, "steps")?,
            parse(3, "delta")?,
        );
        let (eps, order) = epsilon(q, sigma, steps as u64, delta, &opacus_orders())?;
        b = b.privacy(PrivacySpend::new(
            format!("DP-SGD training (q = {q}, σ = {sigma}, {steps} steps)"),
            "trainer",
            &dataset_name,
            eps,
            delta,
            format!("RDP, Poisson-subsampled Gaussian, Opacus orders (best α = {order})"),
        ));
    }
    if let Some(log) = &a.audit {
        let v = audit::verify(log, &[])
            .with_context(|| format!("audit log {} does not verify", log.display()))?;
        for r in audit::read_records(log)? {
            match r.event.action.as_str() {
                "authorize" => b = b.decision(decision(&r)),
                PRIVACY_SPEND => {
                    let e: SpendEntry = serde_json::from_value(r.event.detail.clone())
                        .with_context(|| format!("audit line {}: bad ledger entry", r.seq + 1))?;
                    if e.accepted {
                        b = b.privacy(PrivacySpend::new(
                            &e.query,
                            &e.principal,
                            &e.dataset,
                            e.cost.epsilon,
                            e.cost.delta,
                            "privacy ledger (basic composition)",
                        ));
                    }
                }
                _ => {}
            }
        }
        b = b.audit(AuditHead::new(
            log.display().to_string(),
            v.events,
            hex::encode(v.head.root),
            true,
        ));
    }
    let mut report = b.build();
    let mut gate = None;
    if let Some(model) = &a.deploy_gate {
        let entities = serde_json::json!([
            report.model_entity(model),
            { "uid": { "type": "User", "id": a.principal }, "attrs": { "clearance": 0, "purposes": [] }, "parents": [] },
        ]);
        let cedar = CedarPolicy::from_str("builtin:deployment", packs::DEPLOYMENT)?
            .validated(packs::SCHEMA)?
            .with_entities_json(&entities.to_string())?;
        let request = Request::new(
            entity("User", &a.principal),
            entity("Action", "deploy"),
            entity("Model", model),
        )
        .with_context(serde_json::json!({ "region": a.region }));
        let d = cedar.evaluate(&request)?;
        gate = Some(d.allowed());
        report.add_decision(DecisionRecord::new(&request, &d));
    }
    Ok((report, gate))
}

pub(crate) fn run(a: &ReportArgs) -> Result<ExitCode> {
    let (report, gate) = build(a)?;
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    for (name, text) in [
        ("compliance.json", report.to_json()),
        ("compliance.md", report.to_markdown()),
        ("compliance.html", report.to_html()),
    ] {
        let path = a.out.join(name);
        // Write beside, then rename: a reader never sees half a report.
        let tmp = a.out.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!(
        "compliance report: {} pieces of evidence, {} obligations without evidence → {}",
        report.evidence.len(),
        report.gaps.len(),
        a.out.join("compliance.html").display()
    );
    for e in &report.evidence {
        println!("  {}", e.summary);
    }
    match gate {
        Some(true) => println!("deployment gate: allow"),
        Some(false) => {
            println!(
                "deployment gate: deny ({})",
                report
                    .decisions
                    .last()
                    .map_or(String::new(), |d| d.explanation.clone())
            );
            return Ok(ExitCode::from(1));
        }
        None => {}
    }
    Ok(ExitCode::SUCCESS)
}
