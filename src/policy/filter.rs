//! The traffic filter: which destinations go through Lunar Proxy (contract, "Traffic filter").

use super::config::HostEntry;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why a destination was judged as it was; shown in DEBUG lines and asserted by tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    HeaderAllow,
    HeaderDeny,
    AllowList,
    NotInAllowList,
    BlockList,
    External,
    Internal,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reason::HeaderAllow => "x-lunar-allow: true",
            Reason::HeaderDeny => "x-lunar-allow: false",
            Reason::AllowList => "allow list",
            Reason::NotInAllowList => "not in allow list",
            Reason::BlockList => "block list",
            Reason::External => "external",
            Reason::Internal => "internal",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Divert(Reason),
    Direct(Reason),
}

pub struct Lists<'a> {
    pub allow: Option<&'a [HostEntry]>,
    pub block: &'a [HostEntry],
}

/// A destination as far as we know it: the address, and the name it was reached by (from
/// `getaddrinfo` or the request's `Host` header), lower case, without port.
#[derive(Debug, Clone, Copy)]
pub struct Destination<'a> {
    pub ip: IpAddr,
    pub name: Option<&'a str>,
}

pub fn judge(lists: &Lists<'_>, destination: &Destination<'_>, header: Option<bool>) -> Verdict {
    match header {
        Some(true) => return Verdict::Divert(Reason::HeaderAllow),
        Some(false) => return Verdict::Direct(Reason::HeaderDeny),
        None => {}
    }
    if let Some(allow) = lists.allow {
        return if matches_any(allow, destination) {
            Verdict::Divert(Reason::AllowList)
        } else {
            Verdict::Direct(Reason::NotInAllowList)
        };
    }
    if matches_any(lists.block, destination) {
        Verdict::Direct(Reason::BlockList)
    } else if is_internal(destination.ip) {
        Verdict::Direct(Reason::Internal)
    } else {
        Verdict::Divert(Reason::External)
    }
}

fn matches_any(entries: &[HostEntry], destination: &Destination<'_>) -> bool {
    entries.iter().any(|entry| match entry {
        HostEntry::Ip(ip) => canonical(*ip) == canonical(destination.ip),
        HostEntry::Name(name) => destination
            .name
            .is_some_and(|seen| seen.eq_ignore_ascii_case(name)),
    })
}

/// v4-mapped IPv6 addresses are their IPv4 address for every purpose here.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

pub fn is_internal(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => is_internal_v6(v6),
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    a == 10
        || a == 127
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 168)
        || (a == 169 && b == 254)
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::config::parse_host_list;

    fn dest(ip: &str, name: Option<&'static str>) -> Destination<'static> {
        Destination {
            ip: ip.parse().unwrap(),
            name,
        }
    }

    fn list(raw: &str) -> Vec<HostEntry> {
        parse_host_list(raw).0
    }

    #[test]
    fn external_default() {
        let lists = Lists {
            allow: None,
            block: &[],
        };
        assert_eq!(
            judge(&lists, &dest("203.0.113.10", None), None),
            Verdict::Divert(Reason::External)
        );
        for internal in [
            "10.1.2.3",
            "127.0.0.1",
            "172.16.0.1",
            "172.31.255.1",
            "192.168.1.1",
            "169.254.1.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert_eq!(
                judge(&lists, &dest(internal, None), None),
                Verdict::Direct(Reason::Internal),
                "{internal}"
            );
        }
        for external in [
            "172.15.0.1",
            "172.32.0.1",
            "8.8.8.8",
            "2001:db8::1",
            "::ffff:203.0.113.1",
        ] {
            assert_eq!(
                judge(&lists, &dest(external, None), None),
                Verdict::Divert(Reason::External),
                "{external}"
            );
        }
    }

    #[test]
    fn allow_list_only_and_includes_internal() {
        let allow = list("api.example.test,127.0.0.2");
        let lists = Lists {
            allow: Some(&allow),
            block: &[],
        };
        assert_eq!(
            judge(
                &lists,
                &dest("203.0.113.10", Some("api.example.test")),
                None
            ),
            Verdict::Divert(Reason::AllowList)
        );
        assert_eq!(
            judge(
                &lists,
                &dest("203.0.113.10", Some("API.Example.Test")),
                None
            ),
            Verdict::Divert(Reason::AllowList)
        );
        assert_eq!(
            judge(&lists, &dest("127.0.0.2", None), None),
            Verdict::Divert(Reason::AllowList)
        );
        assert_eq!(
            judge(&lists, &dest("::ffff:127.0.0.2", None), None),
            Verdict::Divert(Reason::AllowList)
        );
        assert_eq!(
            judge(
                &lists,
                &dest("203.0.113.11", Some("other.example.test")),
                None
            ),
            Verdict::Direct(Reason::NotInAllowList)
        );
    }

    #[test]
    fn block_list() {
        let block = list("other.example.test,203.0.113.12");
        let lists = Lists {
            allow: None,
            block: &block,
        };
        assert_eq!(
            judge(
                &lists,
                &dest("203.0.113.11", Some("other.example.test")),
                None
            ),
            Verdict::Direct(Reason::BlockList)
        );
        assert_eq!(
            judge(&lists, &dest("203.0.113.12", None), None),
            Verdict::Direct(Reason::BlockList)
        );
        assert_eq!(
            judge(
                &lists,
                &dest("203.0.113.10", Some("api.example.test")),
                None
            ),
            Verdict::Divert(Reason::External)
        );
    }

    #[test]
    fn header_decides_first() {
        let block = list("api.example.test");
        let lists = Lists {
            allow: None,
            block: &block,
        };
        let api = dest("203.0.113.10", Some("api.example.test"));
        assert_eq!(
            judge(&lists, &api, Some(true)),
            Verdict::Divert(Reason::HeaderAllow)
        );
        assert_eq!(
            judge(&lists, &dest("203.0.113.9", None), Some(false)),
            Verdict::Direct(Reason::HeaderDeny)
        );
    }
}
