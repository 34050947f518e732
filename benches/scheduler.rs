//! Scheduling: placement decisions per second on a large cluster, and trace replay cost.

use aistd::scheduler::core::Core;
use aistd::scheduler::sim::{replay, simulate};
use aistd::scheduler::trace::{Synthetic, synthetic};
use aistd::scheduler::{Blocking, JobSpec, NodeSpec, QueuePolicy, Resources};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn cluster(n: usize) -> Vec<NodeSpec> {
    (0..n)
        .map(|i| {
            NodeSpec::new(format!("n{i}"), Resources::new(64, 524_288, 8))
                .switch(format!("s{}", i / 32))
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    // 5,000 nodes × 8 GPUs, 50,000 queued single-GPU jobs: one pass places 40,000 and examines
    // the remaining 10,000.
    let mut g = c.benchmark_group("placement");
    g.sample_size(10).throughput(Throughput::Elements(50_000));
    g.bench_function("5000_nodes_50000_single_gpu_jobs", |b| {
        b.iter_batched(
            || {
                let mut core =
                    Core::new(cluster(5000), QueuePolicy::Fifo, Blocking::Skip).expect("core");
                for i in 0..50_000 {
                    core.submit(
                        JobSpec::new(format!("j{i}"), 1, Resources::new(4, 32_000, 1)),
                        0.0,
                    )
                    .expect("submit");
                }
                core
            },
            // The core is returned so that dropping it is not timed.
            |mut core| {
                core.schedule(0.0);
                core
            },
            criterion::BatchSize::LargeInput,
        )
    });
    g.finish();

    // Replays of the synthetic workload (Poisson arrivals, log-normal durations, 1–8 GPUs) at 1×,
    // 10× and 100× scale, the arrival rate scaled with the cluster.
    let mut g = c.benchmark_group("simulate");
    g.sample_size(10);
    for (nodes, jobs) in [(120, 800), (1200, 8000), (12_000, 80_000)] {
        let mut p = Synthetic::default();
        p.jobs = jobs;
        p.mean_interarrival = 12.0 * 120.0 / nodes as f64;
        let trace = synthetic(&p).expect("trace");
        g.bench_function(format!("{nodes}_nodes_{jobs}_jobs_fifo"), |b| {
            b.iter(|| {
                simulate(cluster(nodes), &trace, QueuePolicy::Fifo, Blocking::Strict)
                    .expect("sim")
                    .avg_jct
            })
        });
        if nodes == 1200 {
            // The tenant policies over the same 10× workload (its 4 tenants).
            for policy in [
                QueuePolicy::DominantResourceFairness,
                QueuePolicy::FairShare,
            ] {
                g.bench_function(format!("{nodes}_nodes_{jobs}_jobs_{policy:?}"), |b| {
                    b.iter(|| {
                        let core =
                            Core::new(cluster(nodes), policy, Blocking::Strict).expect("core");
                        replay(core, &trace).expect("sim").avg_jct
                    })
                });
            }
        }
    }
    g.finish();
}

criterion_group!(scheduler, benches);
criterion_main!(scheduler);
