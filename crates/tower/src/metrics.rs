//! Counters for `/metrics`, in the Prometheus text format (written by hand: a few atomics
//! do not need a metrics framework).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    pub index_full: AtomicU64,
    pub index_not_modified: AtomicU64,
    /// Report batches stored.
    pub report_batches: AtomicU64,
    /// Report batches refused for what they hold (not JSON, not a valid batch); their
    /// reports are not counted anywhere, as a refused batch may not even have a list.
    pub report_batches_rejected: AtomicU64,
    pub reports_accepted: AtomicU64,
    pub reports_duplicate: AtomicU64,
    pub rate_limited: AtomicU64,
    pub management_actions: AtomicU64,
    pub auth_failures: AtomicU64,
}

impl Metrics {
    pub fn inc(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }

    /// The text exposition, with the index's serial and flight count as gauges.
    pub fn render(&self, index_serial: u64, index_flights: usize) -> String {
        let mut s = String::new();
        let counters: [(&str, &str, &AtomicU64); 9] = [
            (
                "testpilot_index_requests_total{result=\"200\"}",
                "Index requests answered.",
                &self.index_full,
            ),
            (
                "testpilot_index_requests_total{result=\"304\"}",
                "",
                &self.index_not_modified,
            ),
            (
                "testpilot_report_batches_total{result=\"stored\"}",
                "Report batches (requests): stored, or rejected as not JSON or not a valid batch.",
                &self.report_batches,
            ),
            (
                "testpilot_report_batches_total{result=\"rejected\"}",
                "",
                &self.report_batches_rejected,
            ),
            (
                "testpilot_reports_total{result=\"accepted\"}",
                "Reports in stored batches: new, or a resend of one already stored.",
                &self.reports_accepted,
            ),
            (
                "testpilot_reports_total{result=\"duplicate\"}",
                "",
                &self.reports_duplicate,
            ),
            (
                "testpilot_rate_limited_total",
                "Client requests refused by the rate limit.",
                &self.rate_limited,
            ),
            (
                "testpilot_management_actions_total",
                "Lifecycle actions done.",
                &self.management_actions,
            ),
            (
                "testpilot_auth_failures_total",
                "Requests refused for a missing or unknown token.",
                &self.auth_failures,
            ),
        ];
        for (name, help, c) in counters {
            let base = name.split('{').next().unwrap_or(name);
            if !help.is_empty() {
                let _ = writeln!(s, "# HELP {base} {help}\n# TYPE {base} counter");
            }
            let _ = writeln!(s, "{name} {}", c.load(Ordering::Relaxed));
        }
        let _ = writeln!(s, "# HELP testpilot_index_serial The serial of the index being served.\n# TYPE testpilot_index_serial gauge\ntestpilot_index_serial {index_serial}");
        let _ = writeln!(s, "# HELP testpilot_index_flights Flights in the index being served.\n# TYPE testpilot_index_flights gauge\ntestpilot_index_flights {index_flights}");
        s
    }
}
