//! The append-only audit log: JSON Lines on disk, an RFC 6962 tree over the lines.

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::merkle::{CompactTree, Hash, MerkleTree, leaf_hash, verify_inclusion};
use crate::error::{Error, Result};

/// The outcome of an access decision, as recorded in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Decision {
    /// Access was granted.
    Allow,
    /// Access was refused.
    Deny,
}

/// What happened: who did what to which data, and, for access decisions, the outcome and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AuditEvent {
    /// The principal (user, service, job).
    pub who: String,
    /// The action (`read`, `decrypt`, `write`, `govern`, …).
    pub action: String,
    /// The data acted on (a dataset id, a path, a column).
    pub data: String,
    /// Why the data was used (`training`, `analytics`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// For access decisions: allowed or denied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// Why: the reason a decision gives, or a free-text note.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Anything else, as JSON.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub detail: serde_json::Value,
}

impl AuditEvent {
    /// `who` did `action` to `data`.
    pub fn new(who: impl Into<String>, action: impl Into<String>, data: impl Into<String>) -> Self {
        Self {
            who: who.into(),
            action: action.into(),
            data: data.into(),
            purpose: None,
            decision: None,
            reason: String::new(),
            detail: serde_json::Value::Null,
        }
    }

    /// Sets the purpose.
    pub fn purpose(mut self, purpose: impl Into<String>) -> Self {
        self.purpose = Some(purpose.into());
        self
    }

    /// Records an access decision and its reason.
    pub fn decision(mut self, decision: Decision, reason: impl Into<String>) -> Self {
        self.decision = Some(decision);
        self.reason = reason.into();
        self
    }

    /// Sets the free-text reason.
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = reason.into();
        self
    }

    /// Attaches extra JSON detail.
    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }
}

/// One line of the log as read back.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct AuditRecord {
    /// 0-based position in the log: the line's leaf index.
    pub seq: u64,
    /// Leaf hash of the previous line (all zeros for the first).
    pub prev: Hash,
    /// When it was appended, RFC 3339 UTC.
    pub time: String,
    /// The event.
    pub event: AuditEvent,
}

/// A tree head: the size of the log and the RFC 6962 hash over its first `size` lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeHead {
    /// Number of lines covered.
    pub size: u64,
    /// The tree head, hex.
    #[serde(with = "hex_hash")]
    pub root: Hash,
    /// When the head was recorded, RFC 3339 UTC.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub time: String,
}

mod hex_hash {
    use super::Hash;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(super) fn serialize<S: Serializer>(h: &Hash, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(h))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Hash, D::Error> {
        let s = Cow::<str>::deserialize(d)?;
        super::parse_hash(&s).ok_or_else(|| D::Error::custom("expected 64 hex digits"))
    }
    use std::borrow::Cow;
}

pub(crate) fn parse_hash(s: &str) -> Option<Hash> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// How appends reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditOptions {
    /// Appends per automatic commit. `1` (the default) commits every append before
    /// [`AuditLog::append`] returns; larger batches buffer events in memory until the batch is
    /// full or [`AuditLog::commit`] is called. An event is acknowledged once a commit covering it
    /// has returned.
    pub batch: usize,
    /// Whether a commit waits for `fdatasync` (default `true`). Without it a commit survives a
    /// crash of the process but not of the machine.
    pub fsync: bool,
}

impl Default for AuditOptions {
    fn default() -> Self {
        Self {
            batch: 1,
            fsync: true,
        }
    }
}

impl AuditOptions {
    /// Commits every `n` appends (at least 1).
    pub fn batch(mut self, n: usize) -> Self {
        self.batch = n.max(1);
        self
    }

    /// Turns `fdatasync` on commit on or off.
    pub fn fsync(mut self, on: bool) -> Self {
        self.fsync = on;
        self
    }
}

/// What opening a log found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recovery {
    /// Bytes of an incomplete last line (a write torn by a crash) that were cut off the log.
    pub truncated_bytes: u64,
    /// Bytes of an incomplete last tree head cut off the heads file.
    pub truncated_head_bytes: u64,
}

/// An append-only, tamper-evident audit log.
///
/// The log is a JSON Lines file: line `i` is event `i` with its `seq` (`i`), `prev` (the leaf hash
/// of line `i - 1`, hex) and `time` fields, followed by the [`AuditEvent`] fields. Leaf `i` of an
/// RFC 6962 tree is the bytes of line `i` without its newline. Every explicit commit, and an
/// automatic one at least every [`HEAD_EVERY`] events, appends the tree head to `<log>.heads`
/// (JSON Lines of [`TreeHead`]); copy heads somewhere the log's writer cannot
/// reach to pin the log's history, and check them with [`verify`].
///
/// A crash can tear only the last line: [`AuditLog::open`] cuts it off (and reports it in
/// [`AuditLog::recovery`]); every acknowledged event survives. One writer at a time: the log file
/// is locked while open.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: File,
    heads: File,
    options: AuditOptions,
    tree: CompactTree,
    last_leaf: Hash,
    buf: Vec<u8>,
    pending: usize,
    committed: u64,
    recovery: Recovery,
    clock: Clock,
    last_head: u64,
}

/// Automatic (batch) commits record a tree head at most once per this many events; explicit
/// [`AuditLog::commit`] calls always record one.
pub const HEAD_EVERY: u64 = 1024;

/// The heads file of a log: `<log>.heads`.
pub fn heads_path(log: &Path) -> PathBuf {
    let mut s = log.as_os_str().to_owned();
    s.push(".heads");
    PathBuf::from(s)
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// The current time as RFC 3339 UTC with microseconds, as the audit log writes it.
pub fn now_rfc3339() -> String {
    let mut c = Clock::default();
    c.format(now_micros()).to_string()
}

/// Formats `YYYY-MM-DDTHH:MM:SS.ffffffZ`, keeping the date part of the last call (appends come
/// in bursts within one day).
#[derive(Debug, Default)]
struct Clock {
    day: i64,
    buf: String,
}

impl Clock {
    fn format(&mut self, micros: i64) -> &str {
        let day = micros.div_euclid(86_400_000_000);
        if self.buf.is_empty() || day != self.day {
            self.day = day;
            self.buf =
                crate::source::datetime::timestamp_string(day * 86_400_000_000)[..10].to_string();
            self.buf.push_str("T00:00:00.000000Z");
        }
        let rem = micros.rem_euclid(86_400_000_000);
        let (secs, frac) = (rem / 1_000_000, rem % 1_000_000);
        let mut tail = *b"00:00:00.000000";
        let mut put = |at: usize, v: i64, width: usize| {
            let mut v = v;
            for k in (0..width).rev() {
                tail[at + k] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, secs / 3600, 2);
        put(3, secs / 60 % 60, 2);
        put(6, secs % 60, 2);
        put(9, frac, 6);
        // The buffer is ASCII: replace the time part in place.
        let tail = std::str::from_utf8(&tail).unwrap_or("00:00:00.000000");
        self.buf.replace_range(11..26, tail);
        &self.buf
    }
}

#[derive(Serialize)]
struct LineOut<'a> {
    seq: u64,
    prev: &'a str,
    time: &'a str,
    who: &'a str,
    action: &'a str,
    data: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    purpose: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    decision: Option<Decision>,
    #[serde(skip_serializing_if = "str::is_empty")]
    reason: &'a str,
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    detail: &'a serde_json::Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LineIn<'a> {
    seq: u64,
    #[serde(borrow)]
    prev: Cow<'a, str>,
    #[serde(borrow)]
    time: Cow<'a, str>,
    #[serde(borrow)]
    who: Cow<'a, str>,
    #[serde(borrow)]
    action: Cow<'a, str>,
    #[serde(borrow)]
    data: Cow<'a, str>,
    #[serde(default, borrow)]
    purpose: Option<Cow<'a, str>>,
    #[serde(default)]
    decision: Option<Decision>,
    #[serde(default, borrow)]
    reason: Option<Cow<'a, str>>,
    #[serde(default)]
    detail: serde_json::Value,
}

impl LineIn<'_> {
    fn into_record(self) -> Result<AuditRecord, String> {
        let prev = parse_hash(&self.prev).ok_or("`prev` is not 64 hex digits")?;
        Ok(AuditRecord {
            seq: self.seq,
            prev,
            time: self.time.into_owned(),
            event: AuditEvent {
                who: self.who.into_owned(),
                action: self.action.into_owned(),
                data: self.data.into_owned(),
                purpose: self.purpose.map(Cow::into_owned),
                decision: self.decision,
                reason: self.reason.map(Cow::into_owned).unwrap_or_default(),
                detail: self.detail,
            },
        })
    }
}

/// Why a line fails its local checks. `blame_previous` is set when the line is well-formed but
/// its `prev` does not match the line before it: that earlier line is the one that changed.
struct LineError {
    blame_previous: bool,
    reason: String,
}

impl From<String> for LineError {
    fn from(reason: String) -> Self {
        Self {
            blame_previous: false,
            reason,
        }
    }
}

/// Checks one line against its position and, when known, its predecessor's leaf hash (otherwise
/// only that `prev` is well-formed).
fn check_line(line: &[u8], seq: u64, prev: Option<&Hash>) -> Result<(), LineError> {
    let parsed: LineIn<'_> =
        serde_json::from_slice(line).map_err(|e| format!("not an audit event: {e}"))?;
    if parsed.seq != seq {
        return Err(format!(
            "`seq` is {} where {seq} was expected (a line was removed, inserted or reordered)",
            parsed.seq
        )
        .into());
    }
    let Some(prev) = prev else {
        parse_hash(&parsed.prev).ok_or_else(|| String::from("`prev` is not 64 hex digits"))?;
        return Ok(());
    };
    let mut want = [0u8; 64];
    hex::encode_to_slice(prev, &mut want).map_err(|e| e.to_string())?;
    if parsed.prev.as_bytes() != want {
        if seq == 0 {
            return Err(String::from("`prev` of the first line is not all zeros").into());
        }
        return Err(LineError {
            blame_previous: true,
            reason: format!(
                "this line no longer hashes to the `prev` recorded by line {} (one of the two was changed)",
                seq + 2
            ),
        });
    }
    Ok(())
}

/// The error for a line that fails its local checks.
fn line_error(path: &Path, ls: &[(usize, &[u8])], i: usize, e: LineError) -> Error {
    let at = if e.blame_previous && i > 0 { i - 1 } else { i };
    tampered(path, at as u64 + 1, ls[at].0 as u64, e.reason)
}

/// Splits a log's bytes into complete lines: `(start offset, line without newline)`, and the
/// length of an incomplete tail.
fn lines(bytes: &[u8]) -> (Vec<(usize, &[u8])>, usize) {
    let mut out = Vec::with_capacity(bytes.len() / 128);
    let mut start = 0;
    for end in memchr_iter(bytes) {
        out.push((start, &bytes[start..end]));
        start = end + 1;
    }
    (out, bytes.len() - start)
}

fn memchr_iter(bytes: &[u8]) -> impl Iterator<Item = usize> + '_ {
    memchr::memchr_iter(b'\n', bytes)
}

fn read_all(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

fn tampered(path: &Path, line: u64, byte_offset: u64, reason: impl Into<String>) -> Error {
    Error::AuditTampered {
        path: path.to_path_buf(),
        line,
        byte_offset,
        reason: reason.into(),
    }
}

fn read_heads(path: &Path) -> Result<(Vec<TreeHead>, usize)> {
    let hp = heads_path(path);
    let bytes = match std::fs::read(&hp) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(Error::io(&hp, e)),
    };
    let (ls, torn) = lines(&bytes);
    let mut heads = Vec::with_capacity(ls.len());
    for (i, (off, l)) in ls.iter().enumerate() {
        let h: TreeHead = serde_json::from_slice(l).map_err(|e| {
            tampered(
                &hp,
                i as u64 + 1,
                *off as u64,
                format!("not a tree head: {e}"),
            )
        })?;
        if let Some(prev) = heads.last().map(|p: &TreeHead| p.size)
            && h.size < prev
        {
            return Err(tampered(
                &hp,
                i as u64 + 1,
                *off as u64,
                format!(
                    "tree size {} is smaller than the head before it ({prev})",
                    h.size
                ),
            ));
        }
        heads.push(h);
    }
    Ok((heads, torn))
}

impl AuditLog {
    /// Opens (or creates) the log at `path` for appending, after checking every line and the
    /// last recorded tree head, and cutting off a line torn by a crash.
    pub fn open(path: impl AsRef<Path>, options: AuditOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        file.try_lock().map_err(|e| {
            Error::io(
                &path,
                std::io::Error::new(
                    std::io::ErrorKind::WouldBlock,
                    format!("the audit log is open in another writer ({e})"),
                ),
            )
        })?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| Error::io(&path, e))?;
        let (ls, torn) = lines(&bytes);
        let mut tree = CompactTree::new();
        let mut last_leaf = [0u8; 32];
        let (heads, torn_heads) = read_heads(&path)?;
        let last_head = heads.last().cloned();
        if let Some(h) = &last_head
            && h.size > ls.len() as u64
        {
            return Err(tampered(
                &path,
                0,
                bytes.len() as u64,
                format!(
                    "the log has {} lines but a tree head was recorded at size {}: acknowledged events are missing",
                    ls.len(),
                    h.size
                ),
            ));
        }
        for (i, (off, l)) in ls.iter().enumerate() {
            check_line(l, i as u64, Some(&last_leaf)).map_err(|e| line_error(&path, &ls, i, e))?;
            last_leaf = leaf_hash(l);
            tree.push(last_leaf);
            if let Some(h) = &last_head
                && h.size == tree.size()
                && h.root != tree.root()
            {
                return Err(tampered(
                    &path,
                    i as u64 + 1,
                    *off as u64,
                    format!(
                        "the first {} lines do not match the last recorded tree head",
                        h.size
                    ),
                ));
            }
        }
        let mut recovery = Recovery::default();
        if torn > 0 {
            let keep = (bytes.len() - torn) as u64;
            tracing::warn!(log = %path.display(), bytes = torn, "cutting off a torn last line");
            file.set_len(keep).map_err(|e| Error::io(&path, e))?;
            file.sync_all().map_err(|e| Error::io(&path, e))?;
            recovery.truncated_bytes = torn as u64;
        }
        let hp = heads_path(&path);
        let heads_file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&hp)
            .map_err(|e| Error::io(&hp, e))?;
        if torn_heads > 0 {
            let len = heads_file.metadata().map_err(|e| Error::io(&hp, e))?.len();
            heads_file
                .set_len(len - torn_heads as u64)
                .map_err(|e| Error::io(&hp, e))?;
            recovery.truncated_head_bytes = torn_heads as u64;
        }
        file.seek(SeekFrom::End(0))
            .map_err(|e| Error::io(&path, e))?;
        let committed = tree.size();
        Ok(Self {
            path,
            file,
            heads: heads_file,
            options,
            tree,
            last_leaf,
            buf: Vec::with_capacity(1 << 16),
            pending: 0,
            committed,
            recovery,
            clock: Clock::default(),
            last_head: last_head.map_or(0, |h| h.size),
        })
    }

    /// What opening the log repaired.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Events appended so far, committed or not.
    pub fn len(&self) -> u64 {
        self.tree.size()
    }

    /// Whether the log has no events.
    pub fn is_empty(&self) -> bool {
        self.tree.size() == 0
    }

    /// Events covered by a completed commit: the acknowledged ones.
    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// The tree head over every appended event.
    pub fn head(&self) -> TreeHead {
        TreeHead {
            size: self.tree.size(),
            root: self.tree.root(),
            time: String::new(),
        }
    }

    /// Appends an event and returns its `seq`. The event is acknowledged when this returns with
    /// the default batch of 1, otherwise once a commit covers it.
    pub fn append(&mut self, event: &AuditEvent) -> Result<u64> {
        let seq = self.tree.size();
        let mut prev = [0u8; 64];
        hex::encode_to_slice(self.last_leaf, &mut prev)
            .map_err(|e| Error::invalid("audit event", e.to_string()))?;
        let prev = std::str::from_utf8(&prev).unwrap_or_default();
        let time = self.clock.format(now_micros());
        let start = self.buf.len();
        let line = LineOut {
            seq,
            prev,
            time,
            who: &event.who,
            action: &event.action,
            data: &event.data,
            purpose: event.purpose.as_deref(),
            decision: event.decision,
            reason: &event.reason,
            detail: &event.detail,
        };
        serde_json::to_writer(&mut self.buf, &line)
            .map_err(|e| Error::invalid("audit event", e.to_string()))?;
        let leaf = leaf_hash(&self.buf[start..]);
        self.buf.push(b'\n');
        self.tree.push(leaf);
        self.last_leaf = leaf;
        self.pending += 1;
        if self.pending >= self.options.batch {
            // Automatic commits record a tree head every HEAD_EVERY events; explicit ones always.
            let due = self.tree.size() - self.last_head >= HEAD_EVERY;
            self.flush(due)?;
        }
        Ok(seq)
    }

    /// Writes buffered events, waits for the disk if [`AuditOptions::fsync`] is on, records the
    /// tree head in the heads file, and returns it. Everything appended before is acknowledged.
    pub fn commit(&mut self) -> Result<TreeHead> {
        self.flush(true)
    }

    fn flush(&mut self, record_head: bool) -> Result<TreeHead> {
        let mut head = self.head();
        if self.pending == 0
            && self.committed == head.size
            && (!record_head || self.last_head == head.size)
        {
            return Ok(head);
        }
        self.file
            .write_all(&self.buf)
            .map_err(|e| Error::io(&self.path, e))?;
        if self.options.fsync {
            self.file
                .sync_data()
                .map_err(|e| Error::io(&self.path, e))?;
        }
        self.buf.clear();
        self.pending = 0;
        self.committed = head.size;
        if !record_head {
            return Ok(head);
        }
        head.time = now_rfc3339();
        let mut line =
            serde_json::to_vec(&head).map_err(|e| Error::invalid("tree head", e.to_string()))?;
        line.push(b'\n');
        let hp = heads_path(&self.path);
        self.heads.write_all(&line).map_err(|e| Error::io(&hp, e))?;
        if self.options.fsync {
            self.heads.sync_data().map_err(|e| Error::io(&hp, e))?;
        }
        self.last_head = head.size;
        Ok(head)
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        if (self.pending > 0 || self.last_head != self.tree.size())
            && let Err(e) = self.commit()
        {
            tracing::error!(log = %self.path.display(), error = %e, "audit log: final commit failed");
        }
    }
}

/// What [`verify`] checked.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Verification {
    /// Events in the log.
    pub events: u64,
    /// The tree head over all of them.
    pub head: TreeHead,
    /// Recorded tree heads that were checked (from the heads file and from the caller).
    pub heads_checked: usize,
    /// Bytes of an incomplete last line (a torn write that the next open cuts off).
    pub torn_tail_bytes: u64,
}

/// Checks a whole log: every line is an event with the right `seq` and `prev`, and the tree over
/// the lines matches every head in `<log>.heads` and every head in `pinned`.
///
/// The first problem comes back as [`Error::AuditTampered`] naming the line: the line itself
/// where it is malformed or out of place, or the first line covered by the first head that no
/// longer matches.
pub fn verify(path: impl AsRef<Path>, pinned: &[TreeHead]) -> Result<Verification> {
    verify_in_blocks(path.as_ref(), pinned, 16 << 20)
}

/// [`verify`], reading `block` bytes at a time into one reused buffer: memory stays at the block
/// size plus 40 bytes per event, and the kernel does not have to hand out (and zero) a fresh page
/// per 4 KiB of log.
fn verify_in_blocks(path: &Path, pinned: &[TreeHead], block: u64) -> Result<Verification> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut buf: Vec<u8> = Vec::with_capacity(2 * block as usize);
    let mut base_offset = 0u64;
    let mut leaves: Vec<Hash> = Vec::new();
    let mut offsets: Vec<u64> = Vec::new();
    let torn = loop {
        let n = (&mut file)
            .take(block)
            .read_to_end(&mut buf)
            .map_err(|e| Error::io(path, e))?;
        let complete = memchr::memrchr(b'\n', &buf).map_or(0, |i| i + 1);
        let (ls, _) = lines(&buf[..complete]);
        let global: Vec<(u64, &[u8])> = ls
            .iter()
            .map(|(o, l)| (base_offset + *o as u64, *l))
            .collect();
        let prev = leaves.last().copied().zip(offsets.last().copied());
        let hashes = hash_and_check(path, &global, leaves.len(), prev)?;
        leaves.extend(hashes);
        offsets.extend(global.iter().map(|(o, _)| *o));
        buf.drain(..complete);
        base_offset += complete as u64;
        if n == 0 {
            break buf.len();
        }
    };
    let file_len = base_offset + torn as u64;
    let (mut heads, _) = read_heads(path)?;
    heads.extend(pinned.iter().cloned());
    heads.sort_by_key(|h| h.size);
    let mut tree = CompactTree::new();
    let mut next = heads.iter().peekable();
    let mut covered = 0u64;
    let mut check = |tree: &CompactTree, covered: &mut u64| -> Result<()> {
        while let Some(h) = next.peek() {
            if h.size != tree.size() {
                break;
            }
            if h.root != tree.root() {
                let first = (*covered).min(h.size.saturating_sub(1)) as usize;
                let off = offsets.get(first).copied().unwrap_or(0);
                return Err(tampered(
                    path,
                    first as u64 + 1,
                    off,
                    format!(
                        "lines {}..={} do not match the tree head recorded at size {} (root {})",
                        first + 1,
                        h.size,
                        h.size,
                        hex::encode(h.root)
                    ),
                ));
            }
            *covered = h.size;
            next.next();
        }
        Ok(())
    };
    check(&tree, &mut covered)?;
    for leaf in &leaves {
        tree.push(*leaf);
        check(&tree, &mut covered)?;
    }
    if let Some(h) = next.next() {
        return Err(tampered(
            path,
            leaves.len() as u64,
            file_len,
            format!(
                "the log has {} lines but a tree head was recorded at size {}: lines were removed",
                leaves.len(),
                h.size
            ),
        ));
    }
    Ok(Verification {
        events: leaves.len() as u64,
        head: TreeHead {
            size: tree.size(),
            root: tree.root(),
            time: String::new(),
        },
        heads_checked: heads.len(),
        torn_tail_bytes: torn as u64,
    })
}

/// One thread's share of [`hash_and_check`]: leaf hashes, and the first bad line if any.
type Part = (Vec<Hash>, Option<(usize, LineError)>);

/// Hashes and checks lines `base..base + ls.len()` of a log (`ls`: global byte offset and bytes
/// of each), on all cores; `prev` is the leaf hash and offset of line `base - 1`. The first bad
/// line comes back as an error.
fn hash_and_check(
    path: &Path,
    ls: &[(u64, &[u8])],
    base: usize,
    prev: Option<(Hash, u64)>,
) -> Result<Vec<Hash>> {
    let err = |i: usize, e: LineError| -> Error {
        // `i` is local to `ls`; blaming the line before the first one means line `base - 1`.
        if e.blame_previous && i == 0 {
            let (at, off) = (base.saturating_sub(1), prev.map_or(0, |p| p.1));
            return tampered(path, at as u64 + 1, off, e.reason);
        }
        let at = if e.blame_previous { i - 1 } else { i };
        tampered(path, (base + at) as u64 + 1, ls[at].0, e.reason)
    };
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8);
    let chunk = ls.len().div_ceil(threads).max(4096);
    let parts: Vec<Part> = std::thread::scope(|s| {
        let handles: Vec<_> = ls
            .chunks(chunk)
            .enumerate()
            .map(|(c, part)| {
                s.spawn(move || {
                    let first = c * chunk;
                    let mut hashes: Vec<Hash> = Vec::with_capacity(part.len());
                    for (j, (_, l)) in part.iter().enumerate() {
                        let i = first + j;
                        let seq = (base + i) as u64;
                        // The first line of a part is checked against its predecessor once
                        // every part is done (the first line of the log against zeros).
                        let r = match hashes.last() {
                            Some(p) => check_line(l, seq, Some(p)),
                            None if seq == 0 => check_line(l, 0, Some(&[0u8; 32])),
                            None => check_line(l, seq, None),
                        };
                        if let Err(reason) = r {
                            return (hashes, Some((i, reason)));
                        }
                        hashes.push(leaf_hash(l));
                    }
                    (hashes, None)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    (
                        Vec::new(),
                        Some((0, String::from("verifier thread panicked").into())),
                    )
                })
            })
            .collect()
    });
    let mut out: Vec<Hash> = Vec::with_capacity(ls.len());
    for (hashes, e) in parts {
        let i = out.len();
        let before = out.last().copied().or(prev.map(|p| p.0));
        if let Some(p) = before
            && !hashes.is_empty()
        {
            check_line(ls[i].1, (base + i) as u64, Some(&p)).map_err(|e| err(i, e))?;
        }
        if let Some((i, e)) = e {
            return Err(err(i, e));
        }
        out.extend(hashes);
    }
    Ok(out)
}

/// Reads every event of a log (complete lines only).
pub fn read_records(path: impl AsRef<Path>) -> Result<Vec<AuditRecord>> {
    let path = path.as_ref();
    let bytes = read_all(path)?;
    let (ls, _) = lines(&bytes);
    ls.iter()
        .enumerate()
        .map(|(i, (off, l))| {
            serde_json::from_slice::<LineIn<'_>>(l)
                .map_err(|e| format!("not an audit event: {e}"))
                .and_then(LineIn::into_record)
                .map_err(|r| tampered(path, i as u64 + 1, *off as u64, r))
        })
        .collect()
}

/// The RFC 6962 tree over the complete lines of any file (leaf `i` is line `i` without its
/// newline), whatever the lines hold.
pub fn tree_of_lines(path: impl AsRef<Path>) -> Result<MerkleTree> {
    let path = path.as_ref();
    let bytes = read_all(path)?;
    let (ls, _) = lines(&bytes);
    Ok(MerkleTree::from_leaf_hashes(
        ls.iter().map(|(_, l)| leaf_hash(l)).collect(),
    ))
}

/// An inclusion proof for one line of a log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct InclusionProof {
    /// 0-based leaf index (the line's `seq`).
    pub index: u64,
    /// Tree size the proof is for.
    pub size: u64,
    /// Leaf hash of the line, hex.
    #[serde(with = "hex_hash")]
    pub leaf_hash: Hash,
    /// Tree head at `size`, hex.
    #[serde(with = "hex_hash")]
    pub root: Hash,
    /// The audit path, bottom-up, hex.
    #[serde(with = "hex_hashes")]
    pub proof: Vec<Hash>,
}

impl InclusionProof {
    /// Whether the proof shows its leaf is in the tree with its root.
    pub fn verify(&self) -> bool {
        verify_inclusion(
            &self.leaf_hash,
            self.index,
            self.size,
            &self.proof,
            &self.root,
        )
    }
}

mod hex_hashes {
    use super::{Hash, parse_hash};
    use serde::{Deserialize, Deserializer, Serializer, de::Error, ser::SerializeSeq};

    pub(super) fn serialize<S: Serializer>(v: &[Hash], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for h in v {
            seq.serialize_element(&hex::encode(h))?;
        }
        seq.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Hash>, D::Error> {
        let v = Vec::<String>::deserialize(d)?;
        v.iter()
            .map(|s| parse_hash(s).ok_or_else(|| D::Error::custom("expected 64 hex digits")))
            .collect()
    }
}

/// Proves that line `index` is in the log's tree of the first `size` lines (all lines when
/// `None`).
pub fn prove(path: impl AsRef<Path>, index: u64, size: Option<u64>) -> Result<InclusionProof> {
    let tree = tree_of_lines(&path)?;
    let size = size.unwrap_or(tree.size());
    let bad = |e: super::merkle::ProofError| Error::invalid("inclusion proof", e.to_string());
    let proof = tree.inclusion_proof(index, size).map_err(bad)?;
    Ok(InclusionProof {
        index,
        size,
        leaf_hash: tree.leaf(index).unwrap_or_default(),
        root: tree.root_at(size).map_err(bad)?,
        proof,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_formats_rfc3339_across_days() {
        let mut c = Clock::default();
        assert_eq!(c.format(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(c.format(86_399_999_999), "1970-01-01T23:59:59.999999Z");
        assert_eq!(
            c.format(1_796_000_000_123_456),
            "2026-11-30T00:53:20.123456Z"
        );
        assert_eq!(c.format(86_400_000_001), "1970-01-02T00:00:00.000001Z");
    }

    #[test]
    fn verification_is_the_same_whatever_the_block_size() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("a.jsonl");
        let mut log =
            AuditLog::open(&path, AuditOptions::default().batch(50).fsync(false)).expect("open");
        for i in 0..300 {
            log.append(&AuditEvent::new(format!("u{i}"), "read", "x").reason("r".repeat(i % 37)))
                .expect("append");
        }
        drop(log);
        let whole = verify(&path, &[]).expect("verify");
        for block in [1u64, 7, 100, 301, 4096] {
            assert_eq!(
                verify_in_blocks(&path, &[], block).expect("blocks"),
                whole,
                "block {block}"
            );
        }
        // A change found across block boundaries names the same line.
        let text = std::fs::read_to_string(&path).expect("read");
        std::fs::write(
            &path,
            text.replacen("\"who\":\"u150\"", "\"who\":\"u999\"", 1),
        )
        .expect("write");
        for block in [1u64, 97, 5000, 16 << 20] {
            match verify_in_blocks(&path, &[], block) {
                Err(Error::AuditTampered { line, .. }) => assert_eq!(line, 151, "block {block}"),
                other => panic!("block {block}: {other:?}"),
            }
        }
    }
}
