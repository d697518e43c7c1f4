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

#![warn(clippy::undocumented_unsafe_blocks)]

pub mod addr;
pub mod conn;
mod fork;
pub mod guard;
pub mod hooks;
pub mod http;
mod logger;
pub mod names;
pub mod policy;
pub mod proxy;
pub mod runtime;
pub mod sync;
pub mod sys;
pub mod tls;
pub mod uuid;
pub mod watchers;

/// `x-lunar-interceptor`: the proxy keeps its statistics by this value.
pub const INTERCEPTOR: &str = concat!("lunar-preload-interceptor/", env!("CARGO_PKG_VERSION"));
