//! What the kernel knows of an epoll instance's registrations: `/proc/self/fdinfo/<epoll>`
//! lists each watched file on a line of its own,
//! `tfd: %8d events: %8x data: %16llx  pos:%lli ino:%lx sdev:%x` (fs/eventpoll.c,
//! `ep_show_fdinfo`). An event loop may register a socket before its connect (nginx
//! does), when the library does not track it yet: this is where such a registration is
//! learned, when it matters (`watchers::learn_from_kernel`).

use crate::sys::file::{read_small, Symlinks};
use libc::c_int;
use std::ffi::CString;

/// One registration, as the kernel shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelRegistration {
    /// The fd number the registration was made with (it may have been closed since,
    /// the file living on through a dup).
    pub fd: c_int,
    pub events: u32,
    pub data: u64,
    pub file: FileId,
}

/// A file's inode and device, as the kernel prints them: `sdev` is the kernel's own
/// encoding (major << 20 | minor), not stat's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    pub inode: u64,
    pub major: u32,
    pub minor: u32,
}

impl FileId {
    /// The file `fd` names now.
    pub fn of(fd: c_int) -> Option<FileId> {
        // SAFETY: an all-zero stat is a valid value to be overwritten.
        let mut status: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat into a local stat; fstat is not one of our hooks.
        if unsafe { libc::fstat(fd, &mut status) } != 0 {
            return None;
        }
        Some(FileId {
            inode: status.st_ino,
            major: libc::major(status.st_dev),
            minor: libc::minor(status.st_dev),
        })
    }
}

/// The largest fdinfo read: ~90 bytes a registration, so some 90,000 of them.
const LIMIT: usize = 8 << 20;

/// `epoll`'s registrations, or `None` when they cannot be read (no /proc, not an epoll).
pub fn registrations_of(epoll: c_int) -> Option<Vec<KernelRegistration>> {
    let path = CString::new(format!("/proc/self/fdinfo/{epoll}")).ok()?;
    let file = read_small(&path, Symlinks::Follow, LIMIT).ok()?;
    Some(parse(&file.bytes).collect())
}

/// The `tfd:` lines of an epoll fdinfo; any other line, or one that does not read as the
/// kernel's format, is skipped.
pub fn parse(text: &[u8]) -> impl Iterator<Item = KernelRegistration> + '_ {
    text.split(|&b| b == b'\n').filter_map(parse_line)
}

fn parse_line(line: &[u8]) -> Option<KernelRegistration> {
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split_ascii_whitespace();
    if words.next()? != "tfd:" {
        return None;
    }
    let fd = words.next()?.parse().ok()?;
    let mut value_of = |key: &str| {
        let word = words.find(|w| w.starts_with(key))?;
        match &word[key.len()..] {
            "" => words.next(),
            glued => Some(glued),
        }
    };
    let hex = |text: Option<&str>| text.and_then(|t| u64::from_str_radix(t, 16).ok());
    let events = hex(value_of("events:"))?;
    let data = hex(value_of("data:"))?;
    let inode = hex(value_of("ino:"))?;
    let sdev = hex(value_of("sdev:"))?;
    Some(KernelRegistration {
        fd,
        events: u32::try_from(events).ok()?,
        data,
        file: FileId {
            inode,
            major: (sdev >> 20) as u32,
            minor: (sdev & 0xf_ffff) as u32,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_kernels_lines() {
        let text = b"pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t2063\n\
tfd:        5 events: 80002019 data:     55d0c8a1f2e0  pos:0 ino:61af sdev:8\n\
tfd:       12 events:       19 data:                c  pos:0 ino:1234abcd sdev:100003\n";
        let found: Vec<_> = parse(text).collect();
        assert_eq!(
            found,
            vec![
                KernelRegistration {
                    fd: 5,
                    events: 0x8000_2019,
                    data: 0x55d0_c8a1_f2e0,
                    file: FileId {
                        inode: 0x61af,
                        major: 0,
                        minor: 8
                    },
                },
                KernelRegistration {
                    fd: 12,
                    events: 0x19,
                    data: 0xc,
                    file: FileId {
                        inode: 0x1234_abcd,
                        major: 1,
                        minor: 3
                    },
                },
            ]
        );
    }

    #[test]
    fn skips_what_does_not_read_as_a_registration() {
        let text = b"tfd: x events: 1 data: 2 pos:0 ino:3 sdev:4\n\
tfd: 3 events: 1 data: 2 pos:0\n\
tfd: 4 events: zz data: 2 pos:0 ino:3 sdev:4\n\
tfd: 7 events: 1 data: ffffffffffffffff pos:0 ino:3 sdev:4";
        let found: Vec<_> = parse(text).collect();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].fd, 7);
        assert_eq!(found[0].data, u64::MAX);
    }

    #[test]
    fn reads_a_real_epoll_instance() {
        // SAFETY: plain system calls on fds this test owns.
        unsafe {
            let epoll = libc::epoll_create1(libc::EPOLL_CLOEXEC);
            let mut fds = [0; 2];
            assert_eq!(
                libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()),
                0
            );
            let asked = (libc::EPOLLIN | libc::EPOLLET | libc::EPOLLRDHUP) as u32;
            let mut event = libc::epoll_event {
                events: asked,
                u64: 0xfeed_f00d_1234,
            };
            assert_eq!(
                libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fds[1], &mut event),
                0
            );
            let found = registrations_of(epoll).expect("fdinfo");
            let id = FileId::of(fds[1]).unwrap();
            assert_eq!(
                found,
                vec![KernelRegistration {
                    fd: fds[1],
                    // Every registration is for errors and hang-ups too.
                    events: asked | (libc::EPOLLERR | libc::EPOLLHUP) as u32,
                    data: 0xfeed_f00d_1234,
                    file: id,
                }]
            );
            assert_ne!(Some(id), FileId::of(fds[0]));
            for fd in [epoll, fds[0], fds[1]] {
                libc::close(fd);
            }
        }
    }
}
