//! Node failures in the replay, and the max-share-deviation metric.

use aistd_scheduler::core::Core;
use aistd_scheduler::sim::{Failure, ReplayOptions, TraceJob, replay, replay_with};
use aistd_scheduler::trace::random_failures;
use aistd_scheduler::{Blocking, JobSpec, NodeSpec, QueuePolicy, Resources};

fn nodes(n: usize) -> Vec<NodeSpec> {
    (0..n)
        .map(|i| NodeSpec::new(format!("n{i}"), Resources::new(32, 256_000, 4)))
        .collect()
}

fn job(name: &str, tenant: &str, secs: f64) -> TraceJob {
    TraceJob::new(
        0.0,
        JobSpec::new(name, 1, Resources::new(1, 1000, 4))
            .tenant(tenant)
            .duration(secs),
    )
}

#[test]
fn a_failed_node_requeues_its_jobs_which_keep_their_progress() {
    let jobs = vec![job("a", "t", 1000.0)];
    let fail = ReplayOptions::default().failures(vec![Failure::new("n0", 100.0, 50.0)]);
    // With a spare node, the job moves at once: 100 s done, 900 s left, done at 1000.
    let core = Core::new(nodes(2), QueuePolicy::Fifo, Blocking::Strict).expect("core");
    let (r, _) = replay_with(core, &jobs, &fail).expect("replay");
    assert_eq!((r.node_failures, r.failure_requeues), (1, 1));
    assert!((r.makespan - 1000.0).abs() < 1e-9, "{}", r.makespan);
    // Alone, it waits for the repair at 150: done at 1050.
    let core = Core::new(nodes(1), QueuePolicy::Fifo, Blocking::Strict).expect("core");
    let (r, _) = replay_with(core, &jobs, &fail).expect("replay");
    assert!((r.makespan - 1050.0).abs() < 1e-9, "{}", r.makespan);
    // Unknown nodes are refused.
    let core = Core::new(nodes(1), QueuePolicy::Fifo, Blocking::Strict).expect("core");
    let bad = ReplayOptions::default().failures(vec![Failure::new("zz", 1.0, 1.0)]);
    let e = replay_with(core, &jobs, &bad).expect_err("unknown node");
    assert!(e.to_string().contains("zz"), "{e}");
}

#[test]
fn random_failures_are_seeded_and_within_the_horizon() {
    let n = nodes(10);
    let a = random_failures(&n, 100_000.0, 20_000.0, 600.0, 7).expect("failures");
    assert_eq!(
        a,
        random_failures(&n, 100_000.0, 20_000.0, 600.0, 7).expect("again")
    );
    assert_ne!(
        a,
        random_failures(&n, 100_000.0, 20_000.0, 600.0, 8).expect("other seed")
    );
    assert!(a.iter().all(|f| f.at < 100_000.0));
    // About horizon / (MTBF + repair) per node: 10 × 100,000 / 20,600 ≈ 49.
    assert!((25..=80).contains(&a.len()), "{}", a.len());
    assert!(random_failures(&n, 1.0, 0.0, 1.0, 1).is_err());
    // A replay survives them and completes everything.
    let jobs: Vec<TraceJob> = (0..40)
        .map(|k| job(&format!("j{k}"), "t", 5000.0))
        .collect();
    let core = Core::new(n, QueuePolicy::Fifo, Blocking::Skip).expect("core");
    let (r, _) = replay_with(core, &jobs, &ReplayOptions::default().failures(a)).expect("replay");
    assert_eq!(r.completed, 40);
    assert!(r.failure_requeues > 0);
}

#[test]
fn max_share_deviation_measures_unequal_gpu_time() {
    // One node, two tenants: FIFO runs a's two jobs before b's; over the whole replay each
    // gets half the GPU-seconds: deviation 0.
    let jobs = vec![
        job("a1", "a", 100.0),
        job("a2", "a", 100.0),
        job("b1", "b", 100.0),
        job("b2", "b", 100.0),
    ];
    let core = Core::new(nodes(1), QueuePolicy::Fifo, Blocking::Strict).expect("core");
    assert!(replay(core, &jobs).expect("replay").max_share_deviation < 1e-12);
    // a uses 300 s of the node, b 100 s: shares 0.75 / 0.25 against 0.5 each.
    let jobs = vec![job("a1", "a", 300.0), job("b1", "b", 100.0)];
    let core = Core::new(nodes(1), QueuePolicy::Fifo, Blocking::Strict).expect("core");
    let r = replay(core, &jobs).expect("replay");
    assert!(
        (r.max_share_deviation - 0.25).abs() < 1e-12,
        "{}",
        r.max_share_deviation
    );
}
