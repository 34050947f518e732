//! Model bundles: a directory of model files with a manifest listing the SHA-256 of each, and an
//! optional Ed25519 signature over the manifest's digest; packed as a tar archive to move it.
//!
//! ```text
//! my-model/
//!   bundle.json       the Manifest: name, version, platform, tensor signature, files + SHA-256
//!   bundle.sig        optional: {"algorithm": "ed25519", "public_key", "manifest_sha256", "signature"}
//!   model.onnx …      the files the manifest lists (any depth)
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::sign::{self, SigningKey};
use crate::tensor::TensorSpec;
use crate::{Error, Result};

/// The manifest's `format` value this version writes and reads.
pub const FORMAT: &str = "aistd-bundle/1";
/// The manifest's file name, at the top of a bundle.
pub const MANIFEST_FILE: &str = "bundle.json";
/// The signature's file name, at the top of a bundle.
pub const SIGNATURE_FILE: &str = "bundle.sig";

/// A file of a bundle as its manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// SHA-256 of the content, lowercase hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// What a bundle holds: identity, how to run it, its tensor signature and its files' digests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// The model's name (letters, digits, `.`, `_`, `-`).
    pub name: String,
    /// Its version (same characters).
    pub version: String,
    /// The runtime that loads it (`onnx`, `aistd-mlp`, …).
    pub platform: String,
    /// Inputs, in order.
    #[serde(default)]
    pub inputs: Vec<TensorSpec>,
    /// Outputs, in order.
    #[serde(default)]
    pub outputs: Vec<TensorSpec>,
    /// Preprocessing the runtime applies before the model (its own format).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preprocessing: Option<serde_json::Value>,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// Where the model card is (a URL or a file of the bundle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_card: Option<String>,
    /// Every file of the bundle but the manifest and signature, by path relative to the bundle
    /// (`/`-separated).
    #[serde(default)]
    pub files: BTreeMap<String, FileEntry>,
}

impl Manifest {
    /// A manifest without tensors, metadata or files (those are filled in by
    /// [`Bundle::create`]).
    pub fn new(
        name: impl Into<String>,
        version: impl Into<String>,
        platform: impl Into<String>,
    ) -> Result<Self> {
        let m = Manifest {
            format: FORMAT.into(),
            name: name.into(),
            version: version.into(),
            platform: platform.into(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            preprocessing: None,
            metadata: BTreeMap::new(),
            model_card: None,
            files: BTreeMap::new(),
        };
        identifier("name", &m.name)?;
        identifier("version", &m.version)?;
        identifier("platform", &m.platform)?;
        Ok(m)
    }

    /// Adds an input.
    pub fn with_input(mut self, spec: TensorSpec) -> Self {
        self.inputs.push(spec);
        self
    }

    /// Adds an output.
    pub fn with_output(mut self, spec: TensorSpec) -> Self {
        self.outputs.push(spec);
        self
    }

    /// Sets a metadata entry.
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Sets the preprocessing description.
    pub fn with_preprocessing(mut self, preprocessing: serde_json::Value) -> Self {
        self.preprocessing = Some(preprocessing);
        self
    }

    /// Sets the model card's location.
    pub fn with_model_card(mut self, card: impl Into<String>) -> Self {
        self.model_card = Some(card.into());
        self
    }

    /// Checks everything [`Bundle::open`] relies on, naming the field at fault.
    fn validate(&self) -> std::result::Result<(), String> {
        if self.format != FORMAT {
            return Err(format!(
                "format is `{}`; this version reads `{FORMAT}`",
                self.format
            ));
        }
        for (field, value) in [
            ("name", &self.name),
            ("version", &self.version),
            ("platform", &self.platform),
        ] {
            identifier(field, value).map_err(|e| e.to_string())?;
        }
        let mut names = BTreeSet::new();
        for (kind, specs) in [("inputs", &self.inputs), ("outputs", &self.outputs)] {
            for s in specs {
                s.validate().map_err(|e| format!("{kind}: {e}"))?;
                if !names.insert((kind, s.name.as_str())) {
                    return Err(format!("{kind}: tensor {} appears twice", s.name));
                }
            }
        }
        for (path, entry) in &self.files {
            relative_path(path).map_err(|e| format!("files: {e}"))?;
            if entry.sha256.len() != 64
                || !entry
                    .sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return Err(format!(
                    "files.{path}.sha256 is not 64 lowercase hexadecimal digits"
                ));
            }
        }
        Ok(())
    }
}

/// What [`Bundle::open`] demands beyond intact files.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Verify {
    /// Refuse a bundle without a signature.
    pub require_signature: bool,
    /// Public keys (hex) whose signatures are accepted; empty accepts any valid signature.
    pub trusted_keys: Vec<String>,
}

impl Verify {
    /// Intact files; a signature, if present, must verify.
    pub fn intact() -> Self {
        Verify::default()
    }

    /// A valid signature by one of `keys` (hex public keys) is required.
    pub fn signed_by<I, S>(keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Verify {
            require_signature: true,
            trusted_keys: keys.into_iter().map(|k| k.into().to_lowercase()).collect(),
        }
    }
}

/// The signature file's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureFile {
    algorithm: String,
    public_key: String,
    manifest_sha256: String,
    signature: String,
}

/// A bundle on disk whose files matched its manifest when it was opened.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    dir: PathBuf,
    manifest: Manifest,
    manifest_sha256: String,
    signer: Option<String>,
}

impl Bundle {
    /// Creates bundle directory `out` from every regular file under `src` (recursively, paths
    /// kept), with `manifest`'s identity and signature and the files' digests. `out` must not
    /// exist; the bundle is built beside it and renamed into place, so a crash leaves either no
    /// bundle or a whole one.
    pub fn create(out: &Path, mut manifest: Manifest, src: &Path) -> Result<Bundle> {
        if out.exists() {
            return Err(Error::AlreadyExists(out.display().to_string()));
        }
        let files = walk(src)?;
        if files.is_empty() {
            return Err(Error::invalid(
                src.display().to_string(),
                "holds no files to bundle",
            ));
        }
        let tmp = Staging::beside(out)?;
        manifest.files.clear();
        for rel in &files {
            if rel == MANIFEST_FILE || rel == SIGNATURE_FILE {
                return Err(Error::invalid(
                    src.join(rel).display().to_string(),
                    "has a name the bundle reserves for its manifest or signature",
                ));
            }
            let entry = copy_hashed(&src.join(rel), &tmp.path.join(rel))?;
            manifest.files.insert(rel.clone(), entry);
        }
        manifest
            .validate()
            .map_err(|reason| Error::invalid("manifest", reason))?;
        let bytes = manifest_bytes(&manifest)?;
        write_synced(&tmp.path.join(MANIFEST_FILE), &bytes)?;
        tmp.commit(out)?;
        tracing::info!(bundle = %out.display(), name = %manifest.name, version = %manifest.version, files = manifest.files.len(), "bundle created");
        Ok(Bundle {
            dir: out.to_path_buf(),
            manifest_sha256: hex::encode(Sha256::digest(&bytes)),
            manifest,
            signer: None,
        })
    }

    /// Opens bundle directory `dir`, verifying every file against the manifest (a missing,
    /// altered or unlisted file is an error naming it) and the signature as `verify` asks.
    pub fn open(dir: &Path, verify: &Verify) -> Result<Bundle> {
        open_as(dir, &dir.display().to_string(), verify)
    }

    /// Signs the manifest's SHA-256 with `key`, replacing any earlier signature (atomically).
    pub fn sign(&mut self, key: &SigningKey) -> Result<()> {
        let digest = hex::decode(&self.manifest_sha256)
            .map_err(|_| Error::invalid("manifest digest", "is not hex"))?;
        let file = SignatureFile {
            algorithm: "ed25519".into(),
            public_key: key.public_hex(),
            manifest_sha256: self.manifest_sha256.clone(),
            signature: hex::encode(key.sign(&digest)),
        };
        let mut bytes = serde_json::to_vec_pretty(&file)
            .map_err(|e| Error::invalid("signature", e.to_string()))?;
        bytes.push(b'\n');
        let path = self.dir.join(SIGNATURE_FILE);
        let tmp = self
            .dir
            .join(format!(".{SIGNATURE_FILE}.tmp-{}", std::process::id()));
        write_synced(&tmp, &bytes)?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
        sync_dir(&self.dir)?;
        tracing::info!(bundle = %self.dir.display(), key = %file.public_key, "bundle signed");
        self.signer = Some(file.public_key);
        Ok(())
    }

    /// The bundle's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// SHA-256 of the manifest file (hex): what a signature signs.
    pub fn manifest_sha256(&self) -> &str {
        &self.manifest_sha256
    }

    /// The public key (hex) of a verified signature, if the bundle is signed.
    pub fn signer(&self) -> Option<&str> {
        self.signer.as_deref()
    }

    /// The path of a file the manifest lists.
    pub fn file(&self, rel: &str) -> Result<PathBuf> {
        if !self.manifest.files.contains_key(rel) {
            return Err(Error::invalid(
                format!("bundle {}", self.dir.display()),
                format!("lists no file {rel}"),
            ));
        }
        Ok(self.dir.join(rel))
    }

    /// Packs the bundle into one tar archive at `out` (manifest first, then the signature, then
    /// the files in path order; no owners or times, so equal bundles give equal archives),
    /// written beside `out` and renamed into place. `out` must not exist.
    pub fn pack(&self, out: &Path) -> Result<()> {
        if out.exists() {
            return Err(Error::AlreadyExists(out.display().to_string()));
        }
        let tmp = staging_path(out)?;
        let result = (|| {
            let file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
            let mut w = std::io::BufWriter::new(file);
            self.pack_to(&mut w, &tmp)?;
            let file = w.into_inner().map_err(|e| Error::io(&tmp, e.error()))?;
            file.sync_all().map_err(|e| Error::io(&tmp, e))
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, out).map_err(|e| Error::io(out, e))?;
        if let Some(parent) = out.parent() {
            sync_dir(parent)?;
        }
        Ok(())
    }

    /// The archive [`pack`](Self::pack) writes, in memory.
    pub fn to_archive(&self) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.pack_to(&mut bytes, &self.dir)?;
        Ok(bytes)
    }

    /// Writes the archive to `w` (`what` names it in errors).
    fn pack_to(&self, w: &mut dyn Write, what: &Path) -> Result<()> {
        let mut tar = tar::Builder::new(w);
        let mut names = vec![MANIFEST_FILE.to_string()];
        if self.signer.is_some() {
            names.push(SIGNATURE_FILE.to_string());
        }
        names.extend(self.manifest.files.keys().cloned());
        for name in &names {
            let path = self.dir.join(name);
            let data = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            let mut header = tar::Header::new_ustar();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(0);
            header.set_uid(0);
            header.set_gid(0);
            header.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut header, name, data.as_slice())
                .map_err(|e| Error::io(what, e))?;
        }
        tar.finish().map_err(|e| Error::io(what, e))
    }

    /// Unpacks archive `archive` into the new directory `out` and opens it with `verify`; a
    /// bundle that fails verification is not left behind. Entries other than regular files and
    /// directories, absolute paths and `..` are refused.
    pub fn unpack(archive: &Path, out: &Path, verify: &Verify) -> Result<Bundle> {
        let file = std::fs::File::open(archive).map_err(|e| Error::io(archive, e))?;
        Bundle::unpack_from(
            std::io::BufReader::new(file),
            &archive.display().to_string(),
            out,
            verify,
        )
    }

    /// [`unpack`](Self::unpack) from any reader; `label` names the archive in errors.
    pub fn unpack_from(
        archive: impl Read,
        label: &str,
        out: &Path,
        verify: &Verify,
    ) -> Result<Bundle> {
        if out.exists() {
            return Err(Error::AlreadyExists(out.display().to_string()));
        }
        let bad = |reason: String| Error::Malformed {
            file: label.to_string(),
            reason,
        };
        let tmp = Staging::beside(out)?;
        let mut tar = tar::Archive::new(archive);
        let mut seen = BTreeSet::new();
        for entry in tar
            .entries()
            .map_err(|e| bad(format!("not a tar archive: {e}")))?
        {
            let mut entry = entry.map_err(|e| bad(format!("unreadable entry: {e}")))?;
            let raw = entry
                .path()
                .map_err(|e| bad(format!("an entry's path: {e}")))?
                .to_string_lossy()
                .into_owned();
            let name = raw.trim_end_matches('/').to_string();
            match entry.header().entry_type() {
                tar::EntryType::Directory => continue,
                tar::EntryType::Regular | tar::EntryType::Continuous => {}
                other => return Err(bad(format!("entry {raw} is a {other:?}, not a file"))),
            }
            relative_path(&name).map_err(|e| bad(format!("entry {e}")))?;
            if !seen.insert(name.clone()) {
                return Err(bad(format!("entry {name} appears twice")));
            }
            let dest = tmp.path.join(&name);
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
            let mut data = Vec::new();
            entry
                .read_to_end(&mut data)
                .map_err(|e| bad(format!("entry {name} is truncated: {e}")))?;
            write_synced(&dest, &data)?;
        }
        let bundle = open_as(&tmp.path, label, verify)?;
        tmp.commit(out)?;
        Ok(Bundle {
            dir: out.to_path_buf(),
            ..bundle
        })
    }
}

fn open_as(dir: &Path, label: &str, verify: &Verify) -> Result<Bundle> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let bytes = std::fs::read(&manifest_path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::MissingFile {
            bundle: label.into(),
            file: MANIFEST_FILE.into(),
        },
        _ => Error::io(&manifest_path, e),
    })?;
    let malformed = |file: &str, reason: String| Error::Malformed {
        file: format!("{label}/{file}"),
        reason,
    };
    let manifest: Manifest =
        serde_json::from_slice(&bytes).map_err(|e| malformed(MANIFEST_FILE, e.to_string()))?;
    manifest
        .validate()
        .map_err(|reason| malformed(MANIFEST_FILE, reason))?;
    let present: BTreeSet<String> = walk(dir)?
        .into_iter()
        .filter(|f| f != MANIFEST_FILE && f != SIGNATURE_FILE)
        .collect();
    for (rel, entry) in &manifest.files {
        if !present.contains(rel) {
            return Err(Error::MissingFile {
                bundle: label.into(),
                file: rel.clone(),
            });
        }
        let actual = hash_file(&dir.join(rel), None)?;
        if actual != *entry {
            return Err(Error::AlteredFile {
                bundle: label.into(),
                file: rel.clone(),
                expected: entry.sha256.clone(),
                actual: actual.sha256,
            });
        }
    }
    if let Some(extra) = present.iter().find(|f| !manifest.files.contains_key(*f)) {
        return Err(Error::UnlistedFile {
            bundle: label.into(),
            file: extra.clone(),
        });
    }
    let digest = Sha256::digest(&bytes);
    let manifest_sha256 = hex::encode(digest);
    let signer = check_signature(dir, label, digest.as_slice(), &manifest_sha256, verify)?;
    tracing::debug!(
        bundle = label,
        files = manifest.files.len(),
        signed = signer.is_some(),
        "bundle verified"
    );
    Ok(Bundle {
        dir: dir.to_path_buf(),
        manifest,
        manifest_sha256,
        signer,
    })
}

fn check_signature(
    dir: &Path,
    label: &str,
    digest: &[u8],
    digest_hex: &str,
    verify: &Verify,
) -> Result<Option<String>> {
    let path = dir.join(SIGNATURE_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if verify.require_signature {
                return Err(Error::Unsigned {
                    bundle: label.into(),
                });
            }
            return Ok(None);
        }
        Err(e) => return Err(Error::io(&path, e)),
    };
    let file: SignatureFile = serde_json::from_slice(&bytes).map_err(|e| Error::Malformed {
        file: format!("{label}/{SIGNATURE_FILE}"),
        reason: e.to_string(),
    })?;
    let bad = |reason: String| Error::BadSignature {
        bundle: label.into(),
        reason,
    };
    if file.algorithm != "ed25519" {
        return Err(bad(format!(
            "algorithm `{}` (only ed25519 is supported)",
            file.algorithm
        )));
    }
    if file.manifest_sha256 != digest_hex {
        return Err(bad(format!(
            "it signs manifest SHA-256 {}, and the manifest's is {digest_hex}: the manifest changed after signing",
            file.manifest_sha256
        )));
    }
    let signature =
        hex::decode(&file.signature).map_err(|_| bad("the signature is not hex".into()))?;
    sign::verify(&file.public_key, digest, &signature).map_err(bad)?;
    let key = file.public_key.to_lowercase();
    if !verify.trusted_keys.is_empty() && !verify.trusted_keys.contains(&key) {
        return Err(Error::UntrustedKey {
            bundle: label.into(),
            key,
        });
    }
    Ok(Some(key))
}

/// The manifest as written: pretty JSON with a final newline.
fn manifest_bytes(m: &Manifest) -> Result<Vec<u8>> {
    let mut bytes =
        serde_json::to_vec_pretty(m).map_err(|e| Error::invalid("manifest", e.to_string()))?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Names the bundle format accepts: letters, digits, `.`, `_`, `-`, not starting with `.`, at
/// most 128 characters (safe in the v2 protocol's URL paths).
fn identifier(field: &str, value: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && !value.starts_with('.')
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!("`{value}`: use 1–128 letters, digits, `.`, `_` or `-`, not starting with `.`"),
        ))
    }
}

/// A bundle-relative path: `/`-separated, no empty, `.` or `..` component, not absolute.
fn relative_path(path: &str) -> std::result::Result<(), String> {
    if path.is_empty()
        || path.starts_with('/')
        || path.contains('\\')
        || path.chars().any(char::is_control)
        || path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(format!("`{path}` is not a relative path inside the bundle"));
    }
    Ok(())
}

/// Every regular file under `root`, as sorted `/`-separated relative paths. Symbolic links and
/// other special files are refused; names starting with `.` that look like our staging files
/// are errors too, since they would not be verified.
fn walk(root: &Path) -> Result<Vec<String>> {
    fn visit(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
        let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(dir, e))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(|e| Error::io(&path, e))?;
            if kind.is_dir() {
                visit(root, &path, out)?;
            } else if kind.is_file() {
                let rel = path
                    .strip_prefix(root)
                    .map_err(|e| Error::io(&path, e))?
                    .components()
                    .map(|c| c.as_os_str().to_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| {
                        Error::invalid(path.display().to_string(), "has a name that is not UTF-8")
                    })?
                    .join("/");
                out.push(rel);
            } else {
                return Err(Error::invalid(
                    path.display().to_string(),
                    "is not a regular file or directory (links are not bundled)",
                ));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    visit(root, root, &mut out)?;
    out.sort();
    Ok(out)
}

/// SHA-256 and size of a file, read in blocks; with `copy`, each block is also written there.
fn hash_file(path: &Path, mut copy: Option<(&Path, &mut std::fs::File)>) -> Result<FileEntry> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        if let Some((to, out)) = copy.as_mut() {
            out.write_all(&buf[..n]).map_err(|e| Error::io(to, e))?;
        }
        size += n as u64;
    }
    Ok(FileEntry {
        sha256: hex::encode(hasher.finalize()),
        size,
    })
}

/// Copies `from` to `to` (creating parents), hashing what was written, and syncs it.
fn copy_hashed(from: &Path, to: &Path) -> Result<FileEntry> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let mut dst = std::fs::File::create(to).map_err(|e| Error::io(to, e))?;
    let entry = hash_file(from, Some((to, &mut dst)))?;
    dst.sync_all().map_err(|e| Error::io(to, e))?;
    Ok(entry)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(path, e))
}

fn sync_dir(dir: &Path) -> Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// A hidden sibling of `out` to build in, unique to this process and moment.
fn staging_path(out: &Path) -> Result<PathBuf> {
    let name = out
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::invalid(out.display().to_string(), "has no file name"))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    Ok(out.with_file_name(format!(".{name}.tmp-{}-{nanos}", std::process::id())))
}

/// A staging directory, removed on drop unless committed.
struct Staging {
    path: PathBuf,
    committed: bool,
}

impl Staging {
    fn beside(out: &Path) -> Result<Self> {
        let path = staging_path(out)?;
        std::fs::create_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        Ok(Staging {
            path,
            committed: false,
        })
    }

    fn commit(mut self, out: &Path) -> Result<()> {
        sync_dir(&self.path)?;
        std::fs::rename(&self.path, out).map_err(|e| Error::io(out, e))?;
        self.committed = true;
        if let Some(parent) = out.parent() {
            sync_dir(parent)?;
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
