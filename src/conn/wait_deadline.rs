//! How long a wait of the program's may go on: its own timeout, run again for what is
//! left of it when everything the wait returned was hidden (`hidden_hang_ups`), and
//! ended no later than a pending connect to the proxy is due (`connecting`), so that one
//! still under way then moves to its origin while the program's wait goes on.

use super::connecting;
use libc::{c_int, timespec, timeval};
use std::time::{Duration, Instant};

/// The end of a wait's timeout, for waiting again when every event it returned was hidden
/// (returning 0 would tell the program its timeout expired).
#[derive(Clone, Copy)]
pub(super) struct Deadline(Option<Instant>);

impl Deadline {
    /// This deadline, or `due` if that is sooner (`None`: no limit).
    pub(super) fn no_later_than(self, due: Option<Instant>) -> Deadline {
        let Some(due) = due else {
            return self;
        };
        Deadline(Some(self.0.map_or(due, |end| end.min(due))))
    }

    /// # Safety
    /// `timeout` is null or points to a timeval.
    pub(super) unsafe fn after_timeval(timeout: *const timeval) -> Self {
        // SAFETY: the caller's contract.
        let Some(timeout) = (unsafe { timeout.as_ref() }) else {
            return Deadline(None);
        };
        let span = Duration::new(
            timeout.tv_sec.max(0) as u64,
            (timeout.tv_usec.clamp(0, 999_999) * 1000) as u32,
        );
        Deadline(Some(Instant::now() + span))
    }

    pub(super) fn left_timeval(&self) -> Option<timeval> {
        self.left().map(|left| timeval {
            tv_sec: left.tv_sec,
            tv_usec: left.tv_nsec / 1000,
        })
    }

    fn after_ms(timeout_ms: c_int) -> Self {
        Deadline(
            (timeout_ms >= 0).then(|| Instant::now() + Duration::from_millis(timeout_ms as u64)),
        )
    }

    /// # Safety
    /// `timeout` is null or points to a timespec.
    unsafe fn after(timeout: *const timespec) -> Self {
        // SAFETY: the caller's contract.
        let Some(timeout) = (unsafe { timeout.as_ref() }) else {
            return Deadline(None);
        };
        let span = Duration::new(
            timeout.tv_sec.max(0) as u64,
            timeout.tv_nsec.clamp(0, 999_999_999) as u32,
        );
        Deadline(Some(Instant::now() + span))
    }

    pub(super) fn passed(&self) -> bool {
        self.0.is_some_and(|end| Instant::now() >= end)
    }

    fn left_ms(&self) -> c_int {
        match self.0 {
            None => -1,
            Some(end) => {
                let left = end.saturating_duration_since(Instant::now());
                left.as_micros().div_ceil(1000).min(c_int::MAX as u128) as c_int
            }
        }
    }

    fn left(&self) -> Option<timespec> {
        self.0.map(|end| {
            let left = end.saturating_duration_since(Instant::now());
            timespec {
                tv_sec: left.as_secs() as libc::time_t,
                tv_nsec: left.subsec_nanos() as libc::c_long,
            }
        })
    }
}

/// Runs a wait until it shows the program something, its timeout passes, or it fails.
/// `wait` gets the deadline (None on the first call: the program's own timeout) and
/// returns what the real call returned and what is left after our review.
fn wait_until_shown(
    deadline: Deadline,
    mut wait: impl FnMut(Option<&Deadline>) -> (c_int, c_int),
) -> c_int {
    if connecting::any() {
        return wait_with_connects_pending(deadline, wait);
    }
    let (ready, shown) = wait(None);
    if shown != 0 || ready <= 0 {
        return shown;
    }
    loop {
        if deadline.passed() {
            return 0;
        }
        let (ready, shown) = wait(Some(&deadline));
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
    mut wait: impl FnMut(Option<&Deadline>) -> (c_int, c_int),
) -> c_int {
    loop {
        let bounded = deadline.no_later_than(connecting::sweep_then_next_due_instant());
        let (ready, shown) = wait(Some(&bounded));
        if shown != 0 || ready < 0 || deadline.passed() {
            return shown;
        }
    }
}

/// `wait_until_shown` for calls whose timeout is in milliseconds (negative: forever);
/// `wait` gets the timeout to pass on, the program's own the first time.
pub(super) fn wait_until_shown_ms(
    timeout: c_int,
    mut wait: impl FnMut(c_int) -> (c_int, c_int),
) -> c_int {
    if connecting::any() {
        return wait_ms_with_connects_pending(timeout, wait);
    }
    wait_until_shown(Deadline::after_ms(timeout), |deadline| {
        wait(deadline.map_or(timeout, Deadline::left_ms))
    })
}

/// `wait_with_connects_pending` for calls whose timeout is in milliseconds (poll and the
/// epoll waits, an event loop's every turn): one clock read per wait, integer arithmetic.
#[inline(never)]
fn wait_ms_with_connects_pending(
    timeout: c_int,
    mut wait: impl FnMut(c_int) -> (c_int, c_int),
) -> c_int {
    const NS_PER_MS: u64 = 1_000_000;
    let mut now = connecting::now_ns();
    let end = u64::try_from(timeout)
        .ok()
        .map(|ms| now.saturating_add(ms * NS_PER_MS));
    loop {
        let until = match (end, connecting::sweep_then_next_due(now)) {
            (Some(end), Some(due)) => Some(end.min(due)),
            (end, due) => end.or(due),
        };
        let left_ms = until.map_or(-1, |until| {
            until
                .saturating_sub(now)
                .div_ceil(NS_PER_MS)
                .min(c_int::MAX as u64) as c_int
        });
        let (ready, shown) = wait(left_ms);
        if shown != 0 || ready < 0 {
            return shown;
        }
        now = connecting::now_ns();
        if end.is_some_and(|end| now >= end) {
            return 0;
        }
    }
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
    let deadline = unsafe { Deadline::after(timeout) };
    wait_until_shown(deadline, |deadline| match deadline.map(Deadline::left) {
        None => wait(timeout),
        Some(left) => wait(left.as_ref().map_or(std::ptr::null(), |t| t)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_connect_due_sooner_bounds_the_wait_and_a_later_one_does_not() {
        let after = |ms| Some(Instant::now() + Duration::from_millis(ms));
        let forever = Deadline(None);
        assert!(forever.no_later_than(None).0.is_none());
        let left = forever.no_later_than(after(300)).left_ms();
        assert!((290..=300).contains(&left), "{left}");
        let program = Deadline::after_ms(100);
        let left = program.no_later_than(after(5000)).left_ms();
        assert!((90..=100).contains(&left), "{left}");
        let left = program.no_later_than(after(20)).left_ms();
        assert!((10..=20).contains(&left), "{left}");
    }

    #[test]
    fn a_select_timeout_round_trips_through_the_deadline() {
        let asked = timeval {
            tv_sec: 2,
            tv_usec: 500_000,
        };
        // SAFETY: a valid timeval.
        let deadline = unsafe { Deadline::after_timeval(&asked) };
        let left = deadline.left_timeval().expect("a timeout");
        let micros = left.tv_sec * 1_000_000 + left.tv_usec;
        assert!((2_400_000..=2_500_000).contains(&micros), "{micros}");
        // SAFETY: null is "no timeout".
        let forever = unsafe { Deadline::after_timeval(std::ptr::null()) };
        assert!(forever.left_timeval().is_none());
    }
}
