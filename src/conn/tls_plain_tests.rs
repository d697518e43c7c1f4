//! The plaintext path of a followed real TLS session, with a fake session: what reaches
//! the session, in which calls, and what the connection learns from it. (Where a request
//! goes is `decide`'s, tested there; without a runtime nothing moves here.)

use super::*;
use std::net::SocketAddr;

#[derive(Default)]
struct Fake {
    /// Every call: ("send" | "send_all", bytes).
    calls: Vec<(&'static str, Vec<u8>)>,
    /// Sends that fail ("again") before one succeeds.
    fail_sends: usize,
    ended: bool,
}

impl RealTls for Fake {
    type Error = i32;

    fn send(&mut self, bytes: &[u8]) -> Result<usize, i32> {
        if self.fail_sends > 0 {
            self.fail_sends -= 1;
            return Err(-1);
        }
        self.calls.push(("send", bytes.to_vec()));
        Ok(bytes.len())
    }

    fn send_all(&mut self, bytes: &[u8]) -> Result<(), i32> {
        self.calls.push(("send_all", bytes.to_vec()));
        Ok(())
    }

    fn end(&mut self) {
        self.ended = true;
    }
}

fn followed() -> Conn {
    let conn = Conn::new(SocketAddr::from(([10, 0, 0, 2], 443)), None, true, 1 << 20);
    conn.enter(Phase::Direct);
    conn.enter(Phase::TlsOwned);
    conn.state.lock().https = true;
    conn
}

const GET: &[u8] = b"GET /a HTTP/1.1\r\nHost: api.example.test\r\n\r\n";
const POST: &[u8] = b"POST /b HTTP/1.1\r\nHost: api.example.test\r\nContent-Length: 4\r\n\r\nbody";
const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

#[test]
fn heads_leave_whole_and_bodies_as_written() {
    let conn = followed();
    let mut real = Fake::default();
    let mut input = GET.to_vec();
    input.extend_from_slice(POST);
    assert_eq!(
        write(&conn, -1, &input, &mut real),
        PlainWrite::Taken(input.len())
    );
    let head_of_post = &POST[..POST.len() - 4];
    assert_eq!(
        real.calls,
        vec![
            ("send_all", GET.to_vec()),
            ("send_all", head_of_post.to_vec()),
            ("send", b"body".to_vec()),
        ]
    );
    assert!(!real.ended);
}

#[test]
fn a_head_in_pieces_is_held_until_complete() {
    let conn = followed();
    let mut real = Fake::default();
    let (first, rest) = GET.split_at(10);
    assert_eq!(write(&conn, -1, first, &mut real), PlainWrite::Taken(10));
    assert!(
        real.calls.is_empty(),
        "nothing leaves before the head is complete"
    );
    assert_eq!(
        write(&conn, -1, rest, &mut real),
        PlainWrite::Taken(rest.len())
    );
    assert_eq!(real.calls, vec![("send_all", GET.to_vec())]);
}

#[test]
fn a_failed_body_send_is_repeated_with_the_same_bytes() {
    let conn = followed();
    let mut real = Fake {
        fail_sends: 1,
        ..Fake::default()
    };
    let head_len = POST.len() - 4;
    // The head leaves, the body's send fails: the program is told the head was taken and
    // repeats its call with the rest, which the engine must see as the same body bytes.
    assert_eq!(
        write(&conn, -1, POST, &mut real),
        PlainWrite::Failed(head_len, -1)
    );
    assert_eq!(
        write(&conn, -1, &POST[head_len..], &mut real),
        PlainWrite::Taken(4)
    );
    assert_eq!(real.calls.last(), Some(&("send", b"body".to_vec())));
    assert!(conn.writer.lock().requests.at_message_boundary());
}

#[test]
fn the_origins_answers_are_counted_to_tell_a_boundary() {
    let conn = followed();
    let mut real = Fake::default();
    write(&conn, -1, GET, &mut real);
    assert!(!conn.responses.lock().every_answer_read());
    delivered(&conn, &ANSWER[..20]);
    assert!(!conn.responses.lock().every_answer_read());
    delivered(&conn, &ANSWER[20..]);
    assert!(conn.responses.lock().every_answer_read());
}

#[test]
fn bytes_that_are_not_http_pass_and_no_boundary_is_told_again() {
    let conn = followed();
    let mut real = Fake::default();
    let noise = b"\x00\x01 not http at all\r\n\r\n";
    assert_eq!(
        write(&conn, -1, noise, &mut real),
        PlainWrite::Taken(noise.len())
    );
    assert_eq!(
        write(&conn, -1, GET, &mut real),
        PlainWrite::Taken(GET.len())
    );
    let sent: Vec<u8> = real.calls.iter().flat_map(|(_, b)| b.clone()).collect();
    assert_eq!(sent, [&noise[..], GET].concat());
    delivered(&conn, b"\x00garbage");
    assert!(!conn.responses.lock().every_answer_read());
}
