//! `connect`: the moment a socket is chosen for the proxy or left alone.

use super::decide::{decide, Action, Event};
use super::outcome::{self, Connected, NotDiverted};
use super::{fdtable, Conn, Phase};
use crate::policy::filter::{Destination, Verdict};
use crate::runtime::{self, Route, Runtime};
use crate::sys::socket::{
    connect_addr, connect_bounded_in_mode, connect_start, disconnect, family_of, is_tcp, mode_of,
    status_flags, undo_failed_connect, Mode,
};
use crate::{addr, names, sys};
use libc::{c_int, sockaddr, socklen_t};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const HTTPS_PORT: u16 = 443;

/// The program's `connect`. `https_drivable` (`tls::drivable`, asked only for port 443):
/// whether a TLS library the layer above can drive is loaded. `Connected::Real`: the
/// caller makes the program's own connect.
///
/// # Safety
/// `address` must point to `len` readable bytes, as for connect(2).
pub unsafe fn connect(
    fd: c_int,
    address: *const sockaddr,
    len: socklen_t,
    https_drivable: fn() -> bool,
) -> Connected {
    use NotDiverted::*;
    // SAFETY: forwarded from our caller's contract.
    let Some(target) = (unsafe { addr::from_c(address, len) }) else {
        fdtable::release(fd);
        return Connected::Real(NotInet);
    };
    if let Some(conn) = fdtable::get(fd) {
        if conn.original == target {
            return repeated_connect(fd, &conn, address, len);
        }
    }
    fdtable::release(fd);
    let Some(runtime) = runtime::get() else {
        return Connected::Real(Inert);
    };
    if !runtime.intercepts_port(target.port()) || runtime.proxy.is_proxy(target) {
        return Connected::Real(NotIntercepted);
    }
    if !fdtable::take_born_tcp(fd) && !is_tcp(fd) {
        return Connected::Real(NotTcp);
    }
    // The socket's family is the connect address's (before a v4-mapped address is
    // canonicalised): a socket of the other family fails the program's connect, and ours.
    let family = family_of(target);
    let original = addr::canonical(target);
    let direct = |why| {
        Connected::Real(Direct {
            original,
            name: None,
            why,
        })
    };
    // Node's static OpenSSL, Java's JSSE, Go: TLS we cannot reach stays end to end.
    // ... unless a language hook dresses them as plaintext (`lang_hook`).
    if target.port() == HTTPS_PORT && !super::lang_hook::armed() && !https_drivable() {
        return direct(outcome::Direct::NoDrivableTls);
    }
    let name = names::lookup(original.ip());
    let direct = |why| {
        Connected::Real(Direct {
            original,
            name: name.clone(),
            why,
        })
    };
    // Its I/O may be submitted to the ring, past our hooks (`bypass`).
    if super::io_uring_in_use() {
        return direct(outcome::Direct::IoUring);
    }
    let destination = Destination {
        ip: original.ip(),
        name: name.as_deref(),
    };
    let verdict = runtime.judge(&destination, None);
    let (route, why) = runtime.route(verdict);
    let conn = Conn::on_socket(
        target,
        name.clone(),
        matches!(verdict, Verdict::Divert(_)),
        runtime.config.replay_max_bytes,
        family,
    );
    if !fdtable::insert(fd, conn.clone()) {
        return direct(outcome::Direct::NoMemoryToTrack(fd));
    }
    let Route::Proxy(proxy) = route else {
        conn.enter(Phase::Direct);
        return direct(outcome::Direct::Route(why));
    };
    if let Some(missing) = runtime.proxy.tls_library_missing() {
        conn.enter(Phase::Direct);
        super::link::warn_once_no_tls_library(missing);
        return direct(outcome::Direct::NoTlsForProxy);
    }
    let flags = status_flags(fd);
    let mode = mode_of(flags);
    let timeout_ms = runtime.config.connect_timeout_ms;
    let reached = if mode == Mode::NonBlocking && connect_unwaited_suits(runtime, target.port()) {
        connect_unwaited(fd, &conn, family, proxy, timeout_ms).map_err(Unreached::Connect)
    } else {
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        connect_bounded_in_mode(fd, family, proxy, timeout_ms, flags)
            .map_err(Unreached::Connect)
            .and_then(|()| {
                conn.secure(fd, proxy, runtime, deadline)
                    .map_err(Unreached::Link)
            })
    };
    match reached {
        Ok(()) => {
            log::debug!("{} -> proxy {proxy} ({why})", conn.label());
            conn.enter(Phase::Proxied(proxy));
            Connected::Done(connected_as_program_expects(mode))
        }
        // The socket's own error (an address of the wrong family; connected already, or
        // its own connect under way; not a socket, or not open: `take_born_tcp`'s number
        // reused behind our back): not the proxy failing; the program's own connect fails
        // as it would.
        Err(Unreached::Connect(errno)) if the_sockets_fault(errno) => {
            fdtable::remove(fd);
            Connected::Real(NotTcp)
        }
        Err(Unreached::Connect(errno)) => {
            connect_failed(&conn, runtime, proxy, errno);
            direct(outcome::Direct::ProxyConnectFailed)
        }
        Err(Unreached::Link(why)) => {
            link_failed(&conn, fd, runtime, &why);
            direct(outcome::Direct::ProxyConnectFailed)
        }
    }
}

/// Whether a connect's `errno` is about the socket, not about the peer.
fn the_sockets_fault(errno: c_int) -> bool {
    matches!(
        errno,
        libc::EAFNOSUPPORT
            | libc::EINVAL
            | libc::EISCONN
            | libc::EALREADY
            | libc::ENOTSOCK
            | libc::EBADF
    )
}

/// Why the proxy was not reached: its connect failed (errno), or our TLS link on it.
enum Unreached {
    Connect(c_int),
    Link(String),
}

/// Whether a non-blocking program's connect to the proxy may be left under way
/// (`connecting`). Not over TLS to the proxy (our handshake needs the connection up),
/// nor on the https port: a failure found after the program's TLS session began could
/// not always be hidden, and one found before, by the bounded wait, always can.
fn connect_unwaited_suits(runtime: &Runtime, port: u16) -> bool {
    port != HTTPS_PORT && runtime.proxy.tls_trust().is_none()
}

/// Starts the connect to the proxy and returns; the program's readiness tells the rest.
fn connect_unwaited(
    fd: c_int,
    conn: &Conn,
    family: c_int,
    proxy: SocketAddr,
    timeout_ms: u64,
) -> Result<(), c_int> {
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    match connect_start(fd, family, proxy, deadline) {
        Ok(true) => Ok(()),
        Ok(false) => {
            super::connecting::begin(conn, timeout_ms);
            Ok(())
        }
        Err(errno) => {
            undo_failed_connect(fd, errno);
            Err(errno)
        }
    }
}

/// The proxy's TLS link failed after its connect: the program's own connect to its
/// destination follows, on a socket that must not be at the proxy any more. Out of line,
/// as every failure's handling here: build.rs's layout keeps code that never runs while
/// the proxy is up away from the code a diverting process keeps resident.
#[cold]
#[inline(never)]
fn link_failed(conn: &Conn, fd: c_int, runtime: &Runtime, why: &str) {
    disconnect(fd);
    runtime.proxy_failed(why);
    conn.enter(Phase::Direct);
}

/// The connect to the proxy failed: the program's own connect follows.
#[cold]
#[inline(never)]
fn connect_failed(conn: &Conn, runtime: &Runtime, proxy: SocketAddr, errno: c_int) {
    let reason = std::io::Error::from_raw_os_error(errno);
    runtime.proxy_failed(&format!("connect to {proxy}: {reason}"));
    conn.enter(Phase::Direct);
}

/// A non-blocking program expects EINPROGRESS and then readiness; a blocking one, 0. The
/// connection to the proxy is already up, so readiness comes at once.
fn connected_as_program_expects(mode: Mode) -> c_int {
    match mode {
        Mode::NonBlocking => {
            sys::set_errno(libc::EINPROGRESS);
            -1
        }
        Mode::Blocking => 0,
    }
}

/// Programs that poll a non-blocking connect by calling connect again get the kernel's
/// answer (EALREADY, EISCONN) for the socket's real peer. A pending connect to the proxy
/// that failed is the proxy failing (`connect_error_seen`); one past its due time moves
/// (`connecting::sweep_due`): a program polling so (Perl's IO::Socket) never waits where
/// the hang-ups are hidden.
#[inline(never)]
fn repeated_connect(fd: c_int, conn: &Conn, address: *const sockaddr, len: socklen_t) -> Connected {
    super::connecting::sweep_due();
    // SAFETY: the program's own arguments, unchanged.
    let at_origin = || Connected::Done(unsafe { sys::connect(fd, address, len) });
    let Route::Proxy(proxy) = conn.peer() else {
        return at_origin();
    };
    let result = connect_addr(fd, conn.family, proxy);
    let errno = sys::errno();
    if result == 0 || matches!(errno, libc::EALREADY | libc::EINPROGRESS | libc::EISCONN) {
        return Connected::Done(result);
    }
    match connect_error_seen(conn, fd, errno) {
        0 => at_origin(),
        error => {
            sys::set_errno(error);
            Connected::Done(-1)
        }
    }
}

/// A non-blocking program's connect to the proxy (`connecting`) was still under way at
/// its due time: the proxy is failing as a bounded connect's timeout would have found,
/// and the socket moves to the original destination before the program wrote anything.
#[cold]
#[inline(never)]
pub(super) fn proxy_connect_timed_out(conn: &Conn, fd: c_int) {
    let Some(runtime) = runtime::get() else {
        return;
    };
    if !conn.still_ours(fd) {
        return;
    }
    let _writer = conn.writer.lock();
    let Route::Proxy(proxy) = conn.peer() else {
        return;
    };
    let event = Event::ConnectErrorSeen {
        error: libc::ETIMEDOUT,
    };
    if decide(&conn.state(), conn.facts(fd), event) != Action::ConnectFailed {
        return;
    }
    let reason = std::io::Error::from_raw_os_error(libc::ETIMEDOUT);
    runtime.proxy_failed(&format!("connect to {proxy}: {reason}"));
    // A failed move leaves the socket unconnected: the program's wait then reports it as
    // a failed connect to its origin would be.
    let _ = super::recovery::leave_for_origin(conn, fd, runtime, "proxy connect failed");
}

/// The program reads SO_ERROR and finds `error`. Before it wrote anything, a reset or
/// refusal on a diverted socket is the proxy failing: the socket moves to the original
/// destination and the program sees the outcome of that connect instead.
pub fn connect_error_seen(conn: &Conn, fd: c_int, error: c_int) -> c_int {
    let event = Event::ConnectErrorSeen { error };
    let connecting = super::connecting::is_pending(conn);
    let ask = |conn: &Conn| decide(&conn.state(), conn.facts(fd), event);
    if ask(conn) == Action::Report(error) || !conn.still_ours(fd) {
        return error;
    }
    let Some(runtime) = runtime::get() else {
        return error;
    };
    let _writer = conn.writer.lock();
    // Another thread of the program may have met the failure first, while we waited.
    if !conn.is_diverted() {
        return 0;
    }
    let action = ask(conn);
    if action == Action::Report(error) {
        return error;
    }
    let reason = std::io::Error::from_raw_os_error(error);
    let (failure, why) = match conn.peer() {
        Route::Proxy(proxy) if connecting => (
            format!("connect to {proxy}: {reason}"),
            "proxy connect failed",
        ),
        _ => (
            format!("proxy connection lost before the request: {reason}"),
            "proxy connection lost",
        ),
    };
    runtime.proxy_failed(&failure);
    if action != Action::ConnectFailed {
        return error;
    }
    match super::recovery::leave_for_origin(conn, fd, runtime, why) {
        Ok(()) => 0,
        Err(errno) => errno,
    }
}

/// A TLS session is about to start on diverted `fd` for `server_name` (its SNI). When the
/// filter, judging that name, would not divert, the socket moves to the original
/// destination now, before any byte left, and the session stays real. Returns whether
/// the socket still goes to the proxy.
pub fn settle_for_server_name(conn: &Conn, fd: c_int, server_name: &str) -> bool {
    let Some(runtime) = runtime::get() else {
        return conn.is_diverted();
    };
    let destination = Destination {
        ip: addr::canonical(conn.original).ip(),
        name: Some(server_name),
    };
    let verdict = runtime.judge(&destination, None);
    let event = Event::ServerName {
        diverted: matches!(verdict, Verdict::Divert(_)),
    };
    if decide(&conn.state(), conn.facts(fd), event) != Action::Move(Route::Origin) {
        return conn.is_diverted();
    }
    if !conn.still_ours(fd) {
        return false;
    }
    let _writer = conn.writer.lock();
    let (_, why) = runtime.route(verdict);
    log::debug!(
        "{} -> direct ({why}; TLS server name {server_name})",
        conn.label()
    );
    // A failed move leaves the socket unconnected: the handshake then fails as a connect
    // to the origin would have.
    let _ = conn.move_to(fd, Route::Origin, runtime);
    false
}

/// What `getpeername` on tracked `fd` should report instead of the kernel's answer: the
/// original destination of a diverted socket (its address and full length), if `fd` is
/// still that socket. Usually the kernel's own answer tells (the program's call, so no
/// system call is added): only our socket is connected to the proxy we moved it to.
/// Between peers (a move under way) the fstat identity check decides.
pub fn peer_to_show(conn: &Conn, fd: c_int) -> Option<(libc::sockaddr_storage, socklen_t)> {
    if !conn.is_diverted() {
        return None;
    }
    let at_our_proxy = match conn.peer() {
        Route::Proxy(proxy) => match sys::socket::peer_of(fd) {
            Some(peer) => addr::canonical(peer) == proxy,
            // Still connecting (a connect the program did not wait for): not connected,
            // as the kernel's own answer says.
            None if super::connecting::is_pending(conn) => return None,
            None => false,
        },
        Route::Origin => false,
    };
    if !at_our_proxy && !conn.still_ours(fd) {
        return None;
    }
    Some(addr::to_c(conn.original, conn.family))
}
