//! What a connection needs from the TLS layer above it, which it does not call directly
//! (layers call downward only): whether the virtual TLS session on a socket can be
//! replaced by a real one, and the replacing, for a move to the origin of an https
//! connection. `tls` hands both over with every connection it marks https
//! (`Conn::mark_https` registers them first); they are asked only of https connections,
//! so they are always there when asked. Until then the answers are those of a process
//! without virtual sessions: no, and ENOTSUP.

use libc::c_int;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicPtr, Ordering};

pub struct TlsHandoff {
    /// Whether the virtual session on `fd` can be replaced by a real one.
    pub can_take_over: fn(c_int) -> bool,
    /// Replaces the virtual session on `fd` by a real one and sends `replay` in it.
    pub take_over: fn(c_int, &[u8]) -> Result<(), c_int>,
}

static REGISTERED: AtomicPtr<TlsHandoff> = AtomicPtr::new(null_mut());

impl TlsHandoff {
    pub(super) fn register(&'static self) {
        REGISTERED.store(
            self as *const TlsHandoff as *mut TlsHandoff,
            Ordering::Release,
        );
    }
}

fn registered() -> Option<&'static TlsHandoff> {
    // SAFETY: null or the address of a `&'static TlsHandoff` (`register`).
    unsafe { REGISTERED.load(Ordering::Acquire).as_ref() }
}

pub(super) fn can_take_over(fd: c_int) -> bool {
    registered().is_some_and(|tls| (tls.can_take_over)(fd))
}

pub(super) fn take_over(fd: c_int, replay: &[u8]) -> Result<(), c_int> {
    match registered() {
        Some(tls) => (tls.take_over)(fd, replay),
        None => Err(libc::ENOTSUP),
    }
}
