//! Which file descriptors are connections we track.
//!
//! Almost every fd a program uses is not ours, so the question "is this fd tracked?" must
//! cost one atomic load while nothing is tracked (a count), and then little more: an array
//! of pointers indexed by fd, null for every fd never tracked. A slot, once allocated for an fd number, lives for the life of the process (fd
//! numbers are few and reused), so a pointer read from the table never dangles; the
//! connection it holds is reference-counted, since `dup` makes two fds share one.
//!
//! Every fd number a process can have is covered (`slots`: where each number's slot is).

use super::watchers::Registrations;
use super::Conn;
use crate::sync::SpinLock;
use crossbeam_utils::CachePadded;
use slots::{slot, slot_or_new, slots, Slot};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::Arc;

#[path = "fdtable_slots.rs"]
mod slots;

/// How many fds are tracked now. Zero in most processes all their life (nothing diverted
/// yet, or nothing to divert): then every hook's first load answers "not ours", and calls
/// that take many fds at once (poll, select) look at none of them. On a line of its own,
/// so that the hooks' reads of it never share a cache line with anything written often.
static TRACKED_COUNT: CachePadded<AtomicUsize> = CachePadded::new(AtomicUsize::new(0));

pub fn any_tracked() -> bool {
    TRACKED_COUNT.load(Ordering::Acquire) != 0
}

/// The process whose table this is: set at the first entry, and in a forked child.
static OWNER: AtomicI32 = AtomicI32::new(0);

/// Whether a change to the table is this process's to make. The child of a `vfork` runs
/// in its parent's memory until it execs or exits, and its closes and dups (Python's
/// subprocess closes every fd from 3 up there) are its own: the parent's connections stay
/// tracked. Asked only where an entry is made or dropped (once per connection), never on
/// an untracked fd's path.
fn changes_are_ours() -> bool {
    // SAFETY: getpid(2) has no preconditions (a system call: glibc caches no pid).
    let me = unsafe { libc::getpid() };
    match OWNER.compare_exchange(0, me, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => true,
        Err(owner) => owner == me,
    }
}

/// The connection behind `fd`, if we track it. The fast path of every I/O hook.
#[inline]
pub fn get(fd: i32) -> Option<Arc<Conn>> {
    tracked_slot(fd)?.conn.lock().clone()
}

/// `look` at the connection behind `fd`, under its slot's lock, without taking a
/// reference: `get`'s reference count is two atomic read-modify-writes more, paid by a
/// check that reads one of the connection's atomics (`look` reads only those: no system
/// call, no other lock, per the slot's lock rules).
#[inline]
pub fn peek<R>(fd: i32, look: impl FnOnce(&Conn) -> R) -> Option<R> {
    tracked_slot(fd)?.conn.lock().as_deref().map(look)
}

/// Whether `fd` is tracked, without taking its connection (`get`'s lock and reference
/// count): for a call that only notes the fd (an event loop's `epoll_ctl`, several per
/// request).
pub fn is_tracked(fd: i32) -> bool {
    tracked_slot(fd).is_some()
}

#[inline]
fn tracked_slot(fd: i32) -> Option<&'static Slot> {
    slot(fd).filter(|slot| slot.tracked.load(Ordering::Acquire))
}

/// Starts tracking `fd`. False only for a negative fd or when the memory for a high fd's
/// chunk cannot be mapped: the caller must then leave the socket alone.
pub fn insert(fd: i32, conn: Arc<Conn>) -> bool {
    if !changes_are_ours() {
        return true;
    }
    let Some(slot) = slot_or_new(fd) else {
        return false;
    };
    let previous = slot.conn.lock().replace(conn);
    if !slot.tracked.swap(true, Ordering::AcqRel) {
        TRACKED_COUNT.fetch_add(1, Ordering::AcqRel);
    }
    if let Some(conn) = &previous {
        conn.fd_released();
    }
    drop(previous);
    true
}

/// Stops tracking `fd`, a number the kernel already gave to something else.
#[inline(always)]
pub fn remove(fd: i32) {
    if maybe_tracked(fd) {
        forget(fd, None);
    }
}

/// The program is about to make `fd` name something else (a close; a connect elsewhere):
/// it stops being tracked, and a recovery's helper thread working on that number lets go
/// first (`fd_hold`). Called BEFORE the real call: once closed, the number can be handed
/// to another thread's new socket at once.
#[inline(always)]
pub fn release(fd: i32) {
    if maybe_tracked(fd) {
        drop(release_slow(fd));
    }
}

/// `release` for `dup2`/`dup3` onto `fd`, which may fail and leave `fd` as it was: the
/// connection it named, to be put back (`put_back`) if so.
#[inline]
pub fn release_for_dup(fd: i32) -> Option<Arc<Conn>> {
    if maybe_tracked(fd) {
        return release_slow(fd);
    }
    None
}

/// After a failed `dup2`/`dup3`: `fd` still names the connection `release_for_dup` took.
#[cold]
pub fn put_back(fd: i32, conn: Arc<Conn>) {
    insert(fd, conn);
}

#[cold]
#[inline(never)]
fn release_slow(fd: i32) -> Option<Arc<Conn>> {
    let conn = take(fd, None)?;
    conn.before_close(fd);
    Some(conn)
}

/// `socket()` made `fd` (a TCP stream, or not): forgotten if it was tracked, and what it is
/// kept for its connect (`take_born_tcp`). Kept only on a number that has a slot (one
/// tracked before: a program making a connection per request reuses a few numbers), so a
/// socket never costs a slot; a process that never tracked an fd pays one load.
#[inline]
pub fn made_socket(fd: i32, tcp: bool) {
    if !slots::any_made() {
        // Nothing ever tracked: nothing to forget, no slot to note in.
        return;
    }
    remove(fd);
    if let Some(slot) = slot(fd) {
        slot.born_tcp.store(tcp, Ordering::Relaxed);
    }
}

/// A call other than `socket()` gave out `fd` (an accept, a dup, a socketpair): forgotten
/// if it was tracked, and not a TCP stream `socket()` made.
pub fn handed_out(fd: i32) {
    remove(fd);
    not_born_tcp(fd);
}

fn not_born_tcp(fd: i32) {
    if let Some(slot) = slot(fd) {
        slot.born_tcp.store(false, Ordering::Relaxed);
    }
}

/// Whether `socket()` made `fd` a TCP stream and no call seen since gave the number out
/// again; asked once, by the connect that follows. A number closed and given out by a call
/// we do not see (a socket received over a unix socket, a raw system call) could keep the
/// mark of the socket before it: a socket of another protocol there would be taken for
/// TCP. A file or a socket of another family fails our connect to the proxy as it fails
/// the program's (`connect`, the socket's own errors).
pub fn take_born_tcp(fd: i32) -> bool {
    let Some(slot) = slot(fd) else {
        return false;
    };
    let born = slot.born_tcp.load(Ordering::Relaxed);
    if born {
        slot.born_tcp.store(false, Ordering::Relaxed);
    }
    born
}

/// Stops tracking `fd` if it still names `conn` (and not a connection made since on a
/// reused number): for an fd found to be something else than the socket of `conn`.
pub fn remove_conn(fd: i32, conn: &Conn) {
    if maybe_tracked(fd) {
        forget(fd, Some(conn));
    }
}

#[cold]
#[inline(never)]
fn forget(fd: i32, only: Option<&Conn>) {
    drop(take(fd, only));
}

/// Stops tracking `fd` (if it names `only`, when given): the connection it named.
fn take(fd: i32, only: Option<&Conn>) -> Option<Arc<Conn>> {
    if !changes_are_ours() {
        return None;
    }
    let slot = slot(fd)?;
    let previous = {
        let mut held = slot.conn.lock();
        let names_it = match (only, held.as_ref()) {
            (Some(conn), Some(current)) => std::ptr::eq(Arc::as_ptr(current), conn),
            (Some(_), None) => false,
            (None, _) => true,
        };
        if !names_it || !slot.tracked.swap(false, Ordering::AcqRel) {
            return None;
        }
        TRACKED_COUNT.fetch_sub(1, Ordering::AcqRel);
        held.take()
    };
    if let Some(conn) = &previous {
        conn.fd_released();
    }
    let registrations = std::mem::take(&mut *slot.watches.lock());
    // Freed outside the lock.
    drop(registrations);
    previous
}

/// After `dup`-like calls: `to` now names the same socket as `from`. Returns false when
/// `from` is tracked and `to` could not be: the caller must see that the socket is not
/// left diverted behind an fd we cannot follow.
pub fn copy(from: i32, to: i32) -> bool {
    match get(from) {
        Some(conn) => {
            not_born_tcp(to);
            insert(to, conn)
        }
        None => {
            handed_out(to);
            true
        }
    }
}

/// `release` for every fd in `first..=last`.
pub fn release_range(first: u32, last: u32) {
    for fd in slots::numbers_with_cells(first, last) {
        release(fd);
    }
}

/// The tracked fds and their connections, at this moment.
pub fn tracked() -> Vec<(i32, Arc<Conn>)> {
    if !any_tracked() {
        return Vec::new();
    }
    slots()
        .filter(|(_, slot)| slot.tracked.load(Ordering::Acquire))
        .filter_map(|(fd, slot)| Some((fd, slot.conn.lock().clone()?)))
        .collect()
}

/// The registrations of `fd` with epoll instances, if a slot was ever made for it.
pub(super) fn watches(fd: i32) -> Option<&'static SpinLock<Registrations>> {
    slot(fd).map(|slot| &slot.watches)
}

/// `fd`'s registrations while it is tracked (`watchers::note`), or with `even_untracked`
/// whenever a slot was ever made for it: one lookup per `epoll_ctl` (the hook has already
/// found something tracked).
pub(super) fn watches_to_note(
    fd: i32,
    even_untracked: bool,
) -> Option<&'static SpinLock<Registrations>> {
    slot(fd)
        .filter(|slot| even_untracked || slot.tracked.load(Ordering::Acquire))
        .map(|slot| &slot.watches)
}

/// Shows `visit` each tracked fd's registrations, under its slot's lock, until it answers
/// true.
pub(super) fn each_watched(mut visit: impl FnMut(i32, &Registrations) -> bool) {
    if !any_tracked() {
        return;
    }
    for (fd, slot) in slots() {
        if slot.tracked.load(Ordering::Acquire) && visit(fd, &slot.watches.lock()) {
            return;
        }
    }
}

pub fn after_fork_in_child() {
    // SAFETY: getpid(2) has no preconditions.
    OWNER.store(unsafe { libc::getpid() }, Ordering::Release);
    for (_, slot) in slots() {
        slot.watches.force_unlock();
        slot.conn.force_unlock();
        if let Some(conn) = slot.conn.lock().as_ref() {
            conn.after_fork_in_child();
        }
    }
}

/// Whether `fd` may be tracked: false for every fd never tracked, and for every fd while
/// nothing is tracked. The hooks' untracked path is this and the real call: in a process
/// tracking nothing, one atomic load; else two more, the table's address and the fd's
/// slot. Above 65536 it
/// answers for the whole range (true once any high fd was tracked): the caller's
/// out-of-line path then looks the fd up, so that the inline path calls nothing and saves
/// no register.
#[inline(always)]
pub fn maybe_tracked(fd: i32) -> bool {
    if TRACKED_COUNT.load(Ordering::Relaxed) == 0 {
        return false;
    }
    slots::may_have_slot(fd)
}

#[cfg(test)]
#[path = "fdtable_tests.rs"]
mod tests;
