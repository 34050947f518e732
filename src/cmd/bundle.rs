//! `aistd bundle`: model bundles (aistd-deploy).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aistd_deploy::{Bundle, Manifest, SigningKey, TensorSpec, Verify};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

use crate::print_json;

#[derive(Debug, Subcommand)]
pub(crate) enum BundleCommand {
    /// Create an Ed25519 signing key file (readable by its owner only); prints the public key.
    Keygen {
        /// The key file to create.
        #[arg(long)]
        out: PathBuf,
    },
    /// Bundle every file under a directory with a manifest of their SHA-256 digests.
    Create(Box<CreateArgs>),
    /// Sign a bundle's manifest digest with an Ed25519 key (replaces an earlier signature).
    Sign {
        /// The bundle directory.
        bundle: PathBuf,
        /// The signing key file (from `aistd bundle keygen`).
        #[arg(long)]
        key: PathBuf,
    },
    /// Verify a bundle directory or archive: every file against the manifest, and the
    /// signature. Exits 1, naming the file, when something does not match.
    Verify {
        /// A bundle directory or a `.tar` archive of one.
        path: PathBuf,
        #[command(flatten)]
        trust: TrustArgs,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a bundle's manifest (after verifying it).
    Inspect {
        /// A bundle directory or a `.tar` archive of one.
        path: PathBuf,
        #[command(flatten)]
        trust: TrustArgs,
        /// Print the manifest as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Pack a bundle directory into one tar archive.
    Pack {
        /// The bundle directory.
        bundle: PathBuf,
        /// The archive to create.
        #[arg(long)]
        out: PathBuf,
    },
    /// Unpack and verify an archive into a new bundle directory.
    Unpack {
        /// The archive.
        archive: PathBuf,
        /// The directory to create.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        trust: TrustArgs,
    },
}

/// `aistd bundle create`.
#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// The directory whose files are bundled (recursively).
    #[arg(long)]
    from: PathBuf,
    /// The bundle directory to create.
    #[arg(long)]
    out: PathBuf,
    /// The model's name.
    #[arg(long)]
    name: String,
    /// Its version.
    #[arg(long)]
    version: String,
    /// The runtime that loads it (`onnx`, `aistd-mlp`, …).
    #[arg(long)]
    platform: String,
    /// An input, as NAME:DATATYPE:DIMS (e.g. `x:FP32:-1,64`; -1 for any size). For platform
    /// `onnx` without inputs and outputs, they are read from the model file.
    #[arg(long = "input", value_name = "SPEC")]
    inputs: Vec<String>,
    /// An output, as NAME:DATATYPE:DIMS.
    #[arg(long = "output", value_name = "SPEC")]
    outputs: Vec<String>,
    /// Metadata as KEY=VALUE.
    #[arg(long = "metadata", value_name = "KEY=VALUE")]
    metadata: Vec<String>,
    /// Where the model card is (URL or a file of the bundle).
    #[arg(long)]
    model_card: Option<String>,
    /// A JSON file describing preprocessing, stored in the manifest.
    #[arg(long)]
    preprocessing: Option<PathBuf>,
    /// Sign the new bundle with this key file.
    #[arg(long)]
    sign: Option<PathBuf>,
    /// Print the manifest as JSON.
    #[arg(long)]
    json: bool,
}

/// What verification demands.
#[derive(Debug, Clone, Args)]
pub(crate) struct TrustArgs {
    /// Refuse a bundle without a valid signature.
    #[arg(long)]
    require_signature: bool,
    /// A public key (hex) whose signature is accepted; repeatable. Implies --require-signature.
    #[arg(long = "trusted-key", value_name = "HEX")]
    trusted_keys: Vec<String>,
}

impl TrustArgs {
    pub(crate) fn verify(&self) -> Verify {
        if self.trusted_keys.is_empty() {
            let mut v = Verify::intact();
            v.require_signature = self.require_signature;
            v
        } else {
            Verify::signed_by(self.trusted_keys.iter().cloned())
        }
    }
}

pub(crate) fn run(cmd: BundleCommand) -> Result<ExitCode> {
    match cmd {
        BundleCommand::Keygen { out } => {
            let key = SigningKey::generate()?;
            key.save(&out)?;
            println!("{}", key.public_hex());
            eprintln!("signing key written to {} (keep it secret)", out.display());
        }
        BundleCommand::Create(a) => create(&a)?,
        BundleCommand::Sign { bundle, key } => {
            let mut b = Bundle::open(&bundle, &Verify::intact())?;
            b.sign(&SigningKey::load(&key)?)?;
            println!(
                "signed {} (manifest SHA-256 {}) with key {}",
                bundle.display(),
                b.manifest_sha256(),
                b.signer().unwrap_or_default()
            );
        }
        BundleCommand::Verify { path, trust, json } => {
            return with_bundle(&path, &trust.verify(), |b| {
                if json {
                    print_json(&summary(b, true))?;
                } else {
                    println!(
                        "OK {} {}:{} ({} files, manifest SHA-256 {}, {})",
                        path.display(),
                        b.manifest().name,
                        b.manifest().version,
                        b.manifest().files.len(),
                        b.manifest_sha256(),
                        match b.signer() {
                            Some(k) => format!("signed by {k}"),
                            None => "unsigned".into(),
                        }
                    );
                }
                Ok(())
            });
        }
        BundleCommand::Inspect { path, trust, json } => {
            return with_bundle(&path, &trust.verify(), |b| {
                if json {
                    print_json(&summary(b, false))?;
                } else {
                    describe(b);
                }
                Ok(())
            });
        }
        BundleCommand::Pack { bundle, out } => {
            let b = Bundle::open(&bundle, &Verify::intact())?;
            b.pack(&out)?;
            println!("packed {} into {}", bundle.display(), out.display());
        }
        BundleCommand::Unpack {
            archive,
            out,
            trust,
        } => match Bundle::unpack(&archive, &out, &trust.verify()) {
            Ok(b) => println!(
                "unpacked {}:{} into {}",
                b.manifest().name,
                b.manifest().version,
                out.display()
            ),
            Err(e) => {
                eprintln!("FAILED {}: {e}", archive.display());
                return Ok(ExitCode::from(1));
            }
        },
    }
    Ok(ExitCode::SUCCESS)
}

fn create(a: &CreateArgs) -> Result<()> {
    let mut m = Manifest::new(&a.name, &a.version, &a.platform)?;
    for s in &a.inputs {
        m = m.with_input(s.parse::<TensorSpec>()?);
    }
    for s in &a.outputs {
        m = m.with_output(s.parse::<TensorSpec>()?);
    }
    for kv in &a.metadata {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("--metadata `{kv}`: expected KEY=VALUE");
        };
        m = m.with_metadata(k, v);
    }
    if let Some(card) = &a.model_card {
        m = m.with_model_card(card);
    }
    if a.platform == aistd_deploy::onnx::ONNX && a.inputs.is_empty() && a.outputs.is_empty() {
        let file = onnx_file(&a.from, &m)?;
        let (inputs, outputs) = aistd_deploy::onnx::signature(&file)?;
        m.inputs = inputs;
        m.outputs = outputs;
    }
    if let Some(p) = &a.preprocessing {
        let text = std::fs::read_to_string(p).with_context(|| format!("{}", p.display()))?;
        let v =
            serde_json::from_str(&text).with_context(|| format!("{}: not JSON", p.display()))?;
        m = m.with_preprocessing(v);
    }
    // Load the key first: a bad key file should not leave an unsigned bundle behind.
    let key = a.sign.as_deref().map(SigningKey::load).transpose()?;
    let mut b = Bundle::create(&a.out, m, &a.from)?;
    if let Some(key) = &key {
        b.sign(key)?;
    }
    if a.json {
        print_json(&summary(&b, false))?;
    } else {
        describe(&b);
    }
    Ok(())
}

/// The ONNX model among the files to bundle: the one named in the metadata, or the only `.onnx`
/// file at the top of `from`.
fn onnx_file(from: &Path, m: &Manifest) -> Result<PathBuf> {
    if let Some(f) = m.metadata.get(aistd_deploy::onnx::MODEL_FILE_KEY) {
        return Ok(from.join(f));
    }
    let mut found = Vec::new();
    for entry in std::fs::read_dir(from).with_context(|| format!("{}", from.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "onnx") {
            found.push(path);
        }
    }
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!(
            "{}: no .onnx file to read the signature from (or give --input and --output)",
            from.display()
        ),
        _ => bail!(
            "{}: {} .onnx files; name the model with --metadata {}=FILE",
            from.display(),
            found.len(),
            aistd_deploy::onnx::MODEL_FILE_KEY
        ),
    }
}

/// Opens a bundle directory, or unpacks an archive to a temporary directory, verifies it and
/// runs `f`; a verification failure prints `FAILED …` and exits 1.
fn with_bundle(
    path: &Path,
    verify: &Verify,
    f: impl FnOnce(&Bundle) -> Result<()>,
) -> Result<ExitCode> {
    let opened = if path.is_dir() {
        Bundle::open(path, verify).map(|b| (b, None))
    } else {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let tmp = std::env::temp_dir().join(format!("aistd-bundle-{}-{nanos}", std::process::id()));
        Bundle::unpack(path, &tmp, verify).map(|b| (b, Some(tmp)))
    };
    match opened {
        Ok((b, tmp)) => {
            let result = f(&b);
            if let Some(tmp) = tmp {
                let _ = std::fs::remove_dir_all(tmp);
            }
            result.map(|()| ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("FAILED {}: {e}", path.display());
            Ok(ExitCode::from(1))
        }
    }
}

fn summary(b: &Bundle, verified: bool) -> serde_json::Value {
    let mut v = serde_json::json!({
        "manifest": b.manifest(),
        "manifest_sha256": b.manifest_sha256(),
        "signer": b.signer(),
    });
    if verified {
        v["verified"] = serde_json::Value::Bool(true);
    }
    v
}

fn describe(b: &Bundle) {
    let m = b.manifest();
    println!(
        "{}:{} ({}) in {}",
        m.name,
        m.version,
        m.platform,
        b.dir().display()
    );
    for (kind, specs) in [("input", &m.inputs), ("output", &m.outputs)] {
        for s in specs {
            println!("  {kind:<6} {} {} {:?}", s.name, s.datatype, s.shape);
        }
    }
    for (k, v) in &m.metadata {
        println!("  {k} = {v}");
    }
    for (f, e) in &m.files {
        println!("  {}  {:>10}  {f}", e.sha256, e.size);
    }
    println!("  manifest SHA-256 {}", b.manifest_sha256());
    match b.signer() {
        Some(k) => println!("  signed by {k}"),
        None => println!("  unsigned"),
    }
}
