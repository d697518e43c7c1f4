//! The response side: the bytes read from the proxy, one response after the
//! other. Each head is held until complete so the connection layer can read
//! Lunar's signals in it (error, retry) before deciding whether the
//! application sees this response at all; bodies pass through untouched.
//!
//! How long a body is depends on the request it answers (a response to HEAD
//! has none, a 2xx to CONNECT opens a tunnel), so the connection layer tells
//! the stream each request's method, in the order the requests were sent.

use std::collections::VecDeque;

use super::collect::{Collected, HeadCollector, StartLine};
use super::framing::{Body, Framing, Progress};
use super::response_head::{ParsedResponse, ResponseHead};
use super::statusline::StatusLine;
use super::{Step, MAX_HEAD};

/// What a request's method means for the framing of its response: all a response
/// tracker, or a copy kept for a replay, needs of it (a `Copy` value: no allocation per
/// request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    Head,
    Connect,
    Other,
}

impl Asked {
    pub fn of(method: &str) -> Asked {
        match method {
            "HEAD" => Asked::Head,
            "CONNECT" => Asked::Connect,
            _ => Asked::Other,
        }
    }
}

#[derive(Debug, Clone)]
enum State {
    Head(HeadCollector<StatusLine>),
    Ready(ParsedResponse),
    Body(Body),
    /// A body that ends when the connection does.
    UntilClose,
    /// Everything passes, for good: not HTTP, a tunnel, or framing we
    /// cannot follow.
    Passthrough,
}

impl State {
    fn new_head() -> Self {
        State::Head(HeadCollector::default())
    }
}

/// A head that arrived whole at a message boundary, parsed while the stream stayed as it
/// was (`ResponseStream::whole_head`): judged first, then taken (`take_whole_head`).
pub struct WholeHead {
    end: usize,
    parsed: ParsedResponse,
}

impl WholeHead {
    /// Where it ends in `input`: the bytes it takes.
    pub fn end(&self) -> usize {
        self.end
    }

    /// The head, over the `input` it was found at the start of.
    pub fn view<'a>(&self, input: &'a [u8]) -> ResponseHead<'a> {
        self.parsed.view(&input[..self.end])
    }
}

/// A response stream's allocations, kept from a closed connection for the next one.
#[derive(Debug, Default)]
pub struct StreamBuffers {
    buf: Vec<u8>,
    asked: VecDeque<Asked>,
}

impl StreamBuffers {
    /// Bytes they hold.
    pub fn capacity(&self) -> usize {
        self.buf.capacity() + self.asked.capacity() * std::mem::size_of::<Asked>()
    }
}

/// Follows the response stream of one connection. Sans-IO: it is told what
/// was read and says what the bytes are. Cloning is cheap at a message
/// boundary (empty buffer): the connection layer probes a peeked head on a
/// clone.
#[derive(Debug)]
pub struct ResponseStream {
    state: State,
    buf: Vec<u8>,
    asked: VecDeque<Asked>,
    heads: u64,
    responses: u64,
}

impl Clone for ResponseStream {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            buf: self.buf.clone(),
            asked: self.asked.clone(),
            heads: self.heads,
            responses: self.responses,
        }
    }

    /// Reuses `self`'s buffers: a connection probes every response head on a copy.
    fn clone_from(&mut self, source: &Self) {
        self.state.clone_from(&source.state);
        self.buf.clone_from(&source.buf);
        self.asked.clone_from(&source.asked);
        self.heads = source.heads;
        self.responses = source.responses;
    }
}

impl Default for ResponseStream {
    fn default() -> Self {
        Self::new()
    }
}

impl ResponseStream {
    pub fn new() -> Self {
        Self::with_buffers(StreamBuffers::default())
    }

    /// A new stream on a closed connection's buffers (emptied): their capacity spares
    /// this one its allocations.
    pub fn with_buffers(buffers: StreamBuffers) -> Self {
        let StreamBuffers { mut buf, mut asked } = buffers;
        buf.clear();
        asked.clear();
        Self {
            state: State::new_head(),
            buf,
            asked,
            heads: 0,
            responses: 0,
        }
    }

    /// The stream's buffers, for a later stream (`with_buffers`); this one is left empty.
    pub fn take_buffers(&mut self) -> StreamBuffers {
        StreamBuffers {
            buf: std::mem::take(&mut self.buf),
            asked: std::mem::take(&mut self.asked),
        }
    }

    /// Records that a request with this method was sent; responses are
    /// matched to requests first in, first out.
    pub fn push_request(&mut self, method: &str) {
        self.push_asked(Asked::of(method));
    }

    /// `push_request` for a method already classified.
    pub fn push_asked(&mut self, asked: Asked) {
        self.asked.push_back(asked);
    }

    /// Requests sent whose final response has not been completely read.
    pub fn pending_requests(&self) -> usize {
        self.asked.len()
    }

    /// Offer bytes read from the proxy. Consumes a prefix of `input` and says
    /// what it is; the caller calls again with the rest. `Pass` bytes belong
    /// to a body (or a tunnel, or a stream that is not HTTP).
    ///
    /// Must not be called between `HeadComplete` and `emit_head`/`skip_head`;
    /// if it is, the stream gives up on HTTP and answers `NotHttp(0)`.
    pub fn feed(&mut self, input: &[u8]) -> Step {
        if input.is_empty() {
            return Step::Pass(0);
        }
        match &mut self.state {
            State::Passthrough | State::UntilClose => Step::Pass(input.len()),
            State::Ready(_) => self.not_http(0),
            State::Body(body) => match body.advance(input) {
                Progress::More => Step::Pass(input.len()),
                Progress::Done(n) => {
                    self.finish_response();
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
                    self.state = State::Ready(parsed);
                    Step::HeadComplete(n)
                }
                Collected::NotHttp(n) => self.not_http(n),
            },
        }
    }

    /// At a message boundary, the head at the start of `input` when all of it is there and
    /// parses at once (nearly every answer's): what `feed(input)` would take as
    /// `HeadComplete`, found with the stream unchanged, so that the caller can judge it
    /// before the stream moves past it. `None` anywhere else, and for any other head:
    /// `feed` decides those.
    pub fn whole_head(&self, input: &[u8]) -> Option<WholeHead> {
        if !self.at_message_boundary() {
            return None;
        }
        // `feed`'s window at a boundary (its collector holds nothing yet).
        let window = &input[..input.len().min(MAX_HEAD)];
        let (end, parsed) = StatusLine::parse_whole(window)?;
        Some(WholeHead { end, parsed })
    }

    /// Takes `head`, which `whole_head(input)` found with the stream unchanged since: the
    /// stream is then as `feed(input)` leaves it after `HeadComplete(head.end())`.
    pub fn take_whole_head(&mut self, input: &[u8], head: WholeHead) {
        self.buf.extend_from_slice(&input[..head.end]);
        self.heads += 1;
        self.state = State::Ready(head.parsed);
    }

    fn not_http(&mut self, n: usize) -> Step {
        self.state = State::Passthrough;
        Step::NotHttp(n)
    }

    fn finish_response(&mut self) {
        self.responses += 1;
        self.state = State::new_head();
    }

    /// Valid right after `Step::HeadComplete`: the parsed head. At any other
    /// time it is an empty head (status 0).
    pub fn head(&self) -> ResponseHead<'_> {
        match &self.state {
            State::Ready(parsed) => parsed.view(&self.buf),
            _ => ResponseHead::EMPTY,
        }
    }

    /// Right after `Step::HeadComplete`: appends the head the application
    /// may see (without `x-lunar-sequence-id` lines) to `out`; the stream then
    /// follows this response's body. Does nothing at any other time.
    pub fn emit_head(&mut self, out: &mut Vec<u8>) {
        if let State::Ready(parsed) = &self.state {
            parsed.emit(&self.buf, out);
            self.after_head();
        }
    }

    /// Like `emit_head` for a response the application will not see: the
    /// stream follows its body all the same, so the caller can drop it.
    pub fn skip_head(&mut self) {
        if matches!(self.state, State::Ready(_)) {
            self.after_head();
        }
    }

    fn after_head(&mut self) {
        let State::Ready(parsed) = std::mem::replace(&mut self.state, State::Passthrough) else {
            return;
        };
        self.buf.clear();
        if parsed.informational() {
            // The final response to the same request is still to come.
            self.state = State::new_head();
            return;
        }
        let asked = self.asked.pop_front().unwrap_or(Asked::Other);
        let status = parsed.status;
        // RFC 9112 §6.3: the request and the status code come before the
        // framing headers.
        if status == 101 || (asked == Asked::Connect && (200..300).contains(&status)) {
            self.state = State::Passthrough;
            return;
        }
        let framing = if asked == Asked::Head || status == 204 || status == 304 {
            Framing::Empty
        } else {
            parsed.framing
        };
        match (framing, Body::new(framing)) {
            (_, Some(body)) => self.state = State::Body(body),
            (Framing::UntilClose, _) => self.state = State::UntilClose,
            (Framing::Invalid, _) => self.state = State::Passthrough,
            _ => self.finish_response(),
        }
    }

    /// After `Step::NotHttp`: takes the bytes held so far, to be passed on
    /// unchanged. Every later `feed` returns `Pass`. Called at any other time
    /// it gives up on HTTP the same way.
    pub fn take_buffered(&mut self) -> Vec<u8> {
        self.state = State::Passthrough;
        std::mem::take(&mut self.buf)
    }

    /// Bytes held in an incomplete (or not yet emitted) head.
    pub fn buffered_len(&self) -> usize {
        self.buf.len()
    }

    /// Response heads parsed so far, informational ones included.
    pub fn heads_completed(&self) -> u64 {
        self.heads
    }

    /// Final responses read to their end (bodies included).
    pub fn responses_completed(&self) -> u64 {
        self.responses
    }

    /// True while no byte of a new head is held and no body is in progress.
    pub fn at_message_boundary(&self) -> bool {
        matches!(self.state, State::Head(_)) && self.buf.is_empty()
    }

    /// True once everything passes through for good (not HTTP, a tunnel
    /// after 101 or a 2xx to CONNECT, framing that cannot be followed).
    pub fn is_passthrough(&self) -> bool {
        matches!(self.state, State::Passthrough)
    }

    /// True when the connection may end here without cutting a response
    /// short: no request waits for its response and no head is half read,
    /// or a body that ends at the close is being read. Also true in
    /// pass-through, where no boundary can be known.
    pub fn can_end_here(&self) -> bool {
        match self.state {
            State::Head(_) => self.buf.is_empty() && self.asked.is_empty(),
            State::UntilClose | State::Passthrough => true,
            State::Ready(_) | State::Body(_) => false,
        }
    }
}

#[cfg(test)]
#[path = "response_tests.rs"]
mod tests;
