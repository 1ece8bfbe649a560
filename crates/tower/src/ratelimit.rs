//! Per-address rate limiting for the open client endpoints that write (reports): a token
//! bucket per IP address, in memory (each tower limits on its own).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use testpilot_flight::Timestamp;

/// A token bucket per client address.
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
        let (tokens, last) = buckets.entry(ip).or_insert((self.burst, now.0));
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
}
