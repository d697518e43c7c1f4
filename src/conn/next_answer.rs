//! Reading the proxy's answers before the program does.
//!
//! At each response boundary the next head is PEEKED, not read: the program then reads it
//! from the kernel itself, so nothing is buffered here and the program's poll/epoll
//! readiness stays exactly the kernel's. Taken by us are only a head that is a proxy
//! failure (hidden and recovered from), one that carries `x-lunar-sequence-id` (removed),
//! and the first part of a head that arrives in pieces: peeked bytes keep a socket
//! readable, so leaving them there would make every wait for the rest return at once (a
//! busy loop); taken, the wait for the rest is a blocking peek, the kernel's.

use super::decide::{Answer, Event};
use super::recovery::Failure;
use super::responses::Responses;
use super::retry_limits::retry_allowed;
use super::Conn;
use crate::http::{ResponseHead, ResponseStream, Step, MAX_HEAD};
use crate::proxy;
use crate::sys;

/// What to do about the next response.
pub(super) enum Next {
    /// Let the program read it.
    Deliver,
    /// The program's read ends without bytes: -1 with this errno (EAGAIN: a non-blocking
    /// socket, or the program's SO_RCVTIMEO; EINTR: a signal, as its own read would).
    Wait(i32),
    /// Bytes of the head are in `held`, for the program's next reads.
    Held,
    /// The proxy failed this request, or asks for it again: `recovery::start` decides.
    Failure(Failure),
}

/// Looks at the next answer of the proxy before the program reads it. `blocking`: the
/// program's read would wait for bytes, so this waits for the head as that read would,
/// in the kernel (a blocking peek), with the program's SO_RCVTIMEO and signal handling.
pub(super) fn check_next(conn: &Conn, fd: i32, blocking: &dyn Fn() -> bool) -> Next {
    {
        let responses = conn.responses.lock();
        if !conn.phase().checks_answers()
            || responses.tracker.pending_requests() == 0
            || !responses.tracker.at_message_boundary()
        {
            return Next::Deliver;
        }
    }
    peek_at_next(conn, fd, blocking)
}

/// `check_next`'s look, out of line: most reads find the answer's head in their own bytes
/// (`answer_read`) and never come here (build.rs's layout keeps what never runs apart).
#[inline(never)]
fn peek_at_next(conn: &Conn, fd: i32, blocking: &dyn Fn() -> bool) -> Next {
    // A first look that never waits: an answer already there (the usual case for a
    // program that polled first) needs no question about the socket's mode.
    const LOOK: i32 = libc::MSG_PEEK | libc::MSG_DONTWAIT;
    const WAIT: i32 = libc::MSG_PEEK;
    let mut peek_flags = LOOK;
    // Nearly every head fits the first window; a larger one gets a second look.
    let mut small = [0u8; 4096];
    let mut large = Vec::new();
    loop {
        let can_grow = large.len() <= MAX_HEAD;
        let window: &mut [u8] = if large.is_empty() {
            &mut small
        } else {
            &mut large
        };
        let got = conn.recv_wire(fd, window, peek_flags);
        if got == 0 {
            return failed(
                conn,
                Answer::Closed,
                "proxy closed the connection before a complete answer",
            );
        }
        if got < 0 {
            return match sys::errno() {
                libc::EAGAIN if peek_flags == LOOK && blocking() => {
                    peek_flags = WAIT;
                    continue;
                }
                errno @ (libc::EAGAIN | libc::EINTR) => Next::Wait(errno),
                libc::ECONNRESET | libc::EPIPE | libc::ENOTCONN | libc::ETIMEDOUT => failed(
                    conn,
                    Answer::Reset,
                    "proxy reset the connection before a complete answer",
                ),
                // The program's own read meets this error.
                _ => {
                    let mut responses = conn.responses.lock();
                    if responses.partial_head.is_empty() {
                        Next::Deliver
                    } else {
                        deliver_as_is(conn, &mut responses)
                    }
                }
            };
        }
        let full_window = got as usize == window.len();
        let peeked = &window[..got as usize];
        let mut responses = conn.responses.lock();
        let mut probe = responses.probe();
        let taken_before = responses.partial_head.len();
        if taken_before > 0 {
            probe.feed(&responses.partial_head);
        }
        match probe.feed(peeked) {
            Step::Buffered(_) if full_window && can_grow => {
                drop(responses);
                large.resize(MAX_HEAD + 1, 0);
            }
            Step::Buffered(_) => {
                if !take_partial(conn, fd, &mut responses.partial_head, got as usize) {
                    return deliver_as_is(conn, &mut responses);
                }
                if !blocking() {
                    return Next::Wait(libc::EAGAIN);
                }
                peek_flags = WAIT;
            }
            Step::HeadComplete(rest_of_head) => {
                return judge_head(conn, fd, &mut responses, probe, taken_before + rest_of_head)
            }
            Step::NotHttp(_) | Step::Pass(_) => return deliver_as_is(conn, &mut responses),
        }
    }
}

/// The proxy failed: what it sent of a head is dropped with its connection.
fn failed(conn: &Conn, answer: Answer, why: &str) -> Next {
    conn.responses.lock().partial_head.clear();
    Next::Failure(Failure::new(Event::Answer(answer), why))
}

/// Stops checking this connection's answers (`Action::DeliverBlind`); what was taken
/// goes to the program.
fn deliver_as_is(conn: &Conn, responses: &mut Responses) -> Next {
    responses.stop_checking();
    conn.go_blind();
    if responses.held.is_empty() {
        Next::Deliver
    } else {
        Next::Held
    }
}

/// Moves `count` peeked bytes from the socket to `partial`.
fn take_partial(conn: &Conn, fd: i32, partial: &mut Vec<u8>, count: usize) -> bool {
    let start = partial.len();
    partial.resize(start + count, 0);
    let got = conn.take_peeked(fd, &mut partial[start..]);
    partial.truncate(start + got.max(0) as usize);
    got == count as isize
}

/// `probe` is the tracker having read the head (`head_len` bytes: those taken into
/// `partial_head`, then the peeked rest that the program has not read yet).
fn judge_head(
    conn: &Conn,
    fd: i32,
    responses: &mut Responses,
    mut probe: ResponseStream,
    head_len: usize,
) -> Next {
    let head = probe.head();
    if let Some(failure) = failure_in(&head, responses) {
        return Next::Failure(failure);
    }
    let answered_before = probe.responses_completed();
    let taken = std::mem::take(&mut responses.partial_head);
    let (carries_sequence_id, informational) = (head.carries_sequence_id, head.informational);
    let next = if carries_sequence_id || informational {
        // Taken from the kernel: a head without its `x-lunar-sequence-id` lines is served in
        // its place; a 1xx head is served alone, so that the read after it begins at the
        // next head, judged as any (the program's own read could take both at once).
        let rest = head_len - taken.len();
        let mut from_kernel = vec![0u8; rest];
        let got = conn.take_peeked(fd, &mut from_kernel);
        if got != rest as isize {
            responses.held = taken;
            responses
                .held
                .extend_from_slice(&from_kernel[..got.max(0) as usize]);
            return deliver_as_is(conn, responses);
        }
        if carries_sequence_id {
            probe.emit_head(&mut responses.held);
        } else {
            probe.skip_head();
            responses.held = taken;
            responses.held.extend_from_slice(&from_kernel);
        }
        Next::Held
    } else {
        // The program reads the head itself (what we took first, then the kernel's rest);
        // the tracker has seen it already.
        probe.skip_head();
        responses.already_tracked = head_len - taken.len();
        if taken.is_empty() {
            Next::Deliver
        } else {
            responses.held = taken;
            Next::Held
        }
    };
    if probe.responses_completed() > answered_before {
        responses.answered(true);
    }
    responses.adopt(probe);
    next
}

/// What a complete head from the proxy means: a failure, or a retry it asks for (its
/// bytes are not the program's: any part taken is dropped), or `None`: an answer for the
/// program (the proxy's success is counted when it has been read to its end,
/// `Responses::answered`).
pub(super) fn failure_in(head: &ResponseHead<'_>, responses: &mut Responses) -> Option<Failure> {
    if head.lunar_error.is_some() || head.retry.is_some() {
        if let Some(failure) = error_or_retry(head, responses) {
            return Some(failure);
        }
    }
    responses.retries = 0;
    None
}

/// `failure_in` for a head with `x-lunar-error` or a retry asked: out of line, as answers
/// of a healthy proxy carry neither (build.rs's layout keeps what never runs apart).
#[cold]
#[inline(never)]
fn error_or_retry(head: &ResponseHead<'_>, responses: &mut Responses) -> Option<Failure> {
    responses.partial_head.clear();
    if let Some(code) = head.lunar_error {
        let why = format!(
            "x-lunar-error: {code} ({})",
            proxy::lunar_error::meaning(code)
        );
        return Some(Failure::new(Event::Answer(Answer::LunarError), &why));
    }
    let retry = head.retry.as_ref()?;
    let after = retry_allowed(retry.after_secs, responses.retries)?;
    responses.retries += 1;
    let mut failure = Failure::new(
        Event::Answer(Answer::RetryAsked { after: Some(after) }),
        "the proxy asked for a retry",
    );
    failure.sequence_id = retry.sequence_id.to_string();
    Some(failure)
}
