//! Every way a program writes to a socket.

use super::{gather, on_tracked, tracked};
use crate::conn::{self, fdtable, Bypass, Conn, Outcome};
use crate::sys;
use libc::{c_int, c_void, iovec, msghdr, off_t, size_t, sockaddr, socklen_t, ssize_t};

/// # Safety
/// As write(2).
#[no_mangle]
pub unsafe extern "C-unwind" fn write(fd: c_int, buf: *const c_void, len: size_t) -> ssize_t {
    if fdtable::maybe_tracked(fd) {
        // SAFETY: the caller's contract, forwarded.
        return unsafe { write_tracked(fd, buf, len) };
    }
    // SAFETY: the program's own call.
    unsafe { sys::write(fd, buf, len) }
}

/// Kept out of line so the untracked path above stays a load and a jump.
///
/// # Safety
/// As `write`.
#[cold]
#[inline(never)]
unsafe fn write_tracked(fd: c_int, buf: *const c_void, len: size_t) -> ssize_t {
    // SAFETY: write(2)'s contract: `buf` holds `len` readable bytes.
    let bytes = unsafe { program_bytes(buf, len) };
    send_on(fd, bytes, 0, || {
        // SAFETY: the program's own call.
        unsafe { sys::write(fd, buf, len) }
    })
}

/// # Safety
/// As send(2).
#[no_mangle]
pub unsafe extern "C-unwind" fn send(
    fd: c_int,
    buf: *const c_void,
    len: size_t,
    flags: c_int,
) -> ssize_t {
    if fdtable::maybe_tracked(fd) {
        // SAFETY: the caller's contract, forwarded.
        return unsafe { send_tracked(fd, buf, len, flags) };
    }
    // SAFETY: the program's own call.
    unsafe { sys::send(fd, buf, len, flags) }
}

/// Kept out of line so the untracked path above stays a load and a jump.
///
/// # Safety
/// As `send`.
#[cold]
#[inline(never)]
unsafe fn send_tracked(fd: c_int, buf: *const c_void, len: size_t, flags: c_int) -> ssize_t {
    // SAFETY: send(2)'s contract.
    let bytes = unsafe { program_bytes(buf, len) };
    send_on(fd, bytes, flags, || {
        // SAFETY: the program's own call.
        unsafe { sys::send(fd, buf, len, flags) }
    })
}

/// # Safety
/// As sendto(2). On a connected TCP socket the address is ignored, as the kernel does.
#[no_mangle]
pub unsafe extern "C-unwind" fn sendto(
    fd: c_int,
    buf: *const c_void,
    len: size_t,
    flags: c_int,
    addr: *const sockaddr,
    alen: socklen_t,
) -> ssize_t {
    if fdtable::maybe_tracked(fd) {
        // SAFETY: the caller's contract, forwarded.
        return unsafe { sendto_tracked(fd, buf, len, flags, addr, alen) };
    }
    // SAFETY: the program's own call.
    unsafe { sys::sendto(fd, buf, len, flags, addr, alen) }
}

/// Kept out of line so the untracked path above stays a load and a jump.
///
/// # Safety
/// As `sendto`.
#[cold]
#[inline(never)]
unsafe fn sendto_tracked(
    fd: c_int,
    buf: *const c_void,
    len: size_t,
    flags: c_int,
    addr: *const sockaddr,
    alen: socklen_t,
) -> ssize_t {
    // SAFETY: sendto(2)'s contract.
    let bytes = unsafe { program_bytes(buf, len) };
    send_on(fd, bytes, flags, || {
        // SAFETY: the program's own call.
        unsafe { sys::sendto(fd, buf, len, flags, addr, alen) }
    })
}

/// # Safety
/// As writev(2).
#[no_mangle]
pub unsafe extern "C-unwind" fn writev(fd: c_int, iov: *const iovec, count: c_int) -> ssize_t {
    if fdtable::maybe_tracked(fd) {
        // SAFETY: the caller's contract, forwarded.
        return unsafe { writev_tracked(fd, iov, count) };
    }
    // SAFETY: the program's own call.
    unsafe { sys::writev(fd, iov, count) }
}

/// Kept out of line so the untracked path above stays a load and a jump.
///
/// # Safety
/// As `writev`.
#[cold]
#[inline(never)]
unsafe fn writev_tracked(fd: c_int, iov: *const iovec, count: c_int) -> ssize_t {
    // SAFETY: the program's own call.
    let real = || unsafe { sys::writev(fd, iov, count) };
    crate::tls::probe::saw_write(fd);
    let Some(conn) = tracked(fd) else {
        return real();
    };
    // SAFETY: writev(2)'s contract.
    match unsafe { gather(iov, count) } {
        Some(bytes) if !bytes.is_empty() => on_tracked(
            || tls_then_conn(&conn, fd, &bytes, 0).unwrap_or_else(real),
            real,
        ),
        _ => real(),
    }
}

/// # Safety
/// As sendmsg(2).
#[no_mangle]
pub unsafe extern "C-unwind" fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t {
    if fdtable::maybe_tracked(fd) {
        // SAFETY: the caller's contract, forwarded.
        return unsafe { sendmsg_tracked(fd, msg, flags) };
    }
    // SAFETY: the program's own call.
    unsafe { sys::sendmsg(fd, msg, flags) }
}

/// Kept out of line so the untracked path above stays a load and a jump.
///
/// # Safety
/// As `sendmsg`.
#[cold]
#[inline(never)]
unsafe fn sendmsg_tracked(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t {
    // SAFETY: the program's own call.
    let real = || unsafe { sys::sendmsg(fd, msg, flags) };
    crate::tls::probe::saw_write(fd);
    let Some(conn) = tracked(fd) else {
        return real();
    };
    // SAFETY: sendmsg(2)'s contract: `msg` is readable when non-null.
    let Some(header) = (unsafe { msg.as_ref() }) else {
        return real();
    };
    if header.msg_controllen > 0 {
        // Ancillary data has no place in an HTTP stream; leave such a call alone.
        return real();
    }
    // SAFETY: as above, the iovecs of a valid msghdr.
    match unsafe { gather(header.msg_iov, header.msg_iovlen as c_int) } {
        Some(bytes) if !bytes.is_empty() => on_tracked(
            || tls_then_conn(&conn, fd, &bytes, flags).unwrap_or_else(real),
            real,
        ),
        _ => real(),
    }
}

/// # Safety
/// As sendfile(2).
#[no_mangle]
pub unsafe extern "C-unwind" fn sendfile(
    out_fd: c_int,
    in_fd: c_int,
    offset: *mut off_t,
    count: size_t,
) -> ssize_t {
    if fdtable::maybe_tracked(out_fd) {
        // SAFETY: the caller's contract, forwarded.
        return unsafe { sendfile_tracked(out_fd, in_fd, offset, count) };
    }
    // SAFETY: the program's own call.
    unsafe { sys::sendfile(out_fd, in_fd, offset, count) }
}

/// glibc's other name for `sendfile` (the same 64-bit offset on x86_64).
///
/// # Safety
/// As sendfile(2).
#[no_mangle]
pub unsafe extern "C-unwind" fn sendfile64(
    out_fd: c_int,
    in_fd: c_int,
    offset: *mut off_t,
    count: size_t,
) -> ssize_t {
    // SAFETY: the caller's contract, forwarded.
    unsafe { sendfile(out_fd, in_fd, offset, count) }
}

/// Kept out of line so the untracked path above stays a load and a jump.
///
/// # Safety
/// As `sendfile`.
#[cold]
#[inline(never)]
unsafe fn sendfile_tracked(
    out_fd: c_int,
    in_fd: c_int,
    offset: *mut off_t,
    count: size_t,
) -> ssize_t {
    // SAFETY: the program's own call.
    let real = || unsafe { sys::sendfile(out_fd, in_fd, offset, count) };
    crate::tls::probe::saw_write(out_fd);
    let Some(conn) = tracked(out_fd) else {
        return real();
    };
    if count == 0 {
        return real();
    }
    on_tracked(
        // SAFETY: sendfile(2)'s contract: a non-null offset is the caller's to update.
        || unsafe { sendfile_as_writes(&conn, out_fd, in_fd, offset, count) }.unwrap_or_else(real),
        real,
    )
}

/// What a tracked socket takes from a file per write of `sendfile_as_writes`.
const SENDFILE_PIECE: usize = 64 * 1024;

/// A sendfile to a tracked socket, made as writes of the file's bytes: the kernel would
/// copy them without any passing through a write call, and the request's body must be
/// framed, kept for a replay and sent where its connection goes, like every other. Pieces
/// are read at the file's offset (`pread`: the file is read again from there if one is
/// not taken) and written until `count` is sent, or a write takes less than its piece (the
/// socket's buffer is full, as the kernel's short sendfile tells: an edge-triggered loop
/// then waits for an edge that will come), or fails. The offset (the caller's, else the
/// file's own) moves by what was sent. `None`: the program's call runs as it made it (a
/// file that cannot be read at an offset, or a write the connection leaves alone).
///
/// # Safety
/// A non-null `offset` is readable and writable.
unsafe fn sendfile_as_writes(
    conn: &Conn,
    out_fd: c_int,
    in_fd: c_int,
    offset: *mut off_t,
    count: size_t,
) -> Option<isize> {
    // SAFETY: the caller's contract.
    let start = match unsafe { offset.as_ref() } {
        Some(&at) => at,
        // SAFETY: a query of the file's offset; it fails (ESPIPE) for a pipe.
        None => unsafe { sys::lseek64(in_fd, 0, libc::SEEK_CUR) },
    };
    if start < 0 {
        return None;
    }
    let mut piece = vec![0u8; count.min(SENDFILE_PIECE)];
    let mut sent: usize = 0;
    while sent < count {
        let want = piece.len().min(count - sent);
        let at = start + sent as off_t;
        // SAFETY: `piece` has room for `want` bytes.
        let read = unsafe { sys::pread64(in_fd, piece.as_mut_ptr().cast(), want, at) };
        if read < 0 && sent == 0 {
            return None; // the kernel's own answer for this file
        }
        if read <= 0 {
            break; // the end of the file, or an error left to the next call
        }
        let written = match tls_then_conn(conn, out_fd, &piece[..read as usize], 0) {
            Some(written) => written,
            None if sent == 0 => return None,
            None => break, // left to the next call, which the connection will see whole
        };
        if written < 0 {
            if sent == 0 {
                return Some(written);
            }
            break; // what was sent is the answer; the failure comes again at the next call
        }
        sent += written as usize;
        if (written as usize) < read as usize {
            break;
        }
    }
    if sent > 0 {
        let end = start + sent as off_t;
        // SAFETY: the caller's contract.
        match unsafe { offset.as_mut() } {
            Some(at) => *at = end,
            // SAFETY: the file's offset moved to after what was sent.
            None => _ = unsafe { sys::lseek64(in_fd, end, libc::SEEK_SET) },
        }
    }
    Some(sent as isize)
}

/// A write on a tracked fd: through `conn::send`, or `real` when the fd is no longer ours
/// or there is nothing to write.
fn send_on(fd: c_int, bytes: &[u8], flags: c_int, real: impl Fn() -> isize + Copy) -> isize {
    crate::tls::probe::saw_write(fd);
    match tracked(fd) {
        Some(conn) if !bytes.is_empty() => on_tracked(
            || tls_then_conn(&conn, fd, bytes, flags).unwrap_or_else(real),
            real,
        ),
        _ => real(),
    }
}

/// The program's write of `bytes` on tracked `fd`: a TLS handshake's ClientHello the TLS
/// layer claims (`tls::claims_write`: reported written and nothing sent, or sent as
/// written), else `conn::send`. `None`: the program's own call runs unchanged.
pub(super) fn tls_then_conn(conn: &Conn, fd: c_int, bytes: &[u8], flags: c_int) -> Option<isize> {
    match crate::tls::claims_write(fd, conn, bytes) {
        crate::tls::Claim::Swallowed => return Some(bytes.len() as isize),
        crate::tls::Claim::AsWritten => return None,
        crate::tls::Claim::No => {}
    }
    match conn::send(conn, fd, bytes, flags) {
        Outcome::Done(count) => Some(count),
        Outcome::Bypass(Bypass::BytesOnly) => None,
        Outcome::Bypass(why) => {
            log::debug!("fd {fd}: the program's write runs as it made it ({why:?})");
            None
        }
    }
}

/// The bytes a program passed to a write call; empty for a null buffer.
///
/// # Safety
/// A non-null `buf` holds `len` readable bytes (the write call's contract).
unsafe fn program_bytes<'a>(buf: *const c_void, len: size_t) -> &'a [u8] {
    if buf.is_null() || len == 0 {
        return &[];
    }
    // SAFETY: the caller's contract.
    unsafe { std::slice::from_raw_parts(buf as *const u8, len) }
}

/// # Safety
/// As shutdown(2).
#[no_mangle]
pub unsafe extern "C-unwind" fn shutdown(fd: c_int, how: c_int) -> c_int {
    if fdtable::maybe_tracked(fd) {
        // SAFETY: the caller's contract, forwarded.
        return unsafe { shutdown_tracked(fd, how) };
    }
    // SAFETY: the program's own call.
    unsafe { sys::shutdown(fd, how) }
}

/// The connection layer learns of the program's shutdown first (`before_program_shutdown`:
/// the ends it causes are the program's, not the proxy failing). A program that
/// half-closes after its request (`shutdown(SHUT_WR)`) can meet a proxy that already reset
/// the connection: ENOTCONN. That is the proxy failing, hidden as a read would hide it;
/// the shutdown is then made on the new connection.
///
/// # Safety
/// As `shutdown`.
#[cold]
#[inline(never)]
unsafe fn shutdown_tracked(fd: c_int, how: c_int) -> c_int {
    // SAFETY: the program's own call.
    let real = || unsafe { sys::shutdown(fd, how) } as isize;
    if let Some(conn) = tracked(fd) {
        conn::before_program_shutdown(&conn, how);
    }
    let saved = sys::errno();
    let result = real();
    if result == 0 || sys::errno() != libc::ENOTCONN {
        return result as c_int;
    }
    let Some(conn) = tracked(fd) else {
        return result as c_int;
    };
    // A shutdown made again on the new connection succeeds with the program's errno.
    sys::set_errno(saved);
    let again = on_tracked(
        || {
            if conn::proxy_lost_under_shutdown(&conn, fd) {
                real()
            } else {
                sys::set_errno(libc::ENOTCONN);
                -1
            }
        },
        || {
            sys::set_errno(libc::ENOTCONN);
            -1
        },
    );
    again as c_int
}
