//! Placement: fractional GPUs on devices, topology-aware gangs, spread.

use aistd_scheduler::core::{Core, Placement};
use aistd_scheduler::{Blocking, Error, JobSpec, JobState, NodeSpec, QueuePolicy, Resources};

fn gpus(milli: u64) -> Resources {
    let mut r = Resources::new(1, 1000, 0);
    r.gpu_milli = milli;
    r
}

#[test]
fn fractions_of_a_gpu_pack_on_devices_not_on_the_node_total() {
    // Two GPUs: three 0.6-GPU tasks add up to 1.8 ≤ 2, but no device holds two of them.
    let node = vec![NodeSpec::new("n", Resources::new(32, 64_000, 2))];
    let mut c = Core::new(node, QueuePolicy::Fifo, Blocking::Skip).expect("core");
    let ids: Vec<u64> = (0..3)
        .map(|k| {
            c.submit(JobSpec::new(format!("f{k}"), 1, gpus(600)), 0.0)
                .expect("submit")
        })
        .collect();
    let small = c
        .submit(JobSpec::new("s", 1, gpus(400)), 0.0)
        .expect("small");
    let started = c.schedule(0.0);
    assert_eq!(
        started,
        vec![ids[0], ids[1], small],
        "the 0.4 shares a device with a 0.6"
    );
    assert_eq!(c.status(ids[2]).expect("s").state, JobState::Pending);
    // A whole GPU cannot be had either now: 2 × 0.6 + 0.4 leaves 0.4 + 0.0 on devices.
    let whole = c
        .submit(JobSpec::new("w", 1, gpus(1000)), 0.0)
        .expect("whole");
    assert!(c.schedule(0.0).is_empty());
    // f0 ends: its 0.6 goes to the waiting 0.6 (the device still holds the 0.4).
    c.end(ids[0], JobState::Completed, 1.0).expect("end");
    assert_eq!(c.schedule(1.0), vec![ids[2]]);
    // When both leave that device, it is whole again: the whole-GPU job takes it.
    c.end(ids[2], JobState::Completed, 2.0).expect("end");
    c.end(small, JobState::Completed, 2.0).expect("end");
    assert_eq!(c.schedule(2.0), vec![whole]);
    // More than one GPU must be whole GPUs.
    match c.submit(JobSpec::new("odd", 1, gpus(1500)), 0.0) {
        Err(Error::InvalidInput { reason, .. }) => {
            assert!(reason.contains("whole GPUs"), "{reason}")
        }
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    // Fractions never exceed a device, so a gang of 5 × 0.6 on 2 GPUs can never run.
    let one = vec![NodeSpec::new("n", Resources::new(32, 64_000, 2))];
    let mut c = Core::new(one, QueuePolicy::Fifo, Blocking::Skip).expect("core");
    assert!(matches!(
        c.submit(JobSpec::new("g", 3, gpus(600)), 0.0),
        Err(Error::NeverFits { .. })
    ));
}

fn two_switches() -> Vec<NodeSpec> {
    (0..4)
        .map(|i| {
            NodeSpec::new(format!("n{i}"), Resources::new(32, 256_000, 4))
                .switch(format!("s{}", i / 2))
        })
        .collect()
}

#[test]
fn gangs_go_on_one_node_then_one_switch() {
    let mut c = Core::new(two_switches(), QueuePolicy::Fifo, Blocking::Skip).expect("core");
    // n1 (switch s0) is half full.
    let half = c
        .submit(JobSpec::new("half", 1, Resources::new(1, 1000, 2)), 0.0)
        .expect("half");
    c.schedule(0.0);
    assert_eq!(c.status(half).expect("s").placement[0].0, "n0");
    // A gang of 2 × 2 GPUs fits on one node: it gets one (n0's other half, best fit).
    let small = c
        .submit(JobSpec::new("small", 2, Resources::new(1, 1000, 1)), 0.0)
        .expect("small");
    c.schedule(0.0);
    assert_eq!(
        c.status(small).expect("s").placement,
        vec![("n0".to_string(), 2)]
    );
    // n0 is full now; s0 has n1 (4 free); s1 has n2 and n3. A gang of 2 × 4 GPUs cannot go
    // under s0 (one node of room), so it takes both nodes of s1, not n1 + n2 across switches.
    let gang = c
        .submit(JobSpec::new("gang", 2, Resources::new(1, 1000, 4)), 0.0)
        .expect("gang");
    c.schedule(0.0);
    let mut nodes: Vec<String> = c
        .status(gang)
        .expect("s")
        .placement
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    nodes.sort();
    assert_eq!(nodes, vec!["n2", "n3"]);
    // Without switch labels, the same gang is placed task by task (best fit): n1, then n2.
    let flat: Vec<NodeSpec> = (0..4)
        .map(|i| NodeSpec::new(format!("n{i}"), Resources::new(32, 256_000, 4)))
        .collect();
    let mut c = Core::new(flat, QueuePolicy::Fifo, Blocking::Skip).expect("core");
    c.submit(JobSpec::new("half", 1, Resources::new(1, 1000, 2)), 0.0)
        .expect("half");
    c.submit(JobSpec::new("small", 2, Resources::new(1, 1000, 1)), 0.0)
        .expect("small");
    let gang = c
        .submit(JobSpec::new("gang", 2, Resources::new(1, 1000, 4)), 0.0)
        .expect("gang");
    c.schedule(0.0);
    let placed: Vec<String> = c
        .status(gang)
        .expect("s")
        .placement
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(placed, vec!["n1", "n2"]);
}

#[test]
fn spread_puts_tasks_on_the_emptiest_nodes() {
    let nodes = || two_switches();
    let job = || JobSpec::new("j", 1, Resources::new(1, 1000, 1));
    let mut packed = Core::new(nodes(), QueuePolicy::Fifo, Blocking::Skip).expect("core");
    let mut spread = Core::new(nodes(), QueuePolicy::Fifo, Blocking::Skip)
        .expect("core")
        .with_placement(Placement::Spread);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..4 {
        a.push(packed.submit(job(), 0.0).expect("a"));
        b.push(spread.submit(job(), 0.0).expect("b"));
    }
    packed.schedule(0.0);
    spread.schedule(0.0);
    let used = |c: &Core, ids: &[u64]| -> std::collections::BTreeSet<String> {
        ids.iter()
            .map(|id| c.status(*id).expect("s").placement[0].0.clone())
            .collect()
    };
    assert_eq!(used(&packed, &a).len(), 1, "best fit packs one node");
    assert_eq!(used(&spread, &b).len(), 4, "spread uses every node");
}
