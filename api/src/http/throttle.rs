//! Failed credential checks, counted per client address (an IPv6 client by its /64, which one
//! host usually holds whole): past `auth.failed_credentials_per_minute` failures in a minute,
//! every credential check from that address answers 429 until the minute is over — the admin
//! secret and API keys cannot be guessed at line rate, and a flood of random keys stops costing
//! a database lookup each. Per process (each replica counts its own); memory is bounded.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at once; beyond this the least recently seen are forgotten.
const MAX_ADDRESSES: u64 = 100_000;

struct Window {
    started: Instant,
    failures: AtomicU32,
}

pub struct FailedCredentials {
    limit: u32,
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

impl FailedCredentials {
    /// `limit` = 0 turns the throttle off.
    pub fn new(limit: u32) -> Self {
        Self {
            limit,
            windows: moka::sync::Cache::builder()
                .max_capacity(MAX_ADDRESSES)
                .time_to_live(WINDOW)
                .build(),
        }
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// `Err(seconds until the window ends)` when `ip` has used up its failures.
    pub fn check(&self, ip: Option<IpAddr>) -> Result<(), u64> {
        let (Some(ip), true) = (ip, self.limit > 0) else {
            return Ok(());
        };
        match self.windows.get(&counted_as(ip)) {
            Some(w) if w.failures.load(Ordering::Relaxed) >= self.limit => {
                let left = WINDOW.saturating_sub(w.started.elapsed());
                Err(left.as_secs().max(1))
            }
            _ => Ok(()),
        }
    }

    /// Counts a failed check from `ip`; returns the failures in its window so far.
    pub fn fail(&self, ip: Option<IpAddr>) -> u32 {
        let Some(ip) = ip else { return 0 };
        let w = self.windows.get_with(counted_as(ip), || {
            Arc::new(Window {
                started: Instant::now(),
                failures: AtomicU32::new(0),
            })
        });
        w.failures.fetch_add(1, Ordering::Relaxed) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
