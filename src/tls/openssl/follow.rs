//! A real session of ours at the origin (`Session::fallback`) serves the program's reads
//! and writes with their plaintext shown to the connection layer (`conn::tls_plain`), so
//! that each later request is routed when it is sent: the session returns to the proxy
//! (virtual again) when the failsafe lets it.

use super::fallback::{drive, read_real, write_real};
use super::{real, Ssl, SSL_ERROR_NONE, SSL_ERROR_SYSCALL};
use crate::conn::tls_plain::{self, PlainWrite, RealTls};
use crate::guard::Reentry;
use crate::tls::sessions::Session;
use libc::{c_int, size_t};
use std::time::{Duration, Instant};

/// How long a head we held may wait for room in the real session (as a rewritten head
/// on a plain socket may, `conn::write`).
const HEAD_SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// The program's read from the real session `real_ssl`; what it got is counted.
pub(super) fn read(
    session: &Session,
    real_ssl: Ssl,
    out: &mut [u8],
    peek: bool,
) -> Result<usize, c_int> {
    let result = read_real(session, real_ssl, out, peek);
    if let (Ok(count), false) = (result, peek) {
        tls_plain::delivered(&session.conn, &out[..count]);
    }
    result
}

/// How a write into the real session ended, for `openssl::write`.
pub(super) enum Wrote {
    /// `done` bytes in all; the call succeeds (or goes on after a switch).
    Taken(usize),
    /// The session serving the program changed after `done` bytes: go on with it.
    Switched(usize),
    /// The call fails with this `SSL_get_error` code after `done` bytes.
    Failed(usize, c_int),
}

/// The program's write of `input` into the real session `real_ssl`.
pub(super) fn write(session: &Session, real_ssl: Ssl, input: &[u8]) -> Wrote {
    let mut real = Real {
        session,
        ssl: real_ssl,
    };
    match tls_plain::write(&session.conn, session.fd, input, &mut real) {
        PlainWrite::Taken(n) => Wrote::Taken(n),
        PlainWrite::Switched(n) => Wrote::Switched(n),
        PlainWrite::Failed(n, error) => Wrote::Failed(n, error),
        PlainWrite::Broken(n, errno) => {
            let mut state = session.state.lock();
            state.fallback_failed = true;
            state.last_error = SSL_ERROR_SYSCALL;
            crate::sys::set_errno(errno);
            Wrote::Failed(n, SSL_ERROR_SYSCALL)
        }
    }
}

struct Real<'a> {
    session: &'a Session,
    ssl: Ssl,
}

impl RealTls for Real<'_> {
    type Error = c_int;

    fn send(&mut self, bytes: &[u8]) -> Result<usize, c_int> {
        write_real(self.session, self.ssl, bytes)
    }

    fn send_all(&mut self, bytes: &[u8]) -> Result<(), c_int> {
        let _inside = Reentry::enter();
        let deadline = Instant::now() + HEAD_SEND_TIMEOUT;
        let mut rest = bytes;
        while !rest.is_empty() {
            let mut count: size_t = 0;
            // SAFETY: our live SSL; `rest` is readable.
            let sent = drive(self.ssl, deadline, || unsafe {
                real::SSL_write_ex(self.ssl, rest.as_ptr().cast(), rest.len(), &mut count)
            });
            if sent.is_err() {
                self.session.state.lock().last_error = SSL_ERROR_SYSCALL;
                return Err(SSL_ERROR_SYSCALL);
            }
            rest = &rest[count..];
        }
        Ok(())
    }

    fn end(&mut self) {
        let _inside = Reentry::enter();
        // close_notify to the origin; its own is not waited for (the socket moves now).
        // SAFETY: a live SSL: ours (freed once, forgotten first, so no call of the
        // program's reaches it afterwards) or the program's own (never freed here).
        let sent = unsafe {
            let sent = real::SSL_shutdown(self.ssl) >= 0;
            let programs = {
                let mut state = self.session.state.lock();
                state.fallback = 0;
                state.last_error = SSL_ERROR_NONE;
                std::mem::take(&mut state.fallback_is_programs)
            };
            // The program's own is the program's to free (its session, virtual now).
            if !programs {
                real::SSL_free(self.ssl);
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
