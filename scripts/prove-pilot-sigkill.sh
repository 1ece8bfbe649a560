#!/usr/bin/env bash
# Proof that a pilot holds under SIGKILL (RELIABILITY.md): the real agent flies a plan with
# add-ons, features, a notification, a survey, an awaited event and a streaming recording fed
# by `testpilot pilot observe`, and is SIGKILLed at random moments and restarted, over several
# profiles. Prints the kills and the leaked effects, repeated effects and flights not cleaned
# up (each must be 0). A debug build (the test profile): the agent's speed is not what is
# proved, and the build is shared with the test suite.
# Usage: scripts/prove-pilot-sigkill.sh [KILLS] [PROFILES]   (default 200 over 20 profiles;
# TP_SIGKILL_SEED replays a run). The suite's short run: 12 kills, 1 profile.
set -euo pipefail
cd "$(dirname "$0")/.."
export TP_SIGKILLS=${1:-200}
export TP_SIGKILL_PROFILES=${2:-20}
exec cargo test -q -p testpilot --test it -- --exact pilot_sigkill::sigkill_at_random_moments_leaves_nothing_behind --nocapture
