//! How far the proxy's retry protocol is followed. An answer carrying
//! `x-lunar-retry-after` asks for the request again after a delay, and the program waits
//! for its answer meanwhile, so both the delay and the number of rounds are bounded
//! (LUNAR_RETRY_MAX_DELAY_SEC, LUNAR_RETRY_MAX_ATTEMPTS). Past a bound the proxy's own
//! answer goes to the program. The judgement is pure (`RetryLimits::judge`), so the bounds
//! are unit-tested without a runtime.

use std::time::Duration;

/// Whether the proxy's retry request is honoured: within LUNAR_RETRY_MAX_DELAY_SEC and
/// LUNAR_RETRY_MAX_ATTEMPTS. Otherwise its answer goes to the program as it is (without
/// `x-lunar-sequence-id`), said once in a warning.
pub(super) fn retry_allowed(after_secs: f64, retries_so_far: u32) -> Option<Duration> {
    let config = &crate::runtime::get()?.config;
    let limits = RetryLimits {
        max_delay_secs: config.retry_max_delay_secs,
        max_attempts: config.retry_max_attempts,
    };
    match limits.judge(after_secs, retries_so_far) {
        RetryVerdict::Retry(after) => Some(after),
        RetryVerdict::TooMany => {
            log::warn!(
                "Lunar Proxy asked for retry {} of one request; LUNAR_RETRY_MAX_ATTEMPTS is {}: its answer is passed on",
                retries_so_far + 1,
                limits.max_attempts
            );
            None
        }
        RetryVerdict::TooLong => {
            log::warn!(
                "Lunar Proxy asked for a retry after {after_secs} s, more than LUNAR_RETRY_MAX_DELAY_SEC ({} s): its answer is passed on",
                limits.max_delay_secs
            );
            None
        }
    }
}

/// The configured bounds.
struct RetryLimits {
    max_delay_secs: u64,
    max_attempts: u32,
}

/// What a retry request gets: the wait, or the bound it passes.
#[derive(Debug, PartialEq)]
enum RetryVerdict {
    Retry(Duration),
    TooLong,
    TooMany,
}

impl RetryLimits {
    fn judge(&self, after_secs: f64, retries_so_far: u32) -> RetryVerdict {
        if retries_so_far >= self.max_attempts {
            RetryVerdict::TooMany
        } else if !(0.0..=self.max_delay_secs as f64).contains(&after_secs) {
            RetryVerdict::TooLong
        } else {
            RetryVerdict::Retry(Duration::from_secs_f64(after_secs))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: RetryLimits = RetryLimits {
        max_delay_secs: 60,
        max_attempts: 10,
    };

    #[test]
    fn a_retry_within_both_bounds_waits_as_asked() {
        assert_eq!(
            LIMITS.judge(0.25, 0),
            RetryVerdict::Retry(Duration::from_millis(250))
        );
        assert_eq!(
            LIMITS.judge(60.0, 9),
            RetryVerdict::Retry(Duration::from_secs(60))
        );
    }

    #[test]
    fn a_delay_past_the_cap_is_not_waited_for() {
        assert_eq!(LIMITS.judge(60.001, 0), RetryVerdict::TooLong);
        assert_eq!(LIMITS.judge(1e9, 0), RetryVerdict::TooLong);
        assert_eq!(LIMITS.judge(f64::INFINITY, 0), RetryVerdict::TooLong);
        assert_eq!(LIMITS.judge(f64::NAN, 0), RetryVerdict::TooLong);
        assert_eq!(LIMITS.judge(-1.0, 0), RetryVerdict::TooLong);
    }

    #[test]
    fn the_eleventh_retry_of_one_request_is_refused() {
        assert_eq!(LIMITS.judge(0.05, 10), RetryVerdict::TooMany);
        let none = RetryLimits {
            max_delay_secs: 60,
            max_attempts: 0,
        };
        assert_eq!(none.judge(0.05, 0), RetryVerdict::TooMany);
    }
}
