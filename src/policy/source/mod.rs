//! Where the configuration comes from: the environment and the configuration file, or,
//! for a program in secure-execution mode, a root-owned configuration file alone.
//!
//! Everything here runs when the runtime is built (the first connect or name lookup), never
//! at load: a process that makes no such call never opens the file.
//!
//! An ordinary process reads the file (`LUNAR_INTERCEPTOR_CONFIG`, else
//! `/etc/lunar/interceptor.conf`), then the environment, which overrides the file key by
//! key (`config::layered`). The default file missing is silent: most machines have none.
//! A file that `LUNAR_INTERCEPTOR_CONFIG` names and that cannot be read, or any file that
//! exists and cannot be read, gets one warning and is ignored (the environment still
//! applies).
//!
//! A process in secure-execution mode (`getauxval(AT_SECURE)`: a setuid or setgid program,
//! one that gained file capabilities, or one an LSM marked) must not read its environment:
//! it belongs to the user who started it, and `/etc/ld.so.preload` loads this library
//! into it (the loader honours that file's absolute paths even then). A user pointing
//! `LUNAR_PROXY_HOST` at a listener of their own would receive the privileged program's
//! requests, credentials included, and answer them. So nothing at all is read from the
//! environment, not `LUNAR_INTERCEPTOR_CONFIG`, not the log level or target either. The one
//! source is the file at the fixed path, opened without following a symbolic link, and
//! followed only when the opened file (`fstat` of its fd) is owned by root and not writable
//! by group or others (`trust`): only root can have written what it says. Its log level
//! and target then apply as in any process. Without that file the library is inert and
//! silent; with a file that exists but is not trusted (or cannot be read), it is inert and
//! says so once, a WARNING on standard error (the file's own log target cannot be
//! believed): stderr of a secure-execution process is never a file the user swapped in
//! (glibc opens /dev/null over a closed fd 0, 1 or 2 in this mode), and the warning names
//! only the file's path and what is wrong with it.

mod trust;

use super::config::{self, layered, parse_file, FileValues, Logging, Setup};
use crate::sys::file::{read_small, FileError, SmallFile, Symlinks};
use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStringExt;

/// The configuration file, and the only one a secure-execution process reads.
pub const DEFAULT_PATH: &str = "/etc/lunar/interceptor.conf";
/// The variable naming another file (ignored in secure-execution mode).
pub const PATH_VARIABLE: &str = "LUNAR_INTERCEPTOR_CONFIG";
/// A configuration is a few hundred bytes; a file far larger is not one (and is not read
/// into every process that connects).
const MAX_FILE_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The configuration file, then the process environment over it.
    Environment,
    /// Secure-execution mode: a trusted configuration file alone, else nothing.
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
pub fn read(source: Source, warn: &mut dyn FnMut(String)) -> (Setup, Logging) {
    read_from(source, &environment, &open_file, warn)
}

/// What `read` reads, given as functions (a variable's bytes; a file at a path) so that
/// the decisions are tested without a real environment, file or setuid bit.
type Environment<'a> = &'a dyn Fn(&str) -> Option<Vec<u8>>;
type OpenFile<'a> = &'a dyn Fn(&[u8], Symlinks) -> Result<SmallFile, FileError>;

fn read_from(
    source: Source,
    environment: Environment<'_>,
    open: OpenFile<'_>,
    warn: &mut dyn FnMut(String),
) -> (Setup, Logging) {
    match source {
        Source::Environment => {
            let (_, file) = the_file(environment, open, warn);
            config::parse(layered(environment, &file), warn)
        }
        Source::SecureExecution => {
            let inert = (Setup::SecureExecution, Logging::default());
            let ignored = "ignored in secure-execution mode (setuid or setgid program)";
            let file = match open(DEFAULT_PATH.as_bytes(), Symlinks::Refuse) {
                Ok(file) => file,
                Err(FileError::Open(libc::ENOENT)) => return inert,
                Err(error) => {
                    warn(format!(
                        "configuration file {DEFAULT_PATH} {error}; {ignored}"
                    ));
                    return inert;
                }
            };
            if let Err(why) = trust::check(file.owner, file.mode) {
                warn(format!(
                    "configuration file {DEFAULT_PATH} {why}; {ignored}"
                ));
                return inert;
            }
            let values = parse_file(&file.bytes, DEFAULT_PATH, warn);
            config::parse(|name| values.get(name).map(<[u8]>::to_vec), warn)
        }
    }
}

/// The configuration file of an ordinary process: its path as shown, and its values
/// (none when it is missing or unreadable, said through `warn` unless the default file is
/// simply absent).
fn the_file(
    environment: Environment<'_>,
    open: OpenFile<'_>,
    warn: &mut dyn FnMut(String),
) -> (String, FileValues) {
    let named = environment(PATH_VARIABLE).filter(|path| !config::is_blank(path));
    let path = named.as_deref().unwrap_or(DEFAULT_PATH.as_bytes());
    let shown = String::from_utf8_lossy(path).into_owned();
    let file = match open(path, Symlinks::Follow) {
        Ok(file) => parse_file(&file.bytes, &shown, warn),
        Err(FileError::Open(libc::ENOENT)) if named.is_none() => FileValues::default(),
        Err(error) => {
            warn(format!("configuration file {shown} {error}; ignored"));
            FileValues::default()
        }
    };
    (shown, file)
}

/// Where a variable's value came from (`lunar-intercept doctor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Environment,
    /// The configuration file, by its path.
    File(String),
    Unset,
}

/// Each variable's raw value and where it came from, as an ordinary process reads them
/// (`read` with `Source::Environment`); `warn` receives the file's complaints.
pub fn origins(warn: &mut dyn FnMut(String)) -> Vec<(&'static str, Origin, Vec<u8>)> {
    origins_from(&environment, &open_file, warn)
}

fn origins_from(
    environment: Environment<'_>,
    open: OpenFile<'_>,
    warn: &mut dyn FnMut(String),
) -> Vec<(&'static str, Origin, Vec<u8>)> {
    let (path, file) = the_file(environment, open, warn);
    config::VARIABLES
        .iter()
        .map(
            |&name| match environment(name).filter(|value| !config::is_blank(value)) {
                Some(value) => (name, Origin::Environment, value),
                None => match file.get(name) {
                    Some(value) => (name, Origin::File(path.clone()), value.to_vec()),
                    None => (name, Origin::Unset, Vec::new()),
                },
            },
        )
        .collect()
}

/// A variable's bytes, whatever they are (a value that is not UTF-8 is still a value).
fn environment(name: &str) -> Option<Vec<u8>> {
    std::env::var_os(name).map(OsString::into_vec)
}

fn open_file(path: &[u8], symlinks: Symlinks) -> Result<SmallFile, FileError> {
    // A path from the environment holds no NUL (a C string carried it).
    let path = CString::new(path).map_err(|_| FileError::Open(libc::EINVAL))?;
    read_small(&path, symlinks, MAX_FILE_BYTES)
}

#[cfg(test)]
mod tests;
