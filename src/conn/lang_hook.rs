//! Connections a language hook dresses as TLS (Node's `lang/node/lunar-node-hook.cjs`; the
//! protocol is `lang/PROTOCOL.md`). The hook gives the runtime a plain socket to the
//! origin's port and writes one marker line first; this layer takes the marker out, sends
//! the plaintext requests to the proxy as https, and makes the hook's in-process relay the
//! origin: every move to the origin connects there and greets it, and the relay makes real
//! TLS with the program's own settings. Plaintext of such a connection never leaves the
//! process except to the proxy.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::OnceLock;

/// The marker's first bytes.
const MARKER: &[u8] = b"LUNAR-HOOK/1 ";
/// A marker line is far shorter; a longer "line" is not one.
const MARKER_MAX: usize = 128;
/// The token's length in hex digits.
pub const TOKEN_LEN: usize = 32;

/// This process's token, set once before `main` when a hook was injected (`inject`).
static TOKEN: OnceLock<[u8; TOKEN_LEN]> = OnceLock::new();

/// Records the token handed to the hook: from now on markers carrying it are ours.
pub fn arm(token: [u8; TOKEN_LEN]) {
    let _ = TOKEN.set(token);
}

/// A hook was injected into this process: a connect to an https port may carry plaintext
/// (one atomic load).
#[inline]
pub fn armed() -> bool {
    TOKEN.get().is_some()
}

/// The hook's relay for one connection: where the origin is from now on, and how to
/// greet it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    port: u16,
    greeting: Box<[u8]>,
}

impl Relay {
    /// The relay's address, on loopback.
    pub fn address(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The line the relay must read first: it names the connection and proves we are
    /// the preload.
    pub fn greeting(&self) -> &[u8] {
        &self.greeting
    }
}

/// What the first bytes of a connection's first write are.
#[derive(Debug, PartialEq, Eq)]
pub enum Marker {
    /// Not a marker of ours: the program's own bytes.
    None,
    /// Our hook's marker, `len` bytes long (to be taken out), naming its relay.
    Ours { len: usize, relay: Relay },
}

/// Reads the marker at the start of `bytes`, checked against this process's token.
pub fn marker(bytes: &[u8]) -> Marker {
    match TOKEN.get() {
        Some(token) => marker_for(bytes, token),
        None => Marker::None,
    }
}

fn marker_for(bytes: &[u8], token: &[u8; TOKEN_LEN]) -> Marker {
    if !bytes.starts_with(MARKER) {
        return Marker::None;
    }
    let window = &bytes[..bytes.len().min(MARKER_MAX)];
    let Some(end) = memchr::memmem::find(window, b"\r\n") else {
        return Marker::None;
    };
    let mut fields = window[MARKER.len()..end].split(|&b| b == b' ');
    let (Some(got), Some(port), Some(id), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Marker::None;
    };
    let (Some(port), Some(id)) = (number(port), number(id)) else {
        return Marker::None;
    };
    let Ok(port) = u16::try_from(port) else {
        return Marker::None;
    };
    if port == 0 || !same(got, token) {
        return Marker::None;
    }
    let mut greeting = Vec::with_capacity(64);
    greeting.extend_from_slice(b"LUNAR-RELAY/1 ");
    greeting.extend_from_slice(token);
    greeting.push(b' ');
    greeting.extend_from_slice(id.to_string().as_bytes());
    greeting.extend_from_slice(b"\r\n");
    Marker::Ours {
        len: end + 2,
        relay: Relay {
            port,
            greeting: greeting.into_boxed_slice(),
        },
    }
}

/// A decimal number of at most 19 digits.
fn number(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

/// Compares the whole token, whatever differs first: the time taken says nothing of it.
fn same(got: &[u8], token: &[u8; TOKEN_LEN]) -> bool {
    got.len() == TOKEN_LEN && got.iter().zip(token).fold(0, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &[u8; TOKEN_LEN] = b"0123456789abcdef0123456789abcdef";

    fn line(token: &str, port: &str, id: &str) -> Vec<u8> {
        format!("LUNAR-HOOK/1 {token} {port} {id}\r\nGET / HTTP/1.1\r\n").into_bytes()
    }

    #[test]
    fn a_marker_with_our_token_names_the_relay_and_its_length() {
        let bytes = line("0123456789abcdef0123456789abcdef", "40123", "7");
        let Marker::Ours { len, relay } = marker_for(&bytes, TOKEN) else {
            panic!("not ours");
        };
        assert_eq!(&bytes[len..], b"GET / HTTP/1.1\r\n");
        assert_eq!(relay.address(), "127.0.0.1:40123".parse().unwrap());
        assert_eq!(
            relay.greeting(),
            b"LUNAR-RELAY/1 0123456789abcdef0123456789abcdef 7\r\n"
        );
    }

    #[test]
    fn anything_else_is_the_programs_own_bytes() {
        let other = "0123456789abcdef0123456789abcdee";
        for bytes in [
            line(other, "40123", "7"),
            line("0123456789abcdef0123456789abcdef0", "40123", "7"),
            line("0123456789abcdef0123456789abcdef", "0", "7"),
            line("0123456789abcdef0123456789abcdef", "70000", "7"),
            line("0123456789abcdef0123456789abcdef", "40123", "x"),
            line("0123456789abcdef0123456789abcdef", "40123", "7 8"),
            b"LUNAR-HOOK/1 0123456789abcdef0123456789abcdef 40123 7".to_vec(),
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            [&b"LUNAR-HOOK/1 "[..], &[b'1'; 200], b"\r\n"].concat(),
        ] {
            assert_eq!(
                marker_for(&bytes, TOKEN),
                Marker::None,
                "{}",
                String::from_utf8_lossy(&bytes)
            );
        }
    }

    #[test]
    fn without_an_injected_hook_nothing_is_a_marker() {
        let bytes = line("0123456789abcdef0123456789abcdef", "40123", "7");
        assert_eq!(marker(&bytes), Marker::None);
    }
}
