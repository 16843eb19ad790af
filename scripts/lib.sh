# Shared by the measurement scripts (soak, overload, access-bench): a scratch directory,
# background processes stopped on exit, free ports and waiting for a URL. Source it after
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
