//! https through the program's own TLS library (OpenSSL's libssl, GnuTLS).
//!
//! At the socket a preload library sees only ciphertext, so for https it works one level
//! up. A connect to port 443 is diverted only when a TLS library we can drive is loaded
//! (`library`). When a session's handshake starts on a diverted socket (`binding` finds
//! which), the session becomes virtual (`sessions`): no TLS on the wire, the handshake
//! reports success at once, and the program's plaintext moves through the session's own
//! transport (OpenSSL's BIOs, GnuTLS's fd), so it meets our socket hooks and the same
//! HTTP engine as port 80, with `x-lunar-scheme: https`. Queries after the handshake
//! answer as for a verified session without ALPN, with a certificate naming the host
//! (`certificate`). Every other session is the library's own, untouched.

mod binding;
pub mod certificate;
pub mod gnutls;
mod library;
pub mod openssl;
pub mod probe;
pub mod sessions;

pub use binding::{claims_write, holds_reads, passes_through, Claim};
pub use library::drivable;

/// Declares `pub unsafe fn NAME(args) -> ret` calling NAME in the loaded `$library`, or
/// returning `$missing` when the library has no such function (an older major).
macro_rules! real_in {
    ($library:expr; $( fn $name:ident ( $($arg:ident : $ty:ty),* ) -> $ret:ty, else $missing:expr; )*) => {$(
        /// The TLS library's own function of this name.
        ///
        /// # Safety
        /// As that function's contract.
        #[inline]
        pub unsafe fn $name($($arg: $ty),*) -> $ret {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static ADDRESS: AtomicUsize = AtomicUsize::new(0);
            #[cold]
            #[inline(never)]
            fn resolve() -> usize {
                let name = $crate::hot_data::hot_bytes!(concat!(stringify!($name), "\0").as_bytes());
                let name = std::ffi::CStr::from_bytes_with_nul(name).expect("NUL-terminated literal");
                let address = $crate::tls::library::symbol($library, name);
                ADDRESS.store(address, Ordering::Relaxed);
                address
            }
            let mut address = ADDRESS.load(Ordering::Relaxed);
            if address == 0 {
                address = resolve();
            }
            if address == 0 {
                return $missing;
            }
            // SAFETY: the symbol is the library's function of this exact C signature.
            let function: unsafe extern "C-unwind" fn($($ty),*) -> $ret = unsafe { std::mem::transmute(address) };
            // SAFETY: the caller upholds the function's contract.
            unsafe { function($($arg),*) }
        }
    )*};
}
pub(crate) use real_in;

/// Runs the part of a session hook that only a process with virtual sessions needs, out
/// of line, so the hook's common path stays a load and a jump.
#[cold]
#[inline(never)]
pub fn off_the_fast_path<R>(work: impl FnOnce() -> R) -> R {
    work()
}

/// What conn asks of this layer to move an https connection to its origin; handed over
/// with each connection marked https (`sessions::begin_virtual`).
static HANDOFF: crate::conn::TlsHandoff = crate::conn::TlsHandoff {
    can_take_over,
    take_over,
};

/// Whether the virtual session on `fd` can be replaced by a real one (a fallback).
pub fn can_take_over(fd: libc::c_int) -> bool {
    sessions::find_by_fd(fd).is_some()
}

/// The socket `fd` was moved to the original destination: its virtual session is replaced
/// by a real one made from the program's own, and `replay` is sent in it. On failure the
/// program's next TLS call reports it (a verification failure as its own library would).
pub fn take_over(fd: libc::c_int, replay: &[u8]) -> Result<(), libc::c_int> {
    match sessions::find_by_fd(fd) {
        Some((key, session)) => match session.kind {
            // SAFETY: a session is in the table only while the program's own lives.
            sessions::Kind::OpenSsl => unsafe {
                openssl::take_over(key as openssl::Ssl, &session, replay)
            },
            // SAFETY: a session is in the table only while the program's own lives.
            sessions::Kind::GnuTls => unsafe {
                gnutls::take_over(key as gnutls::GnutlsSession, &session, replay)
            },
        },
        None => Err(libc::ENOTSUP),
    }
}

pub fn after_fork_in_child() {
    sessions::after_fork_in_child();
}

/// Seconds since the epoch, for the certificate's validity.
fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The name a virtual session's certificate carries: the SNI the program set, else the
/// name it resolved, else the address it connected to.
fn certificate_host(server_name: Option<String>, conn: &crate::conn::Conn) -> String {
    server_name
        .or_else(|| conn.name.as_deref().map(str::to_string))
        .unwrap_or_else(|| crate::addr::canonical(conn.original).ip().to_string())
}
