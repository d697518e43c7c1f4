//! The plaintext of a real TLS session at the origin that the TLS layer follows (one it
//! made: a fallback, or a request routed there; or the program's own on a socket that
//! went direct at connect because of the failsafe), shown to this layer so that each
//! request is still routed when it is sent: the request engine finds the heads, the origin's
//! answers are counted, and a later request that the failsafe lets the proxy have, with
//! every earlier answer read, ends the real session and serves the program's virtual
//! one at the proxy again. Nothing here encrypts or decrypts: the TLS layer's `RealTls`
//! moves the bytes.

use super::decide::{decide, Action, Event, Facts};
use super::{recovery, Conn, Phase};
use crate::http::Step;
use crate::runtime::{self, Route};
use libc::c_int;

/// The real session on the socket, as the TLS layer drives it.
pub trait RealTls {
    /// The library's error code for a call that failed (`SSL_get_error`'s answer).
    type Error;
    /// One write of plaintext into the session: the count it took.
    fn send(&mut self, bytes: &[u8]) -> Result<usize, Self::Error>;
    /// All of `bytes` (a head we held: the program was told it was written).
    fn send_all(&mut self, bytes: &[u8]) -> Result<(), Self::Error>;
    /// Ends the session cleanly (close_notify sent) and forgets it: the program's own
    /// session is virtual again.
    fn end(&mut self);
}

/// How a write of the program's plaintext into the real session went.
#[derive(Debug, PartialEq, Eq)]
pub enum PlainWrite<E> {
    /// This many bytes of the input were taken (sent, or held as part of a head).
    Taken(usize),
    /// This many were taken, then the session's write failed: the program's call fails
    /// with the error and is repeated with the same bytes.
    Failed(usize, E),
    /// This many were taken; then the session serving the program changed (virtual at
    /// the proxy again, or a new real session): the rest goes to whichever serves now.
    Switched(usize),
    /// This many were taken; then the socket could not be moved: the program sees errno.
    Broken(usize, c_int),
}

/// The program writes `input` into the real TLS session on `fd` (`real`).
pub fn write<T: RealTls>(
    conn: &Conn,
    fd: c_int,
    input: &[u8],
    real: &mut T,
) -> PlainWrite<T::Error> {
    let mut guard = conn.writer.lock();
    // A plain reference, so that the head (`requests`) and the verdict memo are borrowed apart.
    let writer = &mut *guard;
    if conn.upgrade_accepted(&writer.requests) {
        // The upgrade was accepted (101): bytes only from here (none were held: the
        // client waited for the answer).
        let held = writer.requests.take_buffered();
        if let Err(e) = real.send_all(&held) {
            return PlainWrite::Failed(0, e);
        }
    }
    let mut taken = 0;
    while taken < input.len() {
        let rest = &input[taken..];
        if writer.requests.is_passthrough() {
            // Not HTTP: bytes only, in the session, as the program wrote them.
            return match real.send(rest) {
                Ok(n) => PlainWrite::Taken(taken + n),
                Err(e) => PlainWrite::Failed(taken, e),
            };
        }
        let before = writer.requests.clone();
        match writer.requests.feed(rest) {
            Step::Buffered(n) => taken += n,
            Step::Pass(n) => match real.send(&rest[..n]) {
                Ok(sent) => {
                    taken += sent;
                    if sent < n {
                        // The engine counts only what the session took.
                        writer.requests = before;
                        writer.requests.feed(&rest[..sent]);
                        return PlainWrite::Taken(taken);
                    }
                }
                Err(e) => {
                    writer.requests = before;
                    return PlainWrite::Failed(taken, e);
                }
            },
            Step::NotHttp(n) => {
                let held = writer.requests.take_buffered();
                if let Err(e) = real.send_all(&held) {
                    return PlainWrite::Failed(taken, e);
                }
                taken += n;
            }
            Step::HeadComplete(n) => {
                let first_request = writer.requests.heads_completed() == 1;
                let idle = !first_request && conn.responses.lock().every_answer_read();
                let (method, wanted) = {
                    let head = writer.requests.head();
                    // Routed afresh only where it may move (the first request keeps the
                    // route its connect was given: a proxy that just failed is not tried
                    // twice for one request).
                    let wanted = runtime::get().filter(|_| idle).map(|runtime| {
                        let verdict = writer.verdicts.judge(conn, &head, runtime);
                        runtime.route(verdict)
                    });
                    (head.method.to_string(), wanted)
                };
                let event = Event::HeadComplete {
                    first_request,
                    idle,
                    wanted: wanted.map(|(route, _)| route),
                };
                let facts = Facts {
                    real_tls_followed: true,
                    ..Facts::default()
                };
                if let (Action::Move(Route::Proxy(proxy)), Some((_, why))) =
                    (decide(&conn.state(), facts, event), wanted)
                {
                    // The head is offered again through the virtual session, where the
                    // write path adds Lunar's headers and keeps its copy for a replay.
                    writer.requests = before;
                    real.end();
                    log::debug!(
                        "{} -> proxy {proxy} ({why}; moved at a request boundary; https: the real session ended, virtual again)",
                        conn.label()
                    );
                    return match back_to_proxy(conn, fd, proxy) {
                        Ok(Route::Proxy(_)) => PlainWrite::Switched(taken),
                        Ok(Route::Origin) => {
                            // The proxy could not be reached: at the origin again, in a new
                            // real session that this head opens.
                            let head = writer.requests.feed(rest);
                            debug_assert!(matches!(head, Step::HeadComplete(_)));
                            let mut out = Vec::new();
                            writer.requests.emit_head(&[], &mut out);
                            conn.responses.lock().tracker.push_request(&method);
                            match recovery::hand_to_tls(conn, fd, &out) {
                                Ok(()) => PlainWrite::Switched(taken + n),
                                Err(errno) => PlainWrite::Broken(taken, errno),
                            }
                        }
                        Err(errno) => PlainWrite::Broken(taken, errno),
                    };
                }
                let mut out = std::mem::take(&mut writer.head_out);
                out.clear();
                writer.requests.emit_head(&[], &mut out);
                conn.responses.lock().tracker.push_request(&method);
                let sent = real.send_all(&out);
                writer.head_out = out;
                if let Err(e) = sent {
                    // The head was reported written; the session is broken anyway.
                    return PlainWrite::Failed(taken + n, e);
                }
                taken += n;
            }
        }
    }
    PlainWrite::Taken(taken)
}

/// Moves the socket whose real session just ended to the proxy; where it ended.
fn back_to_proxy(conn: &Conn, fd: c_int, proxy: std::net::SocketAddr) -> Result<Route, c_int> {
    let Some(runtime) = runtime::get() else {
        return Err(libc::ENOTSUP);
    };
    // The proxy's answers are judged from the next request on, as on a new connection.
    conn.responses.lock().stop_checking();
    let ended = conn.move_to(fd, Route::Proxy(proxy), runtime)?;
    if ended == Route::Origin {
        log::debug!(
            "{} -> direct (the proxy could not be reached; https: a real TLS session again)",
            conn.label()
        );
    }
    Ok(ended)
}

/// The program read `bytes` from the real TLS session: the origin's answers are counted,
/// so that a later request knows when every earlier one is answered.
pub fn delivered(conn: &Conn, mut bytes: &[u8]) {
    let mut responses = conn.responses.lock();
    if !matches!(conn.phase(), Phase::TlsOwned) {
        return;
    }
    let tracker = &mut responses.tracker;
    while !bytes.is_empty() && !tracker.is_passthrough() {
        let taken = match tracker.feed(bytes) {
            Step::Pass(n) | Step::Buffered(n) => n,
            Step::HeadComplete(n) => {
                tracker.skip_head();
                n
            }
            // Not HTTP: its boundaries cannot be told; the tracker stays in passthrough
            // and the session where it is.
            Step::NotHttp(_) => return,
        };
        if taken == 0 {
            return;
        }
        bytes = &bytes[taken..];
    }
}

#[cfg(test)]
#[path = "tls_plain_tests.rs"]
mod tests;
