//! Governance throughput: CSV scan, one-pass profile, and the clean-and-check workload that
//! `scripts/bench-peers.sh` also runs in polars (null/NaN filtering + exact dedup + 5 expectations).

use aistd::governance::generate::{GeneratorConfig, LoanGenerator};
use aistd::governance::{
    CsvOptions, CsvSource, DataSource, Expectation, ExpectationSuite, Format, MemorySource,
    NullAction, Pipeline, Profile, ScanOptions,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const ROWS: u64 = 100_000;

/// The workload shared with the polars peer (scripts/peers/bench_governance.py).
pub fn clean_and_check(source: impl DataSource) -> Pipeline {
    Pipeline::new(source)
        .on_null("income", NullAction::Drop)
        .on_null("email", NullAction::Drop)
        .dedup_exact(None)
        .expectations(five_expectations(), "bench")
        .profile_input(false)
        .identify(false)
        .progress(false)
}

fn five_expectations() -> ExpectationSuite {
    ExpectationSuite::new(vec![
        Expectation::not_null("name"),
        Expectation::between("credit_score", Some(300.0), Some(850.0)),
        Expectation::in_set("gender", ["female", "male", "nonbinary"]),
        Expectation::match_format("email", Format::Email),
        Expectation::mean_between("income", Some(0.0), Some(1e6)),
    ])
}

fn loans() -> MemorySource {
    LoanGenerator::new(GeneratorConfig::default().with_rows(ROWS))
        .into_source()
        .expect("generate")
        .0
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("governance");
    g.sample_size(10).throughput(Throughput::Elements(ROWS));
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("loans.csv");
    LoanGenerator::new(GeneratorConfig::default().with_rows(ROWS))
        .write_csv(&csv)
        .expect("csv");
    g.bench_function("csv_scan", |b| {
        b.iter(|| {
            let src = CsvSource::open(&csv, CsvOptions::default()).expect("open");
            src.scan(&ScanOptions::all())
                .expect("scan")
                .map(|r| r.expect("batch").num_rows())
                .sum::<usize>()
        })
    });
    g.bench_function("profile", |b| {
        let src = loans();
        b.iter(|| Profile::of(&src).expect("profile").rows)
    });
    g.bench_function("clean_and_check", |b| {
        b.iter_batched(
            loans,
            |src| {
                clean_and_check(src)
                    .run_in_memory()
                    .expect("run")
                    .2
                    .rows_out
            },
            criterion::BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(governance, benches);
criterion_main!(governance);
