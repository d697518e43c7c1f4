//! A diverted connection's own TLS session with the proxy (`LUNAR_PROXY_SUPPORT_TLS=1`),
//! made on the program's socket whenever it reaches the proxy and dropped whenever it
//! leaves. While there is one, every byte the library sends or reads on the socket goes
//! through it (`send_wire`, `recv_wire`, `recv_app`): the program reads and writes
//! plaintext HTTP exactly as over a clear-text link, and only the session's records cross
//! the network.
//!
//! Lock rule: `session` is held for one non-blocking call of the TLS library at a time
//! (its reads and writes of the socket use MSG_DONTWAIT), never across a wait. A read that
//! must wait for the next record waits in a blocking one-byte peek of the socket, the
//! program's own kind of call, so its SO_RCVTIMEO, O_NONBLOCK, MSG_DONTWAIT and signals
//! behave as without us. A write waits for room in a poll bounded like a rewritten head's
//! (`write::send_all`): a record the library has begun to send must be finished before the
//! call returns; after a write that had to wait, a non-blocking program's next write asks
//! the kernel for room first, and gets EAGAIN without it.
//!
//! Readiness: a record larger than the program's read leaves decrypted bytes in the
//! session, which poll, select and epoll cannot see; `plaintext_waiting` tells the wait
//! hooks (`plaintext_ready`). The other way round, a socket readable with only records for
//! the session (a TLS 1.3 ticket, part of a record) is hidden from them
//! (`readable_for_program`, used by `hidden_hang_ups`).

use super::app_buffer::AppBuffer;
use super::read::is_nonblocking;
use super::Conn;
use crate::proxy::tls_link::{Io, Link, Trust};
use crate::runtime::Runtime;
use crate::sys;
use crate::sys::socket::wait_for;
use libc::c_int;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long a write may wait for room to finish a record it began; as for a rewritten
/// head, this only keeps a wedged peer from holding the thread forever.
const RECORD_SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a read may wait for the rest of a record whose start it found: its bytes
/// follow in the same flight, unless a segment was lost.
const RECORD_REST_TIMEOUT: Duration = Duration::from_secs(1);
/// The most plaintext one TLS record carries: a non-blocking write takes at most this
/// much, so that it waits for room for one record at most.
const RECORD_PLAINTEXT: usize = 16 * 1024;

impl Conn {
    /// Whether the socket carries our TLS session with the proxy.
    pub(super) fn linked(&self) -> bool {
        self.link.linked.load(Ordering::Acquire)
    }

    /// Whether decrypted bytes of the proxy's wait in our session: the program's next read
    /// gets them although the socket shows nothing.
    pub fn plaintext_waiting(&self) -> bool {
        self.link.waiting.load(Ordering::Acquire)
    }

    /// After a connect of `fd` to `proxy`: our TLS session on it, when the proxy is reached
    /// over TLS, by `deadline`. `Err`: what failed, for the failsafe's warning.
    pub(super) fn secure(
        &self,
        fd: c_int,
        proxy: SocketAddr,
        runtime: &Runtime,
        deadline: Instant,
    ) -> Result<(), String> {
        match runtime.proxy.tls_trust() {
            None => Ok(()),
            Some(trust) => self
                .link_up(fd, trust, deadline)
                .map_err(|why| format!("TLS to {proxy}: {why}")),
        }
    }

    /// Our TLS handshake with the proxy on `fd`, just connected to it, by `deadline`.
    /// `Err`: why it failed, in OpenSSL's words. Out of line: with the proxy in clear text
    /// (the default), `secure` is one test (build.rs's layout keeps what never runs apart).
    #[inline(never)]
    fn link_up(&self, fd: c_int, trust: Trust<'_>, deadline: Instant) -> Result<(), String> {
        let link = Link::connect(fd, trust, deadline)?;
        let resumed = if link.resumed() { ", resumed" } else { "" };
        log::debug!(
            "{}: TLS to the proxy ({}{resumed})",
            self.label(),
            link.description()
        );
        let replaced = self.link.session.lock().replace(link);
        self.link.note_linked(true);
        drop(replaced);
        Ok(())
    }

    /// The socket leaves the proxy: our session goes with it (nothing more is said on it).
    pub(super) fn link_down(&self) {
        if !self.linked() {
            return;
        }
        let gone = self.link.session.lock().take();
        self.link.note_linked(false);
        self.link.note_waiting(false);
        drop(gone);
    }

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

    /// recv(2) on the connection's wire: through our session when there is one, else the
    /// socket's own. `flags`: MSG_PEEK and MSG_DONTWAIT as for recv.
    pub(super) fn recv_wire(&self, fd: c_int, into: &mut [u8], flags: c_int) -> isize {
        match self.recv_linked(fd, into, flags) {
            Some(got) => got,
            // SAFETY: reads into a live slice of that length.
            None => unsafe { sys::recv(fd, into.as_mut_ptr().cast(), into.len(), flags) },
        }
    }

    /// Takes `into.len()` bytes that a peek has just shown, from the kernel's buffer or
    /// our session's plaintext, in one call that never waits (`recv_wire` may wait for the
    /// rest of a record): a caller may hold the `responses` lock across it. The count
    /// taken, or -1.
    pub(super) fn take_peeked(&self, fd: c_int, into: &mut [u8]) -> isize {
        if self.linked() {
            let session = self.link.session.lock();
            if let Some(link) = session.as_ref() {
                let io = link.read(into, false);
                self.link.note_waiting(link.holds_plaintext());
                return match io {
                    Io::Done(count) => count as isize,
                    _ => -1,
                };
            }
        }
        // SAFETY: reads into a live slice of that length.
        unsafe { sys::recv(fd, into.as_mut_ptr().cast(), into.len(), libc::MSG_DONTWAIT) }
    }

    /// send(2) on the connection's wire, as `recv_wire`.
    pub(super) fn send_wire(&self, fd: c_int, bytes: &[u8], flags: c_int) -> isize {
        match self.send_linked(fd, bytes, flags) {
            Some(sent) => sent,
            // SAFETY: sends from a live slice.
            None => unsafe { sys::send(fd, bytes.as_ptr().cast(), bytes.len(), flags) },
        }
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
    fn recv_linked(&self, fd: c_int, into: &mut [u8], flags: c_int) -> Option<isize> {
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

    /// `Some` with send(2)'s result, or `None` without a session. A blocking socket's
    /// bytes are all taken; a non-blocking one's up to a record, if it has room now.
    fn send_linked(&self, fd: c_int, bytes: &[u8], flags: c_int) -> Option<isize> {
        if !self.linked() {
            return None;
        }
        // Up to a record, while the socket has had room: taken whole whatever its mode
        // (the usual request), without asking the kernel; after a write that had to wait
        // for room, a non-blocking program is told EAGAIN rather than held.
        let roomy = !self.link.congested.load(Ordering::Acquire) || writable_now(fd);
        let take = if bytes.len() <= RECORD_PLAINTEXT && roomy {
            bytes.len()
        } else if is_nonblocking(fd, flags) {
            if !writable_now(fd) {
                sys::set_errno(libc::EAGAIN);
                return Some(-1);
            }
            bytes.len().min(RECORD_PLAINTEXT)
        } else {
            bytes.len()
        };
        let deadline = Instant::now() + RECORD_SEND_TIMEOUT;
        match self.link_write_all(fd, &bytes[..take], deadline)? {
            Ok(()) => Some(take as isize),
            Err(errno) => {
                sys::set_errno(errno);
                Some(-1)
            }
        }
    }

    /// Sends all of `bytes` through our session by `deadline`; `None` without a session.
    pub(super) fn link_write_all(
        &self,
        fd: c_int,
        mut bytes: &[u8],
        deadline: Instant,
    ) -> Option<Result<(), c_int>> {
        if !self.linked() {
            return None;
        }
        let mut waited_for_room = false;
        while !bytes.is_empty() {
            let io = match self.link.session.lock().as_ref() {
                Some(link) => link.write(bytes),
                // A move took the session away under us: the peer these bytes were for
                // is gone.
                None => return Some(Err(libc::EPIPE)),
            };
            let waited = match io {
                Io::Done(count) => {
                    bytes = &bytes[count..];
                    Ok(())
                }
                Io::WantWrite => {
                    waited_for_room = true;
                    wait_for(fd, libc::POLLOUT, deadline)
                }
                Io::WantRead => wait_for(fd, libc::POLLIN, deadline),
                Io::End => Err(libc::EPIPE),
                Io::Broken(errno, why) => Err(broken(self, errno, &why)),
            };
            if let Err(errno) = waited {
                return Some(Err(errno));
            }
        }
        self.link
            .congested
            .store(waited_for_room, Ordering::Release);
        Some(Ok(()))
    }
}

/// TLS to the proxy was asked for and no OpenSSL can be loaded (`missing` says so):
/// said once; every diverted connection goes direct.
pub(super) fn warn_once_no_tls_library(missing: &str) {
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Ordering::AcqRel) {
        log::warn!(
            "LUNAR_PROXY_SUPPORT_TLS=1: {missing}; requests go to their original destinations"
        );
    }
}

/// The session broke (`why`, the TLS library's words, for the DEBUG log): the errno the
/// program's call reports.
fn broken(conn: &Conn, errno: c_int, why: &str) -> c_int {
    log::debug!("{}: TLS to the proxy broke: {why}", conn.label());
    errno
}

/// Waits until `fd` has bytes (or its end, or an error), as a read with `flags` would:
/// a one-byte peek, blocking unless the socket or MSG_DONTWAIT says otherwise.
fn wait_readable(fd: c_int, flags: c_int) -> Result<(), c_int> {
    let mut byte = 0u8;
    let peek = libc::MSG_PEEK | (flags & libc::MSG_DONTWAIT);
    // SAFETY: peeks one byte into a local.
    match unsafe { sys::recv(fd, (&mut byte as *mut u8).cast(), 1, peek) } {
        got if got >= 0 => Ok(()),
        _ => Err(sys::errno()),
    }
}

/// Whether the socket holds bytes to read now (not an end, not an error: those are for
/// the program's next read to meet).
fn has_bytes(fd: c_int) -> bool {
    let mut byte = 0u8;
    let peek = libc::MSG_PEEK | libc::MSG_DONTWAIT;
    // SAFETY: peeks one byte into a local.
    unsafe { sys::recv(fd, (&mut byte as *mut u8).cast(), 1, peek) > 0 }
}

fn writable_now(fd: c_int) -> bool {
    let mut entry = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no waiting.
    let ready = unsafe { sys::poll(&mut entry, 1, 0) };
    // An error or hang-up is for the write to meet.
    ready != 0
}
