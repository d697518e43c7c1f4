//! A proxy's hang-up or reset, reported by a wait. An event loop may treat ERR/HUP (or
//! RDHUP, when it asks for it) on a socket as fatal and close it without ever reading, so
//! the read path, which hides the proxy's failure, would never run. After the program's
//! poll, ppoll, epoll or select wait returns, each such event the proxy caused on a
//! diverted socket is dealt with there (a move, a replay started in the background:
//! `proxy_lost_under_wait`) and taken out of what the program sees (a one-shot epoll
//! registration is turned on again). When nothing is left to show, the wait goes on for
//! what remains of the program's own timeout: returning 0 would tell it the timeout
//! expired.
//!
//! The proxy's close (FIN) before its answer is such an end, not input: a program that
//! waits and then reads its blocking socket would read into the request's replay, past
//! its own timeout. poll and ppoll ask for RDHUP on diverted sockets' input waits
//! (`EndsAsked`), epoll registrations of tracked sockets ask for it
//! (`watchers::events_to_register`), and select, which cannot ask, looks once more at a
//! diverted socket it reports readable (`hidden_in_select`).
//!
//! How long each wait may go on (the program's timeout, a pending connect's due time)
//! is `wait_deadline`'s; select and pselect (`hidden_in_select`) are bounded the same way.
//!
//! Over TLS to the proxy (`link`) the same review hides input readiness that carried only
//! records for our session (a TLS 1.3 session ticket, part of a record): the program
//! would read and find nothing, which event loops that trust readiness take for an error.

use super::wait_deadline::{wait_until_shown_ms, wait_until_shown_timespec};
use super::watchers;
use super::{any_linked, fdtable, proxy_lost_under_wait};
use crate::guard::{shielded, Reentry};
use crate::sys;
use libc::{c_int, epoll_event, nfds_t, pollfd, sigset_t, timespec};

/// What a wait reports of a peer's failure or end: an error, a hang-up, or (asked for
/// with POLLRDHUP/EPOLLRDHUP, which event loops take for the peer's close) the end of its
/// stream: the proxy closing before its answer is as much ours to hide as a reset.
pub(super) const POLL_LOSS: i16 = libc::POLLERR | libc::POLLHUP | libc::POLLRDHUP;
const EPOLL_LOSS: u32 = (libc::EPOLLERR | libc::EPOLLHUP | libc::EPOLLRDHUP) as u32;

/// poll(2) for the program, without the proxy's hidden hang-ups.
///
/// # Safety
/// As poll(2).
pub unsafe fn poll_hiding_proxy_hang_ups(fds: *mut pollfd, count: nfds_t, timeout: c_int) -> c_int {
    // SAFETY: the program's own arguments, as its wait call gave them.
    let asked = unsafe { EndsAsked::ask(fds, count) };
    let ready = wait_until_shown_ms(timeout, |timeout| {
        // SAFETY: the program's own arguments, as its wait call gave them.
        let ready = unsafe { sys::poll(fds, count, timeout) };
        // SAFETY: the program's own arguments, as its wait call gave them.
        (ready, unsafe { review_pollfds(fds, count, ready) })
    });
    // SAFETY: as above.
    unsafe { asked.give_back(fds, ready) }
}

/// ppoll(2) for the program, without the proxy's hidden hang-ups.
///
/// # Safety
/// As ppoll(2).
pub unsafe fn ppoll_hiding_proxy_hang_ups(
    fds: *mut pollfd,
    count: nfds_t,
    timeout: *const timespec,
    mask: *const sigset_t,
) -> c_int {
    // SAFETY: the program's own arguments, as its wait call gave them.
    let asked = unsafe { EndsAsked::ask(fds, count) };
    // SAFETY: the program's own arguments, as its wait call gave them.
    let ready = unsafe {
        wait_until_shown_timespec(timeout, |timeout| {
            let ready = sys::ppoll(fds, count, timeout, mask);
            (ready, review_pollfds(fds, count, ready))
        })
    };
    // SAFETY: as above.
    unsafe { asked.give_back(fds, ready) }
}

/// The entries of a poll whose input wait on a diverted socket did not ask for POLLRDHUP,
/// asked for it by us: the proxy's close (FIN) before its answer then shows as the end it
/// is (hidden with ERR/HUP, `review_pollfds`), not as input. A program that polls and then
/// reads its blocking socket (Java's sockets with a read timeout) would otherwise take it
/// for the answer, and wait in that read for the request's replay, past its own timeout.
struct EndsAsked(Vec<usize>);

impl EndsAsked {
    /// # Safety
    /// `fds` points to `count` pollfds, as for poll(2).
    unsafe fn ask(fds: *mut pollfd, count: nfds_t) -> EndsAsked {
        let mut asked = Vec::new();
        if fds.is_null() || !fdtable::any_tracked() {
            return EndsAsked(asked);
        }
        // SAFETY: poll(2)'s contract.
        let entries = unsafe { std::slice::from_raw_parts_mut(fds, count as usize) };
        for (index, entry) in entries.iter_mut().enumerate() {
            let wants_input = entry.events & libc::POLLIN != 0;
            if wants_input && entry.events & libc::POLLRDHUP == 0 && end_is_ours(entry.fd) {
                entry.events |= libc::POLLRDHUP;
                asked.push(index);
            }
        }
        EndsAsked(asked)
    }

    /// The program's entries as it gave them, and what it asked for alone in their
    /// results: returns `ready` less the entries left with nothing.
    ///
    /// # Safety
    /// As `ask`, with the same pointer.
    unsafe fn give_back(self, fds: *mut pollfd, ready: c_int) -> c_int {
        let mut ready = ready;
        for index in self.0 {
            // SAFETY: an index `ask` found inside the program's array.
            let entry = unsafe { &mut *fds.add(index) };
            entry.events &= !libc::POLLRDHUP;
            if entry.revents & libc::POLLRDHUP != 0 {
                entry.revents &= !libc::POLLRDHUP;
                if entry.revents == 0 && ready > 0 {
                    ready -= 1;
                }
            }
        }
        ready
    }
}

pub(super) fn end_is_ours(fd: c_int) -> bool {
    fdtable::get(fd).is_some_and(|conn| conn.state().proxy_end_is_ours())
}

/// epoll_pwait(2) (and epoll_wait) for the program, without the proxy's hidden hang-ups.
///
/// # Safety
/// As epoll_pwait(2).
pub unsafe fn epoll_pwait_hiding_proxy_hang_ups(
    epoll: c_int,
    events: *mut epoll_event,
    max: c_int,
    timeout: c_int,
    mask: *const sigset_t,
) -> c_int {
    wait_until_shown_ms(timeout, |timeout| {
        // SAFETY: the program's own arguments, as its wait call gave them.
        let ready = unsafe { sys::epoll_pwait(epoll, events, max, timeout, mask) };
        // SAFETY: the program's own arguments, as its wait call gave them.
        (ready, unsafe { review_epoll_events(epoll, events, ready) })
    })
}

/// epoll_pwait2(2) for the program, without the proxy's hidden hang-ups.
///
/// # Safety
/// As epoll_pwait2(2).
pub unsafe fn epoll_pwait2_hiding_proxy_hang_ups(
    epoll: c_int,
    events: *mut epoll_event,
    max: c_int,
    timeout: *const timespec,
    mask: *const sigset_t,
) -> c_int {
    // SAFETY: the program's own arguments, as its wait call gave them.
    wait_until_shown_timespec(timeout, |timeout| {
        // SAFETY: the program's own arguments, as its wait call gave them.
        let ready = unsafe { sys::epoll_pwait2(epoll, events, max, timeout, mask) };
        // SAFETY: the program's own arguments, as its wait call gave them.
        (ready, unsafe { review_epoll_events(epoll, events, ready) })
    })
}

/// A wait reported ERR/HUP on `fd`. If the socket still has it and it is the proxy
/// failing a diverted connection, the failure is dealt with (a move, a replay started in
/// the background) and the program must not see the event: returns true. Nor must it see
/// one our own move caused: the disconnect leaves the socket hung up until the new
/// connect begins, and a reader of another thread woken by that must not take it for
/// the new peer's end. Such a hang-up is gone once the connect began (a TCP socket's
/// hang-up ends only with a new connect), or shows while the move is under way.
pub(super) fn hang_up_hidden(fd: c_int) -> bool {
    let Some(conn) = fdtable::get(fd) else {
        return false;
    };
    let Some(_inside) = Reentry::enter() else {
        return false;
    };
    let saved = sys::errno();
    let seen_at = conn.epoch();
    let mut now = pollfd {
        fd,
        events: libc::POLLIN | libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no waiting.
    let still = unsafe { sys::poll(&mut now, 1, 0) } == 1 && now.revents & POLL_LOSS != 0;
    // A recovery under way owns the socket, and the proxy's loss with it: shown to
    // another thread's wait before the recovery's move, it would end the program's
    // connection (or, kept by its loop, the answer the recovery brings).
    let hidden = !still
        || conn.moved_since(seen_at)
        || conn.phase().is_recovering()
        || shielded(|| proxy_lost_under_wait(&conn, fd, seen_at), || false);
    sys::set_errno(saved);
    hidden
}

/// After poll returned `ready`: entries whose ERR/HUP was hidden show the socket's
/// readiness now instead. Returns how many entries have events.
///
/// # Safety
/// `fds` points to `count` pollfds, as for poll(2).
unsafe fn review_pollfds(fds: *mut pollfd, count: nfds_t, ready: c_int) -> c_int {
    if ready <= 0 || fds.is_null() || !fdtable::any_tracked() {
        return ready;
    }
    // SAFETY: poll(2)'s contract.
    let entries = unsafe { std::slice::from_raw_parts_mut(fds, count as usize) };
    let mut ready = ready;
    for entry in entries.iter_mut() {
        if entry.revents & libc::POLLIN != 0 && only_records_for_us(entry.fd) {
            entry.revents &= !(libc::POLLIN | libc::POLLRDNORM);
            if entry.revents == 0 {
                ready -= 1;
                continue;
            }
        }
        let loss = entry.revents & POLL_LOSS;
        let end_only = loss == libc::POLLRDHUP;
        if loss == 0 || (end_only && answer_before_end(entry.fd)) {
            continue;
        }
        if !hang_up_hidden(entry.fd) {
            let ready = entry.events & (libc::POLLIN | libc::POLLOUT);
            if ready != 0 && loss_left_to_tls_calls(entry.fd) {
                entry.revents = (entry.revents & !POLL_LOSS) | ready;
            }
            continue;
        }
        let mut fresh = pollfd {
            fd: entry.fd,
            events: entry.events,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no waiting.
        unsafe { sys::poll(&mut fresh, 1, 0) };
        if fresh.revents == 0 {
            ready -= 1;
        }
        entry.revents = fresh.revents;
    }
    ready
}

/// After epoll returned `ready` events: those that were a hidden hang-up are removed.
/// Returns how many are left.
///
/// # Safety
/// `events` holds `ready` events, as epoll_wait(2) filled it.
unsafe fn review_epoll_events(epoll: c_int, events: *mut epoll_event, ready: c_int) -> c_int {
    if ready <= 0 || events.is_null() || !fdtable::any_tracked() {
        return ready;
    }
    // SAFETY: epoll_wait(2)'s contract.
    let events = unsafe { std::slice::from_raw_parts_mut(events, ready as usize) };
    let mut kept = 0;
    for index in 0..events.len() {
        let mut event = events[index];
        if event.events & libc::EPOLLIN as u32 != 0 && any_linked() {
            if let Some(fd) =
                watchers::fd_for(epoll, event.u64).filter(|&fd| only_records_for_us(fd))
            {
                event.events &= !((libc::EPOLLIN | libc::EPOLLRDNORM) as u32);
                // A one-shot registration is off once reported: on again, since the
                // program never saw this report.
                watchers::rearm_one_shot(epoll, fd);
                if event.events == 0 {
                    continue;
                }
            }
        }
        let hidden_fd = match event.events & EPOLL_LOSS != 0 {
            true => epoll_loss_hidden(epoll, &mut event),
            false => None,
        };
        match hidden_fd {
            // A one-shot registration is off once reported: on again, so that the
            // readiness of the socket's new connection is reported to the program.
            Some(fd) => watchers::rearm_one_shot(epoll, fd),
            None => {
                events[kept] = event;
                kept += 1;
            }
        }
    }
    kept as c_int
}

/// An epoll event with an error, hang-up or end, on a socket `epoll` watches for the
/// program: the fd when it is the proxy's loss to hide (`hang_up_hidden`). An end the
/// program did not ask for (the registration's EPOLLRDHUP is ours: `watchers`) is taken
/// out of `event`: it counts only on a socket whose proxy end is ours.
fn epoll_loss_hidden(epoll: c_int, event: &mut epoll_event) -> Option<c_int> {
    let (fd, asked) = watchers::registered_as(epoll, event.u64)?;
    let end = libc::EPOLLRDHUP as u32;
    let loss = event.events & EPOLL_LOSS;
    if asked & end == 0 {
        event.events &= !end;
    }
    let end_only = loss == end;
    if end_only && ((asked & end == 0 && !end_is_ours(fd)) || answer_before_end(fd)) {
        return None;
    }
    if hang_up_hidden(fd) {
        return Some(fd);
    }
    let ready = asked & (libc::EPOLLIN | libc::EPOLLOUT) as u32;
    if ready != 0 && loss_left_to_tls_calls(fd) {
        event.events = (event.events & !EPOLL_LOSS) | ready;
    }
    None
}

/// A loss on an https virtual session at the proxy: the program's next TLS call meets it,
/// and moves the session to the origin in its thread when an answer is owed (an idle
/// session's end reads as the end). So the wait shows the readiness the program asked
/// for, not the loss: a loop that keeps an fd's hang-up would otherwise end a stream
/// early later on. HAProxy takes a read short of its buffer, once a hang-up was reported,
/// for the last one, and cut the origin's answer there, or a later one once the session
/// came back to the proxy; and fails a request outright when the hang-up comes while the
/// request that brought the session back is being written.
fn loss_left_to_tls_calls(fd: c_int) -> bool {
    fdtable::get(fd).is_some_and(|conn| conn.state().proxy_end_in_tls_calls())
}

/// A wait reported the peer's end alone (RDHUP, no error or hang-up) on `fd`, and bytes
/// are still there to read (an answer, then the proxy's close, as with `Connection:
/// close`): the end is the program's to meet after them, nothing to look into
/// (`proxy_lost_under_wait` would say the same, after a system call more).
fn answer_before_end(fd: c_int) -> bool {
    let saved = sys::errno();
    let unread = super::read::unread_bytes(fd);
    sys::set_errno(saved);
    unread > 0
}

/// A wait reported `fd` readable, and it carries our TLS session with the proxy whose
/// records were all for the session itself (`Conn::readable_for_program`).
pub(super) fn only_records_for_us(fd: c_int) -> bool {
    any_linked() && linked_records_only(fd)
}

/// `only_records_for_us` with the proxy over TLS: out of line, as the default clear-text
/// link never comes here (build.rs's layout keeps what never runs apart).
#[inline(never)]
fn linked_records_only(fd: c_int) -> bool {
    let Some(conn) = fdtable::get(fd) else {
        return false;
    };
    let saved = sys::errno();
    let hidden = shielded(|| !conn.readable_for_program(), || false);
    sys::set_errno(saved);
    hidden
}
