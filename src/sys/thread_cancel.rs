//! A thread cancelled (`pthread_cancel`) at a cancellation point inside the library's
//! work ends as it would without us: `thread_cancel.c` (beside this file) says how.

use libc::{c_int, c_void};

extern "C-unwind" {
    fn lunar_run_catching_cancel(
        work: unsafe extern "C-unwind" fn(*mut c_void),
        context: *mut c_void,
        resume: *mut UnwindBuffer,
    ) -> c_int;
    fn lunar_resume_cancel(resume: *mut UnwindBuffer) -> !;
    fn lunar_futex_wait_cancellable(
        word: *mut u32,
        value: u32,
        timeout: *const libc::timespec,
    ) -> libc::c_long;
}

/// FUTEX_WAIT (private) on `word` while it holds `value`, at most `timeout` (relative; null:
/// no limit), which a cancellation of the thread ends (see `thread_cancel.c`): for waits
/// inside a program's call on another thread's work. As syscall(2): -1 and errno on error.
///
/// # Safety
/// `word` is a live, aligned u32; `timeout` is null or a valid timespec.
pub unsafe fn futex_wait_cancellable(
    word: *mut u32,
    value: u32,
    timeout: *const libc::timespec,
) -> libc::c_long {
    // SAFETY: the caller's contract.
    unsafe { lunar_futex_wait_cancellable(word, value, timeout) }
}

struct Call<F, R> {
    work: Option<F>,
    result: Option<R>,
}

/// glibc's buffer for going on with a caught unwind (a `__pthread_unwind_buf_t`, which
/// `thread_cancel.c` checks fits).
#[repr(C, align(16))]
struct UnwindBuffer([u8; 128]);

/// A cancellation (or the program's `pthread_exit`) caught inside the library's work.
/// Boxed: the common result stays small.
pub struct Cancelled(Box<UnwindBuffer>);

impl Cancelled {
    /// Goes on with the unwind, through the program's frames (its cleanup handlers run,
    /// its join sees the thread's result: `PTHREAD_CANCELED`, or `pthread_exit`'s value).
    /// Called outside any `catch_unwind`.
    pub fn resume(mut self) -> ! {
        // SAFETY: the buffer `lunar_run_catching_cancel` filled for this thread's unwind.
        unsafe { lunar_resume_cancel(&mut *self.0) }
    }
}

/// Runs `work`; `Err` when the thread was cancelled inside it. The cancellation then has
/// unwound `work`'s frames (their drops ran) and is the caller's to finish, outside any
/// `catch_unwind`, with [`Cancelled::resume`].
pub fn catching<F: FnOnce() -> R, R>(work: F) -> Result<R, Cancelled> {
    let mut call = Call {
        work: Some(work),
        result: None,
    };
    // Not zeroed: every hook with work comes here, and it is written only when needed.
    let mut resume = std::mem::MaybeUninit::<UnwindBuffer>::uninit();
    let context = (&mut call as *mut Call<F, R>).cast::<c_void>();
    // SAFETY: `enter::<F, R>` reads `context` as the `Call<F, R>` it is, which lives
    // until this call returns; `resume` is room for the C side's buffer.
    let cancelled =
        unsafe { lunar_run_catching_cancel(enter::<F, R>, context, resume.as_mut_ptr()) };
    match (cancelled, call.result) {
        (0, Some(result)) => Ok(result),
        // SAFETY: a cancellation caught: the C side filled `resume` (`work` cannot return
        // without a result otherwise: `run` takes it once).
        _ => Err(Cancelled(Box::new(unsafe { resume.assume_init() }))),
    }
}

/// The frame the C side calls. glibc ends a cancellation's unwind at this frame without
/// running its cleanups, so it holds none: the work runs one call further down.
unsafe extern "C-unwind" fn enter<F: FnOnce() -> R, R>(context: *mut c_void) {
    // SAFETY: `catching` passes its own `Call<F, R>`, alive and not otherwise borrowed
    // for this call.
    run(unsafe { &mut *context.cast::<Call<F, R>>() });
}

#[inline(never)]
fn run<F: FnOnce() -> R, R>(call: &mut Call<F, R>) {
    if let Some(work) = call.work.take() {
        call.result = Some(work());
    }
}

#[cfg(test)]
mod tests {
    use super::catching;
    use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

    extern "C-unwind" {
        fn pthread_testcancel();
    }

    /// The tests share the statics below: one at a time.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    static STARTED: AtomicBool = AtomicBool::new(false);
    static STEPS: AtomicU8 = AtomicU8::new(0);
    const DROPPED: u8 = 1;
    const CAUGHT: u8 = 2;
    const PANIC_CAUGHT: u8 = 4;

    struct MarkOnDrop;
    impl Drop for MarkOnDrop {
        fn drop(&mut self) {
            STEPS.fetch_or(DROPPED, Ordering::SeqCst);
        }
    }

    /// Runs `body` in a thread of its own (a bare pthread: std's threads catch unwinds),
    /// cancels it once it has started, and returns whether it ended cancelled, and the
    /// steps it marked.
    fn cancel_in_thread(
        body: unsafe extern "C-unwind" fn(*mut libc::c_void) -> *mut libc::c_void,
    ) -> (bool, u8) {
        let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        // Our unwinder unwinds once, as the library's link makes it do before another's
        // unwind reaches our frames (`unwinder_ready.c`; this binary is linked without it).
        let _ = std::panic::catch_unwind(|| std::panic::resume_unwind(Box::new(())));
        STARTED.store(false, Ordering::SeqCst);
        STEPS.store(0, Ordering::SeqCst);
        let mut thread: libc::pthread_t = 0;
        // SAFETY: the start routine's ABI differs from libc's declaration only in that it
        // may unwind, which is what a cancelled thread's start routine does.
        let start = unsafe {
            std::mem::transmute::<
                unsafe extern "C-unwind" fn(*mut libc::c_void) -> *mut libc::c_void,
                extern "C" fn(*mut libc::c_void) -> *mut libc::c_void,
            >(body)
        };
        // SAFETY: a valid pthread_t to fill, default attributes, a start routine.
        let created = unsafe {
            libc::pthread_create(&mut thread, std::ptr::null(), start, std::ptr::null_mut())
        };
        assert_eq!(created, 0);
        while !STARTED.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        // SAFETY: a thread we created and have not joined.
        assert_eq!(unsafe { libc::pthread_cancel(thread) }, 0);
        let mut result: *mut libc::c_void = std::ptr::null_mut();
        // SAFETY: as above.
        assert_eq!(unsafe { libc::pthread_join(thread, &mut result) }, 0);
        // PTHREAD_CANCELED, which the libc crate does not name.
        (result as isize == -1, STEPS.load(Ordering::SeqCst))
    }

    /// Waits in poll on a pipe nobody writes: a cancellation point that only a
    /// cancellation ends.
    fn wait_for_ever() {
        let mut ends = [0; 2];
        // SAFETY: a two-int array for pipe(2).
        assert_eq!(unsafe { libc::pipe(ends.as_mut_ptr()) }, 0);
        let mut wait = libc::pollfd {
            fd: ends[0],
            events: libc::POLLIN,
            revents: 0,
        };
        STARTED.store(true, Ordering::SeqCst);
        // SAFETY: one valid pollfd.
        unsafe { crate::sys::poll(&mut wait, 1, -1) };
    }

    unsafe extern "C-unwind" fn blocked_in_the_work(_: *mut libc::c_void) -> *mut libc::c_void {
        let finished = catching(|| {
            let _mark = MarkOnDrop;
            wait_for_ever();
        });
        if let Err(cancelled) = finished {
            STEPS.fetch_or(CAUGHT, Ordering::SeqCst);
            cancelled.resume();
        }
        std::ptr::null_mut()
    }

    unsafe extern "C-unwind" fn blocked_in_a_futex(_: *mut libc::c_void) -> *mut libc::c_void {
        let finished = catching(|| {
            let _mark = MarkOnDrop;
            let word = std::sync::atomic::AtomicU32::new(1);
            // Bounded, so that a wait the cancellation does not end fails the test (the
            // thread then returns instead of ending cancelled) rather than hanging it.
            let bound = libc::timespec {
                tv_sec: 5,
                tv_nsec: 0,
            };
            STARTED.store(true, Ordering::SeqCst);
            // SAFETY: a live u32 and a valid timespec.
            unsafe { super::futex_wait_cancellable(word.as_ptr(), 1, &bound) };
        });
        if let Err(cancelled) = finished {
            STEPS.fetch_or(CAUGHT, Ordering::SeqCst);
            cancelled.resume();
        }
        std::ptr::null_mut()
    }

    #[test]
    fn a_cancellable_futex_wait_ends_at_the_cancellation() {
        let (cancelled, steps) = cancel_in_thread(blocked_in_a_futex);
        assert!(cancelled, "joined as cancelled");
        assert_eq!(steps & (DROPPED | CAUGHT), DROPPED | CAUGHT);
    }

    #[test]
    fn a_cancellation_inside_the_work_unwinds_it_and_ends_the_thread_cancelled() {
        let (cancelled, steps) = cancel_in_thread(blocked_in_the_work);
        assert!(cancelled, "joined as cancelled");
        assert_eq!(steps & DROPPED, DROPPED, "the work's drops ran");
        assert_eq!(steps & CAUGHT, CAUGHT, "caught, then resumed");
    }

    unsafe extern "C-unwind" fn cancelled_after_a_panic(_: *mut libc::c_void) -> *mut libc::c_void {
        let panicked = std::panic::catch_unwind(|| catching(|| panic!("a panic in the work")));
        if panicked.is_err() {
            STEPS.fetch_or(PANIC_CAUGHT, Ordering::SeqCst);
        }
        STARTED.store(true, Ordering::SeqCst);
        // A cancellation point outside any work: glibc's unwind must not find the buffer
        // of the frame the panic left (it would jump into a frame that is gone).
        loop {
            // SAFETY: no arguments; the thread is cancellable.
            unsafe { pthread_testcancel() };
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_panic_through_the_work_leaves_no_cancellation_buffer_behind() {
        let (cancelled, steps) = cancel_in_thread(cancelled_after_a_panic);
        assert!(cancelled, "joined as cancelled");
        assert_eq!(steps & PANIC_CAUGHT, PANIC_CAUGHT);
    }
}
