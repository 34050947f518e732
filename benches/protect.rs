//! Protection throughput: audit appends (batched fsync), verification of a 1M-event log.

use std::time::{Duration, Instant};

use aistd::governance::audit::{AuditEvent, AuditLog, AuditOptions, Decision, verify};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn event(i: u64) -> AuditEvent {
    AuditEvent::new(format!("user{}", i % 100), "read", "loans/email")
        .purpose("training")
        .decision(
            Decision::Allow,
            "analyst may read Confidential for training",
        )
}

fn audit(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut g = c.benchmark_group("audit");
    g.sample_size(10);
    const BATCH: u64 = 100_000;
    g.throughput(Throughput::Elements(BATCH));
    g.bench_function("append_batched_fsync", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for k in 0..iters {
                let path = dir.path().join(format!("append-{k}.jsonl"));
                let mut log =
                    AuditLog::open(&path, AuditOptions::default().batch(4096)).expect("open");
                let events: Vec<AuditEvent> = (0..BATCH).map(event).collect();
                let t = Instant::now();
                for e in &events {
                    log.append(e).expect("append");
                }
                log.commit().expect("commit");
                total += t.elapsed();
                drop(log);
                let _ = std::fs::remove_file(&path);
            }
            total
        })
    });
    const BIG: u64 = 1_000_000;
    let path = dir.path().join("big.jsonl");
    {
        let mut log = AuditLog::open(&path, AuditOptions::default().batch(65_536).fsync(false))
            .expect("open");
        for i in 0..BIG {
            log.append(&event(i)).expect("append");
        }
        log.commit().expect("commit");
    }
    g.throughput(Throughput::Elements(BIG));
    g.bench_function("verify_1m_events", |b| {
        b.iter(|| verify(&path, &[]).expect("verify").events)
    });
    g.finish();
}

criterion_group!(protect, audit);
criterion_main!(protect);
