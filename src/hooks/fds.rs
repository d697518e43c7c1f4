//! Keeping the fd table true: closing and duplicating descriptors, also through stdio
//! (`fclose` and `freopen` close the stream's fd inside glibc, past our `close`).

use crate::conn::{self, fdtable, Conn};
use crate::guard::{shielded, Reentry};
use crate::sys;
use libc::{c_char, c_int, c_long, c_uint, c_ulong, FILE};
use std::sync::Arc;

/// # Safety
/// As close(2).
#[no_mangle]
pub unsafe extern "C-unwind" fn close(fd: c_int) -> c_int {
    fdtable::release(fd);
    // SAFETY: the program's own call.
    unsafe { sys::close(fd) }
}

/// # Safety
/// As close_range(2).
#[no_mangle]
pub unsafe extern "C-unwind" fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    if flags & libc::CLOSE_RANGE_CLOEXEC as c_int == 0 {
        fdtable::release_range(first, last);
    }
    // SAFETY: the program's own call.
    unsafe { sys::close_range(first, last, flags) }
}

/// # Safety
/// As closefrom(3) (glibc 2.34): glibc closes with its internal close_range, past ours.
#[no_mangle]
pub unsafe extern "C-unwind" fn closefrom(first: c_int) {
    if first >= 0 {
        fdtable::release_range(first as c_uint, c_uint::MAX);
    }
    // SAFETY: the program's own call.
    unsafe { sys::closefrom(first) }
}

/// # Safety
/// As dup(2).
#[no_mangle]
pub unsafe extern "C-unwind" fn dup(fd: c_int) -> c_int {
    // SAFETY: the program's own call.
    let new_fd = unsafe { sys::dup(fd) };
    if new_fd >= 0 {
        copy(fd, new_fd);
    }
    new_fd
}

/// # Safety
/// As dup2(2).
#[no_mangle]
pub unsafe extern "C-unwind" fn dup2(fd: c_int, new_fd: c_int) -> c_int {
    if fd == new_fd {
        // SAFETY: the program's own call.
        return unsafe { sys::dup2(fd, new_fd) };
    }
    let replaced = fdtable::release_for_dup(new_fd);
    // SAFETY: the program's own call.
    let result = unsafe { sys::dup2(fd, new_fd) };
    after_dup(fd, new_fd, result, replaced)
}

/// # Safety
/// As dup3(2).
#[no_mangle]
pub unsafe extern "C-unwind" fn dup3(fd: c_int, new_fd: c_int, flags: c_int) -> c_int {
    // dup3 onto the same number fails (EINVAL) and closes nothing.
    let replaced = (fd != new_fd)
        .then(|| fdtable::release_for_dup(new_fd))
        .flatten();
    // SAFETY: the program's own call.
    let result = unsafe { sys::dup3(fd, new_fd, flags) };
    after_dup(fd, new_fd, result, replaced)
}

/// After `dup2`/`dup3` onto `new_fd`, which released the connection it named
/// (`replaced`): on success `new_fd` names `fd`'s socket; on failure it was left as it was.
fn after_dup(fd: c_int, new_fd: c_int, result: c_int, replaced: Option<Arc<Conn>>) -> c_int {
    if result >= 0 {
        drop(replaced);
        copy(fd, new_fd);
    } else if let Some(conn) = replaced {
        let saved = sys::errno();
        fdtable::put_back(new_fd, conn);
        sys::set_errno(saved);
    }
    result
}

/// `new_fd` now names the socket of `fd`.
#[inline]
fn copy(fd: c_int, new_fd: c_int) {
    if !fdtable::copy(fd, new_fd) {
        untrackable(fd, new_fd);
    }
}

/// A tracked socket got a number the table could not take (no memory for its chunk).
#[cold]
#[inline(never)]
fn untrackable(fd: c_int, new_fd: c_int) {
    let Some(conn) = fdtable::get(fd) else {
        return;
    };
    let Some(_inside) = Reentry::enter() else {
        return;
    };
    let saved = sys::errno();
    shielded(|| conn::untrackable(&conn, fd, new_fd), || ());
    sys::set_errno(saved);
}

/// `fcntl` is variadic in C; on the 64-bit ABIs we support a variadic argument travels in
/// the same register as a fixed one, so the third argument is taken as a pointer-sized
/// integer and passed on untouched.
///
/// # Safety
/// As fcntl(2).
#[no_mangle]
pub unsafe extern "C-unwind" fn fcntl(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    // SAFETY: the program's own call.
    let result = unsafe { sys::fcntl(fd, cmd, arg) };
    after_fcntl(fd, cmd, result);
    result
}

/// # Safety
/// As fcntl(2) (glibc's large-file name for it).
#[no_mangle]
pub unsafe extern "C-unwind" fn fcntl64(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    // SAFETY: the program's own call.
    let result = unsafe { sys::fcntl64(fd, cmd, arg) };
    after_fcntl(fd, cmd, result);
    result
}

fn after_fcntl(fd: c_int, cmd: c_int, result: c_int) {
    if (cmd == libc::F_DUPFD || cmd == libc::F_DUPFD_CLOEXEC) && result >= 0 {
        copy(fd, result);
    }
}

/// `syscall` is variadic; its arguments travel in registers as fixed ones would (see
/// `fcntl`), so all six are taken and passed on. Closes matter to us (libuv closes with
/// `syscall(SYS_close, fd)`, which never reaches the `close` symbol), and a successful
/// `io_uring_setup`: I/O submitted to that ring bypasses every hook (`conn::io_uring_seen`).
///
/// # Safety
/// As syscall(2).
#[no_mangle]
pub unsafe extern "C-unwind" fn syscall(
    number: c_long,
    a1: c_long,
    a2: c_long,
    a3: c_long,
    a4: c_long,
    a5: c_long,
    a6: c_long,
) -> c_long {
    match number {
        libc::SYS_close => fdtable::release(a1 as c_int),
        libc::SYS_close_range if a3 & libc::CLOSE_RANGE_CLOEXEC as c_long == 0 => {
            fdtable::release_range(a1 as c_uint, a2 as c_uint)
        }
        libc::SYS_dup3 if a1 != a2 => fdtable::release(a2 as c_int),
        #[cfg(target_arch = "x86_64")]
        libc::SYS_dup2 if a1 != a2 => fdtable::release(a2 as c_int),
        _ => {}
    }
    // SAFETY: the program's own call, every argument as given.
    let result = unsafe { sys::syscall(number, a1, a2, a3, a4, a5, a6) };
    if result >= 0 {
        after_syscall(number, [a1, a2, a3], result);
    }
    result
}

/// A successful `syscall` that set up a ring, or gave out an fd number as the calls of the
/// same names do (`socket`, `accept`, the dups).
fn after_syscall(number: c_long, [a1, a2, a3]: [c_long; 3], result: c_long) {
    let fd = result as c_int;
    match number {
        libc::SYS_io_uring_setup => super::bypass::io_uring_set_up("syscall(SYS_io_uring_setup)"),
        libc::SYS_socket => {
            let tcp = sys::socket::is_tcp_stream(a1 as c_int, a2 as c_int, a3 as c_int);
            fdtable::made_socket(fd, tcp);
        }
        libc::SYS_accept | libc::SYS_accept4 | libc::SYS_dup | libc::SYS_dup3 => {
            fdtable::handed_out(fd)
        }
        #[cfg(target_arch = "x86_64")]
        libc::SYS_dup2 => fdtable::handed_out(fd),
        libc::SYS_fcntl if matches!(a2 as c_int, libc::F_DUPFD | libc::F_DUPFD_CLOEXEC) => {
            fdtable::handed_out(fd)
        }
        _ => {}
    }
}

/// # Safety
/// As socketpair(2).
#[no_mangle]
pub unsafe extern "C-unwind" fn socketpair(
    domain: c_int,
    kind: c_int,
    protocol: c_int,
    fds: *mut c_int,
) -> c_int {
    // SAFETY: the program's own call.
    let rc = unsafe { sys::socketpair(domain, kind, protocol, fds) };
    if rc == 0 {
        // SAFETY: on success the kernel filled both slots.
        let pair = unsafe { [*fds, *fds.add(1)] };
        pair.into_iter().for_each(fdtable::handed_out);
    }
    rc
}

/// # Safety
/// As fclose(3). The stream's fd is forgotten before glibc closes it (internally, past
/// our `close`): the number can be reused at once.
#[no_mangle]
pub unsafe extern "C-unwind" fn fclose(stream: *mut FILE) -> c_int {
    if fdtable::any_tracked() && !stream.is_null() {
        // SAFETY: the program's own stream, still open.
        unsafe { forget_stream(stream) };
    }
    // SAFETY: the program's own call.
    unsafe { sys::fclose(stream) }
}

/// # Safety
/// As freopen(3): the stream's fd is closed (or replaced) inside glibc.
#[no_mangle]
pub unsafe extern "C-unwind" fn freopen(
    path: *const c_char,
    mode: *const c_char,
    stream: *mut FILE,
) -> *mut FILE {
    // SAFETY: the program's own stream.
    unsafe { before_reopen(stream) };
    // SAFETY: the program's own call.
    unsafe { sys::freopen(path, mode, stream) }
}

/// # Safety
/// As freopen64(3).
#[no_mangle]
pub unsafe extern "C-unwind" fn freopen64(
    path: *const c_char,
    mode: *const c_char,
    stream: *mut FILE,
) -> *mut FILE {
    // SAFETY: the program's own stream.
    unsafe { before_reopen(stream) };
    // SAFETY: the program's own call.
    unsafe { sys::freopen64(path, mode, stream) }
}

/// freopen closes the stream's fd inside glibc: forget it first.
///
/// # Safety
/// `stream` is null or an open stream.
unsafe fn before_reopen(stream: *mut FILE) {
    if fdtable::any_tracked() && !stream.is_null() {
        // SAFETY: the program's own stream, still open.
        unsafe { forget_stream(stream) };
    }
}

/// Forgets the fd under `stream` (none for memory streams: `fileno` then says EBADF,
/// which the program must not see).
///
/// # Safety
/// `stream` is an open stream.
#[cold]
#[inline(never)]
unsafe fn forget_stream(stream: *mut FILE) {
    let saved = sys::errno();
    // SAFETY: the caller's contract.
    let fd = unsafe { libc::fileno(stream) };
    sys::set_errno(saved);
    fdtable::release(fd);
}
