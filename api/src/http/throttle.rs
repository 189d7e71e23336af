//! Counters per client address (an IPv6 client by its /64, which one host usually holds whole),
//! per process (each replica counts its own), with bounded memory:
//!
//! - failed credential checks: past `auth.failed_credentials_per_minute` failures in a minute,
//!   every credential check from that address answers 429 until the minute is over — the admin
//!   secret and API keys cannot be guessed at line rate, and a flood of random keys stops
//!   costing a database lookup each;
//! - the sign-in routes' budgets ([`Budget`]): every request to `/api/v1/auth/*` counts, so
//!   one address cannot queue enough password hashes to slow everybody's login down, nor fill
//!   the pending provider sign-ins.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Addresses tracked at once per counter; beyond this the least recently seen are forgotten.
const MAX_ADDRESSES: u64 = 100_000;

struct Window {
    started: Instant,
    count: AtomicU32,
}

/// Events counted per client address in fixed windows: `limit` per `window`, then refused
/// until the address's window ends. Memory is bounded (moka); per process.
pub struct AddressWindows {
    limit: u32,
    window: Duration,
    windows: moka::sync::Cache<IpAddr, Arc<Window>>,
}

/// The address a client is counted by: IPv4 whole, IPv6 by its /64 (IPv4-mapped as IPv4).
fn counted_as(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl AddressWindows {
    /// `limit` = 0 turns the counter off.
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            window,
            windows: moka::sync::Cache::builder()
                .max_capacity(MAX_ADDRESSES)
                .time_to_live(window)
                .build(),
        }
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    fn retry_after(&self, w: &Window) -> u64 {
        self.window
            .saturating_sub(w.started.elapsed())
            .as_secs()
            .max(1)
    }

    /// `Err(seconds until the window ends)` when `ip` has used up its events.
    pub fn check(&self, ip: Option<IpAddr>) -> Result<(), u64> {
        let (Some(ip), true) = (ip, self.limit > 0) else {
            return Ok(());
        };
        match self.windows.get(&counted_as(ip)) {
            Some(w) if w.count.load(Ordering::Relaxed) >= self.limit => Err(self.retry_after(&w)),
            _ => Ok(()),
        }
    }

    /// Counts an event from `ip`; returns the events in its window so far.
    pub fn count(&self, ip: Option<IpAddr>) -> u32 {
        let Some(ip) = ip else { return 0 };
        self.window_of(ip).count.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Counts an event from `ip` and lets it through while the window has room:
    /// `Err(seconds until the window ends)` for the events past the limit.
    pub fn admit(&self, ip: Option<IpAddr>) -> Result<(), u64> {
        let (Some(ip), true) = (ip, self.limit > 0) else {
            return Ok(());
        };
        let w = self.window_of(ip);
        if w.count.fetch_add(1, Ordering::Relaxed) < self.limit {
            Ok(())
        } else {
            Err(self.retry_after(&w))
        }
    }

    fn window_of(&self, ip: IpAddr) -> Arc<Window> {
        self.windows.get_with(counted_as(ip), || {
            Arc::new(Window {
                started: Instant::now(),
                count: AtomicU32::new(0),
            })
        })
    }
}

/// Failed credential checks per client address, per minute.
pub struct FailedCredentials(AddressWindows);

impl FailedCredentials {
    /// `limit` = 0 turns the throttle off.
    pub fn new(limit: u32) -> Self {
        Self(AddressWindows::new(limit, Duration::from_secs(60)))
    }

    pub fn limit(&self) -> u32 {
        self.0.limit()
    }

    /// `Err(seconds until the window ends)` when `ip` has used up its failures.
    pub fn check(&self, ip: Option<IpAddr>) -> Result<(), u64> {
        self.0.check(ip)
    }

    /// Counts a failed check from `ip`; returns the failures in its window so far.
    pub fn fail(&self, ip: Option<IpAddr>) -> u32 {
        self.0.count(ip)
    }
}

/// The per-address budgets of the public sign-in routes (a [`crate::http::routes::Route`]
/// names its budget; every request to it counts, whatever its outcome).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// Login, refresh, logout and the provider's callback: `auth.sign_ins_per_minute`.
    SignIn,
    /// Registration: `auth.registrations_per_hour`.
    Registration,
    /// Starting a provider sign-in, which stores a pending login for 10 minutes:
    /// `oidc.pending_logins_per_address` per 10 minutes.
    OidcStart,
}

impl Budget {
    /// What a refusal says, and the window's unit for the `RateLimit-Limit` header.
    pub fn detail(self) -> &'static str {
        match self {
            Budget::SignIn => "too many sign-in requests from this address; try again later",
            Budget::Registration => "too many registrations from this address; try again later",
            Budget::OidcStart => {
                "too many sign-ins with the identity provider started from this address; \
                 finish one or try again later"
            }
        }
    }
}

/// The counters of each [`Budget`].
pub struct SignInBudgets {
    sign_in: AddressWindows,
    registration: AddressWindows,
    oidc_start: AddressWindows,
}

impl SignInBudgets {
    pub fn new(sign_ins_per_minute: u32, registrations_per_hour: u32, pending_logins: u32) -> Self {
        Self {
            sign_in: AddressWindows::new(sign_ins_per_minute, Duration::from_secs(60)),
            registration: AddressWindows::new(registrations_per_hour, Duration::from_secs(3600)),
            oidc_start: AddressWindows::new(pending_logins, Duration::from_secs(600)),
        }
    }

    pub fn of(&self, budget: Budget) -> &AddressWindows {
        match budget {
            Budget::SignIn => &self.sign_in,
            Budget::Registration => &self.registration,
            Budget::OidcStart => &self.oidc_start,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_admitted_up_to_its_budget_then_told_when_to_retry() {
        let w = AddressWindows::new(2, Duration::from_secs(600));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(w.admit(Some(a)), Ok(()));
        assert_eq!(w.admit(Some(a)), Ok(()));
        let retry = w.admit(Some(a)).unwrap_err();
        assert!((590..=600).contains(&retry), "{retry}");
        assert_eq!(w.admit(Some(b)), Ok(()), "another address has its own");
        assert_eq!(w.admit(None), Ok(()), "no address: nothing to count by");
        let off = AddressWindows::new(0, Duration::from_secs(60));
        assert!((0..10).all(|_| off.admit(Some(a)).is_ok()), "0 = off");
    }

    #[test]
    fn an_address_is_throttled_after_its_failures_and_ipv6_by_its_64() {
        let t = FailedCredentials::new(3);
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(t.check(Some(a)), Ok(()));
            t.fail(Some(a));
        }
        assert!(t.check(Some(a)).is_err());
        assert!(t.check(Some(same_64)).is_err(), "the same /64");
        assert_eq!(t.check(Some(other)), Ok(()));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        t.fail(Some(v4));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        t.fail(Some(mapped));
        t.fail(Some(v4));
        assert!(
            t.check(Some(v4)).is_err(),
            "mapped counts as the IPv4 address"
        );
        assert_eq!(FailedCredentials::new(0).check(Some(a)), Ok(()), "off");
    }
}
