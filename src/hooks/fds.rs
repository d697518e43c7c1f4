//! Keeping the fd table true: closing and duplicating descriptors.

use crate::{fdtable, sys};
use libc::{c_int, c_uint, c_ulong};

/// # Safety
/// As close(2).
#[no_mangle]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    fdtable::remove(fd);
    // SAFETY: the program's own call.
    unsafe { sys::close(fd) }
}

/// # Safety
/// As close_range(2).
#[no_mangle]
pub unsafe extern "C" fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    if flags & libc::CLOSE_RANGE_CLOEXEC as c_int == 0 {
        fdtable::remove_range(first, last);
    }
    // SAFETY: the program's own call.
    unsafe { sys::close_range(first, last, flags) }
}

/// # Safety
/// As dup(2).
#[no_mangle]
pub unsafe extern "C" fn dup(fd: c_int) -> c_int {
    // SAFETY: the program's own call.
    let new_fd = unsafe { sys::dup(fd) };
    if new_fd >= 0 {
        fdtable::copy(fd, new_fd);
    }
    new_fd
}

/// # Safety
/// As dup2(2).
#[no_mangle]
pub unsafe extern "C" fn dup2(fd: c_int, new_fd: c_int) -> c_int {
    // SAFETY: the program's own call.
    let result = unsafe { sys::dup2(fd, new_fd) };
    if result >= 0 && fd != new_fd {
        fdtable::copy(fd, new_fd);
    }
    result
}

/// # Safety
/// As dup3(2).
#[no_mangle]
pub unsafe extern "C" fn dup3(fd: c_int, new_fd: c_int, flags: c_int) -> c_int {
    // SAFETY: the program's own call.
    let result = unsafe { sys::dup3(fd, new_fd, flags) };
    if result >= 0 {
        fdtable::copy(fd, new_fd);
    }
    result
}

/// `fcntl` is variadic in C; on the 64-bit ABIs we support a variadic argument travels in
/// the same register as a fixed one, so the third argument is taken as a pointer-sized
/// integer and passed on untouched.
///
/// # Safety
/// As fcntl(2).
#[no_mangle]
pub unsafe extern "C" fn fcntl(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    // SAFETY: the program's own call.
    let result = unsafe { sys::fcntl(fd, cmd, arg) };
    after_fcntl(fd, cmd, result);
    result
}

/// # Safety
/// As fcntl(2) (glibc's large-file name for it).
#[no_mangle]
pub unsafe extern "C" fn fcntl64(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    // SAFETY: the program's own call.
    let result = unsafe { sys::fcntl64(fd, cmd, arg) };
    after_fcntl(fd, cmd, result);
    result
}

fn after_fcntl(fd: c_int, cmd: c_int, result: c_int) {
    if (cmd == libc::F_DUPFD || cmd == libc::F_DUPFD_CLOEXEC) && result >= 0 {
        fdtable::copy(fd, result);
    }
}
