//! A hash map for integer keys the proxy assigns or derives itself
//! (statement ids, digests): one multiply per key instead of SipHash,
//! which showed as the largest user-space cost per statement. Not for
//! keys a client chooses freely (no protection against crafted
//! collisions); the tables using it are small or bounded.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Multiplicative hashing with a 64-bit odd constant (from the golden ratio).
#[derive(Debug, Default, Clone, Copy)]
pub struct IntHasher(u64);

const K: u64 = 0x9E37_79B9_7F4A_7C15;

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(K);
    }
}

/// A `HashMap` keyed by integers, hashed with [`IntHasher`].
pub type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_ids_spread_over_the_high_bits() {
        // hashbrown picks buckets from the low bits and tags from the top 7.
        let tags: std::collections::HashSet<u64> = (1u32..=128)
            .map(|id| {
                let mut h = IntHasher::default();
                h.write_u32(id);
                h.finish() >> 57
            })
            .collect();
        assert!(tags.len() > 64, "{} distinct tags", tags.len());
        let mut map: IntMap<u32, u32> = IntMap::default();
        for id in 0..10_000 {
            map.insert(id, id * 2);
        }
        assert!((0..10_000).all(|id| map[&id] == id * 2));
    }
}
