//! A registry of bundles: published versions (immutable), stage aliases (`staging`,
//! `production`, …) with promotion and rollback, every change recorded to an audit sink.
//!
//! Objects live in a [`BundleStore`] (a minimal object-store interface, so object stores can
//! follow [`LocalStore`] and [`MemoryStore`]):
//!
//! ```text
//! models/{name}/versions/{version}.tar   the bundle's archive (Bundle::pack), never replaced
//! models/{name}/aliases.json             {"production": {"version": "3", "history": ["1", "2"]}, …}
//! trust.json                             {"require_signature": true, "trusted_keys": ["…"]}
//! ```
//!
//! The trust policy stored with the registry ([`Registry::set_trust`]) holds for everyone who
//! opens it: each caller's own [`Verify`] can only add to it.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use sha2::Digest;

use crate::bundle::{Bundle, Verify};
use crate::{Error, Result};

/// Where a registry keeps its objects: byte blobs under `/`-separated keys.
///
/// # Contract
///
/// 1. `put` replaces an object whole: a reader sees the old bytes or the new, never a mix.
/// 2. `put_if_absent` writes only when no object has the key, atomically with that check, and
///    says whether it wrote.
/// 3. `get` of a key never written is `Ok(None)`; `list` returns every key under a prefix, sorted.
pub trait BundleStore: Send + Sync + Debug {
    /// The object under `key`, if any.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;
    /// Writes `bytes` under `key`, replacing any object.
    fn put(&self, key: &str, bytes: &[u8]) -> Result<()>;
    /// Writes `bytes` under `key` unless an object exists; `true` if it wrote.
    fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<bool>;
    /// Every key starting with `prefix`, sorted.
    fn list(&self, prefix: &str) -> Result<Vec<String>>;
}

/// Objects as files under a root directory; writes go through a temporary file, renamed (or
/// hard-linked, for `put_if_absent`) into place.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// A store rooted at `root` (created if missing).
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
        Ok(LocalStore { root })
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        if key.is_empty()
            || key.starts_with('/')
            || key
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(Error::invalid("store key", format!("`{key}`")));
        }
        Ok(self.root.join(key))
    }

    /// A temporary name beside `path` (whose directory is created).
    fn temp(&self, path: &Path) -> Result<PathBuf> {
        let parent = path
            .parent()
            .ok_or_else(|| Error::invalid("store key", path.display().to_string()))?;
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        // Unique within this process (the counter) and across processes (the pid).
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(parent.join(format!(".tmp-{}-{n}", std::process::id())))
    }

    fn write_temp(&self, path: &Path, bytes: &[u8]) -> Result<PathBuf> {
        use std::io::Write;
        let tmp = self.temp(path)?;
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::io(&tmp, e))?;
        Ok(tmp)
    }
}

impl BundleStore for LocalStore {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path(key)?;
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let path = self.path(key)?;
        let tmp = self.write_temp(&path, bytes)?;
        std::fs::rename(&tmp, &path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::io(&path, e)
        })
    }

    fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<bool> {
        let path = self.path(key)?;
        let tmp = self.write_temp(&path, bytes)?;
        // A hard link fails if the name exists: the check and the write are one step.
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        fn visit(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
            let entries = match std::fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(Error::io(dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| Error::io(dir, e))?;
                let path = entry.path();
                let name = entry.file_name();
                if name.to_string_lossy().starts_with(".tmp-") {
                    continue;
                }
                if entry.file_type().map_err(|e| Error::io(&path, e))?.is_dir() {
                    visit(root, &path, out)?;
                } else if let Ok(rel) = path.strip_prefix(root) {
                    let key: Vec<String> = rel
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect();
                    out.push(key.join("/"));
                }
            }
            Ok(())
        }
        let mut out = Vec::new();
        visit(&self.root, &self.root, &mut out)?;
        out.retain(|k| k.starts_with(prefix));
        out.sort();
        Ok(out)
    }
}

/// Objects in memory (tests, and a reference for implementors).
#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.objects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl BundleStore for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.lock().get(key).cloned())
    }

    fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        self.lock().insert(key.to_string(), bytes.to_vec());
        Ok(())
    }

    fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<bool> {
        let mut objects = self.lock();
        if objects.contains_key(key) {
            return Ok(false);
        }
        objects.insert(key.to_string(), bytes.to_vec());
        Ok(true)
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        Ok(self
            .lock()
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }
}

/// A change to a registry, as its audit sink receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryEvent {
    /// `publish`, `promote`, `rollback` or `trust` (then model `*`, an empty version, and
    /// `manifest_sha256` the SHA-256 of the policy's JSON).
    pub action: String,
    /// The model.
    pub model: String,
    /// The version published, or the one the alias points to afterwards.
    pub version: String,
    /// The alias changed (promote, rollback).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// The version the alias pointed to before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    /// Who asked.
    pub actor: String,
    /// SHA-256 of the version's manifest.
    pub manifest_sha256: String,
    /// The public key that signed it, if signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
}

/// Receives every registry change. The registry applies a change only after its event was
/// recorded, so the record never misses a change (it may hold one that a crash then lost).
pub trait AuditSink: Send + Sync + Debug {
    /// Records `event`; an error refuses the change.
    fn record(&self, event: &RegistryEvent) -> Result<()>;
}

/// An audit sink that keeps events in memory.
#[derive(Debug, Default)]
pub struct MemoryAudit {
    events: Mutex<Vec<RegistryEvent>>,
}

impl MemoryAudit {
    /// The events so far.
    pub fn events(&self) -> Vec<RegistryEvent> {
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl AuditSink for MemoryAudit {
    fn record(&self, event: &RegistryEvent) -> Result<()> {
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(event.clone());
        Ok(())
    }
}

/// One alias of a model: where it points, and where it pointed before (oldest first).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alias {
    /// The version it points to.
    pub version: String,
    /// Earlier versions, oldest first; rollback returns to the last.
    #[serde(default)]
    pub history: Vec<String>,
}

/// The key of the registry's trust policy.
const TRUST_KEY: &str = "trust.json";

/// Published bundles by model and version, with stage aliases.
#[derive(Debug, Clone)]
pub struct Registry {
    store: Arc<dyn BundleStore>,
    audit: Arc<dyn AuditSink>,
    verify: Verify,
}

impl Registry {
    /// A registry in `store`, recording changes to `audit`; bundles are verified as `verify`
    /// says when published and fetched.
    pub fn new(store: Arc<dyn BundleStore>, audit: Arc<dyn AuditSink>, verify: Verify) -> Self {
        Registry {
            store,
            audit,
            verify,
        }
    }

    /// The trust policy stored with the registry (intact files only, when none was set).
    pub fn trust(&self) -> Result<Verify> {
        match self.store.get(TRUST_KEY)? {
            None => Ok(Verify::intact()),
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Malformed {
                file: TRUST_KEY.into(),
                reason: format!("not a trust policy: {e}"),
            }),
        }
    }

    /// Stores `trust` as the registry's policy, after recording it to the audit sink: from then
    /// on every publish, fetch, promotion and rollback demands it (with the caller's own
    /// [`Verify`] on top). Keys must be 64 hex digits (Ed25519 public keys); a policy that
    /// trusts keys requires signatures.
    pub fn set_trust(&self, trust: &Verify, actor: &str) -> Result<()> {
        let mut trust = trust.clone();
        for k in &trust.trusted_keys {
            if k.len() != 64 || !k.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Error::invalid(
                    format!("trusted key {k:?}"),
                    "is not an Ed25519 public key (64 hex digits)",
                ));
            }
        }
        for k in trust.trusted_keys.iter_mut() {
            k.make_ascii_lowercase();
        }
        trust.trusted_keys.sort();
        trust.trusted_keys.dedup();
        trust.require_signature |= !trust.trusted_keys.is_empty();
        let bytes = serde_json::to_vec_pretty(&trust)
            .map_err(|e| Error::invalid("trust", e.to_string()))?;
        self.audit.record(&RegistryEvent {
            action: "trust".into(),
            model: "*".into(),
            version: String::new(),
            alias: None,
            previous: None,
            actor: actor.into(),
            manifest_sha256: hex::encode(sha2::Sha256::digest(&bytes)),
            signer: None,
        })?;
        self.store.put(TRUST_KEY, &bytes)?;
        tracing::info!(
            require_signature = trust.require_signature,
            keys = trust.trusted_keys.len(),
            "trust policy set"
        );
        Ok(())
    }

    /// What this caller demands: the stored policy and its own [`Verify`] together (a
    /// signature is required if either requires one; where both name keys, a key must be in
    /// both).
    pub fn effective_verify(&self) -> Result<Verify> {
        let stored = self.trust()?;
        let mut v = self.verify.clone();
        v.require_signature |= stored.require_signature;
        v.trusted_keys = match (stored.trusted_keys.is_empty(), v.trusted_keys.is_empty()) {
            (true, _) => v.trusted_keys,
            (false, true) => stored.trusted_keys,
            (false, false) => {
                let both: Vec<String> = v
                    .trusted_keys
                    .iter()
                    .filter(|k| {
                        stored
                            .trusted_keys
                            .iter()
                            .any(|s| s.eq_ignore_ascii_case(k))
                    })
                    .cloned()
                    .collect();
                if both.is_empty() {
                    return Err(Error::invalid(
                        "trusted keys",
                        "none of the keys given is trusted by the registry's policy",
                    ));
                }
                both
            }
        };
        Ok(v)
    }

    fn version_key(model: &str, version: &str) -> String {
        format!("models/{model}/versions/{version}.tar")
    }

    fn aliases_key(model: &str) -> String {
        format!("models/{model}/aliases.json")
    }

    /// Publishes `bundle` as its manifest's name and version. A version is immutable:
    /// publishing the same archive again is a no-op, different content under a published
    /// version is [`Error::AlreadyExists`].
    pub fn publish(&self, bundle: &Bundle, actor: &str) -> Result<()> {
        // Re-verify: a bundle may have changed on disk since it was opened.
        let fresh = Bundle::open(bundle.dir(), &self.effective_verify()?)?;
        let m = fresh.manifest();
        let key = Self::version_key(&m.name, &m.version);
        let archive = fresh.to_archive()?;
        if let Some(existing) = self.store.get(&key)? {
            if existing == archive {
                return Ok(());
            }
            return Err(Error::AlreadyExists(format!(
                "{}:{} (published with other content)",
                m.name, m.version
            )));
        }
        self.audit.record(&RegistryEvent {
            action: "publish".into(),
            model: m.name.clone(),
            version: m.version.clone(),
            alias: None,
            previous: None,
            actor: actor.into(),
            manifest_sha256: fresh.manifest_sha256().into(),
            signer: fresh.signer().map(str::to_string),
        })?;
        if !self.store.put_if_absent(&key, &archive)? {
            return Err(Error::AlreadyExists(format!(
                "{}:{} (published concurrently)",
                m.name, m.version
            )));
        }
        tracing::info!(model = %m.name, version = %m.version, "published");
        Ok(())
    }

    /// Every model with at least one version, sorted.
    pub fn models(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self
            .store
            .list("models/")?
            .into_iter()
            .filter_map(|k| {
                let mut parts = k.split('/');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some("models"), Some(name), Some("versions")) => Some(name.to_string()),
                    _ => None,
                }
            })
            .collect();
        names.dedup();
        Ok(names)
    }

    /// A model's versions, oldest first by version number (numeric parts compared as numbers:
    /// `1.10` after `1.9`).
    pub fn versions(&self, model: &str) -> Result<Vec<String>> {
        let prefix = format!("models/{model}/versions/");
        let mut versions: Vec<String> = self
            .store
            .list(&prefix)?
            .into_iter()
            .filter_map(|k| {
                k.strip_prefix(&prefix)?
                    .strip_suffix(".tar")
                    .map(str::to_string)
            })
            .collect();
        versions.sort_by(|a, b| version_order(a, b));
        Ok(versions)
    }

    /// A model's aliases.
    pub fn aliases(&self, model: &str) -> Result<BTreeMap<String, Alias>> {
        match self.store.get(&Self::aliases_key(model))? {
            None => Ok(BTreeMap::new()),
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Malformed {
                file: Self::aliases_key(model),
                reason: e.to_string(),
            }),
        }
    }

    /// The version `reference` names: an alias, or a published version.
    pub fn resolve(&self, model: &str, reference: &str) -> Result<String> {
        if let Some(a) = self.aliases(model)?.get(reference) {
            return Ok(a.version.clone());
        }
        if self
            .store
            .get(&Self::version_key(model, reference))?
            .is_some()
        {
            return Ok(reference.to_string());
        }
        Err(Error::invalid(
            format!("model {model}"),
            format!("has no version or alias `{reference}`"),
        ))
    }

    /// Unpacks version or alias `reference` of `model` into the new directory `out`, verified.
    pub fn fetch(&self, model: &str, reference: &str, out: &Path) -> Result<Bundle> {
        let version = self.resolve(model, reference)?;
        let key = Self::version_key(model, &version);
        let bytes = self
            .store
            .get(&key)?
            .ok_or_else(|| Error::invalid(format!("model {model}"), format!("{key} vanished")))?;
        Bundle::unpack_from(bytes.as_slice(), &key, out, &self.effective_verify()?)
    }

    /// Points `alias` of `model` at published `version` (the previous target joins its
    /// history). Returns the previous version.
    pub fn promote(
        &self,
        model: &str,
        alias: &str,
        version: &str,
        actor: &str,
    ) -> Result<Option<String>> {
        let (manifest_sha256, signer) = self.verified(model, version)?;
        let mut aliases = self.aliases(model)?;
        let entry = aliases.entry(alias.to_string()).or_default();
        let previous = (!entry.version.is_empty()).then(|| entry.version.clone());
        if previous.as_deref() == Some(version) {
            return Ok(previous);
        }
        self.audit.record(&RegistryEvent {
            action: "promote".into(),
            model: model.into(),
            version: version.into(),
            alias: Some(alias.into()),
            previous: previous.clone(),
            actor: actor.into(),
            manifest_sha256,
            signer,
        })?;
        if let Some(p) = &previous {
            entry.history.push(p.clone());
        }
        entry.version = version.to_string();
        self.write_aliases(model, &aliases)?;
        tracing::info!(model, alias, version, ?previous, "promoted");
        Ok(previous)
    }

    /// Points `alias` of `model` back at the version it pointed to before the last promotion.
    /// Returns that version.
    pub fn rollback(&self, model: &str, alias: &str, actor: &str) -> Result<String> {
        let mut aliases = self.aliases(model)?;
        let entry = aliases.get_mut(alias).ok_or_else(|| {
            Error::invalid(format!("model {model}"), format!("has no alias `{alias}`"))
        })?;
        let Some(back) = entry.history.pop() else {
            return Err(Error::invalid(
                format!("alias {alias} of {model}"),
                format!("has no earlier version than {}", entry.version),
            ));
        };
        let (manifest_sha256, signer) = self.verified(model, &back)?;
        self.audit.record(&RegistryEvent {
            action: "rollback".into(),
            model: model.into(),
            version: back.clone(),
            alias: Some(alias.into()),
            previous: Some(entry.version.clone()),
            actor: actor.into(),
            manifest_sha256,
            signer,
        })?;
        entry.version = back.clone();
        self.write_aliases(model, &aliases)?;
        tracing::info!(model, alias, version = %back, "rolled back");
        Ok(back)
    }

    /// Verifies published `version` with this registry's demands (unpacked to a temporary
    /// directory, removed after); its manifest digest and signer.
    fn verified(&self, model: &str, version: &str) -> Result<(String, Option<String>)> {
        let key = Self::version_key(model, version);
        let bytes = self.store.get(&key)?.ok_or_else(|| {
            Error::invalid(
                format!("model {model}"),
                format!("has no published version {version}"),
            )
        })?;
        let probe = std::env::temp_dir().join(format!(
            "aistd-registry-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        let bundle = Bundle::unpack_from(bytes.as_slice(), &key, &probe, &self.effective_verify()?);
        let _ = std::fs::remove_dir_all(&probe);
        let bundle = bundle?;
        Ok((
            bundle.manifest_sha256().to_string(),
            bundle.signer().map(str::to_string),
        ))
    }

    fn write_aliases(&self, model: &str, aliases: &BTreeMap<String, Alias>) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(aliases)
            .map_err(|e| Error::invalid("aliases", e.to_string()))?;
        self.store.put(&Self::aliases_key(model), &bytes)
    }
}

/// Version order: numeric runs compared as numbers, other runs as text.
pub(crate) fn version_order(a: &str, b: &str) -> std::cmp::Ordering {
    fn parts(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (pa, pb) = (parts(a), parts(b));
    for (x, y) in pa.iter().zip(&pb) {
        let ord = match (x, y) {
            ((true, x), (true, y)) => {
                let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
                x.len().cmp(&y.len()).then_with(|| x.cmp(y))
            }
            ((_, x), (_, y)) => x.cmp(y),
        };
        if ord != std::cmp::Ordering::Equal {
            return ord;
        }
    }
    pa.len().cmp(&pb.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_by_their_numbers() {
        let mut v = vec!["1.10", "1.9", "2", "1.9.1", "10", "1.0"];
        v.sort_by(|a, b| version_order(a, b));
        assert_eq!(v, ["1.0", "1.9", "1.9.1", "1.10", "2", "10"]);
    }
}
