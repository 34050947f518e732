//! Protection: envelope encryption with XChaCha20-Poly1305, keyrings with rotation, whole-file
//! streaming encryption, column encryption of Arrow data, and deterministic tokenization.
//!
//! Key hierarchy: a master key, held by a [`KeyProvider`] (a file, an environment variable, or a
//! KMS you plug in), wraps the data keys of a [`Keyring`]; data keys encrypt data. Every
//! ciphertext names the key id it was made with, so rotating the keyring's primary key leaves
//! old ciphertexts readable. The byte layouts are in `docs/formats.md`.
//!
//! ```
//! use aistd_governance::crypto::{Keyring, LocalKeyProvider, encrypt_stream, DecryptReader};
//! use std::io::Read;
//!
//! let provider = LocalKeyProvider::from_hex("demo", &"11".repeat(32))?;
//! let keyring = Keyring::generate(Box::new(provider))?;
//! let mut sealed = Vec::new();
//! encrypt_stream(&b"account 4111 1111 1111 1111"[..], &mut sealed, &keyring, 16 * 1024)?;
//! let mut plain = Vec::new();
//! DecryptReader::new(&sealed[..], &keyring, "memory")?.read_to_end(&mut plain)?;
//! assert_eq!(plain, b"account 4111 1111 1111 1111");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod column;
mod keyring;
mod stream;
mod token;

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{KeyInit, Tag, XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

pub use column::{
    ColumnEncryptor, ENCRYPTED_KEY_ID, ENCRYPTED_TYPE, ENCRYPTION_METADATA, decrypt_columns,
    encrypted_columns,
};
pub use keyring::{KeyInfo, KeyProvider, Keyring, LocalKeyProvider};
pub use stream::{
    DEFAULT_CHUNK_SIZE, DecryptReader, EncryptedSource, FILE_MAGIC, decrypt_file, encrypt_file,
    encrypt_stream, is_encrypted_file,
};
pub use token::{TOKEN_METADATA, Tokenizer};

use crate::error::{Error, Result};

/// A 256-bit secret key. Zeroed when dropped; never printed.
#[derive(Clone)]
pub struct SecretKey(Zeroizing<[u8; 32]>);

impl SecretKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// A fresh random key from the operating system's CSPRNG.
    pub fn generate() -> Result<Self> {
        let mut k = Zeroizing::new([0u8; 32]);
        fill_random(k.as_mut())?;
        Ok(Self(k))
    }

    /// The key bytes.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    pub(crate) fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&(*self.0).into())
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

pub(crate) fn fill_random(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|e| Error::crypto("random number generator", None, e.to_string()))
}

/// Encrypts `buf` in place and returns the 16-byte tag.
pub(crate) fn seal(
    cipher: &XChaCha20Poly1305,
    nonce: &[u8; 24],
    aad: &[u8],
    buf: &mut [u8],
) -> Result<[u8; 16]> {
    let tag = cipher
        .encrypt_inout_detached(&XNonce::from(*nonce), aad, buf.into())
        .map_err(|_| Error::crypto("encryption", None, "message too long"))?;
    Ok(tag.into())
}

/// Decrypts `buf` in place; `false` if the tag does not authenticate it.
pub(crate) fn open(
    cipher: &XChaCha20Poly1305,
    nonce: &[u8; 24],
    aad: &[u8],
    buf: &mut [u8],
    tag: &[u8; 16],
) -> bool {
    cipher
        .decrypt_inout_detached(&XNonce::from(*nonce), aad, buf.into(), &Tag::from(*tag))
        .is_ok()
}
