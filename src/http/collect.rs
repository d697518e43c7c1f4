//! Collecting one message head into a buffer, for either direction.
//!
//! A head that arrives whole is parsed at once. One that arrives in pieces has its
//! start line judged byte by byte (so a stream that is not HTTP is recognised at the
//! first byte that proves it), then its end searched for incrementally, and is parsed
//! when complete; the head may not grow past `MAX_HEAD`.

use super::scan::EndScan;
use super::MAX_HEAD;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Every byte given can still be part of a start line.
    NeedMore,
    /// The start line ended; the value is the index just past its LF.
    Done(usize),
    /// These bytes can never be a start line.
    Invalid,
}

/// An incremental check of a start line (request line or status line), and the parse of
/// the head it begins.
pub(crate) trait StartLine: Default {
    /// A parsed head of this kind.
    type Head;

    fn is_done(&self) -> bool;
    /// Judges the next bytes. After `Done` or `Invalid` the bytes past that
    /// point are not looked at.
    fn advance(&mut self, input: &[u8]) -> Verdict;
    /// The head at the start of `input` when all of it is there and httparse takes it:
    /// its length and its parse. `None` also when it is too big for the parse's stack.
    fn parse_whole(input: &[u8]) -> Option<(usize, Self::Head)>;
    /// Parses `head`, which ends exactly at the end of the head; `None` when httparse
    /// refuses it.
    fn parse(head: &[u8]) -> Option<Self::Head>;
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Collected<H> {
    /// This many bytes were added to the buffer; the head goes on.
    More(usize),
    /// The head ended after adding this many bytes; its parse.
    Complete(usize, H),
    /// Not HTTP after adding this many bytes (0 when the start line is
    /// refused: those bytes are better passed than held).
    NotHttp(usize),
}

#[derive(Debug, Default, Clone)]
pub(crate) struct HeadCollector<L> {
    line: L,
    scan: EndScan,
}

impl<L: StartLine> HeadCollector<L> {
    /// Takes a prefix of `input` into `buf`, which holds the head so far.
    pub(crate) fn feed(&mut self, buf: &mut Vec<u8>, input: &[u8]) -> Collected<L::Head> {
        let room = MAX_HEAD.saturating_sub(buf.len());
        let window = &input[..input.len().min(room)];
        if buf.is_empty() {
            // A head that arrives whole (nearly every one) is parsed once: the byte-by-byte
            // check and the end search below are for heads in pieces, and reach the same
            // verdict (the every-split tests and the fuzz checks compare the two).
            if let Some((n, head)) = L::parse_whole(window) {
                buf.extend_from_slice(&window[..n]);
                return Collected::Complete(n, head);
            }
        }
        if !self.line.is_done() {
            match self.line.advance(window) {
                Verdict::Invalid => return Collected::NotHttp(0),
                Verdict::NeedMore => return hold(buf, window),
                Verdict::Done(n) => self.scan = EndScan::starting_at(buf.len() + n - 1),
            }
        }
        match self.scan.find(buf, window) {
            Some(end) => {
                let n = end - buf.len();
                buf.extend_from_slice(&window[..n]);
                match L::parse(buf) {
                    Some(head) => Collected::Complete(n, head),
                    None => Collected::NotHttp(n),
                }
            }
            None => hold(buf, window),
        }
    }
}

fn hold<H>(buf: &mut Vec<u8>, bytes: &[u8]) -> Collected<H> {
    buf.extend_from_slice(bytes);
    if buf.len() >= MAX_HEAD {
        // Any end would now make the head longer than MAX_HEAD.
        return Collected::NotHttp(bytes.len());
    }
    Collected::More(bytes.len())
}
