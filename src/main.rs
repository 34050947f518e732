//! The `aistd` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aistd_governance::expect::{ExpectationSuite, suggest};
use aistd_governance::generate::{DirtConfig, GeneratorConfig, LoanGenerator};
use aistd_governance::{
    CsvOptions, DataSource, Imputation, NullAction, Pipeline, Profile, open_path, write_ipc_file,
};
use std::sync::{Arc, Mutex};

use aistd_governance::audit::{AuditLog, AuditOptions};
use aistd_governance::lineage::Lineage;
use aistd_governance::pii::ClassificationRules;
use aistd_governance::protect::Protection;
use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

mod cmd;

/// aistd: data governance, scheduling, training, deployment and compliance for AI systems.
#[derive(Debug, Parser)]
#[command(name = "aistd", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Data governance: generate, profile, check and clean tables.
    #[command(subcommand)]
    Data(DataCommand),
    /// Tamper-evident audit logs: verify, tree heads, proofs.
    #[command(subcommand)]
    Audit(cmd::audit::AuditCommand),
    /// Keyrings: create, rotate and list data keys wrapped by a master key.
    #[command(subcommand)]
    Keys(cmd::keys::KeysCommand),
    /// Encrypt and decrypt files with a keyring.
    #[command(subcommand)]
    Crypt(cmd::keys::CryptCommand),
    /// Find PII in text and classify the columns of tables.
    #[command(subcommand)]
    Pii(cmd::pii::PiiCommand),
    /// Differential privacy: ε of DP-SGD, noise calibration.
    #[command(subcommand)]
    Privacy(cmd::compliance::PrivacyCommand),
    /// Group fairness metrics of predictions (fairlearn's definitions).
    Fairness(cmd::compliance::FairnessArgs),
    /// Fairness mitigation: reweighing, threshold optimization.
    #[command(subcommand)]
    Mitigate(cmd::compliance::MitigateCommand),
    /// Policy decisions with Cedar.
    #[command(subcommand)]
    Policy(cmd::compliance::PolicyCommand),
    /// The compliance report (JSON, Markdown, HTML) from a run's artifacts; exits 1 when a
    /// requested deployment gate denies.
    Report(cmd::report::ReportArgs),
    /// Scheduling: pools (local, Slurm), DRF allocation, trace simulation.
    #[command(subcommand)]
    Sched(cmd::sched::SchedCommand),
    /// Model bundles: create, sign, verify, inspect, pack and unpack.
    #[command(subcommand)]
    Bundle(cmd::bundle::BundleCommand),
    /// The model registry: publish bundles, list versions, promote and roll back aliases, fetch;
    /// every change recorded in an audit log.
    #[command(subcommand)]
    Registry(cmd::registry::RegistryCommand),
    /// Train a model on a CSV file (preprocessing inferred from the columns); writes the model
    /// files.
    Train(Box<cmd::train::TrainArgs>),
    /// Evaluate a trained model on a CSV file.
    Evaluate(cmd::train::EvaluateArgs),
    /// Hyperparameter search on a CSV file: grid, random or TPE sampling; ASHA, Hyperband or
    /// median early stopping; trials in parallel.
    Tune(Box<cmd::train::TuneArgs>),
    /// Epoch times of a fixed workload (scripts/bench-peers.sh compares them with PyTorch).
    #[command(hide = true)]
    TrainBench(cmd::train::BenchArgs),
    /// Federated training (FedAvg, FedProx) simulated over clients holding shards of a CSV file,
    /// with secure aggregation and optional client-level DP.
    Federated(Box<cmd::train::FederatedArgs>),
    /// Compress a trained model by magnitude pruning (per layer, global or whole units) with
    /// prune → fine-tune stages; reports size, accuracy and latency before and after.
    Compress(Box<cmd::train::CompressArgs>),
    /// Serve bundles or a registry's models over the KServe v2 HTTP API until interrupted;
    /// prints the URL.
    Serve(Box<cmd::serve::ServeArgs>),
    /// Per-feature drift (PSI, Kolmogorov–Smirnov, Jensen–Shannon, Wasserstein) of a current
    /// CSV against a reference CSV.
    Drift(cmd::drift::DriftArgs),
    /// Serving measurements: dynamic batching against none (scripts/bench-peers.sh).
    #[command(subcommand)]
    ServeBench(cmd::serve_bench::ServeBenchCommand),
}

#[derive(Debug, Subcommand)]
enum DataCommand {
    /// Generate the built-in loan-application data set (CSV, or Arrow IPC for `.arrow`).
    Generate {
        /// Number of records.
        #[arg(long, default_value_t = 10_000)]
        rows: u64,
        /// Random seed; the same seed gives the same file.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Output file (`.csv` or `.arrow`).
        #[arg(long)]
        out: PathBuf,
        /// Generate without injected dirt.
        #[arg(long)]
        clean: bool,
        /// Approval bias against one group, in log-odds.
        #[arg(long)]
        bias: Option<f64>,
        /// Print the ground truth as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Profile every column of a file in one pass.
    Profile {
        /// CSV, Arrow IPC or Parquet file.
        file: PathBuf,
        #[command(flatten)]
        csv: CsvArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Suggest expectations from a profile (deequ's rules); prints a YAML expectation file.
    Suggest {
        /// CSV, Arrow IPC or Parquet file.
        file: PathBuf,
        #[command(flatten)]
        csv: CsvArgs,
        /// Print the suggestions (expectation, rule, reason) as JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Evaluate an expectation file; exits with status 1 if any expectation fails.
    Check {
        /// CSV, Arrow IPC or Parquet file.
        file: PathBuf,
        /// Expectation file (YAML or JSON).
        #[arg(long)]
        expectations: PathBuf,
        #[command(flatten)]
        csv: CsvArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Convert any supported file (CSV, Arrow IPC, Parquet) to an Arrow IPC file.
    Convert {
        /// Input file.
        file: PathBuf,
        /// Output Arrow IPC file.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        csv: CsvArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Clean a file: writes DIR/data.arrow, DIR/quarantine.arrow, DIR/report.{json,md,html}.
    Govern(Box<GovernArgs>),
}

#[derive(Debug, Args)]
struct CsvArgs {
    /// CSV field delimiter (one character; `\t` for tab).
    #[arg(long, default_value = ",")]
    delimiter: String,
    /// A token read as null (repeatable; default: the empty field).
    #[arg(long = "null")]
    null: Vec<String>,
    /// Trim whitespace around CSV fields.
    #[arg(long)]
    trim: bool,
    /// The CSV file has no header record.
    #[arg(long)]
    no_header: bool,
}

impl CsvArgs {
    fn options(&self) -> Result<CsvOptions> {
        let d = match self.delimiter.as_str() {
            "\\t" | "tab" => b'\t',
            s if s.len() == 1 => s.as_bytes()[0],
            s => bail!("--delimiter must be a single byte, got {s:?}"),
        };
        let mut o = CsvOptions::default()
            .with_delimiter(d)
            .with_trim(self.trim)
            .with_header(!self.no_header);
        if !self.null.is_empty() {
            o = o.with_null_tokens(self.null.clone());
        }
        Ok(o)
    }
}

#[derive(Debug, Args)]
struct GovernArgs {
    /// CSV, Arrow IPC or Parquet file.
    file: PathBuf,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// Expectation file (YAML or JSON), evaluated on the clean output.
    #[arg(long)]
    expectations: Option<PathBuf>,
    /// Also quarantine rows that break a row-level expectation of the file.
    #[arg(long)]
    quarantine_failing: bool,
    #[command(flatten)]
    csv: CsvArgs,
    /// Do not remove exact duplicates.
    #[arg(long)]
    no_dedup: bool,
    /// Columns that define an exact duplicate (comma-separated; default all).
    #[arg(long, value_delimiter = ',')]
    dedup_keys: Vec<String>,
    /// Columns that define a near duplicate after normalisation (comma-separated).
    #[arg(long, value_delimiter = ',')]
    near_dup_keys: Vec<String>,
    /// Quarantine rows with a null or NaN in this column (repeatable).
    #[arg(long)]
    drop_null: Vec<String>,
    /// Impute nulls and NaNs: COLUMN=mean|median|mode (repeatable).
    #[arg(long)]
    impute: Vec<String>,
    /// Skip the input profile (faster; the report then has none).
    #[arg(long)]
    no_profile: bool,
    /// Skip the SHA-256 fingerprint of the input (one read less).
    #[arg(long)]
    no_fingerprint: bool,
    /// Exit with status 1 when an expectation fails.
    #[arg(long)]
    fail_on_expectations: bool,
    /// Protect the outputs with this keyring: encrypt Restricted columns, tokenize identifier
    /// columns (master key from --master-key-file or AISTD_MASTER_KEY).
    #[arg(long)]
    keyring: Option<PathBuf>,
    #[command(flatten)]
    master: cmd::keys::MasterKey,
    /// Record the run's events in this audit log (created if missing).
    #[arg(long)]
    audit: Option<PathBuf>,
    /// Who runs this, for the audit log (default: $USER).
    #[arg(long)]
    principal: Option<String>,
    /// Classification rules (YAML); built-in defaults otherwise.
    #[arg(long)]
    classification_rules: Option<PathBuf>,
    /// Also POST the OpenLineage events to this endpoint (e.g. http://localhost:5000/api/v1/lineage).
    #[arg(long)]
    lineage_url: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn open(file: &Path, csv: &CsvArgs) -> Result<Box<dyn DataSource>> {
    open_path(file, csv.options()?).with_context(|| format!("opening {}", file.display()))
}

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn generate(
    rows: u64,
    seed: u64,
    out: &Path,
    clean: bool,
    bias: Option<f64>,
    json: bool,
) -> Result<ExitCode> {
    let mut config = GeneratorConfig::default().with_rows(rows).with_seed(seed);
    if clean {
        config = config.with_dirt(DirtConfig::clean());
    }
    if let Some(b) = bias {
        config = config.with_bias(b);
    }
    let g = LoanGenerator::new(config);
    let truth = if out.extension().is_some_and(|e| e == "arrow") {
        g.write_ipc(out)?
    } else {
        g.write_csv(out)?
    };
    if json {
        print_json(&truth)?;
    } else {
        println!(
            "wrote {} rows to {} ({} exact duplicates, {} near duplicates, {} malformed e-mails injected)",
            truth.rows,
            out.display(),
            truth.exact_duplicates,
            truth.near_duplicates,
            truth.malformed_emails
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn govern(a: &GovernArgs) -> Result<ExitCode> {
    let source = open(&a.file, &a.csv)?;
    let mut p = Pipeline::from_boxed(source)
        .profile_input(!a.no_profile)
        .identify(!a.no_fingerprint);
    if !a.no_dedup {
        let keys: Vec<&str> = a.dedup_keys.iter().map(String::as_str).collect();
        p = p.dedup_exact(if keys.is_empty() { None } else { Some(&keys) });
    }
    if !a.near_dup_keys.is_empty() {
        let keys: Vec<&str> = a.near_dup_keys.iter().map(String::as_str).collect();
        p = p.near_duplicates(&keys);
    }
    for c in &a.drop_null {
        p = p.on_null(c, NullAction::Drop);
    }
    for spec in &a.impute {
        let Some((col, how)) = spec.split_once('=') else {
            bail!("--impute expects COLUMN=mean|median|mode, got {spec:?}")
        };
        let how = match how {
            "mean" => Imputation::Mean,
            "median" => Imputation::Median,
            "mode" => Imputation::Mode,
            other => bail!("--impute {col}: unknown method {other:?} (mean, median, mode)"),
        };
        p = p.on_null(col, NullAction::Impute(how));
    }
    if let Some(f) = &a.expectations {
        let suite = ExpectationSuite::from_path(f)?;
        if a.quarantine_failing {
            for e in suite.expectations.iter().filter(|e| e.is_row_level()) {
                p = p.reject(e.clone());
            }
        }
        p = p.expectations(suite, &f.display().to_string());
    }
    let rules = match &a.classification_rules {
        Some(f) => ClassificationRules::from_path(f)?,
        None => ClassificationRules::default(),
    };
    p = p.classify(rules);
    if let Some(k) = &a.keyring {
        let keyring = cmd::keys::open_keyring(k, &a.master)?;
        p = p.protect(Protection::new(Arc::new(keyring)));
    }
    if let Some(log) = &a.audit {
        let principal = a
            .principal
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "aistd".into());
        let log = AuditLog::open(log, AuditOptions::default().batch(1024))?;
        p = p.audit(Arc::new(Mutex::new(log)), &principal);
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let lineage_file = a.out.join("lineage.jsonl");
    if lineage_file.exists() {
        std::fs::remove_file(&lineage_file)?;
    }
    let job = a
        .file
        .file_stem()
        .map(|s| format!("govern.{}", s.to_string_lossy()))
        .unwrap_or_else(|| "govern".into());
    let mut lineage = Lineage::new("aistd", job).to_jsonl(&lineage_file);
    if let Some(url) = &a.lineage_url {
        lineage = lineage.to_http(url);
    }
    p = p.lineage(lineage);
    let report = p.run(&a.out)?;
    if a.json {
        print_json(&report)?;
    } else {
        println!(
            "{} rows in, {} out, {} quarantined",
            report.rows_in, report.rows_out, report.rows_quarantined
        );
        for (reason, n) in &report.quarantined_by_reason {
            println!("  {reason:<32} {n:>10}");
        }
        let failed = report.expectations.iter().filter(|r| !r.success).count();
        if !report.expectations.is_empty() {
            println!(
                "expectations: {} passed, {failed} failed",
                report.expectations.len() - failed
            );
        }
        if let Some(c) = &report.classification {
            let by_level: std::collections::BTreeMap<String, Vec<&str>> =
                c.columns.iter().fold(Default::default(), |mut m, col| {
                    m.entry(col.level.to_string())
                        .or_default()
                        .push(col.column.as_str());
                    m
                });
            for (level, cols) in by_level {
                println!("  {level:<13} {}", cols.join(", "));
            }
        }
        for p in &report.protection {
            println!("  {} {} ({})", p.action, p.column, p.detail);
        }
        if let Some(h) = &report.audit_head {
            println!("audit tree head {h}");
        }
        println!("outputs in {} (lineage in lineage.jsonl)", a.out.display());
    }
    Ok(if a.fail_on_expectations && !report.expectations_passed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn run(cli: Cli) -> Result<ExitCode> {
    let cmd = match cli.command {
        Command::Data(cmd) => cmd,
        Command::Audit(cmd) => return cmd::audit::run(cmd),
        Command::Keys(cmd) => return cmd::keys::run_keys(cmd),
        Command::Crypt(cmd) => return cmd::keys::run_crypt(cmd),
        Command::Pii(cmd) => return cmd::pii::run(cmd),
        Command::Privacy(cmd) => return cmd::compliance::run_privacy(cmd),
        Command::Fairness(a) => return cmd::compliance::run_fairness(&a),
        Command::Mitigate(cmd) => return cmd::compliance::run_mitigate(cmd),
        Command::Policy(cmd) => return cmd::compliance::run_policy(cmd),
        Command::Report(a) => return cmd::report::run(&a),
        Command::Sched(cmd) => return cmd::sched::run(cmd),
        Command::Train(a) => return cmd::train::train(*a),
        Command::Evaluate(a) => return cmd::train::run_evaluate(&a),
        Command::Tune(a) => return cmd::train::tune(*a),
        Command::TrainBench(a) => return cmd::train::bench(&a),
        Command::Federated(a) => return cmd::train::federated(*a),
        Command::Compress(a) => return cmd::train::compress(*a),
        Command::ServeBench(c) => return cmd::serve_bench::run(c),
        Command::Drift(a) => return cmd::drift::run(&a),
        Command::Serve(a) => return cmd::serve::run(&a),
        Command::Bundle(c) => return cmd::bundle::run(c),
        Command::Registry(c) => return cmd::registry::run(c),
    };
    match cmd {
        DataCommand::Generate {
            rows,
            seed,
            out,
            clean,
            bias,
            json,
        } => generate(rows, seed, &out, clean, bias, json),
        DataCommand::Profile { file, csv, json } => {
            let profile = Profile::of(open(&file, &csv)?.as_ref())?;
            if json {
                print_json(&profile)?
            } else {
                print!("{}", profile.to_markdown())
            }
            Ok(ExitCode::SUCCESS)
        }
        DataCommand::Suggest { file, csv, json } => {
            let profile = Profile::of(open(&file, &csv)?.as_ref())?;
            let suggestions = suggest(&profile);
            if json {
                print_json(&suggestions)?;
                return Ok(ExitCode::SUCCESS);
            }
            for s in &suggestions {
                println!("# {}: {}", s.rule, s.reason);
            }
            let suite =
                ExpectationSuite::new(suggestions.into_iter().map(|s| s.expectation).collect());
            print!("{}", serde_yaml_ng::to_string(&suite)?);
            Ok(ExitCode::SUCCESS)
        }
        DataCommand::Check {
            file,
            expectations,
            csv,
            json,
        } => {
            let source = open(&file, &csv)?;
            let suite = ExpectationSuite::from_path(&expectations)?;
            suite.validate(&source.schema(), &expectations.display().to_string())?;
            let results = suite.evaluate(source.as_ref())?;
            let ok = results.iter().all(|r| r.success);
            if json {
                print_json(&results)?;
            } else {
                for r in &results {
                    println!(
                        "{} {:<18} {:<16} unexpected {:>8} ({:.3}%)",
                        if r.success { "PASS" } else { "FAIL" },
                        r.expectation.rule.kind(),
                        r.expectation.rule.column().unwrap_or("-"),
                        r.unexpected_count,
                        r.unexpected_percent
                    );
                }
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        DataCommand::Convert {
            file,
            out,
            csv,
            json,
        } => {
            let source = open(&file, &csv)?;
            let rows = write_ipc_file(source.as_ref(), &out)?;
            if json {
                print_json(
                    &serde_json::json!({ "rows": rows, "out": out, "schema": source.schema().fields().iter()
                    .map(|f| (f.name().clone(), f.data_type().to_string())).collect::<Vec<_>>() }),
                )?;
            } else {
                println!("wrote {rows} rows to {}", out.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        DataCommand::Govern(a) => govern(&a),
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
