//! Test builds only (`--features race-probe`, built into target/test-build by the e2e
//! tests): pauses at chosen points of the connection layer, keyed on sizes a test program
//! picks, so that races between a program's threads happen every time
//! (`c-tests/move_race.c`, `first_answer_race.c`, `move_reset_race.c`,
//! `recovery_close_race.c`), or a failure that is rare otherwise happens
//! (`recovery_without_thread.c`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A read of exactly this many bytes pauses between the read path's checks and the read.
const READ_PAUSED_BEFORE: usize = 4093;
/// A write of exactly this many bytes to a tracked socket pauses the move it makes.
const WRITE_PAUSING_ITS_MOVE: usize = 4093;
/// A read of exactly this many bytes that met the peer's end pauses before judging it.
const READ_PAUSED_AFTER_AN_END: usize = 4094;

/// A write of exactly this many bytes to a tracked socket pauses the resend of a
/// recovery made in the background, should one follow.
const WRITE_PAUSING_A_RESEND: usize = 4092;

/// A write of exactly this many bytes to a tracked socket makes the next helper thread of
/// a recovery fail to start, as in a process at its thread limit.
const WRITE_REFUSING_A_THREAD: usize = 4091;

/// A write of exactly this many bytes to a tracked socket makes the next helper thread of
/// a recovery panic before its resend (a bug of ours, as the shield must take it).
const WRITE_PANICKING_A_HELPER: usize = 4090;

static MOVE_PAUSE_ARMED: AtomicBool = AtomicBool::new(false);
static HELPER_PANIC_ARMED: AtomicBool = AtomicBool::new(false);
static THREAD_REFUSAL_ARMED: AtomicBool = AtomicBool::new(false);
static RESEND_PAUSE_ARMED: AtomicBool = AtomicBool::new(false);

fn pause(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// 300 ms after the read path's checks, before the read: another thread of the program
/// may move the socket or complete a request meanwhile (`conn::read::receive`).
pub fn before_read(buffer_len: usize) {
    if buffer_len == READ_PAUSED_BEFORE {
        pause(300);
    }
}

/// Arms a 300 ms pause in the next move (`after_disconnect`) or background resend
/// (`before_background_resend`), or the refusal of the next helper thread, or a panic in
/// it.
pub fn on_write(input_len: usize) {
    if input_len == WRITE_PAUSING_ITS_MOVE {
        MOVE_PAUSE_ARMED.store(true, Ordering::SeqCst);
    }
    if input_len == WRITE_PAUSING_A_RESEND {
        RESEND_PAUSE_ARMED.store(true, Ordering::SeqCst);
    }
    if input_len == WRITE_REFUSING_A_THREAD {
        THREAD_REFUSAL_ARMED.store(true, Ordering::SeqCst);
    }
    if input_len == WRITE_PANICKING_A_HELPER {
        HELPER_PANIC_ARMED.store(true, Ordering::SeqCst);
    }
}

/// Panics when armed: in a recovery's helper thread, before its resend
/// (`recovery::resend_in_background`; `c-tests/recovery_without_thread.c` built with
/// -DHELPER_PANICS).
pub fn maybe_panic_in_a_helper() {
    if HELPER_PANIC_ARMED.swap(false, Ordering::SeqCst) {
        panic!("race-probe: a panic in a recovery's helper thread");
    }
}

/// Whether the recovery's helper thread is refused (`recovery::in_background`, which then
/// runs the job in the program's thread; `c-tests/recovery_without_thread.c`).
pub fn refuse_a_thread() -> bool {
    THREAD_REFUSAL_ARMED.swap(false, Ordering::SeqCst)
}

/// 300 ms in a recovery's helper thread, after its last check that the fd is the
/// program's and before it resends there: the program may close the fd and reuse the
/// number meanwhile (`recovery::in_background`; `c-tests/recovery_close_race.c`).
pub fn before_background_resend() {
    if RESEND_PAUSE_ARMED.swap(false, Ordering::SeqCst) {
        pause(300);
    }
}

/// Right after a move's disconnect, while the socket is between peers (the old one
/// reset, the new connect not begun): a reader of another thread meets the old peer's
/// reset (`Conn::move_to`).
pub fn after_disconnect() {
    if MOVE_PAUSE_ARMED.swap(false, Ordering::SeqCst) {
        pause(300);
    }
}

/// 600 ms after a read met the peer's end (EOF, reset), before it is judged: a move
/// another thread is making finishes first (`conn::read::receive`).
pub fn after_an_end(buffer_len: usize) {
    if buffer_len == READ_PAUSED_AFTER_AN_END {
        pause(600);
    }
}
