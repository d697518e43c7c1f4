//! The program's calls on the model connection: writes mirror `write.rs`, reads mirror
//! `read.rs` and `responses.rs` (the peek at each answer boundary, the tracker fed with
//! what the program reads), the rest `connect.rs`, `hidden_hang_ups.rs` and `bypass.rs`.

use super::*;

impl Sim {
    /// The program writes `input`: the count it is told, or an errno.
    pub fn write(&mut self, input: &[u8]) -> Result<usize, i32> {
        if self.requests.at_message_boundary() && self.state.phase.follows_requests() {
            let action = self.ask(Event::RequestBegins);
            self.act(action)?;
        }
        let result = if matches!(self.state.phase, Phase::Passthrough(_)) {
            self.send(input)
        } else {
            self.write_requests(input)
        };
        if let Ok(n) = result {
            assert!(n <= input.len());
            self.written += n;
        }
        result
    }

    /// `write::send_request_bytes`.
    fn write_requests(&mut self, input: &[u8]) -> Result<usize, i32> {
        self.state.wrote = true;
        let mut consumed = 0;
        while consumed < input.len() {
            let rest = &input[consumed..];
            let before_feed = (self.requests.buffered_len() == 0).then(|| self.requests.clone());
            match self.requests.feed(rest) {
                Step::Buffered(n) => consumed += n,
                Step::Pass(n) => {
                    let sent = self.send(&rest[..n]);
                    let taken = *sent.as_ref().unwrap_or(&0);
                    if taken < n {
                        if let Some(snapshot) = before_feed {
                            self.requests = snapshot;
                            self.requests.feed(&rest[..taken]);
                        }
                    }
                    let sent = match sent {
                        Ok(sent) => sent,
                        Err(errno) => {
                            let action = self.ask(Event::SendFailed { errno });
                            if action == Action::Replay {
                                if let Err(errno) = self.act(action) {
                                    return ok_or(consumed, errno);
                                }
                                continue;
                            }
                            let errno = self.act(action).err().unwrap_or(errno);
                            return ok_or(consumed, errno);
                        }
                    };
                    consumed += sent;
                    if self.at_proxy() {
                        self.inflight.append(&rest[..sent]);
                        if self.requests.at_message_boundary() {
                            self.inflight.end_request();
                        }
                    }
                    if sent < n {
                        break;
                    }
                }
                Step::HeadComplete(n) => {
                    let before = consumed;
                    consumed += n;
                    let first_request = self.requests.heads_completed() == 1;
                    let wanted = if first_request { self.wanted } else { None };
                    // The model routes the first request only (`wanted` is for it); later
                    // requests' routing is in decide's own tests.
                    let action = self.ask(Event::HeadComplete {
                        first_request,
                        idle: first_request,
                        wanted,
                    });
                    if let Err(errno) = self.act(action) {
                        return ok_or(before, errno);
                    }
                    let method = self.requests.head().method.to_string();
                    let injected = if self.at_proxy() { INJECTED } else { b"" };
                    let mut out = Vec::new();
                    self.requests.emit_head(injected, &mut out);
                    if self.at_proxy() {
                        // Recorded before the head leaves: its answer may be read at once.
                        self.tracker.push_request(&method);
                        self.inflight
                            .start(crate::http::Asked::of(&method), &out, injected.len());
                        if self.requests.at_message_boundary() {
                            self.inflight.end_request();
                        }
                    }
                    if let Err(errno) = self.send_all(&out) {
                        let action = self.ask(Event::SendFailed { errno });
                        if action != Action::Replay {
                            let errno = self.act(action).err().unwrap_or(errno);
                            return ok_or(before, errno);
                        }
                        if let Err(errno) = self.act(action) {
                            return ok_or(before, errno);
                        }
                    }
                }
                Step::NotHttp(n) => {
                    let before = consumed;
                    consumed += n;
                    let first_bytes = self.requests.heads_completed() == 0;
                    let action = self.ask(Event::NotHttp { first_bytes });
                    if let Err(errno) = self.act(action) {
                        return ok_or(before, errno);
                    }
                    if !matches!(self.state.phase, Phase::Passthrough(_)) {
                        self.set_phase(Phase::Passthrough(self.state.phase.route()));
                    }
                    let buffered = self.requests.take_buffered();
                    if let Err(errno) = self.send_all(&buffered) {
                        return ok_or(before, errno);
                    }
                }
            }
        }
        Ok(consumed)
    }

    /// The program reads at most `max` bytes: Ok(0) at the end.
    pub fn read(&mut self, max: usize) -> Result<usize, i32> {
        if !self.state.wrote && self.state.phase.follows_requests() {
            let action = self.ask(Event::ReadBeforeWrite { looks_only: false });
            self.act(action)?;
        }
        loop {
            if !self.held.is_empty() {
                let n = max.min(self.held.len());
                let bytes: Vec<u8> = self.held.drain(..n).collect();
                self.read.extend_from_slice(&bytes);
                return Ok(n);
            }
            if self.checking
                && self.tracker.pending_requests() > 0
                && self.tracker.at_message_boundary()
                && self.check_next()?
            {
                continue;
            }
            let max = max.min(self.answer_left());
            let got = self.peer().give(max, false);
            match got {
                Ok(bytes) if !bytes.is_empty() => {
                    self.read.extend_from_slice(&bytes);
                    self.track(&bytes);
                    return Ok(bytes.len());
                }
                Ok(_) | Err(libc::ECONNRESET) if self.state.phase.diverted() => {
                    if self.peer_lost()? {
                        continue;
                    }
                    return got.map(|_| 0);
                }
                other => return other.map(|_| 0),
            }
        }
    }

    /// While answers are checked, a read ends where the answer being read ends, so that the
    /// next one is judged before the program sees it. `read.rs` does not do this today:
    /// see `tests::a_read_past_an_answer_takes_the_next_unjudged` (`clip_reads`).
    fn answer_left(&mut self) -> usize {
        if !self.clip_reads || !self.checking || self.tracker.pending_requests() == 0 {
            return usize::MAX;
        }
        let Ok(peeked) = self.peer().give(usize::MAX, true) else {
            return usize::MAX;
        };
        let mut probe = self.tracker.clone();
        let before = probe.responses_completed();
        let mut at = self.already_tracked.min(peeked.len());
        while at < peeked.len() && probe.responses_completed() == before {
            match probe.feed(&peeked[at..]) {
                Step::Pass(n) | Step::Buffered(n) => at += n,
                Step::HeadComplete(n) => {
                    probe.skip_head();
                    at += n;
                }
                Step::NotHttp(_) => return usize::MAX,
            }
        }
        at.max(1)
    }

    /// `next_answer::check_next` and the action on its answer; Ok(true): read again.
    fn check_next(&mut self) -> Result<bool, i32> {
        let peeked = match self.peer().give(usize::MAX, true) {
            Ok(bytes) => bytes,
            Err(libc::EAGAIN) => return Err(libc::EAGAIN),
            Err(_) => return self.on_answer(Answer::Reset, None),
        };
        if peeked.is_empty() {
            return self.on_answer(Answer::Closed, None);
        }
        let mut probe = self.tracker.clone();
        match probe.feed(&peeked) {
            Step::HeadComplete(len) => {
                let head = probe.head();
                let answer = if head.lunar_error.is_some() {
                    Answer::LunarError
                } else if head.retry.is_some() {
                    let within = self.retries < MAX_RETRIES;
                    let after = within.then_some(std::time::Duration::ZERO);
                    Answer::RetryAsked { after }
                } else {
                    Answer::Head
                };
                self.on_answer(answer, Some((probe, len)))
            }
            // The peers send whole answers: a head cut short ends the connection.
            Step::Buffered(_) => Err(libc::EAGAIN),
            Step::NotHttp(_) | Step::Pass(_) => self.on_answer(Answer::NotHttp, None),
        }
    }

    fn on_answer(
        &mut self,
        answer: Answer,
        head: Option<(ResponseStream, usize)>,
    ) -> Result<bool, i32> {
        let action = self.ask(Event::Answer(answer));
        match action {
            Action::Replay | Action::Retry { .. } => {
                self.act(action)?;
                return Ok(true);
            }
            Action::Proceed => {}
            other => {
                self.act(other)?;
                return Ok(false);
            }
        }
        let Some((mut probe, len)) = head else {
            return Ok(false);
        };
        self.retries = 0;
        let answered_before = probe.responses_completed();
        if probe.head().carries_sequence_id {
            self.peer().give(len, false).expect("peeked");
            probe.emit_head(&mut self.held);
        } else {
            probe.skip_head();
            self.already_tracked = len;
        }
        if probe.responses_completed() > answered_before {
            self.inflight.answered();
        }
        self.tracker = probe;
        Ok(!self.held.is_empty())
    }

    /// `Conn::track`.
    fn track(&mut self, bytes: &[u8]) {
        let seen = self.already_tracked.min(bytes.len());
        self.already_tracked -= seen;
        let mut bytes = &bytes[seen..];
        while !bytes.is_empty() && self.checking {
            let answered_before = self.tracker.responses_completed();
            let taken = match self.tracker.feed(bytes) {
                Step::Pass(n) | Step::Buffered(n) => n,
                Step::HeadComplete(n) => {
                    self.tracker.skip_head();
                    n
                }
                Step::NotHttp(_) => return self.stop_checking(),
            };
            if self.tracker.responses_completed() > answered_before {
                self.inflight.answered();
            }
            if taken == 0 {
                return;
            }
            bytes = &bytes[taken..];
        }
    }

    /// `read::proxy_lost_under_read`: true when hidden (read again).
    fn peer_lost(&mut self) -> Result<bool, i32> {
        if !self.at_proxy() {
            return Ok(false);
        }
        let action = self.ask(Event::PeerLost {
            unanswered: self.tracker.pending_requests() > 0,
            at_boundary: self.tracker.at_message_boundary(),
            cut_short: !self.tracker.at_message_boundary() && !self.tracker.can_end_here(),
            seen_at: self.state.moves,
        });
        self.act(action)?;
        Ok(!matches!(action, Action::Proceed))
    }

    /// A poll reported a hang-up: `read::proxy_lost_under_wait` (when nothing is unread).
    pub fn hang_up_seen(&mut self) {
        if self.state.phase.diverted() && self.peer().hung_up() && self.checking {
            let _ = self.peer_lost();
        }
    }

    /// The program reads SO_ERROR: `connect::connect_error_seen`; the value it sees.
    pub fn so_error(&mut self) -> i32 {
        let peer = self.peer();
        if !(peer.is_proxy && peer.mode == Mode::RefuseLate && peer.got.is_empty()) {
            return 0;
        }
        let error = libc::ECONNREFUSED;
        let action = self.ask(Event::ConnectErrorSeen { error });
        match self.act(action) {
            Ok(()) if action == Action::ConnectFailed => 0,
            Ok(()) => error,
            Err(errno) => errno,
        }
    }

    /// The program's bytes may leave unseen (`bypass`).
    pub fn unseen(&mut self, how: Unseen) {
        let idle = self.requests.at_message_boundary() && self.inflight.is_empty();
        let action = self.ask(Event::Unseen { how, idle });
        self.act(action).expect("not a call of the program");
    }
}

/// `write::fail`: a call that took `reported` bytes before failing reports them.
fn ok_or(reported: usize, errno: i32) -> Result<usize, i32> {
    if reported > 0 {
        Ok(reported)
    } else {
        Err(errno)
    }
}
