//! A protocol whose server speaks first. An HTTP client writes before it reads; a program
//! that waits to read from a diverted socket before it wrote anything speaks another
//! protocol, to which the proxy would never answer: the socket goes to its original
//! destination and is left alone. Two ways of waiting say it, each only after
//! `FIRST_WRITE_GRACE` without input, since a program whose threads share a connection
//! may start its reader before its writer sends the first request: a blocking read (the
//! read path asks `reads_before_writing`, which waits that long for input), and
//! poll/select for input alone or an epoll registration for input alone (the wait hooks
//! hand their fd lists to `note_input_waits_in_pollfds` and `note_input_waits_in_fd_sets`,
//! epoll_ctl its events to `note_input_registration`; the silence is due then,
//! `connecting::begin_silence`, and judged in a wait while the program's goes on).

use super::decide::{decide, Action, Event};
use super::waiting::wait_for_input;
use super::{connecting, fdtable, Conn, Phase};
use crate::guard::{shielded, Reentry};
use crate::runtime::{self, Route, Runtime};
use crate::sys;
use libc::{c_int, fd_set, nfds_t, pollfd, timespec, timeval};
use std::time::Duration;

/// A wait shorter than this for input alone is a look (wget waits 60 ms for a TLS
/// session ticket before it writes), not a wait for a server that speaks first.
const LOOK_MS: i64 = 1000;

/// How long a wait for input before any write goes on before it is judged. A program
/// whose threads share a connection may start its reader before its writer sends the
/// first request: the proxy answers that request within this, or the program's wait goes
/// on past it with the request recorded. A server that speaks first says nothing at the
/// proxy, and its protocol is then judged.
const FIRST_WRITE_GRACE: Duration = Duration::from_millis(LOOK_MS as u64);

/// A poll or ppoll: each tracked fd it waits on for input alone.
///
/// # Safety
/// `fds` points to `count` pollfds, as for poll(2).
pub unsafe fn note_input_waits_in_pollfds(fds: *const pollfd, count: nfds_t, timeout_ms: i64) {
    if fds.is_null() || !fdtable::any_tracked() {
        return;
    }
    // SAFETY: poll(2)'s contract.
    let entries = unsafe { std::slice::from_raw_parts(fds, count as usize) };
    for entry in entries {
        if entry.events & libc::POLLIN != 0 && entry.events & libc::POLLOUT == 0 {
            note_input_wait(entry.fd, timeout_ms);
        }
    }
}

/// A select or pselect: each tracked fd it waits on for input alone.
///
/// # Safety
/// As select(2): each non-null set holds `count` bits.
pub unsafe fn note_input_waits_in_fd_sets(
    count: c_int,
    read: *const fd_set,
    write: *const fd_set,
    timeout_ms: i64,
) {
    if read.is_null() || !fdtable::any_tracked() {
        return;
    }
    for fd in 0..count.clamp(0, libc::FD_SETSIZE as c_int) {
        // SAFETY: fd < FD_SETSIZE and the sets are the program's valid fd_sets.
        let reading = unsafe { libc::FD_ISSET(fd, read) };
        // SAFETY: as above.
        let writing = !write.is_null() && unsafe { libc::FD_ISSET(fd, write) };
        if reading && !writing {
            note_input_wait(fd, timeout_ms);
        }
    }
}

/// A wait's limit given as a timespec (ppoll, pselect), in milliseconds; -1 for none.
///
/// # Safety
/// `timeout` is null or points to a timespec.
pub unsafe fn timespec_ms(timeout: *const timespec) -> i64 {
    // SAFETY: the program's own timeout pointer, null for none.
    match unsafe { timeout.as_ref() } {
        None => -1,
        Some(t) => t.tv_sec.saturating_mul(1000) + t.tv_nsec / 1_000_000,
    }
}

/// A wait's limit given as a timeval (select), in milliseconds; -1 for none.
///
/// # Safety
/// `timeout` is null or points to a timeval.
pub unsafe fn timeval_ms(timeout: *const timeval) -> i64 {
    // SAFETY: the program's own timeout pointer, null for none.
    match unsafe { timeout.as_ref() } {
        None => -1,
        Some(t) => t.tv_sec.saturating_mul(1000) + t.tv_usec / 1000,
    }
}

/// An epoll registration of `fd` (`EPOLL_CTL_ADD` or `_MOD`, accepted) with `events`:
/// for input alone, the event loop's wait for it. A registration has no limit of its own,
/// so it is never a look: its silence begins at once, due after `FIRST_WRITE_GRACE`, as a
/// long poll's would, and a write before then settles it.
pub fn note_input_registration(fd: c_int, events: u32) {
    let input_alone = events & libc::EPOLLIN as u32 != 0 && events & libc::EPOLLOUT as u32 == 0;
    if input_alone {
        note_input_wait(fd, -1);
    }
}

/// `timeout_ms`: the wait's limit, negative for none.
fn note_input_wait(fd: c_int, timeout_ms: i64) {
    // Nearly every such wait (an event loop's after each request) follows a write: told
    // apart with one load, before the reference, the re-entry guard, the shield and
    // errno's keeping, which every keep-alive request would pay.
    if fdtable::peek(fd, Conn::has_written) != Some(false) {
        return;
    }
    let Some(conn) = fdtable::get(fd) else {
        return;
    };
    // Not from a signal handler that interrupted the library (the state's lock may be
    // held below it).
    let Some(_inside) = Reentry::enter() else {
        return;
    };
    let saved = sys::errno();
    let looks_only = (0..LOOK_MS).contains(&timeout_ms);
    shielded(
        || waits_to_read_before_writing(&conn, fd, looks_only),
        || (),
    );
    sys::set_errno(saved);
}

/// A program waits to read from `fd` (poll/select for input alone) before it wrote.
/// `looks_only`: a short wait (under `LOOK_MS`), which a TLS client may make for input
/// (a session ticket, an alert) before it writes, as wget does: for https, it says
/// nothing of the protocol. A wait that does is judged when its silence is due
/// (`silence_due`), unless the program writes first.
pub fn waits_to_read_before_writing(conn: &Conn, fd: c_int, looks_only: bool) {
    if judgeable(conn, fd).is_none() {
        return;
    }
    let event = Event::ReadBeforeWrite { looks_only };
    if let Action::GoDirect(_) | Action::HandToTls(_) = decide(&conn.state(), conn.facts(fd), event)
    {
        connecting::begin_silence(conn, FIRST_WRITE_GRACE.as_millis() as u64);
    }
}

/// The program waited for input on `fd` before writing, and nothing came nor was written
/// for `FIRST_WRITE_GRACE` (`connecting`'s sweep, inside one of the program's waits).
/// Out of line: the sweep runs in every wait while a connect is pending, this rarely.
#[cold]
#[inline(never)]
pub(super) fn silence_due(conn: &Conn, fd: c_int) {
    // The program's wait is under way: none of its hooks re-entered, nothing unwinds
    // into it, its errno as it was.
    let Some(_inside) = Reentry::enter() else {
        return;
    };
    let saved = sys::errno();
    let judged = || {
        if let Some(runtime) = judgeable(conn, fd) {
            judge(conn, fd, false, runtime);
        }
    };
    shielded(judged, || ());
    sys::set_errno(saved);
}

/// A program reads from `fd` before it wrote (a blocking read): for https too, the
/// server speaks first, unless input comes within `FIRST_WRITE_GRACE`: the answer to a
/// request another thread wrote meanwhile, or the proxy's end, which the read then
/// meets as any other. `Err(errno)`: the program's read ends now (a signal handler ran
/// while we waited, and its read would have ended with EINTR).
pub fn reads_before_writing(conn: &Conn, fd: c_int) -> Result<(), c_int> {
    let Some(runtime) = judgeable(conn, fd) else {
        return Ok(());
    };
    let saved = sys::errno();
    if !wait_for_input(fd, FIRST_WRITE_GRACE)? {
        judge(conn, fd, false, runtime);
    }
    sys::set_errno(saved);
    Ok(())
}

/// The cheap answer first: a program that wrote, or a socket not at the proxy, is not
/// judged. `Some`: it may be.
fn judgeable(conn: &Conn, fd: c_int) -> Option<&'static Runtime> {
    let state = conn.state();
    if state.wrote || state.phase.proxy().is_none() || !state.phase.follows_requests() {
        return None;
    }
    if !conn.still_a_socket(fd) {
        return None;
    }
    runtime::get()
}

fn judge(conn: &Conn, fd: c_int, looks_only: bool, runtime: &Runtime) {
    let event = Event::ReadBeforeWrite { looks_only };
    let _writer = conn.writer.lock();
    let action = decide(&conn.state(), conn.facts(fd), event);
    let (Action::GoDirect(why) | Action::HandToTls(why)) = action else {
        return;
    };
    log::debug!("{} -> direct ({why})", conn.label());
    let moved = conn.move_to(fd, Route::Origin, runtime).map(|_| ());
    if moved.is_ok() && matches!(action, Action::HandToTls(_)) {
        // The program's TLS goes on as a real session at the origin, never in clear text.
        let _ = super::recovery::hand_to_tls(conn, fd, &[]);
    } else {
        conn.change(|phase| Phase::Passthrough(phase.route()));
    }
}
