//! UUID version 4 for `x-lunar-req-id`.
//!
//! A request id must be unique, not secret: a per-process random key from the kernel
//! (drawn once, and again in a forked child) mixed with a request number (each thread
//! takes them from a shared counter in blocks) through a bijective mixer gives distinct
//! ids without a system call, or a shared write, per request.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

static KEY: AtomicU64 = AtomicU64::new(0);
static COUNTER: AtomicU64 = AtomicU64::new(0);

fn key() -> u64 {
    let key = KEY.load(Ordering::Acquire);
    if key == 0 {
        return new_key();
    }
    key
}

/// Out of line: drawn once per process (and per forked child); every request falls
/// through `key`.
#[cold]
#[inline(never)]
fn new_key() -> u64 {
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

/// Request numbers a thread takes from `COUNTER` at a time.
const BLOCK: u64 = 1 << 16;

thread_local! {
    /// This thread's next request number and the end of its block.
    static NEXT: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// Appends a new id's 36 characters to `out`.
pub fn push_v4(out: &mut Vec<u8>) {
    push_id(key(), next_count(), out);
}

/// A request number no other id of this process (under this key) has. Taken from a block of
/// this thread's: a `fetch_add` on `COUNTER` for every request made the threads of a
/// program take its cache line from each other at every request.
fn next_count() -> u64 {
    NEXT.try_with(|next| {
        let (mut count, mut end) = next.get();
        if count == end {
            std::hint::cold_path();
            count = COUNTER.fetch_add(BLOCK, Ordering::Relaxed);
            end = count + BLOCK;
        }
        next.set((count + 1, end));
        count
    })
    // The thread is exiting: its thread-locals are gone.
    .unwrap_or_else(|_| COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// The id of request number `count` under `key`.
fn push_id(key: u64, count: u64, out: &mut Vec<u8>) {
    let high = mix(key ^ count);
    let low = mix(high ^ key.rotate_left(29));
    // The version (4) in the high nibble of byte 6, the variant (10) in the top bits of
    // byte 8: the bytes are `high` then `low`, most significant first.
    let high = (high & !0xf000) | 0x4000;
    let low = (low & !(0xc0 << 56)) | (0x80 << 56);
    let mut text = [b'-'; 36];
    text[..8].copy_from_slice(&hex_digits((high >> 32) as u32));
    let digits = hex_digits(high as u32);
    text[9..13].copy_from_slice(&digits[..4]);
    text[14..18].copy_from_slice(&digits[4..]);
    let digits = hex_digits((low >> 32) as u32);
    text[19..23].copy_from_slice(&digits[..4]);
    text[24..28].copy_from_slice(&digits[4..]);
    text[28..].copy_from_slice(&hex_digits(low as u32));
    out.extend_from_slice(&text);
}

/// `value`'s eight lowercase hex digits, all at once in one u64 (no loop, no table): this
/// runs for every diverted request, where a digit at a time was 16 unrolled rounds of
/// table loads.
fn hex_digits(value: u32) -> [u8; 8] {
    let mut x = u64::from(value);
    // Spread the nibbles one per byte, the least significant in the lowest byte.
    x = ((x << 16) | x) & 0x0000_ffff_0000_ffff;
    x = ((x << 8) | x) & 0x00ff_00ff_00ff_00ff;
    x = ((x << 4) | x) & 0x0f0f_0f0f_0f0f_0f0f;
    // 1 in each byte whose nibble is 10 or more (nibble + 6 carries into bit 4).
    let letters = ((x + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    // '0' + nibble, and 'a' - '0' - 10 = 39 more for a letter; no byte overflows.
    x += 0x3030_3030_3030_3030 + letters * 39;
    x.to_be_bytes()
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
    fn threads_never_share_a_request_number() {
        // Past a block's end in each thread, all threads drawing at once.
        let per_thread = super::BLOCK as usize + 1000;
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(move || {
                    (0..per_thread)
                        .map(|_| super::next_count())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all = HashSet::new();
        for thread in threads {
            let counts = thread.join().unwrap();
            // In order within a thread: a block is used up before the next is taken.
            assert!(counts.windows(2).all(|pair| pair[0] < pair[1]));
            all.extend(counts);
        }
        assert_eq!(all.len(), 4 * per_thread);
    }

    #[test]
    fn hex_digits_are_the_formatters() {
        for value in [
            0,
            1,
            9,
            10,
            15,
            16,
            0x0123_4567,
            0x89ab_cdef,
            0xa5a5_5a5a,
            u32::MAX,
        ] {
            let digits = super::hex_digits(value);
            assert_eq!(
                std::str::from_utf8(&digits).unwrap(),
                format!("{value:08x}")
            );
        }
        let mut value = 0x9e37_79b9u32;
        for _ in 0..100_000 {
            value = value.wrapping_mul(0x0101_0101).wrapping_add(0x3c6e_f372);
            let digits = super::hex_digits(value);
            assert_eq!(
                std::str::from_utf8(&digits).unwrap(),
                format!("{value:08x}")
            );
        }
    }

    #[test]
    fn the_id_is_the_mixed_bits_in_order() {
        for (key, count) in [(1, 0), (0x1234_5678_9abc_def1, 7), (u64::MAX, u64::MAX)] {
            let mut id = Vec::new();
            super::push_id(key, count, &mut id);
            let high = super::mix(key ^ count);
            let low = super::mix(high ^ key.rotate_left(29));
            let hex = format!("{high:016x}{low:016x}");
            let variant = (u8::from_str_radix(&hex[16..17], 16).unwrap() & 0x3) | 0x8;
            let expected = format!(
                "{}-{}-4{}-{variant:x}{}-{}",
                &hex[..8],
                &hex[8..12],
                &hex[13..16],
                &hex[17..20],
                &hex[20..]
            );
            assert_eq!(String::from_utf8(id).unwrap(), expected);
        }
    }

    #[test]
    fn a_new_key_gives_other_ids() {
        let before = super::new_v4();
        super::after_fork_in_child();
        assert_ne!(super::new_v4(), before);
    }
}
