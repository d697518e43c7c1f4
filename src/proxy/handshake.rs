//! `GET /handshake` on the proxy (contract, "Handshake"), over a socket of our own made with
//! the real libc functions, bounded in time.

use super::tls_link::{Link, Trust};
use crate::hot_data::hot_bytes;
use crate::sys::socket::{connect_bounded, family_of, OwnSocket};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Time allowed for the proxy to answer once connected.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_ANSWER: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub managed: bool,
}

/// How a handshake went wrong: in its TLS session (the proxy's certificate or TLS itself),
/// or anywhere else (connect, the answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Tls(String),
    Other(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Tls(why) | Failure::Other(why) => f.write_str(why),
        }
    }
}

/// The TLS session a handshake ran over: OpenSSL's version and cipher, and the time from
/// the start of the connect to its end.
#[derive(Debug, Clone)]
pub struct TlsSession {
    pub description: String,
    pub took: Duration,
}

/// Runs the handshake on `address`, over TLS verified against `tls` when given (the link's
/// handshake bounded like the connect); `on_tls` hears of the session once it is verified.
pub fn run(
    address: SocketAddr,
    host_header: &str,
    tenant: &str,
    connect_timeout_ms: u64,
    tls: Option<Trust<'_>>,
    on_tls: &mut dyn FnMut(TlsSession),
) -> Result<Answer, Failure> {
    let started = Instant::now();
    let other = |errno| Failure::Other(describe(errno));
    let socket = OwnSocket::open(address).map_err(|e| Failure::Other(format!("socket: {e}")))?;
    connect_bounded(socket.fd(), family_of(address), address, connect_timeout_ms).map_err(other)?;
    let request = request(host_header, tenant);
    let answer = match tls {
        None => {
            let deadline = Instant::now() + ANSWER_TIMEOUT;
            socket.send_all(&request, deadline).map_err(other)?;
            socket.read_to_end(MAX_ANSWER, deadline).map_err(other)?
        }
        Some(trust) => over_tls(
            &socket,
            &request,
            trust,
            connect_timeout_ms,
            started,
            on_tls,
        )?,
    };
    parse_answer(&answer).map_err(Failure::Other)
}

/// The request and its answer over TLS to the proxy. Out of line: the default link is
/// clear text (build.rs's layout keeps what never runs apart).
#[inline(never)]
fn over_tls(
    socket: &OwnSocket,
    request: &[u8],
    trust: Trust<'_>,
    connect_timeout_ms: u64,
    started: Instant,
    on_tls: &mut dyn FnMut(TlsSession),
) -> Result<Vec<u8>, Failure> {
    let handshake_by = Instant::now() + Duration::from_millis(connect_timeout_ms);
    let mut link = Link::connect(socket.fd(), trust, handshake_by).map_err(Failure::Tls)?;
    on_tls(TlsSession {
        description: link.description(),
        took: started.elapsed(),
    });
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    link.write_all(request, deadline).map_err(Failure::Other)?;
    link.read_to_end(MAX_ANSWER, deadline)
        .map_err(Failure::Other)
}

/// The handshake's request. Its fixed parts are with the hot data (`crate::hot_data`): a
/// handshake (again after a failure) comes after the set-up has let the cold data go.
fn request(host_header: &str, tenant: &str) -> Vec<u8> {
    let pieces = [
        hot_bytes!(b"GET /handshake HTTP/1.1\r\nHost: "),
        host_header.as_bytes(),
        hot_bytes!(b"\r\nx-lunar-tenant-id: "),
        tenant.as_bytes(),
        hot_bytes!(b"\r\nx-lunar-interceptor: "),
        hot_bytes!(crate::INTERCEPTOR.as_bytes()),
        hot_bytes!(b"\r\nAccept: application/json\r\nConnection: close\r\n\r\n"),
    ];
    pieces.concat()
}

fn describe(errno: i32) -> String {
    std::io::Error::from_raw_os_error(errno).to_string()
}

pub fn parse_answer(bytes: &[u8]) -> Result<Answer, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let body_start = match response.parse(bytes) {
        Ok(httparse::Status::Complete(at)) => at,
        _ => return Err("no valid HTTP answer".to_string()),
    };
    if response.code != Some(200) {
        return Err(format!("answered HTTP {}", response.code.unwrap_or(0)));
    }
    Ok(Answer {
        managed: json_flag(&bytes[body_start..], b"managed"),
    })
}

/// `"key": true` anywhere in a small JSON object; the proxy's answer is one flat object,
/// and a JSON library would be the biggest dependency of a library loaded into everything.
fn json_flag(body: &[u8], key: &[u8]) -> bool {
    let mut quoted = Vec::with_capacity(key.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(key);
    quoted.push(b'"');
    let Some(at) = memchr::memmem::find(body, &quoted) else {
        return false;
    };
    let rest = &body[at + quoted.len()..];
    let rest = trim_start(rest);
    let Some(rest) = rest.strip_prefix(b":") else {
        return false;
    };
    trim_start(rest).starts_with(b"true")
}

fn trim_start(bytes: &[u8]) -> &[u8] {
    let skip = bytes.iter().take_while(|b| b.is_ascii_whitespace()).count();
    &bytes[skip..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_names_the_proxy_tenant_and_interceptor() {
        let request = String::from_utf8(request("proxy.test:8081", "acme")).unwrap();
        assert_eq!(
            request,
            format!(
                "GET /handshake HTTP/1.1\r\nHost: proxy.test:8081\r\nx-lunar-tenant-id: acme\r\n\
                 x-lunar-interceptor: {}\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
                crate::INTERCEPTOR
            )
        );
    }

    #[test]
    fn managed_answers() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"managed\": true}";
        assert_eq!(parse_answer(ok), Ok(Answer { managed: true }));
        let no = b"HTTP/1.1 200 OK\r\n\r\n{\"managed\":false}";
        assert_eq!(parse_answer(no), Ok(Answer { managed: false }));
        assert!(parse_answer(b"HTTP/1.1 404 Not Found\r\n\r\n").is_err());
        assert!(parse_answer(b"garbage").is_err());
    }
}
