//! Ways a program's bytes can leave a tracked socket without meeting our hooks, and what
//! we do about them: a socket handed to stdio (`fdopen`: glibc's stdio writes and reads
//! with internal calls), a process using io_uring (I/O submitted to the kernel directly),
//! and an fd number we could not track. A diverted socket whose bytes we cannot see would
//! reach the proxy without Lunar's headers, so such a socket goes to its origin, before
//! its first unseen byte when we can tell.

use super::decide::{decide, Action, Event, Facts, Reason, Unseen};
use super::{Conn, Phase};
use crate::runtime::{self, Route};
use std::sync::atomic::{AtomicBool, Ordering};

/// The program called `fdopen` on tracked `fd`. A diverted socket with nothing unanswered
/// moves to its origin now and is passed through from then on; one with a request still
/// unanswered (the program may read its answer through stdio) stays until the next
/// request it writes through us (`Phase::Leaving`). A socket already at its origin is
/// passed through, so that no later request moves it to the proxy.
pub fn handed_to_stdio(conn: &Conn, fd: i32) {
    if !conn.phase().follows_requests() || !conn.still_ours(fd) {
        return;
    }
    unseen_bytes(conn, fd, Unseen::Stdio);
}

/// `fd` was duplicated onto `new_fd`, which the table could not take (no memory for its
/// chunk): the socket's bytes through `new_fd` would not be seen, so it goes direct now,
/// if nothing is unanswered; else it is passed through as it is.
pub fn untrackable(conn: &Conn, fd: i32, new_fd: i32) {
    if !conn.phase().follows_requests() {
        return;
    }
    log::debug!("{}: fd {new_fd} cannot be tracked", conn.label());
    unseen_bytes(conn, fd, Unseen::UntrackableFd);
}

/// Bytes of `conn` may leave without meeting our hooks (`how`): `decide` says what
/// follows, under the writer lock.
fn unseen_bytes(conn: &Conn, fd: i32, how: Unseen) {
    let writer = conn.writer.lock();
    let idle = writer.requests.at_message_boundary()
        && conn.responses.lock().tracker.pending_requests() == 0;
    match decide(&conn.state(), Facts::default(), Event::Unseen { how, idle }) {
        Action::GoDirect(why) => go_direct(conn, fd, why),
        Action::Passthrough(_) => conn.change(|phase| Phase::Passthrough(phase.route())),
        Action::LeaveAtNextRequest => {
            if let Phase::Proxied(proxy) = conn.phase() {
                conn.enter(Phase::Leaving(proxy));
                log::debug!(
                    "{}: handed to stdio with a request unanswered: goes direct at its next request",
                    conn.label()
                );
            }
        }
        _ => {}
    }
}

/// Moves diverted `conn` to its origin for good; the caller holds the writer lock.
pub(super) fn go_direct(conn: &Conn, fd: i32, why: Reason) {
    let Some(runtime) = runtime::get() else {
        return;
    };
    log::debug!("{} -> direct ({why})", conn.label());
    conn.responses.lock().stop_checking();
    // Bytes only from now on; the move keeps that phase, at the origin. A failed move
    // leaves the socket unconnected: the program's next call fails as a connect to its
    // origin would have.
    conn.change(|phase| Phase::Passthrough(phase.route()));
    let _ = conn.move_to(fd, Route::Origin, runtime);
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
    if runtime::get().is_none() {
        return;
    }
    log::warn!(
        "this process set up io_uring ({how}): I/O submitted there bypasses the library, so its connections go to their destinations, not through Lunar Proxy"
    );
    for (fd, conn) in super::fdtable::tracked() {
        if !conn.phase().follows_requests() || conn.phase().proxy().is_none() {
            continue;
        }
        let _writer = conn.writer.lock();
        let event = Event::Unseen {
            how: Unseen::IoUring,
            idle: false,
        };
        let action = decide(&conn.state(), Facts::default(), event);
        if let Action::GoDirect(why) = action {
            if conn.still_ours(fd) {
                go_direct(&conn, fd, why);
            }
        }
    }
}
