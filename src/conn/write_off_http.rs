//! Writes that take a connection off the plain HTTP path: a request head handed to a real
//! TLS session at the origin, and bytes that are not HTTP, which leave as they are.

use super::decide::{decide, Action, Event, Facts, Reason};
use super::outcome::Outcome;
use super::send_all::send_all;
use super::write::fail;
use super::{recovery, Conn, Phase, Writer};
use crate::http::Asked;
use crate::runtime::{self, Route};
use libc::c_int;

/// A request of a virtual session was moved to the origin (its x-lunar-allow, its Host, a
/// cooldown): its TLS becomes real there, this head (`out`) its first bytes; the rest of
/// the program's writes go into that session. Its answer is counted there, so that a later
/// request knows when it may bring the session back (`tls_plain`).
#[cold]
#[inline(never)]
pub(super) fn hand_head_to_tls(
    conn: &Conn,
    fd: c_int,
    writer: &mut Writer,
    out: Vec<u8>,
    method: Asked,
    before: usize,
    consumed: usize,
) -> Outcome {
    {
        let mut responses = conn.responses.lock();
        responses.stop_checking();
        responses.tracker.push_asked(method);
    }
    let result = recovery::hand_to_tls(conn, fd, &out);
    writer.head_out = out;
    match result {
        Ok(()) => Outcome::Done(consumed as isize),
        Err(errno) => fail(conn, fd, before, errno),
    }
}

/// The program's bytes are not HTTP: they leave as they are, and the connection passes
/// bytes only from now on. What to report, or `None` when the write goes on.
#[cold]
#[inline(never)]
pub(super) fn not_http(
    conn: &Conn,
    fd: c_int,
    flags: c_int,
    writer: &mut Writer,
    before: usize,
    consumed: usize,
) -> Option<Outcome> {
    let first_bytes = writer.requests.heads_completed() == 0;
    let buffered = writer.requests.take_buffered();
    let event = Event::NotHttp { first_bytes };
    let sent = match decide(&conn.state(), Facts::default(), event) {
        Action::HandToTls(why) => {
            // What the program protects with TLS never leaves without it: the session
            // becomes real at the origin, these bytes its first.
            move_to_origin(conn, fd, why)
                .and_then(|()| recovery::hand_to_tls(conn, fd, &buffered))
                .map(|()| false)
        }
        Action::GoDirect(why) => move_to_origin(conn, fd, why).map(|()| true),
        _ => Ok(true),
    };
    conn.change(|phase| match phase {
        Phase::TlsOwned | Phase::Passthrough(_) => phase,
        other => Phase::Passthrough(other.route()),
    });
    match sent {
        Ok(false) => Some(Outcome::Done(consumed as isize)),
        Ok(true) => send_all(conn, fd, &buffered, flags)
            .err()
            .map(|errno| fail(conn, fd, before, errno)),
        Err(errno) => Some(fail(conn, fd, before, errno)),
    }
}

/// Moves the socket to the origin before the program's first bytes leave.
fn move_to_origin(conn: &Conn, fd: c_int, why: Reason) -> Result<(), c_int> {
    let Some(runtime) = runtime::get() else {
        return Ok(());
    };
    log::debug!("{} -> direct ({why})", conn.label());
    conn.move_to(fd, Route::Origin, runtime).map(|_| ())
}
