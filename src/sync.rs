//! Locks and waits that a forked child can reopen.
//!
//! `std::sync::Mutex` held by another thread at `fork` stays locked forever in the child.
//! `SpinLock` is a small futex mutex instead (Drepper's "Futexes are tricky", mutex 2):
//! it spins a few rounds, then sleeps in the kernel, so a thread that waits for another
//! holding it across a connect burns no CPU; and `force_unlock` lets the `pthread_atfork`
//! child handler reopen every lock the parent's other threads held (those threads do not
//! exist in the child).
//!
//! Lock rules: a `SpinLock` guards data, never a wait on the program's behalf that the
//! program's own timeouts or signals must be able to end (for those, `Gate`); non-blocking
//! program calls never wait for a lock held across a connect or a delay.

use crossbeam_utils::Backoff;
use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;
/// Locked, and a thread may be sleeping on it: unlocking must wake one.
const CONTENDED: u32 = 2;

pub struct SpinLock<T> {
    state: AtomicU32,
    value: UnsafeCell<T>,
}

// SAFETY: access to `value` is serialised by `state`.
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for SpinLock<T> {}

impl<T> SpinLock<T> {
    pub const fn new(value: T) -> Self {
        SpinLock {
            state: AtomicU32::new(UNLOCKED),
            value: UnsafeCell::new(value),
        }
    }

    pub fn lock(&self) -> SpinGuard<'_, T> {
        if self
            .state
            .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_contended();
        }
        SpinGuard { lock: self }
    }

    #[cold]
    fn lock_contended(&self) {
        let backoff = Backoff::new();
        while !backoff.is_completed() {
            if self
                .state
                .compare_exchange_weak(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
            backoff.spin();
        }
        while self.state.swap(CONTENDED, Ordering::Acquire) != UNLOCKED {
            futex_wait_while(&self.state, CONTENDED, None);
        }
    }

    pub fn try_lock(&self) -> Option<SpinGuard<'_, T>> {
        self.state
            .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| SpinGuard { lock: self })
    }

    /// The value, without locking: `&mut self` proves no one else holds it.
    pub fn get_mut(&mut self) -> &mut T {
        self.value.get_mut()
    }

    /// Only for a freshly forked child, where the holder no longer exists.
    pub fn force_unlock(&self) {
        self.state.store(UNLOCKED, Ordering::Release);
    }

    fn unlock(&self) {
        if self.state.swap(UNLOCKED, Ordering::Release) == CONTENDED {
            futex_wake_one(&self.state);
        }
    }
}

pub struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves we hold the lock.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves we hold the lock exclusively.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.unlock();
    }
}

/// How many threads are inside some section now: a check made on every call reads this
/// one shared word, and a thread's own state (a thread-local, a `__tls_get_addr` call in
/// a shared object) only while some thread is inside.
pub struct ThreadsInside(AtomicUsize);

impl ThreadsInside {
    pub const fn new() -> Self {
        ThreadsInside(AtomicUsize::new(0))
    }

    /// Counts this thread in until the guard drops. Enter before the thread marks its own
    /// state: its later loads see the count (program order), and a thread that reads 0
    /// has no mark of its own to miss. (A forked child keeps the count of a thread it
    /// does not have: its checks then read their thread-local, as slow as before.)
    pub fn enter(&self) -> Inside<'_> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Inside(self)
    }

    pub fn any(&self) -> bool {
        self.0.load(Ordering::Relaxed) != 0
    }
}

impl Default for ThreadsInside {
    fn default() -> Self {
        Self::new()
    }
}

pub struct Inside<'a>(&'a ThreadsInside);

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How a wait of ours on the program's behalf ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitEnd {
    /// What was waited for happened.
    Done,
    /// The time limit passed.
    TimedOut,
    /// A signal handler ran.
    Interrupted,
}

/// A flag that threads can wait on in the kernel (futex) until it is lowered: a recovery
/// owns a socket while raised, and the program's own threads wait for it to finish.
pub struct Gate {
    raised: AtomicU32,
}

impl Gate {
    pub const fn new() -> Self {
        Gate {
            raised: AtomicU32::new(0),
        }
    }

    pub fn is_raised(&self) -> bool {
        self.raised.load(Ordering::Acquire) != 0
    }

    pub fn raise(&self) {
        self.raised.store(1, Ordering::Release);
    }

    /// Lowers the gate and wakes every waiter.
    pub fn lower(&self) {
        if self.raised.swap(0, Ordering::AcqRel) != 0 {
            futex_wake_all(&self.raised);
        }
    }

    /// Waits while the gate is raised, at most until `deadline` (a program's call waiting
    /// for a recovery): a cancellation of the thread ends it, as the program's own
    /// blocking call would have been ended.
    pub fn wait(&self, deadline: Option<std::time::Instant>) -> WaitEnd {
        futex_wait_cancellable_while(&self.raised, 1, deadline)
    }
}

impl Default for Gate {
    fn default() -> Self {
        Self::new()
    }
}

/// Sleeps in the kernel while `word` holds `value`, at most until `deadline`. Spurious
/// wake-ups are absorbed; a signal handler that ran ends the wait.
pub fn futex_wait_while(
    word: &AtomicU32,
    value: u32,
    deadline: Option<std::time::Instant>,
) -> WaitEnd {
    futex_wait_in(word, value, deadline, false)
}

/// `futex_wait_while` for a program's call waiting on another thread's work: a
/// cancellation of the thread (`pthread_cancel`) ends it too (`sys::thread_cancel`).
pub fn futex_wait_cancellable_while(
    word: &AtomicU32,
    value: u32,
    deadline: Option<std::time::Instant>,
) -> WaitEnd {
    futex_wait_in(word, value, deadline, true)
}

fn futex_wait_in(
    word: &AtomicU32,
    value: u32,
    deadline: Option<std::time::Instant>,
    cancellable: bool,
) -> WaitEnd {
    while word.load(Ordering::Acquire) == value {
        let timeout = match deadline {
            None => None,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return WaitEnd::TimedOut;
                }
                Some(libc::timespec {
                    tv_sec: left.as_secs() as libc::time_t,
                    tv_nsec: left.subsec_nanos() as libc::c_long,
                })
            }
        };
        let timeout_ptr = timeout
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: FUTEX_WAIT on a live, aligned u32; the timeout (relative) outlives the call.
        let rc = unsafe {
            if cancellable {
                crate::sys::thread_cancel::futex_wait_cancellable(word.as_ptr(), value, timeout_ptr)
            } else {
                crate::sys::syscall(
                    libc::SYS_futex,
                    word.as_ptr() as libc::c_long,
                    (libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG) as libc::c_long,
                    value as libc::c_long,
                    timeout_ptr as libc::c_long,
                    0,
                    0,
                )
            }
        };
        if rc < 0 {
            match crate::sys::errno() {
                libc::EINTR => return WaitEnd::Interrupted,
                libc::ETIMEDOUT => return WaitEnd::TimedOut,
                _ => {} // EAGAIN: the value changed already
            }
        }
    }
    WaitEnd::Done
}

pub fn futex_wake_all(word: &AtomicU32) {
    futex_wake(word, i32::MAX);
}

/// Out of line and cold: an unlock calls it only when a thread sleeps on the lock, so
/// the uncontended unlock inlined at every lock's site stays two instructions.
#[cold]
#[inline(never)]
fn futex_wake_one(word: &AtomicU32) {
    futex_wake(word, 1);
}

fn futex_wake(word: &AtomicU32, count: i32) {
    // SAFETY: FUTEX_WAKE on a live, aligned u32.
    unsafe {
        crate::sys::syscall(
            libc::SYS_futex,
            word.as_ptr() as libc::c_long,
            (libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG) as libc::c_long,
            count as libc::c_long,
            0,
            0,
            0,
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    #[test]
    fn threads_inside_counts_each_guard_until_it_drops() {
        let inside = ThreadsInside::new();
        assert!(!inside.any());
        let first = inside.enter();
        let second = inside.enter();
        drop(first);
        assert!(inside.any());
        drop(second);
        assert!(!inside.any());
    }

    extern "C" fn note_signal(_: libc::c_int) {}

    /// How a wait on a raised gate ends when a SIGUSR2 handler installed with `flags`
    /// runs in the waiting thread, the gate lowered 300 ms later; `deadline`: the wait's.
    fn gate_wait_under_a_signal(flags: libc::c_int, deadline: Option<Duration>) -> WaitEnd {
        // SAFETY: sigaction is plain data; the handler does nothing.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = note_signal as extern "C" fn(libc::c_int) as usize;
            action.sa_flags = flags;
            libc::sigaction(libc::SIGUSR2, &action, std::ptr::null_mut());
        }
        let gate = Arc::new(Gate::new());
        gate.raise();
        let waiting = gate.clone();
        let (tell, told) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            // SAFETY: the calling thread's own id.
            tell.send(unsafe { libc::pthread_self() } as usize).unwrap();
            waiting.wait(deadline.map(|d| Instant::now() + d))
        });
        let thread = told.recv().unwrap() as libc::pthread_t;
        std::thread::sleep(Duration::from_millis(100));
        // SAFETY: a live thread of this test, which runs until the gate is lowered.
        unsafe { libc::pthread_kill(thread, libc::SIGUSR2) };
        std::thread::sleep(Duration::from_millis(200));
        gate.lower();
        waiter.join().unwrap()
    }

    /// What `conn::waiting::wait_for_recovery` relies on: the kernel restarts an untimed
    /// futex wait after a handler installed with SA_RESTART, as it restarts a socket call
    /// without a timeout, and ends a timed one with EINTR after any handler, as a socket
    /// call with SO_RCVTIMEO. Run in one test: the handler is the process's.
    #[test]
    fn a_gate_wait_is_restarted_as_a_socket_call_would_be() {
        assert_eq!(
            gate_wait_under_a_signal(libc::SA_RESTART, None),
            WaitEnd::Done
        );
        assert_eq!(gate_wait_under_a_signal(0, None), WaitEnd::Interrupted);
        let timed = Some(Duration::from_secs(30));
        assert_eq!(
            gate_wait_under_a_signal(libc::SA_RESTART, timed),
            WaitEnd::Interrupted
        );
    }

    #[test]
    fn contended_lock_keeps_every_increment() {
        let counter = Arc::new(SpinLock::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let counter = counter.clone();
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        *counter.lock() += 1;
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(*counter.lock(), 80_000);
    }

    #[test]
    fn a_waiter_sleeps_until_the_holder_unlocks() {
        let lock = Arc::new(SpinLock::new(()));
        let held = lock.lock();
        let waiter = {
            let lock = lock.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                drop(lock.lock());
                started.elapsed()
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        drop(held);
        assert!(waiter.join().unwrap() >= Duration::from_millis(90));
    }

    #[test]
    fn gate_wakes_its_waiters_when_lowered() {
        let gate = Arc::new(Gate::new());
        gate.raise();
        let waiter = {
            let gate = gate.clone();
            std::thread::spawn(move || gate.wait(None))
        };
        std::thread::sleep(Duration::from_millis(50));
        gate.lower();
        assert_eq!(waiter.join().unwrap(), WaitEnd::Done);
    }

    #[test]
    fn gate_wait_ends_at_its_deadline() {
        let gate = Gate::new();
        gate.raise();
        let started = Instant::now();
        let end = gate.wait(Some(started + Duration::from_millis(50)));
        assert_eq!(end, WaitEnd::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn a_lowered_gate_does_not_wait() {
        assert_eq!(Gate::new().wait(None), WaitEnd::Done);
    }
}
