//! A test driver that plays the connection layer, and generators of valid
//! request streams together with what must come out of them.

use proptest::collection::vec;
use proptest::prelude::*;

use super::{RequestStream, Step};

pub(crate) const INJECT: &[u8] = b"x-lunar-host: example.com\r\nx-lunar-scheme: http\r\n";

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeadInfo {
    pub method: String,
    pub target: String,
    pub minor_version: u8,
    pub host: Option<String>,
    pub lunar_allow: Option<bool>,
    pub upgrade: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Driven {
    /// What went on the wire.
    pub out: Vec<u8>,
    pub heads: Vec<HeadInfo>,
    /// Held in an incomplete head when the input ran out.
    pub held: usize,
    pub passthrough: bool,
    pub at_boundary: bool,
}

/// Feeds `input` cut at `cuts` (any order, any values; out of range ones are
/// clamped), looping over `feed` like the connection layer does. Checks on
/// the way that every byte is accounted for exactly once.
pub(crate) fn drive(input: &[u8], cuts: &[usize], inject: &[u8]) -> Driven {
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(input.len())).collect();
    cuts.push(input.len());
    cuts.sort_unstable();
    let mut stream = RequestStream::new();
    let mut out = Vec::new();
    let mut heads = Vec::new();
    let mut consumed = 0;
    let mut start = 0;
    for end in cuts {
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
                    out.extend_from_slice(&rest[..n]);
                    n
                }
                Step::Buffered(n) => {
                    assert_eq!(stream.buffered_len(), before + n);
                    assert!(!stream.at_message_boundary());
                    n
                }
                Step::HeadComplete(n) => {
                    assert_eq!(stream.heads_completed(), heads.len() as u64 + 1);
                    let h = stream.head();
                    heads.push(HeadInfo {
                        method: h.method.to_owned(),
                        target: h.target.to_owned(),
                        minor_version: h.minor_version,
                        host: h.host.map(str::to_owned),
                        lunar_allow: h.lunar_allow,
                        upgrade: h.upgrade,
                    });
                    stream.emit_head(inject, &mut out);
                    assert_eq!(stream.buffered_len(), 0);
                    n
                }
                Step::NotHttp(n) => {
                    assert!(stream.is_passthrough());
                    let held = stream.take_buffered();
                    assert_eq!(held.len(), before + n);
                    out.extend_from_slice(&held);
                    n
                }
            };
            assert!(n <= rest.len());
            idle = if n == 0 { idle + 1 } else { 0 };
            assert!(idle < 2, "feed made no progress twice");
            consumed += n;
            rest = &rest[n..];
        }
    }
    assert_eq!(consumed, input.len());
    Driven {
        out,
        heads,
        held: stream.buffered_len(),
        passthrough: stream.is_passthrough(),
        at_boundary: stream.at_message_boundary(),
    }
}

/// Every cut of `input` into pieces of one byte.
pub(crate) fn bytewise(input: &[u8]) -> Vec<usize> {
    (1..input.len()).collect()
}

#[derive(Debug, Clone)]
pub(crate) enum BodySpec {
    None,
    Length(Vec<u8>),
    Chunked {
        chunks: Vec<Vec<u8>>,
        extensions: bool,
        trailers: Vec<(String, String)>,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct RequestSpec {
    pub method: String,
    pub target: String,
    pub minor_version: u8,
    pub crlf: bool,
    /// Field lines other than `x-lunar-allow`, in order.
    pub fields: Vec<(String, String)>,
    /// `x-lunar-allow` lines: (index in `fields` to go before, name, value).
    pub allow: Vec<(usize, String, String)>,
    pub body: BodySpec,
}

fn allow_value(value: &str) -> Option<bool> {
    match value.trim() {
        v if v.eq_ignore_ascii_case("true") => Some(true),
        v if v.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

impl RequestSpec {
    fn field_lines(&self) -> Vec<(String, String, bool)> {
        let mut lines: Vec<(String, String, bool)> = self
            .fields
            .iter()
            .map(|(n, v)| (n.clone(), v.clone(), false))
            .collect();
        let mut allow = self.allow.clone();
        allow.sort_by_key(|a| std::cmp::Reverse(a.0));
        for (at, name, value) in allow {
            lines.insert(at.min(lines.len()), (name, value, true));
        }
        let body_field = match &self.body {
            BodySpec::None => None,
            BodySpec::Length(b) => Some(("Content-Length", b.len().to_string())),
            BodySpec::Chunked { .. } => Some(("Transfer-Encoding", "chunked".into())),
        };
        if let Some((n, v)) = body_field {
            lines.push((n.into(), v, false));
        }
        lines
    }

    /// The bytes the application writes, and what must go on the wire.
    pub(crate) fn render(&self, inject: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let eol: &[u8] = if self.crlf { b"\r\n" } else { b"\n" };
        let mut raw = format!(
            "{} {} HTTP/1.{}",
            self.method, self.target, self.minor_version
        )
        .into_bytes();
        raw.extend_from_slice(eol);
        let mut wire = raw.clone();
        wire.extend_from_slice(inject);
        for (name, value, is_allow) in self.field_lines() {
            let line = [format!("{name}: {value}").as_bytes(), eol].concat();
            raw.extend_from_slice(&line);
            if !is_allow {
                wire.extend_from_slice(&line);
            }
        }
        raw.extend_from_slice(eol);
        wire.extend_from_slice(eol);
        let body = self.body_bytes();
        raw.extend_from_slice(&body);
        wire.extend_from_slice(&body);
        (raw, wire)
    }

    fn body_bytes(&self) -> Vec<u8> {
        match &self.body {
            BodySpec::None => Vec::new(),
            BodySpec::Length(b) => b.clone(),
            BodySpec::Chunked {
                chunks,
                extensions,
                trailers,
            } => {
                let eol: &[u8] = if self.crlf { b"\r\n" } else { b"\n" };
                let mut out = Vec::new();
                for chunk in chunks.iter().filter(|c| !c.is_empty()) {
                    out.extend_from_slice(format!("{:x}", chunk.len()).as_bytes());
                    if *extensions {
                        out.extend_from_slice(b" ; name=\"a;b\\\"c\";flag");
                    }
                    out.extend_from_slice(eol);
                    out.extend_from_slice(chunk);
                    out.extend_from_slice(eol);
                }
                out.extend_from_slice(if *extensions { b"0;end" } else { b"0" });
                out.extend_from_slice(eol);
                for (name, value) in trailers {
                    out.extend_from_slice(format!("{name}: {value}").as_bytes());
                    out.extend_from_slice(eol);
                }
                out.extend_from_slice(eol);
                out
            }
        }
    }

    pub(crate) fn expected_head(&self) -> HeadInfo {
        let host = self
            .fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("host"))
            .map(|(_, v)| v.trim().to_owned());
        let first_allow = self
            .field_lines()
            .into_iter()
            .find(|line| line.2)
            .and_then(|line| allow_value(&line.1));
        HeadInfo {
            method: self.method.clone(),
            target: self.target.clone(),
            minor_version: self.minor_version,
            host,
            lunar_allow: first_allow,
            upgrade: self.method == "CONNECT"
                || self
                    .fields
                    .iter()
                    .any(|(n, _)| n.eq_ignore_ascii_case("upgrade")),
        }
    }
}

/// A whole stream: its input, the expected wire bytes and heads.
#[derive(Debug, Clone)]
pub(crate) struct StreamSpec {
    pub input: Vec<u8>,
    pub wire: Vec<u8>,
    pub heads: Vec<HeadInfo>,
}

pub(crate) fn stream_of(requests: &[RequestSpec], tunnel: &[u8], inject: &[u8]) -> StreamSpec {
    let mut spec = StreamSpec {
        input: Vec::new(),
        wire: Vec::new(),
        heads: Vec::new(),
    };
    for request in requests {
        let (raw, wire) = request.render(inject);
        spec.input.extend_from_slice(&raw);
        spec.wire.extend_from_slice(&wire);
        spec.heads.push(request.expected_head());
    }
    spec.input.extend_from_slice(tunnel);
    spec.wire.extend_from_slice(tunnel);
    spec
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("GET".to_owned()),
        Just("POST".to_owned()),
        Just("PUT".to_owned()),
        Just("HEAD".to_owned()),
        Just("OPTIONS".to_owned()),
        "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,10}".prop_filter("not CONNECT", |m| m != "CONNECT"),
    ]
}

fn field_name() -> impl Strategy<Value = String> {
    "[A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]{0,15}".prop_filter("not a field we act on", |n| {
        ![
            "host",
            "content-length",
            "transfer-encoding",
            "upgrade",
            "x-lunar-allow",
        ]
        .iter()
        .any(|s| n.eq_ignore_ascii_case(s))
    })
}

fn field_value() -> impl Strategy<Value = String> {
    "[ -~\t]{0,30}"
}

fn allow_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("x-lunar-allow".to_owned()),
        Just("X-Lunar-Allow".to_owned()),
        Just("X-LUNAR-ALLOW".to_owned()),
        Just("x-LuNaR-aLlOw".to_owned()),
    ]
}

fn allow_entry() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("true".to_owned()),
        Just("false".to_owned()),
        Just("TRUE".to_owned()),
        Just(" False ".to_owned()),
        Just("yes".to_owned()),
        Just(String::new()),
    ]
}

fn body(chunked_ok: bool) -> impl Strategy<Value = BodySpec> {
    let bytes = vec(any::<u8>(), 0..300);
    let chunked = (
        vec(vec(any::<u8>(), 0..70), 0..5),
        any::<bool>(),
        vec((field_name(), field_value()), 0..3),
    )
        .prop_map(|(chunks, extensions, trailers)| BodySpec::Chunked {
            chunks,
            extensions,
            trailers,
        });
    let weights = if chunked_ok { 2 } else { 0 };
    prop_oneof![
        2 => Just(BodySpec::None),
        2 => bytes.prop_map(BodySpec::Length),
        weights => chunked,
    ]
}

fn host() -> impl Strategy<Value = Option<String>> {
    proptest::option::of("[a-z0-9.-]{1,20}(:[0-9]{1,5})?")
}

/// A valid request that keeps the stream HTTP (no Upgrade, no CONNECT).
pub(crate) fn request() -> impl Strategy<Value = RequestSpec> {
    (
        0u8..=1,
        method(),
        "/[A-Za-z0-9/?=&%._~-]{0,40}",
        any::<bool>(),
    )
        .prop_flat_map(|(minor, method, target, crlf)| {
            (
                Just((minor, method, target, crlf)),
                host(),
                vec((field_name(), field_value()), 0..6),
                vec((0usize..8, allow_name(), allow_entry()), 0..3),
                any::<bool>(),
                body(minor == 1),
            )
        })
        .prop_map(
            |((minor, method, target, crlf), host, mut fields, allow, expect, body)| {
                if let Some(host) = host {
                    fields.insert(0, ("Host".to_owned(), host));
                }
                if expect && !matches!(body, BodySpec::None) {
                    fields.push(("Expect".to_owned(), "100-continue".to_owned()));
                }
                RequestSpec {
                    method,
                    target,
                    minor_version: minor,
                    crlf,
                    fields,
                    allow,
                    body,
                }
            },
        )
}

/// The last request of a stream may open a tunnel, after which arbitrary
/// bytes follow.
fn tunnel_request() -> impl Strategy<Value = (RequestSpec, Vec<u8>)> {
    (request(), any::<bool>(), vec(any::<u8>(), 0..200)).prop_map(|(mut r, connect, tail)| {
        if connect {
            r.method = "CONNECT".to_owned();
            r.target = "example.com:443".to_owned();
            r.body = BodySpec::None;
        } else {
            r.fields
                .push(("Upgrade".to_owned(), "websocket".to_owned()));
        }
        (r, tail)
    })
}

/// Streams of 1 to 4 valid requests, sometimes ending in a tunnel.
pub(crate) fn valid_stream() -> impl Strategy<Value = StreamSpec> {
    (
        vec(request(), 1..=4),
        proptest::option::weighted(0.2, tunnel_request()),
    )
        .prop_map(|(mut requests, tunnel)| {
            let tail = match tunnel {
                Some((last, tail)) => {
                    requests.pop();
                    requests.push(last);
                    tail
                }
                None => Vec::new(),
            };
            stream_of(&requests, &tail, INJECT)
        })
}
