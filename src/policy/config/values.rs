//! How one variable's text becomes a value: host lists and host names, ports, the proxy's
//! `host:port`, the log level and target, a header-safe tenant, and the bytes of a value (blank, or
//! quoted for a warning). A parser says only whether the text is valid (for a list, which
//! entries are not); what a malformed value means (a default, a dropped entry, the library
//! disabled) depends on the variable, so `parse` gives the warning and the fallback. The
//! log level and target alone warn themselves, and a number (`number`: its fallback is
//! its default). Reading a variable (`set_value`, `text_of`) and complaining (`say`) are
//! here too, out of line: a process reads its configuration once.

use super::{HostEntry, LogLevel, LogTarget, ProxyAddress};
use std::net::IpAddr;

pub(super) fn parse_log_level(raw: &str, warn: &mut dyn FnMut(String)) -> LogLevel {
    let level = raw.trim().to_ascii_uppercase();
    match level.as_str() {
        "DEBUG" => LogLevel::Debug,
        "INFO" => LogLevel::Info,
        "WARNING" | "WARN" | "" => LogLevel::Warn,
        "ERROR" => LogLevel::Error,
        _ => {
            warn(format!("LUNAR_INTERCEPTOR_LOG_LEVEL={level:?} is not DEBUG, INFO, WARNING or ERROR; using WARNING"));
            LogLevel::Warn
        }
    }
}

pub(super) fn parse_log_target(raw: &str, warn: &mut dyn FnMut(String)) -> LogTarget {
    let target = raw.trim().to_ascii_lowercase();
    match target.as_str() {
        "stderr" | "" => LogTarget::Stderr,
        "syslog" => LogTarget::Syslog,
        _ => {
            warn(format!(
                "LUNAR_INTERCEPTOR_LOG_TARGET={target:?} is not stderr or syslog; using stderr"
            ));
            LogTarget::Stderr
        }
    }
}

/// Whether a value is empty or only white space (what `NAME=` leaves): unset.
pub fn is_blank(raw: &[u8]) -> bool {
    std::str::from_utf8(raw).is_ok_and(|text| text.trim().is_empty())
}

/// A value as a warning shows it: quoted, and bytes that are not UTF-8 escaped (`\xff`).
pub(super) fn quoted(raw: &[u8]) -> String {
    match std::str::from_utf8(raw) {
        Ok(text) => format!("{text:?}"),
        Err(_) => format!("\"{}\"", raw.escape_ascii()),
    }
}

/// `host:port` or `[v6]:port`; no scheme, no path, no extra colon.
pub fn parse_proxy_host(raw: &str) -> Option<ProxyAddress> {
    let raw = raw.trim();
    let (host, port) = if let Some(rest) = raw.strip_prefix('[') {
        let (v6, port) = rest.split_once("]:")?;
        v6.parse::<std::net::Ipv6Addr>().ok()?;
        (v6, port)
    } else {
        let (host, port) = raw.split_once(':')?;
        if host.contains(':') || port.contains(':') {
            return None;
        }
        (host, port)
    };
    if host.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let port: u16 = port.parse().ok().filter(|&port| port != 0)?;
    if !is_host_or_ip(host) {
        return None;
    }
    Some(ProxyAddress {
        host: host.to_string(),
        port,
    })
}

pub(super) fn parse_ports(raw: &str) -> Option<Vec<u16>> {
    let ports: Option<Vec<u16>> = raw
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| part.parse::<u16>().ok().filter(|&port| port != 0))
        .collect();
    ports.filter(|ports| !ports.is_empty())
}

/// Splits a comma-separated list into valid entries and the invalid ones (quoted for a
/// warning). An entry that is not UTF-8 is invalid.
pub fn parse_host_list(raw: impl AsRef<[u8]>) -> (Vec<HostEntry>, Vec<String>) {
    let mut entries = Vec::new();
    let mut invalid = Vec::new();
    for part in raw
        .as_ref()
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|part| !part.is_empty())
    {
        let Ok(part) = std::str::from_utf8(part) else {
            invalid.push(quoted(part));
            continue;
        };
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        if let Ok(ip) = part
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            entries.push(HostEntry::Ip(ip));
        } else if is_host_name(part) {
            entries.push(HostEntry::Name(part.to_ascii_lowercase()));
        } else {
            invalid.push(quoted(part.as_bytes()));
        }
    }
    (entries, invalid)
}

fn is_host_or_ip(host: &str) -> bool {
    host.parse::<IpAddr>().is_ok() || is_host_name(host)
}

/// RFC 1123 host name (letters, digits, hyphens and dots; underscores tolerated as real
/// DNS uses them).
pub fn is_host_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

pub(super) fn is_header_safe(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
}

/// A variable's value: unset, its text, or (`Err`) its bytes quoted for a warning.
pub(super) type Text = Option<Result<String, String>>;

/// Says a complaint through `warn`. Out of line and cold, as is every complaint's
/// formatting: a process reads its configuration once, and its code stays resident only
/// as far as it runs (build.rs on resident memory).
#[cold]
#[inline(never)]
pub(super) fn say(warn: &mut dyn FnMut(String), complaint: std::fmt::Arguments<'_>) {
    warn(complaint.to_string());
}

/// A number variable: its value when in `min..=max`, else `default` (said through `warn`).
#[inline(never)]
pub(super) fn number(
    name: &str,
    text: Text,
    (default, min, max): (u64, u64, u64),
    warn: &mut dyn FnMut(String),
) -> u64 {
    match text {
        None => default,
        Some(Ok(raw)) => match raw.trim().parse::<u64>() {
            Ok(value) if (min..=max).contains(&value) => value,
            _ => {
                say(
                    warn,
                    format_args!(
                        "{name}={raw:?} is not a number in {min}..={max}; using {default}"
                    ),
                );
                default
            }
        },
        Some(Err(shown)) => {
            say(
                warn,
                format_args!("{name}={shown} is not valid UTF-8; using {default}"),
            );
            default
        }
    }
}

/// A set value as text; `None` when unset, and when not UTF-8, which is said (`instead`:
/// what is used in its place).
#[inline(never)]
pub(super) fn valid_text(
    lookup: &dyn Fn(&str) -> Option<Vec<u8>>,
    name: &str,
    instead: &str,
    warn: &mut dyn FnMut(String),
) -> Option<String> {
    match text_of(lookup, name)? {
        Ok(raw) => Some(raw),
        Err(shown) => {
            say(
                warn,
                format_args!("{name}={shown} is not valid UTF-8; {instead}"),
            );
            None
        }
    }
}

/// `NAME=` (an env file or compose file easily leaves one) means unset.
#[inline(never)]
pub(super) fn set_value(lookup: &dyn Fn(&str) -> Option<Vec<u8>>, name: &str) -> Option<Vec<u8>> {
    lookup(name).filter(|raw| !is_blank(raw))
}

/// A set value is read as text; one that is not UTF-8 is malformed: `Err` carries it
/// quoted for the warning.
#[inline(never)]
pub(super) fn text_of(lookup: &dyn Fn(&str) -> Option<Vec<u8>>, name: &str) -> Text {
    set_value(lookup, name).map(|raw| String::from_utf8(raw).map_err(|bad| quoted(bad.as_bytes())))
}
