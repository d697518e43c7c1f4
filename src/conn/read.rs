//! The program reads. Responses pass through unchanged; two things need care: a protocol
//! whose server speaks first (`server_first`), and errors left over from a peer we moved
//! away from.

use super::answer_read::{judge_raced_read, read_and_judge, Judged};
use super::decide::{is_connect_failure, Event};
use super::next_answer::{check_next, Next};
use super::recovery::{self, Failure, Started};
use super::server_first::reads_before_writing;
use super::told_ready::{nonblocking_by_flag_alone, wait_for_the_head};
use super::waiting::{wait_for_recovery, Direction};
use super::{AppBuffer, Conn, Phase};
use crate::sys;
use libc::c_int;
use std::hint::cold_path;
use std::sync::Arc;

/// The program's read (any of read/recv/recvfrom/readv/recvmsg and the fortified ones) on
/// a tracked fd, into `buffer`; `real` performs the program's own call. `handshake_holds`:
/// a TLS handshake of this thread bound `fd` (`tls::holds_reads`).
///
/// Never inlined: one copy serves every hook (the build's profile would otherwise copy it
/// into the hottest, 24 KiB more code for an https process to keep resident).
#[inline(never)]
pub fn receive(
    conn: &Arc<Conn>,
    fd: c_int,
    flags: c_int,
    buffer: AppBuffer,
    handshake_holds: bool,
    real: &mut dyn FnMut() -> isize,
) -> isize {
    let state = conn.state();
    if handshake_holds || matches!(state.phase, Phase::TlsOwned) {
        cold_path();
        sys::set_errno(libc::EAGAIN);
        return -1;
    }
    if matches!(state.phase, Phase::Passthrough(_)) {
        cold_path();
        if let Some(errno) = conn.take_left_error(&state) {
            sys::set_errno(errno);
            return -1;
        }
        return real();
    }
    if buffer.is_empty() {
        cold_path();
        // A read of no bytes returns at once whatever is on its way (0, or the socket's
        // error): it takes nothing there is to judge.
        return real();
    }
    // Asked of the kernel once per call, and only when needed.
    let mode = std::cell::OnceCell::new();
    let nonblocking = || *mode.get_or_init(|| is_nonblocking(fd, flags));
    // The look above serves the first round unless something ran that may change it.
    let mut first_look = Some(state);
    if !state.wrote && !nonblocking() {
        cold_path();
        first_look = None;
        if let Err(errno) = reads_before_writing(conn, fd) {
            sys::set_errno(errno);
            return -1;
        }
    }
    let peek = flags & libc::MSG_PEEK != 0;
    // A failure found in bytes a read got while a move raced it: dealt with as any other.
    let mut raced_failure = None;
    loop {
        // Taken before the checks below: a move after them, or a request recorded after
        // them (another thread of the program writing), is seen after the read.
        let state = first_look.take().unwrap_or_else(|| conn.state());
        let epoch = state.moves;
        let recorded = conn.requests_recorded();
        let phase = state.phase;
        if matches!(phase, Phase::TlsOwned) {
            cold_path();
            // A recovery just gave the socket to a real TLS session: the program's TLS
            // call reads from that session now.
            sys::set_errno(libc::EAGAIN);
            return -1;
        }
        if matches!(phase, Phase::Recovering(_)) {
            cold_path();
            let waited = if nonblocking() {
                Err(libc::EAGAIN)
            } else {
                wait_for_recovery(conn, fd, Direction::Read)
            };
            match waited {
                Ok(()) => continue,
                Err(errno) => {
                    sys::set_errno(errno);
                    return -1;
                }
            }
        }
        if let Some(count) = conn.serve_held(buffer, peek) {
            return count;
        }
        // The start of an answer: read and judged in the program's own read.
        let judged = if let Some(failure) = raced_failure.take() {
            Judged::Failure(failure)
        } else if peek {
            Judged::NotAtHead
        } else {
            read_and_judge(conn, buffer, real)
        };
        let failure = match judged {
            Judged::Return(count) => return count,
            Judged::HeadInPieces => {
                // Bytes were there, but not the whole head: a program that was told so
                // and reads by MSG_DONTWAIT alone gets the rest, not EAGAIN.
                if nonblocking_by_flag_alone(fd, flags) {
                    cold_path();
                    if let Some(count) = wait_for_the_head(conn, fd) {
                        return count;
                    }
                }
                continue;
            }
            Judged::Failure(failure) => Some(failure),
            Judged::NotAtHead => match check_next(conn, fd, &|| !nonblocking()) {
                Next::Deliver => None,
                Next::Held => continue,
                Next::Wait(errno) => {
                    sys::set_errno(errno);
                    return -1;
                }
                Next::Failure(failure) => Some(failure),
            },
        };
        if let Some(mut failure) = failure {
            cold_path();
            let taken = std::mem::take(&mut failure.taken);
            match recovery::start(conn, fd, failure, false) {
                // The answer to the resent request gets the same scrutiny.
                Started::Done => continue,
                // The answer goes to the program as it came, what was taken first.
                Started::NotPossible if !taken.is_empty() => {
                    conn.responses.lock().held = taken;
                    continue;
                }
                Started::NotPossible => {}
                // The failure was in bytes this read found: one by MSG_DONTWAIT alone
                // waits for the answer to the request sent again (`told_ready`).
                Started::InBackground if nonblocking() && !nonblocking_by_flag_alone(fd, flags) => {
                    sys::set_errno(libc::EAGAIN);
                    return -1;
                }
                Started::InBackground if nonblocking() => {
                    if let Some(count) = wait_for_the_head(conn, fd) {
                        return count;
                    }
                    continue;
                }
                // A blocking read waits for the recovery as for the answer.
                Started::InBackground => continue,
                // A failed TLS fallback ends the plaintext stream; the program's TLS call
                // then reports its library's own error (a certificate it rejects), not a
                // socket error of ours.
                Started::Failed(_) if matches!(conn.phase(), Phase::TlsOwned) => return 0,
                Started::Failed(errno) => {
                    conn.take_left_error(&conn.state());
                    sys::set_errno(errno);
                    return -1;
                }
            }
        }
        #[cfg(feature = "race-probe")]
        crate::race_probe::before_read(buffer.capacity());
        let got = real();
        // A move began or ended since the checks, or a request was recorded: the bytes may
        // begin an answer they could not see due (the new peer's, or the answer to that
        // request). A peek looks again (once per change: the epoch of a move still under
        // way stays the same), a read has them judged now.
        if got > 0 && (conn.epoch() != epoch || conn.requests_recorded() != recorded) {
            if peek {
                continue;
            }
            match judge_raced_read(conn, buffer, got as usize) {
                Some(Judged::Failure(failure)) => {
                    raced_failure = Some(failure);
                    continue;
                }
                Some(Judged::HeadInPieces) => continue,
                Some(Judged::Return(count)) => return count,
                Some(Judged::NotAtHead) | None => {}
            }
        }
        if got > 0 && !peek {
            conn.track_delivered(buffer, got as usize);
        }
        if got < 0 && is_connect_failure(sys::errno()) && conn.is_diverted() {
            cold_path();
            // A read before the program waited for its connect: the proxy's refusal is
            // met here, as a wait or SO_ERROR would have met it.
            match connect_failed_under_read(conn, fd, sys::errno()) {
                0 if nonblocking() => sys::set_errno(libc::EAGAIN),
                0 => continue,
                errno => sys::set_errno(errno),
            }
            return -1;
        }
        let lost_peer = got == 0
            || (got < 0
                && matches!(
                    sys::errno(),
                    libc::ECONNRESET | libc::ENOTCONN | libc::EPIPE
                ));
        #[cfg(feature = "race-probe")]
        if lost_peer {
            crate::race_probe::after_an_end(buffer.capacity());
        }
        if lost_peer && conn.is_diverted() {
            let errno = sys::errno();
            if proxy_lost_under_read(conn, fd, false, epoch) {
                if nonblocking() {
                    sys::set_errno(libc::EAGAIN);
                    return -1;
                }
                continue;
            }
            sys::set_errno(errno);
            return got;
        }
        if !lost_peer || !conn.moved_since(epoch) {
            return got;
        }
        // The old peer's end surfaced in a read that raced our move; the new peer is
        // the program's connection now.
        if nonblocking() {
            sys::set_errno(libc::EAGAIN);
            return -1;
        }
    }
}

/// A read met the failure of a connect to the proxy the program had not waited for:
/// dealt with as SO_ERROR's would be (`connect_error_seen`: the socket moves to the
/// origin, 0). Other connect failures, and the errors of a connect that was not ours,
/// are the program's (returned).
#[cold]
#[inline(never)]
fn connect_failed_under_read(conn: &Conn, fd: c_int, error: c_int) -> c_int {
    if !super::connecting::is_pending(conn) {
        return error;
    }
    super::connect_error_seen(conn, fd, error)
}

/// A wait (poll, epoll) reported an error or hang-up on `fd`, which still has it. When
/// that is the proxy failing a diverted socket, it is handled as a read would have met
/// it, without blocking the waiting thread, and the event should be hidden: returns true.
/// An event loop that gives up on ERR/HUP never reads, so the read path alone would
/// leave it with the proxy's failure.
pub fn proxy_lost_under_wait(conn: &Arc<Conn>, fd: c_int, seen_at: u32) -> bool {
    if !conn.state().proxy_end_is_ours() {
        return false;
    }
    if super::connecting::is_pending(conn) {
        return connect_failed_under_wait(conn, fd, seen_at);
    }
    // An answer still unread is the program's: it reads that first and then meets the
    // loss in a read.
    if unread_bytes(fd) != 0 || conn.plaintext_waiting() {
        return false;
    }
    proxy_lost_under_read(conn, fd, false, seen_at)
}

/// The wait's hang-up is a connect to the proxy that the program did not wait for
/// failing: its error, taken from the socket, is the one SO_ERROR would have shown. Taken
/// only from our own socket (not a number reused behind our back); at the proxy with
/// nothing written, `connect_error_seen` then moves it for every error a TCP connect ends
/// with (refused, reset, timed out, unreachable), so the program never needs that error.
#[cold]
#[inline(never)]
fn connect_failed_under_wait(conn: &Arc<Conn>, fd: c_int, seen_at: u32) -> bool {
    if !conn.still_ours(fd) {
        return false;
    }
    match crate::sys::socket::socket_option(fd, libc::SO_ERROR) {
        Some(error) if error != 0 => super::connect_error_seen(conn, fd, error) == 0,
        // Connected, and then lost: as any hang-up before the request.
        _ => proxy_lost_under_read(conn, fd, false, seen_at),
    }
}

/// The program's `shutdown` of diverted `fd` failed with ENOTCONN: the proxy reset the
/// connection after the request was written (or before). The failure is handled here, in
/// the program's thread (a replay is sent before the half-close that follows, so it must
/// not be left to a background thread); true when the program's shutdown should be made
/// again, on the new connection.
pub fn proxy_lost_under_shutdown(conn: &Arc<Conn>, fd: c_int) -> bool {
    let state = conn.state();
    if !state.proxy_end_is_ours() {
        return false;
    }
    // The shutdown was made before this count was taken: a move under way shows, one
    // between the two does not (the program's own thread writes, and moves, rarely then).
    proxy_lost_under_read(conn, fd, true, state.moves)
}

pub(super) fn unread_bytes(fd: c_int) -> c_int {
    let mut count: c_int = 0;
    // SAFETY: FIONREAD writes one int.
    let rc = unsafe { sys::ioctl(fd, libc::FIONREAD, (&mut count as *mut c_int).cast()) };
    if rc < 0 {
        -1
    } else {
        count
    }
}

/// A read on a diverted socket found the proxy gone (EOF or reset). Returns true when that
/// was hidden and the program should read again (from the new peer). `seen_at`: the move
/// count taken before the end was met (`Event::PeerLost`); `in_this_thread`: the recovery
/// is done before this returns (`recovery::start`).
fn proxy_lost_under_read(conn: &Arc<Conn>, fd: c_int, in_this_thread: bool, seen_at: u32) -> bool {
    // An end or error of what the number names now, if it is no longer our socket.
    if !conn.still_ours(fd) {
        return false;
    }
    // A writer thread of the program (Java writes and reads on two threads) may be
    // meeting the same failure right now and moving the socket: `start` takes the writer
    // lock first, and finds nothing left to do if it did.
    let (unanswered, at_boundary, cut_short) = {
        let mut responses = conn.responses.lock();
        let tracker = &responses.tracker;
        let (unanswered, at_boundary) = (
            tracker.pending_requests() > 0,
            tracker.at_message_boundary(),
        );
        let ends_here = tracker.can_end_here();
        if unanswered && !at_boundary && ends_here && conn.phase().checks_answers() {
            // An answer whose body ends at the close: read to its end.
            responses.answered(true);
        }
        (unanswered, at_boundary, !at_boundary && !ends_here)
    };
    let event = Event::PeerLost {
        unanswered,
        at_boundary,
        cut_short,
        seen_at,
    };
    let why = if cut_short {
        "proxy closed the connection in the middle of an answer"
    } else if unanswered {
        "proxy closed the connection before answering"
    } else {
        "proxy connection lost before the request: connection reset"
    };
    match recovery::start(conn, fd, Failure::new(event, why), in_this_thread) {
        Started::Done | Started::InBackground => true,
        Started::NotPossible | Started::Failed(_) => false,
    }
}

pub(super) fn is_nonblocking(fd: c_int, flags: c_int) -> bool {
    if flags & libc::MSG_DONTWAIT != 0 {
        return true;
    }
    // SAFETY: F_GETFL takes no argument.
    let status = unsafe { sys::fcntl(fd, libc::F_GETFL, 0) };
    status >= 0 && status & libc::O_NONBLOCK != 0
}
