//! OpenSSL's session functions (libssl 1.1 and 3). Our unversioned names also catch
//! callers bound to `SSL_read@OPENSSL_3.0.0`. A call on a session we did not make virtual
//! is one atomic load (no virtual session in the process) and libssl's own function;
//! libssl calls some of these itself (SSL_connect -> SSL_do_handshake), which is why a
//! virtual session is always checked first. No hook holds our re-entry guard while it
//! moves plaintext: those bytes must meet our socket hooks.
#![allow(non_snake_case)]

use crate::guard::shielded;
use crate::tls::openssl::{self as tls, real, Ssl};
use libc::{c_int, c_long, c_uint, c_void, size_t};

#[path = "openssl_lifetime.rs"]
mod lifetime;

type X509 = *mut c_void;

/// `$virtual` for a virtual session, else `$real`. Panics in our part are caught: the
/// call then fails as the library's own would.
/// After a fallback the real session on the same socket answers (`$real` with `$ssl`
/// rebound to it).
macro_rules! on_session {
    ($ssl:ident, $real:expr, |$session:ident| $virtual:expr, else $failed:expr) => {{
        if !crate::tls::sessions::any() {
            // The path of every program without a virtual session: one load, then the
            // library's own function.
            // SAFETY: the program's own arguments, to the library's own function.
            return unsafe { $real };
        }
        crate::tls::off_the_fast_path(move || match crate::tls::openssl::virtual_session($ssl) {
            // SAFETY: as above.
            None => unsafe { $real },
            Some($session) => match tls::fallback(&$session) {
                Some(fallback) => {
                    let _inside = crate::guard::Reentry::enter();
                    #[allow(unused_variables)]
                    let $ssl = fallback;
                    // SAFETY: the program's arguments, with our live real session.
                    unsafe { $real }
                }
                None => super::answer_keeping_errno(
                    || shielded(|| $virtual, || $failed),
                    |result| is_value(result, &$failed),
                ),
            },
        })
    }};
}

/// `on_session!` for the calls that move plaintext (read, peek, write): `$virtual` also
/// after a fallback, where it drives the real session itself and shows the connection
/// layer the plaintext (each request is routed when it is sent, `tls::openssl::follow`).
macro_rules! on_session_followed {
    ($ssl:ident, $real:expr, |$session:ident| $virtual:expr, else $failed:expr) => {{
        if !crate::tls::sessions::any() {
            // SAFETY: the program's own arguments, to the library's own function.
            return unsafe { $real };
        }
        crate::tls::off_the_fast_path(move || match crate::tls::openssl::virtual_session($ssl) {
            // SAFETY: as above.
            None => unsafe { $real },
            Some($session) => super::answer_keeping_errno(
                || shielded(|| $virtual, || $failed),
                |result| is_value(result, &$failed),
            ),
        })
    }};
}

/// Whether a session call's answer is its failure value (`else` in `on_session!`).
fn is_value<R: PartialEq>(answer: &R, failed: &R) -> bool {
    answer == failed
}

/// # Safety
/// As SSL_connect(3).
#[no_mangle]
pub unsafe extern "C-unwind" fn SSL_connect(ssl: Ssl) -> c_int {
    if !crate::tls::sessions::any() && !crate::conn::fdtable::any_tracked() {
        // SAFETY: the program's own argument.
        return unsafe { real::SSL_connect(ssl) };
    }
    // SAFETY: the program's own argument, throughout.
    super::answer_keeping_errno(
        || shielded(|| tls::handshake(ssl, || real::SSL_connect(ssl)), || -1),
        |result| *result != 1,
    )
}

/// # Safety
/// As SSL_do_handshake(3).
#[no_mangle]
pub unsafe extern "C-unwind" fn SSL_do_handshake(ssl: Ssl) -> c_int {
    if !crate::tls::sessions::any() && !crate::conn::fdtable::any_tracked() {
        // SAFETY: the program's own argument.
        return unsafe { real::SSL_do_handshake(ssl) };
    }
    // SAFETY: the program's own argument, throughout.
    super::answer_keeping_errno(
        || {
            shielded(
                || tls::handshake(ssl, || real::SSL_do_handshake(ssl)),
                || -1,
            )
        },
        |result| *result != 1,
    )
}

/// # Safety
/// As SSL_read(3).
#[no_mangle]
pub unsafe extern "C-unwind" fn SSL_read(ssl: Ssl, buf: *mut c_void, num: c_int) -> c_int {
    on_session_followed!(
        ssl,
        real::SSL_read(ssl, buf, num),
        |session| {
            // SAFETY: the program gives `num` writable bytes at `buf`.
            let out = unsafe { std::slice::from_raw_parts_mut(buf.cast(), num.max(0) as usize) };
            // SAFETY: the program's live session.
            classic_result(unsafe { tls::read(&session, ssl, out, false) })
        },
        else -1
    )
}

/// # Safety
/// As SSL_read_ex(3).
#[no_mangle]
pub unsafe extern "C-unwind" fn SSL_read_ex(
    ssl: Ssl,
    buf: *mut c_void,
    num: size_t,
    read: *mut size_t,
) -> c_int {
    on_session_followed!(ssl, real::SSL_read_ex(ssl, buf, num, read), |session| {
        // SAFETY: the program gives `num` writable bytes at `buf`, and `read`.
        let out = unsafe { std::slice::from_raw_parts_mut(buf.cast(), num) };
        // SAFETY: the program's live session.
        ex_result(unsafe { tls::read(&session, ssl, out, false) }, read)
    }, else 0)
}

/// # Safety
/// As SSL_peek(3).
#[no_mangle]
pub unsafe extern "C-unwind" fn SSL_peek(ssl: Ssl, buf: *mut c_void, num: c_int) -> c_int {
    on_session_followed!(
        ssl,
        real::SSL_peek(ssl, buf, num),
        |session| {
            // SAFETY: the program gives `num` writable bytes at `buf`.
            let out = unsafe { std::slice::from_raw_parts_mut(buf.cast(), num.max(0) as usize) };
            // SAFETY: the program's live session.
            classic_result(unsafe { tls::read(&session, ssl, out, true) })
        },
        else -1
    )
}

/// # Safety
/// As SSL_peek_ex(3).
#[no_mangle]
pub unsafe extern "C-unwind" fn SSL_peek_ex(
    ssl: Ssl,
    buf: *mut c_void,
    num: size_t,
    read: *mut size_t,
) -> c_int {
    on_session_followed!(ssl, real::SSL_peek_ex(ssl, buf, num, read), |session| {
        // SAFETY: the program gives `num` writable bytes at `buf`, and `read`.
        let out = unsafe { std::slice::from_raw_parts_mut(buf.cast(), num) };
        // SAFETY: the program's live session.
        ex_result(unsafe { tls::read(&session, ssl, out, true) }, read)
    }, else 0)
}

/// # Safety
/// As SSL_write(3).
#[no_mangle]
pub unsafe extern "C-unwind" fn SSL_write(ssl: Ssl, buf: *const c_void, num: c_int) -> c_int {
    on_session_followed!(
        ssl,
        real::SSL_write(ssl, buf, num),
        |session| {
            // SAFETY: the program gives `num` readable bytes at `buf`.
            let input = unsafe { std::slice::from_raw_parts(buf.cast(), num.max(0) as usize) };
            // SAFETY: the program's live session.
            unsafe { tls::write(&session, ssl, input) }.map_or(-1, |n| n as c_int)
        },
        else -1
    )
}

/// # Safety
/// As SSL_write_ex(3).
#[no_mangle]
pub unsafe extern "C-unwind" fn SSL_write_ex(
    ssl: Ssl,
    buf: *const c_void,
    num: size_t,
    written: *mut size_t,
) -> c_int {
    on_session_followed!(ssl, real::SSL_write_ex(ssl, buf, num, written), |session| {
        // SAFETY: the program gives `num` readable bytes at `buf`, and `written`.
        let input = unsafe { std::slice::from_raw_parts(buf.cast(), num) };
        // SAFETY: the program's live session.
        ex_result(unsafe { tls::write(&session, ssl, input) }, written)
    }, else 0)
}

/// The SSL_read convention: the count, 0 for a clean close (some wrappers, Net::SSLeay
/// among them, take the error code alone as the verdict), else -1.
fn classic_result(result: Result<usize, c_int>) -> c_int {
    match result {
        Ok(count) => count as c_int,
        Err(tls::SSL_ERROR_ZERO_RETURN) => 0,
        Err(_) => -1,
    }
}

/// The `_ex` convention: 1 and the count, or 0.
fn ex_result(result: Result<usize, c_int>, count: *mut size_t) -> c_int {
    let done = result.unwrap_or(0);
    if !count.is_null() {
        // SAFETY: the program's out-parameter.
        unsafe { *count = done };
    }
    result.is_ok() as c_int
}

/// # Safety
/// As SSL_get_error(3).
#[no_mangle]
pub unsafe extern "C-unwind" fn SSL_get_error(ssl: Ssl, ret: c_int) -> c_int {
    on_session!(ssl, real::SSL_get_error(ssl, ret), |session| tls::last_error(&session, ret), else 5)
}

/// # Safety
/// As SSL_pending(3).
#[no_mangle]
pub unsafe extern "C-unwind" fn SSL_pending(ssl: Ssl) -> c_int {
    on_session!(ssl, real::SSL_pending(ssl), |session| tls::pending(&session), else 0)
}

/// # Safety
/// As SSL_has_pending(3).
#[no_mangle]
pub unsafe extern "C-unwind" fn SSL_has_pending(ssl: Ssl) -> c_int {
    on_session!(ssl, real::SSL_has_pending(ssl), |session| (tls::pending(&session) > 0) as c_int, else 0)
}

/// # Safety
/// As SSL_shutdown(3).
#[no_mangle]
pub unsafe extern "C-unwind" fn SSL_shutdown(ssl: Ssl) -> c_int {
    on_session!(
        ssl,
        real::SSL_shutdown(ssl),
        |session| tls::shutdown(&session),
        else -1
    )
}

/// # Safety
/// As SSL_get_shutdown(3).
#[no_mangle]
pub unsafe extern "C-unwind" fn SSL_get_shutdown(ssl: Ssl) -> c_int {
    on_session!(ssl, real::SSL_get_shutdown(ssl), |session| tls::shutdown_state(&session), else 0)
}

/// # Safety
/// As SSL_is_init_finished(3).
#[no_mangle]
pub unsafe extern "C-unwind" fn SSL_is_init_finished(ssl: Ssl) -> c_int {
    on_session!(ssl, real::SSL_is_init_finished(ssl), |_session| 1, else 0)
}

/// # Safety
/// As SSL_in_init(3).
#[no_mangle]
pub unsafe extern "C-unwind" fn SSL_in_init(ssl: Ssl) -> c_int {
    on_session!(ssl, real::SSL_in_init(ssl), |_session| 0, else 1)
}

/// # Safety
/// As SSL_in_before(3).
#[no_mangle]
pub unsafe extern "C-unwind" fn SSL_in_before(ssl: Ssl) -> c_int {
    on_session!(ssl, real::SSL_in_before(ssl), |_session| 0, else 1)
}

/// # Safety
/// As SSL_get_state(3).
#[no_mangle]
pub unsafe extern "C-unwind" fn SSL_get_state(ssl: Ssl) -> c_int {
    on_session!(ssl, real::SSL_get_state(ssl), |_session| tls::TLS_ST_OK, else 0)
}

/// # Safety
/// As SSL_get_verify_result(3).
#[no_mangle]
pub unsafe extern "C-unwind" fn SSL_get_verify_result(ssl: Ssl) -> c_long {
    on_session!(ssl, real::SSL_get_verify_result(ssl), |_session| tls::X509_V_OK, else 1)
}

/// # Safety
/// As SSL_get0_alpn_selected(3).
#[no_mangle]
pub unsafe extern "C-unwind" fn SSL_get0_alpn_selected(
    ssl: Ssl,
    data: *mut *const u8,
    len: *mut c_uint,
) {
    on_session!(
        ssl,
        real::SSL_get0_alpn_selected(ssl, data, len),
        |_session| {
            // No ALPN: every client then speaks HTTP/1.1, which the proxy and our engine read.
            // SAFETY: the program's out-parameters.
            unsafe {
                if !data.is_null() {
                    *data = std::ptr::null();
                }
                if !len.is_null() {
                    *len = 0;
                }
            }
        },
        else ()
    )
}

/// # Safety
/// As SSL_get1_peer_certificate(3).
#[no_mangle]
pub unsafe extern "C-unwind" fn SSL_get1_peer_certificate(ssl: Ssl) -> X509 {
    on_session!(ssl, real::SSL_get1_peer_certificate(ssl), |session| tls::new_peer_certificate(&session), else std::ptr::null_mut())
}

/// # Safety
/// As SSL_get_peer_certificate(3) (OpenSSL 1.1).
#[no_mangle]
pub unsafe extern "C-unwind" fn SSL_get_peer_certificate(ssl: Ssl) -> X509 {
    on_session!(ssl, real::SSL_get_peer_certificate(ssl), |session| tls::new_peer_certificate(&session), else std::ptr::null_mut())
}

/// # Safety
/// As SSL_get0_peer_certificate(3).
#[no_mangle]
pub unsafe extern "C-unwind" fn SSL_get0_peer_certificate(ssl: Ssl) -> X509 {
    on_session!(ssl, real::SSL_get0_peer_certificate(ssl), |session| tls::kept_peer_certificate(&session), else std::ptr::null_mut())
}

/// # Safety
/// As SSL_get_peer_cert_chain(3).
#[no_mangle]
pub unsafe extern "C-unwind" fn SSL_get_peer_cert_chain(ssl: Ssl) -> *mut c_void {
    on_session!(ssl, real::SSL_get_peer_cert_chain(ssl), |_session| std::ptr::null_mut(), else std::ptr::null_mut())
}

/// # Safety
/// As SSL_get_current_cipher(3).
#[no_mangle]
pub unsafe extern "C-unwind" fn SSL_get_current_cipher(ssl: Ssl) -> *const c_void {
    // SAFETY: the program's live session.
    on_session!(ssl, real::SSL_get_current_cipher(ssl), |_session| unsafe { tls::nominal_cipher(ssl) }, else std::ptr::null())
}

/// # Safety
/// As SSL_get_ex_data(3).
#[no_mangle]
pub unsafe extern "C-unwind" fn SSL_get_ex_data(ssl: Ssl, index: c_int) -> *mut c_void {
    if !crate::tls::sessions::any() {
        // SAFETY: the program's own arguments.
        return unsafe { real::SSL_get_ex_data(ssl, index) };
    }
    // SAFETY: as above.
    super::answer_keeping_errno(
        || {
            shielded(
                // SAFETY: as above.
                || unsafe { tls::ex_data(ssl, index) },
                // SAFETY: as above.
                || unsafe { real::SSL_get_ex_data(ssl, index) },
            )
        },
        |_| false,
    )
}

/// # Safety
/// As SSL_session_reused(3).
#[no_mangle]
pub unsafe extern "C-unwind" fn SSL_session_reused(ssl: Ssl) -> c_int {
    on_session!(ssl, real::SSL_session_reused(ssl), |_session| 0, else 0)
}
