//! Read-only data the diverting path reads, kept with the hot code's data.
//!
//! rustc puts each literal in a section it shares with others of its kind, among panic
//! messages and source file names, under names that change with every build, so
//! build.rs's layout cannot sort them. A literal the diverting path reads after the
//! set-up (per request, at the handshake, naming a libc function at its first call) goes
//! through `hot_bytes!`: a static in `.rodata.lunar_hot`, which build.rs lays out with the
//! hot code's tables. The other literals lie in the cold data, which a diverting process
//! does not keep mapped (`sys::residency`). A literal left out costs memory (a 64 KiB
//! window of cold data), never correctness; tests/e2e/test_residency.py finds it.

/// `$value`, a constant of type `$ty`, as a `&'static $ty` in the hot read-only data.
macro_rules! hot {
    ($ty:ty = $value:expr) => {{
        #[link_section = ".rodata.lunar_hot"]
        static HOT: $ty = $value;
        &HOT
    }};
}
pub(crate) use hot;

/// `$bytes` (a constant `&[u8]`) as a `&'static [u8]` in the hot read-only data.
macro_rules! hot_bytes {
    ($bytes:expr) => {{
        const BYTES: &[u8] = $bytes;
        $crate::hot_data::hot!([u8; BYTES.len()] = $crate::hot_data::array(BYTES))
            as &'static [u8]
    }};
}
pub(crate) use hot_bytes;

/// `bytes` as an array of its length (`hot_bytes!`'s static).
pub const fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    match bytes.first_chunk() {
        Some(array) => *array,
        None => panic!("shorter than the array"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keeps_the_bytes() {
        const PREFIX: &[u8] = hot_bytes!(b"HTTP/1.");
        assert_eq!(PREFIX, b"HTTP/1.");
        assert_eq!(hot_bytes!(concat!("recv", "\0").as_bytes()), b"recv\0");
        assert_eq!(hot_bytes!(b""), b"");
        assert_eq!(hot!([u64; 2] = [7, 9]), &[7, 9]);
    }
}
