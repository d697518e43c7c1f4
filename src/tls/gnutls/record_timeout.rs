//! `gnutls_record_set_timeout`: GnuTLS keeps a session's receive timeout inside the
//! session, with no call to read it back, and a program sets it before the handshake
//! that makes the session virtual. So the hook notes it here by session, as well as
//! passing it on: a virtual session's reads wait no longer for the proxy's plaintext
//! (`GNUTLS_E_TIMEDOUT`, as GnuTLS's own), and the real session a fallback makes gets it.
//! Few programs set one: the list is short, and untouched (one load at `gnutls_deinit`)
//! in a process that never did.

use super::GnutlsSession;
use crate::sync::SpinLock;
use libc::c_uint;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// GnuTLS's "no timeout" beside 0 (`GNUTLS_INDEFINITE_TIMEOUT`).
const INDEFINITE: c_uint = c_uint::MAX;

static ANY: AtomicBool = AtomicBool::new(false);
static TIMEOUTS: SpinLock<Vec<(usize, c_uint)>> = SpinLock::new(Vec::new());

/// The program set `session`'s receive timeout to `ms` (0: none).
pub fn note(session: GnutlsSession, ms: c_uint) {
    let key = session as usize;
    let mut timeouts = TIMEOUTS.lock();
    timeouts.retain(|&(s, _)| s != key);
    if ms != 0 {
        timeouts.push((key, ms));
        ANY.store(true, Ordering::Release);
    }
}

/// The receive timeout the program set on `session`, as GnuTLS takes it (for a session
/// of ours standing in for it).
pub fn set_on(session: GnutlsSession) -> Option<c_uint> {
    if !ANY.load(Ordering::Acquire) {
        return None;
    }
    let key = session as usize;
    TIMEOUTS
        .lock()
        .iter()
        .find(|&&(s, _)| s == key)
        .map(|&(_, ms)| ms)
}

/// How long a read of `session` may wait for input: `None` for ever.
pub fn limit(session: GnutlsSession) -> Option<Duration> {
    set_on(session)
        .filter(|&ms| ms != INDEFINITE)
        .map(|ms| Duration::from_millis(ms.into()))
}

/// `gnutls_deinit` of `session`: its timeout is forgotten.
pub fn forget(session: GnutlsSession) {
    if ANY.load(Ordering::Acquire) {
        note(session, 0);
    }
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
