//! A complete request head: parsed once, then written back out with our
//! header lines added and `x-lunar-allow` taken out.
//!
//! Parsing uses httparse: it borrows from our buffer instead of allocating,
//! does no I/O, is the parser hyper and much of the Rust ecosystem trust on
//! hostile input, and is fuzzed continuously. What we keep from it is byte
//! ranges into the buffer, so the head can be written back byte for byte.

use std::mem::MaybeUninit;
use std::ops::Range;

use memchr::memchr;

use super::fields::{copy_without, field_line, span, text};
use super::framing::{trim_ows, Framing, FramingHeaders};

/// The parts of a request head the connection layer decides on. Borrows the
/// stream's head buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHead<'a> {
    pub method: &'a str,
    pub target: &'a str,
    /// HTTP/1.<minor>
    pub minor_version: u8,
    /// The first `Host` header's value, trimmed.
    pub host: Option<&'a str>,
    /// The first `x-lunar-allow` header: `true` or `false` in any case;
    /// `None` when absent or anything else.
    pub lunar_allow: Option<bool>,
    /// An `Upgrade` header, or the CONNECT method: after this request the
    /// stream may stop being HTTP (CONNECT: at once; an upgrade: when its answer
    /// switches protocols).
    pub upgrade: bool,
}

impl RequestHead<'_> {
    /// Stands in when no head is ready, so that `head()` need not panic.
    pub(crate) const EMPTY: RequestHead<'static> = RequestHead {
        method: "",
        target: "",
        minor_version: 1,
        host: None,
        lunar_allow: None,
        upgrade: false,
    };
}

#[derive(Debug, Clone)]
pub(crate) struct ParsedHead {
    method: Range<usize>,
    target: Range<usize>,
    minor_version: u8,
    host: Option<Range<usize>>,
    lunar_allow: Option<bool>,
    upgrade: bool,
    connect: bool,
    /// Just past the request line's line ending (empty lines before the
    /// request line belong to it: they are sent as they came).
    line_end: usize,
    /// The `x-lunar-allow` field lines, line endings included, in order.
    removed: Vec<Range<usize>>,
    /// The program's own other `x-lunar-*` field lines, in order: one whose name the
    /// library injects is replaced by the injected line (`emit`), as Lunar's interceptors
    /// set their headers over the program's.
    lunar_fields: Vec<Range<usize>>,
    framing: Framing,
}

/// Most heads have far fewer fields; more only costs one allocation.
const STACK_HEADERS: usize = 64;

/// The head at the start of `input` when all of it is there and httparse takes it: its
/// length and its parse (`StartLine::parse_whole`).
pub(crate) fn parse_whole(input: &[u8]) -> Option<(usize, ParsedHead)> {
    // Uninitialised: 64 empty fields would be 2 KiB of stores per request.
    let mut headers = [MaybeUninit::uninit(); STACK_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    match request.parse_with_uninit_headers(input, &mut headers) {
        Ok(httparse::Status::Complete(n)) => read(&input[..n], &request).map(|head| (n, head)),
        _ => None,
    }
}

/// Parses `head`, which must end exactly at the end of the head. `None` when
/// httparse refuses it.
pub(crate) fn parse(head: &[u8]) -> Option<ParsedHead> {
    let mut headers = [MaybeUninit::uninit(); STACK_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    match request.parse_with_uninit_headers(head, &mut headers) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => return read(head, &request),
        Err(httparse::Error::TooManyHeaders) => {}
        _ => return None,
    }
    // Every field takes a line, so the LF count is always enough.
    let lines = memchr::memchr_iter(b'\n', head).count();
    let mut headers = vec![httparse::EMPTY_HEADER; lines];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => read(head, &request),
        _ => None,
    }
}

fn read(head: &[u8], request: &httparse::Request<'_, '_>) -> Option<ParsedHead> {
    let method = span(head, request.method?.as_bytes());
    let target = span(head, request.path?.as_bytes());
    let minor_version = request.version?;
    let line_end = target.end + memchr(b'\n', &head[target.end..])? + 1;
    let connect = &head[method.clone()] == b"CONNECT";
    let mut parsed = ParsedHead {
        upgrade: connect,
        connect,
        method,
        target,
        minor_version,
        host: None,
        lunar_allow: None,
        line_end,
        removed: Vec::new(),
        lunar_fields: Vec::new(),
        framing: Framing::Empty,
    };
    let mut framing = FramingHeaders::default();
    let mut seen_allow = false;
    for header in request.headers.iter() {
        let name = header.name;
        // Trimmed only for the fields read (most are not): this runs for every field of
        // every diverted request and answer.
        let value = || trim_ows(header.value);
        if name.eq_ignore_ascii_case("host") {
            let value = value();
            if parsed.host.is_none() && text(value).is_some() {
                parsed.host = Some(span(head, value));
            }
        } else if name.eq_ignore_ascii_case("x-lunar-allow") {
            if !seen_allow {
                seen_allow = true;
                parsed.lunar_allow = match value() {
                    v if v.eq_ignore_ascii_case(b"true") => Some(true),
                    v if v.eq_ignore_ascii_case(b"false") => Some(false),
                    _ => None,
                };
            }
            parsed.removed.push(field_line(head, name)?);
        } else if is_lunar_field(name) {
            parsed.lunar_fields.push(field_line(head, name)?);
        } else if name.eq_ignore_ascii_case("upgrade") {
            parsed.upgrade = true;
        } else if name.eq_ignore_ascii_case("content-length") {
            framing.content_length(value());
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            framing.transfer_encoding(value());
        }
    }
    parsed.framing = framing.framing(minor_version);
    Some(parsed)
}

impl ParsedHead {
    pub(crate) fn framing(&self) -> Framing {
        self.framing
    }

    pub(crate) fn upgrade(&self) -> bool {
        self.upgrade
    }

    pub(crate) fn connect(&self) -> bool {
        self.connect
    }

    pub(crate) fn view<'a>(&self, head: &'a [u8]) -> RequestHead<'a> {
        // The ranges were taken from httparse's &str views of this buffer.
        let part = |r: &Range<usize>| head.get(r.clone()).and_then(text).unwrap_or("");
        RequestHead {
            method: part(&self.method),
            target: part(&self.target),
            minor_version: self.minor_version,
            host: self.host.as_ref().map(part),
            lunar_allow: self.lunar_allow,
            upgrade: self.upgrade,
        }
    }

    /// Appends the head to send: request line, `injected`, the field lines
    /// but `x-lunar-allow`, the blank line.
    pub(crate) fn emit(&self, head: &[u8], injected: &[u8], out: &mut Vec<u8>) {
        out.reserve(head.len() + injected.len());
        out.extend_from_slice(&head[..self.line_end]);
        out.extend_from_slice(injected);
        if self.lunar_fields.is_empty() || injected.is_empty() {
            copy_without(head, self.line_end, &self.removed, out);
            return;
        }
        let mut removed = self.removed.clone();
        removed.extend(
            self.lunar_fields
                .iter()
                .filter(|line| injects(injected, field_name(&head[line.start..line.end])))
                .cloned(),
        );
        removed.sort_by_key(|line| line.start);
        copy_without(head, self.line_end, &removed, out);
    }
}

/// `x-lunar-` and more, but `x-lunar-allow` (read and always removed).
fn is_lunar_field(name: &str) -> bool {
    name.len() > 8 && name.as_bytes()[..8].eq_ignore_ascii_case(b"x-lunar-")
}

/// A field line's name (httparse allows no space before the colon).
fn field_name(line: &[u8]) -> &[u8] {
    let colon = memchr(b':', line).unwrap_or(line.len());
    &line[..colon]
}

/// Whether one of `injected`'s lines has field name `name`.
fn injects(injected: &[u8], name: &[u8]) -> bool {
    injected.split(|&b| b == b'\n').any(|line| {
        line.len() > name.len()
            && line[name.len()] == b':'
            && line[..name.len()].eq_ignore_ascii_case(name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emitted(head: &[u8], injected: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        parse(head).unwrap().emit(head, injected, &mut out);
        out
    }

    #[test]
    fn reads_the_parts() {
        let raw = b"POST /a?b HTTP/1.1\r\nHost:  api.example.com:8080 \r\n\
                    Content-Length: 3\r\n\r\n";
        let parsed = parse(raw).unwrap();
        let head = parsed.view(raw);
        assert_eq!(head.method, "POST");
        assert_eq!(head.target, "/a?b");
        assert_eq!(head.minor_version, 1);
        assert_eq!(head.host, Some("api.example.com:8080"));
        assert_eq!(head.lunar_allow, None);
        assert!(!head.upgrade);
        assert_eq!(parsed.framing(), Framing::Length(3));
    }

    #[test]
    fn the_programs_own_lunar_fields_give_way_to_the_injected_ones() {
        let raw = b"GET / HTTP/1.1\r\nX-Lunar-Host: elsewhere.test\r\nHost: h\r\n\
                    x-lunar-tenant-id: mine\r\nx-lunar-allow: true\r\n\
                    x-lunar-scheme: https\r\nx-lunar-custom: kept\r\n\r\n";
        let injected = b"x-lunar-host: h\r\nx-lunar-scheme: http\r\n";
        assert_eq!(
            emitted(raw, injected).escape_ascii().to_string(),
            b"GET / HTTP/1.1\r\nx-lunar-host: h\r\nx-lunar-scheme: http\r\nHost: h\r\n\
              x-lunar-tenant-id: mine\r\nx-lunar-custom: kept\r\n\r\n"
                .escape_ascii()
                .to_string()
        );
        // Nothing injected (the request goes direct): the program's head as it wrote it,
        // but `x-lunar-allow`.
        assert_eq!(
            emitted(raw, b"").escape_ascii().to_string(),
            b"GET / HTTP/1.1\r\nX-Lunar-Host: elsewhere.test\r\nHost: h\r\n\
              x-lunar-tenant-id: mine\r\nx-lunar-scheme: https\r\nx-lunar-custom: kept\r\n\r\n"
                .escape_ascii()
                .to_string()
        );
    }

    #[test]
    fn empty_host_and_no_host() {
        let raw = b"GET / HTTP/1.1\r\nHost:\r\n\r\n";
        assert_eq!(parse(raw).unwrap().view(raw).host, Some(""));
        let raw = b"GET / HTTP/1.0\r\n\r\n";
        let head = parse(raw).unwrap();
        assert_eq!(head.view(raw).host, None);
        assert_eq!(head.view(raw).minor_version, 0);
    }

    #[test]
    fn lunar_allow_values_and_removal() {
        for (value, expected) in [
            ("true", Some(true)),
            ("TRUE", Some(true)),
            ("False", Some(false)),
            (" false ", Some(false)),
            ("yes", None),
            ("", None),
        ] {
            for name in ["x-lunar-allow", "X-Lunar-Allow", "X-LUNAR-ALLOW"] {
                let raw = format!("GET / HTTP/1.1\r\nA: 1\r\n{name}:{value}\r\nB: 2\r\n\r\n");
                let parsed = parse(raw.as_bytes()).unwrap();
                assert_eq!(parsed.view(raw.as_bytes()).lunar_allow, expected);
                assert_eq!(
                    emitted(raw.as_bytes(), b"X-In: 1\r\n"),
                    b"GET / HTTP/1.1\r\nX-In: 1\r\nA: 1\r\nB: 2\r\n\r\n"
                );
            }
        }
    }

    #[test]
    fn first_lunar_allow_decides_and_all_are_removed() {
        let raw = b"GET / HTTP/1.1\nx-lunar-allow: false\nx-lunar-allow: true\n\n";
        assert_eq!(parse(raw).unwrap().view(raw).lunar_allow, Some(false));
        assert_eq!(emitted(raw, b"I: 1\r\n"), b"GET / HTTP/1.1\nI: 1\r\n\n");
    }

    #[test]
    fn similar_names_are_kept() {
        let raw = b"GET / HTTP/1.1\r\nx-lunar-allowed: true\r\nx-lunar-allow-x: 1\r\n\r\n";
        assert_eq!(parse(raw).unwrap().view(raw).lunar_allow, None);
        assert_eq!(emitted(raw, b""), raw);
    }

    #[test]
    fn leading_empty_lines_stay_before_the_request_line() {
        let raw = b"\r\n\nGET / HTTP/1.1\r\nA: b\r\n\r\n";
        assert_eq!(
            emitted(raw, b"I: 1\r\n"),
            b"\r\n\nGET / HTTP/1.1\r\nI: 1\r\nA: b\r\n\r\n"
        );
    }

    #[test]
    fn upgrade_and_connect() {
        let raw = b"GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nupgrade: websocket\r\n\r\n";
        assert!(parse(raw).unwrap().view(raw).upgrade);
        let raw = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n";
        assert!(parse(raw).unwrap().upgrade());
    }

    #[test]
    fn many_fields() {
        let mut raw = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..500 {
            raw.extend_from_slice(format!("F{i}: {i}\r\n").as_bytes());
        }
        raw.extend_from_slice(b"X-Lunar-Allow: true\r\nHost: h\r\n\r\n");
        let parsed = parse(&raw).unwrap();
        assert_eq!(parsed.view(&raw).host, Some("h"));
        assert_eq!(parsed.view(&raw).lunar_allow, Some(true));
        let out = emitted(&raw, b"");
        assert_eq!(out.len(), raw.len() - b"X-Lunar-Allow: true\r\n".len());
    }

    #[test]
    fn refused_heads() {
        for raw in [
            &b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nA: \x01\r\n\r\n",
            b"GET / HTTP/1.1\r\n folded: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nA: b\r\r\n\r\n",
            b"GET /\xff HTTP/1.1\r\n\r\n",
        ] {
            assert!(parse(raw).is_none(), "{raw:?}");
        }
    }
}
