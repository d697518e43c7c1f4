//! What a hook learns from the connection layer: done on the program's behalf, or the
//! program's own call runs, and why. "Why was this not intercepted?" is a value here; the
//! hook says it in the DEBUG line.

use super::decide::Reason;
use crate::runtime::Why;
use libc::c_int;
use std::net::SocketAddr;

/// The outcome of the program's `connect`.
#[derive(Debug, PartialEq)]
pub enum Connected {
    /// The socket is at the proxy (or this was a repeated connect the kernel answered):
    /// this is what the program's connect returns.
    Done(c_int),
    /// The program's own connect runs, to its destination.
    Real(NotDiverted),
}

/// Why a connect goes to its destination.
#[derive(Debug, PartialEq)]
pub enum NotDiverted {
    /// Not an IPv4/IPv6 address (a Unix socket, AF_UNSPEC).
    NotInet,
    /// The library is inert in this process (no proxy configured, misconfigured, setuid).
    Inert,
    /// A port the library does not intercept, or the proxy itself.
    NotIntercepted,
    /// Not a TCP socket.
    NotTcp,
    /// One of the reasons below, for the connection to `original` (named `name` by the
    /// program's lookup), labelled only when the DEBUG line is written.
    Direct {
        original: SocketAddr,
        name: Option<std::sync::Arc<str>>,
        why: Direct,
    },
}

/// Why a candidate connection goes to its destination (the DEBUG line's reason).
#[derive(Debug, PartialEq)]
pub enum Direct {
    NoDrivableTls,
    IoUring,
    NoMemoryToTrack(c_int),
    /// The filter, a cooldown, or the proxy's handshake said so.
    Route(Why),
    ProxyConnectFailed,
    /// TLS to the proxy was asked for, and the process has no OpenSSL to speak it with.
    NoTlsForProxy,
}

impl NotDiverted {
    /// The DEBUG line for a candidate connection; `None` for a connect that was never one
    /// (said for every such connect, it would drown the log).
    pub fn debug_line(&self) -> Option<String> {
        let NotDiverted::Direct {
            original,
            name,
            why,
        } = self
        else {
            return None;
        };
        let label = Label {
            original: *original,
            name: name.as_deref(),
        };
        let why = match why {
            Direct::NoDrivableTls => "https, and no TLS library we can drive is loaded".into(),
            Direct::IoUring => "io_uring in use in this process".into(),
            Direct::NoMemoryToTrack(fd) => format!("no memory to track fd {fd}"),
            Direct::Route(why) => why.to_string(),
            Direct::ProxyConnectFailed => "proxy connect failed".into(),
            Direct::NoTlsForProxy => "no TLS library for the proxy link".into(),
        };
        Some(format!("{label} -> direct ({why})"))
    }
}

/// Where a connection was going, as log lines name it: `name:port` when the program
/// resolved a name, else `ip:port`.
#[derive(Debug, PartialEq)]
pub struct Label<'a> {
    pub original: SocketAddr,
    pub name: Option<&'a str>,
}

impl std::fmt::Display for Label<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.name {
            Some(name) => write!(f, "{name}:{}", self.original.port()),
            None => crate::addr::canonical(self.original).fmt(f),
        }
    }
}

/// The outcome of the program's write on a tracked fd.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Done on the program's behalf: the count to return, or -1 with errno set.
    Done(isize),
    /// The program's own call runs unchanged.
    Bypass(Bypass),
}

/// Why a write on a tracked fd runs as the program made it.
#[derive(Debug, PartialEq)]
pub enum Bypass {
    /// The fd number no longer names the socket we tracked (closed behind our back).
    NotOurSocket,
    /// The connection passes bytes only.
    BytesOnly,
    /// The connection went to its origin for good just now.
    WentDirect(Reason),
}
