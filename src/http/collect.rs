//! Collecting one message head into a buffer, for either direction.
//!
//! The start line is judged byte by byte (so a stream that is not HTTP is
//! recognised at the first byte that proves it), then the end of the head is
//! searched for incrementally; the head may not grow past `MAX_HEAD`.

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

/// An incremental check of a start line (request line or status line).
pub(crate) trait StartLine: Default {
    fn is_done(&self) -> bool;
    /// Judges the next bytes. After `Done` or `Invalid` the bytes past that
    /// point are not looked at.
    fn advance(&mut self, input: &[u8]) -> Verdict;
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Collected {
    /// This many bytes were added to the buffer; the head goes on.
    More(usize),
    /// The head ended after adding this many bytes.
    Complete(usize),
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
    pub(crate) fn feed(&mut self, buf: &mut Vec<u8>, input: &[u8]) -> Collected {
        let room = MAX_HEAD.saturating_sub(buf.len());
        let window = &input[..input.len().min(room)];
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
                Collected::Complete(n)
            }
            None => hold(buf, window),
        }
    }
}

fn hold(buf: &mut Vec<u8>, bytes: &[u8]) -> Collected {
    buf.extend_from_slice(bytes);
    if buf.len() >= MAX_HEAD {
        // Any end would now make the head longer than MAX_HEAD.
        return Collected::NotHttp(bytes.len());
    }
    Collected::More(bytes.len())
}
