//! Per-address rate limiting for the open client endpoints that write (reports): a token
//! bucket per IP address, in memory (each tower limits on its own).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use testpilot_flight::Timestamp;

/// The bucket an address counts in: an IPv4 address alone; an IPv6 address with the rest of
/// its /64 (one site or host gets a whole /64, so its addresses are one client). An
/// IPv4-mapped IPv6 address counts as its IPv4 address.
fn bucket_of(ip: IpAddr) -> IpAddr {
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

/// A token bucket per client address (per /64 for IPv6).
#[derive(Debug)]
pub struct RateLimiter {
    /// Requests per second; 0 turns limiting off.
    per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, i64)>>,
}

/// Beyond this many addresses, full buckets (idle addresses) are forgotten.
const PRUNE_ABOVE: usize = 10_000;

impl RateLimiter {
    pub fn new(per_sec: f64, burst: f64) -> Self {
        RateLimiter {
            per_sec,
            burst: burst.max(1.0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `ip`'s bucket at `now`; `Err(seconds)` says when to retry.
    pub fn check(&self, ip: IpAddr, now: Timestamp) -> Result<(), u64> {
        if self.per_sec <= 0.0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > PRUNE_ABOVE {
            let (rate, burst) = (self.per_sec, self.burst);
            buckets.retain(|_, (tokens, last)| {
                *tokens + (now.0 - *last) as f64 / 1000.0 * rate < burst
            });
        }
        let (tokens, last) = buckets.entry(bucket_of(ip)).or_insert((self.burst, now.0));
        *tokens = (*tokens + (now.0 - *last).max(0) as f64 / 1000.0 * self.per_sec).min(self.burst);
        *last = now.0;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.per_sec).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refills_with_time() {
        let l = RateLimiter::new(2.0, 3.0);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(l.check(ip, Timestamp(0)), Ok(()));
        }
        assert_eq!(l.check(ip, Timestamp(0)), Err(1));
        assert_eq!(l.check(other, Timestamp(0)), Ok(()));
        assert_eq!(l.check(ip, Timestamp(500)), Ok(()));
        assert!(l.check(ip, Timestamp(500)).is_err());
        assert_eq!(RateLimiter::new(0.0, 0.0).check(ip, Timestamp(0)), Ok(()));
    }

    #[test]
    fn ipv6_addresses_of_one_64_share_a_bucket() {
        let l = RateLimiter::new(1.0, 2.0);
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:1:2:3".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(l.check(a, Timestamp(0)), Ok(()));
        assert_eq!(l.check(b, Timestamp(0)), Ok(()));
        assert!(l.check(b, Timestamp(0)).is_err(), "same /64, same bucket");
        assert_eq!(l.check(other, Timestamp(0)), Ok(()));
        let v4: IpAddr = "10.0.0.9".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.9".parse().unwrap();
        assert_eq!(l.check(v4, Timestamp(0)), Ok(()));
        assert_eq!(l.check(mapped, Timestamp(0)), Ok(()));
        assert!(l.check(v4, Timestamp(0)).is_err());
    }
}
