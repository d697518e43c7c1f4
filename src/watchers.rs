//! Which epoll instances watch a tracked socket, and under what data. epoll reports an
//! event by the program's own `data` (a pointer, an index, sometimes the fd), so to hide a
//! proxy's hang-up from an event loop (see `conn::hidden_hang_ups`) we must find the fd again.
//! Only tracked sockets are recorded; an entry can outlive its epoll instance, so every
//! answer is checked against the socket's live state before anything is done with it.
//!
//! Kept by fd: a program's `epoll_ctl` and `close` on a tracked socket cost one lookup, not
//! a scan of every watched socket (an event loop with thousands of connections makes
//! several of those calls per request). Finding the fd of an event (`fd_for`) scans; it
//! runs only for hang-ups and errors, and with TLS to the proxy.

use crate::int_hash::{int_map, IntMap};
use crate::sync::SpinLock;
use libc::c_int;

/// One epoll instance's registration of a socket.
#[derive(Clone, Copy)]
struct Registration {
    epoll: c_int,
    data: u64,
    /// The events asked for (EPOLLIN, ...).
    events: u32,
}

/// A socket's registrations: nearly always with one epoll instance, kept inline (no
/// allocation per connection).
#[derive(Default)]
struct Registrations {
    first: Option<Registration>,
    others: Vec<Registration>,
}

impl Registrations {
    fn iter(&self) -> impl Iterator<Item = &Registration> {
        self.first.iter().chain(&self.others)
    }

    fn of(&self, epoll: c_int) -> Option<Registration> {
        self.iter().find(|r| r.epoll == epoll).copied()
    }

    fn set(&mut self, registration: Registration) {
        let same = |r: &&mut Registration| r.epoll == registration.epoll;
        if let Some(existing) = self.first.iter_mut().chain(&mut self.others).find(same) {
            *existing = registration;
        } else if self.first.is_none() {
            self.first = Some(registration);
        } else {
            self.others.push(registration);
        }
    }

    /// Drops `epoll`'s registration; true when none is left.
    fn remove(&mut self, epoll: c_int) -> bool {
        if self.first.is_some_and(|r| r.epoll == epoll) {
            self.first = self.others.pop();
        } else {
            self.others.retain(|r| r.epoll != epoll);
        }
        self.first.is_none()
    }
}

/// fd -> its registrations.
type Watches = IntMap<c_int, Registrations>;

static WATCHES: SpinLock<Watches> = SpinLock::new(int_map());

/// After a successful `epoll_ctl(epoll, op, fd, {events, data})` on a tracked fd (or a
/// `EPOLL_CTL_DEL` on any fd).
pub fn note(epoll: c_int, op: c_int, fd: c_int, events: u32, data: u64) {
    let mut watches = WATCHES.lock();
    if op == libc::EPOLL_CTL_DEL {
        if watches.get_mut(&fd).is_some_and(|r| r.remove(epoll)) {
            watches.remove(&fd);
        }
        return;
    }
    watches.entry(fd).or_default().set(Registration {
        epoll,
        data,
        events,
    });
}

/// The tracked fds `epoll` watches for input, each with the data it reports them by.
pub fn watched_for_input(epoll: c_int) -> Vec<(c_int, u64)> {
    WATCHES
        .lock()
        .iter()
        .flat_map(|(&fd, registrations)| registrations.iter().map(move |r| (fd, r)))
        .filter(|(_, r)| r.epoll == epoll && r.events & libc::EPOLLIN as u32 != 0)
        .map(|(fd, r)| (fd, r.data))
        .collect()
}

/// The tracked fd `epoll` reports under `data`, if one was registered that way.
pub fn fd_for(epoll: c_int, data: u64) -> Option<c_int> {
    WATCHES
        .lock()
        .iter()
        .find(|(_, registrations)| {
            registrations
                .iter()
                .any(|r| r.epoll == epoll && r.data == data)
        })
        .map(|(&fd, _)| fd)
}

/// `fd` is registered with `epoll` for one report at a time (EPOLLONESHOT), and a report
/// of ours was hidden from the program: the registration is turned on again, as the
/// program would after handling it.
pub fn rearm_one_shot(epoll: c_int, fd: c_int) {
    let registration = WATCHES
        .lock()
        .get(&fd)
        .and_then(|registrations| registrations.of(epoll));
    let Some(Registration { events, data, .. }) = registration else {
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
    let removed = WATCHES.lock().remove(&fd);
    // Freed outside the lock.
    drop(removed);
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

    #[test]
    fn a_delete_leaves_the_other_epolls_registration() {
        for fd in 1000..1100 {
            note(
                910,
                libc::EPOLL_CTL_ADD,
                fd,
                libc::EPOLLIN as u32,
                fd as u64,
            );
            note(
                911,
                libc::EPOLL_CTL_ADD,
                fd,
                libc::EPOLLIN as u32,
                1 << 32 | fd as u64,
            );
        }
        note(910, libc::EPOLL_CTL_DEL, 1050, 0, 0);
        assert_eq!(fd_for(910, 1050), None);
        assert_eq!(fd_for(911, 1 << 32 | 1050), Some(1050));
        assert_eq!(fd_for(910, 1051), Some(1051));
        assert_eq!(watched_for_input(910).len(), 99);
        for fd in 1000..1100 {
            forget_fd(fd);
        }
        assert_eq!(fd_for(911, 1 << 32 | 1050), None);
        assert!(watched_for_input(911).is_empty());
    }
}
