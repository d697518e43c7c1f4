//! A tiny `log` backend writing single lines to standard error (never standard output:
//! a program's output, `curl url > file`, must stay its own).

use crate::policy::config::LogLevel;
use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;

struct StderrLogger;

static LOGGER: StderrLogger = StderrLogger;

impl Log for StderrLogger {
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
        // One write per line so lines of concurrent threads and processes do not interleave.
        let mut line = Vec::with_capacity(128);
        let _ = writeln!(
            line,
            "[lunar-intercept {}] {}: {}",
            std::process::id(),
            level,
            record.args()
        );
        // SAFETY: writes a buffer we own to fd 2 with libc's own write.
        unsafe { crate::sys::write(2, line.as_ptr().cast(), line.len()) };
    }

    fn flush(&self) {}
}

pub fn install(level: LogLevel) {
    let filter = match level {
        LogLevel::Error => LevelFilter::Error,
        LogLevel::Warn => LevelFilter::Warn,
        LogLevel::Info => LevelFilter::Info,
        LogLevel::Debug => LevelFilter::Debug,
    };
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(filter);
    }
}
