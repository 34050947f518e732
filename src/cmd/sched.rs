//! `aistd sched`: DRF allocation, trace simulation, synthetic workloads, placement bench.

use std::path::PathBuf;
use std::process::ExitCode;

use aistd_scheduler::accounting::{PowerModel, Prices, account};
use aistd_scheduler::core::Core;
use aistd_scheduler::drf;
use aistd_scheduler::sim::{
    DEFAULT_LAS_THRESHOLDS, Failure, ReplayOptions, SimReport, replay_with,
};
use aistd_scheduler::tenants::Tenants;
use aistd_scheduler::trace::{
    Synthetic, alibaba_jobs, alibaba_nodes, generic_jobs, random_failures, synthetic,
    tiresias_cluster, tiresias_jobs, write_generic,
};
use aistd_scheduler::{Blocking, QueuePolicy, Resources};
use anyhow::{Context, Result, bail};
use clap::Subcommand;

use crate::print_json;

/// `aistd sched` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum SchedCommand {
    /// Submit a job to a pool (`--pool local|slurm`); the command follows `--`.
    Submit(super::jobs::SubmitArgs),
    /// A job's state, placement and pending reason.
    Status(super::jobs::JobArgs),
    /// Why a job is pending, and when it is expected to start.
    Why(super::jobs::JobArgs),
    /// Cancel a job.
    Cancel(super::jobs::JobArgs),
    /// Serve the local pool's state directory (started by `submit --pool local`).
    #[command(hide = true)]
    LocalRunner {
        /// The state directory.
        #[arg(long)]
        state: PathBuf,
        /// Exit after this many seconds with nothing to run.
        #[arg(long, default_value_t = 60.0)]
        idle_exit: f64,
        /// What the pool offers (default: this machine).
        #[arg(long)]
        capacity: Option<String>,
    },
    /// Dominant Resource Fairness: tasks per user and dominant shares.
    Allocate {
        /// Total capacity, e.g. `cpu=9,mem=18`.
        #[arg(long)]
        capacity: String,
        /// A user's per-task demand, `USER:cpu=1,mem=4` (repeat per user).
        #[arg(long, required = true)]
        demand: Vec<String>,
        /// The policy (only `drf` for now).
        #[arg(long, default_value = "drf")]
        policy: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Replay a trace on a cluster and report JCT, waiting, makespan, utilization, fairness.
    Simulate {
        /// The job trace.
        #[arg(long)]
        trace: PathBuf,
        /// Trace format: `tiresias`, `alibaba-v2023` (a pod list; --cluster is its node list) or
        /// `generic` (see docs/formats.md).
        #[arg(long, default_value = "tiresias")]
        trace_format: String,
        /// Cluster spec (Tiresias: num_switch,num_node_p_switch,num_gpu_p_node,num_cpu_p_node,mem_p_node);
        /// or use --nodes.
        #[arg(long)]
        cluster: Option<PathBuf>,
        /// Instead of --cluster: this many nodes of 64 CPUs, 512 GiB and --gpus-per-node GPUs.
        #[arg(long)]
        nodes: Option<usize>,
        /// GPUs per node with --nodes.
        #[arg(long, default_value_t = 8)]
        gpus_per_node: u64,
        /// `fifo`, `priority`, `sjf`, `las` (Tiresias' 2D-LAS, preemptive), `drf` (Dominant
        /// Resource Fairness across tenants), `fairshare` (weighted fair share over time) or
        /// `backfill` (FIFO with EASY backfill).
        #[arg(long, default_value = "fifo")]
        policy: String,
        /// Tenants: weights, guarantees, limits, hierarchy (JSON; see docs/formats.md).
        #[arg(long)]
        tenants: Option<PathBuf>,
        /// Write utilization, cost and energy (usage.json, utilization.svg, metrics.prom) here.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Price table for the cost (JSON; default: round cloud list prices).
        #[arg(long)]
        prices: Option<PathBuf>,
        /// Idle seconds before a node counts as powered off, for the energy estimate.
        #[arg(long, default_value_t = 600.0)]
        idle_timeout: f64,
        /// Node failures: a CSV `node,at,repair` (seconds).
        #[arg(long, conflicts_with = "mtbf")]
        failures: Option<PathBuf>,
        /// Random node failures: mean seconds between failures of each node.
        #[arg(long)]
        mtbf: Option<f64>,
        /// Seconds a failed node takes to come back (with --mtbf).
        #[arg(long, default_value_t = 3600.0)]
        repair: f64,
        /// Seed of the random failures (the replay itself has no randomness).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Preempt for the head of the queue: lower-priority jobs, and borrowers when a tenant
        /// within its guarantee waits. Every trace job is taken as preemptible.
        #[arg(long)]
        preempt: bool,
        /// Let later jobs start when the head of the queue does not fit (else strict order).
        #[arg(long, conflicts_with = "backfill")]
        skip: bool,
        /// EASY backfill: later jobs start if they do not delay the first blocked job's
        /// reservation (by run-time estimates).
        #[arg(long)]
        backfill: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a synthetic workload in the generic trace format.
    Generate {
        /// Jobs.
        #[arg(long, default_value_t = 1000)]
        jobs: usize,
        /// Mean seconds between arrivals.
        #[arg(long, default_value_t = 30.0)]
        interarrival: f64,
        /// Median job duration, seconds.
        #[arg(long, default_value_t = 600.0)]
        median_duration: f64,
        /// GPUs per node (wider jobs become gangs).
        #[arg(long, default_value_t = 8)]
        gpus_per_node: u64,
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output CSV.
        #[arg(long)]
        out: PathBuf,
    },
    /// Placement decisions per second: one scheduling pass over --jobs queued single-GPU jobs on
    /// --nodes nodes of 8 GPUs.
    Bench {
        /// Nodes.
        #[arg(long, default_value_t = 5000)]
        nodes: usize,
        /// Queued jobs.
        #[arg(long, default_value_t = 50_000)]
        jobs: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn uniform_nodes(n: usize, gpus: u64) -> Vec<aistd_scheduler::NodeSpec> {
    (0..n)
        .map(|i| aistd_scheduler::NodeSpec::new(format!("n{i}"), Resources::new(64, 524_288, gpus)))
        .collect()
}

fn policy(name: &str) -> Result<QueuePolicy> {
    Ok(match name {
        "fifo" => QueuePolicy::Fifo,
        "priority" => QueuePolicy::Priority,
        "sjf" => QueuePolicy::ShortestJobFirst,
        "las" => QueuePolicy::LeastAttainedService,
        "drf" => QueuePolicy::DominantResourceFairness,
        "fairshare" => QueuePolicy::FairShare,
        "backfill" => QueuePolicy::Fifo,
        other => bail!(
            "--policy must be fifo, priority, sjf, las, drf, fairshare or backfill, not `{other}`"
        ),
    })
}

/// `node,at,repair` rows (a header first).
fn read_failures(file: &str, text: &str) -> Result<Vec<Failure>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let num = |v: &str| -> Result<f64> {
            v.parse()
                .with_context(|| format!("{file}, line {}: {v:?} is not a number", n + 1))
        };
        if f.len() != 3 {
            bail!("{file}, line {}: expected node,at,repair", n + 1);
        }
        out.push(Failure::new(f[0], num(f[1])?, num(f[2])?));
    }
    Ok(out)
}

fn read(path: &PathBuf) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn print_report(r: &SimReport) {
    println!(
        "{:?} ({:?}): {} jobs, {} completed; JCT avg {:.1} s, p50 {:.1} s, p99 {:.1} s; wait avg {:.1} s; makespan {:.1} s; GPU utilization {:.3}; Jain {:.3}, max share deviation {:.3}; {} preemptions, {} node failures ({} jobs requeued); simulated in {:.2} ms",
        r.policy,
        r.blocking,
        r.jobs,
        r.completed,
        r.avg_jct,
        r.p50_jct,
        r.p99_jct,
        r.avg_wait,
        r.makespan,
        r.gpu_utilization,
        r.jain_fairness,
        r.max_share_deviation,
        r.preemptions,
        r.node_failures,
        r.failure_requeues,
        r.wall_ms
    );
}

pub(crate) fn run(cmd: SchedCommand) -> Result<ExitCode> {
    match cmd {
        SchedCommand::Submit(a) => return super::jobs::submit(a),
        SchedCommand::Status(a) => super::jobs::status(a)?,
        SchedCommand::Why(a) => super::jobs::why(a)?,
        SchedCommand::Cancel(a) => super::jobs::cancel(a)?,
        SchedCommand::LocalRunner {
            state,
            idle_exit,
            capacity,
        } => super::jobs::local_runner(&state, idle_exit, capacity.as_deref())?,
        SchedCommand::Allocate {
            capacity,
            demand,
            policy,
            json,
        } => {
            if policy != "drf" {
                bail!("--policy must be drf, not `{policy}`");
            }
            let total = Resources::parse(&capacity)?;
            let demands = demand
                .iter()
                .map(|d| {
                    let (user, spec) = d
                        .split_once(':')
                        .with_context(|| format!("--demand `{d}`: expected USER:cpu=…,mem=…"))?;
                    Ok((user.to_string(), Resources::parse(spec)?))
                })
                .collect::<Result<Vec<_>>>()?;
            let a = drf::allocate(&total, &demands)?;
            if json {
                print_json(&a)?;
            } else {
                for x in &a {
                    println!(
                        "{}: {} tasks, {} allocated, dominant share {:.4}",
                        x.user, x.tasks, x.allocated, x.dominant_share
                    );
                }
            }
        }
        SchedCommand::Simulate {
            trace,
            trace_format,
            cluster,
            nodes,
            gpus_per_node,
            policy: p,
            tenants,
            failures,
            mtbf,
            repair,
            seed,
            report,
            prices,
            idle_timeout,
            preempt,
            skip,
            backfill,
            json,
        } => {
            let nodes = match (cluster, nodes) {
                (Some(c), None) if trace_format == "alibaba-v2023" => {
                    alibaba_nodes(&c.display().to_string(), &read(&c)?)?
                }
                (Some(c), None) => tiresias_cluster(&c.display().to_string(), &read(&c)?)?,
                (None, Some(n)) if n > 0 && gpus_per_node > 0 => uniform_nodes(n, gpus_per_node),
                (None, Some(_)) => bail!("--nodes and --gpus-per-node must be > 0"),
                _ => bail!("give exactly one of --cluster and --nodes"),
            };
            let first = nodes.first().context("the cluster has no nodes")?.clone();
            let name = trace.display().to_string();
            let jobs = match trace_format.as_str() {
                "tiresias" => tiresias_jobs(&name, &read(&trace)?, &first)?,
                "generic" => generic_jobs(&name, &read(&trace)?)?,
                "alibaba-v2023" => alibaba_jobs(&name, &read(&trace)?)?,
                other => bail!(
                    "--trace-format must be tiresias, alibaba-v2023 or generic, not `{other}`"
                ),
            };
            let pol = policy(&p)?;
            let blocking = match (skip, backfill || p == "backfill") {
                (true, true) => bail!("--skip does not go with EASY backfill"),
                (true, _) => Blocking::Skip,
                (_, true) => Blocking::Backfill,
                _ => Blocking::Strict,
            };
            let mut core = Core::new(nodes.clone(), pol, blocking)?;
            if pol == QueuePolicy::LeastAttainedService {
                core = core.with_las_thresholds(DEFAULT_LAS_THRESHOLDS.to_vec())?;
            }
            if let Some(t) = tenants {
                core =
                    core.with_tenants(Tenants::from_json(&t.display().to_string(), &read(&t)?)?)?;
            }
            let mut jobs = jobs;
            if preempt {
                core = core.with_preemption(true);
                for j in &mut jobs {
                    j.spec.preemptible = true;
                }
            }
            let failures = match (failures, mtbf) {
                (Some(f), _) => read_failures(&f.display().to_string(), &read(&f)?)?,
                (None, Some(m)) => {
                    let horizon = jobs.iter().map(|j| j.submit).fold(0.0, f64::max)
                        + jobs.iter().filter_map(|j| j.spec.duration).sum::<f64>();
                    random_failures(&nodes, horizon, m, repair, seed)?
                }
                (None, None) => Vec::new(),
            };
            let (r, runs) = replay_with(
                core,
                &jobs,
                &ReplayOptions::default()
                    .failures(failures)
                    .record_runs(report.is_some()),
            )?;
            if json {
                print_json(&r)?;
            } else {
                print_report(&r);
            }
            if let Some(dir) = report {
                let prices = match prices {
                    Some(p) => Prices::from_json(&p.display().to_string(), &read(&p)?)?,
                    None => Prices::default(),
                };
                let usage = account(
                    &nodes,
                    &runs,
                    &prices,
                    &PowerModel::default(),
                    idle_timeout,
                    100,
                )?;
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                let write = |name: &str, text: String| -> Result<()> {
                    let path = dir.join(name);
                    std::fs::write(&path, text)
                        .with_context(|| format!("cannot write {}", path.display()))
                };
                write("usage.json", serde_json::to_string_pretty(&usage)?)?;
                write("metrics.prom", usage.openmetrics())?;
                write(
                    "utilization.svg",
                    usage.svg(&format!(
                        "GPU utilization by tenant — {} ({:?})",
                        trace.display(),
                        r.policy
                    )),
                )?;
                if !json {
                    for t in &usage.tenants {
                        println!(
                            "  {}: {:.1} GPU-h, {:.1} core-h, cost {:.2}",
                            t.tenant, t.gpu_hours, t.cpu_hours, t.cost
                        );
                    }
                    println!(
                        "  energy {:.1} kWh always on, {:.1} kWh powering nodes off after {:.0} s idle (saves {:.1} kWh, {:.1} node-h off); report in {}",
                        usage.energy.always_on_kwh,
                        usage.energy.with_power_off_kwh,
                        idle_timeout,
                        usage.energy.saved_kwh,
                        usage.energy.node_hours_off,
                        dir.display()
                    );
                }
            }
        }
        SchedCommand::Generate {
            jobs,
            interarrival,
            median_duration,
            gpus_per_node,
            seed,
            out,
        } => {
            let mut p = Synthetic::default();
            p.jobs = jobs;
            p.mean_interarrival = interarrival;
            p.median_duration = median_duration;
            p.gpus_per_node = gpus_per_node;
            p.seed = seed;
            let trace = synthetic(&p)?;
            std::fs::write(&out, write_generic(&trace))
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!("{} jobs → {}", trace.len(), out.display());
        }
        SchedCommand::Bench { nodes, jobs, json } => {
            if nodes == 0 || jobs == 0 {
                bail!("--nodes and --jobs must be > 0");
            }
            let mut core = Core::new(uniform_nodes(nodes, 8), QueuePolicy::Fifo, Blocking::Skip)?;
            for i in 0..jobs {
                core.submit(
                    aistd_scheduler::JobSpec::new(format!("j{i}"), 1, Resources::new(4, 32_768, 1)),
                    0.0,
                )?;
            }
            let t = std::time::Instant::now();
            let placed = core.schedule(0.0).len();
            let secs = t.elapsed().as_secs_f64();
            let v = serde_json::json!({
                "nodes": nodes, "jobs": jobs, "placed": placed, "seconds": secs,
                "decisions_per_second": jobs as f64 / secs, "placements_per_second": placed as f64 / secs,
            });
            if json {
                print_json(&v)?;
            } else {
                println!(
                    "{jobs} queued single-GPU jobs on {nodes} nodes × 8 GPUs: {placed} placed in one pass of {:.1} ms — {:.0} decisions/s, {:.0} placements/s",
                    secs * 1000.0,
                    jobs as f64 / secs,
                    placed as f64 / secs
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
