//! `gnutls_record_set_timeout`, noted (`noted`): a program sets it before the handshake
//! that makes the session virtual, whose reads then wait no longer for the proxy's
//! plaintext (`GNUTLS_E_TIMEDOUT`, as GnuTLS's own); the real session a fallback makes
//! gets it too.

use super::noted::Noted;
use super::GnutlsSession;
use libc::c_uint;
use std::time::Duration;

/// GnuTLS's "no timeout" beside 0 (`GNUTLS_INDEFINITE_TIMEOUT`).
const INDEFINITE: c_uint = c_uint::MAX;

static TIMEOUTS: Noted<c_uint> = Noted::new();

/// The program set `session`'s receive timeout to `ms` (0: none).
pub fn note(session: GnutlsSession, ms: c_uint) {
    TIMEOUTS.set(session, (ms != 0).then_some(ms));
}

/// The receive timeout the program set on `session`, as GnuTLS takes it (for a session
/// of ours standing in for it).
pub fn set_on(session: GnutlsSession) -> Option<c_uint> {
    TIMEOUTS.get(session)
}

/// How long a read of `session` may wait for input: `None` for ever.
pub fn limit(session: GnutlsSession) -> Option<Duration> {
    set_on(session)
        .filter(|&ms| ms != INDEFINITE)
        .map(|ms| Duration::from_millis(ms.into()))
}

/// `gnutls_deinit` of `session`: its timeout is forgotten.
pub fn forget(session: GnutlsSession) {
    TIMEOUTS.forget(session);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(n: usize) -> GnutlsSession {
        n as GnutlsSession
    }

    #[test]
    fn a_timeout_is_kept_until_cleared_or_forgotten() {
        note(session(0x1000), 1500);
        note(session(0x2000), INDEFINITE);
        assert_eq!(limit(session(0x1000)), Some(Duration::from_millis(1500)));
        assert_eq!(set_on(session(0x2000)), Some(INDEFINITE));
        assert_eq!(limit(session(0x2000)), None, "indefinite: no limit");
        note(session(0x1000), 200);
        assert_eq!(limit(session(0x1000)), Some(Duration::from_millis(200)));
        note(session(0x1000), 0);
        assert_eq!(limit(session(0x1000)), None);
        forget(session(0x2000));
        assert_eq!(set_on(session(0x2000)), None);
        assert_eq!(limit(session(0x3000)), None);
    }
}
