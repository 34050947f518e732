//! Elastic jobs grow into idle capacity and shrink when others wait.

use aistd_scheduler::core::Core;
use aistd_scheduler::sim::{TraceJob, replay_runs};
use aistd_scheduler::{Blocking, Error, JobSpec, JobState, NodeSpec, QueuePolicy, Resources};

fn node() -> Vec<NodeSpec> {
    vec![NodeSpec::new("n", Resources::new(64, 512_000, 8))]
}

fn gpu(name: &str, tasks: u32) -> JobSpec {
    JobSpec::new(name, tasks, Resources::new(1, 1000, 1))
}

#[test]
fn elastic_jobs_grow_shrink_only_as_needed_and_grow_back() {
    let mut c = Core::new(node(), QueuePolicy::Fifo, Blocking::Strict).expect("core");
    let e = c.submit(gpu("elastic", 2).elastic(8), 0.0).expect("e");
    assert_eq!(c.schedule(0.0), vec![e]);
    assert_eq!(c.tasks_now(e).expect("n"), 2);
    let (changed, started) = c.resize(0.0).expect("resize");
    assert_eq!((changed, started), (vec![(e, 2, 8)], vec![]));
    assert_eq!(c.free_total().gpu_milli, 0);
    // A 3-GPU job arrives: the elastic job gives back 3 tasks, not all 6 extras.
    let w = c.submit(gpu("wide", 3), 1.0).expect("w");
    assert!(c.schedule(1.0).is_empty());
    let (changed, started) = c.resize(1.0).expect("resize");
    assert_eq!(changed, vec![(e, 8, 5)]);
    assert_eq!(started, vec![w]);
    assert_eq!(c.status(w).expect("w").state, JobState::Running);
    // Never below its minimum: a 7-GPU job cannot be helped (only 3 extras), nothing shrinks.
    let huge = c.submit(gpu("huge", 7), 2.0).expect("huge");
    assert_eq!(c.resize(2.0).expect("resize"), (vec![], vec![]));
    c.end(huge, JobState::Cancelled, 2.0).expect("cancel");
    // When the wide job ends, it grows back.
    c.end(w, JobState::Completed, 3.0).expect("end");
    c.schedule(3.0);
    assert_eq!(c.resize(3.0).expect("resize").0, vec![(e, 5, 8)]);
    // Tenant accounting follows the size: all of it is returned at the end.
    c.end(e, JobState::Completed, 4.0).expect("end");
    assert!(c.tenant_usage("default").is_zero());
    assert_eq!(c.free_total(), c.capacity_total());
    assert!(matches!(
        c.submit(gpu("bad", 4).elastic(2), 5.0),
        Err(Error::InvalidInput { .. })
    ));
}

#[test]
fn the_simulator_speeds_elastic_jobs_up_with_their_size() {
    // 800 s of work at its minimum of 2 tasks. Alone on 8 GPUs it runs at 8 tasks: 200 s.
    let alone = vec![TraceJob::new(0.0, gpu("e", 2).elastic(8).duration(800.0))];
    let core = Core::new(node(), QueuePolicy::Fifo, Blocking::Strict).expect("core");
    let (r, runs) = replay_runs(core, &alone).expect("replay");
    assert!((r.makespan - 200.0).abs() < 1e-9, "{}", r.makespan);
    assert!((r.gpu_utilization - 1.0).abs() < 1e-9);
    // It grew in the instant it started: one run of 8 tasks.
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].placement, vec![("n".to_string(), 8)]);
    // A 4-GPU job of 100 s arrives at 100 s: 0–100 at 8 tasks (400 of 800 done), 100–200 at 4
    // (200 more), then 8 again: the last 200 take 50 s. Done at 250.
    let jobs = vec![
        TraceJob::new(0.0, gpu("e", 2).elastic(8).duration(800.0)),
        TraceJob::new(100.0, gpu("w", 4).duration(100.0)),
    ];
    let core = Core::new(node(), QueuePolicy::Fifo, Blocking::Strict).expect("core");
    let (r, _) = replay_runs(core, &jobs).expect("replay");
    assert_eq!(r.completed, 2);
    assert!((r.makespan - 250.0).abs() < 1e-9, "{}", r.makespan);
    assert_eq!(r.avg_wait, 0.0, "the wide job did not wait");
}
