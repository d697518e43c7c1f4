//! liblunar_intercept: an LD_PRELOAD library that sends a program's outbound HTTP through
//! Lunar Proxy, and straight to its destination whenever the proxy cannot serve it.
//!
//! The data path, in the order a call meets it:
//! `hooks` (the exported libc symbols) -> `conn::fdtable` (is this fd ours?) -> `conn` (one
//! intercepted socket) -> `http` (the sans-IO request engine). Decisions come from
//! `policy` (configuration, filter, failsafe) and `proxy` (address, handshake), all
//! reached through `runtime`; `sys` is libc's own functions. For https, `tls` sits above
//! the socket hooks: the program's TLS library calls, answered for sessions on diverted
//! sockets, whose plaintext then takes the same path as port 80.
//!
//! Layers call downward only: a module refers (`crate::name`) only to modules on lines
//! below its own in this table, top to bottom (`tests/layers.rs` checks it):
//!
//! ```text
//! hooks, fork, explain, doctor, inject: entry points: program calls, libc's fork handler, the command, the loader (language hooks)
//! tls:         https one level up: the program's TLS sessions
//! conn:        one intercepted socket; `conn::fdtable`: which fds are connections
//! runtime:     the process-wide state, built at the first call that needs it
//! proxy, logger, uuid, names
//! http, policy, guard, race_probe: race_probe only in test builds (pauses)
//! sync, int_hash
//! sys:         libc's own functions, and sockets through them (`sys::socket`)
//! addr
//! hot_data:    literals the diverting path reads, laid out with the hot code
//! ```
//!
//! What a lower layer needs from a higher one is handed down: the hooks pass
//! `tls::drivable` to `conn::connect` and the program's `send`/`recv` to `tls::gnutls`,
//! and ask `tls` before `conn` whether a write or read belongs to a TLS handshake; `tls`
//! hands its fallback to a connection it marks https (`conn::TlsHandoff`). One exception:
//! `runtime` registers `fork`'s child handler with libc while it builds (it must be in
//! place before anything the handler reopens can be taken); libc calls it, never `runtime`.

#![warn(clippy::undocumented_unsafe_blocks)]

pub mod addr;
pub mod conn;
mod doctor;
mod explain;
mod fork;
pub mod guard;
pub mod hooks;
mod hot_data;
pub mod http;
mod inject;
pub mod int_hash;
mod logger;
pub mod names;
pub mod policy;
pub mod proxy;
#[cfg(feature = "race-probe")]
mod race_probe;
pub mod runtime;
pub mod sync;
pub mod sys;
pub mod tls;
pub mod uuid;

/// `x-lunar-interceptor`: the proxy keeps its statistics by this value.
pub const INTERCEPTOR: &str = interceptor_name!();

/// `INTERCEPTOR` as a literal, for `concat!` (`conn::lunar_headers`).
macro_rules! interceptor_name {
    () => {
        concat!("lunar-preload-interceptor/", env!("CARGO_PKG_VERSION"))
    };
}
pub(crate) use interceptor_name;
