#!/usr/bin/env bash
# Memory per idle session: starts airlock in front of the local PostgreSQL (127.0.0.1:5432,
# trust), opens N idle psql sessions through it, and prints the gateway's RSS before, with the
# sessions open, and after they closed, over several cycles (does memory come back?).
# Loopback only; N is bounded by the server's max_connections (default 60 leaves room).
#
#   bash scripts/idle-memory.sh [--sessions N] [--cycles N] [--binary PATH]
#
# Default binary: target/release/airlock (build it with `cargo build --release -p airlock`).
set -euo pipefail

sessions=60
cycles=3
binary="${CARGO_TARGET_DIR:-target}/release/airlock"
while (($#)); do
    case "$1" in
        --sessions) sessions="$2"; shift 2 ;;
        --cycles) cycles="$2"; shift 2 ;;
        --binary) binary="$2"; shift 2 ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
[[ -x "$binary" ]] || { echo "no airlock binary at $binary (cargo build --release -p airlock, or --binary)" >&2; exit 1; }

dir=$(mktemp -d)
trap 'kill "${gw:-0}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"' EXIT
port=$((20000 + RANDOM % 10000))
cat >"$dir/airlock.toml" <<EOF
[gateway]
data_dir = "$dir/data"
api_listen = "127.0.0.1:$((port + 1))"
[listeners]
postgres = "127.0.0.1:$port"
[[service_accounts]]
name = "idle"
groups = ["bench"]
token_env = "IDLE_TOKEN"
[[connections]]
name = "pg"
type = "postgres"
address = "127.0.0.1:5432"
database = "test"
user = "postgres"
sslmode = "disable"
allow_groups = ["bench"]
EOF
export IDLE_TOKEN=idle-memory-token-0123456789
AIRLOCK_LOG=warn "$binary" serve --config "$dir/airlock.toml" >"$dir/gw.log" 2>&1 &
gw=$!
for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
rss() { awk '/VmRSS/ {print $2}' "/proc/$gw/status"; }
conn="host=127.0.0.1 port=$port dbname=pg user=idle password=$IDLE_TOKEN sslmode=disable"
# One warm-up session so that one-time allocations (catalog caches, TLS config) are not counted.
psql "$conn" -Atc "select 1" >/dev/null
base=$(rss)
echo "sessions=$sessions  rss_start=${base} KiB"
for c in $(seq "$cycles"); do
    pids=()
    for _ in $(seq "$sessions"); do
        # Connected and idle: psql waits on stdin until the sleep ends.
        (sleep 8 | psql "$conn" -Aqt >/dev/null 2>&1) &
        pids+=($!)
    done
    sleep 4
    open=$(rss)
    wait "${pids[@]}"
    sleep 1
    after=$(rss)
    awk -v c="$c" -v b="$base" -v o="$open" -v a="$after" -v n="$sessions" 'BEGIN {
        printf "cycle %d: open %d KiB (+%.1f KiB per session), after close %d KiB (+%d over start)\n", c, o, (o - b) / n, a, a - b }'
done
