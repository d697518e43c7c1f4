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
    let (setup, level, warnings) = run_bytes(&[("LUNAR_INTERCEPTOR_LOG_TARGET", b"sys\xfflog")]);
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
        ("LUNAR_PROXY_CA_FILE", b"/etc/lunar/ca\xff.pem"),
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
    assert_eq!(warnings.len(), 11, "{warnings:?}");
    assert!(
        warnings.iter().all(|w| w.contains("not valid UTF-8")),
        "{warnings:?}"
    );
    assert_eq!(level, LogLevel::Warn);
    assert_eq!(config.handshake_port, DEFAULT_HANDSHAKE_PORT);
    assert!(!config.proxy_tls);
    assert_eq!(config.tenant_id, "unknown");
    assert_eq!(config.proxy_ca_file, None);
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
