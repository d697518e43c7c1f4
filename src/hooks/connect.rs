//! Where connections begin: `connect`, and the calls that hand out fds (a new fd number may
//! be one we tracked before it was closed behind our back), and `getpeername`.

use super::tracked;
use crate::conn::{self, fdtable, Connected};
use crate::guard::{shielded, Reentry};
use crate::sys;
use libc::{c_int, sockaddr, socklen_t};

/// # Safety
/// As connect(2).
#[no_mangle]
pub unsafe extern "C-unwind" fn connect(
    fd: c_int,
    address: *const sockaddr,
    len: socklen_t,
) -> c_int {
    // SAFETY: the program's own call.
    let real = || unsafe { sys::connect(fd, address, len) };
    let Some(_inside) = Reentry::enter() else {
        return real();
    };
    // Our work (a connect to the proxy, which says EINPROGRESS on the way) must not show
    // in errno when the program's connect succeeds.
    let saved = sys::errno();
    let result = shielded(
        || {
            // SAFETY: connect(2)'s contract on `address`.
            #[cfg(feature = "panic-probe")]
            unsafe {
                crate::guard::panic_probe(address, len)
            };
            // SAFETY: connect(2)'s contract on `address`.
            match unsafe { conn::connect(fd, address, len, crate::tls::drivable) } {
                Connected::Done(result) => result,
                Connected::Real(why) => {
                    if log::log_enabled!(log::Level::Debug) {
                        if let Some(line) = why.debug_line() {
                            log::debug!("{line}");
                        }
                    }
                    real()
                }
            }
        },
        real,
    );
    if result == 0 {
        sys::set_errno(saved);
    }
    result
}

/// # Safety
/// As socket(2).
#[no_mangle]
pub unsafe extern "C-unwind" fn socket(domain: c_int, kind: c_int, protocol: c_int) -> c_int {
    // SAFETY: the program's own call.
    let fd = unsafe { sys::socket(domain, kind, protocol) };
    fdtable::made_socket(fd, sys::socket::is_tcp_stream(domain, kind, protocol));
    fd
}

/// # Safety
/// As accept(2). Accepted sockets are inbound: never tracked.
#[no_mangle]
pub unsafe extern "C-unwind" fn accept(
    fd: c_int,
    address: *mut sockaddr,
    len: *mut socklen_t,
) -> c_int {
    // SAFETY: the program's own call.
    let new_fd = unsafe { sys::accept(fd, address, len) };
    fdtable::handed_out(new_fd);
    new_fd
}

/// # Safety
/// As accept4(2).
#[no_mangle]
pub unsafe extern "C-unwind" fn accept4(
    fd: c_int,
    address: *mut sockaddr,
    len: *mut socklen_t,
    flags: c_int,
) -> c_int {
    // SAFETY: the program's own call.
    let new_fd = unsafe { sys::accept4(fd, address, len, flags) };
    fdtable::handed_out(new_fd);
    new_fd
}

/// # Safety
/// As getpeername(2). A diverted socket reports where the program connected.
#[no_mangle]
pub unsafe extern "C-unwind" fn getpeername(
    fd: c_int,
    address: *mut sockaddr,
    len: *mut socklen_t,
) -> c_int {
    // SAFETY: the program's own call.
    let real = || unsafe { sys::getpeername(fd, address, len) };
    if !fdtable::maybe_tracked(fd) || address.is_null() || len.is_null() {
        return real();
    }
    let Some(conn) = tracked(fd) else {
        return real();
    };
    let saved = sys::errno();
    let shown =
        Reentry::enter().and_then(|_inside| shielded(|| conn::peer_to_show(&conn, fd), || None));
    sys::set_errno(saved);
    match shown {
        Some((storage, full)) => {
            // SAFETY: getpeername(2)'s contract: `len` is readable and writable and
            // `address` has room for *len bytes; we copy at most that and report the full size.
            unsafe {
                let room = (*len as usize).min(full as usize);
                std::ptr::copy_nonoverlapping(
                    (&storage as *const libc::sockaddr_storage).cast::<u8>(),
                    address.cast::<u8>(),
                    room,
                );
                *len = full;
            }
            0
        }
        _ => real(),
    }
}

/// # Safety
/// As getsockopt(2). A program learns how its non-blocking connect ended from SO_ERROR: a
/// proxy that accepted and then reset shows there first, and is a proxy failure like any.
#[no_mangle]
pub unsafe extern "C-unwind" fn getsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    value: *mut libc::c_void,
    len: *mut socklen_t,
) -> c_int {
    // SAFETY: the program's own call.
    let rc = unsafe { sys::getsockopt(fd, level, name, value, len) };
    if !fdtable::maybe_tracked(fd)
        || rc != 0
        || level != libc::SOL_SOCKET
        || name != libc::SO_ERROR
        || value.is_null()
    {
        return rc;
    }
    let Some(conn) = tracked(fd) else { return rc };
    // SAFETY: SO_ERROR succeeded, so `value` holds a c_int.
    let error = unsafe { *(value as *mut c_int) };
    if error == 0 {
        return rc;
    }
    let Some(_inside) = Reentry::enter() else {
        return rc;
    };
    let saved = sys::errno();
    let seen = shielded(|| conn::connect_error_seen(&conn, fd, error), || error);
    sys::set_errno(saved);
    // SAFETY: as above.
    unsafe { *(value as *mut c_int) = seen };
    rc
}
