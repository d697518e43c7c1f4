//! A real session of ours at the origin (`Session::fallback`) serves the program's reads
//! and writes with their plaintext shown to the connection layer (`conn::tls_plain`), so
//! that each later request is routed when it is sent: the session returns to the proxy
//! (virtual again) when the failsafe lets it. As `tls::openssl::follow`.

use super::fallback::{recv_real, send_real};
use super::{real, GnutlsSession, GNUTLS_E_PUSH_ERROR};
use crate::conn::tls_plain::{self, PlainWrite, RealTls};
use crate::guard::Reentry;
use crate::sys::socket::wait_for;
use crate::tls::sessions::Session;
use libc::c_int;
use std::time::{Duration, Instant};

/// How long a head we held may wait for room in the real session.
const HEAD_SEND_TIMEOUT: Duration = Duration::from_secs(60);
const GNUTLS_E_AGAIN: isize = -28;
const GNUTLS_E_INTERRUPTED: isize = -52;
/// `gnutls_bye`'s GNUTLS_SHUT_WR: close_notify sent, the peer's not awaited.
const GNUTLS_SHUT_WR: c_int = 1;

/// The program's read from the real session; what it got is counted.
pub(super) fn recv(session: &Session, real_session: GnutlsSession, out: &mut [u8]) -> isize {
    let got = recv_real(real_session, out);
    if got > 0 {
        tls_plain::delivered(&session.conn, &out[..got as usize]);
    }
    got
}

/// How a write into the real session ended, for `gnutls::send`.
pub(super) enum Sent {
    /// The call returns this (a count, or GnuTLS's error code).
    Done(isize),
    /// The session serving the program changed after this many bytes: go on with it.
    Switched(usize),
}

/// The program's send of `data` into the real session.
pub(super) fn send(session: &Session, real_session: GnutlsSession, data: &[u8]) -> Sent {
    let mut real = Real {
        session,
        real_session,
    };
    match tls_plain::write(&session.conn, session.fd, data, &mut real) {
        PlainWrite::Taken(n) => Sent::Done(n as isize),
        PlainWrite::Switched(n) => Sent::Switched(n),
        // What was taken is the program's count; the error comes with its next call
        // (GnuTLS's sends may be partial).
        PlainWrite::Failed(0, error) => Sent::Done(error),
        PlainWrite::Failed(n, _) => Sent::Done(n as isize),
        PlainWrite::Broken(n, errno) => {
            session.state.lock().fallback_failed = true;
            crate::sys::set_errno(errno);
            Sent::Done(if n > 0 {
                n as isize
            } else {
                GNUTLS_E_PUSH_ERROR as isize
            })
        }
    }
}

struct Real<'a> {
    session: &'a Session,
    real_session: GnutlsSession,
}

impl RealTls for Real<'_> {
    type Error = isize;

    fn send(&mut self, bytes: &[u8]) -> Result<usize, isize> {
        match send_real(self.real_session, bytes) {
            sent if sent >= 0 => Ok(sent as usize),
            error => Err(error),
        }
    }

    fn send_all(&mut self, bytes: &[u8]) -> Result<(), isize> {
        let deadline = Instant::now() + HEAD_SEND_TIMEOUT;
        let mut rest = bytes;
        while !rest.is_empty() {
            match send_real(self.real_session, rest) {
                sent if sent >= 0 => rest = &rest[sent as usize..],
                GNUTLS_E_AGAIN | GNUTLS_E_INTERRUPTED => {
                    if wait_for(self.session.fd, libc::POLLOUT, deadline).is_err() {
                        return Err(GNUTLS_E_PUSH_ERROR as isize);
                    }
                }
                error => return Err(error),
            }
        }
        Ok(())
    }

    fn end(&mut self) {
        let _inside = Reentry::enter();
        // SAFETY: a live session: ours (forgotten first and deinitialised once, so no call
        // of the program's reaches it afterwards) or the program's own (never freed here).
        let sent = unsafe {
            let sent = real::gnutls_bye(self.real_session, GNUTLS_SHUT_WR) == 0;
            let programs = {
                let mut state = self.session.state.lock();
                state.fallback = 0;
                std::mem::take(&mut state.fallback_is_programs)
            };
            // The program's own is the program's to deinit (its session, virtual now).
            if !programs {
                real::gnutls_deinit(self.real_session);
            }
            sent
        };
        log::debug!(
            "https: real session to the origin ended on fd {} ({}, {})",
            self.session.fd,
            self.session.host,
            if sent {
                "close_notify sent"
            } else {
                "close_notify could not be sent"
            }
        );
    }
}
