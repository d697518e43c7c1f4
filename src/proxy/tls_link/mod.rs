//! Our own TLS client to Lunar Proxy (`LUNAR_PROXY_SUPPORT_TLS=1`): one session on a
//! socket of ours, the proxy verified as an https client verifies a server: its chain
//! against the system's CA store plus `LUNAR_PROXY_CA_FILE`, and its name against the host
//! of `LUNAR_PROXY_HOST` (an IP literal against an IP SAN).
//!
//! Whose TLS: the process's OpenSSL, or the system's `libssl` loaded the first time a link
//! is made (`openssl_link`); without any OpenSSL, the process's or the system's GnuTLS
//! (`gnutls_link`). Both read and write the socket with libc's own functions, never
//! through our hooks, and never block: every wait is a `poll` bounded by the caller's
//! deadline, or the caller's own (`conn::link`). A failure is a sentence naming its reason
//! as the library gives it (`certificate verify failed: hostname mismatch`, `TLS handshake
//! failed: wrong version number`, ...), which the caller logs once.

mod bio;
mod gnutls;
mod gnutls_link;
mod openssl;
mod openssl_link;
mod shared;
mod symbols;
mod transport;

use crate::sys::socket::wait_for;
use gnutls_link::GnuTlsLink;
use libc::{c_char, c_int};
use openssl_link::OpenSslLink;
use std::ffi::CStr;
use std::time::{Duration, Instant};

/// ALPN: the proxy speaks HTTP/1.1 with us, whatever else it offers.
const ALPN_HTTP_1_1: &[u8] = b"\x08http/1.1";

pub fn after_fork_in_child() {
    shared::after_fork_in_child();
}

/// Whether a TLS library for our link is in the process or can be loaded (OpenSSL, else
/// GnuTLS); why not.
pub fn library() -> Result<(), &'static str> {
    if openssl::get().is_ok() || gnutls::get().is_ok() {
        return Ok(());
    }
    Err("no TLS library for the proxy link: neither OpenSSL (libssl.so.3, libssl.so.1.1) nor GnuTLS (libgnutls.so.30) could be loaded")
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
    /// The session broke: the errno a socket call would report, and the library's reason.
    Broken(c_int, String),
}

/// A verified TLS session with the proxy on a connected socket the caller owns.
pub enum Link {
    OpenSsl(OpenSslLink),
    GnuTls(GnuTlsLink),
}

impl Link {
    /// The TLS handshake on connected `fd`, verified against `trust`, by `deadline`.
    pub fn connect(fd: c_int, trust: Trust<'_>, deadline: Instant) -> Result<Link, String> {
        if let Ok(api) = openssl::get() {
            return OpenSslLink::connect(api, fd, trust, deadline).map(Link::OpenSsl);
        }
        match gnutls::get() {
            Ok(api) => GnuTlsLink::connect(api, fd, trust, deadline).map(Link::GnuTls),
            Err(_) => Err(library().err().unwrap_or_default().to_string()),
        }
    }

    /// Reads (or, `peek`, looks at) plaintext into `into`, without waiting.
    pub fn read(&self, into: &mut [u8], peek: bool) -> Io {
        match self {
            Link::OpenSsl(link) => link.read(into, peek),
            Link::GnuTls(link) => link.read(into, peek),
        }
    }

    /// Encrypts and sends `bytes` (at least one record of them), without waiting. After
    /// `WantWrite` the same bytes must be offered again (a record of them is half sent).
    pub fn write(&self, bytes: &[u8]) -> Io {
        match self {
            Link::OpenSsl(link) => link.write(bytes),
            Link::GnuTls(link) => link.write(bytes),
        }
    }

    /// Whether decrypted bytes wait in the session: the socket does not show them.
    pub fn holds_plaintext(&self) -> bool {
        match self {
            Link::OpenSsl(link) => link.holds_plaintext(),
            Link::GnuTls(link) => link.holds_plaintext(),
        }
    }

    /// Ciphertext of the current record read from the socket and held undecrypted until
    /// its rest comes.
    pub fn record_body_read(&self) -> usize {
        match self {
            Link::OpenSsl(link) => link.record_body_read(),
            Link::GnuTls(link) => link.record_body_read(),
        }
    }

    /// How many decrypted bytes wait in the session.
    pub fn plaintext_held(&self) -> usize {
        match self {
            Link::OpenSsl(link) => link.plaintext_held(),
            Link::GnuTls(link) => link.plaintext_held(),
        }
    }

    /// Whether the ciphertext read so far ends inside a record: the rest is on its way.
    pub fn inside_record(&self) -> bool {
        match self {
            Link::OpenSsl(link) => link.inside_record(),
            Link::GnuTls(link) => link.inside_record(),
        }
    }

    /// Whether the handshake resumed an earlier session (no certificate exchange).
    pub fn resumed(&self) -> bool {
        match self {
            Link::OpenSsl(link) => link.resumed(),
            Link::GnuTls(link) => link.resumed(),
        }
    }

    /// "TLSv1.3, TLS_AES_256_GCM_SHA384" (OpenSSL), "TLS1.3, AES-256-GCM" (GnuTLS).
    pub fn description(&self) -> String {
        match self {
            Link::OpenSsl(link) => link.description(),
            Link::GnuTls(link) => link.description(),
        }
    }

    fn fd(&self) -> c_int {
        match self {
            Link::OpenSsl(link) => link.fd(),
            Link::GnuTls(link) => link.fd(),
        }
    }

    /// Sends all of `bytes` by `deadline`.
    pub fn write_all(&mut self, mut bytes: &[u8], deadline: Instant) -> Result<(), String> {
        let started = Instant::now();
        while !bytes.is_empty() {
            match self.write(bytes) {
                Io::Done(count) => bytes = &bytes[count..],
                Io::End => return Err("TLS write failed: the proxy closed the session".into()),
                Io::Broken(_, why) => return Err(format!("TLS write failed: {why}")),
                Io::WantWrite => self.wait(libc::POLLOUT, deadline, "TLS write", started)?,
                Io::WantRead => self.wait(libc::POLLIN, deadline, "TLS write", started)?,
            }
        }
        Ok(())
    }

    /// Everything the proxy sends until it closes (or `limit` bytes), by `deadline`.
    pub fn read_to_end(&mut self, limit: usize, deadline: Instant) -> Result<Vec<u8>, String> {
        let started = Instant::now();
        let mut answer = Vec::new();
        let mut chunk = [0u8; 4096];
        while answer.len() < limit {
            match self.read(&mut chunk, false) {
                Io::Done(count) => answer.extend_from_slice(&chunk[..count]),
                // The end of the stream, with close_notify or without: the answer is
                // judged whole by its parser either way.
                Io::End => break,
                Io::Broken(_, why) => return Err(format!("TLS read failed: {why}")),
                Io::WantRead => self.wait(libc::POLLIN, deadline, "TLS read", started)?,
                Io::WantWrite => self.wait(libc::POLLOUT, deadline, "TLS read", started)?,
            }
        }
        Ok(answer)
    }

    fn wait(
        &self,
        events: i16,
        deadline: Instant,
        what: &str,
        started: Instant,
    ) -> Result<(), String> {
        wait_or_say(self.fd(), events, deadline, what, started)
    }
}

/// A TLS 1.3 server sends its session tickets right after the handshake, as records of
/// their own. Left in the socket they would make it readable with nothing for the program
/// to read (a read that answers EAGAIN after poll said readable breaks programs that
/// trust poll, wrk among them), so they are read now: within about one more round trip
/// (`handshake`'s time, at least a millisecond, and no later than `deadline`); a server
/// that sends none costs that wait. `peek`: a non-blocking peek of the session.
fn take_tickets(fd: c_int, handshake: Duration, deadline: Instant, mut peek: impl FnMut() -> Io) {
    let until = deadline.min(Instant::now() + handshake.max(Duration::from_millis(1)));
    let mut first = true;
    loop {
        // The first batch is waited for; more only if already there.
        let left = match first {
            true => until.saturating_duration_since(Instant::now()),
            false => Duration::ZERO,
        };
        if !readable_within(fd, left) {
            return;
        }
        // Reads what arrived: tickets are processed, and a peek finds no plaintext.
        if peek() != Io::WantRead {
            return;
        }
        first = false;
    }
}

/// Waits for `events` on `fd` by `deadline`; a failure in words: "`what` timed out after
/// N ms" (counted from `started`) or "`what` failed: <errno>".
fn wait_or_say(
    fd: c_int,
    events: i16,
    deadline: Instant,
    what: &str,
    started: Instant,
) -> Result<(), String> {
    wait_for(fd, events, deadline).map_err(|errno| match errno {
        libc::ETIMEDOUT => format!(
            "{what} timed out after {} ms",
            started.elapsed().as_millis()
        ),
        _ => format!(
            "{what} failed: {}",
            std::io::Error::from_raw_os_error(errno)
        ),
    })
}

/// Whether `fd` becomes readable within `left` (a signal ends the wait early: no).
fn readable_within(fd: c_int, left: Duration) -> bool {
    let mut entry = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let millis = left.as_micros().div_ceil(1000).min(c_int::MAX as u128) as c_int;
    crate::sys::poll_one::poll_one(&mut entry, millis) == 1
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
