#!/usr/bin/env bash
# Runs every test of the workspace: unit tests, the SQL adversarial corpus, and the integration
# tests that drive the real airlock binary with psql, pgbench and tokio-postgres against the
# PostgreSQL at 127.0.0.1:5432 (trust, database `test`).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked "$@"
