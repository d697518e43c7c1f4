//! A read made non-blocking by its flag alone (`MSG_DONTWAIT` on a socket the program
//! keeps blocking) that found only part of the proxy's answer head. The library never
//! shows a head before it has all of it (a proxy failing mid-head must still end at the
//! origin), so such a read would return EAGAIN although the program's wait had just
//! reported bytes. Event loops wait again; PHP's stream wrapper, which polls its blocking
//! socket and then reads it with `MSG_DONTWAIT`, takes that EAGAIN for the end of its
//! request. So this read waits, in the kernel, for the rest of the head (or the proxy's
//! failure and the origin's answer to the request sent again), as a blocking read would,
//! and no longer than the socket's SO_RCVTIMEO: the rest of a head for `REST_OF_HEAD` (a
//! proxy that stalls mid-head leaves such a read with EAGAIN, as before, and an event
//! loop's own timeout holds), the origin's answer after a failure for `ANSWER_AFTER_FAILURE`.

use super::next_answer::{check_next, Next};
use super::read::is_nonblocking;
use super::recovery::{self, Started};
use super::waiting::{wait_for_input, wait_for_recovery, Direction};
use super::{Conn, Phase};
use crate::sys;
use libc::c_int;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long such a read waits for the rest of a head it found the start of: the pieces of
/// one head come within a round trip (a lost segment's retransmission included).
const REST_OF_HEAD: Duration = Duration::from_millis(500);
/// How long it waits for the origin's answer after the proxy failed: PHP's own default
/// (`default_socket_timeout`), the wait the program would have made for the answer.
const ANSWER_AFTER_FAILURE: Duration = Duration::from_secs(60);

/// Whether a read with `flags` on `fd` was made non-blocking by `MSG_DONTWAIT` alone (a
/// peek is not: it takes nothing).
pub(super) fn nonblocking_by_flag_alone(fd: c_int, flags: c_int) -> bool {
    flags & (libc::MSG_DONTWAIT | libc::MSG_PEEK) == libc::MSG_DONTWAIT && !is_nonblocking(fd, 0)
}

/// Waits until the answer's whole head is in the socket or held for the program (after a
/// failure of the proxy's: the answer of the request sent again):
/// `None`, the read goes on. `Some(count)`: what the read returns (-1 with errno set:
/// EAGAIN once the bound passed).
pub(super) fn wait_for_the_head(conn: &Arc<Conn>, fd: c_int) -> Option<isize> {
    let start = Instant::now();
    let fail = |errno| {
        sys::set_errno(errno);
        Some(-1)
    };
    // Input to wait for: the rest of the head, or (after a recovery, where the answer may
    // come unchecked from the origin) any first byte.
    let input = |recovered: bool| {
        let limit = if recovered {
            ANSWER_AFTER_FAILURE
        } else {
            REST_OF_HEAD
        };
        let left = (start + limit).saturating_duration_since(Instant::now());
        match wait_for_input(fd, left) {
            Ok(true) => None,
            Ok(false) => fail(libc::EAGAIN),
            Err(errno) => fail(errno),
        }
    };
    let mut recovered = false;
    loop {
        if matches!(conn.phase(), Phase::Recovering(_)) {
            if let Err(errno) = wait_for_recovery(conn, fd, Direction::Read) {
                return fail(errno);
            }
            recovered = true;
            continue;
        }
        match check_next(conn, fd, &|| false) {
            Next::Deliver if recovered => return input(true),
            Next::Deliver | Next::Held => return None,
            Next::Wait(libc::EAGAIN) => {
                if let Some(count) = input(recovered) {
                    return Some(count);
                }
            }
            Next::Wait(errno) => return fail(errno),
            Next::Failure(mut failure) => {
                let taken = std::mem::take(&mut failure.taken);
                match recovery::start(conn, fd, failure, false) {
                    Started::Done | Started::InBackground => recovered = true,
                    Started::NotPossible => {
                        if !taken.is_empty() {
                            conn.responses.lock().held = taken;
                        }
                        return None;
                    }
                    // As the read's own round (`read::receive`): a failed TLS fallback
                    // ends the plaintext stream.
                    Started::Failed(_) if matches!(conn.phase(), Phase::TlsOwned) => {
                        return Some(0)
                    }
                    Started::Failed(errno) => {
                        conn.take_left_error(&conn.state());
                        return fail(errno);
                    }
                }
            }
        }
    }
}
