//! Moving a socket to another peer: the SAME fd is disconnected and connected again, so
//! its epoll registrations, flags and options stay as the program set them (a `dup2` of a
//! fresh socket would silently leave the program's epoll sets).

use super::Conn;
use crate::proxy::socket::{connect_bounded, disconnect};
use crate::runtime::{Route, Runtime};
use libc::c_int;
use std::sync::atomic::Ordering;

/// An origin that takes longer than this to accept is treated as down; the program gets
/// the connect error as its write's error.
const ORIGIN_CONNECT_TIMEOUT_MS: u64 = 30_000;

impl Conn {
    /// Moves the socket to `to`. If the proxy cannot be reached the socket goes to the
    /// original destination instead (a counted failsafe failure). Returns where it ended,
    /// or the errno of a failed connect to the original destination.
    pub(super) fn move_to(&self, fd: c_int, to: Route, runtime: &Runtime) -> Result<Route, c_int> {
        if self.peer() == to {
            return Ok(to);
        }
        self.move_epoch.fetch_add(1, Ordering::AcqRel);
        disconnect(fd);
        let result = match to {
            Route::Proxy(proxy) => {
                match connect_bounded(fd, proxy, runtime.config.connect_timeout_ms) {
                    Ok(()) => {
                        runtime.failsafe.record_success();
                        Ok(to)
                    }
                    Err(errno) => {
                        let reason = std::io::Error::from_raw_os_error(errno);
                        runtime.proxy_failed(&format!("connect to {proxy}: {reason}"));
                        self.connect_origin(fd)
                    }
                }
            }
            Route::Origin => self.connect_origin(fd),
        };
        if let Ok(route) = result {
            self.set_peer(route);
        }
        self.move_epoch.fetch_add(1, Ordering::AcqRel);
        result
    }

    fn connect_origin(&self, fd: c_int) -> Result<Route, c_int> {
        connect_bounded(fd, self.original, ORIGIN_CONNECT_TIMEOUT_MS).map(|()| Route::Origin)
    }

    /// Whether a read that began at `epoch` may have seen the old peer go away.
    pub(super) fn moved_since(&self, epoch: u32) -> bool {
        epoch % 2 == 1 || self.move_epoch.load(Ordering::Acquire) != epoch
    }

    pub(super) fn epoch(&self) -> u32 {
        self.move_epoch.load(Ordering::Acquire)
    }
}
