//! `aistd sched submit|status|cancel|why --pool local|slurm`.
//!
//! `--pool slurm` talks to Slurm directly (it keeps the state). `--pool local` is this machine
//! through a spool directory (`--state`, default `$XDG_STATE_HOME/aistd/local` or
//! `~/.local/state/aistd/local`) served by a background runner that `submit` starts when none
//! is running (`aistd sched local-runner`): requests go in `inbox/`, cancellations in
//! `cancel/`, and the runner keeps `jobs/<id>.json` (status, pending reason, estimated start,
//! failure) current and job output in `logs/`. It exits after `--idle-exit` seconds with
//! nothing to run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aistd_scheduler::{
    JobSpec, JobState, JobStatus, LocalPool, ResourcePool, Resources, SlurmPool,
};
use anyhow::{Context, Result, bail};
use clap::Args;
use serde::{Deserialize, Serialize};

use crate::print_json;

/// Which pool.
#[derive(Debug, Args)]
pub(crate) struct PoolArgs {
    /// `local` (this machine) or `slurm`.
    #[arg(long, default_value = "local")]
    pool: String,
    /// The local pool's state directory.
    #[arg(long)]
    state: Option<PathBuf>,
    /// `slurm.conf` for --pool slurm (default: `SLURM_CONF`, then Slurm's own default).
    #[arg(long)]
    slurm_conf: Option<PathBuf>,
    /// Slurm partition.
    #[arg(long)]
    partition: Option<String>,
}

/// What to run.
#[derive(Debug, Args)]
pub(crate) struct SubmitArgs {
    #[command(flatten)]
    pool: PoolArgs,
    /// Job name.
    #[arg(long, default_value = "job")]
    name: String,
    /// Gang size: tasks that must all run at once.
    #[arg(long, default_value_t = 1)]
    tasks: u32,
    /// Each task's resources, e.g. `cpu=2,mem=4096,gpu=1`.
    #[arg(long, default_value = "cpu=1,mem=512")]
    per_task: String,
    /// Only nodes with this GPU model.
    #[arg(long)]
    gpu_model: Option<String>,
    /// Tenant (Slurm account).
    #[arg(long)]
    tenant: Option<String>,
    /// Priority (higher first).
    #[arg(long, default_value_t = 0)]
    priority: i64,
    /// Run-time estimate in seconds (start-time estimates plan with it).
    #[arg(long)]
    estimate: Option<f64>,
    /// Without a command: hold the resources this many seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Wait until the job ends; exit 1 unless it completed.
    #[arg(long)]
    wait: bool,
    /// The local runner exits after this many idle seconds.
    #[arg(long, default_value_t = 60.0)]
    idle_exit: f64,
    /// What the local pool offers, when this submission starts its runner (default: this
    /// machine's cores, memory and GPUs).
    #[arg(long)]
    capacity: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// The command each task runs (after `--`).
    #[arg(last = true)]
    command: Vec<String>,
}

/// One job.
#[derive(Debug, Args)]
pub(crate) struct JobArgs {
    #[command(flatten)]
    pool: PoolArgs,
    /// Job id.
    id: u64,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// What `status` and `why` show, and what the local runner keeps per job.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Snapshot {
    pool: String,
    #[serde(flatten)]
    status: JobStatus,
    /// Estimated start, Unix seconds.
    estimated_start: Option<f64>,
    /// Why it failed, when the pool knows.
    failure: Option<String>,
    /// Standard output, when the pool writes it to a file.
    output: Option<PathBuf>,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn state_dir(args: &PoolArgs) -> Result<PathBuf> {
    if let Some(d) = &args.state {
        return Ok(d.clone());
    }
    let base = match std::env::var_os("XDG_STATE_HOME") {
        Some(x) if !x.is_empty() => PathBuf::from(x),
        _ => PathBuf::from(std::env::var_os("HOME").context("HOME is not set; give --state")?)
            .join(".local/state"),
    };
    Ok(base.join("aistd/local"))
}

fn slurm(args: &PoolArgs) -> Result<SlurmPool> {
    let mut p = SlurmPool::new("slurm").workdir(std::env::current_dir()?);
    if let Some(c) = &args.slurm_conf {
        p = p.conf(c);
    }
    if let Some(part) = &args.partition {
        p = p.partition(part);
    }
    Ok(p)
}

fn slurm_snapshot(p: &SlurmPool, id: u64) -> Result<Snapshot> {
    let status = p.status(id)?;
    let estimated_start = if status.state == JobState::Pending {
        p.estimated_start(id)?
    } else {
        None
    };
    Ok(Snapshot {
        pool: "slurm".into(),
        output: Some(p.output_path(id)),
        status,
        estimated_start,
        failure: None,
    })
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

fn layout(dir: &Path) -> Result<()> {
    for sub in ["inbox", "accepted", "cancel", "jobs", "logs"] {
        std::fs::create_dir_all(dir.join(sub))
            .with_context(|| format!("cannot create {}", dir.join(sub).display()))?;
    }
    Ok(())
}

fn runner_alive(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("runner.pid"))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .and_then(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).ok())
        .is_some_and(|cmd| String::from_utf8_lossy(&cmd).contains("local-runner"))
}

fn local_snapshot(dir: &Path, id: u64) -> Result<Snapshot> {
    let path = dir.join("jobs").join(format!("{id}.json"));
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("no job {id} in the local pool at {}", dir.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a job snapshot", path.display()))
}

fn spec(a: &SubmitArgs) -> Result<JobSpec> {
    let mut job =
        JobSpec::new(a.name.clone(), a.tasks, Resources::parse(&a.per_task)?).priority(a.priority);
    if let Some(m) = &a.gpu_model {
        job = job.gpu_model(m);
    }
    if let Some(t) = &a.tenant {
        job = job.tenant(t);
    }
    if let Some(e) = a.estimate {
        job = job.estimate(e);
    }
    if let Some(d) = a.duration {
        job = job.duration(d);
    }
    if !a.command.is_empty() {
        job = job.command(a.command.clone());
    }
    Ok(job)
}

/// `aistd sched submit`.
pub(crate) fn submit(a: SubmitArgs) -> Result<std::process::ExitCode> {
    let job = spec(&a)?;
    let (id, fetch): (u64, Box<dyn Fn(u64) -> Result<Snapshot>>) = match a.pool.pool.as_str() {
        "slurm" => {
            let p = slurm(&a.pool)?;
            let id = p.submit(job)?;
            (id, Box::new(move |id| slurm_snapshot(&p, id)))
        }
        "local" => {
            let dir = state_dir(&a.pool)?;
            layout(&dir)?;
            let req = format!(
                "{}-{}",
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos()),
                std::process::id()
            );
            write_atomic(
                &dir.join("inbox").join(format!("{req}.json")),
                serde_json::to_string(&job)?.as_bytes(),
            )?;
            if !runner_alive(&dir) {
                start_runner(&dir, a.idle_exit, a.capacity.as_deref())?;
            }
            let id = await_acceptance(&dir, &req)?;
            let d = dir.clone();
            (id, Box::new(move |id| local_snapshot(&d, id)))
        }
        other => bail!("--pool must be local or slurm, not `{other}`"),
    };
    if !a.wait {
        let snap = wait_snapshot(&*fetch, id, Duration::from_secs(2))?;
        if a.json {
            print_json(&snap)?;
        } else {
            println!(
                "submitted job {id} to the {} pool: {}",
                a.pool.pool,
                line(&snap)
            );
        }
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let snap = loop {
        let s = fetch(id)?;
        if s.status.state.is_final() {
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if a.json {
        print_json(&snap)?;
    } else {
        println!("job {id}: {}", line(&snap));
    }
    Ok(if snap.status.state == JobState::Completed {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    })
}

/// A snapshot, once the runner has written one.
fn wait_snapshot(
    fetch: &dyn Fn(u64) -> Result<Snapshot>,
    id: u64,
    up_to: Duration,
) -> Result<Snapshot> {
    let t = Instant::now();
    loop {
        match fetch(id) {
            Ok(s) => return Ok(s),
            Err(e) if t.elapsed() > up_to => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn start_runner(dir: &Path, idle_exit: f64, capacity: Option<&str>) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().context("cannot find this program to start the runner")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["sched", "local-runner", "--state"])
        .arg(dir)
        .args(["--idle-exit", &idle_exit.to_string()]);
    if let Some(c) = capacity {
        Resources::parse(c)?;
        cmd.args(["--capacity", c]);
    }
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(
            std::fs::File::create(dir.join("runner.log"))
                .with_context(|| format!("cannot write {}", dir.join("runner.log").display()))?,
        )
        .process_group(0)
        .spawn()
        .context("cannot start the local runner")?;
    Ok(())
}

fn await_acceptance(dir: &Path, req: &str) -> Result<u64> {
    let path = dir.join("accepted").join(format!("{req}.json"));
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(15) {
        if let Ok(text) = std::fs::read_to_string(&path) {
            let _ = std::fs::remove_file(&path);
            let v: serde_json::Value = serde_json::from_str(&text)?;
            if let Some(id) = v.get("id").and_then(serde_json::Value::as_u64) {
                return Ok(id);
            }
            bail!(
                "{}",
                v.get("error")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("the local runner refused the job")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!(
        "the local runner did not take the job within 15 s (see {})",
        dir.join("runner.log").display()
    )
}

fn line(s: &Snapshot) -> String {
    let st = &s.status;
    let mut out = format!("{} ({:?})", st.name, st.state).to_lowercase();
    if !st.placement.is_empty() {
        let p: Vec<String> = st
            .placement
            .iter()
            .map(|(n, c)| format!("{c}×{n}"))
            .collect();
        out.push_str(&format!(", on {}", p.join(" + ")));
    }
    if let Some(r) = &st.reason {
        out.push_str(&format!(", pending: {r}"));
    }
    if let Some(f) = &s.failure {
        out.push_str(&format!(", failed: {f}"));
    }
    out
}

fn snapshot(args: &PoolArgs, id: u64) -> Result<Snapshot> {
    match args.pool.as_str() {
        "slurm" => slurm_snapshot(&slurm(args)?, id),
        "local" => local_snapshot(&state_dir(args)?, id),
        other => bail!("--pool must be local or slurm, not `{other}`"),
    }
}

/// `aistd sched status`.
pub(crate) fn status(a: JobArgs) -> Result<()> {
    let s = snapshot(&a.pool, a.id)?;
    if a.json {
        print_json(&s)
    } else {
        println!("job {}: {}", a.id, line(&s));
        Ok(())
    }
}

/// `aistd sched why`: the pending reason and the estimated start.
pub(crate) fn why(a: JobArgs) -> Result<()> {
    let s = snapshot(&a.pool, a.id)?;
    if a.json {
        return print_json(&serde_json::json!({
            "id": a.id, "state": s.status.state, "reason": s.status.reason,
            "estimated_start": s.estimated_start,
        }));
    }
    match (&s.status.reason, s.status.state) {
        (Some(r), JobState::Pending) => {
            println!("job {} is pending: {r}", a.id);
            match s.estimated_start {
                Some(t) => println!(
                    "estimated start: in {:.0} s (Unix time {t:.0})",
                    (t - unix_now()).max(0.0)
                ),
                None => println!(
                    "estimated start: unknown (a job it waits for has no run-time estimate)"
                ),
            }
        }
        (_, state) => println!(
            "job {} is not pending: {}",
            a.id,
            format!("{state:?}").to_lowercase()
        ),
    }
    Ok(())
}

/// `aistd sched cancel`.
pub(crate) fn cancel(a: JobArgs) -> Result<()> {
    match a.pool.pool.as_str() {
        "slurm" => slurm(&a.pool)?.cancel(a.id)?,
        "local" => {
            let dir = state_dir(&a.pool)?;
            let before = local_snapshot(&dir, a.id)?;
            if !before.status.state.is_final() {
                if !runner_alive(&dir) {
                    bail!(
                        "the local runner is not running, so job {} cannot be running either",
                        a.id
                    );
                }
                write_atomic(&dir.join("cancel").join(a.id.to_string()), b"")?;
                let t = Instant::now();
                while !local_snapshot(&dir, a.id)?.status.state.is_final() {
                    if t.elapsed() > Duration::from_secs(15) {
                        bail!("job {} did not end within 15 s of the cancellation", a.id);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        other => bail!("--pool must be local or slurm, not `{other}`"),
    }
    status(a)
}

/// `aistd sched local-runner`: serves the local pool's spool directory.
pub(crate) fn local_runner(dir: &Path, idle_exit: f64, capacity: Option<&str>) -> Result<()> {
    layout(dir)?;
    if runner_alive(dir) {
        return Ok(());
    }
    write_atomic(
        &dir.join("runner.pid"),
        std::process::id().to_string().as_bytes(),
    )?;
    // Ids continue after the jobs this directory already knows.
    let base = std::fs::read_dir(dir.join("jobs"))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.path()
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<u64>().ok())
        })
        .max()
        .unwrap_or(0);
    let logs = dir.join("logs").join(format!("from-{}", base + 1));
    let pool = match capacity {
        Some(c) => LocalPool::new(
            "local",
            Resources::parse(c)?,
            aistd_scheduler::QueuePolicy::Fifo,
            aistd_scheduler::Blocking::Skip,
        )?,
        None => LocalPool::detect("local")?,
    }
    .log_dir(&logs)?;
    let epoch = unix_now();
    let mut known: Vec<(u64, u32)> = Vec::new();
    let mut written: HashMap<u64, String> = HashMap::new();
    let mut idle_since = Instant::now();
    tracing::info!(dir = %dir.display(), base, "local runner up");
    let me = std::process::id().to_string();
    loop {
        // Another runner took over (or the directory was removed): stop serving it.
        if std::fs::read_to_string(dir.join("runner.pid"))
            .ok()
            .as_deref()
            != Some(me.as_str())
        {
            tracing::warn!("runner.pid no longer names this runner: exiting");
            return Ok(());
        }
        let mut inbox: Vec<PathBuf> = std::fs::read_dir(dir.join("inbox"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        inbox.sort();
        for req in inbox {
            let answer = match std::fs::read_to_string(&req)
                .map_err(anyhow::Error::from)
                .and_then(|t| Ok(serde_json::from_str::<JobSpec>(&t)?))
                .and_then(|job| {
                    let tasks = job.tasks;
                    Ok((pool.submit(job)?, tasks))
                }) {
                Ok((local, tasks)) => {
                    known.push((local, tasks));
                    serde_json::json!({ "id": base + local })
                }
                Err(e) => serde_json::json!({ "error": format!("{e:#}") }),
            };
            if let Some(name) = req.file_name() {
                write_atomic(
                    &dir.join("accepted").join(name),
                    answer.to_string().as_bytes(),
                )?;
            }
            let _ = std::fs::remove_file(&req);
        }
        for c in std::fs::read_dir(dir.join("cancel"))?.filter_map(|e| e.ok()) {
            if let Some(id) = c.file_name().to_str().and_then(|s| s.parse::<u64>().ok())
                && id > base
            {
                let _ = pool.cancel(id - base);
            }
            let _ = std::fs::remove_file(c.path());
        }
        let mut active = false;
        for &(local, tasks) in &known {
            let mut status = pool.status(local)?;
            active |= !status.state.is_final();
            let estimated_start = if status.state == JobState::Pending {
                pool.estimated_start(local)?.map(|t| epoch + t)
            } else {
                None
            };
            status.id = base + local;
            status.submitted += epoch;
            status.started = status.started.map(|t| t + epoch);
            status.finished = status.finished.map(|t| t + epoch);
            let snap = Snapshot {
                pool: "local".into(),
                failure: pool.failure(local)?,
                output: Some(logs.join(if tasks > 1 {
                    format!("{local}.0.out")
                } else {
                    format!("{local}.out")
                })),
                status,
                estimated_start,
            };
            let text = serde_json::to_string_pretty(&snap)?;
            if written.get(&local) != Some(&text) {
                write_atomic(
                    &dir.join("jobs").join(format!("{}.json", base + local)),
                    text.as_bytes(),
                )?;
                written.insert(local, text);
            }
        }
        if active {
            idle_since = Instant::now();
        } else if idle_since.elapsed().as_secs_f64() > idle_exit {
            let _ = std::fs::remove_file(dir.join("runner.pid"));
            tracing::info!("local runner idle for {idle_exit} s: exiting");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
