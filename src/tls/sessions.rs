//! The TLS sessions made virtual: keyed by the program's `SSL *` or `gnutls_session_t`.
//! A program may run many sessions, so lookups take a short lock; the count in front of
//! it keeps every call on a session we do not handle to one atomic load.

use crate::conn::Conn;
use crate::sync::SpinLock;
use libc::c_int;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    OpenSsl,
    GnuTls,
}

pub struct Session {
    pub kind: Kind,
    pub fd: c_int,
    pub conn: Arc<Conn>,
    /// The name the certificate we show must carry (SNI, else the name or address the
    /// program connected to).
    pub host: String,
    pub state: SpinLock<State>,
}

#[derive(Default)]
pub struct State {
    /// What `SSL_get_error` reports for the last call that failed.
    pub last_error: c_int,
    /// Bytes read for a peek and not yet taken by a read.
    pub held: Vec<u8>,
    /// How much of a write that would block has left already: OpenSSL's write is all or
    /// nothing, and the program repeats it with the same buffer.
    pub written: usize,
    /// `SSL_SENT_SHUTDOWN` / `SSL_RECEIVED_SHUTDOWN`.
    pub shutdown: c_int,
    /// The last transfer wanted to write (GnuTLS's record direction).
    pub last_was_write: bool,
    /// Library objects tied to this session (certificate copies), freed with it.
    pub owned: Vec<Owned>,
    /// After a fallback: the real session on the same fd that now serves every call.
    /// The session's own key when the program's own real session is followed (`followed`).
    pub fallback: usize,
    /// `fallback` is the program's own session (followed), not one we made: never ours
    /// to free.
    pub fallback_is_programs: bool,
    /// The real session being set up for a fallback (its handshake runs the program's
    /// callbacks, which must find the program's data).
    pub fallback_starting: usize,
    /// A fallback was tried and failed (its errors are on the thread's error queue).
    pub fallback_failed: bool,
}

impl Session {
    /// Records how a fallback's setup ended: `real_session` serves the program's calls
    /// from now on, or the failure is the program's to see at its next call. Returns
    /// whether the fallback is up; on failure the caller frees `real_session`.
    pub fn fallback_ended(&self, real_session: usize, up: bool) -> bool {
        let mut state = self.state.lock();
        state.fallback_starting = 0;
        if up {
            log::debug!(
                "https: fallback session to the origin up on fd {} ({})",
                self.fd,
                self.host
            );
            state.fallback = real_session;
            state.fallback_is_programs = false;
        } else {
            log::warn!(
                "https fallback to {} failed (the program sees its TLS library's error)",
                self.host
            );
            state.fallback_failed = true;
        }
        up
    }
}

/// Something made for the program that must live as long as the session.
pub enum Owned {
    Der(Box<[u8]>),
    Datum(Box<GnutlsDatum>),
    X509(usize),
}

#[repr(C)]
pub struct GnutlsDatum {
    pub data: *mut u8,
    pub size: u32,
}

// SAFETY: the pointer refers to a `Der` box owned by the same session.
unsafe impl Send for GnutlsDatum {}

static COUNT: AtomicUsize = AtomicUsize::new(0);
static TABLE: SpinLock<Vec<(usize, Arc<Session>)>> = SpinLock::new(Vec::new());

/// Whether any session is virtual: false for every program we leave alone.
#[inline(always)]
pub fn any() -> bool {
    COUNT.load(Ordering::Acquire) != 0
}

pub fn find(key: usize) -> Option<Arc<Session>> {
    if !any() {
        return None;
    }
    TABLE
        .lock()
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, session)| session.clone())
}

/// The session running on `fd`, with its key: the newest made there. An older one on the
/// same number belongs to a socket closed since (the program frees its sessions later:
/// a pool, a garbage collector), whose number the kernel gave this one.
pub fn find_by_fd(fd: c_int) -> Option<(usize, Arc<Session>)> {
    if !any() {
        return None;
    }
    TABLE
        .lock()
        .iter()
        .rev()
        .find(|(_, session)| session.fd == fd)
        .map(|(key, session)| (*key, session.clone()))
}

/// The program's own session whose fallback is `real_session`.
pub fn owner_of_fallback(real_session: usize) -> Option<usize> {
    if !any() {
        return None;
    }
    TABLE
        .lock()
        .iter()
        .find(|(_, session)| {
            let state = session.state.lock();
            state.fallback == real_session || state.fallback_starting == real_session
        })
        .map(|(key, _)| *key)
}

/// The session `key` on diverted `fd` becomes virtual: what the program writes there is
/// https plaintext from now on.
pub fn begin_virtual(
    key: usize,
    kind: Kind,
    fd: c_int,
    conn: Arc<Conn>,
    server_name: Option<String>,
) {
    let host = super::certificate_host(server_name, &conn);
    conn.mark_https(&super::HANDOFF);
    log::debug!(
        "{} https: TLS session virtual on fd {fd} (host {host})",
        conn.label()
    );
    add(
        key,
        Session {
            kind,
            fd,
            conn,
            host,
            state: SpinLock::new(State::default()),
        },
    );
}

/// The program's own real session `key` starts on `fd`, whose socket went direct at
/// connect only because of the failsafe: it stays real (it serves every call, as a
/// fallback does: its `fallback` is itself), and its plaintext is followed so that a later
/// request can end it and make the session virtual at the proxy.
pub fn begin_followed(
    key: usize,
    kind: Kind,
    fd: c_int,
    conn: Arc<Conn>,
    server_name: Option<String>,
) {
    let host = super::certificate_host(server_name, &conn);
    conn.follow_real_tls(&super::HANDOFF);
    log::debug!(
        "{} https: the program's TLS session at the origin followed on fd {fd} (host {host}): it may return to the proxy at a request boundary",
        conn.label()
    );
    let session = add(
        key,
        Session {
            kind,
            fd,
            conn,
            host,
            state: SpinLock::new(State::default()),
        },
    );
    let mut state = session.state.lock();
    state.fallback = key;
    state.fallback_is_programs = true;
}

fn add(key: usize, session: Session) -> Arc<Session> {
    let session = Arc::new(session);
    let mut table = TABLE.lock();
    table.retain(|(k, _)| *k != key);
    table.push((key, session.clone()));
    COUNT.store(table.len(), Ordering::Release);
    session
}

pub fn remove(key: usize) -> Option<Arc<Session>> {
    if !any() {
        return None;
    }
    let mut table = TABLE.lock();
    let index = table.iter().position(|(k, _)| *k == key)?;
    // In order: the newest session on an fd is the last (`find_by_fd`).
    let (_, session) = table.remove(index);
    COUNT.store(table.len(), Ordering::Release);
    Some(session)
}

pub fn after_fork_in_child() {
    TABLE.force_unlock();
    for (_, session) in TABLE.lock().iter() {
        session.state.force_unlock();
    }
}
