//! Where a request goes: each request head is routed as a new connection would be (the
//! filter, with the head's `Host` and `x-lunar-allow`, and the failsafe), and the socket
//! moves before the head leaves when that calls for another peer (`write`, `tls_plain`).

use super::decide::{decide, Action, Event, Facts};
use super::{lunar_headers, Conn};
use crate::http::RequestHead;
use crate::policy::filter::{Destination, Verdict};
use crate::runtime::{self, Route, Runtime};
use libc::c_int;

/// Where a request head goes.
#[derive(Clone, Copy)]
pub(super) enum Settled {
    /// Where the socket now is.
    At(Route),
    /// To the origin inside a real TLS session (https), the head its first bytes.
    HandToTls,
}

/// Each request is routed as a new connection would be: the filter (its `Host`, its
/// `x-lunar-allow`) and the failsafe. When that calls for another peer than the socket's
/// and nothing sent before is unanswered, the socket moves before the head leaves (for
/// the first request, only when the head changes the filter's verdict of the connect,
/// made a moment ago). A request behind an unread answer keeps the connection's peer.
pub(super) fn settle_route(
    conn: &Conn,
    fd: c_int,
    head: &RequestHead<'_>,
    first_request: bool,
) -> Result<Settled, c_int> {
    let current = conn.peer();
    let Some(runtime) = runtime::get() else {
        return Ok(Settled::At(current));
    };
    let idle = !first_request && conn.responses.lock().every_answer_read();
    if !first_request && !idle {
        return Ok(Settled::At(current));
    }
    let verdict = judge(conn, head, runtime);
    if first_request && matches!(verdict, Verdict::Divert(_)) == conn.filter_diverts {
        return Ok(Settled::At(current));
    }
    let (wanted, why) = runtime.route(verdict);
    let event = Event::HeadComplete {
        first_request,
        idle,
        wanted: Some(wanted),
    };
    let state = conn.state();
    let when = match (first_request, state.https) {
        (true, _) => "moved at first request",
        (false, false) => "moved at a request boundary",
        (false, true) => "moved at a request boundary; https: a real TLS session there",
    };
    // Whether the TLS layer can make a real session is asked only where it matters.
    let facts = if state.https && !first_request {
        conn.facts(fd)
    } else {
        Facts::default()
    };
    match decide(&state, facts, event) {
        Action::Move(route) => {
            move_for_request(conn, fd, route, why, when, runtime).map(Settled::At)
        }
        Action::HandToTls(_) => move_for_request(conn, fd, Route::Origin, why, when, runtime)
            .map(|_| Settled::HandToTls),
        _ => Ok(Settled::At(current)),
    }
}

/// The filter's verdict on a request like `head` (its `Host`, its `x-lunar-allow`) to
/// this connection's destination, before the failsafe has its say.
pub(super) fn judge(conn: &Conn, head: &RequestHead<'_>, runtime: &Runtime) -> Verdict {
    let host_name = head.host.map(lunar_headers::host_name);
    let name = host_name.as_deref().or(conn.name.as_deref());
    let destination = Destination {
        ip: crate::addr::canonical(conn.original).ip(),
        name,
    };
    runtime.judge(&destination, head.lunar_allow)
}

fn move_for_request(
    conn: &Conn,
    fd: c_int,
    wanted: Route,
    why: runtime::Why,
    when: &str,
    runtime: &Runtime,
) -> Result<Route, c_int> {
    let ended = conn.move_to(fd, wanted, runtime)?;
    match ended {
        Route::Proxy(proxy) => log::debug!("{} -> proxy {proxy} ({why}; {when})", conn.label()),
        Route::Origin => log::debug!("{} -> direct ({why}; {when})", conn.label()),
    }
    Ok(ended)
}
