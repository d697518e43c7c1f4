//! Waiting for sockets. Observed only, to notice a program that waits to read from a
//! diverted socket before it ever wrote (a server-speaks-first protocol, see
//! `conn::reads_before_writing`); the wait itself is libc's, untouched.

use super::tracked;
use crate::guard::Reentry;
use crate::{conn, fdtable, sys};
use libc::{c_int, fd_set, nfds_t, pollfd, sigset_t, timespec, timeval};

fn note_input_wait(fd: c_int) {
    if let Some(conn) = tracked(fd) {
        if let Some(_inside) = Reentry::enter() {
            let saved = sys::errno();
            crate::guard::shielded(|| conn::reads_before_writing(&conn, fd), || ());
            sys::set_errno(saved);
        }
    }
}

/// # Safety
/// `fds` points to `count` pollfds, as for poll(2).
unsafe fn scan_pollfds(fds: *const pollfd, count: nfds_t) {
    if fds.is_null() || !fdtable::any_tracked() {
        return;
    }
    // SAFETY: poll(2)'s contract.
    let entries = unsafe { std::slice::from_raw_parts(fds, count as usize) };
    for entry in entries {
        if entry.events & libc::POLLIN != 0 && entry.events & libc::POLLOUT == 0 {
            note_input_wait(entry.fd);
        }
    }
}

/// # Safety
/// As select(2): each non-null set holds `count` bits.
unsafe fn scan_fd_sets(count: c_int, read: *const fd_set, write: *const fd_set) {
    if read.is_null() || !fdtable::any_tracked() {
        return;
    }
    for fd in 0..count.clamp(0, libc::FD_SETSIZE as c_int) {
        // SAFETY: fd < FD_SETSIZE and the sets are the program's valid fd_sets.
        let reading = unsafe { libc::FD_ISSET(fd, read) };
        // SAFETY: as above.
        let writing = !write.is_null() && unsafe { libc::FD_ISSET(fd, write) };
        if reading && !writing {
            note_input_wait(fd);
        }
    }
}

/// After a wait: a diverted socket that reports a hang-up or error before the program
/// wrote anything lost its proxy (accepted, then reset). It moves to the original
/// destination, and the program is shown that connection's readiness instead.
///
/// # Safety
/// `fds` points to `count` pollfds, as for poll(2); `ready` is what the wait returned.
unsafe fn review_pollfds(fds: *mut pollfd, count: nfds_t, ready: c_int) -> c_int {
    if ready <= 0 || fds.is_null() || !fdtable::any_tracked() {
        return ready;
    }
    // SAFETY: poll(2)'s contract.
    let entries = unsafe { std::slice::from_raw_parts_mut(fds, count as usize) };
    let mut ready = ready;
    for entry in entries.iter_mut() {
        if entry.revents & (libc::POLLHUP | libc::POLLERR) == 0 {
            continue;
        }
        let Some(conn) = tracked(entry.fd) else {
            continue;
        };
        let Some(_inside) = Reentry::enter() else {
            continue;
        };
        let saved = sys::errno();
        let moved = crate::guard::shielded(|| conn::proxy_hung_up(&conn, entry.fd), || false);
        if moved {
            let mut fresh = pollfd {
                fd: entry.fd,
                events: entry.events,
                revents: 0,
            };
            // SAFETY: one valid pollfd, no waiting.
            unsafe { sys::poll(&mut fresh, 1, 0) };
            if fresh.revents == 0 {
                ready -= 1;
            }
            entry.revents = fresh.revents;
        }
        sys::set_errno(saved);
    }
    ready
}

/// # Safety
/// As poll(2).
#[no_mangle]
pub unsafe extern "C" fn poll(fds: *mut pollfd, count: nfds_t, timeout: c_int) -> c_int {
    // SAFETY: the program's own arguments.
    unsafe {
        scan_pollfds(fds, count);
        let ready = sys::poll(fds, count, timeout);
        review_pollfds(fds, count, ready)
    }
}

/// # Safety
/// As ppoll(2).
#[no_mangle]
pub unsafe extern "C" fn ppoll(
    fds: *mut pollfd,
    count: nfds_t,
    timeout: *const timespec,
    mask: *const sigset_t,
) -> c_int {
    // SAFETY: the program's own arguments.
    unsafe {
        scan_pollfds(fds, count);
        let ready = sys::ppoll(fds, count, timeout, mask);
        review_pollfds(fds, count, ready)
    }
}

/// # Safety
/// As select(2).
#[no_mangle]
pub unsafe extern "C" fn select(
    count: c_int,
    read: *mut fd_set,
    write: *mut fd_set,
    except: *mut fd_set,
    timeout: *mut timeval,
) -> c_int {
    // SAFETY: the program's own arguments.
    unsafe {
        scan_fd_sets(count, read, write);
        sys::select(count, read, write, except, timeout)
    }
}

/// # Safety
/// As pselect(2).
#[no_mangle]
pub unsafe extern "C" fn pselect(
    count: c_int,
    read: *mut fd_set,
    write: *mut fd_set,
    except: *mut fd_set,
    timeout: *const timespec,
    mask: *const sigset_t,
) -> c_int {
    // SAFETY: the program's own arguments.
    unsafe {
        scan_fd_sets(count, read, write);
        sys::pselect(count, read, write, except, timeout, mask)
    }
}
