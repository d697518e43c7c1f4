//! Moving a socket to another peer: the SAME fd is disconnected and connected again, so
//! its epoll registrations, flags and options stay as the program set them (a `dup2` of a
//! fresh socket would silently leave the program's epoll sets).

use super::{Conn, Phase, State};
use crate::runtime::{Route, Runtime};
use crate::sys::socket::{connect_bounded, connect_finish, connect_start_in_any_mode, disconnect};
use libc::c_int;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// An origin that takes longer than this to accept is treated as down; the program gets
/// the connect error as its write's error.
const ORIGIN_CONNECT_TIMEOUT_MS: u64 = 30_000;

impl Conn {
    /// Moves the socket to `to` (a fresh connection even when it is there already). If the proxy cannot be reached the socket goes to the
    /// original destination instead (a counted failsafe failure). Returns where it ended,
    /// or the errno of a failed connect to the original destination.
    pub(super) fn move_to(&self, fd: c_int, to: Route, runtime: &Runtime) -> Result<Route, c_int> {
        // connect(AF_UNSPEC) on a number reused behind our back would cut another
        // connection of the program.
        if !self.still_ours(fd) {
            return Err(libc::ENOTSOCK);
        }
        // A connect to the proxy still pending ends here: the move decides where it goes;
        // so does a silence waiting to be judged.
        super::connecting::settle_all(self);
        self.count_move();
        self.link_down();
        disconnect(fd);
        #[cfg(feature = "race-probe")]
        crate::race_probe::after_disconnect();
        let result = match to {
            Route::Proxy(proxy) => match self.reach_proxy(fd, proxy, runtime) {
                Ok(()) => Ok(to),
                Err(why) => {
                    runtime.proxy_failed(&why);
                    // A TLS handshake that failed left the socket at the proxy.
                    disconnect(fd);
                    self.connect_origin(fd)
                }
            },
            Route::Origin => self.connect_origin(fd),
        };
        self.after_move(&result);
        self.count_move();
        result
    }

    /// The phase after a move: where it ended; a socket a failed move left unconnected is
    /// the kernel's from then on (the program's calls get its errors, as a failed connect
    /// to its origin would have given).
    fn after_move(&self, result: &Result<Route, c_int>) {
        match result {
            Ok(route) => self.moved(*route),
            Err(errno) => {
                if super::decide::is_connect_failure(*errno) {
                    // Left before the phase changes: a program woken by the failed
                    // connect's event finds it at its next call.
                    self.state.lock().left_error = *errno;
                }
                self.enter(Phase::Passthrough(Route::Origin))
            }
        }
    }

    /// The error a failed move left for the program (`State::left_error`), once. `seen`:
    /// the state the caller looked at; no lock is taken when it shows none.
    pub(super) fn take_left_error(&self, seen: &State) -> Option<i32> {
        if seen.left_error == 0 {
            return None;
        }
        let errno = std::mem::take(&mut self.state.lock().left_error);
        (errno != 0).then_some(errno)
    }

    /// Connects `fd` to `proxy` (and makes our TLS session there, over TLS), bounded by
    /// the proxy's connect timeout; `Err`: what failed, for the failsafe's warning.
    fn reach_proxy(&self, fd: c_int, proxy: SocketAddr, runtime: &Runtime) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_millis(runtime.config.connect_timeout_ms);
        connect_bounded(fd, self.family, proxy, runtime.config.connect_timeout_ms).map_err(
            |errno| {
                let reason = std::io::Error::from_raw_os_error(errno);
                format!("connect to {proxy}: {reason}")
            },
        )?;
        self.secure(fd, proxy, runtime, deadline)
    }

    fn count_move(&self) {
        let mut state = self.state.lock();
        state.moves = state.moves.wrapping_add(1);
    }

    fn connect_origin(&self, fd: c_int) -> Result<Route, c_int> {
        connect_bounded(
            fd,
            self.family,
            self.origin_address(),
            ORIGIN_CONNECT_TIMEOUT_MS,
        )?;
        self.greet_relay(fd)?;
        Ok(Route::Origin)
    }

    /// A language hook's relay reads the greeting before anything of the program's (the
    /// unanswered requests follow it); other origins get nothing.
    fn greet_relay(&self, fd: c_int) -> Result<(), c_int> {
        match self.relay.get() {
            Some(relay) => {
                super::send_all::send_all(self, fd, relay.greeting(), libc::MSG_NOSIGNAL)
            }
            None => Ok(()),
        }
    }

    /// The first half of a move: dissolve and start the new connect, without waiting.
    /// Done in the program's own thread (inside its read), so its poller never sees the
    /// socket between peers: when it looks again the socket is connecting, which raises
    /// no event; a blocking program's read then waits for the recovery.
    pub(super) fn begin_move(&self, fd: c_int, to: SocketAddr) -> Result<(), c_int> {
        if !self.still_ours(fd) {
            return Err(libc::ENOTSOCK);
        }
        super::connecting::settle_all(self);
        self.count_move();
        self.link_down();
        disconnect(fd);
        let deadline = Instant::now() + Duration::from_millis(ORIGIN_CONNECT_TIMEOUT_MS);
        let started = connect_start_in_any_mode(fd, self.family, to, deadline).map(|_| ());
        self.count_move();
        started
    }

    /// The second half: wait until the connect started by `begin_move` is done. A proxy
    /// that fails now sends the socket to the original destination (blocking this helper
    /// thread, not the program).
    pub(super) fn finish_move(
        &self,
        fd: c_int,
        to: Route,
        runtime: &Runtime,
    ) -> Result<Route, c_int> {
        let timeout_ms = match to {
            Route::Proxy(_) => runtime.config.connect_timeout_ms,
            Route::Origin => ORIGIN_CONNECT_TIMEOUT_MS,
        };
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        let finished = connect_finish(fd, deadline);
        let result = match (finished, to) {
            // The program is closing the fd (`fd_hold`): nothing failed.
            (Err(errno), _) if self.asked_to_let_go() => Err(errno),
            (Ok(()), Route::Origin) => self.greet_relay(fd).map(|()| to),
            (Ok(()), Route::Proxy(proxy)) => match self.secure(fd, proxy, runtime, deadline) {
                Ok(()) => Ok(to),
                Err(_) if self.asked_to_let_go() => Err(libc::ECANCELED),
                Err(why) => {
                    runtime.proxy_failed(&why);
                    self.move_to(fd, Route::Origin, runtime)
                }
            },
            (Err(errno), Route::Proxy(proxy)) => {
                let reason = std::io::Error::from_raw_os_error(errno);
                runtime.proxy_failed(&format!("connect to {proxy}: {reason}"));
                self.move_to(fd, Route::Origin, runtime)
            }
            (Err(errno), Route::Origin) => Err(errno),
        };
        self.after_move(&result);
        result
    }

    /// Whether a read that began at `epoch` may have seen the old peer go away.
    pub(super) fn moved_since(&self, epoch: u32) -> bool {
        self.state.lock().moved_since(epoch)
    }

    pub(super) fn epoch(&self) -> u32 {
        self.state.lock().moves
    }
}
