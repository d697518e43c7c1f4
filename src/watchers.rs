//! Which epoll instances watch a tracked socket, and under what data. epoll reports an
//! event by the program's own `data` (a pointer, an index, sometimes the fd), so to hide a
//! proxy's hang-up from an event loop (see `conn::hidden_hang_ups`) we must find the fd again.
//! Only tracked sockets are recorded; an entry can outlive its epoll instance, so every
//! answer is checked against the socket's live state before anything is done with it.

use crate::sync::SpinLock;
use libc::c_int;

struct Watch {
    epoll: c_int,
    fd: c_int,
    data: u64,
    /// The events asked for (EPOLLIN, ...).
    events: u32,
}

static WATCHES: SpinLock<Vec<Watch>> = SpinLock::new(Vec::new());

/// After a successful `epoll_ctl(epoll, op, fd, {events, data})` on a tracked fd.
pub fn note(epoll: c_int, op: c_int, fd: c_int, events: u32, data: u64) {
    let mut watches = WATCHES.lock();
    watches.retain(|w| !(w.epoll == epoll && w.fd == fd));
    if op != libc::EPOLL_CTL_DEL {
        watches.push(Watch {
            epoll,
            fd,
            data,
            events,
        });
    }
}

/// The tracked fds `epoll` watches for input, each with the data it reports them by.
pub fn watched_for_input(epoll: c_int) -> Vec<(c_int, u64)> {
    WATCHES
        .lock()
        .iter()
        .filter(|w| w.epoll == epoll && w.events & libc::EPOLLIN as u32 != 0)
        .map(|w| (w.fd, w.data))
        .collect()
}

/// The tracked fd `epoll` reports under `data`, if one was registered that way.
pub fn fd_for(epoll: c_int, data: u64) -> Option<c_int> {
    WATCHES
        .lock()
        .iter()
        .find(|w| w.epoll == epoll && w.data == data)
        .map(|w| w.fd)
}

/// `fd` is registered with `epoll` for one report at a time (EPOLLONESHOT), and a report
/// of ours was hidden from the program: the registration is turned on again, as the
/// program would after handling it.
pub fn rearm_one_shot(epoll: c_int, fd: c_int) {
    let watch = WATCHES
        .lock()
        .iter()
        .find(|w| w.epoll == epoll && w.fd == fd)
        .map(|w| (w.events, w.data));
    let Some((events, data)) = watch else {
        return;
    };
    if events & libc::EPOLLONESHOT as u32 == 0 {
        return;
    }
    let mut event = libc::epoll_event { events, u64: data };
    // SAFETY: a valid event for a registration the program made.
    unsafe { crate::sys::epoll_ctl(epoll, libc::EPOLL_CTL_MOD, fd, &mut event) };
}

/// `fd` is being closed: the kernel drops its registrations with the last reference.
pub fn forget_fd(fd: c_int) {
    let mut watches = WATCHES.lock();
    if !watches.is_empty() {
        watches.retain(|w| w.fd != fd);
    }
}

pub fn after_fork_in_child() {
    WATCHES.force_unlock();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_by_epoll_and_data_and_forgets() {
        note(900, libc::EPOLL_CTL_ADD, 7, libc::EPOLLIN as u32, 0xdead);
        note(901, libc::EPOLL_CTL_ADD, 7, libc::EPOLLOUT as u32, 0xbeef);
        assert_eq!(watched_for_input(900), vec![(7, 0xdead)]);
        assert_eq!(watched_for_input(901), vec![]);
        assert_eq!(fd_for(900, 0xdead), Some(7));
        assert_eq!(fd_for(900, 0xbeef), None);
        note(900, libc::EPOLL_CTL_MOD, 7, libc::EPOLLIN as u32, 0xcafe);
        assert_eq!(fd_for(900, 0xdead), None);
        assert_eq!(fd_for(900, 0xcafe), Some(7));
        note(900, libc::EPOLL_CTL_DEL, 7, 0, 0);
        assert_eq!(fd_for(900, 0xcafe), None);
        forget_fd(7);
        assert_eq!(fd_for(901, 0xbeef), None);
    }
}
