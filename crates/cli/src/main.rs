//! `testpilot`: the one binary. Thin: parsing arguments and printing; the work is in the
//! library crates. Each command family lives in its own module.
//!
//! Every print goes through `term`, which makes what came from outside safe for a
//! terminal; printing around it is denied here.

#![deny(clippy::print_stdout, clippy::print_stderr)]

mod cmd_copilot;
mod cmd_flight;
mod cmd_pilot;
mod cmd_remote;
mod cmd_simulate;
mod cmd_tower;
mod cmd_up;
mod term;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "testpilot",
    version,
    about = "Deploy features and studies (\"flights\") to chosen subsets of an installed base, run them safely on each machine, and watch their progress.",
    after_help = "Start with `testpilot up` to run a tower, example flights and a local pilot on this machine.\nCheck a flight file with `testpilot flight validate FILE`."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole system locally: a tower on SQLite with the example flights, and a local pilot.
    Up(cmd_up::UpArgs),
    /// The control tower: serve it, manage tokens, print its public key, export the index.
    #[command(subcommand)]
    Tower(cmd_tower::TowerCmd),
    /// Work with flight files: validate, explain, schema; push and manage them on a tower.
    #[command(subcommand)]
    Flight(cmd_flight::FlightCmd),
    /// Copilot documents, studies in a few lines that expand into flights: new, validate,
    /// expand, schema. Push one with `testpilot flight push`.
    #[command(subcommand)]
    Copilot(cmd_copilot::CopilotCmd),
    /// The client agent that runs flights on this machine.
    #[command(subcommand)]
    Pilot(cmd_pilot::PilotCmd),
    /// Show what flights did on this machine: status, steps, requests sent, changes, undo.
    Log(cmd_pilot::LogArgs),
    /// The message center: prompts put off for later; answer them.
    Later(cmd_pilot::LaterArgs),
    /// End flights at the person's wish, undoing everything they did.
    Optout(cmd_pilot::OptoutArgs),
    /// Simulate a fleet: targeting, arms and the pilot engine for N virtual clients over days, and the tower's load.
    Simulate(cmd_simulate::SimulateArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up(a) => cmd_up::run(a),
        Command::Tower(c) => cmd_tower::run(c),
        Command::Flight(c) => cmd_flight::run(c),
        Command::Copilot(c) => cmd_copilot::run(c),
        Command::Pilot(c) => cmd_pilot::run(c),
        Command::Log(a) => cmd_pilot::log(a),
        Command::Later(a) => cmd_pilot::later(a),
        Command::Optout(a) => cmd_pilot::optout(a),
        Command::Simulate(a) => cmd_simulate::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            term::print_error(&e);
            ExitCode::from(2)
        }
    }
}
