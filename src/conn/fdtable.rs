//! Which file descriptors are connections we track.
//!
//! Almost every fd a program uses is not ours, so the question "is this fd tracked?" must
//! cost one atomic load while nothing is tracked (a count), and then little more: an array
//! of pointers indexed by fd, null for every fd never tracked. A slot, once allocated for an fd number, lives for the life of the process (fd
//! numbers are few and reused), so a pointer read from the table never dangles; the
//! connection it holds is reference-counted, since `dup` makes two fds share one.
//!
//! Every fd number a process can have is covered. The first 65536 are in one array (the
//! one-load fast path); the numbers above (a raised RLIMIT_NOFILE, a `dup2` to a high
//! number) are in chunks of the same size, mapped on demand and found through a second
//! array, so a program that never tracks a high fd pays nothing for them (one load tells).
//! Linux keeps fd numbers below 2^31 (`fs.nr_open` is at most `INT_MAX`), which bounds the
//! second array. Both arrays are one anonymous mapping made when the first fd is tracked:
//! as statics they were 768 KiB of `.bss`, which the dynamic linker maps at every process
//! start (one `mmap` more, ~4 µs of every start on our VM), in processes that never track
//! an fd.

use super::watchers::Registrations;
use super::Conn;
use crate::sync::SpinLock;
use crossbeam_utils::CachePadded;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::Arc;

/// 2^16 slots per chunk; 2^10 in test builds with the `small-fd-table` feature, so that a
/// test reaches the second level with a few thousand fds.
const CHUNK_BITS: u32 = if cfg!(feature = "small-fd-table") {
    10
} else {
    16
};
/// Slots in the static first chunk, and in every chunk mapped later.
const CHUNK: usize = 1 << CHUNK_BITS;
/// No fd number reaches this (Linux: `fs.nr_open` <= INT_MAX).
const FD_LIMIT: usize = 1 << 31;
const CHUNKS: usize = FD_LIMIT / CHUNK;

/// One fd number's entry. Lock rules: `conn` and `watches` guard data only (a clone, a
/// swap, a few comparisons, `peek`'s load of an atomic), are never held together, and
/// never across a system call.
struct Slot {
    tracked: AtomicBool,
    conn: SpinLock<Option<Arc<Conn>>>,
    /// The epoll instances watching the tracked socket (`watchers`): cleared when the fd
    /// is forgotten.
    watches: SpinLock<Registrations>,
    /// `socket()` made this number a TCP stream, and no call seen since gave the number
    /// out again (`made_socket`, `handed_out`): its connect needs no `getsockopt` to know.
    born_tcp: AtomicBool,
}

type Chunk = [AtomicPtr<Slot>; CHUNK];

/// The fd table, zero pages until used.
struct Table {
    /// Slots of fds 0..65536 (the first chunk).
    low: Chunk,
    /// Chunk `n` holds the slots of fds `n * CHUNK ..`; entry 0 stays null (that is `low`).
    high: [AtomicPtr<Chunk>; CHUNKS],
}

/// One past the highest fd of `low` that ever got a slot: a walk over every slot
/// (`tracked`, a connect sweep of `connecting`) stops there instead of reading all 65536
/// cells. Raised only when a slot is made (once per fd number), never on a hook's path.
static LOW_SLOTS_END: AtomicUsize = AtomicUsize::new(0);

/// Null until the first fd is tracked; then a mapping never unmapped.
static TABLE: AtomicPtr<Table> = AtomicPtr::new(null_mut());

/// Set once any chunk of `high` exists: until then an fd beyond `low` is known untracked
/// by this one load.
static ANY_HIGH: AtomicBool = AtomicBool::new(false);

/// How many fds are tracked now. Zero in most processes all their life (nothing diverted
/// yet, or nothing to divert): then every hook's first load answers "not ours", and calls
/// that take many fds at once (poll, select) look at none of them. On a line of its own,
/// so that the hooks' reads of it never share a cache line with anything written often.
static TRACKED_COUNT: CachePadded<AtomicUsize> = CachePadded::new(AtomicUsize::new(0));

pub fn any_tracked() -> bool {
    TRACKED_COUNT.load(Ordering::Acquire) != 0
}

fn table() -> Option<&'static Table> {
    // SAFETY: non-null, TABLE is a zeroed mapping of a whole `Table`, never unmapped
    // (zero bytes are null pointers, and AtomicPtr has the layout of a pointer).
    unsafe { TABLE.load(Ordering::Acquire).as_ref() }
}

fn table_or_new() -> Option<&'static Table> {
    if let Some(table) = table() {
        return Some(table);
    }
    let fresh = map_zeroed::<Table>()?;
    let lost = TABLE
        .compare_exchange(null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire)
        .is_err();
    if lost {
        // SAFETY: `fresh` is our own mapping, never shared; another thread mapped first.
        unsafe { libc::munmap(fresh.cast(), std::mem::size_of::<Table>()) };
    }
    table()
}

/// The table cell of `fd`, if its chunk exists.
fn cell(fd: i32) -> Option<&'static AtomicPtr<Slot>> {
    let index = usize::try_from(fd).ok()?;
    let table = table()?;
    if let Some(cell) = table.low.get(index) {
        return Some(cell);
    }
    let chunk = table.high.get(index >> CHUNK_BITS)?.load(Ordering::Acquire);
    // SAFETY: non-null chunks are mappings of a whole `Chunk` that are never unmapped.
    let chunk = unsafe { chunk.as_ref() }?;
    Some(&chunk[index & (CHUNK - 1)])
}

/// The table cell of `fd`, mapping the table or its chunk if needed; `None` for a negative
/// fd or when no memory can be had.
fn cell_or_new(fd: i32) -> Option<&'static AtomicPtr<Slot>> {
    let table = table_or_new()?;
    if let Some(cell) = cell(fd) {
        return Some(cell);
    }
    let index = usize::try_from(fd).ok()?;
    let entry = table.high.get(index >> CHUNK_BITS)?;
    let fresh = map_zeroed::<Chunk>()?;
    match entry.compare_exchange(null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => ANY_HIGH.store(true, Ordering::Release),
        // SAFETY: `fresh` is our own mapping, never shared; another thread mapped first.
        Err(_) => unsafe {
            libc::munmap(fresh.cast(), std::mem::size_of::<Chunk>());
        },
    }
    cell(fd)
}

/// A `T` of zero bytes (every slot null) in an anonymous mapping of its own: no page is
/// touched until a slot is stored, and the allocator is not involved (it could be the
/// program's).
fn map_zeroed<T>() -> Option<*mut T> {
    // SAFETY: a fresh private anonymous mapping; no existing memory is affected.
    let address = unsafe {
        libc::mmap(
            null_mut(),
            std::mem::size_of::<T>(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    (address != libc::MAP_FAILED).then_some(address.cast())
}

fn slot(fd: i32) -> Option<&'static Slot> {
    let pointer = cell(fd)?.load(Ordering::Acquire);
    // SAFETY: non-null slots are leaked boxes that are never freed.
    unsafe { pointer.as_ref() }
}

fn slot_or_new(fd: i32) -> Option<&'static Slot> {
    let cell = cell_or_new(fd)?;
    if let Some(existing) = slot(fd) {
        return Some(existing);
    }
    let fresh = Box::into_raw(Box::new(Slot {
        tracked: AtomicBool::new(false),
        conn: SpinLock::new(None),
        watches: SpinLock::new(Registrations::default()),
        born_tcp: AtomicBool::new(false),
    }));
    match cell.compare_exchange(null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {
            LOW_SLOTS_END.fetch_max((fd as usize + 1).min(CHUNK), Ordering::AcqRel);
            Some(slot(fd).expect("just stored"))
        }
        Err(_) => {
            // SAFETY: `fresh` was never shared; another thread installed its slot first.
            drop(unsafe { Box::from_raw(fresh) });
            slot(fd)
        }
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

/// Stops tracking `fd`. Called BEFORE the real close: once closed, the number can be
/// handed to another thread's new socket at once.
#[inline(always)]
pub fn remove(fd: i32) {
    if maybe_tracked(fd) {
        forget(fd, None);
    }
}

/// `socket()` made `fd` (a TCP stream, or not): forgotten if it was tracked, and what it is
/// kept for its connect (`take_born_tcp`). Kept only on a number that has a slot (one
/// tracked before: a program making a connection per request reuses a few numbers), so a
/// socket never costs a slot; a process that never tracked an fd pays one load.
#[inline]
pub fn made_socket(fd: i32, tcp: bool) {
    if table().is_none() {
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
    let Some(slot) = slot(fd) else {
        return;
    };
    let previous = {
        let mut held = slot.conn.lock();
        let names_it = match (only, held.as_ref()) {
            (Some(conn), Some(current)) => std::ptr::eq(Arc::as_ptr(current), conn),
            (Some(_), None) => false,
            (None, _) => true,
        };
        if !names_it || !slot.tracked.swap(false, Ordering::AcqRel) {
            return;
        }
        TRACKED_COUNT.fetch_sub(1, Ordering::AcqRel);
        held.take()
    };
    if let Some(conn) = &previous {
        conn.fd_released();
    }
    drop(previous);
    let registrations = std::mem::take(&mut *slot.watches.lock());
    // Freed outside the lock.
    drop(registrations);
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

/// Forgets every fd in `first..=last`.
pub fn remove_range(first: u32, last: u32) {
    let last = (last as usize).min(FD_LIMIT - 1);
    let first = first as usize;
    if first > last {
        return;
    }
    for fd in first..=last.min(CHUNK - 1) {
        remove(fd as i32);
    }
    if last < CHUNK || !ANY_HIGH.load(Ordering::Acquire) {
        return;
    }
    let Some(table) = table() else {
        return;
    };
    let chunks = (first.max(CHUNK) >> CHUNK_BITS)..=(last >> CHUNK_BITS);
    for (chunk, entry) in table
        .high
        .iter()
        .enumerate()
        .take(*chunks.end() + 1)
        .skip(*chunks.start())
    {
        if entry.load(Ordering::Acquire).is_null() {
            continue;
        }
        let start = (chunk << CHUNK_BITS).max(first);
        let end = ((chunk << CHUNK_BITS) + CHUNK - 1).min(last);
        for fd in start..=end {
            remove(fd as i32);
        }
    }
}

/// Every slot made so far, with its fd number: `low` up to its last slot made, then the
/// chunks of `high` (looked for only once one exists).
fn slots() -> impl Iterator<Item = (i32, &'static Slot)> {
    let table = table();
    let any_high = ANY_HIGH.load(Ordering::Acquire);
    let high = table.filter(|_| any_high).into_iter().flat_map(|table| {
        table.high.iter().enumerate().filter_map(|(n, chunk)| {
            // SAFETY: as in `cell`.
            let chunk = unsafe { chunk.load(Ordering::Acquire).as_ref() }?;
            Some((n << CHUNK_BITS, &chunk[..]))
        })
    });
    let low_end = LOW_SLOTS_END.load(Ordering::Acquire);
    table
        .map(|table| (0, &table.low[..low_end]))
        .into_iter()
        .chain(high)
        .flat_map(|(base, chunk)| {
            chunk.iter().enumerate().filter_map(move |(i, cell)| {
                // SAFETY: as in `slot`.
                let slot = unsafe { cell.load(Ordering::Acquire).as_ref() }?;
                Some(((base + i) as i32, slot))
            })
        })
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
    let Some(table) = table() else {
        return false;
    };
    match table.low.get(fd as u32 as usize) {
        Some(cell) => !cell.load(Ordering::Relaxed).is_null(),
        None => ANY_HIGH.load(Ordering::Relaxed),
    }
}

#[cfg(test)]
#[path = "fdtable_tests.rs"]
mod tests;
