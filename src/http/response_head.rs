//! A complete response head from the proxy: what it says about Lunar's
//! protocol (errors, retries), and the head the application may see.
//!
//! Parsed with httparse for the same reasons as request heads: it borrows
//! instead of allocating, does no I/O and is well fuzzed.

use std::mem::MaybeUninit;
use std::ops::Range;

use super::fields::{copy_without, field_line, span, text};
use super::framing::{trim_ows, Framing, FramingHeaders};

/// The parts of a response head the connection layer decides on. Borrows
/// the stream's head buffer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResponseHead<'a> {
    pub status: u16,
    pub reason: &'a str,
    /// HTTP/1.<minor>
    pub minor_version: u8,
    /// The first `x-lunar-error` value, trimmed: the proxy's error code. Any
    /// value, even one that is not a known code, marks a proxy failure.
    pub lunar_error: Option<&'a str>,
    /// Present when the proxy asks for a retry: `x-lunar-retry-after` is a
    /// finite number of seconds, not negative, and `x-lunar-sequence-id` is
    /// there too.
    pub retry: Option<Retry<'a>>,
    /// A 1xx other than 101: the final response to the same request follows.
    pub informational: bool,
    /// Has `x-lunar-sequence-id` lines, which the application must not see.
    pub carries_sequence_id: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retry<'a> {
    pub after_secs: f64,
    pub sequence_id: &'a str,
}

impl ResponseHead<'_> {
    /// Stands in when no head is ready, so that `head()` need not panic.
    pub(crate) const EMPTY: ResponseHead<'static> = ResponseHead {
        status: 0,
        reason: "",
        minor_version: 1,
        lunar_error: None,
        retry: None,
        informational: false,
        carries_sequence_id: false,
    };
}

#[derive(Debug, Clone)]
pub(crate) struct ParsedResponse {
    pub(crate) status: u16,
    reason: Range<usize>,
    minor_version: u8,
    lunar_error: Option<Range<usize>>,
    retry: Option<(f64, Range<usize>)>,
    /// The `x-lunar-sequence-id` field lines, line endings included, in order.
    removed: Vec<Range<usize>>,
    pub(crate) framing: Framing,
}

const STACK_HEADERS: usize = 64;

/// The head at the start of `input` when all of it is there and httparse takes it: its
/// length and its parse (`StartLine::parse_whole`).
pub(crate) fn parse_whole(input: &[u8]) -> Option<(usize, ParsedResponse)> {
    // Uninitialised: 64 empty fields would be 2 KiB of stores per response.
    let mut headers = [MaybeUninit::uninit(); STACK_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        input,
        &mut headers,
    );
    match parsed {
        Ok(httparse::Status::Complete(n)) => read(&input[..n], &response).map(|head| (n, head)),
        _ => None,
    }
}

/// Parses `head`, which must end exactly at the end of the head. `None` when
/// httparse refuses it.
pub(crate) fn parse(head: &[u8]) -> Option<ParsedResponse> {
    let mut headers = [MaybeUninit::uninit(); STACK_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        head,
        &mut headers,
    );
    match parsed {
        Ok(httparse::Status::Complete(n)) if n == head.len() => return read(head, &response),
        Err(httparse::Error::TooManyHeaders) => {}
        _ => return None,
    }
    let lines = memchr::memchr_iter(b'\n', head).count();
    let mut headers = vec![httparse::EMPTY_HEADER; lines];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(head) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => read(head, &response),
        _ => None,
    }
}

fn read(head: &[u8], response: &httparse::Response<'_, '_>) -> Option<ParsedResponse> {
    let mut parsed = ParsedResponse {
        status: response.code?,
        reason: span(head, response.reason?.as_bytes()),
        minor_version: response.version?,
        lunar_error: None,
        retry: None,
        removed: Vec::new(),
        framing: Framing::Empty,
    };
    let mut framing = FramingHeaders::default();
    let mut retry_after = None;
    let mut sequence_id = None;
    for header in response.headers.iter() {
        let name = header.name;
        // Trimmed only for the fields read (most are not): this runs for every field of
        // every diverted request and answer.
        let value = || trim_ows(header.value);
        if name.eq_ignore_ascii_case("x-lunar-error") {
            if parsed.lunar_error.is_none() {
                parsed.lunar_error = Some(span(head, text(value()).map_or(&[], str::as_bytes)));
            }
        } else if name.eq_ignore_ascii_case("x-lunar-retry-after") {
            retry_after = retry_after.or_else(|| Some(value()));
        } else if name.eq_ignore_ascii_case("x-lunar-sequence-id") {
            if sequence_id.is_none() {
                sequence_id = text(value()).map(|v| span(head, v.as_bytes()));
            }
            parsed.removed.push(field_line(head, name)?);
        } else if name.eq_ignore_ascii_case("content-length") {
            framing.content_length(value());
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            framing.transfer_encoding(value());
        }
    }
    let delay = retry_after
        .and_then(text)
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|d| d.is_finite() && *d >= 0.0);
    parsed.retry = match (delay, sequence_id) {
        (Some(d), Some(id)) if !id.is_empty() => Some((d, id)),
        _ => None,
    };
    parsed.framing = framing.response_framing(parsed.minor_version);
    Some(parsed)
}

impl ParsedResponse {
    pub(crate) fn informational(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }

    pub(crate) fn view<'a>(&self, head: &'a [u8]) -> ResponseHead<'a> {
        let part = |r: &Range<usize>| head.get(r.clone()).and_then(text).unwrap_or("");
        ResponseHead {
            status: self.status,
            reason: part(&self.reason),
            minor_version: self.minor_version,
            lunar_error: self.lunar_error.as_ref().map(part),
            retry: self.retry.as_ref().map(|(after_secs, id)| Retry {
                after_secs: *after_secs,
                sequence_id: part(id),
            }),
            informational: self.informational(),
            carries_sequence_id: !self.removed.is_empty(),
        }
    }

    /// Appends the head the application may see: all of it but the
    /// `x-lunar-sequence-id` field lines.
    pub(crate) fn emit(&self, head: &[u8], out: &mut Vec<u8>) {
        out.reserve(head.len());
        copy_without(head, 0, &self.removed, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(raw: &[u8]) -> ResponseHead<'_> {
        parse(raw).unwrap().view(raw)
    }

    #[test]
    fn reads_status_and_reason() {
        let head = view(b"HTTP/1.0 404 Not Found\r\n\r\n");
        assert_eq!(
            (head.status, head.reason, head.minor_version),
            (404, "Not Found", 0)
        );
        assert_eq!(view(b"HTTP/1.1 204\r\n\r\n").reason, "");
        assert!(view(b"HTTP/1.1 100 Continue\r\n\r\n").informational);
        assert!(view(b"HTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n").informational);
        assert!(!view(b"HTTP/1.1 101 Switching Protocols\r\n\r\n").informational);
    }

    #[test]
    fn lunar_error() {
        let head = view(b"HTTP/1.1 503 Service Unavailable\r\nX-Lunar-Error:  2 \r\n\r\n");
        assert_eq!(head.lunar_error, Some("2"));
        assert_eq!(
            view(b"HTTP/1.1 503 S\r\nx-lunar-error:\r\n\r\n").lunar_error,
            Some("")
        );
        assert_eq!(view(b"HTTP/1.1 200 OK\r\n\r\n").lunar_error, None);
    }

    #[test]
    fn retry_needs_a_number_and_a_sequence_id() {
        let with = |fields: &str| {
            let raw = format!("HTTP/1.1 429 Too Many\r\n{fields}\r\n");
            let parsed = parse(raw.as_bytes()).unwrap();
            parsed
                .view(raw.as_bytes())
                .retry
                .map(|r| (r.after_secs, r.sequence_id.to_owned()))
        };
        assert_eq!(
            with("x-lunar-retry-after: 1.5\r\nX-Lunar-Sequence-Id: abc\r\n"),
            Some((1.5, "abc".to_owned()))
        );
        assert_eq!(
            with("X-LUNAR-SEQUENCE-ID: 7\r\nx-lunar-retry-after: 0\r\n"),
            Some((0.0, "7".to_owned()))
        );
        for fields in [
            "x-lunar-retry-after: soon\r\nx-lunar-sequence-id: a\r\n",
            "x-lunar-retry-after: -1\r\nx-lunar-sequence-id: a\r\n",
            "x-lunar-retry-after: inf\r\nx-lunar-sequence-id: a\r\n",
            "x-lunar-retry-after: NaN\r\nx-lunar-sequence-id: a\r\n",
            "x-lunar-retry-after: 2\r\n",
            "x-lunar-retry-after: 2\r\nx-lunar-sequence-id:\r\n",
            "x-lunar-sequence-id: a\r\n",
        ] {
            assert_eq!(with(fields), None, "{fields}");
        }
    }

    #[test]
    fn sequence_id_lines_are_not_shown() {
        let raw = b"HTTP/1.1 200 OK\r\nx-lunar-sequence-id: 1\r\nA: b\r\n\
                    X-Lunar-Sequence-ID: 2\nC: d\r\n\r\n";
        let mut out = Vec::new();
        parse(raw).unwrap().emit(raw, &mut out);
        assert_eq!(out, b"HTTP/1.1 200 OK\r\nA: b\r\nC: d\r\n\r\n".to_vec());
    }

    #[test]
    fn framing() {
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\n\r\n").unwrap().framing,
            Framing::UntilClose
        );
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(parse(raw).unwrap().framing, Framing::Length(3));
    }

    #[test]
    fn refused_heads() {
        assert!(parse(b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n").is_none());
        assert!(parse(b"HTTP/1.1 200 OK\r\n folded\r\n\r\n").is_none());
    }
}
