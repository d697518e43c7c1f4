//! The memory a program handed to a read call, flat (read, recv) or scattered (readv,
//! recvmsg), so the library can see what the read delivered and, rarely, deliver bytes of
//! its own (a response head with a header removed).

use libc::iovec;

#[derive(Clone, Copy)]
pub enum AppBuffer {
    Flat { data: *mut u8, len: usize },
    Scattered { parts: *const iovec, count: usize },
}

impl AppBuffer {
    /// The buffer's parts, in order (no allocation: this runs for every read of a diverted
    /// connection).
    fn parts(&self) -> impl Iterator<Item = (*mut u8, usize)> + '_ {
        let (flat, scattered): (Option<(*mut u8, usize)>, &[iovec]) = match *self {
            AppBuffer::Flat { data, len } => (Some((data, len)), &[]),
            AppBuffer::Scattered { parts, count } if !parts.is_null() => {
                // SAFETY: the read call's contract: `parts` holds `count` iovecs.
                let parts = unsafe { std::slice::from_raw_parts(parts, count) };
                (None, parts)
            }
            AppBuffer::Scattered { .. } => (None, &[]),
        };
        flat.into_iter().chain(
            scattered
                .iter()
                .map(|part| (part.iov_base as *mut u8, part.iov_len)),
        )
    }

    /// Calls `sink` with the first `count` bytes a successful read put in the buffer.
    ///
    /// # Safety
    /// The buffer must be the one the read call was given, and `count` what it returned.
    pub unsafe fn delivered(&self, mut count: usize, mut sink: impl FnMut(&[u8])) {
        for (data, len) in self.parts() {
            if count == 0 {
                break;
            }
            let take = len.min(count);
            if take > 0 && !data.is_null() {
                // SAFETY: the kernel just wrote `take` bytes there.
                sink(unsafe { std::slice::from_raw_parts(data, take) });
            }
            count -= take;
        }
    }

    /// How many bytes the buffer holds, all parts together.
    pub fn capacity(&self) -> usize {
        self.parts()
            .filter(|(data, _)| !data.is_null())
            .map(|(_, len)| len)
            .sum()
    }

    /// Whether the program's buffer has no room at all (a read into it returns 0).
    pub fn is_empty(&self) -> bool {
        self.parts().all(|(data, len)| len == 0 || data.is_null())
    }

    /// Calls `sink` with the first `count` bytes a successful read put in the buffer, in
    /// one slice (copied only when the buffer is scattered over several parts).
    ///
    /// # Safety
    /// As `delivered`.
    pub unsafe fn with_delivered<R>(&self, count: usize, sink: impl FnOnce(&[u8]) -> R) -> R {
        if let AppBuffer::Flat { data, len } = *self {
            if data.is_null() {
                return sink(&[]);
            }
            // SAFETY: the kernel just wrote `count <= len` bytes there.
            return sink(unsafe { std::slice::from_raw_parts(data, count.min(len)) });
        }
        let mut bytes = Vec::with_capacity(count);
        // SAFETY: the caller's contract.
        unsafe { self.delivered(count, |part| bytes.extend_from_slice(part)) };
        sink(&bytes)
    }

    /// Copies as much of `bytes` as fits; returns how much did.
    ///
    /// # Safety
    /// The buffer must be writable memory of the sizes the program gave.
    pub unsafe fn fill(&self, bytes: &[u8]) -> usize {
        // SAFETY: the caller's contract.
        unsafe { self.fill_at(0, bytes) }
    }

    /// Copies as much of `bytes` as fits after the buffer's first `skip` bytes; returns how
    /// much did.
    ///
    /// # Safety
    /// As `fill`.
    pub unsafe fn fill_at(&self, mut skip: usize, mut bytes: &[u8]) -> usize {
        let mut copied = 0;
        for (data, len) in self.parts() {
            if bytes.is_empty() {
                break;
            }
            if data.is_null() {
                continue;
            }
            let passed = skip.min(len);
            skip -= passed;
            let take = (len - passed).min(bytes.len());
            if take > 0 {
                // SAFETY: the program's buffer has room for `len >= passed + take` bytes.
                unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), data.add(passed), take) };
                copied += take;
                bytes = &bytes[take..];
            }
        }
        copied
    }
}

#[cfg(test)]
mod tests {
    use super::AppBuffer;
    use libc::iovec;

    #[test]
    fn fill_at_continues_where_the_bytes_before_ended_across_parts() {
        let (mut a, mut b, mut c) = ([0u8; 3], [0u8; 0], [0u8; 5]);
        let parts = [
            iovec {
                iov_base: a.as_mut_ptr().cast(),
                iov_len: a.len(),
            },
            iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            },
            iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 7,
            },
            iovec {
                iov_base: c.as_mut_ptr().cast(),
                iov_len: c.len(),
            },
        ];
        let buffer = AppBuffer::Scattered {
            parts: parts.as_ptr(),
            count: parts.len(),
        };
        assert_eq!(buffer.capacity(), 8);
        // SAFETY: the parts above, alive and writable for their lengths.
        unsafe {
            assert_eq!(buffer.fill(b"ab"), 2);
            assert_eq!(buffer.fill_at(2, b"cdef"), 4);
            assert_eq!(buffer.fill_at(6, b"ghij"), 2);
        }
        assert_eq!((&a, &c), (b"abc", b"defgh"));
        let _ = &mut b;
    }
}
