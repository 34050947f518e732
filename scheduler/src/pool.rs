//! The [`ResourcePool`] trait.

use std::sync::Arc;

use crate::error::Result;
use crate::model::{Event, JobId, JobSpec, JobStatus, NodeStatus};

/// Somewhere jobs run: a simulated cluster, this machine, or a Slurm cluster.
///
/// # Contract
///
/// Every implementation guarantees (and the `conformance` module checks):
/// 1. `submit` rejects, with [`crate::Error::NeverFits`] naming why, a job that could not run
///    even on the empty pool; it never queues one to wait forever.
/// 2. A gang runs whole: a job is `Running` only when every task has a place, and its placement
///    lists exactly `tasks` tasks. No partial gang ever holds resources.
/// 3. Resources are conserved: on every node, free plus what running jobs hold equals capacity,
///    and free is never negative.
/// 4. `status` of a pending job carries a [`crate::PendingReason`]; of an unknown id,
///    [`crate::Error::NotFound`].
/// 5. `cancel` ends a pending or running job and frees what it held; cancelling a job that has
///    ended is a no-op.
/// 6. `events(since)` returns the events from index `since` on, in order, with non-decreasing
///    times; the same call returns the same events.
pub trait ResourcePool: Send + Sync + std::fmt::Debug {
    /// The pool's name.
    fn name(&self) -> &str;

    /// Every node: capacity, labels and what is free now.
    fn nodes(&self) -> Result<Vec<NodeStatus>>;

    /// Queues a job.
    fn submit(&self, job: JobSpec) -> Result<JobId>;

    /// A job's state, placement and pending reason.
    fn status(&self, id: JobId) -> Result<JobStatus>;

    /// Ends a job.
    fn cancel(&self, id: JobId) -> Result<()>;

    /// Events from index `since` on.
    fn events(&self, since: usize) -> Result<Vec<Event>>;

    /// When a pending job is expected to start (pool clock), if the pool can tell; its start
    /// time once it has started. The default knows nothing.
    fn estimated_start(&self, id: JobId) -> Result<Option<f64>> {
        self.status(id).map(|s| s.started)
    }
}

macro_rules! forward {
    ($t:ty) => {
        impl<P: ResourcePool + ?Sized> ResourcePool for $t {
            fn name(&self) -> &str {
                (**self).name()
            }
            fn nodes(&self) -> Result<Vec<NodeStatus>> {
                (**self).nodes()
            }
            fn submit(&self, job: JobSpec) -> Result<JobId> {
                (**self).submit(job)
            }
            fn status(&self, id: JobId) -> Result<JobStatus> {
                (**self).status(id)
            }
            fn cancel(&self, id: JobId) -> Result<()> {
                (**self).cancel(id)
            }
            fn events(&self, since: usize) -> Result<Vec<Event>> {
                (**self).events(since)
            }
            fn estimated_start(&self, id: JobId) -> Result<Option<f64>> {
                (**self).estimated_start(id)
            }
        }
    };
}

forward!(Box<P>);
forward!(Arc<P>);
