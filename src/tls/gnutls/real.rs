//! GnuTLS's own functions, found in the library the program loaded.
#![allow(non_snake_case, clippy::unused_unit)]

use super::GnutlsSession;
use crate::tls::library::Library;
use crate::tls::real_in;
use crate::tls::sessions::GnutlsDatum;
use libc::{c_int, c_uint, c_void, size_t};

real_in! { Library::GnuTls;
    fn gnutls_handshake(session: GnutlsSession) -> c_int, else -1;
    fn gnutls_record_send(session: GnutlsSession, data: *const c_void, len: size_t) -> isize, else -1;
    fn gnutls_record_recv(session: GnutlsSession, data: *mut c_void, len: size_t) -> isize, else -1;
    fn gnutls_record_check_pending(session: GnutlsSession) -> size_t, else 0;
    fn gnutls_record_set_timeout(session: GnutlsSession, ms: c_uint) -> (), else ();
    fn gnutls_record_get_direction(session: GnutlsSession) -> c_int, else 0;
    fn gnutls_bye(session: GnutlsSession, how: c_int) -> c_int, else -1;
    fn gnutls_deinit(session: GnutlsSession) -> (), else ();
    fn gnutls_transport_get_int(session: GnutlsSession) -> c_int, else -1;
    fn gnutls_certificate_verify_peers2(session: GnutlsSession, status: *mut c_uint) -> c_int, else -1;
    fn gnutls_certificate_verify_peers3(session: GnutlsSession, host: *const libc::c_char, status: *mut c_uint) -> c_int, else -1;
    fn gnutls_certificate_get_peers(session: GnutlsSession, count: *mut c_uint) -> *const GnutlsDatum, else std::ptr::null();
    fn gnutls_certificate_type_get(session: GnutlsSession) -> c_int, else 0;
    fn gnutls_alpn_get_selected_protocol(session: GnutlsSession, protocol: *mut GnutlsDatum) -> c_int, else -1;
    fn gnutls_session_is_resumed(session: GnutlsSession) -> c_int, else 0;
    fn gnutls_session_get_data(session: GnutlsSession, data: *mut c_void, size: *mut size_t) -> c_int, else -1;
    fn gnutls_session_get_data2(session: GnutlsSession, data: *mut GnutlsDatum) -> c_int, else -1;
    fn gnutls_session_key_update(session: GnutlsSession, flags: c_uint) -> c_int, else -1;
    fn gnutls_session_get_desc(session: GnutlsSession) -> *mut libc::c_char, else std::ptr::null_mut();
    fn gnutls_init(session: *mut GnutlsSession, flags: c_uint) -> c_int, else -1;
    fn gnutls_credentials_get(session: GnutlsSession, kind: c_int, cred: *mut *mut c_void) -> c_int, else -1;
    fn gnutls_credentials_set(session: GnutlsSession, kind: c_int, cred: *mut c_void) -> c_int, else -1;
    fn gnutls_set_default_priority(session: GnutlsSession) -> c_int, else -1;
    fn gnutls_server_name_set(session: GnutlsSession, kind: c_uint, name: *const c_void, len: size_t) -> c_int, else -1;
    fn gnutls_session_set_verify_cert(session: GnutlsSession, host: *const libc::c_char, flags: c_uint) -> (), else ();
    fn gnutls_alpn_set_protocols(session: GnutlsSession, protocols: *const GnutlsDatum, count: c_uint, flags: c_uint) -> c_int, else -1;
    fn gnutls_transport_set_int2(session: GnutlsSession, receive: c_int, send: c_int) -> (), else ();
    fn gnutls_certificate_allocate_credentials(credentials: *mut *mut c_void) -> c_int, else -1;
    fn gnutls_certificate_free_credentials(credentials: *mut c_void) -> (), else ();
    fn gnutls_error_is_fatal(error: c_int) -> c_int, else 1;
}
