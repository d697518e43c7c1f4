//! The GnuTLS functions our link uses when the process has no OpenSSL: from the
//! `libgnutls.so.30` already loaded (wget's), else the system's, `dlopen`ed with
//! `RTLD_LOCAL` the first time a link is made. Looked up in that library, so never our
//! own `gnutls_*` hooks.
#![allow(non_snake_case)]

use libc::{c_char, c_int, c_uint, c_void, size_t};
use std::ffi::CStr;
use std::sync::atomic::AtomicPtr;

pub type Session = *mut c_void;
pub type Credentials = *mut c_void;
pub type Push = unsafe extern "C-unwind" fn(*mut c_void, *const c_void, size_t) -> isize;
pub type Pull = unsafe extern "C-unwind" fn(*mut c_void, *mut c_void, size_t) -> isize;
pub type PullTimeout = unsafe extern "C-unwind" fn(*mut c_void, c_uint) -> c_int;

/// `gnutls_datum_t`.
#[repr(C)]
pub struct Datum {
    pub data: *mut u8,
    pub size: c_uint,
}

const SONAMES: [&CStr; 1] = [c"libgnutls.so.30"];

super::symbols::functions! {
    /// GnuTLS's functions, resolved once.
    GnuTls;
    fn gnutls_init(*mut Session, c_uint) -> c_int;
    fn gnutls_deinit(Session) -> ();
    fn gnutls_set_default_priority(Session) -> c_int;
    fn gnutls_certificate_allocate_credentials(*mut Credentials) -> c_int;
    fn gnutls_certificate_set_x509_system_trust(Credentials) -> c_int;
    fn gnutls_certificate_set_x509_trust_file(Credentials, *const c_char, c_int) -> c_int;
    fn gnutls_credentials_set(Session, c_int, Credentials) -> c_int;
    fn gnutls_server_name_set(Session, c_uint, *const c_void, size_t) -> c_int;
    fn gnutls_session_set_verify_cert(Session, *const c_char, c_uint) -> ();
    fn gnutls_alpn_set_protocols(Session, *const Datum, c_uint, c_uint) -> c_int;
    fn gnutls_transport_set_ptr(Session, *mut c_void) -> ();
    fn gnutls_transport_set_push_function(Session, Push) -> ();
    fn gnutls_transport_set_pull_function(Session, Pull) -> ();
    fn gnutls_transport_set_pull_timeout_function(Session, PullTimeout) -> ();
    fn gnutls_handshake(Session) -> c_int;
    fn gnutls_record_send(Session, *const c_void, size_t) -> isize;
    fn gnutls_record_recv(Session, *mut c_void, size_t) -> isize;
    fn gnutls_record_check_pending(Session) -> size_t;
    fn gnutls_record_get_direction(Session) -> c_int;
    fn gnutls_error_is_fatal(c_int) -> c_int;
    fn gnutls_strerror(c_int) -> *const c_char;
    fn gnutls_session_get_verify_cert_status(Session) -> c_uint;
    fn gnutls_certificate_verification_status_print(c_uint, c_int, *mut Datum, c_uint) -> c_int;
    fn gnutls_protocol_get_version(Session) -> c_int;
    fn gnutls_protocol_get_name(c_int) -> *const c_char;
    fn gnutls_cipher_get(Session) -> c_int;
    fn gnutls_cipher_get_name(c_int) -> *const c_char;
    fn gnutls_session_is_resumed(Session) -> c_int;
}

/// The process's GnuTLS for our own use, found (or loaded) at the first call; the reason
/// when there is none.
pub fn get() -> Result<&'static GnuTls, &'static str> {
    static FOUND: AtomicPtr<Result<GnuTls, String>> = AtomicPtr::new(std::ptr::null_mut());
    super::symbols::published(&FOUND, || match super::symbols::open_first(&SONAMES) {
        Some((handle, soname)) => GnuTls::resolve(handle, soname),
        None => Err("no GnuTLS library (libgnutls.so.30) could be loaded".into()),
    })
}

/// GnuTLS's `gnutls_free`, a variable holding the deallocator (not a function).
pub fn free(memory: *mut c_void) {
    static FREE: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
    let mut slot = FREE.load(std::sync::atomic::Ordering::Acquire);
    if slot.is_null() {
        let Some((handle, _)) = super::symbols::open_first(&SONAMES) else {
            return;
        };
        // SAFETY: a handle from dlopen and a NUL-terminated name.
        slot = unsafe { libc::dlsym(handle, c"gnutls_free".as_ptr()) };
        if slot.is_null() {
            return;
        }
        FREE.store(slot, std::sync::atomic::Ordering::Release);
    }
    // SAFETY: `gnutls_free` is a `void (*)(void *)` variable; it holds GnuTLS's
    // deallocator for memory GnuTLS gave us.
    unsafe {
        let free = *(slot as *const unsafe extern "C" fn(*mut c_void));
        free(memory);
    }
}
