//! Socket addresses between C's `sockaddr` and `std::net::SocketAddr`.

use libc::{sockaddr, sockaddr_in, sockaddr_in6, sockaddr_storage, socklen_t, AF_INET, AF_INET6};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

/// Reads an AF_INET or AF_INET6 address; anything else is `None`.
///
/// # Safety
/// `addr` must point to `len` readable bytes (or be null).
pub unsafe fn from_c(addr: *const sockaddr, len: socklen_t) -> Option<SocketAddr> {
    if addr.is_null() || (len as usize) < std::mem::size_of::<libc::sa_family_t>() {
        return None;
    }
    // SAFETY: at least the family field is readable (checked above).
    let family = unsafe { (*addr).sa_family } as i32;
    match family {
        AF_INET if len as usize >= std::mem::size_of::<sockaddr_in>() => {
            // SAFETY: family and length say this is a sockaddr_in; read unaligned to be safe.
            let v4 = unsafe { std::ptr::read_unaligned(addr as *const sockaddr_in) };
            let ip = Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
            Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be(v4.sin_port)))
        }
        AF_INET6 if len as usize >= std::mem::size_of::<sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let v6 = unsafe { std::ptr::read_unaligned(addr as *const sockaddr_in6) };
            let ip = Ipv6Addr::from(v6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(v6.sin6_port),
                v6.sin6_flowinfo,
                v6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// A C address for `target`, in the family of the socket we will connect: an IPv4 target
/// on an AF_INET6 socket becomes its v4-mapped form.
pub fn to_c(target: SocketAddr, socket_family: i32) -> (sockaddr_storage, socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut storage: sockaddr_storage = unsafe { std::mem::zeroed() };
    let as_v6 = |ip: Ipv6Addr, port: u16, flow: u32, scope: u32, storage: &mut sockaddr_storage| {
        // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in6.
        let out = unsafe { &mut *(storage as *mut sockaddr_storage as *mut sockaddr_in6) };
        out.sin6_family = AF_INET6 as libc::sa_family_t;
        out.sin6_port = port.to_be();
        out.sin6_addr.s6_addr = ip.octets();
        out.sin6_flowinfo = flow;
        out.sin6_scope_id = scope;
        std::mem::size_of::<sockaddr_in6>() as socklen_t
    };
    let len = match target {
        SocketAddr::V4(v4) if socket_family == AF_INET6 => {
            as_v6(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0, &mut storage)
        }
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
            let out = unsafe { &mut *(&mut storage as *mut sockaddr_storage as *mut sockaddr_in) };
            out.sin_family = AF_INET as libc::sa_family_t;
            out.sin_port = v4.port().to_be();
            out.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
            std::mem::size_of::<sockaddr_in>() as socklen_t
        }
        SocketAddr::V6(v6) => as_v6(
            *v6.ip(),
            v6.port(),
            v6.flowinfo(),
            v6.scope_id(),
            &mut storage,
        ),
    };
    (storage, len)
}

/// The address with v4-mapped IPv6 turned back into IPv4, for comparing and logging.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => addr,
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for text in ["203.0.113.10:80", "[2001:db8::1]:8080"] {
            let addr: SocketAddr = text.parse().unwrap();
            let family = if addr.is_ipv4() { AF_INET } else { AF_INET6 };
            let (storage, len) = to_c(addr, family);
            // SAFETY: `storage` holds `len` bytes of the address just written.
            let back = unsafe { from_c(&storage as *const _ as *const sockaddr, len) };
            assert_eq!(back, Some(addr));
        }
    }

    #[test]
    fn v4_on_v6_socket_is_mapped() {
        let addr: SocketAddr = "127.0.0.1:8000".parse().unwrap();
        let (storage, len) = to_c(addr, AF_INET6);
        // SAFETY: `storage` holds `len` bytes of the address just written.
        let back = unsafe { from_c(&storage as *const _ as *const sockaddr, len) }.unwrap();
        assert!(back.is_ipv6());
        assert_eq!(canonical(back), addr);
    }
}
