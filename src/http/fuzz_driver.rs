//! The fuzz targets' checks (`fuzz_checks`) on stable Rust, in `cargo test`.
//!
//! Each test feeds its check a bounded number of inputs from a seeded xorshift PRNG:
//! realistic streams (hand-written seeds, joined up to three at a time, so pipelines
//! too), most of them mutated (bytes flipped, set, inserted, deleted, duplicated,
//! HTTP tokens dropped in, other seeds spliced in, truncated), cut at random points,
//! and some plain random bytes. `LUNAR_FUZZ_ITERATIONS` sets the number of inputs per
//! check (`make fuzz` raises it), `LUNAR_FUZZ_SEED` the PRNG seed (fixed by default, so
//! `make test` runs the same inputs every time). A failing input is printed as a byte
//! string, ready for a regression test.

use std::time::Instant;

use super::fuzz_checks::{self, MAX_CUTS};

/// Inputs per check when `LUNAR_FUZZ_ITERATIONS` is not set: about two seconds for
/// the request check and one for the response check in a release build here.
const DEFAULT_ITERATIONS: u64 = 200_000;

const DEFAULT_SEED: u64 = 0x4c75_6e61_7246_757a; // "LunarFuz"

/// Valid request streams an application writes (and a few that are not HTTP).
const REQUEST_SEEDS: &[&[u8]] = &[
    b"GET / HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n",
    b"POST /submit HTTP/1.1\r\nHost: api.example.test\r\nContent-Type: application/json\r\n\
      Content-Length: 13\r\n\r\n{\"a\": [1, 2]}",
    b"PUT /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
      5;ext=\"a;b\"\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: t\r\n\r\n",
    b"GET /old HTTP/1.0\nHost: h:8080\nx-lunar-allow: true\n\n",
    b"HEAD /h HTTP/1.1\r\nHost: h\r\nX-Lunar-Allow: false\r\nConnection: keep-alive\r\n\r\n",
    b"POST /e HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nbody",
    b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03\x01\x00\x05hello",
    b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x05hello",
    b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET http://example.com/x?y=1 HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b"POST /d HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 3\r\n\
      X-Folded: a\r\n b\r\n\r\nabc",
    b"POST /g HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"DELETE /r/1 HTTP/1.1\r\nHost: [::1]:80\r\nContent-Length: 0\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    b"HELLO there\r\n",
];

/// Responses from the proxy, with the methods of the requests they answer.
const RESPONSE_SEEDS: &[(&[&str], &[u8])] = &[
    (
        &["GET"],
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    ),
    (
        &["GET"],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
          4\r\nWiki\r\n5;x=y\r\npedia\r\n0\r\nExpires: never\r\n\r\n",
    ),
    (&["GET"], b"HTTP/1.1 204 No Content\r\nDate: x\r\n\r\n"),
    (
        &["GET"],
        b"HTTP/1.1 304 Not Modified\r\nETag: \"a\"\r\n\r\n",
    ),
    (
        &["GET"],
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    ),
    (
        &["GET"],
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\nx-lunar-error: 2\r\n\
          content-length: 28\r\n\r\nendpoint cannot be reached\r\n",
    ),
    (
        &["GET"],
        b"HTTP/1.1 503 S\r\nx-lunar-retry-after: 1.5\r\nX-Lunar-Sequence-Id: abc-1\r\n\
          Content-Length: 0\r\n\r\n",
    ),
    (
        &["GET"],
        b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the connection closes",
    ),
    (
        &["GET"],
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\
          \x81\x02hi",
    ),
    (
        &["CONNECT"],
        b"HTTP/1.1 200 Connection established\r\n\r\n\x16\x03\x03\x00\x02ab",
    ),
    (
        &["HEAD"],
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
    ),
    (
        &["GET"],
        b"HTTP/1.1 404 Not Found\nContent-Length: 3\n\nno\n",
    ),
    (&["GET"], b"SSH-2.0-OpenSSH_9.2\r\n"),
    (&["GET"], b"\x15\x03\x03\x00\x02\x02\x28"),
];

/// Dropped into inputs by the mutator: the bytes the engines decide on.
const TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"\r\n\r\n",
    b"\n",
    b"HTTP/1.1 ",
    b"HTTP/1.0",
    b" 200 OK",
    b"Content-Length: ",
    b"Transfer-Encoding: chunked",
    b"chunked",
    b"0\r\n\r\n",
    b"ffffffffffffffff",
    b"18446744073709551616",
    b"-1",
    b"Host: ",
    b"x-lunar-allow: true",
    b"x-lunar-error: 1",
    b"x-lunar-retry-after: 0",
    b"x-lunar-sequence-id: z",
    b"Upgrade: h2c",
    b"Connection: close",
    b"Expect: 100-continue",
    b"CONNECT ",
    b"HEAD ",
    b";",
    b":",
    b" ",
    b"\t",
    b"\0",
];

/// xorshift64*: small, fast and good enough to pick mutations (the connection model's
/// fuzz driver, `conn::sim_fuzz`, draws from it too).
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform enough in 0..n (n > 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub(crate) fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

pub(crate) fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a number")),
        Err(_) => default,
    }
}

/// One to four random edits of `input`; `seeds` to splice from.
fn mutate(rng: &mut Rng, input: &mut Vec<u8>, seeds: &[&[u8]]) {
    for _ in 0..1 + rng.below(4) {
        let len = input.len();
        match rng.below(9) {
            0 if len > 0 => input[rng.below(len)] ^= 1 << rng.below(8),
            1 if len > 0 => input[rng.below(len)] = rng.next() as u8,
            2 => {
                let at = rng.below(len + 1);
                let token = TOKENS[rng.below(TOKENS.len())];
                input.splice(at..at, token.iter().copied());
            }
            3 if len > 0 => {
                let at = rng.below(len);
                let end = (at + 1 + rng.below(16)).min(len);
                input.drain(at..end);
            }
            4 if len > 0 => {
                let at = rng.below(len);
                let end = (at + 1 + rng.below(32)).min(len);
                let copy = input[at..end].to_vec();
                let to = rng.below(len + 1);
                input.splice(to..to, copy);
            }
            5 => {
                let at = rng.below(len + 1);
                let extra_len = 1 + rng.below(8);
                let extra = rng.bytes(extra_len);
                input.splice(at..at, extra);
            }
            6 => {
                let other = seeds[rng.below(seeds.len())];
                let from = rng.below(other.len() + 1);
                let at = rng.below(len + 1);
                input.splice(at..at, other[from..].iter().copied());
            }
            7 if len > 0 => input.truncate(rng.below(len)),
            _ => {
                // A length or chunk size made of digits.
                let at = rng.below(len + 1);
                let digits = (rng.next() >> rng.below(64)).to_string();
                input.splice(at..at, digits.into_bytes());
            }
        }
    }
}

/// The cut-count byte and up to MAX_CUTS cut points in `input`, as the checks read them.
fn cuts_prefix(rng: &mut Rng, input_len: usize) -> Vec<u8> {
    let count = rng.below(MAX_CUTS + 1);
    let mut prefix = vec![count as u8];
    for _ in 0..count {
        let cut = rng.below(input_len.min(usize::from(u16::MAX) - 1) + 1) as u16;
        prefix.extend_from_slice(&cut.to_le_bytes());
    }
    prefix
}

/// A realistic input: one to three seeds joined, mutated most of the time.
fn realistic(rng: &mut Rng, seeds: &[&[u8]], picked: &mut Vec<usize>) -> Vec<u8> {
    picked.clear();
    let mut input = Vec::new();
    for _ in 0..1 + rng.below(3) {
        let i = rng.below(seeds.len());
        picked.push(i);
        input.extend_from_slice(seeds[i]);
    }
    if rng.chance(75) {
        mutate(rng, &mut input, seeds);
    }
    input
}

/// The methods byte of `fuzz_checks::response_stream` for the first three methods (the
/// byte has two bits for each of three; a fourth request is always a HEAD).
fn methods_byte<'a>(methods: impl Iterator<Item = &'a str>) -> u8 {
    let mut kinds = 0u8;
    let mut count = 0u8;
    for (i, method) in methods.take(3).enumerate() {
        let code = match method {
            "HEAD" => 0,
            "CONNECT" => 1,
            _ => 2,
        };
        kinds |= code << (2 + 2 * i);
        count += 1;
    }
    kinds | count.saturating_sub(1)
}

/// Runs `check` over the inputs `make_input` builds; a failing input is printed.
fn run(name: &str, check: fn(&[u8]), mut make_input: impl FnMut(&mut Rng) -> Vec<u8>) {
    let iterations = env_u64("LUNAR_FUZZ_ITERATIONS", DEFAULT_ITERATIONS);
    let seed = env_u64("LUNAR_FUZZ_SEED", DEFAULT_SEED);
    let mut rng = Rng::new(seed);
    let started = Instant::now();
    for i in 0..iterations {
        let data = make_input(&mut rng);
        if let Err(panic) = std::panic::catch_unwind(|| check(&data)) {
            eprintln!(
                "{name}: input {i} (LUNAR_FUZZ_SEED={seed}) failed: b\"{}\"",
                data.escape_ascii()
            );
            std::panic::resume_unwind(panic);
        }
    }
    println!(
        "{name}: {iterations} inputs (LUNAR_FUZZ_SEED={seed}) in {:.2?}",
        started.elapsed()
    );
}

#[test]
fn request_stream_check_over_random_and_mutated_streams() {
    let mut picked = Vec::new();
    run("request_stream", fuzz_checks::request_stream, |rng| {
        if rng.chance(10) {
            let len = rng.below(512);
            return rng.bytes(len);
        }
        let input = realistic(rng, REQUEST_SEEDS, &mut picked);
        let mut data = cuts_prefix(rng, input.len());
        data.extend_from_slice(&input);
        data
    });
}

#[test]
fn response_stream_check_over_random_and_mutated_streams() {
    let seeds: Vec<&[u8]> = RESPONSE_SEEDS.iter().map(|(_, bytes)| *bytes).collect();
    let mut picked = Vec::new();
    run("response_stream", fuzz_checks::response_stream, |rng| {
        if rng.chance(10) {
            let len = rng.below(512);
            return rng.bytes(len);
        }
        let input = realistic(rng, &seeds, &mut picked);
        // Mostly the requests the seeds answer; sometimes others.
        let kinds = if rng.chance(80) {
            methods_byte(
                picked
                    .iter()
                    .flat_map(|&i| RESPONSE_SEEDS[i].0.iter().copied()),
            )
        } else {
            rng.next() as u8
        };
        let mut data = vec![kinds];
        data.extend(cuts_prefix(rng, input.len()));
        data.extend_from_slice(&input);
        data
    });
}

#[test]
fn methods_byte_encodes_what_response_stream_decodes() {
    for methods in [
        &["GET"][..],
        &["HEAD"],
        &["CONNECT", "GET"],
        &["GET", "HEAD", "CONNECT"],
    ] {
        let kinds = methods_byte(methods.iter().copied());
        assert_eq!(
            fuzz_checks::response_methods(kinds),
            methods,
            "{kinds:#010b}"
        );
    }
    // More than three: the first three.
    let kinds = methods_byte(["CONNECT", "HEAD", "GET", "GET"].into_iter());
    assert_eq!(
        fuzz_checks::response_methods(kinds),
        ["CONNECT", "HEAD", "GET"]
    );
}
