//! `testpilot copilot new|validate|expand|schema`: copilot documents (docs/copilot.md), short
//! studies that expand into flights. Pushing one to a tower is `testpilot flight push`.

use crate::term::{self, outln};
use serde_json::{json, Value};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use testpilot_flight::copilot::{expand_json, Copilot};
use testpilot_flight::schema;

/// The largest copilot document read: far above any study, and the tower's request limit.
const MAX_FILE_BYTES: u64 = 1 << 20;

#[derive(clap::Subcommand)]
pub enum CopilotCmd {
    /// Write a starting point for a new study: NAME.copilot.json (or --out), valid as it is,
    /// then say what to change. Refuses to overwrite a file.
    New {
        /// The study's name (`studyname`): lowercase letters, digits, `.`, `_` and `-`.
        name: String,
        /// Where to write it; default: NAME.copilot.json in the current folder.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check copilot documents. Exit 0 when all are valid; otherwise exit 1 and print one
    /// line per problem: `FILE: PATH: message`.
    Validate {
        /// Copilot documents (JSON).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print one JSON list instead: [{"file", "valid", "problems": [{"path", "message"}]}].
        #[arg(long)]
        json: bool,
    },
    /// Print the flight a copilot document expands to (which `flight validate` accepts).
    Expand {
        /// The copilot document.
        file: PathBuf,
    },
    /// Print the JSON Schema of the copilot document.
    Schema,
}

pub fn run(c: CopilotCmd) -> anyhow::Result<ExitCode> {
    match c {
        CopilotCmd::New { name, out } => new(&name, out),
        CopilotCmd::Validate { files, json } => validate(&files, json),
        CopilotCmd::Expand { file } => expand(&file),
        CopilotCmd::Schema => {
            term::print_json(&schema::copilot_schema())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Reads a JSON file of at most [`MAX_FILE_BYTES`], checked before parsing; a syntax error
/// is reported with its line and column.
fn read_capped(path: &Path) -> Result<Value, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read the file: {e}"))?;
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read the file: {e}"))?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "the file is larger than {} KiB; a copilot document is a few lines",
            MAX_FILE_BYTES / 1024
        ));
    }
    testpilot_flight::json::from_str(&text).map_err(|e| {
        format!(
            "not valid JSON at line {}, column {}: {e}",
            e.line(),
            e.column()
        )
    })
}

/// One file's problems as `(path, message)`; empty when it is valid.
fn problems(file: &Path) -> Vec<(String, String)> {
    match read_capped(file) {
        Err(e) => vec![("$".into(), e)],
        Ok(v) => match expand_json(&v) {
            Ok(_) => Vec::new(),
            Err(d) => d
                .into_iter()
                .map(|d| (d.path.to_string(), d.message))
                .collect(),
        },
    }
}

fn validate(files: &[PathBuf], as_json: bool) -> anyhow::Result<ExitCode> {
    let mut ok = true;
    let mut report = Vec::new();
    for f in files {
        let found = problems(f);
        ok &= found.is_empty();
        if as_json {
            report.push(json!({
                "file": f.display().to_string(),
                "valid": found.is_empty(),
                "problems": found.iter().map(|(path, message)| json!({"path": path, "message": message})).collect::<Vec<_>>(),
            }));
        } else {
            for (path, message) in found {
                outln!("{}: {path}: {message}", f.display());
            }
        }
    }
    if as_json {
        term::print_json(&report)?;
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn expand(file: &Path) -> anyhow::Result<ExitCode> {
    let name = file.display();
    let v = match read_capped(file) {
        Ok(v) => v,
        Err(e) => {
            outln!("{name}: $: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    match expand_json(&v) {
        Ok((_, flight)) => {
            term::print_json(&flight)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(d) => {
            for p in d {
                outln!("{name}: {}: {}", p.path, p.message);
            }
            Ok(ExitCode::from(1))
        }
    }
}

/// The starting point `copilot new` writes: a two-arm study without surveys, valid as it
/// is, whose texts say what to change (JSON has no comments).
fn starting_point(name: &str) -> Value {
    json!({
        "copilot": 1,
        "studyname": name,
        "author": "you@example.com",
        "description": "Say here, in plain words, what this study changes and what it counts; people read it in their flight log.",
        "filter": {"channels": ["beta"]},
        "sample": 0.1,
        "arms": [
            {"name": "control", "ratio": 1, "features": {}},
            {"name": "treatment", "ratio": 1, "features": {format!("{name}.enabled"): {"enabled": true}}}
        ],
        "watch": ["feature-used"],
        "duration": "14d",
        "uploadEvery": "1d"
    })
}

fn new(name: &str, out: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let doc = starting_point(name);
    // The name is the only input: check it with the document's own rules.
    if let Err(d) = Copilot::from_json(&doc) {
        let first = d
            .iter()
            .next()
            .map(|p| p.message.clone())
            .unwrap_or_default();
        anyhow::bail!("{first}");
    }
    let path = out.unwrap_or_else(|| PathBuf::from(format!("{name}.copilot.json")));
    let text = serde_json::to_string_pretty(&doc)? + "\n";
    let mut f = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            anyhow::bail!(
                "{} already exists; choose another name or --out",
                path.display()
            )
        }
        Err(e) => anyhow::bail!("cannot write {}: {e}", path.display()),
    };
    std::io::Write::write_all(&mut f, text.as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    let p = path.display();
    outln!("wrote {p}: a two-arm study, valid as it is. Change:");
    outln!("  author, description   who runs it, and what it does in words people understand");
    outln!("  filter, sample        who may take part (here: 10 % of the beta channel)");
    outln!("  arms                  the first is the control; each other arm sets at least one feature");
    outln!(
        "  watch                 the event topics to count (lowercase, like \"search-bar-used\")"
    );
    outln!("  duration, uploadEvery how long to record, and how often to send the counts");
    outln!("  surveys (optional)    {{\"before\": {{\"title\", \"text\", \"url\"}}, \"after\": {{...}}}}");
    outln!("Every field: docs/copilot.md. Then:");
    outln!("  testpilot copilot validate {p}");
    outln!("  testpilot copilot expand {p}     # the flight it becomes");
    outln!("  testpilot flight push {p}        # to a tower");
    Ok(ExitCode::SUCCESS)
}
