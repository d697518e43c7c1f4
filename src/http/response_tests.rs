use proptest::collection::vec;
use proptest::prelude::*;

use super::super::fuzz_checks::feed_or_take_whole_head;
use super::super::testutil::bytewise;
use super::super::MAX_HEAD;
use super::*;

#[derive(Debug, Clone, PartialEq)]
struct Seen {
    status: u16,
    informational: bool,
    lunar_error: Option<String>,
    retry: Option<(f64, String)>,
}

#[derive(Debug, Clone, PartialEq)]
struct Run {
    out: Vec<u8>,
    heads: Vec<Seen>,
    held: usize,
    responses: u64,
    passthrough: bool,
    can_end: bool,
}

/// Plays the connection layer: every request was sent before `input` is read.
fn drive(input: &[u8], cuts: &[usize], methods: &[&str]) -> Run {
    drive_with(input, cuts, methods, false)
}

/// `drive`, taking every head `whole_head` finds with `take_whole_head` (as the connection
/// layer does with an answer's first read) after checking that `feed` takes it the same.
fn drive_taking_whole_heads(input: &[u8], cuts: &[usize], methods: &[&str]) -> Run {
    drive_with(input, cuts, methods, true)
}

fn seen(h: &ResponseHead<'_>) -> Seen {
    Seen {
        status: h.status,
        informational: h.informational,
        lunar_error: h.lunar_error.map(str::to_owned),
        retry: h.retry.map(|r| (r.after_secs, r.sequence_id.to_owned())),
    }
}

fn drive_with(input: &[u8], cuts: &[usize], methods: &[&str], whole_heads: bool) -> Run {
    let mut stream = ResponseStream::new();
    for method in methods {
        stream.push_request(method);
    }
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(input.len())).collect();
    cuts.push(input.len());
    cuts.sort_unstable();
    let mut run = Run {
        out: Vec::new(),
        heads: Vec::new(),
        held: 0,
        responses: 0,
        passthrough: false,
        can_end: false,
    };
    let (mut start, mut consumed) = (0, 0);
    for end in cuts {
        let mut rest = &input[start..end];
        start = end;
        while !rest.is_empty() {
            let before = stream.buffered_len();
            let step = feed_or_take_whole_head(&mut stream, rest, whole_heads);
            let n = match step {
                Step::Pass(n) => {
                    run.out.extend_from_slice(&rest[..n]);
                    n
                }
                Step::Buffered(n) => {
                    assert_eq!(stream.buffered_len(), before + n);
                    n
                }
                Step::HeadComplete(n) => {
                    run.heads.push(seen(&stream.head()));
                    stream.emit_head(&mut run.out);
                    n
                }
                Step::NotHttp(n) => {
                    let held = stream.take_buffered();
                    assert_eq!(held.len(), before + n);
                    run.out.extend_from_slice(&held);
                    n
                }
            };
            assert!(n > 0 || stream.is_passthrough());
            consumed += n;
            rest = &rest[n..];
        }
    }
    assert_eq!(consumed, input.len());
    run.held = stream.buffered_len();
    run.responses = stream.responses_completed();
    run.passthrough = stream.is_passthrough();
    run.can_end = stream.can_end_here();
    run
}

/// Fed whole, after checking every single split and one byte at a time.
fn run_any_split(input: &[u8], methods: &[&str]) -> Run {
    let whole = drive(input, &[], methods);
    assert_eq!(drive_taking_whole_heads(input, &[], methods), whole);
    for cut in 0..=input.len() {
        assert_eq!(drive(input, &[cut], methods), whole, "cut at {cut}");
        assert_eq!(
            drive_taking_whole_heads(input, &[cut], methods),
            whole,
            "cut at {cut}"
        );
    }
    assert_eq!(drive(input, &bytewise(input), methods), whole, "bytewise");
    whole
}

#[test]
fn content_length_and_pipelined_responses() {
    let input = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello\
                  HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
    let run = run_any_split(input, &["GET", "GET"]);
    assert_eq!(run.out, input.to_vec());
    assert_eq!(run.responses, 2);
    assert!(run.can_end);
    assert_eq!(run.heads[1].status, 404);
}

#[test]
fn chunked_response() {
    let input = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                  3;x\r\nabc\r\n0\r\nT: 1\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
    let run = run_any_split(input, &["GET", "DELETE"]);
    assert_eq!(run.responses, 2);
    assert_eq!(run.out, input.to_vec());
}

#[test]
fn close_delimited_body() {
    let input = b"HTTP/1.0 200 OK\r\n\r\neverything until the close";
    let mut stream = ResponseStream::new();
    stream.push_request("GET");
    assert_eq!(stream.feed(input), Step::HeadComplete(19));
    stream.emit_head(&mut Vec::new());
    assert!(stream.can_end_here());
    assert_eq!(stream.feed(&input[19..]), Step::Pass(input.len() - 19));
    assert!(stream.can_end_here() && !stream.is_passthrough());
    assert_eq!(stream.responses_completed(), 0);
}

#[test]
fn truncated_responses_cannot_end() {
    let mut stream = ResponseStream::new();
    stream.push_request("GET");
    assert!(!stream.can_end_here());
    assert_eq!(stream.feed(b"HTTP/1.1 200"), Step::Buffered(12));
    assert!(!stream.can_end_here());
    let head = b" OK\r\nContent-Length: 4\r\n\r\n";
    assert_eq!(stream.feed(head), Step::HeadComplete(head.len()));
    stream.emit_head(&mut Vec::new());
    assert_eq!(stream.feed(b"abc"), Step::Pass(3));
    assert!(!stream.can_end_here());
    assert_eq!(stream.feed(b"d"), Step::Pass(1));
    assert!(stream.can_end_here());
    assert_eq!(stream.pending_requests(), 0);
}

#[test]
fn head_204_and_304_have_no_body() {
    let input = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n\
                  HTTP/1.1 304 Not Modified\r\nContent-Length: 20\r\n\r\n\
                  HTTP/1.1 204 No Content\r\n\r\n\
                  HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    let run = run_any_split(input, &["HEAD", "GET", "PUT", "HEAD"]);
    assert_eq!(run.responses, 4);
    assert_eq!(run.out, input.to_vec());
    assert!(run.can_end);
}

#[test]
fn informational_responses_precede_the_final_one() {
    let input = b"HTTP/1.1 100 Continue\r\n\r\n\
                  HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n\
                  HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
    let mut stream = ResponseStream::new();
    stream.push_request("POST");
    assert_eq!(stream.feed(input), Step::HeadComplete(25));
    assert!(stream.head().informational);
    stream.emit_head(&mut Vec::new());
    assert_eq!(stream.pending_requests(), 1);
    assert!(!stream.can_end_here());
    let run = run_any_split(input, &["POST"]);
    let statuses: Vec<_> = run
        .heads
        .iter()
        .map(|h| (h.status, h.informational))
        .collect();
    assert_eq!(statuses, [(100, true), (103, true), (201, false)]);
    assert_eq!(run.responses, 1);
}

#[test]
fn switching_protocols_and_connect_tunnel() {
    let input = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x02hi";
    let run = run_any_split(input, &["GET"]);
    assert!(run.passthrough);
    assert_eq!(run.out, input.to_vec());
    let input = b"HTTP/1.1 200 Connection Established\r\n\r\n\x16\x03\x01";
    assert!(run_any_split(input, &["CONNECT"]).passthrough);
    let input = b"HTTP/1.1 407 Proxy Auth\r\nContent-Length: 0\r\n\r\n";
    assert!(!run_any_split(input, &["CONNECT"]).passthrough);
}

#[test]
fn lunar_error_is_reported_and_the_response_can_be_skipped() {
    let error =
        b"HTTP/1.1 503 Service Unavailable\r\nx-lunar-error: 2\r\nContent-Length: 7\r\n\r\nno luck";
    let good = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let input = [&error[..], good].concat();
    let mut stream = ResponseStream::new();
    stream.push_request("GET");
    stream.push_request("GET");
    assert_eq!(stream.feed(&input), Step::HeadComplete(error.len() - 7));
    assert_eq!(stream.head().lunar_error, Some("2"));
    stream.skip_head();
    assert_eq!(stream.feed(&input[error.len() - 7..]), Step::Pass(7));
    assert_eq!(stream.responses_completed(), 1);
    assert_eq!(
        stream.feed(&input[error.len()..]),
        Step::HeadComplete(good.len() - 2)
    );
    assert_eq!(stream.head().lunar_error, None);
}

#[test]
fn retry_is_reported_and_sequence_id_stripped() {
    let input = b"HTTP/1.1 429 Too Many Requests\r\nx-lunar-retry-after: 0.25\r\n\
                  X-Lunar-Sequence-Id: s-1\r\nContent-Length: 0\r\n\r\n";
    let run = run_any_split(input, &["GET"]);
    assert_eq!(run.heads[0].retry, Some((0.25, "s-1".to_owned())));
    assert_eq!(
        run.out,
        b"HTTP/1.1 429 Too Many Requests\r\nx-lunar-retry-after: 0.25\r\n\
          Content-Length: 0\r\n\r\n"
            .to_vec()
    );
}

#[test]
fn not_http_from_the_proxy() {
    for input in [
        &b"\x15\x03\x03\x00\x02\x02\x46"[..],
        b"HTTP/2 200\r\n\r\n",
        b"hello",
        b"HTTP/1.1 200 OK\r\nBad Field: x\r\n\r\n",
    ] {
        let run = run_any_split(input, &["GET"]);
        assert!(run.passthrough);
        assert_eq!(run.out, input.to_vec());
    }
    let mut huge = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
    huge.resize(MAX_HEAD + 1, b'a');
    let run = drive(&huge, &[100], &["GET"]);
    assert!(run.passthrough);
    assert_eq!(run.out, huge);
}

#[test]
fn unclear_length_passes_through() {
    let input = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab";
    let run = run_any_split(input, &["GET"]);
    assert!(run.passthrough);
    assert_eq!(run.out, input.to_vec());
}

#[test]
fn unsolicited_response_is_read_like_one_to_get() {
    let input = b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n";
    let run = run_any_split(input, &[]);
    assert_eq!(run.responses, 1);
    assert!(run.can_end);
}

#[test]
fn head_and_emit_at_the_wrong_time() {
    let mut stream = ResponseStream::default();
    assert_eq!(stream.head(), ResponseHead::EMPTY);
    let mut out = Vec::new();
    stream.emit_head(&mut out);
    stream.skip_head();
    assert!(out.is_empty());
    assert_eq!(
        stream.feed(b"HTTP/1.1 200 OK\r\n\r\n"),
        Step::HeadComplete(19)
    );
    assert_eq!(stream.feed(b"x"), Step::NotHttp(0));
    assert_eq!(stream.take_buffered(), b"HTTP/1.1 200 OK\r\n\r\n");
}

/// One response to generate, and the request method it answers.
#[derive(Debug, Clone)]
struct ResponseSpec {
    method: &'static str,
    informational: Vec<u16>,
    status: u16,
    minor_version: u8,
    crlf: bool,
    fields: Vec<(String, String)>,
    /// (index in `fields` to go before, name, value)
    sequence_ids: Vec<(usize, String, String)>,
    lunar_error: Option<String>,
    retry_after: Option<String>,
    body: Option<Vec<Vec<u8>>>,
    chunked: bool,
}

fn field_name() -> impl Strategy<Value = String> {
    "[A-Za-z][A-Za-z0-9-]{0,12}".prop_filter("not a field we act on", |n| {
        let n = n.to_ascii_lowercase();
        !n.starts_with("x-lunar") && n != "content-length" && n != "transfer-encoding"
    })
}

fn response(last: bool) -> impl Strategy<Value = ResponseSpec> {
    let method = prop_oneof![Just("GET"), Just("POST"), Just("HEAD")];
    let status = prop_oneof![
        Just(200u16),
        Just(201),
        Just(204),
        Just(304),
        Just(404),
        Just(429),
        Just(503)
    ];
    let sequence_name = prop_oneof![Just("x-lunar-sequence-id"), Just("X-Lunar-Sequence-ID")];
    // Only the last response of a stream may run to the close.
    let chunks = vec(vec(any::<u8>(), 1..60), 0..4);
    let body = if last {
        proptest::option::weighted(0.8, chunks).boxed()
    } else {
        chunks.prop_map(Some).boxed()
    };
    (
        (
            method,
            vec(prop_oneof![Just(100u16), Just(103)], 0..3),
            status,
        ),
        (0u8..=1, any::<bool>()),
        vec((field_name(), "[ -~]{0,20}"), 0..4),
        vec(
            (
                0usize..5,
                sequence_name.prop_map(str::to_owned),
                "[a-z0-9-]{0,8}",
            ),
            0..3,
        ),
        proptest::option::of("[0-9]{1,2}"),
        proptest::option::of(prop_oneof!["[0-9]{1,2}(\\.[0-9]{1,3})?", "soon"]),
        body,
        any::<bool>(),
    )
        .prop_map(
            move |(
                (method, informational, status),
                (minor_version, crlf),
                fields,
                sequence_ids,
                lunar_error,
                retry_after,
                body,
                chunked,
            )| ResponseSpec {
                method,
                informational,
                status,
                minor_version,
                crlf,
                fields,
                sequence_ids,
                lunar_error,
                retry_after,
                body,
                chunked: chunked && minor_version == 1,
            },
        )
}

impl ResponseSpec {
    /// (input, what the application must see, the heads it reports)
    fn render(&self) -> (Vec<u8>, Vec<u8>, Vec<Seen>) {
        let eol: &[u8] = if self.crlf { b"\r\n" } else { b"\n" };
        let (mut input, mut seen) = (Vec::new(), Vec::new());
        let mut heads = Vec::new();
        for &code in &self.informational {
            let head = [format!("HTTP/1.1 {code} Info").as_bytes(), eol, eol].concat();
            input.extend_from_slice(&head);
            seen.extend_from_slice(&head);
            heads.push(Seen {
                status: code,
                informational: true,
                lunar_error: None,
                retry: None,
            });
        }
        let mut lines: Vec<(String, String, bool)> = self
            .fields
            .iter()
            .map(|(n, v)| (n.clone(), v.clone(), false))
            .collect();
        if let Some(code) = &self.lunar_error {
            lines.push(("X-Lunar-Error".into(), code.clone(), false));
        }
        if let Some(after) = &self.retry_after {
            lines.push(("x-lunar-retry-after".into(), after.clone(), false));
        }
        for (at, name, value) in &self.sequence_ids {
            lines.insert((*at).min(lines.len()), (name.clone(), value.clone(), true));
        }
        let no_body = self.method == "HEAD" || self.status == 204 || self.status == 304;
        let body = self.body.clone().map(|chunks| {
            if self.chunked {
                lines.push(("Transfer-Encoding".into(), "chunked".into(), false));
                let mut out = Vec::new();
                for chunk in &chunks {
                    out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                    out.extend_from_slice(chunk);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
                out
            } else {
                let all = chunks.concat();
                lines.push(("Content-Length".into(), all.len().to_string(), false));
                all
            }
        });
        let status_line = format!("HTTP/1.{} {} Reason", self.minor_version, self.status);
        for part in [status_line.as_bytes(), eol] {
            input.extend_from_slice(part);
            seen.extend_from_slice(part);
        }
        for (name, value, hidden) in &lines {
            let line = [format!("{name}: {value}").as_bytes(), eol].concat();
            input.extend_from_slice(&line);
            if !hidden {
                seen.extend_from_slice(&line);
            }
        }
        input.extend_from_slice(eol);
        seen.extend_from_slice(eol);
        // Without framing headers the body runs to the close: only the last
        // response of a stream is generated that way.
        let body = if no_body {
            Vec::new()
        } else {
            body.unwrap_or_default()
        };
        input.extend_from_slice(&body);
        seen.extend_from_slice(&body);
        let first_id = lines.iter().find(|l| l.2).map(|l| l.1.clone());
        let retry = match (&self.retry_after, first_id) {
            (Some(after), Some(id)) if !id.is_empty() => after.parse().ok().map(|d| (d, id)),
            _ => None,
        };
        heads.push(Seen {
            status: self.status,
            informational: false,
            lunar_error: self.lunar_error.clone(),
            retry,
        });
        (input, seen, heads)
    }
}

fn responses() -> impl Strategy<Value = (Vec<ResponseSpec>, Vec<u8>)> {
    (
        vec(response(false), 0..3),
        response(true),
        vec(any::<u8>(), 0..50),
    )
        .prop_map(|(mut list, last, tail)| {
            list.push(last);
            (list, tail)
        })
}

struct Expected {
    input: Vec<u8>,
    seen: Vec<u8>,
    heads: Vec<Seen>,
    methods: Vec<&'static str>,
    close_delimited: bool,
}

fn expected(list: &[ResponseSpec], tail: &[u8]) -> Expected {
    let mut e = Expected {
        input: Vec::new(),
        seen: Vec::new(),
        heads: Vec::new(),
        methods: Vec::new(),
        close_delimited: false,
    };
    for r in list {
        let (input, seen, heads) = r.render();
        e.input.extend_from_slice(&input);
        e.seen.extend_from_slice(&seen);
        e.heads.extend(heads);
        e.methods.push(r.method);
    }
    let last = list.last().unwrap();
    e.close_delimited =
        last.body.is_none() && !(last.method == "HEAD" || last.status == 204 || last.status == 304);
    if e.close_delimited {
        e.input.extend_from_slice(tail);
        e.seen.extend_from_slice(tail);
    }
    e
}

fn check(e: &Expected, run: &Run) -> Result<(), TestCaseError> {
    prop_assert_eq!(&run.out, &e.seen);
    prop_assert_eq!(&run.heads, &e.heads);
    prop_assert_eq!(run.held, 0);
    prop_assert!(run.can_end);
    prop_assert!(!run.passthrough);
    let finals = e.methods.len() as u64 - u64::from(e.close_delimited);
    prop_assert_eq!(run.responses, finals);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn responses_over_random_splits(
        (list, tail) in responses(),
        cuts in vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let e = expected(&list, &tail);
        let cuts: Vec<usize> = cuts.iter().map(|c| c.index(e.input.len() + 1)).collect();
        check(&e, &drive(&e.input, &cuts, &e.methods))?;
        check(&e, &drive(&e.input, &bytewise(&e.input), &e.methods))?;
        check(&e, &drive_taking_whole_heads(&e.input, &cuts, &e.methods))?;
    }

    #[test]
    fn arbitrary_bytes_are_accounted_for_and_split_independent(
        input in vec(any::<u8>(), 0..600),
        head_request in any::<bool>(),
        cuts in vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let methods: &[&str] = if head_request { &["HEAD", "GET"] } else { &["GET"] };
        let cuts: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
        let whole = drive(&input, &[], methods);
        prop_assert_eq!(&drive(&input, &cuts, methods), &whole);
        prop_assert_eq!(&drive(&input, &bytewise(&input), methods), &whole);
        prop_assert_eq!(&drive_taking_whole_heads(&input, &cuts, methods), &whole);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn responses_over_every_single_split((list, tail) in responses()) {
        let e = expected(&list, &tail);
        for cut in 0..=e.input.len() {
            check(&e, &drive(&e.input, &[cut], &e.methods))?;
        }
    }
}

#[test]
fn a_stream_on_recycled_buffers_starts_afresh() {
    let mut old = ResponseStream::new();
    old.push_request("GET");
    old.push_request("HEAD");
    assert_eq!(
        old.feed(b"HTTP/1.1 200 OK\r\nContent-Le"),
        Step::Buffered(27)
    );
    let buffers = old.take_buffers();
    assert!(buffers.capacity() > 0);
    let mut stream = ResponseStream::with_buffers(buffers);
    assert_eq!(stream.pending_requests(), 0);
    assert!(stream.at_message_boundary());
    stream.push_request("GET");
    let head = b"HTTP/1.1 204 No Content\r\n\r\n";
    assert_eq!(stream.feed(head), Step::HeadComplete(head.len()));
    assert_eq!(stream.head().status, 204);
}
