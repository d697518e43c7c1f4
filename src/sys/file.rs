//! Reading one small file (the configuration file) with libc's own functions: `read` and
//! `close` are hooked by this library, so they go through `sys`; `open` and `fstat` are
//! not, so they are libc's directly.

use crate::sys;
use std::ffi::CStr;

/// A regular file's owner, mode and bytes, all from the one opened file (fstat on its
/// fd: what was checked is what was read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmallFile {
    pub owner: u32,
    pub mode: u32,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileError {
    /// open(2) failed with this errno (ENOENT: no such file; ELOOP: a symbolic link
    /// where none is followed).
    Open(i32),
    /// A directory, a FIFO, a device: never read (a FIFO or a terminal could block).
    NotRegular,
    /// Longer than the limit: never half-read.
    TooLarge,
    Read(i32),
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            FileError::Open(libc::ELOOP) => f.write_str("is a symbolic link"),
            FileError::Open(errno) | FileError::Read(errno) => {
                write!(
                    f,
                    "cannot be read: {}",
                    std::io::Error::from_raw_os_error(errno)
                )
            }
            FileError::NotRegular => f.write_str("is not a regular file"),
            FileError::TooLarge => f.write_str("is too large"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Symlinks {
    Follow,
    /// O_NOFOLLOW: a symbolic link as the last component is refused (ELOOP).
    Refuse,
}

/// Reads the regular file at `path`, at most `limit` bytes. Leaves no fd behind
/// (O_CLOEXEC too, should another thread exec meanwhile).
pub fn read_small(path: &CStr, symlinks: Symlinks, limit: usize) -> Result<SmallFile, FileError> {
    // O_NONBLOCK: opening a FIFO must not wait for a writer (the fstat below refuses it).
    let mut flags = libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK;
    if symlinks == Symlinks::Refuse {
        flags |= libc::O_NOFOLLOW;
    }
    // SAFETY: a NUL-terminated path; open is not one of our hooks.
    let fd = unsafe { libc::open(path.as_ptr(), flags) };
    if fd < 0 {
        return Err(FileError::Open(sys::errno()));
    }
    let result = read_open(fd, limit);
    // SAFETY: the fd is ours, closed once.
    unsafe { sys::close(fd) };
    result
}

fn read_open(fd: libc::c_int, limit: usize) -> Result<SmallFile, FileError> {
    // SAFETY: an all-zero stat is a valid value to be overwritten.
    let mut status: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat on our own open fd into a local stat.
    if unsafe { libc::fstat(fd, &mut status) } != 0 {
        return Err(FileError::Read(sys::errno()));
    }
    if status.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(FileError::NotRegular);
    }
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // SAFETY: reads into a local buffer of its own size.
        let got = unsafe { sys::read(fd, chunk.as_mut_ptr().cast(), chunk.len()) };
        match got {
            0 => break,
            n if n > 0 => {
                if bytes.len() + n as usize > limit {
                    return Err(FileError::TooLarge);
                }
                bytes.extend_from_slice(&chunk[..n as usize]);
            }
            _ if sys::errno() == libc::EINTR => {}
            _ => return Err(FileError::Read(sys::errno())),
        }
    }
    Ok(SmallFile {
        owner: status.st_uid,
        mode: status.st_mode,
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::os::unix::fs::PermissionsExt;

    /// A directory of the test's own, removed when dropped.
    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new(test: &str) -> TempDir {
            let dir =
                std::env::temp_dir().join(format!("lunar-sys-file-{}-{test}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn path(&self, name: &str) -> std::path::PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn c(path: &std::path::Path) -> CString {
        CString::new(path.to_str().unwrap()).unwrap()
    }

    #[test]
    fn reads_a_file_with_its_owner_and_mode() {
        let dir = TempDir::new("plain");
        let path = dir.path("plain");
        std::fs::write(&path, b"A=1\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let file = read_small(&c(&path), Symlinks::Refuse, 100).unwrap();
        assert_eq!(file.bytes, b"A=1\n");
        assert_eq!(file.mode & 0o777, 0o640);
        // SAFETY: getuid has no preconditions.
        assert_eq!(file.owner, unsafe { libc::getuid() });
        assert_eq!(
            read_small(&c(&path), Symlinks::Follow, 3),
            Err(FileError::TooLarge)
        );
    }

    #[test]
    fn missing_symlinked_and_special_files() {
        let temp = TempDir::new("special");
        let temp = |name| temp.path(name);
        let missing = temp("missing");
        assert_eq!(
            read_small(&c(&missing), Symlinks::Follow, 100),
            Err(FileError::Open(libc::ENOENT))
        );
        let target = temp("target");
        std::fs::write(&target, b"x").unwrap();
        let link = temp("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert_eq!(
            read_small(&c(&link), Symlinks::Refuse, 100),
            Err(FileError::Open(libc::ELOOP))
        );
        assert_eq!(
            read_small(&c(&link), Symlinks::Follow, 100).map(|f| f.bytes),
            Ok(b"x".to_vec())
        );
        let dir = c(&std::env::temp_dir());
        assert_eq!(
            read_small(&dir, Symlinks::Follow, 100),
            Err(FileError::NotRegular)
        );
        // A FIFO with no writer: refused at once, never waited on.
        let fifo = temp("fifo");
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c(&fifo).as_ptr(), 0o600) }, 0);
        assert_eq!(
            read_small(&c(&fifo), Symlinks::Follow, 100),
            Err(FileError::NotRegular)
        );
    }
}
