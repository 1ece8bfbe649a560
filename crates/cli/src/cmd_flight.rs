//! `testpilot flight validate|explain|schema`, and the tower commands from `cmd_remote`.

use crate::cmd_remote;
use crate::term::{self, outln};
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use testpilot_flight::{enrollment, schema, Flight, Person, Timestamp};

#[derive(clap::Subcommand)]
pub enum FlightCmd {
    /// Check flight files. Exit 0 when all are valid; otherwise exit 1 and print one line per
    /// problem: `FILE: PATH: message`.
    Validate {
        /// Flight files (JSON).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Explain whether a person would run a flight, and why: filter, sample, arm, kill, endBy.
    Explain {
        /// The flight file.
        file: PathBuf,
        /// A person context: {"personid": "...", "os": ..., "channel": ..., "locale": ..., "appversion": ...}.
        #[arg(long)]
        person: PathBuf,
        /// The moment to decide at (RFC 3339, a date, or ms since the epoch); default: now.
        #[arg(long)]
        now: Option<String>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print the JSON Schema of the flight spec.
    Schema,
    #[command(flatten)]
    Remote(cmd_remote::RemoteCmd),
}

pub fn run(c: FlightCmd) -> anyhow::Result<ExitCode> {
    match c {
        FlightCmd::Validate { files } => Ok(validate(&files)),
        FlightCmd::Explain {
            file,
            person,
            now,
            json,
        } => explain(&file, &person, now.as_deref(), json),
        FlightCmd::Schema => {
            term::print_json(&schema::flight_schema())?;
            Ok(ExitCode::SUCCESS)
        }
        FlightCmd::Remote(r) => cmd_remote::run(r),
    }
}

/// Reads a JSON file; a syntax error is reported with its line and column.
pub fn read_json(path: &Path) -> Result<serde_json::Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read the file: {e}"))?;
    testpilot_flight::json::from_str(&text).map_err(|e| {
        format!(
            "not valid JSON at line {}, column {}: {e}",
            e.line(),
            e.column()
        )
    })
}

fn validate(files: &[PathBuf]) -> ExitCode {
    let mut ok = true;
    for f in files {
        let name = f.display();
        match read_json(f) {
            Err(e) => {
                ok = false;
                outln!("{name}: $: {e}");
            }
            Ok(v) => {
                if let Err(diags) = Flight::from_json(&v) {
                    ok = false;
                    for d in diags {
                        outln!("{name}: {}: {}", d.path, d.message);
                    }
                }
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn load_flight(file: &Path) -> anyhow::Result<Flight> {
    let v = read_json(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    Flight::from_json(&v).map_err(|d| {
        let lines: Vec<String> = d
            .iter()
            .map(|d| term::safe(&format!("{}: {}: {}", file.display(), d.path, d.message)))
            .collect();
        anyhow::anyhow!("the flight is not valid:\n{}", lines.join("\n"))
    })
}

fn explain(file: &Path, person: &Path, now: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let flight = load_flight(file)?;
    let pv = read_json(person).map_err(|e| anyhow::anyhow!("{}: {e}", person.display()))?;
    let person =
        Person::from_json(&pv).map_err(|d| anyhow::anyhow!("{}: {d}", person.display()))?;
    let now = match now {
        None => Timestamp(chrono::Utc::now().timestamp_millis()),
        Some(s) => {
            let v = s
                .parse::<i64>()
                .map(serde_json::Value::from)
                .unwrap_or_else(|_| serde_json::Value::String(s.into()));
            testpilot_flight::parse_dateish(&v)
                .map_err(|e| anyhow::anyhow!("--now: {e}"))
                .context("reading --now")?
                .at
        }
    };
    let e = enrollment::explain(&flight, &person, now);
    if json {
        term::print_json(&e)?;
    } else {
        let yes = |b: bool| if b { "yes" } else { "no" };
        outln!("flight     {}", e.studyname);
        outln!("person     {}", person.personid());
        outln!("at         {now}");
        outln!("eligible   {}", yes(e.eligible));
        outln!("sampled    {}", yes(e.sampled));
        outln!("arm        {}", e.arm.as_deref().unwrap_or("-"));
        outln!("bucket     {} (key `{}`)", e.bucket, e.keyname);
        outln!("enrolled   {}", yes(e.enrolled));
        outln!("because");
        for r in &e.reasons {
            outln!("  - {r}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
