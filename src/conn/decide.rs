//! Every decision the connection layer makes, as one pure function: an `Event` (what
//! happened, with the facts the I/O layer found) and the connection's `State` in, an
//! `Action` out. No system call, no lock, no clock here: the I/O layer (`write`, `read`,
//! `recovery`, `connect`, `bypass`, `server_first`) gathers the facts, asks, and carries
//! the action out; the phase then changes as the action's outcome says (`state`).
//!
//! | event | phase (and facts) | action |
//! |---|---|---|
//! | HeadComplete, first request, another peer wanted | at the proxy, https, origin wanted | HandToTls |
//! | HeadComplete, every earlier answer read, origin wanted | Proxied, https, TLS movable | HandToTls (a real session at the origin takes the socket; this head its first bytes) |
//! | HeadComplete, not the first request, every earlier answer read, proxy wanted | TlsOwned, https, the real session followed (a fallback, or the program's own after a direct connect) | Move(proxy): the real session ends (close_notify), the session is virtual again |
//! | HeadComplete, first request or every earlier answer read, another peer wanted | at the proxy or the origin, http | Move(route) |
//! | HeadComplete | otherwise (an answer still unread: pipelining keeps the peer) | Proceed |
//! | NotHttp, first bytes | at the proxy | GoDirect (https: HandToTls) |
//! | NotHttp | otherwise | Passthrough |
//! | SendFailed, reset/pipe/not connected/a connect's failure | answers checked, replayable, (https: TLS movable) | Replay |
//! | SendFailed, reset/pipe/not connected/a connect's failure | answers checked, not replayable (past the cap, or part of its answer read) | Unhideable |
//! | SendFailed | otherwise | Report(errno) |
//! | Answer: closed, reset, `x-lunar-error` | answers checked | Replay, or Unhideable when not replayable (https: TLS not movable) |
//! | Answer: retry asked within bounds | answers checked | Retry{after}, or Unhideable when not replayable |
//! | Answer: not HTTP | answers checked | DeliverBlind |
//! | Answer: a head to deliver | any | Proceed |
//! | PeerLost | answers checked, a request unanswered (all written) | as a closed answer: Replay, or Unhideable |
//! | PeerLost | answers checked, nothing written | ConnectFailed (the proxy lost before the request), or Unhideable (https, TLS not movable) |
//! | PeerLost | answers checked, an answer cut short (its length or chunks say more) | Unhideable (counted; the program sees the end) |
//! | PeerLost | otherwise | Proceed (the program sees the end) |
//! | ConnectErrorSeen reset/refused/timed out/unreachable | at the proxy, nothing written, (https: TLS movable) | ConnectFailed |
//! | ReadBeforeWrite | at the proxy, nothing written, not an https look, (https: TLS movable) | GoDirect (https: HandToTls) |
//! | ServerName | at the proxy, the name not diverted | Move(Origin) |
//! | Unseen (stdio, untrackable fd, io_uring) | at the proxy, idle | GoDirect |
//! | Unseen: stdio | Proxied, a request unanswered | LeaveAtNextRequest (ProxiedBlind, Leaving: Passthrough) |
//! | Unseen: untrackable fd | at the proxy with a request unanswered, or at the origin | Passthrough |
//! | RequestBegins | Leaving | GoDirect |
//! | PeerLost, met before or during a move of the socket | not Passthrough, TlsOwned, Recovering | ReadOn (the end was the old peer's) |
//! | any other | Passthrough, TlsOwned, Recovering | Proceed (nothing to decide) |

pub use super::decision::{Action, Answer, Event, Facts, Reason, Unseen};
use super::state::{Phase, State};
use crate::runtime::Route;
use std::time::Duration;

fn is_connection_loss(errno: i32) -> bool {
    matches!(errno, libc::ECONNRESET | libc::EPIPE | libc::ENOTCONN) || is_connect_failure(errno)
}

/// How a connect that the program did not wait for (`connecting`) can end badly, as
/// SO_ERROR, a repeated connect, the first write or a read tells it.
pub(super) fn is_connect_failure(errno: i32) -> bool {
    matches!(
        errno,
        libc::ECONNREFUSED
            | libc::ECONNABORTED
            | libc::ETIMEDOUT
            | libc::EHOSTUNREACH
            | libc::ENETUNREACH
    )
}

/// The decision for `event` on a connection in `state`.
///
/// Inline where the event is known: every write of a request's first bytes asks about
/// `RequestBegins`, which then costs a comparison instead of a call into the whole table.
#[inline]
pub fn decide(state: &State, facts: Facts, event: Event) -> Action {
    match event {
        Event::RequestBegins => request_begins(state.phase),
        _ => decide_from_table(state, facts, event),
    }
}

/// `RequestBegins`: a connection handed to stdio with a request unanswered leaves the
/// proxy for good at the program's next request; nothing else is decided then.
fn request_begins(phase: Phase) -> Action {
    match phase {
        Phase::Leaving(_) => Action::GoDirect(Reason::HandedToStdio),
        _ => Action::Proceed,
    }
}

#[inline(never)]
fn decide_from_table(state: &State, facts: Facts, event: Event) -> Action {
    let phase = state.phase;
    if matches!(phase, Phase::TlsOwned) {
        if let Some(action) = decide_real_tls(state, facts, event) {
            return action;
        }
    }
    if matches!(
        phase,
        Phase::Passthrough(_) | Phase::TlsOwned | Phase::Recovering(_)
    ) {
        return match event {
            Event::SendFailed { errno } | Event::ConnectErrorSeen { error: errno } => {
                Action::Report(errno)
            }
            _ => Action::Proceed,
        };
    }
    if let Event::PeerLost { seen_at, .. } = event {
        // Met while a move was under way (the count odd), or before one: a move's
        // disconnect resets the old peer under a reader of another thread, which may
        // judge it only after the move, with the next request at the new peer.
        if state.moved_since(seen_at) {
            return Action::ReadOn;
        }
    }
    let at_proxy = phase.proxy().is_some();
    // A virtual TLS session leaves the proxy only into a real session at the origin.
    let can_leave = !state.https || facts.tls_movable;
    let to_origin = |reason| {
        if state.https {
            Action::HandToTls(reason)
        } else {
            Action::GoDirect(reason)
        }
    };
    match event {
        Event::RequestBegins => request_begins(phase),
        Event::HeadComplete {
            first_request,
            idle,
            wanted: Some(wanted),
        } if wanted.is_proxy() != at_proxy => {
            if state.https {
                // A virtual session leaves for a real one at the origin, never in clear
                // text: at its first request (as the filter judges the connect), or at a
                // later boundary with every earlier answer read, when the TLS layer can
                // make the real session.
                if wanted.is_proxy() {
                    Action::Proceed
                } else if first_request {
                    Action::HandToTls(Reason::FilterAtFirstRequest)
                } else if idle && facts.tls_movable && matches!(phase, Phase::Proxied(_)) {
                    Action::HandToTls(Reason::AtRequestBoundary)
                } else {
                    Action::Proceed
                }
            } else if (first_request || idle) && matches!(phase, Phase::Proxied(_) | Phase::Direct)
            {
                // Each request is routed when it is sent, as a new connection would be;
                // one sent behind an unread answer keeps the connection's peer.
                Action::Move(wanted)
            } else {
                Action::Proceed
            }
        }
        Event::HeadComplete { .. } => Action::Proceed,
        Event::NotHttp { first_bytes: true } if at_proxy => to_origin(Reason::NotHttp),
        Event::NotHttp { .. } => Action::Passthrough(Reason::NotHttp),
        // Where the answers are not followed, what was answered is unknown: nothing is
        // sent again.
        Event::SendFailed { errno }
            if is_connection_loss(errno) && phase.checks_answers() && can_leave =>
        {
            if facts.replayable {
                Action::Replay
            } else {
                Action::Unhideable { counted: true }
            }
        }
        Event::SendFailed { errno } => Action::Report(errno),
        Event::Answer(answer) => decide_answer(phase, state.https, facts, answer),
        Event::PeerLost {
            unanswered,
            at_boundary,
            cut_short,
            ..
        } if phase.checks_answers() => {
            if unanswered && at_boundary {
                failure(state.https, facts, None)
            } else if !state.wrote {
                // Dropped before the program wrote anything (an event loop reads as
                // soon as it is connected).
                if can_leave {
                    Action::ConnectFailed
                } else {
                    Action::Unhideable { counted: true }
                }
            } else if cut_short {
                // Part of the answer is the program's already: it sees the end, and the
                // proxy's failure is counted.
                Action::Unhideable { counted: true }
            } else {
                // An idle keep-alive connection the proxy closed, or an answer that ends
                // at the close.
                Action::Proceed
            }
        }
        Event::PeerLost { .. } => Action::Proceed,
        Event::ConnectErrorSeen { error }
            if at_proxy
                && !state.wrote
                && (matches!(error, libc::ECONNRESET | libc::EPIPE)
                    || is_connect_failure(error)) =>
        {
            if can_leave {
                Action::ConnectFailed
            } else {
                Action::Unhideable { counted: true }
            }
        }
        Event::ConnectErrorSeen { error } => Action::Report(error),
        Event::ReadBeforeWrite { looks_only } => {
            if !at_proxy || state.wrote || (looks_only && state.https) || !can_leave {
                Action::Proceed
            } else {
                to_origin(Reason::ServerSpeaksFirst)
            }
        }
        Event::ServerName { diverted: false } if at_proxy => Action::Move(Route::Origin),
        Event::ServerName { .. } => Action::Proceed,
        Event::Unseen { .. } if state.https => Action::Proceed,
        Event::Unseen { how, idle } => decide_unseen(phase, state.wrote, how, idle),
    }
}

/// A socket a real TLS session owns at the origin: a later request that the failsafe
/// lets the proxy have again, with every earlier answer read, ends that session and
/// makes the program's session virtual again, when the real one is followed. `None`:
/// nothing particular (the general rule for `TlsOwned` answers).
fn decide_real_tls(state: &State, facts: Facts, event: Event) -> Option<Action> {
    match event {
        Event::HeadComplete {
            first_request: false,
            idle: true,
            wanted: Some(wanted @ Route::Proxy(_)),
        } if state.https && facts.real_tls_followed => Some(Action::Move(wanted)),
        _ => None,
    }
}

fn decide_answer(phase: Phase, https: bool, facts: Facts, answer: Answer) -> Action {
    if !phase.checks_answers() {
        return Action::Proceed;
    }
    match answer {
        Answer::Closed | Answer::Reset | Answer::LunarError => failure(https, facts, None),
        Answer::RetryAsked { after: Some(after) } => failure(https, facts, Some(after)),
        Answer::RetryAsked { after: None } | Answer::Head => Action::Proceed,
        Answer::NotHttp => Action::DeliverBlind,
    }
}

/// A proxy failure (`retry`: None), or a retry it asked for: hidden when the unanswered
/// requests can be sent again.
fn failure(https: bool, facts: Facts, retry: Option<Duration>) -> Action {
    let counted = retry.is_none();
    if !facts.replayable {
        return Action::Unhideable { counted };
    }
    match retry {
        Some(after) => Action::Retry { after },
        // A replay needs a real session the TLS layer can build from the program's own.
        None if https && !facts.tls_movable => Action::Unhideable { counted },
        None => Action::Replay,
    }
}

fn decide_unseen(phase: Phase, wrote: bool, how: Unseen, idle: bool) -> Action {
    let at_proxy = phase.proxy().is_some();
    match how {
        // The first request could be an io_uring send; what was written went through us.
        Unseen::IoUring if at_proxy && !wrote => Action::GoDirect(Reason::IoUring),
        Unseen::IoUring => Action::Proceed,
        Unseen::Stdio if !at_proxy => Action::Passthrough(Reason::HandedToStdio),
        Unseen::Stdio if idle => Action::GoDirect(Reason::HandedToStdio),
        // The next request boundary can be told only where the answers are followed.
        Unseen::Stdio if matches!(phase, Phase::Proxied(_)) => Action::LeaveAtNextRequest,
        Unseen::Stdio => Action::Passthrough(Reason::HandedToStdio),
        Unseen::UntrackableFd if at_proxy && idle => Action::GoDirect(Reason::UntrackableFd),
        Unseen::UntrackableFd => Action::Passthrough(Reason::UntrackableFd),
    }
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
