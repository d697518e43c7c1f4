//! Incremental check that the bytes seen so far can still begin a request line.
//!
//! Deciding "not HTTP" early matters: a TLS or HTTP/2 client must not sit with
//! its first flight held back in our buffer while it waits for a response that
//! will never come. So every byte is judged the moment it arrives, and each
//! byte is looked at exactly once however the stream is split.
//!
//! The grammar is the one httparse accepts with its default configuration, so
//! a line that passes here is not refused by httparse for its request line.

use super::collect::{StartLine, Verdict};
use super::head;

/// RFC 9110 `tchar`, the characters of a method token.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// What httparse takes for a request target: visible ASCII and any byte of a
/// UTF-8 sequence (it checks the UTF-8 itself once the line is complete).
fn is_target_byte(b: u8) -> bool {
    (b'!'..=0x7e).contains(&b) || b >= 0x80
}

const VERSION_PREFIX: &[u8] = crate::hot_data::hot_bytes!(b"HTTP/1.");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Empty lines before a request line are tolerated (RFC 9112 §2.2, and
    /// httparse skips them), so a stray CRLF after a body is not fatal.
    LineStart,
    LeadingCr,
    Method,
    TargetStart,
    Target,
    /// How many bytes of `HTTP/1.` have matched.
    Version(usize),
    Minor,
    AfterMinor,
    Cr,
    Done,
}

#[derive(Debug, Clone)]
pub(crate) struct RequestLine {
    state: State,
}

impl Default for RequestLine {
    fn default() -> Self {
        Self {
            state: State::LineStart,
        }
    }
}

impl StartLine for RequestLine {
    type Head = head::ParsedHead;

    fn parse_whole(input: &[u8]) -> Option<(usize, Self::Head)> {
        head::parse_whole(input)
    }

    fn parse(head: &[u8]) -> Option<Self::Head> {
        head::parse(head)
    }

    fn is_done(&self) -> bool {
        self.state == State::Done
    }

    fn advance(&mut self, input: &[u8]) -> Verdict {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            self.state = match self.state {
                State::LineStart => match b {
                    b'\r' => State::LeadingCr,
                    b'\n' => State::LineStart,
                    b if is_tchar(b) => State::Method,
                    _ => return Verdict::Invalid,
                },
                State::LeadingCr if b == b'\n' => State::LineStart,
                State::Method if is_tchar(b) => State::Method,
                State::Method if b == b' ' => State::TargetStart,
                State::TargetStart | State::Target if is_target_byte(b) => {
                    // A long target is the common case worth skipping in bulk.
                    let run = input[i..]
                        .iter()
                        .position(|&c| !is_target_byte(c))
                        .unwrap_or(input.len() - i);
                    i += run;
                    self.state = State::Target;
                    continue;
                }
                State::Target if b == b' ' => State::Version(0),
                State::Version(n) if b == VERSION_PREFIX[n] => {
                    if n + 1 == VERSION_PREFIX.len() {
                        State::Minor
                    } else {
                        State::Version(n + 1)
                    }
                }
                // httparse knows only HTTP/1.0 and HTTP/1.1.
                State::Minor if b == b'0' || b == b'1' => State::AfterMinor,
                State::AfterMinor if b == b'\r' => State::Cr,
                State::AfterMinor | State::Cr if b == b'\n' => {
                    self.state = State::Done;
                    return Verdict::Done(i + 1);
                }
                State::Done => return Verdict::Done(i),
                _ => return Verdict::Invalid,
            };
            i += 1;
        }
        Verdict::NeedMore
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytewise(input: &[u8]) -> Verdict {
        let mut line = RequestLine::default();
        for (i, b) in input.iter().enumerate() {
            match line.advance(std::slice::from_ref(b)) {
                Verdict::NeedMore => {}
                Verdict::Done(1) => return Verdict::Done(i + 1),
                other => return other,
            }
        }
        Verdict::NeedMore
    }

    fn whole(input: &[u8]) -> Verdict {
        RequestLine::default().advance(input)
    }

    #[test]
    fn accepts_request_lines() {
        for line in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"GET / HTTP/1.0\n",
            b"M-SEARCH * HTTP/1.1\r\n",
            b"OPTIONS * HTTP/1.1\r\n",
            b"CONNECT example.com:443 HTTP/1.1\r\n",
            b"\r\n\nGET /a?b=c HTTP/1.1\r\n",
            "GET /caf\u{e9} HTTP/1.1\r\n".as_bytes(),
        ] {
            assert_eq!(whole(line), Verdict::Done(line.len()));
            assert_eq!(bytewise(line), Verdict::Done(line.len()));
        }
    }

    #[test]
    fn stops_at_the_end_of_the_line() {
        assert_eq!(whole(b"GET / HTTP/1.1\r\nHost: x\r\n"), Verdict::Done(16));
    }

    #[test]
    fn prefixes_need_more() {
        let line = b"POST /upload HTTP/1.1\r";
        for end in 0..=line.len() {
            assert_eq!(whole(&line[..end]), Verdict::NeedMore, "{end}");
        }
    }

    #[test]
    fn rejects_as_soon_as_possible() {
        // (input, length of the longest prefix that is still acceptable)
        for (input, ok) in [
            (&b"\x16\x03\x01"[..], 0),
            (b"PRI * HTTP/2.0\r\n", 11),
            (b"GET  / HTTP/1.1", 4),
            (b"GET / HTTP/1.2\r\n", 13),
            (b"GET / http/1.1\r\n", 6),
            (b"GET /\x7f HTTP/1.1", 5),
            (b"GET / HTTP/1.1\rX", 15),
            (b"\rGET", 1),
            (b" GET", 0),
            (b"G(T", 1),
            (b"GET /\x00", 5),
        ] {
            assert_eq!(whole(input), Verdict::Invalid, "{input:?}");
            assert_eq!(bytewise(input), Verdict::Invalid, "{input:?}");
            assert_eq!(whole(&input[..ok]), Verdict::NeedMore, "{input:?}");
        }
    }
}
