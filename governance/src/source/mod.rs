//! The [`DataSource`] trait and its implementations: CSV, Arrow IPC (file and stream), Parquet and
//! in-memory.

mod csv;
pub(crate) mod datetime;
pub(crate) mod ipc;
mod memory;
mod parquet;

pub use self::csv::{CsvOptions, CsvSource};
pub(crate) use self::datetime::{
    date_string, days_from_civil, parse_date, parse_timestamp_micros, timestamp_string,
};
pub use self::ipc::{IpcFileSource, IpcStreamSource};
pub use self::memory::MemorySource;
pub use self::parquet::ParquetSource;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// A stream of record batches, pulled one at a time so a scan holds only the current batch.
pub type BatchStream = Box<dyn Iterator<Item = Result<RecordBatch>> + Send>;

/// Default number of rows per batch when [`ScanOptions::batch_size`] is not set.
pub const DEFAULT_BATCH_SIZE: usize = 8192;

/// What to read in a [`DataSource::scan`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScanOptions {
    /// Indices (into [`DataSource::schema`]) of the columns to read, in that order; `None` reads all.
    pub projection: Option<Vec<usize>>,
    /// Upper bound on rows per batch; `None` lets the source choose ([`DEFAULT_BATCH_SIZE`] for
    /// sources that choose freely).
    pub batch_size: Option<usize>,
}

impl ScanOptions {
    /// Read all columns with the source's batch size.
    pub fn all() -> Self {
        Self::default()
    }

    /// Read only these columns, in this order.
    #[must_use]
    pub fn with_projection(mut self, projection: Vec<usize>) -> Self {
        self.projection = Some(projection);
        self
    }

    /// Limit batches to `rows` rows.
    #[must_use]
    pub fn with_batch_size(mut self, rows: usize) -> Self {
        self.batch_size = Some(rows.max(1));
        self
    }

    /// Rows per batch to produce: [`batch_size`](Self::batch_size), at least 1, or
    /// [`DEFAULT_BATCH_SIZE`].
    pub fn rows_per_batch(&self) -> usize {
        self.batch_size.unwrap_or(DEFAULT_BATCH_SIZE).max(1)
    }

    /// The schema a scan with these options yields.
    pub fn project_schema(&self, schema: &SchemaRef) -> Result<SchemaRef> {
        match &self.projection {
            None => Ok(schema.clone()),
            Some(p) => schema
                .project(p)
                .map(Arc::new)
                .map_err(|e| Error::invalid("projection", e.to_string())),
        }
    }
}

/// Identity of a data set: what it is called, where it lives, and what exactly it contains.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Descriptor {
    /// Human-readable name (by default the file stem).
    pub name: String,
    /// Where the data lives (`file:///abs/path.csv`, `memory:name`).
    pub uri: String,
    /// Lower-case hex SHA-256 of the content: the file's bytes for files, the Arrow IPC stream
    /// encoding of the batches for in-memory data.
    pub fingerprint: String,
    /// Sensitivity classification per column (column name → level); empty until a classifier
    /// has run.
    pub classification: BTreeMap<String, String>,
}

impl Descriptor {
    /// A descriptor with no classification.
    pub fn new(
        name: impl Into<String>,
        uri: impl Into<String>,
        fingerprint: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            uri: uri.into(),
            fingerprint: fingerprint.into(),
            classification: BTreeMap::new(),
        }
    }

    /// The identity string `dataset:<name>@sha256:<fingerprint>` used across aistd.
    pub fn dataset_id(&self) -> String {
        format!("dataset:{}@sha256:{}", self.name, self.fingerprint)
    }
}

/// A table that can be scanned as a stream of Arrow record batches.
///
/// # Contract
/// Every implementation guarantees, and [`crate::conformance`] checks:
/// 1. **Schema** — every batch of a full scan has exactly [`schema`](DataSource::schema); a projected
///    scan has the projected schema ([`ScanOptions::project_schema`]).
/// 2. **Repeatable** — two scans yield the same rows in the same order.
/// 3. **Bounded** — a scan holds O(batch size) rows in memory, never the whole table, so a
///    file larger than memory can be scanned; no batch exceeds [`ScanOptions::batch_size`].
/// 4. **Projection** — a projected scan yields the same values as the full scan's columns.
/// 5. **Fingerprint** — [`descriptor`](DataSource::descriptor)'s fingerprint is the SHA-256 of the
///    content and is stable across calls.
/// 6. **Errors, not panics** — malformed content yields [`Error`] items naming the file and the
///    position; after an error item the stream ends.
pub trait DataSource: Send + Sync + Debug + 'static {
    /// The schema of the table.
    fn schema(&self) -> SchemaRef;

    /// Start a scan. Batches are produced lazily as the returned iterator is pulled.
    fn scan(&self, options: &ScanOptions) -> Result<BatchStream>;

    /// Name, location and content fingerprint. May read the whole content once (to hash it).
    fn descriptor(&self) -> Result<Descriptor>;
}

macro_rules! forward_data_source {
    ($($ptr:ty),*) => {$(
        impl<T: DataSource + ?Sized> DataSource for $ptr {
            fn schema(&self) -> SchemaRef {
                (**self).schema()
            }
            fn scan(&self, options: &ScanOptions) -> Result<BatchStream> {
                (**self).scan(options)
            }
            fn descriptor(&self) -> Result<Descriptor> {
                (**self).descriptor()
            }
        }
    )*};
}
forward_data_source!(Box<T>, Arc<T>);

/// Conveniences on every [`DataSource`].
pub trait DataSourceExt: DataSource {
    /// Scan all columns into memory. Only for tables known to be small.
    fn collect(&self) -> Result<Vec<RecordBatch>> {
        self.scan(&ScanOptions::all())?.collect()
    }

    /// Count rows by scanning (reading no columns where the source allows it).
    fn count_rows(&self) -> Result<u64> {
        let mut n = 0u64;
        for batch in self.scan(&ScanOptions::all().with_projection(vec![]))? {
            n += batch?.num_rows() as u64;
        }
        Ok(n)
    }
}

impl<T: DataSource + ?Sized> DataSourceExt for T {}

/// SHA-256 of a file, streamed.
pub(crate) fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Descriptor for a file (name = file stem, uri = `file://` + absolute path), computed once and
/// kept in `cell`: hashing reads the whole file.
pub(crate) fn file_descriptor(cell: &OnceLock<Descriptor>, path: &Path) -> Result<Descriptor> {
    if let Some(d) = cell.get() {
        return Ok(d.clone());
    }
    let d = describe_file(path)?;
    Ok(cell.get_or_init(|| d).clone())
}

fn describe_file(path: &Path) -> Result<Descriptor> {
    let abs = std::fs::canonicalize(path).map_err(|e| Error::io(path, e))?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into());
    Ok(Descriptor::new(
        name,
        format!("file://{}", abs.display()),
        sha256_file(path)?,
    ))
}

/// The kind of file found at a path, by its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileKind {
    /// Arrow IPC file format (`ARROW1` magic).
    ArrowFile,
    /// Arrow IPC stream format.
    ArrowStream,
    /// Apache Parquet (`PAR1` magic).
    Parquet,
    /// Anything else is read as delimited text.
    Csv,
}

/// Detect the format of a file from its first bytes.
pub fn detect_kind(path: &Path) -> Result<FileKind> {
    let mut head = [0u8; 8];
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut n = 0;
    while n < head.len() {
        let k = file.read(&mut head[n..]).map_err(|e| Error::io(path, e))?;
        if k == 0 {
            break;
        }
        n += k;
    }
    let head = &head[..n];
    Ok(if head.starts_with(b"ARROW1") {
        FileKind::ArrowFile
    } else if head.starts_with(b"PAR1") {
        FileKind::Parquet
    } else if head.starts_with(&[0xFF, 0xFF, 0xFF, 0xFF]) {
        FileKind::ArrowStream
    } else {
        FileKind::Csv
    })
}

/// Copy a whole source into an Arrow IPC file, atomically (a temporary file in the same
/// directory, synced, then renamed). Returns the number of rows written.
pub fn write_ipc_file(source: &dyn DataSource, path: &Path) -> Result<u64> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
    let ctx = || format!("writing {}", path.display());
    let file = tmp.reopen().map_err(|e| Error::io(path, e))?;
    let mut w = arrow_ipc::writer::FileWriter::try_new(file, &source.schema())
        .map_err(|e| Error::arrow(ctx(), e))?;
    // Scan on a second thread so parsing overlaps with writing.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<RecordBatch>>(4);
    let rows = std::thread::scope(|scope| -> Result<u64> {
        scope.spawn(move || {
            let stream = match source.scan(&ScanOptions::all()) {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            for batch in stream {
                if tx.send(batch).is_err() {
                    return;
                }
            }
        });
        let mut rows = 0u64;
        for batch in rx {
            let batch = batch?;
            rows += batch.num_rows() as u64;
            w.write(&batch).map_err(|e| Error::arrow(ctx(), e))?;
        }
        Ok(rows)
    })?;
    w.finish().map_err(|e| Error::arrow(ctx(), e))?;
    w.into_inner()
        .map_err(|e| Error::arrow(ctx(), e))?
        .sync_all()
        .map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(rows)
}

/// Open any supported file, choosing the reader by its magic bytes; `csv` applies to text files.
pub fn open_path(path: impl Into<PathBuf>, csv: CsvOptions) -> Result<Box<dyn DataSource>> {
    let path = path.into();
    Ok(match detect_kind(&path)? {
        FileKind::ArrowFile => Box::new(IpcFileSource::open(path)?),
        FileKind::ArrowStream => Box::new(IpcStreamSource::open(path)?),
        FileKind::Parquet => Box::new(ParquetSource::open(path)?),
        FileKind::Csv => Box::new(CsvSource::open(path, csv)?),
    })
}
