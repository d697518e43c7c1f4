//! select and pselect for the program: the same review as poll's and epoll's
//! (`hidden_hang_ups`), for a wait that cannot ask the kernel for the peer's end. A
//! diverted plain-http socket select reports readable is looked at once more
//! (`proxy_end_hidden`), and readiness that carried only records for our TLS session is
//! cleared; the wait goes on for the rest of the program's timeout when nothing is left.

use super::connecting;
use super::connecting::now_ns;
use super::hidden_hang_ups::{end_is_ours, hang_up_hidden, only_records_for_us, POLL_LOSS};
use super::wait_deadline::{as_timeval, wait_until_shown_timespec, Deadline};
use crate::sys;
use libc::{c_int, fd_set, pollfd, sigset_t, timespec, timeval};

/// select(2) for the program, without the proxy's hidden ends (`review_fd_sets`) and
/// readiness that carried only records for our TLS session, and ending no later than a
/// pending connect to the proxy is due (as `wait_until_shown`); `timeout` gets what is
/// left of it, as Linux's select writes it.
///
/// # Safety
/// As select(2).
pub unsafe fn select_hiding_proxy_hang_ups(
    count: c_int,
    read: *mut fd_set,
    write: *mut fd_set,
    except: *mut fd_set,
    timeout: *mut timeval,
) -> c_int {
    // SAFETY: the program's own arguments, throughout.
    unsafe {
        if read.is_null() && !connecting::any() {
            return sys::select(count, read, write, except, timeout);
        }
        let mut now = now_ns();
        let deadline = Deadline::after_timeval(now, timeout);
        let asked = FdSets::copy(read, write, except);
        let shown = loop {
            let mut left = deadline.bounded_by_connects(now).left(now).map(as_timeval);
            asked.restore(read, write, except);
            let wait_for = left
                .as_mut()
                .map_or(std::ptr::null_mut(), |t| t as *mut timeval);
            let ready = sys::select(count, read, write, except, wait_for);
            let shown = review_fd_sets(count, read, ready);
            now = now_ns();
            if shown != 0 || ready < 0 || deadline.passed(now) {
                break shown;
            }
        };
        if let (Some(timeout), Some(left)) = (timeout.as_mut(), deadline.left(now)) {
            *timeout = as_timeval(left);
        }
        shown
    }
}

/// pselect(2) for the program, as `select_hiding_proxy_hang_ups`.
///
/// # Safety
/// As pselect(2).
pub unsafe fn pselect_hiding_proxy_hang_ups(
    count: c_int,
    read: *mut fd_set,
    write: *mut fd_set,
    except: *mut fd_set,
    timeout: *const timespec,
    mask: *const sigset_t,
) -> c_int {
    // SAFETY: the program's own arguments, throughout.
    unsafe {
        if read.is_null() && !connecting::any() {
            return sys::pselect(count, read, write, except, timeout, mask);
        }
        let asked = FdSets::copy(read, write, except);
        wait_until_shown_timespec(timeout, |timeout| {
            asked.restore(read, write, except);
            let ready = sys::pselect(count, read, write, except, timeout, mask);
            (ready, review_fd_sets(count, read, ready))
        })
    }
}

/// The sets a select was asked with, for asking again.
struct FdSets([Option<fd_set>; 3]);

impl FdSets {
    /// # Safety
    /// Each pointer is null or a valid fd_set.
    unsafe fn copy(read: *const fd_set, write: *const fd_set, except: *const fd_set) -> FdSets {
        // SAFETY: the caller's contract.
        unsafe {
            FdSets([
                read.as_ref().copied(),
                write.as_ref().copied(),
                except.as_ref().copied(),
            ])
        }
    }

    /// # Safety
    /// As `copy`, with the same pointers.
    unsafe fn restore(&self, read: *mut fd_set, write: *mut fd_set, except: *mut fd_set) {
        for (set, asked) in [read, write, except].into_iter().zip(&self.0) {
            // SAFETY: the caller's contract: null or a valid fd_set.
            if let (Some(set), Some(asked)) = (unsafe { set.as_mut() }, asked) {
                *set = *asked;
            }
        }
    }
}

/// After select returned `ready`: read bits of sockets whose readiness was only records
/// for our TLS session, or the proxy's end we hid, are cleared. Returns how many bits are
/// left.
///
/// # Safety
/// `read` is null or a valid fd_set of `count` bits.
unsafe fn review_fd_sets(count: c_int, read: *mut fd_set, ready: c_int) -> c_int {
    if ready <= 0 || read.is_null() {
        return ready;
    }
    let mut shown = ready;
    for fd in 0..count.clamp(0, libc::FD_SETSIZE as c_int) {
        // SAFETY: fd < FD_SETSIZE, and `read` is valid.
        let readable = unsafe { libc::FD_ISSET(fd, read) };
        if readable && (only_records_for_us(fd) || proxy_end_hidden(fd)) {
            // SAFETY: as above.
            unsafe { libc::FD_CLR(fd, read) };
            shown -= 1;
        }
    }
    shown
}

/// select reported `fd` readable. select cannot ask for the peer's end as poll and epoll
/// do (`EndsAsked`, `watchers::events_to_register`): a diverted plain-http socket is
/// looked at once more, and when the readiness is the proxy's end (or failure) that
/// `hang_up_hidden` deals with, returns true (the bit is the program's no more). A
/// program that selects and then reads its blocking socket (Perl's LWP, with a timeout)
/// would otherwise read into the request's replay, past its own timeout.
fn proxy_end_hidden(fd: c_int) -> bool {
    if !end_is_ours(fd) {
        return false;
    }
    let saved = sys::errno();
    let mut now = pollfd {
        fd,
        events: libc::POLLIN | libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no waiting.
    let ended = unsafe { sys::poll(&mut now, 1, 0) } == 1 && now.revents & POLL_LOSS != 0;
    sys::set_errno(saved);
    ended && hang_up_hidden(fd)
}
