//! Copies of the requests sent through the proxy whose responses have not been read yet:
//! what a replay to the original destination, or a retry through the proxy, sends again.
//!
//! Each copy is the request as it went to the proxy (Lunar's lines included); the form for
//! the original destination is derived by cutting those lines out again.

use crate::http::Asked;
use std::collections::VecDeque;

#[derive(Debug)]
struct RequestCopy {
    method: Asked,
    /// The request as sent to the proxy, head and body so far.
    wire: Vec<u8>,
    /// Where Lunar's lines sit in `wire`.
    injected_at: usize,
    injected_len: usize,
    /// Its body outgrew the replay cap: the copy is useless.
    overflowed: bool,
}

impl RequestCopy {
    fn direct(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.wire[..self.injected_at]);
        out.extend_from_slice(&self.wire[self.injected_at + self.injected_len..]);
    }

    fn with_sequence_id(&self, sequence_id: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.wire[..self.injected_at]);
        out.extend_from_slice(b"x-lunar-sequence-id: ");
        out.extend_from_slice(sequence_id.as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.wire[self.injected_at..]);
    }
}

#[derive(Debug)]
pub struct InFlight {
    copies: VecDeque<RequestCopy>,
    /// The newest copy is still being written by the program.
    writing: bool,
    /// Bytes one request copy may hold (LUNAR_REPLAY_MAX_BYTES).
    cap: usize,
    /// The buffer of the last copy answered, for the next request's copy: a keep-alive
    /// connection then keeps one allocation instead of making one per request. Only
    /// a buffer of at most `SPARE_MAX` bytes is kept (a large upload's is freed).
    spare: Vec<u8>,
}

const SPARE_MAX: usize = 16 * 1024;

/// An `InFlight`'s allocations, kept from a closed connection for the next one.
#[derive(Debug, Default)]
pub struct InFlightBuffers {
    copies: VecDeque<RequestCopy>,
    spare: Vec<u8>,
}

impl InFlightBuffers {
    /// Bytes they hold.
    pub fn capacity(&self) -> usize {
        self.copies.capacity() * std::mem::size_of::<RequestCopy>() + self.spare.capacity()
    }
}

impl InFlight {
    #[cfg(test)]
    pub fn new(cap: usize) -> Self {
        Self::with_buffers(cap, InFlightBuffers::default())
    }

    /// Copies kept in a closed connection's buffers (emptied).
    pub fn with_buffers(cap: usize, buffers: InFlightBuffers) -> Self {
        let InFlightBuffers {
            mut copies,
            mut spare,
        } = buffers;
        copies.clear();
        spare.clear();
        InFlight {
            copies,
            writing: false,
            cap,
            spare,
        }
    }

    /// The buffers, for a later connection (`with_buffers`): the queue of copies, and the
    /// spare (an answered copy's buffer). This one is left empty.
    pub fn take_buffers(&mut self) -> InFlightBuffers {
        self.writing = false;
        InFlightBuffers {
            copies: std::mem::take(&mut self.copies),
            spare: std::mem::take(&mut self.spare),
        }
    }

    /// A new request went out: `head` as sent, with Lunar's lines (`injected_len` bytes)
    /// inserted right after its request line.
    pub fn start(&mut self, method: Asked, head: &[u8], injected_len: usize) {
        let injected_len = injected_len.min(head.len());
        let injected_at = request_line_end(head).min(head.len() - injected_len);
        let overflowed = head.len() > self.cap;
        let wire = if overflowed {
            Vec::new()
        } else {
            let mut wire = std::mem::take(&mut self.spare);
            wire.clear();
            wire.extend_from_slice(head);
            wire
        };
        self.copies.push_back(RequestCopy {
            method,
            wire,
            injected_at,
            injected_len,
            overflowed,
        });
        self.writing = true;
    }

    /// Body bytes of the newest request went out.
    pub fn append(&mut self, bytes: &[u8]) {
        if !self.writing {
            return;
        }
        if let Some(copy) = self.copies.back_mut() {
            if copy.overflowed {
                return;
            }
            if copy.wire.len() + bytes.len() > self.cap {
                copy.overflowed = true;
                copy.wire = Vec::new();
            } else {
                copy.wire.extend_from_slice(bytes);
            }
        }
    }

    /// The newest request is completely written.
    pub fn end_request(&mut self) {
        self.writing = false;
    }

    /// The oldest request's final response has been read: it will never be sent again.
    pub fn answered(&mut self) {
        if self.copies.len() == 1 {
            self.writing = false;
        }
        if let Some(copy) = self.copies.pop_front() {
            if copy.wire.capacity() <= SPARE_MAX {
                self.spare = copy.wire;
            }
        }
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.copies.is_empty()
    }

    /// Every unanswered request can be sent again.
    pub fn replayable(&self) -> bool {
        self.copies.iter().all(|copy| !copy.overflowed)
    }

    pub fn methods(&self) -> impl Iterator<Item = Asked> + '_ {
        self.copies.iter().map(|copy| copy.method)
    }

    /// The unanswered requests as the program wrote them (for the original destination).
    pub fn direct_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.copies.iter().for_each(|copy| copy.direct(&mut out));
        out
    }

    /// The unanswered requests for the proxy again, the first carrying the sequence id.
    pub fn retry_bytes(&self, sequence_id: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for (index, copy) in self.copies.iter().enumerate() {
            if index == 0 {
                copy.with_sequence_id(sequence_id, &mut out);
            } else {
                out.extend_from_slice(&copy.wire);
            }
        }
        out
    }

    /// After a move to the original destination there is nothing left to replay.
    pub fn clear(&mut self) {
        self.copies.clear();
        self.writing = false;
    }
}

/// Where the request line ends (after its LF); empty lines before it (RFC 9112 §2.2
/// tolerates them) are skipped.
fn request_line_end(head: &[u8]) -> usize {
    let mut start = 0;
    while let Some(offset) = memchr::memchr(b'\n', &head[start..]) {
        let line = &head[start..start + offset];
        start += offset + 1;
        if !(line.is_empty() || line == b"\r") {
            return start;
        }
    }
    head.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    const INJECTED: &[u8] = b"x-lunar-host: a.test\r\nx-lunar-req-id: 1\r\n";

    fn wire(head_rest: &str) -> Vec<u8> {
        let mut head = b"POST /p HTTP/1.1\r\n".to_vec();
        head.extend_from_slice(INJECTED);
        head.extend_from_slice(head_rest.as_bytes());
        head
    }

    #[test]
    fn direct_form_drops_lunar_lines_and_keeps_the_body() {
        let mut inflight = InFlight::new(1024);
        inflight.start(
            Asked::Other,
            &wire("Host: a.test\r\nContent-Length: 5\r\n\r\n"),
            INJECTED.len(),
        );
        inflight.append(b"hel");
        inflight.append(b"lo");
        inflight.end_request();
        assert_eq!(
            inflight.direct_bytes(),
            b"POST /p HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\r\nhello"
        );
        let retry = inflight.retry_bytes("42");
        assert!(retry.starts_with(
            b"POST /p HTTP/1.1\r\nx-lunar-sequence-id: 42\r\nx-lunar-host: a.test\r\n"
        ));
        assert!(retry.ends_with(b"\r\n\r\nhello"));
    }

    #[test]
    fn pipelined_copies_leave_in_order() {
        let mut inflight = InFlight::new(1024);
        inflight.start(Asked::of("GET"), &wire("Host: a\r\n\r\n"), INJECTED.len());
        inflight.end_request();
        inflight.start(Asked::of("HEAD"), &wire("Host: b\r\n\r\n"), INJECTED.len());
        inflight.end_request();
        assert_eq!(
            inflight.methods().collect::<Vec<_>>(),
            [Asked::Other, Asked::Head]
        );
        inflight.answered();
        assert_eq!(
            inflight.direct_bytes(),
            b"POST /p HTTP/1.1\r\nHost: b\r\n\r\n"
        );
        inflight.answered();
        assert!(inflight.is_empty());
    }

    #[test]
    fn empty_lines_before_the_request_line_are_kept_out_of_the_way() {
        let mut inflight = InFlight::new(1024);
        let mut head = b"\r\n\nGET / HTTP/1.1\r\n".to_vec();
        head.extend_from_slice(INJECTED);
        head.extend_from_slice(b"Host: a\r\n\r\n");
        inflight.start(Asked::of("GET"), &head, INJECTED.len());
        assert_eq!(
            inflight.direct_bytes(),
            b"\r\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"
        );
    }

    #[test]
    fn over_the_cap_is_not_replayable() {
        let mut inflight = InFlight::new(100);
        inflight.start(Asked::of("POST"), &wire("Host: a\r\n\r\n"), INJECTED.len());
        inflight.append(&[b'x'; 60]);
        assert!(!inflight.replayable());
        inflight.answered();
        assert!(inflight.replayable());
    }

    #[test]
    fn bytes_after_an_early_answer_are_not_kept() {
        let mut inflight = InFlight::new(1024);
        inflight.start(Asked::of("POST"), &wire("Host: a\r\n\r\n"), INJECTED.len());
        inflight.answered();
        inflight.append(b"late body");
        assert!(inflight.is_empty());
    }

    #[test]
    fn recycled_buffers_carry_no_copy_over() {
        let mut old = InFlight::new(1024);
        old.start(Asked::Other, b"GET /a HTTP/1.1\r\n\r\n", 0);
        old.start(Asked::Other, b"GET /b HTTP/1.1\r\n\r\n", 0);
        let buffers = old.take_buffers();
        assert!(buffers.capacity() > 0);
        let mut inflight = InFlight::with_buffers(1024, buffers);
        assert!(inflight.is_empty());
        assert!(inflight.direct_bytes().is_empty());
        inflight.start(Asked::Other, b"GET /c HTTP/1.1\r\n\r\n", 0);
        assert_eq!(inflight.direct_bytes(), b"GET /c HTTP/1.1\r\n\r\n");
    }
}
