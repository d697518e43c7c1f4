//! One intercepted socket: where the program wanted to go, where it really is connected,
//! and the HTTP stream engine its writes go through. Owns every syscall the library makes
//! on behalf of the program for that fd.

mod app_buffer;
mod bypass;
mod connect;
#[allow(dead_code)]
mod decide;
pub mod fdtable;
mod hidden_hang_ups;
mod inflight;
mod lunar_headers;
mod moving;
mod read;
mod recovery;
mod responses;
mod retry_limits;
mod server_first;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod sim_fuzz;
#[allow(dead_code)]
mod state;
mod tls_handoff;
mod waiting;
mod write;

pub use app_buffer::AppBuffer;
pub use bypass::{handed_to_stdio, io_uring_in_use, io_uring_seen, untrackable};
pub use connect::{connect, connect_error_seen, peer_to_show, settle_for_server_name};
pub use hidden_hang_ups::{
    epoll_pwait2_hiding_proxy_hang_ups, epoll_pwait_hiding_proxy_hang_ups,
    poll_hiding_proxy_hang_ups, ppoll_hiding_proxy_hang_ups,
};
pub use read::{proxy_lost_under_shutdown, proxy_lost_under_wait};
pub use server_first::{
    note_input_waits_in_fd_sets, note_input_waits_in_pollfds, reads_before_writing, timespec_ms,
    timeval_ms, waits_to_read_before_writing,
};
pub use tls_handoff::TlsHandoff;
pub use write::send;

use crate::http::RequestStream;
use crate::runtime::Route;
use crate::sync::{Gate, SpinLock};
use responses::Responses;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

pub struct Conn {
    /// Where the program asked to connect.
    pub original: SocketAddr,
    /// The name the program resolved for `original`, if it did.
    pub name: Option<String>,
    /// What the traffic filter said at connect (before the failsafe had its say): a
    /// request head that changes this verdict moves the socket.
    filter_diverts: bool,
    peer: SpinLock<Route>,
    /// Nothing more to do on this connection but pass bytes (not HTTP, a tunnel).
    passthrough: AtomicBool,
    /// The program has written to this connection.
    wrote: AtomicBool,
    /// The socket's identity (device and inode, from fstat) when it was connected: an fd
    /// number closed behind our back and reused is told apart by it. `None` for our own
    /// placeholders.
    identity: Option<Identity>,
    /// `still_a_socket` confirmed the fd before the program's first read.
    verified: AtomicBool,
    /// The program handed the socket to stdio (`fdopen`) while a request was unanswered:
    /// it goes to its origin at the next request it writes through us.
    stdio: AtomicBool,
    /// Odd while the socket is being moved to another peer; changes with each move, so a
    /// reader can tell that an error it got belongs to the old peer.
    move_epoch: AtomicU32,
    /// Lock rules (see also `sync`): `writer` serialises what is sent on the socket (the
    /// program's writes, a resend) and the moves decided in the program's own thread; it
    /// may be held across a move (a bounded connect) but never across a wait on the
    /// program's behalf (a retry's delay, the proxy's answer): those are `recovery`'s.
    /// `responses` and `peer` guard data only, never a system call that can block; when
    /// both are needed, `writer` is taken first, then `responses`.
    writer: SpinLock<Writer>,
    /// The proxy's answers and the copies of the requests they answer.
    responses: SpinLock<Responses>,
    /// Raised while a recovery owns the socket: the program's reads and writes answer
    /// EAGAIN meanwhile (non-blocking) or wait in the kernel until it is lowered.
    recovery: Gate,
    /// A virtual TLS session (`crate::tls`) runs on this socket: its plaintext is https.
    https: AtomicBool,
    /// After a fallback the TLS layer runs a real session on this socket: the program's
    /// plaintext path must neither read nor write it.
    tls_owned: AtomicBool,
}

struct Writer {
    requests: RequestStream,
    /// Reused buffer for rewritten heads.
    head_out: Vec<u8>,
}

impl Conn {
    /// A connection to `original`, not (yet) diverted.
    pub fn new(
        original: SocketAddr,
        name: Option<String>,
        filter_diverts: bool,
        replay_cap: usize,
    ) -> Conn {
        Conn {
            original,
            name,
            filter_diverts,
            peer: SpinLock::new(Route::Origin),
            passthrough: AtomicBool::new(false),
            wrote: AtomicBool::new(false),
            identity: None,
            verified: AtomicBool::new(false),
            stdio: AtomicBool::new(false),
            move_epoch: AtomicU32::new(0),
            writer: SpinLock::new(Writer {
                requests: RequestStream::new(),
                head_out: Vec::new(),
            }),
            responses: SpinLock::new(Responses::new(replay_cap)),
            recovery: Gate::new(),
            https: AtomicBool::new(false),
            tls_owned: AtomicBool::new(false),
        }
    }

    /// The same connection, knowing the identity of the socket `fd` it was made on.
    pub fn on_socket(mut self, fd: i32) -> Conn {
        self.identity = Identity::of(fd);
        self
    }

    /// A placeholder that marks one of our own fds (`tls::probe`): passed through.
    pub fn for_probe() -> Conn {
        let conn = Conn::new(SocketAddr::from(([0, 0, 0, 0], 0)), None, false, 0);
        conn.passthrough.store(true, Ordering::Release);
        conn
    }

    /// The program's TLS session on this socket became virtual: what it writes is the
    /// plaintext of an https request. `tls`: what the TLS layer answers for it
    /// (`tls_handoff`), registered before the connection counts as https.
    pub fn mark_https(&self, tls: &'static TlsHandoff) {
        tls.register();
        self.https.store(true, Ordering::Release);
    }

    pub fn is_https(&self) -> bool {
        self.https.load(Ordering::Acquire)
    }

    fn is_tls_owned(&self) -> bool {
        self.tls_owned.load(Ordering::Acquire)
    }

    fn scheme(&self) -> lunar_headers::Scheme {
        if self.is_https() {
            lunar_headers::Scheme::Https
        } else {
            lunar_headers::Scheme::Http
        }
    }

    /// Whether a TLS session on this socket may become virtual: the socket goes to the
    /// proxy and nothing was written yet.
    pub fn can_carry_virtual_tls(&self) -> bool {
        self.is_diverted()
            && !self.wrote.load(Ordering::Acquire)
            && !self.is_passthrough()
            && !self.is_https()
    }

    pub fn peer(&self) -> Route {
        *self.peer.lock()
    }

    fn set_peer(&self, peer: Route) {
        *self.peer.lock() = peer;
        // Only the proxy's answers are checked; the copies stay until a replay took them.
        self.responses.lock().checking = matches!(peer, Route::Proxy(_));
    }

    /// True when the program's view of the peer differs from the socket's: what
    /// `getpeername` must hide.
    pub fn is_diverted(&self) -> bool {
        matches!(self.peer(), Route::Proxy(_))
    }

    fn is_passthrough(&self) -> bool {
        self.passthrough.load(Ordering::Acquire)
    }

    /// Whether `fd` is still the socket this connection was made on (one fstat). A
    /// program can close an fd behind our back (`fclose`, glibc-internal closes, raw
    /// syscalls we do not see) and get the number back for a file, a pipe or another
    /// socket: then `fd` is forgotten (this connection stays for other fds that share it)
    /// and must be left alone. Checked where acting on a wrong fd would hurt: before each
    /// request head, before the first read, before a move; never on the untracked path.
    pub fn still_ours(&self, fd: i32) -> bool {
        let Some(identity) = self.identity else {
            return true;
        };
        if Identity::of(fd) == Some(identity) {
            return true;
        }
        log::debug!(
            "fd {fd} is no longer the socket to {}: left alone",
            self.label()
        );
        fdtable::remove_conn(fd, self);
        false
    }

    /// `still_ours`, checked once before the program's first read (the write path checks
    /// at each request head).
    fn still_a_socket(&self, fd: i32) -> bool {
        if self.verified.load(Ordering::Acquire) {
            return true;
        }
        let ok = self.still_ours(fd);
        if ok {
            self.verified.store(true, Ordering::Release);
        }
        ok
    }

    /// `name:port` when the program resolved a name, else `ip:port`: for log lines.
    pub fn label(&self) -> String {
        let port = self.original.port();
        match &self.name {
            Some(name) => format!("{name}:{port}"),
            None => crate::addr::canonical(self.original).to_string(),
        }
    }

    /// One of our calls on `fd` failed with `errno`: EBADF or ENOTSOCK say that the fd is
    /// no longer this socket (closed, or reused for a file). Then it is forgotten and the
    /// program's own call must run unchanged: returns true.
    fn lost_fd(&self, fd: i32, errno: i32) -> bool {
        if !matches!(errno, libc::EBADF | libc::ENOTSOCK) {
            return false;
        }
        log::debug!(
            "fd {fd} is no longer the socket to {}: left alone",
            self.label()
        );
        fdtable::remove_conn(fd, self);
        true
    }

    pub fn after_fork_in_child(&self) {
        self.peer.force_unlock();
        self.writer.force_unlock();
        self.responses.force_unlock();
        // A recovery thread of the parent does not exist here.
        self.recovery.lower();
    }
}

/// The program's read (any of read/recv/recvfrom/readv/recvmsg and the fortified ones) on
/// tracked `fd`: the fd is checked before its first read (a number closed behind our back
/// and reused is left alone), then `read::receive`. `handshake_holds`: a TLS handshake of
/// this thread bound `fd` (`tls::holds_reads`): nothing will come, the read answers EAGAIN.
pub fn receive(
    conn: &std::sync::Arc<Conn>,
    fd: libc::c_int,
    flags: libc::c_int,
    buffer: AppBuffer,
    handshake_holds: bool,
    mut real: impl FnMut() -> isize,
) -> isize {
    let check = if conn.is_tls_owned() {
        // Reads through us on a socket a real TLS session owns are rare: check each.
        conn.still_ours(fd)
    } else {
        conn.is_passthrough() || conn.still_a_socket(fd)
    };
    if !check {
        return real();
    }
    read::receive(conn, fd, flags, buffer, handshake_holds, real)
}

/// What identifies a socket while it is open: its device and inode numbers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Identity {
    device: u64,
    inode: u64,
}

impl Identity {
    /// The identity of `fd`, if it is an open socket.
    fn of(fd: i32) -> Option<Identity> {
        let mut status = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: fstat fills the buffer when it returns 0; it is read only then.
        let status = unsafe {
            if libc::fstat(fd, status.as_mut_ptr()) != 0 {
                return None;
            }
            status.assume_init()
        };
        (status.st_mode & libc::S_IFMT == libc::S_IFSOCK).then_some(Identity {
            device: status.st_dev,
            inode: status.st_ino,
        })
    }
}
