//! Training: one epoch of an MLP on digits (64 → 128 → 10, batch 64, Adam), on one and two
//! threads; and 100 → 256 → 256 → 1 on 20,000 synthetic rows at batch 256. Inference of the
//! digits MLP in f32 and int8 (`quantize`), one row and 256.

use aistd::training::data::{self, Dataset, Target};
use aistd::training::quantize::QuantizedMlp;
use aistd::training::{Model, NdarrayTrainer, Silent, TrainConfig};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ndarray::Array2;

fn config(hidden: Vec<usize>, batch: usize, threads: usize) -> TrainConfig {
    let mut c = TrainConfig::default();
    c.hidden = hidden;
    c.epochs = 1;
    c.batch_size = batch;
    c.threads = threads;
    c
}

fn synthetic(rows: usize) -> Dataset {
    let mut rng = aistd::training::rng::Rng::new(1);
    let x = Array2::from_shape_fn((rows, 100), |_| (rng.uniform() * 2.0 - 1.0) as f32);
    let y: Vec<f32> = x
        .outer_iter()
        .map(|r| r.iter().take(10).sum::<f32>())
        .collect();
    Dataset::new(
        x,
        Target::Values(y),
        (0..100).map(|i| format!("f{i}")).collect(),
    )
    .expect("dataset")
}

fn benches(c: &mut Criterion) {
    let digits = data::digits().expect("digits");
    let mut g = c.benchmark_group("epoch");
    g.sample_size(10)
        .throughput(Throughput::Elements(digits.len() as u64));
    for threads in [1, 2] {
        let cfg = config(vec![128], 64, threads);
        g.bench_function(format!("digits_mlp128_batch64_threads{threads}"), |b| {
            b.iter(|| {
                NdarrayTrainer
                    .fit_mlp(&digits, None, &cfg, &mut Silent)
                    .expect("fit")
                    .1
                    .epochs
                    .len()
            })
        });
    }
    let big = synthetic(20_000);
    g.throughput(Throughput::Elements(big.len() as u64));
    for threads in [1, 2] {
        let cfg = config(vec![256, 256], 256, threads);
        g.bench_function(
            format!("synthetic20k_mlp256x2_batch256_threads{threads}"),
            |b| {
                b.iter(|| {
                    NdarrayTrainer
                        .fit_mlp(&big, None, &cfg, &mut Silent)
                        .expect("fit")
                        .1
                        .epochs
                        .len()
                })
            },
        );
    }
    g.finish();

    // Inference: the digits MLP 64 → 128 → 10 in f32 and on the int8 path, one row and 256.
    let model = NdarrayTrainer
        .fit_mlp(&digits, None, &config(vec![128], 64, 1), &mut Silent)
        .expect("fit")
        .0;
    let q = QuantizedMlp::quantize(&model, digits.x.view(), true).expect("quantize");
    let mut g = c.benchmark_group("predict");
    for rows in [1usize, 256] {
        let x = digits
            .x
            .select(ndarray::Axis(0), &(0..rows).collect::<Vec<_>>());
        g.throughput(Throughput::Elements(rows as u64));
        g.bench_function(format!("digits_mlp128_f32_rows{rows}"), |b| {
            b.iter(|| model.predict(x.view()).expect("predict").len())
        });
        g.bench_function(format!("digits_mlp128_int8_rows{rows}"), |b| {
            b.iter(|| q.predict(x.view()).expect("predict").len())
        });
    }
    g.finish();
}

criterion_group!(training, benches);
criterion_main!(training);
