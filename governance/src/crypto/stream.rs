//! Whole-file streaming encryption in authenticated chunks, and a [`DataSource`] over encrypted
//! Arrow IPC files.
//!
//! Layout (all integers little-endian; see `docs/formats.md`):
//!
//! ```text
//! header: "AISTDENC" | version 1 (u8) | algorithm 1 = XChaCha20-Poly1305 (u8)
//!         | chunk size C (u32) | key id length L (u8) | key id (L bytes UTF-8) | nonce prefix (16)
//! chunks: chunk i = XChaCha20-Poly1305(key, nonce_i, aad = header, plaintext_i) ‖ tag (16)
//!         nonce_i = prefix (16) ‖ i as 7-byte big-endian ‖ last (0x01 for the final chunk, else 0x00)
//! ```
//!
//! Every chunk but the last holds exactly `C` plaintext bytes; the last holds fewer (possibly
//! none), so a file always ends with a chunk marked last. Truncation at a chunk boundary leaves no
//! final chunk; truncation inside one, reordering, or any changed byte fails authentication.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use arrow_ipc::reader::StreamReader;
use arrow_schema::SchemaRef;
use chacha20poly1305::XChaCha20Poly1305;

use super::{Keyring, fill_random, open, seal};
use crate::error::{Error, Result};
use crate::source::ipc::{Projector, format_error, project_batches};
use crate::source::{BatchStream, DataSource, Descriptor, ScanOptions};

/// The first 8 bytes of every encrypted file.
pub const FILE_MAGIC: &[u8; 8] = b"AISTDENC";
/// Plaintext bytes per chunk unless asked otherwise.
pub const DEFAULT_CHUNK_SIZE: u32 = 64 * 1024;
const VERSION: u8 = 1;
const ALG_XCHACHA20_POLY1305: u8 = 1;
const MAX_CHUNK_SIZE: u32 = 1 << 26;
const TAG: usize = 16;

fn header(key_id: &str, chunk_size: u32, prefix: &[u8; 16]) -> Result<Vec<u8>> {
    let id = key_id.as_bytes();
    if id.is_empty() || id.len() > 255 {
        return Err(Error::invalid(
            "key id",
            format!("must be 1 to 255 bytes, is {}", id.len()),
        ));
    }
    let mut h = Vec::with_capacity(31 + id.len());
    h.extend_from_slice(FILE_MAGIC);
    h.push(VERSION);
    h.push(ALG_XCHACHA20_POLY1305);
    h.extend_from_slice(&chunk_size.to_le_bytes());
    h.push(id.len() as u8);
    h.extend_from_slice(id);
    h.extend_from_slice(prefix);
    Ok(h)
}

fn chunk_nonce(prefix: &[u8; 16], index: u64, last: bool) -> [u8; 24] {
    let mut n = [0u8; 24];
    n[..16].copy_from_slice(prefix);
    n[16..23].copy_from_slice(&index.to_be_bytes()[1..]);
    n[23] = u8::from(last);
    n
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Encrypts everything `reader` yields into `writer` with the keyring's primary key, in chunks of
/// `chunk_size` plaintext bytes. Returns the plaintext length.
pub fn encrypt_stream(
    mut reader: impl Read,
    mut writer: impl Write,
    keyring: &Keyring,
    chunk_size: u32,
) -> Result<u64> {
    if chunk_size == 0 || chunk_size > MAX_CHUNK_SIZE {
        return Err(Error::invalid(
            "chunk size",
            format!("must be 1 to {MAX_CHUNK_SIZE} bytes, is {chunk_size}"),
        ));
    }
    let (key_id, key) = keyring.primary();
    let cipher = key.cipher();
    let mut prefix = [0u8; 16];
    fill_random(&mut prefix)?;
    let header = header(key_id, chunk_size, &prefix)?;
    let io = |e| Error::io("<encryption output>", e);
    writer.write_all(&header).map_err(io)?;
    let c = chunk_size as usize;
    let mut buf = vec![0u8; c + TAG];
    let mut total = 0u64;
    for index in 0u64.. {
        let n = read_full(&mut reader, &mut buf[..c])
            .map_err(|e| Error::io("<encryption input>", e))?;
        let last = n < c;
        let tag = seal(
            &cipher,
            &chunk_nonce(&prefix, index, last),
            &header,
            &mut buf[..n],
        )?;
        buf[n..n + TAG].copy_from_slice(&tag);
        writer.write_all(&buf[..n + TAG]).map_err(io)?;
        total += n as u64;
        if last {
            break;
        }
    }
    writer.flush().map_err(io)?;
    Ok(total)
}

/// Decrypts an encrypted stream as it is read. Any failure (a changed byte, reordered or missing
/// chunks, the wrong key) is an error from `read` carrying an [`Error::Crypto`] that names the
/// chunk's byte offset; no unauthenticated plaintext is ever returned.
pub struct DecryptReader<R> {
    inner: R,
    cipher: XChaCha20Poly1305,
    header: Vec<u8>,
    prefix: [u8; 16],
    chunk_size: usize,
    index: u64,
    offset: u64,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    done: bool,
    context: String,
}

impl<R> std::fmt::Debug for DecryptReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecryptReader")
            .field("context", &self.context)
            .field("chunk_size", &self.chunk_size)
            .field("chunk", &self.index)
            .finish_non_exhaustive()
    }
}

impl<R: Read> DecryptReader<R> {
    /// Reads the header and looks up its key in `keyring`. `context` names the input in errors.
    pub fn new(mut inner: R, keyring: &Keyring, context: impl Into<String>) -> Result<Self> {
        let context = context.into();
        let bad = |at: u64, why: &str| Error::crypto(&context, Some(at), why.to_string());
        let io = |e| Error::io(&context, e);
        let mut fixed = [0u8; 15];
        let n = read_full(&mut inner, &mut fixed).map_err(io)?;
        if n < 8 || &fixed[..8] != FILE_MAGIC {
            return Err(bad(0, "not an aistd encrypted file (no AISTDENC magic)"));
        }
        if n < 15 {
            return Err(bad(n as u64, "truncated header"));
        }
        if fixed[8] != VERSION {
            return Err(bad(8, &format!("format version {} is not 1", fixed[8])));
        }
        if fixed[9] != ALG_XCHACHA20_POLY1305 {
            return Err(bad(
                9,
                &format!("algorithm {} is not 1 (XChaCha20-Poly1305)", fixed[9]),
            ));
        }
        let chunk_size = u32::from_le_bytes([fixed[10], fixed[11], fixed[12], fixed[13]]);
        if chunk_size == 0 || chunk_size > MAX_CHUNK_SIZE {
            return Err(bad(10, &format!("chunk size {chunk_size} is out of range")));
        }
        let id_len = fixed[14] as usize;
        let mut rest = vec![0u8; id_len + 16];
        if read_full(&mut inner, &mut rest).map_err(io)? < rest.len() {
            return Err(bad(15, "truncated header"));
        }
        let key_id =
            std::str::from_utf8(&rest[..id_len]).map_err(|_| bad(15, "key id is not UTF-8"))?;
        let key = keyring.key(key_id)?;
        let mut prefix = [0u8; 16];
        prefix.copy_from_slice(&rest[id_len..]);
        let header = [&fixed[..], &rest[..]].concat();
        Ok(Self {
            inner,
            cipher: key.cipher(),
            offset: header.len() as u64,
            header,
            prefix,
            chunk_size: chunk_size as usize,
            index: 0,
            buf: vec![0u8; chunk_size as usize + TAG],
            pos: 0,
            end: 0,
            done: false,
            context,
        })
    }

    fn next_chunk(&mut self) -> Result<()> {
        let n =
            read_full(&mut self.inner, &mut self.buf).map_err(|e| Error::io(&self.context, e))?;
        let at = Some(self.offset);
        if n == 0 {
            return Err(Error::crypto(
                &self.context,
                at,
                format!(
                    "truncated: the file ends after chunk {} without its final chunk",
                    self.index
                ),
            ));
        }
        if n < TAG {
            return Err(Error::crypto(
                &self.context,
                at,
                format!(
                    "truncated: chunk {} is {n} bytes, shorter than its tag",
                    self.index
                ),
            ));
        }
        let last = n < self.buf.len();
        let len = n - TAG;
        let tag: [u8; 16] = self.buf[len..n].try_into().unwrap_or_default();
        let nonce = chunk_nonce(&self.prefix, self.index, last);
        if !open(
            &self.cipher,
            &nonce,
            &self.header,
            &mut self.buf[..len],
            &tag,
        ) {
            return Err(Error::crypto(
                &self.context,
                at,
                format!(
                    "chunk {} fails authentication: changed bytes, reordered or truncated chunks, or the wrong key",
                    self.index
                ),
            ));
        }
        self.pos = 0;
        self.end = len;
        self.offset += n as u64;
        self.index += 1;
        self.done = last;
        Ok(())
    }
}

impl<R: Read> Read for DecryptReader<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.end {
            if self.done {
                return Ok(0);
            }
            self.next_chunk().map_err(std::io::Error::other)?;
        }
        let k = out.len().min(self.end - self.pos);
        out[..k].copy_from_slice(&self.buf[self.pos..self.pos + k]);
        self.pos += k;
        Ok(k)
    }
}

/// The crate error inside an `io::Error` made by [`DecryptReader`], or the `io::Error` itself.
fn unwrap_io(e: std::io::Error, path: &Path) -> Error {
    if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
        match e.into_inner().map(|b| b.downcast::<Error>()) {
            Some(Ok(inner)) => *inner,
            Some(Err(other)) => Error::io(path, std::io::Error::other(other)),
            None => Error::io(path, std::io::Error::other("unknown")),
        }
    } else {
        Error::io(path, e)
    }
}

/// Whether `path` starts with the encrypted-file magic.
pub fn is_encrypted_file(path: impl AsRef<Path>) -> Result<bool> {
    let path = path.as_ref();
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut m = [0u8; 8];
    let n = read_full(&mut f, &mut m).map_err(|e| Error::io(path, e))?;
    Ok(n == 8 && &m == FILE_MAGIC)
}

/// Encrypts file `input` to `output` (written atomically) with the keyring's primary key.
/// Returns the plaintext length.
pub fn encrypt_file(
    input: impl AsRef<Path>,
    output: impl AsRef<Path>,
    keyring: &Keyring,
    chunk_size: u32,
) -> Result<u64> {
    let (input, output) = (input.as_ref(), output.as_ref());
    let reader =
        BufReader::with_capacity(1 << 20, File::open(input).map_err(|e| Error::io(input, e))?);
    atomic_output(output, |w| {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, w);
        let n = encrypt_stream(reader, &mut w, keyring, chunk_size)?;
        w.flush().map_err(|e| Error::io(output, e))?;
        Ok(n)
    })
}

/// Decrypts file `input` to `output`. `output` appears (atomically) only once every chunk has
/// authenticated. Returns the plaintext length.
pub fn decrypt_file(
    input: impl AsRef<Path>,
    output: impl AsRef<Path>,
    keyring: &Keyring,
) -> Result<u64> {
    let (input, output) = (input.as_ref(), output.as_ref());
    let f = BufReader::with_capacity(1 << 20, File::open(input).map_err(|e| Error::io(input, e))?);
    let mut reader = DecryptReader::new(f, keyring, input.display().to_string())?;
    atomic_output(output, |w| {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, w);
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = reader.read(&mut buf).map_err(|e| unwrap_io(e, input))?;
            if n == 0 {
                break;
            }
            w.write_all(&buf[..n]).map_err(|e| Error::io(output, e))?;
            total += n as u64;
        }
        w.flush().map_err(|e| Error::io(output, e))?;
        Ok(total)
    })
}

fn atomic_output(output: &Path, body: impl FnOnce(&mut File) -> Result<u64>) -> Result<u64> {
    let dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
    let n = body(tmp.as_file_mut())?;
    tmp.as_file().sync_all().map_err(|e| Error::io(output, e))?;
    tmp.persist(output)
        .map_err(|e| Error::io(output, e.error))?;
    Ok(n)
}

type Plain = std::io::Chain<std::io::Cursor<Vec<u8>>, BufReader<DecryptReader<BufReader<File>>>>;

/// An encrypted Arrow IPC file or stream, decrypted as it is scanned: memory stays bounded by the
/// chunk size and the batch size, and plaintext never touches the disk.
///
/// ```
/// use std::sync::Arc;
/// use aistd_governance::{DataSource, DataSourceExt, MemorySource, write_ipc_file};
/// use aistd_governance::crypto::{EncryptedSource, Keyring, LocalKeyProvider, encrypt_file};
/// # use arrow_array::{Int64Array, RecordBatch}; use arrow_schema::{DataType, Field, Schema};
/// # let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
/// # let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![1, 2, 3]))])?;
/// let dir = tempfile::tempdir()?;
/// write_ipc_file(&MemorySource::try_new("t", schema, vec![batch])?, &dir.path().join("t.arrow"))?;
/// let keyring = Arc::new(Keyring::generate(Box::new(LocalKeyProvider::from_hex("demo", &"22".repeat(32))?))?);
/// encrypt_file(dir.path().join("t.arrow"), dir.path().join("t.arrow.enc"), &keyring, 4096)?;
/// let source = EncryptedSource::open(dir.path().join("t.arrow.enc"), keyring)?;
/// assert_eq!(source.count_rows()?, 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct EncryptedSource {
    path: PathBuf,
    keyring: Arc<Keyring>,
    schema: SchemaRef,
    descriptor: OnceLock<Descriptor>,
}

impl EncryptedSource {
    /// Opens an encrypted Arrow IPC file or stream and reads its schema.
    pub fn open(path: impl Into<PathBuf>, keyring: Arc<Keyring>) -> Result<Self> {
        let path = path.into();
        let reader = Self::reader(&path, &keyring, None)?;
        Ok(Self {
            schema: reader.schema(),
            path,
            keyring,
            descriptor: OnceLock::new(),
        })
    }

    fn reader(
        path: &Path,
        keyring: &Keyring,
        projection: Option<Vec<usize>>,
    ) -> Result<StreamReader<Plain>> {
        let open_plain = || -> Result<BufReader<DecryptReader<BufReader<File>>>> {
            let f = BufReader::new(File::open(path).map_err(|e| Error::io(path, e))?);
            Ok(BufReader::new(DecryptReader::new(
                f,
                keyring,
                path.display().to_string(),
            )?))
        };
        // An IPC file is magic (8 bytes) + an IPC stream + a footer: read its stream part. An IPC
        // stream starts with a continuation marker.
        let mut magic = [0u8; 8];
        let n = read_full(&mut open_plain()?, &mut magic).map_err(|e| unwrap_io(e, path))?;
        let mut plain = open_plain()?;
        let mut replay = Vec::new();
        if n == 8 && &magic[..6] == b"ARROW1" {
            read_full(&mut plain, &mut magic).map_err(|e| unwrap_io(e, path))?;
            // Writers may pad the magic to their alignment (arrow-rs: 64 bytes) with zeros.
            loop {
                let mut group = [0u8; 8];
                let k = read_full(&mut plain, &mut group).map_err(|e| unwrap_io(e, path))?;
                if k < 8 || group != [0u8; 8] {
                    replay.extend_from_slice(&group[..k]);
                    break;
                }
            }
        } else if !(n >= 4 && magic[..4] == [0xff, 0xff, 0xff, 0xff]) {
            return Err(Error::NotSupported {
                operation: format!(
                    "scanning {} (the plaintext is not Arrow IPC; decrypt it to a file with `aistd crypt decrypt`)",
                    path.display()
                ),
                implementer: "EncryptedSource".into(),
            });
        }
        let plain = std::io::Cursor::new(replay).chain(plain);
        StreamReader::try_new(plain, projection)
            .map_err(|e| format_error(path, "schema message", e))
    }
}

impl DataSource for EncryptedSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn scan(&self, options: &ScanOptions) -> Result<BatchStream> {
        let proj = Projector::new(&self.schema, options)?;
        let reader = Self::reader(&self.path, &self.keyring, proj.read.clone())?;
        Ok(project_batches(
            reader,
            proj,
            self.path.clone(),
            options.rows_per_batch(),
        ))
    }

    fn descriptor(&self) -> Result<Descriptor> {
        crate::source::file_descriptor(&self.descriptor, &self.path)
    }
}
