//! The exported libc symbols. Each hook is a fast check (is this fd tracked? one atomic
//! load) and either libc's own function or one call into `conn` (writes and reads ask
//! `tls` first whether they belong to a TLS handshake). No HTTP, no policy here.

mod bypass;
mod connect;
mod dns;
mod fds;
mod gnutls;
mod openssl;
mod read;
mod splice;
mod wait;
mod write;

// The TLS layer moves a virtual session's plaintext as the program would, through the
// program's own entry points (`gnutls` hands them down).
use read::recv as program_recv;
use write::send as program_send;

use crate::conn::Conn;
use crate::guard::{shielded, Reentry};
use crate::sys;
use libc::c_int;

/// Runs `work` for a tracked fd: outside our own re-entry, with panics caught and the
/// program's errno kept on success. `real` is the program's call, unchanged, taken when we
/// are re-entered or when our code fails.
fn on_tracked(work: impl FnOnce() -> isize, real: impl FnOnce() -> isize) -> isize {
    let Some(_inside) = Reentry::enter() else {
        std::hint::cold_path();
        return real();
    };
    let saved = sys::errno();
    let result = shielded(work, real);
    if result >= 0 {
        sys::set_errno(saved);
    }
    result
}

/// Runs `work`, the answer of a virtual TLS session (or a handshake we may have made
/// virtual): the program's errno is kept unless `failed(result)` says the call failed, as
/// the library's convention tells (the program may then read errno). Out of line: the TLS
/// hooks' entries are laid out with every hook, which every process using the library
/// runs; this part runs in processes with virtual sessions only (build.rs's layout).
#[inline(never)]
fn answer_keeping_errno<R>(work: impl FnOnce() -> R, failed: impl FnOnce(&R) -> bool) -> R {
    let saved = sys::errno();
    let result = work();
    if !failed(&result) {
        sys::set_errno(saved);
    }
    result
}

/// The bytes of an iovec array, or `None` when the array is not one we should touch (the
/// real call then reports EINVAL/EFAULT as it would).
///
/// # Safety
/// `iov` must point to `count` iovecs describing readable memory, as for writev(2).
unsafe fn gather(iov: *const libc::iovec, count: c_int) -> Option<Vec<u8>> {
    if iov.is_null() || !(0..=libc::UIO_MAXIOV).contains(&count) {
        return None;
    }
    // SAFETY: the caller's writev contract.
    let parts = unsafe { std::slice::from_raw_parts(iov, count as usize) };
    let mut bytes = Vec::with_capacity(parts.iter().map(|p| p.iov_len).sum());
    for part in parts.iter().filter(|p| p.iov_len > 0) {
        if part.iov_base.is_null() {
            return None;
        }
        // SAFETY: as above.
        bytes.extend_from_slice(unsafe {
            std::slice::from_raw_parts(part.iov_base as *const u8, part.iov_len)
        });
    }
    Some(bytes)
}

fn tracked(fd: c_int) -> Option<std::sync::Arc<Conn>> {
    crate::conn::fdtable::get(fd)
}
