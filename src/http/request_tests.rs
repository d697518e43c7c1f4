use proptest::prelude::*;

use super::super::testutil::{bytewise, drive, valid_stream, Driven, INJECT};
use super::super::MAX_HEAD;
use super::*;

const I: &[u8] = b"I: 1\r\n";

fn wire(input: &[u8]) -> Driven {
    drive(input, &[], I)
}

/// The wire bytes for `input` fed whole, after checking that every split
/// point and one byte at a time give the same.
fn wire_any_split(input: &[u8]) -> Driven {
    let whole = wire(input);
    for cut in 0..=input.len() {
        assert_eq!(drive(input, &[cut], I), whole, "cut at {cut}");
    }
    assert_eq!(drive(input, &bytewise(input), I), whole, "bytewise");
    whole
}

#[test]
fn get() {
    let mut s = RequestStream::new();
    assert!(s.at_message_boundary());
    let input = b"GET /x HTTP/1.1\r\nHost: example.com\r\n\r\n";
    assert_eq!(s.feed(input), Step::HeadComplete(input.len()));
    let head = s.head();
    assert_eq!(
        head,
        RequestHead {
            method: "GET",
            target: "/x",
            minor_version: 1,
            host: Some("example.com"),
            lunar_allow: None,
            upgrade: false,
        }
    );
    let mut out = Vec::new();
    s.emit_head(I, &mut out);
    assert_eq!(
        out,
        b"GET /x HTTP/1.1\r\nI: 1\r\nHost: example.com\r\n\r\n".to_vec()
    );
    assert!(s.at_message_boundary());
    assert_eq!(s.heads_completed(), 1);
    assert_eq!(s.buffered_len(), 0);
    assert_eq!(s.head(), RequestHead::EMPTY);
}

#[test]
fn post_with_content_length() {
    let input = b"POST /p HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n";
    let mut s = RequestStream::new();
    assert_eq!(s.feed(input), Step::HeadComplete(39));
    s.emit_head(b"", &mut Vec::new());
    assert!(!s.at_message_boundary());
    assert_eq!(s.feed(&input[39..]), Step::Pass(5));
    assert!(s.at_message_boundary());
    assert_eq!(s.feed(&input[44..]), Step::HeadComplete(input.len() - 44));
    let out = wire_any_split(input);
    assert_eq!(
        out.out,
        b"POST /p HTTP/1.1\r\nI: 1\r\nContent-Length: 5\r\n\r\nhello\
          GET / HTTP/1.1\r\nI: 1\r\n\r\n"
            .to_vec()
    );
    assert!(out.at_boundary);
}

#[test]
fn chunked_with_extensions_and_trailers() {
    let body = b"4;a=b\r\nWiki\r\n5 ; q=\"x;y\"\r\npedia\r\n0;last\r\nT: v\r\nU: w\r\n\r\n";
    let head = b"PUT /c HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
    let next = b"GET /n HTTP/1.1\r\n\r\n";
    let input = [&head[..], body, next].concat();
    let out = wire_any_split(&input);
    let expected = [
        &b"PUT /c HTTP/1.1\r\nI: 1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"[..],
        body,
        b"GET /n HTTP/1.1\r\nI: 1\r\n\r\n",
    ]
    .concat();
    assert_eq!(out.out, expected);
    assert_eq!(out.heads.len(), 2);
    assert!(out.at_boundary);
}

#[test]
fn three_pipelined_requests_in_one_feed() {
    let input = b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n\
                  POST /2 HTTP/1.1\r\nHost: b\r\nContent-Length: 3\r\n\r\nabc\
                  GET /3 HTTP/1.1\r\nHost: c\r\n\r\n";
    let mut s = RequestStream::new();
    let mut rest = &input[..];
    let mut steps = Vec::new();
    while !rest.is_empty() {
        let step = s.feed(rest);
        let n = match step {
            Step::HeadComplete(n) => {
                s.emit_head(I, &mut Vec::new());
                n
            }
            Step::Pass(n) => n,
            other => panic!("{other:?}"),
        };
        steps.push(step);
        rest = &rest[n..];
    }
    assert_eq!(
        steps,
        [
            Step::HeadComplete(28),
            Step::HeadComplete(48),
            Step::Pass(3),
            Step::HeadComplete(28)
        ]
    );
    let out = wire_any_split(input);
    let hosts: Vec<_> = out.heads.iter().map(|h| h.host.clone().unwrap()).collect();
    assert_eq!(hosts, ["a", "b", "c"]);
    assert_eq!(out.out.len(), input.len() + 3 * I.len());
}

#[test]
fn expect_100_continue_body_follows_later() {
    let head = b"POST /u HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n";
    let mut s = RequestStream::new();
    assert_eq!(s.feed(head), Step::HeadComplete(head.len()));
    s.emit_head(I, &mut Vec::new());
    assert!(!s.at_message_boundary());
    // The application waits for "100 Continue" before it writes the body.
    assert_eq!(s.feed(b"da"), Step::Pass(2));
    assert_eq!(s.feed(b"taGET"), Step::Pass(2));
    assert!(s.at_message_boundary());
    assert_eq!(s.feed(b"GET"), Step::Buffered(3));
}

#[test]
fn upgrade_passes_everything_after_the_head() {
    let input =
        b"GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x05hello\
                  GET / HTTP/1.1\r\n\r\n";
    let out = wire_any_split(input);
    assert_eq!(out.heads.len(), 1);
    assert!(out.heads[0].upgrade);
    assert!(out.passthrough);
    assert_eq!(out.out.len(), input.len() + I.len());
}

#[test]
fn an_upgrade_with_a_body_waits_for_its_answer_after_the_body() {
    let head = b"POST /h2c HTTP/1.1\r\nUpgrade: h2c\r\nContent-Length: 2\r\n\r\n";
    let mut s = RequestStream::new();
    assert_eq!(s.feed(head), Step::HeadComplete(head.len()));
    s.emit_head(b"", &mut Vec::new());
    assert!(s.upgrade_pending());
    assert_eq!(s.feed(b"ab"), Step::Pass(2));
    assert!(s.upgrade_pending() && !s.is_passthrough());
    // The answer was 101: the connection layer turns the stream into a tunnel.
    assert!(s.take_buffered().is_empty());
    assert!(s.is_passthrough() && !s.upgrade_pending());
    assert_eq!(s.feed(b"PRI * HTTP/2.0\r\n"), Step::Pass(16));
}

#[test]
fn requests_after_a_declined_upgrade_are_followed() {
    // Java's HttpClient offers h2c on a connection's first request; a server that does
    // not speak it answers 200, and the client goes on in HTTP/1.1 on the connection.
    let first = b"GET /a HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\n\
                  Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n";
    let second = b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n";
    let mut s = RequestStream::new();
    let mut out = Vec::new();
    assert_eq!(s.feed(first), Step::HeadComplete(first.len()));
    s.emit_head(I, &mut out);
    assert!(s.upgrade_pending() && s.at_message_boundary());
    assert_eq!(s.feed(second), Step::HeadComplete(second.len()));
    assert!(
        !s.upgrade_pending(),
        "a new request: the upgrade was declined"
    );
    assert_eq!(s.head().target, "/b");
    s.emit_head(I, &mut out);
    assert!(out.ends_with(b"GET /b HTTP/1.1\r\nI: 1\r\nHost: h\r\n\r\n"));
    assert!(!s.is_passthrough());
}

#[test]
fn an_accepted_upgrade_turns_what_follows_into_a_tunnel_at_any_split() {
    // The client writes the new protocol only after the 101: the driver (as the
    // connection layer) turns the stream into a tunnel at the upgrade's boundary.
    let input = b"GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\
                  GET / HTTP/1.1\r\n\r\n";
    let out = wire_any_split(input);
    assert_eq!(out.heads.len(), 1);
    assert!(out.passthrough);
    assert_eq!(out.out.len(), input.len() + I.len());
}

#[test]
fn connect_tunnels() {
    let input =
        b"CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\n\r\n\x16\x03\x01";
    let out = wire_any_split(input);
    assert_eq!(out.heads[0].method, "CONNECT");
    assert!(out.heads[0].upgrade);
    assert!(out.passthrough);
    assert!(out.out.ends_with(b"\r\n\r\n\x16\x03\x01"));
}

#[test]
fn lunar_allow_is_read_and_removed_in_any_case() {
    for (line, expected) in [
        ("x-lunar-allow: true", Some(true)),
        ("X-Lunar-Allow: FALSE", Some(false)),
        ("X-LUNAR-ALLOW: maybe", None),
    ] {
        let input = format!("GET / HTTP/1.1\r\nHost: h\r\n{line}\r\nAccept: */*\r\n\r\n");
        let out = wire_any_split(input.as_bytes());
        assert_eq!(out.heads[0].lunar_allow, expected);
        assert_eq!(
            out.out,
            b"GET / HTTP/1.1\r\nI: 1\r\nHost: h\r\nAccept: */*\r\n\r\n".to_vec()
        );
    }
}

#[test]
fn http_1_0_without_host() {
    let out = wire_any_split(b"GET /old HTTP/1.0\r\n\r\n");
    assert_eq!(out.heads[0].minor_version, 0);
    assert_eq!(out.heads[0].host, None);
    assert_eq!(out.out, b"GET /old HTTP/1.0\r\nI: 1\r\n\r\n".to_vec());
}

#[test]
fn bare_line_feeds() {
    let input =
        b"POST / HTTP/1.1\nHost: h\nx-lunar-allow: true\nContent-Length: 1\n\nzGET / HTTP/1.1\n\n";
    let out = wire_any_split(input);
    assert_eq!(
        out.out,
        b"POST / HTTP/1.1\nI: 1\r\nHost: h\nContent-Length: 1\n\nzGET / HTTP/1.1\nI: 1\r\n\n"
            .to_vec()
    );
    assert_eq!(out.heads[0].lunar_allow, Some(true));
}

#[test]
fn two_mebibyte_bodies() {
    let body: Vec<u8> = (0..2 << 20).map(|i| (i % 251) as u8).collect();
    let head = format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len());
    let input = [head.as_bytes(), &body, b"GET / HTTP/1.1\r\n\r\n"].concat();
    let cuts: Vec<usize> = (0..input.len()).step_by(4093).collect();
    let out = drive(&input, &cuts, I);
    assert_eq!(out.out.len(), input.len() + 2 * I.len());
    assert_eq!(out.heads.len(), 2);

    let mut chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for piece in body.chunks(65_536) {
        chunked.extend_from_slice(format!("{:X}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\nGET / HTTP/1.1\r\n\r\n");
    let out = drive(&chunked, &cuts, I);
    assert_eq!(out.out.len(), chunked.len() + 2 * I.len());
    assert!(out.at_boundary);
}

#[test]
fn oversize_head_is_not_http() {
    let mut input = b"GET / HTTP/1.1\r\nX: ".to_vec();
    input.resize(MAX_HEAD + 100, b'a');
    let mut s = RequestStream::new();
    assert_eq!(s.feed(&input[..1000]), Step::Buffered(1000));
    assert_eq!(s.feed(&input[1000..]), Step::NotHttp(MAX_HEAD - 1000));
    assert_eq!(s.take_buffered(), &input[..MAX_HEAD]);
    assert_eq!(s.feed(&input[MAX_HEAD..]), Step::Pass(100));
    let out = drive(&input, &[7, 5000, MAX_HEAD - 1, MAX_HEAD], I);
    assert_eq!(out.out, input);
    assert!(out.passthrough);
}

#[test]
fn head_of_exactly_max_head_completes() {
    let mut input = b"GET / HTTP/1.1\r\nX: ".to_vec();
    input.resize(MAX_HEAD - 4, b'a');
    input.extend_from_slice(b"\r\n\r\n");
    assert_eq!(input.len(), MAX_HEAD);
    let out = drive(&input, &bytewise(&input), b"");
    assert_eq!(out.heads.len(), 1);
    assert_eq!(out.out, input);
    input.insert(20, b'a');
    assert!(drive(&input, &[], b"").heads.is_empty());
}

#[test]
fn big_head_one_byte_at_a_time_is_linear() {
    let mut input = b"GET / HTTP/1.1\r\n".to_vec();
    while input.len() < MAX_HEAD - 100 {
        input.extend_from_slice(b"X-Some-Field: some value here\r\n");
    }
    input.extend_from_slice(b"\r\n");
    let mut s = RequestStream::new();
    let started = std::time::Instant::now();
    for (i, b) in input.iter().enumerate() {
        let step = s.feed(std::slice::from_ref(b));
        if i + 1 < input.len() {
            assert_eq!(step, Step::Buffered(1));
        } else {
            assert_eq!(step, Step::HeadComplete(1));
        }
    }
    // Rescanning from the start on every byte would take seconds here.
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}

#[test]
fn http2_preface_is_not_http() {
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut s = RequestStream::new();
    assert_eq!(s.feed(&preface[..11]), Step::Buffered(11));
    assert_eq!(s.feed(&preface[11..]), Step::NotHttp(0));
    assert_eq!(s.take_buffered(), b"PRI * HTTP/");
    assert_eq!(s.feed(&preface[11..]), Step::Pass(preface.len() - 11));
    let out = wire_any_split(preface);
    assert_eq!(out.out, preface.to_vec());
    assert!(out.heads.is_empty());
}

#[test]
fn tls_is_not_http_at_the_first_byte() {
    let mut s = RequestStream::new();
    assert_eq!(s.feed(b"\x16\x03\x01\x02\x00"), Step::NotHttp(0));
    assert!(s.is_passthrough());
    assert!(s.take_buffered().is_empty());
    assert_eq!(s.feed(b"\x16\x03\x01\x02\x00"), Step::Pass(5));
}

#[test]
fn garbage_is_not_http() {
    for input in [
        &b"\x00\x01\x02"[..],
        b"hello world\r\n\r\n",
        b"GET /\x01 HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1 \r\n\r\n",
        b"{\"json\": true}",
        b"SSH-2.0-OpenSSH_9.6\r\n",
    ] {
        let out = wire_any_split(input);
        assert_eq!(out.out, input.to_vec(), "{input:?}");
        assert!(out.passthrough);
    }
}

#[test]
fn head_that_httparse_refuses_is_not_http() {
    let input = b"GET / HTTP/1.1\r\nBad Field: x\r\n\r\nmore";
    let mut s = RequestStream::new();
    assert_eq!(s.feed(input), Step::NotHttp(input.len() - 4));
    assert_eq!(s.take_buffered(), &input[..input.len() - 4]);
    assert_eq!(s.heads_completed(), 0);
    assert_eq!(wire_any_split(input).out, input.to_vec());
}

#[test]
fn head_split_in_the_request_line() {
    let mut s = RequestStream::new();
    assert_eq!(s.feed(b"GE"), Step::Buffered(2));
    assert!(!s.at_message_boundary());
    assert_eq!(s.feed(b"T /pa"), Step::Buffered(5));
    assert_eq!(s.feed(b"th HTTP/1"), Step::Buffered(9));
    assert_eq!(s.buffered_len(), 16);
    assert_eq!(s.feed(b".1\r\nHost: h\r\n\r\nGET"), Step::HeadComplete(15));
    assert_eq!(s.head().target, "/path");
    let mut out = Vec::new();
    s.emit_head(I, &mut out);
    assert_eq!(
        out,
        b"GET /path HTTP/1.1\r\nI: 1\r\nHost: h\r\n\r\n".to_vec()
    );
}

#[test]
fn a_later_request_that_is_not_http() {
    let input = b"GET / HTTP/1.1\r\n\r\nGET / HTTP/9.9\r\n\r\nGET / HTTP/1.1\r\n\r\n";
    let out = wire_any_split(input);
    assert_eq!(out.heads.len(), 1);
    assert!(out.passthrough);
    assert_eq!(
        out.out,
        [b"GET / HTTP/1.1\r\nI: 1\r\n\r\n", &input[18..]].concat()
    );
}

#[test]
fn unclear_framing_passes_through_after_the_head() {
    for fields in [
        "Content-Length: 5\r\nContent-Length: 6",
        "Content-Length: five",
        "Transfer-Encoding: gzip",
        "Transfer-Encoding: chunked, gzip",
    ] {
        let input = format!("POST / HTTP/1.1\r\n{fields}\r\n\r\nGET / HTTP/1.1\r\n\r\n");
        let out = wire_any_split(input.as_bytes());
        assert_eq!(out.heads.len(), 1, "{fields}");
        assert!(out.passthrough);
        assert_eq!(out.out.len(), input.len() + I.len());
    }
    let input = b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert!(wire_any_split(input).passthrough);
}

#[test]
fn broken_chunked_body_passes_through() {
    let input = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\nGET / HTTP/1.1\r\n\r\n";
    let out = wire_any_split(input);
    assert_eq!(out.heads.len(), 1);
    assert!(out.passthrough);
    assert_eq!(out.out.len(), input.len() + I.len());
}

#[test]
fn stray_empty_lines_between_requests_are_kept() {
    let input = b"POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\nx\r\nGET / HTTP/1.1\r\n\r\n";
    let out = wire_any_split(input);
    assert_eq!(out.heads.len(), 2);
    assert_eq!(out.out.len(), input.len() + 2 * I.len());
}

#[test]
fn feeding_before_emit_head_gives_up_without_losing_bytes() {
    let mut s = RequestStream::new();
    let head = b"GET / HTTP/1.1\r\n\r\n";
    assert_eq!(s.feed(head), Step::HeadComplete(head.len()));
    assert_eq!(s.feed(b"more"), Step::NotHttp(0));
    assert_eq!(s.take_buffered(), head);
    assert_eq!(s.feed(b"more"), Step::Pass(4));
}

#[test]
fn emit_head_at_the_wrong_time_does_nothing() {
    let mut s = RequestStream::default();
    let mut out = Vec::new();
    s.emit_head(I, &mut out);
    assert_eq!(s.feed(b"GET"), Step::Buffered(3));
    s.emit_head(I, &mut out);
    assert!(out.is_empty());
    assert_eq!(s.buffered_len(), 3);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn valid_streams_over_random_splits(
        spec in valid_stream(),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let cuts: Vec<usize> = cuts.iter().map(|c| c.index(spec.input.len() + 1)).collect();
        let out = drive(&spec.input, &cuts, INJECT);
        prop_assert_eq!(&out.out, &spec.wire);
        prop_assert_eq!(&out.heads, &spec.heads);
        prop_assert_eq!(out.held, 0);
    }

    #[test]
    fn valid_streams_one_byte_at_a_time(spec in valid_stream()) {
        let out = drive(&spec.input, &bytewise(&spec.input), INJECT);
        prop_assert_eq!(&out.out, &spec.wire);
        prop_assert_eq!(&out.heads, &spec.heads);
    }

    #[test]
    fn arbitrary_bytes_are_accounted_for_and_split_independent(
        input in proptest::collection::vec(any::<u8>(), 0..600),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let cuts: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
        let whole = drive(&input, &[], INJECT);
        prop_assert_eq!(&drive(&input, &cuts, INJECT), &whole);
        prop_assert_eq!(&drive(&input, &bytewise(&input), INJECT), &whole);
        // With nothing injected and no head found, nothing may change.
        if whole.heads.is_empty() {
            let plain = drive(&input, &cuts, b"");
            prop_assert_eq!(&[plain.out, input[input.len() - plain.held..].to_vec()].concat(), &input);
        }
    }

    #[test]
    fn damaged_streams_are_split_independent(
        spec in valid_stream(),
        at in any::<prop::sample::Index>(),
        junk in proptest::collection::vec(any::<u8>(), 1..8),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let mut input = spec.input.clone();
        let at = at.index(input.len() + 1);
        input.splice(at..at, junk);
        let cuts: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
        let whole = drive(&input, &[], INJECT);
        prop_assert_eq!(&drive(&input, &cuts, INJECT), &whole);
        prop_assert_eq!(&drive(&input, &bytewise(&input), INJECT), &whole);
    }
}

proptest! {
    // Every split point costs a whole run per byte of input: fewer cases.
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn valid_streams_over_every_single_split(spec in valid_stream()) {
        for cut in 0..=spec.input.len() {
            let out = drive(&spec.input, &[cut], INJECT);
            prop_assert_eq!(&out.out, &spec.wire, "cut at {}", cut);
            prop_assert_eq!(&out.heads, &spec.heads, "cut at {}", cut);
        }
    }
}

#[test]
fn a_stream_on_a_recycled_buffer_starts_afresh() {
    let mut old = RequestStream::new();
    assert_eq!(old.feed(b"GET /a HTTP/1.1\r\nHost: x"), Step::Buffered(24));
    let mut stream = RequestStream::with_buffer(old.take_buffer());
    let head = b"GET /b HTTP/1.1\r\n\r\n";
    assert_eq!(stream.feed(head), Step::HeadComplete(head.len()));
    assert_eq!(stream.head().target, "/b");
}
