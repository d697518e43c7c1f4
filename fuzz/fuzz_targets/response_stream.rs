//! Arbitrary bytes from "the proxy", cut at arbitrary points, through
//! `ResponseStream`: every byte accounted for once, no panic, and the same
//! bytes shown and heads reported however the input was split.
#![no_main]

use libfuzzer_sys::fuzz_target;

// Compiled in directly, not through the LD_PRELOAD crate (see request_stream).
#[allow(dead_code, unused_imports)]
#[path = "../../src/http/mod.rs"]
mod http;

use http::{ResponseStream, Step};

#[derive(Debug, PartialEq)]
struct Run {
    out: Vec<u8>,
    heads: Vec<(u16, bool, Option<String>, Option<(f64, String)>)>,
    held: usize,
    responses: u64,
    can_end: bool,
}

fn drive(input: &[u8], cuts: &[usize], methods: &[&str]) -> Run {
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
            let n = match stream.feed(rest) {
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
                    // Hide responses that carry a Lunar error, as the
                    // connection layer will.
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
    Run {
        out,
        heads,
        held: stream.buffered_len(),
        responses: stream.responses_completed(),
        can_end: stream.can_end_here(),
    }
}

fuzz_target!(|data: &[u8]| {
    // Byte 0: the methods of up to four requests; byte 1: how many cut
    // points follow (two bytes each); the rest is what the proxy sent.
    let [kinds, count, rest @ ..] = data else {
        return;
    };
    let methods: Vec<&str> = (0..(kinds & 3) + 1)
        .map(|i| match ((kinds >> 2) >> (2 * i)) & 3 {
            0 => "HEAD",
            1 => "CONNECT",
            _ => "GET",
        })
        .collect();
    let count = usize::from(count % 16).min(rest.len() / 2);
    let (cut_bytes, input) = rest.split_at(count * 2);
    let mut cuts: Vec<usize> = cut_bytes
        .chunks(2)
        .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])) % (input.len() + 1))
        .collect();
    cuts.sort_unstable();

    let whole = drive(input, &[], &methods);
    assert_eq!(drive(input, &cuts, &methods), whole);
    if input.len() <= 4096 {
        let bytewise: Vec<usize> = (1..input.len()).collect();
        assert_eq!(drive(input, &bytewise, &methods), whole);
    }
});
