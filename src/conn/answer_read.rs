//! The program's read at the start of the proxy's next answer, judged after the fact: the
//! program's own read call fills its buffer, and the head is judged there before the
//! count is returned. One system call, the program's own (its blocking mode, timeout and
//! signals are the kernel's), where looking first would cost a peek per answer.
//!
//! A head that ends within the read is judged at once: a failure or a retry is hidden
//! (its bytes are dropped with the connection), a `x-lunar-sequence-id` line is cut out
//! in place, anything else is the program's. A read that ends inside the head gives its
//! bytes to `Responses::partial_head`, and the rest of the head is looked at as before
//! (`next_answer::check_next`, peeking), so that no byte the program is shown is unjudged.

use super::app_buffer::AppBuffer;
use super::decide::{Answer, Event};
use super::next_answer::failure_in;
use super::recovery::Failure;
use super::responses::Responses;
use super::Conn;
use crate::http::Step;
use crate::sys;
use std::hint::cold_path;

/// What became of the program's read.
pub(super) enum Judged {
    /// Not at the start of an answer: the usual path reads.
    NotAtHead,
    /// The program's read returns this (bytes judged, or the kernel's error).
    Return(isize),
    /// The read ended inside the head; its bytes were taken. Look again.
    HeadInPieces,
    /// The proxy failed, or asks for a retry.
    Failure(Failure),
}

/// Reads with `real` (the program's own call into `buffer`) when the proxy's next answer
/// begins here, and judges it.
pub(super) fn read_and_judge(
    conn: &Conn,
    buffer: AppBuffer,
    real: &mut dyn FnMut() -> isize,
) -> Judged {
    if buffer.is_empty() || !at_head(conn, &conn.responses.lock()) {
        return Judged::NotAtHead;
    }
    let got = real();
    if got == 0 {
        cold_path();
        return failed(
            Answer::Closed,
            "proxy closed the connection before a complete answer",
        );
    }
    if got < 0 {
        cold_path();
        return match sys::errno() {
            libc::ECONNRESET | libc::EPIPE | libc::ENOTCONN | libc::ETIMEDOUT => failed(
                Answer::Reset,
                "proxy reset the connection before a complete answer",
            ),
            _ => Judged::Return(got),
        };
    }
    // SAFETY: `buffer` is the one the read just filled with `got` bytes.
    unsafe {
        buffer.with_delivered(got as usize, |bytes| {
            judge(conn, &mut conn.responses.lock(), buffer, bytes)
        })
    }
}

/// `count` bytes a read got while another thread of the program wrote a request (which
/// was recorded as unanswered, or moved the socket, after this read's checks, and was
/// answered before the read was made): judged when they begin the answer due, as the
/// checks made before the read could not know. `None`: they are not, and are tracked as
/// any read's.
pub(super) fn judge_raced_read(conn: &Conn, buffer: AppBuffer, count: usize) -> Option<Judged> {
    // SAFETY: `buffer` is the one the read just filled with `count` bytes.
    unsafe {
        buffer.with_delivered(count, |bytes| {
            let mut responses = conn.responses.lock();
            at_head(conn, &responses).then(|| judge(conn, &mut responses, buffer, bytes))
        })
    }
}

/// The next bytes read begin an answer of the proxy's, not judged yet.
fn at_head(conn: &Conn, responses: &Responses) -> bool {
    conn.phase().checks_answers()
        && responses.tracker.pending_requests() > 0
        && responses.tracker.at_message_boundary()
        && responses.partial_head.is_empty()
        && responses.held.is_empty()
}

fn failed(answer: Answer, why: &str) -> Judged {
    Judged::Failure(Failure::new(Event::Answer(answer), why))
}

/// `bytes`: what the program's read put in `buffer`, from the start of an answer. A 1xx
/// answer's head is followed by another head of the same request's: one the read got too
/// (`100 Continue` and the final answer in one segment) is judged as the first was, so
/// that a failure or a retry after a 1xx is hidden as well.
fn judge(conn: &Conn, responses: &mut Responses, buffer: AppBuffer, bytes: &[u8]) -> Judged {
    // What the program is shown instead of `bytes` once a head lost its
    // `x-lunar-sequence-id` lines.
    let mut shown: Option<Vec<u8>> = None;
    let mut start = 0;
    loop {
        let head_bytes = &bytes[start..];
        let taken = match take_head(conn, responses, head_bytes) {
            Ok(taken) => taken,
            Err(judged) if start == 0 => return judged,
            Err(judged) => {
                cold_path();
                return after_informational(judged, buffer, bytes, start, shown);
            }
        };
        let answered_before = responses.tracker.responses_completed();
        let head_end = start + taken.head_len;
        if taken.carries_sequence_id {
            cold_path();
            // The head without those lines: shorter than what was read, so what is shown
            // fits the program's buffer whole.
            let out = shown.get_or_insert_with(|| bytes[..start].to_vec());
            responses.tracker.emit_head(out);
        } else {
            responses.tracker.skip_head();
            if let Some(out) = shown.as_mut() {
                out.extend_from_slice(&bytes[start..head_end]);
            }
        }
        let rest = &bytes[head_end..];
        if taken.informational && !rest.is_empty() {
            cold_path();
            start = head_end;
            continue;
        }
        if let Some(out) = shown.as_mut() {
            out.extend_from_slice(rest);
        }
        settle(conn, responses, answered_before, rest);
        break;
    }
    match shown {
        None => Judged::Return(bytes.len() as isize),
        // SAFETY: the program's read buffer, writable for the sizes it gave.
        Some(out) => Judged::Return(unsafe { buffer.fill(&out) } as isize),
    }
}

/// The head after a 1xx one (at `start` of the read's `bytes`) was not the program's to
/// read at once. A failure takes the whole read, the 1xx included: the request is sent
/// again and its answers come anew. A head in pieces (taken into `partial_head` by
/// `take_head`) is looked at on the next read, and this one returns what came before it;
/// bytes that are not HTTP go to the program as they came.
#[inline(never)]
fn after_informational(
    judged: Judged,
    buffer: AppBuffer,
    bytes: &[u8],
    start: usize,
    shown: Option<Vec<u8>>,
) -> Judged {
    let (before, after) = match judged {
        Judged::Failure(mut failure) => {
            failure.taken = bytes.to_vec();
            return Judged::Failure(failure);
        }
        Judged::HeadInPieces => (start, &[][..]),
        _ => (start, &bytes[start..]),
    };
    match shown {
        None if after.is_empty() => Judged::Return(before as isize),
        None => Judged::Return(bytes.len() as isize),
        Some(mut out) => {
            out.extend_from_slice(after);
            // SAFETY: the program's read buffer, writable for the sizes it gave.
            Judged::Return(unsafe { buffer.fill(&out) } as isize)
        }
    }
}

/// An answer's head the tracker took, judged the program's.
struct Taken {
    head_len: usize,
    carries_sequence_id: bool,
    informational: bool,
}

/// The answer's head at the start of `bytes`, judged: when it is the program's, the
/// tracker takes it. `Err`: what the read returns instead.
fn take_head(conn: &Conn, responses: &mut Responses, bytes: &[u8]) -> Result<Taken, Judged> {
    // A head that arrives whole (nearly every one) is judged before the tracker takes it:
    // no copy of the tracker to throw away when the head is a failure.
    if let Some(head) = responses.tracker.whole_head(bytes) {
        let view = head.view(bytes);
        if let Some(failure) = failure_in(&view, responses) {
            return Err(failed_taking(failure, bytes));
        }
        let taken = Taken {
            head_len: head.end(),
            carries_sequence_id: view.carries_sequence_id,
            informational: view.informational,
        };
        responses.tracker.take_whole_head(bytes, head);
        return Ok(taken);
    }
    // A head in pieces, or one `feed` reads its own way: on a copy of the tracker.
    let mut probe = responses.probe();
    let head_len = match probe.feed(bytes) {
        Step::HeadComplete(head_len) => head_len,
        Step::Buffered(_) => {
            responses.partial_head.extend_from_slice(bytes);
            return Err(Judged::HeadInPieces);
        }
        Step::NotHttp(_) | Step::Pass(_) => {
            responses.stop_checking();
            conn.go_blind();
            return Err(Judged::Return(bytes.len() as isize));
        }
    };
    let head = probe.head();
    if let Some(failure) = failure_in(&head, responses) {
        return Err(failed_taking(failure, bytes));
    }
    let taken = Taken {
        head_len,
        carries_sequence_id: head.carries_sequence_id,
        informational: head.informational,
    };
    responses.adopt(probe);
    Ok(taken)
}

/// The proxy's failure in the answer whose first bytes were read: they are taken.
#[cold]
#[inline(never)]
fn failed_taking(mut failure: Failure, bytes: &[u8]) -> Judged {
    failure.taken = bytes.to_vec();
    Judged::Failure(failure)
}

/// The head was the program's, and the tracker is past it: it follows the rest read.
fn settle(conn: &Conn, responses: &mut Responses, answered_before: u64, rest: &[u8]) {
    if responses.tracker.responses_completed() > answered_before {
        responses.answered(true);
    }
    conn.track(responses, rest, true);
}
