//! Nodes, jobs, states, pending reasons and events.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::resources::Resources;

/// A job's id within a pool.
pub type JobId = u64;

/// A machine: its capacity, GPU model, labels and place in the network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NodeSpec {
    /// Unique name.
    pub name: String,
    /// What it has.
    pub capacity: Resources,
    /// GPU model (`A100`, `V100`, …), if it has GPUs.
    pub gpu_model: Option<String>,
    /// The switch (or rack) it hangs off, for topology-aware packing.
    pub switch: Option<String>,
    /// Free-form labels.
    pub labels: BTreeMap<String, String>,
}

impl NodeSpec {
    /// A node named `name` with `capacity`.
    pub fn new(name: impl Into<String>, capacity: Resources) -> Self {
        Self {
            name: name.into(),
            capacity,
            gpu_model: None,
            switch: None,
            labels: BTreeMap::new(),
        }
    }

    /// With a GPU model.
    pub fn gpu_model(mut self, model: impl Into<String>) -> Self {
        self.gpu_model = Some(model.into());
        self
    }

    /// Under a switch.
    pub fn switch(mut self, switch: impl Into<String>) -> Self {
        self.switch = Some(switch.into());
        self
    }
}

/// What a job asks for. A job is a gang of `tasks` identical tasks: it runs only when every
/// task has a place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct JobSpec {
    /// Name (for people).
    pub name: String,
    /// Tenant (team, user or queue) it is charged to.
    pub tenant: String,
    /// Higher runs first under the priority policy.
    pub priority: i64,
    /// Gang size (≥ 1).
    pub tasks: u32,
    /// Resources of each task.
    pub per_task: Resources,
    /// Only nodes with this GPU model (or one of several, separated by `|`).
    pub gpu_model: Option<String>,
    /// The user's estimate of the run time in seconds (SJF, backfill, start-time estimates).
    pub runtime_estimate: Option<f64>,
    /// The true run time in seconds: only a simulated pool knows it in advance.
    pub duration: Option<f64>,
    /// Whether it may be preempted.
    pub preemptible: bool,
    /// What each task runs on a real pool (program and arguments). Without one, a task holds
    /// its resources for `duration` seconds, or until cancelled when that is unset too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Elastic: it starts with `tasks` and may grow to this many tasks in idle capacity, and
    /// shrink back to `tasks` when others wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tasks: Option<u32>,
}

impl JobSpec {
    /// A job of `tasks` tasks needing `per_task` each.
    pub fn new(name: impl Into<String>, tasks: u32, per_task: Resources) -> Self {
        Self {
            name: name.into(),
            tenant: "default".into(),
            priority: 0,
            tasks,
            per_task,
            gpu_model: None,
            runtime_estimate: None,
            duration: None,
            preemptible: false,
            command: None,
            max_tasks: None,
        }
    }

    /// Elastic between `tasks` and `max` tasks.
    pub fn elastic(mut self, max: u32) -> Self {
        self.max_tasks = Some(max);
        self
    }

    /// Running `argv` (program first) in each task, on a real pool.
    pub fn command<S: Into<String>>(mut self, argv: impl IntoIterator<Item = S>) -> Self {
        self.command = Some(argv.into_iter().map(Into::into).collect());
        self
    }

    /// Preemptible or not.
    pub fn preemptible(mut self, yes: bool) -> Self {
        self.preemptible = yes;
        self
    }

    /// Charged to `tenant`.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = tenant.into();
        self
    }

    /// With a priority.
    pub fn priority(mut self, p: i64) -> Self {
        self.priority = p;
        self
    }

    /// Needing GPUs of `model`.
    pub fn gpu_model(mut self, model: impl Into<String>) -> Self {
        self.gpu_model = Some(model.into());
        self
    }

    /// With a run-time estimate (seconds).
    pub fn estimate(mut self, seconds: f64) -> Self {
        self.runtime_estimate = Some(seconds);
        self
    }

    /// With a true duration (seconds), for simulation.
    pub fn duration(mut self, seconds: f64) -> Self {
        self.duration = Some(seconds);
        self
    }

    /// The whole gang's resources.
    pub fn total(&self) -> Resources {
        self.per_task.times(u64::from(self.tasks))
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for resources.
    Pending,
    /// All tasks placed and running.
    Running,
    /// Finished successfully.
    Completed,
    /// Finished with an error.
    Failed,
    /// Cancelled before finishing.
    Cancelled,
}

impl JobState {
    /// Whether the job will not change state again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Failed | JobState::Cancelled
        )
    }
}

/// Why a job is still pending, in a form a program can act on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum PendingReason {
    /// Not looked at yet.
    NotScheduledYet,
    /// No node has enough free of `resource` for one task (GPU-model constrained if set).
    Insufficient {
        /// `gpu_milli`, `cpu_milli`, `memory_mib` or a custom name.
        resource: String,
        /// Per task.
        needed: u64,
        /// The most any eligible node has free.
        largest_free: u64,
        /// The GPU model asked for, if any.
        gpu_model: Option<String>,
    },
    /// Each task fits somewhere, but not all of them at once.
    GangNotFittable {
        /// Gang size.
        tasks: u32,
        /// How many could be placed now.
        placeable: u32,
    },
    /// It would fit, but jobs ahead of it in the queue wait first.
    BehindJobs {
        /// How many.
        ahead: usize,
    },
    /// Starting it would take its tenant (or an ancestor) past its limit.
    Quota {
        /// The tenant whose limit binds.
        tenant: String,
        /// Which resource.
        resource: String,
        /// The limit.
        limit: u64,
        /// What the tenant would hold with this job.
        would_hold: u64,
    },
    /// A reason the backend reports that has no closer equivalent here (for Slurm, its reason
    /// code: `Dependency`, `JobHeldUser`, `QOSMaxGRESPerUser`, …).
    Backend {
        /// The backend's own code.
        code: String,
    },
}

impl std::fmt::Display for PendingReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let amount = |resource: &str, v: u64| match resource {
            "gpu_milli" => format!("{} GPU", v as f64 / 1000.0),
            "cpu_milli" => format!("{} CPU", v as f64 / 1000.0),
            "memory_mib" => format!("{v} MiB"),
            other => format!("{v} {other}"),
        };
        match self {
            PendingReason::NotScheduledYet => write!(f, "not looked at yet"),
            PendingReason::Insufficient {
                resource,
                needed,
                largest_free,
                gpu_model,
            } => {
                let model = gpu_model
                    .as_deref()
                    .map(|m| format!(" with GPU model {m}"))
                    .unwrap_or_default();
                if resource == "combination" {
                    write!(f, "no node{model} has the combination one task needs free")
                } else {
                    write!(
                        f,
                        "insufficient {}: a task needs {}, the most free on any node{model} is {}",
                        resource,
                        amount(resource, *needed),
                        amount(resource, *largest_free)
                    )
                }
            }
            PendingReason::GangNotFittable { tasks, placeable } => write!(
                f,
                "the gang needs {tasks} tasks placed at once; {placeable} fit now"
            ),
            PendingReason::BehindJobs { ahead } => {
                write!(f, "{ahead} job(s) ahead of it in the queue")
            }
            PendingReason::Backend { code } => write!(f, "the backend says {code}"),
            PendingReason::Quota {
                tenant,
                resource,
                limit,
                would_hold,
            } => write!(
                f,
                "quota: tenant {tenant} may hold {} and would hold {}",
                amount(resource, *limit),
                amount(resource, *would_hold)
            ),
        }
    }
}

/// A job's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct JobStatus {
    /// Id.
    pub id: JobId,
    /// Name.
    pub name: String,
    /// State.
    pub state: JobState,
    /// Why it is pending (pending jobs only).
    pub reason: Option<PendingReason>,
    /// Submission time (pool clock, seconds).
    pub submitted: f64,
    /// Start time.
    pub started: Option<f64>,
    /// End time.
    pub finished: Option<f64>,
    /// Tasks per node while running.
    pub placement: Vec<(String, u32)>,
}

/// A node's capacity and what is free.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NodeStatus {
    /// The node.
    pub spec: NodeSpec,
    /// Free now.
    pub free: Resources,
}

/// Something that happened to a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Event {
    /// Pool clock, seconds.
    pub time: f64,
    /// The job.
    pub job: JobId,
    /// Its new state.
    pub state: JobState,
}
