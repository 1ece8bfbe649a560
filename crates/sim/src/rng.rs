//! Deterministic randomness from the seed: SplitMix64, keyed by (seed, client, stream), so any
//! client can be drawn on its own, on any thread, in any order, and come out the same.

/// One SplitMix64 step over `x`: a good 64-bit mix.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The random streams a client draws from, one per purpose, so that adding a draw to one
/// purpose does not move the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Person = 1,
    Arrival = 2,
    Behaviour = 3,
    Sample = 4,
}

/// A small generator. Not cryptographic: it only has to be fast, even and reproducible.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64, client: u64, stream: Stream) -> Rng {
        Rng(mix(mix(seed ^ mix(client)) ^ stream as u64))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[0, n)` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Exponentially distributed with the given mean (the wait for a Poisson event).
    pub fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }
}

/// A stable, random-looking person id in the form of a version-4 UUID.
pub fn person_id(seed: u64, client: u64) -> String {
    let mut r = Rng::new(seed, client, Stream::Person);
    let (a, b) = (r.next_u64(), r.next_u64());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_look_like_uuids_and_repeat() {
        let id = person_id(7, 12);
        assert!(testpilot_flight::report::is_uuid(&id), "{id}");
        assert_eq!(id, person_id(7, 12));
        assert_ne!(id, person_id(7, 13));
        assert_ne!(id, person_id(8, 12));
    }

    #[test]
    fn unit_is_even() {
        let mut r = Rng::new(1, 2, Stream::Behaviour);
        let n = 100_000;
        let mean = (0..n).map(|_| r.unit()).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
    }
}
