//! How long a message body is (RFC 9112 §6.3), and following it to its end.
//!
//! When the framing is unclear we do not pick a side: the stream passes
//! everything through from then on and the server, which must refuse such a
//! message, decides. Guessing a boundary the server does not share would let
//! one request's body be read as another request (request smuggling).

use super::chunked::{Chunked, ChunkedDecoder};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body: the next byte starts the next message.
    Empty,
    Length(u64),
    Chunked,
    /// Responses only: the body is everything until the connection closes.
    UntilClose,
    /// Conflicting or malformed framing headers.
    Invalid,
}

/// Collects the framing headers of one head, in order.
#[derive(Debug, Default)]
pub(crate) struct FramingHeaders {
    content_length: Option<u64>,
    content_length_bad: bool,
    transfer_encoding: bool,
    chunked_count: u32,
    last_is_chunked: bool,
}

/// Strips optional whitespace (SP, HTAB) from both ends.
pub(crate) fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| !matches!(b, b' ' | b'\t'));
    let end = v.iter().rposition(|b| !matches!(b, b' ' | b'\t'));
    match (start, end) {
        (Some(s), Some(e)) => &v[s..=e],
        _ => &[],
    }
}

fn parse_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

impl FramingHeaders {
    /// A `Content-Length` value. A list of identical values (RFC 9110 §8.6)
    /// is one length; anything else that is not one number is invalid.
    pub(crate) fn content_length(&mut self, value: &[u8]) {
        // Nearly always one number: read whole, without taking the list apart (a value of
        // digits only has no comma and no blank, so the loop would see just this element).
        if let Some(n) = parse_length(value) {
            return self.length(Some(n));
        }
        for element in value.split(|&b| b == b',') {
            self.length(parse_length(trim_ows(element)));
        }
    }

    fn length(&mut self, element: Option<u64>) {
        match element {
            Some(n) if self.content_length.is_none_or(|m| m == n) => {
                self.content_length = Some(n);
            }
            _ => self.content_length_bad = true,
        }
    }

    /// A `Transfer-Encoding` value: a list of codings; only whether chunked
    /// is the last one (and applied once) matters for framing.
    pub(crate) fn transfer_encoding(&mut self, value: &[u8]) {
        self.transfer_encoding = true;
        for element in value.split(|&b| b == b',') {
            let element = trim_ows(element);
            if element.is_empty() {
                continue;
            }
            let name = trim_ows(element.split(|&b| b == b';').next().unwrap_or(&[]));
            self.last_is_chunked = name.eq_ignore_ascii_case(b"chunked");
            if self.last_is_chunked {
                self.chunked_count += 1;
            }
        }
    }

    pub(crate) fn framing(&self, minor_version: u8) -> Framing {
        if self.transfer_encoding {
            // Transfer-Encoding overrides Content-Length (RFC 9112 §6.3 item 3).
            // An HTTP/1.0 message with it has faulty framing (§6.1), and a
            // request whose last coding is not chunked has no knowable end.
            if minor_version == 0 || !self.last_is_chunked || self.chunked_count != 1 {
                return Framing::Invalid;
            }
            return Framing::Chunked;
        }
        match (self.content_length, self.content_length_bad) {
            (_, true) => Framing::Invalid,
            (Some(0), false) | (None, false) => Framing::Empty,
            (Some(n), false) => Framing::Length(n),
        }
    }

    /// The framing of a response, before its status code and the request
    /// method are considered (RFC 9112 §6.3 items 4 to 8).
    pub(crate) fn response_framing(&self, minor_version: u8) -> Framing {
        if self.transfer_encoding {
            // HTTP/1.0 framing with Transfer-Encoding is faulty (§6.1); like
            // a last coding other than chunked it leaves only the close.
            if minor_version == 0 || !self.last_is_chunked || self.chunked_count != 1 {
                return Framing::UntilClose;
            }
            return Framing::Chunked;
        }
        match (self.content_length, self.content_length_bad) {
            (_, true) => Framing::Invalid,
            (Some(0), false) => Framing::Empty,
            (Some(n), false) => Framing::Length(n),
            (None, false) => Framing::UntilClose,
        }
    }
}

/// Follows one body to its end.
#[derive(Debug, Clone)]
pub(crate) enum Body {
    Length(u64),
    Chunked(ChunkedDecoder),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    /// All the input belongs to the body, which goes on.
    More,
    /// The body ended after this many bytes of the input.
    Done(usize),
    Error,
}

impl Body {
    /// `None` when the framing has no body to follow.
    pub(crate) fn new(framing: Framing) -> Option<Self> {
        match framing {
            Framing::Length(n) => Some(Body::Length(n)),
            Framing::Chunked => Some(Body::Chunked(ChunkedDecoder::default())),
            Framing::Empty | Framing::UntilClose | Framing::Invalid => None,
        }
    }

    pub(crate) fn advance(&mut self, input: &[u8]) -> Progress {
        match self {
            Body::Length(left) => {
                if (input.len() as u64) < *left {
                    *left -= input.len() as u64;
                    Progress::More
                } else {
                    let n = *left as usize;
                    *left = 0;
                    Progress::Done(n)
                }
            }
            Body::Chunked(decoder) => match decoder.advance(input) {
                Chunked::More => Progress::More,
                Chunked::Done(n) => Progress::Done(n),
                Chunked::Error => Progress::Error,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framing(headers: &[(&str, &str)], minor: u8) -> Framing {
        let mut f = FramingHeaders::default();
        for (name, value) in headers {
            if name.eq_ignore_ascii_case("content-length") {
                f.content_length(value.as_bytes());
            } else {
                f.transfer_encoding(value.as_bytes());
            }
        }
        f.framing(minor)
    }

    #[test]
    fn content_length() {
        assert_eq!(framing(&[], 1), Framing::Empty);
        assert_eq!(framing(&[("Content-Length", "0")], 1), Framing::Empty);
        assert_eq!(framing(&[("Content-Length", "12")], 0), Framing::Length(12));
        assert_eq!(
            framing(&[("content-length", "7, 7"), ("CONTENT-LENGTH", "7")], 1),
            Framing::Length(7)
        );
        assert_eq!(
            framing(&[("Content-Length", "18446744073709551615")], 1),
            Framing::Length(u64::MAX)
        );
        for bad in [
            "",
            "-1",
            "+1",
            "1.0",
            "0x10",
            "1 2",
            "5,",
            "18446744073709551616",
        ] {
            assert_eq!(
                framing(&[("Content-Length", bad)], 1),
                Framing::Invalid,
                "{bad}"
            );
        }
        assert_eq!(
            framing(&[("Content-Length", "1"), ("Content-Length", "2")], 1),
            Framing::Invalid
        );
    }

    #[test]
    fn transfer_encoding() {
        let te = |v| framing(&[("Transfer-Encoding", v)], 1);
        assert_eq!(te("chunked"), Framing::Chunked);
        assert_eq!(te("gzip, Chunked"), Framing::Chunked);
        assert_eq!(te(" , gzip ,chunked , "), Framing::Chunked);
        assert_eq!(te("chunked, gzip"), Framing::Invalid);
        assert_eq!(te("chunked, chunked"), Framing::Invalid);
        assert_eq!(te("gzip"), Framing::Invalid);
        assert_eq!(te(""), Framing::Invalid);
        assert_eq!(
            framing(
                &[
                    ("Transfer-Encoding", "gzip"),
                    ("Transfer-Encoding", "chunked")
                ],
                1
            ),
            Framing::Chunked
        );
        assert_eq!(
            framing(
                &[("Content-Length", "5"), ("Transfer-Encoding", "chunked")],
                1
            ),
            Framing::Chunked
        );
        assert_eq!(
            framing(&[("Transfer-Encoding", "chunked")], 0),
            Framing::Invalid
        );
    }

    #[test]
    fn response_framing() {
        let response = |headers: &[(&str, &str)], minor| {
            let mut f = FramingHeaders::default();
            for (name, value) in headers {
                if name.eq_ignore_ascii_case("content-length") {
                    f.content_length(value.as_bytes());
                } else {
                    f.transfer_encoding(value.as_bytes());
                }
            }
            f.response_framing(minor)
        };
        assert_eq!(response(&[], 1), Framing::UntilClose);
        assert_eq!(response(&[("Content-Length", "0")], 1), Framing::Empty);
        assert_eq!(response(&[("Content-Length", "9")], 0), Framing::Length(9));
        assert_eq!(response(&[("Content-Length", "x")], 1), Framing::Invalid);
        assert_eq!(
            response(&[("Transfer-Encoding", "chunked")], 1),
            Framing::Chunked
        );
        assert_eq!(
            response(&[("Transfer-Encoding", "gzip")], 1),
            Framing::UntilClose
        );
        assert_eq!(
            response(&[("Transfer-Encoding", "chunked")], 0),
            Framing::UntilClose
        );
    }

    #[test]
    fn length_body_ends_exactly() {
        let mut body = Body::new(Framing::Length(5)).unwrap();
        assert_eq!(body.advance(b"abc"), Progress::More);
        assert_eq!(body.advance(b"deGET"), Progress::Done(2));
        assert!(Body::new(Framing::Empty).is_none());
    }
}
