//! The library's process-wide state, built once at the first call that could need it (a
//! connect or a name lookup), never at load time.

use crate::policy::config::{Config, Setup};
use crate::policy::failsafe::{now_ms, Failsafe};
use crate::policy::filter::{self, Destination, Lists, Verdict};
use crate::policy::source::{self, Source};
use crate::proxy::{self, Proxy};
use std::net::SocketAddr;
use std::sync::OnceLock;

pub struct Runtime {
    pub config: Config,
    pub failsafe: Failsafe,
    pub proxy: Proxy,
}

static RUNTIME: OnceLock<Option<Runtime>> = OnceLock::new();

/// `None`: the library is inert in this process (no proxy configured, or misconfigured).
pub fn get() -> Option<&'static Runtime> {
    RUNTIME.get_or_init(build).as_ref()
}

/// The runtime if it was already built; never builds it.
pub fn existing() -> Option<&'static Runtime> {
    RUNTIME.get()?.as_ref()
}

fn build() -> Option<Runtime> {
    let mut warnings = Vec::new();
    // A setuid program's environment is its user's, not its own: `source` reads nothing then.
    let (setup, level) = source::read(Source::of_this_process(), &mut |w| warnings.push(w));
    if !warnings.is_empty() || matches!(setup, Setup::Active(_)) {
        crate::logger::install(level);
    }
    for warning in warnings {
        log::warn!("{warning}");
    }
    let Setup::Active(config) = setup else {
        return None;
    };
    crate::fork::install_handlers();
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
        proxy: Proxy::new(config.proxy.clone(), config.handshake_port),
        config: *config,
    })
}

/// Where a connection (or a request on it) should go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Proxy(SocketAddr),
    Origin,
}

/// Why a connection goes where it goes, for the DEBUG line.
#[derive(Debug, Clone, Copy)]
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

    /// Counts a proxy failure; says so once per failure, and when a cooldown starts.
    pub fn proxy_failed(&self, what: &str) {
        use crate::policy::failsafe::Outcome;
        match self.failsafe.record_failure(now_ms()) {
            Outcome::CooldownStarted => log::warn!(
                "Lunar Proxy failed ({what}); request sent to its original destination; cooldown: all traffic goes direct for {} s",
                self.failsafe.cooldown_secs()
            ),
            Outcome::Counted(count) => log::warn!(
                "Lunar Proxy failed ({what}); request sent to its original destination ({count} consecutive failure(s))"
            ),
            Outcome::AlreadyCoolingDown => {
                log::warn!("Lunar Proxy failed ({what}); request sent to its original destination")
            }
        }
    }
}
