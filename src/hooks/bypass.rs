//! Calls after which a program's socket I/O no longer meets our hooks: `fdopen` (stdio
//! reads and writes with glibc-internal calls) and setting up io_uring (I/O submitted to
//! the kernel directly), here through liburing's set-up functions; `syscall` in `fds`
//! sees the raw `io_uring_setup`. What follows is decided in `conn::bypass`.

use super::tracked;
use crate::conn::{self, fdtable};
use crate::guard::{shielded, Reentry};
use crate::sys;
use libc::{c_char, c_int, c_uint, c_void, FILE};
use std::sync::atomic::{AtomicUsize, Ordering};

/// # Safety
/// As fdopen(3). A tracked socket handed to stdio leaves the proxy first (or at its next
/// request, if one is unanswered): stdio's writes would reach it without Lunar's headers.
#[no_mangle]
pub unsafe extern "C-unwind" fn fdopen(fd: c_int, mode: *const c_char) -> *mut FILE {
    if fdtable::maybe_tracked(fd) {
        handed_to_stdio(fd);
    }
    // SAFETY: the program's own call.
    unsafe { sys::fdopen(fd, mode) }
}

#[cold]
#[inline(never)]
fn handed_to_stdio(fd: c_int) {
    let Some(conn) = tracked(fd) else {
        return;
    };
    let Some(_inside) = Reentry::enter() else {
        return;
    };
    let saved = sys::errno();
    shielded(|| conn::handed_to_stdio(&conn, fd), || ());
    sys::set_errno(saved);
}

/// The process has a working io_uring instance; `how` names the call, for the warning.
#[cold]
#[inline(never)]
pub(super) fn io_uring_set_up(how: &str) {
    if conn::io_uring_in_use() {
        return;
    }
    let Some(_inside) = Reentry::enter() else {
        return;
    };
    let saved = sys::errno();
    shielded(|| conn::io_uring_seen(how), || ());
    sys::set_errno(saved);
}

/// liburing's function `name` after ours, or 0 when no library after us has it (a
/// program cannot have called it then; we answer -ENOSYS as liburing answers errors).
fn liburing(slot: &AtomicUsize, name: &'static [u8]) -> usize {
    match slot.load(Ordering::Relaxed) {
        0 => {
            // SAFETY: `name` is a NUL-terminated literal; RTLD_NEXT is valid in a shared
            // object.
            let found = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr().cast()) } as usize;
            slot.store(found, Ordering::Relaxed);
            found
        }
        found => found,
    }
}

/// # Safety
/// As liburing's io_uring_queue_init(3).
#[no_mangle]
pub unsafe extern "C-unwind" fn io_uring_queue_init(
    entries: c_uint,
    ring: *mut c_void,
    flags: c_uint,
) -> c_int {
    static REAL: AtomicUsize = AtomicUsize::new(0);
    let address = liburing(&REAL, b"io_uring_queue_init\0");
    if address == 0 {
        return -libc::ENOSYS;
    }
    // SAFETY: liburing's function of this exact C signature.
    let real: unsafe extern "C" fn(c_uint, *mut c_void, c_uint) -> c_int =
        unsafe { std::mem::transmute(address) };
    // SAFETY: the program's own call.
    let result = unsafe { real(entries, ring, flags) };
    if result >= 0 {
        io_uring_set_up("liburing's io_uring_queue_init");
    }
    result
}

/// # Safety
/// As liburing's io_uring_queue_init_params(3).
#[no_mangle]
pub unsafe extern "C-unwind" fn io_uring_queue_init_params(
    entries: c_uint,
    ring: *mut c_void,
    params: *mut c_void,
) -> c_int {
    static REAL: AtomicUsize = AtomicUsize::new(0);
    let address = liburing(&REAL, b"io_uring_queue_init_params\0");
    if address == 0 {
        return -libc::ENOSYS;
    }
    // SAFETY: liburing's function of this exact C signature.
    let real: unsafe extern "C" fn(c_uint, *mut c_void, *mut c_void) -> c_int =
        unsafe { std::mem::transmute(address) };
    // SAFETY: the program's own call.
    let result = unsafe { real(entries, ring, params) };
    if result >= 0 {
        io_uring_set_up("liburing's io_uring_queue_init_params");
    }
    result
}

/// # Safety
/// As liburing's io_uring_setup(2) wrapper (liburing 2.3 and later).
#[no_mangle]
pub unsafe extern "C-unwind" fn io_uring_setup(entries: c_uint, params: *mut c_void) -> c_int {
    static REAL: AtomicUsize = AtomicUsize::new(0);
    let address = liburing(&REAL, b"io_uring_setup\0");
    if address == 0 {
        return -libc::ENOSYS;
    }
    // SAFETY: liburing's function of this exact C signature.
    let real: unsafe extern "C" fn(c_uint, *mut c_void) -> c_int =
        unsafe { std::mem::transmute(address) };
    // SAFETY: the program's own call.
    let result = unsafe { real(entries, params) };
    if result >= 0 {
        io_uring_set_up("liburing's io_uring_setup");
    }
    result
}
