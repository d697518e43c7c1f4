//! `lunar-intercept doctor`: the library's own checks of the configuration and the path to
//! the proxy, asked of the library itself (`dlopen` by the command) so that the answer
//! comes from the code a program's connect runs: the same files, variables, defaults,
//! name resolution, bounded connect and handshake.
//!
//! The report is text: `  NAME = value  (origin)` lines for the configuration, then one
//! line per check, `PASS|WARN|FAIL  what: detail`, each WARN and FAIL followed by a
//! `      -> advice` line. The command prints it and exits 0 only when no line is FAIL.

use crate::policy::config::{Config, HostEntry, LogLevel, LogTarget, Logging, Setup};
use crate::policy::source::{self, Origin, Source};
use crate::proxy::handshake::{self, Failure, TlsSession};
use crate::proxy::tls_link::{Link, Trust};
use crate::sys::socket::{connect_bounded, family_of, OwnSocket};
use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

/// Writes the report into `out` (at most `room` bytes, not NUL-terminated); returns its
/// full length.
///
/// # Safety
/// `out` has room for `room` bytes.
#[no_mangle]
pub unsafe extern "C" fn lunar_intercept_doctor(out: *mut u8, room: usize) -> usize {
    let text = crate::guard::shielded(report, || "FAIL  doctor: internal error\n".into());
    let n = text.len().min(room);
    // SAFETY: `out` has room for `room` >= n bytes.
    unsafe { std::ptr::copy_nonoverlapping(text.as_ptr(), out, n) };
    text.len()
}

fn report() -> String {
    let mut report = Report::default();
    let mut file_warnings = Vec::new();
    let origins = source::origins(&mut |w| file_warnings.push(w));
    let mut warnings = Vec::new();
    let (setup, logging) = source::read(Source::Environment, &mut |w| warnings.push(w));
    report.line("configuration, as a process started from here reads it:");
    for (name, origin, raw) in &origins {
        let shown = match origin {
            Origin::Unset => format!("  {name}  unset"),
            _ => format!("  {name} = {}", String::from_utf8_lossy(raw)),
        };
        let from = match origin {
            Origin::Environment => "environment".to_string(),
            Origin::File(path) => format!("file {path}"),
            Origin::Unset => format!("default: {}", default_of(name)),
        };
        report.line(&format!("{shown:<55} ({from})"));
    }
    // The file's own complaints come again from `read`: say each once.
    warnings.retain(|w| !file_warnings.contains(w));
    for warning in file_warnings.iter().chain(&warnings) {
        report.check(
            Status::Warn,
            "configuration",
            warning,
            "fix the value: a process says this once on its standard error or syslog",
        );
    }
    match setup {
        Setup::Active(config) => {
            report.check(
                Status::Pass,
                "configuration",
                &summary(&config, logging),
                "",
            );
            ca_file_check(&mut report, &config);
            proxy_checks(&mut report, &config);
        }
        Setup::Unset => report.check(
            Status::Fail,
            "configuration",
            "LUNAR_PROXY_HOST is set neither in the environment nor in the configuration file: \
             the library is inert",
            "set LUNAR_PROXY_HOST=host:port (environment or /etc/lunar/interceptor.conf)",
        ),
        Setup::SecureExecution | Setup::Disabled => report.check(
            Status::Fail,
            "configuration",
            "the library disables itself with this configuration (the warnings above)",
            "fix the values the warnings name",
        ),
    }
    setuid_check(&mut report);
    report.text
}

fn proxy_checks(report: &mut Report, config: &Config) {
    let host = &config.proxy.host;
    let started = Instant::now();
    let addresses = match crate::proxy::resolve_host(host) {
        Ok(addresses) => addresses,
        Err(why) => {
            return report.check(
                Status::Fail,
                "proxy address",
                &why,
                "check the name (getent hosts NAME) or give the proxy's IP address",
            );
        }
    };
    let timeout = config.connect_timeout_ms;
    let ip = first_accepting(&addresses, config.proxy.port, timeout);
    if host.parse::<IpAddr>().is_err() {
        let took = millis(started);
        let all: Vec<String> = addresses.iter().map(IpAddr::to_string).collect();
        report.check(
            Status::Pass,
            "proxy address",
            &format!(
                "{host} resolves to {} ({took:.1} ms); checked: {ip}",
                all.join(", ")
            ),
            "",
        );
    }
    let traffic = SocketAddr::new(ip, config.proxy.port);
    let trust = config.proxy_tls.then(|| Trust {
        host,
        ca_file: config.proxy_ca_file.as_deref(),
    });
    if !timed_connect(report, "proxy traffic port", traffic, timeout, trust) {
        return;
    }
    let handshake_at = SocketAddr::new(ip, config.handshake_port);
    let host_header = match host.contains(':') {
        true => format!("[{host}]:{}", config.handshake_port),
        false => format!("{host}:{}", config.handshake_port),
    };
    let shown = match trust {
        Some(_) => format!("https://{handshake_at}"),
        None => handshake_at.to_string(),
    };
    let started = Instant::now();
    let mut on_tls = |session: TlsSession| {
        report.check(
            Status::Pass,
            "proxy TLS",
            &format!(
                "{host_header} verified ({}) against {} in {:.1} ms",
                session.description,
                trust.map(|t| t.anchors()).unwrap_or_default(),
                session.took.as_secs_f64() * 1000.0
            ),
            "",
        )
    };
    let outcome = handshake::run(
        handshake_at,
        &host_header,
        &config.tenant_id,
        timeout,
        trust,
        &mut on_tls,
    );
    match outcome {
        Ok(answer) => report.check(
            Status::Pass,
            "handshake",
            &format!(
                "GET /handshake on {shown} answered in {:.1} ms: managed: {}, tenant: {}",
                millis(started),
                answer.managed,
                config.tenant_id
            ),
            "",
        ),
        Err(Failure::Tls(why)) => report.check(
            Status::Fail,
            "proxy TLS",
            &format!("{host_header} ({handshake_at}): {why}"),
            "the proxy must serve a certificate for the host of LUNAR_PROXY_HOST, \
             signed by a CA of the system's store or of LUNAR_PROXY_CA_FILE",
        ),
        Err(Failure::Other(why)) => report.check(
            Status::Fail,
            "handshake",
            &format!("GET /handshake on {shown}: {why}"),
            "is Lunar Proxy's handshake port LUNAR_HANDSHAKE_PORT (default 8081)? \
             Until it answers, requests go directly to their destinations",
        ),
    }
}

/// Of a name's addresses, the first whose traffic port takes a connect (the library's
/// handshake tries them in this order and keeps the one that answers); else the first.
fn first_accepting(addresses: &[IpAddr], port: u16, timeout_ms: u64) -> IpAddr {
    let accepts = |ip: IpAddr| {
        let target = SocketAddr::new(ip, port);
        OwnSocket::open(target).is_ok_and(|socket| {
            connect_bounded(socket.fd(), family_of(target), target, timeout_ms).is_ok()
        })
    };
    match addresses {
        [only] => *only,
        several => several
            .iter()
            .copied()
            .find(|ip| accepts(*ip))
            .unwrap_or(several[0]),
    }
}

/// A TCP connect to `target` bounded by the configured timeout, as a diverted connect is,
/// and the TLS handshake a diverted connection makes there when `trust` is given.
fn timed_connect(
    report: &mut Report,
    what: &str,
    target: SocketAddr,
    timeout_ms: u64,
    trust: Option<Trust<'_>>,
) -> bool {
    let started = Instant::now();
    let deadline = started + std::time::Duration::from_millis(timeout_ms);
    let socket = OwnSocket::open(target);
    let outcome = socket
        .as_ref()
        .map_err(|errno| *errno)
        .and_then(|socket| connect_bounded(socket.fd(), family_of(target), target, timeout_ms));
    match outcome {
        Ok(()) => {
            let took = millis(started);
            let mut shown = format!("TCP connect to {target} in {took:.1} ms");
            if let (Some(trust), Ok(socket)) = (trust, &socket) {
                let started = Instant::now();
                match Link::connect(socket.fd(), trust, deadline) {
                    Ok(link) => shown.push_str(&format!(
                        ", TLS verified ({}) in {:.1} ms",
                        link.description(),
                        millis(started)
                    )),
                    Err(why) => {
                        report.check(
                            Status::Fail,
                            what,
                            &format!("TLS to {target}: {why}"),
                            "the proxy's traffic port must speak TLS with a certificate for \
                             the host of LUNAR_PROXY_HOST, signed by a CA of the system's \
                             store or of LUNAR_PROXY_CA_FILE",
                        );
                        return false;
                    }
                }
            }
            report.check(Status::Pass, what, &shown, "");
            true
        }
        Err(errno) => {
            let why = match errno {
                libc::ETIMEDOUT => format!("no answer within {timeout_ms} ms"),
                _ => std::io::Error::from_raw_os_error(errno).to_string(),
            };
            report.check(
                Status::Fail,
                what,
                &format!("TCP connect to {target}: {why}"),
                "is Lunar Proxy running and reachable from here? Until it is, requests go \
                 directly to their destinations",
            );
            false
        }
    }
}

/// `LUNAR_PROXY_CA_FILE` names a readable file (whether it holds certificates, the TLS
/// check says).
fn ca_file_check(report: &mut Report, config: &Config) {
    let Some(file) = &config.proxy_ca_file else {
        return;
    };
    if let Err(why) = std::fs::File::open(file) {
        report.check(
            Status::Warn,
            "configuration",
            &format!("LUNAR_PROXY_CA_FILE={file} cannot be read: {why}"),
            "name a PEM file of the CA that signed the proxy's certificate, readable by \
             every program that loads the library",
        );
    }
}

/// What a setuid or setgid program would do: it reads only a root-owned file.
fn setuid_check(report: &mut Report) {
    let mut warnings = Vec::new();
    let (setup, _) = source::read(Source::SecureExecution, &mut |w| warnings.push(w));
    let (status, detail, advice) = match setup {
        Setup::Active(config) => (
            Status::Pass,
            format!(
                "diverted through {}:{} (the file {} alone)",
                config.proxy.host,
                config.proxy.port,
                source::DEFAULT_PATH
            ),
            "",
        ),
        _ if !warnings.is_empty() => (
            Status::Warn,
            format!("inert: {}", warnings.join("; ")),
            "make the file owned by root and writable by root alone (chmod 644)",
        ),
        _ => (
            Status::Pass,
            format!(
                "inert (their environment is never read; {} gives no proxy)",
                source::DEFAULT_PATH
            ),
            "",
        ),
    };
    report.check(status, "setuid programs", &detail, advice);
}

fn summary(config: &Config, logging: Logging) -> String {
    let level = match logging.level {
        LogLevel::Error => "ERROR",
        LogLevel::Warn => "WARNING",
        LogLevel::Info => "INFO",
        LogLevel::Debug => "DEBUG",
    };
    let target = match logging.target {
        LogTarget::Stderr => "stderr",
        LogTarget::Syslog => "syslog",
    };
    let hosts = |list: &[HostEntry]| {
        list.iter()
            .map(|entry| match entry {
                HostEntry::Ip(ip) => ip.to_string(),
                HostEntry::Name(name) => name.clone(),
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    let filter = match &config.allow_list {
        Some(allowed) => format!("only {}", hosts(allowed)),
        None if config.block_list.is_empty() => "every host".to_string(),
        None => format!("every host but {}", hosts(&config.block_list)),
    };
    let ports: Vec<String> = config.intercept_ports.iter().map(u16::to_string).collect();
    format!(
        "proxy {}:{} (handshake port {}), ports {}, {filter}, logs {level} to {target}",
        config.proxy.host,
        config.proxy.port,
        config.handshake_port,
        ports.join(",")
    )
}

/// What an unset variable means (README, Configuration).
fn default_of(name: &str) -> &'static str {
    match name {
        "LUNAR_PROXY_HOST" => "none, the library is inert",
        "LUNAR_HANDSHAKE_PORT" => "8081",
        "LUNAR_PROXY_SUPPORT_TLS" => "0",
        "LUNAR_PROXY_CA_FILE" => "none, the system's CA store alone",
        "LUNAR_TENANT_ID" => "unknown",
        "LUNAR_ALLOW_LIST" | "LUNAR_BLOCK_LIST" => "none",
        "LUNAR_ENTER_COOLDOWN_AFTER_ATTEMPTS" => "5",
        "LUNAR_EXIT_COOLDOWN_AFTER_SEC" => "10",
        "LUNAR_INTERCEPTOR_LOG_LEVEL" => "WARNING",
        "LUNAR_INTERCEPTOR_LOG_TARGET" => "stderr",
        "LUNAR_INTERCEPT_PORTS" => "80,443",
        "LUNAR_PROXY_CONNECT_TIMEOUT_MS" => "500",
        "LUNAR_REPLAY_MAX_BYTES" => "1048576",
        "LUNAR_RETRY_MAX_DELAY_SEC" => "60",
        "LUNAR_RETRY_MAX_ATTEMPTS" => "10",
        _ => "?",
    }
}

fn millis(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

#[derive(Clone, Copy)]
enum Status {
    Pass,
    Warn,
    Fail,
}

#[derive(Default)]
struct Report {
    text: String,
}

impl Report {
    fn line(&mut self, line: &str) {
        self.text.push_str(line);
        self.text.push('\n');
    }

    fn check(&mut self, status: Status, what: &str, detail: &str, advice: &str) {
        let label = match status {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        };
        let _ = writeln!(self.text, "{label}  {what}: {detail}");
        if !advice.is_empty() {
            let _ = writeln!(self.text, "      -> {advice}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::config::{
        DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_COOLDOWN_ATTEMPTS, DEFAULT_COOLDOWN_SECS,
        DEFAULT_HANDSHAKE_PORT, DEFAULT_REPLAY_MAX_BYTES, DEFAULT_RETRY_MAX_ATTEMPTS,
        DEFAULT_RETRY_MAX_DELAY_SECS, VARIABLES,
    };

    #[test]
    fn every_variable_has_its_default_said() {
        for name in VARIABLES {
            assert_ne!(default_of(name), "?", "{name}");
        }
        // The numbers said are the numbers used.
        assert_eq!(
            default_of("LUNAR_HANDSHAKE_PORT"),
            DEFAULT_HANDSHAKE_PORT.to_string()
        );
        assert_eq!(
            default_of("LUNAR_ENTER_COOLDOWN_AFTER_ATTEMPTS"),
            DEFAULT_COOLDOWN_ATTEMPTS.to_string()
        );
        assert_eq!(
            default_of("LUNAR_EXIT_COOLDOWN_AFTER_SEC"),
            DEFAULT_COOLDOWN_SECS.to_string()
        );
        assert_eq!(
            default_of("LUNAR_PROXY_CONNECT_TIMEOUT_MS"),
            DEFAULT_CONNECT_TIMEOUT_MS.to_string()
        );
        assert_eq!(
            default_of("LUNAR_REPLAY_MAX_BYTES"),
            DEFAULT_REPLAY_MAX_BYTES.to_string()
        );
        assert_eq!(
            default_of("LUNAR_RETRY_MAX_DELAY_SEC"),
            DEFAULT_RETRY_MAX_DELAY_SECS.to_string()
        );
        assert_eq!(
            default_of("LUNAR_RETRY_MAX_ATTEMPTS"),
            DEFAULT_RETRY_MAX_ATTEMPTS.to_string()
        );
    }

    #[test]
    fn advice_follows_warnings_and_failures_only() {
        let mut report = Report::default();
        report.check(Status::Pass, "a", "fine", "");
        report.check(Status::Fail, "b", "broken", "fix it");
        assert_eq!(
            report.text,
            "PASS  a: fine\nFAIL  b: broken\n      -> fix it\n"
        );
    }
}
