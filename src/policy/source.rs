//! Where the configuration comes from.
//!
//! An ordinary process reads the environment (`config::parse`). A process in
//! secure-execution mode (`getauxval(AT_SECURE)`: a setuid or setgid program, one that
//! gained file capabilities, or one an LSM marked) must not: its environment belongs to
//! the user who started it, and `/etc/ld.so.preload` loads this library into it (the
//! loader honours that file's absolute paths even then). A user pointing
//! `LUNAR_PROXY_HOST` at a listener of their own would receive the privileged program's
//! requests, credentials included, and answer them. So in secure-execution mode nothing
//! at all is read from the environment (not the log level either) and the library is
//! inert. A root-owned configuration file is meant to become the one source for such
//! programs: it will be a third `Source`, read instead of the environment.

use super::config::{self, LogLevel, Setup};
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The process environment.
    Environment,
    /// Secure-execution mode: no source; the library stays inert and silent.
    SecureExecution,
}

impl Source {
    /// This process's source: the kernel's AT_SECURE flag decides.
    pub fn of_this_process() -> Source {
        // SAFETY: getauxval only reads the auxiliary vector; 0 when the entry is missing.
        if unsafe { libc::getauxval(libc::AT_SECURE) } != 0 {
            Source::SecureExecution
        } else {
            Source::Environment
        }
    }
}

/// Reads the configuration from `source`; `warn` receives each complaint once.
pub fn read(source: Source, warn: &mut dyn FnMut(String)) -> (Setup, LogLevel) {
    match source {
        Source::Environment => config::parse(environment, warn),
        Source::SecureExecution => (Setup::SecureExecution, LogLevel::Warn),
    }
}

/// A variable's bytes, whatever they are (a value that is not UTF-8 is still a value).
fn environment(name: &str) -> Option<Vec<u8>> {
    std::env::var_os(name).map(OsString::into_vec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_execution_reads_nothing() {
        let mut warnings = Vec::new();
        let (setup, level) = read(Source::SecureExecution, &mut |w| warnings.push(w));
        assert!(matches!(setup, Setup::SecureExecution));
        assert_eq!(level, LogLevel::Warn);
        assert!(warnings.is_empty());
    }

    #[test]
    fn a_test_process_is_not_in_secure_execution() {
        assert_eq!(Source::of_this_process(), Source::Environment);
    }
}
