#!/usr/bin/env bash
# Compares builds of `order-http` on PostgreSQL + Redis, alternating them round after round
# so that a slow spell of the shared machine does not favour one: each directory given holds
# an `order-http` and an `order-cli` (copy a release build's two binaries aside before
# building the other). Each run is a fresh database and queue, and reports the orders per
# second, the CPU per order of the process and of all PostgreSQL processes (from /proc), and
# the process's peak RSS (VmHWM).
#
#   AB_MODE=e2e (default): one `order-http` in the default role (API and worker), a 3 s
#     warm-up, then a closed loop of 64 connections for AB_SECONDS (20); orders accepted and
#     terminal per second of the loop.
#   AB_MODE=drain: `order-http serve` fills a backlog for AB_FILL seconds (8), then one
#     `order-http worker` drains it; orders settled per second.
#   AB_MODE=latency: one `order-http` in the default role, a 3 s warm-up, then oha posting
#     at AB_RATE (1000) orders/s, open model, corrected for coordinated omission, for
#     AB_SECONDS; POST p50, p99 and p99.9 and the answers' statuses.
#
# AB_ROUNDS (2) rounds; AB_ENV adds environment to the measured process
# (e.g. AB_ENV="WORKER_CONCURRENCY=2048").
#
#   scripts/ab.sh /tmp/before /var/tmp/order-service-target/release
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
[ $# -ge 1 ] || { sed -n '2,19p' "$0" >&2; exit 2; }
mode=${AB_MODE:-e2e}
seconds=${AB_SECONDS:-20}
fill=${AB_FILL:-8}
rounds=${AB_ROUNDS:-2}
rate=${AB_RATE:-1000}
if [ "$mode" = latency ]; then
  command -v oha >/dev/null || cargo install --locked oha
  python3 -c 'import json; print(json.dumps({"customer_id": "ab", "items": [{"item_id": "item_001", "item_name": "Burger", "quantity": 2, "price": 12.99}]}))' >"$work/order.json"
fi
read -r -a extra <<<"${AB_ENV:-}"
db=order_ab
url=postgres://postgres@127.0.0.1:5432/$db
tick=$(getconf CLK_TCK)
scripts/ensure-services.sh >/dev/null

# CPU ticks (user + system) of a process, and of every PostgreSQL process together.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
pg_ticks() {
  local total=0 pid
  for pid in $(pgrep -u postgres); do total=$((total + $(ticks "$pid" 2>/dev/null || echo 0))); done
  echo "$total"
}
sql() { psql -Atq "$url" -c "$1"; }
start() { # ROLE PORT BIN: starts order-http, sets `app`
  env DATABASE_URL="$url" REDIS_URL=redis://127.0.0.1:6379 REDIS_QUEUE_NAME="$stream" \
    LOG_LEVEL=warn AUTH_MODE=none DATABASE_POOL_SIZE=32 PORT="$2" "${extra[@]}" \
    "$3/order-http" $1 >"$work/app.log" 2>&1 &
  app=$!
  pids+=("$app")
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

for round in $(seq 1 "$rounds"); do
  for bin in "$@"; do
    fresh_db
    stream="ab-$$-$round"
    port=$(free_port)
    cli=("$bin/order-cli" --base-url "http://127.0.0.1:$port" --timeout 30)
    if [ "$mode" = latency ]; then
      start "" "$port" "$bin"
      wait_for "http://127.0.0.1:$port/health/ready" || { cat "$work/app.log" >&2; exit 1; }
      "${cli[@]}" load --connections 64 --duration 3s --json --quiet --seed 9 >/dev/null
      sleep 2
      oha --no-tui --output-format json -z "${seconds}s" -q "$rate" --latency-correction \
        -m POST -T application/json -D "$work/order.json" \
        "http://127.0.0.1:$port/api/v1/orders" >"$work/oha.json"
      stop "$app"
      redis-cli DEL "{$stream}" "{$stream}:deferred" "{$stream}:dead" >/dev/null
      python3 - "$bin" "$rate" "$work/oha.json" <<'PY'
import json, sys
bin_dir, rate, path = sys.argv[1], sys.argv[2], sys.argv[3]
r = json.load(open(path))
p = {k: v * 1000 for k, v in r["latencyPercentiles"].items()}
codes = ", ".join(f"{k}: {v:,}" for k, v in sorted(r["statusCodeDistribution"].items()))
print(f"{bin_dir}: POST at {rate}/s: p50 {p['p50']:.2f} ms, p99 {p['p99']:.2f} ms, "
      f"p99.9 {p['p99.9']:.2f} ms ({codes})", flush=True)
PY
      continue
    fi
    if [ "$mode" = drain ]; then
      start serve "$port" "$bin"
      wait_for "http://127.0.0.1:$port/health" || { cat "$work/app.log" >&2; exit 1; }
      "${cli[@]}" load --connections 64 --duration "${fill}s" --json --quiet --seed 1 >/dev/null
      stop "$app"
      orders=$(sql "SELECT count(*) FROM orders WHERE due_at IS NOT NULL")
      pg0=$(pg_ticks); t0=$(date +%s.%N)
      start worker 0 "$bin"
      while [ "$(sql "SELECT EXISTS (SELECT 1 FROM orders WHERE due_at IS NOT NULL)")" = t ]; do
        sleep 0.2
      done
      t1=$(date +%s.%N); pg1=$(pg_ticks); app1=$(ticks "$app"); app0=0
      done_n=$orders
    else
      start "" "$port" "$bin"
      wait_for "http://127.0.0.1:$port/health/ready" || { cat "$work/app.log" >&2; exit 1; }
      "${cli[@]}" load --connections 64 --duration 3s --json --quiet --seed 9 >/dev/null
      sleep 2
      sql "TRUNCATE orders, request_keys, order_events CASCADE" >/dev/null
      app0=$(ticks "$app"); pg0=$(pg_ticks); t0=$(date +%s.%N)
      "${cli[@]}" load --connections 64 --duration "${seconds}s" --json --quiet --seed 3 >/dev/null
      t1=$(date +%s.%N); app1=$(ticks "$app"); pg1=$(pg_ticks)
      read -r orders done_n <<<"$(psql -Atq -F ' ' "$url" -c "SELECT count(*),
        count(*) FILTER (WHERE status IN ('confirmed', 'payment_failed', 'cancelled')) FROM orders")"
    fi
    hwm=$(awk '/VmHWM/ {print $2}' "/proc/$app/status")
    stop "$app"
    redis-cli DEL "{$stream}" "{$stream}:deferred" "{$stream}:dead" >/dev/null
    python3 - "$mode" "$bin" "$orders" "$done_n" "$t0" "$t1" "$app0" "$app1" "$pg0" "$pg1" "$tick" "$hwm" <<'PY'
import sys
mode, bin_dir = sys.argv[1], sys.argv[2]
orders, done, t0, t1, a0, a1, p0, p1, tick, hwm = (float(x) for x in sys.argv[3:])
secs = t1 - t0
app = (a1 - a0) / tick * 1e6 / orders
pg = (p1 - p0) / tick * 1e6 / orders
rate = (f"settled {done / secs:,.0f}/s" if mode == "drain"
        else f"accepted {orders / secs:,.0f}/s, terminal {done / secs:,.0f}/s")
print(f"{bin_dir}: {mode} {int(orders):,} orders, {rate}; order-http {app:.0f} us/order, "
      f"PostgreSQL {pg:.0f} us/order; peak RSS {hwm / 1024:.0f} MB", flush=True)
PY
  done
done
