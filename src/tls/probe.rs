//! Whether a TLS library's own socket I/O reaches our hooks. A library loaded with
//! `RTLD_DEEPBIND` binds `write`/`send` to libc past any preload: a handshake we leave real
//! would then send its ClientHello to the proxy unseen, and a virtual session's plaintext
//! would skip the HTTP engine. In such a process https through that library is not
//! diverted. Asked once per library: it writes to a socketpair whose fd is marked (OpenSSL:
//! one byte through a socket BIO; GnuTLS: a ClientHello through its default transport),
//! and our write hooks see it or not.

use super::{gnutls, openssl};
use crate::conn::{fdtable, Conn};
use crate::sync::ThreadsInside;
use crate::sys;
use libc::c_int;
use std::cell::Cell;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

const UNKNOWN: u8 = 0;
const REACHES_US: u8 = 1;
const BYPASSES_US: u8 = 2;

static OPENSSL: AtomicU8 = AtomicU8::new(UNKNOWN);
/// Threads whose probe is writing: the write hooks look for their probe's fd only then.
static PROBING: ThreadsInside = ThreadsInside::new();
static GNUTLS: AtomicU8 = AtomicU8::new(UNKNOWN);

thread_local! {
    /// The fd being probed on this thread (-1: none), and whether a write to it was seen.
    static PROBE_FD: Cell<c_int> = const { Cell::new(-1) };
    static SEEN: Cell<bool> = const { Cell::new(false) };
}

/// Called by the write hooks on every tracked fd: notes the probe's bytes.
#[inline]
pub fn saw_write(fd: c_int) {
    if PROBING.any() {
        note_probe_write(fd);
    }
}

/// Out of line: the writes of a process not probing fall through.
#[cold]
#[inline(never)]
fn note_probe_write(fd: c_int) {
    if PROBE_FD.try_with(Cell::get).unwrap_or(-1) == fd {
        let _ = SEEN.try_with(|seen| seen.set(true));
    }
}

/// Whether libcrypto's socket writes reach our hooks.
pub fn openssl_io_reaches_us() -> bool {
    verdict(&OPENSSL, "OpenSSL", write_through_openssl)
}

/// Whether libgnutls's default transport reaches our hooks.
pub fn gnutls_io_reaches_us() -> bool {
    verdict(&GNUTLS, "GnuTLS", write_through_gnutls)
}

fn verdict(slot: &AtomicU8, library: &str, write_to: fn(c_int)) -> bool {
    match slot.load(Ordering::Acquire) {
        UNKNOWN => {
            let reaches = probe(write_to);
            if !reaches {
                log::debug!(
                    "{library}'s socket I/O bypasses this library (loaded with RTLD_DEEPBIND?): https through {library} passes through"
                );
            }
            slot.store(
                if reaches { REACHES_US } else { BYPASSES_US },
                Ordering::Release,
            );
            reaches
        }
        known => known == REACHES_US,
    }
}

/// Marks one end of a fresh socketpair, lets `write_to` write to it, and tells whether our
/// hooks saw that.
fn probe(write_to: fn(c_int)) -> bool {
    let mut pair = [-1; 2];
    let kind = libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
    // SAFETY: socketpair writes two fds into `pair`.
    if unsafe { sys::socketpair(libc::AF_UNIX, kind, 0, pair.as_mut_ptr()) } != 0 {
        return false;
    }
    let seen = fdtable::insert(pair[0], Arc::new(Conn::for_probe())) && {
        PROBE_FD.with(|p| p.set(pair[0]));
        SEEN.with(|s| s.set(false));
        let writing = PROBING.enter();
        write_to(pair[0]);
        drop(writing);
        PROBE_FD.with(|p| p.set(-1));
        SEEN.with(Cell::get)
    };
    fdtable::remove(pair[0]);
    // SAFETY: our own fds.
    unsafe {
        sys::close(pair[0]);
        sys::close(pair[1]);
    }
    seen
}

fn write_through_openssl(fd: c_int) {
    use openssl::real;
    // The byte is with the hot data (`crate::hot_data`): the kernel reads it after the set-up
    // has let the cold data go.
    // SAFETY: a socket BIO on our own fd (not closed by the BIO), one byte from a static
    // buffer, then freed.
    unsafe {
        let bio = real::BIO_new_socket(fd, 0);
        if !bio.is_null() {
            real::BIO_write(bio, crate::hot_data::hot_bytes!(b"?").as_ptr().cast(), 1);
            real::BIO_free(bio);
        }
    }
}

fn write_through_gnutls(fd: c_int) {
    use gnutls::real;
    const GNUTLS_CLIENT: libc::c_uint = 1 << 1;
    const GNUTLS_NONBLOCK: libc::c_uint = 1 << 3;
    const GNUTLS_CRD_CERTIFICATE: c_int = 1;
    // SAFETY: a client session and credentials of our own, on our own fd; the handshake
    // writes its ClientHello, finds nothing to read (non-blocking) and returns; both freed.
    // Called through the library's own functions, not our hooks.
    unsafe {
        let mut session: gnutls::GnutlsSession = std::ptr::null_mut();
        if real::gnutls_init(&mut session, GNUTLS_CLIENT | GNUTLS_NONBLOCK) != 0 {
            return;
        }
        let mut credentials: *mut libc::c_void = std::ptr::null_mut();
        if real::gnutls_certificate_allocate_credentials(&mut credentials) == 0 {
            if real::gnutls_set_default_priority(session) == 0
                && real::gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE, credentials) == 0
            {
                real::gnutls_transport_set_int2(session, fd, fd);
                real::gnutls_handshake(session);
            }
            real::gnutls_deinit(session);
            real::gnutls_certificate_free_credentials(credentials);
        } else {
            real::gnutls_deinit(session);
        }
    }
}
