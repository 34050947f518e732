//! `aistd registry`: publish bundles, list versions, promote and roll back aliases, fetch.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use aistd::glue::AuditRegistrySink;
use aistd_deploy::registry::{AuditSink, LocalStore, MemoryAudit, Registry};
use aistd_deploy::{Bundle, Verify};
use aistd_governance::audit::{AuditLog, AuditOptions};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use super::bundle::TrustArgs;
use crate::print_json;

#[derive(Debug, Subcommand)]
pub(crate) enum RegistryCommand {
    /// Publish a bundle (directory or archive) as its manifest's name and version. Versions are
    /// immutable: the same content again is a no-op, other content is refused.
    Publish {
        /// A bundle directory or a `.tar` archive of one.
        bundle: PathBuf,
        #[command(flatten)]
        reg: RegistryArgs,
    },
    /// Every model, with its versions and aliases.
    List {
        #[command(flatten)]
        reg: RegistryArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A model's versions (oldest first, numeric parts compared as numbers) and aliases.
    Versions {
        /// The model.
        model: String,
        #[command(flatten)]
        reg: RegistryArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Point an alias (e.g. `production`) at a published version, after verifying it.
    Promote {
        /// The model.
        model: String,
        /// The version.
        version: String,
        /// The alias.
        #[arg(long)]
        alias: String,
        #[command(flatten)]
        reg: RegistryArgs,
    },
    /// Point an alias back at the version it pointed to before its last promotion.
    Rollback {
        /// The model.
        model: String,
        /// The alias.
        #[arg(long)]
        alias: String,
        #[command(flatten)]
        reg: RegistryArgs,
    },
    /// Unpack a version or alias of a model, verified, into a new directory.
    Fetch {
        /// The model.
        model: String,
        /// A version or an alias.
        reference: String,
        /// The directory to create.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        reg: RegistryArgs,
    },
    /// Set the trust policy stored with the registry (--require-signature, --trusted-key …):
    /// every later publish, fetch, promotion, rollback and `aistd serve` of the registry
    /// demands it, whoever runs them. Recorded in the audit log. Without flags, prints it.
    Trust {
        #[command(flatten)]
        reg: RegistryArgs,
        /// Remove the policy (back to intact files only).
        #[arg(long, conflicts_with_all = ["require_signature", "trusted_keys"])]
        clear: bool,
    },
}

/// Where the registry is and what it demands.
#[derive(Debug, Args)]
pub(crate) struct RegistryArgs {
    /// The registry's directory (created if missing).
    #[arg(long)]
    root: PathBuf,
    /// The audit log that records every change (default: ROOT/audit.jsonl).
    #[arg(long)]
    audit: Option<PathBuf>,
    /// Who makes the change, for the audit log (default: $USER).
    #[arg(long)]
    actor: Option<String>,
    #[command(flatten)]
    trust: TrustArgs,
}

impl RegistryArgs {
    fn actor(&self) -> String {
        self.actor
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "unknown".into())
    }

    /// The registry; changes go to the audit log when `audited`.
    fn open(&self, audited: bool) -> Result<Registry> {
        let store = Arc::new(LocalStore::new(&self.root)?);
        let audit: Arc<dyn AuditSink> = if audited {
            let path = self
                .audit
                .clone()
                .unwrap_or_else(|| self.root.join("audit.jsonl"));
            let log = AuditLog::open(&path, AuditOptions::default())
                .with_context(|| format!("audit log {}", path.display()))?;
            Arc::new(AuditRegistrySink::new(Arc::new(Mutex::new(log))))
        } else {
            Arc::new(MemoryAudit::default())
        };
        Ok(Registry::new(store, audit, self.trust.verify()))
    }
}

pub(crate) fn run(cmd: RegistryCommand) -> Result<ExitCode> {
    match cmd {
        RegistryCommand::Publish { bundle, reg } => {
            let registry = reg.open(true)?;
            let (b, tmp) = open_bundle(&bundle, &reg.trust.verify())?;
            let result = registry.publish(&b, &reg.actor());
            if let Some(tmp) = tmp {
                let _ = std::fs::remove_dir_all(tmp);
            }
            result?;
            println!(
                "published {}:{} (manifest SHA-256 {}, {})",
                b.manifest().name,
                b.manifest().version,
                b.manifest_sha256(),
                match b.signer() {
                    Some(k) => format!("signed by {k}"),
                    None => "unsigned".into(),
                }
            );
        }
        RegistryCommand::List { reg, json } => {
            let registry = reg.open(false)?;
            let mut all = serde_json::Map::new();
            for model in registry.models()? {
                all.insert(model.clone(), model_json(&registry, &model)?);
            }
            if json {
                print_json(&all)?;
            } else if all.is_empty() {
                println!("no models in {}", reg.root.display());
            } else {
                for (model, v) in &all {
                    print_model(model, v);
                }
            }
        }
        RegistryCommand::Versions { model, reg, json } => {
            let registry = reg.open(false)?;
            let v = model_json(&registry, &model)?;
            if json {
                print_json(&v)?;
            } else {
                print_model(&model, &v);
            }
        }
        RegistryCommand::Promote {
            model,
            version,
            alias,
            reg,
        } => {
            let previous = reg
                .open(true)?
                .promote(&model, &alias, &version, &reg.actor())?;
            match previous {
                Some(p) if p == version => println!("{model} {alias} already at {version}"),
                Some(p) => println!("{model} {alias}: {p} -> {version}"),
                None => println!("{model} {alias}: -> {version}"),
            }
        }
        RegistryCommand::Rollback { model, alias, reg } => {
            let back = reg.open(true)?.rollback(&model, &alias, &reg.actor())?;
            println!("{model} {alias}: rolled back to {back}");
        }
        RegistryCommand::Trust { reg, clear } => {
            let policy = reg.trust.verify();
            if clear || policy != Verify::intact() {
                reg.open(true)?.set_trust(&policy, &reg.actor())?;
            }
            let stored = Registry::new(
                Arc::new(LocalStore::new(&reg.root)?),
                Arc::new(MemoryAudit::default()),
                Verify::intact(),
            )
            .trust()?;
            print_json(&serde_json::to_value(&stored)?)?;
        }
        RegistryCommand::Fetch {
            model,
            reference,
            out,
            reg,
        } => {
            let b = reg.open(false)?.fetch(&model, &reference, &out)?;
            println!(
                "fetched {}:{} into {} (manifest SHA-256 {})",
                b.manifest().name,
                b.manifest().version,
                out.display(),
                b.manifest_sha256()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A bundle directory, or an archive unpacked into a temporary directory (returned for removal).
fn open_bundle(path: &Path, verify: &Verify) -> Result<(Bundle, Option<PathBuf>)> {
    if path.is_dir() {
        return Ok((Bundle::open(path, verify)?, None));
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let tmp = std::env::temp_dir().join(format!("aistd-publish-{}-{nanos}", std::process::id()));
    Ok((Bundle::unpack(path, &tmp, verify)?, Some(tmp)))
}

fn model_json(registry: &Registry, model: &str) -> Result<serde_json::Value> {
    let versions = registry.versions(model)?;
    if versions.is_empty() {
        anyhow::bail!("model {model}: no published versions");
    }
    Ok(serde_json::json!({
        "versions": versions,
        "aliases": registry.aliases(model)?,
    }))
}

fn print_model(model: &str, v: &serde_json::Value) {
    let versions: Vec<&str> = v["versions"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
        .unwrap_or_default();
    println!("{model}: versions {}", versions.join(", "));
    if let Some(aliases) = v["aliases"].as_object() {
        for (alias, a) in aliases {
            println!(
                "  {alias} -> {}{}",
                a["version"].as_str().unwrap_or_default(),
                match a["history"].as_array() {
                    Some(h) if !h.is_empty() => format!(
                        " (before: {})",
                        h.iter()
                            .filter_map(|x| x.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    _ => String::new(),
                }
            );
        }
    }
}
