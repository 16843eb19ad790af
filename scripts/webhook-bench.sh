#!/usr/bin/env bash
# Webhook delivery on PostgreSQL (fsync and synchronous_commit on) and Redis, to a receiver
# on this machine (`order-cli webhooks listen`, release builds throughout):
#
# 1. Throughput: orders are placed for WEBHOOK_BENCH_BACKLOG_SECONDS (closed loop, 32
#    connections) with no worker running, so their
#    `order.created` events wait in the outbox; then one `order-http worker` starts, on a
#    queue with no jobs (so it pays nothing and only dispatches), and the script times how
#    long until the receiver has every event: events/s of one dispatcher.
# 2. Lag: one `order-http` (API and worker, paying with the simulated gateway) under
#    WEBHOOK_BENCH_RATE orders/s for WEBHOOK_BENCH_SECONDS, the receiver subscribed to
#    every event: the time from each status change (the event's timestamp) to its arrival,
#    p50, p90, p99 and max, per event type and over all.
#
#   WEBHOOK_BENCH_BACKLOG_SECONDS (8)  WEBHOOK_BENCH_RATE (500)  WEBHOOK_BENCH_SECONDS (30)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/order-service-target}"
backlog="${WEBHOOK_BENCH_BACKLOG_SECONDS:-8}"
rate="${WEBHOOK_BENCH_RATE:-500}"
seconds="${WEBHOOK_BENCH_SECONDS:-30}"
db=order_webhook_bench
url=postgres://postgres@127.0.0.1:5432/$db
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
release_build
echo "PostgreSQL: fsync=$(psql -Atq "$admin" -c 'SHOW fsync') synchronous_commit=$(psql -Atq "$admin" -c 'SHOW synchronous_commit')"

common=(AUTH_MODE=none DATABASE_URL="$url" REDIS_URL=redis://127.0.0.1:6379 WEBHOOKS_ALLOW_HTTP=true WEBHOOKS_ALLOW_PRIVATE_NETWORKS=true LOG_LEVEL=warn)

# Starts the receiver on a free port, subscribed through the API at $1 to the types in $2
# (comma-separated, or empty for all); its JSON lines go to $3.
receiver() {
  local api=$1 types=$2 out=$3 port
  port=$(free_port)
  "$bin/order-cli" webhooks listen --port "$port" -o json >"$out" 2>"$work/listen.log" &
  pids+=($!)
  local args=(--base-url "$api" webhooks create --url "http://127.0.0.1:$port/" -o json)
  [ -n "$types" ] && args+=(--events "$types")
  "$bin/order-cli" "${args[@]}" >/dev/null 2>&1
}

# 1. Throughput of one dispatcher.
fresh_db
port=$(free_port)
queue="webhook-bench-$$"
env "${common[@]}" PORT="$port" REDIS_QUEUE_NAME="$queue" "$bin/order-http" serve >"$work/serve.log" 2>&1 &
serve=$!
pids+=($serve)
wait_for "http://127.0.0.1:$port/health/ready" || { cat "$work/serve.log" >&2; exit 1; }
receiver "http://127.0.0.1:$port" order.created "$work/throughput.jsonl"
"$bin/order-cli" --base-url "http://127.0.0.1:$port" load --connections 32 --duration "${backlog}s" \
  --json --quiet --seed 3 >"$work/backlog.json"
kill "$serve"; wait "$serve" 2>/dev/null || true
queued=$(psql -Atq "$url" -c "SELECT count(*) FROM order_events e, webhook_fan_out f \
  WHERE (e.xid, e.seq) > (f.xid, f.seq)")
start=$(date +%s.%N)
env "${common[@]}" PORT=0 REDIS_QUEUE_NAME="$queue-empty" PAYMENT_RECONCILE_GRACE_SECONDS=86400 \
  "$bin/order-http" worker >"$work/worker.log" 2>&1 &
pids+=($!)
while [ "$(wc -l <"$work/throughput.jsonl")" -lt "$queued" ]; do sleep 0.05; done
end=$(date +%s.%N)
python3 - "$queued" "$start" "$end" <<'PY'
import sys
n, start, end = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
print(f"throughput: one dispatcher delivered {n} events in {end - start:.2f} s: {n / (end - start):.0f} events/s")
PY
kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; pids=()
redis-cli del "$queue" "{$queue}" >/dev/null || true

# 2. Lag from status change to arrival under load.
fresh_db
port=$(free_port)
env "${common[@]}" PORT="$port" REDIS_QUEUE_NAME="$queue-lag" "$bin/order-http" >"$work/all.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$port/health/ready" || { cat "$work/all.log" >&2; exit 1; }
receiver "http://127.0.0.1:$port" "" "$work/lag.jsonl"
"$bin/order-cli" --base-url "http://127.0.0.1:$port" load --rate "$rate" --duration "${seconds}s" \
  --json --quiet --seed 5 >"$work/load.json"
"$bin/order-cli" --base-url "http://127.0.0.1:$port" drain --wait 120 >/dev/null
expected=$(psql -Atq "$url" -c "SELECT count(*) FROM order_events")
for _ in $(seq 1 200); do
  [ "$(wc -l <"$work/lag.jsonl")" -ge "$expected" ] && break
  sleep 0.1
done
python3 - "$work/lag.jsonl" "$work/load.json" "$expected" "$rate" <<'PY'
import json, sys
from datetime import datetime
rows = [json.loads(l) for l in open(sys.argv[1])]
load = json.load(open(sys.argv[2]))
def t(s): return datetime.fromisoformat(s.replace("Z", "+00:00"))
by = {}
seen = set()
for r in rows:
    e = r["event"]
    if e["id"] in seen: continue
    seen.add(e["id"])
    lag = (t(r["received_at"]) - t(e["timestamp"])).total_seconds() * 1000
    by.setdefault(e["type"], []).append(lag)
    by.setdefault("all", []).append(lag)
def pct(v, p): v = sorted(v); return v[min(len(v) - 1, int(p / 100 * len(v)))]
print(f"lag at {sys.argv[4]} orders/s: {len(seen)} of {sys.argv[3]} events arrived; accepted {load.get('accepted')}, errors {load.get('errors')}")
print(f"{'event':<28}{'n':>7}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}")
for k in sorted(by, key=lambda k: (k == 'all', k)):
    v = by[k]
    print(f"{k:<28}{len(v):>7}{pct(v,50):>9.1f}{pct(v,90):>9.1f}{pct(v,99):>9.1f}{max(v):>9.1f}")
PY
