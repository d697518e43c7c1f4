//! An in-memory model of one connection, driving the real pure parts: `RequestStream` for
//! the program's writes, `InFlight` for the copies, `ResponseStream` for the proxy's
//! answers, `decide` for every decision and `Phase::may_become`/`after_move` for every
//! phase change (each asserted legal). The executor mirrors what `write.rs`, `read.rs`,
//! `responses.rs` and `recovery.rs` do with each action, without sockets, locks, threads
//! or a runtime: a recovery runs to its end inside the call that started it.

use super::decide::{decide, Action, Answer, Event, Facts, Unseen};
use super::inflight::InFlight;
use super::state::{tests::proxy, Phase, State};
use crate::http::{ResponseStream, Step};
use crate::runtime::Route;

/// Lunar's lines, fixed (the real ones need a runtime).
pub const INJECTED: &[u8] = b"x-lunar-host: origin.test\r\nx-lunar-req-id: 7\r\n";
pub const RETRY_ANSWER: &[u8] =
    b"HTTP/1.1 503 R\r\nx-lunar-retry-after: 0\r\nx-lunar-sequence-id: s1\r\nContent-Length: 0\r\n\r\n";
pub const ERROR_ANSWER: &[u8] =
    b"HTTP/1.1 503 E\r\nx-lunar-error: 2\r\nContent-Length: 5\r\n\r\nerror";
pub const NOT_HTTP: &[u8] = b"\x15\x03\x03\x00\x02\x02\x28 not HTTP\r\n";
/// Retries honoured per request (LUNAR_RETRY_MAX_ATTEMPTS).
const MAX_RETRIES: u32 = 2;

/// How one connection to the proxy behaves; `usize`: at which of its requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Accept,
    /// The connect fails at once.
    Refuse,
    /// The connect seems under way; SO_ERROR says ECONNREFUSED.
    RefuseLate,
    /// Closes right after accepting.
    HangUp,
    ResetAt(usize),
    CloseAt(usize),
    LunarErrorAt(usize),
    RetryAt(usize),
    NotHttpFrom(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Open,
    Closed { dropped_one: bool },
    Reset,
}

/// A peer's end of one connection.
#[derive(Debug)]
pub struct Peer {
    pub is_proxy: bool,
    mode: Mode,
    end: End,
    /// Every byte it got, and where the next request starts.
    pub got: Vec<u8>,
    parsed: usize,
    /// The complete requests it got, as they came.
    pub requests: Vec<Vec<u8>>,
    /// Bytes not read yet by the program; everything it ever sent.
    out: Vec<u8>,
    pub sent: Vec<u8>,
}

impl Peer {
    fn new(is_proxy: bool, mode: Mode) -> Peer {
        let end = if mode == Mode::HangUp {
            End::Closed { dropped_one: false }
        } else {
            End::Open
        };
        Peer {
            is_proxy,
            mode,
            end,
            got: Vec::new(),
            parsed: 0,
            requests: Vec::new(),
            out: Vec::new(),
            sent: Vec::new(),
        }
    }

    /// The kernel takes `bytes` (all of them: the window is the caller's).
    fn take(&mut self, bytes: &[u8]) -> Result<usize, i32> {
        match self.end {
            End::Reset => return Err(libc::ECONNRESET),
            End::Closed { dropped_one: true } => return Err(libc::EPIPE),
            End::Closed { .. } => {
                self.end = End::Closed { dropped_one: true };
                return Ok(bytes.len());
            }
            End::Open => {}
        }
        self.got.extend_from_slice(bytes);
        while let Some(len) = request_len(&self.got[self.parsed..]) {
            let request = self.got[self.parsed..self.parsed + len].to_vec();
            self.parsed += len;
            self.requests.push(request);
            self.answer();
            if self.end != End::Open {
                break;
            }
        }
        Ok(bytes.len())
    }

    fn answer(&mut self) {
        let index = self.requests.len() - 1;
        let request = &self.requests[index];
        let retried = contains(request, b"x-lunar-sequence-id: s1\r\n");
        let mut answer = match self.mode {
            Mode::ResetAt(n) if n == index => return self.end = End::Reset,
            Mode::CloseAt(n) if n == index => return self.end = End::Closed { dropped_one: false },
            Mode::LunarErrorAt(n) if n == index => ERROR_ANSWER.to_vec(),
            Mode::RetryAt(n) if n == index => RETRY_ANSWER.to_vec(),
            Mode::NotHttpFrom(n) if n <= index => NOT_HTTP.to_vec(),
            _ => Vec::new(),
        };
        let peer = if self.is_proxy { "proxy" } else { "origin" };
        let extra = if retried {
            "x-lunar-sequence-id: s1\r\n"
        } else {
            ""
        };
        if answer.is_empty() || answer == NOT_HTTP {
            answer.extend(ok_answer(peer, &strip_lunar(request), extra));
        }
        self.out.extend_from_slice(&answer);
        self.sent.extend_from_slice(&answer);
    }

    /// What a read of at most `max` bytes gets: Ok(empty) at the end.
    fn give(&mut self, max: usize, peek: bool) -> Result<Vec<u8>, i32> {
        if self.out.is_empty() {
            return match self.end {
                End::Open => Err(libc::EAGAIN),
                End::Closed { .. } => Ok(Vec::new()),
                End::Reset => Err(libc::ECONNRESET),
            };
        }
        let n = max.min(self.out.len());
        let bytes = self.out[..n].to_vec();
        if !peek {
            self.out.drain(..n);
        }
        Ok(bytes)
    }

    fn hung_up(&self) -> bool {
        self.out.is_empty() && self.end != End::Open
    }
}

/// The answer a peer gives a request (its bytes without Lunar's lines): the body names
/// the peer and carries the request's checksum.
pub fn ok_answer(peer: &str, request: &[u8], extra: &str) -> Vec<u8> {
    let body = format!("{peer} {:08x}", checksum(request));
    format!(
        "HTTP/1.1 200 OK\r\n{extra}x-sum: {:08x}\r\nContent-Length: {}\r\n\r\n{body}",
        checksum(body.as_bytes()),
        body.len()
    )
    .into_bytes()
}

pub fn checksum(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// `request` without its `x-lunar-*` lines.
pub fn strip_lunar(request: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut in_head = true;
    let mut rest = request;
    while in_head && !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let line = &rest[..end];
        in_head = line != b"\r\n";
        if !line.to_ascii_lowercase().starts_with(b"x-lunar-") {
            out.extend_from_slice(line);
        }
        rest = &rest[end..];
    }
    out.extend_from_slice(rest);
    out
}

/// The length of the complete request at the start of `bytes`, if it is there (the sim's
/// requests are framed by Content-Length or have no body).
pub fn request_len(bytes: &[u8]) -> Option<usize> {
    let head = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let text = String::from_utf8_lossy(&bytes[..head]).to_ascii_lowercase();
    let body = text
        .lines()
        .find_map(|line| line.strip_prefix("content-length: "))
        .map_or(0, |n| n.trim().parse::<usize>().unwrap());
    (bytes.len() >= head + body).then_some(head + body)
}

/// The connection: the real engines and state, the peers it met, what the program saw.
pub struct Sim {
    pub state: State,
    requests: crate::http::RequestStream,
    tracker: ResponseStream,
    inflight: InFlight,
    checking: bool,
    held: Vec<u8>,
    already_tracked: usize,
    retries: u32,
    pub peers: Vec<Peer>,
    /// Behaviours of the next connections to the proxy (then Accept).
    scripts: std::collections::VecDeque<Mode>,
    /// The filter's verdict on the first head, when it differs from the connect's.
    wanted: Option<Route>,
    /// Most bytes one send takes.
    pub window: usize,
    /// What the program read, and the sum of its write counts.
    pub read: Vec<u8>,
    pub written: usize,
    /// Reads end at the end of the answer being checked (see `answer_left`).
    pub clip_reads: bool,
    /// A replay started while the program had read part of an answer (never: see
    /// `tests::send_failed_mid_answer_is_not_replayed`).
    pub replayed_mid_answer: bool,
    /// Every phase the connection was in, and every decision.
    pub phases: Vec<Phase>,
    pub actions: Vec<(Event, Action)>,
}

impl Sim {
    /// `diverted`: the filter sends the connection to the proxy at connect.
    pub fn new(scripts: &[Mode], diverted: bool, wanted: Option<Route>, cap: usize) -> Sim {
        let mut sim = Sim {
            state: State::new(),
            requests: Default::default(),
            tracker: ResponseStream::new(),
            inflight: InFlight::new(cap),
            checking: false,
            held: Vec::new(),
            already_tracked: 0,
            retries: 0,
            peers: Vec::new(),
            scripts: scripts.iter().copied().collect(),
            wanted,
            window: usize::MAX,
            read: Vec::new(),
            written: 0,
            clip_reads: true,
            replayed_mid_answer: false,
            phases: vec![Phase::Connecting],
            actions: Vec::new(),
        };
        // connect.rs: a proxy that refuses the connect at once is left for the origin.
        let to = if diverted && sim.scripts.front() != Some(&Mode::Refuse) {
            Route::Proxy(proxy())
        } else {
            sim.scripts.pop_front();
            Route::Origin
        };
        sim.move_to(to);
        sim
    }

    fn set_phase(&mut self, to: Phase) {
        let from = self.state.phase;
        assert!(
            from.may_become(to),
            "illegal {from:?} -> {to:?} after {:?}",
            self.actions
        );
        self.state.phase = to;
        self.phases.push(to);
    }

    fn peer(&mut self) -> &mut Peer {
        self.peers.last_mut().expect("connected")
    }

    /// `Conn::move_to`: a new connection, the phase after the move, checking at the proxy.
    fn move_to(&mut self, route: Route) {
        let is_proxy = route.is_proxy();
        let mode = if is_proxy {
            self.scripts.pop_front().unwrap_or(Mode::Accept)
        } else {
            Mode::Accept
        };
        self.peers.push(Peer::new(is_proxy, mode));
        self.state.moves += 2;
        self.set_phase(self.state.phase.after_move(route));
        self.checking = is_proxy;
    }

    fn stop_checking(&mut self) {
        self.checking = false;
        self.inflight.clear();
        self.tracker = ResponseStream::new();
        self.already_tracked = 0;
        self.retries = 0;
    }

    fn ask(&mut self, event: Event) -> Action {
        let facts = Facts {
            replayable: self.inflight.replayable()
                && self.tracker.at_message_boundary()
                && self.already_tracked == 0,
            tls_movable: true,
            real_tls_followed: false,
        };
        let action = decide(&self.state, facts, event);
        self.actions.push((event, action));
        action
    }

    /// Carries `action` out; Err: the program's call fails with this errno.
    fn act(&mut self, action: Action) -> Result<(), i32> {
        match action {
            Action::Proceed | Action::ReadOn => {}
            Action::Move(route) => self.move_to(route),
            Action::GoDirect(_) => {
                // A move to the origin that passes bytes only: straight to Passthrough.
                self.stop_checking();
                self.peers.push(Peer::new(false, Mode::Accept));
                self.set_phase(Phase::Passthrough(Route::Origin));
            }
            Action::Passthrough(_) => self.set_phase(Phase::Passthrough(self.state.phase.route())),
            Action::Replay => {
                // recovery::replay_to_origin: move, then the copies as the program wrote them.
                self.replayed_mid_answer |=
                    !self.tracker.at_message_boundary() || self.already_tracked > 0;
                self.set_phase(Phase::Recovering(Route::Origin));
                self.move_to(Route::Origin);
                let bytes = self.inflight.direct_bytes();
                self.stop_checking();
                self.send_all(&bytes)?;
                self.set_phase(Phase::Direct);
            }
            Action::Retry { .. } => {
                // recovery: reconnect to the proxy, restart tracking, resend with the id.
                self.retries += 1;
                self.set_phase(Phase::Recovering(Route::Proxy(proxy())));
                self.move_to(Route::Proxy(proxy()));
                self.tracker = ResponseStream::new();
                self.already_tracked = 0;
                for method in self.inflight.methods() {
                    self.tracker.push_asked(method);
                }
                let bytes = self.inflight.retry_bytes("s1");
                self.send_all(&bytes)?;
                self.set_phase(Phase::Proxied(proxy()));
            }
            Action::ConnectFailed => self.move_to(Route::Origin),
            Action::Unhideable { .. } | Action::DeliverBlind => {
                self.stop_checking();
                self.set_phase(Phase::ProxiedBlind(proxy()));
            }
            Action::LeaveAtNextRequest => self.set_phase(Phase::Leaving(proxy())),
            Action::Report(errno) => return Err(errno),
            Action::HandToTls(_) => unreachable!("the sim has no TLS"),
        }
        Ok(())
    }

    fn send(&mut self, bytes: &[u8]) -> Result<usize, i32> {
        let n = bytes.len().min(self.window);
        self.peer().take(&bytes[..n])
    }

    fn send_all(&mut self, mut bytes: &[u8]) -> Result<(), i32> {
        while !bytes.is_empty() {
            let sent = self.send(bytes)?;
            bytes = &bytes[sent..];
        }
        Ok(())
    }

    fn at_proxy(&self) -> bool {
        self.state.phase.proxy().is_some()
    }
}

#[path = "sim_io.rs"]
mod io;

#[cfg(test)]
#[path = "sim_tests.rs"]
pub(super) mod tests;
