//! The load on the tower: index fetches, reports and events over virtual time, in bins of
//! one poll interval, and what serving it takes.

use crate::fleet::bin_of;
use serde::Serialize;
use testpilot_flight::Timestamp;

/// Bytes of HTTP headers counted with each request and its answer.
pub const OVERHEAD_BYTES: f64 = 400.0;
/// An index answer `304 Not Modified` (headers only).
pub const NOT_MODIFIED_BYTES: f64 = 250.0;
/// The index is re-signed once a day (the tower's refresh window), so each client fetches
/// it whole once a day and gets 304 otherwise.
pub const REFRESH_MS: i64 = 86_400_000;
/// The index stays valid this long after it is signed (the tower's default).
pub const INDEX_TTL_MS: i64 = 7 * 86_400_000;

/// What one tower serves, from BENCHMARKS.md (this 2-core machine): index answers are
/// served from memory (57,000 conditional answers/s); reports are bound by requests (a pilot
/// sends a few at a time): 10,000 requests/s of 3 reports is the low end of what the current
/// build measured — SQLite on the machine shared with other work (10,226–14,995), PostgreSQL
/// on a machine of its own (9,827–12,333) — so a plan made with it holds on either.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Capacity {
    pub index_per_second: f64,
    pub report_requests_per_second: f64,
}

impl Default for Capacity {
    fn default() -> Capacity {
        Capacity {
            index_per_second: 57_000.0,
            report_requests_per_second: 10_000.0,
        }
    }
}

/// The shape of the load: the time span, the bins and the sizes of what is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadModel {
    pub start: Timestamp,
    pub end: Timestamp,
    pub poll_ms: i64,
    pub bins: usize,
    /// The signed index's size in bytes.
    pub index_bytes: f64,
    /// A status report's JSON size in bytes (the ineligible/unsampled ones nobody runs).
    pub report_bytes: f64,
}

impl LoadModel {
    pub fn new(start: Timestamp, end: Timestamp, poll_ms: i64, index_bytes: f64) -> LoadModel {
        let span = (end.0 - start.0).max(1);
        let bins = (span / poll_ms.max(1)).clamp(1, 20_000) as usize;
        LoadModel {
            start,
            end,
            poll_ms,
            bins,
            index_bytes,
            report_bytes: 170.0,
        }
    }

    pub fn bin(&self, at: Timestamp) -> Option<usize> {
        bin_of(self.start, self.end, self.bins, at)
    }

    /// The first poll at or after `at` of a client that first polled at `arrival`.
    pub fn next_poll(&self, arrival: Timestamp, at: Timestamp) -> Timestamp {
        if at <= arrival {
            return arrival;
        }
        let k = (at.0 - arrival.0 + self.poll_ms - 1) / self.poll_ms;
        Timestamp(arrival.0 + k * self.poll_ms)
    }

    fn bin_seconds(&self) -> f64 {
        (self.end.0 - self.start.0) as f64 / self.bins as f64 / 1000.0
    }
}

/// Counts per bin.
#[derive(Debug, Clone, PartialEq)]
pub struct Load {
    model: LoadModel,
    /// Clients that start polling in each bin (summed up later into clients polling).
    arrivals: Vec<f64>,
    pub reports: Vec<f64>,
    pub report_requests: Vec<f64>,
    pub report_bytes: Vec<f64>,
    pub events: Vec<f64>,
    pub event_bytes: Vec<f64>,
}

impl Load {
    pub fn new(model: &LoadModel) -> Load {
        let z = vec![0.0; model.bins];
        Load {
            model: model.clone(),
            arrivals: z.clone(),
            reports: z.clone(),
            report_requests: z.clone(),
            report_bytes: z.clone(),
            events: z.clone(),
            event_bytes: z,
        }
    }

    pub fn add(&mut self, o: &Load) {
        for (a, b) in [
            (&mut self.arrivals, &o.arrivals),
            (&mut self.reports, &o.reports),
            (&mut self.report_requests, &o.report_requests),
            (&mut self.report_bytes, &o.report_bytes),
            (&mut self.events, &o.events),
            (&mut self.event_bytes, &o.event_bytes),
        ] {
            a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        }
    }

    /// A client that starts polling at `at` and sends `reports` status reports at its first
    /// poll (in one request).
    pub fn client(&mut self, at: Timestamp, reports: u32) {
        if let Some(b) = self.model.bin(at) {
            self.arrivals[b] += 1.0;
        }
        if reports > 0 {
            let bytes = reports as f64 * self.model.report_bytes;
            self.reports_at(at, reports as f64, bytes, 1.0);
        }
    }

    /// Reports (a batch, one request) sent at `at`, each standing for `weight` clients.
    pub fn reports_at(&mut self, at: Timestamp, n: f64, bytes: f64, weight: f64) {
        if let Some(b) = self.model.bin(at) {
            self.reports[b] += n * weight;
            self.report_requests[b] += weight;
            self.report_bytes[b] += (bytes + OVERHEAD_BYTES) * weight;
        }
    }

    /// Events (a batch, one request) posted to the tower at `at`.
    pub fn events_at(&mut self, at: Timestamp, n: f64, bytes: f64, weight: f64) {
        if let Some(b) = self.model.bin(at) {
            self.events[b] += n * weight;
            self.event_bytes[b] += (bytes + OVERHEAD_BYTES) * weight;
        }
    }

    /// Index requests per bin: every polling client once per poll interval; whole (200)
    /// once a day when the tower re-signs it (and at a client's first poll), 304 otherwise.
    fn index(&self) -> (Vec<f64>, Vec<f64>) {
        let m = &self.model;
        let per_bin = m.bin_seconds() * 1000.0 / m.poll_ms as f64;
        let mut polling = 0.0;
        let mut all = Vec::with_capacity(m.bins);
        let mut whole = Vec::with_capacity(m.bins);
        for b in 0..m.bins {
            let from =
                m.start.0 + ((m.end.0 - m.start.0) as i128 * b as i128 / m.bins as i128) as i64;
            let to = m.start.0
                + ((m.end.0 - m.start.0) as i128 * (b + 1) as i128 / m.bins as i128) as i64;
            let rolls = (to - 1).div_euclid(REFRESH_MS) - (from - 1).div_euclid(REFRESH_MS);
            let mut full = self.arrivals[b] + polling * rolls.max(0) as f64;
            polling += self.arrivals[b];
            let requests = polling * per_bin;
            full = full.min(requests.max(self.arrivals[b]));
            all.push(requests.max(full));
            whole.push(full);
        }
        (all, whole)
    }

    /// The figures: mean and peak per second, bytes, and what serving them takes.
    pub fn summary(&self, capacity: Capacity) -> LoadSummary {
        let m = &self.model;
        let secs = m.bin_seconds();
        let span = (m.end.0 - m.start.0) as f64 / 1000.0;
        let (index, whole) = self.index();
        let index_bytes: Vec<f64> = index
            .iter()
            .zip(&whole)
            .map(|(all, w)| w * (m.index_bytes + OVERHEAD_BYTES) + (all - w) * NOT_MODIFIED_BYTES)
            .collect();
        let bytes: Vec<f64> = (0..m.bins)
            .map(|b| index_bytes[b] + self.report_bytes[b] + self.event_bytes[b])
            .collect();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / span;
        let peak = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max) / secs;
        let figures = |f: &dyn Fn(&[f64]) -> f64| Figures {
            index_per_second: f(&index),
            reports_per_second: f(&self.reports),
            report_requests_per_second: f(&self.report_requests),
            events_per_second: f(&self.events),
            bytes_per_second: f(&bytes),
        };
        let (mean, peak) = (figures(&mean), figures(&peak));
        let towers_for_reports = (peak.report_requests_per_second
            / capacity.report_requests_per_second)
            .ceil()
            .max(1.0);
        let towers_for_index = (peak.index_per_second / capacity.index_per_second).ceil();
        // With a CDN in front of the index, the towers needed for reports serve only the
        // index requests that miss it.
        let origin = towers_for_reports * capacity.index_per_second;
        let cdn_hit_rate = if peak.index_per_second <= origin {
            0.0
        } else {
            1.0 - origin / peak.index_per_second
        };
        LoadSummary {
            mean,
            peak,
            poll_seconds: m.poll_ms as f64 / 1000.0,
            bin_seconds: secs,
            capacity,
            towers: towers_for_reports.max(towers_for_index) as u64,
            towers_with_cdn: towers_for_reports as u64,
            cdn_hit_rate,
        }
    }
}

/// Requests, reports, events and bytes per second.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Figures {
    pub index_per_second: f64,
    pub reports_per_second: f64,
    pub report_requests_per_second: f64,
    pub events_per_second: f64,
    pub bytes_per_second: f64,
}

/// The load over the run: the mean (at the top level) and the busiest bin (`peak`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadSummary {
    #[serde(flatten)]
    pub mean: Figures,
    pub peak: Figures,
    pub poll_seconds: f64,
    /// The width of the bins the peak is measured over.
    pub bin_seconds: f64,
    /// What one tower serves (from BENCHMARKS.md).
    pub capacity: Capacity,
    /// Towers at that capacity for the peak, serving the index themselves.
    pub towers: u64,
    /// Towers needed with a CDN in front of the index ...
    pub towers_with_cdn: u64,
    /// ... and the CDN hit rate that needs (0 when the towers serve the index anyway).
    pub cdn_hit_rate: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_fleet_polls_at_n_over_the_interval() {
        let day = 86_400_000;
        let m = LoadModel::new(Timestamp(0), Timestamp(2 * day), 900_000, 10_000.0);
        let mut l = Load::new(&m);
        for _ in 0..900 {
            l.client(Timestamp(0), 0);
        }
        let s = l.summary(Capacity::default());
        assert!((s.mean.index_per_second - 1.0).abs() < 0.01, "{s:?}");
        assert_eq!(s.peak.reports_per_second, 0.0);
        assert_eq!(s.towers, 1);
    }
}
