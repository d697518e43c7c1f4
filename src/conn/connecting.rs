//! Connects to the proxy that a non-blocking program does not wait for. Its `connect`
//! answers EINPROGRESS at once, as the kernel's own would, and its event loop serves its
//! other connections while the proxy's handshake runs; how the connect ended reaches the
//! program as readiness. A refusal or reset is hidden where the program looks: its wait
//! (`hidden_hang_ups`), SO_ERROR or a repeated connect (`connect_error_seen`), its first
//! write (`decide`: a connection loss before any answer, replayed to the origin).
//!
//! A proxy that never answers (SYNs dropped) raises no event at all: each such connect is
//! due at the proxy's connect timeout, the program's waits end no later than the earliest
//! one due, and what is still connecting then moves to its original destination
//! (`sweep_then_next_due`), as a blocking connect's bounded wait would have done.
//!
//! A wait for input alone before the program's first write is due the same way
//! (`begin_silence`): a protocol whose server speaks first is judged when it is due, in
//! whichever thread waits then, unless the program wrote meanwhile (`server_first`).

use super::{fdtable, Conn};
use crate::sys;
use libc::{c_int, pollfd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Connections whose connect to the proxy is pending (their `connect_due` set), and
/// silences waiting to be judged (`silence_due` set).
static PENDING: AtomicUsize = AtomicUsize::new(0);
/// No later than the earliest due time of those (`now_ns`'s clock);
/// `NONE_DUE` when none is known. A sweep recomputes it from the connections it finds.
static EARLIEST: AtomicU64 = AtomicU64::new(NONE_DUE);
const NONE_DUE: u64 = u64::MAX;

/// The connect of `conn` to the proxy is under way; it is due in `timeout_ms`.
pub(super) fn begin(conn: &Conn, timeout_ms: u64) {
    let due = now_ns().saturating_add(timeout_ms.saturating_mul(1_000_000));
    conn.connect_due.store(due, Ordering::SeqCst);
    PENDING.fetch_add(1, Ordering::SeqCst);
    EARLIEST.fetch_min(due, Ordering::SeqCst);
}

/// `conn` waits for input before its first write: its silence is judged in `after_ms`,
/// unless it is settled first. A later wait does not put it off.
pub(super) fn begin_silence(conn: &Conn, after_ms: u64) {
    let due = now_ns().saturating_add(after_ms.saturating_mul(1_000_000));
    let began = conn
        .silence_due
        .compare_exchange(0, due, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok();
    if began {
        PENDING.fetch_add(1, Ordering::SeqCst);
        EARLIEST.fetch_min(due, Ordering::SeqCst);
    }
}

/// The connect of `conn` is no longer pending (it moved, or the connection is gone).
/// True for the one caller that ended it.
pub(super) fn settle(conn: &Conn) -> bool {
    settle_due(&conn.connect_due)
}

/// The silence of `conn` is no longer to be judged (it wrote, moved, or is gone). True
/// for the one caller that ended it.
pub(super) fn settle_silence(conn: &Conn) -> bool {
    settle_due(&conn.silence_due)
}

/// Nothing of `conn` is due any more: it wrote, moved, or is gone.
pub(super) fn settle_all(conn: &Conn) {
    settle(conn);
    settle_silence(conn);
}

fn settle_due(due: &AtomicU64) -> bool {
    if due.load(Ordering::Relaxed) == 0 {
        return false;
    }
    let ended = due.swap(0, Ordering::SeqCst) != 0;
    if ended {
        PENDING.fetch_sub(1, Ordering::SeqCst);
    }
    ended
}

/// Whether the connect of `conn` to the proxy is pending.
pub(super) fn is_pending(conn: &Conn) -> bool {
    conn.connect_due.load(Ordering::SeqCst) != 0
}

/// Whether any connect to the proxy is pending, or a silence to be judged: the waits'
/// one load.
#[inline]
pub fn any() -> bool {
    PENDING.load(Ordering::Relaxed) != 0
}

/// Moves each connect past its due time (`now`: the caller's reading of `now_ns`), then
/// says when the next one is due, on the same clock (`None`: none known). Nothing but a
/// load while nothing is pending.
pub fn sweep_then_next_due(now: u64) -> Option<u64> {
    if !any() {
        return None;
    }
    let earliest = EARLIEST.load(Ordering::SeqCst);
    if earliest == NONE_DUE {
        return None;
    }
    if earliest <= now {
        sweep(now);
    }
    match EARLIEST.load(Ordering::SeqCst) {
        NONE_DUE => None,
        due => Some(due),
    }
}

/// Moves each connect past its due time and still under way to its original
/// destination (`proxy_connect_timed_out`), and judges each silence past its due time
/// (`server_first::silence_due`), in the program's thread.
pub fn sweep_due() {
    if any() {
        let _ = sweep_then_next_due(now_ns());
    }
}

#[cold]
#[inline(never)]
fn sweep(now: u64) {
    // A connect or a silence begun meanwhile lowers the estimate again (`begin`,
    // `begin_silence`), or is found below: its connection is in the table before.
    EARLIEST.store(NONE_DUE, Ordering::SeqCst);
    for (fd, conn) in fdtable::tracked() {
        if past_due(&conn.connect_due, now) && settle(&conn) && still_connecting(&conn, fd) {
            super::connect::proxy_connect_timed_out(&conn, fd);
        }
        if past_due(&conn.silence_due, now) && settle_silence(&conn) {
            super::server_first::silence_due(&conn, fd);
        }
    }
}

/// Whether `due` is set and past `now`; one set and still ahead counts for `EARLIEST`.
fn past_due(due: &AtomicU64, now: u64) -> bool {
    match due.load(Ordering::SeqCst) {
        0 => false,
        due if due > now => {
            EARLIEST.fetch_min(due, Ordering::SeqCst);
            false
        }
        _ => true,
    }
}

/// Neither connected nor failed: no event yet. A connection that wrote was connected.
fn still_connecting(conn: &Conn, fd: c_int) -> bool {
    if conn.state().wrote {
        return false;
    }
    let mut probe = pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no waiting.
    unsafe { sys::poll(&mut probe, 1, 0) == 0 }
}

/// The clock of the due times: `sys::monotonic_ns`.
pub fn now_ns() -> u64 {
    sys::monotonic_ns()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::time::Duration;

    fn conn() -> Conn {
        let original: SocketAddr = "192.0.2.1:80".parse().unwrap();
        Conn::new(original, None, true, 1024)
    }

    // One test: the counters are the process's.
    #[test]
    fn pending_until_settled_once_and_due_bounds_the_wait() {
        let before = PENDING.load(Ordering::SeqCst);
        let first = conn();
        let second = conn();
        begin(&first, 60_000);
        begin(&second, 120_000);
        assert!(any());
        assert_eq!(PENDING.load(Ordering::SeqCst), before + 2);
        let now = now_ns();
        let due = sweep_then_next_due(now).expect("a connect is pending");
        let left = Duration::from_nanos(due - now);
        assert!(left <= Duration::from_secs(60), "{left:?}");
        assert!(left > Duration::from_secs(50), "{left:?}");
        assert!(settle(&first));
        assert!(!settle(&first), "settled twice");
        assert_eq!(PENDING.load(Ordering::SeqCst), before + 1);
        // Dropping a connection whose connect is pending ends it.
        drop(second);
        assert_eq!(PENDING.load(Ordering::SeqCst), before);
        // Due at once, and its connection in no fd's slot (held elsewhere): the sweep
        // forgets the estimate, so that the waits are not cut short over and over.
        let third = conn();
        begin(&third, 0);
        assert_eq!(
            EARLIEST.load(Ordering::SeqCst),
            third.connect_due.load(Ordering::SeqCst)
        );
        assert_eq!(sweep_then_next_due(now_ns()), None);
        assert!(settle(&third));
        assert_eq!(PENDING.load(Ordering::SeqCst), before);
        // A silence: begun once however many waits note it, due no later than asked, and
        // ended by a settle or by the connection's end.
        let quiet = conn();
        begin_silence(&quiet, 60_000);
        begin_silence(&quiet, 1);
        assert_eq!(PENDING.load(Ordering::SeqCst), before + 1);
        let now = now_ns();
        let due = sweep_then_next_due(now).expect("a silence is due");
        assert!(Duration::from_nanos(due - now) > Duration::from_secs(50));
        assert!(settle_silence(&quiet));
        assert!(!settle_silence(&quiet), "settled twice");
        assert_eq!(PENDING.load(Ordering::SeqCst), before);
        let gone = conn();
        begin_silence(&gone, 60_000);
        drop(gone);
        assert_eq!(PENDING.load(Ordering::SeqCst), before);
    }
}
