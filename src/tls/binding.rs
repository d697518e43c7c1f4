//! Which socket a TLS session runs on. A socket BIO (`SSL_set_fd`) or GnuTLS's default
//! transport names its fd; a custom BIO (curl's) does not. For those the real handshake
//! runs with this thread marked, and the fd its ClientHello is written to is the one: the
//! hello is swallowed there (reported sent), and reads of that fd answer EAGAIN until the
//! handshake call returns. Several connections per thread (curl -Z) bind correctly,
//! because each hello is written inside its own session's handshake call.

use crate::conn::fdtable;
use crate::conn::Conn;
use crate::sync::ThreadsInside;
use libc::c_int;
use std::cell::Cell;
use std::sync::Arc;

/// Threads watching a handshake: every read and write on a tracked socket asks whether
/// its own thread watches one.
static WATCHING: ThreadsInside = ThreadsInside::new();

thread_local! {
    /// The session whose real handshake runs on this thread now (0: none).
    static HANDSHAKING: Cell<usize> = const { Cell::new(0) };
    /// The fd its ClientHello went to (-1: none yet).
    static BOUND_FD: Cell<c_int> = const { Cell::new(-1) };
    /// The fd whose ClientHello showed the session to be the program's own, followed
    /// (-1: none): the rest of this handshake call reaches that socket as written.
    static FOLLOWED_FD: Cell<c_int> = const { Cell::new(-1) };
    /// Its server name (SNI), which the filter judges before the session is bound.
    static SERVER_NAME: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// The connection on `fd` when a TLS session there may become virtual.
pub fn bindable(fd: c_int) -> Option<Arc<Conn>> {
    fdtable::get(fd).filter(|conn| conn.can_carry_virtual_tls())
}

/// The connection on `fd` when the program's own real TLS session starting there may be
/// followed (`sessions::begin_followed`): direct at connect only because of the failsafe.
pub fn followable(fd: c_int) -> Option<Arc<Conn>> {
    fdtable::get(fd).filter(|conn| conn.can_follow_real_tls())
}

/// What the program's write of a tracked fd is to the TLS layer (`claims_write`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Claim {
    /// Not a handshake's: the connection layer takes it.
    No,
    /// A ClientHello of a session made virtual: reported written, nothing sent.
    Swallowed,
    /// The ClientHello of the program's own session, followed from now on: it leaves as
    /// the program wrote it.
    AsWritten,
}

/// Runs the real handshake of `session`, watching where its ClientHello goes. Returns
/// the handshake's result and the fd it bound to, if any.
pub fn watch_handshake<R>(
    session: usize,
    server_name: Option<String>,
    real: impl FnOnce() -> R,
) -> (R, Option<c_int>) {
    if HANDSHAKING.try_with(Cell::get).unwrap_or(session) != 0 {
        // Re-entered from inside the library's own handshake (SSL_connect calls
        // SSL_do_handshake), or thread-locals are gone: the outer call watches.
        return (real(), None);
    }
    let counted = WATCHING.enter();
    HANDSHAKING.with(|h| h.set(session));
    BOUND_FD.with(|b| b.set(-1));
    FOLLOWED_FD.with(|f| f.set(-1));
    SERVER_NAME.with(|n| *n.borrow_mut() = server_name);
    let result = real();
    HANDSHAKING.with(|h| h.set(0));
    drop(counted);
    SERVER_NAME.with(|n| n.borrow_mut().take());
    FOLLOWED_FD.with(|f| f.set(-1));
    let fd = BOUND_FD.with(|b| b.replace(-1));
    (result, (fd >= 0).then_some(fd))
}

/// The program writes `bytes` to tracked `fd`: `Swallowed` when they are the ClientHello
/// (or a later handshake record) of the session this thread is handshaking, bound to `fd`
/// now (the caller reports them written and sends nothing); `AsWritten` when that session
/// is the program's own on a socket direct because of the failsafe, followed from now on
/// (the caller sends them as the program wrote them).
pub fn claims_write(fd: c_int, conn: &Conn, bytes: &[u8]) -> Claim {
    let session = watched_session();
    if session == 0 {
        return Claim::No;
    }
    match BOUND_FD.with(Cell::get) {
        -1 if conn.can_carry_virtual_tls() && is_client_hello(bytes) => {
            // A server name the filter does not divert takes the socket to the origin
            // now; the hello then goes there, and the session stays real.
            let name = SERVER_NAME.with(|n| n.borrow().clone());
            if let Some(name) = name {
                if !crate::conn::settle_for_server_name(conn, fd, &name) {
                    return Claim::No;
                }
            }
            BOUND_FD.with(|b| b.set(fd));
            Claim::Swallowed
        }
        _ if FOLLOWED_FD.with(Cell::get) == fd => Claim::AsWritten,
        -1 if is_client_hello(bytes) => match followable(fd) {
            // Only OpenSSL's handshakes are watched (a BIO of the program's own). Not
            // bound: the rest of this handshake call reaches the socket as written
            // (`passes_through`), and the program's later calls on the session run
            // followed.
            Some(conn) => {
                let name = SERVER_NAME.with(|n| n.borrow().clone());
                let kind = super::sessions::Kind::OpenSsl;
                super::sessions::begin_followed(session, kind, fd, conn, name);
                FOLLOWED_FD.with(|f| f.set(fd));
                Claim::AsWritten
            }
            None => Claim::No,
        },
        bound if bound == fd => Claim::Swallowed,
        _ => Claim::No,
    }
}

/// A read of `fd` inside the handshake call that found the program's own session on it
/// (followed): the program's own read, as it made it.
pub fn passes_through(fd: c_int) -> bool {
    watching() && FOLLOWED_FD.with(Cell::get) == fd
}

/// A read of `fd` inside the handshake that bound it: nothing will come (the proxy speaks
/// no TLS), and a blocking read must not wait for it.
pub fn holds_reads(fd: c_int) -> bool {
    watching() && BOUND_FD.with(Cell::get) == fd
}

/// This thread is inside a handshake call it watches.
fn watching() -> bool {
    watched_session() != 0
}

/// The session whose handshake this thread watches (0: none).
fn watched_session() -> usize {
    if WATCHING.any() {
        return this_threads_session();
    }
    0
}

/// Out of line: the reads and writes of a process watching no handshake fall through.
#[cold]
#[inline(never)]
fn this_threads_session() -> usize {
    HANDSHAKING.try_with(Cell::get).unwrap_or(0)
}

/// A TLS record of type handshake (22), version 3.x, whose first message is a
/// ClientHello (1).
fn is_client_hello(bytes: &[u8]) -> bool {
    matches!(bytes, [22, 3, 0..=4, _, _, 1, ..])
}

#[cfg(test)]
mod tests {
    use super::is_client_hello;

    #[test]
    fn recognises_a_client_hello_record() {
        assert!(is_client_hello(&[22, 3, 1, 0, 200, 1, 0, 0, 196]));
        assert!(!is_client_hello(&[22, 3, 3, 0, 200, 2]));
        assert!(!is_client_hello(b"GET / HTTP/1.1\r\n"));
        assert!(!is_client_hello(&[22, 3]));
    }
}
