//! The program reads. Responses pass through unchanged; two things need care: a protocol
//! whose server speaks first, and errors left over from a peer we moved away from.

use super::Conn;
use crate::runtime::{self, Route};
use crate::sys;
use libc::c_int;
use std::sync::atomic::Ordering;

/// The program's read (any of read/recv/recvfrom/readv/recvmsg and the fortified ones) on
/// a tracked fd; `real` performs the program's own call.
pub fn receive(conn: &Conn, fd: c_int, flags: c_int, mut real: impl FnMut() -> isize) -> isize {
    if conn.is_passthrough() {
        return real();
    }
    if !conn.wrote.load(Ordering::Acquire) && !is_nonblocking(fd, flags) {
        reads_before_writing(conn, fd);
    }
    loop {
        let epoch = conn.epoch();
        let got = real();
        let lost_peer = got == 0
            || (got < 0
                && matches!(
                    sys::errno(),
                    libc::ECONNRESET | libc::ENOTCONN | libc::EPIPE
                ));
        if !lost_peer || !conn.moved_since(epoch) {
            return got;
        }
        // The old peer's end surfaced in a read that raced our move; the new peer is
        // the program's connection now.
        if is_nonblocking(fd, flags) {
            sys::set_errno(libc::EAGAIN);
            return -1;
        }
    }
}

/// An HTTP client writes before it reads. A program that waits to read from a diverted
/// socket before it wrote anything (a blocking read, or poll/select for input alone)
/// speaks a protocol whose server talks first: the proxy would never answer, so the
/// socket goes to its original destination and is left alone.
pub fn reads_before_writing(conn: &Conn, fd: c_int) {
    if conn.wrote.load(Ordering::Acquire) || !conn.is_diverted() || conn.is_passthrough() {
        return;
    }
    if !conn.still_a_socket(fd) {
        return;
    }
    let Some(runtime) = runtime::get() else {
        return;
    };
    let _writer = conn.writer.lock();
    if conn.wrote.load(Ordering::Acquire) || conn.is_passthrough() {
        return;
    }
    log::debug!("{} -> direct (server speaks first: not HTTP)", conn.label());
    conn.passthrough.store(true, Ordering::Release);
    let _ = conn.move_to(fd, Route::Origin, runtime);
}

fn is_nonblocking(fd: c_int, flags: c_int) -> bool {
    if flags & libc::MSG_DONTWAIT != 0 {
        return true;
    }
    // SAFETY: F_GETFL takes no argument.
    let status = unsafe { sys::fcntl(fd, libc::F_GETFL, 0) };
    status >= 0 && status & libc::O_NONBLOCK != 0
}
