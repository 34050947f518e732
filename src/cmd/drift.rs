//! `aistd drift`: per-feature drift of a current CSV against a reference CSV.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aistd_deploy::drift::{DriftTracker, ReferenceProfile};
use anyhow::{Context, Result, bail};
use clap::Args;

use crate::print_json;

/// `aistd drift`.
#[derive(Debug, Args)]
pub(crate) struct DriftArgs {
    /// The reference CSV (a header, then numeric columns; empty cells are missing).
    #[arg(long)]
    reference: PathBuf,
    /// The current CSV, with the same columns.
    #[arg(long)]
    current: PathBuf,
    /// Quantile bins per feature.
    #[arg(long, default_value_t = 10)]
    bins: usize,
    /// Print the profile and the report as JSON.
    #[arg(long)]
    json: bool,
}

/// The header and the columns of a numeric CSV.
fn read(path: &Path) -> Result<(Vec<String>, Vec<Vec<f64>>)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .with_context(|| format!("{}: empty", path.display()))?
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    let mut columns = vec![Vec::new(); header.len()];
    for (i, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let cells: Vec<&str> = line.split(',').collect();
        if cells.len() != header.len() {
            bail!(
                "{} line {}: {} cells, the header has {}",
                path.display(),
                i + 2,
                cells.len(),
                header.len()
            );
        }
        for (c, cell) in cells.iter().enumerate() {
            let cell = cell.trim();
            columns[c].push(if cell.is_empty() {
                f64::NAN
            } else {
                cell.parse().with_context(|| {
                    format!(
                        "{} line {}, column {}: `{cell}` is not a number",
                        path.display(),
                        i + 2,
                        header[c]
                    )
                })?
            });
        }
    }
    Ok((header, columns))
}

/// The reference profile of a numeric CSV, `bins` quantile bins per column.
pub(crate) fn profile(path: &Path, bins: usize) -> Result<ReferenceProfile> {
    let (names, columns) = read(path)?;
    ReferenceProfile::from_columns(&names, &columns, bins)
        .with_context(|| format!("profile of {}", path.display()))
}

pub(crate) fn run(a: &DriftArgs) -> Result<ExitCode> {
    let (names, reference) = read(&a.reference)?;
    let (current_names, current) = read(&a.current)?;
    if names != current_names {
        bail!("the current columns {current_names:?} differ from the reference's {names:?}");
    }
    let profile = ReferenceProfile::from_columns(&names, &reference, a.bins)?;
    let tracker = DriftTracker::new(profile.clone());
    let rows = current.first().map_or(0, Vec::len);
    tracker.observe_rows((0..rows).flat_map(|r| current.iter().map(move |c| c[r])));
    let report = tracker.report();
    if a.json {
        print_json(&serde_json::json!({ "profile": profile, "report": report }))?;
    } else {
        println!("| feature | PSI | KS D | KS p | Jensen-Shannon | Wasserstein | drift |");
        println!("|---|---:|---:|---:|---:|---:|---|");
        for f in &report {
            let drift = match (f.psi_drift, f.ks_drift) {
                (true, true) => "PSI, KS",
                (true, false) => "PSI",
                (false, true) => "KS",
                (false, false) => "-",
            };
            println!(
                "| {} | {:.4} | {:.4} | {:.3e} | {:.4} | {:.4} | {drift} |",
                f.name, f.psi, f.ks_statistic, f.ks_p_value, f.jensen_shannon, f.wasserstein
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
