//! UUID version 4 for `x-lunar-req-id`.
//!
//! A request id must be unique, not secret: a per-process random key from the kernel
//! (drawn once, and again in a forked child) mixed with a counter through a bijective
//! mixer gives distinct ids without a system call per request.

use std::sync::atomic::{AtomicU64, Ordering};

static KEY: AtomicU64 = AtomicU64::new(0);
static COUNTER: AtomicU64 = AtomicU64::new(0);

fn key() -> u64 {
    let key = KEY.load(Ordering::Acquire);
    if key != 0 {
        return key;
    }
    let mut bytes = [0u8; 8];
    // SAFETY: getrandom writes at most `bytes.len()` bytes into our buffer.
    let got = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    let mut fresh = u64::from_le_bytes(bytes);
    if got != bytes.len() as isize {
        // The pool is always ready after early boot; still, a weaker key beats no request.
        fresh ^= crate::policy::failsafe::now_ms() ^ (u64::from(std::process::id()) << 32);
    }
    let fresh = fresh | 1;
    match KEY.compare_exchange(0, fresh, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => fresh,
        Err(winner) => winner,
    }
}

/// splitmix64's finaliser: a bijection on u64 that scatters nearby inputs.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Appends a new id's 36 characters to `out`.
pub fn push_v4(out: &mut Vec<u8>) {
    let key = key();
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let high = mix(key ^ count);
    let low = mix(high ^ key.rotate_left(29));
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&high.to_be_bytes());
    bytes[8..].copy_from_slice(&low.to_be_bytes());
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    /// Where each byte's two digits go among the 36 characters (8-4-4-4-12).
    const AT: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
    // Written into an array, appended once: a push per character checks the capacity
    // each time, on every diverted request.
    let mut text = [b'-'; 36];
    for (byte, at) in bytes.iter().zip(AT) {
        text[at] = HEX[usize::from(byte >> 4)];
        text[at + 1] = HEX[usize::from(byte & 0x0f)];
    }
    out.extend_from_slice(&text);
}

#[cfg(test)]
pub fn new_v4() -> String {
    let mut out = Vec::with_capacity(36);
    push_v4(&mut out);
    String::from_utf8(out).expect("hex digits and dashes")
}

/// A forked child draws its own key, so parent and child never share an id.
pub fn after_fork_in_child() {
    KEY.store(0, Ordering::Release);
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    #[test]
    fn is_version_4_and_unique() {
        let ids: HashSet<String> = (0..10_000).map(|_| super::new_v4()).collect();
        assert_eq!(ids.len(), 10_000);
        for id in ids.iter().take(100) {
            assert_eq!(id.len(), 36);
            let dashes: Vec<usize> = id.match_indices('-').map(|(at, _)| at).collect();
            assert_eq!(dashes, [8, 13, 18, 23], "{id}");
            assert_eq!(&id[14..15], "4");
            assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
            assert!(id.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
        }
    }

    #[test]
    fn a_new_key_gives_other_ids() {
        let before = super::new_v4();
        super::after_fork_in_child();
        assert_ne!(super::new_v4(), before);
    }
}
