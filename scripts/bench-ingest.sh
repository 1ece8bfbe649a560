#!/usr/bin/env bash
# Report ingest with wrk, side by side with the database's floor in the same run
# (crates/tower/benches/ingest_wrk.rs): for SQLite and PostgreSQL, 100 reports a request and
# 3 reports a request (a pilot's usual batch) at 64 connections, against rusqlite's batched
# insert (WAL, synchronous = FULL) and PostgreSQL's COPY into the same table.
# Usage: scripts/bench-ingest.sh [SECONDS]   (default 10; BENCH_ENGINES, BENCH_SCENARIOS,
# WRK_THREADS, BENCH_RAW_ROWS and TESTPILOT_TEST_PG tune it). Figures go in BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq wrk >/dev/null
fi
# wrk keeps 64 connections open, and the tower its database files: room for both.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
BENCH_SECONDS=${1:-${BENCH_SECONDS:-10}} exec cargo bench -q -p testpilot-tower --bench ingest_wrk
