//! Hiding a proxy failure, and honouring the proxy's retry protocol.
//!
//! Replay: the same fd moves to the original destination and the unanswered requests go
//! there as the program wrote them. Retry: the same fd gets a fresh proxy connection and,
//! after the delay the proxy asked for, the requests go again with `x-lunar-sequence-id`.
//!
//! The work goes to a short-lived thread of its own: a non-blocking program waits in
//! poll/epoll and will not call us until data arrives, and its reads answer EAGAIN
//! meanwhile; a blocking one waits inside its read, as its own timeouts and signals let
//! it. The answer then arrives on the program's own fd and wakes it as any response
//! would. A virtual TLS session's move is made in the program's thread (`start`).

#[path = "recovery_thread.rs"]
mod background;

use super::decide::{decide, Action, Event};
use super::{fdtable, Conn, Phase};
use crate::runtime::{self, Route, Runtime};
use background::{in_background, IfNoThread};
use std::sync::Arc;
use std::time::Duration;

/// A failure of the proxy (or a retry it asked for) seen by the read path: `event` is
/// what was seen, for `decide`; `why` names it in log lines; `sequence_id` is the
/// proxy's, for a retry.
pub(super) struct Failure {
    pub event: Event,
    pub why: String,
    pub sequence_id: String,
    /// The answer's bytes already taken from the socket (`answer_read`): dropped with a
    /// recovery, the program's to read when the failure cannot be hidden.
    pub taken: Vec<u8>,
}

impl Failure {
    pub(super) fn new(event: Event, why: &str) -> Failure {
        Failure {
            event,
            why: why.to_string(),
            sequence_id: String::new(),
            taken: Vec::new(),
        }
    }
}

pub(super) enum Recovery {
    Replay(String),
    Retry {
        after: Duration,
        sequence_id: String,
    },
}

pub(super) enum Started {
    /// Done in this thread (or nothing was left to do): read on.
    Done,
    /// A helper thread owns the connection until it has resent.
    InBackground,
    /// Cannot be hidden (e.g. the request outgrew the replay copy): deliver as it is.
    NotPossible,
    /// The socket could not be reconnected: the program sees this errno.
    Failed(i32),
}

/// Deals with `failure` as `decide` says: starts a helper thread for it, or does it in the
/// program's thread (for https, and when `in_this_thread`: the caller must find it done).
pub(super) fn start(conn: &Arc<Conn>, fd: i32, failure: Failure, in_this_thread: bool) -> Started {
    let Some(runtime) = runtime::get() else {
        return Started::NotPossible;
    };
    // Program writes wait until the unanswered requests are resent, so order is kept; and
    // a writer thread that met the same failure (Java writes and reads on two threads)
    // may have recovered already: then there is nothing left to do but read on.
    let writer = conn.writer.lock();
    // A recovery under way: the caller waits for it (`waiting`).
    let phase = conn.phase();
    if matches!(phase, Phase::Recovering(_)) || phase.proxy().is_none() {
        return Started::Done;
    }
    let recovery = match decide(&conn.state(), conn.facts(fd), failure.event) {
        Action::Replay => Recovery::Replay(failure.why),
        Action::Retry { after } => Recovery::Retry {
            after,
            sequence_id: failure.sequence_id,
        },
        Action::ConnectFailed => {
            runtime.proxy_failed(&failure.why);
            return finished(leave_for_origin(conn, fd, runtime, "proxy connection lost"));
        }
        Action::Unhideable { counted } => {
            unhideable(conn, runtime, &failure.why, counted);
            return Started::NotPossible;
        }
        Action::ReadOn => return Started::Done,
        _ => return Started::NotPossible,
    };
    // A virtual TLS session belongs to the thread using it: its move happens right here,
    // and only a retry's delay is left to a helper thread. Otherwise the move's connect
    // goes to the helper too, for a blocking program as well: its read then waits for
    // the recovery as for the answer, ended by its own SO_RCVTIMEO and signals
    // (`waiting::wait_for_recovery`), not by an origin that takes 30 s to accept.
    let here = conn.is_https() || in_this_thread;
    match recovery {
        Recovery::Replay(why) if here => {
            runtime.proxy_failed(&why);
            conn.enter(Phase::Recovering(Route::Origin));
            finished(replay_to_origin(conn, fd, runtime))
        }
        Recovery::Retry { after, sequence_id } if here => {
            let Route::Proxy(proxy) = conn.peer() else {
                return finished(replay_to_origin(conn, fd, runtime));
            };
            conn.enter(Phase::Recovering(Route::Proxy(proxy)));
            // Reconnect first: a socket left unconnected during the delay would show the
            // program's poller a hang-up over and over.
            let ends = EndsRecovery(conn);
            match conn.move_to(fd, Route::Proxy(proxy), runtime) {
                Err(errno) => Started::Failed(errno),
                Ok(Route::Origin) => finished(resend_to_origin(conn, fd)),
                Ok(_) => {
                    // A helper thread carries the recovery on.
                    std::mem::forget(ends);
                    drop(writer);
                    in_background(
                        conn,
                        fd,
                        runtime,
                        None,
                        Recovery::Retry { after, sequence_id },
                        IfNoThread::RunHere,
                    )
                }
            }
        }
        recovery => {
            let (target, route) = match &recovery {
                Recovery::Replay(_) => (conn.origin_address(), Route::Origin),
                Recovery::Retry { .. } => match conn.peer() {
                    Route::Proxy(proxy) => (proxy, Route::Proxy(proxy)),
                    Route::Origin => (conn.origin_address(), Route::Origin),
                },
            };
            if let Recovery::Replay(why) = &recovery {
                runtime.proxy_failed(why);
                log::debug!(
                    "{} -> direct (replaying after a proxy failure)",
                    conn.label()
                );
            }
            conn.enter(Phase::Recovering(route));
            if let Err(errno) = conn.begin_move(fd, target) {
                conn.enter(Phase::Passthrough(Route::Origin));
                return Started::Failed(errno);
            }
            drop(writer);
            in_background(
                conn,
                fd,
                runtime,
                Some(route),
                recovery,
                IfNoThread::RunHere,
            )
        }
    }
}

/// A failure (`counted`) or retry that cannot be hidden: said, and the proxy's answers
/// are delivered as they are from now on.
fn unhideable(conn: &Conn, runtime: &Runtime, why: &str, counted: bool) {
    let (answer_begun, replayable) = {
        let responses = conn.responses.lock();
        (
            !responses.tracker.at_message_boundary(),
            responses.inflight.replayable(),
        )
    };
    let reason = if answer_begun {
        "part of its answer has reached the program".to_string()
    } else if conn.is_https() && replayable {
        "this TLS library's session cannot be moved to the origin".to_string()
    } else {
        format!(
            "the request is larger than LUNAR_REPLAY_MAX_BYTES ({} bytes) and cannot be sent again",
            runtime.config.replay_max_bytes
        )
    };
    let then = format!(
        " on the request to {}, but {reason}; the program sees the proxy's answer as it came",
        conn.label()
    );
    if counted {
        runtime.proxy_failed_unhidden(why, &then);
    } else {
        log::warn!("Lunar Proxy asked for a retry{then}");
    }
    conn.responses.lock().stop_checking();
    conn.change(Phase::blind);
}

/// Moves the socket to the origin for a failure before any request (for https the TLS
/// layer's real session takes it there).
pub(super) fn leave_for_origin(
    conn: &Conn,
    fd: i32,
    runtime: &Runtime,
    why: &str,
) -> Result<(), i32> {
    log::debug!("{} -> direct ({why})", conn.label());
    conn.move_to(fd, Route::Origin, runtime)?;
    if conn.is_https() {
        hand_to_tls(conn, fd, &[])
    } else {
        Ok(())
    }
}

fn finished(outcome: Result<(), i32>) -> Started {
    match outcome {
        Ok(()) => Started::Done,
        Err(errno) => Started::Failed(errno),
    }
}

/// The recovery ends where the socket is: the program's calls get the kernel's answers
/// from here on (a connection no longer `Recovering` is left as it is).
fn end_recovery(conn: &Conn) {
    conn.change(|phase| match phase {
        Phase::Recovering(route) => Phase::Passthrough(route),
        other => other,
    });
}

/// What became of a send to the proxy that failed (`rescue_send`).
pub(super) enum Rescue {
    /// Not a failure to hide (or the move could not begin): the program sees the error.
    No,
    /// Moved and resent in this thread (https): the program's write goes on.
    Here,
    /// A helper thread moves the socket and resends; the rest of the program's write
    /// waits for it, as its own timeouts and signals let it.
    InBackground,
}

/// A send to the proxy failed with `errno` while the program was writing its request
/// (the proxy reset or closed the connection): when that is a proxy failure and the
/// request can be sent again, the socket moves to the original destination, what was sent
/// so far goes there, and the program's write goes on. The caller holds the writer lock.
/// The move's connect goes to a helper thread (an origin that takes 30 s to accept must
/// not hold the program's write past its SO_SNDTIMEO, nor an event loop at all); for
/// https it is made here, and the bytes sent so far go into a real TLS session
/// (`hand_to_tls`): the caller must then stop, the rest of the program's write goes there
/// too, through the program's TLS call.
pub(super) fn rescue_send(conn: &Conn, fd: i32, errno: i32) -> Rescue {
    let action = decide(&conn.state(), conn.facts(fd), Event::SendFailed { errno });
    if !matches!(action, Action::Replay | Action::Unhideable { .. }) {
        return Rescue::No;
    }
    let Some(runtime) = runtime::get() else {
        return Rescue::No;
    };
    let reason = std::io::Error::from_raw_os_error(errno);
    let why = format!("proxy connection lost while sending: {reason}");
    if action != Action::Replay {
        let then = format!(
            " on the request to {}, but it is larger than LUNAR_REPLAY_MAX_BYTES and cannot be sent again; the program sees the error",
            conn.label()
        );
        runtime.proxy_failed_unhidden(&why, &then);
        // The program sees this connection's errors from now on, each counted once.
        conn.responses.lock().stop_checking();
        conn.change(Phase::blind);
        return Rescue::No;
    }
    runtime.proxy_failed(&why);
    log::debug!(
        "{} -> direct (replaying after a proxy failure)",
        conn.label()
    );
    conn.enter(Phase::Recovering(Route::Origin));
    // The helper thread needs the connection itself; the fd table holds it (a number
    // reused behind our back is found by the move's own check).
    let shared = fdtable::get(fd).filter(|shared| std::ptr::eq(&**shared, conn));
    let Some(shared) = shared.filter(|_| !conn.is_https()) else {
        let _ends = EndsRecovery(conn);
        return match replay_moves(conn, fd, runtime) {
            Ok(()) => Rescue::Here,
            Err(_) => Rescue::No,
        };
    };
    if conn.begin_move(fd, conn.origin_address()).is_err() {
        conn.enter(Phase::Passthrough(Route::Origin));
        return Rescue::No;
    }
    let recovery = Recovery::Replay(why);
    let no_thread = IfNoThread::LeaveToCaller;
    match in_background(
        &shared,
        fd,
        runtime,
        Some(Route::Origin),
        recovery,
        no_thread,
    ) {
        Started::InBackground => Rescue::InBackground,
        _ => {
            let _ends = EndsRecovery(conn);
            let moved = conn.finish_move(fd, Route::Origin, runtime);
            match moved.and_then(|_| resend_direct(conn, fd)) {
                Ok(()) => Rescue::Here,
                Err(_) => Rescue::No,
            }
        }
    }
}

/// The move and resend of a replay (the phase is `Recovering`).
fn replay_moves(conn: &Conn, fd: i32, runtime: &Runtime) -> Result<(), i32> {
    conn.move_to(fd, Route::Origin, runtime)?;
    resend_to_origin(conn, fd)
}

fn resend_retry(conn: &Conn, fd: i32, sequence_id: &str) -> Result<(), i32> {
    log::debug!(
        "{} -> proxy (retry, x-lunar-sequence-id: {sequence_id})",
        conn.label()
    );
    let bytes = {
        let mut responses = conn.responses.lock();
        responses.restart_tracking();
        responses.inflight.retry_bytes(sequence_id)
    };
    ready_for_the_answer(conn);
    send_all(conn, fd, &bytes)
}

fn replay_to_origin(conn: &Conn, fd: i32, runtime: &Runtime) -> Result<(), i32> {
    log::debug!(
        "{} -> direct (replaying after a proxy failure)",
        conn.label()
    );
    let _ends = EndsRecovery(conn);
    replay_moves(conn, fd, runtime)
}

/// A recovery this thread carries out: ended (`end_recovery`) when dropped, after a
/// failed move or resend, and when the thread unwinds in the middle (the program
/// cancelling it, a panic), so that no other thread of the program waits for it for ever.
/// One that succeeded has left `Recovering` already (`ready_for_the_answer`, `hand_to_tls`):
/// nothing to end. Dropped before the writer lock the recovery holds.
struct EndsRecovery<'a>(&'a Conn);

impl Drop for EndsRecovery<'_> {
    fn drop(&mut self) {
        end_recovery(self.0);
    }
}

/// After a move to the original destination: the kept requests go there as the program
/// wrote them; for https, inside a real TLS session the TLS layer makes from the
/// program's own (its trust store and verify settings decide, as without us).
fn resend_to_origin(conn: &Conn, fd: i32) -> Result<(), i32> {
    if !conn.is_https() {
        return resend_direct(conn, fd);
    }
    let bytes = { conn.responses.lock().take_for_direct_resend() };
    hand_to_tls(conn, fd, &bytes)
}

/// The TLS layer takes the socket for a real session and sends `replay` in it.
pub(super) fn hand_to_tls(conn: &Conn, fd: i32, replay: &[u8]) -> Result<(), i32> {
    conn.enter(Phase::TlsOwned);
    super::tls_handoff::take_over(fd, replay)
}

fn resend_direct(conn: &Conn, fd: i32) -> Result<(), i32> {
    let bytes = { conn.responses.lock().take_for_direct_resend() };
    ready_for_the_answer(conn);
    send_all(conn, fd, &bytes)
}

/// The answer can arrive as soon as the requests leave, and an edge-triggered poller
/// reports it once: from here on the program's reads must reach the socket. The
/// recovery's phase ends where the socket now is.
fn ready_for_the_answer(conn: &Conn) {
    conn.change(|phase| match phase {
        recovering @ Phase::Recovering(_) => recovering.after_recovery(),
        other => other,
    });
}

/// The unanswered requests, resent on the moved socket; then the program's half-close, if
/// it had made one.
fn send_all(conn: &Conn, fd: i32, bytes: &[u8]) -> Result<(), i32> {
    super::send_all::send_all(conn, fd, bytes, libc::MSG_NOSIGNAL)?;
    conn.shut_writing_again(fd);
    Ok(())
}
