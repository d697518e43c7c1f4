//! Arbitrary bytes, cut at arbitrary points, through `RequestStream`.
//!
//! Checks what the property tests check: every byte is accounted for exactly
//! once, nothing panics, and what goes on the wire (and which heads are seen)
//! does not depend on how the input was split.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The engine is compiled in directly rather than through the main crate: that
// crate is an LD_PRELOAD library whose exported `write`, `connect`, ... would
// interpose on the fuzzer's own libc calls.
#[allow(dead_code, unused_imports)]
#[path = "../../src/http/mod.rs"]
mod http;

use http::{RequestStream, Step};

const INJECT: &[u8] = b"x-lunar-host: example.com\r\n";

#[derive(Debug, PartialEq, Eq)]
struct Run {
    out: Vec<u8>,
    heads: Vec<(String, String, u8, Option<String>, Option<bool>, bool)>,
    held: usize,
    passthrough: bool,
}

fn drive(input: &[u8], cuts: &[usize]) -> Run {
    let mut stream = RequestStream::new();
    let mut run = Run {
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

fuzz_target!(|data: &[u8]| {
    // The first byte says how many cut points follow (two bytes each).
    let Some((&count, rest)) = data.split_first() else {
        return;
    };
    let count = usize::from(count % 16).min(rest.len() / 2);
    let (cut_bytes, input) = rest.split_at(count * 2);
    let mut cuts: Vec<usize> = cut_bytes
        .chunks(2)
        .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])) % (input.len() + 1))
        .collect();
    cuts.sort_unstable();

    let whole = drive(input, &[]);
    assert_eq!(drive(input, &cuts), whole);
    if input.len() <= 4096 {
        let bytewise: Vec<usize> = (1..input.len()).collect();
        assert_eq!(drive(input, &bytewise), whole);
    }
    if whole.heads.is_empty() {
        assert_eq!(whole.out, input[..input.len() - whole.held]);
    }
});
