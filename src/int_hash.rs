//! A hasher for the small integer keys of our maps (fd numbers, IP addresses): a
//! multiplication per integer written, where the standard map's default (SipHash, seeded
//! per thread) spends a couple of hundred instructions, on every connect and `epoll_ctl`.
//! The maps keyed by it are bounded (fds by the process's limit, names by a capacity), so
//! a key set built to collide costs a bounded probe, not an unbounded one.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

pub type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;

/// An empty `IntMap`, usable in a `static`.
pub const fn int_map<K, V>() -> IntMap<K, V> {
    HashMap::with_hasher(BuildHasherDefault::new())
}

#[derive(Default)]
pub struct IntHasher(u64);

/// 2^64 / the golden ratio: an odd constant whose products spread every input bit over
/// the high half.
const FIBONACCI: u64 = 0x9E37_79B9_7F4A_7C15;

impl IntHasher {
    fn mix(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(FIBONACCI);
    }
}

impl Hasher for IntHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.mix(n.into());
    }

    fn write_u16(&mut self, n: u16) {
        self.mix(n.into());
    }

    fn write_u32(&mut self, n: u32) {
        self.mix(n.into());
    }

    fn write_i32(&mut self, n: i32) {
        self.mix(u64::from(n as u32));
    }

    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }

    fn write_u128(&mut self, n: u128) {
        self.mix(n as u64);
        self.mix((n >> 64) as u64);
    }

    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }

    fn write_isize(&mut self, n: isize) {
        self.mix(n as u64);
    }

    /// The map picks buckets by the low bits: folded down from the high half, where the
    /// multiplication put every input bit (an IPv4 address's first octet included).
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;
    use std::net::{IpAddr, Ipv4Addr};

    fn bucket_of<T: std::hash::Hash>(key: T, buckets: u64) -> u64 {
        BuildHasherDefault::<IntHasher>::default().hash_one(key) & (buckets - 1)
    }

    #[test]
    fn addresses_differing_in_their_first_octet_only_spread_over_buckets() {
        let buckets = 64;
        let mut used = std::collections::HashSet::new();
        for first in 0..=255u8 {
            used.insert(bucket_of(
                IpAddr::V4(Ipv4Addr::new(first, 0, 0, 1)),
                buckets,
            ));
        }
        assert!(used.len() > 48, "{} of {buckets} buckets", used.len());
    }

    #[test]
    fn consecutive_fds_spread_over_buckets() {
        let buckets = 64;
        let used: std::collections::HashSet<u64> =
            (0..64i32).map(|fd| bucket_of(fd, buckets)).collect();
        assert!(used.len() > 36, "{} of {buckets} buckets", used.len());
    }

    #[test]
    fn a_map_keeps_what_it_was_given() {
        let mut map: IntMap<IpAddr, u32> = int_map();
        for n in 0..5000u32 {
            map.insert(IpAddr::V4(Ipv4Addr::from(n.wrapping_mul(2_654_435_761))), n);
        }
        for n in 0..5000u32 {
            let ip = IpAddr::V4(Ipv4Addr::from(n.wrapping_mul(2_654_435_761)));
            assert_eq!(map.get(&ip), Some(&n));
        }
    }
}
