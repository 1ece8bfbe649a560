//! Integration tests of the `testpilot` binary, as one test binary (one link, not six).
//! Each module runs the real binary as a person or a script would.

mod bad_index;
mod copilot_cli;
mod copilot_e2e;
mod docs;
mod flight_cli;
mod keys_cli;
mod pilot_agent;
mod pilot_recording;
mod pilot_sigkill;
mod populations_cli;
mod push;
mod retention_cli;
mod simulate_cli;
mod support;
mod terminal;
mod tower_cli;
mod tower_durability;
mod up;
