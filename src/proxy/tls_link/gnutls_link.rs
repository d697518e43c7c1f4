//! The link over GnuTLS, for a process without OpenSSL (a minimal image: apt and wget bring
//! GnuTLS, not libssl). GnuTLS reads and writes through our push and pull functions, over
//! libc's own `send`/`recv` with MSG_DONTWAIT. GnuTLS cannot peek: a peek reads into
//! `peeked`, which the next read serves first. No session resumption here: each link
//! makes a full handshake.

use super::gnutls::{self, Credentials, Datum, GnuTls, Session};
use super::transport::Transport;
use super::{take_tickets, text_of, wait_or_say, Io, Trust};
use crate::sys;
use libc::{c_int, c_uint, c_void, size_t};
use std::cell::RefCell;
use std::ffi::CString;
use std::net::IpAddr;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::time::{Duration, Instant};

const GNUTLS_CLIENT: c_uint = 1 << 1;
const GNUTLS_CRD_CERTIFICATE: c_int = 1;
const GNUTLS_NAME_DNS: c_uint = 1;
const GNUTLS_X509_FMT_PEM: c_int = 1;
const GNUTLS_CRT_X509: c_int = 1;
const GNUTLS_TLS1_3: c_int = 5;
const GNUTLS_E_AGAIN: isize = -28;
const GNUTLS_E_INTERRUPTED: isize = -52;
const GNUTLS_E_PREMATURE_TERMINATION: isize = -110;
const GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR: isize = -348;
const RECORD_PLAINTEXT: usize = 16 * 1024;

/// A verified GnuTLS session with the proxy on a connected socket the caller owns.
pub struct GnuTlsLink {
    api: &'static GnuTls,
    session: Session,
    /// The transport's data: boxed so that its address stays put while the link moves.
    transport: Box<Transport>,
    /// Plaintext a peek took from the session, for the next reads.
    peeked: RefCell<Vec<u8>>,
    /// The name the certificate is checked against: GnuTLS keeps the pointer, not a copy.
    host: CString,
}

// SAFETY: the session is used by one thread at a time: the owner keeps the link behind a
// lock (`conn::link`); GnuTLS sessions may move between threads.
unsafe impl Send for GnuTlsLink {}

impl GnuTlsLink {
    /// The TLS handshake on connected `fd`, verified against `trust`, by `deadline`.
    pub fn connect(
        api: &'static GnuTls,
        fd: c_int,
        trust: Trust<'_>,
        deadline: Instant,
    ) -> Result<GnuTlsLink, String> {
        let credentials = credentials(api, trust.ca_file)?;
        let mut session: Session = std::ptr::null_mut();
        // SAFETY: GnuTLS writes the new session.
        if unsafe { (api.gnutls_init)(&mut session, GNUTLS_CLIENT) } != 0 {
            return Err("TLS: cannot make a GnuTLS session".to_string());
        }
        let link = GnuTlsLink {
            api,
            session,
            transport: Box::new(Transport::new(fd)),
            peeked: RefCell::new(Vec::new()),
            host: CString::new(trust.host)
                .map_err(|_| format!("TLS: bad host {:?}", trust.host))?,
        };
        link.expect(credentials, trust.host)?;
        let started = Instant::now();
        link.handshake(deadline)?;
        // SAFETY: our live, connected session.
        if unsafe { (api.gnutls_protocol_get_version)(session) } == GNUTLS_TLS1_3 {
            take_tickets(fd, started.elapsed(), deadline, || {
                link.read(&mut [0u8; 1], true)
            });
        }
        Ok(link)
    }

    /// Credentials, the proxy's name (SNI and the certificate check: a DNS name or an IP
    /// literal), ALPN http/1.1, and our transport.
    fn expect(&self, credentials: Credentials, host: &str) -> Result<(), String> {
        let api = self.api;
        let text = &self.host;
        let alpn = Datum {
            data: b"http/1.1".as_ptr().cast_mut(),
            size: 8,
        };
        let session = self.session;
        // SAFETY: our live session; GnuTLS copies the name and protocols; the credentials
        // are the process's, never freed; the transport outlives the session (`Drop`).
        let set = unsafe {
            let mut set = (api.gnutls_set_default_priority)(session) == 0
                && (api.gnutls_credentials_set)(session, GNUTLS_CRD_CERTIFICATE, credentials) == 0
                && (api.gnutls_alpn_set_protocols)(session, &alpn, 1, 0) == 0;
            if host.parse::<IpAddr>().is_err() {
                set &= (api.gnutls_server_name_set)(
                    session,
                    GNUTLS_NAME_DNS,
                    text.as_ptr().cast(),
                    host.len(),
                ) == 0;
            }
            (api.gnutls_session_set_verify_cert)(session, text.as_ptr(), 0);
            let transport = (&*self.transport as *const Transport).cast_mut().cast();
            (api.gnutls_transport_set_ptr)(session, transport);
            (api.gnutls_transport_set_push_function)(session, push);
            (api.gnutls_transport_set_pull_function)(session, pull);
            (api.gnutls_transport_set_pull_timeout_function)(session, pull_timeout);
            set
        };
        match set {
            true => Ok(()),
            false => Err(format!("TLS: cannot check the proxy's name {host:?}")),
        }
    }

    fn handshake(&self, deadline: Instant) -> Result<(), String> {
        let started = Instant::now();
        loop {
            self.transport.last_errno.set(0);
            // SAFETY: our live session.
            let result = unsafe { (self.api.gnutls_handshake)(self.session) } as isize;
            let wanted = match self.outcome(result) {
                Io::Done(_) => return Ok(()),
                Io::WantRead => libc::POLLIN,
                Io::WantWrite => libc::POLLOUT,
                Io::End => {
                    return Err("TLS handshake failed: the proxy closed the connection".into())
                }
                Io::Broken(_, why) => return Err(format!("TLS handshake failed: {why}")),
            };
            wait_or_say(
                self.transport.fd,
                wanted,
                deadline,
                "TLS handshake",
                started,
            )?;
        }
    }

    pub fn read(&self, into: &mut [u8], peek: bool) -> Io {
        if into.is_empty() {
            return Io::Done(0);
        }
        let mut peeked = self.peeked.borrow_mut();
        if peeked.is_empty() {
            if !peek {
                return self.recv(into);
            }
            peeked.resize(into.len().min(RECORD_PLAINTEXT), 0);
            let io = self.recv(&mut peeked);
            let Io::Done(got) = io else {
                peeked.clear();
                return io;
            };
            peeked.truncate(got);
        }
        let count = peeked.len().min(into.len());
        into[..count].copy_from_slice(&peeked[..count]);
        if !peek {
            peeked.drain(..count);
        }
        Io::Done(count)
    }

    fn recv(&self, into: &mut [u8]) -> Io {
        self.transport.last_errno.set(0);
        // SAFETY: our live session and `into.len()` writable bytes.
        let got = unsafe {
            (self.api.gnutls_record_recv)(self.session, into.as_mut_ptr().cast(), into.len())
        };
        match got {
            0 => Io::End,
            _ => self.outcome(got),
        }
    }

    pub fn write(&self, bytes: &[u8]) -> Io {
        if bytes.is_empty() {
            return Io::Done(0);
        }
        self.transport.last_errno.set(0);
        // SAFETY: our live session and `bytes.len()` readable bytes.
        let sent = unsafe {
            (self.api.gnutls_record_send)(self.session, bytes.as_ptr().cast(), bytes.len())
        };
        self.outcome(sent)
    }

    pub fn holds_plaintext(&self) -> bool {
        self.plaintext_held() > 0
    }

    /// How many decrypted bytes wait in the session (and what a peek took from it).
    pub fn plaintext_held(&self) -> usize {
        // SAFETY: our live session.
        self.peeked.borrow().len() + unsafe { (self.api.gnutls_record_check_pending)(self.session) }
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

    pub fn resumed(&self) -> bool {
        // SAFETY: our live session.
        unsafe { (self.api.gnutls_session_is_resumed)(self.session) != 0 }
    }

    /// "TLS1.3, AES-256-GCM".
    pub fn description(&self) -> String {
        let api = self.api;
        // SAFETY: our live, connected session; GnuTLS's static strings.
        unsafe {
            let version = text_of((api.gnutls_protocol_get_name)((api
                .gnutls_protocol_get_version)(
                self.session
            )));
            let cipher = text_of((api.gnutls_cipher_get_name)((api.gnutls_cipher_get)(
                self.session,
            )));
            format!("{version}, {cipher}")
        }
    }

    pub fn fd(&self) -> c_int {
        self.transport.fd
    }

    /// What a GnuTLS call's result means: a count, a wait, or the session's end.
    fn outcome(&self, result: isize) -> Io {
        if result >= 0 {
            return Io::Done(result as usize);
        }
        let api = self.api;
        match result {
            GNUTLS_E_AGAIN | GNUTLS_E_INTERRUPTED => {
                // SAFETY: our live session.
                match unsafe { (api.gnutls_record_get_direction)(self.session) } {
                    1 => Io::WantWrite,
                    _ => Io::WantRead,
                }
            }
            GNUTLS_E_PREMATURE_TERMINATION => Io::End,
            _ if self.transport.saw_end.get() => Io::End,
            // SAFETY: a plain query.
            _ if unsafe { (api.gnutls_error_is_fatal)(result as c_int) } == 0 => Io::WantRead,
            _ => {
                let errno = match self.transport.last_errno.get() {
                    0 => libc::ECONNRESET,
                    errno => errno,
                };
                Io::Broken(errno, self.reason(result))
            }
        }
    }

    /// Why a call failed, in GnuTLS's words.
    fn reason(&self, error: isize) -> String {
        let api = self.api;
        if error == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR {
            // SAFETY: our live session; GnuTLS allocates the text, freed with its free.
            unsafe {
                let status = (api.gnutls_session_get_verify_cert_status)(self.session);
                let mut text = Datum {
                    data: std::ptr::null_mut(),
                    size: 0,
                };
                if (api.gnutls_certificate_verification_status_print)(
                    status,
                    GNUTLS_CRT_X509,
                    &mut text,
                    0,
                ) == 0
                    && !text.data.is_null()
                {
                    let bytes = std::slice::from_raw_parts(text.data, text.size as usize);
                    let why = String::from_utf8_lossy(bytes).trim().to_string();
                    gnutls::free(text.data.cast());
                    return format!("certificate verify failed: {why}");
                }
            }
        }
        match self.transport.last_errno.get() {
            // SAFETY: GnuTLS's static string for a code it gave.
            0 => unsafe { text_of((api.gnutls_strerror)(error as c_int)) },
            errno => std::io::Error::from_raw_os_error(errno).to_string(),
        }
    }
}

impl Drop for GnuTlsLink {
    fn drop(&mut self) {
        // SAFETY: our own session, freed once; nothing is sent (the socket goes with it).
        unsafe { (self.api.gnutls_deinit)(self.session) };
    }
}

/// The process's credentials: the system's trust store and `ca_file` (made once, kept).
fn credentials(api: &GnuTls, ca_file: Option<&str>) -> Result<Credentials, String> {
    static CREDENTIALS: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
    let known = CREDENTIALS.load(Ordering::Acquire);
    if !known.is_null() {
        return Ok(known);
    }
    let mut fresh: Credentials = std::ptr::null_mut();
    // SAFETY: GnuTLS writes the new credentials; plain calls on them.
    unsafe {
        if (api.gnutls_certificate_allocate_credentials)(&mut fresh) != 0 {
            return Err("TLS: cannot make GnuTLS credentials".to_string());
        }
        (api.gnutls_certificate_set_x509_system_trust)(fresh);
        if let Some(file) = ca_file {
            let loaded = CString::new(file).is_ok_and(|path| {
                (api.gnutls_certificate_set_x509_trust_file)(
                    fresh,
                    path.as_ptr(),
                    GNUTLS_X509_FMT_PEM,
                ) > 0
            });
            if !loaded {
                log::warn!(
                    "LUNAR_PROXY_CA_FILE={file} cannot be read as PEM certificates; the proxy is verified against the system's CA store only"
                );
            }
        }
    }
    match CREDENTIALS.compare_exchange(
        std::ptr::null_mut(),
        fresh,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        Ok(_) => Ok(fresh),
        // The loser's credentials stay allocated: once, a few KiB.
        Err(first) => Ok(first),
    }
}

/// # Safety (all three)
/// GnuTLS calls them with our transport pointer and buffers of the sizes it gives.
unsafe extern "C-unwind" fn push(
    transport: *mut c_void,
    data: *const c_void,
    len: size_t,
) -> isize {
    // SAFETY: the transport pointer we set; it outlives the session.
    let transport = unsafe { &*(transport as *const Transport) };
    // SAFETY: GnuTLS hands `len` readable bytes.
    let sent = unsafe {
        sys::send(
            transport.fd,
            data,
            len,
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        )
    };
    if sent < 0 && !matches!(sys::errno(), libc::EAGAIN | libc::EINTR) {
        transport.last_errno.set(sys::errno());
    }
    sent
}

unsafe extern "C-unwind" fn pull(transport: *mut c_void, data: *mut c_void, len: size_t) -> isize {
    // SAFETY: the transport pointer we set; it outlives the session.
    let transport = unsafe { &*(transport as *const Transport) };
    // SAFETY: GnuTLS hands `len` writable bytes.
    let got = unsafe { sys::recv(transport.fd, data, len, libc::MSG_DONTWAIT) };
    match got {
        0 => transport.saw_end.set(true),
        // SAFETY: the socket just wrote `got` bytes there.
        _ if got > 0 => transport.read_ciphertext(unsafe {
            std::slice::from_raw_parts(data.cast::<u8>(), got as usize)
        }),
        _ if got < 0 && !matches!(sys::errno(), libc::EAGAIN | libc::EINTR) => {
            transport.last_errno.set(sys::errno())
        }
        _ => {}
    }
    got
}

unsafe extern "C-unwind" fn pull_timeout(transport: *mut c_void, millis: c_uint) -> c_int {
    // SAFETY: the transport pointer we set; it outlives the session.
    let transport = unsafe { &*(transport as *const Transport) };
    let mut entry = libc::pollfd {
        fd: transport.fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // Never longer than asked, and never blocking for good (GnuTLS's "indefinite").
    let millis = Duration::from_millis(millis.into()).min(Duration::from_secs(1));
    sys::poll_one::poll_one(&mut entry, millis.as_millis() as c_int)
}
