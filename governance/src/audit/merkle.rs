//! RFC 6962 Merkle tree hashing with SHA-256: tree heads, inclusion and consistency proofs.
//!
//! A leaf hash is `SHA-256(0x00 ‖ leaf)`, an interior node `SHA-256(0x01 ‖ left ‖ right)`, and the
//! head of the empty tree `SHA-256("")`. A tree of `n > 1` leaves splits at the largest power of
//! two `k < n` (RFC 6962 §2.1). Proof verification follows RFC 9162 §2.1.3.2 and §2.1.4.2.

use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// `SHA-256(0x00 ‖ data)`: the hash of one leaf.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 ‖ left ‖ right)`: the hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut buf = [0u8; 65];
    buf[0] = 1;
    buf[1..33].copy_from_slice(left);
    buf[33..].copy_from_slice(right);
    Sha256::digest(buf).into()
}

/// `SHA-256("")`: the head of the empty tree.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two strictly below `n` (`n >= 2`).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// The right edge of an append-only tree: `O(log n)` memory, amortised one node hash per leaf.
///
/// Enough to append and to compute the current tree head; proofs need a [`MerkleTree`].
#[derive(Debug, Clone, Default)]
pub struct CompactTree {
    size: u64,
    /// Roots of the perfect subtrees that make up the tree, largest first (one per set bit of
    /// `size`).
    peaks: Vec<Hash>,
}

impl CompactTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf by its leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut h = leaf;
        let mut s = self.size;
        while s & 1 == 1 {
            // Invariant: one peak per set bit of `size`, so a set bit always has a peak.
            let left = self.peaks.pop().unwrap_or_default();
            h = node_hash(&left, &h);
            s >>= 1;
        }
        self.peaks.push(h);
        self.size += 1;
    }

    /// The current tree head.
    pub fn root(&self) -> Hash {
        let mut it = self.peaks.iter().rev();
        match it.next() {
            None => empty_root(),
            Some(last) => it.fold(*last, |acc, left| node_hash(left, &acc)),
        }
    }
}

/// A whole tree kept level by level (every perfect subtree's hash, `2n` hashes for `n` leaves):
/// the head of any prefix and any proof in `O(log n)` hashes.
#[derive(Debug, Clone, Default)]
pub struct MerkleTree {
    /// `levels[k][i]` is the hash of leaves `[i·2^k, (i+1)·2^k)`.
    levels: Vec<Vec<Hash>>,
}

/// Why a proof cannot be produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The leaf index is not below the tree size.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange {
        /// The index asked for.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// The tree size asked for is larger than the tree.
    #[error("tree size {asked} is larger than the {have} leaves there are")]
    SizeOutOfRange {
        /// The size asked for.
        asked: u64,
        /// The leaves there are.
        have: u64,
    },
    /// A consistency proof needs `old <= new`.
    #[error("old tree size {old} is larger than new tree size {new}")]
    SizesReversed {
        /// The older size.
        old: u64,
        /// The newer size.
        new: u64,
    },
}

impl MerkleTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// A tree over these leaf hashes.
    pub fn from_leaf_hashes(leaves: Vec<Hash>) -> Self {
        let mut levels = vec![leaves];
        loop {
            let below = levels.last().map(Vec::as_slice).unwrap_or_default();
            if below.len() < 2 {
                break;
            }
            let up: Vec<Hash> = below
                .chunks_exact(2)
                .map(|p| node_hash(&p[0], &p[1]))
                .collect();
            levels.push(up);
        }
        Self { levels }
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// Appends a leaf by its leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        if self.levels.is_empty() {
            self.levels.push(Vec::new());
        }
        self.levels[0].push(leaf);
        let mut k = 0;
        while self.levels[k].len().is_multiple_of(2) {
            let n = self.levels[k].len();
            let h = node_hash(&self.levels[k][n - 2], &self.levels[k][n - 1]);
            if self.levels.len() == k + 1 {
                self.levels.push(Vec::new());
            }
            self.levels[k + 1].push(h);
            k += 1;
        }
    }

    /// The leaf hash at `index`.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        self.levels.first()?.get(index as usize).copied()
    }

    /// The hash of the `n > 0` leaves starting at `start` (RFC 6962 `MTH(D[start:start+n])`).
    fn subtree(&self, start: u64, n: u64) -> Hash {
        if n.is_power_of_two() && start.is_multiple_of(n) {
            let k = n.trailing_zeros() as usize;
            return self.levels[k][(start >> k) as usize];
        }
        let k = split(n);
        node_hash(&self.subtree(start, k), &self.subtree(start + k, n - k))
    }

    /// The tree head of the first `size` leaves.
    pub fn root_at(&self, size: u64) -> Result<Hash, ProofError> {
        if size > self.size() {
            return Err(ProofError::SizeOutOfRange {
                asked: size,
                have: self.size(),
            });
        }
        Ok(if size == 0 {
            empty_root()
        } else {
            self.subtree(0, size)
        })
    }

    /// The tree head of the whole tree.
    pub fn root(&self) -> Hash {
        self.root_at(self.size()).unwrap_or_else(|_| empty_root())
    }

    /// The audit path of leaf `index` in the tree of the first `size` leaves (RFC 6962 §2.1.1),
    /// bottom-up.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        if size > self.size() {
            return Err(ProofError::SizeOutOfRange {
                asked: size,
                have: self.size(),
            });
        }
        if index >= size {
            return Err(ProofError::IndexOutOfRange { index, size });
        }
        let mut out = Vec::new();
        self.path(index, 0, size, &mut out);
        Ok(out)
    }

    fn path(&self, m: u64, start: u64, n: u64, out: &mut Vec<Hash>) {
        if n <= 1 {
            return;
        }
        let k = split(n);
        if m < k {
            self.path(m, start, k, out);
            out.push(self.subtree(start + k, n - k));
        } else {
            self.path(m - k, start + k, n - k, out);
            out.push(self.subtree(start, k));
        }
    }

    /// The proof that the tree of the first `old` leaves is a prefix of the tree of the first
    /// `new` leaves (RFC 6962 §2.1.2). Empty when `old` is 0 or equals `new`.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, ProofError> {
        if new > self.size() {
            return Err(ProofError::SizeOutOfRange {
                asked: new,
                have: self.size(),
            });
        }
        if old > new {
            return Err(ProofError::SizesReversed { old, new });
        }
        let mut out = Vec::new();
        if old > 0 && old < new {
            self.subproof(old, 0, new, true, &mut out);
        }
        Ok(out)
    }

    fn subproof(&self, m: u64, start: u64, n: u64, whole: bool, out: &mut Vec<Hash>) {
        if m == n {
            if !whole {
                out.push(self.subtree(start, n));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            self.subproof(m, start, k, whole, out);
            out.push(self.subtree(start + k, n - k));
        } else {
            self.subproof(m - k, start + k, n - k, false, out);
            out.push(self.subtree(start, k));
        }
    }
}

/// Checks that `leaf` (a leaf hash) is leaf `index` of the tree of `size` leaves whose head is
/// `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fi, mut si) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if si == 0 {
            return false;
        }
        if fi & 1 == 1 || fi == si {
            r = node_hash(p, &r);
            if fi & 1 == 0 {
                while fi & 1 == 0 && fi != 0 {
                    fi >>= 1;
                    si >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fi >>= 1;
        si >>= 1;
    }
    si == 0 && r == *root
}

/// Checks that the tree of `old` leaves with head `old_root` is a prefix of the tree of `new`
/// leaves with head `new_root` (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old > new {
        return false;
    }
    if old == new {
        return proof.is_empty() && old_root == new_root;
    }
    if old == 0 {
        // The empty tree is a prefix of every tree.
        return proof.is_empty() && *old_root == empty_root();
    }
    if proof.is_empty() {
        return false;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let (mut fi, mut si) = (old - 1, new - 1);
    while fi & 1 == 1 {
        fi >>= 1;
        si >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if si == 0 {
            return false;
        }
        if fi & 1 == 1 || fi == si {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fi & 1 == 0 {
                while fi & 1 == 0 && fi != 0 {
                    fi >>= 1;
                    si >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fi >>= 1;
        si >>= 1;
    }
    fr == *old_root && sr == *new_root && si == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    // Test vectors from transparency-dev/merkle (testonly/constants.go, proof/verify_test.go),
    // leaf indices converted to 0-based.
    const LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    const ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];
    const INCLUSION: &[(u64, u64, &[&str])] = &[
        (0, 1, &[]),
        (
            0,
            2,
            &["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"],
        ),
        (
            1,
            2,
            &["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"],
        ),
        (
            2,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];
    const CONSISTENCY: &[(u64, u64, &[&str])] = &[
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
        (
            6,
            7,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];

    fn h(s: &str) -> Hash {
        let v = hex::decode(s).expect("hex");
        v.try_into().expect("32 bytes")
    }

    fn tree() -> MerkleTree {
        let leaves = LEAVES
            .iter()
            .map(|l| leaf_hash(&hex::decode(l).expect("hex")))
            .collect();
        MerkleTree::from_leaf_hashes(leaves)
    }

    #[test]
    fn tree_heads_match_rfc6962_vectors() {
        let full = tree();
        let mut compact = CompactTree::new();
        let mut incremental = MerkleTree::new();
        assert_eq!(compact.root(), h(ROOTS[0]));
        for (n, leaf) in LEAVES.iter().enumerate() {
            let lh = leaf_hash(&hex::decode(leaf).expect("hex"));
            compact.push(lh);
            incremental.push(lh);
            assert_eq!(compact.root(), h(ROOTS[n + 1]), "compact, n={}", n + 1);
            assert_eq!(incremental.root(), h(ROOTS[n + 1]), "push, n={}", n + 1);
        }
        for (n, root) in ROOTS.iter().enumerate() {
            assert_eq!(full.root_at(n as u64).expect("size"), h(root), "n={n}");
        }
    }

    #[test]
    fn inclusion_proofs_match_vectors_and_verify() {
        let t = tree();
        for (index, size, proof) in INCLUSION {
            let want: Vec<Hash> = proof.iter().map(|p| h(p)).collect();
            let got = t.inclusion_proof(*index, *size).expect("proof");
            assert_eq!(got, want, "index {index} size {size}");
            let leaf = t.leaf(*index).expect("leaf");
            let root = h(ROOTS[*size as usize]);
            assert!(verify_inclusion(&leaf, *index, *size, &got, &root));
            // A wrong index, leaf or proof hash fails.
            assert!(!verify_inclusion(&leaf, *index + 1, *size, &got, &root));
            let mut bad = leaf;
            bad[0] ^= 1;
            assert!(!verify_inclusion(&bad, *index, *size, &got, &root));
            for i in 0..got.len() {
                let mut tampered = got.clone();
                tampered[i][31] ^= 0x80;
                assert!(!verify_inclusion(&leaf, *index, *size, &tampered, &root));
            }
        }
    }

    #[test]
    fn consistency_proofs_match_vectors_and_verify() {
        let t = tree();
        for (old, new, proof) in CONSISTENCY {
            let want: Vec<Hash> = proof.iter().map(|p| h(p)).collect();
            let got = t.consistency_proof(*old, *new).expect("proof");
            assert_eq!(got, want, "{old} -> {new}");
            let (r1, r2) = (h(ROOTS[*old as usize]), h(ROOTS[*new as usize]));
            assert!(verify_consistency(*old, *new, &r1, &r2, &got));
            assert!(!verify_consistency(*old, *new, &r2, &r1, &got) || r1 == r2);
            for i in 0..got.len() {
                let mut tampered = got.clone();
                tampered[i][0] ^= 1;
                assert!(!verify_consistency(*old, *new, &r1, &r2, &tampered));
            }
        }
    }

    #[test]
    fn every_proof_of_every_size_up_to_70_verifies() {
        let leaves: Vec<Hash> = (0u32..70).map(|i| leaf_hash(&i.to_le_bytes())).collect();
        let t = MerkleTree::from_leaf_hashes(leaves.clone());
        for size in 1..=70u64 {
            let root = t.root_at(size).expect("size");
            for index in 0..size {
                let p = t.inclusion_proof(index, size).expect("proof");
                assert!(verify_inclusion(
                    &leaves[index as usize],
                    index,
                    size,
                    &p,
                    &root
                ));
            }
            for old in 0..=size {
                let p = t.consistency_proof(old, size).expect("proof");
                let r1 = t.root_at(old).expect("size");
                assert!(
                    verify_consistency(old, size, &r1, &root, &p),
                    "{old}->{size}"
                );
            }
        }
        assert_eq!(
            t.inclusion_proof(5, 71),
            Err(ProofError::SizeOutOfRange {
                asked: 71,
                have: 70
            })
        );
        assert_eq!(
            t.inclusion_proof(5, 5),
            Err(ProofError::IndexOutOfRange { index: 5, size: 5 })
        );
        assert_eq!(
            t.consistency_proof(6, 5),
            Err(ProofError::SizesReversed { old: 6, new: 5 })
        );
    }
}
