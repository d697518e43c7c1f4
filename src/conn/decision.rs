//! What `decide` speaks: the events the I/O layer reports, the facts it gathers, and the
//! actions (with their reasons) it is told to carry out.

use crate::runtime::Route;
use std::time::Duration;

/// What happened on a connection, with the facts the decision needs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Event {
    /// The program begins a new request (its first byte is about to be taken).
    RequestBegins,
    /// A request head is complete. `first_request`: nothing was sent on the connection
    /// before it. `idle`: every earlier request's answer has been read completely.
    /// `wanted`: where the filter (this head's `Host`, `x-lunar-allow`) and the failsafe
    /// send a request like this one now (`None`: not asked).
    HeadComplete {
        first_request: bool,
        idle: bool,
        wanted: Option<Route>,
    },
    /// The program's bytes are not HTTP/1.x. `first_bytes`: no request came before.
    NotHttp { first_bytes: bool },
    /// A send of the program's bytes to the peer failed with `errno`.
    SendFailed { errno: i32 },
    /// The proxy's next answer, looked at before the program reads it.
    Answer(Answer),
    /// A read, a wait or a shutdown met the peer's end (EOF, reset) with the request
    /// stream in this state. `seen_at`: the socket's move count (`State::moves`) taken
    /// before the end was met, which tells the end of a peer the socket has left since.
    PeerLost {
        unanswered: bool,
        at_boundary: bool,
        /// The end came inside an answer whose length or chunks say more is due (not one
        /// whose body ends at the close).
        cut_short: bool,
        seen_at: u32,
    },
    /// The program read SO_ERROR and found `error`.
    ConnectErrorSeen { error: i32 },
    /// The program waits to read before it wrote. `looks_only`: a short wait for input
    /// alone, which a TLS client makes before it writes (wget).
    ReadBeforeWrite { looks_only: bool },
    /// The TLS session's server name is known; `diverted`: the filter sends that name to
    /// the proxy.
    ServerName { diverted: bool },
    /// The program's bytes may leave without meeting our hooks. `idle`: nothing is
    /// unanswered and no request is half written.
    Unseen { how: Unseen, idle: bool },
}

/// The proxy's next answer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Answer {
    /// The proxy closed the connection before a complete answer.
    Closed,
    /// The proxy reset the connection before a complete answer.
    Reset,
    /// A head with `x-lunar-error`.
    LunarError,
    /// A head asking for a retry; `after`: the delay, when within the configured bounds
    /// (`None`: past them, the answer goes to the program).
    RetryAsked { after: Option<Duration> },
    /// A head for the program (the read path delivers it without asking).
    #[allow(dead_code)]
    Head,
    /// Not an HTTP answer, or a head too large to judge (the read path stops checking
    /// without asking: `next_answer::deliver_as_is`).
    #[allow(dead_code)]
    NotHttp,
}

/// Ways bytes can leave unseen (`bypass`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unseen {
    Stdio,
    UntrackableFd,
    IoUring,
}

/// Facts about the connection's buffers and TLS that the I/O layer reads for a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Facts {
    /// Every unanswered request can be sent again whole: its copy is within
    /// LUNAR_REPLAY_MAX_BYTES, and the program has read nothing of its answer yet (an
    /// answer begun and then replaced would reach the program twice).
    pub replayable: bool,
    /// For https: the TLS layer can replace the virtual session by a real one.
    pub tls_movable: bool,
    /// For https at the origin (`TlsOwned`): the TLS layer follows the real session there
    /// (one it made, a fallback, or the program's own that went direct at connect because
    /// of the failsafe), and can end it cleanly and serve the program virtually again.
    pub real_tls_followed: bool,
}

/// What the I/O layer is to do.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Action {
    /// Nothing changes: the bytes go where the socket is, the answer to the program.
    Proceed,
    /// Move the socket to `Route` before the bytes leave.
    Move(Route),
    /// Move the socket to the origin and pass bytes only from then on.
    GoDirect(Reason),
    /// Pass bytes only from now on, where the socket is.
    Passthrough(Reason),
    /// Move to the origin and resend the unanswered requests as the program wrote them
    /// (for https inside a real TLS session): a proxy failure hidden.
    Replay,
    /// Reconnect to the proxy and, after `after`, resend the unanswered requests with
    /// `x-lunar-sequence-id`.
    Retry { after: Duration },
    /// Move to the origin, where the TLS layer's real session takes the socket.
    HandToTls(Reason),
    /// The proxy was lost before the program wrote: a connect-level failure, counted; the
    /// socket moves to the origin (for https: real TLS there).
    ConnectFailed,
    /// A proxy failure (`counted`), or a retry it asked for, that cannot be hidden (a
    /// request past the replay cap, a TLS session that cannot move): the program sees the
    /// proxy's answer or error; its answers are not followed any more.
    Unhideable { counted: bool },
    /// The proxy's answers are not followed any more: the program reads them as they are.
    DeliverBlind,
    /// Stays at the proxy for the unanswered request; the next request goes direct.
    LeaveAtNextRequest,
    /// The program's call fails with this errno.
    Report(i32),
    /// The end met was the old peer's (another thread moved the socket meanwhile): the
    /// program reads on, from the peer the socket has now.
    ReadOn,
}

/// Why a connection leaves the proxy or is left alone: the DEBUG line says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    NotHttp,
    ServerSpeaksFirst,
    FilterAtFirstRequest,
    AtRequestBoundary,
    HandedToStdio,
    UntrackableFd,
    IoUring,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Reason::NotHttp => "not HTTP/1.x",
            Reason::ServerSpeaksFirst => "server speaks first: not HTTP",
            Reason::FilterAtFirstRequest => "the first request's headers",
            Reason::AtRequestBoundary => "routed at a request boundary",
            Reason::HandedToStdio => "handed to stdio",
            Reason::UntrackableFd => "an fd that cannot be tracked",
            Reason::IoUring => "io_uring in use",
        })
    }
}
