//! Delimited text ([`CsvSource`]): schema inference, typed columns, streaming scan.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use arrow_array::builder::{
    BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch, RecordBatchOptions};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use csv_core::ReadRecordResult;

use super::{
    BatchStream, DEFAULT_BATCH_SIZE, DataSource, Descriptor, ScanOptions, file_descriptor,
    parse_date, parse_timestamp_micros,
};
use crate::{Error, Result};

/// How to read a delimited text file.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CsvOptions {
    /// Field delimiter (default `,`).
    pub delimiter: u8,
    /// Whether the first record holds column names (default `true`); without one, columns are
    /// named `column_1`, `column_2`, ….
    pub has_header: bool,
    /// Quote character (default `"`); `None` turns quoting off.
    pub quote: Option<u8>,
    /// Escape character inside quotes; `None` (default) means quotes are escaped by doubling.
    pub escape: Option<u8>,
    /// Field values read as null, compared after trimming when [`trim`](Self::trim) is on
    /// (default: the empty string).
    pub null_tokens: Vec<String>,
    /// Trim ASCII whitespace around every field before typing it (default `false`).
    pub trim: bool,
    /// Records sampled to infer the schema; `0` reads the whole file (default 10,000).
    pub infer_rows: usize,
    /// Use this schema instead of inferring one; its column count must match the file.
    pub schema: Option<SchemaRef>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self {
            delimiter: b',',
            has_header: true,
            quote: Some(b'"'),
            escape: None,
            null_tokens: vec![String::new()],
            trim: false,
            infer_rows: 10_000,
            schema: None,
        }
    }
}

impl CsvOptions {
    /// Set the delimiter.
    #[must_use]
    pub fn with_delimiter(mut self, delimiter: u8) -> Self {
        self.delimiter = delimiter;
        self
    }
    /// Say whether there is a header record.
    #[must_use]
    pub fn with_header(mut self, has_header: bool) -> Self {
        self.has_header = has_header;
        self
    }
    /// Set the quote character (`None`: no quoting).
    #[must_use]
    pub fn with_quote(mut self, quote: Option<u8>) -> Self {
        self.quote = quote;
        self
    }
    /// Set the escape character used inside quotes.
    #[must_use]
    pub fn with_escape(mut self, escape: Option<u8>) -> Self {
        self.escape = escape;
        self
    }
    /// Replace the null tokens.
    #[must_use]
    pub fn with_null_tokens<S: Into<String>>(
        mut self,
        tokens: impl IntoIterator<Item = S>,
    ) -> Self {
        self.null_tokens = tokens.into_iter().map(Into::into).collect();
        self
    }
    /// Trim whitespace around fields.
    #[must_use]
    pub fn with_trim(mut self, trim: bool) -> Self {
        self.trim = trim;
        self
    }
    /// Sample this many records for inference (`0`: all).
    #[must_use]
    pub fn with_infer_rows(mut self, rows: usize) -> Self {
        self.infer_rows = rows;
        self
    }
    /// Use a fixed schema.
    #[must_use]
    pub fn with_schema(mut self, schema: SchemaRef) -> Self {
        self.schema = Some(schema);
        self
    }

    fn core_reader(&self) -> csv_core::Reader {
        let mut b = csv_core::ReaderBuilder::new();
        b.delimiter(self.delimiter);
        match self.quote {
            Some(q) => b.quote(q),
            None => b.quoting(false),
        };
        b.escape(self.escape);
        b.double_quote(self.escape.is_none());
        b.build()
    }
}

/// A CSV (or other delimited text) file read as typed Arrow columns.
///
/// Types are inferred from the first [`CsvOptions::infer_rows`] records: boolean, int64, float64
/// (`NaN` and `inf` included), date32 (`YYYY-MM-DD`), timestamp (µs, `YYYY-MM-DD[T ]HH:MM:SS[.f]`),
/// otherwise utf8. Numbers with a leading `+` or a leading zero (`+1555…`, `00123`) stay text, as
/// they are identifiers, not quantities. A later value that does not fit its column's type is an
/// [`Error::Csv`] naming the record, line, byte offset and column.
#[derive(Debug)]
pub struct CsvSource {
    path: PathBuf,
    options: CsvOptions,
    schema: SchemaRef,
    descriptor: OnceLock<Descriptor>,
}

impl CsvSource {
    /// Open `path`, reading the header and inferring the schema (unless one is given).
    pub fn open(path: impl Into<PathBuf>, options: CsvOptions) -> Result<Self> {
        let path = path.into();
        let schema = infer_schema(&path, &options)?;
        Ok(Self {
            path,
            options,
            schema,
            descriptor: OnceLock::new(),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The options it is read with.
    pub fn options(&self) -> &CsvOptions {
        &self.options
    }
}

impl DataSource for CsvSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn scan(&self, options: &ScanOptions) -> Result<BatchStream> {
        let out_schema = options.project_schema(&self.schema)?;
        let projection = options
            .projection
            .clone()
            .unwrap_or_else(|| (0..self.schema.fields().len()).collect());
        let mut records = RecordReader::open(&self.path, &self.options)?;
        if self.options.has_header {
            records.next_record()?;
        }
        Ok(Box::new(CsvBatches {
            records,
            types: self
                .schema
                .fields()
                .iter()
                .map(|f| f.data_type().clone())
                .collect(),
            names: self
                .schema
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect(),
            projection,
            out_schema,
            batch_size: options.rows_per_batch(),
            done: false,
        }))
    }

    fn descriptor(&self) -> Result<Descriptor> {
        file_descriptor(&self.descriptor, &self.path)
    }
}

/// Pulls records out of a file with `csv-core`, tracking where each starts.
struct RecordReader {
    path: PathBuf,
    core: csv_core::Reader,
    file: File,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    eof: bool,
    out: Vec<u8>,
    ends: Vec<usize>,
    nfields: usize,
    offset: u64,
    line: u64,
    quote: Option<u8>,
    check_quotes: bool,
    /// 1-based number of the record last returned (header included).
    record_no: u64,
    start_offset: u64,
    start_line: u64,
    trim: bool,
    null_tokens: Vec<Vec<u8>>,
    /// Whether the first record is a header (so data record numbers are one less).
    header: bool,
}

impl RecordReader {
    fn open(path: &Path, options: &CsvOptions) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let mut r = Self {
            path: path.to_path_buf(),
            core: options.core_reader(),
            file,
            buf: vec![0; 1 << 16],
            pos: 0,
            len: 0,
            eof: false,
            out: vec![0; 1 << 12],
            ends: vec![0; 64],
            nfields: 0,
            offset: 0,
            line: 1,
            quote: options.quote,
            check_quotes: options.quote.is_some() && options.escape.is_none(),
            record_no: 0,
            start_offset: 0,
            start_line: 1,
            trim: options.trim,
            null_tokens: options
                .null_tokens
                .iter()
                .map(|t| t.as_bytes().to_vec())
                .collect(),
            header: options.has_header,
        };
        r.refill()?;
        if r.buf[..r.len].starts_with(&[0xEF, 0xBB, 0xBF]) {
            r.pos = 3;
            r.offset = 3;
        }
        Ok(r)
    }

    fn refill(&mut self) -> Result<()> {
        self.len = loop {
            match self.file.read(&mut self.buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io(&self.path, e)),
            }
        };
        self.pos = 0;
        self.eof = self.len == 0;
        Ok(())
    }

    /// Read the next record; `false` at end of file.
    fn next_record(&mut self) -> Result<bool> {
        let (mut nout, mut nend) = (0usize, 0usize);
        let mut quotes = 0u64;
        let mut first = true;
        loop {
            if self.pos == self.len && !self.eof {
                self.refill()?;
            }
            let input = &self.buf[self.pos..self.len];
            let (res, nin, o, e) =
                self.core
                    .read_record(input, &mut self.out[nout..], &mut self.ends[nend..]);
            let consumed = &input[..nin];
            if first && !consumed.is_empty() {
                // Skip the line breaks csv-core swallows before a record starts.
                let lead = consumed
                    .iter()
                    .take_while(|b| **b == b'\n' || **b == b'\r')
                    .count();
                self.start_offset = self.offset + lead as u64;
                self.start_line =
                    self.line + consumed[..lead].iter().filter(|b| **b == b'\n').count() as u64;
                first = false;
            }
            let q = self.quote.unwrap_or(b'\n');
            for &b in consumed {
                self.line += u64::from(b == b'\n');
                quotes += u64::from(b == q);
            }
            self.offset += nin as u64;
            self.pos += nin;
            // csv-core reports field ends relative to the start of the record, across calls.
            nout += o;
            nend += e;
            match res {
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull => {
                    let n = self.out.len() * 2;
                    self.out.resize(n, 0);
                }
                ReadRecordResult::OutputEndsFull => {
                    let n = self.ends.len() * 2;
                    self.ends.resize(n, 0);
                }
                ReadRecordResult::Record => {
                    self.nfields = nend;
                    self.record_no += 1;
                    if self.check_quotes && quotes % 2 == 1 && self.eof {
                        return Err(
                            self.error(None, "unterminated quoted field at end of file".into())
                        );
                    }
                    return Ok(true);
                }
                ReadRecordResult::End => return Ok(false),
            }
        }
    }

    /// Raw bytes of field `i` of the current record, trimmed if asked; `None` when it is a null token.
    fn field(&self, i: usize) -> Option<&[u8]> {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        let mut f = &self.out[start..self.ends[i]];
        if self.trim {
            f = f.trim_ascii();
        }
        if self.null_tokens.iter().any(|t| t.as_slice() == f) {
            None
        } else {
            Some(f)
        }
    }

    /// An error about the current record.
    fn error(&self, column: Option<&str>, reason: String) -> Error {
        Error::Csv {
            path: self.path.clone(),
            record: self.record_no.saturating_sub(u64::from(self.header)),
            line: self.start_line,
            byte_offset: self.start_offset,
            column: column.map(str::to_string),
            reason,
        }
    }

    fn check_width(&self, expected: usize) -> Result<()> {
        if self.nfields == expected {
            return Ok(());
        }
        let hint = if self.nfields < expected {
            ""
        } else {
            " (an unbalanced quote may have joined lines)"
        };
        let hint = if self.nfields < expected && self.nfields == 1 && expected > 1 {
            " (wrong delimiter?)"
        } else {
            hint
        };
        Err(self.error(
            None,
            format!("expected {expected} fields, found {}{hint}", self.nfields),
        ))
    }

    fn str_field(&self, i: usize, column: &str) -> Result<Option<&str>> {
        match self.field(i) {
            None => Ok(None),
            Some(b) => std::str::from_utf8(b).map(Some).map_err(|e| {
                self.error(
                    Some(column),
                    format!("invalid UTF-8 at byte {} of the field", e.valid_up_to()),
                )
            }),
        }
    }
}

/// The type lattice used for inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inferred {
    Unknown,
    Bool,
    Int,
    Float,
    Date,
    Timestamp,
    Text,
}

fn classify(s: &str) -> Inferred {
    let b = s.as_bytes();
    if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false") {
        return Inferred::Bool;
    }
    let looks_like_id = b.first() == Some(&b'+')
        || (b.len() > 1 && b[0] == b'0' && b[1].is_ascii_digit())
        || (b.len() > 2 && b[0] == b'-' && b[1] == b'0' && b[2].is_ascii_digit());
    if !looks_like_id {
        if s.parse::<i64>().is_ok() {
            return Inferred::Int;
        }
        if s.parse::<f64>().is_ok() {
            return Inferred::Float;
        }
    }
    if parse_date(s).is_some() {
        return Inferred::Date;
    }
    if parse_timestamp_micros(s).is_some() {
        return Inferred::Timestamp;
    }
    Inferred::Text
}

fn merge(a: Inferred, b: Inferred) -> Inferred {
    use Inferred::*;
    match (a, b) {
        (x, y) if x == y => x,
        (Unknown, x) | (x, Unknown) => x,
        (Int, Float) | (Float, Int) => Float,
        (Date, Timestamp) | (Timestamp, Date) => Timestamp,
        _ => Text,
    }
}

fn to_arrow(t: Inferred) -> DataType {
    match t {
        Inferred::Bool => DataType::Boolean,
        Inferred::Int => DataType::Int64,
        Inferred::Float => DataType::Float64,
        Inferred::Date => DataType::Date32,
        Inferred::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
        Inferred::Unknown | Inferred::Text => DataType::Utf8,
    }
}

fn header_names(r: &RecordReader) -> Result<Vec<String>> {
    let mut names: Vec<String> = Vec::with_capacity(r.nfields);
    for i in 0..r.nfields {
        let start = if i == 0 { 0 } else { r.ends[i - 1] };
        let raw = &r.out[start..r.ends[i]];
        let name = std::str::from_utf8(raw)
            .map_err(|_| r.error(None, format!("header field {} is not valid UTF-8", i + 1)))?
            .trim();
        let mut name = if name.is_empty() {
            format!("column_{}", i + 1)
        } else {
            name.to_string()
        };
        let base = name.clone();
        let mut k = 2;
        while names.contains(&name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        names.push(name);
    }
    Ok(names)
}

fn infer_schema(path: &Path, options: &CsvOptions) -> Result<SchemaRef> {
    let mut r = RecordReader::open(path, options)?;
    let first = r.next_record()?;
    let names = if options.has_header {
        if !first {
            return Err(r.error(None, "empty file: no header record".into()));
        }
        Some(header_names(&r)?)
    } else {
        None
    };
    if let Some(schema) = &options.schema {
        let width = schema.fields().len();
        if let Some(names) = &names {
            let expected: Vec<&String> = schema.fields().iter().map(|f| f.name()).collect();
            if names.len() != width || names.iter().zip(&expected).any(|(a, b)| a != *b) {
                return Err(Error::SchemaMismatch {
                    context: path.display().to_string(),
                    reason: format!(
                        "header has columns {names:?}, the given schema has {expected:?}"
                    ),
                });
            }
        }
        return Ok(schema.clone());
    }
    let width = match &names {
        Some(n) => n.len(),
        None if first => r.nfields,
        None => 0,
    };
    let mut types = vec![Inferred::Unknown; width];
    let mut pending = first && !options.has_header;
    let mut seen = 0usize;
    while options.infer_rows == 0 || seen < options.infer_rows {
        if !pending && !r.next_record()? {
            break;
        }
        pending = false;
        r.check_width(width)?;
        for (i, t) in types.iter_mut().enumerate() {
            if *t == Inferred::Text {
                continue;
            }
            let col = names
                .as_ref()
                .map_or_else(|| format!("column_{}", i + 1), |n| n[i].clone());
            if let Some(s) = r.str_field(i, &col)? {
                *t = merge(*t, classify(s));
            }
        }
        seen += 1;
    }
    let names = names.unwrap_or_else(|| (1..=width).map(|i| format!("column_{i}")).collect());
    let fields: Vec<Field> = names
        .into_iter()
        .zip(types)
        .map(|(n, t)| Field::new(n, to_arrow(t), true))
        .collect();
    Ok(Arc::new(Schema::new(fields)))
}

enum ColBuilder {
    Bool(BooleanBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Date(Date32Builder),
    Ts(TimestampMicrosecondBuilder),
    Text(StringBuilder),
}

impl ColBuilder {
    fn new(t: &DataType, cap: usize) -> Result<Self> {
        Ok(match t {
            DataType::Boolean => Self::Bool(BooleanBuilder::with_capacity(cap)),
            DataType::Int64 => Self::Int(Int64Builder::with_capacity(cap)),
            DataType::Float64 => Self::Float(Float64Builder::with_capacity(cap)),
            DataType::Date32 => Self::Date(Date32Builder::with_capacity(cap)),
            DataType::Timestamp(TimeUnit::Microsecond, None) => {
                Self::Ts(TimestampMicrosecondBuilder::with_capacity(cap))
            }
            DataType::Utf8 => Self::Text(StringBuilder::with_capacity(cap, cap * 16)),
            other => {
                return Err(Error::NotSupported {
                    operation: format!("reading CSV column of type {other}"),
                    implementer: "CsvSource".into(),
                });
            }
        })
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Self::Bool(b) => Arc::new(b.finish()),
            Self::Int(b) => Arc::new(b.finish()),
            Self::Float(b) => Arc::new(b.finish()),
            Self::Date(b) => Arc::new(b.finish()),
            Self::Ts(b) => Arc::new(b.finish()),
            Self::Text(b) => Arc::new(b.finish()),
        }
    }
}

struct CsvBatches {
    records: RecordReader,
    types: Vec<DataType>,
    names: Vec<String>,
    projection: Vec<usize>,
    out_schema: SchemaRef,
    batch_size: usize,
    done: bool,
}

impl CsvBatches {
    fn append(&self, b: &mut ColBuilder, col: usize) -> Result<()> {
        let r = &self.records;
        let name = &self.names[col];
        let bad = |s: &str, what: &str| r.error(Some(name), format!("`{s}` is not a valid {what}"));
        let s = match r.str_field(col, name)? {
            None => {
                match b {
                    ColBuilder::Bool(b) => b.append_null(),
                    ColBuilder::Int(b) => b.append_null(),
                    ColBuilder::Float(b) => b.append_null(),
                    ColBuilder::Date(b) => b.append_null(),
                    ColBuilder::Ts(b) => b.append_null(),
                    ColBuilder::Text(b) => b.append_null(),
                }
                return Ok(());
            }
            Some(s) => s,
        };
        match b {
            ColBuilder::Text(b) => b.append_value(s),
            ColBuilder::Int(b) => b.append_value(s.parse().map_err(|_| bad(s, "int64"))?),
            ColBuilder::Float(b) => b.append_value(s.parse().map_err(|_| bad(s, "float64"))?),
            ColBuilder::Bool(b) => b.append_value(if s.eq_ignore_ascii_case("true") {
                true
            } else if s.eq_ignore_ascii_case("false") {
                false
            } else {
                return Err(bad(s, "boolean"));
            }),
            ColBuilder::Date(b) => {
                b.append_value(parse_date(s).ok_or_else(|| bad(s, "date (YYYY-MM-DD)"))?)
            }
            ColBuilder::Ts(b) => {
                b.append_value(
                    // Inference merges dates into timestamp columns: a date is its midnight.
                    parse_timestamp_micros(s)
                        .or_else(|| parse_date(s).map(|d| i64::from(d) * 86_400_000_000))
                        .ok_or_else(|| bad(s, "timestamp"))?,
                )
            }
        }
        Ok(())
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let mut builders: Vec<ColBuilder> = self
            .projection
            .iter()
            .map(|&c| ColBuilder::new(&self.types[c], self.batch_size.min(DEFAULT_BATCH_SIZE)))
            .collect::<Result<_>>()?;
        let mut rows = 0usize;
        while rows < self.batch_size {
            if !self.records.next_record()? {
                break;
            }
            self.records.check_width(self.types.len())?;
            for (b, &c) in builders.iter_mut().zip(&self.projection) {
                self.append(b, c)?;
            }
            rows += 1;
        }
        if rows == 0 {
            return Ok(None);
        }
        let columns = builders.iter_mut().map(ColBuilder::finish).collect();
        RecordBatch::try_new_with_options(
            self.out_schema.clone(),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )
        .map(Some)
        .map_err(|e| {
            Error::arrow(
                format!("building a batch of {}", self.records.path.display()),
                e,
            )
        })
    }
}

impl Iterator for CsvBatches {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_batch() {
            Ok(Some(b)) => Some(Ok(b)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}
