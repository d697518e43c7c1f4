//! The fallback: after a proxy failure the socket carries a real TLS session to the
//! origin, with the program's credentials, which then serves the program's calls.

use super::{real, GnutlsSession, GNUTLS_NAME_DNS};
use crate::guard::Reentry;
use crate::sys::socket::wait_for;
use crate::tls::sessions::{GnutlsDatum, Session};
use libc::{c_int, c_void};
use std::time::{Duration, Instant};

const GNUTLS_CLIENT: libc::c_uint = 1 << 1;
const GNUTLS_CRD_CERTIFICATE: c_int = 1;
/// How long a fallback's handshake and replay may take.
const TAKE_OVER_TIMEOUT: Duration = Duration::from_secs(10);

/// The real session that replaced a virtual one after a fallback.
pub fn fallback(session: &Session) -> Option<GnutlsSession> {
    let real_session = session.state.lock().fallback;
    (real_session != 0).then_some(real_session as GnutlsSession)
}

pub(super) fn send_real(real_session: GnutlsSession, data: &[u8]) -> isize {
    let _inside = Reentry::enter();
    // SAFETY: the fallback session is ours and alive; `data` is readable.
    unsafe { real::gnutls_record_send(real_session, data.as_ptr().cast(), data.len()) }
}

pub(super) fn recv_real(real_session: GnutlsSession, out: &mut [u8]) -> isize {
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
    if let Some(ms) = super::record_timeout::set_on(program_session).filter(|_| outcome.is_ok()) {
        // The program's receive timeout, for the reads this session now serves.
        // SAFETY: our live session.
        unsafe { real::gnutls_record_set_timeout(real_session, ms) };
    }
    if session.fallback_ended(real_session as usize, outcome.is_ok()) {
        return Ok(());
    }
    // SAFETY: ours, never handed out.
    unsafe { real::gnutls_deinit(real_session) };
    outcome.map(|_| ())
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
        let fd = unsafe { real::gnutls_transport_get_int(session) };
        wait_for(fd, events, deadline)?;
    }
}
