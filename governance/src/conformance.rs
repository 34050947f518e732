//! Conformance kit for [`DataSource`] implementations.
//!
//! Each function checks one clause of the trait's Contract and returns a descriptive error
//! message on violation. Run [`run_all`] (or the functions one by one) in your tests, with feature
//! `conformance` enabled.

use arrow_array::RecordBatch;

use crate::source::{DataSource, ScanOptions};

type Check = Result<(), String>;

fn collect(src: &dyn DataSource, options: &ScanOptions) -> Result<Vec<RecordBatch>, String> {
    src.scan(options)
        .map_err(|e| format!("scan failed: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("scan item failed: {e}"))
}

fn concat(
    batches: &[RecordBatch],
    src: &dyn DataSource,
    options: &ScanOptions,
) -> Result<Option<RecordBatch>, String> {
    let schema = options
        .project_schema(&src.schema())
        .map_err(|e| e.to_string())?;
    if batches.is_empty() {
        return Ok(None);
    }
    arrow_select::concat::concat_batches(&schema, batches)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Contract 1: every batch of a full scan has exactly the source's schema.
pub fn batches_have_schema(src: &dyn DataSource) -> Check {
    let schema = src.schema();
    for (i, b) in collect(src, &ScanOptions::all())?.iter().enumerate() {
        if b.schema() != schema {
            return Err(format!(
                "batch {i} has schema {:?}, source says {:?}",
                b.schema(),
                schema
            ));
        }
    }
    Ok(())
}

/// Contract 2: two scans yield the same rows in the same order.
pub fn scan_is_repeatable(src: &dyn DataSource) -> Check {
    let opts = ScanOptions::all();
    let a = concat(&collect(src, &opts)?, src, &opts)?;
    let b = concat(&collect(src, &opts)?, src, &opts)?;
    if a != b {
        return Err("two scans returned different data".into());
    }
    Ok(())
}

/// Contract 3: no batch exceeds the requested batch size, and row counts do not depend on it.
pub fn batch_size_is_respected(src: &dyn DataSource) -> Check {
    let full: usize = collect(src, &ScanOptions::all())?
        .iter()
        .map(RecordBatch::num_rows)
        .sum();
    for size in [1usize, 7, 1000] {
        let batches = collect(src, &ScanOptions::all().with_batch_size(size))?;
        if let Some(b) = batches.iter().find(|b| b.num_rows() > size) {
            return Err(format!(
                "batch of {} rows with batch_size {size}",
                b.num_rows()
            ));
        }
        let n: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if n != full {
            return Err(format!(
                "batch_size {size} yields {n} rows, default yields {full}"
            ));
        }
    }
    Ok(())
}

/// Contract 4: a projected scan yields the projected schema and the same values as the full scan.
pub fn projection_matches_full_scan(src: &dyn DataSource) -> Check {
    let width = src.schema().fields().len();
    let all = ScanOptions::all();
    let full = concat(&collect(src, &all)?, src, &all)?;
    let projections: Vec<Vec<usize>> = vec![
        (0..width).rev().collect(),
        vec![width.saturating_sub(1)],
        vec![],
    ];
    for p in projections {
        if p.iter().any(|&c| c >= width) {
            continue;
        }
        let opts = ScanOptions::all().with_projection(p.clone());
        let batches = collect(src, &opts)?;
        let want_schema = opts
            .project_schema(&src.schema())
            .map_err(|e| e.to_string())?;
        if let Some(b) = batches.iter().find(|b| b.schema() != want_schema) {
            return Err(format!(
                "projection {p:?}: batch schema {:?}, expected {want_schema:?}",
                b.schema()
            ));
        }
        let got = concat(&batches, src, &opts)?;
        let want = match &full {
            None => None,
            Some(f) => Some(f.project(&p).map_err(|e| e.to_string())?),
        };
        let rows = |b: &Option<RecordBatch>| b.as_ref().map_or(0, RecordBatch::num_rows);
        if rows(&got) != rows(&want) {
            return Err(format!(
                "projection {p:?}: {} rows, full scan has {}",
                rows(&got),
                rows(&want)
            ));
        }
        if let (Some(g), Some(w)) = (&got, &want)
            && g.columns() != w.columns()
        {
            return Err(format!(
                "projection {p:?}: values differ from the full scan"
            ));
        }
    }
    Ok(())
}

/// Contract 5: the fingerprint is 64 lower-case hex digits and stable across calls.
pub fn fingerprint_is_stable(src: &dyn DataSource) -> Check {
    let a = src.descriptor().map_err(|e| e.to_string())?;
    let b = src.descriptor().map_err(|e| e.to_string())?;
    if a.fingerprint.len() != 64
        || !a
            .fingerprint
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    {
        return Err(format!(
            "fingerprint {:?} is not a lower-case hex SHA-256",
            a.fingerprint
        ));
    }
    if a != b {
        return Err("descriptor changed between calls".into());
    }
    Ok(())
}

/// Run every check; the first failure is returned with the clause's name.
pub fn run_all(src: &dyn DataSource) -> Check {
    type Clause = (&'static str, fn(&dyn DataSource) -> Check);
    let checks: [Clause; 5] = [
        ("batches_have_schema", batches_have_schema),
        ("scan_is_repeatable", scan_is_repeatable),
        ("batch_size_is_respected", batch_size_is_respected),
        ("projection_matches_full_scan", projection_matches_full_scan),
        ("fingerprint_is_stable", fingerprint_is_stable),
    ];
    for (name, check) in checks {
        check(src).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}
