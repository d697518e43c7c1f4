//! The end of an SSL object's session: the program frees the object, or resets it for
//! another connection. A virtual session must not outlive either.

use crate::guard::shielded;
use crate::tls::openssl::{self as tls, real, Ssl};
use libc::c_int;

/// # Safety
/// As SSL_free(3).
#[no_mangle]
pub unsafe extern "C-unwind" fn SSL_free(ssl: Ssl) {
    forget_virtual(ssl);
    // SAFETY: the program's own argument.
    unsafe { real::SSL_free(ssl) }
}

/// # Safety
/// As SSL_clear(3).
#[no_mangle]
pub unsafe extern "C-unwind" fn SSL_clear(ssl: Ssl) -> c_int {
    forget_virtual_for_reuse(ssl);
    // SAFETY: the program's own argument.
    unsafe { real::SSL_clear(ssl) }
}

/// # Safety
/// As SSL_set_connect_state(3).
#[no_mangle]
pub unsafe extern "C-unwind" fn SSL_set_connect_state(ssl: Ssl) {
    forget_virtual_for_reuse(ssl);
    // SAFETY: the program's own argument.
    unsafe { real::SSL_set_connect_state(ssl) }
}

/// The program is done with `ssl`'s session: a virtual one is forgotten (and its
/// fallback freed), so that nothing of it answers for the object again.
fn forget_virtual(ssl: Ssl) {
    if crate::tls::openssl::virtual_session(ssl).is_some() {
        super::super::answer_keeping_errno(|| shielded(|| tls::free(ssl), || ()), |_| false);
    }
}

/// The program resets `ssl` for another connection (`SSL_clear`; `SSL_set_connect_state`
/// after a shutdown, as `openssl s_client -reconnect` does): its next handshake is a new
/// session's, real or virtual as its own connection decides. (A virtual session kept would
/// answer that handshake without one, and send the next connection's plaintext in clear.)
/// libssl's own calls of these while our work runs (a fallback's handshake) are not the
/// program's.
fn forget_virtual_for_reuse(ssl: Ssl) {
    if crate::tls::sessions::any() && !crate::guard::Reentry::inside() {
        forget_virtual(ssl);
    }
}
