//! Which file descriptors are connections we track.
//!
//! Almost every fd a program uses is not ours, so the question "is this fd tracked?" must
//! cost one atomic load: a static array of pointers indexed by fd, null for every fd never
//! tracked. A slot, once allocated for an fd number, lives for the life of the process (fd
//! numbers are few and reused), so a pointer read from the table never dangles; the
//! connection it holds is reference-counted, since `dup` makes two fds share one.

use crate::conn::Conn;
use crate::sync::SpinLock;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::Arc;

/// Fds at or above this are never tracked (their connections go direct, untouched). Covers
/// the default soft limit (1024) and most raised ones; the table is zero pages until used.
pub const MAX_TRACKED_FD: usize = 1 << 16;

struct Slot {
    tracked: AtomicBool,
    conn: SpinLock<Option<Arc<Conn>>>,
}

static SLOTS: [AtomicPtr<Slot>; MAX_TRACKED_FD] =
    [const { AtomicPtr::new(null_mut()) }; MAX_TRACKED_FD];

/// How many fds are tracked now: calls that take many fds at once (poll, select) look
/// at them only when this is not zero.
static TRACKED_COUNT: AtomicUsize = AtomicUsize::new(0);

pub fn any_tracked() -> bool {
    TRACKED_COUNT.load(Ordering::Acquire) != 0
}

fn slot(fd: i32) -> Option<&'static Slot> {
    let pointer = SLOTS
        .get(usize::try_from(fd).ok()?)?
        .load(Ordering::Acquire);
    // SAFETY: non-null slots are leaked boxes that are never freed.
    unsafe { pointer.as_ref() }
}

fn slot_or_new(fd: i32) -> Option<&'static Slot> {
    let cell = SLOTS.get(usize::try_from(fd).ok()?)?;
    if let Some(existing) = slot(fd) {
        return Some(existing);
    }
    let fresh = Box::into_raw(Box::new(Slot {
        tracked: AtomicBool::new(false),
        conn: SpinLock::new(None),
    }));
    match cell.compare_exchange(null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => Some(slot(fd).expect("just stored")),
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
    let slot = slot(fd)?;
    if !slot.tracked.load(Ordering::Acquire) {
        return None;
    }
    slot.conn.lock().clone()
}

/// Starts tracking `fd` (false when the fd number is beyond the table).
pub fn insert(fd: i32, conn: Arc<Conn>) -> bool {
    let Some(slot) = slot_or_new(fd) else {
        return false;
    };
    let previous = slot.conn.lock().replace(conn);
    if !slot.tracked.swap(true, Ordering::AcqRel) {
        TRACKED_COUNT.fetch_add(1, Ordering::AcqRel);
    }
    drop(previous);
    true
}

/// Stops tracking `fd`. Called BEFORE the real close: once closed, the number can be
/// handed to another thread's new socket at once.
#[inline(always)]
pub fn remove(fd: i32) {
    if maybe_tracked(fd) {
        forget(fd);
    }
}

#[cold]
#[inline(never)]
fn forget(fd: i32) {
    if let Some(slot) = slot(fd) {
        if slot.tracked.swap(false, Ordering::AcqRel) {
            TRACKED_COUNT.fetch_sub(1, Ordering::AcqRel);
            let previous = slot.conn.lock().take();
            drop(previous);
            crate::watchers::forget_fd(fd);
        }
    }
}

/// After `dup`-like calls: `to` now names the same socket as `from`.
pub fn copy(from: i32, to: i32) {
    match get(from) {
        Some(conn) => {
            insert(to, conn);
        }
        None => remove(to),
    }
}

/// Forgets every fd in `first..=last`.
pub fn remove_range(first: u32, last: u32) {
    let end = (last as usize).min(MAX_TRACKED_FD - 1);
    for fd in first as usize..=end {
        remove(fd as i32);
    }
}

pub fn after_fork_in_child() {
    for cell in SLOTS.iter() {
        // SAFETY: as in `slot`.
        if let Some(slot) = unsafe { cell.load(Ordering::Acquire).as_ref() } {
            slot.conn.force_unlock();
            if let Some(conn) = slot.conn.lock().as_ref() {
                conn.after_fork_in_child();
            }
        }
    }
}

/// Whether `fd` may be tracked: false for every fd never tracked. One atomic load; the
/// hooks' untracked path is this and the real call.
#[inline(always)]
pub fn maybe_tracked(fd: i32) -> bool {
    match SLOTS.get(fd as u32 as usize) {
        Some(cell) => !cell.load(Ordering::Relaxed).is_null(),
        None => false,
    }
}
