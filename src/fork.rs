//! `fork`: the child is a copy of one thread. Locks that the parent's other threads held
//! would stay locked forever in it, so the child reopens them; a set-up they were running
//! is started again (`runtime`).

use std::sync::atomic::{AtomicBool, Ordering};

static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Registers the child handler. Called only by the thread that builds the runtime, before
/// the build (`runtime::set_up` makes it one thread per process): every lock the handler
/// reopens is taken only once the runtime is active, so the handler is always in place
/// first. No `Once` (one held by another thread at a fork would never open in the child):
/// a fork between the registration and the flag at worst registers the handler twice in
/// the child, which is harmless.
pub fn install_handlers() {
    if !INSTALLED.load(Ordering::Acquire) {
        // SAFETY: registers a plain extern "C" function as the child handler.
        unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
        INSTALLED.store(true, Ordering::Release);
    }
}

extern "C" fn in_child() {
    crate::runtime::after_fork_in_child();
    let Some(runtime) = crate::runtime::existing() else {
        // Not active (inert, or its set-up just undone): no lock below was ever taken
        // in this process, and a fork costs nothing more.
        return;
    };
    crate::conn::fdtable::after_fork_in_child();
    crate::names::after_fork_in_child();
    crate::uuid::after_fork_in_child();
    crate::tls::after_fork_in_child();
    crate::proxy::tls_link::after_fork_in_child();
    runtime.proxy.after_fork_in_child();
}
