//! A year of a pilot's use in virtual time, to show that pruning keeps a profile bounded
//! (`scripts/prove-pruning.sh`, RELIABILITY.md "Pruning"): an event observed every minute, a
//! new short flight every three days, reports accepted by the tower at once, and the agent's
//! hourly prune — or none, with `--no-prune`. Prints the journal's size and rows by month.
//!
//! `cargo run -p testpilot-pilot --example pilot_prune_year -- [--no-prune] [--dir DIR] [--days N]`

use serde_json::json;
use std::sync::Arc;
use testpilot_flight::{Clock, Timestamp};
use testpilot_pilot::engine::PilotConfig;
use testpilot_pilot::journal::{prune, Retention};
use testpilot_pilot::net::{Net, Request, Response};
use testpilot_pilot::{Error, Faults, Journal, ManualClock, Pilot, ReferenceHost};

/// A tower that answers 200 to everything.
struct Ok200;
impl Net for Ok200 {
    fn send(&self, _: &Request) -> Result<Response, Error> {
        Ok(Response {
            status: 200,
            ..Response::default()
        })
    }
}

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let pruning = !args.iter().any(|a| a == "--no-prune");
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
    };
    let days: i64 = arg("--days").map(|d| d.parse()).transpose()?.unwrap_or(365);
    let base = arg("--dir")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(base)?;
    let profile = dir.path().join("profile");
    let clock = ManualClock::new(Timestamp(1_780_000_000_000));
    let config = PilotConfig {
        profile: profile.clone(),
        person: Some(
            json!({"personid": "p", "os": "linux", "channel": "release", "locale": "en-US", "appversion": "2.4.0"}),
        ),
    };
    let mut p = Pilot::open(
        config,
        Box::new(ReferenceHost::new(&profile, Faults::default())),
        Arc::new(Ok200),
        Arc::new(clock.clone()),
        Faults::default(),
    )?;
    let r = Retention::default();
    println!(
        "pilot, {} — retention {} days, at most {} events",
        if pruning {
            "pruned hourly"
        } else {
            "never pruned"
        },
        r.keep.as_secs() / 86_400,
        r.max_events
    );
    println!("month  journal(KiB)  wal(KiB)  events  outbox  timeline  effects  flights");
    let mut flights = 0u64;
    let start = clock.now();
    for hour in 0..days * 24 {
        if hour % 72 == 0 {
            flights += 1;
            let f = json!({"studyname": format!("f{flights}"), "author": "t@example.com", "description": "a short flight", "version": 1,
                "flightplan": [{"action": "feature", "id": format!("app.f{flights}"), "value": {"on": true}}, {"action": "wait", "for": "1d"}]});
            p.apply_index(&[f], flights)?;
        }
        for _ in 0..60 {
            p.journal
                .record_event("app.tick", None, None, clock.now())?;
            clock.advance(MINUTE);
        }
        p.tick()?;
        let sent: Vec<i64> = p
            .journal
            .outbox(1000)?
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        p.journal.mark_sent(&sent, clock.now())?;
        if pruning {
            prune::on_schedule(&mut p.journal, clock.now(), &r)?;
        }
        if (clock.now().0 - start.0) % (30 * DAY) == 0 {
            let month = (clock.now().0 - start.0) / (30 * DAY);
            print_row(&p, &Journal::path_in(&profile), month)?;
        }
    }
    Ok(())
}

fn print_row(p: &Pilot, path: &std::path::Path, month: i64) -> Result<(), Error> {
    let n = |t: &str| -> Result<i64, Error> {
        Ok(p.journal
            .conn()
            .query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))?)
    };
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let size = |f: &std::ffi::OsStr| std::fs::metadata(f).map(|m| m.len() / 1024).unwrap_or(0);
    println!(
        "{month:>5}  {:>12}  {:>8}  {:>6}  {:>6}  {:>8}  {:>7}  {:>7}",
        size(path.as_os_str()),
        size(&wal),
        n("events")?,
        n("outbox")?,
        n("timeline")?,
        n("effects")?,
        n("flights")?
    );
    Ok(())
}
