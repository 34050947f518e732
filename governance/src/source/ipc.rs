//! Arrow IPC file ([`IpcFileSource`]) and stream ([`IpcStreamSource`]) sources.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use arrow_array::{RecordBatch, RecordBatchOptions};
use arrow_ipc::reader::{FileReader, StreamReader};
use arrow_schema::{ArrowError, SchemaRef};

use super::{BatchStream, DataSource, Descriptor, ScanOptions, file_descriptor};
use crate::{Error, Result};

pub(crate) fn format_error(path: &Path, what: impl Into<String>, e: ArrowError) -> Error {
    Error::Format {
        path: path.to_path_buf(),
        what: what.into(),
        source: Box::new(e),
    }
}

fn open_file(path: &Path) -> Result<File> {
    File::open(path).map_err(|e| Error::io(path, e))
}

/// Which columns to ask a reader for, and how to turn what it returns into the requested schema.
///
/// Readers are asked for at least one column so that an empty projection still counts rows, and
/// for the columns in file order; `finish` reorders and drops to the requested projection.
pub(crate) struct Projector {
    pub(crate) read: Option<Vec<usize>>,
    pick: Option<Vec<usize>>,
    out_schema: SchemaRef,
}

impl Projector {
    pub(crate) fn new(schema: &SchemaRef, options: &ScanOptions) -> Result<Self> {
        let out_schema = options.project_schema(schema)?;
        let Some(p) = &options.projection else {
            return Ok(Self {
                read: None,
                pick: None,
                out_schema,
            });
        };
        let mut sorted = p.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.is_empty() && !schema.fields().is_empty() {
            sorted.push(0);
        }
        let pick = p
            .iter()
            .map(|c| sorted.binary_search(c).unwrap_or(0))
            .collect();
        Ok(Self {
            read: Some(sorted),
            pick: Some(pick),
            out_schema,
        })
    }

    pub(crate) fn finish(
        &self,
        batch: RecordBatch,
    ) -> std::result::Result<RecordBatch, ArrowError> {
        let columns = match &self.pick {
            None => batch.columns().to_vec(),
            Some(pick) => pick.iter().map(|&i| batch.column(i).clone()).collect(),
        };
        RecordBatch::try_new_with_options(
            self.out_schema.clone(),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
        )
    }
}

/// The batches of an Arrow reader, projected by `proj`, with errors naming `path` and the batch,
/// split to at most `rows` rows.
pub(crate) fn project_batches(
    reader: impl Iterator<Item = std::result::Result<RecordBatch, ArrowError>> + Send + 'static,
    proj: Projector,
    path: PathBuf,
    rows: usize,
) -> BatchStream {
    let iter = reader.enumerate().map(move |(i, r)| {
        r.and_then(|b| proj.finish(b))
            .map_err(|e| format_error(&path, format!("record batch {i}"), e))
    });
    rebatch(iter, rows)
}

/// Split batches larger than `size` rows.
pub(crate) fn rebatch(
    iter: impl Iterator<Item = Result<RecordBatch>> + Send + 'static,
    size: usize,
) -> BatchStream {
    Box::new(iter.flat_map(
        move |r| -> Box<dyn Iterator<Item = Result<RecordBatch>> + Send> {
            match r {
                Err(e) => Box::new(std::iter::once(Err(e))),
                Ok(b) if b.num_rows() <= size => Box::new(std::iter::once(Ok(b))),
                Ok(b) => {
                    let n = b.num_rows();
                    Box::new(
                        (0..n.div_ceil(size))
                            .map(move |k| Ok(b.slice(k * size, size.min(n - k * size)))),
                    )
                }
            }
        },
    ))
}

/// An Arrow IPC file (`.arrow`, Feather v2): random access through its footer.
#[derive(Debug)]
pub struct IpcFileSource {
    path: PathBuf,
    schema: SchemaRef,
    descriptor: OnceLock<Descriptor>,
}

impl IpcFileSource {
    /// Open `path`, reading the footer and schema. A truncated file fails here, naming the file.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let reader = FileReader::try_new(open_file(&path)?, None)
            .map_err(|e| format_error(&path, "footer", e))?;
        Ok(Self {
            schema: reader.schema(),
            path,
            descriptor: OnceLock::new(),
        })
    }
}

impl DataSource for IpcFileSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn scan(&self, options: &ScanOptions) -> Result<BatchStream> {
        let proj = Projector::new(&self.schema, options)?;
        let reader = FileReader::try_new(open_file(&self.path)?, proj.read.clone())
            .map_err(|e| format_error(&self.path, "footer", e))?;
        Ok(project_batches(
            reader,
            proj,
            self.path.clone(),
            options.rows_per_batch(),
        ))
    }

    fn descriptor(&self) -> Result<Descriptor> {
        file_descriptor(&self.descriptor, &self.path)
    }
}

/// An Arrow IPC stream (`.arrows`): read front to back.
#[derive(Debug)]
pub struct IpcStreamSource {
    path: PathBuf,
    schema: SchemaRef,
    descriptor: OnceLock<Descriptor>,
}

impl IpcStreamSource {
    /// Open `path`, reading the schema message.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let reader = StreamReader::try_new(BufReader::new(open_file(&path)?), None)
            .map_err(|e| format_error(&path, "schema message", e))?;
        Ok(Self {
            schema: reader.schema(),
            path,
            descriptor: OnceLock::new(),
        })
    }
}

impl DataSource for IpcStreamSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn scan(&self, options: &ScanOptions) -> Result<BatchStream> {
        let proj = Projector::new(&self.schema, options)?;
        let reader =
            StreamReader::try_new(BufReader::new(open_file(&self.path)?), proj.read.clone())
                .map_err(|e| format_error(&self.path, "schema message", e))?;
        Ok(project_batches(
            reader,
            proj,
            self.path.clone(),
            options.rows_per_batch(),
        ))
    }

    fn descriptor(&self) -> Result<Descriptor> {
        file_descriptor(&self.descriptor, &self.path)
    }
}
