//! Readiness the kernel cannot see. Over TLS to the proxy, a record larger than the
//! program's read leaves decrypted bytes in our session (`link`) while the socket shows
//! nothing: a program that polls before it reads again would wait for bytes it already
//! has. A wait (poll, ppoll, select, pselect, epoll) that asks for input on such a socket
//! returns at once instead: `look` makes the program's wait without a timeout, so the
//! program also sees whatever else is ready at that moment, and those sockets are shown
//! readable. Every function answers `None` when there is nothing to add, and the wait is
//! made as it would be. epoll reports by the data of a registration: one the program made
//! before the library tracked the socket (nginx registers before its connect) is learned
//! from the kernel here, the first time it is needed (`watchers::learn_from_kernel`).

use super::watchers;
use super::{any_plaintext_waiting, fdtable};
use libc::{c_int, epoll_event, fd_set, nfds_t, pollfd};

fn waiting(fd: c_int) -> bool {
    fd >= 0 && fdtable::peek(fd, |conn| conn.plaintext_waiting()) == Some(true)
}

/// poll and ppoll.
///
/// # Safety
/// `fds` points to `count` pollfds, as for poll(2).
pub unsafe fn poll_showing_plaintext(
    fds: *mut pollfd,
    count: nfds_t,
    look: impl FnOnce() -> c_int,
) -> Option<c_int> {
    if fds.is_null() || !any_plaintext_waiting() {
        return None;
    }
    let owed = |entry: &pollfd| entry.events & libc::POLLIN != 0 && waiting(entry.fd);
    {
        // SAFETY: poll(2)'s contract.
        let entries = unsafe { std::slice::from_raw_parts(fds, count as usize) };
        if !entries.iter().any(owed) {
            return None;
        }
    }
    let mut ready = look();
    if ready < 0 {
        return Some(ready);
    }
    // SAFETY: as above; `look` is done with the entries.
    let entries = unsafe { std::slice::from_raw_parts_mut(fds, count as usize) };
    for entry in entries.iter_mut().filter(|entry| owed(entry)) {
        if entry.revents == 0 {
            ready += 1;
        }
        entry.revents |= libc::POLLIN;
    }
    Some(ready)
}

/// epoll_wait, epoll_pwait, epoll_pwait2: the events of sockets with plaintext waiting
/// are added (by the data the program registered them with) after the kernel's, as room
/// in `events` allows.
///
/// # Safety
/// `events` has room for `max` events, as for epoll_wait(2).
pub unsafe fn epoll_showing_plaintext(
    epoll: c_int,
    events: *mut epoll_event,
    max: c_int,
    look: impl FnOnce() -> c_int,
) -> Option<c_int> {
    if events.is_null() || max <= 0 || !any_plaintext_waiting() {
        return None;
    }
    watchers::learn_from_kernel(epoll, waiting);
    let owed: Vec<u64> = watchers::watched_for_input(epoll)
        .into_iter()
        .filter(|&(fd, _)| waiting(fd))
        .map(|(_, data)| data)
        .collect();
    if owed.is_empty() {
        return None;
    }
    let ready = look();
    if ready < 0 {
        return Some(ready);
    }
    // SAFETY: epoll_wait(2)'s contract: room for `max` events.
    let events = unsafe { std::slice::from_raw_parts_mut(events, max as usize) };
    let room = events.len();
    let mut shown = ready as usize;
    for data in owed {
        match events[..shown].iter_mut().find(|event| event.u64 == data) {
            Some(event) => event.events |= libc::EPOLLIN as u32,
            None if shown < room => {
                events[shown] = epoll_event {
                    events: libc::EPOLLIN as u32,
                    u64: data,
                };
                shown += 1;
            }
            None => break,
        }
    }
    Some(shown as c_int)
}

/// select and pselect.
///
/// # Safety
/// As select(2): `read` is null or holds `count` bits.
pub unsafe fn select_showing_plaintext(
    count: c_int,
    read: *mut fd_set,
    look: impl FnOnce() -> c_int,
) -> Option<c_int> {
    if read.is_null() || !any_plaintext_waiting() {
        return None;
    }
    let owed: Vec<c_int> = (0..count.clamp(0, libc::FD_SETSIZE as c_int))
        // SAFETY: fd < FD_SETSIZE and `read` is the program's valid fd_set.
        .filter(|&fd| unsafe { libc::FD_ISSET(fd, read) } && waiting(fd))
        .collect();
    if owed.is_empty() {
        return None;
    }
    let mut ready = look();
    if ready < 0 {
        return Some(ready);
    }
    for fd in owed {
        // SAFETY: as above.
        unsafe {
            if !libc::FD_ISSET(fd, read) {
                libc::FD_SET(fd, read);
                ready += 1;
            }
        }
    }
    Some(ready)
}
