//! One intercepted socket: where the program wanted to go, where it really is connected,
//! and the HTTP stream engine its writes go through. Owns every syscall the library makes
//! on behalf of the program for that fd.

mod answer_read;
mod app_buffer;
mod bypass;
mod connect;
mod connecting;
mod decide;
mod decision;
mod epoll_fdinfo;
mod fd_hold;
pub mod fdtable;
mod hidden_hang_ups;
mod hidden_in_select;
mod hook_marker;
mod inflight;
pub mod lang_hook;
mod link;
mod link_read;
mod link_slot;
mod lunar_headers;
mod moving;
mod next_answer;
mod outcome;
mod plaintext_ready;
mod program_shutdown;
mod read;
mod recovery;
mod request_route;
mod responses;
mod retry_limits;
mod send_all;
mod server_first;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod sim_fuzz;
mod spares;
mod state;
mod tls_handoff;
pub mod tls_plain;
mod told_ready;
mod wait_deadline;
mod waiting;
pub mod watchers;
mod write;
mod write_off_http;

pub use app_buffer::AppBuffer;
pub use bypass::{handed_to_stdio, io_uring_in_use, io_uring_seen, untrackable};
pub use connect::{connect, connect_error_seen, peer_to_show, settle_for_server_name};
pub use hidden_hang_ups::{
    epoll_pwait2_hiding_proxy_hang_ups, epoll_pwait_hiding_proxy_hang_ups,
    poll_hiding_proxy_hang_ups, ppoll_hiding_proxy_hang_ups,
};
pub use hidden_in_select::{pselect_hiding_proxy_hang_ups, select_hiding_proxy_hang_ups};
pub use link_slot::{any_linked, any_plaintext_waiting};
pub use outcome::{Bypass, Connected, Label, NotDiverted, Outcome};
pub use plaintext_ready::{
    epoll_showing_plaintext, poll_showing_plaintext, select_showing_plaintext,
};
pub use program_shutdown::before_program_shutdown;
pub use read::{proxy_lost_under_shutdown, proxy_lost_under_wait};
pub use server_first::{
    note_input_registration, note_input_waits_in_fd_sets, note_input_waits_in_pollfds,
    reads_before_writing, timespec_ms, timeval_ms, waits_to_read_before_writing,
};
pub use tls_handoff::TlsHandoff;
pub use waiting::input_within;
pub use write::send;

use crate::http::RequestStream;
use crate::runtime::Route;
use crate::sync::{Gate, SpinLock};
use responses::Responses;
pub use state::{Phase, State};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

pub struct Conn {
    /// Where the program asked to connect.
    pub original: SocketAddr,
    /// The name the program resolved for `original`, if it did.
    pub name: Option<std::sync::Arc<str>>,
    /// What the traffic filter said at connect (before the failsafe had its say): a
    /// request head that changes this verdict moves the socket.
    filter_diverts: bool,
    /// The socket's identity (device and inode, from fstat): an fd number closed behind our
    /// back and reused is told apart by it. Taken at the first check after the connect
    /// (`still_ours`: a request head held in pieces, a read before any write, a move), not
    /// at the connect, which saves a system call per connection: a number reused in
    /// between for a file or a pipe is still told apart (not a socket, and our send there
    /// fails with ENOTSOCK); only one reused by a socket that libc made internally (which
    /// the program would not write its request to) would pass.
    identity: std::sync::OnceLock<Identity>,
    /// Made on a program's socket (`on_socket`); our own placeholders are never checked.
    on_a_socket: bool,
    /// The socket's address family (AF_INET, AF_INET6), learned at its connect: the
    /// proxy's and the origin's addresses are written in it (an IPv6 socket reaches an
    /// IPv4 proxy through a v4-mapped address).
    pub family: libc::c_int,
    /// Where the socket is and who may touch it (`state`): the one place that says so.
    state: SpinLock<State>,
    /// Lock rules (see also `sync`): `writer` serialises what is sent on the socket (the
    /// program's writes, a resend) and the moves decided in the program's own thread; it
    /// may be held across a move (a bounded connect) and across sending bytes the program
    /// was told are written (`send_all`: room in a full socket buffer, which the program's
    /// own blocking write would wait for too), but never across a wait on the program's
    /// behalf (a retry's delay, the proxy's answer): a recovery owns the socket through
    /// its phase instead. `responses` and `state` guard data only, never a system call
    /// that can block (the one read under `responses` is `take_peeked`'s, which cannot).
    /// Order: `writer`, then `responses`, then `state` (innermost: taken alone or last,
    /// and only for a copy or a change).
    writer: SpinLock<Writer>,
    /// The proxy's answers and the copies of the requests they answer.
    responses: SpinLock<Responses>,
    /// Raised exactly while the phase is `Recovering`: the program's reads and writes
    /// wait here in the kernel (or answer EAGAIN, non-blocking) until it is lowered.
    recovery: Gate,
    /// Counts the fds that stopped naming this connection (closed, or reused): a futex
    /// word, so that a recovery waiting out a retry's delay wakes when the program closes
    /// the fd, rather than sending later on a number that may name another socket.
    fds_released: AtomicU32,
    /// A recovery's helper thread working on one of this connection's fd numbers: the
    /// program's close of that number waits for it (`fd_hold`).
    fd_hold: fd_hold::FdHold,
    /// Threads waiting on `fds_released`: a close wakes them only when there are any (a
    /// futex call per closed connection otherwise).
    release_waiters: AtomicU32,
    /// Counts the requests whose answers the connection awaits, raised as each is recorded
    /// (before it leaves): a read whose checks found no answer due, made by one thread
    /// while another wrote a request, is judged if it got the start of that answer
    /// (`read::receive`).
    requests_recorded: AtomicU32,
    /// `State::wrote`, readable without the state's lock (set with it, never cleared): an
    /// event loop registers each connection for input after every request, and only a
    /// wait before the first write is looked at (`server_first`).
    written: AtomicBool,
    /// Our TLS session with the proxy on the socket, while it is there (TLS to the proxy).
    link: link_slot::LinkSlot,
    /// Set when a language hook's marker named this connection its own (`lang_hook`): the
    /// origin is then the hook's relay, and requests are https.
    relay: std::sync::OnceLock<lang_hook::Relay>,
    /// While a non-blocking program's connect to the proxy is pending: when it is due
    /// (`connecting`); 0 otherwise.
    connect_due: std::sync::atomic::AtomicU64,
    /// While the program waits for input before its first write: when that silence is
    /// judged (`server_first`, `connecting::begin_silence`); 0 otherwise.
    silence_due: std::sync::atomic::AtomicU64,
}

struct Writer {
    requests: RequestStream,
    /// Reused buffer for rewritten heads.
    head_out: Vec<u8>,
    /// Reused buffer for the Lunar lines of a head.
    lunar_out: Vec<u8>,
    /// The filter's verdict on the last request head (`request_route`).
    verdicts: request_route::VerdictMemo,
}

/// A closed connection's buffers serve the next one (`spares`).
impl Drop for Conn {
    fn drop(&mut self) {
        connecting::settle_all(self);
        let writer = self.writer.get_mut();
        let responses = self.responses.get_mut();
        spares::give(spares::Spares {
            request: writer.requests.take_buffer(),
            head_out: std::mem::take(&mut writer.head_out),
            lunar_out: std::mem::take(&mut writer.lunar_out),
            responses: responses.take_buffers(),
        });
    }
}

impl Conn {
    /// A connection to `original`, not (yet) diverted.
    pub fn new(
        original: SocketAddr,
        name: Option<std::sync::Arc<str>>,
        filter_diverts: bool,
        replay_cap: usize,
    ) -> Conn {
        let spares = spares::take();
        Conn {
            original,
            name,
            filter_diverts,
            identity: std::sync::OnceLock::new(),
            on_a_socket: false,
            family: libc::AF_INET,
            state: SpinLock::new(State::new()),
            writer: SpinLock::new(Writer {
                requests: RequestStream::with_buffer(spares.request),
                // Both are cleared at each use.
                head_out: spares.head_out,
                lunar_out: spares.lunar_out,
                verdicts: request_route::VerdictMemo::default(),
            }),
            responses: SpinLock::new(Responses::new(replay_cap, spares.responses)),
            recovery: Gate::new(),
            fds_released: AtomicU32::new(0),
            fd_hold: fd_hold::FdHold::new(),
            release_waiters: AtomicU32::new(0),
            requests_recorded: AtomicU32::new(0),
            written: AtomicBool::new(false),
            link: link_slot::LinkSlot::new(),
            relay: std::sync::OnceLock::new(),
            connect_due: std::sync::atomic::AtomicU64::new(0),
            silence_due: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// A request was recorded as awaiting its answer (before it leaves). SeqCst, as the
    /// load in `requests_recorded`: a read that got the answer sees the count raised.
    fn request_recorded(&self) {
        self.requests_recorded.fetch_add(1, Ordering::SeqCst);
    }

    fn requests_recorded(&self) -> u32 {
        self.requests_recorded.load(Ordering::SeqCst)
    }

    /// The program has written to this connection (`State::wrote`), without the lock.
    fn has_written(&self) -> bool {
        self.written.load(Ordering::Acquire)
    }

    /// An fd stopped naming this connection (`fdtable`): wakes a recovery waiting on it.
    pub(super) fn fd_released(&self) {
        // SeqCst on both sides (here and in `wait_while_fd_ours`): either this load sees
        // the waiter, or the waiter's load of the count sees this increment and its futex
        // wait returns at once.
        self.fds_released.fetch_add(1, Ordering::SeqCst);
        if self.release_waiters.load(Ordering::SeqCst) != 0 {
            crate::sync::futex_wake_all(&self.fds_released);
        }
    }

    /// Waits until `deadline`, in the kernel; false as soon as `fd` no longer names this
    /// connection (the program closed it: nothing may be sent on that number now).
    pub(super) fn wait_while_fd_ours(&self, fd: i32, deadline: std::time::Instant) -> bool {
        self.release_waiters.fetch_add(1, Ordering::SeqCst);
        let ours = self.wait_for_release(fd, deadline);
        self.release_waiters.fetch_sub(1, Ordering::SeqCst);
        ours
    }

    fn wait_for_release(&self, fd: i32, deadline: std::time::Instant) -> bool {
        loop {
            let seen = self.fds_released.load(Ordering::SeqCst);
            let ours = fdtable::get(fd)
                .is_some_and(|conn| std::ptr::eq(std::sync::Arc::as_ptr(&conn), self));
            if !ours {
                return false;
            }
            if crate::sync::futex_wait_while(&self.fds_released, seen, Some(deadline))
                == crate::sync::WaitEnd::TimedOut
            {
                return true;
            }
        }
    }

    /// A connection to `original` (as `new`) on the program's socket of address family
    /// `family`, shared.
    pub fn on_socket(
        original: SocketAddr,
        name: Option<std::sync::Arc<str>>,
        filter_diverts: bool,
        replay_cap: usize,
        family: libc::c_int,
    ) -> std::sync::Arc<Conn> {
        // Built in its shared allocation: `Arc::new` of a `Conn` built first copied its
        // ~1.1 KiB from the stack to the heap, at every new connection.
        let mut shared = std::sync::Arc::<Conn>::new_uninit();
        let place = std::sync::Arc::get_mut(&mut shared).expect("not shared yet");
        let conn = place.write(Conn::new(original, name, filter_diverts, replay_cap));
        conn.on_a_socket = true;
        conn.family = family;
        // SAFETY: written just above.
        unsafe { shared.assume_init() }
    }

    /// A placeholder that marks one of our own fds (`tls::probe`): passed through.
    pub fn for_probe() -> Conn {
        let conn = Conn::new(SocketAddr::from(([0, 0, 0, 0], 0)), None, false, 0);
        conn.enter(Phase::Passthrough(Route::Origin));
        conn
    }

    /// A copy of the connection's state.
    pub fn state(&self) -> State {
        *self.state.lock()
    }

    pub fn phase(&self) -> Phase {
        self.state.lock().phase
    }

    /// Changes the phase to `to` (a change the table in `state` allows; a bug otherwise).
    fn enter(&self, to: Phase) {
        self.change(|_| to);
    }

    /// Changes the phase to what `next` makes of the current one. The recovery gate
    /// follows: raised on entering `Recovering`, lowered (waking the program's waiting
    /// threads) on leaving it.
    fn change(&self, next: impl FnOnce(Phase) -> Phase) {
        let mut state = self.state.lock();
        let from = state.phase;
        let to = next(from);
        if !from.may_become(to) {
            // A bug of ours: the table in `state` says which changes exist.
            log::warn!("internal: phase change {from:?} -> {to:?} is not in the table");
            debug_assert!(false, "{from:?} -> {to:?}");
        }
        state.phase = to;
        match (
            matches!(from, Phase::Recovering(_)),
            matches!(to, Phase::Recovering(_)),
        ) {
            (false, true) => self.recovery.raise(),
            (true, false) => self.recovery.lower(),
            _ => {}
        }
    }

    /// Records what a move that ended at `route` means for the phase.
    fn moved(&self, route: Route) {
        self.change(|phase| phase.after_move(route));
    }

    /// What a decision about a failure needs to know beyond the state (`decide::Facts`).
    fn facts(&self, fd: i32) -> decide::Facts {
        let responses = self.responses.lock();
        decide::Facts {
            replayable: responses.inflight.replayable() && responses.tracker.at_message_boundary(),
            tls_movable: self.is_https() && tls_handoff::can_take_over(fd),
            real_tls_followed: false,
        }
    }

    /// The program has written to this connection: it found the socket writable, so a
    /// connect it did not wait for is no longer pending (`connecting`), and a wait for
    /// input before it says nothing of the protocol any more (`server_first`).
    fn note_written(&self) {
        let mut state = self.state.lock();
        if !state.wrote {
            state.wrote = true;
            self.written.store(true, Ordering::Release);
            connecting::settle_all(self);
        }
    }

    /// The program's TLS session on this socket became virtual: what it writes is the
    /// plaintext of an https request. `tls`: what the TLS layer answers for it
    /// (`tls_handoff`), registered before the connection counts as https.
    pub fn mark_https(&self, tls: &'static TlsHandoff) {
        tls.register();
        self.state.lock().https = true;
    }

    pub fn is_https(&self) -> bool {
        self.state.lock().https
    }

    fn scheme(&self) -> lunar_headers::Scheme {
        if self.is_https() || self.relay.get().is_some() {
            lunar_headers::Scheme::Https
        } else {
            lunar_headers::Scheme::Http
        }
    }

    /// Whether a TLS session on this socket may become virtual: the socket is at the proxy
    /// with its requests followed, and nothing was written yet.
    pub fn can_carry_virtual_tls(&self) -> bool {
        let state = self.state();
        matches!(state.phase, Phase::Proxied(_)) && !state.wrote && !state.https
    }

    /// Whether a real TLS session starting on this socket at the origin may be followed
    /// (its plaintext shown to `tls_plain`), so that a later request can bring it to the
    /// proxy: the socket went direct at connect only because of the failsafe (the filter
    /// diverts it), and nothing was written yet.
    pub fn can_follow_real_tls(&self) -> bool {
        let state = self.state();
        matches!(state.phase, Phase::Direct) && !state.wrote && !state.https && self.filter_diverts
    }

    /// The program's own real TLS session on this socket is followed from now on: its
    /// plaintext is https, and the TLS layer owns the socket (`tls`: as for `mark_https`).
    pub fn follow_real_tls(&self, tls: &'static TlsHandoff) {
        tls.register();
        self.state.lock().https = true;
        self.enter(Phase::TlsOwned);
    }

    /// Where the socket is (or is going).
    pub fn peer(&self) -> Route {
        self.phase().route()
    }

    /// True when the program's view of the peer differs from the socket's: what
    /// `getpeername` must hide.
    pub fn is_diverted(&self) -> bool {
        // A hook's connection at the origin is at the hook's relay, on loopback.
        self.phase().diverted() || self.relay.get().is_some()
    }

    /// Where a move to the origin connects: the program's destination, or for a
    /// language hook's connection its relay (`lang_hook`).
    fn origin_address(&self) -> SocketAddr {
        self.relay
            .get()
            .map_or(self.original, lang_hook::Relay::address)
    }

    /// Whether `fd` is still the socket this connection was made on (one fstat). A
    /// program can close an fd behind our back (`fclose`, glibc-internal closes, raw
    /// syscalls we do not see) and get the number back for a file, a pipe or another
    /// socket: then `fd` is forgotten (this connection stays for other fds that share it)
    /// and must be left alone. Checked where acting on a wrong fd would hurt: before each
    /// request head, before the first read, before a move; never on the untracked path.
    pub fn still_ours(&self, fd: i32) -> bool {
        if !self.on_a_socket {
            return true;
        }
        let ours = match Identity::of(fd) {
            Some(now) => *self.identity.get_or_init(|| now) == now,
            None => false,
        };
        if ours {
            self.state.lock().identity_checked = true;
            return true;
        }
        log::debug!(
            "fd {fd} is no longer the socket to {}: left alone",
            self.label()
        );
        fdtable::remove_conn(fd, self);
        false
    }

    /// `still_ours`, checked before the program's first read unless a check since the
    /// connect already found the socket ours, or the program wrote on it through us (a
    /// send of ours that found no socket there forgot the fd: see `lost_fd`).
    fn still_a_socket(&self, fd: i32) -> bool {
        let known = {
            let state = self.state.lock();
            state.identity_checked || state.wrote
        };
        known || self.still_ours(fd)
    }

    /// `name:port` when the program resolved a name, else `ip:port`: for log lines.
    pub fn label(&self) -> outcome::Label<'_> {
        outcome::Label {
            original: self.original,
            name: self.name.as_deref(),
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
        self.state.force_unlock();
        self.writer.force_unlock();
        self.responses.force_unlock();
        self.link.after_fork_in_child();
        self.fd_hold.after_fork_in_child();
        // A recovery thread of the parent does not exist here: what it would have resent
        // is lost, and the child's reads get the kernel's answers.
        let mut state = self.state.lock();
        if let Phase::Recovering(route) = state.phase {
            state.phase = Phase::Passthrough(route);
        }
        drop(state);
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
    let check = match conn.phase() {
        // Reads through us on a socket a real TLS session owns are rare: check each.
        Phase::TlsOwned => conn.still_ours(fd),
        Phase::Passthrough(_) => true,
        _ => conn.still_a_socket(fd),
    };
    if !check {
        return real();
    }
    // Over TLS to the proxy, what the program reads is our session's plaintext.
    // One copy of the read path for every hook: `real` differs between them, the rest not.
    let mut wire = || conn.recv_app(fd, buffer, flags).unwrap_or_else(&mut real);
    read::receive(conn, fd, flags, buffer, handshake_holds, &mut wire)
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
