//! Lunar Proxy as seen from here: its address (resolved lazily), whether the handshake
//! has said it is there, and what its error codes mean (`lunar_error`).

pub mod handshake;
pub mod lunar_error;
pub mod tls_link;

use crate::policy::config::ProxyAddress;
use crate::sync::WaitEnd;
use crate::sys;
use std::ffi::CString;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant};

const NEVER_TRIED: u32 = 0;
const RUNNING: u32 = 1;
const READY: u32 = 2;
const FAILED: u32 = 3;

pub struct Proxy {
    pub address: ProxyAddress,
    handshake_port: u16,
    /// The handshake's `Host` header, written at the set-up (`crate::hot_data`: a
    /// handshake may come after the set-up has let the cold data, `format!`'s, go).
    handshake_host: String,
    /// NEVER_TRIED, RUNNING, READY or FAILED; waited on as a futex while RUNNING.
    state: AtomicU32,
    managed: AtomicBool,
    retry_at_ms: AtomicU64,
    /// The traffic address's IP, resolved by the handshake that succeeds.
    traffic_ip: WrittenBeforeReady,
    /// TLS to the proxy (`LUNAR_PROXY_SUPPORT_TLS=1`), or clear text.
    tls: Option<TlsSettings>,
}

/// How the proxy's TLS is verified, beside its host name.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// `LUNAR_PROXY_CA_FILE`.
    pub ca_file: Option<String>,
}

pub struct Settings<'a> {
    pub tenant: &'a str,
    pub connect_timeout_ms: u64,
    pub retry_after_secs: u64,
}

impl Proxy {
    pub fn new(address: ProxyAddress, handshake_port: u16, tls: Option<TlsSettings>) -> Self {
        Proxy {
            handshake_host: format!("{}:{handshake_port}", bracketed(&address.host)),
            address,
            handshake_port,
            tls,
            state: AtomicU32::new(NEVER_TRIED),
            managed: AtomicBool::new(false),
            retry_at_ms: AtomicU64::new(0),
            traffic_ip: WrittenBeforeReady::default(),
        }
    }

    /// Whom the proxy must prove to be, when it is reached over TLS; `None` in clear text.
    pub fn tls_trust(&self) -> Option<tls_link::Trust<'_>> {
        self.tls.as_ref().map(|tls| tls_link::Trust {
            host: &self.address.host,
            ca_file: tls.ca_file.as_deref(),
        })
    }

    /// Why the proxy cannot be reached over TLS in this process (no OpenSSL to load),
    /// when TLS is asked for; `None` otherwise.
    pub fn tls_library_missing(&self) -> Option<&'static str> {
        self.tls.as_ref()?;
        tls_link::library().err()
    }

    pub fn managed(&self) -> bool {
        self.managed.load(Ordering::Acquire)
    }

    /// Whether `target` is the proxy itself (its traffic or handshake port): never diverted.
    pub fn is_proxy(&self, target: SocketAddr) -> bool {
        let port_matches =
            target.port() == self.address.port || target.port() == self.handshake_port;
        if !port_matches {
            return false;
        }
        let target_ip = crate::addr::canonical(target).ip();
        match self.address.host.parse::<IpAddr>() {
            Ok(ip) => ip == target_ip,
            Err(_) => self.traffic().is_some_and(|known| known.ip() == target_ip),
        }
    }

    /// The traffic address, once the handshake has succeeded (the state is then READY for
    /// good); never waits.
    fn traffic(&self) -> Option<SocketAddr> {
        (self.state.load(Ordering::Acquire) == READY).then(|| self.traffic_after_ready())
    }

    /// The traffic address, for a caller that has loaded READY.
    fn traffic_after_ready(&self) -> SocketAddr {
        SocketAddr::new(self.traffic_ip.read(), self.address.port)
    }

    /// The proxy's traffic address if the handshake has succeeded; runs the handshake (in
    /// this thread, bounded in time) when it is due. `None`: send this connection direct.
    pub fn ready(&self, settings: &Settings<'_>, now_ms: u64) -> Option<SocketAddr> {
        loop {
            match self.state.load(Ordering::Acquire) {
                READY => return Some(self.traffic_after_ready()),
                FAILED if now_ms < self.retry_at_ms.load(Ordering::Acquire) => return None,
                RUNNING => {
                    if !self.wait_while_running(settings.connect_timeout_ms) {
                        return None;
                    }
                }
                seen => {
                    if self
                        .state
                        .compare_exchange(seen, RUNNING, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        self.handshake_or_fail(settings, now_ms);
                    }
                }
            }
        }
    }

    /// Other threads wait (in the kernel) for the one running the handshake, so a
    /// program's first concurrent requests are all diverted; bounded by the handshake's
    /// own time limits, and ended by a cancellation of the waiting thread.
    fn wait_while_running(&self, connect_timeout_ms: u64) -> bool {
        let give_up = Instant::now() + Duration::from_millis(connect_timeout_ms + 3_000);
        loop {
            match crate::sync::futex_wait_cancellable_while(&self.state, RUNNING, Some(give_up)) {
                WaitEnd::Done => return true,
                WaitEnd::TimedOut => return false,
                WaitEnd::Interrupted => {}
            }
        }
    }

    fn finish_handshake(&self, state: u32) {
        self.state.store(state, Ordering::Release);
        crate::sync::futex_wake_all(&self.state);
    }

    /// Runs the handshake; a panic inside it (caught by the hook) still ends it as a
    /// failure, so that other threads stop waiting and a later call may try again. The
    /// program cancelling this thread (`pthread_cancel`: an unwind that is no panic) is no
    /// failure of the proxy: the handshake is left to the next call, another thread's
    /// included.
    fn handshake_or_fail(&self, settings: &Settings<'_>, now_ms: u64) {
        struct EndsUnfinished<'a>(&'a Proxy, u64);
        impl Drop for EndsUnfinished<'_> {
            fn drop(&mut self) {
                if self.0.state.load(Ordering::Acquire) != RUNNING {
                    return;
                }
                if std::thread::panicking() {
                    self.0.retry_at_ms.store(self.1, Ordering::Release);
                    self.0.finish_handshake(FAILED);
                } else {
                    self.0.finish_handshake(NEVER_TRIED);
                }
            }
        }
        let _unwinding = EndsUnfinished(self, now_ms + settings.retry_after_secs.max(1) * 1000);
        self.handshake(settings, now_ms);
    }

    fn handshake(&self, settings: &Settings<'_>, now_ms: u64) {
        let outcome = self.resolve().and_then(|addresses| {
            // Each address in turn, as an HTTP client tries them: `localhost` gives `::1`
            // first, where a proxy may listen on IPv4 only. The one that answers carries
            // the traffic.
            let mut failures = Vec::new();
            for ip in addresses {
                let handshake_at = SocketAddr::new(ip, self.handshake_port);
                match handshake::run(
                    handshake_at,
                    &self.handshake_host,
                    settings.tenant,
                    settings.connect_timeout_ms,
                    self.tls_trust(),
                    &mut |_| {},
                ) {
                    Ok(answer) => return Ok((ip, answer)),
                    Err(failure) => failures.push((ip, failure.to_string())),
                }
            }
            Err(match failures.as_slice() {
                [(_, only)] => only.clone(),
                several => several
                    .iter()
                    .map(|(ip, why)| format!("{ip}: {why}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            })
        });
        match outcome {
            Ok((ip, answer)) => {
                self.traffic_ip.write(ip);
                self.managed.store(answer.managed, Ordering::Release);
                log::info!(
                    "Lunar Proxy at {}:{} is up (managed: {})",
                    self.address.host,
                    self.address.port,
                    answer.managed
                );
                self.finish_handshake(READY);
            }
            Err(reason) => {
                log::warn!(
                    "Failed to communicate with Lunar Proxy at {} (handshake port {}): {}. Requests go directly to their destinations; retrying in {} s",
                    self.address.host,
                    self.handshake_port,
                    reason,
                    settings.retry_after_secs
                );
                self.retry_at_ms.store(
                    now_ms + settings.retry_after_secs.max(1) * 1000,
                    Ordering::Release,
                );
                self.finish_handshake(FAILED);
            }
        }
    }

    fn resolve(&self) -> Result<Vec<IpAddr>, String> {
        resolve_host(&self.address.host)
    }

    /// For a forked child: a handshake running in another thread of the parent never ends.
    pub fn after_fork_in_child(&self) {
        let _ =
            self.state
                .compare_exchange(RUNNING, NEVER_TRIED, Ordering::AcqRel, Ordering::Acquire);
    }
}

/// At most this many of a name's addresses are tried.
const MAX_ADDRESSES: usize = 4;

/// The proxy host's addresses: an IP literal, or the name's addresses in the resolver's
/// order (at most `MAX_ADDRESSES`, each once).
pub fn resolve_host(host: &str) -> Result<Vec<IpAddr>, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    resolve_name(host)
        .filter(|found| !found.is_empty())
        .ok_or_else(|| format!("cannot resolve {host}"))
}

fn bracketed(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

fn resolve_name(name: &str) -> Option<Vec<IpAddr>> {
    let node = CString::new(name).ok()?;
    // SAFETY: addrinfo is plain old data; zero is "no hints" for the other fields.
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_family = libc::AF_UNSPEC;
    hints.ai_socktype = libc::SOCK_STREAM;
    let mut list: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: valid C string, hints and out-pointer; the list is freed below.
    let rc = unsafe { sys::getaddrinfo(node.as_ptr(), std::ptr::null(), &hints, &mut list) };
    if rc != 0 {
        return None;
    }
    let mut found = Vec::new();
    let mut entry = list;
    while !entry.is_null() && found.len() < MAX_ADDRESSES {
        // SAFETY: entries of a list getaddrinfo returned.
        let info = unsafe { &*entry };
        // SAFETY: ai_addr/ai_addrlen come from getaddrinfo.
        let ip = unsafe { crate::addr::from_c(info.ai_addr, info.ai_addrlen) }.map(|a| a.ip());
        if let Some(ip) = ip.filter(|ip| !found.contains(ip)) {
            found.push(ip);
        }
        entry = info.ai_next;
    }
    // SAFETY: frees the list getaddrinfo allocated, once.
    unsafe { libc::freeaddrinfo(list) };
    Some(found)
}

/// An IP written by the one handshake that succeeds, before the state becomes READY (which
/// it stays), and read only once READY is seen: atomic loads, no lock. Every diverted
/// request asks for the traffic address (`ready`); a lock there was a write to one cache
/// line that every thread of a program shares, moved between CPUs at each request.
#[derive(Default)]
struct WrittenBeforeReady {
    /// 4 or 6: which of the fields below holds the address.
    family: AtomicU8,
    v4: AtomicU32,
    v6_high: AtomicU64,
    v6_low: AtomicU64,
}

impl WrittenBeforeReady {
    /// Before the READY store (Release), which orders these stores before every read.
    fn write(&self, ip: IpAddr) {
        match ip {
            IpAddr::V4(v4) => {
                self.v4.store(v4.to_bits(), Ordering::Relaxed);
                self.family.store(4, Ordering::Relaxed);
            }
            IpAddr::V6(v6) => {
                let bits = v6.to_bits();
                self.v6_high.store((bits >> 64) as u64, Ordering::Relaxed);
                self.v6_low.store(bits as u64, Ordering::Relaxed);
                self.family.store(6, Ordering::Relaxed);
            }
        }
    }

    /// After READY was loaded (Acquire).
    fn read(&self) -> IpAddr {
        if self.family.load(Ordering::Relaxed) == 4 {
            return IpAddr::V4(Ipv4Addr::from_bits(self.v4.load(Ordering::Relaxed)));
        }
        let high = u128::from(self.v6_high.load(Ordering::Relaxed));
        let low = u128::from(self.v6_low.load(Ordering::Relaxed));
        IpAddr::V6(Ipv6Addr::from_bits(high << 64 | low))
    }
}

#[cfg(test)]
mod tests {
    use super::WrittenBeforeReady;
    use std::net::IpAddr;

    #[test]
    fn the_written_address_reads_back() {
        for ip in [
            "203.0.113.10",
            "::1",
            "2001:db8::7",
            "::ffff:203.0.113.10",
            "0.0.0.0",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let cell = WrittenBeforeReady::default();
            cell.write(ip);
            assert_eq!(cell.read(), ip);
        }
    }
}
