//! Keeping the host program safe from us: re-entrancy, panics and errno.

use crate::sys::thread_cancel;
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};

thread_local! {
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// Marks this thread as running library code until dropped, so hooks reached from our
/// own work (logging, DNS, allocation in libc) take the real path.
pub struct Reentry(());

impl Reentry {
    /// `None` when this thread is already inside the library, or its thread-locals are
    /// gone (thread exit): the caller must pass the call through.
    pub fn enter() -> Option<Reentry> {
        INSIDE
            // `then`, not `then_some`: a guard built eagerly for a nested call would be
            // dropped at once and clear the outer call's mark.
            .try_with(|inside| (!inside.replace(true)).then(|| Reentry(())))
            .ok()
            .flatten()
    }
}

impl Reentry {
    /// Whether this thread is inside the library's own work (or its thread-locals are
    /// gone): a hook reached now, from a signal handler of the program's that interrupted
    /// that work or from a library we call, must take the real path, since the work may
    /// hold a lock the hook's logic would take.
    pub fn inside() -> bool {
        INSIDE.try_with(Cell::get).unwrap_or(true)
    }
}

impl Drop for Reentry {
    fn drop(&mut self) {
        let _ = INSIDE.try_with(|inside| inside.set(false));
    }
}

/// Runs library logic for a hook. A panic never crosses into C (it would abort the host):
/// it is logged and `fallback` decides what the program sees. A cancellation of the
/// thread (`pthread_cancel`) at a cancellation point inside `work` is caught below the
/// panic catch, which would abort on it, and finished here, outside it.
pub fn shielded<R>(work: impl FnOnce() -> R, fallback: impl FnOnce() -> R) -> R {
    quiet_panics();
    match catch_unwind(AssertUnwindSafe(|| thread_cancel::catching(work))) {
        Ok(Ok(value)) => value,
        Ok(Err(cancelled)) => cancelled.resume(),
        Err(_) => {
            log::error!("internal error caught; this call is passed through");
            fallback()
        }
    }
}

/// std's default panic hook would write to the program's stderr, and with the program's
/// `RUST_BACKTRACE` set, symbolize a backtrace by reading the program's debug info. Ours
/// is one log line. Set at the first hook call that runs library logic (never at load);
/// the hook is our own std's, not the program's. A flag, not a `Once`: a `Once` another
/// thread was running at a `fork` never opens in the child, whose next hook would wait
/// forever (seen: a child hung in `connect`). The cost: a thread racing the first one
/// may panic before the hook is set and get std's one-line message.
fn quiet_panics() {
    static SET: AtomicBool = AtomicBool::new(false);
    if !SET.load(Ordering::Acquire) {
        set_quiet_panic_hook(&SET);
    }
}

/// Out of line: every hook call that runs library logic checks the flag, and falls
/// through once it is set.
#[cold]
#[inline(never)]
fn set_quiet_panic_hook(set: &AtomicBool) {
    if !set.swap(true, Ordering::AcqRel) {
        // Before the work, whose code (`thread_cancel`'s instances for each hook) the
        // profile places anywhere in the hot code.
        crate::sys::residency::fence_if_diverting();
        std::panic::set_hook(Box::new(|info| {
            let location = info.location().map(|at| (at.file(), at.line()));
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
                .unwrap_or("");
            log::error!("internal error at {location:?}: {message}");
        }));
    }
}

/// Test builds (`--features panic-probe`): a connect to port 9 panics inside the hook.
///
/// # Safety
/// As connect(2): `address` points to `len` readable bytes.
#[cfg(feature = "panic-probe")]
pub unsafe fn panic_probe(address: *const libc::sockaddr, len: libc::socklen_t) {
    // SAFETY: the caller's contract.
    let port = unsafe { crate::addr::from_c(address, len) }.map(|peer| peer.port());
    assert!(port != Some(9), "panic-probe: connect to port 9");
}

#[cfg(test)]
mod tests {
    use super::Reentry;

    #[test]
    fn inside_says_whether_the_thread_holds_the_mark() {
        assert!(!Reentry::inside());
        let mark = Reentry::enter().expect("first entry");
        assert!(Reentry::inside());
        drop(mark);
        assert!(!Reentry::inside());
    }

    #[test]
    fn a_nested_enter_keeps_the_outer_mark() {
        let outer = Reentry::enter().expect("first entry");
        assert!(Reentry::enter().is_none());
        assert!(
            Reentry::enter().is_none(),
            "still inside after a refused entry"
        );
        drop(outer);
        assert!(Reentry::enter().is_some());
    }
}
