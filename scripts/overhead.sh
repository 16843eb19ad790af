#!/usr/bin/env bash
# The cost of metrics or of traces on intake: `order-http serve` on PostgreSQL (fsync on) and
# Redis, the most POSTs per second 64 connections get (closed loop, OVERHEAD_SECONDS each),
# with the feature on and off in turn, OVERHEAD_ROUNDS rounds, the tables truncated before
# each run. Prints every run: orders/s, and the CPU time the service process spent per order
# (user + system, from /proc), which the load generator and PostgreSQL sharing the machine
# disturb less than throughput; then the ratios of the medians (the machine is shared and
# noisy: compare within one run of this script).
#
#   scripts/overhead.sh metrics   METRICS_ENABLED=true against =false
#   scripts/overhead.sh traces    every request traced and exported over OTLP/HTTP to a
#                                 local receiver, against no OTEL_* setting (metrics on in both);
#                                 OVERHEAD_SAMPLER=parentbased_traceidratio OVERHEAD_SAMPLER_ARG=0.1
#                                 exports a tenth of the traces
#
#   OVERHEAD_SECONDS (10)  OVERHEAD_ROUNDS (3)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/order-service-target}"
feature="${1:-metrics}"
seconds="${OVERHEAD_SECONDS:-10}"
rounds="${OVERHEAD_ROUNDS:-3}"
db=order_overhead
url=postgres://postgres@127.0.0.1:5432/$db
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
release_build
fresh_db
echo "PostgreSQL: fsync=$(psql -Atq "$admin" -c 'SHOW fsync'); $feature; ${seconds}s per run, $rounds rounds"

case "$feature" in
  metrics)
    on_env=(METRICS_ENABLED=true); off_env=(METRICS_ENABLED=false) ;;
  traces)
    # An OTLP/HTTP receiver that takes every export and counts its bytes: the exporter does
    # all of its work (batching, encoding, sending); nothing is stored.
    receiver_port=$(free_port)
    python3 - "$receiver_port" "$work/received" <<'PY' &
import http.server, sys
port, out = int(sys.argv[1]), sys.argv[2]
class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("content-length", 0)); self.rfile.read(n)
        with open(out, "a") as f: f.write(f"{n}\n")
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *args): pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), Sink).serve_forever()
PY
    pids+=($!)
    on_env=(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$receiver_port"
      OTEL_TRACES_SAMPLER="${OVERHEAD_SAMPLER:-parentbased_always_on}"
      OTEL_TRACES_SAMPLER_ARG="${OVERHEAD_SAMPLER_ARG:-1}"); off_env=() ;;
  *) echo "usage: $0 metrics|traces" >&2; exit 2 ;;
esac

run() { # run ENV... -> prints "orders/s cpu_us_per_order"
  local port service
  port=$(free_port)
  env AUTH_MODE=none DATABASE_URL="$url" REDIS_URL=redis://127.0.0.1:6379 REDIS_QUEUE_NAME="overhead-$$" \
    PORT="$port" LOG_LEVEL=warn DATABASE_POOL_SIZE=32 "$@" \
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
  read -r a a_cpu < <(run "${on_env[@]}"); read -r b b_cpu < <(run "${off_env[@]}")
  on+=("$a"); off+=("$b"); on_cpu+=("$a_cpu"); off_cpu+=("$b_cpu")
  echo "round $round: $feature on $a orders/s ($a_cpu µs CPU/order), off $b orders/s ($b_cpu µs CPU/order)"
done
if [ "$feature" = traces ]; then
  echo "the receiver got $(wc -l <"$work/received") exports, $(awk '{s += $1} END {print s}' "$work/received") bytes"
fi
python3 - "${on[*]}" "${off[*]}" "${on_cpu[*]}" "${off_cpu[*]}" <<'PY'
import statistics, sys
on, off, on_cpu, off_cpu = ([float(x) for x in a.split()] for a in sys.argv[1:5])
m_on, m_off = statistics.median(on), statistics.median(off)
c_on, c_off = statistics.median(on_cpu), statistics.median(off_cpu)
print(f"median throughput: on {m_on:.0f}/s, off {m_off:.0f}/s: on/off = {m_on / m_off:.3f}")
print(f"median CPU per order: on {c_on:.1f} µs, off {c_off:.1f} µs: on/off = {c_on / c_off:.3f} ({(c_on / c_off - 1) * 100:+.1f} %)")
PY
