//! Tenant policies in the scheduling core: DRF (the paper's example), weighted fair share over
//! time, hierarchical guarantees and limits, and preemption by priority and to restore
//! guarantees.

use aistd_scheduler::core::Core;
use aistd_scheduler::sim::{TraceJob, replay};
use aistd_scheduler::tenants::{Tenant, Tenants};
use aistd_scheduler::{
    Blocking, Error, JobSpec, JobState, NodeSpec, PendingReason, QueuePolicy, Resources,
};

fn running_per_tenant(core: &Core, ids: &[(u64, &str)], tenant: &str) -> usize {
    ids.iter()
        .filter(|(id, t)| {
            *t == tenant && core.status(*id).expect("status").state == JobState::Running
        })
        .count()
}

/// The DRF paper (Ghodsi et al., NSDI 2011, §4): 9 CPUs and 18 GB; user A's tasks need
/// ⟨1 CPU, 4 GB⟩, user B's ⟨3 CPUs, 1 GB⟩. DRF runs 3 tasks of A and 2 of B, both at a
/// dominant share of 2/3 — even though A queued all its tasks first.
#[test]
fn drf_reproduces_the_papers_example_as_a_queue_policy() {
    let node = || vec![NodeSpec::new("m", Resources::new(9, 18, 0))];
    let submit = |core: &mut Core| -> Vec<(u64, &'static str)> {
        let mut ids = Vec::new();
        for (user, cpu, mem) in [("A", 1, 4), ("B", 3, 1)] {
            for k in 0..6 {
                let job =
                    JobSpec::new(format!("{user}{k}"), 1, Resources::new(cpu, mem, 0)).tenant(user);
                ids.push((core.submit(job, 0.0).expect("submit"), user));
            }
        }
        ids
    };
    let mut drf = Core::new(
        node(),
        QueuePolicy::DominantResourceFairness,
        Blocking::Skip,
    )
    .expect("core");
    let ids = submit(&mut drf);
    drf.schedule(0.0);
    assert_eq!(running_per_tenant(&drf, &ids, "A"), 3);
    assert_eq!(running_per_tenant(&drf, &ids, "B"), 2);
    let total = drf.capacity_total();
    for user in ["A", "B"] {
        let share = drf.tenant_usage(user).dominant_share(&total);
        assert!((share - 2.0 / 3.0).abs() < 1e-12, "{user}: {share}");
    }
    // FIFO in the same order gives A four tasks (16 GB) and B one: the unfairness DRF fixes.
    let mut fifo = Core::new(node(), QueuePolicy::Fifo, Blocking::Skip).expect("core");
    let ids = submit(&mut fifo);
    fifo.schedule(0.0);
    assert_eq!(running_per_tenant(&fifo, &ids, "A"), 4);
    assert_eq!(running_per_tenant(&fifo, &ids, "B"), 1);
}

/// Weighted fair share over time: two tenants with a backlog of identical 1-GPU jobs on 4
/// GPUs, weights 3 : 1, queued alternately. Over time their GPU-seconds come out 3 : 1; FIFO
/// gives 1 : 1.
#[test]
fn fair_share_divides_gpu_time_by_weight() {
    let nodes = vec![NodeSpec::new("n", Resources::new(64, 512_000, 4))];
    let mut jobs = Vec::new();
    for k in 0..200 {
        for t in ["heavy", "light"] {
            jobs.push(TraceJob::new(
                0.0,
                JobSpec::new(format!("{t}{k}"), 1, Resources::new(1, 1000, 1))
                    .tenant(t)
                    .duration(100.0),
            ));
        }
    }
    let tenants = Tenants::new(vec![
        Tenant::new("heavy").weight(3.0),
        Tenant::new("light").weight(1.0),
    ])
    .expect("tenants");
    // GPU-seconds each tenant has received by t = 6000 s (240 jobs' worth of 4 GPUs × 6000 s).
    let served_by = |policy: QueuePolicy| -> (f64, f64) {
        let core = Core::new(nodes.clone(), policy, Blocking::Strict)
            .expect("core")
            .with_tenants(tenants.clone())
            .expect("tenants");
        let mut core_run = core;
        let mut ids = Vec::new();
        for j in &jobs {
            ids.push((
                core_run.submit(j.spec.clone(), 0.0).expect("submit"),
                j.spec.tenant.clone(),
            ));
        }
        let mut t = 0.0;
        while t < 6000.0 {
            for (id, _) in &ids {
                if core_run.status(*id).expect("s").state == JobState::Running {
                    core_run.end(*id, JobState::Completed, t).expect("end");
                }
            }
            core_run.schedule(t);
            t += 100.0;
        }
        let done = |tenant: &str| {
            ids.iter()
                .filter(|(id, t)| t == tenant && core_run.status(*id).expect("s").started.is_some())
                .count() as f64
                * 100.0
        };
        (done("heavy"), done("light"))
    };
    let (h, l) = served_by(QueuePolicy::FairShare);
    assert!(
        (h / l - 3.0).abs() < 0.2,
        "fair share: heavy {h} vs light {l}"
    );
    eprintln!("fair share by 6000 s: heavy {h} GPU-s, light {l} GPU-s");
    // FIFO over the interleaved queue ignores the weights: 1 : 1.
    let (h, l) = served_by(QueuePolicy::Fifo);
    assert_eq!(h, l);
    // The replay agrees: the light tenant's jobs wait longer under fair share, but not forever.
    let core = Core::new(nodes.clone(), QueuePolicy::FairShare, Blocking::Strict)
        .expect("core")
        .with_tenants(tenants)
        .expect("tenants");
    let r = replay(core, &jobs).expect("replay");
    assert_eq!(r.completed, 400);
}

fn org() -> Tenants {
    // research may hold 6 GPUs in all; vision is guaranteed 4 of them, nlp 2.
    Tenants::new(vec![
        Tenant::new("research").limit(Resources::new(0, 0, 6)),
        Tenant::new("vision")
            .parent("research")
            .guaranteed(Resources::new(0, 0, 4)),
        Tenant::new("nlp")
            .parent("research")
            .guaranteed(Resources::new(0, 0, 2)),
    ])
    .expect("tenants")
}

fn gpu_job(name: &str, tenant: &str, gpus: u64) -> JobSpec {
    JobSpec::new(name, 1, Resources::new(1, 1000, gpus)).tenant(tenant)
}

#[test]
fn hierarchical_limits_bind_and_say_so_while_others_proceed() {
    let nodes = vec![NodeSpec::new("n", Resources::new(64, 512_000, 8))];
    let mut core = Core::new(
        nodes,
        QueuePolicy::DominantResourceFairness,
        Blocking::Strict,
    )
    .expect("core")
    .with_tenants(org())
    .expect("tenants");
    // nlp borrows beyond its guarantee of 2: fine while research stays under 6.
    let a = core.submit(gpu_job("a", "nlp", 3), 0.0).expect("a");
    let b = core.submit(gpu_job("b", "vision", 3), 0.0).expect("b");
    core.schedule(0.0);
    assert_eq!(core.status(a).expect("a").state, JobState::Running);
    assert_eq!(core.status(b).expect("b").state, JobState::Running);
    assert_eq!(
        core.tenant_usage("research"),
        core.tenant_usage("nlp").plus(&core.tenant_usage("vision"))
    );
    // Another vision GPU would take research to 7 > 6: it waits, with the quota as the reason,
    // although the cluster has 2 GPUs free, and an outside tenant's job still starts.
    let c = core.submit(gpu_job("c", "vision", 1), 0.0).expect("c");
    let d = core.submit(gpu_job("d", "other", 2), 0.0).expect("d");
    core.schedule(0.0);
    assert_eq!(core.status(d).expect("d").state, JobState::Running);
    match core.status(c).expect("c").reason {
        Some(PendingReason::Quota {
            tenant,
            resource,
            limit,
            would_hold,
        }) => {
            assert_eq!(
                (tenant.as_str(), resource.as_str()),
                ("research", "gpu_milli")
            );
            assert_eq!((limit, would_hold), (6000, 7000));
        }
        other => panic!("expected a quota reason, got {other:?}"),
    }
    // A job larger than the limit can never run: refused at submit.
    match core.submit(gpu_job("huge", "nlp", 7), 0.0) {
        Err(Error::NeverFits { reason, .. }) => assert!(reason.contains("research"), "{reason}"),
        other => panic!("expected NeverFits, got {other:?}"),
    }
}

#[test]
fn preemption_restores_guarantees_by_evicting_borrowers_whole() {
    let nodes = (0..2)
        .map(|i| NodeSpec::new(format!("n{i}"), Resources::new(64, 512_000, 4)))
        .collect();
    let mut core = Core::new(
        nodes,
        QueuePolicy::DominantResourceFairness,
        Blocking::Strict,
    )
    .expect("core")
    .with_tenants(
        Tenants::new(vec![
            Tenant::new("vision").guaranteed(Resources::new(0, 0, 4)),
            Tenant::new("nlp").guaranteed(Resources::new(0, 0, 4)),
        ])
        .expect("tenants"),
    )
    .expect("with tenants");
    // nlp fills the idle cluster: a 2 × 2-GPU gang and four 1-GPU jobs (borrowing 4 GPUs).
    let gang = core
        .submit(
            JobSpec::new("gang", 2, Resources::new(1, 1000, 2))
                .tenant("nlp")
                .preemptible(true),
            0.0,
        )
        .expect("gang");
    let mut small = Vec::new();
    for k in 0..4 {
        small.push(
            core.submit(
                gpu_job(&format!("s{k}"), "nlp", 1).preemptible(true),
                k as f64,
            )
            .expect("small"),
        );
    }
    core.schedule(4.0);
    assert_eq!(core.free_total().gpu_milli, 0);
    // vision, within its guarantee, asks for 3 GPUs on one node.
    let v = core.submit(gpu_job("v", "vision", 3), 5.0).expect("v");
    assert!(core.schedule(5.0).is_empty());
    let (victims, started) = core.preempt_for(5.0).expect("preempt");
    assert_eq!(started, Some(v));
    assert_eq!(core.status(v).expect("v").state, JobState::Running);
    // The fewest evictions that make room on one node, whole gangs only.
    let gpus_freed: u64 = victims
        .iter()
        .map(|id| core.spec(*id).expect("spec").total().gpu_milli)
        .sum();
    assert!(gpus_freed >= 3000 && victims.len() <= 3, "{victims:?}");
    for id in &victims {
        let st = core.status(*id).expect("victim");
        assert_eq!(st.state, JobState::Pending, "requeued, not lost");
        assert!(st.placement.is_empty(), "no partial gang holds anything");
    }
    let g = core.status(gang).expect("gang");
    let placed: u32 = g.placement.iter().map(|(_, c)| c).sum();
    assert!(placed == 0 || placed == 2, "never a partial gang: {g:?}");
    // Nothing more to do: vision is served, nlp is within its own guarantee again.
    assert_eq!(core.preempt_for(6.0).expect("again"), (vec![], None));
}

#[test]
fn preemption_by_priority_spares_non_preemptible_and_equal_priority_jobs() {
    let nodes = vec![NodeSpec::new("n", Resources::new(64, 512_000, 4))];
    let mut core = Core::new(nodes, QueuePolicy::Priority, Blocking::Strict).expect("core");
    let keep = core
        .submit(gpu_job("keep", "t", 2).priority(1), 0.0)
        .expect("keep");
    let low = core
        .submit(gpu_job("low", "t", 2).priority(1).preemptible(true), 0.0)
        .expect("low");
    core.schedule(0.0);
    let same = core
        .submit(gpu_job("same", "t", 2).priority(1), 1.0)
        .expect("same");
    assert_eq!(
        core.preempt_for(1.0).expect("p"),
        (vec![], None),
        "equal priority waits"
    );
    core.end(same, JobState::Cancelled, 1.0).expect("cancel");
    let urgent = core
        .submit(gpu_job("urgent", "t", 2).priority(10), 2.0)
        .expect("urgent");
    assert_eq!(core.preempt_for(2.0).expect("p"), (vec![low], Some(urgent)));
    assert_eq!(core.status(keep).expect("keep").state, JobState::Running);
    assert_eq!(core.status(low).expect("low").state, JobState::Pending);
}

#[test]
fn the_simulator_preempts_when_asked() {
    let nodes = vec![NodeSpec::new("n", Resources::new(64, 512_000, 4))];
    let jobs = vec![
        TraceJob::new(
            0.0,
            gpu_job("long", "t", 4).duration(1000.0).preemptible(true),
        ),
        TraceJob::new(10.0, gpu_job("urgent", "t", 4).priority(5).duration(100.0)),
    ];
    let core = Core::new(nodes.clone(), QueuePolicy::Priority, Blocking::Strict)
        .expect("core")
        .with_preemption(true);
    let r = replay(core, &jobs).expect("replay");
    assert_eq!((r.completed, r.preemptions), (2, 1));
    // urgent ran 10..110; long ran 0..10 and 110..1100: makespan 1100.
    assert!((r.makespan - 1100.0).abs() < 1e-9, "{}", r.makespan);
    let core = Core::new(nodes, QueuePolicy::Priority, Blocking::Strict).expect("core");
    let r = replay(core, &jobs).expect("replay");
    assert_eq!(r.preemptions, 0);
}
