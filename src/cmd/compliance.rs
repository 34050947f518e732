//! `aistd privacy` and `aistd fairness`.

use std::path::PathBuf;
use std::process::ExitCode;

use aistd_compliance::fairness::{Method, MetricFrame};
use aistd_compliance::privacy;
use aistd_governance::{CsvOptions, DataSource, ScanOptions, open_path};
use anyhow::{Context, Result, bail};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;
use clap::Subcommand;

use crate::print_json;

#[derive(Debug, Subcommand)]
pub(crate) enum PrivacyCommand {
    /// ε of DP-SGD (Poisson-subsampled Gaussian, RDP accounting as Opacus does it).
    Epsilon {
        /// Sampling rate q in (0, 1].
        #[arg(long)]
        sampling_rate: f64,
        /// Noise multiplier σ > 0.
        #[arg(long)]
        noise_multiplier: f64,
        /// Steps.
        #[arg(long)]
        steps: u64,
        /// δ in (0, 1).
        #[arg(long)]
        delta: f64,
        /// RDP orders: a list like `2,3,4.5` or a range like `2..64` (default: Opacus' orders).
        #[arg(long)]
        orders: Option<String>,
        /// Print {"epsilon", "order"} as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The smallest noise multiplier reaching a target ε (to 0.01, as Opacus).
    NoiseMultiplier {
        /// Sampling rate q in (0, 1].
        #[arg(long)]
        sampling_rate: f64,
        /// Steps.
        #[arg(long)]
        steps: u64,
        /// Target ε.
        #[arg(long)]
        epsilon: f64,
        /// δ in (0, 1).
        #[arg(long)]
        delta: f64,
        /// RDP orders (as for `epsilon`).
        #[arg(long)]
        orders: Option<String>,
        /// Print {"noise_multiplier", "epsilon"} as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn parse_orders(spec: Option<&str>) -> Result<Vec<f64>> {
    let Some(spec) = spec else {
        return Ok(privacy::opacus_orders());
    };
    if let Some((a, b)) = spec.split_once("..") {
        let (a, b): (u32, u32) = (
            a.trim()
                .parse()
                .context("--orders: range start is not an integer")?,
            b.trim()
                .parse()
                .context("--orders: range end is not an integer")?,
        );
        if a < 2 || b < a {
            bail!("--orders {spec}: expected A..B with 2 <= A <= B");
        }
        return Ok((a..=b).map(f64::from).collect());
    }
    spec.split(',')
        .map(|s| {
            s.trim()
                .parse::<f64>()
                .with_context(|| format!("--orders: `{s}` is not a number"))
        })
        .collect()
}

pub(crate) fn run_privacy(cmd: PrivacyCommand) -> Result<ExitCode> {
    match cmd {
        PrivacyCommand::Epsilon {
            sampling_rate,
            noise_multiplier,
            steps,
            delta,
            orders,
            json,
        } => {
            let orders = parse_orders(orders.as_deref())?;
            let (eps, order) =
                privacy::epsilon(sampling_rate, noise_multiplier, steps, delta, &orders)?;
            if json {
                print_json(&serde_json::json!({ "epsilon": eps, "order": order }))?;
            } else {
                println!("epsilon {eps} (order {order})");
            }
        }
        PrivacyCommand::NoiseMultiplier {
            sampling_rate,
            steps,
            epsilon,
            delta,
            orders,
            json,
        } => {
            let orders = parse_orders(orders.as_deref())?;
            let s = privacy::noise_multiplier(sampling_rate, steps, epsilon, delta, &orders, 0.01)?;
            let (eps, _) = privacy::epsilon(sampling_rate, s, steps, delta, &orders)?;
            if json {
                print_json(&serde_json::json!({ "noise_multiplier": s, "epsilon": eps }))?;
            } else {
                println!("noise multiplier {s} (epsilon {eps})");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `aistd fairness`.
#[derive(Debug, clap::Args)]
pub(crate) struct FairnessArgs {
    /// CSV, Arrow IPC or Parquet file.
    #[arg(long)]
    input: PathBuf,
    /// Column of true labels (1 is positive).
    #[arg(long)]
    y_true: String,
    /// Column of predictions (1 is positive).
    #[arg(long)]
    y_pred: String,
    /// Sensitive feature column (repeat for intersections).
    #[arg(long, required = true)]
    sensitive: Vec<String>,
    /// Sample weight column.
    #[arg(long)]
    weight: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

fn column_values(source: &dyn DataSource, name: &str) -> Result<Vec<arrow_array::ArrayRef>> {
    let schema = source.schema();
    let idx = schema
        .index_of(name)
        .with_context(|| format!("column `{name}` not found"))?;
    let mut out = Vec::new();
    for b in source.scan(&ScanOptions::all().with_projection(vec![idx]))? {
        out.push(b?.column(0).clone());
    }
    Ok(out)
}

/// Every value of column `name`, cast to `to`, batch by batch.
fn cast_column(source: &dyn DataSource, name: &str, to: &DataType) -> Result<Vec<ArrayRef>> {
    column_values(source, name)?
        .iter()
        .map(|a| {
            arrow_cast::cast(a, to)
                .with_context(|| format!("column `{name}` cannot be read as {to}"))
        })
        .collect()
}

fn labels(source: &dyn DataSource, name: &str) -> Result<Vec<i64>> {
    let mut v = Vec::new();
    for a in cast_column(source, name, &DataType::Int64)? {
        let a = a.as_primitive::<Int64Type>();
        for i in 0..a.len() {
            if a.is_null(i) {
                bail!("column `{name}` has a null at row {}", v.len() + 1);
            }
            v.push(a.value(i));
        }
    }
    Ok(v)
}

pub(crate) fn run_fairness(a: &FairnessArgs) -> Result<ExitCode> {
    let source = open_path(&a.input, CsvOptions::default())?;
    let y_true = labels(source.as_ref(), &a.y_true)?;
    let y_pred = labels(source.as_ref(), &a.y_pred)?;
    let mut sensitive: Vec<Vec<String>> = Vec::new();
    for s in &a.sensitive {
        let mut v = Vec::new();
        for arr in cast_column(source.as_ref(), s, &DataType::Utf8)? {
            let arr = arr.as_string::<i32>();
            v.extend((0..arr.len()).map(|i| {
                if arr.is_valid(i) {
                    arr.value(i)
                } else {
                    "null"
                }
                .to_string()
            }));
        }
        sensitive.push(v);
    }
    let weights = match &a.weight {
        Some(w) => {
            let mut v = Vec::new();
            for arr in cast_column(source.as_ref(), w, &DataType::Float64)? {
                let arr = arr.as_primitive::<Float64Type>();
                v.extend((0..arr.len()).map(|i| {
                    if arr.is_valid(i) {
                        arr.value(i)
                    } else {
                        f64::NAN
                    }
                }));
            }
            Some(v)
        }
        None => None,
    };
    let refs: Vec<&[String]> = sensitive.iter().map(Vec::as_slice).collect();
    let mf = MetricFrame::new(&y_true, &y_pred, &refs, weights.as_deref())?;
    let summary = serde_json::json!({
        "overall": mf.overall,
        "by_group": mf.by_group.iter().map(|(k, m)| serde_json::json!({ "group": k, "metrics": m })).collect::<Vec<_>>(),
        "demographic_parity_difference": mf.demographic_parity_difference(Method::BetweenGroups),
        "demographic_parity_ratio": mf.demographic_parity_ratio(Method::BetweenGroups),
        "equalized_odds_difference": mf.equalized_odds_difference(Method::BetweenGroups),
        "equalized_odds_ratio": mf.equalized_odds_ratio(Method::BetweenGroups),
        "to_overall": {
            "demographic_parity_difference": mf.demographic_parity_difference(Method::ToOverall),
            "demographic_parity_ratio": mf.demographic_parity_ratio(Method::ToOverall),
            "equalized_odds_difference": mf.equalized_odds_difference(Method::ToOverall),
            "equalized_odds_ratio": mf.equalized_odds_ratio(Method::ToOverall),
        },
    });
    if a.json {
        print_json(&summary)?;
    } else {
        println!(
            "| group | count | selection_rate | true_positive_rate | false_positive_rate | accuracy_score |"
        );
        println!("|---|---:|---:|---:|---:|---:|");
        let row = |name: &str, m: &aistd_compliance::fairness::GroupMetrics| {
            println!(
                "| {name} | {} | {:.4} | {:.4} | {:.4} | {:.4} |",
                m.count,
                m.selection_rate,
                m.true_positive_rate,
                m.false_positive_rate,
                m.accuracy_score
            )
        };
        for (k, m) in &mf.by_group {
            row(&k.join(" × "), m);
        }
        row("overall", &mf.overall);
        println!(
            "demographic parity difference {:.4}, ratio {:.4}; equalized odds difference {:.4}, ratio {:.4}",
            summary["demographic_parity_difference"],
            summary["demographic_parity_ratio"],
            summary["equalized_odds_difference"],
            summary["equalized_odds_ratio"]
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `aistd policy` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Evaluate one request against Cedar policies; exit status 0 on allow, 1 on deny.
    Eval {
        /// Cedar policies (`.cedar`); `builtin:data_access`, `builtin:training` or
        /// `builtin:deployment` for a built-in pack. Repeatable.
        #[arg(long, required = true)]
        policies: Vec<String>,
        /// Entities in Cedar's JSON format.
        #[arg(long)]
        entities: Option<PathBuf>,
        /// Validate policies, entities and the request against a Cedar schema
        /// (`builtin` for the packs' schema).
        #[arg(long)]
        schema: Option<String>,
        /// Principal, e.g. `User::"alice"`.
        #[arg(long)]
        principal: String,
        /// Action, e.g. `Action::"read"`.
        #[arg(long)]
        action: String,
        /// Resource, e.g. `Column::"loans#ssn"`.
        #[arg(long)]
        resource: String,
        /// Context as a JSON object.
        #[arg(long, default_value = "{}")]
        context: String,
        /// Print the decision as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn policy_text(spec: &str) -> Result<(String, String)> {
    use aistd_compliance::cedar::packs;
    Ok(match spec {
        "builtin:data_access" => (spec.to_string(), packs::DATA_ACCESS.to_string()),
        "builtin:training" => (spec.to_string(), packs::TRAINING.to_string()),
        "builtin:deployment" => (spec.to_string(), packs::DEPLOYMENT.to_string()),
        path => (
            path.to_string(),
            std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
        ),
    })
}

pub(crate) fn run_policy(cmd: PolicyCommand) -> Result<ExitCode> {
    let PolicyCommand::Eval {
        policies,
        entities,
        schema,
        principal,
        action,
        resource,
        context,
        json,
    } = cmd;
    let mut names = Vec::new();
    let mut text = String::new();
    for p in &policies {
        let (name, t) = policy_text(p)?;
        names.push(name);
        text.push_str(&t);
        text.push('\n');
    }
    let mut cedar = aistd_compliance::CedarPolicy::from_str(&names.join(" + "), &text)?;
    if let Some(s) = schema {
        let s = if s == "builtin" {
            aistd_compliance::cedar::packs::SCHEMA.to_string()
        } else {
            std::fs::read_to_string(&s).with_context(|| format!("reading {s}"))?
        };
        cedar = cedar.validated(&s)?;
    }
    if let Some(e) = entities {
        let text =
            std::fs::read_to_string(&e).with_context(|| format!("reading {}", e.display()))?;
        cedar = cedar.with_entities_json(&text)?;
    }
    let context: serde_json::Value =
        serde_json::from_str(&context).context("--context is not JSON")?;
    let request = aistd_compliance::Request::new(principal, action, resource).with_context(context);
    let d = aistd_compliance::Policy::evaluate(&cedar, &request)?;
    if json {
        print_json(&d)?;
    } else {
        println!("{}", d.explain());
    }
    Ok(if d.allowed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
