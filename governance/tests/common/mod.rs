//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::sync::Arc;

use aistd_governance::generate::{GeneratorConfig, GroundTruth, LoanGenerator};
use aistd_governance::{DataSourceExt, MemorySource};
use arrow_array::RecordBatch;

pub fn loans(rows: u64, seed: u64) -> (MemorySource, GroundTruth) {
    LoanGenerator::new(GeneratorConfig::default().with_rows(rows).with_seed(seed))
        .into_source()
        .expect("generate")
}

pub fn write_ipc_file(path: &Path, src: &MemorySource) {
    let f = std::fs::File::create(path).expect("create");
    let mut w =
        arrow_ipc::writer::FileWriter::try_new(f, &src.batches()[0].schema()).expect("writer");
    for b in src.collect().expect("collect") {
        w.write(&b).expect("write");
    }
    w.finish().expect("finish");
}

pub fn write_ipc_stream(path: &Path, src: &MemorySource) {
    let f = std::fs::File::create(path).expect("create");
    let mut w =
        arrow_ipc::writer::StreamWriter::try_new(f, &src.batches()[0].schema()).expect("writer");
    for b in src.collect().expect("collect") {
        w.write(&b).expect("write");
    }
    w.finish().expect("finish");
}

pub fn write_parquet(path: &Path, src: &MemorySource) {
    let f = std::fs::File::create(path).expect("create");
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(700))
        .build();
    let mut w = parquet::arrow::ArrowWriter::try_new(f, src.batches()[0].schema(), Some(props))
        .expect("writer");
    for b in src.collect().expect("collect") {
        w.write(&b).expect("write");
    }
    w.close().expect("close");
}

pub fn concat(batches: &[RecordBatch]) -> RecordBatch {
    let schema: Arc<_> = batches[0].schema();
    arrow_select::concat::concat_batches(&schema, batches).expect("concat")
}
