//! Whether OpenSSL's own socket I/O reaches our hooks. A libcrypto loaded with
//! `RTLD_DEEPBIND` binds `write` to libc past any preload: a handshake we leave real would
//! then send its ClientHello to the proxy unseen, and a virtual session's plaintext would
//! skip the HTTP engine. In such a process https is not diverted. Asked once: a socket BIO
//! writes one byte to a socketpair whose fd is marked; our write hook sees it or not.

use super::openssl::real;
use crate::conn::Conn;
use crate::{fdtable, sys};
use libc::c_int;
use std::cell::Cell;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

const UNKNOWN: u8 = 0;
const REACHES_US: u8 = 1;
const BYPASSES_US: u8 = 2;

static VERDICT: AtomicU8 = AtomicU8::new(UNKNOWN);

thread_local! {
    /// The fd being probed on this thread (-1: none), and whether a write to it was seen.
    static PROBE_FD: Cell<c_int> = const { Cell::new(-1) };
    static SEEN: Cell<bool> = const { Cell::new(false) };
}

/// Called by the write hook on every tracked fd: notes the probe's byte.
#[inline]
pub fn saw_write(fd: c_int) {
    if PROBE_FD.try_with(Cell::get).unwrap_or(-1) == fd {
        let _ = SEEN.try_with(|seen| seen.set(true));
    }
}

/// Whether libcrypto's socket writes reach our hooks (asked once per process).
pub fn openssl_io_reaches_us() -> bool {
    match VERDICT.load(Ordering::Acquire) {
        UNKNOWN => {
            let reaches = probe();
            if !reaches {
                log::debug!(
                    "OpenSSL's socket I/O bypasses this library (loaded with RTLD_DEEPBIND?): https through OpenSSL passes through"
                );
            }
            let verdict = if reaches { REACHES_US } else { BYPASSES_US };
            VERDICT.store(verdict, Ordering::Release);
            reaches
        }
        verdict => verdict == REACHES_US,
    }
}

fn probe() -> bool {
    let mut pair = [-1; 2];
    // SAFETY: socketpair writes two fds into `pair`.
    if unsafe {
        sys::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            pair.as_mut_ptr(),
        )
    } != 0
    {
        return false;
    }
    let marked = Arc::new(Conn::for_probe());
    let reaches = fdtable::insert(pair[0], marked) && {
        PROBE_FD.with(|p| p.set(pair[0]));
        SEEN.with(|s| s.set(false));
        // SAFETY: a socket BIO on our own fd (not closed by the BIO), one byte from a
        // static buffer, then freed.
        unsafe {
            let bio = real::BIO_new_socket(pair[0], 0);
            if !bio.is_null() {
                real::BIO_write(bio, b"?".as_ptr().cast(), 1);
                real::BIO_free(bio);
            }
        }
        PROBE_FD.with(|p| p.set(-1));
        SEEN.with(Cell::get)
    };
    fdtable::remove(pair[0]);
    // SAFETY: our own fds.
    unsafe {
        sys::close(pair[0]);
        sys::close(pair[1]);
    }
    reaches
}
