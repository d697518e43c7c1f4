//! The parsed certificates of virtual sessions, kept for the next session to the same host.
//!
//! Parsing is the costliest step of a virtual session: OpenSSL 3's `d2i_X509` decodes the
//! public key through its provider decoders, ~1.5M instructions (~0.4 ms on our 2-core
//! VM), and a program that opens a connection per request (Python's `requests.get`) asks
//! for the peer certificate on each. A host's certificate differs from session to session
//! only in its dates, so the object parsed for one session serves the next: each caller
//! gets a reference of its own (`X509_up_ref`), and the program's `X509_free` drops it.
//! An X509 object is shared the same way by OpenSSL's own resumed sessions.

use super::real;
use super::X509;
use crate::sync::SpinLock;

/// Hosts whose certificates are kept: enough for a program that talks to a few APIs.
const KEPT: usize = 8;
/// A certificate is made anew after this long, so that its dates stay around the clock's
/// (it is valid from a day before it was made, for a year).
const FRESH_FOR_SECONDS: u64 = 3600;

struct Kept {
    host: Box<str>,
    made_unix: u64,
    x509: usize,
}

/// Taken with `try_lock` only: a session that finds it busy parses its own certificate, and
/// a child forked while another thread held it just keeps nothing.
static KEPT_CERTIFICATES: SpinLock<[Option<Kept>; KEPT]> = SpinLock::new([const { None }; KEPT]);

/// A certificate object for `host` made within the last hour, or a new one from `parse`
/// (null when it fails); the caller owns one reference.
pub fn certificate_for(host: &str, now_unix: u64, parse: impl FnOnce() -> X509) -> X509 {
    if let Some(x509) = kept(host, now_unix) {
        return x509;
    }
    let x509 = parse();
    if !x509.is_null() {
        keep(host, now_unix, x509);
    }
    x509
}

fn kept(host: &str, now_unix: u64) -> Option<X509> {
    let kept = KEPT_CERTIFICATES.try_lock()?;
    let found = kept.iter().flatten().find(|kept| {
        &*kept.host == host
            && (kept.made_unix..kept.made_unix + FRESH_FOR_SECONDS).contains(&now_unix)
    })?;
    let x509 = found.x509 as X509;
    // SAFETY: a live object: the cache holds a reference to it until it is replaced.
    (unsafe { real::X509_up_ref(x509) } == 1).then_some(x509)
}

/// Keeps a reference to `x509` for later sessions to `host`, in place of an older one.
fn keep(host: &str, now_unix: u64, x509: X509) {
    // SAFETY: `x509` is a live object the caller holds a reference to.
    if unsafe { real::X509_up_ref(x509) } != 1 {
        return; // an OpenSSL without X509_up_ref (1.0): nothing is kept
    }
    let entry = Kept {
        host: host.into(),
        made_unix: now_unix,
        x509: x509 as usize,
    };
    let released = match KEPT_CERTIFICATES.try_lock() {
        Some(mut kept) => {
            // The host's own slot, else an empty one (None sorts first), else the oldest.
            let slot = kept
                .iter()
                .position(|k| k.as_ref().is_some_and(|k| &*k.host == host))
                .or_else(|| (0..KEPT).min_by_key(|&i| kept[i].as_ref().map(|k| k.made_unix)))
                .unwrap_or(0);
            kept[slot].replace(entry).map(|old| old.x509)
        }
        None => Some(entry.x509),
    };
    if let Some(old) = released {
        // SAFETY: the cache's own reference, given up; freed outside the lock.
        unsafe { real::X509_free(old as X509) };
    }
}
