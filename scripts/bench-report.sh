#!/usr/bin/env bash
# Times the access-review report over a synthetic, hash-chained audit log of N events
# (default 1,000,000), three rounds, release build. The figure goes in docs/benchmarks.md.
#
#   bash scripts/bench-report.sh [--events N] [--keep PATH]
#
# --keep PATH keeps the generated log (e.g. to time `airlock access-review --data-dir` on it).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --quiet --release -p airlock-report --example bench_report -- "$@"
