//! The fallback: after a proxy failure the socket carries a real TLS session to the
//! origin, made from the program's own, which then serves the program's calls.

use super::{
    real, Ssl, SSL_ERROR_SSL, SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE, TLSEXT_NAMETYPE_HOST_NAME,
};
use crate::guard::Reentry;
use crate::sys::socket::wait_for;
use crate::tls::sessions::{self, Session};
use libc::{c_int, c_long, c_uint, c_void, size_t};
use std::time::{Duration, Instant};

const SSL_CTRL_SET_TLSEXT_HOSTNAME: c_int = 55;
/// ALPN wire format: the fallback speaks HTTP/1.1, as the program already does.
const ALPN_HTTP_1_1: &[u8] = b"\x08http/1.1";
/// How long a fallback's handshake and replay may take.
const TAKE_OVER_TIMEOUT: Duration = Duration::from_secs(10);

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

pub(super) fn read_real(
    session: &Session,
    real_ssl: Ssl,
    out: &mut [u8],
    peek: bool,
) -> Result<usize, c_int> {
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

pub(super) fn write_real(session: &Session, real_ssl: Ssl, input: &[u8]) -> Result<usize, c_int> {
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
    if session.fallback_ended(real_ssl as usize, outcome.is_ok()) {
        return Ok(());
    }
    session.state.lock().last_error = SSL_ERROR_SSL;
    // SAFETY: ours, never handed out.
    unsafe { real::SSL_free(real_ssl) };
    outcome
}

/// Repeats an OpenSSL call that returns 1 on success until it succeeds, waiting for the
/// socket as it asks; any other error ends it (its reasons stay on the error queue).
pub(super) fn drive(
    ssl: Ssl,
    deadline: Instant,
    mut call: impl FnMut() -> c_int,
) -> Result<(), c_int> {
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
