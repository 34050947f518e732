//! Protection throughput: audit appends (batched fsync), verification of a 1M-event log,
//! whole-file encryption in 16 KiB chunks next to the raw `chacha20poly1305` crate on the same
//! chunks, and PII scanning of the loan data's identifier columns.

use std::time::{Duration, Instant};

use aistd::governance::audit::{AuditEvent, AuditLog, AuditOptions, Decision, heads_path, verify};
use aistd::governance::crypto::{Keyring, LocalKeyProvider, encrypt_stream};
use aistd::governance::generate::{GeneratorConfig, LoanGenerator};
use aistd::governance::pii::PiiScanner;
use arrow_array::Array;
use arrow_array::cast::AsArray;
use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
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
                let _ = std::fs::remove_file(heads_path(&path));
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

fn crypto(c: &mut Criterion) {
    const MIB: usize = 64;
    const CHUNK: usize = 16 * 1024;
    let data: Vec<u8> = (0..MIB << 20).map(|i| (i % 251) as u8).collect();
    let keyring = Keyring::generate(Box::new(
        LocalKeyProvider::from_hex("bench", &"42".repeat(32)).expect("master"),
    ))
    .expect("keyring");
    let mut g = c.benchmark_group("encrypt_16k_chunks");
    g.sample_size(10)
        .throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("aistd_encrypt_stream", |b| {
        b.iter(|| {
            encrypt_stream(&data[..], std::io::sink(), &keyring, CHUNK as u32).expect("encrypt")
        })
    });
    // The same work with the raw crate: one seal per 16 KiB chunk into a reused buffer.
    let cipher = XChaCha20Poly1305::new(&[7u8; 32].into());
    let mut buf = vec![0u8; CHUNK];
    g.bench_function("raw_chacha20poly1305", |b| {
        b.iter(|| {
            let mut tags = 0u8;
            for (i, chunk) in data.chunks(CHUNK).enumerate() {
                buf[..chunk.len()].copy_from_slice(chunk);
                let mut nonce = [0u8; 24];
                nonce[16..].copy_from_slice(&(i as u64).to_be_bytes());
                let tag = cipher
                    .encrypt_inout_detached(
                        &XNonce::from(nonce),
                        b"",
                        (&mut buf[..chunk.len()]).into(),
                    )
                    .expect("seal");
                tags ^= tag[0];
            }
            tags
        })
    });
    g.finish();
}

fn pii(c: &mut Criterion) {
    let (batches, _) = LoanGenerator::new(GeneratorConfig::default().with_rows(20_000))
        .to_batches()
        .expect("generate");
    let schema = batches[0].schema();
    let mut values: Vec<String> = Vec::new();
    for name in [
        "name",
        "email",
        "phone",
        "national_id",
        "credit_card",
        "address",
    ] {
        let i = schema.index_of(name).expect("column");
        for b in &batches {
            let s = b.column(i).as_string::<i32>();
            values.extend(
                (0..s.len())
                    .filter(|&r| s.is_valid(r))
                    .map(|r| s.value(r).to_string()),
            );
        }
    }
    let scanner = PiiScanner::new();
    let mut g = c.benchmark_group("pii");
    g.sample_size(10)
        .throughput(Throughput::Elements(values.len() as u64));
    g.bench_function("scan_identifier_values", |b| {
        b.iter(|| {
            values
                .iter()
                .map(|v| scanner.analyze(v).len())
                .sum::<usize>()
        })
    });
    g.finish();
}

criterion_group!(protect, audit, crypto, pii);
criterion_main!(protect);
