//! A helper thread's hold on one of the program's fd numbers.
//!
//! A recovery's helper thread (`recovery::in_background`) makes its system calls on the fd
//! NUMBER the program gave us (the move's connect, the resend) while another thread of
//! the program may close it. Closed and handed at once to a new socket of the program, the
//! number would take the old request; closed during the helper's `poll`, the socket
//! would outlive its close (the poll holds the file), its epoll registrations still
//! reporting under a number the program let go. So the helper holds the number while it
//! works on it, and the program's close of that number (`fdtable::release`) waits until
//! the helper lets go. The close first wakes the helper: every poll of a holding thread
//! also watches an eventfd the close writes (`sys::poll_one`), so the close waits only for
//! calls that do not block. The eventfd lives as long as the hold: no number of ours
//! outlives a recovery, where the program could take it for one of its own.
//!
//! Why not a `dup` of the socket for the helper: the program's epoll registrations last as
//! long as the file has a descriptor, ours included, and would report events for a
//! number the program closed.

use super::Conn;
use crate::sync::{futex_wait_while, futex_wake_all};
use crate::sys::poll_one::CancelledWaits;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

const FREE: u32 = 0;
const HELD: u32 = 1;
/// Held, and a closer sleeps on the word: letting go must wake it.
const HELD_AND_AWAITED: u32 = 2;

pub(super) struct FdHold {
    /// The number held, or -1; read by closers only while `word` says held.
    fd: AtomicI32,
    /// FREE, HELD or HELD_AND_AWAITED: a futex word.
    word: AtomicU32,
    /// The holder's eventfd plus one while a closer may write to it; 0 when there is none,
    /// or while a closer has taken it to write (it puts it back, and the holder waits for
    /// that before closing it: a write never lands on a number reused since). A futex word.
    wake: AtomicU32,
}

impl FdHold {
    pub(super) const fn new() -> FdHold {
        FdHold {
            fd: AtomicI32::new(-1),
            word: AtomicU32::new(FREE),
            wake: AtomicU32::new(0),
        }
    }

    /// Forgets a holder that does not exist in a forked child (its threads were not
    /// copied), closing the child's copy of its eventfd.
    pub(super) fn after_fork_in_child(&self) {
        self.fd.store(-1, Ordering::Relaxed);
        self.word.store(FREE, Ordering::Release);
        let wake = self.wake.swap(0, Ordering::AcqRel);
        if wake != 0 {
            // SAFETY: the child's copy of the parent's helper's eventfd, used by no one here.
            unsafe { crate::sys::close(wake as i32 - 1) };
        }
    }
}

/// Holding `fd` for this thread: a close of it by the program waits until this drops.
pub(super) struct Held<'a> {
    hold: &'a FdHold,
    /// The eventfd this thread's polls watch (`CancelledWaits`), or -1 when none could be
    /// made: a closer then waits for the holder's poll to end by itself (each has a
    /// deadline).
    eventfd: i32,
    _cancelled_waits: Option<CancelledWaits>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let hold = self.hold;
        hold.fd.store(-1, Ordering::Relaxed);
        if hold.word.swap(FREE, Ordering::SeqCst) == HELD_AND_AWAITED {
            futex_wake_all(&hold.word);
        }
        if self.eventfd < 0 {
            return;
        }
        // Taken back from closers before it is closed; one writing now puts it back after
        // its write (a non-blocking one).
        while hold.wake.swap(0, Ordering::AcqRel) == 0 {
            futex_wait_while(&hold.wake, 0, None);
        }
        // SAFETY: our own eventfd, out of every closer's reach.
        unsafe { crate::sys::close(self.eventfd) };
    }
}

impl Conn {
    /// Holds `fd` for the calling (helper) thread; `None` when `fd` no longer names this
    /// connection (the program closed it already).
    pub(super) fn hold_fd(&self, fd: i32) -> Option<Held<'_>> {
        let hold = &self.fd_hold;
        // SAFETY: eventfd takes no pointer.
        let eventfd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if eventfd >= 0 {
            // One helper at a time per connection (the phase `Recovering` says so).
            hold.wake.store(eventfd as u32 + 1, Ordering::Release);
        }
        hold.fd.store(fd, Ordering::Relaxed);
        hold.word.store(HELD, Ordering::SeqCst);
        let held = Held {
            hold,
            eventfd,
            _cancelled_waits: (eventfd >= 0).then(|| CancelledWaits::by(eventfd)),
        };
        // After the store: a close that removed `fd` from the table before this look is
        // seen here; one that removes it after sees the hold (the slot's lock orders the
        // two) and waits.
        let ours = super::fdtable::peek(fd, |conn| std::ptr::eq(conn, self)).unwrap_or(false);
        ours.then_some(held)
    }

    /// The program closes `fd` (already out of the table): waits until a helper holding it
    /// lets go, after waking it from any poll.
    pub(super) fn before_close(&self, fd: i32) {
        let hold = &self.fd_hold;
        if hold.word.load(Ordering::SeqCst) == FREE || hold.fd.load(Ordering::Relaxed) != fd {
            return;
        }
        // Said before the wake, so that the helper, its poll cut short, knows why.
        loop {
            match hold.word.compare_exchange(
                HELD,
                HELD_AND_AWAITED,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) | Err(HELD_AND_AWAITED) => break,
                Err(FREE) => return,
                Err(_) => {}
            }
        }
        // A hold let go and taken again on another fd meanwhile is not this close's.
        if hold.fd.load(Ordering::Relaxed) == fd {
            self.wake_holder();
            while hold.word.load(Ordering::SeqCst) != FREE {
                futex_wait_while(&hold.word, HELD_AND_AWAITED, None);
            }
        }
    }

    /// Cuts the holder's polls short: a write to its eventfd, taken from `wake` for the
    /// write and put back after.
    #[cold]
    fn wake_holder(&self) {
        let wake = &self.fd_hold.wake;
        let taken = wake.swap(0, Ordering::AcqRel);
        if taken == 0 {
            return;
        }
        let one = 1u64;
        // SAFETY: writes 8 bytes from a u64 to the holder's eventfd, which it does not
        // close while we have it (see `wake`).
        unsafe { crate::sys::write(taken as i32 - 1, (&one as *const u64).cast(), 8) };
        wake.store(taken, Ordering::Release);
        futex_wake_all(wake);
    }

    /// Whether a close of the held fd is waiting for this helper: whatever it was doing
    /// failed for that reason, not for the peer's.
    pub(super) fn asked_to_let_go(&self) -> bool {
        self.fd_hold.word.load(Ordering::SeqCst) == HELD_AND_AWAITED
    }
}

#[cfg(test)]
mod tests {
    use super::super::fdtable;
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::{mpsc, Arc};
    use std::time::Duration;

    // Numbers of their own: the fd table is process-wide, shared with other tests running
    // at the same time. Below 4999 (the fd table's own test releases every number from
    // there up, which took a hold here from under this module's tests), above the
    // watchers' tests' (3000..4500).
    const HELD_FD: i32 = 4_801;
    const GONE_FD: i32 = 4_802;
    const DUP_A: i32 = 4_803;
    const DUP_B: i32 = 4_804;

    fn conn() -> Arc<Conn> {
        Arc::new(Conn::new(
            std::net::SocketAddr::from(([203, 0, 113, 10], 80)),
            None,
            true,
            0,
        ))
    }

    fn never_readable() -> [i32; 2] {
        let mut pipe = [0; 2];
        // SAFETY: a two-int array for the pipe's ends.
        assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
        pipe
    }

    #[test]
    fn a_close_wakes_the_holders_poll_and_waits_until_it_lets_go() {
        let conn = conn();
        assert!(fdtable::insert(HELD_FD, conn.clone()));
        let pipe = never_readable();
        let let_go = Arc::new(AtomicBool::new(false));
        let (holding, held) = mpsc::channel();
        let helper = {
            let (conn, let_go) = (conn.clone(), let_go.clone());
            std::thread::spawn(move || {
                let hold = conn.hold_fd(HELD_FD).expect("the fd is the connection's");
                holding.send(()).unwrap();
                let mut entry = libc::pollfd {
                    fd: pipe[0],
                    events: libc::POLLIN,
                    revents: 0,
                };
                let ended = crate::sys::poll_one::poll_one(&mut entry, -1);
                let why = crate::sys::errno();
                let asked = conn.asked_to_let_go();
                let_go.store(true, Ordering::SeqCst);
                drop(hold);
                (ended, why, asked)
            })
        };
        held.recv().unwrap();
        fdtable::release(HELD_FD);
        assert!(
            let_go.load(Ordering::SeqCst),
            "the close went on before the helper let go"
        );
        assert_eq!(helper.join().unwrap(), (-1, libc::ECANCELED, true));
        assert!(
            conn.hold_fd(HELD_FD).is_none(),
            "released: not ours to hold"
        );
        // SAFETY: our own pipe.
        unsafe {
            libc::close(pipe[0]);
            libc::close(pipe[1]);
        }
    }

    #[test]
    fn a_hold_on_a_released_fd_is_refused() {
        let conn = conn();
        assert!(fdtable::insert(GONE_FD, conn.clone()));
        fdtable::release(GONE_FD);
        assert!(conn.hold_fd(GONE_FD).is_none());
        assert!(!conn.asked_to_let_go());
    }

    #[test]
    fn closing_another_fd_of_the_connection_does_not_wait() {
        let conn = conn();
        assert!(fdtable::insert(DUP_A, conn.clone()));
        assert!(fdtable::insert(DUP_B, conn.clone()));
        let hold = conn.hold_fd(DUP_A).expect("ours");
        let (done, finished) = mpsc::channel();
        std::thread::spawn(move || {
            fdtable::release(DUP_B);
            done.send(()).unwrap();
        });
        assert!(
            finished.recv_timeout(Duration::from_secs(10)).is_ok(),
            "the close of the other fd waited for the hold"
        );
        assert!(!conn.asked_to_let_go());
        drop(hold);
        fdtable::release(DUP_A);
    }
}
