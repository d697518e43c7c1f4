//! Where a request goes: each request head is routed as a new connection would be (the
//! filter, with the head's `Host` and `x-lunar-allow`, and the failsafe), and the socket
//! moves before the head leaves when that calls for another peer (`write`, `tls_plain`).

use super::decide::{decide, Action, Event, Facts};
use super::{lunar_headers, Conn};
use crate::http::RequestHead;
use crate::policy::filter::{Destination, Verdict};
use crate::runtime::{self, Route, Runtime};
use libc::c_int;

/// Where a request head goes.
#[derive(Clone, Copy)]
pub(super) enum Settled {
    /// Where the socket now is.
    At(Route),
    /// To the origin inside a real TLS session (https), the head its first bytes.
    HandToTls,
}

/// Each request is routed as a new connection would be: the filter (its `Host`, its
/// `x-lunar-allow`) and the failsafe. When that calls for another peer than the socket's
/// and nothing sent before is unanswered, the socket moves before the head leaves (for
/// the first request, only when the head changes the filter's verdict of the connect,
/// made a moment ago). A request behind an unread answer keeps the connection's peer.
pub(super) fn settle_route(
    conn: &Conn,
    fd: c_int,
    head: &RequestHead<'_>,
    first_request: bool,
    memo: &mut VerdictMemo,
) -> Result<Settled, c_int> {
    let current = conn.peer();
    let Some(runtime) = runtime::get() else {
        return Ok(Settled::At(current));
    };
    if !first_request && current.is_proxy() && memo.still_proxied(head, runtime) {
        // A keep-alive client's usual request: at the proxy, where the route sends it.
        return Ok(Settled::At(current));
    }
    if first_request && judged_at_connect(conn, head) {
        // A new connection's usual first request: the verdict is the connect's.
        return Ok(Settled::At(current));
    }
    let idle = !first_request && conn.responses.lock().every_answer_read();
    if !first_request && !idle {
        return Ok(Settled::At(current));
    }
    let verdict = memo.judge(conn, head, runtime);
    if first_request && matches!(verdict, Verdict::Divert(_)) == conn.filter_diverts {
        return Ok(Settled::At(current));
    }
    // Read before the route looks at the failsafe: a cooldown starting meanwhile changes
    // it, so the memo never keeps a mark the route did not see.
    let mark = runtime.failsafe.cooldown_mark();
    let (wanted, why) = runtime.route(verdict);
    memo.note_route(wanted, mark);
    let event = Event::HeadComplete {
        first_request,
        idle,
        wanted: Some(wanted),
    };
    let state = conn.state();
    let when = match (first_request, state.https) {
        (true, _) => "moved at first request",
        (false, false) => "moved at a request boundary",
        (false, true) => "moved at a request boundary; https: a real TLS session there",
    };
    // Whether the TLS layer can make a real session is asked only where it matters.
    let facts = if state.https && !first_request {
        conn.facts(fd)
    } else {
        Facts::default()
    };
    match decide(&state, facts, event) {
        Action::Move(route) => {
            move_for_request(conn, fd, route, why, when, runtime).map(Settled::At)
        }
        Action::HandToTls(_) => move_for_request(conn, fd, Route::Origin, why, when, runtime)
            .map(|_| Settled::HandToTls),
        _ => Ok(Settled::At(current)),
    }
}

/// Whether the filter's verdict on `head` is the one its connection's connect got: the
/// same name (the `Host` the name the program resolved, already bare and in lower case,
/// as `judge` makes it; or neither) and no `x-lunar-allow`.
fn judged_at_connect(conn: &Conn, head: &RequestHead<'_>) -> bool {
    let bare = |host: &str| {
        !host
            .bytes()
            .any(|b| matches!(b, b':' | b'[' | b']') || b.is_ascii_uppercase())
    };
    head.lunar_allow.is_none()
        && match (head.host, conn.name.as_deref()) {
            (Some(host), Some(name)) => host == name && bare(host),
            (None, None) => true,
            _ => false,
        }
}

/// The filter's verdict on a request like `head` (its `Host`, its `x-lunar-allow`) to
/// this connection's destination, before the failsafe has its say.
fn judge(conn: &Conn, head: &RequestHead<'_>, runtime: &Runtime) -> Verdict {
    let host_name = head.host.map(lunar_headers::host_name);
    let name = host_name.as_deref().or(conn.name.as_deref());
    let destination = Destination {
        ip: crate::addr::canonical(conn.original).ip(),
        name,
    };
    runtime.judge(&destination, head.lunar_allow)
}

/// The filter's verdict on a connection's last request head, kept with what it depends on
/// that can change from one request to the next: the head's `Host` value and
/// `x-lunar-allow` (the connection's address and name, and the configuration, do not
/// change). A keep-alive client sends the same `Host` on every request: the filter (the
/// host name taken apart, the lists matched) runs once per connection, not per request.
///
/// Also kept: that the route of that verdict was the proxy, with the failsafe's cooldown
/// mark then. While the mark is the same, the route is still the proxy (a handshake that
/// succeeded holds for good), so a request like the last one on a connection at the
/// proxy stays there without routing: no clock read, no lock, no decision (`decide`
/// moves a connection at the proxy only when the route leaves it).
pub(super) struct VerdictMemo {
    /// `None`: nothing kept yet.
    verdict: Option<Verdict>,
    /// The cooldown mark when `verdict`'s route was last the proxy; `None`: not known.
    proxied_at_mark: Option<u64>,
    lunar_allow: Option<bool>,
    /// The `Host` value, up to `HOST_ROOM` bytes (a longer one is judged every time):
    /// inline, as an allocation per connection would cost every `Connection: close`
    /// request.
    host: [u8; HOST_ROOM],
    /// `host`'s length; `NO_HOST` for a head without `Host`.
    host_len: usize,
}

const HOST_ROOM: usize = 64;
const NO_HOST: usize = usize::MAX;

impl Default for VerdictMemo {
    fn default() -> Self {
        VerdictMemo {
            verdict: None,
            proxied_at_mark: None,
            lunar_allow: None,
            host: [0; HOST_ROOM],
            host_len: NO_HOST,
        }
    }
}

impl VerdictMemo {
    /// `judge`'s verdict on `head`, judged again only when the head differs from the last
    /// one in what the verdict depends on.
    pub(super) fn judge(
        &mut self,
        conn: &Conn,
        head: &RequestHead<'_>,
        runtime: &Runtime,
    ) -> Verdict {
        if let Some(verdict) = self.verdict.filter(|_| self.same_as_kept(head)) {
            return verdict;
        }
        let verdict = judge(conn, head, runtime);
        self.verdict = None;
        self.proxied_at_mark = None;
        match head.host.map(str::as_bytes) {
            None => self.host_len = NO_HOST,
            Some(host) if host.len() <= HOST_ROOM => {
                self.host[..host.len()].copy_from_slice(host);
                self.host_len = host.len();
            }
            Some(_) => return verdict,
        }
        self.lunar_allow = head.lunar_allow;
        self.verdict = Some(verdict);
        verdict
    }

    /// Records where the route sent the kept verdict, the failsafe's mark read before it.
    fn note_route(&mut self, wanted: Route, mark: u64) {
        self.proxied_at_mark = (self.verdict.is_some() && wanted.is_proxy()).then_some(mark);
    }

    /// Whether a request like `head` is routed to the proxy, as the last one was: the
    /// same verdict, and no cooldown started since.
    fn still_proxied(&self, head: &RequestHead<'_>, runtime: &Runtime) -> bool {
        self.proxied_at_mark == Some(runtime.failsafe.cooldown_mark()) && self.same_as_kept(head)
    }

    /// `head` has the kept verdict's `Host` and `x-lunar-allow`.
    fn same_as_kept(&self, head: &RequestHead<'_>) -> bool {
        let same_host = match head.host {
            Some(host) => self.host.get(..self.host_len) == Some(host.as_bytes()),
            None => self.host_len == NO_HOST,
        };
        same_host && self.lunar_allow == head.lunar_allow
    }
}

fn move_for_request(
    conn: &Conn,
    fd: c_int,
    wanted: Route,
    why: runtime::Why,
    when: &str,
    runtime: &Runtime,
) -> Result<Route, c_int> {
    let ended = conn.move_to(fd, wanted, runtime)?;
    match ended {
        Route::Proxy(proxy) => log::debug!("{} -> proxy {proxy} ({why}; {when})", conn.label()),
        Route::Origin => log::debug!("{} -> direct ({why}; {when})", conn.label()),
    }
    Ok(ended)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::config::{self, Setup};
    use crate::policy::failsafe::Failsafe;
    use crate::proxy::Proxy;
    use std::net::SocketAddr;

    fn runtime_blocking(name: &str) -> Runtime {
        let lookup = |variable: &str| match variable {
            "LUNAR_PROXY_HOST" => Some(b"proxy.lunar.test:8000".to_vec()),
            "LUNAR_BLOCK_LIST" => Some(name.as_bytes().to_vec()),
            _ => None,
        };
        let (Setup::Active(config), _) = config::parse(lookup, &mut |_| {}) else {
            panic!("an active configuration");
        };
        Runtime {
            failsafe: Failsafe::new(config.cooldown_attempts, config.cooldown_secs),
            proxy: Proxy::new(config.proxy.clone(), config.handshake_port, None),
            config: *config,
        }
    }

    #[test]
    fn a_proxy_route_is_kept_until_the_head_or_the_failsafe_changes() {
        let runtime = runtime_blocking("blocked.example.test");
        let conn = Conn::new(SocketAddr::from(([203, 0, 113, 10], 80)), None, true, 0);
        let head = |host| RequestHead {
            host: Some(host),
            ..RequestHead::EMPTY
        };
        let proxy = Route::Proxy(SocketAddr::from(([10, 0, 0, 2], 8000)));
        let api = head("api.example.test");
        let mut memo = VerdictMemo::default();
        memo.judge(&conn, &api, &runtime);
        assert!(!memo.still_proxied(&api, &runtime), "no route seen yet");

        memo.note_route(Route::Origin, runtime.failsafe.cooldown_mark());
        assert!(
            !memo.still_proxied(&api, &runtime),
            "the route was the origin"
        );

        memo.note_route(proxy, runtime.failsafe.cooldown_mark());
        assert!(memo.still_proxied(&api, &runtime));
        assert!(!memo.still_proxied(&head("other.example.test"), &runtime));
        let allowed = RequestHead {
            lunar_allow: Some(true),
            ..api
        };
        assert!(!memo.still_proxied(&allowed, &runtime));

        // Another head judged: the route kept was the old verdict's.
        memo.judge(&conn, &head("blocked.example.test"), &runtime);
        assert!(!memo.still_proxied(&api, &runtime));
        memo.judge(&conn, &api, &runtime);
        assert!(!memo.still_proxied(&api, &runtime));

        // A cooldown starting (the mark read before it) ends what was kept.
        memo.note_route(proxy, runtime.failsafe.cooldown_mark());
        while runtime
            .failsafe
            .record_failure(crate::policy::failsafe::now_ms())
            != crate::policy::failsafe::Outcome::CooldownStarted
        {}
        assert!(!memo.still_proxied(&api, &runtime));

        // A host too long to keep is routed every time.
        let long = format!("{}.example.test", "a".repeat(60));
        memo.judge(&conn, &head(&long), &runtime);
        memo.note_route(proxy, runtime.failsafe.cooldown_mark());
        assert!(!memo.still_proxied(&head(&long), &runtime));
    }

    #[test]
    fn a_first_request_judged_at_connect_has_the_connects_verdict() {
        let runtime = runtime_blocking("blocked.example.test");
        let original = SocketAddr::from(([203, 0, 113, 10], 80));
        let mut taken = 0;
        for name in [
            None,
            Some("api.example.test"),
            Some("blocked.example.test"),
            Some("BLOCKED.example.test"),
            Some("blocked.example.test:80"),
            Some("[blocked.example.test]"),
        ] {
            let conn = Conn::new(original, name.map(std::sync::Arc::from), true, 0);
            let at_connect = runtime.judge(
                &Destination {
                    ip: original.ip(),
                    name,
                },
                None,
            );
            let mut hosts = vec![None, Some("api.example.test"), Some("blocked.example.test")];
            if !hosts.contains(&name) {
                hosts.push(name);
            }
            for host in hosts {
                for lunar_allow in [None, Some(true), Some(false)] {
                    let head = RequestHead {
                        host,
                        lunar_allow,
                        ..RequestHead::EMPTY
                    };
                    if judged_at_connect(&conn, &head) {
                        taken += 1;
                        assert_eq!(
                            judge(&conn, &head, &runtime),
                            at_connect,
                            "{name:?} {host:?}"
                        );
                    }
                }
            }
        }
        assert_eq!(
            taken, 3,
            "no name and no Host, and the two bare names as Host"
        );
    }

    #[test]
    fn the_memo_answers_as_the_filter_for_every_head() {
        let runtime = runtime_blocking("blocked.example.test");
        let conn = Conn::new(SocketAddr::from(([203, 0, 113, 10], 80)), None, true, 0);
        let long = format!("{}.example.test", "a".repeat(60));
        let blocked = Verdict::Direct(crate::policy::filter::Reason::BlockList);
        let mut memo = VerdictMemo::default();
        for (host, lunar_allow) in [
            (Some("api.example.test"), None),
            (Some("api.example.test"), None),
            (Some("blocked.example.test"), None),
            (Some("BLOCKED.example.test:80"), None),
            (Some("blocked.example.test"), Some(true)),
            (Some("blocked.example.test"), Some(true)),
            (Some("api.example.test"), Some(false)),
            (Some("api.example.test"), None),
            (None, None),
            (None, None),
            (Some(long.as_str()), None),
            (Some(long.as_str()), None),
            (Some("blocked.example.test"), None),
        ] {
            let head = RequestHead {
                host,
                lunar_allow,
                ..RequestHead::EMPTY
            };
            let verdict = memo.judge(&conn, &head, &runtime);
            assert_eq!(
                verdict,
                judge(&conn, &head, &runtime),
                "{host:?} {lunar_allow:?}"
            );
            let expect_blocked = host
                .is_some_and(|h| h.to_ascii_lowercase().starts_with("blocked"))
                && lunar_allow.is_none();
            assert_eq!(
                verdict == blocked,
                expect_blocked,
                "{host:?} {lunar_allow:?}"
            );
        }
    }
}
