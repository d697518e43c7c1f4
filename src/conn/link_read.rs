//! The program's reads through a diverted connection's TLS session with the proxy (see
//! `link`): what a wait may show (`readable_for_program`), what FIONREAD answers
//! (`bytes_to_read`), and the reads themselves (`recv_app`), which take every record the
//! socket holds up to the program's buffer, as the kernel's recv takes every byte.

use super::app_buffer::AppBuffer;
use super::link::{broken, RECORD_PLAINTEXT, RECORD_SEND_TIMEOUT};
use super::Conn;
use crate::proxy::tls_link::Io;
use crate::sys;
use crate::sys::socket::wait_for;
use libc::c_int;
use std::time::{Duration, Instant};

/// How long a read may wait for the rest of a record whose start it found: its bytes
/// follow in the same flight, unless a segment was lost.
const RECORD_REST_TIMEOUT: Duration = Duration::from_secs(1);

impl Conn {
    /// A wait reported the socket readable. Over our TLS session that may be records only
    /// the session reads (a session ticket, part of a record): they are taken now, with a
    /// non-blocking peek. Whether the program has something to read: plaintext, the end,
    /// or an error.
    pub fn readable_for_program(&self) -> bool {
        if !self.linked() {
            return true;
        }
        let session = self.link.session.lock();
        let Some(link) = session.as_ref() else {
            return true;
        };
        if link.holds_plaintext() {
            return true;
        }
        let io = link.read(&mut [0u8; 1], true);
        self.link.note_waiting(link.holds_plaintext());
        !matches!(io, Io::WantRead | Io::WantWrite)
    }

    /// What FIONREAD answers the program on a socket with our session: the plaintext
    /// waiting in it, the part of a record it read and holds undecrypted, and the bytes in
    /// the socket (`in_socket`, the kernel's FIONREAD); ciphertext decrypts to fewer bytes,
    /// never more. An event loop counts its reads down from this (nginx): a figure short
    /// of what it can read would have it wait for an edge that bytes already here never
    /// make; one over it ends in a short read, which tells the truth. `None` without a
    /// session.
    pub fn bytes_to_read(&self, in_socket: usize) -> Option<usize> {
        if !self.linked() {
            return None;
        }
        let session = self.link.session.lock();
        let link = session.as_ref()?;
        Some(link.plaintext_held() + link.record_body_read() + in_socket)
    }

    /// The program's read into `buffer` through our session; `None` when the socket has
    /// none (the program's own call reads it).
    pub(super) fn recv_app(&self, fd: c_int, buffer: AppBuffer, flags: c_int) -> Option<isize> {
        if !self.linked() {
            return None;
        }
        match buffer {
            AppBuffer::Flat { data, len } => {
                let into: &mut [u8] = match data.is_null() {
                    true => &mut [],
                    // SAFETY: the program's read buffer, writable for the length it gave.
                    false => unsafe { std::slice::from_raw_parts_mut(data, len) },
                };
                self.recv_linked(fd, into, flags)
            }
            // Read a record's worth at a time into a piece of ours, then into the program's
            // parts; on while the socket holds more and the parts have room, as for a flat
            // buffer (`read_on`).
            AppBuffer::Scattered { .. } => {
                let capacity = buffer.capacity();
                let mut piece = vec![0u8; capacity.min(RECORD_PLAINTEXT)];
                let got = self.recv_linked(fd, &mut piece, flags)?;
                if got <= 0 {
                    return Some(got);
                }
                let mut filled = got as usize;
                // SAFETY: the program's read buffers, writable for the sizes they have;
                // `piece` fits them.
                unsafe { buffer.fill(&piece[..filled]) };
                let mut piece_full = filled == piece.len() && flags & libc::MSG_PEEK == 0;
                while piece_full && filled < capacity {
                    let want = piece.len().min(capacity - filled);
                    let more = self.read_on(fd, &mut piece[..want]);
                    // SAFETY: as above, after the bytes already delivered.
                    unsafe { buffer.fill_at(filled, &piece[..more]) };
                    filled += more;
                    piece_full = more == want;
                }
                Some(filled as isize)
            }
        }
    }

    /// `Some` with recv(2)'s result, or `None` without a session.
    pub(super) fn recv_linked(&self, fd: c_int, into: &mut [u8], flags: c_int) -> Option<isize> {
        if !self.linked() {
            return None;
        }
        let peek = flags & libc::MSG_PEEK != 0;
        loop {
            let (io, inside_record) = {
                let session = self.link.session.lock();
                let link = session.as_ref()?;
                let io = link.read(into, peek);
                self.link.note_waiting(link.holds_plaintext());
                (io, link.inside_record())
            };
            match io {
                Io::Done(count) if !peek && count < into.len() => {
                    return Some((count + self.read_on(fd, &mut into[count..])) as isize);
                }
                Io::Done(count) => return Some(count as isize),
                Io::End => return Some(0),
                // The socket was readable, but with part of a record: its rest is on its
                // way (the same flight), and the program, told "readable", expects bytes.
                Io::WantRead
                    if inside_record
                        && wait_for(fd, libc::POLLIN, Instant::now() + RECORD_REST_TIMEOUT)
                            .is_ok() => {}
                // OpenSSL read the socket dry: wait for its next bytes as the program's
                // own read would have (or not at all, non-blocking).
                Io::WantRead => {
                    if let Err(errno) = wait_readable(fd, flags) {
                        sys::set_errno(errno);
                        return Some(-1);
                    }
                }
                Io::WantWrite => {
                    if let Err(errno) =
                        wait_for(fd, libc::POLLOUT, Instant::now() + RECORD_SEND_TIMEOUT)
                    {
                        sys::set_errno(errno);
                        return Some(-1);
                    }
                }
                Io::Broken(errno, why) => {
                    sys::set_errno(broken(self, errno, &why));
                    return Some(-1);
                }
            }
        }
    }

    /// After a record's plaintext that did not fill the program's buffer: the records that
    /// came with it, read as the kernel's recv would have taken them (all there is, up to
    /// the buffer's end). An event loop that takes a short read for "nothing more" (nginx,
    /// edge-triggered) would otherwise wait for an edge that bytes already in the socket
    /// never make. Stops, keeping what it read, at the first thing that is not plaintext:
    /// the socket dry, part of a record (its rest makes an edge), an end or an error (the
    /// program's next read meets it). Returns the bytes added.
    fn read_on(&self, fd: c_int, into: &mut [u8]) -> usize {
        let mut filled = 0;
        while filled < into.len() {
            let io = {
                let session = self.link.session.lock();
                let Some(link) = session.as_ref() else {
                    break;
                };
                if !link.holds_plaintext() && !has_bytes(fd) {
                    break;
                }
                let io = link.read(&mut into[filled..], false);
                self.link.note_waiting(link.holds_plaintext());
                io
            };
            match io {
                Io::Done(count) if count > 0 => filled += count,
                _ => break,
            }
        }
        filled
    }
}

/// Waits until `fd` has bytes (or its end, or an error), as a read with `flags` would:
/// a one-byte peek, blocking unless the socket or MSG_DONTWAIT says otherwise.
fn wait_readable(fd: c_int, flags: c_int) -> Result<(), c_int> {
    match peek_one(fd, flags & libc::MSG_DONTWAIT) {
        got if got >= 0 => Ok(()),
        _ => Err(sys::errno()),
    }
}

/// Whether the socket holds bytes to read now (not an end, not an error: those are for
/// the program's next read to meet).
fn has_bytes(fd: c_int) -> bool {
    peek_one(fd, libc::MSG_DONTWAIT) > 0
}

/// recv(2) of one byte with MSG_PEEK and `flags`.
fn peek_one(fd: c_int, flags: c_int) -> isize {
    let mut byte = 0u8;
    // SAFETY: peeks one byte into a local.
    unsafe { sys::recv(fd, (&mut byte as *mut u8).cast(), 1, libc::MSG_PEEK | flags) }
}
