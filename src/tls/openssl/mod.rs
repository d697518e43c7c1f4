//! OpenSSL (libssl 1.1 and 3): the session calls our hooks answer for a virtual session.
//! The plaintext moves through the session's own BIOs: a socket BIO writes to the fd with
//! `write`, curl's BIO with `send`, and either way our socket hooks and the HTTP engine
//! see it, exactly as for port 80. After a proxy failure, `fallback` replaces the session
//! by a real one.

mod certificates;
mod fallback;
mod follow;
pub mod real;

pub use fallback::{ex_data, fallback, take_over};

use super::library;
use super::sessions::{self, Owned, Session};
use super::{binding, certificate, now_unix};
use crate::conn::fdtable;
use libc::{c_int, c_long, c_void};
use std::sync::Arc;

pub type Ssl = *mut c_void;
type Bio = *mut c_void;
type X509 = *mut c_void;

const SSL_ERROR_NONE: c_int = 0;
const SSL_ERROR_SSL: c_int = 1;
const SSL_ERROR_WANT_READ: c_int = 2;
const SSL_ERROR_WANT_WRITE: c_int = 3;
const SSL_ERROR_SYSCALL: c_int = 5;
pub const SSL_ERROR_ZERO_RETURN: c_int = 6;
const SSL_SENT_SHUTDOWN: c_int = 1;
const SSL_RECEIVED_SHUTDOWN: c_int = 2;
const SSL_CTRL_MODE: c_int = 33;
const SSL_MODE_ENABLE_PARTIAL_WRITE: c_long = 1;
const TLSEXT_NAMETYPE_HOST_NAME: c_int = 0;
const BIO_FLAGS_READ: c_int = 1;
const BIO_FLAGS_WRITE: c_int = 2;
const BIO_FLAGS_SHOULD_RETRY: c_int = 8;
pub const X509_V_OK: c_long = 0;
/// `TLS_ST_OK`: what `SSL_get_state` says once a handshake is done.
pub const TLS_ST_OK: c_int = 1;

/// The virtual session behind `ssl`, if it is one.
#[inline]
pub fn virtual_session(ssl: Ssl) -> Option<Arc<Session>> {
    sessions::find(ssl as usize)
}

/// `SSL_connect` / `SSL_do_handshake`. A session on a diverted socket becomes virtual and
/// its handshake is done; any other runs `real`.
///
/// # Safety
/// `ssl` is the program's live SSL.
pub unsafe fn handshake(ssl: Ssl, real: impl FnOnce() -> c_int) -> c_int {
    if let Some(session) = virtual_session(ssl) {
        if fallback(&session) == Some(ssl) {
            // The program's own session, followed: its handshake is its own.
            let _inside = crate::guard::Reentry::enter();
            return real();
        }
        return 1;
    }
    if !fdtable::any_tracked() || !library::openssl_drivable() {
        return real();
    }
    // SAFETY: the program's live SSL.
    let fd = unsafe { real::SSL_get_fd(ssl) };
    if let Some(conn) = (fd >= 0).then(|| binding::followable(fd)).flatten() {
        // Direct at connect only because of the failsafe: real, and followed so that a
        // later request can bring it to the proxy.
        sessions::begin_followed(
            ssl as usize,
            sessions::Kind::OpenSsl,
            fd,
            conn,
            server_name(ssl),
        );
        let _inside = crate::guard::Reentry::enter();
        return real();
    }
    if fd >= 0 {
        // The filter judges the server name too: it may send the socket to the origin,
        // where the program's own handshake then runs.
        let stays = binding::bindable(fd).is_some_and(|conn| match server_name(ssl) {
            Some(name) => crate::conn::settle_for_server_name(&conn, fd, &name),
            None => true,
        });
        return if stays { make_virtual(ssl, fd) } else { real() };
    }
    // A BIO of the program's own: find the fd by its ClientHello.
    // SAFETY: plain calls on the thread's error queue.
    unsafe { real::ERR_set_mark() };
    let (result, bound) = binding::watch_handshake(ssl as usize, server_name(ssl), real);
    match bound {
        Some(fd) => {
            // The aborted real handshake left errors for a peer that never answered.
            // SAFETY: as above.
            unsafe { real::ERR_pop_to_mark() };
            make_virtual(ssl, fd)
        }
        None => result,
    }
}

fn server_name(ssl: Ssl) -> Option<String> {
    // SAFETY: the program's live SSL; the name (if any) is a NUL-terminated string it owns.
    unsafe {
        let name = real::SSL_get_servername(ssl, TLSEXT_NAMETYPE_HOST_NAME);
        (!name.is_null()).then(|| {
            std::ffi::CStr::from_ptr(name)
                .to_string_lossy()
                .into_owned()
        })
    }
}

fn make_virtual(ssl: Ssl, fd: c_int) -> c_int {
    let Some(conn) = binding::bindable(fd) else {
        return -1;
    };
    sessions::begin_virtual(
        ssl as usize,
        sessions::Kind::OpenSsl,
        fd,
        conn,
        server_name(ssl),
    );
    1
}

fn should_retry(bio: Bio) -> Option<c_int> {
    // SAFETY: a BIO of the program's live SSL.
    let flags = unsafe {
        real::BIO_test_flags(
            bio,
            BIO_FLAGS_SHOULD_RETRY | BIO_FLAGS_READ | BIO_FLAGS_WRITE,
        )
    };
    if flags & BIO_FLAGS_SHOULD_RETRY == 0 {
        None
    } else if flags & BIO_FLAGS_WRITE != 0 {
        Some(SSL_ERROR_WANT_WRITE)
    } else {
        Some(SSL_ERROR_WANT_READ)
    }
}

/// Reads plaintext for a virtual session: held (peeked) bytes first, then the read BIO.
/// `Err` carries the `SSL_get_error` code, also kept for the program to ask.
///
/// # Safety
/// `ssl` is the program's live SSL.
pub unsafe fn read(
    session: &Session,
    ssl: Ssl,
    out: &mut [u8],
    peek: bool,
) -> Result<usize, c_int> {
    if let Some(real_ssl) = fallback(session) {
        return follow::read(session, real_ssl, out, peek);
    }
    // SAFETY: the caller's contract.
    let result = unsafe { read_virtual(session, ssl, out, peek) };
    match (result, fallback(session)) {
        // The read met a proxy failure and the socket now carries a real session.
        (Err(_), Some(real_ssl)) => follow::read(session, real_ssl, out, peek),
        (Err(_), None) if session.state.lock().fallback_failed => {
            // Its reasons (a verification failure) are on this thread's error queue; a
            // set errno keeps wrappers (IO::Socket::SSL) from taking it for an EOF.
            session.state.lock().last_error = SSL_ERROR_SSL;
            crate::sys::set_errno(libc::EPROTO);
            Err(SSL_ERROR_SSL)
        }
        (result, _) => result,
    }
}

/// # Safety
/// `ssl` is the program's live SSL.
unsafe fn read_virtual(
    session: &Session,
    ssl: Ssl,
    out: &mut [u8],
    peek: bool,
) -> Result<usize, c_int> {
    let mut state = session.state.lock();
    if state.held.is_empty() && !out.is_empty() {
        drop(state);
        // SAFETY: the program's live SSL.
        let bio = unsafe { real::SSL_get_rbio(ssl) };
        let len = out.len().min(c_int::MAX as usize) as c_int;
        // SAFETY: `out` is writable for `len` bytes.
        let got = unsafe { real::BIO_read(bio, out.as_mut_ptr().cast(), len) };
        state = session.state.lock();
        if got <= 0 {
            let error = match should_retry(bio) {
                Some(want) => want,
                None if got == 0 => {
                    state.shutdown |= SSL_RECEIVED_SHUTDOWN;
                    SSL_ERROR_ZERO_RETURN
                }
                None => SSL_ERROR_SYSCALL,
            };
            state.last_error = error;
            return Err(error);
        }
        state.last_error = SSL_ERROR_NONE;
        if !peek {
            return Ok(got as usize);
        }
        state.held.extend_from_slice(&out[..got as usize]);
        return Ok(got as usize);
    }
    let count = state.held.len().min(out.len());
    out[..count].copy_from_slice(&state.held[..count]);
    if !peek {
        state.held.drain(..count);
    }
    state.last_error = SSL_ERROR_NONE;
    Ok(count)
}

/// Writes plaintext for a virtual session through the write BIO, all or nothing as
/// OpenSSL does (unless the program enabled partial writes).
///
/// # Safety
/// `ssl` is the program's live SSL.
pub unsafe fn write(session: &Session, ssl: Ssl, input: &[u8]) -> Result<usize, c_int> {
    // SAFETY: the program's live SSL.
    let bio = unsafe { real::SSL_get_wbio(ssl) };
    // SAFETY: as above; SSL_CTRL_MODE with 0 only reads the mode.
    let partial = unsafe { real::SSL_ctrl(ssl, SSL_CTRL_MODE, 0, std::ptr::null_mut()) }
        & SSL_MODE_ENABLE_PARTIAL_WRITE
        != 0;
    let mut done = std::mem::take(&mut session.state.lock().written).min(input.len());
    if fallback(session).is_none() && session.state.lock().fallback_failed {
        // No session to write into: a real one could not be made, or a move failed.
        let mut state = session.state.lock();
        state.last_error = SSL_ERROR_SSL;
        crate::sys::set_errno(libc::EPROTO);
        return Err(SSL_ERROR_SSL);
    }
    while done < input.len() {
        if let Some(real_ssl) = fallback(session) {
            // A real session at the origin: each request is still routed when sent, and
            // may bring the session back to the proxy (then the loop goes on virtually).
            match follow::write(session, real_ssl, &input[done..]) {
                follow::Wrote::Switched(n) => {
                    done += n;
                    continue;
                }
                follow::Wrote::Taken(n) => {
                    done += n;
                    if partial || n == 0 {
                        break;
                    }
                    continue;
                }
                follow::Wrote::Failed(n, error) => {
                    done += n;
                    if partial && done > 0 {
                        break;
                    }
                    let mut state = session.state.lock();
                    if matches!(error, SSL_ERROR_WANT_READ | SSL_ERROR_WANT_WRITE) {
                        // The program repeats its call with the same bytes.
                        state.written = done;
                    }
                    state.last_error = error;
                    return Err(error);
                }
            }
        }
        let rest = &input[done..];
        let len = rest.len().min(c_int::MAX as usize) as c_int;
        // SAFETY: `rest` is readable for `len` bytes.
        let sent = unsafe { real::BIO_write(bio, rest.as_ptr().cast(), len) };
        if sent > 0 {
            done += sent as usize;
            if partial {
                break;
            }
            continue;
        }
        if fallback(session).is_some() {
            // The write met a proxy failure: the rest goes into the real session.
            continue;
        }
        let mut state = session.state.lock();
        if state.fallback_failed {
            state.last_error = SSL_ERROR_SSL;
            crate::sys::set_errno(libc::EPROTO);
            return Err(SSL_ERROR_SSL);
        }
        let error = match should_retry(bio) {
            Some(want) => {
                if partial && done > 0 {
                    break;
                }
                state.written = done;
                want
            }
            None => SSL_ERROR_SYSCALL,
        };
        state.last_error = error;
        return Err(error);
    }
    session.state.lock().last_error = SSL_ERROR_NONE;
    Ok(done)
}

pub fn last_error(session: &Session, ret: c_int) -> c_int {
    if ret > 0 {
        SSL_ERROR_NONE
    } else {
        session.state.lock().last_error
    }
}

pub fn pending(session: &Session) -> c_int {
    session.state.lock().held.len().min(c_int::MAX as usize) as c_int
}

pub fn shutdown(session: &Session) -> c_int {
    session.state.lock().shutdown |= SSL_SENT_SHUTDOWN;
    1
}

pub fn shutdown_state(session: &Session) -> c_int {
    session.state.lock().shutdown
}

/// A cipher for programs that print or inspect it (Ruby's `cipher` must not be nil): TLS
/// 1.3's AES-256-GCM when the library knows it, else the session's first.
///
/// # Safety
/// `ssl` is the program's live SSL.
pub unsafe fn nominal_cipher(ssl: Ssl) -> *const c_void {
    const TLS_AES_256_GCM_SHA384: [u8; 2] = [0x13, 0x02];
    // SAFETY: the caller's contract; the id is two readable bytes.
    unsafe {
        let found = real::SSL_CIPHER_find(ssl, TLS_AES_256_GCM_SHA384.as_ptr());
        if !found.is_null() {
            return found;
        }
        let list = real::SSL_get_ciphers(ssl);
        if list.is_null() {
            std::ptr::null()
        } else {
            real::OPENSSL_sk_value(list, 0)
        }
    }
}

/// A certificate object naming the session's host (the caller owns a reference to it).
pub fn new_peer_certificate(session: &Session) -> X509 {
    let now = now_unix();
    certificates::certificate_for(&session.host, now, || {
        let der = certificate::synthetic_leaf_der(&session.host, now);
        let mut input = der.as_ptr();
        // SAFETY: `input` points to `der.len()` bytes of DER; d2i_X509 allocates the object.
        unsafe { real::d2i_X509(std::ptr::null_mut(), &mut input, der.len() as c_long) }
    })
}

/// A certificate object the session keeps (for `SSL_get0_peer_certificate`).
pub fn kept_peer_certificate(session: &Session) -> X509 {
    let mut state = session.state.lock();
    if let Some(x509) = state.owned.iter().find_map(|o| match o {
        Owned::X509(x) => Some(*x),
        _ => None,
    }) {
        return x509 as X509;
    }
    drop(state);
    let x509 = new_peer_certificate(session);
    state = session.state.lock();
    state.owned.push(Owned::X509(x509 as usize));
    x509
}

/// `SSL_free`: the session is forgotten, then freed by the library.
pub fn free(ssl: Ssl) {
    if let Some(session) = sessions::remove(ssl as usize) {
        let programs = session.state.lock().fallback_is_programs;
        if let Some(real_ssl) = fallback(&session).filter(|_| !programs) {
            // SAFETY: the fallback session is ours; the program never held it.
            unsafe { real::SSL_free(real_ssl) };
        }
        let owned: Vec<Owned> = std::mem::take(&mut session.state.lock().owned);
        for item in owned {
            if let Owned::X509(x509) = item {
                // SAFETY: the session's own reference (from `new_peer_certificate`),
                // handed out without one of the program's.
                unsafe { real::X509_free(x509 as X509) };
            }
        }
    }
}
