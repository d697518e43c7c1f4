//! IPv4 through an AF_INET6 socket: the library reaches an IPv4 proxy from a program's
//! AF_INET6 socket by the proxy's v4-mapped address (`addr::to_c`), which a socket made
//! IPv6-only refuses (ENETUNREACH; Ruby makes each of its AF_INET6 sockets so).

use super::socket::int_option;
use libc::c_int;

/// Turns IPV6_V6ONLY off on `fd` (an unconnected socket takes the change): true when it
/// was on and now is off.
pub fn allow(fd: c_int) -> bool {
    if int_option(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY) != Some(1) {
        return false;
    }
    let off: c_int = 0;
    // SAFETY: a c_int option value of its own size; setsockopt is not one of our hooks.
    let set = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            (&off as *const c_int).cast(),
            std::mem::size_of::<c_int>() as libc::socklen_t,
        )
    };
    set == 0
}

#[cfg(test)]
mod tests {
    use super::super::socket::connect_addr;
    use crate::sys;
    use libc::c_int;

    #[test]
    fn an_ipv6_only_socket_reaches_an_ipv4_proxy() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy = listener.local_addr().unwrap();
        // SAFETY: plain socket(2) and setsockopt(2) on a socket this test owns.
        let fd = unsafe {
            let fd = libc::socket(libc::AF_INET6, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(fd >= 0);
            let on: c_int = 1;
            let size = std::mem::size_of::<c_int>() as libc::socklen_t;
            let option = (&on as *const c_int).cast();
            let set = libc::setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, option, size);
            assert_eq!(set, 0);
            fd
        };
        assert_eq!(
            connect_addr(fd, libc::AF_INET6, proxy),
            0,
            "{}",
            sys::errno()
        );
        let (_accepted, from) = listener.accept().unwrap();
        assert!(from.ip().is_loopback());
        // SAFETY: the test's own fd.
        unsafe { libc::close(fd) };
    }
}
