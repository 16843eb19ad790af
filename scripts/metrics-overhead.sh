#!/usr/bin/env bash
# The cost of metrics on intake: `order-http serve` on PostgreSQL (fsync on) and Redis, the
# most POSTs per second 64 connections get (closed loop, OVERHEAD_SECONDS each), with
# METRICS_ENABLED=true and =false in turn, OVERHEAD_ROUNDS rounds, the tables truncated
# before each run. Prints every run and the ratio of the medians (the machine is shared and
# noisy: compare within one run of this script).
#
#   OVERHEAD_SECONDS (10)  OVERHEAD_ROUNDS (3)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/order-service-target}"
seconds="${OVERHEAD_SECONDS:-10}"
rounds="${OVERHEAD_ROUNDS:-3}"
db=order_overhead
admin=postgres://postgres@127.0.0.1:5432/postgres
url=postgres://postgres@127.0.0.1:5432/$db
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
scripts/ensure-services.sh >/dev/null
cargo build --release -q -p order-http -p order-cli
bin="$CARGO_TARGET_DIR/release"
psql -q "$admin" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
echo "PostgreSQL: fsync=$(psql -Atq "$admin" -c 'SHOW fsync'); ${seconds}s per run, $rounds rounds"

run() { # run ENABLED -> prints orders/s
  local enabled=$1 port service
  port=$(free_port)
  env DATABASE_URL="$url" REDIS_URL=redis://127.0.0.1:6379 REDIS_QUEUE_NAME="overhead-$$" \
    PORT="$port" LOG_LEVEL=warn DATABASE_POOL_SIZE=32 METRICS_ENABLED="$enabled" \
    "$bin/order-http" serve >"$work/serve.log" 2>&1 &
  service=$!
  wait_for "http://127.0.0.1:$port/health/ready" || { cat "$work/serve.log" >&2; exit 1; }
  psql -q "$url" -c "TRUNCATE orders, request_keys, order_events CASCADE" >/dev/null
  "$bin/order-cli" --base-url "http://127.0.0.1:$port" load --connections 64 \
    --duration "${seconds}s" --json --quiet --seed 11 >"$work/load.json"
  kill "$service"; wait "$service" 2>/dev/null || true
  redis-cli del "{overhead-$$}" >/dev/null
  python3 -c "import json; r = json.load(open('$work/load.json')); print(f\"{r['throughput']:.0f}\")"
}

on=(); off=()
for round in $(seq 1 "$rounds"); do
  a=$(run true); b=$(run false)
  on+=("$a"); off+=("$b")
  echo "round $round: metrics on $a orders/s, off $b orders/s"
done
python3 - "${on[*]}" "${off[*]}" <<'PY'
import statistics, sys
on = [float(x) for x in sys.argv[1].split()]
off = [float(x) for x in sys.argv[2].split()]
m_on, m_off = statistics.median(on), statistics.median(off)
print(f"median: on {m_on:.0f}/s, off {m_off:.0f}/s: on/off = {m_on / m_off:.3f} ({(1 - m_on / m_off) * 100:+.1f} % cost)")
PY
