//! splice(2) between a pipe and a tracked socket. The kernel would move the bytes without
//! any passing through a read or a write call, so the connection would never see them:
//! a request body a program splices to the proxy (HAProxy with `option splice-request`)
//! would leave its framing behind, the next request taken for body and sent without
//! Lunar's headers, and a body never kept for a replay; an answer spliced from the proxy
//! (`option splice-response`) would pass unread, its failure unseen. So both go through
//! the connection, with the pipe's side kept exact: a splice takes from or gives to the
//! pipe just the bytes the socket's side moved, as the kernel's does.

use super::read::{flat, receive_on};
use super::write::tls_then_conn;
use super::{on_tracked, tracked};
use crate::conn::fdtable;
use crate::sys;
use libc::{c_int, c_uint, loff_t, pollfd, size_t, ssize_t};

/// # Safety
/// As splice(2).
#[no_mangle]
pub unsafe extern "C-unwind" fn splice(
    fd_in: c_int,
    off_in: *mut loff_t,
    fd_out: c_int,
    off_out: *mut loff_t,
    len: size_t,
    flags: c_uint,
) -> ssize_t {
    if fdtable::maybe_tracked(fd_in) || fdtable::maybe_tracked(fd_out) {
        // SAFETY: the caller's contract, forwarded.
        return unsafe { splice_tracked(fd_in, off_in, fd_out, off_out, len, flags) };
    }
    // SAFETY: the program's own call.
    unsafe { sys::splice(fd_in, off_in, fd_out, off_out, len, flags) }
}

/// Kept out of line so the untracked path above stays two loads and a jump.
///
/// # Safety
/// As `splice`.
#[cold]
#[inline(never)]
unsafe fn splice_tracked(
    fd_in: c_int,
    off_in: *mut loff_t,
    fd_out: c_int,
    off_out: *mut loff_t,
    len: size_t,
    flags: c_uint,
) -> ssize_t {
    // SAFETY: the program's own call.
    let real = || unsafe { sys::splice(fd_in, off_in, fd_out, off_out, len, flags) };
    // A socket takes no offset, and one end must be a pipe: the kernel says what is wrong.
    if len == 0 || !off_in.is_null() || !off_out.is_null() {
        return real();
    }
    if let Some(conn) = tracked(fd_out) {
        if pipe_size(fd_in).is_some() {
            crate::tls::probe::saw_write(fd_out);
            return on_tracked(
                || pipe_to_connection(&conn, fd_in, fd_out, len, flags).unwrap_or_else(real),
                real,
            );
        }
    }
    if tracked(fd_in).is_some() {
        if let Some(size) = pipe_size(fd_out) {
            return connection_to_pipe(fd_in, fd_out, size, len, flags);
        }
    }
    real()
}

/// The capacity of `fd` as a pipe (F_GETPIPE_SZ), `None` when it is not one.
fn pipe_size(fd: c_int) -> Option<usize> {
    // SAFETY: F_GETPIPE_SZ takes no argument; it fails (EBADF) for anything but a pipe.
    let size = unsafe { sys::fcntl(fd, libc::F_GETPIPE_SZ, 0) };
    (size > 0).then_some(size as usize)
}

/// A pipe of the library's own for one call, closed when dropped: the program never sees
/// its fds outlive the call.
struct OwnPipe {
    read_end: c_int,
    write_end: c_int,
}

impl OwnPipe {
    /// Blocking at both ends: `tee` would take a non-blocking end for SPLICE_F_NONBLOCK,
    /// and whether the program's pipe is waited for is the program's to say.
    fn new() -> Option<OwnPipe> {
        let mut fds = [-1; 2];
        // SAFETY: room for the two fds.
        let made = unsafe { sys::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
        (made == 0).then_some(OwnPipe {
            read_end: fds[0],
            write_end: fds[1],
        })
    }
}

impl Drop for OwnPipe {
    fn drop(&mut self) {
        // SAFETY: our own fds, closed once.
        unsafe {
            sys::close(self.read_end);
            sys::close(self.write_end);
        }
    }
}

/// A splice from the program's pipe to a tracked socket: the pipe's bytes are copied
/// (`tee`, which leaves them in the pipe), written through the connection, and then
/// taken from the pipe as far as the connection took them, so that what it did not take
/// stays for the program's next call. `None`: the connection leaves the write alone (the
/// kernel's splice runs). Without a pipe of our own (no fd left) the call fails (ENOMEM)
/// rather than let the kernel move bytes the connection must see.
fn pipe_to_connection(
    conn: &crate::conn::Conn,
    pipe: c_int,
    socket: c_int,
    len: size_t,
    flags: c_uint,
) -> Option<isize> {
    let Some(copy) = OwnPipe::new() else {
        sys::set_errno(libc::ENOMEM);
        return Some(-1);
    };
    // SAFETY: two pipes; the program's flags say whether an empty pipe is waited for.
    let copied = unsafe { sys::tee(pipe, copy.write_end, len, flags & libc::SPLICE_F_NONBLOCK) };
    if copied <= 0 {
        return Some(copied); // the pipe's end (0), or its EAGAIN/EINTR, as splice's
    }
    let mut bytes = vec![0u8; copied as usize];
    read_exactly(copy.read_end, &mut bytes)?;
    let written = tls_then_conn(conn, socket, &bytes, 0)?;
    if written > 0 {
        // What the pipe gives first is what `tee` copied; it holds them, so this read
        // cannot come short.
        _ = read_exactly(pipe, &mut bytes[..written as usize]);
    }
    Some(written)
}

/// Fills `buf` from a pipe known to hold at least that many bytes.
fn read_exactly(pipe: c_int, buf: &mut [u8]) -> Option<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: `rest` has room for its length.
        let read = unsafe { sys::read(pipe, rest.as_mut_ptr().cast(), rest.len()) };
        if read <= 0 && sys::errno() != libc::EINTR {
            return None;
        }
        filled += read.max(0) as usize;
    }
    Some(())
}

/// A splice from a tracked socket to the program's pipe: a read through the connection
/// (which hides the proxy's failures and follows its answers as any read), of no more
/// than the pipe surely takes in one write, so that nothing read is lost: all of its
/// capacity when it is empty, else PIPE_BUF (a write of up to a page fits whenever the
/// pipe has a free slot, which its POLLOUT says).
fn connection_to_pipe(
    socket: c_int,
    pipe: c_int,
    capacity: usize,
    len: size_t,
    flags: c_uint,
) -> isize {
    let room = match pipe_room(pipe, capacity, flags) {
        Ok(room) => room,
        Err(errno) => {
            sys::set_errno(errno);
            return -1;
        }
    };
    let mut bytes = vec![0u8; room.min(len)];
    let (data, want) = (bytes.as_mut_ptr(), bytes.len());
    // SAFETY: `bytes` has room for `want` bytes; the socket's own mode says whether it waits.
    let real = || unsafe { sys::recv(socket, data.cast(), want, 0) };
    let read = receive_on(socket, 0, flat(data.cast(), want), real);
    if read <= 0 {
        return read;
    }
    let mut given = 0;
    while given < read as usize {
        let rest = &bytes[given..read as usize];
        // SAFETY: `rest` is readable; the pipe has room for it (above).
        let wrote = unsafe { sys::write(pipe, rest.as_ptr().cast(), rest.len()) };
        if wrote < 0 && sys::errno() == libc::EINTR {
            continue;
        }
        if wrote <= 0 {
            // Only a pipe whose reader left, or one another thread filled meanwhile.
            log::warn!(
                "fd {socket}: {} bytes spliced to a pipe that took none",
                rest.len()
            );
            break;
        }
        given += wrote as usize;
    }
    read
}

/// How many bytes one write to `pipe` takes whole now: its capacity when it is empty,
/// PIPE_BUF when it has a free slot; when it has none, EAGAIN for a non-blocking pipe (or
/// SPLICE_F_NONBLOCK), else a wait for a slot, as the kernel's splice waits.
fn pipe_room(pipe: c_int, capacity: usize, flags: c_uint) -> Result<usize, c_int> {
    let mut queued: c_int = 0;
    // SAFETY: FIONREAD writes one int.
    if unsafe { sys::ioctl(pipe, libc::FIONREAD, (&mut queued as *mut c_int).cast()) } == 0
        && queued == 0
    {
        return Ok(capacity);
    }
    let mut entry = pollfd {
        fd: pipe,
        events: libc::POLLOUT,
        revents: 0,
    };
    if sys::poll_one::poll_one(&mut entry, 0) > 0 && entry.revents & libc::POLLOUT != 0 {
        return Ok(libc::PIPE_BUF);
    }
    if entry.revents & libc::POLLERR != 0 {
        return Err(libc::EPIPE);
    }
    // SAFETY: F_GETFL takes no argument.
    let status = unsafe { sys::fcntl(pipe, libc::F_GETFL, 0) };
    if flags & libc::SPLICE_F_NONBLOCK != 0 || status & libc::O_NONBLOCK != 0 {
        return Err(libc::EAGAIN);
    }
    entry.revents = 0;
    match sys::poll_one::poll_one(&mut entry, -1) {
        ready if ready > 0 && entry.revents & libc::POLLOUT != 0 => Ok(libc::PIPE_BUF),
        ready if ready > 0 => Err(libc::EPIPE),
        _ => Err(sys::errno()),
    }
}
