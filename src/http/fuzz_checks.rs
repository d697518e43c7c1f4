//! The fuzz targets' checks, callable from stable Rust.
//!
//! `fuzz/fuzz_targets/*.rs` hand libFuzzer's bytes to these functions (under
//! `cargo +nightly fuzz`); `fuzz_driver` hands them random and mutated inputs in
//! `cargo test` (`make test`, bounded; `make fuzz`, longer). Each decodes its input,
//! drives an engine over it and panics when a property fails:
//!
//! - every byte is accounted for exactly once, and `feed` makes progress;
//! - what goes on the wire, and which heads are seen, does not depend on how the
//!   input was split (one piece, the cuts the input names, one byte at a time).
//!
//! Compiled only for tests and fuzzing (`cfg(fuzzing)`, which `fuzz/build.rs` sets).

use super::{RequestStream, ResponseStream, Step};

/// Injected into every request head (any complete field lines do).
const INJECT: &[u8] = b"x-lunar-host: example.com\r\n";

/// Inputs up to this length are also driven one byte at a time.
const BYTEWISE_MAX: usize = 4096;

/// At most this many cut points are read from an input.
pub const MAX_CUTS: usize = 15;

/// Reads `count % (MAX_CUTS + 1)` cut points (two bytes each, little-endian, taken modulo the
/// input's length + 1) from the front of `rest`; the bytes after them are the input.
/// Returns (input, sorted cuts).
fn split_cuts(count: u8, rest: &[u8]) -> (&[u8], Vec<usize>) {
    let count = (usize::from(count) % (MAX_CUTS + 1)).min(rest.len() / 2);
    let (cut_bytes, input) = rest.split_at(count * 2);
    let mut cuts: Vec<usize> = cut_bytes
        .chunks(2)
        .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])) % (input.len() + 1))
        .collect();
    cuts.sort_unstable();
    (input, cuts)
}

fn bytewise(input: &[u8]) -> Vec<usize> {
    (1..input.len()).collect()
}

// ---- requests -------------------------------------------------------------------------

/// What the connection layer sees of a request stream: the method, target, minor
/// version, Host, `x-lunar-allow` and upgrade of each head.
type RequestHeadSeen = (String, String, u8, Option<String>, Option<bool>, bool);

#[derive(Debug, PartialEq, Eq)]
struct RequestRun {
    out: Vec<u8>,
    heads: Vec<RequestHeadSeen>,
    held: usize,
    passthrough: bool,
}

fn drive_requests(input: &[u8], cuts: &[usize]) -> RequestRun {
    let mut stream = RequestStream::new();
    let mut run = RequestRun {
        out: Vec::new(),
        heads: Vec::new(),
        held: 0,
        passthrough: false,
    };
    let mut consumed = 0;
    let mut start = 0;
    for &end in cuts.iter().chain(std::iter::once(&input.len())) {
        let mut rest = &input[start..end];
        start = end;
        let mut idle = 0;
        while !rest.is_empty() {
            if stream.upgrade_pending() && stream.at_message_boundary() {
                // The connection layer's part: the upgrade's answer (a 101) arrives
                // before the client writes the new protocol.
                assert!(stream.take_buffered().is_empty());
            }
            let before = stream.buffered_len();
            let n = match stream.feed(rest) {
                Step::Pass(n) => {
                    run.out.extend_from_slice(&rest[..n]);
                    n
                }
                Step::Buffered(n) => {
                    assert_eq!(stream.buffered_len(), before + n);
                    n
                }
                Step::HeadComplete(n) => {
                    let h = stream.head();
                    run.heads.push((
                        h.method.to_owned(),
                        h.target.to_owned(),
                        h.minor_version,
                        h.host.map(str::to_owned),
                        h.lunar_allow,
                        h.upgrade,
                    ));
                    stream.emit_head(INJECT, &mut run.out);
                    n
                }
                Step::NotHttp(n) => {
                    let held = stream.take_buffered();
                    assert_eq!(held.len(), before + n);
                    run.out.extend_from_slice(&held);
                    n
                }
            };
            assert!(n <= rest.len());
            idle = if n == 0 { idle + 1 } else { 0 };
            assert!(idle < 2, "no progress");
            consumed += n;
            rest = &rest[n..];
        }
    }
    assert_eq!(consumed, input.len());
    run.held = stream.buffered_len();
    run.passthrough = stream.is_passthrough();
    run
}

/// Arbitrary bytes an application writes, cut at arbitrary points, through
/// `RequestStream`. Input: byte 0 says how many cut points follow (two bytes each);
/// the rest is the stream.
pub fn request_stream(data: &[u8]) {
    let Some((&count, rest)) = data.split_first() else {
        return;
    };
    let (input, cuts) = split_cuts(count, rest);

    let whole = drive_requests(input, &[]);
    assert_eq!(drive_requests(input, &cuts), whole);
    if input.len() <= BYTEWISE_MAX {
        assert_eq!(drive_requests(input, &bytewise(input)), whole);
    }
    if whole.heads.is_empty() {
        assert_eq!(whole.out, input[..input.len() - whole.held]);
    }
}

// ---- responses ------------------------------------------------------------------------

/// What the connection layer sees of a response head: status, informational, the
/// Lunar error and the retry request.
type ResponseHeadSeen = (u16, bool, Option<String>, Option<(f64, String)>);

#[derive(Debug, PartialEq)]
struct ResponseRun {
    out: Vec<u8>,
    heads: Vec<ResponseHeadSeen>,
    held: usize,
    responses: u64,
    can_end: bool,
}

/// `stream.feed(input)`; with `whole_heads`, a head `whole_head` finds is taken with
/// `take_whole_head` instead, as the connection layer takes an answer's first read, after
/// checking that `feed` on a copy takes the same head and leaves the stream the same.
pub(crate) fn feed_or_take_whole_head(
    stream: &mut ResponseStream,
    input: &[u8],
    whole_heads: bool,
) -> Step {
    let Some(head) = whole_heads.then(|| stream.whole_head(input)).flatten() else {
        return stream.feed(input);
    };
    let mut fed = stream.clone();
    assert_eq!(fed.feed(input), Step::HeadComplete(head.end()));
    assert_eq!(head.view(input), fed.head());
    let end = head.end();
    stream.take_whole_head(input, head);
    assert_eq!(stream.head(), fed.head());
    assert_eq!(stream.buffered_len(), fed.buffered_len());
    assert_eq!(stream.heads_completed(), fed.heads_completed());
    Step::HeadComplete(end)
}

/// `whole_heads`: see `feed_or_take_whole_head`.
fn drive_responses(
    input: &[u8],
    cuts: &[usize],
    methods: &[&str],
    whole_heads: bool,
) -> ResponseRun {
    let mut stream = ResponseStream::new();
    for method in methods {
        stream.push_request(method);
    }
    let mut out = Vec::new();
    let mut heads = Vec::new();
    let (mut start, mut consumed) = (0, 0);
    for &end in cuts.iter().chain(std::iter::once(&input.len())) {
        let mut rest = &input[start..end];
        start = end;
        while !rest.is_empty() {
            let before = stream.buffered_len();
            let step = feed_or_take_whole_head(&mut stream, rest, whole_heads);
            let n = match step {
                Step::Pass(n) => {
                    out.extend_from_slice(&rest[..n]);
                    n
                }
                Step::Buffered(n) => n,
                Step::HeadComplete(n) => {
                    let h = stream.head();
                    heads.push((
                        h.status,
                        h.informational,
                        h.lunar_error.map(str::to_owned),
                        h.retry.map(|r| (r.after_secs, r.sequence_id.to_owned())),
                    ));
                    // Hide responses that carry a Lunar error, as the connection
                    // layer does.
                    if h.lunar_error.is_some() {
                        stream.skip_head();
                    } else {
                        stream.emit_head(&mut out);
                    }
                    n
                }
                Step::NotHttp(n) => {
                    let held = stream.take_buffered();
                    assert_eq!(held.len(), before + n);
                    out.extend_from_slice(&held);
                    n
                }
            };
            assert!(n <= rest.len());
            assert!(n > 0 || stream.is_passthrough());
            consumed += n;
            rest = &rest[n..];
        }
    }
    assert_eq!(consumed, input.len());
    ResponseRun {
        out,
        heads,
        held: stream.buffered_len(),
        responses: stream.responses_completed(),
        can_end: stream.can_end_here(),
    }
}

/// The methods of the requests that byte 0 of a `response_stream` input names.
pub fn response_methods(kinds: u8) -> Vec<&'static str> {
    (0..(kinds & 3) + 1)
        .map(|i| match ((kinds >> 2) >> (2 * i)) & 3 {
            0 => "HEAD",
            1 => "CONNECT",
            _ => "GET",
        })
        .collect()
}

/// Arbitrary bytes from "the proxy", cut at arbitrary points, through
/// `ResponseStream`. Input: byte 0 holds the number of requests sent (low two bits,
/// plus one) and their methods (two bits each from bit 2: 0 HEAD, 1 CONNECT, else
/// GET); byte 1 how many cut points follow (two bytes each); the rest is what the
/// proxy sent.
pub fn response_stream(data: &[u8]) {
    let [kinds, count, rest @ ..] = data else {
        return;
    };
    let methods = response_methods(*kinds);
    let (input, cuts) = split_cuts(*count, rest);

    let whole = drive_responses(input, &[], &methods, false);
    assert_eq!(drive_responses(input, &cuts, &methods, false), whole);
    assert_eq!(drive_responses(input, &cuts, &methods, true), whole);
    if input.len() <= BYTEWISE_MAX {
        assert_eq!(
            drive_responses(input, &bytewise(input), &methods, false),
            whole
        );
    }
}
