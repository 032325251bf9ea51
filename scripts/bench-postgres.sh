#!/usr/bin/env bash
# Throughput and latency of `pgbench -S` against PostgreSQL directly, through pgbouncer (session
# mode) and through airlock (rules and auditing on; masking too once the build enforces it),
# interleaved over several rounds so that noise on a shared machine hits all three targets alike.
# Loopback traffic only.
#
# Run `bash scripts/bench-postgres.sh --help` for the options; docs/benchmarks.md has the results.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: bash scripts/bench-postgres.sh [options]

Runs `pgbench -S -n` against three targets, interleaved, and prints median tps, latency and the
ratios airlock/direct and airlock/pgbouncer:
  direct     PostgreSQL itself
  pgbouncer  pgbouncer in session mode in front of it
  airlock    airlock with a rule set, the audit log and (if the build enforces it) a masking policy

Options:
  --scale N          pgbench scale factor of the airlock_bench database (default 10)
  --transactions N   transactions per client per run, pgbench -t (default 35000, about
                     15-20 s per run on 2 shared cores)
  --rounds N         rounds; every round runs each target once (default 3)
  --mode M           pgbench query mode: simple | extended | prepared (default simple)
  --clients N        pgbench -c (default 8)
  --threads N        pgbench -j (default 2)
  --quick            smoke run of well under a minute: 1 round, 10000 transactions per client
  --no-masking       leave the masking policy out of the airlock config
  --sslmode M        libpq sslmode of the clients for every target (default disable, so that
                     no target pays for TLS and the others do not)
  --pin              give the proxies a core of their own: pgbench and PostgreSQL (its postmaster
                     and every backend) on CPU 0, pgbouncer and airlock on CPU 1, for every
                     target (direct too), as when the gateway runs on its own machine. Changes
                     the CPU affinity of the running PostgreSQL and restores it on exit
  --keep             keep the temporary directory (configs, logs, audit log) and print it
  -h, --help         this text

Environment:
  AIRLOCK_BIN        airlock binary (default ${CARGO_TARGET_DIR:-target}/release/airlock,
                     built with `cargo build --release -p airlock` if missing)
  PGHOST_BENCH, PGPORT_BENCH, PGUSER_BENCH
                     the PostgreSQL server (default 127.0.0.1, 5432, postgres; needs trust
                     authentication from loopback, as pgbouncer and airlock log in without a password)
  PGBOUNCER_BIN      default: pgbouncer on PATH, else /usr/sbin/pgbouncer
EOF
}

die() {
    echo "bench-postgres: error: $*" >&2
    exit 1
}
note() { echo "bench-postgres: $*" >&2; }

# ---------------------------------------------------------------- options
scale=10
transactions=35000
rounds=3
mode=simple
clients=8
threads=2
quick=false
masking=true
sslmode=disable
keep=false
pin=false
transactions_set=false
rounds_set=false

need_value() { [[ $# -ge 2 && -n $2 ]] || die "$1 needs a value (see --help)"; }
while [[ $# -gt 0 ]]; do
    case $1 in
        --scale) need_value "$@"; scale=$2; shift 2 ;;
        --transactions) need_value "$@"; transactions=$2; transactions_set=true; shift 2 ;;
        --rounds) need_value "$@"; rounds=$2; rounds_set=true; shift 2 ;;
        --mode) need_value "$@"; mode=$2; shift 2 ;;
        --clients) need_value "$@"; clients=$2; shift 2 ;;
        --threads) need_value "$@"; threads=$2; shift 2 ;;
        --quick) quick=true; shift ;;
        --no-masking) masking=false; shift ;;
        --sslmode) need_value "$@"; sslmode=$2; shift 2 ;;
        --keep) keep=true; shift ;;
        --pin) pin=true; shift ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done
if $quick; then
    $transactions_set || transactions=10000
    $rounds_set || rounds=1
fi
for pair in "scale:$scale" "transactions:$transactions" "rounds:$rounds" "clients:$clients" "threads:$threads"; do
    [[ ${pair#*:} =~ ^[1-9][0-9]*$ ]] || die "--${pair%%:*} must be a positive integer, got '${pair#*:}'"
done
case $mode in simple | extended | prepared) ;; *) die "--mode must be simple, extended or prepared, got '$mode'" ;; esac
case $sslmode in disable | allow | prefer | require) ;; *) die "--sslmode must be disable, allow, prefer or require" ;; esac
((threads <= clients)) || die "--threads ($threads) may not exceed --clients ($clients)"

pg_host=${PGHOST_BENCH:-127.0.0.1}
pg_port=${PGPORT_BENCH:-5432}
pg_user=${PGUSER_BENCH:-postgres}
bench_db=airlock_bench
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

for tool in pgbench psql ss timeout runuser awk sort; do
    command -v "$tool" >/dev/null || die "'$tool' is not installed"
done
pgbouncer_bin=${PGBOUNCER_BIN:-$(command -v pgbouncer || echo /usr/sbin/pgbouncer)}
[[ -x $pgbouncer_bin ]] || die "pgbouncer not found (install it or set PGBOUNCER_BIN)"
id postgres >/dev/null 2>&1 || die "pgbouncer refuses to run as root and there is no 'postgres' user to run it as"

# Environment that would silently change what the clients do.
unset PGSERVICE PGSERVICEFILE PGOPTIONS PGDATABASE PGHOST PGHOSTADDR PGPORT PGUSER PGPASSWORD PGPASSFILE PGAPPNAME
export PGSSLMODE=$sslmode PGCONNECT_TIMEOUT=10

# ---------------------------------------------------------------- cleanup
work_dir=$(mktemp -d /tmp/airlock-bench.XXXXXX)
chmod 755 "$work_dir"
airlock_pid=""
pgbouncer_pidfile="$work_dir/pgbouncer/pgbouncer.pid"

# --pin: the postmaster's pid and affinity before the run, restored by cleanup.
pg_postmaster=""
pg_affinity=""

cleanup() {
    local status=$?
    set +e
    if [[ -n $pg_postmaster ]]; then
        taskset -a -cp "$pg_affinity" "$pg_postmaster" >/dev/null 2>&1
        for child in $(pgrep -P "$pg_postmaster"); do taskset -a -cp "$pg_affinity" "$child" >/dev/null 2>&1; done
    fi
    if [[ -n $airlock_pid ]] && kill -0 "$airlock_pid" 2>/dev/null; then
        kill -TERM "$airlock_pid" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$airlock_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$airlock_pid" 2>/dev/null
        wait "$airlock_pid" 2>/dev/null
    fi
    if [[ -s $pgbouncer_pidfile ]]; then
        local pid
        pid=$(cat "$pgbouncer_pidfile")
        if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null
        fi
    fi
    if $keep || ((status != 0)); then
        echo "bench-postgres: configs and logs kept in $work_dir" >&2
    else
        rm -rf "$work_dir"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- helpers
port_in_use() { [[ -n $(ss -Htln "sport = :$1") ]]; }

free_port() {
    local port=$1
    while port_in_use "$port"; do
        port=$((port + 1))
        ((port < 65000)) || die "no free TCP port found"
    done
    echo "$port"
}

# wait_for_port PORT SECONDS NAME [PID]: fails early if PID dies.
wait_for_port() {
    local port=$1 seconds=$2 name=$3 pid=${4:-} i
    for ((i = 0; i < seconds * 10; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        sleep 0.1
    done
    note "$name is not listening on 127.0.0.1:$port after ${seconds}s"
    return 1
}

psql_admin() { psql -X -q -v ON_ERROR_STOP=1 -h "$pg_host" -p "$pg_port" -U "$pg_user" "$@"; }

# CPU time (user + system, in clock ticks) used so far by a process.
cpu_ticks() {
    local pid=$1 stat
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || { echo 0; return; }
    # Field 2 (comm) may contain spaces; count from after its closing parenthesis.
    stat=${stat##*) }
    awk '{ print $12 + $13 }' <<<"$stat"
}
clk_tck=$(getconf CLK_TCK)
# shellcheck source=lib/thread-cpu.sh
. "$repo_root/scripts/lib/thread-cpu.sh"

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) { print "nan"; exit } if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# ---------------------------------------------------------------- 1. the database
psql_admin -d postgres -Atc "select 1" >/dev/null 2>"$work_dir/psql.err" ||
    die "cannot connect to PostgreSQL at $pg_host:$pg_port as $pg_user: $(cat "$work_dir/psql.err")"
if [[ -z $(psql_admin -d postgres -Atc "select 1 from pg_database where datname = '$bench_db'") ]]; then
    note "creating database $bench_db"
    psql_admin -d postgres -c "create database $bench_db" >/dev/null
fi
current_scale=0
tables=$(psql_admin -d "$bench_db" -Atc "
    select count(*) from pg_tables where schemaname = 'public'
       and tablename in ('pgbench_branches', 'pgbench_tellers', 'pgbench_accounts', 'pgbench_history')")
if [[ $tables == 4 ]]; then
    current_scale=$(psql_admin -d "$bench_db" -Atc "select count(*) from pgbench_branches")
fi
if [[ $current_scale == "$scale" ]]; then
    accounts=$(psql_admin -d "$bench_db" -Atc "select count(*) from pgbench_accounts")
    [[ $accounts == $((scale * 100000)) ]] || current_scale=0
fi
if [[ $current_scale != "$scale" ]]; then
    note "initialising pgbench tables at scale $scale in $bench_db (was: ${current_scale/#0/none})"
    pgbench -i -q -s "$scale" -h "$pg_host" -p "$pg_port" -U "$pg_user" "$bench_db" >"$work_dir/pgbench-init.log" 2>&1 ||
        die "pgbench -i failed: $(tail -5 "$work_dir/pgbench-init.log")"
fi

# ---------------------------------------------------------------- 2. pgbouncer
bouncer_port=$(free_port 16432)
mkdir "$work_dir/pgbouncer"
cat >"$work_dir/pgbouncer/pgbouncer.ini" <<EOF
[databases]
$bench_db = host=$pg_host port=$pg_port dbname=$bench_db user=$pg_user

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bouncer_port
unix_socket_dir =
auth_type = trust
auth_file = $work_dir/pgbouncer/userlist.txt
pool_mode = session
max_client_conn = 200
default_pool_size = 40
logfile = $work_dir/pgbouncer/pgbouncer.log
pidfile = $pgbouncer_pidfile
admin_users = $pg_user
EOF
printf '"%s" ""\n' "$pg_user" >"$work_dir/pgbouncer/userlist.txt"
chown -R postgres: "$work_dir/pgbouncer"
$pin && proxy_cpu=(taskset -c 1) || proxy_cpu=()
runuser -u postgres -- "${proxy_cpu[@]}" "$pgbouncer_bin" -d "$work_dir/pgbouncer/pgbouncer.ini" >"$work_dir/pgbouncer/stdout.log" 2>&1 ||
    die "pgbouncer did not start: $(tail -5 "$work_dir/pgbouncer/stdout.log" "$work_dir/pgbouncer/pgbouncer.log" 2>/dev/null)"
wait_for_port "$bouncer_port" 15 pgbouncer ||
    die "pgbouncer did not come up: $(tail -5 "$work_dir/pgbouncer/pgbouncer.log" 2>/dev/null)"
pgbouncer_pid=$(cat "$pgbouncer_pidfile")

# ---------------------------------------------------------------- 3. airlock
airlock_bin=${AIRLOCK_BIN:-${CARGO_TARGET_DIR:-$repo_root/target}/release/airlock}
if [[ ! -x $airlock_bin ]]; then
    [[ -z ${AIRLOCK_BIN:-} ]] || die "AIRLOCK_BIN=$AIRLOCK_BIN is not an executable file"
    note "$airlock_bin not found; building it (cargo build --release -p airlock)"
    (cd "$repo_root" && cargo build --release -p airlock) >&2 || die "building airlock failed"
    [[ -x $airlock_bin ]] || die "cargo finished but $airlock_bin does not exist (CARGO_TARGET_DIR?)"
fi

airlock_port=$(free_port 15532)
api_port=$(free_port $((airlock_port + 1)))
AIRLOCK_BENCH_TOKEN=$(openssl rand -hex 32 2>/dev/null || od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
export AIRLOCK_BENCH_TOKEN
mkdir "$work_dir/airlock"
cat >"$work_dir/airlock/airlock.toml" <<EOF
[gateway]
data_dir = "$work_dir/airlock/data"
api_listen = "127.0.0.1:$api_port"

[listeners]
postgres = "127.0.0.1:$airlock_port"

[[service_accounts]]
name = "bench-agent"
groups = ["ai-agents"]
agent = true
token_env = "AIRLOCK_BENCH_TOKEN"

[[connections]]
name = "$bench_db"
type = "postgres"
address = "$pg_host:$pg_port"
database = "$bench_db"
user = "$pg_user"
tags = { env = "bench" }
allow_groups = ["ai-agents"]
sslmode = "disable"

# Evaluated for every command; neither matches pgbench -S, so every command is classified, judged,
# audited and forwarded.
[[rules]]
name = "no-destructive-ddl"
connections = { tags = { env = "bench" } }
operations = ["drop", "truncate"]
action = "deny"
message = "Destructive DDL is not allowed through airlock"

[[rules]]
name = "agents-read-only"
agents = true
connections = { tags = { env = "bench" } }
writes = true
action = "deny"
message = "AI agents are read-only here"
EOF
if $masking; then
    cat >>"$work_dir/airlock/airlock.toml" <<EOF

# Applies to every result: a masked column that pgbench never reads, and content detectors that
# scan every value returned.
[[masking]]
name = "bench-pii"
connections = ["$bench_db"]
columns = ["*.email", "pgbench_accounts.filler"]
detectors = ["email", "credit_card", "iban", "phone", "secret"]
strategy = "partial"
EOF
fi

"$airlock_bin" check --config "$work_dir/airlock/airlock.toml" >"$work_dir/airlock/check.log" 2>&1 ||
    die "airlock check rejected the generated config:
$(cat "$work_dir/airlock/check.log")"
start_airlock() {
    "${proxy_cpu[@]}" "$airlock_bin" serve --config "$work_dir/airlock/airlock.toml" >"$work_dir/airlock/airlock.log" 2>&1 &
    airlock_pid=$!
    wait_for_port "$airlock_port" 60 airlock "$airlock_pid"
}
masking_status=off
$masking && masking_status=on
if ! start_airlock; then
    # A build that cannot enforce masking refuses to start with a masking policy (fail closed);
    # measure the rest rather than nothing, and say so in the results.
    if $masking && grep -q "masking is not enforced" "$work_dir/airlock/airlock.log"; then
        note "this airlock build does not enforce masking and refuses [[masking]]; benchmarking without the masking policy"
        masking_status="left out (not enforced by this build)"
        cp "$work_dir/airlock/airlock.toml" "$work_dir/airlock/airlock-with-masking.toml"
        sed -i '/^# Applies to every result/,$d' "$work_dir/airlock/airlock.toml"
        wait "$airlock_pid" 2>/dev/null || true
        start_airlock || die "airlock did not start listening on 127.0.0.1:$airlock_port; its log:
$(tail -20 "$work_dir/airlock/airlock.log")"
    else
        die "airlock did not start listening on 127.0.0.1:$airlock_port; its log:
$(tail -20 "$work_dir/airlock/airlock.log")"
    fi
fi

# Proves the path end to end (token, connection name as database, upstream login) before timing.
probe=$(PGPASSWORD=$AIRLOCK_BENCH_TOKEN timeout 30 psql -X -At -h 127.0.0.1 -p "$airlock_port" -U bench-agent -d "$bench_db" \
    -c "select count(*) from pgbench_branches" 2>&1) ||
    die "a query through airlock failed: $probe
airlock log:
$(tail -20 "$work_dir/airlock/airlock.log")"
[[ $probe == "$scale" ]] || die "through airlock, pgbench_branches has '$probe' rows, expected $scale"
probe=$(PGPASSWORD=$AIRLOCK_BENCH_TOKEN timeout 30 psql -X -At -h 127.0.0.1 -p "$airlock_port" -U bench-agent -d "$bench_db" \
    -c "truncate pgbench_history" 2>&1) &&
    die "airlock let an agent truncate a table; the rules are not in force, so the figures would not measure them"

# ---------------------------------------------------------------- 4. the runs
targets=(direct pgbouncer airlock)
declare -A port=([direct]=$pg_port [pgbouncer]=$bouncer_port [airlock]=$airlock_port)
declare -A host=([direct]=$pg_host [pgbouncer]=127.0.0.1 [airlock]=127.0.0.1)
declare -A user=([direct]=$pg_user [pgbouncer]=$pg_user [airlock]=bench-agent)
declare -A password=([direct]="" [pgbouncer]="" [airlock]=$AIRLOCK_BENCH_TOKEN)
declare -A proxy_pid=([direct]="" [pgbouncer]=$pgbouncer_pid [airlock]=$airlock_pid)
declare -A tps_list lat_list cpu_list round_tps
ratio_direct_list=""
ratio_bouncer_list=""

# Generous bound: a run far slower than 200 tps total is broken, not slow.
run_timeout=$((clients * transactions / 200 + 60))

# run_pgbench TARGET TRANSACTIONS LOGFILE
run_pgbench() {
    local target=$1 count=$2 log=$3 rc=0
    env ${password[$target]:+PGPASSWORD=${password[$target]}} \
        timeout "$run_timeout" "${client_cpu[@]}" pgbench -S -n -M "$mode" -c "$clients" -j "$threads" -t "$count" \
        -h "${host[$target]}" -p "${port[$target]}" -U "${user[$target]}" "$bench_db" >"$log" 2>&1 || rc=$?
    if ((rc == 124)); then
        die "pgbench against $target did not finish within ${run_timeout}s; see $log"
    elif ((rc != 0)) || grep -q "aborted" "$log"; then
        local extra=""
        [[ $target == airlock ]] && extra="
airlock log:
$(tail -20 "$work_dir/airlock/airlock.log")"
        die "pgbench against $target failed (exit $rc):
$(tail -15 "$log")$extra"
    fi
    local done_count expected=$((clients * count))
    done_count=$(awk -F'[:/]' '/number of transactions actually processed/ { gsub(/ /, "", $2); print $2 }' "$log")
    [[ $done_count == "$expected" ]] || die "pgbench against $target processed '$done_count' of $expected transactions; see $log"
}

note "targets: direct $pg_host:$pg_port, pgbouncer 127.0.0.1:$bouncer_port, airlock 127.0.0.1:$airlock_port"
client_cpu=()
if $pin; then
    (($(nproc) >= 2)) || die "--pin needs at least 2 CPUs"
    data_dir=$(psql -h "$pg_host" -p "$pg_port" -U "$pg_user" -d "$bench_db" -Atc "SHOW data_directory") ||
        die "--pin: cannot ask PostgreSQL for its data directory"
    pg_postmaster=$(head -1 "$data_dir/postmaster.pid" 2>/dev/null) ||
        die "--pin: cannot read $data_dir/postmaster.pid (PostgreSQL must run on this machine)"
    pg_affinity=$(taskset -cp "$pg_postmaster" | awk '{ print $NF }')
    taskset -a -cp 0 "$pg_postmaster" >/dev/null
    for child in $(pgrep -P "$pg_postmaster"); do taskset -a -cp 0 "$child" >/dev/null; done
    client_cpu=(taskset -c 0)
    note "pinned: PostgreSQL (postmaster $pg_postmaster, was CPUs $pg_affinity) and pgbench on CPU 0, pgbouncer and airlock on CPU 1"
fi

load_before=$(cut -d" " -f1-3 /proc/loadavg)
note "pgbench -S -n -M $mode -c $clients -j $threads -t $transactions, $rounds round(s), sslmode=$sslmode, masking $masking_status"

# Warm-up: connections, caches and the proxies' first-use paths, not timed.
warm=$((transactions / 10 > 200 ? transactions / 10 : 200))
for target in "${targets[@]}"; do
    run_pgbench "$target" "$warm" "$work_dir/warmup-$target.log"
done

for ((round = 1; round <= rounds; round++)); do
    # Rotate the order so that no target always runs first or last.
    order=()
    for ((i = 0; i < ${#targets[@]}; i++)); do
        order+=("${targets[$(((i + round - 1) % ${#targets[@]}))]}")
    done
    for target in "${order[@]}"; do
        log="$work_dir/run-$round-$target.log"
        pid=${proxy_pid[$target]}
        cpu_before=0
        [[ -n $pid ]] && cpu_before=$(cpu_ticks "$pid")
        [[ $target == airlock ]] && thread_cpu_snapshot "$pid" >"$work_dir/threads-before"
        run_pgbench "$target" "$transactions" "$log"
        cpu_after=0
        [[ -n $pid ]] && cpu_after=$(cpu_ticks "$pid")
        [[ $target == airlock ]] && thread_cpu_snapshot "$pid" >"$work_dir/threads-after"
        tps=$(awk '/^tps = / { print $3; exit }' "$log")
        lat=$(awk '/^latency average = / { print $4; exit }' "$log")
        [[ $tps =~ ^[0-9.]+$ && $lat =~ ^[0-9.]+$ ]] || die "could not read tps/latency from $log"
        # Proxy CPU per transaction, in microseconds.
        cpu_us=$(awk -v t=$((cpu_after - cpu_before)) -v hz="$clk_tck" -v n=$((clients * transactions)) \
            'BEGIN { printf "%.1f", t / hz * 1e6 / n }')
        round_tps[$target]=$tps
        tps_list[$target]+="$tps "
        lat_list[$target]+="$lat "
        cpu_list[$target]+="$cpu_us "
        printf 'round %d/%d  %-9s  %10.1f tps  %8.3f ms avg latency\n' "$round" "$rounds" "$target" "$tps" "$lat"
    done
    # Runs of one round are close in time and share the machine's state more than runs of
    # different rounds, so their ratios are steadier than ratios of medians.
    ratio_direct_list+="$(awk -v a="${round_tps[airlock]}" -v d="${round_tps[direct]}" 'BEGIN { printf "%.3f", a / d }') "
    ratio_bouncer_list+="$(awk -v a="${round_tps[airlock]}" -v b="${round_tps[pgbouncer]}" 'BEGIN { printf "%.3f", a / b }') "
done

kill -0 "$airlock_pid" 2>/dev/null || die "airlock exited during the benchmark; its log:
$(tail -20 "$work_dir/airlock/airlock.log")"
audit_log="$work_dir/airlock/data/audit.log"
# The active segment plus the closed ones in audit.log.d (compressed ones as stored on disk).
# du fails on a missing audit.log.d (no segment closed yet) but still prints the total.
audit_bytes=$({ du -cb "$audit_log" "$audit_log.d" 2>/dev/null || true; } | tail -1 | cut -f1)
audit_bytes=${audit_bytes:-0}
load_after=$(cut -d" " -f1-3 /proc/loadavg)
airlock_rss_kib=$(awk '/^VmRSS:/ { print $2 }' "/proc/$airlock_pid/status" 2>/dev/null || echo "?")

# ---------------------------------------------------------------- 5. the table
declare -A med_tps med_lat med_cpu
for target in "${targets[@]}"; do
    med_tps[$target]=$(tr ' ' '\n' <<<"${tps_list[$target]}" | grep . | median)
    med_lat[$target]=$(tr ' ' '\n' <<<"${lat_list[$target]}" | grep . | median)
    med_cpu[$target]=$(tr ' ' '\n' <<<"${cpu_list[$target]}" | grep . | median)
done

echo
if $pin; then
    cpus="pgbench and PostgreSQL pinned to CPU 0, the proxy to CPU 1"
else
    cpus="$(nproc) CPUs shared by pgbench, PostgreSQL and the proxy"
fi
echo "pgbench -S -n -M $mode -c $clients -j $threads -t $transactions, scale $scale, $rounds round(s), medians; $cpus"
echo
printf '| %-9s | %10s | %11s | %12s | %15s | %14s |\n' target "tps" "vs direct" "latency avg" "added latency" "proxy CPU/txn"
printf '| %-9s | %10s | %11s | %12s | %15s | %14s |\n' --------- ---------: ----------: -----------: --------------: -------------:
for target in "${targets[@]}"; do
    awk -v name="$target" -v tps="${med_tps[$target]}" -v lat="${med_lat[$target]}" -v cpu="${med_cpu[$target]}" \
        -v dtps="${med_tps[direct]}" -v dlat="${med_lat[direct]}" 'BEGIN {
            added = (name == "direct") ? "-" : sprintf("%+.0f µs", (lat - dlat) * 1000)
            cpuc = (name == "direct") ? "-" : sprintf("%.1f µs", cpu)
            printf "| %-9s | %10.0f | %10.3fx | %9.3f ms | %15s | %14s |\n", name, tps, tps / dtps, lat, added, cpuc
        }'
done
echo
med_ratio_direct=$(tr ' ' '\n' <<<"$ratio_direct_list" | grep . | median)
med_ratio_bouncer=$(tr ' ' '\n' <<<"$ratio_bouncer_list" | grep . | median)
awk -v a="${med_tps[airlock]}" -v d="${med_tps[direct]}" -v b="${med_tps[pgbouncer]}" \
    -v rd="$med_ratio_direct" -v rb="$med_ratio_bouncer" 'BEGIN {
    printf "airlock/direct    = %.3f (ratio of medians), %.3f (median of per-round ratios)\n", a / d, rd
    printf "airlock/pgbouncer = %.3f (ratio of medians), %.3f (median of per-round ratios)\n", a / b, rb
}'
echo "per-round airlock/direct [${ratio_direct_list% }]  airlock/pgbouncer [${ratio_bouncer_list% }]"
echo "airlock: rules on, audit on, masking $masking_status"
echo "airlock: audit log $audit_bytes bytes after the runs, RSS ${airlock_rss_kib} KiB"
echo "airlock CPU per transaction by thread, last round:"
thread_cpu_report "$work_dir/threads-before" "$work_dir/threads-after" $((clients * transactions))
echo "load average (1/5/15 min): $load_before before, $load_after after"
echo "per-round tps: direct [${tps_list[direct]% }]  pgbouncer [${tps_list[pgbouncer]% }]  airlock [${tps_list[airlock]% }]"
exit 0
