//! Ways a program's bytes can leave a tracked socket without meeting our hooks, and what
//! we do about them: a socket handed to stdio (`fdopen`: glibc's stdio writes and reads
//! with internal calls), a process using io_uring (I/O submitted to the kernel directly),
//! and an fd number we could not track. A diverted socket whose bytes we cannot see would
//! reach the proxy without Lunar's headers, so such a socket goes to its origin, before
//! its first unseen byte when we can tell.

use super::Conn;
use crate::runtime::{self, Route};
use std::sync::atomic::{AtomicBool, Ordering};

/// The program called `fdopen` on tracked `fd`. A diverted socket with nothing unanswered
/// moves to its origin now and is passed through from then on; one with a request still
/// unanswered (the program may read its answer through stdio) stays until the next
/// request it writes through us (`stdio_goes_direct`). A socket already at its origin is
/// passed through, so that no later request moves it to the proxy.
pub fn handed_to_stdio(conn: &Conn, fd: i32) {
    if conn.is_passthrough() || conn.is_https() || !conn.still_ours(fd) {
        return;
    }
    let writer = conn.writer.lock();
    if !conn.is_diverted() {
        conn.passthrough.store(true, Ordering::Release);
        return;
    }
    let unanswered = !writer.requests.at_message_boundary()
        || conn.responses.lock().tracker.pending_requests() > 0;
    if unanswered {
        conn.stdio.store(true, Ordering::Release);
        log::debug!(
            "{}: handed to stdio with a request unanswered: goes direct at its next request",
            conn.label()
        );
        return;
    }
    go_direct(conn, fd, "handed to stdio");
}

/// A request begins on a socket handed to stdio mid-request (the caller holds the writer
/// lock): it goes to its origin now. True when the program's own call should run.
pub(super) fn stdio_goes_direct(conn: &Conn, fd: i32) -> bool {
    if conn.is_diverted() {
        go_direct(conn, fd, "handed to stdio");
    } else {
        conn.passthrough.store(true, Ordering::Release);
    }
    conn.is_passthrough()
}

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

static IO_URING: AtomicBool = AtomicBool::new(false);

/// The process set up an io_uring instance (seen through `syscall` or liburing).
pub fn io_uring_in_use() -> bool {
    IO_URING.load(Ordering::Relaxed)
}

/// The process set up an io_uring instance (`how`): I/O it submits there never meets our
/// hooks. From now on connects are not diverted; diverted sockets that carried nothing yet
/// go to their origin (their first request could be an io_uring send). Said once.
pub fn io_uring_seen(how: &str) {
    if IO_URING.swap(true, Ordering::AcqRel) {
        return;
    }
    let Some(runtime) = runtime::get() else {
        return;
    };
    log::warn!(
        "this process set up io_uring ({how}): I/O submitted there bypasses the library, so its connections go to their destinations, not through Lunar Proxy"
    );
    for (fd, conn) in super::fdtable::tracked() {
        if conn.is_passthrough() || conn.is_https() || !conn.is_diverted() {
            continue;
        }
        let _writer = conn.writer.lock();
        if conn.wrote.load(Ordering::Acquire) || !conn.still_ours(fd) {
            continue;
        }
        log::debug!("{} -> direct (io_uring in use)", conn.label());
        conn.passthrough.store(true, Ordering::Release);
        let _ = conn.move_to(fd, Route::Origin, runtime);
    }
}
