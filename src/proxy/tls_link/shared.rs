//! What every link of the process shares: one client context (made at the first link:
//! loading the system's CA store costs milliseconds, far more than a handshake) and the
//! latest session the proxy gave us, offered for resumption by the next link, so that a
//! new connection to the proxy skips the certificate exchange.
//!
//! Both are published without a once-cell (see `openssl::get`): a context made by two
//! racing threads keeps the first; the session slot is a `SpinLock`, reopened in a forked
//! child.

use super::openssl::{Ctx, OpenSsl, Session, Ssl};
use crate::sync::SpinLock;
use libc::c_int;
use std::ffi::CString;
use std::sync::atomic::{AtomicPtr, Ordering};

const SSL_VERIFY_PEER: c_int = 1;
const SSL_CTRL_SET_SESS_CACHE_MODE: c_int = 44;
/// Sessions are kept by the client side only, and handed to our callback.
const SSL_SESS_CACHE_CLIENT: libc::c_long = 0x1;

/// The process's client context for the proxy (never freed: sessions made from it hold
/// references).
pub fn context(api: &'static OpenSsl, ca_file: Option<&str>) -> Result<Ctx, String> {
    static CONTEXT: AtomicPtr<libc::c_void> = AtomicPtr::new(std::ptr::null_mut());
    let known = CONTEXT.load(Ordering::Acquire);
    if !known.is_null() {
        return Ok(known);
    }
    let fresh = new_context(api, ca_file)?;
    match CONTEXT.compare_exchange(
        std::ptr::null_mut(),
        fresh,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        Ok(_) => Ok(fresh),
        Err(first) => {
            // SAFETY: ours, never shared.
            unsafe { (api.SSL_CTX_free)(fresh) };
            Ok(first)
        }
    }
}

/// A client context that verifies the peer against the system's store and `ca_file`, and
/// hands each new session to `remember`.
fn new_context(api: &OpenSsl, ca_file: Option<&str>) -> Result<Ctx, String> {
    // SAFETY: plain OpenSSL calls on a context of ours.
    unsafe {
        let ctx = (api.SSL_CTX_new)((api.TLS_client_method)());
        if ctx.is_null() {
            return Err(format!("TLS: {} cannot make a context", api.soname));
        }
        (api.SSL_CTX_set_verify)(ctx, SSL_VERIFY_PEER, std::ptr::null());
        // The system's store as a hashed directory, read certificate by certificate when
        // a chain needs one; its bundle file takes 25 ms to parse, for every process.
        (api.SSL_CTX_set_default_verify_dir)(ctx);
        if !has_hashed_certificates(&default_cert_dir(api)) {
            (api.SSL_CTX_set_default_verify_file)(ctx);
        }
        if let Some(file) = ca_file {
            let loaded = CString::new(file).is_ok_and(|path| {
                (api.SSL_CTX_load_verify_locations)(ctx, path.as_ptr(), std::ptr::null()) == 1
            });
            (api.ERR_clear_error)();
            if !loaded {
                log::warn!(
                    "LUNAR_PROXY_CA_FILE={file} cannot be read as PEM certificates; the proxy is verified against the system's CA store only"
                );
            }
        }
        (api.SSL_CTX_ctrl)(
            ctx,
            SSL_CTRL_SET_SESS_CACHE_MODE,
            SSL_SESS_CACHE_CLIENT,
            std::ptr::null_mut(),
        );
        (api.SSL_CTX_sess_set_new_cb)(ctx, remember);
        Ok(ctx)
    }
}

/// OpenSSL's built-in certificate directory (`/usr/lib/ssl/certs` on Debian).
fn default_cert_dir(api: &OpenSsl) -> String {
    // SAFETY: OpenSSL's static string.
    let dir = unsafe { (api.X509_get_default_cert_dir)() };
    match dir.is_null() {
        true => String::new(),
        // SAFETY: a NUL-terminated static string.
        false => unsafe { std::ffi::CStr::from_ptr(dir) }
            .to_string_lossy()
            .into_owned(),
    }
}

/// Whether `dir` holds certificates by subject hash (`5ad8a5d6.0`, as `c_rehash` and
/// `update-ca-certificates` make them): only then can OpenSSL look them up there.
fn has_hashed_certificates(dir: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|entry| {
        let name = entry.file_name();
        let name = name.as_encoded_bytes();
        name.len() == 10
            && name[8] == b'.'
            && name[..8].iter().all(u8::is_ascii_hexdigit)
            && name[9].is_ascii_digit()
    })
}

/// The session to offer next; OpenSSL's reference, ours to free.
struct Latest(Session);

// SAFETY: an OpenSSL session is reference-counted and may be used from any thread.
unsafe impl Send for Latest {}

static LATEST: SpinLock<Latest> = SpinLock::new(Latest(std::ptr::null_mut()));

/// OpenSSL's new-session callback: a session (or TLS 1.3 ticket) the proxy just gave.
/// The slot keeps a copy: OpenSSL marks the session it gave not resumable when its
/// connection later fails (a proxy closing the handshake's connection without
/// close_notify does), and the ticket is good all the same. Returning 0 leaves OpenSSL's
/// reference with OpenSSL.
unsafe extern "C" fn remember(_ssl: Ssl, session: Session) -> c_int {
    let Ok(api) = super::openssl::get() else {
        return 0;
    };
    // SAFETY: a live session OpenSSL hands us; the copy is ours.
    let copy = unsafe { (api.SSL_SESSION_dup)(session) };
    if copy.is_null() {
        return 0;
    }
    let old = std::mem::replace(&mut LATEST.lock().0, copy);
    if !old.is_null() {
        // SAFETY: the slot's reference to the session it held.
        unsafe { (api.SSL_SESSION_free)(old) };
    }
    0
}

/// Offers the latest session to `ssl`, before its handshake (the session takes a
/// reference of its own).
pub fn offer_latest(api: &OpenSsl, ssl: Ssl) {
    let latest = LATEST.lock();
    if !latest.0.is_null() {
        // SAFETY: a live session (the slot holds a reference) and our fresh session.
        unsafe { (api.SSL_set_session)(ssl, latest.0) };
    }
}

pub fn after_fork_in_child() {
    LATEST.force_unlock();
}
