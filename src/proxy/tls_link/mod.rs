//! Our own TLS client to Lunar Proxy (`LUNAR_PROXY_SUPPORT_TLS=1`): one OpenSSL session on a
//! socket of ours, the proxy verified as an https client verifies a server: its chain
//! against the system's CA store (what OpenSSL uses by default) plus `LUNAR_PROXY_CA_FILE`,
//! and its name against the host of `LUNAR_PROXY_HOST` (an IP literal against an IP SAN).
//!
//! Every wait is a `poll` bounded by the caller's deadline; a failure is a sentence naming
//! its reason as OpenSSL gives it (`certificate verify failed: hostname mismatch`, `TLS
//! handshake failed: wrong version number`, ...), which the caller logs once.

mod bio;
mod openssl;
mod shared;

use crate::sys::socket::wait_for;
use bio::Transport;
use libc::{c_char, c_int};
use openssl::{OpenSsl, Ssl};
use std::cell::Cell;
use std::ffi::{CStr, CString};
use std::net::IpAddr;
use std::time::{Duration, Instant};

const SSL_CTRL_SET_TLSEXT_HOSTNAME: c_int = 55;
const TLSEXT_NAMETYPE_HOST_NAME: libc::c_long = 0;
const SSL_ERROR_SSL: c_int = 1;
const SSL_ERROR_WANT_READ: c_int = 2;
const SSL_ERROR_WANT_WRITE: c_int = 3;
const SSL_ERROR_ZERO_RETURN: c_int = 6;
const SSL_CTRL_MODE: c_int = 33;
const TLS1_3_VERSION: c_int = 0x0304;
const SSL_SENT_SHUTDOWN: c_int = 1;
const SSL_RECEIVED_SHUTDOWN: c_int = 2;
/// A write returns after each record, and may be retried from a moved buffer: the data
/// path writes from the program's memory, which is not the same on a retry.
const SSL_MODE_ENABLE_PARTIAL_WRITE: libc::c_long = 0x1;
const SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER: libc::c_long = 0x2;
const X509_V_OK: libc::c_long = 0;
/// ALPN: the proxy speaks HTTP/1.1 with us, whatever else it offers.
const ALPN_HTTP_1_1: &[u8] = b"\x08http/1.1";

pub fn after_fork_in_child() {
    shared::after_fork_in_child();
}

/// The OpenSSL our link uses, found or loaded now; why there is none.
pub fn library() -> Result<(), &'static str> {
    openssl::get().map(|_| ())
}

/// Whom the proxy must prove to be.
#[derive(Debug, Clone, Copy)]
pub struct Trust<'a> {
    /// The host of `LUNAR_PROXY_HOST`: a DNS name (SNI and name check) or an IP literal.
    pub host: &'a str,
    /// `LUNAR_PROXY_CA_FILE`, trusted beside the system's store.
    pub ca_file: Option<&'a str>,
}

impl Trust<'_> {
    /// What the chain is checked against, for messages.
    pub fn anchors(&self) -> String {
        match self.ca_file {
            Some(file) => format!("the system's CA store and {file}"),
            None => "the system's CA store".to_string(),
        }
    }
}

/// What one non-blocking step of the session came to (`Link::read`, `Link::write`).
#[derive(Debug, PartialEq, Eq)]
pub enum Io {
    /// This many bytes of plaintext were read, peeked or taken.
    Done(usize),
    /// The proxy ended the session (close_notify, or the connection's end).
    End,
    /// Nothing until the socket is readable.
    WantRead,
    /// Nothing until the socket is writable (a record is half sent: the same call must
    /// be made again).
    WantWrite,
    /// The session broke: the errno a socket call would report, and OpenSSL's reason.
    Broken(c_int, String),
}

/// A verified TLS session with the proxy on a connected socket the caller owns.
pub struct Link {
    api: &'static OpenSsl,
    ssl: Ssl,
    /// The BIO's data: boxed so that its address stays put while the link moves.
    transport: Box<Transport>,
    /// The session failed (an error other than a wait): its ticket must not be reused.
    broken: Cell<bool>,
}

impl Link {
    /// The TLS handshake on connected `fd`, verified against `trust`, by `deadline`.
    pub fn connect(fd: c_int, trust: Trust<'_>, deadline: Instant) -> Result<Link, String> {
        let api = openssl::get().map_err(str::to_string)?;
        let transport = Box::new(Transport {
            fd,
            last_errno: Cell::new(0),
            saw_end: Cell::new(false),
        });
        let ctx = shared::context(api, trust.ca_file)?;
        // SAFETY: the process's context; the session is freed by `Link`'s drop.
        let ssl = unsafe { (api.SSL_new)(ctx) };
        let link = Link {
            api,
            ssl,
            transport,
            broken: Cell::new(false),
        };
        if ssl.is_null() {
            return Err("TLS: cannot make a session".to_string());
        }
        let bio = bio::new(api, &link.transport).ok_or("TLS: cannot make a BIO")?;
        // SAFETY: our session takes the one reference of our BIO, for reading and writing.
        unsafe {
            (api.SSL_set_bio)(ssl, bio, bio);
            (api.SSL_set_connect_state)(ssl);
            (api.SSL_ctrl)(
                ssl,
                SSL_CTRL_MODE,
                SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER,
                std::ptr::null_mut(),
            );
        }
        link.expect(trust.host)?;
        shared::offer_latest(api, ssl);
        let started = Instant::now();
        link.drive(deadline, "TLS handshake", |api, ssl| {
            // SAFETY: our live session.
            unsafe { (api.SSL_do_handshake)(ssl) }
        })
        .map_err(|(_, why)| why)?;
        link.take_tickets(started.elapsed(), deadline);
        Ok(link)
    }

    /// A TLS 1.3 server sends its session tickets right after the handshake, as records
    /// of their own. Left in the socket they would make it readable with nothing for the
    /// program to read (a read that answers EAGAIN after poll said readable breaks
    /// programs that trust poll, wrk among them), so they are read now: within about one
    /// more round trip (the handshake's time, at least a millisecond, and no later than
    /// `deadline`); a server that sends none costs that wait.
    fn take_tickets(&self, handshake: Duration, deadline: Instant) {
        // SAFETY: our live, connected session.
        if unsafe { (self.api.SSL_version)(self.ssl) } != TLS1_3_VERSION {
            return;
        }
        let until = deadline.min(Instant::now() + handshake.max(Duration::from_millis(1)));
        let mut first = true;
        loop {
            // The first batch is waited for; more only if already there.
            let left = match first {
                true => until.saturating_duration_since(Instant::now()),
                false => Duration::ZERO,
            };
            if !readable_within(self.transport.fd, left) {
                return;
            }
            // Reads what arrived: tickets are processed, and a peek finds no plaintext.
            if self.read(&mut [0u8; 1], true) != Io::WantRead {
                return;
            }
            first = false;
        }
    }

    /// Whether the session holds part of a record: the rest is on its way.
    pub fn inside_record(&self) -> bool {
        // SAFETY: our live session.
        unsafe {
            (self.api.SSL_has_pending)(self.ssl) == 1 && (self.api.SSL_pending)(self.ssl) == 0
        }
    }

    /// The name (SNI and the certificate's DNS SAN) or address (IP SAN) the proxy must
    /// have, and ALPN http/1.1.
    fn expect(&self, host: &str) -> Result<(), String> {
        let api = self.api;
        let text = CString::new(host).map_err(|_| format!("TLS: bad host {host:?}"))?;
        // SAFETY: our live session and NUL-terminated strings that outlive the calls
        // (OpenSSL copies them).
        let set = unsafe {
            if host.parse::<IpAddr>().is_ok() {
                (api.X509_VERIFY_PARAM_set1_ip_asc)((api.SSL_get0_param)(self.ssl), text.as_ptr())
                    == 1
            } else {
                (api.SSL_set1_host)(self.ssl, text.as_ptr()) == 1
                    && (api.SSL_ctrl)(
                        self.ssl,
                        SSL_CTRL_SET_TLSEXT_HOSTNAME,
                        TLSEXT_NAMETYPE_HOST_NAME,
                        text.as_ptr().cast_mut().cast(),
                    ) == 1
            }
        };
        // SAFETY: our live session; ALPN is copied.
        let alpn = unsafe {
            (api.SSL_set_alpn_protos)(self.ssl, ALPN_HTTP_1_1.as_ptr(), ALPN_HTTP_1_1.len() as _)
        };
        match set && alpn == 0 {
            true => Ok(()),
            false => Err(format!("TLS: cannot check the proxy's name {host:?}")),
        }
    }

    /// Whether the handshake resumed an earlier session (no certificate exchange).
    pub fn resumed(&self) -> bool {
        // SAFETY: our live session.
        unsafe { (self.api.SSL_session_reused)(self.ssl) == 1 }
    }

    /// "TLSv1.3, TLS_AES_256_GCM_SHA384".
    pub fn description(&self) -> String {
        let api = self.api;
        // SAFETY: our live, connected session; the strings are OpenSSL's static ones.
        unsafe {
            let version = text_of((api.SSL_get_version)(self.ssl));
            let cipher = (api.SSL_get_current_cipher)(self.ssl);
            let cipher = match cipher.is_null() {
                true => String::new(),
                false => text_of((api.SSL_CIPHER_get_name)(cipher)),
            };
            format!("{version}, {cipher}")
        }
    }

    /// Sends all of `bytes` by `deadline`.
    pub fn write_all(&mut self, mut bytes: &[u8], deadline: Instant) -> Result<(), String> {
        while !bytes.is_empty() {
            let chunk = bytes.len().min(c_int::MAX as usize);
            let sent = self
                .drive(deadline, "TLS write", |api, ssl| {
                    // SAFETY: our live session and `chunk` readable bytes.
                    unsafe { (api.SSL_write)(ssl, bytes.as_ptr().cast(), chunk as c_int) }
                })
                .map_err(|(_, why)| why)?;
            bytes = &bytes[sent as usize..];
        }
        Ok(())
    }

    /// Everything the proxy sends until it closes (or `limit` bytes), by `deadline`.
    pub fn read_to_end(&mut self, limit: usize, deadline: Instant) -> Result<Vec<u8>, String> {
        let mut answer = Vec::new();
        let mut chunk = [0u8; 4096];
        while answer.len() < limit {
            let got = self.drive(deadline, "TLS read", |api, ssl| {
                // SAFETY: our live session and a local buffer of this size.
                unsafe { (api.SSL_read)(ssl, chunk.as_mut_ptr().cast(), chunk.len() as c_int) }
            });
            match got {
                Ok(n) => answer.extend_from_slice(&chunk[..n as usize]),
                // The end of the stream: with close_notify, or (a proxy that just closes)
                // without, which OpenSSL 3 reports as an error; the answer is judged whole
                // by its parser either way.
                Err((SSL_ERROR_ZERO_RETURN, _)) => break,
                Err(_) if self.transport.saw_end.get() => break,
                Err((_, why)) => return Err(why),
            }
        }
        Ok(answer)
    }

    /// Reads (or, `peek`, looks at) the plaintext of the next record into `into`, without
    /// waiting: the socket is read with MSG_DONTWAIT.
    pub fn read(&self, into: &mut [u8], peek: bool) -> Io {
        if into.is_empty() {
            return Io::Done(0);
        }
        let len = into.len().min(c_int::MAX as usize) as c_int;
        let call = if peek {
            self.api.SSL_peek
        } else {
            self.api.SSL_read
        };
        // SAFETY: our live session and `len` writable bytes.
        self.outcome(|ssl| unsafe { call(ssl, into.as_mut_ptr().cast(), len) })
    }

    /// Encrypts and sends `bytes` (at least one record of them), without waiting. After
    /// `WantWrite` the same bytes must be offered again (a record of them is half sent).
    pub fn write(&self, bytes: &[u8]) -> Io {
        if bytes.is_empty() {
            return Io::Done(0);
        }
        let len = bytes.len().min(c_int::MAX as usize) as c_int;
        let call = self.api.SSL_write;
        // SAFETY: our live session and `len` readable bytes.
        self.outcome(|ssl| unsafe { call(ssl, bytes.as_ptr().cast(), len) })
    }

    /// Whether decrypted bytes wait in the session: the socket does not show them.
    pub fn holds_plaintext(&self) -> bool {
        // SAFETY: our live session.
        unsafe { (self.api.SSL_pending)(self.ssl) > 0 }
    }

    fn outcome(&self, call: impl FnOnce(Ssl) -> c_int) -> Io {
        let api = self.api;
        // SAFETY: clears this thread's OpenSSL error queue, so that a reason read below
        // is this call's.
        unsafe { (api.ERR_clear_error)() };
        self.transport.last_errno.set(0);
        let result = call(self.ssl);
        if result > 0 {
            return Io::Done(result as usize);
        }
        // SAFETY: our live session and the result of its last call.
        let error = unsafe { (api.SSL_get_error)(self.ssl, result) };
        match error {
            SSL_ERROR_WANT_READ => Io::WantRead,
            SSL_ERROR_WANT_WRITE => Io::WantWrite,
            SSL_ERROR_ZERO_RETURN => Io::End,
            // A proxy that closes without close_notify (OpenSSL 3 calls it an error).
            _ if self.transport.saw_end.get() => Io::End,
            _ => {
                self.broken.set(true);
                let errno = match self.transport.last_errno.get() {
                    0 => libc::ECONNRESET,
                    errno => errno,
                };
                Io::Broken(errno, self.reason(error))
            }
        }
    }

    /// Calls `step` until it succeeds (a positive result), waiting in `poll` for what
    /// OpenSSL wants; a failure is OpenSSL's error code (0 for a wait's) and a sentence:
    /// `what` and the reason.
    fn drive(
        &self,
        deadline: Instant,
        what: &str,
        mut step: impl FnMut(&OpenSsl, Ssl) -> c_int,
    ) -> Result<c_int, (c_int, String)> {
        let api = self.api;
        let started = Instant::now();
        loop {
            // SAFETY: clears this thread's OpenSSL error queue, so the reason read below
            // is this call's.
            unsafe { (api.ERR_clear_error)() };
            self.transport.last_errno.set(0);
            let result = step(api, self.ssl);
            if result > 0 {
                return Ok(result);
            }
            // SAFETY: our live session and the result of its last call.
            let error = unsafe { (api.SSL_get_error)(self.ssl, result) };
            let wanted = match error {
                SSL_ERROR_WANT_READ => libc::POLLIN,
                SSL_ERROR_WANT_WRITE => libc::POLLOUT,
                _ => return Err((error, format!("{what} failed: {}", self.reason(error)))),
            };
            if let Err(errno) = wait_for(self.transport.fd, wanted, deadline) {
                return Err((
                    0,
                    match errno {
                        libc::ETIMEDOUT => format!(
                            "{what} timed out after {} ms",
                            started.elapsed().as_millis()
                        ),
                        _ => format!(
                            "{what} failed: {}",
                            std::io::Error::from_raw_os_error(errno)
                        ),
                    },
                ));
            }
        }
    }

    /// Why the last call failed, in OpenSSL's words.
    fn reason(&self, error: c_int) -> String {
        let api = self.api;
        // SAFETY: our live session; OpenSSL's static strings.
        let verify = unsafe { (api.SSL_get_verify_result)(self.ssl) };
        if error == SSL_ERROR_SSL && verify != X509_V_OK {
            // SAFETY: as above.
            let why = unsafe { text_of((api.X509_verify_cert_error_string)(verify)) };
            return format!("certificate verify failed: {why}");
        }
        // SAFETY: this thread's error queue, cleared before the call.
        let queued = unsafe { (api.ERR_get_error)() };
        if queued != 0 {
            // SAFETY: OpenSSL's static string for a code it gave.
            let why = unsafe { text_of((api.ERR_reason_error_string)(queued)) };
            if !why.is_empty() {
                return why;
            }
        }
        match (self.transport.last_errno.get(), error) {
            (0, SSL_ERROR_ZERO_RETURN) => "the proxy closed the TLS session".to_string(),
            (0, _) if self.transport.saw_end.get() => "the proxy closed the connection".to_string(),
            (0, _) => format!("OpenSSL error {error}"),
            (errno, _) => std::io::Error::from_raw_os_error(errno).to_string(),
        }
    }
}

// SAFETY: the session and its BIO are used by one thread at a time: the owner keeps the
// link behind a lock (`conn::link`), and OpenSSL sessions may move between threads.
unsafe impl Send for Link {}

impl Drop for Link {
    fn drop(&mut self) {
        if self.ssl.is_null() {
            return;
        }
        // SAFETY: our own session (which owns the BIO), freed once. A healthy session
        // ends without a close_notify (the socket goes with it), but counts as shut down,
        // so that OpenSSL keeps its ticket resumable for the next link.
        unsafe {
            if !self.broken.get() && (self.api.SSL_is_init_finished)(self.ssl) == 1 {
                (self.api.SSL_set_shutdown)(self.ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
            }
            (self.api.SSL_free)(self.ssl);
        }
    }
}

/// Whether `fd` becomes readable within `left` (a signal ends the wait early: no).
fn readable_within(fd: c_int, left: Duration) -> bool {
    let mut entry = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let millis = left.as_micros().div_ceil(1000).min(c_int::MAX as u128) as c_int;
    // SAFETY: one valid pollfd.
    unsafe { crate::sys::poll(&mut entry, 1, millis) == 1 }
}

/// # Safety
/// `text` is null or a NUL-terminated string.
unsafe fn text_of(text: *const c_char) -> String {
    match text.is_null() {
        true => String::new(),
        // SAFETY: the caller's contract.
        false => unsafe { CStr::from_ptr(text) }
            .to_string_lossy()
            .into_owned(),
    }
}
