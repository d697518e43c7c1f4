//! The program's waits: poll, ppoll, select, pselect, and epoll. A wait with no tracked
//! fd in the process is libc's own. Otherwise two things are seen to below: a wait for
//! input alone on a socket the program never wrote to (`conn::server_first`: a server
//! that speaks first), and a proxy's hang-up, reset or close before its answer, which is
//! hidden from the program while its wait goes on (`conn::hidden_hang_ups`). epoll_ctl
//! records which epoll instances watch a tracked fd (`watchers`), so that an event, known
//! by the program's data only, leads back to its fd. A wait made while this thread is
//! inside the library's own work (a signal handler of the program's, a library we call)
//! is libc's own too: that work may hold the locks the logic here takes.

use crate::conn::watchers;
use crate::conn::{self, fdtable};
use crate::guard::Reentry;
use crate::sys;
use libc::{c_int, epoll_event, fd_set, nfds_t, pollfd, sigset_t, timespec, timeval};

/// A wait's zero timeout: a look at what is ready now.
const NO_WAIT: timespec = timespec {
    tv_sec: 0,
    tv_nsec: 0,
};

/// # Safety
/// As poll(2).
#[no_mangle]
pub unsafe extern "C-unwind" fn poll(fds: *mut pollfd, count: nfds_t, timeout: c_int) -> c_int {
    if !fdtable::any_tracked() {
        // SAFETY: the program's own arguments.
        return unsafe { sys::poll(fds, count, timeout) };
    }
    // SAFETY: as above.
    unsafe { poll_with_tracked(fds, count, timeout) }
}

#[cold]
#[inline(never)]
unsafe fn poll_with_tracked(fds: *mut pollfd, count: nfds_t, timeout: c_int) -> c_int {
    if Reentry::inside() {
        // SAFETY: the program's own arguments.
        return unsafe { sys::poll(fds, count, timeout) };
    }
    // SAFETY: the program's own arguments, throughout.
    unsafe {
        pollfds_with_tracked(fds, count, timeout.into(), |look| {
            conn::poll_hiding_proxy_hang_ups(fds, count, if look { 0 } else { timeout })
        })
    }
}

/// The part of poll and ppoll a process with tracked fds needs: a wait for input on a
/// socket the program never wrote to is noted (`conn::server_first`), plaintext a virtual
/// session already holds is shown at once, else the program's own wait runs with the
/// proxy's hang-ups hidden. `wait(true)` only looks (no waiting); `wait(false)` is the
/// program's wait.
///
/// # Safety
/// As poll(2), for `fds` and `count`.
unsafe fn pollfds_with_tracked(
    fds: *mut pollfd,
    count: nfds_t,
    timeout_ms: i64,
    wait: impl Fn(bool) -> c_int,
) -> c_int {
    // SAFETY: the program's own arguments, throughout.
    unsafe {
        conn::note_input_waits_in_pollfds(fds, count, timeout_ms);
        if let Some(ready) = conn::poll_showing_plaintext(fds, count, || wait(true)) {
            return ready;
        }
    }
    wait(false)
}

/// # Safety
/// As ppoll(2).
#[no_mangle]
pub unsafe extern "C-unwind" fn ppoll(
    fds: *mut pollfd,
    count: nfds_t,
    timeout: *const timespec,
    mask: *const sigset_t,
) -> c_int {
    if !fdtable::any_tracked() {
        // SAFETY: the program's own arguments.
        return unsafe { sys::ppoll(fds, count, timeout, mask) };
    }
    // SAFETY: as above.
    unsafe { ppoll_with_tracked(fds, count, timeout, mask) }
}

#[cold]
#[inline(never)]
unsafe fn ppoll_with_tracked(
    fds: *mut pollfd,
    count: nfds_t,
    timeout: *const timespec,
    mask: *const sigset_t,
) -> c_int {
    if Reentry::inside() {
        // SAFETY: the program's own arguments.
        return unsafe { sys::ppoll(fds, count, timeout, mask) };
    }
    // SAFETY: the program's own arguments, throughout.
    unsafe {
        pollfds_with_tracked(fds, count, conn::timespec_ms(timeout), |look| {
            let timeout = if look { &NO_WAIT } else { timeout };
            conn::ppoll_hiding_proxy_hang_ups(fds, count, timeout, mask)
        })
    }
}

/// # Safety
/// As epoll_ctl(2).
#[no_mangle]
pub unsafe extern "C-unwind" fn epoll_ctl(
    epoll: c_int,
    op: c_int,
    fd: c_int,
    event: *mut epoll_event,
) -> c_int {
    // Nothing tracked, nothing to note: the call is libc's, a tail call (as in the waits,
    // a count taken before the call; only a program racing its own connect of this fd from
    // another thread could tell the difference).
    if !fdtable::any_tracked() {
        // SAFETY: the program's own arguments.
        return unsafe { sys::epoll_ctl(epoll, op, fd, event) };
    }
    // SAFETY: as above.
    unsafe { epoll_ctl_noting(epoll, op, fd, event) }
}

#[cold]
#[inline(never)]
unsafe fn epoll_ctl_noting(epoll: c_int, op: c_int, fd: c_int, event: *mut epoll_event) -> c_int {
    let record = watchers::record_for(fd, op);
    // A tracked socket's input registration asks for the peer's end too
    // (`watchers::events_to_register`): the kernel is given a copy of the program's event.
    let asked = match (op, &record) {
        // SAFETY: the program's `event`, which epoll_ctl(2) reads for ADD and MOD (a
        // pointer the kernel would refuse with EFAULT faults here instead: no program
        // relies on that).
        (libc::EPOLL_CTL_ADD | libc::EPOLL_CTL_MOD, Some(_)) => unsafe { event.as_ref() }.copied(),
        _ => None,
    };
    let mut registered = asked.map(|e| epoll_event {
        events: watchers::events_to_register(e.events),
        u64: e.u64,
    });
    let to_kernel = registered.as_mut().map_or(event, |e| e as *mut epoll_event);
    // SAFETY: the program's own arguments, or a copy of its event.
    let result = unsafe { sys::epoll_ctl(epoll, op, fd, to_kernel) };
    if result == 0 {
        // SAFETY: epoll_ctl accepted `event`: null only for EPOLL_CTL_DEL.
        let (events, data) = unsafe { event.as_ref() }.map_or((0, 0), |e| (e.events, e.u64));
        if let Some(record) = record {
            record.note(epoll, op, events, data);
        }
        if op != libc::EPOLL_CTL_DEL {
            conn::note_input_registration(fd, events);
        }
    }
    result
}

/// # Safety
/// As epoll_wait(2).
#[no_mangle]
pub unsafe extern "C-unwind" fn epoll_wait(
    epoll: c_int,
    events: *mut epoll_event,
    max: c_int,
    timeout: c_int,
) -> c_int {
    // SAFETY: the program's own arguments, throughout.
    unsafe { epoll_pwait_hook(epoll, events, max, timeout, std::ptr::null()) }
}

/// # Safety
/// As epoll_pwait(2).
#[no_mangle]
pub unsafe extern "C-unwind" fn epoll_pwait(
    epoll: c_int,
    events: *mut epoll_event,
    max: c_int,
    timeout: c_int,
    mask: *const sigset_t,
) -> c_int {
    // SAFETY: the program's own arguments.
    unsafe { epoll_pwait_hook(epoll, events, max, timeout, mask) }
}

/// `epoll_wait` and `epoll_pwait`, inlined into each (not a call through the PLT to our
/// exported `epoll_pwait`).
///
/// # Safety
/// As epoll_pwait(2).
#[inline(always)]
unsafe fn epoll_pwait_hook(
    epoll: c_int,
    events: *mut epoll_event,
    max: c_int,
    timeout: c_int,
    mask: *const sigset_t,
) -> c_int {
    if !fdtable::any_tracked() {
        // SAFETY: the program's own arguments.
        return unsafe { sys::epoll_pwait(epoll, events, max, timeout, mask) };
    }
    // SAFETY: as above.
    unsafe { epoll_pwait_with_tracked(epoll, events, max, timeout, mask) }
}

#[cold]
#[inline(never)]
unsafe fn epoll_pwait_with_tracked(
    epoll: c_int,
    events: *mut epoll_event,
    max: c_int,
    timeout: c_int,
    mask: *const sigset_t,
) -> c_int {
    if Reentry::inside() {
        // SAFETY: the program's own arguments.
        return unsafe { sys::epoll_pwait(epoll, events, max, timeout, mask) };
    }
    // SAFETY: the program's own arguments, throughout.
    unsafe {
        epoll_with_tracked(epoll, events, max, |look| {
            let timeout = if look { 0 } else { timeout };
            conn::epoll_pwait_hiding_proxy_hang_ups(epoll, events, max, timeout, mask)
        })
    }
}

/// The part of the epoll waits a process with tracked fds needs: plaintext a virtual
/// session already holds is shown at once, else the program's own wait runs with the
/// proxy's hang-ups hidden. `wait(true)` only looks; `wait(false)` is the program's wait.
///
/// # Safety
/// As epoll_wait(2), for `events` and `max`.
unsafe fn epoll_with_tracked(
    epoll: c_int,
    events: *mut epoll_event,
    max: c_int,
    wait: impl Fn(bool) -> c_int,
) -> c_int {
    // SAFETY: the program's own arguments.
    match unsafe { conn::epoll_showing_plaintext(epoll, events, max, || wait(true)) } {
        Some(ready) => ready,
        None => wait(false),
    }
}

/// # Safety
/// As epoll_pwait2(2).
#[no_mangle]
pub unsafe extern "C-unwind" fn epoll_pwait2(
    epoll: c_int,
    events: *mut epoll_event,
    max: c_int,
    timeout: *const timespec,
    mask: *const sigset_t,
) -> c_int {
    if !fdtable::any_tracked() {
        // SAFETY: the program's own arguments.
        return unsafe { sys::epoll_pwait2(epoll, events, max, timeout, mask) };
    }
    // SAFETY: as above.
    unsafe { epoll_pwait2_with_tracked(epoll, events, max, timeout, mask) }
}

#[cold]
#[inline(never)]
unsafe fn epoll_pwait2_with_tracked(
    epoll: c_int,
    events: *mut epoll_event,
    max: c_int,
    timeout: *const timespec,
    mask: *const sigset_t,
) -> c_int {
    if Reentry::inside() {
        // SAFETY: the program's own arguments.
        return unsafe { sys::epoll_pwait2(epoll, events, max, timeout, mask) };
    }
    // SAFETY: the program's own arguments, throughout.
    unsafe {
        epoll_with_tracked(epoll, events, max, |look| {
            let timeout = if look { &NO_WAIT } else { timeout };
            conn::epoll_pwait2_hiding_proxy_hang_ups(epoll, events, max, timeout, mask)
        })
    }
}

/// # Safety
/// As select(2).
#[no_mangle]
pub unsafe extern "C-unwind" fn select(
    count: c_int,
    read: *mut fd_set,
    write: *mut fd_set,
    except: *mut fd_set,
    timeout: *mut timeval,
) -> c_int {
    // SAFETY: the program's own arguments, throughout.
    unsafe {
        if !fdtable::any_tracked() {
            return sys::select(count, read, write, except, timeout);
        }
        select_tracked(count, read, write, except, timeout)
    }
}

/// Kept out of line so the untracked path above stays a load and a jump.
///
/// # Safety
/// As `select`.
#[cold]
#[inline(never)]
unsafe fn select_tracked(
    count: c_int,
    read: *mut fd_set,
    write: *mut fd_set,
    except: *mut fd_set,
    timeout: *mut timeval,
) -> c_int {
    // SAFETY: the program's own arguments, throughout.
    unsafe {
        if Reentry::inside() {
            return sys::select(count, read, write, except, timeout);
        }
        conn::note_input_waits_in_fd_sets(count, read, write, conn::timeval_ms(timeout));
        let look = || {
            let mut no_wait = libc::timeval {
                tv_sec: 0,
                tv_usec: 0,
            };
            sys::select(count, read, write, except, &mut no_wait)
        };
        if let Some(ready) = conn::select_showing_plaintext(count, read, look) {
            return ready;
        }
        conn::select_hiding_proxy_hang_ups(count, read, write, except, timeout)
    }
}

/// # Safety
/// As pselect(2).
#[no_mangle]
pub unsafe extern "C-unwind" fn pselect(
    count: c_int,
    read: *mut fd_set,
    write: *mut fd_set,
    except: *mut fd_set,
    timeout: *const timespec,
    mask: *const sigset_t,
) -> c_int {
    // SAFETY: the program's own arguments, throughout.
    unsafe {
        if !fdtable::any_tracked() {
            return sys::pselect(count, read, write, except, timeout, mask);
        }
        pselect_tracked(count, read, write, except, timeout, mask)
    }
}

/// Kept out of line so the untracked path above stays a load and a jump.
///
/// # Safety
/// As `pselect`.
#[cold]
#[inline(never)]
unsafe fn pselect_tracked(
    count: c_int,
    read: *mut fd_set,
    write: *mut fd_set,
    except: *mut fd_set,
    timeout: *const timespec,
    mask: *const sigset_t,
) -> c_int {
    // SAFETY: the program's own arguments, throughout.
    unsafe {
        if Reentry::inside() {
            return sys::pselect(count, read, write, except, timeout, mask);
        }
        conn::note_input_waits_in_fd_sets(count, read, write, conn::timespec_ms(timeout));
        let look = || sys::pselect(count, read, write, except, &NO_WAIT, mask);
        if let Some(ready) = conn::select_showing_plaintext(count, read, look) {
            return ready;
        }
        conn::pselect_hiding_proxy_hang_ups(count, read, write, except, timeout, mask)
    }
}
