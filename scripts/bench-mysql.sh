#!/usr/bin/env bash
# sysbench OLTP against MariaDB/MySQL directly, through HAProxy (TCP mode, the proxy users already
# run for MySQL) and through airlock (rules and the audit log on), interleaved over several rounds
# (the order rotates each round) so noise on a shared machine hits every target alike. Loopback only.
#
#   bash scripts/bench-mysql.sh [--quick] [--rounds N] [--time S] [--threads N] [--test T]
#                               [--no-recording] [--no-haproxy] [--keep]
#
#   --quick          1 round of 8 s per target (smoke run)
#   --rounds N       rounds; every round runs each target once (default 3)
#   --time S         seconds per sysbench run (default 20)
#   --threads N      sysbench --threads (default 8)
#   --test T         oltp_read_only (default) or oltp_read_write
#   --no-recording   airlock with [recording] enabled = false, to show recording's share
#   --no-haproxy     leave the HAProxy peer out
#   --keep           keep the temporary directory (configs, sysbench outputs, audit log)
#   -h, --help       this text
#
# Reported per target: median tps and p95 latency; per proxy process (HAProxy, airlock): CPU time
# per transaction (user + system of all its threads, from /proc/PID/stat before and after each
# run, divided by sysbench's transaction count), and airlock's split by thread. Goals (issue 17):
# airlock CPU/txn <= 1.5 x HAProxy CPU/txn; airlock tps >= 0.8 x direct.
# Session recording is on, as by default.
# HAProxy is not installed by this script: without it (Debian: apt-get install haproxy) the peer
# is skipped with a note. It runs as `haproxy -db -f CFG` with the package's default threads
# (one per CPU), mode tcp, one frontend and one server, no health checks.
# Environment: AIRLOCK_BIN (default ${CARGO_TARGET_DIR:-target}/release/airlock, built if
# missing), HAPROXY_BIN (default haproxy on PATH, else /usr/sbin/haproxy),
# MYSQL_HOST_BENCH/MYSQL_PORT_BENCH/MYSQL_USER_BENCH (default 127.0.0.1, 3306, root with no
# password: airlock logs in as that user, the clients as an agent with a token; through HAProxy
# the clients log in as that user, as for direct).
set -euo pipefail

die() { echo "bench-mysql: error: $*" >&2; exit 1; }
note() { echo "bench-mysql: $*" >&2; }

rounds=3; time_s=20; threads=8; test=oltp_read_only; tables=4; size=10000; keep=false; recording=true
haproxy=true
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) rounds=1; time_s=8 ;;
        --rounds) rounds="$2"; shift ;;
        --time) time_s="$2"; shift ;;
        --threads) threads="$2"; shift ;;
        --test) test="$2"; shift ;;
        --no-recording) recording=false ;;
        --no-haproxy) haproxy=false ;;
        --keep) keep=true ;;
        -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
        *) die "unknown option $1" ;;
    esac
    shift
done
command -v sysbench >/dev/null || die "sysbench is not installed (Debian: apt-get install sysbench)"
command -v mysql >/dev/null || die "the mysql client is not installed"
host=${MYSQL_HOST_BENCH:-127.0.0.1}; port=${MYSQL_PORT_BENCH:-3306}; user=${MYSQL_USER_BENCH:-root}
bin=${AIRLOCK_BIN:-${CARGO_TARGET_DIR:-target}/release/airlock}
haproxy_bin=${HAPROXY_BIN:-$(command -v haproxy || echo /usr/sbin/haproxy)}
haproxy_note=""
if $haproxy && [ ! -x "$haproxy_bin" ]; then
    haproxy=false
    haproxy_note="HAProxy peer skipped: haproxy is not installed (Debian: apt-get install haproxy; or set HAPROXY_BIN)"
    note "$haproxy_note"
elif ! $haproxy; then
    haproxy_note="HAProxy peer left out (--no-haproxy)"
fi
if [ ! -x "$bin" ]; then
    note "building $bin"
    cargo build --release -p airlock >&2
fi

dir=$(mktemp -d)
cleanup() {
    # Wait for both to exit, so that airlock is not writing into $dir while it is removed.
    # (wait returns their exit status after the TERM: not the script's, so `|| true` under set -e.)
    [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null && { wait "$pid" 2>/dev/null || true; }
    [ -n "${hpid:-}" ] && kill "$hpid" 2>/dev/null && { wait "$hpid" 2>/dev/null || true; }
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
kill -0 "$pid" 2>/dev/null || { cat "$dir/airlock.err" >&2; die "airlock did not start"; }

targets=(direct)
if $haproxy; then
    hp_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    cat > "$dir/haproxy.cfg" <<CFG
global
    maxconn 1000
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
frontend mysql_in
    bind 127.0.0.1:$hp_port
    default_backend mysql_out
backend mysql_out
    server db $host:$port
CFG
    "$haproxy_bin" -c -f "$dir/haproxy.cfg" >"$dir/haproxy.check" 2>&1 || { cat "$dir/haproxy.check" >&2; die "haproxy rejected its config"; }
    "$haproxy_bin" -db -f "$dir/haproxy.cfg" >"$dir/haproxy.out" 2>&1 &
    hpid=$!
    for _ in $(seq 100); do
        (echo > /dev/tcp/127.0.0.1/"$hp_port") 2>/dev/null && break
        sleep 0.1
    done
    kill -0 "$hpid" 2>/dev/null || { cat "$dir/haproxy.out" >&2; die "haproxy did not start"; }
    targets+=(haproxy)
fi
targets+=(airlock)

run() { # $1 = direct | haproxy | airlock → tps
    local args
    case $1 in
        direct) args=(--mysql-host="$host" --mysql-port="$port" --mysql-user="$user" --mysql-db="$db") ;;
        haproxy) args=(--mysql-host=127.0.0.1 --mysql-port="$hp_port" --mysql-user="$user" --mysql-db="$db") ;;
        airlock) args=(--mysql-host=127.0.0.1 --mysql-port="$gw_port" --mysql-user=bench --mysql-password="$token" --mysql-db=my-bench) ;;
    esac
    LIBMYSQL_ENABLE_CLEARTEXT_PLUGIN=1 sysbench "$test" "${common[@]}" "${args[@]}" \
        --threads="$threads" --time="$time_s" --report-interval=0 run >"$dir/$1.out" 2>&1 \
        || { cat "$dir/$1.out" >&2; die "sysbench against $1 failed"; }
    awk '/transactions:/ { gsub(/\(/, "", $3); print $3 }' "$dir/$1.out"
}
latency() { awk '/95th percentile:/ { print $3 }' "$dir/$1.out"; }
# CPU time a process (all its threads) has used so far, in clock ticks: a figure less sensitive
# to a busy machine than tps. comm may contain spaces: count fields after its ")".
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
ticks_per_s=$(getconf CLK_TCK)
# shellcheck source=lib/thread-cpu.sh
. "$(dirname "$0")/lib/thread-cpu.sh"
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

declare -A tps_list p95_list cpu_list proc_pid=([haproxy]="${hpid:-}" [airlock]="$pid")
note "sysbench $test, $threads threads, ${time_s}s per run, $rounds round(s); targets: ${targets[*]}"
for r in $(seq "$rounds"); do
    # Rotate the order so that no target always runs first or last.
    order=()
    for ((i = 0; i < ${#targets[@]}; i++)); do order+=("${targets[$(((i + r - 1) % ${#targets[@]}))]}"); done
    line="round $r:"
    for t in "${order[@]}"; do
        p=${proc_pid[$t]:-}
        if [ -n "$p" ]; then c0=$(cpu_ticks "$p"); fi
        [ "$t" = airlock ] && thread_cpu_snapshot "$pid" >"$dir/threads-before-$r"
        v=$(run "$t")
        [ "$t" = airlock ] && thread_cpu_snapshot "$pid" >"$dir/threads-after-$r"
        tps_list[$t]+="$v "; p95_list[$t]+="$(latency "$t") "
        line+=" $t $v tps (p95 $(latency "$t") ms"
        if [ -n "$p" ]; then
            c1=$(cpu_ticks "$p")
            # CPU per transaction (µs), from the transaction count sysbench reports.
            n=$(awk '/transactions:/ { print $2 }' "$dir/$t.out")
            [ "$t" = airlock ] && n_airlock=$n
            c=$(awk -v t="$((c1 - c0))" -v hz="$ticks_per_s" -v n="$n" 'BEGIN { printf "%.0f", t / hz * 1e6 / n }')
            cpu_list[$t]+="$c "
            line+=", $t CPU $c µs/transaction"
        fi
        line+=");"
    done
    note "${line%;}"
done
declare -A mt mp mc
for t in "${targets[@]}"; do
    # shellcheck disable=SC2086
    mt[$t]=$(median ${tps_list[$t]}); mp[$t]=$(median ${p95_list[$t]})
    # shellcheck disable=SC2086
    [ -n "${cpu_list[$t]:-}" ] && mc[$t]=$(median ${cpu_list[$t]})
done
echo "sysbench $test, $threads threads, ${time_s}s x $rounds rounds (recording $recording), medians; $(nproc) CPUs shared by sysbench, MariaDB and the proxies"
printf '| %-8s | %9s | %10s | %9s | %14s |\n' target tps "vs direct" "p95 ms" "proxy CPU/txn"
printf '| %-8s | %9s | %10s | %9s | %14s |\n' -------- --------: ---------: --------: -------------:
for t in "${targets[@]}"; do
    awk -v name="$t" -v tps="${mt[$t]}" -v d="${mt[direct]}" -v p95="${mp[$t]}" -v cpu="${mc[$t]:-}" 'BEGIN {
        printf "| %-8s | %9.1f | %9.3fx | %9s | %14s |\n", name, tps, tps / d, p95, (cpu == "") ? "-" : cpu " µs" }'
done
ratio=$(awk -v a="${mt[airlock]}" -v d="${mt[direct]}" 'BEGIN { printf "%.2f", a / d }')
echo "airlock/direct tps: $ratio (target >= 0.80)"
if $haproxy; then
    awk -v a="${mt[airlock]}" -v h="${mt[haproxy]}" -v ac="${mc[airlock]}" -v hc="${mc[haproxy]}" 'BEGIN {
        printf "airlock/haproxy tps: %.2f\n", a / h
        printf "airlock CPU/txn / haproxy CPU/txn: %.2f (%s / %s µs; goal <= 1.5)\n", ac / hc, ac, hc }'
    echo "haproxy CPU per transaction, per round: [${cpu_list[haproxy]% }] µs"
else
    echo "$haproxy_note"
fi
echo "airlock CPU per transaction (median): ${mc[airlock]} µs; per round: [${cpu_list[airlock]% }] µs"
echo "airlock CPU per transaction by thread, last round:"
thread_cpu_report "$dir/threads-before-$rounds" "$dir/threads-after-$rounds" "$n_airlock"
echo "audit events written: $("$bin" audit export --data-dir "$dir/data" | wc -l)"
