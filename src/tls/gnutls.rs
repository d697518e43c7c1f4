//! GnuTLS 3: the session calls our hooks answer for a virtual session. GnuTLS's default
//! transport is `send`/`recv` on the fd the program handed it, so a virtual session moves
//! its plaintext with those same calls, through our socket hooks, as the program would.

use super::library::{self, Library};
use super::sessions::{self, GnutlsDatum, Owned, Session};
use super::{binding, certificate, now_unix, real_in};
use crate::fdtable;
use crate::guard::Reentry;
use crate::proxy::socket::wait_for;
use libc::{c_int, c_uint, c_void, size_t};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub type GnutlsSession = *mut c_void;

const GNUTLS_E_AGAIN: c_int = -28;
const GNUTLS_E_INTERRUPTED: c_int = -52;
const GNUTLS_E_PUSH_ERROR: c_int = -53;
const GNUTLS_E_PULL_ERROR: c_int = -54;
pub const GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE: c_int = -56;
pub const GNUTLS_CRT_X509: c_int = 1;
const GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR: c_int = -348;
const GNUTLS_NAME_DNS: c_uint = 1;
const GNUTLS_CLIENT: c_uint = 1 << 1;
const GNUTLS_CRD_CERTIFICATE: c_int = 1;
/// How long a fallback's handshake and replay may take.
const TAKE_OVER_TIMEOUT: Duration = Duration::from_secs(10);

#[allow(non_snake_case, clippy::unused_unit)]
pub mod real {
    use super::*;
    real_in! { Library::GnuTls;
        fn gnutls_handshake(session: GnutlsSession) -> c_int, else -1;
        fn gnutls_record_send(session: GnutlsSession, data: *const c_void, len: size_t) -> isize, else -1;
        fn gnutls_record_recv(session: GnutlsSession, data: *mut c_void, len: size_t) -> isize, else -1;
        fn gnutls_record_check_pending(session: GnutlsSession) -> size_t, else 0;
        fn gnutls_record_get_direction(session: GnutlsSession) -> c_int, else 0;
        fn gnutls_bye(session: GnutlsSession, how: c_int) -> c_int, else -1;
        fn gnutls_deinit(session: GnutlsSession) -> (), else ();
        fn gnutls_transport_get_int(session: GnutlsSession) -> c_int, else -1;
        fn gnutls_server_name_get(session: GnutlsSession, data: *mut c_void, len: *mut size_t, kind: *mut c_uint, index: c_uint) -> c_int, else -1;
        fn gnutls_certificate_verify_peers2(session: GnutlsSession, status: *mut c_uint) -> c_int, else -1;
        fn gnutls_certificate_verify_peers3(session: GnutlsSession, host: *const libc::c_char, status: *mut c_uint) -> c_int, else -1;
        fn gnutls_certificate_get_peers(session: GnutlsSession, count: *mut c_uint) -> *const GnutlsDatum, else std::ptr::null();
        fn gnutls_certificate_type_get(session: GnutlsSession) -> c_int, else 0;
        fn gnutls_alpn_get_selected_protocol(session: GnutlsSession, protocol: *mut GnutlsDatum) -> c_int, else -1;
        fn gnutls_session_is_resumed(session: GnutlsSession) -> c_int, else 0;
        fn gnutls_init(session: *mut GnutlsSession, flags: c_uint) -> c_int, else -1;
        fn gnutls_credentials_get(session: GnutlsSession, kind: c_int, cred: *mut *mut c_void) -> c_int, else -1;
        fn gnutls_credentials_set(session: GnutlsSession, kind: c_int, cred: *mut c_void) -> c_int, else -1;
        fn gnutls_set_default_priority(session: GnutlsSession) -> c_int, else -1;
        fn gnutls_server_name_set(session: GnutlsSession, kind: c_uint, name: *const c_void, len: size_t) -> c_int, else -1;
        fn gnutls_session_set_verify_cert(session: GnutlsSession, host: *const libc::c_char, flags: c_uint) -> (), else ();
        fn gnutls_alpn_set_protocols(session: GnutlsSession, protocols: *const GnutlsDatum, count: c_uint, flags: c_uint) -> c_int, else -1;
        fn gnutls_transport_set_int2(session: GnutlsSession, receive: c_int, send: c_int) -> (), else ();
        fn gnutls_error_is_fatal(error: c_int) -> c_int, else 1;
    }
}

#[inline]
pub fn virtual_session(session: GnutlsSession) -> Option<Arc<Session>> {
    sessions::find(session as usize)
}

/// `gnutls_handshake`: a session whose transport is a diverted fd becomes virtual.
///
/// # Safety
/// `session` is the program's live session.
pub unsafe fn handshake(session: GnutlsSession, real: impl FnOnce() -> c_int) -> c_int {
    if virtual_session(session).is_some() {
        return 0;
    }
    if !fdtable::any_tracked() || !library::gnutls_drivable() {
        return real();
    }
    // SAFETY: the program's live session.
    let fd = unsafe { real::gnutls_transport_get_int(session) };
    let Some(conn) = (fd >= 0).then(|| binding::bindable(fd)).flatten() else {
        return real();
    };
    let server_name = server_name(session);
    if let Some(name) = &server_name {
        // The filter judges the server name too: it may send the socket to the origin.
        if !crate::conn::settle_for_server_name(&conn, fd, name) {
            return real();
        }
    }
    sessions::begin_virtual(
        session as usize,
        sessions::Kind::GnuTls,
        fd,
        conn,
        server_name,
    );
    0
}

fn server_name(session: GnutlsSession) -> Option<String> {
    let mut name = [0u8; 256];
    let mut len: size_t = name.len();
    let mut kind: c_uint = 0;
    // SAFETY: `name` is writable for `len` bytes; GnuTLS writes the name and its length.
    let rc = unsafe {
        real::gnutls_server_name_get(session, name.as_mut_ptr().cast(), &mut len, &mut kind, 0)
    };
    (rc == 0 && kind == GNUTLS_NAME_DNS && len <= name.len()).then(|| {
        String::from_utf8_lossy(&name[..len])
            .trim_end_matches('\0')
            .to_string()
    })
}

fn transfer_error(errno: c_int, pushing: bool) -> isize {
    (match errno {
        libc::EAGAIN => GNUTLS_E_AGAIN,
        libc::EINTR => GNUTLS_E_INTERRUPTED,
        _ if pushing => GNUTLS_E_PUSH_ERROR,
        _ => GNUTLS_E_PULL_ERROR,
    }) as isize
}

pub fn send(session: &Session, data: &[u8]) -> isize {
    if let Some(real_session) = fallback(session) {
        return send_real(real_session, data);
    }
    session.state.lock().last_was_write = true;
    // SAFETY: the program's own entry point, with a live slice.
    let sent = unsafe {
        crate::hooks::program_send(
            session.fd,
            data.as_ptr().cast(),
            data.len(),
            libc::MSG_NOSIGNAL,
        )
    };
    if sent < 0 {
        // The send met a proxy failure and the socket now carries a real session.
        if let Some(real_session) = fallback(session) {
            return send_real(real_session, data);
        }
        return transfer_error(crate::sys::errno(), true);
    }
    sent
}

pub fn recv(session: &Session, out: &mut [u8]) -> isize {
    if let Some(real_session) = fallback(session) {
        return recv_real(real_session, out);
    }
    session.state.lock().last_was_write = false;
    // SAFETY: the program's own entry point, with a live buffer.
    let got =
        unsafe { crate::hooks::program_recv(session.fd, out.as_mut_ptr().cast(), out.len(), 0) };
    if got <= 0 {
        if let Some(real_session) = fallback(session) {
            return recv_real(real_session, out);
        }
        if session.state.lock().fallback_failed {
            return GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR as isize;
        }
    }
    if got < 0 {
        return transfer_error(crate::sys::errno(), false);
    }
    got
}

/// The real session that replaced a virtual one after a fallback.
pub fn fallback(session: &Session) -> Option<GnutlsSession> {
    let real_session = session.state.lock().fallback;
    (real_session != 0).then_some(real_session as GnutlsSession)
}

fn send_real(real_session: GnutlsSession, data: &[u8]) -> isize {
    let _inside = Reentry::enter();
    // SAFETY: the fallback session is ours and alive; `data` is readable.
    unsafe { real::gnutls_record_send(real_session, data.as_ptr().cast(), data.len()) }
}

fn recv_real(real_session: GnutlsSession, out: &mut [u8]) -> isize {
    let _inside = Reentry::enter();
    // SAFETY: the fallback session is ours and alive; `out` is writable.
    unsafe { real::gnutls_record_recv(real_session, out.as_mut_ptr().cast(), out.len()) }
}

/// Replaces the virtual session on a socket just moved to the original destination by a
/// real one using the program's own credentials (its trust store), with SNI, the
/// certificate verified for the host during the handshake, and ALPN limited to HTTP/1.1.
/// Handshakes, sends `replay`, and from then on serves the program's calls.
///
/// # Safety
/// `program_session` is the program's live session, `session` its virtual session.
pub unsafe fn take_over(
    program_session: GnutlsSession,
    session: &Session,
    replay: &[u8],
) -> Result<(), c_int> {
    let _inside = Reentry::enter();
    let mut real_session: GnutlsSession = std::ptr::null_mut();
    // SAFETY: GnuTLS writes the new session.
    if unsafe { real::gnutls_init(&mut real_session, GNUTLS_CLIENT) } != 0 {
        return Err(libc::ENOMEM);
    }
    let host = std::ffi::CString::new(session.host.as_str()).unwrap_or_default();
    let is_address = session.host.parse::<std::net::IpAddr>().is_ok();
    let alpn = GnutlsDatum {
        data: b"http/1.1".as_ptr() as *mut u8,
        size: 8,
    };
    // SAFETY: both sessions are live; GnuTLS copies the name and protocols; the
    // credentials stay the program's (it frees them after its own session).
    let ready = unsafe {
        let mut credentials: *mut c_void = std::ptr::null_mut();
        real::gnutls_credentials_get(program_session, GNUTLS_CRD_CERTIFICATE, &mut credentials) == 0
            && real::gnutls_credentials_set(real_session, GNUTLS_CRD_CERTIFICATE, credentials) == 0
            && real::gnutls_set_default_priority(real_session) == 0
            && {
                if !is_address {
                    real::gnutls_server_name_set(
                        real_session,
                        GNUTLS_NAME_DNS,
                        host.as_ptr().cast(),
                        session.host.len(),
                    );
                }
                real::gnutls_session_set_verify_cert(real_session, host.as_ptr(), 0);
                real::gnutls_alpn_set_protocols(real_session, &alpn, 1, 0);
                real::gnutls_transport_set_int2(real_session, session.fd, session.fd);
                true
            }
    };
    let deadline = Instant::now() + TAKE_OVER_TIMEOUT;
    let outcome = if !ready {
        Err(libc::ENOTSUP)
    } else {
        // SAFETY: our live session.
        drive(real_session, deadline, || unsafe {
            real::gnutls_handshake(real_session) as isize
        })
        .and_then(|_| {
            let mut rest = replay;
            while !rest.is_empty() {
                // SAFETY: our live session; `rest` is readable.
                let sent = drive(real_session, deadline, || unsafe {
                    real::gnutls_record_send(real_session, rest.as_ptr().cast(), rest.len())
                })?;
                rest = &rest[sent..];
            }
            Ok(0)
        })
    };
    let mut state = session.state.lock();
    match outcome {
        Ok(_) => {
            log::debug!(
                "https: fallback session to the origin up on fd {} ({})",
                session.fd,
                session.host
            );
            state.fallback = real_session as usize;
            Ok(())
        }
        Err(errno) => {
            log::warn!(
                "https fallback to {} failed (the program sees its TLS library's error)",
                session.host
            );
            state.fallback_failed = true;
            drop(state);
            // SAFETY: ours, never handed out.
            unsafe { real::gnutls_deinit(real_session) };
            Err(errno)
        }
    }
}

/// Repeats a GnuTLS call until it returns a count (>= 0), waiting for the socket while it
/// says "again"; a fatal error ends it.
fn drive(
    session: GnutlsSession,
    deadline: Instant,
    mut call: impl FnMut() -> isize,
) -> Result<usize, c_int> {
    loop {
        let result = call();
        if result >= 0 {
            return Ok(result as usize);
        }
        // SAFETY: plain query.
        if unsafe { real::gnutls_error_is_fatal(result as c_int) } != 0 {
            return Err(libc::ECONNABORTED);
        }
        // SAFETY: our live session.
        let events = if unsafe { real::gnutls_record_get_direction(session) } == 1 {
            libc::POLLOUT
        } else {
            libc::POLLIN
        };
        // SAFETY: as above.
        wait_for(
            unsafe { real::gnutls_transport_get_int(session) },
            events,
            deadline,
        )?;
    }
}

pub fn direction(session: &Session) -> c_int {
    session.state.lock().last_was_write as c_int
}

/// The peer's certificate list: one synthetic leaf naming the host, kept with the session.
///
/// # Safety
/// `count` is null or writable.
pub unsafe fn peers(session: &Session, count: *mut c_uint) -> *const GnutlsDatum {
    let mut state = session.state.lock();
    let existing = state.owned.iter().find_map(|o| match o {
        Owned::Datum(d) => Some(&**d as *const GnutlsDatum),
        _ => None,
    });
    let datum = existing.unwrap_or_else(|| {
        let mut der = certificate::synthetic_leaf_der(&session.host, now_unix()).into_boxed_slice();
        let datum = Box::new(GnutlsDatum {
            data: der.as_mut_ptr(),
            size: der.len() as u32,
        });
        let pointer = &*datum as *const GnutlsDatum;
        state.owned.push(Owned::Der(der));
        state.owned.push(Owned::Datum(datum));
        pointer
    });
    if !count.is_null() {
        // SAFETY: the program's out-parameter.
        unsafe { *count = 1 };
    }
    datum
}

/// `gnutls_deinit`: the session is forgotten (with what it owned), then freed by GnuTLS.
pub fn forget(session: GnutlsSession) {
    if let Some(virtual_session) = sessions::remove(session as usize) {
        if let Some(real_session) = fallback(&virtual_session) {
            // SAFETY: the fallback session is ours; the program never held it.
            unsafe { real::gnutls_deinit(real_session) };
        }
    }
}
