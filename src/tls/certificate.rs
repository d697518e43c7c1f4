//! A synthetic leaf certificate for "virtual" TLS sessions.
//!
//! In a virtual session no TLS runs on the wire: the library hands the program's plaintext
//! to the proxy. Clients such as curl and wget still ask for the peer certificate after the
//! handshake and check its subjectAltName against the host they dialled, and its dates
//! against the clock. They never check the signature, because the library reports the
//! verification result as OK. So the certificate only has to be well-formed X.509 v3 that
//! names the host and is valid now; its signature is a syntactically valid placeholder.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Shown to a user who inspects the certificate, so the name says where it comes from.
const ISSUER_COMMON_NAME: &str = "Lunar Proxy virtual session";

const SECONDS_PER_DAY: u64 = 86_400;

/// notBefore lies a day back so that a client whose clock runs behind still accepts it.
const NOT_BEFORE_SLACK_SECONDS: u64 = SECONDS_PER_DAY;

const VALIDITY_SECONDS: u64 = 365 * SECONDS_PER_DAY;

/// ub-common-name (RFC 5280): longer names are cut in the CN; the SAN carries them whole.
const COMMON_NAME_MAX_BYTES: usize = 64;

/// An uncompressed P-256 point (0x04 || X || Y), generated once with
/// `openssl ecparam -name prime256v1 -genkey | openssl ec -pubout -outform DER`.
/// The private key was thrown away: nothing is ever signed with it. It must still be a
/// point on the curve, because TLS stacks decode the key when they load the certificate.
const PUBLIC_POINT_P256: [u8; 65] = [
    0x04, 0x65, 0x7b, 0x44, 0xa7, 0x13, 0x1e, 0x03, 0x2d, 0x48, 0xa2, 0x6b, 0x69, 0x59, 0xe6, 0xac,
    0x9f, 0x89, 0x6b, 0x66, 0xbf, 0xca, 0xbe, 0x88, 0xb8, 0xf4, 0xd8, 0x8a, 0xa0, 0x1b, 0xf7, 0xb8,
    0xa8, 0x71, 0x32, 0x47, 0xb0, 0x8a, 0x31, 0x21, 0x6b, 0xa6, 0x45, 0xf0, 0xe6, 0x3e, 0xdd, 0x77,
    0xc1, 0xc1, 0xba, 0x3c, 0x7a, 0xd9, 0x2c, 0xd5, 0x5e, 0x56, 0x95, 0xb4, 0xac, 0x53, 0x62, 0x64,
    0xc6,
];

/// Object identifiers, as arcs.
mod oid {
    pub const ECDSA_WITH_SHA256: &[u64] = &[1, 2, 840, 10045, 4, 3, 2];
    pub const EC_PUBLIC_KEY: &[u64] = &[1, 2, 840, 10045, 2, 1];
    pub const PRIME256V1: &[u64] = &[1, 2, 840, 10045, 3, 1, 7];
    pub const COMMON_NAME: &[u64] = &[2, 5, 4, 3];
    pub const BASIC_CONSTRAINTS: &[u64] = &[2, 5, 29, 19];
    pub const KEY_USAGE: &[u64] = &[2, 5, 29, 15];
    pub const EXT_KEY_USAGE: &[u64] = &[2, 5, 29, 37];
    pub const SUBJECT_ALT_NAME: &[u64] = &[2, 5, 29, 17];
    pub const SERVER_AUTH: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 3, 1];
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
            version.unsigned_integer(&[2]);
        });
        tbs.unsigned_integer(&serial_number(name.common_name, now_unix));
        write_signature_algorithm(tbs);
        write_common_name_only(tbs, ISSUER_COMMON_NAME);
        tbs.sequence(|validity| {
            validity.time(now_unix.saturating_sub(NOT_BEFORE_SLACK_SECONDS));
            validity.time(now_unix.saturating_add(VALIDITY_SECONDS));
        });
        write_common_name_only(tbs, name.common_name);
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

/// AlgorithmIdentifier for ecdsa-with-SHA256; RFC 5758 says its parameters are absent.
fn write_signature_algorithm(out: &mut der::Writer) {
    out.sequence(|algorithm| algorithm.object_identifier(oid::ECDSA_WITH_SHA256));
}

/// A Name with one RDN: CN = `common_name`.
fn write_common_name_only(out: &mut der::Writer, common_name: &str) {
    out.sequence(|name| {
        name.nested(der::SET, |relative_name| {
            relative_name.sequence(|attribute| {
                attribute.object_identifier(oid::COMMON_NAME);
                attribute.element(der::UTF8_STRING, common_name.as_bytes());
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
        key_info.bit_string(0, &PUBLIC_POINT_P256);
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
        values.unsigned_integer(&[1]);
        values.unsigned_integer(&[1]);
    });
    signature.into_bytes()
}

/// A calendar instant in UTC (proleptic Gregorian), as X.509 times need it.
#[derive(Debug, PartialEq, Eq)]
struct CivilTime {
    year: u64,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
}

/// 9999-12-31T23:59:59Z: GeneralizedTime has four year digits, and RFC 5280 uses this
/// instant for "no well-defined expiration".
const LATEST_ENCODABLE_UNIX: u64 = 253_402_300_799;

impl CivilTime {
    /// Converts with Howard Hinnant's `civil_from_days`: eras of 400 years (146097 days)
    /// counted from 0000-03-01, so that the leap day falls at the end of each year.
    fn from_unix(unix_seconds: u64) -> Self {
        let seconds = unix_seconds.min(LATEST_ENCODABLE_UNIX);
        let days_since_epoch = seconds / SECONDS_PER_DAY;
        let second_of_day = seconds % SECONDS_PER_DAY;

        const DAYS_FROM_0000_03_01_TO_EPOCH: u64 = 719_468;
        const DAYS_PER_ERA: u64 = 146_097;
        let days = days_since_epoch + DAYS_FROM_0000_03_01_TO_EPOCH;
        let era = days / DAYS_PER_ERA;
        let day_of_era = days % DAYS_PER_ERA; // [0, 146096]
        let year_of_era =
            (day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let month_from_march = (5 * day_of_year + 2) / 153; // [0, 11], 0 = March
        let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
        let month = if month_from_march < 10 {
            month_from_march + 3
        } else {
            month_from_march - 9
        };
        // January and February belong to the next civil year.
        let year = era * 400 + year_of_era + u64::from(month <= 2);

        CivilTime {
            year,
            month: month as u8,
            day: day as u8,
            hour: (second_of_day / 3600) as u8,
            minute: (second_of_day / 60 % 60) as u8,
            second: (second_of_day % 60) as u8,
        }
    }

    /// RFC 5280 4.1.2.5: UTCTime for years 1950 through 2049, GeneralizedTime otherwise;
    /// both in UTC ("Z") with seconds and without fractions.
    fn tag_and_text(&self) -> (u8, String) {
        let rest = format!(
            "{:02}{:02}{:02}{:02}{:02}Z",
            self.month, self.day, self.hour, self.minute, self.second
        );
        if (1950..=2049).contains(&self.year) {
            (der::UTC_TIME, format!("{:02}{rest}", self.year % 100))
        } else {
            (der::GENERALIZED_TIME, format!("{:04}{rest}", self.year))
        }
    }
}

/// A minimal DER writer: definite lengths, constructed values built by closures.
mod der {
    pub const BOOLEAN: u8 = 0x01;
    pub const INTEGER: u8 = 0x02;
    pub const BIT_STRING: u8 = 0x03;
    pub const OCTET_STRING: u8 = 0x04;
    pub const OBJECT_IDENTIFIER: u8 = 0x06;
    pub const UTF8_STRING: u8 = 0x0c;
    pub const UTC_TIME: u8 = 0x17;
    pub const GENERALIZED_TIME: u8 = 0x18;
    pub const SEQUENCE: u8 = 0x30;
    pub const SET: u8 = 0x31;
    pub const CONTEXT_CONSTRUCTED_0: u8 = 0xa0;
    pub const CONTEXT_CONSTRUCTED_3: u8 = 0xa3;
    /// GeneralName choices are IMPLICIT: the context tag replaces IA5String / OCTET STRING.
    pub const CONTEXT_PRIMITIVE_2_DNS_NAME: u8 = 0x82;
    pub const CONTEXT_PRIMITIVE_7_IP_ADDRESS: u8 = 0x87;

    #[derive(Default)]
    pub struct Writer {
        bytes: Vec<u8>,
    }

    impl Writer {
        pub fn new() -> Self {
            Self::default()
        }

        pub fn into_bytes(self) -> Vec<u8> {
            self.bytes
        }

        /// Tag, length, then `content` as is.
        pub fn element(&mut self, tag: u8, content: &[u8]) {
            self.bytes.push(tag);
            encode_length(content.len(), &mut self.bytes);
            self.bytes.extend_from_slice(content);
        }

        /// An element whose content is itself DER: a constructed value (SEQUENCE, SET,
        /// explicit tag) or a primitive wrapper such as an extension's OCTET STRING. The
        /// length is known only once `write_content` has run, so the content goes to a
        /// scratch writer first.
        pub fn nested(&mut self, tag: u8, write_content: impl FnOnce(&mut Writer)) {
            let mut content = Writer::new();
            write_content(&mut content);
            self.element(tag, &content.bytes);
        }

        pub fn sequence(&mut self, write_content: impl FnOnce(&mut Writer)) {
            self.nested(SEQUENCE, write_content);
        }

        pub fn boolean(&mut self, value: bool) {
            // DER: TRUE is 0xff, not merely non-zero.
            self.element(BOOLEAN, &[if value { 0xff } else { 0x00 }]);
        }

        /// A non-negative INTEGER from big-endian magnitude octets: leading zeros are
        /// dropped (DER wants the shortest form), and one zero is put back in front when
        /// the high bit is set, which would otherwise make the value negative.
        pub fn unsigned_integer(&mut self, big_endian: &[u8]) {
            let first_significant = big_endian
                .iter()
                .position(|&byte| byte != 0)
                .unwrap_or(big_endian.len());
            let magnitude = &big_endian[first_significant..];
            let mut content = Vec::with_capacity(magnitude.len() + 1);
            if magnitude.first().is_none_or(|&byte| byte & 0x80 != 0) {
                content.push(0x00);
            }
            content.extend_from_slice(magnitude);
            self.element(INTEGER, &content);
        }

        /// The first two arcs share one subidentifier (40 * first + second); every
        /// subidentifier is base 128, most significant group first, with the high bit set
        /// on all groups but the last.
        pub fn object_identifier(&mut self, arcs: &[u64]) {
            assert!(arcs.len() >= 2 && arcs[0] <= 2, "malformed OID {arcs:?}");
            let mut content = Vec::new();
            let subidentifiers =
                std::iter::once(arcs[0] * 40 + arcs[1]).chain(arcs[2..].iter().copied());
            for subidentifier in subidentifiers {
                let group_count = (1..10)
                    .find(|&groups| subidentifier >> (7 * groups) == 0)
                    .unwrap_or(10);
                for group in (0..group_count).rev() {
                    let septet = ((subidentifier >> (7 * group)) & 0x7f) as u8;
                    let more_follow = if group > 0 { 0x80 } else { 0x00 };
                    content.push(septet | more_follow);
                }
            }
            self.element(OBJECT_IDENTIFIER, &content);
        }

        /// A BIT STRING: its first content octet counts the unused bits of the last one.
        pub fn bit_string(&mut self, unused_bits: u8, bits: &[u8]) {
            debug_assert!(unused_bits < 8 && (unused_bits == 0 || !bits.is_empty()));
            let mut content = Vec::with_capacity(bits.len() + 1);
            content.push(unused_bits);
            content.extend_from_slice(bits);
            self.element(BIT_STRING, &content);
        }

        pub fn time(&mut self, unix_seconds: u64) {
            let (tag, text) = super::CivilTime::from_unix(unix_seconds).tag_and_text();
            self.element(tag, text.as_bytes());
        }
    }

    /// Short form below 128 (the length itself); long form otherwise: 0x80 | octet count,
    /// then the length big-endian in as few octets as it needs.
    pub fn encode_length(length: usize, out: &mut Vec<u8>) {
        if length < 0x80 {
            out.push(length as u8);
            return;
        }
        let octets = length.to_be_bytes();
        let first_significant = octets
            .iter()
            .position(|&byte| byte != 0)
            .unwrap_or(octets.len() - 1);
        let significant = &octets[first_significant..];
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::process::{Command, Output};

    const SOME_NOW: u64 = 1_700_000_000; // 2023-11-14T22:13:20Z

    fn encoded_length(length: usize) -> Vec<u8> {
        let mut out = Vec::new();
        der::encode_length(length, &mut out);
        out
    }

    #[test]
    fn length_uses_short_form_below_128_and_minimal_long_form_above() {
        assert_eq!(encoded_length(0), [0x00]);
        assert_eq!(encoded_length(127), [0x7f]);
        assert_eq!(encoded_length(128), [0x81, 0x80]);
        assert_eq!(encoded_length(255), [0x81, 0xff]);
        assert_eq!(encoded_length(256), [0x82, 0x01, 0x00]);
        assert_eq!(encoded_length(65535), [0x82, 0xff, 0xff]);
        assert_eq!(encoded_length(65536), [0x83, 0x01, 0x00, 0x00]);
    }

    #[test]
    fn element_header_grows_with_content() {
        let mut writer = der::Writer::new();
        writer.element(der::OCTET_STRING, &[0xab; 200]);
        let bytes = writer.into_bytes();
        assert_eq!(&bytes[..3], [0x04, 0x81, 200]);
        assert_eq!(bytes.len(), 203);
    }

    fn encoded_integer(big_endian: &[u8]) -> Vec<u8> {
        let mut writer = der::Writer::new();
        writer.unsigned_integer(big_endian);
        writer.into_bytes()
    }

    #[test]
    fn integers_are_minimal_and_positive() {
        assert_eq!(encoded_integer(&[]), [0x02, 0x01, 0x00]);
        assert_eq!(encoded_integer(&[0, 0]), [0x02, 0x01, 0x00]);
        assert_eq!(encoded_integer(&[2]), [0x02, 0x01, 0x02]);
        assert_eq!(encoded_integer(&[0, 0, 0x7f]), [0x02, 0x01, 0x7f]);
        assert_eq!(encoded_integer(&[0x80]), [0x02, 0x02, 0x00, 0x80]);
        assert_eq!(encoded_integer(&[0, 0x01, 0x00]), [0x02, 0x02, 0x01, 0x00]);
    }

    fn encoded_oid(arcs: &[u64]) -> Vec<u8> {
        let mut writer = der::Writer::new();
        writer.object_identifier(arcs);
        writer.into_bytes()
    }

    #[test]
    fn object_identifiers_match_known_encodings() {
        assert_eq!(
            encoded_oid(oid::EC_PUBLIC_KEY),
            [0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]
        );
        assert_eq!(
            encoded_oid(oid::ECDSA_WITH_SHA256),
            [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]
        );
        assert_eq!(
            encoded_oid(oid::COMMON_NAME),
            [0x06, 0x03, 0x55, 0x04, 0x03]
        );
        assert_eq!(
            encoded_oid(oid::SERVER_AUTH),
            [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01]
        );
    }

    #[test]
    fn public_key_info_is_what_openssl_generated() {
        // The DER that `openssl ec -pubout -outform DER` printed for the embedded point.
        let mut expected = vec![
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        expected.extend_from_slice(&PUBLIC_POINT_P256);
        let mut writer = der::Writer::new();
        write_subject_public_key_info(&mut writer);
        assert_eq!(writer.into_bytes(), expected);
    }

    fn civil(year: u64, month: u8, day: u8, hour: u8, minute: u8, second: u8) -> CivilTime {
        CivilTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
        }
    }

    #[test]
    fn civil_time_of_known_instants() {
        assert_eq!(CivilTime::from_unix(0), civil(1970, 1, 1, 0, 0, 0));
        assert_eq!(
            CivilTime::from_unix(951_782_400),
            civil(2000, 2, 29, 0, 0, 0)
        );
        assert_eq!(
            CivilTime::from_unix(951_868_799),
            civil(2000, 2, 29, 23, 59, 59)
        );
        assert_eq!(
            CivilTime::from_unix(951_868_800),
            civil(2000, 3, 1, 0, 0, 0)
        );
        assert_eq!(
            CivilTime::from_unix(SOME_NOW),
            civil(2023, 11, 14, 22, 13, 20)
        );
        assert_eq!(
            CivilTime::from_unix(4_107_542_400),
            civil(2100, 3, 1, 0, 0, 0)
        );
        assert_eq!(
            CivilTime::from_unix(2_524_608_000),
            civil(2050, 1, 1, 0, 0, 0)
        );
        assert_eq!(
            CivilTime::from_unix(LATEST_ENCODABLE_UNIX),
            civil(9999, 12, 31, 23, 59, 59)
        );
        assert_eq!(
            CivilTime::from_unix(u64::MAX),
            civil(9999, 12, 31, 23, 59, 59)
        );
    }

    #[test]
    fn utc_time_through_2049_then_generalized_time() {
        assert_eq!(
            CivilTime::from_unix(0).tag_and_text(),
            (der::UTC_TIME, "700101000000Z".to_string())
        );
        assert_eq!(
            CivilTime::from_unix(951_782_400).tag_and_text(),
            (der::UTC_TIME, "000229000000Z".to_string())
        );
        assert_eq!(
            CivilTime::from_unix(2_524_607_999).tag_and_text(),
            (der::UTC_TIME, "491231235959Z".to_string())
        );
        assert_eq!(
            CivilTime::from_unix(2_524_608_000).tag_and_text(),
            (der::GENERALIZED_TIME, "20500101000000Z".to_string())
        );
        assert_eq!(
            CivilTime::from_unix(u64::MAX).tag_and_text(),
            (der::GENERALIZED_TIME, "99991231235959Z".to_string())
        );
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

    // ---- Cross-checks with real X.509 parsers, when they are installed. ----

    /// A DER file in the temp directory, removed when dropped.
    struct TempDer(PathBuf);

    impl TempDer {
        fn new(label: &str, der: &[u8]) -> Self {
            let path = std::env::temp_dir().join(format!(
                "lunar-certificate-test-{}-{label}.der",
                std::process::id()
            ));
            std::fs::write(&path, der).expect("write temp certificate");
            TempDer(path)
        }

        fn path(&self) -> &str {
            self.0.to_str().expect("temp path is UTF-8")
        }
    }

    impl Drop for TempDer {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// None when the tool is not installed: the caller then skips its check.
    fn run_tool(program: &str, args: &[&str]) -> Option<Output> {
        match Command::new(program).args(args).output() {
            Ok(output) => Some(output),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => panic!("cannot run {program}: {error}"),
        }
    }

    fn successful_stdout(program: &str, args: &[&str]) -> Option<String> {
        let output = run_tool(program, args)?;
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Some(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn tool_is_installed(program: &str, version_args: &[&str]) -> bool {
        let installed = run_tool(program, version_args).is_some();
        if !installed {
            println!("note: `{program}` is not installed; skipping its cross-check");
        }
        installed
    }

    struct Case {
        label: &'static str,
        host: String,
        /// How `openssl x509 -text` shows the SAN.
        openssl_san: String,
        /// How `certtool -i` shows the SAN.
        certtool_san: String,
        /// The openssl option that matches the host against the certificate.
        check_option: &'static str,
    }

    fn cases() -> Vec<Case> {
        let long_name = format!("{}.example.test", "a".repeat(57));
        vec![
            Case {
                label: "dns",
                host: "api.example.test".into(),
                openssl_san: "DNS:api.example.test".into(),
                certtool_san: "DNSname: api.example.test".into(),
                check_option: "-checkhost",
            },
            Case {
                label: "ipv4",
                host: "127.0.0.1".into(),
                openssl_san: "IP Address:127.0.0.1".into(),
                certtool_san: "IPAddress: 127.0.0.1".into(),
                check_option: "-checkip",
            },
            Case {
                label: "ipv6",
                host: "::1".into(),
                openssl_san: "IP Address:0:0:0:0:0:0:0:1".into(),
                certtool_san: "IPAddress: ::1".into(),
                check_option: "-checkip",
            },
            Case {
                label: "long",
                openssl_san: format!("DNS:{long_name}"),
                certtool_san: format!("DNSname: {long_name}"),
                host: long_name,
                check_option: "-checkhost",
            },
        ]
    }

    #[test]
    fn openssl_parses_the_certificate_and_matches_the_host() {
        if !tool_is_installed("openssl", &["version"]) {
            return;
        }
        for case in cases() {
            let file = TempDer::new(
                &format!("openssl-{}", case.label),
                &synthetic_leaf_der(&case.host, SOME_NOW),
            );
            let x509 = |extra: &[&str]| {
                let mut args = vec!["x509", "-inform", "DER", "-in", file.path(), "-noout"];
                args.extend_from_slice(extra);
                successful_stdout("openssl", &args).expect("openssl is installed")
            };

            let text = x509(&["-text"]);
            assert!(
                text.contains(&case.openssl_san),
                "{}: SAN missing in\n{text}",
                case.label
            );
            assert!(
                text.contains("Issuer: CN = Lunar Proxy virtual session"),
                "{text}"
            );
            assert!(text.contains("ecdsa-with-SHA256"), "{text}");
            assert!(text.contains("NIST CURVE: P-256"), "{text}");
            assert!(text.contains("CA:FALSE"), "{text}");
            assert!(text.contains("Digital Signature"), "{text}");
            assert!(text.contains("TLS Web Server Authentication"), "{text}");

            let expected_cn = truncate_at_char_boundary(&case.host, 64);
            let subject = x509(&["-subject"]);
            assert!(
                subject.contains(&format!("CN = {expected_cn}")),
                "{subject}"
            );

            let dates = x509(&["-dates"]);
            assert!(
                dates.contains("notBefore=Nov 13 22:13:20 2023 GMT"),
                "{dates}"
            );
            assert!(
                dates.contains("notAfter=Nov 13 22:13:20 2024 GMT"),
                "{dates}"
            );

            let check = x509(&[case.check_option, &case.host]);
            assert!(check.contains("does match"), "{}: {check}", case.label);
            let other = if case.check_option == "-checkip" {
                "10.9.8.7"
            } else {
                "other.example.test"
            };
            let mismatch = x509(&[case.check_option, other]);
            assert!(
                mismatch.contains("does NOT match"),
                "{}: {mismatch}",
                case.label
            );

            successful_stdout(
                "openssl",
                &["asn1parse", "-inform", "DER", "-in", file.path()],
            )
            .expect("openssl is installed");

            // The embedded point must be on the curve.
            let key = x509(&["-pubkey"]);
            let key_file = std::env::temp_dir().join(format!(
                "lunar-certificate-test-{}-{}-key.pem",
                std::process::id(),
                case.label
            ));
            std::fs::write(&key_file, key).expect("write public key");
            let key_path = key_file.to_str().expect("temp path is UTF-8");
            let key_check = successful_stdout(
                "openssl",
                &["pkey", "-pubin", "-in", key_path, "-pubcheck", "-noout"],
            );
            let _ = std::fs::remove_file(&key_file);
            key_check.expect("openssl is installed");
        }
    }

    #[test]
    fn openssl_accepts_generalized_time_after_2049() {
        if !tool_is_installed("openssl", &["version"]) {
            return;
        }
        let file = TempDer::new(
            "openssl-2050",
            &synthetic_leaf_der("future.test", 2_524_608_000),
        );
        let dates = successful_stdout(
            "openssl",
            &[
                "x509",
                "-inform",
                "DER",
                "-in",
                file.path(),
                "-noout",
                "-dates",
            ],
        )
        .expect("openssl is installed");
        assert!(
            dates.contains("notBefore=Dec 31 00:00:00 2049 GMT"),
            "{dates}"
        );
        assert!(
            dates.contains("notAfter=Jan  1 00:00:00 2051 GMT"),
            "{dates}"
        );
    }

    #[test]
    fn gnutls_certtool_accepts_the_certificate() {
        if !tool_is_installed("certtool", &["--version"]) {
            return;
        }
        for case in cases() {
            let file = TempDer::new(
                &format!("certtool-{}", case.label),
                &synthetic_leaf_der(&case.host, SOME_NOW),
            );
            let info = successful_stdout("certtool", &["-i", "--inder", "--infile", file.path()])
                .expect("certtool is installed");
            assert!(
                info.contains(&case.certtool_san),
                "{}: SAN missing in\n{info}",
                case.label
            );
            assert!(info.contains("Version: 3"), "{info}");
            assert!(
                info.contains("Not Before: Mon Nov 13 22:13:20 UTC 2023"),
                "{info}"
            );
        }
    }
}
