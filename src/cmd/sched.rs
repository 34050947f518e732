//! `aistd sched`: DRF allocation and trace simulation.

use std::path::PathBuf;
use std::process::ExitCode;

use aistd_scheduler::drf;
use aistd_scheduler::sim::{SimReport, simulate};
use aistd_scheduler::trace::{tiresias_cluster, tiresias_jobs};
use aistd_scheduler::{Blocking, QueuePolicy, Resources};
use anyhow::{Context, Result, bail};
use clap::Subcommand;

use crate::print_json;

/// `aistd sched` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum SchedCommand {
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
        /// Trace format (only `tiresias` for now).
        #[arg(long, default_value = "tiresias")]
        trace_format: String,
        /// Cluster spec (Tiresias: num_switch,num_node_p_switch,num_gpu_p_node,num_cpu_p_node,mem_p_node).
        #[arg(long)]
        cluster: PathBuf,
        /// `fifo`, `priority`, `sjf` or `las` (Tiresias' 2D-LAS, preemptive).
        #[arg(long, default_value = "fifo")]
        policy: String,
        /// Let later jobs start when the head of the queue does not fit (else strict order).
        #[arg(long)]
        skip: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn policy(name: &str) -> Result<QueuePolicy> {
    Ok(match name {
        "fifo" => QueuePolicy::Fifo,
        "priority" => QueuePolicy::Priority,
        "sjf" => QueuePolicy::ShortestJobFirst,
        other => bail!(
            "--policy must be fifo, priority or sjf (las, drf, fairshare and backfill are not built yet), not `{other}`"
        ),
    })
}

fn read(path: &PathBuf) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn print_report(r: &SimReport) {
    println!(
        "{:?} ({:?}): {} jobs, {} completed; JCT avg {:.1} s, p50 {:.1} s, p99 {:.1} s; wait avg {:.1} s; makespan {:.1} s; GPU utilization {:.3}; Jain {:.3}; simulated in {:.2} ms",
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
        r.wall_ms
    );
}

pub(crate) fn run(cmd: SchedCommand) -> Result<ExitCode> {
    match cmd {
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
            policy: p,
            skip,
            json,
        } => {
            if trace_format != "tiresias" {
                bail!(
                    "--trace-format must be tiresias (alibaba-v2023 and generic are not built yet), not `{trace_format}`"
                );
            }
            let nodes = tiresias_cluster(&cluster.display().to_string(), &read(&cluster)?)?;
            let first = nodes.first().context("the cluster has no nodes")?.clone();
            let jobs = tiresias_jobs(&trace.display().to_string(), &read(&trace)?, &first)?;
            let r = simulate(
                nodes,
                &jobs,
                policy(&p)?,
                if skip {
                    Blocking::Skip
                } else {
                    Blocking::Strict
                },
            )?;
            if json {
                print_json(&r)?;
            } else {
                print_report(&r);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
