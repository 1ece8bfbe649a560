#!/usr/bin/env bash
# Simulates a year of use and prints, by month, the size of a pilot's profile and of a
# tower's database, with and without pruning (RELIABILITY.md, "Pruning").
#
#   scripts/prove-pruning.sh            # pilot, tower on SQLite and on PostgreSQL
#   PRUNE_ENGINES=sqlite scripts/prove-pruning.sh
#   PRUNE_CLIENTS=200 PRUNE_EVENTS=10 PRUNE_RETENTION=90 scripts/prove-pruning.sh
#
# The pilot: an event observed every minute of virtual time, a new short flight every three
# days, the agent's hourly prune at the default retention (90 days, at most 100,000 events).
# The tower: PRUNE_CLIENTS pilots, each a report every three days and PRUNE_EVENTS events a
# day, the tower's prune once a day with a retention of PRUNE_RETENTION days (the default
# 400 days would prune nothing within a year). PostgreSQL: TESTPILOT_TEST_PG, default
# postgres://postgres@127.0.0.1:5432/test.
set -euo pipefail
cd "$(dirname "$0")/.."
engines=${PRUNE_ENGINES:-"sqlite postgres"}
clients=${PRUNE_CLIENTS:-200}
events=${PRUNE_EVENTS:-10}
retention=${PRUNE_RETENTION:-90}
# A RAM disk when there is one: every journal write is synced.
dir=/dev/shm
[ -d "$dir" ] || dir=${TMPDIR:-/tmp}

# The dev profile: dependencies (SQLite, sqlx) are optimised there too (Cargo.toml).
for mode in --no-prune ""; do
  cargo run -q -p testpilot-pilot --example pilot_prune_year -- --dir "$dir" $mode
  echo
done
for engine in $engines; do
  flag=""
  [ "$engine" = postgres ] && flag=--postgres
  for mode in --no-prune ""; do
    cargo run -q -p testpilot-tower --example tower_prune_year -- \
      $flag $mode --clients "$clients" --events "$events" --retention "$retention"
    echo
  done
done
