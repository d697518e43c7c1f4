//! `gnutls_server_name_set`, noted (`noted`): on a client session GnuTLS gives the name
//! back to no one (`gnutls_server_name_get` answers servers only), and the name is what a
//! virtual session's certificate must carry: a program that checks the peer's name itself
//! against the one it asked for (aria2) would refuse the address it connected to, which
//! is all the library knows of a name resolved without getaddrinfo (aria2 asks c-ares).

use super::noted::Noted;
use super::GnutlsSession;

static NAMES: Noted<String> = Noted::new();

/// The program asked for `name` (a DNS name) as `session`'s server.
pub fn note(session: GnutlsSession, name: String) {
    NAMES.set(session, Some(name));
}

pub fn of(session: GnutlsSession) -> Option<String> {
    NAMES.get(session)
}

/// `gnutls_deinit` of `session`.
pub fn forget(session: GnutlsSession) {
    NAMES.forget(session);
}
