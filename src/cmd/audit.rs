//! `aistd audit`: append to, verify and prove an audit log.

use std::path::PathBuf;
use std::process::ExitCode;

use aistd_governance::Error;
use aistd_governance::audit::{
    self, AuditEvent, AuditLog, AuditOptions, Decision, TreeHead, tree_of_lines,
};
use anyhow::{Context, Result, bail};
use clap::Subcommand;

use crate::print_json;

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Check every line and every recorded tree head; exit status 1 and the first bad line if the
    /// log was tampered with.
    Verify {
        /// The log (JSON Lines; tree heads in LOG.heads).
        log: PathBuf,
        /// A tree head kept elsewhere, as SIZE:ROOT (hex); may be repeated.
        #[arg(long = "head", value_name = "SIZE:ROOT")]
        heads: Vec<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the RFC 6962 tree head (hex) over the log's lines.
    Root {
        /// The log: any file of lines (leaf i is line i without its newline).
        log: PathBuf,
        /// Tree size (default: every complete line).
        #[arg(long)]
        size: Option<u64>,
        /// Print size and root as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print an inclusion proof for one line (JSON), or a consistency proof with `--from`.
    Prove {
        /// The log.
        log: PathBuf,
        /// 0-based index of the line to prove.
        #[arg(long, required_unless_present = "from")]
        index: Option<u64>,
        /// Prove that the tree of the first FROM lines is a prefix of the tree of SIZE lines.
        #[arg(long, conflicts_with = "index")]
        from: Option<u64>,
        /// Tree size (default: every complete line).
        #[arg(long)]
        size: Option<u64>,
        /// Accepted for uniformity: the proof is always JSON.
        #[arg(long)]
        json: bool,
    },
    /// Append one event (committed and synced before this returns).
    Append {
        /// The log; created if missing.
        log: PathBuf,
        /// Who acted.
        #[arg(long)]
        who: String,
        /// What they did.
        #[arg(long)]
        action: String,
        /// Which data.
        #[arg(long)]
        data: String,
        /// Why.
        #[arg(long)]
        purpose: Option<String>,
        /// The access decision, if this records one.
        #[arg(long, value_parser = ["allow", "deny"])]
        decision: Option<String>,
        /// The reason.
        #[arg(long, default_value = "")]
        reason: String,
        /// Print the new tree head as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn parse_head(s: &str) -> Result<TreeHead> {
    let (size, root) = s
        .split_once(':')
        .with_context(|| format!("--head {s}: expected SIZE:ROOT"))?;
    let size: u64 = size
        .parse()
        .with_context(|| format!("--head {s}: SIZE is not a number"))?;
    let mut r = [0u8; 32];
    hex::decode_to_slice(root, &mut r)
        .with_context(|| format!("--head {s}: ROOT is not 64 hex digits"))?;
    Ok(TreeHead {
        size,
        root: r,
        time: String::new(),
    })
}

pub(crate) fn run(cmd: AuditCommand) -> Result<ExitCode> {
    match cmd {
        AuditCommand::Verify { log, heads, json } => {
            let pinned = heads
                .iter()
                .map(|h| parse_head(h))
                .collect::<Result<Vec<_>>>()?;
            match audit::verify(&log, &pinned) {
                Ok(v) => {
                    if json {
                        print_json(&serde_json::json!({
                            "ok": true, "events": v.events, "root": hex::encode(v.head.root),
                            "heads_checked": v.heads_checked, "torn_tail_bytes": v.torn_tail_bytes,
                        }))?;
                    } else {
                        println!(
                            "ok: {} events, root {}, {} recorded heads match{}",
                            v.events,
                            hex::encode(v.head.root),
                            v.heads_checked,
                            if v.torn_tail_bytes > 0 {
                                format!(
                                    "; an incomplete last line of {} bytes (a torn write) is not part of the log",
                                    v.torn_tail_bytes
                                )
                            } else {
                                String::new()
                            }
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(Error::AuditTampered {
                    path,
                    line,
                    byte_offset,
                    reason,
                }) => {
                    if json {
                        print_json(&serde_json::json!({
                            "ok": false, "file": path, "line": line, "byte_offset": byte_offset, "reason": reason,
                        }))?;
                    } else {
                        println!(
                            "TAMPERED: {} line {line} (byte {byte_offset}): {reason}",
                            path.display()
                        );
                    }
                    Ok(ExitCode::from(1))
                }
                Err(e) => Err(e.into()),
            }
        }
        AuditCommand::Root { log, size, json } => {
            let tree = tree_of_lines(&log)?;
            let size = size.unwrap_or(tree.size());
            let root = tree
                .root_at(size)
                .map_err(|e| anyhow::anyhow!("{}: {e}", log.display()))?;
            if json {
                print_json(&serde_json::json!({ "size": size, "root": hex::encode(root) }))?;
            } else {
                println!("{}", hex::encode(root));
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Prove {
            log,
            index,
            from,
            size,
            json: _,
        } => {
            if let Some(index) = index {
                let p = audit::prove(&log, index, size)?;
                print_json(&p)?;
            } else if let Some(old) = from {
                let tree = tree_of_lines(&log)?;
                let new = size.unwrap_or(tree.size());
                let err = |e: audit::merkle::ProofError| anyhow::anyhow!("{}: {e}", log.display());
                let proof = tree.consistency_proof(old, new).map_err(err)?;
                print_json(&serde_json::json!({
                    "old_size": old, "new_size": new,
                    "old_root": hex::encode(tree.root_at(old).map_err(err)?),
                    "new_root": hex::encode(tree.root_at(new).map_err(err)?),
                    "proof": proof.iter().map(hex::encode).collect::<Vec<_>>(),
                }))?;
            } else {
                bail!("give --index or --from");
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Append {
            log,
            who,
            action,
            data,
            purpose,
            decision,
            reason,
            json,
        } => {
            let mut l = AuditLog::open(&log, AuditOptions::default())?;
            let mut ev = AuditEvent::new(who, action, data).reason(reason.clone());
            if let Some(p) = purpose {
                ev = ev.purpose(p);
            }
            if let Some(d) = decision {
                let d = if d == "allow" {
                    Decision::Allow
                } else {
                    Decision::Deny
                };
                ev = ev.decision(d, reason);
            }
            let seq = l.append(&ev)?;
            let head = l.commit()?;
            if json {
                print_json(
                    &serde_json::json!({ "seq": seq, "size": head.size, "root": hex::encode(head.root) }),
                )?;
            } else {
                println!("{seq} {}", hex::encode(head.root));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
