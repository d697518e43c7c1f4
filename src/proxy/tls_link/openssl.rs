//! The OpenSSL functions our own TLS link to the proxy calls, from the libssl already in
//! the process or, failing that, the system's, `dlopen`ed with `RTLD_LOCAL` the first time
//! a link is made: a process that never asks for TLS to the proxy never loads it, and
//! nothing of it is on the library's load path.
//!
//! Only functions of OpenSSL 1.1.1 and 3.x with one signature in both are used. The
//! library's symbols are versioned, so a second OpenSSL loaded beside the program's (its
//! 1.1 and our 3) binds its own libcrypto, never the other's.
#![allow(non_snake_case)]

use libc::{c_char, c_int, c_long, c_uint, c_ulong, c_void};
use std::ffi::CStr;
use std::sync::atomic::AtomicPtr;

pub type Ctx = *mut c_void;
pub type Ssl = *mut c_void;
pub type Bio = *mut c_void;
pub type BioMethod = *mut c_void;
pub type BioWrite = unsafe extern "C-unwind" fn(Bio, *const c_char, c_int) -> c_int;
pub type BioRead = unsafe extern "C-unwind" fn(Bio, *mut c_char, c_int) -> c_int;
pub type BioCtrl = unsafe extern "C" fn(Bio, c_int, c_long, *mut c_void) -> c_long;
pub type Session = *mut c_void;
pub type NewSession = unsafe extern "C" fn(Ssl, Session) -> c_int;

/// The shared objects tried, in order: one already loaded first (`RTLD_NOLOAD`), then a
/// fresh load of the newest.
const SONAMES: [&CStr; 2] = [c"libssl.so.3", c"libssl.so.1.1"];

super::symbols::functions! {
    /// libssl's and libcrypto's functions, resolved once.
    OpenSsl;
    fn TLS_client_method() -> *const c_void;
    fn SSL_CTX_new(*const c_void) -> Ctx;
    fn SSL_CTX_free(Ctx) -> ();
    fn SSL_CTX_set_verify(Ctx, c_int, *const c_void) -> ();
    fn SSL_CTX_set_default_verify_dir(Ctx) -> c_int;
    fn SSL_CTX_set_default_verify_file(Ctx) -> c_int;
    fn X509_get_default_cert_dir() -> *const c_char;
    fn SSL_CTX_load_verify_locations(Ctx, *const c_char, *const c_char) -> c_int;
    fn SSL_CTX_ctrl(Ctx, c_int, c_long, *mut c_void) -> c_long;
    fn SSL_CTX_sess_set_new_cb(Ctx, NewSession) -> ();
    fn SSL_set_session(Ssl, Session) -> c_int;
    fn SSL_session_reused(Ssl) -> c_int;
    fn SSL_set_shutdown(Ssl, c_int) -> ();
    fn SSL_is_init_finished(Ssl) -> c_int;
    fn SSL_SESSION_free(Session) -> ();
    fn SSL_SESSION_dup(Session) -> Session;
    fn SSL_new(Ctx) -> Ssl;
    fn SSL_free(Ssl) -> ();
    fn SSL_set_bio(Ssl, Bio, Bio) -> ();
    fn SSL_set_connect_state(Ssl) -> ();
    fn SSL_do_handshake(Ssl) -> c_int;
    fn SSL_read(Ssl, *mut c_void, c_int) -> c_int;
    fn SSL_peek(Ssl, *mut c_void, c_int) -> c_int;
    fn SSL_pending(Ssl) -> c_int;
    fn SSL_version(Ssl) -> c_int;
    fn SSL_write(Ssl, *const c_void, c_int) -> c_int;
    fn SSL_get_error(Ssl, c_int) -> c_int;
    fn SSL_get_verify_result(Ssl) -> c_long;
    fn SSL_set1_host(Ssl, *const c_char) -> c_int;
    fn SSL_get0_param(Ssl) -> *mut c_void;
    fn SSL_ctrl(Ssl, c_int, c_long, *mut c_void) -> c_long;
    fn SSL_set_alpn_protos(Ssl, *const u8, c_uint) -> c_int;
    fn SSL_get_version(Ssl) -> *const c_char;
    fn SSL_get_current_cipher(Ssl) -> *const c_void;
    fn SSL_CIPHER_get_name(*const c_void) -> *const c_char;
    fn X509_VERIFY_PARAM_set1_ip_asc(*mut c_void, *const c_char) -> c_int;
    fn X509_verify_cert_error_string(c_long) -> *const c_char;
    fn ERR_get_error() -> c_ulong;
    fn ERR_reason_error_string(c_ulong) -> *const c_char;
    fn ERR_clear_error() -> ();
    fn BIO_get_new_index() -> c_int;
    fn BIO_meth_new(c_int, *const c_char) -> BioMethod;
    fn BIO_meth_set_write(BioMethod, BioWrite) -> c_int;
    fn BIO_meth_set_read(BioMethod, BioRead) -> c_int;
    fn BIO_meth_set_ctrl(BioMethod, BioCtrl) -> c_int;
    fn BIO_new(BioMethod) -> Bio;
    fn BIO_set_data(Bio, *mut c_void) -> ();
    fn BIO_get_data(Bio) -> *mut c_void;
    fn BIO_set_init(Bio, c_int) -> ();
    fn BIO_set_flags(Bio, c_int) -> ();
    fn BIO_clear_flags(Bio, c_int) -> ();
}

/// The process's OpenSSL for our own use, found (or loaded) at the first call; the reason
/// when there is none.
pub fn get() -> Result<&'static OpenSsl, &'static str> {
    static FOUND: AtomicPtr<Result<OpenSsl, String>> = AtomicPtr::new(std::ptr::null_mut());
    super::symbols::published(&FOUND, || match super::symbols::open_first(&SONAMES) {
        Some((handle, soname)) => OpenSsl::resolve(handle, soname),
        None => Err("no OpenSSL library (libssl.so.3 or libssl.so.1.1) could be loaded".into()),
    })
}
