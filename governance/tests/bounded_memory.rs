//! Contract 3 (bounded memory): scanning a CSV far larger than one batch holds about one batch.
//! Its own test binary, so no other test allocates in this process while it measures.

use std::io::Write;

use aistd_governance::{CsvOptions, CsvSource, DataSource, ScanOptions};

/// Resident set size of this process in bytes (Linux).
fn rss() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[test]
fn a_large_csv_scans_in_bounded_memory() {
    let Some(before) = rss() else { return }; // not Linux: nothing to measure with
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("big.csv");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
    writeln!(f, "id,name,amount,note").expect("write");
    let filler = "x".repeat(60);
    let rows = 1_200_000u64;
    for i in 0..rows {
        writeln!(
            f,
            "{i},person {},{}.25,\"{filler}, {i}\"",
            i % 977,
            i % 10_000
        )
        .expect("write");
    }
    f.into_inner().expect("flush").sync_all().expect("sync");
    let size = std::fs::metadata(&path).expect("stat").len();
    assert!(
        size > 100 << 20,
        "the file ({size} bytes) must dwarf one batch"
    );

    let src = CsvSource::open(&path, CsvOptions::default()).expect("open");
    let (mut seen, mut peak) = (0u64, 0u64);
    for batch in src
        .scan(&ScanOptions::all().with_batch_size(4096))
        .expect("scan")
    {
        seen += batch.expect("batch").num_rows() as u64;
        peak = peak.max(rss().unwrap_or(0));
    }
    assert_eq!(seen, rows);
    let growth = peak.saturating_sub(before);
    eprintln!("scanned {size} bytes; RSS grew by {growth} bytes");
    assert!(
        growth < 48 << 20,
        "scanning {size} bytes grew RSS by {growth} bytes"
    );
}
