//! `aistd privacy`, `aistd fairness`, `aistd mitigate` and `aistd policy`.

use std::path::PathBuf;
use std::process::ExitCode;

use aistd_compliance::dp::aggregate as dp;
use aistd_compliance::dp::mechanism::{DiscreteGaussian, DiscreteLaplace, Gaussian, Laplace};
use aistd_compliance::dp::rng::Csprng;
use aistd_compliance::fairness::mitigation::{Constraint, ThresholdOptimizer, reweighing};
use aistd_compliance::fairness::stream::GroupCounter;
use aistd_compliance::fairness::{Method, MetricFrame};
use aistd_compliance::privacy;
use aistd_governance::{CsvOptions, DataSource, ScanOptions, open_path};
use anyhow::{Context, Result, bail};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;
use clap::Subcommand;
use std::collections::BTreeMap;

use crate::print_json;

/// Arguments of `aistd privacy release`.
#[derive(Debug, clap::Args)]
pub(crate) struct ReleaseArgs {
    /// CSV, Arrow IPC or Parquet file.
    #[arg(long)]
    input: PathBuf,
    /// The column.
    #[arg(long)]
    column: String,
    /// `count`, `sum`, `mean`, `quantile`, `histogram`.
    #[arg(long)]
    aggregate: String,
    /// ε spent.
    #[arg(long)]
    epsilon: f64,
    /// Clamping bounds `LOWER,UPPER` (sum, mean, quantile).
    #[arg(long)]
    bounds: Option<String>,
    /// The quantile in [0, 1] (quantile).
    #[arg(long, default_value_t = 0.5)]
    alpha: f64,
    /// Candidate points between the bounds (quantile).
    #[arg(long, default_value_t = 1001)]
    candidates: usize,
    /// Public categories, comma-separated (histogram of a string column), or
    /// bin edges (histogram of a numeric column).
    #[arg(long)]
    bins: Option<String>,
    /// Print the release as JSON.
    #[arg(long)]
    json: bool,
}

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
    /// Noise samples from a mechanism, drawn exactly (for inspection and statistical tests).
    Sample {
        /// `laplace`, `gaussian`, `discrete-laplace` or `discrete-gaussian`.
        #[arg(long)]
        mechanism: String,
        /// Scale b (Laplace) or σ (Gaussian).
        #[arg(long)]
        scale: f64,
        /// How many.
        #[arg(long, default_value_t = 1)]
        count: usize,
        /// 64 hex digits: a reproducible stream (default: seeded from the operating system).
        #[arg(long)]
        seed: Option<String>,
    },
    /// A differentially private aggregate of one column of a file (pure ε, discrete Laplace or
    /// the exponential mechanism, sampled exactly).
    Release(ReleaseArgs),
    /// Accuracy against ε: trains a model (as `aistd train`) without privacy and with DP-SGD at
    /// each ε budget, and writes the table and plot (`tradeoff.csv`, `tradeoff.svg`).
    Tradeoff(Box<crate::cmd::train::TradeoffArgs>),
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

fn rng(seed: Option<&str>) -> Result<Csprng> {
    Ok(match seed {
        Some(h) => {
            let b = hex::decode(h).context("--seed must be hex")?;
            let seed: [u8; 32] = b
                .try_into()
                .map_err(|_| anyhow::anyhow!("--seed must be 64 hex digits"))?;
            Csprng::from_seed(seed)
        }
        None => Csprng::from_os()?,
    })
}

fn bounds(spec: Option<&str>) -> Result<(f64, f64)> {
    let spec = spec.context("--bounds LOWER,UPPER is needed for this aggregate")?;
    let (a, b) = spec
        .split_once(',')
        .with_context(|| format!("--bounds `{spec}`: expected LOWER,UPPER"))?;
    Ok((
        a.trim()
            .parse()
            .with_context(|| format!("--bounds `{spec}`: lower"))?,
        b.trim()
            .parse()
            .with_context(|| format!("--bounds `{spec}`: upper"))?,
    ))
}

/// The whole column as one array.
fn whole_column(input: &std::path::Path, column: &str) -> Result<ArrayRef> {
    let source = open_path(input, CsvOptions::default())?;
    let ty = source
        .schema()
        .field_with_name(column)
        .with_context(|| format!("column `{column}` not found"))?
        .data_type()
        .clone();
    let mut parts = Vec::new();
    scan_columns(source.as_ref(), &[(column, ty)], |a| {
        parts.push(a[0].clone());
        Ok(())
    })?;
    let refs: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
    Ok(match refs.len() {
        0 => arrow_array::new_empty_array(
            &source.schema().field_with_name(column)?.data_type().clone(),
        ),
        _ => arrow_select::concat::concat(&refs)?,
    })
}

fn run_release(a: &ReleaseArgs) -> Result<serde_json::Value> {
    let (epsilon, bounds_spec, alpha, candidates) =
        (a.epsilon, a.bounds.as_deref(), a.alpha, a.candidates);
    let col = whole_column(&a.input, &a.column)?;
    let mut r = Csprng::from_os()?;
    let v = match a.aggregate.as_str() {
        "count" => serde_json::to_value(dp::count(col.as_ref(), epsilon, &mut r)?)?,
        "sum" => {
            let (lo, hi) = bounds(bounds_spec)?;
            serde_json::to_value(dp::sum(col.as_ref(), lo, hi, epsilon, &mut r)?)?
        }
        "mean" => {
            let (lo, hi) = bounds(bounds_spec)?;
            serde_json::to_value(dp::mean(col.as_ref(), lo, hi, epsilon, &mut r)?)?
        }
        "quantile" => {
            let (lo, hi) = bounds(bounds_spec)?;
            serde_json::to_value(dp::quantile(
                col.as_ref(),
                alpha,
                lo,
                hi,
                candidates,
                epsilon,
                &mut r,
            )?)?
        }
        "histogram" => {
            let spec = a
                .bins
                .as_deref()
                .context("--bins is needed for a histogram")?;
            let items: Vec<&str> = spec.split(',').map(str::trim).collect();
            if col.data_type().is_numeric() {
                let edges = items
                    .iter()
                    .map(|e| {
                        e.parse::<f64>()
                            .with_context(|| format!("--bins: `{e}` is not a number"))
                    })
                    .collect::<Result<Vec<_>>>()?;
                serde_json::to_value(dp::histogram(col.as_ref(), &edges, epsilon, &mut r)?)?
            } else {
                let strings = arrow_cast::cast(&col, &DataType::Utf8)?;
                serde_json::to_value(dp::histogram_categorical(
                    strings.as_ref(),
                    &items,
                    epsilon,
                    &mut r,
                )?)?
            }
        }
        other => {
            bail!("--aggregate must be count, sum, mean, quantile or histogram, not `{other}`")
        }
    };
    Ok(v)
}

pub(crate) fn run_privacy(cmd: PrivacyCommand) -> Result<ExitCode> {
    match cmd {
        PrivacyCommand::Sample {
            mechanism,
            scale,
            count,
            seed,
        } => {
            let mut r = rng(seed.as_deref())?;
            let mut out = String::new();
            match mechanism.as_str() {
                "laplace" => {
                    let m = Laplace::new(scale)?;
                    for _ in 0..count {
                        out.push_str(&format!("{:?}\n", m.release(0.0, &mut r)?));
                    }
                }
                "gaussian" => {
                    let m = Gaussian::new(scale)?;
                    for _ in 0..count {
                        out.push_str(&format!("{:?}\n", m.release(0.0, &mut r)?));
                    }
                }
                "discrete-laplace" => {
                    let m = DiscreteLaplace::new(scale)?;
                    for _ in 0..count {
                        out.push_str(&format!("{}\n", m.sample(&mut r)?));
                    }
                }
                "discrete-gaussian" => {
                    let m = DiscreteGaussian::new(scale)?;
                    for _ in 0..count {
                        out.push_str(&format!("{}\n", m.sample(&mut r)?));
                    }
                }
                other => bail!(
                    "--mechanism must be laplace, gaussian, discrete-laplace or discrete-gaussian, not `{other}`"
                ),
            }
            print!("{out}");
        }
        PrivacyCommand::Tradeoff(a) => return crate::cmd::train::privacy_tradeoff(*a),
        PrivacyCommand::Release(a) => {
            let v = run_release(&a)?;
            if a.json {
                print_json(&v)?;
            } else {
                println!(
                    "{} of `{}`: {} (ε = {}, {})",
                    a.aggregate,
                    a.column,
                    v["value"],
                    v["epsilon"],
                    v["mechanism"].as_str().unwrap_or_default()
                );
            }
        }
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

/// Scans the named columns together, cast to the given types, batch by batch.
fn scan_columns(
    source: &dyn DataSource,
    columns: &[(&str, DataType)],
    mut f: impl FnMut(&[ArrayRef]) -> Result<()>,
) -> Result<()> {
    let schema = source.schema();
    let idx = columns
        .iter()
        .map(|(name, _)| {
            schema
                .index_of(name)
                .with_context(|| format!("column `{name}` not found"))
        })
        .collect::<Result<Vec<_>>>()?;
    // The projection is sorted and deduplicated; find each column in it.
    let mut proj = idx.clone();
    proj.sort_unstable();
    proj.dedup();
    for b in source.scan(&ScanOptions::all().with_projection(proj.clone()))? {
        let b = b?;
        let arrays = columns
            .iter()
            .zip(&idx)
            .map(|((name, to), i)| {
                let a = b.column(proj.binary_search(i).unwrap_or(0));
                arrow_cast::cast(a, to)
                    .with_context(|| format!("column `{name}` cannot be read as {to}"))
            })
            .collect::<Result<Vec<_>>>()?;
        f(&arrays)?;
    }
    Ok(())
}

/// Every value of the named columns, as labels (i64), strings (nulls as "null") or floats.
#[derive(Default)]
struct Columns {
    ints: Vec<Vec<i64>>,
    strings: Vec<Vec<String>>,
    floats: Vec<Vec<f64>>,
}

fn read_columns(
    source: &dyn DataSource,
    ints: &[&str],
    strings: &[&str],
    floats: &[&str],
) -> Result<Columns> {
    let mut spec: Vec<(&str, DataType)> = ints.iter().map(|c| (*c, DataType::Int64)).collect();
    spec.extend(strings.iter().map(|c| (*c, DataType::Utf8)));
    spec.extend(floats.iter().map(|c| (*c, DataType::Float64)));
    let mut out = Columns {
        ints: vec![Vec::new(); ints.len()],
        strings: vec![Vec::new(); strings.len()],
        floats: vec![Vec::new(); floats.len()],
    };
    let mut row = 0usize;
    scan_columns(source, &spec, |arrays| {
        for (k, a) in arrays[..ints.len()].iter().enumerate() {
            let a = a.as_primitive::<Int64Type>();
            if let Some(i) = (0..a.len()).find(|i| a.is_null(*i)) {
                bail!("column `{}` has a null at row {}", ints[k], row + i + 1);
            }
            out.ints[k].extend_from_slice(a.values());
        }
        for (k, a) in arrays[ints.len()..ints.len() + strings.len()]
            .iter()
            .enumerate()
        {
            let a = a.as_string::<i32>();
            out.strings[k].extend(a.iter().map(|v| v.unwrap_or("null").to_string()));
        }
        for (k, a) in arrays[ints.len() + strings.len()..].iter().enumerate() {
            let a = a.as_primitive::<Float64Type>();
            out.floats[k].extend(a.iter().map(|v| v.unwrap_or(f64::NAN)));
        }
        row += arrays.first().map_or(0, |a| a.len());
        Ok(())
    })?;
    Ok(out)
}

/// The metric frame of a predictions file, streamed batch by batch.
pub(crate) fn metric_frame(
    input: &std::path::Path,
    y_true: &str,
    y_pred: &str,
    sensitive: &[String],
    weight: Option<&str>,
) -> Result<MetricFrame> {
    let source = open_path(input, CsvOptions::default())?;
    let mut spec = vec![(y_true, DataType::Int64), (y_pred, DataType::Int64)];
    spec.extend(sensitive.iter().map(|c| (c.as_str(), DataType::Utf8)));
    if let Some(w) = weight {
        spec.push((w, DataType::Float64));
    }
    let mut counter = GroupCounter::new(sensitive.len())?;
    let k = sensitive.len();
    scan_columns(source.as_ref(), &spec, |arrays| {
        let s: Vec<&dyn Array> = arrays[2..2 + k].iter().map(|a| a.as_ref()).collect();
        let w = arrays.get(2 + k).map(|a| a.as_ref());
        counter
            .update(arrays[0].as_ref(), arrays[1].as_ref(), &s, w)
            .with_context(|| format!("row {}", counter.rows() + 1))?;
        Ok(())
    })?;
    Ok(counter.finish()?)
}

pub(crate) fn run_fairness(a: &FairnessArgs) -> Result<ExitCode> {
    let mf = metric_frame(
        &a.input,
        &a.y_true,
        &a.y_pred,
        &a.sensitive,
        a.weight.as_deref(),
    )?;
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

/// `aistd mitigate` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum MitigateCommand {
    /// Kamiran & Calders reweighing: a weight per row that makes labels independent of groups.
    Reweigh {
        /// CSV, Arrow IPC or Parquet file.
        #[arg(long)]
        input: PathBuf,
        /// Column of true labels (1 is positive).
        #[arg(long)]
        y_true: String,
        /// Sensitive feature column.
        #[arg(long)]
        sensitive: String,
        /// Print the result (with every row's weight) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Hardt et al. threshold optimization of scores (fairlearn's ThresholdOptimizer).
    Thresholds {
        /// CSV, Arrow IPC or Parquet file.
        #[arg(long)]
        input: PathBuf,
        /// Column of true labels (1 is positive).
        #[arg(long)]
        y_true: String,
        /// Column of scores (higher: more likely positive).
        #[arg(long)]
        score: String,
        /// Sensitive feature column.
        #[arg(long)]
        sensitive: String,
        /// `demographic_parity` or `equalized_odds`.
        #[arg(long, default_value = "demographic_parity")]
        constraint: String,
        /// Print the result (with every row's probability of a positive prediction) as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn run_mitigate(cmd: MitigateCommand) -> Result<ExitCode> {
    match cmd {
        MitigateCommand::Reweigh {
            input,
            y_true,
            sensitive,
            json,
        } => {
            let source = open_path(&input, CsvOptions::default())?;
            let c = read_columns(source.as_ref(), &[&y_true], &[&sensitive], &[])?;
            let w = reweighing(&c.ints[0], &c.strings[0])?;
            let mut table: BTreeMap<(String, i64), (u64, f64)> = BTreeMap::new();
            for ((y, s), w) in c.ints[0].iter().zip(&c.strings[0]).zip(&w) {
                let e = table.entry((s.clone(), (*y == 1) as i64)).or_default();
                e.0 += 1;
                e.1 = *w;
            }
            if json {
                print_json(&serde_json::json!({
                    "weights": w,
                    "by_group_and_label": table.iter().map(|((g, y), (n, w))| serde_json::json!({"group": g, "label": y, "count": n, "weight": w})).collect::<Vec<_>>(),
                }))?;
            } else {
                println!("| group | label | rows | weight |");
                println!("|---|---:|---:|---:|");
                for ((g, y), (n, w)) in &table {
                    println!("| {g} | {y} | {n} | {w:.6} |");
                }
            }
        }
        MitigateCommand::Thresholds {
            input,
            y_true,
            score,
            sensitive,
            constraint,
            json,
        } => {
            let constraint = match constraint.as_str() {
                "demographic_parity" => Constraint::DemographicParity,
                "equalized_odds" => Constraint::EqualizedOdds,
                other => bail!(
                    "--constraint must be demographic_parity or equalized_odds, not `{other}`"
                ),
            };
            let source = open_path(&input, CsvOptions::default())?;
            let c = read_columns(source.as_ref(), &[&y_true], &[&sensitive], &[&score])?;
            let t = ThresholdOptimizer::fit(&c.floats[0], &c.ints[0], &c.strings[0], constraint)?;
            if json {
                let p = t.probabilities(&c.floats[0], &c.strings[0])?;
                let mut v = serde_json::to_value(&t)?;
                v["probabilities"] = serde_json::json!(p);
                print_json(&v)?;
            } else {
                println!(
                    "constraint {constraint:?}: x = {:.4}, expected accuracy {:.4}",
                    t.x_best, t.accuracy
                );
                println!("| group | p0 | threshold 0 | p1 | threshold 1 | p_ignore |");
                println!("|---|---:|---:|---:|---:|---:|");
                for (g, r) in &t.rules {
                    println!(
                        "| {g} | {:.4} | {} | {:.4} | {} | {:.4} |",
                        r.p0, r.first.threshold, r.p1, r.second.threshold, r.p_ignore
                    );
                }
            }
        }
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
