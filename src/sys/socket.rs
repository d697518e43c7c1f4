//! Sockets through libc's own functions: connecting with a time bound, for our own sockets
//! and for the program's (moved) ones; dissolving a connection; waiting for readiness.

use crate::addr;
use crate::sys;
use libc::c_int;
use std::net::SocketAddr;
use std::time::Instant;

pub use super::own_socket::OwnSocket;

/// Waits until `fd` is ready for `events`, or fails with ETIMEDOUT at `deadline`.
pub fn wait_for(fd: c_int, events: i16, deadline: Instant) -> Result<(), i32> {
    wait_for_events(fd, events, deadline).map(|_| ())
}

/// `wait_for`, returning the events the kernel reported.
fn wait_for_events(fd: c_int, events: i16, deadline: Instant) -> Result<i16, i32> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(libc::ETIMEDOUT);
        }
        let mut poll = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        let millis = left.as_millis().clamp(1, i32::MAX as u128) as c_int;
        match sys::poll_one::poll_one(&mut poll, millis) {
            n if n > 0 => return Ok(poll.revents),
            0 => {}
            _ if sys::errno() == libc::EINTR => {}
            _ => return Err(sys::errno()),
        }
    }
}

/// The peer the kernel has for `fd`, if it is a connected IP socket.
pub fn peer_of(fd: c_int) -> Option<SocketAddr> {
    // SAFETY: zeroed sockaddr_storage is a valid out-buffer of its full size.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let out = (&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr>();
    // SAFETY: `out` has room for `len` bytes.
    if unsafe { sys::getpeername(fd, out, &mut len) } != 0 {
        return None;
    }
    // SAFETY: the kernel wrote `len` bytes of an address into `storage`.
    unsafe { addr::from_c(out, len) }
}

/// The address family of a socket made for `target`.
pub fn family_of(target: SocketAddr) -> c_int {
    if target.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    }
}

/// `IPPROTO_MPTCP`: a multipath TCP stream, which carries HTTP as TCP does.
const IPPROTO_MPTCP: c_int = 262;

/// Whether `fd` is a TCP (or multipath TCP) stream socket. One `getsockopt`: only IPv4 and
/// IPv6 stream sockets have these protocols, so the family need not be asked; a connect
/// says it with its address (an address of the other family fails that connect anyway).
pub fn is_tcp(fd: c_int) -> bool {
    matches!(
        socket_option(fd, libc::SO_PROTOCOL),
        Some(libc::IPPROTO_TCP | IPPROTO_MPTCP)
    )
}

/// Whether `socket(domain, kind, protocol)` makes what `is_tcp` asks the kernel about.
pub fn is_tcp_stream(domain: c_int, kind: c_int, protocol: c_int) -> bool {
    // The type's low bits; SOCK_NONBLOCK and SOCK_CLOEXEC are flags above them.
    const TYPE_MASK: c_int = 0xf;
    matches!(domain, libc::AF_INET | libc::AF_INET6)
        && kind & TYPE_MASK == libc::SOCK_STREAM
        && matches!(protocol, 0 | libc::IPPROTO_TCP | IPPROTO_MPTCP)
}

/// Connects `fd` (a socket of address `family`) to `target` within `timeout_ms`, whatever
/// the socket's blocking mode, and leaves the mode as it found it. On error the socket is
/// left unconnected (a timed-out attempt is dissolved), ready for another connect.
pub fn connect_bounded(
    fd: c_int,
    family: c_int,
    target: SocketAddr,
    timeout_ms: u64,
) -> Result<(), i32> {
    connect_bounded_in_mode(fd, family, target, timeout_ms, status_flags(fd))
}

/// The socket's file status flags (`F_GETFL`; negative when that failed), read once so
/// that a caller answering as the program's own connect would needs no second `fcntl`.
pub fn status_flags(fd: c_int) -> c_int {
    // SAFETY: F_GETFL takes no argument.
    unsafe { sys::fcntl(fd, libc::F_GETFL, 0) }
}

/// The blocking mode `flags` (from `status_flags`) say.
pub fn mode_of(flags: c_int) -> Mode {
    match flags >= 0 && flags & libc::O_NONBLOCK != 0 {
        true => Mode::NonBlocking,
        false => Mode::Blocking,
    }
}

/// `connect_bounded` for a socket whose status flags the caller read (`status_flags`).
pub fn connect_bounded_in_mode(
    fd: c_int,
    family: c_int,
    target: SocketAddr,
    timeout_ms: u64,
    flags: c_int,
) -> Result<(), i32> {
    // A blocking connect cannot be bounded otherwise; the flag is restored before the
    // program can see this socket again (it is inside its own call).
    let blocking_again = BlockingAgain::if_blocking(fd, flags);
    let result = connect_nonblocking(fd, family, target, timeout_ms);
    drop(blocking_again);
    if let Err(errno) = result {
        undo_failed_connect(fd, errno);
    }
    result
}

/// The program's blocking socket, made non-blocking for our bounded connect: its flags
/// are restored when this is dropped, at the connect's end or when the program's thread is
/// cancelled inside it (a cancellation's unwind runs drops).
struct BlockingAgain {
    fd: c_int,
    flags: c_int,
}

impl BlockingAgain {
    /// Makes `fd` non-blocking when `flags` (from `status_flags`) say it blocks.
    fn if_blocking(fd: c_int, flags: c_int) -> Option<BlockingAgain> {
        if flags < 0 || flags & libc::O_NONBLOCK != 0 {
            return None;
        }
        let nonblocking = (flags | libc::O_NONBLOCK) as libc::c_ulong;
        // SAFETY: F_SETFL with flags read by the caller.
        unsafe { sys::fcntl(fd, libc::F_SETFL, nonblocking) };
        Some(BlockingAgain { fd, flags })
    }
}

impl Drop for BlockingAgain {
    fn drop(&mut self) {
        // SAFETY: restores the flags the caller read.
        unsafe { sys::fcntl(self.fd, libc::F_SETFL, self.flags as libc::c_ulong) };
    }
}

/// After our connect on the program's socket failed with `errno`: dissolves whatever it
/// left (`disconnect`), unless the socket was connected already or its connect is under
/// way (EISCONN, EALREADY: the program's own connection, which its connect fails on too),
/// which is left as it is.
pub fn undo_failed_connect(fd: c_int, errno: c_int) {
    if !matches!(errno, libc::EISCONN | libc::EALREADY) {
        disconnect(fd);
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Blocking,
    NonBlocking,
}

fn connect_nonblocking(
    fd: c_int,
    family: c_int,
    target: SocketAddr,
    timeout_ms: u64,
) -> Result<(), i32> {
    let deadline = Instant::now() + std::time::Duration::from_millis(timeout_ms);
    if connect_start(fd, family, target, deadline)? {
        return Ok(());
    }
    connect_finish(fd, deadline)
}

/// Starts connecting a non-blocking socket: `true` when already connected, `false` when
/// the connect is under way (finish it with `connect_finish`). EALREADY is ours under way
/// only after our own attempt was interrupted; at the first attempt it is the program's
/// own connect, still under way, which the program's connect fails on too.
pub fn connect_start(
    fd: c_int,
    family: c_int,
    target: SocketAddr,
    deadline: Instant,
) -> Result<bool, i32> {
    let mut interrupted = false;
    loop {
        let rc = connect_addr(fd, family, target);
        if rc == 0 {
            return Ok(true);
        }
        match sys::errno() {
            libc::EINTR => interrupted = true,
            libc::EINPROGRESS => return Ok(false),
            libc::EALREADY if interrupted => return Ok(false),
            // The previous association may still be closing after AF_UNSPEC.
            libc::EBUSY if Instant::now() < deadline => kernel_refused_pause(),
            errno => return Err(errno),
        }
    }
}

/// connect(2) of `fd`, a socket of `family`, to `target`: one call, its errno left as
/// the kernel set it. An IPv4 target on an AF_INET6 socket is reached by its v4-mapped
/// address, which a socket the program made IPv6-only refuses (ENETUNREACH; Ruby makes
/// each of its AF_INET6 sockets so): the option is turned off then, as only the library's
/// own connect needs (an unconnected socket takes the change), and the call made again.
pub fn connect_addr(fd: c_int, family: c_int, target: SocketAddr) -> c_int {
    let (storage, len) = addr::to_c(target, family);
    // SAFETY: storage/len form a valid address of the socket's family.
    let call =
        || unsafe { sys::connect(fd, (&storage as *const libc::sockaddr_storage).cast(), len) };
    let rc = call();
    let v4_mapped = family == libc::AF_INET6 && target.is_ipv4();
    if rc == 0 || !v4_mapped || sys::errno() != libc::ENETUNREACH {
        return rc;
    }
    match super::v4_mapped::allow(fd) {
        true => call(),
        false => {
            sys::set_errno(libc::ENETUNREACH);
            rc
        }
    }
}

/// `connect_start` on a socket of either mode: a blocking one is made non-blocking for
/// the call alone, and its connect goes on under way with the program's flags back.
pub fn connect_start_in_any_mode(
    fd: c_int,
    family: c_int,
    target: SocketAddr,
    deadline: Instant,
) -> Result<bool, i32> {
    let _blocking_again = BlockingAgain::if_blocking(fd, status_flags(fd));
    connect_start(fd, family, target, deadline)
}

/// Waits for a connect under way to succeed or fail.
pub fn connect_finish(fd: c_int, deadline: Instant) -> Result<(), i32> {
    let revents = wait_for_events(fd, libc::POLLOUT, deadline)?;
    // Writable with no error or hang-up: connected (a failed connect leaves its error
    // pending, which poll always reports as POLLERR). Only then is SO_ERROR not needed.
    if revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) == 0
        && revents & libc::POLLOUT != 0
    {
        return Ok(());
    }
    match socket_option(fd, libc::SO_ERROR) {
        Some(0) => Ok(()),
        Some(error) => Err(error),
        None => Err(sys::errno()),
    }
}

/// An integer option of the socket level; `None` when the call fails. Reading SO_ERROR
/// takes (clears) the pending error.
pub fn socket_option(fd: c_int, name: c_int) -> Option<c_int> {
    int_option(fd, libc::SOL_SOCKET, name)
}

/// An integer option of `level`; `None` when the call fails.
pub fn int_option(fd: c_int, level: c_int, name: c_int) -> Option<c_int> {
    let mut value: c_int = 0;
    let mut len = std::mem::size_of::<c_int>() as libc::socklen_t;
    // SAFETY: value/len describe a c_int-sized buffer.
    let rc =
        unsafe { sys::getsockopt(fd, level, name, (&mut value as *mut c_int).cast(), &mut len) };
    (rc == 0).then_some(value)
}

/// Dissolves the socket's association (verified on Linux: the same fd can connect again,
/// keeping its epoll registrations, flags and options). Dissolving an established
/// connection leaves ECONNRESET pending on the socket, which a poller would report as
/// EPOLLERR and the program's next read would return: it is taken here, at once.
///
/// Linux refuses (EBUSY) while another thread sleeps in a call on the socket (a blocking
/// read of the program's, or our wait for the proxy's answer); we move sockets when their
/// peer failed, which wakes such sleepers at once, so the refusal is retried for a moment.
pub fn disconnect(fd: c_int) {
    // SAFETY: sockaddr with AF_UNSPEC is the documented way to dissolve an association.
    let mut unspec: libc::sockaddr = unsafe { std::mem::zeroed() };
    unspec.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
    let give_up = Instant::now() + std::time::Duration::from_secs(1);
    loop {
        // SAFETY: a valid sockaddr of its own size.
        let rc = unsafe {
            sys::connect(
                fd,
                &unspec,
                std::mem::size_of::<libc::sockaddr>() as libc::socklen_t,
            )
        };
        if rc == 0 || sys::errno() != libc::EBUSY || Instant::now() >= give_up {
            break;
        }
        kernel_refused_pause();
    }
    socket_option(fd, libc::SO_ERROR);
}

/// The kernel gives no wake-up for "the other sleeper left the socket": a short pause
/// (a tenth of a millisecond) before asking again, only after it refused.
fn kernel_refused_pause() {
    std::thread::yield_now();
    let pause = libc::timespec {
        tv_sec: 0,
        tv_nsec: 100_000,
    };
    // SAFETY: a valid timespec; an early wake-up only makes us ask sooner.
    unsafe { libc::nanosleep(&pause, std::ptr::null_mut()) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_streams_are_told_from_their_socket_arguments() {
        let stream = libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
        for (domain, kind, protocol, tcp) in [
            (libc::AF_INET, libc::SOCK_STREAM, 0, true),
            (libc::AF_INET6, stream, libc::IPPROTO_TCP, true),
            (libc::AF_INET, stream, IPPROTO_MPTCP, true),
            (libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_SCTP, false),
            (libc::AF_INET, libc::SOCK_DGRAM, 0, false),
            (libc::AF_INET6, libc::SOCK_SEQPACKET, 0, false),
            (libc::AF_UNIX, libc::SOCK_STREAM, 0, false),
        ] {
            assert_eq!(
                is_tcp_stream(domain, kind, protocol),
                tcp,
                "{domain} {kind} {protocol}"
            );
            // SAFETY: plain socket(2); the fd is closed below.
            let fd = unsafe { libc::socket(domain, kind, protocol) };
            if fd >= 0 {
                assert_eq!(
                    is_tcp(fd),
                    tcp,
                    "the kernel agrees: {domain} {kind} {protocol}"
                );
                // SAFETY: our own fd.
                unsafe { libc::close(fd) };
            }
        }
    }
}
