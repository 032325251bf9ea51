#!/usr/bin/env bash
# Memory per idle session: starts airlock in front of the local PostgreSQL (127.0.0.1:5432,
# trust), opens N idle psql sessions through it, and prints the gateway's RSS before, with the
# sessions open, and after they closed, over several cycles (does memory come back?). Then the
# same with pgbouncer (session mode, as the postgres user) in airlock's place, for comparison:
# each session runs one `select 1` before idling, so that pgbouncer (session mode) holds an
# upstream connection per session as airlock does.
# Loopback only; N is bounded by the server's max_connections (default 60 leaves room).
#
#   bash scripts/idle-memory.sh [--sessions N] [--cycles N] [--binary PATH] [--no-pgbouncer]
#
# Default binary: ${CARGO_TARGET_DIR:-target}/release/airlock (build it with
# `cargo build --release -p airlock`). pgbouncer: PGBOUNCER_BIN, else pgbouncer on PATH, else
# /usr/sbin/pgbouncer; without it (Debian: apt-get install pgbouncer) the comparison is skipped.
set -euo pipefail

sessions=60
cycles=3
pgbouncer=true
binary="${CARGO_TARGET_DIR:-target}/release/airlock"
while (($#)); do
    case "$1" in
        --sessions) sessions="$2"; shift 2 ;;
        --cycles) cycles="$2"; shift 2 ;;
        --binary) binary="$2"; shift 2 ;;
        --no-pgbouncer) pgbouncer=false; shift ;;
        -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
[[ -x "$binary" ]] || { echo "no airlock binary at $binary (cargo build --release -p airlock, or --binary)" >&2; exit 1; }

bouncer_bin=${PGBOUNCER_BIN:-$(command -v pgbouncer || echo /usr/sbin/pgbouncer)}
if $pgbouncer && [[ ! -x $bouncer_bin ]]; then
    echo "pgbouncer comparison skipped: pgbouncer is not installed (Debian: apt-get install pgbouncer; or set PGBOUNCER_BIN)" >&2
    pgbouncer=false
fi
if $pgbouncer && ! id postgres >/dev/null 2>&1; then
    echo "pgbouncer comparison skipped: no 'postgres' user to run it as (it refuses to run as root)" >&2
    pgbouncer=false
fi

dir=$(mktemp -d)
chmod 755 "$dir"
trap 'kill "${gw:-0}" 2>/dev/null || true; [[ -s $dir/pgb/pgbouncer.pid ]] && kill "$(cat "$dir/pgb/pgbouncer.pid")" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$dir"' EXIT
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

# measure NAME PID CONNINFO: N idle sessions per cycle, RSS of PID before, open and after close.
measure() {
    local name=$1 pid=$2 conn=$3 base open after c
    rss() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }
    # One warm-up session so that one-time allocations (catalog caches, TLS config) are not counted.
    psql "$conn" -Atc "select 1" >/dev/null
    base=$(rss)
    echo "$name: sessions=$sessions  rss_start=${base} KiB"
    for c in $(seq "$cycles"); do
        pids=()
        for _ in $(seq "$sessions"); do
            # Connected, one statement run (so that pgbouncer, which links a server connection
            # only when a client sends its first query, holds one as airlock does), then idle:
            # psql waits on stdin until the sleep ends.
            ( (echo "select 1;"; sleep 8) | psql "$conn" -Aqt >/dev/null 2>&1) &
            pids+=($!)
        done
        sleep 4
        open=$(rss)
        wait "${pids[@]}"
        sleep 1
        after=$(rss)
        awk -v name="$name" -v c="$c" -v b="$base" -v o="$open" -v a="$after" -v n="$sessions" 'BEGIN {
            printf "%s cycle %d: open %d KiB (+%.1f KiB per session), after close %d KiB (+%d over start)\n", name, c, o, (o - b) / n, a, a - b }'
    done
}
measure airlock "$gw" "host=127.0.0.1 port=$port dbname=pg user=idle password=$IDLE_TOKEN sslmode=disable"
kill "$gw"; wait "$gw" 2>/dev/null || true

if $pgbouncer; then
    bport=$((port + 2))
    mkdir "$dir/pgb"
    cat >"$dir/pgb/pgbouncer.ini" <<EOF
[databases]
pg = host=127.0.0.1 port=5432 dbname=test user=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bport
unix_socket_dir =
auth_type = trust
auth_file = $dir/pgb/userlist.txt
pool_mode = session
max_client_conn = 500
default_pool_size = $((sessions + 10))
logfile = $dir/pgb/pgbouncer.log
pidfile = $dir/pgb/pgbouncer.pid
EOF
    printf '"postgres" ""\n' >"$dir/pgb/userlist.txt"
    chown -R postgres: "$dir/pgb"
    runuser -u postgres -- "$bouncer_bin" -d "$dir/pgb/pgbouncer.ini" >"$dir/pgb/stdout.log" 2>&1 ||
        { echo "pgbouncer did not start: $(tail -3 "$dir/pgb/pgbouncer.log")" >&2; exit 1; }
    for _ in $(seq 100); do [[ -s $dir/pgb/pgbouncer.pid ]] && (echo >/dev/tcp/127.0.0.1/$bport) 2>/dev/null && break; sleep 0.1; done
    measure pgbouncer "$(cat "$dir/pgb/pgbouncer.pid")" "host=127.0.0.1 port=$bport dbname=pg user=postgres sslmode=disable"
fi
