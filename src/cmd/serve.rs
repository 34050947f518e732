//! `aistd serve`: bundles (or a registry's models) behind the KServe v2 HTTP API.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use aistd_deploy::batch::{BatchConfig, Batcher};
use aistd_deploy::drift::{DriftMonitor, DriftTracker, ReferenceProfile};
use aistd_deploy::http::{ModelRepository, RunningServer, ServerConfig};
use aistd_deploy::metrics::{Metrics, MetricsConfig};
use aistd_deploy::middleware::{AllowAll, Authenticated, ConcurrencyLimit, Timeout};
use aistd_deploy::registry::{LocalStore, MemoryAudit, Registry};
use aistd_deploy::router::Router;
use aistd_deploy::{Bearer, Bundle, Endpoint};
use anyhow::{Context, Result, bail};
use clap::Args;

use super::bundle::TrustArgs;

/// `aistd serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Bundle directories or archives, or a registry directory (every model at --alias).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// The port (0: any free port; the URL is printed).
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Batch requests up to this many rows (1: no batching).
    #[arg(long, default_value_t = 1)]
    max_batch: usize,
    /// The longest a request waits for its batch to fill, µs.
    #[arg(long, default_value_t = 100)]
    batch_delay_us: u64,
    /// For a registry: the alias (or version) of each model to serve; models without it are
    /// served at their latest version.
    #[arg(long, default_value = "production")]
    alias: String,
    /// The largest request body, in MiB.
    #[arg(long, default_value_t = 64)]
    max_body_mib: usize,
    /// Require this bearer token (repeatable); the file form keeps it out of the process list.
    #[arg(long = "token", value_name = "TOKEN")]
    tokens: Vec<String>,
    /// Require one of the bearer tokens in this file (one per line).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Refuse requests beyond this many in flight per model (503).
    #[arg(long)]
    max_concurrency: Option<usize>,
    /// Answer 504 when a model takes longer than this, ms.
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// When several versions of a model are served: send WEIGHT percent of its unversioned
    /// requests to VERSION (repeatable); the first version given gets the rest.
    #[arg(long = "canary", value_name = "VERSION=WEIGHT")]
    canaries: Vec<String>,
    /// Watch the served inputs for drift against this CSV of reference data (a header naming
    /// the features, then numeric rows): per-feature PSI, Kolmogorov-Smirnov, Jensen-Shannon and
    /// Wasserstein gauges appear at /metrics (`aistd_drift_*`).
    #[arg(long, value_name = "CSV")]
    drift_reference: Option<PathBuf>,
    /// The input (rows × features) whose values are watched; default: each model's first
    /// two-dimensional input.
    #[arg(long, value_name = "NAME", requires = "drift_reference")]
    drift_input: Option<String>,
    /// Quantile bins per feature of the drift reference.
    #[arg(long, default_value_t = 10)]
    drift_bins: usize,
    #[command(flatten)]
    trust: TrustArgs,
}

fn temp_dir(what: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!("aistd-serve-{what}-{}-{nanos}", std::process::id()))
}

/// The bundles named by `path`: itself (a directory or an archive), or every model of a
/// registry at `alias` (else the latest version). Unpacked copies go under `scratch`.
fn bundles(path: &Path, a: &ServeArgs, scratch: &Path) -> Result<Vec<Bundle>> {
    let verify = a.trust.verify();
    if path.join("models").is_dir() && !path.join("bundle.json").exists() {
        let registry = Registry::new(
            Arc::new(LocalStore::new(path)?),
            Arc::new(MemoryAudit::default()),
            verify,
        );
        let mut out = Vec::new();
        for model in registry.models()? {
            let reference = match registry.resolve(&model, &a.alias) {
                Ok(v) => v,
                Err(_) => registry
                    .versions(&model)?
                    .pop()
                    .with_context(|| format!("model {model} has no versions"))?,
            };
            let dir = scratch.join(format!("{model}-{reference}"));
            out.push(registry.fetch(&model, &reference, &dir)?);
        }
        if out.is_empty() {
            bail!("registry {} has no models", path.display());
        }
        return Ok(out);
    }
    if path.is_dir() {
        return Ok(vec![Bundle::open(path, &verify)?]);
    }
    let dir = scratch.join(format!(
        "archive-{}",
        path.display().to_string().replace('/', "_")
    ));
    Ok(vec![Bundle::unpack(path, &dir, &verify)?])
}

pub(crate) fn run(a: &ServeArgs) -> Result<ExitCode> {
    let scratch = temp_dir("bundles");
    let result = serve(a, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// The bearer tokens from --token and --token-file.
fn tokens(a: &ServeArgs) -> Result<Vec<Bearer>> {
    let mut out: Vec<Bearer> = a.tokens.iter().map(Bearer::new).collect();
    if let Some(f) = &a.token_file {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("--token-file {}", f.display()))?;
        out.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(Bearer::new),
        );
        if out.is_empty() {
            bail!("--token-file {}: no tokens in it", f.display());
        }
    }
    Ok(out)
}

/// The middleware stack around a model, innermost first: batching, timeout, concurrency
/// limit, authentication, metrics.
fn stack(
    a: &ServeArgs,
    model: Arc<dyn Endpoint>,
    tokens: &[Bearer],
    metrics: &Metrics,
) -> Result<Arc<dyn Endpoint>> {
    let mut batcher = None;
    let mut ep = model;
    if a.max_batch > 1 {
        let b = Arc::new(Batcher::new(
            ep,
            BatchConfig {
                max_batch_size: a.max_batch,
                max_queue_delay: Duration::from_micros(a.batch_delay_us),
                ..BatchConfig::default()
            },
        )?);
        batcher = Some(b.clone());
        ep = b;
    }
    if let Some(ms) = a.timeout_ms {
        ep = Arc::new(Timeout::new(ep, Duration::from_millis(ms)));
    }
    if let Some(n) = a.max_concurrency {
        ep = Arc::new(ConcurrencyLimit::new(ep, n));
    }
    if !tokens.is_empty() {
        let mut auth = Authenticated::new(ep, Arc::new(AllowAll));
        for (i, t) in tokens.iter().enumerate() {
            auth = auth.with_token(t, format!("token-{}", i + 1));
        }
        ep = Arc::new(auth);
    }
    let metered = metrics.wrap(ep);
    Ok(Arc::new(match batcher {
        Some(b) => metered.with_batcher(b),
        None => metered,
    }))
}

/// Wraps a model in a drift monitor of `profile` whose report `/metrics` shows.
fn watch_drift(
    a: &ServeArgs,
    model: Arc<dyn Endpoint>,
    profile: &ReferenceProfile,
    metrics: &Metrics,
) -> Result<Arc<dyn Endpoint>> {
    let m = model.metadata();
    let input = match &a.drift_input {
        Some(name) => name.clone(),
        None => m
            .inputs
            .iter()
            .find(|s| s.shape.len() == 2)
            .map(|s| s.name.clone())
            .with_context(|| {
                format!(
                    "--drift-reference: model {} has no two-dimensional input to watch",
                    m.name
                )
            })?,
    };
    let tracker = Arc::new(DriftTracker::new(profile.clone()));
    let monitor = DriftMonitor::new(model, input, tracker.clone())
        .with_context(|| format!("--drift-reference for model {}", m.name))?;
    metrics.track_drift(
        &m.name,
        m.versions.first().map_or("", String::as_str),
        tracker,
    );
    Ok(Arc::new(monitor))
}

/// Each model's served versions, in the order given.
type Versions = BTreeMap<String, Vec<(String, Arc<dyn Endpoint>)>>;

/// For each model given in several versions, a router over them: the `--canary` weights, the
/// first version the rest; it answers the model's unversioned routes.
fn canary_routes(a: &ServeArgs, by_model: &Versions, repo: &ModelRepository) -> Result<()> {
    let mut weights: BTreeMap<String, u32> = BTreeMap::new();
    for c in &a.canaries {
        let (v, w) = c
            .split_once('=')
            .with_context(|| format!("--canary `{c}`: expected VERSION=WEIGHT"))?;
        let w: u32 = w
            .parse()
            .ok()
            .filter(|w| *w <= 100)
            .with_context(|| format!("--canary `{c}`: the weight is a percentage, 0 to 100"))?;
        weights.insert(v.to_string(), w);
    }
    let mut used = 0;
    for (model, versions) in by_model.iter().filter(|(_, v)| v.len() > 1) {
        let canary: u32 = versions
            .iter()
            .skip(1)
            .filter_map(|(v, _)| weights.get(v))
            .sum();
        if canary > 100 {
            bail!("model {model}: --canary weights add up to {canary}%");
        }
        let router = Router::new(versions[0].0.clone(), versions[0].1.clone(), "user");
        let routes = versions
            .iter()
            .enumerate()
            .map(|(i, (v, e))| {
                let w = if i == 0 {
                    100 - canary
                } else {
                    weights.get(v).copied().unwrap_or(0)
                };
                (v.clone(), e.clone(), w)
            })
            .collect();
        router.set_routes(routes)?;
        used += versions
            .iter()
            .skip(1)
            .filter(|(v, _)| weights.contains_key(v))
            .count();
        eprintln!("{model}: unversioned requests split {:?}", router.weights());
        repo.set_default(Arc::new(router));
    }
    if used < weights.len() {
        bail!("--canary names a version that is not a second or later version of a model served");
    }
    Ok(())
}

fn serve(a: &ServeArgs, scratch: &Path) -> Result<ExitCode> {
    let runtimes = aistd::bundling::runtimes();
    let tokens = tokens(a)?;
    let repo = Arc::new(ModelRepository::new());
    let metrics = Arc::new(Metrics::new(MetricsConfig::default()));
    let drift = a
        .drift_reference
        .as_deref()
        .map(|p| crate::cmd::drift::profile(p, a.drift_bins))
        .transpose()?;
    let mut served = Vec::new();
    let mut by_model = Versions::new();
    for path in &a.paths {
        for bundle in bundles(path, a, scratch)? {
            let m = bundle.manifest();
            let endpoint: Arc<dyn Endpoint> = Arc::new(
                runtimes
                    .load(&bundle)
                    .with_context(|| format!("loading {}:{}", m.name, m.version))?,
            );
            let endpoint = match &drift {
                Some(profile) => watch_drift(a, endpoint, profile, &metrics)?,
                None => endpoint,
            };
            let endpoint = stack(a, endpoint, &tokens, &metrics)?;
            served.push(format!("{}:{}", m.name, m.version));
            by_model
                .entry(m.name.clone())
                .or_default()
                .push((m.version.clone(), endpoint.clone()));
            repo.insert(endpoint)?;
        }
    }
    canary_routes(a, &by_model, &repo)?;
    let addr = format!("{}:{}", a.host, a.port)
        .parse()
        .with_context(|| format!("--host {} --port {}: not an address", a.host, a.port))?;
    let server = RunningServer::start(
        addr,
        repo,
        ServerConfig {
            max_body_bytes: a.max_body_mib << 20,
            metrics: Some(metrics),
            ..ServerConfig::default()
        },
    )?;
    println!(
        "serving {} at {} (metrics at {}/metrics)",
        served.join(", "),
        server.url(),
        server.url()
    );
    std::io::stdout().flush()?;
    server.run_until_signal()?;
    eprintln!("stopped");
    Ok(ExitCode::SUCCESS)
}
