//! Where each fd number's slot is (`fdtable`'s storage).
//!
//! Every fd number a process can have is covered. The first 65536 are in one array (the
//! one-load fast path); the numbers above (a raised RLIMIT_NOFILE, a `dup2` to a high
//! number) are in chunks of the same size, mapped on demand and found through a second
//! array, so a program that never tracks a high fd pays nothing for them (one load tells).
//! Linux keeps fd numbers below 2^31 (`fs.nr_open` is at most `INT_MAX`), which bounds the
//! second array. Both arrays are one anonymous mapping made when the first fd is tracked:
//! as statics they were 768 KiB of `.bss`, which the dynamic linker maps at every process
//! start (one `mmap` more, ~4 µs of every start on our VM), in processes that never track
//! an fd. A slot, once made for an fd number, lives for the life of the process.

use super::super::watchers::Registrations;
use super::super::Conn;
use crate::sync::SpinLock;
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
pub(super) const FD_LIMIT: usize = 1 << 31;
const CHUNKS: usize = FD_LIMIT / CHUNK;

/// One fd number's entry. Lock rules: `conn` and `watches` guard data only (a clone, a
/// swap, a few comparisons, `peek`'s load of an atomic), are never held together, and
/// never across a system call.
pub(super) struct Slot {
    pub(super) tracked: AtomicBool,
    pub(super) conn: SpinLock<Option<Arc<Conn>>>,
    /// The epoll instances watching the tracked socket (`watchers`): cleared when the fd
    /// is forgotten.
    pub(super) watches: SpinLock<Registrations>,
    /// `socket()` made this number a TCP stream, and no call seen since gave the number
    /// out again (`made_socket`, `handed_out`): its connect needs no `getsockopt` to know.
    pub(super) born_tcp: AtomicBool,
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

/// Whether any slot may exist: false until the first fd is tracked (one load).
#[inline]
pub(super) fn any_made() -> bool {
    table().is_some()
}

/// Whether `fd` may have a slot: false for every number never given one. Above 65536 it
/// answers for the whole range (true once any high chunk exists), so that the inline
/// path calls nothing and saves no register.
#[inline(always)]
pub(super) fn may_have_slot(fd: i32) -> bool {
    let Some(table) = table() else {
        return false;
    };
    match table.low.get(fd as u32 as usize) {
        Some(cell) => !cell.load(Ordering::Relaxed).is_null(),
        None => ANY_HIGH.load(Ordering::Relaxed),
    }
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

pub(super) fn slot(fd: i32) -> Option<&'static Slot> {
    let pointer = cell(fd)?.load(Ordering::Acquire);
    // SAFETY: non-null slots are leaked boxes that are never freed.
    unsafe { pointer.as_ref() }
}

pub(super) fn slot_or_new(fd: i32) -> Option<&'static Slot> {
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

/// Every slot made so far, with its fd number: `low` up to its last slot made, then the
/// chunks of `high` (looked for only once one exists).
pub(super) fn slots() -> impl Iterator<Item = (i32, &'static Slot)> {
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

/// The fd numbers in `first..=last` that have a cell: all of `low`'s, then those of the
/// high chunks that exist.
pub(super) fn numbers_with_cells(first: u32, last: u32) -> impl Iterator<Item = i32> {
    let last = (last as usize).min(FD_LIMIT - 1);
    let first = first as usize;
    let low = first..=last.min(CHUNK - 1);
    let table = table().filter(|_| last >= CHUNK && ANY_HIGH.load(Ordering::Acquire));
    let chunks = (first.max(CHUNK) >> CHUNK_BITS)..=(last >> CHUNK_BITS);
    let high = table.into_iter().flat_map(move |table| {
        table
            .high
            .iter()
            .enumerate()
            .take(*chunks.end() + 1)
            .skip(*chunks.start())
            .filter(|(_, entry)| !entry.load(Ordering::Acquire).is_null())
            .flat_map(move |(chunk, _)| {
                (chunk << CHUNK_BITS).max(first)..=((chunk << CHUNK_BITS) + CHUNK - 1).min(last)
            })
    });
    low.chain(high).map(|fd| fd as i32)
}
