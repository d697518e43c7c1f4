//! `lunar-intercept explain URL`: what this library would do with a request right now,
//! asked of the library itself (`dlopen` by the command), so the answer comes from the
//! same configuration, filter, failsafe and handshake code a program's connect meets.

use crate::policy::filter::{Destination, Verdict};
use crate::runtime::{self, Route};
use libc::{c_char, c_int};
use std::ffi::CStr;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// Writes the answer for a request to `host:port` (`allow`: the request's
/// `x-lunar-allow`, 1 true, 0 false, -1 none) into `out` (at most `room` bytes, not
/// NUL-terminated); returns its full length. The first line is `proxy ADDRESS (why)` or
/// `direct (why)` or `inert (why)`.
///
/// # Safety
/// `host` is a NUL-terminated string; `out` has room for `room` bytes.
#[no_mangle]
pub unsafe extern "C" fn lunar_intercept_explain(
    host: *const c_char,
    port: u16,
    allow: c_int,
    out: *mut u8,
    room: usize,
) -> usize {
    // SAFETY: the caller's contract.
    let host = unsafe { CStr::from_ptr(host) }.to_string_lossy();
    let header = match allow {
        1 => Some(true),
        0 => Some(false),
        _ => None,
    };
    let text = crate::guard::shielded(|| answer(&host, port, header), || "internal error".into());
    let n = text.len().min(room);
    // SAFETY: `out` has room for `room` >= n bytes.
    unsafe { std::ptr::copy_nonoverlapping(text.as_ptr(), out, n) };
    text.len()
}

fn answer(host: &str, port: u16, header: Option<bool>) -> String {
    let Some(runtime) = runtime::get() else {
        return "inert (no proxy configured: LUNAR_PROXY_HOST is set neither in the \
                environment nor in /etc/lunar/interceptor.conf, or it is invalid: see the \
                warnings above; a setuid program reads only the file)"
            .to_string();
    };
    if !runtime.intercepts_port(port) {
        return format!("direct (port {port} is not intercepted: LUNAR_INTERCEPT_PORTS)");
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let ip = match bare.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) => match (bare, port).to_socket_addrs().map(|mut a| a.next()) {
            Ok(Some(address)) => address.ip(),
            _ => return format!("direct ({host} does not resolve here: the connect would fail)"),
        },
    };
    if runtime.proxy.is_proxy(SocketAddr::new(ip, port)) {
        return "direct (that is the proxy itself)".to_string();
    }
    let name = (bare.parse::<IpAddr>().is_err()).then_some(bare);
    let verdict = runtime.judge(&Destination { ip, name }, header);
    let (route, why) = runtime.route(verdict);
    let mut text = match route {
        Route::Proxy(address) => format!("proxy {address} ({why})"),
        Route::Origin => format!("direct ({why})"),
    };
    if matches!(verdict, Verdict::Divert(_)) && port == 443 {
        text.push_str(
            "\nhttps: diverted inside the program's own OpenSSL or GnuTLS (curl, wget, Python, \
             Perl, C); Node, Java, Go and static programs keep their TLS to the origin",
        );
    }
    text
}
