//! A diverted connection's own TLS session with the proxy (`LUNAR_PROXY_SUPPORT_TLS=1`),
//! made on the program's socket whenever it reaches the proxy and dropped whenever it
//! leaves. While there is one, every byte the library sends or reads on the socket goes
//! through it (`send_wire`, `recv_wire`, `recv_app` in `link_read`): the program reads and writes
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
//! (`link_read`'s `readable_for_program`, used by `hidden_hang_ups`).

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
pub(super) const RECORD_SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// The most plaintext one TLS record carries: a non-blocking write takes at most this
/// much, so that it waits for room for one record at most.
pub(super) const RECORD_PLAINTEXT: usize = 16 * 1024;

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
pub(super) fn broken(conn: &Conn, errno: c_int, why: &str) -> c_int {
    log::debug!("{}: TLS to the proxy broke: {why}", conn.label());
    errno
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
