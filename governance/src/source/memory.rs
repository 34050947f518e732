//! In-memory reference implementation of [`DataSource`].

use std::sync::{Arc, OnceLock};

use arrow_array::RecordBatch;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::SchemaRef;
use sha2::{Digest, Sha256};

use super::{BatchStream, DataSource, Descriptor, ScanOptions};
use crate::{Error, Result};

/// A table held in memory as record batches: the reference [`DataSource`].
///
/// ```
/// use std::sync::Arc;
/// use arrow_array::{Int64Array, RecordBatch};
/// use arrow_schema::{DataType, Field, Schema};
/// use aistd_governance::{DataSource, DataSourceExt, MemorySource};
///
/// let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)]));
/// let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![1, 2, 3]))])?;
/// let src = MemorySource::try_new("numbers", schema, vec![batch])?;
/// assert_eq!(src.count_rows()?, 3);
/// assert_eq!(src.descriptor()?.fingerprint.len(), 64);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct MemorySource {
    name: String,
    schema: SchemaRef,
    batches: Arc<Vec<RecordBatch>>,
    fingerprint: OnceLock<String>,
}

impl MemorySource {
    /// Hold `batches`, which must all have `schema`.
    pub fn try_new(
        name: impl Into<String>,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    ) -> Result<Self> {
        let name = name.into();
        for (i, b) in batches.iter().enumerate() {
            if b.schema() != schema {
                return Err(Error::SchemaMismatch {
                    context: format!("memory source `{name}`, batch {i}"),
                    reason: format!("expected {schema:?}, found {:?}", b.schema()),
                });
            }
        }
        Ok(Self {
            name,
            schema,
            batches: Arc::new(batches),
            fingerprint: OnceLock::new(),
        })
    }

    /// The batches, as given.
    pub fn batches(&self) -> &[RecordBatch] {
        &self.batches
    }

    fn compute_fingerprint(&self) -> Result<String> {
        let mut buf = Vec::new();
        {
            let mut w = StreamWriter::try_new(&mut buf, &self.schema)
                .map_err(|e| Error::arrow("fingerprinting memory source", e))?;
            for b in self.batches.iter() {
                w.write(b)
                    .map_err(|e| Error::arrow("fingerprinting memory source", e))?;
            }
            w.finish()
                .map_err(|e| Error::arrow("fingerprinting memory source", e))?;
        }
        Ok(hex::encode(Sha256::digest(&buf)))
    }
}

impl DataSource for MemorySource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn scan(&self, options: &ScanOptions) -> Result<BatchStream> {
        let schema = options.project_schema(&self.schema)?;
        let projection = options.projection.clone();
        let size = options.rows_per_batch();
        let batches = self.batches.clone();
        let iter = (0..batches.len())
            .flat_map(move |i| {
                let b = batches[i].clone();
                let n = b.num_rows();
                (0..n.div_ceil(size)).map(move |k| b.slice(k * size, size.min(n - k * size)))
            })
            .map(move |b| match &projection {
                None => Ok(b),
                Some(p) => b
                    .project(p)
                    .map_err(|e| Error::arrow("projecting memory batch", e)),
            })
            .map(move |r| {
                r.and_then(|b| {
                    // An empty projection keeps the row count.
                    RecordBatch::try_new_with_options(
                        schema.clone(),
                        b.columns().to_vec(),
                        &arrow_array::RecordBatchOptions::new().with_row_count(Some(b.num_rows())),
                    )
                    .map_err(|e| Error::arrow("projecting memory batch", e))
                })
            });
        Ok(Box::new(iter))
    }

    fn descriptor(&self) -> Result<Descriptor> {
        let fp = match self.fingerprint.get() {
            Some(fp) => fp.clone(),
            None => {
                let fp = self.compute_fingerprint()?;
                self.fingerprint.get_or_init(|| fp).clone()
            }
        };
        Ok(Descriptor::new(
            self.name.clone(),
            format!("memory:{}", self.name),
            fp,
        ))
    }
}
