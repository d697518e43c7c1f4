//! The program writes: its bytes go through the request engine, which finds each request
//! head so that Lunar's headers can be added; bodies pass 1:1.
//!
//! Byte counts the program sees are its own: a head is buffered until complete (those
//! bytes are reported written at once), then sent whole with the injected lines, which are
//! never counted; body bytes are sent as given and reported as the kernel took them.

use super::decide::{decide, Action, Event, Facts};
use super::outcome::{Bypass, Outcome};
use super::read::is_nonblocking;
use super::recovery::{self, Rescue};
use super::request_route::{settle_route, Settled};
use super::send_all::send_all;
use super::waiting::{wait_for_recovery, Direction};
use super::write_off_http::{hand_head_to_tls, not_http};
use super::{hook_marker, lang_hook, lunar_headers, Conn, Phase, Writer};
use crate::http::{Asked, Step};
use crate::runtime::{self, Route};
use crate::sync::SpinGuard;
use crate::sys;
use libc::c_int;
use std::hint::cold_path;

/// The program's write of `input` (any of write/send/sendto/writev/sendmsg) on a tracked fd.
/// Returns the count to report (or -1 with errno set), or why the program's own call
/// should run unchanged (a connection we only pass through, a number reused behind our
/// back). Never inlined: one copy serves every hook (see `read::receive`).
#[inline(never)]
pub fn send(conn: &Conn, fd: c_int, input: &[u8], flags: c_int) -> Outcome {
    if lang_hook::armed() {
        cold_path();
        if let Some(taken) = hook_marker::take(conn, fd, input, flags) {
            return taken;
        }
    }
    let state = conn.state();
    if state.write_shut {
        cold_path();
        // The kernel's EPIPE and SIGPIPE, as the program's own shutdown made them.
        return Outcome::Bypass(Bypass::BytesOnly);
    }
    match state.phase {
        // A move of an https session that failed left the socket here.
        Phase::Passthrough(Route::Origin) if state.https => refuse_clear_text(conn),
        Phase::TlsOwned => {
            cold_path();
            // The program's own writes rarely reach us on a socket a real TLS session
            // owns: one that does may be on a number reused behind our back.
            if !conn.still_ours(fd) {
                return Outcome::Bypass(Bypass::NotOurSocket);
            }
            sys::set_errno(libc::EAGAIN);
            Outcome::Done(-1)
        }
        // Bytes only, but at the proxy over TLS: they go through our session.
        Phase::Passthrough(Route::Proxy(_)) if conn.linked() => {
            cold_path();
            let _writer = conn.writer.lock();
            Outcome::Done(conn.send_wire(fd, input, flags))
        }
        Phase::Passthrough(_) => {
            cold_path();
            match conn.take_left_error(&state) {
                Some(errno) => {
                    sys::set_errno(errno);
                    Outcome::Done(-1)
                }
                None => Outcome::Bypass(Bypass::BytesOnly),
            }
        }
        _ => {
            let outcome = send_tracked(conn, fd, input, flags);
            if matches!(outcome, Outcome::Done(-1)) && sys::errno() == libc::EPIPE {
                cold_path();
                signal_broken_pipe(conn, flags);
            }
            outcome
        }
    }
}

/// A broken pipe the program sees (a failure that could not be hidden) gets its SIGPIPE,
/// as the kernel sends one to a thread whose send had no MSG_NOSIGNAL; the library's own
/// sends to the proxy carried MSG_NOSIGNAL to keep the signal back while the failure could
/// still be hidden.
#[inline(never)]
fn signal_broken_pipe(conn: &Conn, program_flags: c_int) {
    if program_flags & libc::MSG_NOSIGNAL == 0 && conn.is_diverted() {
        let errno = sys::errno();
        // SAFETY: raise(3) on the calling thread, as the kernel's SIGPIPE would be.
        unsafe { libc::raise(libc::SIGPIPE) };
        sys::set_errno(errno);
    }
}

/// What TLS protects never leaves in clear text: the write fails as on a reset connection.
#[cold]
#[inline(never)]
fn refuse_clear_text(conn: &Conn) -> Outcome {
    log::warn!(
        "{}: TLS-protected bytes not sent in clear text",
        conn.label()
    );
    sys::set_errno(libc::ECONNRESET);
    Outcome::Done(-1)
}

/// `Bypass`: the fd is not (or no longer) this connection's socket, or the connection
/// went direct for good; the program's own call runs.
fn send_tracked(conn: &Conn, fd: c_int, input: &[u8], flags: c_int) -> Outcome {
    #[cfg(feature = "race-probe")]
    crate::race_probe::on_write(input.len());
    let mut writer = conn.writer.lock();
    // One look at the state serves every check below: what changes it meanwhile (a
    // recovery begun by a reader) could as well have happened just after.
    let mut state = conn.state();
    if matches!(state.phase, Phase::Recovering(_)) {
        drop(writer);
        writer = match after_recovery(conn, fd, flags) {
            Ok(writer) => writer,
            Err(errno) => {
                sys::set_errno(errno);
                return Outcome::Done(-1);
            }
        };
        state = conn.state();
    }
    let request_begins = writer.requests.at_message_boundary();
    if request_begins {
        // A number reused behind our back is left alone before any byte is sent, without
        // a system call here: every close we can see forgets the number at once; a send
        // of ours to a file or a pipe fails with ENOTSOCK before anything of the
        // program's write was taken (`fail`); a head the program writes in pieces is
        // checked when its first piece is held (`send_request_bytes`); a move checks
        // before it connects.
        if let Action::GoDirect(why) = decide(&state, Facts::default(), Event::RequestBegins) {
            cold_path();
            super::bypass::go_direct(conn, fd, why);
            return Outcome::Bypass(Bypass::WentDirect(why));
        }
    }
    match state.phase {
        Phase::TlsOwned => {
            cold_path();
            // A recovery just gave the socket to a real TLS session.
            sys::set_errno(libc::EAGAIN);
            return Outcome::Done(-1);
        }
        Phase::Passthrough(_) => {
            cold_path();
            return Outcome::Bypass(Bypass::BytesOnly);
        }
        _ => {}
    }
    if state.https && !state.phase.diverted() {
        // A virtual session's plaintext belongs on the proxy link only; every move to the
        // origin hands the socket to a real session first (`recovery::hand_to_tls`).
        return refuse_clear_text(conn);
    }
    if !state.wrote {
        cold_path();
        // Set under the writer lock: a reader that finds the proxy gone judges by a
        // consistent view (wrote, and the request recorded as unanswered, change together).
        conn.note_written();
    }
    if conn.upgrade_accepted(&writer.requests) {
        cold_path();
        // The new protocol's bytes: held bytes (none, the client waited for the 101) go
        // out, the connection passes bytes only from here, and this write runs as such.
        if let Some(outcome) = not_http(conn, fd, flags, &mut writer, 0, 0) {
            return outcome;
        }
        drop(writer);
        return send(conn, fd, input, flags);
    }
    send_request_bytes(conn, fd, input, flags, request_begins, writer)
}

/// A recovery is resending the unanswered requests: what the program writes now must
/// follow them. The writer, once no recovery runs, or the errno of a wait that failed
/// (`EAGAIN` at once on a non-blocking socket).
#[cold]
#[inline(never)]
fn after_recovery(conn: &Conn, fd: c_int, flags: c_int) -> Result<SpinGuard<'_, Writer>, c_int> {
    loop {
        if is_nonblocking(fd, flags) && !resend_is_next(conn, fd) {
            return Err(libc::EAGAIN);
        }
        wait_for_recovery(conn, fd, Direction::Write)?;
        let writer = conn.writer.lock();
        if !matches!(conn.phase(), Phase::Recovering(_)) {
            return Ok(writer);
        }
    }
}

/// A replay whose move's connect has ended (the socket writable, or failed): all that is
/// left to the helper thread is a moment's work, taking the writer lock to resend. A
/// non-blocking write waits for it rather than answer EAGAIN: an edge-triggered poller
/// has been shown that connect's readiness already and would wait for another that never
/// comes. (While the connect is under way, EAGAIN: its end raises the next edge.)
fn resend_is_next(conn: &Conn, fd: c_int) -> bool {
    if !matches!(conn.phase(), Phase::Recovering(Route::Origin)) {
        return false;
    }
    let mut now = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no waiting.
    unsafe { sys::poll(&mut now, 1, 0) == 1 }
}

fn send_request_bytes(
    conn: &Conn,
    fd: c_int,
    input: &[u8],
    flags: c_int,
    request_begins: bool,
    mut held: SpinGuard<'_, Writer>,
) -> Outcome {
    let writer = &mut *held;
    let mut consumed = 0;
    while consumed < input.len() {
        // A proxy that drops the connection is ours to hide, not a SIGPIPE for a program
        // that never chose to talk to it.
        let flags = if conn.is_diverted() {
            flags | libc::MSG_NOSIGNAL
        } else {
            flags
        };
        let rest = &input[consumed..];
        // Body bytes the kernel does not take will be offered again by the program: the
        // engine must not count them now. Only a body or a tunnel passes bytes (a head is
        // held until complete), and no head is held then: the snapshot allocates nothing.
        let before_feed = writer
            .requests
            .passes_bytes()
            .then(|| writer.requests.clone());
        match writer.requests.feed(rest) {
            // A head that begins in this write and is not complete: its bytes are reported
            // as written before any is sent, so the fd must be our socket now (one fstat).
            Step::Buffered(_) if request_begins && consumed == 0 && !conn.still_ours(fd) => {
                return Outcome::Bypass(Bypass::NotOurSocket);
            }
            Step::Buffered(n) => consumed += n,
            Step::Pass(n) => {
                let sent = conn.send_wire(fd, &rest[..n], flags);
                let taken = sent.max(0) as usize;
                if taken < n {
                    if let Some(snapshot) = before_feed {
                        writer.requests = snapshot;
                        if taken > 0 {
                            writer.requests.feed(&rest[..taken]);
                        }
                    }
                }
                if sent < 0 {
                    let errno = sys::errno();
                    match recovery::rescue_send(conn, fd, errno) {
                        Rescue::Here if matches!(conn.phase(), Phase::TlsOwned) => {
                            return fail(conn, fd, consumed, libc::EAGAIN);
                        }
                        Rescue::Here => continue,
                        Rescue::InBackground => {
                            drop(held);
                            return rest_after_recovery(conn, fd, input, consumed, flags);
                        }
                        Rescue::No => return fail(conn, fd, consumed, errno),
                    }
                }
                consumed += sent as usize;
                if conn.is_diverted() {
                    let mut responses = conn.responses.lock();
                    responses.inflight.append(&rest[..sent as usize]);
                    if writer.requests.at_message_boundary() {
                        responses.inflight.end_request();
                    }
                }
                if (sent as usize) < n {
                    break;
                }
            }
            Step::HeadComplete(n) => {
                let before = consumed;
                consumed += n;
                let first_request = writer.requests.heads_completed() == 1;
                let mut injected = std::mem::take(&mut writer.lunar_out);
                injected.clear();
                let (route, method) = {
                    let head = writer.requests.head();
                    let method = Asked::of(head.method);
                    let route = settle_route(conn, fd, &head, first_request, &mut writer.verdicts);
                    if let (Ok(Settled::At(Route::Proxy(_))), Some(runtime)) =
                        (route, runtime::get())
                    {
                        lunar_headers::push_for_request(
                            &mut injected,
                            &head,
                            conn.original,
                            conn.name.as_deref(),
                            conn.scheme(),
                            runtime,
                        );
                    }
                    (route, method)
                };
                if let Err(errno) = route {
                    cold_path();
                    return fail(conn, fd, before, errno);
                }
                let mut out = std::mem::take(&mut writer.head_out);
                out.clear();
                writer.requests.emit_head(&injected, &mut out);
                let injected_len = injected.len();
                writer.lunar_out = injected;
                if matches!(route, Ok(Settled::HandToTls)) {
                    return hand_head_to_tls(conn, fd, writer, out, method, before, consumed);
                }
                match route {
                    Ok(Settled::At(Route::Proxy(_))) => {
                        // Recorded before the head leaves: its answer may be read at once.
                        let mut responses = conn.responses.lock();
                        responses.tracker.push_asked(method);
                        responses.inflight.start(method, &out, injected_len);
                        if writer.requests.at_message_boundary() {
                            responses.inflight.end_request();
                        }
                        conn.request_recorded();
                    }
                    // At the origin the answers are only counted: the next request knows
                    // whether it may move the socket.
                    _ if conn.phase().follows_answers() => {
                        conn.responses.lock().tracker.push_asked(method);
                        conn.request_recorded();
                    }
                    _ => {}
                }
                let result = send_all(conn, fd, &out, flags);
                writer.head_out = out;
                if let Err(errno) = result {
                    cold_path();
                    match recovery::rescue_send(conn, fd, errno) {
                        Rescue::No => return fail(conn, fd, before, errno),
                        Rescue::Here if matches!(conn.phase(), Phase::TlsOwned) => {
                            return Outcome::Done(consumed as isize);
                        }
                        Rescue::Here => {}
                        Rescue::InBackground => {
                            drop(held);
                            return rest_after_recovery(conn, fd, input, consumed, flags);
                        }
                    }
                }
            }
            Step::NotHttp(n) => {
                let before = consumed;
                consumed += n;
                if let Some(outcome) = not_http(conn, fd, flags, writer, before, consumed) {
                    return outcome;
                }
            }
        }
    }
    Outcome::Done(consumed as isize)
}

/// A helper thread is taking the socket to the origin and resending what the proxy lost
/// (`recovery::rescue_send`), `consumed` bytes of the program's `input` among them: the
/// rest follows once it is done. A non-blocking write reports what was taken (or
/// EAGAIN: the socket is connecting, and shows writable when it may go on); a blocking
/// one waits for the recovery as its SO_SNDTIMEO and signals let it (as it would have
/// waited for its own connect's window), then writes the rest.
#[cold]
#[inline(never)]
fn rest_after_recovery(
    conn: &Conn,
    fd: c_int,
    input: &[u8],
    consumed: usize,
    flags: c_int,
) -> Outcome {
    if is_nonblocking(fd, flags) {
        return fail(conn, fd, consumed, libc::EAGAIN);
    }
    if let Err(errno) = wait_for_recovery(conn, fd, Direction::Write) {
        return fail(conn, fd, consumed, errno);
    }
    let rest = &input[consumed..];
    let sent = match send(conn, fd, rest, flags) {
        Outcome::Done(sent) => sent,
        // The rest is the kernel's to take as it is (the socket passes bytes only now).
        // SAFETY: sends from a live slice.
        Outcome::Bypass(_) => unsafe { sys::send(fd, rest.as_ptr().cast(), rest.len(), flags) },
    };
    match sent {
        sent if sent >= 0 => Outcome::Done(consumed as isize + sent),
        _ => fail(conn, fd, consumed, sys::errno()),
    }
}

/// What the program sees when a send of ours failed after `reported` of its bytes were
/// taken in this call. `Bypass` (the program's own call runs) when the fd turned out not to
/// be our socket any more and nothing of this call was taken.
#[cold]
#[inline(never)]
pub(super) fn fail(conn: &Conn, fd: c_int, reported: usize, errno: c_int) -> Outcome {
    if conn.lost_fd(fd, errno) && reported == 0 {
        return Outcome::Bypass(Bypass::NotOurSocket);
    }
    Outcome::Done(if reported > 0 {
        reported as isize
    } else {
        sys::set_errno(errno);
        -1
    })
}
