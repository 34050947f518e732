//! Apache Parquet source ([`ParquetSource`]).

use std::fs::File;
use std::path::PathBuf;
use std::sync::OnceLock;

use arrow_schema::SchemaRef;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::ipc::Projector;
use super::{BatchStream, DataSource, Descriptor, ScanOptions, file_descriptor};
use crate::{Error, Result};

/// A Parquet file, read row group by row group (snappy and uncompressed pages; see the README for
/// codecs not built in).
#[derive(Debug)]
pub struct ParquetSource {
    path: PathBuf,
    schema: SchemaRef,
    descriptor: OnceLock<Descriptor>,
}

fn parquet_error(path: &std::path::Path, what: &str, e: parquet::errors::ParquetError) -> Error {
    Error::Format {
        path: path.to_path_buf(),
        what: what.into(),
        source: Box::new(e),
    }
}

impl ParquetSource {
    /// Open `path`, reading its footer. A truncated file fails here, naming the file.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| parquet_error(&path, "footer", e))?;
        Ok(Self {
            schema: builder.schema().clone(),
            path,
            descriptor: OnceLock::new(),
        })
    }
}

impl DataSource for ParquetSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn scan(&self, options: &ScanOptions) -> Result<BatchStream> {
        let proj = Projector::new(&self.schema, options)?;
        let file = File::open(&self.path).map_err(|e| Error::io(&self.path, e))?;
        let mut builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| parquet_error(&self.path, "footer", e))?
            .with_batch_size(options.rows_per_batch());
        if let Some(read) = &proj.read {
            let mask = ProjectionMask::roots(builder.parquet_schema(), read.iter().copied());
            builder = builder.with_projection(mask);
        }
        let reader = builder
            .build()
            .map_err(|e| parquet_error(&self.path, "row groups", e))?;
        let path = self.path.clone();
        let mut rows = 0u64;
        Ok(Box::new(reader.map(move |r| {
            let at = format!("batch starting at row {rows}");
            let b = r
                .and_then(|b| proj.finish(b))
                .map_err(|e| super::ipc::format_error(&path, at, e))?;
            rows += b.num_rows() as u64;
            Ok(b)
        })))
    }

    fn descriptor(&self) -> Result<Descriptor> {
        file_descriptor(&self.descriptor, &self.path)
    }
}
