//! What our TLS libraries' I/O callbacks share with the link: the socket, the errno of its
//! last failed call (what a reset during the handshake is reported as), its end, and
//! where the ciphertext read so far stands in TLS's record framing.

use libc::c_int;
use std::cell::Cell;

/// A TLS record's header: type (1), version (2), length (2).
const HEADER: usize = 5;

pub struct Transport {
    pub fd: c_int,
    pub last_errno: Cell<c_int>,
    /// Set when a read saw the peer's end of stream.
    pub saw_end: Cell<bool>,
    /// Bytes of the current record's header read so far, and its length's two bytes.
    header_seen: Cell<usize>,
    length: Cell<[u8; 2]>,
    /// Bytes of the current record's body still to come.
    body_left: Cell<usize>,
}

impl Transport {
    pub fn new(fd: c_int) -> Transport {
        Transport {
            fd,
            last_errno: Cell::new(0),
            saw_end: Cell::new(false),
            header_seen: Cell::new(0),
            length: Cell::new([0; 2]),
            body_left: Cell::new(0),
        }
    }

    /// The TLS library read `bytes` from the socket.
    pub fn read_ciphertext(&self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let left = self.body_left.get();
            if left > 0 {
                let take = left.min(bytes.len());
                self.body_left.set(left - take);
                bytes = &bytes[take..];
                continue;
            }
            let seen = self.header_seen.get();
            let mut length = self.length.get();
            if seen >= 3 {
                length[seen - 3] = bytes[0];
            }
            self.length.set(length);
            bytes = &bytes[1..];
            if seen + 1 < HEADER {
                self.header_seen.set(seen + 1);
            } else {
                self.header_seen.set(0);
                self.body_left.set(u16::from_be_bytes(length) as usize);
            }
        }
    }

    /// The current record's body bytes read so far: the TLS library holds them, not yet
    /// decrypted, until the rest comes.
    pub fn record_body_read(&self) -> usize {
        match self.body_left.get() {
            0 => 0,
            left => (u16::from_be_bytes(self.length.get()) as usize).saturating_sub(left),
        }
    }

    /// Whether the ciphertext read so far ends inside a record: its rest is on its way.
    pub fn inside_record(&self) -> bool {
        self.header_seen.get() > 0 || self.body_left.get() > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_body_read_of_the_record_it_is_inside() {
        let transport = Transport::new(-1);
        transport.read_ciphertext(&[23, 3, 3, 0, 10, b'a', b'b']);
        assert_eq!(transport.record_body_read(), 2);
        transport.read_ciphertext(&[b'c'; 8]);
        assert_eq!(transport.record_body_read(), 0);
        transport.read_ciphertext(&[23, 3]);
        assert_eq!(transport.record_body_read(), 0);
    }

    #[test]
    fn follows_records_across_every_split() {
        // Two records: 3 bytes of body, then 0 bytes of body.
        let stream = [23, 3, 3, 0, 3, b'a', b'b', b'c', 23, 3, 3, 0, 0];
        let ends = [8, 13];
        for split in 0..=stream.len() {
            let transport = Transport::new(-1);
            transport.read_ciphertext(&stream[..split]);
            let at_boundary = split == 0 || ends.contains(&split);
            assert_eq!(
                transport.inside_record(),
                !at_boundary,
                "after {split} bytes"
            );
            transport.read_ciphertext(&stream[split..]);
            assert!(!transport.inside_record(), "whole stream, split at {split}");
        }
    }

    #[test]
    fn a_full_sized_record_in_pieces() {
        let transport = Transport::new(-1);
        transport.read_ciphertext(&[23, 3, 3, 0x40, 0x11]);
        assert!(transport.inside_record());
        transport.read_ciphertext(&vec![0; 0x4011 - 1]);
        assert!(transport.inside_record());
        transport.read_ciphertext(&[0]);
        assert!(!transport.inside_record());
    }
}
