//! GnuTLS 3: the session calls our hooks answer for a virtual session. GnuTLS's default
//! transport is `send`/`recv` on the fd the program handed it, so a virtual session moves
//! its plaintext with those same calls, through our socket hooks, as the program would.
//! After a proxy failure, `fallback` replaces the session by a real one.

mod fallback;
mod follow;
mod noted;
pub mod real;
pub mod record_timeout;
pub mod server_names;

pub use fallback::{fallback, take_over};

use super::library;
use super::sessions::{self, GnutlsDatum, Owned, Session};
use super::{binding, certificate, now_unix};
use crate::conn::fdtable;
use libc::{c_int, c_uint, c_void, size_t};
use std::sync::Arc;
use std::time::Duration;

pub type GnutlsSession = *mut c_void;

const GNUTLS_E_AGAIN: c_int = -28;
const GNUTLS_E_INTERRUPTED: c_int = -52;
const GNUTLS_E_PUSH_ERROR: c_int = -53;
const GNUTLS_E_PULL_ERROR: c_int = -54;
pub const GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE: c_int = -56;
pub const GNUTLS_CRT_X509: c_int = 1;
const GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR: c_int = -348;
const GNUTLS_E_TIMEDOUT: c_int = -319;
const GNUTLS_NAME_DNS: c_uint = 1;

#[inline]
pub fn virtual_session(session: GnutlsSession) -> Option<Arc<Session>> {
    sessions::find(session as usize)
}

/// `gnutls_handshake`: a session whose transport is a diverted fd becomes virtual.
///
/// # Safety
/// `session` is the program's live session.
pub unsafe fn handshake(session: GnutlsSession, real: impl FnOnce() -> c_int) -> c_int {
    if let Some(virtual_session) = virtual_session(session) {
        if fallback(&virtual_session) == Some(session) {
            // The program's own session, followed: its handshake is its own.
            let _inside = crate::guard::Reentry::enter();
            return real();
        }
        return 0;
    }
    if !fdtable::any_tracked() || !library::gnutls_drivable() {
        return real();
    }
    // SAFETY: the program's live session.
    let fd = unsafe { real::gnutls_transport_get_int(session) };
    if let Some(conn) = (fd >= 0).then(|| binding::followable(fd)).flatten() {
        // Direct at connect only because of the failsafe: real, and followed so that a
        // later request can bring it to the proxy.
        let name = server_name(session);
        sessions::begin_followed(session as usize, sessions::Kind::GnuTls, fd, conn, name);
        let _inside = crate::guard::Reentry::enter();
        return real();
    }
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

/// The server name the program asked for (`server_names`); a DNS name only.
fn server_name(session: GnutlsSession) -> Option<String> {
    server_names::of(session)
}

fn transfer_error(errno: c_int, pushing: bool) -> isize {
    (match errno {
        libc::EAGAIN => GNUTLS_E_AGAIN,
        libc::EINTR => GNUTLS_E_INTERRUPTED,
        _ if pushing => GNUTLS_E_PUSH_ERROR,
        _ => GNUTLS_E_PULL_ERROR,
    }) as isize
}

/// The program's own `send` and `recv` (our socket hooks, passed down by `hooks::gnutls`):
/// a virtual session's plaintext takes the path the program's own calls would.
pub type ProgramSend = unsafe extern "C-unwind" fn(c_int, *const c_void, size_t, c_int) -> isize;
pub type ProgramRecv = unsafe extern "C-unwind" fn(c_int, *mut c_void, size_t, c_int) -> isize;

pub fn send(session: &Session, data: &[u8], program_send: ProgramSend) -> isize {
    let mut done = 0;
    while let Some(real_session) = fallback(session) {
        // A real session at the origin: each request is still routed when sent, and may
        // bring the session back to the proxy (then the rest goes virtually).
        match follow::send(session, real_session, &data[done..]) {
            follow::Sent::Done(result) if done == 0 => return result,
            follow::Sent::Done(result) => return done as isize + result.max(0),
            follow::Sent::Switched(n) => done += n,
        }
        if done == data.len() {
            return done as isize;
        }
    }
    if done > 0 {
        return done as isize + send_virtual(session, &data[done..], program_send).max(0);
    }
    send_virtual(session, data, program_send)
}

fn send_virtual(session: &Session, data: &[u8], program_send: ProgramSend) -> isize {
    session.state.lock().last_was_write = true;
    // SAFETY: the program's own entry point, with a live slice.
    let sent = unsafe {
        program_send(
            session.fd,
            data.as_ptr().cast(),
            data.len(),
            libc::MSG_NOSIGNAL,
        )
    };
    // A failure met (-1), or bytes that are not HTTP, which the connection layer took
    // none of (0): either way the socket may now carry a real session, which takes them.
    if sent < 0 || (sent == 0 && !data.is_empty()) {
        if let Some(real_session) = fallback(session) {
            return match follow::send(session, real_session, data) {
                follow::Sent::Done(result) => result,
                follow::Sent::Switched(n) => n as isize,
            };
        }
        if sent < 0 {
            return transfer_error(crate::sys::errno(), true);
        }
    }
    sent
}

/// The program's `gnutls_record_recv`; `limit`: the receive timeout it set
/// (`record_timeout`), after which a read with nothing to take ends with
/// `GNUTLS_E_TIMEDOUT`, as GnuTLS's own.
pub fn recv(
    session: &Session,
    out: &mut [u8],
    limit: Option<Duration>,
    program_recv: ProgramRecv,
) -> isize {
    if let Some(real_session) = fallback(session) {
        return follow::recv(session, real_session, out);
    }
    let held = {
        let mut state = session.state.lock();
        state.last_was_write = false;
        !state.held.is_empty()
    };
    if let Some(limit) = limit.filter(|_| !held) {
        match crate::conn::input_within(&session.conn, session.fd, limit) {
            Ok(true) => {}
            Ok(false) => return GNUTLS_E_TIMEDOUT as isize,
            Err(_) => return GNUTLS_E_INTERRUPTED as isize,
        }
    }
    // SAFETY: the program's own entry point, with a live buffer.
    let got = unsafe { program_recv(session.fd, out.as_mut_ptr().cast(), out.len(), 0) };
    if got <= 0 {
        if let Some(real_session) = fallback(session) {
            return follow::recv(session, real_session, out);
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
        let programs = virtual_session.state.lock().fallback_is_programs;
        if let Some(real_session) = fallback(&virtual_session).filter(|_| !programs) {
            // SAFETY: the fallback session is ours; the program never held it.
            unsafe { real::gnutls_deinit(real_session) };
        }
    }
}
