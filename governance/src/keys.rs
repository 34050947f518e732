//! An exact multiset of byte strings: keys are stored once in an arena, the table holds each
//! key's 64-bit xxh3 hash, position and count, and a hash match is confirmed by comparing bytes.
//! One hash per lookup, none on growth, no allocation per key. Used for exact dedup and for
//! exact distinct counts and top values.

/// xxh3, 64-bit: the hash of every key (and of every value fed to the HyperLogLog sketch).
pub(crate) fn hash(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key)
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    hash: u64,
    at: usize,
    len: usize,
    count: u64,
}

/// What [`KeyCounter::add`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Added {
    /// First occurrence, now stored.
    New,
    /// Seen before; its count went up.
    Seen,
    /// First occurrence, but the counter is at its capacity: not stored.
    Full,
}

#[derive(Default)]
pub(crate) struct KeyCounter {
    arena: Vec<u8>,
    table: hashbrown::HashTable<Entry>,
}

impl std::fmt::Debug for KeyCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCounter")
            .field("keys", &self.table.len())
            .field("bytes", &self.arena.len())
            .finish()
    }
}

impl KeyCounter {
    /// Count `key` (whose [`hash`] is `h`), storing it if new and fewer than `cap` keys are stored.
    pub(crate) fn add(&mut self, key: &[u8], h: u64, cap: usize) -> Added {
        let Self { arena, table } = self;
        if let Some(e) = table.find_mut(h, |e| e.hash == h && &arena[e.at..e.at + e.len] == key) {
            e.count += 1;
            return Added::Seen;
        }
        if table.len() >= cap {
            return Added::Full;
        }
        table.insert_unique(
            h,
            Entry {
                hash: h,
                at: arena.len(),
                len: key.len(),
                count: 1,
            },
            |e| e.hash,
        );
        arena.extend_from_slice(key);
        Added::New
    }

    /// Insert `key`; `false` if it was already there.
    pub(crate) fn insert(&mut self, key: &[u8]) -> bool {
        self.add(key, hash(key), usize::MAX) == Added::New
    }

    /// Number of distinct keys stored.
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    /// Occurrences of keys that occur more than once (every occurrence counted).
    pub(crate) fn repeated(&self) -> u64 {
        self.table
            .iter()
            .filter(|e| e.count > 1)
            .map(|e| e.count)
            .sum()
    }

    /// The `k` most frequent keys, most frequent first, ties broken by key bytes.
    pub(crate) fn top(&self, k: usize) -> Vec<(&[u8], u64)> {
        let mut v: Vec<(&[u8], u64)> = self
            .table
            .iter()
            .map(|e| (&self.arena[e.at..e.at + e.len], e.count))
            .collect();
        let order = |a: &(&[u8], u64), b: &(&[u8], u64)| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0));
        if v.len() > k && k > 0 {
            v.select_nth_unstable_by(k - 1, order);
            v.truncate(k);
        }
        v.sort_unstable_by(order);
        v.truncate(k);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_top_are_exact() {
        let mut c = KeyCounter::default();
        for (i, w) in ["b", "a", "b", "c", "b", "a", "d"].iter().enumerate() {
            let want = if i < 2 || *w == "c" || *w == "d" {
                Added::New
            } else {
                Added::Seen
            };
            assert_eq!(c.add(w.as_bytes(), hash(w.as_bytes()), 10), want, "{w}");
        }
        assert_eq!(c.len(), 4);
        let top: Vec<(&[u8], u64)> = c.top(3);
        assert_eq!(top, vec![(&b"b"[..], 3), (&b"a"[..], 2), (&b"c"[..], 1)]);
        assert_eq!(c.add(b"e", hash(b"e"), 4), Added::Full);
        assert!(!c.insert(b"a"));
        assert_eq!(c.repeated(), 3 + 3);
    }
}
