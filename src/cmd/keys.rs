//! `aistd keys` and `aistd crypt`: keyrings and whole-file encryption.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aistd_governance::crypto::{
    DEFAULT_CHUNK_SIZE, KeyProvider, Keyring, LocalKeyProvider, decrypt_file, encrypt_file,
};
use anyhow::{Result, bail};
use clap::{Args, Subcommand};

use crate::print_json;

/// Where the master key comes from.
#[derive(Debug, Clone, Args)]
pub(crate) struct MasterKey {
    /// File holding the master key (64 hex digits or 32 raw bytes). Without it the master key is
    /// read from the environment variable AISTD_MASTER_KEY (64 hex digits).
    #[arg(long, value_name = "FILE", global = true)]
    pub(crate) master_key_file: Option<PathBuf>,
}

/// The environment variable holding the master key when no file is given.
pub(crate) const MASTER_ENV: &str = "AISTD_MASTER_KEY";

impl MasterKey {
    pub(crate) fn provider(&self, create: bool) -> Result<Box<dyn KeyProvider>> {
        if let Some(f) = &self.master_key_file {
            if create && !f.exists() {
                eprintln!("creating master key file {}", f.display());
                return Ok(Box::new(LocalKeyProvider::create_file(f)?));
            }
            return Ok(Box::new(LocalKeyProvider::from_file(f)?));
        }
        if std::env::var_os(MASTER_ENV).is_none() {
            bail!(
                "no master key: set {MASTER_ENV} to 64 hex digits, or pass --master-key-file FILE"
            );
        }
        Ok(Box::new(LocalKeyProvider::from_env(MASTER_ENV)?))
    }
}

pub(crate) fn open_keyring(path: &Path, master: &MasterKey) -> Result<Keyring> {
    Ok(Keyring::open(path, master.provider(false)?)?)
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Create a keyring with one fresh primary key (and the master key file, if it is named and
    /// missing).
    New {
        /// The keyring file to create.
        #[arg(long)]
        keyring: PathBuf,
        #[command(flatten)]
        master: MasterKey,
        /// Print the key list as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add a fresh primary key; older keys stay for decryption.
    Rotate {
        /// The keyring file.
        #[arg(long)]
        keyring: PathBuf,
        #[command(flatten)]
        master: MasterKey,
        /// Print the key list as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List key ids, creation times and which key is primary.
    List {
        /// The keyring file.
        #[arg(long)]
        keyring: PathBuf,
        #[command(flatten)]
        master: MasterKey,
        /// Print the key list as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum CryptCommand {
    /// Encrypt a file with the keyring's primary key (XChaCha20-Poly1305 in authenticated
    /// chunks; layout in docs/formats.md).
    Encrypt {
        /// The keyring file.
        #[arg(long)]
        keyring: PathBuf,
        #[command(flatten)]
        master: MasterKey,
        /// Plaintext bytes per chunk.
        #[arg(long, default_value_t = DEFAULT_CHUNK_SIZE)]
        chunk_size: u32,
        /// Input file.
        input: PathBuf,
        /// Output file (written atomically).
        output: PathBuf,
        /// Print a JSON summary.
        #[arg(long)]
        json: bool,
    },
    /// Decrypt a file; the output appears only if every chunk authenticates.
    Decrypt {
        /// The keyring file.
        #[arg(long)]
        keyring: PathBuf,
        #[command(flatten)]
        master: MasterKey,
        /// Input file.
        input: PathBuf,
        /// Output file (written atomically).
        output: PathBuf,
        /// Print a JSON summary.
        #[arg(long)]
        json: bool,
    },
}

fn show(k: &Keyring, json: bool) -> Result<()> {
    if json {
        print_json(&k.keys())?;
    } else {
        for key in k.keys() {
            println!(
                "{}  {}{}",
                key.id,
                key.created,
                if key.primary { "  primary" } else { "" }
            );
        }
    }
    Ok(())
}

pub(crate) fn run_keys(cmd: KeysCommand) -> Result<ExitCode> {
    match cmd {
        KeysCommand::New {
            keyring,
            master,
            json,
        } => show(&Keyring::create(&keyring, master.provider(true)?)?, json)?,
        KeysCommand::Rotate {
            keyring,
            master,
            json,
        } => {
            let mut k = open_keyring(&keyring, &master)?;
            k.rotate()?;
            show(&k, json)?
        }
        KeysCommand::List {
            keyring,
            master,
            json,
        } => show(&open_keyring(&keyring, &master)?, json)?,
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn run_crypt(cmd: CryptCommand) -> Result<ExitCode> {
    let (op, n, input, output, json) = match cmd {
        CryptCommand::Encrypt {
            keyring,
            master,
            chunk_size,
            input,
            output,
            json,
        } => {
            let k = open_keyring(&keyring, &master)?;
            let n = encrypt_file(&input, &output, &k, chunk_size)?;
            ("encrypted", n, input, output, json)
        }
        CryptCommand::Decrypt {
            keyring,
            master,
            input,
            output,
            json,
        } => {
            let k = open_keyring(&keyring, &master)?;
            let n = decrypt_file(&input, &output, &k)?;
            ("decrypted", n, input, output, json)
        }
    };
    if json {
        print_json(
            &serde_json::json!({ "op": op, "plaintext_bytes": n, "input": input, "output": output }),
        )?;
    } else {
        println!(
            "{op} {n} bytes: {} -> {}",
            input.display(),
            output.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
