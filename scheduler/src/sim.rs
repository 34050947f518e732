//! Virtual time: [`SimulatedPool`] (a [`ResourcePool`] whose clock you advance) and
//! [`simulate`], a discrete-event replay of a trace with the metrics people compare schedulers by.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::core::{Blocking, Core, QueuePolicy};
use crate::error::{Error, Result};
use crate::model::{Event, JobId, JobSpec, JobState, JobStatus, NodeSpec, NodeStatus};
use crate::pool::ResourcePool;
use crate::resources::Resources;

/// An f64 time ordered totally (times are finite and ≥ 0 here).
#[derive(Debug, Clone, Copy, PartialEq)]
struct T(f64);
impl Eq for T {}
impl PartialOrd for T {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for T {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&o.0)
    }
}

#[derive(Debug)]
struct SimState {
    core: Core,
    now: f64,
    /// (finish time, job) of running jobs with a known duration.
    finishing: BinaryHeap<Reverse<(T, JobId)>>,
    events: Vec<Event>,
}

impl SimState {
    fn start_ready(&mut self) -> Result<()> {
        for id in self.core.schedule(self.now) {
            self.events.push(Event {
                time: self.now,
                job: id,
                state: JobState::Running,
            });
            if let Some(d) = self.core.spec(id)?.duration {
                self.finishing.push(Reverse((T(self.now + d), id)));
            }
        }
        Ok(())
    }

    fn end(&mut self, id: JobId, state: JobState) -> Result<()> {
        let before = self.core.status(id)?.state;
        self.core.end(id, state, self.now)?;
        if !before.is_final() {
            self.events.push(Event {
                time: self.now,
                job: id,
                state,
            });
        }
        Ok(())
    }
}

/// A pool in virtual time: jobs with a `duration` complete when the clock passes their end.
/// Deterministic: the same calls give the same events.
#[derive(Debug)]
pub struct SimulatedPool {
    name: String,
    state: Mutex<SimState>,
}

impl SimulatedPool {
    /// A pool of `nodes`, scheduling by `policy`.
    pub fn new(
        name: &str,
        nodes: Vec<NodeSpec>,
        policy: QueuePolicy,
        blocking: Blocking,
    ) -> Result<Self> {
        Ok(Self {
            name: name.into(),
            state: Mutex::new(SimState {
                core: Core::new(nodes, policy, blocking)?,
                now: 0.0,
                finishing: BinaryHeap::new(),
                events: Vec::new(),
            }),
        })
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, SimState>> {
        self.state
            .lock()
            .map_err(|_| Error::invalid("simulated pool", "a thread panicked while holding it"))
    }

    /// The clock.
    pub fn now(&self) -> Result<f64> {
        Ok(self.lock()?.now)
    }

    /// Moves the clock to `to`, completing jobs on the way (and starting what then fits).
    pub fn advance(&self, to: f64) -> Result<()> {
        let mut s = self.lock()?;
        if !(to.is_finite() && to >= s.now) {
            return Err(Error::invalid(
                "advance",
                format!("{to} is before the clock ({})", s.now),
            ));
        }
        while let Some(Reverse((T(t), id))) = s.finishing.peek().copied() {
            if t > to {
                break;
            }
            s.finishing.pop();
            s.now = t;
            if s.core.status(id)?.state == JobState::Running {
                s.end(id, JobState::Completed)?;
                s.start_ready()?;
            }
        }
        s.now = to;
        Ok(())
    }

    /// Advances until no job with a known duration is running; returns the clock.
    pub fn run_until_idle(&self) -> Result<f64> {
        loop {
            let next = self.lock()?.finishing.peek().map(|Reverse((T(t), _))| *t);
            match next {
                Some(t) => self.advance(t)?,
                None => return self.now(),
            }
        }
    }
}

impl ResourcePool for SimulatedPool {
    fn name(&self) -> &str {
        &self.name
    }

    fn nodes(&self) -> Result<Vec<NodeStatus>> {
        Ok(self.lock()?.core.nodes())
    }

    fn submit(&self, job: JobSpec) -> Result<JobId> {
        let mut s = self.lock()?;
        let now = s.now;
        let id = s.core.submit(job, now)?;
        s.events.push(Event {
            time: now,
            job: id,
            state: JobState::Pending,
        });
        s.start_ready()?;
        Ok(id)
    }

    fn status(&self, id: JobId) -> Result<JobStatus> {
        self.lock()?.core.status(id)
    }

    fn cancel(&self, id: JobId) -> Result<()> {
        let mut s = self.lock()?;
        s.end(id, JobState::Cancelled)?;
        s.start_ready()
    }

    fn estimated_start(&self, id: JobId) -> Result<Option<f64>> {
        let s = self.lock()?;
        s.core.estimate_start(id, s.now)
    }

    fn events(&self, since: usize) -> Result<Vec<Event>> {
        Ok(self
            .lock()?
            .events
            .get(since..)
            .unwrap_or_default()
            .to_vec())
    }
}

/// A job of a trace: when it arrives and what it asks for (with its true `duration`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TraceJob {
    /// Arrival time, seconds.
    pub submit: f64,
    /// The job; `duration` must be set.
    pub spec: JobSpec,
}

impl TraceJob {
    /// A job arriving at `submit`.
    pub fn new(submit: f64, spec: JobSpec) -> Self {
        Self { submit, spec }
    }
}

/// What a replay measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SimReport {
    /// The policy.
    pub policy: QueuePolicy,
    /// The blocking rule.
    pub blocking: Blocking,
    /// Jobs in the trace.
    pub jobs: usize,
    /// Jobs completed.
    pub completed: usize,
    /// Mean job completion time (finish − submit), seconds.
    pub avg_jct: f64,
    /// Median JCT.
    pub p50_jct: f64,
    /// 99th-percentile JCT.
    pub p99_jct: f64,
    /// Mean queueing delay (start − submit).
    pub avg_wait: f64,
    /// Last finish − first submit.
    pub makespan: f64,
    /// GPU-seconds used / (GPUs × makespan).
    pub gpu_utilization: f64,
    /// Jain's index over tenants' mean slowdown (JCT / duration): 1 is perfectly even.
    pub jain_fairness: f64,
    /// Times a running job was put back in the queue by the policy.
    pub preemptions: u64,
    /// The largest gap between a tenant's share of the GPU-seconds used and its fair share
    /// (its weight over the weights of the tenants in the trace; equal without tenants). It
    /// ignores that a tenant may want less than its share.
    pub max_share_deviation: f64,
    /// Node failures replayed.
    pub node_failures: u64,
    /// Jobs requeued because their node failed.
    pub failure_requeues: u64,
    /// Wall-clock time of the simulation, milliseconds.
    pub wall_ms: f64,
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// Jain's fairness index of `x`: (Σx)² / (n·Σx²).
pub fn jain(x: &[f64]) -> f64 {
    let s: f64 = x.iter().sum();
    let s2: f64 = x.iter().map(|v| v * v).sum();
    if x.is_empty() || s2 == 0.0 {
        1.0
    } else {
        s * s / (x.len() as f64 * s2)
    }
}

enum Ev {
    /// Completions sort before arrivals at the same time, so freed resources are seen; the
    /// version tells a completion from one made stale by a preemption.
    Done(JobId, u64),
    Arrive(usize),
    /// A node fails / is repaired (index into the failures).
    Fail(usize),
    Repair(usize),
    /// A moment to re-rank (a running job crosses a LAS threshold).
    Tick,
}

/// Replays `jobs` on `nodes` under `policy`: arrivals and completions in time order, one
/// scheduling pass after all events of an instant. Deterministic. A job that can never fit is an
/// error naming it.
pub fn simulate(
    nodes: Vec<NodeSpec>,
    jobs: &[TraceJob],
    policy: QueuePolicy,
    blocking: Blocking,
) -> Result<SimReport> {
    let core = Core::new(nodes, policy, blocking)?;
    let core = if policy == QueuePolicy::LeastAttainedService {
        core.with_las_thresholds(DEFAULT_LAS_THRESHOLDS.to_vec())?
    } else {
        core
    };
    replay(core, jobs)
}

/// Tiresias' default 2D-LAS queue boundaries (`queue_limit` of its simulator, three queues), in
/// GPU-seconds as its `dlas-gpu` scheduler counts them.
pub const DEFAULT_LAS_THRESHOLDS: &[f64] = &[3250.0, 7200.0];

/// Replays `jobs` on a configured core (LAS thresholds, say). Under
/// [`QueuePolicy::LeastAttainedService`] the replay is preemptive: at every event, and whenever
/// a running job crosses a LAS threshold while others wait, running jobs are ranked afresh with
/// the waiting ones and those that lose their place are preempted (free of cost, keeping their
/// attained service and remaining time), as Tiresias' simulator does.
pub fn replay(core: Core, jobs: &[TraceJob]) -> Result<SimReport> {
    replay_with(core, jobs, &ReplayOptions::default()).map(|(r, _)| r)
}

/// A node failure in a replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Failure {
    /// The node.
    pub node: String,
    /// When it fails, seconds.
    pub at: f64,
    /// Seconds until it is repaired.
    pub repair: f64,
}

impl Failure {
    /// `node` fails at `at` and is back `repair` seconds later.
    pub fn new(node: impl Into<String>, at: f64, repair: f64) -> Self {
        Self {
            node: node.into(),
            at,
            repair,
        }
    }
}

/// What else a replay does.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct ReplayOptions {
    /// Node failures: the node is drained (Unhealthy) and the jobs on it requeued, whole gangs,
    /// keeping the progress they made (as if checkpointed); it comes back after its repair time.
    pub failures: Vec<Failure>,
    /// Whether to return every run (for [`crate::accounting`]).
    pub record_runs: bool,
}

impl ReplayOptions {
    /// With these failures.
    pub fn failures(mut self, failures: Vec<Failure>) -> Self {
        self.failures = failures;
        self
    }

    /// Returning the runs.
    pub fn record_runs(mut self, yes: bool) -> Self {
        self.record_runs = yes;
        self
    }
}

/// One stretch of a job running: from start (or resumption) to completion (or preemption).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Run {
    /// The job's name.
    pub job: String,
    /// Its tenant.
    pub tenant: String,
    /// When it started, seconds.
    pub start: f64,
    /// When it stopped.
    pub end: f64,
    /// Resources of each task.
    pub per_task: Resources,
    /// Tasks per node.
    pub placement: Vec<(String, u32)>,
}

/// [`replay`], also returning every run of every job, for utilization, cost and energy
/// accounting ([`crate::accounting`]).
pub fn replay_runs(core: Core, jobs: &[TraceJob]) -> Result<(SimReport, Vec<Run>)> {
    replay_with(core, jobs, &ReplayOptions::default().record_runs(true))
}

/// Per-job bookkeeping of a replay: run segments, remaining work, speed, and the events queue.
struct Book<'a> {
    jobs: &'a [TraceJob],
    record: bool,
    runs: Vec<Run>,
    open: Vec<Option<usize>>,
    remaining: Vec<f64>,
    /// The start of the current run segment, and a version that invalidates stale completions.
    segment: Vec<Option<f64>>,
    version: Vec<u64>,
    /// Speed relative to the minimum gang: an elastic job with k of its `tasks` minimum runs
    /// k / tasks times as fast (its duration is at the minimum).
    rate: Vec<f64>,
    gpu_seconds: f64,
    /// Each job's tenant, as an index into `tenants` / `tenant_gpu`.
    tenant_of: Vec<usize>,
    tenants: Vec<&'a str>,
    tenant_gpu: Vec<f64>,
    // (time, kind: 0 done or node event / 1 arrive / 2 tick, seq) → event.
    heap: BinaryHeap<Reverse<(T, u8, u64)>>,
    evs: Vec<Ev>,
}

impl<'a> Book<'a> {
    fn push(&mut self, t: f64, kind: u8, ev: Ev) {
        self.evs.push(ev);
        self.heap
            .push(Reverse((T(t), kind, self.evs.len() as u64 - 1)));
    }

    /// Ends job `i`'s current segment at `now`: its service, GPU-seconds and remaining work are
    /// accounted, its run closed, its pending completion invalidated.
    fn stop(&mut self, core: &mut Core, i: usize, id: JobId, now: f64) -> Result<()> {
        let ran = now - self.segment[i].unwrap_or(now);
        let g = self.jobs[i].spec.total().gpu_milli as f64 / 1000.0 * self.rate[i];
        self.gpu_seconds += g * ran;
        self.tenant_gpu[self.tenant_of[i]] += g * ran;
        core.add_service(id, g * ran)?;
        self.remaining[i] -= ran * self.rate[i];
        self.segment[i] = None;
        if let Some(r) = self.open[i].take() {
            self.runs[r].end = now;
        }
        self.version[i] += 1;
        Ok(())
    }

    /// Starts a segment of job `i` at `now` at its current size, and schedules its completion.
    fn go(&mut self, core: &Core, i: usize, id: JobId, now: f64) -> Result<()> {
        if let Some(r) = self.open[i].take() {
            self.runs[r].end = now;
        }
        self.segment[i] = Some(now);
        self.rate[i] = f64::from(core.tasks_now(id)?) / f64::from(self.jobs[i].spec.tasks);
        if self.record {
            self.open[i] = Some(self.runs.len());
            self.runs.push(Run {
                job: self.jobs[i].spec.name.clone(),
                tenant: self.jobs[i].spec.tenant.clone(),
                start: now,
                end: f64::NAN,
                per_task: self.jobs[i].spec.per_task.clone(),
                placement: core.status(id)?.placement,
            });
        }
        self.version[i] += 1;
        let end = now + self.remaining[i].max(0.0) / self.rate[i];
        self.push(end, 0, Ev::Done(id, self.version[i]));
        Ok(())
    }
}

/// [`replay`] with node failures and, if asked, the runs.
pub fn replay_with(
    mut core: Core,
    jobs: &[TraceJob],
    options: &ReplayOptions,
) -> Result<(SimReport, Vec<Run>)> {
    let wall = Instant::now();
    let (policy, blocking) = (core.policy(), core.blocking());
    let total_gpu = core.capacity_total().gpu_milli as f64 / 1000.0;
    let mut tenants: Vec<&str> = jobs.iter().map(|j| j.spec.tenant.as_str()).collect();
    tenants.sort_unstable();
    tenants.dedup();
    let tenant_of = jobs
        .iter()
        .map(|j| tenants.binary_search(&j.spec.tenant.as_str()).unwrap_or(0))
        .collect();
    let mut b = Book {
        jobs,
        record: options.record_runs,
        runs: Vec::new(),
        open: vec![None; jobs.len()],
        remaining: jobs
            .iter()
            .map(|j| j.spec.duration.unwrap_or(0.0))
            .collect(),
        segment: vec![None; jobs.len()],
        version: vec![0; jobs.len()],
        rate: vec![1.0; jobs.len()],
        gpu_seconds: 0.0,
        tenant_gpu: vec![0.0; tenants.len()],
        tenant_of,
        tenants,
        heap: BinaryHeap::new(),
        evs: Vec::new(),
    };
    for (i, j) in jobs.iter().enumerate() {
        if j.spec.duration.is_none() {
            return Err(Error::invalid(
                format!("trace job {:?}", j.spec.name),
                "has no duration",
            ));
        }
        if !(j.submit.is_finite() && j.submit >= 0.0) {
            return Err(Error::invalid(
                format!("trace job {:?}", j.spec.name),
                format!("submit time {} must be ≥ 0", j.submit),
            ));
        }
        b.push(j.submit, 1, Ev::Arrive(i));
    }
    let known: std::collections::HashSet<String> =
        core.nodes().into_iter().map(|n| n.spec.name).collect();
    for (k, f) in options.failures.iter().enumerate() {
        if !known.contains(&f.node) {
            return Err(Error::invalid(
                format!("failure {k}"),
                format!("node {:?} is not in the cluster", f.node),
            ));
        }
        if !(f.at.is_finite() && f.at >= 0.0 && f.repair.is_finite() && f.repair >= 0.0) {
            return Err(Error::invalid(
                format!("failure {k} of {:?}", f.node),
                format!("time {} and repair {} must be ≥ 0", f.at, f.repair),
            ));
        }
        b.push(f.at, 0, Ev::Fail(k));
        b.push(f.at + f.repair, 0, Ev::Repair(k));
    }
    let (mut node_failures, mut failure_requeues, mut preemptions) = (0u64, 0u64, 0u64);
    let mut by_id: std::collections::HashMap<JobId, usize> = std::collections::HashMap::new();
    let mut start = vec![f64::NAN; jobs.len()];
    let mut finish = vec![f64::NAN; jobs.len()];
    let preemptive = policy == QueuePolicy::LeastAttainedService;
    let elastic = jobs.iter().any(|j| j.spec.max_tasks.is_some());
    while let Some(Reverse((T(now), _, _))) = b.heap.peek().copied() {
        while let Some(Reverse((T(t), _, e))) = b.heap.peek().copied() {
            if t != now {
                break;
            }
            b.heap.pop();
            match b.evs[e as usize] {
                Ev::Arrive(i) => {
                    let id = core.submit(jobs[i].spec.clone(), now)?;
                    by_id.insert(id, i);
                }
                Ev::Done(id, v) => {
                    let i = by_id[&id];
                    if v == b.version[i] && b.segment[i].is_some() {
                        b.stop(&mut core, i, id, now)?;
                        b.remaining[i] = 0.0;
                        core.end(id, JobState::Completed, now)?;
                        finish[i] = now;
                    }
                }
                Ev::Fail(k) => {
                    node_failures += 1;
                    let node = &options.failures[k].node;
                    for v in core.set_health(node, crate::health::NodeHealth::Unhealthy)? {
                        b.stop(&mut core, by_id[&v], v, now)?;
                        failure_requeues += 1;
                    }
                }
                Ev::Repair(k) => {
                    core.set_health(
                        &options.failures[k].node,
                        crate::health::NodeHealth::Healthy,
                    )?;
                }
                Ev::Tick => {}
            }
        }
        let mut was_running = Vec::new();
        if preemptive && core.pending() > 0 {
            // Account the service of every running job, then rank everything afresh: put all
            // running jobs back and let one pass choose (Tiresias' priority walk).
            for id in core.running() {
                b.stop(&mut core, by_id[&id], id, now)?;
                core.preempt(id)?;
                was_running.push(id);
            }
        }
        let mut started = core.schedule(now);
        preemptions += was_running
            .iter()
            .filter(|id| !started.contains(id))
            .count() as u64;
        if core.preemption() && !preemptive {
            // Priority and fair-share preemption: evict for the head of the queue while that
            // lets it start (each round starts one job, so this ends).
            for _ in 0..=core.pending() {
                let (victims, head) = core.preempt_for(now)?;
                let Some(head) = head else { break };
                for v in victims {
                    b.stop(&mut core, by_id[&v], v, now)?;
                    preemptions += 1;
                }
                started.push(head);
            }
            // A job started in this instant may have been evicted in it.
            started.retain(|id| core.status(*id).is_ok_and(|s| s.state == JobState::Running));
        }
        if elastic {
            let (changed, more) = core.resize(now)?;
            started.extend(more);
            for (id, _, _) in changed {
                let i = by_id[&id];
                if started.contains(&id) || b.segment[i].is_none() {
                    continue;
                }
                // Account the stretch at the old size, then go on at the new one.
                b.stop(&mut core, i, id, now)?;
                b.go(&core, i, id, now)?;
            }
        }
        for id in started {
            let i = by_id[&id];
            if start[i].is_nan() {
                start[i] = now;
            }
            b.go(&core, i, id, now)?;
        }
        if preemptive && core.pending() > 0 {
            // Re-rank when the next running job crosses into a lower-priority queue.
            let next = core
                .running()
                .iter()
                .filter_map(|id| {
                    let i = by_id[id];
                    let g = jobs[i].spec.total().gpu_milli as f64 / 1000.0;
                    let a = core.attained(*id).ok()?;
                    let t = core.las_thresholds().iter().find(|t| **t > a)?;
                    (g > 0.0).then(|| now + (t - a) / g)
                })
                .fold(f64::INFINITY, f64::min);
            if next.is_finite() && next > now {
                b.push(next, 2, Ev::Tick);
            }
        }
    }
    let done: Vec<usize> = (0..jobs.len()).filter(|i| !finish[*i].is_nan()).collect();
    let mut jct: Vec<f64> = done.iter().map(|i| finish[*i] - jobs[*i].submit).collect();
    let avg_wait = done
        .iter()
        .map(|i| start[*i] - jobs[*i].submit)
        .sum::<f64>()
        / done.len().max(1) as f64;
    let first = jobs.iter().map(|j| j.submit).fold(f64::INFINITY, f64::min);
    let last = done.iter().map(|i| finish[*i]).fold(0.0, f64::max);
    let makespan = if done.is_empty() { 0.0 } else { last - first };
    let mut tenants: std::collections::BTreeMap<&str, (f64, usize)> = Default::default();
    for i in &done {
        let d = jobs[*i].spec.duration.unwrap_or(0.0).max(1e-9);
        let e = tenants.entry(jobs[*i].spec.tenant.as_str()).or_default();
        e.0 += (finish[*i] - jobs[*i].submit) / d;
        e.1 += 1;
    }
    let slowdowns: Vec<f64> = tenants.values().map(|(s, n)| s / *n as f64).collect();
    let avg_jct = jct.iter().sum::<f64>() / jct.len().max(1) as f64;
    jct.sort_by(f64::total_cmp);
    // Zero-length runs (started and preempted in one instant) carry no usage.
    let mut runs = b.runs;
    runs.retain(|r| r.end > r.start);
    let report = SimReport {
        policy,
        blocking,
        jobs: jobs.len(),
        completed: done.len(),
        avg_jct,
        p50_jct: percentile(&jct, 50.0),
        p99_jct: percentile(&jct, 99.0),
        avg_wait,
        makespan,
        gpu_utilization: if makespan > 0.0 && total_gpu > 0.0 {
            b.gpu_seconds / (total_gpu * makespan)
        } else {
            0.0
        },
        jain_fairness: jain(&slowdowns),
        preemptions,
        max_share_deviation: {
            let used: f64 = b.tenant_gpu.iter().sum();
            let weights: f64 = b.tenants.iter().map(|t| core.tenant_weight(t)).sum();
            b.tenants
                .iter()
                .zip(&b.tenant_gpu)
                .map(|(t, g)| {
                    let share = if used > 0.0 { g / used } else { 0.0 };
                    (share - core.tenant_weight(t) / weights).abs()
                })
                .fold(0.0, f64::max)
        },
        node_failures,
        failure_requeues,
        wall_ms: wall.elapsed().as_secs_f64() * 1000.0,
    };
    Ok((report, runs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Resources;

    fn nodes(n: usize, gpus: u64) -> Vec<NodeSpec> {
        (0..n)
            .map(|i| NodeSpec::new(format!("n{i}"), Resources::new(32, 64_000, gpus)))
            .collect()
    }

    #[test]
    fn pool_runs_jobs_in_virtual_time() {
        let p = SimulatedPool::new("sim", nodes(1, 2), QueuePolicy::Fifo, Blocking::Strict)
            .expect("pool");
        let a = p
            .submit(JobSpec::new("a", 1, Resources::new(1, 1000, 2)).duration(10.0))
            .expect("a");
        let b = p
            .submit(JobSpec::new("b", 1, Resources::new(1, 1000, 1)).duration(5.0))
            .expect("b");
        assert_eq!(p.status(a).expect("s").state, JobState::Running);
        assert_eq!(p.status(b).expect("s").state, JobState::Pending);
        p.advance(10.0).expect("advance");
        assert_eq!(p.status(a).expect("s").state, JobState::Completed);
        assert_eq!(p.status(b).expect("s").started, Some(10.0));
        assert_eq!(p.run_until_idle().expect("idle"), 15.0);
        let ev = p.events(0).expect("events");
        assert_eq!(ev.len(), 6);
        assert!(ev.windows(2).all(|w| w[0].time <= w[1].time));
        assert!(p.advance(1.0).is_err());
    }

    #[test]
    fn simulation_metrics_on_a_hand_checked_trace() {
        // One 1-GPU node; jobs of 10 s and 1 s arrive at 0: FIFO JCTs 10 and 11, SJF 1 and 11.
        let jobs = vec![
            TraceJob::new(
                0.0,
                JobSpec::new("long", 1, Resources::new(1, 100, 1))
                    .duration(10.0)
                    .estimate(10.0),
            ),
            TraceJob::new(
                0.0,
                JobSpec::new("short", 1, Resources::new(1, 100, 1))
                    .duration(1.0)
                    .estimate(1.0),
            ),
        ];
        let fifo = simulate(nodes(1, 1), &jobs, QueuePolicy::Fifo, Blocking::Strict).expect("fifo");
        let sjf = simulate(
            nodes(1, 1),
            &jobs,
            QueuePolicy::ShortestJobFirst,
            Blocking::Strict,
        )
        .expect("sjf");
        assert_eq!((fifo.avg_jct, sjf.avg_jct), (10.5, 6.0));
        assert_eq!((fifo.makespan, fifo.completed), (11.0, 2));
        assert!((fifo.gpu_utilization - 1.0).abs() < 1e-12);
        assert_eq!(fifo.p99_jct, 11.0);
        assert!((jain(&[1.0, 1.0]) - 1.0).abs() < 1e-12 && (jain(&[1.0, 0.0]) - 0.5).abs() < 1e-12);
        // LAS: a 10,000 s job runs alone until it has 3,250 GPU-s, then a 100 s job that arrived
        // at 10 s preempts it (FIFO: JCTs 10,000 and 10,090; LAS: 3,340 and 10,100).
        let pair = vec![
            TraceJob::new(
                0.0,
                JobSpec::new("long", 1, Resources::new(1, 100, 1)).duration(10_000.0),
            ),
            TraceJob::new(
                10.0,
                JobSpec::new("short", 1, Resources::new(1, 100, 1)).duration(100.0),
            ),
        ];
        let fifo = simulate(nodes(1, 1), &pair, QueuePolicy::Fifo, Blocking::Strict).expect("fifo");
        let las = simulate(
            nodes(1, 1),
            &pair,
            QueuePolicy::LeastAttainedService,
            Blocking::Skip,
        )
        .expect("las");
        assert_eq!(fifo.avg_jct, 10_045.0);
        assert_eq!(
            (las.avg_jct, las.preemptions, las.makespan),
            (6_720.0, 1, 10_100.0)
        );
        assert!((las.gpu_utilization - 1.0).abs() < 1e-12);
        let too_big = vec![TraceJob::new(
            0.0,
            JobSpec::new("x", 1, Resources::new(1, 1, 4)).duration(1.0),
        )];
        assert!(matches!(
            simulate(nodes(1, 1), &too_big, QueuePolicy::Fifo, Blocking::Strict),
            Err(Error::NeverFits { .. })
        ));
    }
}
