#!/usr/bin/env bash
# Soak: one `order-http` process (API and worker) under a steady open-model load, every
# order sent with an Idempotency-Key of its own, sampled every SOAK_SAMPLE seconds: the
# process's RSS, Redis's memory and stream length, and PostgreSQL's table sizes and rows.
# On PostgreSQL the payment gateway is `order-gateway-mock` in a process of its own, as a
# real gateway would be: its ledger (every charge it ever made) is its memory, not the
# service's. The embedded default keeps everything, the simulated gateway's ledger
# included, in its own memory, so there RSS grows with every order and is reported per order.
# It prints the first sample after warm-up and the last, and fails if what must stay flat
# grew: RSS (PostgreSQL backend), Redis memory, the stream (trimmed of acknowledged
# entries), the idempotency keys (purged past their retention) and the bytes per order.
#
#   SOAK_SECONDS (600)   length of the load
#   SOAK_RATE (1000)     orders per second: about half of what one process brings from
#                        POST to a terminal status on this machine (BENCHMARKS.md)
#   SOAK_BACKEND         postgres (PostgreSQL + Redis), memory (embedded default) or both
#   SOAK_SAMPLE (30)     seconds between samples
#   SOAK_RETENTION (60)  IDEMPOTENCY_KEY_RETENTION_SECONDS of the service
#   SOAK_PROFILE         release (default) or debug (the build the tests already made)
#
# CI runs a short form on the debug build, which is several times slower, with the latency
# target relaxed so that it checks memory and sizes, not speed: SOAK_SECONDS=40
# SOAK_RATE=150 SOAK_SAMPLE=10 SOAK_RETENTION=10 SOAK_PROFILE=debug.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/order-service-target}"
seconds="${SOAK_SECONDS:-600}"
rate="${SOAK_RATE:-1000}"
backends="${SOAK_BACKEND:-both}"
sample="${SOAK_SAMPLE:-30}"
retention="${SOAK_RETENTION:-60}"
[ "$backends" = both ] && backends="postgres memory"

db=order_soak
admin=postgres://postgres@127.0.0.1:5432/postgres
url=postgres://postgres@127.0.0.1:5432/$db
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

scripts/ensure-services.sh >/dev/null
profile="${SOAK_PROFILE:-release}"
if [ "$profile" = release ]; then
  cargo build --release -q -p order-http -p order-cli -p order-gateway-mock
else
  cargo build -q -p order-http -p order-cli -p order-gateway-mock
fi
bin="$CARGO_TARGET_DIR/$profile"
status=0

for backend in $backends; do
  port=$(free_port)
  redis_port=$(free_port)
  env=(PORT="$port" LOG_LEVEL=warn IDEMPOTENCY_KEY_RETENTION_SECONDS="$retention")
  if [ "$backend" = postgres ]; then
    psql -q "$admin" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
    # A Redis of the soak's own, so its memory is the queue's alone.
    redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
      >"$work/redis.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    gateway_port=$(free_port)
    GATEWAY_PORT=$gateway_port "$bin/order-gateway-mock" >"$work/gateway.log" 2>&1 &
    pids+=($!)
    wait_for "http://127.0.0.1:$gateway_port/health" || { cat "$work/gateway.log" >&2; exit 1; }
    env+=(AUTH_MODE=none DATABASE_URL="$url" REDIS_URL="redis://127.0.0.1:$redis_port"
      PAYMENT_GATEWAY_URL="http://127.0.0.1:$gateway_port")
  fi
  env "${env[@]}" "$bin/order-http" >"$work/$backend.log" 2>&1 &
  service=$!
  pids+=($service)
  wait_for "http://127.0.0.1:$port/health/ready" || { cat "$work/$backend.log" >&2; exit 1; }

  echo "== soak on $backend: ${rate}/s for ${seconds}s, a sample every ${sample}s" >&2
  "$bin/order-cli" --base-url "http://127.0.0.1:$port" --timeout 30 load --rate "$rate" \
    --duration "${seconds}s" --keyed --json --quiet --seed 7 >"$work/$backend-load.json" &
  load=$!
  csv="$work/$backend.csv"
  echo "t,rss_kb,redis_bytes,stream_len,orders,request_keys,order_bytes" >"$csv"
  start=$(date +%s)
  while kill -0 "$load" 2>/dev/null; do
    sleep "$sample"
    kill -0 "$load" 2>/dev/null || break
    t=$(($(date +%s) - start))
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$service/status")
    if [ "$backend" = postgres ]; then
      redis_bytes=$(redis-cli -p "$redis_port" info memory | awk -F: '/^used_memory:/ {print $2}' | tr -d '\r')
      stream_len=$(redis-cli -p "$redis_port" xlen '{payment_queue}' | tr -d '\r')
      read -r orders keys order_bytes < <(psql -Atq -F ' ' "$url" -c "
        SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM request_keys),
               pg_total_relation_size('orders') + pg_total_relation_size('order_items')
               + pg_total_relation_size('payment_attempts')")
    else
      redis_bytes=0 stream_len=0 order_bytes=0 keys=0
      orders=$(curl -fs "http://127.0.0.1:$port/api/v1/orders?limit=1" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])')
    fi
    echo "$t,$rss,$redis_bytes,$stream_len,$orders,$keys,$order_bytes" >>"$csv"
    echo "   t=${t}s rss=${rss}kB redis=${redis_bytes}B stream=${stream_len} orders=${orders} keys=${keys}" >&2
  done
  wait "$load"
  python3 - "$csv" "$work/$backend-load.json" "$backend" "$rate" "$retention" "$sample" <<'PY' || status=1
import csv, json, sys
path, load_path, backend, rate, retention, sample = sys.argv[1:]
rate, retention, sample = float(rate), float(retention), float(sample)
rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(open(path))]
load = json.load(open(load_path))
if len(rows) < 3:
    sys.exit(f"{backend}: too few samples ({len(rows)}); lengthen SOAK_SECONDS")
# The first sample is warm-up (pools, caches, the first keys reaching their retention).
first, last = rows[1], rows[-1]
errors = sum(load["errors"].values()) + load["dropped"]
l = load["latency_ms"]
print(f"\n### {backend}: {rate:,.0f} orders/s for {last['t'] - first['t']:.0f} s between the samples below\n")
print("| Sample | t (s) | RSS (MB) | Redis used_memory (MB) | stream length | orders | idempotency keys | bytes per order (orders + items + attempts) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for name, r in (("first after warm-up", first), ("last", last)):
    per_order = r["order_bytes"] / r["orders"] if r["orders"] else 0
    print(f"| {name} | {r['t']:.0f} | {r['rss_kb'] / 1024:.1f} | {r['redis_bytes'] / 2**20:.1f} | {r['stream_len']:,.0f} | {r['orders']:,.0f} | {r['request_keys']:,.0f} | {per_order:,.0f} |")
print(f"\nLoad: {load['sent']:,} sent, {errors} errors or dropped; POST p50 / p99 / max {l['p50']:.2f} / {l['p99']:.2f} / {l['max']:.2f} ms")
problems = []
grown = lambda key, factor, slack: last[key] > first[key] * factor + slack
if backend == "postgres":
    if grown("rss_kb", 1.25, 8 * 1024):
        problems.append(f"RSS grew from {first['rss_kb']:.0f} to {last['rss_kb']:.0f} kB")
    if grown("redis_bytes", 1.5, 4 * 2**20):
        problems.append(f"Redis memory grew from {first['redis_bytes']:.0f} to {last['redis_bytes']:.0f} B")
    # Acknowledged entries are trimmed at each reclaim (every 15 s): the stream holds at most
    # about that long's worth of jobs, never the run's.
    bound = rate * 30
    if max(r["stream_len"] for r in rows[1:]) > bound:
        problems.append(f"the stream reached {max(r['stream_len'] for r in rows):,.0f} entries (bound {bound:,.0f})")
    # Keys live `retention` seconds and are purged every tenth of it.
    bound = rate * retention * 1.5
    if max(r["request_keys"] for r in rows[1:]) > bound:
        problems.append(f"idempotency keys reached {max(r['request_keys'] for r in rows):,.0f} (bound {bound:,.0f})")
    per = lambda r: r["order_bytes"] / r["orders"]
    if per(last) > per(first) * 1.5:
        problems.append(f"bytes per order grew from {per(first):,.0f} to {per(last):,.0f}")
else:
    # The embedded default keeps every order in memory: RSS grows by the orders themselves.
    orders = last["orders"] - first["orders"]
    if orders > 0:
        print(f"Embedded store: {(last['rss_kb'] - first['rss_kb']) * 1024 / orders:,.0f} bytes of RSS per order kept")
if errors:
    problems.append(f"{errors} requests failed or were dropped: {load['errors']}, {load['dropped']} dropped")
for p in problems:
    print(f"FLAT CHECK FAILED ({backend}): {p}")
sys.exit(1 if problems else 0)
PY
  kill "$service" 2>/dev/null || true
  wait "$service" 2>/dev/null || true
  [ "$backend" = postgres ] && redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
done
exit $status
