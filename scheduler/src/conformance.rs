//! The conformance kit: what every [`ResourcePool`] must do (its `# Contract`). Each function
//! checks one clause on a pool the caller provides and panics with the clause on failure. The
//! kit assumes an idle pool with at least one node that can hold a 1-CPU task.

use crate::Error;
use crate::model::{JobSpec, JobState, PendingReason};
use crate::pool::ResourcePool;
use crate::resources::Resources;

fn largest(pool: &dyn ResourcePool) -> Resources {
    let nodes = pool
        .nodes()
        .expect("contract: nodes() works on an idle pool");
    nodes
        .into_iter()
        .max_by_key(|n| (n.spec.capacity.cpu_milli, n.spec.capacity.memory_mib))
        .map(|n| n.spec.capacity)
        .expect("contract: a pool has nodes")
}

/// Clause 1: a job larger than every node is rejected with `NeverFits`, not queued.
pub fn never_fitting_jobs_are_rejected(pool: &dyn ResourcePool) {
    let big = largest(pool).times(2).plus(&Resources::new(1, 1, 0));
    match pool.submit(JobSpec::new("conformance-too-big", 1, big)) {
        Err(Error::NeverFits { reason, .. }) => {
            assert!(!reason.is_empty(), "clause 1: the reason is empty")
        }
        other => panic!("clause 1: expected NeverFits, got {other:?}"),
    }
}

/// What each node has free now.
fn free(pool: &dyn ResourcePool) -> Vec<Resources> {
    pool.nodes()
        .expect("contract: nodes() works")
        .into_iter()
        .map(|n| n.free)
        .collect()
}

/// Clauses 2 and 3: a running gang holds exactly its tasks, and free + held = capacity.
pub fn gangs_run_whole_and_resources_are_conserved(pool: &dyn ResourcePool) {
    let before = free(pool);
    let task = Resources::new(1, 1, 0);
    let id = pool
        .submit(JobSpec::new("conformance-gang", 2, task.clone()))
        .expect("clause 2: a 2 × 1-CPU gang is accepted");
    let st = pool.status(id).expect("status");
    if st.state == JobState::Running {
        let placed: u32 = st.placement.iter().map(|(_, c)| c).sum();
        assert_eq!(placed, 2, "clause 2: a running gang places every task");
        let after = free(pool);
        let held = before
            .iter()
            .fold(Resources::zero(), |a, r| a.plus(r))
            .minus(&after.iter().fold(Resources::zero(), |a, r| a.plus(r)));
        assert_eq!(
            held,
            Some(task.times(2)),
            "clause 3: the gang holds exactly 2 tasks"
        );
    } else {
        assert!(
            st.placement.is_empty(),
            "clause 2: a pending gang holds nothing"
        );
    }
    pool.cancel(id).expect("cancel");
    let after = free(pool);
    assert_eq!(before, after, "clause 3/5: cancelling frees everything");
}

/// Clause 4: pending jobs have a reason; unknown ids are `NotFound`.
pub fn pending_jobs_have_reasons(pool: &dyn ResourcePool) {
    let all = largest(pool);
    let hog = pool
        .submit(JobSpec::new("conformance-hog", 1, all.clone()))
        .expect("a node-sized job is accepted");
    let waiter = pool
        .submit(JobSpec::new("conformance-waiter", 1, all))
        .expect("accepted");
    let st = pool.status(waiter).expect("status");
    if st.state == JobState::Pending {
        assert!(st.reason.is_some(), "clause 4: a pending job has a reason");
        assert_ne!(
            st.reason,
            Some(PendingReason::NotScheduledYet),
            "clause 4: the reason says why"
        );
    }
    assert!(
        matches!(pool.status(u64::MAX), Err(Error::NotFound(_))),
        "clause 4: unknown ids are NotFound"
    );
    pool.cancel(waiter).expect("cancel");
    pool.cancel(hog).expect("cancel");
    pool.cancel(hog)
        .expect("clause 5: cancelling an ended job is a no-op");
    assert_eq!(pool.status(hog).expect("status").state, JobState::Cancelled);
}

/// Clause 6: events are ordered and repeatable.
pub fn events_are_ordered_and_repeatable(pool: &dyn ResourcePool) {
    let id = pool
        .submit(JobSpec::new(
            "conformance-events",
            1,
            Resources::new(1, 1, 0),
        ))
        .expect("accepted");
    pool.cancel(id).expect("cancel");
    let a = pool.events(0).expect("events");
    let b = pool.events(0).expect("events");
    assert_eq!(a, b, "clause 6: the same call returns the same events");
    assert!(
        a.windows(2).all(|w| w[0].time <= w[1].time),
        "clause 6: times never decrease"
    );
    assert!(
        a.iter().any(|e| e.job == id),
        "clause 6: the job's events are listed"
    );
    let tail = pool.events(a.len().saturating_sub(1)).expect("events");
    assert_eq!(
        tail.len(),
        1.min(a.len()),
        "clause 6: `since` skips earlier events"
    );
}

/// Every clause.
pub fn run_all(pool: &dyn ResourcePool) {
    never_fitting_jobs_are_rejected(pool);
    gangs_run_whole_and_resources_are_conserved(pool);
    pending_jobs_have_reasons(pool);
    events_are_ordered_and_repeatable(pool);
}
