//! The part of a recovery left to a short-lived thread of its own (`recovery::start`
//! decides which): a non-blocking program's move finished, a retry's delay waited out, the
//! requests resent, while the program's reads answer EAGAIN. The thread holds the
//! program's fd number throughout (`fd_hold`), starts with every signal blocked, and a
//! panic of ours in it ends the recovery rather than leaving the program waiting.

use super::{end_recovery, resend_direct, resend_retry, Recovery, Started};
use crate::conn::{watchers, Conn};
use crate::runtime::{Route, Runtime};
use std::sync::Arc;

/// The program let go of `fd` while a recovery held it: nothing more is sent; the
/// connection leaves `Recovering`, so that a dup of it still open is not kept waiting.
/// Not a failure to report: the recovery simply has no one left to serve.
fn abandoned(conn: &Conn, fd: i32) -> Result<(), i32> {
    log::debug!(
        "{}: fd {fd} closed by the program during the recovery; nothing resent",
        conn.label()
    );
    end_recovery(conn);
    Ok(())
}

/// What `in_background` does when no thread can be made.
pub(super) enum IfNoThread {
    /// The job runs in the caller's thread (which holds no lock the job takes).
    RunHere,
    /// Nothing is done: the caller, holding the writer lock, finishes the job itself.
    LeaveToCaller,
}

/// Hands the rest of a recovery to a short-lived thread, which owns the socket (its
/// `recovery` gate raised) until the requests are resent. `finish_move`: a move that
/// `begin_move` started, to be finished there first. The job takes the writer lock to
/// resend: a caller that holds it lets go soon (it must not wait for the job with it),
/// and takes the job back when no thread can be made (`IfNoThread::LeaveToCaller`).
pub(super) fn in_background(
    conn: &Arc<Conn>,
    fd: i32,
    runtime: &'static Runtime,
    finish_move: Option<Route>,
    recovery: Recovery,
    if_no_thread: IfNoThread,
) -> Started {
    let job_conn = conn.clone();
    let job = move || {
        let _inside = crate::guard::Reentry::enter();
        let conn = &job_conn;
        // Every call below is on the program's fd number: held, so that the program's
        // close of it waits for this thread rather than the number changing under it.
        let Some(held) = conn.hold_fd(fd) else {
            let _ = abandoned(conn, fd);
            return;
        };
        let finished = crate::guard::shielded(
            || {
                resend_in_background(conn, fd, runtime, finish_move, recovery);
                true
            },
            || false,
        );
        if !finished {
            give_up(conn, fd);
        }
        drop(held);
    };
    // The job is kept by the builder until the thread runs it; a thread that cannot be
    // made runs it here instead: the program waits, and only a close of the fd by another
    // of its threads ends a retry's delay early (not its timeouts or signals, which have
    // no helper to leave the job to), but its requests are not lost.
    let job = std::sync::Arc::new(crate::sync::SpinLock::new(Some(job)));
    let for_thread = job.clone();
    let spawned = without_signals(|| {
        #[cfg(feature = "race-probe")]
        if crate::race_probe::refuse_a_thread() {
            return Err(std::io::Error::from_raw_os_error(libc::EAGAIN));
        }
        std::thread::Builder::new()
            .name("lunar-recovery".into())
            .spawn(move || {
                if let Some(job) = for_thread.lock().take() {
                    job();
                }
            })
    });
    match (spawned, if_no_thread) {
        (Ok(_), _) => Started::InBackground,
        (Err(_), IfNoThread::LeaveToCaller) => Started::NotPossible,
        (Err(_), IfNoThread::RunHere) => {
            if let Some(job) = job.lock().take() {
                job();
            }
            Started::Done
        }
    }
}

/// The helper thread's part of a recovery, the fd held: the move finished, a retry's
/// delay waited out, the requests resent.
fn resend_in_background(
    conn: &Conn,
    fd: i32,
    runtime: &Runtime,
    finish_move: Option<Route>,
    recovery: Recovery,
) {
    let ended = match finish_move {
        Some(route) => conn.finish_move(fd, route, runtime),
        None => Ok(conn.peer()),
    };
    let outcome = ended.and_then(|ended| match (recovery, ended) {
        (Recovery::Retry { after, sequence_id }, Route::Proxy(_)) => {
            // A wait of this helper thread, in the kernel; cut short when the program
            // closes the fd (its own timeout, usually): the number may name another
            // socket by the time the delay is over.
            if !conn.wait_while_fd_ours(fd, std::time::Instant::now() + after) {
                return abandoned(conn, fd);
            }
            let _writer = conn.writer.lock();
            if !conn.still_ours(fd) {
                return abandoned(conn, fd);
            }
            resend_retry(conn, fd, &sequence_id)
        }
        _ => {
            let _writer = conn.writer.lock();
            // The move's connect took time the program may have used to close the fd.
            if !conn.still_ours(fd) {
                return abandoned(conn, fd);
            }
            #[cfg(feature = "race-probe")]
            crate::race_probe::before_background_resend();
            #[cfg(feature = "race-probe")]
            crate::race_probe::maybe_panic_in_a_helper();
            resend_direct(conn, fd)
        }
    });
    if outcome.is_err() && conn.asked_to_let_go() {
        let _ = abandoned(conn, fd);
    } else if let Err(errno) = outcome {
        log::warn!(
            "could not resend to {}: {}",
            conn.label(),
            std::io::Error::from_raw_os_error(errno)
        );
        // The program's calls get the kernel's answers from here on (a failed move's
        // connect error first: `Conn::after_move`).
        end_recovery(conn);
    }
    watchers::report_again(fd);
}

/// After a panic of ours in the helper thread (a bug, logged by `shielded`): the requests
/// will not be resent, so the program must not wait for them. The socket is left
/// unconnected and the kernel's, as after a failed move: the program's next call gets its
/// error, and its waits end (a hang-up).
#[cold]
fn give_up(conn: &Conn, fd: i32) {
    crate::sys::socket::disconnect(fd);
    end_recovery(conn);
}

/// Runs `spawn` with every signal blocked, so that the thread it makes starts (and
/// stays) with all of them blocked: the program's signals are delivered to its own
/// threads, as without us (a handler run on our thread would not interrupt the program's
/// blocking call it was meant for, and a close in it would wait for this very thread).
fn without_signals<R>(spawn: impl FnOnce() -> R) -> R {
    // SAFETY: sigset_t is plain data; sigfillset initialises it.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut before: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid sigset pointers; the mask is restored below.
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut before);
    }
    let result = spawn();
    // SAFETY: restores the mask read above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &before, std::ptr::null_mut()) };
    result
}

#[cfg(test)]
mod tests {
    use super::without_signals;

    fn blocked(signal: i32) -> bool {
        // SAFETY: sigset_t is plain data, filled by pthread_sigmask.
        let mut now: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: a null new mask only reads the current one.
        unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut now) };
        // SAFETY: a valid set.
        unsafe { libc::sigismember(&now, signal) == 1 }
    }

    #[test]
    fn the_helper_thread_blocks_every_signal_and_the_caller_keeps_its_mask() {
        let before = [libc::SIGALRM, libc::SIGTERM, libc::SIGCHLD, libc::SIGUSR1].map(blocked);
        let helper = without_signals(|| {
            std::thread::spawn(|| {
                [libc::SIGALRM, libc::SIGTERM, libc::SIGCHLD, libc::SIGUSR1].map(blocked)
            })
        });
        assert_eq!(helper.join().unwrap(), [true; 4]);
        let after = [libc::SIGALRM, libc::SIGTERM, libc::SIGCHLD, libc::SIGUSR1].map(blocked);
        assert_eq!(before, after);
        assert_eq!(after, [false; 4], "the test thread blocks none of them");
    }
}
