//! OpenSSL (libssl 1.1 and 3): the session calls our hooks answer for a virtual session.
//! The plaintext moves through the session's own BIOs: a socket BIO writes to the fd with
//! `write`, curl's BIO with `send`, and either way our socket hooks and the HTTP engine
//! see it, exactly as for port 80.

use super::library::{self, Library};
use super::sessions::{self, Owned, Session};
use super::{binding, certificate, now_unix, real_in};
use crate::fdtable;
use crate::guard::Reentry;
use crate::proxy::socket::wait_for;
use libc::{c_char, c_int, c_long, c_uint, c_void, size_t};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
const SSL_CTRL_SET_TLSEXT_HOSTNAME: c_int = 55;
/// ALPN wire format: the fallback speaks HTTP/1.1, as the program already does.
const ALPN_HTTP_1_1: &[u8] = b"\x08http/1.1";
/// How long a fallback's handshake and replay may take.
const TAKE_OVER_TIMEOUT: Duration = Duration::from_secs(10);
const BIO_FLAGS_READ: c_int = 1;
const BIO_FLAGS_WRITE: c_int = 2;
const BIO_FLAGS_SHOULD_RETRY: c_int = 8;
const X509_V_OK: c_long = 0;
/// `TLS_ST_OK`: what `SSL_get_state` says once a handshake is done.
const TLS_ST_OK: c_int = 1;

#[allow(non_snake_case, clippy::unused_unit)]
pub mod real {
    use super::*;
    real_in! { Library::Ssl;
        fn SSL_connect(ssl: Ssl) -> c_int, else -1;
        fn SSL_do_handshake(ssl: Ssl) -> c_int, else -1;
        fn SSL_read(ssl: Ssl, buf: *mut c_void, num: c_int) -> c_int, else -1;
        fn SSL_read_ex(ssl: Ssl, buf: *mut c_void, num: size_t, read: *mut size_t) -> c_int, else 0;
        fn SSL_peek(ssl: Ssl, buf: *mut c_void, num: c_int) -> c_int, else -1;
        fn SSL_peek_ex(ssl: Ssl, buf: *mut c_void, num: size_t, read: *mut size_t) -> c_int, else 0;
        fn SSL_write(ssl: Ssl, buf: *const c_void, num: c_int) -> c_int, else -1;
        fn SSL_write_ex(ssl: Ssl, buf: *const c_void, num: size_t, written: *mut size_t) -> c_int, else 0;
        fn SSL_get_error(ssl: Ssl, ret: c_int) -> c_int, else SSL_ERROR_SYSCALL;
        fn SSL_pending(ssl: Ssl) -> c_int, else 0;
        fn SSL_has_pending(ssl: Ssl) -> c_int, else 0;
        fn SSL_shutdown(ssl: Ssl) -> c_int, else -1;
        fn SSL_get_shutdown(ssl: Ssl) -> c_int, else 0;
        fn SSL_free(ssl: Ssl) -> (), else ();
        fn SSL_get_fd(ssl: Ssl) -> c_int, else -1;
        fn SSL_get_rbio(ssl: Ssl) -> Bio, else std::ptr::null_mut();
        fn SSL_get_wbio(ssl: Ssl) -> Bio, else std::ptr::null_mut();
        fn SSL_ctrl(ssl: Ssl, cmd: c_int, larg: c_long, parg: *mut c_void) -> c_long, else 0;
        fn SSL_get_servername(ssl: Ssl, kind: c_int) -> *const c_char, else std::ptr::null();
        fn SSL_is_init_finished(ssl: Ssl) -> c_int, else 0;
        fn SSL_in_init(ssl: Ssl) -> c_int, else 1;
        fn SSL_in_before(ssl: Ssl) -> c_int, else 1;
        fn SSL_get_state(ssl: Ssl) -> c_int, else 0;
        fn SSL_get_verify_result(ssl: Ssl) -> c_long, else 1;
        fn SSL_get0_alpn_selected(ssl: Ssl, data: *mut *const u8, len: *mut c_uint) -> (), else ();
        fn SSL_get1_peer_certificate(ssl: Ssl) -> X509, else std::ptr::null_mut();
        fn SSL_get_peer_certificate(ssl: Ssl) -> X509, else std::ptr::null_mut();
        fn SSL_get0_peer_certificate(ssl: Ssl) -> X509, else std::ptr::null_mut();
        fn SSL_get_peer_cert_chain(ssl: Ssl) -> *mut c_void, else std::ptr::null_mut();
        fn SSL_session_reused(ssl: Ssl) -> c_int, else 0;
        fn SSL_get_SSL_CTX(ssl: Ssl) -> *mut c_void, else std::ptr::null_mut();
        fn SSL_new(ctx: *mut c_void) -> Ssl, else std::ptr::null_mut();
        fn SSL_set_fd(ssl: Ssl, fd: c_int) -> c_int, else 0;
        fn SSL_set_connect_state(ssl: Ssl) -> (), else ();
        fn SSL_get0_param(ssl: Ssl) -> *mut c_void, else std::ptr::null_mut();
        fn SSL_set1_param(ssl: Ssl, param: *mut c_void) -> c_int, else 0;
        fn SSL_set1_host(ssl: Ssl, host: *const c_char) -> c_int, else 0;
        fn SSL_get_verify_mode(ssl: Ssl) -> c_int, else 0;
        fn SSL_get_verify_callback(ssl: Ssl) -> *mut c_void, else std::ptr::null_mut();
        fn SSL_set_verify(ssl: Ssl, mode: c_int, callback: *mut c_void) -> (), else ();
        fn SSL_set_alpn_protos(ssl: Ssl, protos: *const u8, len: c_uint) -> c_int, else 1;
        fn SSL_get_current_cipher(ssl: Ssl) -> *const c_void, else std::ptr::null();
        fn SSL_get_ex_data(ssl: Ssl, index: c_int) -> *mut c_void, else std::ptr::null_mut();
        fn SSL_CIPHER_find(ssl: Ssl, id: *const u8) -> *const c_void, else std::ptr::null();
        fn SSL_get_ciphers(ssl: Ssl) -> *mut c_void, else std::ptr::null_mut();
    }
    real_in! { Library::Crypto;
        fn BIO_read(bio: Bio, buf: *mut c_void, len: c_int) -> c_int, else -1;
        fn BIO_write(bio: Bio, buf: *const c_void, len: c_int) -> c_int, else -1;
        fn BIO_test_flags(bio: Bio, flags: c_int) -> c_int, else 0;
        fn d2i_X509(out: *mut X509, input: *mut *const u8, len: c_long) -> X509, else std::ptr::null_mut();
        fn X509_free(x509: X509) -> (), else ();
        fn ERR_set_mark() -> c_int, else 0;
        fn OPENSSL_sk_value(stack: *const c_void, index: c_int) -> *const c_void, else std::ptr::null();
        fn ERR_pop_to_mark() -> c_int, else 0;
    }
}

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
    if virtual_session(ssl).is_some() {
        return 1;
    }
    if !fdtable::any_tracked() || !library::openssl_drivable() {
        return real();
    }
    // SAFETY: the program's live SSL.
    let fd = unsafe { real::SSL_get_fd(ssl) };
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
    // SAFETY: the caller's contract.
    let result = unsafe { read_virtual(session, ssl, out, peek) };
    match (result, fallback(session)) {
        // The read met a proxy failure and the socket now carries a real session.
        (Err(_), Some(real_ssl)) => read_real(session, real_ssl, out, peek),
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
    while done < input.len() {
        if let Some(real_ssl) = fallback(session) {
            return write_real(session, real_ssl, &input[done..]).map(|n| done + n);
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

/// `SSL_get_ex_data`: the program's verify callbacks meet our fallback session during its
/// handshake and look their own data up on it (Ruby keeps its socket object there), so
/// for a fallback the program's session answers.
///
/// # Safety
/// `ssl` is a live SSL.
pub unsafe fn ex_data(ssl: Ssl, index: c_int) -> *mut c_void {
    let owner = sessions::owner_of_fallback(ssl as usize).map_or(ssl, |key| key as Ssl);
    // SAFETY: the caller's contract; the owner lives as long as its fallback.
    unsafe { real::SSL_get_ex_data(owner, index) }
}

/// The real session that replaced a virtual one after a fallback.
pub fn fallback(session: &Session) -> Option<Ssl> {
    let real_ssl = session.state.lock().fallback;
    (real_ssl != 0).then_some(real_ssl as Ssl)
}

fn read_real(session: &Session, real_ssl: Ssl, out: &mut [u8], peek: bool) -> Result<usize, c_int> {
    let _inside = Reentry::enter();
    let mut count: size_t = 0;
    // SAFETY: the fallback session is ours and alive; `out` is writable.
    let ok = unsafe {
        if peek {
            real::SSL_peek_ex(real_ssl, out.as_mut_ptr().cast(), out.len(), &mut count)
        } else {
            real::SSL_read_ex(real_ssl, out.as_mut_ptr().cast(), out.len(), &mut count)
        }
    };
    settle_real(session, real_ssl, ok, count)
}

fn write_real(session: &Session, real_ssl: Ssl, input: &[u8]) -> Result<usize, c_int> {
    let _inside = Reentry::enter();
    let mut count: size_t = 0;
    // SAFETY: the fallback session is ours and alive; `input` is readable.
    let ok =
        unsafe { real::SSL_write_ex(real_ssl, input.as_ptr().cast(), input.len(), &mut count) };
    settle_real(session, real_ssl, ok, count)
}

fn settle_real(session: &Session, real_ssl: Ssl, ok: c_int, count: size_t) -> Result<usize, c_int> {
    if ok == 1 {
        return Ok(count);
    }
    // SAFETY: as above.
    let error = unsafe { real::SSL_get_error(real_ssl, 0) };
    session.state.lock().last_error = error;
    Err(error)
}

/// Replaces the virtual session on a socket just moved to the original destination by a
/// real one made from the program's own: its context (trust store), its verify mode,
/// parameters and callback, SNI and host check for the name it asked for, ALPN limited
/// to HTTP/1.1. Handshakes, sends `replay`, and from then on serves the program's calls.
///
/// # Safety
/// `ssl` is the program's live SSL, `session` its virtual session.
pub unsafe fn take_over(ssl: Ssl, session: &Session, replay: &[u8]) -> Result<(), c_int> {
    let _inside = Reentry::enter();
    // SAFETY: the program's live SSL; the new one is ours until it becomes the fallback.
    let real_ssl = unsafe { real::SSL_new(real::SSL_get_SSL_CTX(ssl)) };
    if real_ssl.is_null() {
        return Err(libc::ENOMEM);
    }
    let host = std::ffi::CString::new(session.host.as_str()).unwrap_or_default();
    let is_address = session.host.parse::<std::net::IpAddr>().is_ok();
    // SAFETY: both SSLs are live; the strings outlive the calls (OpenSSL copies them).
    unsafe {
        real::SSL_set_fd(real_ssl, session.fd);
        real::SSL_set1_param(real_ssl, real::SSL_get0_param(ssl));
        real::SSL_set_verify(
            real_ssl,
            real::SSL_get_verify_mode(ssl),
            real::SSL_get_verify_callback(ssl),
        );
        if !is_address {
            real::SSL_ctrl(
                real_ssl,
                SSL_CTRL_SET_TLSEXT_HOSTNAME,
                TLSEXT_NAMETYPE_HOST_NAME as c_long,
                host.as_ptr() as *mut c_void,
            );
            real::SSL_set1_host(real_ssl, host.as_ptr());
        }
        real::SSL_set_alpn_protos(
            real_ssl,
            ALPN_HTTP_1_1.as_ptr(),
            ALPN_HTTP_1_1.len() as c_uint,
        );
        real::SSL_set_connect_state(real_ssl);
    }
    session.state.lock().fallback_starting = real_ssl as usize;
    let deadline = Instant::now() + TAKE_OVER_TIMEOUT;
    // SAFETY: our live SSL.
    let outcome = drive(real_ssl, deadline, || unsafe {
        real::SSL_connect(real_ssl)
    })
    .and_then(|()| {
        let mut rest = replay;
        while !rest.is_empty() {
            let mut count: size_t = 0;
            // SAFETY: our live SSL; `rest` is readable.
            drive(real_ssl, deadline, || unsafe {
                real::SSL_write_ex(real_ssl, rest.as_ptr().cast(), rest.len(), &mut count)
            })?;
            rest = &rest[count..];
        }
        Ok(())
    });
    let mut state = session.state.lock();
    state.fallback_starting = 0;
    match outcome {
        Ok(()) => {
            log::debug!(
                "https: fallback session to the origin up on fd {} ({})",
                session.fd,
                session.host
            );
            state.fallback = real_ssl as usize;
            Ok(())
        }
        Err(errno) => {
            log::warn!(
                "https fallback to {} failed (the program sees its TLS library's error)",
                session.host
            );
            state.fallback_failed = true;
            state.last_error = SSL_ERROR_SSL;
            drop(state);
            // SAFETY: ours, never handed out.
            unsafe { real::SSL_free(real_ssl) };
            Err(errno)
        }
    }
}

/// Repeats an OpenSSL call that returns 1 on success until it succeeds, waiting for the
/// socket as it asks; any other error ends it (its reasons stay on the error queue).
fn drive(ssl: Ssl, deadline: Instant, mut call: impl FnMut() -> c_int) -> Result<(), c_int> {
    loop {
        let result = call();
        if result == 1 {
            return Ok(());
        }
        // SAFETY: our live SSL.
        let error = unsafe { real::SSL_get_error(ssl, result) };
        let events = match error {
            SSL_ERROR_WANT_READ => libc::POLLIN,
            SSL_ERROR_WANT_WRITE => libc::POLLOUT,
            _ => return Err(libc::ECONNABORTED),
        };
        // SAFETY: our live SSL.
        wait_for(unsafe { real::SSL_get_fd(ssl) }, events, deadline)?;
    }
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

pub const fn finished_state() -> c_int {
    TLS_ST_OK
}

pub const fn verify_ok() -> c_long {
    X509_V_OK
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

/// A new certificate object naming the session's host (the caller owns it).
pub fn new_peer_certificate(session: &Session) -> X509 {
    let der = certificate::synthetic_leaf_der(&session.host, now_unix());
    let mut input = der.as_ptr();
    // SAFETY: `input` points to `der.len()` bytes of DER; d2i_X509 allocates the object.
    unsafe { real::d2i_X509(std::ptr::null_mut(), &mut input, der.len() as c_long) }
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
        if let Some(real_ssl) = fallback(&session) {
            // SAFETY: the fallback session is ours; the program never held it.
            unsafe { real::SSL_free(real_ssl) };
        }
        let owned: Vec<Owned> = std::mem::take(&mut session.state.lock().owned);
        for item in owned {
            if let Owned::X509(x509) = item {
                // SAFETY: made by d2i_X509 for this session and handed out without a
                // reference of the program's own.
                unsafe { real::X509_free(x509 as X509) };
            }
        }
    }
}
