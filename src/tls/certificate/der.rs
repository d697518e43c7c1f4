//! A minimal DER writer: definite lengths, constructed values built by closures.

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::certificate::oid;

    fn encoded_length(length: usize) -> Vec<u8> {
        let mut out = Vec::new();
        encode_length(length, &mut out);
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
        let mut writer = Writer::new();
        writer.element(OCTET_STRING, &[0xab; 200]);
        let bytes = writer.into_bytes();
        assert_eq!(&bytes[..3], [0x04, 0x81, 200]);
        assert_eq!(bytes.len(), 203);
    }

    fn encoded_integer(big_endian: &[u8]) -> Vec<u8> {
        let mut writer = Writer::new();
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
        let mut writer = Writer::new();
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
}
