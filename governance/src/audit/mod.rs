//! A tamper-evident audit log: JSON Lines, with an RFC 6962 Merkle tree over the lines.
//!
//! ```
//! use aistd_governance::audit::{AuditEvent, AuditLog, AuditOptions, Decision, verify};
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("audit.jsonl");
//! let mut log = AuditLog::open(&path, AuditOptions::default())?;
//! log.append(&AuditEvent::new("alice", "decrypt", "loans/email").purpose("training")
//!     .decision(Decision::Allow, "analyst may read Confidential for training"))?;
//! let head = log.commit()?;
//! drop(log);
//! // Anyone holding `head` can later check that the log still extends it.
//! let checked = verify(&path, &[head.clone()])?;
//! assert_eq!(checked.head, aistd_governance::audit::TreeHead { time: String::new(), ..head });
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod log;
pub mod merkle;

pub use log::{
    AuditEvent, AuditLog, AuditOptions, AuditRecord, Decision, HEAD_EVERY, InclusionProof,
    Recovery, TreeHead, Verification, heads_path, now_rfc3339, prove, read_records, tree_of_lines,
    verify,
};
