#!/usr/bin/env bash
# Fuzzes the API from its own OpenAPI document with schemathesis (every check, a fixed
# seed, a time budget): on the embedded default and on PostgreSQL + Redis with
# AUTH_MODE=none, then on PostgreSQL + Redis at its default AUTH_MODE=api_key, once with an
# administrator's key and once with none (half the budget each), so the 401 and 403 answers
# the document declares are exercised too. Any failure of any check fails the run.
#
#   CARGO_TARGET_DIR=... bash scripts/fuzz.sh [SECONDS_PER_BACKEND] [SEED]
#
# Needs schemathesis (pip install schemathesis); installs it when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

budget="${1:-60}"
seed="${2:-20261126}"
target="${CARGO_TARGET_DIR:-target}"

command -v schemathesis >/dev/null || python3 -m pip install --quiet 'schemathesis==4.32.5'
cargo build --quiet -p order-http
binary="$target/debug/order-http"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

server=""
database=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
  if [ -n "$database" ]; then
    psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $database" >/dev/null 2>&1 || true
  fi
  server=""
}
trap cleanup EXIT

# fuzz NAME [VAR=VALUE ...]: starts the service with the variables, fuzzes it, stops it.
fuzz() {
  local name="$1"; shift
  local port; port="$(free_port)"
  # The simulated gateway always answers: a refund is answered in the request, and a 503
  # for a gateway that did not answer is the contract, not a fault the fuzzer looks for
  # (the gateway's failures are the payment tests' and the chaos run's).
  env HOST=127.0.0.1 PORT="$port" LOG_LEVEL=warn PAYMENT_MOCK_SUCCESS_RATE=1 "$@" "$binary" \
    >"/tmp/order-fuzz-$name.log" 2>&1 &
  server=$!
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
    sleep 0.1
  done
  echo "fuzz: $name on port $port, seed $seed, ${run_budget}s"
  SCHEMATHESIS_HOOKS=schemathesis_hooks PYTHONPATH=scripts/fuzz \
    schemathesis run "http://127.0.0.1:$port/openapi.json" \
      --checks all --exclude-checks positive_data_acceptance \
      --seed "$seed" --max-time "$run_budget" --no-color "${schemathesis_args[@]}"
  kill "$server"; wait "$server" 2>/dev/null || true
  server=""
}

schemathesis_args=()
run_budget="$budget"
fuzz memory

database="order_fuzz_$$"
psql -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE $database" >/dev/null
stores=(DATABASE_URL="postgres://postgres@127.0.0.1:5432/$database"
  REDIS_URL="redis://127.0.0.1:6379" REDIS_QUEUE_NAME="order-fuzz-$$")
fuzz postgres-redis AUTH_MODE=none "${stores[@]}"

# AUTH_MODE=api_key, the default with DATABASE_URL: the first key made as an operator makes
# it, straight in PostgreSQL.
admin=$(env "${stores[@]}" LOG_LEVEL=warn "$binary" keys create --name fuzz \
  --scopes orders:read,orders:write,orders:cancel,webhooks:manage,keys:manage)
run_budget=$(( (budget + 1) / 2 ))
schemathesis_args=(--header "Authorization: Bearer $admin")
fuzz postgres-redis-with-a-key "${stores[@]}"
schemathesis_args=()
fuzz postgres-redis-without-a-key "${stores[@]}"
redis-cli -h 127.0.0.1 DEL "{order-fuzz-$$}" "{order-fuzz-$$}:deferred" "{order-fuzz-$$}:dead" >/dev/null || true
echo "fuzz: both backends passed, with and without keys"
