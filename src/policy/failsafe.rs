//! The failsafe circuit breaker (contract, "Failsafe"): lock-free, shared by all threads of
//! a process. Time is passed in, so the state machine is tested with a fake clock.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

pub struct Failsafe {
    attempts: u32,
    cooldown_ms: u64,
    consecutive: AtomicU32,
    /// Milliseconds (of `now_ms`) until which all traffic goes direct; 0 when none.
    cooldown_until: AtomicU64,
    /// A cooldown ran out and no proxied request has succeeded since: one more failure is
    /// enough to start the next cooldown.
    probation: AtomicBool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Counted(u32),
    CooldownStarted,
    AlreadyCoolingDown,
}

impl Failsafe {
    pub fn new(attempts: u32, cooldown_secs: u64) -> Self {
        Failsafe {
            attempts: attempts.max(1),
            cooldown_ms: cooldown_secs.saturating_mul(1000),
            consecutive: AtomicU32::new(0),
            cooldown_until: AtomicU64::new(0),
            probation: AtomicBool::new(false),
        }
    }

    pub fn allows_proxy(&self, now_ms: u64) -> bool {
        now_ms >= self.cooldown_until.load(Ordering::Acquire)
    }

    pub fn record_failure(&self, now_ms: u64) -> Outcome {
        if !self.allows_proxy(now_ms) {
            return Outcome::AlreadyCoolingDown;
        }
        let count = self.consecutive.fetch_add(1, Ordering::AcqRel) + 1;
        if count >= self.attempts || self.probation.load(Ordering::Acquire) {
            self.consecutive.store(0, Ordering::Release);
            self.probation.store(true, Ordering::Release);
            self.cooldown_until
                .store(now_ms + self.cooldown_ms.max(1), Ordering::Release);
            Outcome::CooldownStarted
        } else {
            Outcome::Counted(count)
        }
    }

    /// Runs for every answer: it writes only when there is something to reset, so that the
    /// threads of a program keep sharing the cache line (loads) instead of taking it from
    /// each other at every answer (stores).
    pub fn record_success(&self) {
        if self.consecutive.load(Ordering::Relaxed) != 0 {
            self.consecutive.store(0, Ordering::Release);
        }
        if self.probation.load(Ordering::Relaxed) {
            self.probation.store(false, Ordering::Release);
        }
    }

    /// Changes whenever a cooldown starts (each ends later than the one before). A route
    /// to the proxy allowed when the mark was M is allowed while it is still M: time only
    /// goes forward, and nothing else shuts the proxy out.
    pub fn cooldown_mark(&self) -> u64 {
        self.cooldown_until.load(Ordering::Acquire)
    }

    pub fn cooldown_secs(&self) -> u64 {
        self.cooldown_ms / 1000
    }
}

/// Milliseconds on the monotonic clock.
pub fn now_ms() -> u64 {
    crate::sys::monotonic_ns() / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cooldown_after_n_consecutive_failures() {
        let failsafe = Failsafe::new(3, 10);
        assert!(failsafe.allows_proxy(1_000));
        assert_eq!(failsafe.record_failure(1_000), Outcome::Counted(1));
        assert_eq!(failsafe.record_failure(1_001), Outcome::Counted(2));
        assert!(failsafe.allows_proxy(1_002));
        assert_eq!(failsafe.record_failure(1_002), Outcome::CooldownStarted);
        assert!(!failsafe.allows_proxy(1_003));
        assert!(!failsafe.allows_proxy(11_001));
        assert_eq!(failsafe.record_failure(5_000), Outcome::AlreadyCoolingDown);
        assert!(failsafe.allows_proxy(11_002));
    }

    #[test]
    fn success_resets_the_count() {
        let failsafe = Failsafe::new(2, 10);
        assert_eq!(failsafe.record_failure(0), Outcome::Counted(1));
        failsafe.record_success();
        assert_eq!(failsafe.record_failure(1), Outcome::Counted(1));
        assert_eq!(failsafe.record_failure(2), Outcome::CooldownStarted);
    }

    #[test]
    fn single_failure_after_a_cooldown_starts_the_next() {
        let failsafe = Failsafe::new(5, 4);
        for t in 0..4 {
            assert_eq!(failsafe.record_failure(t), Outcome::Counted(t as u32 + 1));
        }
        assert_eq!(failsafe.record_failure(4), Outcome::CooldownStarted);
        assert!(failsafe.allows_proxy(4_004));
        assert_eq!(failsafe.record_failure(4_010), Outcome::CooldownStarted);
        assert!(!failsafe.allows_proxy(8_009));
        assert!(failsafe.allows_proxy(8_010));
        failsafe.record_success();
        assert_eq!(failsafe.record_failure(9_000), Outcome::Counted(1));
    }

    #[test]
    fn shared_between_threads() {
        let failsafe = std::sync::Arc::new(Failsafe::new(1000, 1));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let failsafe = failsafe.clone();
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        failsafe.record_failure(0);
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(failsafe.record_failure(0), Outcome::Counted(401));
    }
}
