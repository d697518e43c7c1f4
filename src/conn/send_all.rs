//! Sending every byte of what the program was told is written (a rewritten head, a
//! language hook's greeting, the requests a recovery sends again), even on a
//! non-blocking socket, through our TLS session with the proxy when there is one.

use super::Conn;
use crate::sys;
use crate::sys::socket::wait_for;
use libc::c_int;
use std::time::{Duration, Instant};

/// How long a rewritten head may wait for room in a full socket buffer. A blocking socket
/// would wait too; this bound only keeps a wedged peer from holding the thread forever.
const HEAD_SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// Sends all of `bytes`: the program was told these bytes were written (or, for a resend,
/// that they were), so they must all leave, even on a non-blocking socket.
pub(super) fn send_all(
    conn: &Conn,
    fd: c_int,
    mut bytes: &[u8],
    flags: c_int,
) -> Result<(), c_int> {
    let deadline = || Instant::now() + HEAD_SEND_TIMEOUT;
    if conn.linked() {
        if let Some(sent) = conn.link_write_all(fd, bytes, deadline()) {
            return sent;
        }
    }
    // The clock is read only when the socket buffer is full: nearly every head leaves in
    // one send.
    let mut give_up = None;
    while !bytes.is_empty() {
        // SAFETY: sends from a live slice.
        match unsafe { sys::send(fd, bytes.as_ptr().cast(), bytes.len(), flags) } {
            sent if sent >= 0 => bytes = &bytes[sent as usize..],
            _ => match sys::errno() {
                libc::EINTR => {}
                libc::EAGAIN => wait_for(fd, libc::POLLOUT, *give_up.get_or_insert_with(deadline))?,
                errno => return Err(errno),
            },
        }
    }
    Ok(())
}
