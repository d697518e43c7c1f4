//! Which epoll instances watch a tracked socket, and under what data. epoll reports an
//! event by the program's own `data` (a pointer, an index, sometimes the fd), so to hide a
//! proxy's hang-up from an event loop (see `hidden_hang_ups`) we must find the fd again.
//! Only tracked sockets are recorded; an entry can outlive its epoll instance, so every
//! answer is checked against the socket's live state before anything is done with it.
//!
//! Kept in the fd's own slot of the fd table (`fdtable::watches`): a program's
//! `epoll_ctl` on a tracked socket costs the slot's lookup and its own lock, no hashing
//! and no process-wide lock (an event loop makes several per connection, and two per
//! keep-alive request). Finding the fd of an event (`registered_as`), which runs only for
//! hang-ups, ends and errors, and with TLS to the proxy, looks first at the slot the
//! event's data names (most loops name a registration by its fd), else walks the slots.
//!
//! A tracked socket's input registrations ask the kernel for EPOLLRDHUP too
//! (`events_to_register`), so that the proxy's close before its answer is reported as the
//! end it is, which `hidden_hang_ups` hides, not as input; an end the program did not ask
//! for is taken out of what it is shown.

use super::{epoll_fdinfo, fdtable};
use crate::sync::SpinLock;
use libc::c_int;

/// One epoll instance's registration of a socket.
#[derive(Clone, Copy)]
struct Registration {
    epoll: c_int,
    data: u64,
    /// The events the program asked for (EPOLLIN, ...); the kernel has
    /// `events_to_register` of them.
    events: u32,
}

/// What a tracked socket's registration asking for `events` asks of the kernel: an input
/// wait asks for the peer's end too (EPOLLRDHUP). Not with EPOLLEXCLUSIVE, which takes no
/// other event (EINVAL).
pub fn events_to_register(events: u32) -> u32 {
    let input = libc::EPOLLIN as u32;
    let exclusive = libc::EPOLLEXCLUSIVE as u32;
    match events & (input | exclusive) == input {
        true => events | libc::EPOLLRDHUP as u32,
        false => events,
    }
}

/// A socket's registrations: nearly always with one epoll instance, kept inline (no
/// allocation per connection).
#[derive(Default)]
pub(super) struct Registrations {
    first: Option<Registration>,
    others: Vec<Registration>,
    /// The epoll instances whose registrations were read from the kernel for this socket
    /// (`learn_from_kernel`): each is read once.
    asked_kernel: Vec<c_int>,
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

    /// Drops `epoll`'s registration.
    fn remove(&mut self, epoll: c_int) {
        if self.first.is_some_and(|r| r.epoll == epoll) {
            self.first = self.others.pop();
        } else {
            self.others.retain(|r| r.epoll != epoll);
        }
    }
}

/// Where `epoll_ctl(op)` on `fd` is recorded: a tracked fd's registrations; for an
/// `EPOLL_CTL_DEL`, those of any fd with a slot. `None`: nothing to record (and an ADD or
/// MOD is the program's own: the socket is not tracked).
pub fn record_for(fd: c_int, op: c_int) -> Option<Record> {
    fdtable::watches_to_note(fd, op == libc::EPOLL_CTL_DEL).map(Record)
}

/// A socket's registrations, found before its `epoll_ctl` (`record_for`).
pub struct Record(&'static SpinLock<Registrations>);

impl Record {
    /// After a successful `epoll_ctl(epoll, op, fd, {events, data})`.
    pub fn note(&self, epoll: c_int, op: c_int, events: u32, data: u64) {
        let mut watches = self.0.lock();
        if op == libc::EPOLL_CTL_DEL {
            watches.remove(epoll);
            return;
        }
        watches.set(Registration {
            epoll,
            data,
            events,
        });
    }
}

/// After a successful `epoll_ctl(epoll, op, fd, {events, data})` (`record_for` and
/// `Record::note` in one).
#[cfg(test)]
fn note(epoll: c_int, op: c_int, fd: c_int, events: u32, data: u64) {
    if let Some(record) = record_for(fd, op) {
        record.note(epoll, op, events, data);
    }
}

/// Registrations with `epoll` of the tracked fds it `needed`, made before the library
/// tracked them (an event loop that registers a socket before its connect, as nginx
/// does), learned from the kernel (`epoll_fdinfo`): once per socket and epoll instance,
/// and only when the caller needs them (plaintext waiting in a session, which no event
/// shows).
pub fn learn_from_kernel(epoll: c_int, needed: impl Fn(c_int) -> bool) {
    let mut unasked = Vec::new();
    fdtable::each_watched(|fd, registrations| {
        if registrations.of(epoll).is_none() && !registrations.asked_kernel.contains(&epoll) {
            unasked.push(fd);
        }
        false
    });
    // `needed` looks at the connection: not under the registrations' lock (fdtable's
    // lock rules).
    unasked.retain(|&fd| needed(fd));
    let unknown: Vec<c_int> = unasked
        .into_iter()
        .filter(|&fd| {
            fdtable::watches_to_note(fd, false).is_some_and(|watches| {
                let mut watches = watches.lock();
                let first_time = !watches.asked_kernel.contains(&epoll);
                if first_time {
                    watches.asked_kernel.push(epoll);
                }
                first_time
            })
        })
        .collect();
    if unknown.is_empty() {
        return;
    }
    let Some(known) = epoll_fdinfo::registrations_of(epoll) else {
        return;
    };
    for fd in unknown {
        let Some(file) = epoll_fdinfo::FileId::of(fd) else {
            continue;
        };
        // The registration of this very file: the number it was made with may name
        // another since (closed, a dup kept).
        let Some(found) = known.iter().find(|r| r.file == file) else {
            continue;
        };
        let Some(watches) = fdtable::watches_to_note(fd, false) else {
            continue;
        };
        let mut watches = watches.lock();
        // A registration the program made meanwhile is newer than the kernel's answer.
        if watches.of(epoll).is_none() {
            // The kernel shows EPOLLERR and EPOLLHUP, which every registration gets, as
            // asked.
            let always = (libc::EPOLLERR | libc::EPOLLHUP) as u32;
            watches.set(Registration {
                epoll,
                data: found.data,
                events: found.events & !always,
            });
        }
    }
}

/// The tracked fds `epoll` watches for input, each with the data it reports them by.
pub fn watched_for_input(epoll: c_int) -> Vec<(c_int, u64)> {
    let mut found = Vec::new();
    fdtable::each_watched(|fd, registrations| {
        found.extend(
            registrations
                .iter()
                .filter(|r| r.epoll == epoll && r.events & libc::EPOLLIN as u32 != 0)
                .map(|r| (fd, r.data)),
        );
        false
    });
    found
}

/// The tracked fd `epoll` reports under `data`, if one was registered that way.
pub fn fd_for(epoll: c_int, data: u64) -> Option<c_int> {
    registered_as(epoll, data).map(|(fd, _)| fd)
}

/// The tracked fd `epoll` reports under `data`, with the events the program asked for.
/// Most event loops name a registration by its fd (libuv, Java's selectors, Python's,
/// wrk): that slot is looked at first, and the walk over every slot is left to the others
/// (a pointer, a token), so that a loop with thousands of connections does not walk them
/// all at each one's end.
pub fn registered_as(epoll: c_int, data: u64) -> Option<(c_int, u32)> {
    // `data.fd` fills the low half of the union (the rest may be anything).
    let named = data as u32 as c_int;
    let by_name = fdtable::watches(named)
        .filter(|_| fdtable::is_tracked(named))
        .and_then(|watches| watches.lock().of(epoll))
        .filter(|registration| registration.data == data);
    if let Some(registration) = by_name {
        return Some((named, registration.events));
    }
    let mut found = None;
    fdtable::each_watched(|fd, registrations| {
        let registration = registrations
            .iter()
            .find(|r| r.epoll == epoll && r.data == data);
        found = registration.map(|r| (fd, r.events));
        found.is_some()
    });
    found
}

/// `fd` is registered with `epoll` for one report at a time (EPOLLONESHOT), and a report
/// of ours was hidden from the program: the registration is turned on again, as the
/// program would after handling it.
pub fn rearm_one_shot(epoll: c_int, fd: c_int) {
    let registration = fdtable::watches(fd).and_then(|watches| watches.lock().of(epoll));
    let Some(Registration { events, data, .. }) = registration else {
        return;
    };
    if events & libc::EPOLLONESHOT as u32 == 0 {
        return;
    }
    let mut event = libc::epoll_event {
        events: events_to_register(events),
        u64: data,
    };
    // SAFETY: a valid event for a registration the program made.
    unsafe { crate::sys::epoll_ctl(epoll, libc::EPOLL_CTL_MOD, fd, &mut event) };
}

/// A recovery that owned `fd` has ended: each edge-triggered registration of it (not a
/// one-shot one, which the program turns on itself) is made again, so that readiness the
/// program met as EAGAIN meanwhile (a write while the recovery resent) is reported once
/// more: an edge-triggered loop would otherwise wait for a change that already came.
pub fn report_again(fd: c_int) {
    let (edge, one_shot) = (libc::EPOLLET as u32, libc::EPOLLONESHOT as u32);
    let again: Vec<Registration> = match fdtable::watches(fd) {
        Some(watches) => watches
            .lock()
            .iter()
            .filter(|r| r.events & (edge | one_shot) == edge)
            .copied()
            .collect(),
        None => return,
    };
    for Registration {
        epoll,
        data,
        events,
    } in again
    {
        let mut event = libc::epoll_event {
            events: events_to_register(events),
            u64: data,
        };
        // SAFETY: a valid event for a registration the program made.
        unsafe { crate::sys::epoll_ctl(epoll, libc::EPOLL_CTL_MOD, fd, &mut event) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::Conn;
    use std::net::SocketAddr;
    use std::sync::Arc;

    /// Fd numbers no other test tracks (the fd table is process-wide): below the range
    /// the fd table's own test forgets at once (4999 and up), above the test process's
    /// real fds.
    const BASE: c_int = 3_000;

    fn track(fd: c_int) {
        let conn = Conn::new(SocketAddr::from(([203, 0, 113, 10], 80)), None, true, 0);
        assert!(fdtable::insert(fd, Arc::new(conn)));
    }

    #[test]
    fn finds_by_epoll_and_data_and_forgets() {
        let fd = BASE + 7;
        track(fd);
        note(900, libc::EPOLL_CTL_ADD, fd, libc::EPOLLIN as u32, 0xdead);
        note(901, libc::EPOLL_CTL_ADD, fd, libc::EPOLLOUT as u32, 0xbeef);
        assert_eq!(watched_for_input(900), vec![(fd, 0xdead)]);
        assert_eq!(watched_for_input(901), vec![]);
        assert_eq!(fd_for(900, 0xdead), Some(fd));
        assert_eq!(fd_for(900, 0xbeef), None);
        assert_eq!(
            registered_as(901, 0xbeef),
            Some((fd, libc::EPOLLOUT as u32))
        );
        note(900, libc::EPOLL_CTL_MOD, fd, libc::EPOLLIN as u32, 0xcafe);
        assert_eq!(fd_for(900, 0xdead), None);
        assert_eq!(fd_for(900, 0xcafe), Some(fd));
        note(900, libc::EPOLL_CTL_DEL, fd, 0, 0);
        assert_eq!(fd_for(900, 0xcafe), None);
        assert_eq!(fd_for(901, 0xbeef), Some(fd));
        fdtable::remove(fd);
        assert_eq!(fd_for(901, 0xbeef), None);
        // A number tracked again starts with no registration.
        track(fd);
        assert_eq!(fd_for(901, 0xbeef), None);
        fdtable::remove(fd);
    }

    #[test]
    fn a_delete_leaves_the_other_epolls_registration() {
        let fds = BASE + 1000..BASE + 1100;
        for fd in fds.clone() {
            track(fd);
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
        let fd = BASE + 1050;
        note(910, libc::EPOLL_CTL_DEL, fd, 0, 0);
        assert_eq!(fd_for(910, fd as u64), None);
        assert_eq!(fd_for(911, 1 << 32 | fd as u64), Some(fd));
        assert_eq!(fd_for(910, fd as u64 + 1), Some(fd + 1));
        assert_eq!(watched_for_input(910).len(), 99);
        for fd in fds {
            fdtable::remove(fd);
        }
        assert_eq!(fd_for(911, 1 << 32 | fd as u64), None);
        assert!(watched_for_input(911).is_empty());
    }

    #[test]
    fn data_naming_another_tracked_fd_still_finds_its_own() {
        let (named, registered) = (BASE + 1600, BASE + 1601);
        track(named);
        track(registered);
        // Data that reads as `named`'s number, on `registered`'s registration (a token that
        // happens to equal another fd): the walk finds it.
        note(
            930,
            libc::EPOLL_CTL_ADD,
            registered,
            libc::EPOLLIN as u32,
            named as u64,
        );
        assert_eq!(
            registered_as(930, named as u64),
            Some((registered, libc::EPOLLIN as u32))
        );
        // The usual case: the data is the fd (its upper half anything).
        let data = 0xabcd_0000_0000 | named as u64;
        note(930, libc::EPOLL_CTL_ADD, named, libc::EPOLLOUT as u32, data);
        assert_eq!(
            registered_as(930, data),
            Some((named, libc::EPOLLOUT as u32))
        );
        fdtable::remove(named);
        assert_eq!(registered_as(930, data), None, "untracked: never found");
        fdtable::remove(registered);
    }

    #[test]
    fn input_registrations_ask_for_the_end_too() {
        let (input, end) = (libc::EPOLLIN as u32, libc::EPOLLRDHUP as u32);
        let (edge, exclusive) = (libc::EPOLLET as u32, libc::EPOLLEXCLUSIVE as u32);
        assert_eq!(events_to_register(input), input | end);
        assert_eq!(events_to_register(input | edge), input | edge | end);
        assert_eq!(events_to_register(input | end), input | end);
        assert_eq!(
            events_to_register(libc::EPOLLOUT as u32),
            libc::EPOLLOUT as u32
        );
        assert_eq!(events_to_register(input | exclusive), input | exclusive);
    }

    #[test]
    fn a_registration_made_before_tracking_is_learned_from_the_kernel() {
        let mut pair = [0; 2];
        // SAFETY: plain system calls on fds this test owns.
        let epoll = unsafe {
            assert_eq!(
                libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, pair.as_mut_ptr()),
                0
            );
            libc::epoll_create1(libc::EPOLL_CLOEXEC)
        };
        let fd = pair[1];
        let asked = (libc::EPOLLIN | libc::EPOLLET | libc::EPOLLRDHUP) as u32;
        let mut event = libc::epoll_event {
            events: asked,
            u64: 0x5555_dead_beef,
        };
        // Registered before the fd is tracked, as nginx does.
        // SAFETY: as above.
        let added = unsafe { crate::sys::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd, &mut event) };
        assert_eq!(added, 0);
        track(fd);
        assert!(watched_for_input(epoll).is_empty());
        learn_from_kernel(epoll, |_| false);
        assert!(watched_for_input(epoll).is_empty(), "only when needed");
        learn_from_kernel(epoll, |candidate| candidate == fd);
        assert_eq!(watched_for_input(epoll), vec![(fd, 0x5555_dead_beef)]);
        assert_eq!(registered_as(epoll, 0x5555_dead_beef), Some((fd, asked)));
        // The program's own change afterwards is noted as any other.
        note(epoll, libc::EPOLL_CTL_DEL, fd, 0, 0);
        assert!(watched_for_input(epoll).is_empty());
        // Asked once: the kernel is not read again for this socket and instance.
        learn_from_kernel(epoll, |_| true);
        assert!(watched_for_input(epoll).is_empty());
        fdtable::remove(fd);
        // SAFETY: closes this test's own fds.
        unsafe {
            for fd in [epoll, pair[0], pair[1]] {
                libc::close(fd);
            }
        }
    }

    #[test]
    fn an_untracked_fd_is_not_recorded() {
        let fd = BASE + 1500;
        note(920, libc::EPOLL_CTL_ADD, fd, libc::EPOLLIN as u32, 1);
        assert_eq!(fd_for(920, 1), None);
    }
}
