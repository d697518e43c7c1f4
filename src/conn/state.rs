//! What a connection is doing: one `Phase`, plus the few facts learned about it, held
//! together under one short lock (`Conn::state`). Nothing else says where a socket is or
//! who may touch it.
//!
//! Phases and their legal changes (`Phase::may_become`; anything else is a bug, caught in
//! debug builds and by the unit tests below):
//!
//! | from | to | when |
//! |---|---|---|
//! | Connecting | Proxied | the connect to the proxy succeeded |
//! | Connecting | Direct | the filter or failsafe said direct, or the proxy connect failed |
//! | Proxied, ProxiedBlind | Direct | a first request, or a TLS server name, the filter sends direct; the proxy lost before the program wrote |
//! | Direct | Proxied | a first request the filter diverts (moved before it leaves) |
//! | Proxied | ProxiedBlind | the proxy's answers stopped being HTTP, or a failure could not be hidden |
//! | Proxied | Leaving | handed to stdio while a request is unanswered |
//! | Proxied, ProxiedBlind, Leaving | Recovering | a proxy failure to hide (replay) or a retry it asked for |
//! | Recovering | Proxied | a retry was resent to the proxy |
//! | Recovering | Direct | the unanswered requests were resent to the origin |
//! | any (TlsOwned: see below) | Passthrough | not HTTP, server speaks first, stdio, io_uring, untrackable fd, a move that failed, the program shut its reading |
//! | Proxied, ProxiedBlind, Leaving, Recovering, Direct, Passthrough | TlsOwned | an https session left the proxy: real TLS at the origin takes the socket; or (Direct) the program's own TLS starts on a socket direct because of the failsafe, followed |
//! | TlsOwned | Proxied | a later request, every earlier answer read, that the failsafe lets the proxy have: the followed real session ended (close_notify), the program's virtual again |
//! | TlsOwned | Passthrough | that move could not connect anywhere (the kernel's errors from then on) |
//! | Passthrough | — | final |
//!
//! A recovery owns the socket through its phase: while `Recovering`, the program's reads
//! and writes wait in the kernel (`Conn::recovery`, a futex raised exactly while the phase
//! is `Recovering`) or answer EAGAIN; no lock is held across its connect or delay.

use crate::runtime::Route;
use std::net::SocketAddr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Tracked; the program's connect (to the proxy, or left alone) is under way.
    Connecting,
    /// At Lunar Proxy: requests carry Lunar's headers; the proxy's answers are checked
    /// (a failure is hidden, a retry honoured).
    Proxied(SocketAddr),
    /// At Lunar Proxy, its answers no longer followed (they were not HTTP, or a failure
    /// could not be hidden): delivered as they come.
    ProxiedBlind(SocketAddr),
    /// At Lunar Proxy until the unanswered request is answered; the next request goes to
    /// the origin for good (the program handed the socket to stdio).
    Leaving(SocketAddr),
    /// At the original destination; request heads are still followed (a first request
    /// can move it to the proxy).
    Direct,
    /// A recovery (replay to the origin, retry through the proxy) owns the socket until
    /// it has resent the unanswered requests; `Route`: where it is going.
    Recovering(Route),
    /// Bytes only, wherever the socket is; nothing more to decide.
    Passthrough(Route),
    /// A real TLS session of the TLS layer owns the socket, at the origin: the program's
    /// plaintext path neither reads nor writes it (the TLS layer shows this layer the
    /// plaintext, `tls_plain`, so that a later request can bring it back to the proxy).
    TlsOwned,
}

impl Phase {
    /// The proxy the socket is connected to, in the phases that are at the proxy.
    pub fn proxy(self) -> Option<SocketAddr> {
        match self {
            Phase::Proxied(proxy) | Phase::ProxiedBlind(proxy) | Phase::Leaving(proxy) => {
                Some(proxy)
            }
            Phase::Recovering(Route::Proxy(proxy)) | Phase::Passthrough(Route::Proxy(proxy)) => {
                Some(proxy)
            }
            _ => None,
        }
    }

    /// Where the socket is (or is going), as a route.
    pub fn route(self) -> Route {
        match self {
            Phase::Recovering(route) | Phase::Passthrough(route) => route,
            other => other.proxy().map_or(Route::Origin, Route::Proxy),
        }
    }

    /// The program's view of the peer differs from the socket's (what `getpeername` hides):
    /// at the proxy, or owned by a recovery (between peers).
    pub fn diverted(self) -> bool {
        matches!(self, Phase::Recovering(_)) || self.proxy().is_some()
    }

    /// The proxy's answers are judged before the program reads them.
    pub fn checks_answers(self) -> bool {
        matches!(self, Phase::Proxied(_) | Phase::Leaving(_))
    }

    /// The answers are followed (judged at the proxy, only counted at the origin), so a
    /// request boundary with nothing unanswered can be told: where a request may move
    /// the socket.
    pub fn follows_answers(self) -> bool {
        matches!(self, Phase::Proxied(_) | Phase::Leaving(_) | Phase::Direct)
    }

    /// A recovery owns the socket (`recovery`): its peer's end is the recovery's to meet.
    pub fn is_recovering(self) -> bool {
        matches!(self, Phase::Recovering(_))
    }

    /// The program's bytes go through the request engine.
    pub fn follows_requests(self) -> bool {
        matches!(
            self,
            Phase::Proxied(_) | Phase::ProxiedBlind(_) | Phase::Leaving(_) | Phase::Direct
        )
    }

    /// The phase the socket is in after a move to `route` that succeeded: a recovery or a
    /// passthrough keeps its phase, at the new place.
    pub fn after_move(self, route: Route) -> Phase {
        match (self, route) {
            (Phase::Passthrough(_), route) => Phase::Passthrough(route),
            // A move back to the proxy that ended at the origin: a real session takes the
            // socket again there.
            (Phase::TlsOwned, Route::Origin) => Phase::TlsOwned,
            (Phase::Recovering(_), route) => Phase::Recovering(route),
            (_, Route::Proxy(proxy)) => Phase::Proxied(proxy),
            (_, Route::Origin) => Phase::Direct,
        }
    }

    /// The phase once the proxy's answers cannot be followed (not HTTP, a failure that
    /// cannot be hidden): delivered as they come. A socket `Leaving` at its next request
    /// boundary cannot tell that boundary any more: bytes only, where it is.
    pub fn blind(self) -> Phase {
        match self {
            Phase::Proxied(proxy) => Phase::ProxiedBlind(proxy),
            Phase::Leaving(proxy) => Phase::Passthrough(Route::Proxy(proxy)),
            // The origin's answers: with their ends unknown, requests cannot be moved.
            Phase::Direct => Phase::Passthrough(Route::Origin),
            other => other,
        }
    }

    /// The phase after a recovery resent its requests: where the socket now is.
    pub fn after_recovery(self) -> Phase {
        match self {
            Phase::Recovering(Route::Proxy(proxy)) => Phase::Proxied(proxy),
            Phase::Recovering(Route::Origin) => Phase::Direct,
            other => other,
        }
    }

    /// Whether `self` may change to `to` (the table in the module doc).
    pub fn may_become(self, to: Phase) -> bool {
        use Phase::*;
        if self == to {
            return true;
        }
        match (self, to) {
            (Passthrough(_), TlsOwned) => true,
            (TlsOwned, Proxied(_) | Passthrough(_)) => true,
            (Passthrough(_) | TlsOwned, _) => false,
            (_, Passthrough(_)) => true,
            (Connecting, Proxied(_) | Direct) => true,
            (Proxied(_) | ProxiedBlind(_), Direct) => true,
            (Direct, Proxied(_)) => true,
            (Proxied(_), ProxiedBlind(_) | Leaving(_)) => true,
            (Proxied(_) | ProxiedBlind(_) | Leaving(_), Recovering(_)) => true,
            (Recovering(_), Proxied(_) | Direct | Recovering(_)) => true,
            (Proxied(_) | ProxiedBlind(_) | Leaving(_) | Recovering(_) | Direct, TlsOwned) => true,
            _ => false,
        }
    }
}

/// A connection's phase and what it learned; copied out whole under the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct State {
    pub phase: Phase,
    /// The program has written to this connection: a read before any write is a protocol
    /// whose server speaks first, and a proxy lost before it is a connect-level failure.
    pub wrote: bool,
    /// A virtual TLS session runs on this socket: its plaintext is https, and it leaves
    /// the proxy only into a real TLS session (`TlsOwned`), never in clear text.
    pub https: bool,
    /// The fd was confirmed to be this socket since its connect (by the check at a request
    /// head or before the first read).
    pub identity_checked: bool,
    /// Changes twice with each move of the socket (odd while it is between peers): a
    /// reader tells an error that belongs to the old peer by it.
    pub moves: u32,
    /// The program shut the socket for writing (`program_shutdown`).
    pub write_shut: bool,
    /// The connect error of a move that failed (0: none): the program's next read or write
    /// returns it, as its own connect to the origin would have (`Conn::take_left_error`),
    /// not the unconnected socket's ENOTCONN or EPIPE; a call that reported it already
    /// takes it.
    pub left_error: i32,
}

impl State {
    /// Whether the proxy's end of this socket (a reset, a close) is the library's to deal
    /// with outside a read, in a wait or a shutdown: a plain-http connection at the proxy
    /// whose requests are followed (https recovers inside the program's TLS read).
    pub fn proxy_end_is_ours(&self) -> bool {
        self.phase.proxy().is_some() && self.phase.follows_requests() && !self.https
    }

    /// An https virtual session at the proxy: its failures are met, and recovered, inside
    /// the program's own TLS calls, in its thread.
    pub fn proxy_end_in_tls_calls(&self) -> bool {
        self.phase.proxy().is_some() && self.phase.follows_requests() && self.https
    }

    /// Whether what was met at move count `seen_at` may belong to a peer the socket has
    /// left: a move was under way then (the count odd), or one happened since.
    pub fn moved_since(&self, seen_at: u32) -> bool {
        seen_at % 2 == 1 || self.moves != seen_at
    }

    pub const fn new() -> State {
        State {
            phase: Phase::Connecting,
            wrote: false,
            https: false,
            identity_checked: false,
            moves: 0,
            write_shut: false,
            left_error: 0,
        }
    }
}

impl Default for State {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub fn proxy() -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], 8000))
    }

    /// One of each phase (both routes where a phase has one).
    pub fn every_phase() -> Vec<Phase> {
        let p = proxy();
        vec![
            Phase::Connecting,
            Phase::Proxied(p),
            Phase::ProxiedBlind(p),
            Phase::Leaving(p),
            Phase::Direct,
            Phase::Recovering(Route::Proxy(p)),
            Phase::Recovering(Route::Origin),
            Phase::Passthrough(Route::Proxy(p)),
            Phase::Passthrough(Route::Origin),
            Phase::TlsOwned,
        ]
    }

    #[test]
    fn final_phases_stay_final() {
        for to in every_phase() {
            // A real TLS session of ours returns to the proxy, or the kernel's.
            let returns = matches!(to, Phase::Proxied(_) | Phase::Passthrough(_));
            if !matches!(to, Phase::TlsOwned) {
                assert_eq!(
                    Phase::TlsOwned.may_become(to),
                    returns || matches!(to, Phase::TlsOwned),
                    "{to:?}"
                );
            }
            if !matches!(to, Phase::Passthrough(_) | Phase::TlsOwned) {
                assert!(!Phase::Passthrough(Route::Origin).may_become(to), "{to:?}");
            }
        }
    }

    #[test]
    fn nothing_returns_to_connecting() {
        for from in every_phase() {
            assert_eq!(
                from.may_become(Phase::Connecting),
                matches!(from, Phase::Connecting)
            );
        }
    }

    #[test]
    fn only_phases_at_the_proxy_start_a_recovery() {
        for from in every_phase() {
            let may = from.may_become(Phase::Recovering(Route::Origin));
            let at_proxy = matches!(
                from,
                Phase::Proxied(_) | Phase::ProxiedBlind(_) | Phase::Leaving(_)
            );
            assert_eq!(may, at_proxy || matches!(from, Phase::Recovering(_)));
        }
    }

    #[test]
    fn tls_is_owned_only_after_being_virtual_at_the_proxy() {
        assert!(!Phase::Connecting.may_become(Phase::TlsOwned));
        assert!(Phase::Proxied(proxy()).may_become(Phase::TlsOwned));
        assert!(Phase::Recovering(Route::Origin).may_become(Phase::TlsOwned));
    }

    #[test]
    fn where_each_phase_is() {
        let p = proxy();
        assert_eq!(Phase::Proxied(p).route(), Route::Proxy(p));
        assert_eq!(Phase::Leaving(p).route(), Route::Proxy(p));
        assert_eq!(Phase::Direct.route(), Route::Origin);
        assert_eq!(Phase::TlsOwned.route(), Route::Origin);
        assert_eq!(Phase::Connecting.route(), Route::Origin);
        assert!(Phase::Recovering(Route::Origin).diverted());
        assert!(!Phase::Passthrough(Route::Origin).diverted());
        assert!(Phase::Passthrough(Route::Proxy(p)).diverted());
        assert!(!Phase::ProxiedBlind(p).checks_answers());
        assert!(Phase::Leaving(p).checks_answers());
        assert_eq!(
            Phase::Passthrough(Route::Proxy(p)).after_move(Route::Origin),
            Phase::Passthrough(Route::Origin)
        );
        assert_eq!(
            Phase::Recovering(Route::Proxy(p)).after_move(Route::Origin),
            Phase::Recovering(Route::Origin)
        );
        assert_eq!(Phase::Leaving(p).after_move(Route::Origin), Phase::Direct);
    }
}
