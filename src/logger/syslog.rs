//! Log lines to the local syslog socket, `/dev/log` (journald's on systemd machines,
//! rsyslog's or syslog-ng's elsewhere), as facility LOG_USER under the program's own name
//! and pid: `<12>curl[4242]: lunar-intercept WARNING: ...`.
//!
//! Not libc's `openlog`/`syslog`: their state is the program's. `openlog` would replace
//! the program's own ident, options and facility (a setuid `sudo` logs to authpriv through
//! them); plain `syslog` keeps a socket open that the program never opened (a daemon that
//! closes every fd, or checks which are open, finds it; a number it reuses would receive
//! our lines), and takes a lock that a `fork` in another thread can leave held in the
//! child forever. Instead each line opens a socket of its own, sends one datagram and
//! closes it: no fd stays open between lines, no lock, nothing a fork or the program can
//! disturb; warnings are rare, and a DEBUG run pays three system calls a line. The socket
//! is non-blocking and the line is dropped when the socket is missing or its queue is
//! full (a program is never stalled by its logging). No timestamp: the receiver stamps
//! the arrival, which is the same moment (and local time would take libc's time-zone
//! lock).

use crate::sys;
use libc::{c_char, c_int, sockaddr, sockaddr_un, socklen_t};
use log::Level;

const PATH: &[u8] = b"/dev/log";
/// LOG_USER: messages of user programs.
const FACILITY: u8 = 1 << 3;
/// Longest program name kept (RFC 3164 allows 32; modern receivers take more).
const MAX_IDENT: usize = 64;

pub fn send(level: Level, message: &str) {
    let line = frame(severity(level), ident(), std::process::id(), message);
    if send_datagram(&line) == Err(libc::EPROTOTYPE) {
        // An old syslog daemon listening on a stream socket: one NUL-terminated line, as
        // libc's syslog sends it there.
        let mut line = line;
        line.push(0);
        let _ = send_stream(&line);
    }
}

fn severity(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// `<PRI>ident[pid]: message` (RFC 3164 without its timestamp).
fn frame(severity: u8, ident: &[u8], pid: u32, message: &str) -> Vec<u8> {
    let mut line = Vec::with_capacity(ident.len() + message.len() + 24);
    line.extend_from_slice(format!("<{}>", FACILITY | severity).as_bytes());
    // Receivers end the name at white space, `[` or `:`; control bytes would break the
    // line. Such bytes in a program's name become `_`.
    line.extend(ident.iter().take(MAX_IDENT).map(|&b| match b {
        b'[' | b']' | b':' => b'_',
        b if b.is_ascii_graphic() || b >= 0x80 => b,
        _ => b'_',
    }));
    line.extend_from_slice(format!("[{pid}]: ").as_bytes());
    line.extend(message.bytes().map(|b| if b == b'\n' { b' ' } else { b }));
    line
}

/// What libc's own syslog names a program by.
fn ident() -> &'static [u8] {
    match crate::sys::program_short_name() {
        Some(name) if !name.is_empty() => name,
        _ => b"lunar-intercept",
    }
}

fn address() -> (sockaddr_un, socklen_t) {
    // SAFETY: an all-zero sockaddr_un is valid (an empty path).
    let mut address: sockaddr_un = unsafe { std::mem::zeroed() };
    address.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (slot, &byte) in address.sun_path.iter_mut().zip(PATH) {
        *slot = byte as c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + PATH.len() + 1;
    (address, len as socklen_t)
}

/// A socket of our own, closed when dropped.
struct Socket(c_int);

impl Socket {
    fn open(kind: c_int) -> Result<Socket, c_int> {
        let kind = kind | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
        // SAFETY: plain socket(2) through libc's own function (ours is a hook).
        let fd = unsafe { sys::socket(libc::AF_UNIX, kind, 0) };
        if fd < 0 {
            return Err(sys::errno());
        }
        Ok(Socket(fd))
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        // SAFETY: our own fd, closed once.
        unsafe { sys::close(self.0) };
    }
}

fn send_datagram(line: &[u8]) -> Result<(), c_int> {
    let socket = Socket::open(libc::SOCK_DGRAM)?;
    let (address, len) = address();
    // SAFETY: a live buffer and a sockaddr_un of `len` bytes, on our own socket.
    let sent = unsafe {
        sys::sendto(
            socket.0,
            line.as_ptr().cast(),
            line.len(),
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            (&address as *const sockaddr_un).cast::<sockaddr>(),
            len,
        )
    };
    if sent < 0 {
        return Err(sys::errno());
    }
    Ok(())
}

fn send_stream(line: &[u8]) -> Result<(), c_int> {
    let socket = Socket::open(libc::SOCK_STREAM)?;
    let (address, len) = address();
    // SAFETY: a sockaddr_un of `len` bytes; a Unix socket connects at once or not at all.
    let connected = unsafe {
        sys::connect(
            socket.0,
            (&address as *const sockaddr_un).cast::<sockaddr>(),
            len,
        )
    };
    if connected != 0 {
        return Err(sys::errno());
    }
    // SAFETY: a live buffer on our own socket.
    let sent = unsafe {
        sys::send(
            socket.0,
            line.as_ptr().cast(),
            line.len(),
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        )
    };
    if sent < 0 {
        return Err(sys::errno());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_names_the_program_and_its_pid() {
        assert_eq!(
            frame(4, b"curl", 4242, "lunar-intercept WARNING: proxy down"),
            b"<12>curl[4242]: lunar-intercept WARNING: proxy down"
        );
        assert_eq!(frame(7, b"x", 1, "m"), b"<15>x[1]: m");
        assert_eq!(frame(3, b"x", 1, "m"), b"<11>x[1]: m");
    }

    #[test]
    fn a_name_that_would_break_the_line_is_mended() {
        assert_eq!(
            frame(4, b"my prog:[1]\n", 7, "a\nb"),
            b"<12>my_prog__1__[7]: a b"
        );
        let long = [b'a'; 100];
        let line = frame(4, &long, 7, "m");
        assert_eq!(line.len(), "<12>".len() + MAX_IDENT + "[7]: m".len());
    }

    #[test]
    fn this_program_has_a_name() {
        let name = ident();
        assert!(!name.is_empty());
        assert!(!name.contains(&0));
    }

    #[test]
    fn the_address_is_dev_log() {
        let (address, len) = address();
        assert_eq!(len as usize, 2 + b"/dev/log".len() + 1);
        assert_eq!(
            address.sun_path[..9]
                .iter()
                .map(|&c| c as u8)
                .collect::<Vec<_>>(),
            b"/dev/log\0"
        );
    }
}
