//! The library's process-wide state, built once at the first call that could need it (a
//! connect or a name lookup), never at load time.
//!
//! The set-up survives `fork` at any instant (DESIGN-NOTES rules 6, 16, 23). A child is a
//! copy of the one thread that forked: a set-up another thread was running is never
//! finished there, so a `OnceLock` held at the fork would make the child wait forever.
//! Instead one word says where the set-up is, and "being built" names the process
//! building it. The builder registers the `pthread_atfork` handlers before anything
//! they reset can be taken; the child handler turns a set-up in progress back into "not
//! built", and a child that forked before the handlers existed sees a builder that is not
//! of its own process and starts again too. Threads waiting for another thread's build
//! wait in the kernel (futex).

use crate::policy::config::{Config, Setup};
use crate::policy::failsafe::{now_ms, Failsafe};
use crate::policy::filter::{self, Destination, Lists, Verdict};
use crate::policy::source::{self, Source};
use crate::proxy::{self, Proxy};
use crate::sync::{futex_wait_while, futex_wake_all};
use std::net::SocketAddr;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

pub struct Runtime {
    pub config: Config,
    pub failsafe: Failsafe,
    pub proxy: Proxy,
}

/// `STATE`: nothing set up yet.
const UNBUILT: u32 = 0;
/// Set up, and the library is inert in this process.
const INERT: u32 = 1;
/// Set up and active: `RUNTIME` holds it.
const ACTIVE: u32 = 2;
/// Being built by the process whose pid is in the other bits (pids are below 2^22).
const BUILDING: u32 = 1 << 31;

static STATE: AtomicU32 = AtomicU32::new(UNBUILT);
/// Published before `STATE` becomes `ACTIVE`; leaked, never freed.
static RUNTIME: AtomicPtr<Runtime> = AtomicPtr::new(null_mut());

/// `None`: the library is inert in this process (no proxy configured, misconfigured, or a
/// program in secure-execution mode).
#[inline]
pub fn get() -> Option<&'static Runtime> {
    match STATE.load(Ordering::Acquire) {
        ACTIVE => existing(),
        INERT => None,
        _ => set_up(),
    }
}

/// The runtime if it was already built; never builds it.
pub fn existing() -> Option<&'static Runtime> {
    if STATE.load(Ordering::Acquire) != ACTIVE {
        return None;
    }
    // SAFETY: a non-null pointer is a leaked Box published before STATE became ACTIVE.
    unsafe { RUNTIME.load(Ordering::Acquire).as_ref() }
}

/// Builds the runtime, or waits for the thread of this process that builds it.
#[cold]
#[inline(never)]
fn set_up() -> Option<&'static Runtime> {
    crate::sys::residency::fence_if_diverting();
    // SAFETY: getpid has no preconditions.
    let me = BUILDING | unsafe { libc::getpid() } as u32;
    loop {
        match STATE.load(Ordering::Acquire) {
            ACTIVE => return existing(),
            INERT => return None,
            UNBUILT => {
                if STATE
                    .compare_exchange(UNBUILT, me, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    let runtime = build_and_publish();
                    crate::sys::residency::drop_cold_data();
                    return runtime;
                }
            }
            building if building == me => {
                futex_wait_while(&STATE, building, None);
            }
            orphaned => {
                // Being built by another process: the parent that forked us while one of its
                // threads was building (before the atfork handlers existed). That thread
                // is not in this process: start again.
                let _ =
                    STATE.compare_exchange(orphaned, UNBUILT, Ordering::AcqRel, Ordering::Acquire);
            }
        }
    }
}

/// The builder's part, `STATE` being ours. Whatever happens (a panic included), the state
/// ends set and waiters are woken.
fn build_and_publish() -> Option<&'static Runtime> {
    struct Publish(u32);
    impl Drop for Publish {
        fn drop(&mut self) {
            STATE.store(self.0, Ordering::Release);
            futex_wake_all(&STATE);
        }
    }
    // A panic in `build` leaves the library inert rather than every waiter asleep.
    let mut publish = Publish(INERT);
    crate::fork::install_handlers();
    let runtime: Option<&'static Runtime> = build().map(|runtime| &*Box::leak(Box::new(runtime)));
    if let Some(runtime) = runtime {
        RUNTIME.store(runtime as *const Runtime as *mut Runtime, Ordering::Release);
        publish.0 = ACTIVE;
    }
    drop(publish);
    runtime
}

/// For a forked child (the atfork handler): a set-up another thread was running is
/// started again by the first caller.
pub fn after_fork_in_child() {
    if STATE.load(Ordering::Relaxed) & BUILDING != 0 {
        STATE.store(UNBUILT, Ordering::Relaxed);
    }
}

fn build() -> Option<Runtime> {
    let mut warnings = Vec::new();
    // A setuid program's environment is its user's, not its own: `source` reads only a
    // root-owned configuration file then.
    let (setup, logging) = source::read(Source::of_this_process(), &mut |w| warnings.push(w));
    if !warnings.is_empty() || matches!(setup, Setup::Active(_)) {
        crate::logger::install(logging);
    }
    for warning in warnings {
        log::warn!("{warning}");
    }
    let Setup::Active(config) = setup else {
        return None;
    };
    log::debug!(
        "active: proxy {}:{}, ports {:?}, cooldown after {} failures for {} s",
        config.proxy.host,
        config.proxy.port,
        config.intercept_ports,
        config.cooldown_attempts,
        config.cooldown_secs
    );
    Some(Runtime {
        failsafe: Failsafe::new(config.cooldown_attempts, config.cooldown_secs),
        proxy: Proxy::new(
            config.proxy.clone(),
            config.handshake_port,
            proxy_tls(&config),
        ),
        config: *config,
    })
}

/// How the proxy is reached: `None` in clear text.
fn proxy_tls(config: &Config) -> Option<crate::proxy::TlsSettings> {
    config.proxy_tls.then(|| crate::proxy::TlsSettings {
        ca_file: config.proxy_ca_file.clone(),
    })
}

/// Where a connection (or a request on it) should go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Proxy(SocketAddr),
    Origin,
}

impl Route {
    pub fn is_proxy(self) -> bool {
        matches!(self, Route::Proxy(_))
    }
}

/// Why a connection goes where it goes, for the DEBUG line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    Filter(filter::Reason),
    Cooldown,
    ProxyUnavailable,
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::Filter(reason) => reason.fmt(f),
            Why::Cooldown => f.write_str("cooldown"),
            Why::ProxyUnavailable => f.write_str("proxy unavailable"),
        }
    }
}

impl Runtime {
    pub fn intercepts_port(&self, port: u16) -> bool {
        self.config.intercept_ports.contains(&port)
    }

    /// The traffic filter alone: what this destination should do when the proxy is well.
    pub fn judge(&self, destination: &Destination<'_>, header: Option<bool>) -> Verdict {
        let lists = Lists {
            allow: self.config.allow_list.as_deref(),
            block: &self.config.block_list,
        };
        filter::judge(&lists, destination, header)
    }

    /// The filter's verdict, then the failsafe, then the proxy's handshake.
    pub fn route(&self, verdict: Verdict) -> (Route, Why) {
        let reason = match verdict {
            Verdict::Direct(reason) => return (Route::Origin, Why::Filter(reason)),
            Verdict::Divert(reason) => reason,
        };
        let now = now_ms();
        if !self.failsafe.allows_proxy(now) {
            return (Route::Origin, Why::Cooldown);
        }
        let settings = proxy::Settings {
            tenant: &self.config.tenant_id,
            connect_timeout_ms: self.config.connect_timeout_ms,
            retry_after_secs: self.config.cooldown_secs,
        };
        match self.proxy.ready(&settings, now) {
            Some(address) => (Route::Proxy(address), Why::Filter(reason)),
            None => (Route::Origin, Why::ProxyUnavailable),
        }
    }

    /// Counts a proxy failure hidden from the program (its request sent to the original
    /// destination); says so once per failure, and when a cooldown starts.
    pub fn proxy_failed(&self, what: &str) {
        self.count_failure(what, "; request sent to its original destination");
    }

    /// Counts a proxy failure the program sees; `then`: why it could not be hidden.
    pub fn proxy_failed_unhidden(&self, what: &str, then: &str) {
        self.count_failure(what, then);
    }

    fn count_failure(&self, what: &str, then: &str) {
        use crate::policy::failsafe::Outcome;
        match self.failsafe.record_failure(now_ms()) {
            Outcome::CooldownStarted => log::warn!(
                "Lunar Proxy failed ({what}){then}; cooldown: all traffic goes direct for {} s",
                self.failsafe.cooldown_secs()
            ),
            Outcome::Counted(count) => {
                log::warn!("Lunar Proxy failed ({what}){then} ({count} consecutive failure(s))")
            }
            Outcome::AlreadyCoolingDown => log::warn!("Lunar Proxy failed ({what}){then}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn own_pid() -> u32 {
        // SAFETY: getpid has no preconditions.
        unsafe { libc::getpid() as u32 }
    }

    /// One test: the steps share the process-wide state.
    #[test]
    fn set_up_states() {
        // A build another process left half done (a parent that forked us mid-build,
        // before its atfork handlers existed): started again, never waited for.
        STATE.store(BUILDING | (own_pid() + 1), Ordering::Release);
        let _ = get();
        let state = STATE.load(Ordering::Acquire);
        assert!(state == INERT || state == ACTIVE, "{state:#x}");

        // The child handler undoes a build in progress, and only that.
        STATE.store(BUILDING | own_pid(), Ordering::Release);
        after_fork_in_child();
        assert_eq!(STATE.load(Ordering::Acquire), UNBUILT);
        STATE.store(INERT, Ordering::Release);
        after_fork_in_child();
        assert_eq!(STATE.load(Ordering::Acquire), INERT);

        // Another thread of this process is building: callers wait for it (in the
        // kernel) and take its outcome.
        STATE.store(BUILDING | own_pid(), Ordering::Release);
        let waiter = std::thread::spawn(|| get().is_none());
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !waiter.is_finished(),
            "returned while the build was running"
        );
        STATE.store(INERT, Ordering::Release);
        futex_wake_all(&STATE);
        assert!(waiter.join().unwrap());
    }
}
