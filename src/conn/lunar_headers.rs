//! The headers Lunar Proxy needs on each diverted request (contract, "A diverted request").

use crate::hot_data::hot_bytes;
use crate::http::RequestHead;
use crate::runtime::Runtime;
use std::borrow::Cow;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Scheme {
    Http,
    /// The plaintext of a virtual TLS session (`crate::tls`).
    Https,
}

impl Scheme {
    /// The lines between `x-lunar-host`'s value and the request id, as one constant: each
    /// copy is code run for every diverted request.
    fn lines_after_host(self) -> &'static [u8] {
        macro_rules! lines {
            ($scheme:literal) => {
                hot_bytes!(concat!(
                    "\r\nx-lunar-scheme: ",
                    $scheme,
                    "\r\nx-lunar-interceptor: ",
                    crate::interceptor_name!(),
                    "\r\nx-lunar-req-id: "
                )
                .as_bytes())
            };
        }
        match self {
            Scheme::Http => lines!("http"),
            Scheme::Https => lines!("https"),
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// Room for Lunar's lines of a request with a host name of up to ~100 bytes: the names
/// (~100), a request id (36), the interceptor's name (~35).
const LINES_ROOM: usize = 288;

/// Appends complete header lines, each ending CRLF, to insert after the request line.
/// Written byte by byte into a buffer the connection reuses: this runs for every diverted
/// request, where `format!` machinery and allocations showed in the per-request cost
/// (`make bench`, wrk CPU and instructions per request).
pub fn push_for_request(
    lines: &mut Vec<u8>,
    head: &RequestHead<'_>,
    original: SocketAddr,
    name: Option<&str>,
    scheme: Scheme,
    runtime: &Runtime,
) {
    // The lines' usual size in one allocation on a connection's first request, rather
    // than a doubling per line (a no-op once the buffer has grown).
    lines.reserve(LINES_ROOM + runtime.config.tenant_id.len());
    lines.extend_from_slice(HOST);
    push_lunar_host(lines, head.host, original, name, scheme);
    lines.extend_from_slice(scheme.lines_after_host());
    crate::uuid::push_v4(lines);
    lines.extend_from_slice(b"\r\n");
    if runtime.proxy.managed() {
        lines.extend_from_slice(TENANT_ID);
        lines.extend_from_slice(runtime.config.tenant_id.as_bytes());
        lines.extend_from_slice(b"\r\n");
    }
}

// The lines' fixed parts, read for every request: with the hot data (`crate::hot_data`).
const HOST: &[u8] = hot_bytes!(b"x-lunar-host: ");
const TENANT_ID: &[u8] = hot_bytes!(b"x-lunar-tenant-id: ");

/// `host[:port]` with the port only when it is not the scheme's default. The request's
/// `Host` header is the authority; without one, the name the program resolved, else the IP.
#[cfg(test)]
pub fn lunar_host(
    host_header: Option<&str>,
    original: SocketAddr,
    name: Option<&str>,
    scheme: Scheme,
) -> String {
    let mut out = Vec::new();
    push_lunar_host(&mut out, host_header, original, name, scheme);
    String::from_utf8(out).expect("built from str pieces")
}

fn push_lunar_host(
    out: &mut Vec<u8>,
    host_header: Option<&str>,
    original: SocketAddr,
    name: Option<&str>,
    scheme: Scheme,
) {
    let port = match host_header.filter(|value| !value.is_empty()) {
        Some(value) => {
            let (host, port) = split_authority(value, original.port());
            // An IPv6 literal sent without its brackets (Tcl's http package does): a
            // proxy reads `x-lunar-host` as `host[:port]`, so they are put back.
            let unbracketed =
                !host.starts_with('[') && memchr::memchr(b':', host.as_bytes()).is_some();
            if unbracketed {
                out.push(b'[');
            }
            out.extend_from_slice(host.as_bytes());
            if unbracketed {
                out.push(b']');
            }
            port
        }
        None => {
            match (name, crate::addr::canonical(original).ip()) {
                (Some(name), _) => out.extend_from_slice(name.as_bytes()),
                (None, IpAddr::V6(v6)) => {
                    let _ = write!(out, "[{v6}]");
                }
                (None, ip) => {
                    let _ = write!(out, "{ip}");
                }
            }
            original.port()
        }
    };
    if port != scheme.default_port() {
        out.push(b':');
        push_decimal(out, port);
    }
}

fn push_decimal(out: &mut Vec<u8>, value: u16) {
    let mut digits = [0u8; 5];
    let mut rest = value;
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// Splits `host[:port]` (IPv6 literals in brackets); a missing port means `default`. A
/// value with more than one colon and no brackets is an IPv6 literal sent bare (invalid,
/// but sent: Tcl's http package), all host.
/// Byte searches, not `char` ones: this runs for every diverted request, and ASCII
/// delimiters split UTF-8 text only at character boundaries.
pub fn split_authority(value: &str, default: u16) -> (&str, u16) {
    let value = value.trim_ascii();
    let bytes = value.as_bytes();
    let (host, port) = if bytes.first() == Some(&b'[') {
        match memchr::memchr(b']', bytes) {
            Some(end) => (&value[..=end], value[end + 1..].strip_prefix(':')),
            None => (value, None),
        }
    } else {
        match (memchr::memchr(b':', bytes), memchr::memrchr(b':', bytes)) {
            (Some(first), Some(colon)) if first == colon => {
                (&value[..colon], Some(&value[colon + 1..]))
            }
            _ => (value, None),
        }
    };
    let port = port.and_then(|p| p.parse::<u16>().ok()).unwrap_or(default);
    (host, port)
}

/// The bare lower-case host name of a `Host` value, as the filter matches it (borrowed
/// when it is lower case already, as it nearly always is).
pub fn host_name(value: &str) -> Cow<'_, str> {
    let (host, _) = split_authority(value, 0);
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(bare.to_ascii_lowercase())
    } else {
        Cow::Borrowed(bare)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn port_only_when_not_default() {
        let original = addr("203.0.113.10:80");
        assert_eq!(
            lunar_host(Some("api.example.test"), original, None, Scheme::Http),
            "api.example.test"
        );
        assert_eq!(
            lunar_host(Some("api.example.test:80"), original, None, Scheme::Http),
            "api.example.test"
        );
        assert_eq!(
            lunar_host(Some("api.example.test:8080"), original, None, Scheme::Http),
            "api.example.test:8080"
        );
        assert_eq!(
            lunar_host(None, original, Some("api.example.test"), Scheme::Http),
            "api.example.test"
        );
        assert_eq!(
            lunar_host(None, original, None, Scheme::Http),
            "203.0.113.10"
        );
        assert_eq!(
            lunar_host(None, addr("203.0.113.10:8080"), None, Scheme::Http),
            "203.0.113.10:8080"
        );
        assert_eq!(
            lunar_host(None, addr("[2001:db8::1]:80"), None, Scheme::Http),
            "[2001:db8::1]"
        );
        assert_eq!(
            lunar_host(Some("[2001:db8::1]:81"), original, None, Scheme::Http),
            "[2001:db8::1]:81"
        );
        // Sent without brackets: the whole value is the address.
        assert_eq!(
            lunar_host(
                Some("2001:db8::10"),
                addr("[2001:db8::10]:80"),
                None,
                Scheme::Http
            ),
            "[2001:db8::10]"
        );
        assert_eq!(
            lunar_host(
                Some("2001:db8::10"),
                addr("[2001:db8::10]:81"),
                None,
                Scheme::Http
            ),
            "[2001:db8::10]:81"
        );
    }

    #[test]
    fn https_default_port_is_443() {
        let original = addr("203.0.113.10:443");
        assert_eq!(
            lunar_host(Some("api.example.test"), original, None, Scheme::Https),
            "api.example.test"
        );
        assert_eq!(
            lunar_host(None, original, Some("api.example.test"), Scheme::Https),
            "api.example.test"
        );
        assert_eq!(
            lunar_host(Some("api.example.test:80"), original, None, Scheme::Https),
            "api.example.test:80"
        );
        assert_eq!(
            lunar_host(
                Some("api.example.test:8443"),
                addr("203.0.113.10:8443"),
                None,
                Scheme::Https
            ),
            "api.example.test:8443"
        );
    }

    #[test]
    fn ports_in_decimal() {
        for port in [1u16, 9, 10, 99, 443, 8080, 65535] {
            let mut out = Vec::new();
            push_decimal(&mut out, port);
            assert_eq!(out, port.to_string().as_bytes());
        }
    }

    #[test]
    fn host_names() {
        assert_eq!(host_name("API.example.test:80"), "api.example.test");
        assert_eq!(host_name("[2001:db8::1]:80"), "2001:db8::1");
        assert_eq!(host_name("2001:DB8::1"), "2001:db8::1");
    }
}
