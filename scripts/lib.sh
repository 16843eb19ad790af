# Shared by the measurement scripts (soak, overload, access-bench, overhead, webhook-bench):
# a scratch directory, background processes stopped on exit, free ports, waiting for a URL,
# and the set-up of a release-build benchmark against its own database. Source it after
# `cd` to the repository. A script may define `cleanup_more` for its own cleanup.

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if declare -F cleanup_more >/dev/null; then cleanup_more; fi
  rm -rf "$work"
}
trap cleanup EXIT

# A local TCP port nothing listens on right now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Waits up to 10 s for URL to answer 2xx; fails otherwise.
wait_for() { for _ in $(seq 1 100); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }

# PostgreSQL's maintenance database; a benchmark's own database is named by its `db`.
admin=postgres://postgres@127.0.0.1:5432/postgres

# PostgreSQL and Redis answering, the release `order-http` and `order-cli` built; sets `bin`.
release_build() {
  scripts/ensure-services.sh >/dev/null
  cargo build --release -q -p order-http -p order-cli
  bin="$CARGO_TARGET_DIR/release"
}

# The database `db` names, dropped and created empty.
fresh_db() { psql -q "$admin" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"; }
