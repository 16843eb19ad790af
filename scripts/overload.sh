#!/usr/bin/env bash
# Overload: one `order-http` process (API and worker, PostgreSQL + Redis, the gateway in a
# process of its own) offered four times what it can take, from thousands of connections.
#
#   1. capacity: POSTs back to back over 64 connections (order-cli, closed loop), at the
#      defaults (nothing of a closed loop may be refused); then the process restarts;
#   2. unloaded: a probe client at OVERLOAD_PROBE_RATE (200/s, open model) alone;
#   3. overload: oha sends OVERLOAD_FACTOR (4) x capacity, open model, over
#      OVERLOAD_CONNECTIONS (4000) connections, while the same probe runs beside it and
#      /health is asked every 100 ms.
#
# It prints the capacity, the flood's answers by status, the probe's accepted-request
# latency unloaded and under the flood, /health's worst answer time, and the process's peak
# RSS; it fails if the process died, /health failed or took over a second, the capacity
# phase was refused anything, the flood's accepted orders per second (goodput) were under
# 0.95 of capacity, or an accepted request's p99 under
# the flood was more than OVERLOAD_P99_FACTOR (3) times the unloaded one.
# OVERLOAD_SECONDS (20) sets each phase's length. OVERLOAD_BIN names a directory of
# release binaries to measure instead of building this checkout's (to compare two commits
# in one sitting); OVERLOAD_PROFILE names a file for a `perf record` (cpu-clock) of the
# service during the flood (read it with `perf report -i FILE`).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/order-service-target}"
seconds="${OVERLOAD_SECONDS:-20}"
factor="${OVERLOAD_FACTOR:-4}"
connections="${OVERLOAD_CONNECTIONS:-4000}"
probe_rate="${OVERLOAD_PROBE_RATE:-200}"
p99_factor="${OVERLOAD_P99_FACTOR:-3}"
db=order_overload
admin=postgres://postgres@127.0.0.1:5432/postgres
url=postgres://postgres@127.0.0.1:5432/$db
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

scripts/ensure-services.sh >/dev/null
command -v oha >/dev/null || cargo install --locked oha
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ -n "${OVERLOAD_BIN:-}" ]; then
  bin=$OVERLOAD_BIN
else
  cargo build --release -q -p order-http -p order-cli -p order-gateway-mock
  bin="$CARGO_TARGET_DIR/release"
fi
psql -q "$admin" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no >"$work/redis.log" 2>&1 &
pids+=($!)
gateway_port=$(free_port)
GATEWAY_PORT=$gateway_port "$bin/order-gateway-mock" >"$work/gateway.log" 2>&1 &
pids+=($!)
port=$(free_port)
base="http://127.0.0.1:$port"
cli=("$bin/order-cli" --base-url "$base" --timeout 30)
wait_for "http://127.0.0.1:$gateway_port/health"
# start_service [SETTING=VALUE...]: the service under test, in the default role.
start_service() {
  env PORT="$port" AUTH_MODE=none DATABASE_URL="$url" REDIS_URL="redis://127.0.0.1:$redis_port" \
    PAYMENT_GATEWAY_URL="http://127.0.0.1:$gateway_port" "$@" "$bin/order-http" >>"$work/service.log" 2>&1 &
  service=$!
  pids+=($service)
  wait_for "$base/health/ready" || { cat "$work/service.log" >&2; exit 1; }
}

# Capacity is what the process takes from a closed loop of 64 connections, at the defaults
# (a closed loop is never overload: nothing of it may be refused).
echo "1/3 capacity: closed loop, 64 connections, ${seconds}s" >&2
start_service
"${cli[@]}" load --connections 64 --duration "${seconds}s" --json --quiet --seed 1 >"$work/capacity.json"
capacity=$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["throughput"]))' "$work/capacity.json")
flood=$((capacity * factor))
kill "$service"
wait "$service" 2>/dev/null || true
start_service

echo "2/3 unloaded: probe at ${probe_rate}/s, ${seconds}s" >&2
"${cli[@]}" load --rate "$probe_rate" --duration "${seconds}s" --json --quiet --seed 2 >"$work/unloaded.json"

echo "3/3 overload: ${flood}/s (${factor} x ${capacity}/s) over ${connections} connections, probe beside it, ${seconds}s" >&2
python3 -c 'import json; print(json.dumps({"customer_id": "flood", "items": [{"item_id": "item_001", "item_name": "Burger", "quantity": 2, "price": 12.99}]}))' >"$work/order.json"
peak_rss=0
(
  # /health every 100 ms: each answer's status and time, judged once at the end (a process
  # started per probe would take a share of the two cores from what is measured).
  end=$(($(date +%s) + seconds + 2))
  while [ "$(date +%s)" -lt "$end" ]; do
    curl -s -o /dev/null -w '%{http_code} %{time_total}\n' --max-time 5 "$base/health" >>"$work/health.log" \
      || echo "000 5" >>"$work/health.log"
    sleep 0.1
  done
  awk '{ if ($2 > worst) worst = $2; if ($1 != 200) failures++ } END { print worst + 0, failures + 0 }' \
    "$work/health.log" >"$work/health.txt"
) &
health=$!
oha --no-tui --output-format json -z "${seconds}s" -c "$connections" -q "$flood" --latency-correction \
  -m POST -T application/json -D "$work/order.json" "$base/api/v1/orders" >"$work/flood.json" 2>"$work/oha.err" &
oha_pid=$!
sleep 1
if [ -n "${OVERLOAD_PROFILE:-}" ]; then
  perf record -q -e cpu-clock -g -o "$OVERLOAD_PROFILE" -p "$service" -- sleep "$((seconds - 4))" >/dev/null 2>&1 &
fi
"${cli[@]}" load --rate "$probe_rate" --duration "$((seconds - 2))s" --json --quiet --seed 3 >"$work/loaded.json" &
probe=$!
while kill -0 "$oha_pid" 2>/dev/null; do
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$service/status" 2>/dev/null || echo 0)
  [ "$rss" -gt "$peak_rss" ] && peak_rss=$rss
  sleep 0.5
done
wait "$probe" "$health"
wait "$oha_pid" || { cat "$work/oha.err" >&2; exit 1; }
alive=yes
kill -0 "$service" 2>/dev/null || alive=no

python3 - "$work" "$capacity" "$flood" "$connections" "$peak_rss" "$alive" "$p99_factor" <<'PY'
import json, sys
work, capacity, flood, connections, peak_rss, alive, p99_factor = sys.argv[1:]
capacity, flood, p99_factor = int(capacity), int(flood), float(p99_factor)
f = json.load(open(f"{work}/flood.json"))
unloaded = json.load(open(f"{work}/unloaded.json"))
loaded = json.load(open(f"{work}/loaded.json"))
worst_health, health_failures = open(f"{work}/health.txt").read().split()
codes = f.get("statusCodeDistribution", {})
total = sum(codes.values())
errors = f.get("errorDistribution", {})
u, l = unloaded["accepted_latency_ms"], loaded["accepted_latency_ms"]
print(f"| Measure | Result |")
print(f"|---|---:|")
c = json.load(open(f"{work}/capacity.json"))
print(f"| Capacity: POST, 64 connections back to back | {capacity:,} orders/s accepted (p50 / p99 {c['accepted_latency_ms']['p50']:.1f} / {c['accepted_latency_ms']['p99']:.1f} ms; refused {c['errors']}) |")
print(f"| Flood offered: {flood / capacity:.0f} x capacity over {int(connections):,} connections (oha, open model) | {flood:,}/s offered, {f['summary']['requestsPerSec']:,.0f}/s answered |")
print(f"| Flood answers | " + ", ".join(f"{k}: {v:,} ({v / total:.0%})" for k, v in sorted(codes.items())) + (f"; client errors {errors}" if errors else "") + " |")
print(f"| Probe at {unloaded['target_rate']:.0f}/s alone: accepted p50 / p99 / max | {u['p50']:.2f} / {u['p99']:.2f} / {u['max']:.2f} ms ({unloaded['accepted']:,} of {unloaded['sent']:,} accepted) |")
print(f"| Probe under the flood: accepted p50 / p99 / max | {l['p50']:.2f} / {l['p99']:.2f} / {l['max']:.2f} ms ({loaded['accepted']:,} of {loaded['sent']:,} accepted; refused {loaded['errors']}) |")
print(f"| Accepted p99 under the flood / unloaded | {l['p99'] / u['p99']:.1f} x |")
print(f"| /health every 100 ms during the flood: worst answer, failures | {float(worst_health) * 1000:.0f} ms, {health_failures} |")
print(f"| Peak RSS of the process during the flood | {int(peak_rss) / 1024:.0f} MB |")
print(f"| Process alive after the flood | {alive} |")
problems = []
if not codes.get("202"): problems.append("the flood had no order accepted: its requests are wrong")
if alive != "yes": problems.append("the process died")
if int(health_failures) or float(worst_health) > 1.0: problems.append("/health failed or was slow")
if l["p99"] > u["p99"] * p99_factor: problems.append(f"accepted p99 grew {l['p99'] / u['p99']:.1f} x")
if c["errors"]: problems.append(f"the closed loop of 64 was refused {c['errors']} times")
goodput = codes.get("202", 0) / f["summary"]["total"] if f["summary"].get("total") else 0
print(f"| Goodput under the flood: accepted orders/s / capacity | {goodput:,.0f}/s, {goodput / capacity:.2f} |")
if goodput < 0.95 * capacity: problems.append(f"goodput {goodput:,.0f}/s is under 0.95 of capacity")
for p in problems: print(f"OVERLOAD CHECK FAILED: {p}")
sys.exit(1 if problems else 0)
PY
