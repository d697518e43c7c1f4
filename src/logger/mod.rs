//! A tiny `log` backend writing single lines to standard error (never standard output:
//! a program's output, `curl url > file`, must stay its own), or to the local syslog
//! socket (`LUNAR_INTERCEPTOR_LOG_TARGET=syslog`, `syslog`): under `/etc/ld.so.preload`
//! every process's warnings landing on its stderr could corrupt output scripts parse.

mod syslog;

use crate::policy::config::{LogLevel, LogTarget, Logging};
use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

struct Logger;

static LOGGER: Logger = Logger;
/// Where lines go: set before the logger is, never changed after (a forked child keeps
/// its parent's).
static TO_SYSLOG: AtomicBool = AtomicBool::new(false);

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            Level::Error => "ERROR",
            Level::Warn => "WARNING",
            Level::Info => "INFO",
            Level::Debug | Level::Trace => "DEBUG",
        };
        // A line is logged in the middle of the program's calls: a failed write or send
        // of ours (no syslog socket, stderr closed) must not change the errno it reads.
        let saved = crate::sys::errno();
        if TO_SYSLOG.load(Ordering::Relaxed) {
            syslog::send(
                record.level(),
                &format!("lunar-intercept {level}: {}", record.args()),
            );
        } else {
            // One write per line so lines of concurrent threads and processes do not
            // interleave.
            let mut line = Vec::with_capacity(128);
            let _ = writeln!(
                line,
                "[lunar-intercept {}] {}: {}",
                std::process::id(),
                level,
                record.args()
            );
            if line.len() > MAX_LINE {
                // Within what a pipe reported writable takes at once (`stderr_takes_a_line_now`).
                line.truncate(MAX_LINE - 4);
                line.extend_from_slice(b"...\n");
            }
            if stderr_takes_a_line_now() {
                // SAFETY: writes a buffer we own to fd 2 with libc's own write.
                unsafe { crate::sys::write(2, line.as_ptr().cast(), line.len()) };
            }
        }
        crate::sys::set_errno(saved);
    }

    fn flush(&self) {}
}

/// The longest line written to stderr: a pipe's page, what one reported writable takes.
const MAX_LINE: usize = 4096;

/// Whether stderr can take a line without waiting. A line is logged from inside one of the
/// program's calls: a stderr pipe nobody drains must not stall that call, when the program
/// itself may never write there. Then the line is dropped (syslog's lines are too, when
/// its queue is full). A pipe reported writable has a page free: `MAX_LINE`.
fn stderr_takes_a_line_now() -> bool {
    let mut entry = libc::pollfd {
        fd: 2,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd; libc's own poll, not our hook.
    let ready = unsafe { crate::sys::poll(&mut entry, 1, 0) };
    ready == 1 && entry.revents & libc::POLLOUT != 0
}

/// Called only by the thread building the runtime (one per process, `runtime::set_up`).
pub fn install(logging: Logging) {
    let filter = match logging.level {
        LogLevel::Error => LevelFilter::Error,
        LogLevel::Warn => LevelFilter::Warn,
        LogLevel::Info => LevelFilter::Info,
        LogLevel::Debug => LevelFilter::Debug,
    };
    TO_SYSLOG.store(logging.target == LogTarget::Syslog, Ordering::Relaxed);
    // Not `log::set_logger`: it spins while another thread is half-way through it, and in
    // a child forked at that instant that thread never finishes. The racy form is two
    // plain stores, redone by a child that builds again.
    // SAFETY: nothing else calls set_logger* on this library's own copy of `log`, and
    // `runtime::set_up` lets one thread per process build, so no two calls race. An Err
    // means our logger is already installed (the parent set it up before the fork).
    let _ = unsafe { log::set_logger_racy(&LOGGER) };
    log::set_max_level(filter);
}
