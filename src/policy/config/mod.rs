//! Configuration, read once from the environment and the configuration file (see
//! LUNAR-CONTRACT.md's table).
//!
//! Parsing is pure (`parse`, each variable; `values`, the forms their text takes; `file`,
//! the configuration file's lines and how they sit under the environment) so it is
//! unit-tested without touching the process environment or a file; `policy::source`
//! decides what is read at all. Values are bytes: one that is not UTF-8 is malformed
//! like any other, never "unset". Every malformed value produces one warning and the safe
//! behaviour the contract names.

mod file;
mod values;

pub use file::{layered, parse_file, FileValues};
pub use values::{is_blank, is_host_name, parse_host_list, parse_proxy_host};

use std::net::IpAddr;
use values::{
    is_header_safe, number, parse_log_level, parse_log_target, parse_ports, say, set_value,
    text_of, valid_text,
};

/// Every variable `parse` reads: the names a configuration file may set (a test checks
/// the list against what `parse` asks for).
pub const VARIABLES: [&str; 16] = [
    "LUNAR_PROXY_HOST",
    "LUNAR_HANDSHAKE_PORT",
    "LUNAR_PROXY_SUPPORT_TLS",
    "LUNAR_PROXY_CA_FILE",
    "LUNAR_TENANT_ID",
    "LUNAR_ALLOW_LIST",
    "LUNAR_BLOCK_LIST",
    "LUNAR_ENTER_COOLDOWN_AFTER_ATTEMPTS",
    "LUNAR_EXIT_COOLDOWN_AFTER_SEC",
    "LUNAR_INTERCEPTOR_LOG_LEVEL",
    "LUNAR_INTERCEPTOR_LOG_TARGET",
    "LUNAR_INTERCEPT_PORTS",
    "LUNAR_PROXY_CONNECT_TIMEOUT_MS",
    "LUNAR_REPLAY_MAX_BYTES",
    "LUNAR_RETRY_MAX_DELAY_SEC",
    "LUNAR_RETRY_MAX_ATTEMPTS",
];

pub const DEFAULT_HANDSHAKE_PORT: u16 = 8081;
pub const DEFAULT_COOLDOWN_ATTEMPTS: u32 = 5;
pub const DEFAULT_COOLDOWN_SECS: u64 = 10;
/// Lunar Proxy runs beside the application (sidecar, same node or cluster), where a connect
/// completes in well under 10 ms; half a second leaves room for a loaded host while bounding
/// how long a black-holed proxy can stall a program (and an event loop) before the origin.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 500;
pub const DEFAULT_PORTS: [u16; 2] = [80, 443];
/// A request is kept until its response starts, so that a proxy failure can be hidden by
/// sending it again; 1 MiB covers nearly every API call (JSON bodies, small uploads) while
/// bounding memory per connection. Larger requests are still proxied, just not replayable.
pub const DEFAULT_REPLAY_MAX_BYTES: u64 = 1024 * 1024;
/// The proxy's retry protocol is bounded: a client waiting longer than a minute for one
/// answer has usually given up already, and ten rounds cover any sane rate-limit policy.
/// Past either bound the proxy's own answer is passed on (see `conn::retry_limits`).
pub const DEFAULT_RETRY_MAX_DELAY_SECS: u64 = 60;
pub const DEFAULT_RETRY_MAX_ATTEMPTS: u64 = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyAddress {
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

/// Where log lines go (`LUNAR_INTERCEPTOR_LOG_TARGET`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTarget {
    Stderr,
    /// The local syslog socket (`/dev/log`, the journal's on systemd machines).
    Syslog,
}

/// How the library logs: decided with the configuration, needed even when it is inert
/// (to say why).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Logging {
    pub level: LogLevel,
    pub target: LogTarget,
}

impl Default for Logging {
    fn default() -> Logging {
        Logging {
            level: LogLevel::Warn,
            target: LogTarget::Stderr,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEntry {
    Ip(IpAddr),
    Name(String),
}

#[derive(Debug, Clone)]
pub struct Config {
    pub proxy: ProxyAddress,
    pub handshake_port: u16,
    /// `LUNAR_PROXY_SUPPORT_TLS=1`: the link to the proxy is TLS.
    pub proxy_tls: bool,
    /// `LUNAR_PROXY_CA_FILE`: certificates trusted for the proxy beside the system's store.
    pub proxy_ca_file: Option<String>,
    pub tenant_id: String,
    pub allow_list: Option<Vec<HostEntry>>,
    pub block_list: Vec<HostEntry>,
    pub cooldown_attempts: u32,
    pub cooldown_secs: u64,
    pub connect_timeout_ms: u64,
    pub replay_max_bytes: usize,
    /// Longest `x-lunar-retry-after` honoured, seconds.
    pub retry_max_delay_secs: u64,
    /// Most retries of one request the proxy may ask for.
    pub retry_max_attempts: u32,
    pub intercept_ports: Vec<u16>,
    pub log_level: LogLevel,
}

/// What reading the environment gave: a configuration, or the reason the library stays inert.
#[derive(Debug)]
pub enum Setup {
    Active(Box<Config>),
    /// `LUNAR_PROXY_HOST` unset: silent, by contract.
    Unset,
    /// Secure-execution mode (`policy::source`) without a trusted configuration file:
    /// nothing was read.
    SecureExecution,
    /// Something made diverting unsafe; the warning was already produced.
    Disabled,
}

/// Reads the configuration with `lookup(name)` (a variable's bytes, `None` when unset);
/// `warn` receives each complaint once.
pub fn parse(
    lookup: impl Fn(&str) -> Option<Vec<u8>>,
    warn: &mut dyn FnMut(String),
) -> (Setup, Logging) {
    parse_values(&lookup, warn)
}

/// `parse`'s body, one copy whatever the lookup.
#[inline(never)]
fn parse_values(
    lookup: &dyn Fn(&str) -> Option<Vec<u8>>,
    warn: &mut dyn FnMut(String),
) -> (Setup, Logging) {
    let text = |name: &str| text_of(lookup, name);
    let logging = Logging {
        level: valid_text(lookup, "LUNAR_INTERCEPTOR_LOG_LEVEL", "using WARNING", warn)
            .map_or(LogLevel::Warn, |raw| parse_log_level(&raw, warn)),
        target: valid_text(lookup, "LUNAR_INTERCEPTOR_LOG_TARGET", "using stderr", warn)
            .map_or(LogTarget::Stderr, |raw| parse_log_target(&raw, warn)),
    };
    let log_level = logging.level;
    let raw_proxy = match text("LUNAR_PROXY_HOST") {
        None => return (Setup::Unset, logging),
        Some(Ok(raw)) => raw,
        Some(Err(shown)) => {
            say(
                warn,
                format_args!("LUNAR_PROXY_HOST={shown} is not valid UTF-8; interceptor disabled"),
            );
            return (Setup::Disabled, logging);
        }
    };
    let Some(proxy) = parse_proxy_host(&raw_proxy) else {
        say(
            warn,
            format_args!(
                "LUNAR_PROXY_HOST={raw_proxy:?} is not host:port (no scheme); interceptor disabled"
            ),
        );
        return (Setup::Disabled, logging);
    };
    let handshake_port = number(
        "LUNAR_HANDSHAKE_PORT",
        text("LUNAR_HANDSHAKE_PORT"),
        (DEFAULT_HANDSHAKE_PORT.into(), 1, 65535),
        warn,
    ) as u16;
    let cooldown_attempts = number(
        "LUNAR_ENTER_COOLDOWN_AFTER_ATTEMPTS",
        text("LUNAR_ENTER_COOLDOWN_AFTER_ATTEMPTS"),
        (DEFAULT_COOLDOWN_ATTEMPTS.into(), 1, u32::MAX.into()),
        warn,
    ) as u32;
    let cooldown_secs = number(
        "LUNAR_EXIT_COOLDOWN_AFTER_SEC",
        text("LUNAR_EXIT_COOLDOWN_AFTER_SEC"),
        (DEFAULT_COOLDOWN_SECS, 0, 86_400 * 365),
        warn,
    );
    let connect_timeout_ms = number(
        "LUNAR_PROXY_CONNECT_TIMEOUT_MS",
        text("LUNAR_PROXY_CONNECT_TIMEOUT_MS"),
        (DEFAULT_CONNECT_TIMEOUT_MS, 1, 600_000),
        warn,
    );
    let replay_max_bytes = number(
        "LUNAR_REPLAY_MAX_BYTES",
        text("LUNAR_REPLAY_MAX_BYTES"),
        (DEFAULT_REPLAY_MAX_BYTES, 0, 1 << 32),
        warn,
    ) as usize;
    let retry_max_delay_secs = number(
        "LUNAR_RETRY_MAX_DELAY_SEC",
        text("LUNAR_RETRY_MAX_DELAY_SEC"),
        (DEFAULT_RETRY_MAX_DELAY_SECS, 0, 86_400),
        warn,
    );
    let retry_max_attempts = number(
        "LUNAR_RETRY_MAX_ATTEMPTS",
        text("LUNAR_RETRY_MAX_ATTEMPTS"),
        (DEFAULT_RETRY_MAX_ATTEMPTS, 0, 1000),
        warn,
    ) as u32;
    let proxy_tls = match valid_text(lookup, "LUNAR_PROXY_SUPPORT_TLS", "using 0", warn) {
        None => false,
        Some(raw) => match raw.trim() {
            "0" | "" => false,
            "1" => true,
            other => {
                say(
                    warn,
                    format_args!("LUNAR_PROXY_SUPPORT_TLS={other:?} is neither 0 nor 1; using 0"),
                );
                false
            }
        },
    };
    let proxy_ca_file = valid_text(
        lookup,
        "LUNAR_PROXY_CA_FILE",
        "the system's CA store alone verifies the proxy",
        warn,
    )
    .map(|raw| raw.trim().to_string());
    let tenant_id = match valid_text(lookup, "LUNAR_TENANT_ID", "using unknown", warn) {
        None => "unknown".to_string(),
        Some(raw) if is_header_safe(raw.trim()) => raw.trim().to_string(),
        Some(raw) => {
            say(
                warn,
                format_args!("LUNAR_TENANT_ID={raw:?} is not printable ASCII; using unknown"),
            );
            "unknown".to_string()
        }
    };
    let intercept_ports = match valid_text(lookup, "LUNAR_INTERCEPT_PORTS", "using 80,443", warn) {
        None => DEFAULT_PORTS.to_vec(),
        Some(raw) => parse_ports(&raw).unwrap_or_else(|| {
            say(
                warn,
                format_args!("LUNAR_INTERCEPT_PORTS={raw:?} is not a list of ports; using 80,443"),
            );
            DEFAULT_PORTS.to_vec()
        }),
    };

    // An entry that is not UTF-8 is an invalid entry like any other: dropped from an
    // allow list (only what remains is diverted), fatal in a block list.
    let allow_list = set_value(lookup, "LUNAR_ALLOW_LIST").map(|raw| {
        let (entries, invalid) = parse_host_list(&raw);
        for entry in invalid {
            say(
                warn,
                format_args!("LUNAR_ALLOW_LIST entry {entry} is not a host name or IP; ignored"),
            );
        }
        entries
    });
    let mut block_list = Vec::new();
    if let Some(raw) = set_value(lookup, "LUNAR_BLOCK_LIST") {
        if allow_list.is_some() {
            warn("LUNAR_BLOCK_LIST is ignored because LUNAR_ALLOW_LIST is set".to_string());
        } else {
            let (entries, invalid) = parse_host_list(&raw);
            if !invalid.is_empty() {
                say(
                    warn,
                    format_args!(
                        "LUNAR_BLOCK_LIST entry {} is not a host name or IP; interceptor disabled",
                        invalid[0]
                    ),
                );
                return (Setup::Disabled, logging);
            }
            block_list = entries;
        }
    }

    let config = Config {
        proxy,
        handshake_port,
        proxy_tls,
        proxy_ca_file,
        tenant_id,
        allow_list,
        block_list,
        cooldown_attempts,
        cooldown_secs,
        connect_timeout_ms,
        replay_max_bytes,
        retry_max_delay_secs,
        retry_max_attempts,
        intercept_ports,
        log_level,
    };
    (Setup::Active(Box::new(config)), logging)
}

#[cfg(test)]
mod tests;
