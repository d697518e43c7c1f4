//! Where a connection keeps its TLS session with the proxy (`link`), and the process-wide
//! counts that let the wait hooks skip every closer look while no socket has one.

use crate::proxy::tls_link::Link;
use crate::sync::SpinLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Connections whose session holds decrypted bytes not yet read: the wait hooks look
/// only when this is not zero.
static WAITING: AtomicUsize = AtomicUsize::new(0);

/// Sockets carrying our TLS session: the wait hooks look closer at readiness only when
/// this is not zero.
static LINKED: AtomicUsize = AtomicUsize::new(0);

/// Whether any socket of the process carries our TLS session with the proxy.
pub fn any_linked() -> bool {
    LINKED.load(Ordering::Acquire) != 0
}

/// Whether any connection's session holds plaintext that the kernel cannot show.
pub fn any_plaintext_waiting() -> bool {
    WAITING.load(Ordering::Acquire) != 0
}

pub(super) struct LinkSlot {
    /// Whether `session` holds a link: the clear-text path pays this one load.
    pub(super) linked: AtomicBool,
    pub(super) session: SpinLock<Option<Link>>,
    /// The session holds decrypted bytes (counted in `WAITING`).
    pub(super) waiting: AtomicBool,
    /// The last write had to wait for room: the next one asks the kernel first.
    pub(super) congested: AtomicBool,
}

impl LinkSlot {
    pub(super) const fn new() -> LinkSlot {
        LinkSlot {
            linked: AtomicBool::new(false),
            session: SpinLock::new(None),
            waiting: AtomicBool::new(false),
            congested: AtomicBool::new(false),
        }
    }

    pub(super) fn note_waiting(&self, waiting: bool) {
        if self.waiting.swap(waiting, Ordering::AcqRel) != waiting {
            if waiting {
                WAITING.fetch_add(1, Ordering::AcqRel);
            } else {
                WAITING.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    /// Records whether the socket carries a session now (counted in `LINKED`).
    pub(super) fn note_linked(&self, linked: bool) {
        if self.linked.swap(linked, Ordering::AcqRel) != linked {
            if linked {
                LINKED.fetch_add(1, Ordering::AcqRel);
            } else {
                LINKED.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    pub(super) fn after_fork_in_child(&self) {
        self.session.force_unlock();
    }
}

impl Drop for LinkSlot {
    fn drop(&mut self) {
        self.note_waiting(false);
        self.note_linked(false);
    }
}
