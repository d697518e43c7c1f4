//! Reading the proxy's answers before the program does.
//!
//! At each response boundary the next head is PEEKED, not read: the program then reads it
//! from the kernel itself, so nothing is buffered here and the program's poll/epoll
//! readiness stays exactly the kernel's. Only a head that is a proxy failure (hidden and
//! recovered from) or that carries `x-lunar-sequence-id` (removed) is taken by us.

use super::app_buffer::AppBuffer;
use super::inflight::InFlight;
use super::Conn;
use crate::http::{ResponseStream, Step, MAX_HEAD};
use crate::sys;
use std::time::Duration;

/// What the connection knows of the responses it expects from the proxy.
pub(super) struct Responses {
    pub tracker: ResponseStream,
    pub inflight: InFlight,
    /// Responses are being checked: the connection goes through the proxy and its
    /// stream is HTTP we can follow.
    pub checking: bool,
    /// A head we rewrote, waiting for the program's next read.
    pub held: Vec<u8>,
    /// Bytes of a head the tracker read from a peek: the program's reads of them are
    /// not fed again.
    pub already_tracked: usize,
}

impl Responses {
    pub fn new(replay_cap: usize) -> Self {
        Responses {
            tracker: ResponseStream::new(),
            inflight: InFlight::new(replay_cap),
            checking: false,
            held: Vec::new(),
            already_tracked: 0,
        }
    }

    /// A fresh tracker that expects the answers to the requests still in flight.
    pub fn restart_tracking(&mut self) {
        self.tracker = ResponseStream::new();
        self.already_tracked = 0;
        let methods: Vec<String> = self.inflight.methods().map(str::to_string).collect();
        methods
            .iter()
            .for_each(|method| self.tracker.push_request(method));
    }

    /// Nothing to check any more (the connection left the proxy).
    pub fn stop_checking(&mut self) {
        self.checking = false;
        self.inflight.clear();
        self.tracker = ResponseStream::new();
        self.already_tracked = 0;
    }
}

/// What to do about the next response.
pub(super) enum Next {
    /// Let the program read it.
    Deliver,
    /// Its head has not fully arrived.
    NotYet,
    /// A head with `x-lunar-sequence-id` was taken and rewritten into `held`.
    Held,
    /// The proxy failed this request: hide it.
    Replay(String),
    /// The proxy asks for the request again after a delay.
    Retry {
        after: Duration,
        sequence_id: String,
    },
}

pub(super) fn check_next(conn: &Conn, fd: i32) -> Next {
    {
        let responses = conn.responses.lock();
        if !responses.checking
            || responses.tracker.pending_requests() == 0
            || !responses.tracker.at_message_boundary()
        {
            return Next::Deliver;
        }
    }
    // Nearly every head fits the first window; a larger one gets a second look.
    let mut small = [0u8; 4096];
    let mut large = Vec::new();
    loop {
        let window: &mut [u8] = if large.is_empty() {
            &mut small
        } else {
            &mut large
        };
        // SAFETY: peeks into our own buffer of that length.
        let got = unsafe {
            sys::recv(
                fd,
                window.as_mut_ptr().cast(),
                window.len(),
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        if got == 0 {
            return Next::Replay("proxy closed the connection before answering".to_string());
        }
        if got < 0 {
            return match sys::errno() {
                libc::EAGAIN | libc::EINTR => Next::NotYet,
                libc::ECONNRESET | libc::EPIPE | libc::ENOTCONN | libc::ETIMEDOUT => {
                    Next::Replay("proxy reset the connection before answering".to_string())
                }
                _ => Next::Deliver,
            };
        }
        let full_window = got as usize == window.len();
        let peeked = &window[..got as usize];
        let mut responses = conn.responses.lock();
        let mut probe = responses.tracker.clone();
        match probe.feed(peeked) {
            Step::Buffered(_) if full_window && large.len() <= MAX_HEAD => {
                drop(responses);
                large.resize(MAX_HEAD + 1, 0);
            }
            Step::Buffered(_) => return Next::NotYet,
            Step::HeadComplete(head_len) => return judge_head(fd, &mut responses, probe, head_len),
            Step::NotHttp(_) | Step::Pass(_) => {
                responses.stop_checking();
                return Next::Deliver;
            }
        }
    }
}

/// `probe` is the tracker having read the peeked head (`head_len` bytes) that the program
/// has not read yet.
fn judge_head(
    fd: i32,
    responses: &mut Responses,
    mut probe: ResponseStream,
    head_len: usize,
) -> Next {
    let head = probe.head();
    if let Some(code) = head.lunar_error {
        return Next::Replay(format!(
            "x-lunar-error: {code} ({})",
            lunar_error_meaning(code)
        ));
    }
    if let Some(retry) = head.retry {
        return Next::Retry {
            after: Duration::from_secs_f64(retry.after_secs.min(3600.0)),
            sequence_id: retry.sequence_id.to_string(),
        };
    }
    if !head.informational {
        if let Some(runtime) = crate::runtime::get() {
            runtime.failsafe.record_success();
        }
    }
    let answered_before = probe.responses_completed();
    let next = if head.carries_sequence_id {
        // Take the head from the kernel; the program gets it without the header.
        let mut taken = vec![0u8; head_len];
        // SAFETY: reads into our own buffer; the bytes are there (peeked).
        let got = unsafe { sys::recv(fd, taken.as_mut_ptr().cast(), head_len, libc::MSG_DONTWAIT) };
        if got != head_len as isize {
            responses.stop_checking();
            return Next::Deliver;
        }
        probe.emit_head(&mut responses.held);
        Next::Held
    } else {
        // The program reads the head itself; the tracker has seen it already.
        probe.skip_head();
        responses.already_tracked = head_len;
        Next::Deliver
    };
    if probe.responses_completed() > answered_before {
        responses.inflight.answered();
    }
    responses.tracker = probe;
    next
}

impl Conn {
    /// Feeds bytes the program received to the response tracker.
    pub(super) fn track(&self, responses: &mut Responses, mut bytes: &[u8]) {
        let seen = responses.already_tracked.min(bytes.len());
        responses.already_tracked -= seen;
        bytes = &bytes[seen..];
        while !bytes.is_empty() && responses.checking {
            let answered_before = responses.tracker.responses_completed();
            let taken = match responses.tracker.feed(bytes) {
                Step::Pass(n) | Step::Buffered(n) => n,
                Step::HeadComplete(n) => {
                    responses.tracker.skip_head();
                    n
                }
                Step::NotHttp(_) => {
                    responses.stop_checking();
                    return;
                }
            };
            if responses.tracker.responses_completed() > answered_before {
                responses.inflight.answered();
            }
            if taken == 0 {
                return;
            }
            bytes = &bytes[taken..];
        }
    }

    /// After a successful read into `buffer` of `count` bytes.
    pub(super) fn track_delivered(&self, buffer: AppBuffer, count: usize) {
        let mut responses = self.responses.lock();
        if !responses.checking {
            return;
        }
        // SAFETY: `buffer` is the one the read just filled with `count` bytes.
        unsafe { buffer.delivered(count, |bytes| self.track(&mut responses, bytes)) };
    }

    /// Serves a held head; `None` when nothing is held.
    pub(super) fn serve_held(&self, buffer: AppBuffer, peek: bool) -> Option<isize> {
        let mut responses = self.responses.lock();
        if responses.held.is_empty() {
            return None;
        }
        // SAFETY: the program's read buffer, writable for the sizes it gave.
        let copied = unsafe { buffer.fill(&responses.held) };
        if !peek {
            responses.held.drain(..copied);
        }
        Some(copied as isize)
    }
}

/// The contract's table of proxy error codes.
pub fn lunar_error_meaning(code: &str) -> &'static str {
    match code.trim() {
        "1" => "request lacks x-lunar-host",
        "2" => "endpoint cannot be reached",
        "3" => "gateway timeout",
        "4" => "endpoint not found",
        "5" => "could not resolve host",
        "6" => "host not in the proxy's allow list",
        "7" => "host in the proxy's block list",
        "10" => "gateway shutting down",
        _ => "unknown proxy error",
    }
}
