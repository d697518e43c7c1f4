//! Every way a program reads from a socket, the fortified (`_FORTIFY_SOURCE`) entry points
//! included: glibc does not route those through the plain symbols.

use super::{on_tracked, tracked};
use crate::conn::{self, fdtable, AppBuffer};
use crate::sys;
use libc::{c_int, c_ulong, c_void, iovec, msghdr, size_t, sockaddr, socklen_t, ssize_t};

/// # Safety
/// As read(2).
#[no_mangle]
pub unsafe extern "C-unwind" fn read(fd: c_int, buf: *mut c_void, len: size_t) -> ssize_t {
    if fdtable::maybe_tracked(fd) {
        // SAFETY: the caller's contract, forwarded.
        return unsafe { read_tracked(fd, buf, len) };
    }
    // SAFETY: the program's own call.
    unsafe { sys::read(fd, buf, len) }
}

/// Kept out of line so the untracked path above stays a load and a jump.
///
/// # Safety
/// As `read`.
#[cold]
#[inline(never)]
unsafe fn read_tracked(fd: c_int, buf: *mut c_void, len: size_t) -> ssize_t {
    receive_on(fd, 0, flat(buf, len), || {
        // SAFETY: the program's own call (repeatable: it is retried only after a failure).
        unsafe { sys::read(fd, buf, len) }
    })
}

/// # Safety
/// As glibc's __read_chk.
#[no_mangle]
pub unsafe extern "C-unwind" fn __read_chk(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    buflen: size_t,
) -> ssize_t {
    if fdtable::maybe_tracked(fd) {
        // SAFETY: the caller's contract, forwarded.
        return unsafe { __read_chk_tracked(fd, buf, len, buflen) };
    }
    // SAFETY: the program's own call.
    unsafe { sys::__read_chk(fd, buf, len, buflen) }
}

/// Kept out of line so the untracked path above stays a load and a jump.
///
/// # Safety
/// As `__read_chk`.
#[cold]
#[inline(never)]
unsafe fn __read_chk_tracked(fd: c_int, buf: *mut c_void, len: size_t, buflen: size_t) -> ssize_t {
    receive_on(fd, 0, flat(buf, len), || {
        // SAFETY: the program's own call.
        unsafe { sys::__read_chk(fd, buf, len, buflen) }
    })
}

/// # Safety
/// As recv(2).
#[no_mangle]
pub unsafe extern "C-unwind" fn recv(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    flags: c_int,
) -> ssize_t {
    if fdtable::maybe_tracked(fd) {
        // SAFETY: the caller's contract, forwarded.
        return unsafe { recv_tracked(fd, buf, len, flags) };
    }
    // SAFETY: the program's own call.
    unsafe { sys::recv(fd, buf, len, flags) }
}

/// Kept out of line so the untracked path above stays a load and a jump.
///
/// # Safety
/// As `recv`.
#[cold]
#[inline(never)]
unsafe fn recv_tracked(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int) -> ssize_t {
    receive_on(fd, flags, flat(buf, len), || {
        // SAFETY: the program's own call.
        unsafe { sys::recv(fd, buf, len, flags) }
    })
}

/// # Safety
/// As glibc's __recv_chk.
#[no_mangle]
pub unsafe extern "C-unwind" fn __recv_chk(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    buflen: size_t,
    flags: c_int,
) -> ssize_t {
    if fdtable::maybe_tracked(fd) {
        // SAFETY: the caller's contract, forwarded.
        return unsafe { __recv_chk_tracked(fd, buf, len, buflen, flags) };
    }
    // SAFETY: the program's own call.
    unsafe { sys::__recv_chk(fd, buf, len, buflen, flags) }
}

/// Kept out of line so the untracked path above stays a load and a jump.
///
/// # Safety
/// As `__recv_chk`.
#[cold]
#[inline(never)]
unsafe fn __recv_chk_tracked(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    buflen: size_t,
    flags: c_int,
) -> ssize_t {
    receive_on(fd, flags, flat(buf, len), || {
        // SAFETY: the program's own call.
        unsafe { sys::__recv_chk(fd, buf, len, buflen, flags) }
    })
}

/// # Safety
/// As recvfrom(2).
#[no_mangle]
pub unsafe extern "C-unwind" fn recvfrom(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    alen: *mut socklen_t,
) -> ssize_t {
    if fdtable::maybe_tracked(fd) {
        // SAFETY: the caller's contract, forwarded.
        return unsafe { recvfrom_tracked(fd, buf, len, flags, addr, alen) };
    }
    // SAFETY: the program's own call.
    unsafe { sys::recvfrom(fd, buf, len, flags, addr, alen) }
}

/// Kept out of line so the untracked path above stays a load and a jump.
///
/// # Safety
/// As `recvfrom`.
#[cold]
#[inline(never)]
unsafe fn recvfrom_tracked(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    alen: *mut socklen_t,
) -> ssize_t {
    receive_on(fd, flags, flat(buf, len), || {
        // SAFETY: the program's own call.
        unsafe { sys::recvfrom(fd, buf, len, flags, addr, alen) }
    })
}

/// # Safety
/// As glibc's __recvfrom_chk.
#[no_mangle]
pub unsafe extern "C-unwind" fn __recvfrom_chk(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    buflen: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    alen: *mut socklen_t,
) -> ssize_t {
    if fdtable::maybe_tracked(fd) {
        // SAFETY: the caller's contract, forwarded.
        return unsafe { __recvfrom_chk_tracked(fd, buf, len, buflen, flags, addr, alen) };
    }
    // SAFETY: the program's own call.
    unsafe { sys::__recvfrom_chk(fd, buf, len, buflen, flags, addr, alen) }
}

/// Kept out of line so the untracked path above stays a load and a jump.
///
/// # Safety
/// As `__recvfrom_chk`.
#[cold]
#[inline(never)]
unsafe fn __recvfrom_chk_tracked(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    buflen: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    alen: *mut socklen_t,
) -> ssize_t {
    receive_on(fd, flags, flat(buf, len), || {
        // SAFETY: the program's own call.
        unsafe { sys::__recvfrom_chk(fd, buf, len, buflen, flags, addr, alen) }
    })
}

/// # Safety
/// As readv(2).
#[no_mangle]
pub unsafe extern "C-unwind" fn readv(fd: c_int, iov: *const iovec, count: c_int) -> ssize_t {
    if fdtable::maybe_tracked(fd) {
        // SAFETY: the caller's contract, forwarded.
        return unsafe { readv_tracked(fd, iov, count) };
    }
    // SAFETY: the program's own call.
    unsafe { sys::readv(fd, iov, count) }
}

/// Kept out of line so the untracked path above stays a load and a jump.
///
/// # Safety
/// As `readv`.
#[cold]
#[inline(never)]
unsafe fn readv_tracked(fd: c_int, iov: *const iovec, count: c_int) -> ssize_t {
    receive_on(fd, 0, scattered(iov, count), || {
        // SAFETY: the program's own call.
        unsafe { sys::readv(fd, iov, count) }
    })
}

/// # Safety
/// As recvmsg(2).
#[no_mangle]
pub unsafe extern "C-unwind" fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t {
    if fdtable::maybe_tracked(fd) {
        // SAFETY: the caller's contract, forwarded.
        return unsafe { recvmsg_tracked(fd, msg, flags) };
    }
    // SAFETY: the program's own call.
    unsafe { sys::recvmsg(fd, msg, flags) }
}

/// Kept out of line so the untracked path above stays a load and a jump.
///
/// # Safety
/// As `recvmsg`.
#[cold]
#[inline(never)]
unsafe fn recvmsg_tracked(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t {
    receive_on(fd, flags, message(msg), || {
        // SAFETY: the program's own call.
        unsafe { sys::recvmsg(fd, msg, flags) }
    })
}

/// A read on a tracked fd: through `conn::receive` (told whether a TLS handshake of this
/// thread holds the fd's reads), or `real` when the fd is no longer ours.
pub(super) fn receive_on(
    fd: c_int,
    flags: c_int,
    buffer: AppBuffer,
    real: impl Fn() -> isize + Copy,
) -> isize {
    match tracked(fd) {
        Some(_) if crate::tls::passes_through(fd) => real(),
        Some(conn) => on_tracked(
            || {
                let handshake_holds = crate::tls::holds_reads(fd);
                conn::receive(&conn, fd, flags, buffer, handshake_holds, real)
            },
            real,
        ),
        None => real(),
    }
}

pub(super) fn flat(data: *mut c_void, len: size_t) -> AppBuffer {
    AppBuffer::Flat {
        data: data.cast(),
        len,
    }
}

fn scattered(parts: *const iovec, count: c_int) -> AppBuffer {
    AppBuffer::Scattered {
        parts,
        count: count.max(0) as usize,
    }
}

// msg_iovlen is size_t in glibc and int elsewhere.
#[allow(clippy::unnecessary_cast)]
fn message(msg: *mut msghdr) -> AppBuffer {
    // SAFETY: recvmsg(2)'s contract: `msg` is readable when non-null.
    match unsafe { msg.as_ref() } {
        Some(header) => AppBuffer::Scattered {
            parts: header.msg_iov,
            count: header.msg_iovlen as usize,
        },
        None => AppBuffer::Scattered {
            parts: std::ptr::null(),
            count: 0,
        },
    }
}

/// # Safety
/// As ioctl(2). glibc declares the third argument `...`; every request this library
/// answers takes a pointer, and any other is passed on as it came.
#[no_mangle]
pub unsafe extern "C-unwind" fn ioctl(fd: c_int, request: c_ulong, arg: *mut c_void) -> c_int {
    if fdtable::maybe_tracked(fd) {
        // SAFETY: the caller's contract, forwarded.
        return unsafe { ioctl_tracked(fd, request, arg) };
    }
    // SAFETY: the program's own call.
    unsafe { sys::ioctl(fd, request, arg) }
}

/// FIONREAD on a socket whose bytes pass through our TLS session with the proxy counts
/// what a read can take (`Conn::bytes_to_read`), not the ciphertext in the socket.
///
/// # Safety
/// As `ioctl`.
#[cold]
#[inline(never)]
unsafe fn ioctl_tracked(fd: c_int, request: c_ulong, arg: *mut c_void) -> c_int {
    // SAFETY: the program's own call.
    let result = unsafe { sys::ioctl(fd, request, arg) };
    if result != 0 || request != libc::FIONREAD || arg.is_null() {
        return result;
    }
    let Some(conn) = tracked(fd) else {
        return result;
    };
    // SAFETY: FIONREAD's argument is the int the kernel just wrote.
    let count = unsafe { &mut *arg.cast::<c_int>() };
    let in_socket = (*count).max(0) as usize;
    let answer = on_tracked(
        || {
            conn.bytes_to_read(in_socket)
                .map_or(-1, |n| n.min(c_int::MAX as usize) as isize)
        },
        || -1,
    );
    if answer >= 0 {
        *count = answer as c_int;
    }
    result
}
