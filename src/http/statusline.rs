//! Incremental check that the bytes seen so far can still begin a status
//! line, with the grammar httparse accepts by default: `HTTP/1.0` or
//! `HTTP/1.1`, one SP, three digits, then SP and a reason phrase or the line
//! end straight away.

use super::collect::{StartLine, Verdict};
use super::response_head;

const VERSION_PREFIX: &[u8] = crate::hot_data::hot_bytes!(b"HTTP/1.");

/// HTAB, SP, VCHAR and obs-text.
fn is_reason_byte(b: u8) -> bool {
    b == b'\t' || b == b' ' || (b'!'..=b'~').contains(&b) || b >= 0x80
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    LineStart,
    LeadingCr,
    /// How many bytes of `HTTP/1.` have matched.
    Version(usize),
    Minor,
    Space,
    /// How many digits of the code have been seen.
    Code(u8),
    AfterCode,
    Reason,
    Cr,
    Done,
}

#[derive(Debug, Clone)]
pub(crate) struct StatusLine {
    state: State,
}

impl Default for StatusLine {
    fn default() -> Self {
        Self {
            state: State::LineStart,
        }
    }
}

impl StartLine for StatusLine {
    type Head = response_head::ParsedResponse;

    fn parse_whole(input: &[u8]) -> Option<(usize, Self::Head)> {
        response_head::parse_whole(input)
    }

    fn parse(head: &[u8]) -> Option<Self::Head> {
        response_head::parse(head)
    }

    fn is_done(&self) -> bool {
        self.state == State::Done
    }

    fn advance(&mut self, input: &[u8]) -> Verdict {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            self.state = match self.state {
                State::LineStart if b == b'\r' => State::LeadingCr,
                State::LineStart if b == b'\n' => State::LineStart,
                State::LeadingCr if b == b'\n' => State::LineStart,
                State::LineStart if b == VERSION_PREFIX[0] => State::Version(1),
                State::Version(n) if b == VERSION_PREFIX[n] => {
                    if n + 1 == VERSION_PREFIX.len() {
                        State::Minor
                    } else {
                        State::Version(n + 1)
                    }
                }
                State::Minor if b == b'0' || b == b'1' => State::Space,
                State::Space if b == b' ' => State::Code(0),
                State::Code(n) if b.is_ascii_digit() => {
                    if n == 2 {
                        State::AfterCode
                    } else {
                        State::Code(n + 1)
                    }
                }
                State::AfterCode if b == b' ' => State::Reason,
                State::Reason if is_reason_byte(b) => {
                    let run = input[i..]
                        .iter()
                        .position(|&c| !is_reason_byte(c))
                        .unwrap_or(input.len() - i);
                    i += run;
                    continue;
                }
                State::AfterCode | State::Reason if b == b'\r' => State::Cr,
                State::AfterCode | State::Reason | State::Cr if b == b'\n' => {
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
        let mut line = StatusLine::default();
        for (i, b) in input.iter().enumerate() {
            match line.advance(std::slice::from_ref(b)) {
                Verdict::NeedMore => {}
                Verdict::Done(1) => return Verdict::Done(i + 1),
                other => return other,
            }
        }
        Verdict::NeedMore
    }

    #[test]
    fn accepts_status_lines() {
        for line in [
            &b"HTTP/1.1 200 OK\r\n"[..],
            b"HTTP/1.0 404 Not Found\n",
            b"HTTP/1.1 204\r\n",
            b"HTTP/1.1 100 \r\n",
            b"\r\nHTTP/1.1 503 Service\tUnavailable \xe2\x9c\x97\r\n",
        ] {
            let whole = StatusLine::default().advance(line);
            assert_eq!(whole, Verdict::Done(line.len()), "{line:?}");
            assert_eq!(bytewise(line), Verdict::Done(line.len()), "{line:?}");
        }
    }

    #[test]
    fn rejects_as_soon_as_possible() {
        for (input, ok) in [
            (&b"HTTP/2 200\r\n"[..], 5),
            (b"HTTP/1.1  200 OK\r\n", 9),
            (b"HTTP/1.1 20 OK\r\n", 11),
            (b"HTTP/1.1 2000 OK\r\n", 12),
            (b"HTTP/1.1 200 O\x7fK\r\n", 14),
            (b"HTTP/1.1 200 OK\rX", 16),
            (b"\x00\x00\x12\x04", 0),
            (b"SSH-2.0", 0),
        ] {
            assert_eq!(
                StatusLine::default().advance(input),
                Verdict::Invalid,
                "{input:?}"
            );
            assert_eq!(bytewise(input), Verdict::Invalid, "{input:?}");
            let prefix = StatusLine::default().advance(&input[..ok]);
            assert_eq!(prefix, Verdict::NeedMore, "{input:?}");
        }
    }
}
