//! Finding the end of a request head incrementally.
//!
//! A head ends at a line ending followed by an empty line, where a line ending
//! is CRLF or a bare LF (as httparse reads it): `\n\n` or `\n\r\n`. The scan
//! remembers how far it has looked, so bytes arriving one at a time are each
//! searched once; at most the last two bytes of what was already buffered are
//! looked at again, when an LF there still waits for what follows it.

#[derive(Debug, Clone, Default)]
pub(crate) struct EndScan {
    /// Every LF before this position is known not to end the head.
    from: usize,
}

impl EndScan {
    /// Starts looking at `pos`, the LF that ends the request line: a head
    /// without header fields ends right after it.
    pub(crate) fn starting_at(pos: usize) -> Self {
        Self { from: pos }
    }

    /// Looks for the end of the head in `head` (bytes already buffered)
    /// followed by `new` (bytes offered now), as if they were one slice.
    /// Returns the position just past the end of the head.
    pub(crate) fn find(&mut self, head: &[u8], new: &[u8]) -> Option<usize> {
        let at = |i: usize| -> Option<u8> {
            if i < head.len() {
                Some(head[i])
            } else {
                new.get(i - head.len()).copied()
            }
        };
        let mut pos = self.from;
        loop {
            let lf = if pos < head.len() {
                find_lf(&head[pos..])
                    .map(|k| pos + k)
                    .or_else(|| find_lf(new).map(|k| head.len() + k))
            } else {
                new.get(pos - head.len()..)
                    .and_then(find_lf)
                    .map(|k| pos + k)
            };
            let Some(lf) = lf else {
                self.from = self.from.max(head.len() + new.len());
                return None;
            };
            match (at(lf + 1), at(lf + 2)) {
                (Some(b'\n'), _) => return Some(lf + 2),
                (Some(b'\r'), Some(b'\n')) => return Some(lf + 3),
                (None, _) | (Some(b'\r'), None) => {
                    self.from = lf;
                    return None;
                }
                _ => pos = lf + 1,
            }
        }
    }
}

/// The first LF in `bytes`, eight bytes at a time, inline: a head's lines are short, and
/// a call to a vectorised search per line costs more in set-up than it saves.
#[inline]
fn find_lf(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    const LFS: u64 = u64::from_le_bytes([b'\n'; 8]);
    let mut chunks = bytes.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("chunks of 8")) ^ LFS;
        // A high bit for each zero byte (an LF), least significant first: none below the
        // first zero is set wrongly (a borrow only runs upwards from a zero), so the
        // lowest set bit marks the first LF.
        let zeros = word.wrapping_sub(ONES) & !word & HIGHS;
        if zeros != 0 {
            return Some(at + (zeros.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == b'\n')
        .map(|k| at + k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_split(data: &[u8], start: usize, split: usize) -> Option<usize> {
        let mut scan = EndScan::starting_at(start);
        if let Some(end) = scan.find(&[], &data[..split]) {
            return Some(end);
        }
        scan.find(&data[..split], &data[split..])
    }

    #[test]
    fn finds_every_kind_of_end_over_every_split() {
        for (data, start, end) in [
            (&b"GET / HTTP/1.1\r\n\r\nrest"[..], 15, Some(18)),
            (b"GET / HTTP/1.1\n\nrest", 14, Some(16)),
            (b"GET / HTTP/1.1\r\nA: b\r\n\r\n", 15, Some(24)),
            (b"GET / HTTP/1.1\nA: b\n\r\nX", 14, Some(22)),
            (b"GET / HTTP/1.1\r\nA: b\r\n\rX\r\n\r\n", 15, Some(28)),
            (b"GET / HTTP/1.1\r\nA: b\r\n", 15, None),
            (b"GET / HTTP/1.1\r\nA: b\r\n\r", 15, None),
        ] {
            for split in 0..=data.len() {
                assert_eq!(scan_split(data, start, split), end, "{data:?} at {split}");
            }
        }
    }

    #[test]
    fn finds_the_first_lf_at_every_place_among_any_bytes() {
        for len in 0..40 {
            for lf in 0..=len {
                // Every other byte value around it, the borrow-prone 0x00, 0x01, 0x0b and
                // 0x80.. among them.
                let mut bytes: Vec<u8> = (0..len).map(|i| ((i * 37 + 1) % 256) as u8).collect();
                bytes.iter_mut().for_each(|b| {
                    if *b == b'\n' {
                        *b = 0x0b;
                    }
                });
                let expected = (lf < len).then(|| {
                    bytes[lf] = b'\n';
                    lf
                });
                if lf + 1 < len {
                    bytes[lf + 1] = b'\n';
                }
                assert_eq!(find_lf(&bytes), expected, "{bytes:?}");
                assert_eq!(find_lf(&bytes), memchr::memchr(b'\n', &bytes));
            }
        }
        for b in 0..=255u8 {
            let bytes = [b, 0, 1, b'\n', 0x80, 0xff, b, 0x0a ^ 0x80, 1];
            assert_eq!(find_lf(&bytes), memchr::memchr(b'\n', &bytes), "{bytes:?}");
        }
    }

    #[test]
    fn one_byte_at_a_time_looks_back_at_most_two_bytes() {
        let data = b"GET / HTTP/1.1\r\nA: b\r\nC: d\r\n\r\n";
        let mut scan = EndScan::starting_at(15);
        for i in 16..data.len() {
            let found = scan.find(&data[..i], &data[i..=i]);
            assert!(found.is_some() || i + 1 - scan.from <= 2);
            if i + 1 == data.len() {
                assert_eq!(found, Some(data.len()));
            } else {
                assert_eq!(found, None);
            }
        }
    }
}
