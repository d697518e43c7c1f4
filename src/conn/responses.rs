//! What a diverted connection knows of the proxy's answers: the response tracker, the
//! requests in flight (kept for a replay), and bytes held for the program's next reads.
//! How the next answer's head is looked at before the program reads it: `next_answer`.

use super::app_buffer::AppBuffer;
use super::inflight::{InFlight, InFlightBuffers};
use super::{Conn, Phase};
use crate::http::{Asked, ResponseStream, Step, StreamBuffers};

/// What the connection knows of the responses it expects from the proxy.
pub(super) struct Responses {
    pub tracker: ResponseStream,
    /// A tracker's allocations kept for the next probe (`probe`): a head is judged on a
    /// copy of the tracker, and copying into this one allocates nothing per response.
    spare_probe: ResponseStream,
    pub inflight: InFlight,
    /// A head we rewrote, waiting for the program's next read.
    pub held: Vec<u8>,
    /// Bytes of a head the tracker read from a peek: the program's reads of them are
    /// not fed again.
    pub already_tracked: usize,
    /// The first bytes of a head still arriving, taken from the socket.
    pub partial_head: Vec<u8>,
    /// Retries the proxy asked for the request now awaiting its answer.
    pub retries: u32,
}

/// The allocations of a connection's answers (its tracker's, its probe's, the copies of
/// its requests), kept from a closed connection for the next one (`spares`).
#[derive(Debug, Default)]
pub(super) struct ResponsesBuffers {
    tracker: StreamBuffers,
    probe: StreamBuffers,
    inflight: InFlightBuffers,
}

impl ResponsesBuffers {
    /// Bytes they hold.
    pub fn capacity(&self) -> usize {
        self.tracker.capacity() + self.probe.capacity() + self.inflight.capacity()
    }
}

impl Responses {
    pub fn new(replay_cap: usize, buffers: ResponsesBuffers) -> Self {
        Responses {
            tracker: ResponseStream::with_buffers(buffers.tracker),
            spare_probe: ResponseStream::with_buffers(buffers.probe),
            inflight: InFlight::with_buffers(replay_cap, buffers.inflight),
            held: Vec::new(),
            already_tracked: 0,
            partial_head: Vec::new(),
            retries: 0,
        }
    }

    /// The allocations worth keeping for a later connection; this one is left empty.
    pub fn take_buffers(&mut self) -> ResponsesBuffers {
        ResponsesBuffers {
            tracker: self.tracker.take_buffers(),
            probe: self.spare_probe.take_buffers(),
            inflight: self.inflight.take_buffers(),
        }
    }

    /// A copy of the tracker to feed a head to, so that the tracker itself stays where it
    /// is until the head is found to be the program's (`adopt`).
    pub fn probe(&mut self) -> ResponseStream {
        let mut probe = std::mem::take(&mut self.spare_probe);
        probe.clone_from(&self.tracker);
        probe
    }

    /// The probe becomes the tracker; the old tracker's allocations serve the next probe.
    pub fn adopt(&mut self, probe: ResponseStream) {
        self.spare_probe = std::mem::replace(&mut self.tracker, probe);
    }

    /// Every request sent has been answered completely (and the answers can still be
    /// followed): a request boundary where the socket may move.
    pub fn every_answer_read(&self) -> bool {
        self.tracker.pending_requests() == 0
            && self.tracker.at_message_boundary()
            && !self.tracker.is_passthrough()
    }

    /// A fresh tracker that expects the answers to the requests still in flight.
    pub fn restart_tracking(&mut self) {
        self.tracker = ResponseStream::new();
        self.already_tracked = 0;
        self.partial_head.clear();
        for method in self.inflight.methods() {
            self.tracker.push_asked(method);
        }
    }

    /// The unanswered requests, to be sent again to the original destination, whose
    /// answers replace anything the proxy said: checking ends there.
    pub fn take_for_direct_resend(&mut self) -> Vec<u8> {
        self.partial_head.clear();
        let bytes = self.inflight.direct_bytes();
        let methods: Vec<Asked> = self.inflight.methods().collect();
        self.stop_checking();
        // The origin answers them: counted, so that a later request knows when nothing
        // is unanswered and it may move the socket back to the proxy.
        methods
            .into_iter()
            .for_each(|method| self.tracker.push_asked(method));
        bytes
    }

    /// Nothing to check any more (the connection left the proxy, or its answers cannot be
    /// followed: the caller changes the phase).
    /// An answer was read to its end: its request leaves the replay copy, and, when the
    /// answers are the proxy's (`at_proxy`), the proxy's success is counted. Counted here,
    /// not at the head: a good proxied response resets the failure count, and one cut
    /// short counts as a failure instead (`decide`, `PeerLost` cut short).
    pub fn answered(&mut self, at_proxy: bool) {
        self.inflight.answered();
        if at_proxy {
            if let Some(runtime) = crate::runtime::get() {
                runtime.failsafe.record_success();
            }
        }
    }

    pub fn stop_checking(&mut self) {
        self.inflight.clear();
        self.tracker = ResponseStream::new();
        self.already_tracked = 0;
        self.retries = 0;
        // A head begun but not judged is the program's to read as it came.
        let partial = std::mem::take(&mut self.partial_head);
        self.held.extend_from_slice(&partial);
    }
}

impl Conn {
    /// `requests`' last request offered an upgrade and the answers stopped being HTTP (its
    /// 101; or bytes that cannot be followed): the requests must follow them into a tunnel.
    /// The lock is taken only while an upgrade is pending.
    pub(super) fn upgrade_accepted(&self, requests: &crate::http::RequestStream) -> bool {
        requests.upgrade_pending() && self.responses.lock().tracker.is_passthrough()
    }

    /// The proxy's answers cannot be followed any more: delivered as they come.
    pub(super) fn go_blind(&self) {
        self.change(Phase::blind);
    }

    /// Feeds bytes the program received to the response tracker; `at_proxy`: they are the
    /// proxy's answers (`Phase::checks_answers`).
    pub(super) fn track(&self, responses: &mut Responses, mut bytes: &[u8], at_proxy: bool) {
        let seen = responses.already_tracked.min(bytes.len());
        responses.already_tracked -= seen;
        bytes = &bytes[seen..];
        while !bytes.is_empty() {
            let answered_before = responses.tracker.responses_completed();
            let taken = match responses.tracker.feed(bytes) {
                Step::Pass(n) | Step::Buffered(n) => n,
                Step::HeadComplete(n) => {
                    responses.tracker.skip_head();
                    n
                }
                Step::NotHttp(_) => {
                    responses.stop_checking();
                    self.go_blind();
                    return;
                }
            };
            if responses.tracker.responses_completed() > answered_before {
                responses.answered(at_proxy);
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
        let phase = self.phase();
        if !phase.follows_answers() {
            return;
        }
        let at_proxy = phase.checks_answers();
        // SAFETY: `buffer` is the one the read just filled with `count` bytes.
        unsafe { buffer.delivered(count, |bytes| self.track(&mut responses, bytes, at_proxy)) };
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
