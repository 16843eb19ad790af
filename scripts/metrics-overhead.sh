#!/usr/bin/env bash
# The cost of metrics on intake: `order-http serve` on PostgreSQL (fsync on) and Redis, the
# most POSTs per second 64 connections get (closed loop, OVERHEAD_SECONDS each), with
# METRICS_ENABLED=true and =false in turn, OVERHEAD_ROUNDS rounds, the tables truncated
# before each run. Prints every run: orders/s, and the CPU time the service process spent
# per order (user + system, from /proc), which the load generator and PostgreSQL sharing the
# machine disturb less than throughput; then the ratios of the medians (the machine is
# shared and noisy: compare within one run of this script).
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

run() { # run ENABLED -> prints "orders/s cpu_us_per_order"
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
  local ticks
  ticks=$(awk '{print $14 + $15}' "/proc/$service/stat")
  kill "$service"; wait "$service" 2>/dev/null || true
  redis-cli del "{overhead-$$}" >/dev/null
  python3 -c "import json, os; r = json.load(open('$work/load.json')); hz = os.sysconf('SC_CLK_TCK'); print(f\"{r['throughput']:.0f} {$ticks / hz * 1e6 / max(r['accepted'], 1):.1f}\")"
}

on=(); off=(); on_cpu=(); off_cpu=()
for round in $(seq 1 "$rounds"); do
  read -r a a_cpu < <(run true); read -r b b_cpu < <(run false)
  on+=("$a"); off+=("$b"); on_cpu+=("$a_cpu"); off_cpu+=("$b_cpu")
  echo "round $round: metrics on $a orders/s ($a_cpu µs CPU/order), off $b orders/s ($b_cpu µs CPU/order)"
done
python3 - "${on[*]}" "${off[*]}" "${on_cpu[*]}" "${off_cpu[*]}" <<'PY'
import statistics, sys
on, off, on_cpu, off_cpu = ([float(x) for x in a.split()] for a in sys.argv[1:5])
m_on, m_off = statistics.median(on), statistics.median(off)
c_on, c_off = statistics.median(on_cpu), statistics.median(off_cpu)
print(f"median throughput: on {m_on:.0f}/s, off {m_off:.0f}/s: on/off = {m_on / m_off:.3f}")
print(f"median CPU per order: on {c_on:.1f} µs, off {c_off:.1f} µs: on/off = {c_on / c_off:.3f} ({(c_on / c_off - 1) * 100:+.1f} %)")
PY
