//! The scheduling core: a queue ordered by policy, best-fit placement of whole gangs, and the
//! reasons a job waits. It knows no clock; pools and the simulator drive it.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::health::NodeHealth;
use crate::model::{JobId, JobSpec, JobState, JobStatus, NodeSpec, NodeStatus, PendingReason};
use crate::resources::Resources;
use crate::tenants::{Tenants, first_excess, within};

/// The order in which pending jobs are considered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueuePolicy {
    /// First come, first served.
    Fifo,
    /// Highest priority first, then first come.
    Priority,
    /// Shortest run-time estimate first (jobs without one last), then first come.
    ShortestJobFirst,
    /// Least attained service first (Tiresias' discretized 2D-LAS): jobs are ranked by the
    /// queue their attained GPU-seconds fall in (the core's LAS thresholds), then first come.
    /// Meant to be used with preemption: the driver adds service and preempts (see
    /// [`crate::sim::simulate`]).
    LeastAttainedService,
    /// Dominant Resource Fairness across tenants (Ghodsi et al., NSDI 2011), weighted and
    /// hierarchical: the next job comes from the tenant whose dominant share of what it holds
    /// now, divided by its weight, is lowest — compared level by level down the tenant tree
    /// ([`crate::tenants`]). Tenants within their guarantee come first. Each tenant's own
    /// jobs go first come, first served.
    DominantResourceFairness,
    /// Weighted fair share over time: as DRF, but tenants are ranked by the dominant-share-seconds
    /// they have consumed so far, divided by their weight — the order Slurm's fair-share factor
    /// 2^(−U/S) gives ([`crate::fairshare`]) without its decay.
    FairShare,
}

/// What happens when the job at the head of the order does not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Blocking {
    /// Nothing behind it starts (Slurm's main scheduling loop without backfill): no starvation
    /// of large jobs.
    Strict,
    /// Any later job that fits starts (Kubernetes' default): higher utilization, large jobs can
    /// starve.
    Skip,
    /// EASY backfill (Lifka 1995; Slurm's `sched/backfill`): the first job that does not fit gets
    /// a reservation at the earliest time running jobs' estimates free enough for it; a later job
    /// starts only if it fits now and either ends (by its estimate) before that time or leaves
    /// enough for the reservation. Without estimates to plan with, it behaves as `Strict`.
    Backfill,
}

/// Where the tasks of a job go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Placement {
    /// Best fit: the node with the least free GPU (then CPU) that holds the task, so whole
    /// nodes stay free for large gangs. Gangs go on one node if one holds them all, else under
    /// one switch if one switch holds them all (fewest nodes first), else anywhere.
    #[default]
    BestFit,
    /// Spread: the node with the most free GPU (then CPU), one task after another — for
    /// fault isolation and memory-bandwidth-bound tasks.
    Spread,
}

/// One task's GPU grant: (device index, thousandths of it).
type Grant = Vec<(usize, u64)>;

#[derive(Debug, Clone)]
struct NodeState {
    spec: NodeSpec,
    free: Resources,
    health: NodeHealth,
    /// Thousandths of each GPU device still free: fractions pack on one device.
    devices: Vec<u64>,
}

/// The GPU devices of a node with `gpu_milli` of GPU: whole devices, and a last partial one.
fn devices_of(gpu_milli: u64) -> Vec<u64> {
    let mut d = vec![1000; (gpu_milli / 1000) as usize];
    if !gpu_milli.is_multiple_of(1000) {
        d.push(gpu_milli % 1000);
    }
    d
}

/// How many tasks needing `need` thousandths of a GPU fit on `devices`: fractions of one GPU
/// share a device; whole GPUs take whole free devices.
fn gpu_tasks(devices: &[u64], need: u64) -> u64 {
    if need == 0 {
        u64::MAX
    } else if need < 1000 {
        devices.iter().map(|f| f / need).sum()
    } else {
        devices.iter().filter(|f| **f >= 1000).count() as u64 / need.div_ceil(1000)
    }
}

/// How many tasks of `t` fit on a node with `free` and `devices`.
fn node_tasks(t: &Resources, free: &Resources, devices: &[u64]) -> u64 {
    let fit = |need: u64, have: u64| have.checked_div(need).unwrap_or(u64::MAX);
    let mut n = fit(t.cpu_milli, free.cpu_milli).min(fit(t.memory_mib, free.memory_mib));
    if n == 0 {
        return 0;
    }
    for (k, v) in &t.custom {
        n = n.min(fit(*v, free.custom.get(k).copied().unwrap_or(0)));
    }
    n.min(gpu_tasks(devices, t.gpu_milli))
}

#[derive(Debug, Clone)]
struct Job {
    spec: JobSpec,
    state: JobState,
    seq: u64,
    submitted: f64,
    started: Option<f64>,
    finished: Option<f64>,
    /// (node index, tasks) while running.
    placement: Vec<(usize, u32)>,
    /// Per task while running: its node and GPU grant.
    grants: Vec<(usize, Grant)>,
    /// GPU-seconds (thousandths of a GPU × seconds / 1000) received so far.
    attained: f64,
}

/// An elastic job's change of size: (job, tasks before, tasks after).
pub type Resized = (JobId, u32, u32);

/// A totally ordered time, for heaps.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Time(f64);
impl Eq for Time {}
impl PartialOrd for Time {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Time {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// The queue key: smaller runs first.
type Key = (i64, u64, JobId);

/// Cluster state, queue and placement.
#[derive(Debug, Clone)]
pub struct Core {
    nodes: Vec<NodeState>,
    /// (free GPU milli, free CPU milli, node): best fit is the first that fits from `need`.
    by_free: BTreeSet<(u64, u64, usize)>,
    jobs: HashMap<JobId, Job>,
    pending: BTreeSet<Key>,
    policy: QueuePolicy,
    blocking: Blocking,
    next: JobId,
    /// Attained-service boundaries (GPU-seconds) between LAS queues, increasing.
    las_thresholds: Vec<f64>,
    /// Distinct node shapes (capacity, GPU model) and how many nodes have each: the empty-cluster
    /// check at submit is O(shapes), not O(nodes).
    shapes: Vec<(Resources, Option<String>, u64)>,
    /// Everything the cluster has.
    total: Resources,
    /// Whether drivers should call [`Core::preempt_for`].
    preemption: bool,
    placement: Placement,
    /// Node indices under each switch (nodes that name one).
    switches: Vec<(String, Vec<usize>)>,
    tenants: Tenants,
    /// What each tenant (and each ancestor) holds now.
    usage: HashMap<String, Resources>,
    /// Dominant-share-seconds each tenant (and ancestor) has consumed, up to `accrued_at`.
    consumed: HashMap<String, f64>,
    accrued_at: f64,
    /// Pending jobs per tenant, in queue order.
    by_tenant: HashMap<String, BTreeSet<Key>>,
    /// Each tenant seen so far: its path from the top of the hierarchy.
    paths: HashMap<String, Vec<String>>,
}

/// Lexicographic order of tenant ranks: (tier, shares along the tenant path).
fn rank_cmp(a: &(u8, Vec<f64>), b: &(u8, Vec<f64>)) -> std::cmp::Ordering {
    a.0.cmp(&b.0).then_with(|| {
        for (x, y) in a.1.iter().zip(&b.1) {
            let o = x.total_cmp(y);
            if o.is_ne() {
                return o;
            }
        }
        a.1.len().cmp(&b.1.len())
    })
}

impl Core {
    /// A core over `nodes` (unique names).
    pub fn new(nodes: Vec<NodeSpec>, policy: QueuePolicy, blocking: Blocking) -> Result<Self> {
        let mut seen = std::collections::HashSet::new();
        if let Some(n) = nodes.iter().find(|n| !seen.insert(n.name.clone())) {
            return Err(Error::invalid(format!("node {:?}", n.name), "listed twice"));
        }
        let nodes: Vec<NodeState> = nodes
            .into_iter()
            .map(|spec| NodeState {
                free: spec.capacity.clone(),
                devices: devices_of(spec.capacity.gpu_milli),
                spec,
                health: NodeHealth::Healthy,
            })
            .collect();
        let by_free = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.free.gpu_milli, n.free.cpu_milli, i))
            .collect();
        let mut shapes: Vec<(Resources, Option<String>, u64)> = Vec::new();
        for n in &nodes {
            match shapes
                .iter_mut()
                .find(|(c, m, _)| *c == n.spec.capacity && *m == n.spec.gpu_model)
            {
                Some(s) => s.2 += 1,
                None => shapes.push((n.spec.capacity.clone(), n.spec.gpu_model.clone(), 1)),
            }
        }
        let total = nodes
            .iter()
            .fold(Resources::zero(), |a, n| a.plus(&n.spec.capacity));
        let mut switches: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            if let Some(sw) = &n.spec.switch {
                match switches.iter_mut().find(|(s, _)| s == sw) {
                    Some((_, v)) => v.push(i),
                    None => switches.push((sw.clone(), vec![i])),
                }
            }
        }
        Ok(Self {
            nodes,
            by_free,
            jobs: HashMap::new(),
            pending: BTreeSet::new(),
            policy,
            blocking,
            next: 1,
            las_thresholds: Vec::new(),
            shapes,
            total,
            preemption: false,
            placement: Placement::BestFit,
            switches,
            tenants: Tenants::default(),
            usage: HashMap::new(),
            consumed: HashMap::new(),
            accrued_at: 0.0,
            by_tenant: HashMap::new(),
            paths: HashMap::new(),
        })
    }

    /// Configures tenants: weights and hierarchy for the DRF and fair-share policies, and
    /// guarantees and limits under every policy. Only before the first job.
    pub fn with_tenants(mut self, tenants: Tenants) -> Result<Self> {
        if !self.jobs.is_empty() {
            return Err(Error::invalid("tenants", "set them before submitting jobs"));
        }
        self.tenants = tenants;
        Ok(self)
    }

    /// Sets the placement rule (default best fit).
    pub fn with_placement(mut self, placement: Placement) -> Self {
        self.placement = placement;
        self
    }

    /// Turns preemption on for drivers (the simulator calls [`Core::preempt_for`] after each
    /// scheduling pass when it is on).
    pub fn with_preemption(mut self, on: bool) -> Self {
        self.preemption = on;
        self
    }

    /// Whether preemption is on.
    pub fn preemption(&self) -> bool {
        self.preemption
    }

    /// A tenant's weight (1 when not configured).
    pub fn tenant_weight(&self, tenant: &str) -> f64 {
        self.tenants.weight(tenant)
    }

    /// What a tenant (or an ancestor: its teams' sum) holds now.
    pub fn tenant_usage(&self, tenant: &str) -> Resources {
        self.usage.get(tenant).cloned().unwrap_or_default()
    }

    /// Dominant-share-seconds a tenant (or ancestor) has consumed up to the last scheduling
    /// pass or job end.
    pub fn tenant_consumed(&self, tenant: &str) -> f64 {
        self.consumed.get(tenant).copied().unwrap_or(0.0)
    }

    fn tenant_mode(&self) -> bool {
        matches!(
            self.policy,
            QueuePolicy::DominantResourceFairness | QueuePolicy::FairShare
        )
    }

    fn path(&self, tenant: &str) -> std::borrow::Cow<'_, [String]> {
        match self.paths.get(tenant) {
            Some(p) => std::borrow::Cow::Borrowed(p),
            None => std::borrow::Cow::Owned(self.tenants.path(tenant)),
        }
    }

    fn enqueue(&mut self, key: Key) {
        if let Some(j) = self.jobs.get(&key.2) {
            if !self.paths.contains_key(&j.spec.tenant) {
                self.paths
                    .insert(j.spec.tenant.clone(), self.tenants.path(&j.spec.tenant));
            }
            match self.by_tenant.get_mut(&j.spec.tenant) {
                Some(set) => {
                    set.insert(key);
                }
                None => {
                    self.by_tenant
                        .insert(j.spec.tenant.clone(), BTreeSet::from([key]));
                }
            }
        }
        self.pending.insert(key);
    }

    fn dequeue(&mut self, key: &Key) {
        if self.pending.remove(key)
            && let Some(j) = self.jobs.get(&key.2)
            && let Some(set) = self.by_tenant.get_mut(&j.spec.tenant)
        {
            set.remove(key);
            if set.is_empty() {
                self.by_tenant.remove(&j.spec.tenant);
            }
        }
    }

    /// Adds (or removes) what a job holds to its tenant and every ancestor.
    fn charge(&mut self, tenant: &str, r: &Resources, add: bool) {
        let owned;
        let path: &[String] = match self.paths.get(tenant) {
            Some(p) => p,
            None => {
                owned = self.tenants.path(tenant);
                &owned
            }
        };
        for p in path {
            let next = match self.usage.get(p.as_str()) {
                Some(u) if add => u.plus(r),
                Some(u) => u.minus(r).unwrap_or_default(),
                None if add => r.clone(),
                None => Resources::zero(),
            };
            match self.usage.get_mut(p.as_str()) {
                Some(u) => *u = next,
                None => {
                    self.usage.insert(p.clone(), next);
                }
            }
        }
    }

    /// Brings consumed dominant-share-seconds up to `now`.
    fn accrue(&mut self, now: f64) {
        let dt = now - self.accrued_at;
        if dt > 0.0 {
            for (t, u) in &self.usage {
                *self.consumed.entry(t.clone()).or_default() += u.dominant_share(&self.total) * dt;
            }
            self.accrued_at = now;
        }
    }

    /// Whether `tenant` holding one more `spec` stays within its guarantee.
    fn within_guarantee(&self, tenant: &str, spec: &JobSpec) -> bool {
        match self.tenants.get(tenant) {
            Some(t) if !t.guaranteed.is_zero() => within(
                &t.guaranteed,
                &self.tenant_usage(tenant).plus(&spec.total()),
            ),
            _ => false,
        }
    }

    /// Whether `tenant` holds more than its guarantee (everything it holds, if it has none).
    fn borrowing(&self, tenant: &str) -> bool {
        let u = self.tenant_usage(tenant);
        match self.tenants.get(tenant) {
            Some(t) if !t.guaranteed.is_zero() => !within(&t.guaranteed, &u),
            _ => !u.is_zero(),
        }
    }

    /// The first limit (tenant, resource, limit, what it would hold) `spec` would break now.
    fn over_limit(&self, spec: &JobSpec) -> Option<(String, String, u64, u64)> {
        if self.tenants.is_empty() {
            return None;
        }
        for p in self.path(&spec.tenant).iter() {
            if let Some(l) = self.tenants.get(p).and_then(|t| t.limit.as_ref())
                && let Some((r, q, a)) = first_excess(l, &self.tenant_usage(p).plus(&spec.total()))
            {
                return Some((p.clone(), r, q, a));
            }
        }
        None
    }

    /// A tenant's rank for its next job: within guarantee first, then the weighted shares
    /// along its path (held now for DRF, consumed for fair share).
    fn tenant_rank(&self, tenant: &str, spec: &JobSpec) -> (u8, Vec<f64>) {
        let tier = u8::from(!self.within_guarantee(tenant, spec));
        let shares = self
            .path(tenant)
            .iter()
            .map(|p| {
                let v = match self.policy {
                    QueuePolicy::FairShare => self.tenant_consumed(p),
                    _ => self.tenant_usage(p).dominant_share(&self.total),
                };
                v / self.tenants.weight(p)
            })
            .collect();
        (tier, shares)
    }

    /// The next job under a tenant policy: each tenant's first job after its cursor (the last
    /// one tried this pass), from the best-ranked tenant.
    fn next_by_tenant(&self, cursors: &HashMap<String, Key>) -> Option<Key> {
        let mut best: Option<((u8, Vec<f64>), Key)> = None;
        for (t, set) in &self.by_tenant {
            let next = match cursors.get(t) {
                Some(c) => set
                    .range((std::ops::Bound::Excluded(*c), std::ops::Bound::Unbounded))
                    .next(),
                None => set.iter().next(),
            };
            let Some(key) = next.copied() else {
                continue;
            };
            let rank = self.tenant_rank(t, &self.jobs[&key.2].spec);
            let better = match &best {
                None => true,
                Some((r, k)) => rank_cmp(&rank, r).then(key.cmp(k)).is_lt(),
            };
            if better {
                best = Some((rank, key));
            }
        }
        best.map(|b| b.1)
    }

    /// Sets the LAS queue boundaries in GPU-seconds (increasing; empty: one queue, i.e. FIFO
    /// among all jobs that have the same service level 0… and ranking by exact service).
    pub fn with_las_thresholds(mut self, thresholds: Vec<f64>) -> Result<Self> {
        if thresholds.windows(2).any(|w| w[0] >= w[1])
            || thresholds.iter().any(|t| !(t.is_finite() && *t > 0.0))
        {
            return Err(Error::invalid(
                "LAS thresholds",
                format!("{thresholds:?} must be positive and increasing"),
            ));
        }
        self.las_thresholds = thresholds;
        Ok(self)
    }

    /// The LAS queue of a job with `attained` GPU-seconds (0 is the highest priority).
    fn las_level(&self, attained: f64) -> i64 {
        if self.las_thresholds.is_empty() {
            // No queues: rank by service itself (milli-GPU-seconds).
            return (attained * 1000.0).round() as i64;
        }
        self.las_thresholds
            .iter()
            .take_while(|t| attained >= **t)
            .count() as i64
    }

    /// The queue policy.
    pub fn policy(&self) -> QueuePolicy {
        self.policy
    }

    /// The blocking rule.
    pub fn blocking(&self) -> Blocking {
        self.blocking
    }

    fn key(&self, id: JobId, j: &Job) -> Key {
        let primary = match self.policy {
            QueuePolicy::Fifo => 0,
            QueuePolicy::Priority => -j.spec.priority,
            QueuePolicy::ShortestJobFirst => j
                .spec
                .runtime_estimate
                .map_or(i64::MAX, |e| (e * 1000.0).round() as i64),
            QueuePolicy::LeastAttainedService => self.las_level(j.attained),
            QueuePolicy::DominantResourceFairness | QueuePolicy::FairShare => 0,
        };
        (primary, j.seq, id)
    }

    fn eligible(&self, n: &NodeState, spec: &JobSpec) -> bool {
        model_ok(&spec.gpu_model, &n.spec.gpu_model)
    }

    /// Rejects jobs that could not run even on an empty cluster.
    fn check_fits_empty(&self, spec: &JobSpec) -> Result<()> {
        let never = |reason: String| Error::NeverFits {
            job: spec.name.clone(),
            reason,
        };
        if spec.tasks == 0 {
            return Err(Error::invalid(
                format!("job {:?}", spec.name),
                "needs at least one task",
            ));
        }
        if spec.per_task.is_zero() {
            return Err(Error::invalid(
                format!("job {:?}", spec.name),
                "a task must need some resource",
            ));
        }
        for (what, v) in [
            ("runtime estimate", spec.runtime_estimate),
            ("duration", spec.duration),
        ] {
            if let Some(v) = v
                && !(v.is_finite() && v >= 0.0)
            {
                return Err(Error::invalid(
                    format!("job {:?}", spec.name),
                    format!("{what} {v} must be ≥ 0"),
                ));
            }
        }
        if let Some(m) = spec.max_tasks
            && m < spec.tasks
        {
            return Err(Error::invalid(
                format!("job {:?}", spec.name),
                format!("elastic maximum {m} is below its {} tasks", spec.tasks),
            ));
        }
        let g = spec.per_task.gpu_milli;
        if g > 1000 && !g.is_multiple_of(1000) {
            return Err(Error::invalid(
                format!("job {:?}", spec.name),
                format!(
                    "{} GPUs per task: more than one GPU must be whole GPUs (fractions share one device)",
                    g as f64 / 1000.0
                ),
            ));
        }
        for p in self.tenants.path(&spec.tenant) {
            if let Some(l) = self.tenants.get(&p).and_then(|t| t.limit.as_ref())
                && let Some((r, q, a)) = first_excess(l, &spec.total())
            {
                return Err(never(format!(
                    "tenant {p:?} may hold at most {q} {r}; the job needs {a}"
                )));
            }
        }
        let mut slots: u64 = 0;
        for (cap, model, count) in &self.shapes {
            if model_ok(&spec.gpu_model, model) {
                let per_node = node_tasks(&spec.per_task, cap, &devices_of(cap.gpu_milli));
                slots = slots.saturating_add(per_node.saturating_mul(*count));
            }
        }
        if slots == 0 {
            let model = spec
                .gpu_model
                .as_deref()
                .map(|m| format!(" with GPU model {m}"))
                .unwrap_or_default();
            return Err(never(format!(
                "no node{model} can hold one task ({})",
                spec.per_task
            )));
        }
        if slots < u64::from(spec.tasks) {
            return Err(never(format!(
                "the gang needs {} tasks at once; the whole cluster holds {slots}",
                spec.tasks
            )));
        }
        Ok(())
    }

    /// Queues a job submitted at `now`; rejects one that can never run.
    pub fn submit(&mut self, spec: JobSpec, now: f64) -> Result<JobId> {
        self.check_fits_empty(&spec)?;
        let id = self.next;
        self.next += 1;
        let job = Job {
            spec,
            state: JobState::Pending,
            seq: id,
            submitted: now,
            started: None,
            finished: None,
            placement: Vec::new(),
            grants: Vec::new(),
            attained: 0.0,
        };
        let key = self.key(id, &job);
        self.jobs.insert(id, job);
        self.enqueue(key);
        Ok(id)
    }

    /// Sets a node's health. An Unhealthy node is drained: it leaves the placement index, and the
    /// jobs running on it are requeued (whole gangs, wherever their other tasks were); the ids
    /// come back. A node that becomes Healthy or Degraded again rejoins the index.
    pub fn set_health(&mut self, node: &str, health: NodeHealth) -> Result<Vec<JobId>> {
        let i = self
            .nodes
            .iter()
            .position(|n| n.spec.name == node)
            .ok_or_else(|| Error::invalid(format!("node {node:?}"), "not in this pool"))?;
        let was = self.nodes[i].health;
        self.nodes[i].health = health;
        let key = (
            self.nodes[i].free.gpu_milli,
            self.nodes[i].free.cpu_milli,
            i,
        );
        let mut requeued = Vec::new();
        if health == NodeHealth::Unhealthy && was != NodeHealth::Unhealthy {
            let victims: Vec<JobId> = self
                .jobs
                .iter()
                .filter(|(_, j)| {
                    j.state == JobState::Running && j.placement.iter().any(|(n, _)| *n == i)
                })
                .map(|(id, _)| *id)
                .collect();
            for id in victims {
                self.preempt(id)?;
                requeued.push(id);
            }
            let key = (
                self.nodes[i].free.gpu_milli,
                self.nodes[i].free.cpu_milli,
                i,
            );
            self.by_free.remove(&key);
        } else if health != NodeHealth::Unhealthy && was == NodeHealth::Unhealthy {
            self.by_free.insert(key);
        }
        requeued.sort_unstable();
        Ok(requeued)
    }

    /// A node's health.
    pub fn health(&self, node: &str) -> Option<NodeHealth> {
        self.nodes
            .iter()
            .find(|n| n.spec.name == node)
            .map(|n| n.health)
    }

    fn take(&mut self, i: usize, r: &Resources) {
        let n = &mut self.nodes[i];
        self.by_free
            .remove(&(n.free.gpu_milli, n.free.cpu_milli, i));
        n.free = n.free.minus(r).unwrap_or_default();
        self.by_free.insert((n.free.gpu_milli, n.free.cpu_milli, i));
    }

    fn give(&mut self, i: usize, r: &Resources) {
        let n = &mut self.nodes[i];
        self.by_free
            .remove(&(n.free.gpu_milli, n.free.cpu_milli, i));
        n.free = n.free.plus(r);
        self.by_free.insert((n.free.gpu_milli, n.free.cpu_milli, i));
    }

    /// Takes one task's resources on node `i`, with its GPU devices.
    fn take_task(&mut self, i: usize, t: &Resources) -> Grant {
        self.take(i, t);
        let need = t.gpu_milli;
        let devs = &mut self.nodes[i].devices;
        let mut got = Vec::new();
        if need == 0 {
        } else if need < 1000 {
            // Best fit among devices: the fullest one that still holds the fraction.
            if let Some(d) = (0..devs.len())
                .filter(|&d| devs[d] >= need)
                .min_by_key(|&d| (devs[d], d))
            {
                devs[d] -= need;
                got.push((d, need));
            }
        } else {
            let mut left = need.div_ceil(1000);
            for (d, f) in devs.iter_mut().enumerate() {
                if left == 0 {
                    break;
                }
                if *f >= 1000 {
                    *f -= 1000;
                    got.push((d, 1000));
                    left -= 1;
                }
            }
        }
        got
    }

    fn give_task(&mut self, i: usize, t: &Resources, grant: &Grant) {
        self.give(i, t);
        for (d, m) in grant {
            self.nodes[i].devices[*d] += m;
        }
    }

    fn give_all(&mut self, t: &Resources, grants: &[(usize, Grant)]) {
        for (i, g) in grants {
            self.give_task(*i, t, g);
        }
    }

    fn holds(&self, i: usize, spec: &JobSpec, tasks: u64) -> bool {
        let n = &self.nodes[i];
        n.health != NodeHealth::Unhealthy
            && self.eligible(n, spec)
            && node_tasks(&spec.per_task, &n.free, &n.devices) >= tasks
    }

    /// The node for `tasks` tasks at once under the placement rule: best fit (least free GPU,
    /// then CPU) or spread (most free).
    fn pick(&self, spec: &JobSpec, tasks: u64) -> Option<usize> {
        let t = &spec.per_task;
        match self.placement {
            Placement::BestFit => self
                .by_free
                .range((t.gpu_milli * tasks, t.cpu_milli * tasks, 0)..)
                .map(|(_, _, i)| *i)
                .find(|i| self.holds(*i, spec, tasks)),
            Placement::Spread => self
                .by_free
                .iter()
                .rev()
                .map(|(_, _, i)| *i)
                .find(|i| self.holds(*i, spec, tasks)),
        }
    }

    /// Places every task of the gang, or none: on one node if one holds it, else under one
    /// switch (the fullest that holds it, fewest nodes first), else task by task.
    fn place(&mut self, spec: &JobSpec) -> Option<Vec<(usize, Grant)>> {
        let tasks = u64::from(spec.tasks);
        let mut grants: Vec<(usize, Grant)> = Vec::new();
        if tasks > 1 && self.placement == Placement::BestFit {
            if let Some(i) = self.pick(spec, tasks) {
                for _ in 0..tasks {
                    let g = self.take_task(i, &spec.per_task);
                    grants.push((i, g));
                }
                return Some(grants);
            }
            if let Some(nodes) = self.switch_for(spec, tasks) {
                for (i, k) in nodes {
                    for _ in 0..k {
                        let g = self.take_task(i, &spec.per_task);
                        grants.push((i, g));
                    }
                }
                return Some(grants);
            }
        }
        for _ in 0..tasks {
            match self.pick(spec, 1) {
                Some(i) => {
                    let g = self.take_task(i, &spec.per_task);
                    grants.push((i, g));
                }
                None => {
                    self.give_all(&spec.per_task, &grants);
                    return None;
                }
            }
        }
        Some(grants)
    }

    /// The switch that holds the whole gang with the least free GPU left over, and how many
    /// tasks go on which of its nodes (the roomiest nodes first, so the gang spans few).
    fn switch_for(&self, spec: &JobSpec, tasks: u64) -> Option<Vec<(usize, u64)>> {
        let mut best: Option<(u64, Vec<(usize, u64)>)> = None;
        for (_, members) in &self.switches {
            let mut room: Vec<(u64, usize)> = members
                .iter()
                .filter(|i| self.holds(**i, spec, 1))
                .map(|i| {
                    let n = &self.nodes[*i];
                    (node_tasks(&spec.per_task, &n.free, &n.devices), *i)
                })
                .collect();
            if room.iter().map(|r| r.0).sum::<u64>() < tasks {
                continue;
            }
            let free: u64 = members.iter().map(|i| self.nodes[*i].free.gpu_milli).sum();
            if best.as_ref().is_some_and(|(f, _)| *f <= free) {
                continue;
            }
            room.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
            let mut left = tasks;
            let mut plan = Vec::new();
            for (cap, i) in room {
                if left == 0 {
                    break;
                }
                let k = cap.min(left);
                plan.push((i, k));
                left -= k;
            }
            best = Some((free, plan));
        }
        best.map(|b| b.1)
    }

    /// One pass over the queue at time `now`: starts every job the policy lets start, and
    /// returns their ids in start order.
    pub fn schedule(&mut self, now: f64) -> Vec<JobId> {
        self.accrue(now);
        let tenant_mode = self.tenant_mode();
        let mut cursors: HashMap<String, Key> = HashMap::new();
        let mut started = Vec::new();
        let mut last_needs: Option<Resources> = None;
        // Backfill: (shadow time, free resources then, the job reserved for).
        let mut reservation: Option<(f64, Vec<Resources>, JobSpec)> = None;
        // Walk the queue lazily (placing removes jobs from it), so a strict pass that stops at
        // the head costs O(log n), not O(queue).
        let mut cursor: Option<Key> = None;
        loop {
            let next = match cursor {
                _ if tenant_mode => self.next_by_tenant(&cursors),
                None => self.pending.iter().next().copied(),
                Some(c) => self
                    .pending
                    .range((std::ops::Bound::Excluded(c), std::ops::Bound::Unbounded))
                    .next()
                    .copied(),
            };
            let Some(key) = next else { break };
            cursor = Some(key);
            let id = key.2;
            let spec = match self.jobs.get(&id) {
                Some(j) => j.spec.clone(),
                None => continue,
            };
            if tenant_mode {
                // Tried once per pass: if it does not start now, its tenant's next job is next.
                cursors.insert(spec.tenant.clone(), key);
            }
            // A tenant at its limit waits; it never blocks other tenants.
            if self.over_limit(&spec).is_some() {
                continue;
            }
            // A job needing at least as much per task as one that just failed cannot fit either.
            if let Some(n) = &last_needs
                && self.blocking == Blocking::Skip
                && spec.tasks == 1
                && spec.gpu_model.is_none()
                && n.fits_in(&spec.per_task)
            {
                continue;
            }
            match self.place(&spec) {
                Some(grants) => {
                    let placement = counts(&grants);
                    if let Some((shadow, free_at, head)) = &mut reservation {
                        // Backfilling: allowed if it ends before the reservation, or if the
                        // reservation still fits beside it.
                        let ends_in_time =
                            spec.runtime_estimate.is_some_and(|e| now + e <= *shadow);
                        if !ends_in_time {
                            let mut after = free_at.clone();
                            for (i, c) in &placement {
                                after[*i] = after[*i]
                                    .minus(&spec.per_task.times(u64::from(*c)))
                                    .unwrap_or_default();
                            }
                            if !self.fits_gang(head, &after) {
                                self.give_all(&spec.per_task, &grants);
                                continue;
                            }
                            *free_at = after;
                        }
                    }
                    self.start(key, grants, now);
                    started.push(id);
                }
                None => match self.blocking {
                    Blocking::Strict => break,
                    Blocking::Skip => {
                        if spec.tasks == 1 && spec.gpu_model.is_none() {
                            last_needs = Some(spec.per_task.clone());
                        }
                    }
                    Blocking::Backfill => {
                        if reservation.is_none() {
                            match self.reservation(now, &spec) {
                                Some((shadow, free_at)) => {
                                    reservation = Some((shadow, free_at, spec))
                                }
                                None => break,
                            }
                        }
                    }
                },
            }
        }
        started
    }

    /// Marks a placed job running and charges its tenant.
    fn start(&mut self, key: Key, grants: Vec<(usize, Grant)>, now: f64) {
        self.dequeue(&key);
        if let Some(j) = self.jobs.get_mut(&key.2) {
            j.state = JobState::Running;
            j.started = Some(now);
            j.placement = counts(&grants);
            j.grants = grants;
            let (tenant, total) = (j.spec.tenant.clone(), j.spec.total());
            self.charge(&tenant, &total, true);
        }
    }

    /// Preemption for the job at the head of the queue (the best-ranked tenant's next job under
    /// DRF and fair share) when it does not fit: evicts the fewest running preemptible jobs
    /// that let it start — jobs of lower priority, or, when its tenant is within its guarantee,
    /// jobs of other tenants that borrow beyond theirs — lowest priority and most recently
    /// started first. Whole gangs are evicted and requeued (none is lost), and the head job
    /// starts at once. Returns the evicted jobs (empty when nothing is preempted) and the job
    /// that started.
    pub fn preempt_for(&mut self, now: f64) -> Result<(Vec<JobId>, Option<JobId>)> {
        self.accrue(now);
        let head = if self.tenant_mode() {
            self.next_by_tenant(&HashMap::new())
        } else {
            self.pending.iter().next().copied()
        };
        let Some(key) = head else {
            return Ok((Vec::new(), None));
        };
        let h = self.jobs[&key.2].spec.clone();
        if self.over_limit(&h).is_some() {
            return Ok((Vec::new(), None));
        }
        let mut free: Vec<Resources> = self
            .nodes
            .iter()
            .map(|n| {
                if n.health == NodeHealth::Unhealthy {
                    Resources::zero()
                } else {
                    n.free.clone()
                }
            })
            .collect();
        if self.fits_gang(&h, &free) {
            return Ok((Vec::new(), None));
        }
        let guaranteed = self.within_guarantee(&h.tenant, &h);
        let mut candidates: Vec<(i64, std::cmp::Reverse<Time>, JobId)> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.state == JobState::Running && j.spec.preemptible)
            .filter(|(_, j)| {
                j.spec.priority < h.priority
                    || (guaranteed && j.spec.tenant != h.tenant && self.borrowing(&j.spec.tenant))
            })
            .map(|(id, j)| {
                (
                    j.spec.priority,
                    std::cmp::Reverse(Time(j.started.unwrap_or(0.0))),
                    *id,
                )
            })
            .collect();
        candidates.sort();
        let mut victims = Vec::new();
        for (_, _, v) in candidates {
            let j = &self.jobs[&v];
            for (i, c) in &j.placement {
                free[*i] = free[*i].plus(&j.spec.per_task.times(u64::from(*c)));
            }
            victims.push(v);
            if self.fits_gang(&h, &free) {
                break;
            }
        }
        if !self.fits_gang(&h, &free) {
            return Ok((Vec::new(), None));
        }
        // Spare the victims that are not needed after all (latest chosen first).
        for k in (0..victims.len()).rev() {
            let j = &self.jobs[&victims[k]];
            let mut without = free.clone();
            for (i, c) in &j.placement {
                without[*i] = without[*i]
                    .minus(&j.spec.per_task.times(u64::from(*c)))
                    .unwrap_or_default();
            }
            if self.fits_gang(&h, &without) {
                free = without;
                victims.remove(k);
            }
        }
        self.accrue(now);
        for v in &victims {
            self.preempt(*v)?;
        }
        let started = match self.place(&h) {
            Some(grants) => {
                self.start(key, grants, now);
                Some(key.2)
            }
            None => None,
        };
        victims.sort_unstable();
        Ok((victims, started))
    }

    /// Whether every task of `spec` fits in `free` (first fit, eligible healthy nodes).
    fn fits_gang(&self, spec: &JobSpec, free: &[Resources]) -> bool {
        let mut f = free.to_vec();
        for _ in 0..spec.tasks {
            let slot = (0..f.len()).find(|i| {
                let n = &self.nodes[*i];
                n.health != NodeHealth::Unhealthy
                    && self.eligible(n, spec)
                    && spec.per_task.fits_in(&f[*i])
            });
            match slot {
                Some(i) => f[i] = f[i].minus(&spec.per_task).unwrap_or_default(),
                None => return false,
            }
        }
        true
    }

    /// The earliest time running jobs' estimates free enough for `head`, and the free resources
    /// then; `None` if no estimate-based plan gets there.
    fn reservation(&self, now: f64, head: &JobSpec) -> Option<(f64, Vec<Resources>)> {
        let mut free: Vec<Resources> = self.nodes.iter().map(|n| n.free.clone()).collect();
        let mut ends: Vec<(f64, JobId)> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.state == JobState::Running)
            .filter_map(|(id, j)| Some(((j.started? + j.spec.runtime_estimate?).max(now), *id)))
            .collect();
        ends.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for (t, id) in ends {
            let j = &self.jobs[&id];
            for (i, c) in &j.placement {
                free[*i] = free[*i].plus(&j.spec.per_task.times(u64::from(*c)));
            }
            if self.fits_gang(head, &free) {
                return Some((t, free));
            }
        }
        None
    }

    /// Ends a running or pending job in `state` (Completed, Failed or Cancelled) at `now`,
    /// freeing what it held. Ending a job already ended is a no-op.
    pub fn end(&mut self, id: JobId, state: JobState, now: f64) -> Result<()> {
        if !state.is_final() {
            return Err(Error::invalid(
                format!("job {id}"),
                format!("cannot end in state {state:?}"),
            ));
        }
        let job = self.jobs.get(&id).ok_or(Error::NotFound(id))?;
        if job.state.is_final() {
            return Ok(());
        }
        let key = self.key(id, job);
        let was_running = job.state == JobState::Running;
        let per_task = job.spec.per_task.clone();
        let tenant = job.spec.tenant.clone();
        self.accrue(now);
        let grants = self
            .jobs
            .get_mut(&id)
            .map(|j| std::mem::take(&mut j.grants))
            .unwrap_or_default();
        let total = per_task.times(grants.len() as u64);
        self.dequeue(&key);
        self.give_all(&per_task, &grants);
        if was_running {
            self.charge(&tenant, &total, false);
        }
        if let Some(j) = self.jobs.get_mut(&id) {
            j.state = state;
            j.finished = Some(now);
            j.placement.clear();
            j.grants.clear();
        }
        Ok(())
    }

    /// When the pending job `id` is expected to start: a forward simulation of the current
    /// state from `now`, in which running jobs end at their start plus their run-time estimate
    /// (or known duration) and queued jobs start as the policy lets them and run for theirs.
    /// `None` when it waits on a job with no estimate, or on nothing that will ever end; the
    /// start time for a job that has started.
    pub fn estimate_start(&self, id: JobId, now: f64) -> Result<Option<f64>> {
        let job = self.jobs.get(&id).ok_or(Error::NotFound(id))?;
        match job.state {
            JobState::Pending => {}
            JobState::Running => return Ok(job.started),
            _ => return Ok(job.started),
        }
        let length = |spec: &JobSpec| spec.runtime_estimate.or(spec.duration);
        let mut c = self.clone();
        let mut ends: std::collections::BinaryHeap<std::cmp::Reverse<(Time, JobId)>> = c
            .jobs
            .iter()
            .filter(|(_, j)| j.state == JobState::Running)
            .filter_map(|(jid, j)| {
                let end = j.started.unwrap_or(now) + length(&j.spec)?;
                Some(std::cmp::Reverse((Time(end.max(now)), *jid)))
            })
            .collect();
        let mut t = now;
        for _ in 0..=c.jobs.len() {
            for s in c.schedule(t) {
                if s == id {
                    return Ok(Some(t));
                }
                if let Some(l) = c.jobs.get(&s).and_then(|j| length(&j.spec)) {
                    ends.push(std::cmp::Reverse((Time(t + l), s)));
                }
            }
            let Some(std::cmp::Reverse((Time(end), jid))) = ends.pop() else {
                return Ok(None);
            };
            t = t.max(end);
            c.end(jid, JobState::Completed, t)?;
        }
        Ok(None)
    }

    /// Puts a running job back in the queue, freeing what it held (its attained service stays).
    pub fn preempt(&mut self, id: JobId) -> Result<()> {
        let job = self.jobs.get(&id).ok_or(Error::NotFound(id))?;
        if job.state != JobState::Running {
            return Err(Error::invalid(
                format!("job {id}"),
                format!("is {:?}, not running", job.state),
            ));
        }
        let per_task = job.spec.per_task.clone();
        let tenant = job.spec.tenant.clone();
        let grants = self
            .jobs
            .get_mut(&id)
            .map(|j| std::mem::take(&mut j.grants))
            .unwrap_or_default();
        let total = per_task.times(grants.len() as u64);
        self.give_all(&per_task, &grants);
        self.charge(&tenant, &total, false);
        if let Some(j) = self.jobs.get_mut(&id) {
            j.state = JobState::Pending;
            j.placement.clear();
            j.grants.clear();
        }
        let key = self.key(id, &self.jobs[&id]);
        self.enqueue(key);
        Ok(())
    }

    /// Adds `gpu_seconds` of attained service to a job (re-ranking it if it waits).
    pub fn add_service(&mut self, id: JobId, gpu_seconds: f64) -> Result<()> {
        let job = self.jobs.get(&id).ok_or(Error::NotFound(id))?;
        let pending = job.state == JobState::Pending;
        if pending {
            let key = self.key(id, job);
            self.dequeue(&key);
        }
        if let Some(j) = self.jobs.get_mut(&id) {
            j.attained += gpu_seconds;
        }
        if pending {
            let key = self.key(id, &self.jobs[&id]);
            self.enqueue(key);
        }
        Ok(())
    }

    /// A job's attained service, GPU-seconds.
    pub fn attained(&self, id: JobId) -> Result<f64> {
        self.jobs
            .get(&id)
            .map(|j| j.attained)
            .ok_or(Error::NotFound(id))
    }

    /// The LAS queue a job is in now.
    pub fn las_queue(&self, id: JobId) -> Result<i64> {
        self.jobs
            .get(&id)
            .map(|j| self.las_level(j.attained))
            .ok_or(Error::NotFound(id))
    }

    /// The LAS boundaries.
    pub fn las_thresholds(&self) -> &[f64] {
        &self.las_thresholds
    }

    /// Running jobs, in no particular order.
    pub fn running(&self) -> Vec<JobId> {
        let mut r: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.state == JobState::Running)
            .map(|(id, _)| *id)
            .collect();
        r.sort_unstable();
        r
    }

    /// The queue's first key among pending jobs, as (rank, arrival).
    pub fn best_pending_rank(&self) -> Option<(i64, u64)> {
        self.pending.iter().next().map(|k| (k.0, k.1))
    }

    /// A job's rank under the policy, as (rank, arrival): smaller runs first.
    pub fn rank(&self, id: JobId) -> Result<(i64, u64)> {
        let j = self.jobs.get(&id).ok_or(Error::NotFound(id))?;
        let k = self.key(id, j);
        Ok((k.0, k.1))
    }

    /// Pending jobs.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Pending jobs in queue order (under DRF and fair share: grouped by tenant, in each
    /// tenant's order).
    pub fn pending_ids(&self) -> Vec<JobId> {
        self.pending.iter().map(|k| k.2).collect()
    }

    /// How many tasks a job runs now (elastic jobs vary; 0 while pending).
    pub fn tasks_now(&self, id: JobId) -> Result<u32> {
        self.jobs
            .get(&id)
            .map(|j| j.grants.len() as u32)
            .ok_or(Error::NotFound(id))
    }

    /// Elasticity at `now`: when the head of the queue cannot start but would if running
    /// elastic jobs gave back their extra tasks, they shrink (the most-grown first, only as far
    /// as needed) and the queue is scheduled again; when nothing waits for resources, running
    /// elastic jobs grow into idle capacity, a task at a time, oldest job first. Returns the
    /// jobs whose size changed (id, tasks before, after) and those started.
    pub fn resize(&mut self, now: f64) -> Result<(Vec<Resized>, Vec<JobId>)> {
        let mut before: HashMap<JobId, u32> = HashMap::new();
        let mut elastic: Vec<(f64, JobId)> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.state == JobState::Running && j.spec.max_tasks.is_some())
            .map(|(id, j)| (j.started.unwrap_or(0.0), *id))
            .collect();
        elastic.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut started = Vec::new();
        // Shrink for the head of the queue.
        let head = if self.tenant_mode() {
            self.next_by_tenant(&HashMap::new())
        } else {
            self.pending.iter().next().copied()
        };
        if let Some(key) = head {
            let h = self.jobs[&key.2].spec.clone();
            let mut free: Vec<Resources> = self.nodes.iter().map(|n| n.free.clone()).collect();
            let extras: Vec<(JobId, usize, Grant)> = elastic
                .iter()
                .flat_map(|(_, id)| {
                    let j = &self.jobs[id];
                    j.grants
                        .iter()
                        .skip(j.spec.tasks as usize)
                        .map(|(i, g)| (*id, *i, g.clone()))
                        .collect::<Vec<_>>()
                })
                .collect();
            if self.over_limit(&h).is_none() && !self.fits_gang(&h, &free) && !extras.is_empty() {
                let mut all = free.clone();
                for (id, i, _) in &extras {
                    all[*i] = all[*i].plus(&self.jobs[id].spec.per_task);
                }
                if self.fits_gang(&h, &all) {
                    // Give back the newest extra tasks until the head fits.
                    let mut order = extras;
                    order.reverse();
                    for (id, i, grant) in order {
                        let per = self.jobs[&id].spec.per_task.clone();
                        before
                            .entry(id)
                            .or_insert(self.jobs[&id].grants.len() as u32);
                        if let Some(j) = self.jobs.get_mut(&id)
                            && let Some(pos) =
                                j.grants.iter().rposition(|(n, g)| *n == i && *g == grant)
                        {
                            j.grants.remove(pos);
                            j.placement = counts(&j.grants);
                        }
                        let tenant = self.jobs[&id].spec.tenant.clone();
                        self.give_task(i, &per, &grant);
                        self.charge(&tenant, &per, false);
                        free[i] = free[i].plus(&per);
                        if self.fits_gang(&h, &free) {
                            break;
                        }
                    }
                    started = self.schedule(now);
                }
            }
        }
        // Grow when nothing waits for resources (only quota-bound jobs, or none).
        let waiting = self.pending.iter().any(|k| {
            self.jobs
                .get(&k.2)
                .is_some_and(|j| self.over_limit(&j.spec).is_none())
        });
        if !waiting {
            for (_, id) in &elastic {
                loop {
                    let j = &self.jobs[id];
                    let (max, now_tasks) = (j.spec.max_tasks.unwrap_or(0), j.grants.len() as u32);
                    if now_tasks >= max {
                        break;
                    }
                    let spec = j.spec.clone();
                    let mut one = spec.clone();
                    one.tasks = 1;
                    if self.over_limit(&one).is_some() {
                        break;
                    }
                    // Prefer nodes the job is on, then best fit.
                    let on: Vec<usize> = j.placement.iter().map(|(i, _)| *i).collect();
                    let node = on
                        .into_iter()
                        .find(|i| self.holds(*i, &spec, 1))
                        .or_else(|| self.pick(&spec, 1));
                    let Some(i) = node else { break };
                    let grant = self.take_task(i, &spec.per_task);
                    self.charge(&spec.tenant, &spec.per_task, true);
                    before.entry(*id).or_insert(now_tasks);
                    if let Some(j) = self.jobs.get_mut(id) {
                        j.grants.push((i, grant));
                        j.placement = counts(&j.grants);
                    }
                }
            }
        }
        let mut changed: Vec<Resized> = before
            .into_iter()
            .map(|(id, b)| (id, b, self.jobs[&id].grants.len() as u32))
            .filter(|(_, b, a)| b != a)
            .collect();
        changed.sort_unstable();
        Ok((changed, started))
    }

    /// A job's spec.
    pub fn spec(&self, id: JobId) -> Result<&JobSpec> {
        self.jobs
            .get(&id)
            .map(|j| &j.spec)
            .ok_or(Error::NotFound(id))
    }

    /// Every node's capacity and free resources.
    pub fn nodes(&self) -> Vec<NodeStatus> {
        self.nodes
            .iter()
            .map(|n| NodeStatus {
                spec: n.spec.clone(),
                free: n.free.clone(),
            })
            .collect()
    }

    /// Free resources summed over nodes.
    pub fn free_total(&self) -> Resources {
        self.nodes
            .iter()
            .fold(Resources::zero(), |a, n| a.plus(&n.free))
    }

    /// Capacity summed over nodes.
    pub fn capacity_total(&self) -> Resources {
        self.nodes
            .iter()
            .fold(Resources::zero(), |a, n| a.plus(&n.spec.capacity))
    }

    /// A job's status, with the reason it waits computed from the current state.
    pub fn status(&self, id: JobId) -> Result<JobStatus> {
        let j = self.jobs.get(&id).ok_or(Error::NotFound(id))?;
        let reason = (j.state == JobState::Pending).then(|| self.reason(id, j));
        Ok(JobStatus {
            id,
            name: j.spec.name.clone(),
            state: j.state,
            reason,
            submitted: j.submitted,
            started: j.started,
            finished: j.finished,
            placement: j
                .placement
                .iter()
                .map(|(i, c)| (self.nodes[*i].spec.name.clone(), *c))
                .collect(),
        })
    }

    fn reason(&self, id: JobId, j: &Job) -> PendingReason {
        if let Some((tenant, resource, limit, would_hold)) = self.over_limit(&j.spec) {
            return PendingReason::Quota {
                tenant,
                resource,
                limit,
                would_hold,
            };
        }
        let frees = self
            .nodes
            .iter()
            .filter(|n| self.eligible(n, &j.spec))
            .map(|n| &n.free);
        if let Some(r) = shortfall(&j.spec, frees) {
            return r;
        }
        let key = self.key(id, j);
        let ahead = if self.tenant_mode() {
            // Its own tenant's jobs before it, and the tenants ranked before its own.
            let own = self
                .by_tenant
                .get(&j.spec.tenant)
                .map_or(0, |s| s.range(..key).count());
            let rank = self.tenant_rank(&j.spec.tenant, &j.spec);
            let others = self
                .by_tenant
                .iter()
                .filter(|(t, set)| {
                    **t != j.spec.tenant
                        && set.iter().next().is_some_and(|k| {
                            rank_cmp(&self.tenant_rank(t, &self.jobs[&k.2].spec), &rank).is_lt()
                        })
                })
                .count();
            own + others
        } else {
            self.pending.range(..key).count()
        };
        if ahead > 0 {
            PendingReason::BehindJobs { ahead }
        } else {
            PendingReason::NotScheduledYet
        }
    }
}

/// Why `spec` cannot start on `nodes` as they are now (free resources, GPU model), or `None` if
/// every task of its gang has a place. The explanation real pools give for their pending jobs.
pub fn explain(spec: &JobSpec, nodes: &[NodeStatus]) -> Option<PendingReason> {
    shortfall(
        spec,
        nodes
            .iter()
            .filter(|n| model_ok(&spec.gpu_model, &n.spec.gpu_model))
            .map(|n| &n.free),
    )
}

fn shortfall<'a>(
    spec: &JobSpec,
    eligible: impl Iterator<Item = &'a Resources>,
) -> Option<PendingReason> {
    let t = &spec.per_task;
    let eligible: Vec<&Resources> = eligible.collect();
    let placeable: u64 = eligible.iter().map(|free| max_tasks(t, free)).sum();
    if placeable == 0 {
        // The first resource no eligible node has enough of (GPUs first: what AI jobs wait
        // for); else the combination.
        let mut dims = t.dimensions();
        dims.sort_by_key(|(name, _)| *name != "gpu_milli");
        for (name, need) in dims {
            let largest = eligible
                .iter()
                .map(|free| {
                    free.dimensions()
                        .iter()
                        .find(|d| d.0 == name)
                        .map_or(0, |d| d.1)
                })
                .max()
                .unwrap_or(0);
            if need > largest {
                return Some(PendingReason::Insufficient {
                    resource: name.to_string(),
                    needed: need,
                    largest_free: largest,
                    gpu_model: spec.gpu_model.clone(),
                });
            }
        }
        return Some(PendingReason::Insufficient {
            resource: "combination".into(),
            needed: 0,
            largest_free: 0,
            gpu_model: spec.gpu_model.clone(),
        });
    }
    if placeable < u64::from(spec.tasks) {
        return Some(PendingReason::GangNotFittable {
            tasks: spec.tasks,
            placeable: placeable.min(u64::from(u32::MAX)) as u32,
        });
    }
    None
}

/// Whether a node with GPU model `node` suits a job asking for `wanted`: any model when it asks
/// for none; else one of the models it lists, separated by `|` (`V100M16|V100M32`).
pub fn model_ok(wanted: &Option<String>, node: &Option<String>) -> bool {
    match (wanted, node) {
        (None, _) => true,
        (Some(w), Some(n)) => w.split('|').any(|m| m.trim() == n),
        (Some(_), None) => false,
    }
}

/// Tasks per node, in first-placed order.
fn counts(grants: &[(usize, Grant)]) -> Vec<(usize, u32)> {
    let mut out: Vec<(usize, u32)> = Vec::new();
    for (i, _) in grants {
        match out.iter_mut().find(|(n, _)| n == i) {
            Some((_, c)) => *c += 1,
            None => out.push((*i, 1)),
        }
    }
    out
}

/// How many tasks of `t` fit in `free`.
fn max_tasks(t: &Resources, free: &Resources) -> u64 {
    let fit = |need: u64, have: u64| have.checked_div(need).unwrap_or(u64::MAX);
    let mut n = fit(t.cpu_milli, free.cpu_milli)
        .min(fit(t.memory_mib, free.memory_mib))
        .min(fit(t.gpu_milli, free.gpu_milli));
    for (k, v) in &t.custom {
        n = n.min(fit(*v, free.custom.get(k).copied().unwrap_or(0)));
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(nodes: usize, gpus: u64) -> Vec<NodeSpec> {
        (0..nodes)
            .map(|i| NodeSpec::new(format!("n{i}"), Resources::new(32, 256_000, gpus)))
            .collect()
    }

    fn gpu_job(name: &str, tasks: u32, gpus: u64) -> JobSpec {
        JobSpec::new(name, tasks, Resources::new(4, 16_000, gpus))
    }

    #[test]
    fn start_estimates_come_from_a_forward_simulation() {
        // One node of 4 GPUs. Running: a (3 GPUs, estimate 100 s, started at 0) and b (1 GPU,
        // 300 s). Queued in FIFO order: c (4 GPUs, 50 s), then d (2 GPUs, 10 s).
        let mut core = Core::new(cluster(1, 4), QueuePolicy::Fifo, Blocking::Strict).expect("core");
        let a = core
            .submit(gpu_job("a", 1, 3).estimate(100.0), 0.0)
            .expect("a");
        let b = core
            .submit(gpu_job("b", 1, 1).estimate(300.0), 0.0)
            .expect("b");
        assert_eq!(core.schedule(0.0), vec![a, b]);
        let c = core
            .submit(gpu_job("c", 1, 4).estimate(50.0), 5.0)
            .expect("c");
        let d = core
            .submit(gpu_job("d", 1, 2).estimate(10.0), 6.0)
            .expect("d");
        assert!(core.schedule(10.0).is_empty());
        // c needs the whole node: b ends at 300. d starts when c ends: 350.
        assert_eq!(core.estimate_start(c, 10.0).expect("c"), Some(300.0));
        assert_eq!(core.estimate_start(d, 10.0).expect("d"), Some(350.0));
        assert_eq!(core.estimate_start(a, 10.0).expect("a"), Some(0.0));
        // Without b's estimate, c's start cannot be known.
        let mut blind =
            Core::new(cluster(1, 4), QueuePolicy::Fifo, Blocking::Strict).expect("core");
        blind
            .submit(gpu_job("a", 1, 3).estimate(100.0), 0.0)
            .expect("a");
        blind.submit(gpu_job("b", 1, 1), 0.0).expect("b");
        blind.schedule(0.0);
        let c = blind.submit(gpu_job("c", 1, 4), 5.0).expect("c");
        assert_eq!(blind.estimate_start(c, 10.0).expect("c"), None);
        // Under skip, d (2 GPUs) starts at 100 when a ends, before c.
        let mut skip = Core::new(cluster(1, 4), QueuePolicy::Fifo, Blocking::Skip).expect("core");
        skip.submit(gpu_job("a", 1, 3).estimate(100.0), 0.0)
            .expect("a");
        skip.submit(gpu_job("b", 1, 1).estimate(300.0), 0.0)
            .expect("b");
        skip.schedule(0.0);
        let c = skip
            .submit(gpu_job("c", 1, 4).estimate(50.0), 5.0)
            .expect("c");
        let d = skip
            .submit(gpu_job("d", 1, 2).estimate(10.0), 6.0)
            .expect("d");
        assert_eq!(skip.estimate_start(d, 10.0).expect("d"), Some(100.0));
        assert_eq!(skip.estimate_start(c, 10.0).expect("c"), Some(300.0));
        assert!(matches!(
            skip.estimate_start(999, 0.0),
            Err(Error::NotFound(999))
        ));
    }

    #[test]
    fn best_fit_packs_and_gangs_are_all_or_nothing() {
        let mut c = Core::new(cluster(2, 4), QueuePolicy::Fifo, Blocking::Skip).expect("core");
        let a = c.submit(gpu_job("a", 1, 3), 0.0).expect("a");
        let b = c.submit(gpu_job("b", 1, 1), 0.0).expect("b");
        assert_eq!(c.schedule(0.0), vec![a, b]);
        // Best fit put b beside a (the node with 1 GPU left), keeping n1 whole.
        assert_eq!(
            c.status(a).expect("s").placement,
            c.status(b).expect("s").placement
        );
        // A gang of 2 × 3 GPUs cannot fit now (one node is full, the other has 4): none placed.
        let g = c.submit(gpu_job("g", 2, 3), 0.0).expect("g");
        assert!(c.schedule(0.0).is_empty());
        assert_eq!(c.free_total().gpu_milli, 4000);
        assert_eq!(
            c.status(g).expect("s").reason,
            Some(PendingReason::GangNotFittable {
                tasks: 2,
                placeable: 1
            })
        );
        c.end(a, JobState::Completed, 5.0).expect("end");
        c.end(b, JobState::Completed, 5.0).expect("end");
        assert_eq!(c.schedule(5.0), vec![g]);
        assert_eq!(c.status(g).expect("s").placement.len(), 2);
    }

    #[test]
    fn unhealthy_nodes_are_drained_and_their_gangs_requeued() {
        let mut c = Core::new(cluster(3, 4), QueuePolicy::Fifo, Blocking::Skip).expect("core");
        let gang = c.submit(gpu_job("gang", 2, 4), 0.0).expect("gang");
        let solo = c.submit(gpu_job("solo", 1, 4), 0.0).expect("solo");
        assert_eq!(c.schedule(0.0), vec![gang, solo]);
        let gang_node = c.status(gang).expect("s").placement[0].0.clone();
        let requeued = c
            .set_health(&gang_node, NodeHealth::Unhealthy)
            .expect("drain");
        assert_eq!(
            requeued,
            vec![gang],
            "the whole gang goes back, not one task"
        );
        assert_eq!(c.status(gang).expect("s").state, JobState::Pending);
        // Only 2 healthy nodes, one busy: the gang of 2 cannot run, and nothing lands on the
        // drained node.
        assert!(c.schedule(1.0).is_empty());
        assert_eq!(
            c.free_total().gpu_milli,
            8000,
            "the drained node's GPUs are free but unused"
        );
        c.end(solo, JobState::Completed, 2.0).expect("end");
        assert!(c.schedule(2.0).contains(&gang));
        assert!(
            c.status(gang)
                .expect("s")
                .placement
                .iter()
                .all(|(n, _)| *n != gang_node)
        );
        assert_eq!(c.health(&gang_node), Some(NodeHealth::Unhealthy));
        c.set_health(&gang_node, NodeHealth::Healthy)
            .expect("repaired");
        let more = c.submit(gpu_job("more", 1, 4), 3.0).expect("more");
        assert_eq!(c.schedule(3.0), vec![more]);
        assert!(c.set_health("nope", NodeHealth::Healthy).is_err());
    }

    #[test]
    fn easy_backfill_fills_holes_without_delaying_the_reservation() {
        // One node, 4 GPUs; A holds 2 until t = 100 (estimate). B (4 GPUs) waits for t = 100.
        let mut c = Core::new(cluster(1, 4), QueuePolicy::Fifo, Blocking::Backfill).expect("core");
        let a = c
            .submit(gpu_job("a", 1, 2).estimate(100.0), 0.0)
            .expect("a");
        assert_eq!(c.schedule(0.0), vec![a]);
        let b = c.submit(gpu_job("b", 1, 4).estimate(50.0), 1.0).expect("b");
        let long = c
            .submit(gpu_job("long", 1, 2).estimate(500.0), 2.0)
            .expect("long");
        let short = c
            .submit(gpu_job("short", 1, 2).estimate(50.0), 3.0)
            .expect("short");
        let unknown = c.submit(gpu_job("unknown", 1, 1), 4.0).expect("unknown");
        // `long` would hold 2 GPUs past t = 100 and delay B; `short` ends at 53 < 100.
        assert_eq!(c.schedule(4.0), vec![short]);
        let _ = (b, long, unknown);
        // Strict starts nothing behind B; Skip starts `long` (delaying B).
        for (blocking, want) in [(Blocking::Strict, 0), (Blocking::Skip, 1)] {
            let mut c = Core::new(cluster(1, 4), QueuePolicy::Fifo, blocking).expect("core");
            c.submit(gpu_job("a", 1, 2).estimate(100.0), 0.0)
                .expect("a");
            c.schedule(0.0);
            c.submit(gpu_job("b", 1, 4).estimate(50.0), 1.0).expect("b");
            let long = c
                .submit(gpu_job("long", 1, 2).estimate(500.0), 2.0)
                .expect("long");
            let started = c.schedule(2.0);
            assert_eq!(started.len(), want, "{blocking:?}");
            assert!(want == 0 || started == vec![long]);
        }
        // Without estimates there is no plan: backfill behaves as strict.
        let mut c = Core::new(cluster(1, 4), QueuePolicy::Fifo, Blocking::Backfill).expect("core");
        c.submit(gpu_job("a", 1, 2), 0.0).expect("a");
        c.schedule(0.0);
        c.submit(gpu_job("b", 1, 4), 1.0).expect("b");
        c.submit(gpu_job("s", 1, 1).estimate(1.0), 2.0).expect("s");
        assert!(c.schedule(2.0).is_empty());
    }

    #[test]
    fn never_fitting_jobs_are_rejected_with_the_reason() {
        let mut c = Core::new(cluster(2, 4), QueuePolicy::Fifo, Blocking::Strict).expect("core");
        let e = c
            .submit(gpu_job("big", 1, 8), 0.0)
            .expect_err("8 GPUs on 4-GPU nodes");
        assert!(e.to_string().contains("no node can hold one task"), "{e}");
        let e = c
            .submit(gpu_job("wide", 3, 4), 0.0)
            .expect_err("12 GPUs on 8");
        assert!(e.to_string().contains("holds 2"), "{e}");
        let e = c
            .submit(gpu_job("a100", 1, 1).gpu_model("A100"), 0.0)
            .expect_err("no A100");
        assert!(e.to_string().contains("A100"), "{e}");
        assert!(
            c.submit(JobSpec::new("zero", 1, Resources::zero()), 0.0)
                .is_err()
        );
        assert!(c.submit(gpu_job("none", 0, 1), 0.0).is_err());
        assert!(
            Core::new(
                vec![NodeSpec::new("x", Resources::new(1, 1, 0)); 2],
                QueuePolicy::Fifo,
                Blocking::Skip
            )
            .is_err()
        );
    }

    #[test]
    fn policies_and_blocking_order_the_queue() {
        // One node with 4 GPUs, busy; then three jobs wait.
        let mut c = Core::new(
            cluster(1, 4),
            QueuePolicy::ShortestJobFirst,
            Blocking::Strict,
        )
        .expect("core");
        let hog = c.submit(gpu_job("hog", 1, 4), 0.0).expect("hog");
        c.schedule(0.0);
        let long = c
            .submit(gpu_job("long", 1, 2).estimate(100.0), 1.0)
            .expect("l");
        let short = c
            .submit(gpu_job("short", 1, 2).estimate(10.0), 2.0)
            .expect("s");
        let wide = c
            .submit(gpu_job("wide", 1, 4).estimate(5.0), 3.0)
            .expect("w");
        let no_gpu = Some(PendingReason::Insufficient {
            resource: "gpu_milli".into(),
            needed: 2000,
            largest_free: 0,
            gpu_model: None,
        });
        assert_eq!(c.status(long).expect("s").reason, no_gpu);
        c.end(hog, JobState::Completed, 10.0).expect("end");
        // SJF: wide (5 s) first; strict blocking then stops short and long behind nothing else.
        assert_eq!(c.schedule(10.0), vec![wide]);
        assert_eq!(c.status(long).expect("s").reason, no_gpu);
        c.end(wide, JobState::Completed, 15.0).expect("end");
        assert_eq!(c.schedule(15.0), vec![short, long]);

        // Strict FIFO: a big job at the head blocks a small one behind it; Skip lets it pass.
        for (blocking, want) in [(Blocking::Strict, 0), (Blocking::Skip, 1)] {
            let mut c = Core::new(cluster(1, 4), QueuePolicy::Fifo, blocking).expect("core");
            let a = c.submit(gpu_job("a", 1, 2), 0.0).expect("a");
            c.schedule(0.0);
            let big = c.submit(gpu_job("big", 1, 4), 1.0).expect("big");
            let small = c.submit(gpu_job("small", 1, 1), 2.0).expect("small");
            assert_eq!(c.schedule(2.0).len(), want, "{blocking:?}");
            let _ = (a, big);
            if blocking == Blocking::Strict {
                assert_eq!(
                    c.status(small).expect("s").reason,
                    Some(PendingReason::BehindJobs { ahead: 1 })
                );
            }
        }
        // Priority.
        let mut c =
            Core::new(cluster(1, 1), QueuePolicy::Priority, Blocking::Strict).expect("core");
        let lo = c.submit(gpu_job("lo", 1, 1).priority(1), 0.0).expect("lo");
        let hi = c.submit(gpu_job("hi", 1, 1).priority(9), 1.0).expect("hi");
        assert_eq!(c.schedule(1.0), vec![hi]);
        c.end(lo, JobState::Cancelled, 2.0).expect("cancel pending");
        assert_eq!(c.pending(), 0);
        assert!(c.end(99, JobState::Completed, 0.0).is_err());
    }
}
