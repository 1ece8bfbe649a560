#!/usr/bin/env bash
# Embedding benchmarks (BENCHMARKS.md, "Embedding"): the resident memory of an application
# embedding an idle pilot, then the criterion bench of feature reads (EmbeddedPilot::feature
# and the same through OpenFeature).
#
#   scripts/bench-embed.sh          # both
#   scripts/bench-embed.sh rss      # only the resident memory (goal < 10 MB)
#   scripts/bench-embed.sh reads    # only the feature reads (goal < 1 µs)
set -euo pipefail
cd "$(dirname "$0")/.."

rss() {
  cargo run --release -q -p testpilot-pilot --example embed_idle_rss -- "${IDLE_SECONDS:-5}"
}

reads() {
  cargo bench -q -p testpilot-pilot --bench embed
}

case "${1:-all}" in
  rss) rss ;;
  reads) reads ;;
  all) rss; reads ;;
  *) echo "usage: scripts/bench-embed.sh [rss|reads|all]" >&2; exit 2 ;;
esac
