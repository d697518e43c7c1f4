//! A language hook's first write on a connection begins with its marker line (`lang_hook`
//! reads it): taken out here, before the program's bytes meet the request engine.

use super::outcome::Outcome;
use super::{lang_hook, write, Conn};
use crate::runtime::{self, Route};
use crate::sys;
use libc::c_int;

/// The marker is taken out and the connection becomes the hook's (https; its origin the
/// hook's relay); the rest of the write is the program's. `None`: not such a write. Out of line: Node's and
/// the JVM's hooks only (build.rs's layout keeps what other clients never run apart).
#[inline(never)]
pub(super) fn take(conn: &Conn, fd: c_int, input: &[u8], flags: c_int) -> Option<Outcome> {
    let state = conn.state();
    if state.wrote || conn.relay.get().is_some() {
        return None;
    }
    let lang_hook::Marker::Ours { len, relay } = lang_hook::marker(input) else {
        return None;
    };
    let runtime = runtime::existing()?;
    let _ = conn.relay.set(relay);
    log::debug!("{}: a language hook's https connection", conn.label());
    if !state.phase.diverted() {
        // At the origin in clear text: the relay makes the TLS there before any byte leaves.
        let _writer = conn.writer.lock();
        if conn.move_to(fd, Route::Origin, runtime).is_err() {
            sys::set_errno(libc::ECONNRESET);
            return Some(Outcome::Done(-1));
        }
    }
    let rest = &input[len..];
    if rest.is_empty() {
        return Some(Outcome::Done(len as isize));
    }
    Some(match write::send(conn, fd, rest, flags) {
        Outcome::Done(sent) if sent >= 0 => Outcome::Done(len as isize + sent),
        // The program offers the rest again and meets the same outcome then.
        _ => Outcome::Done(len as isize),
    })
}
