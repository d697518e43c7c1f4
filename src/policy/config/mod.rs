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
    is_header_safe, number, parse_log_level, parse_log_target, parse_ports, say, set_value, text_of,
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
    let lookup = |name: &str| set_value(lookup, name);
    let log_level = match text("LUNAR_INTERCEPTOR_LOG_LEVEL") {
        None => LogLevel::Warn,
        Some(Ok(raw)) => parse_log_level(&raw, warn),
        Some(Err(shown)) => {
            say(
                warn,
                format_args!(
                    "LUNAR_INTERCEPTOR_LOG_LEVEL={shown} is not valid UTF-8; using WARNING"
                ),
            );
            LogLevel::Warn
        }
    };
    let log_target = match text("LUNAR_INTERCEPTOR_LOG_TARGET") {
        None => LogTarget::Stderr,
        Some(Ok(raw)) => parse_log_target(&raw, warn),
        Some(Err(shown)) => {
            say(
                warn,
                format_args!(
                    "LUNAR_INTERCEPTOR_LOG_TARGET={shown} is not valid UTF-8; using stderr"
                ),
            );
            LogTarget::Stderr
        }
    };
    let logging = Logging {
        level: log_level,
        target: log_target,
    };
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
    let proxy_tls = match text("LUNAR_PROXY_SUPPORT_TLS") {
        None => false,
        Some(Ok(raw)) => match raw.trim() {
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
        Some(Err(shown)) => {
            say(
                warn,
                format_args!("LUNAR_PROXY_SUPPORT_TLS={shown} is not valid UTF-8; using 0"),
            );
            false
        }
    };
    let proxy_ca_file = match text("LUNAR_PROXY_CA_FILE") {
        None => None,
        Some(Ok(raw)) => Some(raw.trim().to_string()),
        Some(Err(shown)) => {
            say(
                warn,
                format_args!(
                    "LUNAR_PROXY_CA_FILE={shown} is not valid UTF-8; the system's CA store alone \
                 verifies the proxy"
                ),
            );
            None
        }
    };
    let tenant_id = match text("LUNAR_TENANT_ID") {
        None => "unknown".to_string(),
        Some(Ok(raw)) if is_header_safe(raw.trim()) => raw.trim().to_string(),
        Some(Ok(raw)) => {
            say(
                warn,
                format_args!("LUNAR_TENANT_ID={raw:?} is not printable ASCII; using unknown"),
            );
            "unknown".to_string()
        }
        Some(Err(shown)) => {
            say(
                warn,
                format_args!("LUNAR_TENANT_ID={shown} is not valid UTF-8; using unknown"),
            );
            "unknown".to_string()
        }
    };
    let intercept_ports = match text("LUNAR_INTERCEPT_PORTS") {
        None => DEFAULT_PORTS.to_vec(),
        Some(Ok(raw)) => match parse_ports(&raw) {
            Some(ports) => ports,
            None => {
                say(
                    warn,
                    format_args!(
                        "LUNAR_INTERCEPT_PORTS={raw:?} is not a list of ports; using 80,443"
                    ),
                );
                DEFAULT_PORTS.to_vec()
            }
        },
        Some(Err(shown)) => {
            say(
                warn,
                format_args!("LUNAR_INTERCEPT_PORTS={shown} is not valid UTF-8; using 80,443"),
            );
            DEFAULT_PORTS.to_vec()
        }
    };

    // An entry that is not UTF-8 is an invalid entry like any other: dropped from an
    // allow list (only what remains is diverted), fatal in a block list.
    let allow_list = lookup("LUNAR_ALLOW_LIST").map(|raw| {
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
    if let Some(raw) = lookup("LUNAR_BLOCK_LIST") {
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
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn run(vars: &[(&str, &str)]) -> (Setup, LogLevel, Vec<String>) {
        let vars: Vec<(&str, &[u8])> = vars.iter().map(|&(k, v)| (k, v.as_bytes())).collect();
        run_bytes(&vars)
    }

    fn run_bytes(vars: &[(&str, &[u8])]) -> (Setup, LogLevel, Vec<String>) {
        let map: HashMap<String, Vec<u8>> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect();
        let mut warnings = Vec::new();
        let (setup, logging) = parse(|name| map.get(name).cloned(), &mut |w| warnings.push(w));
        (setup, logging.level, warnings)
    }

    fn active(vars: &[(&str, &str)]) -> Config {
        match run(vars).0 {
            Setup::Active(config) => *config,
            other => panic!("expected active, got {other:?}"),
        }
    }

    #[test]
    fn unset_proxy_is_silent_and_inert() {
        let (setup, level, warnings) = run(&[]);
        assert!(matches!(setup, Setup::Unset));
        assert_eq!(level, LogLevel::Warn);
        assert!(warnings.is_empty());
    }

    #[test]
    fn defaults() {
        let config = active(&[("LUNAR_PROXY_HOST", "proxy.local:8000")]);
        assert_eq!(
            config.proxy,
            ProxyAddress {
                host: "proxy.local".into(),
                port: 8000
            }
        );
        assert_eq!(config.handshake_port, 8081);
        assert!(!config.proxy_tls);
        assert_eq!(config.tenant_id, "unknown");
        assert!(config.allow_list.is_none());
        assert!(config.block_list.is_empty());
        assert_eq!(config.cooldown_attempts, 5);
        assert_eq!(config.cooldown_secs, 10);
        assert_eq!(config.connect_timeout_ms, 500);
        assert_eq!(config.replay_max_bytes, 1024 * 1024);
        assert_eq!(config.intercept_ports, vec![80, 443]);
    }

    #[test]
    fn malformed_proxy_host_warns_once_and_disables() {
        for bad in [
            "http://127.0.0.1:8000",
            "127.0.0.1",
            "127.0.0.1:abc",
            ":8000",
            "host:0",
            "a:1:2",
            "host:99999",
        ] {
            let (setup, _, warnings) = run(&[("LUNAR_PROXY_HOST", bad)]);
            assert!(matches!(setup, Setup::Disabled), "{bad}");
            assert_eq!(warnings.len(), 1, "{bad}");
        }
    }

    #[test]
    fn ipv6_proxy_host() {
        let config = active(&[("LUNAR_PROXY_HOST", "[::1]:8000")]);
        assert_eq!(config.proxy.host, "::1");
    }

    #[test]
    fn every_variable_is_read() {
        let config = active(&[
            ("LUNAR_PROXY_HOST", "10.0.0.5:8000"),
            ("LUNAR_HANDSHAKE_PORT", "9081"),
            ("LUNAR_PROXY_SUPPORT_TLS", "0"),
            ("LUNAR_TENANT_ID", "acme"),
            ("LUNAR_ALLOW_LIST", "api.example.com, 203.0.113.7,bad host"),
            ("LUNAR_ENTER_COOLDOWN_AFTER_ATTEMPTS", "2"),
            ("LUNAR_EXIT_COOLDOWN_AFTER_SEC", "4"),
            ("LUNAR_PROXY_CONNECT_TIMEOUT_MS", "250"),
            ("LUNAR_REPLAY_MAX_BYTES", "2048"),
            ("LUNAR_INTERCEPT_PORTS", "80,8080"),
            ("LUNAR_INTERCEPTOR_LOG_LEVEL", "debug"),
        ]);
        assert_eq!(config.handshake_port, 9081);
        assert!(!config.proxy_tls);
        assert_eq!(config.tenant_id, "acme");
        assert_eq!(
            config.allow_list.unwrap(),
            vec![
                HostEntry::Name("api.example.com".into()),
                HostEntry::Ip("203.0.113.7".parse().unwrap())
            ]
        );
        assert_eq!(config.cooldown_attempts, 2);
        assert_eq!(config.cooldown_secs, 4);
        assert_eq!(config.connect_timeout_ms, 250);
        assert_eq!(config.replay_max_bytes, 2048);
        assert_eq!(config.intercept_ports, vec![80, 8080]);
        assert_eq!(config.log_level, LogLevel::Debug);
    }

    #[test]
    fn log_target() {
        let target = |value: &str| {
            let mut warnings = Vec::new();
            let (_, logging) = parse(
                |name| (name == "LUNAR_INTERCEPTOR_LOG_TARGET").then(|| value.into()),
                &mut |w| warnings.push(w),
            );
            (logging.target, warnings.len())
        };
        assert_eq!(target("syslog"), (LogTarget::Syslog, 0));
        assert_eq!(target(" SysLog "), (LogTarget::Syslog, 0));
        assert_eq!(target("stderr"), (LogTarget::Stderr, 0));
        assert_eq!(target(""), (LogTarget::Stderr, 0));
        assert_eq!(target("journal"), (LogTarget::Stderr, 1));
        assert_eq!(target("/dev/log"), (LogTarget::Stderr, 1));
        // Read even when the proxy is unset: an inert process that warns says it there.
        let (setup, level, warnings) =
            run_bytes(&[("LUNAR_INTERCEPTOR_LOG_TARGET", b"sys\xfflog")]);
        assert!(matches!(setup, Setup::Unset));
        assert_eq!(level, LogLevel::Warn);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
    }

    #[test]
    fn variables_lists_exactly_what_parse_reads() {
        // Every variable set (lists both given, so both are looked at).
        let asked = std::cell::RefCell::new(std::collections::BTreeSet::new());
        let _ = parse(
            |name| {
                asked.borrow_mut().insert(name.to_string());
                Some(
                    if name == "LUNAR_PROXY_HOST" {
                        "p:1"
                    } else {
                        "1"
                    }
                    .into(),
                )
            },
            &mut |_| {},
        );
        let listed: std::collections::BTreeSet<String> =
            VARIABLES.iter().map(|name| name.to_string()).collect();
        assert_eq!(asked.into_inner(), listed);
    }

    #[test]
    fn malformed_numbers_warn_and_use_defaults() {
        let (setup, _, warnings) = run(&[
            ("LUNAR_PROXY_HOST", "p:1"),
            ("LUNAR_HANDSHAKE_PORT", "x"),
            ("LUNAR_ENTER_COOLDOWN_AFTER_ATTEMPTS", "-1"),
            ("LUNAR_EXIT_COOLDOWN_AFTER_SEC", "1.5"),
            ("LUNAR_INTERCEPT_PORTS", "80,http"),
            ("LUNAR_PROXY_SUPPORT_TLS", "yes"),
            ("LUNAR_INTERCEPTOR_LOG_LEVEL", "loud"),
        ]);
        let Setup::Active(config) = setup else {
            panic!()
        };
        assert_eq!(warnings.len(), 6, "{warnings:?}");
        assert_eq!(config.handshake_port, 8081);
        assert_eq!(config.cooldown_attempts, 5);
        assert_eq!(config.cooldown_secs, 10);
        assert_eq!(config.intercept_ports, vec![80, 443]);
    }

    #[test]
    fn invalid_allow_entry_is_dropped_invalid_block_entry_disables() {
        let (_, _, warnings) = run(&[
            ("LUNAR_PROXY_HOST", "p:1"),
            ("LUNAR_ALLOW_LIST", "ok.com,bad/x"),
        ]);
        assert_eq!(warnings.len(), 1);
        let (setup, _, warnings) = run(&[
            ("LUNAR_PROXY_HOST", "p:1"),
            ("LUNAR_BLOCK_LIST", "ok.com,bad/x"),
        ]);
        assert!(matches!(setup, Setup::Disabled));
        assert_eq!(warnings.len(), 1);
    }

    #[test]
    fn tls_to_the_proxy_and_its_ca_file() {
        let (setup, _, warnings) = run(&[
            ("LUNAR_PROXY_HOST", "p:1"),
            ("LUNAR_PROXY_SUPPORT_TLS", "1"),
            ("LUNAR_PROXY_CA_FILE", " /etc/lunar/proxy-ca.pem "),
        ]);
        let Setup::Active(config) = setup else {
            panic!("{setup:?}");
        };
        assert!(config.proxy_tls && warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            config.proxy_ca_file.as_deref(),
            Some("/etc/lunar/proxy-ca.pem")
        );
        let (setup, _, warnings) = run(&[
            ("LUNAR_PROXY_HOST", "p:1"),
            ("LUNAR_PROXY_SUPPORT_TLS", "0"),
        ]);
        let Setup::Active(config) = setup else {
            panic!("{setup:?}");
        };
        assert!(!config.proxy_tls && config.proxy_ca_file.is_none() && warnings.is_empty());
    }

    #[test]
    fn empty_values_mean_unset() {
        let (setup, _, warnings) = run(&[("LUNAR_PROXY_HOST", "")]);
        assert!(matches!(setup, Setup::Unset));
        assert!(warnings.is_empty());
        let (setup, _, warnings) = run(&[
            ("LUNAR_PROXY_HOST", "p:1"),
            ("LUNAR_ALLOW_LIST", " "),
            ("LUNAR_BLOCK_LIST", ""),
        ]);
        let Setup::Active(config) = setup else {
            panic!()
        };
        assert!(config.allow_list.is_none());
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn block_list_ignored_with_allow_list() {
        let (setup, _, warnings) = run(&[
            ("LUNAR_PROXY_HOST", "p:1"),
            ("LUNAR_ALLOW_LIST", "a.com"),
            ("LUNAR_BLOCK_LIST", "b.com"),
        ]);
        let Setup::Active(config) = setup else {
            panic!()
        };
        assert!(config.block_list.is_empty());
        assert_eq!(warnings.len(), 1);
    }

    const PROXY: (&str, &[u8]) = ("LUNAR_PROXY_HOST", b"p:1");

    #[test]
    fn non_utf8_proxy_host_warns_and_disables() {
        let (setup, _, warnings) = run_bytes(&[("LUNAR_PROXY_HOST", b"127.0.0.1:80\xff00")]);
        assert!(matches!(setup, Setup::Disabled), "{setup:?}");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains(r"\xff"), "{warnings:?}");
    }

    #[test]
    fn non_utf8_block_list_disables() {
        let (setup, _, warnings) = run_bytes(&[
            PROXY,
            ("LUNAR_BLOCK_LIST", b"api.example.test,b\xe9.example.test"),
        ]);
        assert!(matches!(setup, Setup::Disabled), "{setup:?}");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains(r"b\xe9.example.test"), "{warnings:?}");
        // A whole value of invalid bytes too.
        let (setup, _, _) = run_bytes(&[PROXY, ("LUNAR_BLOCK_LIST", b"\xff\xfe")]);
        assert!(matches!(setup, Setup::Disabled), "{setup:?}");
    }

    #[test]
    fn non_utf8_allow_entry_is_dropped_the_rest_kept() {
        let (setup, _, warnings) = run_bytes(&[
            PROXY,
            ("LUNAR_ALLOW_LIST", b"x\xff.example.test, api.example.test"),
        ]);
        let Setup::Active(config) = setup else {
            panic!("{setup:?}")
        };
        assert_eq!(
            config.allow_list,
            Some(vec![HostEntry::Name("api.example.test".into())])
        );
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains(r"x\xff.example.test"), "{warnings:?}");
    }

    #[test]
    fn an_allow_list_of_invalid_bytes_only_is_an_empty_allow_list() {
        // Never "unset": an allow list that was given and holds nothing valid diverts
        // nothing.
        let (setup, _, warnings) = run_bytes(&[PROXY, ("LUNAR_ALLOW_LIST", b"\xc3\x28")]);
        let Setup::Active(config) = setup else {
            panic!("{setup:?}")
        };
        assert_eq!(config.allow_list, Some(vec![]));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
    }

    #[test]
    fn non_utf8_ports_warn_and_use_the_default_ports() {
        let (setup, _, warnings) = run_bytes(&[PROXY, ("LUNAR_INTERCEPT_PORTS", b"80,\xff")]);
        let Setup::Active(config) = setup else {
            panic!("{setup:?}")
        };
        assert_eq!(config.intercept_ports, vec![80, 443]);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("LUNAR_INTERCEPT_PORTS"),
            "{warnings:?}"
        );
    }

    #[test]
    fn every_other_non_utf8_value_warns_and_takes_its_default() {
        let bad: &[u8] = b"1\xff";
        let (setup, level, warnings) = run_bytes(&[
            PROXY,
            ("LUNAR_HANDSHAKE_PORT", bad),
            ("LUNAR_PROXY_SUPPORT_TLS", bad),
            ("LUNAR_TENANT_ID", b"acme\xff"),
            ("LUNAR_ENTER_COOLDOWN_AFTER_ATTEMPTS", bad),
            ("LUNAR_EXIT_COOLDOWN_AFTER_SEC", bad),
            ("LUNAR_INTERCEPTOR_LOG_LEVEL", b"DEBUG\xff"),
            ("LUNAR_PROXY_CONNECT_TIMEOUT_MS", bad),
            ("LUNAR_REPLAY_MAX_BYTES", bad),
            ("LUNAR_RETRY_MAX_DELAY_SEC", bad),
            ("LUNAR_RETRY_MAX_ATTEMPTS", bad),
        ]);
        let Setup::Active(config) = setup else {
            panic!("{setup:?}")
        };
        assert_eq!(warnings.len(), 10, "{warnings:?}");
        assert!(
            warnings.iter().all(|w| w.contains("not valid UTF-8")),
            "{warnings:?}"
        );
        assert_eq!(level, LogLevel::Warn);
        assert_eq!(config.handshake_port, DEFAULT_HANDSHAKE_PORT);
        assert!(!config.proxy_tls);
        assert_eq!(config.tenant_id, "unknown");
        assert_eq!(config.cooldown_attempts, DEFAULT_COOLDOWN_ATTEMPTS);
        assert_eq!(config.cooldown_secs, DEFAULT_COOLDOWN_SECS);
        assert_eq!(config.connect_timeout_ms, DEFAULT_CONNECT_TIMEOUT_MS);
        assert_eq!(config.replay_max_bytes as u64, DEFAULT_REPLAY_MAX_BYTES);
        assert_eq!(config.retry_max_delay_secs, DEFAULT_RETRY_MAX_DELAY_SECS);
        assert_eq!(
            u64::from(config.retry_max_attempts),
            DEFAULT_RETRY_MAX_ATTEMPTS
        );
    }

    #[test]
    fn a_tenant_that_is_not_printable_ascii_warns() {
        let (setup, _, warnings) = run(&[("LUNAR_PROXY_HOST", "p:1"), ("LUNAR_TENANT_ID", "a\nb")]);
        let Setup::Active(config) = setup else {
            panic!("{setup:?}")
        };
        assert_eq!(config.tenant_id, "unknown");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
    }

    #[test]
    fn valid_utf8_beyond_ascii_is_still_judged_as_text() {
        // Not a byte problem: the ordinary "not a host name" warning, entry dropped.
        let (setup, _, warnings) = run(&[
            ("LUNAR_PROXY_HOST", "p:1"),
            ("LUNAR_ALLOW_LIST", "bücher.example, api.example.test"),
        ]);
        let Setup::Active(config) = setup else {
            panic!("{setup:?}")
        };
        assert_eq!(config.allow_list.map(|list| list.len()), Some(1));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("bücher.example"), "{warnings:?}");
    }
}
