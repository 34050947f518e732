//! Keyrings of data keys, wrapped by a master key that a [`KeyProvider`] holds.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{SecretKey, fill_random, open, seal};
use crate::error::{Error, Result};

/// Holds the master key that wraps a keyring's data keys.
///
/// Implement it over a KMS (wrap = KMS encrypt, unwrap = KMS decrypt) to keep the master key out
/// of the process; [`LocalKeyProvider`] keeps it in memory, loaded from a file or an environment
/// variable.
///
/// # Contract
/// - `unwrap(id, wrap(id, k)) == k`.
/// - `unwrap` fails with an error, never a wrong key, when `wrapped` was not made by `wrap` with
///   the same master key and key id.
/// - Key material never reaches `Debug` output or logs.
pub trait KeyProvider: Send + Sync + fmt::Debug {
    /// Names the master key (for example `env:AISTD_MASTER_KEY`), recorded in the keyring file.
    fn id(&self) -> String;
    /// Wraps (encrypts) data key `key_id`.
    fn wrap(&self, key_id: &str, key: &SecretKey) -> Result<Vec<u8>>;
    /// Unwraps (decrypts) data key `key_id`.
    fn unwrap(&self, key_id: &str, wrapped: &[u8]) -> Result<SecretKey>;
}

/// A master key held in memory: wraps with XChaCha20-Poly1305 as
/// `nonce (24) ‖ ciphertext (32) ‖ tag (16)`, AAD `"aistd-keyring-v1\0" ‖ key id`.
pub struct LocalKeyProvider {
    id: String,
    master: SecretKey,
}

impl fmt::Debug for LocalKeyProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalKeyProvider")
            .field("id", &self.id)
            .field("master", &self.master)
            .finish()
    }
}

const WRAP_AAD: &[u8] = b"aistd-keyring-v1\0";

fn parse_master(text: &[u8], context: &str) -> Result<SecretKey> {
    if text.len() == 32 && std::str::from_utf8(text).map_or(true, |s| s.trim().len() != 32) {
        let mut k = [0u8; 32];
        k.copy_from_slice(text);
        return Ok(SecretKey::from_bytes(k));
    }
    let s = std::str::from_utf8(text)
        .map_err(|_| {
            Error::crypto(
                context,
                None,
                "a master key is 64 hex digits or 32 raw bytes",
            )
        })?
        .trim();
    let mut k = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(s, k.as_mut()).map_err(|_| {
        Error::crypto(
            context,
            None,
            format!(
                "a master key is 64 hex digits or 32 raw bytes; found {} characters",
                s.len()
            ),
        )
    })?;
    Ok(SecretKey::from_bytes(*k))
}

impl LocalKeyProvider {
    /// A master key given as 64 hex digits.
    pub fn from_hex(id: impl Into<String>, hex: &str) -> Result<Self> {
        let id = id.into();
        let master = parse_master(hex.as_bytes(), &id)?;
        Ok(Self { id, master })
    }

    /// A master key from a file holding 64 hex digits or 32 raw bytes.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| Error::io(path, e))?);
        let id = format!("file:{}", path.display());
        let master = parse_master(&bytes, &id)?;
        Ok(Self { id, master })
    }

    /// A master key from an environment variable holding 64 hex digits.
    pub fn from_env(var: &str) -> Result<Self> {
        let id = format!("env:{var}");
        let value = Zeroizing::new(std::env::var(var).map_err(|_| {
            Error::crypto(
                &id,
                None,
                "the environment variable is not set or not UTF-8",
            )
        })?);
        let master = parse_master(value.as_bytes(), &id)?;
        Ok(Self { id, master })
    }

    /// Writes a new random master key (hex) to `path`, readable by its owner only, and returns a
    /// provider for it. Fails if `path` exists.
    pub fn create_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let master = SecretKey::generate()?;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(path).map_err(|e| Error::io(path, e))?;
        let text = Zeroizing::new(hex::encode(master.expose()) + "\n");
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::io(path, e))?;
        Ok(Self {
            id: format!("file:{}", path.display()),
            master,
        })
    }
}

impl KeyProvider for LocalKeyProvider {
    fn id(&self) -> String {
        self.id.clone()
    }

    fn wrap(&self, key_id: &str, key: &SecretKey) -> Result<Vec<u8>> {
        let mut nonce = [0u8; 24];
        fill_random(&mut nonce)?;
        let aad = [WRAP_AAD, key_id.as_bytes()].concat();
        let mut buf = Zeroizing::new(*key.expose());
        let tag = seal(&self.master.cipher(), &nonce, &aad, buf.as_mut())?;
        Ok([&nonce[..], &buf[..], &tag[..]].concat())
    }

    fn unwrap(&self, key_id: &str, wrapped: &[u8]) -> Result<SecretKey> {
        let ctx = || format!("data key `{key_id}` (master key {})", self.id);
        if wrapped.len() != 72 {
            return Err(Error::crypto(
                ctx(),
                None,
                format!("a wrapped key is 72 bytes, found {}", wrapped.len()),
            ));
        }
        let nonce: [u8; 24] = wrapped[..24].try_into().unwrap_or_default();
        let tag: [u8; 16] = wrapped[56..].try_into().unwrap_or_default();
        let mut buf = Zeroizing::new([0u8; 32]);
        buf.copy_from_slice(&wrapped[24..56]);
        let aad = [WRAP_AAD, key_id.as_bytes()].concat();
        if !open(&self.master.cipher(), &nonce, &aad, buf.as_mut(), &tag) {
            return Err(Error::crypto(
                ctx(),
                None,
                "does not unwrap: wrong master key, or the wrapped key was altered",
            ));
        }
        Ok(SecretKey::from_bytes(*buf))
    }
}

/// Public facts about one key of a keyring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct KeyInfo {
    /// The key id, recorded in every ciphertext made with the key.
    pub id: String,
    /// When the key was made, RFC 3339 UTC.
    pub created: String,
    /// Whether new ciphertexts use it.
    pub primary: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyringFile {
    format: String,
    version: u32,
    provider: String,
    primary: String,
    keys: Vec<KeyEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    id: String,
    created: String,
    wrapped: String,
}

/// Data keys with ids, one of them primary. Rotation adds a new primary key and keeps the old
/// ones, so their ciphertexts keep decrypting.
///
/// On disk (JSON): `{"format": "aistd-keyring", "version": 1, "provider": …, "primary": id,
/// "keys": [{"id", "created", "wrapped": hex}]}`, written atomically. Debug output shows key ids
/// only.
pub struct Keyring {
    path: Option<PathBuf>,
    provider: Box<dyn KeyProvider>,
    primary: String,
    keys: Vec<(KeyInfo, Vec<u8>, SecretKey)>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("path", &self.path)
            .field("provider", &self.provider.id())
            .field("primary", &self.primary)
            .field(
                "keys",
                &self.keys.iter().map(|k| &k.0.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn now() -> String {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64 * 1_000_000)
        .unwrap_or(0);
    crate::source::datetime::timestamp_string(micros) + "Z"
}

fn new_key_id() -> Result<String> {
    let mut b = [0u8; 4];
    fill_random(&mut b)?;
    Ok(format!("k-{}", hex::encode(b)))
}

impl Keyring {
    /// A new in-memory keyring with one fresh primary key.
    pub fn generate(provider: Box<dyn KeyProvider>) -> Result<Self> {
        let mut k = Self {
            path: None,
            provider,
            primary: String::new(),
            keys: Vec::new(),
        };
        k.add_key()?;
        Ok(k)
    }

    /// Creates a keyring file with one fresh primary key. Fails if `path` exists.
    pub fn create(path: impl AsRef<Path>, provider: Box<dyn KeyProvider>) -> Result<Self> {
        let path = path.as_ref();
        if path.exists() {
            return Err(Error::invalid(
                format!("keyring {}", path.display()),
                "the file exists; use rotate to add a key",
            ));
        }
        let mut k = Self::generate(provider)?;
        k.path = Some(path.to_path_buf());
        k.save()?;
        Ok(k)
    }

    /// Opens a keyring file and unwraps its keys with `provider`.
    pub fn open(path: impl AsRef<Path>, provider: Box<dyn KeyProvider>) -> Result<Self> {
        let path = path.as_ref();
        let ctx = format!("keyring {}", path.display());
        let text = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let file: KeyringFile = serde_json::from_slice(&text).map_err(|e| {
            Error::crypto(
                &ctx,
                None,
                format!("malformed at line {} column {}: {e}", e.line(), e.column()),
            )
        })?;
        if file.format != "aistd-keyring" || file.version != 1 {
            return Err(Error::crypto(
                &ctx,
                None,
                format!(
                    "format `{}` version {} is not aistd-keyring version 1",
                    file.format, file.version
                ),
            ));
        }
        let mut keys = Vec::with_capacity(file.keys.len());
        for e in file.keys {
            let wrapped = hex::decode(&e.wrapped).map_err(|err| {
                Error::crypto(
                    &ctx,
                    None,
                    format!("key `{}`: wrapped is not hex: {err}", e.id),
                )
            })?;
            let secret = provider.unwrap(&e.id, &wrapped).map_err(|err| {
                Error::crypto(
                    &ctx,
                    None,
                    format!(
                        "{err} (the keyring was written with master key {}, this is {})",
                        file.provider,
                        provider.id()
                    ),
                )
            })?;
            keys.push((
                KeyInfo {
                    primary: e.id == file.primary,
                    id: e.id,
                    created: e.created,
                },
                wrapped,
                secret,
            ));
        }
        if !keys.iter().any(|k| k.0.primary) {
            return Err(Error::crypto(
                &ctx,
                None,
                format!("primary key `{}` is not among the keys", file.primary),
            ));
        }
        Ok(Self {
            path: Some(path.to_path_buf()),
            provider,
            primary: file.primary,
            keys,
        })
    }

    fn add_key(&mut self) -> Result<String> {
        let id = loop {
            let id = new_key_id()?;
            if !self.keys.iter().any(|k| k.0.id == id) {
                break id;
            }
        };
        let secret = SecretKey::generate()?;
        let wrapped = self.provider.wrap(&id, &secret)?;
        for k in &mut self.keys {
            k.0.primary = false;
        }
        self.keys.push((
            KeyInfo {
                id: id.clone(),
                created: now(),
                primary: true,
            },
            wrapped,
            secret,
        ));
        self.primary = id.clone();
        Ok(id)
    }

    /// Adds a fresh key and makes it primary; older keys stay for decryption. Saves the file if
    /// the keyring has one. Returns the new key id.
    pub fn rotate(&mut self) -> Result<String> {
        let id = self.add_key()?;
        self.save()?;
        Ok(id)
    }

    /// Removes a non-primary key: what it encrypted can no longer be decrypted.
    pub fn remove(&mut self, key_id: &str) -> Result<()> {
        if key_id == self.primary {
            return Err(Error::invalid(
                format!("key `{key_id}`"),
                "the primary key cannot be removed; rotate first",
            ));
        }
        let before = self.keys.len();
        self.keys.retain(|k| k.0.id != key_id);
        if self.keys.len() == before {
            return Err(self.not_found(key_id));
        }
        self.save()
    }

    fn not_found(&self, key_id: &str) -> Error {
        Error::KeyNotFound {
            key_id: key_id.to_string(),
            context: self
                .path
                .as_ref()
                .map_or_else(|| "(in memory)".to_string(), |p| p.display().to_string()),
        }
    }

    /// The keys, oldest first.
    pub fn keys(&self) -> Vec<KeyInfo> {
        self.keys.iter().map(|k| k.0.clone()).collect()
    }

    /// The primary key and its id.
    pub fn primary(&self) -> (&str, &SecretKey) {
        let k = self
            .keys
            .iter()
            .find(|k| k.0.id == self.primary)
            .unwrap_or(&self.keys[0]);
        (&k.0.id, &k.2)
    }

    /// The key with this id.
    pub fn key(&self, key_id: &str) -> Result<&SecretKey> {
        self.keys
            .iter()
            .find(|k| k.0.id == key_id)
            .map(|k| &k.2)
            .ok_or_else(|| self.not_found(key_id))
    }

    /// The keyring file, if it has one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Writes the keyring file atomically (temporary file, fsync, rename). A no-op in memory.
    pub fn save(&self) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let file = KeyringFile {
            format: "aistd-keyring".into(),
            version: 1,
            provider: self.provider.id(),
            primary: self.primary.clone(),
            keys: self
                .keys
                .iter()
                .map(|(info, wrapped, _)| KeyEntry {
                    id: info.id.clone(),
                    created: info.created.clone(),
                    wrapped: hex::encode(wrapped),
                })
                .collect(),
        };
        let mut json = serde_json::to_vec_pretty(&file)
            .map_err(|e| Error::invalid("keyring", e.to_string()))?;
        json.push(b'\n');
        write_atomic(path, &json)
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory: a crash leaves the
/// old file or the new one, never a mix.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| Error::io(tmp.path(), e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
