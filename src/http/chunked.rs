//! Tracking where a chunked body ends (RFC 9112 §7.1), over any split.
//!
//! The bytes are not changed and not copied: the decoder only has to agree
//! with the server on where the message ends, so that the next request head
//! is found where the server will look for it. Anything it cannot follow is
//! an error, and the stream then passes everything through: the server will
//! refuse the message itself, and we must not guess at a boundary.
//! Bare LF is accepted wherever CRLF is, as for the head.

use memchr::{memchr, memchr2};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hex chunk size; at least one digit is needed.
    Size {
        seen_digit: bool,
        value: u64,
    },
    /// Chunk extensions (or whitespace before them): skipped to the line end.
    Extension {
        value: u64,
    },
    /// A CR ended the size line; its LF must follow.
    SizeLf {
        value: u64,
    },
    Data {
        left: u64,
    },
    /// After chunk data: CRLF or LF must follow.
    DataEnd,
    DataLf,
    /// At the start of a line in the trailer section.
    TrailerStart,
    TrailerLine,
    /// A CR at the start of a trailer line: the final LF must follow.
    FinalLf,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chunked {
    /// All the input belongs to the body, which goes on.
    More,
    /// The body ended after this many bytes of the input.
    Done(usize),
    /// The body cannot be followed from here on.
    Error,
}

#[derive(Debug, Clone)]
pub(crate) struct ChunkedDecoder {
    state: State,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self {
            state: State::default_size(),
        }
    }
}

impl ChunkedDecoder {
    pub(crate) fn advance(&mut self, input: &[u8]) -> Chunked {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            self.state = match self.state {
                State::Size { seen_digit, value } => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        let digit = u64::from((b as char).to_digit(16).unwrap_or(0));
                        // A size that does not fit in u64 cannot be followed.
                        match value.checked_mul(16).and_then(|v| v.checked_add(digit)) {
                            Some(value) => State::Size {
                                seen_digit: true,
                                value,
                            },
                            None => return Chunked::Error,
                        }
                    }
                    _ if !seen_digit => return Chunked::Error,
                    b';' | b' ' | b'\t' => State::Extension { value },
                    b'\r' => State::SizeLf { value },
                    b'\n' => Self::after_size(value),
                    _ => return Chunked::Error,
                },
                // Extensions may hold quoted strings with any visible byte, but
                // never CR or LF, so the line end is the first of those.
                State::Extension { value } => match memchr2(b'\r', b'\n', &input[i..]) {
                    None => return Chunked::More,
                    Some(k) => {
                        i += k;
                        if input[i] == b'\r' {
                            State::SizeLf { value }
                        } else {
                            Self::after_size(value)
                        }
                    }
                },
                State::SizeLf { value } if b == b'\n' => Self::after_size(value),
                State::Data { left } => {
                    let take = left.min((input.len() - i) as u64);
                    i += take as usize;
                    self.state = match left - take {
                        0 => State::DataEnd,
                        left => State::Data { left },
                    };
                    continue;
                }
                State::DataEnd if b == b'\r' => State::DataLf,
                State::DataEnd | State::DataLf if b == b'\n' => State::default_size(),
                State::TrailerStart => match b {
                    b'\r' => State::FinalLf,
                    b'\n' => return self.finish(i + 1),
                    _ => State::TrailerLine,
                },
                State::TrailerLine => match memchr(b'\n', &input[i..]) {
                    None => return Chunked::More,
                    Some(k) => {
                        i += k + 1;
                        self.state = State::TrailerStart;
                        continue;
                    }
                },
                State::FinalLf if b == b'\n' => return self.finish(i + 1),
                State::Done => return Chunked::Done(i),
                _ => return Chunked::Error,
            };
            i += 1;
        }
        Chunked::More
    }

    fn after_size(value: u64) -> State {
        if value == 0 {
            State::TrailerStart
        } else {
            State::Data { left: value }
        }
    }

    fn finish(&mut self, consumed: usize) -> Chunked {
        self.state = State::Done;
        Chunked::Done(consumed)
    }
}

impl State {
    fn default_size() -> Self {
        State::Size {
            seen_digit: false,
            value: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `data` cut at `splits`; returns where the body ended, if it did.
    fn run(data: &[u8], splits: &[usize]) -> Result<Option<usize>, usize> {
        let mut decoder = ChunkedDecoder::default();
        let mut start = 0;
        for &end in splits.iter().chain(std::iter::once(&data.len())) {
            let end = end.clamp(start, data.len());
            match decoder.advance(&data[start..end]) {
                Chunked::More => {}
                Chunked::Done(n) => return Ok(Some(start + n)),
                Chunked::Error => return Err(start),
            }
            start = end;
        }
        Ok(None)
    }

    fn ends_at_over_every_split(data: &[u8], end: Option<usize>) {
        assert_eq!(run(data, &[]), Ok(end), "{data:?}");
        for split in 0..=data.len() {
            assert_eq!(run(data, &[split]), Ok(end), "{data:?} at {split}");
        }
        let every: Vec<usize> = (1..data.len()).collect();
        assert_eq!(run(data, &every), Ok(end), "{data:?} bytewise");
    }

    #[test]
    fn simple_body() {
        let body = b"5\r\nhello\r\n0\r\n\r\nGET";
        ends_at_over_every_split(body, Some(body.len() - 3));
    }

    #[test]
    fn extensions_trailers_and_big_sizes() {
        let body = b"000A;name=\"v;x\" ; other\r\n0123456789\r\n\
                     1a \t;ext\r\nabcdefghijklmnopqrstuvwxyz\r\n\
                     0;last\r\nTrailer: x\r\nOther: y\r\n\r\nNEXT";
        ends_at_over_every_split(body, Some(body.len() - 4));
    }

    #[test]
    fn bare_line_feeds() {
        let body = b"3\nabc\n0\nT: v\n\nX";
        ends_at_over_every_split(body, Some(body.len() - 1));
    }

    #[test]
    fn incomplete_bodies_need_more() {
        let body = b"5\r\nhello\r\n0\r\nTrailer: x\r\n";
        ends_at_over_every_split(body, None);
    }

    #[test]
    fn malformed_bodies_are_errors() {
        for data in [
            &b"\r\n"[..],
            b";ext\r\n",
            b"g\r\n",
            b"5\rX",
            b"5\r\nhelloX",
            b"5\r\nhello\rX",
            b"0\r\n\rX",
            b"11111111111111111\r\n",
        ] {
            assert!(run(data, &[]).is_err(), "{data:?}");
            let every: Vec<usize> = (1..data.len()).collect();
            assert!(run(data, &every).is_err(), "{data:?}");
        }
    }

    #[test]
    fn largest_size_is_followed() {
        let mut decoder = ChunkedDecoder::default();
        assert_eq!(decoder.advance(b"ffffffffffffffff\r\n"), Chunked::More);
        assert_eq!(decoder.advance(&[0; 4096]), Chunked::More);
    }
}
