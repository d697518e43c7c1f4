//! Ways a program's bytes can leave a tracked socket without meeting our hooks, and what
//! we do about them: an fd number we could not track. A diverted socket whose bytes we
//! cannot see would reach the proxy without Lunar's headers, so such a socket goes to its
//! origin, before its first unseen byte when we can tell.

use super::Conn;
use crate::runtime::{self, Route};
use std::sync::atomic::Ordering;

/// Moves diverted `conn` to its origin for good; the caller holds the writer lock.
fn go_direct(conn: &Conn, fd: i32, why: &str) {
    let Some(runtime) = runtime::get() else {
        return;
    };
    log::debug!("{} -> direct ({why})", conn.label());
    conn.passthrough.store(true, Ordering::Release);
    conn.responses.lock().stop_checking();
    // A failed move leaves the socket unconnected: the program's next call fails as a
    // connect to its origin would have.
    let _ = conn.move_to(fd, Route::Origin, runtime);
}

/// `fd` was duplicated onto `new_fd`, which the table could not take (no memory for its
/// chunk): the socket's bytes through `new_fd` would not be seen, so it goes direct now,
/// if nothing is unanswered; else it is passed through as it is.
pub fn untrackable(conn: &Conn, fd: i32, new_fd: i32) {
    if conn.is_passthrough() || conn.is_https() {
        return;
    }
    let writer = conn.writer.lock();
    let idle = writer.requests.at_message_boundary()
        && conn.responses.lock().tracker.pending_requests() == 0;
    if conn.is_diverted() && idle {
        go_direct(conn, fd, &format!("fd {new_fd} cannot be tracked"));
    } else {
        conn.passthrough.store(true, Ordering::Release);
    }
}
