//! Login throttling: exponential backoff after repeated failures, on two keys.
//!
//! - per e-mail **and client IP**: 5 free attempts, then 1 s doubling up to 15 minutes. An
//!   attacker guessing from one address is stopped; nobody else is affected.
//! - per e-mail from anywhere: 20 free attempts, then 1 s doubling up to 30 seconds. Slows a
//!   distributed guesser to about one try per 30 s per account. Clients that signed in to the
//!   account successfully in the last 30 days are exempt from this lock, so a third party
//!   cannot lock the owner out (OWASP's "device" idea, keyed by the client's address).
//!
//! Every attempt is counted **before** the password is verified, atomically in the database:
//! parallel guesses cannot share one count. A success clears the failures of both keys.
//! Keys are hashes of the (normalised) e-mail, whether or not an account exists, so the answers
//! for unknown and known e-mails look the same.

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

/// A client that signed in this recently is exempt from the account-wide lock.
pub const TRUSTED_FOR: Duration = Duration::days(30);

/// The stored state of one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleState {
    pub failures: i32,
    pub last_failure_at: DateTime<Utc>,
    pub locked_until: Option<DateTime<Utc>>,
    /// Client keys only: the last successful sign-in from this client to this account.
    pub last_success_at: Option<DateTime<Utc>>,
}

impl ThrottleState {
    pub fn fresh(now: DateTime<Utc>) -> Self {
        Self {
            failures: 0,
            last_failure_at: now,
            locked_until: None,
            last_success_at: None,
        }
    }

    fn locked(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.locked_until.filter(|until| *until > now)
    }
}

impl Backoff {
    /// The state after one more counted attempt at `now`.
    pub fn fail(&self, before: Option<ThrottleState>, now: DateTime<Utc>) -> ThrottleState {
        let last_success_at = before.and_then(|s| s.last_success_at);
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
            last_success_at,
        }
    }
}

/// Whether a login attempt may verify the password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Proceed,
    Refuse { retry_after: u64 },
}

fn seconds_until(until: DateTime<Utc>, now: DateTime<Utc>) -> u64 {
    ((until - now).num_milliseconds().max(0) as u64)
        .div_ceil(1000)
        .max(1)
}

/// Decides an attempt from the two keys' states and returns the states to store (only when it
/// proceeds: a refused attempt changes nothing, so it cannot extend a lock).
pub fn attempt(
    account: ThrottleState,
    client: ThrottleState,
    now: DateTime<Utc>,
) -> (Decision, Option<(ThrottleState, ThrottleState)>) {
    let trusted = client
        .last_success_at
        .is_some_and(|at| now - at < TRUSTED_FOR);
    let lock = [
        client.locked(now),
        if trusted { None } else { account.locked(now) },
    ]
    .into_iter()
    .flatten()
    .max();
    if let Some(until) = lock {
        return (
            Decision::Refuse {
                retry_after: seconds_until(until, now),
            },
            None,
        );
    }
    (
        Decision::Proceed,
        Some((
            PER_ACCOUNT.fail(Some(account), now),
            PER_CLIENT.fail(Some(client), now),
        )),
    )
}

/// After a correct password: both keys forget their failures; the client is now trusted.
pub fn succeeded(now: DateTime<Utc>) -> (ThrottleState, ThrottleState) {
    (
        ThrottleState::fresh(now),
        ThrottleState {
            last_success_at: Some(now),
            ..ThrottleState::fresh(now)
        },
    )
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
            last_success_at: None,
        };
        let next = PER_CLIENT.fail(Some(s), Utc::now());
        assert_eq!(next.failures, 1);
        assert_eq!(next.locked_until, None);
    }

    fn run(n: usize, account: &mut ThrottleState, client: &mut ThrottleState) -> Vec<Decision> {
        let now = Utc::now();
        (0..n)
            .map(|_| {
                let (d, states) = attempt(*account, *client, now);
                if let Some((a, c)) = states {
                    *account = a;
                    *client = c;
                }
                d
            })
            .collect()
    }

    #[test]
    fn a_burst_gets_the_free_attempts_and_one_more_then_is_refused() {
        let now = Utc::now();
        let (mut a, mut c) = (ThrottleState::fresh(now), ThrottleState::fresh(now));
        let decisions = run(50, &mut a, &mut c);
        let proceeded = decisions
            .iter()
            .filter(|d| **d == Decision::Proceed)
            .count();
        assert_eq!(proceeded, 6, "5 free, the 6th sets the lock");
        assert!(matches!(decisions[6], Decision::Refuse { retry_after: 1 }));
        assert_eq!(c.failures, 6, "refused attempts do not extend the lock");
    }

    #[test]
    fn a_trusted_client_ignores_the_account_lock_but_not_its_own() {
        let now = Utc::now();
        let locked_account = ThrottleState {
            failures: 40,
            last_failure_at: now,
            locked_until: Some(now + Duration::seconds(30)),
            last_success_at: None,
        };
        let stranger = ThrottleState::fresh(now);
        assert!(matches!(
            attempt(locked_account, stranger, now).0,
            Decision::Refuse { .. }
        ));
        let (_, owner) = succeeded(now - Duration::days(3));
        assert_eq!(attempt(locked_account, owner, now).0, Decision::Proceed);
        let stale_owner = ThrottleState {
            last_success_at: Some(now - Duration::days(31)),
            ..owner
        };
        assert!(matches!(
            attempt(locked_account, stale_owner, now).0,
            Decision::Refuse { .. }
        ));
        let locked_owner = ThrottleState {
            locked_until: Some(now + Duration::seconds(60)),
            ..owner
        };
        assert!(matches!(
            attempt(locked_account, locked_owner, now).0,
            Decision::Refuse { retry_after: 60 }
        ));
    }
}
