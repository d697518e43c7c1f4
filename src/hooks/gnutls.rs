//! GnuTLS's session functions. As for OpenSSL (`hooks::openssl`): a session we did not
//! make virtual costs one atomic load and GnuTLS's own function.
#![allow(non_snake_case)]

use crate::guard::shielded;
use crate::tls::gnutls::{self as tls, real, GnutlsSession};
use crate::tls::sessions::GnutlsDatum;
use libc::{c_char, c_int, c_uint, c_void, size_t};

/// After a fallback the real session on the same socket answers (`$real` with `$session`
/// rebound to it).
macro_rules! on_session {
    ($session:ident, $real:expr, |$virtual_session:ident| $virtual:expr, else $failed:expr) => {{
        if !crate::tls::sessions::any() {
            // The path of every program without a virtual session: one load, then the
            // library's own function.
            // SAFETY: the program's own arguments, to the library's own function.
            return unsafe { $real };
        }
        crate::tls::off_the_fast_path(
            move || match crate::tls::gnutls::virtual_session($session) {
                None => $real,
                Some($virtual_session) => match tls::fallback(&$virtual_session) {
                    Some(fallback) => {
                        let _inside = crate::guard::Reentry::enter();
                        #[allow(unused_variables)]
                        let $session = fallback;
                        $real
                    }
                    None => super::answer_keeping_errno(
                        || shielded(|| $virtual, || $failed),
                        Failed::failed,
                    ),
                },
            },
        )
    }};
}

/// `on_session!` for the calls that move plaintext (send, recv): `$virtual` also after
/// a fallback, where it drives the real session itself and shows the connection layer
/// the plaintext (each request is routed when it is sent, `tls::gnutls::follow`).
macro_rules! on_session_followed {
    ($session:ident, $real:expr, |$virtual_session:ident| $virtual:expr, else $failed:expr) => {{
        if !crate::tls::sessions::any() {
            // SAFETY: the program's own arguments, to the library's own function.
            return unsafe { $real };
        }
        crate::tls::off_the_fast_path(
            move || match crate::tls::gnutls::virtual_session($session) {
                None => $real,
                Some($virtual_session) => super::answer_keeping_errno(
                    || shielded(|| $virtual, || $failed),
                    Failed::failed,
                ),
            },
        )
    }};
}

/// GnuTLS's failure convention, under which a program may read errno: a negative code,
/// a null pointer.
trait Failed {
    fn failed(&self) -> bool;
}

impl Failed for c_int {
    fn failed(&self) -> bool {
        *self < 0
    }
}

impl Failed for isize {
    fn failed(&self) -> bool {
        *self < 0
    }
}

impl Failed for size_t {
    fn failed(&self) -> bool {
        false
    }
}

impl Failed for () {
    fn failed(&self) -> bool {
        false
    }
}

impl<T> Failed for *const T {
    fn failed(&self) -> bool {
        self.is_null()
    }
}

impl<T> Failed for *mut T {
    fn failed(&self) -> bool {
        self.is_null()
    }
}

/// # Safety
/// As gnutls_handshake(3).
#[no_mangle]
pub unsafe extern "C-unwind" fn gnutls_handshake(session: GnutlsSession) -> c_int {
    if !crate::tls::sessions::any() && !crate::conn::fdtable::any_tracked() {
        // SAFETY: the program's own argument.
        return unsafe { real::gnutls_handshake(session) };
    }
    // SAFETY: the program's own argument, throughout.
    super::answer_keeping_errno(
        || {
            shielded(
                || tls::handshake(session, || real::gnutls_handshake(session)),
                || -1,
            )
        },
        |result| *result != 0,
    )
}

/// # Safety
/// As gnutls_record_send(3).
#[no_mangle]
pub unsafe extern "C-unwind" fn gnutls_record_send(
    session: GnutlsSession,
    data: *const c_void,
    len: size_t,
) -> isize {
    on_session_followed!(
        session,
        real::gnutls_record_send(session, data, len),
        |s| {
            tls::send(
                &s,
                // SAFETY: the program gives `len` readable bytes at `data`.
                unsafe { std::slice::from_raw_parts(data.cast(), len) },
                super::program_send,
            )
        },
        else -1
    )
}

/// # Safety
/// As gnutls_record_recv(3).
#[no_mangle]
pub unsafe extern "C-unwind" fn gnutls_record_recv(
    session: GnutlsSession,
    data: *mut c_void,
    len: size_t,
) -> isize {
    on_session_followed!(
        session,
        real::gnutls_record_recv(session, data, len),
        |s| {
            tls::recv(
                &s,
                // SAFETY: the program gives `len` writable bytes at `data`.
                unsafe { std::slice::from_raw_parts_mut(data.cast(), len) },
                tls::record_timeout::limit(session),
                super::program_recv,
            )
        },
        else -1
    )
}

/// Noted (`tls::gnutls::record_timeout`) for a session that becomes virtual later: GnuTLS
/// keeps it where it cannot be read back.
///
/// # Safety
/// As gnutls_record_set_timeout(3).
#[no_mangle]
pub unsafe extern "C-unwind" fn gnutls_record_set_timeout(session: GnutlsSession, ms: c_uint) {
    super::answer_keeping_errno(
        || shielded(|| tls::record_timeout::note(session, ms), || ()),
        |_| false,
    );
    // SAFETY: the program's own arguments.
    unsafe { real::gnutls_record_set_timeout(session, ms) }
}

/// Noted (`tls::gnutls::server_names`): GnuTLS gives a client session's name back to no
/// one, and a virtual session's certificate must carry it.
///
/// # Safety
/// As gnutls_server_name_set(3).
#[no_mangle]
pub unsafe extern "C-unwind" fn gnutls_server_name_set(
    session: GnutlsSession,
    kind: c_uint,
    name: *const c_void,
    len: size_t,
) -> c_int {
    // SAFETY: the program's own arguments.
    let result = unsafe { real::gnutls_server_name_set(session, kind, name, len) };
    // A process that diverts nothing never makes a session virtual: nothing to note.
    let diverting = crate::conn::fdtable::any_tracked();
    if result == 0 && diverting && kind == GNUTLS_NAME_DNS && !name.is_null() {
        // SAFETY: gnutls_server_name_set(3)'s contract: `len` readable bytes at `name`.
        let bytes = unsafe { std::slice::from_raw_parts(name.cast::<u8>(), len) };
        let noted = || {
            let text = String::from_utf8_lossy(bytes);
            tls::server_names::note(session, text.trim_end_matches('\0').to_string());
        };
        super::answer_keeping_errno(|| shielded(noted, || ()), |_| false);
    }
    result
}

/// GnuTLS's `GNUTLS_NAME_DNS`.
const GNUTLS_NAME_DNS: c_uint = 1;

/// # Safety
/// As gnutls_record_check_pending(3).
#[no_mangle]
pub unsafe extern "C-unwind" fn gnutls_record_check_pending(session: GnutlsSession) -> size_t {
    on_session!(session, real::gnutls_record_check_pending(session), |_s| 0, else 0)
}

/// # Safety
/// As gnutls_record_get_direction(3).
#[no_mangle]
pub unsafe extern "C-unwind" fn gnutls_record_get_direction(session: GnutlsSession) -> c_int {
    on_session!(session, real::gnutls_record_get_direction(session), |s| tls::direction(&s), else 0)
}

/// # Safety
/// As gnutls_bye(3).
#[no_mangle]
pub unsafe extern "C-unwind" fn gnutls_bye(session: GnutlsSession, how: c_int) -> c_int {
    on_session!(session, real::gnutls_bye(session, how), |_s| 0, else 0)
}

/// # Safety
/// As gnutls_deinit(3).
#[no_mangle]
pub unsafe extern "C-unwind" fn gnutls_deinit(session: GnutlsSession) {
    if tls::virtual_session(session).is_some() {
        super::answer_keeping_errno(|| shielded(|| tls::forget(session), || ()), |_| false);
    }
    tls::record_timeout::forget(session);
    tls::server_names::forget(session);
    // SAFETY: the program's own argument.
    unsafe { real::gnutls_deinit(session) }
}

/// # Safety
/// As gnutls_certificate_verify_peers2(3).
#[no_mangle]
pub unsafe extern "C-unwind" fn gnutls_certificate_verify_peers2(
    session: GnutlsSession,
    status: *mut c_uint,
) -> c_int {
    on_session!(
        session,
        real::gnutls_certificate_verify_peers2(session, status),
        |_s| verified(status),
        else -1
    )
}

/// # Safety
/// As gnutls_certificate_verify_peers3(3).
#[no_mangle]
pub unsafe extern "C-unwind" fn gnutls_certificate_verify_peers3(
    session: GnutlsSession,
    host: *const c_char,
    status: *mut c_uint,
) -> c_int {
    on_session!(
        session,
        real::gnutls_certificate_verify_peers3(session, host, status),
        |_s| verified(status),
        else -1
    )
}

fn verified(status: *mut c_uint) -> c_int {
    if !status.is_null() {
        // SAFETY: the program's out-parameter.
        unsafe { *status = 0 };
    }
    0
}

/// # Safety
/// As gnutls_certificate_get_peers(3).
#[no_mangle]
pub unsafe extern "C-unwind" fn gnutls_certificate_get_peers(
    session: GnutlsSession,
    count: *mut c_uint,
) -> *const GnutlsDatum {
    // SAFETY: the program's live session.
    on_session!(session, real::gnutls_certificate_get_peers(session, count), |s| unsafe { tls::peers(&s, count) }, else std::ptr::null())
}

/// # Safety
/// As gnutls_certificate_type_get(3).
#[no_mangle]
pub unsafe extern "C-unwind" fn gnutls_certificate_type_get(session: GnutlsSession) -> c_int {
    on_session!(session, real::gnutls_certificate_type_get(session), |_s| tls::GNUTLS_CRT_X509, else 0)
}

/// # Safety
/// As gnutls_alpn_get_selected_protocol(3).
#[no_mangle]
pub unsafe extern "C-unwind" fn gnutls_alpn_get_selected_protocol(
    session: GnutlsSession,
    protocol: *mut GnutlsDatum,
) -> c_int {
    on_session!(
        session,
        real::gnutls_alpn_get_selected_protocol(session, protocol),
        |_s| tls::GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE,
        else -1
    )
}

/// # Safety
/// As gnutls_session_is_resumed(3).
#[no_mangle]
pub unsafe extern "C-unwind" fn gnutls_session_is_resumed(session: GnutlsSession) -> c_int {
    on_session!(session, real::gnutls_session_is_resumed(session), |_s| 0, else 0)
}

/// # Safety
/// As gnutls_session_get_data(3). A virtual session has no data to resume with (and the
/// real call, on a TLS 1.3 session, would read the socket for a ticket: the proxy's
/// plaintext, taken as a record).
#[no_mangle]
pub unsafe extern "C-unwind" fn gnutls_session_get_data(
    session: GnutlsSession,
    data: *mut c_void,
    size: *mut size_t,
) -> c_int {
    on_session!(
        session,
        real::gnutls_session_get_data(session, data, size),
        |_s| tls::GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE,
        else -1
    )
}

/// # Safety
/// As gnutls_session_get_data2(3); see `gnutls_session_get_data`.
#[no_mangle]
pub unsafe extern "C-unwind" fn gnutls_session_get_data2(
    session: GnutlsSession,
    data: *mut GnutlsDatum,
) -> c_int {
    on_session!(
        session,
        real::gnutls_session_get_data2(session, data),
        |_s| tls::GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE,
        else -1
    )
}

/// # Safety
/// As gnutls_session_key_update(3). A virtual session has no keys: done (the real call
/// answered GNUTLS_E_AGAIN for ever, and a program's retry loop spun).
#[no_mangle]
pub unsafe extern "C-unwind" fn gnutls_session_key_update(
    session: GnutlsSession,
    flags: c_uint,
) -> c_int {
    on_session!(session, real::gnutls_session_key_update(session, flags), |_s| 0, else -1)
}

/// # Safety
/// As gnutls_session_get_desc(3). GnuTLS's own answer for a virtual session, which made no
/// handshake, is NULL (a program passing it to `strlen` would crash): this one says what
/// the session is. The program frees it with `gnutls_free` (GnuTLS's default: `free`).
#[no_mangle]
pub unsafe extern "C-unwind" fn gnutls_session_get_desc(session: GnutlsSession) -> *mut c_char {
    on_session!(
        session,
        real::gnutls_session_get_desc(session),
        |_s| malloc_copy(c"(TLS1.3)-(virtual session through Lunar Proxy)"),
        else std::ptr::null_mut()
    )
}

/// A copy of `text` in memory from malloc(3), the caller's to free. (malloc, not strdup:
/// the standard library imports malloc already, and every other import is one more
/// symbol looked up at each process start.)
fn malloc_copy(text: &std::ffi::CStr) -> *mut c_char {
    let bytes = text.to_bytes_with_nul();
    // SAFETY: malloc(3) of the string's size.
    let copy = unsafe { libc::malloc(bytes.len()) }.cast::<u8>();
    if !copy.is_null() {
        // SAFETY: `copy` has room for `bytes`, which it does not overlap.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), copy, bytes.len()) };
    }
    copy.cast()
}
