//! Waiting on the program's behalf, as its own call would have waited.
//!
//! A program blocked in a read or write of a diverted socket may wait for us (a recovery
//! owns the socket). That wait is a futex wait, and it ends as the program's call would:
//! at its `SO_RCVTIMEO` or `SO_SNDTIMEO` (EAGAIN), or when a signal handler runs and the
//! call would not have been restarted. The kernel itself applies that rule to the futex
//! wait (signal(7)): one without a timeout is restarted after a handler installed with
//! `SA_RESTART` and ends with EINTR after any other, as a socket call without a timeout;
//! one with a timeout ends with EINTR after every handler, as a socket call with
//! `SO_RCVTIMEO`. A blocking read before the program's first write waits a moment for
//! input before it is judged (`server_first`): a poll of the socket, which no handler
//! restarts, so its EINTR is judged by the handlers installed (`signal_ends_call`).
//! Waiting for the proxy's answer itself needs none of this: it is a blocking peek of the
//! program's socket (`next_answer::check_next`), whose ends are the kernel's own.

use super::Conn;
use crate::sync::WaitEnd;
use crate::sys;
use libc::c_int;
use std::time::{Duration, Instant};

/// Which of the program's calls waits: its timeout option differs.
#[derive(Clone, Copy)]
pub(super) enum Direction {
    Read,
    Write,
}

/// Waits while a recovery owns the socket. `Err(errno)`: the program's call ends now. An
/// interruption is the program's EINTR as it comes: the kernel restarted the wait where
/// the program's call would have been restarted (see the module's comment).
pub(super) fn wait_for_recovery(conn: &Conn, fd: c_int, direction: Direction) -> Result<(), c_int> {
    let deadline = call_timeout(fd, direction).map(|timeout| Instant::now() + timeout);
    match conn.recovery.wait(deadline) {
        WaitEnd::Done => Ok(()),
        WaitEnd::TimedOut => Err(libc::EAGAIN),
        WaitEnd::Interrupted => Err(libc::EINTR),
    }
}

/// Waits up to `limit`, and no longer than the socket's SO_RCVTIMEO, for input on `fd`
/// (or its end). `Ok(false)`: none came. `Err(EINTR)`: a signal handler ran and the
/// program's read would have ended there.
pub(super) fn wait_for_input(fd: c_int, limit: Duration) -> Result<bool, c_int> {
    let timeout = call_timeout(fd, Direction::Read);
    let deadline = Instant::now() + timeout.map_or(limit, |timeout| timeout.min(limit));
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let millis = left.as_micros().div_ceil(1000).min(c_int::MAX as u128) as c_int;
        let mut entry = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let ready = unsafe { sys::poll(&mut entry, 1, millis) };
        if ready >= 0 || sys::errno() != libc::EINTR {
            return Ok(ready != 0);
        }
        if signal_ends_call(timeout.is_some()) {
            return Err(libc::EINTR);
        }
    }
}

/// A read of `conn`'s plaintext through a session of the program's TLS library that set a
/// receive timeout (`limit`): whether input came (or is held already) before it passed.
/// `Err(EINTR)`: a signal handler ran and the program's read would have ended there.
pub fn input_within(conn: &super::Conn, fd: c_int, limit: Duration) -> Result<bool, c_int> {
    if conn.plaintext_waiting() {
        return Ok(true);
    }
    wait_for_input(fd, limit)
}

/// The socket's SO_RCVTIMEO or SO_SNDTIMEO; `None` when unset (wait for ever).
fn call_timeout(fd: c_int, direction: Direction) -> Option<Duration> {
    let name = match direction {
        Direction::Read => libc::SO_RCVTIMEO,
        Direction::Write => libc::SO_SNDTIMEO,
    };
    let mut value = libc::timeval {
        tv_sec: 0,
        tv_usec: 0,
    };
    let mut len = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
    // SAFETY: value/len describe a timeval-sized buffer.
    let rc = unsafe {
        sys::getsockopt(
            fd,
            libc::SOL_SOCKET,
            name,
            (&mut value as *mut libc::timeval).cast(),
            &mut len,
        )
    };
    let timeout = Duration::from_secs(value.tv_sec.max(0) as u64)
        + Duration::from_micros(value.tv_usec.max(0) as u64);
    (rc == 0 && !timeout.is_zero()).then_some(timeout)
}

/// A signal handler ran while we waited: would the program's own socket call have
/// returned EINTR? Linux never restarts a socket call that has a timeout; otherwise it
/// restarts after handlers installed with SA_RESTART. Which signal arrived is not known
/// here, so any handler installed without SA_RESTART counts (the program was prepared
/// for EINTR from that one).
fn signal_ends_call(has_timeout: bool) -> bool {
    has_timeout || (1..libc::SIGRTMAX()).any(handler_without_restart)
}

fn handler_without_restart(signal: c_int) -> bool {
    if signal == libc::SIGKILL || signal == libc::SIGSTOP {
        return false;
    }
    // SAFETY: sigaction is plain data; a null new action only reads the current one.
    let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer; signals that do not exist fail with EINVAL.
    if unsafe { libc::sigaction(signal, std::ptr::null(), &mut current) } != 0 {
        return false;
    }
    let handler = current.sa_sigaction;
    handler != libc::SIG_DFL && handler != libc::SIG_IGN && current.sa_flags & libc::SA_RESTART == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socket_pair() -> (c_int, c_int) {
        let mut fds = [0; 2];
        // SAFETY: a valid out-array of two fds.
        let rc = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) };
        assert_eq!(rc, 0);
        (fds[0], fds[1])
    }

    fn close(fd: c_int) {
        // SAFETY: a socket of the test's own.
        unsafe { libc::close(fd) };
    }

    #[test]
    fn input_or_the_peers_end_ends_the_wait() {
        let (ours, peer) = socket_pair();
        assert_eq!(wait_for_input(ours, Duration::from_millis(20)), Ok(false));
        // SAFETY: one byte from a valid buffer.
        assert_eq!(unsafe { libc::write(peer, b"x".as_ptr().cast(), 1) }, 1);
        assert_eq!(wait_for_input(ours, Duration::from_secs(60)), Ok(true));
        let (quiet, gone) = socket_pair();
        close(gone);
        assert_eq!(wait_for_input(quiet, Duration::from_secs(60)), Ok(true));
        for fd in [ours, peer, quiet] {
            close(fd);
        }
    }

    #[test]
    fn the_sockets_receive_timeout_ends_the_wait_sooner() {
        let (ours, peer) = socket_pair();
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: 10_000,
        };
        // SAFETY: a timeval-sized option value.
        let rc = unsafe {
            libc::setsockopt(
                ours,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0);
        let started = Instant::now();
        assert_eq!(wait_for_input(ours, Duration::from_secs(5)), Ok(false));
        // Not a speed check: a wait that ignored the timeout would last the full 5 s.
        assert!(started.elapsed() < Duration::from_secs(4));
        close(ours);
        close(peer);
    }
}
