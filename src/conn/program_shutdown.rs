//! The program's own `shutdown` of a tracked socket. The ends it causes are its own
//! doing, not the proxy failing, and must reach it as the kernel makes them:
//! - reading shut (SHUT_RD, SHUT_RDWR; another thread's way to wake a blocked reader):
//!   the end of file its reads then meet is returned, not hidden and replayed, so the
//!   socket is left as it is, bytes only;
//! - writing shut (SHUT_WR, SHUT_RDWR): its later writes meet the kernel's EPIPE and
//!   SIGPIPE (`write::send`), and a recovery that moves the socket carries the half-close
//!   to the new peer after resending (`recovery`), as an origin answering "until the
//!   client's end" waits for it.

use super::{Conn, Phase};
use libc::c_int;

/// Called before the program's shutdown reaches the kernel: a reader it wakes finds the
/// change made.
pub fn before_program_shutdown(conn: &Conn, how: c_int) {
    if matches!(how, libc::SHUT_WR | libc::SHUT_RDWR) {
        conn.state.lock().write_shut = true;
    }
    if matches!(how, libc::SHUT_RD | libc::SHUT_RDWR) {
        conn.change(|phase| {
            if phase.follows_requests() {
                Phase::Passthrough(phase.route())
            } else {
                phase
            }
        });
    }
}

impl Conn {
    /// After a recovery resent the unanswered requests on the moved socket: the program's
    /// half-close, made again there.
    pub(super) fn shut_writing_again(&self, fd: c_int) {
        if self.state().write_shut {
            // SAFETY: shutdown(2) of the program's socket, which it had shut for writing.
            unsafe { libc::shutdown(fd, libc::SHUT_WR) };
        }
    }
}
