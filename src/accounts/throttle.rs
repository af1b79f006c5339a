//! The one backoff rule (django-flex-user's `TimeoutError`): after the n-th consecutive failure,
//! refuse every attempt for 2^(n-1) seconds, up to a cap. One-time codes cap it at an hour,
//! sign-in at 15 minutes.

use chrono::{DateTime, Duration, Utc};

pub const CODE_BACKOFF_CAP: Duration = Duration::hours(1);
pub const SIGN_IN_BACKOFF_CAP: Duration = Duration::minutes(15);

/// Refused: too many failures; nothing is checked or counted until `until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Too many failed attempts. Please try again later.")]
pub struct Throttled {
    pub until: DateTime<Utc>,
    /// Consecutive failures so far.
    pub failures: u32,
}

impl Throttled {
    /// Whole seconds to wait from `now`, rounded up, at least 1 (for `Retry-After`).
    pub fn retry_after_secs(&self, now: DateTime<Utc>) -> u64 {
        let millis = (self.until - now).num_milliseconds().max(0) as u64;
        millis.div_ceil(1000).max(1)
    }
}

/// A failure count and the window it opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backoff {
    pub failures: u32,
    pub until: Option<DateTime<Utc>>,
}

impl Backoff {
    /// `Err` while the window of the last failure is open.
    pub fn check(&self, now: DateTime<Utc>) -> Result<(), Throttled> {
        match self.until {
            Some(until) if now < until => Err(Throttled { until, failures: self.failures }),
            _ => Ok(()),
        }
    }

    /// One more failure at `now`: the window becomes 2^(n-1) seconds, at most `cap`.
    pub fn fail(&self, now: DateTime<Utc>, cap: Duration) -> Backoff {
        let failures = self.failures.saturating_add(1);
        Backoff { failures, until: Some(now + window(failures, cap)) }
    }
}

/// 2^(n-1) seconds after the n-th failure, capped.
pub fn window(failures: u32, cap: Duration) -> Duration {
    let exponent = failures.saturating_sub(1).min(40);
    Duration::seconds(1i64 << exponent).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_one_second_and_caps() {
        let secs = |n| window(n, CODE_BACKOFF_CAP).num_seconds();
        assert_eq!([secs(1), secs(2), secs(3), secs(4)], [1, 2, 4, 8]);
        assert_eq!(secs(12), 2048);
        assert_eq!(secs(13), 3600);
        assert_eq!(secs(10_000), 3600);
        assert_eq!(window(11, SIGN_IN_BACKOFF_CAP).num_seconds(), 900);
    }

    #[test]
    fn refuses_inside_the_window_only() {
        let t0 = DateTime::from_timestamp(1_000_000, 0).unwrap();
        let b = Backoff::default();
        assert!(b.check(t0).is_ok());
        let b = b.fail(t0, CODE_BACKOFF_CAP);
        assert_eq!(b.failures, 1);
        let refused = b.check(t0 + Duration::milliseconds(999)).unwrap_err();
        assert_eq!(refused.failures, 1);
        assert_eq!(refused.retry_after_secs(t0 + Duration::milliseconds(1)), 1);
        assert!(b.check(t0 + Duration::seconds(1)).is_ok());
        let b = b.fail(t0 + Duration::seconds(1), CODE_BACKOFF_CAP);
        assert_eq!(b.until, Some(t0 + Duration::seconds(3)));
        assert_eq!(b.check(t0 + Duration::seconds(1)).unwrap_err().retry_after_secs(t0 + Duration::seconds(1)), 2);
    }
}
