//! `fork`: the child is a copy of one thread. Locks that the parent's other threads held
//! would stay locked forever in it, so the child reopens them.

use std::sync::Once;

static INSTALL: Once = Once::new();

pub fn install_handlers() {
    INSTALL.call_once(|| {
        // SAFETY: registers a plain extern "C" function as the child handler.
        unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
    });
}

extern "C" fn in_child() {
    crate::fdtable::after_fork_in_child();
    crate::names::after_fork_in_child();
    crate::uuid::after_fork_in_child();
    crate::watchers::after_fork_in_child();
    crate::tls::after_fork_in_child();
    if let Some(runtime) = crate::runtime::existing() {
        runtime.proxy.after_fork_in_child();
    }
}
