//! One test per row of `decide`'s table (named after it), then properties checked over
//! every phase, both values of each `State` flag, every `Facts` and every event.

use super::super::state::tests::{every_phase, proxy};
use super::*;

const ORIGIN: Route = Route::Origin;

fn state(phase: Phase) -> State {
    State {
        phase,
        ..State::new()
    }
}

fn proxied() -> State {
    state(Phase::Proxied(proxy()))
}

fn wrote(mut state: State) -> State {
    state.wrote = true;
    state
}

fn https(mut state: State) -> State {
    state.https = true;
    state
}

const REPLAYABLE: Facts = Facts {
    replayable: true,
    tls_movable: true,
    real_tls_followed: false,
};
const NOT_REPLAYABLE: Facts = Facts {
    replayable: false,
    tls_movable: true,
    real_tls_followed: false,
};
const TLS_STUCK: Facts = Facts {
    replayable: true,
    tls_movable: false,
    real_tls_followed: false,
};
/// At the origin in a real TLS session the TLS layer made (a fallback).
const REAL_TLS_FOLLOWED: Facts = Facts {
    replayable: true,
    tls_movable: true,
    real_tls_followed: true,
};

fn head(first_request: bool, wanted: Option<Route>) -> Event {
    Event::HeadComplete {
        first_request,
        idle: true,
        wanted,
    }
}

#[test]
fn head_complete_first_request_https_origin_wanted_hands_to_tls() {
    let action = decide(&https(proxied()), REPLAYABLE, head(true, Some(ORIGIN)));
    assert_eq!(action, Action::HandToTls(Reason::FilterAtFirstRequest));
}

#[test]
fn head_complete_first_request_another_peer_wanted_moves() {
    let to_proxy = Route::Proxy(proxy());
    let from_origin = decide(
        &state(Phase::Direct),
        REPLAYABLE,
        head(true, Some(to_proxy)),
    );
    assert_eq!(from_origin, Action::Move(to_proxy));
    let from_proxy = decide(&proxied(), REPLAYABLE, head(true, Some(ORIGIN)));
    assert_eq!(from_proxy, Action::Move(ORIGIN));
    // A real session at the origin stays there.
    let https_direct = https(state(Phase::Direct));
    let action = decide(&https_direct, REPLAYABLE, head(true, Some(to_proxy)));
    assert_eq!(action, Action::Proceed);
}

#[test]
fn head_complete_otherwise_proceeds() {
    let cases = [
        (proxied(), later_head(false, ORIGIN)),
        (proxied(), head(true, None)),
        (proxied(), head(true, Some(Route::Proxy(proxy())))),
        (state(Phase::Direct), head(true, Some(ORIGIN))),
        (
            state(Phase::Direct),
            later_head(false, Route::Proxy(proxy())),
        ),
    ];
    for (state, event) in cases {
        assert_eq!(
            decide(&state, REPLAYABLE, event),
            Action::Proceed,
            "{event:?}"
        );
    }
}

#[test]
fn not_http_first_bytes_at_the_proxy_goes_direct() {
    let event = Event::NotHttp { first_bytes: true };
    let plain = decide(&proxied(), REPLAYABLE, event);
    assert_eq!(plain, Action::GoDirect(Reason::NotHttp));
    let tls = decide(&https(proxied()), REPLAYABLE, event);
    assert_eq!(tls, Action::HandToTls(Reason::NotHttp));
}

#[test]
fn not_http_otherwise_passes_through() {
    let later = Event::NotHttp { first_bytes: false };
    let first = Event::NotHttp { first_bytes: true };
    let passthrough = Action::Passthrough(Reason::NotHttp);
    assert_eq!(decide(&proxied(), REPLAYABLE, later), passthrough);
    assert_eq!(
        decide(&state(Phase::Direct), REPLAYABLE, first),
        passthrough
    );
}

#[test]
fn send_failed_connection_loss_at_the_proxy_replayable_replays() {
    // The last four: a connect the program did not wait for failed (`connecting`).
    for errno in [
        libc::ECONNRESET,
        libc::EPIPE,
        libc::ENOTCONN,
        libc::ECONNREFUSED,
        libc::ETIMEDOUT,
        libc::EHOSTUNREACH,
        libc::ENETUNREACH,
    ] {
        let event = Event::SendFailed { errno };
        assert_eq!(decide(&wrote(proxied()), REPLAYABLE, event), Action::Replay);
        let leaving = wrote(state(Phase::Leaving(proxy())));
        assert_eq!(decide(&leaving, REPLAYABLE, event), Action::Replay);
        let tls = https(wrote(proxied()));
        assert_eq!(decide(&tls, REPLAYABLE, event), Action::Replay);
    }
}

#[test]
fn send_failed_connection_loss_at_the_proxy_not_replayable_is_unhideable() {
    let event = Event::SendFailed {
        errno: libc::ECONNRESET,
    };
    let action = decide(&wrote(proxied()), NOT_REPLAYABLE, event);
    assert_eq!(action, Action::Unhideable { counted: true });
}

#[test]
fn send_failed_otherwise_reports() {
    let reset = Event::SendFailed {
        errno: libc::ECONNRESET,
    };
    let other = Event::SendFailed {
        errno: libc::ENOBUFS,
    };
    assert_eq!(
        decide(&wrote(proxied()), REPLAYABLE, other),
        Action::Report(libc::ENOBUFS)
    );
    let direct = wrote(state(Phase::Direct));
    assert_eq!(
        decide(&direct, REPLAYABLE, reset),
        Action::Report(libc::ECONNRESET)
    );
    // A virtual TLS session that cannot move never leaves the proxy.
    let tls = https(wrote(proxied()));
    assert_eq!(
        decide(&tls, TLS_STUCK, reset),
        Action::Report(libc::ECONNRESET)
    );
}

#[test]
fn answer_closed_reset_lunar_error_replays_or_is_unhideable() {
    for answer in [Answer::Closed, Answer::Reset, Answer::LunarError] {
        let event = Event::Answer(answer);
        for phase in [Phase::Proxied(proxy()), Phase::Leaving(proxy())] {
            let at = wrote(state(phase));
            assert_eq!(decide(&at, REPLAYABLE, event), Action::Replay);
            let unhideable = Action::Unhideable { counted: true };
            assert_eq!(decide(&at, NOT_REPLAYABLE, event), unhideable);
            assert_eq!(decide(&https(at), TLS_STUCK, event), unhideable);
            assert_eq!(decide(&https(at), REPLAYABLE, event), Action::Replay);
        }
    }
}

#[test]
fn answer_retry_asked_within_bounds_retries_or_is_unhideable() {
    let after = Duration::from_millis(1500);
    let event = Event::Answer(Answer::RetryAsked { after: Some(after) });
    assert_eq!(
        decide(&wrote(proxied()), REPLAYABLE, event),
        Action::Retry { after }
    );
    // A retry goes back to the proxy: the TLS session need not move.
    assert_eq!(
        decide(&https(wrote(proxied())), TLS_STUCK, event),
        Action::Retry { after }
    );
    let action = decide(&wrote(proxied()), NOT_REPLAYABLE, event);
    assert_eq!(action, Action::Unhideable { counted: false });
    // Past the bounds the answer is the program's.
    let past = Event::Answer(Answer::RetryAsked { after: None });
    assert_eq!(decide(&wrote(proxied()), REPLAYABLE, past), Action::Proceed);
}

#[test]
fn answer_not_http_delivers_blind() {
    let event = Event::Answer(Answer::NotHttp);
    assert_eq!(
        decide(&wrote(proxied()), REPLAYABLE, event),
        Action::DeliverBlind
    );
}

#[test]
fn answer_a_head_to_deliver_proceeds() {
    for phase in every_phase() {
        let action = decide(
            &wrote(state(phase)),
            REPLAYABLE,
            Event::Answer(Answer::Head),
        );
        assert_eq!(action, Action::Proceed, "{phase:?}");
    }
    // Answers that are not checked are delivered whatever they are.
    let blind = wrote(state(Phase::ProxiedBlind(proxy())));
    let event = Event::Answer(Answer::LunarError);
    assert_eq!(decide(&blind, REPLAYABLE, event), Action::Proceed);
}

fn peer_lost(unanswered: bool, at_boundary: bool) -> Event {
    Event::PeerLost {
        unanswered,
        at_boundary,
        cut_short: false,
        seen_at: 0,
    }
}

#[test]
fn peer_lost_seen_before_or_during_a_move_of_the_socket_reads_on() {
    // The connection has moved once (two counts) since the end was met, or was moving
    // when it was met: never a recovery of the request now at the new peer.
    let decided = |phase: &Phase| {
        !matches!(
            phase,
            Phase::Passthrough(_) | Phase::TlsOwned | Phase::Recovering(_)
        )
    };
    for phase in every_phase().into_iter().filter(decided) {
        for (moves, seen_at) in [(2, 0), (2, 1), (1, 1), (3, 1), (4, 2)] {
            let mut now = wrote(state(phase));
            now.moves = moves;
            let event = Event::PeerLost {
                unanswered: true,
                at_boundary: true,
                cut_short: false,
                seen_at,
            };
            assert_eq!(
                decide(&now, REPLAYABLE, event),
                Action::ReadOn,
                "{phase:?} moves {moves} seen at {seen_at}"
            );
        }
    }
    // Met on the peer the socket has now: as any end (the rows below).
    let mut now = wrote(proxied());
    now.moves = 2;
    let event = Event::PeerLost {
        unanswered: true,
        at_boundary: true,
        cut_short: false,
        seen_at: 2,
    };
    assert_eq!(decide(&now, REPLAYABLE, event), Action::Replay);
}

#[test]
fn peer_lost_at_the_proxy_a_request_unanswered_replays() {
    let action = decide(&wrote(proxied()), REPLAYABLE, peer_lost(true, true));
    assert_eq!(action, Action::Replay);
}

#[test]
fn peer_lost_at_the_proxy_nothing_written_is_a_connect_failure() {
    let action = decide(&proxied(), REPLAYABLE, peer_lost(false, true));
    assert_eq!(action, Action::ConnectFailed);
}

#[test]
fn peer_lost_inside_an_answer_cut_short_is_a_counted_failure_the_program_sees() {
    let event = Event::PeerLost {
        unanswered: true,
        at_boundary: false,
        cut_short: true,
        seen_at: 0,
    };
    let action = decide(&wrote(proxied()), NOT_REPLAYABLE, event);
    assert_eq!(action, Action::Unhideable { counted: true });
    // The same end at the origin is the program's to see, uncounted.
    let direct = wrote(state(Phase::Direct));
    assert_eq!(decide(&direct, NOT_REPLAYABLE, event), Action::Proceed);
}

#[test]
fn peer_lost_otherwise_proceeds() {
    let cases = [
        (wrote(proxied()), peer_lost(false, true)),
        (wrote(proxied()), peer_lost(true, false)),
        (wrote(state(Phase::Direct)), peer_lost(true, true)),
        (state(Phase::Direct), peer_lost(false, true)),
    ];
    for (state, event) in cases {
        assert_eq!(
            decide(&state, REPLAYABLE, event),
            Action::Proceed,
            "{state:?} {event:?}"
        );
    }
}

#[test]
fn connect_error_seen_reset_refused_or_unreachable_at_the_proxy_nothing_written_fails_the_connect()
{
    for error in [
        libc::ECONNRESET,
        libc::ECONNREFUSED,
        libc::EPIPE,
        libc::ECONNABORTED,
        libc::ETIMEDOUT,
        libc::EHOSTUNREACH,
        libc::ENETUNREACH,
    ] {
        let event = Event::ConnectErrorSeen { error };
        assert_eq!(decide(&proxied(), REPLAYABLE, event), Action::ConnectFailed);
        assert_eq!(
            decide(&wrote(proxied()), REPLAYABLE, event),
            Action::Report(error)
        );
        let action = decide(&https(proxied()), TLS_STUCK, event);
        assert_eq!(action, Action::Unhideable { counted: true });
        let direct = decide(&state(Phase::Direct), REPLAYABLE, event);
        assert_eq!(direct, Action::Report(error));
    }
    // Not a connection's failure (a firewall's verdict on the socket, say): reported.
    let denied = Event::ConnectErrorSeen {
        error: libc::EACCES,
    };
    let action = decide(&proxied(), REPLAYABLE, denied);
    assert_eq!(action, Action::Report(libc::EACCES));
}

#[test]
fn read_before_write_at_the_proxy_nothing_written_goes_direct() {
    let looks = Event::ReadBeforeWrite { looks_only: true };
    let reads = Event::ReadBeforeWrite { looks_only: false };
    let first = Action::GoDirect(Reason::ServerSpeaksFirst);
    assert_eq!(decide(&proxied(), REPLAYABLE, reads), first);
    assert_eq!(decide(&proxied(), REPLAYABLE, looks), first);
    let tls = Action::HandToTls(Reason::ServerSpeaksFirst);
    assert_eq!(decide(&https(proxied()), REPLAYABLE, reads), tls);
    // A TLS client's look before it writes, a written request, a stuck session: stay.
    assert_eq!(
        decide(&https(proxied()), REPLAYABLE, looks),
        Action::Proceed
    );
    assert_eq!(
        decide(&wrote(proxied()), REPLAYABLE, reads),
        Action::Proceed
    );
    assert_eq!(decide(&https(proxied()), TLS_STUCK, reads), Action::Proceed);
    assert_eq!(
        decide(&state(Phase::Direct), REPLAYABLE, reads),
        Action::Proceed
    );
}

#[test]
fn server_name_at_the_proxy_not_diverted_moves_to_the_origin() {
    let event = Event::ServerName { diverted: false };
    assert_eq!(
        decide(&https(proxied()), REPLAYABLE, event),
        Action::Move(ORIGIN)
    );
    let kept = Event::ServerName { diverted: true };
    assert_eq!(decide(&https(proxied()), REPLAYABLE, kept), Action::Proceed);
    assert_eq!(
        decide(&state(Phase::Direct), REPLAYABLE, event),
        Action::Proceed
    );
}

fn unseen(how: Unseen, idle: bool) -> Event {
    Event::Unseen { how, idle }
}

#[test]
fn unseen_at_the_proxy_idle_goes_direct() {
    let cases = [
        (Unseen::Stdio, Reason::HandedToStdio),
        (Unseen::UntrackableFd, Reason::UntrackableFd),
        (Unseen::IoUring, Reason::IoUring),
    ];
    for (how, reason) in cases {
        let action = decide(&proxied(), REPLAYABLE, unseen(how, true));
        assert_eq!(action, Action::GoDirect(reason));
    }
    // io_uring after a write through us: what was written went through us.
    let action = decide(&wrote(proxied()), REPLAYABLE, unseen(Unseen::IoUring, true));
    assert_eq!(action, Action::Proceed);
}

#[test]
fn unseen_stdio_at_the_proxy_a_request_unanswered_leaves_at_next_request() {
    let action = decide(&wrote(proxied()), REPLAYABLE, unseen(Unseen::Stdio, false));
    assert_eq!(action, Action::LeaveAtNextRequest);
}

#[test]
fn unseen_untrackable_fd_unanswered_or_at_the_origin_passes_through() {
    let passthrough = Action::Passthrough(Reason::UntrackableFd);
    let busy = decide(
        &wrote(proxied()),
        REPLAYABLE,
        unseen(Unseen::UntrackableFd, false),
    );
    assert_eq!(busy, passthrough);
    for idle in [true, false] {
        let direct = wrote(state(Phase::Direct));
        let action = decide(&direct, REPLAYABLE, unseen(Unseen::UntrackableFd, idle));
        assert_eq!(action, passthrough);
        let stdio = decide(&direct, REPLAYABLE, unseen(Unseen::Stdio, idle));
        assert_eq!(stdio, Action::Passthrough(Reason::HandedToStdio));
    }
    // A virtual TLS session is never left in clear text.
    let tls = https(wrote(proxied()));
    let action = decide(&tls, REPLAYABLE, unseen(Unseen::UntrackableFd, true));
    assert_eq!(action, Action::Proceed);
}

#[test]
fn request_begins_leaving_goes_direct() {
    let leaving = wrote(state(Phase::Leaving(proxy())));
    let action = decide(&leaving, REPLAYABLE, Event::RequestBegins);
    assert_eq!(action, Action::GoDirect(Reason::HandedToStdio));
    let action = decide(&wrote(proxied()), REPLAYABLE, Event::RequestBegins);
    assert_eq!(action, Action::Proceed);
}

#[test]
fn any_passthrough_tls_owned_recovering_proceeds() {
    for phase in every_phase() {
        if !matches!(
            phase,
            Phase::Passthrough(_) | Phase::TlsOwned | Phase::Recovering(_)
        ) {
            continue;
        }
        for state in every_state(phase) {
            for event in every_event() {
                let action = decide(&state, REPLAYABLE, event);
                let expected = match event {
                    Event::SendFailed { errno } | Event::ConnectErrorSeen { error: errno } => {
                        Action::Report(errno)
                    }
                    _ => Action::Proceed,
                };
                assert_eq!(action, expected, "{state:?} {event:?}");
            }
        }
    }
}

// ---- properties over everything ----

/// Every event, with each of its facts.
pub(crate) fn every_event() -> Vec<Event> {
    let routes = [None, Some(ORIGIN), Some(Route::Proxy(proxy()))];
    let mut events = vec![Event::RequestBegins];
    for first_request in [true, false] {
        for wanted in routes {
            events.push(head(first_request, wanted));
        }
    }
    for first_bytes in [true, false] {
        events.push(Event::NotHttp { first_bytes });
    }
    let errnos = [
        libc::ECONNRESET,
        libc::EPIPE,
        libc::ENOTCONN,
        libc::ECONNREFUSED,
        libc::ECONNABORTED,
        libc::ETIMEDOUT,
        libc::EAGAIN,
    ];
    for errno in errnos {
        events.push(Event::SendFailed { errno });
        events.push(Event::ConnectErrorSeen { error: errno });
    }
    let answers = [
        Answer::Closed,
        Answer::Reset,
        Answer::LunarError,
        Answer::RetryAsked { after: None },
        Answer::RetryAsked {
            after: Some(Duration::ZERO),
        },
        Answer::Head,
        Answer::NotHttp,
    ];
    events.extend(answers.map(Event::Answer));
    for unanswered in [true, false] {
        for at_boundary in [true, false] {
            events.push(peer_lost(unanswered, at_boundary));
        }
    }
    // Met while the socket was between peers (another thread moving it).
    events.push(Event::PeerLost {
        unanswered: true,
        at_boundary: true,
        cut_short: false,
        seen_at: 1,
    });
    events.push(Event::PeerLost {
        unanswered: true,
        at_boundary: false,
        cut_short: true,
        seen_at: 0,
    });
    for flag in [true, false] {
        events.push(Event::ReadBeforeWrite { looks_only: flag });
        events.push(Event::ServerName { diverted: flag });
        for how in [Unseen::Stdio, Unseen::UntrackableFd, Unseen::IoUring] {
            events.push(unseen(how, flag));
        }
    }
    events
}

/// `phase` with every combination of the flags `decide` reads.
fn every_state(phase: Phase) -> Vec<State> {
    let mut states = Vec::new();
    for bits in 0..8u32 {
        states.push(State {
            phase,
            wrote: bits & 1 != 0,
            https: bits & 2 != 0,
            identity_checked: bits & 4 != 0,
            moves: bits,
            write_shut: false,
            left_error: 0,
        });
    }
    states
}

fn every_facts() -> [Facts; 5] {
    [
        Facts::default(),
        REPLAYABLE,
        NOT_REPLAYABLE,
        TLS_STUCK,
        REAL_TLS_FOLLOWED,
    ]
}

/// Runs `check(state, facts, event, action)` over everything.
fn for_all(mut check: impl FnMut(&State, Facts, Event, Action)) {
    for phase in every_phase() {
        for state in every_state(phase) {
            for facts in every_facts() {
                for event in every_event() {
                    check(&state, facts, event, decide(&state, facts, event));
                }
            }
        }
    }
}

#[test]
fn nothing_is_decided_in_passthrough_tls_owned_or_recovering_but_a_send_error() {
    for_all(|state, facts, event, action| {
        if is_return_from_real_tls(state, facts, event) {
            return;
        }
        if matches!(
            state.phase,
            Phase::Passthrough(_) | Phase::TlsOwned | Phase::Recovering(_)
        ) {
            match event {
                Event::SendFailed { errno } | Event::ConnectErrorSeen { error: errno } => {
                    assert_eq!(action, Action::Report(errno))
                }
                _ => assert_eq!(action, Action::Proceed, "{state:?} {event:?}"),
            }
        }
    });
}

#[test]
fn https_never_leaves_in_clear_text() {
    for_all(|state, facts, event, action| {
        if !state.https {
            return;
        }
        let head_or_bytes = matches!(event, Event::HeadComplete { .. } | Event::NotHttp { .. });
        let clear = matches!(action, Action::GoDirect(_) | Action::Move(Route::Origin));
        assert!(
            !(head_or_bytes && clear),
            "{state:?} {facts:?} {event:?} -> {action:?}"
        );
        // No way at all to the origin but through a real session (ServerName's move
        // happens before the handshake: nothing protected was written). Leaving is never
        // entered by https (Unseen is not decided for it).
        let leaving = matches!(state.phase, Phase::Leaving(_));
        if !matches!(event, Event::ServerName { .. }) && !leaving {
            assert!(!clear, "{state:?} {facts:?} {event:?} -> {action:?}");
        }
    });
}

#[test]
fn https_leaves_the_proxy_only_when_tls_can_move() {
    for_all(|state, facts, event, action| {
        let leaves = matches!(
            action,
            Action::HandToTls(_) | Action::Replay | Action::ConnectFailed
        );
        // A head or the first bytes hand the session over whatever: the TLS layer's
        // take-over then fails the program's call (as write.rs does today).
        let program_bytes = matches!(event, Event::HeadComplete { .. } | Event::NotHttp { .. });
        if state.https && leaves && !program_bytes {
            assert!(
                facts.tls_movable,
                "{state:?} {facts:?} {event:?} -> {action:?}"
            );
        }
    });
}

#[test]
fn replay_and_retry_only_when_replayable() {
    for_all(|state, facts, event, action| {
        if matches!(action, Action::Replay | Action::Retry { .. }) {
            assert!(
                facts.replayable,
                "{state:?} {facts:?} {event:?} -> {action:?}"
            );
        }
    });
}

#[test]
fn connect_failed_only_when_nothing_was_written() {
    for_all(|state, facts, event, action| {
        if action == Action::ConnectFailed {
            assert!(!state.wrote, "{state:?} {facts:?} {event:?}");
            assert!(state.phase.proxy().is_some(), "{state:?} {event:?}");
        }
    });
}

#[test]
fn recoveries_and_moves_away_start_only_at_the_proxy() {
    for_all(|state, _, event, action| {
        let from_proxy = matches!(
            action,
            Action::Replay
                | Action::Retry { .. }
                | Action::ConnectFailed
                | Action::Unhideable { .. }
                | Action::DeliverBlind
                | Action::LeaveAtNextRequest
                | Action::GoDirect(_)
                | Action::HandToTls(_)
                | Action::Move(Route::Origin)
        );
        if from_proxy {
            assert!(
                state.phase.proxy().is_some(),
                "{state:?} {event:?} -> {action:?}"
            );
        }
        if matches!(action, Action::Move(Route::Proxy(_))) {
            let at_origin = matches!(
                state.phase,
                Phase::Direct | Phase::Connecting | Phase::TlsOwned
            );
            assert!(at_origin, "{state:?} {event:?}");
        }
    });
}

#[test]
fn the_phase_each_action_leads_to_is_legal() {
    check_phases_after_actions(|state, event| {
        // Leaving follows a request already sent (so written): no first request can
        // complete there.
        let server_name = matches!(event, Event::ServerName { .. });
        if matches!(state.phase, Phase::Leaving(_)) && (!state.wrote || server_name) {
            return true;
        }
        let first = matches!(
            event,
            Event::HeadComplete {
                first_request: true,
                ..
            }
        );
        first && matches!(state.phase, Phase::Leaving(_))
    });
}

#[test]
fn blind_stdio_busy_leads_to_a_legal_phase() {
    let blind = wrote(state(Phase::ProxiedBlind(proxy())));
    let event = Event::Unseen {
        how: Unseen::Stdio,
        idle: false,
    };
    let action = decide(&blind, REPLAYABLE, event);
    assert_eq!(action, Action::Passthrough(Reason::HandedToStdio));
    assert!(blind
        .phase
        .may_become(Phase::Passthrough(blind.phase.route())));
}

#[test]
fn leaving_unhideable_leads_to_a_legal_phase() {
    let leaving = wrote(state(Phase::Leaving(proxy())));
    let events = [
        Event::SendFailed {
            errno: libc::ECONNRESET,
        },
        Event::Answer(Answer::LunarError),
        Event::Answer(Answer::NotHttp),
    ];
    for event in events {
        let action = decide(&leaving, NOT_REPLAYABLE, event);
        let blind = matches!(action, Action::Unhideable { .. } | Action::DeliverBlind);
        assert!(
            !blind || leaving.phase.may_become(leaving.phase.blind()),
            "{event:?} -> {action:?}"
        );
    }
}

#[test]
fn peer_lost_not_replayable_is_unhideable() {
    let event = peer_lost(true, true);
    let unhideable = Action::Unhideable { counted: true };
    assert_eq!(decide(&wrote(proxied()), NOT_REPLAYABLE, event), unhideable);
    assert_eq!(
        decide(&https(wrote(proxied())), TLS_STUCK, event),
        unhideable
    );
}

/// The phase each action leads to (as the I/O layer carries it out) is one `from` may
/// become; `skip`: known exceptions.
fn check_phases_after_actions(skip: impl Fn(&State, Event) -> bool) {
    let p = proxy();
    for_all(|state, _, event, action| {
        if skip(state, event) {
            return;
        }
        let from = state.phase;
        let to = match action {
            Action::Move(route) => vec![from.after_move(route)],
            Action::GoDirect(_) => vec![Phase::Passthrough(Route::Origin)],
            Action::Passthrough(_) => vec![Phase::Passthrough(from.route())],
            Action::Replay => vec![Phase::Recovering(ORIGIN)],
            Action::Retry { .. } => vec![Phase::Recovering(Route::Proxy(p))],
            Action::HandToTls(_) => vec![Phase::TlsOwned],
            Action::ConnectFailed if state.https => vec![Phase::TlsOwned],
            Action::ConnectFailed => vec![from.after_move(ORIGIN)],
            Action::Unhideable { .. } | Action::DeliverBlind => vec![from.blind()],
            Action::LeaveAtNextRequest => vec![Phase::Leaving(p)],
            Action::Proceed | Action::Report(_) | Action::ReadOn => vec![],
        };
        for to in to {
            assert!(
                from.may_become(to),
                "{from:?} -> {to:?} ({event:?} -> {action:?})"
            );
        }
    });
}

/// A GoDirect is a move to the origin and a passthrough at once: from Leaving it must
/// go straight to Passthrough, as `after_move` leads to Direct, which Leaving may not
/// become (the table has no Leaving -> Direct row).
#[test]
fn go_direct_from_leaving_skips_direct() {
    let leaving = Phase::Leaving(proxy());
    assert!(!leaving.may_become(leaving.after_move(ORIGIN)));
    assert!(leaving.may_become(Phase::Passthrough(ORIGIN)));
}

fn later_head(idle: bool, wanted: Route) -> Event {
    Event::HeadComplete {
        first_request: false,
        idle,
        wanted: Some(wanted),
    }
}

#[test]
fn head_complete_later_request_every_answer_read_moves_back_to_the_proxy() {
    let direct = wrote(state(Phase::Direct));
    let event = later_head(true, Route::Proxy(proxy()));
    assert_eq!(
        decide(&direct, REPLAYABLE, event),
        Action::Move(Route::Proxy(proxy()))
    );
}

#[test]
fn head_complete_later_request_every_answer_read_leaves_the_proxy() {
    let event = later_head(true, ORIGIN);
    assert_eq!(
        decide(&wrote(proxied()), REPLAYABLE, event),
        Action::Move(ORIGIN)
    );
}

#[test]
fn head_complete_behind_an_unread_answer_keeps_the_peer() {
    assert_eq!(
        decide(&wrote(proxied()), REPLAYABLE, later_head(false, ORIGIN)),
        Action::Proceed
    );
    let direct = wrote(state(Phase::Direct));
    let back = later_head(false, Route::Proxy(proxy()));
    assert_eq!(decide(&direct, REPLAYABLE, back), Action::Proceed);
}

#[test]
fn head_complete_later_https_request_every_answer_read_origin_wanted_hands_to_tls() {
    let event = later_head(true, ORIGIN);
    assert_eq!(
        decide(&https(wrote(proxied())), REPLAYABLE, event),
        Action::HandToTls(Reason::AtRequestBoundary)
    );
}

#[test]
fn head_complete_later_https_request_keeps_its_session_when_tls_cannot_move_or_busy() {
    let tls = https(wrote(proxied()));
    assert_eq!(
        decide(&tls, TLS_STUCK, later_head(true, ORIGIN)),
        Action::Proceed
    );
    assert_eq!(
        decide(&tls, REPLAYABLE, later_head(false, ORIGIN)),
        Action::Proceed
    );
    // A blind session's boundaries are not known: it stays.
    let blind = https(wrote(state(Phase::ProxiedBlind(proxy()))));
    assert_eq!(
        decide(&blind, REPLAYABLE, later_head(true, ORIGIN)),
        Action::Proceed
    );
}

fn is_return_from_real_tls(state: &State, facts: Facts, event: Event) -> bool {
    state.phase == Phase::TlsOwned
        && state.https
        && facts.real_tls_followed
        && event == later_head(true, Route::Proxy(proxy()))
}

#[test]
fn head_complete_later_request_every_answer_read_proxy_wanted_tls_owned_followed_moves_to_the_proxy(
) {
    let owned = https(wrote(state(Phase::TlsOwned)));
    let to_proxy = Route::Proxy(proxy());
    assert_eq!(
        decide(&owned, REAL_TLS_FOLLOWED, later_head(true, to_proxy)),
        Action::Move(to_proxy)
    );
    assert!(Phase::TlsOwned.may_become(Phase::TlsOwned.after_move(to_proxy)));
}

#[test]
fn tls_owned_stays_unless_every_condition_of_the_return_holds() {
    let owned = https(wrote(state(Phase::TlsOwned)));
    let to_proxy = Route::Proxy(proxy());
    let cases = [
        // Not followed (a real session the TLS layer cannot end), an answer unread, the first
        // request (a proxy that just failed is not tried twice), the origin wanted.
        (owned, REPLAYABLE, later_head(true, to_proxy)),
        (owned, REAL_TLS_FOLLOWED, later_head(false, to_proxy)),
        (owned, REAL_TLS_FOLLOWED, head(true, Some(to_proxy))),
        (owned, REAL_TLS_FOLLOWED, later_head(true, ORIGIN)),
        (
            wrote(state(Phase::TlsOwned)),
            REAL_TLS_FOLLOWED,
            later_head(true, to_proxy),
        ),
    ];
    for (state, facts, event) in cases {
        assert_eq!(
            decide(&state, facts, event),
            Action::Proceed,
            "{state:?} {facts:?} {event:?}"
        );
    }
}

#[test]
fn head_complete_where_the_socket_already_is_proceeds() {
    let event = later_head(true, Route::Proxy(proxy()));
    assert_eq!(
        decide(&wrote(proxied()), REPLAYABLE, event),
        Action::Proceed
    );
    let direct = wrote(state(Phase::Direct));
    assert_eq!(
        decide(&direct, REPLAYABLE, later_head(true, ORIGIN)),
        Action::Proceed
    );
}
