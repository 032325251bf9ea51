#!/usr/bin/env bash
# End-to-end cost of one gateway feature, A/B: two airlock gateways on the same machine and data,
# identical but for the feature, driven by pgbench in alternating rounds so drift hits both; the
# ratio is what to read.
#
#   bash scripts/bench-ab.sh --compare masking   [--transactions N] [--clients N] [--rows N] [--rounds N]
#   bash scripts/bench-ab.sh --compare recording [--transactions N] [--clients N] [--rows N] [--rounds N]
#
# masking:   a custom script selecting --rows rows full of PII (emails, card numbers, IBANs, phone
#            numbers, free text); one gateway with a [[masking]] policy (column lineage + the full
#            detector set), one without.
# recording: the same PII select (so every statement records --rows rows; --rows 1 for a point
#            select); one gateway with [recording] enabled (the default), one with it off.
# Needs: the local PostgreSQL (127.0.0.1:5432, trust), pgbench, psql, a release build of airlock
# (built if missing; AIRLOCK_BIN overrides).
set -euo pipefail
transactions=2000 clients=4 rows=20 rounds=2 compare=masking
while (($#)); do
    case $1 in
        --compare) compare=$2; shift 2 ;;
        --transactions) transactions=$2; shift 2 ;;
        --clients) clients=$2; shift 2 ;;
        --rows) rows=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        -h | --help) sed -n 2,16p "$0"; exit 0 ;;
        *) echo "bench-ab: unknown option $1" >&2; exit 2 ;;
    esac
done
case $compare in
    masking | recording) ;;
    *) echo "bench-ab: --compare takes masking or recording, not $compare" >&2; exit 2 ;;
esac
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$repo/target}
bin=${AIRLOCK_BIN:-$target_dir/release/airlock}
if [[ ! -x $bin ]]; then
    echo "==> building airlock (release)" >&2
    (cd "$repo" && cargo build --release -p airlock >&2)
fi
work=$(mktemp -d /tmp/airlock-bench-mask.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

db=airlock_bench_mask
psql -X -q -h 127.0.0.1 -U postgres -d postgres -c "drop database if exists $db" -c "create database $db" >/dev/null
psql -X -q -h 127.0.0.1 -U postgres -d "$db" >/dev/null <<SQL
create table customers (id int primary key, name text, email text, card_number text, iban text, phone text, notes text);
insert into customers
select i, 'Customer ' || i, 'user' || i || '@example.com', '4111111111111111', 'GB82WEST12345698765432',
       '+1415555' || lpad((i % 10000)::text, 4, '0'),
       'order ' || (100000 + i) || ' shipped; contact user' || i || '@example.com about the refund'
from generate_series(1, 10000) i;
SQL
export AIRLOCK_BENCH_TOKEN=bench-mask-token-0123456789
start() { # NAME on|off (the feature compared)
    local name=$1 port api
    port=$(free_port); api=$(free_port)
    mkdir -p "$work/$name"
    cat >"$work/$name/airlock.toml" <<EOF
[gateway]
data_dir = "$work/$name/data"
api_listen = "127.0.0.1:$api"
[listeners]
postgres = "127.0.0.1:$port"
[[service_accounts]]
name = "bench"
groups = ["bench"]
token_env = "AIRLOCK_BENCH_TOKEN"
[[connections]]
name = "$db"
type = "postgres"
address = "127.0.0.1:5432"
database = "$db"
user = "postgres"
sslmode = "disable"
allow_groups = ["bench"]
EOF
    if [[ $compare == recording && $2 == off ]]; then
        printf '[recording]\nenabled = false\n' >>"$work/$name/airlock.toml"
    fi
    if [[ $compare == masking && $2 == on ]]; then
        cat >>"$work/$name/airlock.toml" <<EOF
[[masking]]
name = "pii"
columns = ["customers.card_number", "*.email"]
detectors = ["email", "credit_card", "iban", "phone", "secret"]
strategy = "partial"
EOF
    fi
    "$bin" serve --config "$work/$name/airlock.toml" >"$work/$name/log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
    echo "$port"
}
port_on=$(start with on)
port_off=$(start without off)
cat >"$work/select.sql" <<EOF
\set start random(1, 10000 - $rows)
select * from customers where id between :start and :start + $rows - 1;
EOF
# Sanity: the feature is on where it should be.
if [[ $compare == masking ]]; then
    PGPASSWORD=$AIRLOCK_BENCH_TOKEN psql -X -At -h 127.0.0.1 -p "$port_on" -U bench -d "$db" -c "select email from customers where id = 1" | grep -q 'user1@example.com' &&
        { echo "bench-ab: the masked gateway returned a raw email" >&2; exit 1; }
fi
run() { # PORT
    PGPASSWORD=$AIRLOCK_BENCH_TOKEN pgbench -n -M extended -f "$work/select.sql" -c "$clients" -j 2 -t "$transactions" \
        -h 127.0.0.1 -p "$1" -U bench "$db" 2>&1 | awk '/^tps/ { print int($3) }'
}
echo "$compare: pgbench -n -M extended -f select.sql ($rows PII rows per transaction) -c $clients -t $transactions, $rounds round(s)"
sum_on=0 sum_off=0
for r in $(seq "$rounds"); do
    off=$(run "$port_off"); on=$(run "$port_on")
    echo "round $r: without $compare $off tps, with $compare $on tps"
    sum_on=$((sum_on + on)); sum_off=$((sum_off + off))
done
if [[ $compare == recording ]]; then
    # Sanity: the recording gateway wrote recordings, the other did not.
    [[ -n $(find "$work/with/data/recordings" -name '*.alrec.zst' 2>/dev/null | head -1) ]] ||
        { echo "bench-ab: the recording gateway wrote no recording" >&2; exit 1; }
    [[ -z $(find "$work/without/data/recordings" -name '*.alrec.zst' 2>/dev/null | head -1) ]] ||
        { echo "bench-ab: the gateway with recording off wrote recordings" >&2; exit 1; }
fi
awk -v c="$compare" -v on="$sum_on" -v off="$sum_off" -v n="$rounds" 'BEGIN { printf "%s on / off: %.3f (mean %d vs %d tps)\n", c, on / off, on / n, off / n }'
psql -X -q -h 127.0.0.1 -U postgres -d postgres -c "drop database if exists $db" >/dev/null
