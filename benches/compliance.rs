//! Compliance: a full RDP evaluation over Opacus' 151 default orders, noise calibration, and
//! fairness group counts.

use aistd::compliance::fairness::MetricFrame;
use aistd::compliance::privacy::{epsilon, noise_multiplier, opacus_orders};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn benches(c: &mut Criterion) {
    let orders = opacus_orders();
    let mut g = c.benchmark_group("privacy");
    g.bench_function("epsilon_opacus_orders", |b| {
        b.iter(|| epsilon(0.04, 1.5, 2250, 1e-5, &orders).expect("eps"))
    });
    g.sample_size(10);
    g.bench_function("noise_multiplier_calibration", |b| {
        b.iter(|| noise_multiplier(0.04, 2250, 7.33, 1e-5, &orders, 0.01).expect("sigma"))
    });
    g.finish();
    let n = 1_000_000usize;
    let y_true: Vec<i64> = (0..n).map(|i| ((i * 7) % 3 == 0) as i64).collect();
    let y_pred: Vec<i64> = (0..n).map(|i| ((i * 11) % 4 == 0) as i64).collect();
    let groups: Vec<&str> = (0..n).map(|i| ["a", "b", "c"][i % 3]).collect();
    let mut g = c.benchmark_group("fairness");
    g.sample_size(10).throughput(Throughput::Elements(n as u64));
    g.bench_function("metric_frame_3_groups", |b| {
        b.iter(|| {
            MetricFrame::new(&y_true, &y_pred, &[&groups], None)
                .expect("frame")
                .overall
                .count
        })
    });
    g.finish();
}

criterion_group!(compliance, benches);
criterion_main!(compliance);
