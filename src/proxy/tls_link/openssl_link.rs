//! The link over OpenSSL: one session on the socket, with our BIO (`bio`) under it.

use super::bio;
use super::openssl::{OpenSsl, Ssl};
use super::transport::Transport;
use super::{shared, text_of, wait_or_say, Io, Trust, ALPN_HTTP_1_1};
use libc::c_int;
use std::cell::Cell;
use std::ffi::CString;
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
/// A verified OpenSSL session with the proxy on a connected socket the caller owns.
pub struct OpenSslLink {
    api: &'static OpenSsl,
    ssl: Ssl,
    /// The BIO's data: boxed so that its address stays put while the link moves.
    transport: Box<Transport>,
    /// The session failed (an error other than a wait): its ticket must not be reused.
    broken: Cell<bool>,
}

impl OpenSslLink {
    /// The TLS handshake on connected `fd`, verified against `trust`, by `deadline`.
    pub fn connect(
        api: &'static OpenSsl,
        fd: c_int,
        trust: Trust<'_>,
        deadline: Instant,
    ) -> Result<OpenSslLink, String> {
        let transport = Box::new(Transport::new(fd));
        let ctx = shared::context(api, trust.ca_file)?;
        // SAFETY: the process's context; the session is freed by `Link`'s drop.
        let ssl = unsafe { (api.SSL_new)(ctx) };
        let link = OpenSslLink {
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

    /// TLS 1.3: the tickets the proxy sends after the handshake (`super::take_tickets`).
    fn take_tickets(&self, handshake: Duration, deadline: Instant) {
        // SAFETY: our live, connected session.
        if unsafe { (self.api.SSL_version)(self.ssl) } == TLS1_3_VERSION {
            super::take_tickets(self.transport.fd, handshake, deadline, || {
                self.read(&mut [0u8; 1], true)
            });
        }
    }

    pub fn fd(&self) -> c_int {
        self.transport.fd
    }

    /// Ciphertext of the current record read from the socket and held undecrypted
    /// by the TLS library until its rest comes.
    pub fn record_body_read(&self) -> usize {
        self.transport.record_body_read()
    }

    /// Whether the ciphertext read so far ends inside a record.
    pub fn inside_record(&self) -> bool {
        self.transport.inside_record()
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
        self.plaintext_held() > 0
    }

    /// How many decrypted bytes wait in the session.
    pub fn plaintext_held(&self) -> usize {
        // SAFETY: our live session.
        unsafe { (self.api.SSL_pending)(self.ssl) }.max(0) as usize
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
            wait_or_say(self.transport.fd, wanted, deadline, what, started)
                .map_err(|why| (0, why))?;
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
unsafe impl Send for OpenSslLink {}

impl Drop for OpenSslLink {
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
