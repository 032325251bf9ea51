#!/usr/bin/env bash
# sysbench OLTP against MariaDB/MySQL directly and through airlock (rules and the audit log on),
# interleaved over several rounds so noise on a shared machine hits both alike. Loopback only.
#
#   bash scripts/bench-mysql.sh [--quick] [--rounds N] [--time S] [--threads N] [--test T]
#                               [--no-recording] [--keep]
#
# --test: oltp_read_only (default) or oltp_read_write. Target: airlock >= 0.8 x direct.
# Session recording is on, as by default; --no-recording measures without it ([recording]
# enabled = false) to show its share.
# Environment: AIRLOCK_BIN (default ${CARGO_TARGET_DIR:-target}/release/airlock, built if
# missing), MYSQL_HOST_BENCH/MYSQL_PORT_BENCH/MYSQL_USER_BENCH (default 127.0.0.1, 3306, root
# with no password: airlock logs in as that user, the clients as an agent with a token).
set -euo pipefail

die() { echo "bench-mysql: error: $*" >&2; exit 1; }
note() { echo "bench-mysql: $*" >&2; }

rounds=3; time_s=20; threads=8; test=oltp_read_only; tables=4; size=10000; keep=false; recording=true
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) rounds=1; time_s=8 ;;
        --rounds) rounds="$2"; shift ;;
        --time) time_s="$2"; shift ;;
        --threads) threads="$2"; shift ;;
        --test) test="$2"; shift ;;
        --no-recording) recording=false ;;
        --keep) keep=true ;;
        -h|--help) sed -n 2,13p "$0"; exit 0 ;;
        *) die "unknown option $1" ;;
    esac
    shift
done
command -v sysbench >/dev/null || die "sysbench is not installed (Debian: apt-get install sysbench)"
command -v mysql >/dev/null || die "the mysql client is not installed"
host=${MYSQL_HOST_BENCH:-127.0.0.1}; port=${MYSQL_PORT_BENCH:-3306}; user=${MYSQL_USER_BENCH:-root}
bin=${AIRLOCK_BIN:-${CARGO_TARGET_DIR:-target}/release/airlock}
if [ ! -x "$bin" ]; then
    note "building $bin"
    cargo build --release -p airlock >&2
fi

dir=$(mktemp -d)
cleanup() {
    [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null || true
    if $keep; then note "kept $dir"; else rm -rf "$dir"; fi
}
trap cleanup EXIT

db=airlock_bench_my
mysql -h"$host" -P"$port" -u"$user" -e "CREATE DATABASE IF NOT EXISTS $db"
common=(--tables="$tables" --table-size="$size" --db-driver=mysql)
if [ "$(mysql -h"$host" -P"$port" -u"$user" -N -e "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema='$db'")" -lt "$tables" ]; then
    note "preparing $tables tables of $size rows"
    sysbench "$test" "${common[@]}" --mysql-host="$host" --mysql-port="$port" --mysql-user="$user" --mysql-db="$db" prepare >/dev/null
fi

gw_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
api_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
token="bench-token-$(date +%s%N)"
cat > "$dir/airlock.toml" <<TOML
[gateway]
data_dir = "$dir/data"
api_listen = "127.0.0.1:$api_port"

[recording]
enabled = $recording

[listeners]
mysql = "127.0.0.1:$gw_port"

[[service_accounts]]
name = "bench"
groups = ["engineers"]
token_env = "AIRLOCK_BENCH_TOKEN"

[[connections]]
name = "my-bench"
type = "mysql"
address = "$host:$port"
database = "$db"
user = "$user"
sslmode = "disable"
tags = { env = "bench" }
allow_groups = ["engineers"]

[[rules]]
name = "no-destructive-ddl"
connections = { tags = { env = "bench" } }
operations = ["drop", "truncate"]
action = "deny"
TOML
AIRLOCK_BENCH_TOKEN="$token" AIRLOCK_LOG=warn "$bin" serve --config "$dir/airlock.toml" >"$dir/airlock.out" 2>"$dir/airlock.err" &
pid=$!
for _ in $(seq 100); do
    (echo > /dev/tcp/127.0.0.1/"$gw_port") 2>/dev/null && break
    sleep 0.1
done

run() { # $1 = direct | airlock → tps
    local args
    if [ "$1" = direct ]; then
        args=(--mysql-host="$host" --mysql-port="$port" --mysql-user="$user" --mysql-db="$db")
    else
        args=(--mysql-host=127.0.0.1 --mysql-port="$gw_port" --mysql-user=bench --mysql-password="$token" --mysql-db=my-bench)
    fi
    LIBMYSQL_ENABLE_CLEARTEXT_PLUGIN=1 sysbench "$test" "${common[@]}" "${args[@]}" \
        --threads="$threads" --time="$time_s" --report-interval=0 run >"$dir/$1.out" 2>&1 \
        || { cat "$dir/$1.out" >&2; die "sysbench against $1 failed"; }
    awk '/transactions:/ { gsub(/\(/, "", $3); print $3 }' "$dir/$1.out"
}
latency() { awk '/95th percentile:/ { print $3 }' "$dir/$1.out"; }
# CPU time airlock (all its threads) has used so far, in clock ticks: a figure less sensitive to
# a busy machine than tps.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
ticks_per_s=$(getconf CLK_TCK)
# shellcheck source=lib/thread-cpu.sh
. "$(dirname "$0")/lib/thread-cpu.sh"

declare -a direct_tps airlock_tps airlock_cpu
for r in $(seq "$rounds"); do
    d=$(run direct); dl=$(latency direct)
    c0=$(cpu_ticks); thread_cpu_snapshot "$pid" >"$dir/threads-before"
    a=$(run airlock); al=$(latency airlock)
    c1=$(cpu_ticks); thread_cpu_snapshot "$pid" >"$dir/threads-after-$r"
    # airlock CPU per transaction (µs), from the transaction count sysbench reports.
    n=$(awk '/transactions:/ { print $2 }' "$dir/airlock.out")
    c=$(awk -v t="$((c1 - c0))" -v hz="$ticks_per_s" -v n="$n" 'BEGIN { printf "%.0f", t / hz * 1e6 / n }')
    direct_tps+=("$d"); airlock_tps+=("$a"); airlock_cpu+=("$c")
    note "round $r: direct $d tps (p95 $dl ms), airlock $a tps (p95 $al ms, airlock CPU $c µs/transaction)"
done
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
md=$(median "${direct_tps[@]}"); ma=$(median "${airlock_tps[@]}")
ratio=$(awk -v a="$ma" -v d="$md" 'BEGIN { printf "%.2f", a / d }')
echo "sysbench $test, $threads threads, ${time_s}s x $rounds rounds (recording $recording): direct $md tps, airlock $ma tps, ratio $ratio (target >= 0.80)"
echo "airlock CPU per transaction (median): $(median "${airlock_cpu[@]}") µs"
echo "airlock CPU per transaction by thread, last round:"
thread_cpu_report "$dir/threads-before" "$dir/threads-after-$rounds" "$n"
echo "audit events written: $("$bin" audit export --data-dir "$dir/data" | wc -l)"
