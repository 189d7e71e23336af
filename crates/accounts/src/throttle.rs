//! Login throttling: exponential backoff after repeated failures, on two keys.
//!
//! - per e-mail **and client IP**: 5 free failures, then 1 s doubling up to 15 minutes. An
//!   attacker guessing from one address is stopped; nobody else is affected.
//! - per e-mail from anywhere: 20 free failures, then 1 s doubling up to **30 seconds**. Slows a
//!   distributed guesser to about one try per 30 s per account, while a third party trying to
//!   lock the owner out can only make them wait up to 30 s.
//!
//! Keys are hashes of the (normalised) e-mail, whether or not an account exists, so the answers
//! for unknown and known e-mails look the same. A success clears both keys.

use chrono::{DateTime, Duration, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub free_failures: i32,
    pub max_delay_seconds: i64,
}

pub const PER_CLIENT: Backoff = Backoff {
    free_failures: 5,
    max_delay_seconds: 15 * 60,
};

pub const PER_ACCOUNT: Backoff = Backoff {
    free_failures: 20,
    max_delay_seconds: 30,
};

/// Failures older than this are forgotten.
pub const WINDOW: Duration = Duration::hours(1);

/// The stored state of one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleState {
    pub failures: i32,
    pub last_failure_at: DateTime<Utc>,
    pub locked_until: Option<DateTime<Utc>>,
}

impl Backoff {
    /// The state after one more failure at `now`.
    pub fn fail(&self, before: Option<ThrottleState>, now: DateTime<Utc>) -> ThrottleState {
        let failures = match before {
            Some(s) if now - s.last_failure_at < WINDOW => s.failures.saturating_add(1),
            _ => 1,
        };
        let over = failures - self.free_failures;
        let locked_until = (over > 0).then(|| {
            let delay = 1i64
                .checked_shl((over - 1).min(30) as u32)
                .unwrap_or(i64::MAX)
                .min(self.max_delay_seconds);
            now + Duration::seconds(delay)
        });
        ThrottleState {
            failures,
            last_failure_at: now,
            locked_until,
        }
    }
}

/// Seconds until the latest lock among `states` ends, if any is still in force.
pub fn retry_after(states: &[ThrottleState], now: DateTime<Utc>) -> Option<u64> {
    states
        .iter()
        .filter_map(|s| s.locked_until)
        .filter(|until| *until > now)
        .max()
        .map(|until| {
            ((until - now).num_milliseconds() as u64)
                .div_ceil(1000)
                .max(1)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_failures_then_doubling_up_to_the_cap() {
        let now = Utc::now();
        let mut s = None;
        let mut delays = vec![];
        for _ in 0..20 {
            let next = PER_CLIENT.fail(s, now);
            delays.push(next.locked_until.map(|u| (u - now).num_seconds()));
            s = Some(next);
        }
        assert_eq!(&delays[..5], &[None; 5]);
        assert_eq!(
            &delays[5..12],
            &[
                Some(1),
                Some(2),
                Some(4),
                Some(8),
                Some(16),
                Some(32),
                Some(64)
            ]
        );
        assert_eq!(delays[19], Some(900), "capped at 15 minutes");
    }

    #[test]
    fn the_account_wide_lock_is_short() {
        let now = Utc::now();
        let mut s = None;
        for _ in 0..100 {
            s = Some(PER_ACCOUNT.fail(s, now));
        }
        let until = s.unwrap().locked_until.unwrap();
        assert_eq!((until - now).num_seconds(), 30);
    }

    #[test]
    fn old_failures_are_forgotten() {
        let then = Utc::now() - Duration::hours(2);
        let s = ThrottleState {
            failures: 50,
            last_failure_at: then,
            locked_until: Some(then + Duration::seconds(900)),
        };
        let next = PER_CLIENT.fail(Some(s), Utc::now());
        assert_eq!(next.failures, 1);
        assert_eq!(next.locked_until, None);
    }

    #[test]
    fn retry_after_is_the_latest_lock_in_force() {
        let now = Utc::now();
        let st = |secs: i64| ThrottleState {
            failures: 9,
            last_failure_at: now,
            locked_until: Some(now + Duration::seconds(secs)),
        };
        assert_eq!(retry_after(&[st(-5)], now), None);
        assert_eq!(retry_after(&[st(3), st(10)], now), Some(10));
        assert_eq!(retry_after(&[], now), None);
    }
}
