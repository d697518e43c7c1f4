//! The headers Lunar Proxy needs on each diverted request (contract, "A diverted request").

use crate::http::RequestHead;
use crate::runtime::Runtime;
use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Scheme {
    Http,
    /// The plaintext of a virtual TLS session (`crate::tls`).
    Https,
}

impl Scheme {
    fn name(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// Complete header lines, each ending CRLF, to insert after the request line.
pub fn for_request(
    head: &RequestHead<'_>,
    original: SocketAddr,
    name: Option<&str>,
    scheme: Scheme,
    runtime: &Runtime,
) -> Vec<u8> {
    let mut lines = String::with_capacity(256);
    let host = lunar_host(head.host, original, name, scheme);
    let _ = write!(lines, "x-lunar-host: {host}\r\n");
    let _ = write!(lines, "x-lunar-scheme: {}\r\n", scheme.name());
    let _ = write!(lines, "x-lunar-interceptor: {}\r\n", crate::INTERCEPTOR);
    let _ = write!(lines, "x-lunar-req-id: {}\r\n", crate::uuid::new_v4());
    if runtime.proxy.managed() {
        let _ = write!(lines, "x-lunar-tenant-id: {}\r\n", runtime.config.tenant_id);
    }
    lines.into_bytes()
}

/// `host[:port]` with the port only when it is not the scheme's default. The request's
/// `Host` header is the authority; without one, the name the program resolved, else the IP.
pub fn lunar_host(
    host_header: Option<&str>,
    original: SocketAddr,
    name: Option<&str>,
    scheme: Scheme,
) -> String {
    let (host, port) = match host_header.filter(|value| !value.is_empty()) {
        Some(value) => split_authority(value, original.port()),
        None => {
            let host = match (name, crate::addr::canonical(original).ip()) {
                (Some(name), _) => name.to_string(),
                (None, IpAddr::V6(v6)) => format!("[{v6}]"),
                (None, ip) => ip.to_string(),
            };
            (host, original.port())
        }
    };
    if port == scheme.default_port() {
        host
    } else {
        format!("{host}:{port}")
    }
}

/// Splits `host[:port]` (IPv6 literals in brackets); a missing port means `default`.
pub fn split_authority(value: &str, default: u16) -> (String, u16) {
    let value = value.trim();
    let (host, port) = if value.starts_with('[') {
        match value.find(']') {
            Some(end) => (&value[..=end], value[end + 1..].strip_prefix(':')),
            None => (value, None),
        }
    } else {
        match value.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (value, None),
        }
    };
    let port = port.and_then(|p| p.parse::<u16>().ok()).unwrap_or(default);
    (host.to_string(), port)
}

/// The bare lower-case host name of a `Host` value, as the filter matches it.
pub fn host_name(value: &str) -> String {
    let (host, _) = split_authority(value, 0);
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
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
    fn host_names() {
        assert_eq!(host_name("API.example.test:80"), "api.example.test");
        assert_eq!(host_name("[2001:db8::1]:80"), "2001:db8::1");
    }
}
