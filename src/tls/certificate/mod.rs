//! A synthetic leaf certificate for "virtual" TLS sessions.
//!
//! In a virtual session no TLS runs on the wire: the library hands the program's plaintext
//! to the proxy. Clients such as curl and wget still ask for the peer certificate after the
//! handshake and check its subjectAltName against the host they dialled, and its dates
//! against the clock. They never check the signature, because the library reports the
//! verification result as OK. So the certificate only has to be well-formed X.509 v3 that
//! names the host and is valid now; its signature is a syntactically valid placeholder.

mod dates;
mod der;
#[cfg(test)]
mod tool_checks;

use crate::hot_data::hot_bytes;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use dates::{CivilTime, SECONDS_PER_DAY};

/// Shown to a user who inspects the certificate, so the name says where it comes from.
const ISSUER_COMMON_NAME: &[u8] = hot_bytes!(b"Lunar Proxy virtual session");
// Small integers the certificate writes: read from memory where a call is not inlined
// (the build's profile decides), so with the hot data too.
const VERSION_3: &[u8] = hot_bytes!(&[2]);
const ONE: &[u8] = hot_bytes!(&[1]);

/// notBefore lies a day back so that a client whose clock runs behind still accepts it.
const NOT_BEFORE_SLACK_SECONDS: u64 = SECONDS_PER_DAY;

const VALIDITY_SECONDS: u64 = 365 * SECONDS_PER_DAY;

/// ub-common-name (RFC 5280): longer names are cut in the CN; the SAN carries them whole.
const COMMON_NAME_MAX_BYTES: usize = 64;

/// An uncompressed P-256 point (0x04 || X || Y), generated once with
/// `openssl ecparam -name prime256v1 -genkey | openssl ec -pubout -outform DER`.
/// The private key was thrown away: nothing is ever signed with it. It must still be a
/// point on the curve, because TLS stacks decode the key when they load the certificate.
const PUBLIC_POINT_P256: &[u8] = hot_bytes!(&[
    0x04, 0x65, 0x7b, 0x44, 0xa7, 0x13, 0x1e, 0x03, 0x2d, 0x48, 0xa2, 0x6b, 0x69, 0x59, 0xe6, 0xac,
    0x9f, 0x89, 0x6b, 0x66, 0xbf, 0xca, 0xbe, 0x88, 0xb8, 0xf4, 0xd8, 0x8a, 0xa0, 0x1b, 0xf7, 0xb8,
    0xa8, 0x71, 0x32, 0x47, 0xb0, 0x8a, 0x31, 0x21, 0x6b, 0xa6, 0x45, 0xf0, 0xe6, 0x3e, 0xdd, 0x77,
    0xc1, 0xc1, 0xba, 0x3c, 0x7a, 0xd9, 0x2c, 0xd5, 0x5e, 0x56, 0x95, 0xb4, 0xac, 0x53, 0x62, 0x64,
    0xc6,
]);

/// Object identifiers, as arcs. Like the other constants read for each virtual session,
/// with the hot data (`crate::hot_data`).
mod oid {
    use crate::hot_data::hot;
    pub const ECDSA_WITH_SHA256: &[u64] = hot!([u64; 7] = [1, 2, 840, 10045, 4, 3, 2]);
    pub const EC_PUBLIC_KEY: &[u64] = hot!([u64; 6] = [1, 2, 840, 10045, 2, 1]);
    pub const PRIME256V1: &[u64] = hot!([u64; 7] = [1, 2, 840, 10045, 3, 1, 7]);
    pub const COMMON_NAME: &[u64] = hot!([u64; 4] = [2, 5, 4, 3]);
    pub const BASIC_CONSTRAINTS: &[u64] = hot!([u64; 4] = [2, 5, 29, 19]);
    pub const KEY_USAGE: &[u64] = hot!([u64; 4] = [2, 5, 29, 15]);
    pub const EXT_KEY_USAGE: &[u64] = hot!([u64; 4] = [2, 5, 29, 37]);
    pub const SUBJECT_ALT_NAME: &[u64] = hot!([u64; 4] = [2, 5, 29, 17]);
    pub const SERVER_AUTH: &[u64] = hot!([u64; 9] = [1, 3, 6, 1, 5, 5, 7, 3, 1]);
}

/// A leaf certificate, DER, that names `host` (a DNS name, or an IPv4/IPv6 literal) in its
/// subject CN and subjectAltName; valid from `now_unix - 86400` to `now_unix + 365 days`.
///
/// An IPv6 literal may come bracketed (`[::1]`) and with a zone (`fe80::1%eth0`); the SAN
/// then holds the 16 address octets. Anything that is not an IP literal is a dNSName,
/// written as given (clients compare DNS names without regard to case).
pub fn synthetic_leaf_der(host: &str, now_unix: u64) -> Vec<u8> {
    let name = HostName::classify(host);
    let mut certificate = der::Writer::new();
    certificate.sequence(|certificate| {
        write_tbs_certificate(certificate, &name, now_unix);
        write_signature_algorithm(certificate);
        certificate.bit_string(0, &placeholder_signature());
    });
    certificate.into_bytes()
}

/// How the host appears in the certificate.
struct HostName<'a> {
    /// The subject CN: the host as given (without IPv6 brackets), cut to 64 bytes.
    common_name: &'a str,
    alt_name: AltName<'a>,
}

enum AltName<'a> {
    Dns(&'a str),
    Ip(IpAddr),
    /// An empty host: RFC 5280 forbids both an empty dNSName and an empty SAN, so the
    /// extension is left out.
    None,
}

impl<'a> HostName<'a> {
    fn classify(host: &'a str) -> Self {
        let unbracketed = host
            .strip_prefix('[')
            .and_then(|inner| inner.strip_suffix(']'))
            .unwrap_or(host);
        let alt_name = if let Ok(v4) = unbracketed.parse::<Ipv4Addr>() {
            AltName::Ip(IpAddr::V4(v4))
        } else if let Some(v6) = parse_ipv6_ignoring_zone(unbracketed) {
            AltName::Ip(IpAddr::V6(v6))
        } else if host.is_empty() {
            AltName::None
        } else {
            AltName::Dns(host)
        };
        let common_name = match alt_name {
            AltName::Ip(_) => unbracketed,
            AltName::Dns(_) | AltName::None => host,
        };
        HostName {
            common_name: truncate_at_char_boundary(common_name, COMMON_NAME_MAX_BYTES),
            alt_name,
        }
    }
}

/// A link-local literal carries its interface (`fe80::1%eth0`); the certificate names only
/// the address.
fn parse_ipv6_ignoring_zone(text: &str) -> Option<Ipv6Addr> {
    let address = text
        .split_once('%')
        .map_or(text, |(address, _zone)| address);
    address.parse().ok()
}

/// The CN is a UTF8String, so a cut must not split a character.
fn truncate_at_char_boundary(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn write_tbs_certificate(out: &mut der::Writer, name: &HostName<'_>, now_unix: u64) {
    out.sequence(|tbs| {
        // version [0] EXPLICIT INTEGER: 2 means v3, which extensions require.
        tbs.nested(der::CONTEXT_CONSTRUCTED_0, |version| {
            version.unsigned_integer(VERSION_3);
        });
        tbs.unsigned_integer(&serial_number(name.common_name, now_unix));
        write_signature_algorithm(tbs);
        write_common_name_only(tbs, ISSUER_COMMON_NAME);
        tbs.sequence(|validity| {
            write_time(validity, now_unix.saturating_sub(NOT_BEFORE_SLACK_SECONDS));
            write_time(validity, now_unix.saturating_add(VALIDITY_SECONDS));
        });
        write_common_name_only(tbs, name.common_name.as_bytes());
        write_subject_public_key_info(tbs);
        tbs.nested(der::CONTEXT_CONSTRUCTED_3, |extensions| {
            extensions.sequence(|extensions| write_extensions(extensions, &name.alt_name));
        });
    });
}

/// Serial numbers only need to differ between certificates from one issuer. Hashing the
/// host and the time keeps two certificates for the same host (made at different times,
/// so with different dates) from sharing a serial, which some certificate stores reject.
fn serial_number(common_name: &str, now_unix: u64) -> [u8; 8] {
    let mut serial = fnv1a_64(&[common_name.as_bytes(), &now_unix.to_be_bytes()]).to_be_bytes();
    // 0b01xx_xxxx: positive (high bit clear) and minimal (no leading zero octet to drop).
    serial[0] = (serial[0] & 0x3f) | 0x40;
    serial
}

fn fnv1a_64(parts: &[&[u8]]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    parts
        .iter()
        .flat_map(|part| part.iter())
        .fold(OFFSET_BASIS, |hash, &byte| {
            (hash ^ u64::from(byte)).wrapping_mul(PRIME)
        })
}

/// A Time (validity): UTCTime or GeneralizedTime, as `dates` picks for the instant.
fn write_time(out: &mut der::Writer, unix_seconds: u64) {
    let (tag, text) = CivilTime::from_unix(unix_seconds).tag_and_text();
    out.element(tag, text.as_bytes());
}

/// AlgorithmIdentifier for ecdsa-with-SHA256; RFC 5758 says its parameters are absent.
fn write_signature_algorithm(out: &mut der::Writer) {
    out.sequence(|algorithm| algorithm.object_identifier(oid::ECDSA_WITH_SHA256));
}

/// A Name with one RDN: CN = `common_name`.
fn write_common_name_only(out: &mut der::Writer, common_name: &[u8]) {
    out.sequence(|name| {
        name.nested(der::SET, |relative_name| {
            relative_name.sequence(|attribute| {
                attribute.object_identifier(oid::COMMON_NAME);
                attribute.element(der::UTF8_STRING, common_name);
            });
        });
    });
}

fn write_subject_public_key_info(out: &mut der::Writer) {
    out.sequence(|key_info| {
        key_info.sequence(|algorithm| {
            algorithm.object_identifier(oid::EC_PUBLIC_KEY);
            algorithm.object_identifier(oid::PRIME256V1);
        });
        key_info.bit_string(0, PUBLIC_POINT_P256);
    });
}

fn write_extensions(out: &mut der::Writer, alt_name: &AltName<'_>) {
    // cA defaults to FALSE, and DER leaves defaults out: an empty SEQUENCE.
    write_extension(out, oid::BASIC_CONSTRAINTS, true, |value| {
        value.sequence(|_| {});
    });
    // digitalSignature is bit 0, the high bit of the first octet; the other 7 are unused.
    write_extension(out, oid::KEY_USAGE, true, |value| {
        value.bit_string(7, &[0x80]);
    });
    write_extension(out, oid::EXT_KEY_USAGE, false, |value| {
        value.sequence(|purposes| purposes.object_identifier(oid::SERVER_AUTH));
    });
    let alt_name = match alt_name {
        AltName::Dns(dns_name) => (der::CONTEXT_PRIMITIVE_2_DNS_NAME, dns_name.as_bytes()),
        AltName::Ip(IpAddr::V4(v4)) => (der::CONTEXT_PRIMITIVE_7_IP_ADDRESS, &v4.octets()[..]),
        AltName::Ip(IpAddr::V6(v6)) => (der::CONTEXT_PRIMITIVE_7_IP_ADDRESS, &v6.octets()[..]),
        AltName::None => return,
    };
    // Not critical: the subject is not empty (RFC 5280 4.2.1.6).
    write_extension(out, oid::SUBJECT_ALT_NAME, false, |value| {
        value.sequence(|names| names.element(alt_name.0, alt_name.1));
    });
}

/// Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }
/// where the OCTET STRING holds the DER of the extension's own value.
fn write_extension(
    out: &mut der::Writer,
    extension_id: &[u64],
    critical: bool,
    write_value: impl FnOnce(&mut der::Writer),
) {
    out.sequence(|extension| {
        extension.object_identifier(extension_id);
        if critical {
            extension.boolean(true);
        }
        extension.nested(der::OCTET_STRING, write_value);
    });
}

/// Ecdsa-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER } with r = s = 1: well-formed, so
/// parsers accept it, and never checked, because the session reports verification OK.
fn placeholder_signature() -> Vec<u8> {
    let mut signature = der::Writer::new();
    signature.sequence(|values| {
        values.unsigned_integer(ONE);
        values.unsigned_integer(ONE);
    });
    signature.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2023-11-14T22:13:20Z
    pub(super) const SOME_NOW: u64 = 1_700_000_000;

    #[test]
    fn public_key_info_is_what_openssl_generated() {
        // The DER that `openssl ec -pubout -outform DER` printed for the embedded point.
        let mut expected = vec![
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        expected.extend_from_slice(PUBLIC_POINT_P256);
        let mut writer = der::Writer::new();
        write_subject_public_key_info(&mut writer);
        assert_eq!(writer.into_bytes(), expected);
    }

    /// One TLV: (tag, content, what follows).
    fn split_element(bytes: &[u8]) -> (u8, &[u8], &[u8]) {
        assert!(bytes.len() >= 2, "truncated header");
        let tag = bytes[0];
        let (length, header_len) = if bytes[1] < 0x80 {
            (usize::from(bytes[1]), 2)
        } else {
            let octet_count = usize::from(bytes[1] & 0x7f);
            assert!((1..=4).contains(&octet_count), "bad long-form length");
            let octets = &bytes[2..2 + octet_count];
            assert_ne!(octets[0], 0, "long-form length not minimal");
            let length = octets
                .iter()
                .fold(0usize, |length, &byte| length << 8 | usize::from(byte));
            assert!(length >= 0x80, "long form used for a short length");
            (length, 2 + octet_count)
        };
        let content_end = header_len + length;
        assert!(bytes.len() >= content_end, "content runs past its parent");
        (tag, &bytes[header_len..content_end], &bytes[content_end..])
    }

    /// Walks every constructed element and checks that children exactly fill parents.
    fn assert_well_nested(mut bytes: &[u8]) -> usize {
        let mut count = 0;
        while !bytes.is_empty() {
            let (tag, content, rest) = split_element(bytes);
            if tag & 0x20 != 0 {
                assert_well_nested(content);
            }
            count += 1;
            bytes = rest;
        }
        count
    }

    fn children(bytes: &[u8]) -> Vec<(u8, &[u8])> {
        let mut found = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let (tag, content, after) = split_element(rest);
            found.push((tag, content));
            rest = after;
        }
        found
    }

    #[test]
    fn certificate_has_the_x509_shape() {
        let der = synthetic_leaf_der("api.example.test", SOME_NOW);
        let (tag, certificate, trailing) = split_element(&der);
        assert_eq!(tag, der::SEQUENCE);
        assert!(trailing.is_empty());
        assert_eq!(assert_well_nested(certificate), 3);

        let parts = children(certificate);
        let tbs = children(parts[0].1);
        let tags: Vec<u8> = tbs.iter().map(|(tag, _)| *tag).collect();
        assert_eq!(tags, [0xa0, 0x02, 0x30, 0x30, 0x30, 0x30, 0x30, 0xa3]);
        assert_eq!(tbs[0].1, [0x02, 0x01, 0x02], "version v3");
        assert_eq!(tbs[1].1.len(), 8);
        assert!(
            tbs[1].1[0] & 0x80 == 0 && tbs[1].1[0] != 0,
            "serial positive, minimal"
        );

        let validity = children(tbs[4].1);
        assert_eq!(validity[0], (der::UTC_TIME, &b"231113221320Z"[..]));
        assert_eq!(validity[1], (der::UTC_TIME, &b"241113221320Z"[..]));

        // signatureAlgorithm repeats the TBS signature field.
        assert_eq!(parts[1], tbs[2]);
        let signature = parts[2];
        assert_eq!(signature.0, der::BIT_STRING);
        assert_eq!(
            signature.1,
            [0x00, 0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01]
        );
    }

    #[test]
    fn long_names_are_cut_in_the_common_name_only() {
        let long_name = format!("{}.example.test", "a".repeat(57));
        assert_eq!(long_name.len(), 70);
        let name = HostName::classify(&long_name);
        assert_eq!(name.common_name.len(), 64);
        assert!(matches!(name.alt_name, AltName::Dns(dns) if dns == long_name));

        // A cut never splits a UTF-8 character.
        assert_eq!(truncate_at_char_boundary("ééé", 5), "éé");
    }

    #[test]
    fn ip_literals_become_ip_addresses() {
        let v4 = HostName::classify("127.0.0.1");
        assert!(matches!(v4.alt_name, AltName::Ip(IpAddr::V4(ip)) if ip == Ipv4Addr::LOCALHOST));
        let v6 = HostName::classify("[::1]");
        assert!(matches!(v6.alt_name, AltName::Ip(IpAddr::V6(ip)) if ip == Ipv6Addr::LOCALHOST));
        assert_eq!(v6.common_name, "::1");
        let zoned = HostName::classify("fe80::1%eth0");
        assert!(matches!(zoned.alt_name, AltName::Ip(IpAddr::V6(_))));
        // Not a valid IPv4 literal, so it is a (numeric-looking) DNS name.
        let dotted = HostName::classify("1.2.3");
        assert!(matches!(dotted.alt_name, AltName::Dns("1.2.3")));
    }

    #[test]
    fn same_inputs_give_the_same_certificate_and_other_times_another_serial() {
        assert_eq!(
            synthetic_leaf_der("a.test", SOME_NOW),
            synthetic_leaf_der("a.test", SOME_NOW)
        );
        assert_ne!(
            serial_number("a.test", SOME_NOW),
            serial_number("a.test", SOME_NOW + 1)
        );
        assert_ne!(
            serial_number("a.test", SOME_NOW),
            serial_number("b.test", SOME_NOW)
        );
    }

    #[test]
    fn extreme_clocks_still_give_well_formed_certificates() {
        for now in [0, 2_524_608_000, u64::MAX] {
            let der = synthetic_leaf_der("edge.test", now);
            let (_, certificate, trailing) = split_element(&der);
            assert!(trailing.is_empty());
            assert_eq!(assert_well_nested(certificate), 3);
        }
    }
}
