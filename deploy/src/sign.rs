//! Ed25519 keys for signing bundles (RFC 8032, through `ed25519-dalek`).

use std::fmt;
use std::path::Path;

use ed25519_dalek::Signer;
use zeroize::Zeroizing;

use crate::{Error, Result};

/// A private Ed25519 key. Its `Debug` shows the public key only; the secret is zeroed on drop.
pub struct SigningKey(ed25519_dalek::SigningKey);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("public", &self.public_hex())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A new key from the operating system's random generator.
    pub fn generate() -> Result<Self> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut_slice())
            .map_err(|e| Error::invalid("signing key", format!("no randomness: {e}")))?;
        Ok(Self::from_seed(&seed))
    }

    /// The key whose 32-byte secret seed is `seed` (RFC 8032's "private key").
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        SigningKey(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    /// The key from its seed in hex (64 digits, surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Self> {
        let mut seed = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), seed.as_mut_slice()).map_err(|_| {
            Error::invalid(
                "signing key",
                "is not 64 hexadecimal digits (a 32-byte Ed25519 seed)",
            )
        })?;
        Ok(Self::from_seed(&seed))
    }

    /// Reads a key file written by [`save`](Self::save).
    pub fn load(path: &Path) -> Result<Self> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?);
        Self::from_hex(&text).map_err(|e| match e {
            Error::InvalidInput { reason, .. } => {
                Error::invalid(path.display().to_string(), reason)
            }
            other => other,
        })
    }

    /// Writes the seed in hex to a new file readable by its owner only; refuses to overwrite.
    pub fn save(&self, path: &Path) -> Result<()> {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Error::AlreadyExists(path.display().to_string()),
            _ => Error::io(path, e),
        })?;
        let text = Zeroizing::new(format!("{}\n", hex::encode(self.0.to_bytes())));
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::io(path, e))
    }

    /// The public key in hex (64 digits).
    pub fn public_hex(&self) -> String {
        hex::encode(self.0.verifying_key().to_bytes())
    }

    /// The signature of `message` (64 bytes).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }
}

/// Checks `signature` of `message` under the public key `public_hex`; the error says why not.
pub fn verify(
    public_hex: &str,
    message: &[u8],
    signature: &[u8],
) -> std::result::Result<(), String> {
    let mut key = [0u8; 32];
    hex::decode_to_slice(public_hex, &mut key)
        .map_err(|_| "the public key is not 64 hexadecimal digits".to_string())?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&key)
        .map_err(|_| "the public key is not a point of Ed25519".to_string())?;
    let signature = ed25519_dalek::Signature::from_slice(signature)
        .map_err(|_| "the signature is not 64 bytes".to_string())?;
    key.verify_strict(message, &signature)
        .map_err(|_| "the signature is not this key's for this manifest".to_string())
}
