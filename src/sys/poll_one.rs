//! Polling one fd, in a thread whose waits another thread may cut short.
//!
//! A recovery's helper thread waits in `poll` on the program's socket (a connect, room to
//! send, the proxy's TLS answer); when the program closes that socket meanwhile, its
//! close must not wait out the helper's poll (`conn::fd_hold`). Such a thread names an
//! eventfd for its waits (`CancelledWaits`): every poll it makes watches that too, and a
//! write to it ends the poll with ECANCELED. Other threads name none and poll as before.

use libc::{c_int, pollfd};
use std::cell::Cell;

thread_local! {
    static CANCELLED_BY: Cell<c_int> = const { Cell::new(-1) };
}

/// While alive, this thread's polls (`poll_one`) end with ECANCELED once the eventfd
/// it names is written.
pub struct CancelledWaits {
    previous: c_int,
}

impl CancelledWaits {
    pub fn by(eventfd: c_int) -> CancelledWaits {
        let previous = CANCELLED_BY
            .try_with(|cell| cell.replace(eventfd))
            .unwrap_or(-1);
        CancelledWaits { previous }
    }
}

impl Drop for CancelledWaits {
    fn drop(&mut self) {
        let _ = CANCELLED_BY.try_with(|cell| cell.set(self.previous));
    }
}

/// `poll` of one entry for up to `millis` (as poll(2): -1 waits for good), returning as
/// it does; in a thread with `CancelledWaits`, -1 with ECANCELED once its eventfd was
/// written.
pub fn poll_one(entry: &mut pollfd, millis: c_int) -> c_int {
    let cancel = CANCELLED_BY.try_with(Cell::get).unwrap_or(-1);
    if cancel < 0 {
        // SAFETY: one valid pollfd.
        return unsafe { super::poll(entry, 1, millis) };
    }
    let mut both = [
        *entry,
        pollfd {
            fd: cancel,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // SAFETY: two valid pollfds.
    let ready = unsafe { super::poll(both.as_mut_ptr(), 2, millis) };
    if ready > 0 && both[1].revents != 0 {
        super::set_errno(libc::ECANCELED);
        return -1;
    }
    entry.revents = both[0].revents;
    ready
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eventfd() -> c_int {
        // SAFETY: no pointer.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        assert!(fd >= 0);
        fd
    }

    fn signal(fd: c_int) {
        let one = 1u64;
        // SAFETY: 8 bytes from a u64.
        let written = unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
        assert_eq!(written, 8);
    }

    #[test]
    fn a_written_eventfd_cuts_the_wait_short_only_while_named() {
        let quiet = eventfd();
        let cancel = eventfd();
        let mut entry = pollfd {
            fd: quiet,
            events: libc::POLLIN,
            revents: 0,
        };
        {
            let _named = CancelledWaits::by(cancel);
            assert_eq!(
                poll_one(&mut entry, 0),
                0,
                "nothing ready, nothing cancelled"
            );
            signal(cancel);
            assert_eq!(poll_one(&mut entry, -1), -1);
            assert_eq!(super::super::errno(), libc::ECANCELED);
        }
        assert_eq!(
            poll_one(&mut entry, 0),
            0,
            "no longer named: the plain poll"
        );
        signal(quiet);
        assert_eq!(poll_one(&mut entry, 0), 1);
        assert_eq!(entry.revents, libc::POLLIN);
        // SAFETY: our own fds.
        unsafe {
            libc::close(quiet);
            libc::close(cancel);
        }
    }
}
