#!/usr/bin/env bash
# The benchmark, in one run, on this machine, with fsync and synchronous_commit on:
#   1. PostgreSQL's own ceiling for the durable insert the service does (pgbench: the order
#      row and its 2 item rows, one order per transaction, 16 clients);
#   2. the service's maximum POST throughput (API process against PostgreSQL + Redis,
#      closed loop, 64 connections);
#   3. latency at a fixed 1,000 orders/s (open model, corrected for coordinated omission);
#   4. how fast one worker process drains the backlog with the default mock gateway
#      (50-200 ms per charge, 95 % success);
#   5. end to end: one `order-http` in the default role (API and worker, as the README runs
#      it) at its closed-loop maximum (64, then 1,024 connections), then at a fixed 1,000 orders/s from
#      order-cli and from oha (open model, corrected for coordinated omission), each run
#      reporting orders accepted/s, orders terminal/s and the backlog when sending stops,
#      POST latency, and the time from 202 to terminal status of the orders paid on their
#      first attempt (from the orders' own timestamps). Each run starts once the previous
#      one's backlog is settled, on emptied tables.
# Every process runs at its default settings (but AUTH_MODE=none: keys are measured by
# scripts/access-bench.sh). It prints a Markdown table with each figure and its ratio to the
# PostgreSQL ceiling.
# BENCH_SECONDS (10) sets the length of each measured phase.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/order-service-target}"
seconds="${BENCH_SECONDS:-10}"
db=order_bench
admin=postgres://postgres@127.0.0.1:5432/postgres
url=postgres://postgres@127.0.0.1:5432/$db
stream="bench-$$"
port=18400
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  redis-cli -h 127.0.0.1 DEL "{$stream}" "{$stream}:deferred" "{$stream}:dead" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

scripts/ensure-services.sh >/dev/null
cargo build --release -q -p order-http -p order-cli
bin="$CARGO_TARGET_DIR/release"
psql -q "$admin" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"

# Every setting at its default (no key: AUTH_MODE=none, as the access cost is measured by
# scripts/access-bench.sh), so what is measured is what a user who follows the README gets.
export DATABASE_URL="$url" REDIS_URL=redis://127.0.0.1:6379 REDIS_QUEUE_NAME="$stream" \
  AUTH_MODE=none
PORT=$port "$bin/order-http" serve >"$work/api.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
settings=$(psql -Atq "$url" -c "SELECT current_setting('fsync') || ' ' || current_setting('synchronous_commit')")

echo "1/5 PostgreSQL ceiling (pgbench, ${seconds}s)" >&2
cat >"$work/insert.sql" <<'SQL'
\set c random(1, 1000)
WITH o AS (
  INSERT INTO orders (id, customer_id, total_amount, status, created_at, updated_at, due_at)
  VALUES (gen_random_uuid(), 'bench-' || :c, 30.97, 'pending', now(), now(), now()) RETURNING id)
INSERT INTO order_items (order_id, position, item_id, item_name, quantity, price)
  SELECT id, 0, 'item_001', 'Burger', 2, 12.99 FROM o
  UNION ALL SELECT id, 1, 'item_002', 'Fries', 1, 4.99 FROM o;
SQL
pgbench -n -c 16 -j 2 -T "$seconds" -f "$work/insert.sql" "$url" >"$work/pgbench.txt" 2>&1 \
  || { cat "$work/pgbench.txt" >&2; exit 1; }
psql -q "$url" -c "TRUNCATE orders CASCADE"

cli="$bin/order-cli --base-url http://127.0.0.1:$port --timeout 30"
echo "2/5 maximum POST throughput (${seconds}s)" >&2
$cli load --connections 64 --duration "${seconds}s" --json --quiet --seed 1 >"$work/max.json"
echo "3/5 latency at 1000 orders/s (${seconds}s)" >&2
$cli load --rate 1000 --duration "${seconds}s" --json --quiet --seed 2 >"$work/fixed.json"

echo "4/5 draining the backlog with one worker" >&2
PORT=0 "$bin/order-http" worker >"$work/worker.log" 2>&1 &
pids+=($!)
$cli drain --wait 900 -o json >"$work/drain.json"

echo "5/5 end to end: one order-http, API and worker" >&2
command -v oha >/dev/null || cargo install --locked oha
for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
wait 2>/dev/null || true
pids=()
e2e_port=$((port + 1))
PORT=$e2e_port "$bin/order-http" >"$work/e2e.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$e2e_port/health/ready" >/dev/null && break; sleep 0.1; done
ecli="$bin/order-cli --base-url http://127.0.0.1:$e2e_port --timeout 30"
python3 -c 'import json; print(json.dumps({"customer_id": "bench", "items": [{"item_id": "item_001", "item_name": "Burger", "quantity": 2, "price": 12.99}]}))' >"$work/order.json"
live="status NOT IN ('confirmed', 'payment_failed', 'cancelled')"
e2e() { # NAME COMMAND...: runs COMMAND as the load, then reads the orders
  local name=$1; shift
  for _ in $(seq 1 120); do
    [ "$(psql -Atq "$url" -c "SELECT count(*) FROM orders WHERE $live")" = 0 ] && break
    sleep 1
  done
  psql -q "$url" -c "TRUNCATE orders, request_keys, order_events CASCADE" 2>/dev/null
  "$@" >"$work/e2e-$name.json"
  psql -Atq -F ' ' "$url" -c "
    SELECT count(*), count(*) FILTER (WHERE NOT ($live)),
      coalesce((SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (
          ORDER BY extract(epoch FROM o.updated_at - o.created_at) * 1000)
        FROM orders o WHERE o.status = 'confirmed'
          AND (SELECT count(*) FROM payment_attempts a WHERE a.order_id = o.id) = 1)::text, '{0,0}')
    FROM orders" >"$work/e2e-$name.end"
}
e2e max $ecli load --connections 64 --duration "${seconds}s" --json --quiet --seed 3
e2e max1024 $ecli load --connections 1024 --duration "${seconds}s" --json --quiet --seed 5
e2e fixed $ecli load --rate 1000 --duration "${seconds}s" --json --quiet --seed 4
e2e oha oha --no-tui --output-format json -z "${seconds}s" -q 1000 --latency-correction \
  -m POST -T application/json -D "$work/order.json" "http://127.0.0.1:$e2e_port/api/v1/orders"

python3 - "$work" "$settings" "$seconds" <<'PY'
import json, re, sys
work, settings, seconds = sys.argv[1], sys.argv[2], sys.argv[3]
tps = float(re.search(r"tps = ([0-9.]+)", open(f"{work}/pgbench.txt").read()).group(1))
peak = json.load(open(f"{work}/max.json"))
fixed = json.load(open(f"{work}/fixed.json"))
drain = json.load(open(f"{work}/drain.json"))
fsync, sync = settings.split()
l = fixed["latency_ms"]
print(f"fsync={fsync} synchronous_commit={sync}; {seconds} s per phase\n")
print("| Measure | Result | Ratio to PostgreSQL ceiling |")
print("|---|---:|---:|")
print(f"| PostgreSQL ceiling: pgbench, 1 order (+2 items) per transaction, 16 clients | {tps:,.0f} orders/s | 1.00 |")
print(f"| Service: max POST throughput, 64 connections, API + PostgreSQL + Redis | {peak['throughput']:,.0f} orders/s | {peak['throughput'] / tps:.2f} |")
print(f"| Service: max POST p50 / p99 latency | {peak['latency_ms']['p50']:.1f} / {peak['latency_ms']['p99']:.1f} ms | |")
print(f"| Service at 1,000 orders/s: p50 / p99 / p99.9 / max | {l['p50']:.2f} / {l['p99']:.2f} / {l['p999']:.2f} / {l['max']:.2f} ms | {1000 / tps:.2f} (load) |")
print(f"| Errors (max run, fixed run) | {sum(peak['errors'].values())}, {sum(fixed['errors'].values()) + fixed['dropped']} | |")
print(f"| One worker draining {drain['open_at_start']:,} orders, mock 50-200 ms | {drain['drain_rate']:,.0f} orders/s ({drain['seconds']:.1f} s) | {drain['drain_rate'] / tps:.2f} |")
secs = float(seconds)
for name, label in [("max", "closed loop, 64 connections"), ("max1024", "closed loop, 1,024 connections"), ("fixed", "1,000/s open model (order-cli)"), ("oha", "1,000/s open model (oha)")]:
    total, terminal, pct = open(f"{work}/e2e-{name}.end").read().split(" ", 2)
    total, terminal = int(total), int(terminal)
    t50, t99 = (float(x) for x in pct.strip().strip("{}").split(","))
    r = json.load(open(f"{work}/e2e-{name}.json"))
    if name == "oha":
        codes = r.get("statusCodeDistribution", {})
        lat = {k: v * 1000 for k, v in r["latencyPercentiles"].items()}
        p50, p99 = lat["p50"], lat["p99"]
        # Requests still in flight when oha's duration ends are cut off by oha itself.
        errors = sum(v for k, v in codes.items() if k != "202") + sum(
            v for k, v in r.get("errorDistribution", {}).items() if k != "aborted due to deadline")
    else:
        p50, p99 = r["latency_ms"]["p50"], r["latency_ms"]["p99"]
        errors = sum(r["errors"].values()) + r.get("dropped", 0)
        if r["errors"]:
            errors = f"{errors} ({', '.join(f'{k}: {v}' for k, v in sorted(r['errors'].items()))})"
    print(f"| End to end, one `order-http`, {label}: accepted | {total / secs:,.0f} orders/s | {total / secs / tps:.2f} |")
    print(f"| ... terminal when sending stopped; backlog | {terminal / secs:,.0f} orders/s; {total - terminal:,} | {terminal / secs / tps:.2f} |")
    print(f"| ... POST p50 / p99; errors | {p50:.2f} / {p99:.2f} ms; {errors} | |")
    print(f"| ... 202 to terminal, paid on the first attempt, p50 / p99 | {t50:.0f} / {t99:.0f} ms | |")
PY
