//! How long a wait of the program's may go on: its own timeout, run again for what is
//! left of it when everything the wait returned was hidden (`hidden_hang_ups`), and
//! ended no later than a pending connect to the proxy is due (`connecting`), so that one
//! still under way then moves to its origin while the program's wait goes on.
//!
//! Times are integer nanoseconds on the clock of the connects' due times
//! (`connecting::now_ns`), read once per wait: a poll or epoll wait is an event loop's
//! every turn.

use super::connecting::{self, now_ns};
use libc::{c_int, timespec, timeval};

const NS_PER_MS: u64 = 1_000_000;
const NS_PER_SEC: u64 = 1_000_000_000;

/// The end of a wait's timeout (`None`: no limit), for waiting again when every event it
/// returned was hidden (returning 0 would tell the program its timeout expired).
#[derive(Clone, Copy)]
pub(super) struct Deadline(Option<u64>);

impl Deadline {
    /// `span` nanoseconds after `now` (`None`: no limit).
    fn after_ns(now: u64, span: Option<u64>) -> Self {
        Deadline(span.map(|span| now.saturating_add(span)))
    }

    fn after_ms(now: u64, timeout_ms: c_int) -> Self {
        Self::after_ns(now, u64::try_from(timeout_ms).ok().map(|ms| ms * NS_PER_MS))
    }

    /// # Safety
    /// `timeout` is null or points to a timespec.
    unsafe fn after(now: u64, timeout: *const timespec) -> Self {
        // SAFETY: the caller's contract.
        let span = unsafe { timeout.as_ref() }.map(|t| span_ns(t.tv_sec, t.tv_nsec, 1));
        Self::after_ns(now, span)
    }

    /// # Safety
    /// `timeout` is null or points to a timeval.
    pub(super) unsafe fn after_timeval(now: u64, timeout: *const timeval) -> Self {
        // SAFETY: the caller's contract.
        let span = unsafe { timeout.as_ref() }.map(|t| span_ns(t.tv_sec, t.tv_usec, 1000));
        Self::after_ns(now, span)
    }

    /// This deadline, or `due` if that is sooner (`None`: no limit).
    pub(super) fn no_later_than(self, due: Option<u64>) -> Deadline {
        match (self.0, due) {
            (Some(end), Some(due)) => Deadline(Some(end.min(due))),
            (end, due) => Deadline(end.or(due)),
        }
    }

    /// This deadline, bounded by the earliest pending connect's due time after those past
    /// it were moved (`connecting::sweep_then_next_due`).
    pub(super) fn bounded_by_connects(self, now: u64) -> Deadline {
        self.no_later_than(connecting::sweep_then_next_due(now))
    }

    pub(super) fn passed(&self, now: u64) -> bool {
        self.0.is_some_and(|end| now >= end)
    }

    /// Nanoseconds left at `now` (`None`: no limit).
    pub(super) fn left(&self, now: u64) -> Option<u64> {
        self.0.map(|end| end.saturating_sub(now))
    }
}

/// A timeout of `seconds` and `fraction` units of `unit_ns` (a timespec's or a timeval's),
/// in nanoseconds, out-of-range parts clamped (the real call reports them as invalid).
fn span_ns(seconds: libc::time_t, fraction: i64, unit_ns: u64) -> u64 {
    let fraction = fraction.clamp(0, (NS_PER_SEC / unit_ns) as i64 - 1) as u64;
    (seconds.max(0) as u64)
        .saturating_mul(NS_PER_SEC)
        .saturating_add(fraction * unit_ns)
}

/// What is left, in a poll's milliseconds: rounded up, -1 for no limit.
fn as_ms(left: Option<u64>) -> c_int {
    left.map_or(-1, |ns| {
        ns.div_ceil(NS_PER_MS).min(c_int::MAX as u64) as c_int
    })
}

fn as_timespec(ns: u64) -> timespec {
    timespec {
        tv_sec: (ns / NS_PER_SEC) as libc::time_t,
        tv_nsec: (ns % NS_PER_SEC) as libc::c_long,
    }
}

pub(super) fn as_timeval(ns: u64) -> timeval {
    timeval {
        tv_sec: (ns / NS_PER_SEC) as libc::time_t,
        tv_usec: (ns % NS_PER_SEC / 1000) as libc::suseconds_t,
    }
}

/// Runs a wait until it shows the program something, its timeout passes, or it fails.
/// `wait` gets what is left of the wait (`None` on the first call: the program's own
/// timeout; `Some(None)`: no limit) and returns what the real call returned and what is
/// left after our review.
fn wait_until_shown(
    deadline: Deadline,
    mut wait: impl FnMut(Option<Option<u64>>) -> (c_int, c_int),
) -> c_int {
    if connecting::any() {
        return wait_with_connects_pending(deadline, wait);
    }
    let (ready, shown) = wait(None);
    if shown != 0 || ready <= 0 {
        return shown;
    }
    loop {
        let now = now_ns();
        if deadline.passed(now) {
            return 0;
        }
        let (ready, shown) = wait(Some(deadline.left(now)));
        if shown != 0 || ready <= 0 {
            return shown;
        }
    }
}

/// `wait_until_shown` while a connect to the proxy is pending (`connecting`): each wait
/// ends no later than the earliest one is due, so that one still under way then moves to
/// its origin; the program's wait goes on for what is left of its own timeout.
#[inline(never)]
fn wait_with_connects_pending(
    deadline: Deadline,
    mut wait: impl FnMut(Option<Option<u64>>) -> (c_int, c_int),
) -> c_int {
    let mut now = now_ns();
    loop {
        let bounded = deadline.bounded_by_connects(now);
        let (ready, shown) = wait(Some(bounded.left(now)));
        if shown != 0 || ready < 0 {
            return shown;
        }
        now = now_ns();
        if deadline.passed(now) {
            return 0;
        }
    }
}

/// `wait_until_shown` for calls whose timeout is in milliseconds (negative: forever);
/// `wait` gets the timeout to pass on, the program's own the first time.
pub(super) fn wait_until_shown_ms(
    timeout: c_int,
    mut wait: impl FnMut(c_int) -> (c_int, c_int),
) -> c_int {
    wait_until_shown(Deadline::after_ms(now_ns(), timeout), |left| {
        wait(left.map_or(timeout, as_ms))
    })
}

/// The same for calls whose timeout is a timespec (null: forever).
///
/// # Safety
/// `timeout` is null or points to a timespec.
pub(super) unsafe fn wait_until_shown_timespec(
    timeout: *const timespec,
    mut wait: impl FnMut(*const timespec) -> (c_int, c_int),
) -> c_int {
    // SAFETY: the caller's contract.
    let deadline = unsafe { Deadline::after(now_ns(), timeout) };
    wait_until_shown(deadline, |left| match left {
        None => wait(timeout),
        Some(None) => wait(std::ptr::null()),
        Some(Some(ns)) => wait(&as_timespec(ns)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_connect_due_sooner_bounds_the_wait_and_a_later_one_does_not() {
        let now = 1_000 * NS_PER_SEC;
        let after = |ms: u64| Some(now + ms * NS_PER_MS);
        let forever = Deadline(None);
        assert!(forever.no_later_than(None).0.is_none());
        assert_eq!(as_ms(forever.left(now)), -1);
        assert_eq!(as_ms(forever.no_later_than(after(300)).left(now)), 300);
        let program = Deadline::after_ms(now, 100);
        assert_eq!(as_ms(program.no_later_than(after(5000)).left(now)), 100);
        assert_eq!(as_ms(program.no_later_than(after(20)).left(now)), 20);
        assert!(!program.passed(now + 99 * NS_PER_MS) && program.passed(now + 100 * NS_PER_MS));
        // Rounded up: a wait never ends before its deadline.
        assert_eq!(as_ms(Some(1)), 1);
        assert_eq!(as_ms(Some(0)), 0);
        assert_eq!(as_ms(Deadline::after_ms(now, -1).left(now)), -1);
    }

    #[test]
    fn a_select_timeout_round_trips_through_the_deadline() {
        let now = 7 * NS_PER_SEC;
        let asked = timeval {
            tv_sec: 2,
            tv_usec: 500_000,
        };
        // SAFETY: a valid timeval.
        let deadline = unsafe { Deadline::after_timeval(now, &asked) };
        let left = as_timeval(deadline.left(now).expect("a timeout"));
        assert_eq!((left.tv_sec, left.tv_usec), (2, 500_000));
        // SAFETY: null is "no timeout".
        let forever = unsafe { Deadline::after_timeval(now, std::ptr::null()) };
        assert!(forever.left(now).is_none());
        let asked = timespec {
            tv_sec: 1,
            tv_nsec: 250,
        };
        // SAFETY: a valid timespec.
        let deadline = unsafe { Deadline::after(now, &asked) };
        let left = as_timespec(deadline.left(now + 100).expect("a timeout"));
        assert_eq!((left.tv_sec, left.tv_nsec), (1, 150));
    }
}
