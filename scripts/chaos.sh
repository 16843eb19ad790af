#!/usr/bin/env bash
# The full chaos test, five runs in a row: each run accepts at least CHAOS_ORDERS orders
# (2000) while CHAOS_KILLS (10) API and worker processes are SIGKILLed and restarted,
# Redis is restarted empty, PostgreSQL is crashed (immediate stop) and started again, the
# gateway is killed and restarted on its ledger file, clients hang up on their POSTs, and
# about 30% of the orders are cancelled (CHAOS_CANCEL_PERCENT), then checks that no
# accepted order was lost, no stored one left unfinished, none charged twice or left
# unrefunded.
# Needs PostgreSQL and Redis as for the test suite (scripts/ensure-services.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/order-service-target}"
export CHAOS_ORDERS="${CHAOS_ORDERS:-2000}" CHAOS_KILLS="${CHAOS_KILLS:-10}"
runs="${CHAOS_RUNS:-5}"
scripts/ensure-services.sh >/dev/null
cargo test --release -p order-http --test it --no-run
for run in $(seq 1 "$runs"); do
  echo "== chaos run $run of $runs"
  cargo test --release -q -p order-http --test it chaos -- --nocapture 2>&1 | grep -E '^chaos:|panicked|FAILED|test result'
done
