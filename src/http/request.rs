//! The request side: the bytes an application writes, one message after the
//! other, with each head held back until it is complete so it can be
//! rewritten, and every body passed through untouched.

use super::collect::{Collected, HeadCollector};
use super::framing::{Body, Framing, Progress};
use super::head::{ParsedHead, RequestHead};
use super::reqline::RequestLine;

/// What a prefix of the input offered to [`RequestStream::feed`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `n` bytes of input belong to a body, a tunnel or a non-HTTP stream:
    /// send them unchanged, 1:1.
    Pass(usize),
    /// `n` bytes were taken into the head buffer; the head is not complete
    /// yet; nothing to send now.
    Buffered(usize),
    /// The head completed after taking `n` more bytes of input into the
    /// buffer: call `head()` then `emit_head()`.
    HeadComplete(usize),
    /// The stream is not HTTP/1.x: `n` input bytes were taken into the buffer
    /// (may be 0); call `take_buffered()` and send those bytes unchanged;
    /// every later byte passes.
    NotHttp(usize),
}

#[derive(Debug, Clone)]
enum State {
    /// Collecting a head (the buffer is empty between messages).
    Head(HeadCollector<RequestLine>),
    /// A complete head waits for `emit_head`.
    Ready(ParsedHead),
    Body {
        body: Body,
        /// After a CONNECT's body: its tunnel.
        then_tunnel: bool,
    },
    /// Everything passes, for good: not HTTP, a tunnel, or framing we
    /// cannot follow.
    Passthrough,
}

impl State {
    fn new_head() -> Self {
        State::Head(HeadCollector::default())
    }
}

/// Follows the request stream of one connection. Sans-IO: it is told what
/// the application writes and says what to send.
/// Cloning is cheap between heads (the buffer is empty then): the connection layer
/// snapshots the stream before offering bytes the kernel may not take.
#[derive(Debug, Clone)]
pub struct RequestStream {
    state: State,
    /// The head being collected, a complete head until it is emitted, or
    /// what was held when the stream turned out not to be HTTP.
    buf: Vec<u8>,
    heads: u64,
    /// The last request asked for an upgrade (`Upgrade`): a server may decline it (any
    /// answer but 101) and the client then goes on in HTTP/1.1 (Java's `HttpClient`
    /// offers h2c on every first request), so the stream follows requests until the
    /// connection layer, seeing the 101, turns it into a tunnel (`take_buffered`).
    upgrade_offered: bool,
}

impl Default for RequestStream {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestStream {
    pub fn new() -> Self {
        Self::with_buffer(Vec::new())
    }

    /// A new stream whose heads go into `buf` (emptied): a closed connection's, whose
    /// capacity then spares this one its allocations.
    pub fn with_buffer(mut buf: Vec<u8>) -> Self {
        buf.clear();
        Self {
            state: State::new_head(),
            buf,
            heads: 0,
            upgrade_offered: false,
        }
    }

    /// The stream's buffer, for a later stream (`with_buffer`); this one is left empty.
    pub fn take_buffer(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    /// Offer bytes the application wants to write. Consumes a prefix of
    /// `input` and says what it is; the caller calls again with the rest.
    ///
    /// Must not be called between `HeadComplete` and `emit_head`; if it is,
    /// the stream gives up on HTTP and answers `NotHttp(0)`, so the held
    /// head goes out unchanged rather than being lost.
    pub fn feed(&mut self, input: &[u8]) -> Step {
        if input.is_empty() {
            return Step::Pass(0);
        }
        match &mut self.state {
            State::Passthrough => Step::Pass(input.len()),
            State::Ready(_) => self.not_http(0),
            State::Body { body, then_tunnel } => match body.advance(input) {
                Progress::More => Step::Pass(input.len()),
                Progress::Done(n) => {
                    self.state = if *then_tunnel {
                        State::Passthrough
                    } else {
                        State::new_head()
                    };
                    Step::Pass(n)
                }
                Progress::Error => {
                    self.state = State::Passthrough;
                    Step::Pass(input.len())
                }
            },
            State::Head(collector) => match collector.feed(&mut self.buf, input) {
                Collected::More(n) => Step::Buffered(n),
                Collected::Complete(n, parsed) => {
                    self.heads += 1;
                    // Another request: the upgrade offered before it was declined.
                    self.upgrade_offered = false;
                    self.state = State::Ready(parsed);
                    Step::HeadComplete(n)
                }
                Collected::NotHttp(n) => self.not_http(n),
            },
        }
    }

    fn not_http(&mut self, n: usize) -> Step {
        self.state = State::Passthrough;
        self.upgrade_offered = false;
        Step::NotHttp(n)
    }

    /// Valid right after `Step::HeadComplete`: the parsed head. At any other
    /// time it is an empty head (empty method and target, no fields).
    pub fn head(&self) -> RequestHead<'_> {
        match &self.state {
            State::Ready(parsed) => parsed.view(&self.buf),
            _ => RequestHead::EMPTY,
        }
    }

    /// Right after `Step::HeadComplete`: appends the head to send to `out`:
    /// the request line exactly as received, then `injected` (complete field
    /// lines, each ending in CRLF; may be empty), then the original field
    /// lines except every `x-lunar-allow`, then the blank line. The stream
    /// then follows this request's body. Does nothing at any other time.
    pub fn emit_head(&mut self, injected: &[u8], out: &mut Vec<u8>) {
        let State::Ready(parsed) = &self.state else {
            return;
        };
        parsed.emit(&self.buf, injected, out);
        // A CONNECT's tunnel begins after its head; an upgrade only if its answer is 101.
        let tunnel = parsed.connect();
        self.upgrade_offered = parsed.upgrade() && !tunnel;
        self.state = match (parsed.framing(), Body::new(parsed.framing())) {
            (Framing::Invalid, _) => State::Passthrough,
            (_, Some(body)) => State::Body {
                body,
                then_tunnel: tunnel,
            },
            (_, None) if tunnel => State::Passthrough,
            (_, None) => State::new_head(),
        };
        self.buf.clear();
    }

    /// After `Step::NotHttp`, or when an upgrade's answer switched protocols: takes the
    /// bytes held so far, to be sent unchanged. Every later `feed` returns `Pass`.
    /// Called at any other time it gives up on HTTP the same way (the held bytes are
    /// still not lost).
    pub fn take_buffered(&mut self) -> Vec<u8> {
        self.state = State::Passthrough;
        self.upgrade_offered = false;
        std::mem::take(&mut self.buf)
    }

    /// Bytes held in an incomplete (or not yet emitted) head: reported to the
    /// application as written, not yet sent.
    pub fn buffered_len(&self) -> usize {
        self.buf.len()
    }

    /// Number of request heads completed so far on this stream.
    pub fn heads_completed(&self) -> u64 {
        self.heads
    }

    /// True while no byte of a new head is held and no body is in progress.
    pub fn at_message_boundary(&self) -> bool {
        matches!(self.state, State::Head(_)) && self.buf.is_empty()
    }

    /// True while the next bytes offered pass (`Step::Pass`): a body, or everything for
    /// good; false while a head is collected or waits to be emitted.
    pub fn passes_bytes(&self) -> bool {
        matches!(self.state, State::Body { .. } | State::Passthrough)
    }

    /// True while the last request's upgrade is unanswered or was declined: the
    /// connection layer turns the stream into a tunnel (`take_buffered`) when it sees the
    /// answer switch protocols (101), before the program can write the new protocol.
    pub fn upgrade_pending(&self) -> bool {
        self.upgrade_offered
    }

    /// True once everything passes through for good (not HTTP, a CONNECT
    /// tunnel or an upgrade the connection layer saw accepted, a framing error).
    pub fn is_passthrough(&self) -> bool {
        matches!(self.state, State::Passthrough)
    }
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
