//! The resident memory of an application that embeds an idle pilot (docs/embedding.md; goal
//! under 10 MB): opens a profile, starts the agent against a signed index in a file with 20
//! flights that each set a feature and wait, lets it settle, and prints this whole process's
//! `VmRSS` and `VmHWM` from /proc/self/status (nothing subtracted: the application here is
//! only the pilot).
//!
//! Run: `cargo run --release -p testpilot-pilot --example embed_idle_rss [SECONDS]`
//! (or `scripts/bench-embed.sh rss`).

#[path = "../tests/fixture/embed_index.rs"]
mod fixture;

use fixture::{flight, wait_until, FileIndex};
use serde_json::json;
use std::time::Duration;
use testpilot_pilot::EmbeddedPilot;

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn main() {
    let idle: u64 = match std::env::args().nth(1) {
        None => 5,
        Some(s) => s.parse().unwrap_or_else(|_| {
            eprintln!("usage: embed_idle_rss [SECONDS]: how long to idle before measuring, a whole number (default 5)");
            std::process::exit(2)
        }),
    };
    let index = FileIndex::new();
    let flights = (0..20)
        .map(|i| {
            flight(
                &format!("idle-{i}"),
                json!([{"action": "feature", "id": format!("idle.{i}"), "value": {"on": true}},
                       {"action": "wait", "for": "7d"}]),
            )
        })
        .collect();
    index.publish(1, flights);
    let pilot = EmbeddedPilot::open(index.config("profile"), None).expect("open the profile");
    pilot.start().expect("start the agent");
    wait_until("the 20 features are on", || pilot.features().len() == 20);
    std::thread::sleep(Duration::from_secs(idle));
    assert!(pilot.running(), "the agent runs");
    println!(
        "embedded idle pilot (20 flights, {idle} s idle): VmRSS {} kB, VmHWM {} kB",
        status_kb("VmRSS:"),
        status_kb("VmHWM:")
    );
    pilot.stop().expect("stop the agent");
}
