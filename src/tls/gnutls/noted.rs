//! What a program set on a GnuTLS session that GnuTLS keeps inside it with no call to read
//! it back on a client session (its receive timeout, the server name it asked for): the
//! hook of the setter notes it here by session, as well as passing it on. Few sessions
//! carry such a setting at once: a short list, and untouched (one load) by a process that
//! never set one.

use super::GnutlsSession;
use crate::sync::SpinLock;
use std::sync::atomic::{AtomicBool, Ordering};

pub struct Noted<T> {
    any: AtomicBool,
    entries: SpinLock<Vec<(usize, T)>>,
}

impl<T: Clone> Noted<T> {
    pub const fn new() -> Noted<T> {
        Noted {
            any: AtomicBool::new(false),
            entries: SpinLock::new(Vec::new()),
        }
    }

    /// The program set `session`'s value (`None`: cleared).
    pub fn set(&self, session: GnutlsSession, value: Option<T>) {
        let key = session as usize;
        let mut entries = self.entries.lock();
        entries.retain(|(s, _)| *s != key);
        if let Some(value) = value {
            entries.push((key, value));
            self.any.store(true, Ordering::Release);
        }
    }

    pub fn get(&self, session: GnutlsSession) -> Option<T> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let key = session as usize;
        let entries = self.entries.lock();
        entries
            .iter()
            .find(|(s, _)| *s == key)
            .map(|(_, v)| v.clone())
    }

    /// `gnutls_deinit` of `session`.
    pub fn forget(&self, session: GnutlsSession) {
        if self.any.load(Ordering::Acquire) {
            self.set(session, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(n: usize) -> GnutlsSession {
        n as GnutlsSession
    }

    #[test]
    fn a_value_is_kept_until_replaced_cleared_or_forgotten() {
        let noted: Noted<String> = Noted::new();
        assert_eq!(noted.get(session(0x1000)), None);
        noted.set(session(0x1000), Some("a.example".into()));
        noted.set(session(0x2000), Some("b.example".into()));
        noted.set(session(0x1000), Some("c.example".into()));
        assert_eq!(noted.get(session(0x1000)).as_deref(), Some("c.example"));
        assert_eq!(noted.get(session(0x2000)).as_deref(), Some("b.example"));
        noted.set(session(0x1000), None);
        assert_eq!(noted.get(session(0x1000)), None);
        noted.forget(session(0x2000));
        assert_eq!(noted.get(session(0x2000)), None);
    }
}
