//! Randomness for the mechanisms: a ChaCha20 keystream seeded from the operating system.

use chacha20::ChaCha20;
use chacha20::cipher::{KeyIvInit, StreamCipher};

use crate::error::{Error, Result};

/// A source of uniformly random bytes. Mechanisms take `&mut dyn RandomSource`, so a hardware
/// generator or a deterministic source for tests plugs in.
pub trait RandomSource: Send {
    /// Fills `buf` with random bytes.
    fn fill_bytes(&mut self, buf: &mut [u8]);
}

/// Bytes after which the generator replaces its key with fresh keystream (fast key erasure):
/// output already given out cannot be recomputed from a later state.
const REKEY_AFTER: usize = 1 << 20;

/// A cryptographically secure generator: the ChaCha20 keystream under a 256-bit key, re-keyed
/// from its own output every MiB. [`Csprng::from_os`] seeds it from the operating system (use
/// this for releases); [`Csprng::from_seed`] makes runs reproducible (tests, simulations — never
/// for real releases, whose noise must be unpredictable).
pub struct Csprng {
    cipher: ChaCha20,
    since_rekey: usize,
}

impl std::fmt::Debug for Csprng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Csprng { .. }")
    }
}

impl Csprng {
    /// Seeded from the operating system's generator.
    pub fn from_os() -> Result<Self> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| Error::InvalidInput {
            what: "operating system random number generator".into(),
            reason: e.to_string(),
        })?;
        Ok(Self::from_seed(seed))
    }

    /// Seeded with `seed`: the same seed gives the same stream.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            cipher: ChaCha20::new(&seed.into(), &[0u8; 12].into()),
            since_rekey: 0,
        }
    }

    fn rekey(&mut self) {
        let mut key = [0u8; 32];
        self.cipher.apply_keystream(&mut key);
        self.cipher = ChaCha20::new(&key.into(), &[0u8; 12].into());
        self.since_rekey = 0;
    }
}

impl RandomSource for Csprng {
    fn fill_bytes(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(REKEY_AFTER) {
            chunk.fill(0);
            self.cipher.apply_keystream(chunk);
            self.since_rekey += chunk.len();
            if self.since_rekey >= REKEY_AFTER {
                self.rekey();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_streams_repeat_and_differ_by_seed() {
        let (mut a, mut b, mut c) = (
            Csprng::from_seed([7; 32]),
            Csprng::from_seed([7; 32]),
            Csprng::from_seed([8; 32]),
        );
        let (mut x, mut y, mut z) = ([0u8; 64], [0u8; 64], [0u8; 64]);
        a.fill_bytes(&mut x);
        b.fill_bytes(&mut y);
        c.fill_bytes(&mut z);
        assert_eq!(x, y);
        assert_ne!(x, z);
        assert_eq!(format!("{a:?}"), "Csprng { .. }");
    }

    #[test]
    fn matches_the_chacha20_keystream_and_rekeys() {
        // RFC 8439 §2.4.2 is with a non-zero nonce; here: the all-zero key/nonce keystream
        // block 0 (RFC 8439 A.1 test vector #1).
        let mut r = Csprng::from_seed([0; 32]);
        let mut b = [0u8; 16];
        r.fill_bytes(&mut b);
        assert_eq!(
            b,
            [
                0x76, 0xb8, 0xe0, 0xad, 0xa0, 0xf1, 0x3d, 0x90, 0x40, 0x5d, 0x6a, 0xe5, 0x53, 0x86,
                0xbd, 0x28
            ]
        );
        let mut big = vec![0u8; REKEY_AFTER + 10];
        r.fill_bytes(&mut big);
        assert_eq!(r.since_rekey, 10);
        let mut os = Csprng::from_os().expect("os rng");
        os.fill_bytes(&mut b);
    }
}
