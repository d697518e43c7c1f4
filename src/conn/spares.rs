//! The buffers of closed connections, kept for the next ones: a program that opens a
//! connection per request (`Connection: close`) then makes no allocation for its request
//! heads, their copies and the proxy's answers (wrk: 11 allocations per connection
//! before, measured by `make bench`'s instructions per request on a new connection).

use super::responses::ResponsesBuffers;
use crate::sync::SpinLock;
use std::mem::MaybeUninit;

/// One connection's buffers (emptied when taken).
#[derive(Debug, Default)]
pub(super) struct Spares {
    pub request: Vec<u8>,
    pub head_out: Vec<u8>,
    pub lunar_out: Vec<u8>,
    pub responses: ResponsesBuffers,
}

impl Spares {
    fn capacity(&self) -> usize {
        self.request.capacity()
            + self.head_out.capacity()
            + self.lunar_out.capacity()
            + self.responses.capacity()
    }
}

/// Connections' buffers kept at most: enough for a program that closes one connection as
/// it opens the next, on a few threads at once.
const KEPT: usize = 4;
/// A connection's buffers that grew past this (a large head, a large copy for a replay)
/// are freed, not kept: at most KEPT × MAX_BYTES stay allocated for later connections.
const MAX_BYTES: usize = 16 * 1024;

/// The kept buffers in place, the first `count` of `kept` written. The empty pool is all
/// zeros, so it lives in .bss (the relocated writable data the dynamic linker touches at
/// every process start stays one page); and keeping or taking allocates nothing (a box per
/// kept set was a `malloc` and a `free` per connection).
struct Pool {
    count: usize,
    kept: [MaybeUninit<Spares>; KEPT],
}

impl Pool {
    const fn new() -> Self {
        Pool {
            count: 0,
            kept: [const { MaybeUninit::uninit() }; KEPT],
        }
    }

    fn take(&mut self) -> Option<Spares> {
        self.count = self.count.checked_sub(1)?;
        // SAFETY: the first `count + 1` were written; the last is read once, and no
        // longer counted.
        Some(unsafe { self.kept[self.count].assume_init_read() })
    }

    /// Keeps `spares` if there is room; otherwise gives them back.
    fn keep(&mut self, spares: Spares) -> Option<Spares> {
        if spares.capacity() > MAX_BYTES || self.count == KEPT {
            return Some(spares);
        }
        self.kept[self.count].write(spares);
        self.count += 1;
        None
    }
}

/// Frees what a pool kept (the process's pool is never dropped; a test's is).
impl Drop for Pool {
    fn drop(&mut self) {
        while self.take().is_some() {}
    }
}

static POOL: SpinLock<Pool> = SpinLock::new(Pool::new());

/// A closed connection's buffers, or empty ones. Never waits: with the pool busy (another
/// thread in it, or a fork that caught one there), a connection allocates as without it.
pub(super) fn take() -> Spares {
    let kept = POOL.try_lock().and_then(|mut pool| pool.take());
    kept.unwrap_or_default()
}

/// Keeps a closed connection's buffers for a later one, when there is room. Whatever is
/// not kept is freed after the pool is released: `free` may take malloc's lock, or give
/// memory back to the kernel.
pub(super) fn give(spares: Spares) {
    if spares.capacity() == 0 {
        return;
    }
    let unkept = match POOL.try_lock() {
        Some(mut pool) => pool.keep(spares),
        None => Some(spares),
    };
    drop(unkept);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_request_capacity(bytes: usize) -> Spares {
        Spares {
            request: Vec::with_capacity(bytes),
            ..Spares::default()
        }
    }

    #[test]
    fn keeps_up_to_its_room_and_gives_each_back_once() {
        let mut pool = Pool::new();
        for _ in 0..KEPT {
            assert!(pool.keep(with_request_capacity(100)).is_none());
        }
        assert!(
            pool.keep(with_request_capacity(100)).is_some(),
            "no room left"
        );
        for _ in 0..KEPT {
            assert!(pool.take().is_some_and(|s| s.request.capacity() >= 100));
        }
        assert!(pool.take().is_none());
    }

    #[test]
    fn large_buffers_are_not_kept() {
        let mut pool = Pool::new();
        assert!(pool.keep(with_request_capacity(MAX_BYTES + 1)).is_some());
        assert!(pool.take().is_none());
    }
}
