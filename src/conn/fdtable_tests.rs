//! The fd table over every fd number, and the TCP mark `socket()` leaves for a connect.

use super::slots::FD_LIMIT;
use super::*;
use std::net::SocketAddr;

fn conn() -> Arc<Conn> {
    Arc::new(Conn::new(
        SocketAddr::from(([203, 0, 113, 10], 80)),
        None,
        true,
        0,
    ))
}

// One test: the table is process-wide, and tests run in parallel threads.
#[test]
fn every_fd_number_is_tracked_and_forgotten() {
    assert!(
        !maybe_tracked(-1) && !maybe_tracked(65536),
        "no high fd tracked yet"
    );
    assert!(!insert(-5, conn()));
    for fd in [3, 65535, 65536, 70000, 1 << 20, (FD_LIMIT - 1) as i32] {
        assert!(get(fd).is_none(), "fd {fd} untracked at first");
        let c = conn();
        assert!(insert(fd, c.clone()), "fd {fd}");
        assert!(maybe_tracked(fd), "fd {fd}");
        assert!(Arc::ptr_eq(&get(fd).expect("tracked"), &c), "fd {fd}");
        assert!(tracked()
            .iter()
            .any(|(n, t)| *n == fd && Arc::ptr_eq(t, &c)));
        remove(fd);
        assert!(get(fd).is_none(), "fd {fd} forgotten");
    }
    // Neighbours of a tracked high fd are untracked (their chunk exists).
    assert!(insert(70000, conn()));
    assert!(get(70001).is_none());
    assert!(get(69999).is_none());

    // dup2 to a high number and back; a conn-specific removal spares a newer conn.
    let c = conn();
    assert!(insert(70000, c.clone()));
    assert!(copy(70000, 131072 + 7));
    assert!(Arc::ptr_eq(&get(131079).expect("copied"), &c));
    let newer = conn();
    insert(131079, newer.clone());
    remove_conn(131079, &c);
    assert!(Arc::ptr_eq(&get(131079).expect("kept"), &newer));
    remove_conn(131079, &newer);
    assert!(get(131079).is_none());

    // close_range over everything forgets high fds too.
    assert!(insert(5000, conn()));
    assert!(insert(200_000, conn()));
    release_range(4999, u32::MAX);
    assert!(get(5000).is_none() && get(70000).is_none() && get(200_000).is_none());
    release_range(10, 3); // empty range: nothing happens
}

// Numbers no other test uses: the table is process-wide.
#[test]
fn a_tcp_stream_socket_made_is_known_to_its_connect_once() {
    let (fd, other) = (61_111, 61_112);
    made_socket(fd, true);
    assert!(!take_born_tcp(fd), "a number without a slot keeps nothing");
    assert!(insert(fd, conn()) && insert(other, conn()));
    remove(fd);
    made_socket(fd, true);
    assert!(take_born_tcp(fd), "made by socket() as TCP");
    assert!(!take_born_tcp(fd), "asked once");
    made_socket(fd, false);
    assert!(!take_born_tcp(fd), "a socket of another kind");
    for handed in [handed_out as fn(i32), |fd| assert!(copy(61_113, fd))] {
        made_socket(fd, true);
        handed(fd);
        assert!(!take_born_tcp(fd), "the number given out again");
    }
    made_socket(fd, true);
    assert!(copy(other, fd), "a dup of a tracked socket onto it");
    assert!(!take_born_tcp(fd));
    remove(fd);
    remove(other);
}
