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
    verdicts: &mut VerdictMemo,
) -> Result<Settled, c_int> {
    let current = conn.peer();
    let Some(runtime) = runtime::get() else {
        return Ok(Settled::At(current));
    };
    let idle = !first_request && conn.responses.lock().every_answer_read();
    if !first_request && !idle {
        return Ok(Settled::At(current));
    }
    let verdict = verdicts.judge(conn, head, runtime);
    if first_request && matches!(verdict, Verdict::Divert(_)) == conn.filter_diverts {
        return Ok(Settled::At(current));
    }
    let (wanted, why) = runtime.route(verdict);
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
pub(super) struct VerdictMemo {
    /// `None`: nothing kept yet.
    verdict: Option<Verdict>,
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
        let host = head.host.map(str::as_bytes);
        if let Some(verdict) = self.verdict {
            let same_host = match host {
                Some(host) => self.host.get(..self.host_len) == Some(host),
                None => self.host_len == NO_HOST,
            };
            if same_host && self.lunar_allow == head.lunar_allow {
                return verdict;
            }
        }
        let verdict = judge(conn, head, runtime);
        self.verdict = None;
        match host {
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
