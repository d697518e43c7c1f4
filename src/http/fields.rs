//! Byte ranges of the parts of a head that httparse hands back as slices,
//! so a head can be written back byte for byte with some field lines left out.

use std::ops::Range;

use memchr::memchr;

/// `bytes` as text when it is UTF-8. The parts of a head we read are nearly always ASCII,
/// checked first, a byte at a time (they are short: a method, a target, a host name):
/// core's validator is ~70 instructions even for "GET", and a diverted request and its
/// answer read several such parts. Out of line and small on purpose: inlined at each site,
/// core's wide checks were ~1.2 KB of code apiece, a page more of the library resident in
/// every process that diverts.
#[inline(never)]
pub(crate) fn text(bytes: &[u8]) -> Option<&str> {
    if bytes.iter().all(u8::is_ascii) {
        // SAFETY: ASCII bytes are UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        std::str::from_utf8(bytes).ok()
    }
}

/// Where `part`, a slice httparse took from `head`, lies in it. Empty parts
/// may point anywhere, so they get an empty range.
pub(crate) fn span(head: &[u8], part: &[u8]) -> Range<usize> {
    if part.is_empty() {
        return 0..0;
    }
    let start = part.as_ptr() as usize - head.as_ptr() as usize;
    start..start + part.len()
}

/// The whole field line whose name is `name`, line ending included. A field
/// line has no LF before its own line ending, so the first one after the
/// name ends it.
pub(crate) fn field_line(head: &[u8], name: &str) -> Option<Range<usize>> {
    let start = span(head, name.as_bytes()).start;
    let name_end = start + name.len();
    let end = name_end + memchr(b'\n', head.get(name_end..)?)? + 1;
    Some(start..end)
}

/// Appends `head[from..]` without the `removed` ranges (in order, past `from`).
pub(crate) fn copy_without(head: &[u8], from: usize, removed: &[Range<usize>], out: &mut Vec<u8>) {
    let mut pos = from;
    for line in removed {
        out.extend_from_slice(&head[pos..line.start]);
        pos = line.end;
    }
    out.extend_from_slice(&head[pos..]);
}

#[cfg(test)]
mod tests {
    use super::text;

    #[test]
    fn text_is_utf8_only() {
        assert_eq!(text(b"GET"), Some("GET"));
        assert_eq!(text(b""), Some(""));
        assert_eq!(text("/caf\u{e9}".as_bytes()), Some("/caf\u{e9}"));
        assert_eq!(text(b"/caf\xe9"), None);
        assert_eq!(text(b"\xff\xfe"), None);
        assert_eq!(
            text(b"GET /a/long/target?with=more"),
            Some("GET /a/long/target?with=more")
        );
        assert_eq!(
            text(b"GET /a/long/tar\xc3\xa9get"),
            Some("GET /a/long/tar\u{e9}get")
        );
        assert_eq!(text(b"GET /a/long/tar\xe9get"), None);
    }
}
