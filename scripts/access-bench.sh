#!/usr/bin/env bash
# What access control and rate limiting cost on POST throughput, measured in one run:
# `order-http serve` on PostgreSQL + Redis, POSTs back to back over 64 connections
# (order-cli load, closed loop), alternately with AUTH_MODE=none and no limits, and with
# AUTH_MODE=api_key plus a write limit counted in Redis (set far above the load, so every
# request pays for the key check and the limiter's script but none is refused).
# ACCESS_BENCH_ROUNDS (5) rounds of ACCESS_BENCH_SECONDS (10) per setting; the settings
# alternate within each round (each round starting with a different one), so a slow spell
# of the shared machine hits all three, and each starts from empty order tables.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/order-service-target}"
rounds="${ACCESS_BENCH_ROUNDS:-5}"
seconds="${ACCESS_BENCH_SECONDS:-10}"
db=order_access_bench
admin=postgres://postgres@127.0.0.1:5432/postgres
url=postgres://postgres@127.0.0.1:5432/$db
stream="access-bench-$$"
cleanup_more() {
  redis-cli -h 127.0.0.1 DEL "{$stream}" "{$stream}:deferred" "{$stream}:dead" >/dev/null 2>&1 || true
}
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

scripts/ensure-services.sh >/dev/null
cargo build --release -q -p order-http -p order-cli
bin="$CARGO_TARGET_DIR/release"
psql -q "$admin" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
export DATABASE_URL="$url" REDIS_URL=redis://127.0.0.1:6379 REDIS_QUEUE_NAME="$stream" LOG_LEVEL=warn
key=$("$bin/order-http" keys create --name bench --scopes orders:write 2>/dev/null)
port=18500

run() { # run NAME [SETTING=VALUE...]: one measured phase on a fresh `serve` process
  local name=$1
  shift
  # Every phase starts from empty tables: a growing table would slow whichever runs later.
  psql -q "$url" -c "TRUNCATE orders, request_keys CASCADE"
  redis-cli -h 127.0.0.1 DEL "{$stream}" >/dev/null
  env PORT=$port DATABASE_POOL_SIZE=32 "$@" "$bin/order-http" serve >>"$work/serve.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/health/ready" >/dev/null && break; sleep 0.1; done
  "$bin/order-cli" --base-url "http://127.0.0.1:$port" --timeout 30 --api-key "$key" \
    load --connections 64 --duration "${seconds}s" --json --quiet --seed 1 >>"$work/$name.jsonl"
  echo >>"$work/$name.jsonl"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

setting() { # setting N: the Nth of the three settings
  case $1 in
    0) run open AUTH_MODE=none ;;
    1) run keyed AUTH_MODE=api_key ;;
    2) run secured AUTH_MODE=api_key RATE_LIMIT_WRITES_PER_SECOND=1000000 RATE_LIMIT_WRITES_BURST=1000000 ;;
  esac
}
for round in $(seq 1 "$rounds"); do
  echo "round $round of $rounds" >&2
  # Each round starts with a different setting, so none is always first or last.
  for i in 0 1 2; do setting $(((round + i) % 3)); done
done

python3 - "$work" "$seconds" <<'PY'
import json, sys
work, seconds = sys.argv[1], sys.argv[2]
def runs(name):
    return [json.loads(l) for l in open(f"{work}/{name}.jsonl") if l.strip()]
open_, keyed, secured = runs("open"), runs("keyed"), runs("secured")
print(f"{len(open_)} rounds of {seconds} s per setting, alternating; POST throughput over 64 connections\n")
print("| Round | AUTH_MODE=none, no limits | AUTH_MODE=api_key | ratio | api_key + Redis write limit | ratio | Errors |")
print("|---|---:|---:|---:|---:|---:|---|")
cell = lambda r: f"{r['throughput']:,.0f}/s (p99 {r['latency_ms']['p99']:.1f} ms)"
for i, (a, k, b) in enumerate(zip(open_, keyed, secured), 1):
    errors = sum(sum(r["errors"].values()) for r in (a, k, b))
    print(f"| {i} | {cell(a)} | {cell(k)} | {k['throughput'] / a['throughput']:.3f} | {cell(b)} | {b['throughput'] / a['throughput']:.3f} | {errors} |")
mean = lambda rs: sum(r["throughput"] for r in rs) / len(rs)
ta, tk, tb = mean(open_), mean(keyed), mean(secured)
print(f"| mean | {ta:,.0f}/s | {tk:,.0f}/s | **{tk / ta:.3f}** | {tb:,.0f}/s | **{tb / ta:.3f}** | |")
median = lambda xs: sorted(xs)[len(xs) // 2]
rk = median([k["throughput"] / a["throughput"] for a, k in zip(open_, keyed)])
rb = median([b["throughput"] / a["throughput"] for a, b in zip(open_, secured)])
print(f"| median of the per-round ratios | | | **{rk:.3f}** | | **{rb:.3f}** | |")
PY
